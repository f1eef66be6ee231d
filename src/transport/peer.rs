//! One task per peer. Ordinary messages travel on a long-lived stream: one `POST /raft/stream`
//! whose chunked body carries batch after batch for as long as the connection lives, so a
//! batch costs one write, not an HTTP request and a wait for its answer (etcd's rafthttp
//! streams work the same way). Whatever queued while the last write was under way goes out in
//! the next, so batches grow with load by themselves. Snapshots, which can be large, go in a
//! request of their own, streamed from their file ([`super::snapshot`]), and raft hears
//! whether they arrived.
//!
//! A stream is dropped and reopened when it fails, when the peer has not been heard from for a
//! while although we keep sending (a partition leaves a TCP connection that only looks open;
//! a peer's vote requests do not count, as it campaigns precisely when it does not hear us),
//! when the peer's TCP has not acknowledged what we sent for a while although we still hear
//! it (the connection's own timeout, see `transport::stream_client`), and when it has been
//! idle for long.

use std::convert::Infallible;
use std::sync::{Arc, Mutex};

use std::time::{Duration, Instant};

use bytes::Bytes;
use http_body_util::BodyExt;
use http_body_util::combinators::BoxBody;
use hyper::{Method, Request, StatusCode};
use raft::eraftpb::{Message, MessageType};
use tokio::sync::mpsc;
use tokio_util::sync::CancellationToken;

use super::http::{ChannelBody, PeerRefusal};
use super::{
    HEADER_SNAPSHOT, HEADER_URL, HttpClient, PeerEvent, PeerFilter, RAFT_PATH, STREAM_PATH,
    SnapshotId, snapshot,
};
use crate::metrics::Metrics;
use crate::snapshotter::Snapshotter;

/// How long a removed peer's last stream may take to deliver what was written to it.
const DRAIN_LIMIT: Duration = Duration::from_secs(1);
/// Pause after a failed stream, so a dead peer costs one attempt per interval, not a spin.
const RETRY_PAUSE: Duration = Duration::from_millis(100);
/// Most messages per write.
const MAX_BATCH: usize = 1024;
/// Encoded batches buffered between this task and the connection.
const STREAM_BUFFER: usize = 8;
/// A peer we keep sending to but do not hear from for this long gets a fresh connection.
/// Raft peers answer within milliseconds; only a cut or a stopped peer is this quiet.
const SILENCE_LIMIT: Duration = Duration::from_secs(2);
/// A stream with nothing to carry for this long is closed (two followers rarely talk).
const IDLE_LIMIT: Duration = Duration::from_secs(30);
/// How often the task looks at the clock when there is nothing to send.
const WATCH_INTERVAL: Duration = Duration::from_millis(500);
/// After the second snapshot in a row that did not arrive, raft hears of each failure this
/// late, doubled per failure up to [`SNAPSHOT_BACKOFF_MAX`]: it sends the next one only then.
/// A follower whose disk is full refuses every one, each after part of the file travelled,
/// and raft would otherwise send the next at its next heartbeat, ten a second.
const SNAPSHOT_BACKOFF: Duration = Duration::from_millis(250);
const SNAPSHOT_BACKOFF_MAX: Duration = Duration::from_secs(8);

/// What the raft node keeps for a running peer task.
pub struct PeerHandle {
    /// The peer's queue.
    pub tx: mpsc::Sender<Message>,
    /// Stops the task.
    pub cancel: CancellationToken,
    /// Where the peer listens.
    pub url: String,
}

/// Everything a peer task needs.
pub struct PeerTask {
    /// The peer's id.
    pub id: u64,
    /// The peer's URL.
    pub url: String,
    /// Shared HTTP client of the message streams.
    pub client: HttpClient,
    /// Shared HTTP client of snapshots (see `transport::http_client`).
    pub snapshot_client: HttpClient,
    /// Where failures are reported.
    pub inbox: mpsc::Sender<PeerEvent>,
    /// Our cluster identity and id, and when each peer was last heard from.
    pub filter: Arc<PeerFilter>,
    /// Where sent and dropped messages are counted.
    pub metrics: Arc<Metrics>,
    /// The node's snapshot files, which snapshots are streamed from.
    pub snapshots: Snapshotter,
    /// The snapshots sent to this peer: failures in a row, and which was sent last.
    pub snapshot_streak: Arc<SnapshotStreak>,
}

/// The snapshots sent to one peer: how many in a row did not arrive (a streak ends with one
/// that arrives, or after a quiet spell longer than twice the longest pause), and the number
/// of the last one sent, so that a failure reported late (see `SNAPSHOT_BACKOFF`) is
/// dropped once a newer snapshot is under way: raft would take it for that one's, and give
/// it up.
#[derive(Default)]
pub struct SnapshotStreak {
    state: Mutex<StreakState>,
}

#[derive(Default)]
struct StreakState {
    failed: u32,
    last_failure: Option<Instant>,
    sent: u64,
}

impl SnapshotStreak {
    fn state(&self) -> std::sync::MutexGuard<'_, StreakState> {
        // Counters only: what a panicking holder left is still usable.
        self.state.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// A snapshot is sent: its number.
    fn started(&self) -> u64 {
        let mut state = self.state();
        state.sent += 1;
        state.sent
    }

    /// A snapshot did not arrive, at `now`: how many before it in this streak did not.
    fn failed(&self, now: Instant) -> u32 {
        let mut state = self.state();
        let quiet = state
            .last_failure
            .is_some_and(|at| now.saturating_duration_since(at) > 2 * SNAPSHOT_BACKOFF_MAX);
        if quiet {
            state.failed = 0;
        }
        let before = state.failed;
        state.failed += 1;
        state.last_failure = Some(now);
        before
    }

    /// A snapshot arrived: how many before it did not.
    fn delivered(&self) -> u32 {
        let mut state = self.state();
        state.last_failure = None;
        std::mem::take(&mut state.failed)
    }

    /// Whether snapshot `number` is the last one sent.
    fn is_latest(&self, number: u64) -> bool {
        self.state().sent == number
    }
}

/// Starts the task for one peer on `runtime`.
pub fn spawn(
    runtime: &tokio::runtime::Handle,
    task: PeerTask,
    queue: usize,
    cancel: CancellationToken,
) -> PeerHandle {
    let (tx, rx) = mpsc::channel(queue);
    let handle = PeerHandle {
        tx,
        cancel: cancel.clone(),
        url: task.url.clone(),
    };
    runtime.spawn(async move {
        tokio::select! {
            _ = cancel.cancelled() => {}
            _ = task.run(rx) => {}
        }
    });
    handle
}

/// How a stream or a request ended.
pub(super) enum Sent {
    /// Closed by us (idle) or accepted.
    Ok,
    /// The peer says we were removed from the cluster.
    Gone(String),
    /// Refused (another cluster, wrong id), unreachable, or gone quiet.
    Failed(String),
    /// Ended by us, what it carried delivered, because this node's incarnation changed since
    /// it opened (it learned it): the next stream names it at once, carrying these.
    Renamed(Vec<Message>),
}

impl PeerTask {
    async fn run(self, mut rx: mpsc::Receiver<Message>) {
        let mut logged_failure = false;
        // The first stream opens when there is something to carry: a restarting node adds
        // every member its log names, some of them removed a few entries later, and a
        // follower has nothing to say to anyone until a leader speaks to it.
        let mut first = match rx.recv().await {
            Some(m) => vec![m],
            None => return,
        };
        loop {
            let outcome = match self
                .stream(&mut rx, &mut logged_failure, std::mem::take(&mut first))
                .await
            {
                Some(outcome) => outcome,
                None => return, // the transport dropped this peer
            };
            match outcome {
                Sent::Ok => {
                    // Closed for idleness: open the next stream when there is something to
                    // carry, not before.
                    match rx.recv().await {
                        Some(m) => first = vec![m],
                        None => return,
                    }
                }
                Sent::Renamed(pending) => {
                    tracing::debug!(
                        peer = self.id,
                        "reopening the stream to name the incarnation"
                    );
                    first = pending;
                }
                Sent::Gone(reason) => {
                    self.tell_removed(&reason).await;
                    tokio::time::sleep(RETRY_PAUSE).await;
                }
                Sent::Failed(reason) => {
                    tracing::debug!(peer = self.id, %reason, "stream ended");
                    // Once per outage: a dead peer would otherwise log ten lines a second. A
                    // joining node that has not learned its cluster's identity yet cannot
                    // speak at all: that is the join's to report, not a failure of this peer.
                    if !logged_failure && self.filter.cluster_id() != 0 {
                        tracing::warn!(
                            peer = self.id,
                            url = %self.url,
                            %reason,
                            "cannot send to peer"
                        );
                        logged_failure = true;
                    }
                    // try_send: the node may be busy, and a report lost now is made again.
                    let _ = self.inbox.try_send(PeerEvent::Unreachable(self.id));
                    tokio::time::sleep(RETRY_PAUSE).await;
                    // What queued meanwhile is stale; raft resends what still matters, but it
                    // must hear that a snapshot was lost, or it waits for it for good.
                    let mut stale = Vec::new();
                    while rx.try_recv().map(|m| stale.push(m)).is_ok() {}
                    self.count(&self.metrics.peer_messages_dropped, stale.len());
                    // One report, naming the newest queued: raft keeps one snapshot in
                    // flight per peer.
                    if let Some(snap) = stale
                        .iter()
                        .rev()
                        .find(|m| m.get_msg_type() == MessageType::MsgSnapshot)
                    {
                        let _ = self
                            .inbox
                            .send(PeerEvent::SnapshotStatus {
                                peer: self.id,
                                snapshot: SnapshotId::of(snap),
                                delivered: false,
                            })
                            .await;
                    }
                }
            }
        }
    }

    /// Opens a stream and feeds it until it ends. `None` when the queue is closed.
    ///
    /// Nothing here waits on the connection: while it cannot take more (still connecting, or
    /// its buffers are full), one encoded batch waits here and new messages stay in the queue,
    /// which then fills so that the raft node drops and reports instead. The answer future is
    /// polled throughout, because it is what drives the connection: waiting on the body
    /// channel instead would stall a stream that is still connecting, for good.
    async fn stream(
        &self,
        rx: &mut mpsc::Receiver<Message>,
        logged_failure: &mut bool,
        first: Vec<Message>,
    ) -> Option<Sent> {
        let (frames, body) = mpsc::channel(STREAM_BUFFER);
        // What the request names, or less recent: a change in between costs one more reopen.
        let named = self.filter.incarnation();
        let request = match self.request(STREAM_PATH, ChannelBody::open(body).boxed()) {
            Ok(r) => r,
            Err(reason) => return Some(Sent::Failed(reason)),
        };
        let opened = Instant::now();
        tracing::debug!(peer = self.id, "opening a stream");
        let mut answer = std::pin::pin!(self.answer(request));
        let mut batch = Vec::with_capacity(MAX_BATCH);
        batch.extend(first);
        for snap in extract_snapshots(&mut batch) {
            self.spawn_snapshot(snap);
        }
        let mut waiting: Option<(Bytes, usize)> =
            (!batch.is_empty()).then(|| (Bytes::from(super::encode_batch(&batch)), batch.len()));
        batch.clear();
        let mut last_send = Instant::now();
        let mut awaiting_since: Option<Instant> = None;
        let mut watch = tokio::time::interval(WATCH_INTERVAL);
        // Set when this node's incarnation changed since the stream opened: what was read
        // for the next batch, which the next stream carries.
        let mut renamed = None;
        loop {
            tokio::select! {
                biased;
                // The peer answers a stream only to refuse it, or when it breaks.
                outcome = &mut answer => return Some(match outcome {
                    Sent::Ok => Sent::Failed("the peer closed the stream".into()),
                    other => other,
                }),
                permit = frames.reserve(), if waiting.is_some() => {
                    let Ok(permit) = permit else {
                        // The connection dropped the body: its answer says why.
                        return Some(match (&mut answer).await {
                            Sent::Ok => Sent::Failed("the stream broke".into()),
                            other => other,
                        });
                    };
                    let (bytes, count) = waiting
                        .take()
                        .expect("this branch runs only with a batch waiting");
                    permit.send(bytes);
                    tracing::trace!(peer = self.id, count, "batch written to the stream");
                    self.count(&self.metrics.peer_messages_sent, count);
                    last_send = Instant::now();
                    awaiting_since.get_or_insert(last_send);
                }
                n = rx.recv_many(&mut batch, MAX_BATCH), if waiting.is_none() => {
                    if n == 0 {
                        break;
                    }
                    // One load a batch: a stream opened before this node knew its incarnation
                    // names none, and its receiver, knowing its own, must be able to refuse a
                    // node of another run (review 100).
                    if self.filter.incarnation() != named {
                        renamed = Some(std::mem::take(&mut batch));
                        break;
                    }
                    for snap in extract_snapshots(&mut batch) {
                        self.spawn_snapshot(snap);
                    }
                    if !batch.is_empty() {
                        waiting = Some((Bytes::from(super::encode_batch(&batch)), batch.len()));
                        batch.clear();
                    }
                }
                _ = watch.tick() => {
                    let heard = self.filter.last_heard_besides_votes(self.id);
                    if *logged_failure && heard.is_some_and(|h| h >= opened) {
                        tracing::info!(peer = self.id, url = %self.url, "peer reachable again");
                        *logged_failure = false;
                    }
                    if let Some(since) = awaiting_since.or(waiting.as_ref().map(|_| opened)) {
                        if heard.is_some_and(|h| h >= since) {
                            awaiting_since = None;
                        } else if since.elapsed() > SILENCE_LIMIT {
                            return Some(Sent::Failed(format!(
                                "no answer for {SILENCE_LIMIT:?}; reconnecting"
                            )));
                        }
                    }
                    if waiting.is_none() && last_send.elapsed() > IDLE_LIMIT {
                        return Some(Sent::Ok);
                    }
                }
            }
        }
        // The transport dropped this peer (it was removed), or the stream must be renamed:
        // end the body and let the request finish, so what was written is delivered (it ends
        // with the commit index that tells a removed node its removal committed), then stop.
        drop(frames);
        let drained = tokio::time::timeout(DRAIN_LIMIT, answer).await;
        if renamed.is_some() {
            match drained {
                Ok(Sent::Ok) => {}
                // The last batch held a vote request, answered as it would be on a stream
                // that goes on (review 102).
                Ok(Sent::Gone(reason)) => self.tell_removed(&reason).await,
                // Some of what was written may be lost (the peer did not take the stream's
                // end in time): a leader, told, sends again from what the peer acknowledged,
                // rather than waiting for a gap to show (review 101). try_send, as for a
                // failed stream: the node may be busy, and then what it lost shows as a gap.
                _ => {
                    let _ = self.inbox.try_send(PeerEvent::Unreachable(self.id));
                }
            }
        }
        renamed.map(Sent::Renamed)
    }

    /// The peer says this node was removed (`410 Gone`, with the reason `reason`): the raft
    /// node judges whether that is news (see `PeerEvent::RemovedByPeer`).
    async fn tell_removed(&self, reason: &str) {
        tracing::warn!(peer = self.id, %reason, "peer says this node was removed");
        let as_of = super::removed_as_of_index(reason);
        let _ = self
            .inbox
            .send(PeerEvent::RemovedByPeer {
                peer: self.id,
                as_of,
            })
            .await;
    }

    fn count(&self, counter: &prometheus::IntCounterVec, n: usize) {
        if n > 0 {
            counter
                .with_label_values(&[&self.id.to_string()])
                .inc_by(n as u64);
        }
    }

    /// Sends a snapshot in a request of its own and tells raft how it went.
    fn spawn_snapshot(&self, snap: Message) {
        let task = PeerTask {
            id: self.id,
            url: self.url.clone(),
            client: self.snapshot_client.clone(),
            snapshot_client: self.snapshot_client.clone(),
            inbox: self.inbox.clone(),
            filter: self.filter.clone(),
            metrics: self.metrics.clone(),
            snapshots: self.snapshots.clone(),
            snapshot_streak: self.snapshot_streak.clone(),
        };
        let number = self.snapshot_streak.started();
        let snapshot = SnapshotId::of(&snap);
        tokio::spawn(async move {
            let started = Instant::now();
            let outcome = task.send_snapshot(snap).await;
            let delivered = matches!(outcome, Sent::Ok);
            let failed_before = if delivered {
                task.snapshot_streak.delivered()
            } else {
                task.snapshot_streak.failed(Instant::now())
            };
            match &outcome {
                // Once per streak: a follower that cannot take one (its disk is full) is
                // sent the next after a pause, and each would say the same.
                Sent::Failed(reason) if failed_before == 0 => {
                    tracing::warn!(peer = task.id, %reason, "snapshot not delivered")
                }
                Sent::Failed(reason) => tracing::debug!(
                    peer = task.id,
                    %reason,
                    attempts = failed_before + 1,
                    "snapshot not delivered again"
                ),
                Sent::Ok => tracing::info!(
                    peer = task.id,
                    seconds = started.elapsed().as_secs_f64(),
                    failed_before,
                    "snapshot delivered"
                ),
                Sent::Gone(_) | Sent::Renamed(_) => {}
            }
            let counter = if delivered {
                &task.metrics.peer_messages_sent
            } else {
                &task.metrics.peer_messages_dropped
            };
            task.count(counter, 1);
            if !delivered {
                if failed_before > 0 {
                    tokio::time::sleep(snapshot_backoff(failed_before)).await;
                }
                if !task.snapshot_streak.is_latest(number) {
                    return;
                }
            }
            let _ = task
                .inbox
                .send(PeerEvent::SnapshotStatus {
                    peer: task.id,
                    snapshot,
                    delivered,
                })
                .await;
        });
    }

    /// Streams the snapshot `snap` names to the peer; gives up if it stalls.
    async fn send_snapshot(&self, snap: Message) -> Sent {
        let named = super::snapshot_header(&snap);
        let outgoing = match snapshot::outgoing(snap, &self.snapshots) {
            Ok(outgoing) => outgoing,
            Err(reason) => return Sent::Failed(reason),
        };
        let mut request = match self.request(RAFT_PATH, outgoing.body) {
            Ok(request) => request,
            Err(reason) => return Sent::Failed(reason),
        };
        if let Ok(value) = hyper::header::HeaderValue::from_str(&named) {
            request.headers_mut().insert(HEADER_SNAPSHOT, value);
        }
        let outcome =
            snapshot::unless_stalled(self.answer(request), &outgoing.progress, outgoing.total)
                .await
                .unwrap_or_else(|stalled| Sent::Failed(stalled.to_string()));
        // Why the body ended early, if the file is what failed.
        // The body is gone by now, so a reader still waiting to hand over a chunk stops.
        if let Some(reader) = outgoing.reader
            && let Ok(Err(err)) = reader.await
            && !matches!(outcome, Sent::Ok)
        {
            return Sent::Failed(format!("{err}"));
        }
        outcome
    }

    fn request(
        &self,
        path: &str,
        body: BoxBody<Bytes, Infallible>,
    ) -> Result<Request<BoxBody<Bytes, Infallible>>, String> {
        if self.filter.cluster_id() == 0 {
            // Peers refuse a request without the identity; a joining node learns it first.
            return Err("this node has not learned its cluster's identity yet".into());
        }
        let mut request = self.filter.name_sender(
            Request::builder()
                .method(Method::POST)
                .uri(format!("{}{path}", self.url))
                .header(hyper::header::CONTENT_TYPE, "application/octet-stream"),
            self.id,
        );
        if !self.filter.own_url().is_empty() {
            // A peer behind on membership answers through it (see `PeerFilter::route_back`).
            request = request.header(HEADER_URL, self.filter.own_url());
        }
        request
            .body(body)
            .map_err(|err| format!("bad peer URL {}: {err}", self.url))
    }

    /// Sends a request and classifies the answer.
    async fn answer(&self, request: Request<BoxBody<Bytes, Infallible>>) -> Sent {
        let response = match self.client.request(request).await {
            Ok(r) => r,
            Err(err) => return Sent::Failed(error_chain(&err)),
        };
        let status = response.status();
        // Read the (short) body to the end so the connection can be reused; no more than a
        // reason's worth, as the other readers of a peer's answers (found by a review).
        let text = match super::http::read_short(response.into_body(), MAX_ANSWER).await {
            Ok(body) => String::from_utf8_lossy(&body).trim().to_string(),
            Err(err) => return Sent::Failed(format!("{status}, then its answer: {err}")),
        };
        sent(status, text)
    }
}

/// What a peer's answer with `status` and the reason `text` says of a stream or a request.
pub(super) fn sent(status: StatusCode, text: String) -> Sent {
    if status.is_success() {
        return Sent::Ok;
    }
    match PeerRefusal::from_status(status) {
        Some(PeerRefusal::Removed) => Sent::Gone(text),
        _ => Sent::Failed(format!("{status}: {text}")),
    }
}

/// Longest answer of a peer read: its answers are one-line reasons.
const MAX_ANSWER: usize = 16 << 10;

/// How long raft waits to hear of a failed snapshot after `failed_before` others in a row.
fn snapshot_backoff(failed_before: u32) -> Duration {
    SNAPSHOT_BACKOFF
        .saturating_mul(1 << failed_before.saturating_sub(1).min(16))
        .min(SNAPSHOT_BACKOFF_MAX)
}

/// Takes the snapshots out of a batch, keeping the other messages in order.
fn extract_snapshots(batch: &mut Vec<Message>) -> Vec<Message> {
    if !batch
        .iter()
        .any(|m| m.get_msg_type() == MessageType::MsgSnapshot)
    {
        return Vec::new();
    }
    let (snaps, rest) = std::mem::take(batch)
        .into_iter()
        .partition(|m| m.get_msg_type() == MessageType::MsgSnapshot);
    *batch = rest;
    snaps
}

/// An error with its causes: hyper's top-level message ("client error (Connect)") alone
/// does not say what went wrong.
pub(super) fn error_chain(err: &dyn std::error::Error) -> String {
    let mut text = err.to_string();
    let mut source = err.source();
    while let Some(e) = source {
        text.push_str(": ");
        text.push_str(&e.to_string());
        source = e.source();
    }
    text
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::transport::HEADER_INCARNATION;

    /// Failed snapshots in a row: the first two are reported at once, then later and later,
    /// up to the cap.
    #[test]
    fn failed_snapshots_are_reported_later_and_later() {
        let waits: Vec<u128> = (1..=8).map(|n| snapshot_backoff(n).as_millis()).collect();
        assert_eq!(waits, [250, 500, 1000, 2000, 4000, 8000, 8000, 8000]);
        assert_eq!(snapshot_backoff(u32::MAX), SNAPSHOT_BACKOFF_MAX);
    }

    /// A streak of failures ends with a snapshot that arrives, or after a quiet spell (a
    /// later incident, say once this node leads again, starts with a warning and no pause);
    /// a failure of a snapshot that a newer one followed is not the latest.
    #[test]
    fn a_streak_ends_with_a_delivery_or_a_quiet_spell() {
        let streak = SnapshotStreak::default();
        let t0 = Instant::now();
        let first = streak.started();
        assert_eq!(streak.failed(t0), 0);
        let second = streak.started();
        assert!(!streak.is_latest(first) && streak.is_latest(second));
        assert_eq!(streak.failed(t0 + SNAPSHOT_BACKOFF_MAX), 1);
        assert_eq!(streak.failed(t0 + 2 * SNAPSHOT_BACKOFF_MAX), 2);
        assert_eq!(streak.delivered(), 3);
        assert_eq!(streak.failed(t0 + 3 * SNAPSHOT_BACKOFF_MAX), 0);
        let later = t0 + 6 * SNAPSHOT_BACKOFF_MAX;
        assert_eq!(streak.failed(later), 0, "a quiet spell ended the streak");
        assert_eq!(streak.failed(later + SNAPSHOT_BACKOFF), 1);
    }
    use crate::transport::tests::message;
    use crate::transport::{http_client, stream_client};

    /// A listener on a free local port, and its URL.
    async fn local_listener() -> (tokio::net::TcpListener, String) {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
            .await
            .expect("binding a local port");
        let url = format!(
            "http://{}",
            listener
                .local_addr()
                .expect("a bound listener has an address")
        );
        (listener, url)
    }

    /// Node 1's task for peer 2 at `url`, and the receiver of what it tells node 1.
    fn peer_task(
        url: String,
        filter: Arc<super::super::PeerFilter>,
        snapshots: Snapshotter,
    ) -> (PeerTask, mpsc::Receiver<PeerEvent>) {
        let (inbox, events) = mpsc::channel(1024);
        let task = PeerTask {
            id: 2,
            url,
            client: stream_client(None),
            snapshot_client: http_client(None),
            inbox,
            filter,
            metrics: Arc::new(Metrics::new(1)),
            snapshots,
            snapshot_streak: Arc::default(),
        };
        (task, events)
    }

    /// Node 1's task for peer 2 at `url`, running: its handle, its filter, what stops it, and
    /// the folder its snapshots would be in (kept while the test runs).
    fn running_peer_task(
        url: String,
    ) -> (
        PeerHandle,
        Arc<super::super::PeerFilter>,
        CancellationToken,
        tempfile::TempDir,
        mpsc::Receiver<PeerEvent>,
    ) {
        let dir = tempfile::TempDir::new().expect("temp dir");
        let filter = Arc::new(super::super::PeerFilter::new(1, 0xabc));
        let (task, events) = peer_task(
            url,
            filter.clone(),
            Snapshotter::new(dir.path(), 1).expect("snapshot dir"),
        );
        let cancel = CancellationToken::new();
        let handle = spawn(
            &tokio::runtime::Handle::current(),
            task,
            1024,
            cancel.clone(),
        );
        (handle, filter, cancel, dir, events)
    }

    /// A peer's answer is read up to a reason's length: one answering a refusal with a body of
    /// a MiB (a peer of another program on that port, or a misbehaving one) is not held whole.
    #[tokio::test]
    async fn a_peers_long_answer_is_cut_short() {
        use tokio::io::{AsyncReadExt, AsyncWriteExt};
        let (listener, url) = local_listener().await;
        tokio::spawn(async move {
            let (mut connection, _) = listener.accept().await.expect("a connection");
            let mut request = [0u8; 4096];
            let _ = connection.read(&mut request).await;
            let body = "x".repeat(1 << 20);
            let head = format!(
                "HTTP/1.1 400 Bad Request\r\ncontent-length: {}\r\n\r\n",
                body.len()
            );
            let _ = connection.write_all(head.as_bytes()).await;
            let _ = connection.write_all(body.as_bytes()).await;
        });
        let dir = tempfile::TempDir::new().expect("temp dir");
        let snapshots = Snapshotter::new(dir.path(), 1).expect("snapshot dir");
        let filter = Arc::new(super::super::PeerFilter::new(1, 0xabc));
        let (task, _events) = peer_task(url, filter, snapshots);
        let request = task
            .request(RAFT_PATH, BoxBody::new(http_body_util::Empty::new()))
            .expect("a request");
        match tokio::time::timeout(Duration::from_secs(10), task.answer(request))
            .await
            .expect("answered")
        {
            Sent::Failed(reason) => {
                assert!(
                    reason.starts_with("400"),
                    "{}",
                    &reason[..80.min(reason.len())]
                );
                assert!(
                    reason.len() < MAX_ANSWER,
                    "{} bytes of reason",
                    reason.len()
                );
            }
            _ => panic!("a 400 is a failure"),
        }
    }

    /// A peer whose kernel accepted our stream but which never serves it (a restarted node
    /// whose port took the connection before it served, or a proxy stuck in front of it),
    /// while the peer, hearing nothing from us, campaigns at us: its vote requests do not
    /// vouch for our stream, which is replaced within the silence limit. Before, they did,
    /// and the stream was kept for good (the fault suite's kill runs, one in a few dozen).
    #[tokio::test]
    async fn a_stream_the_peer_never_reads_is_replaced_while_the_peer_campaigns() {
        let (listener, url) = local_listener().await;
        let (accepted_tx, mut accepted) = mpsc::unbounded_channel();
        let black_hole = tokio::spawn(async move {
            // Held, never read: the kernel acknowledges what arrives, nobody takes it.
            let mut held = Vec::new();
            while let Ok((connection, _)) = listener.accept().await {
                held.push(connection);
                let _ = accepted_tx.send(());
            }
        });
        let (handle, filter, cancel, _dir, _events) = running_peer_task(url);

        let started = Instant::now();
        let deadline = started + Duration::from_secs(10);
        let mut connections = 0;
        while connections < 2 {
            assert!(
                Instant::now() < deadline,
                "the stream was kept for {:?} although the peer never read it",
                started.elapsed()
            );
            // Our heartbeat goes out; the peer's pre-vote comes in.
            let _ = handle.tx.try_send(message(MessageType::MsgHeartbeat, 1, 2));
            filter.heard_from(2, &[message(MessageType::MsgRequestPreVote, 2, 1)]);
            if let Ok(Some(())) =
                tokio::time::timeout(Duration::from_millis(100), accepted.recv()).await
            {
                connections += 1;
            }
        }
        assert!(
            filter.last_heard(2).is_some(),
            "the pre-votes still count as heard (for routes back)"
        );
        cancel.cancel();
        black_hole.abort();
    }

    /// Sends heartbeats to peer 2 and takes in its answers (a live stream, which nothing else
    /// would end) until a new stream opens; returns the incarnation it names.
    async fn next_named(
        handle: &PeerHandle,
        filter: &super::super::PeerFilter,
        named: &mut mpsc::UnboundedReceiver<Option<String>>,
    ) -> Option<String> {
        // Bounds a failure only: a renamed stream's drain alone may take a second.
        let deadline = Instant::now() + Duration::from_secs(10);
        loop {
            assert!(Instant::now() < deadline, "no new stream within 10 s");
            let _ = handle.tx.try_send(message(MessageType::MsgHeartbeat, 1, 2));
            filter.heard_from(2, &[message(MessageType::MsgHeartbeatResponse, 2, 1)]);
            if let Ok(Some(incarnation)) =
                tokio::time::timeout(Duration::from_millis(50), named.recv()).await
            {
                return incarnation;
            }
        }
    }

    /// The stream ended to name the incarnation is given a moment to deliver what it carried;
    /// a peer that does not take its end in that time may have lost some of it, and raft is
    /// told the peer was unreachable, so that a leader sends again from what the peer
    /// acknowledged. It heard nothing, and waited for the gap to show (review 101).
    #[tokio::test]
    async fn a_renamed_stream_that_does_not_drain_reports_the_peer_unreachable() {
        let events = renamed_after_a_first_stream_that(FirstStream::Stalls).await;
        assert!(
            events
                .iter()
                .any(|e| matches!(e, PeerEvent::Unreachable(2))),
            "the stalled stream's end was not reported: {events:?}"
        );
    }

    /// A peer that answers the renamed stream's end with `410 Gone` (its last batch held a
    /// vote request of a node it removed) is heard as on a stream that goes on: the raft node
    /// is told. It was reported unreachable instead, and the node heard of its removal only
    /// at its next ask (review 102).
    #[tokio::test]
    async fn a_410_that_ends_a_renamed_stream_is_told_to_the_node() {
        let gone = crate::transport::gone_text(1, 7);
        let events = renamed_after_a_first_stream_that(FirstStream::IsGone(gone)).await;
        assert!(
            events.iter().any(|e| matches!(
                e,
                PeerEvent::RemovedByPeer {
                    peer: 2,
                    as_of: Some(7)
                }
            )),
            "the 410 was not told: {events:?}"
        );
    }

    /// What peer 2 does with the stream that names no incarnation, once this node ends it.
    #[derive(Clone)]
    enum FirstStream {
        /// Reads it to its end and answers 204.
        IsRead,
        /// Reads nothing and never answers.
        Stalls,
        /// Reads it to its end and answers `410` with this text.
        IsGone(String),
    }

    /// Node 1's task for peer 2, whose first stream names no incarnation and is ended by this
    /// node learning its own, the peer doing with it what `first` says; the next stream must
    /// name the incarnation. Returns what the task told the node by the time it opened.
    async fn renamed_after_a_first_stream_that(first: FirstStream) -> Vec<PeerEvent> {
        let (listener, url) = local_listener().await;
        let (named_tx, mut named) = mpsc::unbounded_channel();
        let receiver = axum::Router::new()
            .route(
                STREAM_PATH,
                axum::routing::post(
                    |axum::extract::State((named_tx, how)): axum::extract::State<(
                        mpsc::UnboundedSender<Option<String>>,
                        FirstStream,
                    )>,
                     headers: hyper::HeaderMap,
                     body: axum::body::Body| async move {
                        let incarnation = headers
                            .get(HEADER_INCARNATION)
                            .and_then(|v| v.to_str().ok())
                            .map(str::to_string);
                        let first = incarnation.is_none();
                        let _ = named_tx.send(incarnation);
                        if first && matches!(how, FirstStream::Stalls) {
                            // Holds the stream (and its body) open.
                            std::future::pending::<()>().await;
                        }
                        let _ = body.collect().await;
                        match how {
                            FirstStream::IsGone(text) if first => (StatusCode::GONE, text),
                            _ => (StatusCode::NO_CONTENT, String::new()),
                        }
                    },
                ),
            )
            .with_state((named_tx, first));
        let serving = tokio::spawn(axum::serve(listener, receiver).into_future());
        let (handle, filter, cancel, _dir, mut events) = running_peer_task(url);
        let opened = next_named(&handle, &filter, &mut named).await;
        assert_eq!(opened, None, "this node knows none yet");
        filter.set_incarnation(0xb2);
        let reopened = next_named(&handle, &filter, &mut named).await;
        assert_eq!(reopened.as_deref(), Some("b2"));
        cancel.cancel();
        serving.abort();
        let mut told = Vec::new();
        while let Ok(event) = events.try_recv() {
            told.push(event);
        }
        told
    }

    /// A stream opened before this node knew its incarnation named none; once it knows it, the
    /// next batch goes on a new stream that names it, so the receiver can refuse a node of
    /// another run. The stream stayed as it was for as long as it was busy (review 100).
    #[tokio::test]
    async fn a_stream_is_opened_again_to_name_the_incarnation_once_known() {
        renamed_after_a_first_stream_that(FirstStream::IsRead).await;
    }

    /// A snapshot's request names it in a header, `<sender's term>/<index>`, so that a
    /// receiver refusing it by its announced length alone, before reading its message, knows
    /// which snapshot it refused (its `/-/ready` reason then goes stale once it has applied
    /// that index; without it, the reason stayed for the life of the process).
    #[tokio::test]
    async fn a_snapshot_request_names_its_snapshot_in_a_header() {
        use tokio::io::{AsyncReadExt, AsyncWriteExt};

        let (listener, url) = local_listener().await;
        let receiver = tokio::spawn(async move {
            let (mut connection, _) = listener.accept().await.expect("a connection");
            let mut head = Vec::new();
            let mut byte = [0u8; 1];
            while !head.ends_with(b"\r\n\r\n") && head.len() < 64 << 10 {
                connection.read_exact(&mut byte).await.expect("the head");
                head.push(byte[0]);
            }
            connection
                .write_all(
                    b"HTTP/1.1 413 Payload Too Large\r\ncontent-length: 0\r\n\
                      connection: close\r\n\r\n",
                )
                .await
                .expect("the answer");
            String::from_utf8_lossy(&head).to_lowercase()
        });
        let dir = tempfile::TempDir::new().expect("temp dir");
        let snapshots = Snapshotter::new(dir.path(), 1).expect("snapshot dir");
        let mut snap = raft::eraftpb::Snapshot {
            data: vec![7u8; 4096].into(),
            ..Default::default()
        };
        let meta = snap.mut_metadata();
        (meta.term, meta.index) = (2, 9);
        meta.set_conf_state(raft::eraftpb::ConfState::from((vec![1, 2], vec![])));
        snapshots.save(&snap).expect("saved");
        snap.data = crate::snapshotter::handle::file_handle(&crate::snapshotter::snap_name(2, 9));
        let mut m = message(MessageType::MsgSnapshot, 1, 2);
        m.term = 3;
        m.set_snapshot(snap);
        let filter = Arc::new(super::super::PeerFilter::new(1, 0xabc));
        let (task, _events) = peer_task(url, filter, snapshots);
        let sent = tokio::time::timeout(Duration::from_secs(10), task.send_snapshot(m))
            .await
            .expect("the send ends once refused");
        assert!(!matches!(sent, Sent::Ok), "refused, not delivered");
        let head = receiver.await.expect("the receiver");
        assert!(
            head.contains("\r\nx-raftexample-snapshot: 3/9\r\n"),
            "{head}"
        );
    }
}
