//! The traffic: sessions of requests a shopper, an operator and the payment
//! provider make. Every answer is timed from when its request was meant to
//! go out and every acknowledged fact goes into the ledger.

use crate::client::Method;
use crate::client::{Answer, Api};
use crate::ledger::Ledger;
use crate::stats::Stats;
use rand::rngs::SmallRng;
use rand::Rng;
use serde_json::{json, Value};
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Instant;

/// A scenario: what one session does.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, clap::ValueEnum, serde::Serialize)]
#[serde(rename_all = "kebab-case")]
pub enum Scenario {
    /// order id → price → create → prepay → pay → fulfillment → signed, with
    /// a share of cancels, timeouts, address changes, after-sales,
    /// duplicate callbacks and idempotent replays.
    Lifecycle,
    /// Pay callback and cancel on the same order at once.
    Race,
    /// Many buyers, one SKU, small stock.
    FlashSale,
    /// Order detail and user listing reads.
    ReadHeavy,
    /// `POST /v1/orders` alone, with order ids made by the harness in the
    /// documented format: the HTTP create benchmark (also against a bare
    /// JSON handler, `ordercore-echo`).
    Create,
    /// The others by weight (`--weights`).
    Mixed,
}

/// Everything sessions share.
#[derive(Debug)]
pub struct Ctx {
    pub api: Api,
    pub ledger: Ledger,
    pub stats: Stats,
    /// Names this run's users and SKUs apart from earlier runs'.
    pub run: String,
    pub skus: Vec<String>,
    /// SKUs of a second product type: a basket with one of them makes a
    /// mixed family (a master and a sub-order per type).
    pub second_type_skus: Vec<String>,
    pub flash_sku: String,
    /// Users `0..coupon_users` each hold one coupon ([`Ctx::coupon_of`]).
    pub coupon_users: u64,
    pub users: u64,
    pub admin: String,
    pub next: AtomicU64,
    /// Prices of `skus` (same order), for requests priced without asking.
    pub prices: Vec<i64>,
    /// The server's pricing rules: (shipping fee, free-shipping threshold).
    pub shipping: (i64, i64),
    /// The UTC second order ids made here start from.
    pub id_epoch: chrono::DateTime<chrono::Utc>,
}

impl Ctx {
    fn user(&self, n: u64) -> String {
        format!("lt{}u{}", self.run, n % self.users.max(1))
    }

    /// The coupon issued to session `n`'s user, if it has one.
    pub fn coupon_of(&self, n: u64) -> Option<String> {
        let user = n % self.users.max(1);
        (user < self.coupon_users).then(|| coupon_id(&self.run, user))
    }

    fn token(&self, user: &str) -> String {
        self.api.token(user, false)
    }

    /// Sends one request as part of `op` and records it; `None` when no
    /// HTTP answer came back.
    #[allow(clippy::too_many_arguments)]
    async fn step(
        &self,
        op: &'static str,
        intended: Instant,
        method: Method,
        path: &str,
        token: Option<&str>,
        body: Option<&Value>,
        headers: &[(&str, String)],
    ) -> Option<Answer> {
        let answer = self.api.call(method, path, token, body, headers).await;
        self.finish(op, intended, answer)
    }

    async fn signed(
        &self,
        op: &'static str,
        intended: Instant,
        path: &str,
        body: &Value,
    ) -> Option<Answer> {
        let answer = self.api.signed(path, body).await;
        self.finish(op, intended, answer)
    }

    fn finish(
        &self,
        op: &'static str,
        intended: Instant,
        answer: Result<Answer, String>,
    ) -> Option<Answer> {
        match answer {
            Ok(a) => {
                let code = if a.ok() {
                    None
                } else {
                    Some(a.code().unwrap_or("UNKNOWN"))
                };
                self.stats.record(op, intended, code);
                Some(a)
            }
            Err(_) => {
                self.stats.transport_error();
                None
            }
        }
    }
}

/// Runs one session of `scenario` meant to start at `intended`.
pub async fn session(ctx: &Ctx, scenario: Scenario, intended: Instant, rng: &mut SmallRng) {
    match scenario {
        Scenario::Lifecycle | Scenario::Mixed => lifecycle(ctx, intended, rng).await,
        Scenario::Race => race(ctx, intended, rng).await,
        Scenario::FlashSale => flash_sale(ctx, intended).await,
        Scenario::ReadHeavy => read_heavy(ctx, intended, rng).await,
        Scenario::Create => create_only(ctx, intended, rng).await,
    }
}

/// An order id, a price and a create of `items` for `user`; answers the
/// created order's id, real pay amount and sub-orders.
async fn create(
    ctx: &Ctx,
    intended: Instant,
    user: &str,
    items: &[(String, i64)],
    coupon: Option<&str>,
    idempotent: bool,
) -> Option<Created> {
    let token = ctx.token(user);
    let id = ctx
        .step(
            "order_id",
            intended,
            Method::POST,
            "/v1/order-ids",
            Some(&token),
            Some(&json!({"user_id": user, "business_identifier": 1})),
            &[],
        )
        .await?;
    let order_id = id.str("order_id")?.to_owned();
    let lines: Vec<Value> = items
        .iter()
        .map(|(sku, q)| json!({"sku_code": sku, "sale_quantity": q}))
        .collect();
    let now = Instant::now();
    let price = ctx
        .step(
            "price",
            now,
            Method::POST,
            "/v1/orders/price",
            Some(&token),
            Some(&json!({"user_id": user, "items": lines, "coupon_id": coupon})),
            &[],
        )
        .await?;
    let amounts = price.body().get("amounts")?.clone();
    let real_pay = amounts
        .as_array()?
        .iter()
        .find(|a| a.get("amount_type").and_then(Value::as_i64) == Some(50))?
        .get("amount")?
        .as_i64()?;
    let body = json!({
        "order_id": order_id, "user_id": user, "business_identifier": 1, "order_type": 1,
        "delivery": {"delivery_type": 1, "receiver_name": "Load Test", "receiver_phone": "13800000000",
            "province": "Zhejiang", "city": "Hangzhou", "area": "Xihu", "detail_address": "1 Test Road"},
        "items": lines, "amounts": amounts, "payments": [{"pay_type": 10, "pay_amount": real_pay}],
        "coupon_id": coupon,
    });
    ctx.ledger.attempt(&order_id, user, items, coupon);
    let key = format!("create-{order_id}");
    let headers: Vec<(&str, String)> = if idempotent {
        vec![("idempotency-key", key)]
    } else {
        Vec::new()
    };
    let now = Instant::now();
    let created = ctx
        .step(
            "create",
            now,
            Method::POST,
            "/v1/orders",
            Some(&token),
            Some(&body),
            &headers,
        )
        .await?;
    if !created.ok() {
        if created.str("code") == Some("PRODUCT_STOCK_NOT_ENOUGH") {
            ctx.ledger.sold_out();
        }
        return None;
    }
    ctx.ledger.update(&order_id, |r| r.created = true);
    if idempotent {
        // The same request with the same key: the recorded answer, replayed.
        let now = Instant::now();
        if let Some(again) = ctx
            .step(
                "create_replay",
                now,
                Method::POST,
                "/v1/orders",
                Some(&token),
                Some(&body),
                &headers,
            )
            .await
        {
            // A 5xx is the server being away (a crash cycle), not an answer.
            if again.status < 500 {
                ctx.ledger.idempotent_replay(
                    again.status == created.status
                        && again.body() == created.body()
                        && again.replayed,
                );
            }
        }
    }
    let sub_order_ids = created
        .body()
        .get("sub_order_ids")
        .and_then(Value::as_array)
        .map(|ids| {
            ids.iter()
                .filter_map(|i| i.as_str().map(str::to_owned))
                .collect()
        })
        .unwrap_or_default();
    Some(Created {
        order_id,
        real_pay,
        sub_order_ids,
    })
}

/// What a create answered.
struct Created {
    order_id: String,
    real_pay: i64,
    /// Empty for a single order; one per product type for a mixed family.
    sub_order_ids: Vec<String>,
}

fn pay_body(order_id: &str, amount: i64, trade_no: &str) -> Value {
    json!({"order_id": order_id, "out_trade_no": order_id, "pay_type": 10, "pay_amount": amount,
        "trade_no": trade_no, "paid_at": chrono::Utc::now().to_rfc3339()})
}

/// Pays and records the result; answers it.
async fn pay(ctx: &Ctx, order_id: &str, amount: i64, trade_no: &str) -> Option<String> {
    let now = Instant::now();
    let answer = ctx
        .signed(
            "pay_callback",
            now,
            "/v1/payments/callback",
            &pay_body(order_id, amount, trade_no),
        )
        .await?;
    let result = answer.str("result")?.to_owned();
    match result.as_str() {
        "PAID" => ctx
            .ledger
            .update(order_id, |r| r.paid.push(trade_no.to_owned())),
        "REFUND" => ctx
            .ledger
            .update(order_id, |r| r.refunded.push(trade_no.to_owned())),
        _ => {}
    }
    Some(result)
}

/// The shopper cancels; an accepted cancel goes into the ledger.
async fn cancel(ctx: &Ctx, order_id: &str, user: &str) -> Option<Answer> {
    let answer = ctx
        .step(
            "cancel",
            Instant::now(),
            Method::POST,
            &format!("/v1/orders/{order_id}/cancel"),
            Some(&ctx.token(user)),
            Some(&json!({"user_id": user})),
            &[],
        )
        .await?;
    if answer.ok() {
        ctx.ledger.update(order_id, |r| r.canceled = true);
    }
    Some(answer)
}

async fn version(ctx: &Ctx, order_id: &str) -> Option<i64> {
    let now = Instant::now();
    ctx.step(
        "get_order",
        now,
        Method::GET,
        &format!("/v1/orders/{order_id}"),
        Some(&ctx.admin),
        None,
        &[],
    )
    .await?
    .int("version")
}

/// Two lines of different SKUs; the second is of the second product type
/// in [`MIXED_SHARE`] of baskets.
fn basket(ctx: &Ctx, rng: &mut SmallRng) -> Vec<(String, i64)> {
    let a = rng.gen_range(0..ctx.skus.len());
    let second = if !ctx.second_type_skus.is_empty() && rng.gen_bool(MIXED_SHARE) {
        ctx.second_type_skus[rng.gen_range(0..ctx.second_type_skus.len())].clone()
    } else {
        let b = (a + rng.gen_range(1..ctx.skus.len().max(2))) % ctx.skus.len();
        ctx.skus[b].clone()
    };
    vec![
        (ctx.skus[a].clone(), rng.gen_range(1..4)),
        (second, rng.gen_range(1..4)),
    ]
}

/// The share of a coupon holder's lifecycles that use the coupon: its
/// other sessions may hold it (one live order at a time, so some creates
/// are refused with `USER_COUPON_IS_USED`).
const COUPON_SHARE: f64 = 0.5;

/// The id of the coupon issued to user number `user` of run `run`.
pub fn coupon_id(run: &str, user: u64) -> String {
    format!("LT{run}C{user}")
}

/// The share of baskets that mix two product types.
const MIXED_SHARE: f64 = 0.25;

/// The sub-order of product type 1 (NORMAL), which holds a basket's first
/// line: its id's extension is the type (README, "Order id format").
fn first_type_part(sub_order_ids: &[String]) -> Option<&String> {
    sub_order_ids
        .iter()
        .find(|id| id.get(21..24) == Some("001"))
}

async fn lifecycle(ctx: &Ctx, intended: Instant, rng: &mut SmallRng) {
    let n = ctx.next.fetch_add(1, Ordering::Relaxed);
    let user = ctx.user(n);
    let items = basket(ctx, rng);
    let idempotent = rng.gen_bool(0.1);
    let coupon = ctx.coupon_of(n).filter(|_| rng.gen_bool(COUPON_SHARE));
    let Some(Created {
        order_id,
        real_pay: amount,
        sub_order_ids,
    }) = create(ctx, intended, &user, &items, coupon.as_deref(), idempotent).await
    else {
        return;
    };
    let token = ctx.token(&user);
    let path = rng.gen_range(0..100);
    if path < 10 {
        return; // left unpaid: the payment deadline cancels it
    }
    if path < 20 {
        cancel(ctx, &order_id, &user).await;
        return;
    }
    let now = Instant::now();
    ctx.step(
        "prepay",
        now,
        Method::POST,
        &format!("/v1/orders/{order_id}/prepay"),
        Some(&token),
        Some(&json!({"user_id": user, "pay_type": 10, "pay_amount": amount})),
        &[],
    )
    .await;
    let trade_no = format!("T{}-{n}", ctx.run);
    if pay(ctx, &order_id, amount, &trade_no).await.as_deref() != Some("PAID") {
        return;
    }
    if rng.gen_bool(0.2) {
        // A repeated callback: DUPLICATE, and the order does not move.
        let before = version(ctx, &order_id).await;
        let result = pay(ctx, &order_id, amount, &trade_no).await;
        let after = version(ctx, &order_id).await;
        // Counted only when all three were answered: a request that met a
        // killed server saw nothing.
        if let (Some(result), Some(_), Some(_)) = (&result, before, after) {
            ctx.ledger
                .duplicate_callback(result == "DUPLICATE" && before == after);
        }
    }
    let next = rng.gen_range(0..100);
    let order_path = format!("/v1/orders/{order_id}");
    if next < 10 {
        cancel(ctx, &order_id, &user).await;
        return;
    }
    if next < 20 {
        let now = Instant::now();
        ctx.step(
            "address",
            now,
            Method::PUT,
            &format!("{order_path}/delivery-address"),
            Some(&token),
            Some(
                &json!({"user_id": user, "province": "Jiangsu", "city": "Suzhou", "area": "Gusu",
                "detail_address": "2 Canal Street"}),
            ),
            &[],
        )
        .await;
    }
    // A paid mixed family is fulfilled and returned part by part (its
    // sub-orders); a single order as itself.
    if next < 30 {
        let part = first_type_part(&sub_order_ids).unwrap_or(&order_id);
        let now = Instant::now();
        ctx.step("after_sale", now, Method::POST, &format!("/v1/orders/{part}/after-sales"), Some(&token),
            Some(&json!({"user_id": user, "after_sale_type": 1,
                "items": [{"sku_code": items[0].0, "return_quantity": 1}], "reason": "changed my mind"})), &[])
            .await;
        return;
    }
    let parts = if sub_order_ids.is_empty() {
        vec![order_id]
    } else {
        sub_order_ids
    };
    for part in &parts {
        for event in ["FULFILLED", "OUT_STOCK", "DELIVERY", "SIGNED"] {
            let now = Instant::now();
            let answer = ctx
                .step(
                    "fulfillment",
                    now,
                    Method::POST,
                    &format!("/v1/orders/{part}/fulfillment"),
                    Some(&ctx.admin),
                    Some(&json!({"event": event})),
                    &[],
                )
                .await;
            if !answer.is_some_and(|a| a.ok()) {
                return;
            }
        }
    }
}

async fn race(ctx: &Ctx, intended: Instant, rng: &mut SmallRng) {
    let n = ctx.next.fetch_add(1, Ordering::Relaxed);
    let user = ctx.user(n);
    let items = basket(ctx, rng);
    let Some(Created {
        order_id,
        real_pay: amount,
        ..
    }) = create(ctx, intended, &user, &items, None, false).await
    else {
        return;
    };
    let trade_no = format!("R{}-{n}", ctx.run);
    if rng.gen_bool(LATE_PAYMENT_SHARE) {
        // The payment lands after the cancel: refunded (REFUND), and the
        // provider's retry of that callback changes nothing (DUPLICATE).
        if cancel(ctx, &order_id, &user).await.is_some_and(|a| a.ok())
            && pay(ctx, &order_id, amount, &trade_no).await.as_deref() == Some("REFUND")
        {
            let before = version(ctx, &order_id).await;
            let again = pay(ctx, &order_id, amount, &trade_no).await;
            let after = version(ctx, &order_id).await;
            if let (Some(again), Some(_), Some(_)) = (&again, before, after) {
                ctx.ledger
                    .duplicate_callback(again == "DUPLICATE" && before == after);
            }
        }
        return;
    }
    tokio::join!(
        pay(ctx, &order_id, amount, &trade_no),
        cancel(ctx, &order_id, &user)
    );
}

/// The share of races whose payment is sent only after the cancel was
/// answered, so every run meets payments of cancelled orders.
const LATE_PAYMENT_SHARE: f64 = 0.3;

async fn flash_sale(ctx: &Ctx, intended: Instant) {
    let n = ctx.next.fetch_add(1, Ordering::Relaxed);
    let user = ctx.user(n);
    let items = vec![(ctx.flash_sku.clone(), 1)];
    let created = create(ctx, intended, &user, &items, None, false)
        .await
        .is_some();
    ctx.ledger.flash(created);
}

async fn read_heavy(ctx: &Ctx, intended: Instant, rng: &mut SmallRng) {
    let Some((order_id, user)) = ctx.ledger.pick_created(rng.gen_range(0..1_000)) else {
        // Nothing to read yet: make something.
        return lifecycle(ctx, intended, rng).await;
    };
    let token = ctx.token(&user);
    ctx.step(
        "get_order",
        intended,
        Method::GET,
        &format!("/v1/orders/{order_id}"),
        Some(&token),
        None,
        &[],
    )
    .await;
    let now = Instant::now();
    ctx.step(
        "list_orders",
        now,
        Method::GET,
        &format!("/v1/users/{user}/orders?page_size=20"),
        Some(&token),
        None,
        &[],
    )
    .await;
}

/// An order id in the documented format (`yyMMddHHmmss` `node` `seq6`
/// `kind` `ext` `user suffix`) for the `n`-th order of this run, on node
/// 99 so it never collides with the server's own (node 00).
pub fn order_id(ctx: &Ctx, n: u64, user: &str) -> String {
    let second =
        ctx.id_epoch + chrono::Duration::seconds(i64::try_from(n / 1_000_000).unwrap_or(0));
    let suffix: String = {
        let tail: String = user
            .chars()
            .rev()
            .take(8)
            .collect::<Vec<_>>()
            .into_iter()
            .rev()
            .collect();
        format!("{tail:0>8}")
    };
    format!(
        "{}99{:06}1000{suffix}",
        second.format("%y%m%d%H%M%S"),
        n % 1_000_000
    )
}

async fn create_only(ctx: &Ctx, intended: Instant, rng: &mut SmallRng) {
    let n = ctx.next.fetch_add(1, Ordering::Relaxed);
    let user = ctx.user(n);
    let a = rng.gen_range(0..ctx.skus.len());
    let b = (a + 1 + rng.gen_range(0..ctx.skus.len() - 1)) % ctx.skus.len();
    let (qa, qb) = (rng.gen_range(1..4_i64), rng.gen_range(1..4_i64));
    let origin = ctx.prices[a] * qa + ctx.prices[b] * qb;
    let shipping = if origin >= ctx.shipping.1 {
        0
    } else {
        ctx.shipping.0
    };
    let real_pay = origin + shipping;
    let order_id = order_id(ctx, n, &user);
    let items = vec![(ctx.skus[a].clone(), qa), (ctx.skus[b].clone(), qb)];
    let body = CreateBody {
        order_id: &order_id,
        user_id: &user,
        business_identifier: 1,
        order_type: 1,
        delivery: DELIVERY,
        items: [
            Line {
                sku_code: &items[0].0,
                sale_quantity: qa,
            },
            Line {
                sku_code: &items[1].0,
                sale_quantity: qb,
            },
        ],
        amounts: [
            Amount {
                amount_type: 10,
                amount: origin,
            },
            Amount {
                amount_type: 30,
                amount: shipping,
            },
            Amount {
                amount_type: 50,
                amount: real_pay,
            },
        ],
        payments: [Payment {
            pay_type: 10,
            pay_amount: real_pay,
        }],
    };
    let Ok(body) = serde_json::to_vec(&body) else {
        return;
    };
    ctx.ledger.attempt(&order_id, &user, &items, None);
    let token = ctx.token(&user);
    let answer = ctx
        .api
        .call_json(Method::POST, "/v1/orders", &token, body)
        .await;
    if let Some(a) = ctx.finish("create", intended, answer) {
        if a.ok() {
            ctx.ledger.update(&order_id, |r| r.created = true);
        }
    }
}

/// The `create` scenario's request body, serialized straight from borrowed
/// fields: the same JSON as the other scenarios build, without a tree of
/// values per request (the harness shares the cores with the server).
#[derive(serde::Serialize)]
struct CreateBody<'a> {
    order_id: &'a str,
    user_id: &'a str,
    business_identifier: u8,
    order_type: u8,
    delivery: Delivery,
    items: [Line<'a>; 2],
    amounts: [Amount; 3],
    payments: [Payment; 1],
}

#[derive(serde::Serialize)]
struct Delivery {
    delivery_type: u8,
    receiver_name: &'static str,
    receiver_phone: &'static str,
    province: &'static str,
    city: &'static str,
    area: &'static str,
    detail_address: &'static str,
}

const DELIVERY: Delivery = Delivery {
    delivery_type: 1,
    receiver_name: "Load Test",
    receiver_phone: "13800000000",
    province: "Zhejiang",
    city: "Hangzhou",
    area: "Xihu",
    detail_address: "1 Test Road",
};

#[derive(serde::Serialize)]
struct Line<'a> {
    sku_code: &'a str,
    sale_quantity: i64,
}

#[derive(serde::Serialize)]
struct Amount {
    amount_type: u8,
    amount: i64,
}

#[derive(serde::Serialize)]
struct Payment {
    pay_type: u8,
    pay_amount: i64,
}
