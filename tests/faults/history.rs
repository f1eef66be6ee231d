//! One operation of a history as the fault suite and the simulator write it to
//! `history.jsonl`: the checker's [`Operation`], the node that served it, and what the client
//! saw when it did not succeed. Shared by both (the simulator includes this file by path), so
//! their histories read the same.

use serde::{Deserialize, Serialize};

use crate::lincheck::Operation;

/// One recorded operation as the harness writes it to `history.jsonl`: the checker's
/// [`Operation`] plus the node that served it and, for an answer other than success, what the
/// client saw, for whoever studies a run.
#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct Recorded {
    /// The node the request went to.
    pub node: u64,
    /// Why the operation did not succeed (`None` for a success, and in histories written
    /// before this field existed).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub why: Option<Why>,
    /// What the checker sees.
    #[serde(flatten)]
    pub op: Operation,
}

/// What a client saw of a request that did not succeed: the evidence behind a failed or
/// unknown outcome.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub enum Why {
    /// The node answered with this status and this (one-line) body.
    Status(u16, String),
    /// The harness's HTTP client gave up waiting for an answer.
    ClientTimeout,
    /// The connection could not be made: the request was never sent.
    Refused(String),
    /// The connection broke after the request was sent, or the body could not be read.
    Cut(String),
    /// An answer the REST API never gives to that request (a status it does not send, a
    /// GET's Content-Type that does not fit the bytes), said in one line: a bug of the node,
    /// which fails the run with its files kept. Not taken as a read, nor as a PUT's verdict.
    Unexpected(String),
}
