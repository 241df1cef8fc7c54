//! `ordercore-load`: a black-box HTTP load-test harness for ordercore. It
//! drives realistic order traffic against a running server, measures latency
//! without coordinated omission, and verifies afterwards, through the public
//! API only, that nothing acknowledged was lost and no stock was oversold.
//! It shares no code with the server: tokens, signatures and JSON are made
//! here from the public contract (API.md).

pub mod client;
pub mod host;
pub mod ledger;
pub mod pace;
pub mod report;
pub mod scenario;
pub mod server;
pub mod server_latency;
pub mod stats;
pub mod verify;
