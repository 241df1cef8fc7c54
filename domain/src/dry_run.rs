//! What a command would do, without doing it (`?dry_run=true`).

use crate::codes::{AfterSaleTypeDetail, CouponStatus, OrderStatus};
use crate::command::Action;
use crate::event::{Event, EventBody, StockDelta};
use crate::family::OrderFamily;
use crate::money::Money;

/// The outcome of a decided but not applied command (API.md, "Dry run").
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DryRun {
    /// The status the real command answers with: the after-sale's when the
    /// command creates or reviews one (after-sale apply, lack, review), the
    /// order's otherwise (cancel).
    pub status: u8,
    /// Money the change would refund.
    pub refund_amount: Money,
    /// Stock moves, per SKU.
    pub stock: Vec<StockDelta>,
    /// The coupon's state afterwards, when the change moves it.
    pub coupon_status: Option<CouponStatus>,
}

impl DryRun {
    /// Summarises `events` as decided for `family` by `action`.
    pub fn of(family: &OrderFamily, action: &Action, events: &[Event]) -> DryRun {
        let mut after = family.clone();
        for event in events {
            after.apply(event);
        }
        let mut refund = 0;
        let mut status: Option<u8> = None;
        let mut stock = Vec::new();
        let mut coupon_status = None;
        let committed: Vec<_> = events
            .iter()
            .filter_map(|e| match &e.body {
                EventBody::AfterSaleCommitted(a) => Some(a.after_sale_id),
                _ => None,
            })
            .collect();
        for event in events {
            match &event.body {
                EventBody::AfterSaleCommitted(a) => {
                    refund += a.apply_refund_amount.minor();
                    // A shopper's application or a lack; a cancel's own
                    // system refund leaves the order's status the answer.
                    if matches!(
                        a.detail,
                        AfterSaleTypeDetail::PART_REFUND | AfterSaleTypeDetail::LACK_REFUND
                    ) {
                        status = after.after_sale(&a.after_sale_id).map(|a| a.status.code());
                    }
                }
                EventBody::RefundRequested {
                    after_sale_id,
                    refund_amount,
                    ..
                } if !committed.contains(after_sale_id) => {
                    refund += refund_amount.minor();
                }
                EventBody::AfterSaleReviewed { after_sale_id, .. } => {
                    status = after.after_sale(after_sale_id).map(|a| a.status.code());
                }
                EventBody::StockChanged(delta) => stock.push(delta.clone()),
                EventBody::CouponChanged(change) => coupon_status = Some(change.status),
                _ => {}
            }
        }
        // A review that repeats the recorded decision changes nothing; its
        // real answer is still the after-sale, as it stands.
        if let (None, Action::ReviewAfterSale { after_sale_id, .. }) = (status, action) {
            status = after.after_sale(after_sale_id).map(|a| a.status.code());
        }
        let order_status: OrderStatus = after.display_status();
        DryRun {
            status: status.unwrap_or(order_status.code()),
            refund_amount: Money::from_minor(refund),
            stock,
            coupon_status,
        }
    }
}
