//! What a run measured: latency per operation (HDR histograms, µs, from
//! the intended send time), requests and errors per second, errors by code.

use hdrhistogram::Histogram;
use std::collections::BTreeMap;
use std::sync::Mutex;
use std::time::{Duration, Instant};

/// Highest latency the histograms track: 60 s, in µs.
const LATENCY_MAX_US: u64 = 60_000_000;
/// The finest slice of the latency timeline (100 ms): fine enough to line
/// a stall up with what the server did at that moment.
const SLICE: Duration = Duration::from_millis(100);

#[derive(Debug, Default)]
struct Inner {
    ops: BTreeMap<&'static str, Histogram<u64>>,
    /// Per second since the measured part began: (answers, errors).
    per_second: Vec<(u64, u64)>,
    /// Per second since the measured part began: latency of every answer,
    /// so a stall shows when it happened, not only in the run's tail.
    latency_per_second: Vec<Histogram<u64>>,
    /// The slowest answer of each 100 ms slice since the measured part
    /// began (µs).
    max_per_slice: Vec<u64>,
    errors: BTreeMap<String, u64>,
    transport_errors: u64,
    /// Open loop: how late each measured session started (µs), when the
    /// pacer handed it over against its intended start. A session that
    /// starts late was held up in this client or on the machine, before
    /// the server saw anything.
    start_lag: Option<Histogram<u64>>,
    /// The latest start of each 100 ms slice since the measured part began
    /// (µs), on the same timeline as `max_per_slice`.
    start_lag_max_per_slice: Vec<u64>,
}

/// Shared by every session of a run.
#[derive(Debug)]
pub struct Stats {
    inner: Mutex<Inner>,
    /// When measuring begins (after the warm-up).
    measure_from: Instant,
}

/// How late an open loop's sessions started (µs): the client's and the
/// machine's share of the latency, which the server never saw.
#[derive(Debug, Clone, serde::Serialize)]
pub struct StartLag {
    pub count: u64,
    pub p50_us: u64,
    pub p99_us: u64,
    pub p999_us: u64,
    pub max_us: u64,
}

/// A summary of one operation.
#[derive(Debug, Clone, serde::Serialize)]
pub struct OpSummary {
    pub op: String,
    pub count: u64,
    pub p50_us: u64,
    pub p90_us: u64,
    pub p99_us: u64,
    pub p999_us: u64,
    pub max_us: u64,
    pub mean_us: f64,
}

impl Stats {
    pub fn new(measure_from: Instant) -> Stats {
        Stats {
            inner: Mutex::new(Inner::default()),
            measure_from,
        }
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, Inner> {
        self.inner
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
    }

    /// µs from `intended` to `now`, within the histograms' bounds.
    fn micros_since(intended: Instant, now: Instant) -> u64 {
        u64::try_from(now.saturating_duration_since(intended).as_micros())
            .unwrap_or(u64::MAX)
            .clamp(1, LATENCY_MAX_US)
    }

    /// The 100 ms slice of the measured part that `now` falls in.
    fn slice_at(&self, now: Instant) -> usize {
        usize::try_from(now.duration_since(self.measure_from).as_millis() / SLICE.as_millis())
            .unwrap_or(0)
    }

    /// Records an answer of `op` that was meant to be sent at `intended`.
    /// `error` is its code when it was an error answer.
    pub fn record(&self, op: &'static str, intended: Instant, error: Option<&str>) {
        let now = Instant::now();
        if now < self.measure_from {
            return;
        }
        let us = Stats::micros_since(intended, now);
        let second = usize::try_from(now.duration_since(self.measure_from).as_secs()).unwrap_or(0);
        let mut inner = self.lock();
        if !inner.ops.contains_key(op) {
            // 1 µs .. 60 s at 3 significant digits: valid bounds, cannot fail.
            if let Ok(h) = Histogram::new_with_bounds(1, LATENCY_MAX_US, 3) {
                inner.ops.insert(op, h);
            }
        }
        if let Some(hist) = inner.ops.get_mut(op) {
            let _ = hist.record(us);
        }
        while inner.latency_per_second.len() <= second {
            // 2 significant digits are enough to place a stall in time.
            match Histogram::new_with_bounds(1, LATENCY_MAX_US, 2) {
                Ok(h) => inner.latency_per_second.push(h),
                Err(_) => break,
            }
        }
        if let Some(hist) = inner.latency_per_second.get_mut(second) {
            let _ = hist.record(us);
        }
        let slice = self.slice_at(now);
        raise(&mut inner.max_per_slice, slice, us);
        if inner.per_second.len() <= second {
            inner.per_second.resize(second + 1, (0, 0));
        }
        inner.per_second[second].0 += 1;
        if let Some(code) = error {
            inner.per_second[second].1 += 1;
            *inner.errors.entry(code.to_owned()).or_default() += 1;
        }
    }

    /// Records that an open-loop session meant to start at `intended` is
    /// starting now.
    pub fn record_start(&self, intended: Instant) {
        let now = Instant::now();
        if intended < self.measure_from {
            return;
        }
        let us = Stats::micros_since(intended, now);
        let slice = self.slice_at(now);
        let mut inner = self.lock();
        if inner.start_lag.is_none() {
            // Valid bounds, as for the latency histograms: cannot fail.
            inner.start_lag = Histogram::new_with_bounds(1, LATENCY_MAX_US, 3).ok();
        }
        if let Some(hist) = inner.start_lag.as_mut() {
            let _ = hist.record(us);
        }
        raise(&mut inner.start_lag_max_per_slice, slice, us);
    }

    /// How late the measured sessions started; `None` in a closed loop.
    pub fn start_lag(&self) -> Option<StartLag> {
        self.lock().start_lag.as_ref().map(|h| StartLag {
            count: h.len(),
            p50_us: h.value_at_quantile(0.50),
            p99_us: h.value_at_quantile(0.99),
            p999_us: h.value_at_quantile(0.999),
            max_us: h.max(),
        })
    }

    /// The latest session start (µs) of each 100 ms slice of the measured
    /// part; empty in a closed loop.
    pub fn start_lag_per_slice(&self, measured: Duration) -> Vec<u64> {
        whole_slices(&self.lock().start_lag_max_per_slice, measured)
    }

    /// A request that got no HTTP answer (connection refused, timeout).
    pub fn transport_error(&self) {
        let now = Instant::now();
        if now >= self.measure_from {
            let second =
                usize::try_from(now.duration_since(self.measure_from).as_secs()).unwrap_or(0);
            let mut inner = self.lock();
            inner.transport_errors += 1;
            *inner.errors.entry("TRANSPORT".to_owned()).or_default() += 1;
            if inner.per_second.len() <= second {
                inner.per_second.resize(second + 1, (0, 0));
            }
            inner.per_second[second].1 += 1;
        }
    }

    /// Answers so far in the measured part, and errors among them.
    pub fn totals(&self) -> (u64, u64) {
        let inner = self.lock();
        inner
            .per_second
            .iter()
            .fold((0, 0), |(a, e), (x, y)| (a + x, e + y))
    }

    pub fn summaries(&self) -> Vec<OpSummary> {
        let inner = self.lock();
        inner
            .ops
            .iter()
            .map(|(op, h)| OpSummary {
                op: (*op).to_owned(),
                count: h.len(),
                p50_us: h.value_at_quantile(0.50),
                p90_us: h.value_at_quantile(0.90),
                p99_us: h.value_at_quantile(0.99),
                p999_us: h.value_at_quantile(0.999),
                max_us: h.max(),
                mean_us: h.mean(),
            })
            .collect()
    }

    /// (all answers, by operation) merged: the run's overall latency.
    pub fn overall(&self) -> Option<OpSummary> {
        let inner = self.lock();
        let mut all: Option<Histogram<u64>> = None;
        for h in inner.ops.values() {
            match &mut all {
                Some(a) => {
                    let _ = a.add(h);
                }
                None => all = Some(h.clone()),
            }
        }
        all.map(|h| OpSummary {
            op: "all".to_owned(),
            count: h.len(),
            p50_us: h.value_at_quantile(0.50),
            p90_us: h.value_at_quantile(0.90),
            p99_us: h.value_at_quantile(0.99),
            p999_us: h.value_at_quantile(0.999),
            max_us: h.max(),
            mean_us: h.mean(),
        })
    }

    /// Answers and errors of each whole second measured (a last, partial
    /// second would look like a collapse in the chart).
    pub fn per_second(&self, measured: Duration) -> Vec<(u64, u64)> {
        let whole = usize::try_from(measured.as_secs()).unwrap_or(usize::MAX);
        let mut seconds = self.lock().per_second.clone();
        seconds.truncate(whole.max(1));
        seconds
    }

    /// p99 and max latency (µs) of each whole second measured.
    pub fn latency_per_second(&self, measured: Duration) -> Vec<(u64, u64)> {
        let whole = usize::try_from(measured.as_secs()).unwrap_or(usize::MAX);
        self.lock()
            .latency_per_second
            .iter()
            .take(whole.max(1))
            .map(|h| (h.value_at_quantile(0.99), h.max()))
            .collect()
    }

    /// The slowest answer (µs) of each 100 ms slice of the measured part.
    pub fn max_per_slice(&self, measured: Duration) -> Vec<u64> {
        whole_slices(&self.lock().max_per_slice, measured)
    }

    pub fn errors(&self) -> BTreeMap<String, u64> {
        self.lock().errors.clone()
    }

    pub fn measured_for(&self) -> Duration {
        Instant::now().saturating_duration_since(self.measure_from)
    }
}

/// The slices of a timeline that fall within the `measured` span (at least
/// one): a slice begun as the run ended would hold a partial 100 ms.
fn whole_slices(slices: &[u64], measured: Duration) -> Vec<u64> {
    let whole = usize::try_from(measured.as_millis() / SLICE.as_millis()).unwrap_or(usize::MAX);
    slices.iter().copied().take(whole.max(1)).collect()
}

/// Raises `slices[slice]` to `us`, growing the timeline to reach it.
fn raise(slices: &mut Vec<u64>, slice: usize, us: u64) {
    if slices.len() <= slice {
        slices.resize(slice + 1, 0);
    }
    slices[slice] = slices[slice].max(us);
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]

    use super::*;

    #[test]
    fn the_slowest_answer_of_each_100_ms_lands_in_its_slice() {
        let measure_from = Instant::now() - Duration::from_millis(250);
        let stats = Stats::new(measure_from);
        let intended = Instant::now() - Duration::from_millis(3);
        stats.record("create", intended, None);
        let slices = stats.max_per_slice(Duration::from_secs(60));
        // Answered at least 250 ms after the start: slice 2 or later (a
        // slow machine may have moved on since), nothing before.
        let (at, slowest) = slices
            .iter()
            .enumerate()
            .find(|(_, us)| **us > 0)
            .map(|(i, us)| (i, *us))
            .unwrap();
        assert!(at >= 2, "{slices:?}");
        assert!(slowest >= 3_000, "{slices:?}");
        assert_eq!(slices.len(), at + 1, "{slices:?}");
        // Truncated to whole slices of the measured span.
        assert_eq!(stats.max_per_slice(Duration::from_millis(150)).len(), 1);
    }

    #[test]
    fn a_late_start_is_counted_and_placed_but_warm_up_starts_are_not() {
        let measure_from = Instant::now() - Duration::from_millis(250);
        let stats = Stats::new(measure_from);
        assert!(stats.start_lag().is_none(), "a closed loop has no starts");
        // Meant for the warm-up: not measured.
        stats.record_start(measure_from - Duration::from_millis(1));
        assert!(stats.start_lag().is_none());
        // Meant 4 ms ago, starting now.
        stats.record_start(Instant::now() - Duration::from_millis(4));
        let lag = stats.start_lag().unwrap();
        assert_eq!(lag.count, 1);
        assert!(lag.max_us >= 4_000 && lag.p99_us >= 4_000, "{lag:?}");
        let slices = stats.start_lag_per_slice(Duration::from_secs(60));
        let at = slices.iter().position(|us| *us > 0).unwrap();
        assert!(at >= 2, "{slices:?}");
        assert!(slices[at] >= 4_000, "{slices:?}");
        assert_eq!(
            stats.start_lag_per_slice(Duration::from_millis(150)).len(),
            1
        );
    }
}
