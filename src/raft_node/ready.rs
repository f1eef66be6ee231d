//! The `Ready` contract, top to bottom. raft-rs hands the node a `Ready` holding everything
//! it must do; the order below is what makes the node safe:
//!
//! 1. A leader's messages go out first: raft allows a leader to replicate before its own
//!    write is durable (Raft thesis 10.2.1), so its disk and its followers' disks work at once.
//! 2. A snapshot from the leader is saved (file, then WAL marker) before anything refers to it.
//! 3. Committed entries are applied: raft only hands out entries already durable here.
//! 4. New entries and the hard state are written to the WAL with one sync.
//! 5. Read states are matched with the reads waiting for them.
//! 6. A follower's messages go out only now: a vote or an append acknowledgement promises
//!    that the data is on disk, so it must not leave before the sync.
//! 7. `advance`, then the `LightReady` it returns (a new commit index, more messages, more
//!    committed entries: raft never hands those out again, so they must be handled).

use raft::eraftpb::{
    ConfChangeType, Entry, EntryType, HardState, Message, Snapshot, SnapshotMetadata,
};
use raft::{ReadState, StateRole, Storage};
use tokio::sync::oneshot;

use super::{NodeError, PendingSnapshot, ProposalError, RaftNode, Responder};
use crate::kvstore::{Apply, ClusterState, decode_cluster_state};
use crate::membership::decode_conf_change;
use crate::proposal::{self, Payload, ProposalId, Verdict};

impl RaftNode {
    /// Handles one `Ready`.
    pub(super) fn handle_ready(&mut self) -> Result<(), NodeError> {
        let mut rd = self.rn.ready();
        super::trace::ready(self.id, &rd, &self.shared.events);
        if let Some(hs) = rd.hs() {
            self.metrics.term.set(hs.term as i64);
        }
        if let Some(ss) = rd.ss() {
            self.on_soft_state(ss.leader_id, ss.raft_state);
        }
        // 1. Leader: replicate before persisting.
        self.send(rd.take_messages());
        // 2. A snapshot from the leader.
        if !rd.snapshot().is_empty() {
            self.install_snapshot(rd.snapshot().clone())?;
        }
        // 3. Entries committed and already durable here. Not past this node's own removal,
        // though: raft-rs updates the leader's own progress when `advance` records its
        // persisted entries, and once the removal is applied that progress is gone (raft-rs
        // would unwrap nothing). The removal and what follows it wait for step 7.
        let mut committed = rd.take_committed_entries();
        let after_advance = match committed.iter().position(|e| self.removes_self(e)) {
            Some(at) => committed.split_off(at),
            None => Vec::new(),
        };
        self.publish_entries(committed)?;
        // 4. New entries and hard state: one write, one sync (raft says when a sync is due).
        self.persist(rd.hs(), rd.entries(), rd.must_sync())?;
        // 5. ReadIndex answers.
        self.on_read_states(rd.take_read_states());
        // 6. Follower and candidate messages, now that the WAL holds what they promise.
        self.send(rd.take_persisted_messages());
        // 7. Advance and handle what that released.
        let mut light = self.rn.advance(rd);
        super::trace::light_ready(self.id, &light, &self.shared.events);
        if let Some(commit) = light.commit_index() {
            self.persist_commit(commit)?;
        }
        self.send(light.take_messages());
        self.publish_entries(after_advance)?;
        self.publish_entries(light.take_committed_entries())?;
        self.rn.advance_apply();
        self.release_confirmed_reads()?;
        Ok(())
    }

    fn on_soft_state(&mut self, leader: u64, role: StateRole) {
        tracing::info!(leader, role = ?role, term = self.rn.raft.term, "raft state changed");
        let previous = self
            .shared
            .leader
            .swap(leader, std::sync::atomic::Ordering::AcqRel);
        if previous != leader {
            self.metrics.leader_changes.inc();
        }
        self.metrics.leader.set(leader as i64);
        // raft forgets pending ReadIndex requests when leadership moves, and a proposal
        // forwarded to the old leader or appended in its term may be lost: ask and propose
        // again as soon as this Ready is done (not now: raft must not be stepped between
        // ready and advance).
        self.reads.on_leader_change();
        if leader != previous && leader != raft::INVALID_ID {
            self.proposals.on_leader_change(std::time::Instant::now());
        }
    }

    /// Hands messages to the transport; whatever it could not queue is reported to raft
    /// once the Ready is done.
    fn send(&mut self, messages: Vec<Message>) {
        if !messages.is_empty() {
            self.transport.send(messages, &mut self.dropped);
        }
    }

    /// Saves a snapshot sent by the leader and replaces the state with it.
    fn install_snapshot(&mut self, snap: Snapshot) -> Result<(), NodeError> {
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

    /// Hands committed entries to the state machine, in order: each proposal takes effect
    /// once (the exactly-once table skips copies), conf changes are applied to raft here, and
    /// the waiters of this node's requests go along, answered once the batch is applied.
    fn publish_entries(&mut self, mut entries: Vec<Entry>) -> Result<(), NodeError> {
        let Some(last) = entries.last().map(|e| e.index) else {
            return Ok(());
        };
        let now = std::time::Instant::now();
        let mut done = Vec::new();
        let mut effective = Vec::with_capacity(entries.len());
        for entry in &entries {
            let (id, verdict) = self.admit(entry, now);
            let result = match (entry.get_entry_type(), verdict) {
                (_, Verdict::Duplicate | Verdict::StaleSession) => Ok(()),
                (EntryType::EntryNormal, Verdict::Apply) => Ok(()),
                (_, Verdict::Apply) => self.apply_conf_change(entry),
            };
            effective.push(verdict == Verdict::Apply);
            let waiter = self
                .proposals
                .on_committed(entry.index, entry.term, id, verdict);
            match (waiter, result) {
                (Some(w), Ok(())) => done.push(w),
                (Some(w), Err(err)) => {
                    let _ = w.send(Err(err));
                }
                (None, _) => {}
            }
        }
        let skipped = effective.iter().filter(|e| !**e).count();
        if skipped > 0 {
            self.metrics.duplicates_skipped.inc_by(skipped as u64);
            let mut keep = effective.into_iter();
            entries.retain(|_| keep.next().unwrap_or(true));
        }
        self.metrics.entries_applied.inc_by(entries.len() as u64);
        self.apply_tx
            .send(Apply::Entries {
                entries,
                last,
                done,
            })
            .map_err(|_| NodeError::ApplyStopped)?;
        self.applied = last;
        Ok(())
    }

    /// Runs a committed entry through the exactly-once table: its identity, if it has one,
    /// and whether it takes effect. A session registration is recorded here.
    fn admit(&mut self, entry: &Entry, now: std::time::Instant) -> (Option<ProposalId>, Verdict) {
        let found = match entry.get_entry_type() {
            EntryType::EntryNormal => match proposal::decode(&entry.data) {
                Ok(Payload::Proposal { id, floor, .. }) => Some((id, floor)),
                Ok(Payload::Register { origin, nonce }) => {
                    self.sessions.register(origin, nonce, entry.index);
                    self.proposals.on_registration(origin, &self.sessions, now);
                    None
                }
                // Written by an older version, or undecodable (the state machine says so):
                // applies as it is, on every node alike.
                Ok(Payload::Plain(_)) | Err(_) => None,
            },
            EntryType::EntryConfChange | EntryType::EntryConfChangeV2 => {
                proposal::decode_context(&entry.context)
            }
        };
        match found {
            Some((id, floor)) => (Some(id), self.sessions.admit(id, floor)),
            None => (None, Verdict::Apply),
        }
    }

    /// Applies one committed conf change to raft, the member list and the transport.
    fn apply_conf_change(&mut self, entry: &Entry) -> Result<(), ProposalError> {
        let cc = match decode_conf_change(entry) {
            Ok(cc) => cc,
            Err(err) => {
                // Every node skips it alike, so they stay in step.
                tracing::error!(index = entry.index, %err, "skipping undecodable conf change");
                return Err(ProposalError::Rejected(err.to_string()));
            }
        };
        let cs = match self.rn.apply_conf_change(&cc) {
            Ok(cs) => cs,
            Err(err) => {
                tracing::warn!(index = entry.index, %err, "conf change refused by raft");
                return Err(ProposalError::Rejected(err.to_string()));
            }
        };
        self.storage.mem.wl().set_conf_state(cs.clone());
        self.conf_state = cs;
        let url = String::from_utf8_lossy(&cc.context).into_owned();
        let mut members = self.members.clone();
        for change in cc.get_changes() {
            let id = change.node_id;
            match change.get_change_type() {
                ConfChangeType::AddNode | ConfChangeType::AddLearnerNode => {
                    let url = if url.is_empty() {
                        members.urls.get(&id).cloned().unwrap_or_default()
                    } else {
                        url.clone()
                    };
                    tracing::info!(index = entry.index, member = id, %url, "member added");
                    members.add(id, url);
                    if id == self.id {
                        self.added_at = entry.index;
                    }
                }
                ConfChangeType::RemoveNode => {
                    tracing::info!(index = entry.index, member = id, "member removed");
                    members.remove(id);
                    // Whatever the removed node still has in flight is skipped.
                    self.sessions.forget(id);
                    if id == self.id {
                        // Not necessarily the end: a node added back under its old id replays
                        // its earlier removal before the entry that re-added it. It stops once
                        // it has applied everything the leader has committed and is still
                        // out (see `maybe_stop_removed`).
                        self.removal_pending = true;
                    }
                }
            }
        }
        self.set_members(members, entry.index);
        Ok(())
    }

    /// Whether `entry` removes this node from the cluster.
    fn removes_self(&self, entry: &Entry) -> bool {
        entry.get_entry_type() != EntryType::EntryNormal
            && decode_conf_change(entry).is_ok_and(|cc| {
                cc.get_changes().iter().any(|c| {
                    c.node_id == self.id && c.get_change_type() == ConfChangeType::RemoveNode
                })
            })
    }

    /// Replaces the member list and brings the transport in line with it.
    fn set_members(&mut self, members: crate::membership::Members, as_of: u64) {
        for id in self.members.urls.keys() {
            if !members.contains(*id) {
                self.transport.remove_peer(*id);
            }
        }
        for (id, url) in &members.urls {
            if !url.is_empty() {
                self.transport.add_peer(*id, url);
            }
        }
        self.transport.filter().set_removed(&members.removed, as_of);
        self.members = members;
    }

    /// Appends entries and the hard state to the WAL, then to raft's storage.
    fn persist(
        &mut self,
        hs: Option<&HardState>,
        entries: &[Entry],
        sync: bool,
    ) -> Result<(), NodeError> {
        if hs.is_none() && entries.is_empty() {
            return Ok(());
        }
        let started = std::time::Instant::now();
        let wal = self.wal_mut()?;
        let before = wal.size_on_disk();
        wal.save(hs, entries, sync)?;
        let written = wal.size_on_disk().saturating_sub(before);
        self.metrics.wal_bytes_written.inc_by(written);
        if sync {
            self.metrics
                .wal_sync_seconds
                .observe(started.elapsed().as_secs_f64());
            self.metrics.wal_sync_entries.observe(entries.len() as f64);
        }
        let mut store = self.storage.mem.wl();
        if !entries.is_empty() {
            store.append(entries)?;
        }
        if let Some(hs) = hs {
            store.set_hardstate(hs.clone());
        }
        Ok(())
    }

    /// Records a commit index that `advance` reported. No sync: a lost commit index is
    /// learned again from the leader.
    fn persist_commit(&mut self, commit: u64) -> Result<(), NodeError> {
        let mut hs = self.storage.mem.rl().hard_state().clone();
        hs.commit = commit;
        self.wal_mut()?.save(Some(&hs), &[], false)?;
        self.storage.mem.wl().mut_hard_state().commit = commit;
        Ok(())
    }

    fn on_read_states(&mut self, states: Vec<ReadState>) {
        self.reads.on_read_states(states);
    }

    /// Releases confirmed reads whose index the state machine will have reached when it gets
    /// this message: the apply channel is in order.
    fn release_confirmed_reads(&mut self) -> Result<(), NodeError> {
        let ready: Vec<Responder> = self.reads.release(self.applied);
        if !ready.is_empty() {
            self.apply_tx
                .send(Apply::Reads(ready))
                .map_err(|_| NodeError::ApplyStopped)?;
        }
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
