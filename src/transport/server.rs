//! The receiving half of the transport, on this node's peer URL: `POST /raft/stream` (a
//! long-lived stream of batches) and `POST /raft` (one batch, used for snapshots). Both check
//! that the sender is of this cluster and that the message is meant for this node, then hand
//! the messages to the raft node's inbox. A node this one saw removed gets 410 Gone for its
//! vote requests: that tells a removed node that never learned of its removal to stop, before
//! its elections disturb the cluster. Refusals are 4xx with a one-line reason, logged once per
//! sender so a stray node cannot flood the log.

use std::collections::HashSet;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use axum::Router;
use axum::body::{Body, Bytes};
use axum::extract::{DefaultBodyLimit, State};
use axum::http::{HeaderMap, StatusCode};
use axum::routing::post;
use http_body_util::BodyExt;
use raft::eraftpb::{Message, MessageType};
use tokio::sync::mpsc;

use super::{
    HEADER_CLUSTER, HEADER_FROM, HEADER_TO, PeerFilter, RAFT_PATH, STREAM_PATH, decode_available,
    decode_batch,
};
use crate::raft_node::Inbox;

/// Largest single request: a snapshot of a big store travels in one.
const MAX_BATCH_BYTES: usize = 1 << 30;
/// A stream that carries nothing for this long is closed here; its sender reconnects when it
/// has something to say (and a vanished sender does not leave a task behind forever).
const STREAM_IDLE: Duration = Duration::from_secs(60);

/// A refusal: status and one line of reason.
type Refusal = (StatusCode, String);

/// State of the peer endpoints.
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
            .route(STREAM_PATH, post(receive_stream))
            .layer(DefaultBodyLimit::max(MAX_BATCH_BYTES))
            .with_state(self)
    }

    fn log_once(&self, from: u64, cluster: u64, text: &str) {
        let mut logged = self.logged.lock().unwrap_or_else(|p| p.into_inner());
        if logged.insert((from, cluster)) {
            tracing::warn!("{text}");
        }
    }

    /// Checks the headers; returns the sender's id.
    fn admit(&self, headers: &HeaderMap) -> Result<u64, Refusal> {
        let filter = &self.filter;
        let (Some(from), Some(to), Some(cluster)) = (
            header_u64(headers, HEADER_FROM, 10),
            header_u64(headers, HEADER_TO, 10),
            header_u64(headers, HEADER_CLUSTER, 16),
        ) else {
            return Err((
                StatusCode::BAD_REQUEST,
                format!(
                    "missing or malformed {HEADER_FROM}, {HEADER_TO} or {HEADER_CLUSTER} header\n"
                ),
            ));
        };
        if to != filter.self_id {
            let text = format!(
                "message for node {to} reached node {} (check the order of --cluster)",
                filter.self_id
            );
            self.log_once(from, u64::MAX - to, &text);
            return Err((StatusCode::PRECONDITION_FAILED, text + "\n"));
        }
        // A joining node learns its cluster from the first message it gets.
        let ours = if cluster == 0 {
            filter.cluster_id()
        } else {
            filter.adopt_cluster_id(cluster)
        };
        if cluster != 0 && cluster != ours {
            let text = format!(
                "refusing messages from node {from}: it belongs to cluster {cluster:x}, this node \
                 to cluster {ours:x}; node {from} was probably started on a data dir of another \
                 cluster (or with another --cluster-token)"
            );
            self.log_once(from, cluster, &text);
            return Err((StatusCode::PRECONDITION_FAILED, text + "\n"));
        }
        Ok(from)
    }

    /// 410 Gone when a removed node asks for votes. Only then: this node may still be
    /// replaying a log in which the sender was removed and later added back, and refusing
    /// that sender's appends would keep this node from ever reaching the re-addition.
    fn check_not_removed(&self, from: u64, messages: &[Message]) -> Result<(), Refusal> {
        let campaigning = messages.iter().any(|m| {
            matches!(
                m.get_msg_type(),
                MessageType::MsgRequestVote | MessageType::MsgRequestPreVote
            )
        });
        if campaigning && self.filter.is_removed(from) {
            return Err((
                StatusCode::GONE,
                format!("node {from} was removed from the cluster\n"),
            ));
        }
        Ok(())
    }

    /// Hands a batch to the raft node. Every message must be for this node, and from the
    /// sender unless raft relayed it (see [`relayed`]).
    async fn deliver(&self, from: u64, messages: Vec<Message>) -> Result<(), Refusal> {
        if messages
            .iter()
            .any(|m| m.to != self.filter.self_id || (m.from != from && !relayed(m)))
        {
            return Err((
                StatusCode::BAD_REQUEST,
                "batch holds messages whose from/to disagree with the headers\n".to_string(),
            ));
        }
        self.filter.heard_from(from);
        if messages.is_empty() {
            return Ok(());
        }
        self.inbox.send(Inbox::Step(messages)).await.map_err(|_| {
            (
                StatusCode::SERVICE_UNAVAILABLE,
                "raft node is shutting down\n".to_string(),
            )
        })
    }
}

/// Whether raft may have relayed `m` from another node: a follower passes the proposals and
/// read requests it gets on to its leader as they came, with their originator's `from` (a
/// node that led, or that another node took for the leader, gets them after a leader
/// change). Refusing them would refuse the whole batch and reset the stream, losing the
/// sender's own messages with it.
fn relayed(m: &Message) -> bool {
    matches!(
        m.get_msg_type(),
        MessageType::MsgPropose | MessageType::MsgReadIndex
    )
}

fn header_u64(headers: &HeaderMap, name: &str, radix: u32) -> Option<u64> {
    let text = headers.get(name)?.to_str().ok()?;
    u64::from_str_radix(text, radix).ok()
}

async fn receive(State(server): State<PeerServer>, headers: HeaderMap, body: Bytes) -> Refusal {
    let result = async {
        let from = server.admit(&headers)?;
        let messages = decode_batch(&body)
            .map_err(|err| (StatusCode::BAD_REQUEST, format!("bad batch: {err}\n")))?;
        server.check_not_removed(from, &messages)?;
        server.deliver(from, messages).await
    }
    .await;
    result.map_or_else(
        |refusal| refusal,
        |()| (StatusCode::NO_CONTENT, String::new()),
    )
}

/// Reads batch after batch until the sender closes the stream. An answer is sent only when
/// it ends, or at once to refuse it.
async fn receive_stream(
    State(server): State<PeerServer>,
    headers: HeaderMap,
    body: Body,
) -> Refusal {
    let result = async {
        let from = server.admit(&headers)?;
        let mut body = body;
        let mut buf = Vec::new();
        loop {
            let frame = match tokio::time::timeout(STREAM_IDLE, body.frame()).await {
                Err(_) | Ok(None) => return Ok(()),
                Ok(Some(Err(err))) => {
                    return Err((StatusCode::BAD_REQUEST, format!("stream broken: {err}\n")));
                }
                Ok(Some(Ok(frame))) => frame,
            };
            let Ok(data) = frame.into_data() else {
                continue;
            };
            buf.extend_from_slice(&data);
            let messages = decode_available(&mut buf)
                .map_err(|err| (StatusCode::BAD_REQUEST, format!("bad batch: {err}\n")))?;
            server.check_not_removed(from, &messages)?;
            server.deliver(from, messages).await?;
        }
    }
    .await;
    result.map_or_else(
        |refusal| refusal,
        |()| (StatusCode::NO_CONTENT, String::new()),
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    fn message(kind: MessageType, from: u64) -> Message {
        let mut m = Message {
            from,
            to: 3,
            ..Default::default()
        };
        m.set_msg_type(kind);
        m
    }

    /// A follower that led until a moment ago passes on, to the new leader, a proposal and a
    /// read request node 2 sent it: they keep node 2's id, and its batch is taken whole,
    /// its own messages with them. Any other message claiming another sender is refused.
    #[tokio::test]
    async fn relayed_proposals_and_reads_keep_their_originator() {
        let (inbox_tx, mut inbox_rx) = mpsc::channel(8);
        let server = PeerServer::new(Arc::new(PeerFilter::new(3, 0xabc)), inbox_tx);
        let batch = vec![
            message(MessageType::MsgAppendResponse, 1),
            message(MessageType::MsgPropose, 2),
            message(MessageType::MsgReadIndex, 2),
        ];
        server
            .deliver(1, batch.clone())
            .await
            .expect("a batch with relayed messages is taken");
        match inbox_rx.try_recv() {
            Ok(Inbox::Step(got)) => assert_eq!(got, batch),
            _ => panic!("the batch did not reach the raft node"),
        }

        let forged = vec![message(MessageType::MsgAppend, 2)];
        let (status, _) = server
            .deliver(1, forged)
            .await
            .expect_err("an append claiming another sender is refused");
        assert_eq!(status, StatusCode::BAD_REQUEST);
        assert!(
            inbox_rx.try_recv().is_err(),
            "nothing reached the raft node"
        );
    }
}
