//! The raft node: the one task that owns the `RawNode`. Everything else talks to it through
//! its inbox ([`Inbox`]): the REST API sends proposals, reads and membership changes; the
//! transport server sends peer messages; peer tasks report failures. The node ticks raft,
//! handles each `Ready` in the order raft-rs requires (`ready.rs`), and publishes committed
//! entries to the state machine (see [`crate::kvstore::Applier`]).
//!
//! It runs on a thread of its own with a single-threaded runtime, so that an fsync blocks
//! nothing but raft itself: while it waits on the disk, HTTP requests and peer messages
//! queue up, and the next `Ready` carries them all in one write and one sync. Under load a
//! leader also holds a small batch back while a bigger one is in flight, and cuts a batch at
//! a WAL page boundary when only a few proposals spill past it (`hold_batch`, `whole_pages`):
//! every node's WAL then syncs fuller pages, fewer times.

mod ready;
pub mod replay;
pub mod storage;
mod trace;

use std::collections::{BTreeMap, HashMap, VecDeque};
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

use raft::eraftpb::{
    ConfChangeSingle, ConfChangeType, ConfChangeV2, ConfState, Entry, EntryType, Message,
    MessageType,
};
use raft::{INVALID_ID, RawNode, SnapshotStatus, StateRole};
use serde::Serialize;
use tokio::sync::{mpsc, oneshot};
use tokio_util::sync::CancellationToken;

use crate::config::Config;
use crate::kvstore::{Applier, KvStore};
use crate::membership::Members;
use crate::metrics::Metrics;
use crate::transport::Transport;
use crate::wal::{Metadata, Wal, WalOptions};

pub use replay::{Recovered, StartError, replay_wal};
use storage::NodeStorage;

/// Longest a leader holds a batch back while earlier entries are in flight.
const MAX_HOLD: Duration = Duration::from_millis(2);
/// Longest a leader with nothing in flight waits for a batch to fill up to half the size of
/// the one before it (a burst of clients answered at once comes back within a fraction of a
/// millisecond).
const LINGER: Duration = Duration::from_micros(300);

/// Answers one client request once its entry is applied (or its read is safe to serve).
pub type Responder = oneshot::Sender<Result<(), ProposalError>>;

/// Everything the raft node can be asked to do.
pub enum Inbox {
    /// Propose a normal entry (an encoded [`crate::kvstore::Command`]).
    Propose {
        /// `Entry.data`.
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
    RemovedByPeer(u64),
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

/// Why a request was not carried out (or not known to be).
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ProposalError {
    /// No leader is known: the cluster is electing one or has lost its quorum.
    #[error("no leader is known (an election is under way or a quorum is down); retry shortly")]
    NoLeader,
    /// The entry was not applied in time; it may still commit.
    #[error("not committed within {0:?} (a quorum may be down); the write may still happen")]
    Timeout(Duration),
    /// A read could not be confirmed by a quorum in time.
    #[error("read not confirmed by a quorum within {0:?}; retry")]
    ReadTimeout(Duration),
    /// The raft node did not answer a status request in time.
    #[error("the node did not answer within {0:?} (it may be busy); retry")]
    Busy(Duration),
    /// raft refused the proposal.
    #[error("raft dropped the proposal ({0}); retry")]
    Dropped(String),
    /// The node is stopping.
    #[error("the node is shutting down")]
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
}

impl ProposalError {
    /// A short label for metrics.
    pub fn reason(&self) -> &'static str {
        match self {
            ProposalError::NoLeader => "no_leader",
            ProposalError::Timeout(_) => "timeout",
            ProposalError::ReadTimeout(_) => "read_timeout",
            ProposalError::Busy(_) => "busy",
            ProposalError::Dropped(_) => "dropped",
            ProposalError::Stopped => "stopped",
            ProposalError::AlreadyMember(_) => "already_member",
            ProposalError::UrlInUse { .. } => "url_in_use",
            ProposalError::NotMember(_) => "not_member",
            ProposalError::LastVoter(_) => "last_voter",
            ProposalError::ChangePending => "change_pending",
            ProposalError::Rejected(_) => "rejected",
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
    /// The members and their peer URLs.
    pub members: Vec<MemberStatus>,
    /// On the leader, each follower's replication progress.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub progress: Option<BTreeMap<u64, PeerProgress>>,
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
}

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
        }
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

    /// Applies a membership change; returns once it is applied on this node.
    pub async fn change_members(&self, change: MemberChange) -> Result<(), ProposalError> {
        self.proposal(|done| Inbox::ChangeMembers { change, done })
            .await
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
        match tokio::time::timeout(self.timeout, round_trip).await {
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

/// Reads waiting for ReadIndex, in three stages: waiting to be asked, asked, confirmed.
#[derive(Default)]
struct Reads {
    /// Arrived since the last `read_index` call.
    waiting: Vec<Responder>,
    /// Batches asked of raft and not answered yet, by batch number.
    asked: HashMap<u64, ReadBatch>,
    /// Request contexts given to raft, and the batch each asks for. Asking again keeps the
    /// earlier contexts: on a slow network the first answer may still come, and serves.
    contexts: HashMap<u64, u64>,
    /// Confirmed at a read index the state machine has not reached yet.
    confirmed: VecDeque<(u64, Vec<Responder>)>,
    next_ctx: u64,
    next_batch: u64,
    /// Leadership moved (raft forgets pending ReadIndex requests then): ask again for every
    /// batch as soon as the current Ready is done.
    ask_all_again: bool,
}

/// Reads that share one ReadIndex round.
struct ReadBatch {
    waiters: Vec<Responder>,
    asked_at: Instant,
    attempts: u32,
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
    /// Proposals made here while following (forwarded to the leader) and membership changes,
    /// by request id, waiting for their entry to apply. Their entries carry the request id.
    proposals: HashMap<u64, Responder>,
    /// Proposals made here while leading, by the index and term raft gave their entry. Their
    /// entries carry nothing extra: a leader knows where its entries land, and an entry found
    /// at that index with another term means a later leader overwrote the proposal.
    proposed_at: BTreeMap<u64, (u64, Responder)>,
    /// `Entry.data` of the requests collected from the inbox, proposed together.
    batch: Vec<(Vec<u8>, Responder)>,
    /// When the oldest entry of `batch` arrived.
    batch_since: Option<Instant>,
    /// Size of the last batch proposed: what a burst of answered clients sends back.
    last_batch: usize,
    next_request: u64,
    /// Request id of this node's membership change in flight.
    conf_change_in_flight: Option<u64>,
    reads: Reads,
    /// What the transport dropped during a Ready, reported to raft after it.
    dropped: crate::transport::Dropped,
    pending_snapshot: Option<PendingSnapshot>,
    /// This node applied its own removal; it stops unless more of the log adds it back.
    removal_pending: bool,
    /// The highest commit index a leader has announced to this node.
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
            election_tick: 10,
            heartbeat_tick: 1,
            max_size_per_msg: crate::transport::MAX_SIZE_PER_MSG,
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
        transport.filter().set_removed(&recovered.members.removed);
        shared
            .commit_at_start
            .store(recovered.commit_at_start, Ordering::Release);
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
            proposals: HashMap::new(),
            proposed_at: BTreeMap::new(),
            batch: Vec::new(),
            batch_since: None,
            last_batch: 0,
            next_request: rand::random::<u64>() >> 1,
            conf_change_in_flight: None,
            reads: Reads::default(),
            dropped: Default::default(),
            pending_snapshot: None,
            removal_pending: false,
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
        loop {
            let hold_until = self
                .batch_since
                .zip(self.hold_batch())
                .map(|(since, limit)| since + limit);
            tokio::select! {
                // Ticks first: under a flood of requests, elections and heartbeats still run.
                biased;
                _ = shutdown.cancelled() => return Exit::Shutdown,
                _ = ticker.tick() => self.on_tick(),
                _ = tokio::time::sleep_until(hold_until.unwrap_or_else(Instant::now).into()), if hold_until.is_some() => {}
                n = inbox.recv_many(&mut received, 4096) => {
                    if n == 0 {
                        return Exit::Shutdown;
                    }
                    for msg in received.drain(..) {
                        self.on_inbox(msg);
                    }
                }
            }
            if let Err(err) = self.process() {
                tracing::error!(%err, "fatal; stopping the node");
                return Exit::Fatal(err.to_string());
            }
            if let Some(exit) = self.exit.take() {
                return exit;
            }
        }
    }

    /// Everything that follows new input: propose the batch, start reads, handle readies.
    fn process(&mut self) -> Result<(), NodeError> {
        self.poll_snapshot()?;
        // Proposals, reads and unreachable reports step raft, so they happen here, between
        // readies, never between `ready()` and `advance()`. Proposing again after each Ready
        // sends what a batch kept back once it is no longer held (a single node commits at
        // once, and no peer message would come to wake it).
        loop {
            self.flush_proposals();
            self.issue_reads();
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
        // Clients that timed out: forget them.
        self.proposals.retain(|_, done| !done.is_closed());
        self.proposed_at.retain(|_, (_, done)| !done.is_closed());
        if let Some(req) = self.conf_change_in_flight
            && !self.proposals.contains_key(&req)
        {
            self.conf_change_in_flight = None;
        }
        self.retry_reads();
    }

    fn on_inbox(&mut self, msg: Inbox) {
        match msg {
            Inbox::Propose { data, done } => self.queue_proposal(data, done),
            Inbox::ChangeMembers { change, done } => self.propose_conf_change(change, done),
            Inbox::Read(done) => self.reads.waiting.push(done),
            Inbox::Step(messages) => {
                for m in messages {
                    match m.get_msg_type() {
                        MessageType::MsgAppend => {
                            // Only as far as this message's own entries reach: a commit index
                            // beyond them is not something this node can apply from it.
                            let last = m.index + m.entries.len() as u64;
                            self.leader_commit = self.leader_commit.max(m.commit.min(last));
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
            Inbox::RemovedByPeer(peer) => {
                // Peers answer 410 only to vote requests, which a removed node that missed
                // its removal sends once it stops hearing from a leader. A leader sends none:
                // a 410 reaching one is a late answer from before it was added back.
                if self.rn.raft.state != StateRole::Leader {
                    tracing::warn!(
                        peer,
                        "the cluster removed this node (peer {peer} refuses its messages); shutting down"
                    );
                    self.exit = Some(Exit::Removed);
                }
            }
            Inbox::Status(reply) => {
                let _ = reply.send(self.status());
            }
        }
    }

    fn leader_id(&self) -> u64 {
        self.rn.raft.leader_id
    }

    fn new_request(&mut self) -> (u64, Vec<u8>) {
        self.next_request = self.next_request.wrapping_add(1);
        (
            self.next_request,
            request_context(self.id, self.next_request),
        )
    }

    fn queue_proposal(&mut self, data: Vec<u8>, done: Responder) {
        if self.leader_id() == INVALID_ID {
            let _ = done.send(Err(ProposalError::NoLeader));
            return;
        }
        self.batch_since.get_or_insert_with(Instant::now);
        self.batch.push((data, done));
    }

    /// Proposes the queued entries in one message (one append, one broadcast), unless they are
    /// held back ([`RaftNode::hold_batch`]); a leader keeps a small spill past a WAL page
    /// boundary for the next batch ([`whole_pages`]).
    fn flush_proposals(&mut self) {
        if self.batch.is_empty() || self.hold_batch().is_some() {
            return;
        }
        let leading = self.rn.raft.state == StateRole::Leader;
        let sizes = self.batch.iter().map(|(data, _)| data.len());
        let take = if leading {
            whole_pages(sizes)
        } else {
            // Forwarded as one MsgPropose, which must fit what the leader accepts.
            crate::transport::proposals_per_message(sizes)
        };
        let batch: Vec<_> = if take < self.batch.len() {
            // The rest waits for the next batch (and batch_since keeps its age).
            self.batch.drain(..take).collect()
        } else {
            self.batch_since = None;
            std::mem::take(&mut self.batch)
        };
        self.last_batch = batch.len();
        let mut entries = Vec::with_capacity(batch.len());
        let mut local = Vec::new();
        let mut forwarded = Vec::new();
        for (data, done) in batch {
            let mut entry = Entry {
                data: data.into(),
                ..Default::default()
            };
            if leading {
                local.push(done);
            } else {
                // The leader assigns the index: find the entry again by the request id.
                let (req, context) = self.new_request();
                entry.context = context.into();
                self.proposals.insert(req, done);
                forwarded.push(req);
            }
            entries.push(entry);
        }
        let count = entries.len() as u64;
        let mut m = Message::default();
        m.set_msg_type(MessageType::MsgPropose);
        m.from = self.id;
        m.set_entries(entries.into());
        let last_before = self.rn.raft.raft_log.last_index();
        let result = self.rn.step(m);
        let last_after = self.rn.raft.raft_log.last_index();
        let failure = match result {
            // A leader appends a proposal at once, right after its last entry.
            Ok(()) if leading && last_after == last_before + count => {
                let term = self.rn.raft.term;
                for (index, done) in (last_before + 1..).zip(local) {
                    self.proposed_at.insert(index, (term, done));
                }
                return;
            }
            Ok(()) if !leading => return,
            Ok(()) => format!(
                "raft appended {} entries for a proposal of {count}",
                last_after.saturating_sub(last_before)
            ),
            Err(err) => err.to_string(),
        };
        let failed = local.into_iter().chain(
            forwarded
                .into_iter()
                .filter_map(|req| self.proposals.remove(&req)),
        );
        for done in failed {
            let _ = done.send(Err(ProposalError::Dropped(failure.clone())));
        }
    }

    /// Under load, a leader gathers proposals into bigger batches, so each WAL sync (on this
    /// node and on every follower) carries more entries. `Some(limit)` while the batch is
    /// held back: see [`hold_batch`].
    fn hold_batch(&self) -> Option<Duration> {
        let raft = &self.rn.raft;
        hold_batch(
            raft.state == StateRole::Leader,
            raft.raft_log.last_index() - raft.raft_log.committed,
            self.batch.len(),
            self.proposed_at.len(),
            self.last_batch,
            self.batch_since.map_or(Duration::ZERO, |t| t.elapsed()),
        )
    }

    fn propose_conf_change(&mut self, change: MemberChange, done: Responder) {
        if let Err(err) = self.check_conf_change(&change) {
            let _ = done.send(Err(err));
            return;
        }
        let mut cc = ConfChangeV2::default();
        let mut single = ConfChangeSingle::default();
        match &change {
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
        let (req, context) = self.new_request();
        match self.rn.propose_conf_change(context, cc) {
            Ok(()) => {
                self.proposals.insert(req, done);
                self.conf_change_in_flight = Some(req);
            }
            Err(err) => {
                let _ = done.send(Err(ProposalError::Dropped(err.to_string())));
            }
        }
    }

    /// The checks that make a change's answer precise: raft itself would drop an overlapping
    /// change silently, and accept a duplicate add as a no-op.
    fn check_conf_change(&self, change: &MemberChange) -> Result<(), ProposalError> {
        if self.leader_id() == INVALID_ID {
            return Err(ProposalError::NoLeader);
        }
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

    /// Whether a membership change is proposed but not yet applied.
    fn conf_change_pending(&self) -> bool {
        if self.conf_change_in_flight.is_some() {
            return true;
        }
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

    /// Removes and returns the waiter of a committed entry if this node proposed it. A
    /// proposal this node made as leader whose index now holds another term's entry was
    /// overwritten by a later leader: its client hears so at once.
    fn take_waiter(&mut self, entry: &Entry) -> Option<Responder> {
        if entry.context.is_empty() {
            let (term, done) = self.proposed_at.remove(&entry.index)?;
            if term == entry.term {
                return Some(done);
            }
            let _ = done.send(Err(ProposalError::Dropped(format!(
                "a new leader replaced the entry at index {} before it committed",
                entry.index
            ))));
            return None;
        }
        let (origin, req) = parse_request_context(&entry.context)?;
        if origin != self.id {
            return None;
        }
        if self.conf_change_in_flight == Some(req) {
            self.conf_change_in_flight = None;
        }
        self.proposals.remove(&req)
    }

    /// Starts a ReadIndex round for the reads that arrived since the last one (one heartbeat
    /// round serves them all), and asks again for every batch after a leader change.
    fn issue_reads(&mut self) {
        if std::mem::take(&mut self.reads.ask_all_again) {
            let batches: Vec<u64> = self.reads.asked.keys().copied().collect();
            for batch in batches {
                self.ask_read(batch);
            }
        }
        if self.reads.waiting.is_empty() {
            return;
        }
        self.reads.next_batch = self.reads.next_batch.wrapping_add(1);
        let batch = self.reads.next_batch;
        let waiters = std::mem::take(&mut self.reads.waiting);
        self.reads.asked.insert(
            batch,
            ReadBatch {
                waiters,
                asked_at: Instant::now(),
                attempts: 0,
            },
        );
        self.ask_read(batch);
    }

    /// Asks raft for a read index for `batch` (again, if it was asked before).
    fn ask_read(&mut self, batch: u64) {
        if self.leader_id() == INVALID_ID {
            if let Some(b) = self.reads.asked.remove(&batch) {
                for done in b.waiters {
                    let _ = done.send(Err(ProposalError::NoLeader));
                }
            }
            return;
        }
        let Some(b) = self.reads.asked.get_mut(&batch) else {
            return;
        };
        b.asked_at = Instant::now();
        b.attempts += 1;
        self.reads.next_ctx = self.reads.next_ctx.wrapping_add(1);
        let ctx = self.reads.next_ctx;
        self.reads.contexts.insert(ctx, batch);
        self.rn.read_index(ctx.to_le_bytes().to_vec());
    }

    /// raft drops a ReadIndex silently when a new leader has not committed in its term yet
    /// (or the request was lost); ask again for batches with no answer, less and less often.
    fn retry_reads(&mut self) {
        let base = self.tick * 3;
        let due: Vec<u64> = self
            .reads
            .asked
            .iter_mut()
            .filter_map(|(id, b)| {
                b.waiters.retain(|w| !w.is_closed());
                let wait = base * 2u32.pow(b.attempts.saturating_sub(1).min(4));
                (b.waiters.is_empty() || b.asked_at.elapsed() >= wait).then_some(*id)
            })
            .collect();
        for batch in due {
            if self
                .reads
                .asked
                .get(&batch)
                .is_some_and(|b| b.waiters.is_empty())
            {
                self.reads.asked.remove(&batch);
            } else {
                self.ask_read(batch);
            }
        }
        let asked = &self.reads.asked;
        self.reads
            .contexts
            .retain(|_, batch| asked.contains_key(batch));
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

/// Bytes of WAL page a proposal's entry takes beside its data (run framing), and what each
/// sync adds (the run's header, hard states).
const ENTRY_FRAMING: usize = 6;
const SYNC_FRAMING: usize = 96;
/// The page the WAL aligns its synced writes to.
const PAGE: usize = crate::wal::PAGE_SIZE as usize;

/// How many of the proposals (by data size) to propose now: all of them, unless that would
/// spill a little past a page boundary, in which case only the whole pages' worth. Each WAL
/// sync writes whole pages; the few left over go with the next batch instead of costing a
/// page of their own, on this node and on every follower.
fn whole_pages(sizes: impl Iterator<Item = usize>) -> usize {
    let mut bytes = SYNC_FRAMING;
    let mut fit = 0; // proposals within the last page boundary passed
    let mut n = 0;
    for size in sizes {
        let before = bytes;
        bytes += size + ENTRY_FRAMING;
        if bytes / PAGE > before / PAGE {
            fit = n;
        }
        n += 1;
    }
    // Spilled less than half a page past the last boundary (`fit > 0`: one was passed): keep
    // the spill back.
    if fit > 0 && bytes % PAGE < PAGE / 2 {
        fit
    } else {
        n
    }
}

/// How long a leader holds back a batch of `waiting` proposals that has waited `waited` so
/// far (`None`: propose it now):
/// - while `uncommitted` entries are in its log, until the batch is as big as the `in_flight`
///   proposals it made that are not applied yet, for at most [`MAX_HOLD`]: the batch grows
///   while the one before it replicates;
/// - with nothing in flight, until it is half the size of the batch before (`last`), for at
///   most [`LINGER`]: the clients answered together come back together.
///
/// A lone client is never held: nothing is in flight when it sends, and its last batch was 1.
/// Followers never hold: they forward to the leader, and cannot see its log.
fn hold_batch(
    leading: bool,
    uncommitted: u64,
    waiting: usize,
    in_flight: usize,
    last: usize,
    waited: Duration,
) -> Option<Duration> {
    let (target, limit) = if uncommitted > 0 {
        (in_flight, MAX_HOLD)
    } else {
        (last / 2, LINGER)
    };
    (leading && waiting < target && waited < limit).then_some(limit)
}

/// `Entry.context` of a proposal: origin node id and request id, so that only the proposing
/// node answers, and only its own requests.
fn request_context(origin: u64, req: u64) -> Vec<u8> {
    let mut ctx = Vec::with_capacity(16);
    ctx.extend_from_slice(&origin.to_le_bytes());
    ctx.extend_from_slice(&req.to_le_bytes());
    ctx
}

fn parse_request_context(ctx: &[u8]) -> Option<(u64, u64)> {
    let origin = u64::from_le_bytes(ctx.get(0..8)?.try_into().ok()?);
    let req = u64::from_le_bytes(ctx.get(8..16)?.try_into().ok()?);
    Some((origin, req))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_batch_is_held_only_while_a_bigger_one_is_likely_and_not_for_long() {
        let short = Duration::from_micros(100);
        // A lone client: nothing uncommitted, nothing in flight, a last batch of one.
        assert_eq!(hold_batch(true, 0, 1, 0, 1, short), None);
        // Many clients: a small batch waits behind a bigger one still replicating...
        assert_eq!(hold_batch(true, 30, 3, 30, 30, short), Some(MAX_HOLD));
        // ...until it is as big as what is in flight, or has waited MAX_HOLD.
        assert_eq!(hold_batch(true, 30, 30, 30, 30, short), None);
        assert_eq!(hold_batch(true, 30, 3, 30, 30, MAX_HOLD), None);
        // Nothing in flight after a big batch: linger for half as many...
        assert_eq!(hold_batch(true, 0, 3, 30, 30, short), Some(LINGER));
        assert_eq!(hold_batch(true, 0, 15, 30, 30, short), None);
        // ...but not for long.
        assert_eq!(hold_batch(true, 0, 3, 30, 30, LINGER), None);
        // A follower forwards at once: it cannot see the leader's log.
        assert_eq!(hold_batch(false, 30, 3, 30, 30, short), None);
        assert_eq!(hold_batch(false, 0, 3, 30, 30, short), None);
    }

    #[test]
    fn a_batch_spilling_a_little_past_a_page_keeps_the_spill_back() {
        let per_page = (PAGE - SYNC_FRAMING) / (100 + ENTRY_FRAMING);
        // Within a page, or far past one: everything goes.
        assert_eq!(whole_pages(std::iter::repeat_n(100, 5)), 5);
        assert_eq!(whole_pages(std::iter::repeat_n(100, per_page)), per_page);
        assert_eq!(
            whole_pages(std::iter::repeat_n(100, per_page * 2 - 3)),
            per_page * 2 - 3
        );
        // A few past the first page: those few wait.
        assert_eq!(
            whole_pages(std::iter::repeat_n(100, per_page + 3)),
            per_page
        );
        // One entry bigger than a page has no boundary to stop at.
        assert_eq!(whole_pages([10_000].into_iter()), 1);
        assert_eq!(whole_pages(std::iter::empty()), 0);
    }

    #[test]
    fn request_context_round_trips() {
        let ctx = request_context(3, u64::MAX - 1);
        assert_eq!(parse_request_context(&ctx), Some((3, u64::MAX - 1)));
        assert_eq!(parse_request_context(&ctx[..15]), None);
        assert_eq!(parse_request_context(&[]), None);
    }
}
