//! What `/-/status`, `/-/ready` and `/-/members` show of the node.

use raft::StateRole;

use super::{MemberStatus, NodeStatus, PeerProgress, RaftNode};
use crate::wal::Wal;

impl RaftNode {
    /// The exactly-once table as of the last applied entry: replicated state beside the map,
    /// which a simulation compares across nodes at each applied index (tests/sim).
    pub fn sessions(&self) -> &crate::proposal::Sessions {
        &self.sessions
    }

    /// The cluster's incarnation as of the last applied entry (replicated state too).
    pub fn incarnation(&self) -> crate::incarnation::Incarnation {
        self.incarnation
    }

    pub(super) fn status(&self) -> NodeStatus {
        let raft = &self.rn.raft;
        let hs = raft.hard_state();
        let leader = raft.leader_id;
        let now = self.now();
        let progress = (raft.state == StateRole::Leader).then(|| {
            raft.prs()
                .iter()
                .filter(|(id, _)| **id != self.id)
                .map(|(id, pr)| {
                    (
                        *id,
                        PeerProgress {
                            matched: pr.matched,
                            next: pr.next_idx,
                            state: format!("{:?}", pr.state),
                            reachable: self.heard_lately(*id, now),
                        },
                    )
                })
                .collect()
        });
        NodeStatus {
            id: self.id,
            role: format!("{:?}", raft.state),
            leader,
            term: hs.term,
            vote: hs.vote,
            commit: hs.commit,
            applied: self.applied,
            snapshot_index: self.snapshot_index,
            first_index: raft.raft_log.first_index(),
            last_index: raft.raft_log.last_index(),
            commit_at_start: self.commit_at_start,
            wal_bytes: self.wal.as_ref().map_or(0, Wal::size_on_disk),
            sessions: self.sessions.size(),
            incarnation: self.incarnation.text(),
            build: crate::version::BUILD,
            members: self
                .members
                .urls
                .iter()
                .map(|(id, url)| MemberStatus {
                    id: *id,
                    url: url.clone(),
                    is_leader: *id == leader,
                })
                .collect(),
            progress,
            transferring_to: raft.lead_transferee,
            log_tail: self.shared.events.log_tail(&raft.raft_log),
        }
    }
}
