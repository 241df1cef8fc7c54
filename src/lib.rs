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
//!   [`demo`]: the demo catalog.

pub mod auth;
pub mod config;
pub mod demo;
pub mod dto;
pub mod error;
pub mod metrics;
pub mod openapi;
pub mod routes;
pub mod server;
