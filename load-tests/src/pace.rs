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

use std::time::Instant;

/// Waits until given instants; see the module docs.
#[derive(Debug)]
pub struct Pacer {
    #[cfg(target_os = "linux")]
    timer: Option<tokio::io::unix::AsyncFd<Timer>>,
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
            Pacer { timer }
        }
        #[cfg(not(target_os = "linux"))]
        Pacer {}
    }

    /// Whether waits are exact (a `timerfd`) rather than on tokio's 1 ms grain.
    pub fn is_exact(&self) -> bool {
        #[cfg(target_os = "linux")]
        return self.timer.is_some();
        #[cfg(not(target_os = "linux"))]
        false
    }

    /// Returns at `at` or, if it has passed, at once.
    pub async fn until(&mut self, at: Instant) {
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
    }
}
