//! The in-process order core on actix: one actor per active order family (its
//! mailbox serialises payment callbacks, cancellations and deadlines without
//! locks), shards that activate and passivate those actors, inventory and
//! coupon reservation, per-shard payment reminders and supervision. It decides
//! with `ordercore-domain` and persists through `ordercore-storage`.
