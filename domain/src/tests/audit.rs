//! Safe retries, versions and audit (API.md): If-Match, versions,
//! Idempotency-Key records, who may act, removed orders, and dry runs.

use super::*;
use crate::command::{Command, CommandMeta};
use crate::event::Actor;
use crate::family::{IdempotencyCheck, IdempotencyEntry};
use crate::ids::{IdempotencyKey, RequestId};
use crate::limits::{EDITS_PER_FAMILY_MAX, IDEMPOTENCY_KEYS_PER_FAMILY_MAX};
use crate::DryRun;

fn with_if_match(meta: CommandMeta, version: u64) -> CommandMeta {
    CommandMeta {
        if_match: Some(crate::IfMatch::Version(version)),
        ..meta
    }
}

#[test]
fn every_persisting_change_adds_exactly_one_to_the_version() {
    let (mut shop, mut f) = fixture(OrderStatus::CREATED);
    let id = f.order_id;
    assert_eq!(f.version, 1);
    let changes: Vec<(CommandMeta, Action)> = vec![
        (shopper("u1"), prepay(&f, id)),
        (provider(), pay_action(&f, "T1")),
        (admin(), note(id)),
        (shopper("u1"), new_address(id)),
        (
            shopper("u1"),
            apply(id, AfterSaleType::RETURN_MONEY, &[("A1", 1)]),
        ),
        (provider(), pay_action(&f, "T2")),
        // Revokes the pending application, cancels, moves stock and coupon and
        // refunds: many events, one change.
        (shopper("u1"), cancel(id, CancelType::USER_CANCELED)),
        (admin(), note(id)),
        (shopper("u1"), remove(id)),
    ];
    for (n, (meta, action)) in changes.into_iter().enumerate() {
        let name = action.name();
        let before = f.version;
        let events = shop.run(&mut f, meta, action).unwrap();
        assert!(!events.is_empty(), "{name}");
        assert_eq!(f.version, before + 1, "{name}");
        assert_eq!(f.version, n as u64 + 2, "{name}");
        assert!(events.iter().all(|e| e.version == f.version), "{name}");
    }
}

#[test]
fn commands_that_change_nothing_leave_the_version_alone() {
    let (mut shop, mut f) = fixture(OrderStatus::FULFILLED);
    let id = f.order_id;
    let version = f.version;
    let a = {
        shop.run(
            &mut f,
            shopper("u1"),
            apply(id, AfterSaleType::RETURN_MONEY, &[("A1", 1)]),
        )
        .unwrap();
        let a = last_after_sale(&f).after_sale_id;
        shop.run(&mut f, admin(), review(a, false)).unwrap();
        a
    };
    assert_eq!(f.version, version + 2);
    let version = f.version;
    shop.now = f.expire_at.plus_millis(1);
    no_op(&mut shop, &mut f, system(), deadline(id));
    let action = pay_action(&f, "T1");
    no_op(&mut shop, &mut f, provider(), action);
    no_op(
        &mut shop,
        &mut f,
        admin(),
        fulfill(id, FulfillmentEvent::FULFILLED),
    );
    no_op(&mut shop, &mut f, admin(), review(a, false));
    assert_eq!(f.version, version);
}

#[test]
fn the_address_it_already_has_changes_nothing_unless_keyed() {
    let (mut shop, mut f) = fixture(OrderStatus::CREATED);
    let id = f.order_id;
    shop.run(&mut f, shopper("u1"), new_address(id)).unwrap();
    let version = f.version;
    no_op(&mut shop, &mut f, shopper("u1"), new_address(id));
    assert_eq!(f.version, version);
    // A keyed one is recorded, so that its retry replays.
    let keyed = CommandMeta {
        idempotency_key: Some(IdempotencyKey::parse("k-same").unwrap()),
        ..shopper("u1")
    };
    let events = shop.run(&mut f, keyed, new_address(id)).unwrap();
    assert_eq!(types(&events), ["OrderAddressChanged"]);
}

#[test]
fn edits_stop_at_their_limit_and_moves_go_on() {
    let (mut shop, mut f) = fixture(OrderStatus::CREATED);
    let id = f.order_id;
    // Other changes do not count: a version far past the limit still
    // takes edits.
    f.version = 10 * EDITS_PER_FAMILY_MAX as u64;
    for _ in 0..EDITS_PER_FAMILY_MAX - 1 {
        shop.run(&mut f, admin(), note(id)).unwrap();
    }
    // One below the limit: one more edit goes through.
    shop.run(&mut f, shopper("u1"), new_address(id)).unwrap();
    let edits = [
        (shopper("u1"), new_address_2(id)),
        (shopper("u1"), prepay(&f, id)),
        (admin(), note(id)),
    ];
    let mut limited = 0;
    for (meta, action) in edits {
        let code = refused(&mut shop, &mut f, meta, action);
        assert_eq!(code, ErrorCode::ORDER_CHANGE_LIMIT);
        limited += 1;
    }
    assert_eq!(limited, 3);
    // An idle actor's compact state, which keeps no history, counts alike.
    let compact = f.compact();
    assert_eq!(
        (compact.edits(), f.edits()),
        (EDITS_PER_FAMILY_MAX, EDITS_PER_FAMILY_MAX)
    );
    let code = crate::decide(
        &compact,
        &Command {
            meta: admin(),
            action: note(id),
        },
        shop.now,
    )
    .unwrap_err()
    .code();
    assert_eq!(code, ErrorCode::ORDER_CHANGE_LIMIT);
    // Paying and what follows are not edits.
    let version = f.version;
    let action = pay_action(&f, "T1");
    shop.run(&mut f, provider(), action).unwrap();
    assert_eq!(f.status, OrderStatus::PAID);
    shop.run(&mut f, admin(), fulfill(id, FulfillmentEvent::FULFILLED))
        .unwrap();
    assert_eq!(f.version, version + 2);
}

#[test]
fn if_match_refuses_a_moved_version_and_changes_nothing() {
    let (mut shop, mut f) = fixture(OrderStatus::PAID);
    let id = f.order_id;
    assert_eq!(f.version, 2);
    for stale in [1, 3, 0] {
        let err = shop
            .run(
                &mut f,
                with_if_match(admin(), stale),
                fulfill(id, FulfillmentEvent::FULFILLED),
            )
            .unwrap_err();
        assert_eq!(err.code(), ErrorCode::ORDER_VERSION_MISMATCH);
        assert_eq!(
            err,
            DomainError::VersionMismatch {
                expected: stale,
                current: 2
            }
        );
    }
    // Also for a command that would change nothing, and for a note.
    for action in [note(id), deadline(id)] {
        let code = refused(&mut shop, &mut f, with_if_match(admin(), 1), action);
        assert_eq!(code, ErrorCode::ORDER_VERSION_MISMATCH);
    }
    shop.run(
        &mut f,
        with_if_match(admin(), 2),
        fulfill(id, FulfillmentEvent::FULFILLED),
    )
    .unwrap();
    assert_eq!((f.status, f.version), (OrderStatus::FULFILLED, 3));
    let code = refused(
        &mut shop,
        &mut f,
        with_if_match(admin(), 2),
        fulfill(id, FulfillmentEvent::OUT_STOCK),
    );
    assert_eq!(code, ErrorCode::ORDER_VERSION_MISMATCH);
}

fn key(k: &str) -> IdempotencyKey {
    IdempotencyKey::parse(k).unwrap()
}

fn record(f: &mut OrderFamily, caller: &Actor, k: &str, request_hash: u64) {
    let entry = IdempotencyEntry {
        family_id: f.order_id,
        caller: caller.clone(),
        key: key(k),
        request_hash,
        status: 200,
        body: format!("{{\"key\":\"{k}\"}}"),
    };
    f.apply(&Event {
        seq: 0,
        at: t0(),
        actor: caller.clone(),
        request_id: None,
        reason: None,
        version: f.version,
        body: EventBody::IdempotencyRecorded(Box::new(entry)),
    });
}

#[test]
fn idempotency_keys_replay_refuse_reuse_and_are_limited_per_family() {
    let (_, mut f) = fixture(OrderStatus::PAID);
    let u1 = shopper("u1").actor;
    let ops = admin().actor;
    assert_eq!(
        f.check_idempotency(&u1, &key("k1"), 42),
        Ok(IdempotencyCheck::New)
    );
    let (version, history) = (f.version, f.history.len());
    record(&mut f, &u1, "k1", 42);
    // Recorded with the change it answers: no new version, no public event.
    assert_eq!((f.version, f.history.len()), (version, history));
    match f.check_idempotency(&u1, &key("k1"), 42) {
        Ok(IdempotencyCheck::Replay(entry)) => {
            assert_eq!(entry.status, 200);
            assert_eq!(entry.body, "{\"key\":\"k1\"}");
        }
        other => panic!("expected a replay, got {other:?}"),
    }
    let reused = f.check_idempotency(&u1, &key("k1"), 43).unwrap_err();
    assert_eq!(reused.code(), ErrorCode::IDEMPOTENCY_KEY_REUSED);
    // Keys are scoped to the caller.
    assert_eq!(
        f.check_idempotency(&ops, &key("k1"), 43),
        Ok(IdempotencyCheck::New)
    );
    for n in 2..=IDEMPOTENCY_KEYS_PER_FAMILY_MAX {
        record(&mut f, &u1, &format!("k{n}"), n as u64);
    }
    assert_eq!(f.idempotency.len(), 64);
    let limit = f.check_idempotency(&u1, &key("k65"), 65).unwrap_err();
    assert_eq!(limit.code(), ErrorCode::IDEMPOTENCY_KEY_LIMIT);
    let limit = f.check_idempotency(&ops, &key("k1"), 42).unwrap_err();
    assert_eq!(limit.code(), ErrorCode::IDEMPOTENCY_KEY_LIMIT);
    // Keys already kept still answer as before.
    assert!(matches!(
        f.check_idempotency(&u1, &key("k64"), 64),
        Ok(IdempotencyCheck::Replay(_))
    ));
    assert_eq!(
        f.check_idempotency(&u1, &key("k64"), 1).unwrap_err().code(),
        ErrorCode::IDEMPOTENCY_KEY_REUSED
    );
}

#[test]
fn a_shopper_may_act_only_on_its_own_orders() {
    let (mut shop, mut f) = fixture(OrderStatus::PAID);
    let id = f.order_id;
    shop.run(
        &mut f,
        shopper("u1"),
        apply(id, AfterSaleType::RETURN_MONEY, &[("A1", 1)]),
    )
    .unwrap();
    let a = last_after_sale(&f).after_sale_id;
    let actions = [
        prepay(&f, id),
        cancel(id, CancelType::USER_CANCELED),
        new_address(id),
        apply(id, AfterSaleType::RETURN_MONEY, &[("A2", 1)]),
        revoke(a),
        remove(id),
    ];
    for action in actions {
        let name = action.name();
        let code = refused(&mut shop, &mut f, shopper("u2"), action);
        assert_eq!(code, ErrorCode::FORBIDDEN, "{name}");
    }
    // A create on the used id hears only that it is taken (API.md: a
    // different body on a used id), not that the order is someone's.
    let code = refused(
        &mut shop,
        &mut f,
        shopper("u2"),
        Action::Create { fingerprint: 0 },
    );
    assert_eq!(code, ErrorCode::ORDER_EXISTED);
    // Even an If-Match does not reveal the version to another shopper.
    let code = refused(
        &mut shop,
        &mut f,
        with_if_match(shopper("u2"), 99),
        note(id),
    );
    assert_eq!(code, ErrorCode::FORBIDDEN);
}

#[test]
fn a_removed_order_is_not_found_for_its_shopper_but_still_there_for_admins() {
    let (mut shop, mut f) = fixture(OrderStatus::SIGNED);
    let id = f.order_id;
    shop.run(&mut f, shopper("u1"), remove(id)).unwrap();
    for action in [
        apply(id, AfterSaleType::RETURN_GOODS, &[("A1", 1)]),
        new_address(id),
        cancel(id, CancelType::USER_CANCELED),
        remove(id),
    ] {
        let name = action.name();
        let code = refused(&mut shop, &mut f, shopper("u1"), action);
        assert_eq!(code, ErrorCode::ORDER_NOT_FOUND, "{name}");
    }
    shop.run(&mut f, admin(), note(id)).unwrap();
    assert!(f.removed);
}

#[test]
fn ids_outside_the_family_are_not_found() {
    let (mut shop, mut f) = fixture(OrderStatus::PAID);
    let other = shop.order_id("u1");
    for action in [
        fulfill(other, FulfillmentEvent::FULFILLED),
        note(other),
        cancel(other, CancelType::USER_CANCELED),
        lack(other, &[("A1", 1)]),
        apply(other, AfterSaleType::RETURN_MONEY, &[("A1", 1)]),
    ] {
        let name = action.name();
        let code = refused(&mut shop, &mut f, admin(), action);
        assert_eq!(code, ErrorCode::ORDER_NOT_FOUND, "{name}");
    }
}

#[test]
fn events_and_the_status_log_record_who_asked_for_which_request_and_why() {
    let (mut shop, mut f) = fixture(OrderStatus::PAID);
    let id = f.order_id;
    let meta = CommandMeta {
        request_id: Some(RequestId::parse("req-7").unwrap()),
        reason: Some("customer asked by phone".into()),
        ..admin()
    };
    let events = shop
        .run(&mut f, meta, cancel(id, CancelType::CUSTOMER_CANCELED))
        .unwrap();
    for e in &events {
        assert_eq!(e.actor, Actor::admin("ops-1"));
        assert_eq!(e.request_id.as_ref().map(|r| r.as_str()), Some("req-7"));
        assert_eq!(e.reason.as_deref(), Some("customer asked by phone"));
        assert_eq!(e.at, t0());
    }
    let entry = f.status_log.last().unwrap();
    assert_eq!(
        (entry.from, entry.to),
        (Some(OrderStatus::PAID), OrderStatus::CANCELED)
    );
    assert_eq!(entry.actor, Actor::admin("ops-1"));
    assert_eq!(entry.reason.as_deref(), Some("customer asked by phone"));
    // A blank reason is refused.
    let meta = CommandMeta {
        reason: Some("  ".into()),
        ..admin()
    };
    let code = refused(&mut shop, &mut f, meta, note(id));
    assert_eq!(code, ErrorCode::TEXT_INVALID);
}

fn dry(f: &OrderFamily, meta: CommandMeta, action: Action, now: crate::Timestamp) -> DryRun {
    let events = crate::decide(
        f,
        &Command {
            meta,
            action: action.clone(),
        },
        now,
    )
    .unwrap();
    DryRun::of(f, &action, &events)
}

fn delta(sku: &str, available: i64, locked: i64, sold: i64) -> crate::event::StockDelta {
    crate::event::StockDelta {
        sku_code: sku_code(sku),
        order_id: None,
        available_delta: available,
        locked_delta: locked,
        sold_delta: sold,
    }
}

fn without_order(mut run: DryRun) -> DryRun {
    for d in &mut run.stock {
        d.order_id = None;
    }
    run
}

#[test]
fn a_dry_run_of_cancelling_a_paid_order_tells_what_would_happen_and_changes_nothing() {
    let (shop, f) = fixture(OrderStatus::PAID);
    let before = (f.clone(), shop.skus.clone(), shop.coupons.clone());
    let id = f.order_id;
    let run = dry(
        &f,
        shopper("u1"),
        cancel(id, CancelType::USER_CANCELED),
        shop.now,
    );
    assert_eq!(
        without_order(run),
        DryRun {
            status: OrderStatus::CANCELED.code(),
            refund_amount: m(PAY),
            stock: vec![delta("A1", 2, 0, -2), delta("A2", 1, 0, -1)],
            coupon_status: Some(CouponStatus::UNUSED),
        }
    );
    assert_eq!((f, shop.skus, shop.coupons), before);
}

#[test]
fn dry_runs_of_after_sale_apply_review_and_lack() {
    let (mut shop, mut f) = fixture(OrderStatus::SIGNED);
    let id = f.order_id;
    let action = apply(id, AfterSaleType::RETURN_GOODS, &[("A1", 1)]);
    let run = dry(&f, shopper("u1"), action.clone(), shop.now);
    assert_eq!(
        run,
        DryRun {
            status: AfterSaleStatus::COMMITTED.code(),
            refund_amount: m(A1_ONE_UNIT),
            stock: vec![],
            coupon_status: None,
        }
    );
    shop.run(&mut f, shopper("u1"), action).unwrap();
    let a = last_after_sale(&f).after_sale_id;
    let run = dry(&f, admin(), review(a, true), shop.now);
    assert_eq!(
        without_order(run),
        DryRun {
            status: AfterSaleStatus::REFUNDING.code(),
            refund_amount: m(A1_ONE_UNIT),
            stock: vec![delta("A1", 1, 0, -1)],
            coupon_status: None,
        }
    );
    let run = dry(&f, admin(), review(a, false), shop.now);
    assert_eq!(run.status, AfterSaleStatus::REVIEW_REJECTED.code());
    assert_eq!(run.refund_amount, Money::ZERO);
    // The same decision again changes nothing, and answers the after-sale
    // as it stands, not the order.
    shop.run(&mut f, admin(), review(a, true)).unwrap();
    let run = dry(&f, admin(), review(a, true), shop.now);
    assert_eq!(
        run,
        DryRun {
            status: AfterSaleStatus::REFUNDING.code(),
            refund_amount: Money::ZERO,
            stock: vec![],
            coupon_status: None,
        }
    );

    let (shop, f) = fixture(OrderStatus::OUT_STOCK);
    let id = f.order_id;
    // The lack's after-sale is approved at once: the real answer's status.
    let run = dry(&f, admin(), lack(id, &[("A2", 1)]), shop.now);
    assert_eq!(
        run,
        DryRun {
            status: AfterSaleStatus::REFUNDING.code(),
            refund_amount: m(A2_PAY),
            stock: vec![],
            coupon_status: None,
        }
    );
}

/// A compact copy keeps no recorded replies (a keyed request reads the
/// whole family first), before or after a key is recorded, and stays the
/// compact copy of the whole family.
#[test]
fn a_compact_copy_keeps_no_recorded_replies() {
    let (_, mut f) = fixture(OrderStatus::PAID);
    let u1 = shopper("u1").actor;
    record(&mut f, &u1, "k1", 1);
    let mut compact = f.compact();
    assert!(compact.idempotency.is_empty());
    record(&mut f, &u1, "k2", 2);
    record(&mut compact, &u1, "k2", 2);
    assert_eq!(f.idempotency.len(), 2);
    assert_eq!(compact, f.compact());
    assert!(compact.idempotency.is_empty());
}
