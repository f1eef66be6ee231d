//! Running schedules and telling what they found: one seed ([`run_seed`], a panic caught and
//! reported with its seed), a batch of seeds on every core ([`Batch`]) with its table, and the
//! folder a failure leaves behind ([`keep`]).

use std::collections::BTreeMap;
use std::fmt::Write as _;
use std::ops::Range;
use std::panic::AssertUnwindSafe;
use std::path::{Path, PathBuf};
use std::sync::Mutex;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Instant;

use crate::plan::{Fault, Kind, Length, Plan, SECOND};
use crate::world::{RunResult, Stats, World};

/// Runs schedule `seed`; `trace` records every event. A panic anywhere in the nodes or the
/// world is a violation of the run, with its message.
pub fn run_seed(seed: u64, length: Length, trace: bool) -> RunResult {
    run_plan(Plan::draw(seed, length), trace)
}

/// Runs `plan`; `trace` records every event (see [`run_seed`]).
pub fn run_plan(plan: Plan, trace: bool) -> RunResult {
    let mut world = World::new(plan.clone(), trace);
    let run = std::panic::catch_unwind(AssertUnwindSafe(|| world.run()));
    run.unwrap_or_else(|panic| {
        let message = panic
            .downcast_ref::<String>()
            .map(String::as_str)
            .or_else(|| panic.downcast_ref::<&str>().copied())
            .unwrap_or("(no message)");
        RunResult {
            plan,
            violations: vec![format!("panic: {message}")],
            stats: Stats::default(),
            history: Vec::new(),
            stale: Vec::new(),
            trace: world.take_trace(),
        }
    })
}

/// Where failed runs leave their folders: `target/sim-runs/`.
pub fn runs_root() -> PathBuf {
    // CARGO_TARGET_TMPDIR is `<target>/tmp`; its parent is the target folder.
    let tmp = Path::new(env!("CARGO_TARGET_TMPDIR"));
    tmp.parent().unwrap_or(tmp).join("sim-runs")
}

/// Writes `result`'s trace, history and violations to `target/sim-runs/<seed>-<length>/`.
pub fn keep(result: &RunResult, length: Length) -> PathBuf {
    let dir = runs_root().join(format!(
        "{}-{}",
        result.plan.seed,
        format!("{length:?}").to_lowercase()
    ));
    let written = (|| -> std::io::Result<()> {
        std::fs::create_dir_all(&dir)?;
        std::fs::write(dir.join("plan.txt"), format!("{:#?}\n", result.plan))?;
        std::fs::write(
            dir.join("violations.txt"),
            result.violations.join("\n") + "\n",
        )?;
        if let Some(trace) = &result.trace {
            std::fs::write(dir.join("trace.txt"), trace)?;
        }
        crate::verify::save_history(&dir.join("history.jsonl"), &result.history)?;
        crate::verify::save_history(&dir.join("stale.jsonl"), &result.stale)
    })();
    if let Err(e) = written {
        eprintln!("cannot write {}: {e}", dir.display());
    }
    dir
}

/// A schedule that held more than this at once is named as it ends (see `memory.rs`).
const LARGE: u64 = 1 << 30;

/// One schedule's line in a batch.
struct Summary {
    seed: u64,
    nodes: u64,
    kind: Kind,
    violations: Vec<String>,
    stats: Stats,
}

/// What a batch of schedules found.
pub struct Batch {
    length: Length,
    runs: Vec<Summary>,
    wall: f64,
    workers: usize,
}

impl Batch {
    /// Runs `seeds` on `workers` threads (each schedule on one thread, start to end), keeps
    /// the folder of every failure (run again with its trace: the same run).
    pub fn run(seeds: Range<u64>, length: Length, workers: usize) -> Batch {
        let started = Instant::now();
        let next = AtomicU64::new(seeds.start);
        let runs = Mutex::new(Vec::new());
        std::thread::scope(|scope| {
            for _ in 0..workers.max(1) {
                scope.spawn(|| {
                    loop {
                        let seed = next.fetch_add(1, Ordering::Relaxed);
                        if seed >= seeds.end {
                            break;
                        }
                        let result = run_seed(seed, length, false);
                        if result.stats.peak_memory > LARGE {
                            eprintln!(
                                "seed {seed} held {} MiB at its peak",
                                result.stats.peak_memory >> 20
                            );
                        }
                        if !result.violations.is_empty() {
                            let traced = run_seed(seed, length, true);
                            let dir = keep(&traced, length);
                            eprintln!(
                                "seed {seed} failed ({} violations; {}):\n  {}",
                                result.violations.len(),
                                dir.display(),
                                result.violations.join("\n  ")
                            );
                        }
                        runs.lock()
                            .unwrap_or_else(|p| p.into_inner())
                            .push(Summary {
                                seed,
                                nodes: result.plan.nodes,
                                kind: result.plan.kind,
                                violations: result.violations,
                                stats: result.stats,
                            });
                    }
                });
            }
        });
        let mut runs = runs.into_inner().unwrap_or_else(|p| p.into_inner());
        runs.sort_by_key(|r| r.seed);
        Batch {
            length,
            runs,
            wall: started.elapsed().as_secs_f64(),
            workers,
        }
    }

    /// Whether every schedule passed.
    pub fn passed(&self) -> bool {
        self.runs.iter().all(|r| r.violations.is_empty())
    }

    /// The failed seeds, what went wrong, and how to replay each.
    pub fn failures(&self) -> String {
        let mut out = String::new();
        let length = format!("{:?}", self.length).to_lowercase();
        for r in self.runs.iter().filter(|r| !r.violations.is_empty()) {
            let _ = writeln!(
                out,
                "seed {} failed; replay: SIM_SEED={} SIM_LENGTH={length} cargo nextest run \
                 --test sim --run-ignored only replay --no-capture\n  {}",
                r.seed,
                r.seed,
                r.violations.join("\n  ")
            );
        }
        out
    }

    /// The table TESTING.md shows (the simulation's "The last long run").
    pub fn table(&self) -> String {
        let n = self.runs.len() as u64;
        let sum = |f: &dyn Fn(&Stats) -> u64| self.runs.iter().map(|r| f(&r.stats)).sum::<u64>();
        let mut faults: BTreeMap<Fault, (u64, u64)> = BTreeMap::new();
        for r in &self.runs {
            for (kind, count) in &r.stats.faults {
                let e = faults.entry(*kind).or_default();
                e.0 += count;
                e.1 += 1;
            }
        }
        let failed = self
            .runs
            .iter()
            .filter(|r| !r.violations.is_empty())
            .count();
        let violations: usize = self.runs.iter().map(|r| r.violations.len()).sum();
        let five = self.runs.iter().filter(|r| r.nodes == 5).count() as u64;
        let mut out = String::new();
        let _ = writeln!(out, "| | |\n|---|---:|");
        let mut row = |name: &str, value: String| {
            let _ = writeln!(out, "| {name} | {value} |");
        };
        row(
            "schedules",
            format!("{n} ({} of 3 nodes, {five} of 5)", n - five),
        );
        for kind in Kind::ALL {
            let of = self.runs.iter().filter(|r| r.kind == kind).count();
            row(&format!("schedules: {}", kind.name()), of.to_string());
        }
        row(
            "operations",
            format!(
                "{} ({} unknown)",
                sum(&|s| s.operations),
                sum(&|s| s.unknown)
            ),
        );
        row("entries committed", sum(&|s| s.committed).to_string());
        row("snapshots saved", sum(&|s| s.snapshots).to_string());
        row("node starts", sum(&|s| s.starts).to_string());
        row(
            "membership changes acknowledged",
            sum(&|s| s.member_changes).to_string(),
        );
        let mut answers: BTreeMap<&str, u64> = BTreeMap::new();
        for r in &self.runs {
            for (label, count) in &r.stats.overlapped_answers {
                *answers.entry(label).or_default() += count;
            }
        }
        let answers: Vec<String> = answers
            .iter()
            .map(|(label, count)| format!("{count} {label}"))
            .collect();
        row(
            "membership changes sent while another was in flight",
            format!(
                "{} (both of each pair answered: {})",
                sum(&|s| s.concurrent_changes),
                if answers.is_empty() {
                    "-".to_string()
                } else {
                    answers.join(", ")
                }
            ),
        );
        let mut short: BTreeMap<&str, (u64, Vec<String>)> = BTreeMap::new();
        let mut by_answer: BTreeMap<(&str, &str), u64> = BTreeMap::new();
        for r in &self.runs {
            for (key, count) in &r.stats.short_waits {
                *by_answer.entry(*key).or_default() += count;
            }
        }
        for ((what, label), count) in by_answer {
            let e = short.entry(what).or_default();
            e.0 += count;
            e.1.push(format!("{count} {label}"));
        }
        row(
            "requests sent with less than the proposal timeout to wait (a quarter of PUTs and \
             membership changes), by answer",
            if short.is_empty() {
                "-".to_string()
            } else {
                short
                    .iter()
                    .map(|(what, (n, answers))| format!("{n} {what}: {}", answers.join(", ")))
                    .collect::<Vec<_>>()
                    .join("; ")
            },
        );
        row(
            "removals undone at once (the id added back while its process still ran)",
            sum(&|s| s.removals_undone).to_string(),
        );
        row(
            "sessions renewed (a process's session began before its node's latest addition)",
            sum(&|s| s.sessions_renewed).to_string(),
        );
        row(
            "renewals removed again in flight (re-added, then let hear once the leader's log began \
             past that)",
            sum(&|s| s.removed_while_renewing).to_string(),
        );
        row(
            "committed membership changes: took effect / skipped by every node / not judged",
            format!(
                "{} / {} / {}",
                sum(&|s| s.changes_judged.applied),
                sum(&|s| s.changes_judged.skipped),
                sum(&|s| s.changes_judged.unknown)
            ),
        );
        row(
            "starts refused over a flipped synced byte (as they must be)",
            sum(&|s| s.refusals).to_string(),
        );
        row(
            "voters wiped without removal, started with --join / starts refused / admitted by \
             members none of which knew it ran",
            format!(
                "{} / {} / {}",
                sum(&|s| s.wiped_voters),
                sum(&|s| s.wiped_refused),
                sum(&|s| s.wiped_admitted)
            ),
        );
        row(
            "nodes just admitted that heard no raft message from the members for 1.5-4 s / of \
             them, in reach of a removed member still running",
            format!(
                "{} / {}",
                sum(&|s| s.admissions_muted),
                sum(&|s| s.muted_in_reach)
            ),
        );
        row(
            "episodes of a removed member in reach of a node just admitted: begun / reached \
             the admission",
            format!(
                "{} / {}",
                sum(&|s| s.in_reach_episodes.0),
                sum(&|s| s.in_reach_episodes.1)
            ),
        );
        for kind in Fault::ALL {
            let (count, runs) = faults.get(&kind).copied().unwrap_or_default();
            row(
                &format!("fault: {}", kind.name()),
                format!("{count} (in {runs} schedules)"),
            );
        }
        row(
            "simulated time",
            format!("{:.0} s", sum(&|s| s.simulated) as f64 / SECOND as f64),
        );
        row("events", sum(&|s| s.events).to_string());
        if let Some(top) = self.runs.iter().max_by_key(|r| r.stats.peak_memory) {
            row(
                "most memory one schedule held",
                format!("{} MiB (seed {})", top.stats.peak_memory >> 20, top.seed),
            );
        }
        row(
            "failed schedules / violations",
            format!("{failed} / {violations}"),
        );
        row(
            "wall time",
            format!(
                "{:.1} s on {} threads ({:.1} ms per schedule per thread)",
                self.wall,
                self.workers,
                self.wall * 1000.0 * self.workers as f64 / n.max(1) as f64
            ),
        );
        out
    }
}
