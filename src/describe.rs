//! Log entries described for a person: a put (with the request's identity), a session
//! registration, a membership change, a new leader's empty entry. `raftexample dump` and the
//! node's Ready trace print entries the same way.

use raft::eraftpb::{ConfChangeType, ConfChangeV2, Entry, EntryType};

use crate::membership::decode_conf_change;
use crate::proposal::{self, Payload};

/// Keys and values are shown up to this many bytes unless asked for whole.
pub const SHOWN_BYTES: usize = 64;

/// One entry, decoded for a person: a put, a conf change, or a new leader's empty entry. Keys
/// and values are cut at [`SHOWN_BYTES`].
pub fn entry_text(e: &Entry) -> String {
    describe_entry(e, Some(SHOWN_BYTES))
}

/// One entry, decoded for a person, with keys and values cut at `limit` bytes (whole with
/// `None`).
pub fn describe_entry(e: &Entry, limit: Option<usize>) -> String {
    match e.get_entry_type() {
        EntryType::EntryNormal if e.data.is_empty() => "empty (a new leader's first entry)".into(),
        EntryType::EntryNormal => {
            let origin = match proposal::decode(&e.data) {
                Ok(Payload::Register { origin, nonce }) => {
                    let nonce = crate::incarnation::hex(nonce);
                    return format!("session registration of node {origin} (nonce {nonce})");
                }
                Ok(Payload::Fence {
                    origin,
                    session,
                    floor,
                }) => {
                    return format!(
                        "fence of node {origin} session {session}: its requests below #{floor} \
                         are given up"
                    );
                }
                Ok(Payload::Proposal { id, .. }) => {
                    format!(" (node {} session {} #{})", id.origin, id.session, id.seq)
                }
                _ => String::new(),
            };
            // Borrowed, and the value looked at only as far as it is shown: a page's status
            // describes the log's last entries four times a second, whole values copied cost
            // milliseconds per MiB on the raft thread (found by a review).
            match crate::kvstore::put_of(&e.data) {
                Ok(Some((key, value))) => format!(
                    "put {} = {}{origin}",
                    quoted(key, limit),
                    quoted_value(value, limit)
                ),
                Ok(None) => "empty".into(),
                Err(err) => format!("undecodable ({} bytes): {err}", e.data.len()),
            }
        }
        EntryType::EntryConfChange | EntryType::EntryConfChangeV2 => {
            match decode_conf_change(e).ok() {
                Some(cc) => conf_change_text(&cc),
                None => format!("undecodable conf change ({} bytes)", e.data.len()),
            }
        }
    }
}

/// `s` quoted and escaped; if longer than `limit` bytes, cut there (at a character boundary)
/// and followed by its full length.
pub fn quoted(s: &str, limit: Option<usize>) -> String {
    let shown = cut(s, limit);
    if shown.len() < s.len() {
        format!("{shown:?}... ({} bytes)", s.len())
    } else {
        format!("{s:?}")
    }
}

/// What is shown of a value cut at some limit.
pub enum ShownValue<'a> {
    /// It is UTF-8 as far as it is shown (ending before a character the limit cuts).
    Text(&'a str),
    /// It is not: its first bytes, shown escaped.
    Bytes(&'a [u8]),
}

impl ShownValue<'_> {
    /// How many of the value's bytes are shown.
    pub fn len(&self) -> usize {
        match self {
            ShownValue::Text(text) => text.len(),
            ShownValue::Bytes(bytes) => bytes.len(),
        }
    }

    /// Whether no byte is shown.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// The shown part as text: itself, or its bytes with printable ASCII as it is and the rest
    /// escaped (`a\xff`), so that a value of any bytes is shown readably and never longer than
    /// four characters a byte.
    pub fn text(&self) -> String {
        match self {
            ShownValue::Text(text) => (*text).to_string(),
            ShownValue::Bytes(bytes) => bytes.escape_ascii().to_string(),
        }
    }
}

/// The first `limit` bytes of `value` (all with `None`), as text if they are UTF-8 (fewer, to
/// end on a character boundary, when the limit falls inside a character); only those bytes
/// are looked at, since a value may be a GiB.
pub fn shown_value(value: &[u8], limit: Option<usize>) -> ShownValue<'_> {
    let shown = &value[..limit.unwrap_or(value.len()).min(value.len())];
    match std::str::from_utf8(shown) {
        Ok(text) => ShownValue::Text(text),
        // Cut inside a character (its first bytes shown only): shown up to it.
        Err(e) if e.error_len().is_none() && shown.len() < value.len() => {
            // Up to `valid_up_to` is UTF-8 by what the error says: the second arm is never
            // taken, and is there rather than an `expect`.
            match std::str::from_utf8(&shown[..e.valid_up_to()]) {
                Ok(text) => ShownValue::Text(text),
                Err(_) => ShownValue::Bytes(shown),
            }
        }
        Err(_) => ShownValue::Bytes(shown),
    }
}

/// [`quoted`] for a value's bytes: as text if they are UTF-8 as far as they are shown, else
/// as a byte string (`b"a\xff"`), cut at `limit` bytes all the same.
fn quoted_value(value: &[u8], limit: Option<usize>) -> String {
    let shown = shown_value(value, limit);
    let quoted = match &shown {
        ShownValue::Text(text) => format!("{text:?}"),
        ShownValue::Bytes(bytes) => format!("b\"{}\"", bytes.escape_ascii()),
    };
    if shown.len() < value.len() {
        format!("{quoted}... ({} bytes)", value.len())
    } else {
        quoted
    }
}

/// The first `limit` bytes of `s`, or fewer to end on a character boundary.
pub fn cut(s: &str, limit: Option<usize>) -> &str {
    let Some(mut end) = limit.filter(|l| *l < s.len()) else {
        return s;
    };
    while !s.is_char_boundary(end) {
        end -= 1;
    }
    &s[..end]
}

/// A membership change, for a person.
pub fn conf_change_text(cc: &ConfChangeV2) -> String {
    if cc.get_changes().is_empty() {
        return "conf-change leave-joint".into();
    }
    let url = String::from_utf8_lossy(&cc.context);
    let parts: Vec<String> = cc
        .get_changes()
        .iter()
        .map(|c| match c.get_change_type() {
            ConfChangeType::AddNode => format!("add node {} url={url}", c.node_id),
            ConfChangeType::AddLearnerNode => format!("add learner {} url={url}", c.node_id),
            ConfChangeType::RemoveNode => format!("remove node {}", c.node_id),
        })
        .collect();
    format!("conf-change {}", parts.join("; "))
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A value is shown as `quoted` shows a string, looked at only as far as it is shown.
    #[test]
    fn a_value_is_shown_as_far_as_its_limit() {
        assert_eq!(quoted_value(b"abc", Some(64)), "\"abc\"");
        assert_eq!(quoted_value(b"abc", None), "\"abc\"");
        // Cut inside the two bytes of "é": shown up to it, as `cut` does.
        let value = "abé".as_bytes();
        assert_eq!(
            quoted_value(value, Some(3)),
            format!("{}... (4 bytes)", quoted("ab", None))
        );
        assert_eq!(quoted_value(value, Some(3)), quoted("abé", Some(3)));
        // Past what is shown, not looked at.
        assert_eq!(quoted_value(b"ab\xff", Some(2)), "\"ab\"... (3 bytes)");
    }

    /// A value that is not UTF-8 is shown as a byte string, escaped, and cut like any other.
    #[test]
    fn a_value_that_is_not_text_is_shown_escaped() {
        assert_eq!(quoted_value(b"a\xffb\0\"", None), r#"b"a\xffb\x00\"""#);
        assert_eq!(
            quoted_value(b"a\xc3", None),
            r#"b"a\xc3""#,
            "a value ending inside a character"
        );
        let long = [0xffu8; 1000];
        assert_eq!(
            quoted_value(&long, Some(SHOWN_BYTES)),
            format!("b\"{}\"... (1000 bytes)", r"\xff".repeat(SHOWN_BYTES))
        );
    }

    #[test]
    fn short_strings_are_shown_whole() {
        assert_eq!(quoted("bar", Some(SHOWN_BYTES)), "\"bar\"");
        let exactly = "x".repeat(SHOWN_BYTES);
        assert_eq!(quoted(&exactly, Some(SHOWN_BYTES)), format!("{exactly:?}"));
    }

    #[test]
    fn long_strings_are_cut_with_their_length() {
        let long = "v".repeat(1 << 20);
        let shown = quoted(&long, Some(SHOWN_BYTES));
        assert_eq!(
            shown,
            format!("\"{}\"... (1048576 bytes)", "v".repeat(SHOWN_BYTES))
        );
        assert_eq!(
            quoted(&long, None).len(),
            long.len() + 2,
            "whole when asked"
        );
    }

    #[test]
    fn a_cut_never_splits_a_character() {
        // 'é' is two bytes; after one 'a' every character starts at an odd offset, so byte 64
        // falls inside one.
        let s = format!("a{}", "é".repeat(40));
        let shown = cut(&s, Some(SHOWN_BYTES));
        assert_eq!(shown.len(), SHOWN_BYTES - 1);
        assert!(s.starts_with(shown));
        assert!(quoted(&s, Some(SHOWN_BYTES)).ends_with("... (81 bytes)"));
    }
}
