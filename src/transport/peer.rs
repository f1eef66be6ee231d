//! One task per peer: drains the peer's bounded queue into batched `POST /raft` requests,
//! one at a time over a kept-alive connection. While a request is in flight, new messages
//! queue up and go out together in the next one, so batching grows with load by itself.

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

use bytes::Bytes;
use http_body_util::{BodyExt, Full};
use hyper::{Method, Request, StatusCode};
use raft::eraftpb::{Message, MessageType};
use tokio::sync::mpsc;
use tokio_util::sync::CancellationToken;

use super::{HEADER_CLUSTER, HEADER_FROM, HEADER_TO, HttpClient, PeerFilter, RAFT_PATH};
use crate::metrics::Metrics;
use crate::raft_node::Inbox;

/// How long a batch of ordinary messages may take. A stopped peer (SIGSTOP) accepts the
/// connection but never answers; without a bound its queue would stall for good.
const BATCH_TIMEOUT: Duration = Duration::from_secs(1);
/// How long a snapshot may take: it can be hundreds of megabytes.
const SNAPSHOT_TIMEOUT: Duration = Duration::from_secs(120);
/// Pause after a failed request, so a dead peer costs one attempt per interval, not a spin.
const RETRY_PAUSE: Duration = Duration::from_millis(100);
/// Most messages per request.
const MAX_BATCH: usize = 1024;

/// What the raft node keeps for a running peer task.
pub struct PeerHandle {
    /// The peer's queue.
    pub tx: mpsc::Sender<Message>,
    /// Stops the task.
    pub cancel: CancellationToken,
    /// Where the peer listens.
    pub url: String,
    /// Whether the last request succeeded.
    pub reachable: Arc<AtomicBool>,
}

/// Everything a peer task needs.
pub struct PeerTask {
    /// The peer's id.
    pub id: u64,
    /// The peer's URL.
    pub url: String,
    /// Shared HTTP client.
    pub client: HttpClient,
    /// Where failures are reported.
    pub inbox: mpsc::Sender<Inbox>,
    /// Our cluster identity and id.
    pub filter: Arc<PeerFilter>,
    /// Where sent and dropped messages are counted.
    pub metrics: Arc<Metrics>,
}

/// Starts the task for one peer on `runtime`.
pub fn spawn(
    runtime: &tokio::runtime::Handle,
    task: PeerTask,
    queue: usize,
    cancel: CancellationToken,
) -> PeerHandle {
    let (tx, rx) = mpsc::channel(queue);
    let reachable = Arc::new(AtomicBool::new(true));
    let handle = PeerHandle {
        tx,
        cancel: cancel.clone(),
        url: task.url.clone(),
        reachable: reachable.clone(),
    };
    runtime.spawn(async move {
        tokio::select! {
            _ = cancel.cancelled() => {}
            _ = task.run(rx, reachable) => {}
        }
    });
    handle
}

/// How a request ended.
enum Sent {
    Ok,
    /// The peer says we were removed from the cluster.
    Gone(String),
    /// The peer refused the batch (another cluster, wrong id) or could not be reached.
    Failed(String),
}

impl PeerTask {
    async fn run(self, mut rx: mpsc::Receiver<Message>, reachable: Arc<AtomicBool>) {
        let mut batch = Vec::with_capacity(MAX_BATCH);
        let mut logged_failure = false;
        while rx.recv_many(&mut batch, MAX_BATCH).await > 0 {
            // A snapshot travels alone, with its own deadline and a status report to raft.
            let snapshots: Vec<Message> = {
                let (snaps, rest): (Vec<_>, Vec<_>) = batch
                    .drain(..)
                    .partition(|m| m.get_msg_type() == MessageType::MsgSnapshot);
                batch = rest;
                snaps
            };
            let mut ok = true;
            if !batch.is_empty() {
                ok = self
                    .deliver(&batch, BATCH_TIMEOUT, &mut logged_failure)
                    .await;
                batch.clear();
            }
            for snap in snapshots {
                let delivered = self
                    .deliver(
                        std::slice::from_ref(&snap),
                        SNAPSHOT_TIMEOUT,
                        &mut logged_failure,
                    )
                    .await;
                let _ = self
                    .inbox
                    .send(Inbox::SnapshotStatus {
                        peer: self.id,
                        delivered,
                    })
                    .await;
                ok &= delivered;
            }
            reachable.store(ok, Ordering::Relaxed);
            if !ok {
                // try_send: the node may be busy, and a report lost now is made again on
                // the next failure.
                let _ = self.inbox.try_send(Inbox::Unreachable(self.id));
                tokio::time::sleep(RETRY_PAUSE).await;
            }
        }
    }

    /// Sends one batch; returns whether the peer accepted it.
    async fn deliver(&self, batch: &[Message], timeout: Duration, logged: &mut bool) -> bool {
        let outcome = match tokio::time::timeout(timeout, self.post(batch)).await {
            Ok(outcome) => outcome,
            Err(_) => Sent::Failed(format!("no answer within {timeout:?}")),
        };
        let counter = match outcome {
            Sent::Ok => &self.metrics.peer_messages_sent,
            _ => &self.metrics.peer_messages_dropped,
        };
        counter
            .with_label_values(&[&self.id.to_string()])
            .inc_by(batch.len() as u64);
        match outcome {
            Sent::Ok => {
                if *logged {
                    tracing::info!(peer = self.id, url = %self.url, "peer reachable again");
                    *logged = false;
                }
                true
            }
            Sent::Gone(reason) => {
                tracing::warn!(peer = self.id, %reason, "peer says this node was removed");
                let _ = self.inbox.send(Inbox::RemovedByPeer(self.id)).await;
                false
            }
            Sent::Failed(reason) => {
                // Once per outage: a dead peer would otherwise log ten lines a second.
                if !*logged {
                    tracing::warn!(peer = self.id, url = %self.url, %reason, "cannot send to peer");
                    *logged = true;
                }
                false
            }
        }
    }

    async fn post(&self, batch: &[Message]) -> Sent {
        let body = super::encode_batch(batch);
        let request = Request::builder()
            .method(Method::POST)
            .uri(format!("{}{}", self.url, RAFT_PATH))
            .header(hyper::header::CONTENT_TYPE, "application/octet-stream")
            .header(HEADER_CLUSTER, format!("{:x}", self.filter.cluster_id()))
            .header(HEADER_FROM, self.filter.self_id.to_string())
            .header(HEADER_TO, self.id.to_string())
            .body(Full::new(Bytes::from(body)));
        let request = match request {
            Ok(r) => r,
            Err(err) => return Sent::Failed(format!("bad peer URL {}: {err}", self.url)),
        };
        let response = match self.client.request(request).await {
            Ok(r) => r,
            Err(err) => return Sent::Failed(err.to_string()),
        };
        let status = response.status();
        // Read the (short) body to the end so the connection goes back to the pool.
        let text = match response.into_body().collect().await {
            Ok(body) => String::from_utf8_lossy(&body.to_bytes()).trim().to_string(),
            Err(err) => return Sent::Failed(err.to_string()),
        };
        match status {
            s if s.is_success() => Sent::Ok,
            StatusCode::GONE => Sent::Gone(text),
            s => Sent::Failed(format!("{s}: {text}")),
        }
    }
}
