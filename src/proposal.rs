//! What a proposal carries through the log, and the table that makes each take effect once.
//!
//! A node proposes again whatever a leader change may have lost (a proposal forwarded to a
//! leader that died, an entry a new leader overwrote), so the same request can reach the log
//! twice. Applying it twice would not be linearizable: a `PUT` applied again after another
//! client's later write would undo that write. This is the client-session scheme of Ongaro's
//! Raft dissertation, §6.3, with the node as the client:
//!
//! - A node process first *registers* a session: an entry carrying its id and a random
//!   nonce. The session's id is the log index of that entry, so sessions are unique across
//!   nodes and restarts, and a later session of the same node has a higher id.
//! - Every proposal then carries a [`ProposalId`] (origin node, session, sequence number) and
//!   the origin's *floor*: its lowest sequence number still unanswered. Every proposal below
//!   the floor has been answered or given up, and its origin never proposes it again. An
//!   origin that gives up a request it had sent proposes a *fence*: the floor alone (its
//!   next proposal would carry the floor too, but there may be none). Once either applies,
//!   no copy of the request still in flight can take effect, so the origin can tell its
//!   client for certain.
//!
//! Builds before this table read each of these entries as an undecodable command and skip
//! it: every node of a cluster must run a build that knows them (fences came last, on
//! 2026-12-05).
//! - The [`Sessions`] table, part of the replicated state (in log order on every node, in
//!   every snapshot), keeps per origin node only its newest session: the floor and the
//!   sequence numbers applied at or above it. An entry takes effect only if its session is
//!   the origin's current one, its number is not below the floor and has not been applied.
//!   Anything else is a copy of something already applied or given up: skipped, on every
//!   node alike.
//!
//! The table is bounded: one session per node id (a removed node's is dropped), and per
//! session the numbers applied above its floor, kept as ranges (numbers are handed out in
//! order, so a session's applied numbers are nearly always one range).
//!
//! Layout of `Entry.data` for a normal entry (varints are LEB128, see [`crate::varint`]):
//!
//! ```text
//!   0xF0 | origin | session | seq | seq - floor | command      a proposal
//!   0xF1 | origin | nonce                                      a session registration
//!   0xF2 | origin | session | floor                            a fence: the floor alone
//!   anything else                                             a command with no identity
//! ```
//!
//! Commands with no identity are what older versions wrote (a bincode `Command`, whose first
//! byte is its variant number, far below 0xF0); they apply as they are. A membership change
//! carries the same identity in `Entry.context`, behind a four-byte magic number (older
//! versions put 16 bytes of their own there).

use std::collections::{BTreeMap, BTreeSet};

use serde::{Deserialize, Serialize};

use crate::varint;

/// First byte of an entry's data that carries a [`ProposalId`].
const TAG_PROPOSAL: u8 = 0xF0;
/// First byte of a session registration.
const TAG_REGISTER: u8 = 0xF1;
/// First byte of a fence.
const TAG_FENCE: u8 = 0xF2;
/// First bytes of a membership change's `Entry.context` that carries a [`ProposalId`].
const CONTEXT_MAGIC: [u8; 4] = [0xF0, b'r', b'x', b'1'];

/// Which request an entry came from: unique across nodes, processes and time.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct ProposalId {
    /// The node that took the client's request.
    pub origin: u64,
    /// That node process's session: the index of its registration entry.
    pub session: u64,
    /// The request's number within the session, from 1.
    pub seq: u64,
}

/// An entry's data, decoded.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Payload<'a> {
    /// A command with an identity.
    Proposal {
        /// Whose request.
        id: ProposalId,
        /// The origin's lowest unanswered sequence number when it proposed this.
        floor: u64,
        /// The command (a [`crate::kvstore::Command`]).
        command: &'a [u8],
    },
    /// A node process starts a session.
    Register {
        /// The node.
        origin: u64,
        /// Its process's random nonce.
        nonce: u64,
    },
    /// An origin's floor alone: numbers below it are given up (see the module documentation).
    Fence {
        /// The node.
        origin: u64,
        /// Its session.
        session: u64,
        /// Its lowest sequence number not given up.
        floor: u64,
    },
    /// A command with no identity (written by an older version): applies as it is.
    Plain(&'a [u8]),
}

/// An entry's data or context that cannot be decoded.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("malformed proposal header: {0}")]
pub struct MalformedHeader(&'static str);

/// `Entry.data` for `command`, proposed as `id` with the origin's current `floor`.
pub fn encode_proposal(id: ProposalId, floor: u64, command: &[u8]) -> Vec<u8> {
    let mut data = Vec::with_capacity(1 + 4 * varint::MAX_LEN + command.len());
    data.push(TAG_PROPOSAL);
    put_id(&mut data, id, floor);
    data.extend_from_slice(command);
    data
}

/// Whether `data` is a session registration's (or its start), told by its first byte alone.
pub fn is_registration(data: &[u8]) -> bool {
    data.first() == Some(&TAG_REGISTER)
}

/// `Entry.data` of a session registration.
pub fn encode_register(origin: u64, nonce: u64) -> Vec<u8> {
    let mut data = Vec::with_capacity(1 + 2 * varint::MAX_LEN);
    data.push(TAG_REGISTER);
    varint::put(&mut data, origin);
    varint::put(&mut data, nonce);
    data
}

/// `Entry.data` of a fence: `origin`'s session `session` gives up every number below `floor`.
pub fn encode_fence(origin: u64, session: u64, floor: u64) -> Vec<u8> {
    let mut data = Vec::with_capacity(1 + 3 * varint::MAX_LEN);
    data.push(TAG_FENCE);
    varint::put(&mut data, origin);
    varint::put(&mut data, session);
    varint::put(&mut data, floor);
    data
}

/// Decodes a normal entry's data.
pub fn decode(data: &[u8]) -> Result<Payload<'_>, MalformedHeader> {
    let mut p = data;
    match p.first() {
        Some(&TAG_PROPOSAL) => {
            p = &p[1..];
            let (id, floor) = take_id(&mut p)?;
            Ok(Payload::Proposal {
                id,
                floor,
                command: p,
            })
        }
        Some(&TAG_REGISTER) => {
            p = &p[1..];
            let origin = varint::take(&mut p).map_err(MalformedHeader)?;
            let nonce = varint::take(&mut p).map_err(MalformedHeader)?;
            if !p.is_empty() {
                return Err(MalformedHeader("bytes after a registration"));
            }
            Ok(Payload::Register { origin, nonce })
        }
        Some(&TAG_FENCE) => {
            p = &p[1..];
            let mut next = || varint::take(&mut p).map_err(MalformedHeader);
            let (origin, session, floor) = (next()?, next()?, next()?);
            if !p.is_empty() {
                return Err(MalformedHeader("bytes after a fence"));
            }
            Ok(Payload::Fence {
                origin,
                session,
                floor,
            })
        }
        _ => Ok(Payload::Plain(data)),
    }
}

/// `Entry.context` of a membership change proposed as `id`, checked against the membership
/// whose voters are `voters`: every node applies the change only if the voters are still
/// those when it comes to apply it (see [`decode_context`]).
pub fn encode_context(id: ProposalId, floor: u64, voters: &[u64]) -> Vec<u8> {
    let mut ctx = Vec::with_capacity(CONTEXT_MAGIC.len() + (5 + voters.len()) * varint::MAX_LEN);
    ctx.extend_from_slice(&CONTEXT_MAGIC);
    put_id(&mut ctx, id, floor);
    varint::put(&mut ctx, voters.len() as u64);
    for v in voters {
        varint::put(&mut ctx, *v);
    }
    ctx
}

/// What a membership change's `Entry.context` says: its identity, its proposer's floor, and
/// the voters it was checked against (`None` from versions that did not record them).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ChangeContext {
    /// The change's identity.
    pub id: ProposalId,
    /// The proposer's floor.
    pub floor: u64,
    /// The voters, in ascending order, of the membership the change was checked against.
    pub voters: Option<Vec<u64>>,
}

/// The identity in a membership change's `Entry.context`; `None` for a change with none (the
/// bootstrap entries, raft's own leave-joint entry, and changes written by older versions).
pub fn decode_context(ctx: &[u8]) -> Option<ChangeContext> {
    let mut p = ctx.strip_prefix(&CONTEXT_MAGIC)?;
    let (id, floor) = take_id(&mut p).ok()?;
    let voters = if p.is_empty() {
        None
    } else {
        let n = varint::take(&mut p).ok()?;
        // Each voter takes at least a byte: a count beyond the bytes left is damage.
        if n > p.len() as u64 {
            return None;
        }
        let voters = (0..n)
            .map(|_| varint::take(&mut p).ok())
            .collect::<Option<Vec<u64>>>()?;
        Some(voters)
    };
    p.is_empty().then_some(ChangeContext { id, floor, voters })
}

fn put_id(buf: &mut Vec<u8>, id: ProposalId, floor: u64) {
    varint::put(buf, id.origin);
    varint::put(buf, id.session);
    varint::put(buf, id.seq);
    // The floor is at most the number itself, and usually close below it.
    varint::put(buf, id.seq - floor.min(id.seq));
}

fn take_id(p: &mut &[u8]) -> Result<(ProposalId, u64), MalformedHeader> {
    let mut next = || varint::take(p).map_err(MalformedHeader);
    let id = ProposalId {
        origin: next()?,
        session: next()?,
        seq: next()?,
    };
    let below = next()?;
    let floor = id
        .seq
        .checked_sub(below)
        .ok_or(MalformedHeader("floor below zero"))?;
    Ok((id, floor))
}

/// Where a request of an origin's current session stands in the table.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Fate {
    /// Not applied, and its origin's floor is not past it: a copy may still take effect.
    Open,
    /// Applied.
    Applied,
    /// Its origin's floor passed it: no copy will take effect from now on, and whether one
    /// did before is forgotten (or its session is not the current one).
    Closed,
}

/// What applying an entry with an identity comes to.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Verdict {
    /// First time: it takes effect.
    Apply,
    /// Applied before, or given up by its origin: skipped.
    Duplicate,
    /// Its session is not its origin's current one (the origin restarted, was removed, or
    /// never registered it): skipped.
    StaleSession,
}

/// The exactly-once table: per origin node, its current session. Part of the replicated
/// state; see the module documentation.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Sessions {
    by_origin: BTreeMap<u64, Session>,
    /// Membership changes that committed with [`Verdict::Apply`] but were not applied (they
    /// no longer held, see `raft_node/conf_change.rs`), while their origin may still be
    /// waiting to answer them: a node that learns of such a change from a snapshot must answer
    /// `409`, not `204`, and the members alone cannot tell (an identical change may have come
    /// first). Kept only at or above each origin's floor, in its current session: a handful
    /// at most. Not part of the bincode form of the table: the snapshot codec writes it after
    /// it, so that snapshots of older versions still load.
    #[serde(skip)]
    skipped_changes: BTreeSet<ProposalId>,
    /// For a table read from a snapshot that predates `skipped_changes`, per origin: its
    /// session then, and the number below which its changes settled in that snapshot may have
    /// been skipped unbeknownst to the table. Kept, and written to later snapshots, until the
    /// origin's floor passes that number or its session ends: then nothing of it is unknown.
    #[serde(skip)]
    skips_unknown: BTreeMap<u64, (u64, u64)>,
}

/// One node process's session.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
struct Session {
    /// The session's id: its registration's index.
    id: u64,
    /// The registering process's nonce: a registration proposed twice registers once.
    nonce: u64,
    /// Numbers below it are answered: never applied again.
    floor: u64,
    /// Numbers at or above the floor that were applied, as ranges `start..end`, keyed by start.
    applied: BTreeMap<u64, u64>,
}

impl Sessions {
    /// Applies a registration at `index`; returns the id of the session now in force for
    /// `origin` (a registration seen again keeps the first one's id).
    pub fn register(&mut self, origin: u64, nonce: u64, index: u64) -> u64 {
        match self.by_origin.get(&origin) {
            Some(s) if s.nonce == nonce => s.id,
            _ => {
                self.skipped_changes.retain(|c| c.origin != origin);
                self.skips_unknown.remove(&origin);
                self.by_origin.insert(
                    origin,
                    Session {
                        id: index,
                        nonce,
                        floor: 0,
                        applied: BTreeMap::new(),
                    },
                );
                index
            }
        }
    }

    /// Each origin with a session, and the session's id (its registration's index). A member
    /// is here once a process of it has run since it was last added (a removal forgets its
    /// session): what a joining node on an empty data dir is checked against.
    pub fn origins(&self) -> BTreeMap<u64, u64> {
        self.by_origin.iter().map(|(o, s)| (*o, s.id)).collect()
    }

    /// The id of `origin`'s current session registered with `nonce`, if it is the current one.
    pub fn session_of(&self, origin: u64, nonce: u64) -> Option<u64> {
        self.by_origin
            .get(&origin)
            .filter(|s| s.nonce == nonce)
            .map(|s| s.id)
    }

    /// Decides whether the entry `id` (proposed with `floor`) takes effect, and records it.
    pub fn admit(&mut self, id: ProposalId, floor: u64) -> Verdict {
        if crate::mutation::active(crate::mutation::Mutation::NoExactlyOnce) {
            return Verdict::Apply;
        }
        let Some(s) = self
            .by_origin
            .get_mut(&id.origin)
            .filter(|s| s.id == id.session)
        else {
            return Verdict::StaleSession;
        };
        lift_floor(
            s,
            id.origin,
            floor,
            &mut self.skipped_changes,
            &mut self.skips_unknown,
        );
        if id.seq < s.floor || contains(&s.applied, id.seq) {
            return Verdict::Duplicate;
        }
        insert(&mut s.applied, id.seq);
        Verdict::Apply
    }

    /// Applies a fence: `origin`'s session `session` gives up every number below `floor`
    /// (nothing, if that session is not its current one).
    pub fn raise_floor(&mut self, origin: u64, session: u64, floor: u64) {
        let Some(s) = self.by_origin.get_mut(&origin).filter(|s| s.id == session) else {
            return;
        };
        lift_floor(
            s,
            origin,
            floor,
            &mut self.skipped_changes,
            &mut self.skips_unknown,
        );
    }

    /// Where the request `id` stands.
    pub fn fate(&self, id: ProposalId) -> Fate {
        match self
            .by_origin
            .get(&id.origin)
            .filter(|s| s.id == id.session)
        {
            None => Fate::Closed,
            Some(s) if id.seq < s.floor => Fate::Closed,
            Some(s) if contains(&s.applied, id.seq) => Fate::Applied,
            Some(_) => Fate::Open,
        }
    }

    /// Whether the entry `id` has taken effect (or was given up by its origin).
    pub fn settled(&self, id: ProposalId) -> bool {
        self.by_origin
            .get(&id.origin)
            .filter(|s| s.id == id.session)
            .is_some_and(|s| id.seq < s.floor || contains(&s.applied, id.seq))
    }

    /// Drops a removed node's session: whatever it still has in flight is skipped.
    pub fn forget(&mut self, origin: u64) {
        self.by_origin.remove(&origin);
        self.skipped_changes.retain(|c| c.origin != origin);
        self.skips_unknown.remove(&origin);
    }

    /// Records that the membership change `id`, admitted with [`Verdict::Apply`], was not
    /// applied after all.
    pub fn note_skipped_change(&mut self, id: ProposalId) {
        let by_origin = &self.by_origin;
        let live = |c: &ProposalId| {
            by_origin
                .get(&c.origin)
                .is_some_and(|s| s.id == c.session && c.seq >= s.floor)
        };
        // Pruned here too: a registration that replaced a session leaves its skips behind.
        self.skipped_changes.retain(live);
        if live(&id) {
            self.skipped_changes.insert(id);
        }
    }

    /// Whether the settled membership change `id` was skipped rather than applied; `None` if
    /// the table cannot tell (it came from a snapshot too old to record skips, and `id` was
    /// settled before it).
    pub fn change_was_skipped(&self, id: ProposalId) -> Option<bool> {
        // A recorded skip is a fact even where the rest is unknown: a snapshot of 2026-12-03's
        // builds holds the skips it saw, but may have re-written a table that could not tell.
        if self.skipped_changes.contains(&id) {
            return Some(true);
        }
        let unknown = self
            .skips_unknown
            .get(&id.origin)
            .is_some_and(|&(session, below)| session == id.session && id.seq < below);
        (!unknown).then(|| self.skipped_changes.contains(&id))
    }

    /// The skipped changes held.
    pub fn skipped_changes(&self) -> impl Iterator<Item = ProposalId> + '_ {
        self.skipped_changes.iter().copied()
    }

    /// `(origin, session, below)` of each origin whose changes below `below` settled in a
    /// snapshot that could not tell whether they were skipped (see [`Sessions::with_skips`]).
    pub fn unknown_skips(&self) -> impl Iterator<Item = (u64, u64, u64)> + '_ {
        self.skips_unknown
            .iter()
            .map(|(&origin, &(session, below))| (origin, session, below))
    }

    /// The table as read from a snapshot, with what the snapshot says of skipped changes
    /// after it: the skips it recorded, and the `(origin, session, below)` ranges it could not
    /// tell. `unknown` is `None` for a snapshot that says nothing of what it could not tell
    /// (written before skips were recorded, or by the builds of 2026-12-03 that recorded them
    /// but could re-write an older table as if it knew): every change its sessions settled
    /// and did not record may have been skipped, for all it knows.
    pub fn with_skips(
        mut self,
        skipped: Vec<(u64, u64, u64)>,
        unknown: Option<Vec<(u64, u64, u64)>>,
    ) -> Sessions {
        let unknown = unknown.unwrap_or_else(|| {
            self.by_origin
                .iter()
                .filter_map(|(&origin, s)| {
                    let below = s.applied.values().copied().max().unwrap_or(0).max(s.floor);
                    (below > s.floor).then_some((origin, s.id, below))
                })
                .collect()
        });
        self.skipped_changes = skipped
            .into_iter()
            .map(|(origin, session, seq)| ProposalId {
                origin,
                session,
                seq,
            })
            .collect();
        self.skips_unknown = unknown
            .into_iter()
            .map(|(origin, session, below)| (origin, (session, below)))
            .collect();
        self
    }

    /// Sessions held, and ranges of applied numbers held across them: the table's size.
    pub fn size(&self) -> (usize, usize) {
        let ranges = self.by_origin.values().map(|s| s.applied.len()).sum();
        (self.by_origin.len(), ranges)
    }
}

fn contains(ranges: &BTreeMap<u64, u64>, n: u64) -> bool {
    ranges
        .range(..=n)
        .next_back()
        .is_some_and(|(_, &end)| n < end)
}

fn insert(ranges: &mut BTreeMap<u64, u64>, n: u64) {
    // Join the range ending at n, if any, and the one starting at n + 1, if any.
    let start = match ranges.range(..=n).next_back() {
        Some((&s, &end)) if end == n => s,
        _ => n,
    };
    let end = ranges.remove(&(n + 1)).unwrap_or(n + 1);
    ranges.insert(start, end);
}

/// Raises `origin`'s session `s` to `floor`, if that is above its own, and drops what the side
/// tables of [`Sessions`] keep below it. A free function over the fields, so that
/// [`Sessions::admit`] raises the floor of the session it has already looked up.
fn lift_floor(
    s: &mut Session,
    origin: u64,
    floor: u64,
    skipped_changes: &mut BTreeSet<ProposalId>,
    skips_unknown: &mut BTreeMap<u64, (u64, u64)>,
) {
    if floor <= s.floor {
        return;
    }
    s.floor = floor;
    forget_below(&mut s.applied, floor);
    skipped_changes.retain(|c| c.origin != origin || c.seq >= floor);
    if skips_unknown
        .get(&origin)
        .is_some_and(|&(_, below)| floor >= below)
    {
        skips_unknown.remove(&origin);
    }
}

fn forget_below(ranges: &mut BTreeMap<u64, u64>, floor: u64) {
    let kept = ranges.split_off(&floor);
    // A range straddling the floor keeps its upper part.
    let straddling = ranges
        .last_key_value()
        .filter(|(_, end)| **end > floor)
        .map(|(_, &end)| end);
    *ranges = kept;
    if let Some(end) = straddling {
        ranges.insert(floor, end);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn id(session: u64, seq: u64) -> ProposalId {
        ProposalId {
            origin: 2,
            session,
            seq,
        }
    }

    #[test]
    fn payloads_round_trip_and_old_commands_pass_through() {
        let pid = ProposalId {
            origin: 3,
            session: 1_000_000,
            seq: 77,
        };
        let data = encode_proposal(pid, 70, b"\x00cmd");
        assert_eq!(
            decode(&data),
            Ok(Payload::Proposal {
                id: pid,
                floor: 70,
                command: b"\x00cmd"
            })
        );
        assert_eq!(
            decode(&encode_register(3, u64::MAX)),
            Ok(Payload::Register {
                origin: 3,
                nonce: u64::MAX
            })
        );
        assert_eq!(
            decode(&encode_fence(3, 1_000_000, 78)),
            Ok(Payload::Fence {
                origin: 3,
                session: 1_000_000,
                floor: 78
            })
        );
        let mut long = encode_fence(3, 1, 2);
        long.push(0);
        assert!(decode(&long).is_err(), "bytes after a fence");
        assert!(
            decode(&long[..long.len() - 2]).is_err(),
            "a fence cut short"
        );
        assert_eq!(decode(b"\x00old"), Ok(Payload::Plain(b"\x00old")));
        assert!(decode(&[TAG_PROPOSAL, 0x80]).is_err());
        assert_eq!(
            decode_context(&encode_context(pid, 70, &[1, 2, 300])),
            Some(ChangeContext {
                id: pid,
                floor: 70,
                voters: Some(vec![1, 2, 300])
            })
        );
        // Before the voters were recorded: the identity alone.
        let ctx = encode_context(pid, 70, &[1]);
        let without = &ctx[..ctx.len() - 2];
        assert_eq!(
            decode_context(without),
            Some(ChangeContext {
                id: pid,
                floor: 70,
                voters: None
            })
        );
        // A count of voters beyond the bytes left, or bytes after them: not ours.
        assert_eq!(decode_context(&[without, &[5, 1]].concat()), None);
        assert_eq!(decode_context(&[&ctx[..], &[0]].concat()), None);
        // What older versions put in the context: origin and request id, 8 bytes each.
        let mut old = 3u64.to_le_bytes().to_vec();
        old.extend_from_slice(&9u64.to_le_bytes());
        assert_eq!(decode_context(&old), None);
        assert_eq!(decode_context(&[]), None);
    }

    /// A fence closes its session's numbers below its floor, whatever comes later; a fence of
    /// a session that is not the current one changes nothing.
    #[test]
    fn a_fence_closes_the_numbers_below_it() {
        let mut t = Sessions::default();
        let s = t.register(2, 9, 5);
        assert_eq!(t.admit(id(s, 1), 1), Verdict::Apply);
        assert_eq!(t.fate(id(s, 1)), Fate::Applied);
        assert_eq!(t.fate(id(s, 2)), Fate::Open);
        t.raise_floor(2, s + 1, 4);
        assert_eq!(t.fate(id(s, 2)), Fate::Open, "another session's fence");
        t.raise_floor(2, s, 4);
        for seq in 1..4 {
            assert_eq!(t.fate(id(s, seq)), Fate::Closed);
        }
        assert_eq!(t.admit(id(s, 3), 3), Verdict::Duplicate, "a late copy");
        assert_eq!(t.fate(id(s, 4)), Fate::Open);
        t.raise_floor(2, s, 2);
        assert_eq!(t.fate(id(s, 3)), Fate::Closed, "a floor never goes down");
        assert_eq!(t.admit(id(s, 4), 2), Verdict::Apply);
        assert_eq!(
            t.fate(id(s + 1, 4)),
            Fate::Closed,
            "not the current session"
        );
    }

    #[test]
    fn a_proposal_applies_once_however_often_it_comes() {
        let mut s = Sessions::default();
        assert_eq!(s.register(2, 99, 10), 10);
        // The registration proposed twice: the second copy changes nothing.
        assert_eq!(s.register(2, 99, 12), 10);
        assert_eq!(s.admit(id(10, 1), 1), Verdict::Apply);
        assert_eq!(s.admit(id(10, 1), 1), Verdict::Duplicate);
        assert_eq!(s.admit(id(10, 3), 1), Verdict::Apply);
        assert_eq!(s.admit(id(10, 2), 1), Verdict::Apply);
        assert!(s.settled(id(10, 2)));
        assert!(!s.settled(id(10, 4)));
        // The origin has answered everything below 4: a late copy of 2 is skipped, and the
        // table forgets the numbers below the floor.
        assert_eq!(s.admit(id(10, 4), 4), Verdict::Apply);
        assert_eq!(s.admit(id(10, 2), 1), Verdict::Duplicate);
        assert_eq!(s.size(), (1, 1));
        // A copy from an older session, or of an unknown origin, is skipped.
        assert_eq!(s.admit(id(9, 5), 5), Verdict::StaleSession);
        assert_eq!(
            s.admit(
                ProposalId {
                    origin: 7,
                    session: 10,
                    seq: 1
                },
                1
            ),
            Verdict::StaleSession
        );
        // The node restarts: a new session replaces the old one, whose copies are skipped.
        assert_eq!(s.register(2, 100, 20), 20);
        assert_eq!(s.admit(id(10, 5), 5), Verdict::StaleSession);
        assert_eq!(s.admit(id(20, 1), 1), Verdict::Apply);
        s.forget(2);
        assert_eq!(s.admit(id(20, 2), 1), Verdict::StaleSession);
        assert_eq!(s.size(), (0, 0));
    }

    #[test]
    fn applied_numbers_are_kept_as_ranges_above_the_floor() {
        let mut r = BTreeMap::new();
        for n in [5, 7, 6, 1, 2, 9] {
            insert(&mut r, n);
        }
        assert_eq!(
            r.iter().map(|(a, b)| (*a, *b)).collect::<Vec<_>>(),
            [(1, 3), (5, 8), (9, 10)]
        );
        assert!(contains(&r, 6) && !contains(&r, 8) && !contains(&r, 3));
        forget_below(&mut r, 6);
        assert_eq!(
            r.iter().map(|(a, b)| (*a, *b)).collect::<Vec<_>>(),
            [(6, 8), (9, 10)]
        );
        forget_below(&mut r, 10);
        assert!(r.is_empty());
    }

    /// A skipped membership change is remembered while its origin may still wait for it: not
    /// once the origin's floor passes it, its session is replaced, or the origin is removed.
    #[test]
    fn skipped_changes_are_kept_only_while_they_may_be_unanswered() {
        let mut s = Sessions::default();
        let a = s.register(2, 1, 1);
        let b = s.register(3, 1, 2);
        assert_eq!(s.admit(id(a, 5), 5), Verdict::Apply);
        s.note_skipped_change(id(a, 5));
        assert_eq!(s.change_was_skipped(id(a, 5)), Some(true));
        assert_eq!(s.change_was_skipped(id(a, 4)), Some(false));
        // Stale: below the floor, or of a session that is not the origin's.
        s.note_skipped_change(id(a, 1));
        s.note_skipped_change(id(99, 5));
        assert_eq!(s.skipped_changes().count(), 1);
        // The origin answered it: its floor passed it.
        s.admit(id(a, 6), 6);
        assert_eq!(s.change_was_skipped(id(a, 5)), Some(false));

        let from_b = ProposalId {
            origin: 3,
            session: b,
            seq: 1,
        };
        s.admit(from_b, 1);
        s.note_skipped_change(from_b);
        s.register(3, 2, 10);
        assert_eq!(
            s.skipped_changes().count(),
            0,
            "a new session of 3 drops its skips"
        );
        s.note_skipped_change(id(a, 7));
        s.forget(2);
        assert_eq!(
            s.skipped_changes().count(),
            0,
            "a removed origin's skips go with it"
        );
    }

    /// A long run of one origin, with numbers applied out of order and some twice: the table
    /// never holds more than the numbers in flight.
    #[test]
    fn the_table_stays_small_over_a_long_run() {
        let mut s = Sessions::default();
        let session = s.register(2, 1, 1);
        let mut max_ranges = 0;
        for k in 0..50_000u64 {
            // Two numbers applied in the wrong order, each twice; 64 in flight below them.
            let floor = (2 * k).saturating_sub(64).max(1);
            for n in [2 * k + 2, 2 * k + 1, 2 * k + 2, 2 * k + 1] {
                s.admit(id(session, n), floor);
                max_ranges = max_ranges.max(s.size().1);
            }
        }
        assert!(max_ranges <= 3, "{max_ranges} ranges");
    }
}
