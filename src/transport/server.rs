//! The receiving half of the transport, on this node's peer URL:
//!
//! - `POST /raft/stream`: a long-lived stream of batches, every message but snapshots. Each
//!   message's length is checked against [`PeerLimits::max_message`] as soon as its prefix
//!   arrives, so a connection holds at most one bounded message; a sender has one stream at a
//!   time (a new one replaces the old, as in etcd's rafthttp).
//! - `POST /raft`: one snapshot, written to a file as it arrives, checked, and handed to raft
//!   as a handle naming that file ([`super::snapshot`]).
//! - `GET /raft/join`: a joining node asks for the cluster's identity ([`super::join`]).
//! - `GET /raft/probe`: the strict reconfiguration check asks whether this node answers as
//!   the member it probes ([`super::probe`]); refused only for what the prober names and this
//!   node knows otherwise. The answer says whether this build stores values of any bytes, as
//!   every request of this build does ([`super::builds`], which the server records for each
//!   member it admits).
//!
//! A stream or a snapshot must name this cluster's identity (a joining node refuses everything
//! until it has learned it) and, when both sides know it, this run's incarnation (a data dir
//! kept from an earlier run with the same flags: see [`crate::incarnation`]), be meant for this
//! node, and come from a member. A sender this node does not know is let in only while this
//! node knows no leader or takes that sender for the leader: a node that missed a membership
//! change must still hear the leader that was added meanwhile, while a node that hears its
//! leader has no reason to listen to strangers. Such a sender is answered at the peer URL its
//! requests name (`x-raftexample-url`), since the transport has no peer for it. A node this one
//! counts as removed gets 410 Gone for its vote requests when its log ends within what this
//! node has applied, and this node's members are the latest as far as it can tell (it leads
//! with every membership change in its log applied, or follows a leader and has applied an
//! entry of its term with none left unapplied): that tells a removed node that never learned of
//! its removal to stop, before its elections disturb the cluster (a longer log may hold its
//! re-addition, which this node has yet to apply: see [`gone_as_of`]).
//!
//! A refusal's status says what it means, chosen in one place for both ends ([`PeerRefusal`]:
//! mostly 4xx; 503 for not now, joining among them; 507 for no room for a snapshot). It comes
//! with a one-line reason and `Connection: close`, so a connection that sent garbage is closed.
//! A sender refused for who it is (another cluster, run or node; a stranger) is logged once per
//! sender and what it named, and a request refused as what no correct node sends (400, 413)
//! at WARN once a minute per remote address and kind, with the route, the sender it names and
//! how many were held back: neither a stray node nor a scanner can flood the log. Without TLS these
//! checks keep out mistakes, not attackers: the headers can be forged by anyone who can reach
//! the port. Peer TLS keeps out whoever has no certificate from `--peer-trusted-ca-file`.

use std::collections::{HashMap, HashSet};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use axum::Router;
use axum::body::Body;
use axum::extract::State;
use axum::http::{HeaderMap, HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use http_body_util::BodyExt;
use raft::eraftpb::{Message, MessageType};
use tokio::sync::mpsc;
use tokio::time::Instant;
use tokio_util::sync::CancellationToken;

use super::builds::{Build, Heard};
use super::join::{Answer, MemberView, NoAnswer};
use super::{
    Admission, HEADER_APPLIED, HEADER_APPLIED_TERM, HEADER_CLUSTER, HEADER_FROM,
    HEADER_INCARNATION, HEADER_LEADER, HEADER_OLDER, HEADER_REST_LISTEN, HEADER_SESSION,
    HEADER_SNAPSHOT, HEADER_TERM, HEADER_TO, HEADER_URL, HEADER_VALUES, HEADER_VOTERS, JOIN_PATH,
    PROBE_PATH, PeerEvent, PeerFilter, PeerLimits, RAFT_PATH, STREAM_PATH, decode_available,
    gone_as_of, gone_text, snapshot,
};
use crate::membership::{check_peer_scheme, validate_peer_url};
use crate::request::Shared;

use super::http::Refused;
pub use super::http::{PeerRefusal, Refusal};

/// A stream that carries nothing for this long is closed here; its sender reconnects when it
/// has something to say (and a vanished sender does not leave a task behind forever).
const STREAM_IDLE: Duration = Duration::from_secs(60);

/// Numbers the files of arriving snapshots, across every server of the process: a node
/// stopped and started again in one process (the tests do) never names a file as the one
/// before it did, whose removal may still be queued on the snapshotter's reaper thread.
static NEXT_INCOMING: AtomicU64 = AtomicU64::new(0);

/// State of the peer endpoints.
#[derive(Clone)]
pub struct PeerServer {
    filter: Arc<PeerFilter>,
    inbox: mpsc::Sender<PeerEvent>,
    /// Who leads, as the raft node last said (for senders outside the membership).
    shared: Arc<Shared>,
    limits: PeerLimits,
    /// Where arriving snapshots are written (the snapshot directory).
    incoming_dir: PathBuf,
    /// The open stream of each sender: its number and how to end it.
    streams: Arc<Mutex<HashMap<u64, (u64, CancellationToken)>>>,
    next_stream: Arc<AtomicU64>,
    /// Senders whose snapshot is arriving right now.
    arriving: Arc<Mutex<HashSet<u64>>>,
    /// The lines logged of what requests can make this server log, to limit repeats.
    said: Arc<Mutex<Said>>,
    /// The address this node's REST API listens on, told in the probe's answer (see
    /// [`HEADER_REST_LISTEN`]); none in tests that run no REST API.
    rest_listen: Option<std::net::SocketAddr>,
}

/// At most this many lines are remembered as logged ([`Said`]).
const LOGGED_MAX: usize = 1024;

/// A request refused as one no correct node sends is logged at most this often per remote
/// address and kind ([`Line::Refused`]).
const REFUSED_EVERY: Duration = Duration::from_secs(60);

/// The lines the peer server logged of what a request can make it log, so that no one who
/// reaches the port can fill the disk with them: a repeat of a line (the same [`Line`]) is
/// held back, for good or until its [`Line::every`] has passed, when it is said with how many
/// were held back meanwhile.
#[derive(Default)]
struct Said {
    lines: HashMap<Line, Last>,
}

/// What a logged line is about; a repeat is a line about the same.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
enum Line {
    /// Sender `from` and what it named that this node refuses, or lets in from outside the
    /// membership (its cluster, its incarnation, the node it meant, or 0 and 1 for a
    /// stranger let in or refused): said once.
    Sender { from: u64, what: u64 },
    /// A request refused as `kind` (400 or 413, what no correct node sends) from `remote`,
    /// `None` if unknown (a router called without a socket): said once per
    /// [`REFUSED_EVERY`]. By address, not port: a refusal closes its connection, and the
    /// next request comes from another port.
    Refused {
        remote: Option<std::net::IpAddr>,
        kind: PeerRefusal,
    },
}

impl Line {
    /// After how long a repeat is said again; `None`: never.
    fn every(self) -> Option<Duration> {
        match self {
            Line::Sender { .. } => None,
            Line::Refused { .. } => Some(REFUSED_EVERY),
        }
    }
}

/// When a line was last said, and how many repeats were held back since.
struct Last {
    at: Instant,
    held_back: u64,
}

impl Said {
    /// Whether `line` is to be said at `now`: if so, with how many repeats were held back
    /// since it last was.
    fn admit(&mut self, line: Line, now: Instant) -> Option<u64> {
        // The lines are about what requests say, which anyone can write: forgetting them all
        // now and then keeps the map bounded (a line may then be said again).
        if self.lines.len() >= LOGGED_MAX && !self.lines.contains_key(&line) {
            self.lines.clear();
        }
        let Some(last) = self.lines.get_mut(&line) else {
            self.lines.insert(
                line,
                Last {
                    at: now,
                    held_back: 0,
                },
            );
            return Some(0);
        };
        match line.every() {
            Some(every) if now.saturating_duration_since(last.at) >= every => {
                last.at = now;
                Some(std::mem::take(&mut last.held_back))
            }
            _ => {
                last.held_back = last.held_back.saturating_add(1);
                None
            }
        }
    }
}

impl PeerServer {
    /// A server feeding `inbox`, writing arriving snapshots into `incoming_dir`. Removes the
    /// files of snapshots that were still arriving when the node last stopped.
    pub fn new(
        filter: Arc<PeerFilter>,
        inbox: mpsc::Sender<PeerEvent>,
        shared: Arc<Shared>,
        limits: PeerLimits,
        incoming_dir: &Path,
    ) -> PeerServer {
        for entry in std::fs::read_dir(incoming_dir)
            .into_iter()
            .flatten()
            .flatten()
        {
            // Arriving when the node stopped, or arrived and never installed.
            if crate::snapshotter::handle::is_incoming_name(&entry.file_name().to_string_lossy()) {
                let _ = std::fs::remove_file(entry.path());
            }
        }
        PeerServer {
            filter,
            inbox,
            shared,
            limits,
            incoming_dir: incoming_dir.to_path_buf(),
            streams: Arc::default(),
            next_stream: Arc::default(),
            arriving: Arc::default(),
            said: Arc::default(),
            rest_listen: None,
        }
    }

    /// The server, telling in the probe's answer that this node's REST API listens on `addr`.
    pub fn with_rest_listen(mut self, addr: std::net::SocketAddr) -> PeerServer {
        self.rest_listen = Some(addr);
        self
    }

    /// The peer router.
    pub fn router(self) -> Router {
        Router::new()
            .route(RAFT_PATH, post(receive_snapshot))
            .route(STREAM_PATH, post(receive_stream))
            .route(JOIN_PATH, get(answer_join))
            .route(PROBE_PATH, get(answer_probe))
            .route_layer(axum::middleware::from_fn_with_state(
                self.clone(),
                log_refusals,
            ))
            .with_state(self)
    }

    /// Whether to log `line` now ([`Said::admit`]).
    fn say(&self, line: Line) -> Option<u64> {
        let mut said = self.said.lock().unwrap_or_else(|p| p.into_inner());
        // Returned, and logged by the caller, not under the lock: a stderr nobody reads
        // blocks the write, and every other request refused meanwhile would wait on the lock,
        // each holding a worker thread.
        said.admit(line, Instant::now())
    }

    fn log_once(&self, from: u64, what: u64, text: &str) {
        if self.say(Line::Sender { from, what }).is_some() {
            tracing::warn!("{text}");
        }
    }

    /// Logs `refused`, the answer to a request to `route` from `remote` that names itself
    /// node `from`, if it refuses what no correct node sends (400 or 413) and its line is due
    /// ([`Line::Refused`]). Only the sender hears of the refusal otherwise: a node whose
    /// cluster misbehaves because some process (a misconfigured node, another build, a
    /// scanner) sends it garbage showed nothing of it in its log.
    fn log_refused(
        &self,
        remote: Option<std::net::SocketAddr>,
        route: &str,
        from: Option<u64>,
        refused: &Refused,
    ) {
        if refused.cut {
            // A peer that reconnects or stops cuts its stream: nothing to warn of (a healthy
            // cluster's start did, found by a hands-on campaign).
            tracing::debug!(
                remote = remote.map(tracing::field::display),
                route = %route,
                peer = from,
                "peer request cut short: {}",
                refused.text
            );
            return;
        }
        if !matches!(refused.kind, PeerRefusal::Malformed | PeerRefusal::TooLarge) {
            return;
        }
        let line = Line::Refused {
            remote: remote.map(|addr| addr.ip()),
            kind: refused.kind,
        };
        let Some(held_back) = self.say(line) else {
            return;
        };
        tracing::warn!(
            remote = remote.map(tracing::field::display),
            route = %route,
            peer = from,
            suppressed = (held_back > 0).then_some(held_back),
            "refused a peer request ({}): {}",
            refused.kind.status(),
            refused.text
        );
    }

    /// Checks the headers of a raft request; returns the sender's id and where it may be
    /// answered if this node does not count it as a member ([`PeerServer::url_back`]).
    fn admit(&self, headers: &HeaderMap) -> Result<(u64, Option<String>), Refusal> {
        let filter = &self.filter;
        let (Some(from), Some(to), Some(cluster)) = (
            header_u64(headers, HEADER_FROM, 10),
            header_u64(headers, HEADER_TO, 10),
            header_u64(headers, HEADER_CLUSTER, 16),
        ) else {
            return Err(Refusal::new(
                PeerRefusal::Malformed,
                format!(
                    "missing or malformed {HEADER_FROM}, {HEADER_TO} or {HEADER_CLUSTER} header"
                ),
            ));
        };
        self.check_to(from, to)?;
        let ours = filter.cluster_id();
        if ours == 0 {
            return Err(Refusal::new(
                PeerRefusal::Unavailable,
                format!(
                    "node {} has not learned its cluster's identity yet: it asks the members in \
                     its --cluster until one says it was added (POST /{})",
                    filter.self_id, filter.self_id
                ),
            ));
        }
        self.check_cluster(from, cluster)?;
        self.check_incarnation(from, headers)?;
        if from == filter.self_id {
            return Err(Refusal::new(
                PeerRefusal::Malformed,
                format!("a message from node {from} reached node {from} itself"),
            ));
        }
        self.check_member(from)?;
        let url_back = self.url_back(headers);
        self.keep_route_back(from, url_back.as_deref());
        self.note_build(from, headers);
        Ok((from, url_back))
    }

    /// Records the build an admitted request's sender runs, if it is a member (see
    /// [`super::builds`]): at each request, as a node restarted on another build opens new
    /// streams.
    fn note_build(&self, from: u64, headers: &HeaderMap) {
        if from != self.filter.self_id && self.filter.is_member(from) {
            self.filter
                .builds()
                .record(from, Build::of(headers), Heard::Request);
        }
    }

    /// The checks of [`Self::admit`] that a probe can fail (see `answer_probe`).
    fn check_probe(&self, headers: &HeaderMap) -> Result<(), Refusal> {
        let from = header_u64(headers, HEADER_FROM, 10).unwrap_or(0);
        if let Some(to) = header_u64(headers, HEADER_TO, 10) {
            self.check_to(from, to)?;
        }
        let cluster = header_u64(headers, HEADER_CLUSTER, 16).unwrap_or(0);
        if cluster != 0 && self.filter.cluster_id() != 0 {
            self.check_cluster(from, cluster)?;
        }
        self.check_incarnation(from, headers)?;
        // A member of this cluster, as the prober names itself, is heard as a sender is.
        if from != 0 && cluster != 0 && cluster == self.filter.cluster_id() {
            self.note_build(from, headers);
        }
        Ok(())
    }

    /// Refuses a sender that names another cluster than this node's, which it knows.
    fn check_cluster(&self, from: u64, cluster: u64) -> Result<(), Refusal> {
        let ours = self.filter.cluster_id();
        if cluster != ours {
            // Either side may be the one started wrongly: a new member started without --join
            // hears first from the healthy leader (the text blamed the leader, found by a user).
            let me = self.filter.self_id;
            let hex = crate::incarnation::hex;
            let (theirs, ours) = (hex(cluster), hex(ours));
            let text = format!(
                "refusing messages from node {from}: it names cluster {theirs}, and this node \
                 (node {me}) belongs to cluster {ours}. One of the two was started with another \
                 --cluster list or --cluster-token, on a data dir of another cluster, or as a new \
                 member without --join, which made a cluster of its own in its data dir: for \
                 that node, remove its data dir, then start it with --join, after POST /<its id> \
                 on a member"
            );
            self.log_once(from, cluster, &text);
            return Err(Refusal::new(PeerRefusal::WrongNode, text));
        }
        Ok(())
    }

    /// Refuses a sender of another run of a cluster started with the same flags: both know
    /// their incarnation, and they differ (see [`crate::incarnation`]). A sender that does not
    /// name one (it has applied no registration yet, or runs an older build) is let in.
    fn check_incarnation(&self, from: u64, headers: &HeaderMap) -> Result<(), Refusal> {
        self.check_incarnation_of(from, named_incarnation(headers)?)
    }

    /// As [`Self::check_incarnation`], for a sender that named `theirs` (0: none). Called again
    /// for every batch of a stream: this node may learn its own after the stream opened.
    fn check_incarnation_of(&self, from: u64, theirs: u64) -> Result<(), Refusal> {
        let ours = self.filter.incarnation();
        if !super::of_another_run(ours, theirs) {
            return Ok(());
        }
        let me = self.filter.self_id;
        let hex = crate::incarnation::hex;
        let text = format!(
            "refusing messages from node {from}: it is of incarnation {} of this \
             cluster, and this node (node {me}) of incarnation {}. The data dir of one of \
             the two comes from an earlier run of a cluster started with the same flags, and \
             their logs must not merge: stop the node whose data is stale (the one whose \
             incarnation differs from the other members': `incarnation` in /-/status, or \
             raftexample dump), remove its data dir, and start it again with --join (if its \
             id is no longer a member, POST /<its id> on a member first)",
            hex(theirs),
            hex(ours)
        );
        self.log_once(from, theirs, &text);
        Err(Refusal::new(PeerRefusal::WrongNode, text))
    }

    fn check_to(&self, from: u64, to: u64) -> Result<(), Refusal> {
        if to == self.filter.self_id {
            return Ok(());
        }
        let text = format!(
            "message for node {to} reached node {} (check the order of --cluster, and the peer \
             URL node {to} was added with)",
            self.filter.self_id
        );
        self.log_once(from, u64::MAX - to, &text);
        Err(Refusal::new(PeerRefusal::WrongNode, text))
    }

    /// Refuses a sender that is neither a member nor a removed member, unless this node knows
    /// no leader or takes the sender for its leader (then it may be the one that is behind).
    fn check_member(&self, from: u64) -> Result<(), Refusal> {
        if self.filter.is_member(from) {
            return Ok(());
        }
        if self.filter.removed_as_of(from).is_none() {
            let leader = self.shared.leader.load(Ordering::Acquire);
            if leader != raft::INVALID_ID && leader != from {
                let text = format!(
                    "node {from} is not a member of this cluster (as node {} knows it, led by \
                     node {leader})",
                    self.filter.self_id
                );
                self.log_once(from, 1, &text);
                return Err(Refusal::new(PeerRefusal::Stranger, text));
            }
            self.log_once(
                from,
                0,
                &format!(
                    "accepting messages from node {from}, which is not a member as far as this \
                     node knows: it knows no other leader, and may be behind on membership"
                ),
            );
        }
        Ok(())
    }

    /// Where a sender may be answered if this node does not count it as a member: the peer URL
    /// its request names, if it is one, of the scheme this cluster speaks (a TLS cluster never
    /// answers in plain HTTP).
    fn url_back(&self, headers: &HeaderMap) -> Option<String> {
        let url = validate_peer_url(headers.get(HEADER_URL)?.to_str().ok()?).ok()?;
        let tls = self.filter.own_url().starts_with("https://");
        check_peer_scheme(&url, tls).ok()?;
        Some(url)
    }

    /// A sender let in from outside the membership is answered at `url`, for as long as it
    /// keeps sending (every batch renews it: a removal this node replays meanwhile ends the
    /// route, and the sender's stream goes on).
    fn keep_route_back(&self, from: u64, url: Option<&str>) {
        if let Some(url) = url
            && !self.filter.is_member(from)
        {
            self.filter.note_route_back(from, url);
        }
    }

    /// 410 Gone when a removed node asks for votes (see [`gone_as_of`]).
    fn check_not_removed(&self, from: u64, messages: &[Message]) -> Result<(), Refusal> {
        let settled = self.shared.is_membership_settled();
        match gone_as_of(self.filter.removed_as_of(from), settled, messages) {
            Some(as_of) => Err(Refusal::new(
                PeerRefusal::Removed,
                gone_text(from, as_of).trim_end(),
            )),
            None => Ok(()),
        }
    }

    /// Hands a batch to the raft node.
    pub(super) async fn deliver(&self, from: u64, messages: Vec<Message>) -> Result<(), Refusal> {
        if messages
            .iter()
            .any(|m| m.to != self.filter.self_id || (m.from != from && !relayed(m)))
        {
            return Err(Refusal::new(
                PeerRefusal::Malformed,
                "batch holds messages whose from/to disagree with the headers",
            ));
        }
        if let Some(problem) = messages.iter().find_map(super::shape::problem) {
            return Err(Refusal::new(
                PeerRefusal::Malformed,
                format!("node {from} sent {problem}; no correct raft node sends that"),
            ));
        }
        self.filter.heard_from(from, &messages);
        if messages.is_empty() {
            return Ok(());
        }
        self.inbox
            .send(PeerEvent::Step(messages))
            .await
            .map_err(|_| Refusal::new(PeerRefusal::Unavailable, "raft node is shutting down"))
    }

    /// Registers a new stream from `from`, ending the one it had open.
    fn open_stream(&self, from: u64) -> (u64, CancellationToken) {
        let number = self.next_stream.fetch_add(1, Ordering::Relaxed);
        let token = CancellationToken::new();
        let mut streams = self.streams.lock().unwrap_or_else(|p| p.into_inner());
        if let Some((_, older)) = streams.insert(from, (number, token.clone())) {
            older.cancel();
        }
        (number, token)
    }

    fn close_stream(&self, from: u64, number: u64) {
        let mut streams = self.streams.lock().unwrap_or_else(|p| p.into_inner());
        if streams.get(&from).is_some_and(|(n, _)| *n == number) {
            streams.remove(&from);
        }
    }

    /// Reads batch after batch until the sender closes the stream or opens a newer one, or
    /// this node learns an incarnation other than the one the sender named, `theirs`.
    async fn read_stream(
        &self,
        from: u64,
        theirs: u64,
        url_back: Option<String>,
        mut body: Body,
        replaced: CancellationToken,
    ) -> Result<(), Refusal> {
        let mut buf = Vec::new();
        loop {
            let frame = tokio::select! {
                _ = replaced.cancelled() => return Ok(()),
                frame = tokio::time::timeout(STREAM_IDLE, body.frame()) => frame,
            };
            let frame = match frame {
                Err(_) | Ok(None) => return Ok(()),
                Ok(Some(Err(err))) => {
                    return Err(Refusal::cut_short(format!("stream broken: {err}")));
                }
                Ok(Some(Ok(frame))) => frame,
            };
            let Ok(data) = frame.into_data() else {
                continue;
            };
            buf.extend_from_slice(&data);
            let messages = decode_available(&mut buf, self.limits.max_message)?;
            tracing::trace!(peer = from, count = messages.len(), "batch arrived");
            if messages
                .iter()
                .any(|m| m.get_msg_type() == MessageType::MsgSnapshot)
            {
                return Err(Refusal::new(
                    PeerRefusal::Malformed,
                    format!("snapshots go to {RAFT_PATH}, not to {STREAM_PATH}"),
                ));
            }
            // Checked at the open only, a stream opened while this node knew none carried a
            // node of an earlier run's messages for as long as it stayed busy (review 100).
            self.check_incarnation_of(from, theirs)?;
            self.keep_route_back(from, url_back.as_deref());
            self.check_not_removed(from, &messages)?;
            self.deliver(from, messages).await?;
        }
    }

    /// Takes the one slot `from` has for an arriving snapshot.
    fn snapshot_slot(&self, from: u64) -> Result<ArrivingSnapshot, Refusal> {
        let mut arriving = self.arriving.lock().unwrap_or_else(|p| p.into_inner());
        if !arriving.insert(from) {
            return Err(Refusal::new(
                PeerRefusal::Conflict,
                format!("a snapshot from node {from} is already arriving"),
            ));
        }
        Ok(ArrivingSnapshot {
            from,
            arriving: self.arriving.clone(),
        })
    }
}

/// The slot of a sender's arriving snapshot, freed when dropped.
struct ArrivingSnapshot {
    from: u64,
    arriving: Arc<Mutex<HashSet<u64>>>,
}

impl Drop for ArrivingSnapshot {
    fn drop(&mut self) {
        self.arriving
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .remove(&self.from);
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

/// The incarnation a request's sender names, 0 if none (it knows none, or runs an older build).
fn named_incarnation(headers: &HeaderMap) -> Result<u64, Refusal> {
    match headers.get(HEADER_INCARNATION) {
        None => Ok(0),
        Some(_) => header_u64(headers, HEADER_INCARNATION, 16).ok_or_else(|| {
            Refusal::new(
                PeerRefusal::Malformed,
                format!("malformed {HEADER_INCARNATION} header"),
            )
        }),
    }
}

fn header_u64(headers: &HeaderMap, name: &str, radix: u32) -> Option<u64> {
    let text = headers.get(name)?.to_str().ok()?;
    u64::from_str_radix(text, radix).ok()
}

/// Hands what the peer routes refuse to [`PeerServer::log_refused`], with who asked: the
/// remote address (as the port's server records it, see `serving`), the route and the sender
/// the request names.
async fn log_refusals(
    State(server): State<PeerServer>,
    request: axum::extract::Request,
    next: axum::middleware::Next,
) -> Response {
    let remote = request
        .extensions()
        .get::<axum::extract::ConnectInfo<std::net::SocketAddr>>()
        .map(|info| info.0);
    let route = request.uri().path().to_owned();
    let from = header_u64(request.headers(), HEADER_FROM, 10);
    let response = next.run(request).await;
    if let Some(refused) = response.extensions().get::<Refused>() {
        server.log_refused(remote, &route, from, refused);
    }
    response
}

async fn receive_stream(
    State(server): State<PeerServer>,
    headers: HeaderMap,
    body: Body,
) -> Result<StatusCode, Refusal> {
    let (from, url_back) = server.admit(&headers)?;
    // Well-formed: `admit` checked it.
    let theirs = named_incarnation(&headers)?;
    let (number, replaced) = server.open_stream(from);
    tracing::debug!(peer = from, number, "stream opened");
    let result = server
        .read_stream(from, theirs, url_back, body, replaced)
        .await;
    tracing::debug!(peer = from, number, ?result, "stream ended");
    server.close_stream(from, number);
    result.map(|()| StatusCode::NO_CONTENT)
}

impl snapshot::Arrivals for PeerServer {
    fn limits(&self) -> PeerLimits {
        self.limits
    }

    fn incoming_dir(&self) -> &Path {
        &self.incoming_dir
    }

    fn next_incoming(&self) -> u64 {
        NEXT_INCOMING.fetch_add(1, Ordering::Relaxed)
    }

    fn free_bytes(&self) -> Option<u64> {
        use crate::disk::FileSystem;
        crate::disk::StdFs
            .free_bytes(&self.incoming_dir)
            .ok()
            .flatten()
    }

    async fn deliver(&self, from: u64, messages: Vec<Message>) -> Result<(), Refusal> {
        PeerServer::deliver(self, from, messages).await
    }
}

async fn receive_snapshot(
    State(server): State<PeerServer>,
    headers: HeaderMap,
    body: Body,
) -> Result<StatusCode, Refusal> {
    let (from, _) = server.admit(&headers)?;
    let limits = server.limits;
    // The message, its length prefix, and the file it announces.
    let most = limits
        .max_snapshot
        .saturating_add(limits.max_message as u64 + 4);
    let received = if header_u64(&headers, header::CONTENT_LENGTH.as_str(), 10)
        .is_some_and(|len| len > most)
    {
        // Refused before its message is read: the sender's header says which snapshot, so
        // that the reason kept for /-/ready goes stale once this node has applied its index,
        // and is ordered against other leaders' snapshots, as any other refusal's. Without it
        // the reason stayed for the life of the process (found by a review).
        let refused = snapshot::too_large(limits.max_snapshot);
        let named = headers
            .get(HEADER_SNAPSHOT)
            .and_then(|v| v.to_str().ok())
            .and_then(super::snapshot_named);
        Err(match named {
            Some(sent) => refused.of_snapshot(sent),
            None => refused,
        })
    } else {
        let _slot = server.snapshot_slot(from)?;
        snapshot::receive(&server, from, body).await
    };
    match &received {
        Ok(snapshot) => server.shared.note_snapshot_delivered(*snapshot),
        // This node's own trouble (its limit, its disk, a step after the last byte it could
        // not finish in time), which the leader's next attempt meets again: the node stays
        // behind until its operator acts, and only its log and its /-/ready can tell the
        // operator so. (The give-up was logged where it happened.)
        Err(refused) => {
            let why = match (refused.gave_up(), refused.kind()) {
                (Some(why), _) => Some(why),
                (None, PeerRefusal::TooLarge) => Some(refused.text()),
                (None, PeerRefusal::CannotStore) => {
                    tracing::warn!(
                        "cannot store the snapshot the leader sends: {}; once it can be stored, \
                         the leader's next attempt will catch this node up",
                        refused.text()
                    );
                    Some(refused.text())
                }
                (None, _) => None,
            };
            if let Some(why) = why {
                server
                    .shared
                    .note_snapshot_refused(refused.snapshot(), why.to_string());
            }
        }
    }
    received.map(|_| StatusCode::NO_CONTENT)
}

/// A member's answer to a joining node, other than a refusal for good or no answer yet.
#[derive(Debug, PartialEq, Eq)]
enum Reply {
    /// 200 with the cluster's identity; whether the leader gave it, settled and in touch with
    /// a quorum ([`HEADER_LEADER`]); the voters the member counts, unless it vouches for
    /// nothing ([`HEADER_VOTERS`]); and how far it had applied, and in which terms
    /// ([`HEADER_APPLIED`], [`HEADER_APPLIED_TERM`], [`HEADER_TERM`]); and the cluster's
    /// incarnation once the member knows it ([`HEADER_INCARNATION`]).
    Admitted {
        cluster: u64,
        by_leader: bool,
        voters: Option<Vec<u64>>,
        seen: Admission,
        incarnation: u64,
    },
    /// 409 and why; the index an admitter must have applied to outweigh it, if any
    /// ([`HEADER_SESSION`]).
    Doubted {
        reason: String,
        session: Option<u64>,
    },
}

impl IntoResponse for Reply {
    fn into_response(self) -> Response {
        let (mut response, headers) = match self {
            Reply::Admitted {
                cluster,
                by_leader,
                voters,
                seen,
                incarnation,
            } => {
                let mut headers = vec![
                    (HEADER_APPLIED, seen.applied.index.to_string()),
                    (HEADER_APPLIED_TERM, seen.applied.term.to_string()),
                    (HEADER_TERM, seen.term.to_string()),
                ];
                if incarnation != 0 {
                    headers.push((HEADER_INCARNATION, format!("{incarnation:x}")));
                }
                if by_leader {
                    headers.push((HEADER_LEADER, "1".to_string()));
                }
                if let Some(voters) = &voters {
                    headers.push((HEADER_VOTERS, super::join::format_voters(voters)));
                }
                (format!("{cluster:x}").into_response(), headers)
            }
            Reply::Doubted { reason, session } => {
                let headers = session
                    .map(|s| (HEADER_SESSION, s.to_string()))
                    .into_iter()
                    .collect();
                let status = PeerRefusal::Conflict.status();
                ((status, reason).into_response(), headers)
            }
        };
        for (name, value) in headers {
            if let Ok(value) = HeaderValue::from_str(&value) {
                response.headers_mut().insert(name, value);
            }
        }
        response
    }
}

/// A joining node asks whether it is a member; the answer is the cluster's identity. What to
/// answer is decided by [`MemberView::answer`], which the simulator calls too.
async fn answer_join(
    State(server): State<PeerServer>,
    headers: HeaderMap,
) -> Result<Reply, Refusal> {
    let filter = &server.filter;
    let url = headers.get(HEADER_URL).and_then(|v| v.to_str().ok());
    let (Some(from), Some(to), Some(url)) = (
        header_u64(&headers, HEADER_FROM, 10),
        header_u64(&headers, HEADER_TO, 10),
        url,
    ) else {
        return Err(Refusal::new(
            PeerRefusal::Malformed,
            format!("missing or malformed {HEADER_FROM}, {HEADER_TO} or {HEADER_URL} header"),
        ));
    };
    server.check_to(from, to)?;
    let view = MemberView::new(
        to,
        (filter.cluster_id(), filter.incarnation()),
        filter.member_url(from),
        &server.shared,
        from,
    );
    match view.answer(from, url) {
        Ok(Answer::Admitted {
            cluster,
            by_leader,
            voters,
            seen,
            incarnation,
        }) => Ok(Reply::Admitted {
            cluster,
            by_leader,
            voters,
            seen,
            incarnation,
        }),
        Ok(Answer::Refused(reason)) => Err(Refusal::new(PeerRefusal::Removed, reason)),
        Ok(Answer::Doubt(reason, session)) => Ok(Reply::Doubted { reason, session }),
        Err(NoAnswer::Joining(reason)) => Err(Refusal::new(PeerRefusal::Unavailable, reason)),
        Err(NoAnswer::NotMember(reason)) => Err(Refusal::new(PeerRefusal::Unknown, reason)),
    }
}

/// The strict reconfiguration check's probe: "ok", where this node's REST API listens, that
/// this build stores values of any bytes ([`HEADER_VALUES`]), and the members this node last
/// heard as older ([`HEADER_OLDER`]: a follower asks its leader, see [`super::builds`]);
/// refused (`412`) to a prober of another cluster or another run, or meant for another
/// member, as its messages would be (see [`super::probe`]). What the prober does not name
/// (an older build names nothing) or this node does not know yet is not checked.
async fn answer_probe(State(server): State<PeerServer>, headers: HeaderMap) -> Response {
    if let Err(refusal) = server.check_probe(&headers) {
        return refusal.into_response();
    }
    let mut response = "ok\n".into_response();
    if let Some(addr) = server.rest_listen
        && let Ok(value) = HeaderValue::from_str(&addr.to_string())
    {
        response.headers_mut().insert(HEADER_REST_LISTEN, value);
    }
    if let Some(values) = server.filter.values_header() {
        let older = super::builds::older_header(&server.filter.older_members());
        let headers = response.headers_mut();
        headers.insert(HEADER_VALUES, HeaderValue::from_static(values));
        if let Ok(older) = HeaderValue::from_str(&older) {
            headers.insert(HEADER_OLDER, older);
        }
    }
    response
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::transport::AppliedAt;

    fn server(dir: &Path) -> (PeerServer, mpsc::Receiver<PeerEvent>) {
        server_of(PeerFilter::new(3, 0xabc), dir)
    }

    /// The peer server of the node whose filter is `filter`.
    fn server_of(filter: PeerFilter, dir: &Path) -> (PeerServer, mpsc::Receiver<PeerEvent>) {
        let (events_tx, events_rx) = mpsc::channel(8);
        let server = PeerServer::new(
            Arc::new(filter),
            events_tx,
            Arc::default(),
            PeerLimits {
                max_message: 1 << 20,
                max_snapshot: 1 << 20,
                snapshot_grace: Duration::from_secs(30),
                keep_free: 64 << 20,
            },
            dir,
        );
        (server, events_rx)
    }

    /// A TLS node whose URL `--cluster` lists after a blank (`"https://a:1, https://b:2"`, which
    /// the cluster accepts: its members hold the URL without the blank) answers a sender
    /// outside the membership at its `https://` URL. Its filter held the URL as listed, so it
    /// took the cluster for plain HTTP and refused to answer at any `https://` URL.
    #[tokio::test]
    async fn a_tls_node_listed_after_a_blank_answers_at_https_urls() {
        let dir = tempfile::TempDir::new().expect("temp dir");
        let filter = PeerFilter::new(2, 0xabc).with_url(" https://127.0.0.1:2/");
        let (server, _events) = server_of(filter, dir.path());
        let mut headers = HeaderMap::new();
        headers.insert(HEADER_URL, HeaderValue::from_static("https://127.0.0.1:3"));
        assert_eq!(
            server.url_back(&headers),
            Some("https://127.0.0.1:3".to_string())
        );
    }

    /// A node that asks to join is told the cluster's identity, unless its id has run since it
    /// was last added (a session in the table): then this start lost that run's data, and the
    /// leader, in touch with a quorum, refuses it for good (410); another member that knows of
    /// the session says so and to ask another (409).
    #[tokio::test]
    async fn a_joining_id_that_has_run_is_refused_for_good() {
        let dir = tempfile::TempDir::new().expect("temp dir");
        let (server, _events) = server(dir.path());
        let url = "http://127.0.0.1:2";
        server.filter.set_member(2, Some(url));
        let mut headers = HeaderMap::new();
        headers.insert(HEADER_FROM, HeaderValue::from_static("2"));
        headers.insert(HEADER_TO, HeaderValue::from_static("3"));
        headers.insert(HEADER_URL, HeaderValue::from_static(url));
        let ask = || answer_join(State(server.clone()), headers.clone());
        let shared = &server.shared;
        let facts = |edit: &dyn Fn(&mut crate::request::JoinFacts)| {
            edit(&mut shared.join_facts.lock().expect("not poisoned"));
        };
        facts(&|f| f.voters = vec![2, 3]);
        shared.applied_term.store(4, Ordering::Release);
        shared.applied.store(40, Ordering::Release);
        shared.term.store(6, Ordering::Release);
        let admitted = |by_leader, voters: Option<Vec<u64>>| Reply::Admitted {
            cluster: 0xabc,
            by_leader,
            voters,
            seen: Admission {
                applied: AppliedAt { index: 40, term: 4 },
                term: 6,
            },
            incarnation: 0,
        };
        let answer = ask().await.expect("admitted");
        assert_eq!(answer, admitted(false, Some(vec![2, 3])));
        let response = answer.into_response();
        assert_eq!(response.headers()[HEADER_VOTERS], "2,3");
        assert_eq!(response.headers()[HEADER_APPLIED], "40");
        assert_eq!(response.headers()[HEADER_APPLIED_TERM], "4");
        assert_eq!(response.headers()[HEADER_TERM], "6");
        assert!(!response.headers().contains_key(HEADER_LEADER));
        // Leading and holding back entries it committed: its voters may be behind, unsaid.
        facts(&|f| f.vouch_for_none = true);
        let answer = ask().await.expect("admitted");
        assert_eq!(answer, admitted(false, None));
        assert!(!answer.into_response().headers().contains_key(HEADER_VOTERS));
        facts(&|f| f.vouch_for_none = false);
        // A doubt that names the session's index in its text, and a 409 with that index for
        // the joining node to weigh.
        let doubted = |answer: Reply, session: u64| {
            let index = format!("index {session}");
            assert!(
                matches!(&answer, Reply::Doubted { reason, session: Some(s) }
                    if *s == session && reason.contains(&index)),
                "{answer:?}"
            );
            let response = answer.into_response();
            assert_eq!(response.status(), StatusCode::CONFLICT);
            assert_eq!(
                response.headers()[HEADER_SESSION],
                session.to_string().as_str()
            );
        };
        // A registration in its log, not applied: a doubt, even from the settled leader.
        facts(&|f| _ = f.logged.insert(2, 9));
        shared.leader.store(3, Ordering::Release);
        shared.membership_settled.store(true, Ordering::Release);
        doubted(ask().await.expect("answered"), 9);
        facts(&|f| f.logged.clear());
        facts(&|f| _ = f.running.insert(2, 7));
        for (leader, settled) in [(0, false), (0, true), (3, false)] {
            shared.leader.store(leader, Ordering::Release);
            shared.membership_settled.store(settled, Ordering::Release);
            doubted(ask().await.expect("answered"), 7);
        }
        shared.membership_settled.store(true, Ordering::Release);
        let refused = ask().await.expect_err("refused");
        assert_eq!(refused.status(), StatusCode::GONE, "{refused:?}");
        assert!(
            refused.text().contains("index 7") && refused.text().contains("add it back"),
            "{refused:?}"
        );
        // Removed and added back, it has no session: admitted again, by the leader, whose
        // word the joining node prefers to a follower's doubt.
        facts(&|f| f.running.clear());
        let by_leader = ask().await.expect("admitted");
        assert_eq!(by_leader, admitted(true, Some(vec![2, 3])));
        assert_eq!(by_leader.into_response().headers()[HEADER_LEADER], "1");
        shared.leader.store(1, Ordering::Release);
        assert_eq!(
            ask().await.expect("admitted"),
            admitted(false, Some(vec![2, 3]))
        );
    }

    /// A server started again on the same folder in the same process never reuses an
    /// arriving file's number: the reaper may still be about to remove the old one's.
    #[tokio::test]
    async fn arriving_files_are_never_numbered_alike_in_one_process() {
        use snapshot::Arrivals;
        let dir = tempfile::TempDir::new().expect("temp dir");
        let (first, _events) = server(dir.path());
        let before: Vec<u64> = (0..3).map(|_| first.next_incoming()).collect();
        drop(first);
        let (again, _events) = server(dir.path());
        let after = again.next_incoming();
        assert!(
            before.iter().all(|&n| n != after),
            "{after} reused from {before:?}"
        );
    }

    /// A message naming another cluster is refused with a text that suspects either side: a
    /// new member started without --join (which made a cluster of its own) hears first from
    /// the healthy leader, and was told to wipe the leader's data dir (found by a user). Both
    /// ids read in 16 hex digits, as everywhere people read them (review 116 N3); the header
    /// carries them without leading zeros.
    #[tokio::test]
    async fn another_clusters_message_is_refused_naming_both_sides() {
        let dir = tempfile::TempDir::new().expect("temp dir");
        let (server, _events) = server(dir.path());
        let mut headers = HeaderMap::new();
        headers.insert(HEADER_FROM, HeaderValue::from_static("1"));
        headers.insert(HEADER_TO, HeaderValue::from_static("3"));
        headers.insert(HEADER_CLUSTER, HeaderValue::from_static("def"));
        let refused = server.admit(&headers).expect_err("another cluster");
        assert_eq!(refused.status(), StatusCode::PRECONDITION_FAILED);
        let text = refused.text();
        assert!(
            text.contains("from node 1: it names cluster 0000000000000def")
                && text.contains("this node (node 3) belongs to cluster 0000000000000abc")
                && text.contains("One of the two")
                && !text.contains("POST /1"),
            "{text}"
        );
    }

    /// A peer of another run of a cluster started with the same flags (a data dir kept from
    /// an earlier run) is refused as one of another cluster is (412), on both routes, naming
    /// both incarnations and what to do; while either side does not know its incarnation, or
    /// the sender names none (an older build), it is let in (found by a user: the two runs'
    /// logs merged).
    #[tokio::test]
    async fn a_peer_of_another_incarnation_is_refused_once_both_know_theirs() {
        let dir = tempfile::TempDir::new().expect("temp dir");
        let (server, _events) = server(dir.path());
        let naming = |incarnation: Option<&'static str>| {
            let mut headers = leaders_headers();
            if let Some(value) = incarnation {
                headers.insert(HEADER_INCARNATION, HeaderValue::from_static(value));
            }
            headers
        };
        assert!(
            server.admit(&naming(Some("a1"))).is_ok(),
            "this node knows none yet"
        );
        server.filter.set_incarnation(0xb2);
        assert!(server.admit(&naming(None)).is_ok(), "the sender names none");
        assert!(server.admit(&naming(Some("b2"))).is_ok(), "the same run");
        let refused = server.admit(&naming(Some("a1"))).expect_err("another run");
        assert_eq!(refused.status(), StatusCode::PRECONDITION_FAILED);
        let text = refused.text();
        for needle in [
            // In 16 digits, as /-/status shows them; the header may leave out leading zeros.
            "from node 1: it is of incarnation 00000000000000a1",
            "this node (node 3) of incarnation 00000000000000b2",
            "earlier run of a cluster started with the same flags",
            "stop the node whose data is stale (the one whose incarnation differs from the \
             other members': `incarnation` in /-/status, or raftexample dump)",
            "remove its data dir, and start it again with --join (if its id is no longer a \
             member, POST /<its id> on a member first)",
        ] {
            assert!(text.contains(needle), "lacks {needle:?}: {text}");
        }
        assert!(!text.contains('\n'), "one line: {text}");
        // Lost line continuations left runs of spaces in it (review 100).
        assert!(!text.contains("  "), "a run of spaces: {text}");

        let (mut headers, body) = inline_snapshot_request(2, 9);
        headers.insert(HEADER_INCARNATION, HeaderValue::from_static("a1"));
        let refused = receive_snapshot(State(server.clone()), headers, body)
            .await
            .expect_err("a snapshot of another run");
        assert_eq!(refused.status(), StatusCode::PRECONDITION_FAILED);
        let refused = server
            .admit(&naming(Some("not hex")))
            .expect_err("malformed");
        assert_eq!(refused.status(), StatusCode::BAD_REQUEST);
    }

    /// A stream opened while this node knew no incarnation, from a sender that named one, ends
    /// with the same refusal at its next batch once this node learns another: it was checked
    /// at its open only, and a busy stream of a node of an earlier run stayed open for good
    /// (review 100).
    #[tokio::test]
    async fn an_open_stream_of_another_incarnation_ends_once_this_node_knows_its_own() {
        let dir = tempfile::TempDir::new().expect("temp dir");
        let (server, mut events) = server(dir.path());
        let (frames, rx) = mpsc::channel::<bytes::Bytes>(4);
        let body = Body::from_stream(futures_util::stream::unfold(rx, |mut rx| async move {
            let frame = rx.recv().await?;
            Some((Ok::<_, std::convert::Infallible>(frame), rx))
        }));
        let mut headers = leaders_headers();
        headers.insert(HEADER_INCARNATION, HeaderValue::from_static("a1"));
        let stream = tokio::spawn(receive_stream(State(server.clone()), headers, body));
        let batch = || {
            let mut m = message(MessageType::MsgHeartbeat, 1);
            m.term = 2;
            bytes::Bytes::from(super::super::encode_batch(&[m]))
        };
        frames.send(batch()).await.expect("the stream is open");
        match tokio::time::timeout(Duration::from_secs(10), events.recv()).await {
            Ok(Some(PeerEvent::Step(_))) => {}
            other => panic!("the first batch was not delivered: {other:?}"),
        }
        server.filter.set_incarnation(0xb2);
        // The stream may end before it reads this: either way nothing more is delivered.
        let _ = frames.send(batch()).await;
        let refused = tokio::time::timeout(Duration::from_secs(10), stream)
            .await
            .expect("the stream ended")
            .expect("the stream's task")
            .expect_err("refused");
        assert_eq!(refused.status(), StatusCode::PRECONDITION_FAILED);
        assert!(
            refused.text().contains("incarnation 00000000000000a1"),
            "{refused:?}"
        );
        assert!(events.try_recv().is_err(), "the second batch was delivered");
    }

    /// Every admitted request from a member records whether its sender said it stores values
    /// of any bytes (`x-raftexample-values`), each overwriting the last (a node restarted on
    /// an older build opens new streams without it); a sender outside the membership is not
    /// recorded. A probe from a member of this cluster is recorded too, and the probe's answer
    /// says this build stores such values, unless the node plays an older build.
    #[tokio::test]
    async fn admitted_requests_record_their_senders_build_and_the_probe_tells_this_ones() {
        use crate::transport::builds::Build;
        let dir = tempfile::TempDir::new().expect("temp dir");
        let (server, _events) = server(dir.path());
        server.filter.set_member(1, Some("http://127.0.0.1:1"));
        let build_of = |id| server.filter.builds().of(id);
        assert_eq!(build_of(1), None, "not heard yet");
        let with_values = || {
            let mut headers = leaders_headers();
            headers.insert(HEADER_VALUES, HeaderValue::from_static("bytes"));
            headers
        };
        server.admit(&with_values()).expect("admitted");
        assert_eq!(build_of(1), Some(Build::AnyBytes));
        server.admit(&leaders_headers()).expect("admitted");
        assert_eq!(
            build_of(1),
            Some(Build::Older),
            "restarted on an older build"
        );
        let (mut headers, body) = inline_snapshot_request(2, 9);
        headers.insert(HEADER_VALUES, HeaderValue::from_static("bytes"));
        receive_snapshot(State(server.clone()), headers, body)
            .await
            .expect("delivered");
        assert_eq!(build_of(1), Some(Build::AnyBytes), "a snapshot's sender");

        let mut stranger = with_values();
        stranger.insert(HEADER_FROM, HeaderValue::from_static("7"));
        server.admit(&stranger).expect("let in: no leader known");
        assert_eq!(build_of(7), None, "not a member");

        let probe = |headers: HeaderMap| answer_probe(State(server.clone()), headers);
        let answer = probe(leaders_headers()).await;
        assert_eq!(answer.status(), StatusCode::OK);
        assert_eq!(answer.headers()[HEADER_VALUES], "bytes");
        assert_eq!(
            build_of(1),
            Some(Build::Older),
            "a prober of an older build"
        );
        assert_eq!(
            answer.headers()[HEADER_OLDER],
            "1",
            "the members heard as older"
        );
        let answer = probe(with_values()).await;
        assert_eq!(answer.headers()[HEADER_VALUES], "bytes");
        assert_eq!(build_of(1), Some(Build::AnyBytes));
        assert_eq!(answer.headers()[HEADER_OLDER], "", "none now");

        let older = PeerFilter::new(3, 0xabc).announcing_values(false);
        let (older, _events) = server_of(older, dir.path());
        let answer = answer_probe(State(older), HeaderMap::new()).await;
        assert_eq!(answer.status(), StatusCode::OK);
        assert!(
            !answer.headers().contains_key(HEADER_VALUES),
            "a node playing an older build says nothing"
        );
    }

    /// Before a value that is not UTF-8 is written, follower 1 asks its leader, which names
    /// the members it heard as older (never the asker, which knows its own build), or is one
    /// itself (no header, or the 404 of a build without the probe); a leader that does not
    /// answer gets the write refused too; an answer is reused for a moment. A leader judges by
    /// what it heard itself, a node that knows none waits for one, and a member removed is
    /// forgotten.
    #[tokio::test]
    async fn the_values_check_asks_the_leader_which_members_run_an_older_build() {
        use crate::transport::builds::{Build, Heard, Refusal, ValuesCheck};
        use crate::transport::probe::Prober;
        use crate::transport::tests::serve;
        const WAIT: Duration = Duration::from_secs(5);
        let dir = tempfile::TempDir::new().expect("temp dir");
        // Leader 2 of members 1 to 3, playing an older build or not, that heard `older` so.
        let leader_router = |announce: bool, older: &[u64]| {
            let filter = PeerFilter::new(2, 0xabc).announcing_values(announce);
            for id in [1, 3] {
                filter.set_member(id, Some(&format!("http://127.0.0.1:{id}")));
            }
            for id in older {
                filter.builds().record(*id, Build::Older, Heard::Request);
            }
            server_of(filter, dir.path()).0.router()
        };
        let leader = |announce: bool, older: &[u64]| serve(leader_router(announce, older));
        let heard_3_older = leader(true, &[3]).await;
        let heard_1_older = leader(true, &[1]).await;
        let heard_none = leader(true, &[]).await;
        let older = leader(false, &[]).await;
        let no_probe = serve(Router::new()).await;
        let nothing = {
            let listener = std::net::TcpListener::bind("127.0.0.1:0").expect("a free port");
            format!("http://{}", listener.local_addr().expect("bound"))
        };

        let filter = Arc::new(PeerFilter::new(1, 0xabc));
        let prober = Prober::new(crate::transport::probe_client(None), filter.clone());
        let check = ValuesCheck::new(prober, filter.clone());
        filter.set_member(3, Some("http://127.0.0.1:3"));
        let at = |url: &str| filter.set_member(2, Some(url));
        at(&heard_3_older);
        assert_eq!(
            check.older_member(|| 2, WAIT).await,
            Err(Refusal::Older(vec![3]))
        );
        assert_eq!(filter.builds().of(2), Some(Build::AnyBytes), "recorded");
        at(&heard_none);
        assert_eq!(check.older_member(|| 2, WAIT).await, Ok(()));
        at(&heard_1_older);
        assert_eq!(
            check.older_member(|| 2, WAIT).await,
            Ok(()),
            "not the asker"
        );
        at(&older);
        assert_eq!(
            check.older_member(|| 2, WAIT).await,
            Err(Refusal::Older(vec![2]))
        );
        at(&no_probe);
        assert_eq!(
            check.older_member(|| 2, WAIT).await,
            Err(Refusal::Older(vec![2])),
            "a 404"
        );
        filter.builds().record(2, Build::Older, Heard::Request);
        at(&heard_none);
        assert_eq!(
            check.older_member(|| 2, WAIT).await,
            Err(Refusal::Older(vec![2])),
            "a leader whose own request said it runs an older build is named without asking"
        );
        filter.builds().forget(2);
        at(&nothing);
        assert_eq!(
            check.older_member(|| 2, WAIT).await,
            Err(Refusal::LeaderSilent(2, Duration::from_secs(1))),
            "a second to answer, with most of the wait left"
        );
        // A leader found late in the write's wait has only what is left of it to answer in:
        // the write then answers within its timeout (review 107). This one takes the
        // connection (the kernel does) and never answers.
        let silent = std::net::TcpListener::bind("127.0.0.1:0").expect("a free port");
        at(&format!("http://{}", silent.local_addr().expect("bound")));
        let short = Duration::from_millis(100);
        let started = std::time::Instant::now();
        let refused = check.older_member(|| 2, short).await;
        assert!(
            matches!(refused, Err(Refusal::LeaderSilent(2, waited)) if waited <= short),
            "{refused:?}"
        );
        assert!(
            started.elapsed() < Duration::from_secs(1),
            "{:?}",
            started.elapsed()
        );
        // One found with less than a millisecond left is not asked: it would say "no answer
        // within 500.0µs" (review 110).
        let little = crate::transport::builds::LEAST_PATIENCE / 2;
        assert_eq!(
            check.older_member(|| 2, little).await,
            Err(Refusal::NoTimeLeft)
        );
        drop(silent);

        // A "none" is reused for a moment: the same leader at the same URL, gone since, is not
        // asked; a refusal is asked again (the older member may have been upgraded since).
        let (gone, serving) = {
            let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
                .await
                .expect("a free port on 127.0.0.1");
            let url = format!("http://{}", listener.local_addr().expect("bound"));
            let router = leader_router(true, &[]);
            (
                url,
                tokio::spawn(async move { axum::serve(listener, router).await }),
            )
        };
        at(&gone);
        assert_eq!(check.older_member(|| 2, WAIT).await, Ok(()));
        serving.abort();
        let _ = serving.await;
        assert_eq!(
            check.older_member(|| 2, WAIT).await,
            Ok(()),
            "the answer of a moment ago"
        );
        let upgrading = {
            let filter = PeerFilter::new(2, 0xabc);
            filter.set_member(3, Some("http://127.0.0.1:3"));
            filter.builds().record(3, Build::Older, Heard::Request);
            server_of(filter, dir.path()).0
        };
        at(&serve(upgrading.clone().router()).await);
        assert_eq!(
            check.older_member(|| 2, WAIT).await,
            Err(Refusal::Older(vec![3]))
        );
        upgrading
            .filter
            .builds()
            .record(3, Build::AnyBytes, Heard::Request);
        assert_eq!(
            check.older_member(|| 2, WAIT).await,
            Ok(()),
            "node 3 upgraded a moment ago: asked again"
        );

        filter.builds().record(3, Build::Older, Heard::Request);
        assert_eq!(
            check.older_member(|| 1, WAIT).await,
            Err(Refusal::Older(vec![3])),
            "a leader: what it heard"
        );
        let alone = check.older_member(|| 0, Duration::from_millis(50)).await;
        assert!(matches!(alone, Err(Refusal::NoLeader(_))), "{alone:?}");
        // A node that knows no leader waits for one, then asks it.
        let known = Arc::new(std::sync::atomic::AtomicU64::new(0));
        let later = known.clone();
        tokio::spawn(async move {
            tokio::time::sleep(Duration::from_millis(50)).await;
            later.store(2, std::sync::atomic::Ordering::SeqCst);
        });
        at(&heard_none);
        let leader = || known.load(std::sync::atomic::Ordering::SeqCst);
        assert_eq!(check.older_member(leader, WAIT).await, Ok(()));
        filter.set_member(3, None);
        assert_eq!(filter.builds().of(3), None, "a removed member is forgotten");
        assert_eq!(check.older_member(|| 1, WAIT).await, Ok(()));
    }

    /// A follower told by an answer to its probe that its leader is older asks the leader
    /// again at the next write: that answer may be a `404` from something at the
    /// leader's URL other than its peer server, or a late answer of its previous process, and,
    /// taken as the leader's word, it stood while the leader's stream lived (one request, one
    /// record), refusing every such write with a 409 naming a leader of this build (review 106
    /// L-B).
    #[tokio::test]
    async fn a_probe_answer_that_the_leader_is_older_is_asked_again_at_the_next_write() {
        use crate::transport::builds::{Build, Heard, Refusal, ValuesCheck};
        use crate::transport::probe::Prober;
        use crate::transport::tests::serve;
        const WAIT: Duration = Duration::from_secs(5);
        let dir = tempfile::TempDir::new().expect("temp dir");
        let leader = {
            let filter = PeerFilter::new(2, 0xabc);
            filter.set_member(1, Some("http://127.0.0.1:1"));
            serve(server_of(filter, dir.path()).0.router()).await
        };
        let not_its_peer_server = serve(Router::new()).await;

        let filter = Arc::new(PeerFilter::new(1, 0xabc));
        let prober = Prober::new(crate::transport::probe_client(None), filter.clone());
        let check = ValuesCheck::new(prober, filter.clone());
        // The leader's stream opened, saying this build; then a probe reached something else.
        filter.builds().record(2, Build::AnyBytes, Heard::Request);
        filter.set_member(2, Some(&not_its_peer_server));
        assert_eq!(
            check.older_member(|| 2, WAIT).await,
            Err(Refusal::Older(vec![2])),
            "the 404 of a server without the probe"
        );
        assert_eq!(
            filter.builds().of(2),
            Some(Build::AnyBytes),
            "the answer does not replace the leader's own word (review 111)"
        );
        filter.set_member(2, Some(&leader));
        assert_eq!(
            check.older_member(|| 2, WAIT).await,
            Ok(()),
            "the leader is asked again, and says it runs this build"
        );
        assert_eq!(filter.builds().of(2), Some(Build::AnyBytes));
    }

    /// The strict reconfiguration check counts a member as up if something answers its probe
    /// at the member's URL: a node of another cluster, or of an earlier run of this one (a data
    /// dir kept from a run started with the same flags), answered too, though the members
    /// refuse its messages, so a change judged with it could leave no quorum. It refuses the
    /// probe (412), and the prober counts it as down; a side that knows no identity or
    /// incarnation (an older build, a node still joining) still answers. So is a node of the
    /// same run answering at another member's URL (review 102).
    #[tokio::test]
    async fn the_strict_checks_probe_counts_no_node_of_another_cluster_or_run() {
        use crate::transport::probe::Prober;
        let dir = tempfile::TempDir::new().expect("temp dir");
        let (member, _events) = server(dir.path());
        member.filter.set_incarnation(0xb2);
        let rest: std::net::SocketAddr = "127.0.0.1:22379".parse().expect("an address");
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
            .await
            .expect("a free port on 127.0.0.1");
        let url = format!("http://{}", listener.local_addr().expect("bound"));
        let router = member.clone().with_rest_listen(rest).router();
        let serving = tokio::spawn(axum::serve(listener, router).into_future());
        let probe = |to: u64, cluster: u64, incarnation: u64| {
            let filter = PeerFilter::new(1, cluster);
            filter.set_incarnation(incarnation);
            let prober = Prober::new(crate::transport::probe_client(None), Arc::new(filter));
            let url = url.clone();
            async move { prober.answers(to, &url).await }
        };
        // Probing node 3, which this member is.
        let answers = |cluster, incarnation| probe(3, cluster, incarnation);
        assert_eq!(
            probe(2, 0xabc, 0xb2).await,
            None,
            "another member at that URL"
        );
        assert_eq!(answers(0xabc, 0xb2).await, Some(Some(rest)), "the same run");
        assert_eq!(
            answers(0xabc, 0).await,
            Some(Some(rest)),
            "the prober knows none"
        );
        assert_eq!(answers(0, 0).await, Some(Some(rest)), "nor its cluster");
        assert_eq!(answers(0xabc, 0xa1).await, None, "another run");
        assert_eq!(answers(0xdef, 0xb2).await, None, "another cluster");
        member.filter.set_incarnation(0);
        assert_eq!(
            answers(0xabc, 0xa1).await,
            Some(Some(rest)),
            "it knows none"
        );
        serving.abort();
        let _ = serving.await;
        assert_eq!(answers(0xabc, 0xb2).await, None, "nothing listens");
    }

    /// A node that joins on an empty data dir takes the incarnation its admitters name in its
    /// answer (over HTTP), with the cluster's identity: a node of an earlier run that reaches
    /// it before it has caught up is refused from its first message. It was let in until the
    /// node applied the run's registration, a window a stale node could lead through (review
    /// 100).
    #[tokio::test]
    async fn a_joining_node_takes_its_admitters_incarnation_with_the_identity() {
        let dir = tempfile::TempDir::new().expect("temp dir");
        let (admitter, _events) = server(dir.path());
        let joiner_url = "http://127.0.0.1:2";
        admitter.filter.set_member(2, Some(joiner_url));
        admitter.filter.set_incarnation(0xb2);
        let shared = &admitter.shared;
        shared.join_facts.lock().expect("not poisoned").voters = vec![2, 3];
        shared.leader.store(3, Ordering::Release);
        shared.membership_settled.store(true, Ordering::Release);
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
            .await
            .expect("a free port on 127.0.0.1");
        let admitter_url = format!("http://{}", listener.local_addr().expect("bound"));
        let serving = tokio::spawn(axum::serve(listener, admitter.clone().router()).into_future());

        let joiner_dir = tempfile::TempDir::new().expect("temp dir");
        let (joiner, _joiner_events) = server_of(PeerFilter::new(2, 0), joiner_dir.path());
        let lookup = super::super::join::Lookup {
            client: crate::transport::http_client(None),
            filter: joiner.filter.clone(),
            own_url: joiner_url.to_string(),
            members: vec![(3, admitter_url)],
            gone_patience: Duration::from_secs(10),
            phase: super::super::starting::Phase::new(false),
        };
        tokio::time::timeout(Duration::from_secs(20), lookup.run())
            .await
            .expect("admitted within 20 s")
            .expect("admitted, not refused");
        serving.abort();
        assert_eq!(joiner.filter.cluster_id(), 0xabc);
        assert_eq!(joiner.filter.incarnation(), 0xb2);
        let mut stale = HeaderMap::new();
        stale.insert(HEADER_FROM, HeaderValue::from_static("1"));
        stale.insert(HEADER_TO, HeaderValue::from_static("2"));
        stale.insert(HEADER_CLUSTER, HeaderValue::from_static("abc"));
        stale.insert(HEADER_INCARNATION, HeaderValue::from_static("a1"));
        let refused = joiner.admit(&stale).expect_err("a node of an earlier run");
        assert_eq!(refused.status(), StatusCode::PRECONDITION_FAILED);
    }

    /// Refusals are logged once per sender and reason, but the senders and reasons are what
    /// a request's headers say: a flood of made-up ones leaves the memory of them bounded.
    #[tokio::test]
    async fn what_was_logged_stays_bounded_under_made_up_headers() {
        let dir = tempfile::TempDir::new().expect("temp dir");
        let (server, _events) = server(dir.path());
        for n in 0..3 * LOGGED_MAX as u64 {
            let mut headers = HeaderMap::new();
            headers.insert(HEADER_FROM, (n + 10).to_string().parse().expect("a value"));
            headers.insert(HEADER_TO, "3".parse().expect("a value"));
            headers.insert(
                HEADER_CLUSTER,
                format!("{:x}", n + 0x10_000).parse().expect("a value"),
            );
            let refused = server.admit(&headers).expect_err("another cluster");
            assert_eq!(refused.status(), StatusCode::PRECONDITION_FAILED);
        }
        let logged = server.said.lock().expect("not poisoned").lines.len();
        assert!(logged <= LOGGED_MAX, "{logged} lines remembered");
    }

    /// A request refused as garbage is logged once per remote address and kind, then held
    /// back for a minute, and said again after it with how many were held back; other
    /// addresses and the other kind have lines of their own; a sender's refusal for who it
    /// is, said once, stays said however long after.
    #[test]
    fn refusals_are_logged_once_a_minute_per_address_and_kind() {
        let mut said = Said::default();
        let start = Instant::now();
        let at = |secs: u64| start + Duration::from_secs(secs);
        let from = |ip: [u8; 4], kind| Line::Refused {
            remote: Some(std::net::IpAddr::from(ip)),
            kind,
        };
        let garbage = from([10, 0, 0, 1], PeerRefusal::Malformed);
        assert_eq!(said.admit(garbage, at(0)), Some(0), "the first");
        for secs in [0, 1, 59] {
            assert_eq!(said.admit(garbage, at(secs)), None, "held back at {secs} s");
        }
        assert_eq!(
            said.admit(garbage, at(60)),
            Some(3),
            "a minute on, with the 3 held"
        );
        assert_eq!(said.admit(garbage, at(61)), None, "a new minute");
        assert_eq!(said.admit(garbage, at(200)), Some(1));
        let elsewhere = from([10, 0, 0, 2], PeerRefusal::Malformed);
        assert_eq!(said.admit(elsewhere, at(200)), Some(0), "another address");
        let too_large = from([10, 0, 0, 1], PeerRefusal::TooLarge);
        assert_eq!(said.admit(too_large, at(200)), Some(0), "another kind");
        let unknown = Line::Refused {
            remote: None,
            kind: PeerRefusal::Malformed,
        };
        assert_eq!(said.admit(unknown, at(200)), Some(0), "no address known");

        let stranger = Line::Sender { from: 9, what: 1 };
        assert_eq!(said.admit(stranger, at(0)), Some(0));
        assert_eq!(
            said.admit(stranger, at(86_400)),
            None,
            "once, a day later too"
        );
    }

    /// Sends `request` (head and body) to `addr` and reads the answer to its end (a refusal
    /// closes the connection), within 10 s.
    async fn ask(addr: std::net::SocketAddr, request: &[u8]) -> String {
        use tokio::io::{AsyncReadExt, AsyncWriteExt};
        let mut conn = tokio::net::TcpStream::connect(addr)
            .await
            .expect("connects");
        conn.write_all(request).await.expect("sends");
        let mut answer = Vec::new();
        tokio::time::timeout(Duration::from_secs(10), conn.read_to_end(&mut answer))
            .await
            .expect("answered within 10 s")
            .expect("reads the answer");
        String::from_utf8_lossy(&answer).into_owned()
    }

    /// A peer stream request from node 1 to node 3 of cluster `abc` whose body is `body`.
    fn stream_request(body: &[u8]) -> Vec<u8> {
        let mut request = format!(
            "POST {STREAM_PATH} HTTP/1.1\r\nHost: node3\r\nContent-Length: {}\r\n\
             {HEADER_FROM}: 1\r\n{HEADER_TO}: 3\r\n{HEADER_CLUSTER}: abc\r\n\r\n",
            body.len()
        )
        .into_bytes();
        request.extend_from_slice(body);
        request
    }

    /// A malformed batch sent to a peer server on a real port is answered 400 and logged at
    /// WARN with the remote address, the route, the sender it names and the reason; a second
    /// one within the minute, and a request with no headers at all from the same address,
    /// are answered alike and not logged; a batch over the size limit (413) is logged once
    /// too. The sender alone heard of these refusals before: the node's log said nothing.
    #[tokio::test]
    async fn a_malformed_batch_is_logged_once_with_who_sent_it() {
        let log = crate::raft_node::storage::tests::Captured::default();
        let _logging = tracing::subscriber::set_default(log.subscriber());
        let dir = tempfile::TempDir::new().expect("temp dir");
        let (server, _events) = server(dir.path());
        let (addr, shutdown, _serving) = crate::serving::serve_on_loopback(server.router()).await;
        let _stop = shutdown.drop_guard();

        // A length prefix of 1: a message too short to be a raft message.
        let garbage = stream_request(&[1, 0, 0, 0, 0]);
        let reason = "bad batch: message at byte 4 is refused: it is too short";
        let refused = "refused a peer request (400 Bad Request)";
        let answer = ask(addr, &garbage).await;
        assert!(answer.starts_with("HTTP/1.1 400"), "{answer}");
        assert!(answer.contains(reason), "{answer}");
        let text = log.text();
        let line = text
            .lines()
            .find(|l| l.contains(refused))
            .unwrap_or_else(|| panic!("no line says {refused:?}: {text}"));
        assert!(line.contains(" WARN "), "{line}");
        assert!(line.contains(reason), "{line}");
        assert!(line.contains("remote=127.0.0.1:"), "{line}");
        assert!(line.contains(&format!("route={STREAM_PATH}")), "{line}");
        assert!(line.contains("peer=1"), "{line}");

        let answer = ask(addr, &garbage).await;
        assert!(answer.starts_with("HTTP/1.1 400"), "{answer}");
        let bare =
            format!("POST {STREAM_PATH} HTTP/1.1\r\nHost: node3\r\nContent-Length: 0\r\n\r\n");
        let answer = ask(addr, bare.as_bytes()).await;
        assert!(answer.starts_with("HTTP/1.1 400"), "{answer}");
        assert_eq!(log.count(refused), 1, "{}", log.text());

        // A length prefix over the 1 MiB limit.
        let answer = ask(addr, &stream_request(&[0xff, 0xff, 0xff, 0x7f])).await;
        assert!(answer.starts_with("HTTP/1.1 413"), "{answer}");
        let too_large = "refused a peer request (413 Payload Too Large)";
        assert_eq!(log.count(too_large), 1, "{}", log.text());
        assert_eq!(log.count(refused), 1, "{}", log.text());
    }

    /// A stream whose connection breaks mid-body (its sender reconnected, stopped or was
    /// reset) is no garbage: the node says it at DEBUG, not WARN. Logged as a refusal, every
    /// healthy cluster's start warned "refused a peer request (400 Bad Request): stream
    /// broken" (found by a hands-on campaign).
    #[tokio::test]
    async fn a_stream_cut_mid_body_is_not_warned_about() {
        use tokio::io::AsyncWriteExt;
        let log = crate::raft_node::storage::tests::Captured::default();
        let writer = log.clone();
        let subscriber = tracing_subscriber::fmt()
            .with_writer(move || writer.clone())
            .with_ansi(false)
            .with_max_level(tracing::Level::DEBUG)
            .finish();
        let _logging = tracing::subscriber::set_default(subscriber);
        let dir = tempfile::TempDir::new().expect("temp dir");
        let (server, _events) = server(dir.path());
        let (addr, shutdown, _serving) = crate::serving::serve_on_loopback(server.router()).await;
        let _stop = shutdown.drop_guard();

        // A message of 50 bytes announced, 2 of them sent, of a body of 100.
        let mut body = vec![0; 100];
        body[..6].copy_from_slice(&[50, 0, 0, 0, 1, 2]);
        let mut request = stream_request(&body);
        request.truncate(request.len() - 94);
        let mut conn = tokio::net::TcpStream::connect(addr)
            .await
            .expect("connects");
        conn.write_all(&request).await.expect("sends the head");
        drop(conn);
        let deadline = tokio::time::Instant::now() + Duration::from_secs(10);
        while log.count("peer request cut short") == 0 {
            assert!(
                tokio::time::Instant::now() < deadline,
                "the cut was not seen: {}",
                log.text()
            );
            tokio::time::sleep(Duration::from_millis(5)).await;
        }
        assert_eq!(log.count("refused a peer request"), 0, "{}", log.text());
    }

    /// A snapshot at `index` of members 1 and 3 that a leader of `term` sends, its data
    /// inline (as an in-memory network sends one), as the body of a `POST /raft` from node 1.
    fn inline_snapshot_request(term: u64, index: u64) -> (HeaderMap, Body) {
        let mut m = message(MessageType::MsgSnapshot, 1);
        m.term = term;
        let snap = m.mut_snapshot();
        snap.data = vec![7u8; 64].into();
        let meta = snap.mut_metadata();
        (meta.term, meta.index) = (term, index);
        meta.set_conf_state(raft::eraftpb::ConfState::from((vec![1, 3], vec![])));
        (
            leaders_headers(),
            Body::from(super::super::encode_batch(&[m])),
        )
    }

    /// The headers of a request from node 1 to node 3 of cluster `abc`.
    fn leaders_headers() -> HeaderMap {
        let mut headers = HeaderMap::new();
        headers.insert(HEADER_FROM, HeaderValue::from_static("1"));
        headers.insert(HEADER_TO, HeaderValue::from_static("3"));
        headers.insert(HEADER_CLUSTER, HeaderValue::from_static("abc"));
        headers
    }

    /// Hands `server` the snapshot at `index` that a leader of `term` sends
    /// ([`inline_snapshot_request`]), delivered: its node takes it (the events it had are
    /// dropped first, so that it has room).
    async fn deliver(
        server: &PeerServer,
        events: &mut mpsc::Receiver<PeerEvent>,
        term: u64,
        index: u64,
        what: &str,
    ) {
        while events.try_recv().is_ok() {}
        let (headers, body) = inline_snapshot_request(term, index);
        receive_snapshot(State(server.clone()), headers, body)
            .await
            .expect(what);
    }

    /// A snapshot this node gave up on after its last byte, its raft node taking nothing
    /// (its inbox full), is this node's own trouble as much as a full disk: the leader's next
    /// attempts meet it too. So `/-/ready`'s reason names it, with what to look at, until a
    /// snapshot is delivered. It was only logged, and the node said nothing but how far
    /// behind it was. A deposed leader's snapshot (sent in an earlier term, here of a higher
    /// index) refused or delivered meanwhile leaves the reason as it was.
    #[tokio::test(start_paused = true)]
    async fn a_snapshot_given_up_after_its_last_byte_says_why_until_one_is_delivered() {
        let dir = tempfile::TempDir::new().expect("temp dir");
        let (server, mut events) = server(dir.path());
        while server.inbox.try_send(PeerEvent::Unreachable(2)).is_ok() {}
        let (headers, body) = inline_snapshot_request(3, 9);
        let refused = receive_snapshot(State(server.clone()), headers, body)
            .await
            .expect_err("a hand-off that never completes is given up");
        assert_eq!(refused.status(), StatusCode::SERVICE_UNAVAILABLE);
        let why = server
            .shared
            .snapshot_refused(0)
            .expect("the give-up is this node's own trouble");
        assert!(
            why.contains("after its last byte")
                && why.contains("hand it to the raft node")
                && why.contains("check its log"),
            "{why}"
        );
        assert!(!why.contains('\n'), "one line: {why}");

        // Any other refusal (here: the sender's own mistake) leaves the reason as it was.
        let mut wrong = HeaderMap::new();
        wrong.insert(HEADER_FROM, HeaderValue::from_static("1"));
        let refused = receive_snapshot(State(server.clone()), wrong, Body::empty())
            .await
            .expect_err("no headers");
        assert_eq!(refused.status(), StatusCode::BAD_REQUEST);
        assert_eq!(server.shared.snapshot_refused(0), Some(why.clone()));
        // A node that has applied the snapshot's index (9) since, by the log, needs it no
        // longer: the reason is stale.
        assert_eq!(server.shared.snapshot_refused(8), Some(why.clone()));
        assert_eq!(
            server.shared.snapshot_refused(9),
            None,
            "stale once applied"
        );

        // A deposed leader's snapshot: its refusal replaced the current leader's reason,
        // and this node may have applied its index by the log, or never reach it.
        let (headers, body) = inline_snapshot_request(2, 12);
        receive_snapshot(State(server.clone()), headers, body)
            .await
            .expect_err("still given up");
        assert_eq!(
            server.shared.snapshot_refused(5),
            Some(why.clone()),
            "a deposed leader's refusal hid the current one's"
        );
        deliver(&server, &mut events, 2, 12, "a deposed leader's delivered").await;
        assert_eq!(
            server.shared.snapshot_refused(5),
            Some(why),
            "a deposed leader's snapshot delivered cleared the current one's reason"
        );

        deliver(
            &server,
            &mut events,
            3,
            9,
            "delivered, now that the node takes it",
        )
        .await;
        assert_eq!(server.shared.snapshot_refused(0), None, "cleared");
        assert!(matches!(events.try_recv(), Ok(PeerEvent::Step(_))));
    }

    /// A snapshot refused by its announced length alone, before its message is read, is
    /// named by its sender's header: its reason for `/-/ready` goes stale once this node has
    /// applied its index, and a deposed leader's snapshot delivered later leaves it. Unnamed,
    /// the reason stayed for the life of the process, and any delivery cleared it (found by
    /// a review).
    #[tokio::test]
    async fn a_snapshot_refused_by_its_length_is_named_by_its_senders_header() {
        let dir = tempfile::TempDir::new().expect("temp dir");
        let (server, mut events) = server(dir.path());
        let mut m = message(MessageType::MsgSnapshot, 1);
        m.term = 3;
        m.mut_snapshot().mut_metadata().index = 9;
        let mut headers = leaders_headers();
        headers.insert(
            header::CONTENT_LENGTH,
            HeaderValue::from_static("1099511627776"),
        );
        headers.insert(
            HEADER_SNAPSHOT,
            HeaderValue::from_str(&super::super::snapshot_header(&m)).expect("a header value"),
        );
        let refused = receive_snapshot(State(server.clone()), headers, Body::empty())
            .await
            .expect_err("announced over the limit");
        assert_eq!(refused.status(), StatusCode::PAYLOAD_TOO_LARGE);
        let why = server
            .shared
            .snapshot_refused(8)
            .expect("this node's own limit");
        assert!(why.contains("--max-snapshot-bytes"), "{why}");
        assert_eq!(
            server.shared.snapshot_refused(9),
            None,
            "stale once its index is applied"
        );

        deliver(&server, &mut events, 2, 12, "a deposed leader's delivered").await;
        assert_eq!(
            server.shared.snapshot_refused(8),
            Some(why),
            "a deposed leader's snapshot delivered cleared the current one's reason"
        );
    }

    fn message(kind: MessageType, from: u64) -> Message {
        let mut m = Message {
            from,
            to: 3,
            ..Default::default()
        };
        m.set_msg_type(kind);
        if matches!(kind, MessageType::MsgPropose | MessageType::MsgReadIndex) {
            // As raft sends them: the command, or the read's context.
            m.set_entries(vec![raft::eraftpb::Entry::default()].into());
        }
        m
    }

    /// A follower that led until a moment ago passes on, to the new leader, a proposal and a
    /// read request node 2 sent it: they keep node 2's id, and its batch is taken whole,
    /// its own messages with them. Any other message claiming another sender is refused.
    #[tokio::test]
    async fn relayed_proposals_and_reads_keep_their_originator() {
        let dir = tempfile::TempDir::new().expect("temp dir");
        let (server, mut events_rx) = server(dir.path());
        let batch = vec![
            message(MessageType::MsgAppendResponse, 1),
            message(MessageType::MsgPropose, 2),
            message(MessageType::MsgReadIndex, 2),
        ];
        server
            .deliver(1, batch.clone())
            .await
            .expect("a batch with relayed messages is taken");
        match events_rx.try_recv() {
            Ok(PeerEvent::Step(got)) => assert_eq!(got, batch),
            _ => panic!("the batch did not reach the raft node"),
        }

        let forged = vec![message(MessageType::MsgAppend, 2)];
        let refusal = server
            .deliver(1, forged)
            .await
            .expect_err("an append claiming another sender is refused");
        assert_eq!(refusal.status(), StatusCode::BAD_REQUEST);
        assert!(
            events_rx.try_recv().is_err(),
            "nothing reached the raft node"
        );
    }
}
