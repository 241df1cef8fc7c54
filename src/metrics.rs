//! `/metrics`: Prometheus text exposition of the edge's request counters
//! and latencies, the core's order counters and the store's writer figures.

use crate::auth::TokenCounts;
use ordercore_actors::{day_of, OrderCore};
use ordercore_domain::{AlertLevel, ErrorCode, Timestamp};
use ordercore_storage::metrics::COMMIT_LATENCY_BUCKETS_US;
use prometheus::{
    Encoder, HistogramOpts, HistogramVec, IntCounterVec, IntGauge, IntGaugeVec, Opts, Registry,
    TextEncoder,
};

/// Upper bounds (seconds) of the request latency histogram.
const LATENCY_BUCKETS_S: [f64; 14] = [
    0.000_1, 0.000_25, 0.000_5, 0.001, 0.002, 0.003, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0,
];

/// Error answers of one UTC day, by code (the dashboard's "today").
#[derive(Debug, Default)]
struct DayErrors {
    day: i64,
    by_code: std::collections::BTreeMap<&'static str, u64>,
}

/// The edge's metrics and the registry they are exposed from.
#[derive(Debug, Clone)]
pub struct Metrics {
    registry: Registry,
    requests: IntCounterVec,
    latency: HistogramVec,
    errors: IntCounterVec,
    /// Errors are few next to requests: one lock per error answer.
    errors_today: std::sync::Arc<std::sync::Mutex<DayErrors>>,
    core: IntGaugeVec,
    store: IntGaugeVec,
    commit_latency: IntGaugeVec,
    tokens: IntGaugeVec,
    ready: IntGauge,
}

impl Metrics {
    /// Registers every metric. Registration only fails on duplicate names,
    /// which would be a defect of this function.
    pub fn new() -> Result<Metrics, prometheus::Error> {
        let registry = Registry::new();
        let requests = IntCounterVec::new(
            Opts::new(
                "ordercore_http_requests_total",
                "HTTP requests by route and status",
            ),
            &["route", "status"],
        )?;
        let latency = HistogramVec::new(
            HistogramOpts::new(
                "ordercore_http_request_duration_seconds",
                "HTTP request latency by route",
            )
            .buckets(LATENCY_BUCKETS_S.to_vec()),
            &["route"],
        )?;
        let errors = IntCounterVec::new(
            Opts::new(
                "ordercore_errors_total",
                "Error responses by code and alert level",
            ),
            &["code", "level"],
        )?;
        let core = IntGaugeVec::new(
            Opts::new(
                "ordercore_core",
                "Order core counters (orders created/paid/canceled/timed out, actors, mailbox backlog)",
            ),
            &["metric"],
        )?;
        let store = IntGaugeVec::new(
            Opts::new(
                "ordercore_store",
                "Write-behind writer counters (groups, units, rows, queue depth, dirty families)",
            ),
            &["metric"],
        )?;
        let commit_latency = IntGaugeVec::new(
            Opts::new(
                "ordercore_store_commit_latency_us_bucket",
                "Group commits by latency bucket upper bound in µs (cumulative)",
            ),
            &["le"],
        )?;
        let tokens = IntGaugeVec::new(
            Opts::new(
                "ordercore_auth_tokens",
                "Bearer tokens verified since start: remembered as verified, or checked in full",
            ),
            &["verified"],
        )?;
        let ready = IntGauge::new(
            "ordercore_ready",
            "1 when recovered and the writer is healthy",
        )?;
        registry.register(Box::new(requests.clone()))?;
        registry.register(Box::new(latency.clone()))?;
        registry.register(Box::new(errors.clone()))?;
        registry.register(Box::new(core.clone()))?;
        registry.register(Box::new(store.clone()))?;
        registry.register(Box::new(commit_latency.clone()))?;
        registry.register(Box::new(tokens.clone()))?;
        registry.register(Box::new(ready.clone()))?;
        Ok(Metrics {
            registry,
            requests,
            latency,
            errors,
            core,
            store,
            commit_latency,
            tokens,
            ready,
            errors_today: std::sync::Arc::default(),
        })
    }

    /// Counts one answered request.
    pub fn observe(&self, route: &str, status: u16, seconds: f64) {
        let mut buf = itoa_buf();
        self.requests
            .with_label_values(&[route, status_str(status, &mut buf)])
            .inc();
        self.latency.with_label_values(&[route]).observe(seconds);
    }

    /// Counts one error response by code and alert level, in total and for
    /// the UTC day of `now`.
    pub fn error(&self, code: ErrorCode, now: Timestamp) {
        let level = match code.alert_level() {
            AlertLevel::High => "HIGH",
            AlertLevel::Medium => "MEDIUM",
            AlertLevel::Low => "LOW",
        };
        self.errors.with_label_values(&[code.name(), level]).inc();
        let day = day_of(now);
        let mut today = self
            .errors_today
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        if today.day != day {
            *today = DayErrors {
                day,
                by_code: Default::default(),
            };
        }
        *today.by_code.entry(code.name()).or_default() += 1;
    }

    /// Error responses of the UTC day of `now`, by code (the dashboard).
    pub fn errors_today(&self, now: Timestamp) -> Vec<(String, u64)> {
        let today = self
            .errors_today
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        if today.day != day_of(now) {
            return Vec::new();
        }
        today
            .by_code
            .iter()
            .map(|(code, n)| ((*code).to_owned(), *n))
            .collect()
    }

    /// Error responses so far, by code.
    pub fn errors_by_code(&self) -> Vec<(String, u64)> {
        let mut out = Vec::new();
        use prometheus::core::Collector;
        for family in self.errors.collect() {
            for m in family.get_metric() {
                let code = m
                    .get_label()
                    .iter()
                    .find(|l| l.name() == "code")
                    .map(|l| l.value().to_owned())
                    .unwrap_or_default();
                // Counters hold whole numbers.
                #[allow(clippy::cast_possible_truncation, clippy::cast_sign_loss)]
                out.push((code, m.get_counter().get_value() as u64));
            }
        }
        out.sort();
        out
    }

    /// The text exposition, with the core's, store's and token keys'
    /// figures read now.
    pub fn render(&self, core: &OrderCore, tokens: &TokenCounts) -> String {
        let c = core.metrics();
        let gauge =
            |v: &IntGaugeVec, name: &str, value: i64| v.with_label_values(&[name]).set(value);
        let i = |v: u64| i64::try_from(v).unwrap_or(i64::MAX);
        gauge(&self.core, "orders_created", i(c.outcomes.orders_created));
        gauge(&self.core, "orders_paid", i(c.outcomes.orders_paid));
        gauge(&self.core, "orders_canceled", i(c.outcomes.orders_canceled));
        gauge(
            &self.core,
            "orders_timed_out",
            i(c.outcomes.orders_timed_out),
        );
        gauge(&self.core, "deadlines_fired", i(c.deadlines_fired));
        gauge(&self.core, "activations", i(c.activations));
        gauge(&self.core, "passivations", i(c.passivations));
        gauge(&self.core, "compactions", i(c.compactions));
        gauge(&self.core, "rehydrations", i(c.rehydrations));
        gauge(&self.core, "restarts", i(c.restarts));
        gauge(&self.core, "overloaded", i(c.overloaded));
        gauge(&self.core, "active_actors", c.active_actors);
        gauge(&self.core, "mailbox_backlog", c.mailbox_backlog);
        gauge(
            &self.core,
            "armed_deadlines",
            i(core.armed_deadlines() as u64),
        );
        let s = core.store().metrics();
        gauge(&self.store, "groups", i(s.groups));
        gauge(&self.store, "units", i(s.units));
        gauge(&self.store, "events", i(s.events));
        gauge(&self.store, "journal_bytes", i(s.journal_bytes));
        gauge(
            &self.store,
            "commit_latency_us_sum",
            i(s.commit_latency_us_sum),
        );
        gauge(&self.store, "write_failures", i(s.write_failures));
        gauge(&self.store, "rows_written", i(s.rows_written));
        gauge(&self.store, "checkpoints", i(s.checkpoints));
        gauge(&self.store, "queue_depth", i(s.queue_depth));
        gauge(&self.store, "dirty_families", i(s.dirty_families));
        gauge(&self.store, "overloaded", i(s.overloaded));
        gauge(&self.store, "row_reads_skipped", i(s.row_reads_skipped));
        gauge(&self.store, "checkpoint_pauses", i(s.checkpoint_pauses));
        gauge(&self.store, "checkpoint_splits", i(s.checkpoint_splits));
        gauge(&self.store, "group_waits", i(s.group_waits));
        gauge(&self.store, "recovery_ms", i(s.recovery_ms));
        let mut cumulative = 0;
        for (i_bucket, count) in s.commit_latency_buckets.iter().enumerate() {
            cumulative += count;
            let le = COMMIT_LATENCY_BUCKETS_US
                .get(i_bucket)
                .map_or_else(|| "+Inf".to_owned(), u64::to_string);
            self.commit_latency
                .with_label_values(&[le.as_str()])
                .set(i(cumulative));
        }
        let count =
            |c: &std::sync::atomic::AtomicU64| i(c.load(std::sync::atomic::Ordering::Relaxed));
        self.tokens
            .with_label_values(&["remembered"])
            .set(count(&tokens.remembered));
        self.tokens
            .with_label_values(&["checked"])
            .set(count(&tokens.checked));
        self.ready.set(i64::from(core.is_ready()));
        let mut out = Vec::new();
        // Encoding into a Vec cannot fail for the text format.
        let _ = TextEncoder::new().encode(&self.registry.gather(), &mut out);
        String::from_utf8(out).unwrap_or_default()
    }
}

fn itoa_buf() -> String {
    String::with_capacity(3)
}

fn status_str(status: u16, buf: &mut String) -> &str {
    use std::fmt::Write;
    buf.clear();
    let _ = write!(buf, "{status}");
    buf.as_str()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn errors_are_counted_per_utc_day_for_the_dashboard() {
        let m = Metrics::new().unwrap();
        let day = ordercore_actors::DAY_MS;
        let late = Timestamp::from_millis(20 * day - 1);
        let next = Timestamp::from_millis(20 * day);
        m.error(ErrorCode::ORDER_NOT_FOUND, late);
        m.error(ErrorCode::ORDER_NOT_FOUND, late);
        m.error(ErrorCode::FORBIDDEN, late);
        assert_eq!(
            m.errors_today(late),
            vec![
                ("FORBIDDEN".to_owned(), 1),
                ("ORDER_NOT_FOUND".to_owned(), 2)
            ]
        );
        // The next day starts from nothing; the totals keep counting.
        assert!(m.errors_today(next).is_empty());
        m.error(ErrorCode::ORDER_NOT_FOUND, next);
        assert_eq!(
            m.errors_today(next),
            vec![("ORDER_NOT_FOUND".to_owned(), 1)]
        );
        assert!(m.errors_today(late).is_empty());
        let total: u64 = m.errors_by_code().iter().map(|(_, n)| n).sum();
        assert_eq!(total, 4);
    }
}
