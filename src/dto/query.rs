//! Query strings: listings, the event feed and dry runs.
//!
//! Every parameter is read as a string and parsed here, so a bad value gets
//! its own code (`PAGE_SIZE_INVALID`, `CURSOR_INVALID`, `TIME_INVALID`) and
//! an empty one (`?status=&cursor=`, as API.md writes them) counts as absent.

use super::{code_of, parse_order_id};
use crate::error::ApiError;
use ordercore_domain::codes::OrderStatus;
use ordercore_domain::limits::{PAGE_SIZE_DEFAULT, PAGE_SIZE_MAX};
use ordercore_domain::{AfterSaleId, ErrorCode, OrderId, Timestamp};
use serde::Deserialize;
use utoipa::IntoParams;

/// Events one page of `GET /v1/events` holds when `limit` is not given.
pub const EVENTS_LIMIT_DEFAULT: usize = 100;
/// Most events one page of `GET /v1/events` holds.
pub const EVENTS_LIMIT_MAX: usize = 1_000;

/// A parameter's value, `None` when absent or empty.
fn given(raw: Option<&String>) -> Option<&str> {
    raw.map(|s| s.trim()).filter(|s| !s.is_empty())
}

/// A keyset page: how many, and the family id to continue before.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Page {
    /// 1..=[`PAGE_SIZE_MAX`], default [`PAGE_SIZE_DEFAULT`].
    pub size: usize,
    /// The `next_cursor` of the previous page: a master (or single) order
    /// id, or a sub-order id where that page ended inside a mixed family.
    pub cursor: Option<OrderId>,
}

impl Page {
    fn parse(page_size: Option<&String>, cursor: Option<&String>) -> Result<Page, ApiError> {
        let size = match given(page_size) {
            None => PAGE_SIZE_DEFAULT,
            Some(raw) => raw
                .parse::<usize>()
                .ok()
                .filter(|n| (1..=PAGE_SIZE_MAX).contains(n))
                .ok_or_else(|| {
                    ApiError::new(
                        ErrorCode::PAGE_SIZE_INVALID,
                        format!("page_size: must be 1..={PAGE_SIZE_MAX}, got {raw:?}"),
                    )
                })?,
        };
        let cursor = given(cursor)
            .map(|raw| {
                parse_order_id(raw).map_err(|_| {
                    ApiError::new(
                        ErrorCode::CURSOR_INVALID,
                        "cursor: not a next_cursor of this listing",
                    )
                })
            })
            .transpose()?;
        Ok(Page { size, cursor })
    }
}

fn status(raw: Option<&String>) -> Result<Option<OrderStatus>, ApiError> {
    given(raw)
        .map(|raw| {
            let code = raw.parse::<i64>().map_err(|_| {
                ApiError::invalid_request(format!("status: {raw:?} is not an order status code"))
            })?;
            code_of(
                code,
                OrderStatus::from_code,
                ErrorCode::INVALID_REQUEST,
                "status",
            )
        })
        .transpose()
}

fn time(raw: Option<&String>, field: &'static str) -> Result<Option<Timestamp>, ApiError> {
    given(raw)
        .map(|raw| Ok(Timestamp::parse_rfc3339(raw, field)?))
        .transpose()
}

/// What a listing asks for.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct OrderFilter {
    pub status: Option<OrderStatus>,
    /// Inclusive lower bound of `created_at` (admin listing only).
    pub created_from: Option<Timestamp>,
    /// Inclusive upper bound of `created_at` (admin listing only).
    pub created_to: Option<Timestamp>,
    pub page: Page,
}

impl OrderFilter {
    /// Whether an order created at `created_at` with `status` is listed.
    pub fn accepts(&self, status: OrderStatus, created_at: Timestamp) -> bool {
        self.status.is_none_or(|s| s == status)
            && self.created_from.is_none_or(|from| created_at >= from)
            && self.created_to.is_none_or(|to| created_at <= to)
    }
}

/// `GET /v1/users/{user_id}/orders?status=&page_size=&cursor=`.
#[derive(Debug, Clone, Default, PartialEq, Eq, Deserialize, IntoParams)]
#[serde(deny_unknown_fields)]
#[into_params(parameter_in = Query)]
pub struct UserOrdersQuery {
    /// An order status code.
    #[param(value_type = Option<u8>)]
    pub status: Option<String>,
    /// 1..=100, default 20.
    #[param(value_type = Option<u32>)]
    pub page_size: Option<String>,
    /// The `next_cursor` of the previous page.
    pub cursor: Option<String>,
}

impl UserOrdersQuery {
    pub fn parse(self) -> Result<OrderFilter, ApiError> {
        Ok(OrderFilter {
            status: status(self.status.as_ref())?,
            created_from: None,
            created_to: None,
            page: Page::parse(self.page_size.as_ref(), self.cursor.as_ref())?,
        })
    }
}

/// `GET /v1/orders?status=&created_from=&created_to=&page_size=&cursor=` (admin).
#[derive(Debug, Clone, Default, PartialEq, Eq, Deserialize, IntoParams)]
#[serde(deny_unknown_fields)]
#[into_params(parameter_in = Query)]
pub struct AdminOrdersQuery {
    /// An order status code.
    #[param(value_type = Option<u8>)]
    pub status: Option<String>,
    /// RFC 3339, inclusive.
    #[param(value_type = Option<String>, format = DateTime)]
    pub created_from: Option<String>,
    /// RFC 3339, inclusive.
    #[param(value_type = Option<String>, format = DateTime)]
    pub created_to: Option<String>,
    /// 1..=100, default 20.
    #[param(value_type = Option<u32>)]
    pub page_size: Option<String>,
    /// The `next_cursor` of the previous page.
    pub cursor: Option<String>,
}

impl AdminOrdersQuery {
    pub fn parse(self) -> Result<OrderFilter, ApiError> {
        let created_from = time(self.created_from.as_ref(), "created_from")?;
        let created_to = time(self.created_to.as_ref(), "created_to")?;
        if let (Some(from), Some(to)) = (created_from, created_to) {
            if from > to {
                return Err(ApiError::new(
                    ErrorCode::TIME_INVALID,
                    "created_from: is after created_to",
                ));
            }
        }
        Ok(OrderFilter {
            status: status(self.status.as_ref())?,
            created_from,
            created_to,
            page: Page::parse(self.page_size.as_ref(), self.cursor.as_ref())?,
        })
    }
}

/// `GET /v1/users/{user_id}/after-sales?page_size=&cursor=`.
#[derive(Debug, Clone, Default, PartialEq, Eq, Deserialize, IntoParams)]
#[serde(deny_unknown_fields)]
#[into_params(parameter_in = Query)]
pub struct PageQuery {
    /// 1..=100, default 20.
    #[param(value_type = Option<u32>)]
    pub page_size: Option<String>,
    /// The `next_cursor` of the previous page.
    pub cursor: Option<String>,
}

impl PageQuery {
    pub fn parse(self) -> Result<Page, ApiError> {
        Page::parse(self.page_size.as_ref(), self.cursor.as_ref())
    }

    /// The page of a user's after-sales: its size, and where it resumes —
    /// after the after-sale a page ended with (a family's after-sales can
    /// fill pages of their own), or before a family (a cursor of the
    /// family-by-family listing).
    pub fn parse_after_sales(self) -> Result<(usize, AfterSalesCursor), ApiError> {
        let size = Page::parse(self.page_size.as_ref(), None)?.size;
        let cursor = match given(self.cursor.as_ref()) {
            None => AfterSalesCursor::Start,
            Some(raw) => match AfterSaleId::parse(raw) {
                Ok(id) => AfterSalesCursor::After(id),
                Err(_) => match Page::parse(None, self.cursor.as_ref())?.cursor {
                    Some(family) => AfterSalesCursor::Before(family),
                    None => AfterSalesCursor::Start,
                },
            },
        };
        Ok((size, cursor))
    }
}

/// Where a user's after-sales listing resumes.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum AfterSalesCursor {
    Start,
    /// After this after-sale: the older ones of its family, then older families.
    After(AfterSaleId),
    /// With the families older than this one.
    Before(OrderId),
}

/// A range of the event feed.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct EventRange {
    /// Events with a greater `seq` (0: from the start of what is kept).
    pub after: u64,
    /// 1..=[`EVENTS_LIMIT_MAX`], default [`EVENTS_LIMIT_DEFAULT`].
    pub limit: usize,
}

/// An event cursor (`?after` or a `Last-Event-ID` header): a sequence number.
pub fn after(raw: Option<&String>) -> Result<u64, ApiError> {
    given(raw).map_or(Ok(0), |raw| {
        raw.parse::<u64>().map_err(|_| {
            ApiError::new(
                ErrorCode::CURSOR_INVALID,
                format!("after: {raw:?} is not an event sequence number"),
            )
        })
    })
}

/// `GET /v1/events?after=SEQ&limit=N` (admin).
#[derive(Debug, Clone, Default, PartialEq, Eq, Deserialize, IntoParams)]
#[serde(deny_unknown_fields)]
#[into_params(parameter_in = Query)]
pub struct EventsQuery {
    /// The `next` of the previous page; default 0.
    #[param(value_type = Option<u64>)]
    pub after: Option<String>,
    /// 1..=1000, default 100.
    #[param(value_type = Option<u32>)]
    pub limit: Option<String>,
}

impl EventsQuery {
    pub fn parse(self) -> Result<EventRange, ApiError> {
        let limit = match given(self.limit.as_ref()) {
            None => EVENTS_LIMIT_DEFAULT,
            Some(raw) => raw
                .parse::<usize>()
                .ok()
                .filter(|n| (1..=EVENTS_LIMIT_MAX).contains(n))
                .ok_or_else(|| {
                    ApiError::new(
                        ErrorCode::PAGE_SIZE_INVALID,
                        format!("limit: must be 1..={EVENTS_LIMIT_MAX}, got {raw:?}"),
                    )
                })?,
        };
        Ok(EventRange {
            after: after(self.after.as_ref())?,
            limit,
        })
    }
}

/// `GET /v1/events/stream?after=SEQ` (admin).
#[derive(Debug, Clone, Default, PartialEq, Eq, Deserialize, IntoParams)]
#[serde(deny_unknown_fields)]
#[into_params(parameter_in = Query)]
pub struct StreamQuery {
    /// Resume after this sequence number; default 0.
    #[param(value_type = Option<u64>)]
    pub after: Option<String>,
}

impl StreamQuery {
    /// The sequence number to stream after.
    pub fn parse(self) -> Result<u64, ApiError> {
        after(self.after.as_ref())
    }
}

/// `?dry_run=true` on cancel, after-sale apply, review and lack.
#[derive(Debug, Clone, Default, PartialEq, Eq, Deserialize, IntoParams)]
#[serde(deny_unknown_fields)]
#[into_params(parameter_in = Query)]
pub struct DryRunQuery {
    /// Run every check and answer what would happen, changing nothing.
    #[param(value_type = Option<bool>)]
    pub dry_run: Option<String>,
}

impl DryRunQuery {
    pub fn parse(self) -> Result<bool, ApiError> {
        match given(self.dry_run.as_ref()) {
            None | Some("false") => Ok(false),
            Some("true") => Ok(true),
            Some(other) => Err(ApiError::invalid_request(format!(
                "dry_run: must be true or false, got {other:?}"
            ))),
        }
    }
}
