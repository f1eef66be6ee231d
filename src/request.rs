//! The vocabulary the node shares with everything around it: what a client asks of the raft
//! node ([`Request`]), how it is answered ([`Responder`], [`ProposalError`]), what the node
//! reports of itself ([`NodeStatus`], [`Shared`]) and why it stopped ([`Exit`]; [`Stop`], as the
//! answers it leaves behind say it). Nearly a leaf: it uses only [`crate::events`] (the node's
//! event stream, and its log's entries as that shows them) and [`crate::version`] (a member's
//! build), both leaves, and [`crate::membership`] (to name nodes in a sentence), which uses only
//! [`crate::pb`], a leaf; so every module may use it without a cycle. Its links to modules above
//! it are only links.

use std::collections::BTreeMap;
use std::collections::VecDeque;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Mutex, OnceLock};
use std::time::{Duration, Instant};

use serde::Serialize;
use tokio::sync::oneshot;

use crate::events::{EntryView, Events};

/// Answers one client request once its entry is applied (or its read is safe to serve).
pub type Responder = oneshot::Sender<Result<(), ProposalError>>;

/// What a client can ask of the raft node (the REST API and in-process tests, through a
/// [`crate::raft_node::NodeHandle`]).
pub enum Request {
    /// Propose a normal entry.
    Propose {
        /// An encoded [`crate::kvstore::Command`].
        data: Vec<u8>,
        /// How long the node has to answer, from when the request was made (see [`Sent`];
        /// from when the node reads it, if it comes unstamped): what is left of the client's
        /// wait after the checks made before proposing it; `None` (or longer): the proposal
        /// timeout.
        wait: Option<Duration>,
        /// Answered once the entry is applied on this node.
        done: Responder,
    },
    /// Propose a membership change.
    ChangeMembers {
        /// What to change.
        change: MemberChange,
        /// The voters (ascending) of the membership the strict check judged the change
        /// against; `None` without the check. The change is applied only if the voters are
        /// still those when it commits: another change applied first refuses it.
        checked_voters: Option<Vec<u64>>,
        /// As for [`Request::Propose`]: the strict check's time comes out of it.
        wait: Option<Duration>,
        /// Answered once the change is applied on this node.
        done: Responder,
    },
    /// A linearizable read barrier: answered once the state machine has applied everything
    /// that was committed when the read arrived (raft's ReadIndex).
    Read(Responder),
    /// Report the node's state.
    Status(oneshot::Sender<NodeStatus>),
}

/// A request as a [`crate::raft_node::NodeHandle`] puts it in the node's inbox: stamped with
/// when the handle made it, on the node's clock. The node counts the request's wait from then,
/// so that time spent in the inbox (a node held up by its disk, a flood of requests) comes out
/// of it, as it does out of the client's (review 108: the node's wait began when it read the
/// request, and behind a full inbox could end after the handle had answered for it).
pub struct Sent {
    /// The request.
    pub request: Request,
    /// When its handle made it.
    pub at: Instant,
}

/// A membership change requested over REST.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum MemberChange {
    /// `POST /<id>` with a peer URL.
    Add {
        /// The new member's id.
        id: u64,
        /// Its peer URL.
        url: String,
    },
    /// `DELETE /<id>`.
    Remove {
        /// The member to remove.
        id: u64,
    },
}

/// Why a request was not carried out (or not known to be). Every answer about a write says
/// whether it can still happen: "it will not happen" only when that is certain.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ProposalError {
    /// No leader was known for the whole wait, or, in the node's proposals, for all of it
    /// before its last part, the settle window, in which nothing is proposed (see
    /// `raft_node::proposals`): the request never left this node. Said of a quorum, or of
    /// this node when it stood still for most of the wait (see `no_leader`).
    #[error(
        "{}; the request was not proposed: it will not happen",
        no_leader(.0, "in time for a wait of")
    )]
    NoLeader(Waited),
    /// A leader was known, but the request could not be handed to it in time (it was busy
    /// handing over leadership, or over its limit of uncommitted entries), or this node had no
    /// session yet to propose it under (its registration had not committed), or the checks
    /// made before proposing it (a value that is not UTF-8, the strict reconfiguration check),
    /// or its time in the node's queue, left it no more than the last part of its wait, in
    /// which nothing is proposed any more (see `raft_node::proposals`); or it waited (for a
    /// leader, a session) until that last part began.
    #[error(
        "the request was not proposed within {0:?} (the leader did not take it, this node's \
         registration had not committed yet, or the checks before proposing it, or its time in \
         the node's queue, left too little of that time): it will not happen"
    )]
    NotProposed(Duration),
    /// The node's inbox stayed full for the whole wait, so the request never reached it (a
    /// node stuck on a disk that hangs, or far behind its clients).
    #[error(
        "the node did not take the request within {0:?} (its queue of requests stayed full: it is \
         stuck or overloaded); it was not proposed: it will not happen"
    )]
    NotTaken(Duration),
    /// Every copy of the entry was overwritten by a new leader, and it could not be proposed
    /// again in time.
    #[error(
        "a new leader replaced the entry and it could not be proposed again within {0:?}: it will \
         not happen"
    )]
    Replaced(Duration),
    /// The entry was proposed but not applied in time; it may still commit.
    #[error("not committed {0}; it may still happen: check before sending it again")]
    Timeout(Waited),
    /// The entry was proposed but not applied in the first part of its wait, and no copy can
    /// take effect any more: its withdrawal (a fence, or a later proposal carrying the floor
    /// past it) applied before any copy did, or its session ended in log order.
    #[error(
        "not committed in most of its {0:?} wait, and withdrawn before any copy of it was applied: \
         it will not happen"
    )]
    Withdrawn(Duration),
    /// Withdrawn, but this node learnt so from a snapshot, which cannot tell whether a copy
    /// was applied before the withdrawal.
    #[error(
        "not committed within {0:?} and then withdrawn, but this node caught up from a snapshot \
         that cannot tell whether a copy of it was applied first: it may have happened, and cannot \
         any more; check before sending it again"
    )]
    WithdrawnUnknown(Duration),
    /// This node was removed and added back (or its session replaced) while the request was
    /// in flight, and it learnt so from a snapshot, which cannot tell whether the request
    /// took effect before: it is not proposed again.
    #[error(
        "this node's session ended while the request was in flight (the node was removed from the \
         cluster and added back, or an earlier run of it registered late), and the snapshot it \
         caught up from cannot tell whether the request was applied: it may have happened; check \
         before sending it again"
    )]
    OutcomeUnknown,
    /// No leader was known for the whole wait of a read (see `no_leader`).
    #[error("{}; nothing was read", no_leader(.0, "within"))]
    ReadNoLeader(Waited),
    /// A read was not confirmed in time (see [`Waited`] for what the node saw of why).
    #[error("read not confirmed {0}; retry")]
    ReadTimeout(Waited),
    /// The node's inbox stayed full for the whole wait of a read (a node stuck on a disk that
    /// hangs, or far behind its clients).
    #[error(
        "the node did not take the read within {0:?} (its queue of requests stayed full: it is \
         stuck or overloaded); nothing was read: retry on another member"
    )]
    ReadNotTaken(Duration),
    /// The node is stopping (or stopped: [`Stop`] says how) while a read waits.
    #[error("{0}; nothing was read: retry on another member")]
    ReadStopped(Stop),
    /// The node stopped before it answered a question about itself (its status, its
    /// members).
    #[error("{0}: ask another member")]
    NodeStopped(Stop),
    /// The raft node did not answer a status request in time.
    #[error("the node did not answer within {0:?} (it may be busy); retry")]
    Busy(Duration),
    /// The node is stopping (or stopped: [`Stop`] says how), and had proposed the write or
    /// the change.
    #[error(
        "{}; a request it had proposed may still happen{}",
        .0,
        stop_advice(.0, ": check on another member before sending it again")
    )]
    Stopped(Stop),
    /// The node is stopping before it proposed the request: no copy of it exists anywhere.
    #[error(
        "{} and had not proposed the request: it will not happen{}",
        .0,
        stop_advice(.0, "; send it to another member")
    )]
    StoppedUnproposed(Stop),
    /// A request's wait ran out on a node that cannot catch up: it refused the leader's
    /// snapshot for a reason of its own (no room on its disk, over its
    /// `--max-snapshot-bytes`), the reason `/-/ready` names. Retrying on this node is futile
    /// until its operator acts, so the answer names that in place of the cause `answer`
    /// guessed (a quorum down, a leader that did not take it), and keeps what `answer` says of
    /// the request's outcome (found by a hands-on campaign: such a node answered "retry").
    #[error("{}", cannot_catch_up(answer, refused))]
    CannotCatchUp {
        /// What the request would have heard of its wait.
        answer: Box<ProposalError>,
        /// Why the node refused the snapshot.
        refused: String,
    },
    /// Adding an id that is already a member.
    #[error(
        "node {0} is already a member: to replace it, remove it first (DELETE /{0}); to add \
         another node, give it an id that GET /-/members does not list"
    )]
    AlreadyMember(u64),
    /// Adding a URL another member uses.
    #[error(
        "peer URL {url} is already used by node {id}: give the new member a peer URL of its own, \
         or, to replace node {id}, remove it first (DELETE /{id})"
    )]
    UrlInUse {
        /// The URL.
        url: String,
        /// The member using it.
        id: u64,
    },
    /// Adding a URL that is another member's REST API (it says where that listens in its
    /// answer to the strict reconfiguration check's probe).
    #[error(
        "{url} is node {id}'s REST API (it listens on {listen}), not a peer port: a member's peer \
         URL is its entry in --cluster"
    )]
    UrlIsRestApi {
        /// The URL.
        url: String,
        /// The member whose REST API it reaches.
        id: u64,
        /// Where that member's REST API listens.
        listen: std::net::SocketAddr,
    },
    /// Removing an id that is not a member.
    #[error("node {0} is not a member: GET /-/members lists the members")]
    NotMember(u64),
    /// Removing the last voter.
    #[error(
        "removing node {0} would leave the cluster with no voter: add another member first \
         (POST /<id> with its peer URL), then remove this one"
    )]
    LastVoter(u64),
    /// Another membership change has not been applied yet.
    #[error("another membership change is still in progress; retry once it is applied")]
    ChangePending,
    /// Another membership change was applied between this one's checks and its commit, so
    /// every node skipped it: what it was checked against no longer holds.
    #[error(
        "another membership change was applied first (voters {checked:?} when this one was \
         checked, {now:?} when it committed), so it was not applied; check GET /-/members and send \
         it again if it still makes sense"
    )]
    MembershipChanged {
        /// The voters the change was checked against.
        checked: Vec<u64>,
        /// The voters when it committed.
        now: Vec<u64>,
    },
    /// raft refused the change when applying it.
    #[error("membership change rejected: {0}")]
    Rejected(String),
    /// The change would leave the cluster unable to reach a quorum with the members that
    /// answer now.
    #[error("{0}")]
    WouldLoseQuorum(String),
    /// A PUT of a value that is not UTF-8 while these members run a build that would skip it
    /// (see [`crate::transport::builds`]): nothing was proposed. Every one the node knows of
    /// is named: naming the lowest alone, it told of the next only at the next refusal.
    #[error(
        "{} {} an older build that would skip a value that is not UTF-8, so it was not \
         written; upgrade every node first (text values are unaffected)",
        crate::membership::nodes(.0),
        if .0.len() == 1 { "runs" } else { "run" }
    )]
    OlderBuild(Vec<u64>),
    /// A PUT of a value that is not UTF-8 while the leader (this id) did not say within the
    /// time given (a second, or what was left of the write's wait) which builds the members
    /// run (see [`crate::transport::builds`]): nothing was proposed.
    #[error(
        "the leader (node {0}) did not say whether every member runs a build that stores a value \
         that is not UTF-8 (no answer within {1:.1?}, or none it could read), so it was not \
         written: it will not happen; try again"
    )]
    BuildsUnknown(u64, Duration),
    /// The check before a PUT of a value that is not UTF-8 knew a leader (this id), but not
    /// where to ask it which builds the members run: it is not among the members this node
    /// knows (one just added, or one removed). Nothing was proposed. Not "no leader was
    /// elected", which would be false (review 114 L6).
    #[error(
        "this node knew the leader (node {0}) but not its address among the members, so it could \
         not ask it within {1:?} whether every member runs a build that stores a value that is \
         not UTF-8; it was not written: it will not happen; try again"
    )]
    LeaderUnlisted(u64, Duration),
}

/// How long a request waited before the answer that it was not done in time, and what the
/// node saw of its own part in that: the cause that answer names.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Waited {
    /// The wait: `--proposal-timeout-ms` when the node answers, and when the handle answers
    /// for a node too stuck to (the margin it gave the node past it is in
    /// [`OwnPart::NoAnswer`]); what was left of it when the check before a PUT of a value that
    /// is not UTF-8 began, when that check answers (it judged its stall against that).
    pub wait: Duration,
    /// What the node saw of its own part in the wait.
    pub own_part: OwnPart,
}

/// What a request's answer knows of the node's own part in a wait that ran out.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum OwnPart {
    /// Nothing that stands out: the node's loop stood still for less than most of the wait
    /// (its ordinary pace), so the answer names a quorum first, and the node as well.
    Unremarked,
    /// How long the node's own loop stood still in the wait (up to the answer, when it came
    /// sooner), when that was most of it (see `Tick::waited` in raft_node): its process paused
    /// or starved of CPU, or a round stuck on its disk. A quorum may have been fine all along,
    /// and then blaming it sent a user looking for a fault that was not there (a user's
    /// campaign: a leader paused for 8 s said "a quorum may be down").
    StoodStill(Duration),
    /// The node did not answer within this long past the wait (`STUCK_MARGIN`, in
    /// raft_node/handle.rs): the handle answered for it. How long the node stood still is not
    /// known (perhaps the whole wait), only that it was stuck past the wait, so the answer
    /// names the node and says no more: it said "stood still for 1.0s of that wait" of the
    /// margin, which is no measure and less than the half of the wait that names the node
    /// alone (review 119 N5).
    NoAnswer(Duration),
}

impl Waited {
    /// A `wait` in which the node stood still for `still`, counted only when that was most
    /// of it: at least half the wait, and two of the steps (`step`: a tick, or a look for a
    /// leader) in which the node would otherwise have seen the world move. Less is the node's
    /// ordinary pace, and the answer then names the quorum.
    pub fn stood_still_for(wait: Duration, still: Duration, step: Duration) -> Waited {
        let own_part = match still >= (wait / 2).max(step * 2) {
            true => OwnPart::StoodStill(still),
            false => OwnPart::Unremarked,
        };
        Waited { wait, own_part }
    }
}

impl From<Duration> for Waited {
    /// A wait of which nothing more is known.
    fn from(wait: Duration) -> Self {
        Waited {
            wait,
            own_part: OwnPart::Unremarked,
        }
    }
}

/// What holds a node up for most of a wait, as an answer naming the node says it.
const STUCK_WHY: &str = "its process was paused or starved of CPU, or it was stuck on its disk";

impl std::fmt::Display for Waited {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "within {:?} ", self.wait)?;
        match self.own_part {
            OwnPart::Unremarked => {
                f.write_str("(a quorum may be down, or this node itself was held up)")
            }
            OwnPart::StoodStill(still) => write!(
                f,
                "(this node itself stood still for {still:.1?} of that wait: {STUCK_WHY})"
            ),
            OwnPart::NoAnswer(margin) => write!(
                f,
                "(this node itself did not answer within {margin:?} past that wait: {STUCK_WHY})"
            ),
        }
    }
}

/// Why a request or a read of `waited` knew no leader, its wait said after `wait_is` ("within"):
/// a leader was not elected, which speaks of a quorum, unless this node itself stood still for
/// most of the wait, and then it was not there to hear one. Seen from an old tick, a leader
/// elected while it stood still would be blamed on the quorum (review 112 N4: a node paused
/// through a write's wait said "a quorum may be down" of a healthy one).
///
/// Only those that watched the wait say "no leader" (the node, the check before a PUT), never
/// the handle answering for a node that did not answer; were it said of one, it would still
/// name the node alone.
fn no_leader(waited: &Waited, wait_is: &str) -> String {
    let wait = waited.wait;
    match waited.own_part {
        OwnPart::Unremarked => {
            format!("no leader was elected {wait_is} {wait:?} (a quorum may be down)")
        }
        OwnPart::StoodStill(still) => format!(
            "this node knew no leader {wait_is} {wait:?} (it stood still for {still:.1?} of that \
             wait: {STUCK_WHY})"
        ),
        OwnPart::NoAnswer(margin) => format!(
            "this node knew no leader {wait_is} {wait:?} (it did not answer within {margin:?} \
             past that wait: {STUCK_WHY})"
        ),
    }
}

/// The text of [`ProposalError::CannotCatchUp`]: `answer`'s outcome, with the refused snapshot
/// as the cause.
fn cannot_catch_up(answer: &ProposalError, refused: &str) -> String {
    let cause = format!(
        "this node cannot catch up: it refused the leader's snapshot ({refused}); see /-/ready"
    );
    match answer {
        ProposalError::ReadTimeout(waited) | ProposalError::ReadNoLeader(waited) => format!(
            "read not confirmed within {:?}: {cause}; nothing was read: retry on another member",
            waited.wait
        ),
        ProposalError::NotProposed(wait) | ProposalError::NoLeader(Waited { wait, .. }) => {
            format!(
                "the request was not proposed within {wait:?}: {cause}; it will not happen: send \
                 it to another member"
            )
        }
        ProposalError::Timeout(waited) => format!(
            "not committed within {:?}: {cause}; it may still happen: check on another member \
             before sending it again",
            waited.wait
        ),
        other => format!("{other}; {cause}"),
    }
}

/// How the node stopped, as the answers to the requests it leaves behind say it: those in
/// flight, those still in its inbox, and those that arrive while its process winds down.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub enum Stop {
    /// Asked to (a signal), or removed from the cluster: it is shutting down.
    #[default]
    Clean,
    /// A failure stopped it: the answer names it, since a client (or a person with curl)
    /// could not otherwise tell a node that died of a full disk from one stopped on purpose
    /// (found by a hands-on campaign: both said "the node is shutting down").
    Failed(Failure),
}

/// The failure that stopped a node, as its clients hear of it (the node's log and its exit
/// say more: what to do about it).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Failure {
    /// Whether its disk had no room left (`ENOSPC` among the error's causes): said first,
    /// since that is what its operator must mend.
    pub disk_full: bool,
    /// The error, in one line.
    pub error: String,
}

impl std::fmt::Display for Stop {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Stop::Clean => f.write_str("the node is shutting down"),
            Stop::Failed(Failure {
                disk_full: true,
                error,
            }) => write!(f, "the node stopped: its disk is full ({error})"),
            Stop::Failed(Failure {
                disk_full: false,
                error,
            }) => write!(f, "the node stopped on a fatal error ({error})"),
        }
    }
}

/// What a write's answer adds after its outcome when the node stopped on a failure: it will
/// not be back soon, so the client goes to another member. Nothing for a clean stop, whose
/// answers keep the words they always had.
fn stop_advice(stop: &Stop, advice: &'static str) -> &'static str {
    match stop {
        Stop::Clean => "",
        Stop::Failed(_) => advice,
    }
}

impl ProposalError {
    /// A write's [`ProposalError::NoLeader`] after `wait`, of which nothing more is known.
    #[cfg(test)]
    pub fn no_leader_after(wait: Duration) -> Self {
        ProposalError::NoLeader(wait.into())
    }

    /// Asserts that this answer's text holds `said` and names no quorum: said of a node that
    /// stood still, which was not there to hear one (the tests of that rule share it).
    #[cfg(test)]
    pub fn assert_said_of_this_node(&self, said: &str) {
        let text = self.to_string();
        assert!(text.contains(said) && !text.contains("quorum"), "{text}");
    }

    /// A write's [`ProposalError::Timeout`] after `wait`, of which nothing more is known.
    #[cfg(test)]
    pub fn timeout_after(wait: Duration) -> Self {
        ProposalError::Timeout(wait.into())
    }

    /// A read's [`ProposalError::ReadTimeout`] after `wait`, of which nothing more is known.
    #[cfg(test)]
    pub fn read_timeout_after(wait: Duration) -> Self {
        ProposalError::ReadTimeout(wait.into())
    }

    /// This answer, given on a node that refused the leader's snapshot for `refused` (see
    /// [`Shared::snapshot_refused`]): an answer that its wait ran out names that, unless it
    /// names this node's own standstill, which held it up whatever else was wrong. Any other
    /// answer stays as it is: it has a cause of its own.
    pub fn on_a_node_that_refused_a_snapshot(self, refused: String) -> ProposalError {
        let ran_out = match &self {
            ProposalError::NotProposed(_) => true,
            ProposalError::NoLeader(waited)
            | ProposalError::Timeout(waited)
            | ProposalError::ReadNoLeader(waited)
            | ProposalError::ReadTimeout(waited) => waited.own_part == OwnPart::Unremarked,
            _ => false,
        };
        match ran_out {
            true => ProposalError::CannotCatchUp {
                answer: Box::new(self),
                refused,
            },
            false => self,
        }
    }

    /// Whether the answer says the request will not happen: the node is certain that no copy
    /// of it took or can take effect, so its client may send it again, or elsewhere. Every
    /// such answer's text says "it will not happen" (see the test); a check that classifies
    /// answers asks this, not the text, so that a reworded message cannot change its verdict
    /// silently (review 110 N3). No default arm: a new answer must take a side.
    pub fn will_not_happen(&self) -> bool {
        match self {
            ProposalError::NoLeader(_)
            | ProposalError::NotProposed(_)
            | ProposalError::NotTaken(_)
            | ProposalError::Replaced(_)
            | ProposalError::Withdrawn(_)
            | ProposalError::StoppedUnproposed(_)
            | ProposalError::BuildsUnknown(..)
            | ProposalError::LeaderUnlisted(..) => true,
            // Refusals that proposed nothing, but whose text does not promise so (see the
            // note in TESTING.md on the simulator's check of changes).
            ProposalError::AlreadyMember(_)
            | ProposalError::UrlInUse { .. }
            | ProposalError::UrlIsRestApi { .. }
            | ProposalError::NotMember(_)
            | ProposalError::LastVoter(_)
            | ProposalError::ChangePending
            | ProposalError::MembershipChanged { .. }
            | ProposalError::Rejected(_)
            | ProposalError::WouldLoseQuorum(_)
            | ProposalError::OlderBuild(_) => false,
            ProposalError::Timeout(_)
            | ProposalError::WithdrawnUnknown(_)
            | ProposalError::OutcomeUnknown
            | ProposalError::Stopped(_) => false,
            // Reads and questions about the node change nothing.
            ProposalError::ReadNoLeader(_)
            | ProposalError::ReadTimeout(_)
            | ProposalError::ReadNotTaken(_)
            | ProposalError::ReadStopped(_)
            | ProposalError::NodeStopped(_)
            | ProposalError::Busy(_) => false,
            ProposalError::CannotCatchUp { answer, .. } => answer.will_not_happen(),
        }
    }

    /// A short label for metrics.
    pub fn reason(&self) -> &'static str {
        match self {
            ProposalError::NoLeader(_) | ProposalError::ReadNoLeader(_) => "no_leader",
            ProposalError::NotProposed(_) => "not_proposed",
            ProposalError::NotTaken(_) => "not_taken",
            ProposalError::Replaced(_) => "replaced",
            ProposalError::Timeout(_) => "timeout",
            ProposalError::Withdrawn(_) => "withdrawn",
            ProposalError::WithdrawnUnknown(_) => "withdrawn_unknown",
            ProposalError::OutcomeUnknown => "outcome_unknown",
            ProposalError::ReadTimeout(_) => "read_timeout",
            ProposalError::ReadNotTaken(_) => "not_taken",
            ProposalError::ReadStopped(_) | ProposalError::NodeStopped(_) => "stopped",
            ProposalError::Busy(_) => "busy",
            ProposalError::Stopped(_) => "stopped",
            ProposalError::StoppedUnproposed(_) => "stopped_unproposed",
            ProposalError::AlreadyMember(_) => "already_member",
            ProposalError::UrlInUse { .. } => "url_in_use",
            ProposalError::UrlIsRestApi { .. } => "url_is_rest_api",
            ProposalError::NotMember(_) => "not_member",
            ProposalError::LastVoter(_) => "last_voter",
            ProposalError::ChangePending => "change_pending",
            ProposalError::MembershipChanged { .. } => "membership_changed",
            ProposalError::Rejected(_) => "rejected",
            ProposalError::WouldLoseQuorum(_) => "would_lose_quorum",
            ProposalError::OlderBuild(_) => "older_build",
            ProposalError::BuildsUnknown(..) => "builds_unknown",
            // A dashboard must tell a silent leader from one not among the members.
            ProposalError::LeaderUnlisted(..) => "leader_unlisted",
            // Counted as what ran out; `/-/ready` says why the node cannot catch up.
            ProposalError::CannotCatchUp { answer, .. } => answer.reason(),
        }
    }
}

/// Why the node stopped.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Exit {
    /// Asked to stop.
    Shutdown,
    /// Removed from the cluster: the process exits with status 0, as the original does.
    Removed,
    /// A storage failure or a broken invariant: the process exits non-zero.
    Fatal(String),
}

/// How fresh a read must be.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ReadConsistency {
    /// Confirmed by a quorum (ReadIndex): sees every write acknowledged before it began.
    Linearizable,
    /// The local map as it is: fast, possibly behind the leader.
    Stale,
}

/// A snapshot of the node's state, for `/-/status`, `/-/ready` and `/-/members`.
#[derive(Debug, Clone, Serialize, PartialEq, Eq)]
pub struct NodeStatus {
    /// This node's id.
    pub id: u64,
    /// Follower, candidate, pre-candidate or leader.
    pub role: String,
    /// The leader's id, 0 if none is known.
    pub leader: u64,
    /// Current term.
    pub term: u64,
    /// Whom this node voted for in this term (0 for nobody).
    pub vote: u64,
    /// Highest index known committed.
    pub commit: u64,
    /// Highest index handed to the state machine.
    pub applied: u64,
    /// Index of the newest snapshot.
    pub snapshot_index: u64,
    /// First index still in the in-memory log.
    pub first_index: u64,
    /// Last index in the log.
    pub last_index: u64,
    /// Commit index found at start-up, raised to the index the leader answered the node's
    /// ready probe with: `/-/ready` waits until it is applied.
    pub commit_at_start: u64,
    /// Bytes of WAL segments on disk.
    pub wal_bytes: u64,
    /// Sessions in the exactly-once table (one per member, its running process's: every
    /// process registers one as soon as it is a member) and the ranges of applied request
    /// numbers it holds: its size, which stays small however long the cluster runs.
    pub sessions: (usize, usize),
    /// The cluster's incarnation as of `applied` (see [`crate::incarnation`]): hex, or
    /// `not-yet` (no session registration applied yet) or `unknown` (restored from a
    /// snapshot of a version that did not record it).
    pub incarnation: String,
    /// The build this node runs (see [`crate::version`]): it tells, in a rolling upgrade,
    /// which nodes still run the old one.
    pub build: crate::version::Build,
    /// The members and their peer URLs.
    pub members: Vec<MemberStatus>,
    /// On the leader, each follower's replication progress.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub progress: Option<BTreeMap<u64, PeerProgress>>,
    /// On a leader handing leadership over (stopping, or removed): the voter it asked.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub transferring_to: Option<u64>,
    /// The last entries of the log, described (the live page's log strips).
    pub log_tail: Vec<EntryView>,
}

/// One member in [`NodeStatus`].
#[derive(Debug, Clone, Serialize, PartialEq, Eq)]
pub struct MemberStatus {
    /// Member id.
    pub id: u64,
    /// Peer URL.
    pub url: String,
    /// Whether it is the leader as this node knows.
    pub is_leader: bool,
}

/// A follower's replication state as the leader sees it.
#[derive(Debug, Clone, Serialize, PartialEq, Eq)]
pub struct PeerProgress {
    /// Highest index known to be in the follower's log.
    pub matched: u64,
    /// Next index to send.
    pub next: u64,
    /// Probe, replicate or snapshot.
    pub state: String,
    /// Whether it was heard from within the last election timeout.
    pub reachable: bool,
}

/// What the raft node publishes for readers that must not wait on its inbox (`/-/ready`
/// answers even while the node is busy replaying).
#[derive(Debug, Default)]
pub struct Shared {
    /// The leader this node knows, 0 for none.
    pub leader: AtomicU64,
    /// Commit index found in the WAL at start-up, raised to the index the leader answered the
    /// node's first ready probe with (a ReadIndex: how far the cluster had committed).
    pub commit_at_start: AtomicU64,
    /// Commit index found in the WAL at start-up (what replaying it reaches).
    pub commit_in_wal: AtomicU64,
    /// The leader's latest answers to the node's ready probe, in the order their rounds were asked
    /// (at most [`KEPT_PROBE_ANSWERS`]): `/-/ready` says yes while the node has applied one asked
    /// within its window.
    pub probe_answers: Mutex<VecDeque<ProbeAnswer>>,
    /// Live events for the page at `/-/ui`, published from the Ready trace; describes the
    /// log's last entries for the status too.
    pub events: Events,
    /// Whether the members this node has applied are the cluster's latest as far as it can
    /// tell (it leads with every membership change in its log applied and a quorum heard
    /// lately, or follows a leader heard lately and has applied an entry of its term with
    /// none left unapplied; never while a leader holds back entries): the peer server
    /// answers a removed node's vote requests 410 Gone only then (see `RaftNode`'s
    /// `membership_settled`).
    pub membership_settled: AtomicBool,
    /// Why this node refused the latest snapshot a leader sent it for reasons of its own (no
    /// room on its disk, over its `--max-snapshot-bytes`, a step after its last byte it could
    /// not finish in time), and which snapshot if its message was read, until it or a newer
    /// one is delivered: such a node stays behind however often the leader tries, and
    /// `/-/ready` says why.
    pub snapshot_refused: Mutex<Option<(Option<SentSnapshot>, String)>>,
    /// What this node's answer to a joining node rests on (`transport::join`'s
    /// `MemberView`): published as one piece, so that an answer never catches a session
    /// between the log and the applied table.
    pub join_facts: Mutex<JoinFacts>,
    /// The last entry this node has applied (a snapshot's, or a committed entry's), for its
    /// answers to joining nodes.
    pub applied: AtomicU64,
    /// That entry's term, stored before `applied`: read after it, it is that entry's or a later
    /// one's.
    pub applied_term: AtomicU64,
    /// The node's current term, for its answers to joining nodes.
    pub term: AtomicU64,
    /// The failure that stopped the node, set once, before it answers what it leaves behind:
    /// the handle reads it for the requests that find the node gone (see [`Stop`]).
    pub(crate) failure: OnceLock<Failure>,
}

/// What a member knows of who has run, for its answer to a node that asks to join on an empty
/// data dir: one under an id that has run since it was last added lost the data of that run,
/// and is refused (`transport::join`).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct JoinFacts {
    /// The members whose session in the exactly-once table this node has applied began after
    /// their latest addition, and each session's id (its registration's index): each has run
    /// since it was last added.
    pub running: BTreeMap<u64, u64>,
    /// The session registrations this node's log holds past what it has applied (appended,
    /// committed or not), by the node that registered, and the first one's index. Published
    /// before this node acknowledges them, and taken out once applied (then `running` says
    /// it), overwritten (never committed) or replaced by a snapshot (whose table holds it): a
    /// registration that committed is in the log of a quorum, which then all say so.
    pub logged: BTreeMap<u64, u64>,
    /// The voters of the membership this node has applied, in ascending order.
    pub voters: Vec<u64>,
    /// Whether, leading, it holds back committed entries (its own removal among them: see
    /// `RaftNode::commit_entries`), or its log past what it applied could not be read at
    /// start: its voters may be behind what it committed, and it vouches for no joining node.
    pub vouch_for_none: bool,
}

/// Answers kept in [`Shared::probe_answers`]: with a round every two ticks and a window of an
/// election timeout (ten), more than the window holds.
pub const KEPT_PROBE_ANSWERS: usize = 16;

/// The leader's answer to one round of a node's ready probe.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ProbeAnswer {
    /// What the cluster had committed when the round was asked.
    pub index: u64,
    /// When the round was asked (the node's clock).
    pub asked_at: Instant,
    /// How long after that a node that has applied `index` still counts as caught up.
    pub window: Duration,
}

/// A leader's snapshot as a follower received it: the term of the leader that sent it, and
/// the snapshot's index. Ordered by the term first: a deposed leader may still be sending a
/// snapshot of a higher index than the current leader's (each takes its own on its own
/// schedule), and it is the current leader's that the node must store to catch up (found by
/// a review: an order by index alone kept a deposed leader's reason over the current one's).
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub struct SentSnapshot {
    /// The sender's term when it sent the snapshot.
    pub term: u64,
    /// The index of the snapshot's last entry.
    pub index: u64,
}

impl Shared {
    /// The leader's latest answers to the ready probe, oldest first.
    pub fn probe_answers(&self) -> Vec<ProbeAnswer> {
        // Plain values: what a panicking writer left is still usable.
        let answers = self.probe_answers.lock().unwrap_or_else(|p| p.into_inner());
        answers.iter().copied().collect()
    }

    /// Adds the answer to a round of the ready probe (the raft node).
    pub(crate) fn add_probe_answer(&self, answer: ProbeAnswer) {
        let mut answers = self.probe_answers.lock().unwrap_or_else(|p| p.into_inner());
        // Kept in the order the rounds were asked (a late answer to an earlier round may come
        // after a later one's), so that the one dropped is the round asked first.
        let at = answers.partition_point(|a| a.asked_at <= answer.asked_at);
        answers.insert(at, answer);
        if answers.len() > KEPT_PROBE_ANSWERS {
            answers.pop_front();
        }
    }

    /// Records why the peer server refused a leader's `snapshot` (`None`: not known, refused
    /// before its message was read without a header naming it that parses: from a sender of an
    /// older build, or one whose message's length prefix was over the limit). The refusal of a
    /// snapshot sent before the one whose reason is kept (by a deposed leader still sending) leaves
    /// that reason: replacing it hid the current leader's trouble on a node that had applied the
    /// older index by the log, until that leader tried again (up to its sender's back-off, 8 s,
    /// later). A refusal whose snapshot is not known cannot be ordered against the kept one, so it
    /// replaces it as the latest word, and a refusal of a known one replaces it in turn: a reason
    /// without an index never goes stale by the applied index, so it hides nothing; at worst it
    /// names another attempt's trouble until the next refusal or delivery.
    pub(crate) fn note_snapshot_refused(&self, snapshot: Option<SentSnapshot>, why: String) {
        let mut refused = self
            .snapshot_refused
            .lock()
            .unwrap_or_else(|p| p.into_inner());
        if snapshot.is_some_and(|snapshot| kept_is_later(&refused, snapshot)) {
            return;
        }
        *refused = Some((snapshot, why));
    }

    /// Records that the peer server handed the raft node a leader's `snapshot`. The reason
    /// kept goes, unless it is of one sent later: a snapshot from a deposed leader, delivered
    /// (raft then drops it as stale), says nothing of whether this node can store the current
    /// leader's. A reason whose snapshot is not known goes too, as before: a snapshot got
    /// through.
    pub(crate) fn note_snapshot_delivered(&self, snapshot: SentSnapshot) {
        let mut refused = self
            .snapshot_refused
            .lock()
            .unwrap_or_else(|p| p.into_inner());
        if !kept_is_later(&refused, snapshot) {
            *refused = None;
        }
    }

    /// Why this node refused the latest snapshot a leader sent it, if it did and has not
    /// `applied` that snapshot's index since: a node that caught up past it by the log (from
    /// a new leader that still had the entries) no longer needs it, and a reason that stayed
    /// would tell its operator to mend what is not broken (found by a review).
    pub fn snapshot_refused(&self, applied: u64) -> Option<String> {
        let refused = self
            .snapshot_refused
            .lock()
            .unwrap_or_else(|p| p.into_inner());
        match &*refused {
            Some((Some(snapshot), _)) if applied >= snapshot.index => None,
            Some((_, why)) => Some(why.clone()),
            None => None,
        }
    }

    /// Records the failure that stops the node (the raft node, before it answers anything it
    /// leaves behind). The first one is the cause: what may fail after it is its consequence.
    pub(crate) fn note_failure(&self, failure: Failure) {
        let _ = self.failure.set(failure);
    }

    /// How the node stopped, or is stopping: on a failure once it noted one, else cleanly.
    pub fn stop(&self) -> Stop {
        self.failure
            .get()
            .cloned()
            .map_or(Stop::Clean, Stop::Failed)
    }

    /// Whether this node knows a leader (itself included).
    pub fn knows_leader(&self) -> bool {
        self.leader.load(Ordering::Acquire) != raft::INVALID_ID
    }

    /// Whether this node's applied members are the cluster's latest as far as it can tell
    /// (see [`membership_settled`](Self::membership_settled)).
    pub fn is_membership_settled(&self) -> bool {
        self.membership_settled.load(Ordering::Acquire)
    }

    /// Whether this node counts member `id` as running since its latest addition, by the
    /// sessions it has applied.
    pub fn counts_running(&self, id: u64) -> bool {
        // Plain values: what a panicking writer left is still usable.
        let facts = self.join_facts.lock().unwrap_or_else(|p| p.into_inner());
        facts.running.contains_key(&id)
    }

    /// A copy of [`join_facts`](Self::join_facts).
    pub fn join_facts(&self) -> JoinFacts {
        // Plain values: what a panicking writer left is still usable.
        self.join_facts
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .clone()
    }
}

/// Whether the refusal `kept` is of a snapshot sent after `snapshot`, which then says nothing
/// of it (see [`Shared::note_snapshot_refused`]).
fn kept_is_later(kept: &Option<(Option<SentSnapshot>, String)>, snapshot: SentSnapshot) -> bool {
    matches!(kept, Some((Some(kept), _)) if snapshot < *kept)
}

#[cfg(test)]
mod tests {
    use super::*;

    /// `will_not_happen` and the text a client reads agree on every answer: a message reworded
    /// without the method (or the other way round) fails here, not silently in the checks
    /// that classify answers by the method while clients read the text (review 110 N3).
    #[test]
    fn will_not_happen_is_what_the_text_says() {
        let d = Duration::from_secs(5);
        let all = [
            ProposalError::NoLeader(d.into()),
            ProposalError::NoLeader(Waited {
                wait: d,
                own_part: OwnPart::StoodStill(d),
            }),
            ProposalError::NoLeader(Waited {
                wait: d,
                own_part: OwnPart::NoAnswer(d),
            }),
            ProposalError::NotProposed(d),
            ProposalError::NotTaken(d),
            ProposalError::Replaced(d),
            ProposalError::timeout_after(d),
            ProposalError::Timeout(Waited {
                wait: d,
                own_part: OwnPart::NoAnswer(d),
            }),
            ProposalError::Withdrawn(d),
            ProposalError::WithdrawnUnknown(d),
            ProposalError::OutcomeUnknown,
            ProposalError::ReadNoLeader(d.into()),
            ProposalError::read_timeout_after(d),
            ProposalError::ReadTimeout(Waited {
                wait: d,
                own_part: OwnPart::NoAnswer(d),
            }),
            ProposalError::ReadNotTaken(d),
            ProposalError::ReadStopped(Stop::Clean),
            ProposalError::ReadStopped(disk_full()),
            ProposalError::NodeStopped(Stop::Clean),
            ProposalError::NodeStopped(disk_full()),
            ProposalError::Busy(d),
            ProposalError::Stopped(Stop::Clean),
            ProposalError::Stopped(disk_full()),
            ProposalError::StoppedUnproposed(Stop::Clean),
            ProposalError::StoppedUnproposed(disk_full()),
            ProposalError::StoppedUnproposed(Stop::Failed(Failure {
                disk_full: false,
                error: "the state machine stopped applying entries".into(),
            })),
            ProposalError::AlreadyMember(2),
            ProposalError::UrlInUse {
                url: "http://a:1".into(),
                id: 2,
            },
            ProposalError::UrlIsRestApi {
                url: "http://a:1".into(),
                id: 2,
                listen: ([127, 0, 0, 1], 1).into(),
            },
            ProposalError::NotMember(2),
            ProposalError::LastVoter(2),
            ProposalError::ChangePending,
            ProposalError::MembershipChanged {
                checked: vec![1, 2],
                now: vec![1],
            },
            ProposalError::Rejected("no".into()),
            ProposalError::WouldLoseQuorum("no".into()),
            ProposalError::OlderBuild(vec![2]),
            ProposalError::BuildsUnknown(2, d),
            ProposalError::LeaderUnlisted(2, d),
        ];
        let refused = |answer: ProposalError| {
            answer.on_a_node_that_refused_a_snapshot("over --max-snapshot-bytes".into())
        };
        let behind = [
            refused(ProposalError::NotProposed(d)),
            refused(ProposalError::no_leader_after(d)),
            refused(ProposalError::timeout_after(d)),
            refused(ProposalError::read_timeout_after(d)),
            refused(ProposalError::ReadNoLeader(d.into())),
        ];
        for err in all.into_iter().chain(behind) {
            let says = err.to_string().contains("will not happen");
            assert_eq!(err.will_not_happen(), says, "{err:?}: {err}");
        }
    }

    /// The failure that stopped a node as its WAL found a full disk (see
    /// `NodeError::failure`).
    fn disk_full() -> Stop {
        Stop::Failed(Failure {
            disk_full: true,
            error: "the WAL failed: I/O error on /data/wal/0.wal: No space left on device (os \
                    error 28)"
                .into(),
        })
    }

    /// A clean stop (a signal, a removal) keeps the words its answers always had; a failure
    /// is named in each (found by a hands-on campaign: a node whose disk filled said "the node
    /// is shutting down", as for a SIGTERM), and each still says what became of the request,
    /// and where to go.
    #[test]
    fn a_stop_on_a_failure_names_it_and_a_clean_stop_keeps_its_words() {
        let clean = [
            (
                ProposalError::Stopped(Stop::Clean),
                "the node is shutting down; a request it had proposed may still happen",
            ),
            (
                ProposalError::StoppedUnproposed(Stop::Clean),
                "the node is shutting down and had not proposed the request: it will not happen",
            ),
            (
                ProposalError::ReadStopped(Stop::Clean),
                "the node is shutting down; nothing was read: retry on another member",
            ),
            (
                ProposalError::NodeStopped(Stop::Clean),
                "the node is shutting down: ask another member",
            ),
        ];
        for (err, said) in clean {
            assert_eq!(err.to_string(), said);
        }
        let failed = [
            (
                ProposalError::Stopped(disk_full()),
                "a request it had proposed may still happen: check on another member",
            ),
            (
                ProposalError::StoppedUnproposed(disk_full()),
                "had not proposed the request: it will not happen; send it to another member",
            ),
            (
                ProposalError::ReadStopped(disk_full()),
                "nothing was read: retry on another member",
            ),
            (
                ProposalError::NodeStopped(disk_full()),
                "ask another member",
            ),
        ];
        for (err, outcome) in failed {
            let text = err.to_string();
            assert!(
                text.starts_with("the node stopped: its disk is full (the WAL failed: ")
                    && text.contains("No space left on device")
                    && text.contains(outcome)
                    && !text.contains("shutting down"),
                "{text}"
            );
        }
        let other = ProposalError::Stopped(Stop::Failed(Failure {
            disk_full: false,
            error: "raft: store error".into(),
        }));
        assert!(
            other
                .to_string()
                .starts_with("the node stopped on a fatal error (raft: store error); a request"),
            "{other}"
        );
    }

    /// A wait that ran out on a node that refused the leader's snapshot names the refusal
    /// (retrying there is futile until its operator acts) in place of a quorum or a leader,
    /// and keeps what became of the request; an answer with a cause of its own (the node
    /// stood still, its queue stayed full, it stopped) is left as it is.
    #[test]
    fn a_wait_that_ran_out_on_a_node_that_refused_a_snapshot_names_the_refusal() {
        let d = Duration::from_secs(5);
        let why = "snapshot 0000000000000002-0000000000000031.snap is over this node's \
                   --max-snapshot-bytes (1000 bytes)";
        let named = [
            (
                ProposalError::read_timeout_after(d),
                "read not confirmed within 5s: this node cannot catch up: it refused the \
                 leader's snapshot (",
                "); see /-/ready; nothing was read: retry on another member",
            ),
            (
                ProposalError::NotProposed(d),
                "the request was not proposed within 5s: this node cannot catch up: it refused \
                 the leader's snapshot (",
                "); see /-/ready; it will not happen: send it to another member",
            ),
            (
                ProposalError::timeout_after(d),
                "not committed within 5s: this node cannot catch up: it refused the leader's \
                 snapshot (",
                "); see /-/ready; it may still happen: check on another member before sending it \
                 again",
            ),
        ];
        for (answer, before, after) in named {
            let err = answer.clone().on_a_node_that_refused_a_snapshot(why.into());
            assert_eq!(err.to_string(), format!("{before}{why}{after}"));
            assert!(!err.to_string().contains("quorum"), "{err}");
            assert_eq!(err.will_not_happen(), answer.will_not_happen(), "{err}");
            assert_eq!(err.reason(), answer.reason(), "{err}");
        }
        let own_cause = [
            ProposalError::ReadTimeout(Waited {
                wait: d,
                own_part: OwnPart::StoodStill(d),
            }),
            ProposalError::Timeout(Waited {
                wait: d,
                own_part: OwnPart::NoAnswer(d),
            }),
            ProposalError::NotTaken(d),
            ProposalError::ReadNotTaken(d),
            ProposalError::Stopped(Stop::Clean),
            ProposalError::Withdrawn(d),
        ];
        for answer in own_cause {
            let err = answer.clone().on_a_node_that_refused_a_snapshot(why.into());
            assert_eq!(err, answer);
        }
    }

    /// A leader not among the members and a leader that did not say the members' builds are
    /// counted under labels of their own: a dashboard must tell them apart (review 114 L6,
    /// review 116 N1).
    #[test]
    fn a_leader_not_among_the_members_has_a_metric_label_of_its_own() {
        let d = Duration::from_secs(5);
        let unlisted = ProposalError::LeaderUnlisted(2, d).reason();
        assert_eq!(unlisted, "leader_unlisted");
        assert_ne!(unlisted, ProposalError::BuildsUnknown(2, d).reason());
    }

    fn sent(term: u64, index: u64) -> SentSnapshot {
        SentSnapshot { term, index }
    }

    /// The refusal of a snapshot sent before the one whose reason is kept leaves that
    /// reason: it replaced it, and a node that had applied the older index by the log said
    /// nothing of the newer one's trouble until the current leader tried again. Nor does such
    /// a snapshot delivered clear it; the kept one's refusal says why anew, and its delivery
    /// (or a later one's) clears it.
    #[test]
    fn an_older_snapshot_neither_hides_nor_clears_a_newer_ones_refusal() {
        let shared = Shared::default();
        shared.note_snapshot_refused(Some(sent(2, 9)), "no room for 9".into());
        shared.note_snapshot_refused(Some(sent(2, 5)), "no room for 5".into());
        assert_eq!(
            shared.snapshot_refused(5),
            Some("no room for 9".into()),
            "an older snapshot's refusal hid the newer one's"
        );
        shared.note_snapshot_delivered(sent(2, 5));
        assert_eq!(
            shared.snapshot_refused(5),
            Some("no room for 9".into()),
            "an older snapshot delivered cleared the newer one's reason"
        );
        shared.note_snapshot_refused(Some(sent(2, 9)), "over --max-snapshot-bytes".into());
        assert_eq!(
            shared.snapshot_refused(5),
            Some("over --max-snapshot-bytes".into()),
            "the same snapshot refused again says why anew"
        );
        shared.note_snapshot_delivered(sent(2, 9));
        assert_eq!(shared.snapshot_refused(0), None, "it was delivered");
        shared.note_snapshot_refused(Some(sent(2, 9)), "no room for 9".into());
        shared.note_snapshot_delivered(sent(2, 12));
        assert_eq!(
            shared.snapshot_refused(0),
            None,
            "a newer one was delivered"
        );
    }

    /// A deposed leader may still be sending a snapshot of a higher index than the current
    /// leader's (each takes its own on its own schedule): the current leader's, sent in a
    /// later term, is the one the node must store, so its reason wins whatever the indexes
    /// (found by a review: ordered by index alone, a deposed leader's stale reason was kept
    /// over the current leader's "no room", for as long as the current leader's snapshots
    /// stayed below it, and its late delivery cleared the current one's).
    #[test]
    fn the_current_leaders_refusal_wins_over_a_deposed_leaders_of_a_higher_index() {
        let shared = Shared::default();
        shared.note_snapshot_refused(Some(sent(5, 60_000)), "gave up handing it over".into());
        shared.note_snapshot_refused(Some(sent(6, 55_000)), "no room: free space".into());
        assert_eq!(
            shared.snapshot_refused(20_000),
            Some("no room: free space".into()),
            "the deposed leader's reason was kept over the current one's"
        );
        shared.note_snapshot_refused(Some(sent(5, 60_000)), "gave up handing it over".into());
        shared.note_snapshot_delivered(sent(5, 60_000));
        assert_eq!(
            shared.snapshot_refused(20_000),
            Some("no room: free space".into()),
            "the deposed leader's late send replaced or cleared the current one's reason"
        );
        shared.note_snapshot_delivered(sent(6, 55_000));
        assert_eq!(shared.snapshot_refused(0), None, "delivered");
    }

    /// A refusal before the snapshot's message was read (its length over the limit) cannot
    /// be told older or newer than the one whose reason is kept: it is the latest word, and
    /// never stale by the applied index. The next refusal of a known snapshot replaces it, as
    /// any delivery clears it.
    #[test]
    fn a_refusal_whose_index_is_not_known_is_the_latest_word() {
        let shared = Shared::default();
        shared.note_snapshot_refused(Some(sent(2, 9)), "no room for 9".into());
        shared.note_snapshot_refused(None, "too large".into());
        assert_eq!(shared.snapshot_refused(100), Some("too large".into()));
        shared.note_snapshot_refused(Some(sent(2, 5)), "no room for 5".into());
        assert_eq!(shared.snapshot_refused(0), Some("no room for 5".into()));
        shared.note_snapshot_refused(None, "too large".into());
        shared.note_snapshot_delivered(sent(2, 1));
        assert_eq!(shared.snapshot_refused(0), None);
    }
}
