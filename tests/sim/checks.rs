//! What must hold at every moment of a run, checked as it happens: committed entries never
//! change, at most one leader per term, every node that has applied index i holds the same
//! state at i, a node stops as removed only when it is, a node stops on its own only after
//! a disk fault, and it refuses to start only when a completed sync's data was damaged.

use std::collections::BTreeMap;
use std::hash::{DefaultHasher, Hash, Hasher};

use raft::eraftpb::{ConfChangeType, Entry, EntryType};

/// A membership change for one node, as the committed log says.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Change {
    /// Added (or added back).
    Added,
    /// Removed.
    Removed,
}

/// What the run has seen so far, and what it found wrong.
#[derive(Default)]
pub struct Invariants {
    /// Every committed entry seen on any node: (term, digest).
    committed: BTreeMap<u64, (u64, u64)>,
    /// Per node, the membership changes in the committed log, by index.
    changes: BTreeMap<u64, BTreeMap<u64, Change>>,
    /// The leader of each term, and who said so first.
    leaders: BTreeMap<u64, u64>,
    /// The state digest at each applied index, and the node that reached it first.
    states: BTreeMap<u64, (u64, u64)>,
    /// Everything wrong, explained.
    pub violations: Vec<String>,
}

/// A digest of an entry's content.
fn entry_digest(e: &Entry) -> u64 {
    let mut h = DefaultHasher::new();
    (e.get_entry_type() as i32).hash(&mut h);
    e.data.hash(&mut h);
    e.context.hash(&mut h);
    h.finish()
}

impl Invariants {
    /// Records that `node` holds `entries` as committed; each must match what any node held
    /// committed at its index.
    pub fn committed(&mut self, node: u64, entries: &[Entry]) {
        for e in entries {
            let seen = (e.term, entry_digest(e));
            match self.committed.get(&e.index) {
                Some(first) if *first != seen => self.violations.push(format!(
                    "committed entry {} changed: node {node} holds term {} (digest {:x}), \
                     committed before as term {} (digest {:x})",
                    e.index, seen.0, seen.1, first.0, first.1
                )),
                Some(_) => {}
                None => {
                    self.committed.insert(e.index, seen);
                    self.note_changes(e);
                }
            }
        }
    }

    /// A snapshot at `index` of `term` on `node`: the log must have had that term there.
    pub fn snapshot(&mut self, node: u64, index: u64, term: u64) {
        if let Some((t, _)) = self.committed.get(&index)
            && *t != term
        {
            self.violations.push(format!(
                "node {node} holds a snapshot at index {index} of term {term}, but the entry \
                 committed there is of term {t}"
            ));
        }
    }

    fn note_changes(&mut self, e: &Entry) {
        if e.get_entry_type() == EntryType::EntryNormal {
            return;
        }
        let Ok(cc) = raftexample::membership::decode_conf_change(e) else {
            return;
        };
        for c in cc.get_changes() {
            let change = match c.get_change_type() {
                ConfChangeType::RemoveNode => Change::Removed,
                _ => Change::Added,
            };
            self.changes
                .entry(c.node_id)
                .or_default()
                .insert(e.index, change);
        }
    }

    /// The latest committed membership change of `node` seen so far, and its index.
    pub fn last_change(&self, node: u64) -> Option<(u64, Change)> {
        self.changes
            .get(&node)
            .and_then(|c| c.last_key_value())
            .map(|(i, c)| (*i, *c))
    }

    /// `node` acts as the leader of `term`.
    pub fn leads(&mut self, node: u64, term: u64, evidence: &str) {
        match self.leaders.get(&term) {
            Some(first) if *first != node => {
                let text = format!("two leaders in term {term}: node {first}, and node {node}");
                // Said once: the second leader goes on acting as one, event after event.
                if !self.violations.iter().any(|v| v.starts_with(&text)) {
                    self.violations.push(format!("{text} ({evidence})"));
                }
            }
            Some(_) => {}
            None => {
                self.leaders.insert(term, node);
            }
        }
    }

    /// `node` has applied up to `index` and its state there digests to `digest`.
    pub fn state(&mut self, node: u64, index: u64, digest: u64) {
        match self.states.get(&index) {
            Some((first, by)) if *first != digest => self.violations.push(format!(
                "node {node} and node {by} hold different states at applied index {index} \
                 (digests {digest:x} and {first:x})"
            )),
            Some(_) => {}
            None => {
                self.states.insert(index, (digest, node));
            }
        }
    }

    /// Entries committed (seen) so far.
    pub fn committed_len(&self) -> usize {
        self.committed.len()
    }
}
