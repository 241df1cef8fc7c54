//! After the run, through the API only: nothing acknowledged was lost,
//! stock adds up and matches the orders, nothing was oversold, duplicate
//! callbacks changed nothing, every payment of a cancelled order has
//! exactly one refund, every unpaid order past its deadline is cancelled,
//! and every Idempotency-Key replay answered the recorded reply. Each check
//! counts the cases it saw; a required check that saw none fails too.

use crate::client::{Answer, Method};
use crate::ledger::{OrderRecord, Tally};
use crate::scenario::Ctx;
use serde_json::Value;
use std::collections::HashMap;
use std::sync::Arc;

/// Orders read at once while verifying.
const VERIFY_CONCURRENCY: usize = 64;

const CREATED: i64 = 10;
const CANCELED: i64 = 70;
const REFUSED: i64 = 100;
const TIMEOUT_CANCELED: i64 = 1;

/// One check's outcome.
#[derive(Debug, Clone, serde::Serialize)]
pub struct Check {
    pub name: &'static str,
    pub cases: u64,
    pub violations: u64,
    /// Whether this run's traffic must have produced cases of it.
    pub required: bool,
    /// The first few violations, described.
    pub examples: Vec<String>,
}

impl Check {
    pub fn new(name: &'static str, required: bool) -> Check {
        Check {
            name,
            cases: 0,
            violations: 0,
            required,
            examples: Vec::new(),
        }
    }

    pub fn see(&mut self, ok: bool, what: impl FnOnce() -> String) {
        self.cases += 1;
        if !ok {
            self.violations += 1;
            if self.examples.len() < 5 {
                self.examples.push(what());
            }
        }
    }

    fn from_tally(name: &'static str, tally: Tally, required: bool) -> Check {
        Check {
            name,
            cases: tally.cases,
            violations: tally.violations,
            required,
            examples: Vec::new(),
        }
    }

    pub fn passed(&self) -> bool {
        self.violations == 0 && (!self.required || self.cases > 0)
    }
}

/// Which checks the traffic must have exercised.
#[derive(Debug, Clone, Copy, Default)]
pub struct Expect {
    pub lifecycles: bool,
    pub timeouts: bool,
    pub flash: bool,
    pub refunds: bool,
    /// Races: some payments arrive after their order's cancel.
    pub late_payments: bool,
}

/// Reads every order the run tried to create and every SKU it touched,
/// and checks them against the ledger.
pub async fn verify(
    ctx: Arc<Ctx>,
    expect: Expect,
    stock_of: &[(String, i64)],
    coupons: &[String],
    kills: &[chrono::DateTime<chrono::Utc>],
) -> Vec<Check> {
    let orders = ctx.ledger.orders();
    let mut found: Vec<(String, OrderRecord, Option<Value>)> = Vec::with_capacity(orders.len());
    for chunk in orders.chunks(VERIFY_CONCURRENCY) {
        let reads: Vec<_> = chunk
            .iter()
            .map(|(id, rec)| {
                let ctx = Arc::clone(&ctx);
                let (id, rec) = (id.clone(), rec.clone());
                tokio::spawn(async move {
                    let path = format!("/v1/orders/{id}");
                    let mut answer = None;
                    for _ in 0..3 {
                        if let Ok(a) = ctx
                            .api
                            .call(Method::GET, &path, Some(&ctx.admin), None, &[])
                            .await
                        {
                            answer = Some(a);
                            break;
                        }
                    }
                    (id, rec, answer)
                })
            })
            .collect();
        for (read, (id, rec)) in reads.into_iter().zip(chunk) {
            match read.await {
                Ok((id, rec, answer)) => {
                    let body = answer.filter(|a| a.status == 200).map(Answer::into_body);
                    found.push((id, rec, body));
                }
                // A read that failed is an order not seen: checked as lost.
                Err(_) => found.push((id.clone(), rec.clone(), None)),
            }
        }
    }

    let now = chrono::Utc::now();
    let mut lost = Check::new("every acknowledged order exists", true);
    let mut states = Check::new(
        "every order is in its acknowledged state or a later legal one",
        expect.lifecycles,
    );
    let mut refunds = Check::new(
        "every payment of a cancelled order has exactly one refund",
        expect.refunds,
    );
    let mut deadlines = Check::new(
        "every unpaid order past its deadline is cancelled",
        expect.timeouts,
    );
    let mut across_kills = Check::new(
        "every unpaid order whose deadline was armed before a kill is cancelled after it",
        expect.timeouts && !kills.is_empty(),
    );
    let mut timeouts_fired = Check::new(
        "payment deadlines fired (orders cancelled by timeout)",
        expect.timeouts,
    );
    let mut late_payments = Check::new(
        "every payment answered REFUND (it came after a cancel) has exactly one refund",
        expect.late_payments,
    );
    let mut amounts = Check::new(
        "amounts add up (Σ line pay + shipping = order pay = payment, Σ sub-orders = master, refunds ≤ their payment)",
        expect.lifecycles,
    );
    // Each coupon's live holders: orders not cancelled or refused that name it.
    let mut holders: HashMap<String, Vec<(String, i64)>> = HashMap::new();
    let mut flash_holding: i64 = 0;
    let mut locked: HashMap<String, i64> = HashMap::new();
    let mut sold: HashMap<String, i64> = HashMap::new();
    for (id, rec, body) in &found {
        let Some(order) = body else {
            lost.see(!rec.created, || {
                format!("order {id} was acknowledged but is gone")
            });
            continue;
        };
        lost.see(true, String::new);
        let status = order.get("status").and_then(Value::as_i64).unwrap_or(0);
        for t in &rec.refunded {
            let n = refunds_of(order, t);
            late_payments.see(n == 1, || {
                format!("order {id}: payment {t} answered REFUND has {n} refunds")
            });
        }
        let added = amounts_add_up(order);
        amounts.see(added.is_ok(), || {
            format!("order {id}: {}", added.clone().err().unwrap_or_default())
        });
        let payments = trade_nos(order);
        let timed_out = order.get("cancel_type").and_then(Value::as_i64) == Some(TIMEOUT_CANCELED);
        if rec.created {
            states.see(holds_acknowledged(rec, order), || {
                format!("order {id}: status {status}, payments {payments:?}, acknowledged {rec:?}")
            });
        }
        let items = order
            .get("items")
            .and_then(Value::as_array)
            .cloned()
            .unwrap_or_default();
        let holds = status != CANCELED && status != REFUSED;
        // A refusal keeps the coupon used (a cancel frees it).
        if let (true, Some(coupon)) = (
            status != CANCELED,
            order.get("coupon_id").and_then(Value::as_str),
        ) {
            holders
                .entry(coupon.to_owned())
                .or_default()
                .push((id.clone(), status));
        }
        if holds
            && items
                .iter()
                .any(|i| i.get("sku_code").and_then(Value::as_str) == Some(ctx.flash_sku.as_str()))
        {
            flash_holding += 1;
        }
        for item in &items {
            let sku = item
                .get("sku_code")
                .and_then(Value::as_str)
                .unwrap_or("")
                .to_owned();
            let qty = item
                .get("sale_quantity")
                .and_then(Value::as_i64)
                .unwrap_or(0);
            let restocked = item
                .get("restocked_quantity")
                .and_then(Value::as_i64)
                .unwrap_or(0);
            match status {
                CREATED => *locked.entry(sku).or_default() += qty,
                CANCELED | REFUSED => {}
                _ => *sold.entry(sku).or_default() += qty - restocked,
            }
        }
        if status == CANCELED {
            for t in &payments {
                let n = refunds_of(order, t);
                refunds.see(n == 1, || {
                    format!("order {id}: payment {t} has {n} refunds")
                });
            }
            if timed_out {
                timeouts_fired.see(true, String::new);
            }
        }
        let time = |key: &str| {
            order
                .get(key)
                .and_then(Value::as_str)
                .and_then(|t| chrono::DateTime::parse_from_rfc3339(t).ok())
        };
        let expire = time("expire_time");
        let expired = expire.is_some_and(|t| t < now - chrono::Duration::seconds(2));
        if expired && payments.is_empty() {
            deadlines.see(status == CANCELED, || {
                format!("order {id}: unpaid past its deadline, status {status}")
            });
            // Its deadline was armed, then the process died before it
            // was due: the restart must have armed it again.
            let straddled = time("created_at")
                .zip(expire)
                .is_some_and(|(created, expire)| kills.iter().any(|k| created < *k && *k < expire));
            if straddled {
                across_kills.see(status == CANCELED, || {
                    format!("order {id}: deadline armed before a kill, status {status}")
                });
            }
        }
    }

    let mut stock = Check::new(
        "stock adds up and matches the orders (locked = CREATED units, sold = paid units)",
        true,
    );
    let mut oversold = Check::new("no SKU oversold", true);
    for (sku, total) in stock_of {
        let path = format!("/v1/skus/{sku}");
        let Ok(answer) = ctx
            .api
            .call(Method::GET, &path, Some(&ctx.admin), None, &[])
            .await
        else {
            stock.see(false, || format!("SKU {sku} unreadable"));
            continue;
        };
        let (a, l, s) = (
            answer.int("available").unwrap_or(-1),
            answer.int("locked").unwrap_or(-1),
            answer.int("sold").unwrap_or(-1),
        );
        let (want_l, want_s) = (
            locked.get(sku).copied().unwrap_or(0),
            sold.get(sku).copied().unwrap_or(0),
        );
        stock.see(a + l + s == *total && l == want_l && s == want_s, || {
            format!("SKU {sku}: available {a} locked {l} sold {s} of {total}; orders hold locked {want_l} sold {want_s}")
        });
        oversold.see(a >= 0 && l + s <= *total, || {
            format!("SKU {sku}: {l} locked + {s} sold > {total}")
        });
    }

    // Invariant 5: a coupon is locked by its one CREATED holder, used by
    // its one paid holder, or free; counted for every coupon a create named.
    let named: std::collections::HashSet<String> = found
        .iter()
        .filter_map(|(_, rec, _)| rec.coupon.clone())
        .collect();
    let mut coupon_check = Check::new(
        "every coupon is locked or used by at most one live order, as its status says",
        expect.lifecycles,
    );
    for coupon in coupons.iter().filter(|c| named.contains(*c)) {
        let path = format!("/v1/coupons/{coupon}");
        let Ok(answer) = ctx
            .api
            .call(Method::GET, &path, Some(&ctx.admin), None, &[])
            .await
        else {
            coupon_check.see(false, || format!("coupon {coupon} unreadable"));
            continue;
        };
        let body = answer.into_body();
        let state = body.get("status").and_then(Value::as_str).unwrap_or("");
        let order = body.get("order_id").and_then(Value::as_str);
        let live = holders.get(coupon).map_or(&[][..], Vec::as_slice);
        let ok = match live {
            [] => state == "UNUSED",
            [(id, status)] => {
                order == Some(id.as_str())
                    && state == if *status == CREATED { "LOCKED" } else { "USED" }
            }
            _ => false,
        };
        coupon_check.see(ok, || {
            format!("coupon {coupon}: {state} by {order:?}; live orders holding it {live:?}")
        });
    }

    let tallies = ctx.ledger.tallies();
    let (duplicates, replays) = (tallies.duplicates, tallies.replays);
    let (flash_attempts, flash_created) = (tallies.flash_attempts, tallies.flash_created);
    // Unpaid flash-sale orders time out and give their unit back, so more
    // creates than units can succeed over a run; what may never happen is
    // more live orders holding the SKU than it has units.
    // Required once the sale sold out: without contention there is nothing
    // to hold back (give the run a `--flash-stock` its sessions exceed).
    let mut flash = Check::new(
        "flash sale: live orders never hold more than the stock",
        expect.flash && tallies.sold_out > 0,
    );
    // A case only once the sale met its limit (a create refused for stock):
    // without contention there is nothing to hold back.
    if flash_attempts > 0 && tallies.sold_out > 0 {
        let flash_stock = stock_of
            .iter()
            .find(|(s, _)| *s == ctx.flash_sku)
            .map_or(0, |(_, t)| *t);
        flash.see(flash_holding <= flash_stock, || {
            format!(
                "{flash_holding} live orders hold {flash_stock} units \
                 ({flash_created} of {flash_attempts} creates answered)"
            )
        });
    }
    vec![
        lost,
        states,
        amounts,
        stock,
        oversold,
        coupon_check,
        Check::from_tally(
            "duplicate pay callbacks changed nothing",
            duplicates,
            expect.lifecycles,
        ),
        refunds,
        late_payments,
        deadlines,
        across_kills,
        timeouts_fired,
        Check::from_tally(
            "Idempotency-Key replays answered the recorded reply",
            replays,
            expect.lifecycles,
        ),
        flash,
    ]
}

/// Whether an order read back holds what the run was told about it — the
/// ledger, not the server's word: it holds the coupon its create named,
/// every payment answered PAID or REFUND is on it, an acknowledged cancel
/// is the order's own (not a deadline's that a lost cancel left to fire),
/// and a paid order neither went back to CREATED nor timed out.
fn holds_acknowledged(rec: &OrderRecord, order: &Value) -> bool {
    let status = order.get("status").and_then(Value::as_i64).unwrap_or(0);
    let timed_out = order.get("cancel_type").and_then(Value::as_i64) == Some(TIMEOUT_CANCELED);
    let payments = trade_nos(order);
    let recorded = rec
        .paid
        .iter()
        .chain(&rec.refunded)
        .all(|t| payments.contains(t));
    let coupon = order.get("coupon_id").and_then(Value::as_str);
    recorded
        && coupon == rec.coupon.as_deref()
        && if rec.canceled {
            status == CANCELED && !timed_out
        } else if !rec.paid.is_empty() {
            status != CREATED && !timed_out
        } else {
            true
        }
}

/// Invariant 7 on one order read back (its master view): the lines'
/// pay plus shipping is the order's pay, which the four amounts agree
/// with and the payment is for; a split family's sub-orders add up to it;
/// and what after-sales claim of each payment never passes it.
fn amounts_add_up(order: &Value) -> Result<(), String> {
    let int = |v: &Value, key: &str| v.get(key).and_then(Value::as_i64).unwrap_or(0);
    let list = |key: &str| {
        order
            .get(key)
            .and_then(Value::as_array)
            .cloned()
            .unwrap_or_default()
    };
    let amount = |kind: i64| {
        list("amounts")
            .iter()
            .find(|a| int(a, "amount_type") == kind)
            .map_or(0, |a| int(a, "amount"))
    };
    let (origin, discount, shipping, real) = (amount(10), amount(20), amount(30), amount(50));
    let items = list("items");
    let lines_pay: i64 = items.iter().map(|i| int(i, "pay_amount")).sum();
    let lines_origin: i64 = items.iter().map(|i| int(i, "origin_amount")).sum();
    let lines_discount: i64 = items.iter().map(|i| int(i, "discount_amount")).sum();
    let payment = order.get("payment").map_or(0, |p| int(p, "pay_amount"));
    if lines_pay + shipping != real
        || origin - discount + shipping != real
        || lines_origin != origin
        || lines_discount != discount
        || payment != real
    {
        return Err(format!(
            "lines pay {lines_pay} + shipping {shipping} against pay {real} \
             (origin {origin}/{lines_origin}, discount {discount}/{lines_discount}, payment {payment})"
        ));
    }
    let subs = list("sub_orders");
    let subs_pay: i64 = subs.iter().map(|s| int(s, "pay_amount")).sum();
    if !subs.is_empty() && subs_pay != real {
        return Err(format!(
            "sub-orders pay {subs_pay} against the master's {real}"
        ));
    }
    let paid_of = |trade: &str| {
        if order.pointer("/payment/trade_no").and_then(Value::as_str) == Some(trade) {
            return payment;
        }
        list("extra_payments")
            .iter()
            .find(|p| p.get("trade_no").and_then(Value::as_str) == Some(trade))
            .map_or(0, |p| int(p, "pay_amount"))
    };
    let mut claimed: HashMap<String, i64> = HashMap::new();
    for a in list("after_sales") {
        // Rejected, failed and revoked after-sales claim nothing.
        if matches!(int(&a, "status"), 30 | 60 | 127) {
            continue;
        }
        if let Some(t) = a.get("trade_no").and_then(Value::as_str) {
            *claimed.entry(t.to_owned()).or_default() += int(&a, "apply_refund_amount");
        }
    }
    for (trade, sum) in claimed {
        let paid = paid_of(&trade);
        if sum > paid {
            return Err(format!("refunds of {trade} claim {sum}, paid {paid}"));
        }
    }
    Ok(())
}

/// The after-sales that refund payment `trade`.
fn refunds_of(order: &Value, trade: &str) -> usize {
    order
        .get("after_sales")
        .and_then(Value::as_array)
        .into_iter()
        .flatten()
        .filter(|a| a.get("trade_no").and_then(Value::as_str) == Some(trade))
        .count()
}

fn trade_nos(order: &Value) -> Vec<String> {
    let mut out = Vec::new();
    if let Some(t) = order.pointer("/payment/trade_no").and_then(Value::as_str) {
        out.push(t.to_owned());
    }
    for extra in order
        .get("extra_payments")
        .and_then(Value::as_array)
        .into_iter()
        .flatten()
    {
        if let Some(t) = extra.get("trade_no").and_then(Value::as_str) {
            out.push(t.to_owned());
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn priced(subs: &[i64], after_sales: Value) -> Value {
        json!({
            "amounts": [{"amount_type": 10, "amount": 9000}, {"amount_type": 20, "amount": 1000},
                        {"amount_type": 30, "amount": 1000}, {"amount_type": 50, "amount": 9000}],
            "items": [{"origin_amount": 6000, "discount_amount": 666, "pay_amount": 5334},
                      {"origin_amount": 3000, "discount_amount": 334, "pay_amount": 2666}],
            "payment": {"pay_amount": 9000, "trade_no": "T1"},
            "sub_orders": subs.iter().map(|p| json!({"pay_amount": p})).collect::<Vec<_>>(),
            "after_sales": after_sales,
        })
    }

    #[test]
    fn amounts_that_add_up_pass_and_each_way_of_not_is_caught() {
        assert_eq!(amounts_add_up(&priced(&[], json!([]))), Ok(()));
        assert_eq!(amounts_add_up(&priced(&[6334, 2666], json!([]))), Ok(()));
        assert!(amounts_add_up(&priced(&[6334, 2000], json!([]))).is_err());
        let mut off = priced(&[], json!([]));
        off["items"][0]["pay_amount"] = json!(5333);
        assert!(amounts_add_up(&off).is_err(), "a line off by one");
        let mut unpaid = priced(&[], json!([]));
        unpaid["payment"]["pay_amount"] = json!(8999);
        assert!(
            amounts_add_up(&unpaid).is_err(),
            "the payment is not the pay"
        );
        let refunds = json!([{"trade_no": "T1", "apply_refund_amount": 5000, "status": 50},
                             {"trade_no": "T1", "apply_refund_amount": 4000, "status": 10}]);
        assert_eq!(amounts_add_up(&priced(&[], refunds)), Ok(()));
        // A failed refund claims nothing: a new application may take its units.
        let failed = json!([{"trade_no": "T1", "apply_refund_amount": 9000, "status": 60},
                            {"trade_no": "T1", "apply_refund_amount": 9000, "status": 40}]);
        assert_eq!(amounts_add_up(&priced(&[], failed)), Ok(()));
        let too_much = json!([{"trade_no": "T1", "apply_refund_amount": 5000, "status": 50},
                              {"trade_no": "T1", "apply_refund_amount": 4001, "status": 10},
                              {"trade_no": "T1", "apply_refund_amount": 9000, "status": 127}]);
        assert!(amounts_add_up(&priced(&[], too_much)).is_err());
    }

    fn record(paid: &[&str], refunded: &[&str], canceled: bool) -> OrderRecord {
        OrderRecord {
            created: true,
            paid: paid.iter().map(|t| (*t).to_owned()).collect(),
            refunded: refunded.iter().map(|t| (*t).to_owned()).collect(),
            canceled,
            ..OrderRecord::default()
        }
    }

    #[test]
    fn an_acknowledged_payment_must_be_on_the_order() {
        let paid = json!({"status": 20, "payment": {"trade_no": "T1"}});
        assert!(holds_acknowledged(&record(&["T1"], &[], false), &paid));
        // Lost in a crash, then cancelled by the deadline: no payment on it.
        let timed_out = json!({"status": CANCELED, "cancel_type": TIMEOUT_CANCELED});
        assert!(!holds_acknowledged(
            &record(&["T1"], &[], false),
            &timed_out
        ));
        // Paid elsewhere: still not the acknowledged trade.
        let other = json!({"status": 20, "payment": {"trade_no": "T2"}});
        assert!(!holds_acknowledged(&record(&["T1"], &[], false), &other));
    }

    #[test]
    fn an_acknowledged_refund_must_be_on_the_order() {
        let canceled = json!({"status": CANCELED, "cancel_type": 0,
            "extra_payments": [{"trade_no": "T9"}]});
        assert!(holds_acknowledged(&record(&[], &["T9"], true), &canceled));
        let without = json!({"status": CANCELED, "cancel_type": 0});
        assert!(!holds_acknowledged(&record(&[], &["T9"], true), &without));
    }

    #[test]
    fn an_order_holds_the_coupon_its_create_named() {
        let mut with = record(&[], &[], false);
        with.coupon = Some("C1".to_owned());
        let holding = json!({"status": CREATED, "coupon_id": "C1"});
        assert!(holds_acknowledged(&with, &holding));
        assert!(!holds_acknowledged(&with, &json!({"status": CREATED})));
        assert!(!holds_acknowledged(&record(&[], &[], false), &holding));
    }

    #[test]
    fn an_acknowledged_cancel_is_not_the_deadlines() {
        let by_user = json!({"status": CANCELED, "cancel_type": 0});
        assert!(holds_acknowledged(&record(&[], &[], true), &by_user));
        let by_deadline = json!({"status": CANCELED, "cancel_type": TIMEOUT_CANCELED});
        assert!(!holds_acknowledged(&record(&[], &[], true), &by_deadline));
        let open = json!({"status": CREATED});
        assert!(!holds_acknowledged(&record(&[], &[], true), &open));
        assert!(holds_acknowledged(&record(&[], &[], false), &open));
    }
}
