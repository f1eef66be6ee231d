//! The wire format of a batch of raft messages (a peer stream is batches back to back): for
//! each message, its protobuf length as a little-endian `u32`, then the protobuf bytes
//! (raft-rs `eraftpb::Message`). A length over the reader's limit is an error from its four
//! bytes alone, before the message arrives.

use protobuf::Message as PbMessage;
use raft::eraftpb::Message;

/// Why a batch body could not be decoded.
#[derive(Debug, thiserror::Error)]
pub enum WireError {
    /// The body ends inside a length prefix or a message.
    #[error("batch truncated at byte {0}")]
    Truncated(usize),
    /// A length prefix announces more than a message may hold.
    #[error("message at byte {offset} announces {len} bytes, which exceeds the limit of {limit}")]
    TooLarge {
        /// Where the length prefix starts.
        offset: usize,
        /// The announced length.
        len: usize,
        /// The most a message may hold.
        limit: usize,
    },
    /// A message no raft node writes, refused before it is decoded: decoded, its structs
    /// would take many times its bytes.
    #[error("message at byte {offset} is refused: {reason}")]
    Implausible {
        /// Where the message starts in the body.
        offset: usize,
        /// What is wrong with it.
        reason: &'static str,
    },
    /// A message's protobuf does not parse.
    #[error("message at byte {offset} does not parse: {source}")]
    Protobuf {
        /// Where the message starts in the body.
        offset: usize,
        /// The parser's complaint.
        source: protobuf::ProtobufError,
    },
}

/// Encodes a batch of messages into one request body.
pub fn encode_batch(messages: &[Message]) -> Vec<u8> {
    let size: usize = messages.iter().map(|m| 4 + m.compute_size() as usize).sum();
    let mut out = Vec::with_capacity(size);
    for m in messages {
        // compute_size caches the sizes, so write_to_vec does not recompute them.
        let len = m.get_cached_size();
        out.extend_from_slice(&len.to_le_bytes());
        m.write_to_vec(&mut out)
            .expect("writing a valid raft message into a Vec cannot fail");
    }
    out
}

/// Decodes a request body written by [`encode_batch`], none of whose messages may be longer
/// than `limit`.
pub fn decode_batch(body: &[u8], limit: usize) -> Result<Vec<Message>, WireError> {
    let (messages, used) = decode_prefix(body, limit)?;
    if used < body.len() {
        return Err(WireError::Truncated(used));
    }
    Ok(messages)
}

/// Decodes the whole messages at the front of `buf` and removes them from it, leaving a
/// partial message (a stream's chunk boundaries fall anywhere) for the next call. A length
/// prefix over `limit` is an error at once, before its message arrives.
pub fn decode_available(buf: &mut Vec<u8>, limit: usize) -> Result<Vec<Message>, WireError> {
    let (messages, used) = decode_prefix(buf, limit)?;
    buf.drain(..used);
    Ok(messages)
}

/// The first message of `buf` and the bytes it took, once it is whole (`None` before).
pub(crate) fn decode_one(buf: &[u8], limit: usize) -> Result<Option<(Message, usize)>, WireError> {
    decode_at(buf, 0, limit)
}

/// The message at byte `pos` of `body` and where it ends, once it is whole (`None` before).
/// A length prefix over `limit` is an error from its four bytes alone.
fn decode_at(body: &[u8], pos: usize, limit: usize) -> Result<Option<(Message, usize)>, WireError> {
    let Some((start, end)) = frame_at(body, pos, limit)? else {
        return Ok(None);
    };
    let bytes = &body[start..end];
    let implausible = |reason| WireError::Implausible {
        offset: start,
        reason,
    };
    // A message's structs take 192 bytes and an entry's 104, and a field no raft message
    // has is kept in a table of its own: an empty message (4 bytes of input), a run of empty
    // entries (2 bytes each) or of unknown fields held 30 to 100 times its input once decoded
    // (found by two reviews). None comes from a raft node.
    if bytes.len() < MIN_MESSAGE {
        return Err(implausible(
            "it is too short to name its receiver, its sender and its type",
        ));
    }
    let mut entries = 0;
    check_fields(bytes, Shape::Message, &mut entries).map_err(implausible)?;
    // Room for exactly its entries: grown one by one, they would hold up to twice that.
    let mut msg = Message::new();
    msg.set_entries(Vec::with_capacity(entries).into());
    let msg = crate::pb::parse_into(bytes, msg).map_err(|source| WireError::Protobuf {
        offset: start,
        source,
    })?;
    Ok(Some((msg, end)))
}

/// Where the message whose length prefix is at byte `pos` of `body` starts and ends, once it
/// is whole (`None` before). A length over `limit` is an error from its four bytes alone.
fn frame_at(body: &[u8], pos: usize, limit: usize) -> Result<Option<(usize, usize)>, WireError> {
    let Some(len_bytes) = body.get(pos..pos + 4) else {
        return Ok(None);
    };
    let len_bytes: [u8; 4] = len_bytes
        .try_into()
        .expect("a 4-byte slice converts to [u8; 4]");
    let len = u32::from_le_bytes(len_bytes) as usize;
    if len > limit {
        return Err(WireError::TooLarge {
            offset: pos,
            len,
            limit,
        });
    }
    let start = pos + 4;
    Ok((body.len() - start >= len).then_some((start, start + len)))
}

/// The smallest encoding of a message a raft node sends: its receiver, its sender and its
/// type (none of them zero), each a tag and a byte at least.
const MIN_MESSAGE: usize = 6;

/// The smallest encoding of an entry a raft node writes: its term and its index, each at
/// least one, each a tag and a byte; or, in a proposal a follower forwards (term and index
/// not given yet), its data, never under 3 bytes here.
const MIN_ENTRY: usize = 4;

/// The messages of `eraftpb` a raft message holds, as far as [`check_fields`] looks.
#[derive(Clone, Copy, PartialEq, Eq)]
enum Shape {
    Message,
    Entry,
    Snapshot,
    SnapshotMetadata,
    ConfState,
}

impl Shape {
    /// Whether `field` is one of this message's, and the message its bytes hold, if any.
    fn field(self, field: u64) -> Option<Option<Shape>> {
        match (self, field) {
            (Shape::Message, 7) => Some(Some(Shape::Entry)),
            (Shape::Message, 9) => Some(Some(Shape::Snapshot)),
            (Shape::Message, 1..=16) => Some(None),
            (Shape::Entry, 1..=6) => Some(None),
            (Shape::Snapshot, 1) => Some(None),
            (Shape::Snapshot, 2) => Some(Some(Shape::SnapshotMetadata)),
            (Shape::SnapshotMetadata, 1) => Some(Some(Shape::ConfState)),
            (Shape::SnapshotMetadata, 2..=3) => Some(None),
            (Shape::ConfState, 1..=5) => Some(None),
            _ => None,
        }
    }
}

/// Checks the fields of `p`, a `shape`, and of the messages in them, without decoding them,
/// counting a message's entries in `entries`: an error for a field raft's messages do not
/// have, or an entry shorter than any a raft node writes. What is not protobuf is left to the
/// parser to refuse.
fn check_fields(mut p: &[u8], shape: Shape, entries: &mut usize) -> Result<(), &'static str> {
    while !p.is_empty() {
        let Ok(tag) = crate::varint::take(&mut p) else {
            break;
        };
        let Some(inside) = shape.field(tag >> 3) else {
            return Err("it has a field raft's messages do not have");
        };
        let skip = match tag & 7 {
            0 => match crate::varint::take(&mut p) {
                Ok(_) => 0,
                Err(_) => break,
            },
            1 => 8,
            5 => 4,
            2 => {
                let Ok(len) = crate::varint::take(&mut p) else {
                    break;
                };
                let len = usize::try_from(len).unwrap_or(usize::MAX);
                let Some(bytes) = p.get(..len) else {
                    break;
                };
                if inside == Some(Shape::Entry) {
                    if len < MIN_ENTRY {
                        return Err("an entry of it is too short for a term and an index");
                    }
                    *entries += 1;
                }
                if let Some(inside) = inside {
                    // Entries' counts are the message's only.
                    check_fields(bytes, inside, &mut 0)?;
                }
                len
            }
            _ => break,
        };
        let Some(rest) = p.get(skip..) else {
            break;
        };
        p = rest;
    }
    Ok(())
}

/// The whole messages at the front of `body`, and how many bytes they took.
fn decode_prefix(body: &[u8], limit: usize) -> Result<(Vec<Message>, usize), WireError> {
    // Room for exactly the whole messages there: grown one by one, the list of the smallest
    // messages would hold up to twice their structs.
    let mut whole = 0;
    let mut at = 0;
    // (Not past one too short, which is refused.)
    while let Ok(Some((start, end))) = frame_at(body, at, limit)
        && end - start >= MIN_MESSAGE
    {
        whole += 1;
        at = end;
    }
    let mut out = Vec::with_capacity(whole);
    let mut pos = 0;
    while let Some((msg, end)) = decode_at(body, pos, limit)? {
        out.push(msg);
        pos = end;
    }
    Ok((out, pos))
}

#[cfg(test)]
mod tests {
    use super::*;
    use raft::eraftpb::{Entry, MessageType};

    /// The smallest entries a raft node sends pass the checks: a new leader's empty entry (a
    /// term and an index of 1), and a forwarded proposal's (data only, no term or index yet).
    #[test]
    fn the_smallest_entries_a_raft_node_sends_are_taken() {
        let mut m = Message {
            to: 2,
            from: 1,
            ..Default::default()
        };
        m.set_msg_type(MessageType::MsgAppend);
        m.mut_entries().push(Entry {
            term: 1,
            index: 1,
            ..Default::default()
        });
        m.mut_entries().push(Entry {
            data: crate::proposal::encode_register(1, 1).into(),
            ..Default::default()
        });
        let batch = encode_batch(std::slice::from_ref(&m));
        assert_eq!(decode_batch(&batch, 1 << 20).expect("decodes"), vec![m]);
    }

    #[test]
    fn batches_round_trip() {
        let mut a = Message {
            to: 2,
            from: 1,
            term: 3,
            ..Default::default()
        };
        a.set_msg_type(MessageType::MsgAppend);
        a.mut_entries().push(Entry {
            index: 7,
            data: b"payload".to_vec().into(),
            ..Default::default()
        });
        let mut b = Message {
            to: 3,
            from: 1,
            ..Default::default()
        };
        b.set_msg_type(MessageType::MsgHeartbeat);
        let body = encode_batch(&[a.clone(), b.clone()]);
        assert_eq!(decode_batch(&body, 1 << 20).expect("decodes"), vec![a, b]);
        assert!(decode_batch(&[], 1 << 20).expect("empty body").is_empty());
    }

    #[test]
    fn a_stream_decodes_across_any_chunk_boundary() {
        let messages: Vec<Message> = (1..=3)
            .map(|i| {
                let mut m = Message {
                    to: 2,
                    from: 1,
                    term: i,
                    ..Default::default()
                };
                m.set_msg_type(MessageType::MsgHeartbeat);
                m
            })
            .collect();
        let body = encode_batch(&messages);
        for cut in 0..=body.len() {
            let mut buf = body[..cut].to_vec();
            let mut got = decode_available(&mut buf, 1 << 20).expect("a prefix decodes");
            buf.extend_from_slice(&body[cut..]);
            got.extend(decode_available(&mut buf, 1 << 20).expect("the rest decodes"));
            assert_eq!(got, messages, "cut at {cut}");
            assert!(buf.is_empty());
        }
    }

    /// A length prefix over the limit is refused from its four bytes alone, before the
    /// message arrives; one at the limit waits for its bytes.
    #[test]
    fn a_length_over_the_limit_is_refused_at_once() {
        let mut buf = 1025u32.to_le_bytes().to_vec();
        match decode_available(&mut buf, 1024) {
            Err(WireError::TooLarge { offset, len, limit }) => {
                assert_eq!((offset, len, limit), (0, 1025, 1024));
            }
            other => panic!("expected TooLarge, got {other:?}"),
        }
        let mut buf = 1024u32.to_le_bytes().to_vec();
        assert!(decode_available(&mut buf, 1024).expect("waits").is_empty());
        assert_eq!(buf.len(), 4, "the prefix stays for the rest of its message");
    }

    #[test]
    fn truncated_batches_are_errors() {
        let m = Message {
            to: 2,
            term: 9,
            ..Default::default()
        };
        let body = encode_batch(&[m]);
        for cut in 1..body.len() {
            assert!(decode_batch(&body[..cut], 1 << 20).is_err(), "cut at {cut}");
        }
    }
}
