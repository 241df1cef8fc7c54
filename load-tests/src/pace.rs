//! Open-loop pacing: waking at each session's intended start, to the
//! microsecond, on the runtime's own thread.
//!
//! Tokio's timer has a 1 ms grain. Paced by it, sessions left in bursts once
//! a millisecond, each up to a millisecond late, and a bare handler showed a
//! millisecond of median latency that was the client's. A pacing thread of
//! its own sleeping with the kernel's high-resolution timers was exact, but
//! each session then cost two more thread wake-ups (the pacer's and the
//! runtime's), about a tenth of the client's CPU on a 2-core machine. So on
//! Linux the pacer arms a `timerfd` (an hrtimer, no timer slack) that the
//! runtime polls with its sockets: one thread, woken only when nothing else
//! keeps it busy.
//!
//! Each of those wake-ups still costs the client CPU, and an open loop at
//! half of what ordercore serves starts a session every ~85 µs: the client
//! took ~42 µs of CPU per request, CPU the server on the same two cores
//! then lacked. So a pacer can be given a *grain*: it wakes at most once
//! per grain and starts every session due by then (each session's latency
//! still counts from its own intended start, so the wait is measured, not
//! hidden). At 11,780 creates/s, six pairs
//! alternated: 200 µs took the client from 42 to 29-30 µs per request and
//! the server from 91-93 to 86-91 µs, p50 1.27-1.34 → 1.15-1.25 ms, and a
//! p99 within the noise (median of the six 4.35 → 4.06 ms).

use std::time::{Duration, Instant};

/// Waits until given instants; see the module docs.
#[derive(Debug)]
pub struct Pacer {
    #[cfg(target_os = "linux")]
    timer: Option<tokio::io::unix::AsyncFd<Timer>>,
    /// The least time between two wake-ups (see the module docs).
    grain: Duration,
    /// When the last wait ended.
    woke: Option<Instant>,
    /// Waits that slept (an instant already passed costs none).
    wakes: u64,
}

/// A `timerfd` as tokio's `AsyncFd` takes it (by raw descriptor).
#[cfg(target_os = "linux")]
#[derive(Debug)]
struct Timer(nix::sys::timerfd::TimerFd);

#[cfg(target_os = "linux")]
impl std::os::fd::AsRawFd for Timer {
    fn as_raw_fd(&self) -> std::os::fd::RawFd {
        use std::os::fd::AsFd;
        self.0.as_fd().as_raw_fd()
    }
}

impl Pacer {
    /// A pacer on a `timerfd` where one can be made, else on tokio's timer.
    /// Must be called inside a tokio runtime with I/O enabled.
    pub fn new() -> Pacer {
        Pacer::with_grain(Duration::ZERO)
    }

    /// A pacer that wakes at most once per `grain` (see the module docs).
    pub fn with_grain(grain: Duration) -> Pacer {
        #[cfg(target_os = "linux")]
        {
            use nix::sys::timerfd::{ClockId, TimerFd, TimerFlags};
            let timer = TimerFd::new(
                ClockId::CLOCK_MONOTONIC,
                TimerFlags::TFD_NONBLOCK | TimerFlags::TFD_CLOEXEC,
            )
            .ok()
            // `AsyncFd::new` is deprecated because a borrowed descriptor
            // could be closed while registered; this one is owned by the
            // `AsyncFd`, which deregisters it before closing it on drop.
            .and_then(|t| {
                #[allow(deprecated)]
                tokio::io::unix::AsyncFd::new(Timer(t)).ok()
            });
            Pacer {
                timer,
                grain,
                woke: None,
                wakes: 0,
            }
        }
        #[cfg(not(target_os = "linux"))]
        Pacer {
            grain,
            woke: None,
            wakes: 0,
        }
    }

    /// Whether waits are exact (a `timerfd`) rather than on tokio's 1 ms grain.
    pub fn is_exact(&self) -> bool {
        #[cfg(target_os = "linux")]
        return self.timer.is_some();
        #[cfg(not(target_os = "linux"))]
        false
    }

    /// How many waits slept.
    pub fn wakes(&self) -> u64 {
        self.wakes
    }

    /// Returns at once if `at` has passed; else at `at`, or later when the
    /// last wake-up was less than a grain before it. Never before `at`.
    pub async fn until(&mut self, at: Instant) {
        if Instant::now() >= at {
            return;
        }
        let wake = match self.woke {
            Some(woke) => at.max(woke + self.grain),
            None => at,
        };
        self.sleep_until(wake).await;
        self.woke = Some(Instant::now());
        self.wakes += 1;
    }

    async fn sleep_until(&mut self, at: Instant) {
        #[cfg(target_os = "linux")]
        if let Some(timer) = &self.timer {
            use nix::sys::time::{TimeSpec, TimeValLike};
            use nix::sys::timerfd::{Expiration, TimerSetTimeFlags};
            loop {
                let now = Instant::now();
                if now >= at {
                    return;
                }
                // At least 1 ns: a zero one-shot would disarm the timer.
                let nanos = i64::try_from((at - now).as_nanos())
                    .unwrap_or(i64::MAX)
                    .max(1);
                let armed = timer.get_ref().0.set(
                    Expiration::OneShot(TimeSpec::nanoseconds(nanos)),
                    TimerSetTimeFlags::empty(),
                );
                if armed.is_err() {
                    break; // tokio's timer below, late but never early
                }
                let Ok(mut ready) = timer.readable().await else {
                    break;
                };
                // Reads the expiration count; "not yet" clears the readiness.
                let _ = ready.try_io(|fd| fd.get_ref().0.wait().map_err(std::io::Error::from));
            }
        }
        tokio::time::sleep_until(at.into()).await;
    }
}

impl Default for Pacer {
    fn default() -> Self {
        Pacer::new()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::Duration;

    #[tokio::test]
    async fn waits_are_never_early_and_run_to_the_instant() {
        let mut pacer = Pacer::new();
        #[cfg(target_os = "linux")]
        assert!(pacer.is_exact());
        let mut waited = 0;
        let start = Instant::now();
        for i in 1..=20_u32 {
            let at = start + Duration::from_micros(250) * i;
            pacer.until(at).await;
            assert!(Instant::now() >= at, "woke before wait {i}");
            waited += 1;
        }
        // A passed instant returns at once.
        pacer.until(start).await;
        assert_eq!(waited, 20);
        assert_eq!(pacer.wakes(), 20);
    }

    #[tokio::test]
    async fn a_grain_gathers_instants_into_fewer_wake_ups() {
        let grain = Duration::from_millis(2);
        let mut pacer = Pacer::with_grain(grain);
        let start = Instant::now() + Duration::from_millis(1);
        let mut returned = 0;
        for i in 0..40_u32 {
            let at = start + Duration::from_micros(100) * i;
            pacer.until(at).await;
            assert!(Instant::now() >= at, "woke before instant {i}");
            returned += 1;
        }
        // 40 instants over 3.9 ms: a wake-up at the first, then at most one
        // every 2 ms.
        assert_eq!(returned, 40);
        assert!(
            (1..=3).contains(&pacer.wakes()),
            "{} wake-ups",
            pacer.wakes()
        );
    }
}
