//! WAL record framing: the [`Record`] enum, its encoding, and a decoder that tells a torn
//! (incomplete) record from a corrupt one.
//!
//! A record at file offset `off` is
//!
//! ```text
//! +-----------+---------+-----------+------------------+
//! | len: u32  | type:u8 | crc: u32  | payload          |
//! | LE        |         | LE        | (len bytes)      |
//! +-----------+---------+-----------+------------------+
//!   0           4         5           9 (HEADER_LEN)
//! crc = CRC-32C(off as u64 LE ‖ len ‖ type ‖ payload)
//! ```
//!
//! The checksum covers the length and the type, so a flipped length byte is caught rather than
//! sending the reader off to a wrong record boundary. It is also seeded with the record's own
//! file offset: a valid record copied somewhere else (a record embedded in an entry's data, a
//! block the file system put at the wrong place) does not validate. This matters to the torn-tail
//! rule in `replay.rs`, which searches the bytes after a bad record for records that validate.
//!
//! Types: 1 = [`Metadata`] (bincode, standard config), 2 = one raft `Entry`, 3 = `HardState`,
//! 4 = `SnapshotMetadata` (a snapshot marker), the last three as their protobuf encodings;
//! 5 = padding (zeros), which carries nothing and lets a synced write end on a page boundary;
//! 6 = a run of entries with consecutive indexes (what one `Ready` appends):
//!
//! ```text
//! first_index: varint | count: varint | count × (term: varint | type: u8 |
//!                                              data_len: varint | data | ctx_len: varint | ctx)
//! ```
//!
//! 7 = a sync mark, `synced: varint`: a completed sync covered the first `synced` bytes of this
//! segment (never more than the record's own offset: the bytes before it). The WAL appends one
//! after every sync of the active segment and ends each segment header with one; replay uses
//! them to tell damage that a sync covered from an unsynced tail (see `replay.rs`).
//! 8 = a snapshot marker (as type 4) for a snapshot installed from the leader, which replaced
//! the whole log: replay drops every entry written before it.
//! 9 = the end of a segment, `seq: varint | first_index: varint`: the log goes on in the segment
//! of that sequence number and first index. Written, and synced, once that segment's header is
//! durable under a temporary name and before it gets its own, so that a segment that ends with
//! one and has no successor says that the successor went missing (see `replay.rs`).
//! 10 = a promise in a segment's header, no payload: this segment, once another follows it,
//! ends with a type-9 record. Segments rotated before type 9 existed end without one, so only
//! this promise (or a predecessor that ends so) tells replay that one which does not lost its
//! end; the first segment listed has no predecessor to tell it (see `replay.rs`).
//!
//! Varints are LEB128 (7 bits per byte, low bits first). A run costs one header and one
//! checksum, and each entry about 4 bytes beside its data, where a type-2 record costs 9 bytes
//! of header and about 8 of protobuf framing: at 100-byte values that is a tenth of the WAL.
//! The WAL writes entries only as runs; type 2 is still read. Types 7 and 8 are newer than the
//! rest: a WAL without them (written before they existed) reads as before.
//! Type 0 is never valid, so a zeroed region cannot decode as a record. A type above the last
//! one known, under a checksum that holds, is a newer build's record
//! ([`DecodeError::UnknownType`]): replay reports it as such, not as damage.

use protobuf::Message as PbMessage;
use protobuf::ProtobufEnum;
use raft::eraftpb::EntryType;

use crate::varint::{MAX_LEN as MAX_VARINT, put as put_varint};

use super::{Entry, HardState, JoinedAt, Metadata, SnapshotMetadata};

/// Bytes before the payload: length (4), type (1), CRC (4).
pub const HEADER_LEN: usize = 9;

/// Upper bound on a Metadata payload when decoding, so a bad length cannot make bincode allocate
/// wildly. Metadata is a few URLs.
pub(super) const METADATA_LIMIT: usize = 1 << 20;

const TYPE_METADATA: u8 = 1;
const TYPE_ENTRY: u8 = 2;
const TYPE_HARD_STATE: u8 = 3;
const TYPE_SNAPSHOT: u8 = 4;
const TYPE_PADDING: u8 = 5;
const TYPE_ENTRIES: u8 = 6;
const TYPE_SYNCED: u8 = 7;
const TYPE_SNAPSHOT_RESET: u8 = 8;
const TYPE_NEXT: u8 = 9;
const TYPE_CHAINED: u8 = 10;
/// The highest type this version knows.
const TYPE_LAST: u8 = TYPE_CHAINED;

/// One decoded WAL record.
#[derive(Clone, Debug, PartialEq)]
pub enum Record {
    /// The node's identity; the first record of every segment.
    Metadata(Metadata),
    /// A raft log entry. A later entry with the same or a lower index replaces it (and all
    /// entries after it): raft overwrote an uncommitted suffix.
    Entry(Entry),
    /// Raft's hard state (term, vote, commit); the last one wins.
    HardState(HardState),
    /// A snapshot marker: a snapshot with this metadata was saved to the snapshot directory
    /// before this record was written.
    Snapshot(SnapshotMetadata),
    /// Zeros up to a page boundary (this many payload bytes); replay skips it.
    Padding(u32),
    /// Entries with consecutive indexes, each with the meaning of [`Record::Entry`].
    Entries(Vec<Entry>),
    /// A sync mark: a completed sync covered this many bytes from the start of the segment.
    Synced(u64),
    /// A snapshot marker for a snapshot installed from the leader: the log was replaced by the
    /// snapshot, so every entry written before this record is obsolete.
    SnapshotReset(SnapshotMetadata),
    /// The end of this segment: the log goes on in the segment with this sequence number and
    /// first index. Only zeros may follow it.
    Next {
        /// The next segment's sequence number.
        seq: u64,
        /// The index of the first entry the next segment was created to hold.
        first_index: u64,
    },
    /// In a segment's header: once another segment follows it, this one ends with a
    /// [`Record::Next`], so one that does not lost its end.
    Chained,
}

impl Record {
    /// A short name of the record's type, for logs and the dump tool.
    pub fn kind(&self) -> &'static str {
        match self {
            Record::Metadata(_) => "metadata",
            Record::Entry(_) => "entry",
            Record::HardState(_) => "hardstate",
            Record::Snapshot(_) => "snapshot",
            Record::Padding(_) => "padding",
            Record::Entries(_) => "entries",
            Record::Synced(_) => "synced",
            Record::SnapshotReset(_) => "snapshot-reset",
            Record::Next { .. } => "next",
            Record::Chained => "chained",
        }
    }

    /// A borrowed view for [`encode`].
    #[cfg(test)]
    pub(crate) fn as_ref(&self) -> RecordRef<'_> {
        match self {
            Record::Metadata(m) => RecordRef::Metadata(m),
            Record::Entry(e) => RecordRef::Entry(e),
            Record::HardState(h) => RecordRef::HardState(h),
            Record::Snapshot(s) => RecordRef::Snapshot(s),
            Record::Padding(n) => RecordRef::Padding(*n),
            Record::Entries(es) => RecordRef::Entries(es),
            Record::Synced(n) => RecordRef::Synced(*n),
            Record::SnapshotReset(s) => RecordRef::SnapshotReset(s),
            Record::Next { seq, first_index } => RecordRef::Next {
                seq: *seq,
                first_index: *first_index,
            },
            Record::Chained => RecordRef::Chained,
        }
    }
}

/// A record to encode, borrowed so that a batch of entries is framed without cloning them.
#[derive(Clone, Copy, Debug)]
pub enum RecordRef<'a> {
    /// See [`Record::Metadata`].
    Metadata(&'a Metadata),
    /// See [`Record::Entry`]. The WAL writes entries as runs; tests write this older form to
    /// check that it is still read.
    #[cfg(test)]
    Entry(&'a Entry),
    /// See [`Record::HardState`].
    HardState(&'a HardState),
    /// See [`Record::Snapshot`].
    Snapshot(&'a SnapshotMetadata),
    /// See [`Record::Padding`].
    Padding(u32),
    /// See [`Record::Entries`]. The indexes must be consecutive.
    Entries(&'a [Entry]),
    /// See [`Record::Synced`].
    Synced(u64),
    /// See [`Record::SnapshotReset`].
    SnapshotReset(&'a SnapshotMetadata),
    /// See [`Record::Next`].
    Next {
        /// The next segment's sequence number.
        seq: u64,
        /// Its first index.
        first_index: u64,
    },
    /// See [`Record::Chained`].
    Chained,
}

/// Why bytes at some offset are not a valid record.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub enum DecodeError {
    /// The record is incomplete: the file ends inside its header or payload, or everything
    /// from here to the end of the file is zero. This is what a crash in the middle of an
    /// append leaves behind.
    #[error("torn record: {0}")]
    Torn(String),
    /// All bytes are there but the checksum does not match: either a torn append (a sector
    /// that was only partly written) or damage; only the position can tell which.
    #[error("checksum mismatch: {0}")]
    BadChecksum(String),
    /// The checksum matches but the content is invalid (type 0, undecodable payload).
    /// A crash cannot produce this: it is a bug or a foreign file.
    #[error("invalid record: {0}")]
    Corrupt(String),
    /// The checksum matches but the type is above the highest this build knows: a newer
    /// build wrote it (every type so far was added at the top). Not damage, so not to be met
    /// with the lost-disk remedy (an older build gave it for a newer build's type 10).
    #[error("record type {0}, which this build does not know")]
    UnknownType(u8),
}

impl DecodeError {
    /// Whether a crash during an append could have produced this (if it is the file's tail).
    pub fn may_be_torn(&self) -> bool {
        matches!(self, DecodeError::Torn(_) | DecodeError::BadChecksum(_))
    }
}

/// Failure to encode a record (only possible for a payload over 4 GiB or a protobuf message
/// the protobuf crate refuses to write).
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
#[error("cannot encode {kind} record: {reason}")]
pub struct EncodeError {
    /// The record type.
    pub kind: &'static str,
    /// What went wrong.
    pub reason: String,
}

fn checksum(offset: u64, header_without_crc: &[u8], payload: &[u8]) -> u32 {
    let crc = crc32c::crc32c(&offset.to_le_bytes());
    let crc = crc32c::crc32c_append(crc, header_without_crc);
    crc32c::crc32c_append(crc, payload)
}

/// The lowest type this build does not know: what a newer build's record is here.
#[cfg(test)]
pub(crate) const TYPE_UNKNOWN: u8 = TYPE_LAST + 1;

/// Appends a record of type `ty` with `payload` to `buf`, framed and checksummed as [`encode`]
/// does, whatever the type: a newer build's record, or content no build writes.
#[cfg(test)]
pub(crate) fn encode_raw(buf: &mut Vec<u8>, base: u64, ty: u8, payload: &[u8]) {
    let offset = base + buf.len() as u64;
    let len = u32::try_from(payload.len()).expect("test payloads are small");
    let mut header = [0u8; HEADER_LEN];
    seal(&mut header, len, ty, offset, payload);
    buf.extend_from_slice(&header);
    buf.extend_from_slice(payload);
}

/// Appends one framed record to `buf`. `base` is the file offset at which `buf[0]` will be
/// written, so the record's own offset (which seeds its checksum) is `base + buf.len()`.
/// On error `buf` is left as it was.
pub fn encode(buf: &mut Vec<u8>, base: u64, rec: RecordRef<'_>) -> Result<(), EncodeError> {
    let start = buf.len();
    let offset = base + start as u64;
    buf.extend_from_slice(&[0u8; HEADER_LEN]);
    let (ty, kind, res) = match rec {
        RecordRef::Metadata(m) => (
            TYPE_METADATA,
            "metadata",
            bincode::serde::encode_to_vec(m, bincode::config::standard())
                .and_then(|mut bytes| {
                    if let Some(at) = &m.joined_at {
                        bytes.extend(bincode::serde::encode_to_vec(
                            at,
                            bincode::config::standard(),
                        )?);
                    }
                    Ok(bytes)
                })
                .map(|bytes| buf.extend_from_slice(&bytes))
                .map_err(|e| e.to_string()),
        ),
        #[cfg(test)]
        RecordRef::Entry(e) => (
            TYPE_ENTRY,
            "entry",
            e.write_to_vec(buf).map_err(|e| e.to_string()),
        ),
        RecordRef::HardState(h) => (
            TYPE_HARD_STATE,
            "hardstate",
            h.write_to_vec(buf).map_err(|e| e.to_string()),
        ),
        RecordRef::Snapshot(s) => (
            TYPE_SNAPSHOT,
            "snapshot",
            s.write_to_vec(buf).map_err(|e| e.to_string()),
        ),
        RecordRef::Padding(n) => {
            buf.resize(buf.len() + n as usize, 0);
            (TYPE_PADDING, "padding", Ok(()))
        }
        RecordRef::Entries(es) => (TYPE_ENTRIES, "entries", encode_entries(buf, es)),
        RecordRef::Synced(n) => {
            put_varint(buf, n);
            (TYPE_SYNCED, "synced", Ok(()))
        }
        RecordRef::SnapshotReset(s) => (
            TYPE_SNAPSHOT_RESET,
            "snapshot-reset",
            s.write_to_vec(buf).map_err(|e| e.to_string()),
        ),
        RecordRef::Next { seq, first_index } => {
            put_varint(buf, seq);
            put_varint(buf, first_index);
            (TYPE_NEXT, "next", Ok(()))
        }
        RecordRef::Chained => (TYPE_CHAINED, "chained", Ok(())),
    };
    let fail = |buf: &mut Vec<u8>, reason: String| {
        buf.truncate(start);
        Err(EncodeError { kind, reason })
    };
    if let Err(reason) = res {
        return fail(buf, reason);
    }
    let payload_len = buf.len() - start - HEADER_LEN;
    let Ok(len) = u32::try_from(payload_len) else {
        return fail(buf, format!("payload of {payload_len} bytes exceeds 4 GiB"));
    };
    let (header, payload) = buf[start..].split_at_mut(HEADER_LEN);
    seal(header, len, ty, offset, payload);
    Ok(())
}

/// Fills `header` for `payload` (`len` bytes) of type `ty`, the record at file offset
/// `offset`: its length, its type, and the checksum over both and the payload.
fn seal(header: &mut [u8], len: u32, ty: u8, offset: u64, payload: &[u8]) {
    header[0..4].copy_from_slice(&len.to_le_bytes());
    header[4] = ty;
    let crc = checksum(offset, &header[0..5], payload);
    header[5..9].copy_from_slice(&crc.to_le_bytes());
}

/// The payload of a run of entries (see the module doc).
fn encode_entries(buf: &mut Vec<u8>, entries: &[Entry]) -> Result<(), String> {
    let first = entries.first().map_or(0, |e| e.index);
    if let Some((due, e)) = (first..).zip(entries).find(|(due, e)| e.index != *due) {
        return Err(format!(
            "entry index {} where {due} was due: not a run",
            e.index
        ));
    }
    let size: usize = entries
        .iter()
        .map(|e| e.data.len() + e.context.len() + 2 * MAX_VARINT + 1)
        .sum();
    buf.reserve(size + 2 * MAX_VARINT);
    put_varint(buf, first);
    put_varint(buf, entries.len() as u64);
    for e in entries {
        put_varint(buf, e.term);
        buf.push(e.get_entry_type() as u8);
        put_varint(buf, e.data.len() as u64);
        buf.extend_from_slice(&e.data);
        put_varint(buf, e.context.len() as u64);
        buf.extend_from_slice(&e.context);
    }
    Ok(())
}

/// Decodes the payload of a run of entries; every length is checked against what remains.
fn decode_entries(mut p: &[u8]) -> Result<Vec<Entry>, String> {
    let first = take_varint(&mut p)?;
    let count = take_varint(&mut p)?;
    // Each entry takes at least 4 bytes: never size the vector from an unchecked count.
    let mut out = Vec::with_capacity(usize::try_from(count.min(p.len() as u64 / 4)).unwrap_or(0));
    for i in 0..count {
        let term = take_varint(&mut p)?;
        let (&ty, rest) = p.split_first().ok_or("entry type missing")?;
        p = rest;
        let ty = EntryType::from_i32(i32::from(ty)).ok_or(format!("unknown entry type {ty}"))?;
        let data = take_bytes(&mut p)?;
        let context = take_bytes(&mut p)?;
        let mut e = Entry {
            term,
            index: first.checked_add(i).ok_or("entry index overflows")?,
            data: data.to_vec().into(),
            context: context.to_vec().into(),
            ..Default::default()
        };
        e.set_entry_type(ty);
        out.push(e);
    }
    if !p.is_empty() {
        return Err(format!("{} bytes after the last entry", p.len()));
    }
    Ok(out)
}

fn take_varint(p: &mut &[u8]) -> Result<u64, String> {
    crate::varint::take(p).map_err(String::from)
}

fn take_bytes<'a>(p: &mut &'a [u8]) -> Result<&'a [u8], String> {
    let len = take_varint(p)?;
    let len = usize::try_from(len)
        .ok()
        .filter(|&l| l <= p.len())
        .ok_or(format!("length {len} exceeds the {} bytes left", p.len()))?;
    let (bytes, rest) = p.split_at(len);
    *p = rest;
    Ok(bytes)
}

/// A record whose framing and checksum are valid; the payload is not decoded yet.
struct Frame<'a> {
    ty: u8,
    payload: &'a [u8],
}

/// Checks the framing and the checksum of the record starting at `data[off]`, where `data` is
/// a whole segment file (the record's file offset is `off`).
fn decode_frame(data: &[u8], off: usize) -> Result<Frame<'_>, DecodeError> {
    let res = check_frame(data, off);
    let rest = data.get(off..).unwrap_or_default();
    // Zeros up to the end of the file: the file was extended (or a block allocated) but the
    // data never reached the disk. Checked only on failure, to keep decoding linear.
    if res.is_err() && rest.iter().all(|&b| b == 0) {
        return Err(DecodeError::Torn(format!(
            "the last {} bytes of the file are zero",
            rest.len()
        )));
    }
    res
}

/// [`decode_frame`] without the zero-tail diagnosis, so that probing every byte position (see
/// [`records_after`]) costs time proportional to the record sizes only.
fn check_frame(data: &[u8], off: usize) -> Result<Frame<'_>, DecodeError> {
    let rest = data.get(off..).unwrap_or_default();
    if rest.len() < HEADER_LEN {
        return Err(DecodeError::Torn(format!(
            "{} bytes left, less than a record header",
            rest.len()
        )));
    }
    let len = u32::from_le_bytes([rest[0], rest[1], rest[2], rest[3]]) as usize;
    let ty = rest[4];
    let crc = u32::from_le_bytes([rest[5], rest[6], rest[7], rest[8]]);
    let Some(payload) = rest[HEADER_LEN..].get(..len) else {
        return Err(DecodeError::Torn(format!(
            "payload length {len} runs past the end of the file ({} bytes left)",
            rest.len() - HEADER_LEN
        )));
    };
    let actual = checksum(off as u64, &rest[0..5], payload);
    if actual != crc {
        return Err(DecodeError::BadChecksum(format!(
            "stored {crc:#010x}, computed {actual:#010x} (type {ty}, length {len})"
        )));
    }
    if ty > TYPE_LAST {
        return Err(DecodeError::UnknownType(ty));
    }
    if ty < TYPE_METADATA {
        return Err(DecodeError::Corrupt(format!(
            "record type {ty}, which is never valid"
        )));
    }
    Ok(Frame { ty, payload })
}

/// Decodes the record at `data[off]` (`data` is a whole segment file). Returns the record and
/// its total length (header + payload).
pub fn decode(data: &[u8], off: usize) -> Result<(Record, usize), DecodeError> {
    let frame = decode_frame(data, off)?;
    Ok((decode_payload(&frame)?, HEADER_LEN + frame.payload.len()))
}

fn decode_payload(frame: &Frame<'_>) -> Result<Record, DecodeError> {
    let bad = |what: &str, e: String| DecodeError::Corrupt(format!("{what} payload: {e}"));
    let rec = match frame.ty {
        TYPE_METADATA => {
            let cfg = bincode::config::standard().with_limit::<METADATA_LIMIT>();
            let (mut m, mut used) =
                bincode::serde::decode_from_slice::<Metadata, _>(frame.payload, cfg)
                    .map_err(|e| bad("metadata", e.to_string()))?;
            if used < frame.payload.len() {
                let (at, more) =
                    bincode::serde::decode_from_slice::<JoinedAt, _>(&frame.payload[used..], cfg)
                        .map_err(|e| bad("metadata's joined-at", e.to_string()))?;
                m.joined_at = Some(at);
                used += more;
            }
            if used != frame.payload.len() {
                return Err(bad(
                    "metadata",
                    format!("{} trailing bytes", frame.payload.len() - used),
                ));
            }
            Record::Metadata(m)
        }
        TYPE_ENTRY => Record::Entry(
            crate::pb::parse::<Entry>(frame.payload).map_err(|e| bad("entry", e.to_string()))?,
        ),
        TYPE_HARD_STATE => Record::HardState(
            crate::pb::parse::<HardState>(frame.payload)
                .map_err(|e| bad("hardstate", e.to_string()))?,
        ),
        TYPE_SNAPSHOT => Record::Snapshot(
            crate::pb::parse::<SnapshotMetadata>(frame.payload)
                .map_err(|e| bad("snapshot", e.to_string()))?,
        ),
        TYPE_ENTRIES => {
            Record::Entries(decode_entries(frame.payload).map_err(|e| bad("entries", e))?)
        }
        TYPE_SYNCED => {
            let mut p = frame.payload;
            let n = take_varint(&mut p).map_err(|e| bad("synced", e))?;
            if !p.is_empty() {
                return Err(bad("synced", format!("{} trailing bytes", p.len())));
            }
            Record::Synced(n)
        }
        TYPE_SNAPSHOT_RESET => Record::SnapshotReset(
            SnapshotMetadata::parse_from_bytes(frame.payload)
                .map_err(|e| bad("snapshot-reset", e.to_string()))?,
        ),
        TYPE_NEXT => {
            let mut p = frame.payload;
            let seq = take_varint(&mut p).map_err(|e| bad("next", e))?;
            let first_index = take_varint(&mut p).map_err(|e| bad("next", e))?;
            if !p.is_empty() {
                return Err(bad("next", format!("{} trailing bytes", p.len())));
            }
            Record::Next { seq, first_index }
        }
        TYPE_CHAINED if frame.payload.is_empty() => Record::Chained,
        TYPE_CHAINED => {
            return Err(bad(
                "chained",
                format!("{} bytes where none belong", frame.payload.len()),
            ));
        }
        // check_frame admits only known types, so this arm is TYPE_PADDING. The length fits:
        // it was read from the header's u32.
        _ => Record::Padding(frame.payload.len() as u32),
    };
    Ok(rec)
}

/// The padding record that takes a write ending at file offset `end` to the next multiple of
/// `page` (a whole extra page when the gap is too small for a record header), or `None` if
/// `end` is already there.
pub fn padding_to(end: u64, page: u64) -> Option<RecordRef<'static>> {
    let mut gap = (page - end % page) % page;
    if gap == 0 {
        return None;
    }
    if gap < HEADER_LEN as u64 {
        gap += page;
    }
    let payload = u32::try_from(gap - HEADER_LEN as u64).expect("a gap below two pages fits a u32");
    Some(RecordRef::Padding(payload))
}

/// The valid records after a bad one at `bad`, with their offsets: wherever a record with a
/// known type, a length that fits and a matching checksum starts, searching byte by byte (the
/// bad record's length field cannot be trusted), and going on after each record found.
///
/// Linear in the bytes searched plus the payloads of the candidates that get as far as their
/// checksum: zeros never do (type 0), nor does most other data (an unknown type or a length
/// running past the end).
pub fn records_after(data: &[u8], bad: usize) -> impl Iterator<Item = (usize, Record)> + '_ {
    let mut p = bad + 1;
    std::iter::from_fn(move || {
        while p + HEADER_LEN <= data.len() {
            let at = p;
            p += 1;
            if !(TYPE_METADATA..=TYPE_LAST).contains(&data[at + 4]) {
                continue;
            }
            let Ok(frame) = check_frame(data, at) else {
                continue;
            };
            let Ok(rec) = decode_payload(&frame) else {
                continue;
            };
            p = at + HEADER_LEN + frame.payload.len();
            return Some((at, rec));
        }
        None
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use raft::eraftpb::{ConfState, EntryType};

    pub(crate) fn sample_records() -> Vec<Record> {
        let meta = Metadata {
            node_id: 2,
            cluster_id: 0x1000,
            peer_url: "http://127.0.0.1:22379".into(),
            initial_cluster: vec![
                "http://127.0.0.1:12379".into(),
                "http://127.0.0.1:22379".into(),
            ],
            joined_at: None,
        };
        let mut e = Entry {
            term: 3,
            index: 7,
            data: b"hello".to_vec().into(),
            context: b"ctx".to_vec().into(),
            ..Default::default()
        };
        e.set_entry_type(EntryType::EntryConfChangeV2);
        let hs = HardState {
            term: 3,
            vote: 2,
            commit: 6,
            ..Default::default()
        };
        let mut sm = SnapshotMetadata {
            term: 3,
            index: 5,
            ..Default::default()
        };
        sm.set_conf_state(ConfState::from((vec![1, 2, 3], vec![4])));
        let joined = Metadata {
            initial_cluster: vec![],
            joined_at: Some(JoinedAt {
                index: 1 << 40,
                term: 9,
                in_term: 11,
            }),
            ..meta.clone()
        };
        vec![
            Record::Metadata(meta),
            Record::Entry(e),
            Record::Entry(Entry::default()),
            Record::HardState(hs),
            Record::HardState(HardState::default()),
            Record::Snapshot(sm.clone()),
            Record::Padding(0),
            Record::Padding(4000),
            Record::Entries(vec![]),
            Record::Entries(run(1u64 << 40, 3)),
            Record::Synced(0),
            Record::Synced(u64::MAX),
            Record::SnapshotReset(sm),
            Record::Next {
                seq: 1,
                first_index: 0,
            },
            Record::Next {
                seq: u64::MAX,
                first_index: u64::MAX,
            },
            Record::Chained,
            Record::Metadata(joined),
        ]
    }

    /// `n` entries from index `first`, of every type, with and without data and context.
    fn run(first: u64, n: u64) -> Vec<Entry> {
        (first..first + n)
            .map(|index| {
                let mut e = Entry {
                    term: index % 5 + (1 << 35),
                    index,
                    data: vec![index as u8; (index % 300) as usize].into(),
                    context: vec![7u8; (index % 3) as usize * 8].into(),
                    ..Default::default()
                };
                e.set_entry_type(match index % 3 {
                    0 => EntryType::EntryNormal,
                    1 => EntryType::EntryConfChange,
                    _ => EntryType::EntryConfChangeV2,
                });
                e
            })
            .collect()
    }

    #[test]
    fn every_record_type_round_trips() {
        let base = 1000;
        let mut buf = vec![];
        let recs = sample_records();
        for r in &recs {
            encode(&mut buf, base, r.as_ref()).unwrap();
        }
        // Decode as if buf sat at file offset `base`.
        let mut file = vec![0xAAu8; base as usize];
        file.extend_from_slice(&buf);
        let mut off = base as usize;
        for want in &recs {
            let (got, len) = decode(&file, off).unwrap();
            assert_eq!(&got, want);
            off += len;
        }
        assert_eq!(off, file.len());
    }

    /// The metadata of a node that did not join on an empty data dir is written exactly as
    /// before `joined_at` existed, so that an older version still reads its WAL (which checks
    /// that the payload holds nothing more); a joined node's carries it after the rest.
    #[test]
    fn metadata_without_joined_at_is_written_as_before() {
        let Record::Metadata(meta) = &sample_records()[0] else {
            panic!("the first sample is metadata");
        };
        let before = (
            meta.node_id,
            meta.cluster_id,
            meta.peer_url.clone(),
            meta.initial_cluster.clone(),
        );
        let old = bincode::serde::encode_to_vec(&before, bincode::config::standard()).unwrap();
        let mut buf = vec![];
        encode(&mut buf, 0, RecordRef::Metadata(meta)).unwrap();
        assert_eq!(&buf[HEADER_LEN..], &old[..]);
        let joined = Metadata {
            joined_at: Some(JoinedAt {
                index: 7,
                term: 2,
                in_term: 3,
            }),
            ..meta.clone()
        };
        let mut buf = vec![];
        encode(&mut buf, 0, RecordRef::Metadata(&joined)).unwrap();
        assert_eq!(&buf[HEADER_LEN..HEADER_LEN + old.len()], &old[..]);
        assert_eq!(&buf[HEADER_LEN + old.len()..], &[7, 2, 3]);
        assert_eq!(decode(&buf, 0).unwrap().0, Record::Metadata(joined));
    }

    #[test]
    fn encode_appends_to_an_existing_buffer() {
        let mut buf = b"prefix".to_vec();
        let recs = sample_records();
        encode(&mut buf, 0, recs[1].as_ref()).unwrap();
        assert_eq!(&buf[..6], b"prefix");
        assert_eq!(decode(&buf, 6).unwrap().0, recs[1]);
    }

    #[test]
    fn a_record_moved_to_another_offset_does_not_validate() {
        let mut buf = vec![];
        encode(&mut buf, 0, sample_records()[1].as_ref()).unwrap();
        let mut moved = vec![1u8; 3];
        moved.extend_from_slice(&buf);
        assert!(matches!(
            decode(&moved, 3),
            Err(DecodeError::BadChecksum(_))
        ));
    }

    #[test]
    fn every_flipped_byte_is_detected() {
        let mut buf = vec![];
        encode(&mut buf, 0, sample_records()[1].as_ref()).unwrap();
        for i in 0..buf.len() {
            let mut bad = buf.clone();
            bad[i] ^= 0x01;
            let err = decode(&bad, 0).unwrap_err();
            // A flipped length may also point past the end: that reads as torn.
            assert!(err.may_be_torn(), "byte {i}: {err}");
        }
    }

    #[test]
    fn short_and_zeroed_tails_are_torn() {
        let mut buf = vec![];
        encode(&mut buf, 0, sample_records()[1].as_ref()).unwrap();
        for cut in 0..buf.len() {
            let err = decode(&buf[..cut], 0).unwrap_err();
            assert!(matches!(err, DecodeError::Torn(_)), "cut {cut}: {err}");
        }
        let zeros = vec![0u8; 64];
        assert!(matches!(decode(&zeros, 0), Err(DecodeError::Torn(_))));
        assert!(records_after(&zeros, 0).next().is_none());
    }

    /// A whole record of a type above the last known is a newer build's, told apart from
    /// damage (an older build called type 10 "invalid" and was then advised as for a lost
    /// disk: review 111); type 0, which no build writes, and a payload that does not decode
    /// are damage. None of them is torn.
    #[test]
    fn valid_checksum_with_bad_content_is_corrupt_not_torn() {
        for (ty, payload) in [
            (TYPE_UNKNOWN, &[][..]),
            (99, &[1, 2, 3][..]),
            (255, &[][..]),
        ] {
            let mut rec = vec![];
            encode_raw(&mut rec, 0, ty, payload);
            let err = decode(&rec, 0).unwrap_err();
            assert_eq!(err, DecodeError::UnknownType(ty));
            assert!(!err.may_be_torn(), "{err}");
        }
        let mut rec = vec![];
        encode_raw(&mut rec, 0, 0, &[7]);
        assert!(matches!(decode(&rec, 0), Err(DecodeError::Corrupt(_))));

        // A hard state whose payload is not protobuf.
        let mut rec = vec![];
        encode_raw(&mut rec, 0, TYPE_HARD_STATE, &[0xFF; 4]);
        assert!(matches!(decode(&rec, 0), Err(DecodeError::Corrupt(_))));
    }

    #[test]
    fn padding_ends_a_write_on_a_page_boundary() {
        for start in 0..2 * 4096u64 {
            let mut buf = vec![];
            match padding_to(start, 4096) {
                None => assert_eq!(start % 4096, 0),
                Some(pad) => {
                    encode(&mut buf, start, pad).unwrap();
                    assert_eq!((start + buf.len() as u64) % 4096, 0, "from {start}");
                    assert!(buf.len() <= 4096 + HEADER_LEN, "from {start}");
                    let mut file = vec![0u8; start as usize];
                    file.extend_from_slice(&buf);
                    let (rec, len) = decode(&file, start as usize).unwrap();
                    assert!(matches!(rec, Record::Padding(_)));
                    assert_eq!(len, buf.len());
                }
            }
        }
    }

    #[test]
    fn runs_of_entries_round_trip_and_refuse_gaps() {
        for n in [1, 2, 100, 1000] {
            let es = run(7, n);
            let mut buf = vec![];
            encode(&mut buf, 0, RecordRef::Entries(&es)).unwrap();
            assert_eq!(decode(&buf, 0).unwrap(), (Record::Entries(es), buf.len()));
        }
        let mut gap = run(7, 3);
        gap[2].index = 10;
        let mut buf = b"x".to_vec();
        assert!(encode(&mut buf, 0, RecordRef::Entries(&gap)).is_err());
        assert_eq!(buf, b"x", "a failed encode leaves the buffer as it was");
    }

    /// A run whose checksum holds but whose payload lies (lengths, counts, types, varints) is
    /// an error, never a panic or a huge allocation.
    #[test]
    fn a_malformed_run_with_a_valid_checksum_is_corrupt() {
        let mut payload = vec![];
        encode_entries(&mut payload, &run(1, 4)).unwrap();
        let mut bad_payloads = vec![
            vec![],
            vec![0xFF; 11],
            {
                let mut p = vec![];
                put_varint(&mut p, 1);
                put_varint(&mut p, u64::MAX);
                p
            },
            {
                let mut p = payload.clone();
                p.push(0);
                p
            },
        ];
        for cut in 0..payload.len() {
            bad_payloads.push(payload[..cut].to_vec());
        }
        for (i, p) in bad_payloads.iter().enumerate() {
            let mut rec = vec![0u8; HEADER_LEN];
            rec[0..4].copy_from_slice(&(p.len() as u32).to_le_bytes());
            rec[4] = TYPE_ENTRIES;
            let crc = checksum(0, &rec[0..5], p);
            rec[5..9].copy_from_slice(&crc.to_le_bytes());
            rec.extend_from_slice(p);
            let err = decode(&rec, 0).unwrap_err();
            assert!(matches!(err, DecodeError::Corrupt(_)), "payload {i}: {err}");
        }
    }

    #[test]
    fn forward_search_finds_the_records_after_damage() {
        let mut buf = vec![];
        let recs = sample_records();
        encode(&mut buf, 0, recs[1].as_ref()).unwrap();
        let second = buf.len();
        encode(&mut buf, 0, recs[3].as_ref()).unwrap();
        let third = buf.len();
        encode(&mut buf, 0, RecordRef::Synced(second as u64)).unwrap();
        buf.extend_from_slice(&[0; 100]);
        buf[2] ^= 0xFF;
        let found: Vec<_> = records_after(&buf, 0).collect();
        assert_eq!(
            found,
            vec![
                (second, recs[3].clone()),
                (third, Record::Synced(second as u64))
            ]
        );
        assert_eq!(records_after(&buf, third).count(), 0);
    }
}
