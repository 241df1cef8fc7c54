//! Durable storage for ordercore on sled 0.34: the journal of decided changes
//! (one record per group commit, the source of truth and the event outbox),
//! the state rows written behind it (order families, SKUs, coupons, the user
//! index, payment deadlines) followed by a checkpoint row, and
//! recovery that replays the journal tail through the domain's pure `apply`.
//! A single writer thread owns every journal write; a second thread writes
//! state behind it.
//!
//! Rows per order lifecycle decide the durable rate (DESIGN.md, "Storage"):
//! a family created and paid within one checkpoint interval costs its share
//! of two journal records, one family row and one user index row; its
//! deadline row is inserted and removed in memory and never written.

mod arrivals;
pub mod clock;
pub mod codec;
pub mod config;
pub mod error;
pub mod journal;
pub mod metrics;
pub mod segments;
mod store;
#[cfg(feature = "testkit")]
pub mod testkit;
mod view;

pub use clock::{Clock, ManualClock, SystemClock};
pub use config::{Durability, StoreConfig};
pub use error::StorageError;
pub use journal::{Journal, SledJournal, Unit};
pub use metrics::MetricsSnapshot;
pub use segments::{AfterFailedSync, SegmentJournal};
pub use store::{
    Completion, DurableHook, OnDurable, RecoveryReport, Store, Ticket, WriterWake, JOURNAL_DIR,
};
pub use view::{Checkpoint, StateRows};
