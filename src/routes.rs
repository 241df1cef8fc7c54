//! The routes of API.md. Each handler authenticates the caller, parses its
//! input into the domain's types, asks the core, and renders the answer;
//! every failure is an [`ApiError`] (`{code, message}` with its one status).

use crate::auth::{verify_signature, Caller, TokenKeys, SIGNATURE_HEADER};
use crate::dto::query::after as event_cursor;
use crate::dto::{
    self, AddressRequest, AdminOrdersQuery, AfterSaleApplyRequest, AfterSaleCreated, AfterSaleList,
    AfterSaleView, AfterSalesCursor, CancelRequest, CouponIssueRequest, CouponView,
    CreateOrderRequest, CreateOrderResponse, DryRunQuery, DryRunView, EventView, EventsPage,
    EventsQuery, FulfillmentRequest, LackRequest, NoteRequest, OrderDetail, OrderEvents,
    OrderFilter, OrderIdRequest, OrderIdResponse, OrderList, OrderSummary, PageQuery,
    PayCallbackRequest, PayCallbackResponse, PrepayRequest, PrepayResponse, PriceRequest,
    PriceResponse, RefundCallbackRequest, RemoveRequest, RemovedResponse, ReviewRequest,
    RevokeRequest, SkuUpsertRequest, SkuView, StockDeltaRequest, StockView, StreamQuery,
    UserOrdersQuery, VersionResponse,
};
use crate::error::{parse_json, ApiError};
use crate::metrics::Metrics;
use actix_web::http::header::{self, HeaderValue};
use actix_web::http::StatusCode;
use actix_web::{web, HttpMessage, HttpRequest, HttpResponse};
use ordercore_actors::{BatchKey, Idempotency, OrderCore, Outcome, Removed, WriteOptions};
use ordercore_domain::ids::{IdempotencyKey, RequestId, TradeNo};
use ordercore_domain::{
    Action, Actor, AfterSale, AfterSaleId, Command, CommandMeta, ErrorCode, Event, EventBody,
    IfMatch, OrderFamily, OrderId, Timestamp, UserId,
};
use serde::Serialize;
use std::sync::Arc;
use std::time::Duration;

/// Largest request body accepted (64 KiB): a create with the maximum 100
/// lines and long addresses is about 20 KiB.
pub const BODY_LIMIT_BYTES: usize = 64 * 1024;
/// Events per poll of the live event stream.
pub const STREAM_BATCH: usize = 256;
/// Bytes of events in one stream chunk (128 KiB): a chunk is built whole
/// before it is written, and a batch of the largest orders' events could
/// otherwise take tens of MiB per catching-up stream. The chunk ends at the
/// event that passes it; the next one resumes there.
pub const STREAM_CHUNK_BYTES_MAX: usize = 128 * 1024;
/// Bytes of events in one `GET /v1/events` page (1 MiB), for the same
/// reason: the page ends early and `next` resumes after its last event.
pub const EVENTS_PAGE_BYTES_MAX: usize = 1024 * 1024;
/// Event streams open at once (64): each holds a connection, a poll every
/// [`STREAM_POLL`] and a chunk of up to [`STREAM_CHUNK_BYTES_MAX`]; the
/// feed's consumers are a few services, and one beyond answers 503
/// `OVERLOADED` rather than let memory grow with the connections.
pub const EVENT_STREAMS_MAX: usize = 64;
/// How often the live event stream looks for new events.
pub const STREAM_POLL: Duration = Duration::from_millis(200);
/// A comment line keeps idle event streams open through proxies.
pub const STREAM_KEEPALIVE: Duration = Duration::from_secs(15);
/// Families a user listing reads per storage call.
const LISTING_BATCH: usize = 100;
/// Families one user listing request reads at most (2,000, a multiple of
/// [`LISTING_BATCH`]): a filter that matches few of a user's many orders
/// answers a short page with a cursor instead of reading them all at once.
pub const USER_LISTING_SCAN_MAX: usize = 2_000;

/// What every handler shares.
#[derive(Debug)]
pub struct AppState {
    pub core: OrderCore,
    pub tokens: TokenKeys,
    pub payment_secret: String,
    pub metrics: Metrics,
    /// When this process started serving (the dashboard's period).
    pub started_at: Timestamp,
    /// Set when a stop signal arrives: long-lived responses (the event
    /// stream) end, so that the graceful stop does not wait out
    /// `SHUTDOWN_TIMEOUT` for them.
    pub draining: Arc<std::sync::atomic::AtomicBool>,
    /// Event streams open now (at most [`EVENT_STREAMS_MAX`]).
    pub streams: Arc<std::sync::atomic::AtomicUsize>,
}

type State = web::Data<AppState>;

/// One open event stream, counted until the stream is dropped.
struct StreamSlot(Arc<std::sync::atomic::AtomicUsize>);

impl StreamSlot {
    /// A slot, or `OVERLOADED` when [`EVENT_STREAMS_MAX`] are open.
    fn take(open: &Arc<std::sync::atomic::AtomicUsize>) -> Result<StreamSlot, ApiError> {
        use std::sync::atomic::Ordering::SeqCst;
        if open.fetch_add(1, SeqCst) >= EVENT_STREAMS_MAX {
            open.fetch_sub(1, SeqCst);
            return Err(ApiError::overloaded(format!(
                "{EVENT_STREAMS_MAX} event streams are open; read /v1/events by offset or retry later"
            )));
        }
        Ok(StreamSlot(Arc::clone(open)))
    }
}

impl Drop for StreamSlot {
    fn drop(&mut self) {
        self.0.fetch_sub(1, std::sync::atomic::Ordering::SeqCst);
    }
}
type Reply = Result<HttpResponse, ApiError>;
/// Renders a change's response from the family after it and its events;
/// the same function records the reply of an `Idempotency-Key`.
type RenderFn = Arc<dyn Fn(&OrderFamily, &[Arc<Event>]) -> (u16, String) + Send + Sync>;

/// A reply's renderer, and whether it shows the parts of a family that an
/// idle order actor leaves on disk (status log, product snapshots): the
/// actor then reads the whole family back before it answers.
#[derive(Clone)]
struct Renderer {
    render: RenderFn,
    whole: bool,
}

impl Renderer {
    /// A reply drawn from what every live family holds.
    fn hot(render: RenderFn) -> Renderer {
        Renderer {
            render,
            whole: false,
        }
    }
}

/// Every route [`configure`] registers, as (method, full path pattern as
/// actix-web matches it). The tests of `crate::openapi` check `configure`
/// and `/openapi.json` against this table, so no route can be added
/// without being documented.
pub const ROUTES: &[(&str, &str)] = &[
    ("GET", "/healthz"),
    ("GET", "/readyz"),
    ("GET", "/metrics"),
    ("GET", "/openapi.json"),
    ("POST", "/v1/order-ids"),
    ("POST", "/v1/orders/price"),
    ("POST", "/v1/orders/remove"),
    ("POST", "/v1/orders"),
    ("GET", "/v1/orders"),
    ("GET", "/v1/orders/{id}"),
    ("GET", "/v1/orders/{id}/events"),
    ("POST", "/v1/orders/{id}/prepay"),
    ("POST", "/v1/orders/{id}/cancel"),
    ("PUT", "/v1/orders/{id}/delivery-address"),
    ("POST", "/v1/orders/{id}/fulfillment"),
    ("POST", "/v1/orders/{id}/notes"),
    ("POST", "/v1/orders/{id}/after-sales"),
    ("POST", "/v1/orders/{id}/lack"),
    ("POST", "/v1/payments/callback"),
    ("POST", "/v1/refunds/callback"),
    ("GET", "/v1/after-sales/{id}"),
    ("POST", "/v1/after-sales/{id}/revoke"),
    ("POST", "/v1/after-sales/{id}/review"),
    ("POST", "/v1/after-sales/{id}/retry"),
    ("GET", "/v1/users/{user_id}/orders"),
    ("GET", "/v1/users/{user_id}/after-sales"),
    ("GET", "/v1/skus"),
    ("PUT", "/v1/skus/{code}"),
    ("GET", "/v1/skus/{code}"),
    ("POST", "/v1/skus/{code}/stock"),
    ("PUT", "/v1/coupons/{id}"),
    ("GET", "/v1/coupons/{id}"),
    ("GET", "/v1/events"),
    ("GET", "/v1/events/stream"),
    ("GET", "/v1/dashboard"),
];

/// The error for a request no route took: 405 `METHOD_NOT_ALLOWED` when
/// its path is a route's with another method, 404 `ROUTE_NOT_FOUND` else.
pub fn unmatched(req: &HttpRequest) -> ApiError {
    let path = req.path();
    let known = ROUTES
        .iter()
        .any(|(_, pattern)| actix_web::dev::ResourceDef::new(*pattern).is_match(path));
    if known {
        ApiError::method_not_allowed(req.method().as_str(), path)
    } else {
        ApiError::route_not_found(path)
    }
}

/// A path that exists with another method than the request's.
async fn other_method(req: HttpRequest) -> Result<HttpResponse, ApiError> {
    Err(unmatched(&req))
}

/// Registers every route.
pub fn configure(cfg: &mut web::ServiceConfig) {
    cfg.route("/healthz", web::get().to(healthz))
        .route("/readyz", web::get().to(readyz))
        .route("/metrics", web::get().to(metrics))
        .route("/openapi.json", web::get().to(crate::openapi::serve))
        .service(
            web::scope("/v1")
                .route("/order-ids", web::post().to(order_id))
                .route("/orders/price", web::post().to(price))
                .route("/orders/remove", web::post().to(remove))
                // Any other method on these two: 405, before `/orders/{id}`
                // takes them as a GET of an order named "price" or "remove".
                .route("/orders/price", web::route().to(other_method))
                .route("/orders/remove", web::route().to(other_method))
                .route("/orders", web::post().to(create))
                .route("/orders", web::get().to(admin_orders))
                .route("/orders/{id}", web::get().to(order))
                .route("/orders/{id}/events", web::get().to(order_events))
                .route("/orders/{id}/prepay", web::post().to(prepay))
                .route("/orders/{id}/cancel", web::post().to(cancel))
                .route("/orders/{id}/delivery-address", web::put().to(address))
                .route("/orders/{id}/fulfillment", web::post().to(fulfill))
                .route("/orders/{id}/notes", web::post().to(note))
                .route("/orders/{id}/after-sales", web::post().to(apply_after_sale))
                .route("/orders/{id}/lack", web::post().to(lack))
                .route("/payments/callback", web::post().to(pay_callback))
                .route("/refunds/callback", web::post().to(refund_callback))
                .route("/after-sales/{id}", web::get().to(after_sale))
                .route("/after-sales/{id}/revoke", web::post().to(revoke))
                .route("/after-sales/{id}/review", web::post().to(review))
                .route("/after-sales/{id}/retry", web::post().to(retry))
                .route("/users/{user_id}/orders", web::get().to(user_orders))
                .route(
                    "/users/{user_id}/after-sales",
                    web::get().to(user_after_sales),
                )
                .route("/skus", web::get().to(skus))
                .route("/skus/{code}", web::put().to(upsert_sku))
                .route("/skus/{code}", web::get().to(sku))
                .route("/skus/{code}/stock", web::post().to(add_stock))
                .route("/coupons/{id}", web::put().to(issue_coupon))
                .route("/coupons/{id}", web::get().to(coupon))
                .route("/events", web::get().to(events))
                .route("/events/stream", web::get().to(event_stream))
                .route("/dashboard", web::get().to(dashboard)),
        );
}

// ----- request context -----

fn caller(st: &AppState, req: &HttpRequest) -> Result<Caller, ApiError> {
    let header = req
        .headers()
        .get(header::AUTHORIZATION)
        .and_then(|v| v.to_str().ok());
    st.tokens.verify(header)
}

fn admin(st: &AppState, req: &HttpRequest) -> Result<Caller, ApiError> {
    let caller = caller(st, req)?;
    caller.require_admin()?;
    Ok(caller)
}

/// The request id the middleware assigned.
pub fn request_id(req: &HttpRequest) -> Option<RequestId> {
    req.extensions().get::<RequestId>().cloned()
}

/// `X-Signature` as text; anything unreadable is left for the signature
/// check to refuse (401 `SIGNATURE_INVALID`).
fn signature(req: &HttpRequest) -> Option<&str> {
    req.headers()
        .get(SIGNATURE_HEADER)
        .and_then(|v| v.to_str().ok())
}

fn header_str<'a>(req: &'a HttpRequest, name: &str) -> Result<Option<&'a str>, ApiError> {
    req.headers()
        .get(name)
        .map(|v| {
            v.to_str()
                .map_err(|_| ApiError::invalid_request(format!("{name}: not visible ASCII")))
        })
        .transpose()
}

/// `If-Match: "<version>"` (`*` and no header match any version). A weak
/// tag is kept as one: it never matches, but the family's `Idempotency-Key`
/// is checked before it (API.md), so a retry still gets its replay.
fn if_match(req: &HttpRequest) -> Result<Option<IfMatch>, ApiError> {
    let Some(raw) = header_str(req, "if-match")? else {
        return Ok(None);
    };
    let raw = raw.trim();
    if raw == "*" {
        return Ok(None);
    }
    let (weak, tag) = match raw.strip_prefix("W/") {
        Some(tag) => (true, tag),
        None => (false, raw),
    };
    let version: u64 = tag
        .trim_matches('"')
        .parse()
        .map_err(|_| ApiError::invalid_request(format!("If-Match: {raw:?} is not a version")))?;
    Ok(Some(if weak {
        IfMatch::Weak(version)
    } else {
        IfMatch::Version(version)
    }))
}

/// `Idempotency-Key`; bytes outside visible ASCII fail the key's own check
/// (400 `IDEMPOTENCY_KEY_INVALID`), not the generic one for headers.
fn idempotency_key(req: &HttpRequest) -> Result<Option<IdempotencyKey>, ApiError> {
    req.headers()
        .get("idempotency-key")
        .map(|k| {
            Ok(IdempotencyKey::parse(&String::from_utf8_lossy(
                k.as_bytes(),
            ))?)
        })
        .transpose()
}

/// The metadata of a write on a route without dry runs: a `dry_run`
/// parameter there is refused rather than ignored, so a client that meant
/// to change nothing never changes something.
fn meta(req: &HttpRequest, actor: Actor) -> Result<CommandMeta, ApiError> {
    // Keys decoded as `dry_run()` decodes them (`dry%5Frun` is `dry_run`).
    let asks_dry_run = web::Query::<Vec<(String, String)>>::from_query(req.query_string())
        .is_ok_and(|q| q.iter().any(|(key, _)| key == "dry_run"));
    if asks_dry_run {
        return Err(ApiError::invalid_request(
            "dry_run: this route has no dry run (cancel, after-sale apply, review and lack have)",
        ));
    }
    meta_of(req, actor, false)
}

/// The metadata of a catalog write (SKU, stock, coupon). The catalog is
/// not an order family: it keeps no `Idempotency-Key` and has no version,
/// so either header is refused rather than ignored — a client counting on a
/// replay must not get a second stock change, nor one counting on a version
/// check a silent overwrite.
fn catalog_meta(req: &HttpRequest, actor: Actor) -> Result<CommandMeta, ApiError> {
    for name in ["Idempotency-Key", "If-Match"] {
        if req.headers().contains_key(name) {
            return Err(ApiError::invalid_request(format!(
                "{name}: catalog writes keep no keys or versions (order and after-sale writes do)"
            )));
        }
    }
    meta(req, actor)
}

/// The metadata of a write on a route with dry runs: a dry run ignores
/// the `Idempotency-Key` (API.md), so it is not even read then.
fn meta_of(req: &HttpRequest, actor: Actor, dry_run: bool) -> Result<CommandMeta, ApiError> {
    Ok(CommandMeta {
        actor,
        request_id: request_id(req),
        idempotency_key: if dry_run { None } else { idempotency_key(req)? },
        reason: None,
        if_match: if_match(req)?,
    })
}

/// The request's own reason, recorded on its events (API.md: "a reason
/// where the request gave one"); an empty one is left to the command's own
/// check.
fn with_reason(mut meta: CommandMeta, reason: &str) -> CommandMeta {
    if !reason.trim().is_empty() {
        meta.reason = Some(reason.to_owned());
    }
    meta
}

/// Reads the body, refusing more than [`BODY_LIMIT_BYTES`].
///
/// By hand rather than `Payload::to_bytes_limited`, which allocates 32 KiB
/// for every body whatever its size (a tenth of a create's server CPU): a
/// body that arrives as one chunk is kept as it is, and a longer one grows
/// with what arrives.
async fn read_body(mut payload: web::Payload) -> Result<web::Bytes, ApiError> {
    use futures_util::StreamExt;
    let failed = |e: actix_web::error::PayloadError| {
        ApiError::invalid_request(format!("cannot read the body: {e}"))
    };
    let Some(first) = payload.next().await else {
        return Ok(web::Bytes::new());
    };
    let first = first.map_err(failed)?;
    if first.len() > BODY_LIMIT_BYTES {
        return Err(ApiError::payload_too_large(BODY_LIMIT_BYTES));
    }
    let Some(second) = payload.next().await else {
        return Ok(first);
    };
    let mut body = web::BytesMut::from(&first[..]);
    let mut next = Some(second);
    while let Some(chunk) = next {
        let chunk = chunk.map_err(failed)?;
        if body.len() + chunk.len() > BODY_LIMIT_BYTES {
            return Err(ApiError::payload_too_large(BODY_LIMIT_BYTES));
        }
        body.extend_from_slice(&chunk);
        next = payload.next().await;
    }
    Ok(body.freeze())
}

fn path_order_id(raw: &str) -> Result<OrderId, ApiError> {
    dto::parse_order_id(raw)
}

fn path_after_sale_id(raw: &str) -> Result<AfterSaleId, ApiError> {
    dto::parse_after_sale_id(raw)
}

/// The query string as `T`, read after the caller is authenticated (so an
/// unauthenticated request is 401 whatever its query says).
fn query<T: serde::de::DeserializeOwned>(req: &HttpRequest) -> Result<T, ApiError> {
    web::Query::<T>::from_query(req.query_string())
        .map(web::Query::into_inner)
        .map_err(|e| crate::error::from_query_error(&e))
}

/// `?dry_run=true`.
fn dry_run(req: &HttpRequest) -> Result<bool, ApiError> {
    query::<DryRunQuery>(req)?.parse()
}

/// A shopper reads only its own families; admins read any.
fn check_read(caller: &Caller, family: &OrderFamily) -> Result<(), ApiError> {
    match caller {
        Caller::Admin(_) => Ok(()),
        Caller::Shopper(user) if *user == family.user_id => Ok(()),
        Caller::Shopper(_) => Err(ApiError::forbidden("not your order")),
    }
}

// ----- rendering -----

fn json<T: Serialize>(status: StatusCode, value: &T) -> HttpResponse {
    HttpResponse::build(status).json(value)
}

fn rendered<T: Serialize>(status: u16, value: &T) -> (u16, String) {
    // Serializing these plain views cannot fail.
    (status, serde_json::to_string(value).unwrap_or_default())
}

fn detail_render(id: OrderId) -> Renderer {
    Renderer {
        render: Arc::new(move |family: &OrderFamily, _: &[Arc<Event>]| {
            match OrderDetail::of(family, id) {
                Some(detail) => rendered(200, &detail),
                None => rendered(200, &OrderDetail::of(family, family.order_id)),
            }
        }),
        whole: true,
    }
}

fn after_sale_render(id: AfterSaleId) -> Renderer {
    Renderer::hot(Arc::new(move |family: &OrderFamily, _: &[Arc<Event>]| {
        rendered(200, &family.after_sale(&id).map(AfterSaleView::from))
    }))
}

/// The after-sale a change committed (apply, lack), 201.
fn committed_render() -> Renderer {
    Renderer::hot(Arc::new(|family: &OrderFamily, events: &[Arc<Event>]| {
        let id = events.iter().find_map(|e| match &e.body {
            EventBody::AfterSaleCommitted(a) => Some(a.after_sale_id),
            _ => None,
        });
        let created = id
            .and_then(|id| family.after_sale(&id))
            .map(AfterSaleCreated::from);
        rendered(201, &created)
    }))
}

/// The events a command decided, without the record of its
/// `Idempotency-Key` (pushed last): the answer recorded with the key was
/// rendered from the events before it, and the live answer must be the
/// same — a keyed success that changed nothing has only the record.
fn decided(events: &[Arc<Event>]) -> &[Arc<Event>] {
    match events.split_last() {
        Some((last, before)) if matches!(last.body, EventBody::IdempotencyRecorded(_)) => before,
        _ => events,
    }
}

/// The HTTP response of a core outcome.
fn finish(outcome: Outcome, render: &Renderer, etag: bool) -> HttpResponse {
    match outcome {
        Outcome::Applied { family, unit } => {
            let events = unit.as_ref().map_or(&[][..], |u| decided(&u.events));
            let (status, body) = (render.render)(&family, events);
            let mut res = raw_json(status, body);
            if etag {
                set_etag(&mut res, family.version);
            }
            res
        }
        Outcome::Replayed { status, body } => finish_recorded(status, body, true),
        Outcome::DryRun { dry_run, .. } => json(StatusCode::OK, &DryRunView::from(&dry_run)),
    }
}

/// A reply recorded with an `Idempotency-Key`; `replayed` when an earlier
/// request recorded it.
fn finish_recorded(status: u16, body: String, replayed: bool) -> HttpResponse {
    let mut res = raw_json(status, body);
    if replayed {
        res.headers_mut().insert(
            header::HeaderName::from_static("idempotent-replayed"),
            HeaderValue::from_static("true"),
        );
    }
    res
}

fn raw_json(status: u16, body: String) -> HttpResponse {
    let status = StatusCode::from_u16(status).unwrap_or(StatusCode::OK);
    HttpResponse::build(status)
        .content_type("application/json")
        .body(body)
}

fn set_etag(res: &mut HttpResponse, version: u64) {
    if let Ok(v) = HeaderValue::from_str(&format!("\"{version}\"")) {
        res.headers_mut().insert(header::ETAG, v);
    }
}

/// The options of a write: a dry run, or the `Idempotency-Key` with the
/// hash of method, path and body and the reply renderer.
fn options(
    req: &HttpRequest,
    body: &[u8],
    meta: &CommandMeta,
    dry_run: bool,
    render: &Renderer,
) -> WriteOptions {
    let idempotency = match (&meta.idempotency_key, dry_run) {
        (Some(key), false) => {
            let render = Arc::clone(&render.render);
            Some(Idempotency {
                key: key.clone(),
                request_hash: request_hash(req, body),
                render: Box::new(move |f, e| render(f, e)),
            })
        }
        _ => None,
    };
    WriteOptions {
        dry_run,
        idempotency,
        whole: render.whole,
    }
}

/// What an `Idempotency-Key` is recorded with: a hash of method, path and
/// body.
fn request_hash(req: &HttpRequest, body: &[u8]) -> u64 {
    let mut hashed = Vec::with_capacity(body.len() + 64);
    hashed.extend_from_slice(req.method().as_str().as_bytes());
    hashed.push(b' ');
    hashed.extend_from_slice(req.uri().path().as_bytes());
    hashed.push(b'\n');
    hashed.extend_from_slice(body);
    dto::fnv1a_64(&hashed)
}

/// Runs a command on an existing family and renders its outcome.
async fn write(
    st: &AppState,
    req: &HttpRequest,
    body: &[u8],
    cmd: Command,
    dry_run: bool,
    render: Renderer,
    etag: bool,
) -> Reply {
    let opts = options(req, body, &cmd.meta, dry_run, &render);
    let outcome = st.core.execute(cmd, opts).await?;
    Ok(finish(outcome, &render, etag))
}

// ----- operations -----

#[utoipa::path(
    get,
    path = "/healthz",
    tag = "operations",
    summary = "Liveness",
    description = "Answers 200 while the process is alive.",
    responses(
        (status = 200, description = "Alive: `{\"status\": \"ok\"}`", body = crate::openapi::HealthStatus),
    ),
)]
async fn healthz() -> HttpResponse {
    HttpResponse::Ok().json(serde_json::json!({"status": "ok"}))
}

#[utoipa::path(
    get,
    path = "/readyz",
    tag = "operations",
    summary = "Readiness",
    description = "Answers 200 once the store is recovered and its writer is healthy, 503 otherwise (recovering, shutting down, or the writer failing).",
    responses(
        (status = 200, description = "Ready: `{\"status\": \"ready\"}`", body = crate::openapi::HealthStatus),
        (status = 503, description = "`NOT_READY`: recovering, shutting down, or the writer is failing"),
    ),
)]
async fn readyz(st: State) -> Reply {
    if st.core.is_ready() {
        Ok(HttpResponse::Ok().json(serde_json::json!({"status": "ready"})))
    } else {
        Err(ApiError::not_ready(
            "recovering, shutting down, or the writer is failing",
        ))
    }
}

#[utoipa::path(
    get,
    path = "/metrics",
    tag = "operations",
    summary = "Prometheus metrics",
    description = "Prometheus text exposition: requests by route and status, latency histograms, orders created/paid/canceled/timed out, write-behind batch size and commit latency, active actors, mailbox backlog, errors by code and alert level.",
    responses(
        (status = 200, description = "Prometheus text format 0.0.4", body = String, content_type = "text/plain; version=0.0.4"),
    ),
)]
async fn metrics(st: State) -> HttpResponse {
    HttpResponse::Ok()
        .content_type("text/plain; version=0.0.4")
        .body(st.metrics.render(&st.core, st.tokens.counts()))
}

#[utoipa::path(
    get,
    path = "/v1/dashboard",
    tag = "operations",
    summary = "Dashboard (admin)",
    description = "Today's figures (the UTC day), counted from midnight, or from this process's start when it started today (`since`): orders created, paid, canceled and timed out, total and average amount, pay and fulfillment success rates, errors by code.",
    responses(
        (status = 200, description = "The figures", body = crate::openapi::Dashboard),
        (status = 401, description = "`UNAUTHORIZED`: no valid bearer token"),
        (status = 403, description = "`FORBIDDEN`: the token is not an admin's"),
    ),
    security(("bearer_jwt" = ["admin"])),
)]
async fn dashboard(st: State, req: HttpRequest) -> Reply {
    admin(&st, &req)?;
    let now = st.core.now();
    let today = st.core.day(now);
    let m = &today.outcomes;
    let ratio = |a: u64, b: u64| if b == 0 { 0.0 } else { a as f64 / b as f64 };
    let errors: serde_json::Map<String, serde_json::Value> = st
        .metrics
        .errors_today(now)
        .into_iter()
        .map(|(code, n)| (code, n.into()))
        .collect();
    Ok(HttpResponse::Ok().json(serde_json::json!({
        // Today (UTC) as this process has seen it: from midnight, or from
        // its start when it started today.
        "since": st.started_at.max(today.day_start),
        "orders_created": m.orders_created,
        "orders_paid": m.orders_paid,
        "orders_canceled": m.orders_canceled,
        "orders_timed_out": m.orders_timed_out,
        "total_amount": m.amount_created,
        "average_amount": m.amount_created.checked_div(m.orders_created).unwrap_or(0),
        "pay_success_rate": ratio(m.orders_paid, m.orders_created),
        "fulfillment_success_rate": ratio(m.orders_signed, m.orders_signed + m.orders_refused),
        "errors_by_code": errors,
    })))
}

// ----- order ids and pricing -----

#[utoipa::path(
    post,
    path = "/v1/order-ids",
    tag = "orders",
    summary = "Issue an order id",
    description = "A new, unique, time-ordered order id for `user_id`, carrying enough of the user id to route by user. `POST /v1/orders` accepts only an id of this format whose user part matches its `user_id`; the server does not remember issued ids.",
    request_body = OrderIdRequest,
    responses(
        (status = 201, description = "The new id", body = OrderIdResponse),
        (status = 400, description = "`INVALID_REQUEST` (malformed JSON, an unknown field, a wrong type), `USER_ID_INVALID`, `BUSINESS_IDENTIFIER_ERROR`"),
        (status = 401, description = "`UNAUTHORIZED`: no valid bearer token"),
        (status = 403, description = "`FORBIDDEN`: a shopper acting for another user or on another user's order"),
        (status = 413, description = "`PAYLOAD_TOO_LARGE`: the body is larger than 64 KiB"),
    ),
    security(("bearer_jwt" = [])),
)]
async fn order_id(st: State, req: HttpRequest, payload: web::Payload) -> Reply {
    let caller = caller(&st, &req)?;
    let body = read_body(payload).await?;
    let (user_id, _) = parse_json::<OrderIdRequest>(&body)?.parse()?;
    caller.require_user(&user_id)?;
    let order_id = st.core.next_order_id(&user_id)?;
    Ok(json(
        StatusCode::CREATED,
        &OrderIdResponse { order_id, user_id },
    ))
}

#[utoipa::path(
    post,
    path = "/v1/orders/price",
    tag = "orders",
    summary = "Price a basket (checkout preview)",
    description = "Exactly the amounts `POST /v1/orders` will require for the same lines and coupon at this moment: origin (Σ price × quantity), coupon discount when its threshold is met, shipping fee by rule, real pay = origin − discount + shipping, and each line's share. Reserves nothing.",
    request_body = PriceRequest,
    responses(
        (status = 200, description = "The amounts and the priced lines", body = PriceResponse),
        (status = 400, description = "`INVALID_REQUEST` (malformed JSON, an unknown field, a wrong type), `USER_ID_INVALID`, `SKU_CODE_INVALID`, `COUPON_ID_INVALID`, `ORDER_ITEM_INVALID`"),
        (status = 401, description = "`UNAUTHORIZED`: no valid bearer token"),
        (status = 403, description = "`FORBIDDEN`: a shopper acting for another user or on another user's order"),
        (status = 404, description = "`PRODUCT_SKU_NOT_FOUND`, `USER_COUPON_NOT_EXIST`"),
        (status = 413, description = "`PAYLOAD_TOO_LARGE`: the body is larger than 64 KiB"),
        (status = 422, description = "`USER_COUPON_IS_USED`, `USER_COUPON_EXPIRED`, `USER_COUPON_NOT_STARTED`, `AMOUNT_OVERFLOW`"),
        (status = 503, description = "`OVERLOADED`, `NOT_READY` or `STORAGE_UNAVAILABLE`: retry after `Retry-After` seconds"),
    ),
    security(("bearer_jwt" = [])),
)]
async fn price(st: State, req: HttpRequest, payload: web::Payload) -> Reply {
    let caller = caller(&st, &req)?;
    let body = read_body(payload).await?;
    let basket = parse_json::<PriceRequest>(&body)?.parse()?;
    caller.require_user(&basket.user_id)?;
    let quote = st
        .core
        .price(&basket.user_id, &basket.items, basket.coupon_id.as_ref())?;
    Ok(json(StatusCode::OK, &PriceResponse::from(&quote)))
}

// ----- orders -----

#[utoipa::path(
    post,
    path = "/v1/orders",
    tag = "orders",
    summary = "Create an order",
    description = "Validates, checks risk, prices the lines (the client's REAL_PAY_AMOUNT and payment must equal the computed ones), locks the coupon and reserves stock all-or-nothing, persists the order family and arms the payment deadline. Mixed product types create a master order and one sub-order per product type. Idempotent on `order_id`: the same body again answers 200 with the same result; a different body with a used id answers 409 `ORDER_EXISTED`.",
    params(crate::openapi::IdempotencyKeyHeader),
    request_body = CreateOrderRequest,
    responses(
        (status = 201, description = "Created", body = CreateOrderResponse, headers(("ETag" = String, description = "The family's version after the change, `\"<version>\"` (not on a replay or a dry run)"))),
        (status = 200, description = "A repeat of the create that made this order: its result again, nothing changed", body = CreateOrderResponse, headers(("ETag" = String, description = "The family's version after the change, `\"<version>\"` (not on a replay or a dry run)"))),
        (status = 400, description = "`INVALID_REQUEST` (malformed JSON, an unknown field, a wrong type), `IDEMPOTENCY_KEY_INVALID`, `ORDER_ID_IS_NULL`, `ORDER_ID_INVALID`, `USER_ID_INVALID`, `BUSINESS_IDENTIFIER_ERROR`, `ORDER_TYPE_ERROR`, `DELIVERY_TYPE_ERROR`, `DELIVERY_ADDRESS_INVALID`, `PAY_TYPE_ERROR`, `AMOUNT_TYPE_ERROR`, `AMOUNT_INVALID`, `ORDER_ITEM_INVALID`, `SKU_CODE_INVALID`, `COUPON_ID_INVALID`, `TEXT_INVALID`"),
        (status = 401, description = "`UNAUTHORIZED`: no valid bearer token"),
        (status = 403, description = "`FORBIDDEN`: a shopper creating for another user; `RISK_REJECTED`: a blocked user or an amount over the cap"),
        (status = 404, description = "`PRODUCT_SKU_NOT_FOUND`, `USER_COUPON_NOT_EXIST`"),
        (status = 409, description = "`ORDER_EXISTED`: the id was used with a different body; `IDEMPOTENCY_KEY_LIMIT`"),
        (status = 413, description = "`PAYLOAD_TOO_LARGE`: the body is larger than 64 KiB"),
        (status = 422, description = "`ORDER_CHECK_REAL_PAY_AMOUNT_FAIL`, `PRODUCT_STOCK_NOT_ENOUGH`, `USER_COUPON_IS_USED`, `USER_COUPON_EXPIRED`, `USER_COUPON_NOT_STARTED`, `AMOUNT_OVERFLOW`, `IDEMPOTENCY_KEY_REUSED`"),
        (status = 429, description = "`ORDER_RATE_LIMITED`: over the orders-per-user-per-minute limit"),
        (status = 503, description = "`OVERLOADED`, `NOT_READY` or `STORAGE_UNAVAILABLE`: retry after `Retry-After` seconds"),
    ),
    security(("bearer_jwt" = [])),
)]
async fn create(st: State, req: HttpRequest, payload: web::Payload) -> Reply {
    let caller = caller(&st, &req)?;
    let body = read_body(payload).await?;
    let cmd = parse_json::<CreateOrderRequest>(&body)?.into_command()?;
    caller.require_user(&cmd.user_id)?;
    let meta = meta(&req, caller.actor())?;
    let render = Renderer::hot(Arc::new(|family: &OrderFamily, events: &[Arc<Event>]| {
        let status = if events.is_empty() { 200 } else { 201 };
        rendered(status, &CreateOrderResponse::of(family))
    }));
    let opts = options(&req, &body, &meta, false, &render);
    let outcome = st.core.create_order(cmd, meta, opts.idempotency).await?;
    Ok(finish(outcome, &render, true))
}

#[utoipa::path(
    get,
    path = "/v1/orders/{order_id}",
    tag = "orders",
    summary = "Read an order",
    description = "The order (any id of the family: master, single or sub-order) with its `version`, items, amounts, payment, delivery, sub-orders, snapshots, status log and after-sales. The owner or an admin; a removed order stays readable by id.",
    params(("order_id" = String, Path, description = "An order id")),
    responses(
        (status = 200, description = "The order", body = OrderDetail, headers(("ETag" = String, description = "The family's version, `\"<version>\"`: send it as `If-Match`"))),
        (status = 400, description = "`ORDER_ID_IS_NULL`, `ORDER_ID_INVALID`"),
        (status = 401, description = "`UNAUTHORIZED`: no valid bearer token"),
        (status = 403, description = "`FORBIDDEN`: another user's order"),
        (status = 404, description = "`ORDER_NOT_FOUND`"),
        (status = 503, description = "`OVERLOADED`, `NOT_READY` or `STORAGE_UNAVAILABLE`: retry after `Retry-After` seconds"),
    ),
    security(("bearer_jwt" = [])),
)]
async fn order(st: State, req: HttpRequest, path: web::Path<String>) -> Reply {
    let caller = caller(&st, &req)?;
    let id = path_order_id(&path)?;
    let family = st.core.order(&id).await?;
    check_read(&caller, &family)?;
    let detail = OrderDetail::of(&family, id).ok_or_else(|| {
        ApiError::new(ErrorCode::ORDER_NOT_FOUND, format!("order {id} not found"))
    })?;
    let mut res = json(StatusCode::OK, &detail);
    set_etag(&mut res, family.version);
    Ok(res)
}

#[utoipa::path(
    get,
    path = "/v1/orders/{order_id}/events",
    tag = "orders",
    summary = "An order's history",
    description = "The order family's events in order, with `seq`, `type`, `at`, `actor` and `data`; kept with the family, so it outlives journal trimming. The owner or an admin.",
    params(("order_id" = String, Path, description = "An order id")),
    responses(
        (status = 200, description = "The history", body = OrderEvents),
        (status = 400, description = "`ORDER_ID_IS_NULL`, `ORDER_ID_INVALID`"),
        (status = 401, description = "`UNAUTHORIZED`: no valid bearer token"),
        (status = 403, description = "`FORBIDDEN`: another user's order"),
        (status = 404, description = "`ORDER_NOT_FOUND`"),
        (status = 503, description = "`OVERLOADED`, `NOT_READY` or `STORAGE_UNAVAILABLE`: retry after `Retry-After` seconds"),
    ),
    security(("bearer_jwt" = [])),
)]
async fn order_events(st: State, req: HttpRequest, path: web::Path<String>) -> Reply {
    let caller = caller(&st, &req)?;
    let id = path_order_id(&path)?;
    let family = st.core.order(&id).await?;
    check_read(&caller, &family)?;
    // Any id of the family names its history, but only one it has.
    if family.part_of(id).is_none() {
        return Err(ApiError::new(
            ErrorCode::ORDER_NOT_FOUND,
            format!("order {id} not found"),
        ));
    }
    Ok(json(
        StatusCode::OK,
        &OrderEvents::of(&family, caller.is_admin()),
    ))
}

#[utoipa::path(
    post,
    path = "/v1/orders/{order_id}/prepay",
    tag = "payments",
    summary = "Prepay an order",
    description = "Only a CREATED family (master or single id) before its payment deadline; `pay_amount` must equal the order's pay amount.",
    params(("order_id" = String, Path, description = "An order id"), crate::openapi::IdempotencyKeyHeader, crate::openapi::IfMatchHeader),
    request_body = PrepayRequest,
    responses(
        (status = 200, description = "The payment to make", body = PrepayResponse, headers(("ETag" = String, description = "The family's version after the change, `\"<version>\"` (not on a replay or a dry run)"))),
        (status = 400, description = "`INVALID_REQUEST` (malformed JSON, an unknown field, a wrong type, a bad `If-Match`), `IDEMPOTENCY_KEY_INVALID`, `ORDER_ID_INVALID`, `USER_ID_INVALID`, `PAY_TYPE_ERROR`, `AMOUNT_INVALID`"),
        (status = 401, description = "`UNAUTHORIZED`: no valid bearer token"),
        (status = 403, description = "`FORBIDDEN`: a shopper acting for another user or on another user's order"),
        (status = 404, description = "`ORDER_NOT_FOUND`"),
        (status = 409, description = "`ORDER_STATUS_CHANGED`: not CREATED, or a sub-order id; `ORDER_PRE_PAY_EXPIRE`: past the deadline; `ORDER_CHANGE_LIMIT`: the order took 1,000 address changes, prepays and notes; `IDEMPOTENCY_KEY_LIMIT`"),
        (status = 412, description = "`ORDER_VERSION_MISMATCH`: `If-Match` names a version the family has moved on from; nothing changed"),
        (status = 413, description = "`PAYLOAD_TOO_LARGE`: the body is larger than 64 KiB"),
        (status = 422, description = "`ORDER_PAY_AMOUNT_ERROR`, `IDEMPOTENCY_KEY_REUSED`"),
        (status = 503, description = "`OVERLOADED`, `NOT_READY` or `STORAGE_UNAVAILABLE`: retry after `Retry-After` seconds"),
    ),
    security(("bearer_jwt" = [])),
)]
async fn prepay(
    st: State,
    req: HttpRequest,
    path: web::Path<String>,
    payload: web::Payload,
) -> Reply {
    let caller = caller(&st, &req)?;
    let id = path_order_id(&path)?;
    let body = read_body(payload).await?;
    let act = parse_json::<PrepayRequest>(&body)?.into_action(id)?;
    caller.require_user(&act.user_id)?;
    let cmd = Command {
        meta: meta(&req, caller.actor())?,
        action: act.action,
    };
    let render = Renderer::hot(Arc::new(|family: &OrderFamily, _: &[Arc<Event>]| {
        rendered(200, &PrepayResponse::of(family))
    }));
    write(&st, &req, &body, cmd, false, render, true).await
}

#[utoipa::path(
    post,
    path = "/v1/orders/{order_id}/cancel",
    tag = "orders",
    summary = "Cancel an order",
    description = "CREATED → CANCELED releases stock and the coupon. PAID (no part FULFILLED or later) → CANCELED also returns stock and creates a system refund of the whole payment (USER_CANCEL, or CUSTOMER_CANCEL for `cancel_type` 2, which only an admin may send). Takes the master or single id and acts on the whole family. With `?dry_run=true` answers what would happen and changes nothing.",
    params(("order_id" = String, Path, description = "An order id"), DryRunQuery, crate::openapi::IdempotencyKeyHeader, crate::openapi::IfMatchHeader),
    request_body = CancelRequest,
    responses(
        (status = 200, description = "The order detail after the cancel, or with `?dry_run=true` what would happen", body = crate::openapi::OrderDetailOrDryRun, headers(("ETag" = String, description = "The family's version after the change, `\"<version>\"` (not on a replay or a dry run)"))),
        (status = 400, description = "`INVALID_REQUEST` (malformed JSON, an unknown field, a wrong type, a bad `If-Match`), `IDEMPOTENCY_KEY_INVALID`, `ORDER_ID_INVALID`, `USER_ID_INVALID`, `CANCEL_TYPE_ERROR`"),
        (status = 401, description = "`UNAUTHORIZED`: no valid bearer token"),
        (status = 403, description = "`FORBIDDEN`: another user's order, or `cancel_type` 2 from a shopper"),
        (status = 404, description = "`ORDER_NOT_FOUND`"),
        (status = 409, description = "`ORDER_CANNOT_CANCEL`: any state but CREATED or PAID; `ORDER_STATUS_CHANGED`: a sub-order id; `IDEMPOTENCY_KEY_LIMIT`"),
        (status = 412, description = "`ORDER_VERSION_MISMATCH`: `If-Match` names a version the family has moved on from; nothing changed"),
        (status = 413, description = "`PAYLOAD_TOO_LARGE`: the body is larger than 64 KiB"),
        (status = 422, description = "`IDEMPOTENCY_KEY_REUSED`"),
        (status = 503, description = "`OVERLOADED`, `NOT_READY` or `STORAGE_UNAVAILABLE`: retry after `Retry-After` seconds"),
    ),
    security(("bearer_jwt" = [])),
)]
async fn cancel(
    st: State,
    req: HttpRequest,
    path: web::Path<String>,
    payload: web::Payload,
) -> Reply {
    let caller = caller(&st, &req)?;
    let id = path_order_id(&path)?;
    let dry_run = dry_run(&req)?;
    let body = read_body(payload).await?;
    let act = parse_json::<CancelRequest>(&body)?.into_action(id)?;
    caller.require_user(&act.user_id)?;
    let cmd = Command {
        meta: meta_of(&req, caller.actor(), dry_run)?,
        action: act.action,
    };
    write(&st, &req, &body, cmd, dry_run, detail_render(id), true).await
}

#[utoipa::path(
    put,
    path = "/v1/orders/{order_id}/delivery-address",
    tag = "orders",
    summary = "Change the delivery address",
    description = "Only while the family is CREATED or PAID (no part FULFILLED or later); takes the master or single id. The address the order already has changes nothing (no event, same version) unless the request carries an `Idempotency-Key`, which is recorded with a change.",
    params(("order_id" = String, Path, description = "An order id"), crate::openapi::IdempotencyKeyHeader, crate::openapi::IfMatchHeader),
    request_body = AddressRequest,
    responses(
        (status = 200, description = "The order detail after the change", body = OrderDetail, headers(("ETag" = String, description = "The family's version after the change, `\"<version>\"` (not on a replay or a dry run)"))),
        (status = 400, description = "`INVALID_REQUEST` (malformed JSON, an unknown field, a wrong type, a bad `If-Match`), `IDEMPOTENCY_KEY_INVALID`, `ORDER_ID_INVALID`, `USER_ID_INVALID`, `DELIVERY_ADDRESS_INVALID`"),
        (status = 401, description = "`UNAUTHORIZED`: no valid bearer token"),
        (status = 403, description = "`FORBIDDEN`: a shopper acting for another user or on another user's order"),
        (status = 404, description = "`ORDER_NOT_FOUND`"),
        (status = 409, description = "`ORDER_NOT_ALLOW_TO_ADJUST_ADDRESS`; `ORDER_STATUS_CHANGED`: a sub-order id; `ORDER_CHANGE_LIMIT`: the order took 1,000 address changes, prepays and notes; `IDEMPOTENCY_KEY_LIMIT`"),
        (status = 412, description = "`ORDER_VERSION_MISMATCH`: `If-Match` names a version the family has moved on from; nothing changed"),
        (status = 413, description = "`PAYLOAD_TOO_LARGE`: the body is larger than 64 KiB"),
        (status = 422, description = "`IDEMPOTENCY_KEY_REUSED`"),
        (status = 503, description = "`OVERLOADED`, `NOT_READY` or `STORAGE_UNAVAILABLE`: retry after `Retry-After` seconds"),
    ),
    security(("bearer_jwt" = [])),
)]
async fn address(
    st: State,
    req: HttpRequest,
    path: web::Path<String>,
    payload: web::Payload,
) -> Reply {
    let caller = caller(&st, &req)?;
    let id = path_order_id(&path)?;
    let body = read_body(payload).await?;
    let act = parse_json::<AddressRequest>(&body)?.into_action(id)?;
    caller.require_user(&act.user_id)?;
    let cmd = Command {
        meta: meta(&req, caller.actor())?,
        action: act.action,
    };
    write(&st, &req, &body, cmd, false, detail_render(id), true).await
}

#[utoipa::path(
    post,
    path = "/v1/orders/remove",
    tag = "orders",
    summary = "Remove orders (soft delete)",
    description = "Hides 1..100 master or single orders from listings (still readable by id and by admins). An order qualifies when it and every live part are CANCELED, SIGNED or REFUSED; the batch is checked first and applied after, so if any id does not qualify none are removed. An `Idempotency-Key` is recorded with every family the batch removes, with the batch's reply: the same request with the same key answers that reply again (`Idempotent-Replayed: true`), also once the orders are gone from the shopper's view.",
    params(crate::openapi::IdempotencyKeyHeader, crate::openapi::IfMatchHeader),
    request_body = RemoveRequest,
    responses(
        (status = 200, description = "How many this request removed (the recorded count on an `Idempotency-Key` replay)", body = RemovedResponse),
        (status = 400, description = "`INVALID_REQUEST` (malformed JSON, an unknown field, a wrong type, a bad `If-Match`, not 1..100 ids), `IDEMPOTENCY_KEY_INVALID`, `USER_ID_INVALID`, `ORDER_ID_IS_NULL`, `ORDER_ID_INVALID`"),
        (status = 401, description = "`UNAUTHORIZED`: no valid bearer token"),
        (status = 403, description = "`FORBIDDEN`: a shopper acting for another user or on another user's order"),
        (status = 404, description = "`ORDER_NOT_FOUND`: an unknown id"),
        (status = 409, description = "`ORDER_CANNOT_REMOVE`: names the first id that does not qualify; `ORDER_STATUS_CHANGED`: a sub-order id; `IDEMPOTENCY_KEY_LIMIT`"),
        (status = 412, description = "`ORDER_VERSION_MISMATCH`: `If-Match` names a version the family has moved on from; nothing changed"),
        (status = 413, description = "`PAYLOAD_TOO_LARGE`: the body is larger than 64 KiB"),
        (status = 422, description = "`IDEMPOTENCY_KEY_REUSED`"),
        (status = 503, description = "`OVERLOADED`, `NOT_READY` or `STORAGE_UNAVAILABLE`: retry after `Retry-After` seconds"),
    ),
    security(("bearer_jwt" = [])),
)]
async fn remove(st: State, req: HttpRequest, payload: web::Payload) -> Reply {
    let caller = caller(&st, &req)?;
    let body = read_body(payload).await?;
    let batch = parse_json::<RemoveRequest>(&body)?.parse()?;
    caller.require_user(&batch.user_id)?;
    let meta = meta(&req, caller.actor())?;
    let key = meta.idempotency_key.clone().map(|key| BatchKey {
        key,
        request_hash: request_hash(&req, &body),
        render: Box::new(|removed| {
            let body = serde_json::to_string(&RemovedResponse { removed }).unwrap_or_default();
            (StatusCode::OK.as_u16(), body)
        }),
    });
    match st.core.remove_orders(meta, &batch.order_ids, key).await? {
        Removed::Count(removed) => Ok(json(StatusCode::OK, &RemovedResponse { removed })),
        Removed::Keyed {
            status,
            body,
            replayed,
        } => Ok(finish_recorded(status, body, replayed)),
    }
}

#[utoipa::path(
    post,
    path = "/v1/orders/{order_id}/fulfillment",
    tag = "fulfillment",
    summary = "Record a fulfillment step (admin)",
    description = "FULFILLED (PAID → FULFILLED), OUT_STOCK, DELIVERY, SIGNED, or REFUSED (DELIVERY → REFUSED: full refund with detail ALL_REFUND, stock back); each moves one step forward, and repeating the step the order is in answers 200 with no change. Takes a single order's id or, for a paid mixed family, a sub-order's id.",
    params(("order_id" = String, Path, description = "An order id"), crate::openapi::IdempotencyKeyHeader, crate::openapi::IfMatchHeader),
    request_body = FulfillmentRequest,
    responses(
        (status = 200, description = "The order detail after the step", body = OrderDetail, headers(("ETag" = String, description = "The family's version after the change, `\"<version>\"` (not on a replay or a dry run)"))),
        (status = 400, description = "`INVALID_REQUEST` (malformed JSON, an unknown field, a wrong type, a bad `If-Match`), `IDEMPOTENCY_KEY_INVALID`, `ORDER_ID_INVALID`, `TEXT_INVALID`"),
        (status = 401, description = "`UNAUTHORIZED`: no valid bearer token"),
        (status = 403, description = "`FORBIDDEN`: the token is not an admin's"),
        (status = 404, description = "`ORDER_NOT_FOUND`"),
        (status = 409, description = "`ORDER_STATUS_CHANGED`: not the next step, or the master id of a paid mixed family; `IDEMPOTENCY_KEY_LIMIT`"),
        (status = 412, description = "`ORDER_VERSION_MISMATCH`: `If-Match` names a version the family has moved on from; nothing changed"),
        (status = 413, description = "`PAYLOAD_TOO_LARGE`: the body is larger than 64 KiB"),
        (status = 422, description = "`IDEMPOTENCY_KEY_REUSED`"),
        (status = 503, description = "`OVERLOADED`, `NOT_READY` or `STORAGE_UNAVAILABLE`: retry after `Retry-After` seconds"),
    ),
    security(("bearer_jwt" = ["admin"])),
)]
async fn fulfill(
    st: State,
    req: HttpRequest,
    path: web::Path<String>,
    payload: web::Payload,
) -> Reply {
    let caller = admin(&st, &req)?;
    let id = path_order_id(&path)?;
    let body = read_body(payload).await?;
    let action = parse_json::<FulfillmentRequest>(&body)?.into_action(id);
    let cmd = Command {
        meta: meta(&req, caller.actor())?,
        action,
    };
    write(&st, &req, &body, cmd, false, detail_render(id), true).await
}

#[utoipa::path(
    post,
    path = "/v1/orders/{order_id}/notes",
    tag = "orders",
    summary = "Add a note to an order (admin)",
    description = "A note is an event (`OrderNoteAdded`) in the order's history and a new version of the family; allowed in every state, up to 1,000 edits (address changes, prepays and notes) per family.",
    params(("order_id" = String, Path, description = "An order id"), crate::openapi::IdempotencyKeyHeader, crate::openapi::IfMatchHeader),
    request_body = NoteRequest,
    responses(
        (status = 201, description = "The family's version after the note", body = VersionResponse, headers(("ETag" = String, description = "The family's version after the change, `\"<version>\"` (not on a replay or a dry run)"))),
        (status = 400, description = "`INVALID_REQUEST` (malformed JSON, an unknown field, a wrong type, a bad `If-Match`), `IDEMPOTENCY_KEY_INVALID`, `ORDER_ID_INVALID`, `TEXT_INVALID`"),
        (status = 401, description = "`UNAUTHORIZED`: no valid bearer token"),
        (status = 403, description = "`FORBIDDEN`: the token is not an admin's"),
        (status = 404, description = "`ORDER_NOT_FOUND`"),
        (status = 409, description = "`ORDER_CHANGE_LIMIT`: the order took 1,000 address changes, prepays and notes; `IDEMPOTENCY_KEY_LIMIT`"),
        (status = 412, description = "`ORDER_VERSION_MISMATCH`: `If-Match` names a version the family has moved on from; nothing changed"),
        (status = 413, description = "`PAYLOAD_TOO_LARGE`: the body is larger than 64 KiB"),
        (status = 422, description = "`IDEMPOTENCY_KEY_REUSED`"),
        (status = 503, description = "`OVERLOADED`, `NOT_READY` or `STORAGE_UNAVAILABLE`: retry after `Retry-After` seconds"),
    ),
    security(("bearer_jwt" = ["admin"])),
)]
async fn note(
    st: State,
    req: HttpRequest,
    path: web::Path<String>,
    payload: web::Payload,
) -> Reply {
    let caller = admin(&st, &req)?;
    let id = path_order_id(&path)?;
    let body = read_body(payload).await?;
    let action = parse_json::<NoteRequest>(&body)?.into_action(id)?;
    let cmd = Command {
        meta: meta(&req, caller.actor())?,
        action,
    };
    let render = Renderer::hot(Arc::new(|family: &OrderFamily, _: &[Arc<Event>]| {
        rendered(
            201,
            &VersionResponse {
                version: family.version,
            },
        )
    }));
    write(&st, &req, &body, cmd, false, render, true).await
}

#[utoipa::path(
    post,
    path = "/v1/orders/{order_id}/after-sales",
    tag = "after-sales",
    summary = "Apply for an after-sale",
    description = "RETURN_GOODS only on SIGNED; RETURN_MONEY only on PAID or FULFILLED. The refund of q of n bought units is floor(line pay × q / n); the application that completes a line takes the rest of its pay, and the one that completes the order adds the shipping fee. Takes a single order's id or a sub-order's id of a paid mixed family. With `?dry_run=true` answers what would happen and changes nothing.",
    params(("order_id" = String, Path, description = "An order id"), DryRunQuery, crate::openapi::IdempotencyKeyHeader, crate::openapi::IfMatchHeader),
    request_body = AfterSaleApplyRequest,
    responses(
        (status = 201, description = "The after-sale, COMMITTED", body = AfterSaleCreated),
        (status = 200, description = "With `?dry_run=true`: what would happen", body = DryRunView),
        (status = 400, description = "`INVALID_REQUEST` (malformed JSON, an unknown field, a wrong type, a bad `If-Match`), `IDEMPOTENCY_KEY_INVALID`, `ORDER_ID_INVALID`, `USER_ID_INVALID`, `AFTER_SALE_TYPE_ERROR`, `ORDER_ITEM_INVALID`, `SKU_CODE_INVALID`, `TEXT_INVALID`"),
        (status = 401, description = "`UNAUTHORIZED`: no valid bearer token"),
        (status = 403, description = "`FORBIDDEN`: a shopper acting for another user or on another user's order"),
        (status = 404, description = "`ORDER_NOT_FOUND`"),
        (status = 409, description = "`AFTER_SALE_CANNOT_APPLY`: not in a state that allows it; `ORDER_STATUS_CHANGED`: the master id of a paid mixed family; `AFTER_SALE_LIMIT`, `IDEMPOTENCY_KEY_LIMIT`"),
        (status = 412, description = "`ORDER_VERSION_MISMATCH`: `If-Match` names a version the family has moved on from; nothing changed"),
        (status = 413, description = "`PAYLOAD_TOO_LARGE`: the body is larger than 64 KiB"),
        (status = 422, description = "`AFTER_SALE_QUANTITY_EXCEEDED`: more than the returnable quantity; `IDEMPOTENCY_KEY_REUSED`"),
        (status = 503, description = "`OVERLOADED`, `NOT_READY` or `STORAGE_UNAVAILABLE`: retry after `Retry-After` seconds"),
    ),
    security(("bearer_jwt" = [])),
)]
async fn apply_after_sale(
    st: State,
    req: HttpRequest,
    path: web::Path<String>,
    payload: web::Payload,
) -> Reply {
    let caller = caller(&st, &req)?;
    let id = path_order_id(&path)?;
    let dry_run = dry_run(&req)?;
    let body = read_body(payload).await?;
    let request = parse_json::<AfterSaleApplyRequest>(&body)?;
    let reason = request.reason.clone();
    let act = request.into_action(id)?;
    caller.require_user(&act.user_id)?;
    let cmd = Command {
        meta: with_reason(meta_of(&req, caller.actor(), dry_run)?, &reason),
        action: act.action,
    };
    write(&st, &req, &body, cmd, dry_run, committed_render(), false).await
}

#[utoipa::path(
    post,
    path = "/v1/orders/{order_id}/lack",
    tag = "after-sales",
    summary = "Report lacking items (admin)",
    description = "The warehouse reports items it cannot ship for a FULFILLED or OUT_STOCK order, at most once per order: a RETURN_MONEY / LACK_REFUND after-sale approved at once (REFUNDING) for the lacked quantities' paid share. The order's status does not change and lacked stock is not released. With `?dry_run=true` answers what would happen and changes nothing.",
    params(("order_id" = String, Path, description = "An order id"), DryRunQuery, crate::openapi::IdempotencyKeyHeader, crate::openapi::IfMatchHeader),
    request_body = LackRequest,
    responses(
        (status = 201, description = "The lack after-sale, REFUNDING", body = AfterSaleCreated),
        (status = 200, description = "With `?dry_run=true`: what would happen", body = DryRunView),
        (status = 400, description = "`INVALID_REQUEST` (malformed JSON, an unknown field, a wrong type, a bad `If-Match`), `IDEMPOTENCY_KEY_INVALID`, `ORDER_ID_INVALID`, `ORDER_ITEM_INVALID`, `SKU_CODE_INVALID`"),
        (status = 401, description = "`UNAUTHORIZED`: no valid bearer token"),
        (status = 403, description = "`FORBIDDEN`: the token is not an admin's"),
        (status = 404, description = "`ORDER_NOT_FOUND`"),
        (status = 409, description = "`ORDER_NOT_ALLOW_TO_LACK`: not FULFILLED or OUT_STOCK, lacked before, or every unit refunded; `ORDER_STATUS_CHANGED`: the master id of a paid mixed family; `AFTER_SALE_LIMIT`, `IDEMPOTENCY_KEY_LIMIT`"),
        (status = 412, description = "`ORDER_VERSION_MISMATCH`: `If-Match` names a version the family has moved on from; nothing changed"),
        (status = 413, description = "`PAYLOAD_TOO_LARGE`: the body is larger than 64 KiB"),
        (status = 422, description = "`AFTER_SALE_QUANTITY_EXCEEDED`: more than bought minus refunded; `IDEMPOTENCY_KEY_REUSED`"),
        (status = 503, description = "`OVERLOADED`, `NOT_READY` or `STORAGE_UNAVAILABLE`: retry after `Retry-After` seconds"),
    ),
    security(("bearer_jwt" = ["admin"])),
)]
async fn lack(
    st: State,
    req: HttpRequest,
    path: web::Path<String>,
    payload: web::Payload,
) -> Reply {
    let caller = admin(&st, &req)?;
    let id = path_order_id(&path)?;
    let dry_run = dry_run(&req)?;
    let body = read_body(payload).await?;
    let action = parse_json::<LackRequest>(&body)?.into_action(id)?;
    let cmd = Command {
        meta: meta_of(&req, caller.actor(), dry_run)?,
        action,
    };
    write(&st, &req, &body, cmd, dry_run, committed_render(), false).await
}

#[utoipa::path(
    post,
    path = "/v1/payments/callback",
    tag = "payments",
    summary = "Payment callback (payment provider)",
    description = "Signed with `X-Signature`. `order_id` is the master (or single) order; `trade_no` decides repeats. PAID: the CREATED family is now paid (also past its deadline if the deadline has not fired). DUPLICATE: this `trade_no` was seen before; nothing changes and its earlier result stands. REFUND: a new `trade_no` for a cancelled or already-paid family; a system refund is created. A prepay is not required.",
    params(crate::openapi::IdempotencyKeyHeader, crate::openapi::IfMatchHeader),
    request_body = PayCallbackRequest,
    responses(
        (status = 200, description = "What the callback did", body = PayCallbackResponse),
        (status = 400, description = "`INVALID_REQUEST` (malformed JSON, an unknown field, a wrong type, a bad `If-Match`), `IDEMPOTENCY_KEY_INVALID`, `ORDER_ID_IS_NULL`, `ORDER_ID_INVALID`, `PAY_TYPE_ERROR`, `AMOUNT_INVALID`, `TRADE_NO_INVALID`, `TIME_INVALID`"),
        (status = 401, description = "`SIGNATURE_INVALID`: `X-Signature` is missing or is not the body's HMAC"),
        (status = 404, description = "`ORDER_NOT_FOUND`"),
        (status = 409, description = "`ORDER_STATUS_CHANGED`: a sub-order id; `AFTER_SALE_LIMIT`, `IDEMPOTENCY_KEY_LIMIT`"),
        (status = 412, description = "`ORDER_VERSION_MISMATCH`: `If-Match` names a version the family has moved on from; nothing changed"),
        (status = 413, description = "`PAYLOAD_TOO_LARGE`: the body is larger than 64 KiB"),
        (status = 422, description = "`ORDER_PAY_AMOUNT_ERROR`: `pay_amount` is not the order's; nothing changed; `IDEMPOTENCY_KEY_REUSED`"),
        (status = 503, description = "`OVERLOADED`, `NOT_READY` or `STORAGE_UNAVAILABLE`: retry after `Retry-After` seconds"),
    ),
    security(("provider_signature" = [])),
)]
async fn pay_callback(st: State, req: HttpRequest, payload: web::Payload) -> Reply {
    let body = read_body(payload).await?;
    verify_signature(&st.payment_secret, &body, signature(&req))?;
    let action = parse_json::<PayCallbackRequest>(&body)?.into_action()?;
    let trade_no: Option<TradeNo> = match &action {
        Action::PayCallback { trade_no, .. } => Some(trade_no.clone()),
        _ => None,
    };
    let cmd = Command {
        meta: meta(&req, Actor::provider())?,
        action,
    };
    let render = Renderer::hot(Arc::new(
        move |family: &OrderFamily, events: &[Arc<Event>]| {
            let response = trade_no
                .as_ref()
                .map(|t| PayCallbackResponse::of(family, t, !events.is_empty()));
            rendered(200, &response)
        },
    ));
    write(&st, &req, &body, cmd, false, render, false).await
}

#[utoipa::path(
    post,
    path = "/v1/refunds/callback",
    tag = "after-sales",
    summary = "Refund callback (payment provider)",
    description = "Signed with `X-Signature`. Completes a REFUNDING after-sale: success → REFUNDED, failure → FAILED. Repeating the outcome already recorded answers 200 with no change, and so does a failure sent again after a retry (its `refunded_at` no later than the last recorded failure's), and, once REFUNDED, any failure dated before the refund.",
    params(crate::openapi::IdempotencyKeyHeader, crate::openapi::IfMatchHeader),
    request_body = RefundCallbackRequest,
    responses(
        (status = 200, description = "The after-sale", body = AfterSaleView),
        (status = 400, description = "`INVALID_REQUEST` (malformed JSON, an unknown field, a wrong type, a bad `If-Match`), `IDEMPOTENCY_KEY_INVALID`, `AFTER_SALE_ID_INVALID`, `AMOUNT_INVALID`, `TIME_INVALID`"),
        (status = 401, description = "`SIGNATURE_INVALID`: `X-Signature` is missing or is not the body's HMAC"),
        (status = 404, description = "`AFTER_SALE_NOT_FOUND`"),
        (status = 409, description = "`AFTER_SALE_STATUS_CHANGED`: not REFUNDING and not a repeat; `IDEMPOTENCY_KEY_LIMIT`"),
        (status = 412, description = "`ORDER_VERSION_MISMATCH`: `If-Match` names a version the family has moved on from; nothing changed"),
        (status = 413, description = "`PAYLOAD_TOO_LARGE`: the body is larger than 64 KiB"),
        (status = 422, description = "`REFUND_AMOUNT_MISMATCH`: `refund_amount` is not the after-sale's; `IDEMPOTENCY_KEY_REUSED`"),
        (status = 503, description = "`OVERLOADED`, `NOT_READY` or `STORAGE_UNAVAILABLE`: retry after `Retry-After` seconds"),
    ),
    security(("provider_signature" = [])),
)]
async fn refund_callback(st: State, req: HttpRequest, payload: web::Payload) -> Reply {
    let body = read_body(payload).await?;
    verify_signature(&st.payment_secret, &body, signature(&req))?;
    let (id, action) = parse_json::<RefundCallbackRequest>(&body)?.into_action()?;
    let cmd = Command {
        meta: meta(&req, Actor::provider())?,
        action,
    };
    write(&st, &req, &body, cmd, false, after_sale_render(id), false).await
}

// ----- after-sales -----

#[utoipa::path(
    get,
    path = "/v1/after-sales/{id}",
    tag = "after-sales",
    summary = "Read an after-sale",
    description = "The owner or an admin.",
    params(("id" = String, Path, description = "An after-sale id")),
    responses(
        (status = 200, description = "The after-sale", body = AfterSaleView),
        (status = 400, description = "`AFTER_SALE_ID_INVALID`"),
        (status = 401, description = "`UNAUTHORIZED`: no valid bearer token"),
        (status = 403, description = "`FORBIDDEN`: another user's after-sale"),
        (status = 404, description = "`AFTER_SALE_NOT_FOUND`"),
        (status = 503, description = "`OVERLOADED`, `NOT_READY` or `STORAGE_UNAVAILABLE`: retry after `Retry-After` seconds"),
    ),
    security(("bearer_jwt" = [])),
)]
async fn after_sale(st: State, req: HttpRequest, path: web::Path<String>) -> Reply {
    let caller = caller(&st, &req)?;
    let id = path_after_sale_id(&path)?;
    let family = st.core.order(&id.family_id()).await.map_err(|e| {
        if e.code() == ErrorCode::ORDER_NOT_FOUND {
            ApiError::new(
                ErrorCode::AFTER_SALE_NOT_FOUND,
                format!("after-sale {id} not found"),
            )
        } else {
            e.into()
        }
    })?;
    check_read(&caller, &family)?;
    let view = family
        .after_sale(&id)
        .map(AfterSaleView::from)
        .ok_or_else(|| {
            ApiError::new(
                ErrorCode::AFTER_SALE_NOT_FOUND,
                format!("after-sale {id} not found"),
            )
        })?;
    Ok(json(StatusCode::OK, &view))
}

#[utoipa::path(
    post,
    path = "/v1/after-sales/{id}/revoke",
    tag = "after-sales",
    summary = "Revoke an after-sale",
    description = "COMMITTED → REVOKED.",
    params(("id" = String, Path, description = "An after-sale id"), crate::openapi::IdempotencyKeyHeader, crate::openapi::IfMatchHeader),
    request_body = RevokeRequest,
    responses(
        (status = 200, description = "The after-sale", body = AfterSaleView),
        (status = 400, description = "`INVALID_REQUEST` (malformed JSON, an unknown field, a wrong type, a bad `If-Match`), `IDEMPOTENCY_KEY_INVALID`, `AFTER_SALE_ID_INVALID`, `USER_ID_INVALID`"),
        (status = 401, description = "`UNAUTHORIZED`: no valid bearer token"),
        (status = 403, description = "`FORBIDDEN`: a shopper acting for another user or on another user's order"),
        (status = 404, description = "`AFTER_SALE_NOT_FOUND`, `ORDER_NOT_FOUND`"),
        (status = 409, description = "`AFTER_SALE_STATUS_CHANGED`: not COMMITTED; `IDEMPOTENCY_KEY_LIMIT`"),
        (status = 412, description = "`ORDER_VERSION_MISMATCH`: `If-Match` names a version the family has moved on from; nothing changed"),
        (status = 413, description = "`PAYLOAD_TOO_LARGE`: the body is larger than 64 KiB"),
        (status = 422, description = "`IDEMPOTENCY_KEY_REUSED`"),
        (status = 503, description = "`OVERLOADED`, `NOT_READY` or `STORAGE_UNAVAILABLE`: retry after `Retry-After` seconds"),
    ),
    security(("bearer_jwt" = [])),
)]
async fn revoke(
    st: State,
    req: HttpRequest,
    path: web::Path<String>,
    payload: web::Payload,
) -> Reply {
    let caller = caller(&st, &req)?;
    let id = path_after_sale_id(&path)?;
    let body = read_body(payload).await?;
    let act = parse_json::<RevokeRequest>(&body)?.into_action(id)?;
    caller.require_user(&act.user_id)?;
    let cmd = Command {
        meta: meta(&req, caller.actor())?,
        action: act.action,
    };
    write(&st, &req, &body, cmd, false, after_sale_render(id), false).await
}

#[utoipa::path(
    post,
    path = "/v1/after-sales/{id}/review",
    tag = "after-sales",
    summary = "Review an after-sale (admin)",
    description = "COMMITTED → REVIEW_PASS and REFUNDING in one change when approved (RETURN_GOODS quantities go back to available stock), REVIEW_REJECTED otherwise. Repeating the decision already recorded answers 200 with no change. With `?dry_run=true` answers what would happen and changes nothing.",
    params(("id" = String, Path, description = "An after-sale id"), DryRunQuery, crate::openapi::IdempotencyKeyHeader, crate::openapi::IfMatchHeader),
    request_body = ReviewRequest,
    responses(
        (status = 200, description = "The after-sale, or with `?dry_run=true` what would happen", body = crate::openapi::AfterSaleOrDryRun),
        (status = 400, description = "`INVALID_REQUEST` (malformed JSON, an unknown field, a wrong type, a bad `If-Match`), `IDEMPOTENCY_KEY_INVALID`, `AFTER_SALE_ID_INVALID`, `TEXT_INVALID`"),
        (status = 401, description = "`UNAUTHORIZED`: no valid bearer token"),
        (status = 403, description = "`FORBIDDEN`: the token is not an admin's"),
        (status = 404, description = "`AFTER_SALE_NOT_FOUND`"),
        (status = 409, description = "`AFTER_SALE_STATUS_CHANGED`: not COMMITTED and not a repeat; `AFTER_SALE_CANNOT_APPLY`: approving a refund without return whose goods have left (reject it); `IDEMPOTENCY_KEY_LIMIT`"),
        (status = 412, description = "`ORDER_VERSION_MISMATCH`: `If-Match` names a version the family has moved on from; nothing changed"),
        (status = 413, description = "`PAYLOAD_TOO_LARGE`: the body is larger than 64 KiB"),
        (status = 422, description = "`IDEMPOTENCY_KEY_REUSED`"),
        (status = 503, description = "`OVERLOADED`, `NOT_READY` or `STORAGE_UNAVAILABLE`: retry after `Retry-After` seconds"),
    ),
    security(("bearer_jwt" = ["admin"])),
)]
async fn review(
    st: State,
    req: HttpRequest,
    path: web::Path<String>,
    payload: web::Payload,
) -> Reply {
    let caller = admin(&st, &req)?;
    let id = path_after_sale_id(&path)?;
    let dry_run = dry_run(&req)?;
    let body = read_body(payload).await?;
    let request = parse_json::<ReviewRequest>(&body)?;
    let remark = request.remark.clone();
    let action = request.into_action(id);
    let cmd = Command {
        meta: with_reason(meta_of(&req, caller.actor(), dry_run)?, &remark),
        action,
    };
    write(&st, &req, &body, cmd, dry_run, after_sale_render(id), false).await
}

#[utoipa::path(
    post,
    path = "/v1/after-sales/{id}/retry",
    tag = "after-sales",
    summary = "Retry a failed refund (admin)",
    description = "FAILED → REFUNDING, emitting `RefundRequested` again. Takes no body (an empty body or `{}`).",
    params(("id" = String, Path, description = "An after-sale id"), crate::openapi::IdempotencyKeyHeader, crate::openapi::IfMatchHeader),
    responses(
        (status = 200, description = "The after-sale", body = AfterSaleView),
        (status = 400, description = "`INVALID_REQUEST` (malformed JSON, an unknown field, a wrong type, a bad `If-Match`), `IDEMPOTENCY_KEY_INVALID`, `AFTER_SALE_ID_INVALID`"),
        (status = 401, description = "`UNAUTHORIZED`: no valid bearer token"),
        (status = 403, description = "`FORBIDDEN`: the token is not an admin's"),
        (status = 404, description = "`AFTER_SALE_NOT_FOUND`"),
        (status = 409, description = "`AFTER_SALE_STATUS_CHANGED`: not FAILED, or what it refunds was claimed or priced again since, or a later FAILED refund covers it (unless REFUNDED after-sales took what that one covers); `IDEMPOTENCY_KEY_LIMIT`"),
        (status = 412, description = "`ORDER_VERSION_MISMATCH`: `If-Match` names a version the family has moved on from; nothing changed"),
        (status = 413, description = "`PAYLOAD_TOO_LARGE`: the body is larger than 64 KiB"),
        (status = 422, description = "`IDEMPOTENCY_KEY_REUSED`"),
        (status = 503, description = "`OVERLOADED`, `NOT_READY` or `STORAGE_UNAVAILABLE`: retry after `Retry-After` seconds"),
    ),
    security(("bearer_jwt" = ["admin"])),
)]
async fn retry(
    st: State,
    req: HttpRequest,
    path: web::Path<String>,
    payload: web::Payload,
) -> Reply {
    let caller = admin(&st, &req)?;
    let id = path_after_sale_id(&path)?;
    let body = read_body(payload).await?;
    if !body.iter().all(u8::is_ascii_whitespace) && body.as_ref() != b"{}" {
        return Err(ApiError::invalid_request("retry takes no body (or {})"));
    }
    let cmd = Command {
        meta: meta(&req, caller.actor())?,
        action: dto::retry_action(id),
    };
    write(&st, &req, &body, cmd, false, after_sale_render(id), false).await
}

// ----- listings -----

#[utoipa::path(
    get,
    path = "/v1/users/{user_id}/orders",
    tag = "orders",
    summary = "List a user's orders",
    description = "Newest first, keyset pagination, `page_size` 1..100 (default 20); removed and INVALID orders hidden, so a shopper sees one order before paying and its parts after. A page holds at most `page_size` summaries: one that fills up inside a mixed family ends there, with the last part listed as its `next_cursor`. A request reads at most 2,000 of the user's orders: with a filter that matches few, a page may come back short, even empty, with a `next_cursor` to go on.",
    params(("user_id" = String, Path, description = "The user; a shopper may name only itself"), UserOrdersQuery),
    responses(
        (status = 200, description = "A page of order summaries", body = OrderList),
        (status = 400, description = "`INVALID_REQUEST`, `USER_ID_INVALID`, `PAGE_SIZE_INVALID`, `CURSOR_INVALID`"),
        (status = 401, description = "`UNAUTHORIZED`: no valid bearer token"),
        (status = 403, description = "`FORBIDDEN`: a shopper acting for another user or on another user's order"),
        (status = 503, description = "`OVERLOADED`, `NOT_READY` or `STORAGE_UNAVAILABLE`: retry after `Retry-After` seconds"),
    ),
    security(("bearer_jwt" = [])),
)]
async fn user_orders(st: State, req: HttpRequest, path: web::Path<String>) -> Reply {
    let caller = caller(&st, &req)?;
    let user = dto::parse_user_id(&path)?;
    caller.require_user(&user)?;
    let filter = query::<UserOrdersQuery>(&req)?.parse()?;
    let mut page = Listing::new(filter.page.size);
    let before = page.resume(&st, filter.page.cursor, Some(&user), &filter)?;
    // Short once [`USER_LISTING_SCAN_MAX`] families were read: the cursor
    // is then the last family read.
    let ended = if page.is_full() {
        None
    } else {
        walk_user_families(&st, &user, before, |family| {
            page.add(family, &filter);
            !page.is_full()
        })?
    };
    Ok(json(StatusCode::OK, &page.finish(ended)))
}

/// A page of order summaries being filled, newest first. A mixed family
/// lists one summary per part, so a page may fill up inside a family: it
/// then ends at exactly `size` summaries, its cursor is the last part
/// listed (a sub-order id), and the next page starts with that family's
/// parts after it.
struct Listing {
    orders: Vec<OrderSummary>,
    size: usize,
}

impl Listing {
    fn new(size: usize) -> Listing {
        Listing {
            orders: Vec::with_capacity(size),
            size,
        }
    }

    fn is_full(&self) -> bool {
        self.orders.len() >= self.size
    }

    /// Adds what fits of the family's summaries that `filter` accepts;
    /// answers how many.
    fn add(&mut self, family: &OrderFamily, filter: &OrderFilter) -> usize {
        self.add_rows(listed(family, filter))
    }

    fn add_rows(&mut self, rows: Vec<OrderSummary>) -> usize {
        let before = self.orders.len();
        let room = self.size.saturating_sub(before);
        self.orders.extend(rows.into_iter().take(room));
        self.orders.len() - before
    }

    /// Starts the page where `cursor` left off: a sub-order id first gives
    /// its family's parts after it (only a family of `owner`, when given:
    /// a cursor is the caller's input), then the listing goes on with the
    /// families older than that family, which this answers.
    fn resume(
        &mut self,
        st: &AppState,
        cursor: Option<OrderId>,
        owner: Option<&UserId>,
        filter: &OrderFilter,
    ) -> Result<Option<OrderId>, ApiError> {
        let Some(cursor) = cursor else {
            return Ok(None);
        };
        if cursor.is_sub_order() {
            let family = st.core.listed_family(&cursor)?;
            if let Some(family) = family.filter(|f| owner.is_none_or(|u| f.user_id == *u)) {
                // Placed among all the family lists, not only what the
                // filter accepts: the cursor's part may have moved out of
                // the filter since, and the parts after it must not go
                // with it. A part no longer listed (the family was
                // cancelled since and lists its master) leaves all it
                // lists now to come after.
                let all = OrderSummary::listed(&family);
                let after = all
                    .iter()
                    .position(|s| s.order_id == cursor)
                    .map_or(0, |at| at + 1);
                let rest = all
                    .into_iter()
                    .skip(after)
                    .filter(|s| filter.accepts(s.status, s.created_at))
                    .collect();
                let _ = self.add_rows(rest);
            }
        }
        Ok(Some(cursor.family_id()))
    }

    /// The page: a full one goes on from its last summary, else from
    /// `ended`, where the scan stopped short (none when it read them all).
    fn finish(self, ended: Option<OrderId>) -> OrderList {
        let next_cursor = if self.is_full() {
            self.orders.last().map(|s| s.order_id)
        } else {
            ended
        };
        OrderList {
            orders: self.orders,
            next_cursor,
        }
    }
}

/// Hands a user's families older than `before`, newest first, to `visit`
/// until it answers false or [`USER_LISTING_SCAN_MAX`] were read; answers
/// where a next page goes on (the last family read), none when all were.
fn walk_user_families(
    st: &AppState,
    user: &UserId,
    mut before: Option<OrderId>,
    mut visit: impl FnMut(&OrderFamily) -> bool,
) -> Result<Option<OrderId>, ApiError> {
    let mut read = 0;
    loop {
        let families = st.core.user_orders(user, before.as_ref(), LISTING_BATCH)?;
        let exhausted = families.len() < LISTING_BATCH;
        read += families.len();
        for family in families {
            before = Some(family.order_id);
            if !visit(&family) {
                return Ok(before);
            }
        }
        if exhausted {
            return Ok(None);
        }
        if read >= USER_LISTING_SCAN_MAX {
            return Ok(before);
        }
    }
}

fn listed(family: &OrderFamily, filter: &OrderFilter) -> Vec<OrderSummary> {
    OrderSummary::listed(family)
        .into_iter()
        .filter(|s| filter.accepts(s.status, s.created_at))
        .collect()
}

#[utoipa::path(
    get,
    path = "/v1/orders",
    tag = "orders",
    summary = "List all orders (admin)",
    description = "Newest first, keyset pagination; removed and INVALID orders hidden. A page holds at most `page_size` summaries: one that fills up inside a mixed family ends there, with the last part listed as its `next_cursor`.",
    params(AdminOrdersQuery),
    responses(
        (status = 200, description = "A page of order summaries", body = OrderList),
        (status = 400, description = "`INVALID_REQUEST`, `PAGE_SIZE_INVALID`, `CURSOR_INVALID`, `TIME_INVALID`"),
        (status = 401, description = "`UNAUTHORIZED`: no valid bearer token"),
        (status = 403, description = "`FORBIDDEN`: the token is not an admin's"),
        (status = 503, description = "`OVERLOADED`, `NOT_READY` or `STORAGE_UNAVAILABLE`: retry after `Retry-After` seconds"),
    ),
    security(("bearer_jwt" = ["admin"])),
)]
async fn admin_orders(st: State, req: HttpRequest) -> Reply {
    admin(&st, &req)?;
    let filter = query::<AdminOrdersQuery>(&req)?.parse()?;
    let mut page = Listing::new(filter.page.size);
    let before = page.resume(&st, filter.page.cursor, None, &filter)?;
    let ended = if page.is_full() {
        None
    } else {
        // A family counts as kept when it adds a summary, so the scan's
        // limit of `size` families is not reached before the page is full;
        // once it is, the scan stops at the next family.
        let mut keep = |f: &OrderFamily| {
            if page.is_full() {
                return std::ops::ControlFlow::Break(());
            }
            std::ops::ControlFlow::Continue(page.add(f, &filter) > 0)
        };
        let (_, last) = st
            .core
            .scan_orders(before.as_ref(), filter.page.size, &mut keep)?;
        last
    };
    Ok(json(StatusCode::OK, &page.finish(ended)))
}

#[utoipa::path(
    get,
    path = "/v1/users/{user_id}/after-sales",
    tag = "after-sales",
    summary = "List a user's after-sales",
    description = "Newest order first, keyset pagination, `page_size` 1..100 (default 20); the cursor is the page's last after-sale, so one order's many after-sales fill pages of their own. A request reads at most 2,000 of the user's orders: a page may then come back short, even empty, with a `next_cursor` to go on.",
    params(("user_id" = String, Path, description = "The user; a shopper may name only itself"), PageQuery),
    responses(
        (status = 200, description = "A page of after-sales", body = AfterSaleList),
        (status = 400, description = "`INVALID_REQUEST`, `USER_ID_INVALID`, `PAGE_SIZE_INVALID`, `CURSOR_INVALID`"),
        (status = 401, description = "`UNAUTHORIZED`: no valid bearer token"),
        (status = 403, description = "`FORBIDDEN`: a shopper acting for another user or on another user's order"),
        (status = 503, description = "`OVERLOADED`, `NOT_READY` or `STORAGE_UNAVAILABLE`: retry after `Retry-After` seconds"),
    ),
    security(("bearer_jwt" = [])),
)]
async fn user_after_sales(st: State, req: HttpRequest, path: web::Path<String>) -> Reply {
    let caller = caller(&st, &req)?;
    let user = dto::parse_user_id(&path)?;
    caller.require_user(&user)?;
    let (size, resume) = query::<PageQuery>(&req)?.parse_after_sales()?;
    let mut page = AfterSalePage::new(size);
    let mut before = None;
    match resume {
        AfterSalesCursor::Start => {}
        AfterSalesCursor::Before(family) => before = Some(family),
        AfterSalesCursor::After(last) => {
            let unknown = || {
                ApiError::new(
                    ErrorCode::CURSOR_INVALID,
                    "cursor: not a next_cursor of this listing",
                )
            };
            // Only an order that is not there makes the cursor unknown; an
            // overloaded or restarting core answers as it is.
            let family = match st.core.order(&last.family_id()).await {
                Err(e) if e.code() == ErrorCode::ORDER_NOT_FOUND => return Err(unknown()),
                other => other?,
            };
            let at = family
                .after_sales
                .iter()
                .position(|a| a.after_sale_id == last)
                .filter(|_| family.user_id == user)
                .ok_or_else(unknown)?;
            if !page.take(family.after_sales[..at].iter().rev()) {
                return Ok(page.reply());
            }
            before = Some(family.order_id);
        }
    }
    let mut full = false;
    let ended = walk_user_families(&st, &user, before, |family| {
        full = !page.take(family.after_sales.iter().rev());
        !full
    })?;
    if !full {
        // Short at the read bound: going on with the families older than
        // the last read (a full page names its last after-sale instead).
        page.next = ended.map(|f| f.to_string());
    }
    Ok(page.reply())
}

/// A page of after-sales being filled, newest first.
struct AfterSalePage {
    size: usize,
    views: Vec<AfterSaleView>,
    /// Where the next page resumes: the last after-sale taken, once
    /// another is known to follow it, or the last family read when the
    /// scan stopped at [`USER_LISTING_SCAN_MAX`].
    next: Option<String>,
}

impl AfterSalePage {
    fn new(size: usize) -> AfterSalePage {
        AfterSalePage {
            size,
            views: Vec::with_capacity(size),
            next: None,
        }
    }

    /// Takes after-sales until the page is full; false once it is and one
    /// more is waiting (the page then has a next).
    fn take<'a>(&mut self, after_sales: impl Iterator<Item = &'a AfterSale>) -> bool {
        for a in after_sales {
            if self.views.len() == self.size {
                self.next = self.views.last().map(|v| v.after_sale_id.to_string());
                return false;
            }
            self.views.push(AfterSaleView::from(a));
        }
        true
    }

    fn reply(self) -> HttpResponse {
        json(
            StatusCode::OK,
            &AfterSaleList {
                after_sales: self.views,
                next_cursor: self.next,
            },
        )
    }
}

// ----- catalog and coupons -----

#[utoipa::path(
    put,
    path = "/v1/skus/{sku_code}",
    tag = "catalog",
    summary = "Create or update a SKU (admin)",
    description = "Sets the catalog entry and its total stock (available + locked + sold); the total may not go below what orders have locked or sold.",
    params(("sku_code" = String, Path, description = "The SKU code")),
    request_body = SkuUpsertRequest,
    responses(
        (status = 200, description = "The SKU", body = SkuView),
        (status = 400, description = "`INVALID_REQUEST` (also an `Idempotency-Key` or `If-Match`, which catalog writes do not keep), `SKU_CODE_INVALID`, `SKU_INVALID`, `PRODUCT_TYPE_ERROR`, `AMOUNT_INVALID`"),
        (status = 401, description = "`UNAUTHORIZED`: no valid bearer token"),
        (status = 403, description = "`FORBIDDEN`: the token is not an admin's"),
        (status = 409, description = "`STOCK_BELOW_RESERVED`: the total is below what is locked + sold"),
        (status = 413, description = "`PAYLOAD_TOO_LARGE`: the body is larger than 64 KiB"),
        (status = 503, description = "`OVERLOADED`, `NOT_READY` or `STORAGE_UNAVAILABLE`: retry after `Retry-After` seconds"),
    ),
    security(("bearer_jwt" = ["admin"])),
)]
async fn upsert_sku(
    st: State,
    req: HttpRequest,
    path: web::Path<String>,
    payload: web::Payload,
) -> Reply {
    let caller = admin(&st, &req)?;
    let code = dto::parse_sku_code(&path)?;
    let body = read_body(payload).await?;
    let (details, stock) = parse_json::<SkuUpsertRequest>(&body)?.into_details(code)?;
    let meta = catalog_meta(&req, caller.actor())?;
    let sku = st.core.upsert_sku(&meta, details, stock).await?;
    Ok(json(StatusCode::OK, &SkuView::from(&sku)))
}

#[utoipa::path(
    post,
    path = "/v1/skus/{sku_code}/stock",
    tag = "catalog",
    summary = "Change a SKU's stock (admin)",
    description = "Adds `delta` (negative: takes) to the available stock; never below what is locked + sold.",
    params(("sku_code" = String, Path, description = "The SKU code")),
    request_body = StockDeltaRequest,
    responses(
        (status = 200, description = "The stock after the change", body = StockView),
        (status = 400, description = "`INVALID_REQUEST` (also an `Idempotency-Key` or `If-Match`, which catalog writes do not keep), `SKU_CODE_INVALID`, `SKU_INVALID`"),
        (status = 401, description = "`UNAUTHORIZED`: no valid bearer token"),
        (status = 403, description = "`FORBIDDEN`: the token is not an admin's"),
        (status = 404, description = "`PRODUCT_SKU_NOT_FOUND`"),
        (status = 409, description = "`STOCK_BELOW_RESERVED`"),
        (status = 413, description = "`PAYLOAD_TOO_LARGE`: the body is larger than 64 KiB"),
        (status = 503, description = "`OVERLOADED`, `NOT_READY` or `STORAGE_UNAVAILABLE`: retry after `Retry-After` seconds"),
    ),
    security(("bearer_jwt" = ["admin"])),
)]
async fn add_stock(
    st: State,
    req: HttpRequest,
    path: web::Path<String>,
    payload: web::Payload,
) -> Reply {
    let caller = admin(&st, &req)?;
    let code = dto::parse_sku_code(&path)?;
    let body = read_body(payload).await?;
    let delta = parse_json::<StockDeltaRequest>(&body)?.delta;
    let meta = catalog_meta(&req, caller.actor())?;
    let sku = st.core.add_stock(&meta, &code, delta).await?;
    Ok(json(StatusCode::OK, &StockView::from(&sku)))
}

#[utoipa::path(
    get,
    path = "/v1/skus/{sku_code}",
    tag = "catalog",
    summary = "Read a SKU (admin)",
    description = "The catalog entry with `available`, `locked` and `sold`.",
    params(("sku_code" = String, Path, description = "The SKU code")),
    responses(
        (status = 200, description = "The SKU", body = SkuView),
        (status = 400, description = "`SKU_CODE_INVALID`"),
        (status = 401, description = "`UNAUTHORIZED`: no valid bearer token"),
        (status = 403, description = "`FORBIDDEN`: the token is not an admin's"),
        (status = 404, description = "`PRODUCT_SKU_NOT_FOUND`"),
        (status = 503, description = "`OVERLOADED`, `NOT_READY` or `STORAGE_UNAVAILABLE`: retry after `Retry-After` seconds"),
    ),
    security(("bearer_jwt" = ["admin"])),
)]
async fn sku(st: State, req: HttpRequest, path: web::Path<String>) -> Reply {
    admin(&st, &req)?;
    let code = dto::parse_sku_code(&path)?;
    let sku = st.core.sku(&code)?.ok_or_else(|| {
        ApiError::new(
            ErrorCode::PRODUCT_SKU_NOT_FOUND,
            format!("SKU {code} not found"),
        )
    })?;
    Ok(json(StatusCode::OK, &SkuView::from(&sku)))
}

#[utoipa::path(
    get,
    path = "/v1/skus",
    tag = "catalog",
    summary = "List the catalog (admin)",
    description = "Every SKU with its stock.",
    responses(
        (status = 200, description = "The SKUs", body = crate::openapi::SkuList),
        (status = 401, description = "`UNAUTHORIZED`: no valid bearer token"),
        (status = 403, description = "`FORBIDDEN`: the token is not an admin's"),
        (status = 503, description = "`OVERLOADED`, `NOT_READY` or `STORAGE_UNAVAILABLE`: retry after `Retry-After` seconds"),
    ),
    security(("bearer_jwt" = ["admin"])),
)]
async fn skus(st: State, req: HttpRequest) -> Reply {
    admin(&st, &req)?;
    let skus: Vec<SkuView> = st.core.skus()?.iter().map(SkuView::from).collect();
    Ok(json(StatusCode::OK, &serde_json::json!({ "skus": skus })))
}

#[utoipa::path(
    put,
    path = "/v1/coupons/{coupon_id}",
    tag = "coupons",
    summary = "Issue a coupon (admin)",
    description = "Issues (or reissues, while no order holds it) a coupon to a user.",
    params(("coupon_id" = String, Path, description = "The coupon id")),
    request_body = CouponIssueRequest,
    responses(
        (status = 200, description = "The coupon", body = CouponView),
        (status = 400, description = "`INVALID_REQUEST` (also an `Idempotency-Key` or `If-Match`, which catalog writes do not keep), `COUPON_ID_INVALID`, `COUPON_INVALID`, `USER_ID_INVALID`, `AMOUNT_INVALID`, `TIME_INVALID`"),
        (status = 401, description = "`UNAUTHORIZED`: no valid bearer token"),
        (status = 403, description = "`FORBIDDEN`: the token is not an admin's"),
        (status = 409, description = "`COUPON_IN_USE`: an order has locked or used it"),
        (status = 413, description = "`PAYLOAD_TOO_LARGE`: the body is larger than 64 KiB"),
        (status = 503, description = "`OVERLOADED`, `NOT_READY` or `STORAGE_UNAVAILABLE`: retry after `Retry-After` seconds"),
    ),
    security(("bearer_jwt" = ["admin"])),
)]
async fn issue_coupon(
    st: State,
    req: HttpRequest,
    path: web::Path<String>,
    payload: web::Payload,
) -> Reply {
    let caller = admin(&st, &req)?;
    let id = dto::parse_coupon_id(&path)?;
    let body = read_body(payload).await?;
    let details = parse_json::<CouponIssueRequest>(&body)?.into_details(id)?;
    let meta = catalog_meta(&req, caller.actor())?;
    let coupon = st.core.issue_coupon(&meta, details).await?;
    Ok(json(StatusCode::OK, &CouponView::from(&coupon)))
}

#[utoipa::path(
    get,
    path = "/v1/coupons/{coupon_id}",
    tag = "coupons",
    summary = "Read a coupon",
    description = "The coupon with its `status` (UNUSED, LOCKED or USED) and the order holding it. Its user or an admin.",
    params(("coupon_id" = String, Path, description = "The coupon id")),
    responses(
        (status = 200, description = "The coupon", body = CouponView),
        (status = 400, description = "`COUPON_ID_INVALID`"),
        (status = 401, description = "`UNAUTHORIZED`: no valid bearer token"),
        (status = 403, description = "`FORBIDDEN`: another user's coupon"),
        (status = 404, description = "`USER_COUPON_NOT_EXIST`"),
        (status = 503, description = "`OVERLOADED`, `NOT_READY` or `STORAGE_UNAVAILABLE`: retry after `Retry-After` seconds"),
    ),
    security(("bearer_jwt" = [])),
)]
async fn coupon(st: State, req: HttpRequest, path: web::Path<String>) -> Reply {
    let caller = caller(&st, &req)?;
    let id = dto::parse_coupon_id(&path)?;
    let coupon = st.core.coupon(&id)?.ok_or_else(|| {
        ApiError::new(
            ErrorCode::USER_COUPON_NOT_EXIST,
            format!("coupon {id} not found"),
        )
    })?;
    if let Caller::Shopper(user) = &caller {
        if *user != coupon.details.user_id {
            return Err(ApiError::forbidden("not your coupon"));
        }
    }
    Ok(json(StatusCode::OK, &CouponView::from(&coupon)))
}

// ----- events -----

#[utoipa::path(
    get,
    path = "/v1/events",
    tag = "events",
    summary = "Read the event feed (admin)",
    description = "Events with a sequence number greater than `after`, in order; `next` is the `after` of the next page.",
    params(EventsQuery),
    responses(
        (status = 200, description = "A page of events", body = EventsPage),
        (status = 400, description = "`INVALID_REQUEST`, `CURSOR_INVALID`, `PAGE_SIZE_INVALID`"),
        (status = 401, description = "`UNAUTHORIZED`: no valid bearer token"),
        (status = 403, description = "`FORBIDDEN`: the token is not an admin's"),
        (status = 503, description = "`OVERLOADED`, `NOT_READY` or `STORAGE_UNAVAILABLE`: retry after `Retry-After` seconds"),
    ),
    security(("bearer_jwt" = ["admin"])),
)]
async fn events(st: State, req: HttpRequest) -> Reply {
    admin(&st, &req)?;
    let range = query::<EventsQuery>(&req)?.parse()?;
    let (events, mut next) = st.core.events_after(range.after, range.limit)?;
    // The `EventsPage` JSON, each event serialized once: its length decides
    // whether it still fits, and its text goes into the page as it is.
    let mut body = String::from("{\"events\":[");
    let mut listed = 0_usize;
    for event in &events {
        let Some(view) = EventView::of(event, true) else {
            continue;
        };
        // Serializing this plain view cannot fail.
        let text = serde_json::to_string(&view).unwrap_or_default();
        if body.len() + text.len() > EVENTS_PAGE_BYTES_MAX && listed > 0 {
            // Full: the next page starts at this event.
            next = event.seq - 1;
            break;
        }
        if listed > 0 {
            body.push(',');
        }
        body.push_str(&text);
        listed += 1;
    }
    body.push_str(&format!("],\"next\":{next}}}"));
    Ok(raw_json(200, body))
}

/// Server-sent events from `after` (or `Last-Event-ID`), at least once:
/// each event's `id` is its sequence number, so a client that reconnects
/// with it resumes where it stopped.
#[utoipa::path(
    get,
    path = "/v1/events/stream",
    tag = "events",
    summary = "Stream events (admin, server-sent events)",
    description = "Server-sent events after `after` (or `Last-Event-ID`), at least once and resumable: each event's `id` is its sequence number, its `event` its type and its `data` the event as JSON (an EventView); comment lines keep an idle stream open.",
    params(StreamQuery, crate::openapi::LastEventIdHeader),
    responses(
        (status = 200, description = "An endless `text/event-stream`", body = String, content_type = "text/event-stream"),
        (status = 400, description = "`INVALID_REQUEST`, `CURSOR_INVALID`"),
        (status = 401, description = "`UNAUTHORIZED`: no valid bearer token"),
        (status = 403, description = "`FORBIDDEN`: the token is not an admin's"),
        (status = 503, description = "`OVERLOADED`: 64 event streams are open; `NOT_READY`, `STORAGE_UNAVAILABLE`"),
    ),
    security(("bearer_jwt" = ["admin"])),
)]
async fn event_stream(st: State, req: HttpRequest) -> Reply {
    admin(&st, &req)?;
    let mut after = query::<StreamQuery>(&req)?.parse()?;
    // An empty header is no cursor: `?after` stands.
    if let Some(last) = header_str(&req, "last-event-id")?.filter(|l| !l.trim().is_empty()) {
        // Checked as `?after` is: the same cursor in another place.
        after = event_cursor(Some(&last.trim().to_owned()))?;
    }
    st.core.check_events_cursor(after)?;
    let slot = StreamSlot::take(&st.streams)?;
    let core = st.core.clone();
    let draining = Arc::clone(&st.draining);
    let stream = futures_util::stream::unfold(
        (core, after, std::time::Instant::now(), draining, slot),
        |(core, after, mut quiet_since, draining, slot)| async move {
            loop {
                if !core.is_running() || draining.load(std::sync::atomic::Ordering::SeqCst) {
                    // Shutting down: end the stream so the server can drain.
                    return None;
                }
                match core.events_after(after, STREAM_BATCH) {
                    Ok((events, mut next)) if next > after => {
                        let mut chunk = String::new();
                        for (seq, event) in events
                            .iter()
                            .filter_map(|e| EventView::of(e, true).map(|v| (e.seq, v)))
                        {
                            if chunk.len() >= STREAM_CHUNK_BYTES_MAX {
                                // Full: the next chunk starts at this event.
                                next = seq - 1;
                                break;
                            }
                            let data = serde_json::to_string(&event).unwrap_or_default();
                            chunk.push_str(&format!(
                                "id: {}\nevent: {}\ndata: {data}\n\n",
                                event.seq, event.event_type
                            ));
                        }
                        if chunk.is_empty() {
                            // Only internal records: move on silently.
                            chunk.push_str(&format!(": {next}\n\n"));
                        }
                        let bytes = web::Bytes::from(chunk);
                        return Some((
                            Ok::<_, actix_web::Error>(bytes),
                            (core, next, std::time::Instant::now(), draining, slot),
                        ));
                    }
                    Ok(_) => {}
                    Err(e) if e.code() == ErrorCode::CURSOR_INVALID => {
                        // Fell behind the journal's retention: the client
                        // reconnects and hears where it can resume.
                        tracing::warn!(error = %e, "event stream fell behind retention; ending it");
                        return None;
                    }
                    Err(e) => {
                        tracing::warn!(error = %e, "event stream read failed; retrying");
                    }
                }
                if quiet_since.elapsed() >= STREAM_KEEPALIVE {
                    quiet_since = std::time::Instant::now();
                    let bytes = web::Bytes::from_static(b": keep-alive\n\n");
                    return Some((Ok(bytes), (core, after, quiet_since, draining, slot)));
                }
                actix_web::rt::time::sleep(STREAM_POLL).await;
            }
        },
    );
    Ok(HttpResponse::Ok()
        .content_type("text/event-stream")
        .insert_header((header::CACHE_CONTROL, "no-cache"))
        .streaming(stream))
}
