//! Small file-system helpers that make durability explicit, on top of the [`crate::disk`]
//! seam (the real disk unless a caller passes another).
//!
//! The WAL and the snapshotter build on two guarantees from here (and write their files the
//! same way: temporary file, write, `sync_data`, rename, fsync the directory):
//! - [`sync_dir`]: a new, renamed or removed directory entry survives a crash only once the
//!   directory itself is fsynced (`fsync` of a file does not persist its name).
//! - [`create_dir_all_synced`]: creates each missing directory with mode 0750 (as etcd does) and
//!   fsyncs its parent, so the data directories themselves cannot vanish after a crash.
//!
//! [`DirLock`] gives a data directory a single owner: the raft node takes it before opening the
//! WAL, and a second raftexample process (or a second open in this one) fails at once instead of
//! two nodes writing one log.

use std::io;
use std::path::{Path, PathBuf};

use crate::disk::{FileSystem, IoError, LockGuard, StdFs};

pub use crate::disk::parent_dir;

/// Name of the lock file [`DirLock`] creates inside the directory it guards.
pub const LOCK_FILE: &str = "LOCK";

/// Errors of the file-system helpers; each names the path involved.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// An I/O operation failed.
    #[error(transparent)]
    Io(#[from] IoError),
    /// The directory is locked by another owner.
    #[error(
        "{path} is locked: another raftexample process is already using this data directory \
         (stop it, or give this node a different --id or data directory)"
    )]
    Locked {
        /// The lock file.
        path: PathBuf,
    },
}

impl Error {
    /// The error as an [`IoError`], for modules whose own error type wraps one. `Locked`
    /// becomes an error of kind `WouldBlock`.
    pub fn into_io(self) -> IoError {
        match self {
            Error::Io(e) => e,
            Error::Locked { path } => {
                let msg = format!("{} is locked by another process", path.display());
                IoError::new(path, io::Error::new(io::ErrorKind::WouldBlock, msg))
            }
        }
    }
}

/// Fsyncs a directory of the real disk, so that entries created, renamed or removed in it are
/// durable.
pub fn sync_dir(dir: &Path) -> Result<(), Error> {
    Ok(StdFs.sync_dir(dir).map_err(IoError::at(dir))?)
}

/// Creates `dir` on the real disk and any missing ancestors with mode 0750, fsyncing the parent
/// of each directory it creates. Does nothing if `dir` already exists.
pub fn create_dir_all_synced(dir: &Path) -> Result<(), Error> {
    Ok(StdFs.create_dir_all(dir).map_err(IoError::at(dir))?)
}

/// `%016x-%016x<ext>`: the file names of WAL segments (sequence, first index) and snapshots
/// (term, index), as etcd names them. Fixed-width hex, so names sort as the numbers do.
pub fn hex_pair_name(a: u64, b: u64, ext: &str) -> String {
    format!("{a:016x}-{b:016x}{ext}")
}

/// Parses a name made by [`hex_pair_name`] with this `ext`; `None` for any other file.
pub fn parse_hex_pair_name(name: &str, ext: &str) -> Option<(u64, u64)> {
    let stem = name.strip_suffix(ext)?;
    let (a, b) = stem.split_once('-')?;
    let hex16 = |s: &str| {
        (s.len() == 16 && s.bytes().all(|b| b.is_ascii_hexdigit()))
            .then(|| u64::from_str_radix(s, 16).ok())
            .flatten()
    };
    Some((hex16(a)?, hex16(b)?))
}

/// The `<name>.tmp` files in `dir` whose `<name>` `is_name` recognises: what an interrupted
/// write-then-rename left behind (a WAL segment or a snapshot being created).
pub fn leftover_tmp_files(
    fs: &dyn FileSystem,
    dir: &Path,
    is_name: impl Fn(&str) -> bool,
) -> Result<Vec<PathBuf>, Error> {
    let names = fs.list_dir(dir).map_err(IoError::at(dir))?;
    Ok(names
        .iter()
        .filter(|n| n.strip_suffix(".tmp").is_some_and(&is_name))
        .map(|n| dir.join(n))
        .collect())
}

/// An exclusive, advisory lock on a data directory (`<dir>/LOCK`), held until dropped.
///
/// On the real disk the lock is an OS file lock (`flock` on Linux), so it is released by the
/// kernel when the process dies, even by SIGKILL: there is no stale lock file to clean up. Its
/// content is irrelevant; the file stays in place after release.
#[derive(Debug)]
pub struct DirLock {
    _guard: LockGuard,
    path: PathBuf,
}

impl DirLock {
    /// Takes the lock on `dir` of the real disk, creating the directory (synced, mode 0750)
    /// and the lock file if missing. Fails at once with [`Error::Locked`] if anyone else holds
    /// it, including another `DirLock` in this process: the lock belongs to the open file, not
    /// to the process.
    pub fn acquire(dir: &Path) -> Result<DirLock, Error> {
        DirLock::acquire_on(&StdFs, dir)
    }

    /// [`DirLock::acquire`] on the file system `fs`.
    pub fn acquire_on(fs: &dyn FileSystem, dir: &Path) -> Result<DirLock, Error> {
        fs.create_dir_all(dir).map_err(IoError::at(dir))?;
        let path = dir.join(LOCK_FILE);
        match fs.try_lock(&path) {
            Ok(guard) => Ok(DirLock {
                _guard: guard,
                path,
            }),
            Err(e) if e.kind() == io::ErrorKind::WouldBlock => Err(Error::Locked { path }),
            Err(source) => Err(IoError::new(path, source).into()),
        }
    }

    /// The lock file's path.
    pub fn path(&self) -> &Path {
        &self.path
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::disk::MemFs;
    use std::fs;
    use tempfile::TempDir;

    #[test]
    fn create_dir_all_synced_is_idempotent() {
        let tmp = TempDir::new().unwrap();
        let deep = tmp.path().join("a/b/c");
        create_dir_all_synced(&deep).unwrap();
        assert!(deep.is_dir());
        create_dir_all_synced(&deep).unwrap();
    }

    #[test]
    fn create_dir_all_synced_rejects_a_file_in_the_way() {
        let tmp = TempDir::new().unwrap();
        let file = tmp.path().join("f");
        fs::write(&file, b"x").unwrap();
        let err = create_dir_all_synced(&file.join("sub")).unwrap_err();
        assert!(err.to_string().contains(&*file.to_string_lossy()), "{err}");
    }

    #[test]
    fn dir_lock_refuses_a_second_owner_until_dropped() {
        let tmp = TempDir::new().unwrap();
        let dir = tmp.path().join("raftexample-1");
        let first = DirLock::acquire(&dir).unwrap();
        assert_eq!(first.path(), dir.join(LOCK_FILE));
        let err = DirLock::acquire(&dir).unwrap_err();
        match &err {
            Error::Locked { path } => assert_eq!(path, &dir.join(LOCK_FILE)),
            other => panic!("expected Locked, got {other:?}"),
        }
        let msg = err.to_string();
        assert!(msg.contains("another raftexample process"), "{msg}");
        assert!(msg.contains(&*dir.to_string_lossy()), "{msg}");
        drop(first);
        let _again = DirLock::acquire(&dir).unwrap();
    }

    /// On the in-memory disk too; a power loss frees the lock (its holder died).
    #[test]
    fn dir_lock_on_another_file_system() {
        let fs = MemFs::new(1);
        let dir = Path::new("/data/raftexample-1");
        let first = DirLock::acquire_on(&fs, dir).unwrap();
        assert!(matches!(
            DirLock::acquire_on(&fs, dir),
            Err(Error::Locked { .. })
        ));
        fs.power_loss();
        let second = DirLock::acquire_on(&fs, dir).unwrap();
        // The dead holder's guard does not release the new one.
        drop(first);
        assert!(matches!(
            DirLock::acquire_on(&fs, dir),
            Err(Error::Locked { .. })
        ));
        drop(second);
        DirLock::acquire_on(&fs, dir).unwrap();
    }

    #[test]
    fn dir_lock_is_seen_by_another_process() {
        let tmp = TempDir::new().unwrap();
        let _held = DirLock::acquire(tmp.path()).unwrap();
        // util-linux `flock -n` exits 1 when the lock is held elsewhere.
        let out = std::process::Command::new("flock")
            .arg("-n")
            .arg(tmp.path().join(LOCK_FILE))
            .arg("true")
            .status();
        match out {
            Ok(status) => assert_eq!(status.code(), Some(1), "flock got the lock: {status}"),
            Err(e) if e.kind() == io::ErrorKind::NotFound => {
                eprintln!("flock(1) not installed; cross-process check skipped")
            }
            Err(e) => panic!("running flock: {e}"),
        }
    }

    #[test]
    fn locked_error_converts_to_would_block() {
        let e = Error::Locked {
            path: PathBuf::from("/x/LOCK"),
        }
        .into_io();
        assert_eq!(e.path, PathBuf::from("/x/LOCK"));
        assert_eq!(e.source.kind(), io::ErrorKind::WouldBlock);
    }
}
