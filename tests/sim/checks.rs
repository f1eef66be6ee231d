//! What must hold at every moment of a run, checked as it happens: committed entries never
//! change, at most one leader per term, every node that has applied index i holds the same
//! state at i and the same voters, a node stops as removed only when it is, a node stops on
//! its own only after a disk fault, and it refuses to start only when a completed sync's data
//! was damaged. At the end: every membership change applied was applied to the very voters it
//! was checked against, and made the change it says (two changes in flight at once cannot
//! both be applied: the second is judged against voters that are no longer those).

use std::collections::BTreeMap;
use std::hash::{DefaultHasher, Hash, Hasher};

use raft::eraftpb::{ConfChangeType, Entry, EntryType};

/// A membership change for one node, as the committed log says.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord)]
pub enum Change {
    /// Added (or added back).
    Added,
    /// Removed.
    Removed,
}

/// The committed membership changes that record the voters they were checked against, as
/// [`Invariants::check_membership`] judged them.
#[derive(Clone, Copy, Debug, Default)]
pub struct Judged {
    /// Took effect.
    pub applied: u64,
    /// Skipped by every node.
    pub skipped: u64,
    /// Not judged: no node was seen between the change and a neighbouring one.
    pub unknown: u64,
}

/// A committed membership change.
struct CommittedChange {
    /// The node it was proposed through (`None`: it records none, as the bootstrap entries).
    origin: Option<u64>,
    /// The voters it was checked against (`None`: it records none).
    checked: Option<Vec<u64>>,
    /// What it changes.
    changes: Vec<(u64, Change)>,
}

/// What the run has seen so far, and what it found wrong.
#[derive(Default)]
pub struct Invariants {
    /// Every committed entry seen on any node: (term, digest).
    committed: BTreeMap<u64, (u64, u64)>,
    /// Per node, the membership changes in the committed log, by index.
    changes: BTreeMap<u64, BTreeMap<u64, Change>>,
    /// Every membership change in the committed log, by index.
    confs: BTreeMap<u64, CommittedChange>,
    /// The voters at each applied index (from 1), and the node that showed them first.
    voters: BTreeMap<u64, (Vec<u64>, u64)>,
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
        let mut all = Vec::new();
        for c in cc.get_changes() {
            let change = match c.get_change_type() {
                ConfChangeType::RemoveNode => Change::Removed,
                _ => Change::Added,
            };
            self.changes
                .entry(c.node_id)
                .or_default()
                .insert(e.index, change);
            all.push((c.node_id, change));
        }
        let context = raftexample::proposal::decode_context(&e.context);
        let change = CommittedChange {
            origin: context.as_ref().map(|c| c.id.origin),
            checked: context.and_then(|c| c.voters),
            changes: all,
        };
        self.confs.insert(e.index, change);
    }

    /// The latest committed membership change of `node` seen so far, and its index; a
    /// change every node skipped (the voters it was checked against had changed when it
    /// committed) does not count.
    pub fn last_change(&self, node: u64) -> Option<(u64, Change)> {
        self.changes
            .get(&node)?
            .iter()
            .rev()
            .find(|(i, _)| {
                self.took_effect(**i)
                    .is_none_or(|(before, after)| before != after)
            })
            .map(|(i, c)| (*i, *c))
    }

    /// `node` has applied up to `index`, and its voters there are `voters` (ascending),
    /// reached at `urls` (the peer URL it uses for each voter it knows one of): every node
    /// must hold the same voters at the same applied index, never none, and no two of them
    /// at one URL.
    pub fn membership(&mut self, node: u64, index: u64, voters: Vec<u64>, urls: &[(u64, String)]) {
        if index == 0 {
            // Before the first entry: a node that bootstraps sets its voters before it
            // applies the entries that add them, one that joins has none yet.
            return;
        }
        for (i, (a, url)) in urls.iter().enumerate() {
            if let Some((b, _)) = urls[i + 1..].iter().find(|(_, u)| u == url) {
                self.violations.push(format!(
                    "node {node} holds members {a} and {b} at one URL, {url}, at applied \
                     index {index}"
                ));
            }
        }
        match self.voters.get(&index) {
            Some((first, by)) if *first != voters => self.violations.push(format!(
                "node {node} holds voters {voters:?} at applied index {index}, node {by} held \
                 {first:?} there"
            )),
            Some(_) => {}
            None => {
                if voters.is_empty() {
                    self.violations.push(format!(
                        "node {node} holds no voter at applied index {index}"
                    ));
                }
                self.voters.insert(index, (voters, node));
            }
        }
    }

    /// The voters just before and just after the membership change committed at `index`,
    /// if some node was seen between it and each of its neighbours (membership changes apart,
    /// the voters are those of the last change applied, so any applied index between two
    /// changes shows them), and no committed index there went unseen (a change could hide
    /// in it).
    fn took_effect(&self, index: u64) -> Option<(&Vec<u64>, &Vec<u64>)> {
        let prev = self.confs.range(..index).next_back().map(|(i, _)| *i)?;
        let next = self
            .confs
            .range(index + 1..)
            .next()
            .map_or(u64::MAX, |(i, _)| *i);
        let (seen_before, (before, _)) = self.voters.range(prev..index).next_back()?;
        let (seen_after, (after, _)) = self.voters.range(index..next).next()?;
        let span = self.committed.range(*seen_before..=*seen_after).count() as u64;
        (span == seen_after - seen_before + 1).then_some((before, after))
    }

    /// At the end: each membership change that took effect was applied to the voters it was
    /// checked against, and changed them as it says. Returns how many of the changes that
    /// record their voters took effect, how many every node skipped, and how many could not
    /// be judged (no node was seen between the change and a neighbouring one).
    pub fn check_membership(&mut self) -> Judged {
        let mut found = Vec::new();
        let mut judged = Judged::default();
        for (index, conf) in &self.confs {
            let (Some(checked), changes) = (&conf.checked, &conf.changes) else {
                continue;
            };
            let Some((before, after)) = self.took_effect(*index) else {
                judged.unknown += 1;
                continue;
            };
            if before == after {
                judged.skipped += 1;
                continue;
            }
            judged.applied += 1;
            if before != checked {
                found.push(format!(
                    "the membership change at index {index} ({changes:?}) was applied to \
                     voters {before:?}, but was checked against {checked:?}: another change \
                     was applied in between, and both took effect"
                ));
            }
            let mut expected = before.clone();
            for (id, change) in changes {
                match change {
                    Change::Added => expected.push(*id),
                    Change::Removed => expected.retain(|v| v != id),
                }
            }
            expected.sort_unstable();
            expected.dedup();
            if expected != *after {
                found.push(format!(
                    "the membership change at index {index} ({changes:?}) took voters \
                     {before:?} to {after:?}"
                ));
            }
        }
        self.violations.append(&mut found);
        judged
    }

    /// The index of a committed membership change proposed through node `origin` that made
    /// `change` to node `id` and took effect (the voters before and after it, as nodes showed
    /// them, differ), if there is one.
    pub fn took_effect_through(&self, origin: u64, id: u64, change: Change) -> Option<u64> {
        self.confs
            .iter()
            .filter(|(_, c)| c.origin == Some(origin) && c.changes.contains(&(id, change)))
            .map(|(index, _)| *index)
            .find(|index| {
                self.took_effect(*index)
                    .is_some_and(|(before, after)| before != after)
            })
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

#[cfg(test)]
mod tests {
    use protobuf::Message as _;
    use raft::eraftpb::{ConfChangeSingle, ConfChangeV2};
    use raftexample::proposal::{ProposalId, encode_context};

    use super::*;

    /// A committed membership change at `index`, checked against `voters` (then proposed
    /// through node 1; without them, it records no identity, as the bootstrap entries).
    fn conf(index: u64, id: u64, remove: bool, voters: Option<&[u64]>) -> Entry {
        let mut single = ConfChangeSingle {
            node_id: id,
            ..Default::default()
        };
        single.set_change_type(if remove {
            ConfChangeType::RemoveNode
        } else {
            ConfChangeType::AddNode
        });
        let mut cc = ConfChangeV2::default();
        cc.mut_changes().push(single);
        let mut e = Entry {
            term: 1,
            index,
            data: cc.write_to_bytes().expect("encodes").into(),
            ..Default::default()
        };
        e.set_entry_type(EntryType::EntryConfChangeV2);
        if let Some(voters) = voters {
            let id = ProposalId {
                origin: 1,
                session: 4,
                seq: index,
            };
            e.context = encode_context(id, 0, voters).into();
        }
        e
    }

    fn normal(index: u64) -> Entry {
        Entry {
            term: 1,
            index,
            ..Default::default()
        }
    }

    /// Three voters; two removals checked against them at once. `second_applied`: the second
    /// took effect too (as it must not).
    fn two_removals(second_applied: bool) -> Invariants {
        let mut inv = Invariants::default();
        let log = vec![
            conf(1, 1, false, None),
            conf(2, 2, false, None),
            conf(3, 3, false, None),
            normal(4),
            conf(5, 3, true, Some(&[1, 2, 3])),
            normal(6),
            conf(7, 2, true, Some(&[1, 2, 3])),
            normal(8),
        ];
        inv.committed(1, &log);
        let urls = [(1, "u1".to_string())];
        inv.membership(1, 4, vec![1, 2, 3], &urls);
        inv.membership(1, 6, vec![1, 2], &urls);
        let last = if second_applied { vec![1] } else { vec![1, 2] };
        inv.membership(1, 8, last, &urls);
        inv
    }

    #[test]
    fn two_changes_checked_against_the_same_voters_cannot_both_take_effect() {
        let mut inv = two_removals(true);
        let judged = inv.check_membership();
        assert_eq!((judged.applied, judged.skipped, judged.unknown), (2, 0, 0));
        assert_eq!(inv.violations.len(), 1, "{:?}", inv.violations);
        assert!(inv.violations[0].contains("checked against [1, 2, 3]"));
        // The second removal took effect: node 2 is out.
        assert_eq!(inv.last_change(2), Some((7, Change::Removed)));

        let mut inv = two_removals(false);
        let judged = inv.check_membership();
        assert_eq!((judged.applied, judged.skipped, judged.unknown), (1, 1, 0));
        assert!(inv.violations.is_empty(), "{:?}", inv.violations);
        // The second removal was skipped: node 2's latest change is its addition.
        assert_eq!(inv.last_change(2), Some((2, Change::Added)));
    }

    /// A membership change that took effect is found by the node it was proposed through (a
    /// change answered "will not happen" there must not be), one skipped by every node is not.
    #[test]
    fn a_change_that_took_effect_is_found_by_the_node_it_went_through() {
        let inv = two_removals(false);
        // Both removals were proposed through node 1 (see `conf`).
        assert_eq!(inv.took_effect_through(1, 3, Change::Removed), Some(5));
        assert_eq!(
            inv.took_effect_through(1, 2, Change::Removed),
            None,
            "skipped"
        );
        assert_eq!(
            inv.took_effect_through(2, 3, Change::Removed),
            None,
            "not through 2"
        );
        assert_eq!(
            inv.took_effect_through(1, 3, Change::Added),
            None,
            "not added"
        );
        let inv = two_removals(true);
        assert_eq!(inv.took_effect_through(1, 2, Change::Removed), Some(7));
    }

    #[test]
    fn nodes_must_agree_on_the_voters_and_their_urls() {
        let mut inv = Invariants::default();
        inv.membership(1, 5, vec![1, 2], &[(1, "u1".into()), (2, "u2".into())]);
        inv.membership(2, 5, vec![1, 2], &[(1, "u1".into()), (2, "u2".into())]);
        assert!(inv.violations.is_empty());
        inv.membership(3, 5, vec![1, 2, 3], &[]);
        inv.membership(2, 6, vec![1, 2], &[(1, "u1".into()), (2, "u1".into())]);
        assert_eq!(inv.violations.len(), 2, "{:?}", inv.violations);
    }
}
