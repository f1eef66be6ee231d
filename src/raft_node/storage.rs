//! raft-rs's view of the log: a `MemStorage` holding the entries since the last compaction,
//! plus the snapshotter's newest file. `MemStorage` alone cannot serve a snapshot with data
//! (its own `snapshot()` has none), and a snapshot of a big store is gigabytes: what raft gets
//! is the snapshot's metadata with a handle naming its file as data
//! ([`crate::snapshotter::handle`]). Asking costs nothing on the raft thread, however big the
//! state and however often raft asks again; the transport streams the file to the follower.

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};

use raft::eraftpb::{Entry, Snapshot, SnapshotMetadata};
use raft::storage::MemStorage;
use raft::{GetEntriesContext, RaftState, Storage, StorageError};

use crate::snapshotter::{Snapshotter, handle, snap_name};
use crate::transport::SnapshotId;

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
    /// Whether the newest snapshot's file was found gone and said so: raft asks again on
    /// every heartbeat answer, so it is said once per file. Cleared when a newer file is
    /// recorded ([`NodeStorage::set_latest_snapshot`]), a retake's at the same index included:
    /// when that copy is damaged too, it is said again.
    gone_said: AtomicBool,
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
                gone_said: AtomicBool::new(false),
            }),
        }
    }

    /// Records that a newer snapshot file is on disk.
    pub fn set_latest_snapshot(&self, meta: SnapshotMetadata) {
        *self.shared.latest.lock().unwrap_or_else(|p| p.into_inner()) = Some(meta);
        self.shared.gone_said.store(false, Ordering::Release);
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

    /// Whether the newest snapshot's file is not in the folder (set aside as damaged).
    pub fn latest_file_gone(&self) -> bool {
        self.latest_snapshot().is_some_and(|meta| {
            !self
                .shared
                .snapshotter
                .has_file(&snap_name(meta.term, meta.index))
        })
    }

    /// Whether `snapshot` is the newest and its file is in the folder.
    pub fn is_newest_on_disk(&self, snapshot: SnapshotId) -> bool {
        self.latest_snapshot().is_some_and(|meta| {
            (meta.term, meta.index) == (snapshot.term, snapshot.index)
                && self
                    .shared
                    .snapshotter
                    .has_file(&snap_name(meta.term, meta.index))
        })
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
        let name = snap_name(meta.term, meta.index);
        if !self.shared.snapshotter.has_file(&name) {
            // Set aside as damaged (the transport found its checksum wrong while sending it).
            // raft asks again on every heartbeat answer until the new file is saved: said once
            // per file, so once per damage, however many copies of one index are damaged.
            if !self.shared.gone_said.swap(true, Ordering::AcqRel) {
                tracing::warn!(file = %name, "the newest snapshot file is gone; taking a new one");
            }
            return Err(self.unavailable());
        }
        let mut snap = Snapshot {
            data: handle::file_handle(&name),
            ..Default::default()
        };
        snap.set_metadata(meta);
        Ok(snap)
    }
}

#[cfg(test)]
pub(crate) mod tests {
    use super::*;
    use raft::eraftpb::ConfState;

    /// A storage in `dir` whose newest snapshot, of `bytes` bytes of state, is saved at term 3,
    /// index 40, of voters 1, 2 and 3.
    fn storage_with_a_snapshot(dir: &std::path::Path, bytes: usize) -> (NodeStorage, Snapshot) {
        let snapshotter = Snapshotter::new(dir, 5).expect("snapshotter");
        let mut snap = Snapshot {
            data: vec![1u8; bytes].into(),
            ..Default::default()
        };
        snap.mut_metadata().term = 3;
        snap.mut_metadata().index = 40;
        snap.mut_metadata()
            .set_conf_state(ConfState::from((vec![1, 2, 3], vec![])));
        snapshotter.save(&snap).expect("saved");
        let storage = NodeStorage::new(
            MemStorage::new(),
            snapshotter,
            Some(snap.get_metadata().clone()),
        );
        (storage, snap)
    }

    /// raft gets the metadata and a handle naming the file, never the data; a file that is
    /// gone (set aside as damaged) makes the node take a fresh snapshot instead.
    #[test]
    fn a_snapshot_for_a_follower_is_a_handle_to_its_file() {
        let dir = tempfile::TempDir::new().expect("temp dir");
        let (storage, snap) = storage_with_a_snapshot(dir.path(), 100_000);
        let got = storage.snapshot(40, 2).expect("a snapshot");
        assert_eq!(got.get_metadata(), snap.get_metadata());
        assert_eq!(
            crate::snapshotter::SnapshotData::of(&got.data).expect("a handle"),
            crate::snapshotter::SnapshotData::File(&snap_name(3, 40))
        );
        assert!(!storage.take_want_fresh());

        std::fs::remove_file(dir.path().join(snap_name(3, 40))).expect("removed");
        assert!(storage.snapshot(40, 2).is_err());
        assert!(storage.take_want_fresh(), "a fresh snapshot is asked for");
    }

    /// Log lines, as the node's subscriber would write them, captured for a test.
    #[derive(Clone, Default)]
    pub(crate) struct Captured(Arc<Mutex<Vec<u8>>>);

    impl std::io::Write for Captured {
        fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
            self.0
                .lock()
                .unwrap_or_else(|p| p.into_inner())
                .extend_from_slice(buf);
            Ok(buf.len())
        }

        fn flush(&mut self) -> std::io::Result<()> {
            Ok(())
        }
    }

    impl Captured {
        /// A subscriber that writes its lines here.
        pub(crate) fn subscriber(&self) -> impl tracing::Subscriber + Send + Sync + 'static {
            let log = self.clone();
            tracing_subscriber::fmt()
                .with_writer(move || log.clone())
                .with_ansi(false)
                .finish()
        }

        /// What was captured.
        pub(crate) fn text(&self) -> String {
            let bytes = self.0.lock().unwrap_or_else(|p| p.into_inner());
            String::from_utf8_lossy(&bytes).into_owned()
        }

        /// How many captured lines contain `text`.
        pub(crate) fn count(&self, text: &str) -> usize {
            self.text().matches(text).count()
        }
    }

    /// A newest file found gone is said once, however often raft asks meanwhile; a copy taken
    /// again at the same index and damaged too is a new damage, said again. The second was
    /// silent: what was said was remembered by index alone.
    #[test]
    fn each_damaged_copy_of_a_snapshot_is_said_once() {
        let dir = tempfile::TempDir::new().expect("temp dir");
        let (storage, snap) = storage_with_a_snapshot(dir.path(), 1_000);
        let log = Captured::default();
        let subscriber = log.subscriber();
        let gone = "the newest snapshot file is gone";
        let path = dir.path().join(snap_name(3, 40));
        tracing::subscriber::with_default(subscriber, || {
            for copy in 1..=2 {
                std::fs::remove_file(&path).expect("set aside");
                for _ in 0..5 {
                    assert!(storage.snapshot(40, 2).is_err());
                }
                assert_eq!(log.count(gone), copy, "said once for damaged copy {copy}");
                // Taken again at the same term and index, as the raft node does.
                storage.snapshotter().save(&snap).expect("taken again");
                storage.set_latest_snapshot(snap.get_metadata().clone());
                assert!(storage.snapshot(40, 2).is_ok());
            }
        });
    }
}
