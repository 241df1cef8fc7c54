//! The end report: a table on stdout, `report.json`, and `report.html` with
//! a throughput-over-time chart and a latency-percentile chart as inline
//! SVG (no scripts, no CDN).

use crate::server_latency::ServerLatency;
use crate::stats::{OpSummary, StartLag};
use crate::verify::Check;
use std::collections::BTreeMap;
use std::fmt::Write;

/// Everything a run reports.
#[derive(Debug, Clone, serde::Serialize)]
pub struct Report {
    pub scenario: String,
    pub mode: String,
    pub target_rate: Option<f64>,
    pub concurrency: Option<usize>,
    pub seconds: f64,
    pub answers: u64,
    pub errors: u64,
    pub throughput_per_s: f64,
    /// Sessions started per second (lifecycles for `lifecycle`).
    pub sessions_per_s: f64,
    pub sessions_dropped: u64,
    pub crash_cycles: usize,
    /// The server's CPU time (user + system) per answer in the measured
    /// part, when its process id is known.
    pub server_cpu_us_per_answer: Option<f64>,
    /// This client's own CPU time per answer in the measured part: what it
    /// took of the cores it shares with the server.
    pub client_cpu_us_per_answer: Option<f64>,
    /// The spawned server's resident memory at the end of the run.
    pub server_rss_bytes: Option<u64>,
    /// Start-to-ready time of the spawned server: its first start and each
    /// restart after a crash (recovery included), in ms.
    pub server_ready_ms: Vec<u64>,
    pub overall: Option<OpSummary>,
    pub ops: Vec<OpSummary>,
    pub per_second: Vec<(u64, u64)>,
    /// p99 and max latency (µs) of each second.
    pub latency_per_second: Vec<(u64, u64)>,
    /// The share of the machine's CPU time the hypervisor took during the
    /// measured part (`steal`), and in each whole second of it: a second
    /// with a large share is slow for reasons outside the run.
    pub host_steal_share: Option<f64>,
    pub host_steal_per_second: Vec<f64>,
    /// Wall-clock start of the measured part (Unix ms): the timelines'
    /// origin.
    pub measured_from_unix_ms: u64,
    /// The slowest answer (µs) of each 100 ms of the measured part: where a
    /// stall sits in time, to line up with the server's own timeline.
    pub max_latency_per_100ms_us: Vec<u64>,
    /// Open loop: how late sessions started against their intended start,
    /// in this client or on the machine, before the server saw them. Every
    /// latency counts from the intended start, so a stall here is in the
    /// latency too: an answer's tail that its start lag matches was not
    /// the server's.
    pub client_start_lag: Option<StartLag>,
    /// The latest session start (µs) of each 100 ms of the measured part,
    /// on `max_latency_per_100ms_us`'s timeline; empty in a closed loop.
    pub max_start_lag_per_100ms_us: Vec<u64>,
    /// The server's own request-duration histogram over the measured part
    /// (every route): answers, the share over 5 ms, and the bucket bound
    /// under which 99% fell. `None` when the server was restarted during
    /// the run or exposes no histogram.
    pub server_latency: Option<ServerLatency>,
    pub errors_by_code: BTreeMap<String, u64>,
    pub checks: Vec<Check>,
    pub passed: bool,
}

fn ms(us: u64) -> String {
    format!("{:.2}", us as f64 / 1000.0)
}

/// The human-readable table.
pub fn table(r: &Report) -> String {
    let mut out = String::new();
    let _ =
        writeln!(
        out,
        "\nscenario {} ({}), {:.1} s measured: {} answers, {:.0}/s, {} errors, {:.0} sessions/s{}",
        r.scenario,
        r.mode,
        r.seconds,
        r.answers,
        r.throughput_per_s,
        r.errors,
        r.sessions_per_s,
        if r.sessions_dropped > 0 {
            format!(" ({} sessions not started: too many in flight)", r.sessions_dropped)
        } else {
            String::new()
        }
    );
    if let Some(cpu) = r.server_cpu_us_per_answer {
        let _ = writeln!(out, "server CPU per answer: {cpu:.1} µs");
    }
    if let Some(cpu) = r.client_cpu_us_per_answer {
        let _ = writeln!(out, "client CPU per answer: {cpu:.1} µs");
    }
    if let Some(steal) = r.host_steal_share {
        let worst = r.host_steal_per_second.iter().copied().fold(0.0, f64::max);
        let _ = writeln!(
            out,
            "CPU time taken by the hypervisor: {:.1}% (worst second {:.1}%)",
            steal * 100.0,
            worst * 100.0
        );
    }
    if let Some(lag) = &r.client_start_lag {
        let _ = writeln!(
            out,
            "sessions started late in this client or on the machine: p50 {} ms, p99 {} ms, max {} ms",
            ms(lag.p50_us),
            ms(lag.p99_us),
            ms(lag.max_us)
        );
    }
    if let Some(l) = &r.server_latency {
        let _ = writeln!(
            out,
            "inside the server (its /metrics): {} answers, {:.2}% over 5 ms, 99% within {}",
            l.answers,
            l.over_5ms_share * 100.0,
            l.p99_at_most_ms
                .map_or_else(|| "no bucket bound".to_owned(), |ms| format!("{ms} ms"))
        );
    }
    if let Some(rss) = r.server_rss_bytes {
        let _ = writeln!(
            out,
            "server RSS at the end: {:.1} MiB",
            rss as f64 / 1_048_576.0
        );
    }
    if !r.server_ready_ms.is_empty() {
        let _ = writeln!(
            out,
            "server ready after start / each crash restart (ms): {:?}",
            r.server_ready_ms
        );
    }
    let _ = writeln!(
        out,
        "\n{:<16} {:>9} {:>9} {:>9} {:>9} {:>9} {:>9}",
        "operation", "count", "p50 ms", "p90 ms", "p99 ms", "p99.9 ms", "max ms"
    );
    for op in r.ops.iter().chain(r.overall.iter()) {
        let _ = writeln!(
            out,
            "{:<16} {:>9} {:>9} {:>9} {:>9} {:>9} {:>9}",
            op.op,
            op.count,
            ms(op.p50_us),
            ms(op.p90_us),
            ms(op.p99_us),
            ms(op.p999_us),
            ms(op.max_us)
        );
    }
    if !r.errors_by_code.is_empty() {
        let _ = writeln!(out, "\nerrors by code:");
        for (code, n) in &r.errors_by_code {
            let _ = writeln!(out, "  {code:<40} {n}");
        }
    }
    let _ = writeln!(out, "\nverification:");
    for c in &r.checks {
        let verdict = if c.passed() {
            "ok"
        } else if c.violations > 0 {
            "VIOLATED"
        } else {
            "NO CASES"
        };
        let _ = writeln!(
            out,
            "  [{verdict:>8}] {} — {} cases, {} violations{}",
            c.name,
            c.cases,
            c.violations,
            if c.required {
                ""
            } else {
                " (not required by this scenario)"
            }
        );
        for e in &c.examples {
            let _ = writeln!(out, "             {e}");
        }
    }
    let _ = writeln!(out, "\n{}", verdict(r));
    out
}

fn escape(s: &str) -> String {
    s.replace('&', "&amp;")
        .replace('<', "&lt;")
        .replace('>', "&gt;")
}

/// A line chart of answers and errors per second.
fn throughput_svg(per_second: &[(u64, u64)]) -> String {
    let (w, h, pad) = (800.0, 260.0, 40.0);
    let max = per_second.iter().map(|(a, _)| *a).max().unwrap_or(1).max(1) as f64;
    let n = per_second.len().max(2) as f64 - 1.0;
    let point = |i: usize, v: u64| {
        let x = pad + (w - 2.0 * pad) * i as f64 / n;
        let y = h - pad - (h - 2.0 * pad) * v as f64 / max;
        format!("{x:.1},{y:.1}")
    };
    let answers: Vec<String> = per_second
        .iter()
        .enumerate()
        .map(|(i, (a, _))| point(i, *a))
        .collect();
    let errors: Vec<String> = per_second
        .iter()
        .enumerate()
        .map(|(i, (_, e))| point(i, *e))
        .collect();
    let mut svg = format!(
        r#"<svg xmlns="http://www.w3.org/2000/svg" width="{w}" height="{h}" font-family="sans-serif" font-size="12">"#
    );
    let _ = write!(
        svg,
        r##"<line x1="{pad}" y1="{y0}" x2="{x1}" y2="{y0}" stroke="#999"/><line x1="{pad}" y1="{pad}" x2="{pad}" y2="{y0}" stroke="#999"/>"##,
        y0 = h - pad,
        x1 = w - pad
    );
    let _ = write!(
        svg,
        r#"<text x="{pad}" y="20">answers/s (max {max:.0}) — red: errors/s; x: seconds (0..{})</text>"#,
        per_second.len()
    );
    let _ = write!(
        svg,
        r##"<polyline fill="none" stroke="#1f77b4" stroke-width="2" points="{}"/>"##,
        answers.join(" ")
    );
    let _ = write!(
        svg,
        r##"<polyline fill="none" stroke="#d62728" stroke-width="1.5" points="{}"/>"##,
        errors.join(" ")
    );
    svg.push_str("</svg>");
    svg
}

/// Bars of p50/p90/p99/p99.9 per operation, log scale from 100 µs.
fn latency_svg(ops: &[OpSummary]) -> String {
    const FLOOR_US: f64 = 100.0;
    let (w, row, pad, label) = (800.0, 26.0, 130.0, 170.0);
    let h = 60.0 + row * ops.len() as f64;
    let max_us = ops.iter().map(|o| o.p999_us).max().unwrap_or(1).max(1_000);
    let span = (max_us as f64 / FLOOR_US).ln();
    let scale = |us: u64| {
        let v = (us as f64).max(FLOOR_US);
        (w - pad - label) * (v / FLOOR_US).ln() / span + 2.0
    };
    let colors = [
        ("p50", "#2ca02c"),
        ("p90", "#1f77b4"),
        ("p99", "#ff7f0e"),
        ("p99.9", "#d62728"),
    ];
    let mut svg = format!(
        r#"<svg xmlns="http://www.w3.org/2000/svg" width="{w}" height="{h}" font-family="sans-serif" font-size="12">"#
    );
    let _ = write!(
        svg,
        r#"<text x="10" y="20">latency per operation, log scale from 0.1 ms to {} ms</text>"#,
        ms(max_us)
    );
    for (i, (name, color)) in colors.iter().enumerate() {
        let x = 10.0 + 90.0 * i as f64;
        let _ = write!(
            svg,
            r#"<rect x="{x}" y="30" width="12" height="12" fill="{color}"/><text x="{:.0}" y="40">{name}</text>"#,
            x + 16.0
        );
    }
    for (i, op) in ops.iter().enumerate() {
        let y = 55.0 + row * i as f64;
        let _ = write!(
            svg,
            r#"<text x="10" y="{:.1}">{}</text>"#,
            y + 14.0,
            escape(&op.op)
        );
        let values = [op.p50_us, op.p90_us, op.p99_us, op.p999_us];
        for ((name, color), v) in colors.iter().zip(values).rev() {
            let _ = write!(
                svg,
                r#"<rect x="{pad}" y="{y:.1}" width="{:.1}" height="18" fill="{color}"><title>{name} {} ms</title></rect>"#,
                scale(v),
                ms(v)
            );
        }
        let _ = write!(
            svg,
            r#"<text x="{:.1}" y="{:.1}">p50 {} · p99 {} ms</text>"#,
            pad + scale(op.p999_us) + 6.0,
            y + 14.0,
            ms(op.p50_us),
            ms(op.p99_us)
        );
    }
    svg.push_str("</svg>");
    svg
}

/// The HTML page.
pub fn html(r: &Report) -> String {
    let mut page = String::from(
        "<!doctype html><html><head><meta charset=\"utf-8\"><title>ordercore load report</title>",
    );
    page.push_str("<style>body{font-family:sans-serif;margin:2em}table{border-collapse:collapse}td,th{padding:4px 10px;border-bottom:1px solid #ddd;text-align:right}td:first-child,th:first-child{text-align:left}.bad{color:#d62728}</style></head><body>");
    let _ = write!(
        page,
        "<h1>ordercore load report</h1><p>scenario <b>{}</b> ({}), {:.1} s measured, {} answers ({:.0}/s), {} errors, {:.0} sessions/s — <b class=\"{}\">{}</b></p>",
        escape(&r.scenario),
        escape(&r.mode),
        r.seconds,
        r.answers,
        r.throughput_per_s,
        r.errors,
        r.sessions_per_s,
        if r.passed { "" } else { "bad" },
        verdict(r)
    );
    page.push_str("<h2>Throughput</h2>");
    page.push_str(&throughput_svg(&r.per_second));
    page.push_str("<h2>Latency</h2>");
    page.push_str(&latency_svg(&r.ops));
    page.push_str("<table><tr><th>operation</th><th>count</th><th>p50 ms</th><th>p90 ms</th><th>p99 ms</th><th>p99.9 ms</th><th>max ms</th></tr>");
    for op in r.ops.iter().chain(r.overall.iter()) {
        let _ = write!(
            page,
            "<tr><td>{}</td><td>{}</td><td>{}</td><td>{}</td><td>{}</td><td>{}</td><td>{}</td></tr>",
            escape(&op.op),
            op.count,
            ms(op.p50_us),
            ms(op.p90_us),
            ms(op.p99_us),
            ms(op.p999_us),
            ms(op.max_us)
        );
    }
    page.push_str("</table><h2>Errors by code</h2><table>");
    for (code, n) in &r.errors_by_code {
        let _ = write!(page, "<tr><td>{}</td><td>{n}</td></tr>", escape(code));
    }
    page.push_str("</table><h2>Verification</h2><table><tr><th>check</th><th>cases</th><th>violations</th><th>verdict</th></tr>");
    for c in &r.checks {
        let _ = write!(
            page,
            "<tr><td>{}</td><td>{}</td><td>{}</td><td class=\"{}\">{}</td></tr>",
            escape(c.name),
            c.cases,
            c.violations,
            if c.passed() { "" } else { "bad" },
            if c.passed() {
                "ok"
            } else if c.violations > 0 {
                "VIOLATED"
            } else {
                "NO CASES"
            }
        );
    }
    page.push_str("</table></body></html>\n");
    page
}

/// The run's verdict: a run that checked nothing (`--no-verify`) says so
/// instead of claiming a pass.
fn verdict(r: &Report) -> &'static str {
    match (r.passed, r.checks.is_empty()) {
        (false, _) => "FAILED",
        (true, true) => "NOT VERIFIED (--no-verify)",
        (true, false) => "PASSED",
    }
}
