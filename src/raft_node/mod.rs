//! The raft node: the one task that owns the `RawNode`. Everything else talks to it through
//! two queues: client [`Request`]s (proposals, reads, membership changes, status, through a
//! [`NodeHandle`]) and the transport's [`crate::transport::PeerEvent`]s (peer messages,
//! unreachable peers, snapshot outcomes). The node ticks raft, handles each `Ready` in the
//! order raft-rs requires (`ready.rs`), and publishes committed entries to the state machine
//! (see [`crate::kvstore::Applier`]).
//!
//! In production it runs on a thread of its own with a single-threaded runtime, so that an
//! fsync blocks nothing but raft itself: while it waits on the disk, HTTP requests and peer
//! messages queue up, and the next `Ready` carries them all in one write and one sync. The
//! core reaches the world only through three seams: a [`crate::transport::Network`], a
//! [`crate::disk::FileSystem`] and the clock and seed of its [`NodeEnv`]; the same core runs
//! in memory in tests ([`crate::in_memory`]) and in the simulator.
//!
//! Client requests ride through leader changes: they wait for a leader, are proposed again
//! when a leader change may have lost them, and take effect once (`proposals.rs`, `reads.rs`,
//! [`crate::proposal`]). The files: `ready.rs` the loop, `proposals.rs` and `batching.rs` the
//! requests and how a leader batches them, `reads.rs` ReadIndex, `conf_change.rs` membership
//! changes, the node's own removal and whether its members are settled, `leadership.rs`
//! handing leadership over, `lost_log.rs` a follower whose log ends below what its leader
//! counted, `joined.rs` a node admitted on an empty data dir, `tail.rs` what members answer
//! a joining node, `registration.rs` which session registrations a leader appends,
//! `snapshots.rs`, `status.rs`, `handle.rs` the client side, `replay.rs` start-up,
//! `storage.rs` raft's view of the log, `trace.rs` the Ready trace.

mod batching;
mod conf_change;
mod handle;
mod joined;
mod leadership;
mod log_bytes;
mod lost_log;
mod proposals;
mod reads;
mod ready;
mod registration;
pub mod replay;
mod snapshots;
mod status;
pub mod storage;
mod tail;
#[cfg(test)]
mod tests;
mod trace;

use std::collections::VecDeque;
use std::sync::Arc;
use std::sync::atomic::Ordering;
use std::time::{Duration, Instant};

use raft::eraftpb::ConfState;
use raft::{RawNode, StateRole};
use rand::rngs::SmallRng;
use rand::{RngExt, SeedableRng};
use tokio_util::sync::CancellationToken;

use crate::clock::{Clock, TokioClock};
use crate::config::Config;
use crate::incarnation::Incarnation;
use crate::kvstore::Applier;
use crate::membership::Members;
use crate::metrics::Metrics;
use crate::proposal::Sessions;
use crate::transport::{AppliedAt, Network};
use crate::wal::{Metadata, Wal, WalOptions};

pub use crate::request::{
    Exit, Failure, MemberChange, MemberStatus, NodeStatus, OwnPart, PeerProgress, ProbeAnswer,
    ProposalError, ReadConsistency, Request, Responder, Sent, Shared, Stop, Waited,
};
pub use handle::NodeHandle;
use log_bytes::LogBytes;
use proposals::Proposals;
use reads::{HeldReads, Reads, ReadyProbe};
pub use replay::{Recovered, StartError, check_data_dir, check_flags, replay_wal, replay_wal_on};
use storage::NodeStorage;

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
    /// The leader's snapshot, checked whole when it arrived, holds members and an
    /// exactly-once table this node cannot read; nothing of it was made this node's.
    #[error(
        "not installing the leader's snapshot at index {index}: {reason}. This node's data dir \
         is as it was; if the leader runs a newer version of raftexample, start this node with \
         that version"
    )]
    SnapshotUnreadable {
        /// The snapshot's index.
        index: u64,
        /// Why it could not be read (naming the file, for one that arrived as a file).
        reason: String,
    },
}

impl NodeError {
    /// What the node says as it stops on this error: the error, and for a full disk what to
    /// do about it (the error alone reads like damage; nothing synced is lost).
    pub fn stop_text(&self) -> String {
        if disk_full(self) {
            return format!(
                "{self}. The disk is full: free space on it and start the node again; it keeps \
                 everything it had synced"
            );
        }
        self.to_string()
    }

    /// The error as the answers to the requests the node leaves behind name it: one line,
    /// without the remedy [`Self::stop_text`] gives its operator, and what failed first.
    pub fn failure(&self) -> Failure {
        let error = match self {
            NodeError::Wal(err) => format!("the WAL failed: {err}"),
            NodeError::Snapshot(err) => format!("the snapshotter failed: {err}"),
            other => other.to_string(),
        };
        Failure {
            disk_full: disk_full(self),
            error,
        }
    }
}

/// Whether `err` comes from a disk with no room left (`ENOSPC`), by its chain of causes.
fn disk_full(err: &(dyn std::error::Error + 'static)) -> bool {
    let mut cause = Some(err);
    while let Some(err) = cause {
        if err
            .downcast_ref::<std::io::Error>()
            .is_some_and(|e| e.kind() == std::io::ErrorKind::StorageFull)
        {
            return true;
        }
        cause = err.source();
    }
    false
}

/// Ticks of an election timeout (raft picks each node's between this and twice this).
const ELECTION_TICKS: u32 = 10;
/// How long a stopping follower answers what is in flight, and the clients still connected,
/// before it exits regardless.
pub(crate) const STOP_LIMIT: Duration = Duration::from_millis(400);
/// How long a stopping leader takes to hand leadership over and answer what is in flight (and
/// the clients still connected).
const LEADER_STOP_LIMIT: Duration = Duration::from_millis(800);

/// Ticks a forwarded proposal goes unanswered before it is sent again (two of the longest
/// election timeouts: a leader change usually comes first, and sends everything again); half
/// the proposal timeout if that is shorter, never less than a tick (see `Proposals::new`).
const RESEND_TICKS: u32 = 40;
/// Ticks between askings of the ready probe while it goes unanswered (an election's worth).
const READY_PROBE_TICKS: u32 = ELECTION_TICKS;
/// Ticks between rounds of the ready probe once answered, and never more often than every
/// `READY_EVERY_FLOOR` (each round is a heartbeat broadcast of the leader's).
const READY_EVERY_TICKS: u32 = 2;
const READY_EVERY_FLOOR: Duration = Duration::from_millis(100);
/// How long after a round of the ready probe was asked a node that has applied its answer
/// counts as caught up: an election timeout, and at least `READY_WINDOW_FLOOR`, so that a
/// round trip slowed by fsyncs on a busy machine does not make a healthy node flap (with a
/// tick of a few milliseconds, a few fsyncs would), while a node paused, cut off or stuck
/// behind says so within about that long.
const READY_WINDOW_TICKS: u32 = ELECTION_TICKS;
const READY_WINDOW_FLOOR: Duration = Duration::from_secs(1);

/// Where a joining node will create its WAL once it knows its cluster.
struct WalPlan {
    fs: crate::disk::SharedFs,
    dir: std::path::PathBuf,
    options: WalOptions,
    peer_url: String,
}

/// The raft node. Built from what [`replay_wal`] recovered; run with [`RaftNode::run`].
pub struct RaftNode {
    /// This node's id (`--id`).
    id: u64,
    /// raft-rs's node: the consensus state machine. Owned here alone, and stepped only on this
    /// node's thread.
    rn: RawNode<NodeStorage>,
    /// raft's storage, shared with `rn`: the log since the last compaction, the hard state,
    /// and the newest snapshot's metadata (see `storage.rs`).
    storage: NodeStorage,
    /// The WAL. `None` until a node started with `--join` on an empty data dir hears from its
    /// cluster: it is created at the first write (see `wal_mut` and `joined.rs`).
    wal: Option<Wal>,
    /// Where that WAL will be created, while `wal` is `None`.
    wal_plan: WalPlan,
    /// The network: the HTTP transport, or one in memory.
    transport: Box<dyn Network>,
    /// The way to the state machine (`kvstore`): committed entries, snapshots to take or
    /// restore, and reads to answer, in log order.
    apply_tx: Applier,
    /// The members (ids and peer URLs) as of `applied`.
    members: Members,
    /// raft's voters and learners as of `applied` (what a snapshot records).
    conf_state: ConfState,
    /// Last index handed to the state machine.
    applied: u64,
    /// Index of the newest snapshot: the next is due `snapshot_count` entries past it.
    snapshot_index: u64,
    /// Snapshots: when the next is due, the one being taken, and those arrived from the leader.
    snapshots: snapshots::SnapshotState,
    /// The log's bytes, which bound it beside its entries (`--snapshot-log-bytes`).
    log_bytes: LogBytes,
    /// What `/-/ready` waits to see applied at start-up: the commit index in the WAL, raised
    /// to the cluster's by the ready probe's first answer (later answers are judged with the
    /// time their rounds were asked, see `Shared::probe_answers`).
    commit_at_start: u64,
    /// `/-/ready`'s question to the leader: how far the cluster has committed.
    ready_probe: ReadyProbe,
    /// The places of `--cluster` past the list the data dir was bootstrapped with (a start
    /// refuses changes to that list), as (id, URL), until they are compared with the members
    /// of the log this node started with (see `check_cluster_flag`).
    cluster_flag: Option<Vec<(u64, String)>>,
    /// How long an answer to the ready probe counts (see `READY_WINDOW_TICKS`).
    ready_window: Duration,
    /// How often raft's clock ticks (`--tick-ms`).
    tick: Duration,
    /// This node's requests, from arrival to answer.
    proposals: Proposals,
    /// What the loop saw at its ticks, which both `proposals` and `reads` judge by.
    ticks: Ticks,
    /// Linearizable reads waiting for their read index.
    reads: Reads,
    /// ReadIndex requests held while this node leads without a commit in its term.
    held_reads: HeldReads,
    /// The exactly-once table as of `applied`: part of the replicated state.
    sessions: Sessions,
    /// The cluster's incarnation as of `applied`: part of the replicated state too.
    incarnation: Incarnation,
    /// What the transport dropped during a Ready, reported to raft after it.
    dropped: crate::transport::Dropped,
    /// What this node knows and does about its own removal (see `maybe_stop_removed`).
    removal: conf_change::Removal,
    /// Handing leadership over: a stopping leader, or one that removed itself.
    handover: leadership::HandOver,
    /// Cancelled once the REST port's clients have gone: a stopping node serves them until
    /// then (see [`RaftNode::serve_clients_until`]).
    clients_gone: Option<CancellationToken>,
    /// A node admitted on an empty data dir: the floor its admitters set, and how it asks whether
    /// it is still a member while its campaigns are held.
    join: joined::JoinState,
    /// The highest index at which this node's log may hold a membership change: none is
    /// left unapplied once `applied` reaches it. Starts at the replayed log's end, as raft-rs
    /// counts a new leader's whole unapplied tail as pending; follows the entries raft
    /// appends (and the ones they replace) and the snapshots it installs.
    conf_in_log_to: u64,
    /// Every membership change at or below this commit index has had its commit index synced
    /// (see `sync_commit_for_conf_change`); at a start, the WAL's commit index.
    conf_commit_checked: u64,
    /// The registrations in the log past `applied`, for this node's answers to joining nodes
    /// ([`Shared::join_facts`]).
    tail: tail::UnappliedTail,
    /// Whether the last [`JoinFacts`](crate::request::JoinFacts) published said this node
    /// vouches for no joining node.
    published_vouch_for_none: bool,
    /// When each voter's messages last arrived, and in which term (only the current term's
    /// count): a leader counts itself in touch with its voters only while a quorum of them
    /// was heard lately, and hands leadership only to one heard lately.
    heard_at: std::collections::HashMap<u64, (Instant, u64)>,
    /// The leader and term of the last heartbeat that counted entries this log lacks, said
    /// once in the log: the leader sends one every heartbeat until the snapshot lands.
    lost_log_said: Option<(u64, u64)>,
    /// The leader and term this node last acted on as a new leader (proposals and reads asked
    /// again): compared on every `Ready`, not only when raft reports a new soft state, because
    /// a leader deposed and elected again is the same (leader, role) pair to a follower that
    /// took the new term's first message without a `Ready` in between.
    leader_term: (u64, u64),
    /// When a leader last sent this node anything.
    last_leader_contact: Instant,
    /// Set when the node must stop (removed, a refused join): [`RaftNode::round`] returns it.
    exit: Option<Exit>,
    /// What the node publishes for readers that must not wait on its inbox: its leader and
    /// term, the join facts, the ready probe's answers (see [`Shared`]).
    shared: Arc<Shared>,
    /// The node's Prometheus metrics (`/-/metrics`).
    metrics: Arc<Metrics>,
    /// What time it is: the one clock the node's decisions use.
    clock: Arc<dyn Clock>,
    /// The node's one source of chance (its process nonce, raft's election timeouts), seeded
    /// by whoever runs it.
    rng: SmallRng,
    /// The term and role raft's election timeout was last drawn for.
    timeout_drawn_for: (u64, StateRole),
    /// Held while the node runs: a second process on the same data dir fails at start-up.
    /// Last, so that it is released only after the WAL has been dropped (and has written what
    /// it held back).
    _lock: crate::fsutil::DirLock,
}

/// Where the node's core gets time and chance from: tokio's clock and the OS's randomness in
/// production; a hand-driven clock and a seed in a simulation, which then depends on the seed
/// alone.
pub struct NodeEnv {
    /// The clock.
    pub clock: Arc<dyn Clock>,
    /// Seeds every random choice the node makes.
    pub seed: u64,
}

impl NodeEnv {
    /// tokio's clock and a random seed.
    pub fn production() -> NodeEnv {
        NodeEnv {
            clock: Arc::new(TokioClock),
            seed: rand::random(),
        }
    }
}

impl RaftNode {
    /// Builds the node from recovered state. `transport` gets the members as peers.
    pub fn new(
        config: &Config,
        recovered: Recovered,
        mut transport: Box<dyn Network>,
        apply_tx: Applier,
        shared: Arc<Shared>,
        metrics: Arc<Metrics>,
        env: NodeEnv,
    ) -> Result<RaftNode, StartError> {
        let raft_config = raft::Config {
            id: config.id,
            election_tick: ELECTION_TICKS as usize,
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
        let mut rn = RawNode::new(&raft_config, recovered.storage.clone(), &logger)
            .map_err(StartError::Raft)?;
        let mut rng = SmallRng::seed_from_u64(env.seed);
        let timeout_drawn_for = (rn.raft.term, rn.raft.state);
        draw_election_timeout(&mut rn, &mut rng);
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
        transport.set_removed(&recovered.members.removed);
        // Before the first message either way: the committed entries it will apply again
        // name it (see `replay_wal`).
        if let Some(n) = recovered.incarnation_at_start.known() {
            transport.set_incarnation(n);
        }
        shared
            .commit_at_start
            .store(recovered.commit_at_start, Ordering::Release);
        shared
            .commit_in_wal
            .store(recovered.commit_at_start, Ordering::Release);
        // Tells this process's session and read contexts from those of every earlier process
        // of this node (see crate::proposal).
        let nonce: u64 = rng.random();
        let removed_in_snapshot = !recovered.members.contains(config.id)
            && recovered.members.removed.contains(&config.id);
        let added_at = if recovered.members.contains(config.id) {
            recovered.snapshot_index
        } else {
            0
        };
        let timeout = config.proposal_timeout();
        let tick = config.tick();
        let conf_in_log_to = rn.raft.raft_log.last_index();
        let tail = unapplied_tail(&rn, recovered.snapshot_index);
        let bootstrapped_with = recovered
            .wal
            .as_ref()
            .map_or(0, |w| w.metadata().initial_cluster.len());
        let mut node = RaftNode {
            id: config.id,
            _lock: recovered.lock,
            rn,
            storage: recovered.storage,
            wal: recovered.wal,
            wal_plan: WalPlan {
                fs: recovered.fs.clone(),
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
            snapshots: snapshots::SnapshotState {
                prev_snapshot_index: recovered.snapshot_index,
                snapshot_count: config.snapshot_count.max(1),
                catchup_entries: config.snapshot_catchup_entries,
                pending_snapshot: None,
                snapshot_retry: None,
                retake_backoff: None,
                received_snapshots: Vec::new(),
            },
            log_bytes: LogBytes::new(
                config.snapshot_log_bytes,
                recovered.snapshot_index,
                recovered.snapshot_bytes,
            ),
            commit_at_start: recovered.commit_at_start,
            ready_probe: ReadyProbe::new(
                config.id,
                nonce,
                tick / 2,
                tick * READY_PROBE_TICKS,
                (tick * READY_EVERY_TICKS).max(READY_EVERY_FLOOR),
            ),
            cluster_flag: Some(
                (1..)
                    .zip(config.cluster.iter().cloned())
                    .skip(bootstrapped_with)
                    .collect(),
            ),
            ready_window: (tick * READY_WINDOW_TICKS).max(READY_WINDOW_FLOOR),
            tick: config.tick(),
            proposals: Proposals::new(config.id, nonce, timeout, tick),
            ticks: Ticks::new(tick, timeout),
            reads: Reads::new(config.id, nonce, timeout, tick / 2),
            held_reads: HeldReads::default(),
            sessions: recovered.sessions,
            incarnation: recovered.incarnation,
            dropped: Default::default(),
            removal: conf_change::Removal {
                // Its snapshot already has it removed (taken after it applied its removal,
                // before it stopped): no entry replayed will say so again, and it must still
                // stop.
                removal_pending: removed_in_snapshot,
                said_removed_at_start: false,
                removed_while_leading: None,
                held_after_own_removal: Vec::new(),
                added_at,
                leader_commit: 0,
                commit_to_hear: 0,
            },
            handover: leadership::HandOver::default(),
            clients_gone: None,
            join: joined::JoinState {
                joined_at: None,
                held_silent_ticks: 0,
                listed: (1..=config.cluster.len() as u64)
                    .filter(|id| *id != config.id)
                    .collect(),
            },
            conf_in_log_to,
            conf_commit_checked: recovered.commit_at_start,
            tail,
            published_vouch_for_none: false,
            heard_at: Default::default(),
            lost_log_said: None,
            leader_term: (raft::INVALID_ID, 0),
            last_leader_contact: env.clock.now(),
            exit: None,
            shared,
            metrics,
            clock: env.clock,
            rng,
            timeout_drawn_for,
        };
        if node.members.contains(config.id) {
            node.proposals.started_as_member();
        }
        node.publish_applied(AppliedAt {
            index: node.applied,
            term: node.rn.raft.raft_log.term(node.applied).unwrap_or_default(),
        });
        node.shared.term.store(node.rn.raft.term, Ordering::Release);
        if let Some(at) = node.wal.as_ref().and_then(|wal| wal.metadata().joined_at) {
            node.restart_joined(at);
        }
        node.publish_join_facts();
        Ok(node)
    }

    /// A stopping node goes on serving its clients' open connections until `gone` is
    /// cancelled (the listener does, once each has closed or gone quiet), or until its stop
    /// limit: they may send a request before they learn that the node stops.
    pub fn serve_clients_until(mut self, gone: CancellationToken) -> Self {
        self.clients_gone = Some(gone);
        self
    }

    /// The node's clock.
    fn now(&self) -> Instant {
        self.clock.now()
    }

    /// raft-rs draws each election timeout from the thread's own random source whenever the
    /// term or the role changes; the node draws it again from its seeded one, so that a run
    /// depends on its seed alone.
    fn redraw_election_timeout_on_change(&mut self) {
        let now = (self.rn.raft.term, self.rn.raft.state);
        if now != self.timeout_drawn_for {
            self.timeout_drawn_for = now;
            draw_election_timeout(&mut self.rn, &mut self.rng);
        }
    }

    fn leader_id(&self) -> u64 {
        self.rn.raft.leader_id
    }

    /// The WAL, created now if this is a joining node's first write.
    fn wal_mut(&mut self) -> Result<&mut Wal, NodeError> {
        if self.wal.is_none() {
            let cluster_id = self.transport.cluster_id();
            if cluster_id == 0 {
                return Err(NodeError::UnknownCluster);
            }
            // Taken with the first message from the cluster, which comes before any write.
            let meta = Metadata {
                node_id: self.id,
                cluster_id,
                peer_url: self.wal_plan.peer_url.clone(),
                initial_cluster: Vec::new(),
                joined_at: self.join.joined_at,
            };
            tracing::info!(
                cluster = crate::incarnation::hex(cluster_id),
                "joined a cluster; creating the WAL"
            );
            self.wal = Some(Wal::create_on(
                self.wal_plan.fs.clone(),
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

/// The tail of a log replayed at start-up: its entries past `applied`, read a chunk at a time
/// (the log may hold tens of megabytes). One that cannot be read leaves this node vouching
/// for no joining node until it has applied that far.
fn unapplied_tail(rn: &RawNode<NodeStorage>, applied: u64) -> tail::UnappliedTail {
    let log = &rn.raft.raft_log;
    let mut tail = tail::UnappliedTail::default();
    let mut next = applied + 1;
    while next <= log.last_index() {
        match log.entries(next, Some(1 << 20), raft::GetEntriesContext::empty(false)) {
            Ok(entries) if !entries.is_empty() => {
                next = entries[entries.len() - 1].index + 1;
                tail.append(&entries);
            }
            _ => {
                tail.unreadable(log.last_index());
                break;
            }
        }
    }
    tail
}

/// What the node's loop saw at its ticks. The loop alone keeps this record, and hands each
/// tick it makes to both its proposals and its reads, so that the two judge alike the requests
/// whose time is up at it; a read whose time was up before it arrived is judged by the record
/// as it stands then ([`Ticks::as_of`]).
#[derive(Debug, Clone)]
struct Ticks {
    /// How often the loop ticks.
    every: Duration,
    /// The longest wait a request can have (`--proposal-timeout-ms`): how far back a stall
    /// can still overlap the wait of a request not yet answered.
    longest: Duration,
    /// The latest tick.
    last: Option<Instant>,
    /// The latest time a leader was known at: a tick with one, or one found between ticks
    /// ([`Ticks::leader_found`]). A request that began then knew it.
    leader_seen: Option<Instant>,
    /// The latest time a leader was lost between ticks ([`Ticks::leader_lost`]): it was known
    /// until then, not then, so only a request that began before it knew it (review 114 N1).
    leader_lost: Option<Instant>,
    /// The loop's stalls (two ticks, at least two ticks apart) that can overlap the wait of
    /// a request not yet answered, oldest first, at most [`MAX_STALLS`]. All of them, not
    /// the latest alone: a node that resumed from a long stall and then stalled briefly again
    /// (catching up on its disk after a SIGCONT) had stood still for the first one too, and
    /// two stalls can together fill most of a wait (review 116 L1).
    stalls: VecDeque<Stall>,
}

/// The most stalls [`Ticks`] keeps. A wait overlaps at most one per two of its ticks and two
/// more: 27 in the default 5 s at 100 ms, but thousands at `--tick-ms 1`, where nearly any
/// hiccup of the process is one. Past this many, the shortest is forgotten: the long ones
/// decide whether the node stood still for most of a wait.
const MAX_STALLS: usize = 64;

/// A span in which the node's loop did not tick: its process paused or starved of CPU, or a
/// round stuck on its disk.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
struct Stall {
    /// When the tick after the one before it was due.
    from: Instant,
    /// The tick that ended it.
    to: Instant,
}

impl Stall {
    fn length(&self) -> Duration {
        self.to.saturating_duration_since(self.from)
    }
}

impl Ticks {
    /// The record of a loop that ticks `every`, for requests that wait at most `longest`.
    fn new(every: Duration, longest: Duration) -> Self {
        Ticks {
            every,
            longest,
            last: None,
            leader_seen: None,
            leader_lost: None,
            stalls: VecDeque::new(),
        }
    }

    /// Records that a leader was found at `at`, between ticks. Seen at ticks alone, a leader
    /// found and lost between two of them did not count, and a request that waited through
    /// it heard "no leader was elected" (review 112 N4).
    fn leader_found(&mut self, at: Instant) {
        self.leader_seen = Some(at);
    }

    /// Records that the leader was lost at `at`, between ticks: known until then.
    fn leader_lost(&mut self, at: Instant) {
        self.leader_lost = Some(at);
    }

    /// Records a tick at `at`, with a leader known then or not.
    fn next(&mut self, at: Instant, leader_known: bool) -> Tick<'_> {
        if leader_known {
            self.leader_seen = Some(at);
        }
        let previous = self.last.replace(at);
        if let Some(from) = previous {
            // A request answered from this tick on was not due at the one before, so its wait
            // began less than `longest` before that: a stall that ended earlier overlaps none.
            while self
                .stalls
                .front()
                .is_some_and(|stall| from.saturating_duration_since(stall.to) >= self.longest)
            {
                self.stalls.pop_front();
            }
            // Past the tick that was due anyway: added up, whole gaps had a loop that merely
            // ran at half pace (rounds of two ticks on a slow disk) stand still for all of a
            // wait (review 118).
            if at.saturating_duration_since(from) >= self.every * 2 {
                self.stalls.push_back(Stall {
                    from: from + self.every,
                    to: at,
                });
            }
            if self.stalls.len() > MAX_STALLS
                && let Some(shortest) =
                    (0..self.stalls.len()).min_by_key(|i| self.stalls[*i].length())
            {
                self.stalls.remove(shortest);
            }
        }
        Tick {
            at,
            leader_known,
            leader_seen: self.leader_seen,
            leader_lost: self.leader_lost,
            stalls: &self.stalls,
        }
    }

    /// The record as it stands at `at`, between ticks, with a leader known then or not, as
    /// a tick then would show it but recording nothing: what a read that reaches the node
    /// past its deadline is judged by as it arrives. At its next tick the stall that held it
    /// up may have been forgotten ([`Ticks::next`] keeps only those that can overlap a wait
    /// not yet answered). No stall is in progress at `at`: the loop takes a tick that is due
    /// before any request, so the tick that ends a stall has recorded it.
    fn as_of(&self, at: Instant, leader_known: bool) -> Tick<'_> {
        Tick {
            at,
            leader_known,
            leader_seen: if leader_known {
                Some(at)
            } else {
                self.leader_seen
            },
            leader_lost: self.leader_lost,
            stalls: &self.stalls,
        }
    }
}

/// One tick of the node's loop, as a request or a read whose time is up at it is judged.
#[derive(Debug, Clone, Copy)]
struct Tick<'a> {
    /// When.
    at: Instant,
    /// Whether a leader was known then.
    leader_known: bool,
    /// See [`Ticks::leader_seen`], this tick included.
    leader_seen: Option<Instant>,
    /// See [`Ticks::leader_lost`].
    leader_lost: Option<Instant>,
    /// The loop's recent stalls, up to this tick (see [`Ticks::stalls`]).
    stalls: &'a VecDeque<Stall>,
}

impl Tick<'_> {
    /// Whether no leader was known at any time of a wait that ends at `deadline` and lasts
    /// `timeout`: only then does a request or a read that was never proposed hear "no leader
    /// was elected" (one known for most of its wait and lost at the end was not: review 86).
    fn no_leader_during(&self, deadline: Instant, timeout: Duration) -> bool {
        let Some(began) = deadline.checked_sub(timeout) else {
            return self.leader_seen.is_none() && self.leader_lost.is_none();
        };
        let seen = self.leader_seen.is_some_and(|seen| seen >= began);
        let lost = self.leader_lost.is_some_and(|lost| lost > began);
        !seen && !lost
    }

    /// A wait that ends at `deadline` and lasts `timeout`, as answered at this tick, with how
    /// long this node's loop stood still in it (the overlaps of its stalls with the wait, up
    /// to this tick if that comes first: a request answered as its settle window begins,
    /// added up), if that was most of the wait: at least half of it, and two ticks of `tick`
    /// (a tick apart is no stall). A request not done by then, or that knew no leader, says
    /// so, rather than blame a quorum the node was not there to hear (found by a user's
    /// campaign: a leader paused for 8 s said "a quorum may be down" of a healthy one; review
    /// 112 N4, of "no leader"). Stalls it came out of before its answer count too: a node
    /// that resumed a tick or two before its answer had stood still just as long (review 114
    /// L5), and so had one whose catch-up after a pause stalled it again (review 116 L1).
    fn waited(&self, deadline: Instant, timeout: Duration, tick: Duration) -> Waited {
        let began = deadline.checked_sub(timeout);
        let end = deadline.min(self.at);
        let still = self
            .stalls
            .iter()
            .map(|stall| {
                let from = began.map_or(stall.from, |began| began.max(stall.from));
                end.min(stall.to).saturating_duration_since(from)
            })
            .sum();
        Waited::stood_still_for(timeout, still, tick)
    }
}

/// Sets raft's randomized election timeout from `rng`, in raft's own range.
fn draw_election_timeout(rn: &mut RawNode<NodeStorage>, rng: &mut SmallRng) {
    let min = rn.raft.election_timeout();
    let timeout = rng.random_range(min..2 * min);
    rn.raft.set_randomized_election_timeout(timeout);
}

/// Node `config.id`, started in `config`'s data dir on an in-memory network and driven by hand:
/// no loop runs it, so a test sees its fields between two events, and calls its methods.
#[cfg(test)]
fn driven_by_hand(config: &Config) -> RaftNode {
    let mut recovered = replay_wal(config).expect("the test's own data dir");
    let kv =
        crate::kvstore::KvStore::new(std::mem::take(&mut recovered.kv), recovered.snapshot_index);
    let (endpoint, _peers) = crate::transport::mem::MemNet::new().attach(config.id);
    RaftNode::new(
        config,
        recovered,
        Box::new(endpoint),
        Applier::inline(kv),
        Arc::new(Shared::default()),
        Arc::new(Metrics::new(config.id)),
        NodeEnv::production(),
    )
    .expect("node")
}
