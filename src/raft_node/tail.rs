//! What this node's log holds past what it has applied that its answer to a joining node
//! rests on: session registrations (a node that registered has run). See
//! [`JoinFacts`](crate::request::JoinFacts) and `transport::join`.
//!
//! The applied table cannot say it alone: a registration commits once a quorum has it in its
//! log, and a member that has not applied it yet would admit the node it names as one that
//! never ran. What each member's log holds can: any quorum shares a member with the quorum
//! that committed the registration. The node publishes them, with its sessions and voters,
//! whenever they move.

use std::collections::BTreeMap;

use raft::eraftpb::{Entry, EntryType};

use crate::proposal::{self, Payload};

/// One entry of interest in the unapplied part of the log.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Item {
    /// A session registration by this node.
    Registration(u64),
    /// The end of a stretch of the log that could not be read at start.
    Unread,
}

/// The registrations in the log past the applied index, by index.
#[derive(Debug, Default)]
pub(super) struct UnappliedTail {
    items: BTreeMap<u64, Item>,
    /// Whether `items` changed since [`take_moved`](Self::take_moved) last said so.
    moved: bool,
}

impl UnappliedTail {
    /// Notes `entries`, about to join the log: they replace every entry from the first one's
    /// index on (raft overwrites a tail no leader committed).
    pub(super) fn append(&mut self, entries: &[Entry]) {
        let Some(first) = entries.first() else {
            return;
        };
        if !self.items.split_off(&first.index).is_empty() {
            self.moved = true;
        }
        for entry in entries {
            if let Some(item) = item(entry) {
                self.items.insert(entry.index, item);
                self.moved = true;
            }
        }
    }

    /// Forgets what is applied, through `index`: the applied table says it from now on.
    pub(super) fn applied(&mut self, index: u64) {
        let kept = self.items.split_off(&(index + 1));
        if !self.items.is_empty() {
            self.moved = true;
        }
        self.items = kept;
    }

    /// Counts the log through `last` as unknown: it could not be read.
    pub(super) fn unreadable(&mut self, last: u64) {
        self.items.insert(last, Item::Unread);
        self.moved = true;
    }

    /// Forgets everything: a snapshot replaced the log, and its table holds what it applied.
    pub(super) fn clear(&mut self) {
        if !self.items.is_empty() {
            self.moved = true;
        }
        self.items.clear();
    }

    /// Whether anything changed since the last call.
    pub(super) fn take_moved(&mut self) -> bool {
        std::mem::take(&mut self.moved)
    }

    /// The nodes that registered in the tail, and each one's latest registration's index (a
    /// doubt cites it: an admitter that applied past an earlier one may not have seen it).
    pub(super) fn logged(&self) -> BTreeMap<u64, u64> {
        let mut logged = BTreeMap::new();
        for (index, item) in &self.items {
            if let Item::Registration(origin) = item {
                logged.insert(*origin, *index);
            }
        }
        logged
    }

    /// Whether part of the tail could not be read at start (until that part is applied).
    pub(super) fn unread(&self) -> bool {
        self.items.values().any(|i| *i == Item::Unread)
    }
}

/// What `entry` is, if it is of interest.
fn item(entry: &Entry) -> Option<Item> {
    registered(entry).map(Item::Registration)
}

/// The node whose session registration `entry` is, if it is one. Only a registration is
/// decoded: any other entry is told by its type or first byte, on every append.
pub(super) fn registered(entry: &Entry) -> Option<u64> {
    if entry.get_entry_type() != EntryType::EntryNormal || !proposal::is_registration(&entry.data) {
        return None;
    }
    match proposal::decode(&entry.data) {
        Ok(Payload::Register { origin, .. }) => Some(origin),
        // The apply path refuses it too; an unreadable registration names no one.
        _ => None,
    }
}

// What the node publishes of it, with its sessions and voters, for the answers to joining
// nodes.
impl super::RaftNode {
    /// Publishes what this node's answers to joining nodes rest on (see
    /// [`JoinFacts`](crate::request::JoinFacts)): which members have run since they were last
    /// added (a session that began since), what its log holds past what it applied, and its
    /// voters. After each change to the table's sessions or to the members, and whenever the
    /// log's tail moves (see [`refresh_join_facts`](Self::refresh_join_facts)).
    pub(super) fn publish_join_facts(&mut self) {
        let mut running = self.sessions.origins();
        running.retain(|id, session| self.members.ran_since_added(*id, *session));
        self.tail.take_moved();
        self.published_vouch_for_none = self.vouches_for_none();
        let mut voters = self.conf_state.voters.clone();
        voters.sort_unstable();
        let facts = crate::request::JoinFacts {
            running,
            logged: self.tail.logged(),
            voters,
            vouch_for_none: self.published_vouch_for_none,
        };
        *self
            .shared
            .join_facts
            .lock()
            .unwrap_or_else(|p| p.into_inner()) = facts;
    }

    /// Publishes the join facts again if the log's tail moved since, or whether this node
    /// vouches for none changed (a leader began or ended holding back entries).
    pub(super) fn refresh_join_facts(&mut self) {
        if self.tail.take_moved() || self.vouches_for_none() != self.published_vouch_for_none {
            self.publish_join_facts();
        }
    }

    /// Whether the voters this node has applied may be behind what it committed, so that it
    /// vouches for no joining node: a leader holds back committed entries, or the log could not
    /// be read at start. (Not a change in the log it has not seen commit: a lone voter that
    /// added a second and then a third, and stepped down, would never vouch for the second,
    /// which it needs to commit the third; a review found that deadlock.)
    fn vouches_for_none(&self) -> bool {
        self.tail.unread() || !self.removal.held_after_own_removal.is_empty()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn normal(index: u64, data: Vec<u8>) -> Entry {
        Entry {
            index,
            data: data.into(),
            ..Default::default()
        }
    }

    fn register(index: u64, origin: u64) -> Entry {
        normal(index, proposal::encode_register(origin, 99))
    }

    /// A registration is said from its append until it is applied, whatever came between;
    /// one overwritten (never committed) or replaced by a snapshot is said no more.
    #[test]
    fn a_registration_is_said_from_its_append_to_its_apply() {
        let mut tail = UnappliedTail::default();
        tail.append(&[normal(5, b"put".to_vec()), register(6, 2)]);
        assert_eq!(tail.logged(), BTreeMap::from([(2, 6)]));
        assert!(tail.take_moved());
        assert!(!tail.take_moved(), "said once");

        tail.append(&[normal(7, vec![]), register(8, 3), register(9, 2)]);
        assert_eq!(
            tail.logged(),
            BTreeMap::from([(2, 9), (3, 8)]),
            "the latest of each"
        );
        assert!(!tail.unread());

        // A new leader overwrites from 8 on: 3's registration was never committed.
        tail.take_moved();
        tail.append(&[normal(8, vec![])]);
        assert!(tail.take_moved());
        assert_eq!(tail.logged(), BTreeMap::from([(2, 6)]));

        tail.applied(5);
        assert!(!tail.take_moved(), "nothing of interest applied");
        assert_eq!(tail.logged(), BTreeMap::from([(2, 6)]));
        tail.applied(6);
        assert!(tail.take_moved());
        assert!(tail.logged().is_empty());

        tail.append(&[register(9, 4)]);
        tail.clear();
        assert!(tail.logged().is_empty());
    }

    /// A stretch that could not be read at start leaves the node unsure until it is applied.
    #[test]
    fn an_unread_stretch_is_pending_until_applied() {
        let mut tail = UnappliedTail::default();
        tail.unreadable(9);
        assert!(tail.unread());
        tail.applied(8);
        assert!(tail.unread());
        tail.applied(9);
        assert!(!tail.unread());
    }

    /// A registration that does not decode names no one, and stops nothing.
    #[test]
    fn a_malformed_registration_names_no_one() {
        let mut bad = proposal::encode_register(2, 1);
        bad.push(0);
        let mut tail = UnappliedTail::default();
        tail.append(&[normal(3, bad)]);
        assert!(tail.logged().is_empty());
    }
}
