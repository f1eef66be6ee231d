//! The replicated state machine: an in-memory map from key to value, fed in log order by the
//! raft node through its [`Applier`]. It is the last box of the flow: committed entries (and
//! snapshots from the leader) arrive here; once a batch is applied, the clients waiting on it
//! are answered. Small batches are applied on the raft thread itself when nothing is queued;
//! the rest (snapshots to save or restore, big batches, whatever comes while this thread is
//! busy) goes over the apply channel to a thread of its own. Reads that went through ReadIndex
//! take the same path, so they are answered only after every entry up to their read index is
//! in the map.
//!
//! - `map`: the map itself, sharded, a key and its value in one allocation.
//! - `codec`: the snapshot data format, written and read as a stream.
//! - `capture`: snapshots written while entries go on being applied.

mod capture;
mod codec;
mod map;

use std::sync::atomic::{AtomicBool, AtomicU64, AtomicUsize, Ordering};
use std::sync::mpsc::{Receiver, Sender, channel};
use std::sync::{Arc, RwLock, RwLockReadGuard, RwLockWriteGuard};
use std::thread::JoinHandle;

use bytes::Bytes;
use raft::eraftpb::{Entry, EntryType, SnapshotMetadata};
use serde::{Deserialize, Serialize};
use tokio::sync::oneshot;

use crate::incarnation::Incarnation;
use crate::membership::Members;
use crate::proposal::{self, Payload, Sessions};
use crate::request::Responder;
use crate::snapshotter::{OpenedSnapshot, Snapshotter};
pub use codec::{
    decode_cluster_state, decode_snapshot, encode_snapshot, read_cluster_state, read_snapshot,
    snapshot_len, write_snapshot,
};
pub use map::{Map, SHARDS};

/// What a normal log entry asks the state machine to do.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub enum Command {
    /// Set `key` to `value`.
    Put {
        /// The key: the request path, percent-decoded.
        key: String,
        /// The request body: any bytes. Encoded as a string is (a length, then the bytes), so
        /// entries written when values had to be UTF-8 read the same.
        value: Bytes,
    },
}

impl Command {
    /// The bytes that go into `Entry.data`.
    pub fn encode(&self) -> Vec<u8> {
        bincode::serde::encode_to_vec(self, bincode::config::standard())
            .expect("encoding a Command into a Vec cannot fail: no I/O, no size limit")
    }

    /// Decodes the bytes [`Command::encode`] wrote.
    pub fn decode(data: &[u8]) -> Result<Command, bincode::error::DecodeError> {
        // Borrowed first (variant, key, value: Put's layout): each length is checked against
        // `data` there, where the owned decode would allocate whatever a length claims.
        bincode::serde::borrow_decode_from_slice::<(u32, &str, &[u8]), _>(
            data,
            bincode::config::standard(),
        )?;
        bincode::serde::decode_from_slice(data, bincode::config::standard()).map(|(c, _)| c)
    }

    /// The command in a normal entry's data, behind its identity if it has one (see
    /// [`crate::proposal`]); `None` for an entry that is no command (a session registration,
    /// a fence, a new leader's empty entry).
    pub fn from_entry(data: &[u8]) -> Result<Option<Command>, String> {
        match proposal::decode(data).map_err(|e| e.to_string())? {
            Payload::Register { .. } | Payload::Fence { .. } => Ok(None),
            Payload::Plain([]) => Ok(None),
            Payload::Proposal { command, .. } | Payload::Plain(command) => Command::decode(command)
                .map(Some)
                .map_err(|e| e.to_string()),
        }
    }
}

/// The key and value of a PUT in a normal entry's data, borrowed from it (what
/// [`Command::from_entry`] reads, without a copy); `None` for an entry that is no command.
pub(crate) fn put_of(data: &[u8]) -> Result<Option<(&str, &[u8])>, String> {
    let command = match proposal::decode(data).map_err(|e| e.to_string())? {
        Payload::Register { .. } | Payload::Fence { .. } | Payload::Plain([]) => return Ok(None),
        Payload::Proposal { command, .. } | Payload::Plain(command) => command,
    };
    // Put's layout: its variant, the key, the value (a string's encoding is its bytes').
    let ((variant, key, value), _) = bincode::serde::borrow_decode_from_slice::<
        (u32, &str, &[u8]),
        _,
    >(command, bincode::config::standard())
    .map_err(|e| e.to_string())?;
    if variant != 0 {
        return Err(format!("unknown command {variant}"));
    }
    Ok(Some((key, value)))
}

/// What a snapshot holds beside the map: the state the raft node keeps in log order.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct ClusterState {
    /// The members and their peer URLs.
    pub members: Members,
    /// The exactly-once table.
    pub sessions: Sessions,
    /// Which run of the cluster this state belongs to (see [`crate::incarnation`]).
    pub incarnation: Incarnation,
}

/// A message from the raft node to the state machine, in log order.
pub enum Apply {
    /// Committed entries to apply, then the proposals among them to answer.
    Entries {
        /// Committed entries that take effect, in index order (conf changes and empty entries
        /// are skipped here; the node has already applied conf changes to raft, and left out
        /// copies of proposals applied before).
        entries: Vec<Entry>,
        /// The index of the last committed entry of the batch (kept or left out).
        last: u64,
        /// Waiters of proposals made on this node, answered once the batch is applied.
        done: Vec<Responder>,
    },
    /// Replace the whole state with a snapshot received from the leader.
    Restore {
        /// The snapshot's index.
        index: u64,
        /// Where its application data is (see [`encode_snapshot`]).
        from: RestoreFrom,
        /// Waiters of proposals the snapshot shows applied, answered once it is restored.
        done: Vec<Responder>,
    },
    /// Linearizable reads whose read index is ≤ everything sent before this message.
    Reads(Vec<Responder>),
    /// Save a snapshot of the state as of everything sent before this message, streaming
    /// the map into the snapshot file (never a second copy of the state in memory).
    Snapshot {
        /// Membership and sessions as of the same index, stored beside the map.
        state: ClusterState,
        /// Term, index and conf state of the snapshot.
        meta: SnapshotMetadata,
        /// Where it is saved.
        snapshotter: Arc<Snapshotter>,
        /// Told once the file is durable, with the bytes of data it holds (or why it is not).
        reply: oneshot::Sender<Result<u64, crate::snapshotter::Error>>,
    },
}

/// Where the data of a snapshot to restore is.
pub enum RestoreFrom {
    /// In memory: a snapshot that travelled inline (an in-memory network's).
    Bytes(Bytes),
    /// In its file, installed by the node: streamed from there into the map, so the data is
    /// never whole in memory. Opened by the node when it installed the snapshot, not by name
    /// here: see [`crate::raft_node`]'s `install_snapshot`.
    File(OpenedSnapshot),
}

/// A cheap, cloneable handle on the map, for readers (the REST API) and for tests.
#[derive(Clone, Default)]
pub struct KvStore {
    map: Arc<RwLock<Map>>,
    applied: Arc<AtomicU64>,
    /// Test seam: once set, the state machine's thread panics on the next message it takes,
    /// as a bug there would make it (see [`KvStore::panic_on_its_thread`]).
    #[cfg(test)]
    panic_on_its_thread: Arc<AtomicBool>,
}

impl KvStore {
    /// A store holding `map`, as of log index `applied`.
    pub fn new(map: Map, applied: u64) -> KvStore {
        KvStore {
            map: Arc::new(RwLock::new(map)),
            applied: Arc::new(AtomicU64::new(applied)),
            #[cfg(test)]
            panic_on_its_thread: Arc::default(),
        }
    }

    /// Test seam: the state machine's thread panics on the next message it takes, so tests
    /// can check that the node hears of a thread that unwound as of one that returned.
    #[cfg(test)]
    pub(crate) fn panic_on_its_thread(&self) {
        self.panic_on_its_thread.store(true, Ordering::Release);
    }

    /// The value of `key`, from the local map (callers decide whether a ReadIndex comes first).
    pub fn get(&self, key: &str) -> Option<Bytes> {
        self.read().get(key).map(Bytes::copy_from_slice)
    }

    /// Number of keys.
    pub fn len(&self) -> usize {
        self.read().len()
    }

    /// Whether the map is empty.
    pub fn is_empty(&self) -> bool {
        self.read().is_empty()
    }

    /// Index of the last entry applied to the map.
    pub fn applied_index(&self) -> u64 {
        self.applied.load(Ordering::Acquire)
    }

    /// Starts the apply loop on its own thread, and returns the [`Applier`] that feeds it.
    /// The loop ends when the applier is dropped.
    pub fn spawn_apply_loop(&self, node_id: u64) -> std::io::Result<(Applier, JoinHandle<()>)> {
        // Unbounded: the raft thread must never wait on it. While this thread writes a big
        // snapshot, a bounded queue would fill and stop the raft thread's ticks and
        // heartbeats, and the others would hold an election. What queues meanwhile is what
        // raft commits in that time, which its own flow control bounds.
        let (tx, rx) = channel();
        let backlog = Arc::new(AtomicUsize::new(0));
        let stopped = Arc::new(AtomicBool::new(false));
        let kv = self.clone();
        let (thread_backlog, thread_stopped) = (backlog.clone(), stopped.clone());
        let handle = std::thread::Builder::new()
            .name(format!("apply-{node_id}"))
            .spawn(move || kv.apply_loop(rx, &thread_backlog, &thread_stopped))?;
        let applier = Applier {
            tx: Some(tx),
            kv: self.clone(),
            backlog,
            stopped,
        };
        Ok((applier, handle))
    }

    fn apply_loop(self, rx: Receiver<Apply>, backlog: &AtomicUsize, stopped: &AtomicBool) {
        // Set however this thread ends: a snapshot it cannot restore returns below, a bug
        // unwinds through here. The backlog never drops back to zero then: nothing more is
        // applied inline, and the next send finds the channel closed. The flag tells the node
        // before any send: an idle node would otherwise serve its stale map until one. (Also
        // set when the applier is dropped and the loop ends; nobody reads it then.)
        let _stops = StopsOnExit(stopped);
        while let Ok(msg) = rx.recv() {
            #[cfg(test)]
            if self.panic_on_its_thread.load(Ordering::Acquire) {
                panic!("injected: a bug on the state machine's thread");
            }
            if !self.handle(msg, true) {
                return;
            }
            // Release: whoever sees the backlog drop also sees what this message did to the map.
            backlog.fetch_sub(1, Ordering::Release);
        }
    }

    /// Carries out one message; `false` when applying must stop for good. `threaded`: this
    /// is the state machine's thread, and a snapshot may be written by a thread of its own
    /// while applies go on; otherwise (everything on one thread) it is written at once.
    fn handle(&self, msg: Apply, threaded: bool) -> bool {
        match msg {
            Apply::Entries {
                entries,
                last,
                done,
            } => {
                self.apply_entries(&entries, last);
                for waiter in done {
                    // The client may have timed out and gone: nothing to answer then.
                    let _ = waiter.send(Ok(()));
                }
            }
            Apply::Restore { index, from, done } => match restore(from) {
                Ok(map) => {
                    let mut current = self.write();
                    if let Some(capture) = current.capture.take() {
                        // A snapshot still being written needs the state it began with.
                        capture.take_all(&current);
                    }
                    let old = std::mem::replace(&mut *current, map);
                    // Free the old map after the lock is released: dropping a million
                    // pairs takes a while, and readers wait on the lock.
                    drop(current);
                    drop(old);
                    self.applied.store(index, Ordering::Release);
                    tracing::debug!(index, "state restored from snapshot");
                    for waiter in done {
                        let _ = waiter.send(Ok(()));
                    }
                }
                Err(err) => {
                    // The snapshot's checksum was checked when it arrived; a failure here
                    // means a bug, a version mismatch or a disk gone bad since, and applying
                    // entries on top of a stale map would diverge silently.
                    tracing::error!(index, %err, "cannot restore the snapshot; stopping apply");
                    return false;
                }
            },
            Apply::Reads(waiters) => {
                for waiter in waiters {
                    let _ = waiter.send(Ok(()));
                }
            }
            Apply::Snapshot {
                state,
                meta,
                snapshotter,
                reply,
            } => {
                if threaded {
                    capture::start(self, &state, &meta, &snapshotter, reply);
                } else {
                    let map = self.read();
                    let len = snapshot_len(&state, &map);
                    let saved =
                        snapshotter.save_with(&meta, len, |w| write_snapshot(w, &state, &map));
                    drop(map);
                    let _ = reply.send(saved.map(|()| len));
                }
            }
        }
        true
    }

    fn apply_entries(&self, entries: &[Entry], last: u64) {
        let mut map = self.write();
        for entry in entries {
            if entry.get_entry_type() != EntryType::EntryNormal || entry.data.is_empty() {
                continue;
            }
            match put_of(&entry.data) {
                Ok(Some((key, value))) => map.insert(key, value),
                Ok(None) => {}
                // Every node skips the same entry, so the replicas stay identical.
                Err(err) => {
                    tracing::error!(index = entry.index, %err, "skipping undecodable entry")
                }
            }
        }
        drop(map);
        self.applied.store(last, Ordering::Release);
    }

    /// Ends `capture` (its snapshot is written, or failed).
    fn end_capture(&self, capture: &Arc<map::Capture>) {
        let mut map = self.write();
        if map
            .capture
            .as_ref()
            .is_some_and(|c| Arc::ptr_eq(c, capture))
        {
            map.capture = None;
        }
    }

    fn read(&self) -> RwLockReadGuard<'_, Map> {
        // A panic while holding the lock can only come from a bug in this module; the map
        // is still consistent (each insert is atomic), so keep serving.
        self.map
            .read()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
    }

    fn write(&self) -> RwLockWriteGuard<'_, Map> {
        self.map
            .write()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
    }
}

/// Raises the applier's `stopped` flag when dropped, which the state machine's thread's end
/// does whether it returns or unwinds.
struct StopsOnExit<'a>(&'a AtomicBool);

impl Drop for StopsOnExit<'_> {
    fn drop(&mut self) {
        self.0.store(true, Ordering::Release);
    }
}

/// Reads the map of a snapshot to restore.
fn restore(from: RestoreFrom) -> Result<Map, String> {
    match from {
        RestoreFrom::Bytes(data) => decode_snapshot(&data)
            .map(|(_, map)| map)
            .map_err(|e| e.to_string()),
        RestoreFrom::File(file) => file
            .read_with(read_snapshot)
            .map(|(_, (_, map))| map)
            .map_err(|e| e.to_string()),
    }
}

/// Entries at most this many are applied on the raft thread itself when the state machine's
/// thread has nothing queued; larger batches (a catch-up, a replay) go to that thread, so the
/// raft thread keeps ticking.
const INLINE_ENTRIES: usize = 256;

/// The raft node's end of the apply channel. Small batches are applied at once on the
/// caller's thread when nothing is queued ahead of them: waking the state machine's thread
/// for a handful of entries costs more than applying them, and a client waits on it. Anything
/// else (a snapshot to save or restore, big batches, or whatever arrives while the thread is
/// busy) goes through the channel, so everything is still applied in log order.
pub struct Applier {
    /// The state machine's thread; `None`: everything is applied on the caller's thread.
    tx: Option<Sender<Apply>>,
    kv: KvStore,
    /// Messages sent to the thread and not yet handled by it.
    backlog: Arc<AtomicUsize>,
    /// Set once applying has stopped for good (see [`Applier::check`]).
    stopped: Arc<AtomicBool>,
}

/// The state machine's thread has stopped (it could not decode a snapshot, or it panicked).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ApplyStopped;

impl Applier {
    /// An applier with no thread of its own: everything is applied on the caller's thread, at
    /// once (a simulation runs every node on one thread; the driver chooses).
    pub fn inline(kv: KvStore) -> Applier {
        Applier {
            tx: None,
            kv,
            backlog: Arc::default(),
            stopped: Arc::default(),
        }
    }

    /// `Err` once applying has stopped for good (a snapshot that could not be restored, a
    /// panic on the state machine's thread), without sending anything: the node checks it
    /// every round, so an idle node stops within a tick instead of serving a stale map until
    /// its next write or read.
    pub fn check(&self) -> Result<(), ApplyStopped> {
        if self.stopped.load(Ordering::Acquire) {
            Err(ApplyStopped)
        } else {
            Ok(())
        }
    }

    /// Applies or queues `msg`, in order with everything sent before it.
    pub fn send(&self, msg: Apply) -> Result<(), ApplyStopped> {
        let small = match &msg {
            Apply::Entries { entries, .. } => entries.len() <= INLINE_ENTRIES,
            Apply::Reads(_) => true,
            Apply::Restore { .. } | Apply::Snapshot { .. } => false,
        };
        // Only this thread adds to the backlog, so zero stays zero until the send below:
        // nothing is queued that this message could overtake.
        let Some(tx) = self
            .tx
            .as_ref()
            .filter(|_| !small || self.backlog.load(Ordering::Acquire) > 0)
        else {
            return if self.kv.handle(msg, false) {
                Ok(())
            } else {
                self.stopped.store(true, Ordering::Release);
                Err(ApplyStopped)
            };
        };
        self.backlog.fetch_add(1, Ordering::AcqRel);
        tx.send(msg).map_err(|_| {
            self.backlog.fetch_sub(1, Ordering::AcqRel);
            ApplyStopped
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    pub(super) fn put_entry(index: u64, key: &str, value: impl AsRef<[u8]>) -> Entry {
        Entry {
            index,
            term: 1,
            data: Command::Put {
                key: key.into(),
                value: Bytes::copy_from_slice(value.as_ref()),
            }
            .encode()
            .into(),
            ..Default::default()
        }
    }

    /// While the state machine's thread has work queued (here, a snapshot to write), small
    /// batches must queue behind it rather than be applied at once: the snapshot holds
    /// exactly the state at its index.
    #[test]
    fn inline_applies_never_overtake_queued_work() {
        let kv = KvStore::default();
        let (applier, handle) = kv.spawn_apply_loop(1).expect("an apply thread");
        let dir = tempfile::TempDir::new().expect("temp dir");
        let snapshotter = Arc::new(Snapshotter::new(dir.path(), 5).expect("snapshotter"));
        for round in 1..=20u64 {
            let index = round * 2 - 1;
            applier
                .send(Apply::Entries {
                    entries: vec![put_entry(index, "/a", format!("{index}"))],
                    last: index,
                    done: vec![],
                })
                .expect("applied");
            let (reply, saved) = oneshot::channel();
            applier
                .send(Apply::Snapshot {
                    state: ClusterState::default(),
                    meta: SnapshotMetadata {
                        index,
                        term: 1,
                        ..Default::default()
                    },
                    snapshotter: snapshotter.clone(),
                    reply,
                })
                .expect("queued");
            applier
                .send(Apply::Entries {
                    entries: vec![put_entry(index + 1, "/a", "later")],
                    last: index + 1,
                    done: vec![],
                })
                .expect("applied or queued");
            saved.blocking_recv().expect("answered").expect("saved");
            let data = snapshotter.load(1, index).expect("snapshot file").data;
            let (_, map) = decode_snapshot(&data).expect("decodes");
            assert_eq!(map.get("/a"), Some(format!("{index}").as_bytes()));
        }
        drop(applier);
        handle.join().expect("apply thread ends cleanly");
        assert_eq!(kv.get("/a"), Some("later".into()));
        assert_eq!(kv.applied_index(), 40);
    }

    /// A PUT's value is any bytes, and a text value is encoded as when `Command::Put`'s value
    /// was a `String`: entries in the WAL of an older build read the same.
    #[test]
    fn a_put_of_any_bytes_decodes_and_old_entries_still_do() {
        /// `Command` as older builds had it.
        #[derive(Serialize)]
        enum OldCommand {
            Put { key: String, value: String },
        }
        let old = OldCommand::Put {
            key: "/k".into(),
            value: "vé".into(),
        };
        let old = bincode::serde::encode_to_vec(&old, bincode::config::standard())
            .expect("encoding into a Vec");
        let new = Command::Put {
            key: "/k".into(),
            value: Bytes::from("vé"),
        };
        assert_eq!(Command::decode(&old).expect("an old entry decodes"), new);
        assert_eq!(new.encode(), old, "a text value is encoded as before");
        // Pinned as well: a change of bincode's or bytes' encoding would change both sides
        // above, and still break every WAL written before it (review 104).
        assert_eq!(
            old, b"\x00\x02/k\x03v\xc3\xa9",
            "the variant, then each length and bytes"
        );

        let binary = Command::Put {
            key: "/bin".into(),
            value: Bytes::from_static(b"\xff\x00a\xe2\x82"),
        };
        let data = binary.encode();
        assert_eq!(Command::decode(&data).expect("decodes"), binary);
        assert_eq!(
            put_of(&data),
            Ok(Some(("/bin", &b"\xff\x00a\xe2\x82"[..]))),
            "the borrowed read agrees"
        );
        let kv = KvStore::default();
        kv.apply_entries(&[put_entry(1, "/bin", b"\xff\x00a\xe2\x82")], 1);
        assert_eq!(
            kv.get("/bin"),
            Some(Bytes::from_static(b"\xff\x00a\xe2\x82")),
            "and is applied as it is"
        );
    }

    #[test]
    fn apply_loop_applies_in_order_then_answers() {
        let kv = KvStore::default();
        let (tx, handle) = kv.spawn_apply_loop(1).expect("an apply thread");
        let (done_tx, done_rx) = oneshot::channel();
        tx.send(Apply::Entries {
            entries: vec![
                put_entry(1, "/a", "1"),
                Entry::default(),
                put_entry(3, "/a", "2"),
            ],
            last: 3,
            done: vec![done_tx],
        })
        .expect("apply loop is running");
        done_rx.blocking_recv().expect("answered").expect("ok");
        assert_eq!(kv.get("/a"), Some("2".into()));
        assert_eq!(kv.applied_index(), 3);

        let dir = tempfile::TempDir::new().expect("temp dir");
        let snapshotter = Arc::new(Snapshotter::new(dir.path(), 5).expect("snapshotter"));
        let meta = SnapshotMetadata {
            index: 3,
            term: 1,
            ..Default::default()
        };
        let (snap_tx, snap_rx) = oneshot::channel();
        tx.send(Apply::Snapshot {
            state: ClusterState::default(),
            meta,
            snapshotter: snapshotter.clone(),
            reply: snap_tx,
        })
        .expect("apply loop is running");
        snap_rx
            .blocking_recv()
            .expect("answered")
            .expect("snapshot saved");
        let data = snapshotter.load(1, 3).expect("snapshot file").data;
        tx.send(Apply::Entries {
            entries: vec![put_entry(4, "/b", "x")],
            last: 4,
            done: vec![],
        })
        .expect("apply loop is running");
        tx.send(Apply::Restore {
            index: 3,
            from: RestoreFrom::Bytes(data),
            done: vec![],
        })
        .expect("apply loop is running");
        drop(tx);
        handle.join().expect("apply thread ends cleanly");
        assert_eq!(kv.get("/b"), None, "restore replaced the map");
        assert_eq!(kv.get("/a"), Some("2".into()));
        assert_eq!(kv.applied_index(), 3);
    }

    /// A snapshot the state machine cannot restore stops applying for good, and the applier
    /// says so with nothing more sent (an idle node learns it at its next tick, not at its
    /// next write or read), on the state machine's thread and inline alike.
    #[test]
    fn a_restore_that_fails_is_told_without_another_send() {
        let garbage = || Apply::Restore {
            index: 7,
            from: RestoreFrom::Bytes(Bytes::from_static(b"not a snapshot")),
            done: vec![],
        };
        let kv = KvStore::default();
        let (applier, handle) = kv.spawn_apply_loop(1).expect("an apply thread");
        assert_eq!(applier.check(), Ok(()));
        applier.send(garbage()).expect("queued: the thread runs");
        handle
            .join()
            .expect("the thread stops on it, without panicking");
        assert_eq!(applier.check(), Err(ApplyStopped), "on its thread");

        let inline = Applier::inline(KvStore::default());
        assert_eq!(inline.send(garbage()), Err(ApplyStopped));
        assert_eq!(inline.check(), Err(ApplyStopped), "inline");
    }

    /// A panic on the state machine's thread (a bug) stops applying for good as well, and the
    /// applier says so with nothing more sent: the thread's end is told however it ends.
    #[test]
    fn a_panic_on_the_state_machines_thread_is_told_without_another_send() {
        let kv = KvStore::default();
        let (applier, handle) = kv.spawn_apply_loop(1).expect("an apply thread");
        kv.panic_on_its_thread();
        // Too many entries to apply inline: they go to the thread, which would apply them.
        let entries: Vec<Entry> = (1..=INLINE_ENTRIES as u64 + 1)
            .map(|i| put_entry(i, "/k", "v"))
            .collect();
        let last = entries.len() as u64;
        applier
            .send(Apply::Entries {
                entries,
                last,
                done: vec![],
            })
            .expect("queued: the thread runs");
        assert!(handle.join().is_err(), "the thread panicked");
        assert_eq!(applier.check(), Err(ApplyStopped));
    }
}
