//! Switches that take a fix out again, so that the simulator (tests/sim) can show it finds
//! the bug each fix is for. They exist only in a build with the `sim-mutations` feature, which
//! nothing but the simulator's mutation tests turns on; in every other build
//! [`active`] is the constant `false` and the compiler drops the buggy branch.

/// A fix taken out.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
#[repr(u8)]
pub enum Mutation {
    /// A follower takes the end of an append (`index + entries`) for the leader's commit
    /// index: a node added back under its old id replays its own removal and exits.
    CappedLeaderCommit = 1,
    /// ReadIndex contexts are a bare counter from 0: they repeat across nodes and restarts.
    BareReadContext = 2,
    /// The WAL calls any valid record after a bad one proof of corruption: a power loss's
    /// torn tail stops the node from starting.
    AnyRecordAfterDamageIsCorruption = 3,
    /// Every proposal applies, copies too: no exactly-once table.
    NoExactlyOnce = 4,
    /// A follower acknowledges an append before its own fsync.
    AckBeforeSync = 5,
    /// A node keeps the session its own removal ended: added back while it runs, it
    /// proposes under it, and every node skips its writes.
    KeepSessionOnRemoval = 6,
    /// A PUT withdrawn in the last part of its wait is answered "it will not happen" at once,
    /// with no fence to make sure no copy in flight takes effect.
    WithdrawnWithoutFence = 7,
    /// A process added back while it ran keeps a session that began before its node's latest
    /// addition (its registration was in flight when the node was removed, and landed before
    /// the node was added back) instead of registering anew: no member counts it as running,
    /// and a start of its id on an empty data dir would be admitted.
    KeepSessionOlderThanAddition = 8,
    /// A process renewing such a session keeps its new one when a snapshot shows that it,
    /// too, began before a later re-addition (the renewal's registration was in flight when
    /// the node was removed a second time, and landed before it was added back again): the
    /// same as [`Mutation::KeepSessionOlderThanAddition`], one renewal later.
    KeepRenewalOlderThanReaddition = 9,
    /// A member answers a node that asks to join as if it had no session for its id: a voter
    /// whose data dir was wiped, started with `--join` without being removed and added back,
    /// is admitted although it lost the votes it cast and the entries it acknowledged.
    AdmitWipedVoter = 10,
    /// A node admitted through the join path starts from nothing its admitters had seen: in
    /// its own term, and granting its vote as an empty log does, to any candidate. A member
    /// removed while cut off, still running with the voters it had (the node's id among them,
    /// removed and added back), leads again with that one vote, on a log that lacks its own
    /// removal.
    NoJoinFloor = 11,
    /// A fence carries the newest withdrawn request + 1 instead of the floor: it passes a
    /// request still pending below it (one with more of its wait left), whose copies are then
    /// skipped as if it had taken effect, and its client hears 204 for a write never applied.
    FenceAtNewestWithdrawn = 12,
    /// A membership change that went out is answered at its deadline as never proposed, "it
    /// will not happen", instead of "it may still happen": a copy in flight can still commit.
    SentChangeNotProposed = 13,
}

#[cfg(feature = "sim-mutations")]
static ACTIVE: std::sync::atomic::AtomicU8 = std::sync::atomic::AtomicU8::new(0);

/// Takes `mutation`'s fix out for the whole process (`None`: every fix in).
#[cfg(feature = "sim-mutations")]
pub fn set(mutation: Option<Mutation>) {
    ACTIVE.store(
        mutation.map_or(0, |m| m as u8),
        std::sync::atomic::Ordering::SeqCst,
    );
}

/// Whether `mutation`'s fix is taken out.
#[inline(always)]
pub fn active(mutation: Mutation) -> bool {
    #[cfg(feature = "sim-mutations")]
    {
        ACTIVE.load(std::sync::atomic::Ordering::Relaxed) == mutation as u8
    }
    #[cfg(not(feature = "sim-mutations"))]
    {
        let _ = mutation;
        false
    }
}
