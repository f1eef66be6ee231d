//! Linearizable reads (raft's ReadIndex), in three stages: waiting to be asked, asked, and
//! confirmed at a read index the state machine has not reached yet.
//!
//! Reads that arrive together share one ReadIndex round (one heartbeat round serves them all).
//! A read that arrives while no leader is known waits for one. A new leader holds requests
//! that arrive before it has committed in its term ([`HeldReads`]: raft-rs would drop them).
//! raft forgets a pending request when leadership moves, and a request can be lost on the
//! way, so an unanswered round is asked again: after every leader change, once the commit
//! index has moved, and less and less often while it goes unanswered. Each round's context is
//! unique across nodes and process restarts (node id, the process's random nonce, a counter):
//! the leader ignores a context already pending, and an old context answered after a restart
//! must not be taken for a new one.
//!
//! The node asks rounds of its own too, every two ticks for as long as it runs ([`ReadyProbe`]):
//! their answers say how far the cluster had committed when each was asked, which is what
//! `/-/ready` judges the node against.

use std::collections::{BTreeMap, VecDeque};
use std::time::{Duration, Instant};

use raft::eraftpb::{Entry, Message, MessageType};
use raft::{INVALID_ID, ReadState, StateRole};

use super::{NodeError, ProbeAnswer, ProposalError, Responder, Stop, Tick};
use crate::events::PROBE_CONTEXT_LEN;
use crate::kvstore::Apply;

/// A ReadIndex context made of `words`, little-endian: a client read round's is three (node,
/// nonce, counter), a ready probe round's two (node, nonce plus round).
fn context<const N: usize>(words: [u64; N]) -> Vec<u8> {
    words.iter().flat_map(|w| w.to_le_bytes()).collect()
}

/// The words of a context made by [`context`] of `N` words; `None` for any other length.
fn words<const N: usize>(ctx: &[u8]) -> Option<[u64; N]> {
    if ctx.len() != N * 8 {
        return None;
    }
    let word = |i: usize| <[u8; 8]>::try_from(&ctx[i * 8..i * 8 + 8]).map(u64::from_le_bytes);
    let mut out = [0; N];
    for (i, w) in out.iter_mut().enumerate() {
        *w = word(i).ok()?;
    }
    Some(out)
}

// The live page tells the probe's rounds apart by this length (see `events`).
const _: () = assert!(PROBE_CONTEXT_LEN == 2 * 8);

/// The node's own ReadIndex rounds, for `/-/ready`: the index the leader answers a round with
/// is what the cluster had committed when the round was asked, so once the node has applied
/// that far it holds every write acknowledged before then. A node's WAL knows none of that,
/// nor does a heartbeat (raft caps its commit at what the leader knows the node holds). A node
/// that was down while others wrote, that has just joined, or whose unsynced record of its
/// last commits died with it in a crash, is ready only once it has applied the first answer;
/// and rounds go on every `every` for as long as the node runs, so that one that falls behind
/// later (paused, cut off from the leader in either direction, waiting for a snapshot, slow to
/// apply) stops being ready once its last round applied is older than the ready window.
///
/// Each round's context is the node id and the process's nonce plus the round's number (16
/// bytes: a client read's are 24, so the two never meet). Before the first answer a round is
/// asked as soon as a leader is known, and again once the commit index has moved, at most
/// every `again` (half a tick: a new leader answers once it has committed in its term, and the
/// ticks' own jitter must not make that wait a whole tick more), and every `retry` regardless:
/// raft drops a ReadIndex while there is no leader, a request can be lost on the way, and one
/// that reached a leader which then lost its leadership is forgotten.
pub(super) struct ReadyProbe {
    origin: u64,
    nonce: u64,
    again: Duration,
    retry: Duration,
    every: Duration,
    /// The next round's number.
    next: u64,
    /// Rounds asked and not answered yet, oldest first: number, when asked.
    out: VecDeque<(u64, Instant)>,
    /// The last round asked: when, and the node's commit index then.
    asked: Option<Asked>,
    answered: bool,
}

/// Unanswered rounds remembered (a cut-off node asks on, and nothing comes back): the oldest
/// is forgotten past this, its answer no longer taken.
const PROBES_OUT: usize = 64;

impl ReadyProbe {
    /// The probe of node `origin`, whose process drew `nonce`.
    pub fn new(
        origin: u64,
        nonce: u64,
        again: Duration,
        retry: Duration,
        every: Duration,
    ) -> ReadyProbe {
        ReadyProbe {
            origin,
            nonce,
            again,
            retry,
            every,
            next: 0,
            out: VecDeque::new(),
            asked: None,
            answered: false,
        }
    }

    fn ctx(&self, round: u64) -> Vec<u8> {
        context([self.origin, self.nonce.wrapping_add(round)])
    }

    /// The round a context of this process names, if it is one.
    fn round_of(&self, ctx: &[u8]) -> Option<u64> {
        let [origin, word] = words(ctx)?;
        (origin == self.origin).then(|| word.wrapping_sub(self.nonce))
    }

    /// The context to hand raft's `read_index` now, if a round is due; `commit` is the node's
    /// commit index.
    pub fn due(&mut self, leader_known: bool, commit: u64, now: Instant) -> Option<Vec<u8>> {
        let due = leader_known
            && self.asked.is_none_or(|a| {
                let since = now.duration_since(a.at);
                if self.answered {
                    since >= self.every
                } else {
                    since >= self.retry || a.commit_moved(commit, now, self.again)
                }
            });
        if !due {
            return None;
        }
        self.asked = Some(Asked { at: now, commit });
        let round = self.next;
        self.next += 1;
        if self.out.len() == PROBES_OUT {
            self.out.pop_front();
        }
        self.out.push_back((round, now));
        Some(self.ctx(round))
    }

    /// Whether any round was answered yet.
    pub fn answered(&self) -> bool {
        self.answered
    }

    /// Takes the answers to this node's rounds out of a Ready's read states: each round's
    /// read index, and when the round was asked.
    pub fn take_answers(&mut self, states: &mut Vec<ReadState>) -> Vec<(u64, Instant)> {
        let mut answers = Vec::new();
        states.retain(|rs| {
            // Rounds forgotten (past PROBES_OUT) and other processes' are left, for the
            // client reads to ignore.
            let Some(at) = self
                .round_of(&rs.request_ctx)
                .and_then(|round| self.out.iter().position(|(r, _)| *r == round))
            else {
                return true;
            };
            if let Some((_, asked)) = self.out.remove(at) {
                answers.push((rs.index, asked));
            }
            false
        });
        if !answers.is_empty() {
            self.answered = true;
        }
        answers
    }
}

/// Most ReadIndex requests a new leader holds: each is a whole round of reads, so this is
/// far more than any cluster asks within one election; past it raft's own rule applies (the
/// request is dropped, and its node asks again).
const MAX_HELD: usize = 1024;

/// ReadIndex requests a leader got before it had committed an entry of its term, held until
/// it has, as etcd's raft holds them (`pendingReadIndexMessages`). raft-rs drops them instead:
/// a read arriving at a new leader, at its own node or forwarded by a follower, then waited
/// for a re-ask (a follower re-asks once its commit index moves, which it learns only with
/// the next append or heartbeat: up to a tick after the leader could have answered). Held
/// requests are stepped into raft once the leader has committed in its term, exactly as if
/// they arrived then; they are dropped if it stops leading first (their nodes ask again after
/// a leader change).
#[derive(Default)]
pub(super) struct HeldReads {
    /// The term they were held in.
    term: u64,
    messages: Vec<Message>,
}

impl HeldReads {
    /// Holds `m` (a `MsgReadIndex`) if this node leads in `term` but has not committed in it
    /// yet (`waiting`); otherwise gives it back, to step now.
    pub fn hold(&mut self, waiting: bool, term: u64, m: Message) -> Option<Message> {
        if !waiting || m.get_msg_type() != MessageType::MsgReadIndex {
            return Some(m);
        }
        if self.term != term {
            self.messages.clear();
            self.term = term;
        }
        if self.messages.len() < MAX_HELD {
            self.messages.push(m);
        }
        None
    }

    /// The requests to step now: all of them once this node leads in the term they were held
    /// in and has committed in it; none (and none kept) once it does not lead in that term.
    pub fn release(&mut self, leading: bool, term: u64, committed_in_term: bool) -> Vec<Message> {
        if self.messages.is_empty() || (leading && term == self.term && !committed_in_term) {
            return Vec::new();
        }
        let held = std::mem::take(&mut self.messages);
        if leading && term == self.term {
            held
        } else {
            Vec::new()
        }
    }
}

/// The `MsgReadIndex` raft-rs's `RawNode::read_index` steps for a read of this node.
pub(super) fn read_index_message(ctx: Vec<u8>) -> Message {
    one_entry_message(MessageType::MsgReadIndex, ctx)
}

/// A message of type `t` carrying one entry of `data`, as raft-rs's `RawNode::propose` and
/// `read_index` build theirs (the registration's proposal is one, with its `index` set).
pub(super) fn one_entry_message(t: MessageType, data: Vec<u8>) -> Message {
    let mut m = Message::default();
    m.set_msg_type(t);
    m.set_entries(
        vec![Entry {
            data: data.into(),
            ..Default::default()
        }]
        .into(),
    );
    m
}

/// When a ReadIndex was last asked, and the node's commit index then.
#[derive(Clone, Copy)]
struct Asked {
    at: Instant,
    commit: u64,
}

impl Asked {
    /// Whether to ask again because the commit index has moved since (a new leader answers
    /// only once it has committed in its term, and that commit moves it), at most every
    /// `again`.
    fn commit_moved(&self, commit: u64, now: Instant, again: Duration) -> bool {
        commit > self.commit && now.duration_since(self.at) >= again
    }
}

/// A client waiting for its read.
struct Waiter {
    done: Responder,
    deadline: Instant,
}

/// Reads that share one ReadIndex round.
struct Round {
    waiters: Vec<Waiter>,
    asked: Asked,
    attempts: u32,
}

/// The node's reads; see the module documentation.
pub(super) struct Reads {
    origin: u64,
    nonce: u64,
    timeout: Duration,
    /// Arrived since the last round was started.
    waiting: Vec<Waiter>,
    /// Rounds asked of raft and not answered yet, by round number.
    asked: BTreeMap<u64, Round>,
    /// Request contexts given to raft (their counter), and the round each asks for. Asking
    /// again keeps the earlier contexts: on a slow network the first answer may still come,
    /// and serves.
    contexts: BTreeMap<u64, u64>,
    /// Confirmed at a read index the state machine has not reached yet.
    confirmed: VecDeque<(u64, Vec<Waiter>)>,
    next_ctx: u64,
    next_round: u64,
    /// Leadership moved: ask again for every round as soon as the current Ready is done.
    ask_all_again: bool,
    /// The node's commit index, as of the last [`Reads::due_contexts`].
    commit: u64,
    /// How soon a round may be asked again once the commit index has moved.
    again: Duration,
}

impl Reads {
    /// Reads of node `origin`, whose process drew `nonce`; each answered within `timeout`;
    /// an unanswered round asked again at most every `again` when the commit index moves.
    pub fn new(origin: u64, nonce: u64, timeout: Duration, again: Duration) -> Reads {
        Reads {
            origin,
            nonce,
            timeout,
            waiting: Vec::new(),
            asked: BTreeMap::new(),
            contexts: BTreeMap::new(),
            confirmed: VecDeque::new(),
            next_ctx: 0,
            next_round: 0,
            ask_all_again: false,
            commit: 0,
            again,
        }
    }

    /// Whether every read has been answered.
    pub fn is_empty(&self) -> bool {
        self.waiting.is_empty() && self.asked.is_empty() && self.confirmed.is_empty()
    }

    /// A client's read arrived, made at `made` (its wait begins then: see
    /// [`crate::request::Sent`]), and read by the node at `now`, a moment of its loop with
    /// ticks `every` apart. One whose client has already gone (it waited in the inbox past
    /// the handle's timeout) is dropped rather than asked for. One whose wait has run out
    /// (it sat in a full inbox, its client still waiting) is answered at once, as a write is
    /// (`Proposals::add`), with what a tick would say of it: queued for the next tick, it
    /// was judged by a record of stalls that may have forgotten the one that held it up, and
    /// named two causes where the node had stood still (review 118).
    pub fn add(&mut self, done: Responder, made: Instant, every: Duration, now: Tick<'_>) {
        if done.is_closed() {
            return;
        }
        let deadline = made + self.timeout;
        if now.at >= deadline {
            let _ = done.send(Err(self.timed_out(deadline, every, now)));
            return;
        }
        self.waiting.push(Waiter { done, deadline });
    }

    /// What a read whose wait ended at `deadline` hears at `tick` (of a loop that ticks
    /// `every`): that no leader was known in all of it, or that nothing confirmed it; with
    /// how long the node stood still in it, if that was most of it.
    fn timed_out(&self, deadline: Instant, every: Duration, tick: Tick<'_>) -> ProposalError {
        let waited = tick.waited(deadline, self.timeout, every);
        if tick.no_leader_during(deadline, self.timeout) {
            ProposalError::ReadNoLeader(waited)
        } else {
            ProposalError::ReadTimeout(waited)
        }
    }

    /// Leadership moved: raft forgot every pending request. Ask again at once, and again
    /// soon after if that is too early (a new leader serves reads only once it has committed
    /// an entry of its term).
    pub fn on_leader_change(&mut self) {
        self.ask_all_again = true;
        for r in self.asked.values_mut() {
            r.attempts = 0;
        }
    }

    /// The contexts to hand to `read_index` now: a new round for the reads that arrived since
    /// the last one, every round again after a leader change, and a round still unanswered
    /// once the node's `commit` index has moved since it was asked (a new leader drops a
    /// ReadIndex until it has committed in its term, and that commit moves every node's
    /// commit index; waiting for the next retry instead cost a read 300 ms after a leader
    /// change). Nothing while no leader is known (raft would drop it): the reads wait.
    pub fn due_contexts(&mut self, leader_known: bool, commit: u64, now: Instant) -> Vec<Vec<u8>> {
        self.commit = commit;
        if !leader_known {
            return Vec::new();
        }
        let mut rounds: Vec<u64> = Vec::new();
        if std::mem::take(&mut self.ask_all_again) {
            rounds.extend(self.asked.keys());
        } else {
            rounds.extend(self.asked.iter().filter_map(|(round, r)| {
                r.asked
                    .commit_moved(commit, now, self.again)
                    .then_some(*round)
            }));
        }
        if !self.waiting.is_empty() {
            self.next_round += 1;
            let round = self.next_round;
            self.asked.insert(
                round,
                Round {
                    waiters: std::mem::take(&mut self.waiting),
                    asked: Asked { at: now, commit },
                    attempts: 0,
                },
            );
            rounds.push(round);
        }
        rounds
            .into_iter()
            .filter_map(|round| self.ask(round, now))
            .collect()
    }

    fn ask(&mut self, round: u64, now: Instant) -> Option<Vec<u8>> {
        let r = self.asked.get_mut(&round)?;
        r.asked = Asked {
            at: now,
            commit: self.commit,
        };
        r.attempts += 1;
        self.next_ctx += 1;
        self.contexts.insert(self.next_ctx, round);
        let (origin, nonce) = self.identity();
        Some(context([origin, nonce, self.next_ctx]))
    }

    /// Read states from a Ready: their rounds are confirmed at their read index.
    pub fn on_read_states(&mut self, states: Vec<ReadState>) {
        for rs in states {
            let Some(counter) = self.parse(&rs.request_ctx) else {
                continue;
            };
            let round = self.contexts.remove(&counter);
            if let Some(r) = round.and_then(|round| self.asked.remove(&round)) {
                self.confirmed.push_back((rs.index, r.waiters));
            }
        }
    }

    /// The counter of a context this process made.
    fn parse(&self, ctx: &[u8]) -> Option<u64> {
        let [origin, nonce, counter] = words(ctx)?;
        ((origin, nonce) == self.identity()).then_some(counter)
    }

    /// What tells this process's contexts from all others.
    fn identity(&self) -> (u64, u64) {
        if crate::mutation::active(crate::mutation::Mutation::BareReadContext) {
            return (0, 0);
        }
        (self.origin, self.nonce)
    }

    /// The waiters whose read index is at most `applied`: safe to answer once the state
    /// machine has applied that far.
    pub fn release(&mut self, applied: u64) -> Vec<Responder> {
        let mut ready = Vec::new();
        self.confirmed.retain_mut(|(index, waiters)| {
            if *index <= applied {
                ready.extend(waiters.drain(..).map(|w| w.done));
                false
            } else {
                true
            }
        });
        ready
    }

    /// Once per `tick` (raft's, every `every`): answer reads whose time is up, forget those
    /// whose client left, and ask again for rounds unanswered for a while (three ticks,
    /// doubling up to 48). Returns the contexts to hand to `read_index`.
    pub fn on_tick(&mut self, every: Duration, tick: Tick<'_>) -> Vec<Vec<u8>> {
        let now = tick.at;
        let mut late = Vec::new();
        let mut sweep = |waiters: &mut Vec<Waiter>| {
            late.extend(waiters.extract_if(.., |w| now >= w.deadline));
            waiters.retain(|w| !w.done.is_closed());
        };
        sweep(&mut self.waiting);
        for r in self.asked.values_mut() {
            sweep(&mut r.waiters);
        }
        for (_, waiters) in &mut self.confirmed {
            sweep(waiters);
        }
        for w in late {
            let said = self.timed_out(w.deadline, every, tick);
            let _ = w.done.send(Err(said));
        }
        self.confirmed.retain(|(_, w)| !w.is_empty());
        self.asked.retain(|_, r| !r.waiters.is_empty());
        let asked = &self.asked;
        self.contexts.retain(|_, round| asked.contains_key(round));
        if !tick.leader_known {
            return Vec::new();
        }
        let base = every * 3;
        let due: Vec<u64> = self
            .asked
            .iter()
            .filter(|(_, r)| {
                now.duration_since(r.asked.at)
                    >= base * 2u32.pow(r.attempts.saturating_sub(1).min(4))
            })
            .map(|(round, _)| *round)
            .collect();
        due.into_iter()
            .filter_map(|round| self.ask(round, now))
            .collect()
    }

    /// The node stops (`stop` says how): every read hears so.
    pub fn stop(&mut self, stop: &Stop) {
        let waiters = self
            .waiting
            .drain(..)
            .chain(
                std::mem::take(&mut self.asked)
                    .into_values()
                    .flat_map(|r| r.waiters),
            )
            .chain(self.confirmed.drain(..).flat_map(|(_, w)| w));
        for w in waiters {
            let _ = w.done.send(Err(ProposalError::ReadStopped(stop.clone())));
        }
    }
}

// The node's side: ReadIndex requests stepped into raft, and its answers taken.
impl super::RaftNode {
    /// Hands raft the ReadIndex requests due: a round for the reads that arrived since the
    /// last one, and every round again after a leader change.
    pub(super) fn read_index(&mut self) {
        let leader_known = self.leader_id() != INVALID_ID;
        let now = self.now();
        let commit = self.rn.raft.raft_log.committed;
        for ctx in self.reads.due_contexts(leader_known, commit, now) {
            self.ask_read_index(ctx);
        }
        if let Some(ctx) = self.ready_probe.due(leader_known, commit, now) {
            self.ask_read_index(ctx);
        }
    }

    /// Asks raft for a read index for this node's `ctx` (what `RawNode::read_index` does,
    /// through [`Self::step_read_index`]).
    pub(super) fn ask_read_index(&mut self, ctx: Vec<u8>) {
        self.step_read_index(read_index_message(ctx));
    }

    /// Steps a ReadIndex request (this node's or a peer's) into raft, or holds it while this
    /// node leads without having committed in its term (raft would drop it: see
    /// [`HeldReads`]).
    pub(super) fn step_read_index(&mut self, m: Message) {
        let raft = &self.rn.raft;
        let waiting = raft.state == StateRole::Leader && !raft.commit_to_current_term();
        if let Some(m) = self.held_reads.hold(waiting, raft.term, m)
            && let Err(err) = self.rn.step(m)
        {
            tracing::debug!(%err, "raft ignored a ReadIndex request");
        }
    }

    /// Steps the ReadIndex requests held, once this node has committed in its term.
    pub(super) fn release_held_reads(&mut self) {
        let raft = &self.rn.raft;
        let held = self.held_reads.release(
            raft.state == StateRole::Leader,
            raft.term,
            raft.commit_to_current_term(),
        );
        for m in held {
            self.step_read_index(m);
        }
    }

    /// raft's ReadIndex answers: the ready probe's first, then the clients' reads.
    pub(super) fn on_read_states(&mut self, mut states: Vec<ReadState>) {
        let mut first = !self.ready_probe.answered();
        for (index, asked_at) in self.ready_probe.take_answers(&mut states) {
            self.on_ready_probe_answer(index, asked_at, std::mem::take(&mut first));
        }
        self.reads.on_read_states(states);
    }

    /// The answer to a round of the ready probe asked at `asked_at` (see
    /// [`super::reads::ReadyProbe`]): `/-/ready` says yes once the state machine has reached
    /// `index`, for a window after `asked_at`. The `first` answer also raises the start-up
    /// target.
    fn on_ready_probe_answer(&mut self, index: u64, asked_at: Instant, first: bool) {
        use std::sync::atomic::Ordering;
        if first && index > self.commit_at_start {
            self.commit_at_start = index;
            self.shared.commit_at_start.store(index, Ordering::Release);
        }
        // After the target: a reader that sees the answer sees the target it raised.
        self.shared.add_probe_answer(ProbeAnswer {
            index,
            asked_at,
            window: self.ready_window,
        });
    }

    /// Releases confirmed reads whose index the state machine will have reached when it gets
    /// this message: the apply channel is in order.
    pub(super) fn release_confirmed_reads(&mut self) -> Result<(), NodeError> {
        let ready: Vec<Responder> = self.reads.release(self.applied);
        if !ready.is_empty() {
            self.apply_tx
                .send(Apply::Reads(ready))
                .map_err(|_| NodeError::ApplyStopped)?;
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::raft_node::{OwnPart, Ticks, Waited};
    use tokio::sync::oneshot;

    type Answer = oneshot::Receiver<Result<(), ProposalError>>;

    /// The loop's tick in these tests.
    const TICK: Duration = Duration::from_millis(100);

    /// A read made at `now` that reaches the node at once, a leader known.
    fn read(r: &mut Reads, now: Instant) -> Answer {
        read_arriving(r, now, Ticks::new(TICK, r.timeout).as_of(now, true))
    }

    /// A read made at `made` that reaches the node at the moment `arrived` of its loop.
    fn read_arriving(r: &mut Reads, made: Instant, arrived: Tick<'_>) -> Answer {
        let (tx, rx) = oneshot::channel();
        r.add(tx, made, TICK, arrived);
        rx
    }

    /// A read that waited in the inbox past its client's timeout is not asked for: nobody
    /// is left to answer (review 86).
    #[test]
    fn a_read_whose_client_has_gone_is_not_asked_for() {
        let t0 = Instant::now();
        let mut r = Reads::new(1, 7, Duration::from_secs(5), Duration::from_millis(100));
        let (tx, gone) = oneshot::channel();
        drop(gone);
        r.add(tx, t0, TICK, Ticks::new(TICK, r.timeout).as_of(t0, true));
        assert!(r.is_empty());
        assert!(
            r.due_contexts(true, 5, t0).is_empty(),
            "no round for nobody"
        );
        let _waiting = read(&mut r, t0);
        assert_eq!(
            r.due_contexts(true, 5, t0).len(),
            1,
            "a client still waiting is"
        );
    }

    /// The ready probe is asked once a leader is known, again after `retry` (or once the
    /// commit index moves) while unanswered, then every `every` once answered; each round has
    /// a context of its own, and only this process's rounds are taken out of the read states
    /// (each with when it was asked), the others left.
    #[test]
    fn the_ready_probe_asks_in_rounds_and_takes_only_its_own_answers() {
        let t0 = Instant::now();
        let (again, retry, every) = (
            Duration::from_millis(100),
            Duration::from_secs(1),
            Duration::from_millis(200),
        );
        let mut probe = ReadyProbe::new(2, 77, again, retry, every);
        assert_eq!(probe.due(false, 5, t0), None, "no leader: nobody to ask");
        let first = probe
            .due(true, 5, t0)
            .expect("asked once a leader is known");
        assert_eq!(first.len(), 16, "not a client read's 24 bytes");
        assert_eq!(
            probe.due(true, 5, t0 + retry / 2),
            None,
            "not again so soon"
        );
        // The leader's first commit in its term moves the commit index: asked again, but
        // not more often than `again`.
        assert_eq!(probe.due(true, 6, t0 + again / 2), None, "not that soon");
        let t1 = t0 + again;
        let second = probe.due(true, 6, t1).expect("commit moved");
        assert_ne!(second, first, "a round of its own");
        assert_eq!(probe.due(true, 6, t1 + again), None, "commit still");
        let third = probe.due(true, 6, t1 + retry).expect("asked again");
        let answer = |ctx: &Vec<u8>, index| ReadState {
            index,
            request_ctx: ctx.clone(),
        };
        let other = answer(&vec![1; 24], 5);
        let another_process = ReadyProbe::new(2, 77 << 40, again, retry, every).ctx(0);
        let mut states = vec![
            other.clone(),
            answer(&second, 42),
            answer(&another_process, 43),
        ];
        assert_eq!(probe.take_answers(&mut states), vec![(42, t1)]);
        assert_eq!(states, vec![other, answer(&another_process, 43)]);
        // Answered: a round every `every` from the last asking, not before.
        let t2 = t1 + retry;
        assert_eq!(probe.due(true, 9, t2 + every / 2), None, "too soon");
        let fourth = probe.due(true, 9, t2 + every).expect("the next round");
        // Late answers to earlier rounds are still taken, with when they were asked.
        let mut late = vec![answer(&first, 40), answer(&third, 44), answer(&fourth, 45)];
        assert_eq!(
            probe.take_answers(&mut late),
            vec![(40, t0), (44, t2), (45, t2 + every)]
        );
        assert!(late.is_empty());
        let mut again_answered = vec![answer(&fourth, 46)];
        assert!(
            probe.take_answers(&mut again_answered).is_empty(),
            "a round is answered once"
        );
        assert_eq!(
            again_answered.len(),
            1,
            "left for the client reads to ignore"
        );
    }

    /// Contexts differ between nodes and between two processes of one node; a context from
    /// another process is ignored.
    #[test]
    fn contexts_are_unique_across_nodes_and_restarts() {
        let t0 = Instant::now();
        let mut a = Reads::new(1, 7, Duration::from_secs(5), Duration::from_millis(50));
        let mut b = Reads::new(2, 7, Duration::from_secs(5), Duration::from_millis(50));
        let mut a_restarted = Reads::new(1, 8, Duration::from_secs(5), Duration::from_millis(50));
        let _ra = read(&mut a, t0);
        let _rb = read(&mut b, t0);
        let mut rc = read(&mut a_restarted, t0);
        let ca = a.due_contexts(true, 0, t0);
        let cb = b.due_contexts(true, 0, t0);
        let cc = a_restarted.due_contexts(true, 0, t0);
        assert_ne!(ca, cb);
        assert_ne!(ca, cc);
        // The old process's context answered to the new one: not a confirmation.
        a_restarted.on_read_states(vec![ReadState {
            index: 5,
            request_ctx: ca[0].clone(),
        }]);
        assert!(a_restarted.release(100).is_empty());
        a_restarted.on_read_states(vec![ReadState {
            index: 5,
            request_ctx: cc[0].clone(),
        }]);
        for done in a_restarted.release(5) {
            done.send(Ok(())).expect("sent");
        }
        assert_eq!(rc.try_recv(), Ok(Ok(())));
    }

    /// A new leader drops a ReadIndex until it has committed in its term: an unanswered
    /// round is asked again once the commit index has moved (at most every `again`), long
    /// before the retry on ticks would ask it.
    #[test]
    fn an_unanswered_round_is_asked_again_once_the_commit_index_moves() {
        let t0 = Instant::now();
        let again = Duration::from_millis(50);
        let mut r = Reads::new(1, 7, Duration::from_secs(5), again);
        let _waiting = read(&mut r, t0);
        r.on_leader_change();
        assert_eq!(r.due_contexts(true, 10, t0).len(), 1, "asked at once");
        assert!(
            r.due_contexts(true, 10, t0 + again).is_empty(),
            "commit still"
        );
        assert!(
            r.due_contexts(true, 11, t0 + again / 2).is_empty(),
            "not that soon"
        );
        let ctx = r.due_contexts(true, 11, t0 + again);
        assert_eq!(ctx.len(), 1, "the leader's first commit: asked again");
        assert!(r.due_contexts(true, 11, t0 + again * 3).is_empty());
        r.on_read_states(vec![ReadState {
            index: 11,
            request_ctx: ctx[0].clone(),
        }]);
        assert_eq!(r.release(11).len(), 1);
        assert!(
            r.due_contexts(true, 20, t0 + again * 9).is_empty(),
            "answered"
        );
    }

    /// A read waits for a leader rather than failing, and says so if none comes in time.
    #[test]
    fn a_read_waits_for_a_leader() {
        let mut ticks = Ticks::new(Duration::from_millis(100), Duration::from_secs(5));
        let t0 = Instant::now();
        let tick = Duration::from_millis(100);
        let mut r = Reads::new(1, 7, Duration::from_secs(5), Duration::from_millis(50));
        let mut early = read(&mut r, t0);
        assert!(r.due_contexts(false, 0, t0).is_empty());
        assert!(
            r.on_tick(tick, ticks.next(t0 + Duration::from_secs(1), false))
                .is_empty()
        );
        assert!(early.try_recv().is_err(), "still waiting");
        let at = |ms| t0 + Duration::from_millis(ms);
        for ms in (1_100..=2_000).step_by(100) {
            r.on_tick(tick, ticks.next(at(ms), false));
        }
        assert_eq!(
            r.due_contexts(true, 0, t0 + Duration::from_secs(2)).len(),
            1
        );
        let mut late = read(&mut r, t0 + Duration::from_secs(2));
        // Ticking all along, as a running node does (ticks a second apart are stalls of the
        // loop: see the next test), with no leader until 5 s.
        for ms in (2_100..=5_000).step_by(100) {
            r.on_tick(tick, ticks.next(at(ms), false));
        }
        assert_eq!(
            early.try_recv(),
            Ok(Err(ProposalError::ReadNoLeader(
                Duration::from_secs(5).into()
            )))
        );
        assert!(late.try_recv().is_err(), "its deadline is later");
        // A leader known for part of the later read's wait: not "no leader was elected"
        // (found by a review), though nothing was read.
        for ms in (5_100..=7_000).step_by(100) {
            r.on_tick(tick, ticks.next(at(ms), ms == 5_500));
        }
        assert_eq!(
            late.try_recv(),
            Ok(Err(ProposalError::read_timeout_after(Duration::from_secs(
                5
            ))))
        );
    }

    /// A read whose wait ran out while the node itself stood still (paused with SIGSTOP for
    /// 8 s, in a user's campaign) says so, rather than that a quorum did not confirm it; one
    /// whose node ticked all along names both causes. One that knew no leader while its node
    /// stood still says that the node stood still, not that a quorum may be down (review 112
    /// N4, as for a write).
    #[test]
    fn a_read_whose_wait_ran_out_while_the_node_stood_still_says_so() {
        let mut ticks = Ticks::new(Duration::from_millis(100), Duration::from_secs(5));
        let t0 = Instant::now();
        let tick = Duration::from_millis(100);
        let mut r = Reads::new(1, 7, Duration::from_secs(5), Duration::from_millis(50));
        let said = |answer: &mut Answer| -> (ProposalError, String) {
            let err = answer
                .try_recv()
                .expect("answered")
                .expect_err("nothing read");
            let text = err.to_string();
            (err, text)
        };
        let stood_still = |still| Waited {
            wait: Duration::from_secs(5),
            own_part: OwnPart::StoodStill(still),
        };
        let mut paused = read(&mut r, t0);
        r.on_tick(tick, ticks.next(t0 + tick, true));
        // The process stops here, and runs again 8 s later.
        r.on_tick(tick, ticks.next(t0 + Duration::from_millis(8_100), true));
        let (err, text) = said(&mut paused);
        // From the tick after the one before the stop, which was due anyway.
        let still = Duration::from_millis(4_800);
        assert_eq!(err, ProposalError::ReadTimeout(stood_still(still)));
        assert!(
            text.starts_with(
                "read not confirmed within 5s (this node itself stood still for 4.8s of that wait"
            ) && !text.contains("quorum"),
            "{text}"
        );

        let t1 = t0 + Duration::from_secs(10);
        let mut ticking = read(&mut r, t1);
        for n in 1..=50 {
            r.on_tick(tick, ticks.next(t1 + tick * n, true));
        }
        let (err, text) = said(&mut ticking);
        let five = Duration::from_secs(5);
        assert_eq!(err, ProposalError::read_timeout_after(five));
        assert_eq!(
            text,
            "read not confirmed within 5s (a quorum may be down, or this node itself was held \
             up); retry"
        );

        // Knowing no leader as it stops, and again 8 s later.
        let t2 = t1 + Duration::from_secs(10);
        r.on_tick(tick, ticks.next(t2, false));
        let mut leaderless = read(&mut r, t2);
        r.on_tick(tick, ticks.next(t2 + Duration::from_secs(8), false));
        let (err, text) = said(&mut leaderless);
        let still = Duration::from_millis(4_900);
        assert_eq!(err, ProposalError::ReadNoLeader(stood_still(still)));
        assert!(
            text.starts_with("this node knew no leader within 5s (it stood still for 4.9s")
                && !text.contains("quorum"),
            "{text}"
        );
    }

    /// A read that reaches the node past its deadline (it sat behind a full inbox, its client
    /// still waiting: the handle waits a second past it) is answered as it arrives, with what
    /// a tick would say of it, while the stall that held it up is still on record. Queued for
    /// the next tick's sweep, it was judged once the record had forgotten that stall (kept
    /// only while it can overlap a wait not yet answered), and named both causes (review 118).
    #[test]
    fn a_read_that_arrives_past_its_deadline_is_answered_at_once() {
        let timeout = Duration::from_secs(1);
        let mut ticks = Ticks::new(TICK, timeout);
        let mut r = Reads::new(1, 7, timeout, TICK / 2);
        let at = |t: Instant, ms| t + Duration::from_millis(ms);
        let stood_still = |ms| Waited {
            wait: timeout,
            own_part: OwnPart::StoodStill(Duration::from_millis(ms)),
        };
        // Made at t0, a leader known; the loop stands still until 900 ms (a stall from the
        // tick due at 100 ms), then ticks on while the read waits in the inbox until 1.95 s.
        let t0 = Instant::now();
        ticks.next(t0, true);
        for ms in (900..=1_900).step_by(100) {
            ticks.next(at(t0, ms), true);
        }
        let mut late = read_arriving(&mut r, t0, ticks.as_of(at(t0, 1_950), true));
        let said = late.try_recv();
        assert_eq!(said, Ok(Err(ProposalError::ReadTimeout(stood_still(800)))));
        assert!(
            !said
                .expect("answered")
                .expect_err("nothing read")
                .to_string()
                .contains("quorum"),
            "names the quorum as a cause"
        );
        assert!(r.is_empty(), "answered, and not kept for a tick as well");
        // What the next tick would have said: the stall ended a whole wait before the tick
        // before it, and is forgotten.
        let deadline = at(t0, 1_000);
        let next = ticks.next(at(t0, 2_000), true);
        assert_eq!(next.waited(deadline, timeout, TICK), timeout.into());

        // Knowing no leader all along: that, and that the node stood still.
        let t1 = t0 + Duration::from_secs(10);
        ticks.next(t1, false);
        for ms in (900..=1_900).step_by(100) {
            ticks.next(at(t1, ms), false);
        }
        let mut leaderless = read_arriving(&mut r, t1, ticks.as_of(at(t1, 1_950), false));
        assert_eq!(
            leaderless.try_recv(),
            Ok(Err(ProposalError::ReadNoLeader(stood_still(800))))
        );

        // Late with the loop ticking all along: answered at once too, naming both causes.
        let t2 = t1 + Duration::from_secs(10);
        for ms in (0..=1_900).step_by(100) {
            ticks.next(at(t2, ms), true);
        }
        let mut ticking = read_arriving(&mut r, t2, ticks.as_of(at(t2, 1_950), true));
        assert_eq!(
            ticking.try_recv(),
            Ok(Err(ProposalError::read_timeout_after(timeout)))
        );
        assert!(r.is_empty());
    }

    /// A stopping node tells every read still waiting, asked or not, that nothing was read:
    /// not a write's "may still happen" (found by a review).
    #[test]
    fn reads_waiting_at_a_stop_hear_that_nothing_was_read() {
        let t0 = Instant::now();
        let mut r = Reads::new(1, 7, Duration::from_secs(5), Duration::from_millis(50));
        // Confirmed by the leader at index 9, not yet applied that far.
        let mut confirmed = read(&mut r, t0);
        let ctx = r.due_contexts(true, 0, t0);
        assert_eq!(ctx.len(), 1);
        r.on_read_states(vec![ReadState {
            index: 9,
            request_ctx: ctx[0].clone(),
        }]);
        assert!(r.release(5).is_empty(), "applied short of the read's index");
        // Asked, not answered yet.
        let mut asked = read(&mut r, t0);
        assert_eq!(r.due_contexts(true, 0, t0).len(), 1, "a round of its own");
        // Not asked yet.
        let mut waiting = read(&mut r, t0);
        r.stop(&Stop::Clean);
        for answer in [&mut confirmed, &mut asked, &mut waiting] {
            assert_eq!(
                answer.try_recv(),
                Ok(Err(ProposalError::ReadStopped(Stop::Clean)))
            );
        }
    }

    fn ctx_of(m: &Message) -> &[u8] {
        &m.get_entries()[0].data
    }

    #[test]
    fn a_new_leader_holds_read_requests_until_it_has_committed_in_its_term() {
        let mut held = HeldReads::default();
        // Not a leader waiting for its first commit: stepped at once.
        let m = held.hold(false, 3, read_index_message(b"a".to_vec()));
        assert_eq!(m.as_ref().map(ctx_of), Some(&b"a"[..]));
        // Anything but a ReadIndex request is never held.
        let mut append = Message::default();
        append.set_msg_type(MessageType::MsgAppend);
        assert!(held.hold(true, 3, append).is_some());
        // Leading in term 3, nothing committed in it yet: held...
        assert!(
            held.hold(true, 3, read_index_message(b"b".to_vec()))
                .is_none()
        );
        assert!(
            held.hold(true, 3, read_index_message(b"c".to_vec()))
                .is_none()
        );
        assert!(held.release(true, 3, false).is_empty(), "not committed yet");
        // ...and given back, in order, once it has.
        let out = held.release(true, 3, true);
        assert_eq!(out.iter().map(ctx_of).collect::<Vec<_>>(), [b"b", b"c"]);
        assert!(held.release(true, 3, true).is_empty(), "given back once");
    }

    #[test]
    fn held_read_requests_are_dropped_when_their_leader_stops_leading() {
        let mut held = HeldReads::default();
        assert!(
            held.hold(true, 3, read_index_message(b"b".to_vec()))
                .is_none()
        );
        // A follower now: its nodes ask again after the leader change.
        assert!(held.release(false, 3, false).is_empty());
        assert!(held.release(true, 3, true).is_empty(), "dropped, not kept");
        // Leading again in a later term: only what was held in that term is answered.
        assert!(
            held.hold(true, 4, read_index_message(b"c".to_vec()))
                .is_none()
        );
        assert!(
            held.hold(true, 5, read_index_message(b"d".to_vec()))
                .is_none()
        );
        let out = held.release(true, 5, true);
        assert_eq!(out.iter().map(ctx_of).collect::<Vec<_>>(), [b"d"]);
        // At most MAX_HELD; past it raft's rule applies (dropped; the node asks again).
        for i in 0..MAX_HELD + 10 {
            assert!(
                held.hold(true, 6, read_index_message(i.to_le_bytes().to_vec()))
                    .is_none()
            );
        }
        assert_eq!(held.release(true, 6, true).len(), MAX_HELD);
    }
}
