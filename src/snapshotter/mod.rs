//! Snapshot files: the raft node saves each snapshot here before writing its marker to the WAL,
//! and at start-up loads the newest one that the WAL's markers name. A snapshot's data never
//! has to be whole in memory: it is written, read, sent and received as a stream.
//!
//! # Files
//! One file per snapshot in the snapshot directory (`raftexample-<id>-snap`), named
//! `%016x-%016x.snap` after the snapshot's term and index, as etcd names them. A file that
//! failed its checksum at a start is renamed to `<name>.broken` and kept for inspection, once
//! the start has found that it can go on without it (a start that refuses leaves it); one
//! found damaged while being sent, to `<name>.sent.broken` (of those, only the oldest
//! snapshot's and the latest are kept: see [`Snapshotter::set_aside_if_damaged`]). A snapshot
//! arriving from the leader is written to `incoming-<from>-<n>.part` first ([`handle`]), and
//! renamed to its `.snap` name when the node installs it.
//!
//! # Byte layout (integers little-endian)
//! ```text
//! offset 0   magic  "RAFTSNAP"                      8 bytes
//!        8   version u32 = 1
//!        12  meta_len u32, then SnapshotMetadata    protobuf (term, index, conf_state)
//!        ..  data_len u64, then data                the application's bytes
//!        ..  crc u32 = CRC-32C of every byte before it
//! ```
//! The file is also what travels between nodes: the leader sends its file as it is, and the
//! follower checks the same checksum.
//!
//! # Durability
//! [`Snapshotter::save`] (and [`Snapshotter::begin`], which streams the data) writes `<name>.tmp`,
//! `sync_data`s it, renames it to `<name>` and syncs the directory, so a crash leaves either no
//! file or the complete one. Only then may the node write the WAL marker; a snapshot file without a
//! marker (a crash in between) is ignored by [`Snapshotter::load_newest_available_with`], which
//! removes those above the WAL's oldest marker (nothing will ever load them). Once the WAL marker
//! of a new snapshot is durable, the node asks [`Snapshotter::prune_behind`] to delete the files
//! beyond the newest `keep`; never sooner, or a crash between the prune and the marker could leave
//! the WAL's newest marked snapshot deleted and the new one unrecorded, so nothing to start from.
//!
//! The `.tmp` file is written around the page cache (`O_DIRECT`) where the file system allows
//! it, a small chunk at a time, so that a snapshot of a big state never queues megabytes on the
//! disk ahead of the WAL's writes (see `file::DIRECT_CHUNK`).
//!
//! Files go through a [`crate::disk::FileSystem`]: the real disk for [`Snapshotter::new`], any
//! other for [`Snapshotter::new_on`].

mod file;
pub mod handle;
mod stream;

use std::io::{self, Read, Write};
use std::path::{Path, PathBuf};

pub use raft::eraftpb::Snapshot;
use raft::eraftpb::SnapshotMetadata;

use crate::disk::reaper::{Chore, Reaper};
use crate::disk::{FileSystem, IoError, SharedFs, StdFs};
use crate::fsutil;
use file::{FileSink, io_err, open_file, peek_snap, read_all, read_snap, snapshot_of};
pub use handle::SnapshotData;
pub use stream::{OpenedSnapshot, RawSnapshotFile, SnapshotWriter};

/// Number of snapshot files kept by default (`--max-snapshots`), as etcd.
pub const DEFAULT_KEEP: usize = 5;

const SNAP_EXT: &str = ".snap";
const BROKEN_EXT: &str = ".broken";
/// A later damaged copy of the same snapshot, set aside at a start beside the first.
const LATER_BROKEN_EXT: &str = ".2.broken";
/// What a file set aside by a send is named after its snapshot's name (and a later copy of
/// the same snapshot, `.sent.2.broken`).
const SENT_BROKEN_EXT: &str = ".sent.broken";
const SENT_LATER_BROKEN_EXT: &str = ".sent.2.broken";
const TMP_EXT: &str = ".tmp";

/// Errors of the snapshotter; each names the file or directory.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// An I/O operation failed on a file or directory (the error names it).
    #[error(transparent)]
    Io(#[from] IoError),
    /// A snapshot file is damaged or is not what its name says.
    #[error("{path} is corrupt at offset {offset}: {reason}")]
    Corrupt {
        /// The file.
        path: PathBuf,
        /// Where the problem was found (for a checksum mismatch, 0: the checksum covers the
        /// whole file before it, and the reason says up to where).
        offset: u64,
        /// What is wrong.
        reason: String,
    },
    /// [`Snapshotter::load`] found no file for that term and index.
    #[error("snapshot file {path} not found")]
    NotFound {
        /// The file that was looked for.
        path: PathBuf,
    },
    /// A snapshot file passed its checksum but its data did not decode: not damage, but a
    /// bug or a file from another version.
    #[error("{path} is intact but its data does not decode: {reason}")]
    Decode {
        /// The file.
        path: PathBuf,
        /// The decoder's complaint.
        reason: String,
    },
    /// The snapshot could not be encoded (nothing was written).
    #[error("cannot encode snapshot for {path}: {reason}")]
    Encode {
        /// The file it was meant for.
        path: PathBuf,
        /// Why.
        reason: String,
    },
    /// A snapshot's data is a handle that cannot be used here.
    #[error("snapshot at index {index}: {reason}")]
    Handle {
        /// The snapshot's index.
        index: u64,
        /// What is wrong with the handle.
        reason: String,
    },
}

impl Error {
    /// Whether this says a file being sent is unusable: damaged bytes (its checksum or
    /// framing), or bytes the disk cannot read (`EIO`: a bad sector the drive's own check
    /// caught, the usual way a disk reports damage). Either way the leader sets the file aside
    /// and takes the state again; only a checksum mismatch counted, so a leader sent the same
    /// unreadable file for ever (found by a review). A start sets aside only checksum damage:
    /// a read error there may pass, and the file set aside could be the only one the WAL can
    /// start from (a snapshot installed from the leader), so the next start, with the disk
    /// reading again, would be refused for good (found by the next review).
    pub fn is_damage(&self) -> bool {
        match self {
            Error::Corrupt { .. } => true,
            Error::Io(e) => e.source.raw_os_error() == Some(5),
            _ => false,
        }
    }
}

impl From<fsutil::Error> for Error {
    fn from(e: fsutil::Error) -> Self {
        Error::Io(e.into_io())
    }
}

/// The file name of the snapshot with this term and index.
pub fn snap_name(term: u64, index: u64) -> String {
    fsutil::hex_pair_name(term, index, SNAP_EXT)
}

/// Parses a snapshot file name into `(term, index)`; `None` for any other file.
pub fn parse_snap_name(name: &str) -> Option<(u64, u64)> {
    fsutil::parse_hex_pair_name(name, SNAP_EXT)
}

/// The (index, term, later copy) of a file a send set aside as damaged
/// (`<name>.sent.broken` or `<name>.sent.2.broken`), sorting the oldest snapshot's first.
fn parse_sent_aside_name(name: &str) -> Option<(u64, u64, bool)> {
    let (snap, later) = match name.strip_suffix(SENT_LATER_BROKEN_EXT) {
        Some(snap) => (snap, true),
        None => (name.strip_suffix(SENT_BROKEN_EXT)?, false),
    };
    let (term, index) = parse_snap_name(snap)?;
    Some((index, term, later))
}

/// Saves and loads the snapshot files of one directory. Cheap to clone: clones share the
/// directory and the file system.
#[derive(Debug, Clone)]
pub struct Snapshotter {
    fs: SharedFs,
    dir: PathBuf,
    keep: usize,
    /// The damaged files [`Snapshotter::load_newest_available_with`] passed over, each with
    /// why (its file and offset): if the WAL then lacks the entries that snapshot covered,
    /// the node's refusal to start names them, not only the WAL; else the start sets them
    /// aside ([`Snapshotter::set_damaged_aside`]).
    damaged: std::sync::Arc<std::sync::Mutex<Vec<(PathBuf, String)>>>,
    /// Removes files off the caller's thread on a real disk: `prune_behind` and `discard` run
    /// on the raft thread, and unlinking a snapshot of a GiB takes about 250 ms here.
    reaper: std::sync::Arc<std::sync::Mutex<Reaper>>,
    /// How many files were put under a snapshot's name so far, counted under the lock that
    /// every such rename, every open to send, and every set-aside holds (each for a rename
    /// or an open, no longer): a snapshot taken again at the same term and index (a leader
    /// whose file was damaged retakes it) gets the same name, so a send of the old, damaged
    /// file that ends after the retake must not set the new one aside (see
    /// [`Snapshotter::set_aside_if_damaged`]).
    naming: std::sync::Arc<std::sync::Mutex<u64>>,
}

struct SnapFile {
    term: u64,
    index: u64,
    path: PathBuf,
}

impl SnapFile {
    /// Whether one of the WAL's `markers` names this file.
    fn named_by(&self, markers: &[SnapshotMetadata]) -> bool {
        self.marker(markers).is_some()
    }

    /// The newest of the WAL's `markers` that names this file.
    fn marker<'m>(&self, markers: &'m [SnapshotMetadata]) -> Option<&'m SnapshotMetadata> {
        markers
            .iter()
            .rev()
            .find(|m| m.term == self.term && m.index == self.index)
    }
}

impl Snapshotter {
    /// A snapshotter on `dir` (created, synced, if missing) that keeps the newest `keep` files.
    ///
    /// `keep` below 2 is raised to 2: the previous snapshot must survive until the WAL marker
    /// of the new one is durable, or a crash in between would leave no usable snapshot.
    /// Leftover `.tmp` files of an interrupted save are removed.
    pub fn new(dir: &Path, keep: usize) -> Result<Snapshotter, Error> {
        Snapshotter::new_on(StdFs::shared(), dir, keep)
    }

    /// [`Snapshotter::new`] on the file system `fs`.
    pub fn new_on(fs: SharedFs, dir: &Path, keep: usize) -> Result<Snapshotter, Error> {
        fs.create_dir_all(dir).map_err(io_err(dir))?;
        let leftovers = fsutil::leftover_tmp_files(&*fs, dir, |n| parse_snap_name(n).is_some())?;
        for path in &leftovers {
            tracing::warn!(path = %path.display(), "removing an unfinished snapshot file");
            fs.remove_file(path).map_err(io_err(path))?;
        }
        if !leftovers.is_empty() {
            fs.sync_dir(dir).map_err(io_err(dir))?;
        }
        Ok(Snapshotter {
            fs,
            dir: dir.to_path_buf(),
            keep: keep.max(2),
            damaged: Default::default(),
            reaper: new_reaper(),
            naming: Default::default(),
        })
    }

    /// The snapshot directory.
    pub fn dir(&self) -> &Path {
        &self.dir
    }

    /// Saves `snap` atomically as `%016x-%016x.snap` (term-index): tmp file, write,
    /// `sync_data`, rename, sync the directory. Old files stay until the caller's WAL marker
    /// of this one is durable and it calls [`Snapshotter::prune_behind`].
    ///
    /// An empty snapshot (index 0) is not saved, as in etcd.
    pub fn save(&self, snap: &Snapshot) -> Result<(), Error> {
        self.save_with(snap.get_metadata(), snap.data.len() as u64, |w| {
            w.write_all(&snap.data)
        })
    }

    /// Saves a snapshot whose `data_len` bytes of application data `write_data` writes,
    /// streaming them to the file, so that a big store's snapshot never has to sit in memory
    /// whole. Same atomicity and checks as [`Snapshotter::save`]; writing other than
    /// `data_len` bytes is an error and leaves no file.
    pub fn save_with(
        &self,
        meta: &SnapshotMetadata,
        data_len: u64,
        write_data: impl FnOnce(&mut dyn Write) -> io::Result<()>,
    ) -> Result<(), Error> {
        if meta.index == 0 {
            return Ok(());
        }
        let mut writer = self.begin(meta, data_len)?;
        if let Err(source) = write_data(&mut writer) {
            return Err(Error::Io(IoError::new(writer.tmp.clone(), source)));
        }
        writer.finish()
    }

    /// Starts saving the snapshot `meta` names, of `data_len` bytes of application data: the
    /// data goes through the returned writer, in any number of writes from any thread, and
    /// [`SnapshotWriter::finish`] makes it durable under its name. A writer dropped unfinished
    /// leaves no file.
    pub fn begin(&self, meta: &SnapshotMetadata, data_len: u64) -> Result<SnapshotWriter, Error> {
        let path = self.dir.join(snap_name(meta.term, meta.index));
        if meta.index == 0 {
            return Err(Error::Encode {
                path,
                reason: "a snapshot at index 0 is empty and never saved".into(),
            });
        }
        let mut tmp_name = path.as_os_str().to_owned();
        tmp_name.push(TMP_EXT);
        let tmp = PathBuf::from(tmp_name);
        match FileSink::create(&*self.fs, &tmp, meta, data_len) {
            Ok(sink) => Ok(SnapshotWriter {
                snapshotter: self.clone(),
                path,
                tmp,
                term: meta.term,
                index: meta.index,
                sink: Some(sink),
            }),
            Err(e) => {
                // Nothing half-written may look like a snapshot later; `new` would remove it.
                let _ = self.fs.remove_file(&tmp);
                Err(e.into_error(&path))
            }
        }
    }

    /// [`Snapshotter::load_newest_available_with`], the data read whole (start-up streams it).
    #[cfg(test)]
    pub fn load_newest_available(
        &self,
        markers: &[SnapshotMetadata],
    ) -> Result<Option<Snapshot>, Error> {
        let loaded = self.load_newest_available_with(markers, read_all)?;
        Ok(loaded.map(|(meta, data)| snapshot_of(meta, data)))
    }

    /// The newest snapshot that is valid and whose (term, index) is among `markers` (the WAL's
    /// snapshot markers), its data gone through `read_data` as a stream (with its length): the
    /// result counts only if the whole file then passes its checksum. A file that is not named
    /// by a marker is skipped (its marker was never written). A damaged file is logged, kept
    /// for [`Snapshotter::set_damaged_aside`] to rename to `<name>.broken` once the start
    /// goes on, and the previous one is tried. `Ok(None)` if no file qualifies.
    pub fn load_newest_available_with<T>(
        &self,
        markers: &[SnapshotMetadata],
        mut read_data: impl FnMut(&mut dyn Read, u64) -> io::Result<T>,
    ) -> Result<Option<(SnapshotMetadata, T)>, Error> {
        for f in self
            .remove_unrecorded(self.files()?, markers)?
            .into_iter()
            .rev()
        {
            if !f.named_by(markers) {
                tracing::debug!(path = %f.path.display(), "snapshot not named by the WAL, skipped");
                continue;
            }
            match read_snap(&*self.fs, &f.path, f.term, f.index, &mut read_data) {
                Ok(loaded) => return Ok(Some(loaded)),
                Err(e @ Error::Corrupt { .. }) => {
                    tracing::warn!(
                        path = %f.path.display(),
                        error = %e,
                        "snapshot file is damaged; trying the previous one"
                    );
                    // Not set aside yet: a start that then refuses must leave the folder as it
                    // found it, so that the next gives the same refusal (a hands-on campaign:
                    // it named the files it had set aside as missing).
                    self.damaged
                        .lock()
                        .unwrap_or_else(|p| p.into_inner())
                        .push((f.path.clone(), e.to_string()));
                }
                Err(e) => return Err(e),
            }
        }
        Ok(None)
    }

    /// Removes the files above the oldest of `markers` that no marker names: saved, but the
    /// crash came before the WAL recorded them (or a snapshot from the leader overtook them
    /// and the node stopped before deleting them), so nothing will ever load them. Left,
    /// they would count among the newest `keep` when the next snapshot prunes, and push out a
    /// file the WAL still relies on (found by a review: two such crashes with `keep` 2 left no
    /// usable snapshot behind the newest). The WAL releases its oldest segments first and each
    /// segment's header repeats the newest marker, so it still holds every marker written
    /// after its oldest; a file below that may be named by a released one, and stays. (After
    /// a start that fell back past a damaged newest file, a later marker can be below a
    /// released one; that one's file was set aside as damaged, so nothing is lost.) Without
    /// any marker, nothing is removed: the WAL cannot say. Returns the `files` kept.
    fn remove_unrecorded(
        &self,
        files: Vec<SnapFile>,
        markers: &[SnapshotMetadata],
    ) -> Result<Vec<SnapFile>, Error> {
        let Some(oldest) = markers.iter().map(|m| m.index).min() else {
            return Ok(files);
        };
        let (unrecorded, kept): (Vec<SnapFile>, Vec<SnapFile>) = files
            .into_iter()
            .partition(|f| f.index > oldest && !f.named_by(markers));
        for f in &unrecorded {
            tracing::warn!(
                path = %f.path.display(),
                "removing a snapshot file the WAL never recorded (the node stopped before its \
                 marker)"
            );
            remove_if_there(&*self.fs, &f.path)?;
        }
        if !unrecorded.is_empty() {
            self.sync_dir()?;
        }
        Ok(kept)
    }

    /// Why the damaged files that loading passed over are damaged (each names its file and
    /// offset), newest file first.
    pub fn damaged(&self) -> Vec<String> {
        let damaged = self.damaged.lock().unwrap_or_else(|p| p.into_inner());
        damaged.iter().map(|(_, why)| why.clone()).collect()
    }

    /// Sets aside ([`Snapshotter::quarantine`]) the damaged files that loading passed over:
    /// for a start that has what it needs to go on from, once it has checked that. Returns
    /// where each went.
    pub fn set_damaged_aside(&self) -> Result<Vec<PathBuf>, Error> {
        let damaged = std::mem::take(&mut *self.damaged.lock().unwrap_or_else(|p| p.into_inner()));
        damaged
            .iter()
            .map(|(path, _)| self.quarantine(path))
            .collect()
    }

    /// Loads the snapshot with exactly this term and index, validating its checksum and that
    /// its metadata matches the name.
    pub fn load(&self, term: u64, index: u64) -> Result<Snapshot, Error> {
        let (meta, data) = self.load_with(term, index, read_all)?;
        Ok(snapshot_of(meta, data))
    }

    /// [`Snapshotter::load`], streaming the data through `read_data`, whose result counts
    /// only if the whole file passes its checksum.
    pub fn load_with<T>(
        &self,
        term: u64,
        index: u64,
        read_data: impl FnOnce(&mut dyn Read, u64) -> io::Result<T>,
    ) -> Result<(SnapshotMetadata, T), Error> {
        let path = self.dir.join(snap_name(term, index));
        read_snap(&*self.fs, &path, term, index, read_data)
    }

    /// Opens the file of snapshot (term, index) to read it later ([`OpenedSnapshot::read_with`]),
    /// whatever happens to its name meanwhile: on a real disk an open file outlives its
    /// unlinking, and [`crate::disk::MemFs`] hands out a copy of the bytes.
    pub fn open(&self, term: u64, index: u64) -> Result<OpenedSnapshot, Error> {
        let path = self.dir.join(snap_name(term, index));
        let (reader, len) = open_file(&*self.fs, &path)?;
        Ok(OpenedSnapshot {
            path,
            term,
            index,
            len,
            reader,
        })
    }

    /// Hands the start of the data of snapshot (term, index) to `read_data`, checking the
    /// header but not the checksum, which needs the whole file: for a file verified already
    /// (one that arrived from the leader), when only its first bytes are wanted.
    pub fn peek_with<T>(
        &self,
        term: u64,
        index: u64,
        read_data: impl FnOnce(&mut dyn Read, u64) -> io::Result<T>,
    ) -> Result<T, Error> {
        let path = self.dir.join(snap_name(term, index));
        peek_snap(&*self.fs, &path, term, index, read_data)
    }

    /// Whether the file `name` of the snapshot directory exists.
    pub fn has_file(&self, name: &str) -> bool {
        self.fs.exists(&self.dir.join(name)).unwrap_or(false)
    }

    /// Opens the file `name` of the snapshot directory to send it as it is (see
    /// [`RawSnapshotFile`]).
    pub fn open_raw(&self, name: &str) -> Result<RawSnapshotFile, Error> {
        let path = self.dir.join(name);
        let naming = self.naming();
        match self.fs.open_read(&path) {
            Ok((reader, len)) => Ok(RawSnapshotFile {
                path,
                len,
                reader,
                named: *naming,
            }),
            Err(e) if e.kind() == io::ErrorKind::NotFound => Err(Error::NotFound { path }),
            Err(e) => Err(io_err(&path)(e)),
        }
    }

    /// Makes the arrived file `name` (checked whole already) the snapshot file `meta` names:
    /// renamed into place, the directory synced. After this the WAL marker may refer to it,
    /// and once that is durable, [`Snapshotter::prune_behind`] may delete old files.
    pub fn adopt(&self, name: &str, meta: &SnapshotMetadata) -> Result<(), Error> {
        let target = snap_name(meta.term, meta.index);
        let path = self.dir.join(&target);
        if name != target {
            let from = self.dir.join(name);
            let mut naming = self.naming();
            self.fs.rename(&from, &path).map_err(io_err(&from))?;
            *naming += 1;
        }
        self.sync_dir()?;
        tracing::debug!(
            path = %path.display(),
            term = meta.term,
            index = meta.index,
            "renamed a snapshot file from the leader into place"
        );
        Ok(())
    }

    /// Deletes the file `name` of the snapshot directory (an arrived snapshot that was not
    /// installed, or a local one a newer snapshot overtook); a file already gone is fine. On a
    /// real disk the file goes on a thread of its own, and a failure is logged there, naming
    /// it.
    pub fn discard(&self, name: &str) -> Result<(), Error> {
        let path = self.dir.join(name);
        if !self.fs.background_removal() {
            return remove_if_there(&*self.fs, &path);
        }
        let fs = std::sync::Arc::clone(&self.fs);
        self.reap(Box::new(move || {
            if let Err(err) = remove_if_there(&*fs, &path) {
                tracing::warn!(%err, "cannot delete an arrived snapshot that was not installed");
            }
        }));
        Ok(())
    }

    /// Returns once the files this snapshotter (or a clone) queued for removal are gone.
    pub fn wait_for_removals(&self) {
        self.reaper
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
            .wait();
    }

    fn reap(&self, chore: Chore) {
        self.reaper
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
            .run(chore);
    }

    /// Replaces a file handle in `snap` with the file's data, read (and checked) from this
    /// snapshot directory: what an in-memory network does to deliver a snapshot to a node on
    /// another file system. Inline data is left as it is. A damaged file is set aside
    /// ([`Snapshotter::set_aside_if_damaged`]), as the real transport does when sending it.
    pub fn inline_data(&self, snap: &mut Snapshot) -> Result<(), Error> {
        let index = snap.get_metadata().index;
        let name = match SnapshotData::of(&snap.data) {
            Ok(SnapshotData::Inline(_)) => return Ok(()),
            Ok(SnapshotData::File(name)) => name.to_string(),
            Ok(SnapshotData::Follows(_)) => {
                return Err(Error::Handle {
                    index,
                    reason: "the file follows on the wire; there is no file to read".into(),
                });
            }
            Err(e) => {
                return Err(Error::Handle {
                    index,
                    reason: e.to_string(),
                });
            }
        };
        let path = self.dir.join(name);
        let meta = snap.get_metadata();
        // Counted before the open: a file put under the name in between is then spared.
        let named = *self.naming();
        let read = read_snap(&*self.fs, &path, meta.term, meta.index, read_all);
        let (_, data) = self.set_aside_if_damaged(&path, named, read)?;
        snap.data = data.into();
        Ok(())
    }

    /// Passes on `read`, the result of reading the file at `path` to send it, opened when
    /// `named` files had been put under a snapshot's name ([`RawSnapshotFile::named`]); if
    /// the file proved damaged, sets it aside first, so that the next attempt takes a fresh
    /// snapshot instead of sending this one again (the receiver would refuse it on its own
    /// check). Only if no file was put under a name since: then the path still holds the
    /// file that was read, unless another send set it aside already. Otherwise the name may
    /// hold the same snapshot taken again, good (found by a review: a second send of the
    /// damaged file, to another follower, ending after the retake, set the new one aside),
    /// and is left for its own sends to judge.
    ///
    /// The file goes to `<name>.sent.broken` (`<name>.sent.2.broken` if the same snapshot,
    /// taken again, was set aside before), apart from the files a start sets aside
    /// ([`Snapshotter::quarantine`]): of the sender's, only the oldest snapshot's and this
    /// latest one are kept. The leader takes a snapshot in place of each damaged one, of a
    /// newer state under a new name in a cluster taking writes, so a disk damaging every copy
    /// left one full copy of the state per damage until it filled (found by a review). A
    /// start's are never deleted: a node refusing to start names them so that its operator
    /// can restore them (a first fix pruned both, and the simulator caught it).
    pub fn set_aside_if_damaged<T>(
        &self,
        path: &Path,
        named: u64,
        read: Result<T, Error>,
    ) -> Result<T, Error> {
        if let Err(err) = &read
            && err.is_damage()
        {
            tracing::error!(%err, "a snapshot file being sent is damaged");
            let naming = self.naming();
            if *naming != named {
                tracing::info!(
                    path = %path.display(),
                    "a snapshot file was saved since this one was opened: the name is left to its \
                     own sends"
                );
            } else if self.fs.exists(path).unwrap_or(false)
                && let Err(err) = self.set_aside_sent(path)
            {
                tracing::error!(%err, "cannot set the damaged snapshot aside");
            }
        }
        read
    }

    /// The lock held while a file is put under a snapshot's name, opened to be sent, or set
    /// aside from it; it guards the count of files put under a name.
    pub(super) fn naming(&self) -> std::sync::MutexGuard<'_, u64> {
        // A panic while holding it leaves nothing half done that the lock guards.
        self.naming.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// Renames a damaged file to `<name>.broken`, out of the way of every later load, and
    /// keeps it for inspection; returns the new name. A file of that name already there (the
    /// same snapshot, taken again and damaged again) is kept too, and the new one is
    /// `<name>.2.broken`: a rename over the first would delete it unseen. A third replaces
    /// the second, so the first and the latest damaged copies are kept. Called at a start,
    /// before anything sends; nothing deletes these files, which later starts name
    /// (a send's set-asides have names of their own: [`Snapshotter::set_aside_if_damaged`]).
    pub fn quarantine(&self, path: &Path) -> Result<PathBuf, Error> {
        self.rename_aside(path, BROKEN_EXT, LATER_BROKEN_EXT)
    }

    /// Renames the damaged file at `path` to `<name><first>`, or to `<name><later>` if a file
    /// of the first name is there (kept: a rename over it would delete it unseen), and syncs
    /// the folder; returns the new name.
    fn rename_aside(&self, path: &Path, first: &str, later: &str) -> Result<PathBuf, Error> {
        let aside = |ext: &str| {
            let mut broken = path.as_os_str().to_owned();
            broken.push(ext);
            PathBuf::from(broken)
        };
        let first = aside(first);
        let broken = if self.fs.exists(&first).map_err(io_err(path))? {
            aside(later)
        } else {
            first
        };
        tracing::warn!(
            path = %path.display(),
            renamed_to = %broken.display(),
            "setting a damaged snapshot file aside"
        );
        self.fs.rename(path, &broken).map_err(io_err(path))?;
        self.sync_dir()?;
        Ok(broken)
    }

    /// Renames a file a send found damaged to `<name>.sent.broken`, or `<name>.sent.2.broken`
    /// if the first is there, and deletes the sender's set-asides but the oldest snapshot's
    /// and this one (see [`Snapshotter::set_aside_if_damaged`]); returns the new name.
    fn set_aside_sent(&self, path: &Path) -> Result<PathBuf, Error> {
        let broken = self.rename_aside(path, SENT_BROKEN_EXT, SENT_LATER_BROKEN_EXT)?;
        self.drop_sent_aside_but(&broken);
        Ok(broken)
    }

    /// Deletes the files sends set aside, but `latest` and the oldest snapshot's among the
    /// others. A file of a name this node does not give is left alone; a failure costs only
    /// disk, and is logged.
    fn drop_sent_aside_but(&self, latest: &Path) {
        let names = self.fs.list_dir(&self.dir).unwrap_or_default();
        let Some(latest) = latest.file_name().and_then(|n| n.to_str()) else {
            return;
        };
        let mut others: Vec<((u64, u64, bool), &String)> = names
            .iter()
            .filter(|name| name.as_str() != latest)
            .filter_map(|name| Some((parse_sent_aside_name(name)?, name)))
            .collect();
        others.sort();
        for (_, name) in others.into_iter().skip(1) {
            if let Err(err) = self.discard(name) {
                tracing::warn!(
                    %err,
                    "cannot delete a damaged snapshot file set aside by an earlier send"
                );
            }
        }
    }

    /// Every `.snap` file, oldest first (by index, then term).
    pub fn list(&self) -> Result<Vec<PathBuf>, Error> {
        Ok(self.files()?.into_iter().map(|f| f.path).collect())
    }

    /// The snapshots `markers` name above `index` whose files are not in the folder under
    /// their names (deleted, or set aside as damaged), oldest first, each once. A start that
    /// loads an older snapshot than the WAL's newest says so with them.
    pub fn missing_named(&self, markers: &[SnapshotMetadata], index: u64) -> Vec<Missing> {
        let names = self.fs.list_dir(&self.dir).unwrap_or_default();
        missing_in(&self.dir, &names, markers, index)
    }

    /// What the folder can say of the snapshots a WAL that needs entries they covered names
    /// in `markers` above `index`: see [`Gaps`].
    pub fn gaps(&self, markers: &[SnapshotMetadata], index: u64) -> Gaps {
        let names = self.fs.list_dir(&self.dir).unwrap_or_default();
        let missing = missing_in(&self.dir, &names, markers, index);
        let told: Vec<&Path> = missing
            .iter()
            .filter_map(|m| m.set_aside.as_deref())
            .collect();
        let other_set_aside = names
            .iter()
            .filter(|n| n.ends_with(BROKEN_EXT))
            .filter(|n| !told.iter().any(|t| t.file_name() == Some(n.as_ref())))
            .cloned()
            .collect();
        Gaps {
            dir: self.dir.clone(),
            missing,
            other_set_aside,
        }
    }

    fn files(&self) -> Result<Vec<SnapFile>, Error> {
        snap_files(&*self.fs, &self.dir)
    }

    fn sync_dir(&self) -> Result<(), Error> {
        self.fs.sync_dir(&self.dir).map_err(io_err(&self.dir))
    }

    /// The files up to `index` beyond the newest `keep` of them, oldest first.
    fn excess_files(&self, index: u64) -> Result<Vec<PathBuf>, Error> {
        let mut files = self.files()?;
        files.retain(|f| f.index <= index);
        let excess = files.len().saturating_sub(self.keep);
        Ok(files.into_iter().take(excess).map(|f| f.path).collect())
    }

    /// Deletes the oldest files beyond the newest `keep` among those up to `index`: the
    /// snapshot whose WAL marker has just become durable. A file above it (saved, its marker
    /// not yet written) is neither counted nor deleted. On a real disk the files go on a
    /// thread of their own (this is the raft thread); a failure costs disk, not safety, and
    /// is logged.
    pub fn prune_behind(&self, index: u64) {
        let excess = match self.excess_files(index) {
            Ok(excess) if excess.is_empty() => return,
            Ok(excess) => excess,
            Err(e) => return tracing::warn!(error = %e, "cannot delete old snapshots"),
        };
        let (fs, dir) = (std::sync::Arc::clone(&self.fs), self.dir.clone());
        let chore = move || {
            if let Err(e) = prune_files(&*fs, &dir, &excess) {
                tracing::warn!(error = %e, "cannot delete old snapshots");
            }
        };
        if self.fs.background_removal() {
            self.reap(Box::new(chore));
        } else {
            chore();
        }
    }
}

/// The snapshot files of `dir`, oldest first (by index, then term).
fn snap_files(fs: &dyn FileSystem, dir: &Path) -> Result<Vec<SnapFile>, Error> {
    let names = fs.list_dir(dir).map_err(io_err(dir))?;
    let mut files: Vec<SnapFile> = names
        .iter()
        .filter_map(|name| {
            let (term, index) = parse_snap_name(name)?;
            Some(SnapFile {
                term,
                index,
                path: dir.join(name),
            })
        })
        .collect();
    files.sort_by_key(|f| (f.index, f.term));
    Ok(files)
}

/// The snapshot that [`Snapshotter::load_newest_available_with`] would load from `dir` given
/// the WAL's `markers`, read-only: the newest file a marker names, its data gone through
/// `read_data`, which counts only if the whole file passes its checksum. For a start's check
/// before it loads the snapshot, which must leave the repairs to the load: where that file
/// cannot be loaded, the error says why, and nothing is set aside nor an older file tried
/// (the load does both, and judges the damage). `Ok(None)` where no file is named, a missing
/// folder included (the load creates it, and finds none).
pub fn read_newest_available_on<T>(
    fs: &dyn FileSystem,
    dir: &Path,
    markers: &[SnapshotMetadata],
    read_data: impl FnOnce(&mut dyn Read, u64) -> io::Result<T>,
) -> Result<Option<(SnapshotMetadata, T)>, Error> {
    newest_named(fs, dir, markers)?
        .map(|f| read_snap(fs, &f.path, f.term, f.index, read_data))
        .transpose()
}

/// The marker among `markers` that names the file [`read_newest_available_on`] would read,
/// found by listing `dir` alone: the file is not opened. Its metadata is the one that read
/// returns from the file's header, where the file reads whole: the node writes the marker
/// from the metadata it wrote the file with (a snapshot from the leader: from the metadata
/// the leader sent beside the file, which it read from that file's header at its start or
/// wrote it with). `Ok(None)` where no file is named, a missing folder included.
pub fn newest_named_marker_on<'m>(
    fs: &dyn FileSystem,
    dir: &Path,
    markers: &'m [SnapshotMetadata],
) -> Result<Option<&'m SnapshotMetadata>, Error> {
    Ok(newest_named(fs, dir, markers)?.and_then(|f| f.marker(markers)))
}

/// The newest file of `dir` that one of `markers` names, from a listing of `dir`.
fn newest_named(
    fs: &dyn FileSystem,
    dir: &Path,
    markers: &[SnapshotMetadata],
) -> Result<Option<SnapFile>, Error> {
    if !fs.exists(dir).map_err(io_err(dir))? {
        return Ok(None);
    }
    // The load removes unnamed files and skips them; neither changes which named one is
    // newest.
    Ok(snap_files(fs, dir)?
        .into_iter()
        .rev()
        .find(|f| f.named_by(markers)))
}

fn new_reaper() -> std::sync::Arc<std::sync::Mutex<Reaper>> {
    std::sync::Arc::new(std::sync::Mutex::new(Reaper::new("snap-reaper")))
}

/// Removes the old snapshot files `paths`, then syncs `dir`.
fn prune_files(fs: &dyn FileSystem, dir: &Path, paths: &[PathBuf]) -> Result<(), Error> {
    for path in paths {
        // A file still being sent to a follower, or waiting for the state machine to restore
        // it ([`Snapshotter::open`]), stays readable until it is closed. A file may be gone
        // already: an overtaken snapshot is discarded and may be pruned too.
        remove_if_there(fs, path)?;
        tracing::debug!(path = %path.display(), "pruned old snapshot");
    }
    fs.sync_dir(dir).map_err(io_err(dir))
}

/// Removes `path`; one already gone is fine.
fn remove_if_there(fs: &dyn FileSystem, path: &Path) -> Result<(), Error> {
    match fs.remove_file(path) {
        Ok(()) => Ok(()),
        Err(e) if e.kind() == io::ErrorKind::NotFound => Ok(()),
        Err(e) => Err(io_err(path)(e)),
    }
}

/// Checks the whole file at `path` on the real disk, a snapshot (term, index) that arrived
/// under another name: header, lengths, metadata and checksum.
pub fn verify_file(path: &Path, term: u64, index: u64) -> Result<SnapshotMetadata, Error> {
    read_snap(&StdFs, path, term, index, |_, _| Ok(())).map(|(meta, ())| meta)
}

/// A snapshot a WAL's marker names whose file is not in the folder under its name.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Missing {
    /// The snapshot's term, as the marker names it.
    pub term: u64,
    /// Its index.
    pub index: u64,
    /// Where its file would be.
    pub path: PathBuf,
    /// The latest copy of it an earlier start set aside as damaged (`<name>.2.broken`, else
    /// `<name>.broken`), if one is there: without it, a later start could only say that the
    /// file is missing, and its operator would look for a deletion (a hands-on campaign).
    pub set_aside: Option<PathBuf>,
}

impl std::fmt::Display for Missing {
    /// Its file's name, term and index, and where an earlier start set it aside, if it did.
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let name = snap_name(self.term, self.index);
        write!(f, "{name} (term {}, index {}", self.term, self.index)?;
        if let Some(aside) = &self.set_aside {
            write!(
                f,
                "; set aside as {} by an earlier start because it was damaged",
                aside.display()
            )?;
        }
        write!(f, ")")
    }
}

/// What a snapshot folder can say of the snapshots that a WAL, which needs entries they
/// covered, names: those not there, and other files set aside as damaged.
#[derive(Debug, Clone)]
pub struct Gaps {
    /// The folder.
    pub dir: PathBuf,
    /// The snapshots the WAL names that are not in it, oldest first.
    pub missing: Vec<Missing>,
    /// The names of the files set aside as damaged there that none of `missing` is.
    pub other_set_aside: Vec<String>,
}

/// The snapshots `markers` name above `index` whose files are not among `names` (the folder
/// `dir`'s), oldest first (by index, then term), each once: a marker is repeated in each
/// segment's header.
fn missing_in(
    dir: &Path,
    names: &[String],
    markers: &[SnapshotMetadata],
    index: u64,
) -> Vec<Missing> {
    let named: std::collections::BTreeSet<(u64, u64)> = markers
        .iter()
        .filter(|m| m.index > index)
        .map(|m| (m.index, m.term))
        .collect();
    named
        .into_iter()
        .filter(|&(index, term)| !names.contains(&snap_name(term, index)))
        .map(|(index, term)| {
            let name = snap_name(term, index);
            let set_aside = [LATER_BROKEN_EXT, BROKEN_EXT]
                .iter()
                .map(|ext| format!("{name}{ext}"))
                .find(|aside| names.contains(aside))
                .map(|aside| dir.join(aside));
            Missing {
                term,
                index,
                path: dir.join(name),
                set_aside,
            }
        })
        .collect()
}

/// Every `.snap` file of `dir`, oldest first, without creating or changing anything (for
/// `raftexample dump`, which must not touch a stopped node's files).
pub fn list_files(dir: &Path) -> Result<Vec<PathBuf>, Error> {
    reader(dir).list()
}

/// [`Snapshotter::gaps`] of the folder `dir`, read without creating or changing anything
/// (for `raftexample dump`).
pub fn gaps_in(dir: &Path, markers: &[SnapshotMetadata], index: u64) -> Gaps {
    reader(dir).gaps(markers, index)
}

/// A snapshotter on `dir` for reading only: unlike [`Snapshotter::new`], it neither creates
/// the folder nor removes leftovers. Only its listing and reading methods may be called.
fn reader(dir: &Path) -> Snapshotter {
    Snapshotter {
        fs: StdFs::shared(),
        dir: dir.to_path_buf(),
        keep: usize::MAX,
        damaged: Default::default(),
        reaper: new_reaper(),
        naming: Default::default(),
    }
}

/// Reads and validates one snapshot file by path; its name says its term and index.
pub fn read_file(path: &Path) -> Result<Snapshot, Error> {
    let name = path.file_name().and_then(|n| n.to_str()).unwrap_or("");
    let (term, index) = parse_snap_name(name).ok_or_else(|| Error::NotFound {
        path: path.to_path_buf(),
    })?;
    let (meta, data) = read_snap(&StdFs, path, term, index, read_all)?;
    Ok(snapshot_of(meta, data))
}

#[cfg(test)]
mod tests {
    use super::*;
    use raft::eraftpb::ConfState;
    use std::fs;
    use tempfile::TempDir;

    fn snap(term: u64, index: u64, data: &[u8]) -> Snapshot {
        let mut s = Snapshot::default();
        let m = s.mut_metadata();
        m.term = term;
        m.index = index;
        m.set_conf_state(ConfState::from((vec![1, 2, 3], vec![])));
        s.data = data.to_vec().into();
        s
    }

    fn marker(term: u64, index: u64) -> SnapshotMetadata {
        snap(term, index, b"").get_metadata().clone()
    }

    fn names(dir: &Path) -> Vec<String> {
        let mut v: Vec<_> = fs::read_dir(dir)
            .unwrap()
            .map(|d| d.unwrap().file_name().into_string().unwrap())
            .collect();
        v.sort();
        v
    }

    #[test]
    fn save_then_load_round_trips() {
        let tmp = TempDir::new().unwrap();
        let s = Snapshotter::new(&tmp.path().join("snap"), DEFAULT_KEEP).unwrap();
        let want = snap(2, 10, b"{\"k\":\"v\"}");
        s.save(&want).unwrap();
        assert_eq!(names(s.dir()), vec![snap_name(2, 10)]);
        assert_eq!(s.load(2, 10).unwrap(), want);
        let newest = s.load_newest_available(&[marker(2, 10)]).unwrap();
        assert_eq!(newest, Some(want));
        // Empty data is fine too.
        let empty = snap(2, 11, b"");
        s.save(&empty).unwrap();
        assert_eq!(s.load(2, 11).unwrap(), empty);
    }

    #[test]
    fn empty_snapshot_is_not_saved() {
        let tmp = TempDir::new().unwrap();
        let s = Snapshotter::new(tmp.path(), DEFAULT_KEEP).unwrap();
        s.save(&Snapshot::default()).unwrap();
        assert!(s.list().unwrap().is_empty());
    }

    #[test]
    fn missing_file_is_not_found() {
        let tmp = TempDir::new().unwrap();
        let s = Snapshotter::new(tmp.path(), DEFAULT_KEEP).unwrap();
        match s.load(1, 1).unwrap_err() {
            Error::NotFound { path } => assert_eq!(path, tmp.path().join(snap_name(1, 1))),
            other => panic!("expected NotFound, got {other:?}"),
        }
        assert_eq!(s.load_newest_available(&[marker(1, 1)]).unwrap(), None);
    }

    #[test]
    fn every_damage_is_corrupt_with_the_path() {
        let tmp = TempDir::new().unwrap();
        let s = Snapshotter::new(tmp.path(), DEFAULT_KEEP).unwrap();
        s.save(&snap(1, 5, b"some application data")).unwrap();
        let path = tmp.path().join(snap_name(1, 5));
        let good = fs::read(&path).unwrap();
        for i in 0..good.len() {
            let mut bad = good.clone();
            bad[i] ^= 0x40;
            fs::write(&path, &bad).unwrap();
            match s.load(1, 5).unwrap_err() {
                Error::Corrupt { path: p, .. } => assert_eq!(p, path),
                other => panic!("byte {i}: expected Corrupt, got {other:?}"),
            }
        }
        for cut in 0..good.len() {
            fs::write(&path, &good[..cut]).unwrap();
            assert!(
                matches!(s.load(1, 5), Err(Error::Corrupt { .. })),
                "cut {cut}"
            );
        }
    }

    #[test]
    fn file_name_must_match_metadata() {
        let tmp = TempDir::new().unwrap();
        let s = Snapshotter::new(tmp.path(), DEFAULT_KEEP).unwrap();
        s.save(&snap(1, 5, b"x")).unwrap();
        fs::rename(
            tmp.path().join(snap_name(1, 5)),
            tmp.path().join(snap_name(1, 6)),
        )
        .unwrap();
        let err = s.load(1, 6).unwrap_err();
        assert!(
            err.to_string().contains("metadata says term 1 index 5"),
            "{err}"
        );
    }

    /// A damaged newest file is passed over for the one before, and left where it is until
    /// the start, having checked that it can go on, sets it aside: a start that refuses
    /// leaves the folder as it found it.
    #[test]
    fn corrupt_newest_falls_back_to_previous_and_is_renamed_broken() {
        let tmp = TempDir::new().unwrap();
        let s = Snapshotter::new(tmp.path(), DEFAULT_KEEP).unwrap();
        let older = snap(1, 10, b"older");
        s.save(&older).unwrap();
        s.save(&snap(1, 20, b"newer")).unwrap();
        let newest = tmp.path().join(snap_name(1, 20));
        let mut bytes = fs::read(&newest).unwrap();
        let mid = bytes.len() / 2;
        bytes[mid] ^= 0xFF;
        fs::write(&newest, &bytes).unwrap();

        let got = s
            .load_newest_available(&[marker(1, 10), marker(1, 20)])
            .unwrap();
        assert_eq!(got, Some(older));
        assert_eq!(names(tmp.path()), vec![snap_name(1, 10), snap_name(1, 20)]);
        let damaged = s.damaged();
        assert!(
            damaged.len() == 1 && damaged[0].contains(&newest.display().to_string()),
            "{damaged:?}"
        );
        let aside = s.set_damaged_aside().expect("set aside");
        assert_eq!(
            aside,
            vec![tmp.path().join(format!("{}.broken", snap_name(1, 20)))]
        );
        assert_eq!(
            names(tmp.path()),
            vec![snap_name(1, 10), format!("{}.broken", snap_name(1, 20))]
        );
        assert_eq!(s.list().unwrap(), vec![tmp.path().join(snap_name(1, 10))]);
    }

    /// A snapshot taken again at the same term and index, and damaged again, is set aside
    /// beside the first damaged copy, which stays: a rename to the same `.broken` name
    /// deleted it unseen. A third replaces the second, so that the first and the latest stay
    /// and copies damaged again and again cannot fill the disk (found by a review).
    #[test]
    fn a_second_damaged_file_of_one_snapshot_is_set_aside_beside_the_first() {
        let dir = TempDir::new().expect("temp dir");
        let s = Snapshotter::new(dir.path(), 5).expect("snapshotter");
        let path = dir.path().join(snap_name(1, 10));
        let mut copies = Vec::new();
        for round in 1..=3u8 {
            s.save(&snap(1, 10, &[round; 64])).expect("saved");
            copies.push(fs::read(&path).expect("the file saved"));
            s.quarantine(&path).expect("set aside");
        }
        let first = snap_name(1, 10);
        assert_eq!(
            names(dir.path()),
            vec![format!("{first}.2.broken"), format!("{first}.broken")]
        );
        let kept = |name: String| fs::read(dir.path().join(name)).expect("a file set aside");
        assert_eq!(
            kept(format!("{first}.broken")),
            copies[0],
            "the first stays"
        );
        assert_eq!(
            kept(format!("{first}.2.broken")),
            copies[2],
            "and the latest"
        );
        assert_eq!(s.list().expect("listed"), Vec::<PathBuf>::new());
    }

    /// Of the files sends found damaged, under many names (a cluster taking writes, each
    /// snapshot in place of a damaged one of a newer state) or one (an idle cluster), the
    /// oldest snapshot's and the latest are kept, and a start's set-asides all stay: a node
    /// refusing to start names those for its operator to restore (found by a review, and a
    /// first fix that pruned both was caught by the simulator).
    #[test]
    fn a_sends_damaged_files_are_kept_first_and_latest_and_a_starts_all() {
        let dir = TempDir::new().expect("temp dir");
        let s = Snapshotter::new(dir.path(), 5).expect("snapshotter");
        fs::write(dir.path().join("notes.sent.broken"), b"not ours").expect("written");
        // Set aside by starts: never deleted.
        for index in [3, 4] {
            s.save(&snap(1, index, &[index as u8; 64])).expect("saved");
            s.quarantine(&dir.path().join(snap_name(1, index)))
                .expect("set aside at a start");
        }
        let damaged = || Error::Corrupt {
            path: dir.path().to_path_buf(),
            offset: 0,
            reason: "a test's damage".into(),
        };
        let mut latest = Vec::new();
        for (index, copies) in [(10, 2), (11, 1), (12, 3), (13, 1), (13, 1)] {
            for _ in 0..copies {
                s.save(&snap(1, index, &[index as u8; 64])).expect("saved");
                let path = dir.path().join(snap_name(1, index));
                latest = fs::read(&path).expect("the file saved");
                let named = *s.naming();
                assert!(
                    s.set_aside_if_damaged::<()>(&path, named, Err(damaged()))
                        .is_err()
                );
                assert!(!path.exists(), "set aside");
            }
        }
        // On a real disk the files go on the reaper's thread.
        s.wait_for_removals();
        let mut want = vec![
            format!("{}.broken", snap_name(1, 3)),
            format!("{}.broken", snap_name(1, 4)),
            format!("{}.sent.broken", snap_name(1, 10)),
            format!("{}.sent.2.broken", snap_name(1, 13)),
            "notes.sent.broken".to_string(),
        ];
        want.sort();
        assert_eq!(names(dir.path()), want);
        assert_eq!(
            fs::read(dir.path().join(&want[3])).expect("the latest"),
            latest,
            "the latest copy is the one kept"
        );
        assert_eq!(s.list().expect("listed"), Vec::<PathBuf>::new());
    }

    /// A file the WAL never recorded is not loaded; one above the oldest marker (the crash
    /// came before its marker) is removed, so that it never counts among the files pruning
    /// keeps; one below it stays (its marker may be in a released segment).
    #[test]
    fn snapshot_without_a_marker_is_ignored_and_removed_if_newer() {
        let tmp = TempDir::new().unwrap();
        let s = Snapshotter::new(tmp.path(), DEFAULT_KEEP).unwrap();
        s.save(&snap(1, 5, b"older, its marker released")).unwrap();
        let marked = snap(1, 10, b"marked");
        s.save(&marked).unwrap();
        // Saved, but the crash came before its WAL marker.
        s.save(&snap(1, 20, b"unmarked")).unwrap();
        assert_eq!(s.load_newest_available(&[]).unwrap(), None);
        assert_eq!(s.list().unwrap().len(), 3, "no marker: nothing removed");
        assert_eq!(
            s.load_newest_available(&[marker(1, 10)]).unwrap(),
            Some(marked)
        );
        // Nothing was renamed as damaged.
        assert_eq!(names(tmp.path()), vec![snap_name(1, 5), snap_name(1, 10)]);

        // Between two markers: overtaken by a newer snapshot, never recorded.
        s.save(&snap(1, 15, b"overtaken")).unwrap();
        let newest = snap(1, 30, b"newest");
        s.save(&newest).unwrap();
        assert_eq!(
            s.load_newest_available(&[marker(1, 10), marker(1, 30)])
                .unwrap(),
            Some(newest)
        );
        assert_eq!(
            names(tmp.path()),
            vec![snap_name(1, 5), snap_name(1, 10), snap_name(1, 30)]
        );
    }

    /// The marker found from a listing alone names the file the load reads, and holds the
    /// metadata it reads from that file's header: not the newest marker where its file is
    /// gone, nor a file no marker names. A missing folder names none.
    #[test]
    fn the_newest_named_marker_is_that_of_the_file_the_load_reads() {
        let tmp = TempDir::new().unwrap();
        let dir = tmp.path().join("snap");
        let markers = [marker(1, 5), marker(1, 10), marker(1, 30)];
        assert_eq!(
            newest_named_marker_on(&StdFs, &dir, &markers).unwrap(),
            None
        );
        let s = Snapshotter::new(&dir, DEFAULT_KEEP).unwrap();
        s.save(&snap(1, 5, b"older")).unwrap();
        s.save(&snap(1, 10, b"newest marked and present")).unwrap();
        // Saved, but the crash came before its marker; and marker 30's file is gone.
        s.save(&snap(1, 20, b"unmarked")).unwrap();
        let named = newest_named_marker_on(&StdFs, &dir, &markers).unwrap();
        assert_eq!(named, Some(&markers[1]));
        let loaded = s.load_newest_available(&markers).unwrap().unwrap();
        assert_eq!(named, Some(loaded.get_metadata()));
    }

    #[test]
    fn prune_keeps_the_newest_keep_files() {
        let tmp = TempDir::new().unwrap();
        let s = Snapshotter::new(tmp.path(), 3).unwrap();
        for i in 1..=7 {
            s.save(&snap(1, i * 100, b"d")).unwrap();
        }
        assert_eq!(s.list().unwrap().len(), 7, "a save alone prunes nothing");
        s.prune_behind(700);
        s.clone().wait_for_removals();
        assert_eq!(
            s.list().unwrap(),
            [500, 600, 700]
                .iter()
                .map(|&i| tmp.path().join(snap_name(1, i)))
                .collect::<Vec<_>>()
        );
        // keep is raised to 2.
        let s1 = Snapshotter::new(tmp.path(), 1).unwrap();
        s1.save(&snap(1, 800, b"d")).unwrap();
        s1.prune_behind(800);
        s1.clone().wait_for_removals();
        assert_eq!(s1.list().unwrap().len(), 2);
    }

    /// A file above the snapshot whose marker became durable (saved, its own marker still
    /// to come) neither counts among the files kept nor goes: counted, with `keep` 2 it would
    /// push out the WAL's newest marked file behind the new one.
    #[test]
    fn prune_counts_nothing_above_the_recorded_snapshot() {
        let tmp = TempDir::new().unwrap();
        let s = Snapshotter::new(tmp.path(), 2).unwrap();
        for i in [100, 200, 300, 400] {
            s.save(&snap(1, i, b"d")).unwrap();
        }
        s.prune_behind(300);
        s.clone().wait_for_removals();
        assert_eq!(
            names(tmp.path()),
            vec![snap_name(1, 200), snap_name(1, 300), snap_name(1, 400)]
        );
    }

    /// A file opened for a restore still to come reads whole after pruning removed its name,
    /// on the real disk and on MemFs: the state machine restores a snapshot from the leader
    /// after newer installs may have pruned it.
    #[test]
    fn an_opened_snapshot_outlives_its_pruning() {
        use crate::disk::MemFs;
        use std::sync::Arc;
        let tmp = TempDir::new().unwrap();
        let places: [(SharedFs, PathBuf); 2] = [
            (StdFs::shared(), tmp.path().to_path_buf()),
            (Arc::new(MemFs::new(1)), "/snap".into()),
        ];
        for (fs, dir) in places {
            let s = Snapshotter::new_on(fs, &dir, 2).unwrap();
            s.save(&snap(1, 100, b"queued")).unwrap();
            let opened = s.open(1, 100).unwrap();
            for i in [200, 300] {
                s.save(&snap(1, i, b"newer")).unwrap();
                s.prune_behind(i);
            }
            s.wait_for_removals();
            assert!(!s.has_file(&snap_name(1, 100)), "{}", dir.display());
            let (meta, data) = opened.read_with(read_all).unwrap();
            assert_eq!((meta.index, data.as_slice()), (100, &b"queued"[..]));
        }
    }

    /// `prune_behind` and `discard` run on the raft thread: on a real disk the files they remove go
    /// on the reaper's thread (a 1 GiB unlink takes ~250 ms here), and are gone once
    /// `wait_for_removals` returns; a file already gone is fine.
    #[test]
    fn prune_and_discard_remove_on_the_reaper() {
        let tmp = TempDir::new().unwrap();
        assert!(StdFs.background_removal());
        let wide = Snapshotter::new(tmp.path(), 5).unwrap();
        for i in 1..=4 {
            wide.save(&snap(1, i * 100, b"d")).unwrap();
        }
        let s = Snapshotter::new(tmp.path(), 2).unwrap();
        s.adopt(&snap_name(1, 400), &marker(1, 400)).unwrap();
        s.prune_behind(400);
        fs::write(tmp.path().join("arrived"), b"not taken").unwrap();
        s.discard("arrived").unwrap();
        s.discard("never-there").unwrap();
        // The reaper's thread lives until waited for. Linux shows thread names in /proc; a new
        // thread names itself once it runs, so look until a deadline.
        let threads = || -> Vec<String> {
            fs::read_dir("/proc/self/task")
                .unwrap()
                .filter_map(|t| fs::read_to_string(t.ok()?.path().join("comm")).ok())
                .map(|comm| comm.trim().to_string())
                .collect()
        };
        let deadline = std::time::Instant::now() + std::time::Duration::from_secs(10);
        while !threads().iter().any(|t| t == "snap-reaper") {
            assert!(std::time::Instant::now() < deadline, "{:?}", threads());
            std::thread::sleep(std::time::Duration::from_millis(1));
        }
        s.clone().wait_for_removals();
        assert_eq!(
            s.list().unwrap(),
            [300, 400]
                .iter()
                .map(|&i| tmp.path().join(snap_name(1, i)))
                .collect::<Vec<_>>()
        );
        assert!(!tmp.path().join("arrived").exists());
        assert_eq!(s.load(1, 400).unwrap().data.as_ref(), b"d");
    }

    #[test]
    fn list_orders_by_index_and_new_removes_tmp_leftovers() {
        let tmp = TempDir::new().unwrap();
        let s = Snapshotter::new(tmp.path(), DEFAULT_KEEP).unwrap();
        s.save(&snap(3, 0x30, b"c")).unwrap();
        s.save(&snap(1, 0x10, b"a")).unwrap();
        s.save(&snap(2, 0x20, b"b")).unwrap();
        fs::write(
            tmp.path().join(format!("{}.tmp", snap_name(4, 0x40))),
            b"half",
        )
        .unwrap();
        fs::write(tmp.path().join("unrelated"), b"").unwrap();
        let s = Snapshotter::new(tmp.path(), DEFAULT_KEEP).unwrap();
        let listed: Vec<_> = s
            .list()
            .unwrap()
            .iter()
            .map(|p| p.file_name().unwrap().to_str().unwrap().to_string())
            .collect();
        assert_eq!(
            listed,
            vec![snap_name(1, 0x10), snap_name(2, 0x20), snap_name(3, 0x30)]
        );
        assert!(!names(tmp.path()).iter().any(|n| n.ends_with(".tmp")));
    }

    #[test]
    fn streamed_saves_check_their_length_and_loads_check_the_checksum_first() {
        let tmp = TempDir::new().unwrap();
        let s = Snapshotter::new(tmp.path(), 5).unwrap();
        let meta = marker(2, 7);
        let short = s.save_with(&meta, 10, |w| w.write_all(b"12345"));
        assert!(matches!(short, Err(Error::Encode { .. })), "{short:?}");
        assert!(names(tmp.path()).is_empty(), "a failed save leaves nothing");

        s.save_with(&meta, 5, |w| w.write_all(b"hello")).unwrap();
        let (got, data) = s
            .load_newest_available_with(std::slice::from_ref(&meta), |r, len| {
                let mut v = Vec::new();
                r.read_to_end(&mut v)?;
                assert_eq!(v.len() as u64, len);
                Ok(v)
            })
            .unwrap()
            .unwrap();
        assert_eq!(
            (got.term, got.index, data.as_slice()),
            (2, 7, &b"hello"[..])
        );

        // An intact file whose data the reader rejects is a decode error, and is kept.
        let refused = s.load_newest_available_with(std::slice::from_ref(&meta), |_, _| {
            Err::<(), _>(io::Error::new(io::ErrorKind::InvalidData, "not for me"))
        });
        assert!(matches!(refused, Err(Error::Decode { .. })), "{refused:?}");
        assert_eq!(names(tmp.path()), vec![snap_name(2, 7)]);

        // A damaged one is corrupt even if the reader stopped early.
        let path = tmp.path().join(snap_name(2, 7));
        let mut bytes = fs::read(&path).unwrap();
        let last_data = bytes.len() - 5;
        bytes[last_data] ^= 1;
        fs::write(&path, &bytes).unwrap();
        let early = s.load(2, 7);
        assert!(matches!(early, Err(Error::Corrupt { .. })), "{early:?}");
    }

    /// A snapshot file the disk cannot read (`EIO` from a bad sector, the usual way a disk
    /// reports damage) is as unusable to a send as one whose checksum fails: the send sets it
    /// aside, so that the leader takes the state again (a leader sent the same unreadable file
    /// for ever: found by a review). A start leaves it where it is and names it: the error may
    /// pass, and setting aside the only file the WAL can start from would refuse every later
    /// start (found by the next review).
    #[test]
    fn a_file_the_disk_cannot_read_is_set_aside_by_a_send_and_named_by_a_start() {
        use crate::disk::MemFs;
        use std::sync::Arc;
        let dir = Path::new("/data/raftexample-1-snap");
        let disk = MemFs::new(1);
        let s = Snapshotter::new_on(Arc::new(disk.clone()), dir, DEFAULT_KEEP).unwrap();
        s.save(&snap(1, 10, b"older")).unwrap();
        s.save(&snap(1, 20, &[7; 100_000])).unwrap();
        let newest = dir.join(snap_name(1, 20));
        let listed = || disk.list_dir(dir).unwrap();

        // A send meets the bad sector halfway.
        disk.fail_reads(&newest, Some(50_000));
        let raw = s.open_raw(&snap_name(1, 20)).unwrap();
        let named = raw.named();
        let sent = s.set_aside_if_damaged(&newest, named, raw.copy_to(4096, |_| Ok(())));
        assert!(sent.as_ref().is_err_and(Error::is_damage), "{sent:?}");
        assert!(!disk.exists(&newest).unwrap(), "set aside");
        assert_eq!(
            listed(),
            vec![
                snap_name(1, 10),
                format!("{}{SENT_BROKEN_EXT}", snap_name(1, 20))
            ]
        );

        // Saved again (the leader's retake), then unreadable at a start: named, and left.
        let newer = snap(1, 20, &[7; 100_000]);
        s.save(&newer).unwrap();
        disk.fail_reads(&newest, Some(0));
        let markers = [marker(1, 10), marker(1, 20)];
        let err = s.load_newest_available(&markers).expect_err("unreadable");
        assert!(
            err.to_string().contains(&newest.display().to_string()),
            "{err}"
        );
        assert!(disk.exists(&newest).unwrap(), "left where it is");
        assert!(s.damaged().is_empty());
        // The disk reads it again: the next start uses it.
        disk.fail_reads(&newest, None);
        assert_eq!(s.load_newest_available(&markers).unwrap(), Some(newer));
    }

    /// On a disk that loses power at any step of a save, the new snapshot is afterwards
    /// either whole or absent (never a partial file under its name), the previous one is
    /// intact, no temporary file stays behind, and a save that returned `Ok` survives.
    #[test]
    fn a_power_loss_during_a_save_leaves_the_whole_snapshot_or_none() {
        use crate::disk::MemFs;
        use std::sync::Arc;
        let dir = Path::new("/data/raftexample-1-snap");
        let mut outcomes = std::collections::BTreeSet::new();
        for seed in 0..20 {
            for after in 0..10 {
                let fs = MemFs::new(seed);
                let shared: SharedFs = Arc::new(fs.clone());
                let s = Snapshotter::new_on(shared.clone(), dir, DEFAULT_KEEP).unwrap();
                let old = snap(1, 5, b"old");
                s.save(&old).unwrap();
                let new = snap(2, 10, &[7; 300_000]); // two direct chunks and a tail
                fs.power_loss_after(after);
                let saved = s.save(&new).is_ok();
                if fs.is_off() {
                    fs.power_on();
                } else {
                    fs.power_on();
                    fs.power_loss();
                }
                let s = Snapshotter::new_on(shared.clone(), dir, DEFAULT_KEEP).unwrap();
                assert_eq!(s.load(1, 5).unwrap(), old, "seed {seed} after {after}");
                match s.load(2, 10) {
                    Ok(got) => assert_eq!(got, new, "seed {seed} after {after}"),
                    Err(Error::NotFound { .. }) if !saved => {}
                    Err(e) => panic!("seed {seed} after {after}: {e}"),
                }
                outcomes.insert((saved, s.list().unwrap().len()));
                let names = shared.list_dir(dir).unwrap();
                assert!(!names.iter().any(|n| n.ends_with(".tmp")), "{names:?}");
            }
        }
        // Saved, lost, and not acknowledged but durable all happened.
        assert_eq!(
            outcomes,
            [(false, 1), (false, 2), (true, 2)].into_iter().collect()
        );
    }

    /// A save whose last step, the rename to its name, fails leaves no file behind: the
    /// `.tmp` held a whole copy of the state, kept until the next start, on a disk that may
    /// be full (a rename may need a block of the folder; found by a review).
    #[test]
    fn a_save_whose_rename_fails_leaves_no_file() {
        use crate::disk::MemFs;
        use std::sync::Arc;
        let dir = Path::new("/data/raftexample-1-snap");
        let fs = MemFs::new(1);
        let shared: SharedFs = Arc::new(fs.clone());
        let s = Snapshotter::new_on(shared.clone(), dir, DEFAULT_KEEP).unwrap();
        let tmp = dir.join(format!("{}{TMP_EXT}", snap_name(2, 10)));
        fs.refuse_rename(&tmp, true);
        let err = s.save(&snap(2, 10, &[7; 10_000])).unwrap_err();
        assert!(err.to_string().contains(&snap_name(2, 10)), "{err}");
        assert_eq!(shared.list_dir(dir).unwrap(), Vec::<String>::new());
    }

    /// Where the disk allows it, snapshot files are written around the page cache in whole
    /// chunks, the last padded and then cut to length: files of every length around a chunk's
    /// end, and past a periodic sync, read back whole, written directly (on the real disk and
    /// on MemFs) or through the page cache.
    #[test]
    fn files_of_any_length_read_back_written_directly_or_not() {
        use crate::disk::{MemFs, StdFs};
        use file::{DIRECT_CHUNK, SYNC_EVERY};
        use std::sync::Arc;
        let tmp = TempDir::new().unwrap();
        let cached = MemFs::new(2);
        cached.set_direct_io(None);
        // Direct units below a chunk, and above one (the chunk is then the unit).
        let (sector, huge) = (MemFs::new(3), MemFs::new(4));
        sector.set_direct_io(Some(4096));
        huge.set_direct_io(Some(DIRECT_CHUNK * 2));
        let places: [(&str, SharedFs, PathBuf); 5] = [
            ("disk", StdFs::shared(), tmp.path().to_path_buf()),
            ("mem, direct", Arc::new(MemFs::new(1)), "/snap".into()),
            ("mem, direct 4 KiB", Arc::new(sector), "/snap".into()),
            ("mem, direct 2 chunks", Arc::new(huge), "/snap".into()),
            ("mem, page cache", Arc::new(cached), "/snap".into()),
        ];
        let chunk = DIRECT_CHUNK as u64;
        let lengths = (chunk - 80..chunk + 8).chain([0, 1, 3 * chunk + 17, SYNC_EVERY + 5]);
        let meta = marker(3, 9);
        for (index, len) in (10..).zip(lengths) {
            let meta = SnapshotMetadata {
                index,
                ..meta.clone()
            };
            let data: Vec<u8> = (0..len).map(|i| (i * 7 + index) as u8).collect();
            for (what, fs, dir) in &places {
                let s = Snapshotter::new_on(fs.clone(), dir, 2).unwrap();
                s.save_with(&meta, len, |w| w.write_all(&data)).unwrap();
                let (_, got) = s
                    .load_newest_available_with(std::slice::from_ref(&meta), |r, _| {
                        let mut v = Vec::new();
                        r.read_to_end(&mut v)?;
                        Ok(v)
                    })
                    .unwrap()
                    .unwrap_or_else(|| panic!("{what}: no snapshot of {len} bytes"));
                assert!(got == data, "{what}: {len} bytes did not read back");
            }
        }
    }

    #[test]
    fn names_round_trip() {
        assert_eq!(snap_name(1, 0xab), "0000000000000001-00000000000000ab.snap");
        assert_eq!(parse_snap_name(&snap_name(7, 9)), Some((7, 9)));
        assert_eq!(
            parse_snap_name("0000000000000001-00000000000000ab.snap.broken"),
            None
        );
    }
}
