//! A follower whose log ends below what its leader counts it as holding: a member that lost
//! its disk and came back with `--join`, or a new life of an id removed and added back. The
//! leader lowers its count when the follower says so (raft-rs alone would stall on a follower
//! behind by more than one batch), and the follower says so even in an idle cluster, where no
//! append would ask it; a heartbeat's commit index past its log commits nothing here.

use raft::eraftpb::{Message, MessageType};
use raft::{ProgressState, StateRole};

use super::RaftNode;

impl RaftNode {
    /// A leader told by a follower that its log ends below what the leader counted as
    /// matched (a member that lost its disk and came back with `--join`, or a new life of a
    /// re-added id; see [`Self::say_entries_are_missing`]) lowers its count to what the
    /// follower holds. Otherwise raft-rs sends the follower its first batch of missing entries
    /// (at most 1 MiB), takes the follower's answer for a stale one because it is below the
    /// old count, and sends nothing more: a wiped member behind by more than a batch never
    /// caught up (found by a review). A follower that has not lost entries always names a
    /// last index at or above what it matched, so only such a rejection lowers the count, and
    /// only when raft itself would act on it (not stale by raft's own rule). Lowering it is
    /// safe: the commit index never moves back.
    pub(super) fn forget_progress_a_follower_lost(&mut self, m: &Message) {
        if self.rn.raft.state != StateRole::Leader
            || m.get_msg_type() != MessageType::MsgAppendResponse
            || !m.reject
            || m.term != self.rn.raft.term
        {
            return;
        }
        let Some(pr) = self.rn.raft.mut_prs().get_mut(m.from) else {
            return;
        };
        let fresh = match pr.state {
            ProgressState::Replicate => m.index > pr.matched,
            ProgressState::Probe => pr.next_idx.checked_sub(1) == Some(m.index),
            ProgressState::Snapshot => false,
        };
        if fresh && m.reject_hint < pr.matched {
            tracing::warn!(
                follower = m.from,
                counted = pr.matched,
                holds = m.reject_hint,
                "a follower's log ends below what this leader counted it as holding (it lost \
                 its disk, or is a new life of its id): sending it what it lacks"
            );
            pr.matched = m.reject_hint;
        }
    }

    /// A heartbeat never says more is committed than this node's log holds (raft-rs panics on
    /// one), unless the leader's view of this node is from an earlier life of its id: a member
    /// removed and added back under its old id with an empty data dir, heard by a leader whose
    /// progress for the id still counts the old life's entries (found by the simulator,
    /// tests/sim). Such a commit index says nothing about this log, so it commits nothing here;
    /// but the heartbeat is still answered, because a leader probing this node waits for that
    /// answer before it sends the next append (dropping the heartbeat left a re-added node
    /// behind for good when an append was lost). Returns the leader and the index it counted,
    /// for [`Self::say_entries_are_missing`] once the heartbeat is stepped.
    pub(super) fn keep_heartbeat_commit_within_log(
        &mut self,
        m: &mut Message,
    ) -> Option<(u64, u64)> {
        let last = self.rn.raft.raft_log.last_index();
        if m.get_msg_type() != MessageType::MsgHeartbeat || m.commit <= last {
            return None;
        }
        let committed = self.rn.raft.raft_log.committed;
        if self.lost_log_said != Some((m.from, m.term)) {
            self.lost_log_said = Some((m.from, m.term));
            tracing::warn!(
                leader = m.from,
                term = m.term,
                commit = m.commit,
                last,
                "a heartbeat says more is committed than this log holds (the leader knew an \
                 earlier life of this node's id, or this node lost its disk): answered, commits \
                 nothing, tells the leader"
            );
        }
        let lost = Some((m.from, m.commit));
        m.commit = committed;
        lost
    }

    /// Tells `leader`, which counts this node as holding entries up to `counted` that its log
    /// lacks, that they are missing, as the answer to an append there would: a leader probes
    /// a follower only when it has something new to send, so in an idle cluster it would
    /// otherwise never find out, and the node would stay empty (a member wiped and started
    /// again under its id). Two rejections, since the leader reads one as stale unless it
    /// names the index it probes at (`counted` while it probes, one past it while it
    /// replicates); each only makes it probe lower, or send a snapshot. They go out with the
    /// next `Ready`, after the heartbeat's answer.
    pub(super) fn say_entries_are_missing(&mut self, leader: u64, counted: u64) {
        let raft = &mut self.rn.raft;
        if raft.leader_id != leader {
            return;
        }
        let (term, last, last_term, committed) = (
            raft.term,
            raft.raft_log.last_index(),
            raft.raft_log.last_term(),
            raft.raft_log.committed,
        );
        for index in [counted, counted + 1] {
            let mut reject = Message {
                to: leader,
                from: raft.id,
                term,
                index,
                reject: true,
                reject_hint: last,
                log_term: last_term,
                commit: committed,
                ..Default::default()
            };
            reject.set_msg_type(MessageType::MsgAppendResponse);
            raft.msgs.push(reject);
        }
    }
}
