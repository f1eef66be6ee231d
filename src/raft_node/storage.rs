//! raft-rs's view of the log: a `MemStorage` holding the entries since the last compaction,
//! plus snapshots read back from the snapshotter's files. `MemStorage` alone cannot serve a
//! snapshot with data (its own `snapshot()` has none), and keeping the newest snapshot in
//! memory would double the memory of a big store, so the file on disk is the copy raft reads
//! when a follower needs it.

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};

use raft::eraftpb::{Entry, Snapshot, SnapshotMetadata};
use raft::storage::MemStorage;
use raft::{GetEntriesContext, RaftState, Storage, StorageError};

use crate::snapshotter::Snapshotter;

/// The `Storage` the `RawNode` reads; the raft node writes to it through [`NodeStorage::mem`].
#[derive(Clone)]
pub struct NodeStorage {
    /// The entries, hard state and conf state.
    pub mem: MemStorage,
    shared: Arc<Shared>,
}

struct Shared {
    snapshotter: Arc<Snapshotter>,
    /// Metadata of the newest snapshot on disk.
    latest: Mutex<Option<SnapshotMetadata>>,
    /// Set when raft asked for a snapshot the newest file cannot serve (too old, or taken
    /// before the follower joined): the raft node then takes a fresh one.
    want_fresh: AtomicBool,
}

impl NodeStorage {
    /// Storage over `mem`, serving snapshots from `snapshotter`; `latest` is the newest
    /// snapshot already on disk.
    pub fn new(
        mem: MemStorage,
        snapshotter: Snapshotter,
        latest: Option<SnapshotMetadata>,
    ) -> NodeStorage {
        NodeStorage {
            mem,
            shared: Arc::new(Shared {
                snapshotter: Arc::new(snapshotter),
                latest: Mutex::new(latest),
                want_fresh: AtomicBool::new(false),
            }),
        }
    }

    /// Records that a newer snapshot file is on disk.
    pub fn set_latest_snapshot(&self, meta: SnapshotMetadata) {
        *self.shared.latest.lock().unwrap_or_else(|p| p.into_inner()) = Some(meta);
    }

    /// Metadata of the newest snapshot on disk.
    pub fn latest_snapshot(&self) -> Option<SnapshotMetadata> {
        self.shared
            .latest
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .clone()
    }

    /// Whether raft asked for a snapshot that has to be taken first; clears the request.
    pub fn take_want_fresh(&self) -> bool {
        self.shared.want_fresh.swap(false, Ordering::AcqRel)
    }

    /// The snapshotter whose files back this storage.
    pub fn snapshotter(&self) -> &Arc<Snapshotter> {
        &self.shared.snapshotter
    }

    fn unavailable(&self) -> raft::Error {
        self.shared.want_fresh.store(true, Ordering::Release);
        raft::Error::Store(StorageError::SnapshotTemporarilyUnavailable)
    }
}

impl Storage for NodeStorage {
    fn initial_state(&self) -> raft::Result<RaftState> {
        self.mem.initial_state()
    }

    fn entries(
        &self,
        low: u64,
        high: u64,
        max_size: impl Into<Option<u64>>,
        context: GetEntriesContext,
    ) -> raft::Result<Vec<Entry>> {
        self.mem.entries(low, high, max_size, context)
    }

    fn term(&self, idx: u64) -> raft::Result<u64> {
        self.mem.term(idx)
    }

    fn first_index(&self) -> raft::Result<u64> {
        self.mem.first_index()
    }

    fn last_index(&self) -> raft::Result<u64> {
        self.mem.last_index()
    }

    fn snapshot(&self, request_index: u64, to: u64) -> raft::Result<Snapshot> {
        // "Temporarily unavailable" makes raft retry on a later heartbeat; any other error,
        // or an empty snapshot, is fatal inside raft-rs.
        let Some(meta) = self.latest_snapshot() else {
            return Err(self.unavailable());
        };
        let conf = meta.get_conf_state();
        let knows_peer = conf.voters.contains(&to) || conf.learners.contains(&to);
        if meta.index < request_index || !knows_peer {
            // A follower added after this snapshot would reject it ("not in the ConfState").
            return Err(self.unavailable());
        }
        match self.shared.snapshotter.load(meta.term, meta.index) {
            Ok(snap) => Ok(snap),
            Err(err) => {
                tracing::error!(%err, "cannot read snapshot for a follower; taking a new one");
                Err(self.unavailable())
            }
        }
    }
}
