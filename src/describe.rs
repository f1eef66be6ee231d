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
                    return format!("session registration of node {origin} (nonce {nonce:x})");
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
            // Borrowed, and the value checked for UTF-8 only as far as it is shown: a page's
            // status describes the log's last entries four times a second, whole values
            // copied cost milliseconds per MiB on the raft thread (found by a review).
            match crate::kvstore::put_bytes_of(&e.data).and_then(|put| {
                put.map(|(k, v)| Ok((k, quoted_value(v, limit)?)))
                    .transpose()
            }) {
                Ok(Some((key, value))) => format!("put {} = {value}{origin}", quoted(key, limit)),
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

/// [`quoted`] for a value's bytes, which must be UTF-8 as far as they are shown.
fn quoted_value(value: &[u8], limit: Option<usize>) -> Result<String, String> {
    let shown = &value[..limit.unwrap_or(value.len()).min(value.len())];
    let text = match std::str::from_utf8(shown) {
        Ok(text) => text,
        // Cut inside a character (its first bytes shown only): shown up to it.
        Err(e) if e.error_len().is_none() && shown.len() < value.len() => {
            std::str::from_utf8(&shown[..e.valid_up_to()]).expect("valid up to there")
        }
        Err(e) => return Err(format!("the value is not UTF-8: {e}")),
    };
    Ok(if text.len() < value.len() {
        format!("{text:?}... ({} bytes)", value.len())
    } else {
        format!("{text:?}")
    })
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

    /// A value is shown as `quoted` shows a string, checked for UTF-8 as far as it is shown.
    #[test]
    fn a_value_is_shown_as_far_as_its_limit() {
        assert_eq!(quoted_value(b"abc", Some(64)), Ok("\"abc\"".to_string()));
        assert_eq!(quoted_value(b"abc", None), Ok("\"abc\"".to_string()));
        // Cut inside the two bytes of "é": shown up to it, as `cut` does.
        let value = "abé".as_bytes();
        assert_eq!(
            quoted_value(value, Some(3)),
            Ok(format!("{}... (4 bytes)", quoted("ab", None)))
        );
        assert_eq!(
            quoted_value(value, Some(3)).ok(),
            Some(quoted("abé", Some(3)))
        );
        assert!(quoted_value(b"a\xffb", Some(64)).is_err());
        assert!(
            quoted_value(b"a\xc3", None).is_err(),
            "a value ending inside a character"
        );
        // Past what is shown, not looked at.
        assert!(quoted_value(b"ab\xff", Some(2)).is_ok());
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
