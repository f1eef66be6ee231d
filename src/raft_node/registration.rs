//! A session registration says how far its process had applied the log, and a leader appends
//! none sent before its process had applied every entry ahead of its node's latest addition.
//!
//! A registration in the log after a node's latest addition is what tells the members that
//! the node has run since it was added (`tail.rs`, `transport::join`): a start of its id on
//! an empty data dir is then refused, or doubted while the entry is not applied. But a
//! registration can be delivered late: a process sends it, is removed, stops, and its
//! message reaches the leader after the node was added back. Appended then, it reads as a run
//! that never happened, and where the members without the node are too few to commit it (a
//! voter left alone adds the node back), nothing can: the leader doubts every start of the
//! node until the entry is applied or dropped, and it commits only with the node's vote. The
//! cluster stood still for good (simulator seed 12200460, long).
//!
//! So the proposal says, in its `index` (a field raft-rs reads on no proposal, carried as it
//! is when a follower relays it), the first index its process had not applied (its applied
//! index plus one, so that 0 still means "no stamp"), and a leader whose log adds the node
//! past that index, applied or not, does not append it. Applied entries are committed, the
//! same in every log: a process that had applied every entry before the node's latest
//! addition had applied any removal before it too, and a removed process registers no more
//! (`Proposals::registration_due`), so its registration is of this member's run, or of the
//! process that joins as it (about to apply the addition). One sent before a removal and
//! its addition back had not applied the removal: the addition lies past its stamp. This
//! needs nothing the sender may not know: a process whose members came from a snapshot of a
//! build before 2026-12-05 knows no addition's index (nor does one started with `--join`
//! before it applies its own), and the stamp of the addition's index it sent before said 0
//! for both, which let theirs through (review 121, L1).
//!
//! A process still running registers again once it has applied the addition: at once, when
//! that makes it a member while it has no session (`Proposals::registration_due`), and
//! otherwise after the pause that resends any unanswered registration. The leader's view of
//! the addition may run ahead of what takes effect only while its tail is unapplied (a change
//! in it may be skipped at apply, refused by raft, or overwritten by a later leader): such a
//! registration is refused until the leader applies the tail, and goes through at its next
//! sending (review 121, N1).
//!
//! Builds: a proposal that says 0 (a build before the stamp) is appended, as before. The
//! build before this one stamped the index of its node's addition as its process applied it
//! (0 if unknown), under the same rule (appended unless the latest addition lies past it):
//! its live processes stamp that addition's index, which is not past, and are appended; a
//! leader of that build holds this build's stamps to the same comparison. That is why a stamp
//! equal to the addition's index is appended: refused, as review 121 proposed, it would
//! refuse the build before's live processes at every sending, for good, to gain only a
//! joining process one entry short of its addition, which is the live one.

use raft::eraftpb::{ConfChangeType, Entry, EntryType, Message, MessageType};
use raft::{GetEntriesContext, RaftLog, StateRole, Storage};

use super::reads::one_entry_message;
use super::tail::registered;
use crate::membership::{Members, decode_conf_change};

/// A registration that a leader does not append: whose, what its process had applied, and the
/// node's latest addition in the leader's log.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) struct Late {
    /// The node that registers.
    pub origin: u64,
    /// Its stamp: the first index its process had not applied (or, from the build before,
    /// the index of the addition it had applied).
    pub stamp: u64,
    /// The index of the node's latest addition in this leader's log.
    pub latest: u64,
}

impl super::RaftNode {
    /// The proposal of this process's registration `data`, stamped with the first index this
    /// process has not applied.
    pub(super) fn registration_proposal(&self, data: Vec<u8>) -> Message {
        let mut m = one_entry_message(MessageType::MsgPropose, data);
        m.from = self.id;
        m.index = self.applied + 1;
        m
    }

    /// Whether `m`, a proposal from a peer, is a registration this node, leading, must not
    /// append: sent by a process that had not applied every entry before its node's latest
    /// addition.
    pub(super) fn late_registration(&self, m: &Message) -> Option<Late> {
        if self.rn.raft.state != StateRole::Leader
            || m.get_msg_type() != MessageType::MsgPropose
            || m.index == 0
        {
            return None;
        }
        m.get_entries().iter().find_map(|entry| {
            let origin = registered(entry)?;
            let latest = self.latest_addition(origin)?;
            (m.index < latest).then_some(Late {
                origin,
                stamp: m.index,
                latest,
            })
        })
    }

    /// The index of the entry that last added `id` in this node's log, applied or not, if `id`
    /// is a member as of the log's end (and the index is known).
    fn latest_addition(&self, id: u64) -> Option<u64> {
        let applied = (addition_of(&self.members, id), self.members.contains(id));
        let raft = &self.rn.raft;
        let log = &raft.raft_log;
        let last = log.last_index();
        // `conf_in_log_to` follows the entries of each Ready; raft's own flag covers a change
        // proposed since, in the same batch of messages as the registration.
        let pending = self.conf_in_log_to > self.applied || raft.has_pending_conf();
        if !pending || self.applied >= last {
            return applied.0;
        }
        // Rare: a registration while a membership change may be in the log, not applied yet.
        addition_in_tail(log, self.applied + 1, last, applied, id)
    }
}

/// The most entries one read of the unapplied tail asks for. The tail is read a chunk at a
/// time: a node whose apply is far behind (a slow disk) copied all of it on the raft thread to
/// answer one registration, 104 bytes an entry (the payloads are shared, not copied): 100 MB
/// for a tail of a million entries. raft-rs's byte limit alone does not bound the copy:
/// `MemStorage::entries` copies the whole range asked for before it applies the limit, and
/// `RaftLog::slice` the whole unstable part.
const TAIL_CHUNK_ENTRIES: u64 = 1024;

/// The most bytes of entries one read of the unapplied tail returns (raft-rs's `max_size`):
/// what bounds a read of a storage that reads entries from disk, where `MemStorage` shares
/// them.
const TAIL_CHUNK_BYTES: u64 = 1 << 20;

/// `id`'s latest addition after the entries of `log` from `first` to `last`, both included,
/// given it before them as `(index, member)` ([`addition_after`]), read a chunk at a time
/// ([`TAIL_CHUNK_ENTRIES`], [`TAIL_CHUNK_BYTES`]) and followed chunk by chunk, so that the
/// answer is the one the whole tail at once gives. A tail that cannot be read says nothing,
/// and `before` decides.
fn addition_in_tail<T: Storage>(
    log: &RaftLog<T>,
    first: u64,
    last: u64,
    before: (Option<u64>, bool),
    id: u64,
) -> Option<u64> {
    let mut now = before;
    let mut next = first;
    while next <= last {
        let high = next.saturating_add(TAIL_CHUNK_ENTRIES).min(last + 1);
        let chunk = log
            .slice(
                next,
                high,
                TAIL_CHUNK_BYTES,
                GetEntriesContext::empty(false),
            )
            .unwrap_or_default();
        // raft returns at least one entry of a range it can read, from its first index on;
        // anything else is a tail that cannot be read.
        let Some(end) = chunk.last().map(|e| e.index).filter(|&end| end >= next) else {
            return before.0;
        };
        now = addition_after(now, id, &chunk);
        next = end + 1;
    }
    now.0
}

/// The index of the entry that added `id` to `members`, if it is a member and the index is
/// known (a snapshot of a build before the addition indexes has none).
fn addition_of(members: &Members, id: u64) -> Option<u64> {
    members
        .contains(id)
        .then(|| members.added.get(&id).copied())
        .flatten()
}

/// `id`'s latest addition after `entries`, in log order, and whether it is a member then,
/// given both before them as `(index, member)`: an addition of an id that is a member moves
/// nothing (as `Members::add`), a removal leaves none.
fn addition_after(before: (Option<u64>, bool), id: u64, entries: &[Entry]) -> (Option<u64>, bool) {
    let (mut latest, mut member) = before;
    for entry in entries {
        if entry.get_entry_type() == EntryType::EntryNormal {
            continue;
        }
        // One that cannot be decoded is skipped by every node alike (`apply_conf_change`).
        let Ok(cc) = decode_conf_change(entry) else {
            continue;
        };
        for change in cc.get_changes().iter().filter(|c| c.node_id == id) {
            match change.get_change_type() {
                ConfChangeType::AddNode | ConfChangeType::AddLearnerNode if !member => {
                    latest = Some(entry.index);
                    member = true;
                }
                ConfChangeType::AddNode | ConfChangeType::AddLearnerNode => {}
                ConfChangeType::RemoveNode => {
                    latest = None;
                    member = false;
                }
            }
        }
    }
    (latest, member)
}

#[cfg(test)]
mod tests {
    use protobuf::Message as _;
    use raft::eraftpb::{ConfChangeSingle, ConfChangeV2};

    use super::*;
    use crate::config::Config;
    use crate::proposal::encode_register;

    /// A registration says how far its process had applied, whatever it knows of its node's
    /// addition: one that applied nothing yet (started with `--join`, before it applies its
    /// own addition) says 1; one whose members came from a snapshot of a build before
    /// 2026-12-05, which knows no addition's index, says its applied index plus one, as does
    /// one that knows it. The stamp of the addition's index said 0 for the first two, which a
    /// leader appended however late (review 121, L1).
    #[tokio::test]
    async fn a_registration_says_how_far_its_process_had_applied() {
        let dir = tempfile::TempDir::new().expect("temp dir");
        let config = Config {
            id: 3,
            cluster: (1..=3).map(|i| format!("http://127.0.0.1:{i}")).collect(),
            join: true,
            data_dir: dir.path().to_path_buf(),
            ..Config::default()
        };
        let mut node = super::super::driven_by_hand(&config);
        let stamp = |node: &super::super::RaftNode| {
            node.registration_proposal(encode_register(3, 0xBEEF)).index
        };
        assert_eq!((node.applied, stamp(&node)), (0, 1), "a joining process");

        let mut members = Members::default();
        for id in 1..=3 {
            members.add(id, format!("http://127.0.0.1:{id}"), id);
        }
        let mut restored = members.clone();
        // As a snapshot of a build before 2026-12-05 loads (`kvstore::codec`).
        restored.added.clear();
        node.set_members(restored);
        node.applied = 7;
        assert_eq!(stamp(&node), 8, "members from an older snapshot");
        node.set_members(members);
        assert_eq!(stamp(&node), 8, "its addition's index known (3)");
    }

    /// The entry at `index` that makes `change` of node `id`.
    fn conf_change(index: u64, change: ConfChangeType, id: u64) -> Entry {
        let mut single = ConfChangeSingle {
            node_id: id,
            ..Default::default()
        };
        single.set_change_type(change);
        let mut cc = ConfChangeV2::default();
        cc.mut_changes().push(single);
        let mut e = Entry {
            index,
            data: cc.write_to_bytes().expect("encodes into memory").into(),
            ..Default::default()
        };
        e.set_entry_type(EntryType::EntryConfChangeV2);
        e
    }

    /// The latest addition follows the log's tail: a removal and an addition back move it to
    /// the addition; a removal at the end leaves none; an addition of a member moves nothing;
    /// changes of other ids and undecodable ones count for nothing.
    #[test]
    fn the_latest_addition_follows_removals_and_additions_in_the_tail() {
        let remove = |index| conf_change(index, ConfChangeType::RemoveNode, 3);
        let add = |index| conf_change(index, ConfChangeType::AddNode, 3);
        let member = (Some(3), true);
        assert_eq!(addition_after(member, 3, &[]), member);
        assert_eq!(
            addition_after(member, 3, &[remove(8), add(9)]),
            (Some(9), true)
        );
        assert_eq!(addition_after(member, 3, &[remove(8)]), (None, false));
        assert_eq!(
            addition_after(member, 3, &[add(8)]),
            member,
            "already a member"
        );
        assert_eq!(addition_after((None, false), 3, &[add(8)]), (Some(8), true));
        let learner = conf_change(8, ConfChangeType::AddLearnerNode, 3);
        assert_eq!(
            addition_after((None, false), 3, &[learner]),
            (Some(8), true)
        );
        let other = conf_change(8, ConfChangeType::RemoveNode, 2);
        let mut garbage = add(9);
        garbage.data = vec![0xff; 3].into();
        assert_eq!(addition_after(member, 3, &[other, garbage]), member);
    }

    /// A `MemStorage` that remembers the most entries one read asked it for.
    #[derive(Clone, Default)]
    struct Widest(
        raft::storage::MemStorage,
        std::sync::Arc<std::sync::atomic::AtomicU64>,
    );

    impl Storage for Widest {
        fn initial_state(&self) -> raft::Result<raft::RaftState> {
            self.0.initial_state()
        }

        fn entries(
            &self,
            low: u64,
            high: u64,
            max_size: impl Into<Option<u64>>,
            context: GetEntriesContext,
        ) -> raft::Result<Vec<Entry>> {
            self.1
                .fetch_max(high - low, std::sync::atomic::Ordering::Relaxed);
            self.0.entries(low, high, max_size, context)
        }

        fn term(&self, idx: u64) -> raft::Result<u64> {
            self.0.term(idx)
        }

        fn first_index(&self) -> raft::Result<u64> {
            self.0.first_index()
        }

        fn last_index(&self) -> raft::Result<u64> {
            self.0.last_index()
        }

        fn snapshot(&self, request_index: u64, to: u64) -> raft::Result<raft::eraftpb::Snapshot> {
            self.0.snapshot(request_index, to)
        }
    }

    /// A tail longer than one read, in bytes and in entries, is followed to its end, read a
    /// chunk at a time: node 3's removal and its addition back lie past the first chunk (the
    /// addition in raft's unstable part), and the answer at every end of the tail is the one
    /// the whole tail read at once gives, as before the tail was read in chunks; no read asks
    /// the storage for more than a chunk's entries (it copies all it is asked for). A tail
    /// that cannot be read (compacted) leaves the answer as it was before it.
    #[test]
    fn a_tail_read_in_chunks_gives_the_answer_of_the_whole_tail() {
        let widest = Widest::default();
        let store = widest.0.clone();
        let normal = |index: u64, bytes: usize| Entry {
            index,
            term: 1,
            data: vec![7u8; bytes].into(),
            ..Default::default()
        };
        // 1-10 applied; the tail from 11: two entries of 600 KiB (the first read stops at
        // one), then enough small ones for more than one read's entries.
        let mut stable: Vec<Entry> = (1..=10).map(|i| normal(i, 8)).collect();
        stable.extend((11..=12).map(|i| normal(i, 600 << 10)));
        stable.extend((13..=1999).map(|i| normal(i, 8)));
        let change = |index, change| Entry {
            term: 1,
            ..conf_change(index, change, 3)
        };
        stable[1499] = change(1500, ConfChangeType::RemoveNode);
        store.wl().append(&stable).expect("contiguous from index 1");
        let logger = slog::Logger::root(slog::Discard, slog::o!());
        let mut log = RaftLog::new(widest.clone(), logger);
        let mut unstable: Vec<Entry> = (2000..=2700).map(|i| normal(i, 8)).collect();
        // An addition back, then one of a member, which moves nothing.
        unstable[500] = change(2500, ConfChangeType::AddNode);
        unstable[600] = change(2600, ConfChangeType::AddNode);
        log.append(&unstable);

        let ctx = || GetEntriesContext::empty(false);
        let first_read = log
            .slice(11, 2701, TAIL_CHUNK_BYTES, ctx())
            .expect("readable");
        assert_eq!(first_read.len(), 1, "the byte limit cuts the first read");
        let tail = log.last_index() - 10;
        assert!(
            tail > TAIL_CHUNK_ENTRIES,
            "{tail}: more than one read asks for"
        );
        let before = (Some(5), true);
        for (last, expected) in [
            (1499, Some(5)),
            (1500, None),
            (2499, None),
            (2500, Some(2500)),
            (2700, Some(2500)),
        ] {
            let whole = log.slice(11, last + 1, None, ctx()).expect("readable");
            assert_eq!(addition_after(before, 3, &whole).0, expected, "at {last}");
            widest.1.store(0, std::sync::atomic::Ordering::Relaxed);
            assert_eq!(
                addition_in_tail(&log, 11, last, before, 3),
                expected,
                "read in chunks, the tail to {last}"
            );
            let asked = widest.1.load(std::sync::atomic::Ordering::Relaxed);
            assert!(
                asked <= TAIL_CHUNK_ENTRIES,
                "one read asked for {asked} entries"
            );
        }

        store.wl().compact(20).expect("compacts applied entries");
        assert_eq!(addition_in_tail(&log, 11, 2700, before, 3), Some(5));
    }
}
