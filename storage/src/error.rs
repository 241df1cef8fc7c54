//! The storage layer's error.

use std::fmt;

/// Why a storage operation failed. Every variant says what went wrong in
/// lowercase; the edge maps `Overloaded` to 503 `OVERLOADED` and the rest to
/// 503 `STORAGE_UNAVAILABLE`.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum StorageError {
    /// The writer's queue is full; retry later.
    #[error("storage queue is full ({what})")]
    Overloaded { what: &'static str },
    /// A write or flush failed, or the store is unhealthy since one did.
    #[error("storage unavailable: {0}")]
    Unavailable(String),
    /// The change was decided on state from before a failed write; reload.
    #[error("stale state: a write failed since this change was decided (epoch {current}, change from {submitted})")]
    StaleEpoch { submitted: u64, current: u64 },
    /// A stored record does not decode.
    #[error("corrupt {what}: {reason}")]
    Corrupt { what: &'static str, reason: String },
    /// The store is shutting down or its writer stopped.
    #[error("storage closed")]
    Closed,
    /// A journal file operation failed.
    #[error("journal i/o: {0}")]
    Io(String),
    /// sled reported an error.
    #[error("sled: {0}")]
    Sled(String),
}

impl From<sled::Error> for StorageError {
    fn from(e: sled::Error) -> Self {
        StorageError::Sled(e.to_string())
    }
}

impl StorageError {
    pub(crate) fn corrupt(what: &'static str, reason: impl fmt::Display) -> Self {
        StorageError::Corrupt {
            what,
            reason: reason.to_string(),
        }
    }
}
