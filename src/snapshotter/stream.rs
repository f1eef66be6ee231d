//! A snapshot file as a stream of bytes: one on its way to disk ([`SnapshotWriter`], which
//! the state machine writes its data through and then seals), one read as it is to be sent
//! to a follower ([`RawSnapshotFile`], checked on the way), and one opened now to be restored
//! later ([`OpenedSnapshot`]).

use std::io::{self, Read, Write};
use std::path::{Path, PathBuf};

use bytes::Bytes;
use raft::eraftpb::SnapshotMetadata;

use super::file::{FileSink, checksum_mismatch, io_err, read_opened};
use super::{Error, Snapshotter};
use crate::disk::IoError;

/// A snapshot file on its way to disk (from [`Snapshotter::begin`]): the application's data
/// is written through [`Write`], then [`SnapshotWriter::finish`] seals it.
pub struct SnapshotWriter {
    pub(super) snapshotter: Snapshotter,
    pub(super) path: PathBuf,
    pub(super) tmp: PathBuf,
    pub(super) term: u64,
    pub(super) index: u64,
    /// `None` once finished.
    pub(super) sink: Option<FileSink>,
}

impl SnapshotWriter {
    /// Checks that the announced length was written, appends the checksum, syncs, renames
    /// the file to its name and syncs the directory. On error no file is left. Old files are
    /// not pruned here: see [`Snapshotter::prune_behind`].
    pub fn finish(mut self) -> Result<(), Error> {
        let sink = self
            .sink
            .take()
            .expect("the sink is taken only here, and finish consumes the writer");
        let snap = &self.snapshotter;
        if let Err(e) = sink.seal() {
            let _ = snap.fs.remove_file(&self.tmp);
            return Err(e.into_error(&self.path));
        }
        {
            let mut naming = snap.naming();
            if let Err(e) = snap.fs.rename(&self.tmp, &self.path) {
                // A whole copy of the state, which a full disk (a rename may need a block of
                // the folder) would otherwise keep until the next start (found by a review).
                let _ = snap.fs.remove_file(&self.tmp);
                return Err(io_err(&self.path)(e));
            }
            *naming += 1;
        }
        snap.sync_dir()?;
        tracing::debug!(
            path = %self.path.display(),
            term = self.term,
            index = self.index,
            "snapshot file written"
        );
        Ok(())
    }

    /// Data bytes written so far.
    pub fn data_written(&self) -> u64 {
        self.sink.as_ref().map_or(0, FileSink::data_written)
    }

    /// Gives up after `err` from writing the data: no file is left, and the error names the
    /// file being written.
    pub fn failed(self, err: io::Error) -> Error {
        Error::Io(IoError::new(self.tmp.clone(), err))
    }
}

impl Write for SnapshotWriter {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        match &mut self.sink {
            Some(sink) => sink.write(buf),
            None => Err(io::Error::other("the snapshot was finished")),
        }
    }

    fn flush(&mut self) -> io::Result<()> {
        match &mut self.sink {
            Some(sink) => sink.flush(),
            None => Ok(()),
        }
    }
}

impl Drop for SnapshotWriter {
    fn drop(&mut self) {
        if self.sink.take().is_some() {
            // Abandoned: nothing half-written may look like a snapshot later.
            let _ = self.snapshotter.fs.remove_file(&self.tmp);
        }
    }
}

/// A snapshot file opened to be sent as it is, byte for byte (the receiver checks it).
pub struct RawSnapshotFile {
    pub(super) path: PathBuf,
    pub(super) len: u64,
    pub(super) reader: Box<dyn Read + Send>,
    /// How many files had been put under a snapshot's name when this one was opened.
    pub(super) named: u64,
}

impl RawSnapshotFile {
    /// How many files had been put under a snapshot's name when this one was opened: for
    /// [`Snapshotter::set_aside_if_damaged`](super::Snapshotter::set_aside_if_damaged).
    pub fn named(&self) -> u64 {
        self.named
    }

    /// The file's length.
    pub fn len(&self) -> u64 {
        self.len
    }

    /// Whether the file is empty (never for a snapshot file).
    pub fn is_empty(&self) -> bool {
        self.len == 0
    }

    /// The file's path.
    pub fn path(&self) -> &Path {
        &self.path
    }

    /// Hands the whole file to `out` in chunks of at most `chunk` bytes, checking its
    /// trailing checksum on the way. The last chunk is held back until the checksum has
    /// matched, so a damaged file never goes out whole: it gives [`Error::Corrupt`], and the
    /// receiver gets a body that ends short, which it refuses without reading a damaged
    /// file through. An error from `out` stops the copy and is returned as I/O on the file.
    pub fn copy_to(
        mut self,
        chunk: usize,
        mut out: impl FnMut(Bytes) -> io::Result<()>,
    ) -> Result<(), Error> {
        let path = self.path;
        let body_len = self.len.saturating_sub(4);
        let mut crc = 0u32;
        let mut tail = Vec::with_capacity(4);
        let mut sent = 0u64;
        let mut held: Option<Vec<u8>> = None;
        while sent < self.len {
            let want = usize::try_from(self.len - sent).map_or(chunk, |left| left.min(chunk));
            let mut buf = vec![0u8; want];
            self.reader.read_exact(&mut buf).map_err(io_err(&path))?;
            // The checksum covers every byte before the last four, which hold it.
            let covered =
                usize::try_from(body_len.saturating_sub(sent)).map_or(want, |c| c.min(want));
            crc = crc32c::crc32c_append(crc, &buf[..covered]);
            tail.extend_from_slice(&buf[covered..]);
            sent += want as u64;
            if let Some(before) = held.replace(buf) {
                out(before.into()).map_err(io_err(&path))?;
            }
        }
        let stored = <[u8; 4]>::try_from(tail.as_slice())
            .ok()
            .map(u32::from_le_bytes);
        if stored != Some(crc) {
            return Err(checksum_mismatch(
                &path,
                body_len,
                format!("found while sending, computed {crc:#010x}; its last bytes not sent"),
            ));
        }
        if let Some(last) = held {
            out(last.into()).map_err(io_err(&path))?;
        }
        Ok(())
    }
}

/// A snapshot file opened by [`Snapshotter::open`], to be read (and checked) later, on
/// another thread: the open file, not its name, so that the file stays readable if its name
/// is removed meanwhile.
pub struct OpenedSnapshot {
    pub(super) path: PathBuf,
    pub(super) term: u64,
    pub(super) index: u64,
    pub(super) len: u64,
    pub(super) reader: Box<dyn Read + Send>,
}

impl OpenedSnapshot {
    /// [`Snapshotter::load_with`] on this file: the data streams through `read_data`, whose
    /// result counts only if the whole file passes its checksum.
    pub fn read_with<T>(
        self,
        read_data: impl FnOnce(&mut dyn Read, u64) -> io::Result<T>,
    ) -> Result<(SnapshotMetadata, T), Error> {
        read_opened(
            &self.path,
            self.reader,
            self.len,
            self.term,
            self.index,
            read_data,
        )
    }
}
