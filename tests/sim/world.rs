//! The world: every node of one schedule in one thread, driven by one seeded random source
//! and one simulated clock.
//!
//! Everything that happens is an [`Event`] in a queue ordered by simulated time (and, at equal
//! times, by the order it was scheduled): a node's tick, a batch of messages arriving, a
//! transport report, a client's next request, a fault, a restart. The loop takes the earliest
//! event, sets the clock to its time, hands the node its input and runs one round of it
//! ([`raftexample::raft_node::RaftNode::round`]), then looks at what the round did: the
//! messages it sent (scheduled by the links), the answers it gave (recorded in the history),
//! and its state (checked against every other node's). Time jumps from event to event: a
//! schedule of twenty simulated seconds takes milliseconds.
//!
//! Nothing here reads the wall clock, starts a thread or iterates a hash map, so a run is a
//! function of its seed: [`World::trace`] is the same, byte for byte, every time.

use std::collections::BTreeMap;
use std::hash::{DefaultHasher, Hash, Hasher};
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::sync::atomic::Ordering;
use std::time::{Duration, Instant};

use raft::eraftpb::{EntryType, Message, MessageType};
use raft::{GetEntriesContext, NO_LIMIT, Storage};
use raftexample::clock::ManualClock;
use raftexample::config::Config;
use raftexample::kvstore::{Applier, Command, KvStore};
use raftexample::metrics::Metrics;
use raftexample::raft_node::storage::NodeStorage;
use raftexample::raft_node::{
    Exit, MemberChange, NodeEnv, ProposalError, RaftNode, Request, Shared, StartError, Stop,
    replay_wal_on,
};
use raftexample::transport::join::{self, MemberView, Round, Verdict};
use raftexample::transport::{PeerEvent, SnapshotId, gone_as_of};
use raftexample::wal::Record;
use rand::rngs::SmallRng;
use rand::{RngExt, SeedableRng};
use tokio::sync::oneshot;

use crate::checks::{Change, Invariants};
use crate::client::{Pending, Recorded, Why, put_outcome};
use crate::disk::SimFs;
use crate::lincheck::{OpKind, Outcome};
use crate::net::{Fate, LinkFault, Links, MS, Nanos, NetHandle, describe, node_network};
use crate::plan::{Fault, Kind, Plan, SECOND};

/// How long a client whose connection was refused waits before its next request (without
/// it, a client that does not think would ask the down nodes again and again at one instant
/// of simulated time, and its history grow without end while every node is down).
const RECONNECT: Nanos = 20 * MS;
/// The raft tick.
const TICK: Nanos = 100 * MS;
/// After the faults end, how long the cluster has to converge before that counts as a failure.
const SETTLE_LIMIT: Nanos = 60 * SECOND;
/// Once the cluster has converged, how long each member has to take a write (asked again
/// after each 503): a few proposal timeouts and resend delays.
const PROBE_LIMIT: Nanos = 20 * SECOND;
/// Once every member took a write, how long the nodes have to count every member's process
/// as running since the member's latest addition (see [`World::check_sessions`]): a process
/// added back while it ran renews its session with one registration, sent again after at most
/// half the proposal timeout (2.5 s for the longest the schedules draw) if it is lost; the
/// cluster is healed by now, so a few of those delays are plenty.
const SESSION_LIMIT: Nanos = 10 * SECOND;
/// The most memory one schedule may hold: past it the schedule ends as a violation (a world
/// or a node that grows without bound), instead of taking the machine's memory.
const MEMORY_LIMIT: u64 = 3 << 30;
/// How often (in events) the world looks at what it holds.
const MEMORY_CHECK_EVERY: u64 = 64;
/// Where every node keeps its two folders, on its own disk.
const DATA_DIR: &str = "/data";

/// Something that happens at a point of simulated time.
enum Event {
    /// A node's raft tick.
    Tick { node: u64, life: u64 },
    /// A node's leader held a batch back until now.
    Hold { node: u64, life: u64 },
    /// Messages `from` sent to `to` arrive.
    Deliver {
        from: u64,
        from_life: u64,
        to: u64,
        messages: Vec<Message>,
    },
    /// The transport tells a node about a peer.
    Report {
        node: u64,
        life: u64,
        event: PeerEvent,
    },
    /// A joining node asks a member for the cluster's identity.
    JoinLookup { node: u64, life: u64 },
    /// A request reaches a node (it waited in the inbox while the node's disk was busy).
    Ask {
        node: u64,
        life: u64,
        request: Request,
    },
    /// A client's next request.
    Client(usize),
    /// The next fault.
    NextFault,
    /// A fault ends.
    EndFault(Ending),
    /// A node's process is killed (a crash aimed at a moment, not drawn as the next fault).
    Kill { node: u64, life: u64 },
    /// A stopped node is started again.
    Restart(u64),
    /// Ids added back while registering: the end of an episode's step, if it stalled (see
    /// [`World::undo_removal`]); `until` tells a later step's from an earlier one's.
    UndoRemoval { node: u64, life: u64, until: Nanos },
    /// The faults stop; everything heals.
    Heal,
    /// Is the cluster back together yet?
    Settle,
}

/// What ends when a fault ends.
enum Ending {
    /// Link faults, by id.
    Links(u64),
    /// A slow disk.
    SlowDisk(u64),
    /// A power loss scheduled inside a node's disk operations that has not happened yet.
    PowerLossDue(u64),
    /// A full disk.
    DiskFull(u64),
    /// The slow reader's links are fast again (reads across restarts).
    SlowReader,
}

/// A node process: what dies in a crash.
struct Process {
    node: RaftNode,
    kv: KvStore,
    net: NetHandle,
    shared: Arc<Shared>,
    storage: NodeStorage,
    /// The highest applied index and committed index already checked.
    applied_seen: u64,
    commit_seen: u64,
    snapshot_seen: u64,
    /// The highest commit index a message it took told it (an append's or a heartbeat's, a
    /// snapshot's index): what it can know is committed.
    told_commit: u64,
    /// When a Hold event is queued for it.
    hold_at: Option<Nanos>,
    /// Its session in its own applied state, when that did not count as a run since its
    /// latest addition while it was a member: it is to renew it (counted in
    /// [`Stats::sessions_renewed`] once it has).
    uncounted: Option<u64>,
}

impl Process {
    /// Whether this process counts member `id` as running since its latest addition.
    fn counts_running(&self, id: u64) -> bool {
        self.shared.counts_running(id)
    }
}

/// Why a node is not running.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Life {
    /// Running (its process is there).
    Up,
    /// Stopped; will be started again.
    Down,
    /// Stopped because it was removed from the cluster.
    Removed,
    /// Never started (an id that may join later).
    Unborn,
}

/// A byte flipped at rest, and what the next start must make of it.
#[derive(Clone, Debug)]
struct Flip {
    path: PathBuf,
    offset: u64,
    mask: u8,
    /// Whether a completed sync covered it: then the node must refuse to start.
    synced: bool,
    /// A snapshot file (a refusal then must name it; starting from an older one is fine).
    snapshot: bool,
}

/// One node id: its disk, its flags and its process, if running.
struct SimNode {
    url: String,
    config: Config,
    fs: SimFs,
    proc: Option<Process>,
    /// Incremented at every start: events meant for an earlier process are dropped.
    life_no: u64,
    life: Life,
    /// Until when its last round kept its disk busy.
    busy_until: Nanos,
    /// A disk fault was injected since its last start: it may stop on its own.
    expect_fatal: bool,
    /// It lost power since its WAL was last opened: its last sync mark may be gone.
    lost_power: bool,
    flip: Option<Flip>,
    /// The life in which its removal was undone while it ran (see `send_change`).
    undone_in_life: Option<u64>,
    /// Its folders were wiped while it was a voter, not removed (see [`World::wipe_voter`]):
    /// the latest membership change of it that took effect then. Until another one does, it
    /// must not be admitted again.
    wiped: Option<Option<(u64, Change)>>,
    /// Wiped as above, and admitted through a gap (no member it reached knew it ran, see
    /// `join_lookup`): the same latest change. It is a member like any other from then on,
    /// but it lost its data all the same, so a later start on an empty data dir (its disk
    /// lost power before a sync) that the members refuse until another change of it takes
    /// effect is a refusal as after the wipe, not a node stopping on its own (long seed
    /// 10302300).
    admitted_after_wipe: Option<Option<(u64, Change)>>,
}

/// Ids added back while registering: where an episode stands (see
/// [`World::registering_step`]).
#[derive(Clone, Copy, Debug)]
enum Registering {
    /// Node `id`'s process of `life` started again, and has not heard of a leader yet.
    Restarted { id: u64, life: u64 },
    /// It heard of one, and was removed; the link fault `cut` keeps it from hearing more.
    Removed { id: u64, life: u64, cut: u64 },
    /// Ids removed again while renewing: it was added back, and has not yet applied its
    /// re-addition (and started to renew its session).
    AddedBack { id: u64, life: u64 },
    /// It renews, and was removed again (`cut` as before) before the renewal's registration
    /// reached the leader, whose log ended at `after` then.
    RemovedAgain {
        id: u64,
        life: u64,
        cut: u64,
        after: u64,
    },
    /// The renewal's registration applied after the second removal, and the member was
    /// added back again, still cut off; `added` is the leader's applied index once it had
    /// applied that addition. The cut ends once the leader's log begins past it, so that
    /// the node learns of it all from a snapshot.
    AddedBackAgain {
        id: u64,
        life: u64,
        cut: u64,
        added: Option<u64>,
    },
}

/// A removed member in reach of a node just admitted: the episode under way (see
/// [`World::in_reach_step`]).
#[derive(Clone, Copy, Debug)]
struct InReach {
    /// The member removed while cut off, which goes on running.
    r: u64,
    /// The member removed and added back, in `r`'s reach once admitted.
    n: u64,
    /// The link fault that cuts `r` off from every other node.
    cut: u64,
    /// When the episode gives up if its step has not moved on.
    until: Nanos,
    step: InReachStep,
}

/// Where an episode of [`InReach`] stands.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum InReachStep {
    /// `r`'s removal was sent through the leader.
    RemovingR,
    /// `r`'s removal applied; `n`'s was sent.
    RemovingN,
    /// `n` stopped as removed, its folders were wiped and its addition sent: once it is
    /// admitted, [`World::after_admission`] mutes the members' links to it and mends `r`'s.
    AddingN,
}

/// A request in flight.
struct InFlight {
    pending: Option<Pending>,
    change: Option<MemberChange>,
    /// Sent with less than the proposal timeout to wait (see [`World::short_wait`]).
    short: bool,
    /// A membership change that was in flight at the same time as another one.
    overlapped: bool,
    /// The pairs of membership changes in flight together that this one is part of, each
    /// named by the number of its later one.
    pairs: Vec<u64>,
    node: u64,
    rx: oneshot::Receiver<Result<(), ProposalError>>,
}

/// A membership change as asked: the node asked, the node changed, and how.
type ChangeKey = (u64, u64, Change);

fn change_key(via: u64, change: &MemberChange) -> ChangeKey {
    match change {
        MemberChange::Add { id, .. } => (via, *id, Change::Added),
        MemberChange::Remove { id } => (via, *id, Change::Removed),
    }
}

/// Of the membership faults that find no change in flight, the share that sends two at once,
/// through two nodes.
const TWO_CHANGES_AT_ONCE: f64 = 0.25;
/// Of the membership faults that find one change in flight, the share that sends a second.
const SECOND_CHANGE: f64 = 0.5;
/// How often a membership change adds back at once an id removed whose process still runs
/// (when there is one).
const UNDO_REMOVAL: f64 = 0.5;
/// How often a member is removed while it is cut off from the others (the usual reason an
/// operator removes one): it goes on running without hearing of its removal, so the undo
/// above finds it. (A removed leader used to linger for a second, its handover refused while
/// its removal was unapplied; since that was fixed, removed members go within milliseconds,
/// and without this the undone removals became too rare for the mutation that keeps a
/// removed node's session to be caught.)
const REMOVE_UNREACHABLE: f64 = 0.3;

/// How often a fault of a mixed schedule is, instead, a voter's folders wiped without its
/// removal, and the voter started again with `--join` (an operator's mistake; see
/// [`World::wipe_voter`]). Drawn from a source of its own, so that a schedule that draws no
/// such fault draws everything else as it did before.
const WIPE_VOTER: f64 = 0.03;

/// How often a node admitted through the join path (in a mixed or "ids added back" schedule)
/// hears no raft message from the members for a while, while removed members still running
/// reach it (see [`World::after_admission`]). Drawn from a source of its own, as the wiped
/// voters are.
const MUTE_ADMITTED: f64 = 0.2;

/// How often a fault of a mixed schedule of three voters is, instead, an episode that puts a
/// removed member still running in reach of a node just admitted (see
/// [`World::in_reach_step`]); drawn from the same source as [`MUTE_ADMITTED`].
const REMOVED_IN_REACH: f64 = 0.04;
/// How long a step of that episode may take before the episode ends (each is a change that
/// commits, or a node that stops, within milliseconds when no other fault gets in the way).
const IN_REACH_STEP: Nanos = 3 * SECOND;

/// What one run counted.
#[derive(Debug, Default, Clone)]
pub struct Stats {
    /// Faults injected, by kind.
    pub faults: BTreeMap<Fault, u64>,
    /// Client operations (history and stale reads).
    pub operations: u64,
    /// Operations that ended unknown.
    pub unknown: u64,
    /// Membership changes acknowledged.
    pub member_changes: u64,
    /// Membership changes sent while another one was in flight.
    pub concurrent_changes: u64,
    /// Removals undone at once: the id added back while its process still ran.
    pub removals_undone: u64,
    /// Sessions a process renewed, seen in its own applied state: one that began before its
    /// node's latest addition, replaced by one that counts.
    pub sessions_renewed: u64,
    /// Ids removed again while renewing: episodes that reached their end (the renewal's
    /// registration applied between a second removal and re-addition, and the node let hear
    /// again once the leader's log began past that re-addition).
    pub removed_while_renewing: u64,
    /// The committed membership changes, as the end of the run judged them.
    pub changes_judged: crate::checks::Judged,
    /// The requests sent with a shorter wait than the proposal timeout (see
    /// [`World::short_wait`]), by what they were (`PUTs`, `membership changes`) and their
    /// answer ([`ProposalError::reason`], or `ok`).
    pub short_waits: BTreeMap<(&'static str, &'static str), u64>,
    /// What the changes that were in flight together were answered (both of each pair), by
    /// the answer's label (see [`change_answer`]).
    pub overlapped_answers: BTreeMap<&'static str, u64>,
    /// Snapshots saved (taken or installed) over all nodes.
    pub snapshots: u64,
    /// Node starts (restarts included).
    pub starts: u64,
    /// Starts refused because of a byte flipped in synced data, as they must be.
    pub refusals: u64,
    /// Voters whose folders were wiped without their removal, and started again.
    pub wiped_voters: u64,
    /// Starts of such voters refused, as they must be (the node stops, saying to remove the
    /// id and add it back).
    pub wiped_refused: u64,
    /// Such voters admitted by members none of which knew of their session (the leader could
    /// not answer): a gap the README names.
    pub wiped_admitted: u64,
    /// Nodes admitted through the join path that then heard no raft message from the members
    /// for a while (see [`World::after_admission`]).
    pub admissions_muted: u64,
    /// Of those, the ones a removed member still running reached meanwhile.
    pub muted_in_reach: u64,
    /// Episodes of a removed member in reach begun, and those that reached the mute.
    pub in_reach_episodes: (u64, u64),
    /// Simulated nanoseconds the run lasted.
    pub simulated: Nanos,
    /// Events handled.
    pub events: u64,
    /// Entries committed.
    pub committed: u64,
    /// The most memory the schedule held at once (bytes; see `memory.rs`).
    pub peak_memory: u64,
}

/// The end of a run.
pub struct RunResult {
    /// The schedule.
    pub plan: Plan,
    /// What went wrong (empty: nothing).
    pub violations: Vec<String>,
    /// What it counted.
    pub stats: Stats,
    /// The history, for a failure's folder.
    pub history: Vec<Recorded>,
    /// The stale reads.
    pub stale: Vec<Recorded>,
    /// The event trace, if asked for.
    pub trace: Option<String>,
}

/// Where the run is.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Phase {
    Chaos,
    Settling,
    /// Converged: each member takes one write (see [`World::start_probes`]).
    Probing,
    /// Every member took a write: each one's process must come to count as running since the
    /// member's latest addition (see [`World::check_sessions`]).
    Sessions,
    Done,
}

/// A write asked of a member once the cluster converged: the member, its answer, and what
/// the member answered the one before.
type Probe = (
    u64,
    oneshot::Receiver<Result<(), ProposalError>>,
    Option<String>,
);

/// One schedule in progress.
pub struct World {
    plan: Plan,
    rng: SmallRng,
    /// Draws the wiped voters (see [`WIPE_VOTER`]), apart from `rng`.
    wipe_rng: SmallRng,
    /// Draws the mutes after an admission and the episodes of a removed member in reach (see
    /// [`MUTE_ADMITTED`], [`REMOVED_IN_REACH`]), apart from `rng` and `wipe_rng`.
    mute_rng: SmallRng,
    /// Draws the shorter waits (see [`World::short_wait`]), apart from the others: a request
    /// answered as it would have been with the whole wait leaves the schedule as it was.
    wait_rng: SmallRng,
    now: Nanos,
    start: Instant,
    /// What the thread held before the world was made (see `memory.rs`).
    memory_base: u64,
    clock: Arc<ManualClock>,
    queue: BTreeMap<(Nanos, u64), Event>,
    seq: u64,
    nodes: BTreeMap<u64, SimNode>,
    links: Links,
    link_faults: BTreeMap<u64, Vec<(u64, u64, LinkFault)>>,
    next_fault_id: u64,
    cluster_id: u64,
    inv: Invariants,
    history: Vec<Recorded>,
    stale: Vec<Recorded>,
    ops: Vec<InFlight>,
    /// Membership changes sent so far.
    changes_sent: u64,
    /// Membership changes asked, by the node asked, the node changed and how.
    changes_asked: BTreeMap<ChangeKey, u64>,
    /// Of those, the ones answered "will not happen" (see
    /// [`World::changes_that_will_not_happen`]).
    changes_refused: BTreeMap<ChangeKey, u64>,
    /// Per pair of membership changes in flight together, the first of the two answered
    /// 204 (see `answered`).
    pair_ok: BTreeMap<u64, MemberChange>,
    /// Reads across restarts: the node whose incoming links are slow now.
    slow_reader: Option<u64>,
    /// Ids added back while registering: where the episode under way stands.
    registering: Option<Registering>,
    /// When the step of the episode under way counts as stalled (see [`Event::UndoRemoval`]).
    registering_until: Nanos,
    /// A removed member in reach of a node just admitted: where the episode under way stands.
    in_reach: Option<InReach>,
    /// Ids removed again while renewing: an episode reached its end (the last one: a later
    /// membership change would renew the session in log order, hiding what the snapshot
    /// left).
    renewed_from_snapshot: bool,
    client_seq: Vec<u64>,
    last_stamp: u64,
    trace: Option<String>,
    stats: Stats,
    phase: Phase,
    settle_by: Nanos,
    /// The writes of [`Phase::Probing`] not answered yet: the member asked, and its answer.
    probes: Vec<Probe>,
    probe_by: Nanos,
    /// The end of [`Phase::Sessions`]: see [`SESSION_LIMIT`].
    sessions_by: Nanos,
    violations: Vec<String>,
}

/// A URL for node `id` (never dialled: the links are simulated).
fn url_of(id: u64) -> String {
    format!("http://10.0.0.{id}:2380")
}

/// A PUT's value, with the schedule's padding after a `.` (reads record the part before it).
/// Escaped, not decoded lossily: two values that differ in bytes that are not UTF-8 must not
/// read alike (review 104).
fn short_value(value: &[u8]) -> String {
    let end = value.iter().position(|b| *b == b'.').unwrap_or(value.len());
    value[..end].escape_ascii().to_string()
}

impl World {
    /// The trace so far (what a panic leaves of a run).
    pub fn take_trace(&mut self) -> Option<String> {
        self.trace.take()
    }

    /// The world of `plan`; `trace` records every event.
    pub fn new(plan: Plan, trace: bool) -> World {
        let memory_base = crate::memory::held();
        crate::memory::reset_peak();
        let rng = SmallRng::seed_from_u64(plan.seed);
        let wipe_rng = SmallRng::seed_from_u64(plan.seed ^ 0x3a9e_3a9e_3a9e_3a9e);
        let mute_rng = SmallRng::seed_from_u64(plan.seed ^ 0x4d07_4d07_4d07_4d07);
        let wait_rng = SmallRng::seed_from_u64(plan.seed ^ 0x7a17_7a17_7a17_7a17);
        let start = Instant::now();
        let links = Links::new(plan.latency);
        let clients = plan.clients;
        let mut world = World {
            rng,
            wipe_rng,
            mute_rng,
            wait_rng,
            now: 0,
            start,
            memory_base,
            clock: Arc::new(ManualClock::new(start)),
            queue: BTreeMap::new(),
            seq: 0,
            nodes: BTreeMap::new(),
            links,
            link_faults: BTreeMap::new(),
            next_fault_id: 0,
            cluster_id: 0,
            inv: Invariants::default(),
            history: Vec::new(),
            stale: Vec::new(),
            ops: Vec::new(),
            changes_sent: 0,
            changes_asked: BTreeMap::new(),
            changes_refused: BTreeMap::new(),
            pair_ok: BTreeMap::new(),
            slow_reader: None,
            registering: None,
            registering_until: 0,
            in_reach: None,
            renewed_from_snapshot: false,
            client_seq: vec![0; clients],
            last_stamp: 0,
            trace: trace.then(String::new),
            stats: Stats::default(),
            phase: Phase::Chaos,
            settle_by: 0,
            probes: Vec::new(),
            probe_by: 0,
            sessions_by: 0,
            violations: Vec::new(),
            plan,
        };
        world.build_nodes();
        world
    }

    fn build_nodes(&mut self) {
        let initial: Vec<String> = (1..=self.plan.nodes).map(url_of).collect();
        let all: Vec<String> = (1..=self.plan.max_id).map(url_of).collect();
        for id in 1..=self.plan.max_id {
            let joining = id > self.plan.nodes;
            let config = Config {
                id,
                cluster: if joining {
                    all.clone()
                } else {
                    initial.clone()
                },
                join: joining,
                data_dir: PathBuf::from(DATA_DIR),
                snapshot_count: self.plan.snapshot_count,
                snapshot_catchup_entries: self.plan.catchup,
                proposal_timeout_ms: self.plan.proposal_timeout_ms,
                wal_segment_bytes: self.plan.segment_bytes,
                tick_ms: TICK / MS,
                max_snapshots: self.plan.max_snapshots,
                snapshot_log_bytes: self.plan.snapshot_log_bytes,
                ..Config::default()
            };
            let fs = SimFs::new(self.rng.random(), self.plan.sync_cost);
            self.nodes.insert(
                id,
                SimNode {
                    url: url_of(id),
                    config,
                    fs,
                    proc: None,
                    life_no: 0,
                    life: if joining { Life::Unborn } else { Life::Down },
                    busy_until: 0,
                    expect_fatal: false,
                    lost_power: false,
                    flip: None,
                    undone_in_life: None,
                    wiped: None,
                    admitted_after_wipe: None,
                },
            );
        }
    }

    // ---------------------------------------------------------------- time and the queue

    fn schedule(&mut self, at: Nanos, event: Event) {
        self.seq += 1;
        self.queue.insert((at.max(self.now), self.seq), event);
    }

    fn instant(&self, at: Nanos) -> Instant {
        self.start + Duration::from_nanos(at)
    }

    fn nanos(&self, at: Instant) -> Nanos {
        at.saturating_duration_since(self.start).as_nanos() as Nanos
    }

    /// A timestamp for the history: the simulated time, made unique and increasing in the
    /// order things happen (events at one instant still happen one after the other).
    fn stamp(&mut self) -> u64 {
        self.last_stamp = (self.last_stamp + 1).max(self.now * 1000);
        self.last_stamp
    }

    fn note(&mut self, what: impl FnOnce() -> String) {
        if let Some(trace) = &mut self.trace {
            let line = what();
            trace.push_str(&format!(
                "{:>6}.{:06} {line}\n",
                self.now / SECOND,
                self.now % SECOND / 1000
            ));
        }
    }

    fn violation(&mut self, what: String) {
        let line = format!("at {:.3} s: {what}", self.now as f64 / SECOND as f64);
        self.note(|| format!("VIOLATION {line}"));
        self.violations.push(line);
    }

    fn between(&mut self, lo: Nanos, hi: Nanos) -> Nanos {
        self.rng.random_range(lo..=hi)
    }

    /// A wait shorter than the proposal timeout for a request, [`Plan::short_waits`] of the
    /// time (else `None`: the whole timeout), as the REST side sends one whose checks took
    /// part of its wait (a `PUT` of a value that is not UTF-8, a membership change under the
    /// strict check). The node refuses at once one left no more than its settle window, so
    /// most are drawn above it, where they are proposed: an eighth in it (answered "will not
    /// happen" on arrival), a quarter up to two ticks past it (withdrawn within two ticks,
    /// with nearly all of the window left for a fence to settle them), a quarter up to twice
    /// it, and three eighths up to the timeout (a deadline before those of requests sent
    /// earlier: withdrawn above one still pending). Review 110 M1: drawn from 1 ns, three
    /// quarters of them ended at the arrival check. Never zero: the REST side sends no
    /// request with no time left.
    fn short_wait(&mut self) -> Option<Duration> {
        if !self.wait_rng.random_bool(self.plan.short_waits) {
            return None;
        }
        let timeout = self.plan.proposal_timeout_ms * MS;
        // The node's settle window (`raft_node::proposals::settle_window`).
        let settle = (timeout / 5).min(SECOND);
        let (least, most) = match self.wait_rng.random_range(0..8) {
            0 => (1, settle),
            1 | 2 => (settle + 1, settle + 2 * TICK),
            3 | 4 => (settle + 1, 2 * settle),
            _ => (settle + 1, timeout),
        };
        let wait = Duration::from_nanos(self.wait_rng.random_range(least..=most));
        self.note(|| format!("  with {wait:?} to wait"));
        Some(wait)
    }

    // ---------------------------------------------------------------- the run

    /// Runs the schedule to its end and judges it.
    pub fn run(&mut self) -> RunResult {
        for id in 1..=self.plan.nodes {
            let at = self.between(0, 50 * MS);
            self.schedule(at, Event::Restart(id));
        }
        for client in 0..self.plan.clients {
            let at = self.between(0, 200 * MS);
            self.schedule(at, Event::Client(client));
        }
        let first_fault = self.between(SECOND, 2 * SECOND);
        self.schedule(first_fault, Event::NextFault);
        self.schedule(self.plan.chaos, Event::Heal);
        while self.phase != Phase::Done {
            let Some(((at, _), event)) = self.queue.pop_first() else {
                self.violation("the event queue ran dry".into());
                break;
            };
            self.now = at;
            self.clock.set(self.instant(at));
            self.stats.events += 1;
            self.handle(event);
            if self.stats.events.is_multiple_of(MEMORY_CHECK_EVERY) && self.over_memory() {
                break;
            }
            if self.phase == Phase::Settling && self.now > self.settle_by {
                let why = self.not_converged().unwrap_or_default();
                self.violation(format!(
                    "the cluster did not recover within {} s of the faults' end: {why}",
                    SETTLE_LIMIT / SECOND
                ));
                self.phase = Phase::Done;
            }
        }
        self.finish()
    }

    /// Whether the schedule holds more memory than it may (then it is a violation).
    fn over_memory(&mut self) -> bool {
        let held = crate::memory::held().saturating_sub(self.memory_base);
        if held <= MEMORY_LIMIT {
            return false;
        }
        let what = self.holdings();
        self.violation(format!(
            "the schedule holds {} MiB, more than the {} MiB a schedule may: {what}",
            held >> 20,
            MEMORY_LIMIT >> 20
        ));
        true
    }

    /// Where a schedule's memory is: the nodes' disks, logs and queued messages.
    fn holdings(&self) -> String {
        let mut parts = Vec::new();
        let mut queued = 0usize;
        for event in self.queue.values() {
            if let Event::Deliver { messages, .. } = event {
                queued += messages
                    .iter()
                    .map(protobuf::Message::compute_size)
                    .sum::<u32>() as usize;
            }
        }
        parts.push(format!(
            "{} events queued, {} MiB of messages",
            self.queue.len(),
            queued >> 20
        ));
        for (id, n) in &self.nodes {
            let disk = n.fs.disk().used_bytes();
            let log = n.proc.as_ref().map(|p| {
                let first = p.storage.mem.first_index().unwrap_or(0);
                let last = p.storage.mem.last_index().unwrap_or(0);
                format!("log {first}..={last}")
            });
            parts.push(format!(
                "n{id}: disk {} MiB, {}",
                disk >> 20,
                log.unwrap_or_else(|| "down".into())
            ));
        }
        parts.join("; ")
    }

    fn handle(&mut self, event: Event) {
        match event {
            Event::Tick { node, life } => {
                if self.alive(node, life) {
                    if self.defer_if_busy(node, Event::Tick { node, life }) {
                        return;
                    }
                    self.input(node, |n| n.on_tick());
                    self.schedule(self.now + TICK, Event::Tick { node, life });
                }
            }
            Event::Hold { node, life } => {
                if self.alive(node, life) {
                    if let Some(p) = self.proc_mut(node) {
                        p.hold_at = None;
                    }
                    if self.defer_if_busy(node, Event::Hold { node, life }) {
                        return;
                    }
                    self.input(node, |_| {});
                }
            }
            Event::Deliver {
                from,
                from_life,
                to,
                messages,
            } => self.deliver(from, from_life, to, messages),
            Event::Report { node, life, event } => {
                if self.alive(node, life) {
                    if self.busy(node) {
                        let at = self.nodes[&node].busy_until;
                        self.schedule(at, Event::Report { node, life, event });
                        return;
                    }
                    self.input(node, |n| n.on_peer_event(event));
                }
            }
            Event::JoinLookup { node, life } => self.join_lookup(node, life),
            Event::Ask {
                node,
                life,
                request,
            } => {
                if self.alive(node, life) {
                    self.ask(node, request);
                } else {
                    // The process it waited for is gone: its client hears so now (nothing
                    // else polls a node that stays down).
                    drop(request);
                    self.poll_ops(node);
                }
            }
            Event::Client(c) => self.client_next(c),
            Event::NextFault => {
                if self.phase == Phase::Chaos {
                    self.inject_fault();
                    let (lo, hi) = self.plan.fault_gap;
                    let at = self.now + self.between(lo, hi);
                    self.schedule(at, Event::NextFault);
                }
            }
            Event::EndFault(ending) => self.end_fault(ending),
            Event::Restart(id) => self.start(id),
            Event::UndoRemoval { node, life, until } => {
                if until == self.registering_until {
                    self.undo_removal(node, life);
                }
            }
            Event::Kill { node, life } => {
                if self.phase == Phase::Chaos && self.alive(node, life) {
                    self.note(|| format!("fault: crash n{node} while it catches up"));
                    self.crash(node);
                    self.node_down(node);
                    self.count_fault(Fault::Crash);
                }
            }
            Event::Heal => self.heal(),
            Event::Settle => match self.phase {
                Phase::Settling => match self.not_converged() {
                    None => self.start_probes(),
                    Some(_) => self.schedule(self.now + TICK, Event::Settle),
                },
                Phase::Probing => self.check_probes(),
                Phase::Sessions => self.check_sessions(),
                Phase::Chaos | Phase::Done => {}
            },
        }
    }

    fn alive(&self, node: u64, life: u64) -> bool {
        let n = &self.nodes[&node];
        n.proc.is_some() && n.life_no == life
    }

    fn busy(&self, node: u64) -> bool {
        self.nodes[&node].busy_until > self.now
    }

    /// A node busy with its disk takes its next input once the disk is done.
    fn defer_if_busy(&mut self, node: u64, event: Event) -> bool {
        if !self.busy(node) {
            return false;
        }
        let at = self.nodes[&node].busy_until;
        self.schedule(at, event);
        true
    }

    fn proc_mut(&mut self, node: u64) -> Option<&mut Process> {
        self.nodes.get_mut(&node).and_then(|n| n.proc.as_mut())
    }

    /// Hands node `id` one input, runs a round, and handles what the round did.
    fn input(&mut self, id: u64, give: impl FnOnce(&mut RaftNode)) {
        let Some(p) = self.proc_mut(id) else {
            return;
        };
        give(&mut p.node);
        let exit = p.node.round();
        self.after_round(id, exit);
    }

    fn after_round(&mut self, id: u64, exit: Option<Exit>) {
        let busy = self.nodes[&id].fs.take_busy();
        let depart = self.now + busy;
        if busy > 0 {
            self.nodes.get_mut(&id).expect("node exists").busy_until = depart;
        }
        self.send_outbox(id, depart);
        self.check_node(id);
        self.poll_ops(id);
        if let Some(exit) = exit {
            self.on_exit(id, exit);
            return;
        }
        if self.registering.is_some() {
            self.registering_step();
        }
        if self.in_reach.is_some() {
            self.in_reach_step();
        }
        let hold = self.nodes[&id]
            .proc
            .as_ref()
            .and_then(|p| p.node.hold_until().map(|t| (t, p.hold_at)));
        if let Some((t, queued)) = hold {
            let at = self.nanos(t).max(self.now);
            if queued.is_none_or(|q| at < q) {
                let life = self.nodes[&id].life_no;
                if let Some(p) = self.proc_mut(id) {
                    p.hold_at = Some(at);
                }
                self.schedule(at, Event::Hold { node: id, life });
            }
        }
    }

    // ---------------------------------------------------------------- the network

    fn send_outbox(&mut self, id: u64, depart: Nanos) {
        let Some(p) = self.nodes[&id].proc.as_ref() else {
            return;
        };
        let messages = p.net.take_outbox();
        if messages.is_empty() {
            return;
        }
        let life = self.nodes[&id].life_no;
        // Arrival time → messages, per destination, in the order they were sent.
        let mut batches: BTreeMap<(u64, Nanos), Vec<Message>> = BTreeMap::new();
        for m in messages {
            if crate::net::leader_only(&m) && m.from == id {
                self.inv.leads(id, m.term, "it sent a leader's message");
            }
            let to = m.to;
            let snapshot =
                (m.get_msg_type() == MessageType::MsgSnapshot).then(|| SnapshotId::of(&m));
            let fate = self.links.fate(id, to, depart, &mut self.rng);
            self.note(|| format!("n{id} send {} {fate:?}", describe(&m)));
            match fate {
                Fate::Arrives(times) => {
                    for at in times {
                        batches.entry((to, at)).or_default().push(m.clone());
                    }
                }
                Fate::Cut => self.report_failure(id, life, to, snapshot, depart),
                Fate::Lost if snapshot.is_some() => {
                    self.report_failure(id, life, to, snapshot, depart)
                }
                Fate::Lost => {}
            }
        }
        for ((to, at), messages) in batches {
            self.schedule(
                at,
                Event::Deliver {
                    from: id,
                    from_life: life,
                    to,
                    messages,
                },
            );
        }
    }

    /// The sender's peer task notices that `to` could not be reached: raft hears it a little
    /// later (and that `snapshot`, if any, was not delivered).
    fn report_failure(
        &mut self,
        node: u64,
        life: u64,
        to: u64,
        snapshot: Option<SnapshotId>,
        from: Nanos,
    ) {
        let at = from + self.between(50 * MS, 500 * MS);
        self.schedule(
            at,
            Event::Report {
                node,
                life,
                event: PeerEvent::Unreachable(to),
            },
        );
        if let Some(snapshot) = snapshot {
            self.schedule(
                at,
                Event::Report {
                    node,
                    life,
                    event: PeerEvent::SnapshotStatus {
                        peer: to,
                        snapshot,
                        delivered: false,
                    },
                },
            );
        }
    }

    /// Messages arrive at `to`; its peer server admits them or refuses, as the real one does.
    fn deliver(&mut self, from: u64, from_life: u64, to: u64, messages: Vec<Message>) {
        let snapshots: Vec<SnapshotId> = messages
            .iter()
            .filter(|m| m.get_msg_type() == MessageType::MsgSnapshot)
            .map(SnapshotId::of)
            .collect();
        let refusal = self.refusal(from, to, &messages);
        // As the peer server: a sender let in from outside the membership is answered at its
        // URL, renewed with every batch (also one answered 410).
        if !matches!(refusal, Some(Refused::Unreachable))
            && let Some(p) = self.nodes[&to].proc.as_ref()
            && !p.net.is_member(from)
        {
            p.net.note_route_back(from, &self.nodes[&from].url);
        }
        match refusal {
            Some(Refused::Unreachable) => {
                self.note(|| format!("n{to} refuses {} messages from n{from}", messages.len()));
                // One report, as the peer task's: the newest snapshot of the batch.
                self.report_failure(from, from_life, to, snapshots.last().copied(), self.now);
                return;
            }
            Some(Refused::Gone(as_of)) => {
                self.note(|| format!("n{to} answers n{from} 410 Gone (as of {as_of})"));
                let at = self.now + self.between(self.plan.latency.0, self.plan.latency.1);
                self.schedule(
                    at,
                    Event::Report {
                        node: from,
                        life: from_life,
                        event: PeerEvent::RemovedByPeer {
                            peer: to,
                            as_of: Some(as_of),
                        },
                    },
                );
                return;
            }
            None => {}
        }
        if self.busy(to) {
            let at = self.nodes[&to].busy_until;
            self.schedule(
                at,
                Event::Deliver {
                    from,
                    from_life,
                    to,
                    messages,
                },
            );
            return;
        }
        self.note(|| {
            let list: Vec<String> = messages.iter().map(describe).collect();
            format!("n{to} takes {}", list.join(", "))
        });
        if let Some(p) = self.nodes.get_mut(&to).and_then(|n| n.proc.as_mut()) {
            for m in &messages {
                let told = match m.get_msg_type() {
                    MessageType::MsgAppend | MessageType::MsgHeartbeat => m.commit,
                    MessageType::MsgSnapshot => m.get_snapshot().get_metadata().index,
                    _ => 0,
                };
                p.told_commit = p.told_commit.max(told);
            }
        }
        for snapshot in snapshots {
            let at = self.now + self.between(self.plan.latency.0, self.plan.latency.1);
            self.schedule(
                at,
                Event::Report {
                    node: from,
                    life: from_life,
                    event: PeerEvent::SnapshotStatus {
                        peer: to,
                        snapshot,
                        delivered: true,
                    },
                },
            );
        }
        self.input(to, |n| n.on_peer_event(PeerEvent::Step(messages)));
    }

    /// What `to`'s peer server would answer `from`'s batch.
    fn refusal(&mut self, from: u64, to: u64, messages: &[Message]) -> Option<Refused> {
        // Another run of the cluster would be refused (412), which its sender takes as
        // unreachable; but a world is one run, so two nodes that know different incarnations
        // are a bug (a false refusal), not a fault to ride out: said, not hidden as a stall.
        let incarnation = |id: u64| {
            self.nodes[&id]
                .proc
                .as_ref()
                .map_or(0, |p| p.net.incarnation())
        };
        let (sender, ours) = (incarnation(from), incarnation(to));
        if raftexample::transport::of_another_run(ours, sender) {
            let hex = raftexample::incarnation::hex;
            self.violation(format!(
                "node {to}, of incarnation {}, would refuse node {from}, of incarnation {}: \
                 two nodes of one run know different incarnations",
                hex(ours),
                hex(sender)
            ));
            return Some(Refused::Unreachable);
        }
        let Some(p) = self.nodes[&to].proc.as_ref() else {
            return Some(Refused::Unreachable);
        };
        if p.net.cluster_id() == 0 {
            return Some(Refused::Unreachable);
        }
        let removed = p.net.removed_as_of(from);
        let settled = p.shared.is_membership_settled();
        if let Some(as_of) = gone_as_of(removed, settled, messages) {
            return Some(Refused::Gone(as_of));
        }
        if !p.net.is_member(from) && removed.is_none() {
            let leader = p.shared.leader.load(Ordering::Acquire);
            if leader != 0 && leader != from {
                return Some(Refused::Unreachable);
            }
        }
        None
    }

    /// A joining node asks the members it can reach whether it was added at its URL, and
    /// weighs their answers: each member answers as its peer server would
    /// ([`MemberView::answer`], from what its network and shared state hold), and the round is
    /// weighed as `transport::join::Lookup` weighs one ([`Round`]).
    fn join_lookup(&mut self, node: u64, life: u64) {
        if !self.alive(node, life) {
            return;
        }
        let url = self.nodes[&node].url.clone();
        let mut round = Round::new(node);
        let mut settled = None;
        // The members it reaches that count it as running since its latest addition, read
        // from their state, not from their answers: none may let it in.
        let mut knew = Vec::new();
        for (id, n) in &self.nodes {
            let Some(p) = n.proc.as_ref() else { continue };
            if *id == node || self.links.is_cut(node, *id) || self.links.is_cut(*id, node) {
                continue;
            }
            // From its table or its log: either way a member that says so must doubt it.
            let facts = p.shared.join_facts();
            if facts.running.contains_key(&node) || facts.logged.contains_key(&node) {
                knew.push(*id);
            }
            if settled.is_some() {
                continue;
            }
            let view = MemberView::new(
                *id,
                (p.net.cluster_id(), p.net.incarnation()),
                p.net.member_url(node),
                &p.shared,
                node,
            );
            if let Ok(answer) = view.answer(node, &url) {
                settled = round.take(*id, &answer);
            }
        }
        match settled.unwrap_or_else(|| round.end()) {
            Verdict::Admitted {
                member,
                cluster,
                seen,
                incarnation,
            } => {
                if let Some(since) = self.nodes[&node].wiped
                    && self.inv.last_change(node) == since
                {
                    if knew.is_empty() {
                        // A gap the README names: no member it reached has its registration,
                        // in its table or its log (the node lost its data before the
                        // registration reached a log, or the admitters lag behind a change).
                        self.stats.wiped_admitted += 1;
                        self.note(|| {
                            format!("n{node}, wiped, admitted: no member it reached knew it ran")
                        });
                        // A member like any other from now on.
                        let n = self.nodes.get_mut(&node).expect("node exists");
                        n.admitted_after_wipe = n.wiped.take();
                    } else {
                        self.violation(format!(
                            "node {node} was admitted by node {member} after its folders were \
                             wiped while it was a voter, not removed, although nodes {knew:?}, \
                             which it asked, count it as running since its latest addition: it \
                             lost the votes it cast and the entries it acknowledged"
                        ));
                    }
                }
                let p = self.nodes[&node].proc.as_ref().expect("alive");
                p.net.admitted(cluster, seen, incarnation);
                self.note(|| format!("n{node} learned the cluster's identity from n{member}"));
                self.after_admission(node);
            }
            Verdict::Refused(reason) => {
                self.note(|| format!("n{node} is refused: {reason}"));
                // As the transport's lookup task: the node stops on it.
                self.input(node, |n| n.on_peer_event(PeerEvent::JoinRefused(reason)));
            }
            Verdict::NotYet(_) => {
                self.schedule(self.now + TICK, Event::JoinLookup { node, life });
            }
        }
    }

    // ---------------------------------------------------------------- nodes

    /// Starts node `id` from its disk (a restart, or a first start).
    fn start(&mut self, id: u64) {
        let node = self.nodes.get_mut(&id).expect("node exists");
        if node.proc.is_some() || node.life == Life::Removed {
            return;
        }
        node.fs.disk().power_on();
        node.fs.disk().fail_syncs(0);
        node.fs.disk().set_capacity(None);
        node.fs.take_busy();
        node.fs.take_failures();
        let config = node.config.clone();
        let fs: raftexample::disk::SharedFs = Arc::new(node.fs.clone());
        let flip = node.flip.take();
        self.stats.starts += 1;
        // As `raftexample::start`: a member of the first cluster on an empty data dir asks the
        // others first whether its id has run (the ones it reaches answer in time here).
        let empty = !raftexample::wal::Wal::exists_on(&node.fs, &config.wal_dir());
        let started = if !config.join && empty && config.cluster.len() > 1 {
            self.before_bootstrap(id).map_err(StartError::LostData)
        } else {
            Ok(())
        };
        let started =
            started
                .and_then(|()| replay_wal_on(&config, fs))
                .and_then(|mut recovered| {
                    let storage = recovered.storage.clone();
                    let snapshot_index = recovered.snapshot_index;
                    let kv = KvStore::new(std::mem::take(&mut recovered.kv), snapshot_index);
                    let (net, handle) =
                        node_network(id, recovered.cluster_id, storage.snapshotter().clone());
                    let shared = Arc::new(Shared::default());
                    let metrics = Arc::new(Metrics::new(id));
                    let cluster_id = recovered.cluster_id;
                    let env = NodeEnv {
                        clock: self.clock.clone(),
                        seed: self.rng.random(),
                    };
                    let node = RaftNode::new(
                        &config,
                        recovered,
                        Box::new(net),
                        Applier::inline(kv.clone()),
                        shared.clone(),
                        metrics,
                        env,
                    )?;
                    Ok((
                        Process {
                            node,
                            kv,
                            net: handle,
                            shared,
                            storage,
                            applied_seen: u64::MAX,
                            commit_seen: 0,
                            snapshot_seen: 0,
                            told_commit: 0,
                            hold_at: None,
                            uncounted: None,
                        },
                        cluster_id,
                    ))
                });
        match started {
            Ok((proc, cluster_id)) => {
                if let Some(flip) = &flip
                    && flip.synced
                    && !flip.snapshot
                {
                    self.violation(format!(
                        "node {id} started although a byte a completed sync covered was \
                         damaged: {} at offset {}",
                        flip.path.display(),
                        flip.offset
                    ));
                }
                if cluster_id != 0 {
                    self.cluster_id = cluster_id;
                }
                let joining = cluster_id == 0;
                let node = self.nodes.get_mut(&id).expect("node exists");
                node.proc = Some(proc);
                node.life_no += 1;
                node.life = Life::Up;
                node.expect_fatal = false;
                node.lost_power = false;
                node.busy_until = self.now;
                let life = node.life_no;
                self.note(|| format!("n{id} started"));
                self.schedule(self.now, Event::Tick { node: id, life });
                if joining {
                    self.schedule(self.now + TICK, Event::JoinLookup { node: id, life });
                }
            }
            Err(StartError::LostData(why)) if self.nodes[&id].wiped.is_some() => {
                self.wiped_refused(id, &why)
            }
            Err(err) => self.refused(id, err, flip),
        }
    }

    /// What the members node `id` reaches answer a member of the first cluster about to start
    /// on an empty data dir ([`join::before_bootstrap`]).
    fn before_bootstrap(&self, id: u64) -> Result<(), String> {
        let url = self.nodes[&id].url.clone();
        let answers: Vec<_> = self
            .nodes
            .iter()
            .filter(|(m, _)| {
                **m != id && !self.links.is_cut(id, **m) && !self.links.is_cut(**m, id)
            })
            .filter_map(|(m, n)| {
                let p = n.proc.as_ref()?;
                let known = (p.net.cluster_id(), p.net.incarnation());
                let view = MemberView::new(*m, known, p.net.member_url(id), &p.shared, id);
                Some((*m, view.answer(id, &url).ok()?))
            })
            .collect();
        join::before_bootstrap(id, &url, &answers)
    }

    /// Node `id`, whose folders were wiped while it was a voter, was refused, as it must be:
    /// the reason must say to remove the id and add it back, and the operator does so (the
    /// removal now, through a running voter; an addition, as for any removed id, when a later
    /// membership change draws it). Until the removal commits it is not started again but to
    /// converge (see `not_converged`), and is refused again.
    fn wiped_refused(&mut self, id: u64, why: &str) {
        if why.contains(&join::add_back(id, &self.nodes[&id].url)) {
            self.stats.wiped_refused += 1;
        } else {
            self.violation(format!(
                "node {id}, wiped while a voter, was refused without being told to remove the \
                 id and add it back: {why}"
            ));
        }
        self.nodes.get_mut(&id).expect("node exists").life = Life::Removed;
        let voters = self.voters();
        let via = self
            .running()
            .into_iter()
            .find(|v| voters.contains(v) && *v != id);
        if let Some(via) = via {
            self.changes_sent += 1;
            self.note(|| format!("admin: remove n{id}, refused after its wipe, via n{via}"));
            self.ask_change(via, MemberChange::Remove { id }, false, Vec::new());
        }
    }

    /// Node `id` refused to start: right only if a byte a completed sync covered was damaged,
    /// and then the error names the file and the offset.
    fn refused(&mut self, id: u64, err: StartError, flip: Option<Flip>) {
        let text = err.to_string();
        self.note(|| format!("n{id} refuses to start: {text}"));
        let Some(flip) = flip else {
            self.violation(format!("node {id} refused to start: {text}"));
            return self.node_down(id);
        };
        let named = text.contains(&flip.path.display().to_string());
        let precise = match &err {
            StartError::Wal(raftexample::wal::Error::Corrupt { path, offset, .. }) => {
                *path == flip.path && *offset <= flip.offset
            }
            // A damaged snapshot is named by the snapshotter's error, or, when the load passed
            // over it and the WAL then lacks what it covered, beside the WAL's complaint.
            StartError::Snapshot(_) | StartError::Damaged(_) | StartError::Inconsistent(_) => {
                flip.snapshot && named
            }
            _ => false,
        };
        if !flip.synced && !flip.snapshot {
            self.violation(format!(
                "node {id} refused to start over a byte no completed sync covered ({} at \
                 offset {}): {text}",
                flip.path.display(),
                flip.offset
            ));
        } else if !precise {
            self.violation(format!(
                "node {id} refused to start over a byte flipped at {} offset {}, but the \
                 error does not name that file and an offset at or before it: {text}",
                flip.path.display(),
                flip.offset
            ));
        } else {
            self.stats.refusals += 1;
        }
        // The operator restores the file from a backup, and starts the node again.
        self.undo_flip(id, &flip, &text);
        self.node_down(id);
    }

    /// Restores the file of `flip`, in place (a refused start leaves the folder as it found
    /// it) or from where the refusal `text` says a start set it aside: `<name>.broken`, or
    /// `<name>.2.broken` when an earlier start had set a copy aside already (the copy at
    /// `.broken` is then an older one; flipping the byte back in it, as this did, damaged it
    /// and put it back as the newest file: seed 12707498).
    fn undo_flip(&mut self, id: u64, flip: &Flip, text: &str) {
        use raftexample::disk::FileSystem;
        let disk = self.nodes[&id].fs.disk().clone();
        // "(set aside as <path>)" or "; set aside as <path> by an earlier start ...".
        let said = format!("set aside as {}", flip.path.display());
        let broken = match text.find(&said) {
            Some(at) => {
                let rest = &text[at + "set aside as ".len()..];
                let end = rest.find([')', ' ']).unwrap_or(rest.len());
                PathBuf::from(&rest[..end])
            }
            None => {
                let mut broken = flip.path.clone().into_os_string();
                broken.push(".broken");
                PathBuf::from(broken)
            }
        };
        let fixed = if disk.exists(&flip.path).unwrap_or(false) {
            disk.flip_byte(&flip.path, flip.offset, flip.mask)
        } else {
            disk.flip_byte(&broken, flip.offset, flip.mask)
                .and_then(|()| {
                    disk.rename(&broken, &flip.path)?;
                    disk.sync_dir(raftexample::disk::parent_dir(&flip.path))
                })
        };
        if let Err(e) = fixed {
            self.violation(format!(
                "cannot undo the flip of {} at {}: {e}",
                flip.path.display(),
                flip.offset
            ));
        }
    }

    /// Node `id` is down: it is started again a little later.
    fn node_down(&mut self, id: u64) {
        let node = self.nodes.get_mut(&id).expect("node exists");
        node.life = Life::Down;
        let at = self.now + self.rng.random_range(0..=self.plan.restart_within);
        self.schedule(at, Event::Restart(id));
    }

    /// Power loss of node `id` now: its process dies, and its disk keeps, drops or tears
    /// every write since its last completed sync.
    fn power_off(&mut self, id: u64) {
        self.crash(id);
        let node = self.nodes.get_mut(&id).expect("node exists");
        node.fs.disk().power_loss();
        node.lost_power = true;
        self.node_down(id);
    }

    /// Kills node `id`'s process: its memory is gone, its disk stays as it is.
    fn crash(&mut self, id: u64) {
        let Some(proc) = self.nodes.get_mut(&id).and_then(|n| n.proc.take()) else {
            return;
        };
        drop(proc);
        self.note(|| format!("n{id} crashed"));
        self.poll_ops(id);
    }

    fn on_exit(&mut self, id: u64, exit: Exit) {
        self.note(|| format!("n{id} exits: {exit:?}"));
        let node = &self.nodes[&id];
        let told = node.proc.as_ref().map_or(0, |p| p.told_commit);
        let undone = node.undone_in_life == Some(node.life_no);
        self.crash(id);
        match exit {
            Exit::Removed => {
                match self.inv.last_change(id) {
                    Some((_, Change::Removed)) => {}
                    // Its removal undone while this process ran, and no message it took said
                    // the re-addition committed: it cannot know it is coming back, and goes
                    // once it knows its removal committed, as it must (a leader holding its
                    // own removal back goes too). The operator starts it again: see
                    // `not_converged`.
                    Some((index, Change::Added)) if undone && told < index => {
                        self.note(|| {
                            format!(
                                "n{id} went as removed, told commit {told}: its re-addition at \
                                 {index} came too late for it"
                            )
                        });
                    }
                    Some((index, Change::Added)) => self.violation(format!(
                        "node {id} stopped as removed, but the cluster had added it (back) \
                         at index {index}"
                    )),
                    None => self.violation(format!(
                        "node {id} stopped as removed, but no removal of it was committed"
                    )),
                }
                self.nodes.get_mut(&id).expect("node exists").life = Life::Removed;
            }
            // Refused after its wipe (a disk fault injected since may stop it too).
            Exit::Fatal(why)
                if self.nodes[&id].wiped.is_some() && !self.nodes[&id].expect_fatal =>
            {
                self.wiped_refused(id, &why);
            }
            // Refused after an admission through a gap, on an empty data dir again: the wiped
            // voter it still is (no change of it took effect since), refused at last.
            Exit::Fatal(why)
                if !self.nodes[&id].expect_fatal
                    && why.contains(&join::add_back(id, &self.nodes[&id].url))
                    && self.nodes[&id]
                        .admitted_after_wipe
                        .is_some_and(|since| self.inv.last_change(id) == since) =>
            {
                let node = self.nodes.get_mut(&id).expect("node exists");
                node.wiped = node.admitted_after_wipe.take();
                self.note(|| format!("n{id}, admitted after its wipe, is refused at last"));
                self.wiped_refused(id, &why);
            }
            Exit::Fatal(why) => {
                let node = self.nodes.get_mut(&id).expect("node exists");
                if !node.expect_fatal {
                    self.violation(format!("node {id} stopped on its own: {why}"));
                }
                let node = self.nodes.get_mut(&id).expect("node exists");
                if node.fs.disk().is_off() {
                    node.lost_power = true;
                } else if self.rng.random_bool(0.5) {
                    // After a failed fsync the kernel may have dropped the dirty pages.
                    node.fs.disk().power_loss();
                    node.lost_power = true;
                }
                self.node_down(id);
            }
            Exit::Shutdown => {
                self.violation(format!("node {id} shut down although nobody asked it to"));
                self.node_down(id);
            }
        }
    }

    // ---------------------------------------------------------------- checks after a round

    fn check_node(&mut self, id: u64) {
        let keys = self.plan.keys.clone();
        let Some(p) = self.nodes.get_mut(&id).and_then(|n| n.proc.as_mut()) else {
            return;
        };
        let (commit, term) = {
            let core = p.storage.mem.rl();
            (core.hard_state().commit, core.hard_state().term)
        };
        let mut committed = Vec::new();
        let first = p.storage.mem.first_index().unwrap_or(1);
        let from = (p.commit_seen + 1).max(first);
        if from <= commit {
            committed = p
                .storage
                .mem
                .entries(from, commit + 1, NO_LIMIT, GetEntriesContext::empty(false))
                .unwrap_or_default();
        }
        p.commit_seen = p.commit_seen.max(commit);
        let snapshot = p
            .storage
            .latest_snapshot()
            .filter(|m| m.index != p.snapshot_seen);
        if let Some(m) = &snapshot {
            p.snapshot_seen = m.index;
        }
        let leads = p.shared.leader.load(Ordering::Acquire) == id;
        let applied = p.kv.applied_index();
        let digest = (applied != p.applied_seen).then(|| {
            p.applied_seen = applied;
            state_digest(&p.kv, &keys, p.node.sessions())
        });
        let membership = digest.is_some().then(|| {
            let mut voters = p
                .storage
                .mem
                .initial_state()
                .map(|s| s.conf_state.voters)
                .unwrap_or_default();
            voters.sort_unstable();
            let urls: Vec<(u64, String)> = voters
                .iter()
                .filter_map(|v| {
                    if *v == id {
                        Some((id, url_of(id)))
                    } else {
                        p.net.member_url(*v).map(|url| (*v, url))
                    }
                })
                .collect();
            (voters, urls)
        });
        if let Some((voters, _)) = &membership {
            let own = p.node.sessions().origins().get(&id).copied();
            let counted = p.counts_running(id);
            if counted && p.uncounted.take().is_some() {
                self.stats.sessions_renewed += 1;
            } else if !counted && own.is_some() && voters.contains(&id) {
                p.uncounted = own;
            }
        }
        self.inv.committed(id, &committed);
        if let Some(m) = snapshot {
            self.stats.snapshots += 1;
            self.inv.snapshot(id, m.index, m.term);
        }
        if leads {
            self.inv.leads(id, term, "it says it leads");
        }
        if let Some(digest) = digest {
            self.inv.state(id, applied, digest);
        }
        if let Some((voters, urls)) = membership {
            self.inv.membership(id, applied, voters, &urls);
        }
    }

    // ---------------------------------------------------------------- clients

    fn client_next(&mut self, client: usize) {
        if self.phase != Phase::Chaos {
            return;
        }
        let known: Vec<u64> = self
            .nodes
            .iter()
            .filter(|(_, n)| n.life != Life::Unborn)
            .map(|(id, _)| *id)
            .collect();
        let node = known[self.rng.random_range(0..known.len())];
        let key = self.plan.keys[self.rng.random_range(0..self.plan.keys.len())].clone();
        let is_put = self.rng.random_bool(self.plan.put_ratio);
        let stale = !is_put && self.rng.random_bool(self.plan.stale_ratio);
        let kind = if is_put {
            self.client_seq[client] += 1;
            OpKind::Put {
                value: format!("c{client}-{}", self.client_seq[client]),
            }
        } else {
            OpKind::Get
        };
        let invoke = self.stamp();
        let pending = Pending {
            client,
            node,
            key: key.clone(),
            kind: kind.clone(),
            invoke,
        };
        self.note(|| format!("client {client} asks n{node}: {kind:?} {key}"));
        let Some(p) = self.proc_mut(node) else {
            // Connection refused: never sent.
            let done = self.stamp();
            let record = pending.finish(
                done,
                Outcome::Failed,
                Some(Why::Refused(format!("node {node} is down"))),
            );
            return self.record(client, record, stale, RECONNECT);
        };
        if stale {
            let value = p.kv.get(&key).map(|v| short_value(&v));
            let done = self.stamp();
            let outcome = value.map_or(Outcome::NotFound, Outcome::Value);
            let record = pending.finish(done, outcome, None);
            return self.record(client, record, true, 0);
        }
        let (tx, rx) = oneshot::channel();
        let wait = match kind {
            OpKind::Put { .. } => self.short_wait(),
            OpKind::Get => None,
        };
        let request = match &kind {
            OpKind::Put { value } => {
                let mut value = value.clone().into_bytes();
                if self.plan.value_padding > 0 {
                    // Not UTF-8, of the same length as the dots it replaces: the values of
                    // these schedules go through the log, snapshots and their installs as any
                    // bytes a client may PUT.
                    value.extend_from_slice(b".\xff");
                    value.extend_from_slice(&b".".repeat(self.plan.value_padding - 1));
                }
                Request::Propose {
                    data: Command::Put {
                        key,
                        value: value.into(),
                    }
                    .encode(),
                    wait,
                    done: tx,
                }
            }
            OpKind::Get => Request::Read(tx),
        };
        self.ops.push(InFlight {
            pending: Some(pending),
            change: None,
            short: wait.is_some(),
            overlapped: false,
            pairs: Vec::new(),
            node,
            rx,
        });
        self.ask(node, request);
    }

    /// Hands a request to a running node, once its disk is done with the last round.
    fn ask(&mut self, node: u64, request: Request) {
        if self.busy(node) {
            let at = self.nodes[&node].busy_until;
            let life = self.nodes[&node].life_no;
            self.schedule(
                at,
                Event::Ask {
                    node,
                    life,
                    request,
                },
            );
            return;
        }
        self.input(node, |n| n.on_request(request));
    }

    /// Records a finished operation; the client's next comes after its think time, and no
    /// sooner than `min_think`.
    fn record(&mut self, client: usize, record: Recorded, stale: bool, min_think: Nanos) {
        self.note(|| format!("client {client} done: {:?}", record.op.outcome));
        self.stats.operations += 1;
        if record.op.outcome == Outcome::Unknown {
            self.stats.unknown += 1;
        }
        if stale {
            self.stale.push(record);
        } else {
            self.history.push(record);
        }
        if self.phase == Phase::Chaos {
            let think = self
                .rng
                .random_range(0..=self.plan.max_think)
                .max(min_think);
            self.schedule(self.now + think, Event::Client(client));
        }
    }

    /// Collects the answers node `id` gave (or, if it is gone, the requests it will never
    /// answer).
    fn poll_ops(&mut self, id: u64) {
        let mut i = 0;
        while i < self.ops.len() {
            if self.ops[i].node != id {
                i += 1;
                continue;
            }
            let answer = match self.ops[i].rx.try_recv() {
                Ok(answer) => Some(answer),
                Err(oneshot::error::TryRecvError::Empty) => None,
                Err(oneshot::error::TryRecvError::Closed) => {
                    Some(Err(ProposalError::Stopped(Stop::Clean)))
                }
            };
            let Some(answer) = answer else {
                i += 1;
                continue;
            };
            let op = self.ops.swap_remove(i);
            self.answered(op, answer);
        }
    }

    fn answered(&mut self, op: InFlight, answer: Result<(), ProposalError>) {
        if op.short {
            let what = if op.change.is_some() {
                "membership changes"
            } else {
                "PUTs"
            };
            let label = answer.as_ref().err().map_or("ok", ProposalError::reason);
            *self.stats.short_waits.entry((what, label)).or_default() += 1;
        }
        if let Some(change) = op.change {
            self.note(|| format!("admin: {change:?} via n{}: {answer:?}", op.node));
            if let Err(err) = &answer
                && err.will_not_happen()
            {
                let key = change_key(op.node, &change);
                *self.changes_refused.entry(key).or_default() += 1;
            }
            if op.overlapped {
                let label = change_answer(&answer);
                *self.stats.overlapped_answers.entry(label).or_default() += 1;
            }
            // Only a yes: a node that is behind may answer "already a member" from a view in
            // which the removal has not happened yet, and nothing was proposed then. (An
            // addition that commits although its answer was lost is started once the faults
            // end: see `not_converged`.)
            if answer.is_ok() {
                self.stats.member_changes += 1;
                // The same change sent twice at once can take effect only once: once one has,
                // the other no longer makes sense (or was checked against voters that are no
                // longer those), and must answer 409. Judged only while no change was sent
                // after the pair (one could undo the first, and the second then hold again).
                let latest = self.changes_sent;
                for pair in op.pairs.iter().filter(|p| **p == latest) {
                    match self.pair_ok.get(pair) {
                        Some(first) if *first == change => self.violation(format!(
                            "{change:?} was sent twice at once, through two nodes, and both \
                             answered 204: only one can have taken effect"
                        )),
                        Some(_) => {}
                        None => {
                            self.pair_ok.insert(*pair, change.clone());
                        }
                    }
                }
                if let MemberChange::Add { id, .. } = change {
                    if self.nodes[&id].proc.is_some() {
                        // It runs already: started as a member once the faults ended (see
                        // `not_converged`).
                        return;
                    }
                    self.nodes.get_mut(&id).expect("node exists").life = Life::Down;
                    self.start(id);
                    if self.plan.kind == Kind::ReAdd && self.rng.random_bool(0.5) {
                        // Killed while it catches up: it starts again from a log that ends
                        // somewhere between its removal and its re-addition.
                        let at = self.now + self.between(10 * MS, 300 * MS);
                        let life = self.nodes[&id].life_no;
                        self.schedule(at, Event::Kill { node: id, life });
                    }
                }
            }
            return;
        }
        let Some(pending) = op.pending else {
            return;
        };
        let client = pending.client;
        let cut =
            matches!(answer, Err(ProposalError::Stopped(_))) && self.nodes[&op.node].proc.is_none();
        let done = self.stamp();
        let (outcome, why) = match (&pending.kind, answer) {
            (_, Err(_)) if cut => (
                Outcome::Unknown,
                Some(Why::Cut(format!("node {} went down", op.node))),
            ),
            (OpKind::Put { .. }, answer) => put_outcome(answer),
            (OpKind::Get, Ok(())) => {
                let value = self.nodes[&op.node]
                    .proc
                    .as_ref()
                    .and_then(|p| p.kv.get(&pending.key))
                    .map(|v| short_value(&v));
                (value.map_or(Outcome::NotFound, Outcome::Value), None)
            }
            (OpKind::Get, Err(err)) => (Outcome::Failed, Some(Why::Status(503, err.to_string()))),
        };
        let record = pending.finish(done, outcome, why);
        self.record(client, record, false, 0);
    }

    // ---------------------------------------------------------------- membership

    /// The voters as the most advanced running node knows them.
    fn voters(&self) -> Vec<u64> {
        self.nodes
            .values()
            .filter_map(|n| n.proc.as_ref())
            .max_by_key(|p| p.kv.applied_index())
            .and_then(|p| p.storage.mem.initial_state().ok())
            .map(|s| s.conf_state.voters)
            .unwrap_or_default()
    }

    fn running(&self) -> Vec<u64> {
        self.nodes
            .iter()
            .filter(|(_, n)| n.proc.is_some())
            .map(|(id, _)| *id)
            .collect()
    }

    /// A membership change through a random running node: a removal (the leader half the
    /// time), a removed node added back, or a new one. Sometimes two at once, through two
    /// nodes (or a second while one is in flight): each makes sense against the voters as
    /// they are, but only one may take effect if both were checked against the same voters.
    fn membership_change(&mut self) -> bool {
        if self.in_reach.is_some() {
            // The episode sends its own changes; another would undo what it builds.
            return false;
        }
        let in_flight = self.ops.iter().filter(|op| op.change.is_some()).count();
        if in_flight >= 2 || (in_flight == 1 && !self.rng.random_bool(SECOND_CHANGE)) {
            return false;
        }
        if !self.send_change() {
            return false;
        }
        if in_flight == 0 && self.rng.random_bool(TWO_CHANGES_AT_ONCE) {
            self.send_change();
        }
        true
    }

    /// Sends one membership change (see [`membership_change`](Self::membership_change)); a
    /// second one goes through another node than the first, if another runs, and adds the
    /// id the first adds some of the time.
    fn send_change(&mut self) -> bool {
        let running = self.running();
        if running.is_empty() {
            return false;
        }
        let first = self
            .ops
            .iter()
            .find(|op| op.change.is_some())
            .map(|op| (op.node, op.change.clone()));
        let voters = self.voters();
        let gone: Vec<u64> = self
            .nodes
            .iter()
            .filter(|(id, n)| {
                matches!(n.life, Life::Removed | Life::Unborn) && !voters.contains(id)
            })
            .map(|(id, _)| *id)
            .collect();
        // A removed id more often than a new one: adding an old id back is where bugs were.
        let removed: Vec<u64> = gone
            .iter()
            .copied()
            .filter(|id| self.nodes[id].life == Life::Removed)
            .collect();
        let gone = if !removed.is_empty() && self.rng.random_bool(0.7) {
            removed
        } else {
            gone
        };
        // An operator undoing a removal at once (`DELETE` by mistake, `POST` back): an id
        // removed whose process has not stopped yet (cut off, it may not know), added back
        // at its URL, its data kept. Drawn only when there is one, so that other schedules
        // stay as they were.
        let lingering: Vec<u64> = running
            .iter()
            .copied()
            .filter(|id| !voters.contains(id))
            .collect();
        if !lingering.is_empty() && first.is_none() && self.rng.random_bool(UNDO_REMOVAL) {
            let id = lingering[self.rng.random_range(0..lingering.len())];
            let via = voters
                .iter()
                .copied()
                .find(|v| running.contains(v))
                .unwrap_or(id);
            self.add_back(id, via);
            return true;
        }
        // The id the change in flight adds, if it adds one that can still be added.
        let adding = match &first {
            Some((_, Some(MemberChange::Add { id, .. }))) if gone.contains(id) => Some(*id),
            _ => None,
        };
        let change = if !gone.is_empty() && (voters.len() < 3 || self.rng.random_bool(0.6)) {
            let id = match adding {
                Some(id) if self.rng.random_bool(0.4) => id,
                _ => gone[self.rng.random_range(0..gone.len())],
            };
            // The operator's way back in: wipe the node's folders, add it, start it with
            // --join (see `answered`). (Not running: an addition in flight has not been
            // answered yet, and the node is started only once it is.)
            let node = self.nodes.get_mut(&id).expect("node exists");
            node.fs = SimFs::new(self.rng.random(), self.plan.sync_cost);
            node.wiped = None;
            node.admitted_after_wipe = None;
            node.config.join = true;
            node.config.cluster = (1..=self.plan.max_id).map(url_of).collect();
            node.flip = None;
            MemberChange::Add {
                id,
                url: url_of(id),
            }
        } else if voters
            .iter()
            .filter(|v| self.nodes[v].wiped.is_none())
            .count()
            >= 3
        {
            // (A wiped voter does not count: two voters, one of them wiped, have no quorum
            // left to remove it by.)
            let leader = running
                .iter()
                .find(|id| {
                    self.nodes[id]
                        .proc
                        .as_ref()
                        .is_some_and(|p| p.shared.leader.load(Ordering::Acquire) == **id)
                })
                .copied();
            let id = match leader {
                Some(l) if self.rng.random_bool(0.5) => l,
                _ => voters[self.rng.random_range(0..voters.len())],
            };
            if running.contains(&id) && self.rng.random_bool(REMOVE_UNREACHABLE) {
                let faults = self.cut_off(id);
                let lasting = self.between(SECOND, 3 * SECOND);
                self.note(|| format!("fault: n{id} cut off from the others, to be removed"));
                self.link_fault(faults, lasting);
            }
            MemberChange::Remove { id }
        } else {
            return false;
        };
        let others: Vec<u64> = running
            .iter()
            .copied()
            .filter(|id| first.as_ref().is_none_or(|(via, _)| via != id))
            .collect();
        let choices = if others.is_empty() { &running } else { &others };
        let via = choices[self.rng.random_range(0..choices.len())];
        let overlapped = first.is_some();
        self.changes_sent += 1;
        let sent_no = self.changes_sent;
        let mut pairs = Vec::new();
        if overlapped {
            self.stats.concurrent_changes += 1;
            self.note(|| format!("admin: {change:?} via n{via}, while another is in flight"));
            for op in self.ops.iter_mut().filter(|op| op.change.is_some()) {
                op.overlapped = true;
                op.pairs.push(sent_no);
            }
            pairs.push(sent_no);
        } else {
            self.note(|| format!("admin: {change:?} via n{via}"));
        }
        // Only these: the episodes' own changes must go through for the episode to go on.
        let wait = self.short_wait();
        self.ask_change_within(via, change, overlapped, pairs, wait);
        true
    }

    /// Sends `change` through node `via`, and follows its answer as an operation in flight.
    fn ask_change(&mut self, via: u64, change: MemberChange, overlapped: bool, pairs: Vec<u64>) {
        self.ask_change_within(via, change, overlapped, pairs, None);
    }

    /// [`ask_change`](Self::ask_change), the node to answer within `wait` (`None`: the
    /// proposal timeout).
    fn ask_change_within(
        &mut self,
        via: u64,
        change: MemberChange,
        overlapped: bool,
        pairs: Vec<u64>,
        wait: Option<Duration>,
    ) {
        let (tx, rx) = oneshot::channel();
        *self
            .changes_asked
            .entry(change_key(via, &change))
            .or_default() += 1;
        self.ops.push(InFlight {
            pending: None,
            change: Some(change.clone()),
            short: wait.is_some(),
            overlapped,
            pairs,
            node: via,
            rx,
        });
        self.ask(
            via,
            Request::ChangeMembers {
                change,
                checked_voters: None,
                wait,
                done: tx,
            },
        );
    }

    // ---------------------------------------------------------------- faults

    fn pick_node(&mut self, prefer_leader: bool) -> Option<u64> {
        let running = self.running();
        if running.is_empty() {
            return None;
        }
        if prefer_leader && self.rng.random_bool(0.5) {
            let leader = running.iter().copied().find(|id| {
                self.nodes[id]
                    .proc
                    .as_ref()
                    .is_some_and(|p| p.shared.leader.load(Ordering::Acquire) == *id)
            });
            if leader.is_some() {
                return leader;
            }
        }
        Some(running[self.rng.random_range(0..running.len())])
    }

    fn link_fault(&mut self, links: Vec<(u64, u64, LinkFault)>, lasting: Nanos) {
        let id = self.next_fault_id;
        self.next_fault_id += 1;
        self.link_faults.insert(id, links);
        self.apply_link_faults();
        self.schedule(self.now + lasting, Event::EndFault(Ending::Links(id)));
    }

    fn apply_link_faults(&mut self) {
        self.links.heal();
        for faults in self.link_faults.values() {
            for (a, b, f) in faults {
                let link = self.links.fault_mut(*a, *b);
                link.cut |= f.cut;
                link.delay = link.delay.max(f.delay);
                link.jitter = link.jitter.max(f.jitter);
                link.duplicate = link.duplicate.max(f.duplicate);
                link.loss = link.loss.max(f.loss);
                link.mute |= f.mute;
            }
        }
    }

    /// Cuts on every link between node `id` and every other id, both ways.
    fn cut_off(&self, id: u64) -> Vec<(u64, u64, LinkFault)> {
        let rest: Vec<u64> = (1..=self.plan.max_id).filter(|i| *i != id).collect();
        let cut = LinkFault {
            cut: true,
            ..Default::default()
        };
        Self::pairs(&[id], &rest)
            .into_iter()
            .chain(Self::pairs(&rest, &[id]))
            .map(|(a, b)| (a, b, cut.clone()))
            .collect()
    }

    /// Every directed link between distinct nodes of `a` and `b`.
    fn pairs(a: &[u64], b: &[u64]) -> Vec<(u64, u64)> {
        let mut out = Vec::new();
        for x in a {
            for y in b {
                if x != y {
                    out.push((*x, *y));
                }
            }
        }
        out
    }

    fn inject_fault(&mut self) {
        match self.plan.kind {
            Kind::ReadsAcrossRestarts => return self.slow_reader_fault(),
            Kind::ProposedAgain => return self.cut_from_leader(),
            Kind::AddedBackWhileRegistering | Kind::RemovedWhileRenewing => {
                return self.remove_while_registering();
            }
            Kind::Mixed | Kind::ReAdd => {}
        }
        if self.plan.kind == Kind::Mixed
            && self.wipe_rng.random_bool(WIPE_VOTER)
            && self.wipe_voter()
        {
            return;
        }
        if self.plan.kind == Kind::Mixed
            && self.mute_rng.random_bool(REMOVED_IN_REACH)
            && self.removed_in_reach()
        {
            return;
        }
        let kind = self.plan.faults[self.rng.random_range(0..self.plan.faults.len())];
        let lasting = self.between(200 * MS, 3 * SECOND);
        let ids: Vec<u64> = (1..=self.plan.max_id).collect();
        let injected = match kind {
            Fault::Delay | Fault::Reorder | Fault::Duplicate | Fault::Loss => {
                // Some nodes' links, both ways.
                let some: Vec<u64> = ids
                    .iter()
                    .copied()
                    .filter(|_| self.rng.random_bool(0.5))
                    .collect();
                let mut faults = Vec::new();
                for (a, b) in Self::pairs(&some, &ids)
                    .into_iter()
                    .chain(Self::pairs(&ids, &some))
                {
                    let mut f = LinkFault::default();
                    match kind {
                        Fault::Delay => f.delay = self.between(10 * MS, 800 * MS),
                        Fault::Reorder => f.jitter = self.between(5 * MS, 600 * MS),
                        Fault::Duplicate => f.duplicate = self.rng.random_range(0.05..0.4),
                        _ => f.loss = self.rng.random_range(0.05..0.6),
                    }
                    faults.push((a, b, f));
                }
                self.link_fault(faults, lasting);
                true
            }
            Fault::Partition => {
                let Some(victim) = self.pick_node(true) else {
                    return;
                };
                let side: Vec<u64> = if self.plan.nodes == 5 && self.rng.random_bool(0.5) {
                    // A minority of two, the victim among them.
                    let other = ids[self.rng.random_range(0..ids.len())];
                    vec![victim, other]
                } else {
                    vec![victim]
                };
                let rest: Vec<u64> = ids.iter().copied().filter(|i| !side.contains(i)).collect();
                let cut = LinkFault {
                    cut: true,
                    ..Default::default()
                };
                let faults = Self::pairs(&side, &rest)
                    .into_iter()
                    .chain(Self::pairs(&rest, &side))
                    .map(|(a, b)| (a, b, cut.clone()))
                    .collect();
                self.note(|| format!("fault: partition {side:?} | {rest:?}"));
                self.link_fault(faults, lasting);
                true
            }
            Fault::OneWay => {
                let Some(victim) = self.pick_node(true) else {
                    return;
                };
                let others: Vec<u64> = ids.iter().copied().filter(|i| *i != victim).collect();
                let cut = LinkFault {
                    cut: true,
                    ..Default::default()
                };
                let links = match self.rng.random_range(0..3) {
                    0 => Self::pairs(&[victim], &others),
                    1 => Self::pairs(&others, &[victim]),
                    _ => {
                        let other = others[self.rng.random_range(0..others.len())];
                        vec![(victim, other)]
                    }
                };
                self.note(|| format!("fault: one-way cut {links:?}"));
                let faults = links
                    .into_iter()
                    .map(|(a, b)| (a, b, cut.clone()))
                    .collect();
                self.link_fault(faults, lasting);
                true
            }
            Fault::Crash => {
                let Some(victim) = self.pick_node(true) else {
                    return;
                };
                self.note(|| format!("fault: crash n{victim}"));
                self.crash(victim);
                self.node_down(victim);
                true
            }
            Fault::PowerLoss => {
                let Some(victim) = self.pick_node(true) else {
                    return;
                };
                let node = self.nodes.get_mut(&victim).expect("node exists");
                if self.rng.random_bool(0.5) {
                    self.note(|| format!("fault: power loss n{victim}"));
                    self.power_off(victim);
                } else {
                    // In the middle of one of its next disk operations.
                    let ops = self.rng.random_range(0..40);
                    node.fs.disk().power_loss_after(ops);
                    node.expect_fatal = true;
                    self.note(|| format!("fault: power loss n{victim} after {ops} disk ops"));
                    self.schedule(
                        self.now + lasting,
                        Event::EndFault(Ending::PowerLossDue(victim)),
                    );
                }
                true
            }
            Fault::PowerLossAll => {
                self.note(|| "fault: power loss of every node".to_string());
                for id in self.running() {
                    self.power_off(id);
                }
                true
            }
            Fault::Eio => {
                let Some(victim) = self.pick_node(true) else {
                    return;
                };
                let n = self.rng.random_range(1..=3);
                let node = self.nodes.get_mut(&victim).expect("node exists");
                node.fs.disk().fail_syncs(n);
                node.expect_fatal = true;
                self.note(|| format!("fault: the next {n} syncs of n{victim} fail"));
                true
            }
            Fault::Enospc => {
                let Some(victim) = self.pick_node(true) else {
                    return;
                };
                let room = self.rng.random_range(0..=4) * 4096;
                let node = self.nodes.get_mut(&victim).expect("node exists");
                let used = node.fs.disk().used_bytes();
                node.fs.disk().set_capacity(Some(used + room));
                node.expect_fatal = true;
                self.note(|| format!("fault: n{victim}'s disk full after {room} more bytes"));
                self.schedule(
                    self.now + lasting,
                    Event::EndFault(Ending::DiskFull(victim)),
                );
                true
            }
            Fault::Corrupt => self.corrupt(),
            Fault::SlowDisk => {
                let Some(victim) = self.pick_node(false) else {
                    return;
                };
                let cost = self.between(20 * MS, 500 * MS);
                self.nodes[&victim].fs.set_sync_cost(cost);
                self.note(|| format!("fault: n{victim}'s syncs take {} ms", cost / MS));
                self.schedule(
                    self.now + lasting,
                    Event::EndFault(Ending::SlowDisk(victim)),
                );
                true
            }
            Fault::Membership => self.membership_change(),
        };
        if injected {
            *self.stats.faults.entry(kind).or_default() += 1;
            self.note(|| format!("fault injected: {}", kind.name()));
        }
    }

    /// An operator's mistake: a voter's folders wiped (a running one's process killed first)
    /// and the node started again with `--join`, neither removed nor added back. Only a voter
    /// the leader counts as running (its session committed: every later leader, once settled,
    /// has applied it and refuses the node for good), only one at a time, and only while at
    /// least two other voters remain (the quorum that removes it once it is refused). Its
    /// members must refuse it (see `join_lookup` and `wiped_refused`), and every safety check
    /// must hold. `false`: no voter fits, and the drawn fault is injected instead.
    ///
    /// Only while the membership is quiet ([`World::membership_quiet`]) and every other voter
    /// runs: a wipe while a removal is in flight leaves, once the
    /// removal commits, two voters one of which is wiped, a quorum lost for good (long seeds
    /// 10300105, 10302062, 10502353). That is an operator's mistake no cluster survives, where
    /// the fault is meant to check that a quorum of healthy voters refuses the wiped one.
    fn wipe_voter(&mut self) -> bool {
        let Some(leader) = self.leader() else {
            return false;
        };
        let voters = self.voters();
        if voters.len() < 3
            || self.nodes.values().any(|n| n.wiped.is_some())
            || !self.membership_quiet(leader, &voters)
        {
            return false;
        }
        let counted = self.nodes[&leader].proc.as_ref().expect("the leader runs");
        // The others, running, are the quorum that refuses the wiped voter and removes it
        // once their links heal (cut links are kept: a member cut off, behind, that admits
        // the wiped voter is what the admission rule must see through, long seed 10500710).
        let healthy_without = |victim: u64| {
            voters
                .iter()
                .filter(|v| **v != victim)
                .all(|o| self.nodes[o].life == Life::Up && self.nodes[o].proc.is_some())
        };
        let victims: Vec<u64> = voters
            .iter()
            .copied()
            .filter(|v| {
                matches!(self.nodes[v].life, Life::Up | Life::Down)
                    && counted.counts_running(*v)
                    && healthy_without(*v)
            })
            .collect();
        if victims.is_empty() {
            return false;
        }
        let id = victims[self.wipe_rng.random_range(0..victims.len())];
        let running = self.nodes[&id].proc.is_some();
        self.note(|| {
            let how = if running { "running" } else { "stopped" };
            format!("fault: n{id}'s folders wiped ({how}, not removed), started with --join")
        });
        self.crash(id);
        let since = self.inv.last_change(id);
        let seed = self.wipe_rng.random();
        let node = self.nodes.get_mut(&id).expect("node exists");
        node.fs = SimFs::new(seed, self.plan.sync_cost);
        node.flip = None;
        node.config.join = true;
        node.config.cluster = (1..=self.plan.max_id).map(url_of).collect();
        node.wiped = Some(since);
        self.stats.wiped_voters += 1;
        if running {
            self.nodes.get_mut(&id).expect("node exists").life = Life::Down;
            self.start(id);
        }
        // A stopped one starts at the restart already due.
        true
    }

    /// Whether no membership change is under way: none the admin asked for is unanswered (nor
    /// an episode of `registering_step` or of `in_reach_step`), the leader is settled (no
    /// change pending in its log, a quorum heard lately), and every running node has applied
    /// the leader's voters with no
    /// membership change in the leader's log past its applied index (a removed node that has
    /// not applied its removal, or an added one still catching up, counts as under way).
    fn membership_quiet(&self, leader: u64, voters: &[u64]) -> bool {
        if self.ops.iter().any(|op| op.change.is_some())
            || self.registering.is_some()
            || self.in_reach.is_some()
        {
            return false;
        }
        let lead = self.nodes[&leader].proc.as_ref().expect("the leader runs");
        if !lead.shared.is_membership_settled() {
            return false;
        }
        let sorted = |mut v: Vec<u64>| {
            v.sort_unstable();
            v
        };
        let voters = sorted(voters.to_vec());
        let last = lead.storage.mem.last_index().unwrap_or(0);
        self.nodes
            .values()
            .filter_map(|n| n.proc.as_ref())
            .all(|p| {
                let applied = p.kv.applied_index();
                let same = p
                    .storage
                    .mem
                    .initial_state()
                    .is_ok_and(|s| sorted(s.conf_state.voters) == voters);
                // Entries the leader no longer holds (compacted) cannot be read: not quiet then.
                let unapplied = if applied < last {
                    lead.storage
                        .mem
                        .entries(
                            applied + 1,
                            last + 1,
                            NO_LIMIT,
                            GetEntriesContext::empty(false),
                        )
                        .map(|entries| {
                            entries.iter().any(|e| {
                                matches!(
                                    e.get_entry_type(),
                                    EntryType::EntryConfChange | EntryType::EntryConfChangeV2
                                )
                            })
                        })
                        .unwrap_or(true)
                } else {
                    false
                };
                same && !unapplied
            })
    }

    fn count_fault(&mut self, kind: Fault) {
        *self.stats.faults.entry(kind).or_default() += 1;
        self.note(|| format!("fault injected: {}", kind.name()));
    }

    /// The leader, if a running node says it leads.
    fn leader(&self) -> Option<u64> {
        self.running().into_iter().find(|id| {
            self.nodes[id]
                .proc
                .as_ref()
                .is_some_and(|p| p.shared.leader.load(Ordering::Acquire) == *id)
        })
    }

    /// Reads across restarts: a follower's incoming links slowed for a few seconds (so that
    /// the ReadIndex answers to it are on their way for long), then that node killed again
    /// and again while they are (each of its processes lives a short while, and asks few
    /// rounds: a later one's round numbers are the earlier one's).
    fn slow_reader_fault(&mut self) {
        if let Some(reader) = self.slow_reader.filter(|r| self.nodes[r].proc.is_some()) {
            self.note(|| format!("fault: crash n{reader}, the slow reader"));
            self.crash(reader);
            self.node_down(reader);
            return self.count_fault(Fault::Crash);
        }
        if self.slow_reader.is_some() {
            return;
        }
        let leader = self.leader();
        let followers: Vec<u64> = self
            .running()
            .into_iter()
            .filter(|id| Some(*id) != leader)
            .collect();
        if followers.is_empty() {
            return;
        }
        let reader = followers[self.rng.random_range(0..followers.len())];
        let delay = self.between(300 * MS, 800 * MS);
        let lasting = self.between(2 * SECOND, 4 * SECOND);
        let others: Vec<u64> = (1..=self.plan.max_id).filter(|i| *i != reader).collect();
        let faults = Self::pairs(&others, &[reader])
            .into_iter()
            .map(|(a, b)| {
                let f = LinkFault {
                    delay,
                    ..Default::default()
                };
                (a, b, f)
            })
            .collect();
        self.note(|| format!("fault: n{reader}'s incoming links {} ms slower", delay / MS));
        self.slow_reader = Some(reader);
        self.link_fault(faults, lasting);
        self.schedule(self.now + lasting, Event::EndFault(Ending::SlowReader));
        self.count_fault(Fault::Delay);
    }

    /// Writes proposed again: the leader's link to a follower cut one way, for longer than
    /// an election timeout (the follower loses its leader, and finds it again at the end).
    fn cut_from_leader(&mut self) {
        let Some(leader) = self.leader() else {
            return;
        };
        let followers: Vec<u64> = self
            .running()
            .into_iter()
            .filter(|id| *id != leader)
            .collect();
        if followers.is_empty() {
            return;
        }
        let follower = followers[self.rng.random_range(0..followers.len())];
        let lasting = self.between(2 * SECOND, 4 * SECOND);
        let cut = LinkFault {
            cut: true,
            ..Default::default()
        };
        self.note(|| format!("fault: one-way cut n{leader} -> n{follower}"));
        self.link_fault(vec![(leader, follower, cut)], lasting);
        self.count_fault(Fault::OneWay);
    }

    /// Ids added back while registering: one episode. A follower's process is killed and
    /// started again; the new one registers a session as soon as it hears of a leader (see
    /// [`registering_step`](Self::registering_step) for the rest). An episode that misses
    /// (the registration landed first, or the node went) leaves the member removed, and the
    /// next one adds it back the operator's way.
    fn remove_while_registering(&mut self) {
        if self.registering.is_some()
            || self.renewed_from_snapshot
            || self.ops.iter().any(|op| op.change.is_some())
        {
            return;
        }
        let voters = self.voters();
        let running = self.running();
        if voters.len() < 3 || voters.iter().any(|v| !running.contains(v)) {
            // An earlier episode missed (or a member is down): back to a full cluster first.
            if self.membership_change() {
                self.count_fault(Fault::Membership);
            }
            return;
        }
        let Some(leader) = self.leader() else {
            return;
        };
        let followers: Vec<u64> = voters.iter().copied().filter(|v| *v != leader).collect();
        let id = followers[self.rng.random_range(0..followers.len())];
        self.note(|| format!("fault: n{id} restarted, to be removed once it hears of a leader"));
        self.crash(id);
        self.start(id);
        if self.nodes[&id].proc.is_none() {
            return;
        }
        let life = self.nodes[&id].life_no;
        self.registering = Some(Registering::Restarted { id, life });
        // The episode's end, should it stall (no leader heard of, no registration applied).
        self.stall_after(id, life, 2 * SECOND);
        self.count_fault(Fault::Membership);
    }

    /// The step of an episode just begun ends as stalled after `lasting` (an earlier step's
    /// end, still queued, then does nothing).
    fn stall_after(&mut self, id: u64, life: u64, lasting: Nanos) {
        let until = self.now + lasting;
        self.registering_until = until;
        self.schedule(
            until,
            Event::UndoRemoval {
                node: id,
                life,
                until,
            },
        );
    }

    /// Cuts every link into node `id` for up to `lasting`: it hears nothing more (what it
    /// sends still goes out). Returns the link fault's id.
    fn cut_incoming(&mut self, id: u64, lasting: Nanos) -> u64 {
        let cut = self.next_fault_id;
        let others: Vec<u64> = (1..=self.plan.max_id).filter(|i| *i != id).collect();
        let faults = Self::pairs(&others, &[id])
            .into_iter()
            .map(|(a, b)| {
                let f = LinkFault {
                    cut: true,
                    ..Default::default()
                };
                (a, b, f)
            })
            .collect();
        self.link_fault(faults, lasting);
        cut
    }

    /// Whether node `id`'s process, as of its own applied state, is a member whose session
    /// began before its latest addition: it renews it (see
    /// `Proposals::renew_if_older_than_addition`).
    fn renews(&self, id: u64) -> bool {
        let Some(p) = self.nodes[&id].proc.as_ref() else {
            return false;
        };
        let member = p
            .storage
            .mem
            .initial_state()
            .is_ok_and(|s| s.conf_state.voters.contains(&id));
        member && !p.counts_running(id) && p.node.sessions().origins().contains_key(&id)
    }

    /// The leader, if it has applied the removal of `id` and then a registration of it at an
    /// index past `after` (a session of the id while it is no member).
    fn leader_registered_removed(&self, id: u64, after: u64) -> Option<u64> {
        let leader = self.leader()?;
        let p = self.nodes[&leader].proc.as_ref()?;
        let removed = p
            .storage
            .mem
            .initial_state()
            .is_ok_and(|s| !s.conf_state.voters.contains(&id));
        let registered = p
            .node
            .sessions()
            .origins()
            .get(&id)
            .is_some_and(|session| *session > after);
        (removed && registered).then_some(leader)
    }

    /// Ids added back while registering: the episode's next step, after any node's round.
    /// 1. Once the restarted node has heard of a leader (its registration left in that very
    ///    round), it is removed through the leader, at once (ahead of the registration,
    ///    still on its way), and its incoming links are cut: it must not hear that its
    ///    removal committed, or it would go (`maybe_stop_removed`).
    /// 2. Once the leader has applied the removal and then the registration (a session of
    ///    the id while it is no member), the member is added back, and the cut ends (the
    ///    leader sends it nothing until the addition applies). The node then learns of its
    ///    removal, its registration and its re-addition together, keeps running, and holds
    ///    a session from before its latest addition (see
    ///    `Proposals::renew_if_older_than_addition`).
    ///
    /// Ids removed again while renewing go on:
    /// 3. Once the node has applied its re-addition and renews (the renewal's registration
    ///    left in that very round), it is removed again through the leader, at once, and cut
    ///    off again.
    /// 4. Once the leader has applied that removal and then the renewal's registration, the
    ///    member is added back again, still cut off.
    /// 5. Once the leader has applied that addition and its log begins past it, the cut
    ///    ends: the leader sends the node a snapshot, which shows that the renewal's session,
    ///    too, began before its latest addition (it must renew again). No episode follows:
    ///    a later membership change, applied in log order, would renew it anyway.
    fn registering_step(&mut self) {
        match self.registering {
            Some(Registering::Restarted { id, life }) => {
                if !self.alive(id, life) {
                    self.registering = None;
                    return;
                }
                let heard = self.nodes[&id]
                    .proc
                    .as_ref()
                    .is_some_and(|p| p.shared.leader.load(Ordering::Acquire) != 0);
                let Some(leader) = self.leader().filter(|l| *l != id) else {
                    return;
                };
                if !heard {
                    return;
                }
                self.note(|| format!("fault: n{id} heard of a leader: cut off from hearing more"));
                let cut = self.cut_incoming(id, 2 * SECOND);
                self.registering = Some(Registering::Removed { id, life, cut });
                let change = MemberChange::Remove { id };
                self.changes_sent += 1;
                self.note(|| format!("admin: {change:?} via n{leader}"));
                self.ask_change(leader, change, false, Vec::new());
            }
            Some(Registering::Removed { id, life, cut }) => {
                let Some(leader) = self.leader_registered_removed(id, 0) else {
                    return;
                };
                self.registering = None;
                self.link_faults.remove(&cut);
                self.apply_link_faults();
                if self.alive(id, life) {
                    self.add_back(id, leader);
                    if self.plan.kind == Kind::RemovedWhileRenewing {
                        self.registering = Some(Registering::AddedBack { id, life });
                        self.stall_after(id, life, 2 * SECOND);
                    }
                }
            }
            Some(Registering::AddedBack { id, life }) => {
                if !self.alive(id, life) {
                    self.registering = None;
                    return;
                }
                if !self.renews(id) {
                    return;
                }
                let Some(leader) = self.leader().filter(|l| *l != id) else {
                    return;
                };
                // The renewal's registration (its round's outbox) is on its way: it lands
                // after the removal, and only a registration past this index is it.
                let after = self.nodes[&leader]
                    .proc
                    .as_ref()
                    .map_or(0, |p| p.storage.mem.last_index().unwrap_or(0));
                self.note(|| format!("fault: n{id} renews its session: cut off again"));
                // Until the episode ends it (or the faults do).
                let cut = self.cut_incoming(id, 10 * SECOND);
                self.registering = Some(Registering::RemovedAgain {
                    id,
                    life,
                    cut,
                    after,
                });
                self.stall_after(id, life, 3 * SECOND);
                let change = MemberChange::Remove { id };
                self.changes_sent += 1;
                self.note(|| format!("admin: {change:?} via n{leader}, while it renews"));
                self.ask_change(leader, change, false, Vec::new());
            }
            Some(Registering::RemovedAgain {
                id,
                life,
                cut,
                after,
            }) => {
                let Some(leader) = self.leader_registered_removed(id, after) else {
                    return;
                };
                if !self.alive(id, life) {
                    self.registering = None;
                    self.link_faults.remove(&cut);
                    self.apply_link_faults();
                    return;
                }
                // The step moves on first: asking the leader runs its round, and the step
                // again after it.
                self.registering = Some(Registering::AddedBackAgain {
                    id,
                    life,
                    cut,
                    added: None,
                });
                self.stall_after(id, life, 3 * SECOND);
                self.add_back(id, leader);
            }
            Some(Registering::AddedBackAgain {
                id,
                life,
                cut,
                added,
            }) => {
                let Some(p) = self.leader().and_then(|l| self.nodes[&l].proc.as_ref()) else {
                    return;
                };
                let added = match added {
                    Some(added) => added,
                    None => {
                        let member = p
                            .storage
                            .mem
                            .initial_state()
                            .is_ok_and(|s| s.conf_state.voters.contains(&id));
                        if !member {
                            return;
                        }
                        let added = p.kv.applied_index();
                        self.registering = Some(Registering::AddedBackAgain {
                            id,
                            life,
                            cut,
                            added: Some(added),
                        });
                        added
                    }
                };
                if p.storage.mem.first_index().unwrap_or(0) <= added {
                    return;
                }
                self.registering = None;
                self.link_faults.remove(&cut);
                self.apply_link_faults();
                self.renewed_from_snapshot = true;
                self.stats.removed_while_renewing += 1;
                self.note(|| {
                    format!(
                        "fault: n{id} may hear again: the leader's log begins past index {added}"
                    )
                });
            }
            None => {}
        }
    }

    /// The end of an episode of ids added back while registering: if it stalled, the cut
    /// ends, and the member, if removed while the same process of it runs, is added back.
    fn undo_removal(&mut self, id: u64, life: u64) {
        // The cut to end, and whether the member's removal is to be undone (not once its
        // addition was sent).
        let (cut, removed) = match self.registering {
            Some(Registering::Restarted { id: i, life: l }) if (i, l) == (id, life) => (None, true),
            Some(Registering::AddedBack { id: i, life: l }) if (i, l) == (id, life) => {
                (None, false)
            }
            Some(
                Registering::Removed {
                    id: i,
                    life: l,
                    cut,
                }
                | Registering::RemovedAgain {
                    id: i,
                    life: l,
                    cut,
                    ..
                },
            ) if (i, l) == (id, life) => (Some(cut), true),
            Some(Registering::AddedBackAgain {
                id: i,
                life: l,
                cut,
                ..
            }) if (i, l) == (id, life) => (Some(cut), false),
            _ => return,
        };
        self.registering = None;
        if let Some(cut) = cut {
            self.link_faults.remove(&cut);
            self.apply_link_faults();
        }
        let voters = self.voters();
        let running = self.running();
        let via = voters.iter().copied().find(|v| running.contains(v));
        if let Some(via) = via
            && removed
            && self.phase == Phase::Chaos
            && self.alive(id, life)
            && !voters.contains(&id)
        {
            self.add_back(id, via);
        }
    }

    /// Adds member `id` back through `via` while its process runs (its data kept).
    fn add_back(&mut self, id: u64, via: u64) {
        let node = self.nodes.get_mut(&id).expect("node exists");
        node.undone_in_life = Some(node.life_no);
        let change = MemberChange::Add {
            id,
            url: url_of(id),
        };
        self.stats.removals_undone += 1;
        self.changes_sent += 1;
        self.note(|| format!("admin: {change:?} via n{via}, undoing its removal"));
        self.ask_change(via, change, false, Vec::new());
    }

    /// Mends the links between `a` and `b`, both ways: no link fault holds them any more.
    fn mend(&mut self, a: u64, b: u64) {
        for links in self.link_faults.values_mut() {
            links.retain(|(x, y, _)| (*x, *y) != (a, b) && (*x, *y) != (b, a));
        }
        self.apply_link_faults();
    }

    /// Node `id` was just admitted through the join path. Sometimes ([`MUTE_ADMITTED`], and
    /// always at the end of an episode of [`removed_in_reach`](Self::removed_in_reach)) every
    /// member's link to it is muted for 1.5–4 s: the leader's appends are lost, so its log
    /// stays empty; and every removed member still running (cut off, it may not know it was
    /// removed) is let reach it, both ways. Such a member campaigns with the voters it had,
    /// and asks for the vote of a node whose log is empty: the admitted node must not give it
    /// (`RaftNode::take_admission`).
    fn after_admission(&mut self, id: u64) {
        let episode = self
            .in_reach
            .is_some_and(|e| e.step == InReachStep::AddingN && e.n == id);
        if episode {
            self.in_reach = None;
            self.stats.in_reach_episodes.1 += 1;
        } else if !matches!(self.plan.kind, Kind::Mixed | Kind::ReAdd)
            || !self.mute_rng.random_bool(MUTE_ADMITTED)
        {
            return;
        }
        let voters = self.voters();
        let members: Vec<u64> = voters.iter().copied().filter(|v| *v != id).collect();
        let removed: Vec<u64> = self
            .running()
            .into_iter()
            .filter(|r| *r != id && !voters.contains(r))
            .collect();
        for r in &removed {
            self.mend(*r, id);
        }
        let lasting = self.mute_rng.random_range(1500 * MS..=4 * SECOND);
        let mute = LinkFault {
            mute: true,
            ..Default::default()
        };
        let faults = Self::pairs(&members, &[id])
            .into_iter()
            .map(|(a, b)| (a, b, mute.clone()))
            .collect();
        self.note(|| {
            format!(
                "fault: n{id}, just admitted, hears no raft message from {members:?} for {} ms; \
                 removed members still running in its reach: {removed:?}",
                lasting / MS
            )
        });
        self.link_fault(faults, lasting);
        self.stats.admissions_muted += 1;
        if !removed.is_empty() {
            self.stats.muted_in_reach += 1;
        }
    }

    /// A removed member in reach of a node just admitted, one episode: of three voters, all
    /// running, quiet (see [`membership_quiet`](Self::membership_quiet)), a follower `r` is
    /// cut off from every other node and removed through the leader; it goes on running
    /// with the voters it had. Then the other follower `n` is removed and added back under
    /// its id, wiped, with `--join`, and admitted while `r` still runs (see
    /// [`in_reach_step`](Self::in_reach_step)): of `r`'s old voters, `r` and `n` are a
    /// quorum, and `n`'s log is empty. The operator's steps are each ordinary; the interleaving
    /// is what the mixed schedules never met. `false`: no cluster fits, and the drawn fault is
    /// injected instead.
    fn removed_in_reach(&mut self) -> bool {
        let Some(leader) = self.leader() else {
            return false;
        };
        let voters = self.voters();
        let running = self.running();
        if voters.len() != 3
            || !voters.contains(&leader)
            || voters.iter().any(|v| !running.contains(v))
            || self.nodes.values().any(|n| n.wiped.is_some())
            || !self.membership_quiet(leader, &voters)
        {
            return false;
        }
        let followers: Vec<u64> = voters.iter().copied().filter(|v| *v != leader).collect();
        let pick = self.mute_rng.random_range(0..followers.len());
        let (r, n) = (followers[pick], followers[1 - pick]);
        let faults = self.cut_off(r);
        let cut = self.next_fault_id;
        self.note(|| {
            format!(
                "fault: n{r} cut off from the others and removed; then n{n} removed and added \
                 back, in its reach"
            )
        });
        // Until the episode ends it, or the faults do (a removed member in reach stays so
        // after the episode's last step, and hears of its removal once the cut ends).
        self.link_fault(faults, 10 * SECOND);
        self.stats.in_reach_episodes.0 += 1;
        self.in_reach = Some(InReach {
            r,
            n,
            cut,
            until: self.now + IN_REACH_STEP,
            step: InReachStep::RemovingR,
        });
        let change = MemberChange::Remove { id: r };
        self.changes_sent += 1;
        self.note(|| format!("admin: {change:?} via n{leader}, while it is cut off"));
        self.ask_change(leader, change, false, Vec::new());
        self.count_fault(Fault::Membership);
        true
    }

    /// A removed member in reach: the episode's next step, after any node's round.
    /// 1. Once a leader other than `r` has applied `r`'s removal, and its members are
    ///    settled, `n` is removed through it.
    /// 2. Once `n` has stopped as removed, and the leader has applied that, `n`'s folders are
    ///    wiped and it is added back at its URL, as any removed id is (its addition's answer
    ///    starts it with `--join`, see `answered`).
    /// 3. Once the members admit it, [`after_admission`](Self::after_admission) mutes their
    ///    links to it and lets `r` reach it; the episode ends there.
    ///
    /// A step that has not moved on within [`IN_REACH_STEP`] (another fault got in the way)
    /// ends the episode, and `r`'s cut with it: it then hears that it was removed.
    fn in_reach_step(&mut self) {
        let Some(episode) = self.in_reach else {
            return;
        };
        let InReach { r, n, cut, .. } = episode;
        if self.now > episode.until {
            self.note(|| format!("fault: n{r} to be in reach of n{n}: a step stalled"));
            self.in_reach = None;
            self.link_faults.remove(&cut);
            self.apply_link_faults();
            return;
        }
        let Some(leader) = self.leader().filter(|l| *l != r) else {
            return;
        };
        let lead = self.nodes[&leader].proc.as_ref().expect("the leader runs");
        let voters = lead
            .storage
            .mem
            .initial_state()
            .map(|s| s.conf_state.voters)
            .unwrap_or_default();
        if !lead.shared.is_membership_settled() {
            return;
        }
        let next = |step| {
            Some(InReach {
                step,
                until: self.now + IN_REACH_STEP,
                ..episode
            })
        };
        match episode.step {
            InReachStep::RemovingR if !voters.contains(&r) => {
                self.in_reach = next(InReachStep::RemovingN);
                let change = MemberChange::Remove { id: n };
                self.changes_sent += 1;
                self.note(|| format!("admin: {change:?} via n{leader}, n{r} removed"));
                self.ask_change(leader, change, false, Vec::new());
            }
            InReachStep::RemovingN
                if !voters.contains(&n)
                    && self.nodes[&n].life == Life::Removed
                    && self.nodes[&n].proc.is_none() =>
            {
                self.in_reach = next(InReachStep::AddingN);
                // The operator's way back in, as for any id added back (see `send_change`).
                let seed = self.mute_rng.random();
                let node = self.nodes.get_mut(&n).expect("node exists");
                node.fs = SimFs::new(seed, self.plan.sync_cost);
                node.wiped = None;
                node.admitted_after_wipe = None;
                node.config.join = true;
                node.config.cluster = (1..=self.plan.max_id).map(url_of).collect();
                node.flip = None;
                let change = MemberChange::Add {
                    id: n,
                    url: url_of(n),
                };
                self.changes_sent += 1;
                self.note(|| format!("admin: {change:?} via n{leader}, n{r} still running"));
                self.ask_change(leader, change, false, Vec::new());
            }
            _ => {}
        }
    }

    /// Stops a node and flips one byte of its WAL or of a snapshot file, at rest.
    fn corrupt(&mut self) -> bool {
        // Only where the last sync mark is known to be there (no power loss since the WAL was
        // opened): a flip past it is then truly in unsynced bytes.
        let candidates: Vec<u64> = self
            .nodes
            .iter()
            .filter(|(_, n)| {
                matches!(n.life, Life::Up | Life::Down) && !n.lost_power && n.flip.is_none()
            })
            .map(|(id, _)| *id)
            .collect();
        if candidates.is_empty() {
            return false;
        }
        let victim = candidates[self.rng.random_range(0..candidates.len())];
        self.crash(victim);
        let node = &self.nodes[&victim];
        let wal_dir = node.config.wal_dir();
        let snap_dir = node.config.snap_dir();
        let disk = node.fs.disk().clone();
        // Every file, with its length and, for WAL segments, how much of it syncs covered.
        let mut files: Vec<(PathBuf, u64, u64, bool)> = Vec::new();
        let mut segments: BTreeMap<PathBuf, (u64, u64)> = BTreeMap::new();
        let scanned = raftexample::wal::scan_on(&disk, &wal_dir, |path, off, len, rec| {
            let seg = segments.entry(path.to_path_buf()).or_default();
            seg.0 = seg.0.max(off + len);
            if let Record::Synced(n) = rec {
                seg.1 = seg.1.max(*n);
            }
        });
        if scanned.is_err() {
            self.node_down(victim);
            return false;
        }
        let last = segments.keys().next_back().cloned();
        for (path, (end, synced)) in segments {
            let covered = if Some(&path) == last.as_ref() {
                synced
            } else {
                end
            };
            files.push((path, end, covered, false));
        }
        for name in disk_list(&disk, &snap_dir) {
            if name.ends_with(".snap") {
                let path = snap_dir.join(&name);
                let len = disk_len(&disk, &path);
                files.push((path, len, len, true));
            }
        }
        files.retain(|f| f.1 > 0);
        if files.is_empty() {
            self.node_down(victim);
            return false;
        }
        let (path, len, covered, snapshot) = files[self.rng.random_range(0..files.len())].clone();
        let offset = self.rng.random_range(0..len);
        let mask = 1u8 << self.rng.random_range(0..8);
        if let Err(e) = disk.flip_byte(&path, offset, mask) {
            self.violation(format!("cannot flip {} at {offset}: {e}", path.display()));
            self.node_down(victim);
            return false;
        }
        let synced = offset < covered;
        self.note(|| {
            format!(
                "fault: n{victim}: flipped bit {mask:#04x} of {} at offset {offset} ({})",
                path.display(),
                if synced { "synced" } else { "not synced" }
            )
        });
        self.nodes.get_mut(&victim).expect("node exists").flip = Some(Flip {
            path,
            offset,
            mask,
            synced,
            snapshot,
        });
        self.node_down(victim);
        true
    }

    fn end_fault(&mut self, ending: Ending) {
        match ending {
            Ending::Links(id) => {
                self.link_faults.remove(&id);
                self.apply_link_faults();
            }
            Ending::SlowDisk(node) => {
                let cost = self.plan.sync_cost;
                self.nodes[&node].fs.set_sync_cost(cost);
            }
            Ending::PowerLossDue(node) => self.power_loss_now(node),
            Ending::DiskFull(node) => {
                let n = self.nodes.get_mut(&node).expect("node exists");
                n.fs.disk().set_capacity(None);
            }
            Ending::SlowReader => self.slow_reader = None,
        }
    }

    /// A power loss scheduled inside a node's disk operations that is still pending happens
    /// now.
    fn power_loss_now(&mut self, node: u64) {
        let disk = self.nodes[&node].fs.disk().clone();
        if disk.is_off() || self.nodes[&node].proc.is_none() {
            return;
        }
        disk.power_on();
        self.note(|| format!("n{node} loses power now"));
        self.crash(node);
        disk.power_loss();
        self.nodes.get_mut(&node).expect("node exists").lost_power = true;
        self.node_down(node);
    }

    // ---------------------------------------------------------------- the end

    /// The faults stop: links heal, disks behave, every stopped node is started again.
    fn heal(&mut self) {
        self.note(|| "heal".to_string());
        self.phase = Phase::Settling;
        self.settle_by = self.now + SETTLE_LIMIT;
        // An episode of ids added back while registering ends with the faults, as when it
        // stalls outside them: its next step would remove the member or add it back while the
        // cluster settles, and the final checks would judge a cluster still changing. A member
        // it left removed hears so once the cut heals, and stops.
        self.registering = None;
        self.in_reach = None;
        self.link_faults.clear();
        self.links.heal();
        let ids: Vec<u64> = self.nodes.keys().copied().collect();
        for id in ids {
            let cost = self.plan.sync_cost;
            let node = self.nodes.get_mut(&id).expect("node exists");
            node.fs.set_sync_cost(cost);
            node.fs.disk().fail_syncs(0);
            node.fs.disk().set_capacity(None);
            if node.proc.is_some() && node.expect_fatal {
                if node.fs.disk().is_off() {
                    // Its power failed mid-operation; the process notices at its next call.
                } else if node.fs.failed() {
                    // A call failed while the fault lasted: the node may learn of it later
                    // (a snapshot's result is read in a later round), and stop then.
                    node.fs.disk().power_on();
                } else {
                    node.fs.disk().power_on();
                    node.expect_fatal = false;
                }
            }
            if node.life == Life::Down && node.proc.is_none() {
                self.schedule(self.now, Event::Restart(id));
            }
        }
        self.schedule(self.now + TICK, Event::Settle);
    }

    /// Why the cluster is not back together yet (`None`: it is).
    fn not_converged(&mut self) -> Option<String> {
        if !self.ops.is_empty() {
            return Some(format!("{} requests still unanswered", self.ops.len()));
        }
        let voters = self.voters();
        if voters.is_empty() {
            return Some("no node runs".into());
        }
        for id in &voters {
            let node = &self.nodes[id];
            if node.proc.is_none() {
                if node.life != Life::Down {
                    // A member that is not running and will not be restarted: start it (an
                    // addition whose answer was lost, or a member that stopped as removed).
                    self.nodes.get_mut(id).expect("node exists").life = Life::Down;
                    self.schedule(self.now, Event::Restart(*id));
                }
                return Some(format!("member {id} is not running"));
            }
        }
        let mut seen: Option<(u64, u64)> = None;
        for (id, node) in &self.nodes {
            let Some(p) = &node.proc else { continue };
            if !voters.contains(id) {
                if p.net.cluster_id() == 0 || p.storage.mem.last_index().unwrap_or(0) == 0 {
                    // Started with --join, and removed again before it was sent anything: it
                    // would wait for ever. The operator stops it.
                    let id = *id;
                    self.note(|| format!("the operator stops n{id}: removed before it joined"));
                    self.crash(id);
                    self.nodes.get_mut(&id).expect("node exists").life = Life::Removed;
                    return Some(format!("node {id} removed before it joined"));
                }
                return Some(format!("node {id} runs but is not a member"));
            }
            let commit = p.storage.mem.rl().hard_state().commit;
            let last = p.storage.mem.last_index().unwrap_or(0);
            let applied = p.kv.applied_index();
            let leader = p.shared.leader.load(Ordering::Acquire);
            if applied != commit || commit != last {
                return Some(format!(
                    "node {id}: applied {applied}, commit {commit}, last {last}"
                ));
            }
            match seen {
                None => seen = Some((commit, leader)),
                Some(s) if s != (commit, leader) => {
                    return Some(format!(
                        "nodes disagree: (commit, leader) {s:?} and node {id}'s ({commit}, \
                         {leader})"
                    ));
                }
                Some(_) => {}
            }
        }
        match seen {
            Some((_, leader)) if leader != 0 && voters.contains(&leader) => None,
            other => Some(format!("no leader among the members: {other:?}")),
        }
    }

    /// The cluster converged: every member takes a write, through itself. Convergence alone
    /// does not show it: a member added back while its process ran on kept a session its
    /// removal had ended, and every write through it answered 503 (found by a review, not by
    /// the simulator: the checks above count a 503 as an unknown outcome, never as a
    /// problem). A write may still fail once for cause (a forwarded proposal the faults cut is
    /// sent again only after its resend delay, which may pass the schedule's proposal
    /// timeout), so a member answering 503 is asked again; one that takes none within
    /// [`PROBE_LIMIT`] is a violation.
    fn start_probes(&mut self) {
        self.phase = Phase::Probing;
        self.probe_by = self.now + PROBE_LIMIT;
        for id in self.voters() {
            self.probe(id, None);
        }
        self.schedule(self.now + TICK, Event::Settle);
    }

    /// Asks member `id` for a write; `before` is what it answered the last one.
    fn probe(&mut self, id: u64, before: Option<String>) {
        let (tx, rx) = oneshot::channel();
        let request = Request::Propose {
            data: Command::Put {
                key: format!("probe-{id}"),
                value: "1".into(),
            }
            .encode(),
            wait: None,
            done: tx,
        };
        self.note(|| format!("probe: a write through n{id} (before: {before:?})"));
        self.probes.push((id, rx, before));
        self.ask(id, request);
    }

    /// Collects the probes' answers. A member that stopped meanwhile (a failure the faults
    /// left it to find, such as a snapshot that could not be written) sends the cluster back
    /// to settling.
    fn check_probes(&mut self) {
        let mut again = Vec::new();
        let mut stopped = false;
        let nodes = &self.nodes;
        self.probes
            .retain_mut(|(id, rx, before)| match rx.try_recv() {
                Ok(Ok(())) => false,
                Err(oneshot::error::TryRecvError::Empty) => true,
                _ if nodes[id].proc.is_none() => {
                    stopped = true;
                    false
                }
                Ok(Err(err)) => {
                    again.push((*id, Some(err.to_string())));
                    false
                }
                Err(oneshot::error::TryRecvError::Closed) => {
                    again.push((*id, before.take()));
                    false
                }
            });
        if stopped {
            self.note(|| "probe: a member stopped; settling again".to_string());
            self.probes.clear();
            self.phase = Phase::Settling;
            self.schedule(self.now + TICK, Event::Settle);
            return;
        }
        if self.now > self.probe_by && !(self.probes.is_empty() && again.is_empty()) {
            let mut why: Vec<String> = again
                .into_iter()
                .chain(self.probes.drain(..).map(|(id, _, before)| (id, before)))
                .map(|(id, before)| format!("member {id} (last answer: {before:?})"))
                .collect();
            why.sort();
            self.violation(format!(
                "no write through {} was answered 204 within {} s of the cluster recovering",
                why.join(", "),
                PROBE_LIMIT / SECOND
            ));
            self.phase = Phase::Done;
            return;
        }
        for (id, before) in again {
            self.probe(id, before);
        }
        if self.probes.is_empty() {
            self.phase = Phase::Sessions;
            self.sessions_by = self.now + SESSION_LIMIT;
            self.check_sessions();
        } else {
            self.schedule(self.now + TICK, Event::Settle);
        }
    }

    /// Every member took a write; now every member's process must be counted as running
    /// since the member's latest addition by every node (`Shared::running`, the sessions the
    /// join path refuses a node that lost its data against): else a start of that id on an
    /// empty data dir would be admitted, and could lose what the process acknowledged. A
    /// process added back while it ran, whose registration landed between its removal and
    /// its re-addition, must renew its session for that (`Members::ran_since_added`): the
    /// renewal's two bugs were found by review, before this check.
    ///
    /// Checked only when the cluster is quiet again (every node has applied all it holds, up
    /// to the same index, under the same leader: their tables are then the same), not at the
    /// first convergence: a renewal starts when the re-addition applies and takes a round trip
    /// of its own, so a process just added back may rightly not be counted yet, and may go on
    /// with its old session meanwhile. So it must hold at some quiet moment within
    /// [`SESSION_LIMIT`] of the probes' end, by then long after every addition: a renewal
    /// lost on the way is sent again well within it. Every live member counts, whenever its
    /// process started: one that started later registers once it knows it is a member, as
    /// surely as one added back renews. A member that stopped meanwhile sends the cluster back
    /// to settling, as during the probes.
    fn check_sessions(&mut self) {
        let voters = self.voters();
        if voters.iter().any(|id| self.nodes[id].proc.is_none()) {
            self.note(|| "sessions: a member stopped; settling again".to_string());
            self.phase = Phase::Settling;
            self.schedule(self.now + TICK, Event::Settle);
            return;
        }
        let why = self.not_converged().or_else(|| self.uncounted_sessions());
        match why {
            None => {
                self.note(|| "sessions: every member's process counts as running".to_string());
                self.phase = Phase::Done;
            }
            Some(why) if self.now > self.sessions_by => {
                self.violation(format!(
                    "not every member's process was counted as running since the member's \
                     latest addition at a quiet moment within {} s of every member taking a \
                     write (a start of its id on an empty data dir would be admitted): {why}",
                    SESSION_LIMIT / SECOND
                ));
                self.phase = Phase::Done;
            }
            Some(_) => self.schedule(self.now + TICK, Event::Settle),
        }
    }

    /// The members some running node does not count as running since their latest addition,
    /// and what that node holds of each (`None`: every member counts on every node).
    fn uncounted_sessions(&self) -> Option<String> {
        let voters = self.voters();
        let mut found = Vec::new();
        for id in &voters {
            let added = match self.inv.last_change(*id) {
                Some((index, Change::Added)) => index.to_string(),
                _ => "unknown".to_string(),
            };
            for (by, node) in &self.nodes {
                let Some(p) = &node.proc else { continue };
                let counted = p.shared.counts_running(*id);
                if counted {
                    continue;
                }
                let held = match p.node.sessions().origins().get(id) {
                    Some(session) => format!("its session {session}"),
                    None => "no session of it".to_string(),
                };
                found.push(format!(
                    "node {by} does not count member {id} (added at index {added}): it holds \
                     {held}, at applied index {}",
                    p.kv.applied_index()
                ));
            }
        }
        (!found.is_empty()).then(|| found.join("; "))
    }

    /// At the end: a membership change answered "will not happen" never took effect. The
    /// node asked is the origin of every copy it proposes, and the log names it, but not which
    /// request of that node a copy was for: judged only where every request of the same
    /// change through that node was answered so (`PUT`s are judged by the history instead).
    fn changes_that_will_not_happen(&mut self) {
        for (&(via, id, change), &refused) in &self.changes_refused {
            if self.changes_asked.get(&(via, id, change)) != Some(&refused) {
                continue;
            }
            if let Some(index) = self.inv.took_effect_through(via, id, change) {
                let what = match change {
                    Change::Added => "addition",
                    Change::Removed => "removal",
                };
                self.violations.push(format!(
                    "the {what} of node {id} through node {via} took effect at index {index}, \
                     but every request for it through node {via} ({refused}) was answered \
                     \"will not happen\""
                ));
            }
        }
    }

    fn finish(&mut self) -> RunResult {
        self.stats.simulated = self.now;
        self.stats.peak_memory = crate::memory::peak().saturating_sub(self.memory_base);
        self.stats.committed = self.inv.committed_len() as u64;
        let mut finals: crate::verify::FinalReads = BTreeMap::new();
        let voters = self.voters();
        for key in &self.plan.keys {
            let by_node = finals.entry(key.clone()).or_default();
            for id in &voters {
                if let Some(p) = &self.nodes[id].proc {
                    by_node.insert(*id, p.kv.get(key).map(|v| short_value(&v)));
                }
            }
        }
        let ops: Vec<crate::lincheck::Operation> =
            self.history.iter().map(|r| r.op.clone()).collect();
        let found = crate::verify::verify(&ops, &finals);
        self.stats.changes_judged = self.inv.check_membership();
        self.changes_that_will_not_happen();
        let mut violations = std::mem::take(&mut self.inv.violations);
        violations.append(&mut self.violations);
        violations.extend(found.violations);
        if found.lost_writes > 0 {
            violations.push(format!("{} acknowledged writes lost", found.lost_writes));
        }
        violations.extend(crate::client::phantom_reads(&self.history, &self.stale));
        RunResult {
            plan: self.plan.clone(),
            violations,
            stats: std::mem::take(&mut self.stats),
            history: std::mem::take(&mut self.history),
            stale: std::mem::take(&mut self.stale),
            trace: self.trace.take(),
        }
    }
}

/// A membership change's answer, as the REST API would give it: its status, and for a `409`
/// whether it was refused at its commit because another change was applied first.
pub fn change_answer(answer: &Result<(), ProposalError>) -> &'static str {
    match answer {
        Ok(()) => "204",
        Err(ProposalError::MembershipChanged { .. }) => "409 (another applied first)",
        Err(ProposalError::ChangePending) => "409 (another pending)",
        Err(ProposalError::NotMember(_)) => "404",
        Err(
            ProposalError::AlreadyMember(_)
            | ProposalError::UrlInUse { .. }
            | ProposalError::LastVoter(_)
            | ProposalError::Rejected(_)
            | ProposalError::WouldLoseQuorum(_),
        ) => "409 (other)",
        Err(ProposalError::Timeout(_) | ProposalError::Stopped(_)) => "503 (may still happen)",
        Err(ProposalError::OutcomeUnknown) => "503 (may have happened)",
        Err(_) => "503 (will not happen)",
    }
}

/// What a peer server answers a batch it does not take.
enum Refused {
    /// Any refusal the sender sees as a failed stream.
    Unreachable,
    /// 410 Gone: the sender was removed as of this index.
    Gone(u64),
}

/// A digest of a node's replicated state: the value of every key the clients use, the number
/// of keys, and the exactly-once table with its skipped membership changes.
fn state_digest(kv: &KvStore, keys: &[String], sessions: &raftexample::proposal::Sessions) -> u64 {
    let mut h = DefaultHasher::new();
    kv.len().hash(&mut h);
    for key in keys {
        kv.get(key).hash(&mut h);
    }
    bincode::serde::encode_to_vec(sessions, bincode::config::standard())
        .expect("encoding into a Vec cannot fail")
        .hash(&mut h);
    // Not in the bincode form of the table, but replicated all the same.
    for c in sessions.skipped_changes() {
        (c.origin, c.session, c.seq).hash(&mut h);
    }
    h.finish()
}

fn disk_list(disk: &raftexample::disk::MemFs, dir: &Path) -> Vec<String> {
    use raftexample::disk::FileSystem;
    disk.list_dir(dir).unwrap_or_default()
}

fn disk_len(disk: &raftexample::disk::MemFs, path: &Path) -> u64 {
    use raftexample::disk::FileSystem;
    disk.read(path).map_or(0, |d| d.len() as u64)
}
