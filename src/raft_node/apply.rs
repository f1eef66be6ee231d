//! Committed entries on their way to the state machine: each proposal takes effect once (the
//! exactly-once table, [`crate::proposal`], skips copies), membership changes are applied to
//! raft here, and the waiters of this node's requests go along with the batch.

use raft::eraftpb::{Entry, EntryType};

use super::{NodeError, RaftNode};
use crate::kvstore::Apply;
use crate::proposal::{self, Payload, ProposalId, Verdict};

impl RaftNode {
    /// Hands committed entries to the state machine, in order: each proposal takes effect
    /// once (the exactly-once table skips copies), conf changes are applied to raft here, and
    /// the waiters of this node's requests go along, answered once the batch is applied.
    pub(super) fn publish_entries(&mut self, mut entries: Vec<Entry>) -> Result<(), NodeError> {
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
    pub(super) fn admit(
        &mut self,
        entry: &Entry,
        now: std::time::Instant,
    ) -> (Option<ProposalId>, Verdict) {
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
}
