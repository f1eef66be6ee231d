//! Live events of the raft node, for the page at `/-/ui`: what each `Ready` and `LightReady`
//! carried (hard state, soft state, new and committed entries, messages by kind), published
//! on a bounded broadcast channel that each open page's event stream subscribes to.
//!
//! Nobody watching costs one atomic load per `Ready`: [`Events::ready`] and
//! [`Events::light_ready`] build nothing unless a [`Subscription`] is alive. A page that reads
//! too slowly does not hold the node back either: the channel keeps the newest
//! [`CAPACITY`] events, and a subscriber that fell further behind is told how many it missed
//! ([`Received::Lagged`]).
//!
//! The raft node calls this from its Ready trace (`raft_node/trace.rs`); the event stream
//! itself (`GET /-/events`, server-sent events) is in [`crate::ui`]. This module sits below
//! the raft node and the state machine: how an entry is described in one line
//! ([`crate::describe::entry_text`], which decodes commands) is handed to it by whoever builds
//! the node ([`Events::new`]).

use std::collections::BTreeMap;
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::{SystemTime, UNIX_EPOCH};

use raft::eraftpb::{Entry, Message, MessageType};
use raft::{LightReady, Ready};
use serde::Serialize;
use tokio::sync::broadcast;

/// Events a subscriber may fall behind by before it misses the oldest ones. Small: a page
/// shows the last few hundred, and a slow page must not make the node hold on to more.
pub const CAPACITY: usize = 256;
/// Entries listed in one event; the rest are only counted (a batch under load has hundreds).
const ENTRIES_LISTED: usize = 8;
/// Messages listed in one event; all are counted by kind.
const MESSAGES_LISTED: usize = 8;
/// Entries at the end of the log that `/-/status` describes, for the page's log strips.
pub const LOG_TAIL: usize = 24;

/// Describes an entry in one line.
pub type Describe = fn(&Entry) -> String;

/// The publishing end, shared by the raft node and the event streams (cheap to clone).
#[derive(Clone)]
pub struct Events {
    inner: Arc<Inner>,
}

struct Inner {
    /// Live [`Subscription`]s: the one thing the raft node looks at when nobody watches.
    watchers: AtomicUsize,
    tx: broadcast::Sender<Arc<Event>>,
    describe: Describe,
}

impl Default for Events {
    /// Events that describe an entry by its type and size only.
    fn default() -> Self {
        Events::new(|e| format!("{:?}, {} bytes", e.get_entry_type(), e.data.len()))
    }
}

impl std::fmt::Debug for Events {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Events")
            .field("watchers", &self.watchers())
            .finish()
    }
}

impl Events {
    /// Events that describe entries with `describe`.
    pub fn new(describe: Describe) -> Events {
        let (tx, _) = broadcast::channel(CAPACITY);
        Events {
            inner: Arc::new(Inner {
                watchers: AtomicUsize::new(0),
                tx,
                describe,
            }),
        }
    }

    /// Whether anyone is subscribed. Relaxed is enough: an event published just before a
    /// page subscribes, or built just after the last one left, is harmless either way.
    #[inline]
    pub fn watched(&self) -> bool {
        self.inner.watchers.load(Ordering::Relaxed) > 0
    }

    /// Number of live subscriptions.
    pub fn watchers(&self) -> usize {
        self.inner.watchers.load(Ordering::Relaxed)
    }

    /// Starts receiving events (those published from now on).
    pub fn subscribe(&self) -> Subscription {
        let rx = self.inner.tx.subscribe();
        self.inner.watchers.fetch_add(1, Ordering::Relaxed);
        Subscription {
            rx,
            inner: self.inner.clone(),
        }
    }

    /// Publishes what a `Ready` of node `node` carries. Returns whether an event was built
    /// (false when nobody watches).
    #[inline]
    pub fn ready(&self, node: u64, rd: &Ready) -> bool {
        if !self.watched() {
            return false;
        }
        self.publish(Event::Ready(Box::new(ReadyEvent::new(
            node,
            rd,
            self.inner.describe,
        ))));
        true
    }

    /// Publishes what `advance` released. Returns whether an event was built.
    #[inline]
    pub fn light_ready(&self, node: u64, light: &LightReady) -> bool {
        if !self.watched()
            || (light.commit_index().is_none()
                && light.committed_entries().is_empty()
                && light.messages().is_empty())
        {
            return false;
        }
        let event = LightReadyEvent {
            node,
            at_ms: now_ms(),
            commit: light.commit_index(),
            committed: EntryList::new(light.committed_entries(), self.inner.describe),
            messages: MessageSummary::new(light.messages()),
        };
        self.publish(Event::LightReady(event));
        true
    }

    /// The last [`LOG_TAIL`] entries of a raft log, described, for `/-/status` (an empty
    /// list if the log holds none, say right after a snapshot).
    pub fn log_tail<S: raft::Storage>(&self, log: &raft::RaftLog<S>) -> Vec<EntryView> {
        let last = log.last_index();
        let from = log
            .first_index()
            .max((last + 1).saturating_sub(LOG_TAIL as u64));
        if from > last {
            return Vec::new();
        }
        log.entries(from, raft::NO_LIMIT, raft::GetEntriesContext::empty(false))
            .map(|entries| {
                entries
                    .iter()
                    .map(|e| EntryView::new(e, self.inner.describe))
                    .collect()
            })
            .unwrap_or_default()
    }

    fn publish(&self, event: Event) {
        // An error only means the last subscriber left meanwhile.
        let _ = self.inner.tx.send(Arc::new(event));
    }
}

/// One page's view of the events; dropping it tells the node one fewer is watching.
pub struct Subscription {
    rx: broadcast::Receiver<Arc<Event>>,
    inner: Arc<Inner>,
}

/// What [`Subscription::recv`] got.
#[derive(Debug)]
pub enum Received {
    /// The next event.
    Event(Arc<Event>),
    /// The subscriber fell more than [`CAPACITY`] events behind: this many were dropped,
    /// the oldest first, and the next one received is the oldest still kept.
    Lagged(u64),
    /// The node is gone.
    Closed,
}

impl Subscription {
    /// Waits for the next event.
    pub async fn recv(&mut self) -> Received {
        match self.rx.recv().await {
            Ok(event) => Received::Event(event),
            Err(broadcast::error::RecvError::Lagged(missed)) => Received::Lagged(missed),
            Err(broadcast::error::RecvError::Closed) => Received::Closed,
        }
    }
}

impl Drop for Subscription {
    fn drop(&mut self) {
        self.inner.watchers.fetch_sub(1, Ordering::Relaxed);
    }
}

/// An event of the stream; [`Event::name`] is its server-sent-event name, its data the JSON
/// of the inner struct.
#[derive(Debug, Clone, Serialize)]
#[serde(untagged)]
pub enum Event {
    /// A `Ready`, before it is handled (boxed: it is three times the size of the other).
    Ready(Box<ReadyEvent>),
    /// What `advance` released after the `Ready`.
    LightReady(LightReadyEvent),
}

impl Event {
    /// The event's name in the stream.
    pub fn name(&self) -> &'static str {
        match self {
            Event::Ready(_) => "ready",
            Event::LightReady(_) => "light_ready",
        }
    }
}

/// Everything a `Ready` asked the node to do.
#[derive(Debug, Clone, Serialize)]
pub struct ReadyEvent {
    /// The node that handled it.
    pub node: u64,
    /// raft-rs's number of this `Ready` (counts up on each node).
    pub number: u64,
    /// Wall-clock time, milliseconds since the Unix epoch.
    pub at_ms: u64,
    /// Whether the WAL write of this `Ready` is synced.
    pub must_sync: bool,
    /// A new role or leader.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub soft_state: Option<SoftStateView>,
    /// A new term, vote or commit index.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub hard_state: Option<HardStateView>,
    /// A snapshot from the leader to install.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub snapshot: Option<SnapshotView>,
    /// Entries to append to the log.
    pub entries: EntryList,
    /// Entries to apply.
    pub committed: EntryList,
    /// Messages sent before the WAL write (a leader's).
    pub messages: MessageSummary,
    /// Messages sent after the WAL write (a follower's or candidate's: they promise that
    /// what they acknowledge is on disk).
    pub persisted_messages: MessageSummary,
    /// ReadIndex answers.
    pub read_states: usize,
    /// Of them, answers to the ready probe (background traffic).
    pub probe_read_states: usize,
}

impl ReadyEvent {
    fn new(node: u64, rd: &Ready, describe: Describe) -> ReadyEvent {
        let snapshot = (!rd.snapshot().is_empty()).then(|| {
            let meta = rd.snapshot().get_metadata();
            SnapshotView {
                index: meta.index,
                term: meta.term,
                voters: meta.get_conf_state().voters.clone(),
            }
        });
        ReadyEvent {
            node,
            number: rd.number(),
            at_ms: now_ms(),
            must_sync: rd.must_sync(),
            soft_state: rd.ss().map(|ss| SoftStateView {
                leader: ss.leader_id,
                role: format!("{:?}", ss.raft_state),
            }),
            hard_state: rd.hs().map(|hs| HardStateView {
                term: hs.term,
                vote: hs.vote,
                commit: hs.commit,
            }),
            snapshot,
            entries: EntryList::new(rd.entries(), describe),
            committed: EntryList::new(rd.committed_entries(), describe),
            messages: MessageSummary::new(rd.messages()),
            persisted_messages: MessageSummary::new(rd.persisted_messages()),
            read_states: rd.read_states().len(),
            probe_read_states: rd
                .read_states()
                .iter()
                .filter(|rs| rs.request_ctx.len() == PROBE_CONTEXT_LEN)
                .count(),
        }
    }
}

/// What `advance` released.
#[derive(Debug, Clone, Serialize)]
pub struct LightReadyEvent {
    /// The node.
    pub node: u64,
    /// Wall-clock time, milliseconds since the Unix epoch.
    pub at_ms: u64,
    /// A new commit index.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub commit: Option<u64>,
    /// Entries to apply.
    pub committed: EntryList,
    /// Messages to send (a leader's).
    pub messages: MessageSummary,
}

/// A role or leader change.
#[derive(Debug, Clone, Serialize)]
pub struct SoftStateView {
    /// The leader this node knows, 0 for none.
    pub leader: u64,
    /// Follower, PreCandidate, Candidate or Leader.
    pub role: String,
}

/// The durable part of raft's state.
#[derive(Debug, Clone, Serialize)]
pub struct HardStateView {
    /// Current term.
    pub term: u64,
    /// Whom this node voted for in that term (0: nobody).
    pub vote: u64,
    /// Highest index known committed.
    pub commit: u64,
}

/// A snapshot's place in the log.
#[derive(Debug, Clone, Serialize)]
pub struct SnapshotView {
    /// Last index it covers.
    pub index: u64,
    /// Term of that index.
    pub term: u64,
    /// Voters as of that index.
    pub voters: Vec<u64>,
}

/// Some entries: how many, and the first few.
#[derive(Debug, Clone, Serialize)]
pub struct EntryList {
    /// How many entries there are.
    pub count: usize,
    /// The first few of them (eight).
    pub first: Vec<EntryView>,
}

impl EntryList {
    fn new(entries: &[Entry], describe: Describe) -> EntryList {
        EntryList {
            count: entries.len(),
            first: entries
                .iter()
                .take(ENTRIES_LISTED)
                .map(|e| EntryView::new(e, describe))
                .collect(),
        }
    }
}

/// One log entry, described in one line.
#[derive(Debug, Clone, Serialize, PartialEq, Eq)]
pub struct EntryView {
    /// Its index.
    pub index: u64,
    /// The term in which a leader created it.
    pub term: u64,
    /// What it does, as `raftexample dump` prints it.
    pub text: String,
}

impl EntryView {
    fn new(e: &Entry, describe: Describe) -> EntryView {
        EntryView {
            index: e.index,
            term: e.term,
            text: describe(e),
        }
    }
}

/// Length of the context of a node's ready probe (`raft_node::reads::ReadyProbe`), which a
/// client read's (24 bytes) never has: what tells the probe's rounds, background traffic
/// every two ticks, from the reads people send.
pub const PROBE_CONTEXT_LEN: usize = 16;

/// Whether `m` is background traffic, as the live page counts it: a heartbeat or its answer,
/// or a round of a ready probe (a ReadIndex request or answer with a probe's context).
fn is_background(m: &Message) -> bool {
    match m.get_msg_type() {
        MessageType::MsgHeartbeat | MessageType::MsgHeartbeatResponse => true,
        MessageType::MsgReadIndex | MessageType::MsgReadIndexResp => {
            m.entries.len() == 1 && m.entries[0].data.len() == PROBE_CONTEXT_LEN
        }
        _ => false,
    }
}

/// Messages: how many of each kind, and the first few in full.
#[derive(Debug, Clone, Serialize, Default)]
pub struct MessageSummary {
    /// How many messages there are.
    pub count: usize,
    /// Whether every one is background traffic (heartbeats and the ready probe's rounds),
    /// which the live page hides unless asked.
    pub background: bool,
    /// How many of each kind (`MsgAppend`, `MsgHeartbeat`, ...).
    pub by_kind: BTreeMap<String, usize>,
    /// The first few of them (eight).
    pub first: Vec<MessageView>,
}

impl MessageSummary {
    fn new(messages: &[Message]) -> MessageSummary {
        let mut summary = MessageSummary {
            count: messages.len(),
            background: messages.iter().all(is_background),
            ..Default::default()
        };
        for (i, m) in messages.iter().enumerate() {
            let kind = format!("{:?}", m.get_msg_type());
            if i < MESSAGES_LISTED {
                summary.first.push(MessageView {
                    kind: kind.clone(),
                    from: m.from,
                    to: m.to,
                    term: m.term,
                    index: m.index,
                    log_term: m.log_term,
                    entries: m.entries.len(),
                    commit: m.commit,
                    reject: m.reject,
                });
            }
            *summary.by_kind.entry(kind).or_default() += 1;
        }
        summary
    }
}

/// One raft message, its header fields.
#[derive(Debug, Clone, Serialize)]
pub struct MessageView {
    /// `MsgAppend`, `MsgHeartbeat`, `MsgRequestVote`, ...
    pub kind: String,
    /// Sender.
    pub from: u64,
    /// Recipient.
    pub to: u64,
    /// Sender's term.
    pub term: u64,
    /// For an append, the index just before its entries; for a response, how far it got.
    pub index: u64,
    /// Term of `index`.
    pub log_term: u64,
    /// Entries carried.
    pub entries: usize,
    /// Sender's commit index.
    pub commit: u64,
    /// A refused append or vote.
    pub reject: bool,
}

fn now_ms() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_millis() as u64)
}

#[cfg(test)]
mod tests {
    use super::*;
    use raft::eraftpb::MessageType;
    use raft::storage::MemStorage;
    use raft::{Config, RawNode};

    fn logger() -> slog::Logger {
        slog::Logger::root(slog::Discard, slog::o!())
    }

    /// A single-node raft campaigning to lead itself.
    fn single_node() -> RawNode<MemStorage> {
        let storage = MemStorage::new_with_conf_state((vec![1], vec![]));
        let config = Config {
            id: 1,
            ..Default::default()
        };
        let mut rn = RawNode::new(&config, storage, &logger()).expect("a valid config");
        rn.campaign().expect("a single voter can campaign");
        rn
    }

    /// Handles every Ready of `rn` (persisting to its MemStorage), publishing each to
    /// `events`; returns how many events were built.
    fn drain(rn: &mut RawNode<MemStorage>, events: &Events) -> usize {
        let mut built = 0;
        while rn.has_ready() {
            let mut rd = rn.ready();
            built += events.ready(1, &rd) as usize;
            let store = rn.store().clone();
            store.wl().append(rd.entries()).expect("append");
            if let Some(hs) = rd.hs() {
                store.wl().set_hardstate(hs.clone());
            }
            let _ = rd.take_messages();
            let mut light = rn.advance(rd);
            built += events.light_ready(1, &light) as usize;
            let _ = light.take_committed_entries();
            rn.advance_apply();
        }
        built
    }

    /// With nobody subscribed, handling Readys builds no event at all; with a subscriber,
    /// every Ready becomes one, carrying its hard state, soft state and entries.
    #[tokio::test]
    async fn events_are_built_only_while_someone_watches() {
        let events = Events::default();
        let mut rn = single_node();
        assert_eq!(
            drain(&mut rn, &events),
            0,
            "nobody watches: nothing is built"
        );

        let mut sub = events.subscribe();
        assert!(events.watched());
        rn.propose(vec![], b"hello".to_vec())
            .expect("a leader takes proposals");
        let built = drain(&mut rn, &events);
        assert!(built >= 1, "a watched Ready becomes an event");
        let Received::Event(event) = sub.recv().await else {
            panic!("an event was published");
        };
        let Event::Ready(ready) = &*event else {
            panic!("the first event is the Ready: {event:?}");
        };
        assert_eq!(ready.node, 1);
        assert_eq!(ready.entries.count, 1);
        assert_eq!(ready.entries.first[0].term, rn.raft.term);
        assert!(ready.must_sync, "new entries must be synced");
        let json = serde_json::to_value(&*event).expect("events are JSON");
        assert_eq!(
            json["entries"]["first"][0]["index"],
            ready.entries.first[0].index
        );

        drop(sub);
        assert!(!events.watched(), "the last subscriber left");
        rn.propose(vec![], b"again".to_vec())
            .expect("a leader takes proposals");
        assert_eq!(drain(&mut rn, &events), 0);
    }

    /// A subscriber that falls more than CAPACITY events behind is told how many it missed,
    /// then gets the newest ones; the publisher never waits for it.
    #[tokio::test]
    async fn a_slow_subscriber_is_told_what_it_missed() {
        let events = Events::default();
        let mut sub = events.subscribe();
        let mut rn = single_node();
        let mut published = drain(&mut rn, &events);
        while published < CAPACITY + 10 {
            rn.propose(vec![], b"x".to_vec())
                .expect("a leader takes proposals");
            published += drain(&mut rn, &events);
        }
        let mut missed = 0;
        let mut received = 0;
        loop {
            tokio::select! {
                got = sub.recv() => match got {
                    Received::Lagged(n) => missed += n,
                    Received::Event(_) => received += 1,
                    Received::Closed => break,
                },
                _ = tokio::time::sleep(std::time::Duration::from_millis(50)) => break,
            }
        }
        assert!(missed > 0, "the subscriber was told it lagged");
        assert_eq!(received, CAPACITY, "the newest CAPACITY events are kept");
        assert_eq!(missed as usize + received, published);
    }

    /// Messages are counted by kind; the first few are listed with their header fields.
    #[test]
    fn messages_are_counted_by_kind() {
        let mut msgs = Vec::new();
        for to in 2..=12 {
            let mut m = Message::default();
            m.set_msg_type(MessageType::MsgHeartbeat);
            m.from = 1;
            m.to = to;
            msgs.push(m);
        }
        let mut append = Message::default();
        append.set_msg_type(MessageType::MsgAppend);
        append.set_entries(vec![Entry::default(), Entry::default()].into());
        msgs.push(append);
        let summary = MessageSummary::new(&msgs);
        assert!(!summary.background, "an append is not background");
        assert!(
            MessageSummary::new(&msgs[..11]).background,
            "heartbeats are"
        );
        // A ready probe's round is background; a client read's is not.
        let read_index = |ctx_len: usize| {
            let mut m = Message::default();
            m.set_msg_type(MessageType::MsgReadIndex);
            let e = Entry {
                data: vec![7; ctx_len].into(),
                ..Default::default()
            };
            m.set_entries(vec![e].into());
            m
        };
        assert!(MessageSummary::new(&[read_index(PROBE_CONTEXT_LEN)]).background);
        assert!(!MessageSummary::new(&[read_index(24)]).background);
        assert_eq!(summary.count, 12);
        assert_eq!(summary.by_kind["MsgHeartbeat"], 11);
        assert_eq!(summary.by_kind["MsgAppend"], 1);
        assert_eq!(summary.first.len(), MESSAGES_LISTED);
        assert_eq!(summary.first[0].to, 2);
    }

    /// The log tail is the last LOG_TAIL entries, each with its index, term and description.
    #[test]
    fn the_log_tail_is_the_last_entries() {
        let mut rn = single_node();
        drain(&mut rn, &Events::default());
        for i in 0..30 {
            rn.propose(vec![], format!("v{i}").into_bytes())
                .expect("a leader takes proposals");
            drain(&mut rn, &Events::default());
        }
        let tail = Events::default().log_tail(&rn.raft.raft_log);
        let last = rn.raft.raft_log.last_index();
        assert_eq!(tail.len(), LOG_TAIL);
        assert_eq!(tail.last().map(|e| e.index), Some(last));
        assert_eq!(tail[0].index, last + 1 - LOG_TAIL as u64);
        assert!(tail.iter().all(|e| e.term == rn.raft.term));
    }
}
