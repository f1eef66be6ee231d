//! The replicated state machine: an in-memory map from key to value, fed in log order by the
//! raft node over the apply channel. It is the last box of the flow: committed entries (and
//! snapshots from the leader) arrive here; once a batch is applied, the clients waiting on it
//! are answered. Reads that went through ReadIndex are released through the same channel, so
//! they are answered only after every entry up to their read index is in the map.

use std::collections::HashMap;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::mpsc::{Receiver, SyncSender, sync_channel};
use std::sync::{Arc, RwLock, RwLockReadGuard, RwLockWriteGuard};
use std::thread::JoinHandle;

use bytes::Bytes;
use raft::eraftpb::{Entry, EntryType};
use serde::{Deserialize, Serialize};
use tokio::sync::oneshot;

use crate::membership::Members;
use crate::raft_node::Responder;

/// What a normal log entry asks the state machine to do.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub enum Command {
    /// Set `key` to `value`.
    Put {
        /// The key: the request path, percent-decoded.
        key: String,
        /// The request body.
        value: String,
    },
}

impl Command {
    /// The bytes that go into `Entry.data`.
    pub fn encode(&self) -> Vec<u8> {
        bincode::serde::encode_to_vec(self, bincode::config::standard())
            .expect("encoding a Command into a Vec cannot fail: no I/O, no size limit")
    }

    /// Decodes `Entry.data`.
    pub fn decode(data: &[u8]) -> Result<Command, bincode::error::DecodeError> {
        bincode::serde::decode_from_slice(data, bincode::config::standard()).map(|(c, _)| c)
    }
}

/// A message from the raft node to the state machine, in log order.
pub enum Apply {
    /// Committed entries to apply, then the proposals among them to answer.
    Entries {
        /// Committed entries in index order (conf changes and empty entries are skipped here;
        /// the node has already applied conf changes to raft).
        entries: Vec<Entry>,
        /// Waiters of proposals made on this node, answered once the batch is applied.
        done: Vec<Responder>,
    },
    /// Replace the whole state with a snapshot received from the leader.
    Restore {
        /// The snapshot's index.
        index: u64,
        /// The snapshot's application data (see [`encode_snapshot`]).
        data: Bytes,
    },
    /// Linearizable reads whose read index is ≤ everything sent before this message.
    Reads(Vec<Responder>),
    /// Serialize the state as of everything sent before this message.
    Snapshot {
        /// Membership as of the same index, stored beside the map.
        members: Members,
        /// Receives the snapshot data.
        reply: oneshot::Sender<Vec<u8>>,
    },
}

/// The state: key to value. Boxed strings rather than `String`s: 16 bytes less per entry in
/// the table and no spare capacity, which matters at a million keys. foldhash rather than
/// SipHash: hashing was a quarter of the time to load a million-key snapshot, and foldhash is
/// still seeded per map, so clients cannot aim collisions at it.
pub type Map = HashMap<Box<str>, Box<str>, foldhash::fast::RandomState>;

/// A cheap, cloneable handle on the map, for readers (the REST API) and for tests.
#[derive(Clone, Default)]
pub struct KvStore {
    map: Arc<RwLock<Map>>,
    applied: Arc<AtomicU64>,
}

impl KvStore {
    /// A store holding `map`, as of log index `applied`.
    pub fn new(map: Map, applied: u64) -> KvStore {
        KvStore {
            map: Arc::new(RwLock::new(map)),
            applied: Arc::new(AtomicU64::new(applied)),
        }
    }

    /// The value of `key`, from the local map (callers decide whether a ReadIndex comes first).
    pub fn get(&self, key: &str) -> Option<String> {
        self.read().get(key).map(|v| v.to_string())
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

    /// Starts the apply loop on its own thread. It ends when the sender is dropped.
    pub fn spawn_apply_loop(&self, node_id: u64) -> (SyncSender<Apply>, JoinHandle<()>) {
        // Bounded so that a stalled state machine slows the raft node down instead of
        // growing memory without limit.
        let (tx, rx) = sync_channel(1024);
        let kv = self.clone();
        let handle = std::thread::Builder::new()
            .name(format!("apply-{node_id}"))
            .spawn(move || kv.apply_loop(rx))
            .expect("spawning the apply thread: the OS refused a thread at start-up");
        (tx, handle)
    }

    fn apply_loop(self, rx: Receiver<Apply>) {
        while let Ok(msg) = rx.recv() {
            match msg {
                Apply::Entries { entries, done } => {
                    self.apply_entries(&entries);
                    for waiter in done {
                        // The client may have timed out and gone: nothing to answer then.
                        let _ = waiter.send(Ok(()));
                    }
                }
                Apply::Restore { index, data } => match decode_snapshot(&data) {
                    Ok((_, map)) => {
                        *self.write() = map;
                        self.applied.store(index, Ordering::Release);
                        tracing::info!(index, "state restored from snapshot");
                    }
                    Err(err) => {
                        // The node has already checked this snapshot's checksum; a decode
                        // failure here means a bug or a version mismatch, and applying
                        // entries on top of a stale map would diverge silently.
                        tracing::error!(index, %err, "cannot decode snapshot data; stopping apply");
                        return;
                    }
                },
                Apply::Reads(waiters) => {
                    for waiter in waiters {
                        let _ = waiter.send(Ok(()));
                    }
                }
                Apply::Snapshot { members, reply } => {
                    let data = encode_snapshot(&members, &self.read());
                    let _ = reply.send(data);
                }
            }
        }
    }

    fn apply_entries(&self, entries: &[Entry]) {
        let Some(last) = entries.last() else { return };
        let mut map = self.write();
        for entry in entries {
            if entry.get_entry_type() != EntryType::EntryNormal || entry.data.is_empty() {
                continue;
            }
            match Command::decode(&entry.data) {
                Ok(Command::Put { key, value }) => {
                    map.insert(key.into_boxed_str(), value.into_boxed_str());
                }
                // Every node skips the same entry, so the replicas stay identical.
                Err(err) => {
                    tracing::error!(index = entry.index, %err, "skipping undecodable entry")
                }
            }
        }
        drop(map);
        self.applied.store(last.index, Ordering::Release);
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

/// Snapshot data: the membership, then the map, both bincode. Members come first so the raft
/// node can read them without decoding the whole map.
pub fn encode_snapshot(members: &Members, map: &Map) -> Vec<u8> {
    let cfg = bincode::config::standard();
    let mut out = bincode::serde::encode_to_vec(members, cfg)
        .expect("encoding into a Vec cannot fail: no I/O, no size limit");
    bincode::serde::encode_into_std_write(map, &mut out, cfg)
        .expect("encoding into a Vec cannot fail: no I/O, no size limit");
    out
}

/// Reads the membership at the front of snapshot data.
pub fn decode_members(data: &[u8]) -> Result<Members, bincode::error::DecodeError> {
    bincode::serde::decode_from_slice(data, bincode::config::standard()).map(|(m, _)| m)
}

/// Decodes snapshot data written by [`encode_snapshot`].
pub fn decode_snapshot(data: &[u8]) -> Result<(Members, Map), bincode::error::DecodeError> {
    let cfg = bincode::config::standard();
    let (members, mut pos) = bincode::serde::decode_from_slice(data, cfg)?;
    // The map by hand, in the layout serde gave it (a length, then key/value pairs): sized
    // once from the length (serde caps its guess, so a big map would rehash repeatedly),
    // and the strings borrowed from the buffer and boxed once.
    let (len, used): (u64, usize) = bincode::decode_from_slice(&data[pos..], cfg)?;
    pos += used;
    let mut map = Map::with_capacity_and_hasher(
        // Never trust a length to allocate: each pair takes at least two bytes.
        (len as usize).min((data.len() - pos) / 2),
        Default::default(),
    );
    for _ in 0..len {
        let ((key, value), used): ((&str, &str), usize) =
            bincode::borrow_decode_from_slice(&data[pos..], cfg)?;
        map.insert(key.into(), value.into());
        pos += used;
    }
    Ok((members, map))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn put_entry(index: u64, key: &str, value: &str) -> Entry {
        Entry {
            index,
            term: 1,
            data: Command::Put {
                key: key.into(),
                value: value.into(),
            }
            .encode()
            .into(),
            ..Default::default()
        }
    }

    /// The original's Test_kvstore_snapshot: a snapshot round-trips the map.
    #[test]
    fn snapshot_round_trips_the_map_and_members() {
        let mut map = Map::default();
        map.insert("/foo".into(), "bar".into());
        map.insert("/héllo".into(), "".into());
        let mut members = Members::default();
        members.add(1, "http://127.0.0.1:1".into());
        members.remove(2);
        let data = encode_snapshot(&members, &map);
        assert_eq!(decode_members(&data).expect("members decode"), members);
        let (m2, map2) = decode_snapshot(&data).expect("snapshot decodes");
        assert_eq!((m2, map2), (members, map));
    }

    #[test]
    fn apply_loop_applies_in_order_then_answers() {
        let kv = KvStore::default();
        let (tx, handle) = kv.spawn_apply_loop(1);
        let (done_tx, done_rx) = oneshot::channel();
        tx.send(Apply::Entries {
            entries: vec![
                put_entry(1, "/a", "1"),
                Entry::default(),
                put_entry(3, "/a", "2"),
            ],
            done: vec![done_tx],
        })
        .expect("apply loop is running");
        done_rx.blocking_recv().expect("answered").expect("ok");
        assert_eq!(kv.get("/a").as_deref(), Some("2"));
        assert_eq!(kv.applied_index(), 3);

        let (snap_tx, snap_rx) = oneshot::channel();
        tx.send(Apply::Snapshot {
            members: Members::default(),
            reply: snap_tx,
        })
        .expect("apply loop is running");
        let data = snap_rx.blocking_recv().expect("snapshot taken");
        tx.send(Apply::Entries {
            entries: vec![put_entry(4, "/b", "x")],
            done: vec![],
        })
        .expect("apply loop is running");
        tx.send(Apply::Restore {
            index: 3,
            data: data.into(),
        })
        .expect("apply loop is running");
        drop(tx);
        handle.join().expect("apply thread ends cleanly");
        assert_eq!(kv.get("/b"), None, "restore replaced the map");
        assert_eq!(kv.get("/a").as_deref(), Some("2"));
        assert_eq!(kv.applied_index(), 3);
    }
}
