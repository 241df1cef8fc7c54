//! The journal in append-only segment files: the production [`Journal`].
//!
//! Why not a sled tree: sled 0.34 hands every flush to its I/O thread pool,
//! which wakes all of its idle threads for each job, and one flush covers
//! every tree of the database, the write-behind's rows included. A group
//! commit here is one `write` and one `fdatasync` of the journal's own file
//! on the writer's thread.
//!
//! Layout: a directory of segment files named by the first sequence they
//! hold (`00000000000000000001.seg`, 20 digits, so names sort by sequence).
//! A segment is a run of frames:
//!
//! ```text
//! [len u32 BE][crc32 of the record u32 BE][record: len bytes, see journal.rs]
//! ```
//!
//! A new segment starts when the active one would pass [`SEGMENT_BYTES`];
//! the old one is synced first and the directory after the new file is
//! created, so a sync of the active file makes every appended record
//! durable. A new segment is the spare written with zeros ahead of need
//! ([`SPARE_SUFFIX`]) or, without one ready, a file whose blocks are reserved
//! up front ([`preallocate`]); either way its frames are followed by zeros:
//! a frame header of zero length ends a segment's records. On open, the
//! last segment is read up to its first torn or corrupt frame (a crash
//! mid-write never acknowledged it), and whatever lies after that is cut
//! off before appends go on.

use crate::error::StorageError;
use crate::journal::{decode_record, feed, read_header, EncodedRecord, Journal, Unit};
use crate::store::lock;
use ordercore_domain::Timestamp;
use std::fs::{File, OpenOptions};
use std::io::{Read, Seek, SeekFrom};
use std::os::unix::fs::FileExt;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex, MutexGuard};

/// Bytes after which the active segment is closed and a new one started
/// (64 MiB): trimming removes whole segments, so this is also the grain of
/// what the journal keeps beyond its retention.
pub const SEGMENT_BYTES: u64 = 64 * 1024 * 1024;

/// Frame header: length and CRC-32 of the record.
const FRAME_HEADER: usize = 8;

const SUFFIX: &str = ".seg";

/// The next segment, written with zeros and synced ahead of need, then
/// renamed into place when the active one fills. A block of a `fallocate`d
/// file is "unwritten" until its first write, and an `fdatasync` after
/// that write must also commit the block's conversion through ext4's
/// journal, where it can wait behind another file's commit (sled's): at
/// 6,000 creates/s, zero-written segments answered with a p50 of 1.42-1.64
/// ms against 1.78-2.16 ms, and 3-7% less server CPU per request (four runs
/// of each alternated). The name does not end in [`SUFFIX`], so a spare is
/// never read as a segment. Each journal opened names its spare apart
/// (`next.<pid>-<n>.spare`), so a spare thread of a journal dropped
/// earlier in the process can never touch the file a later one renames
/// into place; opening removes every spare left in the directory.
const SPARE_SUFFIX: &str = ".spare";

/// How full the active segment is (percent) when its spare starts being
/// written: early enough that a roll finds it ready, late enough that a
/// small journal (a test's, a quiet store's) never writes one.
pub const SPARE_AT_PERCENT: u64 = 50;

/// An active segment that was reserved with `fallocate` (a fresh store's
/// first, one reopened, one started without a ready spare) gets its spare
/// once it holds this many bytes (or is [`SPARE_AT_PERCENT`] full, if that
/// comes first), and hands over to it as soon as the spare is ready: a new
/// server runs on written blocks within seconds instead of after its first
/// 64 MiB. The rest of the reserved segment stays unused until trimmed.
pub const SPARE_EARLY_BYTES: u64 = 1 << 20;

/// The spare is written in chunks of this size, each synced on its own and
/// followed by [`SPARE_PAUSE`]: written in one go (64 MiB in ~0.4 s, synced
/// at the end), its writeback held the disk for long enough that the
/// journal's `fdatasync`s queued behind it, and answers waited 30-90 ms
/// (sampled at 6,000 creates/s, the burst lined up with the spare thread's
/// CPU). Paced, 64 MiB take ~1.5 s, and a segment lasts ~25 s even at the
/// closed-loop rate.
const SPARE_CHUNK: usize = 1 << 20;
const SPARE_PAUSE: std::time::Duration = std::time::Duration::from_millis(20);

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Spare {
    Absent,
    Writing,
    Ready,
}

/// Where one record sits in its segment.
#[derive(Debug, Clone, Copy)]
struct RecordAt {
    last_seq: u64,
    written_at: Timestamp,
    /// Offset of the frame header.
    offset: u64,
    len: u32,
}

#[derive(Debug)]
struct Segment {
    first_seq: u64,
    path: PathBuf,
    /// Every record, read when the segment is first scanned or trimmed
    /// (the active segment's always is).
    records: Option<Arc<Vec<RecordAt>>>,
}

#[derive(Debug)]
struct State {
    segments: Vec<Segment>,
    /// The active (last) segment, open for appending; `None` until the
    /// first append of an empty journal.
    active: Option<Arc<File>>,
    /// Bytes in the active segment.
    active_len: u64,
    /// Whether the active segment was a spare (all its blocks written);
    /// otherwise it hands over to a spare early ([`SPARE_EARLY_BYTES`]).
    active_written: bool,
    last_seq: u64,
    /// The active segment's bytes known to be on disk (synced), and the
    /// last sequence they hold: a failed sync cuts the segment back to
    /// them (see [`SegmentJournal::cut_unsynced`]).
    synced_len: u64,
    synced_seq: u64,
    /// The last frame's buffer, reused (see `RecordBuilder::with_buffer`).
    frame: Vec<u8>,
    /// Set when an append, a roll or a sync failed and what is on disk is
    /// then unknown (see [`SegmentJournal::cut_unsynced`]): appends refuse
    /// until the journal is reopened.
    broken: Option<String>,
}

/// The journal in segment files under one directory.
#[derive(Debug)]
pub struct SegmentJournal {
    dir: PathBuf,
    segment_bytes: u64,
    state: Mutex<State>,
    /// The spare segment ([`SPARE_SUFFIX`]), shared with the thread that
    /// writes it.
    spare: Arc<Mutex<Spare>>,
    /// This journal's spare file.
    spare_path: PathBuf,
    /// Segments started from a spare (the others were reserved with
    /// `fallocate`).
    spares_taken: std::sync::atomic::AtomicU64,
    /// What a failed sync does (see [`SegmentJournal::cut_unsynced`]).
    after_failed_sync: AfterFailedSync,
    /// Fails the next roll after its file exists (tests only).
    #[cfg(test)]
    fail_roll: std::sync::atomic::AtomicBool,
    /// Fails the next sync, a flush's or a roll's (tests only).
    #[cfg(test)]
    fail_sync: std::sync::atomic::AtomicBool,
}

/// What a failed sync does to the frames written since the last good one.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum AfterFailedSync {
    /// Cut them, and go on (durable mode): they belong to the group whose
    /// sync failed, which no one was told is written, and one thread
    /// appends and syncs.
    #[default]
    Cut,
    /// Refuse every append until the journal is reopened (relaxed mode):
    /// they were answered already and are in the write-behind view, so a
    /// cut would leave the view, and rows written from it, ahead of the
    /// journal; and the write-behind syncs too, beside the writer.
    Refuse,
}

fn io(what: &str, path: &Path, e: std::io::Error) -> StorageError {
    StorageError::Io(format!("{what} {}: {e}", path.display()))
}

fn segment_name(first_seq: u64) -> String {
    format!("{first_seq:020}{SUFFIX}")
}

fn sync_dir(dir: &Path) -> Result<(), StorageError> {
    File::open(dir)
        .and_then(|d| d.sync_all())
        .map_err(|e| io("cannot sync", dir, e))
}

/// Reserves `bytes` of disk for a new segment, which then reads as zeros
/// past its frames. An `fdatasync` after an append into reserved blocks
/// need not also commit a new file size and block map: measured here (a
/// 2 KiB write and an `fdatasync`, 4,000 times, three rounds alternated)
/// 141-148 µs wall and 46-53 µs of CPU per flush, against 186-210 µs and
/// 73-85 µs when the file grows with every append. Where the filesystem
/// cannot reserve, the segment grows as before.
fn preallocate(file: &File, bytes: u64) {
    #[cfg(target_os = "linux")]
    {
        let len = i64::try_from(bytes).unwrap_or(i64::MAX);
        if let Err(e) = nix::fcntl::fallocate(file, nix::fcntl::FallocateFlags::empty(), 0, len) {
            tracing::debug!(error = %e, "journal: segment not preallocated");
        }
    }
    #[cfg(not(target_os = "linux"))]
    let _ = (file, bytes);
}

/// Writes `bytes` of zeros to a new file at `path` (the journal's own
/// spare name) and syncs it.
fn write_spare(path: &Path, bytes: u64) -> std::io::Result<()> {
    let file = OpenOptions::new()
        .write(true)
        .create(true)
        .truncate(true)
        .open(path)?;
    let zeros = vec![0_u8; SPARE_CHUNK];
    let mut at = 0;
    while at < bytes {
        let n = usize::try_from(bytes - at).map_or(SPARE_CHUNK, |left| left.min(SPARE_CHUNK));
        file.write_all_at(&zeros[..n], at)?;
        file.sync_data()?;
        at += n as u64;
        std::thread::sleep(SPARE_PAUSE);
    }
    file.sync_all()
}

/// A segment's frames, read from its start.
struct SegmentRead {
    records: Vec<RecordAt>,
    /// The offset after the last good frame.
    end: u64,
    /// Whether nothing but zeros follows `end` (a preallocated tail, or
    /// nothing at all).
    clean: bool,
}

/// Reads the frames of a segment from its start, up to a frame header of
/// zero length (the zeros of a preallocated tail) or the end of the file;
/// with `tolerate_tail`, a torn or corrupt frame also ends the segment
/// there, otherwise it is an error.
fn read_segment(path: &Path, tolerate_tail: bool) -> Result<SegmentRead, StorageError> {
    let mut bytes = Vec::new();
    File::open(path)
        .and_then(|mut f| f.read_to_end(&mut bytes))
        .map_err(|e| io("cannot read", path, e))?;
    let mut records = Vec::new();
    let mut at = 0_usize;
    let mut previous_last = 0_u64;
    loop {
        let rest = bytes.get(at..).unwrap_or_default();
        if rest.iter().take(4).all(|b| *b == 0) {
            // End of the file, or a zero length: no frame starts here.
            break;
        }
        let frame = parse_frame(&bytes, at).and_then(|(len, record)| {
            let header = read_header(record).ok()?;
            (header.first_seq > previous_last && header.last_seq >= header.first_seq)
                .then_some((len, header))
        });
        match frame {
            Some((len, header)) => {
                records.push(RecordAt {
                    last_seq: header.last_seq,
                    written_at: header.written_at,
                    offset: at as u64,
                    len,
                });
                previous_last = header.last_seq;
                at += FRAME_HEADER + len as usize;
            }
            None if tolerate_tail => break,
            None => return Err(bad_frame(path, at)),
        }
    }
    let clean = bytes.get(at..).unwrap_or_default().iter().all(|b| *b == 0);
    if !clean && !tolerate_tail {
        return Err(bad_frame(path, at));
    }
    Ok(SegmentRead {
        records,
        end: at as u64,
        clean,
    })
}

fn bad_frame(path: &Path, at: usize) -> StorageError {
    StorageError::corrupt(
        "journal segment",
        format!("{}: bad frame at offset {at}", path.display()),
    )
}

/// The record of the frame at `at`, if the frame is whole and its CRC holds.
fn parse_frame(bytes: &[u8], at: usize) -> Option<(u32, &[u8])> {
    let header = bytes.get(at..at + FRAME_HEADER)?;
    let len = u32::from_be_bytes(header[..4].try_into().ok()?);
    let crc = u32::from_be_bytes(header[4..8].try_into().ok()?);
    let start = at + FRAME_HEADER;
    let record = bytes.get(start..start + len as usize)?;
    (crc32fast::hash(record) == crc).then_some((len, record))
}

impl SegmentJournal {
    /// Opens (or creates) the journal in `dir`, cutting a torn tail off its
    /// last segment.
    pub fn open(dir: impl Into<PathBuf>) -> Result<SegmentJournal, StorageError> {
        SegmentJournal::open_sized(dir, SEGMENT_BYTES)
    }

    /// [`SegmentJournal::open`] with segments of `segment_bytes`.
    pub fn open_sized(
        dir: impl Into<PathBuf>,
        segment_bytes: u64,
    ) -> Result<SegmentJournal, StorageError> {
        let dir = dir.into();
        std::fs::create_dir_all(&dir).map_err(|e| io("cannot create", &dir, e))?;
        static OPENED: std::sync::atomic::AtomicU64 = std::sync::atomic::AtomicU64::new(0);
        let spare_path = dir.join(format!(
            "next.{}-{}{SPARE_SUFFIX}",
            std::process::id(),
            OPENED.fetch_add(1, std::sync::atomic::Ordering::Relaxed)
        ));
        let mut segments = Vec::new();
        for entry in std::fs::read_dir(&dir).map_err(|e| io("cannot list", &dir, e))? {
            let entry = entry.map_err(|e| io("cannot list", &dir, e))?;
            let name = entry.file_name();
            if name.to_str().is_some_and(|n| n.ends_with(SPARE_SUFFIX)) {
                // A spare left by an earlier journal may be half written.
                let path = entry.path();
                std::fs::remove_file(&path).map_err(|e| io("cannot remove", &path, e))?;
                continue;
            }
            let Some(first_seq) = name
                .to_str()
                .and_then(|n| n.strip_suffix(SUFFIX))
                .and_then(|n| n.parse::<u64>().ok())
            else {
                continue;
            };
            segments.push(Segment {
                first_seq,
                path: entry.path(),
                records: None,
            });
        }
        segments.sort_by_key(|s| s.first_seq);
        let mut state = State {
            segments,
            active: None,
            active_len: 0,
            active_written: false,
            last_seq: 0,
            synced_len: 0,
            synced_seq: 0,
            frame: Vec::new(),
            broken: None,
        };
        // The last segment that holds a record becomes the active one; an
        // empty last segment (a crash right after a roll) is removed.
        while let Some(path) = state.segments.last().map(|s| s.path.clone()) {
            let SegmentRead {
                records,
                end,
                clean,
            } = read_segment(&path, true)?;
            if records.is_empty() && state.segments.len() > 1 {
                std::fs::remove_file(&path).map_err(|e| io("cannot remove", &path, e))?;
                state.segments.pop();
                continue;
            }
            let file = OpenOptions::new()
                .read(true)
                .write(true)
                .open(&path)
                .map_err(|e| io("cannot open", &path, e))?;
            if !clean {
                // Everything after the last whole frame goes, not only the
                // torn frame: a later frame that reached the disk before a
                // crash was never acknowledged either, and must not turn up
                // behind the frames appended from here on.
                tracing::warn!(
                    segment = %path.display(),
                    at = end,
                    "journal: cutting a torn tail (a write that was never acknowledged)"
                );
                file.set_len(end)
                    .and_then(|()| file.sync_all())
                    .map_err(|e| io("cannot cut", &path, e))?;
                preallocate(&file, segment_bytes);
            }
            state.last_seq = records.last().map_or(0, |r| r.last_seq);
            if let Some(last) = state.segments.last_mut() {
                last.records = Some(Arc::new(records));
            }
            // Frames a killed process wrote may sit in the page cache
            // unsynced: synced here, they are what later cuts go back to.
            file.sync_data().map_err(|e| io("cannot sync", &path, e))?;
            state.active = Some(Arc::new(file));
            state.active_len = end;
            state.synced_len = end;
            state.synced_seq = state.last_seq;
            break;
        }
        Ok(SegmentJournal {
            dir,
            segment_bytes,
            state: Mutex::new(state),
            spare: Arc::new(Mutex::new(Spare::Absent)),
            spare_path,
            spares_taken: std::sync::atomic::AtomicU64::new(0),
            after_failed_sync: AfterFailedSync::default(),
            #[cfg(test)]
            fail_roll: std::sync::atomic::AtomicBool::new(false),
            #[cfg(test)]
            fail_sync: std::sync::atomic::AtomicBool::new(false),
        })
    }

    fn lock(&self) -> MutexGuard<'_, State> {
        lock(&self.state)
    }

    /// Sets what a failed sync does (the default: [`AfterFailedSync::Cut`]).
    pub fn after_failed_sync(mut self, then: AfterFailedSync) -> SegmentJournal {
        self.after_failed_sync = then;
        self
    }

    /// After a failed sync, the frames written since the last good one may
    /// or may not be on disk (the kernel reports the error once and may
    /// drop the pages). With [`AfterFailedSync::Cut`] they go, so that a
    /// change whose writer was told it failed can never turn up later — in
    /// the outbox, or replayed after a restart — and so that a frame lost
    /// in the middle cannot make a restart cut the frames after it; their
    /// sequences stay unused. If the cut fails too, or with
    /// [`AfterFailedSync::Refuse`], the journal refuses appends until it is
    /// reopened.
    fn cut_unsynced(&self, state: &mut State, file: &File) {
        if self.after_failed_sync == AfterFailedSync::Refuse {
            state.broken = Some("a sync failed; reopen the journal".into());
            return;
        }
        let keep = state.synced_len;
        if let Err(e) = file.set_len(keep).and_then(|()| file.sync_data()) {
            state.broken = Some(format!(
                "a sync failed, and cutting the frames after the last synced one failed too: {e}"
            ));
            return;
        }
        if state.active_len > keep {
            tracing::warn!(
                at = keep,
                dropped_after_seq = state.synced_seq,
                "journal: a sync failed; cut the frames written since the last good one"
            );
        }
        state.active_len = keep;
        state.last_seq = state.synced_seq;
        if let Some(records) = state.segments.last_mut().and_then(|s| s.records.as_mut()) {
            Arc::make_mut(records).retain(|r| r.offset < keep);
        }
    }

    /// `fdatasync` (failing once on demand in tests).
    fn sync(&self, file: &File) -> std::io::Result<()> {
        #[cfg(test)]
        if self
            .fail_sync
            .swap(false, std::sync::atomic::Ordering::SeqCst)
        {
            return Err(std::io::Error::other("injected sync failure"));
        }
        file.sync_data()
    }

    /// Syncs the active segment whole before a roll leaves it.
    fn sync_active(&self, state: &mut State) -> Result<(), StorageError> {
        let Some(active) = state.active.clone() else {
            return Ok(());
        };
        if let Err(e) = self.sync(&active) {
            self.cut_unsynced(state, &active);
            return Err(io("cannot sync", &self.dir, e));
        }
        state.synced_len = state.active_len;
        state.synced_seq = state.last_seq;
        Ok(())
    }

    /// Starts a new active segment whose first record is `first_seq`; the
    /// old one must be synced ([`SegmentJournal::sync_active`]).
    fn roll(&self, state: &mut State, first_seq: u64) -> Result<(), StorageError> {
        let path = self.dir.join(segment_name(first_seq));
        let from_spare = self.take_spare(&path);
        let started = OpenOptions::new()
            .read(true)
            .write(true)
            .create(true)
            .truncate(false)
            .open(&path)
            .map_err(|e| io("cannot create", &path, e))
            .and_then(|file| {
                if !from_spare {
                    preallocate(&file, self.segment_bytes);
                }
                // The reservation is durable before any record relies on it.
                file.sync_all().map_err(|e| io("cannot sync", &path, e))?;
                #[cfg(test)]
                if self
                    .fail_roll
                    .swap(false, std::sync::atomic::Ordering::SeqCst)
                {
                    return Err(StorageError::Io("injected roll failure".into()));
                }
                sync_dir(&self.dir)?;
                Ok(file)
            });
        let file = match started {
            Ok(file) => file,
            Err(e) => {
                // The new file must not stay: appends go on in the active
                // segment (a hand-over is not retried at once), and a
                // segment named after their sequences would make a scan
                // from them start past them.
                if path.exists() {
                    let removed = std::fs::remove_file(&path)
                        .map_err(|e| io("cannot remove", &path, e))
                        .and_then(|()| sync_dir(&self.dir));
                    if let Err(removed) = removed {
                        state.broken = Some(format!("{e}; then {removed}"));
                    }
                }
                return Err(e);
            }
        };
        if from_spare {
            self.spares_taken
                .fetch_add(1, std::sync::atomic::Ordering::Relaxed);
        }
        state.segments.push(Segment {
            first_seq,
            path,
            records: Some(Arc::new(Vec::new())),
        });
        state.active = Some(Arc::new(file));
        state.active_len = 0;
        // The old segment was synced above: everything so far is on disk.
        state.synced_len = 0;
        state.synced_seq = state.last_seq;
        state.active_written = from_spare;
        Ok(())
    }

    /// Moves a ready spare to `path`; `false` when there is none (the new
    /// segment is then reserved with `fallocate`).
    fn take_spare(&self, path: &Path) -> bool {
        let mut spare = lock(&self.spare);
        if *spare != Spare::Ready {
            return false;
        }
        *spare = Spare::Absent;
        match std::fs::rename(&self.spare_path, path) {
            Ok(()) => true,
            Err(e) => {
                tracing::warn!(error = %e, "journal: the spare segment could not be used");
                false
            }
        }
    }

    /// Starts writing the spare once the active segment is
    /// [`SPARE_AT_PERCENT`] full (or, if it is a reserved one, holds
    /// [`SPARE_EARLY_BYTES`]), unless one is written or being written.
    fn want_spare(&self, state: &State) {
        let half = self.segment_bytes.saturating_mul(SPARE_AT_PERCENT) / 100;
        let due = if state.active_written {
            half
        } else {
            half.min(SPARE_EARLY_BYTES)
        };
        if state.active_len < due {
            return;
        }
        let mut spare = lock(&self.spare);
        if *spare != Spare::Absent {
            return;
        }
        *spare = Spare::Writing;
        drop(spare);
        let (shared, path, bytes) = (
            Arc::clone(&self.spare),
            self.spare_path.clone(),
            self.segment_bytes,
        );
        let started = std::thread::Builder::new()
            .name("ordercore-spare".into())
            .spawn(move || {
                let written = write_spare(&path, bytes);
                if let Err(e) = &written {
                    tracing::warn!(error = %e, "journal: no spare segment");
                    let _ = std::fs::remove_file(&path);
                }
                *lock(&shared) = if written.is_ok() {
                    Spare::Ready
                } else {
                    Spare::Absent
                };
            });
        if started.is_err() {
            *lock(&self.spare) = Spare::Absent;
        }
    }

    /// Segments started from a spare since the journal was opened.
    pub fn spares_taken(&self) -> u64 {
        self.spares_taken.load(std::sync::atomic::Ordering::Relaxed)
    }

    /// The records of the segment at `path`, reading its frames the first
    /// time; `None` once trimming removed it.
    fn records_of(&self, path: &Path) -> Result<Option<Arc<Vec<RecordAt>>>, StorageError> {
        {
            let state = self.lock();
            let Some(segment) = state.segments.iter().find(|s| s.path == path) else {
                return Ok(None);
            };
            if let Some(records) = &segment.records {
                return Ok(Some(Arc::clone(records)));
            }
        }
        // Only closed segments are read here; they no longer change.
        let records = match read_segment(path, false) {
            Ok(read) => Arc::new(read.records),
            Err(_) if !path.exists() => return Ok(None),
            Err(e) => return Err(e),
        };
        let mut state = self.lock();
        if let Some(segment) = state.segments.iter_mut().find(|s| s.path == path) {
            segment.records = Some(Arc::clone(&records));
        }
        Ok(Some(records))
    }
}

impl Journal for SegmentJournal {
    fn append(&self, expected_last: u64, record: &EncodedRecord) -> Result<(), StorageError> {
        let mut state = self.lock();
        if let Some(why) = &state.broken {
            return Err(StorageError::Unavailable(format!(
                "journal append refused after a failed write: {why}"
            )));
        }
        if record.first_seq <= expected_last || record.first_seq <= state.last_seq {
            return Err(StorageError::Unavailable(format!(
                "journal append at {} does not follow {}",
                record.first_seq,
                expected_last.max(state.last_seq)
            )));
        }
        let len = u32::try_from(record.bytes.len())
            .map_err(|_| StorageError::corrupt("journal record", "larger than 4 GiB"))?;
        let frame_len = (FRAME_HEADER + record.bytes.len()) as u64;
        let written_at = read_header(&record.bytes)?.written_at;
        let full = state.active_len > 0 && state.active_len + frame_len > self.segment_bytes;
        let must_roll = state.active.is_none() || full;
        let hand_over = !state.active_written && *lock(&self.spare) == Spare::Ready;
        if must_roll || (hand_over && state.active_len > 0) {
            // A failed sync fails the group, hand-over or not.
            self.sync_active(&mut state)?;
            if let Err(e) = self.roll(&mut state, record.first_seq) {
                // A hand-over is only a saving: the active segment, synced
                // whole just now, still has room for the record.
                if must_roll || state.broken.is_some() {
                    return Err(e);
                }
                tracing::warn!(error = %e, "journal: cannot hand over to the spare segment; appending to the active one");
            }
        }
        let mut frame = std::mem::take(&mut state.frame);
        frame.clear();
        frame.extend_from_slice(&len.to_be_bytes());
        frame.extend_from_slice(&crc32fast::hash(&record.bytes).to_be_bytes());
        frame.extend_from_slice(&record.bytes);
        let Some(file) = state.active.clone() else {
            return Err(StorageError::Unavailable(
                "no active journal segment".into(),
            ));
        };
        let written = file.write_all_at(&frame, state.active_len);
        state.frame = frame;
        if let Err(e) = written {
            // Put the end back where the last whole frame ended, so the
            // next append does not follow a torn one (the segment grows
            // from there on, without its reservation).
            let cut = file.set_len(state.active_len);
            if let Err(cut) = cut {
                state.broken = Some(format!("{e}; the cut failed too: {cut}"));
            }
            return Err(io("cannot append to", &self.dir, e));
        }
        let offset = state.active_len;
        state.active_len += frame_len;
        state.last_seq = record.last_seq;
        self.want_spare(&state);
        if let Some(segment) = state.segments.last_mut() {
            let records = segment.records.get_or_insert_with(Default::default);
            Arc::make_mut(records).push(RecordAt {
                last_seq: record.last_seq,
                written_at,
                offset,
                len,
            });
        }
        Ok(())
    }

    fn flush(&self) -> Result<(), StorageError> {
        let (file, broken, len, seq) = {
            let state = self.lock();
            (
                state.active.clone(),
                state.broken.clone(),
                state.active_len,
                state.last_seq,
            )
        };
        if let Some(why) = broken {
            return Err(StorageError::Unavailable(why));
        }
        let Some(file) = file else {
            return Ok(());
        };
        let synced = self.sync(&file);
        let mut state = self.lock();
        // A roll since syncs the old segment itself.
        let same = state.active.as_ref().is_some_and(|a| Arc::ptr_eq(a, &file));
        match synced {
            Ok(()) => {
                if same && len >= state.synced_len {
                    state.synced_len = len;
                    state.synced_seq = seq;
                }
                Ok(())
            }
            Err(e) => {
                if same {
                    self.cut_unsynced(&mut state, &file);
                } else {
                    // A roll synced the segment meanwhile, maybe only
                    // because this sync took its error: nothing is known.
                    state.broken = Some("a sync failed across a roll; reopen the journal".into());
                }
                Err(io("cannot sync", &self.dir, e))
            }
        }
    }

    fn last_seq(&self) -> Result<u64, StorageError> {
        Ok(self.lock().last_seq)
    }

    fn first_seq(&self) -> Result<u64, StorageError> {
        // Segments are named by their first record's sequence.
        Ok(self.lock().segments.first().map_or(0, |s| s.first_seq))
    }

    fn scan(&self, after: u64, f: &mut dyn FnMut(Unit) -> bool) -> Result<(), StorageError> {
        let start = after.saturating_add(1);
        // The segments from the one holding `start` (the last that begins
        // at or before it), by path: trimming may remove the first ones
        // while this reads.
        let paths: Vec<PathBuf> = {
            let state = self.lock();
            let first = state
                .segments
                .iter()
                .rposition(|s| s.first_seq <= start)
                .unwrap_or(0);
            state.segments[first..]
                .iter()
                .map(|s| s.path.clone())
                .collect()
        };
        for path in &paths {
            let Some(records) = self.records_of(path)? else {
                continue; // trimmed meanwhile
            };
            let Some(from) = records.iter().position(|r| r.last_seq >= start) else {
                continue;
            };
            let mut file = match File::open(path) {
                Ok(file) => file,
                Err(e) if e.kind() == std::io::ErrorKind::NotFound => continue,
                Err(e) => return Err(io("cannot read", path, e)),
            };
            let mut buf = Vec::new();
            for at in &records[from..] {
                buf.resize(at.len as usize, 0);
                file.seek(SeekFrom::Start(at.offset + FRAME_HEADER as u64))
                    .and_then(|_| file.read_exact(&mut buf))
                    .map_err(|e| io("cannot read", path, e))?;
                let (_, units) = decode_record(&buf)?;
                if !feed(units, after, f) {
                    return Ok(());
                }
            }
        }
        Ok(())
    }

    fn trim(&self, through: u64, written_before: Timestamp) -> Result<usize, StorageError> {
        let mut removed = 0;
        loop {
            // Never the active segment: appends go on there. Only the
            // write-behind trims, so the first segment stays first.
            let first = {
                let state = self.lock();
                if state.segments.len() < 2 {
                    return Ok(removed);
                }
                state.segments[0].path.clone()
            };
            let Some(records) = self.records_of(&first)? else {
                return Ok(removed);
            };
            let done = records
                .last()
                .is_none_or(|r| r.last_seq <= through && r.written_at < written_before);
            if !done {
                return Ok(removed);
            }
            let path = {
                let mut state = self.lock();
                if state.segments.len() < 2 {
                    return Ok(removed);
                }
                state.segments.remove(0).path
            };
            std::fs::remove_file(&path).map_err(|e| io("cannot remove", &path, e))?;
            removed += records.len();
        }
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]

    use super::*;
    use crate::journal::{encode_unit, RecordBuilder, SledJournal};
    use ordercore_domain::{testkit, Actor, Event, EventBody, OrderId};

    /// A record of `units` one-event units from sequence `first`, written at
    /// `at` ms.
    fn record(first: u64, units: u64, at: i64) -> EncodedRecord {
        let mut builder = RecordBuilder::new();
        for seq in first..first + units {
            let event = Event {
                seq,
                at: Timestamp::from_millis(at),
                actor: Actor::system(),
                request_id: None,
                reason: None,
                version: 1,
                body: EventBody::OrderNoteAdded {
                    order_id: OrderId::generate(testkit::t0(), 1, 1, &testkit::user("u1")).unwrap(),
                    text: format!("note {seq}"),
                },
            };
            let unit = Unit::new(0, vec![event]);
            builder.push(seq, seq, &encode_unit(&unit).unwrap());
        }
        builder.finish(Timestamp::from_millis(at))
    }

    fn seqs(journal: &SegmentJournal, after: u64) -> Vec<u64> {
        let mut out = Vec::new();
        journal
            .scan(after, &mut |unit| {
                out.extend(unit.events.iter().map(|e| e.seq));
                true
            })
            .unwrap();
        out
    }

    /// A journal of 600-byte segments holding sequences 1..=60: 20 records
    /// of 3 units, record `r` written at `r * step` ms.
    fn filled(dir: &Path, step: i64) -> SegmentJournal {
        let journal = SegmentJournal::open_sized(dir, 600).unwrap();
        let mut last = 0;
        for r in 0..20 {
            let rec = record(last + 1, 3, r * step);
            journal.append(last, &rec).unwrap();
            last = rec.last_seq;
        }
        journal
    }

    fn segment_files(dir: &Path) -> Vec<PathBuf> {
        let mut files: Vec<_> = std::fs::read_dir(dir)
            .unwrap()
            .map(|e| e.unwrap().path())
            .filter(|p| p.extension().is_some_and(|x| x == "seg"))
            .collect();
        files.sort();
        files
    }

    #[test]
    fn records_survive_reopening_across_segments_and_scan_from_any_sequence() {
        let dir = tempfile::tempdir().unwrap();
        let journal = filled(dir.path(), 1);
        journal.flush().unwrap();
        assert!(segment_files(dir.path()).len() > 2, "several segments");
        drop(journal);

        let journal = SegmentJournal::open_sized(dir.path(), 600).unwrap();
        assert_eq!(journal.last_seq().unwrap(), 60);
        assert_eq!(seqs(&journal, 0), (1..=60).collect::<Vec<_>>());
        // From the middle of a record, and of a segment.
        assert_eq!(seqs(&journal, 31), (32..=60).collect::<Vec<_>>());
        assert!(seqs(&journal, 60).is_empty());
        // A stopped scan stops.
        let mut seen = 0;
        journal
            .scan(10, &mut |_| {
                seen += 1;
                seen < 4
            })
            .unwrap();
        assert_eq!(seen, 4);
    }

    #[test]
    fn an_append_that_does_not_follow_is_refused() {
        let dir = tempfile::tempdir().unwrap();
        let journal = SegmentJournal::open(dir.path()).unwrap();
        journal.append(0, &record(1, 2, 0)).unwrap();
        assert!(journal.append(0, &record(2, 1, 0)).is_err(), "overlaps");
        assert!(
            journal.append(5, &record(3, 1, 0)).is_err(),
            "stale expectation"
        );
        journal.append(2, &record(3, 1, 0)).unwrap();
        assert_eq!(journal.last_seq().unwrap(), 3);
    }

    /// The offset after the last whole frame of the segment at `path`.
    fn data_end(path: &Path) -> usize {
        usize::try_from(read_segment(path, true).unwrap().end).unwrap()
    }

    /// A crash mid-write leaves a torn or corrupt frame at the end: it was
    /// never acknowledged, so opening cuts it off and appends go on.
    #[test]
    fn a_torn_or_corrupt_tail_is_cut_on_open() {
        for damage in ["torn", "corrupt", "garbage"] {
            let dir = tempfile::tempdir().unwrap();
            let journal = SegmentJournal::open(dir.path()).unwrap();
            journal.append(0, &record(1, 2, 0)).unwrap();
            journal.append(2, &record(3, 2, 0)).unwrap();
            journal.flush().unwrap();
            drop(journal);
            let path = segment_files(dir.path()).pop().unwrap();
            let end = data_end(&path);
            let mut bytes = std::fs::read(&path).unwrap();
            assert!(
                bytes.len() > end,
                "the segment is preallocated past its frames"
            );
            match damage {
                // The last frame only half written: its last bytes never
                // reached the disk.
                "torn" => bytes[end - 7..end].fill(0),
                // The last frame's bytes changed under its CRC.
                "corrupt" => bytes[end - 1] ^= 0xff,
                // Bytes after the last frame that are no frame at all.
                _ => bytes[end..end + 7].copy_from_slice(&[0xde, 0xad, 0xbe, 0xef, 1, 2, 3]),
            }
            std::fs::write(&path, &bytes).unwrap();

            let journal = SegmentJournal::open(dir.path()).unwrap();
            let expected: Vec<u64> = if damage == "garbage" {
                (1..=4).collect()
            } else {
                (1..=2).collect()
            };
            assert_eq!(seqs(&journal, 0), expected, "{damage}");
            let last = journal.last_seq().unwrap();
            assert_eq!(last, *expected.last().unwrap(), "{damage}");
            if damage == "garbage" {
                assert_eq!(data_end(&path), end, "the garbage is gone");
                assert!(read_segment(&path, false).unwrap().clean);
            }
            journal.append(last, &record(last + 1, 1, 0)).unwrap();
            journal.flush().unwrap();
            drop(journal);
            let journal = SegmentJournal::open(dir.path()).unwrap();
            assert_eq!(seqs(&journal, 0).last(), Some(&(last + 1)), "{damage}");
        }
    }

    /// Before a crash, the page of a later frame can reach the disk while
    /// an earlier one's does not: neither was acknowledged. Opening cuts
    /// both, so the later one never turns up behind new appends, even when
    /// a new frame ends exactly where it begins.
    #[test]
    fn a_frame_past_a_torn_one_is_never_read_back() {
        let dir = tempfile::tempdir().unwrap();
        let journal = SegmentJournal::open(dir.path()).unwrap();
        journal.append(0, &record(1, 1, 0)).unwrap();
        journal.flush().unwrap();
        let path = segment_files(dir.path()).pop().unwrap();
        let first_end = data_end(&path);
        // Sequences 2 and 3, in two frames of the same size as the
        // replacement appended below.
        journal.append(1, &record(2, 1, 0)).unwrap();
        journal.flush().unwrap();
        let second_end = data_end(&path);
        journal.append(2, &record(3, 1, 0)).unwrap();
        journal.flush().unwrap();
        drop(journal);
        let mut bytes = std::fs::read(&path).unwrap();
        // The first of the two never reached the disk.
        bytes[first_end..second_end].fill(0);
        std::fs::write(&path, &bytes).unwrap();

        let journal = SegmentJournal::open(dir.path()).unwrap();
        assert_eq!(seqs(&journal, 0), vec![1]);
        // A new unit takes sequence 2 again, in a frame just as long.
        journal.append(1, &record(2, 1, 0)).unwrap();
        assert_eq!(
            data_end(&path),
            second_end,
            "the new frame ends where the old third began"
        );
        journal.flush().unwrap();
        drop(journal);
        let journal = SegmentJournal::open(dir.path()).unwrap();
        assert_eq!(
            seqs(&journal, 0),
            vec![1, 2],
            "sequence 3 was never acknowledged"
        );
        assert_eq!(journal.last_seq().unwrap(), 2);
    }

    /// A segment written before segments were preallocated (its file ends
    /// with its last frame) opens, and appends go on in it.
    #[test]
    fn a_segment_without_a_preallocated_tail_still_opens() {
        let dir = tempfile::tempdir().unwrap();
        let journal = SegmentJournal::open(dir.path()).unwrap();
        journal.append(0, &record(1, 2, 0)).unwrap();
        journal.flush().unwrap();
        drop(journal);
        let path = segment_files(dir.path()).pop().unwrap();
        let file = OpenOptions::new().write(true).open(&path).unwrap();
        file.set_len(data_end(&path) as u64).unwrap();
        drop(file);
        let journal = SegmentJournal::open(dir.path()).unwrap();
        assert_eq!(seqs(&journal, 0), vec![1, 2]);
        journal.append(2, &record(3, 1, 0)).unwrap();
        journal.flush().unwrap();
        drop(journal);
        let journal = SegmentJournal::open(dir.path()).unwrap();
        assert_eq!(seqs(&journal, 0), vec![1, 2, 3]);
    }

    #[test]
    fn trim_removes_whole_closed_segments_that_are_checkpointed_and_old() {
        let dir = tempfile::tempdir().unwrap();
        let journal = filled(dir.path(), 1_000);
        let before = segment_files(dir.path()).len();
        // Nothing is old enough.
        assert_eq!(journal.trim(60, Timestamp::from_millis(0)).unwrap(), 0);
        // Nothing is checkpointed.
        assert_eq!(
            journal.trim(0, Timestamp::from_millis(i64::MAX)).unwrap(),
            0
        );
        // Up to sequence 30: only segments that end at or before it go.
        let removed = journal.trim(30, Timestamp::from_millis(i64::MAX)).unwrap();
        assert!(removed > 0 && removed <= 10, "{removed} records");
        let after = segment_files(dir.path()).len();
        assert!(after < before);
        let kept = seqs(&journal, 0);
        assert!(kept[0] > 1 && kept[0] <= 31, "{kept:?}");
        assert_eq!(kept.last(), Some(&60));
        // Everything: the active segment stays.
        journal.trim(60, Timestamp::from_millis(i64::MAX)).unwrap();
        assert_eq!(segment_files(dir.path()).len(), 1);
        assert_eq!(journal.last_seq().unwrap(), 60);
        journal.append(60, &record(61, 1, 0)).unwrap();
        drop(journal);
        let journal = SegmentJournal::open_sized(dir.path(), 600).unwrap();
        assert_eq!(journal.last_seq().unwrap(), 61);
    }

    /// A scan that meets a trim (an event consumer reading while the
    /// write-behind trims) goes on with what is left, in order, without
    /// reading a segment for another.
    #[test]
    fn a_scan_goes_on_past_segments_trimmed_under_it() {
        let dir = tempfile::tempdir().unwrap();
        let journal = filled(dir.path(), 1);
        let mut seen = Vec::new();
        let mut trimmed = 0;
        journal
            .scan(0, &mut |unit| {
                if seen.is_empty() {
                    trimmed = journal.trim(59, Timestamp::from_millis(i64::MAX)).unwrap();
                }
                seen.extend(unit.events.iter().map(|e| e.seq));
                true
            })
            .unwrap();
        assert!(trimmed > 0, "the trim removed segments during the scan");
        assert!(seen.windows(2).all(|w| w[0] < w[1]), "{seen:?}");
        assert_eq!(seen.last(), Some(&60));
        assert!(seen.len() < 60, "the trimmed segments were skipped");
    }

    /// A store written before segment files had its journal in sled: its
    /// records move over when the store opens, and nothing is lost.
    #[test]
    fn a_sled_journal_moves_into_segments() {
        let dir = tempfile::tempdir().unwrap();
        let db = sled::Config::new()
            .path(dir.path().join("db"))
            .open()
            .unwrap();
        let old = SledJournal::open(&db).unwrap();
        old.append(0, &record(1, 3, 0)).unwrap();
        old.append(3, &record(4, 2, 0)).unwrap();
        let journal = SegmentJournal::open(dir.path().join("journal")).unwrap();
        assert_eq!(old.move_into(&journal).unwrap(), 2);
        assert_eq!(seqs(&journal, 0), vec![1, 2, 3, 4, 5]);
        assert_eq!(old.last_seq().unwrap(), 0, "moved out of sled");
        assert_eq!(old.move_into(&journal).unwrap(), 0, "once");
    }

    /// Waits (bounded) for the spare's writer thread.
    fn spare_ready(journal: &SegmentJournal) -> bool {
        for _ in 0..10_000 {
            if *lock(&journal.spare) == Spare::Ready {
                return true;
            }
            std::thread::sleep(std::time::Duration::from_millis(1));
        }
        false
    }

    #[test]
    fn a_roll_takes_the_spare_written_ahead_and_its_frames_read_back() {
        let dir = tempfile::tempdir().unwrap();
        let bytes = 4_096;
        let journal = SegmentJournal::open_sized(dir.path(), bytes).unwrap();
        let spare = journal.spare_path.clone();
        let mut last = 0;
        let mut append = |journal: &SegmentJournal| {
            let rec = record(last + 1, 2, 0);
            journal.append(last, &rec).unwrap();
            last = rec.last_seq;
        };
        // Below half of the first segment: no spare.
        append(&journal);
        assert_eq!(*lock(&journal.spare), Spare::Absent);
        assert!(!spare.exists());
        while journal.lock().active_len * 100 < bytes * SPARE_AT_PERCENT {
            append(&journal);
        }
        assert!(spare_ready(&journal), "the spare was written");
        assert_eq!(std::fs::metadata(&spare).unwrap().len(), bytes);
        let before = segment_files(dir.path()).len();
        while segment_files(dir.path()).len() == before {
            append(&journal);
        }
        assert_eq!(journal.spares_taken(), 1);
        let rolled = segment_files(dir.path()).pop().unwrap();
        assert_eq!(std::fs::metadata(&rolled).unwrap().len(), bytes);
        assert!(!spare.exists(), "renamed into place");
        // Frames in the spare are followed by its zeros only: it reads as
        // a clean segment, and everything reads back, before and after
        // reopening.
        assert!(read_segment(&rolled, false).unwrap().clean);
        let all: Vec<u64> = (1..=last).collect();
        assert_eq!(seqs(&journal, 0), all);
        drop(journal);
        let journal = SegmentJournal::open_sized(dir.path(), bytes).unwrap();
        assert_eq!(seqs(&journal, 0), all);
        assert_eq!(std::fs::metadata(&rolled).unwrap().len(), bytes, "not cut");
        journal.append(last, &record(last + 1, 1, 0)).unwrap();
        assert_eq!(journal.last_seq().unwrap(), last + 1);
    }

    #[test]
    fn a_spare_left_by_an_earlier_journal_is_removed_and_never_used() {
        let dir = tempfile::tempdir().unwrap();
        let bytes = 4_096;
        let journal = SegmentJournal::open_sized(dir.path(), bytes).unwrap();
        journal.append(0, &record(1, 2, 0)).unwrap();
        let earlier = journal.spare_path.clone();
        drop(journal);
        // Half written when that journal stopped: not zeros.
        std::fs::write(&earlier, vec![0xA5_u8; 1_000]).unwrap();
        let journal = SegmentJournal::open_sized(dir.path(), bytes).unwrap();
        assert!(!earlier.exists());
        assert_ne!(journal.spare_path, earlier, "each journal names its own");
        // The segments that follow read back whole and clean.
        let mut last = 2;
        while journal.spares_taken() < 2 {
            let rec = record(last + 1, 2, 0);
            journal.append(last, &rec).unwrap();
            last = rec.last_seq;
            if *lock(&journal.spare) == Spare::Writing {
                assert!(spare_ready(&journal));
            }
        }
        let files = segment_files(dir.path());
        for closed in &files[..files.len() - 1] {
            assert!(read_segment(closed, false).unwrap().clean, "{closed:?}");
        }
        assert_eq!(seqs(&journal, 0), (1..=last).collect::<Vec<_>>());
    }

    #[test]
    fn a_reserved_segment_hands_over_to_a_written_one_early() {
        let dir = tempfile::tempdir().unwrap();
        let bytes = 8 * SPARE_EARLY_BYTES;
        let journal = SegmentJournal::open_sized(dir.path(), bytes).unwrap();
        let mut last = 0;
        let mut append = |journal: &SegmentJournal| {
            let rec = record(last + 1, 20, 0);
            journal.append(last, &rec).unwrap();
            last = rec.last_seq;
        };
        // The first segment is a reserved one: its spare comes at
        // SPARE_EARLY_BYTES, long before half of it.
        while journal.lock().active_len < SPARE_EARLY_BYTES {
            assert_eq!(*lock(&journal.spare), Spare::Absent);
            append(&journal);
        }
        append(&journal);
        assert!(spare_ready(&journal), "the spare was written");
        append(&journal);
        assert_eq!(journal.spares_taken(), 1, "handed over");
        let files = segment_files(dir.path());
        assert_eq!(files.len(), 2);
        assert!(journal.lock().active_written);
        // On a written segment the spare waits for half of it.
        while journal.lock().active_len < 2 * SPARE_EARLY_BYTES {
            append(&journal);
        }
        assert_eq!(*lock(&journal.spare), Spare::Absent);
        assert_eq!(segment_files(dir.path()).len(), 2, "no roll before full");
        let all: Vec<u64> = (1..=last).collect();
        assert_eq!(seqs(&journal, 0), all);
        drop(journal);
        let journal = SegmentJournal::open_sized(dir.path(), bytes).unwrap();
        assert_eq!(seqs(&journal, 0), all);
    }

    #[test]
    fn a_failed_sync_cuts_the_frames_written_since_the_last_good_one() {
        let dir = tempfile::tempdir().unwrap();
        let journal = SegmentJournal::open(dir.path()).unwrap();
        // Appends a record of two units after `last`; answers its last.
        let append = |journal: &SegmentJournal, last: u64| {
            let rec = record(last + 1, 2, 0);
            journal.append(last, &rec).unwrap();
            rec.last_seq
        };
        let mut last = 0;
        for _ in 0..3 {
            last = append(&journal, last);
        }
        journal.flush().unwrap();
        let synced = last;
        // Two more records, then their sync fails: they go.
        let mut unsynced = last;
        for _ in 0..2 {
            unsynced = append(&journal, unsynced);
        }
        journal
            .fail_sync
            .store(true, std::sync::atomic::Ordering::SeqCst);
        assert!(journal.flush().is_err());
        assert_eq!(journal.last_seq().unwrap(), synced);
        assert_eq!(seqs(&journal, 0), (1..=synced).collect::<Vec<_>>());
        // The writer goes on after its own last good record; the failed
        // sequences stay unused.
        let after = append(&journal, unsynced);
        journal.flush().unwrap();
        let expected: Vec<u64> = (1..=synced).chain(unsynced + 1..=after).collect();
        assert_eq!(seqs(&journal, 0), expected);
        drop(journal);
        let journal = SegmentJournal::open(dir.path()).unwrap();
        assert_eq!(seqs(&journal, 0), expected);
        assert_eq!(journal.last_seq().unwrap(), after);
    }

    #[test]
    fn a_relaxed_journal_refuses_appends_after_a_failed_sync_instead_of_cutting() {
        let dir = tempfile::tempdir().unwrap();
        let journal = SegmentJournal::open(dir.path())
            .unwrap()
            .after_failed_sync(AfterFailedSync::Refuse);
        let first = record(1, 2, 0);
        journal.append(0, &first).unwrap();
        journal.flush().unwrap();
        let second = record(3, 2, 0);
        journal.append(2, &second).unwrap();
        journal
            .fail_sync
            .store(true, std::sync::atomic::Ordering::SeqCst);
        assert!(journal.flush().is_err());
        // Nothing cut: the frames were answered already.
        assert_eq!(journal.last_seq().unwrap(), 4);
        assert!(journal.append(4, &record(5, 1, 0)).is_err());
        assert!(journal.flush().is_err());
        drop(journal);
        let journal = SegmentJournal::open(dir.path()).unwrap();
        assert_eq!(seqs(&journal, 0), vec![1, 2, 3, 4]);
        journal.append(4, &record(5, 1, 0)).unwrap();
    }

    #[test]
    fn a_hand_over_whose_sync_fails_fails_its_record_and_cuts_the_unsynced() {
        let dir = tempfile::tempdir().unwrap();
        let bytes = 8 * SPARE_EARLY_BYTES;
        let journal = SegmentJournal::open_sized(dir.path(), bytes).unwrap();
        let mut last = 0;
        while journal.lock().active_len <= SPARE_EARLY_BYTES {
            let rec = record(last + 1, 20, 0);
            journal.append(last, &rec).unwrap();
            last = rec.last_seq;
        }
        journal.flush().unwrap();
        let synced = last;
        assert!(spare_ready(&journal));
        journal
            .fail_sync
            .store(true, std::sync::atomic::Ordering::SeqCst);
        let rec = record(last + 1, 20, 0);
        assert!(
            journal.append(last, &rec).is_err(),
            "no fallback after a failed sync"
        );
        assert_eq!(journal.last_seq().unwrap(), synced);
        assert_eq!(segment_files(dir.path()).len(), 1);
        // The next record goes on (after the failed one's sequences).
        let next = record(rec.last_seq + 1, 1, 0);
        journal.append(synced, &next).unwrap();
        journal.flush().unwrap();
        let expected: Vec<u64> = (1..=synced).chain([next.first_seq]).collect();
        assert_eq!(seqs(&journal, 0), expected);
    }

    #[test]
    fn a_failed_hand_over_appends_to_the_active_segment_and_leaves_no_file_behind() {
        let dir = tempfile::tempdir().unwrap();
        let bytes = 8 * SPARE_EARLY_BYTES;
        let journal = SegmentJournal::open_sized(dir.path(), bytes).unwrap();
        fn append(journal: &SegmentJournal, last: &mut u64) -> Result<(), StorageError> {
            let rec = record(*last + 1, 20, 0);
            journal.append(*last, &rec)?;
            *last = rec.last_seq;
            Ok(())
        }
        let mut last = 0;
        while journal.lock().active_len <= SPARE_EARLY_BYTES {
            append(&journal, &mut last).unwrap();
        }
        assert!(spare_ready(&journal));
        journal
            .fail_roll
            .store(true, std::sync::atomic::Ordering::SeqCst);
        let failed_at = last + 1;
        // The hand-over fails; the record goes to the active segment.
        append(&journal, &mut last).unwrap();
        assert!(
            !journal.fail_roll.load(std::sync::atomic::Ordering::SeqCst),
            "the hand-over was tried"
        );
        assert_eq!(segment_files(dir.path()).len(), 1, "its file is gone");
        // Appends go on in the reserved segment, and a scan from any of
        // them finds them, also after reopening.
        for _ in 0..10 {
            append(&journal, &mut last).unwrap();
        }
        assert_eq!(
            seqs(&journal, failed_at - 1),
            (failed_at..=last).collect::<Vec<_>>()
        );
        drop(journal);
        let journal = SegmentJournal::open_sized(dir.path(), bytes).unwrap();
        assert_eq!(
            seqs(&journal, failed_at - 1),
            (failed_at..=last).collect::<Vec<_>>()
        );
    }
}
