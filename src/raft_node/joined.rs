//! A node started with `--join` on an empty data dir, once the members admitted it
//! (`transport::join`): what it starts from. Its log is empty, and raft grants an empty log's
//! vote to any candidate and follows a leader of any term, so a member removed while cut off,
//! still running with the voters it had (the node among them when it is added back under its
//! old id), could win an election with that one vote and a log missing committed entries, or
//! go on leading with its acknowledgements. The members' answers say the last entry they had
//! applied and their current term ([`Admission`]): the node starts in that term, and until its
//! own log commits that entry it answers no vote request for a log that ends before it, as a
//! voter holding the entry would refuse it. The entry and the term are kept in the WAL's
//! metadata for a restart before then.

use raft::INVALID_ID;
use raft::eraftpb::{Message, MessageType};

use super::{ELECTION_TICKS, RaftNode};
use crate::transport::Admission;
use crate::wal::JoinedAt;

/// A node admitted on an empty data dir: the floor its admitters set, and how it asks whether
/// it is still a member while its campaigns are held.
pub(super) struct JoinState {
    /// A node that joined on an empty data dir, until its log commits this far: the last entry
    /// the members that admitted it had applied (see `joined`).
    pub(super) joined_at: Option<JoinedAt>,
    /// Ticks since this node, its campaigns held and no leader known, last asked its voters
    /// whether it is still a member (see `ask_whether_still_a_member`).
    pub(super) held_silent_ticks: usize,
    /// The other ids of `--cluster`: whom a node whose campaigns are held asks when it knows
    /// no voters (see `ask_whether_still_a_member`).
    pub(super) listed: Vec<u64>,
}

impl RaftNode {
    /// Takes what the members that admitted this node had seen, before the first message
    /// from the cluster is stepped (the transport knows it before it lets any message in), so
    /// before the WAL is created. Only once: on a node that has persisted nothing yet.
    pub(super) fn take_admission(&mut self) {
        if self.wal.is_some() || self.join.joined_at.is_some() {
            return;
        }
        if crate::mutation::active(crate::mutation::Mutation::NoJoinFloor) {
            return;
        }
        let Some(Admission { applied, term }) = self.transport.admission() else {
            return;
        };
        // Without a term (a member of a build that said only the index), the entry marks
        // nothing a candidate's log can be compared with.
        if applied.index > 0 && applied.term > 0 {
            self.join.joined_at = Some(JoinedAt {
                index: applied.index,
                term: applied.term,
                in_term: term,
            });
        }
        self.start_in_term(term);
        tracing::info!(
            applied = applied.index,
            applied_term = applied.term,
            term,
            "admitted: starting in the members' term, voting only for logs that reach what \
             they had applied"
        );
    }

    /// On a start from a WAL that says this node joined and has not committed that far yet:
    /// starts in its admitters' term, should the WAL not have it (see [`JoinedAt::in_term`]).
    pub(super) fn restart_joined(&mut self, at: JoinedAt) {
        if self.rn.raft.raft_log.committed >= at.index {
            return;
        }
        self.join.joined_at = Some(at);
        self.start_in_term(at.in_term);
    }

    /// Moves to the admitters' `term` if this node is behind it, following no leader yet.
    fn start_in_term(&mut self, term: u64) {
        if term > self.rn.raft.term {
            self.rn.raft.become_follower(term, INVALID_ID);
        }
    }

    /// The entry its admitters had applied, while this node's log has not committed that far
    /// (not the proposals' `floor`, the lowest pending sequence number).
    fn admitted_floor(&self) -> Option<JoinedAt> {
        self.join
            .joined_at
            .filter(|at| self.rn.raft.raft_log.committed < at.index)
    }

    /// Forgets the admitted floor once this node's log has committed that far: its own log
    /// holds the entry now, and raft's own comparison covers it. Called where the floor is
    /// asked, before each question, as it always was: whether it is still set decides what the
    /// WAL created at a joining node's first write records, and whether the admission is taken.
    pub(super) fn forget_admitted_floor_once_committed(&mut self) {
        if self.join.joined_at.is_some() && self.admitted_floor().is_none() {
            self.join.joined_at = None;
        }
    }

    /// Whether this node must not campaign: its own log ends before the entry its admitters
    /// had applied. Such a candidate could win only with the votes of nodes missing committed
    /// entries too (a removed member still running, cut off from the rest: the floor keeps
    /// this node from voting for one, not from being one), and would overwrite what it lacks
    /// (found by the simulator: long seed 10502520, a snapshot from before the node's removal
    /// took its log back below the floor, and it led with such a vote). A log that can win a
    /// legitimate election reaches the entry, so this costs none.
    pub(super) fn holds_campaigns(&self) -> bool {
        let Some(at) = self.admitted_floor() else {
            return false;
        };
        let log = &self.rn.raft.raft_log;
        at.is_after(log.last_term(), log.last_index())
    }

    /// Once per longest election timeout while this node's campaigns are held and no leader
    /// has been heard from for as long: asks its voters for a pre-vote that raft never made,
    /// so that members that removed it say so (`410 Gone`, to vote requests only) and it
    /// stops. Otherwise a node removed while its log was below the floor (a crash while it
    /// caught up) heard nothing for good: no leader sends a removed node anything, and it
    /// asked no one for a vote (found by the simulator: long seed 10300448). Silence, not an
    /// unknown leader: a follower keeps the leader it knew however long it is silent, as a
    /// node removed while it runs cut off does (review 101). No answer can start a campaign:
    /// raft ignores pre-vote answers it did not ask for, and one that rejects at a later term
    /// only tells it the term. A node that knows no voters (it crashed once admitted, before
    /// any entry or snapshot reached it) asks the others listed in `--cluster`, whom its join
    /// asked (review 101); if every one of them has been removed since, it asks no
    /// member and runs on, as before (its admitters' voters are not kept: review 102).
    pub(super) fn ask_whether_still_a_member(&mut self) {
        let patience = self.tick * (2 * ELECTION_TICKS);
        if self.now().duration_since(self.last_leader_contact) < patience {
            self.join.held_silent_ticks = 0;
            return;
        }
        self.join.held_silent_ticks += 1;
        if self.join.held_silent_ticks < 2 * ELECTION_TICKS as usize {
            return;
        }
        self.join.held_silent_ticks = 0;
        let raft = &self.rn.raft;
        let (term, index, log_term) = (
            raft.term + 1,
            raft.raft_log.last_index(),
            raft.raft_log.last_term(),
        );
        let mut voters: Vec<u64> = raft.prs().conf().voters().ids().iter().collect();
        let asked = if voters.is_empty() {
            voters.clone_from(&self.join.listed);
            "--cluster"
        } else {
            "voters"
        };
        let asks: Vec<Message> = voters
            .into_iter()
            .filter(|to| *to != self.id)
            .map(|to| {
                let mut m = Message::default();
                m.set_msg_type(MessageType::MsgRequestPreVote);
                (m.from, m.to, m.term, m.index, m.log_term) = (self.id, to, term, index, log_term);
                m
            })
            .collect();
        if !asks.is_empty() {
            tracing::debug!(
                to = ?asks.iter().map(|m| m.to).collect::<Vec<_>>(),
                asked,
                "campaigns held below the floor and no leader heard: asking whether this node \
                 is still a member"
            );
            self.send(asks);
        }
    }

    /// Whether a peer that counts this node as removed as of its log index `as_of` is behind
    /// the members that admitted it: they had applied the entry at the floor, the node's
    /// latest addition among what they had applied, so such a peer may not have applied that
    /// addition (its settled members still answer `410`). A node whose campaigns are held asks
    /// its voters (see `ask_whether_still_a_member`) before its log reaches the addition, so
    /// the addition it has applied cannot tell it (review 101).
    pub(super) fn removal_behind_floor(&self, as_of: Option<u64>) -> bool {
        match (self.admitted_floor(), as_of) {
            (Some(at), Some(as_of)) => as_of < at.index,
            _ => false,
        }
    }

    /// Whether `m` asks this node's vote for a log that ends before the entry its admitters
    /// had applied, while its own log has not committed that far: it goes unanswered.
    pub(super) fn below_joined_at(&self, m: &Message) -> bool {
        let Some(at) = self.admitted_floor() else {
            return false;
        };
        let asks_vote = matches!(
            m.get_msg_type(),
            MessageType::MsgRequestVote | MessageType::MsgRequestPreVote
        );
        if asks_vote && at.is_after(m.log_term, m.index) {
            tracing::debug!(
                candidate = m.from,
                log_term = m.log_term,
                log_index = m.index,
                joined_at = at.index,
                "no vote for a log that ends before what the members that admitted this node \
                 had applied"
            );
            return true;
        }
        false
    }
}
