//! Snapshots: taking one when enough entries were applied (the state machine writes the file;
//! then the WAL marker and the compaction of the log and of the WAL), and installing one the
//! leader sent. A snapshot from the leader arrives as a file the peer server wrote and checked
//! ([`crate::snapshotter::handle`]); installing it renames that file into place, and the state
//! machine streams the map from it. A snapshot with its data inline (an in-memory network's)
//! is saved from memory instead.

use std::time::{Duration, Instant};

use raft::Storage;
use raft::eraftpb::{Message, MessageType, Snapshot, SnapshotMetadata};
use tokio::sync::oneshot;

use super::{NodeError, RaftNode};
use crate::kvstore::{Apply, ClusterState, RestoreFrom, decode_cluster_state, read_cluster_state};
use crate::snapshotter::{self, SnapshotData};
use crate::transport::{AppliedAt, SnapshotId};

/// A snapshot the state machine is saving.
pub(super) struct PendingSnapshot {
    pub(super) started: Instant,
    pub(super) meta: SnapshotMetadata,
    /// Bytes of application data it saved, once durable.
    pub(super) saved: oneshot::Receiver<Result<u64, crate::snapshotter::Error>>,
    /// Taken again at the index of the newest snapshot, whose file was set aside as damaged:
    /// the WAL already names it, so once saved it only has to be served again.
    pub(super) retake: bool,
}

/// A snapshot the disk had no room for: the node goes on with its log (a snapshot only lets it
/// compact; the WAL holds everything), and tries again after `wait`, doubled at each failure
/// up to [`LONGEST_RETRY`], so that freeing space is enough and a full disk costs no
/// busy loop. Before, the node stopped, and under a supervisor restarted, replayed, took the
/// same snapshot and stopped again until someone freed space.
pub(super) struct SnapshotRetry {
    at: Instant,
    wait: Duration,
}

/// The first wait after a snapshot the disk had no room for.
const FIRST_RETRY: Duration = Duration::from_secs(1);
/// The longest.
const LONGEST_RETRY: Duration = Duration::from_secs(32);

/// Snapshots taken in place of the newest, whose file was set aside as damaged, one after
/// another: of the same state again in an idle cluster, or of a newer one if anything was
/// applied since. The first is taken at once, and each later one waits twice as long after the
/// one before, from one heartbeat up to [`LONGEST_RETAKE`]. A disk that damages every copy
/// made the leader write the whole state again (and its sender read it back) at the pace of
/// raft's asking, for as long as a follower needed a snapshot: disk I/O without bound. Keyed on
/// the damage, not on the snapshot's index: a version that started over at every new index
/// held nothing back in a cluster taking writes (found by a review). Forgotten once a
/// snapshot is sent whole, or when a damage comes long after the last (see
/// [`RetakeBackoff::after`]).
pub(super) struct RetakeBackoff {
    /// When the next may be taken.
    at: Instant,
    /// The wait before that one.
    wait: Duration,
}

/// The longest wait between two retakes of one snapshot. As for a full disk
/// ([`LONGEST_RETRY`], the same trouble: a disk that fails the node's own writes), a disk that
/// damages every copy costs at most one write of the state, and one read by its sender, per
/// 32 s, and a follower that needs the snapshot waits at most that much longer once the disk
/// is mended. Starting from one heartbeat (raft's pace of asking) keeps a damage that repeats
/// only a few times cheap in waiting too: 0.1 s, 0.2 s, 0.4 s... at the default tick.
const LONGEST_RETAKE: Duration = Duration::from_secs(32);

impl RetakeBackoff {
    /// After a snapshot taken in place of a damaged one at `now`: when the next may be taken.
    /// The wait doubles from `prev`'s while damages keep coming, that is within
    /// [`LONGEST_RETAKE`] of when `prev` let the next be taken (over HTTP the sender's own
    /// back-off after a failed send paces raft's asking, up to 8 s, so a window of a heartbeat
    /// or two would start over every time); it is `heartbeat` for the first of a streak.
    fn after(prev: Option<&RetakeBackoff>, now: Instant, heartbeat: Duration) -> RetakeBackoff {
        let wait = match prev {
            Some(prev) if now < prev.at + LONGEST_RETAKE => (prev.wait * 2).min(LONGEST_RETAKE),
            _ => heartbeat,
        };
        RetakeBackoff {
            at: now + wait,
            wait,
        }
    }

    /// Whether a snapshot in place of a damaged one must wait at `now`.
    fn holds_off(&self, now: Instant) -> bool {
        now < self.at
    }
}

/// Snapshots: when the next is due, the one being taken, and those arrived from the leader.
pub(super) struct SnapshotState {
    /// The snapshot before the newest: the WAL keeps everything after it, so a damaged newest
    /// snapshot file still leaves a way to recover.
    pub(super) prev_snapshot_index: u64,
    /// `--snapshot-count` (at least 1): applied entries between snapshots.
    pub(super) snapshot_count: u64,
    /// `--snapshot-catchup-entries`: entries kept in the log behind a snapshot, so that a slow
    /// follower catches up without one.
    pub(super) catchup_entries: u64,
    /// A snapshot the state machine is taking, until it is durable (see `poll_snapshot`).
    pub(super) pending_snapshot: Option<PendingSnapshot>,
    /// Set while the disk had no room for this node's last snapshot: when to try again.
    pub(super) snapshot_retry: Option<SnapshotRetry>,
    /// Set while copies of the newest snapshot are damaged one after another: when it may be
    /// taken again.
    pub(super) retake_backoff: Option<RetakeBackoff>,
    /// Files of arrived snapshots stepped this round, not yet installed.
    pub(super) received_snapshots: Vec<String>,
}

impl RaftNode {
    /// Saves a snapshot sent by the leader and replaces the state with it.
    pub(super) fn install_snapshot(&mut self, snap: Snapshot) -> Result<(), NodeError> {
        let meta = snap.get_metadata().clone();
        let started = Instant::now();
        let snapshotter = self.storage.snapshotter().clone();
        // A snapshot whose members and exactly-once table this build cannot read (a leader of
        // a newer version, whose format has more fields) is refused before its marker makes
        // it this node's state: the node stops with its data dir as it was, rather than with
        // one it can no longer start from (found by a review).
        let unreadable = |reason: String| NodeError::SnapshotUnreadable {
            index: meta.index,
            reason,
        };
        // A file the disk could not read is no question of version: the node stops on the
        // I/O error itself (its data dir as it was too).
        let peek_failed = |e: snapshotter::Error| match e {
            snapshotter::Error::Decode { .. } => unreadable(e.to_string()),
            e => NodeError::Snapshot(e),
        };
        // File first, then the marker: a marker without its file would make the WAL
        // unreplayable, while a file without a marker is simply ignored.
        let (state, from, bytes) = match SnapshotData::of(&snap.data) {
            Ok(SnapshotData::Inline(data)) => {
                let state = decode_cluster_state(data).map_err(|e| unreadable(e.to_string()))?;
                snapshotter.save(&snap)?;
                let bytes = data.len() as u64;
                (state, RestoreFrom::Bytes(snap.data.clone()), bytes)
            }
            Ok(SnapshotData::File(name)) => {
                // Checked whole when it arrived; only its first bytes are read here.
                snapshotter.adopt(name, &meta)?;
                self.snapshots.received_snapshots.retain(|n| n != name);
                // Opened here, not by name when the state machine gets to it: by then more
                // installs may have come (it may be busy restoring a big state), each pruning
                // the folder to the newest `--max-snapshots` files, and this one's name may be
                // gone; the state machine stopped on it, and the node with it (found by a
                // review). An open file outlives its name, so pruning stays as it was and never
                // has to know what the state machine has queued; the space of a file pruned
                // meanwhile is freed once its restore closes it.
                let file = snapshotter.open(meta.term, meta.index)?;
                let (state, bytes) = snapshotter
                    .peek_with(meta.term, meta.index, |r, len| {
                        read_cluster_state(r, len).map(|state| (state, len))
                    })
                    .map_err(peek_failed)?;
                (state, RestoreFrom::File(file), bytes)
            }
            Ok(SnapshotData::Follows(_)) => {
                return Err(snapshotter::Error::Handle {
                    index: meta.index,
                    reason: "its file was to follow on the wire, and never became a file".into(),
                }
                .into());
            }
            Err(e) => {
                return Err(snapshotter::Error::Handle {
                    index: meta.index,
                    reason: e.to_string(),
                }
                .into());
            }
        };
        self.wal_mut()?.save_snapshot_reset(&meta)?;
        // Only now that the WAL names the new file may old ones go.
        self.storage.snapshotter().prune_behind(meta.index);
        self.storage.mem.wl().apply_snapshot(snap)?;
        self.storage.set_latest_snapshot(meta.clone());
        self.metrics.snapshots.inc();
        // Before the join facts are published below, which name the voters.
        self.conf_state = meta.get_conf_state().clone();
        if state.members.contains(self.id) {
            self.removal.added_at = meta.index;
        }
        self.set_members(state.members);
        self.sessions = state.sessions;
        self.set_incarnation(state.incarnation);
        // The log was replaced; its registrations are in the table now, published with it.
        self.tail.clear();
        self.publish_join_facts();
        // Requests of this node that the snapshot shows applied are answered once it is
        // restored.
        let done =
            self.proposals
                .on_snapshot(meta.index, &self.sessions, &self.members, self.now());
        self.log_bytes.snapshot_installed(meta.index, bytes);
        self.apply_tx
            .send(Apply::Restore {
                index: meta.index,
                from,
                done,
            })
            .map_err(|_| NodeError::ApplyStopped)?;
        self.applied = meta.index;
        self.publish_applied(AppliedAt {
            index: meta.index,
            term: meta.term,
        });
        self.snapshots.prev_snapshot_index = self.snapshot_index;
        self.snapshot_index = meta.index;
        // `seconds` leaves out the restore of the map, which the state machine does next, on its
        // own thread (it logs at debug when done).
        tracing::info!(
            index = meta.index,
            term = meta.term,
            bytes,
            seconds = started.elapsed().as_secs_f64(),
            "installed a snapshot from the leader"
        );
        Ok(())
    }

    /// Notes the file an arrived snapshot's handle names: installed, it is renamed into
    /// place; otherwise (raft found it stale, or a newer one overtook it) it is deleted at the
    /// end of the round ([`RaftNode::discard_received_snapshots`]).
    pub(super) fn note_received_snapshot(&mut self, m: &Message) {
        if m.get_msg_type() != MessageType::MsgSnapshot {
            return;
        }
        if let Ok(SnapshotData::File(name)) = SnapshotData::of(&m.get_snapshot().data) {
            self.snapshots.received_snapshots.push(name.to_string());
        }
    }

    /// Deletes the files of arrived snapshots that were not installed. Called once every
    /// `Ready` of a round is handled: raft installs a snapshot it accepts in the `Ready` that
    /// follows the step, so a file not taken by then never will be.
    pub(super) fn discard_received_snapshots(&mut self) {
        for name in std::mem::take(&mut self.snapshots.received_snapshots) {
            tracing::debug!(file = %name, "discarding a snapshot raft did not install");
            if let Err(err) = self.storage.snapshotter().discard(&name) {
                tracing::warn!(%err, "cannot delete an arrived snapshot that was not installed");
            }
        }
    }

    /// `sent` was delivered whole to a peer. If it is the newest snapshot, its file was sound,
    /// so a later damage is a new trouble and the retakes' back-off starts over. Not for an
    /// older snapshot: its long send may have begun before the newest was taken and ended
    /// while the newest's copy, damaged too, was not read yet; that reset the streak, and a
    /// disk damaging every copy was written at the pace of raft's asking again. Nor once the
    /// newest is set aside (copies of it damaged meanwhile, for another follower).
    pub(super) fn snapshot_delivered(&mut self, sent: SnapshotId) {
        if self.storage.is_newest_on_disk(sent) {
            self.snapshots.retake_backoff = None;
        }
    }

    /// Asks the state machine for a snapshot once enough entries (or bytes of entries) were
    /// applied since the last one, or when raft needs a newer one for a follower.
    pub(super) fn maybe_trigger_snapshot(&mut self) -> Result<(), NodeError> {
        if self.snapshots.pending_snapshot.is_some()
            || self
                .snapshots
                .snapshot_retry
                .as_ref()
                .is_some_and(|retry| self.now() < retry.at)
        {
            return Ok(());
        }
        let wanted = self.storage.take_want_fresh();
        let due = self.applied.saturating_sub(self.snapshot_index) >= self.snapshots.snapshot_count
            || self.log_bytes.due();
        // Wanted for a follower in place of the newest snapshot, whose file was set aside as
        // damaged (or is gone).
        let replacing = wanted && self.snapshot_index > 0 && self.storage.latest_file_gone();
        // Nothing applied since: only a write would have moved `applied` on, so in an idle
        // cluster a follower needing a snapshot waited for one. The same state is taken again
        // instead.
        let retake = replacing && self.applied == self.snapshot_index;
        if !(due || wanted) || (self.applied <= self.snapshot_index && !retake) {
            return Ok(());
        }
        let now = self.now();
        if replacing && !due {
            if self
                .snapshots
                .retake_backoff
                .as_ref()
                .is_some_and(|b| b.holds_off(now))
            {
                // raft asks again at its next heartbeat answer, which wants a fresh one again.
                return Ok(());
            }
            // A tick is a heartbeat: raft's heartbeat_tick is 1.
            let next = RetakeBackoff::after(self.snapshots.retake_backoff.as_ref(), now, self.tick);
            tracing::warn!(
                index = self.applied,
                "taking a snapshot in place of the newest, whose file was set aside as \
                 damaged: a follower needs one; should this copy be damaged too, the next is \
                 taken no sooner than {} ms after this one",
                next.wait.as_millis()
            );
            self.snapshots.retake_backoff = Some(next);
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
                    incarnation: self.incarnation,
                },
                meta: meta.clone(),
                snapshotter: self.storage.snapshotter().clone(),
                reply,
            })
            .map_err(|_| NodeError::ApplyStopped)?;
        self.log_bytes.snapshot_asked();
        self.snapshots.pending_snapshot = Some(PendingSnapshot {
            started: std::time::Instant::now(),
            meta,
            saved,
            retake,
        });
        Ok(())
    }

    /// The snapshot `meta` names, taken since `started`, is the one raft is served from now.
    fn now_newest(&mut self, meta: SnapshotMetadata, started: Instant) {
        self.storage.set_latest_snapshot(meta);
        self.metrics.snapshots.inc();
        self.metrics
            .snapshot_seconds
            .observe(started.elapsed().as_secs_f64());
    }

    /// Once the state machine has saved its snapshot: the WAL marker, then compaction of the
    /// log and of the WAL.
    pub(super) fn poll_snapshot(&mut self) -> Result<(), NodeError> {
        let Some(pending) = self.snapshots.pending_snapshot.as_mut() else {
            return Ok(());
        };
        let saved = match pending.saved.try_recv() {
            Ok(Ok(saved)) => saved,
            Ok(Err(err)) if super::disk_full(&err) => {
                self.snapshots.pending_snapshot = None;
                self.snapshot_failed_for_space(&err);
                return Ok(());
            }
            Ok(Err(err)) => return Err(err.into()),
            Err(oneshot::error::TryRecvError::Empty) => return Ok(()),
            Err(oneshot::error::TryRecvError::Closed) => return Err(NodeError::ApplyStopped),
        };
        let PendingSnapshot {
            started,
            meta,
            retake,
            ..
        } = self
            .snapshots
            .pending_snapshot
            .take()
            .expect("pending_snapshot was Some a few lines above");
        let index = meta.index;
        // Saved, whichever way it goes on below: the disk had room. Cleared here and not only
        // for a snapshot at a new index: a retake in place of a damaged file (or one a
        // leader's overtook) left a full disk's retry behind, and the next time the disk
        // filled, the node said nothing but a debug line and waited twice as long as the
        // last wait before trying again, up to 32 s, instead of 1 s.
        if self.snapshots.snapshot_retry.take().is_some() {
            tracing::info!(index, "the disk had room for a snapshot again");
        }
        if retake && index == self.snapshot_index {
            // The WAL's marker names this term and index already, and nothing is left to
            // compact: the file is back, so raft's next attempt finds it.
            self.now_newest(meta, started);
            tracing::info!(
                index,
                bytes = saved,
                seconds = started.elapsed().as_secs_f64(),
                "snapshot taken again in place of the damaged file"
            );
            return Ok(());
        }
        if index <= self.snapshot_index {
            // A snapshot from the leader overtook this one. Its file has no marker, so nothing
            // loads it; left, it would count among the newest files kept and push out one the
            // WAL names. (At the same index it is the leader's file, renamed over it.)
            if index < self.snapshot_index {
                let name = snapshotter::snap_name(meta.term, index);
                if let Err(err) = self.storage.snapshotter().discard(&name) {
                    tracing::warn!(%err, "cannot delete a snapshot a newer one overtook");
                }
            }
            // The installed snapshot's size stands, not this older state's.
            return Ok(());
        }
        self.log_bytes.snapshot_saved(saved);
        self.wal_mut()?.save_snapshot_marker(&meta)?;
        self.storage.snapshotter().prune_behind(index);
        self.now_newest(meta, started);
        tracing::info!(
            index,
            bytes = saved,
            seconds = started.elapsed().as_secs_f64(),
            "snapshot saved"
        );

        // Keep some entries behind the snapshot so a slightly slow follower catches up from
        // the log instead of needing the whole snapshot; with big values, fewer.
        let compact_to = index
            .saturating_sub(self.snapshots.catchup_entries)
            .max(self.log_bytes.keep_from(index))
            .max(1);
        if compact_to > self.storage.first_index()? {
            self.storage.mem.wl().compact(compact_to)?;
        }
        self.log_bytes.compacted(compact_to);
        self.snapshots.prev_snapshot_index = self.snapshot_index;
        self.snapshot_index = index;
        // Everything after the previous snapshot stays in the WAL: if the newest snapshot file
        // is ever unreadable, start-up falls back to the previous one and replays from there.
        let keep_from = self.snapshots.prev_snapshot_index + 1;
        self.wal_mut()?.release_to(keep_from)?;
        Ok(())
    }

    /// The disk had no room for this node's snapshot (the snapshotter removed what it wrote):
    /// warns at the first failure of a run, and tries again later.
    fn snapshot_failed_for_space(&mut self, err: &snapshotter::Error) {
        self.metrics.snapshots_failed.inc();
        let wait = self
            .snapshots
            .snapshot_retry
            .as_ref()
            .map_or(FIRST_RETRY, |retry| (retry.wait * 2).min(LONGEST_RETRY));
        if self.snapshots.snapshot_retry.is_none() {
            tracing::warn!(
                "cannot save a snapshot: {err}. The disk is full: free space on it. This node \
                 goes on with its log, which holds everything (it grows until a snapshot lets \
                 it compact), and tries again in {} s, then less often, up to every {} s",
                wait.as_secs(),
                LONGEST_RETRY.as_secs()
            );
        } else {
            tracing::debug!(%err, "still no room for a snapshot");
        }
        self.snapshots.snapshot_retry = Some(SnapshotRetry {
            at: self.now() + wait,
            wait,
        });
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    use raft::eraftpb::ConfState;

    use crate::config::Config;
    use crate::snapshotter::snap_name;
    use crate::transport::PeerEvent;

    /// Saves a snapshot file at `term`, `index` in `node`'s snapshot folder.
    fn saved(node: &RaftNode, term: u64, index: u64) -> SnapshotMetadata {
        let mut snap = Snapshot {
            data: vec![7u8; 64].into(),
            ..Default::default()
        };
        let meta = snap.mut_metadata();
        (meta.term, meta.index) = (term, index);
        meta.set_conf_state(ConfState::from((vec![1, 2], vec![])));
        node.storage.snapshotter().save(&snap).expect("saved");
        snap.take_metadata()
    }

    /// Only the newest snapshot sent whole ends a streak of retakes. A long send of an older
    /// one (begun before the newest was taken, in place of a damaged one) that ends while the
    /// newest's copy is damaged too, and not read yet, said nothing of that copy, but reset
    /// the back-off: the next damage was taken again after a heartbeat, not after twice the
    /// last wait. Nor does a failed send, or one whose file was set aside since.
    #[tokio::test]
    async fn only_the_newest_snapshot_sent_whole_ends_a_streak_of_retakes() {
        let dir = tempfile::TempDir::new().expect("temp dir");
        let config = Config {
            id: 1,
            cluster: vec!["http://127.0.0.1:1".into()],
            data_dir: dir.path().to_path_buf(),
            ..Config::default()
        };
        // Node 1 of a cluster of one, bootstrapped in `config`'s data dir.
        let mut node = crate::raft_node::driven_by_hand(&config);
        let older = saved(&node, 2, 10);
        let newest = saved(&node, 3, 20);
        node.storage.set_latest_snapshot(newest.clone());
        let in_streak = |node: &RaftNode| node.snapshots.retake_backoff.is_some();
        let status = |meta: &SnapshotMetadata, delivered| PeerEvent::SnapshotStatus {
            peer: 2,
            snapshot: SnapshotId {
                term: meta.term,
                index: meta.index,
            },
            delivered,
        };
        let streak = RetakeBackoff::after(None, node.now(), node.tick);
        node.snapshots.retake_backoff = Some(streak);

        node.on_peer_event(status(&older, true));
        assert!(
            in_streak(&node),
            "an older snapshot's send ended the streak"
        );
        // Same index, another term: not the newest either.
        let mut other_term = newest.clone();
        other_term.term = 2;
        node.on_peer_event(status(&other_term, true));
        assert!(in_streak(&node), "another term's send ended the streak");
        node.on_peer_event(status(&newest, false));
        assert!(in_streak(&node), "a failed send ended the streak");

        let file = config.snap_dir().join(snap_name(newest.term, newest.index));
        let kept = std::fs::read(&file).expect("the newest file");
        std::fs::remove_file(&file).expect("set aside");
        node.on_peer_event(status(&newest, true));
        assert!(
            in_streak(&node),
            "a send of a file set aside since ended it"
        );

        std::fs::write(&file, kept).expect("taken again");
        node.on_peer_event(status(&newest, true));
        assert!(!in_streak(&node), "the newest, sent whole, ends the streak");
    }

    /// Snapshots in place of damaged ones, one after another, wait twice as long each time,
    /// from a heartbeat up to [`LONGEST_RETAKE`], however late after its allowed time each
    /// comes within that window (over HTTP the sender's back-off paces them, up to 8 s); a
    /// damage long after the last starts over.
    #[test]
    fn retakes_wait_twice_as_long_each_time_up_to_a_cap() {
        let heartbeat = Duration::from_millis(100);
        let mut now = Instant::now();
        let mut prev: Option<RetakeBackoff> = None;
        let mut waits = Vec::new();
        for late in [0, 8, 0, 3, 8, 0, 1, 8, 0, 8, 0, 8] {
            let next = RetakeBackoff::after(prev.as_ref(), now, heartbeat);
            assert!(next.holds_off(now));
            assert!(!next.holds_off(next.at));
            waits.push(next.wait.as_millis());
            now = next.at + Duration::from_secs(late);
            prev = Some(next);
        }
        assert_eq!(
            waits,
            [
                100, 200, 400, 800, 1_600, 3_200, 6_400, 12_800, 25_600, 32_000, 32_000, 32_000
            ]
        );
        let prev = prev.expect("twelve taken");
        let later = RetakeBackoff::after(Some(&prev), prev.at + LONGEST_RETAKE, heartbeat);
        assert_eq!(
            later.wait, heartbeat,
            "a damage long after the last starts over"
        );
    }
}
