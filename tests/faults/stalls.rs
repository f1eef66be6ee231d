//! The machine's own hiccups, measured while a run lasts: a thread that sleeps a little and
//! syncs a small file in the run folder, over and over, and notes every sleep or sync that took
//! far longer than it should.
//!
//! The runs share a two-core machine with builds and other tests. A sync that takes a second
//! there holds up every node's WAL (a vote or an acknowledgement waits for it), and a node
//! starved of the CPU misses its ticks; a request to a node no fault touched can then end
//! unknown for reasons outside the store. The report puts such stalls next to the operations
//! they may explain, so a reader can tell the machine's hiccups from the store's bugs. They
//! excuse nothing: the rules are judged the same either way.

use std::fs::OpenOptions;
use std::os::unix::fs::FileExt;
use std::path::Path;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

/// A sleep or a sync longer than this by this much is a stall (the nodes' heartbeat is 50 ms,
/// their shortest election timeout 500 ms).
const STALL: Duration = Duration::from_millis(200);
/// How long the probe sleeps between two syncs.
const NAP: Duration = Duration::from_millis(50);

/// One stall the probe saw.
#[derive(Clone, Debug)]
pub struct Stall {
    /// When it began, in nanoseconds since the run's epoch.
    pub at_ns: u64,
    /// How long it lasted.
    pub took: Duration,
    /// `disk sync` or `scheduling` (a sleep that overran).
    pub what: &'static str,
}

impl Stall {
    /// Whether it overlaps `from_ns..=to_ns`.
    pub fn overlaps(&self, from_ns: u64, to_ns: u64) -> bool {
        let end = self.at_ns + u64::try_from(self.took.as_nanos()).unwrap_or(u64::MAX);
        self.at_ns <= to_ns && end >= from_ns
    }

    /// `disk sync took 1.234 s at 4.567 s`.
    pub fn describe(&self) -> String {
        format!(
            "{} took {:.3} s at {:.3} s",
            self.what,
            self.took.as_secs_f64(),
            self.at_ns as f64 / 1e9
        )
    }
}

/// The probe's thread; [`StallProbe::finish`] stops it and returns what it saw.
pub struct StallProbe {
    stop: Arc<AtomicBool>,
    thread: JoinHandle<Vec<Stall>>,
}

impl StallProbe {
    /// Starts probing with a file in `dir`; times are since `epoch`.
    pub fn start(dir: &Path, epoch: Instant) -> StallProbe {
        let path = dir.join("stall-probe");
        let stop = Arc::new(AtomicBool::new(false));
        let stopped = stop.clone();
        let thread = std::thread::Builder::new()
            .name("stall-probe".into())
            .spawn(move || {
                let file = OpenOptions::new()
                    .create(true)
                    .write(true)
                    .truncate(true)
                    .open(&path)
                    .unwrap_or_else(|e| panic!("creating {}: {e}", path.display()));
                let since = |t: Instant| {
                    u64::try_from(t.duration_since(epoch).as_nanos()).unwrap_or(u64::MAX)
                };
                let block = [0x5au8; 512];
                let mut stalls = Vec::new();
                while !stopped.load(Ordering::Relaxed) {
                    let slept = Instant::now();
                    std::thread::sleep(NAP);
                    let overran = slept.elapsed().saturating_sub(NAP);
                    if overran >= STALL {
                        stalls.push(Stall {
                            at_ns: since(slept + NAP),
                            took: overran,
                            what: "scheduling",
                        });
                    }
                    let synced = Instant::now();
                    // A failing write or sync is not what this probe is about: the runs
                    // themselves would fail on such a disk.
                    if file.write_all_at(&block, 0).is_ok() && file.sync_data().is_ok() {
                        let took = synced.elapsed();
                        if took >= STALL {
                            stalls.push(Stall {
                                at_ns: since(synced),
                                took,
                                what: "disk sync",
                            });
                        }
                    }
                }
                let _ = std::fs::remove_file(&path);
                stalls
            })
            .expect("spawning the stall probe");
        StallProbe { stop, thread }
    }

    /// Stops the probe; the stalls it saw, in time order.
    pub fn finish(self) -> Vec<Stall> {
        self.stop.store(true, Ordering::Relaxed);
        self.thread.join().unwrap_or_default()
    }
}
