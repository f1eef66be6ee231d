//! What a node's peer port answers while the node starts: from the moment the port is bound
//! until the node has replayed its log (and, first, for a member of the first cluster on an
//! empty data dir, asked the others whether its id has run: [`super::join`]). Then the peer
//! server ([`super::server`]) takes over on the same port (`serving::Handoff`).
//!
//! Before, the port was bound but served by nobody while the node replayed its log: a
//! question hung, and counted as no answer. A member that held data but took longer than the
//! asker's half second to replay it (a large snapshot or WAL) could not say that the asker's
//! id had run, and a voter that had lost its data started anew, saying only that nobody had
//! answered (review 106, L-E).
//!
//! Every request gets a `503` ([`PeerRefusal::Unavailable`]) carrying [`HEADER_STARTING`],
//! which says whether this node holds data. A 503 rather than a status of its own, because
//! every build already reads a 503 as "not now, ask again": a stream or a snapshot is sent
//! again after a pause (and logged once, as a peer that is down), the probe counts no build
//! in it, and a node of an older build about to start anew asks again and counts it as no
//! answer, as it counted the silence before. The header adds, as [`super::HEADER_LEADER`]
//! does on an admission, what a newer asker acts on: a node that holds data may know that the
//! asker's id has run, so the asker waits for its real answer
//! ([`super::join::Lookup::before_bootstrap`]).
//!
//! What the node is doing meanwhile ([`Phase`]) is shared with its REST port, whose starting
//! answers say it (`http_api::starting`): a node that waits without end for a member still
//! replaying its own log says which one.

use std::collections::BTreeSet;
use std::sync::{Arc, Mutex};

use axum::Router;
use axum::http::{HeaderMap, HeaderValue};
use axum::response::{IntoResponse, Response};

use super::http::{PeerRefusal, Refusal};
use super::{HEADER_STARTING, STARTING_EMPTY, STARTING_WITH_DATA};

/// What a starting node is doing, as it changes: first, for a member of the first cluster on
/// an empty data dir, asking the others whether its id has run (and waiting for those that
/// hold data and are starting themselves: [`super::join::Lookup::before_bootstrap`]); then
/// replaying its log. A cheap handle on one cell, which the start writes and the REST port's
/// starting answers read.
#[derive(Clone, Debug)]
pub struct Phase(Arc<Mutex<Doing>>);

/// What a starting node is doing at one moment ([`Phase::now`]), said in words by `Display`.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Doing {
    /// Asking the other members whether this node's id has run before.
    Asking {
        /// The members that said they hold data and are starting too, whose answer it waits
        /// for (as long as they take: they may know that its id has run).
        waiting_for: BTreeSet<u64>,
    },
    /// Replaying its log.
    Replaying,
}

impl std::fmt::Display for Doing {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let whether = "whether this node has run before";
        match self {
            Doing::Replaying => write!(f, "replaying its log"),
            Doing::Asking { waiting_for } => {
                let mut ids: Vec<String> = waiting_for.iter().map(u64::to_string).collect();
                match ids.pop() {
                    None => write!(f, "asking the other members {whether}"),
                    Some(id) if ids.is_empty() => write!(
                        f,
                        "waiting for node {id}, which holds data and is itself starting, to \
                         say {whether}"
                    ),
                    Some(last) => write!(
                        f,
                        "waiting for nodes {} and {last}, which hold data and are themselves \
                         starting, to say {whether}",
                        ids.join(", ")
                    ),
                }
            }
        }
    }
}

impl Phase {
    /// A node about to ask the other members whether it has run (`asking`), or to replay its
    /// log.
    pub fn new(asking: bool) -> Phase {
        let doing = if asking {
            Doing::Asking {
                waiting_for: BTreeSet::new(),
            }
        } else {
            Doing::Replaying
        };
        Phase(Arc::new(Mutex::new(doing)))
    }

    /// What the node is doing now.
    pub fn now(&self) -> Doing {
        self.lock().clone()
    }

    /// The node has its answers, and replays its log.
    pub fn replaying(&self) {
        *self.lock() = Doing::Replaying;
    }

    /// The node waits for member `id`'s answer, until the guard returned is dropped.
    pub fn waiting_for(&self, id: u64) -> WaitingFor {
        if let Doing::Asking { waiting_for } = &mut *self.lock() {
            waiting_for.insert(id);
        }
        WaitingFor {
            phase: self.clone(),
            id,
        }
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, Doing> {
        // Each change is one assignment or one insert or removal: a panic elsewhere while the
        // lock was held leaves nothing half-done.
        self.0
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
    }
}

/// A member waited for ([`Phase::waiting_for`]) until this is dropped: once it has answered,
/// or the question is given up (the ask's future dropped).
#[derive(Debug)]
pub struct WaitingFor {
    phase: Phase,
    id: u64,
}

impl Drop for WaitingFor {
    fn drop(&mut self) {
        if let Doing::Asking { waiting_for } = &mut *self.phase.lock() {
            waiting_for.remove(&self.id);
        }
    }
}

/// The peer port's router while node `id` starts; `holds_data`: its WAL existed when it
/// started.
pub fn router(id: u64, holds_data: bool) -> Router {
    let (value, data) = if holds_data {
        (STARTING_WITH_DATA, "it holds data")
    } else {
        (STARTING_EMPTY, "it holds no data")
    };
    let text = format!("node {id} is starting and answers nothing yet ({data}); ask again");
    Router::new().fallback(move || std::future::ready(answer(value, text.clone())))
}

/// A starting node's answer to every request: `value` is [`HEADER_STARTING`]'s.
fn answer(value: &'static str, text: String) -> Response {
    let mut response = Refusal::new(PeerRefusal::Unavailable, text).into_response();
    response
        .headers_mut()
        .insert(HEADER_STARTING, HeaderValue::from_static(value));
    response
}

/// Whether an answer with `headers` comes from a starting node, and if so whether it holds
/// data. Any value but [`STARTING_EMPTY`] is taken to hold data: a node that lost its data
/// then waits for the real answer rather than start anew.
pub fn said(headers: &HeaderMap) -> Option<bool> {
    let value = headers.get(HEADER_STARTING)?;
    Some(value.as_bytes() != STARTING_EMPTY.as_bytes())
}

#[cfg(test)]
mod tests {
    use super::*;
    use axum::body::Body;
    use axum::http::{Method, Request, StatusCode};
    use tower::ServiceExt;

    /// Every path and method, the join question and a stream among them, gets a 503 that
    /// says the node is starting and whether it holds data, and asks the sender to close
    /// the connection, as every refusal on the peer port does.
    #[tokio::test]
    async fn a_starting_node_refuses_everything_saying_whether_it_holds_data() {
        for holds_data in [true, false] {
            for (method, path) in [
                (Method::GET, super::super::JOIN_PATH),
                (Method::POST, super::super::STREAM_PATH),
                (Method::POST, super::super::RAFT_PATH),
                (Method::GET, super::super::PROBE_PATH),
                (Method::GET, "/anything"),
            ] {
                let request = Request::builder()
                    .method(method.clone())
                    .uri(path)
                    .body(Body::empty())
                    .expect("a valid request");
                let response = router(7, holds_data)
                    .oneshot(request)
                    .await
                    .expect("infallible");
                assert_eq!(response.status(), StatusCode::SERVICE_UNAVAILABLE);
                assert_eq!(
                    said(response.headers()),
                    Some(holds_data),
                    "{method} {path}"
                );
                assert_eq!(response.headers()["connection"], "close");
                let body = axum::body::to_bytes(response.into_body(), 4096)
                    .await
                    .expect("a short body");
                let text = String::from_utf8_lossy(&body);
                assert!(text.starts_with("node 7 is starting"), "{text}");
            }
        }
        assert_eq!(said(&HeaderMap::new()), None, "an answer of a started node");
    }

    /// The strict reconfiguration check's probe does not count a starting node as the member
    /// answering, as it did not while the port was bound and silent: it takes no part in a
    /// quorum until it has replayed its log. Once started, the node answers as the member.
    #[tokio::test]
    async fn the_probe_counts_a_starting_node_as_not_answering() {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
            .await
            .expect("a free port on 127.0.0.1");
        let url = format!("http://{}", listener.local_addr().expect("bound"));
        let (handoff, router) = crate::serving::Handoff::new(router(2, true));
        tokio::spawn(async move { axum::serve(listener, router).await });
        let filter = std::sync::Arc::new(super::super::PeerFilter::new(1, 0xabc));
        let prober = super::super::probe::Prober::new(super::super::probe_client(None), filter);
        // Given far longer than loopback takes on a busy machine: an answer came, and was
        // not counted, rather than none in time (the probe's own 300 ms).
        let patience = std::time::Duration::from_secs(5);
        let asked = std::time::Instant::now();
        assert_eq!(prober.ask(2, &url, patience).await, None, "starting");
        assert!(
            asked.elapsed() < patience,
            "no answer: {:?}",
            asked.elapsed()
        );
        let started = Router::new().route(
            super::super::PROBE_PATH,
            axum::routing::get(|| async { "ok" }),
        );
        handoff.hand_to(started);
        let status = prober
            .ask(2, &url, patience)
            .await
            .map(|(status, _)| status);
        assert_eq!(status, Some(StatusCode::OK), "started");
    }
}
