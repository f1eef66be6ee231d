//! The receiving half of the transport: `POST /raft` on this node's peer URL. It checks that a
//! batch comes from this cluster, is meant for this node and is not from a removed member,
//! then hands the messages to the raft node's inbox. Refusals are 4xx with a one-line reason,
//! logged once per sender so a stray node cannot flood the log.

use std::collections::HashSet;
use std::sync::{Arc, Mutex};

use axum::Router;
use axum::body::Bytes;
use axum::extract::{DefaultBodyLimit, State};
use axum::http::{HeaderMap, StatusCode};
use axum::routing::post;
use tokio::sync::mpsc;

use super::{HEADER_CLUSTER, HEADER_FROM, HEADER_TO, PeerFilter, RAFT_PATH, decode_batch};
use crate::raft_node::Inbox;

/// Largest batch accepted: a snapshot of a big store travels in one request.
const MAX_BATCH_BYTES: usize = 1 << 30;

/// State of the peer endpoint.
#[derive(Clone)]
pub struct PeerServer {
    filter: Arc<PeerFilter>,
    inbox: mpsc::Sender<Inbox>,
    /// (sender, its cluster) pairs already reported as foreign.
    logged: Arc<Mutex<HashSet<(u64, u64)>>>,
}

impl PeerServer {
    /// A server feeding `inbox`.
    pub fn new(filter: Arc<PeerFilter>, inbox: mpsc::Sender<Inbox>) -> PeerServer {
        PeerServer {
            filter,
            inbox,
            logged: Arc::default(),
        }
    }

    /// The peer router.
    pub fn router(self) -> Router {
        Router::new()
            .route(RAFT_PATH, post(receive))
            .layer(DefaultBodyLimit::max(MAX_BATCH_BYTES))
            .with_state(self)
    }

    fn log_once(&self, from: u64, cluster: u64, text: &str) {
        let mut logged = self.logged.lock().unwrap_or_else(|p| p.into_inner());
        if logged.insert((from, cluster)) {
            tracing::warn!("{text}");
        }
    }
}

fn header_u64(headers: &HeaderMap, name: &str, radix: u32) -> Option<u64> {
    let text = headers.get(name)?.to_str().ok()?;
    u64::from_str_radix(text, radix).ok()
}

async fn receive(
    State(server): State<PeerServer>,
    headers: HeaderMap,
    body: Bytes,
) -> (StatusCode, String) {
    let filter = &server.filter;
    let (Some(from), Some(to), Some(cluster)) = (
        header_u64(&headers, HEADER_FROM, 10),
        header_u64(&headers, HEADER_TO, 10),
        header_u64(&headers, HEADER_CLUSTER, 16),
    ) else {
        return (
            StatusCode::BAD_REQUEST,
            format!("missing or malformed {HEADER_FROM}, {HEADER_TO} or {HEADER_CLUSTER} header\n"),
        );
    };
    if to != filter.self_id {
        let text = format!(
            "message for node {to} reached node {} (check the order of --cluster)",
            filter.self_id
        );
        server.log_once(from, u64::MAX - to, &text);
        return (StatusCode::PRECONDITION_FAILED, text + "\n");
    }
    // A joining node learns its cluster from the first message it gets.
    let ours = if cluster == 0 {
        filter.cluster_id()
    } else {
        filter.adopt_cluster_id(cluster)
    };
    if cluster != 0 && cluster != ours {
        let text = format!(
            "refusing messages from node {from}: it belongs to cluster {cluster:x}, this node to \
             cluster {ours:x}; node {from} was probably started on a data dir of another cluster \
             (or with another --cluster-token)"
        );
        server.log_once(from, cluster, &text);
        return (StatusCode::PRECONDITION_FAILED, text + "\n");
    }
    if filter.is_removed(from) {
        return (
            StatusCode::GONE,
            format!("node {from} was removed from the cluster\n"),
        );
    }
    let messages = match decode_batch(&body) {
        Ok(m) => m,
        Err(err) => return (StatusCode::BAD_REQUEST, format!("bad batch: {err}\n")),
    };
    if messages
        .iter()
        .any(|m| m.to != filter.self_id || m.from != from)
    {
        return (
            StatusCode::BAD_REQUEST,
            "batch holds messages whose from/to disagree with the headers\n".to_string(),
        );
    }
    if server.inbox.send(Inbox::Step(messages)).await.is_err() {
        return (
            StatusCode::SERVICE_UNAVAILABLE,
            "raft node is shutting down\n".to_string(),
        );
    }
    (StatusCode::NO_CONTENT, String::new())
}
