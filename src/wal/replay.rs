//! Reading the WAL back: scan the segments in order, rebuild raft's state, and find an
//! unsynced tail to cut.
//!
//! Replay is read-only. It returns what it found plus, at most, one [`TornTail`] (where the
//! last segment's unsynced tail was damaged by a crash); `Wal::open` truncates it only after
//! the whole replay succeeded. Any other damage is [`Error::Corrupt`] with the file and offset,
//! and then nothing on disk has been touched.
//!
//! # Torn tail or corruption
//! A write is *unsynced* until a sync of its segment completes. A power loss damages only
//! unsynced writes, and in any way: each of their pages kept, lost or torn, in any order, so a
//! later page (valid records) can survive while an earlier one is lost. Damage to bytes that a
//! completed sync covered is *corruption*: the disk lost what it had promised to keep, or bits
//! rotted at rest.
//!
//! The WAL records how far its syncs got: after every sync of the active segment it appends a
//! sync mark (record type 7) saying how many bytes of the segment that sync covered (all those
//! before the mark), and every segment header ends with one covering the header (synced before
//! the segment got its name). So the first bad record of the last segment, at offset B, is
//! - corruption if a valid sync mark after it covers B (says more than B bytes were synced),
//!   if it is the header's first record (offset 0), or if its checksum holds but its content is
//!   invalid (a crash cannot write that);
//! - otherwise the unsynced tail: everything from B on was never covered by a completed sync,
//!   so none of it was ever acknowledged, and it is cut at B with a warning naming the file,
//!   the offset and the bytes dropped.
//!
//! Damage in any other segment is corruption: a segment is synced before the next one starts.
//! A record whose checksum holds but whose type this build does not know is neither, in any
//! segment: a newer build wrote it ([`Error::NewerBuild`]).
//!
//! What this cannot tell apart: damage at rest to synced bytes whose sync mark was lost too
//! (a mark is written after its sync, so a power loss can take it, and with direct writes,
//! which hold it back until the next synced write, a crash of the process too) looks exactly
//! like an unsynced tail and is cut as one. A WAL written before sync marks existed has none, so
//! damage in its last segment always reads as a tail.
//!
//! Zeros from some record boundary to the end of the last segment are not damage at all: the
//! active segment's file is extended ahead of its records, and that is where the log ends.
//! Nothing needs cutting there; the writer carries on from that offset.
//!
//! # Segments that went missing
//! A gap in the sequence numbers is refused as [`Error::MissingSegments`], naming the segments
//! on either side. A last segment that ends with a record naming its successor (type 9,
//! written once the successor's header was durable under a temporary name, before it got its
//! own) is corruption: the successor, and every entry written after it began, was deleted or
//! lost. Unless that temporary file is still there: a crash came between
//! the two, nothing was written to the new segment yet, and `Wal::open` gives it its name.
//! Only zeros may follow such a record.
//!
//! A segment, not the last, that ends without that record lost its end (see [`lost_end`]),
//! where the WAL says it has one: its header promises it (type 10), or the segment before it
//! ends so. The promise is what covers the first segment listed, the first of a new WAL or
//! the oldest that retention left. Segments rotated by builds before type 9 end without it,
//! and the headers they and builds before type 10 wrote promise nothing.

use crate::disk::IoError;
use std::path::{Path, PathBuf};

use super::record::{self, Record};
use super::segment::{Segment, list_segments};
use super::{Entry, Error, HardState, Metadata, SnapshotMetadata};
use crate::disk::FileSystem;

/// Where the damaged, unsynced tail of the last segment starts, to be cut away.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct TornTail {
    /// The last segment.
    pub path: PathBuf,
    /// Offset of the first damaged record: the file's new length.
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
    /// Entries, strictly increasing by index, overwrites resolved, none before the last
    /// snapshot installed from the leader (which replaced the log). There may be gaps where a
    /// snapshot from the leader was marked by a WAL older than reset markers.
    pub entries: Vec<Entry>,
    /// The index of the last entry record written (0 if none), what `dump` shows last, even
    /// where a snapshot from the leader replaced the log after it (`entries` is then empty):
    /// a refusal that names the snapshots the log needs says where the WAL's own entries end.
    pub last_written: u64,
    /// The segments, in order, with their lengths as read.
    pub segments: Vec<Segment>,
    /// A torn tail of the last segment, if any (the segment's `len` still includes it).
    pub torn: Option<TornTail>,
    /// Whether the last segment's last good record is a sync mark covering all before it:
    /// then nothing needs syncing (or marking) before the WAL is written to again.
    pub ends_synced: bool,
    /// The last segment names a successor that a crash left under its temporary name: that
    /// file and the name it is to get.
    pub unfinished: Option<(PathBuf, PathBuf)>,
    /// The last segment's records that no sync mark covers, as read, and their offset: what
    /// may be in the page cache only (see `Wal::open`).
    pub unsynced: (u64, Vec<u8>),
    /// Whether the last segment's header promises that it will end naming the next one: false
    /// for a segment that a build before that promise wrote (see `Wal::open`).
    pub last_chained: bool,
}

fn read_segment(fs: &dyn FileSystem, seg: &Segment) -> Result<Vec<u8>, Error> {
    Ok(fs.read(&seg.path).map_err(IoError::at(&seg.path))?)
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
    /// The index of the last entry written, kept when a snapshot from the leader replaces
    /// the log: see [`Replayed::last_written`].
    last_written: u64,
}

impl State {
    fn push_entry(&mut self, e: Entry) {
        // Raft rewrote the log from e.index on (an uncommitted suffix of an older term):
        // everything held from that index on is obsolete.
        while self.entries.last().is_some_and(|l| l.index >= e.index) {
            self.entries.pop();
        }
        self.last_written = e.index;
        self.entries.push(e);
    }

    fn push_marker(&mut self, m: SnapshotMetadata) {
        // A new segment's header repeats the newest marker; keep one copy.
        if self.markers.last() != Some(&m) {
            self.markers.push(m);
        }
    }

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
            Record::Entry(e) => self.push_entry(e),
            Record::Entries(es) => {
                for e in es {
                    self.push_entry(e);
                }
            }
            Record::HardState(hs) => self.hard_state = hs,
            Record::Padding(_) => {}
            Record::Snapshot(m) => self.push_marker(m),
            Record::SnapshotReset(m) => {
                // raft replaced its whole log by the snapshot: nothing written before is part
                // of the log any more (an uncommitted suffix would come back otherwise).
                self.entries.clear();
                self.push_marker(m);
            }
            Record::Synced(synced) if synced > off as u64 => {
                return Err(corrupt(
                    path,
                    off,
                    format!("sync mark claims {synced} synced bytes, more than its own offset"),
                ));
            }
            Record::Synced(_) => {}
            // The segments' order and ends: checked where they are read (see `replay`).
            Record::Next { .. } | Record::Chained => {}
        }
        Ok(())
    }
}

/// Checks a record naming segment `next_seq`/`next_first_index` as the successor of `seg`,
/// found at `off` in its `data`: it names the next sequence number, only zeros follow it,
/// and the successor is `following` (the next segment listed) or, if there is none, waits
/// under its temporary name (returned: a crash interrupted the rotation).
fn check_next(
    fs: &dyn FileSystem,
    dir: &Path,
    seg: &Segment,
    data: &[u8],
    (off, len): (usize, usize),
    (next_seq, next_first_index): (u64, u64),
    following: Option<&Segment>,
) -> Result<Option<(PathBuf, PathBuf)>, Error> {
    let name = super::segment::segment_name(next_seq, next_first_index);
    if seg.seq.checked_add(1) != Some(next_seq) {
        return Err(corrupt(
            &seg.path,
            off,
            format!("the segment ends by naming {name}, which is not the next sequence number"),
        ));
    }
    if !data[off + len..].iter().all(|&b| b == 0) {
        return Err(corrupt(
            &seg.path,
            off + len,
            "data after the record that ends the segment",
        ));
    }
    if let Some(following) = following {
        if (following.seq, following.first_index) != (next_seq, next_first_index) {
            return Err(corrupt(
                &following.path,
                0,
                format!(
                    "the segment before it, {}, ends by naming {name} as the next one",
                    seg.path.display()
                ),
            ));
        }
        return Ok(None);
    }
    let tmp = super::segment::tmp_path(dir, next_seq, next_first_index);
    if fs.exists(&tmp).map_err(IoError::at(&tmp))? {
        return Ok(Some((tmp, dir.join(name))));
    }
    Err(missing_successor(
        &seg.path,
        off,
        next_seq,
        next_first_index,
    ))
}

/// The error for a last segment that ends, at `off`, by naming a successor that is not there.
fn missing_successor(path: &Path, off: usize, next_seq: u64, next_first_index: u64) -> Error {
    let name = super::segment::segment_name(next_seq, next_first_index);
    corrupt(
        path,
        off,
        format!(
            "the segment ends by naming the next one, {name}, which is missing: it was deleted \
             or lost, and with it every entry written from index {next_first_index} on"
        ),
    )
}

/// Whether everything from `off` to the end of `data` is zero: the unwritten, preallocated
/// end of the active segment.
fn is_zero_tail(data: &[u8], off: usize) -> bool {
    data.get(off..)
        .is_some_and(|rest| rest.iter().all(|&b| b == 0))
}

/// Replays the WAL in `dir` without modifying anything. See the module doc for the rules.
pub fn replay(fs: &dyn FileSystem, dir: &Path) -> Result<Replayed, Error> {
    let mut segments = list_segments(fs, dir)?;
    if segments.is_empty() {
        return Err(Error::NotFound {
            dir: dir.to_path_buf(),
        });
    }
    let mut state = State::default();
    let mut torn = None;
    let mut ends_synced = false;
    let mut unfinished = None;
    let mut unsynced = (0, Vec::new());
    let mut previous_ended = false;
    let mut last_chained = false;
    let last = segments.len() - 1;
    for i in 0..segments.len() {
        let (done, rest) = segments.split_at_mut(i + 1);
        let seg = &mut done[i];
        let data = read_segment(fs, seg)?;
        seg.len = data.len() as u64;
        if data.is_empty() {
            return Err(corrupt(&seg.path, 0, "empty segment: no metadata record"));
        }
        let mut synced_to = 0;
        let mut off = 0;
        let mut ended = false;
        let mut chained = false;
        while off < data.len() {
            match record::decode(&data, off) {
                Ok((Record::Next { seq, first_index }, len)) if off > 0 => {
                    ended = true;
                    unfinished = check_next(
                        fs,
                        dir,
                        seg,
                        &data,
                        (off, len),
                        (seq, first_index),
                        rest.first(),
                    )?;
                    ends_synced = false;
                    seg.len = (off + len) as u64;
                    break;
                }
                Ok((rec, len)) => {
                    ends_synced = rec == Record::Synced(off as u64);
                    chained |= rec == Record::Chained;
                    if let Record::Synced(n) = rec {
                        synced_to = n;
                    }
                    state.apply(rec, &seg.path, off)?;
                    off += len;
                }
                // The active segment's file runs ahead of its records (preallocation): zeros
                // from here to the end of the file are where the next record will go.
                Err(_) if i == last && off > 0 && is_zero_tail(&data, off) => {
                    seg.len = off as u64;
                    break;
                }
                Err(e) => {
                    torn = Some(judge_bad_record(&seg.path, &data, off, i == last, &e)?);
                    break;
                }
            }
        }
        if i != last && (previous_ended || chained) && !ended {
            return Err(lost_end(&seg.path, off));
        }
        previous_ended = ended;
        if i == last {
            last_chained = chained;
            // A mark never claims more than its own offset (checked when applied).
            let from = synced_to.min(seg.len) as usize;
            unsynced = (from as u64, data[from..seg.len as usize].to_vec());
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
        last_written: state.last_written,
        segments,
        torn,
        ends_synced,
        unfinished,
        unsynced,
        last_chained,
    })
}

/// How a start judges the first record of segment `path` that does not decode (`e`, at `off`
/// of its `data`; `last`: the newest segment): the unsynced tail a crash left, which it cuts,
/// or damage, which it refuses. [`scan`] judges by it too, so that `dump` says what a start
/// would (it called a middle segment cut short a plain torn record: a user's campaign).
fn judge_bad_record(
    path: &Path,
    data: &[u8],
    off: usize,
    last: bool,
    e: &record::DecodeError,
) -> Result<TornTail, Error> {
    // Whole and checksummed, so neither a torn append nor damage, wherever it is.
    if let record::DecodeError::UnknownType(record_type) = *e {
        return Err(Error::NewerBuild {
            path: path.to_path_buf(),
            offset: off as u64,
            record_type,
            unread: String::new(),
        });
    }
    if !last {
        return Err(corrupt(
            path,
            off,
            format!("{e} (not the last segment, so not an unsynced tail)"),
        ));
    }
    // The header of the last segment was synced before the segment got its name, so even
    // there a bad record at offset 0 is not a torn append.
    if off == 0 || !e.may_be_torn() {
        return Err(corrupt(path, off, e.to_string()));
    }
    if let Some((at, synced)) = sync_covering(data, off) {
        return Err(corrupt(
            path,
            off,
            format!(
                "{e}; the sync mark at offset {at} says a completed sync covered the first \
                 {synced} bytes, so this is damage, not an unsynced tail"
            ),
        ));
    }
    Ok(TornTail {
        path: path.to_path_buf(),
        offset: off as u64,
        file_len: data.len() as u64,
        reason: e.to_string(),
    })
}

/// The first valid sync mark after a bad record at `bad` that covers it (offset, synced bytes):
/// proof that the bad record was synced.
fn sync_covering(data: &[u8], bad: usize) -> Option<(usize, u64)> {
    if crate::mutation::active(crate::mutation::Mutation::AnyRecordAfterDamageIsCorruption) {
        return record::records_after(data, bad)
            .next()
            .map(|(at, _)| (at, bad as u64 + 1));
    }
    record::records_after(data, bad).find_map(|(at, rec)| match rec {
        Record::Synced(synced) if synced > bad as u64 => Some((at, synced)),
        _ => None,
    })
}

/// The metadata record that begins the first segment in `dir`, read alone; see
/// [`super::read_metadata_on`].
pub fn read_metadata(fs: &dyn FileSystem, dir: &Path) -> Option<Metadata> {
    use std::io::Read as _;
    let segments = list_segments(fs, dir).ok()?;
    let (file, _) = fs.open_read(&segments.first()?.path).ok()?;
    let room = (record::HEADER_LEN + 2 * record::METADATA_LIMIT) as u64;
    let mut head = Vec::new();
    file.take(room).read_to_end(&mut head).ok()?;
    match record::decode(&head, 0) {
        Ok((Record::Metadata(m), _)) => Some(m),
        _ => None,
    }
}

/// Visits every record of every segment in order, read-only; see [`super::scan`].
pub fn scan(
    fs: &dyn FileSystem,
    dir: &Path,
    visit: impl FnMut(&Path, u64, u64, &Record),
) -> Result<(), Error> {
    match scan_to_tail(fs, dir, visit)? {
        None => Ok(()),
        Some(torn) => Err(corrupt(
            &torn.path,
            torn.offset as usize,
            format!(
                "{} (an unsynced tail: a start cuts these last {} bytes and goes on)",
                torn.reason,
                torn.file_len - torn.offset
            ),
        )),
    }
}

/// Visits every record of every segment in order, read-only; see [`super::scan_to_tail`].
pub fn scan_to_tail(
    fs: &dyn FileSystem,
    dir: &Path,
    mut visit: impl FnMut(&Path, u64, u64, &Record),
) -> Result<Option<TornTail>, Error> {
    let segments = list_segments(fs, dir)?;
    if segments.is_empty() {
        return Err(Error::NotFound {
            dir: dir.to_path_buf(),
        });
    }
    let mut previous_ended = false;
    for i in 0..segments.len() {
        match scan_segment(fs, dir, &segments, i, previous_ended, &mut visit)
            .map_err(|err| unread_after(err, &segments[i + 1..]))?
        {
            // Only the newest segment may end in a tail: there is nothing after it to read.
            Ended::Torn(torn) => return Ok(Some(torn)),
            Ended::NamingNext(ended) => previous_ended = ended,
        }
    }
    Ok(None)
}

/// How a segment that [`scan_segment`] read ended.
enum Ended {
    /// Read to its end; whether it ends by naming the next segment.
    NamingNext(bool),
    /// The newest segment, in an unsynced tail a start cuts.
    Torn(TornTail),
}

/// [`scan`] of `segments[i]`.
fn scan_segment(
    fs: &dyn FileSystem,
    dir: &Path,
    segments: &[Segment],
    i: usize,
    previous_ended: bool,
    visit: &mut impl FnMut(&Path, u64, u64, &Record),
) -> Result<Ended, Error> {
    let seg = &segments[i];
    let last = i + 1 == segments.len();
    let data = read_segment(fs, seg)?;
    if data.is_empty() {
        // As replay judges it: a start refuses it, so a dump must not pass it in silence.
        return Err(corrupt(&seg.path, 0, "empty segment: no metadata record"));
    }
    let mut off = 0;
    // After the record that ends a segment, only zeros.
    let mut ended = false;
    let mut chained = false;
    while off < data.len() {
        if (last || ended) && off > 0 && is_zero_tail(&data, off) {
            break;
        }
        let (rec, len) = match record::decode(&data, off) {
            Ok(decoded) => decoded,
            // Judged as a start judges it: damage it refuses, or a tail it cuts.
            Err(e) => {
                return Ok(Ended::Torn(judge_bad_record(
                    &seg.path, &data, off, last, &e,
                )?));
            }
        };
        visit(&seg.path, off as u64, len as u64, &rec);
        chained |= rec == Record::Chained;
        if let Record::Next { seq, first_index } = rec {
            // Judged as replay judges it (a successor under its temporary name is fine
            // here: dump only reads).
            check_next(
                fs,
                dir,
                seg,
                &data,
                (off, len),
                (seq, first_index),
                segments.get(i + 1),
            )?;
            ended = true;
        }
        off += len;
    }
    if !last && (previous_ended || chained) && !ended {
        return Err(lost_end(&seg.path, off));
    }
    Ok(Ended::NamingNext(ended))
}

/// `err`, which stopped a scan, naming the newer segments `unread` it left unread: a reader
/// of `dump` would otherwise take the place it stopped at for the end of the log. Damage
/// says so in its reason, a newer build's record in its own field (review 113 NIT-2: dump
/// named none after one).
fn unread_after(err: Error, unread: &[Segment]) -> Error {
    match err {
        Error::Corrupt {
            path,
            offset,
            reason,
        } => {
            let which = not_read(&path, unread);
            Error::Corrupt {
                path,
                offset,
                reason: reason + &which,
            }
        }
        Error::NewerBuild {
            path,
            offset,
            record_type,
            unread: _,
        } => Error::NewerBuild {
            unread: not_read(&path, unread),
            path,
            offset,
            record_type,
        },
        other => other,
    }
}

/// "; reading stopped there, so ... were not read", naming those of `unread` newer than
/// `path`, where reading stopped; nothing if none are.
fn not_read(path: &Path, unread: &[Segment]) -> String {
    // The error may name a newer segment than the one read (one its predecessor does not
    // name as the next): only those after it go unread.
    let unread = unread
        .iter()
        .position(|seg| seg.path == path)
        .map_or(unread, |at| &unread[at + 1..]);
    let name = |seg: &Segment| super::segment::segment_name(seg.seq, seg.first_index);
    match unread {
        [] => String::new(),
        [only] => format!(
            "; reading stopped there, so the newer segment {} was not read",
            name(only)
        ),
        [first, .., newest] => format!(
            "; reading stopped there, so the {} newer segments, {} to {}, were not read",
            unread.len(),
            name(first),
            name(newest)
        ),
    }
}

/// A segment, not the last, that ends after a whole record but without the record naming the
/// next segment, at `off`, while its header promises one or the segment before it has one.
/// Every segment since WALs began to write that record ends with it, synced before the next
/// segment gets its name: its end was lost. Read on, the next segment's entries could
/// overwrite only part of what the lost end had overwritten, leaving entries of an older term
/// under the commit index (found by a review). (A WAL of an older build has no such record
/// before its first rotation by a newer one, and no promise in the headers it wrote: there,
/// the first segment listed is not held to it, having no predecessor to tell.)
fn lost_end(path: &Path, off: usize) -> Error {
    corrupt(
        path,
        off,
        "the segment ends without the record naming the next one, which exists: its end was lost",
    )
}

#[cfg(test)]
mod tests {
    use super::super::tests::{corrupt_in, ent, ents, hs, marker, meta, opts};
    use super::super::{Wal, WalOptions, record::RecordRef};
    use super::*;
    use crate::disk::StdFs;
    use std::fs;
    use tempfile::TempDir;

    /// A segment in the middle of the log cut short after a whole record (damage at rest: a
    /// bad copy, a file system's bug) is refused naming it and where its end was lost. Here
    /// the lost end held raft's overwrite of entries 18 and 19 with term 2: read on, the log
    /// had the old entries of term 1 there, under a commit index of 21 (found by a review).
    #[test]
    fn a_middle_segment_cut_short_at_a_record_is_refused() {
        let tmp = TempDir::new().unwrap();
        // Every save rotates: each is a segment of its own.
        let mut wal = twenty_entries(tmp.path(), opts(1));
        overwrite(&mut wal);
        go_on(&mut wal);
        refused_once_cut_at_the_overwrite(tmp.path());
    }

    /// The same damage to the first segment listed, which has no segment before it to say
    /// that it must end naming the next one: its header promises it. Before, both a start and
    /// a dump read on, into entries 18 and 19 of term 1 under a commit index of 21 (found by
    /// a review).
    #[test]
    fn the_first_segment_cut_short_at_a_record_is_refused() {
        let tmp = TempDir::new().unwrap();
        drop(twenty_entries(tmp.path(), opts(1 << 20)));
        // Segments of one byte from here: the overwrite still goes to the first segment.
        let (mut wal, _) = Wal::open(tmp.path(), opts(1)).unwrap();
        overwrite(&mut wal);
        go_on(&mut wal);
        let first = refused_once_cut_at_the_overwrite(tmp.path());
        assert_eq!(
            first.file_name().unwrap(),
            "0000000000000000-0000000000000000.wal"
        );
    }

    /// As above, where the first segment listed is the oldest that retention left after a
    /// snapshot: the segment before it, which ends naming it, is gone.
    #[test]
    fn the_oldest_segment_retention_left_cut_short_at_a_record_is_refused() {
        let tmp = TempDir::new().unwrap();
        let mut wal = Wal::create(tmp.path(), &meta(), opts(1)).unwrap();
        wal.save(Some(&hs(1, 1, 10)), &ents(1..=10, 1), true)
            .unwrap();
        drop(wal);
        let (mut wal, _) = Wal::open(tmp.path(), opts(1 << 20)).unwrap();
        wal.save(Some(&hs(1, 1, 11)), &ents(11..=20, 1), true)
            .unwrap();
        overwrite(&mut wal);
        drop(wal);
        let (mut wal, _) = Wal::open(tmp.path(), opts(1)).unwrap();
        let second = wal.segment_paths()[1].clone();
        wal.save_snapshot_marker(&marker(1, 11)).unwrap();
        wal.release_to(11).unwrap();
        wal.wait_for_removals();
        assert_eq!(wal.segment_paths()[0], second, "the first segment released");
        go_on(&mut wal);
        assert_eq!(refused_once_cut_at_the_overwrite(tmp.path()), second);
    }

    /// A new WAL in `dir` holding entries 1 to 20 of term 1, saved in two writes, and a commit
    /// index of 10.
    fn twenty_entries(dir: &Path, opts: WalOptions) -> Wal {
        let mut wal = Wal::create(dir, &meta(), opts).unwrap();
        wal.save(Some(&hs(1, 1, 10)), &ents(1..=10, 1), true)
            .unwrap();
        wal.save(Some(&hs(1, 1, 10)), &ents(11..=20, 1), true)
            .unwrap();
        wal
    }

    /// Saves, on a WAL holding entries 1 to 20 of term 1, raft's overwrite of entries 18 and
    /// 19 with term 2.
    fn overwrite(wal: &mut Wal) {
        wal.save(Some(&hs(2, 2, 19)), &ents(18..=19, 2), true)
            .unwrap();
    }

    /// Saves, after [`overwrite`] and in a later segment, entries 20 and 21 of term 2, all
    /// committed.
    fn go_on(wal: &mut Wal) {
        wal.save(Some(&hs(2, 2, 21)), &ents(20..=21, 2), true)
            .unwrap();
    }

    /// Cuts the segment holding the record that [`overwrite`] saved where that record begins,
    /// and checks that a start and a scan refuse the WAL, naming that segment and offset.
    /// Returns the segment.
    fn refused_once_cut_at_the_overwrite(dir: &Path) -> PathBuf {
        let mut cut = None;
        scan(&StdFs, dir, |path, off, _, rec| {
            if let Record::Entries(es) = rec
                && es.first().is_some_and(|e| e.index == 18 && e.term == 2)
            {
                cut = Some((path.to_path_buf(), off));
            }
        })
        .unwrap();
        let (path, off) = cut.expect("the overwrite's record");
        fs::OpenOptions::new()
            .write(true)
            .open(&path)
            .unwrap()
            .set_len(off)
            .unwrap();
        let opened = match Wal::open(dir, opts(1)) {
            Ok((_, c)) => panic!(
                "opened with the overwrite lost: entries {:?} (index, term), commit {}",
                c.entries()
                    .iter()
                    .filter(|e| e.index >= 18)
                    .map(|e| (e.index, e.term))
                    .collect::<Vec<_>>(),
                c.hard_state.commit
            ),
            Err(e) => e,
        };
        for err in [opened, scan(&StdFs, dir, |_, _, _, _| {}).unwrap_err()] {
            let text = err.to_string();
            match err {
                Error::Corrupt {
                    path: at, offset, ..
                } => assert_eq!((at, offset), (path.clone(), off)),
                other => panic!("expected Corrupt naming {path:?}, got {other:?}"),
            }
            assert!(text.contains("its end was lost"), "{text}");
        }
        path
    }

    /// An empty segment is refused by a scan (what `dump` reads with) as by a replay, naming
    /// the file and offset 0; before, a dump printed nothing and said nothing.
    #[test]
    fn a_scan_refuses_an_empty_segment_as_a_replay_does() {
        let tmp = TempDir::new().expect("temp dir");
        let path = tmp.path().join(super::super::segment::segment_name(0, 0));
        fs::write(&path, b"").expect("an empty segment");
        let err = scan(&StdFs, tmp.path(), |_, _, _, _| {}).expect_err("refused");
        let text = err.to_string();
        assert!(text.contains("empty segment"), "{text}");
        assert!(text.contains(&path.display().to_string()), "{text}");
        assert!(text.contains("offset 0"), "{text}");
    }

    /// The (offset, kind) of every record of `path`.
    fn records_of(dir: &Path, path: &Path) -> Vec<(u64, &'static str)> {
        let mut out = Vec::new();
        super::super::scan(dir, |p, off, _, r| {
            if p == path {
                out.push((off, r.kind()))
            }
        })
        .unwrap();
        out
    }

    fn copy_dir(from: &Path, to: &Path) {
        for d in fs::read_dir(from).unwrap() {
            let d = d.unwrap();
            fs::copy(d.path(), to.join(d.file_name())).unwrap();
        }
    }

    fn snapshot_files(dir: &Path) -> Vec<(PathBuf, Vec<u8>)> {
        let mut v: Vec<_> = fs::read_dir(dir)
            .unwrap()
            .map(|d| {
                let p = d.unwrap().path();
                let b = fs::read(&p).unwrap();
                (p, b)
            })
            .collect();
        v.sort();
        v
    }

    /// A WAL of one segment: a synced write of entries 1..=2 and a hard state, then an
    /// unsynced one of `second` and a hard state. Returns the segment and its records.
    fn synced_then_unsynced(dir: &Path, second: &[Entry]) -> (PathBuf, Vec<(u64, &'static str)>) {
        let mut wal = Wal::create(dir, &meta(), opts(1 << 20)).unwrap();
        wal.save(Some(&hs(1, 1, 2)), &ents(1..=2, 1), true).unwrap();
        let last = second.last().map_or(2, |e| e.index);
        wal.save(Some(&hs(1, 1, last)), second, false).unwrap();
        let seg = wal.segment_paths()[0].clone();
        drop(wal);
        let recs = records_of(dir, &seg);
        let kinds: Vec<_> = recs.iter().map(|r| r.1).collect();
        // The header and its sync mark, the synced write and the mark of its sync, the other.
        let want = [
            "metadata",
            "chained",
            "synced",
            "entries",
            "hardstate",
            "synced",
            "entries",
            "hardstate",
        ];
        assert_eq!(kinds, want);
        (seg, recs)
    }

    /// A WAL of two segments whose last record is a 100-byte entry (index 9), not synced.
    pub(super) fn build_pristine(dir: &Path) -> PathBuf {
        let mut wal = Wal::create(dir, &meta(), opts(256)).unwrap();
        wal.save(Some(&hs(1, 1, 4)), &ents(1..=4, 1), true).unwrap();
        wal.save(Some(&hs(1, 1, 8)), &ents(5..=8, 1), true).unwrap();
        let mut last = ent(9, 1);
        last.data = vec![0x5A; 100].into();
        wal.save(None, &[last], false).unwrap();
        let segs = wal.segment_paths();
        assert!(segs.len() >= 2, "{segs:?}");
        segs[segs.len() - 1].clone()
    }

    #[test]
    fn torn_tail_at_every_length_of_the_last_record_is_cut_and_the_wal_goes_on() {
        let pristine = TempDir::new().unwrap();
        let last_seg = build_pristine(pristine.path());
        let recs = records_of(pristine.path(), &last_seg);
        let (start, kind) = *recs.last().unwrap();
        assert_eq!(kind, "entries");
        let end = fs::metadata(&last_seg).unwrap().len();
        assert!(end - start > 100);
        let name = last_seg.file_name().unwrap();

        for cut in start..end {
            let tmp = TempDir::new().unwrap();
            copy_dir(pristine.path(), tmp.path());
            let seg = tmp.path().join(name);
            fs::OpenOptions::new()
                .write(true)
                .open(&seg)
                .unwrap()
                .set_len(cut)
                .unwrap();

            let (mut wal, c) =
                Wal::open(tmp.path(), opts(256)).unwrap_or_else(|e| panic!("cut at {cut}: {e}"));
            assert_eq!(fs::metadata(&seg).unwrap().len(), start, "cut at {cut}");
            assert_eq!(
                c.entries_after(0).unwrap(),
                &ents(1..=8, 1)[..],
                "cut at {cut}"
            );
            assert_eq!(c.hard_state, hs(1, 1, 8));

            // The WAL accepts new saves, and they survive another reopen.
            wal.save(Some(&hs(2, 1, 9)), &ents(9..=10, 2), true)
                .unwrap();
            drop(wal);
            let (_wal, c) = Wal::open(tmp.path(), opts(256)).unwrap();
            let mut want = ents(1..=8, 1);
            want.extend(ents(9..=10, 2));
            assert_eq!(c.entries_after(0).unwrap(), &want[..], "cut at {cut}");
            assert_eq!(c.hard_state, hs(2, 1, 9));
        }
    }

    #[test]
    fn garbage_or_zeros_in_place_of_the_last_record_are_a_torn_tail() {
        let pristine = TempDir::new().unwrap();
        let last_seg = build_pristine(pristine.path());
        let (start, _) = *records_of(pristine.path(), &last_seg).last().unwrap();
        let name = last_seg.file_name().unwrap();
        let good = fs::read(&last_seg).unwrap();
        let damages: Vec<(&str, Vec<u8>)> = vec![
            // Whole length written, but a sector of the payload never made it.
            ("zeroed payload", {
                let mut b = good.clone();
                b[start as usize + 20..].fill(0);
                b
            }),
            // The file grew but none of the record's data reached the disk.
            ("zeroed record", {
                let mut b = good.clone();
                b[start as usize..].fill(0);
                b
            }),
            ("zeros past the end", {
                let mut b = good.clone();
                b.extend_from_slice(&[0; 4096]);
                b
            }),
            ("flipped byte in the last record", {
                let mut b = good.clone();
                b[start as usize + 30] ^= 0x10;
                b
            }),
        ];
        for (what, bytes) in damages {
            let tmp = TempDir::new().unwrap();
            copy_dir(pristine.path(), tmp.path());
            let seg = tmp.path().join(name);
            fs::write(&seg, &bytes).unwrap();
            let (mut wal, c) = Wal::open(tmp.path(), WalOptions::default())
                .unwrap_or_else(|e| panic!("{what}: {e}"));
            // Zeros from a record boundary on are where the log ends (a preallocated file
            // looks like that): nothing to cut. Anything else is cut at the torn record.
            let want_len = match what {
                "zeroed record" | "zeros past the end" => bytes.len() as u64,
                _ => start,
            };
            assert_eq!(fs::metadata(&seg).unwrap().len(), want_len, "{what}");
            let last = if what == "zeros past the end" { 9 } else { 8 };
            assert_eq!(c.last_index(), last, "{what}");
            // The next write goes where the log ended, and reads back.
            wal.save(None, &ents(last + 1..=last + 1, 2), true).unwrap();
            drop(wal);
            let (_wal, c) = Wal::open(tmp.path(), WalOptions::default()).unwrap();
            assert_eq!(c.last_index(), last + 1, "{what}");
            assert_eq!(c.entries().last().unwrap().term, 2, "{what}");
        }
    }

    /// Issue 12, item 4: a power loss reorders the pages of a write that was never synced, so
    /// that its last page (holding valid records) reaches the disk while an earlier one does
    /// not. That is an unsynced tail, not corruption: the WAL starts, cut where the damage
    /// begins, with everything that was synced.
    #[test]
    fn a_later_page_of_an_unsynced_write_surviving_an_earlier_one_is_a_torn_tail() {
        for damage_from in [0, 100] {
            let tmp = TempDir::new().unwrap();
            let mut big = ents(3..=40, 1);
            for e in &mut big {
                e.data = vec![7u8; 200].into();
            }
            let (seg, recs) = synced_then_unsynced(tmp.path(), &big);
            // Where the unsynced write begins.
            let synced = recs[6].0;
            // The first page of the write is lost, the second (with the hard state) is not.
            let mut bytes = fs::read(&seg).unwrap();
            assert!(bytes.len() > 4096, "the write spans two pages");
            bytes[synced as usize + damage_from..4096].fill(0);
            fs::write(&seg, &bytes).unwrap();

            let (_wal, c) = Wal::open(tmp.path(), opts(1 << 20))
                .unwrap_or_else(|e| panic!("damage from {damage_from}: {e}"));
            assert_eq!(c.entries_after(0).unwrap(), &ents(1..=2, 1)[..]);
            assert_eq!(c.hard_state, hs(1, 1, 2));
            assert_eq!(fs::metadata(&seg).unwrap().len(), synced);
        }
    }

    #[test]
    fn single_entry_records_of_older_wals_are_still_read() {
        let tmp = TempDir::new().unwrap();
        let wal = Wal::create(tmp.path(), &meta(), opts(1 << 20)).unwrap();
        let seg = wal.segment_paths()[0].clone();
        drop(wal);
        let mut bytes = fs::read(&seg).unwrap();
        for e in ents(1..=3, 1) {
            let base = bytes.len() as u64;
            let mut rec = Vec::new();
            record::encode(&mut rec, base, RecordRef::Entry(&e)).unwrap();
            bytes.extend_from_slice(&rec);
        }
        fs::write(&seg, &bytes).unwrap();
        let (mut wal, c) = Wal::open(tmp.path(), opts(1 << 20)).unwrap();
        assert_eq!(c.entries_after(0).unwrap(), &ents(1..=3, 1)[..]);
        wal.save(None, &ents(4..=5, 1), true).unwrap();
        drop(wal);
        let (_wal, c) = Wal::open(tmp.path(), opts(1 << 20)).unwrap();
        assert_eq!(c.entries_after(0).unwrap(), &ents(1..=5, 1)[..]);
        assert_eq!(
            records_of(tmp.path(), &seg)
                .iter()
                .map(|r| r.1)
                .collect::<Vec<_>>(),
            // The header's sync mark, the old records, the mark of the first open (which synced
            // them), the new run and the mark after its sync.
            [
                "metadata", "chained", "synced", "entry", "entry", "entry", "synced", "entries",
                "synced"
            ]
        );
    }

    #[test]
    fn a_record_embedded_in_an_entry_does_not_hide_a_torn_tail() {
        let tmp = TempDir::new().unwrap();
        let mut wal = Wal::create(tmp.path(), &meta(), opts(1 << 20)).unwrap();
        wal.save(None, &ents(1..=2, 1), true).unwrap();
        // The application stored bytes that are themselves a valid WAL record (at offset 0).
        let mut inner = Vec::new();
        record::encode(&mut inner, 0, RecordRef::HardState(&hs(7, 7, 7))).unwrap();
        let mut e = ent(3, 1);
        e.data = inner.into();
        wal.save(None, &[e], false).unwrap();
        let seg = wal.segment_paths()[0].clone();
        drop(wal);
        let (start, _) = *records_of(tmp.path(), &seg).last().unwrap();
        let len = fs::metadata(&seg).unwrap().len();
        fs::OpenOptions::new()
            .write(true)
            .open(&seg)
            .unwrap()
            .set_len(len - 1)
            .unwrap();
        let (_wal, c) = Wal::open(tmp.path(), WalOptions::default()).unwrap();
        assert_eq!(fs::metadata(&seg).unwrap().len(), start);
        assert_eq!(c.last_index(), 2);
    }

    /// Damage to a record that a completed sync covered, as a later sync mark proves, is
    /// corruption (the disk lost what it had promised to keep), and nothing is modified: in a
    /// synced write that the next write announced, and in a segment header, which its own
    /// mark covers.
    #[test]
    fn damage_that_a_sync_covered_is_corruption_and_nothing_is_modified() {
        let tmp = TempDir::new().unwrap();
        let (seg, recs) = synced_then_unsynced(tmp.path(), &ents(3..=3, 1));

        let pristine = TempDir::new().unwrap();
        let last_seg = build_pristine(pristine.path());
        let header_hs = records_of(pristine.path(), &last_seg)[1];
        assert_eq!(header_hs.1, "hardstate");

        for (dir, path, off) in [
            (tmp.path(), seg.clone(), recs[3].0),
            (tmp.path(), seg.clone(), recs[4].0),
            (pristine.path(), last_seg, header_hs.0),
        ] {
            let mut bytes = fs::read(&path).unwrap();
            bytes[off as usize + 5] ^= 0x01;
            fs::write(&path, &bytes).unwrap();
            let before = snapshot_files(dir);
            match Wal::open(dir, WalOptions::default()).unwrap_err() {
                Error::Corrupt {
                    path: p,
                    offset,
                    reason,
                } => {
                    assert_eq!((&p, offset), (&path, off));
                    assert!(reason.contains("a completed sync covered"), "{reason}");
                }
                other => panic!("expected Corrupt, got {other:?}"),
            }
            assert_eq!(snapshot_files(dir), before);
            bytes[off as usize + 5] ^= 0x01;
            fs::write(&path, &bytes).unwrap();
        }
    }

    #[test]
    fn a_flipped_byte_in_a_non_last_segment_is_corruption_even_at_its_end() {
        let pristine = TempDir::new().unwrap();
        build_pristine(pristine.path());
        let first = Wal::open(pristine.path(), WalOptions::default())
            .unwrap()
            .0
            .segment_paths()[0]
            .clone();
        let recs = records_of(pristine.path(), &first);
        let name = first.file_name().unwrap();
        // A record in the middle, and the very last record of the segment.
        for (off, _) in [recs[1], recs[recs.len() - 1]] {
            let tmp = TempDir::new().unwrap();
            copy_dir(pristine.path(), tmp.path());
            let seg = tmp.path().join(name);
            let mut bytes = fs::read(&seg).unwrap();
            bytes[off as usize + 5] ^= 0x80;
            fs::write(&seg, &bytes).unwrap();
            let before = snapshot_files(tmp.path());
            match Wal::open(tmp.path(), WalOptions::default()).unwrap_err() {
                Error::Corrupt { path, offset, .. } => {
                    assert_eq!((path, offset), (seg.clone(), off))
                }
                other => panic!("expected Corrupt, got {other:?}"),
            }
            assert_eq!(snapshot_files(tmp.path()), before);
        }
        // A cut-short non-last segment is corruption too.
        let tmp = TempDir::new().unwrap();
        copy_dir(pristine.path(), tmp.path());
        let seg = tmp.path().join(name);
        let len = fs::metadata(&seg).unwrap().len();
        fs::OpenOptions::new()
            .write(true)
            .open(&seg)
            .unwrap()
            .set_len(len - 3)
            .unwrap();
        assert!(matches!(
            Wal::open(tmp.path(), WalOptions::default()),
            Err(Error::Corrupt { .. })
        ));
        assert_eq!(fs::metadata(&seg).unwrap().len(), len - 3);
    }

    #[test]
    fn valid_checksum_with_bad_content_at_the_tail_is_not_torn() {
        let tmp = TempDir::new().unwrap();
        let mut wal = Wal::create(tmp.path(), &meta(), opts(1 << 20)).unwrap();
        wal.save(None, &ents(1..=2, 1), true).unwrap();
        let seg = wal.segment_paths()[0].clone();
        drop(wal);
        // Append a second metadata record: well framed, but not allowed mid-segment.
        let len = fs::metadata(&seg).unwrap().len();
        let mut extra = Vec::new();
        record::encode(&mut extra, len, RecordRef::Metadata(&meta())).unwrap();
        let mut bytes = fs::read(&seg).unwrap();
        bytes.extend_from_slice(&extra);
        fs::write(&seg, &bytes).unwrap();
        match Wal::open(tmp.path(), WalOptions::default()).unwrap_err() {
            Error::Corrupt { offset, .. } => assert_eq!(offset, len),
            other => panic!("expected Corrupt, got {other:?}"),
        }
        assert_eq!(fs::read(&seg).unwrap(), bytes);
    }

    /// A whole record of a type this build does not know is a newer build's, wherever it is:
    /// at the tail of the last segment (where damage could pass for an unsynced tail) and
    /// in an older segment. A start and a scan both say so, naming the file, the offset and
    /// the type, and modify nothing. Before, both called it damage ("invalid record: unknown
    /// record type"), which start-up met with the lost-disk remedy (review 111).
    #[test]
    fn a_record_of_a_type_this_build_does_not_know_is_a_newer_builds() {
        fn newer(path: &Path, at: u64) -> impl Fn(Error) + '_ {
            move |err| match err {
                Error::NewerBuild {
                    path: p,
                    offset,
                    record_type,
                    ..
                } => assert_eq!(
                    (p.as_path(), offset, record_type),
                    (path, at, record::TYPE_UNKNOWN)
                ),
                other => panic!("expected NewerBuild, got {other:?}"),
            }
        }
        // At the tail of the last segment, where no sync mark covers it.
        let tmp = TempDir::new().unwrap();
        build_pristine(tmp.path());
        let (last, at) = super::super::tests::put_newer_record(tmp.path());
        let before = snapshot_files(tmp.path());
        newer(&last, at)(Wal::open(tmp.path(), WalOptions::default()).unwrap_err());
        newer(&last, at)(scan(&StdFs, tmp.path(), |_, _, _, _| {}).unwrap_err());
        assert_eq!(snapshot_files(tmp.path()), before, "nothing was modified");

        // In the first segment, before the record that ends it (moved after it).
        let tmp = TempDir::new().unwrap();
        build_pristine(tmp.path());
        let first = tmp.path().join(super::super::segment::segment_name(0, 0));
        let (end, kind) = *records_of(tmp.path(), &first).last().unwrap();
        assert_eq!(kind, "next");
        let bytes = fs::read(&first).unwrap();
        let (next, _) = record::decode(&bytes, end as usize).unwrap();
        let mut tail = Vec::new();
        record::encode_raw(&mut tail, end, record::TYPE_UNKNOWN, b"new");
        record::encode(&mut tail, end, next.as_ref()).unwrap();
        let mut changed = bytes[..end as usize].to_vec();
        changed.extend_from_slice(&tail);
        fs::write(&first, &changed).unwrap();
        let before = snapshot_files(tmp.path());
        newer(&first, end)(Wal::open(tmp.path(), WalOptions::default()).unwrap_err());
        newer(&first, end)(scan(&StdFs, tmp.path(), |_, _, _, _| {}).unwrap_err());
        assert_eq!(snapshot_files(tmp.path()), before, "nothing was modified");
    }

    #[test]
    fn damaged_header_or_foreign_segments_are_corruption() {
        // The last segment's header is damaged: never a torn append (it was synced before
        // the segment got its name).
        let tmp = TempDir::new().unwrap();
        let last = build_pristine(tmp.path());
        let mut bytes = fs::read(&last).unwrap();
        bytes[3] ^= 0x01;
        fs::write(&last, &bytes).unwrap();
        match Wal::open(tmp.path(), WalOptions::default()).unwrap_err() {
            Error::Corrupt { path, offset, .. } => assert_eq!((path, offset), (last, 0)),
            other => panic!("expected Corrupt, got {other:?}"),
        }

        // A segment whose metadata differs (copied from another node's WAL).
        let a = TempDir::new().unwrap();
        let b = TempDir::new().unwrap();
        let mut wal = Wal::create(a.path(), &meta(), opts(64)).unwrap();
        wal.save(None, &ents(1..=3, 1), true).unwrap();
        let a_segs = wal.segment_paths();
        drop(wal);
        let mut other = meta();
        other.node_id = 2;
        let mut wal = Wal::create(b.path(), &other, opts(64)).unwrap();
        wal.save(None, &ents(1..=3, 1), true).unwrap();
        let b_segs = wal.segment_paths();
        drop(wal);
        fs::copy(&b_segs[1], &a_segs[1]).unwrap();
        let (path, reason) = corrupt_in(Wal::open(a.path(), WalOptions::default()).unwrap_err());
        assert_eq!(path, a_segs[1]);
        assert!(reason.contains("differs"), "{reason}");
    }

    #[test]
    fn a_missing_middle_segment_is_refused_naming_its_neighbours() {
        let tmp = TempDir::new().unwrap();
        let mut wal = Wal::create(tmp.path(), &meta(), opts(64)).unwrap();
        for i in 1..=4 {
            wal.save(None, &[ent(i, 1)], true).unwrap();
        }
        let segs = wal.segment_paths();
        drop(wal);
        fs::remove_file(&segs[2]).unwrap();
        match Wal::open(tmp.path(), WalOptions::default()).unwrap_err() {
            Error::MissingSegments {
                before,
                after,
                first,
                last,
                ..
            } => assert_eq!(
                (before, after, first, last),
                (segs[1].clone(), segs[3].clone(), 2, 2)
            ),
            other => panic!("expected MissingSegments, got {other:?}"),
        }
    }

    #[test]
    fn replay_alone_modifies_nothing_and_reports_the_torn_tail() {
        let tmp = TempDir::new().unwrap();
        let last = build_pristine(tmp.path());
        let len = fs::metadata(&last).unwrap().len();
        fs::OpenOptions::new()
            .write(true)
            .open(&last)
            .unwrap()
            .set_len(len - 5)
            .unwrap();
        let r = replay(&StdFs, tmp.path()).unwrap();
        let torn = r.torn.unwrap();
        assert_eq!(torn.path, last);
        assert_eq!(torn.file_len, len - 5);
        assert_eq!(fs::metadata(&last).unwrap().len(), len - 5);
        assert_eq!(r.markers, Vec::<SnapshotMetadata>::new());
    }
}
