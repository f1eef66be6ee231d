//! Snapshots: taking one when enough entries were applied (the state machine writes the file;
//! then the WAL marker and the compaction of the log and of the WAL), and installing one the
//! leader sent.

use std::time::Instant;

use raft::Storage;
use raft::eraftpb::{Snapshot, SnapshotMetadata};
use tokio::sync::oneshot;

use super::{NodeError, RaftNode};
use crate::kvstore::{Apply, ClusterState, decode_cluster_state};

/// A snapshot the state machine is saving.
pub(super) struct PendingSnapshot {
    pub(super) started: Instant,
    pub(super) meta: SnapshotMetadata,
    pub(super) saved: oneshot::Receiver<Result<(), crate::snapshotter::Error>>,
}

impl RaftNode {
    /// Saves a snapshot sent by the leader and replaces the state with it.
    pub(super) fn install_snapshot(&mut self, snap: Snapshot) -> Result<(), NodeError> {
        let meta = snap.get_metadata().clone();
        tracing::info!(
            index = meta.index,
            term = meta.term,
            "installing snapshot from the leader"
        );
        // File first, then the marker: a marker without its file would make the WAL
        // unreplayable, while a file without a marker is simply ignored.
        self.storage.snapshotter().save(&snap)?;
        self.wal_mut()?.save_snapshot_marker(&meta)?;
        self.storage.mem.wl().apply_snapshot(snap.clone())?;
        self.storage.set_latest_snapshot(meta.clone());
        self.metrics.snapshots.inc();
        match decode_cluster_state(&snap.data) {
            Ok(state) => {
                if state.members.contains(self.id) {
                    self.added_at = meta.index;
                }
                self.set_members(state.members, meta.index);
                self.sessions = state.sessions;
            }
            Err(err) => tracing::error!(%err, "snapshot carries no readable membership"),
        }
        self.conf_state = meta.get_conf_state().clone();
        // Requests of this node that the snapshot shows applied are answered once it is
        // restored.
        let done =
            self.proposals
                .on_snapshot(meta.index, &self.sessions, std::time::Instant::now());
        self.apply_tx
            .send(Apply::Restore {
                index: meta.index,
                data: snap.data,
                done,
            })
            .map_err(|_| NodeError::ApplyStopped)?;
        self.applied = meta.index;
        self.prev_snapshot_index = self.snapshot_index;
        self.snapshot_index = meta.index;
        Ok(())
    }

    /// Asks the state machine for a snapshot once enough entries were applied since the last
    /// one, or when raft needs a newer one for a follower.
    pub(super) fn maybe_trigger_snapshot(&mut self) -> Result<(), NodeError> {
        if self.pending_snapshot.is_some() {
            return Ok(());
        }
        let wanted = self.storage.take_want_fresh();
        let due = self.applied.saturating_sub(self.snapshot_index) >= self.snapshot_count;
        if !(due || wanted) || self.applied <= self.snapshot_index {
            return Ok(());
        }
        let mut meta = SnapshotMetadata {
            index: self.applied,
            term: self.storage.term(self.applied)?,
            ..Default::default()
        };
        meta.set_conf_state(self.conf_state.clone());
        let (reply, saved) = oneshot::channel();
        // Sent after every entry up to `applied`, so the map it saves is exactly the state at
        // `applied`: a snapshot never runs ahead of (or behind) what it claims. The state
        // machine's thread writes the file, so this thread goes on with raft meanwhile.
        self.apply_tx
            .send(Apply::Snapshot {
                state: ClusterState {
                    members: self.members.clone(),
                    sessions: self.sessions.clone(),
                },
                meta: meta.clone(),
                snapshotter: self.storage.snapshotter().clone(),
                reply,
            })
            .map_err(|_| NodeError::ApplyStopped)?;
        self.pending_snapshot = Some(PendingSnapshot {
            started: std::time::Instant::now(),
            meta,
            saved,
        });
        Ok(())
    }

    /// Once the state machine has saved its snapshot: the WAL marker, then compaction of the
    /// log and of the WAL.
    pub(super) fn poll_snapshot(&mut self) -> Result<(), NodeError> {
        let Some(pending) = self.pending_snapshot.as_mut() else {
            return Ok(());
        };
        match pending.saved.try_recv() {
            Ok(saved) => saved?,
            Err(oneshot::error::TryRecvError::Empty) => return Ok(()),
            Err(oneshot::error::TryRecvError::Closed) => return Err(NodeError::ApplyStopped),
        }
        let PendingSnapshot { started, meta, .. } = self
            .pending_snapshot
            .take()
            .expect("pending_snapshot was Some a few lines above");
        let index = meta.index;
        if index <= self.snapshot_index {
            // A snapshot from the leader overtook this one; its file is harmless (no marker).
            return Ok(());
        }
        self.wal_mut()?.save_snapshot_marker(&meta)?;
        self.storage.set_latest_snapshot(meta);
        self.metrics.snapshots.inc();
        self.metrics
            .snapshot_seconds
            .observe(started.elapsed().as_secs_f64());
        tracing::info!(index, "snapshot saved");

        // Keep some entries behind the snapshot so a slightly slow follower catches up from
        // the log instead of needing the whole snapshot.
        let compact_to = index.saturating_sub(self.catchup_entries).max(1);
        if compact_to > self.storage.first_index()? {
            self.storage.mem.wl().compact(compact_to)?;
        }
        self.prev_snapshot_index = self.snapshot_index;
        self.snapshot_index = index;
        // Everything after the previous snapshot stays in the WAL: if the newest snapshot file
        // is ever unreadable, start-up falls back to the previous one and replays from there.
        let keep_from = self.prev_snapshot_index + 1;
        self.wal_mut()?.release_to(keep_from)?;
        Ok(())
    }
}
