//! A node's disk: the crate's [`MemFs`] (power loss page by page, `EIO`, `ENOSPC`, flipped
//! bytes) behind a thin [`SimFs`] that also keeps time. Every sync costs simulated time; the
//! world reads how much a round spent ([`SimFs::take_busy`]) and holds the node busy for that
//! long, so that a slow disk delays everything the node does after it, as a blocking fsync
//! does in the real node's thread.

use std::fmt;
use std::io::{self, Read};
use std::path::Path;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};

use raftexample::disk::{DiskFile, FileSystem, LockGuard, MemFs};

use crate::net::Nanos;

/// Time spent on syncs, and what one sync costs now.
#[derive(Debug, Default)]
struct Timing {
    busy: AtomicU64,
    sync_cost: AtomicU64,
    /// Calls that failed since the last [`SimFs::take_failures`].
    failures: AtomicU64,
}

/// [`MemFs`] with a cost per sync. Clones share the disk and the timing.
#[derive(Clone)]
pub struct SimFs {
    disk: MemFs,
    timing: Arc<Timing>,
}

impl fmt::Debug for SimFs {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("SimFs").field("disk", &self.disk).finish()
    }
}

impl SimFs {
    /// A fresh disk whose power losses are drawn from `seed`, each sync costing `sync_cost`.
    pub fn new(seed: u64, sync_cost: Nanos) -> SimFs {
        let timing = Timing::default();
        timing.sync_cost.store(sync_cost, Ordering::Relaxed);
        SimFs {
            disk: MemFs::new(seed),
            timing: Arc::new(timing),
        }
    }

    /// The disk, for faults.
    pub fn disk(&self) -> &MemFs {
        &self.disk
    }

    /// Sets what a sync costs from now on (a slow disk, or a normal one again).
    pub fn set_sync_cost(&self, cost: Nanos) {
        self.timing.sync_cost.store(cost, Ordering::Relaxed);
    }

    /// The time spent on syncs since the last call.
    pub fn take_busy(&self) -> Nanos {
        self.timing.busy.swap(0, Ordering::Relaxed)
    }

    /// How many calls failed since the last call (a fault that hit: the node may yet stop
    /// over it, even once the fault has ended).
    pub fn take_failures(&self) -> u64 {
        self.timing.failures.swap(0, Ordering::Relaxed)
    }

    /// Whether a call failed since the last [`SimFs::take_failures`].
    pub fn failed(&self) -> bool {
        self.timing.failures.load(Ordering::Relaxed) > 0
    }

    /// `result`, counted if it is a failure.
    fn count<T>(&self, result: io::Result<T>) -> io::Result<T> {
        if result.is_err() {
            self.timing.failures.fetch_add(1, Ordering::Relaxed);
        }
        result
    }

    fn synced(&self) {
        let cost = self.timing.sync_cost.load(Ordering::Relaxed);
        self.timing.busy.fetch_add(cost, Ordering::Relaxed);
    }
}

/// A [`SimFs`] file.
struct SimFile {
    inner: Box<dyn DiskFile>,
    fs: SimFs,
}

impl fmt::Debug for SimFile {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        self.inner.fmt(f)
    }
}

impl DiskFile for SimFile {
    fn write_all_at(&mut self, buf: &[u8], offset: u64) -> io::Result<()> {
        self.fs.count(self.inner.write_all_at(buf, offset))
    }

    fn set_len(&mut self, len: u64) -> io::Result<()> {
        self.fs.count(self.inner.set_len(len))
    }

    fn size(&self) -> io::Result<u64> {
        self.inner.size()
    }

    fn sync_data(&mut self) -> io::Result<()> {
        self.fs.synced();
        self.fs.count(self.inner.sync_data())
    }
}

impl FileSystem for SimFs {
    fn create(&self, path: &Path) -> io::Result<Box<dyn DiskFile>> {
        let inner = self.count(self.disk.create(path))?;
        Ok(Box::new(SimFile {
            inner,
            fs: self.clone(),
        }))
    }

    fn open(&self, path: &Path) -> io::Result<Box<dyn DiskFile>> {
        let inner = self.disk.open(path)?;
        Ok(Box::new(SimFile {
            inner,
            fs: self.clone(),
        }))
    }

    fn open_direct(&self, path: &Path) -> io::Result<Option<(Box<dyn DiskFile>, usize)>> {
        let opened = self.disk.open_direct(path)?;
        Ok(opened.map(|(inner, align)| {
            let file: Box<dyn DiskFile> = Box::new(SimFile {
                inner,
                fs: self.clone(),
            });
            (file, align)
        }))
    }

    fn read(&self, path: &Path) -> io::Result<Vec<u8>> {
        self.disk.read(path)
    }

    fn open_read(&self, path: &Path) -> io::Result<(Box<dyn Read + Send>, u64)> {
        self.disk.open_read(path)
    }

    fn exists(&self, path: &Path) -> io::Result<bool> {
        self.disk.exists(path)
    }

    fn list_dir(&self, dir: &Path) -> io::Result<Vec<String>> {
        self.disk.list_dir(dir)
    }

    fn rename(&self, from: &Path, to: &Path) -> io::Result<()> {
        self.count(self.disk.rename(from, to))
    }

    fn remove_file(&self, path: &Path) -> io::Result<()> {
        self.count(self.disk.remove_file(path))
    }

    fn create_dir_all(&self, dir: &Path) -> io::Result<()> {
        self.disk.create_dir_all(dir)
    }

    fn sync_dir(&self, dir: &Path) -> io::Result<()> {
        self.synced();
        self.count(self.disk.sync_dir(dir))
    }

    fn try_lock(&self, path: &Path) -> io::Result<LockGuard> {
        self.disk.try_lock(path)
    }
}
