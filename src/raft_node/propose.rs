//! Handing raft what is due at the top of each round: this process's session registration,
//! the batch of queued proposals (a leader may hold it back to let it grow), the pending
//! membership change, and ReadIndex requests. Nothing is handed over while no leader is
//! known: raft would drop it, and the requests wait for one instead.

use std::time::Instant;

use raft::eraftpb::{Message, MessageType};
use raft::{INVALID_ID, StateRole};

use super::RaftNode;

impl RaftNode {
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

    /// Proposes what is due: this process's session registration, the batch of queued
    /// entries (unless the leader holds it back to grow it), and a membership change. Nothing
    /// while no leader is known: raft would drop it, and the requests wait for one instead.
    pub(super) fn propose(&mut self) {
        if self.leader_id() == INVALID_ID {
            return;
        }
        let now = self.now();
        if let Some(data) = self.proposals.registration_due(now)
            && let Err(err) = self.rn.propose(Vec::new(), data)
        {
            tracing::debug!(%err, "raft dropped the session registration; asking again shortly");
            self.proposals.registration_not_sent(now, self.tick);
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

    /// Hands raft the ReadIndex requests due: a round for the reads that arrived since the
    /// last one, and every round again after a leader change.
    pub(super) fn read_index(&mut self) {
        let leader_known = self.leader_id() != INVALID_ID;
        for ctx in self.reads.due_contexts(leader_known, self.now()) {
            self.rn.read_index(ctx);
        }
    }
}
