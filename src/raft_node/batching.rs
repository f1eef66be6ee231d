//! How a leader batches proposals: under load it gathers them into bigger batches, so each
//! WAL sync (on this node and on every follower) carries more entries ([`hold_batch`]), and
//! cuts a batch at a WAL page boundary when only a few proposals spill past it
//! ([`whole_pages`]): every node's WAL then syncs fuller pages, fewer times.

use std::time::Duration;

/// Longest a leader holds a batch back while earlier entries are in flight.
const MAX_HOLD: Duration = Duration::from_millis(2);
/// Longest a leader with nothing in flight waits for a batch to fill up to half the size of
/// the one before it (a burst of clients answered at once comes back within a fraction of a
/// millisecond).
const LINGER: Duration = Duration::from_micros(300);

/// Bytes of WAL page a proposal's entry takes beside its data (run framing), and what each
/// sync adds (the run's header, hard states).
const ENTRY_FRAMING: usize = 6;
const SYNC_FRAMING: usize = 96;
/// The page the WAL aligns its synced writes to.
const PAGE: usize = crate::wal::PAGE_SIZE as usize;

/// How many of the proposals (by data size) to propose now: all of them, unless that would
/// spill a little past a page boundary, in which case only the whole pages' worth. Each WAL
/// sync writes whole pages; the few left over go with the next batch instead of costing a
/// page of their own, on this node and on every follower.
pub(super) fn whole_pages(sizes: impl Iterator<Item = usize>) -> usize {
    let mut bytes = SYNC_FRAMING;
    let mut fit = 0; // proposals within the last page boundary passed
    let mut n = 0;
    for size in sizes {
        let before = bytes;
        bytes += size + ENTRY_FRAMING;
        if bytes / PAGE > before / PAGE {
            fit = n;
        }
        n += 1;
    }
    // Spilled less than half a page past the last boundary (`fit > 0`: one was passed): keep
    // the spill back.
    if fit > 0 && bytes % PAGE < PAGE / 2 {
        fit
    } else {
        n
    }
}

/// How long a leader holds back a batch of `waiting` proposals that has waited `waited` so
/// far (`None`: propose it now):
/// - while `uncommitted` entries are in its log, until the batch is as big as the `in_flight`
///   proposals it made that are not applied yet, for at most [`MAX_HOLD`]: the batch grows
///   while the one before it replicates;
/// - with nothing in flight, until it is half the size of the batch before (`last`), for at
///   most [`LINGER`]: the clients answered together come back together.
///
/// A lone client is never held: nothing is in flight when it sends, and its last batch was 1.
/// Followers never hold: they forward to the leader, and cannot see its log.
pub(super) fn hold_batch(
    leading: bool,
    uncommitted: u64,
    waiting: usize,
    in_flight: usize,
    last: usize,
    waited: Duration,
) -> Option<Duration> {
    let (target, limit) = if uncommitted > 0 {
        (in_flight, MAX_HOLD)
    } else {
        (last / 2, LINGER)
    };
    (leading && waiting < target && waited < limit).then_some(limit)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_batch_is_held_only_while_a_bigger_one_is_likely_and_not_for_long() {
        let short = Duration::from_micros(100);
        // A lone client: nothing uncommitted, nothing in flight, a last batch of one.
        assert_eq!(hold_batch(true, 0, 1, 0, 1, short), None);
        // Many clients: a small batch waits behind a bigger one still replicating...
        assert_eq!(hold_batch(true, 30, 3, 30, 30, short), Some(MAX_HOLD));
        // ...until it is as big as what is in flight, or has waited MAX_HOLD.
        assert_eq!(hold_batch(true, 30, 30, 30, 30, short), None);
        assert_eq!(hold_batch(true, 30, 3, 30, 30, MAX_HOLD), None);
        // Nothing in flight after a big batch: linger for half as many...
        assert_eq!(hold_batch(true, 0, 3, 30, 30, short), Some(LINGER));
        assert_eq!(hold_batch(true, 0, 15, 30, 30, short), None);
        // ...but not for long.
        assert_eq!(hold_batch(true, 0, 3, 30, 30, LINGER), None);
        // A follower forwards at once: it cannot see the leader's log.
        assert_eq!(hold_batch(false, 30, 3, 30, 30, short), None);
        assert_eq!(hold_batch(false, 0, 3, 30, 30, short), None);
    }

    #[test]
    fn a_batch_spilling_a_little_past_a_page_keeps_the_spill_back() {
        let per_page = (PAGE - SYNC_FRAMING) / (100 + ENTRY_FRAMING);
        // Within a page, or far past one: everything goes.
        assert_eq!(whole_pages(std::iter::repeat_n(100, 5)), 5);
        assert_eq!(whole_pages(std::iter::repeat_n(100, per_page)), per_page);
        assert_eq!(
            whole_pages(std::iter::repeat_n(100, per_page * 2 - 3)),
            per_page * 2 - 3
        );
        // A few past the first page: those few wait.
        assert_eq!(
            whole_pages(std::iter::repeat_n(100, per_page + 3)),
            per_page
        );
        // One entry bigger than a page has no boundary to stop at.
        assert_eq!(whole_pages([10_000].into_iter()), 1);
        assert_eq!(whole_pages(std::iter::empty()), 0);
    }
}
