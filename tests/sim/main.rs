//! Deterministic simulation of whole clusters: the real node core, WAL, snapshotter and state
//! machine of 3 or 5 nodes in one thread, on simulated disks, a simulated network and a
//! simulated clock, everything drawn from one seed. A schedule of faults (delay, reordering,
//! duplication and loss of messages; partitions both ways and one way; crashes; power loss of
//! a node or of all; failed fsyncs; a full disk; a byte flipped at rest; slow disks;
//! membership churn; a node just admitted that hears from a removed member before the leader)
//! runs under a client load (a quarter of the writes and membership changes with less than the
//! proposal timeout to wait), and is judged: linearizable history, committed entries that
//! never change, one leader per term, the same state at the same applied index on every node,
//! no acknowledged write lost, no membership change answered "will not happen" in effect, a
//! refusal to start only over damaged synced data, no panic; and once the faults end, every
//! member takes a write, and every member's process comes to count as running since its
//! latest addition on every node (the sessions the join path refuses a node that lost its
//! data by).
//!
//! # Layout
//! - `world.rs`: the event loop, the nodes' lives and the faults.
//! - `net.rs`: the nodes' `Network` and the links between them.
//! - `disk.rs`: the nodes' disks (the crate's `MemFs`, with a cost per sync).
//! - `client.rs`: the clients' history, in the fault suite's format.
//! - `checks.rs`: what must hold at every moment.
//! - `plan.rs`: what one seed's schedule is made of, and the kinds of schedule.
//! - `../common/memory.rs`: what each schedule holds (the binary's allocator counts it).
//! - `report.rs`: the table of a batch of schedules, and what a failure leaves behind.
//! - the fault suite's checker (`../faults/lincheck.rs`) and verdict (`../faults/verify.rs`).
//!
//! # Running
//! `cargo nextest run` runs [`QUICK_SEEDS`] short schedules (four shards), and checks that a
//! seed replays to the same trace. The long version:
//!
//! ```text
//! SIM_SEEDS=10000 cargo nextest run --release --test sim --run-ignored only many --no-capture
//! ```
//!
//! A failure prints its seed and the command that replays it, and leaves the trace, the
//! history and what went wrong in `target/sim-runs/<seed>-<length>/`.

mod checks;
mod client;
mod disk;
#[path = "../faults/history.rs"]
mod history;
#[allow(dead_code)] // the checker's explanations and options the simulator does not use
#[path = "../faults/lincheck.rs"]
mod lincheck;
#[allow(dead_code)] // peak_during: the decoder tests' way of asking
#[path = "../common/memory.rs"]
mod memory;
#[cfg(feature = "sim-mutations")]
mod mutations;
mod net;
mod plan;
mod report;
#[allow(dead_code)] // load_history: the simulator only writes histories
#[path = "../faults/verify.rs"]
mod verify;
mod world;

/// Counts what each schedule holds (see `memory.rs`).
#[global_allocator]
static ALLOCATOR: memory::Counting = memory::Counting;

use plan::{Kind, Length};
use report::{Batch, run_seed};

/// Schedules in every `cargo nextest run`, over four shards.
const QUICK_SEEDS: u64 = 1000;
/// Shards of the quick run (nextest runs them side by side).
const SHARDS: u64 = 4;
/// First seed of the quick run.
const QUICK_BASE: u64 = 1;

fn quick_shard(shard: u64) {
    let per = QUICK_SEEDS / SHARDS;
    let seeds = QUICK_BASE + shard * per..QUICK_BASE + (shard + 1) * per;
    let batch = Batch::run(seeds, Length::Quick, 1);
    println!("{}", batch.table());
    assert!(batch.passed(), "{}", batch.failures());
}

/// The first quarter of the quick run's schedules.
#[test]
fn quick_schedules_shard_0() {
    quick_shard(0);
}

/// The second quarter.
#[test]
fn quick_schedules_shard_1() {
    quick_shard(1);
}

/// The third quarter.
#[test]
fn quick_schedules_shard_2() {
    quick_shard(2);
}

/// The last quarter.
#[test]
fn quick_schedules_shard_3() {
    quick_shard(3);
}

/// A seed replays to the same run: the event trace of two runs is the same, byte for byte.
#[test]
fn the_same_seed_gives_the_same_trace() {
    for seed in [3, 17, 4242] {
        for length in [Length::Quick, Length::Long] {
            let a = run_seed(seed, length, true);
            let b = run_seed(seed, length, true);
            let (ta, tb) = (a.trace.expect("traced"), b.trace.expect("traced"));
            assert!(
                ta.lines().count() > 300 && ta.contains("fault injected"),
                "seed {seed}: a trace this short, or without a fault, is no test"
            );
            if ta != tb {
                let line = ta
                    .lines()
                    .zip(tb.lines())
                    .position(|(x, y)| x != y)
                    .unwrap_or(ta.lines().count().min(tb.lines().count()));
                panic!(
                    "seed {seed} ({length:?}): the traces differ from line {}:\n{}\n{}",
                    line + 1,
                    ta.lines().nth(line).unwrap_or("(end)"),
                    tb.lines().nth(line).unwrap_or("(end)")
                );
            }
        }
    }
}

/// Seeds that found real bugs, kept as regression tests, with the kind of schedule they were.
/// - 1000009, 1000096 (long, mixed): a flipped byte in a node's newest snapshot file; the node
///   rightly refused to start, but its error named only the WAL ("lacks entry 1"), not the
///   snapshot file and offset.
/// - 1000239 (long, mixed): a member removed and added back under its old id with an empty
///   data dir was left behind for good: the leader's heartbeats still counted the old life's
///   entries, the node dropped them (raft-rs would have panicked on their commit index), and
///   a leader probing a follower sends its next append only when a heartbeat is answered.
/// - 1000366 (long, ids added back): a node added back, killed in the middle of its catch-up,
///   replayed its WAL up to its own old removal and stopped as removed at once, on every
///   start.
/// - 1001722 (long, mixed): a removed node whose own snapshot already had it removed (taken
///   after it applied its removal) ran for ever after a restart, never stopping: no entry it
///   replayed said it was removed.
/// - 1004956, 1006798, 1007491, 1009770 (long, mixed): a member that missed the addition of
///   the node that then led had no route to it, so its answers were dropped and it never
///   caught up; 1001204 (long, ids added back): with two voters, one the id added back, the
///   member behind answered its vote requests with 410 Gone as of the old removal, and no one
///   won an election. 1003768, 1004350, 1004878, 1007966, 1009275 (long, mixed): the first fix
///   of that 410 compared the candidate's log with the index of its removal, and removed nodes
///   whose logs held a few entries past it were never told, and ran for ever.
/// - 1001730 (long, mixed): with 410 Gone answered by the leader alone, a node removed while
///   it was down knew only members that now followed a leader it had never heard of, and
///   campaigned for ever.
const SEEDS_THAT_FOUND_BUGS: &[(u64, Length, Kind)] = &[
    (1_000_009, Length::Long, Kind::Mixed),
    (1_000_096, Length::Long, Kind::Mixed),
    (1_000_239, Length::Long, Kind::Mixed),
    (1_000_366, Length::Long, Kind::ReAdd),
    (1_001_722, Length::Long, Kind::Mixed),
    (1_001_204, Length::Long, Kind::ReAdd),
    (1_004_956, Length::Long, Kind::Mixed),
    (1_006_798, Length::Long, Kind::Mixed),
    (1_007_491, Length::Long, Kind::Mixed),
    (1_009_770, Length::Long, Kind::Mixed),
    (1_003_768, Length::Long, Kind::Mixed),
    (1_004_350, Length::Long, Kind::Mixed),
    (1_004_878, Length::Long, Kind::Mixed),
    (1_007_966, Length::Long, Kind::Mixed),
    (1_009_275, Length::Long, Kind::Mixed),
    (1_001_730, Length::Long, Kind::Mixed),
    // An Add sent through two nodes at once: one node learned of its own (skipped) copy from
    // a snapshot and answered 204 from the members alone.
    (1_006_407, Length::Long, Kind::Mixed),
    (1_009_246, Length::Long, Kind::Mixed),
    // A wiped voter (the leader) admitted by a member cut off since the start, which had not
    // seen its registration: a committed entry changed. Refused now.
    (10_500_710, Length::Long, Kind::Mixed),
    // A node removed and added back, never admitted: a removed member still running doubted
    // it with a session from before. Outweighed now by a voter that applied past it.
    (10_302_212, Length::Long, Kind::Mixed),
    // Node 1 removed through node 3, the last other voter (204), then wiped: node 3's syncs
    // failed before its commit index past the removal was on disk, and restarted it counted
    // node 1 again and could not be elected. A membership change now waits for its commit
    // index to be synced.
    (857, Length::Long, Kind::Mixed),
    // Node 2, added back with `--join`, crashed while it caught up (its log below what its
    // admitters had applied, so its campaigns held), was removed, and ran on for good: no
    // leader sends a removed node anything, and it asked no one for a vote. A node holding its
    // campaigns now asks its voters with a pre-vote request while it knows no leader.
    (10_300_448, Length::Long, Kind::ReAdd),
    // Node 3 removed and added back, with node 1 the only other voter; its process's
    // registration, sent before the removal, reached node 1 after the addition. Appended, it
    // read as a run since: node 1 doubted node 3's start on an empty data dir until the entry
    // applied, and the entry could commit only with node 3. A leader now appends no
    // registration sent before its node's latest addition.
    (12_200_460, Length::Long, Kind::Mixed),
    // A harness bug: a snapshot flipped twice was set aside at `.2.broken` (an earlier copy
    // held `.broken`), and the world "restored" the older copy, flipping a byte of it, which
    // left the newest file damaged; the next refusal was blamed on a later flip of a file the
    // WAL no longer named. The world now restores the file the refusal says it set aside.
    (12_707_498, Length::Long, Kind::Mixed),
    // Node 1 led when its removal committed, was added back at 157, and its answers were cut:
    // leaders 2 and 3 probed past its log (committed 161) and never heard it; node 3 lost its
    // leadership (CheckQuorum), and node 1, silent two election timeouts, took that for a
    // successor that applied its removal and went, though node 3 needed its vote. A removed
    // leader told of committed entries it lacks now waits a follower's sixty ticks.
    (12_802_394, Length::Long, Kind::Mixed),
];

/// Each seed runs twice: as it runs now, and with every request given the whole proposal
/// timeout, as when it found its bug (a shorter wait that runs out moves the schedule from
/// there on; see `World::short_wait`).
#[test]
fn seeds_that_found_bugs() {
    for &(seed, length, kind) in SEEDS_THAT_FOUND_BUGS {
        for short_waits in [plan::SHORT_WAITS, 0.0] {
            let plan = plan::Plan {
                short_waits,
                ..plan::Plan::of_kind(seed, length, kind)
            };
            let result = report::run_plan(plan, false);
            assert!(
                result.violations.is_empty(),
                "seed {seed} ({length:?}, {kind:?}, {short_waits} of the waits short):\n{}",
                result.violations.join("\n")
            );
        }
    }
}

/// The long run: `SIM_SEEDS` schedules (default 10,000) from `SIM_SEED_BASE` (default
/// 1,000,000, away from the quick run's), on every core, then the table.
#[test]
#[ignore = "the long run: SIM_SEEDS=10000 cargo nextest run --release --test sim \
            --run-ignored only many"]
fn many_schedules() {
    let seeds = env_u64("SIM_SEEDS").unwrap_or(10_000);
    let base = env_u64("SIM_SEED_BASE").unwrap_or(1_000_000);
    // A long run with a fix taken out (`SIM_MUTATION`) shows how often the schedules meet it.
    #[cfg(feature = "sim-mutations")]
    mutations::from_env();
    let workers = std::thread::available_parallelism().map_or(2, |n| n.get());
    let batch = Batch::run(base..base + seeds, Length::Long, workers);
    println!("{}", batch.table());
    assert!(batch.passed(), "{}", batch.failures());
}

/// Replays `SIM_SEED` (of `SIM_LENGTH`, `long` or `quick`), writes its trace and history to
/// `target/sim-runs/<seed>-<length>/` and says what went wrong.
#[test]
#[ignore = "replays one seed: SIM_SEED=<n> SIM_LENGTH=quick|long cargo nextest run --test sim \
            --run-ignored only replay --no-capture"]
fn replay() {
    let seed = env_u64("SIM_SEED").expect("set SIM_SEED to the seed to replay");
    let length = match std::env::var("SIM_LENGTH").as_deref() {
        Ok("long") => Length::Long,
        Ok("quick") | Err(_) => Length::Quick,
        Ok(other) => panic!("SIM_LENGTH={other:?}: quick or long"),
    };
    #[cfg(feature = "sim-mutations")]
    mutations::from_env();
    let result = run_seed(seed, length, true);
    let dir = report::keep(&result, length);
    println!(
        "seed {seed}: {} events, {} operations; trace and history in {}",
        result.stats.events,
        result.stats.operations,
        dir.display()
    );
    assert!(
        result.violations.is_empty(),
        "seed {seed}:\n{}",
        result.violations.join("\n")
    );
}

fn env_u64(name: &str) -> Option<u64> {
    let text = std::env::var(name).ok()?;
    Some(
        text.parse()
            .unwrap_or_else(|e| panic!("{name}={text:?} is not a number: {e}")),
    )
}
