//! The WAL's errors: each names the file or folder involved, and the offset where it read
//! something wrong.

use std::io;
use std::path::{Path, PathBuf};

use super::EncodeError;
use crate::disk::IoError;

/// Errors of the WAL. Each names the file or directory involved.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// An I/O operation (other than a sync) failed.
    #[error(transparent)]
    Io(#[from] IoError),
    /// The WAL holds damage that is not an unsynced tail (see `replay.rs`): a sync covered
    /// it, or no crash can write it. Nothing was modified.
    #[error("{path} is corrupt at offset {offset}: {reason}")]
    Corrupt {
        /// The segment file.
        path: PathBuf,
        /// Byte offset of the bad record in that file.
        offset: u64,
        /// What is wrong.
        reason: String,
    },
    /// Segments are missing between two that are there (their sequence numbers skip): the
    /// records they held, entries among them, were lost with them. Not damage to a file that
    /// is there, so no file and offset to name. Nothing was modified.
    #[error(
        "{} lacks the WAL {}, between {} and {}: the entries {} held were lost with {}",
        dir.display(),
        sequences(*first, *last),
        file_name(before),
        file_name(after),
        if first == last { "it" } else { "they" },
        if first == last { "it" } else { "them" }
    )]
    MissingSegments {
        /// The WAL directory.
        dir: PathBuf,
        /// The segment before the gap.
        before: PathBuf,
        /// The segment after the gap.
        after: PathBuf,
        /// Sequence number of the first missing segment.
        first: u64,
        /// Sequence number of the last missing segment (`first` when one is missing).
        last: u64,
    },
    /// A whole record (its checksum holds) of a type this build does not know: a newer build
    /// wrote the WAL. Not damage: that build reads it. No record is changed for it (an
    /// unfinished rotation found on the way is finished first, as on any open).
    #[error(
        "written by a newer build: record type {record_type} at {path} offset {offset}, which \
         this build does not know (its checksum holds: it is not damage){unread}; start this \
         node with that build (or a newer one)"
    )]
    NewerBuild {
        /// The segment file.
        path: PathBuf,
        /// Byte offset of the record in that file.
        offset: u64,
        /// Its type.
        record_type: u8,
        /// The newer segments a scan (`dump`) left unread after it, said as a clause that
        /// follows the place ("; reading stopped there, ..."), before the advice, whose
        /// "there" would otherwise point back past it (review 114 N2); or nothing: a reader of
        /// `dump` would otherwise take the place it stopped at for the end of the log. Empty
        /// from a start, whose remedy does not depend on them.
        unread: String,
    },
    /// `fsync` failed. Data written since the last successful sync may be lost even if a retry
    /// succeeds, so the node must stop; the WAL refuses any further call.
    #[error(
        "sync of {path} failed: {source}; recently written WAL data may not be on disk, \
         so the node must stop and restart from what the disk holds"
    )]
    SyncFailed {
        /// The file or directory whose sync failed.
        path: PathBuf,
        /// The underlying error.
        source: io::Error,
    },
    /// A call after a failed sync or write.
    #[error(
        "the WAL is unusable after a failed write or sync of {path}; \
         the node must restart from what the disk holds"
    )]
    Poisoned {
        /// The file or directory whose write or sync failed.
        path: PathBuf,
    },
    /// Entries between a snapshot and the log are missing, or the log has a hole.
    #[error(
        "WAL in {dir} lacks entry {missing} but holds entry {next}: entries were lost \
         (released too early, or a segment was deleted)"
    )]
    MissingEntries {
        /// The WAL directory.
        dir: PathBuf,
        /// The first missing index.
        missing: u64,
        /// The next index the WAL does hold.
        next: u64,
    },
    /// [`super::Wal::open`] found no segment.
    #[error("no WAL segment (*.wal) in {dir}")]
    NotFound {
        /// The directory.
        dir: PathBuf,
    },
    /// [`super::Wal::create`] found segments already there.
    #[error("a WAL already exists in {dir}")]
    AlreadyExists {
        /// The directory.
        dir: PathBuf,
    },
    /// A record could not be encoded (nothing was written).
    #[error("cannot write to {path}: {source}")]
    Encode {
        /// The segment it was meant for.
        path: PathBuf,
        /// Why.
        source: EncodeError,
    },
}

/// The missing segments of [`Error::MissingSegments`], said as a person counts them: both
/// ends included.
fn sequences(first: u64, last: u64) -> String {
    if first == last {
        format!("segment with sequence {first}")
    } else {
        format!("segments with sequences {first} to {last}")
    }
}

/// A segment's file name: the error names its folder once.
fn file_name(path: &Path) -> std::borrow::Cow<'_, str> {
    path.file_name()
        .map_or_else(|| path.to_string_lossy(), |n| n.to_string_lossy())
}

impl From<crate::fsutil::Error> for Error {
    fn from(e: crate::fsutil::Error) -> Self {
        Error::Io(e.into_io())
    }
}
