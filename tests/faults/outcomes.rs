//! Why operations ended unknown, and the rules a run's unknown outcomes must keep.
//!
//! The harness writes down, node by node, when each fault hit which node ([`Timeline`]). Each
//! operation that ended unknown is then explained ([`UnknownOp`]): the node it asked, what the
//! client saw ([`Cause`]), and the faults that hit that node while the request was out. The
//! rules (TESTING.md, "What is tested under faults"):
//!
//! - under kill and torn-wal, only a request to the killed node may end unknown
//!   ([`Rule::OnlyToTheKilled`]). "To the killed node" means: its time at the node (from
//!   invocation to completion) overlaps the node's time down, which runs from the moment the
//!   harness sends SIGKILL to the moment the restarted process answers `/-/ready`. So a request
//!   in flight when the node dies counts, and so does one sent while it is down or replaying
//!   its log after the restart; a request to any other node must end ok, or failed for
//!   certain, however the killed node's death moved the leadership;
//! - under pause, partition-leader, partition-split, loss and delay, fewer than
//!   [`MAX_UNKNOWN_SHARE`] of all operations end unknown: judged over the long run's runs of
//!   each kind (a run of a few seconds holds a few hundred operations, too few for a share of
//!   0.5 % to mean anything). Under pause and the partitions, in every run, the unknown ones
//!   must also be requests to a node the fault hit ([`Rule::OnlyToTheFaulted`]): the rest of
//!   the cluster elects a leader of its own and goes on. Loss and delay may hit the leader,
//!   through which every request passes, so which node was asked says little there
//!   ([`Rule::Share`]);
//! - membership and mixed runs are counted, not judged.

use std::fmt::Write as _;

use crate::client::{Recorded, Why};
use crate::lincheck::{OpKind, Outcome};
use crate::stalls::Stall;

/// Under the kinds judged by share, the most operations that may end unknown: 0.5 %.
pub const MAX_UNKNOWN_SHARE: f64 = 0.005;

/// What a fault did to one node, for a while.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum NodeFault {
    /// SIGKILLed (its WAL maybe torn), until the restarted process is ready.
    Killed,
    /// SIGSTOPped, until SIGCONT.
    Paused,
    /// Cut off from the majority of the members (alone, or in the minority of a split).
    Isolated,
    /// Losing a share of its peer packets.
    Lossy,
    /// Its peer traffic delayed.
    Delayed,
    /// Removed from the cluster (from the DELETE on), until it is back and ready.
    Removed,
}

impl NodeFault {
    fn name(self) -> &'static str {
        match self {
            NodeFault::Killed => "killed",
            NodeFault::Paused => "paused",
            NodeFault::Isolated => "cut off",
            NodeFault::Lossy => "losing packets",
            NodeFault::Delayed => "delayed",
            NodeFault::Removed => "removed",
        }
    }
}

/// One fault on one node: from `from_ns` to `to_ns` (`None`: until the end of the run).
#[derive(Clone, Debug)]
pub struct Interval {
    /// The node.
    pub node: u64,
    /// What happened to it.
    pub fault: NodeFault,
    /// When it began (nanoseconds since the run's epoch, as the history's times).
    pub from_ns: u64,
    /// When it ended, if it did while the run's clients ran.
    pub to_ns: Option<u64>,
}

impl Interval {
    fn overlaps(&self, from_ns: u64, to_ns: u64) -> bool {
        self.from_ns <= to_ns && self.to_ns.is_none_or(|end| end >= from_ns)
    }

    fn describe(&self) -> String {
        let end = self
            .to_ns
            .map_or("end".to_string(), |t| format!("{:.3}", secs(t)));
        format!(
            "node {} {} {:.3}–{end} s",
            self.node,
            self.fault.name(),
            secs(self.from_ns)
        )
    }
}

fn secs(ns: u64) -> f64 {
    ns as f64 / 1e9
}

/// When each fault hit which node, as the harness injected them.
#[derive(Debug, Default)]
pub struct Timeline {
    intervals: Vec<Interval>,
}

impl Timeline {
    /// `fault` hits `node` from `at_ns` on.
    pub fn begin(&mut self, node: u64, fault: NodeFault, at_ns: u64) {
        self.intervals.push(Interval {
            node,
            fault,
            from_ns: at_ns,
            to_ns: None,
        });
    }

    /// `fault` no longer hits `node` from `at_ns` on.
    pub fn end(&mut self, node: u64, fault: NodeFault, at_ns: u64) {
        for i in &mut self.intervals {
            if i.node == node && i.fault == fault && i.to_ns.is_none() {
                i.to_ns = Some(at_ns);
            }
        }
    }

    /// `fault` no longer hits any node from `at_ns` on (the network was healed).
    pub fn end_all(&mut self, fault: NodeFault, at_ns: u64) {
        for i in &mut self.intervals {
            if i.fault == fault && i.to_ns.is_none() {
                i.to_ns = Some(at_ns);
            }
        }
    }

    /// The faults that hit `node` at some moment of `from_ns..=to_ns`.
    fn on(&self, node: u64, from_ns: u64, to_ns: u64) -> Vec<Interval> {
        self.intervals
            .iter()
            .filter(|i| i.node == node && i.overlaps(from_ns, to_ns))
            .cloned()
            .collect()
    }
}

/// What the client saw of an operation that ended unknown.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord)]
pub enum Cause {
    /// The harness's HTTP client gave up waiting.
    ClientTimeout,
    /// The connection broke after the request was sent (the node died, or closed it).
    ConnectionCut,
    /// The node answered 503 saying the write may still happen (proposed, not committed in
    /// time; or the node was shutting down).
    MayStillHappen,
    /// Anything else.
    Other,
}

impl Cause {
    /// Every cause, in the order of the table's columns.
    pub const ALL: [Cause; 4] = [
        Cause::ClientTimeout,
        Cause::ConnectionCut,
        Cause::MayStillHappen,
        Cause::Other,
    ];

    fn of(why: Option<&Why>) -> Cause {
        match why {
            Some(Why::ClientTimeout) => Cause::ClientTimeout,
            Some(Why::Cut(_)) => Cause::ConnectionCut,
            Some(Why::Status(503, body)) if body.contains("may still happen") => {
                Cause::MayStillHappen
            }
            _ => Cause::Other,
        }
    }

    /// The short name used in reports and the table.
    pub fn name(self) -> &'static str {
        match self {
            Cause::ClientTimeout => "client timeout",
            Cause::ConnectionCut => "connection cut",
            Cause::MayStillHappen => "503 may still happen",
            Cause::Other => "other",
        }
    }
}

/// One operation that ended unknown, explained.
#[derive(Clone, Debug)]
pub struct UnknownOp {
    /// The node asked.
    pub node: u64,
    /// `PUT k1=c3-7` or `GET k1`.
    pub what: String,
    /// When the client sent it and gave up or heard the answer.
    pub invoke_ns: u64,
    /// See `invoke_ns`.
    pub complete_ns: u64,
    /// What the client saw.
    pub cause: Cause,
    /// The client's words for it (the error or the answer's body).
    pub detail: String,
    /// The faults that hit the node asked while the request was out.
    pub faults: Vec<Interval>,
    /// The machine's stalls while the request was out.
    pub stalls: Vec<Stall>,
}

impl UnknownOp {
    /// Whether a fault hit the node asked while the request was out.
    pub fn to_faulted(&self) -> bool {
        !self.faults.is_empty()
    }

    /// Whether the node asked was killed (or restarting) while the request was out.
    pub fn to_killed(&self) -> bool {
        self.faults.iter().any(|f| f.fault == NodeFault::Killed)
    }

    /// One line: what, where, when, why, and what hit the node.
    pub fn describe(&self) -> String {
        let mut s = format!(
            "{} to node {} at {:.3}–{:.3} s: {}",
            self.what,
            self.node,
            secs(self.invoke_ns),
            secs(self.complete_ns),
            self.cause.name()
        );
        if !self.detail.is_empty() {
            let _ = write!(s, " ({})", self.detail);
        }
        if self.faults.is_empty() {
            let _ = write!(s, "; no fault hit node {} meanwhile", self.node);
        } else {
            let faults: Vec<String> = self.faults.iter().map(Interval::describe).collect();
            let _ = write!(s, "; {}", faults.join(", "));
        }
        if !self.stalls.is_empty() {
            let stalls: Vec<String> = self.stalls.iter().map(Stall::describe).collect();
            let _ = write!(s, "; the machine stalled meanwhile: {}", stalls.join(", "));
        }
        s
    }
}

/// The operations of `history` that ended unknown, each explained with `timeline` and the
/// machine's `stalls`.
pub fn explain(history: &[Recorded], timeline: &Timeline, stalls: &[Stall]) -> Vec<UnknownOp> {
    history
        .iter()
        .filter(|r| r.op.outcome == Outcome::Unknown)
        .map(|r| {
            let what = match &r.op.kind {
                OpKind::Put { value } => format!("PUT {}={value}", r.op.key),
                OpKind::Get => format!("GET {}", r.op.key),
            };
            let detail = match &r.why {
                Some(Why::Status(status, body)) => format!("{status} {body}"),
                Some(Why::Cut(e) | Why::Refused(e) | Why::Unexpected(e)) => e.clone(),
                Some(Why::ClientTimeout) | None => String::new(),
            };
            UnknownOp {
                node: r.node,
                what,
                invoke_ns: r.op.invoke_ns,
                complete_ns: r.op.complete_ns,
                cause: Cause::of(r.why.as_ref()),
                detail,
                faults: timeline.on(r.node, r.op.invoke_ns, r.op.complete_ns),
                stalls: stalls
                    .iter()
                    .filter(|s| s.overlaps(r.op.invoke_ns, r.op.complete_ns))
                    .cloned()
                    .collect(),
            }
        })
        .collect()
}

/// The rule a kind of run keeps (see the module documentation).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Rule {
    /// In every run, only a request to the killed node may end unknown.
    OnlyToTheKilled,
    /// In every run, only a request to a node the fault hit may end unknown; across runs,
    /// fewer than [`MAX_UNKNOWN_SHARE`] of the operations.
    OnlyToTheFaulted,
    /// Across runs, fewer than [`MAX_UNKNOWN_SHARE`] of the operations end unknown.
    Share,
    /// Counted, not judged.
    None,
}

impl Rule {
    /// Whether the kind's share of unknown outcomes across runs is judged.
    pub fn judges_share(self) -> bool {
        matches!(self, Rule::OnlyToTheFaulted | Rule::Share)
    }
}

/// The unknown outcomes of one run that break `rule`, each explained.
pub fn breaches(rule: Rule, unknowns: &[UnknownOp]) -> Vec<String> {
    let allowed = |op: &UnknownOp| match rule {
        Rule::OnlyToTheKilled => op.to_killed(),
        Rule::OnlyToTheFaulted => op.to_faulted(),
        Rule::Share | Rule::None => true,
    };
    unknowns
        .iter()
        .filter(|op| !allowed(op))
        .map(|op| {
            format!(
                "unknown outcome of a request to a node no fault hit: {}",
                op.describe()
            )
        })
        .collect()
}

/// Unknown outcomes counted by whom they asked and why.
#[derive(Clone, Debug, Default)]
pub struct Counts {
    /// All of them.
    pub total: usize,
    /// Of which to a node a fault hit while the request was out.
    pub to_faulted: usize,
    /// By [`Cause`], in the order of [`Cause::ALL`].
    pub by_cause: [usize; 4],
}

impl Counts {
    /// The counts of `unknowns`.
    pub fn of(unknowns: &[UnknownOp]) -> Counts {
        let mut c = Counts::default();
        for op in unknowns {
            c.total += 1;
            c.to_faulted += usize::from(op.to_faulted());
            let at = Cause::ALL
                .iter()
                .position(|k| *k == op.cause)
                .expect("every cause is in ALL");
            c.by_cause[at] += 1;
        }
        c
    }

    /// Adds `other` to these counts.
    pub fn add(&mut self, other: &Counts) {
        self.total += other.total;
        self.to_faulted += other.to_faulted;
        for (a, b) in self.by_cause.iter_mut().zip(other.by_cause) {
            *a += b;
        }
    }

    /// Of which to a node no fault hit.
    pub fn to_healthy(&self) -> usize {
        self.total - self.to_faulted
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::lincheck::Operation;

    fn op(node: u64, from_ms: u64, to_ms: u64, why: Why) -> Recorded {
        Recorded {
            node,
            why: Some(why),
            op: Operation {
                client: 0,
                key: "k0".into(),
                kind: OpKind::Put {
                    value: "c0-1".into(),
                },
                invoke_ns: from_ms * 1_000_000,
                complete_ns: to_ms * 1_000_000,
                outcome: Outcome::Unknown,
            },
        }
    }

    /// A request in flight when its node is killed, and one sent while it restarts, are
    /// requests to the killed node; one to another node at the same time is not, and breaks
    /// the kill rule; the faulted-node rule also allows the request to the paused node.
    #[test]
    fn unknown_outcomes_are_judged_by_the_faults_of_the_node_asked() {
        let mut t = Timeline::default();
        t.begin(2, NodeFault::Killed, 1_000_000_000);
        t.end(2, NodeFault::Killed, 2_000_000_000);
        t.begin(3, NodeFault::Paused, 5_000_000_000);
        let history = [
            op(2, 900, 1_100, Why::Cut("connection reset".into())),
            op(2, 1_900, 4_900, Why::ClientTimeout),
            op(
                1,
                1_200,
                1_400,
                Why::Status(503, "not committed; it may still happen".into()),
            ),
            op(3, 6_000, 9_000, Why::ClientTimeout),
            op(2, 2_100, 2_300, Why::ClientTimeout),
        ];
        let stall = Stall {
            at_ns: 2_200_000_000,
            took: std::time::Duration::from_millis(300),
            what: "disk sync",
        };
        let unknowns = explain(&history, &t, &[stall]);
        assert_eq!(unknowns.len(), 5);
        assert!(unknowns[0].to_killed() && unknowns[1].to_killed());
        assert!(!unknowns[2].to_faulted() && !unknowns[4].to_faulted());
        assert_eq!(unknowns[2].cause, Cause::MayStillHappen);
        assert!(unknowns[3].to_faulted() && !unknowns[3].to_killed());
        assert!(
            unknowns[4]
                .describe()
                .contains("disk sync took 0.300 s at 2.200 s")
        );
        assert!(unknowns[2].stalls.is_empty());

        let kill = breaches(Rule::OnlyToTheKilled, &unknowns);
        assert_eq!(kill.len(), 3, "{kill:#?}");
        assert!(kill[0].contains("to node 1") && kill[0].contains("503"));
        let faulted = breaches(Rule::OnlyToTheFaulted, &unknowns);
        assert_eq!(faulted.len(), 2, "{faulted:#?}");
        assert!(breaches(Rule::Share, &unknowns).is_empty());
        assert!(breaches(Rule::None, &unknowns).is_empty());

        let counts = Counts::of(&unknowns);
        assert_eq!(
            (counts.total, counts.to_faulted, counts.to_healthy()),
            (5, 3, 2)
        );
        assert_eq!(counts.by_cause, [3, 1, 1, 0]);
    }
}
