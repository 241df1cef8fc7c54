//! `GET /openapi.json`: the OpenAPI 3 document of the API, generated from
//! the route handlers' `#[utoipa::path]` annotations (in [`crate::routes`])
//! and the request and response types (in [`crate::dto`]).
//!
//! The annotations say what differs from route to route: method, path,
//! parameters, body, success responses and which error statuses (and
//! codes) a route can give. What every route shares is added here, once, by
//! [`Conventions`], so no annotation can forget it:
//!
//! * every error response carries the [`ErrorBody`] schema, and every 503
//!   the `Retry-After` header;
//! * every operation takes `X-Request-Id`, and every response echoes it;
//! * every success of a route that takes `Idempotency-Key` may carry
//!   `Idempotent-Replayed: true` (a dry run never does);
//! * the security schemes, and the catalogue of every error code with its
//!   HTTP status, generated from [`ErrorCode::ALL`].

use crate::dto::{
    AddressRequest, AfterSaleApplyRequest, AfterSaleCreated, AfterSaleList, AfterSaleView,
    CancelRequest, CouponIssueRequest, CouponView, CreateOrderRequest, CreateOrderResponse,
    DryRunView, EventView, EventsPage, FulfillmentRequest, LackRequest, NoteRequest, OrderDetail,
    OrderEvents, OrderIdRequest, OrderIdResponse, OrderList, OrderSummary, PayCallbackRequest,
    PayCallbackResponse, PrepayRequest, PrepayResponse, PriceRequest, PriceResponse,
    RefundCallbackRequest, RemoveRequest, RemovedResponse, ReviewRequest, RevokeRequest,
    SkuUpsertRequest, SkuView, StockDeltaRequest, StockView, VersionResponse,
};
use crate::error::ErrorBody;
use actix_web::HttpResponse;
use ordercore_domain::ErrorCode;
use serde::Serialize;
use std::collections::BTreeMap;
use std::fmt::Write as _;
use utoipa::openapi::extensions::Extensions;
use utoipa::openapi::header::HeaderBuilder;
use utoipa::openapi::path::{Operation, ParameterBuilder, ParameterIn};
use utoipa::openapi::schema::{ObjectBuilder, Schema, Type};
use utoipa::openapi::security::{ApiKey, ApiKeyValue, Http, HttpAuthScheme, SecurityScheme};
use utoipa::openapi::{Components, ContentBuilder, License, Ref, RefOr, Required};
use utoipa::{IntoParams, Modify, OpenApi, ToSchema};

/// The security scheme of shoppers' and admins' bearer JWTs. Admin-only
/// operations require it with the role `admin` (OpenAPI 3.1 roles).
pub const BEARER_SCHEME: &str = "bearer_jwt";
/// The security scheme of the payment provider's signed callbacks.
pub const SIGNATURE_SCHEME: &str = "provider_signature";
/// The name of the error-code catalogue schema.
pub const ERROR_CODE_SCHEMA: &str = "ErrorCode";
/// The extension of [`ERROR_CODE_SCHEMA`] that maps every code to its
/// HTTP status, for tools.
pub const HTTP_STATUS_EXTENSION: &str = "x-http-status";

const REQUEST_ID_HEADER: &str = "X-Request-Id";
const IDEMPOTENCY_KEY_HEADER: &str = "Idempotency-Key";
const REPLAYED_HEADER: &str = "Idempotent-Replayed";

/// The API document.
#[derive(Debug, OpenApi)]
#[openapi(
    info(title = "ordercore"),
    paths(
        crate::routes::healthz,
        crate::routes::readyz,
        crate::routes::metrics,
        serve,
        crate::routes::order_id,
        crate::routes::price,
        crate::routes::remove,
        crate::routes::create,
        crate::routes::admin_orders,
        crate::routes::order,
        crate::routes::order_events,
        crate::routes::prepay,
        crate::routes::cancel,
        crate::routes::address,
        crate::routes::fulfill,
        crate::routes::note,
        crate::routes::apply_after_sale,
        crate::routes::lack,
        crate::routes::pay_callback,
        crate::routes::refund_callback,
        crate::routes::after_sale,
        crate::routes::revoke,
        crate::routes::review,
        crate::routes::retry,
        crate::routes::user_orders,
        crate::routes::user_after_sales,
        crate::routes::skus,
        crate::routes::upsert_sku,
        crate::routes::sku,
        crate::routes::add_stock,
        crate::routes::issue_coupon,
        crate::routes::coupon,
        crate::routes::events,
        crate::routes::event_stream,
        crate::routes::dashboard,
    ),
    components(schemas(
        ErrorBody,
        OrderIdRequest,
        OrderIdResponse,
        PriceRequest,
        PriceResponse,
        CreateOrderRequest,
        CreateOrderResponse,
        PrepayRequest,
        PrepayResponse,
        PayCallbackRequest,
        PayCallbackResponse,
        CancelRequest,
        AddressRequest,
        RemoveRequest,
        RemovedResponse,
        FulfillmentRequest,
        AfterSaleApplyRequest,
        AfterSaleCreated,
        RevokeRequest,
        ReviewRequest,
        RefundCallbackRequest,
        LackRequest,
        NoteRequest,
        VersionResponse,
        SkuUpsertRequest,
        StockDeltaRequest,
        SkuView,
        SkuList,
        StockView,
        CouponIssueRequest,
        CouponView,
        OrderDetail,
        OrderSummary,
        OrderList,
        AfterSaleView,
        AfterSaleList,
        OrderEvents,
        EventView,
        EventsPage,
        DryRunView,
        OrderDetailOrDryRun,
        AfterSaleOrDryRun,
        HealthStatus,
        Dashboard,
    )),
    tags(
        (name = "orders", description = "Order ids, pricing, creation, cancellation, address, removal, reads and listings"),
        (name = "payments", description = "Prepay and the payment provider's signed callbacks"),
        (name = "fulfillment", description = "Warehouse and carrier steps (admin)"),
        (name = "after-sales", description = "Returns, refunds, lack and the refund callback"),
        (name = "catalog", description = "SKUs and stock"),
        (name = "coupons", description = "Coupons issued to users"),
        (name = "events", description = "The global event feed and its live stream (admin)"),
        (name = "operations", description = "Health, readiness, metrics, the dashboard and this document"),
    ),
    modifiers(&Conventions)
)]
pub struct ApiDoc;

/// Serves the document.
#[utoipa::path(
    get,
    path = "/openapi.json",
    tag = "operations",
    summary = "This OpenAPI document",
    description = "The OpenAPI 3 document of the API, generated from the code.",
    responses((status = 200, description = "The document", body = Object)),
)]
pub async fn serve() -> HttpResponse {
    HttpResponse::Ok().json(ApiDoc::openapi())
}

// ----- schemas of responses the handlers build inline -----

/// `{"status": "ok"}` (`/healthz`) or `{"status": "ready"}` (`/readyz`).
#[derive(Debug, Serialize, ToSchema)]
pub struct HealthStatus {
    /// `ok` or `ready`.
    pub status: String,
}

/// `GET /v1/skus`: the whole catalog.
#[derive(Debug, Serialize, ToSchema)]
pub struct SkuList {
    pub skus: Vec<SkuView>,
}

/// `GET /v1/dashboard` (admin): today's figures (the UTC day), counted from
/// midnight, or from this process's start when it started today.
#[derive(Debug, Serialize, ToSchema)]
pub struct Dashboard {
    /// When counting began: today's UTC midnight, or this process's start
    /// when it started today (the figures are not stored across restarts).
    #[schema(format = DateTime)]
    pub since: String,
    pub orders_created: u64,
    pub orders_paid: u64,
    pub orders_canceled: u64,
    pub orders_timed_out: u64,
    /// Σ real pay amount of the orders created, minor units.
    pub total_amount: u64,
    /// `total_amount / orders_created` rounded down (0 when none).
    pub average_amount: u64,
    /// `orders_paid / orders_created` (0 when none).
    pub pay_success_rate: f64,
    /// `signed / (signed + refused)` (0 when none).
    pub fulfillment_success_rate: f64,
    /// Errors answered, by code.
    pub errors_by_code: BTreeMap<String, u64>,
}

/// The 200 of a command that takes `?dry_run=true` and answers the order
/// detail: the detail when it ran, a `DryRunView` when it was a dry run.
#[derive(Debug, Serialize, ToSchema)]
#[serde(untagged)]
pub enum OrderDetailOrDryRun {
    Detail(Box<OrderDetail>),
    DryRun(DryRunView),
}

/// The 200 of a command that takes `?dry_run=true` and answers the
/// after-sale: the after-sale when it ran, a `DryRunView` when it was a
/// dry run.
#[derive(Debug, Serialize, ToSchema)]
#[serde(untagged)]
pub enum AfterSaleOrDryRun {
    AfterSale(Box<AfterSaleView>),
    DryRun(DryRunView),
}

// ----- request headers shared by the writes -----

/// `Idempotency-Key`, on every POST/PUT that acts on an order family or an
/// after-sale (API.md, "Safe retries").
#[derive(Debug, IntoParams)]
#[into_params(parameter_in = Header)]
pub struct IdempotencyKeyHeader {
    /// 1-64 visible ASCII characters, scoped to (caller, order family) and
    /// kept for the life of the family (at most 64 keys per family). It is
    /// checked first, before `If-Match` and every rule: the same key with
    /// the same request (method, path, body) answers the recorded success
    /// again with `Idempotent-Replayed: true` and changes nothing; the same
    /// key with a different request answers 422 `IDEMPOTENCY_KEY_REUSED`.
    /// Failures are not recorded. Ignored on a dry run.
    #[param(rename = "Idempotency-Key", value_type = String, required = false)]
    pub idempotency_key: Option<String>,
}

/// `If-Match`, on every write to an existing order family.
#[derive(Debug, IntoParams)]
#[into_params(parameter_in = Header)]
pub struct IfMatchHeader {
    /// `"<version>"` (the `ETag` of `GET /v1/orders/{order_id}`); `*` or no
    /// header matches any version. When the family's version moved on the
    /// write answers 412 `ORDER_VERSION_MISMATCH` and changes nothing.
    #[param(rename = "If-Match", value_type = String, required = false)]
    pub if_match: Option<String>,
}

/// `Last-Event-ID`, on the event stream: what a reconnecting server-sent
/// events client sends.
#[derive(Debug, IntoParams)]
#[into_params(parameter_in = Header)]
pub struct LastEventIdHeader {
    /// Resume after this sequence number; overrides `after`.
    #[param(rename = "Last-Event-ID", value_type = String, required = false)]
    pub last_event_id: Option<String>,
}

// ----- what every route shares -----

/// Adds to the generated document what every route shares (see the module
/// documentation).
#[derive(Debug)]
pub struct Conventions;

impl Modify for Conventions {
    fn modify(&self, openapi: &mut utoipa::openapi::OpenApi) {
        openapi.info.version = env!("CARGO_PKG_VERSION").to_owned();
        openapi.info.description = Some(description());
        openapi.info.license = Some(License::new("Apache-2.0"));

        let components = openapi.components.get_or_insert_with(Components::new);
        components
            .security_schemes
            .insert(BEARER_SCHEME.to_owned(), bearer_scheme());
        components
            .security_schemes
            .insert(SIGNATURE_SCHEME.to_owned(), signature_scheme());
        components
            .schemas
            .insert(ERROR_CODE_SCHEMA.to_owned(), error_code_schema());
        if let Some(RefOr::T(Schema::Object(body))) = components.schemas.get_mut("ErrorBody") {
            body.properties.insert(
                "code".to_owned(),
                RefOr::Ref(Ref::from_schema_name(ERROR_CODE_SCHEMA)),
            );
        }

        for item in openapi.paths.paths.values_mut() {
            for operation in [
                &mut item.get,
                &mut item.put,
                &mut item.post,
                &mut item.delete,
                &mut item.patch,
            ]
            .into_iter()
            .flatten()
            {
                shared_headers(operation);
            }
        }
    }
}

fn bearer_scheme() -> SecurityScheme {
    let mut http = Http::new(HttpAuthScheme::Bearer);
    http.bearer_format = Some("JWT".to_owned());
    http.description = Some(
        "`Authorization: Bearer <JWT>`, HS256 with the configured secret. The claim `sub` is \
         the caller: a shopper's user id, who may act only on its own orders (403 `FORBIDDEN` \
         otherwise); the claim `role: \"admin\"` makes the caller an admin (operator, \
         fulfillment, customer service), who may call everything. Operations that require \
         an admin list the role `admin`. `ordercore token --user U [--admin]` mints one."
            .to_owned(),
    );
    SecurityScheme::Http(http)
}

fn signature_scheme() -> SecurityScheme {
    SecurityScheme::ApiKey(ApiKey::Header(ApiKeyValue::with_description(
        crate::auth::SIGNATURE_HEADER,
        "The payment provider's signature of a callback: lowercase \
         `hex(HMAC-SHA256(payment secret, raw request body))`. Missing or wrong: 401 \
         `SIGNATURE_INVALID`.",
    )))
}

/// Every error code, as a string enum, with its HTTP status in the
/// description and in [`HTTP_STATUS_EXTENSION`].
fn error_code_schema() -> RefOr<Schema> {
    let statuses: serde_json::Map<String, serde_json::Value> = ErrorCode::ALL
        .iter()
        .map(|code| (code.name().to_owned(), code.http_status().into()))
        .collect();
    let schema = ObjectBuilder::new()
        .schema_type(Type::String)
        .description(Some(format!(
            "The stable UPPER_SNAKE code of an error; each code is answered with exactly \
             one HTTP status (also in `{HTTP_STATUS_EXTENSION}`).\n\n{}",
            error_code_table()
        )))
        .enum_values(Some(ErrorCode::ALL.iter().map(|code| code.name())))
        .extensions(Some(Extensions::from_iter([(
            HTTP_STATUS_EXTENSION,
            serde_json::Value::Object(statuses),
        )])))
        .build();
    RefOr::T(Schema::Object(schema))
}

/// A Markdown table of every error code and its HTTP status.
fn error_code_table() -> String {
    let mut table = String::from("| code | HTTP status |\n|---|---|\n");
    for code in ErrorCode::ALL {
        // Writing to a String cannot fail.
        let _ = writeln!(table, "| `{}` | {} |", code.name(), code.http_status());
    }
    table
}

/// The document's description: the conventions of API.md every route
/// follows, and the error-code catalogue.
fn description() -> String {
    format!(
        "Actor-based order core for e-commerce. JSON over HTTP/1.1; money is an integer in \
         minor units, times are RFC 3339 strings in UTC, ids are strings, every code enum is \
         its integer code; unknown JSON fields are rejected (400).\n\n\
         **Callers.** Shoppers and admins send `Authorization: Bearer <JWT>` \
         (`{BEARER_SCHEME}`); the payment provider signs `/v1/payments/callback` and \
         `/v1/refunds/callback` with `X-Signature` (`{SIGNATURE_SCHEME}`).\n\n\
         **Safe retries.** Writes to an order family or an after-sale take `Idempotency-Key` \
         (a replay answers the recorded response with `Idempotent-Replayed: true`) and \
         `If-Match: \"<version>\"` (412 `ORDER_VERSION_MISMATCH` when the family moved on; \
         `GET /v1/orders/{{order_id}}` answers the version as `ETag`). `?dry_run=true` on \
         cancel, after-sale apply, review and lack runs every check and answers what would \
         happen, changing nothing. Every request may carry `X-Request-Id` (generated when \
         absent) and every response echoes it.\n\n\
         **Errors.** Every error is `{{\"code\": \"UPPER_SNAKE\", \"message\": \"...\"}}` \
         (`ErrorBody`); 503s carry `Retry-After`. The codes and their statuses:\n\n{}",
        error_code_table()
    )
}

/// The headers every operation shares.
fn shared_headers(operation: &mut Operation) {
    let takes_key = operation
        .parameters
        .iter()
        .flatten()
        .any(|p| p.parameter_in == ParameterIn::Header && p.name == IDEMPOTENCY_KEY_HEADER);
    operation.parameters.get_or_insert_with(Vec::new).push(
        ParameterBuilder::new()
            .name(REQUEST_ID_HEADER)
            .parameter_in(ParameterIn::Header)
            .required(Required::False)
            .description(Some(
                "Identifies the request in logs and in the events it causes; generated when \
                 absent (or not a valid id) and echoed on the response.",
            ))
            .schema(Some(string_schema()))
            .build(),
    );
    for (status, response) in &mut operation.responses.responses {
        let RefOr::T(response) = response else {
            continue;
        };
        response.headers.insert(
            REQUEST_ID_HEADER.to_owned(),
            HeaderBuilder::new()
                .schema(string_schema())
                .description(Some("The request's id"))
                .build(),
        );
        let is_error = status.starts_with('4') || status.starts_with('5');
        if is_error {
            response.content.insert(
                "application/json".to_owned(),
                ContentBuilder::new()
                    .schema(Some(Ref::from_schema_name("ErrorBody")))
                    .build(),
            );
        }
        if status == "503" {
            response.headers.insert(
                "Retry-After".to_owned(),
                HeaderBuilder::new()
                    .schema(ObjectBuilder::new().schema_type(Type::Integer))
                    .description(Some(format!(
                        "Seconds to wait before retrying ({})",
                        crate::error::RETRY_AFTER_SECS
                    )))
                    .build(),
            );
        }
        let dry_run_only = response.content.values().all(|content| {
            matches!(&content.schema, Some(RefOr::Ref(r)) if r.ref_location.ends_with("/DryRunView"))
        }) && !response.content.is_empty();
        if takes_key && status.starts_with('2') && !dry_run_only {
            response.headers.insert(
                REPLAYED_HEADER.to_owned(),
                HeaderBuilder::new()
                    .schema(string_schema())
                    .description(Some(
                        "`true` when this is the recorded response of an earlier request \
                         with the same `Idempotency-Key`, replayed; absent otherwise. A replay \
                         has the recorded status and body, and no `ETag`.",
                    ))
                    .build(),
            );
        }
    }
}

fn string_schema() -> ObjectBuilder {
    ObjectBuilder::new().schema_type(Type::String)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::routes::{self, ROUTES};
    use actix_web::test as http;
    use actix_web::{web, App};
    use std::collections::BTreeSet;

    fn document() -> serde_json::Value {
        let json = ApiDoc::openapi()
            .to_json()
            .expect("the document serializes");
        serde_json::from_str(&json).expect("the document is JSON")
    }

    /// `/v1/orders/{id}` and `/v1/orders/{order_id}` are the same route:
    /// the document names parameters as API.md does.
    fn normalized(path: &str) -> String {
        let mut out = String::with_capacity(path.len());
        let mut in_param = false;
        for c in path.chars() {
            match c {
                '{' => {
                    in_param = true;
                    out.push_str("{}");
                }
                '}' => in_param = false,
                _ if !in_param => out.push(c),
                _ => {}
            }
        }
        out
    }

    /// [`ROUTES`], with each path `normalize`d or not.
    fn table(normalize: bool) -> BTreeSet<(String, String)> {
        let set: BTreeSet<_> = ROUTES
            .iter()
            .map(|(m, p)| {
                let path = if normalize {
                    normalized(p)
                } else {
                    (*p).to_owned()
                };
                (m.to_string(), path)
            })
            .collect();
        assert_eq!(set.len(), ROUTES.len(), "ROUTES repeats a route");
        set
    }

    const METHODS: [&str; 5] = ["get", "put", "post", "delete", "patch"];

    /// Every (method, path) of the document, and the operation.
    fn operations(doc: &serde_json::Value) -> Vec<(String, String, &serde_json::Value)> {
        let mut out = Vec::new();
        for (path, item) in doc["paths"].as_object().expect("paths") {
            for method in METHODS {
                if let Some(op) = item.get(method) {
                    out.push((method.to_uppercase(), path.clone(), op));
                }
            }
        }
        out
    }

    /// The (method, path) pairs `configure` registers, read from its
    /// source: each `.route("path", web::method()...)`, under the
    /// `web::scope("prefix")` it follows. Every `.to(` must belong to a
    /// route it understood, so a registration in another form fails here
    /// rather than going unchecked.
    fn configured() -> BTreeSet<(String, String)> {
        let source = include_str!("routes.rs");
        let start = source
            .find("pub fn configure(")
            .expect("configure in routes.rs");
        let end = start + source[start..].find("\n}\n").expect("end of configure");
        let body = &source[start..end];
        let literal = |s: &str| -> String {
            let open = s.find('"').expect("a string literal");
            let close = open + 1 + s[open + 1..].find('"').expect("closing quote");
            s[open + 1..close].to_owned()
        };
        let mut routes = BTreeSet::new();
        // `web::route()`: any other method on a path, answered 405.
        let mut other_methods = 0;
        let mut prefix = String::new();
        let mut at = 0;
        while let Some(next) = body[at..].find(".route(") {
            let pos = at + next;
            if let Some(scope) = body[at..pos].rfind("web::scope(") {
                prefix = literal(&body[at + scope..]);
            }
            let rest = &body[pos + ".route(".len()..];
            let path = literal(rest);
            let method_at = rest.find("web::").expect("web::method()") + "web::".len();
            let method: String = rest[method_at..]
                .chars()
                .take_while(char::is_ascii_alphabetic)
                .collect();
            if method == "route" {
                other_methods += 1;
            } else {
                routes.insert((method.to_uppercase(), format!("{prefix}{path}")));
            }
            at = pos + 1;
        }
        assert_eq!(
            routes.len() + other_methods,
            body.matches(".to(").count(),
            "configure registers routes in a form this test does not read"
        );
        routes
    }

    fn diff(
        what: &str,
        expected: &BTreeSet<(String, String)>,
        actual: &BTreeSet<(String, String)>,
    ) {
        let missing: Vec<_> = expected.difference(actual).collect();
        let extra: Vec<_> = actual.difference(expected).collect();
        assert!(
            missing.is_empty() && extra.is_empty(),
            "{what}: missing {missing:?}, extra {extra:?}"
        );
    }

    #[test]
    fn openapi_routes_table_is_what_configure_registers() {
        diff("configure vs ROUTES", &table(false), &configured());
    }

    #[actix_web::test]
    async fn openapi_routes_table_entries_are_routed() {
        // No app state: a matched route fails extracting it (500) or
        // answers; only an unmatched one reaches the teapot.
        let app = http::init_service(
            App::new()
                .configure(routes::configure)
                .default_service(web::to(|| async { HttpResponse::ImATeapot().finish() })),
        )
        .await;
        let probe = |method: &str, path: &str| {
            let uri = normalized(path).replace("{}", "x");
            http::TestRequest::default()
                .method(method.parse().expect("a method"))
                .uri(&uri)
                .to_request()
        };
        for (method, path) in ROUTES {
            let res = http::call_service(&app, probe(method, path)).await;
            assert_ne!(res.status().as_u16(), 418, "{method} {path} is not routed");
        }
        let res = http::call_service(&app, probe("DELETE", "/v1/orders")).await;
        assert_eq!(res.status().as_u16(), 418, "the probe cannot tell");
        let res = http::call_service(&app, probe("GET", "/openapi.json")).await;
        assert_eq!(res.status().as_u16(), 200);
        let body = http::read_body(res).await;
        let served: serde_json::Value = serde_json::from_slice(&body).expect("JSON");
        assert_eq!(served, document());
    }

    #[test]
    fn openapi_documents_every_registered_route_and_no_other() {
        let doc = document();
        let documented: BTreeSet<_> = operations(&doc)
            .into_iter()
            .map(|(m, p, _)| (m, normalized(&p)))
            .collect();
        diff("ROUTES vs /openapi.json", &table(true), &documented);
    }

    #[test]
    fn openapi_is_version_3_and_names_this_build() {
        let doc = document();
        let version = doc["openapi"].as_str().expect("openapi version");
        assert!(version.starts_with("3."), "{version}");
        assert_eq!(doc["info"]["title"], "ordercore");
        assert_eq!(doc["info"]["version"], env!("CARGO_PKG_VERSION"));
    }

    #[test]
    fn openapi_lists_every_error_code_with_its_status() {
        let doc = document();
        let schema = &doc["components"]["schemas"][ERROR_CODE_SCHEMA];
        let names: Vec<&str> = schema["enum"]
            .as_array()
            .expect("ErrorCode enum")
            .iter()
            .filter_map(|v| v.as_str())
            .collect();
        let expected: Vec<&str> = ErrorCode::ALL.iter().map(|c| c.name()).collect();
        assert_eq!(names, expected);
        let statuses = &schema[HTTP_STATUS_EXTENSION];
        assert_eq!(
            statuses.as_object().map(|o| o.len()),
            Some(ErrorCode::ALL.len())
        );
        let description = doc["info"]["description"].as_str().expect("description");
        for code in ErrorCode::ALL {
            assert_eq!(statuses[code.name()], code.http_status(), "{code}");
            let row = format!("| `{}` | {} |", code.name(), code.http_status());
            assert!(description.contains(&row), "{row} not in info.description");
        }
        assert_eq!(
            doc["components"]["schemas"]["ErrorBody"]["properties"]["code"]["$ref"],
            "#/components/schemas/ErrorCode"
        );
    }

    /// Each error response names (in backticks) only codes answered with
    /// its status, at least one, and carries `ErrorBody`.
    #[test]
    fn openapi_error_responses_name_codes_of_their_status() {
        let doc = document();
        for (method, path, op) in operations(&doc) {
            for (status, response) in op["responses"].as_object().expect("responses") {
                let Ok(status) = status.parse::<u16>() else {
                    panic!("{method} {path}: status {status}");
                };
                if status < 400 {
                    continue;
                }
                let at = format!("{method} {path} {status}");
                assert_eq!(
                    response["content"]["application/json"]["schema"]["$ref"],
                    "#/components/schemas/ErrorBody",
                    "{at}"
                );
                let description = response["description"].as_str().expect("description");
                let codes: Vec<&str> = description
                    .split('`')
                    .skip(1)
                    .step_by(2)
                    .filter(|w| w.chars().all(|c| c.is_ascii_uppercase() || c == '_'))
                    .collect();
                assert!(!codes.is_empty(), "{at}: names no code");
                for name in codes {
                    let code = ErrorCode::ALL
                        .iter()
                        .find(|c| c.name() == name)
                        .unwrap_or_else(|| panic!("{at}: {name} is not an error code"));
                    assert_eq!(code.http_status(), status, "{at}: {name}");
                }
                if status == 503 {
                    assert!(response["headers"]["Retry-After"].is_object(), "{at}");
                }
            }
        }
    }

    #[test]
    fn openapi_operations_share_the_conventions() {
        let doc = document();
        let schemes = &doc["components"]["securitySchemes"];
        assert_eq!(schemes[BEARER_SCHEME]["scheme"], "bearer");
        assert_eq!(schemes[SIGNATURE_SCHEME]["in"], "header");
        assert_eq!(
            schemes[SIGNATURE_SCHEME]["name"],
            crate::auth::SIGNATURE_HEADER
        );
        for (method, path, op) in operations(&doc) {
            let at = format!("{method} {path}");
            let headers: Vec<&str> = op["parameters"]
                .as_array()
                .expect("parameters")
                .iter()
                .filter(|p| p["in"] == "header")
                .filter_map(|p| p["name"].as_str())
                .collect();
            assert!(headers.contains(&REQUEST_ID_HEADER), "{at}");
            for response in op["responses"].as_object().expect("responses").values() {
                assert!(response["headers"][REQUEST_ID_HEADER].is_object(), "{at}");
            }
            let security: Vec<&str> = op["security"]
                .as_array()
                .into_iter()
                .flatten()
                .filter_map(|s| s.as_object())
                .flat_map(|s| s.keys().map(String::as_str))
                .collect();
            for scheme in &security {
                assert!(
                    schemes[*scheme].is_object(),
                    "{at}: unknown scheme {scheme}"
                );
            }
            if path.ends_with("/callback") {
                assert_eq!(security, [SIGNATURE_SCHEME], "{at}");
            } else if path.starts_with("/v1/") {
                assert_eq!(security, [BEARER_SCHEME], "{at}");
                assert!(op["responses"]["401"].is_object(), "{at}: no 401");
            } else {
                assert!(security.is_empty(), "{at}");
            }
            let takes_key = headers.contains(&IDEMPOTENCY_KEY_HEADER);
            let replayable = op["responses"]
                .as_object()
                .into_iter()
                .flatten()
                .any(|(_, r)| r["headers"][REPLAYED_HEADER].is_object());
            assert_eq!(takes_key, replayable, "{at}");
        }
    }

    /// API.md: `?dry_run=true` on cancel, after-sale apply, review and
    /// lack; `If-Match` on every write to an existing family.
    #[test]
    fn openapi_documents_dry_runs_and_versions_where_api_md_says() {
        let doc = document();
        let mut dry_runs = BTreeSet::new();
        for (method, path, op) in operations(&doc) {
            let names: Vec<&str> = op["parameters"]
                .as_array()
                .into_iter()
                .flatten()
                .filter_map(|p| p["name"].as_str())
                .collect();
            if names.contains(&"dry_run") {
                dry_runs.insert(format!("{method} {path}"));
            }
            let family_write = method != "GET"
                && (path.starts_with("/v1/orders/{order_id}/")
                    || path.starts_with("/v1/after-sales/{id}/"));
            if family_write {
                assert!(names.contains(&"If-Match"), "{method} {path}");
                assert!(names.contains(&IDEMPOTENCY_KEY_HEADER), "{method} {path}");
            }
        }
        let expected: BTreeSet<String> = [
            "POST /v1/orders/{order_id}/cancel",
            "POST /v1/orders/{order_id}/after-sales",
            "POST /v1/after-sales/{id}/review",
            "POST /v1/orders/{order_id}/lack",
        ]
        .into_iter()
        .map(String::from)
        .collect();
        assert_eq!(dry_runs, expected);
        let order = &doc["paths"]["/v1/orders/{order_id}"]["get"];
        assert!(order["responses"]["200"]["headers"]["ETag"].is_object());
    }

    /// The `{name}`s of every path are exactly its path parameters.
    #[test]
    fn openapi_path_parameters_match_their_templates() {
        let doc = document();
        for (method, path, op) in operations(&doc) {
            let in_template: BTreeSet<&str> = path
                .split('{')
                .skip(1)
                .filter_map(|rest| rest.split('}').next())
                .collect();
            let declared: BTreeSet<&str> = op["parameters"]
                .as_array()
                .into_iter()
                .flatten()
                .filter(|p| p["in"] == "path")
                .filter_map(|p| p["name"].as_str())
                .collect();
            assert_eq!(in_template, declared, "{method} {path}");
        }
    }

    /// Every `$ref` names a schema the document holds.
    #[test]
    fn openapi_references_resolve() {
        fn walk(value: &serde_json::Value, schemas: &serde_json::Value, refs: &mut usize) {
            match value {
                serde_json::Value::Object(map) => {
                    if let Some(r) = map.get("$ref").and_then(|r| r.as_str()) {
                        let name = r
                            .strip_prefix("#/components/schemas/")
                            .unwrap_or_else(|| panic!("unexpected $ref {r}"));
                        assert!(schemas[name].is_object(), "{r} does not resolve");
                        *refs += 1;
                    }
                    map.values().for_each(|v| walk(v, schemas, refs));
                }
                serde_json::Value::Array(items) => {
                    items.iter().for_each(|v| walk(v, schemas, refs))
                }
                _ => {}
            }
        }
        let doc = document();
        let mut refs = 0;
        walk(&doc, &doc["components"]["schemas"], &mut refs);
        assert!(refs > 0);
    }
}
