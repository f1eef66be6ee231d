//! Peer transport: raft messages between nodes over HTTP on the peer URLs of `--cluster`.
//!
//! Outgoing: the raft node hands every message to [`Transport::send`], which only ever does a
//! `try_send` into the destination peer's bounded queue, so a slow or dead peer can never block
//! the node. Each peer has its own task ([`peer`]) that writes its queue, batch after batch,
//! into a long-lived `POST /raft/stream`; snapshots go in a `POST /raft` of their own.
//! Messages that do not fit are dropped and raft is told the peer is unreachable; raft
//! retransmits what matters.
//!
//! Incoming: [`server`] serves both paths on this node's peer URL and feeds the messages to
//! the raft node's inbox, after checking that they come from this cluster and from a member.
//!
//! Wire format of a batch (a stream is batches back to back): for each message, its protobuf
//! length as a little-endian `u32`, then the protobuf bytes (raft-rs `eraftpb::Message`).
//! Headers name the sender's cluster identity and the sender and receiver ids.

pub mod peer;
pub mod server;

use std::collections::{BTreeSet, HashMap};
use std::convert::Infallible;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, RwLock};
use std::time::{Duration, Instant};

use bytes::Bytes;
use http_body_util::combinators::BoxBody;
use hyper_util::client::legacy::Client;
use hyper_util::client::legacy::connect::HttpConnector;
use hyper_util::rt::TokioExecutor;
use protobuf::Message as PbMessage;
use raft::eraftpb::{Message, MessageType};
use tokio::sync::mpsc;
use tokio_util::sync::CancellationToken;

use crate::metrics::Metrics;
use crate::raft_node::Inbox;

/// Header carrying the sender's cluster identity, in hex.
pub const HEADER_CLUSTER: &str = "x-raftexample-cluster";
/// Header carrying the sender's node id.
pub const HEADER_FROM: &str = "x-raftexample-from";
/// Header carrying the receiver's node id.
pub const HEADER_TO: &str = "x-raftexample-to";
/// Path of the one-request endpoint (snapshots).
pub const RAFT_PATH: &str = "/raft";
/// Path of the streaming endpoint (every other message).
pub const STREAM_PATH: &str = "/raft/stream";

/// Messages queued per peer before new ones are dropped.
const PEER_QUEUE: usize = 4096;

/// How long a removed peer's task may go on sending what was queued for it.
const REMOVAL_GRACE: Duration = Duration::from_secs(2);

/// HTTP client shared by all peer tasks.
pub type HttpClient = Client<HttpConnector, BoxBody<Bytes, Infallible>>;

/// What the transport and its server share with the raft node about the cluster.
#[derive(Debug)]
pub struct PeerFilter {
    /// This node's id.
    pub self_id: u64,
    /// The cluster identity; 0 on a joining node until the first message from the cluster
    /// tells it.
    cluster_id: AtomicU64,
    /// Members removed from the cluster (their vote requests get 410 Gone), and the log index
    /// of the state that says so.
    removed: RwLock<(BTreeSet<u64>, u64)>,
    /// When each peer's messages last arrived: a peer task that keeps sending into silence
    /// knows its connection is dead even while TCP still accepts its writes.
    last_heard: Mutex<HashMap<u64, Instant>>,
}

impl PeerFilter {
    /// A filter for node `self_id` of cluster `cluster_id` (0 if not known yet).
    pub fn new(self_id: u64, cluster_id: u64) -> PeerFilter {
        PeerFilter {
            self_id,
            cluster_id: AtomicU64::new(cluster_id),
            removed: RwLock::new((BTreeSet::new(), 0)),
            last_heard: Mutex::new(HashMap::new()),
        }
    }

    /// Records that messages from `peer` just arrived.
    pub fn heard_from(&self, peer: u64) {
        self.last_heard
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .insert(peer, Instant::now());
    }

    /// When messages from `peer` last arrived.
    pub fn last_heard(&self, peer: u64) -> Option<Instant> {
        self.last_heard
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .get(&peer)
            .copied()
    }

    /// The cluster identity, 0 if not known yet.
    pub fn cluster_id(&self) -> u64 {
        self.cluster_id.load(Ordering::Acquire)
    }

    /// Adopts `id` if no identity is known yet; returns the identity now in force.
    pub fn adopt_cluster_id(&self, id: u64) -> u64 {
        match self
            .cluster_id
            .compare_exchange(0, id, Ordering::AcqRel, Ordering::Acquire)
        {
            Ok(_) => id,
            Err(current) => current,
        }
    }

    /// Replaces the set of removed ids with that of the state as of log index `as_of`.
    pub fn set_removed(&self, removed: &BTreeSet<u64>, as_of: u64) {
        let mut guard = self.removed.write().unwrap_or_else(|p| p.into_inner());
        guard.0.clone_from(removed);
        guard.1 = as_of;
    }

    /// If `id` was removed from the cluster: the log index as of which this node knows it.
    pub fn removed_as_of(&self, id: u64) -> Option<u64> {
        let guard = self.removed.read().unwrap_or_else(|p| p.into_inner());
        guard.0.contains(&id).then_some(guard.1)
    }
}

/// The body of a 410 Gone: it names the log index as of which the answering node counts the
/// sender as removed, since the sender may have been added back after it and the answering
/// node be behind ([`removed_as_of_index`] reads it back).
pub fn gone_text(id: u64, as_of: u64) -> String {
    format!("node {id} was removed from the cluster as of log index {as_of}\n")
}

/// The index in a 410 Gone's body; `None` from a peer that does not say it.
pub fn removed_as_of_index(text: &str) -> Option<u64> {
    let (_, rest) = text.split_once("as of log index ")?;
    rest.trim().parse().ok()
}

/// Peers whose messages were dropped, for raft to hear about: `report_unreachable` for each,
/// and `report_snapshot(Failure)` for those that lost a snapshot (raft-rs otherwise waits for
/// that snapshot's outcome and sends the peer nothing else).
#[derive(Debug, Default)]
pub struct Dropped {
    /// Peers that lost any message.
    pub unreachable: Vec<u64>,
    /// Peers that lost a snapshot.
    pub snapshots: Vec<u64>,
}

impl Dropped {
    /// Records that a message to `peer` was dropped.
    pub fn add(&mut self, peer: u64, snapshot: bool) {
        if !self.unreachable.contains(&peer) {
            self.unreachable.push(peer);
        }
        if snapshot && !self.snapshots.contains(&peer) {
            self.snapshots.push(peer);
        }
    }
}

/// The sending half: one task per peer, owned by the raft node.
pub struct Transport {
    peers: HashMap<u64, peer::PeerHandle>,
    client: HttpClient,
    /// Runtime the peer tasks run on: the server's, not the raft node's own thread, so
    /// messages keep flowing while the node waits for an fsync.
    runtime: tokio::runtime::Handle,
    inbox: mpsc::Sender<Inbox>,
    filter: Arc<PeerFilter>,
    shutdown: CancellationToken,
    metrics: Arc<Metrics>,
}

impl Transport {
    /// A transport with no peers yet.
    pub fn new(
        filter: Arc<PeerFilter>,
        inbox: mpsc::Sender<Inbox>,
        runtime: tokio::runtime::Handle,
        shutdown: CancellationToken,
        metrics: Arc<Metrics>,
    ) -> Transport {
        let mut connector = HttpConnector::new();
        // Raft messages are small and latency-bound: never wait for Nagle.
        connector.set_nodelay(true);
        // A partitioned peer drops our SYNs; without a bound, connecting would retry for
        // minutes and the stream would come back long after the network did.
        connector.set_connect_timeout(Some(Duration::from_secs(1)));
        let client = Client::builder(TokioExecutor::new())
            .pool_max_idle_per_host(4)
            .build(connector);
        Transport {
            peers: HashMap::new(),
            client,
            runtime,
            inbox,
            filter,
            shutdown,
            metrics,
        }
    }

    /// Starts sending to `id` at `url` (or moves it to a new URL).
    pub fn add_peer(&mut self, id: u64, url: &str) {
        if id == self.filter.self_id {
            return;
        }
        if let Some(existing) = self.peers.get(&id) {
            if existing.url == url {
                return;
            }
            self.remove_peer(id);
        }
        tracing::debug!(peer = id, url, "adding peer");
        let handle = peer::spawn(
            &self.runtime,
            peer::PeerTask {
                id,
                url: url.to_string(),
                client: self.client.clone(),
                inbox: self.inbox.clone(),
                filter: self.filter.clone(),
                metrics: self.metrics.clone(),
            },
            PEER_QUEUE,
            self.shutdown.child_token(),
        );
        self.peers.insert(id, handle);
    }

    /// Stops sending to `id`.
    pub fn remove_peer(&mut self, id: u64) {
        if let Some(handle) = self.peers.remove(&id) {
            tracing::debug!(peer = id, "removing peer");
            // Dropping the queue lets the peer's task send what is queued and then end: the
            // last messages to a removed node carry the commit index that tells it its removal
            // committed (without them it never learns, and takes a 410 for news). A peer that
            // cannot be reached is given up after a grace period.
            let cancel = handle.cancel.clone();
            drop(handle);
            self.runtime.spawn(async move {
                tokio::time::sleep(REMOVAL_GRACE).await;
                cancel.cancel();
            });
        }
    }

    /// Queues each message for its peer without ever waiting, and records in `dropped` what
    /// could not be queued (unknown peer or full queue) for raft to be told.
    pub fn send(&mut self, messages: Vec<Message>, dropped: &mut Dropped) {
        for msg in messages {
            let to = msg.to;
            let snapshot = msg.get_msg_type() == MessageType::MsgSnapshot;
            let queued = match self.peers.get(&to) {
                Some(peer) => peer.tx.try_send(msg).is_ok(),
                None => false,
            };
            if !queued {
                self.metrics
                    .peer_messages_dropped
                    .with_label_values(&[&to.to_string()])
                    .inc();
                dropped.add(to, snapshot);
            }
        }
    }

    /// The shared filter (cluster identity, removed ids).
    pub fn filter(&self) -> &Arc<PeerFilter> {
        &self.filter
    }
}

impl Drop for Transport {
    fn drop(&mut self) {
        for (_, peer) in self.peers.drain() {
            peer.cancel.cancel();
        }
    }
}

/// Why a batch body could not be decoded.
#[derive(Debug, thiserror::Error)]
pub enum WireError {
    /// The body ends inside a length prefix or a message.
    #[error("batch truncated at byte {0}")]
    Truncated(usize),
    /// A message's protobuf does not parse.
    #[error("message at byte {offset} does not parse: {source}")]
    Protobuf {
        /// Where the message starts in the body.
        offset: usize,
        /// The parser's complaint.
        source: protobuf::ProtobufError,
    },
}

/// Encodes a batch of messages into one request body.
pub fn encode_batch(messages: &[Message]) -> Vec<u8> {
    let size: usize = messages.iter().map(|m| 4 + m.compute_size() as usize).sum();
    let mut out = Vec::with_capacity(size);
    for m in messages {
        // compute_size caches the sizes, so write_to_vec does not recompute them.
        let len = m.get_cached_size();
        out.extend_from_slice(&len.to_le_bytes());
        m.write_to_vec(&mut out)
            .expect("writing a valid raft message into a Vec cannot fail");
    }
    out
}

/// Decodes a request body written by [`encode_batch`].
pub fn decode_batch(body: &[u8]) -> Result<Vec<Message>, WireError> {
    let (messages, used) = decode_prefix(body)?;
    if used < body.len() {
        return Err(WireError::Truncated(used));
    }
    Ok(messages)
}

/// Decodes the whole messages at the front of `buf` and removes them from it, leaving a
/// partial message (a stream's chunk boundaries fall anywhere) for the next call.
pub fn decode_available(buf: &mut Vec<u8>) -> Result<Vec<Message>, WireError> {
    let (messages, used) = decode_prefix(buf)?;
    buf.drain(..used);
    Ok(messages)
}

/// The whole messages at the front of `body`, and how many bytes they took.
fn decode_prefix(body: &[u8]) -> Result<(Vec<Message>, usize), WireError> {
    let mut out = Vec::new();
    let mut pos = 0;
    while let Some(len_bytes) = body.get(pos..pos + 4) {
        let len_bytes: [u8; 4] = len_bytes
            .try_into()
            .expect("a 4-byte slice converts to [u8; 4]");
        let len = u32::from_le_bytes(len_bytes) as usize;
        let start = pos + 4;
        let Some(bytes) = body.get(start..start + len) else {
            break;
        };
        let msg = Message::parse_from_bytes(bytes).map_err(|source| WireError::Protobuf {
            offset: start,
            source,
        })?;
        out.push(msg);
        pos = start + len;
    }
    Ok((out, pos))
}

#[cfg(test)]
mod tests {

    #[test]
    fn a_410_names_the_index_of_the_removal() {
        let text = super::gone_text(3, 42);
        assert_eq!(super::removed_as_of_index(&text), Some(42));
        assert_eq!(
            super::removed_as_of_index("node 3 was removed from the cluster"),
            None
        );
    }
    use super::*;
    use raft::eraftpb::{Entry, MessageType};

    #[test]
    fn batches_round_trip() {
        let mut a = Message {
            to: 2,
            from: 1,
            term: 3,
            ..Default::default()
        };
        a.set_msg_type(MessageType::MsgAppend);
        a.mut_entries().push(Entry {
            index: 7,
            data: b"payload".to_vec().into(),
            ..Default::default()
        });
        let mut b = Message {
            to: 3,
            ..Default::default()
        };
        b.set_msg_type(MessageType::MsgHeartbeat);
        let body = encode_batch(&[a.clone(), b.clone()]);
        assert_eq!(decode_batch(&body).expect("decodes"), vec![a, b]);
        assert!(decode_batch(&[]).expect("empty body").is_empty());
    }

    #[test]
    fn a_stream_decodes_across_any_chunk_boundary() {
        let messages: Vec<Message> = (1..=3)
            .map(|i| Message {
                to: 2,
                term: i,
                ..Default::default()
            })
            .collect();
        let body = encode_batch(&messages);
        for cut in 0..=body.len() {
            let mut buf = body[..cut].to_vec();
            let mut got = decode_available(&mut buf).expect("a prefix decodes");
            buf.extend_from_slice(&body[cut..]);
            got.extend(decode_available(&mut buf).expect("the rest decodes"));
            assert_eq!(got, messages, "cut at {cut}");
            assert!(buf.is_empty());
        }
    }

    #[test]
    fn truncated_batches_are_errors() {
        let m = Message {
            to: 2,
            term: 9,
            ..Default::default()
        };
        let body = encode_batch(&[m]);
        for cut in 1..body.len() {
            assert!(decode_batch(&body[..cut]).is_err(), "cut at {cut}");
        }
    }
}
