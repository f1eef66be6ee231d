//! The simulated clients: what each asks of which node, and how an answer becomes the
//! checker's outcome, on the safe side as the fault suite's clients do: only an answer that
//! proves a `PUT` was never proposed is a definite failure.
//!
//! Histories are recorded in the fault suite's format ([`Recorded`], one JSON line per
//! operation), with times in simulated nanoseconds.

pub use crate::history::{Recorded, Why};
use crate::lincheck::{OpKind, Operation, Outcome};
use raftexample::raft_node::ProposalError;

/// The outcome of a `PUT` the node answered with `answer`.
pub fn put_outcome(answer: Result<(), ProposalError>) -> (Outcome, Option<Why>) {
    match answer {
        Ok(()) => (Outcome::Ok, None),
        Err(err) => {
            let text = err.to_string();
            // The node is certain only when it says the write will not happen.
            let outcome = if err.will_not_happen() {
                Outcome::Failed
            } else {
                Outcome::Unknown
            };
            let status = raftexample::http_api::proposal_status(&err).as_u16();
            (outcome, Some(Why::Status(status, text)))
        }
    }
}

/// A client's operation in flight, or about to be.
#[derive(Clone, Debug)]
pub struct Pending {
    /// The client.
    pub client: usize,
    /// The node asked.
    pub node: u64,
    /// The key.
    pub key: String,
    /// What was asked.
    pub kind: OpKind,
    /// When (a stamp of the world's clock).
    pub invoke: u64,
}

impl Pending {
    /// The record of this operation, completed at `complete` with `outcome`.
    pub fn finish(self, complete: u64, outcome: Outcome, why: Option<Why>) -> Recorded {
        Recorded {
            node: self.node,
            why,
            op: Operation {
                client: self.client,
                key: self.key,
                kind: self.kind,
                invoke_ns: self.invoke,
                complete_ns: complete,
                outcome,
            },
        }
    }
}

/// Stale reads that no write could have produced: a value that no `PUT` invoked before the
/// read returned wrote, or one whose `PUT` the node said will not happen. A stale read may lag,
/// but it never invents.
pub fn phantom_reads(history: &[Recorded], stale: &[Recorded]) -> Vec<String> {
    let mut problems = Vec::new();
    for read in stale {
        let Outcome::Value(value) = &read.op.outcome else {
            continue;
        };
        let writer = history.iter().find(|w| {
            w.op.key == read.op.key && matches!(&w.op.kind, OpKind::Put { value: v } if v == value)
        });
        match writer {
            None => problems.push(format!(
                "stale read of {:?} on node {} returned {value:?}, which no PUT wrote",
                read.op.key, read.node
            )),
            Some(w) if w.op.invoke_ns > read.op.complete_ns => problems.push(format!(
                "stale read of {:?} on node {} returned {value:?} before its PUT was invoked",
                read.op.key, read.node
            )),
            Some(w) if w.op.outcome == Outcome::Failed => problems.push(format!(
                "stale read of {:?} on node {} returned {value:?}, whose PUT was answered \
                 \"will not happen\": {:?}",
                read.op.key, read.node, w.why
            )),
            Some(_) => {}
        }
    }
    problems
}
