//! Snapshots between nodes, streamed from file to file: neither side ever holds one in
//! memory, whatever the size of the state.
//!
//! A snapshot travels in a `POST /raft` of its own. Its body is the `MsgSnapshot` framed as a
//! batch of one (see [`super`]), whose data is a handle announcing the file's length
//! ([`SnapshotData::Follows`]), then the snapshot file itself, byte for byte as the leader
//! keeps it (its layout in [`crate::snapshotter`]):
//!
//! - **Sending** (`outgoing`): the raft node hands the transport a `MsgSnapshot` whose data
//!   names the leader's snapshot file. A blocking task on the transport's runtime reads the
//!   file in chunks into a bounded channel that is the request's body, so the leader's memory
//!   holds a few chunks, not the snapshot, and the raft thread never touches the file. It
//!   checks the file's checksum on the way and holds the last chunk back until it matches: a
//!   damaged file never goes out whole (the request ends short), it is set aside, and raft's
//!   retry then makes the node take a fresh snapshot.
//! - **Receiving** (`receive`): the peer server writes the bytes after the message to
//!   `incoming-<from>-<n>.part` in the snapshot directory as they arrive, syncs it, checks the
//!   whole file (header, metadata against the message's, checksum), and only then hands the
//!   node the message with a handle naming that file. Installing it renames the file into
//!   place ([`crate::raft_node`]'s `install_snapshot`). The sync, the check and the hand-off
//!   have a time limit of their own (`answer_limit`), past which the sender gets a 503.
//!
//! `--max-snapshot-bytes`, when set, bounds the file a peer may send (it costs disk, not
//! memory); by default there is no bound, as in etcd. A message whose snapshot is inline (what
//! an in-memory network delivers, see [`inline_snapshot`]) is accepted within the stream's
//! per-message limit.

use std::convert::Infallible;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use axum::body::Body;
use bytes::Bytes;
use http_body_util::BodyExt;
use http_body_util::combinators::BoxBody;
use raft::eraftpb::{Message, MessageType};
use tokio::io::AsyncWriteExt;
use tokio::sync::mpsc;
use tokio::task::JoinHandle;
use tokio::time::Instant;

use super::PeerLimits;
use super::http::{ChannelBody, PeerRefusal, Refusal};
use super::{RAFT_PATH, encode_batch};
use crate::request::SentSnapshot;
use crate::snapshotter::handle::{file_handle, follows_handle, incoming_name};
use crate::snapshotter::{self, SnapshotData, Snapshotter};

/// Bytes per chunk of a snapshot file on its way out.
const CHUNK: usize = 256 << 10;
/// Chunks read ahead of the connection: what a sender holds of a snapshot at most.
const CHUNKS_AHEAD: usize = 4;
/// A snapshot transfer that makes no progress for this long is given up, on either side;
/// after the last byte, the sender waits longer for the receiver's check ([`stall_limit`]).
pub(super) const STALL_LIMIT: Duration = Duration::from_secs(60);
/// The rate at which a sender expects a receiver to sync the file it has sent, and then to
/// read it back (two passes over the file, see [`settling_time`]), whatever its disk: slow,
/// so that only a receiver that is stuck is given up on.
const CHECK_RATE: u64 = 16 << 20;
/// Buffer between an arriving snapshot and its file.
const WRITE_BUFFER: usize = 1 << 20;

/// A snapshot request on its way out: the body, how far it got, and the task reading the file.
pub(super) struct Outgoing {
    /// The request's body.
    pub(super) body: BoxBody<Bytes, Infallible>,
    /// Bytes handed to the connection so far.
    pub(super) progress: Arc<AtomicU64>,
    /// Bytes of the whole body: once `progress` gets there, the receiver is checking the file.
    pub(super) total: u64,
    /// The task reading the file; its error says why the body ended early.
    pub(super) reader: Option<JoinHandle<Result<(), snapshotter::Error>>>,
}

/// The body of the request that sends the snapshot `message` carries: the message, then the
/// file its handle names, read from `snapshots` by a blocking task. An error names what
/// could not be sent.
pub(super) fn outgoing(mut message: Message, snapshots: &Snapshotter) -> Result<Outgoing, String> {
    let progress = Arc::new(AtomicU64::new(0));
    let data = message.get_snapshot().data.clone();
    let name = match SnapshotData::of(&data) {
        Ok(SnapshotData::File(name)) => name,
        Ok(SnapshotData::Inline(_)) => {
            // Not made by this node's storage, but valid: send it as it is.
            let bytes = Bytes::from(encode_batch(std::slice::from_ref(&message)));
            let total = bytes.len() as u64;
            progress.store(total, Ordering::Relaxed);
            return Ok(Outgoing {
                body: http_body_util::Full::new(bytes)
                    .map_err(|e| match e {})
                    .boxed(),
                progress,
                total,
                reader: None,
            });
        }
        Ok(SnapshotData::Follows(_)) => return Err("a snapshot handle meant for the wire".into()),
        Err(e) => return Err(e.to_string()),
    };
    let file = snapshots.open_raw(name).map_err(|e| e.to_string())?;
    message.mut_snapshot().data = follows_handle(file.len());
    let head = Bytes::from(encode_batch(std::slice::from_ref(&message)));
    let (tx, rx) = mpsc::channel(CHUNKS_AHEAD);
    let total = head.len() as u64 + file.len();
    tx.try_send(head)
        .expect("a fresh channel has room for its first chunk");
    let snapshots = snapshots.clone();
    let counted = progress.clone();
    let reader = tokio::task::spawn_blocking(move || {
        let path = file.path().to_path_buf();
        let named = file.named();
        let mut cut_short = false;
        let copied = file.copy_to(CHUNK, |chunk| {
            let len = chunk.len() as u64;
            if tx.blocking_send(chunk).is_err() {
                cut_short = true;
                return Err(std::io::Error::other("the request ended before the file"));
            }
            counted.fetch_add(len, Ordering::Relaxed);
            Ok(())
        });
        if cut_short {
            // Not the file's doing: the request ended (the follower refused it, or the
            // connection broke), and its outcome says why.
            return Ok(());
        }
        // The body ends here, not after the set-aside: the receiver is not kept waiting on
        // the sender's own bookkeeping (found by a review).
        drop(tx);
        snapshots.set_aside_if_damaged(&path, named, copied)
    });
    Ok(Outgoing {
        body: ChannelBody::sized(rx, total).boxed(),
        progress,
        total,
        reader: Some(reader),
    })
}

/// A send given up: it made no progress for `waited`.
#[derive(Debug, PartialEq, Eq)]
pub(super) struct Stalled {
    pub(super) waited: Duration,
    /// Whether the whole body had been handed over (the receiver was checking the file).
    pub(super) after_last_byte: bool,
}

impl std::fmt::Display for Stalled {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        if self.after_last_byte {
            write!(
                f,
                "no answer for {:?} after the last byte; given up",
                self.waited
            )
        } else {
            write!(f, "no progress for {:?}; given up", self.waited)
        }
    }
}

/// How long a sender waits without progress once `sent` of the body's `total` bytes are
/// handed over. After the last byte the receiver syncs the file and reads it all back
/// before it answers, which no byte of progress shows: a fixed limit would give up on every
/// attempt to send a file that takes longer than that to check (multi-GB state, a slow
/// disk), and each attempt would cost the receiver a full copy again. So the wait then grows
/// with the file, at [`CHECK_RATE`]: a receiver that checks at least that fast is waited
/// for. The price is that a receiver that is stuck there holds the leader's next attempt
/// off for about two minutes more per GiB; retrying sooner would not help it, and would cost
/// the network and its disk the whole file again.
fn stall_limit(sent: u64, total: u64) -> Duration {
    if sent < total {
        return STALL_LIMIT;
    }
    STALL_LIMIT.saturating_add(settling_time(total))
}

/// What a receiver is allowed, beyond a fixed margin, to settle a file of `len` bytes after
/// its last byte: a sync (the file's dirty pages, up to all of it) and a full read-back, two
/// passes at [`CHECK_RATE`]. One pass was counted before, and a receiver whose disk did both
/// at 20 MB/s (107 s for a GiB) was given up on every time (found by a review).
fn settling_time(len: u64) -> Duration {
    Duration::from_secs(len.div_ceil(CHECK_RATE).saturating_mul(2))
}

/// How long a receiver gives itself, from the last byte of a snapshot file of `len` bytes, to
/// sync it, check it and hand it to the raft node, before it answers 503. Without a limit of
/// its own, a step that never finishes (a raft node that takes nothing from its inbox, a disk
/// that never completes a sync) held the sender's slot here and a full-size file until the
/// sender's connection ended, which for a sender that vanished without closing it (power
/// lost, a cut link) is never: that sender's later snapshots were all refused as "already
/// arriving". Half a [`STALL_LIMIT`] below the sender's own allowance ([`stall_limit`]), so
/// the sender hears why rather than giving up blind.
fn answer_limit(len: u64) -> Duration {
    (STALL_LIMIT / 2).saturating_add(settling_time(len))
}

/// Waits for `answer` while the transfer of a body of `total` bytes makes progress; gives up
/// once it has made none for [`stall_limit`].
pub(super) async fn unless_stalled<T>(
    answer: impl std::future::Future<Output = T>,
    progress: &AtomicU64,
    total: u64,
) -> Result<T, Stalled> {
    let mut answer = std::pin::pin!(answer);
    let mut seen = progress.load(Ordering::Relaxed);
    let mut since = Instant::now();
    let mut watch = tokio::time::interval(Duration::from_secs(1));
    loop {
        tokio::select! {
            out = &mut answer => return Ok(out),
            _ = watch.tick() => {
                let now = progress.load(Ordering::Relaxed);
                let limit = stall_limit(now, total);
                if now != seen {
                    seen = now;
                    since = Instant::now();
                } else if since.elapsed() > limit {
                    return Err(Stalled {
                        waited: limit,
                        after_last_byte: now >= total,
                    });
                }
            }
        }
    }
}

fn bad(text: impl Into<String>) -> Refusal {
    Refusal::new(PeerRefusal::Malformed, text)
}

/// An arriving snapshot body and how fast it comes.
struct Arriving {
    body: Body,
    started: Instant,
    /// `--client-timeout-ms` (see [`crate::config::body_patience`]).
    grace: Duration,
    received: u64,
}

impl Arriving {
    fn new(body: Body, grace: Duration) -> Self {
        Arriving {
            body,
            started: Instant::now(),
            grace,
            received: 0,
        }
    }

    /// The next chunk; `None` at the body's end. Refused (408) when nothing arrives for
    /// [`STALL_LIMIT`], and when the body falls behind the least average rate: trickled (a
    /// byte a minute) it would hold its sender's slot for good, and with it the snapshots of
    /// the peer whose id the sender claims.
    async fn next_chunk(&mut self) -> Result<Option<Bytes>, Refusal> {
        loop {
            let due = self.started + crate::config::body_patience(self.grace, self.received);
            let stalled = Instant::now() + STALL_LIMIT;
            let frame = match tokio::time::timeout_at(due.min(stalled), self.body.frame()).await {
                Err(_) if stalled <= due => {
                    return Err(Refusal::new(
                        PeerRefusal::TimedOut,
                        format!("snapshot stalled: nothing arrived for {STALL_LIMIT:?}"),
                    ));
                }
                Err(_) => {
                    return Err(Refusal::new(
                        PeerRefusal::TimedOut,
                        format!(
                            "snapshot too slow: {} bytes in {} ms; past --client-timeout-ms it \
                             must average 64 KiB/s",
                            self.received,
                            self.started.elapsed().as_millis()
                        ),
                    ));
                }
                Ok(None) => return Ok(None),
                Ok(Some(Err(err))) => {
                    return Err(Refusal::cut_short(format!("snapshot broken: {err}")));
                }
                Ok(Some(Ok(frame))) => frame,
            };
            if let Ok(data) = frame.into_data() {
                self.received += data.len() as u64;
                return Ok(Some(data));
            }
        }
    }
}

/// What receiving a snapshot needs of the peer server (which calls [`receive`]): its limits,
/// where arriving files go, and the way to the node.
pub(super) trait Arrivals {
    /// The limits on what a peer may send.
    fn limits(&self) -> PeerLimits;
    /// Where arriving snapshots are written.
    fn incoming_dir(&self) -> &Path;
    /// A number for the next arriving snapshot's file.
    fn next_incoming(&self) -> u64;
    /// Bytes free on the file system of the incoming folder; `None` where that cannot be told.
    fn free_bytes(&self) -> Option<u64>;
    /// Hands `messages` from `from` to the node, after checking their ids.
    fn deliver(
        &self,
        from: u64,
        messages: Vec<Message>,
    ) -> impl Future<Output = Result<(), Refusal>> + Send;
}

/// Receives the body of a snapshot request from `from`, and hands the snapshot to the node;
/// which snapshot, once handed over. A refusal after the snapshot's message was read names
/// it ([`Refusal::snapshot`]).
pub(super) async fn receive(
    server: &impl Arrivals,
    from: u64,
    body: Body,
) -> Result<SentSnapshot, Refusal> {
    let mut sent = None;
    receive_naming(server, from, body, &mut sent)
        .await
        .map_err(|refused| match sent {
            Some(sent) => refused.of_snapshot(sent),
            None => refused,
        })
}

/// [`receive`], setting `sent` to the snapshot once its message is read.
async fn receive_naming(
    server: &impl Arrivals,
    from: u64,
    body: Body,
    sent: &mut Option<SentSnapshot>,
) -> Result<SentSnapshot, Refusal> {
    let limits = server.limits();
    let mut body = Arriving::new(body, limits.snapshot_grace);
    let mut buf = Vec::new();
    let (mut message, used) = loop {
        if let Some(found) = super::wire::decode_one(&buf, limits.max_message)? {
            break found;
        }
        match body.next_chunk().await? {
            Some(data) => buf.extend_from_slice(&data),
            None => {
                return Err(bad(format!(
                    "snapshot request of {} bytes ends before its message",
                    buf.len()
                )));
            }
        }
    };
    buf.drain(..used);
    if message.get_msg_type() != MessageType::MsgSnapshot {
        return Err(bad(format!(
            "{RAFT_PATH} takes snapshots only, not {:?}",
            message.get_msg_type()
        )));
    }
    if let Some(problem) = super::shape::problem(&message) {
        return Err(bad(format!("node {from} sent {problem}")));
    }
    let delivered = SentSnapshot {
        term: message.term,
        index: message.get_snapshot().get_metadata().index,
    };
    *sent = Some(delivered);
    let len = match SnapshotData::of(&message.get_snapshot().data) {
        Ok(SnapshotData::Follows(len)) => len,
        Ok(SnapshotData::Inline(_)) => {
            if !buf.is_empty() || body.next_chunk().await?.is_some() {
                return Err(bad(
                    "a snapshot request with its data inline holds exactly one message",
                ));
            }
            let deadline = Instant::now() + answer_limit(0);
            return within(deadline, from, None, Settle::HandOff, async {
                server.deliver(from, vec![message]).await
            })
            .await
            .map(|()| delivered);
        }
        Ok(SnapshotData::File(_)) => {
            return Err(bad(
                "a snapshot from a peer cannot name a file of this node",
            ));
        }
        Err(e) => return Err(bad(e.to_string())),
    };
    if len > limits.max_snapshot {
        return Err(too_large(limits.max_snapshot));
    }
    if let Some(free) = server.free_bytes()
        && len.saturating_add(limits.keep_free) > free
    {
        return Err(no_room(len, free, limits.keep_free, server.incoming_dir()));
    }
    let name = incoming_name(from, server.next_incoming());
    let part = PartFile {
        path: server.incoming_dir().join(&name),
        handed_over: false,
    };
    let arrived = write_file(&part.path, &buf, &mut body, len).await?;
    // The sender sees no progress from here on; see [`answer_limit`].
    let deadline = Instant::now() + answer_limit(len);
    let file = Some(part.path.as_path());
    within(
        deadline,
        from,
        file,
        Settle::Sync,
        sync_file(&part.path, arrived),
    )
    .await?;
    let meta = message.get_snapshot().get_metadata();
    let (term, index) = (meta.term, meta.index);
    let check = part.path.clone();
    let in_file = within(deadline, from, file, Settle::Check, async move {
        tokio::task::spawn_blocking(move || snapshotter::verify_file(&check, term, index))
            .await
            .map_err(|e| {
                Refusal::new(
                    PeerRefusal::Internal,
                    format!("checking the snapshot failed: {e}"),
                )
            })?
            .map_err(|e| bad(format!("snapshot refused: {e}")))
    })
    .await?;
    // raft installs the message's membership, a restart the file's: they must agree.
    if !super::shape::same_members(in_file.get_conf_state(), meta.get_conf_state()) {
        return Err(bad(format!(
            "snapshot refused: its message says the members are {:?}, its file {:?}",
            meta.get_conf_state(),
            in_file.get_conf_state()
        )));
    }
    message.mut_snapshot().data = file_handle(&name);
    within(deadline, from, file, Settle::HandOff, async {
        server.deliver(from, vec![message]).await
    })
    .await?;
    // Handed over, the file is the node's. `deliver` returns in the poll its send completes
    // in, and `within` polls it before its deadline, so neither a drop of this future nor the
    // deadline falls between the node taking the file and this line.
    part.handed_over();
    Ok(delivered)
}

/// A step of settling an arrived snapshot after its last byte, under `answer_limit`.
#[derive(Debug, Clone, Copy)]
enum Settle {
    /// Syncing the file.
    Sync,
    /// Reading it back to check it.
    Check,
    /// Handing it to the raft node.
    HandOff,
}

impl Settle {
    /// What this node could not do in time, as in "could not ...".
    fn what(self) -> &'static str {
        match self {
            Settle::Sync => "sync it",
            Settle::Check => "check it",
            Settle::HandOff => "hand it to the raft node",
        }
    }

    /// Where its operator should look: the leader's next attempt meets the same trouble.
    fn advice(self) -> String {
        match self {
            Settle::Sync | Settle::Check => format!(
                "check this node's disk (stuck, failing, or slower than {} MiB/s) and its load",
                CHECK_RATE >> 20
            ),
            Settle::HandOff => "its raft node took nothing from its inbox: check its log and \
                                its CPU, and restart it if it stays stuck"
                .to_string(),
        }
    }
}

/// Runs `step` of settling an arrived snapshot from `from` (in `file`, if it has one), unless
/// `deadline` passes first: then logs it and refuses with 503, which the sender reports to
/// raft as a failed snapshot and retries later. The refusal says why this node gave up, for
/// its `/-/ready` ([`Refusal::gave_up`]). A step in a blocking task goes on after it is given
/// up (it cannot be cancelled); the file it works on is removed all the same.
async fn within<T>(
    deadline: Instant,
    from: u64,
    file: Option<&Path>,
    step: Settle,
    work: impl Future<Output = Result<T, Refusal>>,
) -> Result<T, Refusal> {
    match tokio::time::timeout_at(deadline, work).await {
        Ok(done) => done,
        Err(_) => {
            let file = file.map_or_else(|| "inline data".to_string(), |f| f.display().to_string());
            let what = step.what();
            tracing::warn!(
                peer = from,
                %file,
                "snapshot given up: could not {what} in time after its last byte; the sender \
                 will try again"
            );
            Err(Refusal::new(
                PeerRefusal::Unavailable,
                format!(
                    "snapshot from node {from} given up: this node could not {what} in time \
                     after its last byte ({file}); try again later"
                ),
            )
            .gave_up_because(format!(
                "it gave up on one from node {from} after its last byte, as it could not {what} \
                 in time; {}; the leader tries again",
                step.advice()
            )))
        }
    }
}

/// The file of an arriving snapshot, removed when dropped unless handed over: refused, it
/// is nobody's. A guard and not code after the refusal, because hyper drops the handler's
/// future when the sender's connection ends (a leader that gave up, after the last byte,
/// while this side syncs and checks the file): no code after an `.await` runs then, and a
/// full-size file stayed until the next restart, one per attempt.
struct PartFile {
    path: PathBuf,
    handed_over: bool,
}

impl PartFile {
    fn handed_over(mut self) {
        self.handed_over = true;
    }
}

impl Drop for PartFile {
    fn drop(&mut self) {
        if !self.handed_over {
            // One unlink, on the runtime's thread: a drop cannot await, and a task spawned to
            // do it may never run when the drop is the runtime's shutting down.
            let _ = std::fs::remove_file(&self.path);
        }
    }
}

fn io_refusal(path: &Path, what: &str, err: std::io::Error) -> Refusal {
    Refusal::new(
        PeerRefusal::CannotStore,
        format!("cannot {what} {}: {err}", path.display()),
    )
}

/// Writes the `len` bytes of the file that follow the message (`first` of them already
/// read) to `path`; returns the writer once the last byte has arrived, not yet flushed.
async fn write_file(
    path: &Path,
    first: &[u8],
    body: &mut Arriving,
    len: u64,
) -> Result<tokio::io::BufWriter<tokio::fs::File>, Refusal> {
    let io = |what: &str, err: std::io::Error| io_refusal(path, what, err);
    let file = tokio::fs::File::create(path)
        .await
        .map_err(|e| io("create", e))?;
    let mut w = tokio::io::BufWriter::with_capacity(WRITE_BUFFER, file);
    let mut written = 0u64;
    let mut chunk = Bytes::copy_from_slice(first);
    loop {
        written += chunk.len() as u64;
        if written > len {
            return Err(bad(format!(
                "the snapshot file is longer than the {len} bytes announced"
            )));
        }
        w.write_all(&chunk).await.map_err(|e| io("write", e))?;
        match body.next_chunk().await? {
            Some(next) => chunk = next,
            None => break,
        }
    }
    if written < len {
        return Err(bad(format!(
            "the snapshot file ended after {written} of the {len} bytes announced"
        )));
    }
    Ok(w)
}

/// Flushes and syncs the arrived file at `path`: durable before the node renames it into
/// place and writes the WAL marker naming it.
async fn sync_file(
    path: &Path,
    mut w: tokio::io::BufWriter<tokio::fs::File>,
) -> Result<(), Refusal> {
    w.flush().await.map_err(|e| io_refusal(path, "write", e))?;
    w.into_inner()
        .sync_data()
        .await
        .map_err(|e| io_refusal(path, "sync", e))
}

/// A snapshot of `len` bytes refused before any of it is written: `free` bytes in `dir`, of
/// which `keep` are left to the WAL ([`PeerLimits::keep_free`]).
fn no_room(len: u64, free: u64, keep: u64, dir: &Path) -> Refusal {
    Refusal::new(
        PeerRefusal::CannotStore,
        format!(
            "no room for a snapshot of {len} bytes: {free} bytes free in {}, of which this node \
             leaves {keep} to the WAL; free space there",
            dir.display()
        ),
    )
}

/// 413 for a snapshot over `--max-snapshot-bytes`.
pub(super) fn too_large(limit: u64) -> Refusal {
    Refusal::new(
        PeerRefusal::TooLarge,
        format!("snapshot exceeds --max-snapshot-bytes ({limit} bytes)"),
    )
}

/// Makes a `MsgSnapshot` deliverable to a node on another file system: a handle naming a
/// file of the sender's `snapshots` is replaced by the file's data (checked against its
/// checksum; a damaged file is set aside). Anything else is left as it is. This is what an
/// in-memory network (a simulation's) calls on a snapshot before delivering it; the
/// receiving node installs inline data as well as files.
pub fn inline_snapshot(
    snapshots: &Snapshotter,
    message: &mut Message,
) -> Result<(), snapshotter::Error> {
    if message.get_msg_type() != MessageType::MsgSnapshot {
        return Ok(());
    }
    snapshots.inline_data(message.mut_snapshot())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::transport::server::PeerServer;
    use crate::transport::{PeerEvent, PeerFilter, PeerLimits};
    use axum::http::StatusCode;
    use raft::eraftpb::{ConfState, Snapshot};

    /// A leader's snapshotter holding a snapshot of term 2 at index 9 with `data`.
    fn leader_with(dir: &Path, data: &[u8]) -> Snapshotter {
        let snapshotter = Snapshotter::new(dir, 5).expect("snapshotter");
        let mut snap = Snapshot {
            data: data.to_vec().into(),
            ..Default::default()
        };
        let meta = snap.mut_metadata();
        meta.term = 2;
        meta.index = 9;
        meta.set_conf_state(ConfState::from((vec![1, 2], vec![])));
        snapshotter.save(&snap).expect("saved");
        snapshotter
    }

    /// The message raft hands the transport: the snapshot's metadata and a handle.
    fn message_for(snapshotter: &Snapshotter) -> Message {
        let loaded = snapshotter.load(2, 9).expect("the saved snapshot");
        let mut m = Message {
            from: 1,
            to: 2,
            term: 2,
            ..Default::default()
        };
        m.set_msg_type(MessageType::MsgSnapshot);
        let snap = m.mut_snapshot();
        snap.set_metadata(loaded.get_metadata().clone());
        snap.data = file_handle(&crate::snapshotter::snap_name(2, 9));
        m
    }

    fn follower(dir: &Path) -> (PeerServer, mpsc::Receiver<PeerEvent>) {
        follower_with_grace(dir, Duration::from_secs(30))
    }

    fn follower_with_grace(dir: &Path, grace: Duration) -> (PeerServer, mpsc::Receiver<PeerEvent>) {
        let (tx, rx) = mpsc::channel(4);
        (follower_on(dir, tx, grace), rx)
    }

    /// A follower whose raft node's inbox is full and never read: a hand-off to it never
    /// completes.
    fn follower_with_full_inbox(dir: &Path) -> (PeerServer, mpsc::Receiver<PeerEvent>) {
        let (tx, rx) = mpsc::channel(1);
        tx.try_send(PeerEvent::Unreachable(3))
            .expect("a fresh inbox has room for one event");
        (follower_on(dir, tx, Duration::from_secs(30)), rx)
    }

    fn follower_on(dir: &Path, inbox: mpsc::Sender<PeerEvent>, grace: Duration) -> PeerServer {
        PeerServer::new(
            Arc::new(PeerFilter::new(2, 0xabc)),
            inbox,
            Arc::default(),
            PeerLimits {
                max_message: 1 << 20,
                max_snapshot: u64::MAX,
                snapshot_grace: grace,
                keep_free: 64 << 20,
            },
            dir,
        )
    }

    /// Two sends of one damaged file (to two followers) are under way. The first finds the
    /// damage and sets the file aside, and the leader takes the same state again at the same
    /// term and index: a good file of the same name. The second then finds the damage in the
    /// old file it still has open, and must leave the good new one where it is: it set it
    /// aside, and the leader had to take it yet again (found by a review).
    #[tokio::test]
    async fn a_late_second_send_of_a_damaged_file_leaves_the_one_taken_again() {
        let leader_dir = tempfile::TempDir::new().expect("temp dir");
        let data: Vec<u8> = (0..(CHUNKS_AHEAD + 6) * CHUNK)
            .map(|i| (i % 251) as u8)
            .collect();
        let leader = leader_with(leader_dir.path(), &data);
        let path = leader_dir.path().join(crate::snapshotter::snap_name(2, 9));
        let message = message_for(&leader);
        let mut bytes = std::fs::read(&path).expect("the file");
        bytes[5_000] ^= 1;
        std::fs::write(&path, &bytes).expect("damaged");
        // Both open the damaged file; the second is not read until the retake is saved.
        let to_b = outgoing(message.clone(), &leader).expect("a body");
        let to_c = outgoing(message, &leader).expect("a body");
        let _ = wire(to_b).await;
        assert!(!path.exists(), "set aside");
        let mut snap = Snapshot {
            data: data.clone().into(),
            ..Default::default()
        };
        let meta = snap.mut_metadata();
        meta.term = 2;
        meta.index = 9;
        meta.set_conf_state(ConfState::from((vec![1, 2], vec![])));
        leader.save(&snap).expect("taken again");
        let retaken = std::fs::read(&path).expect("the file taken again");
        let _ = wire(to_c).await;
        assert_eq!(
            std::fs::read(&path).ok(),
            Some(retaken),
            "the file taken again stays under its name"
        );
        let mut broken = path.clone().into_os_string();
        broken.push(".sent.broken");
        assert_eq!(
            std::fs::read(&broken).expect("the damaged file, set aside"),
            bytes
        );
    }

    /// What a receiver may take after the last byte covers a sync and a full read-back of
    /// the file on a slow disk (20 MB/s, each pass), and the sender waits longer still, so it
    /// hears the receiver's answer. One pass was counted before: a GiB needed 107 s there
    /// and the receiver gave up after 94 s, on every attempt (found by a review).
    #[test]
    fn the_time_after_the_last_byte_covers_two_passes_of_a_slow_disk() {
        for len in [1u64 << 20, 1 << 30, 10 << 30] {
            let two_passes = Duration::from_secs_f64(2.0 * len as f64 / 20e6);
            assert!(
                answer_limit(len) >= two_passes,
                "{len}: {:?}",
                answer_limit(len)
            );
            assert!(stall_limit(len, len) > answer_limit(len), "{len}");
        }
    }

    /// The whole request body the sender would put on the wire.
    async fn wire(outgoing: Outgoing) -> Bytes {
        let body = outgoing
            .body
            .collect()
            .await
            .expect("infallible")
            .to_bytes();
        if let Some(reader) = outgoing.reader {
            let _ = reader.await.expect("the reader task");
        }
        body
    }

    /// A snapshot larger than every buffer on the way goes from the leader's file to a file
    /// of the follower, byte for byte, and the node gets a handle naming it.
    #[tokio::test]
    async fn a_snapshot_travels_from_file_to_file() {
        let leader_dir = tempfile::TempDir::new().expect("temp dir");
        let follower_dir = tempfile::TempDir::new().expect("temp dir");
        let data: Vec<u8> = (0..3 * CHUNK + 17).map(|i| (i % 251) as u8).collect();
        let leader = leader_with(leader_dir.path(), &data);
        let out = outgoing(message_for(&leader), &leader).expect("a body");
        let body = wire(out).await;
        let file_len =
            std::fs::metadata(leader_dir.path().join(crate::snapshotter::snap_name(2, 9)))
                .expect("the leader's file")
                .len();
        assert!(
            body.len() as u64 > file_len,
            "the whole file follows the message"
        );

        let (server, mut events) = follower(follower_dir.path());
        receive(&server, 1, Body::from(body))
            .await
            .expect("accepted");
        let Some(PeerEvent::Step(mut got)) = events.recv().await else {
            panic!("nothing reached the node");
        };
        let m = got.pop().expect("one message");
        let SnapshotData::File(name) = SnapshotData::of(&m.get_snapshot().data).expect("a handle")
        else {
            panic!("not a file handle");
        };
        assert!(crate::snapshotter::handle::is_incoming_name(name));
        let follower = Snapshotter::new(follower_dir.path(), 5).expect("snapshotter");
        follower
            .adopt(name, m.get_snapshot().get_metadata())
            .expect("installed");
        assert_eq!(follower.load(2, 9).expect("loads").data.as_ref(), &data[..]);
    }

    /// A request that ends before the file (the follower refused it half-way, its disk full)
    /// is not the file's failure: the reader says nothing, so the sender reports the
    /// follower's answer. It used to report "the request ended before the file" as an I/O
    /// error on the leader's own file, in place of the follower's 507 (found by a hands-on
    /// test).
    #[tokio::test]
    async fn a_request_cut_short_is_not_the_files_failure() {
        let leader_dir = tempfile::TempDir::new().expect("temp dir");
        let data: Vec<u8> = (0..(CHUNKS_AHEAD + 4) * CHUNK)
            .map(|i| (i % 251) as u8)
            .collect();
        let leader = leader_with(leader_dir.path(), &data);
        let out = outgoing(message_for(&leader), &leader).expect("a body");
        let mut body = out.body;
        let first = body
            .frame()
            .await
            .expect("a first frame")
            .expect("infallible");
        assert!(first.is_data());
        drop(body);
        let reader = out.reader.expect("a file is read");
        let read = reader.await.expect("the reader task");
        assert!(read.is_ok(), "{read:?}");
        assert!(
            leader_dir
                .path()
                .join(crate::snapshotter::snap_name(2, 9))
                .exists(),
            "the file is not set aside"
        );
    }

    /// A damaged file never goes out whole: its last chunk is held back until the checksum
    /// matches, so the body ends short (the follower refuses it, and nothing stays on its
    /// disk), the reader names the file and offset, and the leader sets the file aside, so
    /// that raft's next attempt takes a fresh snapshot. The whole damaged file was sent
    /// before, and only the follower's own check refused it.
    #[tokio::test]
    async fn a_damaged_file_never_goes_out_whole_and_is_set_aside() {
        let leader_dir = tempfile::TempDir::new().expect("temp dir");
        let follower_dir = tempfile::TempDir::new().expect("temp dir");
        let data: Vec<u8> = (0..3 * CHUNK + 17).map(|i| (i % 251) as u8).collect();
        let leader = leader_with(leader_dir.path(), &data);
        let message = message_for(&leader);
        let path = leader_dir.path().join(crate::snapshotter::snap_name(2, 9));
        let mut bytes = std::fs::read(&path).expect("the file");
        bytes[5_000] ^= 1;
        std::fs::write(&path, &bytes).expect("damaged");
        let out = outgoing(message, &leader).expect("a body");
        let total = out.total;
        let mut body = out.body;
        let mut sent = Vec::new();
        while let Some(frame) = body.frame().await {
            if let Ok(data) = frame.expect("infallible").into_data() {
                sent.extend_from_slice(&data);
            }
        }
        let read = out
            .reader
            .expect("a file is read")
            .await
            .expect("the reader task");
        let err = read.expect_err("the reader finds the damage");
        let text = err.to_string();
        assert!(
            text.contains(&path.display().to_string()) && text.contains("at offset"),
            "{text}"
        );
        assert!(
            (sent.len() as u64) < total,
            "the whole damaged file went out: {} of {total} bytes",
            sent.len()
        );
        assert!(
            !sent.ends_with(&bytes[bytes.len() - CHUNK / 2..]),
            "the file's last bytes went out"
        );
        assert!(!path.exists(), "the damaged file was set aside");
        let mut broken = path.clone().into_os_string();
        broken.push(".sent.broken");
        assert!(Path::new(&broken).exists(), "and kept");
        let (server, _events) = follower(follower_dir.path());
        let refused = receive(&server, 1, Body::from(sent))
            .await
            .expect_err("a body cut short is refused");
        assert_eq!(refused.status(), StatusCode::BAD_REQUEST);
        assert!(refused.text().contains("ended after"), "{refused:?}");
        let left = std::fs::read_dir(follower_dir.path()).expect("dir").count();
        assert_eq!(left, 0, "nothing stays behind");
    }

    /// raft installs the members the message names, a restart those of the file: a message
    /// whose members differ from its file's is refused, and nothing stays on the disk.
    #[tokio::test]
    async fn a_message_whose_members_differ_from_its_file_is_refused() {
        let leader_dir = tempfile::TempDir::new().expect("temp dir");
        let follower_dir = tempfile::TempDir::new().expect("temp dir");
        let leader = leader_with(leader_dir.path(), &[5u8; 1_000]);
        let mut message = message_for(&leader);
        message
            .mut_snapshot()
            .mut_metadata()
            .set_conf_state(ConfState::from((vec![1, 2, 3], vec![])));
        let body = wire(outgoing(message, &leader).expect("a body")).await;
        let (server, _events) = follower(follower_dir.path());
        let refused = receive(&server, 1, Body::from(body))
            .await
            .expect_err("members that differ are refused");
        assert_eq!(refused.status(), StatusCode::BAD_REQUEST);
        assert!(refused.text().contains("its file"), "{refused:?}");
        let left = std::fs::read_dir(follower_dir.path()).expect("dir").count();
        assert_eq!(left, 0, "nothing stays behind");
    }

    /// A snapshot trickled in (a byte every 10 ms: never a stall) is refused once it falls
    /// behind the least average rate past the grace, and nothing stays on the disk. Before,
    /// only a minute without a byte ended it: a sender claiming a leader's id could hold that
    /// leader's snapshots to this node off for good.
    #[tokio::test]
    async fn a_trickled_snapshot_is_refused() {
        let leader_dir = tempfile::TempDir::new().expect("temp dir");
        let follower_dir = tempfile::TempDir::new().expect("temp dir");
        let leader = leader_with(leader_dir.path(), &[5u8; 10_000]);
        let body = wire(outgoing(message_for(&leader), &leader).expect("a body")).await;
        let (server, _events) =
            follower_with_grace(follower_dir.path(), Duration::from_millis(300));
        let (tx, rx) = mpsc::channel(1);
        let trickle = tokio::spawn(async move {
            // The message and half the file at once, then the rest a byte at a time.
            let (first, rest) = body.split_at(body.len() / 2);
            let chunks = std::iter::once(first).chain(rest.chunks(1));
            for chunk in chunks {
                if tx.send(Bytes::copy_from_slice(chunk)).await.is_err() {
                    return;
                }
                tokio::time::sleep(Duration::from_millis(10)).await;
            }
        });
        let refused = receive(&server, 1, Body::new(ChannelBody::open(rx)))
            .await
            .expect_err("a trickled snapshot is refused");
        trickle.abort();
        assert_eq!(refused.status(), StatusCode::REQUEST_TIMEOUT, "{refused:?}");
        assert!(refused.text().contains("too slow"), "{refused:?}");
        let left = std::fs::read_dir(follower_dir.path()).expect("dir").count();
        assert_eq!(left, 0, "nothing stays behind");
    }

    /// A snapshot request's body (a 10,000-byte snapshot's) that sends its first half and then
    /// nothing, its connection held open while the sender returned with it lives.
    async fn half_sent_then_silent() -> (mpsc::Sender<Bytes>, Body) {
        let leader_dir = tempfile::TempDir::new().expect("temp dir");
        let leader = leader_with(leader_dir.path(), &[5u8; 10_000]);
        let body = wire(outgoing(message_for(&leader), &leader).expect("a body")).await;
        let (tx, rx) = mpsc::channel(1);
        tx.send(body.slice(..body.len() / 2))
            .await
            .expect("room for one chunk");
        (tx, Body::new(ChannelBody::open(rx)))
    }

    /// A follower whose disk has `free` bytes left.
    struct Tight<'a> {
        server: &'a PeerServer,
        free: u64,
    }

    impl Arrivals for Tight<'_> {
        fn limits(&self) -> PeerLimits {
            self.server.limits()
        }
        fn incoming_dir(&self) -> &Path {
            self.server.incoming_dir()
        }
        fn next_incoming(&self) -> u64 {
            self.server.next_incoming()
        }
        fn free_bytes(&self) -> Option<u64> {
            Some(self.free)
        }
        fn deliver(
            &self,
            from: u64,
            messages: Vec<Message>,
        ) -> impl Future<Output = Result<(), Refusal>> + Send {
            Arrivals::deliver(self.server, from, messages)
        }
    }

    /// A snapshot the disk has no room for (with a WAL segment's worth to spare) is refused
    /// before any of it is written: 507 at once, naming the folder, where it was written
    /// until the disk was full, on every retry of the leader's, leaving no room for the WAL
    /// of this node or another on that disk (found by a review). Here the body stalls after
    /// its first half: a receiver that began writing would wait for the rest.
    #[tokio::test(start_paused = true)]
    async fn a_snapshot_the_disk_has_no_room_for_is_refused_before_it_is_written() {
        let follower_dir = tempfile::TempDir::new().expect("temp dir");
        let (tx, half_sent) = half_sent_then_silent().await;
        let (server, _events) = follower(follower_dir.path());
        let tight = Tight {
            server: &server,
            free: server.limits().keep_free + 5_000,
        };
        let started = Instant::now();
        let refused = receive(&tight, 1, half_sent).await.expect_err("refused");
        assert_eq!(
            refused.status(),
            StatusCode::INSUFFICIENT_STORAGE,
            "{refused:?}"
        );
        assert!(
            refused.text().contains("no room for a snapshot")
                && refused
                    .text()
                    .contains(&follower_dir.path().display().to_string()),
            "{refused:?}"
        );
        assert_eq!(started.elapsed(), Duration::ZERO, "at once");
        let left = std::fs::read_dir(follower_dir.path()).expect("dir").count();
        assert_eq!(left, 0, "nothing written");
        drop(tx);
    }

    /// A snapshot that stops coming (half sent, then nothing, the connection held open) is
    /// refused once nothing has arrived for STALL_LIMIT, even while the least average rate
    /// would still wait (a long grace), and nothing stays on the disk.
    #[tokio::test(start_paused = true)]
    async fn a_stalled_snapshot_is_refused() {
        let follower_dir = tempfile::TempDir::new().expect("temp dir");
        let (tx, half_sent) = half_sent_then_silent().await;
        let (server, _events) = follower_with_grace(follower_dir.path(), Duration::from_secs(3600));
        let started = Instant::now();
        let refused = receive(&server, 1, half_sent)
            .await
            .expect_err("a stalled snapshot is refused");
        assert_eq!(refused.status(), StatusCode::REQUEST_TIMEOUT, "{refused:?}");
        assert!(refused.text().contains("stalled"), "{refused:?}");
        assert!(
            started.elapsed() >= STALL_LIMIT,
            "gave up after {:?}",
            started.elapsed()
        );
        let left = std::fs::read_dir(follower_dir.path()).expect("dir").count();
        assert_eq!(left, 0, "nothing stays behind");
        drop(tx);
    }

    /// A snapshot that arrived whole, and that the raft node never takes (its inbox full and
    /// never read), is given up by the receiver on its own once `answer_limit` has passed
    /// since the last byte: 503, before the sender's own allowance runs out, and nothing
    /// stays on the disk. It waited for the node for as long as the sender's connection
    /// lasted, and for a sender gone without closing it, for good, its slot with it.
    #[tokio::test(start_paused = true)]
    async fn a_hand_off_the_node_never_takes_is_given_up_after_the_last_byte() {
        let leader_dir = tempfile::TempDir::new().expect("temp dir");
        let follower_dir = tempfile::TempDir::new().expect("temp dir");
        let leader = leader_with(leader_dir.path(), &[5u8; 10_000]);
        let body = wire(outgoing(message_for(&leader), &leader).expect("a body")).await;
        let total = body.len() as u64;
        let (server, mut events) = follower_with_full_inbox(follower_dir.path());
        let senders_allowance = stall_limit(total, total);
        let started = Instant::now();
        let refused =
            tokio::time::timeout(senders_allowance, receive(&server, 1, Body::from(body)))
                .await
                .expect("answered before the sender gives up")
                .expect_err("a hand-off that never completes is refused");
        let waited = started.elapsed();
        assert_eq!(
            refused.status(),
            StatusCode::SERVICE_UNAVAILABLE,
            "{refused:?}"
        );
        assert!(
            refused.text().contains("hand it to the raft node"),
            "{refused:?}"
        );
        assert!(waited >= answer_limit(total), "gave up after {waited:?}");
        let left = std::fs::read_dir(follower_dir.path()).expect("dir").count();
        assert_eq!(left, 0, "nothing stays behind");
        assert!(
            matches!(events.try_recv(), Ok(PeerEvent::Unreachable(3))),
            "the event that filled the inbox"
        );
        assert!(
            events.try_recv().is_err(),
            "the snapshot was not handed over"
        );
    }

    /// The sender waits for the receiver's answer as long as the transfer moves (here a
    /// chunk every 10 s for two minutes, twice STALL_LIMIT), and gives up once it has not
    /// moved for STALL_LIMIT.
    #[tokio::test(start_paused = true)]
    async fn a_send_is_given_up_only_once_it_stops_moving() {
        let progress = Arc::new(AtomicU64::new(0));
        let moving = {
            let progress = progress.clone();
            async move {
                for _ in 0..12 {
                    tokio::time::sleep(Duration::from_secs(10)).await;
                    progress.fetch_add(CHUNK as u64, Ordering::Relaxed);
                }
            }
        };
        let total = 13 * CHUNK as u64;
        assert_eq!(unless_stalled(moving, &progress, total).await, Ok(()));
        let started = Instant::now();
        let stuck = unless_stalled(std::future::pending::<()>(), &progress, total).await;
        assert_eq!(
            stuck,
            Err(Stalled {
                waited: STALL_LIMIT,
                after_last_byte: false
            })
        );
        let waited = started.elapsed();
        assert!(
            (STALL_LIMIT..STALL_LIMIT + Duration::from_secs(2)).contains(&waited),
            "gave up after {waited:?}"
        );
    }

    /// Once the whole body is handed over, the receiver syncs the file and reads it back,
    /// which shows no progress: the sender waits for its answer in proportion to the file (a
    /// 10 GiB one answered 10 minutes after its last byte is delivered), and gives up on one
    /// that never answers only after that allowance. It gave up after STALL_LIMIT before,
    /// and so on every attempt to send a file that takes longer than that to check.
    #[tokio::test(start_paused = true)]
    async fn after_the_last_byte_the_sender_waits_in_proportion_to_the_file() {
        let total = 10u64 << 30;
        let progress = AtomicU64::new(total);
        let checking = tokio::time::sleep(Duration::from_secs(600));
        assert_eq!(unless_stalled(checking, &progress, total).await, Ok(()));

        let allowance = STALL_LIMIT + 2 * Duration::from_secs(total / CHECK_RATE);
        let started = Instant::now();
        let stuck = unless_stalled(std::future::pending::<()>(), &progress, total).await;
        assert_eq!(
            stuck,
            Err(Stalled {
                waited: allowance,
                after_last_byte: true
            })
        );
        let waited = started.elapsed();
        assert!(
            (allowance..allowance + Duration::from_secs(2)).contains(&waited),
            "gave up after {waited:?}"
        );
    }

    /// The leader's connection ends while the follower is past the last byte of a snapshot
    /// and waits to hand it over (here on a full inbox, as it would on a slow sync or check):
    /// hyper drops the handler, and the arrived file goes with it. It stayed, full size,
    /// until the next restart: the removal ran only after an `.await` that never returned
    /// (found by a review).
    #[tokio::test]
    async fn a_snapshot_whose_sender_hangs_up_after_the_last_byte_leaves_no_file() {
        use tokio::io::AsyncWriteExt as _;
        let leader_dir = tempfile::TempDir::new().expect("temp dir");
        let follower_dir = tempfile::TempDir::new().expect("temp dir");
        let data: Vec<u8> = (0..3 * CHUNK + 17).map(|i| (i % 251) as u8).collect();
        let leader = leader_with(leader_dir.path(), &data);
        let body = wire(outgoing(message_for(&leader), &leader).expect("a body")).await;
        let file_len =
            std::fs::metadata(leader_dir.path().join(crate::snapshotter::snap_name(2, 9)))
                .expect("the leader's file")
                .len();

        let (server, _events) = follower_with_full_inbox(follower_dir.path());
        let (addr, shutdown, serving) = crate::serving::serve_on_loopback(server.router()).await;

        let mut leader_conn = tokio::net::TcpStream::connect(addr)
            .await
            .expect("connects");
        let head = format!(
            "POST {RAFT_PATH} HTTP/1.1\r\nHost: follower\r\nContent-Length: {}\r\n\
             {}: 1\r\n{}: 2\r\n{}: abc\r\n\r\n",
            body.len(),
            crate::transport::HEADER_FROM,
            crate::transport::HEADER_TO,
            crate::transport::HEADER_CLUSTER,
        );
        leader_conn
            .write_all(head.as_bytes())
            .await
            .expect("sends the head");
        leader_conn.write_all(&body).await.expect("sends the body");

        let parts = || -> Vec<u64> {
            std::fs::read_dir(follower_dir.path())
                .expect("the follower's folder")
                .flatten()
                .filter(|e| e.file_name().to_string_lossy().ends_with(".part"))
                .map(|e| e.metadata().map_or(0, |m| m.len()))
                .collect()
        };
        let deadline = Instant::now() + Duration::from_secs(10);
        while parts() != [file_len] {
            assert!(
                Instant::now() < deadline,
                "the file never arrived whole: {:?} of {file_len} bytes",
                parts()
            );
            tokio::time::sleep(Duration::from_millis(5)).await;
        }
        drop(leader_conn);
        let deadline = Instant::now() + Duration::from_secs(10);
        while !parts().is_empty() && Instant::now() < deadline {
            tokio::time::sleep(Duration::from_millis(5)).await;
        }
        assert_eq!(parts(), Vec::<u64>::new(), "the arrived file stays behind");
        shutdown.cancel();
        let _ = tokio::time::timeout(Duration::from_secs(10), serving).await;
    }

    /// What an in-memory network does: the handle becomes the file's data, which a node
    /// installs from memory.
    #[test]
    fn inline_snapshot_replaces_the_handle_with_the_data() {
        let dir = tempfile::TempDir::new().expect("temp dir");
        let leader = leader_with(dir.path(), b"state");
        let mut m = message_for(&leader);
        inline_snapshot(&leader, &mut m).expect("inlined");
        assert_eq!(m.get_snapshot().data.as_ref(), b"state");
        let mut other = Message::default();
        inline_snapshot(&leader, &mut other).expect("not a snapshot");
        assert_eq!(other, Message::default());
    }

    /// A damaged file is refused, named, and set aside, so that the leader's next attempt
    /// takes a fresh snapshot instead of failing on the same file for ever.
    #[test]
    fn inlining_a_damaged_snapshot_sets_it_aside() {
        let dir = tempfile::TempDir::new().expect("temp dir");
        let leader = leader_with(dir.path(), b"state");
        let mut m = message_for(&leader);
        let path = dir.path().join(crate::snapshotter::snap_name(2, 9));
        let mut bytes = std::fs::read(&path).expect("the snapshot file");
        let last = bytes.len() - 5;
        bytes[last] ^= 0x40;
        std::fs::write(&path, bytes).expect("damaged");
        let err = inline_snapshot(&leader, &mut m).expect_err("a damaged file is refused");
        assert!(err.to_string().contains("checksum mismatch"), "{err}");
        assert!(
            err.to_string().contains(&path.display().to_string()),
            "{err}"
        );
        assert!(!path.exists());
        let mut broken = path.into_os_string();
        broken.push(".sent.broken");
        assert!(std::path::Path::new(&broken).exists());
    }
}
