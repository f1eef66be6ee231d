//! The state machine's snapshot data, written and read as a stream (a store of millions of
//! keys never has its snapshot whole in memory on the way to or from its file):
//!
//! ```text
//! state_len u32 LE | members (bincode) | sessions (bincode) | skipped changes (bincode)
//!                  | changes of unknown outcome (bincode) | members' addition indexes (bincode)
//!                  | incarnation (bincode)
//!                                   -- first, so the raft node can read them alone
//! count varint | count × (key_len varint | key | value_len varint | value)
//! ```
//!
//! The pairs come in no particular order. Snapshots of older versions hold no sessions (the
//! members fill `state_len`): they read as an empty exactly-once table; or no skipped
//! changes (the membership changes that committed but were not applied, see
//! [`Sessions::note_skipped_change`]): the table then says it cannot tell for the changes it
//! settled, and so do the snapshots written after it while that matters; or no addition
//! indexes (the index of each member's latest addition): every session of a member then
//! counts as begun since the member was added; or no incarnation: it reads as
//! [`Incarnation::Unknown`], never learned (see [`crate::incarnation`]). Builds before the
//! incarnation refuse a snapshot that holds one ("bytes after the members' addition
//! indexes"): every node of a cluster runs the same build. Varints are bincode's
//! (encoded by the crate). Every length is checked against the bytes that remain before anything is
//! allocated, so a damaged length cannot make the decoder allocate wildly.
//!
//! A pair in the map is kept in exactly its snapshot encoding ([`super::map`]), so writing a
//! snapshot copies bytes and reading one allocates once per key.

use std::collections::{BTreeMap, BTreeSet};
use std::io::{self, Read, Write};

use super::ClusterState;
use super::map::{Map, Pair, VARINTS, pair_head, varint_len, write_varint};
use crate::incarnation::Incarnation;
use crate::membership::Members;
use crate::proposal::Sessions;

/// Exact length of what [`write_snapshot`] writes: the snapshot file announces it first.
/// Constant time: the map keeps the length of its pairs' encodings.
pub fn snapshot_len(state: &ClusterState, map: &Map) -> u64 {
    header_len(state, map.len() as u64) + map.encoded_len()
}

/// Length of the header: the cluster state and the count of pairs.
fn header_len(state: &ClusterState, count: u64) -> u64 {
    4 + state_bytes(state).len() as u64 + varint_len(count)
}

/// Writes snapshot data for `state` and `map`.
pub fn write_snapshot(w: &mut dyn Write, state: &ClusterState, map: &Map) -> io::Result<()> {
    write_header(w, state, map.len() as u64)?;
    let mut buf = Vec::new();
    for shard in 0..map.shard_count() {
        buf.clear();
        map.encode_shard(shard, &mut buf);
        w.write_all(&buf)?;
    }
    Ok(())
}

/// Writes what comes before the pairs: the cluster state, then how many pairs follow.
pub(super) fn write_header(w: &mut dyn Write, state: &ClusterState, count: u64) -> io::Result<()> {
    let state = state_bytes(state);
    let state_len = u32::try_from(state.len())
        .map_err(|_| io::Error::new(io::ErrorKind::InvalidInput, "cluster state over 4 GiB"))?;
    w.write_all(&state_len.to_le_bytes())?;
    w.write_all(&state)?;
    write_varint(w, count)
}

/// Reads snapshot data of `len` bytes written by [`write_snapshot`].
pub fn read_snapshot(r: &mut dyn Read, len: u64) -> io::Result<(ClusterState, Map)> {
    let mut remaining = len;
    let state = read_state(r, &mut remaining)?;
    let count = read_varint(r, &mut remaining)?;
    // Each pair takes at least two bytes: never size the table from an unchecked count.
    let mut map = Map::with_capacity(usize::try_from(count.min(remaining / 2)).unwrap_or(0));
    let mut key = Vec::new();
    for _ in 0..count {
        map.insert_pair(read_pair(r, &mut remaining, &mut key)?);
    }
    if remaining != 0 {
        return Err(invalid(format!("{remaining} bytes after the last key")));
    }
    Ok((state, map))
}

/// Reads one pair into its own allocation, as the map keeps it. `key` is scratch space.
fn read_pair(r: &mut dyn Read, remaining: &mut u64, key: &mut Vec<u8>) -> io::Result<Pair> {
    let key_len = read_varint(r, remaining)?;
    key.resize(checked_len(key_len, *remaining)?, 0);
    take(r, remaining, key)?;
    let value_len = read_varint(r, remaining)?;
    let value_len_usize = checked_len(value_len, *remaining)?;
    let mut bytes = pair_head(key, value_len_usize);
    let value_at = bytes.len();
    bytes.resize(value_at + value_len_usize, 0);
    take(r, remaining, &mut bytes[value_at..])?;
    // A value is any bytes; a key is UTF-8, as the REST API takes it.
    if std::str::from_utf8(key).is_err() {
        return Err(invalid("a key is not UTF-8".into()));
    }
    Ok(Pair::from_encoding(bytes.into_boxed_slice()))
}

/// Snapshot data in memory (what travels in a raft message).
pub fn encode_snapshot(state: &ClusterState, map: &Map) -> Vec<u8> {
    let mut out = Vec::with_capacity(snapshot_len(state, map) as usize);
    write_snapshot(&mut out, state, map).expect("writing into a Vec cannot fail");
    out
}

/// Decodes snapshot data held in memory.
pub fn decode_snapshot(mut data: &[u8]) -> io::Result<(ClusterState, Map)> {
    let len = data.len() as u64;
    read_snapshot(&mut data, len)
}

/// Reads the membership and sessions at the front of snapshot data.
pub fn decode_cluster_state(mut data: &[u8]) -> io::Result<ClusterState> {
    let len = data.len() as u64;
    read_cluster_state(&mut data, len)
}

/// Reads the membership and sessions at the front of snapshot data of `len` bytes, as a
/// stream: only those are read.
pub fn read_cluster_state(r: &mut dyn Read, len: u64) -> io::Result<ClusterState> {
    let mut remaining = len;
    read_state(r, &mut remaining)
}

/// Length of the data of a snapshot of `state` and `count` pairs whose encodings take
/// `pairs_len` bytes.
pub(super) fn data_len(state: &ClusterState, count: u64, pairs_len: u64) -> u64 {
    header_len(state, count) + pairs_len
}

fn state_bytes(state: &ClusterState) -> Vec<u8> {
    let config = bincode::config::standard();
    let mut bytes = bincode::serde::encode_to_vec(&state.members, config)
        .expect("encoding into a Vec cannot fail: no I/O, no size limit");
    bytes.extend(
        bincode::serde::encode_to_vec(&state.sessions, config)
            .expect("encoding into a Vec cannot fail: no I/O, no size limit"),
    );
    // What the table knows of skipped changes: `(origin, session, seq)` of each skipped one,
    // then what it cannot tell, `(origin, session, below)`; `read_state` reads them back.
    let skipped: Vec<(u64, u64, u64)> = state
        .sessions
        .skipped_changes()
        .map(|c| (c.origin, c.session, c.seq))
        .collect();
    let unknown: Vec<(u64, u64, u64)> = state.sessions.unknown_skips().collect();
    for list in [skipped, unknown] {
        bytes.extend(
            bincode::serde::encode_to_vec(list, config)
                .expect("encoding into a Vec cannot fail: no I/O, no size limit"),
        );
    }
    // Then `(id, index)` of each member's latest addition (a map is written as the list of
    // its pairs).
    bytes.extend(
        bincode::serde::encode_to_vec(&state.members.added, config)
            .expect("encoding into a Vec cannot fail: no I/O, no size limit"),
    );
    // Then the incarnation, in each of its three states: a missing one reads as unknown.
    bytes.extend(
        bincode::serde::encode_to_vec(state.incarnation, config)
            .expect("encoding into a Vec cannot fail: no I/O, no size limit"),
    );
    bytes
}

/// A list of `(origin, session, number)` after the exactly-once table, as read.
type Items = BTreeSet<(u64, u64, u64)>;

fn read_state(r: &mut dyn Read, remaining: &mut u64) -> io::Result<ClusterState> {
    let mut len = [0u8; 4];
    take(r, remaining, &mut len)?;
    let mut bytes = vec![0u8; checked_len(u64::from(u32::from_le_bytes(len)), *remaining)?];
    take(r, remaining, &mut bytes)?;
    let config = bincode::config::standard();
    let (mut members, used) =
        Members::decode_prefix(&bytes).map_err(|e| invalid(format!("membership: {e}")))?;
    let rest = &bytes[used..];
    // Snapshots of builds before the incarnation hold none: never learned (see
    // `crate::incarnation`). Read, it is set where the sections end.
    let mut incarnation = Incarnation::Unknown;
    let sessions: Sessions = if rest.is_empty() {
        Sessions::default()
    } else {
        let (sessions, used): (Sessions, usize) = bincode::serde::decode_from_slice(rest, config)
            .map_err(|e| invalid(format!("sessions: {e}")))?;
        let rest = &rest[used..];
        if rest.is_empty() {
            sessions.with_skips(Vec::new(), None)
        } else {
            // The skipped changes, then what the table could not tell (see `state_bytes`).
            // The builds of 2026-12-03 wrote the first alone, so the data may end after it.
            // Each list is read as a set (a map for the addition indexes), the same bytes:
            // decoding a `Vec` reserves room for as many items as its length claims (up to
            // a MiB), whatever bytes follow; a set grows as its items are read (found by a
            // review).
            let (skipped, used): (Items, usize) =
                bincode::serde::decode_from_slice(rest, config)
                    .map_err(|e| invalid(format!("skipped membership changes: {e}")))?;
            let rest = &rest[used..];
            let skipped = skipped.into_iter().collect();
            if rest.is_empty() {
                sessions.with_skips(skipped, None)
            } else {
                let (unknown, used): (Items, usize) =
                    bincode::serde::decode_from_slice(rest, config).map_err(|e| {
                        invalid(format!("membership changes of unknown outcome: {e}"))
                    })?;
                // Builds before 2026-12-05 wrote no addition indexes after them.
                let rest = &rest[used..];
                if !rest.is_empty() {
                    let (added, used): (BTreeMap<u64, u64>, usize) =
                        bincode::serde::decode_from_slice(rest, config)
                            .map_err(|e| invalid(format!("members' addition indexes: {e}")))?;
                    // Builds before the evening of 2026-12-06 wrote no incarnation after them.
                    let rest = &rest[used..];
                    if !rest.is_empty() {
                        let (read, used): (Incarnation, usize) =
                            bincode::serde::decode_from_slice(rest, config)
                                .map_err(|e| invalid(format!("incarnation: {e}")))?;
                        if used != rest.len() {
                            return Err(invalid(format!(
                                "{} bytes after the incarnation",
                                rest.len() - used
                            )));
                        }
                        incarnation = read;
                    }
                    members.added = added
                        .into_iter()
                        .filter(|(id, _)| members.contains(*id))
                        .collect();
                }
                sessions.with_skips(skipped, Some(unknown.into_iter().collect()))
            }
        }
    };
    Ok(ClusterState {
        members,
        sessions,
        incarnation,
    })
}

fn checked_len(len: u64, remaining: u64) -> io::Result<usize> {
    if len > remaining {
        return Err(invalid(format!(
            "length {len} exceeds the {remaining} bytes left"
        )));
    }
    usize::try_from(len).map_err(|_| invalid(format!("length {len} too large")))
}

fn take(r: &mut dyn Read, remaining: &mut u64, buf: &mut [u8]) -> io::Result<()> {
    checked_len(buf.len() as u64, *remaining)?;
    r.read_exact(buf)?;
    *remaining -= buf.len() as u64;
    Ok(())
}

fn read_varint(r: &mut dyn Read, remaining: &mut u64) -> io::Result<u64> {
    // Never past the data's end: a varint cut short there is damage, not the next field.
    let mut within = r.take(*remaining);
    let n = bincode::decode_from_std_read(&mut within, VARINTS)
        .map_err(|e| invalid(format!("varint: {e}")))?;
    *remaining = within.limit();
    Ok(n)
}

fn invalid(reason: String) -> io::Error {
    io::Error::new(io::ErrorKind::InvalidData, reason)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::proposal::ProposalId;

    /// The original's Test_kvstore_snapshot: a snapshot round-trips the map, and here the
    /// members and the exactly-once table too.
    #[test]
    fn snapshot_round_trips_the_map_members_and_sessions() {
        let mut map = Map::default();
        map.insert("/foo", "bar");
        map.insert("/héllo", "");
        let mut state = ClusterState::default();
        state.members.add(1, "http://127.0.0.1:1".into(), 1);
        state.members.remove(2);
        let session = state.sessions.register(1, 77, 5);
        let id = ProposalId {
            origin: 1,
            session,
            seq: 3,
        };
        state.sessions.admit(id, 1);
        let change = ProposalId { seq: 2, ..id };
        state.sessions.admit(change, 1);
        state.sessions.note_skipped_change(change);
        let data = encode_snapshot(&state, &map);
        assert_eq!(decode_cluster_state(&data).expect("state decodes"), state);
        let (s2, map2) = decode_snapshot(&data).expect("snapshot decodes");
        assert!(s2.sessions.settled(id));
        assert_eq!(s2.sessions.change_was_skipped(id), Some(false));
        assert_eq!(s2.sessions.change_was_skipped(change), Some(true));
        assert_eq!((s2, map2), (state, map));
    }

    /// Snapshots written before sessions existed hold the members alone: they still load,
    /// with an empty exactly-once table.
    #[test]
    fn snapshots_without_sessions_still_load() {
        let mut members = Members::default();
        members.add(1, "http://127.0.0.1:1".into(), 1);
        let blob =
            bincode::serde::encode_to_vec(&members, bincode::config::standard()).expect("encodes");
        let mut data = (blob.len() as u32).to_le_bytes().to_vec();
        data.extend_from_slice(&blob);
        data.extend_from_slice(&[1, 2, b'/', b'k', 1, b'v']);
        let (state, map) = decode_snapshot(&data).expect("an old snapshot decodes");
        // Nor does it say when each member was added.
        members.added.clear();
        assert_eq!(state.members, members);
        assert_eq!(state.sessions.size(), (0, 0));
        assert_eq!(map.get("/k"), Some("v".as_bytes()));
    }

    /// A table with one session of origin 1 that applied `seqs`, and its ids by number.
    fn one_session_that_settled(seqs: &[u64]) -> (Sessions, impl Fn(u64) -> ProposalId) {
        let mut sessions = Sessions::default();
        let session = sessions.register(1, 77, 5);
        let id = move |seq| ProposalId {
            origin: 1,
            session,
            seq,
        };
        for &seq in seqs {
            sessions.admit(id(seq), 1);
        }
        (sessions, id)
    }

    /// The cluster state and an empty map as older builds wrote them: no members, the table,
    /// then (the builds of 2026-12-03) the skipped changes alone, or (before) nothing.
    fn snapshot_of_an_older_build(
        sessions: &Sessions,
        skipped: Option<Vec<(u64, u64, u64)>>,
    ) -> Vec<u8> {
        let config = bincode::config::standard();
        let mut blob = bincode::serde::encode_to_vec(Members::default(), config).expect("encodes");
        blob.extend(bincode::serde::encode_to_vec(sessions, config).expect("encodes"));
        if let Some(skipped) = skipped {
            blob.extend(bincode::serde::encode_to_vec(skipped, config).expect("encodes"));
        }
        let mut data = (blob.len() as u32).to_le_bytes().to_vec();
        data.extend_from_slice(&blob);
        data.push(0);
        data
    }

    /// Snapshots written before skipped changes were recorded hold the table alone: which
    /// changes it settled were skipped is unknown, and stays unknown in the snapshots written
    /// after it (a review found a re-encoded table claiming to know), until the origin's floor
    /// passes them; what is applied after it is known.
    #[test]
    fn snapshots_without_skipped_changes_say_they_cannot_tell() {
        let (sessions, id) = one_session_that_settled(&[3]);
        let data = snapshot_of_an_older_build(&sessions, None);
        let mut state = decode_cluster_state(&data).expect("an old snapshot decodes");
        assert_eq!(
            state.sessions.change_was_skipped(id(3)),
            None,
            "settled before"
        );
        assert_eq!(
            state.sessions.admit(id(4), 1),
            crate::proposal::Verdict::Apply
        );
        assert_eq!(state.sessions.change_was_skipped(id(4)), Some(false));

        let again = encode_snapshot(&state, &Map::default());
        let mut state = decode_cluster_state(&again).expect("decodes");
        assert_eq!(
            state.sessions.change_was_skipped(id(3)),
            None,
            "still unknown"
        );
        assert_eq!(state.sessions.change_was_skipped(id(4)), Some(false));
        // The origin answered everything below 5: nothing of it is unknown any more.
        state.sessions.admit(id(5), 5);
        assert_eq!(state.sessions.change_was_skipped(id(3)), Some(false));
    }

    /// The builds of 2026-12-03 wrote the skipped changes alone after the table, nothing of
    /// what it could not tell. Such a snapshot loads (it was refused: "unexpected end"); its
    /// recorded skips are known, the other changes it settled are not (it may have re-written
    /// a table that could not tell), and both stay so in the snapshots written after it.
    #[test]
    fn snapshots_with_skipped_changes_alone_load_and_keep_what_they_know() {
        let (sessions, id) = one_session_that_settled(&[3, 4]);
        let data = snapshot_of_an_older_build(&sessions, Some(vec![(1, id(4).session, 4)]));

        let mut state = decode_cluster_state(&data).expect("a snapshot of 2026-12-03 decodes");
        for round in ["as read", "written again"] {
            let skipped = |seq| state.sessions.change_was_skipped(id(seq));
            assert_eq!(skipped(4), Some(true), "{round}: recorded as skipped");
            assert_eq!(
                skipped(3),
                None,
                "{round}: settled, not recorded: cannot tell"
            );
            let again = encode_snapshot(&state, &Map::default());
            state = decode_cluster_state(&again).expect("decodes");
        }
        assert_eq!(
            state.sessions.admit(id(5), 1),
            crate::proposal::Verdict::Apply
        );
        assert_eq!(state.sessions.change_was_skipped(id(5)), Some(false));
    }

    /// The builds before 2026-12-05 wrote no addition indexes after the table's lists. Such a
    /// snapshot loads; it cannot say when a member was added, so every session of a member
    /// counts as begun since (a joining node under its id is refused, as those builds did);
    /// indexes written later round-trip.
    #[test]
    fn snapshots_without_addition_indexes_load_and_count_every_session() {
        let config = bincode::config::standard();
        let mut members = Members::default();
        members.add(1, "http://127.0.0.1:1".into(), 1);
        let mut sessions = Sessions::default();
        let session = sessions.register(1, 77, 5);
        let mut blob = bincode::serde::encode_to_vec(&members, config).expect("encodes");
        blob.extend(bincode::serde::encode_to_vec(&sessions, config).expect("encodes"));
        for list in [Vec::<(u64, u64, u64)>::new(), Vec::new()] {
            blob.extend(bincode::serde::encode_to_vec(list, config).expect("encodes"));
        }
        let mut data = (blob.len() as u32).to_le_bytes().to_vec();
        data.extend_from_slice(&blob);
        data.push(0);
        let mut state = decode_cluster_state(&data).expect("a snapshot of 2026-12-04 decodes");
        assert!(state.members.added.is_empty());
        assert!(state.members.ran_since_added(1, session));

        // Added back at 9 (in a later log): the session of 5 is of an earlier life.
        state.members.remove(1);
        state.members.add(1, "http://127.0.0.1:1".into(), 9);
        let again = encode_snapshot(&state, &Map::default());
        let read = decode_cluster_state(&again).expect("decodes");
        assert_eq!(read.members.added.get(&1), Some(&9));
        assert!(!read.members.ran_since_added(1, session));
        assert!(read.members.ran_since_added(1, 10));
    }

    /// Each state of the incarnation round-trips; a snapshot of a build before it (which
    /// ends after the addition indexes) reads as unknown, never as not yet: a node restored
    /// from it must not adopt a later registration (see `crate::incarnation`).
    #[test]
    fn the_incarnation_round_trips_and_is_unknown_in_older_snapshots() {
        for incarnation in [
            Incarnation::NotYet,
            Incarnation::Known(0xfeed_beef),
            Incarnation::Unknown,
        ] {
            let state = ClusterState {
                incarnation,
                ..ClusterState::default()
            };
            let data = encode_snapshot(&state, &Map::default());
            assert_eq!(decode_cluster_state(&data).expect("decodes"), state);
            assert_eq!(snapshot_len(&state, &Map::default()), data.len() as u64);
        }

        let config = bincode::config::standard();
        let mut blob = bincode::serde::encode_to_vec(Members::default(), config).expect("encodes");
        blob.extend(bincode::serde::encode_to_vec(Sessions::default(), config).expect("encodes"));
        for list in [Vec::<(u64, u64, u64)>::new(), Vec::new()] {
            blob.extend(bincode::serde::encode_to_vec(list, config).expect("encodes"));
        }
        blob.extend(
            bincode::serde::encode_to_vec(BTreeMap::<u64, u64>::new(), config).expect("encodes"),
        );
        let mut data = (blob.len() as u32).to_le_bytes().to_vec();
        data.extend_from_slice(&blob);
        data.push(0);
        let state =
            decode_cluster_state(&data).expect("a snapshot of the builds before it decodes");
        assert_eq!(state.incarnation, Incarnation::Unknown);
        let (sessions, _) = one_session_that_settled(&[]);
        let oldest = snapshot_of_an_older_build(&sessions, None);
        let state = decode_cluster_state(&oldest).expect("an older snapshot decodes");
        assert_eq!(state.incarnation, Incarnation::Unknown);
    }

    #[test]
    fn the_announced_length_is_exact_and_varints_round_trip() {
        let mut map = Map::default();
        for n in [0usize, 1, 250, 251, 0xffff, 0x1_0000] {
            map.insert(&format!("/k{n}"), "v".repeat(n));
        }
        // Replacing a value changes the length by the difference.
        map.insert("/k1", "longer than one");
        let state = ClusterState::default();
        let data = encode_snapshot(&state, &map);
        assert_eq!(data.len() as u64, snapshot_len(&state, &map));
        let (_, back) = decode_snapshot(&data).expect("decodes");
        assert_eq!(back, map);
        assert_eq!(back.get("/k1"), Some("longer than one".as_bytes()));
        for n in [
            0u64,
            250,
            251,
            0xffff,
            0x1_0000,
            0xffff_ffff,
            0x1_0000_0000,
            u64::MAX,
        ] {
            let mut buf = Vec::new();
            write_varint(&mut buf, n).expect("a Vec takes writes");
            assert_eq!(buf.len() as u64, varint_len(n));
            let mut remaining = buf.len() as u64;
            assert_eq!(
                read_varint(&mut &buf[..], &mut remaining).expect("reads"),
                n
            );
            if usize::try_from(n).is_ok() {
                buf.push(42);
                assert_eq!(
                    super::super::map::split_varint(&buf),
                    (n as usize, &[42u8][..])
                );
            }
        }
    }

    /// Damaged lengths are errors, never a panic or a huge allocation.
    #[test]
    fn damaged_snapshot_data_is_an_error() {
        let mut map = Map::default();
        map.insert("/key", "value");
        let data = encode_snapshot(&ClusterState::default(), &map);
        for cut in 0..data.len() {
            assert!(decode_snapshot(&data[..cut]).is_err(), "cut at {cut}");
        }
        let mut huge = data.clone();
        // The count of pairs, right after the membership: claim u64::MAX of them.
        let at = 4 + state_bytes(&ClusterState::default()).len();
        huge.splice(at..at + 1, [253, 255, 255, 255, 255, 255, 255, 255, 255]);
        assert!(decode_snapshot(&huge).is_err());
        let mut extra = data.clone();
        extra.push(0);
        assert!(decode_snapshot(&extra).is_err());
        // The first byte of the key, after the count and the key's length.
        let mut not_utf8 = data;
        not_utf8[at + 2] = 0xff;
        assert!(decode_snapshot(&not_utf8).is_err(), "a key must be UTF-8");
    }

    /// A value is any bytes: one that is no UTF-8 (a lone 0xFF, a NUL, a character cut short)
    /// is written and read back as it is, in memory and as a stream; a text value's pair is
    /// what older builds wrote for two strings, so their snapshots read the same.
    #[test]
    fn a_snapshot_holds_values_of_any_bytes() {
        let binary: &[u8] = b"\xff\x00a\xe2\x82";
        let mut map = Map::default();
        map.insert("/bin", binary);
        map.insert("/text", "v");
        let state = ClusterState::default();
        let data = encode_snapshot(&state, &map);
        let (_, back) = decode_snapshot(&data).expect("a value of any bytes decodes");
        assert_eq!(back.get("/bin"), Some(binary));
        assert_eq!(back, map);
        let (_, streamed) =
            read_snapshot(&mut &data[..], data.len() as u64).expect("and reads as a stream");
        assert_eq!(streamed, map);

        let old = bincode::serde::encode_to_vec(
            ("/text".to_string(), "v".to_string()),
            bincode::config::standard(),
        )
        .expect("encoding into a Vec");
        // Pinned as well (a new bincode would change both sides: review 104).
        assert_eq!(old, b"\x05/text\x01v", "each length, then its bytes");
        let count_at = 4 + state_bytes(&state).len() + 1;
        assert!(
            data[count_at..].windows(old.len()).any(|w| w == old),
            "a text value's pair is encoded as two strings were"
        );
    }
}
