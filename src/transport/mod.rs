//! Peer transport: raft messages between nodes over HTTP on the peer URLs of `--cluster`.
//!
//! Outgoing: the raft node hands every message to [`Transport::send`], which only ever does a
//! `try_send` into the destination peer's bounded queue, so a slow or dead peer can never block
//! the node. Each peer has its own task ([`peer`]) that writes its queue, batch after batch,
//! into a long-lived `POST /raft/stream`; snapshots go in a `POST /raft` of their own, streamed
//! from the leader's snapshot file to a file on the follower ([`snapshot`]).
//! Messages that do not fit are dropped and raft is told the peer is unreachable; raft
//! retransmits what matters.
//!
//! Incoming: [`server`] serves both paths on this node's peer URL and feeds the messages to
//! the raft node's inbox, after checking that they come from this cluster and from a member.
//! Until the node has replayed its log, [`starting`] answers on the same port instead.
//! A node started with `--join` first asks the members in `--cluster` for the cluster's
//! identity ([`join`]); until one of them says it was added, it refuses every message.
//!
//! The wire format of a batch is [`wire`]'s. Headers name the sender's cluster identity (and
//! its incarnation once it knows it: see [`crate::incarnation`]), the sender and receiver
//! ids, and the sender's own peer URL (where a node that does not count the sender as a
//! member answers it: see [`PeerFilter::route_back`]). A length over
//! [`PeerLimits::max_message`] is refused as soon as its four bytes arrive, so a peer
//! connection never holds more than one bounded message.
//!
//! With `https://` peer URLs the client and the server speak TLS and each checks the other's
//! certificate against `--peer-trusted-ca-file` (see [`crate::tls`]).

pub mod builds;
mod http;
pub mod join;
pub mod mem;
pub mod peer;
pub mod probe;
pub mod server;
mod shape;
pub mod snapshot;
pub mod starting;
pub mod wire;

pub use http::read_short;
#[cfg(test)]
pub(crate) use http::tests as http_tests;
pub use snapshot::inline_snapshot;
pub use wire::{WireError, decode_available, decode_batch, encode_batch};

use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::convert::Infallible;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, RwLock};
use std::time::{Duration, Instant};

use bytes::Bytes;
use http_body_util::combinators::BoxBody;
use hyper_rustls::HttpsConnector;
use hyper_util::client::legacy::Client;
use hyper_util::client::legacy::connect::HttpConnector;
use hyper_util::rt::TokioExecutor;
use raft::eraftpb::{Message, MessageType};
use tokio::sync::mpsc;
use tokio_util::sync::CancellationToken;

use crate::config::Config;
use crate::metrics::Metrics;
use crate::request::SentSnapshot;
use crate::snapshotter::Snapshotter;

/// What the transport tells the raft node about its peers.
#[derive(Debug)]
pub enum PeerEvent {
    /// Messages from a peer, in the order it sent them.
    Step(Vec<Message>),
    /// A peer could not be reached.
    Unreachable(u64),
    /// A snapshot was (or was not) delivered to a peer.
    SnapshotStatus {
        /// The peer.
        peer: u64,
        /// Which snapshot: a long send may end after a newer snapshot was taken, and the
        /// node must not take its success for the newer one's (see `RaftNode`'s
        /// `snapshot_delivered`).
        snapshot: SnapshotId,
        /// Whether it accepted the snapshot.
        delivered: bool,
    },
    /// This node asked to join on an empty data dir, and a member refused for good: the id
    /// has run since it was last added, so this start lost that run's data ([`join`]). The
    /// member's reason.
    JoinRefused(String),
    /// A peer answered 410 Gone: it believes this node was removed.
    RemovedByPeer {
        /// The peer.
        peer: u64,
        /// The log index as of which it believes so (`None`: it did not say).
        as_of: Option<u64>,
    },
}

/// A snapshot, as its metadata names it: a snapshot taken again in place of a damaged one,
/// in an idle cluster, has the same term and index (and file name) as the damaged one.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct SnapshotId {
    /// The term of its last entry.
    pub term: u64,
    /// The index of its last entry.
    pub index: u64,
}

impl SnapshotId {
    /// The snapshot the `MsgSnapshot` `m` carries.
    pub fn of(m: &Message) -> SnapshotId {
        let meta = m.get_snapshot().get_metadata();
        SnapshotId {
            term: meta.term,
            index: meta.index,
        }
    }
}

/// The value of [`HEADER_SNAPSHOT`] for the `MsgSnapshot` `m`.
pub(crate) fn snapshot_header(m: &Message) -> String {
    format!("{}/{}", m.term, m.get_snapshot().get_metadata().index)
}

/// The snapshot a [`HEADER_SNAPSHOT`] value names, if it is one (`snapshot_header`).
pub(crate) fn snapshot_named(value: &str) -> Option<SentSnapshot> {
    let (term, index) = value.split_once('/')?;
    Some(SentSnapshot {
        term: term.parse().ok()?,
        index: index.parse().ok()?,
    })
}

/// Header carrying the sender's cluster identity, in hex.
pub const HEADER_CLUSTER: &str = "x-raftexample-cluster";
/// Header carrying the sender's cluster incarnation, in hex, once it knows it (see
/// [`crate::incarnation`]): a peer whose incarnation differs is of another run of a cluster
/// started with the same flags.
pub const HEADER_INCARNATION: &str = "x-raftexample-incarnation";
/// Header on every peer request of this build, and on its answer to [`PROBE_PATH`]: this
/// build stores a PUT's value of any bytes. Builds before that send none, and skip a log entry
/// writing a value that is not UTF-8 (see [`builds`]).
pub const HEADER_VALUES: &str = "x-raftexample-values";
/// Header on this build's answer to [`PROBE_PATH`]: the members it last heard as an older
/// build (`2,3`; empty for none), which a follower asks its leader before it writes a value
/// that is not UTF-8 (see [`builds`]).
pub const HEADER_OLDER: &str = "x-raftexample-older";
/// Header carrying the sender's node id.
pub const HEADER_FROM: &str = "x-raftexample-from";
/// Header carrying the receiver's node id.
pub const HEADER_TO: &str = "x-raftexample-to";
/// Path of the one-request endpoint (snapshots).
pub const RAFT_PATH: &str = "/raft";
/// Path of the streaming endpoint (every other message).
pub const STREAM_PATH: &str = "/raft/stream";
/// Path where a joining node asks a member for the cluster's identity.
pub const JOIN_PATH: &str = "/raft/join";
/// Where a node answers "ok" to anyone who asks: the strict reconfiguration check's probe of
/// whether a member's process answers (its port alone is open even while it is stopped).
pub const PROBE_PATH: &str = "/raft/probe";
/// Header on the answer to [`PROBE_PATH`] carrying the address the member's REST API listens
/// on, so that a member's REST URL given as a new member's peer URL is caught (see
/// [`crate::membership::reaches_listener`]).
pub const HEADER_REST_LISTEN: &str = "x-raftexample-rest-listen";
/// Header on a snapshot request naming the snapshot it carries, `<sender's term>/<index>`
/// (`snapshot_header`): a receiver that refuses it by its announced length alone, before
/// reading its message, still knows which snapshot it refused (see `PeerServer`'s
/// `receive_snapshot`).
pub const HEADER_SNAPSHOT: &str = "x-raftexample-snapshot";
/// Header carrying the sender's own peer URL (on every peer request, and on a joining node's
/// lookup).
pub const HEADER_URL: &str = "x-raftexample-url";
/// Header on a member's admission of a joining node when the leader gave it, in touch with a
/// quorum and sure its membership is the latest: its word outweighs a follower's doubt, which
/// may come from a removal and re-addition the follower has yet to apply (see [`join`]).
pub const HEADER_LEADER: &str = "x-raftexample-leader";
/// Header on a member's admission of a joining node: the voters of the membership it has
/// applied (`1,2,3`), sent unless (leading) it holds back committed entries. Without the
/// leader's word, a node is admitted only by voters that every quorum meets (see [`join`]).
pub const HEADER_VOTERS: &str = "x-raftexample-voters";
/// Header on a member's admission of a joining node: the last entry it had applied. Its
/// admission outweighs another member's doubt about a session that began at or before it.
pub const HEADER_APPLIED: &str = "x-raftexample-applied";
/// Header on a member's admission of a joining node: the term of the last entry it had
/// applied ([`Admission::applied`]).
pub const HEADER_APPLIED_TERM: &str = "x-raftexample-applied-term";
/// Header on a member's admission of a joining node: its current term ([`Admission::term`]).
pub const HEADER_TERM: &str = "x-raftexample-term";
/// Header on a member's doubt (409) of a joining node: the index an admitter must have applied
/// to outweigh it (for a session, the latest registration the member knows; for the node at
/// another URL, the entry after the member's applied one, or a later registration in its log).
pub const HEADER_SESSION: &str = "x-raftexample-session";

/// Header on every answer of a node that is starting ([`starting`]): its peer port is served
/// from the moment it is bound, while the node replays its log, and refuses everything with
/// a `503` that carries this header. Its value says whether the node holds data:
/// [`STARTING_WITH_DATA`] (its WAL existed when it started, so it may know that an asker's
/// id has run) or [`STARTING_EMPTY`].
pub const HEADER_STARTING: &str = "x-raftexample-starting";
/// [`HEADER_STARTING`]'s value for a starting node that holds data.
pub const STARTING_WITH_DATA: &str = "data";
/// [`HEADER_STARTING`]'s value for a starting node that holds none (a new member, or one
/// that lost its data).
pub const STARTING_EMPTY: &str = "empty";

/// raft's `max_size_per_msg`, as the raft node configures it: a `MsgAppend` carries entries
/// up to this many bytes, plus one more entry that may cross it.
pub const MAX_SIZE_PER_MSG: u64 = 1 << 20;
/// Room in a message beside its entries' data: a key (bounded by hyper's request head limit,
/// about 400 KiB), protobuf framing, the entry contexts.
const MESSAGE_MARGIN: usize = 1 << 20;

/// Messages queued per peer before new ones are dropped.
const PEER_QUEUE: usize = 4096;

/// Senders outside the membership a node keeps a route back to (see
/// [`PeerFilter::note_route_back`]).
pub const MAX_ROUTES_BACK: usize = 16;

/// A route back to a sender outside the membership lasts while the sender keeps sending: one
/// silent this long is no longer answered (its task ends).
pub const ROUTE_BACK_IDLE: Duration = Duration::from_secs(30);
/// Senders whose last message time [`PeerFilter`] keeps: more than a cluster has, so only
/// made-up ids (let in while a node knows no leader) ever push one out, the one heard from
/// longest ago that is not a member.
const MAX_HEARD: usize = 1024;

/// How long a removed peer's task may go on sending what was queued for it.
const REMOVAL_GRACE: Duration = Duration::from_secs(2);

/// HTTP client shared by all peer tasks: plain HTTP for `http://` peers, TLS for `https://`.
pub type HttpClient = Client<HttpsConnector<HttpConnector>, BoxBody<Bytes, Infallible>>;

/// How much one peer may send at once.
#[derive(Debug, Clone, Copy)]
pub struct PeerLimits {
    /// Largest message on the stream: raft's [`MAX_SIZE_PER_MSG`] of entries, one entry that
    /// may cross it (a value of up to `--max-body-bytes`), and a margin.
    pub max_message: usize,
    /// Largest snapshot file a peer may send (`--max-snapshot-bytes`; `u64::MAX`: no limit).
    pub max_snapshot: u64,
    /// `--client-timeout-ms`: past it, a snapshot must have arrived at
    /// [`crate::config::MIN_BODY_RATE`] on average (see [`crate::config::body_patience`]).
    pub snapshot_grace: Duration,
    /// Room a snapshot must leave on the disk: a WAL segment (`--wal-segment-bytes`), this
    /// node's next, or another's on the same disk, as `./cluster.sh` runs them. One that could
    /// never fit was written until the disk was full, on every retry of the leader's, and a
    /// WAL write that met the full disk meanwhile stopped its node (found by a review).
    pub keep_free: u64,
}

impl PeerLimits {
    /// The limits `config` implies. Every node should run with the same `--max-body-bytes`:
    /// a leader with a larger one could send entries its followers refuse.
    pub fn from_config(config: &Config) -> PeerLimits {
        PeerLimits {
            max_message: MAX_SIZE_PER_MSG as usize + config.max_body_bytes + MESSAGE_MARGIN,
            max_snapshot: match config.max_snapshot_bytes {
                0 => u64::MAX,
                limit => limit,
            },
            snapshot_grace: config.client_timeout(),
            keep_free: config.wal_segment_bytes,
        }
    }
}

/// How many of the proposals whose sizes are `sizes` a follower forwards in one `MsgPropose`:
/// as many as fit in [`MAX_SIZE_PER_MSG`], and at least one, so that the message stays within
/// what its receiver accepts (see [`PeerLimits::max_message`]).
pub fn proposals_per_message(sizes: impl Iterator<Item = usize>) -> usize {
    let mut total = 0u64;
    let mut count = 0;
    for size in sizes {
        total += size as u64;
        if count > 0 && total > MAX_SIZE_PER_MSG {
            break;
        }
        count += 1;
    }
    count
}

/// What the transport and its server share with the raft node about the cluster.
#[derive(Debug)]
pub struct PeerFilter {
    /// This node's id.
    pub self_id: u64,
    /// The cluster identity; 0 on a joining node until a member tells it ([`join`]).
    cluster_id: AtomicU64,
    /// The cluster's incarnation ([`crate::incarnation`]), set by the raft node; 0 while it
    /// does not know it.
    incarnation: AtomicU64,
    /// The other members and their peer URLs, as the transport sends to them.
    members: RwLock<BTreeMap<u64, String>>,
    /// Members removed from the cluster, by the state this node has applied (their vote
    /// requests may get 410 Gone: see [`gone_as_of`]).
    removed: RwLock<BTreeSet<u64>>,
    /// The last entry this node has applied.
    applied: Mutex<AppliedAt>,
    /// What the members that admitted this node had seen, if it joined on an empty data dir.
    admission: Mutex<Option<Admission>>,
    /// When each peer's messages last arrived, and when messages other than vote requests
    /// did: a peer task that keeps sending into silence knows its connection is dead even
    /// while TCP still accepts its writes.
    last_heard: Mutex<HashMap<u64, Heard>>,
    /// This node's own peer URL, which its requests name so that a peer that does not count
    /// it as a member can still answer it.
    own_url: String,
    /// Senders outside the membership that the peer server let in, and the URL each said it
    /// is at: a node behind on membership answers a leader added meanwhile through them.
    routes_back: RwLock<BTreeMap<u64, String>>,
    /// What each member last said of its build ([`builds`]).
    builds: builds::Builds,
    /// Whether this node's requests and probe answers carry [`HEADER_VALUES`]: false only on
    /// a node that plays an older build in tests of rolling upgrades
    /// ([`Config::test_as_older_build`]).
    announce_values: bool,
}

impl PeerFilter {
    /// A filter for node `self_id` of cluster `cluster_id` (0 if not known yet).
    pub fn new(self_id: u64, cluster_id: u64) -> PeerFilter {
        PeerFilter {
            self_id,
            cluster_id: AtomicU64::new(cluster_id),
            incarnation: AtomicU64::new(0),
            members: RwLock::new(BTreeMap::new()),
            removed: RwLock::new(BTreeSet::new()),
            applied: Mutex::new(AppliedAt::default()),
            admission: Mutex::new(None),
            last_heard: Mutex::new(HashMap::new()),
            own_url: String::new(),
            routes_back: RwLock::new(BTreeMap::new()),
            builds: builds::Builds::default(),
            announce_values: true,
        }
    }

    /// The same filter, saying (`true`, the default) or not that this build stores values of
    /// any bytes: `false` only to play an older build in tests of rolling upgrades.
    pub fn announcing_values(mut self, announce: bool) -> PeerFilter {
        self.announce_values = announce;
        self
    }

    /// What this node says of its build in its requests and probe answers: the
    /// [`HEADER_VALUES`] header's value, if it sends one.
    pub fn values_header(&self) -> Option<&'static str> {
        self.announce_values.then_some("bytes")
    }

    /// What each member last said of its build.
    pub fn builds(&self) -> &builds::Builds {
        &self.builds
    }

    /// The same filter, for a node whose peer URL is `url`, kept without blanks or a trailing
    /// slash: the peer server reads from its scheme whether the cluster speaks TLS.
    pub fn with_url(mut self, url: &str) -> PeerFilter {
        self.own_url = crate::membership::normalize_url(url).to_string();
        self
    }

    /// `request` naming what every peer request names: the cluster's identity (0 while
    /// joining), this node, the peer `to` it is meant for, that this build stores values of
    /// any bytes ([`HEADER_VALUES`]), and the incarnation once this node knows it (see
    /// `server`).
    pub fn name_sender(
        &self,
        request: hyper::http::request::Builder,
        to: u64,
    ) -> hyper::http::request::Builder {
        let mut request = request
            .header(HEADER_CLUSTER, format!("{:x}", self.cluster_id()))
            .header(HEADER_FROM, self.self_id.to_string())
            .header(HEADER_TO, to.to_string());
        if let Some(values) = self.values_header() {
            request = request.header(HEADER_VALUES, values);
        }
        // Without leading zeros, as older builds send it: every build reads both, and people
        // see it in 16 digits (`incarnation::hex`), which the wire need not follow.
        match self.incarnation() {
            0 => request,
            incarnation => request.header(HEADER_INCARNATION, format!("{incarnation:x}")),
        }
    }

    /// This node's peer URL ("" if not set).
    pub fn own_url(&self) -> &str {
        &self.own_url
    }

    /// The peer server let in `id`, which this node does not count as a member, and `id` said
    /// it is at `url`. Kept for at most [`MAX_ROUTES_BACK`] such senders (they are let in only
    /// while this node knows no other leader, so more than a few means a misconfiguration or
    /// senders long gone): a new one takes the place of the one heard from longest ago.
    pub fn note_route_back(&self, id: u64, url: &str) {
        let mut routes = self.routes_back.write().unwrap_or_else(|p| p.into_inner());
        if routes.get(&id).is_some_and(|known| known == url) {
            return;
        }
        if routes.len() >= MAX_ROUTES_BACK && !routes.contains_key(&id) {
            let oldest = routes
                .keys()
                .copied()
                .min_by_key(|peer| self.last_heard(*peer));
            if let Some(oldest) = oldest {
                tracing::warn!(
                    peer = oldest,
                    "no longer answering node {oldest}, outside the membership: {MAX_ROUTES_BACK} \
                     such senders at once"
                );
                routes.remove(&oldest);
            }
        }
        routes.insert(id, url.to_string());
    }

    /// Where to answer `id`, a sender outside the membership that the peer server let in and
    /// that spoke within [`ROUTE_BACK_IDLE`].
    pub fn route_back(&self, id: u64) -> Option<String> {
        let recent = self
            .last_heard(id)
            .is_some_and(|at| at.elapsed() < ROUTE_BACK_IDLE);
        if !recent {
            return None;
        }
        self.routes_back
            .read()
            .unwrap_or_else(|p| p.into_inner())
            .get(&id)
            .cloned()
    }

    /// Records that `messages` (none: part of one) from `peer` just arrived.
    pub fn heard_from(&self, peer: u64, messages: &[Message]) {
        let now = Instant::now();
        let lock = || self.last_heard.lock().unwrap_or_else(|p| p.into_inner());
        let full =
            |heard: &HashMap<u64, Heard>| heard.len() >= MAX_HEARD && !heard.contains_key(&peer);
        let mut heard = lock();
        if full(&heard) {
            // A member silent for a while is never the one to make room. The members are
            // read with the table unlocked (never both locks at once), and only when it is
            // full: each batch from a peer passes here.
            drop(heard);
            let members: BTreeSet<u64> = {
                let members = self.members.read().unwrap_or_else(|p| p.into_inner());
                members.keys().copied().collect()
            };
            heard = lock();
            // Others may have made room meanwhile.
            if full(&heard) {
                let oldest = heard
                    .iter()
                    .filter(|(id, _)| !members.contains(id))
                    .min_by_key(|(_, h)| h.any)
                    .map(|(id, _)| *id);
                if let Some(oldest) = oldest {
                    heard.remove(&oldest);
                }
            }
        }
        let entry = heard.entry(peer).or_insert(Heard {
            any: now,
            besides_votes: None,
        });
        entry.any = now;
        // No message yet: part of one arrived (a large one can take a while), and a vote
        // request is small.
        if messages.is_empty() || messages.iter().any(|m| !is_vote_request(m)) {
            entry.besides_votes = Some(now);
        }
    }

    /// When messages from `peer` last arrived.
    pub fn last_heard(&self, peer: u64) -> Option<Instant> {
        self.heard(peer).map(|h| h.any)
    }

    /// When messages from `peer` other than vote requests last arrived: what tells a peer
    /// task that its stream reaches the peer. A peer campaigns exactly when it hears no
    /// leader, so its vote requests say nothing of whether ours arrive: a leader whose stream
    /// to a restarted follower never reached it (the connection accepted by the kernel, never
    /// served) went on writing into it for good while the follower campaigned at it, once a
    /// second, unheard (seen in the fault suite's kill runs).
    pub fn last_heard_besides_votes(&self, peer: u64) -> Option<Instant> {
        self.heard(peer).and_then(|h| h.besides_votes)
    }

    fn heard(&self, peer: u64) -> Option<Heard> {
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

    /// The cluster's incarnation as this node knows it, 0 if it does not.
    pub fn incarnation(&self) -> u64 {
        self.incarnation.load(Ordering::Acquire)
    }

    /// Records the cluster's incarnation, once the raft node knows it; returns the one it
    /// replaces (0: none). Streams opened before it was known carry no header: each peer task
    /// sees the change at its next batch and opens a new stream, which names it.
    pub fn set_incarnation(&self, incarnation: u64) -> u64 {
        self.incarnation.swap(incarnation, Ordering::AcqRel)
    }

    /// Adopts `id`, into which the members admitted this node having seen `admission`, naming
    /// `incarnation` (0: none agreed), if no identity is known yet; returns the identity now in
    /// force. Only the members' answers to [`join`] get here: a message never sets the
    /// identity. The admission and the incarnation are in place first: messages are let in
    /// once the identity is known, and a peer of another run must be refused from the first.
    pub fn admitted(&self, id: u64, admission: Admission, incarnation: u64) -> u64 {
        if self.cluster_id() == 0 {
            *self.admission.lock().unwrap_or_else(|p| p.into_inner()) = Some(admission);
            if incarnation != 0 {
                // Not over one the raft node already told: what it applied decides.
                let _ = self.incarnation.compare_exchange(
                    0,
                    incarnation,
                    Ordering::AcqRel,
                    Ordering::Acquire,
                );
            }
        }
        self.adopt_cluster_id(id)
    }

    /// What the members that admitted this node had seen ([`PeerFilter::admitted`]).
    pub fn admission(&self) -> Option<Admission> {
        *self.admission.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// Adopts `id` if no identity is known yet; returns the identity now in force.
    fn adopt_cluster_id(&self, id: u64) -> u64 {
        match self
            .cluster_id
            .compare_exchange(0, id, Ordering::AcqRel, Ordering::Acquire)
        {
            Ok(_) => id,
            Err(current) => current,
        }
    }

    /// Replaces the set of removed ids with that of the state this node has applied.
    pub fn set_removed(&self, removed: &BTreeSet<u64>) {
        self.removed
            .write()
            .unwrap_or_else(|p| p.into_inner())
            .clone_from(removed);
    }

    /// Records the last entry this node has applied.
    pub fn set_applied(&self, applied: AppliedAt) {
        *self.applied.lock().unwrap_or_else(|p| p.into_inner()) = applied;
    }

    /// Whether `id` is this node or one of the peers the transport sends to.
    pub fn is_member(&self, id: u64) -> bool {
        id == self.self_id
            || self
                .members
                .read()
                .unwrap_or_else(|p| p.into_inner())
                .contains_key(&id)
    }

    /// The other members (those the transport sends to) last heard as an older build,
    /// ascending ([`builds`]).
    pub fn older_members(&self) -> Vec<u64> {
        let members: Vec<u64> = {
            let members = self.members.read().unwrap_or_else(|p| p.into_inner());
            members.keys().copied().collect()
        };
        self.builds.older_among(members)
    }

    /// The peer URL of member `id`, if it is one of the peers.
    pub fn member_url(&self, id: u64) -> Option<String> {
        self.members
            .read()
            .unwrap_or_else(|p| p.into_inner())
            .get(&id)
            .cloned()
    }

    /// Records `id` as a member reached at `url`, or (`None`) as no longer one: the transport
    /// does as the membership changes; a test of a check that reads the members, directly.
    pub(crate) fn set_member(&self, id: u64, url: Option<&str>) {
        let mut members = self.members.write().unwrap_or_else(|p| p.into_inner());
        match url {
            Some(url) => members.insert(id, url.to_string()),
            None => members.remove(&id),
        };
        // A member is reached at its URL in the membership; a removed one, not at all.
        self.routes_back
            .write()
            .unwrap_or_else(|p| p.into_inner())
            .remove(&id);
        if url.is_none() {
            self.builds.forget(id);
        }
    }

    /// If `id` was removed from the cluster: the last entry this node has applied, as of
    /// which it knows it.
    pub fn removed_as_of(&self, id: u64) -> Option<AppliedAt> {
        if !self
            .removed
            .read()
            .unwrap_or_else(|p| p.into_inner())
            .contains(&id)
        {
            return None;
        }
        Some(*self.applied.lock().unwrap_or_else(|p| p.into_inner()))
    }
}

/// When a peer's messages last arrived (see [`PeerFilter::last_heard_besides_votes`]).
#[derive(Debug, Clone, Copy)]
struct Heard {
    any: Instant,
    besides_votes: Option<Instant>,
}

fn is_vote_request(m: &Message) -> bool {
    matches!(
        m.get_msg_type(),
        MessageType::MsgRequestVote | MessageType::MsgRequestPreVote
    )
}

/// The body of a 410 Gone: it names the log index as of which the answering node counts the
/// sender as removed, since the sender may have been added back after it and the answering
/// node be behind ([`removed_as_of_index`] reads it back).
pub fn gone_text(id: u64, as_of: u64) -> String {
    format!("node {id} was removed from the cluster as of log index {as_of}\n")
}

/// The last entry a node has applied: its index and term.
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq)]
pub struct AppliedAt {
    /// Its log index.
    pub index: u64,
    /// Its term.
    pub term: u64,
}

/// What the members that admitted a joining node (started with `--join` on an empty data dir)
/// had seen, which the node starts from: its log is empty, and raft grants an empty log's vote
/// to any candidate and follows a leader of any term. A member removed while cut off, still
/// running with the voters it had, would win an election with that vote and a log missing
/// committed entries, or, leading still, go on committing with the node's acknowledgements.
/// Zero where a member of an older version said nothing.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Admission {
    /// The last entry they had applied, so committed: until the node's log commits that far,
    /// it votes for no candidate whose log ends before it (see [`crate::wal::JoinedAt`]).
    pub applied: AppliedAt,
    /// Their current term, at least that in which that entry committed: the node starts in it,
    /// so it follows no leader of an earlier term, and every leader from this term on holds
    /// that entry (raft's leader completeness).
    pub term: u64,
}

impl Admission {
    /// The stronger of the two: the later applied entry, the later term (each holds for the
    /// cluster, whichever member said it).
    pub fn max(self, other: Admission) -> Admission {
        let key = |a: &AppliedAt| (a.term, a.index);
        Admission {
            applied: if key(&other.applied) > key(&self.applied) {
                other.applied
            } else {
                self.applied
            },
            term: self.term.max(other.term),
        }
    }
}

/// Whether a node whose cluster incarnation is `ours` refuses a peer that names `theirs`
/// (0: not known): only when both know theirs and they differ, as the peer server, the
/// in-memory network and the simulator judge it (see [`crate::incarnation`]).
pub fn of_another_run(ours: u64, theirs: u64) -> bool {
    ours != 0 && theirs != 0 && ours != theirs
}

/// Whether a batch from a peer that this node, having applied up to `removed_as_of`, counts as
/// removed is answered 410 Gone, and as of which index. Only a vote request gets it (this node
/// may still be replaying a log in which the sender was added back; refusing its appends would
/// keep this node from ever reaching that entry), and only from a candidate whose log is no
/// further than what this node applied (its last term lower, or the same and its last index no
/// higher). A node added back after that holds the entry that added it, so its log goes
/// further; this node, behind, leaves the judging of such a log to raft (refusing it could
/// leave a cluster whose voters are it and the node added back without a leader for ever). A
/// removed node whose log ends in entries of an older term, never committed, still gets it.
///
/// And only from a node whose applied members are the cluster's latest as far as it can tell
/// (`settled`, published by the raft node every round: it leads with every membership change
/// in its log applied and has heard from a quorum of voters within half an election timeout,
/// or follows a leader it heard from within that time and has applied an entry of that
/// leader's term with none left unapplied in its log; never while a leader holds back entries
/// after its own removal). Another member may hold the sender's re-addition unapplied, or not
/// hold it yet: a node added back and restarted from its data of before its removal, while
/// the leader was down, was told 410 by a member that knew no leader and stopped for good
/// (found by a review); a member that has just heard of a new leader, but not yet received
/// the entries it missed, could do the same. (Left: a follower that lags behind its leader by
/// the re-addition itself, proposed in the leader's current term, while the node added back
/// already campaigns, at least an election timeout after its start.) Followers answer too,
/// since a removed node asks only the members it knows, and the leader may be one it never
/// heard of. Meanwhile it may even win a term (a member that knows no leader and has the same
/// log grants it votes), which is safe, as its configuration is at most one change behind
/// (raft has one in flight at a time), and it stops once it applies its removal (a leader and
/// followers in their lease ignore its pre-votes anyway: the 410 ends its process, it does
/// not protect the cluster).
pub fn gone_as_of(
    removed_as_of: Option<AppliedAt>,
    settled: bool,
    messages: &[Message],
) -> Option<u64> {
    let applied = removed_as_of.filter(|_| settled)?;
    messages
        .iter()
        .any(|m| is_vote_request(m) && (m.log_term, m.index) <= (applied.term, applied.index))
        .then_some(applied.index)
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

/// What the raft node needs of the network: where its peers are, and sending them messages,
/// never waiting. [`Transport`] is the real one (HTTP between processes); tests and the
/// simulator bring their own, in memory. What peers send back reaches the node as
/// [`PeerEvent`]s.
///
/// A `MsgSnapshot` the node sends carries no state: its data is a handle naming a file of
/// the node's snapshot directory ([`crate::snapshotter::handle`]), which [`Transport`]
/// streams to the peer. A network that delivers messages in memory calls
/// [`inline_snapshot`] on it first, with the sender's file system and snapshot directory:
/// the receiving node installs a snapshot whose data is inline as well.
pub trait Network: Send {
    /// Starts sending to `id` at `url` (or moves it to a new URL).
    fn add_peer(&mut self, id: u64, url: &str);
    /// Stops sending to `id`, after what is already queued for it, if it can.
    fn remove_peer(&mut self, id: u64);
    /// Queues each message for its peer; records in `dropped` what could not be queued.
    fn send(&mut self, messages: Vec<Message>, dropped: &mut Dropped);
    /// The ids removed from the cluster, by the state this node has applied: their vote
    /// requests may be answered 410 Gone ([`gone_as_of`]).
    fn set_removed(&self, removed: &BTreeSet<u64>);
    /// The last entry this node has applied, which a removed id's vote request is judged
    /// against ([`gone_as_of`]).
    fn set_applied(&self, applied: AppliedAt);
    /// The cluster's identity; 0 on a joining node that has not learned it yet.
    fn cluster_id(&self) -> u64;
    /// The cluster's incarnation, once this node knows it (see [`crate::incarnation`]): sent
    /// with every request, and a peer whose own differs is refused. Returns the one it
    /// replaces (0: none; a joining node may have adopted its admitters').
    fn set_incarnation(&self, incarnation: u64) -> u64;
    /// On a node started with `--join` on an empty data dir, once admitted: what the members
    /// that admitted it had seen. Known before the identity is, so before any message arrives.
    fn admission(&self) -> Option<Admission>;
}

impl Network for Transport {
    fn add_peer(&mut self, id: u64, url: &str) {
        Transport::add_peer(self, id, url);
    }

    fn remove_peer(&mut self, id: u64) {
        Transport::remove_peer(self, id);
    }

    fn send(&mut self, messages: Vec<Message>, dropped: &mut Dropped) {
        Transport::send(self, messages, dropped);
    }

    fn set_removed(&self, removed: &BTreeSet<u64>) {
        self.filter.set_removed(removed);
    }

    fn set_applied(&self, applied: AppliedAt) {
        self.filter.set_applied(applied);
    }

    fn cluster_id(&self) -> u64 {
        self.filter.cluster_id()
    }

    fn set_incarnation(&self, incarnation: u64) -> u64 {
        self.filter.set_incarnation(incarnation)
    }

    fn admission(&self) -> Option<Admission> {
        self.filter.admission()
    }
}

/// The sending half: one task per peer, owned by the raft node.
pub struct Transport {
    peers: HashMap<u64, peer::PeerHandle>,
    /// Those of `peers` that are routes back to senders outside the membership.
    routes_back: BTreeSet<u64>,
    /// For the message streams ([`stream_client`]).
    client: HttpClient,
    /// For snapshots and joins ([`http_client`]).
    snapshot_client: HttpClient,
    /// Runtime the peer tasks run on: the server's, not the raft node's own thread, so
    /// messages keep flowing while the node waits for an fsync.
    runtime: tokio::runtime::Handle,
    inbox: mpsc::Sender<PeerEvent>,
    filter: Arc<PeerFilter>,
    shutdown: CancellationToken,
    metrics: Arc<Metrics>,
    /// The node's snapshot files, which snapshots to peers are streamed from.
    snapshots: Snapshotter,
}

impl Transport {
    /// A transport with no peers yet. `tls` is the client side of peer TLS: `https://` peers
    /// are reached with it (without it, they cannot be reached at all). Snapshots are sent
    /// from the files of `snapshots`.
    pub fn new(
        filter: Arc<PeerFilter>,
        inbox: mpsc::Sender<PeerEvent>,
        runtime: tokio::runtime::Handle,
        shutdown: CancellationToken,
        metrics: Arc<Metrics>,
        tls: Option<rustls::ClientConfig>,
        snapshots: Snapshotter,
    ) -> Transport {
        Transport {
            peers: HashMap::new(),
            routes_back: BTreeSet::new(),
            client: stream_client(tls.clone()),
            snapshot_client: http_client(tls),
            runtime,
            inbox,
            filter,
            shutdown,
            metrics,
            snapshots,
        }
    }

    /// Starts sending to `id` at `url` (or moves it to a new URL).
    pub fn add_peer(&mut self, id: u64, url: &str) {
        if id == self.filter.self_id {
            return;
        }
        self.filter.set_member(id, Some(url));
        self.routes_back.remove(&id);
        if self
            .peers
            .get(&id)
            .is_some_and(|existing| existing.url == url)
        {
            // Already sending there: a route back to a leader this node did not count as a
            // member yet, now a member at the same URL.
            return;
        }
        tracing::debug!(peer = id, url, "adding peer");
        self.open_route(id, url);
    }

    /// Starts the task that sends to `id` at `url`, ending the one it had.
    fn open_route(&mut self, id: u64, url: &str) {
        let handle = peer::spawn(
            &self.runtime,
            peer::PeerTask {
                id,
                url: url.to_string(),
                client: self.client.clone(),
                snapshot_client: self.snapshot_client.clone(),
                inbox: self.inbox.clone(),
                filter: self.filter.clone(),
                metrics: self.metrics.clone(),
                snapshots: self.snapshots.clone(),
                snapshot_streak: Arc::default(),
            },
            PEER_QUEUE,
            self.shutdown.child_token(),
        );
        if let Some(older) = self.peers.insert(id, handle) {
            self.retire(older);
        }
    }

    /// Stops sending to `id`.
    pub fn remove_peer(&mut self, id: u64) {
        self.filter.set_member(id, None);
        self.routes_back.remove(&id);
        if let Some(handle) = self.peers.remove(&id) {
            tracing::debug!(peer = id, "removing peer");
            self.retire(handle);
        }
    }

    fn retire(&self, handle: peer::PeerHandle) {
        // Dropping the queue lets the peer's task send what is queued and then end: the last
        // messages to a removed node carry the commit index that tells it its removal
        // committed (without them it never learns, and takes a 410 for news). A peer that
        // cannot be reached is given up after a grace period.
        let cancel = handle.cancel.clone();
        drop(handle);
        self.runtime.spawn(async move {
            tokio::time::sleep(REMOVAL_GRACE).await;
            cancel.cancel();
        });
    }

    /// Queues each message for its peer without ever waiting, and records in `dropped` what
    /// could not be queued (unknown peer or full queue) for raft to be told. A message for a
    /// node outside the membership goes back the way that node came in, if the peer server
    /// let it in ([`PeerFilter::route_back`]): raft answers only what it was sent, and a node
    /// behind on membership must answer the leader that was added meanwhile.
    pub fn send(&mut self, messages: Vec<Message>, dropped: &mut Dropped) {
        self.close_idle_routes_back();
        for msg in messages {
            let to = msg.to;
            let snapshot = msg.get_msg_type() == MessageType::MsgSnapshot;
            if !self.peers.contains_key(&to)
                && let Some(url) = self.filter.route_back(to)
            {
                tracing::debug!(peer = to, url, "answering a sender outside the membership");
                self.open_route(to, &url);
                self.routes_back.insert(to);
            }
            let queued = match self.peers.get(&to) {
                Some(peer) => peer.tx.try_send(msg).is_ok(),
                None => false,
            };
            if !queued {
                // A relayed read request is answered to the id it names, which a peer may
                // make up: one series per made-up id would grow without bound (found by a
                // review).
                let label = if self.peers.contains_key(&to) || self.filter.is_member(to) {
                    to.to_string()
                } else {
                    "other".to_string()
                };
                self.metrics
                    .peer_messages_dropped
                    .with_label_values(&[&label])
                    .inc();
                dropped.add(to, snapshot);
            }
        }
    }

    /// Ends the routes back to senders outside the membership that fell silent (or were
    /// pushed out by others): without that, a task would go on reconnecting to a node that is
    /// gone, for ever.
    fn close_idle_routes_back(&mut self) {
        if self.routes_back.is_empty() {
            return;
        }
        let idle: Vec<u64> = self
            .routes_back
            .iter()
            .copied()
            .filter(|id| self.filter.route_back(*id).is_none())
            .collect();
        for id in idle {
            self.routes_back.remove(&id);
            if let Some(handle) = self.peers.remove(&id) {
                tracing::debug!(
                    peer = id,
                    "no longer answering a sender outside the membership"
                );
                self.retire(handle);
            }
        }
    }

    /// The shared filter (cluster identity, removed ids).
    pub fn filter(&self) -> &Arc<PeerFilter> {
        &self.filter
    }

    /// On a node that does not know its cluster's identity yet (started with `--join` on an
    /// empty data dir): asks the members in `cluster` until one says this node was added, and
    /// adopts the identity it names. See [`join`].
    pub fn learn_cluster_id(&self, own_url: &str, cluster: &[String]) {
        if self.filter.cluster_id() != 0 {
            return;
        }
        let asks = join::Lookup::new(
            self.snapshot_client.clone(),
            self.filter.clone(),
            own_url,
            cluster,
        );
        let shutdown = self.shutdown.child_token();
        let inbox = self.inbox.clone();
        self.runtime.spawn(async move {
            tokio::select! {
                _ = shutdown.cancelled() => {}
                refused = asks.run() => {
                    if let Err(reason) = refused {
                        // The node stops on it; a closed inbox means it already has.
                        let _ = inbox.send(PeerEvent::JoinRefused(reason)).await;
                    }
                }
            }
        });
    }
}

/// How long bytes sent on a message stream may go unacknowledged by the peer's TCP before the
/// connection is dropped (longer than the silence check's limit, which covers the usual cases
/// first).
const UNACKNOWLEDGED_LIMIT: Duration = Duration::from_secs(5);

/// The peers' HTTP client; `tls` enables `https://` URLs. For snapshots, joins and the live
/// page; the message streams use `stream_client`.
pub fn http_client(tls: Option<rustls::ClientConfig>) -> HttpClient {
    build_client(tls, None, 4)
}

/// A client that keeps no connection once answered: for the strict reconfiguration check's
/// probes, rare and brief. An idle connection held on would keep its port from a node
/// started meanwhile with that port in its flags (the README's ports are in the kernel's
/// ephemeral range); a closed one leaves only a TIME_WAIT, which does not.
pub fn probe_client(tls: Option<rustls::ClientConfig>) -> HttpClient {
    build_client(tls, None, 0)
}

/// The client of the message streams: as [`http_client`], and a connection whose bytes the
/// peer has not acknowledged for [`UNACKNOWLEDGED_LIMIT`] is dead: it is closed and the stream
/// connects again. The silence check in `peer` cannot see this when the peer's own connection
/// to us still works (a firewall that drops only our direction), as we go on hearing it; TCP
/// alone would retransmit with a backoff that grows past ten seconds, so that even once the
/// path was back the peer would wait that long for our messages. Not for snapshots: a
/// receiver busy writing one may leave its window shut for longer (Linux counts that too),
/// and their transfers have a stall check of their own.
pub(crate) fn stream_client(tls: Option<rustls::ClientConfig>) -> HttpClient {
    build_client(tls, Some(UNACKNOWLEDGED_LIMIT), 4)
}

/// How long an idle connection to a peer is kept for reuse.
const POOL_IDLE: Duration = Duration::from_secs(10);

fn build_client(
    tls: Option<rustls::ClientConfig>,
    unacknowledged: Option<Duration>,
    idle_per_peer: usize,
) -> HttpClient {
    let mut connector = HttpConnector::new();
    // Raft messages are small and latency-bound: never wait for Nagle.
    connector.set_nodelay(true);
    // A partitioned peer drops our SYNs; without a bound, connecting would retry for
    // minutes and the stream would come back long after the network did.
    connector.set_connect_timeout(Some(Duration::from_secs(1)));
    #[cfg(target_os = "linux")]
    connector.set_tcp_user_timeout(unacknowledged);
    #[cfg(not(target_os = "linux"))]
    let _ = unacknowledged;
    // https:// URLs need hyper-rustls to hand the connection over unwrapped (enforce_http
    // is for plain connectors only).
    connector.enforce_http(false);
    // Without peer TLS, a config that trusts no one: an https:// peer fails its handshake
    // (the flags check keeps one from being configured in the first place).
    let tls = tls.unwrap_or_else(crate::tls::untrusting_client);
    let connector = hyper_rustls::HttpsConnectorBuilder::new()
        .with_tls_config(tls)
        .https_or_http()
        .enable_http1()
        .wrap_connector(connector);
    Client::builder(TokioExecutor::new())
        .pool_max_idle_per_host(idle_per_peer)
        // Well inside the peers' --client-timeout-ms (30 s by default), after which a peer
        // closes an idle connection: reusing one just as it closes fails a stream.
        .pool_idle_timeout(POOL_IDLE)
        .build(connector)
}

impl Drop for Transport {
    fn drop(&mut self) {
        for (_, peer) in self.peers.drain() {
            peer.cancel.cancel();
        }
    }
}

#[cfg(test)]
pub(crate) mod tests {
    use super::*;

    /// Serves `router` on a free loopback port, for as long as the test's runtime runs;
    /// returns its URL.
    pub(crate) async fn serve(router: axum::Router) -> String {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
            .await
            .expect("a free port on 127.0.0.1");
        let url = format!("http://{}", listener.local_addr().expect("bound"));
        tokio::spawn(async move {
            let _ = axum::serve(listener, router).await;
        });
        url
    }

    /// A message of `kind` from `from` to `to`, the rest default (for the transport's tests).
    pub(crate) fn message(kind: MessageType, from: u64, to: u64) -> Message {
        let mut m = Message {
            from,
            to,
            ..Default::default()
        };
        m.set_msg_type(kind);
        m
    }

    /// The header a snapshot's sender adds names the message's term and the snapshot's
    /// index, and reads back as that; anything else names no snapshot (the refusal then
    /// keeps its reason unnamed, as from a sender of an older build).
    #[test]
    fn a_snapshot_header_reads_back_and_nothing_else_names_a_snapshot() {
        let mut m = message(MessageType::MsgSnapshot, 1, 2);
        m.term = 3;
        let meta = m.mut_snapshot().mut_metadata();
        (meta.term, meta.index) = (2, 9);
        assert_eq!(snapshot_header(&m), "3/9");
        assert_eq!(
            snapshot_named(&snapshot_header(&m)),
            Some(SentSnapshot { term: 3, index: 9 })
        );
        for bad in [
            "",
            "3",
            "3/",
            "/9",
            "x/9",
            "3/9/1",
            "3 / 9",
            "-1/9",
            "18446744073709551616/9",
        ] {
            assert_eq!(snapshot_named(bad), None, "{bad:?}");
        }
    }

    #[test]
    fn a_410_names_the_index_of_the_removal() {
        let text = super::gone_text(3, 42);
        assert_eq!(super::removed_as_of_index(&text), Some(42));
        assert_eq!(
            super::removed_as_of_index("node 3 was removed from the cluster"),
            None
        );
    }

    /// A node that applied up to index 40 of term 3 and counts node 2 as removed answers its
    /// vote requests 410 Gone while its log is no further, but not once it goes further (node
    /// 2 was added back in entries this node has not applied), never its other messages, and
    /// nothing while it knows no leader.
    #[test]
    fn a_410_goes_only_to_candidates_whose_log_is_no_further() {
        let message = |kind: MessageType, log_term: u64, index: u64| {
            let mut m = Message {
                from: 2,
                to: 1,
                log_term,
                index,
                ..Default::default()
            };
            m.set_msg_type(kind);
            m
        };
        let vote = |term, index| message(MessageType::MsgRequestVote, term, index);
        let pre_vote = |term, index| message(MessageType::MsgRequestPreVote, term, index);
        let applied = Some(AppliedAt { index: 40, term: 3 });
        let gone = |messages: &[Message]| gone_as_of(applied, true, messages);
        assert_eq!(gone(&[vote(2, 12)]), Some(40));
        assert_eq!(gone(&[pre_vote(3, 40)]), Some(40));
        assert_eq!(gone(&[vote(3, 41)]), None);
        assert_eq!(gone(&[pre_vote(4, 38)]), None);
        // A deposed leader's tail, never committed: further, but of an older term.
        assert_eq!(gone(&[vote(2, 90)]), Some(40));
        assert_eq!(gone_as_of(None, true, &[vote(2, 12)]), None, "not removed");
        let append = message(MessageType::MsgAppendResponse, 2, 12);
        assert_eq!(gone(&[append]), None, "not a vote request");
        assert_eq!(
            gone_as_of(applied, false, &[vote(2, 12)]),
            None,
            "this node does not know its members to be the latest: it may hold the sender's \
             re-addition unapplied, or not yet"
        );
    }

    /// Routes back are answered only while their sender keeps sending, and a full table makes
    /// room by pushing out the sender heard from longest ago (here one never heard at all).
    #[test]
    fn routes_back_last_while_their_sender_speaks_and_the_oldest_makes_room() {
        let filter = PeerFilter::new(1, 0xabc);
        let url = |id: u64| format!("http://127.0.0.1:{}", 20000 + id);
        filter.note_route_back(2, &url(2));
        assert_eq!(filter.route_back(2), None, "never heard from");
        filter.heard_from(2, &[]);
        assert_eq!(filter.route_back(2), Some(url(2)));
        for id in 3..(2 + MAX_ROUTES_BACK as u64) {
            filter.heard_from(id, &[]);
            filter.note_route_back(id, &url(id));
        }
        filter.note_route_back(100, &url(100));
        filter.heard_from(100, &[]);
        assert_eq!(filter.route_back(100), Some(url(100)));
        assert_eq!(filter.route_back(2), None, "the oldest was pushed out");
        assert_eq!(filter.route_back(3), Some(url(3)));
        // Once a member, a sender is reached at its URL in the membership.
        filter.set_member(3, Some(&url(3)));
        assert_eq!(filter.route_back(3), None);
    }

    /// Made-up sender ids do not grow the table of when each sender was last heard: past
    /// its size, the one heard from longest ago makes room, never one that keeps speaking
    /// nor a member.
    #[test]
    fn made_up_senders_do_not_grow_what_is_remembered_of_them() {
        let filter = PeerFilter::new(1, 0xabc);
        // Node 3, a member, spoke once, before them all.
        filter.set_member(3, Some("http://127.0.0.1:3"));
        filter.heard_from(3, &[]);
        let batch = MAX_HEARD as u64 / 4;
        let mut stranger = 1_000_000;
        for _ in 0..12 {
            // Node 2 speaks between batches of strangers (the pauses keep the times apart
            // on a coarse clock).
            std::thread::sleep(Duration::from_millis(2));
            filter.heard_from(2, &[]);
            std::thread::sleep(Duration::from_millis(2));
            for _ in 0..batch {
                stranger += 1;
                filter.heard_from(stranger, &[]);
            }
        }
        let kept = filter.last_heard.lock().expect("not poisoned").len();
        assert_eq!(kept, MAX_HEARD);
        assert!(
            filter.last_heard(2).is_some(),
            "a sender that keeps speaking stays"
        );
        assert!(filter.last_heard(stranger).is_some(), "the newest is kept");
        assert!(filter.last_heard(3).is_some(), "a member stays");
    }

    /// Messages for ids that are neither peers nor members (answers to relayed read requests
    /// name whatever id the request did) are counted under one label, not one each.
    #[tokio::test]
    async fn drops_to_unknown_ids_share_one_metric_series() {
        use prometheus::core::Collector;
        let dir = tempfile::TempDir::new().expect("temp dir");
        let (events, _rx) = tokio::sync::mpsc::channel(8);
        let metrics = Arc::new(Metrics::new(1));
        let mut transport = Transport::new(
            Arc::new(PeerFilter::new(1, 0xabc)),
            events,
            tokio::runtime::Handle::current(),
            tokio_util::sync::CancellationToken::new(),
            metrics.clone(),
            None,
            Snapshotter::new(dir.path(), 2).expect("snapshotter"),
        );
        let answers: Vec<Message> = (1_000..2_000)
            .map(|to| message(MessageType::MsgReadIndexResp, 1, to))
            .collect();
        let mut dropped = Dropped::default();
        transport.send(answers, &mut dropped);
        let series: usize = metrics
            .peer_messages_dropped
            .collect()
            .iter()
            .map(|family| family.get_metric().len())
            .sum();
        assert_eq!(series, 1, "one series for every id outside the cluster");
    }

    /// A follower forwards proposals up to raft's message size, and always at least one.
    #[test]
    fn forwarded_proposals_fit_one_message() {
        let mib = MAX_SIZE_PER_MSG as usize;
        assert_eq!(proposals_per_message([].into_iter()), 0);
        assert_eq!(proposals_per_message([3 * mib].into_iter()), 1);
        assert_eq!(proposals_per_message([mib / 2, mib / 2, 1].into_iter()), 2);
        assert_eq!(
            proposals_per_message(std::iter::repeat_n(100, 50_000)),
            mib / 100
        );
    }
}
