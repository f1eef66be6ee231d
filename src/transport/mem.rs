//! A network in memory, for nodes that share a process: every node attaches to one [`MemNet`]
//! and gets an endpoint ([`MemEndpoint`], a [`Network`]) and the queue of what its peers send
//! it. A message is delivered at once, as the HTTP transport would deliver it (one batch per
//! peer, snapshots reported delivered, a removed node's vote requests answered with "gone"),
//! unless the test has cut the link (at once, or right after a message it picks). Tests run
//! whole clusters on it, on a paused clock.
//! Nodes do not share a disk: a snapshot travels with its data inline, read from the sender's
//! file system ([`super::inline_snapshot`]). A node that joins on an empty data dir refuses
//! every message until it has asked the members it reaches and their answers admit it: each
//! answers as the peer server would ([`MemberView::answer`]) and a round is weighed as over
//! HTTP ([`Round`]), so a voter that lost its data is refused here too.

use std::collections::{BTreeMap, BTreeSet};
use std::sync::{Arc, Mutex, MutexGuard};

use raft::eraftpb::{Message, MessageType};
use tokio::sync::mpsc;

use super::join::{self, Answer, MemberView, Round, Verdict};
use super::{
    Admission, AppliedAt, Dropped, Network, PeerEvent, SnapshotId, gone_as_of, inline_snapshot,
    is_vote_request, of_another_run,
};
use crate::request::Shared;
use crate::snapshotter::Snapshotter;

/// Messages queued for a node before more are dropped (as a full peer queue drops them).
const QUEUE: usize = 16 * 1024;

/// The network all of a test's nodes attach to.
#[derive(Clone, Default)]
pub struct MemNet {
    shared: Arc<Mutex<Hub>>,
}

#[derive(Default)]
struct Hub {
    /// Where each attached node hears from its peers.
    nodes: BTreeMap<u64, mpsc::Sender<PeerEvent>>,
    /// Each node's removed ids.
    removed: BTreeMap<u64, BTreeSet<u64>>,
    /// The last entry each node has applied.
    applied: BTreeMap<u64, AppliedAt>,
    /// Each node's shared state, which says whom it takes for the leader.
    shared: BTreeMap<u64, Arc<Shared>>,
    /// Links cut by the test, as (from, to).
    cut: BTreeSet<(u64, u64)>,
    /// Links that carry a joining node's questions but lose raft messages, as (from, to).
    muted: BTreeSet<(u64, u64)>,
    /// Links to be cut once they have delivered a message their test picks, as (from, to).
    cut_after: BTreeMap<(u64, u64), Pick>,
    /// Vote requests (pre-votes included) delivered on each link, as (from, to).
    vote_requests: BTreeMap<(u64, u64), u64>,
    /// Each node's members and their peer URLs, as its raft node told its endpoint.
    members: BTreeMap<u64, BTreeMap<u64, String>>,
    /// Each node's cluster identity: [`CLUSTER`], or 0 while it joins and has not been
    /// admitted.
    cluster: BTreeMap<u64, u64>,
    /// What the members that admitted each joining node had seen.
    admissions: BTreeMap<u64, Admission>,
    /// Each node's cluster incarnation, once its raft node knows it.
    incarnations: BTreeMap<u64, u64>,
}

/// The identity of the one cluster on a network.
const CLUSTER: u64 = 1;

/// Which message a test waits for on a link ([`MemNet::cut_after`]).
type Pick = Box<dyn Fn(&Message) -> bool + Send>;

impl MemNet {
    /// A network with no node on it.
    pub fn new() -> MemNet {
        MemNet::default()
    }

    fn hub(&self) -> MutexGuard<'_, Hub> {
        self.shared.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// Attaches node `id` (again, after a restart): its endpoint, and the queue of what its
    /// peers send it.
    pub fn attach(&self, id: u64) -> (MemEndpoint, mpsc::Receiver<PeerEvent>) {
        self.attach_as(id, CLUSTER)
    }

    /// Attaches node `id`, started with `--join` on an empty data dir: it refuses every
    /// message until [`MemNet::join_round`] admits it.
    pub fn attach_joining(&self, id: u64) -> (MemEndpoint, mpsc::Receiver<PeerEvent>) {
        self.attach_as(id, 0)
    }

    fn attach_as(&self, id: u64, cluster: u64) -> (MemEndpoint, mpsc::Receiver<PeerEvent>) {
        let (tx, rx) = mpsc::channel(QUEUE);
        let mut hub = self.hub();
        hub.nodes.insert(id, tx);
        hub.cluster.insert(id, cluster);
        hub.admissions.remove(&id);
        // Its raft node tells the new endpoint its incarnation again, if it knows it.
        hub.incarnations.remove(&id);
        // Its raft node tells the new endpoint its members again.
        hub.members.remove(&id);
        drop(hub);
        let endpoint = MemEndpoint {
            id,
            net: self.clone(),
            peers: BTreeSet::new(),
            snapshots: None,
        };
        (endpoint, rx)
    }

    /// Takes node `id` off the network (it stopped): messages to it are dropped.
    pub fn detach(&self, id: u64) {
        self.hub().nodes.remove(&id);
    }

    /// Cuts the links between `a` and `b`, both ways.
    pub fn cut(&self, a: u64, b: u64) {
        let mut hub = self.hub();
        hub.cut.insert((a, b));
        hub.cut.insert((b, a));
    }

    /// Cuts the link from `from` to `to` only: `to` still reaches `from`.
    pub fn cut_one_way(&self, from: u64, to: u64) {
        self.hub().cut.insert((from, to));
    }

    /// Cuts the link from `from` to `to` one way right after it has delivered a batch holding
    /// a message `picked` picks (the batch arrives whole). A test's way to let a node
    /// acknowledge an entry and hear nothing more, not even that the entry committed: which
    /// a cut made by the test after the fact could not promise, since the leader announces
    /// the commit within one round trip.
    pub fn cut_after(
        &self,
        from: u64,
        to: u64,
        picked: impl Fn(&Message) -> bool + Send + 'static,
    ) {
        self.hub().cut_after.insert((from, to), Box::new(picked));
    }

    /// How many vote requests (pre-votes included) the link from `from` to `to` has
    /// delivered: those answered "gone" were not.
    pub fn vote_requests(&self, from: u64, to: u64) -> u64 {
        self.hub()
            .vote_requests
            .get(&(from, to))
            .copied()
            .unwrap_or(0)
    }

    /// Loses the raft messages `from` sends to `to`, and only those: a node joining at `to`
    /// still asks `from` and hears its answer. A test's way to hold back what a joining node
    /// hears from the members that admit it.
    pub fn mute(&self, from: u64, to: u64) {
        self.hub().muted.insert((from, to));
    }

    /// Mends the links between `a` and `b`, both ways, cut or muted.
    pub fn mend(&self, a: u64, b: u64) {
        let mut hub = self.hub();
        for link in [(a, b), (b, a)] {
            hub.cut.remove(&link);
            hub.muted.remove(&link);
        }
    }

    /// Whether node `id` knows the cluster's identity: for one that joins on an empty data
    /// dir, whether the members admitted it.
    pub fn knows_cluster(&self, id: u64) -> bool {
        self.hub().cluster.get(&id).is_some_and(|c| *c != 0)
    }

    /// Mends every cut or muted link, and disarms every cut still waiting for its message
    /// ([`MemNet::cut_after`]): a healed network does not cut itself later (review 99).
    pub fn heal(&self) {
        let mut hub = self.hub();
        hub.cut.clear();
        hub.muted.clear();
        hub.cut_after.clear();
    }

    /// What the attached members that node `id` reaches both ways answer it, asking to join
    /// at `url` (members that give no answer yet are left out).
    fn join_answers(&self, id: u64, url: &str) -> Vec<(u64, Answer)> {
        let hub = self.hub();
        hub.nodes
            .keys()
            .filter(|m| **m != id && !hub.cut.contains(&(id, **m)) && !hub.cut.contains(&(**m, id)))
            .filter_map(|m| {
                let known = hub.members.get(m).and_then(|peers| peers.get(&id)).cloned();
                let cluster = hub.cluster.get(m).copied().unwrap_or(CLUSTER);
                let incarnation = hub.incarnations.get(m).copied().unwrap_or(0);
                let view =
                    MemberView::new(*m, (cluster, incarnation), known, hub.shared.get(m)?, id);
                Some((*m, view.answer(id, url).ok()?))
            })
            .collect()
    }

    /// One round of node `id`'s questions to join at `url`; admitted, it takes messages.
    pub fn join_round(&self, id: u64, url: &str) -> Verdict {
        let mut round = Round::new(id);
        let verdict = self
            .join_answers(id, url)
            .iter()
            .find_map(|(m, answer)| round.take(*m, answer))
            .unwrap_or_else(|| round.end());
        if let Verdict::Admitted {
            cluster,
            seen,
            incarnation,
            ..
        } = &verdict
        {
            let mut hub = self.hub();
            hub.admissions.insert(id, *seen);
            // As `PeerFilter::admitted`: checked with from the first message.
            if *incarnation != 0 {
                hub.incarnations.entry(id).or_insert(*incarnation);
            }
            hub.cluster.insert(id, *cluster);
        }
        verdict
    }

    /// What the members node `id` reaches say of it, a member of the first cluster about to
    /// start at `url` on an empty data dir ([`join::before_bootstrap`]).
    pub fn before_bootstrap(&self, id: u64, url: &str) -> Result<(), String> {
        join::before_bootstrap(id, url, &self.join_answers(id, url))
    }

    /// Asks node `id` until it is admitted, refused (it hears so, and stops) or `stop` is
    /// cancelled: the in-memory twin of the transport's lookup task.
    pub async fn join(&self, id: u64, url: String, stop: tokio_util::sync::CancellationToken) {
        loop {
            match self.join_round(id, &url) {
                Verdict::Admitted { member, .. } => {
                    tracing::info!(member, "learned the cluster's identity from a member");
                    return;
                }
                Verdict::Refused(reason) => {
                    let inbox = self.hub().nodes.get(&id).cloned();
                    if let Some(inbox) = inbox {
                        let _ = inbox.send(PeerEvent::JoinRefused(reason)).await;
                    }
                    return;
                }
                Verdict::NotYet(_) => {}
            }
            tokio::select! {
                _ = stop.cancelled() => return,
                _ = tokio::time::sleep(join::RETRY_PAUSE) => {}
            }
        }
    }
}

/// One node's end of a [`MemNet`].
pub struct MemEndpoint {
    id: u64,
    net: MemNet,
    /// The peers the node sends to.
    peers: BTreeSet<u64>,
    /// The node's snapshots, whose files the handles in its `MsgSnapshot`s name; `None`: a
    /// node that sends no snapshots.
    snapshots: Option<Arc<Snapshotter>>,
}

impl MemEndpoint {
    /// The endpoint of a node whose snapshot files `snapshots` holds: snapshots it sends are
    /// read from there into the message.
    pub fn with_snapshots(mut self, snapshots: Arc<Snapshotter>) -> MemEndpoint {
        self.snapshots = Some(snapshots);
        self
    }

    /// The endpoint of a node whose shared state is `shared`: a removed node's vote requests
    /// are answered "gone" only while this node's members are settled ([`gone_as_of`]);
    /// without it, never.
    pub fn with_shared(self, shared: Arc<Shared>) -> MemEndpoint {
        self.net.hub().shared.insert(self.id, shared);
        self
    }

    /// Puts the data of each snapshot in `batch` inline; `false` if one cannot be read.
    fn inline_snapshots(&self, to: u64, batch: &mut [Message]) -> bool {
        for m in batch
            .iter_mut()
            .filter(|m| m.get_msg_type() == MessageType::MsgSnapshot)
        {
            let inlined = match &self.snapshots {
                Some(snapshots) => inline_snapshot(snapshots, m).map_err(|e| e.to_string()),
                None => Err("the endpoint has no snapshot directory".into()),
            };
            if let Err(err) = inlined {
                tracing::warn!(to, %err, "cannot send a snapshot");
                return false;
            }
        }
        true
    }
}

impl Network for MemEndpoint {
    fn add_peer(&mut self, id: u64, url: &str) {
        if id != self.id {
            self.peers.insert(id);
            let mut hub = self.net.hub();
            let members = hub.members.entry(self.id).or_default();
            members.insert(id, url.to_string());
        }
    }

    fn remove_peer(&mut self, id: u64) {
        self.peers.remove(&id);
        if let Some(members) = self.net.hub().members.get_mut(&self.id) {
            members.remove(&id);
        }
    }

    fn send(&mut self, messages: Vec<Message>, dropped: &mut Dropped) {
        let mut hub = self.net.hub();
        let mut batches: BTreeMap<u64, Vec<Message>> = BTreeMap::new();
        for m in messages {
            batches.entry(m.to).or_default().push(m);
        }
        let own = hub.nodes.get(&self.id).cloned();
        for (to, mut batch) in batches {
            let snapshots = batch
                .iter()
                .filter(|m| m.get_msg_type() == MessageType::MsgSnapshot)
                .count();
            let link = (self.id, to);
            let target = hub.nodes.get(&to).filter(|_| {
                self.peers.contains(&to) && !hub.cut.contains(&link) && !hub.muted.contains(&link)
            });
            // A node that has not been admitted yet refuses everything, as its peer server;
            // so does one of another incarnation, when both know theirs.
            let joining = hub.cluster.get(&to) == Some(&0);
            let incarnation = |id| hub.incarnations.get(id).copied().unwrap_or(0);
            let other_run = of_another_run(incarnation(&self.id), incarnation(&to));
            let Some(target) = target.filter(|_| !joining && !other_run) else {
                dropped.add(to, snapshots > 0);
                continue;
            };
            // A node that counts the sender as removed answers its vote requests "gone", as
            // the peer server does.
            let removed_as_of = hub
                .removed
                .get(&to)
                .is_some_and(|removed| removed.contains(&self.id))
                .then(|| hub.applied.get(&to).copied().unwrap_or_default());
            let settled = hub
                .shared
                .get(&to)
                .is_some_and(|s| s.is_membership_settled());
            if let Some(as_of) = gone_as_of(removed_as_of, settled, &batch) {
                if let Some(own) = &own {
                    let _ = own.try_send(PeerEvent::RemovedByPeer {
                        peer: to,
                        as_of: Some(as_of),
                    });
                }
                continue;
            }
            if snapshots > 0 && !self.inline_snapshots(to, &mut batch) {
                dropped.add(to, true);
                continue;
            }
            // One report, naming the newest: raft keeps one snapshot in flight per peer.
            let sent = batch
                .iter()
                .rev()
                .find(|m| m.get_msg_type() == MessageType::MsgSnapshot)
                .map(SnapshotId::of);
            let picked = hub
                .cut_after
                .get(&link)
                .is_some_and(|pick| batch.iter().any(pick));
            let votes = batch.iter().filter(|m| is_vote_request(m)).count() as u64;
            if target.try_send(PeerEvent::Step(batch)).is_err() {
                dropped.add(to, snapshots > 0);
                continue;
            }
            if picked {
                hub.cut_after.remove(&link);
                hub.cut.insert(link);
            }
            *hub.vote_requests.entry(link).or_default() += votes;
            if let Some(snapshot) = sent
                && let Some(own) = &own
            {
                let _ = own.try_send(PeerEvent::SnapshotStatus {
                    peer: to,
                    snapshot,
                    delivered: true,
                });
            }
        }
    }

    fn set_removed(&self, removed: &BTreeSet<u64>) {
        self.net.hub().removed.insert(self.id, removed.clone());
    }

    fn set_applied(&self, applied: AppliedAt) {
        self.net.hub().applied.insert(self.id, applied);
    }

    fn cluster_id(&self) -> u64 {
        // One network, one cluster.
        self.net
            .hub()
            .cluster
            .get(&self.id)
            .copied()
            .unwrap_or(CLUSTER)
    }

    fn admission(&self) -> Option<Admission> {
        self.net.hub().admissions.get(&self.id).copied()
    }

    fn set_incarnation(&self, incarnation: u64) -> u64 {
        let before = self.net.hub().incarnations.insert(self.id, incarnation);
        before.unwrap_or(0)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::transport::tests::message;
    use std::sync::atomic::Ordering;

    /// Messages reach attached peers in one batch each; a cut link, a detached node or an
    /// unknown peer drops them (and raft hears so); a removed node's vote request is answered
    /// "gone" by a node whose members are settled, not by one that merely knows a leader.
    #[test]
    fn messages_go_where_links_allow() {
        let net = MemNet::new();
        let (mut a, mut a_rx) = net.attach(1);
        let (_b, mut b_rx) = net.attach(2);
        a.add_peer(2, "");
        let mut dropped = Dropped::default();
        a.send(
            vec![
                message(MessageType::MsgAppend, 1, 2),
                message(MessageType::MsgHeartbeat, 1, 2),
                message(MessageType::MsgAppend, 1, 3),
            ],
            &mut dropped,
        );
        match b_rx.try_recv() {
            Ok(PeerEvent::Step(batch)) => assert_eq!(batch.len(), 2),
            other => panic!("expected one batch, got {other:?}"),
        }
        assert_eq!(dropped.unreachable, [3]);

        net.cut(1, 2);
        let mut dropped = Dropped::default();
        a.send(vec![message(MessageType::MsgAppend, 1, 2)], &mut dropped);
        assert_eq!(dropped.unreachable, [2]);
        net.heal();

        let (b, mut b_rx) = net.attach(2);
        let shared = Arc::new(Shared::default());
        let b = b.with_shared(shared.clone());
        b.set_removed(&BTreeSet::from([1]));
        b.set_applied(AppliedAt { index: 9, term: 2 });
        let mut dropped = Dropped::default();
        let pre_vote = || vec![message(MessageType::MsgRequestPreVote, 1, 2)];
        a.send(pre_vote(), &mut dropped);
        assert!(
            matches!(b_rx.try_recv(), Ok(PeerEvent::Step(_))) && a_rx.try_recv().is_err(),
            "node 2 knows no leader: the pre-vote reaches it, and no 410 comes back"
        );
        shared.leader.store(3, Ordering::Release);
        a.send(pre_vote(), &mut dropped);
        assert!(
            matches!(b_rx.try_recv(), Ok(PeerEvent::Step(_))) && a_rx.try_recv().is_err(),
            "node 2 follows node 3 but has not applied its term: no 410"
        );
        shared.membership_settled.store(true, Ordering::Release);
        a.send(pre_vote(), &mut dropped);
        match a_rx.try_recv() {
            Ok(PeerEvent::RemovedByPeer { peer: 2, as_of }) => assert_eq!(as_of, Some(9)),
            other => panic!("expected gone, got {other:?}"),
        }
    }

    /// A node that joins on an empty data dir takes the incarnation its admitters name, as
    /// over HTTP: a node of an earlier run cannot reach it while it catches up (review 100).
    #[test]
    fn a_joining_node_takes_its_admitters_incarnation() {
        let net = MemNet::new();
        let url = "mem://2";
        let (a, _a_rx) = net.attach(1);
        let shared = Arc::new(Shared::default());
        shared.join_facts.lock().expect("not poisoned").voters = vec![1, 2];
        shared.leader.store(1, Ordering::Release);
        shared.membership_settled.store(true, Ordering::Release);
        let mut a = a.with_shared(shared);
        a.add_peer(2, url);
        a.set_incarnation(0xb2);
        let (mut stale, _stale_rx) = net.attach(3);
        stale.add_peer(2, url);
        stale.set_incarnation(0xa1);
        let (_b, mut b_rx) = net.attach_joining(2);
        match net.join_round(2, url) {
            Verdict::Admitted { incarnation, .. } => assert_eq!(incarnation, 0xb2),
            other => panic!("{other:?}"),
        }
        let mut dropped = Dropped::default();
        stale.send(
            vec![message(MessageType::MsgRequestVote, 3, 2)],
            &mut dropped,
        );
        assert!(b_rx.try_recv().is_err(), "a node of an earlier run got in");
        assert_eq!(dropped.unreachable, [2]);
    }

    /// A link cut after a message the test picks delivers the batch that holds it, whole, and
    /// nothing after it, that way only; the vote requests each link delivered are counted.
    #[test]
    fn a_link_cut_after_a_picked_message_delivers_that_batch_and_no_more() {
        let net = MemNet::new();
        let (mut a, mut a_rx) = net.attach(1);
        let (mut b, mut b_rx) = net.attach(2);
        a.add_peer(2, "");
        b.add_peer(1, "");
        net.cut_after(1, 2, |m| m.get_msg_type() == MessageType::MsgAppend);
        let mut dropped = Dropped::default();
        let heartbeat = || message(MessageType::MsgHeartbeat, 1, 2);
        for batch in [
            vec![heartbeat()],
            vec![message(MessageType::MsgAppend, 1, 2), heartbeat()],
        ] {
            let sent = batch.len();
            a.send(batch, &mut dropped);
            match b_rx.try_recv() {
                Ok(PeerEvent::Step(got)) => assert_eq!(got.len(), sent),
                other => panic!("expected the batch, got {other:?}"),
            }
        }
        assert!(dropped.unreachable.is_empty());
        a.send(vec![heartbeat()], &mut dropped);
        assert!(b_rx.try_recv().is_err(), "the link is cut after the append");
        assert_eq!(dropped.unreachable, [2]);

        b.send(
            vec![message(MessageType::MsgRequestPreVote, 2, 1)],
            &mut Dropped::default(),
        );
        assert!(matches!(a_rx.try_recv(), Ok(PeerEvent::Step(_))));
        assert_eq!((net.vote_requests(2, 1), net.vote_requests(1, 2)), (1, 0));

        // Healed, the link carries everything, and a cut still armed is disarmed with it.
        net.heal();
        net.cut_after(2, 1, |m| m.get_msg_type() == MessageType::MsgAppend);
        net.heal();
        for batch in [
            vec![message(MessageType::MsgAppend, 1, 2)],
            vec![heartbeat()],
        ] {
            a.send(batch, &mut dropped);
            assert!(matches!(b_rx.try_recv(), Ok(PeerEvent::Step(_))));
        }
        for _ in 0..2 {
            b.send(
                vec![message(MessageType::MsgAppend, 2, 1)],
                &mut Dropped::default(),
            );
            assert!(
                matches!(a_rx.try_recv(), Ok(PeerEvent::Step(_))),
                "cut after heal"
            );
        }
    }

    /// Nodes do not share a disk: a snapshot whose data names the sender's file arrives with
    /// that file's data inline; one whose file is gone is dropped, and raft hears it failed.
    #[test]
    fn a_snapshot_travels_with_its_data() {
        use crate::disk::MemFs;
        use crate::snapshotter::{Snapshotter, handle::file_handle, snap_name};
        use raft::eraftpb::Snapshot;
        use std::path::Path;

        let fs: crate::disk::SharedFs = Arc::new(MemFs::new(1));
        let dir = Path::new("/data/raftexample-1-snap");
        let snapshots = Snapshotter::new_on(fs.clone(), dir, 5).expect("a snapshot folder");
        let mut snap = Snapshot {
            data: b"the state".to_vec().into(),
            ..Default::default()
        };
        snap.mut_metadata().term = 2;
        snap.mut_metadata().index = 7;
        snapshots.save(&snap).expect("saved");

        let net = MemNet::new();
        let (a, _a_rx) = net.attach(1);
        let mut a = a.with_snapshots(Arc::new(snapshots));
        let (_b, mut b_rx) = net.attach(2);
        a.add_peer(2, "");
        let mut m = message(MessageType::MsgSnapshot, 1, 2);
        m.mut_snapshot().set_metadata(snap.get_metadata().clone());
        m.mut_snapshot().data = file_handle(&snap_name(2, 7));
        let mut dropped = Dropped::default();
        a.send(vec![m.clone()], &mut dropped);
        match b_rx.try_recv() {
            Ok(PeerEvent::Step(batch)) => {
                assert_eq!(&batch[0].get_snapshot().data[..], b"the state")
            }
            other => panic!("expected the snapshot, got {other:?}"),
        }
        assert!(dropped.snapshots.is_empty());

        m.mut_snapshot().data = file_handle(&snap_name(2, 8));
        a.send(vec![m], &mut dropped);
        assert!(b_rx.try_recv().is_err());
        assert_eq!(dropped.snapshots, [2]);
    }
}
