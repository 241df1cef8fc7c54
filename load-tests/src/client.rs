//! The harness's HTTP client: bearer tokens minted with the server's JWT
//! secret, provider callbacks signed with its payment secret, and every
//! answer as (status, JSON body, replay flag). It shares no code with the
//! server: tokens and signatures are made here from the public contract.

use bytes::Bytes;
use hmac::{Hmac, Mac};
use http_body_util::{BodyExt, Full};
use hyper::header::{AUTHORIZATION, CONNECTION, CONTENT_TYPE, HOST};
pub use hyper::Method;
use serde_json::Value;
use sha2::Sha256;
use std::collections::HashMap;
use std::sync::{Mutex, OnceLock};
use std::time::Duration;

/// Longest wait for one answer; a server that takes longer is failing.
pub const REQUEST_TIMEOUT: Duration = Duration::from_secs(10);
/// HTTP connections the harness keeps to the server unless told otherwise
/// (`--connections`): a request beyond them waits for one, and the wait
/// counts in its latency, as behind a load balancer's upstream pool. Without
/// a bound, an open loop that meets a pause opens a connection for every
/// session that finds none idle: thousands within a second, which then
/// keep the client's thread busy for seconds (measured: 5,000+ connections
/// and 1-8 s p99 at 8,000 sessions/s, with the server's threads idle).
pub const CONNECTIONS: usize = 128;
/// Lifetime of the tokens the harness mints.
const TOKEN_TTL_SECS: u64 = 24 * 3_600;

/// One answer. Its JSON body is parsed on first use: the create benchmark
/// reads only the status of most answers, and the client shares the cores
/// with the server it measures.
#[derive(Debug, Clone)]
pub struct Answer {
    pub status: u16,
    bytes: Bytes,
    body: OnceLock<Value>,
    /// `Idempotent-Replayed: true` was set.
    pub replayed: bool,
}

impl Answer {
    /// The JSON body (`null` when empty or not JSON).
    pub fn body(&self) -> &Value {
        self.body.get_or_init(|| {
            if self.bytes.is_empty() {
                Value::Null
            } else {
                serde_json::from_slice(&self.bytes).unwrap_or(Value::Null)
            }
        })
    }

    pub fn into_body(self) -> Value {
        self.body();
        self.body.into_inner().unwrap_or(Value::Null)
    }

    /// The error code of a 4xx/5xx answer.
    pub fn code(&self) -> Option<&str> {
        self.body().get("code").and_then(Value::as_str)
    }

    /// The body as text (empty when it is not UTF-8).
    pub fn text(&self) -> &str {
        std::str::from_utf8(&self.bytes).unwrap_or("")
    }

    pub fn ok(&self) -> bool {
        (200..300).contains(&self.status)
    }

    pub fn str(&self, field: &str) -> Option<&str> {
        self.body().get(field).and_then(Value::as_str)
    }

    pub fn int(&self, field: &str) -> Option<i64> {
        self.body().get(field).and_then(Value::as_i64)
    }
}

/// One keep-alive HTTP/1.1 connection's request side.
type Connection = hyper::client::conn::http1::SendRequest<Full<Bytes>>;

/// A client of one server.
///
/// It speaks HTTP/1.1 over its own keep-alive connections (hyper's
/// connection-level client) rather than through a general-purpose client:
/// the harness shares the 2 cores with the server it measures, and a
/// general client's URL parsing, pool bookkeeping and header building cost
/// more per request than the server's own HTTP layer.
#[derive(Debug)]
pub struct Api {
    base: String,
    /// `host:port` of `base`, to connect to and to send as `Host`.
    authority: String,
    jwt_secret: String,
    payment_secret: String,
    tokens: Mutex<HashMap<(String, bool), String>>,
    /// One permit per connection: held from sending a request until its
    /// answer has been read.
    connections: tokio::sync::Semaphore,
    /// Open connections with no request on them.
    idle: Mutex<Vec<Connection>>,
}

#[derive(serde::Serialize)]
struct Claims<'a> {
    sub: &'a str,
    #[serde(skip_serializing_if = "Option::is_none")]
    role: Option<&'static str>,
    iat: u64,
    exp: u64,
}

impl Api {
    /// A client keeping at most `connections` requests (so connections) to
    /// the server at once.
    pub fn new(
        base: &str,
        jwt_secret: &str,
        payment_secret: &str,
        connections: usize,
    ) -> Result<Api, String> {
        let connections = connections.max(1);
        let base = base.trim_end_matches('/').to_owned();
        let host = base
            .strip_prefix("http://")
            .filter(|a| !a.is_empty() && !a.contains('/'))
            .ok_or_else(|| format!("{base}: the server's URL must be http://HOST[:PORT]"))?;
        // `[::1]` alone has colons but no port.
        let authority = if host.rsplit_once(':').is_some_and(|(_, p)| !p.contains(']')) {
            host.to_owned()
        } else {
            format!("{host}:80")
        };
        Ok(Api {
            base,
            authority,
            idle: Mutex::new(Vec::new()),
            jwt_secret: jwt_secret.to_owned(),
            payment_secret: payment_secret.to_owned(),
            tokens: Mutex::new(HashMap::new()),
            connections: tokio::sync::Semaphore::new(connections),
        })
    }

    pub fn base(&self) -> &str {
        &self.base
    }

    /// A bearer token for `user` (an operator's when `admin`), cached.
    pub fn token(&self, user: &str, admin: bool) -> String {
        let key = (user.to_owned(), admin);
        let mut tokens = lock(&self.tokens);
        if let Some(t) = tokens.get(&key) {
            return t.clone();
        }
        let now = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map_or(0, |d| d.as_secs());
        let claims = Claims {
            sub: user,
            role: admin.then_some("admin"),
            iat: now,
            exp: now + TOKEN_TTL_SECS,
        };
        let token = jsonwebtoken::encode(
            &jsonwebtoken::Header::new(jsonwebtoken::Algorithm::HS256),
            &claims,
            &jsonwebtoken::EncodingKey::from_secret(self.jwt_secret.as_bytes()),
        )
        .unwrap_or_default();
        tokens.insert(key, token.clone());
        token
    }

    /// hex(HMAC-SHA256(payment secret, body)).
    pub fn sign(&self, body: &[u8]) -> String {
        match Hmac::<Sha256>::new_from_slice(self.payment_secret.as_bytes()) {
            Ok(mut mac) => {
                mac.update(body);
                hex::encode(mac.finalize().into_bytes())
            }
            Err(_) => String::new(),
        }
    }

    /// Sends a request; `Err` only when no HTTP answer came back.
    pub async fn call(
        &self,
        method: Method,
        path: &str,
        token: Option<&str>,
        body: Option<&Value>,
        headers: &[(&str, String)],
    ) -> Result<Answer, String> {
        let mut req = self.request(method, path);
        if let Some(t) = token {
            req = req.header(AUTHORIZATION, format!("Bearer {t}"));
        }
        for (name, value) in headers {
            req = req.header(*name, value);
        }
        let bytes = match body {
            Some(body) => {
                req = req.header(CONTENT_TYPE, "application/json");
                serde_json::to_vec(body).map_err(|e| e.to_string())?
            }
            None => Vec::new(),
        };
        self.send(req, bytes).await
    }

    /// Like [`Api::call`], with a JSON body already serialized.
    pub async fn call_json(
        &self,
        method: Method,
        path: &str,
        token: &str,
        body: Vec<u8>,
    ) -> Result<Answer, String> {
        let req = self
            .request(method, path)
            .header(AUTHORIZATION, format!("Bearer {token}"))
            .header(CONTENT_TYPE, "application/json");
        self.send(req, body).await
    }

    /// A provider callback, signed over its exact bytes.
    pub async fn signed(&self, path: &str, body: &Value) -> Result<Answer, String> {
        let bytes = serde_json::to_vec(body).map_err(|e| e.to_string())?;
        let req = self
            .request(Method::POST, path)
            .header(CONTENT_TYPE, "application/json")
            .header("x-signature", self.sign(&bytes));
        self.send(req, bytes).await
    }

    fn request(&self, method: Method, path: &str) -> hyper::http::request::Builder {
        hyper::Request::builder()
            .method(method)
            .uri(path)
            .header(HOST, &self.authority)
    }

    async fn send(
        &self,
        req: hyper::http::request::Builder,
        body: Vec<u8>,
    ) -> Result<Answer, String> {
        let req = req
            .body(Full::new(Bytes::from(body)))
            .map_err(|e| e.to_string())?;
        let _permit = self
            .connections
            .acquire()
            .await
            .map_err(|e| e.to_string())?;
        tokio::time::timeout(REQUEST_TIMEOUT, self.exchange(req))
            .await
            .map_err(|_| format!("no answer within {REQUEST_TIMEOUT:?}"))?
    }

    /// One request and its whole answer, on an idle connection or a new one.
    async fn exchange(&self, mut req: hyper::Request<Full<Bytes>>) -> Result<Answer, String> {
        let (connection, res) = loop {
            let (mut connection, reused) = match self.take_idle() {
                Some(c) => (c, true),
                None => (self.connect().await?, false),
            };
            // A connection taken back right after its answer may not have
            // said yet that it is ready for the next request; one that
            // closed meanwhile says so here.
            if reused && connection.ready().await.is_err() {
                continue;
            }
            match connection.try_send_request(req).await {
                Ok(res) => break (connection, res),
                Err(mut e) => match e.take_message() {
                    // Never sent: the idle connection was closed (or not
                    // ready again) when taken. Another one.
                    Some(unsent) if reused => req = unsent,
                    _ => return Err(e.into_error().to_string()),
                },
            }
        };
        let status = res.status().as_u16();
        let replayed = res
            .headers()
            .get("idempotent-replayed")
            .is_some_and(|v| v == "true");
        let closing = res
            .headers()
            .get(CONNECTION)
            .is_some_and(|v| v.as_bytes().eq_ignore_ascii_case(b"close"));
        let bytes = res
            .into_body()
            .collect()
            .await
            .map_err(|e| e.to_string())?
            .to_bytes();
        // The answer is read whole, so the connection is free again unless
        // either side is closing it (a close can still land while it is
        // idle: the next request then finds it unready, above).
        if !closing && !connection.is_closed() {
            lock(&self.idle).push(connection);
        }
        Ok(Answer {
            status,
            bytes,
            body: OnceLock::new(),
            replayed,
        })
    }

    fn take_idle(&self) -> Option<Connection> {
        let mut idle = lock(&self.idle);
        while let Some(c) = idle.pop() {
            if !c.is_closed() {
                return Some(c);
            }
        }
        None
    }

    async fn connect(&self) -> Result<Connection, String> {
        let stream = tokio::net::TcpStream::connect(&self.authority)
            .await
            .map_err(|e| format!("{}: {e}", self.authority))?;
        stream.set_nodelay(true).map_err(|e| e.to_string())?;
        let (sender, connection) =
            hyper::client::conn::http1::handshake(hyper_util::rt::TokioIo::new(stream))
                .await
                .map_err(|e| e.to_string())?;
        // Drives the connection until either side closes it; an error there
        // shows up as the request's own error.
        tokio::spawn(async move {
            let _ = connection.await;
        });
        Ok(sender)
    }
}

fn lock<T>(m: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    m.lock().unwrap_or_else(std::sync::PoisonError::into_inner)
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::atomic::{AtomicUsize, Ordering};
    use std::sync::Arc;
    use tokio::io::{AsyncReadExt, AsyncWriteExt};

    /// Connections accepted, requests being answered, and the most at once.
    #[derive(Default)]
    struct Seen {
        connections: AtomicUsize,
        in_flight: AtomicUsize,
        peak: AtomicUsize,
    }

    /// A keep-alive HTTP/1.1 server that holds each request for a moment
    /// before it answers `{}`.
    async fn serve(listener: tokio::net::TcpListener, seen: Arc<Seen>) {
        while let Ok((mut socket, _)) = listener.accept().await {
            seen.connections.fetch_add(1, Ordering::SeqCst);
            let seen = Arc::clone(&seen);
            tokio::spawn(async move {
                let mut buf = Vec::new();
                let mut chunk = [0_u8; 1024];
                loop {
                    while !buf.windows(4).any(|w| w == b"\r\n\r\n") {
                        match socket.read(&mut chunk).await {
                            Ok(0) | Err(_) => return,
                            Ok(n) => buf.extend_from_slice(&chunk[..n]),
                        }
                    }
                    buf.clear();
                    let now = seen.in_flight.fetch_add(1, Ordering::SeqCst) + 1;
                    seen.peak.fetch_max(now, Ordering::SeqCst);
                    tokio::time::sleep(Duration::from_millis(20)).await;
                    seen.in_flight.fetch_sub(1, Ordering::SeqCst);
                    let answer = b"HTTP/1.1 200 OK\r\ncontent-type: application/json\r\ncontent-length: 2\r\n\r\n{}";
                    if socket.write_all(answer).await.is_err() {
                        return;
                    }
                }
            });
        }
    }

    #[tokio::test]
    async fn requests_beyond_the_connections_wait_for_one() {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let url = format!("http://{}", listener.local_addr().unwrap());
        let seen = Arc::new(Seen::default());
        tokio::spawn(serve(listener, Arc::clone(&seen)));
        let api = Arc::new(Api::new(&url, "j", "p", 4).unwrap());
        let calls: Vec<_> = (0..32)
            .map(|_| {
                let api = Arc::clone(&api);
                tokio::spawn(async move { api.call(Method::GET, "/x", None, None, &[]).await })
            })
            .collect();
        for call in calls {
            assert!(call.await.unwrap().unwrap().ok());
        }
        let peak = seen.peak.load(Ordering::SeqCst);
        // Requests did overlap, never beyond the bound.
        assert!((2..=4).contains(&peak), "peak {peak}");
        // A connection goes back to the pool just after its answer is read,
        // so a request may open one more now and then; never one each.
        let connections = seen.connections.load(Ordering::SeqCst);
        assert!(connections <= 8, "{connections} connections");
    }

    /// Answers one request per connection with `Connection: close`, then
    /// closes it.
    async fn serve_once_per_connection(listener: tokio::net::TcpListener, seen: Arc<Seen>) {
        while let Ok((mut socket, _)) = listener.accept().await {
            seen.connections.fetch_add(1, Ordering::SeqCst);
            let mut buf = Vec::new();
            let mut chunk = [0_u8; 1024];
            while !buf.windows(4).any(|w| w == b"\r\n\r\n") {
                match socket.read(&mut chunk).await {
                    Ok(0) | Err(_) => break,
                    Ok(n) => buf.extend_from_slice(&chunk[..n]),
                }
            }
            let answer = b"HTTP/1.1 200 OK\r\nconnection: close\r\ncontent-type: application/json\r\ncontent-length: 2\r\n\r\n{}";
            let _ = socket.write_all(answer).await;
            let _ = socket.shutdown().await;
        }
    }

    #[tokio::test]
    async fn a_connection_the_server_closes_is_not_used_again() {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let url = format!("http://{}", listener.local_addr().unwrap());
        let seen = Arc::new(Seen::default());
        tokio::spawn(serve_once_per_connection(listener, Arc::clone(&seen)));
        let api = Api::new(&url, "j", "p", 4).unwrap();
        for _ in 0..10 {
            let answer = api.call(Method::GET, "/x", None, None, &[]).await.unwrap();
            assert!(answer.ok());
        }
        assert_eq!(seen.connections.load(Ordering::SeqCst), 10);
    }

    #[test]
    fn the_server_url_is_http_with_an_optional_port() {
        let authority = |url: &str| Api::new(url, "j", "p", 1).map(|a| a.authority);
        assert_eq!(
            authority("http://127.0.0.1:8080/").unwrap(),
            "127.0.0.1:8080"
        );
        assert_eq!(authority("http://localhost").unwrap(), "localhost:80");
        assert_eq!(authority("http://[::1]").unwrap(), "[::1]:80");
        assert_eq!(authority("http://[::1]:9").unwrap(), "[::1]:9");
        assert!(authority("https://localhost").is_err());
        assert!(authority("http://host/path").is_err());
    }
}
