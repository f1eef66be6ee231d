//! Removing files off the caller's thread. On a real disk, unlinking a big file costs the file
//! system time in proportion to its extents (about 20 ms for a 64 MiB WAL segment, 250 ms for a
//! 1 GiB snapshot here), and the raft thread must not wait for it: a snapshot of 64 KiB values
//! released several segments at once and stalled every write for 130–165 ms. What is removed
//! this way is never read again, and its removal need not be durable before anyone goes on (a
//! file a crash left behind is removed again after the next start), so nothing waits for it.
//! Whether to use it is the file system's call ([`super::FileSystem::background_removal`]): an
//! in-memory disk keeps removals on the caller's thread, so a simulation stays deterministic.

use std::sync::mpsc::{self, Sender};
use std::thread::JoinHandle;

/// A removal to run: it logs its own failures, naming the file.
pub type Chore = Box<dyn FnOnce() + Send + 'static>;

/// One folder's removals, run in the order given on a thread of its own, started at the first.
#[derive(Debug)]
pub struct Reaper {
    thread_name: &'static str,
    work: Option<(Sender<Chore>, JoinHandle<()>)>,
}

impl Reaper {
    /// A reaper whose thread, once started, is called `thread_name`.
    pub fn new(thread_name: &'static str) -> Reaper {
        Reaper {
            thread_name,
            work: None,
        }
    }

    /// Runs `chore` on the reaper's thread after every chore queued before it; on the caller's
    /// thread if no thread can be started.
    pub fn run(&mut self, chore: Chore) {
        if self.work.is_none() {
            let (tx, rx) = mpsc::channel::<Chore>();
            let spawned = std::thread::Builder::new()
                .name(self.thread_name.into())
                .spawn(move || {
                    for chore in rx {
                        chore();
                    }
                });
            match spawned {
                Ok(thread) => self.work = Some((tx, thread)),
                Err(err) => {
                    tracing::warn!(
                        %err,
                        thread = self.thread_name,
                        "cannot start a thread to remove files; removing them here"
                    );
                    return chore();
                }
            }
        }
        let (tx, _) = self.work.as_ref().expect("started just above");
        if let Err(mpsc::SendError(chore)) = tx.send(chore) {
            // The thread died (a chore panicked): do it here.
            chore();
        }
    }

    /// Returns once every chore queued so far is done.
    pub fn wait(&mut self) {
        if let Some((tx, thread)) = self.work.take() {
            drop(tx);
            if thread.join().is_err() {
                tracing::warn!(thread = self.thread_name, "a file removal panicked");
            }
        }
    }
}

impl Drop for Reaper {
    // So that a folder opened again in the same process never lists a file that is about to go.
    fn drop(&mut self) {
        self.wait();
    }
}

#[cfg(test)]
mod tests {
    use std::sync::{Arc, Mutex};

    use super::*;

    /// Chores run in the order given, off the caller's thread, and `wait` returns only once
    /// all are done; after it the reaper starts a thread again.
    #[test]
    fn chores_run_in_order_off_the_callers_thread() {
        let done = Arc::new(Mutex::new(Vec::new()));
        let mut reaper = Reaper::new("test-reaper");
        for round in 0..2 {
            for i in 0..5 {
                let done = Arc::clone(&done);
                reaper.run(Box::new(move || {
                    let name = std::thread::current().name().map(str::to_string);
                    done.lock().expect("no chore panics").push((i, name));
                }));
            }
            reaper.wait();
            let got = std::mem::take(&mut *done.lock().expect("no chore panics"));
            let want: Vec<_> = (0..5)
                .map(|i| (i, Some("test-reaper".to_string())))
                .collect();
            assert_eq!(got, want, "round {round}");
        }
    }
}
