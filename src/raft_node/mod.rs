//! The raft node: the one task that owns the `RawNode`. Everything else talks to it through
//! its inbox ([`Inbox`]): the REST API sends proposals, reads and membership changes; the
//! transport server sends peer messages; peer tasks report failures. The node ticks raft,
//! handles each `Ready` in the order raft-rs requires (`ready.rs`), and publishes committed
//! entries to the state machine (see [`crate::kvstore::Applier`]).
//!
//! It runs on a thread of its own with a single-threaded runtime, so that an fsync blocks
//! nothing but raft itself: while it waits on the disk, HTTP requests and peer messages
//! queue up, and the next `Ready` carries them all in one write and one sync.
//!
//! Client requests ride through leader changes: they wait for a leader, are proposed again
//! when a leader change may have lost them, and take effect once ([`proposals`], [`reads`],
//! [`crate::proposal`]).

mod proposals;
mod reads;
mod ready;
pub mod replay;
pub mod storage;
#[cfg(test)]
mod tests;
mod trace;

use std::collections::{BTreeMap, BTreeSet};
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

use raft::eraftpb::{
    ConfChangeSingle, ConfChangeType, ConfChangeV2, ConfState, EntryType, Message, MessageType,
};
use raft::{INVALID_ID, RawNode, SnapshotStatus, StateRole};
use serde::Serialize;
use tokio::sync::{mpsc, oneshot};
use tokio_util::sync::CancellationToken;

use crate::config::Config;
use crate::kvstore::{Applier, KvStore};
use crate::membership::Members;
use crate::metrics::Metrics;
use crate::proposal::Sessions;
use crate::transport::Transport;
use crate::wal::{Metadata, Wal, WalOptions};

use proposals::{Proposals, Request};
use reads::Reads;
pub use replay::{Recovered, StartError, replay_wal};
use storage::NodeStorage;

/// Answers one client request once its entry is applied (or its read is safe to serve).
pub type Responder = oneshot::Sender<Result<(), ProposalError>>;

/// Everything the raft node can be asked to do.
pub enum Inbox {
    /// Propose a normal entry.
    Propose {
        /// An encoded [`crate::kvstore::Command`].
        data: Vec<u8>,
        /// Answered once the entry is applied on this node.
        done: Responder,
    },
    /// Propose a membership change.
    ChangeMembers {
        /// What to change.
        change: MemberChange,
        /// Answered once the change is applied on this node.
        done: Responder,
    },
    /// A linearizable read barrier: answered once the state machine has applied everything
    /// that was committed when the read arrived (raft's ReadIndex).
    Read(Responder),
    /// Messages from a peer.
    Step(Vec<Message>),
    /// A peer could not be reached.
    Unreachable(u64),
    /// A snapshot was (or was not) delivered to a peer.
    SnapshotStatus {
        /// The peer.
        peer: u64,
        /// Whether it accepted the snapshot.
        delivered: bool,
    },
    /// A peer answered 410 Gone: it believes this node was removed.
    RemovedByPeer {
        /// The peer.
        peer: u64,
        /// The log index as of which it believes so (`None`: it did not say).
        as_of: Option<u64>,
    },
    /// Report the node's state.
    Status(oneshot::Sender<NodeStatus>),
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
    /// No leader was known for the whole wait: the request never left this node.
    #[error(
        "no leader was elected within {0:?} (a quorum may be down); the request was not proposed: it will not happen"
    )]
    NoLeader(Duration),
    /// A leader was known, but the request could not be handed to it in time (it was busy
    /// handing over leadership, or over its limit of uncommitted entries).
    #[error(
        "the leader did not take the request within {0:?}; it was not proposed: it will not happen"
    )]
    NotProposed(Duration),
    /// Every copy of the entry was overwritten by a new leader, and it could not be proposed
    /// again in time.
    #[error(
        "a new leader replaced the entry and it could not be proposed again within {0:?}: it will not happen"
    )]
    Replaced(Duration),
    /// The entry was proposed but not applied in time; it may still commit.
    #[error("not committed within {0:?} (a quorum may be down); it may still happen")]
    Timeout(Duration),
    /// No leader was known for the whole wait of a read.
    #[error("no leader was elected within {0:?} (a quorum may be down); nothing was read")]
    ReadNoLeader(Duration),
    /// A read could not be confirmed by a quorum in time.
    #[error("read not confirmed by a quorum within {0:?}; retry")]
    ReadTimeout(Duration),
    /// The raft node did not answer a status request in time.
    #[error("the node did not answer within {0:?} (it may be busy); retry")]
    Busy(Duration),
    /// The node is stopping.
    #[error("the node is shutting down; a request it had proposed may still happen")]
    Stopped,
    /// Adding an id that is already a member.
    #[error("node {0} is already a member")]
    AlreadyMember(u64),
    /// Adding a URL another member uses.
    #[error("peer URL {url} is already used by node {id}")]
    UrlInUse {
        /// The URL.
        url: String,
        /// The member using it.
        id: u64,
    },
    /// Removing an id that is not a member.
    #[error("node {0} is not a member")]
    NotMember(u64),
    /// Removing the last voter.
    #[error("removing node {0} would leave the cluster with no voter")]
    LastVoter(u64),
    /// Another membership change has not been applied yet.
    #[error("another membership change is still in progress; retry once it is applied")]
    ChangePending,
    /// raft refused the change when applying it.
    #[error("membership change rejected: {0}")]
    Rejected(String),
    /// The change would leave the cluster unable to reach a quorum with the members that
    /// answer now.
    #[error("{0}")]
    WouldLoseQuorum(String),
}

impl ProposalError {
    /// A short label for metrics.
    pub fn reason(&self) -> &'static str {
        match self {
            ProposalError::NoLeader(_) | ProposalError::ReadNoLeader(_) => "no_leader",
            ProposalError::NotProposed(_) => "not_proposed",
            ProposalError::Replaced(_) => "replaced",
            ProposalError::Timeout(_) => "timeout",
            ProposalError::ReadTimeout(_) => "read_timeout",
            ProposalError::Busy(_) => "busy",
            ProposalError::Stopped => "stopped",
            ProposalError::AlreadyMember(_) => "already_member",
            ProposalError::UrlInUse { .. } => "url_in_use",
            ProposalError::NotMember(_) => "not_member",
            ProposalError::LastVoter(_) => "last_voter",
            ProposalError::ChangePending => "change_pending",
            ProposalError::Rejected(_) => "rejected",
            ProposalError::WouldLoseQuorum(_) => "would_lose_quorum",
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

/// A failure that stops the node.
#[derive(Debug, thiserror::Error)]
pub enum NodeError {
    /// The WAL failed (a failed sync among them: the batch is never acknowledged).
    #[error(transparent)]
    Wal(#[from] crate::wal::Error),
    /// The snapshotter failed.
    #[error(transparent)]
    Snapshot(#[from] crate::snapshotter::Error),
    /// raft-rs refused an operation that the node's bookkeeping says is valid.
    #[error("raft: {0}")]
    Raft(#[from] raft::Error),
    /// The state machine thread stopped.
    #[error("the state machine stopped applying entries")]
    ApplyStopped,
    /// A joining node must persist before it learned which cluster it joined.
    #[error("cannot create the WAL: no message from the cluster has said its identity yet")]
    UnknownCluster,
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
    /// Commit index found at start-up: `/-/ready` waits until it is applied.
    pub commit_at_start: u64,
    /// Bytes of WAL segments on disk.
    pub wal_bytes: u64,
    /// Sessions in the exactly-once table (one per node that proposed since it last
    /// restarted) and the ranges of applied request numbers it holds: its size, which stays
    /// small however long the cluster runs.
    pub sessions: (usize, usize),
    /// The members and their peer URLs.
    pub members: Vec<MemberStatus>,
    /// On the leader, each follower's replication progress.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub progress: Option<BTreeMap<u64, PeerProgress>>,
    /// The last entries of the log, described (the page's log strips).
    pub log_tail: Vec<crate::events::EntryView>,
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
    /// Whether the last message batch reached it.
    pub reachable: bool,
}

/// What the raft node publishes for readers that must not wait on its inbox (`/-/ready`
/// answers even while the node is busy replaying).
#[derive(Debug, Default)]
pub struct Shared {
    /// The leader this node knows, 0 for none.
    pub leader: AtomicU64,
    /// Commit index found in the WAL at start-up.
    pub commit_at_start: AtomicU64,
    /// Live events for the page at `/-/ui`, published from the Ready trace; describes the
    /// log's last entries for the status too.
    pub events: crate::events::Events,
}

/// Ticks of an election timeout (raft picks each node's between this and twice this).
const ELECTION_TICKS: u32 = 10;
/// How long a stopping follower answers what is in flight before it exits regardless.
const STOP_LIMIT: Duration = Duration::from_millis(400);
/// How long a stopping leader takes to hand leadership over and answer what is in flight.
const LEADER_STOP_LIMIT: Duration = Duration::from_millis(800);

/// Ticks a forwarded proposal goes unanswered before it is sent again (two of the longest
/// election timeouts: a leader change usually comes first, and sends everything again).
const RESEND_TICKS: u32 = 40;

/// How long a member's peer port may take to accept a connection and still count as
/// answering, for the strict reconfiguration check.
const PROBE_TIMEOUT: Duration = Duration::from_millis(300);

/// Whether something accepts connections at the peer URL `url` (a node that is down or cut
/// off does not).
async fn answers(url: &str) -> bool {
    let Ok(addr) = crate::membership::host_port(url) else {
        return false;
    };
    matches!(
        tokio::time::timeout(PROBE_TIMEOUT, tokio::net::TcpStream::connect(addr)).await,
        Ok(Ok(_))
    )
}

/// How much longer than its timeout a request waits for the node's own answer before the
/// handle gives up on it.
const STUCK_MARGIN: Duration = Duration::from_secs(1);

/// The client side of the inbox: what the REST API and in-process tests use.
#[derive(Clone)]
pub struct NodeHandle {
    /// This node's id.
    pub id: u64,
    inbox: mpsc::Sender<Inbox>,
    kv: KvStore,
    timeout: Duration,
    shared: Arc<Shared>,
    metrics: Arc<Metrics>,
    /// Whether membership changes get etcd's strict reconfiguration check.
    strict_reconfig: bool,
}

/// How fresh a read must be.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ReadConsistency {
    /// Confirmed by a quorum (ReadIndex): sees every write acknowledged before it began.
    Linearizable,
    /// The local map as it is: fast, possibly behind the leader.
    Stale,
}

impl NodeHandle {
    /// A handle sending to `inbox` and reading from `kv`.
    pub fn new(
        id: u64,
        inbox: mpsc::Sender<Inbox>,
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
            strict_reconfig: true,
        }
    }

    /// Turns etcd's strict reconfiguration check on or off (on by default).
    pub fn with_strict_reconfig(mut self, strict: bool) -> Self {
        self.strict_reconfig = strict;
        self
    }

    /// Sets `key` to `value`; returns once the entry is committed and applied on this node.
    pub async fn put(&self, key: String, value: String) -> Result<(), ProposalError> {
        let data = crate::kvstore::Command::Put { key, value }.encode();
        self.proposal(|done| Inbox::Propose { data, done }).await
    }

    /// Reads `key`.
    pub async fn get(
        &self,
        key: &str,
        consistency: ReadConsistency,
    ) -> Result<Option<String>, ProposalError> {
        if consistency == ReadConsistency::Linearizable {
            self.metrics.read_index_requests.inc();
            let started = Instant::now();
            self.request(Inbox::Read, ProposalError::ReadTimeout)
                .await?;
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
        if self.strict_reconfig {
            self.check_quorum_after(&change).await?;
        }
        self.proposal(|done| Inbox::ChangeMembers { change, done })
            .await
    }

    /// etcd's strict reconfiguration check. Every member's peer port is probed (this node
    /// counts as answering); adding an existing member or removing a stranger is left to
    /// the raft node, which refuses it with its own reason.
    async fn check_quorum_after(&self, change: &MemberChange) -> Result<(), ProposalError> {
        let status = self.status().await?;
        let voters: BTreeSet<u64> = status.members.iter().map(|m| m.id).collect();
        let (add, id) = match change {
            MemberChange::Add { id, .. } => (true, *id),
            MemberChange::Remove { id } => (false, *id),
        };
        if add == voters.contains(&id) {
            return Ok(());
        }
        let mut probes = tokio::task::JoinSet::new();
        for m in status
            .members
            .iter()
            .filter(|m| m.id != self.id && m.id != id)
        {
            let (member, url) = (m.id, m.url.clone());
            probes.spawn(async move { answers(&url).await.then_some(member) });
        }
        let mut reachable = BTreeSet::from([self.id]);
        while let Some(probe) = probes.join_next().await {
            reachable.extend(probe.ok().flatten());
        }
        crate::membership::quorum_after_change(&voters, add, id, &reachable)
            .map_err(ProposalError::WouldLoseQuorum)
    }

    /// Whether this node should get client traffic: it knows a leader and has applied
    /// everything that was committed when it started. `Err` says why not.
    pub fn readiness(&self) -> Result<(), String> {
        if self.shared.leader.load(Ordering::Acquire) == 0 {
            return Err("no leader is known".into());
        }
        let target = self.shared.commit_at_start.load(Ordering::Acquire);
        let applied = self.kv.applied_index();
        if applied < target {
            return Err(format!(
                "replaying the log: applied {applied} of the {target} entries committed at start-up"
            ));
        }
        Ok(())
    }

    /// This node's metrics.
    pub fn metrics(&self) -> &Metrics {
        &self.metrics
    }

    async fn proposal(&self, make: impl FnOnce(Responder) -> Inbox) -> Result<(), ProposalError> {
        self.metrics.proposals_received.inc();
        let result = self.request(make, ProposalError::Timeout).await;
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
        let (tx, rx) = oneshot::channel();
        let ask = async {
            self.inbox
                .send(Inbox::Status(tx))
                .await
                .map_err(|_| ProposalError::Stopped)?;
            rx.await.map_err(|_| ProposalError::Stopped)
        };
        tokio::time::timeout(self.timeout, ask)
            .await
            .map_err(|_| ProposalError::Busy(self.timeout))?
    }

    /// The local state machine.
    pub fn kv(&self) -> &KvStore {
        &self.kv
    }

    async fn request(
        &self,
        make: impl FnOnce(Responder) -> Inbox,
        on_timeout: fn(Duration) -> ProposalError,
    ) -> Result<(), ProposalError> {
        let (tx, rx) = oneshot::channel();
        let round_trip = async {
            self.inbox
                .send(make(tx))
                .await
                .map_err(|_| ProposalError::Stopped)?;
            // A dropped responder means the node stopped before answering.
            rx.await.map_err(|_| ProposalError::Stopped)?
        };
        // The node answers every request by its deadline, saying what became of it; this
        // only covers a node too stuck to answer (a disk that hangs).
        match tokio::time::timeout(self.timeout + STUCK_MARGIN, round_trip).await {
            Ok(result) => result,
            Err(_) => Err(on_timeout(self.timeout)),
        }
    }
}

/// Where a joining node will create its WAL once it knows its cluster.
struct WalPlan {
    dir: std::path::PathBuf,
    options: WalOptions,
    peer_url: String,
}

/// A snapshot the state machine is saving.
struct PendingSnapshot {
    started: Instant,
    meta: raft::eraftpb::SnapshotMetadata,
    saved: oneshot::Receiver<Result<(), crate::snapshotter::Error>>,
}

/// The raft node. Built from what [`replay_wal`] recovered; run with [`RaftNode::run`].
pub struct RaftNode {
    id: u64,
    /// Held while the node runs: a second process on the same data dir fails at start-up.
    _lock: crate::fsutil::DirLock,
    rn: RawNode<NodeStorage>,
    storage: NodeStorage,
    wal: Option<Wal>,
    wal_plan: WalPlan,
    transport: Transport,
    apply_tx: Applier,
    members: Members,
    conf_state: ConfState,
    /// Last index handed to the state machine.
    applied: u64,
    snapshot_index: u64,
    /// The snapshot before the newest: the WAL keeps everything after it, so a damaged newest
    /// snapshot file still leaves a way to recover.
    prev_snapshot_index: u64,
    snapshot_count: u64,
    catchup_entries: u64,
    commit_at_start: u64,
    tick: Duration,
    /// This node's requests, from arrival to answer.
    proposals: Proposals,
    /// Linearizable reads waiting for their read index.
    reads: Reads,
    /// The exactly-once table as of `applied`: part of the replicated state.
    sessions: Sessions,
    /// What the transport dropped during a Ready, reported to raft after it.
    dropped: crate::transport::Dropped,
    pending_snapshot: Option<PendingSnapshot>,
    /// This node applied its own removal; it stops unless more of the log adds it back.
    removal_pending: bool,
    /// When this node last asked raft to hand its leadership over.
    transfer_asked: Option<Instant>,
    /// When this node, leading, applied its own removal: it hands leadership over before it
    /// stops.
    removed_while_leading: Option<Instant>,
    /// Log index of the latest change that made this node a member (a snapshot that shows it
    /// a member stands for one at its index): a peer that counts it as removed as of an
    /// earlier index is behind.
    added_at: u64,
    /// The highest commit index a leader has announced to this node in an append.
    leader_commit: u64,
    /// When a leader last sent this node anything.
    last_leader_contact: Instant,
    exit: Option<Exit>,
    shared: Arc<Shared>,
    metrics: Arc<Metrics>,
}

impl RaftNode {
    /// Builds the node from recovered state. `transport` gets the members as peers.
    pub fn new(
        config: &Config,
        recovered: Recovered,
        mut transport: Transport,
        apply_tx: Applier,
        shared: Arc<Shared>,
        metrics: Arc<Metrics>,
    ) -> Result<RaftNode, StartError> {
        let raft_config = raft::Config {
            id: config.id,
            election_tick: ELECTION_TICKS as usize,
            heartbeat_tick: 1,
            max_size_per_msg: 1 << 20,
            max_inflight_msgs: 256,
            max_uncommitted_size: 1 << 30,
            // Not in the original: PreVote keeps a node coming back from a partition from
            // deposing a healthy leader, and CheckQuorum makes a cut-off leader step down so
            // its clients hear "no leader" instead of waiting.
            pre_vote: true,
            check_quorum: true,
            ..Default::default()
        };
        raft_config.validate().map_err(StartError::Raft)?;
        let logger = slog::Logger::root(slog::Drain::fuse(slog_stdlog::StdLog), slog::o!());
        let rn = RawNode::new(&raft_config, recovered.storage.clone(), &logger)
            .map_err(StartError::Raft)?;
        for (id, url) in &recovered.members.urls {
            transport.add_peer(*id, url);
        }
        // Until the log or a snapshot says otherwise, --cluster is the map of who is where:
        // a joining node needs it to answer the leader before it has replayed anything.
        for (i, url) in config.cluster.iter().enumerate() {
            let id = i as u64 + 1;
            if !recovered.members.contains(id) && !recovered.members.removed.contains(&id) {
                transport.add_peer(id, url);
            }
        }
        transport
            .filter()
            .set_removed(&recovered.members.removed, recovered.snapshot_index);
        shared
            .commit_at_start
            .store(recovered.commit_at_start, Ordering::Release);
        // Tells this process's session and read contexts from those of every earlier process
        // of this node (see crate::proposal).
        let nonce = rand::random::<u64>();
        let added_at = if recovered.members.contains(config.id) {
            recovered.snapshot_index
        } else {
            0
        };
        let timeout = config.proposal_timeout();
        let tick = config.tick();
        Ok(RaftNode {
            id: config.id,
            _lock: recovered.lock,
            rn,
            storage: recovered.storage,
            wal: recovered.wal,
            wal_plan: WalPlan {
                dir: config.wal_dir(),
                options: config.wal_options(),
                peer_url: config.own_peer_url().unwrap_or_default().to_string(),
            },
            transport,
            apply_tx,
            members: recovered.members,
            conf_state: recovered.conf_state,
            applied: recovered.snapshot_index,
            snapshot_index: recovered.snapshot_index,
            prev_snapshot_index: recovered.snapshot_index,
            snapshot_count: config.snapshot_count.max(1),
            catchup_entries: config.snapshot_catchup_entries,
            commit_at_start: recovered.commit_at_start,
            tick: config.tick(),
            proposals: Proposals::new(config.id, nonce, timeout, tick * RESEND_TICKS),
            reads: Reads::new(config.id, nonce, timeout),
            sessions: recovered.sessions,
            dropped: Default::default(),
            pending_snapshot: None,
            removal_pending: false,
            added_at,
            transfer_asked: None,
            removed_while_leading: None,
            leader_commit: 0,
            last_leader_contact: Instant::now(),
            exit: None,
            shared,
            metrics,
        })
    }

    /// Runs until shut down, removed, or a fatal storage error.
    pub async fn run(
        mut self,
        mut inbox: mpsc::Receiver<Inbox>,
        shutdown: CancellationToken,
    ) -> Exit {
        let mut ticker = tokio::time::interval(self.tick);
        ticker.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        let mut received = Vec::with_capacity(1024);
        // Once asked to stop: the time by which the node stops, whatever is still in flight.
        let mut stop_by: Option<Instant> = None;
        let exit = loop {
            let hold_until = self.hold_until();
            tokio::select! {
                // Ticks first: under a flood of requests, elections and heartbeats still run.
                biased;
                _ = shutdown.cancelled(), if stop_by.is_none() => {
                    stop_by = Some(self.begin_stop());
                }
                _ = tokio::time::sleep_until(stop_by.unwrap_or_else(Instant::now).into()), if stop_by.is_some() => {
                    tracing::info!("stopping with requests still in flight");
                    break Exit::Shutdown;
                }
                _ = ticker.tick() => self.on_tick(),
                _ = tokio::time::sleep_until(hold_until.unwrap_or_else(Instant::now).into()), if hold_until.is_some() => {}
                n = inbox.recv_many(&mut received, 4096) => {
                    if n == 0 {
                        break Exit::Shutdown;
                    }
                    for msg in received.drain(..) {
                        self.on_inbox(msg);
                    }
                }
            }
            if let Err(err) = self.process() {
                tracing::error!(%err, "fatal; stopping the node");
                break Exit::Fatal(err.to_string());
            }
            if let Some(exit) = self.exit.take() {
                break exit;
            }
            if stop_by.is_some() && self.stopped_cleanly() {
                break Exit::Shutdown;
            }
        };
        self.proposals.stop();
        self.reads.stop();
        if exit == Exit::Shutdown
            && let Err(err) = self.flush()
        {
            return Exit::Fatal(err.to_string());
        }
        exit
    }

    /// Asked to stop: a leader hands leadership to the most caught-up follower first (as
    /// etcd does), so the others need not wait out an election timeout; then the node answers
    /// what is in flight. Returns the time by which it stops regardless.
    fn begin_stop(&mut self) -> Instant {
        let now = Instant::now();
        let leading = self.rn.raft.state == StateRole::Leader;
        let limit = if leading && self.hand_over(now) {
            LEADER_STOP_LIMIT
        } else {
            STOP_LIMIT
        };
        tracing::info!(leading, "stopping: answering what is in flight");
        now + limit
    }

    /// Whether a stopping node is done: no longer leading a cluster that has someone to lead
    /// it, and every request it took answered.
    fn stopped_cleanly(&self) -> bool {
        let leads_others = self.rn.raft.state == StateRole::Leader && self.successor().is_some();
        !leads_others && self.proposals.is_empty() && self.reads.is_empty()
    }

    /// Makes the last commit index durable before the process exits (raft does not sync
    /// commit-only hard states; a restart would learn it again, but need not).
    fn flush(&mut self) -> Result<(), NodeError> {
        let hs = self.storage.mem.rl().hard_state().clone();
        if hs.commit == 0 || self.wal.is_none() {
            return Ok(());
        }
        self.wal_mut()?.save(Some(&hs), &[], true)?;
        Ok(())
    }

    /// The voter best placed to take over from this leader: the most caught-up one of those
    /// heard from recently.
    fn successor(&self) -> Option<u64> {
        let raft = &self.rn.raft;
        let voters = raft.prs().conf().voters().ids();
        raft.prs()
            .iter()
            .filter(|(id, pr)| **id != self.id && pr.recent_active && voters.contains(**id))
            .max_by_key(|(id, pr)| (pr.matched, std::cmp::Reverse(**id)))
            .map(|(id, _)| *id)
    }

    /// Asks raft to hand leadership to [`RaftNode::successor`] (at most once per election
    /// timeout: raft gives a transfer that long). Returns whether a transfer is under way.
    fn hand_over(&mut self, now: Instant) -> bool {
        if self
            .transfer_asked
            .is_some_and(|t| now.duration_since(t) < self.tick * ELECTION_TICKS)
        {
            return true;
        }
        let Some(to) = self.successor() else {
            return false;
        };
        tracing::info!(to, "handing leadership over");
        self.rn.transfer_leader(to);
        self.transfer_asked = Some(now);
        true
    }

    /// Everything that follows new input: propose, start reads, handle readies.
    fn process(&mut self) -> Result<(), NodeError> {
        self.poll_snapshot()?;
        // Proposals, reads and unreachable reports step raft, so they happen here, between
        // readies, never between `ready()` and `advance()`. Proposing again after each Ready
        // sends what a batch kept back once it is no longer held (a single node commits at
        // once, and no peer message would come to wake it).
        loop {
            self.propose();
            self.read_index();
            let dropped = std::mem::take(&mut self.dropped);
            for peer in dropped.unreachable {
                self.rn.report_unreachable(peer);
            }
            for peer in dropped.snapshots {
                self.rn.report_snapshot(peer, SnapshotStatus::Failure);
            }
            if !self.rn.has_ready() {
                break;
            }
            self.handle_ready()?;
        }
        self.maybe_stop_removed();
        self.maybe_campaign_alone();
        self.maybe_trigger_snapshot()?;
        Ok(())
    }

    /// Stops the node once it has applied its own removal and everything the leader has
    /// committed since, and is still not a member (a node re-added under its old id replays
    /// its removal first, then the entry that added it back).
    fn maybe_stop_removed(&mut self) {
        if !self.removal_pending {
            return;
        }
        // A leader stops sending to a node once it applied the removal; three of the longest
        // election timeouts without a word means nothing more is coming.
        let abandoned = self.last_leader_contact.elapsed() > self.tick * 60;
        if self.members.contains(self.id) {
            tracing::info!("this node was added back to the cluster");
            self.removal_pending = false;
            self.removed_while_leading = None;
        } else if self.rn.raft.state == StateRole::Leader {
            // A leader that committed its own removal (proposed through another node, or left
            // in its log by an earlier leader) must not simply go: the others may not have
            // heard that the removal committed, would keep counting this node as a voter, and
            // could lose their quorum for good. It hands leadership to one of them, which has
            // the removal in its log and commits it in its own term; then it goes.
            let now = Instant::now();
            let since = *self.removed_while_leading.get_or_insert(now);
            let waiting = now.duration_since(since) < self.tick * (2 * ELECTION_TICKS);
            if !(self.hand_over(now) && waiting) {
                tracing::warn!("I've been removed from the cluster! Shutting down.");
                self.exit = Some(Exit::Removed);
            }
        } else if self.applied >= self.leader_commit || abandoned {
            // The original's words, so its users recognise the event.
            tracing::warn!("I've been removed from the cluster! Shutting down.");
            self.exit = Some(Exit::Removed);
        }
    }

    /// A node that is the only voter needs nobody's vote: elect it now rather than after an
    /// election timeout, so a single-node store answers as soon as it starts.
    fn maybe_campaign_alone(&mut self) {
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

    fn on_tick(&mut self) {
        self.rn.tick();
        let now = Instant::now();
        let leader_known = self.leader_id() != INVALID_ID;
        let again = self.proposals.on_tick(now, leader_known);
        self.metrics.proposals_resent.inc_by(again as u64);
        for ctx in self.reads.on_tick(self.tick, leader_known, now) {
            self.rn.read_index(ctx);
        }
    }

    fn on_inbox(&mut self, msg: Inbox) {
        match msg {
            Inbox::Propose { data, done } => {
                self.proposals
                    .add(Request::Command(data.into()), done, Instant::now())
            }
            Inbox::ChangeMembers { change, done } => {
                self.proposals
                    .add(Request::Change(change), done, Instant::now())
            }
            Inbox::Read(done) => self.reads.add(done, Instant::now()),
            Inbox::Step(messages) => {
                for m in messages {
                    match m.get_msg_type() {
                        MessageType::MsgAppend => {
                            // The leader's whole commit index, also beyond this message's
                            // entries: a node added back under its old id replays its own
                            // removal on the way, and must not take the end of one append for
                            // the end of what the leader has committed (more, with its re-add,
                            // is coming).
                            self.leader_commit = self.leader_commit.max(m.commit);
                            self.last_leader_contact = Instant::now();
                        }
                        MessageType::MsgSnapshot => {
                            let index = m.get_snapshot().get_metadata().index;
                            self.leader_commit = self.leader_commit.max(index);
                            self.last_leader_contact = Instant::now();
                        }
                        MessageType::MsgHeartbeat => self.last_leader_contact = Instant::now(),
                        _ => {}
                    }
                    // Late answers from removed peers and stale terms are normal; raft has
                    // already logged anything worth knowing.
                    if let Err(err) = self.rn.step(m) {
                        tracing::debug!(%err, "raft ignored a peer message");
                    }
                }
            }
            Inbox::Unreachable(peer) => self.rn.report_unreachable(peer),
            Inbox::SnapshotStatus { peer, delivered } => {
                let status = if delivered {
                    SnapshotStatus::Finish
                } else {
                    SnapshotStatus::Failure
                };
                self.rn.report_snapshot(peer, status);
            }
            Inbox::RemovedByPeer { peer, as_of } => self.on_removed_by_peer(peer, as_of),
            Inbox::Status(reply) => {
                let _ = reply.send(self.status());
            }
        }
    }

    /// A peer answered a vote request with 410 Gone: as of its log index `as_of`, this node
    /// is removed. Peers answer 410 only to vote requests, which a removed node that missed
    /// its removal sends once it stops hearing from a leader. The peer may be behind, though:
    /// judged against the latest change for this node, not "ever removed".
    fn on_removed_by_peer(&mut self, peer: u64, as_of: Option<u64>) {
        if self.rn.raft.state == StateRole::Leader {
            // A leader sends no vote requests: a late answer from before it was added back.
            return;
        }
        if !removal_is_current(self.members.contains(self.id), self.added_at, as_of) {
            tracing::info!(
                peer,
                as_of,
                added_at = self.added_at,
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

    fn leader_id(&self) -> u64 {
        self.rn.raft.leader_id
    }

    /// When a batch the leader holds back is due, if it holds one.
    fn hold_until(&self) -> Option<Instant> {
        let raft = &self.rn.raft;
        self.proposals.hold_until(
            raft.state == StateRole::Leader,
            raft.raft_log.last_index() - raft.raft_log.committed,
            Instant::now(),
        )
    }

    /// Proposes what is due: this process's session registration, the batch of queued
    /// entries (unless the leader holds it back to grow it), and a membership change. Nothing
    /// while no leader is known: raft would drop it, and the requests wait for one instead.
    fn propose(&mut self) {
        if self.leader_id() == INVALID_ID {
            return;
        }
        let now = Instant::now();
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
    fn step_proposal(&mut self, m: Message, seqs: &[u64], now: Instant) {
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

    /// Proposes the pending membership change, checked first (the first time) so that a
    /// change raft would drop or ignore is refused with a reason instead.
    fn propose_change(&mut self, now: Instant) {
        let Some(next) = self.proposals.take_change(now) else {
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
    /// change silently, and accept a duplicate add as a no-op.
    fn check_conf_change(&self, change: &MemberChange) -> Result<(), ProposalError> {
        if self.conf_change_pending() {
            return Err(ProposalError::ChangePending);
        }
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
    /// before it gets here) is proposed but not yet applied.
    fn conf_change_pending(&self) -> bool {
        if self.rn.raft.state == StateRole::Leader {
            return self.rn.raft.has_pending_conf();
        }
        // A follower does not track pending changes; look for one in its unapplied log.
        let last = self.rn.raft.raft_log.last_index();
        let first = self.applied + 1;
        if first > last {
            return false;
        }
        let unapplied = self
            .rn
            .raft
            .raft_log
            .entries(first, raft::NO_LIMIT, raft::GetEntriesContext::empty(false))
            .unwrap_or_default();
        unapplied.iter().any(|e| {
            matches!(
                e.get_entry_type(),
                EntryType::EntryConfChange | EntryType::EntryConfChangeV2
            )
        })
    }

    /// Hands raft the ReadIndex requests due: a round for the reads that arrived since the
    /// last one, and every round again after a leader change.
    fn read_index(&mut self) {
        let leader_known = self.leader_id() != INVALID_ID;
        for ctx in self.reads.due_contexts(leader_known, Instant::now()) {
            self.rn.read_index(ctx);
        }
    }

    fn status(&self) -> NodeStatus {
        let raft = &self.rn.raft;
        let hs = raft.hard_state();
        let leader = raft.leader_id;
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
                            // Heard from within the last election timeout
                            // (CheckQuorum keeps this up to date).
                            reachable: pr.recent_active,
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
            log_tail: self.shared.events.log_tail(&raft.raft_log),
        }
    }

    /// The WAL, created now if this is a joining node's first write.
    fn wal_mut(&mut self) -> Result<&mut Wal, NodeError> {
        if self.wal.is_none() {
            let cluster_id = self.transport.filter().cluster_id();
            if cluster_id == 0 {
                return Err(NodeError::UnknownCluster);
            }
            let meta = Metadata {
                node_id: self.id,
                cluster_id,
                peer_url: self.wal_plan.peer_url.clone(),
                initial_cluster: Vec::new(),
            };
            tracing::info!(
                cluster = format!("{cluster_id:x}"),
                "joined a cluster; creating the WAL"
            );
            self.wal = Some(Wal::create(
                &self.wal_plan.dir,
                &meta,
                self.wal_plan.options,
            )?);
        }
        Ok(self
            .wal
            .as_mut()
            .expect("the WAL was created just above when it was missing"))
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
