//! `ordercore-load`: a black-box HTTP load-test harness for ordercore. It
//! drives realistic order traffic against a running server, measures latency
//! without coordinated omission, and verifies afterwards, through the public
//! API only, that nothing acknowledged was lost and no stock was oversold.
