//! Membership changes: proposing one (checked first, so that a change raft would drop or
//! ignore is refused with a reason), applying one to raft, the member list and the transport,
//! and what a node does about its own removal: it stops once it has applied everything the
//! leader committed and is still out, or when a peer that is not behind says it is out. Also
//! what the peer server's 410 Gone rests on: whether the members this node applied are the
//! cluster's latest as far as it can tell ([`RaftNode::membership_settled`]).

use std::time::Instant;

use raft::eraftpb::{
    ConfChangeSingle, ConfChangeType, ConfChangeV2, Entry, EntryType, Message, MessageType,
};
use raft::{INVALID_ID, StateRole};

use super::{ELECTION_TICKS, Exit, MemberChange, NodeError, ProposalError, RaftNode};
use crate::membership::{decode_conf_change, same_place, same_url};

/// What this node knows and does about its own removal (see `maybe_stop_removed`).
pub(super) struct Removal {
    /// This node applied its own removal; it stops unless more of the log adds it back.
    pub(super) removal_pending: bool,
    /// Said, once, that its own log at the start removes it (see `maybe_stop_removed`).
    pub(super) said_removed_at_start: bool,
    /// When this node, leading, saw its own removal commit: it hands leadership over before
    /// it applies it.
    pub(super) removed_while_leading: Option<Instant>,
    /// Committed entries from this leader's own removal on, held back until it has handed
    /// leadership over.
    pub(super) held_after_own_removal: Vec<raft::eraftpb::Entry>,
    /// Log index of the latest change that made this node a member (a snapshot that shows it
    /// a member stands for one at its index): a peer that counts it as removed as of an
    /// earlier index is behind.
    pub(super) added_at: u64,
    /// The highest commit index a leader has announced to this node in an append.
    pub(super) leader_commit: u64,
    /// A removed leader asked for its vote by a successor (which may not know that the
    /// removal committed, and then counts this node as a voter it needs) goes only once a
    /// leader has announced a commit index at least this high: what this node had committed.
    pub(super) commit_to_hear: u64,
}

impl RaftNode {
    /// Proposes the pending membership change, checked first (the first time) so that a
    /// change raft would drop or ignore is refused with a reason instead. A leader holds it
    /// back while raft-rs counts a change pending for a reason of its own (see below).
    pub(super) fn propose_change(&mut self, now: Instant) {
        let Some(next) = self.proposals.take_change(now, &self.voter_ids()) else {
            return;
        };
        if !next.again
            && let Err(err) = self.check_conf_change(&next.change)
        {
            self.proposals.refuse_change(next.seq, err);
            return;
        }
        if next.change == (MemberChange::Remove { id: self.id })
            && self.rn.raft.state == StateRole::Leader
        {
            // A leader that removed itself would leave at once, and if its last append did not
            // reach the others (in a two-voter cluster, the one other voter), they would keep
            // it as a member and never elect anyone. As etcd does, hand leadership over first;
            // the new leader then commits the removal (this node forwards it once it follows).
            self.hand_over(now);
            self.proposals.not_sent(&[next.seq], now, self.tick);
            return;
        }
        if self.rn.raft.state == StateRole::Leader && self.rn.raft.has_pending_conf() {
            // raft-rs would turn the change into an empty entry and still return Ok. A new
            // leader counts its whole log as of its election pending until it has applied it,
            // which under writes is a round trip away: the change waits for that, and the
            // client's timeout bounds the wait. A first attempt gets here only with no change
            // in the unapplied log (the check above refuses it otherwise); one proposed before,
            // when this node followed, waits either way, as that change may be its own copy.
            self.proposals.change_waits(next.seq);
            return;
        }
        let mut cc = ConfChangeV2::default();
        let mut single = ConfChangeSingle::default();
        match &next.change {
            MemberChange::Add { id, url } => {
                single.set_change_type(ConfChangeType::AddNode);
                single.node_id = *id;
                cc.context = url.clone().into_bytes().into();
            }
            MemberChange::Remove { id } => {
                single.set_change_type(ConfChangeType::RemoveNode);
                single.node_id = *id;
            }
        }
        cc.mut_changes().push(single);
        let leading = self.rn.raft.state == StateRole::Leader;
        let last_before = self.rn.raft.raft_log.last_index();
        match self.rn.propose_conf_change(next.context, cc) {
            Ok(()) => {
                let appended = self.rn.raft.raft_log.last_index() == last_before + 1;
                let at = (leading && appended).then_some((last_before + 1, self.rn.raft.term));
                self.proposals.sent(&[next.seq], at, now);
            }
            Err(err) => {
                tracing::debug!(%err, "raft dropped a membership change; proposing again shortly");
                self.proposals.not_sent(&[next.seq], now, self.tick);
            }
        }
    }

    /// The checks that make a change's answer precise: raft itself would drop an overlapping
    /// change silently, and accept a duplicate add as a no-op. Also, before anything is
    /// proposed, a member's URL in another spelling (`localhost` for `127.0.0.1`): a voter
    /// added there would be one nobody can be (found by a hands-on test). That check is not
    /// part of `makes_sense`, whose rules every node applies to committed changes alike and
    /// must not change.
    pub(super) fn check_conf_change(&self, change: &MemberChange) -> Result<(), ProposalError> {
        if self.conf_change_pending() {
            return Err(ProposalError::ChangePending);
        }
        self.makes_sense(change)?;
        if let MemberChange::Add { id, url } = change
            && let Some((other, _)) = self
                .members
                .urls
                .iter()
                .find(|(other, used)| *other != id && same_place(used, url))
        {
            return Err(ProposalError::UrlInUse {
                url: url.clone(),
                id: *other,
            });
        }
        Ok(())
    }

    /// Whether `change` makes sense against the members as of what this node has applied: an
    /// id added is not a member and its URL is not another member's; an id removed is a
    /// member and not the last voter.
    fn makes_sense(&self, change: &MemberChange) -> Result<(), ProposalError> {
        match change {
            MemberChange::Add { id, url } => {
                if self.members.contains(*id) {
                    return Err(ProposalError::AlreadyMember(*id));
                }
                if let Some(other) = self.members.id_with_url(url, *id) {
                    return Err(ProposalError::UrlInUse {
                        url: url.clone(),
                        id: other,
                    });
                }
            }
            MemberChange::Remove { id } => {
                if !self.members.contains(*id) {
                    return Err(ProposalError::NotMember(*id));
                }
                if self.conf_state.voters.iter().all(|v| v == id) {
                    return Err(ProposalError::LastVoter(*id));
                }
            }
        }
        Ok(())
    }

    /// Whether a membership change (of another node's making: this node's own is refused
    /// before it gets here) is proposed but not yet applied: one is in the unapplied log.
    /// raft-rs's flag alone would not do for a leader: a new leader counts its whole log as
    /// of its election pending (`become_leader` sets `pending_conf_index` to the last index,
    /// unseen), and a change refused on it was refused for a change nobody had made (found by
    /// a review). It only spares a leader the look when it says none.
    pub(super) fn conf_change_pending(&self) -> bool {
        let raft = &self.rn.raft;
        if raft.state == StateRole::Leader && !raft.has_pending_conf() {
            return false;
        }
        // A follower does not track pending changes.
        self.conf_change_in(self.applied + 1, raft.raft_log.last_index())
    }

    /// Whether raft's log holds a membership change from `first` to `last`, both included.
    pub(super) fn conf_change_in(&self, first: u64, last: u64) -> bool {
        if first > last {
            return false;
        }
        self.rn
            .raft
            .raft_log
            .slice(first, last + 1, None, raft::GetEntriesContext::empty(false))
            .unwrap_or_default()
            .iter()
            .any(|e| {
                matches!(
                    e.get_entry_type(),
                    EntryType::EntryConfChange | EntryType::EntryConfChangeV2
                )
            })
    }

    /// Applies one committed conf change to raft, the member list and the transport, unless
    /// it no longer holds (see [`still_holds`](Self::still_holds)).
    pub(super) fn apply_conf_change(&mut self, entry: &Entry) -> Result<(), ProposalError> {
        let cc = match decode_conf_change(entry) {
            Ok(cc) => cc,
            Err(err) => {
                // Every node skips it alike, so they stay in step.
                tracing::error!(index = entry.index, %err, "skipping undecodable conf change");
                return Err(ProposalError::Rejected(err.to_string()));
            }
        };
        if let Err(err) = self.still_holds(&cc, entry) {
            tracing::info!(index = entry.index, %err, "membership change skipped");
            return Err(err);
        }
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
                    members.add(id, url, entry.index);
                    if id == self.id {
                        self.removal.added_at = entry.index;
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
                        self.removal.removal_pending = true;
                    }
                }
            }
        }
        self.set_members(members);
        // Who ran since added changes with either: a removal forgets the session, an addition
        // makes an earlier one count no more.
        self.publish_join_facts();
        Ok(())
    }

    /// Whether a committed change proposed by a node of this version (its context names it
    /// and the voters it was checked against) still makes sense against the membership it
    /// comes to: the voters are still those, an id added is not a member and its URL is not
    /// another member's, an id removed is a member and not the last. Each proposing node
    /// checked that against what it had applied, but two nodes can each pass one change
    /// before either is applied, and a change raft dropped while another was pending is
    /// proposed again later. Judged only by replicated state (the members as of this entry),
    /// so every node skips the same changes; these rules are part of the replicated state
    /// machine, and changing them needs the same care as changing how entries apply.
    /// Bootstrap entries, raft's own, and changes written by versions that did not record
    /// their voters are applied as they are.
    fn still_holds(&self, cc: &ConfChangeV2, entry: &Entry) -> Result<(), ProposalError> {
        // Only changes that recorded their voters are judged: what earlier versions wrote
        // (with an identity, but no voters) they applied unchecked, and a replay of their WAL
        // or a peer restored from their snapshot must come to the same members.
        let Some(checked) = crate::proposal::decode_context(&entry.context).and_then(|c| c.voters)
        else {
            return Ok(());
        };
        let voters = self.voter_ids();
        if checked != voters {
            return Err(ProposalError::MembershipChanged {
                checked,
                now: voters,
            });
        }
        let url = String::from_utf8_lossy(&cc.context).into_owned();
        for change in cc.get_changes() {
            let id = change.node_id;
            match change.get_change_type() {
                ConfChangeType::AddNode | ConfChangeType::AddLearnerNode => {
                    let url = url.clone();
                    self.makes_sense(&MemberChange::Add { id, url })?
                }
                ConfChangeType::RemoveNode => self.makes_sense(&MemberChange::Remove { id })?,
            }
        }
        Ok(())
    }

    /// The members' ids, ascending: what a change records as the voters it was checked
    /// against.
    fn voter_ids(&self) -> Vec<u64> {
        self.members.urls.keys().copied().collect()
    }

    /// Whether `entry` removes this node from the cluster (and will be applied: a change that
    /// no longer holds is skipped; judged against the members as applied so far, so every
    /// change before it must have been applied: see [`RaftNode::commit_entries`]).
    pub(super) fn removes_self(&self, entry: &Entry) -> bool {
        entry.get_entry_type() != EntryType::EntryNormal
            && decode_conf_change(entry).is_ok_and(|cc| {
                cc.get_changes().iter().any(|c| {
                    c.node_id == self.id && c.get_change_type() == ConfChangeType::RemoveNode
                }) && self.still_holds(&cc, entry).is_ok()
            })
    }

    /// Once the log this node started with is applied: warns of each member that `--cluster`
    /// places elsewhere than the log does (past the list the data dir was bootstrapped with,
    /// which a start holds to, moved members and all). The log's URL is used, as a member's
    /// URL is part of the replicated membership; someone who edited `--cluster` to move a
    /// member would otherwise never learn that it moved nothing.
    pub(super) fn check_cluster_flag(&mut self) {
        if self.applied < self.commit_at_start {
            return;
        }
        let Some(listed) = self.cluster_flag.take() else {
            return;
        };
        for (id, listed) in listed {
            let Some(url) = self.members.urls.get(&id).filter(|url| !url.is_empty()) else {
                continue;
            };
            if id != self.id && !same_url(url, &listed) {
                tracing::warn!(
                    "--cluster lists node {id} at {listed}, but the cluster's log has it at \
                     {url}: the log's URL is used (a member moves by being removed and added \
                     back at its new URL: DELETE /{id}, then POST /{id})"
                );
            }
        }
    }

    /// Replaces the member list and brings the transport in line with it.
    pub(super) fn set_members(&mut self, members: crate::membership::Members) {
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
        self.transport.set_removed(&members.removed);
        self.members = members;
    }

    /// This node is a member after all: what it kept of a removal committed while it led
    /// (when, and the commit index it waits to hear from a successor) no longer applies.
    fn forget_removal_while_leading(&mut self) {
        self.removal.removed_while_leading = None;
        self.removal.commit_to_hear = 0;
    }

    /// Stops the node once it has applied its own removal and everything the leader has
    /// committed since, and is still not a member (a node re-added under its old id replays
    /// its removal first, then the entry that added it back).
    /// A node started on a data dir whose log, as far as it knows it committed, removes it:
    /// it serves until a leader says more or its patience runs out, which read as a start that
    /// worked until it stopped (found by a user). Said once it has applied all it knew
    /// committed at the start, not at the removal itself: a log that adds it back later
    /// replays the removal first (a first version warned those too: found by a review).
    fn say_removed_at_start(&mut self) {
        if self.removal.said_removed_at_start
            || self.removal.leader_commit > 0
            || self.rn.raft.state == StateRole::Leader
            || self.applied < self.rn.raft.raft_log.committed
        {
            return;
        }
        self.removal.said_removed_at_start = true;
        // The URL it listens on (its --cluster entry), so that the POST can be pasted.
        let url = match self.wal_plan.peer_url.as_str() {
            "" => "its peer URL",
            url => url,
        };
        tracing::warn!(
            applied = self.applied,
            "this node's own log removes it from the cluster: unless a leader says it was added \
             back since, it stops within {:?} (to add it back, POST /{} with {url} on a \
             member)",
            self.tick * 60,
            self.id
        );
    }

    pub(super) fn maybe_stop_removed(&mut self) -> Result<(), NodeError> {
        if !self.removal.held_after_own_removal.is_empty() {
            // A leader holding back its own removal: it hands leadership to a voter that has
            // the removal in its log (that voter then commits it in its own term, and everyone
            // learns of it), and applies it once it follows, or once it has waited long enough.
            let now = self.now();
            let since = self.removal.removed_while_leading.unwrap_or(now);
            let leading = self.rn.raft.state == StateRole::Leader;
            let waited_out = now.duration_since(since) >= self.tick * (2 * ELECTION_TICKS);
            if leading && !waited_out && self.hand_over(now) {
                return Ok(());
            }
            let held = std::mem::take(&mut self.removal.held_after_own_removal);
            self.publish_entries(held)?;
            if self.members.contains(self.id) {
                // The removal was skipped after all (a copy, or of a session that was gone):
                // nothing is left to hand over for.
                self.forget_removal_while_leading();
            }
        }
        if self.rn.raft.state == StateRole::Leader {
            // A leader knows what is committed: its own commit index (a leader that committed
            // its own removal and handed over stops once it has applied that far).
            self.removal.leader_commit = self
                .removal
                .leader_commit
                .max(self.rn.raft.raft_log.committed);
        }
        if !self.removal.removal_pending {
            return Ok(());
        }
        // Only a leader's commit index says whether more is coming: a process that has not
        // heard one (`leader_commit` 0) does not know. A node added back under its old id and
        // restarted in the middle of its catch-up replays its WAL up to its own old removal,
        // and would otherwise stop at once, on every start (found by the simulator, tests/sim).
        // A node removed for good learns it from a peer's 410 when it campaigns, or gives up:
        // a leader stops sending to a node once it applied the removal; three of the longest
        // election timeouts without a word means nothing more is coming.
        // A leader that took over from this node and still counts it as a voter speaks to it
        // every tick; one that does not (it applied the removal) falls silent: two election
        // timeouts of silence say so. Not once a leader has announced entries committed past
        // what this node applied: a leader that counts it speaks, the entries may add it back,
        // and the silence may be the leader's fall (CheckQuorum, if this node's answers were
        // cut) rather than a removal applied; the cluster may need this node to elect the next
        // (found by the simulator: long seed 12802394).
        let missing_committed = self.removal.leader_commit > self.applied;
        let successor_silent = self.removal.removed_while_leading.is_some() && !missing_committed;
        let patience = if successor_silent {
            self.tick * (2 * ELECTION_TICKS)
        } else {
            self.tick * 60
        };
        let abandoned = self.now().duration_since(self.last_leader_contact) > patience;
        if self.members.contains(self.id) {
            tracing::info!("this node was added back to the cluster");
            self.removal.removal_pending = false;
            self.forget_removal_while_leading();
        } else {
            self.say_removed_at_start();
            let leading = self.rn.raft.state == StateRole::Leader;
            let told = self.removal.leader_commit > 0
                && self.removal.leader_commit >= self.removal.commit_to_hear
                && self.applied >= self.removal.leader_commit;
            if !(leading || told || abandoned) {
                return Ok(());
            }
            if abandoned && !leading && !told && !successor_silent {
                // A guess: say what it rests on, and what to do if it is wrong.
                tracing::warn!(
                    "this node has applied its own removal, and no leader has told it more for \
                     {:?}: taking it as removed for good. If it was added back since, start it \
                     again once the cluster has a leader (GET /-/members on a member lists it); \
                     if at another peer URL, start it at that one with --join and no data",
                    self.tick * 60
                );
            }
            // A leader still leading here could not hand over in time; it must not step raft
            // again (its own progress is gone), so it goes now. The original's words, so its
            // users recognise the event.
            tracing::warn!("I've been removed from the cluster! Shutting down.");
            self.exit = Some(Exit::Removed);
        }
        Ok(())
    }

    /// A peer answered a vote request with 410 Gone: as of its log index `as_of`, this node
    /// is removed. Peers answer 410 only to vote requests, which a removed node that missed
    /// its removal sends once it stops hearing from a leader. The peer may be behind, though:
    /// judged against the latest change for this node, not "ever removed".
    pub(super) fn on_removed_by_peer(&mut self, peer: u64, as_of: Option<u64>) {
        if self.rn.raft.state == StateRole::Leader {
            // A leader sends no vote requests: a late answer from before it was added back.
            return;
        }
        let current =
            removal_is_current(self.members.contains(self.id), self.removal.added_at, as_of);
        if current {
            self.forget_admitted_floor_once_committed();
        }
        if !current || self.removal_behind_floor(as_of) {
            tracing::info!(
                peer,
                as_of,
                added_at = self.removal.added_at,
                "peer {peer} still counts this node as removed, but it was added back since; \
                 the peer is behind"
            );
            return;
        }
        tracing::warn!(
            peer,
            "the cluster removed this node (peer {peer} refuses its messages); shutting down"
        );
        self.exit = Some(Exit::Removed);
    }

    /// This node led when its removal committed. A candidate asking for its vote still counts
    /// it as a voter: if the append that told it the removal committed was lost, it needs this
    /// node to commit anything (with two voters, for good). So the commit index this node
    /// counted as leader no longer tells it that it may go; the new leader's must reach it
    /// (found by a review).
    pub(super) fn wait_for_successor_after_own_removal(&mut self, m: &Message, now: Instant) {
        if m.get_msg_type() != MessageType::MsgRequestVote
            || m.term <= self.rn.raft.term
            || self.removal.removed_while_leading.is_none()
        {
            return;
        }
        self.removal.commit_to_hear = self
            .removal
            .commit_to_hear
            .max(self.rn.raft.raft_log.committed);
        self.removal.leader_commit = 0;
        self.last_leader_contact = now;
    }

    /// Moves [`conf_in_log_to`](RaftNode::conf_in_log_to) for `entries`, which are about to
    /// join the log: they replace every entry from the first one's index on, and may hold a
    /// membership change themselves.
    pub(super) fn note_conf_changes(&mut self, entries: &[Entry]) {
        let Some(first) = entries.first() else {
            return;
        };
        let last_change = entries.iter().rev().find(|e| {
            matches!(
                e.get_entry_type(),
                EntryType::EntryConfChange | EntryType::EntryConfChangeV2
            )
        });
        let kept = self.conf_in_log_to.min(first.index.saturating_sub(1));
        self.conf_in_log_to = kept.max(last_change.map_or(0, |e| e.index));
    }

    /// Makes the commit index `commit` (at most what the WAL holds) durable when it covers a
    /// membership change, before anything acts on it: before a leader sends it (a follower
    /// may apply its own removal, stop, and be wiped), and before this node applies and
    /// answers the change. A commit index is otherwise written without a sync, as a lost one
    /// is learned again from the leader; but a node that a change leaves the only voter has
    /// no leader to learn it from: one that answered the removal of the other voter, then lost
    /// its unsynced pages (a failed sync), restarted counting that voter again and could not
    /// be elected without it, removed and wiped meanwhile (found by the simulator: long seed
    /// 857; the leader's send before its sync, by a review).
    pub(super) fn sync_commit_for_conf_change(&mut self, commit: u64) -> Result<(), NodeError> {
        let commit = commit.min(self.rn.raft.raft_log.persisted);
        if commit <= self.conf_commit_checked {
            return Ok(());
        }
        let from = self.conf_commit_checked + 1;
        // The log is read only when it may hold a change past what was checked: rarely.
        if self.conf_in_log_to >= from && self.conf_change_in(from, commit) {
            let mut hs = self.storage.mem.rl().hard_state().clone();
            hs.commit = hs.commit.max(commit);
            self.wal_mut()?.save(Some(&hs), &[], true)?;
            self.storage.mem.wl().mut_hard_state().commit = hs.commit;
        }
        self.conf_commit_checked = commit;
        Ok(())
    }

    /// Publishes [`membership_settled`](Self::membership_settled) for the peer server, after
    /// every round (it also changes with time alone: a leader heard from no more).
    pub(super) fn publish_membership_settled(&self) {
        let settled = self.membership_settled();
        self.shared
            .membership_settled
            .store(settled, std::sync::atomic::Ordering::Release);
    }

    /// Whether the members this node has applied are the cluster's latest as far as it can
    /// tell, for the peer server's 410 Gone (`transport::gone_as_of`): it leads with every
    /// membership change in its log applied (a leader's log holds every committed entry, and
    /// raft-rs counts a new leader's whole unapplied tail as pending), or it follows a leader
    /// and has applied an entry of that leader's term with no membership change left
    /// unapplied in its log. A leader's first entry of its term follows every entry committed
    /// before it, so such a follower has applied all of those (a member that has just heard of
    /// a new leader, but not received what it missed, has not).
    ///
    /// That holds up to the newest term this node knows of; a newer one may have begun
    /// elsewhere if it is cut off from the rest. So also only while it is in touch: a leader
    /// that heard from a quorum of voters, a follower that heard from its leader, within half
    /// an election timeout (the rest need at least an election timeout to elect another
    /// leader, which must then add a node back, which must then wait out an election timeout
    /// of its own before it asks for votes). And not while a leader holds back entries after
    /// its own removal (raft counts them applied; the members do not show them yet).
    fn membership_settled(&self) -> bool {
        if !self.removal.held_after_own_removal.is_empty() {
            return false;
        }
        let raft = &self.rn.raft;
        let now = self.now();
        let within = self.tick * (ELECTION_TICKS / 2);
        let lately = |at: Instant| now.duration_since(at) <= within;
        match raft.state {
            StateRole::Leader => {
                let voters = &self.conf_state.voters;
                let heard = voters
                    .iter()
                    .filter(|v| **v == self.id || self.heard_within(**v, within, now))
                    .count();
                !raft.has_pending_conf() && heard * 2 > voters.len()
            }
            StateRole::Follower => {
                raft.leader_id != INVALID_ID
                    && lately(self.last_leader_contact)
                    && raft
                        .raft_log
                        .term(self.applied)
                        .is_ok_and(|t| t == raft.term)
                    && self.conf_in_log_to <= self.applied
            }
            _ => false,
        }
    }
}

/// Whether a peer's "removed as of log index `as_of`" is news to this node: it is, unless this
/// node is a member by what it has applied and was made one after `as_of` (the peer is behind:
/// it has not applied the re-addition). A peer that gives no index is believed.
fn removal_is_current(member: bool, added_at: u64, as_of: Option<u64>) -> bool {
    match as_of {
        Some(as_of) => !(member && added_at > as_of),
        None => true,
    }
}

#[cfg(test)]
mod removal_tests {
    use super::removal_is_current;

    #[test]
    fn a_removal_counts_unless_this_node_was_added_back_after_it() {
        // Added back at 21; the peer's state is as of 10: it is behind.
        assert!(!removal_is_current(true, 21, Some(10)));
        // The peer's state is newer than the re-addition: removed again.
        assert!(removal_is_current(true, 21, Some(30)));
        // Not a member here (applied its removal, or never re-added): believed.
        assert!(removal_is_current(false, 21, Some(10)));
        // A peer that gives no index is believed.
        assert!(removal_is_current(true, 21, None));
    }
}
