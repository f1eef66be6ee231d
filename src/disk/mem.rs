//! [`MemFs`]: a disk in memory that loses power on command, for tests and simulations.
//!
//! # What a power loss does here
//! Each file has the bytes a reader sees now (the page cache) and the bytes on the platter as
//! of its last completed sync. At a power loss:
//! - every 4 KiB page written since that sync is, independently and in no particular order,
//!   kept (its new bytes reached the disk), dropped (the old bytes stay) or torn (each
//!   512-byte sector of it new or old);
//! - a length changed since that sync is either the new one or the old one (a file extended but
//!   whose pages were dropped reads as zeros there, as a real one does);
//! - in each folder, the entries created, renamed or removed since the folder's last sync
//!   survive as a prefix of the order they were made in (a journaling file system commits
//!   them in order): none, some, or all of them.
//!
//! Data and entries that a completed sync covered are never touched. Open handles and locks
//! die with the power. Everything random comes from one seeded generator and every map is
//! ordered, so a run is a function of its seed and its calls: no clock, no thread, no hash
//! order.
//!
//! # Other faults
//! [`MemFs::fail_syncs`] makes syncs fail with `EIO` (and, with [`MemFs::set_failed_sync_forgets`],
//! forget what they failed to write, as Linux does); [`MemFs::set_capacity`] makes writes that need
//! more space fail with `ENOSPC` (nothing of such a write is stored); and [`MemFs::flip_byte`]
//! damages a file at rest (on the platter and in the cache), which no crash can do;
//! [`MemFs::damage_renamed`] so damages every file renamed to a given kind of name (a disk that
//! damages every copy).
//!
//! Simplifications: folders are created durably and never removed, a rename must stay in its
//! folder, and a lock is kept in memory only (it needs no file).

use std::collections::{BTreeMap, BTreeSet};
use std::fmt;
use std::io::{self, Cursor, Read};
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex, MutexGuard};

use rand::SeedableRng;
use rand::rngs::StdRng;

use super::platter::{Dir, Inode};
use super::{DiskFile, FileSystem, LockGuard};

/// Linux's `EIO`, `EINVAL` and `ENOSPC`, so that errors read as the kernel's would.
const EIO: i32 = 5;
const EINVAL: i32 = 22;
const ENOSPC: i32 = 28;

/// The sector a [`MemFs`] offers direct writes in, by default (a 512-byte-sector disk's).
const DIRECT_ALIGN: usize = 512;

/// An in-memory file system that models a power loss (see the module doc). Clones share the
/// same disk: give one to the code under test as a [`super::SharedFs`] and keep one to pull
/// the plug.
#[derive(Clone)]
pub struct MemFs {
    state: Arc<Mutex<State>>,
}

impl fmt::Debug for MemFs {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let s = self.lock();
        f.debug_struct("MemFs")
            .field("folders", &s.dirs.len())
            .field("files", &s.inodes.len())
            .field("boot", &s.boot)
            .finish_non_exhaustive()
    }
}

struct State {
    rng: StdRng,
    dirs: BTreeMap<PathBuf, Dir>,
    inodes: BTreeMap<u64, Inode>,
    next_inode: u64,
    /// Incremented by every power loss: a handle from an earlier boot is dead.
    boot: u64,
    /// Set by a scheduled power loss until [`MemFs::power_on`].
    off: bool,
    /// Mutating operations left before a scheduled power loss.
    loss_after: Option<u64>,
    /// Mutating operations so far.
    ops: u64,
    /// Syncs left to fail with `EIO`.
    failing_syncs: u32,
    /// Syncs that succeed before the next one fails ([`MemFs::fail_sync_after`]).
    syncs_before_failure: Option<u32>,
    /// A failed file sync marks the file's pages clean without writing them
    /// ([`MemFs::set_failed_sync_forgets`]).
    failed_sync_forgets: bool,
    /// Bytes of written pages the disk holds at most.
    capacity: Option<u64>,
    /// Files renamed to a name ending in this are damaged as they land
    /// ([`MemFs::damage_renamed`]).
    damage_renamed: Option<String>,
    /// The alignment direct writes need; `None`: no direct I/O here.
    direct_align: Option<usize>,
    /// Held locks and the token of their guard.
    locks: BTreeMap<PathBuf, u64>,
    next_lock: u64,
    /// Removals run on a thread of their own, as on a real disk
    /// ([`MemFs::set_background_removal`]).
    background_removal: bool,
    /// Files whose removal fails with `EIO` ([`MemFs::refuse_removal`]).
    refused_removals: BTreeSet<PathBuf>,
    /// Files whose renaming fails with `EIO` ([`MemFs::refuse_rename`]).
    refused_renames: BTreeSet<PathBuf>,
    /// Files whose reads fail with `EIO` from an offset on ([`MemFs::fail_reads`]).
    unreadable: BTreeMap<PathBuf, u64>,
}

/// Puts `path` in `set` or takes it out.
fn set_member(set: &mut BTreeSet<PathBuf>, path: &Path, member: bool) {
    if member {
        set.insert(path.to_path_buf());
    } else {
        set.remove(path);
    }
}

/// The folder and the name of `path`.
fn split(path: &Path) -> io::Result<(PathBuf, String)> {
    let name = path
        .file_name()
        .and_then(|n| n.to_str())
        .ok_or_else(|| io::Error::new(io::ErrorKind::InvalidInput, "no file name"))?;
    let dir = path.parent().unwrap_or(Path::new("")).to_path_buf();
    Ok((dir, name.to_string()))
}

fn not_found(path: &Path) -> io::Error {
    io::Error::new(
        io::ErrorKind::NotFound,
        format!("{}: no such file or directory", path.display()),
    )
}

impl State {
    /// Starts a mutating operation: fails if the power is off, or if a scheduled power loss
    /// is due now (which then happens).
    fn mutate(&mut self) -> io::Result<()> {
        self.check_power()?;
        if let Some(left) = self.loss_after {
            if left == 0 {
                self.loss_after = None;
                self.lose_power();
                self.off = true;
                return Err(io::Error::other("the power failed (MemFs)"));
            }
            self.loss_after = Some(left - 1);
        }
        self.ops += 1;
        Ok(())
    }

    fn check_power(&self) -> io::Result<()> {
        if self.off {
            return Err(io::Error::other("the power is off (MemFs)"));
        }
        Ok(())
    }

    fn sync_failure(&mut self) -> io::Result<()> {
        if self.failing_syncs > 0 {
            self.failing_syncs -= 1;
            return Err(io::Error::from_raw_os_error(EIO));
        }
        match self.syncs_before_failure {
            Some(0) => {
                self.syncs_before_failure = None;
                Err(io::Error::from_raw_os_error(EIO))
            }
            Some(n) => {
                self.syncs_before_failure = Some(n - 1);
                Ok(())
            }
            None => Ok(()),
        }
    }

    fn lookup(&self, path: &Path) -> io::Result<u64> {
        let (dir, name) = split(path)?;
        self.dirs
            .get(&dir)
            .and_then(|d| d.live.get(&name))
            .copied()
            .ok_or_else(|| not_found(path))
    }

    fn dir_mut(&mut self, dir: &Path) -> io::Result<&mut Dir> {
        self.dirs.get_mut(dir).ok_or_else(|| not_found(dir))
    }

    fn open_handle(&mut self, fs: &MemFs, ino: u64, align: Option<usize>) -> Box<dyn DiskFile> {
        if let Some(inode) = self.inodes.get_mut(&ino) {
            inode.open += 1;
        }
        Box::new(MemFile {
            fs: fs.clone(),
            ino,
            boot: self.boot,
            align,
        })
    }

    fn used_bytes(&self) -> u64 {
        self.inodes.values().map(Inode::allocated_bytes).sum()
    }

    fn lose_power(&mut self) {
        for dir in self.dirs.values_mut() {
            dir.lose_power(&mut self.rng);
        }
        for inode in self.inodes.values_mut() {
            inode.lose_power(&mut self.rng);
        }
        self.boot += 1;
        self.locks.clear();
        self.collect_garbage();
    }

    /// Forgets files that no folder names (now or on the platter) and no handle holds.
    fn collect_garbage(&mut self) {
        let used: BTreeSet<u64> = self.dirs.values().flat_map(Dir::files).collect();
        self.inodes
            .retain(|ino, inode| used.contains(ino) || inode.open > 0);
    }
}

/// What a reader meets at a bad sector ([`MemFs::fail_reads`]).
struct BadSector;

impl Read for BadSector {
    fn read(&mut self, _: &mut [u8]) -> io::Result<usize> {
        Err(io::Error::from_raw_os_error(5))
    }
}

impl MemFs {
    /// The file at `path` whole, and where its reads fail ([`MemFs::fail_reads`]).
    fn read_all(&self, path: &Path) -> io::Result<(Vec<u8>, Option<u64>)> {
        let s = self.lock();
        s.check_power()?;
        let ino = s.lookup(path)?;
        let data = s
            .inodes
            .get(&ino)
            .map(|i| i.data().to_vec())
            .unwrap_or_default();
        Ok((data, s.unreadable.get(path).copied()))
    }

    /// An empty disk whose power losses are drawn from `seed`.
    pub fn new(seed: u64) -> MemFs {
        MemFs {
            state: Arc::new(Mutex::new(State {
                rng: StdRng::seed_from_u64(seed),
                dirs: BTreeMap::new(),
                inodes: BTreeMap::new(),
                next_inode: 1,
                boot: 0,
                off: false,
                loss_after: None,
                ops: 0,
                failing_syncs: 0,
                syncs_before_failure: None,
                failed_sync_forgets: false,
                capacity: None,
                damage_renamed: None,
                direct_align: Some(DIRECT_ALIGN),
                locks: BTreeMap::new(),
                next_lock: 1,
                background_removal: false,
                refused_removals: BTreeSet::new(),
                refused_renames: BTreeSet::new(),
                unreadable: BTreeMap::new(),
            })),
        }
    }

    fn lock(&self) -> MutexGuard<'_, State> {
        // A panic while holding the lock (a failed assertion in a test) leaves the state as
        // consistent as any power loss would: carry on with it.
        self.state.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// The power fails now and comes back at once: unsynced data and folder entries are
    /// kept, dropped or torn as the module doc says; open handles and locks are dead.
    pub fn power_loss(&self) {
        let mut s = self.lock();
        s.lose_power();
        s.off = false;
    }

    /// Schedules a power loss: `ops` more mutating operations (writes, length changes,
    /// syncs, creations, renames, removals) succeed, the next one fails and the power is lost
    /// then; every call then fails until [`MemFs::power_on`].
    pub fn power_loss_after(&self, ops: u64) {
        self.lock().loss_after = Some(ops);
    }

    /// Whether a scheduled power loss happened and the power is still off.
    pub fn is_off(&self) -> bool {
        self.lock().off
    }

    /// Turns the power back on after a scheduled power loss (and cancels one still pending).
    pub fn power_on(&self) {
        let mut s = self.lock();
        s.off = false;
        s.loss_after = None;
    }

    /// Mutating operations so far (see [`MemFs::power_loss_after`]).
    pub fn ops(&self) -> u64 {
        self.lock().ops
    }

    /// Whether [`FileSystem::open_direct`] opens files, and for which alignment (512 bytes
    /// unless told otherwise); `None` plays a file system without direct I/O, such as tmpfs.
    pub fn set_direct_io(&self, align: Option<usize>) {
        self.lock().direct_align = align;
    }

    /// Whether callers remove files on a thread of their own, as on a real disk (off by
    /// default, so that a simulation stays deterministic).
    pub fn set_background_removal(&self, on: bool) {
        self.lock().background_removal = on;
    }

    /// Removing `path` fails with `EIO` (a bad block in its folder) until `refused` is false.
    pub fn refuse_removal(&self, path: &Path, refused: bool) {
        set_member(&mut self.lock().refused_removals, path, refused);
    }

    /// Renaming `path` fails with `EIO` (a folder with no room for the new name's entry).
    pub fn refuse_rename(&self, path: &Path, refused: bool) {
        set_member(&mut self.lock().refused_renames, path, refused);
    }

    /// Reading the file at `path` fails with `EIO` from byte `from` on (a bad sector the drive's
    /// own check caught), until `None`: a whole read fails, a streamed one once it gets there.
    pub fn fail_reads(&self, path: &Path, from: Option<u64>) {
        let mut s = self.lock();
        match from {
            Some(from) => s.unreadable.insert(path.to_path_buf(), from),
            None => s.unreadable.remove(path),
        };
    }

    /// The next `n` syncs (of files or folders) fail with `EIO` and make nothing durable.
    /// Cancels a pending [`MemFs::fail_sync_after`] too.
    pub fn fail_syncs(&self, n: u32) {
        let mut s = self.lock();
        s.failing_syncs = n;
        s.syncs_before_failure = None;
    }

    /// The next `ok` syncs succeed; the one after them fails with `EIO` and makes nothing
    /// durable (one step of a multi-sync operation, such as a WAL rotation, can fail so).
    pub fn fail_sync_after(&self, ok: u32) {
        self.lock().syncs_before_failure = Some(ok);
    }

    /// Whether a failed sync of a file forgets what it failed to write, as Linux does since
    /// 4.13 ("fsyncgate"): the writeback error marks the pages clean, the cache keeps their
    /// new bytes for readers, and a later sync that succeeds does not write them, so a power
    /// loss after it still finds the old bytes there. Off by default: then failed pages stay
    /// dirty and a later sync writes them.
    pub fn set_failed_sync_forgets(&self, on: bool) {
        self.lock().failed_sync_forgets = on;
    }

    /// Bytes of written pages the disk holds (what [`MemFs::set_capacity`] limits).
    pub fn used_bytes(&self) -> u64 {
        self.lock().used_bytes()
    }

    /// Limits the written bytes the disk holds (in whole pages); a write that needs more
    /// fails with `ENOSPC` and stores nothing. `None`: no limit.
    pub fn set_capacity(&self, bytes: Option<u64>) {
        self.lock().capacity = bytes;
    }

    /// From now on, every file renamed to a name ending in `suffix` has the byte 5 from its
    /// end flipped as it lands (as [`MemFs::flip_byte`] does; a file shorter than that is
    /// left alone): a disk that damages every copy of what is written so. `None`: no more.
    pub fn damage_renamed(&self, suffix: Option<&str>) {
        self.lock().damage_renamed = suffix.map(str::to_string);
    }

    /// XORs the byte at `offset` of `path` with `mask`, on the platter and in the cache:
    /// damage at rest, which no power loss causes.
    pub fn flip_byte(&self, path: &Path, offset: u64, mask: u8) -> io::Result<()> {
        let mut s = self.lock();
        let ino = s.lookup(path)?;
        let inode = s.inodes.get_mut(&ino).ok_or_else(|| not_found(path))?;
        if !inode.flip(offset as usize, mask) {
            return Err(io::Error::new(
                io::ErrorKind::InvalidInput,
                format!("{} has no byte at offset {offset}", path.display()),
            ));
        }
        Ok(())
    }
}

/// An open [`MemFs`] file.
struct MemFile {
    fs: MemFs,
    ino: u64,
    boot: u64,
    /// Opened for direct writes: each must be aligned to this, as the kernel demands.
    align: Option<usize>,
}

impl fmt::Debug for MemFile {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("MemFile").field("inode", &self.ino).finish()
    }
}

impl MemFile {
    /// The state and this file's inode, if the handle is still alive.
    fn with<T>(
        &self,
        mutating: bool,
        f: impl FnOnce(&mut State, u64) -> io::Result<T>,
    ) -> io::Result<T> {
        let mut s = self.fs.lock();
        s.check_power()?;
        if s.boot != self.boot || !s.inodes.contains_key(&self.ino) {
            return Err(io::Error::other(
                "a file handle from before a power loss (MemFs)",
            ));
        }
        if mutating {
            s.mutate()?;
        }
        f(&mut s, self.ino)
    }
}

fn inode(s: &mut State, ino: u64) -> &mut Inode {
    s.inodes
        .get_mut(&ino)
        .expect("MemFile::with checked that the inode exists")
}

impl DiskFile for MemFile {
    fn write_all_at(&mut self, buf: &[u8], offset: u64) -> io::Result<()> {
        if let Some(align) = self.align {
            let aligned = |n: usize| n.is_multiple_of(align);
            if !aligned(buf.as_ptr() as usize)
                || !aligned(buf.len())
                || !offset.is_multiple_of(align as u64)
            {
                return Err(io::Error::from_raw_os_error(EINVAL));
            }
        }
        self.with(true, |s, ino| {
            if let Some(capacity) = s.capacity {
                let needed = inode(s, ino).bytes_to_allocate(offset, buf.len() as u64);
                if s.used_bytes() + needed > capacity {
                    return Err(io::Error::from_raw_os_error(ENOSPC));
                }
            }
            inode(s, ino).write(buf, offset);
            Ok(())
        })
    }

    fn set_len(&mut self, len: u64) -> io::Result<()> {
        self.with(true, |s, ino| {
            inode(s, ino).set_len(len);
            Ok(())
        })
    }

    fn size(&self) -> io::Result<u64> {
        self.with(false, |s, ino| Ok(inode(s, ino).data().len() as u64))
    }

    fn sync_data(&mut self) -> io::Result<()> {
        self.with(true, |s, ino| {
            if let Err(e) = s.sync_failure() {
                if s.failed_sync_forgets {
                    inode(s, ino).forget_dirty();
                }
                return Err(e);
            }
            inode(s, ino).sync();
            Ok(())
        })
    }
}

impl Drop for MemFile {
    fn drop(&mut self) {
        let mut s = self.fs.lock();
        if s.boot != self.boot {
            return;
        }
        if let Some(inode) = s.inodes.get_mut(&self.ino) {
            inode.open = inode.open.saturating_sub(1);
        }
        s.collect_garbage();
    }
}

/// A held [`MemFs`] lock.
struct MemLock {
    fs: MemFs,
    path: PathBuf,
    token: u64,
}

impl fmt::Debug for MemLock {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("MemLock").field("path", &self.path).finish()
    }
}

impl Drop for MemLock {
    fn drop(&mut self) {
        let mut s = self.fs.lock();
        // After a power loss the lock is gone, and may belong to someone else by now.
        if s.locks.get(&self.path) == Some(&self.token) {
            s.locks.remove(&self.path);
        }
    }
}

impl FileSystem for MemFs {
    fn create(&self, path: &Path) -> io::Result<Box<dyn DiskFile>> {
        let mut s = self.lock();
        s.mutate()?;
        let (dir, name) = split(path)?;
        let existing = s.dir_mut(&dir)?.live.get(&name).copied();
        let ino = match existing {
            Some(ino) => {
                let file = s.inodes.get_mut(&ino).ok_or_else(|| not_found(path))?;
                file.set_len(0);
                ino
            }
            None => {
                let ino = s.next_inode;
                s.next_inode += 1;
                s.inodes.insert(ino, Inode::default());
                s.dir_mut(&dir)?.link(name, ino);
                ino
            }
        };
        Ok(s.open_handle(self, ino, None))
    }

    fn open(&self, path: &Path) -> io::Result<Box<dyn DiskFile>> {
        let mut s = self.lock();
        s.check_power()?;
        let ino = s.lookup(path)?;
        Ok(s.open_handle(self, ino, None))
    }

    fn open_direct(&self, path: &Path) -> io::Result<Option<(Box<dyn DiskFile>, usize)>> {
        let mut s = self.lock();
        s.check_power()?;
        let ino = s.lookup(path)?;
        let align = s.direct_align;
        Ok(align.map(|align| (s.open_handle(self, ino, Some(align)), align)))
    }

    fn read(&self, path: &Path) -> io::Result<Vec<u8>> {
        let (data, bad_from) = self.read_all(path)?;
        match bad_from {
            Some(_) => Err(io::Error::from_raw_os_error(5)),
            None => Ok(data),
        }
    }

    fn open_read(&self, path: &Path) -> io::Result<(Box<dyn Read + Send>, u64)> {
        let (mut data, bad_from) = self.read_all(path)?;
        let len = data.len() as u64;
        let Some(from) = bad_from else {
            return Ok((Box::new(Cursor::new(data)), len));
        };
        data.truncate(usize::try_from(from).unwrap_or(usize::MAX));
        let bad_sector = io::Read::chain(Cursor::new(data), BadSector);
        Ok((Box::new(bad_sector), len))
    }

    fn exists(&self, path: &Path) -> io::Result<bool> {
        let s = self.lock();
        s.check_power()?;
        Ok(s.dirs.contains_key(path) || s.lookup(path).is_ok())
    }

    fn list_dir(&self, dir: &Path) -> io::Result<Vec<String>> {
        let s = self.lock();
        s.check_power()?;
        let d = s.dirs.get(dir).ok_or_else(|| not_found(dir))?;
        let mut names: Vec<String> = d.live.keys().cloned().collect();
        names.extend(s.dirs.keys().filter_map(|p| {
            (p.parent() == Some(dir))
                .then(|| p.file_name().and_then(|n| n.to_str()).map(str::to_string))
                .flatten()
        }));
        names.sort();
        Ok(names)
    }

    fn rename(&self, from: &Path, to: &Path) -> io::Result<()> {
        let mut s = self.lock();
        s.mutate()?;
        if s.refused_renames.contains(from) {
            return Err(io::Error::from_raw_os_error(5));
        }
        let (dir, from_name) = split(from)?;
        let (to_dir, to_name) = split(to)?;
        if dir != to_dir {
            return Err(io::Error::new(
                io::ErrorKind::Unsupported,
                "MemFs renames only within a folder",
            ));
        }
        if !s.dir_mut(&dir)?.rename(&from_name, &to_name) {
            return Err(not_found(from));
        }
        s.collect_garbage();
        if s.damage_renamed
            .as_deref()
            .is_some_and(|suffix| to_name.ends_with(suffix))
        {
            let ino = s.lookup(to)?;
            if let Some(inode) = s.inodes.get_mut(&ino) {
                let len = inode.data().len();
                if len >= 5 {
                    inode.flip(len - 5, 0x40);
                }
            }
        }
        Ok(())
    }

    fn remove_file(&self, path: &Path) -> io::Result<()> {
        let mut s = self.lock();
        s.mutate()?;
        if s.refused_removals.contains(path) {
            return Err(io::Error::from_raw_os_error(5));
        }
        let (dir, name) = split(path)?;
        if !s.dir_mut(&dir)?.unlink(&name) {
            return Err(not_found(path));
        }
        s.collect_garbage();
        Ok(())
    }

    fn create_dir_all(&self, dir: &Path) -> io::Result<()> {
        let mut s = self.lock();
        s.mutate()?;
        let mut missing: Vec<&Path> = dir
            .ancestors()
            .take_while(|a| !s.dirs.contains_key(*a))
            .collect();
        missing.reverse();
        for d in missing {
            if s.lookup(d).is_ok() {
                return Err(io::Error::new(
                    io::ErrorKind::NotADirectory,
                    format!("{} is not a directory", d.display()),
                ));
            }
            s.dirs.insert(d.to_path_buf(), Dir::default());
        }
        Ok(())
    }

    fn sync_dir(&self, dir: &Path) -> io::Result<()> {
        let mut s = self.lock();
        s.mutate()?;
        s.sync_failure()?;
        s.dir_mut(dir)?.sync();
        s.collect_garbage();
        Ok(())
    }

    fn background_removal(&self) -> bool {
        self.lock().background_removal
    }

    fn free_bytes(&self, _dir: &Path) -> io::Result<Option<u64>> {
        let s = self.lock();
        Ok(s.capacity.map(|c| c.saturating_sub(s.used_bytes())))
    }

    fn try_lock(&self, path: &Path) -> io::Result<LockGuard> {
        let mut s = self.lock();
        s.check_power()?;
        let (dir, _) = split(path)?;
        if !s.dirs.contains_key(&dir) {
            return Err(not_found(&dir));
        }
        if s.locks.contains_key(path) {
            return Err(io::ErrorKind::WouldBlock.into());
        }
        let token = s.next_lock;
        s.next_lock += 1;
        s.locks.insert(path.to_path_buf(), token);
        Ok(LockGuard::new(MemLock {
            fs: self.clone(),
            path: path.to_path_buf(),
            token,
        }))
    }
}

#[cfg(test)]
mod tests {
    use super::super::platter::PAGE;
    use super::*;

    fn file(fs: &MemFs, path: &str) -> Box<dyn DiskFile> {
        fs.create_dir_all(Path::new(path).parent().unwrap())
            .unwrap();
        fs.create(Path::new(path)).unwrap()
    }

    /// Synced bytes and synced entries survive every power loss, whatever the seed.
    #[test]
    fn what_a_sync_covered_survives() {
        for seed in 0..50 {
            let fs = MemFs::new(seed);
            let mut f = file(&fs, "/d/a");
            f.write_all_at(&[1; 10_000], 0).unwrap();
            f.sync_data().unwrap();
            fs.sync_dir(Path::new("/d")).unwrap();
            f.write_all_at(&[2; 5000], 8000).unwrap();
            fs.create(Path::new("/d/b")).unwrap();
            fs.power_loss();
            let got = fs.read(Path::new("/d/a")).unwrap();
            assert_eq!(&got[..8000], &[1; 8000][..], "seed {seed}");
            assert!(got.len() == 10_000 || got.len() == 13_000, "seed {seed}");
            // Every byte past the synced ones is old or new, never anything else.
            for (i, &b) in got.iter().enumerate().skip(8000) {
                let old = if i < 10_000 { 1 } else { 0 };
                assert!(b == old || b == 2, "seed {seed} byte {i}: {b}");
            }
            assert!(fs.exists(Path::new("/d/a")).unwrap());
        }
    }

    /// Across seeds, unsynced pages are kept, dropped and torn, each page on its own: a later
    /// page can survive while an earlier one is lost.
    #[test]
    fn unsynced_pages_are_kept_dropped_or_torn_independently() {
        let mut outcomes = BTreeSet::new();
        for seed in 0..200 {
            let fs = MemFs::new(seed);
            let mut f = file(&fs, "/d/a");
            f.set_len(3 * PAGE).unwrap();
            f.sync_data().unwrap();
            fs.sync_dir(Path::new("/d")).unwrap();
            f.write_all_at(&[9; 3 * PAGE as usize], 0).unwrap();
            fs.power_loss();
            let got = fs.read(Path::new("/d/a")).unwrap();
            let page = |p: usize| {
                let bytes = &got[p * PAGE as usize..(p + 1) * PAGE as usize];
                match (bytes.iter().all(|&b| b == 9), bytes.iter().all(|&b| b == 0)) {
                    (true, _) => 'k',
                    (_, true) => 'd',
                    _ => 't',
                }
            };
            outcomes.insert((page(0), page(1), page(2)));
        }
        assert!(outcomes.contains(&('d', 'd', 'k')), "{outcomes:?}");
        assert!(outcomes.iter().any(|o| o.1 == 't'), "{outcomes:?}");
        assert!(outcomes.len() > 15, "{outcomes:?}");
    }

    /// A new name is durable only after its folder is synced; a rename or removal that was
    /// not synced may be undone, but folder changes survive in order.
    #[test]
    fn folder_entries_need_a_folder_sync() {
        let mut seen = BTreeSet::new();
        for seed in 0..100 {
            let fs = MemFs::new(seed);
            let mut f = file(&fs, "/d/x.tmp");
            f.write_all_at(b"data", 0).unwrap();
            f.sync_data().unwrap();
            fs.rename(Path::new("/d/x.tmp"), Path::new("/d/x")).unwrap();
            fs.create(Path::new("/d/y")).unwrap();
            fs.power_loss();
            let names = fs.list_dir(Path::new("/d")).unwrap();
            // Prefixes of [create x.tmp, rename to x, create y].
            assert!(
                [vec![], vec!["x.tmp"], vec!["x"], vec!["x", "y"]]
                    .iter()
                    .any(|want| *want == names),
                "seed {seed}: {names:?}"
            );
            seen.insert(names.clone());
            if names.contains(&"x".to_string()) {
                assert_eq!(fs.read(Path::new("/d/x")).unwrap(), b"data");
            }
        }
        assert_eq!(seen.len(), 4, "{seen:?}");
        // Once synced, they stay.
        let fs = MemFs::new(7);
        file(&fs, "/d/x");
        fs.sync_dir(Path::new("/d")).unwrap();
        fs.power_loss();
        assert_eq!(fs.list_dir(Path::new("/d")).unwrap(), ["x"]);
    }

    #[test]
    fn the_same_seed_gives_the_same_disk() {
        let run = |seed| {
            let fs = MemFs::new(seed);
            let mut f = file(&fs, "/d/a");
            for i in 0..20u64 {
                f.write_all_at(&[i as u8; 1000], i * 1500).unwrap();
                if i % 7 == 0 {
                    f.sync_data().unwrap();
                }
            }
            fs.sync_dir(Path::new("/d")).unwrap();
            fs.power_loss();
            fs.read(Path::new("/d/a")).unwrap()
        };
        assert_eq!(run(3), run(3));
        assert_ne!(run(3), run(4));
    }

    #[test]
    fn a_scheduled_power_loss_fails_that_call_and_keeps_the_power_off() {
        let fs = MemFs::new(1);
        let mut f = file(&fs, "/d/a");
        let before = fs.ops();
        fs.power_loss_after(1);
        f.write_all_at(b"one", 0).unwrap();
        assert!(f.sync_data().is_err());
        assert!(fs.is_off());
        assert!(fs.read(Path::new("/d/a")).is_err());
        assert!(f.write_all_at(b"two", 0).is_err());
        assert_eq!(fs.ops(), before + 1);
        fs.power_on();
        // The handle died with the power; the folder entry was never synced.
        assert!(f.write_all_at(b"two", 0).is_err());
        assert!(fs.list_dir(Path::new("/d")).unwrap().len() <= 1);
    }

    #[test]
    fn injected_faults() {
        let fs = MemFs::new(1);
        let mut f = file(&fs, "/d/a");
        fs.fail_syncs(1);
        let err = f.sync_data().unwrap_err();
        assert_eq!(err.raw_os_error(), Some(EIO));
        f.sync_data().unwrap();

        fs.set_capacity(Some(2 * PAGE));
        f.write_all_at(&[1; 100], 0).unwrap();
        f.write_all_at(&[1; 100], PAGE).unwrap();
        // Sparse: extending costs nothing, writing does.
        f.set_len(100 * PAGE).unwrap();
        let err = f.write_all_at(&[1; 10], 2 * PAGE).unwrap_err();
        assert_eq!(err.kind(), io::ErrorKind::StorageFull);
        assert_eq!(fs.read(Path::new("/d/a")).unwrap()[2 * PAGE as usize], 0);
        // Overwriting allocated pages needs no space; cutting the file frees it.
        f.write_all_at(&[2; 10], 0).unwrap();
        f.set_len(PAGE).unwrap();
        f.write_all_at(&[3; 10], 2 * PAGE).unwrap();

        f.sync_data().unwrap();
        fs.flip_byte(Path::new("/d/a"), 1, 0xFF).unwrap();
        fs.power_loss();
        let got = fs.read(Path::new("/d/a")).unwrap();
        assert_eq!(got[1], 2 ^ 0xFF, "damage at rest survives a power loss");
        assert!(fs.flip_byte(Path::new("/d/a"), 1 << 40, 1).is_err());
    }

    /// With the mode on, the bytes a failed sync did not write stay readable but are never
    /// written by a later sync: a power loss brings back the old ones. Off, the later sync
    /// writes them.
    #[test]
    fn a_failed_sync_may_forget_what_it_did_not_write() {
        for forgets in [false, true] {
            for seed in 0..20 {
                let fs = MemFs::new(seed);
                fs.set_failed_sync_forgets(forgets);
                let mut f = file(&fs, "/d/a");
                f.write_all_at(&[1; 100], 0).unwrap();
                f.sync_data().unwrap();
                fs.sync_dir(Path::new("/d")).unwrap();
                f.write_all_at(&[2; 100], 0).unwrap();
                fs.fail_syncs(1);
                f.sync_data().unwrap_err();
                assert_eq!(
                    fs.read(Path::new("/d/a")).unwrap(),
                    [2; 100],
                    "the cache keeps them"
                );
                f.sync_data().unwrap();
                fs.power_loss();
                let want = if forgets { 1 } else { 2 };
                assert_eq!(
                    fs.read(Path::new("/d/a")).unwrap(),
                    [want; 100],
                    "seed {seed}"
                );
            }
        }
    }

    #[test]
    fn removed_files_are_forgotten_once_nothing_names_them() {
        let fs = MemFs::new(1);
        let mut f = file(&fs, "/d/a");
        f.write_all_at(&[1; 100], 0).unwrap();
        fs.sync_dir(Path::new("/d")).unwrap();
        fs.remove_file(Path::new("/d/a")).unwrap();
        // Still open: still writable, as on a real disk.
        f.write_all_at(&[2; 100], 0).unwrap();
        drop(f);
        assert_eq!(fs.lock().inodes.len(), 1, "the platter still names it");
        fs.sync_dir(Path::new("/d")).unwrap();
        assert!(fs.lock().inodes.is_empty());
    }
}
