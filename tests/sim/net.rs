//! The simulated network: each node's [`SimNet`] (the node's `Network`), which only buffers
//! what raft sends, and the [`Links`] between nodes, which decide when (and whether) each
//! message arrives: latency, extra delay, jitter that reorders, duplication, loss, cuts in
//! one direction or both, and mutes (raft's messages lost, a joining node's questions carried).
//!
//! A node's messages come out of its round through [`SimNet::send`]; the world drains them
//! after the round ([`NetHandle::take_outbox`]), puts each batch in a canonical order (raft-rs
//! builds one Ready's messages by iterating a `HashMap` of progress, whose order changes from
//! process to process), and schedules each message by simulated time. What the node's peer
//! server would refuse (a stranger while a leader is known, a removed node's vote request, any
//! message while the node has not learned its cluster's identity) is decided at delivery from
//! what the receiving node's own network was told ([`NetHandle`]); a sender of another
//! incarnation is a violation, as a world is one run (`World::refusal`); a sender it lets in from
//! outside the membership is answered, as the real transport answers it at the URL it names.

use std::collections::{BTreeMap, BTreeSet};
use std::sync::{Arc, Mutex, MutexGuard};

use raft::eraftpb::{Message, MessageType};
use raftexample::snapshotter::Snapshotter;
use raftexample::transport::{
    Admission, AppliedAt, Dropped, MAX_ROUTES_BACK, Network, inline_snapshot,
};
use rand::RngExt;
use rand::rngs::SmallRng;

/// Nanoseconds of simulated time.
pub type Nanos = u64;

/// One millisecond of simulated time.
pub const MS: Nanos = 1_000_000;

/// What a node's network knows: its peers, the removed ids, the cluster's identity, and the
/// messages sent and not yet handed to the links.
#[derive(Debug, Default)]
struct NetState {
    peers: BTreeMap<u64, String>,
    removed: BTreeSet<u64>,
    applied: AppliedAt,
    cluster_id: u64,
    /// The cluster's incarnation, once the node knows it (0 until then).
    incarnation: u64,
    /// What the members that admitted this joining node had seen.
    admission: Option<Admission>,
    /// Senders outside the membership its peer server let in, and their URLs (as
    /// `PeerFilter::note_route_back`): the node's answers to them are sent.
    routes_back: BTreeMap<u64, String>,
    outbox: Vec<Message>,
}

/// The node's side: the `Network` the raft node owns.
pub struct SimNet {
    id: u64,
    state: Arc<Mutex<NetState>>,
    /// The node's snapshots: raft names a snapshot by its file, and the receiver has a disk of
    /// its own, so the data is read into the message as it is sent (as the real transport
    /// streams the file when it sends it, and sets it aside if it is damaged).
    snapshots: Arc<Snapshotter>,
}

/// The world's side of the same network: what the node's peer server would know.
#[derive(Clone)]
pub struct NetHandle {
    state: Arc<Mutex<NetState>>,
}

/// A new node network that knows the cluster `cluster_id` (0 for a joining node that has not
/// learned it) and sends snapshots from `snapshots`, and the handle the world keeps on it.
pub fn node_network(id: u64, cluster_id: u64, snapshots: Arc<Snapshotter>) -> (SimNet, NetHandle) {
    let state = Arc::new(Mutex::new(NetState {
        cluster_id,
        ..Default::default()
    }));
    (
        SimNet {
            id,
            state: state.clone(),
            snapshots,
        },
        NetHandle { state },
    )
}

fn lock(state: &Mutex<NetState>) -> MutexGuard<'_, NetState> {
    // One thread drives the whole simulation; a poisoned lock means a panic that is being
    // reported already.
    state.lock().unwrap_or_else(|p| p.into_inner())
}

impl Network for SimNet {
    fn add_peer(&mut self, id: u64, url: &str) {
        if id != self.id {
            let mut state = lock(&self.state);
            state.peers.insert(id, url.to_string());
            state.routes_back.remove(&id);
        }
    }

    fn remove_peer(&mut self, id: u64) {
        let mut state = lock(&self.state);
        state.peers.remove(&id);
        state.routes_back.remove(&id);
    }

    fn send(&mut self, messages: Vec<Message>, dropped: &mut Dropped) {
        let mut state = lock(&self.state);
        for mut m in messages {
            if !state.peers.contains_key(&m.to) && !state.routes_back.contains_key(&m.to) {
                // As the real transport: no peer task, nothing sent, raft is told.
                dropped.add(m.to, m.get_msg_type() == MessageType::MsgSnapshot);
                continue;
            }
            if inline_snapshot(&self.snapshots, &mut m).is_ok() {
                state.outbox.push(m);
            } else {
                // The file is gone or damaged: as the real transport, which fails to send it.
                dropped.add(m.to, m.get_msg_type() == MessageType::MsgSnapshot);
            }
        }
    }

    fn set_removed(&self, removed: &BTreeSet<u64>) {
        lock(&self.state).removed.clone_from(removed);
    }

    fn set_applied(&self, applied: AppliedAt) {
        lock(&self.state).applied = applied;
    }

    fn cluster_id(&self) -> u64 {
        lock(&self.state).cluster_id
    }

    fn admission(&self) -> Option<Admission> {
        lock(&self.state).admission
    }

    fn set_incarnation(&self, incarnation: u64) -> u64 {
        std::mem::replace(&mut lock(&self.state).incarnation, incarnation)
    }
}

impl NetHandle {
    /// What the node sent since the last call, in a canonical order: stable-sorted by
    /// destination, so that raft-rs's hash-map order never reaches the schedule.
    pub fn take_outbox(&self) -> Vec<Message> {
        let mut out = std::mem::take(&mut lock(&self.state).outbox);
        out.sort_by_key(|m| m.to);
        out
    }

    /// The peer URL this node sends to for `id`, if it counts `id` as a member.
    pub fn member_url(&self, id: u64) -> Option<String> {
        lock(&self.state).peers.get(&id).cloned()
    }

    /// Whether this node counts `id` as a member (or is `id`).
    pub fn is_member(&self, id: u64) -> bool {
        lock(&self.state).peers.contains_key(&id)
    }

    /// The peer server let in `id` from outside the membership, at `url`.
    pub fn note_route_back(&self, id: u64, url: &str) {
        let mut state = lock(&self.state);
        if state.routes_back.len() < MAX_ROUTES_BACK || state.routes_back.contains_key(&id) {
            state.routes_back.insert(id, url.to_string());
        }
    }

    /// If `id` was removed: the last entry this node has applied, as of which it knows it.
    pub fn removed_as_of(&self, id: u64) -> Option<AppliedAt> {
        let state = lock(&self.state);
        state.removed.contains(&id).then_some(state.applied)
    }

    /// The cluster's identity as this node knows it (0: not yet).
    pub fn cluster_id(&self) -> u64 {
        lock(&self.state).cluster_id
    }

    /// The cluster's incarnation as this node knows it (0: not yet).
    pub fn incarnation(&self) -> u64 {
        lock(&self.state).incarnation
    }

    /// The members admitted this joining node into cluster `id`, having seen `admission`,
    /// naming `incarnation` (0: none agreed): it adopts them (as `PeerFilter::admitted`).
    pub fn admitted(&self, id: u64, admission: Admission, incarnation: u64) {
        let mut state = lock(&self.state);
        if state.cluster_id == 0 {
            state.admission = Some(admission);
            if state.incarnation == 0 {
                state.incarnation = incarnation;
            }
            state.cluster_id = id;
        }
    }
}

/// What the links do to one direction between two nodes, beyond the base latency.
#[derive(Clone, Debug, Default)]
pub struct LinkFault {
    /// Every message is dropped.
    pub cut: bool,
    /// Extra delay of every message.
    pub delay: Nanos,
    /// Up to this much more, drawn per message; messages then overtake each other.
    pub jitter: Nanos,
    /// Chance that a message is delivered twice.
    pub duplicate: f64,
    /// Chance that a message is lost.
    pub loss: f64,
    /// Every message is lost, silently (as `MemNet::mute`): the link carries raft's messages
    /// no more, while a joining node's questions still go through (the world asks them past
    /// it, `World::join_lookup`, as they go over HTTP of their own).
    pub mute: bool,
}

/// What happens to one message on its way.
#[derive(Debug, PartialEq, Eq)]
pub enum Fate {
    /// It arrives at these times (twice when duplicated).
    Arrives(Vec<Nanos>),
    /// The link is cut: the sender's peer task notices the failed stream.
    Cut,
    /// Lost on the way, silently.
    Lost,
}

/// The links between every pair of nodes.
#[derive(Debug)]
pub struct Links {
    /// Base one-way latency range of every link.
    base: (Nanos, Nanos),
    faults: BTreeMap<(u64, u64), LinkFault>,
    /// When the last message on each link arrives: without jitter a link is a stream, in order.
    last_arrival: BTreeMap<(u64, u64), Nanos>,
}

impl Links {
    /// Links whose one-way latency is drawn from `base` (inclusive range, nanoseconds).
    pub fn new(base: (Nanos, Nanos)) -> Links {
        Links {
            base,
            faults: BTreeMap::new(),
            last_arrival: BTreeMap::new(),
        }
    }

    /// The fault on `from → to`, to change it.
    pub fn fault_mut(&mut self, from: u64, to: u64) -> &mut LinkFault {
        self.faults.entry((from, to)).or_default()
    }

    /// Whether `from → to` is cut (a muted link is not: it carries a joining node's questions).
    pub fn is_cut(&self, from: u64, to: u64) -> bool {
        self.faults.get(&(from, to)).is_some_and(|f| f.cut)
    }

    /// Ends every link fault.
    pub fn heal(&mut self) {
        self.faults.clear();
    }

    /// The fate of a message sent now on `from → to`.
    pub fn fate(&mut self, from: u64, to: u64, now: Nanos, rng: &mut SmallRng) -> Fate {
        let fault = self.faults.get(&(from, to)).cloned().unwrap_or_default();
        if fault.cut {
            return Fate::Cut;
        }
        if fault.mute {
            return Fate::Lost;
        }
        if fault.loss > 0.0 && rng.random_bool(fault.loss) {
            return Fate::Lost;
        }
        let copies = if fault.duplicate > 0.0 && rng.random_bool(fault.duplicate) {
            2
        } else {
            1
        };
        let mut times = Vec::with_capacity(copies);
        for _ in 0..copies {
            let mut at = now + rng.random_range(self.base.0..=self.base.1) + fault.delay;
            if fault.jitter > 0 {
                at += rng.random_range(0..=fault.jitter);
            } else {
                // A stream: never before what was sent on it earlier.
                let last = self.last_arrival.entry((from, to)).or_default();
                at = at.max(*last);
                *last = at;
            }
            times.push(at);
        }
        Fate::Arrives(times)
    }
}

/// Whether raft sends `m` only as leader (its `from` then leads its term).
pub fn leader_only(m: &Message) -> bool {
    matches!(
        m.get_msg_type(),
        MessageType::MsgAppend
            | MessageType::MsgHeartbeat
            | MessageType::MsgSnapshot
            | MessageType::MsgTimeoutNow
    )
}

/// One line for the trace.
pub fn describe(m: &Message) -> String {
    let kind = format!("{:?}", m.get_msg_type());
    let kind = kind.strip_prefix("Msg").unwrap_or(&kind);
    let mut out = format!("{kind} {}->{} t{}", m.from, m.to, m.term);
    if m.index != 0 || m.log_term != 0 {
        out += &format!(" i{}/{}", m.index, m.log_term);
    }
    if !m.entries.is_empty() {
        out += &format!(" e{}", m.entries.len());
    }
    if m.commit != 0 {
        out += &format!(" c{}", m.commit);
    }
    if m.reject {
        out += " reject";
    }
    if m.get_msg_type() == MessageType::MsgSnapshot {
        out += &format!(" snap@{}", m.get_snapshot().get_metadata().index);
    }
    out
}
