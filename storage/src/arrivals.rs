//! The rate at which changes reach the journal writer's queue, measured by
//! the writer itself, so that it waits for a group to grow only when one
//! will (see [`crate::config::GROUP_LINGER_MIN_RATE`]).

use std::time::{Duration, Instant};

/// Changes queued per second over the last whole window.
#[derive(Debug, Clone)]
pub(crate) struct ArrivalRate {
    window: Duration,
    /// Where the current window started: its time, and the count of
    /// changes ever queued then.
    since: Instant,
    counted_from: u64,
    per_sec: f64,
}

impl ArrivalRate {
    /// A rate of zero until a first window of `window` has passed.
    pub(crate) fn new(window: Duration, now: Instant) -> ArrivalRate {
        ArrivalRate {
            window,
            since: now,
            counted_from: 0,
            per_sec: 0.0,
        }
    }

    /// Takes in the count of changes ever queued, at `now`: once a window
    /// has passed since the last measure, the rate becomes that of the
    /// window (a long idle span counts as one window, so the first changes
    /// after it are measured sparse).
    pub(crate) fn observe(&mut self, queued_total: u64, now: Instant) {
        let span = now.saturating_duration_since(self.since);
        if span < self.window {
            return;
        }
        let arrived = queued_total.saturating_sub(self.counted_from);
        self.per_sec = arrived as f64 / span.as_secs_f64();
        self.since = now;
        self.counted_from = queued_total;
    }

    pub(crate) fn per_sec(&self) -> f64 {
        self.per_sec
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const WINDOW: Duration = Duration::from_millis(20);

    #[test]
    fn the_rate_is_zero_until_a_window_has_passed() {
        let start = Instant::now();
        let mut rate = ArrivalRate::new(WINDOW, start);
        rate.observe(50, start + Duration::from_millis(5));
        assert_eq!(rate.per_sec(), 0.0);
        rate.observe(100, start + WINDOW);
        assert!(
            (rate.per_sec() - 5_000.0).abs() < 1e-6,
            "{}",
            rate.per_sec()
        );
    }

    #[test]
    fn each_window_is_measured_on_its_own() {
        let start = Instant::now();
        let mut rate = ArrivalRate::new(WINDOW, start);
        let mut total = 0;
        let mut measured = 0;
        // 6,000/s for ten windows, then 500/s: each window reports its own.
        let mut at = start;
        for (i, per_window) in [120_u64; 10].into_iter().chain([10; 5]).enumerate() {
            total += per_window;
            at += WINDOW;
            rate.observe(total, at);
            let expected = per_window as f64 / WINDOW.as_secs_f64();
            assert!((rate.per_sec() - expected).abs() < 1e-6, "window {i}");
            measured += 1;
        }
        assert_eq!(measured, 15);
    }

    #[test]
    fn an_idle_span_counts_as_one_window() {
        let start = Instant::now();
        let mut rate = ArrivalRate::new(WINDOW, start);
        rate.observe(200, start + WINDOW);
        assert!(rate.per_sec() >= 10_000.0);
        // Nothing for 10 s, then one change: the rate is that of the span.
        rate.observe(201, start + WINDOW + Duration::from_secs(10));
        assert!(rate.per_sec() < 1.0, "{}", rate.per_sec());
    }

    #[test]
    fn a_clock_going_back_never_panics_or_measures() {
        let start = Instant::now() + Duration::from_secs(1);
        let mut rate = ArrivalRate::new(WINDOW, start);
        rate.observe(10, start - Duration::from_millis(500));
        assert_eq!(rate.per_sec(), 0.0);
    }
}
