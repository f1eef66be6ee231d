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
//!
//! # Direct writes
//! Where the file system allows it ([`crate::disk::FileSystem::open_direct`]), the active
//! segment is written around the page cache, in whole physical sectors of the disk rather than
//! whole 4 KiB pages. A lone client's PUT is one small record per sync: through the page cache
//! each such sync sends a full page to the disk; directly, on a disk with 512-byte physical
//! sectors, it sends one sector, an eighth of the bytes (on a disk with 4 KiB physical
//! sectors, the same page as before).
//!
//! The writer keeps the bytes of the last, partly filled sector in memory, with every record
//! appended since the last write; [`SegmentWriter::flush`] (before each sync, and at about
//! 1 MiB) writes them as whole sectors, zeros after the last record. So a record appended
//! without a sync (a commit index, a sync mark) reaches the file with the next synced write:
//! a crash of the process loses it, as a power loss may lose any unsynced record; the WAL's
//! contract promises nothing for those. Dropping the writer (a clean stop) flushes.
//!
//! Rewriting the last sector sends the records already synced in it to the disk again, as
//! rewriting the last page through the page cache does. The sector is never smaller than the
//! disk's physical sector, the unit the disk writes atomically, so a power loss during the
//! rewrite leaves the old sector or the new one, and both hold those records. (A 512-byte
//! write to a disk with 4 KiB physical sectors would be a read-modify-write of the whole
//! physical sector inside the disk, which a power loss can tear.)

use crate::disk::IoError;
use std::io::{self, Read};
use std::path::{Path, PathBuf};

use super::{Error, PAGE_SIZE, WalOptions};
use crate::disk::{AlignedBuf, DiskFile, FileSystem};

/// Records held for a direct write are written once they reach this many bytes, even before a
/// sync asks for them.
const DIRECT_FLUSH_AT: usize = 1 << 20;

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
/// Fails with [`Error::MissingSegments`] naming the segments on either side of a hole if the
/// sequence numbers are not consecutive: a missing middle segment means lost records, never
/// something to skip.
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
        if pair[1].seq == pair[0].seq {
            // Two names of one sequence number (a file copied in by hand): no crash writes
            // that, and which of them holds the log cannot be told.
            return Err(Error::Corrupt {
                path: pair[1].path.clone(),
                offset: 0,
                reason: format!(
                    "{} has the same sequence number, {}",
                    pair[0].path.display(),
                    pair[0].seq
                ),
            });
        }
        if pair[1].seq != pair[0].seq + 1 {
            return Err(Error::MissingSegments {
                dir: dir.to_path_buf(),
                before: pair[0].path.clone(),
                after: pair[1].path.clone(),
                first: pair[0].seq + 1,
                last: pair[1].seq - 1,
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
    /// The file's length (at least what has been written).
    file_len: u64,
    /// How far ahead of the records the file is extended (0: not at all).
    preallocate: u64,
    /// Set when the file was opened for direct writes (see the module doc).
    direct: Option<Direct>,
}

/// What a direct writer holds back: the records since its last write, after the part of the
/// last sector that is already in the file.
#[derive(Debug)]
struct Direct {
    /// The sector size (every write's offset and length are multiples of it).
    align: u64,
    /// File offset of `buf`'s first byte: the start of the sector holding `written`.
    start: u64,
    /// The segment's bytes from `start` to the writer's `pos`.
    buf: AlignedBuf,
    /// The file holds every record before this offset.
    written: u64,
}

impl Direct {
    /// A direct writer's state for records ending at `pos`, given the file's bytes from the
    /// start of `pos`'s sector (`tail`).
    fn new(align: usize, pos: u64, tail: &[u8]) -> Direct {
        let mut buf = AlignedBuf::new(align);
        buf.extend(tail);
        Direct {
            align: align as u64,
            start: pos - tail.len() as u64,
            buf,
            written: pos,
        }
    }
}

impl SegmentWriter {
    /// Opens an existing segment to append at `pos`, the end of its records (after replay,
    /// and after any torn-tail repair); for direct writes if `opts` ask for them and the file
    /// system allows them.
    pub fn open_at(
        fs: &dyn FileSystem,
        path: &Path,
        pos: u64,
        opts: &WalOptions,
    ) -> Result<SegmentWriter, Error> {
        let preallocate = opts.preallocate;
        if opts.direct_io
            && let Some(w) = SegmentWriter::open_direct(fs, path, pos, preallocate)?
        {
            return Ok(w);
        }
        let file = fs.open(path).map_err(IoError::at(path))?;
        let file_len = file.size().map_err(IoError::at(path))?.max(pos);
        Ok(SegmentWriter {
            file,
            pos,
            file_len,
            preallocate,
            direct: None,
        })
    }

    /// [`SegmentWriter::open_at`] for direct writes; `None` if the file system cannot.
    fn open_direct(
        fs: &dyn FileSystem,
        path: &Path,
        pos: u64,
        preallocate: u64,
    ) -> Result<Option<SegmentWriter>, Error> {
        let Some((file, align)) = fs.open_direct(path).map_err(IoError::at(path))? else {
            return Ok(None);
        };
        let file_len = file.size().map_err(IoError::at(path))?.max(pos);
        // The part of the last sector before `pos`: each write rewrites that sector whole.
        let start = pos - pos % align as u64;
        let (mut reader, _) = fs.open_read(path).map_err(IoError::at(path))?;
        io::copy(&mut reader.by_ref().take(start), &mut io::sink()).map_err(IoError::at(path))?;
        let mut tail = vec![0u8; (pos - start) as usize];
        reader.read_exact(&mut tail).map_err(IoError::at(path))?;
        Ok(Some(SegmentWriter {
            file,
            pos,
            file_len,
            preallocate,
            direct: Some(Direct::new(align, pos, &tail)),
        }))
    }

    /// The unit a write reaches the disk in: the sector for direct writes, else the page.
    pub fn unit(&self) -> u64 {
        self.direct.as_ref().map_or(PAGE_SIZE, |d| d.align)
    }

    /// Appends `buf` after the last record: written at once, or for direct writes held until
    /// the next [`SegmentWriter::flush`].
    pub fn append(&mut self, buf: &[u8]) -> io::Result<()> {
        let end = self.pos + buf.len() as u64;
        if let Some(d) = &mut self.direct {
            d.buf.extend(buf);
            self.pos = end;
            if d.buf.len() >= DIRECT_FLUSH_AT {
                self.flush()?;
            }
            return Ok(());
        }
        self.extend_to(end)?;
        self.file.write_all_at(buf, self.pos)?;
        self.pos = end;
        self.file_len = self.file_len.max(end);
        Ok(())
    }

    /// Writes what a direct writer holds back, as whole sectors; nothing to do otherwise.
    /// Call it before syncing the file.
    pub fn flush(&mut self) -> io::Result<()> {
        let (start, end) = match &self.direct {
            Some(d) if d.written != self.pos => {
                let len = d.buf.len().next_multiple_of(d.align as usize);
                (d.start, d.start + len as u64)
            }
            _ => return Ok(()),
        };
        self.extend_to(end)?;
        let Some(d) = &mut self.direct else {
            return Ok(());
        };
        self.file.write_all_at(d.buf.padded(), start)?;
        self.file_len = self.file_len.max(end);
        d.written = self.pos;
        // Keep only the last sector's bytes, if it is not full: the next write rewrites it.
        let keep_from = self.pos - self.pos % d.align;
        d.buf.consume((keep_from - start) as usize);
        d.buf.shrink_to(super::BUF_KEEP);
        d.start = keep_from;
        Ok(())
    }

    /// Extends the file ahead of a write ending at `end`, if it is too short.
    fn extend_to(&mut self, end: u64) -> io::Result<()> {
        if end > self.file_len && self.preallocate > 0 {
            let len = end.div_ceil(self.preallocate) * self.preallocate;
            self.file.set_len(len)?;
            self.file_len = len;
        }
        Ok(())
    }

    /// Cuts the zeros after the last record off the file: a segment that is no longer the
    /// active one must end with its last record (only the active segment may have a tail).
    pub fn trim(&mut self) -> io::Result<()> {
        self.flush()?;
        if self.file_len > self.pos {
            self.file.set_len(self.pos)?;
            self.file_len = self.pos;
        }
        Ok(())
    }

    /// The open file, for syncing (after [`SegmentWriter::flush`]).
    pub fn file(&mut self) -> &mut dyn DiskFile {
        &mut *self.file
    }
}

impl Drop for SegmentWriter {
    /// A clean stop leaves the held-back records in the file (unsynced, as they were).
    fn drop(&mut self) {
        if let Err(e) = self.flush() {
            tracing::warn!(error = %e, "could not write the WAL's last unsynced records");
        }
    }
}

/// Creates segment `seq`/`first_index` in `dir` holding `header` (already framed records):
/// [`prepare_segment`], then [`install_segment`]. Returns the segment and its append handle.
/// Nothing named `<name>` exists until the header is durable.
pub fn create_segment(
    fs: &dyn FileSystem,
    dir: &Path,
    seq: u64,
    first_index: u64,
    header: &[u8],
    opts: &WalOptions,
    syncer: &Syncer,
) -> Result<(Segment, SegmentWriter), Error> {
    prepare_segment(fs, dir, seq, first_index, header, syncer)?;
    install_segment(fs, dir, seq, first_index, header.len() as u64, opts, syncer)
}

/// The first half of creating segment `seq`/`first_index`: its header written to
/// `<name>.tmp`, the file synced and then the folder, so that the file and its name survive a
/// crash from here on (a rotation seals the old segment only after this: see `writer.rs`).
pub fn prepare_segment(
    fs: &dyn FileSystem,
    dir: &Path,
    seq: u64,
    first_index: u64,
    header: &[u8],
    syncer: &Syncer,
) -> Result<(), Error> {
    let tmp = tmp_path(dir, seq, first_index);
    // `create` truncates a stale tmp file.
    let mut file = fs.create(&tmp).map_err(IoError::at(&tmp))?;
    file.write_all_at(header, 0).map_err(IoError::at(&tmp))?;
    syncer.sync_file(&mut *file, &tmp)?;
    syncer.sync_dir(fs, dir)
}

/// The second half: `<name>.tmp`, holding a `header_len`-byte header, renamed to `<name>` and
/// the folder synced. Returns the segment and its append handle.
pub fn install_segment(
    fs: &dyn FileSystem,
    dir: &Path,
    seq: u64,
    first_index: u64,
    header_len: u64,
    opts: &WalOptions,
    syncer: &Syncer,
) -> Result<(Segment, SegmentWriter), Error> {
    let tmp = tmp_path(dir, seq, first_index);
    let path = dir.join(segment_name(seq, first_index));
    if fs.exists(&path).map_err(IoError::at(&path))? {
        return Err(IoError::new(
            path,
            io::Error::new(io::ErrorKind::AlreadyExists, "segment already exists"),
        )
        .into());
    }
    fs.rename(&tmp, &path).map_err(IoError::at(&path))?;
    syncer.sync_dir(fs, dir)?;
    let writer = SegmentWriter::open_at(fs, &path, header_len, opts)?;
    let seg = Segment {
        seq,
        first_index,
        path,
        len: header_len,
    };
    Ok((seg, writer))
}

/// Where segment `seq`/`first_index` is written before it gets its name.
pub fn tmp_path(dir: &Path, seq: u64, first_index: u64) -> PathBuf {
    dir.join(format!("{}{TMP_EXT}", segment_name(seq, first_index)))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::disk::{MemFs, StdFs};
    use std::fs;
    use tempfile::TempDir;

    fn opts(preallocate: u64, direct_io: bool) -> WalOptions {
        WalOptions {
            segment_size: 1 << 20,
            preallocate,
            direct_io,
        }
    }

    /// Segment 0 holding `head` in `/wal` on `fs`, asked for direct writes.
    fn mem_segment(fs: &MemFs, preallocate: u64) -> (Segment, SegmentWriter) {
        let dir = Path::new("/wal");
        fs.create_dir_all(dir).unwrap();
        let opts = opts(preallocate, true);
        create_segment(fs, dir, 0, 0, b"head", &opts, &Syncer::default()).unwrap()
    }

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
        let (seg, mut w) = create_segment(
            &StdFs,
            tmp.path(),
            3,
            42,
            b"head",
            &opts(0, false),
            &Syncer::default(),
        )
        .unwrap();
        assert_eq!(seg.path, tmp.path().join(segment_name(3, 42)));
        assert_eq!(seg.len, 4);
        w.append(b"er").unwrap();
        assert_eq!(fs::read(&seg.path).unwrap(), b"header");
        assert!(list_tmp_files(&StdFs, tmp.path()).unwrap().is_empty());
        let mut w = SegmentWriter::open_at(&StdFs, &seg.path, 6, &opts(0, false)).unwrap();
        w.append(b"!").unwrap();
        assert_eq!(fs::read(&seg.path).unwrap(), b"header!");
    }

    /// With preallocation the file runs ahead of the records in whole steps, records land in
    /// place, and trimming cuts the file back to them.
    #[test]
    fn preallocated_segments_grow_in_steps_and_trim_to_their_records() {
        let tmp = TempDir::new().unwrap();
        let (seg, mut w) = create_segment(
            &StdFs,
            tmp.path(),
            0,
            0,
            b"head",
            &opts(16, false),
            &Syncer::default(),
        )
        .unwrap();
        assert_eq!(fs::read(&seg.path).unwrap(), b"head");
        w.append(b"er").unwrap();
        assert_eq!(fs::read(&seg.path).unwrap(), b"header\0\0\0\0\0\0\0\0\0\0");
        w.append(&[7u8; 12]).unwrap();
        assert_eq!(fs::metadata(&seg.path).unwrap().len(), 32);
        let mut w = SegmentWriter::open_at(&StdFs, &seg.path, 18, &opts(16, false)).unwrap();
        w.append(b"!").unwrap();
        let data = fs::read(&seg.path).unwrap();
        assert_eq!(
            (data.len(), &data[..6], data[18]),
            (32, &b"header"[..], b'!')
        );
        w.trim().unwrap();
        assert_eq!(fs::metadata(&seg.path).unwrap().len(), 19);
    }

    /// A direct writer (on the in-memory disk, which refuses unaligned direct writes as the
    /// kernel does) holds records back until a flush, writes whole sectors with zeros after
    /// the records, rewrites the last sector with what it held, and a writer reopened in the
    /// middle of a sector carries on from there. Dropping it writes what it held.
    #[test]
    fn direct_writes_go_out_in_whole_sectors_at_a_flush() {
        let fs = MemFs::new(7);
        let (seg, mut w) = mem_segment(&fs, 0);
        assert_eq!(w.unit(), 512);
        w.append(b"abc").unwrap();
        assert_eq!(
            fs.read(&seg.path).unwrap(),
            b"head",
            "held back until a flush"
        );
        w.flush().unwrap();
        let data = fs.read(&seg.path).unwrap();
        assert_eq!((data.len(), &data[..7]), (512, &b"headabc"[..]));
        assert!(data[7..].iter().all(|&b| b == 0));
        // 600 more bytes: the first sector again, then two new ones.
        w.append(&[9u8; 600]).unwrap();
        w.flush().unwrap();
        w.flush().unwrap();
        let data = fs.read(&seg.path).unwrap();
        assert_eq!((data.len(), &data[..7]), (1024, &b"headabc"[..]));
        assert!(data[7..607].iter().all(|&b| b == 9));
        assert!(data[607..].iter().all(|&b| b == 0));
        w.trim().unwrap();
        assert_eq!(fs.read(&seg.path).unwrap().len(), 607);
        drop(w);

        let mut w = SegmentWriter::open_at(&fs, &seg.path, 607, &opts(0, true)).unwrap();
        w.append(b"xyz").unwrap();
        drop(w);
        let data = fs.read(&seg.path).unwrap();
        assert_eq!(&data[600..610], b"\x09\x09\x09\x09\x09\x09\x09xyz");
        assert_eq!(data.len(), 1024);
    }

    /// Preallocation runs ahead of direct writes as of buffered ones.
    #[test]
    fn direct_writes_extend_a_preallocated_file_in_steps() {
        let fs = MemFs::new(8);
        let (seg, mut w) = mem_segment(&fs, 4096);
        w.append(&[1u8; 5000]).unwrap();
        w.flush().unwrap();
        assert_eq!(fs.read(&seg.path).unwrap().len(), 8192);
    }

    /// Where the file system has no direct I/O (tmpfs, say), the writer writes through.
    #[test]
    fn without_direct_io_the_writer_writes_at_once() {
        let fs = MemFs::new(9);
        fs.set_direct_io(None);
        let (seg, mut w) = mem_segment(&fs, 0);
        assert_eq!(w.unit(), PAGE_SIZE);
        w.append(b"er").unwrap();
        assert_eq!(fs.read(&seg.path).unwrap(), b"header");
    }

    /// On the real disk: the kernel itself refuses a direct write that is not aligned, so
    /// this checks the alignment `open_direct` reported and the buffer's memory.
    #[test]
    fn direct_writes_on_the_real_disk_read_back() {
        let tmp = TempDir::new().unwrap();
        let s = Syncer::default();
        let (seg, mut w) =
            create_segment(&StdFs, tmp.path(), 0, 0, b"head", &opts(0, true), &s).unwrap();
        // Direct where the file system allows it, in the unit it said.
        let unit = match StdFs.open_direct(&seg.path).unwrap() {
            Some((_, align)) => align as u64,
            None => PAGE_SIZE,
        };
        assert_eq!(w.unit(), unit);
        let mut want = b"head".to_vec();
        for i in 0..50u8 {
            let rec = vec![i; 37 * i as usize % 700];
            w.append(&rec).unwrap();
            want.extend_from_slice(&rec);
            if i % 3 == 0 {
                w.flush().unwrap();
                s.sync_file(w.file(), &seg.path).unwrap();
            }
        }
        w.trim().unwrap();
        drop(w);
        assert_eq!(fs::read(&seg.path).unwrap(), want);
    }

    #[test]
    fn listing_orders_by_sequence_ignores_others_and_rejects_holes() {
        let tmp = TempDir::new().unwrap();
        let s = Syncer::default();
        create_segment(&StdFs, tmp.path(), 1, 10, b"b", &opts(0, false), &s).unwrap();
        create_segment(&StdFs, tmp.path(), 0, 0, b"a", &opts(0, false), &s).unwrap();
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

        create_segment(&StdFs, tmp.path(), 3, 30, b"d", &opts(0, false), &s).unwrap();
        let err = list_segments(&StdFs, tmp.path()).unwrap_err();
        let text = err.to_string();
        match err {
            Error::MissingSegments {
                dir,
                before,
                after,
                first,
                last,
            } => {
                assert_eq!(dir, tmp.path());
                assert_eq!(before, tmp.path().join(segment_name(1, 10)));
                assert_eq!(after, tmp.path().join(segment_name(3, 30)));
                assert_eq!((first, last), (2, 2));
            }
            other => panic!("expected MissingSegments, got {other:?}"),
        }
        assert_eq!(
            text,
            format!(
                "{} lacks the WAL segment with sequence 2, between {} and {}: the entries it \
                 held were lost with it",
                tmp.path().display(),
                segment_name(1, 10),
                segment_name(3, 30)
            )
        );
    }

    /// A folder of small segments, one for each `(sequence, first index)`.
    fn segments_of(segments: &[(u64, u64)]) -> TempDir {
        let tmp = TempDir::new().unwrap();
        let s = Syncer::default();
        for &(seq, first_index) in segments {
            let opts = opts(0, false);
            create_segment(&StdFs, tmp.path(), seq, first_index, b"a", &opts, &s).unwrap();
        }
        tmp
    }

    /// A hole of several segments is said with both ends, as a person counts them (a
    /// hands-on campaign read "sequence 2..3" as naming the segment that is there).
    #[test]
    fn a_hole_of_several_segments_names_the_first_and_last_missing() {
        let tmp = segments_of(&[(0, 0), (1, 10), (5, 50)]);
        let text = list_segments(&StdFs, tmp.path()).unwrap_err().to_string();
        assert!(
            text.contains(&format!(
                "lacks the WAL segments with sequences 2 to 4, between {} and {}: the entries \
                 they held were lost with them",
                segment_name(1, 10),
                segment_name(5, 50)
            )),
            "{text}"
        );
    }

    /// Two segments of one sequence number are refused as corruption, naming both, never read
    /// as a hole (whose bounds would then be wrong, or overflow at sequence 0).
    #[test]
    fn two_segments_of_one_sequence_number_are_corruption() {
        let tmp = segments_of(&[(0, 0), (0, 1)]);
        match list_segments(&StdFs, tmp.path()).unwrap_err() {
            Error::Corrupt { path, reason, .. } => {
                assert_eq!(path, tmp.path().join(segment_name(0, 1)));
                assert!(reason.contains(&segment_name(0, 0)), "{reason}");
            }
            other => panic!("expected Corrupt, got {other:?}"),
        }
    }

    #[test]
    fn injected_sync_failure_names_the_file() {
        let tmp = TempDir::new().unwrap();
        let s = Syncer { fail: true };
        match create_segment(&StdFs, tmp.path(), 0, 0, b"x", &opts(0, false), &s).unwrap_err() {
            Error::SyncFailed { path, .. } => {
                assert_eq!(path, tmp.path().join(format!("{}.tmp", segment_name(0, 0))))
            }
            other => panic!("expected SyncFailed, got {other:?}"),
        }
        // Nothing appeared under the final name.
        assert!(list_segments(&StdFs, tmp.path()).unwrap().is_empty());
    }
}
