//! What the run asked for and what the server acknowledged: the facts the
//! verification checks the server's final state against.

use std::collections::HashMap;
use std::sync::Mutex;

/// One order the run tried to create.
#[derive(Debug, Clone, Default)]
pub struct OrderRecord {
    pub user: String,
    pub items: Vec<(String, i64)>,
    /// The coupon the create named.
    pub coupon: Option<String>,
    /// The create was answered 2xx.
    pub created: bool,
    /// trade_nos answered `PAID`.
    pub paid: Vec<String>,
    /// trade_nos answered `REFUND` (a payment for a cancelled or paid order).
    pub refunded: Vec<String>,
    /// A cancel was answered 200.
    pub canceled: bool,
}

/// In-flow checks: each counts the cases it saw and the ones that broke.
#[derive(Debug, Clone, Copy, Default, serde::Serialize)]
pub struct Tally {
    pub cases: u64,
    pub violations: u64,
}

impl Tally {
    pub fn see(&mut self, ok: bool) {
        self.cases += 1;
        if !ok {
            self.violations += 1;
        }
    }
}

#[derive(Debug, Default)]
struct Inner {
    orders: HashMap<String, OrderRecord>,
    duplicate_callbacks: Tally,
    idempotent_replays: Tally,
    flash_attempts: u64,
    flash_created: u64,
    /// Creates refused with `PRODUCT_STOCK_NOT_ENOUGH`: a flash sale that
    /// met its limit.
    sold_out: u64,
}

/// The in-flow counts, read once the run is over.
#[derive(Debug, Clone, Copy)]
pub struct Tallies {
    pub duplicates: Tally,
    pub replays: Tally,
    pub flash_attempts: u64,
    pub flash_created: u64,
    pub sold_out: u64,
}

/// Shared by every session.
#[derive(Debug, Default)]
pub struct Ledger {
    inner: Mutex<Inner>,
}

impl Ledger {
    /// A ledger with room for `orders` without growing.
    pub fn with_capacity(orders: usize) -> Self {
        Ledger {
            inner: Mutex::new(Inner {
                orders: HashMap::with_capacity(orders),
                ..Inner::default()
            }),
        }
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, Inner> {
        self.inner
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
    }

    /// Notes an order before its create is sent (a create that was made
    /// durable but never answered must still be found and accounted for).
    pub fn attempt(&self, id: &str, user: &str, items: &[(String, i64)], coupon: Option<&str>) {
        self.lock().orders.insert(
            id.to_owned(),
            OrderRecord {
                user: user.to_owned(),
                items: items.to_vec(),
                coupon: coupon.map(str::to_owned),
                ..OrderRecord::default()
            },
        );
    }

    pub fn update(&self, id: &str, f: impl FnOnce(&mut OrderRecord)) {
        if let Some(r) = self.lock().orders.get_mut(id) {
            f(r);
        }
    }

    pub fn orders(&self) -> Vec<(String, OrderRecord)> {
        self.lock()
            .orders
            .iter()
            .map(|(k, v)| (k.clone(), v.clone()))
            .collect()
    }

    /// A created order for reads: (id, user).
    pub fn pick_created(&self, n: usize) -> Option<(String, String)> {
        let inner = self.lock();
        let created: Vec<_> = inner
            .orders
            .iter()
            .filter(|(_, r)| r.created)
            .take(n + 1)
            .collect();
        created
            .get(n % created.len().max(1))
            .map(|(id, r)| ((*id).clone(), r.user.clone()))
    }

    pub fn duplicate_callback(&self, ok: bool) {
        self.lock().duplicate_callbacks.see(ok);
    }

    pub fn idempotent_replay(&self, ok: bool) {
        self.lock().idempotent_replays.see(ok);
    }

    pub fn flash(&self, created: bool) {
        let mut inner = self.lock();
        inner.flash_attempts += 1;
        inner.flash_created += u64::from(created);
    }

    pub fn sold_out(&self) {
        self.lock().sold_out += 1;
    }

    pub fn tallies(&self) -> Tallies {
        let inner = self.lock();
        Tallies {
            duplicates: inner.duplicate_callbacks,
            replays: inner.idempotent_replays,
            flash_attempts: inner.flash_attempts,
            flash_created: inner.flash_created,
            sold_out: inner.sold_out,
        }
    }
}
