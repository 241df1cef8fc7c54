//! Helpers shared by the storage tests: a shop that decides changes with the
//! domain and a store that persists them.

#![allow(dead_code, clippy::unwrap_used)]

use ordercore_domain::catalog::{decide_issue_coupon, decide_upsert_sku};
use ordercore_domain::event::EventContext;
use ordercore_domain::testkit::{self, Shop};
use ordercore_domain::{Actor, Event, EventBody, OrderFamily, OrderId};
use ordercore_storage::{Store, StoreConfig};
use std::collections::BTreeMap;
use std::ops::ControlFlow;
use std::path::Path;

pub fn config(dir: &Path) -> StoreConfig {
    let mut config = StoreConfig::new(dir);
    config.sled_cache_bytes = 16 * 1024 * 1024;
    config
}

/// Opens a store, retrying while the previous handle's sled threads
/// still hold the directory's lock (they release it shortly after drop).
pub fn open_retrying(config: StoreConfig) -> Store {
    let mut tries = 0;
    loop {
        match Store::open(config.clone()) {
            Ok(store) => return store,
            Err(e) if tries < 200 && e.to_string().contains("could not acquire lock") => {
                tries += 1;
                std::thread::sleep(std::time::Duration::from_millis(10));
            }
            Err(e) => panic!("cannot open the store: {e}"),
        }
    }
}

/// Events that put the shop's catalog into an empty store.
pub fn catalog_events(shop: &Shop) -> Vec<Event> {
    let ctx = EventContext {
        at: shop.now,
        actor: Actor::admin("setup"),
        request_id: None,
        reason: None,
        version: 0,
    };
    let mut bodies: Vec<EventBody> = Vec::new();
    for sku in &shop.skus {
        bodies.extend(decide_upsert_sku(None, sku.details.clone(), sku.total()).unwrap());
    }
    for coupon in &shop.coupons {
        bodies.extend(decide_issue_coupon(None, coupon.details.clone()).unwrap());
    }
    ctx.events(bodies)
}

/// The shop's model of what the store must hold.
#[derive(Debug, Default)]
pub struct Model {
    pub shop: Shop,
    pub families: BTreeMap<OrderId, OrderFamily>,
}

impl Model {
    pub fn new(store: &Store) -> Model {
        let model = Model {
            shop: Shop::default(),
            families: BTreeMap::new(),
        };
        store
            .submit(0, store.epoch(), catalog_events(&model.shop))
            .unwrap()
            .wait()
            .unwrap();
        model
    }

    /// Applies committed events to the model.
    pub fn apply(&mut self, events: &[Event]) {
        self.shop.apply_catalog(events);
        for event in events {
            // Like an order actor: every event of an order's change joins
            // its family, stock and coupon moves included.
            if let Some(id) = event.body.family_id() {
                match self.families.get_mut(&id) {
                    Some(f) => f.apply(event),
                    None => {
                        if let Some(f) = OrderFamily::create(event) {
                            self.families.insert(id, f);
                        }
                    }
                }
            }
        }
    }

    /// Creates an order for `owner` and persists it; answers its id.
    pub fn create(&mut self, store: &Store, owner: &str, items: &[(&str, u32)]) -> Option<OrderId> {
        let cmd = self.shop.create_cmd(owner, items, None);
        let events = self
            .shop
            .decide_create(&cmd, &testkit::shopper(owner))
            .ok()?;
        let ticket = store.submit(0, store.epoch(), events).unwrap();
        let stamped = ticket.unit.cloned_events();
        ticket.wait().unwrap();
        self.apply(&stamped);
        Some(cmd.order_id)
    }

    /// Runs an action on a family and persists it.
    pub fn run(
        &mut self,
        store: &Store,
        id: OrderId,
        meta: ordercore_domain::CommandMeta,
        action: ordercore_domain::Action,
    ) -> bool {
        let family = self.families.get(&id).unwrap().clone();
        let Ok(events) = ordercore_domain::decide(
            &family,
            &ordercore_domain::Command { meta, action },
            self.shop.now,
        ) else {
            return false;
        };
        if events.is_empty() {
            return true;
        }
        let ticket = store.submit(0, store.epoch(), events).unwrap();
        let stamped = ticket.unit.cloned_events();
        ticket.wait().unwrap();
        self.apply(&stamped);
        true
    }

    /// Asserts the store holds exactly the model's state.
    pub fn assert_matches(&self, store: &Store) {
        for (id, family) in &self.families {
            let stored = store
                .family(id)
                .unwrap()
                .unwrap_or_else(|| panic!("family {id} missing"));
            assert_eq!(&*stored, family, "family {id}");
        }
        for sku in &self.shop.skus {
            assert_eq!(
                store.sku(sku.code()).unwrap().as_ref(),
                Some(sku),
                "SKU {}",
                sku.code()
            );
        }
        for coupon in &self.shop.coupons {
            assert_eq!(
                store.coupon(&coupon.details.coupon_id).unwrap().as_ref(),
                Some(coupon)
            );
        }
        let (all, _) = store
            .scan_families(None, usize::MAX, &mut |_| ControlFlow::Continue(true))
            .unwrap();
        assert_eq!(all.len(), self.families.len(), "families listed");
        let deadlines = store.pending_deadlines().unwrap();
        let created: Vec<_> = self
            .families
            .values()
            .filter(|f| f.status == ordercore_domain::codes::OrderStatus::CREATED)
            .map(|f| (f.expire_at, f.order_id))
            .collect();
        let mut expected = created;
        expected.sort();
        assert_eq!(deadlines, expected, "pending deadlines");
    }
}
