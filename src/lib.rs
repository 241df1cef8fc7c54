//! The ordercore server: the thin HTTP edge (actix-web) over the in-process
//! order core, its configuration (flags, `ORDERCORE_*` environment variables,
//! `ordercore.toml`) and its command line. It parses every request into the
//! domain's types, maps each layer's error to one HTTP status and stable code,
//! and owns start-up and graceful shutdown; order rules live in
//! `ordercore-domain`, durability in `ordercore-storage`, concurrency in
//! `ordercore-actors`.
