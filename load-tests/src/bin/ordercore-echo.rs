//! `ordercore-echo`: the baseline of the HTTP benchmark — a bare actix-web
//! server whose `POST /v1/orders` only parses the same create body (no
//! auth, no core, no storage) and answers 201. Every other route answers
//! 200 `{}`, so the harness's setup requests pass.
//!
//! `ordercore-echo [ADDR]` (default 127.0.0.1:0) prints `listening on http://ADDR`.

use actix_web::{web, App, HttpResponse, HttpServer};
use serde::Deserialize;
use std::io::Write;
use std::time::Duration;

/// How long an idle keep-alive connection stays open (75 s, as the server's).
const KEEP_ALIVE: Duration = Duration::from_secs(75);

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
#[allow(dead_code)] // parsed, not used: parsing is the work measured
struct Delivery {
    delivery_type: i64,
    receiver_name: String,
    receiver_phone: String,
    province: String,
    city: String,
    area: String,
    street: Option<String>,
    detail_address: String,
    lon: Option<f64>,
    lat: Option<f64>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
#[allow(dead_code)]
struct Item {
    sku_code: String,
    sale_quantity: i64,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
#[allow(dead_code)]
struct Amount {
    amount_type: i64,
    amount: i64,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
#[allow(dead_code)]
struct Payment {
    pay_type: i64,
    pay_amount: i64,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
#[allow(dead_code)]
struct CreateOrder {
    order_id: String,
    user_id: String,
    business_identifier: i64,
    order_type: i64,
    seller_id: Option<String>,
    coupon_id: Option<String>,
    user_remark: Option<String>,
    delivery: Delivery,
    items: Vec<Item>,
    amounts: Vec<Amount>,
    payments: Vec<Payment>,
}

async fn create(body: web::Json<CreateOrder>) -> HttpResponse {
    HttpResponse::Created().json(serde_json::json!({
        "order_id": body.order_id, "status": 10, "pay_amount": body.payments.first().map_or(0, |p| p.pay_amount),
    }))
}

async fn anything() -> HttpResponse {
    HttpResponse::Ok().json(serde_json::json!({}))
}

/// mimalloc instead of the system allocator: the core allocates many small,
/// short-lived values on several threads, where glibc's arenas spend a
/// large share of the CPU (measured with `--bench core`).
#[global_allocator]
static GLOBAL: mimalloc::MiMalloc = mimalloc::MiMalloc;

#[actix_web::main]
async fn main() -> std::io::Result<()> {
    if let Err(e) = ordercore_load::host::tune_allocator() {
        let _ = writeln!(
            std::io::stderr(),
            "ordercore-echo: the allocator keeps its default purge delay: {e}"
        );
    }
    if let Err(e) = ordercore_load::host::disable_transparent_huge_pages() {
        let _ = writeln!(
            std::io::stderr(),
            "ordercore-echo: transparent huge pages stay on: {e}"
        );
    }
    let addr = std::env::args()
        .nth(1)
        .unwrap_or_else(|| "127.0.0.1:0".to_owned());
    let server = HttpServer::new(|| {
        App::new()
            .route("/v1/orders", web::post().to(create))
            .default_service(web::to(anything))
    })
    // As the server's (its `KEEP_ALIVE`): with actix's 5 s, the bare
    // handler closed idle connections just as the open loop reused them,
    // a transport error in a baseline run that the server never sees.
    .keep_alive(KEEP_ALIVE)
    .bind(&addr)?;
    for a in server.addrs() {
        let mut out = std::io::stdout();
        let _ = writeln!(out, "listening on http://{a}");
        let _ = out.flush();
    }
    server.run().await
}
