//! The byte layout of one snapshot file, written and read as a stream (see the layout in
//! [`super`]): a file of any size passes through a fixed buffer, never whole in memory.

use std::io::{self, BufReader, BufWriter, Read, Write};
use std::path::{Path, PathBuf};

use protobuf::Message as PbMessage;
use raft::eraftpb::{Snapshot, SnapshotMetadata};

use super::Error;
use crate::disk::{AlignedBuf, DiskFile, FileSystem, IoError};

const MAGIC: &[u8; 8] = b"RAFTSNAP";
const VERSION: u32 = 1;
/// magic + version + meta_len + data_len + crc.
const MIN_LEN: usize = 8 + 4 + 4 + 8 + 4;
/// Buffer of the streams to and from a file: big enough that a 1 GiB file costs a thousand
/// system calls, small next to any state worth a snapshot.
const BUFFER: usize = 1 << 20;

/// A file whose checksum, over its first `covered` bytes, is wrong. The damage is somewhere
/// in that range: the error points at its start and says where it ends.
pub(super) fn checksum_mismatch(path: &Path, covered: u64, detail: String) -> Error {
    Error::Corrupt {
        path: path.to_path_buf(),
        offset: 0,
        reason: format!("checksum mismatch over bytes 0..{covered}: {detail}"),
    }
}

pub(super) fn io_err(path: &Path) -> impl FnOnce(io::Error) -> Error + '_ {
    move |source| Error::Io(IoError::new(path, source))
}

/// How writing a snapshot file failed, before the final path is known to the error.
#[derive(Debug)]
pub(super) enum WriteError {
    Io(PathBuf, io::Error),
    Encode(String),
}

impl WriteError {
    pub(super) fn into_error(self, path: &Path) -> Error {
        match self {
            WriteError::Io(path, source) => Error::Io(IoError::new(path, source)),
            WriteError::Encode(reason) => Error::Encode {
                path: path.to_path_buf(),
                reason,
            },
        }
    }
}

/// A snapshot file being written: the header is out, the data goes through [`Write`], and
/// [`FileSink::seal`] checks its length, appends the checksum and syncs.
pub(super) struct FileSink {
    path: PathBuf,
    w: CrcWriter<Out>,
    data_start: u64,
    data_len: u64,
}

impl FileSink {
    /// Creates `path` (truncating it) and writes the header of a snapshot of `data_len` bytes.
    pub(super) fn create(
        fs: &dyn FileSystem,
        path: &Path,
        meta: &SnapshotMetadata,
        data_len: u64,
    ) -> Result<FileSink, WriteError> {
        let io = |e: io::Error| WriteError::Io(path.to_path_buf(), e);
        let meta_bytes = meta
            .write_to_bytes()
            .map_err(|e| WriteError::Encode(e.to_string()))?;
        let meta_len = u32::try_from(meta_bytes.len())
            .map_err(|_| WriteError::Encode("metadata over 4 GiB".into()))?;
        let file = fs.create(path).map_err(io)?;
        // Around the page cache where the file system allows it (see `DirectWriter`).
        let out = match fs.open_direct(path).map_err(io)? {
            Some((direct, align)) => {
                drop(file);
                Out::Direct(DirectWriter::new(direct, align))
            }
            None => Out::Cached(BufWriter::with_capacity(
                BUFFER,
                FileWriter {
                    file,
                    pos: 0,
                    synced: 0,
                },
            )),
        };
        let mut w = CrcWriter {
            inner: out,
            crc: 0,
            written: 0,
        };
        w.write_all(MAGIC).map_err(io)?;
        w.write_all(&VERSION.to_le_bytes()).map_err(io)?;
        w.write_all(&meta_len.to_le_bytes()).map_err(io)?;
        w.write_all(&meta_bytes).map_err(io)?;
        w.write_all(&data_len.to_le_bytes()).map_err(io)?;
        let data_start = w.written;
        Ok(FileSink {
            path: path.to_path_buf(),
            w,
            data_start,
            data_len,
        })
    }

    /// Data bytes written so far.
    pub(super) fn data_written(&self) -> u64 {
        self.w.written - self.data_start
    }

    /// Checks that exactly the announced data was written, appends the checksum, syncs.
    pub(super) fn seal(mut self) -> Result<(), WriteError> {
        let wrote = self.data_written();
        if wrote != self.data_len {
            return Err(WriteError::Encode(format!(
                "wrote {wrote} bytes of data, announced {}",
                self.data_len
            )));
        }
        let path = self.path;
        let io = |e: io::Error| WriteError::Io(path.clone(), e);
        let crc = self.w.crc;
        self.w.inner.write_all(&crc.to_le_bytes()).map_err(io)?;
        match self.w.inner {
            Out::Cached(w) => {
                let mut file = w.into_inner().map_err(|e| io(e.into_error()))?.file;
                file.sync_data().map_err(io)
            }
            Out::Direct(w) => w.finish().map_err(io),
        }
    }
}

/// Where a snapshot file's bytes go: straight to the disk, or through the page cache.
enum Out {
    Direct(DirectWriter),
    Cached(BufWriter<FileWriter>),
}

impl Write for Out {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        match self {
            Out::Direct(w) => w.write(buf),
            Out::Cached(w) => w.write(buf),
        }
    }

    fn flush(&mut self) -> io::Result<()> {
        match self {
            Out::Direct(w) => w.flush(),
            Out::Cached(w) => w.flush(),
        }
    }
}

impl Write for FileSink {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        self.w.write(buf)
    }

    fn flush(&mut self) -> io::Result<()> {
        self.w.flush()
    }
}

/// Bytes a snapshot file is written by between syncs. A snapshot of a big state left to one
/// sync at the end hands the disk hundreds of megabytes at once, and every WAL sync of the
/// node (and of any other process on that disk) waits behind them: PUT p99 tripled while
/// snapshots of a million keys were taken. Synced as it goes, the file never has more than
/// this much waiting (in the page cache, or in the disk's own cache after direct writes).
pub(super) const SYNC_EVERY: u64 = 8 << 20;

/// Bytes a direct writer sends to the disk at once. Written through the page cache, a
/// snapshot reached the disk as the kernel's writeback saw fit, in requests of megabytes; a
/// WAL write of a few KiB queued behind them waited for all of them: PUT p99 was 10-13 x its
/// steady value while snapshots of a million keys were taken (each of the node's WAL writes
/// and syncs taking 2-4 ms instead of 0.1). Written directly, the disk never has more than one
/// chunk of the snapshot ahead of a WAL write. The size trades that wait against the speed of
/// the snapshot (measured here, PUT p99 during 1 M-key snapshots against steady, and a new
/// member's catch-up from 256 MiB, which includes writing a snapshot of it): 64 KiB 1.45-1.54
/// x and 1.4-1.8 s; 128 KiB 1.35-1.52 x and 1.3-1.6 s; 256 KiB 1.71-1.75 x and 1.1-1.2 s;
/// through the page cache 10-12 x and 1.0 s.
pub(super) const DIRECT_CHUNK: usize = 128 << 10;

/// A [`DiskFile`] opened for direct writes (`O_DIRECT`), written from its start in
/// [`DIRECT_CHUNK`]s. Each write returns once the disk has the chunk, so the file never has
/// more than one chunk in flight and nothing piles up in the page cache for a sync to push out
/// at once; it is still synced every [`SYNC_EVERY`] bytes (the disk's own cache). The last,
/// partial chunk goes out padded with zeros to the alignment, and the file is then cut to its
/// length.
struct DirectWriter {
    /// Takes whole chunks only.
    out: FileWriter,
    /// Bytes not written yet, fewer than a chunk after every `write`.
    held: AlignedBuf,
    chunk: usize,
}

impl DirectWriter {
    fn new(file: Box<dyn DiskFile>, align: usize) -> DirectWriter {
        let chunk = DIRECT_CHUNK.next_multiple_of(align);
        DirectWriter {
            out: FileWriter {
                file,
                pos: 0,
                synced: 0,
            },
            held: AlignedBuf::with_capacity(align, chunk),
            chunk,
        }
    }

    /// Writes what is held (padded), cuts the padding off and syncs.
    fn finish(mut self) -> io::Result<()> {
        let file = &mut self.out.file;
        if !self.held.is_empty() {
            file.write_all_at(self.held.padded(), self.out.pos)?;
            file.set_len(self.out.pos + self.held.len() as u64)?;
        }
        file.sync_data()
    }
}

impl Write for DirectWriter {
    /// After an error the writer is of no more use (part of `buf` may be held): the file is
    /// given up, as every caller does.
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        let mut rest = buf;
        while !rest.is_empty() {
            let take = rest.len().min(self.chunk - self.held.len());
            self.held.extend(&rest[..take]);
            rest = &rest[take..];
            if self.held.len() == self.chunk {
                self.out.write_all(self.held.bytes())?;
                self.held.consume(self.chunk);
            }
        }
        Ok(buf.len())
    }

    fn flush(&mut self) -> io::Result<()> {
        Ok(())
    }
}

/// A [`DiskFile`] written from its start, as a stream, synced every [`SYNC_EVERY`] bytes.
struct FileWriter {
    file: Box<dyn DiskFile>,
    pos: u64,
    /// Where the last sync left off.
    synced: u64,
}

impl Write for FileWriter {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        self.file.write_all_at(buf, self.pos)?;
        self.pos += buf.len() as u64;
        if self.pos - self.synced >= SYNC_EVERY {
            self.file.sync_data()?;
            self.synced = self.pos;
        }
        Ok(buf.len())
    }

    fn flush(&mut self) -> io::Result<()> {
        Ok(())
    }
}

/// A writer that keeps a CRC-32C of everything written through it.
struct CrcWriter<W> {
    inner: W,
    crc: u32,
    written: u64,
}

impl<W: Write> Write for CrcWriter<W> {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        let n = self.inner.write(buf)?;
        self.crc = crc32c::crc32c_append(self.crc, &buf[..n]);
        self.written += n as u64;
        Ok(n)
    }

    fn flush(&mut self) -> io::Result<()> {
        self.inner.flush()
    }
}

/// A reader of at most `remaining` bytes that keeps a CRC-32C of what it read.
struct CrcReader<R> {
    inner: R,
    crc: u32,
    remaining: u64,
}

impl<R: Read> Read for CrcReader<R> {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        let want = buf
            .len()
            .min(usize::try_from(self.remaining).unwrap_or(usize::MAX));
        if want == 0 {
            return Ok(0);
        }
        let n = self.inner.read(&mut buf[..want])?;
        self.crc = crc32c::crc32c_append(self.crc, &buf[..n]);
        self.remaining -= n as u64;
        Ok(n)
    }
}

/// `read_data` for callers that want the data as bytes.
pub(super) fn read_all(r: &mut dyn Read, len: u64) -> io::Result<Vec<u8>> {
    // The length was checked against the file's size before this is called.
    let mut data = Vec::with_capacity(usize::try_from(len).unwrap_or(0));
    r.read_to_end(&mut data)?;
    Ok(data)
}

pub(super) fn snapshot_of(meta: SnapshotMetadata, data: Vec<u8>) -> Snapshot {
    let mut snap = Snapshot::default();
    snap.set_metadata(meta);
    snap.data = data.into();
    snap
}

/// A snapshot file whose header was read and checked; the reader stands at the data.
struct Opened {
    meta: SnapshotMetadata,
    data_len: u64,
    file_len: u64,
    reader: BufReader<CrcReader<Box<dyn Read + Send>>>,
}

/// Opens the file at `path` for reading, with its length; a missing file is
/// [`Error::NotFound`].
pub(super) fn open_file(
    fs: &dyn FileSystem,
    path: &Path,
) -> Result<(Box<dyn Read + Send>, u64), Error> {
    match fs.open_read(path) {
        Ok(opened) => Ok(opened),
        Err(e) if e.kind() == io::ErrorKind::NotFound => Err(Error::NotFound {
            path: path.to_path_buf(),
        }),
        Err(e) => Err(io_err(path)(e)),
    }
}

/// Opens `path`, which by its name holds (term, index), and checks its header (see
/// [`check_header`]).
fn open_snap(fs: &dyn FileSystem, path: &Path, term: u64, index: u64) -> Result<Opened, Error> {
    let (file, file_len) = open_file(fs, path)?;
    check_header(path, file, file_len, term, index)
}

/// Reads the header of `file` (of `file_len` bytes, opened from `path`, which by its name
/// holds (term, index)) and checks it: magic, version, lengths that add up to the file's,
/// metadata that matches the name.
fn check_header(
    path: &Path,
    file: Box<dyn Read + Send>,
    file_len: u64,
    term: u64,
    index: u64,
) -> Result<Opened, Error> {
    let corrupt = |offset: u64, reason: String| Error::Corrupt {
        path: path.to_path_buf(),
        offset,
        reason,
    };
    if file_len < MIN_LEN as u64 {
        return Err(corrupt(
            file_len,
            format!("{file_len} bytes, shorter than any snapshot file"),
        ));
    }
    // Everything before the trailing checksum goes through the CRC.
    let mut r = BufReader::with_capacity(
        BUFFER,
        CrcReader {
            inner: file,
            crc: 0,
            remaining: file_len - 4,
        },
    );
    let mut head = [0u8; 16];
    r.read_exact(&mut head).map_err(io_err(path))?;
    if &head[0..8] != MAGIC {
        return Err(corrupt(0, "not a snapshot file (bad magic)".into()));
    }
    let u32_at =
        |at: usize| u32::from_le_bytes([head[at], head[at + 1], head[at + 2], head[at + 3]]);
    let version = u32_at(8);
    if version != VERSION {
        return Err(corrupt(8, format!("unsupported version {version}")));
    }
    let meta_len = u64::from(u32_at(12));
    if 16 + meta_len + 8 + 4 > file_len {
        return Err(corrupt(
            12,
            format!("metadata length {meta_len} exceeds the file"),
        ));
    }
    let mut meta_bytes = vec![0u8; meta_len as usize];
    r.read_exact(&mut meta_bytes).map_err(io_err(path))?;
    let meta = crate::pb::parse::<SnapshotMetadata>(&meta_bytes)
        .map_err(|e| corrupt(16, format!("metadata: {e}")))?;
    let mut len_bytes = [0u8; 8];
    r.read_exact(&mut len_bytes).map_err(io_err(path))?;
    let data_len = u64::from_le_bytes(len_bytes);
    let data_start = 16 + meta_len + 8;
    if data_len != file_len - 4 - data_start {
        return Err(corrupt(
            16 + meta_len,
            format!(
                "data length {data_len} but {} bytes follow",
                file_len - 4 - data_start
            ),
        ));
    }
    if meta.term != term || meta.index != index {
        return Err(corrupt(
            16,
            format!(
                "file name says term {term} index {index}, metadata says term {} index {}",
                meta.term, meta.index
            ),
        ));
    }
    Ok(Opened {
        meta,
        data_len,
        file_len,
        reader: r,
    })
}

/// Reads and validates the file at `path`, which by its name holds (term, index), streaming
/// its data through `read_data`. The result of `read_data` is returned only if the checksum
/// over the whole file matches.
pub(super) fn read_snap<T>(
    fs: &dyn FileSystem,
    path: &Path,
    term: u64,
    index: u64,
    read_data: impl FnOnce(&mut dyn Read, u64) -> io::Result<T>,
) -> Result<(SnapshotMetadata, T), Error> {
    let (file, file_len) = open_file(fs, path)?;
    read_opened(path, file, file_len, term, index, read_data)
}

/// [`read_snap`] on `file` (of `file_len` bytes), opened from `path` earlier.
pub(super) fn read_opened<T>(
    path: &Path,
    file: Box<dyn Read + Send>,
    file_len: u64,
    term: u64,
    index: u64,
    read_data: impl FnOnce(&mut dyn Read, u64) -> io::Result<T>,
) -> Result<(SnapshotMetadata, T), Error> {
    let Opened {
        meta,
        data_len,
        file_len,
        mut reader,
    } = check_header(path, file, file_len, term, index)?;
    let read = read_data(&mut reader, data_len);
    // Whatever the reader left unread still counts towards the checksum.
    io::copy(&mut reader, &mut io::sink()).map_err(io_err(path))?;
    let CrcReader { mut inner, crc, .. } = reader.into_inner();
    let mut stored = [0u8; 4];
    inner.read_exact(&mut stored).map_err(io_err(path))?;
    let stored = u32::from_le_bytes(stored);
    if stored != crc {
        return Err(checksum_mismatch(
            path,
            file_len - 4,
            format!("stored {stored:#010x}, computed {crc:#010x}"),
        ));
    }
    // The file is what was written; data that still does not decode is not damage but a
    // bug or a version mismatch, and is reported as such.
    let value = read.map_err(|e| Error::Decode {
        path: path.to_path_buf(),
        reason: e.to_string(),
    })?;
    Ok((meta, value))
}

/// Hands the start of the data of `path` to `read_data` after checking the header only: for
/// a file whose checksum was verified already, when only its first bytes are wanted.
pub(super) fn peek_snap<T>(
    fs: &dyn FileSystem,
    path: &Path,
    term: u64,
    index: u64,
    read_data: impl FnOnce(&mut dyn Read, u64) -> io::Result<T>,
) -> Result<T, Error> {
    let mut opened = open_snap(fs, path, term, index)?;
    read_data(&mut opened.reader, opened.data_len).map_err(|e| Error::Decode {
        path: path.to_path_buf(),
        reason: e.to_string(),
    })
}
