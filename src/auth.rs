//! Who is calling (API.md, "Callers and authentication"): shoppers and
//! admins present an HS256 bearer JWT; the payment provider signs its
//! callbacks with `X-Signature: hex(HMAC-SHA256(secret, raw body))`.
//!
//! Both secrets are configured strings, and the key is the string's UTF-8
//! bytes (as most JWT tools treat a text secret), so a token minted by
//! `ordercore token` or by a gateway with the same string verifies here.
//!
//! JWTs use `jsonwebtoken` with its pure-Rust (`rust_crypto`) provider,
//! picked from crate features; enabling its `aws_lc_rs` feature as well
//! anywhere in the build would leave no default provider.

use crate::error::ApiError;
use hmac::{Hmac, Mac};
use jsonwebtoken::errors::ErrorKind;
use jsonwebtoken::{Algorithm, DecodingKey, EncodingKey, Header, Validation};
use ordercore_domain::{Actor, UserId};
use serde::{Deserialize, Serialize};
use sha2::Sha256;
use std::fmt;
use std::sync::atomic::{AtomicU64, Ordering::Relaxed};
use std::sync::Arc;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

/// The `role` claim that makes a caller an admin.
pub const ADMIN_ROLE: &str = "admin";
/// Clock skew tolerated on `exp` between the token's issuer and this server.
pub const TOKEN_LEEWAY_SECS: u64 = 30;
/// The header that carries a payment provider's signature.
pub const SIGNATURE_HEADER: &str = "X-Signature";

/// The claims of an ordercore bearer token.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Claims {
    /// The caller: a shopper's user id, or an admin's operator id.
    pub sub: String,
    /// `"admin"` for operators, fulfillment and customer service; absent
    /// (or anything else) for shoppers.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub role: Option<String>,
    /// Expiry, seconds since the Unix epoch.
    pub exp: u64,
    /// Issue time, seconds since the Unix epoch (optional in tokens from
    /// other issuers).
    #[serde(default)]
    pub iat: u64,
}

/// A verified caller.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Caller {
    /// A shopper: may act only on its own orders.
    Shopper(UserId),
    /// An operator, fulfillment or customer service: may act on any order.
    Admin(String),
}

impl Caller {
    /// The actor recorded on the events this caller causes.
    pub fn actor(&self) -> Actor {
        match self {
            Caller::Shopper(user) => Actor::user(user),
            Caller::Admin(id) => Actor::admin(id.clone()),
        }
    }

    pub fn is_admin(&self) -> bool {
        matches!(self, Caller::Admin(_))
    }

    /// 403 unless the caller is an admin.
    pub fn require_admin(&self) -> Result<(), ApiError> {
        if self.is_admin() {
            Ok(())
        } else {
            Err(ApiError::forbidden("this route is for admins"))
        }
    }

    /// 403 when a shopper names another user (in a body or a path); admins
    /// may act for anyone.
    pub fn require_user(&self, user: &UserId) -> Result<(), ApiError> {
        match self {
            Caller::Shopper(me) if me != user => Err(ApiError::forbidden(format!(
                "user_id {user} is not the caller"
            ))),
            _ => Ok(()),
        }
    }
}

impl From<&Caller> for Actor {
    fn from(caller: &Caller) -> Actor {
        caller.actor()
    }
}

/// Tokens remembered as verified, counted (16,384 of a typical ~200-byte
/// token) and weighed: a shopper's app sends the same token with every
/// request of a session, and checking it again costs ~2 µs against ~0.1 µs
/// remembered (`--bench hot_paths -- verify_jwt`), of the ~80 µs of server
/// CPU a durable create costs.
pub const VERIFIED_TOKENS_MAX: usize = 16_384;
/// What the remembered tokens may weigh at most (8 MiB: each counts its
/// text plus [`VERIFIED_TOKEN_OVERHEAD`]): a gateway's long tokens take
/// fewer places instead of more memory.
pub const VERIFIED_TOKENS_BYTES_MAX: u64 = 8 << 20;
/// Bytes an entry weighs beyond its token's text (the caller, `exp`, the
/// cache's own bookkeeping).
pub const VERIFIED_TOKEN_OVERHEAD: u64 = 128;

/// Weighs a remembered token by its size.
#[derive(Debug, Clone, Copy)]
struct TokenWeight;

impl quick_cache::Weighter<Box<str>, (Caller, u64)> for TokenWeight {
    fn weight(&self, token: &Box<str>, _: &(Caller, u64)) -> u64 {
        token.len() as u64 + VERIFIED_TOKEN_OVERHEAD
    }
}

/// The keys of one JWT secret, built once: verifying a request costs no
/// key setup. Clones share the tokens already verified.
#[derive(Clone)]
pub struct TokenKeys {
    encoding: EncodingKey,
    decoding: DecodingKey,
    validation: Validation,
    /// Token (its exact text) → the caller it proved and its `exp`. Only a
    /// token whose signature verified under these keys gets in, so the
    /// same text proves the same caller until it expires, which is checked
    /// on every use.
    verified: Arc<quick_cache::sync::Cache<Box<str>, (Caller, u64), TokenWeight>>,
    /// How verifications went, for `/metrics`: an operator sizes the
    /// remembered tokens by the share that had to be checked again.
    counts: Arc<TokenCounts>,
}

/// Bearer tokens verified since start, by how.
#[derive(Debug, Default)]
pub struct TokenCounts {
    /// Found among the remembered tokens (~0.1 µs).
    pub remembered: AtomicU64,
    /// Checked in full (signature and claims, ~2 µs), valid or not.
    pub checked: AtomicU64,
}

impl fmt::Debug for TokenKeys {
    // Never print key material.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("TokenKeys(..)")
    }
}

impl TokenKeys {
    /// Keys for the HS256 secret `secret`.
    pub fn new(secret: &str) -> TokenKeys {
        // Only HS256: a token naming another algorithm (or `none`) fails.
        let mut validation = Validation::new(Algorithm::HS256);
        validation.leeway = TOKEN_LEEWAY_SECS;
        validation.validate_aud = false;
        validation.set_required_spec_claims(&["exp", "sub"]);
        TokenKeys {
            encoding: EncodingKey::from_secret(secret.as_bytes()),
            decoding: DecodingKey::from_secret(secret.as_bytes()),
            validation,
            verified: Arc::new(quick_cache::sync::Cache::with_weighter(
                VERIFIED_TOKENS_MAX,
                VERIFIED_TOKENS_BYTES_MAX,
                TokenWeight,
            )),
            counts: Arc::default(),
        }
    }

    /// Tokens verified since start, by how.
    pub fn counts(&self) -> &TokenCounts {
        &self.counts
    }

    /// A token for `user` (an admin when `admin`), issued at `issued_at`
    /// (seconds since the epoch) and valid for `ttl`.
    pub fn mint_at(
        &self,
        user: &UserId,
        admin: bool,
        issued_at: u64,
        ttl: Duration,
    ) -> Result<String, ApiError> {
        let claims = Claims {
            sub: user.as_str().to_owned(),
            role: admin.then(|| ADMIN_ROLE.to_owned()),
            exp: issued_at.saturating_add(ttl.as_secs()),
            iat: issued_at,
        };
        jsonwebtoken::encode(&Header::new(Algorithm::HS256), &claims, &self.encoding)
            .map_err(|e| ApiError::system_error(format!("cannot sign a token: {e}")))
    }

    /// A token for `user` issued now and valid for `ttl`.
    pub fn mint(&self, user: &UserId, admin: bool, ttl: Duration) -> Result<String, ApiError> {
        self.mint_at(user, admin, now_secs(), ttl)
    }

    /// The caller an `Authorization` header value proves, or 401
    /// `UNAUTHORIZED`.
    pub fn verify(&self, header: Option<&str>) -> Result<Caller, ApiError> {
        let header =
            header.ok_or_else(|| ApiError::unauthorized("missing Authorization header"))?;
        let token = bearer_token(header)
            .ok_or_else(|| ApiError::unauthorized("Authorization must be `Bearer <token>`"))?;
        if let Some(caller) = self.verified_at(token, now_secs()) {
            self.counts.remembered.fetch_add(1, Relaxed);
            return Ok(caller);
        }
        self.counts.checked.fetch_add(1, Relaxed);
        let data = jsonwebtoken::decode::<Claims>(token, &self.decoding, &self.validation)
            .map_err(|e| {
                ApiError::unauthorized(match e.kind() {
                    ErrorKind::ExpiredSignature => "token expired".to_owned(),
                    ErrorKind::InvalidSignature => "token signature does not verify".to_owned(),
                    ErrorKind::InvalidAlgorithm => "token must be signed with HS256".to_owned(),
                    ErrorKind::MissingRequiredClaim(claim) => {
                        format!("token lacks the `{claim}` claim")
                    }
                    // The claims of a token whose signature verified: what
                    // serde says about them (a missing `exp` or `sub`, a
                    // wrong type) tells its issuer what to fix.
                    ErrorKind::Json(e) => format!("token claims are not valid: {e}"),
                    _ => "token is not a valid JWT".to_owned(),
                })
            })?;
        let claims = data.claims;
        let sub = UserId::parse(&claims.sub)
            .map_err(|_| ApiError::unauthorized("token subject is not a valid user id"))?;
        let caller = if claims.role.as_deref() == Some(ADMIN_ROLE) {
            Caller::Admin(sub.as_str().to_owned())
        } else {
            Caller::Shopper(sub)
        };
        self.verified
            .insert(token.into(), (caller.clone(), claims.exp));
        Ok(caller)
    }

    /// The caller `token` proved when it verified before, unless it has
    /// expired by `now` (with the same leeway as the full check).
    fn verified_at(&self, token: &str, now: u64) -> Option<Caller> {
        let (caller, exp) = self.verified.get(token)?;
        if now <= exp.saturating_add(TOKEN_LEEWAY_SECS) {
            Some(caller)
        } else {
            self.verified.remove(token);
            None
        }
    }
}

/// The token of `Bearer <token>` (the scheme is case-insensitive).
fn bearer_token(header: &str) -> Option<&str> {
    let (scheme, token) = header.trim().split_once(' ')?;
    let token = token.trim();
    (scheme.eq_ignore_ascii_case("bearer") && !token.is_empty()).then_some(token)
}

fn now_secs() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_secs())
}

/// Mints a token with `secret` (see [`TokenKeys::mint`]).
pub fn mint(secret: &str, user: &UserId, admin: bool, ttl: Duration) -> Result<String, ApiError> {
    TokenKeys::new(secret).mint(user, admin, ttl)
}

/// Verifies an `Authorization` header value with `secret` (see
/// [`TokenKeys::verify`]). A server builds [`TokenKeys`] once instead.
pub fn verify(secret: &str, header: Option<&str>) -> Result<Caller, ApiError> {
    TokenKeys::new(secret).verify(header)
}

type HmacSha256 = Hmac<Sha256>;

fn mac(secret: &str) -> HmacSha256 {
    // HMAC takes a key of any length, so this never fails; the fallback
    // keeps the function total without a panic path.
    HmacSha256::new_from_slice(secret.as_bytes())
        .unwrap_or_else(|_| HmacSha256::new(&Default::default()))
}

/// `hex(HMAC-SHA256(secret, body))`: what a payment provider sends as
/// `X-Signature`. Used by tests, the README and the load harness.
pub fn sign(secret: &str, body: &[u8]) -> String {
    let mut mac = mac(secret);
    mac.update(body);
    hex::encode(mac.finalize().into_bytes())
}

/// Checks a callback's `X-Signature` against its raw body, in constant
/// time; 401 `SIGNATURE_INVALID` when it is missing, not hex, or wrong.
pub fn verify_signature(secret: &str, body: &[u8], header: Option<&str>) -> Result<(), ApiError> {
    let header = header.ok_or_else(|| ApiError::signature_invalid("missing X-Signature header"))?;
    let claimed = hex::decode(header.trim())
        .map_err(|_| ApiError::signature_invalid("X-Signature is not hex"))?;
    let mut mac = mac(secret);
    mac.update(body);
    mac.verify_slice(&claimed)
        .map_err(|_| ApiError::signature_invalid("X-Signature does not match the body"))
}

#[cfg(test)]
mod tests {
    use super::*;
    use ordercore_domain::{ActorKind, ErrorCode};

    const SECRET: &str = "0123456789abcdef0123456789abcdef";

    fn user(id: &str) -> UserId {
        UserId::parse(id).unwrap()
    }

    fn bearer(token: &str) -> String {
        format!("Bearer {token}")
    }

    fn unauthorized(result: Result<Caller, ApiError>) -> String {
        let err = result.unwrap_err();
        assert_eq!(err.code(), ErrorCode::UNAUTHORIZED);
        err.message().to_owned()
    }

    #[test]
    fn a_minted_token_verifies_as_shopper_or_admin() {
        let keys = TokenKeys::new(SECRET);
        let ttl = Duration::from_secs(60);
        let token = keys.mint(&user("u1"), false, ttl).unwrap();
        let caller = keys.verify(Some(&bearer(&token))).unwrap();
        assert_eq!(caller, Caller::Shopper(user("u1")));
        assert_eq!(caller.actor(), Actor::user(&user("u1")));
        assert!(caller.require_admin().is_err());
        assert!(caller.require_user(&user("u1")).is_ok());
        assert_eq!(
            caller.require_user(&user("u2")).unwrap_err().code(),
            ErrorCode::FORBIDDEN
        );

        let token = mint(SECRET, &user("ops-1"), true, ttl).unwrap();
        let caller = verify(SECRET, Some(&format!("bearer  {token} "))).unwrap();
        assert_eq!(caller, Caller::Admin("ops-1".into()));
        assert_eq!(Actor::from(&caller).kind, ActorKind::Admin);
        assert!(caller.require_admin().is_ok());
        assert!(caller.require_user(&user("u2")).is_ok());
    }

    #[test]
    fn a_verified_token_is_remembered_until_it_expires() {
        let keys = TokenKeys::new(SECRET);
        let now = now_secs();
        let token = keys
            .mint_at(&user("u1"), false, now, Duration::from_secs(60))
            .unwrap();
        assert_eq!(keys.verified_at(&token, now), None);
        let caller = keys.verify(Some(&bearer(&token))).unwrap();
        assert_eq!(keys.verified_at(&token, now), Some(caller.clone()));
        assert_eq!(keys.verify(Some(&bearer(&token))).unwrap(), caller);
        // Past `exp` and the leeway the entry is dropped, and the full
        // check decides again.
        let expired = now + 60 + TOKEN_LEEWAY_SECS + 1;
        assert_eq!(keys.verified_at(&token, expired), None);
        assert_eq!(keys.verified.len(), 0);
        // Another token with the same claims but a bad signature is not
        // the remembered text: it is refused.
        keys.verify(Some(&bearer(&token))).unwrap();
        let (unsigned, _) = token.rsplit_once('.').unwrap();
        let forged = format!("{unsigned}.{}", "A".repeat(43));
        assert_eq!(
            unauthorized(keys.verify(Some(&bearer(&forged)))),
            "token signature does not verify"
        );
        // Entries are weighed by their text: long tokens fill the bytes,
        // not more memory.
        let heavy = TokenKeys::new(SECRET);
        let big = "x".repeat(64 * 1024);
        for i in 0..200 {
            heavy
                .verified
                .insert(format!("{i}{big}").into(), (caller.clone(), u64::MAX));
        }
        let held = heavy.verified.weight();
        assert!(held <= VERIFIED_TOKENS_BYTES_MAX, "{held}");
        assert!(heavy.verified.len() < 200);
        // Clones share what was verified; other keys do not.
        assert!(keys.clone().verified_at(&token, now).is_some());
        let other = TokenKeys::new("another-secret-of-16-bytes");
        assert!(other.verified_at(&token, now).is_none());
        assert!(other.verify(Some(&bearer(&token))).is_err());
    }

    #[test]
    fn verifications_are_counted_by_how_they_went() {
        let keys = TokenKeys::new(SECRET);
        let token = keys
            .mint(&user("u1"), false, Duration::from_secs(60))
            .unwrap();
        let counts = |k: &TokenKeys| {
            let c = k.counts();
            (c.remembered.load(Relaxed), c.checked.load(Relaxed))
        };
        keys.verify(Some(&bearer(&token))).unwrap();
        assert_eq!(counts(&keys), (0, 1));
        keys.verify(Some(&bearer(&token))).unwrap();
        keys.clone().verify(Some(&bearer(&token))).unwrap();
        assert_eq!(counts(&keys), (2, 1));
        // A token that fails is checked in full every time.
        let forged = format!("{}.{}", token.rsplit_once('.').unwrap().0, "A".repeat(43));
        assert!(keys.verify(Some(&bearer(&forged))).is_err());
        assert!(keys.verify(Some(&bearer(&forged))).is_err());
        assert_eq!(counts(&keys), (2, 3));
        // A missing or malformed header is no verification.
        assert!(keys.verify(None).is_err());
        assert!(keys.verify(Some("Basic x")).is_err());
        assert_eq!(counts(&keys), (2, 3));
    }

    #[test]
    fn an_expired_token_is_refused() {
        let keys = TokenKeys::new(SECRET);
        let long_ago = now_secs() - 3_600;
        let token = keys
            .mint_at(&user("u1"), false, long_ago, Duration::from_secs(60))
            .unwrap();
        assert_eq!(
            unauthorized(keys.verify(Some(&bearer(&token)))),
            "token expired"
        );
    }

    #[test]
    fn a_token_of_another_secret_is_refused() {
        let token = mint(
            "another-secret-another-secret",
            &user("u1"),
            true,
            Duration::from_secs(60),
        )
        .unwrap();
        unauthorized(verify(SECRET, Some(&bearer(&token))));
    }

    #[test]
    fn an_unsigned_token_is_refused() {
        let b64 = base64_url;
        let header = b64(r#"{"alg":"none","typ":"JWT"}"#);
        let exp = now_secs() + 600;
        let claims = b64(&format!(r#"{{"sub":"u1","role":"admin","exp":{exp}}}"#));
        for token in [format!("{header}.{claims}."), format!("{header}.{claims}")] {
            unauthorized(verify(SECRET, Some(&bearer(&token))));
        }
        // HS512 with the right secret is still not HS256.
        let hs512 = jsonwebtoken::encode(
            &Header::new(Algorithm::HS512),
            &Claims {
                sub: "u1".into(),
                role: None,
                exp,
                iat: 0,
            },
            &EncodingKey::from_secret(SECRET.as_bytes()),
        )
        .unwrap();
        unauthorized(verify(SECRET, Some(&bearer(&hs512))));
    }

    /// Base64url without padding, enough for a hand-made token.
    fn base64_url(raw: &str) -> String {
        const ALPHABET: &[u8] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_";
        let bytes = raw.as_bytes();
        let mut out = String::new();
        for chunk in bytes.chunks(3) {
            let n = chunk
                .iter()
                .enumerate()
                .fold(0u32, |n, (i, b)| n | u32::from(*b) << (16 - 8 * i));
            for i in 0..=chunk.len() {
                let index = usize::try_from(n >> (18 - 6 * i) & 63).unwrap();
                out.push(char::from(ALPHABET[index]));
            }
        }
        out
    }

    #[test]
    fn garbage_and_malformed_headers_are_refused() {
        unauthorized(verify(SECRET, None));
        unauthorized(verify(SECRET, Some("")));
        unauthorized(verify(SECRET, Some("Bearer")));
        unauthorized(verify(SECRET, Some("Bearer ")));
        unauthorized(verify(SECRET, Some("Bearer not.a.jwt")));
        unauthorized(verify(SECRET, Some("Bearer \u{0}\u{1}")));
        let token = mint(SECRET, &user("u1"), false, Duration::from_secs(60)).unwrap();
        // The token alone, or under another scheme, is not a bearer token.
        unauthorized(verify(SECRET, Some(&token)));
        unauthorized(verify(SECRET, Some(&format!("Basic {token}"))));
    }

    #[test]
    fn a_subject_that_is_not_a_user_id_is_refused() {
        let claims = Claims {
            sub: "has space".into(),
            role: None,
            exp: now_secs() + 600,
            iat: now_secs(),
        };
        let token = jsonwebtoken::encode(
            &Header::new(Algorithm::HS256),
            &claims,
            &EncodingKey::from_secret(SECRET.as_bytes()),
        )
        .unwrap();
        assert_eq!(
            unauthorized(verify(SECRET, Some(&bearer(&token)))),
            "token subject is not a valid user id"
        );
    }

    #[test]
    fn a_token_without_an_expiry_is_refused() {
        // Signed with the right secret, but valid forever: refused.
        let claims = serde_json::json!({"sub": "u1", "role": "admin"});
        let token = jsonwebtoken::encode(
            &Header::new(Algorithm::HS256),
            &claims,
            &EncodingKey::from_secret(SECRET.as_bytes()),
        )
        .unwrap();
        let message = unauthorized(verify(SECRET, Some(&bearer(&token))));
        assert!(
            message.starts_with("token claims are not valid: missing field `exp`"),
            "{message}"
        );
    }

    #[test]
    fn signatures_verify_only_for_the_exact_body_and_secret() {
        let body = br#"{"order_id":"x"}"#;
        let signature = sign(SECRET, body);
        assert_eq!(signature.len(), 64);
        assert!(verify_signature(SECRET, body, Some(&signature)).is_ok());
        assert!(verify_signature(SECRET, body, Some(&signature.to_uppercase())).is_ok());
        let refused = |secret: &str, body: &[u8], header: Option<&str>| {
            let err = verify_signature(secret, body, header).unwrap_err();
            assert_eq!(err.code(), ErrorCode::SIGNATURE_INVALID);
            assert_eq!(err.status().as_u16(), 401);
        };
        refused(SECRET, body, None);
        refused(SECRET, body, Some("zz-not-hex"));
        refused(SECRET, body, Some("abc"));
        refused(SECRET, body, Some(&signature[..62]));
        refused(SECRET, b"{\"order_id\":\"y\"}", Some(&signature));
        refused("another secret", body, Some(&signature));
        refused(SECRET, body, Some(&sign(SECRET, b"other")));
    }
}
