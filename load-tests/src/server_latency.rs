//! The server's own view of the latency: its `/metrics` request-duration
//! histogram (every route but `/metrics`), read when the measured part
//! begins and when it ends. The client's latency also holds the kernel's
//! and the client's share; set beside it, this tells how much of a tail
//! was inside the server. The histogram's buckets are coarse (…, 3, 5,
//! 10 ms, …), so it answers "how many took longer than the target" and
//! "under which bucket bound 99% fell", not an exact p99.

/// The histogram the server exposes (seconds, cumulative, by route).
const BUCKET_PREFIX: &str = "ordercore_http_request_duration_seconds_bucket{";
/// The latency DESIGN.md sets for the p99 (5 ms), as a bucket bound.
pub const TARGET_S: f64 = 0.005;

/// What the server measured over the run's measured part.
#[derive(Debug, Clone, PartialEq, serde::Serialize)]
pub struct ServerLatency {
    /// Requests the server answered.
    pub answers: u64,
    /// Share of them that took longer than 5 ms inside the server.
    pub over_5ms_share: f64,
    /// The smallest bucket bound (ms) under which at least 99% fell;
    /// `None` when that is only the `+Inf` bucket.
    pub p99_at_most_ms: Option<f64>,
}

/// Cumulative counts by bucket bound (seconds, `+Inf` last), summed over
/// every route but `/metrics` itself.
fn buckets(text: &str) -> Vec<(f64, u64)> {
    let mut by_bound: Vec<(f64, u64)> = Vec::new();
    for line in text.lines() {
        let Some(rest) = line.strip_prefix(BUCKET_PREFIX) else {
            continue;
        };
        let Some((labels, count)) = rest.rsplit_once("} ") else {
            continue;
        };
        if labels.contains("route=\"/metrics\"") {
            continue;
        }
        let bound = labels
            .split(',')
            .find_map(|l| l.strip_prefix("le=\""))
            .and_then(|v| v.strip_suffix('"'))
            .and_then(|v| match v {
                "+Inf" => Some(f64::INFINITY),
                v => v.parse::<f64>().ok(),
            });
        // A histogram's counts are whole numbers, written without a point.
        let (Some(bound), Ok(count)) = (bound, count.trim().parse::<u64>()) else {
            continue;
        };
        match by_bound.iter_mut().find(|(b, _)| *b == bound) {
            Some((_, c)) => *c += count,
            None => by_bound.push((bound, count)),
        }
    }
    by_bound.sort_by(|a, b| a.0.total_cmp(&b.0));
    by_bound
}

/// The difference between two scrapes of `/metrics`, `None` when the
/// histogram is missing from either or went down (the server restarted in
/// between: its counters began again).
pub fn between(before: &str, after: &str) -> Option<ServerLatency> {
    let (before, after) = (buckets(before), buckets(after));
    if after.is_empty() || after.last()?.0 != f64::INFINITY {
        return None;
    }
    let mut diff = Vec::with_capacity(after.len());
    for (bound, count) in &after {
        let earlier = before
            .iter()
            .find(|(b, _)| b == bound)
            .map_or(0, |(_, c)| *c);
        diff.push((*bound, count.checked_sub(earlier)?));
    }
    let answers = diff.last()?.1;
    if answers == 0 {
        return None;
    }
    let within_target = diff.iter().find(|(b, _)| *b == TARGET_S)?.1;
    let needed = answers - answers / 100;
    let p99_at_most_ms = diff
        .iter()
        .find(|(b, c)| *c >= needed && b.is_finite())
        .map(|(b, _)| b * 1_000.0);
    Some(ServerLatency {
        answers,
        over_5ms_share: (answers - within_target) as f64 / answers as f64,
        p99_at_most_ms,
    })
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]

    use super::*;

    fn scrape(orders: [u64; 4], ids: [u64; 4], metrics: u64) -> String {
        let mut text = String::from(
            "# HELP ordercore_http_request_duration_seconds Request latency\n\
             # TYPE ordercore_http_request_duration_seconds histogram\n",
        );
        for (route, counts) in [("/v1/orders", orders), ("/v1/order-ids", ids)] {
            for (le, c) in ["0.003", "0.005", "0.01", "+Inf"].iter().zip(counts) {
                text.push_str(&format!(
                    "{BUCKET_PREFIX}route=\"{route}\",le=\"{le}\"}} {c}\n"
                ));
            }
        }
        text.push_str(&format!(
            "{BUCKET_PREFIX}route=\"/metrics\",le=\"+Inf\"}} {metrics}\nordercore_ready 1\n"
        ));
        text
    }

    #[test]
    fn the_share_over_the_target_and_the_p99_bound_come_from_the_difference() {
        let before = scrape([100, 100, 100, 100], [50, 50, 50, 50], 7);
        // 1,000 more answers in all: 960 within 3 ms, 20 more within 5,
        // 15 more within 10 ms, 5 beyond; /metrics's own are not counted.
        let after = scrape([1_050, 1_060, 1_070, 1_075], [60, 70, 75, 75], 9);
        let l = between(&before, &after).unwrap();
        assert_eq!(l.answers, 1_000);
        assert!((l.over_5ms_share - 0.02).abs() < 1e-9, "{l:?}");
        // 99% is 990 answers: 980 within 5 ms, 995 within 10.
        assert_eq!(l.p99_at_most_ms, Some(10.0));
    }

    #[test]
    fn a_restart_or_a_missing_histogram_gives_no_figure() {
        let before = scrape([100, 100, 100, 100], [0, 0, 0, 0], 1);
        assert!(between(&before, &scrape([10, 10, 10, 10], [0, 0, 0, 0], 1)).is_none());
        assert!(between(&before, "ordercore_ready 1\n").is_none());
        // Nothing answered in between.
        assert!(between(&before, &before).is_none());
    }

    #[test]
    fn a_tail_beyond_every_bound_has_no_p99_bound() {
        let before = scrape([0, 0, 0, 0], [0, 0, 0, 0], 0);
        let after = scrape([90, 90, 90, 100], [0, 0, 0, 0], 0);
        let l = between(&before, &after).unwrap();
        assert_eq!(l.p99_at_most_ms, None);
        assert!((l.over_5ms_share - 0.1).abs() < 1e-9);
    }
}
