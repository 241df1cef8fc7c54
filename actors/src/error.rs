//! The core's error: a domain refusal, or why the core could not serve.

use ordercore_domain::{DomainError, ErrorCode};
use ordercore_storage::StorageError;

/// Why an operation of the core failed. Every variant has one stable code
/// ([`CoreError::code`]); the edge maps it to HTTP once.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum CoreError {
    /// The domain refused the command (the request's own fault, or a state
    /// conflict); nothing changed.
    #[error(transparent)]
    Domain(#[from] DomainError),
    /// A mailbox or the writer's queue is full; retry later.
    #[error("overloaded: {0} is full")]
    Overloaded(&'static str),
    /// A write failed or the store is failing; the change was not made.
    #[error("storage unavailable: {0}")]
    StorageUnavailable(String),
    /// The core is starting, stopping, or an order actor is restarting.
    #[error("not ready: {0}")]
    NotReady(String),
}

impl CoreError {
    /// The API error code.
    pub fn code(&self) -> ErrorCode {
        match self {
            CoreError::Domain(e) => e.code(),
            CoreError::Overloaded(_) => ErrorCode::OVERLOADED,
            CoreError::StorageUnavailable(_) => ErrorCode::STORAGE_UNAVAILABLE,
            CoreError::NotReady(_) => ErrorCode::NOT_READY,
        }
    }

    pub(crate) fn not_ready(why: impl Into<String>) -> CoreError {
        CoreError::NotReady(why.into())
    }
}

impl From<StorageError> for CoreError {
    fn from(e: StorageError) -> Self {
        match e {
            StorageError::Overloaded { what } => CoreError::Overloaded(what),
            StorageError::Closed => CoreError::not_ready("the store is shutting down"),
            other => CoreError::StorageUnavailable(other.to_string()),
        }
    }
}
