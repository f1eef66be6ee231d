//! Which run of a cluster a log belongs to: the cluster's *incarnation*.
//!
//! The cluster identity of [`crate::membership::cluster_id`] comes from the flags alone, so a
//! cluster started again on fresh data dirs with the same flags has the same one. A data dir
//! of the earlier run, started among the new members, would then pass every check, and raft's
//! log matching would too: both logs begin with the same bootstrap entries, numbered from the
//! same terms. Its entries would be appended after the new cluster's, and the nodes' states
//! would part without an error (found by a user).
//!
//! The incarnation tells the two runs apart. It is the nonce of the first session
//! registration ([`Payload::Register`]) applied in the cluster's log: every node process
//! registers once a leader is known, with a random nonce, so a run that took a write has one.
//! It is part of the replicated state, decided in log order like the rest, so every node that
//! applies the same log agrees on it; no entry of its own, nothing new in the WAL. The peer
//! transport sends it with every request and refuses a peer whose incarnation differs from
//! this node's when both are known.
//!
//! A snapshot written by a version that had no incarnation leaves it [`Incarnation::Unknown`]
//! for good: the registrations before the snapshot are gone, and adopting a later one would
//! give the node another value than a node that replayed the log from its start, and the two
//! would refuse each other.

use raft::eraftpb::{Entry, EntryType};
use serde::{Deserialize, Serialize};

use crate::proposal::{self, Payload};

/// What a node knows of its cluster's incarnation, as of the entries it has applied.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
pub enum Incarnation {
    /// No registration applied yet (a new cluster, or a node that has applied nothing): the
    /// next one applied names it.
    #[default]
    NotYet,
    /// The nonce of the first registration applied in the cluster's log.
    Known(u64),
    /// Restored from a snapshot of a version that did not record it: never learned.
    Unknown,
}

impl Incarnation {
    /// The value a check compares, if known.
    pub fn known(self) -> Option<u64> {
        match self {
            Incarnation::Known(n) => Some(n),
            Incarnation::NotYet | Incarnation::Unknown => None,
        }
    }

    /// Applies a session registration with `nonce`; returns the incarnation if this one names
    /// it. A nonce of 0 is passed over (0 stands for "not known" on the wire); every node
    /// passes over the same one, so they still agree.
    pub fn note_registration(&mut self, nonce: u64) -> Option<u64> {
        if *self == Incarnation::NotYet && nonce != 0 {
            *self = Incarnation::Known(nonce);
            return Some(nonce);
        }
        None
    }

    /// The incarnation after applying `entries` in order (only their registrations count): how
    /// a starting node knows it from its snapshot and its committed entries before it applies
    /// them, so that its transport checks its peers from the first message.
    pub fn after(mut self, entries: &[Entry]) -> Incarnation {
        for entry in entries {
            if self != Incarnation::NotYet {
                break;
            }
            if entry.get_entry_type() == EntryType::EntryNormal
                && let Ok(Payload::Register { nonce, .. }) = proposal::decode(&entry.data)
            {
                self.note_registration(nonce);
            }
        }
        self
    }

    /// For people (the status JSON, `raftexample dump`): hex when known ([`hex`]), else why
    /// not.
    pub fn text(self) -> String {
        match self {
            Incarnation::Known(n) => hex(n),
            Incarnation::NotYet => "not-yet".into(),
            Incarnation::Unknown => "unknown".into(),
        }
    }
}

/// An incarnation (a registration's nonce) or a cluster id as people see it, wherever it is
/// shown: 16 hex digits, leading zeros and all, so that one that happens to begin with a zero
/// is as long as the others and a comparison by eye, or a script's by text, holds (a user's
/// campaign saw 15 digits; review 116 N3 the cluster id beside them). The peer headers carry
/// both without them ([`crate::transport`]): older builds read either, and the wire stays as
/// they send it.
pub fn hex(n: u64) -> String {
    format!("{n:016x}")
}

#[cfg(test)]
mod tests {
    use super::*;

    fn register(index: u64, nonce: u64) -> Entry {
        Entry {
            index,
            term: 2,
            data: proposal::encode_register(1, nonce).into(),
            ..Default::default()
        }
    }

    /// The first registration applied names the incarnation; later ones change nothing.
    #[test]
    fn the_first_registration_is_adopted_and_later_ones_are_not() {
        let mut inc = Incarnation::default();
        assert_eq!(inc, Incarnation::NotYet);
        assert_eq!(inc.known(), None);
        assert_eq!(inc.note_registration(0xaa), Some(0xaa));
        assert_eq!(inc.note_registration(0xbb), None);
        assert_eq!(inc, Incarnation::Known(0xaa));
        assert_eq!(inc.text(), "00000000000000aa");
    }

    /// An incarnation that begins with a zero shows all 16 digits, in the status and the
    /// dump's text alike (a user's campaign saw `a254d398dc66ae2`, 15 of them, beside others'
    /// 16): the same text in both, so one can be looked for in the other.
    #[test]
    fn an_incarnation_is_shown_in_16_digits() {
        let nonce = 0x0a25_4d39_8dc6_6ae2;
        assert_eq!(Incarnation::Known(nonce).text(), "0a254d398dc66ae2");
        let described = crate::describe::describe_entry(&register(5, nonce), None);
        assert_eq!(
            described,
            "session registration of node 1 (nonce 0a254d398dc66ae2)"
        );
    }

    /// A node restored from an older version's snapshot never adopts a registration: one
    /// that replayed the log from its start adopted an earlier one.
    #[test]
    fn unknown_never_adopts() {
        let mut inc = Incarnation::Unknown;
        assert_eq!(inc.note_registration(0xaa), None);
        assert_eq!(inc, Incarnation::Unknown);
        assert_eq!(inc.after(&[register(5, 0xbb)]), Incarnation::Unknown);
        assert_eq!(inc.known(), None);
    }

    /// Replayed entries: the first registration among them counts, other entries and a
    /// nonce of 0 do not.
    #[test]
    fn after_entries_takes_the_first_registration() {
        let put = Entry {
            index: 4,
            term: 2,
            data: proposal::encode_proposal(
                proposal::ProposalId {
                    origin: 1,
                    session: 3,
                    seq: 1,
                },
                1,
                b"x",
            )
            .into(),
            ..Default::default()
        };
        let entries = [put, register(5, 0), register(6, 0xcc), register(7, 0xdd)];
        assert_eq!(
            Incarnation::NotYet.after(&entries),
            Incarnation::Known(0xcc)
        );
        assert_eq!(
            Incarnation::Known(0xee).after(&entries),
            Incarnation::Known(0xee)
        );
        assert_eq!(Incarnation::NotYet.after(&[]), Incarnation::NotYet);
    }
}
