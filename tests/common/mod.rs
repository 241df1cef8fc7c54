//! Shared helpers of the HTTP integration tests: start the real
//! `ordercore` binary on port 0 with a temporary data directory, talk HTTP
//! to it, and stop it gracefully (SIGTERM) or crash it (SIGKILL).
//!
//! Every response passes through [`Req::send`], which checks the two rules
//! that hold for every route: no input produces a 500, and every error body
//! is exactly `{code, message}`.
#![allow(clippy::unwrap_used, clippy::expect_used, dead_code)]

use ordercore_domain::UserId;
use serde_json::{json, Value};
use std::io::{BufRead, BufReader, Read, Write};
use std::path::PathBuf;
use std::process::{Child, Command, ExitStatus, Stdio};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{mpsc, Arc};
use std::time::{Duration, Instant};
use ureq::http;

/// The HS256 secret every test server uses.
pub const JWT_SECRET: &str = "integration-jwt-secret-0123456789";
/// The HMAC secret of provider callbacks.
pub const PAYMENT_SECRET: &str = "integration-payment-secret-012345";
/// How long a server gets to print its `listening on` line.
pub const START_TIMEOUT: Duration = Duration::from_secs(30);
/// How long a graceful stop may take (the server drains, flushes, writes behind).
pub const STOP_TIMEOUT: Duration = Duration::from_secs(30);
/// Client timeout of one request.
pub const REQUEST_TIMEOUT: Duration = Duration::from_secs(30);
/// Token lifetime.
pub const TOKEN_TTL: Duration = Duration::from_secs(3_600);

/// Error responses whose body was checked to be exactly `{code, message}`.
pub static ERROR_BODIES_CHECKED: AtomicU64 = AtomicU64::new(0);

/// Demo SKUs and coupons (`src/demo.rs`).
pub const TEA: &str = "SKU-TEA-001"; // 3,900, NORMAL, 1,000 units
pub const MUG: &str = "SKU-MUG-002"; // 5,900, NORMAL, 500 units
pub const LAMP: &str = "SKU-LAMP-004"; // 8,900, NORMAL, 300 units
pub const BOOK: &str = "SKU-BOOK-003"; // 12,900, ADVANCE_SALE, 200 units

/// How a test server is started.
#[derive(Debug, Clone)]
pub struct Opts {
    /// `--demo` (true), `--no-demo` (false), or neither (the demo catalog
    /// is seeded when the store is empty).
    pub demo: Option<bool>,
    pub pay_timeout_secs: Option<u64>,
    /// Further flags, e.g. `--risk-max-orders-per-user-per-min 0`.
    pub extra: Vec<String>,
    /// Environment variables for the server beyond `ORDERCORE_LOG`.
    pub env: Vec<(String, String)>,
}

impl Default for Opts {
    fn default() -> Opts {
        Opts {
            demo: Some(true),
            pay_timeout_secs: None,
            extra: Vec::new(),
            env: Vec::new(),
        }
    }
}

impl Opts {
    pub fn demo() -> Opts {
        Opts::default()
    }

    pub fn no_demo() -> Opts {
        Opts {
            demo: Some(false),
            ..Opts::default()
        }
    }

    /// Neither `--demo` nor `--no-demo`.
    pub fn demo_if_empty() -> Opts {
        Opts {
            demo: None,
            ..Opts::default()
        }
    }

    pub fn pay_timeout(mut self, secs: u64) -> Opts {
        self.pay_timeout_secs = Some(secs);
        self
    }

    pub fn flag(mut self, name: &str, value: &str) -> Opts {
        self.extra.push(name.to_owned());
        self.extra.push(value.to_owned());
        self
    }

    pub fn env(mut self, name: &str, value: &str) -> Opts {
        self.env.push((name.to_owned(), value.to_owned()));
        self
    }

    /// No per-user rate limit: load tests create many orders per user.
    pub fn unlimited(self) -> Opts {
        self.flag("--risk-max-orders-per-user-per-min", "0")
    }
}

/// A running (or stopped) `ordercore` process with its own data directory.
pub struct Server {
    child: Option<Child>,
    /// `http://127.0.0.1:PORT`
    pub base: String,
    pub addr: std::net::SocketAddr,
    home: Arc<tempfile::TempDir>,
    opts: Opts,
    agent: ureq::Agent,
    starts: u32,
}

impl std::fmt::Debug for Server {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Server").field("base", &self.base).finish()
    }
}

pub fn agent() -> ureq::Agent {
    ureq::Agent::config_builder()
        .http_status_as_error(false)
        .timeout_global(Some(REQUEST_TIMEOUT))
        .build()
        .into()
}

impl Server {
    /// Starts a server on a new data directory.
    pub fn start(opts: Opts) -> Server {
        let home = Arc::new(tempfile::tempdir().expect("temp dir"));
        let mut server = Server {
            child: None,
            base: String::new(),
            addr: "127.0.0.1:0".parse().unwrap(),
            home,
            opts,
            agent: agent(),
            starts: 0,
        };
        server.spawn();
        server
    }

    pub fn data_dir(&self) -> PathBuf {
        self.home.path().join("data")
    }

    /// The server's log (stderr) of its latest start.
    pub fn log(&self) -> String {
        let path = self.log_path(self.starts);
        std::fs::read_to_string(path).unwrap_or_default()
    }

    fn log_path(&self, start: u32) -> PathBuf {
        self.home.path().join(format!("server-{start}.log"))
    }

    fn spawn(&mut self) {
        assert!(self.child.is_none(), "the server is already running");
        self.starts += 1;
        let log = std::fs::File::create(self.log_path(self.starts)).expect("log file");
        let mut cmd = Command::new(env!("CARGO_BIN_EXE_ordercore"));
        cmd.arg("--listen")
            .arg("127.0.0.1:0")
            .arg("--data-dir")
            .arg(self.data_dir())
            .arg("--jwt-secret")
            .arg(JWT_SECRET)
            .arg("--payment-secret")
            .arg(PAYMENT_SECRET)
            .arg("--shards")
            .arg("2");
        match self.opts.demo {
            Some(true) => {
                cmd.arg("--demo");
            }
            Some(false) => {
                cmd.arg("--no-demo");
            }
            None => {}
        }
        if let Some(secs) = self.opts.pay_timeout_secs {
            cmd.arg("--pay-timeout-secs").arg(secs.to_string());
        }
        cmd.args(&self.opts.extra);
        // No configuration file or variable of the caller leaks in, nor an
        // allocator setting: every start tunes the allocator itself.
        for (name, _) in std::env::vars_os() {
            if name.to_string_lossy().starts_with("ORDERCORE_") {
                cmd.env_remove(name);
            }
        }
        cmd.env_remove("MIMALLOC_PURGE_DELAY");
        cmd.envs(self.opts.env.iter().map(|(k, v)| (k, v)));
        cmd.env("ORDERCORE_LOG", "info")
            .current_dir(self.home.path())
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::from(log));
        let mut child = cmd.spawn().expect("spawn ordercore");
        let stdout = child.stdout.take().expect("stdout");
        let (tx, rx) = mpsc::channel();
        // Reads the `listening on` line, then drains stdout to its end so
        // the server never blocks on a full pipe.
        std::thread::spawn(move || {
            let mut reader = BufReader::new(stdout);
            let mut line = String::new();
            loop {
                line.clear();
                match reader.read_line(&mut line) {
                    Ok(0) | Err(_) => return,
                    Ok(_) => {
                        if let Some(addr) = line.trim().strip_prefix("listening on http://") {
                            let _ = tx.send(addr.to_owned());
                            break;
                        }
                    }
                }
            }
            let mut sink = Vec::new();
            let _ = reader.read_to_end(&mut sink);
        });
        let addr = match rx.recv_timeout(START_TIMEOUT) {
            Ok(addr) => addr,
            Err(_) => {
                let _ = child.kill();
                let _ = child.wait();
                panic!("the server did not start; its log:\n{}", self.log());
            }
        };
        self.addr = addr.parse().expect("a socket address");
        self.base = format!("http://{addr}");
        self.child = Some(child);
    }

    pub fn pid(&self) -> u32 {
        self.child.as_ref().expect("running").id()
    }

    /// SIGTERM, then waits for the exit; the status must be success.
    pub fn stop(&mut self) -> ExitStatus {
        let status = self.terminate();
        assert!(
            status.success(),
            "graceful stop exited with {status}; log:\n{}",
            self.log()
        );
        status
    }

    /// SIGTERM and the exit status, whatever it is.
    pub fn terminate(&mut self) -> ExitStatus {
        self.sigterm();
        self.wait_exit(STOP_TIMEOUT)
    }

    /// Sends SIGTERM and returns at once.
    pub fn sigterm(&self) {
        self.signal(nix::sys::signal::Signal::SIGTERM);
    }

    /// Sends `signal` and returns at once.
    pub fn signal(&self, signal: nix::sys::signal::Signal) {
        let pid = i32::try_from(self.pid()).expect("pid");
        nix::sys::signal::kill(nix::unistd::Pid::from_raw(pid), signal).expect("kill");
    }

    /// Sends SIGKILL and returns at once ([`Server::crash`] reaps it).
    pub fn sigkill(&self) {
        let pid = i32::try_from(self.pid()).expect("pid");
        nix::sys::signal::kill(
            nix::unistd::Pid::from_raw(pid),
            nix::sys::signal::Signal::SIGKILL,
        )
        .expect("SIGKILL");
    }

    /// Waits up to `bound` for the process to exit.
    pub fn wait_exit(&mut self, bound: Duration) -> ExitStatus {
        let child = self.child.as_mut().expect("running");
        let deadline = Instant::now() + bound;
        loop {
            if let Some(status) = child.try_wait().expect("try_wait") {
                self.child = None;
                return status;
            }
            if Instant::now() >= deadline {
                let _ = child.kill();
                let _ = child.wait();
                self.child = None;
                panic!("the server did not exit within {bound:?}");
            }
            std::thread::sleep(Duration::from_millis(20));
        }
    }

    /// SIGKILL: a crash, nothing flushed beyond what was acknowledged.
    pub fn crash(&mut self) {
        if let Some(mut child) = self.child.take() {
            child.kill().expect("SIGKILL");
            let _ = child.wait();
        }
    }

    /// Starts the server again on the same data directory.
    pub fn restart(&mut self) {
        self.spawn();
    }

    /// Starts again with other options (same data directory).
    pub fn restart_with(&mut self, opts: Opts) {
        self.opts = opts;
        self.spawn();
    }

    /// A client of its own (for another thread).
    pub fn client(&self) -> Client {
        Client {
            agent: agent(),
            base: self.base.clone(),
        }
    }

    // ----- requests -----

    pub fn req(&self, method: &str, path: &str) -> Req<'_> {
        request(&self.agent, &self.base, method, path)
    }

    pub fn get(&self, path: &str) -> Req<'_> {
        self.req("GET", path)
    }

    pub fn post(&self, path: &str) -> Req<'_> {
        self.req("POST", path)
    }

    pub fn put(&self, path: &str) -> Req<'_> {
        self.req("PUT", path)
    }

    /// A signed provider callback (`/v1/payments/callback`, `/v1/refunds/callback`).
    pub fn callback(&self, path: &str, body: &Value) -> Resp {
        let raw = serde_json::to_vec(body).unwrap();
        let signature = ordercore::auth::sign(PAYMENT_SECRET, &raw);
        self.post(path)
            .header("X-Signature", &signature)
            .raw("application/json", raw)
            .send()
    }

    // ----- the API in a few calls -----

    /// `POST /v1/order-ids` as `user`.
    pub fn new_order_id(&self, user: &str) -> String {
        let r = self
            .post("/v1/order-ids")
            .user(user)
            .json(&json!({"user_id": user, "business_identifier": 1}))
            .send();
        r.expect(201);
        r.json()["order_id"].as_str().unwrap().to_owned()
    }

    /// `POST /v1/orders/price`.
    pub fn price(&self, user: &str, items: &[(&str, i64)], coupon: Option<&str>) -> Value {
        let mut body = json!({"user_id": user, "items": lines(items)});
        if let Some(c) = coupon {
            body["coupon_id"] = json!(c);
        }
        let r = self.post("/v1/orders/price").user(user).json(&body).send();
        r.expect(200);
        r.json()
    }

    /// A create body with the amounts the price preview gives.
    pub fn create_body(&self, user: &str, items: &[(&str, i64)], coupon: Option<&str>) -> Value {
        let order_id = self.new_order_id(user);
        let quote = self.price(user, items, coupon);
        create_body(&order_id, user, items, coupon, &quote["amounts"])
    }

    /// Creates an order (201); answers its create response.
    pub fn create(&self, user: &str, items: &[(&str, i64)], coupon: Option<&str>) -> Value {
        let body = self.create_body(user, items, coupon);
        let r = self.post("/v1/orders").user(user).json(&body).send();
        r.expect(201);
        r.json()
    }

    /// A signed pay callback for the order's whole pay amount.
    pub fn pay(&self, order_id: &str, pay_amount: i64, trade_no: &str) -> Resp {
        self.callback(
            "/v1/payments/callback",
            &pay_body(order_id, pay_amount, trade_no),
        )
    }

    /// `GET /v1/orders/{id}` as an admin (200).
    pub fn order(&self, id: &str) -> Value {
        let r = self.get(&format!("/v1/orders/{id}")).admin().send();
        r.expect(200);
        r.json()
    }

    pub fn order_status(&self, id: &str) -> i64 {
        self.order(id)["status"].as_i64().unwrap()
    }

    /// `GET /v1/skus/{code}` (200).
    pub fn sku(&self, code: &str) -> Value {
        let r = self.get(&format!("/v1/skus/{code}")).admin().send();
        r.expect(200);
        r.json()
    }

    /// `PUT /v1/skus/{code}` (200).
    pub fn upsert_sku(&self, code: &str, product_type: i64, price: i64, stock: i64) -> Value {
        let r = self
            .put(&format!("/v1/skus/{code}"))
            .admin()
            .json(&sku_body(product_type, price, stock))
            .send();
        r.expect(200);
        r.json()
    }

    /// A fulfillment step (admin).
    pub fn fulfill(&self, id: &str, event: &str) -> Resp {
        self.post(&format!("/v1/orders/{id}/fulfillment"))
            .admin()
            .json(&json!({"event": event, "logistics_code": "SF-1", "operator": "ops"}))
            .send()
    }

    /// Every order the admin listing shows (all pages), summaries.
    pub fn all_orders(&self, status: Option<i64>) -> Vec<Value> {
        let mut out = Vec::new();
        let mut cursor: Option<String> = None;
        for _ in 0..10_000 {
            let mut path = "/v1/orders?page_size=100".to_owned();
            if let Some(s) = status {
                path.push_str(&format!("&status={s}"));
            }
            if let Some(c) = &cursor {
                path.push_str(&format!("&cursor={c}"));
            }
            let r = self.get(&path).admin().send();
            r.expect(200);
            let page = r.json();
            out.extend(page["orders"].as_array().unwrap().iter().cloned());
            match page["next_cursor"].as_str() {
                Some(c) => cursor = Some(c.to_owned()),
                None => return out,
            }
        }
        panic!("the admin listing did not end");
    }

    /// Every event of the feed, following `next` (bounded).
    pub fn all_events(&self) -> Vec<Value> {
        let mut after = 0u64;
        let mut out = Vec::new();
        for _ in 0..1_000 {
            let r = self
                .get(&format!("/v1/events?after={after}&limit=1000"))
                .admin()
                .send();
            r.expect(200);
            let page = r.json();
            let events = page["events"].as_array().unwrap().clone();
            let next = page["next"].as_u64().unwrap();
            if events.is_empty() && next == after {
                return out;
            }
            out.extend(events);
            after = next;
        }
        panic!("the event feed did not end");
    }

    /// One of the core's counters from `/metrics`.
    pub fn core_metric(&self, name: &str) -> i64 {
        let body = self.get("/metrics").send().body;
        let needle = format!("ordercore_core{{metric=\"{name}\"}} ");
        body.lines()
            .find_map(|l| l.strip_prefix(&needle))
            .and_then(|v| v.trim().parse().ok())
            .unwrap_or_else(|| panic!("/metrics lacks {name}"))
    }

    /// Polls `probe` every 50 ms until it answers `Some`, at most `bound`.
    pub fn poll<T>(&self, bound: Duration, mut probe: impl FnMut() -> Option<T>) -> T {
        poll(bound, &mut probe)
    }
}

/// An HTTP client of a server, for worker threads.
#[derive(Clone)]
pub struct Client {
    agent: ureq::Agent,
    pub base: String,
}

impl Client {
    pub fn req(&self, method: &str, path: &str) -> Req<'_> {
        request(&self.agent, &self.base, method, path)
    }
}

/// A request to `base` + `path`, for [`Server::req`] and [`Client::req`].
fn request<'a>(agent: &'a ureq::Agent, base: &str, method: &str, path: &str) -> Req<'a> {
    Req {
        agent,
        method: method.to_owned(),
        url: format!("{base}{path}"),
        headers: Vec::new(),
        body: None,
    }
}

/// An SSE client on a raw socket: sends the request, then collects the
/// `id:` of every event until `done` says so or `bound` passes.
pub fn stream_ids(
    s: &Server,
    query: &str,
    last_event_id: Option<&str>,
    bound: Duration,
    mut done: impl FnMut(&[u64]) -> bool,
) -> (String, Vec<u64>) {
    let mut stream = std::net::TcpStream::connect(s.addr).unwrap();
    stream
        .set_read_timeout(Some(Duration::from_millis(100)))
        .unwrap();
    let mut request = format!(
        "GET /v1/events/stream{query} HTTP/1.1\r\nHost: x\r\nAccept: text/event-stream\r\nAuthorization: Bearer {}\r\n",
        admin_token("ops")
    );
    if let Some(id) = last_event_id {
        request.push_str(&format!("Last-Event-ID: {id}\r\n"));
    }
    request.push_str("\r\n");
    stream.write_all(request.as_bytes()).unwrap();
    let deadline = Instant::now() + bound;
    let mut raw = Vec::new();
    let mut buf = [0u8; 8192];
    let mut ids = Vec::new();
    while Instant::now() < deadline {
        match stream.read(&mut buf) {
            Ok(0) => break,
            Ok(n) => raw.extend_from_slice(&buf[..n]),
            Err(e)
                if e.kind() == std::io::ErrorKind::WouldBlock
                    || e.kind() == std::io::ErrorKind::TimedOut => {}
            Err(e) => panic!("stream read: {e}"),
        }
        let text = String::from_utf8_lossy(&raw);
        // Whole lines only: a read may end in the middle of one.
        let whole = text.rfind('\n').map_or("", |end| &text[..end]);
        ids = whole
            .lines()
            .filter_map(|l| l.strip_prefix("id: "))
            .map(|v| v.trim().parse::<u64>().unwrap())
            .collect();
        if done(&ids) {
            break;
        }
    }
    (String::from_utf8_lossy(&raw).into_owned(), ids)
}

/// Polls `probe` every 50 ms until it answers `Some`; panics after `bound`.
pub fn poll<T>(bound: Duration, probe: &mut dyn FnMut() -> Option<T>) -> T {
    let deadline = Instant::now() + bound;
    loop {
        if let Some(v) = probe() {
            return v;
        }
        assert!(
            Instant::now() < deadline,
            "condition not met within {bound:?}"
        );
        std::thread::sleep(Duration::from_millis(50));
    }
}

impl Drop for Server {
    fn drop(&mut self) {
        if let Some(mut child) = self.child.take() {
            let _ = child.kill();
            let _ = child.wait();
        }
        if std::thread::panicking() {
            let log = self.log();
            let tail: String = log
                .lines()
                .rev()
                .take(40)
                .collect::<Vec<_>>()
                .into_iter()
                .rev()
                .collect::<Vec<_>>()
                .join("\n");
            eprintln!("--- server log tail ({}) ---\n{tail}", self.base);
        }
    }
}

/// A bearer token for a shopper.
pub fn user_token(user: &str) -> String {
    ordercore::auth::mint(JWT_SECRET, &UserId::parse(user).unwrap(), false, TOKEN_TTL).unwrap()
}

/// A bearer token for an admin.
pub fn admin_token(id: &str) -> String {
    ordercore::auth::mint(JWT_SECRET, &UserId::parse(id).unwrap(), true, TOKEN_TTL).unwrap()
}

/// One request being built.
pub struct Req<'a> {
    agent: &'a ureq::Agent,
    method: String,
    url: String,
    headers: Vec<(String, String)>,
    body: Option<Vec<u8>>,
}

impl Req<'_> {
    pub fn header(mut self, name: &str, value: &str) -> Self {
        self.headers.push((name.to_owned(), value.to_owned()));
        self
    }

    pub fn bearer(self, token: &str) -> Self {
        self.header("Authorization", &format!("Bearer {token}"))
    }

    /// As the shopper `user`.
    pub fn user(self, user: &str) -> Self {
        let token = user_token(user);
        self.bearer(&token)
    }

    /// As the admin `ops`.
    pub fn admin(self) -> Self {
        let token = admin_token("ops");
        self.bearer(&token)
    }

    pub fn json(self, body: &Value) -> Self {
        self.raw("application/json", serde_json::to_vec(body).unwrap())
    }

    /// A body sent as is.
    pub fn raw(mut self, content_type: &str, body: impl Into<Vec<u8>>) -> Self {
        self.headers
            .push(("Content-Type".to_owned(), content_type.to_owned()));
        self.body = Some(body.into());
        self
    }

    /// Sends the request and checks the rules every response follows.
    pub fn send(self) -> Resp {
        let resp = self.send_unchecked();
        resp.check_shape();
        resp
    }

    /// Sends the request; a transport error panics.
    pub fn send_unchecked(self) -> Resp {
        let what = format!("{} {}", self.method, self.url);
        self.try_send()
            .unwrap_or_else(|e| panic!("{what}: transport error {e}"))
    }

    /// Sends the request; a transport error (connection refused or reset)
    /// is an `Err`, for tests that stop the server under load.
    pub fn try_send(self) -> Result<Resp, ureq::Error> {
        let mut builder = http::Request::builder()
            .method(self.method.as_str())
            .uri(self.url.as_str());
        for (name, value) in &self.headers {
            builder = builder.header(name.as_str(), value.as_str());
        }
        let what = format!("{} {}", self.method, self.url);
        let request = builder.body(self.body.unwrap_or_default()).unwrap();
        let mut response = self.agent.run(request)?;
        let status = response.status().as_u16();
        let headers = response
            .headers()
            .iter()
            .map(|(k, v)| {
                (
                    k.as_str().to_ascii_lowercase(),
                    String::from_utf8_lossy(v.as_bytes()).into_owned(),
                )
            })
            .collect();
        let body = response
            .body_mut()
            .with_config()
            .limit(64 * 1024 * 1024)
            .read_to_string()?;
        Ok(Resp {
            what,
            status,
            headers,
            body,
        })
    }
}

/// A response, read whole.
#[derive(Debug, Clone)]
pub struct Resp {
    /// Method and URL, for messages.
    pub what: String,
    pub status: u16,
    /// Lower-case names.
    pub headers: Vec<(String, String)>,
    pub body: String,
}

impl Resp {
    pub fn header(&self, name: &str) -> Option<&str> {
        let name = name.to_ascii_lowercase();
        self.headers
            .iter()
            .find(|(k, _)| *k == name)
            .map(|(_, v)| v.as_str())
    }

    pub fn json(&self) -> Value {
        serde_json::from_str(&self.body)
            .unwrap_or_else(|e| panic!("{}: body is not JSON ({e}): {}", self.what, self.body))
    }

    /// Asserts the status.
    #[track_caller]
    pub fn expect(&self, status: u16) -> &Self {
        assert_eq!(
            self.status, status,
            "{}: expected {status}, got {} {}",
            self.what, self.status, self.body
        );
        self
    }

    /// Asserts an error: its status and code.
    #[track_caller]
    pub fn expect_error(&self, status: u16, code: &str) -> &Self {
        assert_eq!(
            (self.status, self.error_code().as_deref()),
            (status, Some(code)),
            "{}: expected {status} {code}, got {} {}",
            self.what,
            self.status,
            self.body
        );
        self
    }

    /// The `code` of an error body.
    pub fn error_code(&self) -> Option<String> {
        serde_json::from_str::<Value>(&self.body)
            .ok()
            .and_then(|v| v["code"].as_str().map(str::to_owned))
    }

    /// No 500 ever; an error's body is exactly `{code, message}` (two
    /// strings, the code UPPER_SNAKE) and carries `X-Request-Id`.
    #[track_caller]
    pub fn check_shape(&self) {
        assert!(
            self.status < 500 || self.status == 503,
            "{}: server error {} {}",
            self.what,
            self.status,
            self.body
        );
        assert!(
            self.header("x-request-id").is_some(),
            "{}: no X-Request-Id on the response",
            self.what
        );
        if self.status >= 400 {
            check_error_body(&self.what, self.status, &self.body);
            ERROR_BODIES_CHECKED.fetch_add(1, Ordering::Relaxed);
        }
    }
}

/// Asserts that `body` is exactly `{"code": UPPER_SNAKE, "message": text}`,
/// with a documented code and that code's status.
#[track_caller]
pub fn check_error_body(what: &str, status: u16, body: &str) {
    let value: Value = serde_json::from_str(body)
        .unwrap_or_else(|e| panic!("{what}: {status} body is not JSON ({e}): {body:?}"));
    let map = value
        .as_object()
        .unwrap_or_else(|| panic!("{what}: {status} body is not an object: {body}"));
    let mut keys: Vec<&str> = map.keys().map(String::as_str).collect();
    keys.sort_unstable();
    assert_eq!(keys, ["code", "message"], "{what}: {status} body {body}");
    let code = map["code"].as_str().unwrap_or_default();
    assert!(
        !code.is_empty()
            && code
                .chars()
                .all(|c| c.is_ascii_uppercase() || c.is_ascii_digit() || c == '_'),
        "{what}: code {code:?} is not UPPER_SNAKE"
    );
    assert!(
        map["message"].as_str().is_some_and(|m| !m.is_empty()),
        "{what}: message is not a non-empty string: {body}"
    );
    // API.md, "Errors": each code has its one HTTP status.
    let known = ordercore_domain::ErrorCode::ALL
        .iter()
        .find(|c| c.name() == code)
        .unwrap_or_else(|| panic!("{what}: {code} is not a documented error code"));
    assert_eq!(
        known.http_status(),
        status,
        "{what}: {code} answered with status {status}: {body}"
    );
}

// ----- request bodies -----

/// `[{sku_code, sale_quantity}]`
pub fn lines(items: &[(&str, i64)]) -> Value {
    Value::Array(
        items
            .iter()
            .map(|(sku, q)| json!({"sku_code": sku, "sale_quantity": q}))
            .collect(),
    )
}

/// The REAL_PAY_AMOUNT of an `amounts` list.
pub fn real_pay(amounts: &Value) -> i64 {
    amounts
        .as_array()
        .unwrap()
        .iter()
        .find(|a| a["amount_type"] == 50)
        .and_then(|a| a["amount"].as_i64())
        .expect("REAL_PAY_AMOUNT")
}

pub fn delivery() -> Value {
    json!({
        "delivery_type": 1,
        "receiver_name": "Li Lei",
        "receiver_phone": "+86 138-0000-0000",
        "province": "Zhejiang",
        "city": "Hangzhou",
        "area": "Xihu",
        "street": "Wensan Rd",
        "detail_address": "No. 1, Building 2",
        "lon": 120.1,
        "lat": 30.2
    })
}

/// A create body for `order_id` with the given amounts.
pub fn create_body(
    order_id: &str,
    user: &str,
    items: &[(&str, i64)],
    coupon: Option<&str>,
    amounts: &Value,
) -> Value {
    let mut body = json!({
        "order_id": order_id,
        "user_id": user,
        "business_identifier": 1,
        "order_type": 1,
        "user_remark": "leave at the door",
        "delivery": delivery(),
        "items": lines(items),
        "amounts": amounts,
        "payments": [{"pay_type": 10, "pay_amount": real_pay(amounts)}]
    });
    if let Some(c) = coupon {
        body["coupon_id"] = json!(c);
    }
    body
}

pub fn pay_body(order_id: &str, pay_amount: i64, trade_no: &str) -> Value {
    json!({
        "order_id": order_id,
        "out_trade_no": format!("OUT-{trade_no}"),
        "pay_type": 10,
        "pay_amount": pay_amount,
        "trade_no": trade_no,
        "paid_at": "2025-11-25T08:00:00Z"
    })
}

pub fn refund_body(after_sale_id: &str, amount: i64, success: bool) -> Value {
    json!({
        "after_sale_id": after_sale_id,
        "refund_amount": amount,
        "success": success,
        "refunded_at": "2025-11-25T09:00:00Z"
    })
}

/// `n` orders of 100 lines, each SKU with the longest name and a long image
/// URL: an event feed of ~3 MiB per 30 orders, for the byte budgets of
/// event pages and stream chunks. The server must allow the orders (risk
/// rules off).
pub fn big_orders(s: &Server, n: usize) {
    let codes: Vec<String> = (0..100).map(|i| format!("BIG-{i:03}")).collect();
    for code in &codes {
        let mut body = sku_body(1, 100, 10_000);
        body["product_name"] = json!(format!("{code} {}", "n".repeat(240)));
        body["product_img"] = json!(format!("https://img.example/{}.png", "i".repeat(200)));
        s.put(&format!("/v1/skus/{code}"))
            .admin()
            .json(&body)
            .send()
            .expect(200);
    }
    let items: Vec<(&str, i64)> = codes.iter().map(|c| (c.as_str(), 1)).collect();
    for _ in 0..n {
        s.create("bulk", &items, None);
    }
}

pub fn sku_body(product_type: i64, price: i64, stock: i64) -> Value {
    json!({
        "product_id": "P-1",
        "product_name": "Test product",
        "product_type": product_type,
        "sale_price": price,
        "purchase_price": price / 2,
        "product_unit": "piece",
        "product_img": "https://img.example/p.png",
        "seller_id": "seller-1",
        "stock": stock
    })
}
