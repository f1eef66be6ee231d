//! The write-ahead log: where the raft node persists each `Ready` before acting on it.
//!
//! # Role in the flow
//! For every `Ready`, the raft node first saves a snapshot file (see `snapshotter`) and then its
//! marker here ([`Wal::save_snapshot_marker`], or [`Wal::save_snapshot_reset`] for a snapshot
//! from the leader, which replaces the log), then calls [`Wal::save`] with the new entries and
//! hard state, and only after `save` returned sends `persisted_messages`. At start-up
//! [`Wal::open`] gives back the metadata, the last hard state, the snapshot markers and the
//! entries; the node loads the newest snapshot named by a marker and appends
//! [`WalContents::entries_after`] its index. After a snapshot, [`Wal::release_to`] deletes the
//! segments it made unnecessary, so disk use stays bounded. The caller is expected to hold a
//! [`crate::fsutil::DirLock`] on the data directory: the WAL does not lock by itself.
//!
//! Everything goes through a [`crate::disk::FileSystem`]: the real disk for [`Wal::create`] and
//! [`Wal::open`], any other for [`Wal::create_on`] and [`Wal::open_on`] (tests run the WAL on
//! an in-memory disk that loses power).
//!
//! # Files
//! The directory holds segments named `%016x-%016x.wal`: sequence number, then the index of the
//! first entry the segment was created to hold (as etcd names them). The highest sequence is
//! the active segment, the only one written to. It is replaced by a new one once a write leaves
//! it at or above [`WalOptions::segment_size`] (64 MiB by default). The active segment's file is
//! extended sparsely ahead of its records ([`WalOptions::preallocate`], 4 MiB steps), so the
//! zeros after its last record are the normal end of the log, not damage; a segment is cut back
//! to its records before the next one is started.
//!
//! # Byte layout
//! A segment is a sequence of records, each
//! `len: u32 LE | type: u8 | crc: u32 LE | payload (len bytes)`, where the CRC-32C covers the
//! record's file offset (u64 LE), `len`, `type` and the payload. Types: 1 metadata (bincode of
//! [`Metadata`]), 2 one raft `Entry`, 3 `HardState`, 4 snapshot marker (`SnapshotMetadata`), the
//! last three as protobuf bytes, 5 padding, 6 a run of entries (each `Ready`'s entries are one
//! run), 7 a sync mark (how many bytes of the segment a completed sync covered), 8 a snapshot
//! marker that resets the log, 9 the end of a segment, naming the next one, 10 the promise of
//! one (see `record.rs`). Every segment begins with a header: the metadata record, then in every
//! segment after the first the newest snapshot marker (if any) and the hard state current when
//! it was created, so that the oldest segments can be deleted without losing them, then the
//! promise that the segment will end naming the next one, and last a sync mark covering the
//! header. [`Wal::seal_format`] rotates a WAL whose newest segment an older build wrote, without
//! that promise, so that once this build has started on a WAL, builds before the promise refuse
//! it (they stop at its record type) instead of skipping the entries they cannot read. A start
//! calls it only once it has judged the WAL its own: a refused one leaves it as it was.
//!
//! Replay reads the segments in order: an entry with index `i` discards any held entries with
//! index `>= i` (raft overwrote an uncommitted suffix), a reset marker discards every entry
//! held, the last hard state wins, and markers are collected. See `replay.rs` for which damage
//! is an unsynced tail (cut) and which is corruption (refused).
//!
//! # Durability (fsync rules)
//! - [`Wal::save`] frames the whole batch in one buffer and writes it with one `write_all`, then
//!   calls `sync_data` once if asked (raft-rs `Ready::must_sync`): never one sync per entry.
//!   A synced write that would leave less room in its last page than it took itself (or than
//!   the recent synced writes took) is padded to the page boundary: the next write then starts
//!   on a fresh page rather than sending this one's last page to the disk again (under load,
//!   that halves the WAL's disk traffic; one small write per sync, a lone client's, keeps
//!   filling its page instead).
//! - Where the file system allows it, the active segment is written around the page cache
//!   (`O_DIRECT`) in whole physical sectors of the disk, and the padding above goes to the
//!   sector boundary. On a disk whose physical sector is 512 bytes (most NVMe drives report
//!   their power-fail atomic unit so) a sync then sends 512 bytes for a lone client's PUT where
//!   the page cache sends 4 KiB; on one with 4 KiB physical sectors nothing changes
//!   ([`WalOptions::direct_io`], `--wal-direct-io`; see `segment.rs`). Records saved without a
//!   sync are then held in memory until the next synced write (or a clean close): a crash of
//!   the process loses them, as a power loss may lose any of them in either mode.
//! - Every completed sync of the active segment is followed by a sync mark (written, not
//!   synced: the next sync covers it) saying that everything before it is on disk, so that
//!   replay can tell what a sync covered (see `replay.rs`). [`Wal::open`] syncs the active
//!   segment and marks it so (writing the mark out at once, also for direct writes), so that
//!   everything it replayed counts as synced.
//! - [`Wal::save_snapshot_marker`] and [`Wal::save_snapshot_reset`] always sync.
//! - Creating a segment: write its header to `<name>.tmp`, sync it, sync the directory, rename,
//!   sync the directory. Between the first sync of the directory and the rename, a rotation
//!   ends the old segment with a record naming the new one, cuts it back to its records and
//!   syncs it, because only the last segment may end in a torn record or in zeros, and so that
//!   a newest segment that goes missing later is noticed (see `replay.rs`).
//! - [`Wal::open`] syncs the directory: a creation or rotation whose process died before its
//!   last directory sync left a segment name that is not yet durable.
//! - [`Wal::create`] creates the directory with its parents synced; [`Wal::release_to`] syncs
//!   the directory after deleting segments (on a real disk, on a thread of its own: nothing
//!   depends on a removal being durable); a torn-tail repair syncs the truncated file.
//! - A failed sync is final ("fsyncgate": after a failed fsync the kernel may have dropped the
//!   dirty pages, and a retry can report success). The call returns [`Error::SyncFailed`]; the
//!   WAL is then poisoned and every later call returns [`Error::Poisoned`]. The node must stop
//!   and recover from what is on disk. A failed write poisons it the same way.

mod error;
mod record;
mod replay;
mod segment;
mod writer;

use crate::disk::IoError;
use std::path::{Path, PathBuf};

pub use error::Error;
pub use raft::eraftpb::{Entry, HardState, SnapshotMetadata};
pub use record::{DecodeError, EncodeError, Record};
pub use replay::TornTail;
pub use segment::segment_name;

use crate::disk::reaper::Reaper;
use crate::disk::{DiskFile, FileSystem, SharedFs, StdFs};
use record::RecordRef;
use segment::{Segment, SegmentWriter, Syncer};
use std::sync::{Arc, Mutex};

/// The page size synced writes are aligned to (the page cache's, and ext4's block size).
pub const PAGE_SIZE: u64 = 4096;

/// Default size at which the active segment is replaced: 64 MiB, as etcd.
pub const DEFAULT_SEGMENT_SIZE: u64 = 64 * 1024 * 1024;

/// A reusable write buffer larger than this is shrunk after use, so one huge batch does not
/// pin its memory for the life of the node.
const BUF_KEEP: usize = 4 * 1024 * 1024;

/// The node's identity, written as the first record of every segment.
#[derive(Clone, Debug, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct Metadata {
    /// Raft ID of this node.
    pub node_id: u64,
    /// ID of the cluster the node belongs to.
    pub cluster_id: u64,
    /// This node's peer URL when the WAL was created.
    pub peer_url: String,
    /// The --cluster list the cluster was bootstrapped from; empty for a node that joined.
    pub initial_cluster: Vec<String>,
    /// For a node that joined on an empty data dir: the last entry the members that admitted
    /// it had applied. Written after the other fields only when set, so that the WAL of
    /// every other node reads as it did before.
    #[serde(skip)]
    pub joined_at: Option<JoinedAt>,
}

/// The last entry the members that admitted a joining node had applied, so committed: until
/// the node's own log commits that far, it votes for no candidate whose log ends before it,
/// as a voter holding that entry would not. (Its log is empty when it joins, and raft grants
/// an empty log's vote to any candidate: a member removed while cut off, still running with
/// the old voters, would win with it, its log missing committed entries.)
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct JoinedAt {
    /// The entry's index.
    pub index: u64,
    /// The entry's term.
    pub term: u64,
    /// The admitters' current term, in which the node starts: a start that finds a lower one
    /// in the WAL (the process stopped before it wrote its first hard state) starts in it
    /// again, so that it follows no leader of an earlier term.
    pub in_term: u64,
}

impl JoinedAt {
    /// Whether a log whose last entry is at `index` in term `term` ends before this entry, by
    /// raft's comparison (the later term first, then the longer log).
    pub fn is_after(&self, term: u64, index: u64) -> bool {
        (term, index) < (self.term, self.index)
    }
}

/// Default step by which the active segment's file is extended ahead of its records.
pub const DEFAULT_PREALLOCATE: u64 = 4 * 1024 * 1024;

/// Tuning of a [`Wal`].
#[derive(Clone, Copy, Debug)]
pub struct WalOptions {
    /// The active segment is replaced once a write leaves it at least this long. Segments can
    /// exceed it by up to one batch.
    pub segment_size: u64,
    /// The active segment's file is extended ahead of its records in steps of this many bytes
    /// (sparsely: nothing is written), so that most syncs need not record a new file size.
    /// 0 turns it off.
    pub preallocate: u64,
    /// Write the active segment around the page cache, in whole physical sectors, where the file
    /// system allows it (see `segment.rs`); through the page cache otherwise.
    pub direct_io: bool,
}

impl Default for WalOptions {
    fn default() -> Self {
        WalOptions {
            segment_size: DEFAULT_SEGMENT_SIZE,
            preallocate: DEFAULT_PREALLOCATE,
            direct_io: true,
        }
    }
}

/// What [`Wal::open`] read back.
#[derive(Debug)]
pub struct WalContents {
    /// The metadata the WAL was created with.
    pub metadata: Metadata,
    /// The last hard state written (default if none).
    pub hard_state: HardState,
    /// Every snapshot marker still in the WAL, oldest first.
    pub snapshot_markers: Vec<SnapshotMetadata>,
    /// All entries in the retained segments, strictly increasing by index, overwrites resolved.
    entries: Vec<Entry>,
    /// See [`WalContents::last_written`].
    last_written: u64,
    dir: PathBuf,
}

impl WalContents {
    /// The entries with index > `index`, which must be contiguous from `index + 1`.
    ///
    /// Fails with [`Error::MissingEntries`] if the WAL holds a later entry but not `index + 1`
    /// (entries between the snapshot and the retained log are gone) or has a hole further on.
    /// Empty if the WAL holds nothing after `index` (e.g. the snapshot is the newest state).
    pub fn entries_after(&self, index: u64) -> Result<&[Entry], Error> {
        let start = self.entries.partition_point(|e| e.index <= index);
        let tail = &self.entries[start..];
        for (want, e) in (index + 1..).zip(tail) {
            if e.index != want {
                return Err(Error::MissingEntries {
                    dir: self.dir.clone(),
                    missing: want,
                    next: e.index,
                });
            }
        }
        Ok(tail)
    }

    /// The index of the last entry record in the WAL (0 if none), as `dump` shows it: where
    /// the WAL's own entries end, even where a snapshot from the leader replaced the log
    /// after them (which then holds none of them).
    pub fn last_written(&self) -> u64 {
        self.last_written
    }

    /// All entries held, strictly increasing by index; may have holes below the newest
    /// snapshot marker (where a snapshot from the leader replaced the log). For the dump tool.
    pub fn entries(&self) -> &[Entry] {
        &self.entries
    }

    /// The last index of the log as raft sees it: the higher of the last entry's index and the
    /// newest snapshot marker's index (0 for an empty WAL).
    pub fn last_index(&self) -> u64 {
        let entry = self.entries.last().map_or(0, |e| e.index);
        let snap = self.snapshot_markers.last().map_or(0, |m| m.index);
        entry.max(snap)
    }
}

/// An open write-ahead log, ready to append. See the module documentation.
pub struct Wal {
    fs: SharedFs,
    dir: PathBuf,
    opts: WalOptions,
    metadata: Metadata,
    /// All retained segments in order; the last one is active and `writer` appends to it.
    segments: Vec<Segment>,
    writer: SegmentWriter,
    /// Reused for every batch, so a steady load does not allocate.
    buf: Vec<u8>,
    /// Recent size of a synced write: whether the next one will fit in what a write leaves of
    /// its page.
    typical_write: u64,
    /// The last hard state written, repeated in the header of the next segment.
    hard_state: HardState,
    /// The newest snapshot marker written, repeated in the header of the next segment.
    last_marker: Option<SnapshotMetadata>,
    /// Highest of the last entry index written and the newest marker's index: the next
    /// segment is named after `last_index + 1`. All live entries of a segment are below the
    /// next segment's name, which is what makes [`Wal::release_to`] safe.
    last_index: u64,
    /// Set by a failed sync or write: the file or directory involved.
    poisoned: Option<PathBuf>,
    /// The newest segment was written by an older build (its header lacks the `chained`
    /// record), which would still start on this WAL: see [`Wal::seal_format`].
    older_newest: bool,
    syncer: Syncer,
    /// Removes released segments where the file system says to do it on another thread.
    reaper: Reaper,
    /// Released segments the reaper could not remove yet, oldest first: each later removal
    /// tries them first, and removes no newer one while one of them is still there.
    stranded: Arc<Mutex<Vec<PathBuf>>>,
}

// By hand, so that logging a `Wal` does not print its write buffer.
impl std::fmt::Debug for Wal {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Wal")
            .field("dir", &self.dir)
            .field("segments", &self.segments.len())
            .field("active", &self.active().path)
            .field("last_index", &self.last_index)
            .field("poisoned", &self.poisoned)
            .finish_non_exhaustive()
    }
}

/// Writes `bytes` back where they were read (`at`), before the sync that open makes claim them.
///
/// They may be in the page cache only, and there marked clean although never written: on
/// Linux a failed sync (the one that poisoned the WAL before the restart) marks the pages it
/// could not write clean, so a sync on open would succeed without writing them, and the sync
/// mark after it would promise bytes that a power loss then takes back. Writing them again
/// makes them dirty; if the cache had dropped them instead, replay read the disk's bytes and
/// this writes those, unchanged.
fn rewrite(f: &mut dyn DiskFile, path: &Path, (at, bytes): &(u64, Vec<u8>)) -> Result<(), Error> {
    if bytes.is_empty() {
        return Ok(());
    }
    Ok(f.write_all_at(bytes, *at).map_err(IoError::at(path))?)
}

/// A segment header (see the module doc) for a segment at `path`: `records`, the promise that
/// the segment will end naming the next one, then a sync mark covering them.
fn segment_header(path: &Path, records: &[RecordRef<'_>]) -> Result<Vec<u8>, Error> {
    let mut header = Vec::new();
    let encode = |header: &mut Vec<u8>, rec| {
        record::encode(header, 0, rec).map_err(|source| Error::Encode {
            path: path.to_path_buf(),
            source,
        })
    };
    for rec in records {
        encode(&mut header, *rec)?;
    }
    // The rotation that ends this segment writes the record it promises: replay holds a
    // segment to it even where no predecessor ends so, as the first one listed.
    encode(&mut header, RecordRef::Chained)?;
    // The header is synced before the segment gets its name: all of it is covered.
    let covered = header.len() as u64;
    encode(&mut header, RecordRef::Synced(covered))?;
    Ok(header)
}

impl Wal {
    /// Whether `dir` holds at least one `*.wal` segment.
    pub fn exists(dir: &Path) -> bool {
        Wal::exists_on(&StdFs, dir)
    }

    /// [`Wal::exists`] on the file system `fs`.
    pub fn exists_on(fs: &dyn FileSystem, dir: &Path) -> bool {
        fs.list_dir(dir).is_ok_and(|names| {
            names
                .iter()
                .any(|n| segment::parse_segment_name(n).is_some())
        })
    }

    /// Creates a WAL in `dir` (created with its parents if needed) whose first segment holds
    /// the metadata record, synced, with the directory synced.
    pub fn create(dir: &Path, meta: &Metadata, opts: WalOptions) -> Result<Wal, Error> {
        Wal::create_on(StdFs::shared(), dir, meta, opts)
    }

    /// [`Wal::create`] on the file system `fs`.
    pub fn create_on(
        fs: SharedFs,
        dir: &Path,
        meta: &Metadata,
        opts: WalOptions,
    ) -> Result<Wal, Error> {
        fs.create_dir_all(dir).map_err(IoError::at(dir))?;
        if Wal::exists_on(&*fs, dir) {
            return Err(Error::AlreadyExists {
                dir: dir.to_path_buf(),
            });
        }
        let syncer = Syncer::default();
        let first = dir.join(segment::segment_name(0, 0));
        let header = segment_header(&first, &[RecordRef::Metadata(meta)])?;
        let (seg, writer) = segment::create_segment(&*fs, dir, 0, 0, &header, &opts, &syncer)?;
        Ok(Wal {
            fs,
            dir: dir.to_path_buf(),
            opts,
            metadata: meta.clone(),
            segments: vec![seg],
            writer,
            buf: Vec::new(),
            typical_write: 0,
            hard_state: HardState::default(),
            last_marker: None,
            last_index: 0,
            poisoned: None,
            older_newest: false,
            syncer,
            reaper: Reaper::new("wal-reaper"),
            stranded: Arc::default(),
        })
    }

    /// Opens the WAL in `dir`: replays every segment, cuts a damaged unsynced tail off the last
    /// one (with a warning), and returns the WAL ready to append together with what it holds.
    ///
    /// Leaves a WAL whose newest segment an older build wrote as that build can read it: the
    /// caller seals it with [`Wal::seal_format`] once it has judged the WAL to be its own.
    ///
    /// Fails with [`Error::NotFound`] if there is no segment, with [`Error::MissingSegments`]
    /// where segments are missing between others, and with [`Error::Corrupt`] for damage that
    /// is not an unsynced tail; in each case nothing on disk is modified, except
    /// that a rotation a crash interrupted is finished first (the new segment's header was
    /// durable under its temporary name, and the old segment named it), which the replay
    /// after it may still find damage beyond.
    pub fn open(dir: &Path, opts: WalOptions) -> Result<(Wal, WalContents), Error> {
        Wal::open_on(StdFs::shared(), dir, opts)
    }

    /// [`Wal::open`] on the file system `fs`.
    pub fn open_on(
        fs: SharedFs,
        dir: &Path,
        opts: WalOptions,
    ) -> Result<(Wal, WalContents), Error> {
        let mut r = replay::replay(&*fs, dir)?;
        let syncer = Syncer::default();
        if let Some((tmp, path)) = r.unfinished.take() {
            // The last segment was ended, naming this one, after its header was durable
            // under the temporary name: nothing was written to it, and its header is checked
            // by the replay that follows. The old segment stops being the last one, so first
            // its end goes to the disk, cut back to its records: the rotation may have stopped
            // before it was synced (a failed sync; the process killed), and only the last
            // segment may end in a torn record or in zeros.
            tracing::warn!(
                path = %path.display(),
                "finishing a new WAL segment that a crash interrupted"
            );
            if let Some(old) = r.segments.last() {
                let mut f = fs.open(&old.path).map_err(IoError::at(&old.path))?;
                f.set_len(old.len).map_err(IoError::at(&old.path))?;
                rewrite(&mut *f, &old.path, &r.unsynced)?;
                syncer.sync_file(&mut *f, &old.path)?;
            }
            fs.rename(&tmp, &path).map_err(IoError::at(&path))?;
            syncer.sync_dir(&*fs, dir)?;
            r = replay::replay(&*fs, dir)?;
        }
        let mut segments = r.segments;
        if let Some(torn) = &r.torn {
            tracing::warn!(
                path = %torn.path.display(),
                offset = torn.offset,
                bytes_cut = torn.file_len - torn.offset,
                reason = %torn.reason,
                "truncating a torn record at the end of the WAL (an append that was never \
                 synced: a crash interrupted it, or it failed, as on a full disk; the bytes cut \
                 include the unused tail the file was extended by ahead of its records)"
            );
            let mut f = fs.open(&torn.path).map_err(IoError::at(&torn.path))?;
            f.set_len(torn.offset).map_err(IoError::at(&torn.path))?;
            syncer.sync_file(&mut *f, &torn.path)?;
            if let Some(last) = segments.last_mut() {
                last.len = torn.offset;
            }
            let (from, bytes) = &mut r.unsynced;
            bytes.truncate(torn.offset.saturating_sub(*from) as usize);
        }
        // Leftovers of a segment creation that a crash interrupted: never renamed, so never
        // part of the log.
        let tmps = segment::list_tmp_files(&*fs, dir)?;
        for tmp in &tmps {
            tracing::warn!(path = %tmp.display(), "removing an unfinished WAL segment");
            fs.remove_file(tmp).map_err(IoError::at(tmp))?;
        }
        // Always, not only after removing leftovers: a process that died between renaming a
        // segment into place and syncing the directory left a name that is not durable, and
        // syncs of the file's data need not make it so (a power loss after this start would
        // take the segment, and everything synced into it, away).
        syncer.sync_dir(&*fs, dir)?;
        let Some(active) = segments.last() else {
            // replay() fails on an empty directory; kept as an error rather than a panic.
            return Err(Error::NotFound {
                dir: dir.to_path_buf(),
            });
        };
        if !r.ends_synced {
            // The sync below (`sync_active`) must write these: see `rewrite`. Any handle's
            // sync covers the file's pages.
            let mut f = fs.open(&active.path).map_err(IoError::at(&active.path))?;
            rewrite(&mut *f, &active.path, &r.unsynced)?;
        }
        let writer = SegmentWriter::open_at(&*fs, &active.path, active.len, &opts)?;
        let last_entry = r.entries.last().map_or(0, |e| e.index);
        let last_marker = r.markers.last().cloned();
        let last_index = last_entry.max(last_marker.as_ref().map_or(0, |m| m.index));
        let mut wal = Wal {
            fs,
            dir: dir.to_path_buf(),
            opts,
            metadata: r.metadata.clone(),
            segments,
            writer,
            buf: Vec::new(),
            typical_write: 0,
            hard_state: r.hard_state.clone(),
            last_marker,
            last_index,
            poisoned: None,
            older_newest: !r.last_chained,
            syncer,
            reaper: Reaper::new("wal-reaper"),
            stranded: Arc::default(),
        };
        // What was replayed may sit in the page cache only (the process died, not the
        // machine): sync it, and say so with a sync mark, so that damage to it is never
        // mistaken for an unsynced tail later. Not needed if the log ends with such a mark.
        if !r.ends_synced {
            wal.sync_active()?;
            wal.flush_held()?;
        }
        let contents = WalContents {
            metadata: r.metadata,
            hard_state: r.hard_state,
            snapshot_markers: r.markers,
            entries: r.entries,
            last_written: r.last_written,
            dir: dir.to_path_buf(),
        };
        Ok((wal, contents))
    }

    /// Starts a segment of this build's format if an older build wrote the newest one (its
    /// header lacks the `chained` record), so that builds before this format refuse the WAL
    /// from then on: one new segment, the first time only. Durable when this returns.
    ///
    /// Call it once the start has judged the WAL to be usable and its own, before the node
    /// serves: a start refused (another node's data, a snapshot it will not load) must leave
    /// the older build able to start there again, as an operator going back to it would.
    pub fn seal_format(&mut self) -> Result<(), Error> {
        self.check_poisoned()?;
        if !self.older_newest {
            return Ok(());
        }
        // Nothing in the WAL stops that build from starting on it again: it would skip the
        // entries it cannot decode (values that are not UTF-8, for one) and serve without
        // them, for good once it took a snapshot (a user's campaign). A new segment, of this
        // build's format, ends that whether or not a write ever fills the old one: builds
        // before it refuse a header's `chained` record. Durable through the steps of any
        // rotation, which a crash can stop at any point.
        let old = self.active().path.clone();
        self.rotate().map_err(|e| self.poison(e))?;
        tracing::info!(
            old = %old.display(),
            new = %self.active().path.display(),
            "the newest WAL segment was written by an older build: started one of this \
             build's format, which builds before it refuse (they would skip the entries they \
             cannot read)"
        );
        Ok(())
    }

    /// Appends all `entries`, then `hard_state` if given, as one write; if `sync` is true,
    /// calls `sync_data` once, so the batch is on disk when this returns `Ok`. Rotates to a
    /// new segment afterwards if the active one reached the segment size.
    ///
    /// `entries` are a raft `Ready`'s entries: consecutive indexes, the first possibly at or
    /// below the last index written (raft overwriting an uncommitted suffix).
    pub fn save(
        &mut self,
        hard_state: Option<&HardState>,
        entries: &[Entry],
        sync: bool,
    ) -> Result<(), Error> {
        self.check_poisoned()?;
        let base = self.active().len;
        self.buf.clear();
        let records = (!entries.is_empty())
            .then_some(RecordRef::Entries(entries))
            .into_iter()
            .chain(hard_state.map(RecordRef::HardState));
        for rec in records {
            self.encode(base, rec)?;
        }
        if sync {
            self.pad(base)?;
        }
        self.write_buf()?;
        if let Some(last) = entries.last() {
            self.last_index = last.index;
        }
        if let Some(hs) = hard_state {
            self.hard_state = hs.clone();
        }
        if sync {
            self.sync_active()?;
        }
        self.maybe_rotate()
    }

    /// Appends a snapshot marker and syncs. Call it after the snapshot file itself was saved
    /// and synced: a marker promises that the snapshot exists.
    pub fn save_snapshot_marker(&mut self, meta: &SnapshotMetadata) -> Result<(), Error> {
        self.save_marker(RecordRef::Snapshot(meta), meta)
    }

    /// Appends the marker of a snapshot installed from the leader, which replaced the whole
    /// log (raft-rs clears its log when it installs one), and syncs. Replay drops every entry
    /// written before it, so a crash before the next append cannot bring back entries that
    /// raft discarded. Call it after the snapshot file was saved and synced.
    pub fn save_snapshot_reset(&mut self, meta: &SnapshotMetadata) -> Result<(), Error> {
        self.save_marker(RecordRef::SnapshotReset(meta), meta)
    }

    fn save_marker(&mut self, rec: RecordRef<'_>, meta: &SnapshotMetadata) -> Result<(), Error> {
        self.check_poisoned()?;
        let base = self.active().len;
        self.buf.clear();
        self.encode(base, rec)?;
        self.pad(base)?;
        self.write_buf()?;
        self.last_index = self.last_index.max(meta.index);
        self.last_marker = Some(meta.clone());
        self.sync_active()?;
        self.maybe_rotate()
    }

    /// Deletes the oldest segments whose entries all have an index below `index`, and syncs the
    /// directory: on the caller's thread, or on one of its own where the file system says so
    /// ([`FileSystem::background_removal`]: a real disk), in which case they are no longer the
    /// WAL's at once but may stay on the disk a little longer (see [`crate::disk::reaper`];
    /// [`Wal::wait_for_removals`] waits for them). The active segment is never deleted, so the
    /// current segment and its header (metadata, newest marker, hard state) always remain.
    ///
    /// Call it with a snapshot's index after the snapshot and its marker are durable.
    pub fn release_to(&mut self, index: u64) -> Result<(), Error> {
        self.check_poisoned()?;
        // Segment k holds no live entry at or above the next segment's first index (see
        // `last_index`). Only a prefix is removed, so the first segment left starts with a
        // complete header.
        let n = self
            .segments
            .windows(2)
            .take_while(|pair| pair[1].first_index <= index)
            .count();
        if n == 0 {
            return Ok(());
        }
        if self.fs.background_removal() {
            let released: Vec<PathBuf> = self.segments.drain(..n).map(|s| s.path).collect();
            let (fs, dir) = (Arc::clone(&self.fs), self.dir.clone());
            let stranded = Arc::clone(&self.stranded);
            self.reaper.run(Box::new(move || {
                remove_in_order(&*fs, &dir, &stranded, released)
            }));
            return Ok(());
        }
        for _ in 0..n {
            let path = self.segments[0].path.clone();
            // Oldest first: a crash part way leaves a consecutive run of segments. One already
            // gone (an operator freeing a full disk) is as good as removed.
            match self.fs.remove_file(&path) {
                Err(e) if e.kind() != std::io::ErrorKind::NotFound => {
                    return Err(IoError::at(&path)(e).into());
                }
                _ => {}
            }
            self.segments.remove(0);
        }
        tracing::debug!(index, removed = n, "released WAL segments");
        if let Err(e) = self.syncer.sync_dir(&*self.fs, &self.dir) {
            return Err(self.poison(e));
        }
        Ok(())
    }

    /// Returns once the segments released so far are gone from the disk (they may be removed
    /// on a thread of their own: see [`crate::disk::reaper`]).
    pub fn wait_for_removals(&mut self) {
        self.reaper.wait();
    }

    /// Sum of the lengths of the segment files.
    pub fn size_on_disk(&self) -> u64 {
        self.segments.iter().map(|s| s.len).sum()
    }

    /// The WAL directory.
    pub fn dir(&self) -> &Path {
        &self.dir
    }

    /// The metadata the WAL was created with.
    pub fn metadata(&self) -> &Metadata {
        &self.metadata
    }

    /// The segment files, oldest first; the last is the active one.
    pub fn segment_paths(&self) -> Vec<PathBuf> {
        self.segments.iter().map(|s| s.path.clone()).collect()
    }

    /// Test seam: makes every later sync fail (as a real `fsync` error would), so callers can
    /// test that a failed sync stops the node.
    #[cfg(test)]
    pub fn inject_sync_failure(&mut self) {
        self.syncer.fail = true;
    }

    fn active(&self) -> &Segment {
        // `segments` is never empty: create/open start with one, release keeps the last.
        &self.segments[self.segments.len() - 1]
    }

    fn check_poisoned(&self) -> Result<(), Error> {
        match &self.poisoned {
            Some(path) => Err(Error::Poisoned { path: path.clone() }),
            None => Ok(()),
        }
    }

    /// Marks the WAL unusable after `err` (a failed write or sync) and returns `err`.
    fn poison(&mut self, err: Error) -> Error {
        let path = match &err {
            Error::Io(IoError { path, .. }) | Error::SyncFailed { path, .. } => path.clone(),
            _ => self.active().path.clone(),
        };
        tracing::error!(path = %path.display(), error = %err, "WAL poisoned");
        self.poisoned = Some(path);
        err
    }
}

/// Visits every record of every segment in order with its file, offset and length, for a
/// `dump` tool.
///
/// Read-only: nothing is repaired. Returns [`Error::Corrupt`] naming the file and offset at the
/// first torn or corrupt record, after having visited all the good records before it. Its
/// reason says what a start would make of that record (an unsynced tail it cuts, or damage
/// it refuses, and why) and names the newer segments left unread. A record of a newer build
/// stops it as [`Error::NewerBuild`], which names them too.
pub fn scan(dir: &Path, visit: impl FnMut(&Path, u64, u64, &Record)) -> Result<(), Error> {
    replay::scan(&StdFs, dir, visit)
}

/// [`scan`], but where the records end in an unsynced tail of the newest segment, which a
/// start cuts and goes on from, that is no error: the tail is returned, for `dump` to say what
/// a start would do, and judge the log before it as a start would (it exited 1 on a tail a
/// start cuts with a warning: a hands-on campaign). Damage a start refuses is still an error.
pub fn scan_to_tail(
    dir: &Path,
    visit: impl FnMut(&Path, u64, u64, &Record),
) -> Result<Option<TornTail>, Error> {
    replay::scan_to_tail(&StdFs, dir, visit)
}

/// [`scan`] on the file system `fs`.
pub fn scan_on(
    fs: &dyn FileSystem,
    dir: &Path,
    visit: impl FnMut(&Path, u64, u64, &Record),
) -> Result<(), Error> {
    replay::scan(fs, dir, visit)
}

/// The metadata record that begins the WAL in `dir` (its first segment's), read alone: a
/// start's cheap check that the WAL is its node's, before it replays it in full. Read-only.
///
/// `None` without a segment, or where the first record cannot be read as a whole metadata
/// record: the replay judges such damage, and names it.
pub fn read_metadata_on(fs: &dyn FileSystem, dir: &Path) -> Option<Metadata> {
    replay::read_metadata(fs, dir)
}

/// What [`Wal::open`] would read back from the WAL in `dir`, read-only: a start's check of
/// the log before it replays it, which must leave the repairs to the open. A torn tail is
/// left where it is (what comes before it is what the open keeps). `Ok(None)` where the open
/// would first finish a rotation a crash interrupted: it renames the new segment into place
/// and reads again, judging that segment's header, which this does not read.
pub fn read_contents_on(fs: &dyn FileSystem, dir: &Path) -> Result<Option<WalContents>, Error> {
    let r = replay::replay(fs, dir)?;
    if r.unfinished.is_some() {
        return Ok(None);
    }
    Ok(Some(WalContents {
        metadata: r.metadata,
        hard_state: r.hard_state,
        snapshot_markers: r.markers,
        entries: r.entries,
        last_written: r.last_written,
        dir: dir.to_path_buf(),
    }))
}

/// Removes released segments `paths` oldest first, after those an earlier removal left
/// (`stranded`), stopping at the first failure, then syncs `dir`: the reaper's chore. What it
/// cannot remove is kept in `stranded` for the next removal, so the segments left on the disk
/// stay one consecutive run: with a newer run removed past an older one left, the next start
/// found a gap in the sequence and refused to run (found by a review). Failures only leave
/// disk space in use until the next release or start, so they are logged, naming the file.
fn remove_in_order(
    fs: &dyn FileSystem,
    dir: &Path,
    stranded: &Mutex<Vec<PathBuf>>,
    paths: Vec<PathBuf>,
) {
    // Plain paths: what a panicking chore left is still usable.
    let mut left = stranded.lock().unwrap_or_else(|p| p.into_inner());
    left.extend(paths);
    let mut removed = 0;
    for path in left.iter() {
        match fs.remove_file(path) {
            // Already gone (an operator freeing a full disk): as good as removed.
            Err(err) if err.kind() != std::io::ErrorKind::NotFound => {
                tracing::warn!(
                    path = %path.display(),
                    %err,
                    "cannot remove a released WAL segment; it is tried again at the next release, \
                     or released again after the next start"
                );
                break;
            }
            _ => removed += 1,
        }
    }
    left.drain(..removed);
    let stranded = left.len();
    drop(left);
    if let Err(err) = fs.sync_dir(dir) {
        tracing::warn!(
            dir = %dir.display(),
            %err,
            "cannot sync the WAL folder after removing segments"
        );
    }
    tracing::debug!(removed, stranded, "released WAL segments removed");
}

#[cfg(test)]
pub(crate) mod tests {
    use super::*;
    use raft::eraftpb::ConfState;
    use std::fs;
    use tempfile::TempDir;

    /// Options for tests that look at exact file layouts: no preallocation, so a segment file
    /// ends with its last record, and writes through the page cache, so that it holds every
    /// record as soon as it is saved.
    pub(crate) fn opts(segment_size: u64) -> WalOptions {
        WalOptions {
            segment_size,
            preallocate: 0,
            direct_io: false,
        }
    }

    /// Options for tests on `MemFs` that rotate often and take the direct-write path: small
    /// segments, preallocated as on a real disk.
    fn direct_opts(segment_size: u64) -> WalOptions {
        WalOptions {
            segment_size,
            preallocate: 4096,
            direct_io: true,
        }
    }

    pub(crate) fn meta() -> Metadata {
        Metadata {
            node_id: 1,
            cluster_id: 0x1000,
            peer_url: "http://127.0.0.1:12379".into(),
            initial_cluster: vec!["http://127.0.0.1:12379".into()],
            joined_at: None,
        }
    }

    pub(crate) fn ent(index: u64, term: u64) -> Entry {
        Entry {
            index,
            term,
            data: format!("entry {index} of term {term}").into_bytes().into(),
            ..Default::default()
        }
    }

    pub(crate) fn ents(indexes: std::ops::RangeInclusive<u64>, term: u64) -> Vec<Entry> {
        indexes.map(|i| ent(i, term)).collect()
    }

    pub(crate) fn hs(term: u64, vote: u64, commit: u64) -> HardState {
        HardState {
            term,
            vote,
            commit,
            ..Default::default()
        }
    }

    pub(crate) fn marker(term: u64, index: u64) -> SnapshotMetadata {
        let mut m = SnapshotMetadata {
            term,
            index,
            ..Default::default()
        };
        m.set_conf_state(ConfState::from((vec![1, 2, 3], vec![])));
        m
    }

    /// Writes, right after the last record of the WAL in `dir`, a record whose checksum holds
    /// but whose type this build does not know, as a newer build would; returns its segment
    /// and offset.
    pub(crate) fn put_newer_record(dir: &Path) -> (PathBuf, u64) {
        let mut last = None;
        scan(dir, |path, off, len, _| {
            last = Some((path.to_path_buf(), off + len))
        })
        .expect("a readable WAL");
        let (path, at) = last.expect("a WAL has a metadata record at least");
        put_newer_record_at(&path, at);
        (path, at)
    }

    /// Writes such a record at offset `at` of segment `path`, over what was there.
    pub(crate) fn put_newer_record_at(path: &Path, at: u64) {
        let mut bytes = fs::read(path).unwrap();
        let mut rec = Vec::new();
        record::encode_raw(&mut rec, at, record::TYPE_UNKNOWN, b"new");
        let at_usize = at as usize;
        bytes.resize(bytes.len().max(at_usize + rec.len()), 0);
        bytes[at_usize..at_usize + rec.len()].copy_from_slice(&rec);
        fs::write(path, &bytes).unwrap();
    }

    /// The file and reason of an error that must be [`Error::Corrupt`].
    pub(crate) fn corrupt_in(err: Error) -> (PathBuf, String) {
        match err {
            Error::Corrupt { path, reason, .. } => (path, reason),
            other => panic!("expected Corrupt, got {other:?}"),
        }
    }

    fn count_segments(dir: &Path) -> usize {
        segment::list_segments(&StdFs, dir).unwrap().len()
    }

    /// The first segment of a WAL as builds before the `chained` record wrote it: a header of
    /// the metadata and a sync mark covering it, then entries 1..=3 with a hard state, and the
    /// mark of their sync.
    fn segment_of_an_older_build() -> Vec<u8> {
        older_build_segment(&meta(), &ents(1..=3, 1), &hs(1, 1, 3))
    }

    /// The first segment of a WAL of `meta` as builds before the `chained` record wrote it: a
    /// header of the metadata and a sync mark covering it, then `entries` with `hard_state`,
    /// and the mark of their sync.
    pub(crate) fn older_build_segment(
        meta: &Metadata,
        entries: &[Entry],
        hard_state: &HardState,
    ) -> Vec<u8> {
        fn put(bytes: &mut Vec<u8>, rec: RecordRef<'_>) {
            // The buffer is the whole file: it starts at offset 0.
            record::encode(bytes, 0, rec).expect("a small record encodes");
        }
        fn mark(bytes: &mut Vec<u8>) {
            let synced = bytes.len() as u64;
            put(bytes, RecordRef::Synced(synced));
        }
        let mut bytes = Vec::new();
        put(&mut bytes, RecordRef::Metadata(meta));
        mark(&mut bytes);
        put(&mut bytes, RecordRef::Entries(entries));
        put(&mut bytes, RecordRef::HardState(hard_state));
        mark(&mut bytes);
        bytes
    }

    /// The kinds of the records of segment `path` of the WAL in `dir`.
    fn kinds_in(dir: &Path, path: &Path) -> Vec<&'static str> {
        let mut kinds = Vec::new();
        scan(dir, |p, _, _, r| {
            if p == path {
                kinds.push(r.kind())
            }
        })
        .unwrap();
        kinds
    }

    /// Sealing a WAL whose newest segment an older build wrote (no `chained` record in its
    /// header) starts one segment of this format before it returns, so that those builds
    /// refuse the WAL from then on, however little is written (a user's campaign: a node
    /// taken back to such a build skipped the entries it could not read, and served without
    /// them). Opening alone leaves the segment as it was, byte for byte (a start can still
    /// refuse the WAL: review 115, M1). The old segment keeps its records and ends naming the
    /// new one; a second open and seal starts no other; both give back the same; and
    /// retention treats the new segment, nearly empty, as any other.
    #[test]
    fn sealing_a_segment_of_an_older_build_starts_one_of_this_format_once() {
        let tmp = TempDir::new().unwrap();
        let first = tmp.path().join(segment_name(0, 0));
        let old = segment_of_an_older_build();
        fs::write(&first, &old).unwrap();
        assert!(!kinds_in(tmp.path(), &first).contains(&"chained"));

        let (wal, _) = Wal::open(tmp.path(), opts(1 << 20)).unwrap();
        assert_eq!(
            wal.segment_paths(),
            std::slice::from_ref(&first),
            "open alone starts none"
        );
        drop(wal);
        assert_eq!(
            fs::read(&first).unwrap(),
            old,
            "open alone changed the old segment"
        );

        let (mut wal, c) = Wal::open(tmp.path(), opts(1 << 20)).unwrap();
        wal.seal_format().unwrap();
        assert_eq!(c.entries_after(0).unwrap(), &ents(1..=3, 1)[..]);
        assert_eq!(c.hard_state, hs(1, 1, 3));
        let new = tmp.path().join(segment_name(1, 4));
        let segments = wal.segment_paths();
        assert_eq!(segments, [first.clone(), new.clone()]);
        drop(wal);
        let now = fs::read(&first).unwrap();
        assert_eq!(&now[..old.len()], &old[..], "the old records as they were");
        let kinds = kinds_in(tmp.path(), &first);
        assert_eq!(kinds.last(), Some(&"next"), "{kinds:?}");
        assert_eq!(kinds.len(), 6, "{kinds:?}");
        let header = ["metadata", "hardstate", "chained", "synced"];
        assert_eq!(kinds_in(tmp.path(), &new), header);
        let new_bytes = fs::read(&new).unwrap();

        let (mut wal, c) = Wal::open(tmp.path(), opts(1 << 20)).unwrap();
        wal.seal_format().unwrap();
        assert_eq!(wal.segment_paths(), segments, "a second seal starts none");
        assert_eq!(fs::read(&new).unwrap(), new_bytes);
        assert_eq!(c.entries_after(0).unwrap(), &ents(1..=3, 1)[..]);
        assert_eq!(c.hard_state, hs(1, 1, 3));

        wal.save(Some(&hs(1, 1, 5)), &ents(4..=5, 1), true).unwrap();
        wal.save_snapshot_marker(&marker(1, 3)).unwrap();
        wal.release_to(3).unwrap();
        assert_eq!(wal.segment_paths(), segments, "entry 3 is in the old one");
        wal.save_snapshot_marker(&marker(1, 4)).unwrap();
        wal.release_to(4).unwrap();
        wal.wait_for_removals();
        assert_eq!(wal.segment_paths(), std::slice::from_ref(&new));
        assert_eq!(wal.size_on_disk(), fs::metadata(&new).unwrap().len());
        assert!(!first.exists());
        drop(wal);
        let (wal, c) = Wal::open(tmp.path(), opts(1 << 20)).unwrap();
        assert_eq!(wal.segment_paths(), [new]);
        assert_eq!(c.entries_after(4).unwrap(), &ents(5..=5, 1)[..]);
        assert_eq!(c.hard_state, hs(1, 1, 5));
    }

    #[test]
    fn create_save_and_reopen_returns_everything() {
        let tmp = TempDir::new().unwrap();
        let dir = tmp.path().join("raftexample-1");
        assert!(!Wal::exists(&dir));
        let mut wal = Wal::create(&dir, &meta(), WalOptions::default()).unwrap();
        assert!(Wal::exists(&dir));
        assert_eq!(wal.dir(), dir);
        wal.save(Some(&hs(1, 1, 0)), &ents(1..=3, 1), true).unwrap();
        wal.save(Some(&hs(1, 1, 3)), &[], false).unwrap();
        wal.save_snapshot_marker(&marker(1, 2)).unwrap();
        wal.save(None, &ents(4..=4, 1), true).unwrap();
        let size = wal.size_on_disk();
        // The file runs ahead of its records, in preallocation steps.
        let file_len = fs::metadata(&wal.segment_paths()[0]).unwrap().len();
        assert_eq!(file_len, DEFAULT_PREALLOCATE);
        assert!(size < file_len);
        drop(wal);

        let (wal, c) = Wal::open(&dir, WalOptions::default()).unwrap();
        assert_eq!(wal.size_on_disk(), size);
        assert_eq!(c.metadata, meta());
        assert_eq!(wal.metadata(), &meta());
        assert_eq!(c.hard_state, hs(1, 1, 3));
        assert_eq!(c.snapshot_markers, vec![marker(1, 2)]);
        assert_eq!(c.entries_after(0).unwrap(), &ents(1..=4, 1)[..]);
        assert_eq!(c.entries_after(2).unwrap(), &ents(3..=4, 1)[..]);
        assert!(c.entries_after(4).unwrap().is_empty());
        assert!(c.entries_after(99).unwrap().is_empty());
        assert_eq!(c.last_index(), 4);
    }

    #[test]
    fn a_new_wal_has_only_its_metadata() {
        let tmp = TempDir::new().unwrap();
        drop(Wal::create(tmp.path(), &meta(), WalOptions::default()).unwrap());
        let (_wal, c) = Wal::open(tmp.path(), WalOptions::default()).unwrap();
        assert_eq!(c.metadata, meta());
        assert_eq!(c.hard_state, HardState::default());
        assert!(c.snapshot_markers.is_empty());
        assert!(c.entries_after(0).unwrap().is_empty());
        assert_eq!(c.last_index(), 0);
    }

    #[test]
    fn reopen_append_reopen() {
        let tmp = TempDir::new().unwrap();
        let mut wal = Wal::create(tmp.path(), &meta(), WalOptions::default()).unwrap();
        wal.save(Some(&hs(1, 1, 1)), &ents(1..=2, 1), true).unwrap();
        drop(wal);
        let (mut wal, c) = Wal::open(tmp.path(), WalOptions::default()).unwrap();
        assert_eq!(c.entries_after(0).unwrap(), &ents(1..=2, 1)[..]);
        wal.save(Some(&hs(2, 1, 2)), &ents(3..=5, 2), true).unwrap();
        drop(wal);
        let (_wal, c) = Wal::open(tmp.path(), WalOptions::default()).unwrap();
        let mut want = ents(1..=2, 1);
        want.extend(ents(3..=5, 2));
        assert_eq!(c.entries_after(0).unwrap(), &want[..]);
        assert_eq!(c.hard_state, hs(2, 1, 2));
    }

    #[test]
    fn unsynced_saves_are_read_back_after_a_clean_close() {
        let tmp = TempDir::new().unwrap();
        let mut wal = Wal::create(tmp.path(), &meta(), WalOptions::default()).unwrap();
        wal.save(None, &ents(1..=2, 1), false).unwrap();
        wal.save(Some(&hs(1, 0, 2)), &[], false).unwrap();
        drop(wal);
        let (_wal, c) = Wal::open(tmp.path(), WalOptions::default()).unwrap();
        assert_eq!(c.entries_after(0).unwrap().len(), 2);
        assert_eq!(c.hard_state, hs(1, 0, 2));
    }

    #[test]
    fn overwritten_entries_are_replaced_on_replay() {
        let tmp = TempDir::new().unwrap();
        let mut wal = Wal::create(tmp.path(), &meta(), WalOptions::default()).unwrap();
        wal.save(None, &ents(1..=5, 1), true).unwrap();
        // A new leader of term 2 replaced 3..=5 with a shorter suffix, then appended.
        wal.save(None, &ents(3..=4, 2), true).unwrap();
        wal.save(None, &ents(5..=6, 2), true).unwrap();
        // And term 3 rewrote 6.
        wal.save(None, &ents(6..=6, 3), true).unwrap();
        drop(wal);
        let (_wal, c) = Wal::open(tmp.path(), WalOptions::default()).unwrap();
        let mut want = ents(1..=2, 1);
        want.extend(ents(3..=5, 2));
        want.extend(ents(6..=6, 3));
        assert_eq!(c.entries_after(0).unwrap(), &want[..]);
        assert_eq!(c.last_index(), 6);
    }

    #[test]
    fn a_snapshot_from_the_leader_may_leave_a_hole_below_it() {
        let tmp = TempDir::new().unwrap();
        let mut wal = Wal::create(tmp.path(), &meta(), WalOptions::default()).unwrap();
        wal.save(Some(&hs(1, 1, 5)), &ents(1..=5, 1), true).unwrap();
        // A lagging follower gets a snapshot at 100, then entries after it.
        wal.save_snapshot_marker(&marker(2, 100)).unwrap();
        wal.save(Some(&hs(2, 2, 100)), &ents(101..=103, 2), true)
            .unwrap();
        drop(wal);
        let (_wal, c) = Wal::open(tmp.path(), WalOptions::default()).unwrap();
        assert_eq!(c.entries_after(100).unwrap(), &ents(101..=103, 2)[..]);
        match c.entries_after(3).unwrap_err() {
            Error::MissingEntries { dir, missing, next } => {
                assert_eq!((dir.as_path(), missing, next), (tmp.path(), 6, 101))
            }
            other => panic!("expected MissingEntries, got {other:?}"),
        }
        assert_eq!(c.last_index(), 103);
        // Crash right after the marker, before any new entry: the snapshot is the last index.
        let tmp2 = TempDir::new().unwrap();
        let mut wal = Wal::create(tmp2.path(), &meta(), WalOptions::default()).unwrap();
        wal.save(None, &ents(1..=5, 1), true).unwrap();
        wal.save_snapshot_marker(&marker(2, 100)).unwrap();
        drop(wal);
        let (_wal, c) = Wal::open(tmp2.path(), WalOptions::default()).unwrap();
        assert!(c.entries_after(100).unwrap().is_empty());
        assert_eq!(c.last_index(), 100);
    }

    /// raft-rs replaces its whole log when it installs a snapshot from the leader (the term
    /// at the snapshot's index did not match). A crash right after the marker must replay as
    /// the snapshot alone, not as the snapshot followed by the older term's entries after its
    /// index; entries appended after the marker survive, across a new segment too.
    #[test]
    fn a_snapshot_installed_from_the_leader_resets_the_log() {
        let tmp = TempDir::new().unwrap();
        let opts = opts(512);
        let mut wal = Wal::create(tmp.path(), &meta(), opts).unwrap();
        wal.save(Some(&hs(1, 1, 3)), &ents(1..=10, 1), true)
            .unwrap();
        wal.save_snapshot_reset(&marker(2, 5)).unwrap();
        drop(wal);
        let (mut wal, c) = Wal::open(tmp.path(), opts).unwrap();
        assert_eq!(c.snapshot_markers, vec![marker(2, 5)]);
        assert!(c.entries().is_empty(), "{:?}", c.entries());
        assert!(c.entries_after(5).unwrap().is_empty());
        assert_eq!(c.last_index(), 5);

        // The new leader's entries follow, and outlive a rotation (whose header repeats the
        // marker, but not as a reset, which would drop them).
        let segments = wal.segment_paths().len();
        wal.save(Some(&hs(2, 2, 5)), &ents(6..=20, 2), true)
            .unwrap();
        assert!(wal.segment_paths().len() > segments, "rotated");
        wal.save(None, &ents(21..=21, 2), true).unwrap();
        drop(wal);
        let (_wal, c) = Wal::open(tmp.path(), opts).unwrap();
        assert_eq!(c.entries_after(5).unwrap(), &ents(6..=21, 2)[..]);
        assert_eq!(c.snapshot_markers, vec![marker(2, 5)]);
    }

    #[test]
    fn segments_rotate_and_release_after_a_snapshot() {
        let tmp = TempDir::new().unwrap();
        let opts = opts(256);
        let mut wal = Wal::create(tmp.path(), &meta(), opts).unwrap();
        // Each save is well over 256 bytes, so each one rotates.
        for batch in 0..10u64 {
            let first = batch * 10 + 1;
            wal.save(
                Some(&hs(1, 1, first + 9)),
                &ents(first..=first + 9, 1),
                true,
            )
            .unwrap();
        }
        assert_eq!(count_segments(tmp.path()), 11);
        let names: Vec<_> = wal
            .segment_paths()
            .iter()
            .map(|p| p.file_name().unwrap().to_str().unwrap().to_string())
            .collect();
        assert_eq!(names[0], segment::segment_name(0, 0));
        assert_eq!(names[1], segment::segment_name(1, 11));
        assert_eq!(names[10], segment::segment_name(10, 101));
        let before = wal.size_on_disk();

        // Releasing below the second segment's first index removes nothing.
        wal.release_to(10).unwrap();
        wal.wait_for_removals();
        assert_eq!(count_segments(tmp.path()), 11);

        // A snapshot at 55: segments whose entries are all below 55 go (those holding
        // 1..=10, .., 41..=50); the one holding 51..=60 stays.
        wal.save_snapshot_marker(&marker(1, 55)).unwrap();
        wal.release_to(55).unwrap();
        wal.wait_for_removals();
        assert_eq!(count_segments(tmp.path()), 6);
        assert_eq!(wal.segment_paths().len(), 6);
        assert!(wal.size_on_disk() < before);
        drop(wal);

        let (mut wal, c) = Wal::open(tmp.path(), opts).unwrap();
        assert_eq!(c.metadata, meta());
        assert_eq!(c.hard_state, hs(1, 1, 100));
        assert_eq!(c.snapshot_markers.last(), Some(&marker(1, 55)));
        assert_eq!(c.entries_after(55).unwrap(), &ents(56..=100, 1)[..]);
        // Entries below the first retained one are gone, and asking for them says so.
        assert!(matches!(
            c.entries_after(10),
            Err(Error::MissingEntries {
                missing: 11,
                next: 51,
                ..
            })
        ));

        // Releasing everything keeps the active segment, whose header alone still gives back
        // the metadata, the newest marker and the hard state.
        wal.save_snapshot_marker(&marker(1, 100)).unwrap();
        wal.release_to(u64::MAX).unwrap();
        wal.wait_for_removals();
        assert_eq!(count_segments(tmp.path()), 1);
        drop(wal);
        let (_wal, c) = Wal::open(tmp.path(), opts).unwrap();
        assert_eq!(c.metadata, meta());
        assert_eq!(c.hard_state, hs(1, 1, 100));
        // Both markers were written into the segment that is still active.
        assert_eq!(c.snapshot_markers, vec![marker(1, 55), marker(1, 100)]);
        assert!(c.entries_after(100).unwrap().is_empty());
    }

    /// Three segments (each save rotates), then written no more.
    fn three_segments(dir: &Path) -> Vec<PathBuf> {
        let mut wal = Wal::create(dir, &meta(), opts(256)).unwrap();
        for batch in 0..2u64 {
            let first = batch * 10 + 1;
            wal.save(
                Some(&hs(1, 1, first + 9)),
                &ents(first..=first + 9, 1),
                true,
            )
            .unwrap();
        }
        let segs = wal.segment_paths();
        assert_eq!(segs.len(), 3);
        segs
    }

    /// The newest segment deleted (by hand, or lost with a disk's folder): the one before it
    /// names it as the next, so opening refuses, naming both files and the first index lost,
    /// and changes nothing; the older WALs had no such record and started without the lost
    /// entries. Two segments deleted: the same, one segment earlier.
    #[test]
    fn a_deleted_newest_segment_is_refused_naming_it() {
        let tmp = TempDir::new().unwrap();
        let segs = three_segments(tmp.path());
        fs::remove_file(&segs[2]).unwrap();
        let before = fs::read(&segs[1]).unwrap();
        let missing = segs[2].file_name().unwrap().to_str().unwrap().to_string();
        let (path, reason) = corrupt_in(Wal::open(tmp.path(), opts(256)).unwrap_err());
        assert_eq!(path, segs[1]);
        assert!(reason.contains(&missing), "{reason}");
        assert!(reason.contains("from index 21 on"), "{reason}");
        assert_eq!(fs::read(&segs[1]).unwrap(), before, "read-only");
        // The dump tool's scan prints every record, then stops at the same place.
        let mut n = 0;
        let (path, reason) = corrupt_in(scan(tmp.path(), |_, _, _, _| n += 1).unwrap_err());
        assert_eq!(path, segs[1]);
        assert!(reason.contains(&missing), "{reason}");
        assert!(n > 6, "the records before the end were visited: {n}");

        fs::remove_file(&segs[1]).unwrap();
        let (path, reason) = corrupt_in(Wal::open(tmp.path(), opts(256)).unwrap_err());
        assert_eq!(path, segs[0]);
        assert!(reason.contains("from index 11 on"), "{reason}");
    }

    /// A crash after the old segment was ended, naming the new one, but before the new one
    /// got its name: its header waits under the temporary name, and opening finishes the
    /// rotation (the log is whole, and the WAL goes on in that segment).
    #[test]
    fn a_rotation_cut_short_before_the_rename_is_finished_on_open() {
        let tmp = TempDir::new().unwrap();
        let segs = three_segments(tmp.path());
        let (seq, first) =
            segment::parse_segment_name(segs[2].file_name().unwrap().to_str().unwrap()).unwrap();
        fs::rename(&segs[2], segment::tmp_path(tmp.path(), seq, first)).unwrap();
        let (mut wal, c) = Wal::open(tmp.path(), opts(256)).unwrap();
        assert_eq!(c.last_index(), 20);
        assert_eq!(c.hard_state, hs(1, 1, 20));
        assert_eq!(wal.segment_paths(), segs);
        wal.save(Some(&hs(1, 1, 21)), &ents(21..=21, 1), true)
            .unwrap();
        drop(wal);
        let (_wal, c) = Wal::open(tmp.path(), opts(256)).unwrap();
        assert_eq!(c.last_index(), 21);
    }

    /// A rotation whose sync of the old segment failed (the node stops on it), then a start
    /// without a power loss, which finishes the rotation: the old segment stops being the
    /// last one then, so its end, never synced, must be synced first. A power loss after that
    /// start leaves a WAL that opens, with everything the first save synced.
    #[test]
    fn finishing_a_rotation_on_open_syncs_the_old_segment_first() {
        use crate::disk::MemFs;
        let opts = direct_opts(256);
        let dir = Path::new("/wal");
        for seed in 0..16 {
            let fs = MemFs::new(seed);
            let shared: SharedFs = std::sync::Arc::new(fs.clone());
            let mut wal = Wal::create_on(shared.clone(), dir, &meta(), opts).unwrap();
            wal.save(Some(&hs(1, 1, 10)), &ents(1..=10, 1), true)
                .unwrap();
            // Unsynced entries, then the rotation: its two syncs of the new segment succeed,
            // the old segment's fails.
            fs.fail_sync_after(2);
            let err = wal.save(Some(&hs(1, 1, 20)), &ents(11..=20, 1), false);
            assert!(matches!(err, Err(Error::SyncFailed { .. })), "{err:?}");
            drop(wal);
            let (wal, c) = Wal::open_on(shared.clone(), dir, opts).unwrap();
            assert_eq!(
                c.last_index(),
                20,
                "seed {seed}: the page cache still has them"
            );
            assert_eq!(wal.segment_paths().len(), 3);
            drop(wal);
            fs.power_loss();
            let (_wal, c) = Wal::open_on(shared.clone(), dir, opts)
                .unwrap_or_else(|e| panic!("seed {seed}: after the power loss: {e}"));
            assert_eq!(
                c.last_index(),
                20,
                "seed {seed}: synced by the start before"
            );
        }
    }

    /// A segment's rename whose directory sync failed (the node stops on it), then a start
    /// that writes and syncs entries, then a power loss: the start synced the directory, so
    /// the segment is still there under its name with what the start synced (without it, the
    /// rename could be lost and the WAL with it, as a file's sync need not commit its name).
    #[test]
    fn open_makes_a_rename_whose_directory_sync_failed_durable() {
        use crate::disk::MemFs;
        let opts = direct_opts(256);
        let dir = Path::new("/wal");
        let mut reached = 0;
        for seed in 0..32 {
            for ok in 0..8 {
                let fs = MemFs::new(seed);
                let shared: SharedFs = std::sync::Arc::new(fs.clone());
                fs.fail_sync_after(ok);
                let created = Wal::create_on(shared.clone(), dir, &meta(), opts);
                fs.fail_syncs(0);
                if created.is_ok() || !Wal::exists_on(&*shared, dir) {
                    continue;
                }
                // The failed sync came after the rename.
                reached += 1;
                drop(created);
                let (mut wal, _) = Wal::open_on(shared.clone(), dir, opts).unwrap();
                wal.save(Some(&hs(1, 1, 5)), &ents(1..=5, 1), true).unwrap();
                drop(wal);
                fs.power_loss();
                let (_wal, c) = Wal::open_on(shared.clone(), dir, opts)
                    .unwrap_or_else(|e| panic!("seed {seed}, {ok} syncs: {e}"));
                assert_eq!(c.last_index(), 5, "seed {seed}, {ok} syncs");
            }
        }
        assert!(
            reached >= 32,
            "the failed sync came after the rename {reached} times"
        );
    }

    /// On Linux a failed sync marks the pages it could not write clean, so a sync on the next
    /// start succeeds without writing them. Open writes what it replayed beyond the last sync
    /// mark again before it syncs and marks it, so that a power loss after the start loses
    /// nothing the start claimed: in the active segment (a failed synced save), and in the
    /// old segment of a rotation that a failed sync interrupted.
    #[test]
    fn open_writes_again_what_a_failed_sync_marked_clean() {
        use crate::disk::MemFs;
        let opts = direct_opts;
        let dir = Path::new("/wal");
        // (segment size, syncs that succeed before the one that fails, segments after open)
        for (size, ok, segments) in [(1 << 20, 0, 1), (256, 2, 3)] {
            for seed in 0..16 {
                let fs = MemFs::new(seed);
                fs.set_failed_sync_forgets(true);
                let shared: SharedFs = std::sync::Arc::new(fs.clone());
                let mut wal = Wal::create_on(shared.clone(), dir, &meta(), opts(size)).unwrap();
                wal.save(Some(&hs(1, 1, 10)), &ents(1..=10, 1), true)
                    .unwrap();
                fs.fail_sync_after(ok);
                let err = wal.save(Some(&hs(1, 1, 20)), &ents(11..=20, 1), size > 256);
                assert!(matches!(err, Err(Error::SyncFailed { .. })), "{err:?}");
                drop(wal);
                let (wal, c) = Wal::open_on(shared.clone(), dir, opts(size)).unwrap();
                assert_eq!(c.last_index(), 20, "seed {seed}: the page cache has them");
                assert_eq!(wal.segment_paths().len(), segments);
                drop(wal);
                fs.power_loss();
                let (_wal, c) = Wal::open_on(shared.clone(), dir, opts(size))
                    .unwrap_or_else(|e| panic!("seed {seed}, size {size}: after the loss: {e}"));
                assert_eq!(
                    c.last_index(),
                    20,
                    "seed {seed}, size {size}: the start before synced them"
                );
            }
        }
    }

    /// A record ending a segment that names anything but the segment that follows it, or that
    /// has data after it, is corruption.
    #[test]
    fn a_segment_end_that_disagrees_with_the_next_segment_is_corruption() {
        let tmp = TempDir::new().unwrap();
        let segs = three_segments(tmp.path());
        // Segment 1 renamed as if it began at another index: segment 0's end names the old name.
        let (seq, first) =
            segment::parse_segment_name(segs[1].file_name().unwrap().to_str().unwrap()).unwrap();
        let moved = tmp.path().join(segment::segment_name(seq, first + 1));
        fs::rename(&segs[1], &moved).unwrap();
        let (path, reason) = corrupt_in(Wal::open(tmp.path(), opts(256)).unwrap_err());
        assert_eq!(path, moved);
        assert!(reason.contains("as the next one"), "{reason}");
        fs::rename(&moved, &segs[1]).unwrap();
        // A valid record after segment 0's end.
        let mut bytes = fs::read(&segs[0]).unwrap();
        record::encode(&mut bytes, 0, RecordRef::HardState(&hs(1, 1, 5))).unwrap();
        fs::write(&segs[0], &bytes).unwrap();
        let (path, reason) = corrupt_in(Wal::open(tmp.path(), opts(256)).unwrap_err());
        assert_eq!(path, segs[0]);
        assert!(reason.contains("after the record that ends"), "{reason}");
    }

    #[test]
    fn segment_headers_keep_marker_and_hard_state_across_release() {
        let tmp = TempDir::new().unwrap();
        let opts = opts(128);
        let mut wal = Wal::create(tmp.path(), &meta(), opts).unwrap();
        wal.save(Some(&hs(1, 1, 10)), &ents(1..=10, 1), true)
            .unwrap();
        wal.save_snapshot_marker(&marker(1, 5)).unwrap();
        // Term 2 and later: every save rotates, so the marker and the hard state above live
        // on only in the headers of the new segments.
        wal.save(Some(&hs(2, 3, 10)), &ents(11..=20, 2), true)
            .unwrap();
        wal.save(None, &ents(21..=30, 2), true).unwrap();
        let n = count_segments(tmp.path());
        wal.release_to(25).unwrap();
        wal.wait_for_removals();
        assert!(count_segments(tmp.path()) < n);
        let first = &wal.segment_paths()[0];
        let mut kinds = Vec::new();
        scan(tmp.path(), |p, _, _, r| {
            if p == first {
                kinds.push(r.kind())
            }
        })
        .unwrap();
        assert_eq!(kinds[..3], ["metadata", "snapshot", "hardstate"]);
        drop(wal);
        let (_wal, c) = Wal::open(tmp.path(), opts).unwrap();
        assert_eq!(c.snapshot_markers, vec![marker(1, 5)]);
        assert_eq!(c.hard_state, hs(2, 3, 10));
        assert_eq!(c.entries_after(25).unwrap(), &ents(26..=30, 2)[..]);
    }

    #[test]
    fn disk_use_stays_bounded_under_steady_load_with_snapshots() {
        let tmp = TempDir::new().unwrap();
        let opts = opts(4096);
        let mut wal = Wal::create(tmp.path(), &meta(), opts).unwrap();
        let mut max_size = 0;
        for i in 1..=2000u64 {
            wal.save(Some(&hs(1, 1, i)), &[ent(i, 1)], false).unwrap();
            if i % 100 == 0 {
                wal.save_snapshot_marker(&marker(1, i)).unwrap();
                // Not waited for: releases queue up behind the reaper while rotations go on.
                wal.release_to(i).unwrap();
            }
            max_size = max_size.max(wal.size_on_disk());
        }
        // About 100 entries of ~60 bytes between releases: a few segments at most.
        assert!(max_size < 4 * 4096, "max size {max_size}");
        wal.wait_for_removals();
        assert!(count_segments(tmp.path()) <= 3);
    }

    /// On the real disk, released segments are removed by the reaper thread, oldest first;
    /// a WAL dropped right after a release waits for them, so opening it again (in the same
    /// process) finds only the live ones. A segment that cannot be removed (here already gone)
    /// is logged, not an error: the node goes on.
    #[test]
    fn released_segments_are_removed_off_the_callers_thread() {
        let tmp = TempDir::new().unwrap();
        let opts = opts(256);
        let mut wal = Wal::create(tmp.path(), &meta(), opts).unwrap();
        assert!(StdFs.background_removal());
        for batch in 0..10u64 {
            let first = batch * 10 + 1;
            let last = first + 9;
            wal.save(Some(&hs(1, 1, last)), &ents(first..=last, 1), true)
                .unwrap();
        }
        let before = wal.segment_paths();
        assert_eq!(before.len(), 11);
        wal.save_snapshot_marker(&marker(1, 55)).unwrap();
        wal.release_to(55).unwrap();
        // No longer the WAL's at once, whether or not the files are gone yet.
        assert_eq!(wal.segment_paths(), before[5..]);
        drop(wal);
        assert_eq!(
            count_segments(tmp.path()),
            6,
            "the drop waited for the removals"
        );
        let (mut wal, c) = Wal::open(tmp.path(), opts).unwrap();
        assert_eq!(c.entries_after(55).unwrap(), &ents(56..=100, 1)[..]);

        // One already gone (an operator freeing a full disk) counts as removed: the rest of
        // the released go too, and the WAL opens.
        std::fs::remove_file(&before[5]).unwrap();
        wal.save_snapshot_marker(&marker(1, 100)).unwrap();
        wal.release_to(100).unwrap();
        wal.save(Some(&hs(1, 1, 101)), &ents(101..=101, 1), true)
            .unwrap();
        wal.wait_for_removals();
        assert_eq!(count_segments(tmp.path()), wal.segment_paths().len());
        drop(wal);
        let (_wal, c) = Wal::open(tmp.path(), opts).unwrap();
        assert_eq!(c.entries_after(100).unwrap(), &ents(101..=101, 1)[..]);
    }

    /// A released segment the disk will not let go of (`EIO`) is tried again at each later
    /// release, and no newer segment is removed while it is there, so those on the disk stay
    /// one run and the WAL opens. Removing a newer run past it left a gap in the sequence, and
    /// the next start refused to run, blaming lost segments (found by a review).
    #[test]
    fn a_segment_that_cannot_be_removed_leaves_no_gap_behind_later_releases() {
        use crate::disk::MemFs;
        let opts = opts(256);
        let dir = Path::new("/wal");
        let fs = MemFs::new(1);
        fs.set_background_removal(true);
        let shared: SharedFs = Arc::new(fs.clone());
        let on_disk = || {
            let mut names: Vec<PathBuf> = fs
                .list_dir(dir)
                .unwrap()
                .into_iter()
                .filter(|n| n.ends_with(".wal"))
                .map(|n| dir.join(n))
                .collect();
            names.sort();
            names
        };
        let mut wal = Wal::create_on(shared.clone(), dir, &meta(), opts).unwrap();
        let save = |wal: &mut Wal, batches: std::ops::Range<u64>| {
            for batch in batches {
                let first = batch * 10 + 1;
                let last = first + 9;
                wal.save(Some(&hs(1, 1, last)), &ents(first..=last, 1), true)
                    .unwrap();
            }
        };
        save(&mut wal, 0..10);
        let before = wal.segment_paths();
        fs.refuse_removal(&before[2], true);
        wal.save_snapshot_marker(&marker(1, 55)).unwrap();
        wal.release_to(55).unwrap();
        wal.wait_for_removals();
        assert_eq!(on_disk(), before[2..], "removal stops at the one refused");

        save(&mut wal, 10..12);
        wal.save_snapshot_marker(&marker(1, 115)).unwrap();
        wal.release_to(115).unwrap();
        wal.wait_for_removals();
        let left = on_disk();
        assert!(
            left.starts_with(&before[2..]),
            "a newer segment was removed past the one refused: {left:?}"
        );
        drop(wal);
        let (mut wal, c) = Wal::open_on(shared.clone(), dir, opts).expect("one run, no gap");
        assert_eq!(c.entries_after(115).unwrap(), &ents(116..=120, 1)[..]);

        // Once the disk lets it go, the next release removes the whole run.
        fs.refuse_removal(&before[2], false);
        save(&mut wal, 12..13);
        wal.save_snapshot_marker(&marker(1, 125)).unwrap();
        wal.release_to(125).unwrap();
        wal.wait_for_removals();
        assert_eq!(on_disk(), wal.segment_paths());
        assert!(on_disk().len() < 3, "{:?}", on_disk());
        drop(wal);
        Wal::open_on(shared, dir, opts).expect("opens");
    }

    #[test]
    fn injected_sync_failure_is_final() {
        let tmp = TempDir::new().unwrap();
        let mut wal = Wal::create(tmp.path(), &meta(), WalOptions::default()).unwrap();
        wal.save(Some(&hs(1, 1, 1)), &ents(1..=1, 1), true).unwrap();
        let active = wal.segment_paths()[0].clone();
        wal.inject_sync_failure();
        match wal.save(None, &ents(2..=2, 1), true).unwrap_err() {
            Error::SyncFailed { path, .. } => assert_eq!(path, active),
            other => panic!("expected SyncFailed, got {other:?}"),
        }
        let msg = wal
            .save(None, &ents(3..=3, 1), false)
            .unwrap_err()
            .to_string();
        assert!(msg.contains(&*active.to_string_lossy()), "{msg}");
        for err in [
            wal.save(None, &[], false).unwrap_err(),
            wal.save_snapshot_marker(&marker(1, 1)).unwrap_err(),
            wal.release_to(1).unwrap_err(),
        ] {
            match err {
                Error::Poisoned { path } => assert_eq!(path, active),
                other => panic!("expected Poisoned, got {other:?}"),
            }
        }
        drop(wal);
        // The node restarts from the disk (here the page cache did keep the write).
        let (_wal, c) = Wal::open(tmp.path(), WalOptions::default()).unwrap();
        assert_eq!(c.entries_after(0).unwrap(), &ents(1..=2, 1)[..]);
    }

    #[test]
    fn sync_failure_while_rotating_poisons_too() {
        let tmp = TempDir::new().unwrap();
        let mut wal = Wal::create(tmp.path(), &meta(), opts(64)).unwrap();
        wal.inject_sync_failure();
        // No sync requested by the caller, but the rotation must sync.
        assert!(matches!(
            wal.save(None, &ents(1..=3, 1), false),
            Err(Error::SyncFailed { .. })
        ));
        assert!(matches!(
            wal.save(None, &[], false),
            Err(Error::Poisoned { .. })
        ));
        assert_eq!(count_segments(tmp.path()), 1);
    }

    #[test]
    fn create_refuses_an_existing_wal_and_open_an_empty_dir() {
        let tmp = TempDir::new().unwrap();
        assert!(matches!(
            Wal::open(tmp.path(), WalOptions::default()),
            Err(Error::NotFound { .. })
        ));
        drop(Wal::create(tmp.path(), &meta(), WalOptions::default()).unwrap());
        match Wal::create(tmp.path(), &meta(), WalOptions::default()).unwrap_err() {
            Error::AlreadyExists { dir } => assert_eq!(dir, tmp.path()),
            other => panic!("expected AlreadyExists, got {other:?}"),
        }
    }

    #[test]
    fn open_removes_an_unfinished_segment() {
        let tmp = TempDir::new().unwrap();
        drop(Wal::create(tmp.path(), &meta(), WalOptions::default()).unwrap());
        let tmp_seg = tmp
            .path()
            .join(format!("{}.tmp", segment::segment_name(1, 1)));
        fs::write(&tmp_seg, b"half a header").unwrap();
        let (_wal, _c) = Wal::open(tmp.path(), WalOptions::default()).unwrap();
        assert!(!tmp_seg.exists());
    }

    /// A preallocated segment: the file runs ahead of the records, a reopen finds the end of
    /// the log at the zeros without cutting anything, appends land there, and a rotation cuts
    /// the old segment back to its records.
    #[test]
    fn preallocated_segments_end_at_their_zeros_and_are_trimmed_on_rotation() {
        let tmp = TempDir::new().unwrap();
        let opts = WalOptions {
            segment_size: 8192,
            preallocate: 4096,
            direct_io: false,
        };
        let mut wal = Wal::create(tmp.path(), &meta(), opts).unwrap();
        wal.save(Some(&hs(1, 1, 2)), &ents(1..=3, 1), true).unwrap();
        let first = wal.segment_paths()[0].clone();
        let records = wal.size_on_disk();
        assert_eq!(fs::metadata(&first).unwrap().len(), 4096);
        drop(wal);

        let (mut wal, c) = Wal::open(tmp.path(), opts).unwrap();
        assert_eq!(c.entries_after(0).unwrap(), &ents(1..=3, 1)[..]);
        assert_eq!(wal.size_on_disk(), records);
        assert_eq!(fs::metadata(&first).unwrap().len(), 4096, "nothing cut");
        wal.save(Some(&hs(1, 1, 3)), &ents(4..=4, 1), true).unwrap();
        drop(wal);
        let (mut wal, c) = Wal::open(tmp.path(), opts).unwrap();
        assert_eq!(c.entries_after(0).unwrap(), &ents(1..=4, 1)[..]);
        assert_eq!(c.hard_state, hs(1, 1, 3));

        // Big entries: the file grows in steps, then the segment rotates.
        let mut big = ents(5..=6, 1);
        for e in &mut big {
            e.data = vec![0xAB; 5000].into();
        }
        wal.save(None, &big, false).unwrap();
        assert_eq!(wal.segment_paths().len(), 2);
        let first_len = fs::metadata(&first).unwrap().len();
        assert_eq!(first_len, wal.segments[0].len, "trimmed to its records");
        assert_ne!(first_len % 4096, 0, "not a preallocation step");
        drop(wal);
        let (_wal, c) = Wal::open(tmp.path(), opts).unwrap();
        let mut want = ents(1..=4, 1);
        want.extend(big);
        assert_eq!(c.entries_after(0).unwrap(), &want[..]);
    }

    /// A crash while writing into the preallocated part: the torn record is followed by zeros,
    /// and it is cut like any torn tail.
    #[test]
    fn a_torn_record_before_preallocated_zeros_is_cut() {
        let tmp = TempDir::new().unwrap();
        let mut wal = Wal::create(tmp.path(), &meta(), WalOptions::default()).unwrap();
        wal.save(None, &ents(1..=2, 1), true).unwrap();
        wal.save(None, &ents(3..=3, 1), true).unwrap();
        let seg = wal.segment_paths()[0].clone();
        drop(wal);
        let mut runs = Vec::new();
        scan(tmp.path(), |_, off, _, r| {
            if r.kind() == "entries" {
                runs.push(off)
            }
        })
        .unwrap();
        let end = runs[1];
        // The last run lost its last bytes: zeros where its data should be.
        let mut bytes = fs::read(&seg).unwrap();
        let torn_at = end as usize + 2;
        bytes[torn_at..].fill(0);
        fs::write(&seg, &bytes).unwrap();
        let (_wal, c) = Wal::open(tmp.path(), WalOptions::default()).unwrap();
        assert_eq!(c.last_index(), 2);
        assert_eq!(
            fs::metadata(&seg).unwrap().len(),
            end,
            "cut at the torn run"
        );
    }

    /// Synced writes that would not leave room in their page for another like them end on a
    /// page boundary; small ones keep filling their page.
    #[test]
    fn big_synced_writes_end_on_a_page_boundary_small_ones_do_not() {
        synced_writes_end_on_a_boundary(false);
    }

    /// Direct writes: the same rule, by the disk's physical sector (the page where the file
    /// system has no direct I/O).
    #[test]
    fn big_direct_writes_end_on_a_sector_boundary_small_ones_do_not() {
        synced_writes_end_on_a_boundary(true);
    }

    fn synced_writes_end_on_a_boundary(direct_io: bool) {
        let tmp = TempDir::new().unwrap();
        let opts = WalOptions {
            direct_io,
            ..WalOptions::default()
        };
        let mut wal = Wal::create(tmp.path(), &meta(), opts).unwrap();
        let unit = wal.writer.unit();
        if !direct_io {
            assert_eq!(unit, PAGE_SIZE);
        }
        wal.save(Some(&hs(1, 1, 0)), &ents(1..=1, 1), true).unwrap();
        let small = wal.size_on_disk();
        assert!(!small.is_multiple_of(unit) && small < 200, "{small}");
        let mut big = ents(2..=20, 1);
        for e in &mut big {
            e.data = vec![1; 150].into();
        }
        wal.save(Some(&hs(1, 1, 1)), &big, true).unwrap();
        // The write ends on a boundary, where the mark of its sync begins (a direct writer
        // holds the mark back until its next write).
        let mut records = Vec::new();
        scan(tmp.path(), |_, off, len, r| {
            records.push((off, len, r.kind()))
        })
        .unwrap();
        let (off, len, kind) = *records.iter().rfind(|r| r.2 != "synced").unwrap();
        assert_eq!(kind, "padding");
        assert_eq!((off + len) % unit, 0, "{records:?}");
        // Unsynced writes are never padded: the next write follows them.
        wal.save(Some(&hs(1, 1, 20)), &[], false).unwrap();
        assert_ne!(wal.size_on_disk() % unit, 0);
        drop(wal);
        let (_wal, c) = Wal::open(tmp.path(), opts).unwrap();
        assert_eq!(c.last_index(), 20);
        assert_eq!(c.hard_state, hs(1, 1, 20));
    }

    #[test]
    fn scan_visits_every_record_with_file_and_offset() {
        let tmp = TempDir::new().unwrap();
        let mut wal = Wal::create(tmp.path(), &meta(), opts(128)).unwrap();
        wal.save(Some(&hs(1, 1, 0)), &ents(1..=4, 1), true).unwrap();
        wal.save_snapshot_marker(&marker(1, 2)).unwrap();
        let segs = wal.segment_paths();
        assert_eq!(segs.len(), 2);
        drop(wal);

        let mut seen = Vec::new();
        scan(tmp.path(), |path, off, _, rec| {
            seen.push((path.to_path_buf(), off, rec.kind()))
        })
        .unwrap();
        let kinds: Vec<_> = seen.iter().map(|s| s.2).collect();
        assert_eq!(
            kinds,
            [
                "metadata",
                "chained",
                "synced",
                "entries",
                "hardstate",
                "synced",
                "next", // segment 0, ended by the record naming segment 1, as promised
                "metadata",
                "hardstate",
                "chained",
                "synced",
                "snapshot",
                "synced" // segment 1: header, then the marker
            ]
        );
        assert_eq!(seen[0].0, segs[0]);
        assert_eq!(seen[0].1, 0);
        assert!(seen[1].1 > 0);
        assert_eq!(seen[7].0, segs[1]);
        assert_eq!(seen[7].1, 0);

        // A damaged record: the good ones before it are visited, then the error names it.
        let mut bytes = fs::read(&segs[1]).unwrap();
        let off = seen[7].1 as usize;
        bytes[off + 2] ^= 0xFF;
        fs::write(&segs[1], &bytes).unwrap();
        let mut n = 0;
        match scan(tmp.path(), |_, _, _, _| n += 1).unwrap_err() {
            Error::Corrupt { path, offset, .. } => {
                assert_eq!((path, offset), (segs[1].clone(), off as u64))
            }
            other => panic!("expected Corrupt, got {other:?}"),
        }
        assert_eq!(n, 7);
        // Read-only: the file is as we left it.
        assert_eq!(fs::read(&segs[1]).unwrap(), bytes);
    }

    #[test]
    fn errors_name_their_path() {
        let e = Error::Corrupt {
            path: "/d/0000000000000000-0000000000000000.wal".into(),
            offset: 42,
            reason: "checksum mismatch".into(),
        };
        assert_eq!(
            e.to_string(),
            "/d/0000000000000000-0000000000000000.wal is corrupt at offset 42: checksum mismatch"
        );
        let e = Error::SyncFailed {
            path: "/d/x.wal".into(),
            source: std::io::Error::other("EIO"),
        };
        assert!(e.to_string().contains("/d/x.wal") && e.to_string().contains("must stop"));
    }

    /// Random sequences of saves (with overwrites of an uncommitted suffix by a higher term),
    /// hard-state updates, snapshot markers with release, snapshots installed from a leader and
    /// reopens, against a model of raft's log: after every reopen the WAL must give back the
    /// model's hard state, newest marker and entries after that marker.
    mod model {
        use super::*;
        use proptest::prelude::*;

        #[derive(Clone, Debug)]
        enum Op {
            Append {
                n: u64,
                back: u64,
                new_term: bool,
                hard_state: bool,
                sync: bool,
                data_len: usize,
            },
            Snapshot {
                back: u64,
                slack: u64,
            },
            /// At `back` entries behind the last (a conflicting suffix that raft drops with
            /// the rest of its log) or, with `back` 0, `ahead` entries after it.
            InstallSnapshot {
                ahead: u64,
                back: u64,
            },
            Reopen,
        }

        fn op() -> impl Strategy<Value = Op> {
            prop_oneof![
                8 => (0..5u64, 0..4u64, any::<bool>(), any::<bool>(), any::<bool>(), 0..60usize)
                    .prop_map(|(n, back, new_term, hard_state, sync, data_len)| Op::Append {
                        n, back, new_term, hard_state, sync, data_len
                    }),
                2 => (0..6u64, 0..3u64).prop_map(|(back, slack)| Op::Snapshot { back, slack }),
                1 => (1..6u64, 0..4u64)
                    .prop_map(|(ahead, back)| Op::InstallSnapshot { ahead, back }),
                2 => Just(Op::Reopen),
            ]
        }

        /// Raft's view: entries after the newest snapshot, contiguous.
        #[derive(Default)]
        struct Model {
            entries: Vec<Entry>,
            floor: u64,
            last: u64,
            term: u64,
            hs: HardState,
            marker: Option<SnapshotMetadata>,
        }

        fn check(c: &WalContents, m: &Model) -> Result<(), TestCaseError> {
            prop_assert_eq!(&c.metadata, &meta());
            prop_assert_eq!(&c.hard_state, &m.hs);
            prop_assert_eq!(c.snapshot_markers.last(), m.marker.as_ref());
            let got = c
                .entries_after(m.floor)
                .map_err(|e| TestCaseError::fail(e.to_string()))?;
            prop_assert_eq!(got, &m.entries[..]);
            prop_assert_eq!(c.last_index(), m.last);
            Ok(())
        }

        fn run(
            ops: Vec<Op>,
            segment_size: u64,
            preallocate: u64,
            direct_io: bool,
        ) -> Result<(), TestCaseError> {
            let tmp = TempDir::new().unwrap();
            let opts = WalOptions {
                segment_size,
                preallocate,
                direct_io,
            };
            let mut wal = Wal::create(tmp.path(), &meta(), opts).unwrap();
            let mut m = Model {
                term: 1,
                ..Default::default()
            };
            for op in ops {
                match op {
                    Op::Append {
                        n,
                        back,
                        new_term,
                        hard_state,
                        sync,
                        data_len,
                    } => {
                        let start = (m.last + 1).saturating_sub(back).max(m.floor + 1);
                        // Only a leader of a later term overwrites a suffix.
                        if (n > 0 && start <= m.last) || new_term {
                            m.term += 1;
                        }
                        let new: Vec<Entry> = (start..start + n)
                            .map(|index| Entry {
                                index,
                                term: m.term,
                                data: vec![index as u8; data_len].into(),
                                ..Default::default()
                            })
                            .collect();
                        if n > 0 {
                            m.entries.retain(|e| e.index < start);
                            m.entries.extend(new.iter().cloned());
                            m.last = start + n - 1;
                        }
                        let hs = hard_state.then(|| hs(m.term, m.term % 3 + 1, m.last / 2));
                        wal.save(hs.as_ref(), &new, sync).unwrap();
                        if let Some(hs) = hs {
                            m.hs = hs;
                        }
                    }
                    Op::Snapshot { back, slack } => {
                        let index = m.last.saturating_sub(back);
                        if index <= m.floor {
                            continue;
                        }
                        let term = m.entries[(index - m.floor - 1) as usize].term;
                        let mk = marker(term, index);
                        wal.save_snapshot_marker(&mk).unwrap();
                        wal.release_to(index.saturating_sub(slack)).unwrap();
                        wal.wait_for_removals();
                        m.entries.retain(|e| e.index > index);
                        m.floor = index;
                        m.marker = Some(mk);
                    }
                    Op::InstallSnapshot { ahead, back } => {
                        let index = match back {
                            0 => m.last + ahead,
                            _ if m.last.saturating_sub(back) > m.floor => m.last - back,
                            _ => continue,
                        };
                        m.term += 1;
                        let mk = marker(m.term, index);
                        wal.save_snapshot_reset(&mk).unwrap();
                        wal.release_to(index).unwrap();
                        wal.wait_for_removals();
                        m.entries.clear();
                        m.floor = index;
                        m.last = index;
                        m.marker = Some(mk);
                    }
                    Op::Reopen => {
                        drop(wal);
                        let (w, c) = Wal::open(tmp.path(), opts).unwrap();
                        check(&c, &m)?;
                        wal = w;
                    }
                }
            }
            drop(wal);
            let (_wal, c) = Wal::open(tmp.path(), opts).unwrap();
            check(&c, &m)
        }

        proptest! {
            #![proptest_config(ProptestConfig::with_cases(128))]
            #[test]
            fn wal_matches_an_in_memory_model(
                ops in proptest::collection::vec(op(), 1..60),
                segment_size in prop_oneof![Just(64u64), Just(300), Just(2048), Just(1 << 20)],
                preallocate in prop_oneof![Just(0u64), Just(100), Just(4096), Just(1 << 20)],
                direct_io: bool,
            ) {
                run(ops, segment_size, preallocate, direct_io)?;
            }
        }
    }
}
