//! Recovery time with many stored orders (DESIGN.md goal: ready in ≤ 2 s
//! with 1M stored orders).
//!
//! A first process stores N paid order lifecycles (written behind), then a
//! tail of T more that only the journal holds, and exits without shutting
//! down, as after a kill. A second process opens the store and reports how
//! long recovery took and what it replayed.
//!
//! `cargo bench -p ordercore-benches --bench recovery [-- N [T]]`
//! (defaults: N = 1,000,000, T = 20,000)

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::print_stdout)]

use ordercore_benches::{submit_all, Workload};
use ordercore_storage::{Store, StoreConfig};
use std::path::Path;
use std::process::Command;
use std::time::{Duration, Instant};

const PHASE_VAR: &str = "ORDERCORE_RECOVERY_PHASE";
const CHUNK: usize = 50_000;
const WINDOW: usize = 8_192;

fn config(dir: &Path) -> StoreConfig {
    let mut config = StoreConfig::new(dir);
    // Only the dirty-set threshold and explicit checkpoints write behind, so
    // the tail stays in the journal alone.
    config.checkpoint_interval = Duration::from_secs(3_600);
    config
}

fn fill(dir: &Path, n: usize, tail: usize) {
    let store = Store::open(config(dir)).unwrap();
    let mut workload = Workload::new();
    store
        .submit(0, store.epoch(), workload.catalog())
        .unwrap()
        .wait()
        .unwrap();
    let started = Instant::now();
    let mut done = 0;
    while done < n {
        let work: Vec<_> = (0..CHUNK.min(n - done))
            .map(|_| workload.next_lifecycle())
            .collect();
        submit_all(&store, &work, WINDOW);
        done += work.len();
    }
    store.checkpoint_now().unwrap();
    let work: Vec<_> = (0..tail).map(|_| workload.next_lifecycle()).collect();
    submit_all(&store, &work, WINDOW);
    println!(
        "stored {n} lifecycles + {tail} in the journal only in {:.1} s",
        started.elapsed().as_secs_f64()
    );
    // Exit without shutdown: the tail is durable in the journal only.
    std::process::exit(0);
}

fn open(dir: &Path) {
    let started = Instant::now();
    let store = Store::open(StoreConfig::new(dir)).unwrap();
    let ready = started.elapsed();
    let report = store.recovery();
    println!(
        "recovery: ready in {:.3} s (store's own measure {:.3} s); checkpoint at seq {}, replayed {} units / {} events up to seq {}; {} pending deadlines",
        ready.as_secs_f64(),
        report.duration.as_secs_f64(),
        report.checkpoint_seq,
        report.replayed_units,
        report.replayed_events,
        report.last_seq,
        report.pending_deadlines
    );
    std::process::exit(0);
}

/// mimalloc instead of the system allocator: the core allocates many small,
/// short-lived values on several threads, where glibc's arenas spend a
/// large share of the CPU (measured with `--bench core`).
#[global_allocator]
static GLOBAL: mimalloc::MiMalloc = mimalloc::MiMalloc;

fn main() {
    // As the server does (`--bench core` explains why).
    ordercore::tune_allocator().unwrap();
    ordercore::disable_transparent_huge_pages().unwrap();
    let args: Vec<String> = std::env::args()
        .skip(1)
        .filter(|a| !a.starts_with('-'))
        .collect();
    match std::env::var(PHASE_VAR).as_deref() {
        Ok("fill") => fill(
            Path::new(&args[0]),
            args[1].parse().unwrap(),
            args[2].parse().unwrap(),
        ),
        Ok("open") => open(Path::new(&args[0])),
        _ => {}
    }
    let n: usize = args
        .first()
        .and_then(|a| a.parse().ok())
        .unwrap_or(1_000_000);
    let tail: usize = args.get(1).and_then(|a| a.parse().ok()).unwrap_or(20_000);
    let dir = tempfile::tempdir().unwrap();
    let exe = std::env::current_exe().unwrap();
    let path = dir.path().to_str().unwrap().to_owned();
    let status = Command::new(&exe)
        .env(PHASE_VAR, "fill")
        .args([path.clone(), n.to_string(), tail.to_string()])
        .status()
        .unwrap();
    assert!(status.success(), "fill failed");
    let size: u64 = walk(dir.path());
    println!("store on disk: {:.0} MiB", size as f64 / (1024.0 * 1024.0));
    let status = Command::new(&exe)
        .env(PHASE_VAR, "open")
        .arg(path)
        .status()
        .unwrap();
    assert!(status.success(), "open failed");
}

fn walk(dir: &Path) -> u64 {
    std::fs::read_dir(dir)
        .map(|entries| {
            entries
                .filter_map(Result::ok)
                .map(|e| match e.metadata() {
                    Ok(m) if m.is_dir() => walk(&e.path()),
                    Ok(m) => m.len(),
                    Err(_) => 0,
                })
                .sum()
        })
        .unwrap_or(0)
}
