//! Protobuf decoding that never trusts a length field to size a buffer. Reading from a slice,
//! protobuf 2 reserves what a `bytes` field announces (up to 10 MB) before it checks that the
//! input holds that many bytes: 35 bytes of input could make it hold 850 KB. Reading from a
//! `Bytes`, a field becomes a slice of the input, checked against its end first; and a limit
//! of the input's own length stops the other field kinds (strings) the same way. A leaf
//! module: the transport, membership and storage decoders all use it.

use bytes::Bytes;
use protobuf::{CodedInputStream, Message, ProtobufResult};

/// Parses `bytes` as an `M`, allocating no more than a copy of `bytes` and the message's own
/// structs. Its `bytes` fields share that one copy.
pub fn parse<M: Message>(bytes: &[u8]) -> ProtobufResult<M> {
    parse_into(bytes, M::new())
}

/// [`parse`] into `message` (fresh, its repeated fields perhaps given room beforehand).
pub fn parse_into<M: Message>(bytes: &[u8], message: M) -> ProtobufResult<M> {
    parse_bytes_into(&Bytes::copy_from_slice(bytes), message)
}

fn parse_bytes_into<M: Message>(bytes: &Bytes, mut message: M) -> ProtobufResult<M> {
    let mut input = CodedInputStream::from_carllerche_bytes(bytes);
    input.push_limit(bytes.len() as u64)?;
    message.merge_from(&mut input)?;
    message.check_initialized()?;
    input.check_eof()?;
    Ok(message)
}

#[cfg(test)]
mod tests {
    use super::*;
    use raft::eraftpb::Message as RaftMessage;

    /// A valid message parses as with `parse_from_bytes`; a field announcing more bytes than
    /// the input holds is an error.
    #[test]
    fn parses_like_protobuf_and_refuses_lying_lengths() {
        let m = RaftMessage {
            from: 1,
            to: 2,
            term: 3,
            ..Default::default()
        };
        let bytes = m.write_to_bytes().expect("encoding");
        assert_eq!(parse::<RaftMessage>(&bytes).expect("parses"), m);
        // Field 12 (context, bytes) claiming 2^28 bytes, followed by nothing.
        let lying = [0x62, 0x80, 0x80, 0x80, 0x80, 0x01];
        assert!(parse::<RaftMessage>(&lying).is_err());
        assert!(RaftMessage::parse_from_bytes(&lying).is_err());
    }
}
