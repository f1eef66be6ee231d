//! The bytes of the log in memory, beside its count of entries. raft's log lives in memory
//! from one compaction to the next, and compaction follows snapshots, which come every
//! `--snapshot-count` entries: with 100-byte values that is a megabyte or two, with 64 KiB
//! values 10,000 entries are 640 MiB, and as many again stay behind each snapshot for slow
//! followers. `--snapshot-log-bytes` bounds both in bytes: a snapshot is also taken once the
//! entries applied since the last one carry that many bytes (or as many as the last snapshot
//! this node wrote, if that is more, so that a big state is not rewritten for every few
//! megabytes of writes: a snapshot taken for bytes writes no more than the entries it covers;
//! after a restart or a leader's snapshot, the size of the snapshot loaded or installed counts
//! the same way), and no more than that many bytes of entries stay behind a snapshot.

use std::collections::VecDeque;

use raft::eraftpb::Entry;

pub(super) struct LogBytes {
    /// The flag; 0 counts entries only, as the original does.
    budget: u64,
    /// Bytes of application data in the newest snapshot this node wrote, loaded at start or
    /// installed from the leader.
    last_snapshot: u64,
    /// Bytes of the entries applied since the newest snapshot was asked for.
    since_snapshot: u64,
    /// Index of the entry `sizes[0]` describes.
    first: u64,
    /// Bytes of each applied entry still in the log, from `first` on. (The log holds nothing
    /// applied before this process started or before a snapshot from the leader: a gap here is
    /// not expected, and only makes the count start over.)
    sizes: VecDeque<u64>,
}

impl LogBytes {
    /// No entry known yet; the next one applied is `applied + 1`, and the snapshot the node
    /// started from (if any) holds `snapshot_bytes` of data.
    pub(super) fn new(budget: u64, applied: u64, snapshot_bytes: u64) -> LogBytes {
        LogBytes {
            budget,
            last_snapshot: snapshot_bytes,
            since_snapshot: 0,
            first: applied + 1,
            sizes: VecDeque::new(),
        }
    }

    /// Counts entries handed to the state machine, in log order.
    pub(super) fn applied(&mut self, entries: &[Entry]) {
        if self.budget == 0 {
            return;
        }
        for entry in entries {
            if entry.index != self.first + self.sizes.len() as u64 {
                // Not the next one (a snapshot from the leader came between): start over.
                self.sizes.clear();
                self.first = entry.index;
            }
            let bytes = (entry.data.len() + entry.context.len()) as u64;
            self.sizes.push_back(bytes);
            self.since_snapshot += bytes;
        }
    }

    /// Whether the entries applied since the last snapshot call for another.
    pub(super) fn due(&self) -> bool {
        self.budget > 0 && self.since_snapshot >= self.budget.max(self.last_snapshot)
    }

    /// A snapshot of everything applied was asked for: counting starts again.
    pub(super) fn snapshot_asked(&mut self) {
        self.since_snapshot = 0;
    }

    /// This node's snapshot was saved, `bytes` of application data.
    pub(super) fn snapshot_saved(&mut self, bytes: u64) {
        self.last_snapshot = bytes;
    }

    /// The leader's snapshot at `index`, `bytes` of data, replaced the state: nothing before
    /// it is applied here.
    pub(super) fn snapshot_installed(&mut self, index: u64, bytes: u64) {
        self.sizes.clear();
        self.first = index + 1;
        self.since_snapshot = 0;
        self.last_snapshot = bytes;
    }

    /// The first index worth keeping behind a snapshot at `index` (at most `index`: the
    /// snapshot's own entry stays, raft asks for its term), so that the entries kept weigh no
    /// more than the budget; 0 when the budget does not limit them (none, or the entries whose
    /// size is known all fit in it).
    pub(super) fn keep_from(&self, index: u64) -> u64 {
        if self.budget == 0 || index < self.first {
            return 0;
        }
        let known = (index - self.first + 1).min(self.sizes.len() as u64);
        let mut kept = 0u64;
        for offset in (0..known).rev() {
            kept += self.sizes[offset as usize];
            if kept > self.budget {
                return (self.first + offset + 1).min(index);
            }
        }
        0
    }

    /// The log was compacted: entries before `to` are gone from it.
    pub(super) fn compacted(&mut self, to: u64) {
        while self.first < to && self.sizes.pop_front().is_some() {
            self.first += 1;
        }
        self.first = self.first.max(to);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn entries(from: u64, sizes: &[usize]) -> Vec<Entry> {
        sizes
            .iter()
            .zip(from..)
            .map(|(&n, index)| Entry {
                index,
                data: vec![7u8; n].into(),
                ..Default::default()
            })
            .collect()
    }

    #[test]
    fn a_snapshot_is_due_once_the_entries_weigh_the_budget_or_the_last_snapshot() {
        let mut log = LogBytes::new(100, 0, 0);
        log.applied(&entries(1, &[40, 40]));
        assert!(!log.due(), "80 bytes of a 100-byte budget");
        log.applied(&entries(3, &[20]));
        assert!(log.due(), "100 bytes");
        log.snapshot_asked();
        log.snapshot_saved(300);
        log.applied(&entries(4, &[100, 100]));
        assert!(
            !log.due(),
            "200 bytes after a 300-byte snapshot: writing it again would cost more than the log"
        );
        log.applied(&entries(6, &[100]));
        assert!(log.due());
    }

    /// Found by a review: a node that restarted, or took the leader's snapshot, counted only
    /// the budget until it wrote a snapshot of its own, so a big state was written once more
    /// than needed after every restart or install.
    #[test]
    fn a_snapshot_loaded_or_installed_counts_like_one_written() {
        let mut log = LogBytes::new(100, 10, 300);
        log.applied(&entries(11, &[100, 100]));
        assert!(
            !log.due(),
            "200 bytes after starting from a 300-byte snapshot"
        );
        log.applied(&entries(13, &[100]));
        assert!(log.due());
        log.snapshot_installed(50, 500);
        log.applied(&entries(51, &[200, 200]));
        assert!(!log.due(), "400 bytes after installing a 500-byte snapshot");
        log.applied(&entries(53, &[100]));
        assert!(log.due());
    }

    #[test]
    fn no_budget_never_calls_for_a_snapshot_or_limits_what_is_kept() {
        let mut log = LogBytes::new(0, 0, 0);
        log.applied(&entries(1, &[1 << 20; 4]));
        assert!(!log.due());
        assert_eq!(log.keep_from(4), 0);
    }

    #[test]
    fn what_is_kept_behind_a_snapshot_weighs_at_most_the_budget() {
        let mut log = LogBytes::new(100, 10, 0);
        log.applied(&entries(11, &[50, 30, 30, 30, 10]));
        // Behind a snapshot at 15: 10 + 30 + 30 = 70 fit, the next 30 would make 100 (fits),
        // the 50 before it 150 (does not).
        assert_eq!(log.keep_from(15), 12);
        // Behind one at 14: 30 + 30 + 30 = 90 fit, with the 50 140.
        assert_eq!(log.keep_from(14), 12);
        // Behind one at 12: everything known fits; entries before 11 are not known.
        assert_eq!(log.keep_from(12), 0);
        log.compacted(12);
        assert_eq!(log.first, 12);
        assert_eq!(log.keep_from(15), 0, "100 bytes from 12 on: all fit");
    }

    #[test]
    fn the_snapshots_own_entry_stays_however_big() {
        let mut log = LogBytes::new(100, 0, 0);
        log.applied(&entries(1, &[10, 500]));
        assert_eq!(log.keep_from(2), 2);
    }

    #[test]
    fn a_gap_in_the_applied_entries_starts_the_count_over() {
        let mut log = LogBytes::new(100, 0, 0);
        log.applied(&entries(1, &[60, 60]));
        log.snapshot_installed(50, 0);
        assert!(!log.due(), "the installed snapshot reset what was counted");
        log.applied(&entries(51, &[60]));
        assert_eq!(log.first, 51);
        assert_eq!(log.keep_from(51), 0);
        log.applied(&entries(60, &[70]));
        assert_eq!(
            log.first, 60,
            "entries 52-59 never came: their weight is unknown"
        );
        assert_eq!(log.keep_from(60), 0);
    }
}
