//! The file-system seam: everything the WAL, the snapshotter and the data-dir lock ask of a
//! disk, behind one narrow trait, so that tests (and a whole-cluster simulator) can run them on
//! a disk that lives in memory and loses power on command.
//!
//! - [`FileSystem`] and [`DiskFile`]: create, open, write at an offset, set the length, sync a
//!   file; read, list, rename, remove, create and sync folders; lock a file. Nothing else: the
//!   storage code reads whole files and writes at offsets it tracks itself.
//! - [`FileSystem::open_direct`]: a file whose writes skip the page cache (`O_DIRECT`), in
//!   whole physical sectors from [`AlignedBuf`] memory, for the WAL (see `wal/segment.rs`).
//! - [`StdFs`]: the real one, straight onto `std::fs` (one dynamic call per operation, next to a
//!   system call: no measurable cost; see `bench/micro/wal.rs`).
//! - [`MemFs`] (in `mem.rs`): a deterministic in-memory disk that models what a power loss does
//!   to data that was not synced, and injects failed syncs, a full disk and flipped bytes.
//!
//! # The durability contract both implement
//! - A file's bytes and length are durable once [`DiskFile::sync_data`] returns `Ok` (Linux's
//!   `fdatasync` also commits a size change, which is what makes the data readable).
//! - A directory entry (a file created, renamed or removed) is durable only once the folder
//!   is synced with [`FileSystem::sync_dir`]; syncing the file does not persist its name.
//! - [`FileSystem::create_dir_all`] returns with the folders it made durable.
//! - A failed sync is final: what it should have made durable may be lost, whatever a retry
//!   says. Callers stop (the WAL poisons itself).

mod aligned;
mod mem;
mod platter;
pub mod reaper;

pub use aligned::AlignedBuf;
pub use mem::MemFs;

use std::fmt;
use std::fs::{self, File, OpenOptions, TryLockError};
use std::io::{self, Read};
use std::os::unix::fs::{DirBuilderExt, FileExt};
use std::path::{Path, PathBuf};
use std::sync::{Arc, OnceLock};

/// An I/O operation on a file or folder failed: the crate's one I/O error. Every storage
/// module's error type wraps it (`Io(IoError)`), so each message names the path, in the same
/// words everywhere.
#[derive(Debug, thiserror::Error)]
#[error("I/O error on {path}: {source}")]
pub struct IoError {
    /// The file or folder the operation was on.
    pub path: PathBuf,
    /// What the operating system (or the in-memory disk) said.
    #[source]
    pub source: io::Error,
}

impl IoError {
    /// The error of an operation on `path`.
    pub fn new(path: impl Into<PathBuf>, source: io::Error) -> IoError {
        IoError {
            path: path.into(),
            source,
        }
    }

    /// For `map_err`: names `path` in an [`io::Error`].
    pub fn at(path: &Path) -> impl FnOnce(io::Error) -> IoError + '_ {
        move |source| IoError::new(path, source)
    }
}

/// A file system shared by the WAL, the snapshotter and whoever created them.
pub type SharedFs = Arc<dyn FileSystem>;

/// What the storage code needs from a file system. Paths are used as given (no
/// canonicalisation); every error is an [`io::Error`] that the caller wraps with the path.
pub trait FileSystem: Send + Sync + fmt::Debug {
    /// Creates `path` (or truncates it) and opens it for writing.
    fn create(&self, path: &Path) -> io::Result<Box<dyn DiskFile>>;
    /// Opens the existing file `path` for writing.
    fn open(&self, path: &Path) -> io::Result<Box<dyn DiskFile>>;
    /// Opens the existing file `path` for writes that go straight to the disk, around the page
    /// cache (`O_DIRECT`), with the alignment they need: every write's offset, length and
    /// memory must be multiples of it (never less than the disk's physical sector). `Ok(None)`
    /// where the file system cannot (tmpfs on older kernels, many FUSE file systems, other
    /// systems than Linux). Syncing is still needed: a direct write may sit in the disk's own
    /// cache.
    fn open_direct(&self, path: &Path) -> io::Result<Option<(Box<dyn DiskFile>, usize)>>;
    /// The whole content of `path`.
    fn read(&self, path: &Path) -> io::Result<Vec<u8>>;
    /// A reader of `path` from its start, with the file's length. It goes on reading the file
    /// it opened once that file's name is removed or renamed over (a snapshot restored later
    /// relies on it: see [`crate::snapshotter::Snapshotter::open`]).
    fn open_read(&self, path: &Path) -> io::Result<(Box<dyn Read + Send>, u64)>;
    /// Whether `path` exists.
    fn exists(&self, path: &Path) -> io::Result<bool>;
    /// The names in folder `dir`, sorted (names that are not UTF-8 are left out: the storage
    /// code never makes one).
    fn list_dir(&self, dir: &Path) -> io::Result<Vec<String>>;
    /// Renames `from` to `to` (same folder), replacing `to`. Durable after a folder sync.
    fn rename(&self, from: &Path, to: &Path) -> io::Result<()>;
    /// Removes the file `path`. Durable after a folder sync.
    fn remove_file(&self, path: &Path) -> io::Result<()>;
    /// Creates `dir` and its missing parents (mode 0750 on a real disk), each made durable.
    fn create_dir_all(&self, dir: &Path) -> io::Result<()>;
    /// Makes the entries of folder `dir` (created, renamed, removed files) durable.
    fn sync_dir(&self, dir: &Path) -> io::Result<()>;
    /// Whether files that are never read again (released WAL segments, old snapshots) are
    /// removed on a thread of their own ([`reaper`]). On a real disk unlinking a big file takes
    /// milliseconds, which the raft thread must not wait for; an in-memory disk says no, so
    /// that a simulation stays on one thread and deterministic.
    fn background_removal(&self) -> bool {
        false
    }
    /// Takes an exclusive lock on `path` (created if missing), held until the guard is
    /// dropped; fails with [`io::ErrorKind::WouldBlock`] while anyone else holds it.
    fn try_lock(&self, path: &Path) -> io::Result<LockGuard>;
    /// Bytes this process may still write on the file system that holds `dir`; `None` where
    /// that cannot be told (no limit, or no way to ask).
    fn free_bytes(&self, dir: &Path) -> io::Result<Option<u64>> {
        let _ = dir;
        Ok(None)
    }
}

/// An open file, for writing.
pub trait DiskFile: Send + fmt::Debug {
    /// Writes all of `buf` at `offset`, extending the file if needed.
    fn write_all_at(&mut self, buf: &[u8], offset: u64) -> io::Result<()>;
    /// Cuts or extends (with zeros, sparsely) the file to `len` bytes.
    fn set_len(&mut self, len: u64) -> io::Result<()>;
    /// The file's length.
    fn size(&self) -> io::Result<u64>;
    /// Makes the file's bytes and length durable.
    fn sync_data(&mut self) -> io::Result<()>;
}

/// A held lock; dropping it releases the lock.
#[derive(Debug)]
pub struct LockGuard {
    _held: Box<dyn fmt::Debug + Send + Sync>,
}

impl LockGuard {
    /// A guard that releases its lock when `held` is dropped.
    pub fn new(held: impl fmt::Debug + Send + Sync + 'static) -> LockGuard {
        LockGuard {
            _held: Box::new(held),
        }
    }
}

/// The real file system.
#[derive(Debug, Default, Clone, Copy)]
pub struct StdFs;

impl StdFs {
    /// The real file system as a [`SharedFs`] (one per process).
    pub fn shared() -> SharedFs {
        static SHARED: OnceLock<SharedFs> = OnceLock::new();
        SHARED.get_or_init(|| Arc::new(StdFs)).clone()
    }
}

/// A `std::fs::File` behind [`DiskFile`].
#[derive(Debug)]
struct StdFile(File);

impl DiskFile for StdFile {
    fn write_all_at(&mut self, buf: &[u8], offset: u64) -> io::Result<()> {
        self.0.write_all_at(buf, offset)
    }

    fn set_len(&mut self, len: u64) -> io::Result<()> {
        self.0.set_len(len)
    }

    fn size(&self) -> io::Result<u64> {
        Ok(self.0.metadata()?.len())
    }

    fn sync_data(&mut self) -> io::Result<()> {
        self.0.sync_data()
    }
}

/// An OS file lock (`flock` on Linux): the kernel releases it when the process dies, even by
/// SIGKILL, so there is never a stale lock to clean up.
#[derive(Debug)]
struct StdLock(File);

impl Drop for StdLock {
    fn drop(&mut self) {
        // Closing the file releases the lock anyway; an error here cannot be acted upon.
        let _ = self.0.unlock();
    }
}

impl FileSystem for StdFs {
    fn create(&self, path: &Path) -> io::Result<Box<dyn DiskFile>> {
        let file = OpenOptions::new()
            .create(true)
            .write(true)
            .truncate(true)
            .open(path)?;
        Ok(Box::new(StdFile(file)))
    }

    fn open(&self, path: &Path) -> io::Result<Box<dyn DiskFile>> {
        Ok(Box::new(StdFile(
            OpenOptions::new().write(true).open(path)?,
        )))
    }

    #[cfg(target_os = "linux")]
    fn open_direct(&self, path: &Path) -> io::Result<Option<(Box<dyn DiskFile>, usize)>> {
        use rustix::fs::{AtFlags, OFlags, StatxFlags, statx};
        use std::os::unix::fs::OpenOptionsExt;
        let file = match OpenOptions::new()
            .write(true)
            .custom_flags(OFlags::DIRECT.bits() as i32)
            .open(path)
        {
            Ok(file) => file,
            // A file system without direct I/O refuses the flag.
            Err(e) if e.raw_os_error() == Some(rustix::io::Errno::INVAL.raw_os_error()) => {
                return Ok(None);
            }
            Err(e) => return Err(e),
        };
        // What direct writes need: the offset and memory alignments (the kernel says so since
        // Linux 6.1; before, or without statx, write through the page cache, as the WAL always
        // could), and no less than the disk's physical sector (below).
        let stx = match statx(&file, "", AtFlags::EMPTY_PATH, StatxFlags::DIOALIGN) {
            Ok(stx) => stx,
            Err(rustix::io::Errno::NOSYS) => return Ok(None),
            Err(e) => return Err(e.into()),
        };
        let (offset, memory) = (stx.stx_dio_offset_align, stx.stx_dio_mem_align);
        if stx.stx_mask & StatxFlags::DIOALIGN.bits() == 0 || offset == 0 || memory == 0 {
            return Ok(None);
        }
        let physical = physical_sector(stx.stx_dev_major, stx.stx_dev_minor).unwrap_or(4096);
        let align = (offset.max(memory) as usize).max(physical);
        Ok(Some((Box::new(StdFile(file)), align)))
    }

    #[cfg(not(target_os = "linux"))]
    fn open_direct(&self, _path: &Path) -> io::Result<Option<(Box<dyn DiskFile>, usize)>> {
        Ok(None)
    }

    fn read(&self, path: &Path) -> io::Result<Vec<u8>> {
        fs::read(path)
    }

    fn open_read(&self, path: &Path) -> io::Result<(Box<dyn Read + Send>, u64)> {
        let file = File::open(path)?;
        let len = file.metadata()?.len();
        Ok((Box::new(file), len))
    }

    fn exists(&self, path: &Path) -> io::Result<bool> {
        path.try_exists()
    }

    fn list_dir(&self, dir: &Path) -> io::Result<Vec<String>> {
        let mut names = Vec::new();
        for dent in fs::read_dir(dir)? {
            if let Ok(name) = dent?.file_name().into_string() {
                names.push(name);
            }
        }
        names.sort();
        Ok(names)
    }

    fn rename(&self, from: &Path, to: &Path) -> io::Result<()> {
        fs::rename(from, to)
    }

    fn remove_file(&self, path: &Path) -> io::Result<()> {
        fs::remove_file(path)
    }

    fn create_dir_all(&self, dir: &Path) -> io::Result<()> {
        create_dir_all_synced(dir)
    }

    fn sync_dir(&self, dir: &Path) -> io::Result<()> {
        File::open(dir)?.sync_all()
    }

    fn background_removal(&self) -> bool {
        true
    }

    fn free_bytes(&self, dir: &Path) -> io::Result<Option<u64>> {
        let stat = rustix::fs::statvfs(dir)?;
        Ok(Some(stat.f_bavail.saturating_mul(stat.f_frsize)))
    }

    fn try_lock(&self, path: &Path) -> io::Result<LockGuard> {
        // The folder is not synced after creating the file: the lock lives in the kernel, not
        // in the file, and a lock file lost in a crash is simply created again.
        let file = OpenOptions::new()
            .read(true)
            .write(true)
            .create(true)
            .truncate(false)
            .open(path)?;
        match file.try_lock() {
            Ok(()) => Ok(LockGuard::new(StdLock(file))),
            Err(TryLockError::WouldBlock) => Err(io::ErrorKind::WouldBlock.into()),
            Err(TryLockError::Error(e)) => Err(e),
        }
    }
}

/// The physical sector of block device `major:minor` (or of the disk a partition of it is
/// on), from sysfs: "the smallest unit a physical storage device can write atomically" (the
/// kernel's words; NVMe drives report their power-fail atomic write size here). A disk with
/// 512-byte logical but 4 KiB physical sectors rewrites a whole 4 KiB sector for a 512-byte
/// write, and a power loss during that rewrite can damage the records already synced in it:
/// direct writes are never smaller. `None` where sysfs has no such device (a network or a
/// virtual file system): the caller then assumes a 4 KiB page.
#[cfg(target_os = "linux")]
fn physical_sector(major: u32, minor: u32) -> Option<usize> {
    let dev = fs::canonicalize(format!("/sys/dev/block/{major}:{minor}")).ok()?;
    // A partition has no queue folder of its own: its disk's is one level up.
    let queue = [dev.join("queue"), dev.parent()?.join("queue")]
        .into_iter()
        .find(|q| q.is_dir())?;
    let text = fs::read_to_string(queue.join("physical_block_size")).ok()?;
    let size: usize = text.trim().parse().ok()?;
    size.is_power_of_two().then_some(size)
}

/// The folder holding `path`; `"."` for a bare relative name (whose parent is "").
pub fn parent_dir(path: &Path) -> &Path {
    match path.parent() {
        Some(p) if !p.as_os_str().is_empty() => p,
        _ => Path::new("."),
    }
}

/// Creates `dir` and any missing ancestors with mode 0750 (as etcd does), fsyncing the parent
/// of each folder it creates, so that the folders themselves cannot vanish after a crash.
/// Does nothing if `dir` already exists.
fn create_dir_all_synced(dir: &Path) -> io::Result<()> {
    // Collect the missing components from `dir` upwards, then create them top-down.
    let mut missing = Vec::new();
    let mut cur = dir;
    loop {
        match fs::metadata(cur) {
            Ok(m) if m.is_dir() => break,
            Ok(_) => {
                return Err(io::Error::new(
                    io::ErrorKind::NotADirectory,
                    format!("{} is not a directory", cur.display()),
                ));
            }
            Err(e) if e.kind() == io::ErrorKind::NotFound => {
                missing.push(cur);
                match cur.parent() {
                    Some(p) if !p.as_os_str().is_empty() => cur = p,
                    _ => break,
                }
            }
            Err(e) => return Err(e),
        }
    }
    for d in missing.into_iter().rev() {
        match fs::DirBuilder::new().mode(0o750).create(d) {
            Ok(()) => {}
            // Another thread or process created it meanwhile: still sync its parent below,
            // since we cannot know whether the creator did.
            Err(e) if e.kind() == io::ErrorKind::AlreadyExists && d.is_dir() => {}
            Err(e) => return Err(e),
        }
        File::open(parent_dir(d))?.sync_all()?;
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::os::unix::fs::PermissionsExt;
    use tempfile::TempDir;

    /// The same scenario on both implementations: what the storage code relies on.
    fn contract(fs: &dyn FileSystem, root: &Path) {
        let dir = root.join("a/b");
        fs.create_dir_all(&dir).unwrap();
        fs.create_dir_all(&dir).unwrap();
        assert!(fs.list_dir(&dir).unwrap().is_empty());
        let p = dir.join("f");
        assert!(!fs.exists(&p).unwrap());
        let mut f = fs.create(&p).unwrap();
        f.write_all_at(b"hello", 0).unwrap();
        f.write_all_at(b"!", 7).unwrap();
        assert_eq!(f.size().unwrap(), 8);
        f.sync_data().unwrap();
        assert_eq!(fs.read(&p).unwrap(), b"hello\0\0!");
        f.set_len(4).unwrap();
        f.set_len(6).unwrap();
        assert_eq!(fs.read(&p).unwrap(), b"hell\0\0");
        drop(f);
        let mut f = fs.open(&p).unwrap();
        f.write_all_at(b"o", 4).unwrap();
        let (mut r, len) = fs.open_read(&p).unwrap();
        let mut got = Vec::new();
        r.read_to_end(&mut got).unwrap();
        assert_eq!((got.as_slice(), len), (&b"hello\0"[..], 6));
        fs.create(&dir.join("e")).unwrap();
        assert_eq!(fs.list_dir(&dir).unwrap(), ["e", "f"]);
        fs.rename(&p, &dir.join("g")).unwrap();
        fs.remove_file(&dir.join("e")).unwrap();
        fs.sync_dir(&dir).unwrap();
        assert_eq!(fs.list_dir(&dir).unwrap(), ["g"]);
        assert_eq!(
            fs.read(&p).unwrap_err().kind(),
            io::ErrorKind::NotFound,
            "renamed away"
        );
        assert_eq!(
            fs.open(&dir.join("nope")).unwrap_err().kind(),
            io::ErrorKind::NotFound
        );
        // A reader opened before its name goes still reads the file.
        let gone = dir.join("gone");
        fs.create(&gone).unwrap().write_all_at(b"kept", 0).unwrap();
        let (mut kept, _) = fs.open_read(&gone).unwrap();
        fs.remove_file(&gone).unwrap();
        let mut got = Vec::new();
        kept.read_to_end(&mut got).unwrap();
        assert_eq!(got, b"kept");
        // A file in the way of a folder.
        assert!(fs.create_dir_all(&dir.join("g/sub")).is_err());
        // One owner per lock.
        let lock = dir.join("LOCK");
        let held = fs.try_lock(&lock).unwrap();
        assert_eq!(
            fs.try_lock(&lock).unwrap_err().kind(),
            io::ErrorKind::WouldBlock
        );
        drop(held);
        fs.try_lock(&lock).unwrap();
    }

    #[test]
    fn std_fs_keeps_the_contract() {
        let tmp = TempDir::new().unwrap();
        contract(&StdFs, tmp.path());
    }

    #[test]
    fn mem_fs_keeps_the_contract() {
        contract(&MemFs::new(1), Path::new("/data"));
    }

    #[test]
    fn std_fs_makes_folders_with_mode_0750() {
        let tmp = TempDir::new().unwrap();
        let deep = tmp.path().join("a/b/c");
        StdFs.create_dir_all(&deep).unwrap();
        for d in [tmp.path().join("a"), tmp.path().join("a/b"), deep] {
            let mode = fs::metadata(&d).unwrap().permissions().mode() & 0o777;
            // The umask can only remove bits.
            assert_eq!(mode & !0o750, 0, "{}: {mode:o}", d.display());
        }
    }

    /// Direct writes are opened with an alignment no smaller than the disk's physical sector
    /// (where the file system has direct I/O at all).
    #[cfg(target_os = "linux")]
    #[test]
    fn direct_writes_are_never_smaller_than_the_physical_sector() {
        let tmp = TempDir::new().unwrap();
        let path = tmp.path().join("f");
        StdFs.create(&path).unwrap();
        let Some((_, align)) = StdFs.open_direct(&path).unwrap() else {
            return; // no direct I/O on this file system (tmpfs, say)
        };
        assert!(align.is_power_of_two() && align >= 512, "{align}");
        let meta = fs::metadata(&path).unwrap();
        let dev = std::os::unix::fs::MetadataExt::dev(&meta);
        let (major, minor) = (rustix::fs::major(dev), rustix::fs::minor(dev));
        let physical = physical_sector(major, minor).unwrap_or(4096);
        assert!(align >= physical, "{align} < {physical}");
    }

    #[test]
    fn parent_dir_of_a_bare_name_is_dot() {
        assert_eq!(parent_dir(Path::new("raftexample-1")), Path::new("."));
        assert_eq!(parent_dir(Path::new("/a/b")), Path::new("/a"));
    }
}
