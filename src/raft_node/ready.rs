//! The node's loop, top to bottom: [`RaftNode::run`] waits for input (a tick, client requests,
//! peer messages), [`RaftNode::round`] is one round of it (propose, read, then every `Ready`
//! raft has), and [`RaftNode::handle_ready`] carries out one `Ready`. Below them, the two ends
//! of a write inside the node: proposing what is due at the top of a round, and applying
//! committed entries through the exactly-once table.
//!
//! The `Ready` contract. raft-rs hands the node a `Ready` holding everything
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

use std::time::Instant;

use raft::eraftpb::{Entry, EntryType, HardState, Message, MessageType};
use raft::{INVALID_ID, SnapshotStatus, StateRole};
use tokio::sync::mpsc;
use tokio_util::sync::CancellationToken;

use super::proposals::Asked;
use super::{ELECTION_TICKS, Exit, NodeError, ProposalError, RaftNode, Request, Sent};
use crate::incarnation::Incarnation;
use crate::kvstore::Apply;
use crate::mutation::{self, Mutation};
use crate::proposal::{self, Payload, ProposalId, Verdict};
use crate::transport::{AppliedAt, PeerEvent};

impl RaftNode {
    /// Runs until shut down, removed, or a fatal error (storage, the state machine's thread, a
    /// refused join).
    pub async fn run(
        mut self,
        mut requests: mpsc::Receiver<Sent>,
        mut peers: mpsc::Receiver<PeerEvent>,
        shutdown: CancellationToken,
    ) -> Exit {
        let mut ticker = tokio::time::interval(self.tick);
        ticker.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        let mut asked = Vec::with_capacity(1024);
        let mut heard = Vec::with_capacity(1024);
        // Once asked to stop: the time by which the node stops, whatever is still in flight.
        let mut stop_by: Option<Instant> = None;
        let clients_gone = self.clients_gone.clone().unwrap_or_else(|| {
            let none_to_wait_for = CancellationToken::new();
            none_to_wait_for.cancel();
            none_to_wait_for
        });
        self.check_cluster_flag();
        let exit = loop {
            let hold_until = self.hold_until();
            // Stopping with nothing in flight, and clients are still connected (else it
            // would have stopped).
            let waiting_for_clients = stop_by.is_some() && self.stopped_cleanly();
            tokio::select! {
                // Ticks before peer messages and client requests: under a flood of requests,
                // elections and heartbeats still run.
                biased;
                _ = shutdown.cancelled(), if stop_by.is_none() => {
                    stop_by = Some(self.begin_stop());
                }
                _ = tokio::time::sleep_until(stop_by.unwrap_or_else(Instant::now).into()),
                    if stop_by.is_some() =>
                {
                    if waiting_for_clients {
                        tracing::info!("stopping with client connections still open");
                    } else {
                        tracing::info!("stopping with requests still in flight");
                    }
                    break Exit::Shutdown;
                }
                _ = clients_gone.cancelled(), if waiting_for_clients => {}
                _ = ticker.tick() => self.on_tick(),
                _ = tokio::time::sleep_until(hold_until.unwrap_or_else(Instant::now).into()),
                    if hold_until.is_some() => {}
                n = peers.recv_many(&mut heard, 4096) => {
                    if n == 0 {
                        break Exit::Shutdown;
                    }
                    for event in heard.drain(..) {
                        self.on_peer_event(event);
                    }
                }
                n = requests.recv_many(&mut asked, 4096) => {
                    if n == 0 {
                        break Exit::Shutdown;
                    }
                    for sent in asked.drain(..) {
                        self.on_sent(sent);
                    }
                }
            }
            if let Some(exit) = self.round() {
                break exit;
            }
            // A client on a connection still open may send one more request before it reads
            // the answer that closes its connection: serve it (a follower forwards it to the
            // new leader) rather than refuse it.
            if stop_by.is_some() && self.stopped_cleanly() && clients_gone.is_cancelled() {
                break Exit::Shutdown;
            }
        };
        // A failure that stopped the node was noted as it stopped (see `round`): every answer
        // names it, and so does the handle's to a request that finds the node gone.
        let stop = self.shared.stop();
        self.proposals.stop(&stop);
        self.reads.stop(&stop);
        // Requests still in the inbox were never read, so never proposed: they hear that they
        // will not happen, and may be sent elsewhere. Dropped, their clients heard "may still
        // happen" (found by a review). Closed first: a request sent from now on fails to send,
        // which the handle reads the same way.
        requests.close();
        while let Ok(Sent { request, .. }) = requests.try_recv() {
            match request {
                Request::Propose { done, .. } | Request::ChangeMembers { done, .. } => {
                    let _ = done.send(Err(ProposalError::StoppedUnproposed(stop.clone())));
                }
                Request::Read(done) => {
                    let _ = done.send(Err(ProposalError::ReadStopped(stop.clone())));
                }
                // Nothing to tell: the handle says the node stopped.
                Request::Status(_) => {}
            }
        }
        if exit == Exit::Shutdown
            && let Err(err) = self.flush()
        {
            return self.failed(err);
        }
        exit
    }

    /// The node stops on `err`: the failure is noted for the answers it leaves behind (see
    /// [`Shared::stop`](crate::request::Shared::stop)), and the exit says it with its remedy.
    fn failed(&self, err: NodeError) -> Exit {
        self.shared.note_failure(err.failure());
        Exit::Fatal(err.stop_text())
    }

    /// One round after new input (a tick, requests, peer events): everything that follows
    /// from it. `Some` once the node has stopped (removed, or a fatal error): drop it.
    /// Any driver calls this after handing the node its input; [`RaftNode::run`] is the
    /// production one, a simulation another.
    pub fn round(&mut self) -> Option<Exit> {
        if let Err(err) = self.rounds_until_quiet() {
            tracing::error!(%err, "fatal; stopping the node");
            return Some(self.failed(err));
        }
        self.exit.take()
    }

    /// The rounds of readies one input sets off, until raft has no more: after the state
    /// machine's thread is checked and a snapshot being taken is polled, each handles the
    /// readies ([`Self::handle_readies`]) and then the steps that follow from them:
    /// - arrived snapshot files raft did not install are deleted;
    /// - a node that applied its own removal stops (a leader hands over first);
    /// - the peer server learns whether the members are settled (its 410 Gone);
    /// - a node that is the only voter campaigns at once;
    /// - a snapshot is taken if enough was applied;
    /// - raft's election timeout is drawn again from the node's seed if the term or role moved.
    ///
    /// Another pass only while raft has a `Ready` again and the node has not stopped.
    fn rounds_until_quiet(&mut self) -> Result<(), NodeError> {
        self.apply_tx.check().map_err(|_| NodeError::ApplyStopped)?;
        self.poll_snapshot()?;
        loop {
            self.handle_readies()?;
            self.discard_received_snapshots();
            self.maybe_stop_removed()?;
            self.publish_membership_settled();
            self.maybe_campaign_alone();
            self.maybe_trigger_snapshot()?;
            self.redraw_election_timeout_on_change();
            // A node that campaigned alone leads at once: its Ready (the leader's first entry)
            // is handled now, not at the next input, a tick away.
            if self.exit.is_some() || !self.rn.has_ready() {
                return Ok(());
            }
        }
    }

    /// Steps what is due into raft and handles the readies that follow, until there are none.
    fn handle_readies(&mut self) -> Result<(), NodeError> {
        // Proposals, reads and unreachable reports step raft, so they happen here, between
        // readies, never between `ready()` and `advance()`. Proposing again after each Ready
        // sends what a batch kept back once it is no longer held (a single node commits at
        // once, and no peer message would come to wake it).
        loop {
            // A tick or a message may have moved the term or the role.
            self.redraw_election_timeout_on_change();
            // A leader heard of since the last Ready is noted before anything is proposed to
            // it: noted after, it looked new and what had just gone to it was proposed again
            // (every start registered its session twice, found by a new-user campaign).
            self.note_leader_term();
            self.propose();
            self.release_held_reads();
            self.release_held_timeout_now();
            self.read_index();
            let dropped = std::mem::take(&mut self.dropped);
            for peer in dropped.unreachable {
                self.rn.report_unreachable(peer);
            }
            for peer in dropped.snapshots {
                self.rn.report_snapshot(peer, SnapshotStatus::Failure);
            }
            if !self.rn.has_ready() {
                return Ok(());
            }
            self.handle_ready()?;
        }
    }

    /// Handles one `Ready`.
    pub(super) fn handle_ready(&mut self) -> Result<(), NodeError> {
        let mut rd = self.rn.ready();
        super::trace::ready(self.id, &rd, &self.shared.events);
        if let Some(hs) = rd.hs() {
            self.metrics.term.set(hs.term as i64);
            self.shared
                .term
                .store(hs.term, std::sync::atomic::Ordering::Release);
        }
        if let Some(ss) = rd.ss() {
            self.on_soft_state(ss.leader_id, ss.raft_state);
        }
        self.note_leader_term();
        // 1. Leader: replicate before persisting (a commit past a membership change synced
        // first: see `sync_commit_for_conf_change`).
        if let Some(hs) = rd.hs() {
            self.sync_commit_for_conf_change(hs.commit)?;
        }
        self.send(rd.take_messages());
        // 2. A snapshot from the leader.
        if !rd.snapshot().is_empty() {
            // raft-rs hands one over only when it replaced the log (it merely commits to a
            // snapshot its log already matches): no entry beyond it is left.
            let index = rd.snapshot().get_metadata().index;
            self.conf_in_log_to = self.conf_in_log_to.min(index);
            self.install_snapshot(rd.snapshot().clone())?;
        }
        // 3. Entries committed and already durable here (a leader holds back its own removal:
        // see `commit_entries`).
        self.commit_entries(rd.take_committed_entries())?;
        // Simulator only: takes step 6's rule out again (compiled out otherwise, see
        // src/mutation.rs).
        if mutation::active(Mutation::AckBeforeSync) {
            self.send(rd.take_persisted_messages());
        }
        // 4. New entries and hard state: one write, one sync (raft says when a sync is due).
        self.note_conf_changes(rd.entries());
        self.tail.append(rd.entries());
        self.persist(rd.hs(), rd.entries(), rd.must_sync())?;
        // Before the acknowledgements below: a member that helped commit a registration
        // says so from then on.
        self.refresh_join_facts();
        // 5. ReadIndex answers.
        self.on_read_states(rd.take_read_states());
        // 6. Follower and candidate messages, now that the WAL holds what they promise.
        self.send(rd.take_persisted_messages());
        // 7. Advance and handle what that released.
        let mut light = self.rn.advance(rd);
        super::trace::light_ready(self.id, &light, &self.shared.events);
        if let Some(commit) = light.commit_index() {
            self.persist_commit(commit)?;
            self.sync_commit_for_conf_change(commit)?;
        }
        self.send(light.take_messages());
        self.commit_entries(light.take_committed_entries())?;
        self.rn.advance_apply();
        self.release_confirmed_reads()?;
        Ok(())
    }

    // The node's input: a tick, a client's request, what the transport tells of the peers.

    /// One tick of raft's clock (every `--tick-ms`).
    pub fn on_tick(&mut self) {
        self.forget_admitted_floor_once_committed();
        if self.holds_campaigns() && self.rn.raft.state != StateRole::Leader {
            // Its election timer stops just short of a campaign (see `holds_campaigns`), past
            // the leader's lease (check_quorum): once the leader is gone it votes for a
            // candidate whose log reaches the floor. Held at 0, the lease never ran out, and
            // it answered no candidate at all (found by a review).
            let top = 2 * ELECTION_TICKS as usize - 1; // raft's longest randomized timeout
            if self.rn.raft.randomized_election_timeout() != top {
                self.rn.raft.set_randomized_election_timeout(top);
            }
            let raft = &mut self.rn.raft;
            raft.election_elapsed = raft.election_elapsed.min(top - 2);
            self.ask_whether_still_a_member();
        }
        self.rn.tick();
        let now = self.now();
        let tick = self.ticks.next(now, self.leader_id() != INVALID_ID);
        let again = self.proposals.on_tick(tick);
        self.metrics.proposals_resent.inc_by(again as u64);
        for ctx in self.reads.on_tick(self.tick, tick) {
            self.ask_read_index(ctx);
        }
        if self.handover.gone_while_stopping.is_some() && self.rn.raft.state == StateRole::Leader {
            // A stopping leader: try another voter if the one it chose has not answered.
            self.hand_over(now);
        }
    }

    /// A client's request, handed to the node directly (a simulation's driver): its wait
    /// begins now.
    pub fn on_request(&mut self, request: Request) {
        let at = self.now();
        self.on_sent(Sent { request, at });
    }

    /// A client's request from the inbox: its wait began when its handle made it.
    fn on_sent(&mut self, Sent { request, at: made }: Sent) {
        let now = self.now();
        match request {
            Request::Propose { data, wait, done } => {
                self.proposals
                    .add(Asked::Command(data.into()), done, made, wait, now)
            }
            Request::ChangeMembers {
                change,
                checked_voters,
                wait,
                done,
            } => self.proposals.add(
                Asked::Change {
                    change,
                    voters: checked_voters,
                    sent_with: None,
                },
                done,
                made,
                wait,
                now,
            ),
            Request::Read(done) => {
                let tick = self.ticks.as_of(now, self.rn.raft.leader_id != INVALID_ID);
                self.reads.add(done, made, self.tick, tick);
            }
            // Not built for an asker that has gone (it gave up waiting): a status describes
            // the log's last entries.
            Request::Status(reply) if reply.is_closed() => {}
            Request::Status(reply) => {
                let _ = reply.send(self.status());
            }
        }
    }

    /// What the transport tells of the peers.
    pub fn on_peer_event(&mut self, event: PeerEvent) {
        let now = self.now();
        match event {
            PeerEvent::Step(messages) => {
                if let (Some(gone), Some(m)) =
                    (&mut self.handover.gone_while_stopping, messages.first())
                {
                    gone.remove(&m.from);
                }
                self.take_admission();
                for m in messages {
                    self.step_peer_message(m, now);
                }
            }
            PeerEvent::Unreachable(peer) => self.on_unreachable(peer),
            PeerEvent::SnapshotStatus {
                peer,
                snapshot,
                delivered,
            } => {
                let status = if delivered {
                    self.snapshot_delivered(snapshot);
                    SnapshotStatus::Finish
                } else {
                    SnapshotStatus::Failure
                };
                self.rn.report_snapshot(peer, status);
            }
            PeerEvent::RemovedByPeer { peer, as_of } => self.on_removed_by_peer(peer, as_of),
            PeerEvent::JoinRefused(reason) => {
                // Nothing was written: a joining node creates its WAL only once admitted.
                tracing::error!(%reason, "cannot join; stopping");
                self.shared.note_failure(crate::request::Failure {
                    disk_full: false,
                    error: reason.clone(),
                });
                self.exit = Some(Exit::Fatal(reason));
            }
        }
    }

    /// Steps one message from a peer into raft, with what this node does around it: no answer
    /// to a vote request below its admission floor (`joined.rs`), a heartbeat's commit kept
    /// within its log (`lost_log.rs`), a removed leader's successor waited for
    /// (`conf_change.rs`), the leader's commit index noted, a ReadIndex request held while this
    /// node leads without a commit in its term (`reads.rs`), no registration appended whose
    /// process had not applied the entries before its node's latest addition
    /// (`registration.rs`), and who it heard from.
    fn step_peer_message(&mut self, mut m: Message, now: Instant) {
        self.forget_admitted_floor_once_committed();
        if self.below_joined_at(&m) {
            return;
        }
        let lost = self.keep_heartbeat_commit_within_log(&mut m);
        self.wait_for_successor_after_own_removal(&m, now);
        self.note_received_snapshot(&m);
        self.note_leader_commit(&m);
        if m.get_msg_type() == MessageType::MsgReadIndex {
            self.step_read_index(m);
            return;
        }
        if let Some(late) = self.late_registration(&m) {
            tracing::info!(
                node = late.origin,
                added = late.latest,
                stamp = late.stamp,
                "not appending a registration of a process that had not applied the entries \
                 before its node's latest addition (sent before the node was added back, or \
                 by a joining process still catching up): it would read as a run since; a \
                 process still running registers again once it has applied them"
            );
            return;
        }
        self.forget_progress_a_follower_lost(&m);
        let (kind, from, term) = (m.get_msg_type(), m.from, m.term);
        // Late answers from removed peers and stale terms are normal; raft has already logged
        // anything worth knowing.
        if kind == MessageType::MsgTimeoutNow {
            self.step_timeout_now(m, now);
        } else if let Err(err) = self.rn.step(m) {
            tracing::debug!(%err, "raft ignored a peer message");
        }
        self.note_heard(kind, from, term, now);
        if let Some((leader, counted)) = lost {
            self.say_entries_are_missing(leader, counted);
        }
    }

    /// Notes the whole commit index the leader announced in an append or a snapshot: a node
    /// added back under its old id replays its own removal on the way, and must not take the
    /// end of one append for the end of what the leader has committed (more, with its re-add,
    /// is coming).
    fn note_leader_commit(&mut self, m: &Message) {
        match m.get_msg_type() {
            MessageType::MsgAppend => {
                // Simulator only: takes that fix out again (compiled out otherwise, see
                // src/mutation.rs).
                let commit = if mutation::active(Mutation::CappedLeaderCommit) {
                    m.commit.min(m.index + m.entries.len() as u64)
                } else {
                    m.commit
                };
                self.removal.leader_commit = self.removal.leader_commit.max(commit);
            }
            MessageType::MsgSnapshot => {
                let index = m.get_snapshot().get_metadata().index;
                self.removal.leader_commit = self.removal.leader_commit.max(index);
            }
            _ => {}
        }
    }

    /// Who this node is in touch with, for [`membership_settled`](RaftNode::membership_settled):
    /// a message stepped from `from`, counted only if it is of the current term (raft has
    /// just moved to it if it was newer), so that neither a stale leader nor a message
    /// relayed for someone else (proposals and read requests carry no term) vouches for
    /// anyone.
    fn note_heard(&mut self, kind: MessageType, from: u64, term: u64, now: Instant) {
        let raft = &self.rn.raft;
        if term != raft.term {
            return;
        }
        // Voters only: anyone else's ids would only grow the map.
        if self.conf_state.voters.contains(&from) {
            self.heard_at.insert(from, (now, term));
        }
        let from_leader = matches!(
            kind,
            MessageType::MsgAppend | MessageType::MsgSnapshot | MessageType::MsgHeartbeat
        );
        if from_leader && from == raft.leader_id {
            self.last_leader_contact = now;
        }
    }

    /// Whether voter `id` spoke within `within` of `now`, in the current term (see
    /// [`Self::note_heard`]; what it said in an earlier term vouches for nothing now).
    pub(super) fn heard_within(&self, id: u64, within: std::time::Duration, now: Instant) -> bool {
        self.heard_at.get(&id).is_some_and(|(at, term)| {
            *term == self.rn.raft.term && now.duration_since(*at) <= within
        })
    }

    // What the steps of a Ready call.

    /// raft's leader or role changed: publish it, and ask lost reads again.
    pub(super) fn on_soft_state(&mut self, leader: u64, role: StateRole) {
        tracing::info!(leader, role = ?role, term = self.rn.raft.term, "raft state changed");
        let before = self
            .shared
            .leader
            .swap(leader, std::sync::atomic::Ordering::AcqRel);
        // A leader found (or one followed by another) is known now; one lost was known until
        // now, not now (review 114 N1).
        if leader != INVALID_ID {
            self.ticks.leader_found(self.now());
        } else if before != INVALID_ID {
            self.ticks.leader_lost(self.now());
        }
        self.metrics.leader.set(leader as i64);
        // raft forgets pending ReadIndex requests when leadership moves: ask again as soon as
        // this Ready is done (not now: raft must not be stepped between ready and advance).
        self.reads.on_leader_change();
        if leader == INVALID_ID {
            // A leader found again after none was known (a pre-candidate's term does not
            // move: the same leader in the same term) is a change too: what was forwarded to
            // it meanwhile may have been dropped on the way (found by a review).
            self.leader_term = (INVALID_ID, 0);
        }
    }

    /// A leader known in a term this node has not acted on yet, or again after none was: a
    /// new leader, the same one deposed and elected again, or the same one heard again. A
    /// proposal forwarded to it meanwhile (which it dropped while it had no leader) or appended
    /// in its old term may be lost, and so may a ReadIndex request: propose and ask again as
    /// soon as this Ready is done (or at once, when a message made it known between readies:
    /// see `handle_readies`). Keyed on the term too, because raft reports no new soft state to
    /// a follower that took the new term's first message without a `Ready` in between (it saw
    /// the same leader, as a follower, before and after), and such a follower's writes waited
    /// out the resend timer (found by a review).
    fn note_leader_term(&mut self) {
        let now = (self.rn.raft.leader_id, self.rn.raft.term);
        if now.0 == INVALID_ID || now == self.leader_term {
            return;
        }
        self.leader_term = now;
        // Counted when a leader becomes known (as etcd counts them: one lost and found again
        // counts), and in a new term: losing one (an election under way) is not a change of
        // its own, or every failover would count twice.
        self.metrics.leader_changes.inc();
        self.reads.on_leader_change();
        self.proposals.on_leader_change(self.now());
    }

    /// Hands messages to the transport; whatever it could not queue is reported to raft
    /// once the Ready is done.
    pub(super) fn send(&mut self, messages: Vec<Message>) {
        if !messages.is_empty() {
            self.transport.send(messages, &mut self.dropped);
        }
    }

    /// Appends entries and the hard state to the WAL, then to raft's storage.
    pub(super) fn persist(
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
    pub(super) fn persist_commit(&mut self, commit: u64) -> Result<(), NodeError> {
        let mut hs = self.storage.mem.rl().hard_state().clone();
        hs.commit = commit;
        self.wal_mut()?.save(Some(&hs), &[], false)?;
        self.storage.mem.wl().mut_hard_state().commit = commit;
        Ok(())
    }

    // Proposing: what is due at the top of each round. Nothing is handed to raft while no
    // leader is known (raft would drop it); the requests wait for one instead.

    /// When a batch the leader holds back is due, if it holds one: a driver runs a
    /// [`RaftNode::round`] then, even with no new input.
    pub fn hold_until(&self) -> Option<Instant> {
        let raft = &self.rn.raft;
        self.proposals.hold_until(
            raft.state == StateRole::Leader,
            raft.raft_log.last_index() - raft.raft_log.committed,
            self.now(),
        )
    }

    /// Proposes what is due: this process's session registration, a fence for withdrawn
    /// requests, the batch of queued entries (unless the leader holds it back to grow it), and
    /// a membership change. Nothing while no leader is known: raft would drop it, and the
    /// requests wait for one instead.
    pub(super) fn propose(&mut self) {
        if self.leader_id() == INVALID_ID {
            return;
        }
        let now = self.now();
        if let Some(data) = self.proposals.registration_due(now)
            && let Err(err) = self.rn.step(self.registration_proposal(data))
        {
            tracing::debug!(%err, "raft dropped the session registration; asking again shortly");
            self.proposals.registration_not_sent(now, self.tick);
        }
        if let Some(data) = self.proposals.fence_due(now)
            && let Err(err) = self.rn.propose(Vec::new(), data)
        {
            tracing::debug!(%err, "raft dropped a fence; proposing it again shortly");
            self.proposals.fence_not_sent(now, self.tick);
        }
        let leading = self.rn.raft.state == StateRole::Leader;
        let uncommitted = self.rn.raft.raft_log.last_index() - self.rn.raft.raft_log.committed;
        let batch = self.proposals.take_batch(leading, uncommitted, now);
        if !batch.is_empty() {
            let (seqs, entries): (Vec<u64>, Vec<_>) = batch.into_iter().unzip();
            let mut m = Message::default();
            m.set_msg_type(MessageType::MsgPropose);
            m.from = self.id;
            m.set_entries(entries.into());
            self.step_proposal(m, &seqs, now);
        }
        self.propose_change(now);
    }

    /// Steps a proposal of the entries `seqs` into raft and records where they went.
    pub(super) fn step_proposal(&mut self, m: Message, seqs: &[u64], now: Instant) {
        let leading = self.rn.raft.state == StateRole::Leader;
        let last_before = self.rn.raft.raft_log.last_index();
        match self.rn.step(m) {
            // A leader appends a proposal at once, right after its last entry.
            Ok(()) if leading => {
                let appended = self.rn.raft.raft_log.last_index() - last_before;
                let at =
                    (appended == seqs.len() as u64).then_some((last_before + 1, self.rn.raft.term));
                self.proposals.sent(seqs, at, now);
            }
            Ok(()) => self.proposals.sent(seqs, None, now),
            Err(err) => {
                // A leader handing over leadership, or over its uncommitted limit: nothing
                // reached any log; propose again shortly.
                tracing::debug!(%err, "raft dropped a proposal; proposing again shortly");
                self.proposals.not_sent(seqs, now, self.tick);
            }
        }
    }

    // Applying: committed entries on their way to the state machine, each proposal taking
    // effect once (the exactly-once table, crate::proposal, skips copies).

    /// Hands committed entries on ([`RaftNode::publish_entries`]), except that a leader holds
    /// back its own removal and everything after it until it has handed leadership over (see
    /// [`RaftNode::maybe_stop_removed`]). Applied at once, the removal would take the leader's
    /// own progress out of raft-rs, which unwraps it whenever the commit index moves; and a
    /// leader that went at once could leave the others counting it as a voter.
    pub(super) fn commit_entries(&mut self, mut entries: Vec<Entry>) -> Result<(), NodeError> {
        if !self.removal.held_after_own_removal.is_empty() {
            self.removal.held_after_own_removal.append(&mut entries);
            return Ok(());
        }
        let result = self.commit_in_order(entries);
        self.refresh_join_facts();
        result
    }

    /// [`commit_entries`](Self::commit_entries) with no entries held back yet.
    fn commit_in_order(&mut self, mut entries: Vec<Entry>) -> Result<(), NodeError> {
        if self.rn.raft.state == StateRole::Leader {
            // A removal is judged against the members as applied before it, so each change
            // in the batch is applied before the next is judged: a new leader may commit
            // several at once (its log's tail from the leader before), and a removal checked
            // against the voters an earlier one makes would look like one to be skipped
            // (found by a review).
            while let Some(at) = entries
                .iter()
                .position(|e| e.get_entry_type() != EntryType::EntryNormal)
            {
                if self.removes_self(&entries[at]) {
                    tracing::info!(
                        index = entries[at].index,
                        "this leader's removal committed; handing leadership over before \
                         applying it"
                    );
                    self.removal.held_after_own_removal = entries.split_off(at);
                    self.removal.removed_while_leading = Some(self.now());
                    break;
                }
                let rest = entries.split_off(at + 1);
                self.publish_entries(std::mem::replace(&mut entries, rest))?;
            }
        }
        self.publish_entries(entries)
    }

    /// Hands committed entries to the state machine, in order: each proposal takes effect
    /// once (the exactly-once table skips copies), conf changes are applied to raft here, and
    /// the waiters of this node's requests go along, answered once the batch is applied.
    pub(super) fn publish_entries(&mut self, mut entries: Vec<Entry>) -> Result<(), NodeError> {
        let Some((last, last_term)) = entries.last().map(|e| (e.index, e.term)) else {
            return Ok(());
        };
        self.sync_commit_for_conf_change(last)?;
        // Copies skipped below still weigh on the log.
        self.log_bytes.applied(&entries);
        let now = self.now();
        let mut done = Vec::new();
        let mut effective = Vec::with_capacity(entries.len());
        for entry in &entries {
            let (id, verdict) = self.admit(entry, now);
            let result = match (entry.get_entry_type(), verdict) {
                (_, Verdict::Duplicate | Verdict::StaleSession) => Ok(()),
                (EntryType::EntryNormal, Verdict::Apply) => Ok(()),
                (_, Verdict::Apply) => {
                    let applied = self.apply_conf_change(entry);
                    if let (Err(_), Some(id)) = (&applied, id) {
                        // So that a node answering it from a snapshot later says 409 too.
                        self.sessions.note_skipped_change(id);
                    }
                    applied
                }
            };
            effective.push(verdict == Verdict::Apply);
            let waiter = self
                .proposals
                .on_committed(entry.index, entry.term, id, verdict);
            let changed_members = result.is_ok()
                && verdict == Verdict::Apply
                && entry.get_entry_type() != EntryType::EntryNormal;
            match (waiter, result) {
                (Some(w), Ok(())) => done.push(w),
                (Some(w), Err(err)) => {
                    let _ = w.send(Err(err));
                }
                (None, _) => {}
            }
            if changed_members {
                // This node's removal forgot its session (once the entry itself is answered:
                // it may be this node's own request); if the node is added back before it
                // stops, it serves what it had in flight under a new one.
                self.proposals
                    .after_membership_change(&self.sessions, &self.members, now);
            }
        }
        self.proposals.settle(&self.sessions);
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
        // After the table was published (`admit`): a session is never in neither.
        self.publish_applied(AppliedAt {
            index: last,
            term: last_term,
        });
        self.tail.applied(last);
        self.refresh_join_facts();
        self.check_cluster_flag();
        Ok(())
    }

    /// Runs a committed entry through the exactly-once table: its identity, if it has one,
    /// and whether it takes effect. A session registration is recorded here.
    pub(super) fn admit(
        &mut self,
        entry: &Entry,
        now: std::time::Instant,
    ) -> (Option<ProposalId>, Verdict) {
        let found = match entry.get_entry_type() {
            EntryType::EntryNormal => match proposal::decode(&entry.data) {
                Ok(Payload::Proposal { id, floor, .. }) => Some((id, floor)),
                Ok(Payload::Register { origin, nonce }) => {
                    if let Some(n) = self.incarnation.note_registration(nonce) {
                        tracing::info!(
                            index = entry.index,
                            incarnation = crate::incarnation::hex(n),
                            "the cluster's first session registration names its incarnation"
                        );
                        self.tell_transport_incarnation(n);
                    }
                    self.sessions.register(origin, nonce, entry.index);
                    self.publish_join_facts();
                    self.proposals.on_registration(origin, &self.sessions, now);
                    None
                }
                Ok(Payload::Fence {
                    origin,
                    session,
                    floor,
                }) => {
                    self.sessions.raise_floor(origin, session, floor);
                    None
                }
                // Written by an older version, or undecodable (the state machine says so):
                // applies as it is, on every node alike.
                Ok(Payload::Plain(_)) | Err(_) => None,
            },
            EntryType::EntryConfChange | EntryType::EntryConfChangeV2 => {
                proposal::decode_context(&entry.context).map(|c| (c.id, c.floor))
            }
        };
        match found {
            Some((id, floor)) => (Some(id), self.sessions.admit(id, floor)),
            None => (None, Verdict::Apply),
        }
    }

    /// Publishes the last entry this node has applied: for its answers to joining nodes (the
    /// term first, see `Shared::applied_term`), and for the peer server, which judges a removed
    /// node's vote requests by it (a candidate whose log is no further was not added back
    /// since).
    pub(super) fn publish_applied(&self, at: AppliedAt) {
        use std::sync::atomic::Ordering::Release;
        self.shared.applied_term.store(at.term, Release);
        self.shared.applied.store(at.index, Release);
        self.transport.set_applied(at);
    }

    /// Replaces the incarnation with a snapshot's; the transport checks peers with it once
    /// it is known. One already known stays in the transport when the snapshot's is not
    /// (a leader restored from an older version's snapshot): it came from this same log.
    pub(super) fn set_incarnation(&mut self, incarnation: Incarnation) {
        self.incarnation = incarnation;
        if let Some(n) = incarnation.known() {
            self.tell_transport_incarnation(n);
        }
    }

    /// Gives the transport the incarnation this node applied. A joining node's transport may
    /// hold its admitters' already, from the same run, so the same value; if not, that is a
    /// bug, said loudly, and what was applied wins: it is this node's replicated state.
    fn tell_transport_incarnation(&self, applied: u64) {
        let before = self.transport.set_incarnation(applied);
        if before != 0 && before != applied {
            tracing::error!(
                adopted = format!("{before:x}"),
                applied = format!("{applied:x}"),
                "the incarnation this node adopted from its admitters differs from the one it \
                 applied (a bug); it checks its peers with the applied one from now on"
            );
        }
    }
}
