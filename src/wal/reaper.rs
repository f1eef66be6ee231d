//! Removing released segments off the caller's thread. On a real disk, unlinking a 64 MiB
//! segment costs the file system about 20 ms (it frees the file's extents), and a snapshot of
//! big values releases several at once: on the raft thread that stalled every write for
//! 130–250 ms once per snapshot (64 KiB values). A released segment is never read again, and
//! its removal need not be durable (one left behind by a crash is released again after the next
//! start, as after a crash part way through a removal on the caller's thread), so nothing waits for it.

use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::sync::mpsc::{self, Sender};
use std::thread::JoinHandle;

use crate::disk::{FileSystem, SharedFs};

/// One folder's removals, in order, on a thread of its own started at the first one.
#[derive(Debug, Default)]
pub(super) struct Reaper {
    work: Option<(Sender<Vec<PathBuf>>, JoinHandle<()>)>,
}

impl Reaper {
    /// Queues `paths` for removal, oldest first (so that a crash part way leaves, as on the
    /// caller's thread, a consecutive run of segments), then a sync of `dir`.
    pub(super) fn remove(&mut self, fs: &SharedFs, dir: &Path, paths: Vec<PathBuf>) {
        if self.work.is_none() {
            let (tx, rx) = mpsc::channel::<Vec<PathBuf>>();
            let (its_fs, its_dir) = (Arc::clone(fs), dir.to_path_buf());
            let spawned = std::thread::Builder::new()
                .name("wal-reaper".into())
                .spawn(move || {
                    for batch in rx {
                        remove_in_order(&*its_fs, &its_dir, batch);
                    }
                });
            match spawned {
                Ok(thread) => self.work = Some((tx, thread)),
                Err(err) => {
                    tracing::warn!(%err, "cannot start the WAL's reaper thread; removing here");
                    return remove_in_order(&**fs, dir, paths);
                }
            }
        }
        let (tx, _) = self.work.as_ref().expect("started just above");
        if let Err(mpsc::SendError(paths)) = tx.send(paths) {
            // The thread died (it never panics on its own): do it here.
            remove_in_order(&**fs, dir, paths);
        }
    }

    /// Returns once every removal queued so far is done.
    pub(super) fn wait(&mut self) {
        if let Some((tx, thread)) = self.work.take() {
            drop(tx);
            if thread.join().is_err() {
                tracing::warn!("the WAL's reaper thread panicked");
            }
        }
    }
}

impl Drop for Reaper {
    // So that a WAL opened again in the same process never lists a segment that is about to go.
    fn drop(&mut self) {
        self.wait();
    }
}

/// Removes `paths` oldest first, stopping at the first failure (so the ones left stay
/// consecutive), then syncs `dir`. Failures only leave disk space in use until the next
/// release or start, so they are logged, naming the file.
fn remove_in_order(fs: &dyn FileSystem, dir: &Path, paths: Vec<PathBuf>) {
    let n = paths.len();
    for path in paths {
        if let Err(err) = fs.remove_file(&path) {
            tracing::warn!(path = %path.display(), %err, "cannot remove a released WAL segment; it is released again after the next start");
            break;
        }
    }
    if let Err(err) = fs.sync_dir(dir) {
        tracing::warn!(dir = %dir.display(), %err, "cannot sync the WAL folder after removing segments");
    }
    tracing::debug!(removed = n, "released WAL segments removed");
}
