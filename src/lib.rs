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
//! * [`disable_transparent_huge_pages`]: what the server (and the
//!   benchmarks that model it) ask of the kernel at start.

pub mod auth;
pub mod config;
pub mod demo;
pub mod dto;
pub mod error;
pub mod metrics;
pub mod openapi;
pub mod routes;
pub mod server;

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
