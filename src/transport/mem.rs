//! A network in memory, for nodes that share a process: every node attaches to one [`MemNet`]
//! and gets an endpoint ([`MemEndpoint`], a [`Network`]) and the queue of what its peers send
//! it. A message is delivered at once, as the HTTP transport would deliver it (one batch per
//! peer, snapshots reported delivered, a removed node's vote requests answered with "gone"),
//! unless the test has cut the link. Tests run whole clusters on it, on a paused clock.

use std::collections::{BTreeMap, BTreeSet};
use std::sync::{Arc, Mutex, MutexGuard};

use raft::eraftpb::{Message, MessageType};
use tokio::sync::mpsc;

use super::{Dropped, Network, PeerEvent};

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
    /// Each node's removed ids, and the log index they are as of.
    removed: BTreeMap<u64, (BTreeSet<u64>, u64)>,
    /// Links cut by the test, as (from, to).
    cut: BTreeSet<(u64, u64)>,
}

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
        let (tx, rx) = mpsc::channel(QUEUE);
        self.hub().nodes.insert(id, tx);
        let endpoint = MemEndpoint {
            id,
            net: self.clone(),
            peers: BTreeSet::new(),
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

    /// Mends every cut link.
    pub fn heal(&self) {
        self.hub().cut.clear();
    }
}

/// One node's end of a [`MemNet`].
pub struct MemEndpoint {
    id: u64,
    net: MemNet,
    /// The peers the node sends to.
    peers: BTreeSet<u64>,
}

impl Network for MemEndpoint {
    fn add_peer(&mut self, id: u64, _url: &str) {
        if id != self.id {
            self.peers.insert(id);
        }
    }

    fn remove_peer(&mut self, id: u64) {
        self.peers.remove(&id);
    }

    fn send(&mut self, messages: Vec<Message>, dropped: &mut Dropped) {
        let hub = self.net.hub();
        let mut batches: BTreeMap<u64, Vec<Message>> = BTreeMap::new();
        for m in messages {
            batches.entry(m.to).or_default().push(m);
        }
        let own = hub.nodes.get(&self.id).cloned();
        for (to, batch) in batches {
            let snapshots = batch
                .iter()
                .filter(|m| m.get_msg_type() == MessageType::MsgSnapshot)
                .count();
            let target = hub
                .nodes
                .get(&to)
                .filter(|_| self.peers.contains(&to) && !hub.cut.contains(&(self.id, to)));
            let Some(target) = target else {
                dropped.add(to, snapshots > 0);
                continue;
            };
            let campaigning = batch.iter().any(|m| {
                matches!(
                    m.get_msg_type(),
                    MessageType::MsgRequestVote | MessageType::MsgRequestPreVote
                )
            });
            // A node that counts the sender as removed answers its vote requests "gone".
            if let Some((removed, as_of)) = hub.removed.get(&to)
                && campaigning
                && removed.contains(&self.id)
            {
                if let Some(own) = &own {
                    let _ = own.try_send(PeerEvent::RemovedByPeer {
                        peer: to,
                        as_of: Some(*as_of),
                    });
                }
                continue;
            }
            if target.try_send(PeerEvent::Step(batch)).is_err() {
                dropped.add(to, snapshots > 0);
                continue;
            }
            if snapshots > 0
                && let Some(own) = &own
            {
                let _ = own.try_send(PeerEvent::SnapshotStatus {
                    peer: to,
                    delivered: true,
                });
            }
        }
    }

    fn set_removed(&self, removed: &BTreeSet<u64>, as_of: u64) {
        self.net
            .hub()
            .removed
            .insert(self.id, (removed.clone(), as_of));
    }

    fn cluster_id(&self) -> u64 {
        // One network, one cluster.
        1
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn message(kind: MessageType, from: u64, to: u64) -> Message {
        let mut m = Message {
            from,
            to,
            ..Default::default()
        };
        m.set_msg_type(kind);
        m
    }

    /// Messages reach attached peers in one batch each; a cut link, a detached node or an
    /// unknown peer drops them (and raft hears so); a removed node's vote request is answered
    /// "gone".
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

        let (b, _b_rx) = net.attach(2);
        b.set_removed(&BTreeSet::from([1]), 9);
        let mut dropped = Dropped::default();
        a.send(
            vec![message(MessageType::MsgRequestPreVote, 1, 2)],
            &mut dropped,
        );
        match a_rx.try_recv() {
            Ok(PeerEvent::RemovedByPeer { peer: 2, as_of }) => assert_eq!(as_of, Some(9)),
            other => panic!("expected gone, got {other:?}"),
        }
    }
}
