//! The client side of the node: what the REST API and in-process tests use to propose, read
//! and ask for the node's status. Every request goes through the node's inbox and waits for
//! the node's answer; the node answers each by its deadline, saying what became of it.

use std::collections::BTreeSet;
use std::sync::Arc;
use std::sync::atomic::Ordering;
use std::time::{Duration, Instant};

use bytes::Bytes;
use tokio::sync::{mpsc, oneshot};

use super::{
    MemberChange, NodeStatus, OwnPart, ProbeAnswer, ProposalError, ReadConsistency, Request,
    Responder, Sent, Shared, Waited,
};
use crate::clock::{Clock, TokioClock};
use crate::kvstore::KvStore;
use crate::metrics::Metrics;
use crate::transport::builds::ValuesCheck;
use crate::transport::probe::Prober;

/// How much longer than its timeout a request waits for the node's own answer before the
/// handle gives up on it.
pub(super) const STUCK_MARGIN: Duration = Duration::from_secs(1);

/// When a request must be answered by: its timeout after the handle got it. The checks some
/// make before proposing take their time out of the same wait, so that every request is
/// answered within the timeout (the REST API's promise, by which clients size their own),
/// and within [`STUCK_MARGIN`] more only if the node is too stuck to answer.
type Deadline = tokio::time::Instant;

/// What is left until `deadline`.
fn left(deadline: Deadline) -> Duration {
    deadline.saturating_duration_since(Deadline::now())
}

/// The client side of the inbox: what the REST API and in-process tests use.
#[derive(Clone)]
pub struct NodeHandle {
    /// This node's id.
    pub id: u64,
    inbox: mpsc::Sender<Sent>,
    kv: KvStore,
    timeout: Duration,
    shared: Arc<Shared>,
    metrics: Arc<Metrics>,
    /// With etcd's strict reconfiguration check on: what it probes members with.
    strict_reconfig: Option<Prober>,
    /// Over HTTP: whether another member runs a build that would skip a value that is not
    /// UTF-8 (in memory every node runs this build).
    values_check: Option<ValuesCheck>,
    /// The raft node's clock, which stamps the ready probe's rounds, and the requests this
    /// handle sends (see [`Sent`]).
    clock: Arc<dyn Clock>,
}

impl NodeHandle {
    /// A handle sending to `inbox` and reading from `kv`.
    pub fn new(
        id: u64,
        inbox: mpsc::Sender<Sent>,
        kv: KvStore,
        timeout: Duration,
        shared: Arc<Shared>,
        metrics: Arc<Metrics>,
    ) -> Self {
        NodeHandle {
            id,
            inbox,
            kv,
            timeout,
            shared,
            metrics,
            strict_reconfig: None,
            values_check: None,
            clock: Arc::new(TokioClock),
        }
    }

    /// Reads the raft node's `clock` (tokio's, the default, in production).
    pub fn with_clock(mut self, clock: Arc<dyn Clock>) -> Self {
        self.clock = clock;
        self
    }

    /// Turns etcd's strict reconfiguration check on (`Some`) or off (`None`, the default).
    /// It asks each member's peer port for an HTTP answer with the prober given, whose client
    /// must reach every member (with their TLS, if they use it).
    pub fn with_strict_reconfig(mut self, probe: Option<Prober>) -> Self {
        self.strict_reconfig = probe;
        self
    }

    /// Checks, before a PUT of a value that is not UTF-8, that no other member runs a build
    /// that would skip it (`Some`), or not (`None`, the default). Its client must reach every
    /// member (with their TLS, if they use it).
    pub fn with_values_check(mut self, check: Option<ValuesCheck>) -> Self {
        self.values_check = check;
        self
    }

    /// Sets `key` to `value` (any bytes); returns once the entry is committed and applied on
    /// this node. A value that is not UTF-8 is refused, unproposed, while another member runs
    /// a build that would skip it (see [`Self::with_values_check`]).
    pub async fn put(&self, key: String, value: Bytes) -> Result<(), ProposalError> {
        let deadline = self.deadline();
        // Text is what every build stores: only another value asks anything of the members.
        if let Some(check) = &self.values_check
            && std::str::from_utf8(&value).is_err()
        {
            let leader = || self.shared.leader.load(Ordering::Acquire);
            check
                .older_member(leader, left(deadline))
                .await
                .map_err(|refusal| refusal.answer(self.timeout))?;
            self.time_left_after_checks(deadline)?;
        }
        let data = crate::kvstore::Command::Put { key, value }.encode();
        self.proposal(deadline, |done, wait| Request::Propose {
            data,
            wait: Some(wait),
            done,
        })
        .await
    }

    /// Reads `key`.
    pub async fn get(
        &self,
        key: &str,
        consistency: ReadConsistency,
    ) -> Result<Option<Bytes>, ProposalError> {
        if consistency == ReadConsistency::Linearizable {
            self.metrics.read_index_requests.inc();
            let started = Instant::now();
            // What a write would hear of a request that never reached the node, or of a stop,
            // speaks of something that may still happen; nothing of a read does. Nothing is
            // checked first: the node gives it its whole timeout.
            let read = |done, _| Request::Read(done);
            self.request(self.deadline(), read, ProposalError::ReadTimeout)
                .await
                .map_err(|err| match err {
                    ProposalError::NotTaken(waited) => ProposalError::ReadNotTaken(waited),
                    ProposalError::Stopped(stop) | ProposalError::StoppedUnproposed(stop) => {
                        ProposalError::ReadStopped(stop)
                    }
                    other => other,
                })?;
            self.metrics
                .read_index_seconds
                .observe(started.elapsed().as_secs_f64());
        }
        Ok(self.kv.get(key))
    }

    /// Applies a membership change; returns once it is applied on this node. With the strict
    /// check on, a change that would leave the cluster unable to reach a quorum with the
    /// members that answer now is refused first.
    pub async fn change_members(&self, change: MemberChange) -> Result<(), ProposalError> {
        let deadline = self.deadline();
        let checked_voters = match &self.strict_reconfig {
            Some(probe) => {
                let voters = self
                    .check_quorum_after(&change, probe, deadline)
                    .await
                    // A node that stops during the check has proposed nothing, nor one that
                    // did not tell its status within the wait: the client hears it will not
                    // happen, as from any check that took the whole wait (review 108: a
                    // status's "retry" said nothing of the change).
                    .map_err(|err| match err {
                        ProposalError::NodeStopped(stop) => ProposalError::StoppedUnproposed(stop),
                        ProposalError::Busy(_) => ProposalError::NotProposed(self.timeout),
                        other => other,
                    })?;
                self.time_left_after_checks(deadline)?;
                Some(voters)
            }
            None => None,
        };
        self.proposal(deadline, |done, wait| Request::ChangeMembers {
            change,
            checked_voters,
            wait: Some(wait),
            done,
        })
        .await
    }

    /// A request whose checks took all its wait, up to `deadline`, is not proposed: it hears
    /// what it would have at its deadline had it never been proposed. One with any time left
    /// goes to the node, which answers within that, and proposes it only if enough is left
    /// (see `Proposals::add`).
    fn time_left_after_checks(&self, deadline: Deadline) -> Result<(), ProposalError> {
        if left(deadline).is_zero() {
            return Err(ProposalError::NotProposed(self.timeout));
        }
        Ok(())
    }

    /// etcd's strict reconfiguration check. Every member's peer port is probed (this node
    /// counts as answering); adding an existing member or removing a stranger is left to
    /// the raft node, which refuses it with its own reason. Returns the voters (ascending) it
    /// judged the change against: the change is applied only if they are still the voters
    /// when it commits (two changes checked at once through different nodes must not both
    /// pass a check that each alone passes). All of it ends by the request's `deadline`.
    async fn check_quorum_after(
        &self,
        change: &MemberChange,
        probe: &Prober,
        deadline: Deadline,
    ) -> Result<Vec<u64>, ProposalError> {
        let status = self.status_by(deadline).await?;
        let voters: BTreeSet<u64> = status.members.iter().map(|m| m.id).collect();
        let checked = voters.iter().copied().collect();
        let (add, id) = match change {
            MemberChange::Add { id, .. } => (true, *id),
            MemberChange::Remove { id } => (false, *id),
        };
        if add == voters.contains(&id) {
            return Ok(checked);
        }
        let mut probes = tokio::task::JoinSet::new();
        // The member being removed too: it does not count after the change, but whether the
        // voters of now have a quorum that answers says if the flag could help (see
        // `quorum_after_change`).
        for m in status.members.iter().filter(|m| m.id != self.id) {
            let (member, url) = (m.id, m.url.clone());
            let probe = probe.clone();
            probes.spawn(async move { Some((member, probe.answers(member, &url).await?)) });
        }
        let answers = async {
            let mut reachable = BTreeSet::from([self.id]);
            while let Some(probe) = probes.join_next().await {
                let Some((member, rest_listen)) = probe.ok().flatten() else {
                    continue;
                };
                reachable.insert(member);
                // A URL that reaches the member's own REST API from where it runs (judged as
                // for this node's, in `http_api::add_member`): that member's messages to the
                // new one would go to its REST API. An easy slip: `22380`, node 2's REST port,
                // for a new node's `42379`.
                if let (MemberChange::Add { url, .. }, Some(listen)) = (change, rest_listen)
                    && crate::membership::reaches_listener(url, listen)
                {
                    return Err(ProposalError::UrlIsRestApi {
                        url: url.clone(),
                        id: member,
                        listen,
                    });
                }
            }
            Ok(reachable)
        };
        // Probes cut short would count members that answer as down: a change is not judged
        // on them, and with no time left it could not be proposed anyway.
        let reachable = tokio::time::timeout_at(deadline, answers)
            .await
            .map_err(|_| ProposalError::NotProposed(self.timeout))??;
        crate::membership::quorum_after_change(&voters, add, id, &reachable)
            .map_err(ProposalError::WouldLoseQuorum)?;
        Ok(checked)
    }

    /// Whether this node should get client traffic: it knows a leader, it has applied
    /// everything its WAL said was committed, and everything the cluster had committed when a
    /// recent round of its ready probe was asked (a ReadIndex, asked every two ticks: the
    /// leader's answer says how far the cluster had committed then), recent meaning within an
    /// election timeout. So a node that was down, paused, cut off from its leader in either
    /// direction, or is behind for any reason, says no within about that long. `Err` says why
    /// not, and why the node cannot catch up if it refused the leader's snapshot.
    pub fn readiness(&self) -> Result<(), String> {
        self.judge_readiness().map_err(|why| {
            match self.shared.snapshot_refused(self.kv.applied_index()) {
                Some(refused) => format!(
                    "{why}; it cannot catch up until it stores the leader's snapshot, which it \
                     could not: {refused}"
                ),
                None => why,
            }
        })
    }

    fn judge_readiness(&self) -> Result<(), String> {
        if !self.shared.knows_leader() {
            return Err("no leader is known".into());
        }
        // Before the target: an answer is stored after the target it raised.
        // In the order their rounds were asked (see `Shared::add_probe_answer`).
        let answers = self.shared.probe_answers();
        let Some(newest) = answers.last() else {
            return Err("waiting for the leader to say how far the cluster has committed".into());
        };
        let target = self.shared.commit_at_start.load(Ordering::Acquire);
        let applied = self.kv.applied_index();
        if applied < target {
            let in_wal = self.shared.commit_in_wal.load(Ordering::Acquire);
            return Err(if applied < in_wal {
                format!(
                    "replaying the log: applied {applied} of the {in_wal} entries its WAL holds \
                     as committed"
                )
            } else {
                format!(
                    "catching up: applied {applied} of the {target} entries the cluster had \
                     committed when this node started"
                )
            });
        }
        // Read after the answers: a round answered since is not yet counted, never one that
        // is not applied yet.
        let now = self.clock.now();
        let age = |a: &ProbeAnswer| now.saturating_duration_since(a.asked_at);
        // Caught up as of the newest round whose answer it has applied.
        let caught_up = answers.iter().rev().find(|a| a.index <= applied);
        if let Some(caught_up) = caught_up
            && age(caught_up) <= caught_up.window
        {
            return Ok(());
        }
        if age(newest) > newest.window {
            return Err(format!(
                "the leader has not said for {} ms how far the cluster has committed (this node \
                 may be cut off from it, or was paused)",
                age(newest).as_millis()
            ));
        }
        Err(format!(
            "catching up: applied {applied} of the {} entries the cluster had committed {} ms \
             ago",
            newest.index,
            age(newest).as_millis()
        ))
    }

    /// This node's metrics.
    pub fn metrics(&self) -> &Metrics {
        &self.metrics
    }

    async fn proposal(
        &self,
        deadline: Deadline,
        make: impl FnOnce(Responder, Duration) -> Request,
    ) -> Result<(), ProposalError> {
        self.metrics.proposals_received.inc();
        let result = self.request(deadline, make, ProposalError::Timeout).await;
        match &result {
            Ok(()) => self.metrics.proposals_committed.inc(),
            Err(err) => self
                .metrics
                .proposals_failed
                .with_label_values(&[err.reason()])
                .inc(),
        }
        result
    }

    /// The node's current state.
    pub async fn status(&self) -> Result<NodeStatus, ProposalError> {
        self.status_by(self.deadline()).await
    }

    /// The node's current state, if it answers by `deadline`.
    async fn status_by(&self, deadline: Deadline) -> Result<NodeStatus, ProposalError> {
        let (tx, rx) = oneshot::channel();
        let ask = async {
            self.inbox
                .send(self.stamped(Request::Status(tx)))
                .await
                .map_err(|_| ProposalError::NodeStopped(self.shared.stop()))?;
            rx.await
                .map_err(|_| ProposalError::NodeStopped(self.shared.stop()))
        };
        tokio::time::timeout_at(deadline, ask)
            .await
            .map_err(|_| ProposalError::Busy(self.timeout))?
    }

    /// The local state machine.
    pub fn kv(&self) -> &KvStore {
        &self.kv
    }

    /// A request the handle got now: see [`Deadline`].
    fn deadline(&self) -> Deadline {
        Deadline::now() + self.timeout
    }

    /// `request`, made now: its wait, as the node counts it, begins now.
    fn stamped(&self, request: Request) -> Sent {
        Sent {
            request,
            at: self.clock.now(),
        }
    }

    /// Sends the node the request `make` builds from its responder and what is left of its
    /// wait, and waits for the answer, which the node gives by `deadline`.
    async fn request(
        &self,
        deadline: Deadline,
        make: impl FnOnce(Responder, Duration) -> Request,
        on_timeout: fn(Waited) -> ProposalError,
    ) -> Result<(), ProposalError> {
        let (tx, rx) = oneshot::channel();
        // The node answers every request by its deadline, saying what became of it; this
        // only covers a node too stuck to answer (a disk that hangs). What either says counts
        // the whole wait, from when the handle got the request.
        let stuck = deadline + STUCK_MARGIN;
        let request = self.stamped(make(tx, left(deadline)));
        // A send given up on leaves nothing in the inbox (tokio's `send` is cancel-safe), so
        // a request still waiting for room at the deadline never reached the node.
        match tokio::time::timeout_at(stuck, self.inbox.send(request)).await {
            Err(_) => return Err(ProposalError::NotTaken(self.timeout + STUCK_MARGIN)),
            // The node had stopped reading its inbox, and never saw the request. It noted a
            // failure that stopped it before it closed the inbox.
            Ok(Err(_)) => return Err(ProposalError::StoppedUnproposed(self.shared.stop())),
            Ok(Ok(())) => {}
        }
        let answer = match tokio::time::timeout_at(stuck, rx).await {
            Ok(Ok(result)) => result,
            // A dropped responder means the node stopped before answering.
            Ok(Err(_)) => Err(ProposalError::Stopped(self.shared.stop())),
            // Past its own deadline the node did not answer: the cause is this node, whatever
            // became of the quorum. How long it stood still is not known, only that it did
            // not answer within the margin.
            Err(_) => Err(on_timeout(Waited {
                wait: self.timeout,
                own_part: OwnPart::NoAnswer(STUCK_MARGIN),
            })),
        };
        answer.map_err(|err| self.naming_a_refused_snapshot(err))
    }

    /// `err`, named as the answer of a node that cannot catch up when `/-/ready` names the
    /// leader's snapshot it refused (see [`Self::readiness`]): it is not ready, and it has not
    /// applied that snapshot's index since. Judged as that judges it, so that the two agree.
    /// Such a node's wait runs out however often its client retries here, until its operator
    /// acts.
    fn naming_a_refused_snapshot(&self, err: ProposalError) -> ProposalError {
        if self.judge_readiness().is_ok() {
            return err;
        }
        match self.shared.snapshot_refused(self.kv.applied_index()) {
            Some(refused) => err.on_a_node_that_refused_a_snapshot(refused),
            None => err,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::raft_node::Stop;

    /// A handle of node 1 sending to `inbox`, waiting `timeout`.
    fn handle_on(inbox: mpsc::Sender<Sent>, timeout: Duration) -> NodeHandle {
        NodeHandle::new(
            1,
            inbox,
            KvStore::default(),
            timeout,
            Arc::new(Shared::default()),
            Arc::new(Metrics::new(1)),
        )
    }

    /// `handle` with the strict reconfiguration check on.
    fn with_strict_check(handle: NodeHandle) -> NodeHandle {
        let prober = prober_on(Arc::new(crate::transport::PeerFilter::new(1, 0)));
        handle.with_strict_reconfig(Some(prober))
    }

    /// A prober of node 1, reading the members from `filter`.
    fn prober_on(filter: Arc<crate::transport::PeerFilter>) -> crate::transport::probe::Prober {
        crate::transport::probe::Prober::new(crate::transport::probe_client(None), filter)
    }

    /// A node that takes every request and answers none: what it took, once the handle is gone.
    fn hold_every_request(
        mut taken: mpsc::Receiver<Sent>,
    ) -> tokio::task::JoinHandle<Vec<Request>> {
        tokio::spawn(async move {
            let mut kept = Vec::new();
            while let Some(sent) = taken.recv().await {
                kept.push(sent.request);
            }
            kept
        })
    }

    /// A node whose inbox stays full (stuck on a disk that hangs) never receives a write that
    /// waits for room, and says so: "it will not happen", not "it may still happen" (found by
    /// a review: the whole wait ended as a proposal's timeout).
    #[tokio::test(start_paused = true)]
    async fn a_request_that_never_found_room_in_the_inbox_will_not_happen() {
        let (inbox, mut stuck) = mpsc::channel(1);
        let (status, _unanswered) = oneshot::channel();
        let timeout = Duration::from_secs(5);
        let handle = handle_on(inbox, timeout);
        handle
            .inbox
            .try_send(handle.stamped(Request::Status(status)))
            .expect("room for one request");
        let put = handle.put("/k".into(), "v".into()).await;
        assert_eq!(put, Err(ProposalError::NotTaken(timeout + STUCK_MARGIN)));
        // A read that never found room says nothing of a write's fate (found by a review: it
        // said "it will not happen").
        let read = handle.get("/k", ReadConsistency::Linearizable).await;
        assert_eq!(
            read,
            Err(ProposalError::ReadNotTaken(timeout + STUCK_MARGIN))
        );
        assert!(!read.unwrap_err().to_string().contains("happen"));
        // Nothing of the write reached the inbox: only the request that filled it is there.
        assert!(matches!(
            stuck.try_recv(),
            Ok(Sent {
                request: Request::Status(_),
                ..
            })
        ));
        assert!(stuck.try_recv().is_err(), "the write was queued after all");
        // A node that stopped reading its inbox: a read hears it was not read; a question
        // about the node, to ask another member; a membership change, whose strict check
        // asks the node first, that it will not happen (each heard a write's "may still
        // happen": review 93).
        drop(stuck);
        let read = handle.get("/k", ReadConsistency::Linearizable).await;
        assert_eq!(read, Err(ProposalError::ReadStopped(Stop::Clean)));
        assert_eq!(
            handle.status().await.err(),
            Some(ProposalError::NodeStopped(Stop::Clean))
        );
        let strict = with_strict_check(handle);
        let change = strict.change_members(MemberChange::Remove { id: 2 }).await;
        assert_eq!(change, Err(ProposalError::StoppedUnproposed(Stop::Clean)));
    }

    /// A node that takes a write, a read or a membership change and does not answer it
    /// within a second past its wait (stuck on a disk that hangs) is named as the cause:
    /// whatever the quorum did, this node did not answer (review 108: the REST side's own
    /// answer blamed "a quorum" first). It says only that: "stood still for 1.0s of that
    /// wait" spoke of the handle's margin as if measured, though the node may have stood
    /// still for all of it (review 119 N5).
    #[tokio::test(start_paused = true)]
    async fn a_request_the_node_took_and_never_answered_names_the_node() {
        let (inbox, taken) = mpsc::channel(4);
        let timeout = Duration::from_secs(5);
        let handle = handle_on(inbox, timeout);
        let held = hold_every_request(taken);
        let waited = Waited {
            wait: timeout,
            own_part: OwnPart::NoAnswer(STUCK_MARGIN),
        };
        let stuck = "(this node itself did not answer within 1s past that wait: its process was \
                     paused or starved of CPU, or it was stuck on its disk)";

        let put = handle.put("/k".into(), "v".into()).await;
        assert_eq!(put, Err(ProposalError::Timeout(waited)));
        assert_eq!(
            put.unwrap_err().to_string(),
            format!(
                "not committed within 5s {stuck}; it may still happen: check before sending it \
                 again"
            )
        );
        let change = handle.change_members(MemberChange::Remove { id: 2 }).await;
        assert_eq!(change, Err(ProposalError::Timeout(waited)));
        let read = handle.get("/k", ReadConsistency::Linearizable).await;
        assert_eq!(read, Err(ProposalError::ReadTimeout(waited)));
        assert_eq!(
            read.unwrap_err().to_string(),
            format!("read not confirmed within 5s {stuck}; retry")
        );

        drop(handle);
        let kept = held.await.expect("the holder does not panic");
        assert!(
            matches!(
                kept[..],
                [
                    Request::Propose { .. },
                    Request::ChangeMembers { .. },
                    Request::Read(_)
                ]
            ),
            "each was taken"
        );
    }

    /// A node that does not tell its status within the wait of a membership change under the
    /// strict check has proposed nothing: the client hears that the change will not happen,
    /// and within the wait (review 108: it heard the status's "retry", which says nothing of
    /// the change, though the README promised "will not happen").
    #[tokio::test(start_paused = true)]
    async fn a_change_whose_check_got_no_status_in_its_wait_will_not_happen() {
        let (inbox, taken) = mpsc::channel(4);
        let timeout = Duration::from_secs(5);
        let handle = handle_on(inbox, timeout);
        let strict = with_strict_check(handle);
        // The node takes the status request and holds it unanswered.
        let held = hold_every_request(taken);
        let started = tokio::time::Instant::now();
        let change = strict.change_members(MemberChange::Remove { id: 2 }).await;
        assert_eq!(change, Err(ProposalError::NotProposed(timeout)));
        assert!(
            change
                .unwrap_err()
                .to_string()
                .contains("it will not happen")
        );
        assert!(
            started.elapsed() <= timeout,
            "answered after {:?}",
            started.elapsed()
        );
        drop(strict);
        let kept = held.await.expect("the holder does not panic");
        assert!(
            kept.iter().all(|r| matches!(r, Request::Status(_))),
            "only the status was asked: nothing was proposed"
        );
    }

    /// A PUT of a value that is not UTF-8 on a follower that hears of its leader only as its
    /// wait ends has no time left to ask the leader which builds the members run: it hears
    /// that it was not proposed (review 108: "the leader did not say ... (no answer within
    /// 0ns ...)").
    #[tokio::test(start_paused = true)]
    async fn a_write_whose_leader_came_as_its_wait_ended_is_not_proposed() {
        let (inbox, taken) = mpsc::channel(4);
        let timeout = Duration::from_secs(5);
        let filter = Arc::new(crate::transport::PeerFilter::new(1, 0));
        filter.set_member(2, Some("http://127.0.0.1:2"));
        let check = ValuesCheck::new(prober_on(filter.clone()), filter);
        let handle = handle_on(inbox, timeout).with_values_check(Some(check));
        let held = hold_every_request(taken);
        // Heard of between the check's last two looks for a leader (10 ms apart, the last at
        // the deadline).
        let shared = handle.shared.clone();
        tokio::spawn(async move {
            tokio::time::sleep(timeout - Duration::from_millis(5)).await;
            shared.leader.store(2, Ordering::Release);
        });
        let put = handle.put("/k".into(), Bytes::from_static(b"\xff")).await;
        assert_eq!(put, Err(ProposalError::NotProposed(timeout)));
        let said = put.unwrap_err().to_string();
        assert!(said.ends_with("it will not happen"), "{said}");
        drop(handle);
        let kept = held.await.expect("the holder does not panic");
        assert!(kept.is_empty(), "nothing was sent to the node");
    }

    /// A wait left over from a write's own, in an answer, is said to a tenth of its unit, not
    /// to the nanosecond (review 108: "734.123456ms").
    #[test]
    fn a_leftover_wait_is_said_rounded() {
        let said = ProposalError::BuildsUnknown(2, Duration::from_nanos(734_123_456)).to_string();
        assert!(said.contains("(no answer within 734.1ms,"), "{said}");
    }
}
