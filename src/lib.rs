//! The ordercore server: the thin HTTP edge (actix-web) over the in-process
//! order core, its configuration (flags, `ORDERCORE_*` environment variables,
//! `ordercore.toml`) and its command line. It parses every request into the
//! domain's types, maps each layer's error to one HTTP status and stable code,
//! and owns start-up and graceful shutdown; order rules live in
//! `ordercore-domain`, durability in `ordercore-storage`, concurrency in
//! `ordercore-actors`.
//!
//! * [`config`]: the command line and the layered configuration (flags over
//!   environment over file over defaults), and the development secrets;
//! * [`auth`]: bearer JWTs for shoppers and admins, and the HMAC signature
//!   of payment-provider callbacks;
//! * [`dto`]: the JSON request and response types of every route in API.md,
//!   and their conversions to and from the domain's types;
//! * [`error`]: `ApiError`, the one place every error becomes an HTTP status,
//!   a stable code and the `{code, message}` body;
//! * [`routes`]: the handlers; [`server`]: start-up, the request middleware
//!   and shutdown; [`metrics`]: `/metrics`; [`openapi`]: `/openapi.json`;
//!   [`demo`]: the demo catalog;
//! * [`tune_allocator`] and [`disable_transparent_huge_pages`]: what the
//!   server (and the benchmarks that model it) ask of the allocator and the
//!   kernel at start.

pub mod auth;
pub mod config;
pub mod demo;
pub mod dto;
pub mod error;
pub mod metrics;
pub mod openapi;
pub mod routes;
pub mod server;

/// The environment variable mimalloc reads its purge delay from (ms; `-1`
/// never gives freed memory back to the kernel).
pub const ALLOCATOR_PURGE_DELAY_ENV: &str = "MIMALLOC_PURGE_DELAY";

/// How long mimalloc keeps freed memory before it gives it back to the
/// kernel: 10 s instead of its default 1 s. Given back, memory that is
/// reused later is faulted in and zeroed page by page again; with the
/// default, `perf record` of `--bench core` put 14-17% of all samples in
/// the kernel's `clear_page_erms`, and 10 s (or never) cut the median CPU
/// per create+pay lifecycle by ~12-15% over alternated runs, on a machine
/// whose runs vary by as much (README, "Performance"). Memory freed after
/// a spike still goes back 10 s later.
pub const ALLOCATOR_PURGE_DELAY_MS: u32 = 10_000;

/// Gives mimalloc [`ALLOCATOR_PURGE_DELAY_MS`] unless the environment
/// already sets [`ALLOCATOR_PURGE_DELAY_ENV`] (an operator's value wins).
/// mimalloc reads its options once, as the process loads and before `main`,
/// and setting one later needs its `unsafe` C interface, so the process
/// executes itself again in place: the same pid, arguments and environment
/// plus the variable. Call it first thing, before any thread starts or
/// anything is printed. Returns only when it did not re-execute: the
/// variable was set already (`Ok`), or the exec failed (`Err`, and the
/// process goes on with the allocator's default).
pub fn tune_allocator() -> Result<(), String> {
    if std::env::var_os(ALLOCATOR_PURGE_DELAY_ENV).is_some() {
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
        let error = command
            .args(args)
            .env(
                ALLOCATOR_PURGE_DELAY_ENV,
                ALLOCATOR_PURGE_DELAY_MS.to_string(),
            )
            .exec();
        Err(error.to_string())
    }
    #[cfg(not(unix))]
    Ok(())
}

/// Transparent huge pages off for this process. mimalloc asks the kernel
/// for huge pages for its arenas, so the first touch of each 2 MiB of heap
/// zeroes (and, under the usual `defrag=madvise`, may first compact memory
/// for) the whole page inside whichever request touched it — while the heap
/// grows with active orders, and again whenever freed memory that was given
/// back is reused. Measured with the open-loop harness at 5,500 creates/s:
/// p99 16-20 ms with huge pages, 5-7 ms without, the server's CPU per
/// request unchanged; in-process (`--bench core`, which calls this too)
/// 53-57 µs of CPU per create+pay lifecycle without, 66-74 µs with
/// (README, "Performance").
pub fn disable_transparent_huge_pages() -> Result<(), String> {
    #[cfg(target_os = "linux")]
    return nix::sys::prctl::set_thp_disable(true).map_err(|e| e.to_string());
    #[cfg(not(target_os = "linux"))]
    Ok(())
}
