//! What a raft `Snapshot`'s `data` holds inside this program. raft-rs passes a snapshot
//! around as one value with its data in memory (`Storage::snapshot` returns it, a
//! `MsgSnapshot` carries it, `Ready::snapshot` hands it back); a snapshot of a big state is a
//! file of gigabytes, so here the data is usually a small *handle* instead:
//!
//! - on the leader, [`Storage::snapshot`](crate::raft_node::storage) returns a handle naming
//!   its snapshot file; the transport streams that file to the follower
//!   ([`SnapshotData::Follows`] on the wire), off the raft thread;
//! - on the follower, the peer server writes the arriving file to disk and hands the node a
//!   `MsgSnapshot` whose handle names that file; installing it moves the file into place.
//!
//! Data that is not a handle is the application's bytes, inline: what an in-memory network
//! carries (see [`crate::transport::inline_snapshot`]) and what a node is still able to install.
//!
//! # Layout of a handle
//! ```text
//! FF FF FF FF "RXSH"   magic (8 bytes)
//! tag u8               'F': a file of this node's snapshot directory, by name (UTF-8) after it
//!                      'S': u64 LE after it: the snapshot file of that many bytes follows the
//!                           message in the request body (the wire only)
//! ```
//! Application data can never start with the magic: the state machine's data opens with the
//! length of its cluster state as a little-endian `u32` (see [`crate::kvstore`]), and
//! `FF FF FF FF` would announce 4 GiB of it, more than any message or handle could hold.

use bytes::Bytes;

const MAGIC: &[u8; 8] = b"\xFF\xFF\xFF\xFFRXSH";
const TAG_FILE: u8 = b'F';
const TAG_FOLLOWS: u8 = b'S';
/// Prefix and suffix of the files arriving snapshots are written to.
const INCOMING_PREFIX: &str = "incoming-";
const INCOMING_EXT: &str = ".part";

/// What a snapshot's data holds.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SnapshotData<'a> {
    /// The application's bytes.
    Inline(&'a [u8]),
    /// A file of this node's snapshot directory: a `.snap` file (on the leader) or an arrived
    /// one (on a follower, until it is installed).
    File(&'a str),
    /// On the wire: the snapshot file, of this many bytes, follows the message.
    Follows(u64),
}

/// Data that opens with a handle's magic but is no valid handle.
#[derive(Debug, thiserror::Error)]
#[error("malformed snapshot handle: {0}")]
pub struct HandleError(String);

impl<'a> SnapshotData<'a> {
    /// Reads `data`: a handle, or inline bytes.
    pub fn of(data: &'a [u8]) -> Result<SnapshotData<'a>, HandleError> {
        let Some(rest) = data.strip_prefix(MAGIC) else {
            return Ok(SnapshotData::Inline(data));
        };
        match rest.split_first() {
            Some((&TAG_FILE, name)) => {
                let name = std::str::from_utf8(name)
                    .map_err(|_| HandleError("the file name is not UTF-8".into()))?;
                if !is_plain_name(name) {
                    return Err(HandleError(format!("{name:?} is not a file name")));
                }
                Ok(SnapshotData::File(name))
            }
            Some((&TAG_FOLLOWS, len)) => {
                let len: [u8; 8] = len
                    .try_into()
                    .map_err(|_| HandleError(format!("a length of {} bytes", len.len())))?;
                Ok(SnapshotData::Follows(u64::from_le_bytes(len)))
            }
            Some((tag, _)) => Err(HandleError(format!("unknown tag {tag:#04x}"))),
            None => Err(HandleError("no tag".into())),
        }
    }
}

/// The handle of the file `name` of this node's snapshot directory.
pub fn file_handle(name: &str) -> Bytes {
    debug_assert!(is_plain_name(name), "{name:?}");
    let mut out = Vec::with_capacity(MAGIC.len() + 1 + name.len());
    out.extend_from_slice(MAGIC);
    out.push(TAG_FILE);
    out.extend_from_slice(name.as_bytes());
    out.into()
}

/// The handle that announces a snapshot file of `len` bytes after the message.
pub fn follows_handle(len: u64) -> Bytes {
    let mut out = Vec::with_capacity(MAGIC.len() + 9);
    out.extend_from_slice(MAGIC);
    out.push(TAG_FOLLOWS);
    out.extend_from_slice(&len.to_le_bytes());
    out.into()
}

/// The name of the file the `seq`-th snapshot arriving from node `from` is written to.
pub fn incoming_name(from: u64, seq: u64) -> String {
    format!("{INCOMING_PREFIX}{from}-{seq}{INCOMING_EXT}")
}

/// Whether `name` is the file of an arriving (or arrived, not yet installed) snapshot.
pub fn is_incoming_name(name: &str) -> bool {
    name.starts_with(INCOMING_PREFIX) && name.ends_with(INCOMING_EXT)
}

/// A name within one folder: nothing that could lead out of it.
fn is_plain_name(name: &str) -> bool {
    !name.is_empty() && !name.starts_with('.') && !name.contains(['/', '\\', '\0'])
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn handles_round_trip_and_inline_data_stays_inline() {
        let handle = file_handle("0000000000000002-0000000000000007.snap");
        assert_eq!(
            SnapshotData::of(&handle).expect("a handle"),
            SnapshotData::File("0000000000000002-0000000000000007.snap")
        );
        assert_eq!(
            SnapshotData::of(&follows_handle(1 << 40)).expect("a handle"),
            SnapshotData::Follows(1 << 40)
        );
        let inline = crate::kvstore::encode_snapshot(
            &crate::kvstore::ClusterState::default(),
            &crate::kvstore::Map::default(),
        );
        assert_eq!(
            SnapshotData::of(&inline).expect("inline data"),
            SnapshotData::Inline(&inline)
        );
        assert_eq!(
            SnapshotData::of(&[]).expect("empty"),
            SnapshotData::Inline(&[])
        );
    }

    /// A handle that could lead out of the snapshot directory, or is cut, is an error.
    #[test]
    fn malformed_handles_are_refused() {
        let mut traversal = MAGIC.to_vec();
        traversal.push(TAG_FILE);
        traversal.extend_from_slice(b"../../etc/passwd");
        for bad in [
            MAGIC.to_vec(),
            [&MAGIC[..], b"X"].concat(),
            traversal,
            [&MAGIC[..], b"F"].concat(),
            [&MAGIC[..], b"F.hidden"].concat(),
            follows_handle(5)[..12].to_vec(),
        ] {
            assert!(SnapshotData::of(&bad).is_err(), "{bad:?}");
        }
    }

    #[test]
    fn incoming_names_are_recognised() {
        let name = incoming_name(3, 17);
        assert!(is_incoming_name(&name));
        assert!(is_plain_name(&name));
        assert!(!is_incoming_name("0000000000000002-0000000000000007.snap"));
    }
}
