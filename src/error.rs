//! `ApiError`: the one place where every layer's error becomes an HTTP
//! status and a stable UPPER_SNAKE code (API.md, "Errors").
//!
//! The status always comes from the code ([`ErrorCode::http_status`]), so a
//! code can never be answered with two different statuses. The body is
//! exactly `{"code": "...", "message": "..."}`; 503s carry `Retry-After`.

use actix_web::error::{JsonPayloadError, PathError, PayloadError, QueryPayloadError};
use actix_web::http::header::{self, HeaderValue};
use actix_web::http::StatusCode;
use actix_web::{HttpRequest, HttpResponse, ResponseError};
use ordercore_actors::CoreError;
use ordercore_domain::{AlertLevel, DomainError, ErrorCode};
use ordercore_storage::StorageError;
use serde::Serialize;
use std::fmt;

/// Seconds a client should wait before retrying a 503 (`Retry-After`).
pub const RETRY_AFTER_SECS: u32 = 1;

/// An error answered to a client: a stable code and a human message. The
/// HTTP status is the code's.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ApiError {
    code: ErrorCode,
    message: String,
}

/// The JSON body of every error response.
#[derive(Debug, Serialize, utoipa::ToSchema)]
pub struct ErrorBody<'a> {
    /// The stable UPPER_SNAKE code clients match on.
    pub code: &'a str,
    /// What went wrong, for humans.
    pub message: &'a str,
}

impl ApiError {
    /// An error with `code` and `message`.
    pub fn new(code: ErrorCode, message: impl Into<String>) -> ApiError {
        ApiError {
            code,
            message: message.into(),
        }
    }

    /// The stable code.
    pub fn code(&self) -> ErrorCode {
        self.code
    }

    /// The human message.
    pub fn message(&self) -> &str {
        &self.message
    }

    /// The HTTP status of the code.
    pub fn status(&self) -> StatusCode {
        // Every code's status is a valid one (the catalogue is a literal
        // table); the fallback only guards against a future typo there.
        StatusCode::from_u16(self.code.http_status()).unwrap_or(StatusCode::INTERNAL_SERVER_ERROR)
    }

    /// How loud the error is in logs and metrics (API.md, "Operations").
    pub fn alert_level(&self) -> AlertLevel {
        self.code.alert_level()
    }

    /// 401: no usable bearer token.
    pub fn unauthorized(message: impl Into<String>) -> ApiError {
        ApiError::new(ErrorCode::UNAUTHORIZED, message)
    }

    /// 401: a payment callback whose `X-Signature` is missing or wrong.
    pub fn signature_invalid(message: impl Into<String>) -> ApiError {
        ApiError::new(ErrorCode::SIGNATURE_INVALID, message)
    }

    /// 403: the caller may not do this (not its order, not an admin).
    pub fn forbidden(message: impl Into<String>) -> ApiError {
        ApiError::new(ErrorCode::FORBIDDEN, message)
    }

    /// 400: malformed JSON, an unknown field, a wrong type, a bad parameter.
    pub fn invalid_request(message: impl Into<String>) -> ApiError {
        ApiError::new(ErrorCode::INVALID_REQUEST, message)
    }

    /// 413: the body is larger than `limit_bytes`.
    pub fn payload_too_large(limit_bytes: usize) -> ApiError {
        ApiError::new(
            ErrorCode::PAYLOAD_TOO_LARGE,
            format!("request body is larger than {limit_bytes} bytes"),
        )
    }

    /// 503: a queue or mailbox is full; retry later.
    pub fn overloaded(message: impl Into<String>) -> ApiError {
        ApiError::new(ErrorCode::OVERLOADED, message)
    }

    /// 503: the core is still recovering or its writer is unhealthy.
    pub fn not_ready(message: impl Into<String>) -> ApiError {
        ApiError::new(ErrorCode::NOT_READY, message)
    }

    /// 503: the store could not make a change durable.
    pub fn storage_unavailable(message: impl Into<String>) -> ApiError {
        ApiError::new(ErrorCode::STORAGE_UNAVAILABLE, message)
    }

    /// 404 for a path no route serves.
    pub fn route_not_found(path: &str) -> ApiError {
        ApiError::new(ErrorCode::ROUTE_NOT_FOUND, format!("no route for {path}"))
    }

    /// 405 for a known path with the wrong method.
    pub fn method_not_allowed(method: &str, path: &str) -> ApiError {
        ApiError::new(
            ErrorCode::METHOD_NOT_ALLOWED,
            format!("{method} is not allowed on {path}"),
        )
    }

    /// 500: a defect in ordercore, never caused by input.
    pub fn system_error(message: impl Into<String>) -> ApiError {
        ApiError::new(ErrorCode::SYSTEM_ERROR, message)
    }
}

impl fmt::Display for ApiError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}: {}", self.code, self.message)
    }
}

impl std::error::Error for ApiError {}

impl From<DomainError> for ApiError {
    fn from(err: DomainError) -> ApiError {
        ApiError::new(err.code(), err.to_string())
    }
}

impl From<CoreError> for ApiError {
    fn from(err: CoreError) -> ApiError {
        match err {
            CoreError::Domain(e) => e.into(),
            other => ApiError::new(other.code(), other.to_string()),
        }
    }
}

impl From<StorageError> for ApiError {
    /// A full writer queue is `OVERLOADED`; everything else the store
    /// reports (a failed flush, a closed store, a record that does not
    /// decode) is `STORAGE_UNAVAILABLE`: none of it is the client's fault,
    /// and all of it may pass, so it is a 503 with `Retry-After`.
    fn from(err: StorageError) -> ApiError {
        match err {
            StorageError::Overloaded { .. } => ApiError::overloaded(err.to_string()),
            _ => ApiError::storage_unavailable(err.to_string()),
        }
    }
}

impl ResponseError for ApiError {
    fn status_code(&self) -> StatusCode {
        self.status()
    }

    fn error_response(&self) -> HttpResponse {
        let mut response = HttpResponse::build(self.status());
        if self.status() == StatusCode::SERVICE_UNAVAILABLE {
            response.insert_header((header::RETRY_AFTER, HeaderValue::from(RETRY_AFTER_SECS)));
        }
        let mut response = response.json(ErrorBody {
            code: self.code.name(),
            message: &self.message,
        });
        // The request middleware counts and logs errors by code.
        response.extensions_mut().insert(self.code);
        response
    }
}

/// The error of a JSON body that could not be read or parsed: 413 when it
/// is too large, 415 when it is not `application/json`, 400 otherwise with
/// serde's message (which names an unknown field, a missing field or a
/// wrong type, and where).
pub fn from_json_error(err: &JsonPayloadError) -> ApiError {
    match err {
        JsonPayloadError::OverflowKnownLength { limit, .. }
        | JsonPayloadError::Overflow { limit } => ApiError::payload_too_large(*limit),
        JsonPayloadError::ContentType => ApiError::new(
            ErrorCode::UNSUPPORTED_MEDIA_TYPE,
            "the body must be JSON (Content-Type: application/json)",
        ),
        JsonPayloadError::Deserialize(e) => from_serde_json(e),
        JsonPayloadError::Payload(e) => from_payload_error(e, 0),
        // Serializing is the server's side of a response: a defect.
        JsonPayloadError::Serialize(e) => ApiError::system_error(format!("serialize: {e}")),
        // `JsonPayloadError` is non-exhaustive; anything new is about input.
        other => ApiError::invalid_request(other.to_string()),
    }
}

/// The error of a body that could not be read: 413 when it passed the
/// size limit (`limit_bytes`, 0 when unknown), 400 otherwise.
pub fn from_payload_error(err: &PayloadError, limit_bytes: usize) -> ApiError {
    match err {
        PayloadError::Overflow if limit_bytes > 0 => ApiError::payload_too_large(limit_bytes),
        PayloadError::Overflow => {
            ApiError::new(ErrorCode::PAYLOAD_TOO_LARGE, "request body is too large")
        }
        other => ApiError::invalid_request(format!("request body could not be read: {other}")),
    }
}

/// The error of a body that is not the expected JSON (400 with serde's
/// message). For bodies read as bytes first, e.g. signed callbacks.
pub fn from_serde_json(err: &serde_json::Error) -> ApiError {
    ApiError::invalid_request(format!("invalid JSON body: {err}"))
}

/// Parses a JSON body read as bytes (signed callbacks must verify the raw
/// body before it is parsed), with the same errors as the JSON extractor.
pub fn parse_json<T: serde::de::DeserializeOwned>(body: &[u8]) -> Result<T, ApiError> {
    serde_json::from_slice(body).map_err(|e| from_serde_json(&e))
}

/// The error of a query string that does not parse (400).
pub fn from_query_error(err: &QueryPayloadError) -> ApiError {
    match err {
        QueryPayloadError::Deserialize(e) => {
            ApiError::invalid_request(format!("invalid query string: {e}"))
        }
        other => ApiError::invalid_request(other.to_string()),
    }
}

/// The error of a path parameter that does not parse (400).
pub fn from_path_error(err: &PathError) -> ApiError {
    match err {
        PathError::Deserialize(e) => ApiError::invalid_request(format!("invalid path: {e}")),
        other => ApiError::invalid_request(other.to_string()),
    }
}

/// For `web::JsonConfig::error_handler`.
pub fn json_error_handler(err: JsonPayloadError, _req: &HttpRequest) -> actix_web::Error {
    from_json_error(&err).into()
}

/// For `web::QueryConfig::error_handler`.
pub fn query_error_handler(err: QueryPayloadError, _req: &HttpRequest) -> actix_web::Error {
    from_query_error(&err).into()
}

/// For `web::PathConfig::error_handler`.
pub fn path_error_handler(err: PathError, _req: &HttpRequest) -> actix_web::Error {
    from_path_error(&err).into()
}

#[cfg(test)]
mod tests {
    use super::*;
    use actix_web::body::MessageBody;

    fn body_of(err: &ApiError) -> (StatusCode, Option<String>, serde_json::Value) {
        let response = err.error_response();
        let status = response.status();
        let retry = response
            .headers()
            .get(header::RETRY_AFTER)
            .map(|v| v.to_str().unwrap().to_owned());
        let bytes = response.into_body().try_into_bytes().unwrap();
        (status, retry, serde_json::from_slice(&bytes).unwrap())
    }

    #[test]
    fn the_body_is_exactly_code_and_message() {
        let (status, retry, body) = body_of(&ApiError::forbidden("not your order"));
        assert_eq!(status, StatusCode::FORBIDDEN);
        assert_eq!(retry, None);
        assert_eq!(
            body,
            serde_json::json!({"code": "FORBIDDEN", "message": "not your order"})
        );
    }

    #[test]
    fn every_503_says_when_to_retry() {
        for err in [
            ApiError::overloaded("full"),
            ApiError::not_ready("recovering"),
            ApiError::storage_unavailable("flush failed"),
        ] {
            let (status, retry, _) = body_of(&err);
            assert_eq!(status, StatusCode::SERVICE_UNAVAILABLE);
            assert_eq!(retry.as_deref(), Some("1"));
        }
    }

    #[test]
    fn constructors_carry_their_codes_and_statuses() {
        let cases = [
            (ApiError::unauthorized("x"), "UNAUTHORIZED", 401),
            (ApiError::signature_invalid("x"), "SIGNATURE_INVALID", 401),
            (ApiError::forbidden("x"), "FORBIDDEN", 403),
            (ApiError::invalid_request("x"), "INVALID_REQUEST", 400),
            (ApiError::payload_too_large(10), "PAYLOAD_TOO_LARGE", 413),
            (ApiError::overloaded("x"), "OVERLOADED", 503),
            (ApiError::not_ready("x"), "NOT_READY", 503),
            (
                ApiError::storage_unavailable("x"),
                "STORAGE_UNAVAILABLE",
                503,
            ),
            (ApiError::route_not_found("/x"), "ROUTE_NOT_FOUND", 404),
            (
                ApiError::method_not_allowed("GET", "/x"),
                "METHOD_NOT_ALLOWED",
                405,
            ),
        ];
        for (err, code, status) in cases {
            assert_eq!(err.code().name(), code);
            assert_eq!(err.status().as_u16(), status, "{code}");
        }
    }

    #[test]
    fn domain_errors_keep_their_code_and_message() {
        let err = ordercore_domain::OrderId::parse("nope").unwrap_err();
        let api = ApiError::from(err.clone());
        assert_eq!(api.code(), ErrorCode::ORDER_ID_INVALID);
        assert_eq!(api.status(), StatusCode::BAD_REQUEST);
        assert_eq!(api.message(), err.to_string());
        let mismatch = ApiError::from(DomainError::VersionMismatch {
            expected: 1,
            current: 2,
        });
        assert_eq!(mismatch.status(), StatusCode::PRECONDITION_FAILED);
    }

    #[test]
    fn storage_errors_are_503s() {
        let full = ApiError::from(StorageError::Overloaded { what: "queue" });
        assert_eq!(full.code(), ErrorCode::OVERLOADED);
        let down = ApiError::from(StorageError::Unavailable("disk".into()));
        assert_eq!(down.code(), ErrorCode::STORAGE_UNAVAILABLE);
        assert_eq!(
            ApiError::from(StorageError::Closed).code(),
            ErrorCode::STORAGE_UNAVAILABLE
        );
    }

    #[test]
    fn extractor_errors_map_to_413_415_and_400() {
        let big = JsonPayloadError::OverflowKnownLength {
            length: 10,
            limit: 5,
        };
        assert_eq!(from_json_error(&big).code(), ErrorCode::PAYLOAD_TOO_LARGE);
        let big = JsonPayloadError::Overflow { limit: 5 };
        assert_eq!(from_json_error(&big).code(), ErrorCode::PAYLOAD_TOO_LARGE);
        let big = JsonPayloadError::Payload(PayloadError::Overflow);
        assert_eq!(from_json_error(&big).code(), ErrorCode::PAYLOAD_TOO_LARGE);
        assert_eq!(
            from_json_error(&JsonPayloadError::ContentType).status(),
            StatusCode::UNSUPPORTED_MEDIA_TYPE
        );

        #[derive(Debug, serde::Deserialize)]
        #[serde(deny_unknown_fields)]
        #[allow(dead_code)]
        struct Body {
            user_id: String,
        }
        let unknown = serde_json::from_str::<Body>(r#"{"user_id":"u","bogus":1}"#).unwrap_err();
        let err = from_json_error(&JsonPayloadError::Deserialize(unknown));
        assert_eq!(err.code(), ErrorCode::INVALID_REQUEST);
        assert!(err.message().contains("bogus"), "{}", err.message());
        let wrong = parse_json::<Body>(br#"{"user_id":7}"#).unwrap_err();
        assert_eq!(wrong.code(), ErrorCode::INVALID_REQUEST);
        assert!(
            wrong.message().contains("invalid type"),
            "{}",
            wrong.message()
        );

        let query = serde_urlencoded_error();
        assert_eq!(
            from_query_error(&QueryPayloadError::Deserialize(query.clone())).code(),
            ErrorCode::INVALID_REQUEST
        );
        assert_eq!(
            from_path_error(&PathError::Deserialize(query)).code(),
            ErrorCode::INVALID_REQUEST
        );
    }

    fn serde_urlencoded_error() -> serde::de::value::Error {
        <serde::de::value::Error as serde::de::Error>::custom("bad")
    }
}
