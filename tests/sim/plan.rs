//! What one schedule is made of, drawn from its seed: the cluster (3 or 5 nodes, snapshot
//! thresholds, WAL segment size), the load (clients, keys, value sizes) and which kinds of
//! fault it injects, how often.

use rand::rngs::SmallRng;
use rand::{RngExt, SeedableRng};

use crate::net::{MS, Nanos};

/// One second of simulated time.
pub const SECOND: Nanos = 1000 * MS;

/// The share of `PUT`s and membership changes sent with less than the proposal timeout to
/// wait, as the REST side sends one whose checks took part of its wait (see
/// `World::short_wait`).
pub const SHORT_WAITS: f64 = 0.25;

/// The kinds of fault, as TESTING.md's table of the simulation's last long run counts them.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord)]
pub enum Fault {
    /// Extra delay on some links.
    Delay,
    /// Jitter on some links: messages overtake each other.
    Reorder,
    /// Some messages delivered twice.
    Duplicate,
    /// Some messages lost.
    Loss,
    /// A node cut off both ways (the leader half the time), or a minority from a majority.
    Partition,
    /// A link cut in one direction only.
    OneWay,
    /// A node killed and restarted: memory lost, disk kept.
    Crash,
    /// A node loses power (now, or in the middle of one of its next disk operations):
    /// unsynced pages kept, dropped or torn.
    PowerLoss,
    /// Every node loses power at once.
    PowerLossAll,
    /// The next syncs of a node fail with `EIO`.
    Eio,
    /// A node's disk fills up (`ENOSPC`).
    Enospc,
    /// A byte of a stopped node's WAL or snapshot flipped at rest.
    Corrupt,
    /// A node's syncs take tens to hundreds of milliseconds.
    SlowDisk,
    /// A member removed (the leader half the time), a removed one added back, or a new one.
    Membership,
}

impl Fault {
    /// Every kind.
    pub const ALL: [Fault; 14] = [
        Fault::Delay,
        Fault::Reorder,
        Fault::Duplicate,
        Fault::Loss,
        Fault::Partition,
        Fault::OneWay,
        Fault::Crash,
        Fault::PowerLoss,
        Fault::PowerLossAll,
        Fault::Eio,
        Fault::Enospc,
        Fault::Corrupt,
        Fault::SlowDisk,
        Fault::Membership,
    ];

    /// The name in tables and traces.
    pub fn name(self) -> &'static str {
        match self {
            Fault::Delay => "delay",
            Fault::Reorder => "reorder",
            Fault::Duplicate => "duplicate",
            Fault::Loss => "loss",
            Fault::Partition => "partition",
            Fault::OneWay => "one-way partition",
            Fault::Crash => "crash",
            Fault::PowerLoss => "power loss (one node)",
            Fault::PowerLossAll => "power loss (all nodes)",
            Fault::Eio => "fsync EIO",
            Fault::Enospc => "ENOSPC",
            Fault::Corrupt => "corrupted byte at rest",
            Fault::SlowDisk => "slow disk",
            Fault::Membership => "membership change",
        }
    }
}

/// What a schedule aims at. Most mix faults of a few kinds drawn at random; the others aim at
/// one way a bug fixed before could come back (the mutation tests, `mutations.rs`, show that
/// each finds its bug), with every check of every schedule.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord)]
pub enum Kind {
    /// A few kinds of fault, drawn at random.
    Mixed,
    /// Members removed and added back under their old ids while large values are written and
    /// nothing is compacted: a node added back catches up over several appends, replaying its
    /// own removal on the way.
    ReAdd,
    /// Linearizable reads through a node whose incoming links are slow and whose process is
    /// killed and restarted again and again: ReadIndex answers reach a later process than
    /// the one that asked.
    ReadsAcrossRestarts,
    /// The leader's link to a node taking writes cut one way for longer than an election
    /// timeout: the node proposes its writes again when it hears a leader again, after their
    /// first copies committed, under reads and writes of the same keys through other nodes.
    ProposedAgain,
    /// A follower's process killed and started again, its incoming links slowed, and the
    /// member removed at once: the new process hears of a leader, and registers, only after
    /// its removal committed, and the member is added back before it hears of either. It
    /// lives on with a session from before its latest addition, which it must renew.
    AddedBackWhileRegistering,
    /// The same, then the member removed again, cut off, as soon as it renews (the renewal's
    /// registration on its way, to land after the removal), and added back again; it hears
    /// again only once the leader's log begins past that addition, so a snapshot tells it
    /// that its new session, too, began before its latest addition. Snapshots come every few
    /// entries.
    RemovedWhileRenewing,
}

impl Kind {
    /// Every kind.
    pub const ALL: [Kind; 6] = [
        Kind::Mixed,
        Kind::ReAdd,
        Kind::ReadsAcrossRestarts,
        Kind::ProposedAgain,
        Kind::AddedBackWhileRegistering,
        Kind::RemovedWhileRenewing,
    ];

    /// The name in tables.
    pub fn name(self) -> &'static str {
        match self {
            Kind::Mixed => "mixed faults",
            Kind::ReAdd => "ids added back, large values",
            Kind::ReadsAcrossRestarts => "reads across restarts",
            Kind::ProposedAgain => "writes proposed again",
            Kind::AddedBackWhileRegistering => "ids added back while registering",
            Kind::RemovedWhileRenewing => "ids removed again while renewing",
        }
    }
}

/// How long a schedule runs.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Length {
    /// The suite's: a few seconds of faults (the suite runs in a debug build).
    Quick,
    /// The long run's: longer schedules, more faults each.
    Long,
}

/// One schedule's cluster, load and faults.
#[derive(Clone, Debug)]
pub struct Plan {
    /// The seed everything is drawn from.
    pub seed: u64,
    /// What the schedule aims at.
    pub kind: Kind,
    /// A stopped node is started again within this long.
    pub restart_within: Nanos,
    /// Initial members.
    pub nodes: u64,
    /// Ids that may join later (`nodes + 1 ..= max_id`).
    pub max_id: u64,
    /// How long faults are injected; then everything heals.
    pub chaos: Nanos,
    /// Concurrent clients.
    pub clients: usize,
    /// The keys.
    pub keys: Vec<String>,
    /// Chance that an operation is a PUT.
    pub put_ratio: f64,
    /// Chance that a GET is a stale one (`?stale`).
    pub stale_ratio: f64,
    /// Bytes added to each value (0 for small values): large values split appends.
    pub value_padding: usize,
    /// Longest pause between two operations of a client.
    pub max_think: Nanos,
    /// `--snapshot-count`.
    pub snapshot_count: u64,
    /// `--snapshot-catchup-entries`.
    pub catchup: u64,
    /// `--wal-segment-bytes`.
    pub segment_bytes: u64,
    /// `--proposal-timeout-ms`.
    pub proposal_timeout_ms: u64,
    /// The share of `PUT`s and membership changes sent with a shorter wait than that (see
    /// [`SHORT_WAITS`]).
    pub short_waits: f64,
    /// The kinds of fault this schedule injects.
    pub faults: Vec<Fault>,
    /// Pause between two faults (range).
    pub fault_gap: (Nanos, Nanos),
    /// One-way latency of a healthy link (range).
    pub latency: (Nanos, Nanos),
    /// What a healthy sync costs.
    pub sync_cost: Nanos,
    /// `--max-snapshots`: sometimes the fewest allowed, where a file pruned too early is
    /// the one the WAL needs.
    pub max_snapshots: usize,
    /// `--snapshot-log-bytes`: sometimes small enough that snapshots and compaction come by
    /// bytes, not by the count of entries.
    pub snapshot_log_bytes: u64,
}

impl Plan {
    /// The schedule of `seed`: of a kind drawn from the seed (mixed faults in 57 of 100).
    pub fn draw(seed: u64, length: Length) -> Plan {
        let mut rng = SmallRng::seed_from_u64(seed ^ 0x0c1d_c1d0_c1d0_0c1d);
        let kind = match rng.random_range(0..10) {
            0 => Kind::ReAdd,
            1 => Kind::ReadsAcrossRestarts,
            2 => Kind::ProposedAgain,
            // Taken from the mixed ones by a second draw, so that every other seed keeps
            // the kind it had before this kind was added.
            _ if rng.random_bool(0.1) => Kind::AddedBackWhileRegistering,
            // And by a third, for the same reason.
            _ if rng.random_bool(0.1) => Kind::RemovedWhileRenewing,
            _ => Kind::Mixed,
        };
        Plan::of_kind(seed, length, kind)
    }

    /// The schedule of `seed` of `kind` (the other kinds start from a mixed one).
    pub fn of_kind(seed: u64, length: Length, kind: Kind) -> Plan {
        let mixed = Plan::mixed(seed, length);
        let mut rng = SmallRng::seed_from_u64(seed ^ 0x6b1d_6b1d_6b1d_6b1d);
        match kind {
            Kind::Mixed => mixed,
            Kind::ReAdd => Plan {
                kind,
                // Only ids that were members: every addition is one added back.
                max_id: mixed.nodes,
                // Short: the log is kept whole, of large values, on every node.
                chaos: match length {
                    Length::Quick => rng.random_range(3 * SECOND..=4 * SECOND),
                    Length::Long => rng.random_range(4 * SECOND..=6 * SECOND),
                },
                clients: rng.random_range(2..=3),
                put_ratio: rng.random_range(0.7..0.95),
                value_padding: rng.random_range(100_000..=300_000),
                max_think: rng.random_range(20..=80) * MS,
                snapshot_count: 10_000,
                catchup: 10_000,
                snapshot_log_bytes: raftexample::config::Config::default().snapshot_log_bytes,
                faults: vec![Fault::Membership],
                // Time for a few appends' worth of writes between a removal and the addition.
                fault_gap: (600 * MS, 1500 * MS),
                ..mixed
            },
            Kind::ReadsAcrossRestarts => Plan {
                kind,
                clients: rng.random_range(3..=5),
                keys: vec!["/k0".to_string()],
                put_ratio: rng.random_range(0.3..0.6),
                stale_ratio: 0.0,
                value_padding: 0,
                max_think: rng.random_range(0..=30) * MS,
                faults: vec![Fault::Delay, Fault::Crash],
                restart_within: 300 * MS,
                ..mixed
            },
            Kind::ProposedAgain => Plan {
                kind,
                clients: rng.random_range(3..=5),
                keys: vec!["/k0".to_string()],
                put_ratio: rng.random_range(0.4..0.7),
                stale_ratio: 0.0,
                value_padding: 0,
                max_think: rng.random_range(0..=50) * MS,
                // Longer than the cut: the writes are still waiting when it heals.
                proposal_timeout_ms: 5000,
                faults: vec![Fault::OneWay],
                // One cut at a time, mostly.
                fault_gap: (SECOND, 2500 * MS),
                ..mixed
            },
            Kind::AddedBackWhileRegistering => Plan {
                kind,
                // A few episodes (see `World::remove_while_registering`), one per fault
                // gap: each is over in tens of milliseconds (30 to 110 ms from the restart
                // to the member added back, in the traces of quick seeds 2, 6, 8 and 38), so
                // the gaps, not the episodes, fill the chaos.
                chaos: match length {
                    Length::Quick => rng.random_range(4 * SECOND..=6 * SECOND),
                    Length::Long => rng.random_range(8 * SECOND..=14 * SECOND),
                },
                faults: vec![Fault::Membership],
                fault_gap: (1500 * MS, 3 * SECOND),
                ..mixed
            },
            Kind::RemovedWhileRenewing => Plan {
                kind,
                // One episode that reaches its end (see `World::registering_step`; half a
                // second at seed 3), after any that miss.
                chaos: match length {
                    Length::Quick => rng.random_range(5 * SECOND..=7 * SECOND),
                    Length::Long => rng.random_range(8 * SECOND..=14 * SECOND),
                },
                // Snapshots every few entries, the log compacted close behind them: the
                // leader's log soon begins past the second re-addition.
                snapshot_count: rng.random_range(2..=8),
                catchup: rng.random_range(0..=3),
                snapshot_log_bytes: raftexample::config::Config::default().snapshot_log_bytes,
                faults: vec![Fault::Membership],
                fault_gap: (1500 * MS, 3 * SECOND),
                ..mixed
            },
        }
    }

    /// A schedule of mixed faults (as every schedule was before the other kinds).
    pub fn mixed(seed: u64, length: Length) -> Plan {
        let mut rng = SmallRng::seed_from_u64(seed ^ 0x5eed_5eed_5eed_5eed);
        let nodes = if rng.random_bool(0.65) { 3 } else { 5 };
        let max_id = nodes + rng.random_range(0..=2);
        let chaos = match length {
            Length::Quick => rng.random_range(2 * SECOND..=4 * SECOND),
            Length::Long => rng.random_range(6 * SECOND..=14 * SECOND),
        };
        let keys = (0..rng.random_range(1..=4))
            .map(|k| format!("/k{k}"))
            .collect();
        // Mostly small thresholds (snapshots every few entries, followers caught up by
        // snapshot), sometimes the defaults (no snapshot in a run this short).
        let (snapshot_count, catchup) = match rng.random_range(0..10) {
            0..=1 => (10_000, 10_000),
            2..=5 => (rng.random_range(2..=8), rng.random_range(0..=3)),
            _ => (rng.random_range(5..=60), rng.random_range(0..=50)),
        };
        // Small segments, so that many runs rotate and cut them (and the simulated disk,
        // which copies what it holds, stays small: a segment is preallocated up to its size).
        let segment_bytes = if rng.random_bool(0.5) {
            rng.random_range(4..=64) * 1024
        } else {
            rng.random_range(64..=1024) * 1024
        };
        // Sometimes values so large that a follower catching up needs several appends (raft
        // fills each up to 1 MiB): a node added back under its old id then replays its own
        // removal in one append and its addition in a later one.
        let value_padding = if rng.random_bool(0.15) {
            rng.random_range(100_000..=300_000)
        } else {
            0
        };
        // Every node holds its log several times over (raft's, the disk's cache and platter):
        // with values this large, a log kept whole would take gigabytes. Snapshot often.
        let (snapshot_count, catchup) = if value_padding > 0 {
            (snapshot_count.min(40), catchup.min(20))
        } else {
            (snapshot_count, catchup)
        };
        // A few kinds per schedule, so that each kind also gets schedules of its own.
        let mut faults: Vec<Fault> = Fault::ALL
            .iter()
            .copied()
            .filter(|_| rng.random_bool(0.3))
            .collect();
        if faults.is_empty() {
            faults.push(Fault::ALL[rng.random_range(0..Fault::ALL.len())]);
        }
        let fault_gap = match length {
            Length::Quick => (100 * MS, 900 * MS),
            Length::Long => (100 * MS, 1500 * MS),
        };
        Plan {
            seed,
            kind: Kind::Mixed,
            restart_within: 2 * SECOND,
            nodes,
            max_id,
            chaos,
            clients: rng.random_range(2..=5),
            keys,
            put_ratio: rng.random_range(0.3..0.8),
            stale_ratio: if rng.random_bool(0.3) { 0.2 } else { 0.0 },
            value_padding,
            max_think: rng.random_range(0..=200) * MS,
            snapshot_count,
            catchup,
            segment_bytes,
            proposal_timeout_ms: rng.random_range(2..=5) * 1000,
            // Not drawn: every field drawn after it stays what it was for each seed.
            short_waits: SHORT_WAITS,
            faults,
            fault_gap,
            latency: if rng.random_bool(0.5) {
                (100_000, 2 * MS)
            } else {
                (MS, 20 * MS)
            },
            sync_cost: rng.random_range(50_000..=3 * MS),
            // Drawn last, so that the fields above stay what they were for each seed.
            max_snapshots: if rng.random_bool(0.4) {
                2
            } else {
                raftexample::snapshotter::DEFAULT_KEEP
            },
            snapshot_log_bytes: match (rng.random_bool(0.3), value_padding > 0) {
                (false, _) => raftexample::config::Config::default().snapshot_log_bytes,
                (true, false) => rng.random_range(300..=5_000),
                (true, true) => rng.random_range(200_000..=2_000_000),
            },
        }
    }
}
