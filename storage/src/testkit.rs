//! A journal that fails on demand, for the fault tests of every layer
//! (feature `testkit`; never part of the server).

use crate::error::StorageError;
use crate::journal::{EncodedRecord, Journal, Unit};
use crate::segments::SegmentJournal;
use ordercore_domain::Timestamp;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;

/// The segment journal, except that appends and flushes fail while `failing`
/// is set (as a full or failing disk would), and flushes wait while
/// `stalled` is set (as a slow disk would).
#[derive(Debug)]
pub struct FlakyJournal {
    pub inner: SegmentJournal,
    pub failing: Arc<AtomicBool>,
    pub stalled: Arc<AtomicBool>,
}

impl FlakyJournal {
    /// A segment journal in `dir` that neither fails nor stalls until told to.
    pub fn open(dir: impl Into<std::path::PathBuf>) -> Result<FlakyJournal, StorageError> {
        Ok(FlakyJournal {
            inner: SegmentJournal::open(dir)?,
            failing: Arc::default(),
            stalled: Arc::default(),
        })
    }
}

impl Journal for FlakyJournal {
    fn append(&self, expected_last: u64, record: &EncodedRecord) -> Result<(), StorageError> {
        if self.failing.load(Ordering::SeqCst) {
            return Err(StorageError::Sled(
                "injected: no space left on device".into(),
            ));
        }
        self.inner.append(expected_last, record)
    }
    fn flush(&self) -> Result<(), StorageError> {
        while self.stalled.load(Ordering::SeqCst) {
            std::thread::sleep(std::time::Duration::from_millis(1));
        }
        if self.failing.load(Ordering::SeqCst) {
            return Err(StorageError::Sled("injected: flush failed".into()));
        }
        self.inner.flush()
    }
    fn last_seq(&self) -> Result<u64, StorageError> {
        self.inner.last_seq()
    }
    fn first_seq(&self) -> Result<u64, StorageError> {
        self.inner.first_seq()
    }
    fn scan(&self, after: u64, f: &mut dyn FnMut(Unit) -> bool) -> Result<(), StorageError> {
        self.inner.scan(after, f)
    }
    fn trim(&self, through: u64, before: Timestamp) -> Result<usize, StorageError> {
        self.inner.trim(through, before)
    }
}
