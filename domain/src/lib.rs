//! The pure order logic of ordercore: typed values, the order family
//! aggregate, pricing, refunds, risk rules, events and errors.
//!
//! Every change to an order is [`decide`] followed by [`OrderFamily::apply`]:
//! `decide(&family, &command, now)` answers the events the command causes
//! (or why it is refused) and `apply` folds each event into the state. Time
//! is always a parameter; nothing here reads a clock, does I/O or draws a
//! random number, so storage replay, actors, the HTTP edge and the load
//! harness all share exactly these rules. A dry run is `decide` without
//! `apply`.

pub mod catalog;
pub mod codes;
pub mod command;
pub mod decide;
mod dry_run;
pub mod error;
pub mod event;
pub mod family;
pub mod ids;
pub mod limits;
pub mod money;
pub mod order;
pub mod pricing;
#[cfg(any(test, feature = "testkit"))]
pub mod testkit;
pub mod text;

pub use catalog::{Coupon, CouponDetails, Sku, SkuDetails};
pub use command::{Action, Command, CommandMeta, CreateContext, CreateOrder, IfMatch};
pub use decide::{check_access, check_owner, decide, decide_create};
pub use dry_run::DryRun;
pub use error::{AlertLevel, DomainError, ErrorCode};
pub use event::{Actor, ActorKind, Event, EventBody, Target};
pub use family::{AfterSale, IdempotencyCheck, OrderFamily, PayResult};
pub use ids::{AfterSaleId, CouponId, IdSequencer, OrderId, SkuCode, UserId};
pub use money::{Money, Quantity, Timestamp};
pub use pricing::{PricingRules, Quote, RiskRules};

#[cfg(test)]
mod properties;
#[cfg(test)]
mod tests;
