//! `ordercore-load`: drives traffic against an ordercore server (one given
//! with `--url`, or one it starts with `--spawn PATH`), measures latency
//! without coordinated omission, optionally kills and restarts the server,
//! and verifies through the API that nothing was lost or oversold.
//!
//! ```sh
//! ordercore-load --spawn target/release/ordercore --scenario mixed --duration 30 --rate 500
//! ordercore-load --url http://127.0.0.1:8080 --jwt-secret S --payment-secret P --concurrency 64
//! ```

use clap::Parser;
use ordercore_load::client::Method;
use ordercore_load::client::{Api, CONNECTIONS};
use ordercore_load::host;
use ordercore_load::ledger::Ledger;
use ordercore_load::pace::Pacer;
use ordercore_load::report::{self, Report};
use ordercore_load::scenario::{self, Ctx, Scenario};
use ordercore_load::server::Server;
use ordercore_load::server_latency;
use ordercore_load::stats::Stats;
use ordercore_load::verify::{self, Expect};
use rand::rngs::SmallRng;
use rand::{Rng, SeedableRng};
use serde_json::{json, Value};
use std::io::Write;
use std::path::PathBuf;
use std::process::ExitCode;
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

/// Stock of each of the run's ordinary SKUs: more than any run sells.
const SKU_STOCK: i64 = 1_000_000;
/// SKUs of a second product type (ADVANCE_SALE): a lifecycle's basket
/// takes one of them now and then, making a mixed family.
const SECOND_TYPE_SKUS: usize = 8;
/// Users that hold a coupon (the first ones of the run).
const COUPON_USERS: u64 = 50;
/// A load-test coupon's discount, with no threshold.
const COUPON_AMOUNT: i64 = 300;
/// How long sessions still in flight at the end get to finish.
const DRAIN_TIMEOUT: Duration = Duration::from_secs(30);
/// The most orders the ledger is sized for up front (~1 GiB of records at
/// most); a longer run grows it past that.
const LEDGER_PRESIZE_MAX: usize = 10_000_000;

#[derive(Debug, Parser)]
#[command(
    name = "ordercore-load",
    version,
    about = "Load tests, crash cycles and verification for ordercore"
)]
struct Args {
    /// A running server.
    #[arg(long, conflicts_with = "spawn")]
    url: Option<String>,
    /// Start this server binary on a free port with a temporary data dir.
    #[arg(long)]
    spawn: Option<PathBuf>,
    /// The server's JWT secret (generated when spawning).
    #[arg(long, env = "ORDERCORE_JWT_SECRET")]
    jwt_secret: Option<String>,
    /// The server's payment callback secret (generated when spawning).
    #[arg(long, env = "ORDERCORE_PAYMENT_SECRET")]
    payment_secret: Option<String>,
    #[arg(long, value_enum, default_value = "mixed")]
    scenario: Scenario,
    /// Weights of `mixed`, e.g. `lifecycle=6,race=1,flash-sale=1,read-heavy=2`.
    #[arg(long, default_value = "lifecycle=6,race=1,flash-sale=1,read-heavy=2")]
    weights: String,
    /// Open loop: sessions started per second at a constant rate (latency
    /// counts from each intended start).
    #[arg(long, conflicts_with = "concurrency")]
    rate: Option<f64>,
    /// Closed loop: sessions in flight at once.
    #[arg(long)]
    concurrency: Option<usize>,
    /// HTTP connections to the server at most; a request beyond them waits
    /// for one, and the wait counts in its latency. Default: 128, or the
    /// closed loop's concurrency when that is more.
    #[arg(long)]
    connections: Option<usize>,
    /// Measured seconds.
    #[arg(long, default_value_t = 10.0)]
    duration: f64,
    /// Seconds of traffic before measuring starts.
    #[arg(long, default_value_t = 2.0)]
    warmup: f64,
    #[arg(long, default_value_t = 1)]
    seed: u64,
    /// Distinct shoppers.
    #[arg(long, default_value_t = 20_000)]
    users: u64,
    /// Ordinary SKUs the run creates.
    #[arg(long, default_value_t = 50)]
    skus: usize,
    /// Stock of the flash-sale SKU.
    #[arg(long, default_value_t = 100)]
    flash_stock: i64,
    /// Open loop: the client wakes at most once per this many µs to start
    /// the sessions due by then (latency still counts from each session's
    /// intended start); 0 wakes for every session. Each wake-up costs the
    /// client CPU the server on the same cores lacks (`pace`).
    #[arg(long, default_value_t = 200)]
    pace_grain_us: u64,
    /// Open loop: sessions in flight beyond which new ones are not started
    /// (counted as dropped) so the harness cannot run out of memory.
    #[arg(long, default_value_t = 10_000)]
    max_in_flight: usize,
    /// With --spawn: the server's payment deadline (short values make
    /// timeouts happen within the run).
    #[arg(long, default_value_t = 1_800)]
    pay_timeout_secs: u64,
    /// With --spawn: `durable` or `relaxed`.
    #[arg(long, default_value = "durable")]
    durability: String,
    /// With --spawn: SIGKILL and restart the server this many times.
    #[arg(long, default_value_t = 0)]
    crash_cycles: usize,
    /// The server's shipping fee and free-shipping threshold (the `create`
    /// scenario prices its requests itself).
    #[arg(long, default_value_t = 1_000)]
    shipping_fee: i64,
    #[arg(long, default_value_t = 9_900)]
    free_shipping_threshold: i64,
    /// With --url: the server's process id, to report its CPU per answer.
    #[arg(long)]
    server_pid: Option<u32>,
    /// Skip the verification.
    #[arg(long)]
    no_verify: bool,
    /// Where report.json and report.html go.
    #[arg(long, default_value = "load-report")]
    out: PathBuf,
}

/// mimalloc instead of the system allocator, as the server uses: under
/// glibc's allocator a tenth of the client's CPU went to malloc and free,
/// and its threads waited on the arenas' locks (seen with `perf record`).
#[global_allocator]
static GLOBAL: mimalloc::MiMalloc = mimalloc::MiMalloc;

fn main() -> ExitCode {
    let args = Args::parse();
    if let Err(e) = host::tune_allocator() {
        let _ = writeln!(
            std::io::stderr(),
            "ordercore-load: the allocator keeps its default purge delay: {e}"
        );
    }
    if let Err(e) = host::disable_transparent_huge_pages() {
        let _ = writeln!(
            std::io::stderr(),
            "ordercore-load: transparent huge pages stay on: {e}"
        );
    }
    // An open loop runs on one thread: at the rates a 2-core machine can
    // serve, one thread keeps up, and every session handed between threads
    // cost a wake-up (a tenth of the client's CPU here). A closed loop
    // measures the most the server can do and gets every core.
    let mut builder = if args.rate.is_some() {
        tokio::runtime::Builder::new_current_thread()
    } else {
        tokio::runtime::Builder::new_multi_thread()
    };
    let runtime = match builder.enable_all().build() {
        Ok(r) => r,
        Err(e) => return fail(&format!("cannot start the runtime: {e}")),
    };
    match runtime.block_on(run(args)) {
        Ok(true) => ExitCode::SUCCESS,
        Ok(false) => ExitCode::from(1),
        Err(e) => fail(&e),
    }
}

fn fail(e: &str) -> ExitCode {
    let _ = writeln!(std::io::stderr(), "ordercore-load: {e}");
    ExitCode::from(2)
}

fn say(line: &str) {
    let _ = writeln!(std::io::stderr(), "{line}");
}

/// Orders an open-loop run will note (one per session), so the ledger's
/// table is sized once up front: grown mid-run, its rehash under the lock
/// stalls every session and shows as tens of milliseconds of latency at
/// the same seconds of every run, against any server. Closed-loop runs
/// measure throughput and let it grow.
fn expected_orders(rate: Option<f64>, span: Duration) -> usize {
    let expected = rate.map_or(0.0, |r| r * span.as_secs_f64() * 1.1);
    // Clamped into [0, LEDGER_PRESIZE_MAX] first (NaN becomes 0), so the
    // cast neither truncates nor loses a sign.
    #[allow(clippy::cast_possible_truncation, clippy::cast_sign_loss)]
    let orders = expected.clamp(0.0, LEDGER_PRESIZE_MAX as f64) as usize;
    orders
}

fn weights(spec: &str) -> Result<Vec<(Scenario, u32)>, String> {
    use clap::ValueEnum;
    spec.split(',')
        .filter(|p| !p.trim().is_empty())
        .map(|part| {
            let (name, w) = part
                .split_once('=')
                .ok_or_else(|| format!("bad weight {part:?}"))?;
            let s = Scenario::from_str(name.trim(), true).map_err(|e| format!("{name}: {e}"))?;
            if s == Scenario::Mixed {
                return Err("mixed cannot weigh itself".into());
            }
            let w: u32 = w
                .trim()
                .parse()
                .map_err(|_| format!("bad weight {part:?}"))?;
            Ok((s, w))
        })
        .collect()
}

/// An open-loop run: session i is meant to start at `started + i × interval`,
/// and its latency counts from then whatever the server does.
struct OpenLoop {
    started: Instant,
    measured_from: Instant,
    end: Instant,
    interval: Duration,
    seed: u64,
    max_in_flight: usize,
    grain: Duration,
    ctx: Arc<Ctx>,
    mixed: Arc<Vec<(Scenario, u32)>>,
    sessions: Arc<AtomicU64>,
    dropped: Arc<AtomicU64>,
    in_flight: Arc<AtomicUsize>,
}

impl OpenLoop {
    /// Starts every session at its time (see `pace`).
    async fn run(self, workers: &mut tokio::task::JoinSet<()>) {
        let mut pacer = Pacer::with_grain(self.grain);
        if !pacer.is_exact() {
            say("open loop paced by tokio's timer: sessions may start up to 1 ms late");
        }
        let mut i: u64 = 0;
        loop {
            let intended = self.started + self.interval.mul_f64(i as f64);
            if intended >= self.end {
                break;
            }
            pacer.until(intended).await;
            self.ctx.stats.record_start(intended);
            i += 1;
            if self.in_flight.load(Ordering::Relaxed) >= self.max_in_flight {
                self.dropped.fetch_add(1, Ordering::Relaxed);
                continue;
            }
            self.in_flight.fetch_add(1, Ordering::Relaxed);
            if intended >= self.measured_from {
                self.sessions.fetch_add(1, Ordering::Relaxed);
            }
            let (ctx, mixed, in_flight) = (
                Arc::clone(&self.ctx),
                Arc::clone(&self.mixed),
                Arc::clone(&self.in_flight),
            );
            let seed = self
                .seed
                .wrapping_add(i.wrapping_mul(0x9E37_79B9_7F4A_7C15));
            workers.spawn(async move {
                let mut rng = SmallRng::seed_from_u64(seed);
                let s = pick(&mixed, &mut rng);
                scenario::session(&ctx, s, intended, &mut rng).await;
                in_flight.fetch_sub(1, Ordering::Relaxed);
            });
            while workers.try_join_next().is_some() {}
        }
    }
}

fn pick(weights: &[(Scenario, u32)], rng: &mut SmallRng) -> Scenario {
    let total: u32 = weights.iter().map(|(_, w)| w).sum();
    let mut n = rng.gen_range(0..total.max(1));
    for (s, w) in weights {
        if n < *w {
            return *s;
        }
        n -= w;
    }
    Scenario::Lifecycle
}

async fn run(args: Args) -> Result<bool, String> {
    let mixed = if args.scenario == Scenario::Mixed {
        weights(&args.weights)?
    } else {
        vec![(args.scenario, 1)]
    };
    let mut seeds = SmallRng::seed_from_u64(args.seed);
    let secret = |given: &Option<String>, seeds: &mut SmallRng| {
        given
            .clone()
            .unwrap_or_else(|| format!("{:032x}", seeds.gen::<u128>()))
    };
    let (jwt, pay) = (
        secret(&args.jwt_secret, &mut seeds),
        secret(&args.payment_secret, &mut seeds),
    );
    if args.crash_cycles > 0 && args.durability != "durable" {
        // Relaxed mode may lose what it acknowledged within its flush
        // window by design: a kill would fail the survival checks.
        return Err("--crash-cycles verifies durable mode only".into());
    }
    let server = match &args.spawn {
        Some(path) => {
            let extra = vec![
                "--pay-timeout-secs".to_owned(),
                args.pay_timeout_secs.to_string(),
                "--durability".to_owned(),
                args.durability.clone(),
                "--risk-max-orders-per-user-per-min".to_owned(),
                "0".to_owned(),
                "--no-demo".to_owned(),
            ];
            Some(Arc::new(Server::start(path, &jwt, &pay, extra).await?))
        }
        None if args.crash_cycles > 0 => return Err("--crash-cycles needs --spawn".into()),
        None => None,
    };
    let url = match (&server, &args.url) {
        (Some(s), _) => s.url(),
        (None, Some(u)) => u.clone(),
        (None, None) => return Err("give --url or --spawn".into()),
    };
    if server.is_none() && (args.jwt_secret.is_none() || args.payment_secret.is_none()) {
        return Err("--url needs --jwt-secret and --payment-secret".into());
    }
    let connections = args
        .connections
        .unwrap_or_else(|| CONNECTIONS.max(args.concurrency.unwrap_or(0)));
    let api = Api::new(&url, &jwt, &pay, connections)?;
    let run_id = format!("{:06x}", seeds.gen::<u32>() & 0x00ff_ffff);
    let admin = api.token(&format!("lt{run_id}ops"), true);

    // The run's own catalog, so its stock can be checked against its orders.
    let mut stock_of = Vec::new();
    let mut prices = Vec::new();
    for i in 0..args.skus.max(2) {
        let code = format!("LT{run_id}S{i}");
        let price = 1_000 + 100 * (i as i64 % 20);
        put_sku(&api, &admin, &code, price, 1, SKU_STOCK).await?;
        stock_of.push((code, SKU_STOCK));
        prices.push(price);
    }
    // A second product type, so some lifecycles make mixed families
    // (a master and one sub-order per type).
    let mut second_type_skus = Vec::new();
    for i in 0..SECOND_TYPE_SKUS {
        let code = format!("LT{run_id}T{i}");
        put_sku(&api, &admin, &code, 2_000 + 100 * i as i64, 2, SKU_STOCK).await?;
        stock_of.push((code.clone(), SKU_STOCK));
        second_type_skus.push(code);
    }
    // One coupon for each of the first users: their lifecycles use it now
    // and then, one live order at a time.
    let coupon_users = args.users.clamp(1, COUPON_USERS);
    let mut coupons = Vec::new();
    for user in 0..coupon_users {
        let id = scenario::coupon_id(&run_id, user);
        put_coupon(&api, &admin, &id, &format!("lt{run_id}u{user}")).await?;
        coupons.push(id);
    }
    let flash_sku = format!("LT{run_id}FLASH");
    put_sku(&api, &admin, &flash_sku, 990, 1, args.flash_stock).await?;
    stock_of.push((flash_sku.clone(), args.flash_stock));

    let started = Instant::now();
    let started_unix_ms = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| u64::try_from(d.as_millis()).unwrap_or(0));
    let warmup = Duration::from_secs_f64(args.warmup.max(0.0));
    let duration = Duration::from_secs_f64(args.duration.max(0.1));
    let end = started + warmup + duration;
    let ctx = Arc::new(Ctx {
        api,
        ledger: Ledger::with_capacity(expected_orders(args.rate, warmup + duration)),
        stats: Stats::new(started + warmup),
        run: run_id,
        skus: stock_of
            .iter()
            .take(args.skus.max(2))
            .map(|(c, _)| c.clone())
            .collect(),
        second_type_skus,
        coupon_users,
        flash_sku,
        users: args.users.max(1),
        admin,
        next: AtomicU64::new(0),
        prices,
        shipping: (args.shipping_fee, args.free_shipping_threshold),
        id_epoch: chrono::Utc::now(),
    });
    say(&format!(
        "target {url}; run {}; {} s warm-up, {} s measured",
        ctx.run, args.warmup, args.duration
    ));

    let crashes = match (&server, args.crash_cycles) {
        (Some(s), n) if n > 0 => Some(tokio::spawn(crash_cycles(
            Arc::clone(s),
            n,
            started,
            end,
            args.seed,
        ))),
        _ => None,
    };
    let pid = server.as_ref().and_then(|s| s.pid()).or(args.server_pid);
    // CPU used in the measured part: the server's, and the client's own
    // (it shares the machine's cores with the server it measures).
    let cpu_of = |pid: u32| {
        tokio::spawn(async move {
            tokio::time::sleep_until((started + warmup).into()).await;
            let from = process_cpu_us(pid);
            tokio::time::sleep_until(end.into()).await;
            process_cpu_us(pid)
                .zip(from)
                .map(|(b, a)| b.saturating_sub(a))
        })
    };
    let cpu_sampler = pid.map(cpu_of);
    let client_cpu_sampler = cpu_of(std::process::id());
    let steal_sampler = tokio::spawn(host::steal_per_second(started + warmup, end));
    // The server's own latency histogram over the same span (see
    // `server_latency`); not across crashes, whose restarts begin the
    // server's counters again (a difference could then look plausible).
    let crashing = args.crash_cycles > 0;
    let server_latency_sampler = {
        let ctx = Arc::clone(&ctx);
        tokio::spawn(async move {
            if crashing {
                return None;
            }
            let scrape = || async {
                ctx.api
                    .call(Method::GET, "/metrics", None, None, &[])
                    .await
                    .ok()
                    .filter(|a| a.ok())
                    .map(|a| a.text().to_owned())
            };
            tokio::time::sleep_until((started + warmup).into()).await;
            let before = scrape().await?;
            tokio::time::sleep_until(end.into()).await;
            let after = scrape().await?;
            server_latency::between(&before, &after)
        })
    };
    let progress = progress_bar(Arc::clone(&ctx), started, end);
    let sessions = Arc::new(AtomicU64::new(0));
    let dropped = Arc::new(AtomicU64::new(0));
    let in_flight = Arc::new(AtomicUsize::new(0));
    let mixed = Arc::new(mixed);
    // A JoinSet, reaped as sessions finish: a list of handles pruned in
    // bulk freed tens of thousands of finished tasks at once on the
    // generator's thread, a stall of tens of milliseconds every few
    // seconds that showed as latency against any server.
    let mut workers = tokio::task::JoinSet::new();
    match (args.rate, args.concurrency) {
        (Some(rate), _) => {
            let plan = OpenLoop {
                started,
                measured_from: started + warmup,
                end,
                interval: Duration::from_secs_f64(1.0 / rate.max(0.001)),
                seed: args.seed,
                max_in_flight: args.max_in_flight,
                grain: Duration::from_micros(args.pace_grain_us),
                ctx: Arc::clone(&ctx),
                mixed: Arc::clone(&mixed),
                sessions: Arc::clone(&sessions),
                dropped: Arc::clone(&dropped),
                in_flight: Arc::clone(&in_flight),
            };
            plan.run(&mut workers).await;
        }
        (None, concurrency) => {
            for w in 0..concurrency.unwrap_or(64).max(1) {
                let (ctx, mixed, sessions) =
                    (Arc::clone(&ctx), Arc::clone(&mixed), Arc::clone(&sessions));
                let seed = args
                    .seed
                    .wrapping_add((w as u64).wrapping_mul(0x9E37_79B9_7F4A_7C15));
                workers.spawn(async move {
                    let mut rng = SmallRng::seed_from_u64(seed);
                    while Instant::now() < end {
                        let intended = Instant::now();
                        if intended >= started + warmup {
                            sessions.fetch_add(1, Ordering::Relaxed);
                        }
                        let s = pick(&mixed, &mut rng);
                        scenario::session(&ctx, s, intended, &mut rng).await;
                    }
                });
            }
        }
    }
    let drain = async { while workers.join_next().await.is_some() {} };
    if tokio::time::timeout(DRAIN_TIMEOUT, drain).await.is_err() {
        // Sessions still running would change orders under the checks.
        say(&format!(
            "{} sessions still running after {} s: stopped",
            workers.len(),
            DRAIN_TIMEOUT.as_secs()
        ));
        workers.abort_all();
        while workers.join_next().await.is_some() {}
    }
    let seconds = ctx
        .stats
        .measured_for()
        .min(duration)
        .as_secs_f64()
        .max(0.001);
    let host_steal_per_second = steal_sampler.await.unwrap_or_default();
    let server_cpu_us = match cpu_sampler {
        Some(t) => t.await.ok().flatten(),
        None => None,
    };
    let client_cpu_us = client_cpu_sampler.await.ok().flatten();
    let server_latency = server_latency_sampler.await.ok().flatten();
    progress.abort();
    let kills = match crashes {
        Some(c) => c.await.unwrap_or_default(),
        None => Vec::new(),
    };

    let lifecycles = mixed.iter().any(|(s, _)| *s == Scenario::Lifecycle);
    let races = mixed.iter().any(|(s, _)| *s == Scenario::Race);
    let expect = Expect {
        lifecycles,
        // Deadlines only fire within the run when the server was started
        // with a short payment timeout.
        timeouts: lifecycles && server.is_some() && args.pay_timeout_secs <= 60,
        flash: mixed.iter().any(|(s, _)| *s == Scenario::FlashSale),
        refunds: lifecycles || races,
        late_payments: races,
    };
    let mut checks = if args.no_verify {
        Vec::new()
    } else {
        if expect.timeouts {
            // Let the last unpaid orders' deadlines pass and fire.
            say("waiting for the last payment deadlines ...");
            tokio::time::sleep(Duration::from_secs(args.pay_timeout_secs + 2)).await;
        }
        say("verifying through the API ...");
        verify::verify(Arc::clone(&ctx), expect, &stock_of, &coupons, &kills).await
    };
    if let (Some(s), false) = (&server, args.no_verify) {
        // The survival checks above mean something only if the kills
        // happened: each one restarted the server once.
        let restarts = s.ready_after().len().saturating_sub(1);
        let mut killed = verify::Check::new(
            "the server was killed (SIGKILL) and restarted as often as asked",
            args.crash_cycles > 0,
        );
        for cycle in 0..args.crash_cycles {
            killed.see(cycle < restarts, || {
                format!("{restarts} of {} crash cycles happened", args.crash_cycles)
            });
        }
        checks.push(killed);
    }
    let mut passed = checks.iter().all(verify::Check::passed);
    let server_rss_bytes = server.as_ref().and_then(|s| s.rss_bytes());
    let server_ready_ms: Vec<u64> = server
        .as_ref()
        .map(|s| {
            s.ready_after()
                .iter()
                .map(|d| u64::try_from(d.as_millis()).unwrap_or(u64::MAX))
                .collect()
        })
        .unwrap_or_default();
    if let Some(s) = &server {
        let exited = s.stop().await;
        if !exited {
            say("the server did not exit 0 on SIGTERM");
            passed = false;
        }
    }
    let (answers, errors) = ctx.stats.totals();
    let started_sessions = sessions.load(Ordering::Relaxed);
    let report = Report {
        scenario: format!("{:?}", args.scenario).to_lowercase(),
        mode: match args.rate {
            Some(r) => format!(
                "open loop at {r} sessions/s, the client waking at most every {} µs",
                args.pace_grain_us
            ),
            None => format!("closed loop, {} in flight", args.concurrency.unwrap_or(64)),
        },
        target_rate: args.rate,
        concurrency: args.concurrency,
        seconds,
        answers,
        errors,
        throughput_per_s: answers as f64 / seconds,
        sessions_per_s: started_sessions as f64 / seconds,
        sessions_dropped: dropped.load(Ordering::Relaxed),
        crash_cycles: args.crash_cycles,
        server_rss_bytes,
        server_ready_ms,
        server_cpu_us_per_answer: server_cpu_us
            .filter(|_| answers > 0)
            .map(|us| us as f64 / answers as f64),
        client_cpu_us_per_answer: client_cpu_us
            .filter(|_| answers > 0)
            .map(|us| us as f64 / answers as f64),
        overall: ctx.stats.overall(),
        ops: ctx.stats.summaries(),
        per_second: ctx.stats.per_second(Duration::from_secs_f64(seconds)),
        latency_per_second: ctx
            .stats
            .latency_per_second(Duration::from_secs_f64(seconds)),
        measured_from_unix_ms: started_unix_ms + u64::try_from(warmup.as_millis()).unwrap_or(0),
        host_steal_share: (!host_steal_per_second.is_empty()).then(|| {
            host_steal_per_second.iter().sum::<f64>() / host_steal_per_second.len() as f64
        }),
        host_steal_per_second,
        max_latency_per_100ms_us: ctx.stats.max_per_slice(Duration::from_secs_f64(seconds)),
        client_start_lag: ctx.stats.start_lag(),
        server_latency,
        max_start_lag_per_100ms_us: ctx
            .stats
            .start_lag_per_slice(Duration::from_secs_f64(seconds)),
        errors_by_code: ctx.stats.errors(),
        checks,
        passed,
    };
    let _ = writeln!(std::io::stdout(), "{}", report::table(&report));
    std::fs::create_dir_all(&args.out).map_err(|e| format!("{}: {e}", args.out.display()))?;
    let json = serde_json::to_string_pretty(&report).map_err(|e| e.to_string())?;
    std::fs::write(args.out.join("report.json"), json).map_err(|e| e.to_string())?;
    std::fs::write(args.out.join("report.html"), report::html(&report))
        .map_err(|e| e.to_string())?;
    say(&format!(
        "reports: {0}/report.json, {0}/report.html",
        args.out.display()
    ));
    Ok(passed)
}

async fn put_coupon(api: &Api, admin: &str, id: &str, user: &str) -> Result<(), String> {
    let now = chrono::Utc::now();
    let body = json!({"user_id": user, "amount": COUPON_AMOUNT, "threshold_amount": 0,
        "valid_from": (now - chrono::Duration::hours(1)).to_rfc3339(),
        "valid_to": (now + chrono::Duration::days(1)).to_rfc3339()});
    put_catalog(api, admin, &format!("/v1/coupons/{id}"), &body).await
}

async fn put_sku(
    api: &Api,
    admin: &str,
    code: &str,
    price: i64,
    product_type: u8,
    stock: i64,
) -> Result<(), String> {
    let body = json!({"product_id": format!("P-{code}"), "product_name": format!("Load test {code}"),
        "product_type": product_type, "sale_price": price, "purchase_price": price / 2, "product_unit": "piece",
        "seller_id": "load-test", "stock": stock});
    put_catalog(api, admin, &format!("/v1/skus/{code}"), &body).await
}

/// An admin's `PUT` of a catalog entry (a SKU, a coupon) for the run.
async fn put_catalog(api: &Api, admin: &str, path: &str, body: &Value) -> Result<(), String> {
    let answer = api
        .call(Method::PUT, path, Some(admin), Some(body), &[])
        .await?;
    if answer.ok() {
        Ok(())
    } else {
        Err(format!(
            "cannot put {path}: {} {}",
            answer.status,
            answer.body()
        ))
    }
}

/// Kills the server with SIGKILL at spread-out random moments of the run
/// and starts it again on the same data dir and port.
async fn crash_cycles(
    server: Arc<Server>,
    cycles: usize,
    started: Instant,
    end: Instant,
    seed: u64,
) -> Vec<chrono::DateTime<chrono::Utc>> {
    let mut kills = Vec::with_capacity(cycles);
    let mut rng = SmallRng::seed_from_u64(seed ^ 0xC0FFEE);
    let span = end.saturating_duration_since(started);
    for i in 0..cycles {
        let slot = span.mul_f64(1.0 / (cycles as f64 + 1.0));
        let at = started + slot.mul_f64(i as f64 + 0.5 + rng.gen::<f64>());
        tokio::time::sleep_until(at.into()).await;
        say(&format!("crash cycle {}: SIGKILL", i + 1));
        kills.push(chrono::Utc::now());
        if let Err(e) = server.crash_and_restart().await {
            say(&format!("restart failed: {e}"));
            break;
        }
    }
    kills
}

/// A process's CPU time (user + system) from /proc, in µs.
fn process_cpu_us(pid: u32) -> Option<u64> {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
    let after = stat.rsplit_once(')')?.1;
    // By position (proc(5)): after the name come state, ppid, pgrp, session,
    // tty_nr, tpgid, flags, four fault counts, then utime and stime in clock
    // ticks of 10 ms. tpgid is -1 without a controlling terminal, so the
    // fields cannot be picked out by whether they parse as unsigned.
    let mut fields = after.split_whitespace().skip(11);
    let utime: u64 = fields.next()?.parse().ok()?;
    let stime: u64 = fields.next()?.parse().ok()?;
    Some((utime + stime) * 10_000)
}

fn progress_bar(ctx: Arc<Ctx>, started: Instant, end: Instant) -> tokio::task::JoinHandle<()> {
    let total = end.saturating_duration_since(started).as_secs();
    let bar = indicatif::ProgressBar::new(total);
    bar.set_style(
        indicatif::ProgressStyle::with_template("{elapsed_precise} [{bar:40}] {pos}/{len} s {msg}")
            .unwrap_or_else(|_| indicatif::ProgressStyle::default_bar()),
    );
    tokio::spawn(async move {
        let mut last = (0, 0);
        loop {
            tokio::time::sleep(Duration::from_secs(1)).await;
            let (answers, errors) = ctx.stats.totals();
            bar.set_position(started.elapsed().as_secs().min(total));
            bar.set_message(format!(
                "{}/s, {} errors",
                answers - last.0,
                errors - last.1
            ));
            last = (answers, errors);
            if Instant::now() >= end {
                bar.finish_and_clear();
                return;
            }
        }
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_ledger_is_presized_for_open_loop_runs_only_and_within_bounds() {
        let span = Duration::from_secs(10);
        assert_eq!(expected_orders(None, span), 0);
        assert_eq!(expected_orders(Some(1_000.0), span), 11_000);
        assert_eq!(expected_orders(Some(-5.0), span), 0);
        assert_eq!(expected_orders(Some(f64::NAN), span), 0);
        assert_eq!(expected_orders(Some(1e12), span), LEDGER_PRESIZE_MAX);
    }
}
