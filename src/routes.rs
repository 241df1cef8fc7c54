//! The routes of API.md. Each handler authenticates the caller, parses its
//! input into the domain's types, asks the core, and renders the answer;
//! every failure is an [`ApiError`] (`{code, message}` with its one status).

use crate::auth::{verify_signature, Caller, TokenKeys, SIGNATURE_HEADER};
use crate::dto::{
    self, AddressRequest, AdminOrdersQuery, AfterSaleApplyRequest, AfterSaleCreated, AfterSaleList,
    AfterSaleView, CancelRequest, CouponIssueRequest, CouponView, CreateOrderRequest,
    CreateOrderResponse, DryRunQuery, DryRunView, EventView, EventsPage, EventsQuery,
    FulfillmentRequest, LackRequest, NoteRequest, OrderDetail, OrderEvents, OrderFilter,
    OrderIdRequest, OrderIdResponse, OrderList, OrderSummary, PageQuery, PayCallbackRequest,
    PayCallbackResponse, PrepayRequest, PrepayResponse, PriceRequest, PriceResponse,
    RefundCallbackRequest, RemoveRequest, RemovedResponse, ReviewRequest, RevokeRequest,
    SkuUpsertRequest, SkuView, StockDeltaRequest, StockView, StreamQuery, UserOrdersQuery,
    VersionResponse,
};
use crate::error::{parse_json, ApiError};
use crate::metrics::Metrics;
use actix_web::http::header::{self, HeaderValue};
use actix_web::http::StatusCode;
use actix_web::{web, HttpMessage, HttpRequest, HttpResponse};
use ordercore_actors::{Idempotency, OrderCore, Outcome, WriteOptions};
use ordercore_domain::ids::{IdempotencyKey, RequestId, TradeNo};
use ordercore_domain::{
    Action, Actor, AfterSaleId, Command, CommandMeta, ErrorCode, Event, EventBody, OrderFamily,
    OrderId, Timestamp,
};
use serde::Serialize;
use std::sync::Arc;
use std::time::Duration;

/// Largest request body accepted (64 KiB): a create with the maximum 100
/// lines and long addresses is about 20 KiB.
pub const BODY_LIMIT_BYTES: usize = 64 * 1024;
/// Events per poll of the live event stream.
pub const STREAM_BATCH: usize = 256;
/// How often the live event stream looks for new events.
pub const STREAM_POLL: Duration = Duration::from_millis(200);
/// A comment line keeps idle event streams open through proxies.
pub const STREAM_KEEPALIVE: Duration = Duration::from_secs(15);
/// Families a user listing reads per storage call.
const LISTING_BATCH: usize = 100;

/// What every handler shares.
#[derive(Debug)]
pub struct AppState {
    pub core: OrderCore,
    pub tokens: TokenKeys,
    pub payment_secret: String,
    pub metrics: Metrics,
    /// When this process started serving (the dashboard's period).
    pub started_at: Timestamp,
}

type State = web::Data<AppState>;
type Reply = Result<HttpResponse, ApiError>;
/// Renders a change's response from the family after it and its events;
/// the same function records the reply of an `Idempotency-Key`.
type RenderFn = Arc<dyn Fn(&OrderFamily, &[Event]) -> (u16, String) + Send + Sync>;

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

fn header_str<'a>(req: &'a HttpRequest, name: &str) -> Result<Option<&'a str>, ApiError> {
    req.headers()
        .get(name)
        .map(|v| {
            v.to_str()
                .map_err(|_| ApiError::invalid_request(format!("{name}: not visible ASCII")))
        })
        .transpose()
}

/// `If-Match: "<version>"` (`*` and no header match any version).
fn if_match(req: &HttpRequest) -> Result<Option<u64>, ApiError> {
    let Some(raw) = header_str(req, "if-match")? else {
        return Ok(None);
    };
    let raw = raw.trim();
    if raw == "*" {
        return Ok(None);
    }
    raw.trim_start_matches("W/")
        .trim_matches('"')
        .parse()
        .map(Some)
        .map_err(|_| ApiError::invalid_request(format!("If-Match: {raw:?} is not a version")))
}

fn idempotency_key(req: &HttpRequest) -> Result<Option<IdempotencyKey>, ApiError> {
    header_str(req, "idempotency-key")?
        .map(|k| Ok(IdempotencyKey::parse(k)?))
        .transpose()
}

fn meta(req: &HttpRequest, actor: Actor) -> Result<CommandMeta, ApiError> {
    Ok(CommandMeta {
        actor,
        request_id: request_id(req),
        idempotency_key: idempotency_key(req)?,
        reason: None,
        if_match: if_match(req)?,
    })
}

/// Reads the body, refusing more than [`BODY_LIMIT_BYTES`].
async fn read_body(payload: web::Payload) -> Result<web::Bytes, ApiError> {
    match payload.to_bytes_limited(BODY_LIMIT_BYTES).await {
        Ok(Ok(bytes)) => Ok(bytes),
        Ok(Err(e)) => Err(ApiError::invalid_request(format!(
            "cannot read the body: {e}"
        ))),
        Err(_) => Err(ApiError::payload_too_large(BODY_LIMIT_BYTES)),
    }
}

fn path_order_id(raw: &str) -> Result<OrderId, ApiError> {
    dto::parse_order_id(raw)
}

fn path_after_sale_id(raw: &str) -> Result<AfterSaleId, ApiError> {
    dto::parse_after_sale_id(raw)
}

fn dry_run(query: &web::Query<DryRunQuery>) -> Result<bool, ApiError> {
    query.clone().into_inner().parse()
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

fn detail_render(id: OrderId) -> RenderFn {
    Arc::new(
        move |family: &OrderFamily, _: &[Event]| match OrderDetail::of(family, id) {
            Some(detail) => rendered(200, &detail),
            None => rendered(200, &OrderDetail::of(family, family.order_id)),
        },
    )
}

fn after_sale_render(id: AfterSaleId) -> RenderFn {
    Arc::new(move |family: &OrderFamily, _: &[Event]| {
        rendered(200, &family.after_sale(&id).map(AfterSaleView::from))
    })
}

/// The after-sale a change committed (apply, lack), 201.
fn committed_render() -> RenderFn {
    Arc::new(|family: &OrderFamily, events: &[Event]| {
        let id = events.iter().find_map(|e| match &e.body {
            EventBody::AfterSaleCommitted(a) => Some(a.after_sale_id),
            _ => None,
        });
        let created = id
            .and_then(|id| family.after_sale(&id))
            .map(AfterSaleCreated::from);
        rendered(201, &created)
    })
}

/// The HTTP response of a core outcome.
fn finish(outcome: Outcome, render: &RenderFn, etag: bool) -> HttpResponse {
    match outcome {
        Outcome::Applied { family, unit } => {
            let events = unit.as_ref().map_or(&[][..], |u| u.events.as_slice());
            let (status, body) = render(&family, events);
            let mut res = raw_json(status, body);
            if etag {
                set_etag(&mut res, family.version);
            }
            res
        }
        Outcome::Replayed { status, body } => {
            let mut res = raw_json(status, body);
            res.headers_mut().insert(
                header::HeaderName::from_static("idempotent-replayed"),
                HeaderValue::from_static("true"),
            );
            res
        }
        Outcome::DryRun { dry_run, .. } => json(StatusCode::OK, &DryRunView::from(&dry_run)),
    }
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
    render: &RenderFn,
) -> WriteOptions {
    let idempotency = match (&meta.idempotency_key, dry_run) {
        (Some(key), false) => {
            let mut hashed = Vec::with_capacity(body.len() + 64);
            hashed.extend_from_slice(req.method().as_str().as_bytes());
            hashed.push(b' ');
            hashed.extend_from_slice(req.uri().path().as_bytes());
            hashed.push(b'\n');
            hashed.extend_from_slice(body);
            let render = Arc::clone(render);
            Some(Idempotency {
                key: key.clone(),
                request_hash: dto::fnv1a_64(&hashed),
                render: Box::new(move |f, e| render(f, e)),
            })
        }
        _ => None,
    };
    WriteOptions {
        dry_run,
        idempotency,
    }
}

/// Runs a command on an existing family and renders its outcome.
async fn write(
    st: &AppState,
    req: &HttpRequest,
    body: &[u8],
    cmd: Command,
    dry_run: bool,
    render: RenderFn,
    etag: bool,
) -> Reply {
    let opts = options(req, body, &cmd.meta, dry_run, &render);
    let outcome = st.core.execute(cmd, opts).await?;
    Ok(finish(outcome, &render, etag))
}

// ----- operations -----

async fn healthz() -> HttpResponse {
    HttpResponse::Ok().json(serde_json::json!({"status": "ok"}))
}

async fn readyz(st: State) -> Reply {
    if st.core.is_ready() {
        Ok(HttpResponse::Ok().json(serde_json::json!({"status": "ready"})))
    } else {
        Err(ApiError::not_ready(
            "recovering, shutting down, or the writer is failing",
        ))
    }
}

async fn metrics(st: State) -> HttpResponse {
    HttpResponse::Ok()
        .content_type("text/plain; version=0.0.4")
        .body(st.metrics.render(&st.core))
}

async fn dashboard(st: State, req: HttpRequest) -> Reply {
    admin(&st, &req)?;
    let m = st.core.metrics();
    let ratio = |a: u64, b: u64| if b == 0 { 0.0 } else { a as f64 / b as f64 };
    let errors: serde_json::Map<String, serde_json::Value> = st
        .metrics
        .errors_by_code()
        .into_iter()
        .map(|(code, n)| (code, n.into()))
        .collect();
    Ok(HttpResponse::Ok().json(serde_json::json!({
        "since": st.started_at,
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

async fn create(st: State, req: HttpRequest, payload: web::Payload) -> Reply {
    let caller = caller(&st, &req)?;
    let body = read_body(payload).await?;
    let cmd = parse_json::<CreateOrderRequest>(&body)?.into_command()?;
    caller.require_user(&cmd.user_id)?;
    let meta = meta(&req, caller.actor())?;
    let render: RenderFn = Arc::new(|family: &OrderFamily, events: &[Event]| {
        let status = if events.is_empty() { 200 } else { 201 };
        rendered(status, &CreateOrderResponse::of(family))
    });
    let opts = options(&req, &body, &meta, false, &render);
    let outcome = st.core.create_order(cmd, meta, opts.idempotency).await?;
    Ok(finish(outcome, &render, true))
}

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

async fn order_events(st: State, req: HttpRequest, path: web::Path<String>) -> Reply {
    let caller = caller(&st, &req)?;
    let id = path_order_id(&path)?;
    let family = st.core.order(&id).await?;
    check_read(&caller, &family)?;
    Ok(json(
        StatusCode::OK,
        &OrderEvents::of(&family, caller.is_admin()),
    ))
}

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
    let render: RenderFn =
        Arc::new(|family: &OrderFamily, _: &[Event]| rendered(200, &PrepayResponse::of(family)));
    write(&st, &req, &body, cmd, false, render, true).await
}

async fn cancel(
    st: State,
    req: HttpRequest,
    path: web::Path<String>,
    query: web::Query<DryRunQuery>,
    payload: web::Payload,
) -> Reply {
    let caller = caller(&st, &req)?;
    let id = path_order_id(&path)?;
    let dry_run = dry_run(&query)?;
    let body = read_body(payload).await?;
    let act = parse_json::<CancelRequest>(&body)?.into_action(id)?;
    caller.require_user(&act.user_id)?;
    let cmd = Command {
        meta: meta(&req, caller.actor())?,
        action: act.action,
    };
    write(&st, &req, &body, cmd, dry_run, detail_render(id), true).await
}

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

async fn remove(st: State, req: HttpRequest, payload: web::Payload) -> Reply {
    let caller = caller(&st, &req)?;
    let body = read_body(payload).await?;
    let batch = parse_json::<RemoveRequest>(&body)?.parse()?;
    caller.require_user(&batch.user_id)?;
    let meta = meta(&req, caller.actor())?;
    let removed = st.core.remove_orders(meta, &batch.order_ids).await?;
    Ok(json(StatusCode::OK, &RemovedResponse { removed }))
}

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
    let render: RenderFn = Arc::new(|family: &OrderFamily, _: &[Event]| {
        rendered(
            201,
            &VersionResponse {
                version: family.version,
            },
        )
    });
    write(&st, &req, &body, cmd, false, render, true).await
}

async fn apply_after_sale(
    st: State,
    req: HttpRequest,
    path: web::Path<String>,
    query: web::Query<DryRunQuery>,
    payload: web::Payload,
) -> Reply {
    let caller = caller(&st, &req)?;
    let id = path_order_id(&path)?;
    let dry_run = dry_run(&query)?;
    let body = read_body(payload).await?;
    let act = parse_json::<AfterSaleApplyRequest>(&body)?.into_action(id)?;
    caller.require_user(&act.user_id)?;
    let cmd = Command {
        meta: meta(&req, caller.actor())?,
        action: act.action,
    };
    write(&st, &req, &body, cmd, dry_run, committed_render(), false).await
}

async fn lack(
    st: State,
    req: HttpRequest,
    path: web::Path<String>,
    query: web::Query<DryRunQuery>,
    payload: web::Payload,
) -> Reply {
    let caller = admin(&st, &req)?;
    let id = path_order_id(&path)?;
    let dry_run = dry_run(&query)?;
    let body = read_body(payload).await?;
    let action = parse_json::<LackRequest>(&body)?.into_action(id)?;
    let cmd = Command {
        meta: meta(&req, caller.actor())?,
        action,
    };
    write(&st, &req, &body, cmd, dry_run, committed_render(), false).await
}

async fn pay_callback(st: State, req: HttpRequest, payload: web::Payload) -> Reply {
    let body = read_body(payload).await?;
    verify_signature(
        &st.payment_secret,
        &body,
        header_str(&req, SIGNATURE_HEADER)?,
    )?;
    let action = parse_json::<PayCallbackRequest>(&body)?.into_action()?;
    let trade_no: Option<TradeNo> = match &action {
        Action::PayCallback { trade_no, .. } => Some(trade_no.clone()),
        _ => None,
    };
    let cmd = Command {
        meta: meta(&req, Actor::provider())?,
        action,
    };
    let render: RenderFn = Arc::new(move |family: &OrderFamily, events: &[Event]| {
        let response = trade_no
            .as_ref()
            .map(|t| PayCallbackResponse::of(family, t, !events.is_empty()));
        rendered(200, &response)
    });
    write(&st, &req, &body, cmd, false, render, false).await
}

async fn refund_callback(st: State, req: HttpRequest, payload: web::Payload) -> Reply {
    let body = read_body(payload).await?;
    verify_signature(
        &st.payment_secret,
        &body,
        header_str(&req, SIGNATURE_HEADER)?,
    )?;
    let (id, action) = parse_json::<RefundCallbackRequest>(&body)?.into_action()?;
    let cmd = Command {
        meta: meta(&req, Actor::provider())?,
        action,
    };
    write(&st, &req, &body, cmd, false, after_sale_render(id), false).await
}

// ----- after-sales -----

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

async fn review(
    st: State,
    req: HttpRequest,
    path: web::Path<String>,
    query: web::Query<DryRunQuery>,
    payload: web::Payload,
) -> Reply {
    let caller = admin(&st, &req)?;
    let id = path_after_sale_id(&path)?;
    let dry_run = dry_run(&query)?;
    let body = read_body(payload).await?;
    let action = parse_json::<ReviewRequest>(&body)?.into_action(id);
    let cmd = Command {
        meta: meta(&req, caller.actor())?,
        action,
    };
    write(&st, &req, &body, cmd, dry_run, after_sale_render(id), false).await
}

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

async fn user_orders(
    st: State,
    req: HttpRequest,
    path: web::Path<String>,
    query: web::Query<UserOrdersQuery>,
) -> Reply {
    let caller = caller(&st, &req)?;
    let user = dto::parse_user_id(&path)?;
    caller.require_user(&user)?;
    let filter = query.into_inner().parse()?;
    let mut orders = Vec::new();
    let mut cursor = filter.page.cursor;
    let mut next_cursor = None;
    'pages: loop {
        let families = st.core.user_orders(&user, cursor.as_ref(), LISTING_BATCH)?;
        let exhausted = families.len() < LISTING_BATCH;
        for family in families {
            cursor = Some(family.order_id);
            orders.extend(listed(&family, &filter));
            if orders.len() >= filter.page.size {
                next_cursor = Some(family.order_id);
                break 'pages;
            }
        }
        if exhausted {
            break;
        }
    }
    Ok(json(
        StatusCode::OK,
        &OrderList {
            orders,
            next_cursor,
        },
    ))
}

fn listed(family: &OrderFamily, filter: &OrderFilter) -> Vec<OrderSummary> {
    OrderSummary::listed(family)
        .into_iter()
        .filter(|s| filter.accepts(s.status, s.created_at))
        .collect()
}

async fn admin_orders(st: State, req: HttpRequest, query: web::Query<AdminOrdersQuery>) -> Reply {
    admin(&st, &req)?;
    let filter = query.into_inner().parse()?;
    let mut keep = |f: &OrderFamily| !listed(f, &filter).is_empty();
    let (families, last) =
        st.core
            .scan_orders(filter.page.cursor.as_ref(), filter.page.size, &mut keep)?;
    let orders: Vec<OrderSummary> = families.iter().flat_map(|f| listed(f, &filter)).collect();
    // A full page, or a scan that stopped at its limit, continues from the
    // last family examined.
    let next_cursor = if families.len() >= filter.page.size || last.is_some() {
        last
    } else {
        None
    };
    Ok(json(
        StatusCode::OK,
        &OrderList {
            orders,
            next_cursor,
        },
    ))
}

async fn user_after_sales(
    st: State,
    req: HttpRequest,
    path: web::Path<String>,
    query: web::Query<PageQuery>,
) -> Reply {
    let caller = caller(&st, &req)?;
    let user = dto::parse_user_id(&path)?;
    caller.require_user(&user)?;
    let page = query.into_inner().parse()?;
    let mut after_sales = Vec::new();
    let mut cursor = page.cursor;
    let mut next_cursor = None;
    'pages: loop {
        let families = st.core.user_orders(&user, cursor.as_ref(), LISTING_BATCH)?;
        let exhausted = families.len() < LISTING_BATCH;
        for family in families {
            cursor = Some(family.order_id);
            after_sales.extend(family.after_sales.iter().rev().map(AfterSaleView::from));
            if after_sales.len() >= page.size {
                next_cursor = Some(family.order_id);
                break 'pages;
            }
        }
        if exhausted {
            break;
        }
    }
    Ok(json(
        StatusCode::OK,
        &AfterSaleList {
            after_sales,
            next_cursor,
        },
    ))
}

// ----- catalog and coupons -----

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
    let meta = meta(&req, caller.actor())?;
    let sku = st.core.upsert_sku(&meta, details, stock).await?;
    Ok(json(StatusCode::OK, &SkuView::from(&sku)))
}

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
    let meta = meta(&req, caller.actor())?;
    let sku = st.core.add_stock(&meta, &code, delta).await?;
    Ok(json(StatusCode::OK, &StockView::from(&sku)))
}

async fn sku(st: State, req: HttpRequest, path: web::Path<String>) -> Reply {
    caller(&st, &req)?;
    let code = dto::parse_sku_code(&path)?;
    let sku = st.core.sku(&code)?.ok_or_else(|| {
        ApiError::new(
            ErrorCode::PRODUCT_SKU_NOT_FOUND,
            format!("SKU {code} not found"),
        )
    })?;
    Ok(json(StatusCode::OK, &SkuView::from(&sku)))
}

async fn skus(st: State, req: HttpRequest) -> Reply {
    caller(&st, &req)?;
    let skus: Vec<SkuView> = st.core.skus()?.iter().map(SkuView::from).collect();
    Ok(json(StatusCode::OK, &serde_json::json!({ "skus": skus })))
}

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
    let meta = meta(&req, caller.actor())?;
    let coupon = st.core.issue_coupon(&meta, details).await?;
    Ok(json(StatusCode::OK, &CouponView::from(&coupon)))
}

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

async fn events(st: State, req: HttpRequest, query: web::Query<EventsQuery>) -> Reply {
    admin(&st, &req)?;
    let range = query.into_inner().parse()?;
    let (events, next) = st.core.events_after(range.after, range.limit)?;
    let events = events
        .iter()
        .filter_map(|e| EventView::of(e, true))
        .collect();
    Ok(json(StatusCode::OK, &EventsPage { events, next }))
}

/// Server-sent events from `after` (or `Last-Event-ID`), at least once:
/// each event's `id` is its sequence number, so a client that reconnects
/// with it resumes where it stopped.
async fn event_stream(st: State, req: HttpRequest, query: web::Query<StreamQuery>) -> Reply {
    admin(&st, &req)?;
    let mut after = query.into_inner().parse()?;
    if let Some(last) = header_str(&req, "last-event-id")? {
        after = last
            .trim()
            .parse()
            .map_err(|_| ApiError::invalid_request("Last-Event-ID: not a sequence number"))?;
    }
    let core = st.core.clone();
    let stream = futures_util::stream::unfold(
        (core, after, std::time::Instant::now()),
        |(core, after, mut quiet_since)| async move {
            loop {
                if !core.is_running() {
                    // Shutting down: end the stream so the server can drain.
                    return None;
                }
                match core.events_after(after, STREAM_BATCH) {
                    Ok((events, next)) if next > after => {
                        let mut chunk = String::new();
                        for event in events.iter().filter_map(|e| EventView::of(e, true)) {
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
                            (core, next, std::time::Instant::now()),
                        ));
                    }
                    Ok(_) => {}
                    Err(e) => {
                        tracing::warn!(error = %e, "event stream read failed; retrying");
                    }
                }
                if quiet_since.elapsed() >= STREAM_KEEPALIVE {
                    quiet_since = std::time::Instant::now();
                    let bytes = web::Bytes::from_static(b": keep-alive\n\n");
                    return Some((Ok(bytes), (core, after, quiet_since)));
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
