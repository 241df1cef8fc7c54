//! The machine under the run: how much CPU time the hypervisor took away
//! ("steal" in `/proc/stat`). On a shared virtual machine a second in which
//! the host takes a third of the CPU shows as tens or hundreds of
//! milliseconds of latency that neither the server nor the client caused;
//! reports carry it beside the latency timeline so such seconds can be told
//! apart. Also what the harness's processes ask of the machine: no
//! transparent huge pages.

use std::time::{Duration, Instant};

/// mimalloc's purge delay for this process, as the server sets it (its
/// `tune_allocator`, which says why): both sides of a comparison run with
/// the same allocator. An environment that sets `MIMALLOC_PURGE_DELAY`
/// wins; otherwise the process executes itself again in place with it,
/// since mimalloc reads it only as the process loads. Returns only when it
/// did not re-execute.
pub fn tune_allocator() -> Result<(), String> {
    const ENV: &str = "MIMALLOC_PURGE_DELAY";
    const DELAY_MS: &str = "10000";
    if std::env::var_os(ENV).is_some() {
        return Ok(());
    }
    #[cfg(unix)]
    {
        use std::os::unix::process::CommandExt;
        let exe = std::env::current_exe().map_err(|e| e.to_string())?;
        let mut args = std::env::args_os();
        let mut command = std::process::Command::new(exe);
        if let Some(arg0) = args.next() {
            command.arg0(arg0);
        }
        Err(command.args(args).env(ENV, DELAY_MS).exec().to_string())
    }
    #[cfg(not(unix))]
    Ok(())
}

/// Transparent huge pages off for this process, as the server does (its
/// `disable_transparent_huge_pages`): the first touch of each 2 MiB of a
/// huge-page heap zeroes it whole in one go, a stall of the client's (or the
/// bare handler's) own that would count in the latencies it measures.
pub fn disable_transparent_huge_pages() -> Result<(), String> {
    #[cfg(target_os = "linux")]
    return nix::sys::prctl::set_thp_disable(true).map_err(|e| e.to_string());
    #[cfg(not(target_os = "linux"))]
    Ok(())
}

/// CPU time since boot, summed over all CPUs, in clock ticks: (stolen by
/// the hypervisor, all). `None` where `/proc/stat` is not available.
pub fn cpu_ticks() -> Option<(u64, u64)> {
    let stat = std::fs::read_to_string("/proc/stat").ok()?;
    parse_cpu_line(stat.lines().next()?)
}

/// The `cpu` line of `/proc/stat` (proc(5)): user nice system idle iowait
/// irq softirq steal guest guest_nice; guest time is already counted in
/// user and nice, so it is not added again.
fn parse_cpu_line(line: &str) -> Option<(u64, u64)> {
    let mut fields = line.split_whitespace();
    if fields.next()? != "cpu" {
        return None;
    }
    let values: Vec<u64> = fields
        .take(8)
        .map(str::parse)
        .collect::<Result<_, _>>()
        .ok()?;
    let steal = *values.get(7)?;
    Some((steal, values.iter().sum()))
}

/// The share of CPU time stolen between two readings (0 when no time
/// passed).
pub fn steal_share(from: (u64, u64), to: (u64, u64)) -> f64 {
    let total = to.1.saturating_sub(from.1);
    if total == 0 {
        return 0.0;
    }
    to.0.saturating_sub(from.0) as f64 / total as f64
}

/// Samples the stolen share of every whole second from `from` until `end`.
pub async fn steal_per_second(from: Instant, end: Instant) -> Vec<f64> {
    tokio::time::sleep_until(from.into()).await;
    let mut shares = Vec::new();
    let Some(mut last) = cpu_ticks() else {
        return shares;
    };
    let mut at = from;
    while at + Duration::from_secs(1) <= end {
        at += Duration::from_secs(1);
        tokio::time::sleep_until(at.into()).await;
        let Some(now) = cpu_ticks() else {
            break;
        };
        shares.push(steal_share(last, now));
        last = now;
    }
    shares
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_steal_column_is_read_and_guest_time_is_not_counted_twice() {
        let line = "cpu  100 5 50 800 10 1 2 30 7 0";
        assert_eq!(parse_cpu_line(line), Some((30, 998)));
        assert_eq!(parse_cpu_line("cpu0 1 2 3 4 5 6 7 8"), None);
        assert_eq!(parse_cpu_line("cpu 1 2 3"), None);
        assert_eq!(steal_share((30, 998), (60, 1_098)), 0.3);
        assert_eq!(steal_share((30, 998), (30, 998)), 0.0);
    }

    #[test]
    fn this_machine_reports_its_cpu_time() {
        if std::path::Path::new("/proc/stat").exists() {
            let (steal, total) = cpu_ticks().expect("a cpu line");
            assert!(total > 0 && steal <= total);
        }
    }
}
