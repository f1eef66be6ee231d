//! Reading the WAL back: scan the segments in order, rebuild raft's state, and find a torn
//! tail to repair.
//!
//! Replay is read-only. It returns what it found plus, at most, one [`TornTail`] (a place in
//! the last segment where a crash cut an append short); `Wal::open` truncates it only after
//! the whole replay succeeded. Any other damage is [`Error::Corrupt`] with the file and offset,
//! and then nothing on disk has been touched.
//!
//! The torn-tail rule: the first bad record of the *last* segment is a torn tail only if it
//! could be a crash artifact (short, zero, or failing its checksum) and no valid record exists
//! anywhere after it in that file. A crash only damages the final, unsynced write; an intact
//! record after the damage proves it is something else, and cutting there would throw away
//! acknowledged data. Earlier segments were synced before the next one was created, so a bad
//! record there is always corruption.

use std::fs;
use std::path::{Path, PathBuf};

use super::record::{self, Record};
use super::segment::{Segment, list_segments};
use super::{Entry, Error, HardState, Metadata, SnapshotMetadata};

/// A torn record at the end of the last segment, to be cut away.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct TornTail {
    /// The last segment.
    pub path: PathBuf,
    /// Offset of the torn record: the file's new length.
    pub offset: u64,
    /// The file's length before repair.
    pub file_len: u64,
    /// What was wrong with the record.
    pub reason: String,
}

/// Everything a replay found.
#[derive(Debug)]
pub struct Replayed {
    /// The metadata record of the first segment.
    pub metadata: Metadata,
    /// The last hard state (default if none).
    pub hard_state: HardState,
    /// Snapshot markers, oldest first, without the repeats that segment headers add.
    pub markers: Vec<SnapshotMetadata>,
    /// Entries, strictly increasing by index, overwrites resolved. There may be gaps where a
    /// snapshot from the leader replaced the log.
    pub entries: Vec<Entry>,
    /// The segments, in order, with their lengths as read.
    pub segments: Vec<Segment>,
    /// A torn tail of the last segment, if any (the segment's `len` still includes it).
    pub torn: Option<TornTail>,
}

fn read_segment(seg: &Segment) -> Result<Vec<u8>, Error> {
    fs::read(&seg.path).map_err(|source| Error::Io {
        path: seg.path.clone(),
        source,
    })
}

fn corrupt(path: &Path, offset: usize, reason: impl Into<String>) -> Error {
    Error::Corrupt {
        path: path.to_path_buf(),
        offset: offset as u64,
        reason: reason.into(),
    }
}

/// State rebuilt record by record.
#[derive(Default)]
struct State {
    metadata: Option<Metadata>,
    hard_state: HardState,
    markers: Vec<SnapshotMetadata>,
    entries: Vec<Entry>,
}

impl State {
    fn apply(&mut self, rec: Record, path: &Path, off: usize) -> Result<(), Error> {
        // Every segment starts with the metadata record and has it nowhere else.
        match (&rec, off) {
            (Record::Metadata(_), 0) => {}
            (Record::Metadata(_), _) => {
                return Err(corrupt(
                    path,
                    off,
                    "metadata record after the segment start",
                ));
            }
            (_, 0) => {
                return Err(corrupt(
                    path,
                    off,
                    format!("segment starts with a {} record, not metadata", rec.kind()),
                ));
            }
            _ => {}
        }
        match rec {
            Record::Metadata(m) => match &self.metadata {
                None => self.metadata = Some(m),
                Some(first) if *first == m => {}
                Some(first) => {
                    return Err(corrupt(
                        path,
                        off,
                        format!("metadata {m:?} differs from the first segment's {first:?}"),
                    ));
                }
            },
            Record::Entry(e) => {
                // Raft rewrote the log from e.index on (an uncommitted suffix of an older term):
                // everything held from that index on is obsolete.
                while self.entries.last().is_some_and(|l| l.index >= e.index) {
                    self.entries.pop();
                }
                self.entries.push(e);
            }
            Record::HardState(hs) => self.hard_state = hs,
            Record::Snapshot(m) => {
                // A new segment's header repeats the newest marker; keep one copy.
                if self.markers.last() != Some(&m) {
                    self.markers.push(m);
                }
            }
        }
        Ok(())
    }
}

/// Replays the WAL in `dir` without modifying anything. See the module doc for the rules.
pub fn replay(dir: &Path) -> Result<Replayed, Error> {
    let mut segments = list_segments(dir)?;
    if segments.is_empty() {
        return Err(Error::NotFound {
            dir: dir.to_path_buf(),
        });
    }
    let mut state = State::default();
    let mut torn = None;
    let last = segments.len() - 1;
    for (i, seg) in segments.iter_mut().enumerate() {
        let data = read_segment(seg)?;
        seg.len = data.len() as u64;
        if data.is_empty() {
            return Err(corrupt(&seg.path, 0, "empty segment: no metadata record"));
        }
        let mut off = 0;
        while off < data.len() {
            match record::decode(&data, off) {
                Ok((rec, len)) => {
                    state.apply(rec, &seg.path, off)?;
                    off += len;
                }
                // The header of the last segment was synced before the segment got its name,
                // so even there a bad record at offset 0 is not a torn append.
                Err(e) if i == last && off > 0 && e.may_be_torn() => {
                    if let Some(next) = record::find_valid_frame_after(&data, off) {
                        return Err(corrupt(
                            &seg.path,
                            off,
                            format!(
                                "{e}; a valid record follows at offset {next}, so this is \
                                 damage, not a torn write"
                            ),
                        ));
                    }
                    torn = Some(TornTail {
                        path: seg.path.clone(),
                        offset: off as u64,
                        file_len: data.len() as u64,
                        reason: e.to_string(),
                    });
                    break;
                }
                Err(e) => {
                    let where_ = if i == last {
                        ""
                    } else {
                        " (not the last segment, so not a torn write)"
                    };
                    return Err(corrupt(&seg.path, off, format!("{e}{where_}")));
                }
            }
        }
    }
    let Some(metadata) = state.metadata else {
        // Unreachable: a non-empty first segment either starts with metadata or failed above.
        return Err(corrupt(&segments[0].path, 0, "no metadata record"));
    };
    Ok(Replayed {
        metadata,
        hard_state: state.hard_state,
        markers: state.markers,
        entries: state.entries,
        segments,
        torn,
    })
}

/// Visits every record of every segment in order, read-only; see [`super::scan`].
pub fn scan(dir: &Path, mut visit: impl FnMut(&Path, u64, &Record)) -> Result<(), Error> {
    let segments = list_segments(dir)?;
    if segments.is_empty() {
        return Err(Error::NotFound {
            dir: dir.to_path_buf(),
        });
    }
    for seg in &segments {
        let data = read_segment(seg)?;
        let mut off = 0;
        while off < data.len() {
            let (rec, len) =
                record::decode(&data, off).map_err(|e| corrupt(&seg.path, off, e.to_string()))?;
            visit(&seg.path, off as u64, &rec);
            off += len;
        }
    }
    Ok(())
}
