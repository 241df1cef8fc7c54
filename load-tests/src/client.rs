//! The harness's HTTP client: bearer tokens minted with the server's JWT
//! secret, provider callbacks signed with its payment secret, and every
//! answer as (status, JSON body, replay flag). It shares no code with the
//! server: tokens and signatures are made here from the public contract.

use hmac::{Hmac, Mac};
use serde_json::Value;
use sha2::Sha256;
use std::collections::HashMap;
use std::sync::Mutex;
use std::time::Duration;

/// Longest wait for one answer; a server that takes longer is failing.
pub const REQUEST_TIMEOUT: Duration = Duration::from_secs(10);
/// Lifetime of the tokens the harness mints.
const TOKEN_TTL_SECS: u64 = 24 * 3_600;

/// One answer.
#[derive(Debug, Clone)]
pub struct Answer {
    pub status: u16,
    pub body: Value,
    /// `Idempotent-Replayed: true` was set.
    pub replayed: bool,
}

impl Answer {
    /// The error code of a 4xx/5xx answer.
    pub fn code(&self) -> Option<&str> {
        self.body.get("code").and_then(Value::as_str)
    }

    pub fn ok(&self) -> bool {
        (200..300).contains(&self.status)
    }

    pub fn str(&self, field: &str) -> Option<&str> {
        self.body.get(field).and_then(Value::as_str)
    }

    pub fn int(&self, field: &str) -> Option<i64> {
        self.body.get(field).and_then(Value::as_i64)
    }
}

/// A client of one server.
#[derive(Debug)]
pub struct Api {
    http: reqwest::Client,
    base: String,
    jwt_secret: String,
    payment_secret: String,
    tokens: Mutex<HashMap<(String, bool), String>>,
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
    pub fn new(base: &str, jwt_secret: &str, payment_secret: &str) -> Result<Api, String> {
        let http = reqwest::Client::builder()
            .timeout(REQUEST_TIMEOUT)
            .pool_max_idle_per_host(1_024)
            .build()
            .map_err(|e| e.to_string())?;
        Ok(Api {
            http,
            base: base.trim_end_matches('/').to_owned(),
            jwt_secret: jwt_secret.to_owned(),
            payment_secret: payment_secret.to_owned(),
            tokens: Mutex::new(HashMap::new()),
        })
    }

    pub fn base(&self) -> &str {
        &self.base
    }

    /// A bearer token for `user` (an operator's when `admin`), cached.
    pub fn token(&self, user: &str, admin: bool) -> String {
        let key = (user.to_owned(), admin);
        let mut tokens = self
            .tokens
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
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
        method: reqwest::Method,
        path: &str,
        token: Option<&str>,
        body: Option<&Value>,
        headers: &[(&str, String)],
    ) -> Result<Answer, String> {
        let mut req = self.http.request(method, format!("{}{path}", self.base));
        if let Some(t) = token {
            req = req.bearer_auth(t);
        }
        for (name, value) in headers {
            req = req.header(*name, value);
        }
        if let Some(body) = body {
            req = req
                .header("content-type", "application/json")
                .body(serde_json::to_vec(body).map_err(|e| e.to_string())?);
        }
        self.send(req).await
    }

    /// A provider callback, signed over its exact bytes.
    pub async fn signed(&self, path: &str, body: &Value) -> Result<Answer, String> {
        let bytes = serde_json::to_vec(body).map_err(|e| e.to_string())?;
        let req = self
            .http
            .post(format!("{}{path}", self.base))
            .header("content-type", "application/json")
            .header("x-signature", self.sign(&bytes))
            .body(bytes);
        self.send(req).await
    }

    async fn send(&self, req: reqwest::RequestBuilder) -> Result<Answer, String> {
        let res = req.send().await.map_err(|e| e.to_string())?;
        let status = res.status().as_u16();
        let replayed = res
            .headers()
            .get("idempotent-replayed")
            .is_some_and(|v| v == "true");
        let bytes = res.bytes().await.map_err(|e| e.to_string())?;
        let body = if bytes.is_empty() {
            Value::Null
        } else {
            serde_json::from_slice(&bytes).unwrap_or(Value::Null)
        };
        Ok(Answer {
            status,
            body,
            replayed,
        })
    }
}
