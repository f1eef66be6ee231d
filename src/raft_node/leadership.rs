//! Handing leadership over: a stopping leader, and a leader that removed itself, pass it to
//! the most caught-up follower first (as etcd does), so the others need not wait out an
//! election timeout and are never left counting a departed node as a voter. The follower
//! handed to campaigns once it can: not before it has applied the membership changes it knows
//! are committed. Also: a node that is the only voter elects itself at once.

use std::time::Instant;

use raft::StateRole;
use raft::eraftpb::Message;

use super::{ELECTION_TICKS, LEADER_STOP_LIMIT, NodeError, RaftNode, STOP_LIMIT};

/// Ticks of silence from the voter a leader handed over to before it tries the next: a live
/// voter answers the heartbeat of every tick, so three ticks leave room for a slow network
/// while a stopping leader (which stays at least eight) can still try again.
const TRANSFER_SILENCE_TICKS: u32 = 3;

/// Handing leadership over: a stopping leader, or one that removed itself.
#[derive(Default)]
pub(super) struct HandOver {
    /// When this node last asked raft to hand its leadership over.
    pub(super) transfer_asked: Option<Instant>,
    /// A leader's request to campaign, held while a committed membership change is not
    /// applied yet (see `step_timeout_now`), and when it came.
    pub(super) held_timeout_now: Option<(raft::eraftpb::Message, Instant)>,
    /// Once stopping: the peers that became unreachable since (and have not been heard from
    /// again). A stopping leader whose every other voter is among them has no one to hand
    /// over to: they are stopping too (a whole cluster stopped at once).
    pub(super) gone_while_stopping: Option<std::collections::BTreeSet<u64>>,
}

impl RaftNode {
    /// Asked to stop: a leader hands leadership to the most caught-up follower first (as
    /// etcd does), so the others need not wait out an election timeout; then the node answers
    /// what is in flight. Returns the time by which it stops regardless.
    pub(super) fn begin_stop(&mut self) -> Instant {
        let now = self.now();
        self.handover.gone_while_stopping = Some(Default::default());
        let leading = self.rn.raft.state == StateRole::Leader;
        let limit = if leading && self.hand_over(now) {
            // Room to pass over a silent successor and try another, whatever the tick.
            LEADER_STOP_LIMIT.max(self.tick * (2 * TRANSFER_SILENCE_TICKS + 2))
        } else {
            STOP_LIMIT
        };
        tracing::info!(leading, "stopping: answering what is in flight");
        now + limit
    }

    /// Whether a stopping node is done: no longer leading a cluster that has someone to lead
    /// it (a voter not gone since the stop began), and every request it took answered.
    pub(super) fn stopped_cleanly(&self) -> bool {
        let gone = self.handover.gone_while_stopping.as_ref();
        let voters = self.rn.raft.prs().conf().voters().ids();
        let leads_others = self.rn.raft.state == StateRole::Leader
            && voters
                .iter()
                .any(|v| v != self.id && !gone.is_some_and(|g| g.contains(&v)));
        !leads_others && self.proposals.is_empty() && self.reads.is_empty()
    }

    /// The transport could not reach a peer (its stream failed, not merely a full queue):
    /// raft hears of it, and a stopping node notes the peer as gone.
    pub(super) fn on_unreachable(&mut self, peer: u64) {
        self.rn.report_unreachable(peer);
        if let Some(gone) = &mut self.handover.gone_while_stopping {
            gone.insert(peer);
        }
    }

    /// Makes the last commit index durable before the process exits (raft does not sync
    /// commit-only hard states; a restart would learn it again, but need not).
    pub(super) fn flush(&mut self) -> Result<(), NodeError> {
        let hs = self.storage.mem.rl().hard_state().clone();
        if hs.commit == 0 || self.wal.is_none() {
            return Ok(());
        }
        self.wal_mut()?.save(Some(&hs), &[], true)?;
        Ok(())
    }

    /// Whether voter `id` was heard from within the last election timeout. Not raft's
    /// `recent_active`: CheckQuorum clears that for everyone once per election timeout, so
    /// just after, nobody has it.
    pub(super) fn heard_lately(&self, id: u64, now: Instant) -> bool {
        self.heard_within(id, self.tick * ELECTION_TICKS, now)
    }

    /// Whether `id` became unreachable since this node began to stop (see `on_unreachable`).
    fn gone_since_stop(&self, id: u64) -> bool {
        self.handover
            .gone_while_stopping
            .as_ref()
            .is_some_and(|gone| gone.contains(&id))
    }

    /// The voter best placed to take over from this leader: one heard from lately, the most
    /// caught up of them; never one gone since a stop began, nor `passed_over`; after a
    /// pass-over, only one heard from within `within`.
    pub(super) fn successor(
        &self,
        now: Instant,
        passed_over: Option<u64>,
        within: Option<std::time::Duration>,
    ) -> Option<u64> {
        let raft = &self.rn.raft;
        let voters = raft.prs().conf().voters().ids();
        raft.prs()
            .iter()
            .filter(|(id, _)| **id != self.id && voters.contains(**id))
            .filter(|(id, _)| !self.gone_since_stop(**id) && Some(**id) != passed_over)
            .filter(|(id, _)| within.is_none_or(|within| self.heard_within(**id, within, now)))
            .max_by_key(|(id, pr)| {
                (
                    self.heard_lately(**id, now),
                    pr.matched,
                    std::cmp::Reverse(**id),
                )
            })
            .map(|(id, _)| *id)
    }

    /// Asks raft to hand leadership to [`RaftNode::successor`], unless a transfer is under
    /// way: then to another voter only once the one asked has been silent for
    /// [`TRANSFER_SILENCE_TICKS`] (or gone) that long after it was asked (it is likely down:
    /// raft would wait for it a whole election timeout, longer than a stopping leader
    /// stays). Called every tick while a handover is wanted. Returns whether a transfer is
    /// under way.
    pub(super) fn hand_over(&mut self, now: Instant) -> bool {
        let silence = self.tick * TRANSFER_SILENCE_TICKS;
        let mut passed_over = None;
        if let (Some(asked), Some(to)) =
            (self.handover.transfer_asked, self.rn.raft.lead_transferee)
        {
            // Silence counts from its last word, not from the asking: a reply already on its
            // way when it was asked says nothing of whether it is still there.
            let silent = !self.heard_within(to, silence, now) || self.gone_since_stop(to);
            if !silent || now.duration_since(asked) < silence {
                return true;
            }
            passed_over = Some(to);
        }
        // After a pass-over, only a voter that spoke within the same few ticks: one as silent
        // would only be passed over in turn, and raft restarts its election timer (and so
        // its quorum check) at each transfer, so switching among silent voters would keep a
        // leader that lost its quorum from noticing.
        let Some(to) = self.successor(now, passed_over, passed_over.map(|_| silence)) else {
            // Nobody else to try: the transfer under way, if any, stands.
            return passed_over.is_some();
        };
        if let Some(silent) = passed_over {
            tracing::info!(
                silent,
                to,
                "no word from the voter leadership was handed to; trying another"
            );
        } else {
            tracing::info!(to, "handing leadership over");
        }
        self.rn.transfer_leader(to);
        self.handover.transfer_asked = Some(now);
        true
    }

    /// Whether raft would refuse to campaign now: a membership change it has committed is not
    /// applied yet (raft-rs's own rule, the check of its `hup`). A leader that removed itself
    /// hands over as soon as the removal commits, so the follower it picks often hears the
    /// commit and the `MsgTimeoutNow` in one batch; raft then drops the request and the
    /// leader waited out the transfer's election timeout before trying another follower, a
    /// second without a leader (found by a hands-on test).
    fn campaign_waits_for_conf(&self) -> bool {
        let log = &self.rn.raft.raft_log;
        let first = log.unstable.maybe_first_index().unwrap_or(log.applied + 1);
        self.conf_change_in(first, log.committed)
    }

    /// Steps a leader's `MsgTimeoutNow` (its request that this node campaign at once), or
    /// holds it until the membership changes committed before it are applied (see
    /// [`RaftNode::campaign_waits_for_conf`]).
    pub(super) fn step_timeout_now(&mut self, m: Message, now: Instant) {
        self.forget_admitted_floor_once_committed();
        if self.holds_campaigns() {
            // A leader whose log reaches this node's floor sends it only once this node's
            // log matches its own; one that does not is a removed member still running.
            tracing::debug!(
                from = m.from,
                "no campaign below the floor of this node's admission"
            );
            return;
        }
        if self.campaign_waits_for_conf() {
            self.handover.held_timeout_now = Some((m, now));
            return;
        }
        if let Err(err) = self.rn.step(m) {
            tracing::debug!(%err, "raft ignored a request to campaign");
        }
    }

    /// Steps the held `MsgTimeoutNow` once raft would act on it; drops it after an election
    /// timeout (the leader has given that transfer up by then).
    pub(super) fn release_held_timeout_now(&mut self) {
        let Some((_, held_at)) = &self.handover.held_timeout_now else {
            return;
        };
        let now = self.now();
        if now.duration_since(*held_at) >= self.tick * ELECTION_TICKS {
            self.handover.held_timeout_now = None;
            return;
        }
        if self.campaign_waits_for_conf() {
            return;
        }
        if let Some((m, _)) = self.handover.held_timeout_now.take() {
            tracing::debug!(
                from = m.from,
                "campaigning as asked, its membership applied"
            );
            self.step_timeout_now(m, now);
        }
    }

    /// A node that is the only voter needs nobody's vote: elect it now rather than after an
    /// election timeout, so a single-node store answers as soon as it starts.
    pub(super) fn maybe_campaign_alone(&mut self) {
        self.forget_admitted_floor_once_committed();
        if self.holds_campaigns() {
            return;
        }
        let raft = &self.rn.raft;
        // Followers only: a candidate is already campaigning, and campaigning again each
        // loop would only inflate the term.
        if raft.state != StateRole::Follower || self.conf_state.voters != [self.id] {
            return;
        }
        if raft.raft_log.committed > self.applied {
            // Unapplied entries may still change the membership.
            return;
        }
        if let Err(err) = self.rn.campaign() {
            tracing::debug!(%err, "could not campaign");
        }
    }
}
