//! WAL segment files: names, listing, creation, and the append handle of the active segment.
//!
//! A segment is named `%016x-%016x.wal` after its sequence number and the index of the first
//! entry it is meant to hold (one more than the last entry index written before it was
//! created), as in etcd. Sequence numbers are consecutive; the segment with the highest one
//! is the *active* segment, the only one ever appended to.
//!
//! A new segment is born complete: its header records are written to `<name>.tmp`, synced,
//! renamed to `<name>` and the directory is synced. So a segment that exists under its final
//! name always starts with an intact header, whatever the crash; a leftover `.tmp` is garbage
//! that `Wal::open` removes.
//!
//! The active segment's file is kept longer than its records: it is extended ahead of the
//! writes, a few MiB at a time, with `set_len` (a sparse extension: nothing is written, no
//! disk space is taken until the records arrive). Records are then written in place, so most
//! syncs leave the file's size alone, and an `fdatasync` that need not commit a new size to
//! the file system's journal is markedly cheaper (etcd preallocates its segments for the same
//! reason). The zeros after the last record mark the end of the log; a segment that stops
//! being the active one is cut back to its records first.

use crate::disk::IoError;
use std::io;
use std::path::{Path, PathBuf};

use super::Error;
use crate::disk::{DiskFile, FileSystem};

/// Suffix of segment files.
pub const SEGMENT_EXT: &str = ".wal";
/// Suffix of a segment being created.
pub const TMP_EXT: &str = ".tmp";

/// The file name of segment `seq` whose first entry will be `first_index`.
pub fn segment_name(seq: u64, first_index: u64) -> String {
    crate::fsutil::hex_pair_name(seq, first_index, SEGMENT_EXT)
}

/// Parses a segment file name into `(seq, first_index)`; `None` for any other file.
pub fn parse_segment_name(name: &str) -> Option<(u64, u64)> {
    crate::fsutil::parse_hex_pair_name(name, SEGMENT_EXT)
}

/// A segment file on disk.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Segment {
    /// Sequence number (position in the log).
    pub seq: u64,
    /// Index of the first entry the segment was created to hold.
    pub first_index: u64,
    /// The file.
    pub path: PathBuf,
    /// Bytes of records: where the next record goes in the active segment. The active
    /// segment's file may be longer (zeros, see the module doc); the others are this long.
    /// 0 in a listing, until replay has read the file.
    pub len: u64,
}

/// The segments in `dir`, ordered by sequence number. Other files are ignored.
///
/// Fails with [`Error::Corrupt`] naming the segment after a hole if the sequence numbers are
/// not consecutive: a missing middle segment means lost records, never something to skip.
pub fn list_segments(fs: &dyn FileSystem, dir: &Path) -> Result<Vec<Segment>, Error> {
    let mut segs: Vec<Segment> = fs
        .list_dir(dir)
        .map_err(IoError::at(dir))?
        .iter()
        .filter_map(|name| {
            let (seq, first_index) = parse_segment_name(name)?;
            Some(Segment {
                seq,
                first_index,
                path: dir.join(name),
                len: 0,
            })
        })
        .collect();
    segs.sort_by_key(|s| s.seq);
    for pair in segs.windows(2) {
        if pair[1].seq != pair[0].seq + 1 {
            return Err(Error::Corrupt {
                path: pair[1].path.clone(),
                offset: 0,
                reason: format!(
                    "the previous segment is {}: segment(s) with sequence {}..{} are missing",
                    pair[0].path.display(),
                    pair[0].seq + 1,
                    pair[1].seq
                ),
            });
        }
    }
    Ok(segs)
}

/// Leftover `<segment>.tmp` files of interrupted segment creations.
pub fn list_tmp_files(fs: &dyn FileSystem, dir: &Path) -> Result<Vec<PathBuf>, Error> {
    Ok(crate::fsutil::leftover_tmp_files(fs, dir, |n| {
        parse_segment_name(n).is_some()
    })?)
}

/// How the WAL makes data durable. Every fsync of the WAL goes through here, so that tests can
/// make one fail (the "fsyncgate" case) and check that the WAL then refuses to go on.
#[derive(Debug, Default)]
pub struct Syncer {
    /// Test seam: when set, every sync fails with an injected error.
    #[cfg(test)]
    pub fail: bool,
}

impl Syncer {
    /// `sync_data` of `file` (whose path is `path`); failure is [`Error::SyncFailed`].
    pub fn sync_file(&self, file: &mut dyn DiskFile, path: &Path) -> Result<(), Error> {
        #[cfg(test)]
        if self.fail {
            return Err(Error::SyncFailed {
                path: path.to_path_buf(),
                source: io::Error::other("injected sync failure"),
            });
        }
        file.sync_data().map_err(|source| Error::SyncFailed {
            path: path.to_path_buf(),
            source,
        })
    }

    /// Fsync of directory `dir`; any failure is [`Error::SyncFailed`].
    pub fn sync_dir(&self, fs: &dyn FileSystem, dir: &Path) -> Result<(), Error> {
        #[cfg(test)]
        if self.fail {
            return Err(Error::SyncFailed {
                path: dir.to_path_buf(),
                source: io::Error::other("injected sync failure"),
            });
        }
        fs.sync_dir(dir).map_err(|source| Error::SyncFailed {
            path: dir.to_path_buf(),
            source,
        })
    }
}

/// The append handle of the active segment.
#[derive(Debug)]
pub struct SegmentWriter {
    file: Box<dyn DiskFile>,
    /// Where the next record goes: the end of the records.
    pos: u64,
    /// The file's length (at least `pos`).
    file_len: u64,
    /// How far ahead of the records the file is extended (0: not at all).
    preallocate: u64,
}

impl SegmentWriter {
    /// Opens an existing segment to append at `pos`, the end of its records (after replay,
    /// and after any torn-tail repair).
    pub fn open_at(
        fs: &dyn FileSystem,
        path: &Path,
        pos: u64,
        preallocate: u64,
    ) -> Result<SegmentWriter, Error> {
        let file = fs.open(path).map_err(IoError::at(path))?;
        let file_len = file.size().map_err(IoError::at(path))?.max(pos);
        Ok(SegmentWriter {
            file,
            pos,
            file_len,
            preallocate,
        })
    }

    /// Writes `buf` after the last record in one write, extending the file first if it is
    /// too short.
    pub fn append(&mut self, buf: &[u8]) -> io::Result<()> {
        let end = self.pos + buf.len() as u64;
        if end > self.file_len && self.preallocate > 0 {
            let len = end.div_ceil(self.preallocate) * self.preallocate;
            self.file.set_len(len)?;
            self.file_len = len;
        }
        self.file.write_all_at(buf, self.pos)?;
        self.pos = end;
        self.file_len = self.file_len.max(end);
        Ok(())
    }

    /// Cuts the zeros after the last record off the file: a segment that is no longer the
    /// active one must end with its last record (only the active segment may have a tail).
    pub fn trim(&mut self) -> io::Result<()> {
        if self.file_len > self.pos {
            self.file.set_len(self.pos)?;
            self.file_len = self.pos;
        }
        Ok(())
    }

    /// The open file, for syncing.
    pub fn file(&mut self) -> &mut dyn DiskFile {
        &mut *self.file
    }
}

/// Creates segment `seq`/`first_index` in `dir` holding `header` (already framed records):
/// write `<name>.tmp`, sync it, rename it to `<name>`, sync the directory. Returns the segment
/// and its append handle. Nothing named `<name>` exists until the header is durable.
pub fn create_segment(
    fs: &dyn FileSystem,
    dir: &Path,
    seq: u64,
    first_index: u64,
    header: &[u8],
    preallocate: u64,
    syncer: &Syncer,
) -> Result<(Segment, SegmentWriter), Error> {
    let name = segment_name(seq, first_index);
    let path = dir.join(&name);
    let tmp = dir.join(format!("{name}{TMP_EXT}"));
    // `create` truncates a stale tmp file.
    let mut file = fs.create(&tmp).map_err(IoError::at(&tmp))?;
    file.write_all_at(header, 0).map_err(IoError::at(&tmp))?;
    syncer.sync_file(&mut *file, &tmp)?;
    if fs.exists(&path).map_err(IoError::at(&path))? {
        return Err(IoError::new(
            path,
            io::Error::new(io::ErrorKind::AlreadyExists, "segment already exists"),
        )
        .into());
    }
    fs.rename(&tmp, &path).map_err(IoError::at(&path))?;
    syncer.sync_dir(fs, dir)?;
    let seg = Segment {
        seq,
        first_index,
        path,
        len: header.len() as u64,
    };
    let pos = header.len() as u64;
    let writer = SegmentWriter {
        file,
        pos,
        file_len: pos,
        preallocate,
    };
    Ok((seg, writer))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::disk::StdFs;
    use std::fs;
    use tempfile::TempDir;

    #[test]
    fn names_round_trip_and_sort_like_etcd() {
        let n = segment_name(1, 0x1234);
        assert_eq!(n, "0000000000000001-0000000000001234.wal");
        assert_eq!(parse_segment_name(&n), Some((1, 0x1234)));
        assert_eq!(
            parse_segment_name("0000000000000001-0000000000001234.wal.tmp"),
            None
        );
        assert_eq!(parse_segment_name("LOCK"), None);
        assert_eq!(parse_segment_name("1-2.wal"), None);
        assert_eq!(
            parse_segment_name("000000000000000g-0000000000000000.wal"),
            None
        );
        assert_eq!(
            parse_segment_name("ffffffffffffffff-ffffffffffffffff.wal"),
            Some((u64::MAX, u64::MAX))
        );
    }

    #[test]
    fn created_segment_has_its_header_and_accepts_appends() {
        let tmp = TempDir::new().unwrap();
        let (seg, mut w) =
            create_segment(&StdFs, tmp.path(), 3, 42, b"head", 0, &Syncer::default()).unwrap();
        assert_eq!(seg.path, tmp.path().join(segment_name(3, 42)));
        assert_eq!(seg.len, 4);
        w.append(b"er").unwrap();
        assert_eq!(fs::read(&seg.path).unwrap(), b"header");
        assert!(list_tmp_files(&StdFs, tmp.path()).unwrap().is_empty());
        let mut w = SegmentWriter::open_at(&StdFs, &seg.path, 6, 0).unwrap();
        w.append(b"!").unwrap();
        assert_eq!(fs::read(&seg.path).unwrap(), b"header!");
    }

    /// With preallocation the file runs ahead of the records in whole steps, records land in
    /// place, and trimming cuts the file back to them.
    #[test]
    fn preallocated_segments_grow_in_steps_and_trim_to_their_records() {
        let tmp = TempDir::new().unwrap();
        let (seg, mut w) =
            create_segment(&StdFs, tmp.path(), 0, 0, b"head", 16, &Syncer::default()).unwrap();
        assert_eq!(fs::read(&seg.path).unwrap(), b"head");
        w.append(b"er").unwrap();
        assert_eq!(fs::read(&seg.path).unwrap(), b"header\0\0\0\0\0\0\0\0\0\0");
        w.append(&[7u8; 12]).unwrap();
        assert_eq!(fs::metadata(&seg.path).unwrap().len(), 32);
        let mut w = SegmentWriter::open_at(&StdFs, &seg.path, 18, 16).unwrap();
        w.append(b"!").unwrap();
        let data = fs::read(&seg.path).unwrap();
        assert_eq!(
            (data.len(), &data[..6], data[18]),
            (32, &b"header"[..], b'!')
        );
        w.trim().unwrap();
        assert_eq!(fs::metadata(&seg.path).unwrap().len(), 19);
    }

    #[test]
    fn listing_orders_by_sequence_ignores_others_and_rejects_holes() {
        let tmp = TempDir::new().unwrap();
        let s = Syncer::default();
        create_segment(&StdFs, tmp.path(), 1, 10, b"b", 0, &s).unwrap();
        create_segment(&StdFs, tmp.path(), 0, 0, b"a", 0, &s).unwrap();
        fs::write(tmp.path().join("LOCK"), b"").unwrap();
        fs::write(tmp.path().join(format!("{}.tmp", segment_name(2, 20))), b"").unwrap();
        let segs = list_segments(&StdFs, tmp.path()).unwrap();
        assert_eq!(
            segs.iter()
                .map(|s| (s.seq, s.first_index))
                .collect::<Vec<_>>(),
            vec![(0, 0), (1, 10)]
        );
        assert_eq!(list_tmp_files(&StdFs, tmp.path()).unwrap().len(), 1);

        create_segment(&StdFs, tmp.path(), 3, 30, b"d", 0, &s).unwrap();
        match list_segments(&StdFs, tmp.path()).unwrap_err() {
            Error::Corrupt { path, .. } => assert_eq!(path, tmp.path().join(segment_name(3, 30))),
            other => panic!("expected Corrupt, got {other:?}"),
        }
    }

    #[test]
    fn injected_sync_failure_names_the_file() {
        let tmp = TempDir::new().unwrap();
        let s = Syncer { fail: true };
        match create_segment(&StdFs, tmp.path(), 0, 0, b"x", 0, &s).unwrap_err() {
            Error::SyncFailed { path, .. } => {
                assert_eq!(path, tmp.path().join(format!("{}.tmp", segment_name(0, 0))))
            }
            other => panic!("expected SyncFailed, got {other:?}"),
        }
        // Nothing appeared under the final name.
        assert!(list_segments(&StdFs, tmp.path()).unwrap().is_empty());
    }
}
