//! `raftexample dump`: every WAL record and snapshot file of a data dir, one line each (one
//! per entry of a run of entries), for a person learning what raft writes (or a script, with
//! `--json`, whose lines also give each record's length on disk). Read-only and lock-free, so
//! it works on a stopped node's files and on a broken WAL: it prints the good records and then
//! where and why reading stopped. The unsynced tail a crash leaves at the end of the newest
//! segment stops nothing: a start cuts it and goes on, and a line says so. Keys and values
//! longer than [`SHOWN_BYTES`] are cut there, with their full length, unless `--full-values`
//! asks for them whole: a 1 MiB value would otherwise be a 1 MiB line. A last line gives the
//! cluster's incarnation as a start of the node would know it (see [`crate::incarnation`]).
//! Where every record reads but a start would still refuse the data dir (its log lacks
//! entries: a segment deleted, or the snapshot files that covered them gone), the incarnation
//! is unknown, and a line after it says why, with the start's own words: it would otherwise be
//! one from a log that is not the node's.

use std::collections::BTreeMap;
use std::io::Write;
use std::path::Path;

use raft::eraftpb::{Entry, EntryType, SnapshotMetadata};
use serde_json::{Value, json};

use crate::config::Config;
use crate::describe::{
    SHOWN_BYTES, ShownValue, conf_change_text, cut, describe_entry, shown_value,
};
use crate::disk::StdFs;
use crate::incarnation::Incarnation;
use crate::kvstore::{Command, decode_snapshot};
use crate::membership::decode_conf_change;
use crate::proposal::{self, Payload};
use crate::raft_node::StartError;
use crate::wal::{self, Record};

/// What `raftexample dump` prints.
#[derive(Debug, Clone, Default)]
pub struct Options {
    /// JSON lines instead of text.
    pub json: bool,
    /// Keys and values whole instead of cut at [`SHOWN_BYTES`].
    pub full_values: bool,
}

impl Options {
    fn limit(&self) -> Option<usize> {
        (!self.full_values).then_some(SHOWN_BYTES)
    }
}

/// Why the dump could not finish.
#[derive(Debug, thiserror::Error)]
pub enum DumpError {
    /// The WAL could not be read on (damage, or a record of a newer build); everything before
    /// was printed.
    #[error("WAL reading stopped: {0}")]
    Wal(#[from] wal::Error),
    /// Writing the output failed (a closed pipe, as under `| head`, is one way).
    #[error("cannot write output: {0}")]
    Output(#[from] std::io::Error),
    /// Every record reads, but a start would refuse the data dir: its log lacks entries
    /// (a segment deleted, or the snapshots that covered them gone), or the snapshot it would
    /// load cannot be. Everything was printed.
    #[error("a start refuses this data dir: {0}")]
    Refused(StartError),
    /// Nothing to dump.
    #[error(
        "no WAL in {0}: is --data-dir/--id right? (the WAL folder is <data-dir>/raftexample-<id>)"
    )]
    NoWal(String),
}

/// Prints the WAL, then the snapshot files, of the node `config` names.
pub fn run(config: &Config, options: &Options, out: &mut impl Write) -> Result<(), DumpError> {
    let as_json = options.json;
    let limit = options.limit();
    let wal_dir = config.wal_dir();
    if !wal::Wal::exists(&wal_dir) {
        return Err(DumpError::NoWal(wal_dir.display().to_string()));
    }
    let mut write_error = None;
    let mut trail = IncarnationTrail::default();
    let scanned = wal::scan_to_tail(&wal_dir, |path, offset, len, record| {
        trail.note(record);
        if write_error.is_some() {
            return;
        }
        let lines = if as_json {
            record_json(path, offset, len, record, limit)
                .iter()
                .map(Value::to_string)
                .collect()
        } else {
            record_text(path, offset, record, limit)
        };
        for line in lines {
            if let Err(err) = writeln!(out, "{line}") {
                write_error = Some(err);
                return;
            }
        }
    });
    if let Some(err) = write_error {
        return Err(err.into());
    }
    if let Ok(Some(torn)) = &scanned {
        // Where the records end: what a crash left, which a start cuts with a warning and
        // goes on from, so no failure of the dump either (its judgement below is a start's).
        writeln!(out, "{}", torn_tail_line(torn, as_json))?;
    }
    // Snapshots are listed even when the WAL is damaged: they may be what is left.
    let snapshots = dump_snapshots(&config.snap_dir(), as_json, out)?;
    if let Err(err) = scanned {
        let line = if as_json {
            json!({"type": "error", "error": err.to_string()}).to_string()
        } else {
            format!("stopped: {err}")
        };
        writeln!(out, "{line}")?;
        out.flush()?;
        return Err(err.into());
    }
    // Every record reads; a start would still refuse a log that lacks entries, which would
    // make the incarnation below one of a log that is not the node's.
    let incarnations = incarnations(&snapshots);
    let judged = judge_log(config, snapshots);
    let (incarnation, from) = match &judged {
        Ok(()) => trail.conclude(&incarnations),
        Err(_) => (
            "?".into(),
            "unknown: a start refuses this data dir, as the next line says".into(),
        ),
    };
    let line = if as_json {
        json!({"type": "incarnation", "incarnation": incarnation, "from": from}).to_string()
    } else {
        format!("incarnation  {incarnation}  ({from})")
    };
    writeln!(out, "{line}")?;
    if let Err(err) = judged {
        // In the start's words, as a damaged record is told in the WAL's.
        let line = if as_json {
            json!({"type": "error", "error": err.to_string()}).to_string()
        } else {
            format!("refused: {err}")
        };
        writeln!(out, "{line}")?;
        out.flush()?;
        return Err(DumpError::Refused(err));
    }
    out.flush()?;
    Ok(())
}

/// The line of an unsynced tail of the newest segment: what a start does with it.
fn torn_tail_line(torn: &wal::TornTail, as_json: bool) -> String {
    let bytes = torn.file_len - torn.offset;
    if as_json {
        json!({
            "file": short(&torn.path), "offset": torn.offset, "type": "torn-tail",
            "bytes": bytes, "reason": torn.reason, "start": "cuts it and goes on",
        })
        .to_string()
    } else {
        format!(
            "tail: a start cuts the last {bytes} bytes at offset {} of {} and goes on: an \
             unsynced tail ({}), which no completed sync covered",
            torn.offset,
            torn.path.display(),
            torn.reason
        )
    }
}

/// A snapshot file as dump read it.
struct SnapshotFile {
    /// The term and index its name says.
    term: u64,
    index: u64,
    /// Its incarnation where the file reads whole and its data decodes; else why not, as a
    /// start's load would say it.
    read: Result<Incarnation, crate::snapshotter::Error>,
}

/// Every snapshot file there, by (term, index), with its incarnation if it reads and its data
/// decodes (a file there that does not read is told apart from one that is missing).
fn incarnations(snapshots: &[SnapshotFile]) -> BTreeMap<(u64, u64), Option<Incarnation>> {
    snapshots
        .iter()
        .map(|f| ((f.term, f.index), f.read.as_ref().ok().copied()))
        .collect()
}

/// What a start would say of the data dir whose WAL reads whole: the snapshot it would load
/// from `snapshots` (the newest file a WAL marker names, passing over damaged ones, as
/// [`crate::snapshotter::Snapshotter::load_newest_available_with`] does, but setting nothing
/// aside), then the log after it, checked by the start's own
/// [`crate::raft_node::replay::check_log_unreplayed`].
fn judge_log(config: &Config, snapshots: Vec<SnapshotFile>) -> Result<(), StartError> {
    let Some(contents) = wal::read_contents_on(&StdFs, &config.wal_dir())? else {
        // A start first finishes the rotation a crash interrupted, then reads the WAL again:
        // there is no log to judge before that.
        return Ok(());
    };
    let markers = &contents.snapshot_markers;
    let mut damaged = Vec::new();
    let mut loaded = None;
    let named = snapshots.into_iter().rev().filter_map(|file| {
        let marker = markers
            .iter()
            .find(|m| (m.term, m.index) == (file.term, file.index))?;
        Some((file.read, marker))
    });
    for (read, marker) in named {
        match read {
            Ok(_) => {
                loaded = Some(marker);
                break;
            }
            Err(err @ crate::snapshotter::Error::Corrupt { .. }) => damaged.push(err.to_string()),
            // The load refuses any other failure rather than fall back past it.
            Err(err) => return Err(err.into()),
        }
    }
    crate::raft_node::replay::check_log_unreplayed(config, &contents, loaded, &damaged)
}

/// Prints each snapshot file; returns them as read, oldest first (by index, then term, as
/// the snapshotter orders them).
fn dump_snapshots(
    dir: &Path,
    as_json: bool,
    out: &mut impl Write,
) -> Result<Vec<SnapshotFile>, DumpError> {
    let mut read = Vec::new();
    let Ok(files) = crate::snapshotter::list_files(dir) else {
        return Ok(read);
    };
    for path in files {
        let name = path.file_name().and_then(|n| n.to_str()).unwrap_or("");
        let Some((term, index)) = crate::snapshotter::parse_snap_name(name) else {
            continue;
        };
        let line = match crate::snapshotter::read_file(&path) {
            Ok(snap) => {
                let (line, decoded) = snapshot_file_line(&path, &snap, as_json);
                let read_as = decoded.map_err(|reason| crate::snapshotter::Error::Decode {
                    path: path.clone(),
                    reason,
                });
                read.push(SnapshotFile {
                    term,
                    index,
                    read: read_as,
                });
                line
            }
            Err(err) => {
                let line = if as_json {
                    json!({
                        "file": path.display().to_string(),
                        "type": "snapshot-file",
                        "error": err.to_string(),
                    })
                    .to_string()
                } else {
                    format!("{}  snapshot-file  unreadable: {err}", path.display())
                };
                read.push(SnapshotFile {
                    term,
                    index,
                    read: Err(err),
                });
                line
            }
        };
        writeln!(out, "{line}")?;
    }
    Ok(read)
}

/// The line of a snapshot file that reads, and its incarnation if its data decodes (else the
/// decoder's complaint). In JSON,
/// `keys` is a number and `members` maps each id to its peer URL, as scripts take them (an
/// undecodable file gives them as `null`, with an `error`).
fn snapshot_file_line(
    path: &Path,
    snap: &raft::eraftpb::Snapshot,
    as_json: bool,
) -> (String, Result<Incarnation, String>) {
    let meta = snap.get_metadata();
    let file = path.display().to_string();
    let voters = sorted_voters(meta);
    let decoded = decode_snapshot(&snap.data);
    let line = match (&decoded, as_json) {
        (Ok((state, map)), true) => json!({
            "file": file, "type": "snapshot-file", "term": meta.term, "index": meta.index,
            "voters": voters, "members": state.members.urls, "keys": map.len(),
            "incarnation": state.incarnation.text(), "bytes": snap.data.len(),
        })
        .to_string(),
        (Err(e), true) => json!({
            "file": file, "type": "snapshot-file", "term": meta.term, "index": meta.index,
            "voters": voters, "members": null, "keys": null, "incarnation": null,
            "bytes": snap.data.len(), "error": format!("its data does not decode: {e}"),
        })
        .to_string(),
        (Ok((state, map)), false) => {
            let members: Vec<String> = state
                .members
                .urls
                .iter()
                .map(|(id, url)| format!("{id}={url}"))
                .collect();
            format!(
                "{file}  snapshot-file  term={} index={} voters={voters:?} members={} keys={} \
                 incarnation={} bytes={}",
                meta.term,
                meta.index,
                members.join(","),
                map.len(),
                state.incarnation.text(),
                snap.data.len()
            )
        }
        (Err(e), false) => format!(
            "{file}  snapshot-file  term={} index={} voters={voters:?} members=undecodable: {e} \
             keys=? incarnation=? bytes={}",
            meta.term,
            meta.index,
            snap.data.len()
        ),
    };
    (
        line,
        decoded
            .map(|(state, _)| state.incarnation)
            .map_err(|e| e.to_string()),
    )
}

/// A snapshot's voters in ascending order: raft keeps them in no order, and `[2, 1, 3]`
/// reads like a fault.
fn sorted_voters(meta: &SnapshotMetadata) -> Vec<u64> {
    let mut voters = meta.get_conf_state().voters.clone();
    voters.sort_unstable();
    voters
}

/// The incarnation a start would know (see `raft_node::replay_wal`), followed through the
/// records as they are read: the newest snapshot marker's, or else the first session
/// registration among the entries committed after it.
#[derive(Debug, Default)]
struct IncarnationTrail {
    /// The registrations of the log as written so far, by index: an entry written at an index
    /// replaces the log from there on (a new leader overwrote it).
    registrations: BTreeMap<u64, u64>,
    /// The newest snapshot marker, as (term, index).
    snapshot: Option<(u64, u64)>,
    /// The newest hard state's commit index.
    commit: u64,
}

impl IncarnationTrail {
    fn note(&mut self, record: &Record) {
        match record {
            Record::HardState(hs) => self.commit = hs.commit,
            Record::Snapshot(meta) => self.snapshot = Some((meta.term, meta.index)),
            Record::SnapshotReset(meta) => {
                self.snapshot = Some((meta.term, meta.index));
                self.registrations.clear();
            }
            Record::Entry(e) => self.note_entry(e),
            Record::Entries(es) => es.iter().for_each(|e| self.note_entry(e)),
            Record::Metadata(_)
            | Record::Synced(_)
            | Record::Padding(_)
            | Record::Next { .. }
            | Record::Chained => {}
        }
    }

    fn note_entry(&mut self, e: &Entry) {
        self.registrations.split_off(&e.index);
        if e.get_entry_type() == EntryType::EntryNormal
            && let Ok(Payload::Register { nonce, .. }) = proposal::decode(&e.data)
        {
            self.registrations.insert(e.index, nonce);
        }
    }

    /// The incarnation as text, and where it comes from, given every snapshot file there,
    /// with its incarnation if it decodes.
    fn conclude(&self, snapshots: &BTreeMap<(u64, u64), Option<Incarnation>>) -> (String, String) {
        let (from_snapshot, after) = match self.snapshot {
            None => (Incarnation::NotYet, 0),
            Some(key) => match snapshots.get(&key) {
                Some(Some(incarnation)) => (*incarnation, key.1),
                Some(None) => {
                    return (
                        "?".into(),
                        format!("the snapshot at index {} cannot be read", key.1),
                    );
                }
                // Told apart from a file that is there but unreadable (a hands-on campaign
                // read "cannot be read" of a deleted file, and looked for damage).
                None => {
                    return (
                        "?".into(),
                        format!(
                            "the snapshot at index {} is missing: no file {}",
                            key.1,
                            crate::snapshotter::snap_name(key.0, key.1)
                        ),
                    );
                }
            },
        };
        match from_snapshot {
            Incarnation::Known(_) => (
                from_snapshot.text(),
                format!("from the snapshot at index {after}"),
            ),
            Incarnation::Unknown => (
                from_snapshot.text(),
                format!(
                    "the snapshot at index {after} was written by a version that did not \
                     record it"
                ),
            ),
            Incarnation::NotYet => {
                let committed = self.registrations.range(after + 1..=self.commit.max(after));
                let mut incarnation = Incarnation::NotYet;
                for (index, nonce) in committed {
                    if incarnation.note_registration(*nonce).is_some() {
                        let from = format!("the first session registration, at index {index}");
                        return (incarnation.text(), from);
                    }
                }
                (
                    incarnation.text(),
                    "no session registration committed yet".into(),
                )
            }
        }
    }
}

/// One line per record, and per entry of a run of entries.
fn record_text(path: &Path, offset: u64, record: &Record, limit: Option<usize>) -> Vec<String> {
    let place = format!("{}@{offset}", short(path));
    let entry_line = |e: &Entry| {
        format!(
            "{place}  entry  term={} index={} {}",
            e.term,
            e.index,
            describe_entry(e, limit)
        )
    };
    let line = match record {
        Record::Metadata(m) => format!(
            "{place}  metadata  node={} cluster={} peer={} initial-cluster={}",
            m.node_id,
            crate::incarnation::hex(m.cluster_id),
            m.peer_url,
            match (&m.joined_at, m.initial_cluster.is_empty()) {
                (Some(at), _) => format!(
                    "(joined in term {}; its admitters had applied index {} of term {})",
                    at.in_term, at.index, at.term
                ),
                (None, true) => "(joined)".to_string(),
                (None, false) => m.initial_cluster.join(","),
            }
        ),
        Record::HardState(hs) => format!(
            "{place}  hardstate  term={} vote={} commit={}",
            hs.term, hs.vote, hs.commit
        ),
        Record::Snapshot(meta) => format!("{place}  snapshot-marker  {}", snapshot_text(meta)),
        Record::SnapshotReset(meta) => format!(
            "{place}  snapshot-marker  {} reset (from the leader: replaces the log)",
            snapshot_text(meta)
        ),
        Record::Synced(n) => {
            format!("{place}  synced  the first {n} bytes of this file are on disk")
        }
        Record::Entry(e) => entry_line(e),
        Record::Entries(es) => return es.iter().map(entry_line).collect(),
        Record::Padding(n) => format!("{place}  padding  {n} zero bytes (to a page boundary)"),
        Record::Next { seq, first_index } => format!(
            "{place}  next  the log goes on in {}",
            crate::wal::segment_name(*seq, *first_index)
        ),
        Record::Chained => {
            format!("{place}  chained  this file ends with a next line once a newer one follows")
        }
    };
    vec![line]
}

fn snapshot_text(meta: &SnapshotMetadata) -> String {
    format!(
        "term={} index={} voters={:?}",
        meta.term,
        meta.index,
        sorted_voters(meta)
    )
}

/// The file name without its folders: the folder is the same on every line.
fn short(path: &Path) -> String {
    path.file_name()
        .map(|n| n.to_string_lossy().into_owned())
        .unwrap_or_else(|| path.display().to_string())
}

/// One JSON object per record, and per entry of a run of entries; `len` is the record's
/// length on disk (shared by the entries of a run).
fn record_json(
    path: &Path,
    offset: u64,
    len: u64,
    record: &Record,
    limit: Option<usize>,
) -> Vec<Value> {
    let file = short(path);
    let value = match record {
        Record::Metadata(m) => json!({
            "file": file, "offset": offset, "type": "metadata", "node": m.node_id,
            "cluster": crate::incarnation::hex(m.cluster_id), "peer_url": m.peer_url,
            "initial_cluster": m.initial_cluster,
            "joined_at": m.joined_at.map(|at| json!({
                "index": at.index, "term": at.term, "in_term": at.in_term,
            })),
        }),
        Record::HardState(hs) => json!({
            "file": file, "offset": offset, "type": "hardstate",
            "term": hs.term, "vote": hs.vote, "commit": hs.commit,
        }),
        Record::Snapshot(meta) => json!({
            "file": file, "offset": offset, "type": "snapshot-marker",
            "term": meta.term, "index": meta.index, "voters": sorted_voters(meta),
        }),
        Record::SnapshotReset(meta) => json!({
            "file": file, "offset": offset, "type": "snapshot-marker", "reset": true,
            "term": meta.term, "index": meta.index, "voters": sorted_voters(meta),
        }),
        Record::Padding(n) => json!({
            "file": file, "offset": offset, "type": "padding", "bytes": n,
        }),
        Record::Synced(n) => json!({
            "file": file, "offset": offset, "type": "synced", "bytes": n,
        }),
        Record::Next { seq, first_index } => json!({
            "file": file, "offset": offset, "type": "next",
            "next_file": crate::wal::segment_name(*seq, *first_index),
        }),
        Record::Chained => json!({"file": file, "offset": offset, "type": "chained"}),
        Record::Entry(e) => entry_json(&file, offset, e, limit),
        Record::Entries(es) => {
            return es
                .iter()
                .map(|e| with_len(entry_json(&file, offset, e, limit), len))
                .collect();
        }
    };
    vec![with_len(value, len)]
}

fn with_len(mut v: Value, len: u64) -> Value {
    if let Some(obj) = v.as_object_mut() {
        obj.insert("len".into(), len.into());
    }
    v
}

/// A put gives its key and value (cut at `limit`), their full lengths in bytes, and
/// `"cut": true` when either was cut. A value whose shown bytes are not UTF-8 is given escaped
/// (`a\xff`) with `"value_escaped": true`; a cut value may hold other bytes past the cut.
fn entry_json(file: &str, offset: u64, e: &Entry, limit: Option<usize>) -> Value {
    let mut v = json!({
        "file": file, "offset": offset, "type": "entry",
        "term": e.term, "index": e.index,
    });
    let detail = match e.get_entry_type() {
        EntryType::EntryNormal if e.data.is_empty() => {
            json!({"entry_type": "normal", "op": "empty"})
        }
        EntryType::EntryNormal => match (proposal::decode(&e.data), Command::from_entry(&e.data)) {
            (Ok(Payload::Register { origin, nonce }), _) => {
                json!({"entry_type": "normal", "op": "register", "origin": origin, "nonce": nonce})
            }
            (
                Ok(Payload::Fence {
                    origin,
                    session,
                    floor,
                }),
                _,
            ) => json!({
                "entry_type": "normal", "op": "fence",
                "origin": origin, "session": session, "floor": floor,
            }),
            (payload, Ok(Some(Command::Put { key, value }))) => {
                let (shown_key, shown_value) = (cut(&key, limit), shown_value(&value, limit));
                let mut put = json!({
                    "entry_type": "normal", "op": "put",
                    "key": shown_key, "value": shown_value.text(),
                    "key_bytes": key.len(), "value_bytes": value.len(),
                });
                if let ShownValue::Bytes(_) = shown_value {
                    put["value_escaped"] = true.into();
                }
                if shown_key.len() < key.len() || shown_value.len() < value.len() {
                    put["cut"] = true.into();
                }
                if let (Ok(Payload::Proposal { id, .. }), Some(obj)) =
                    (payload, put.as_object_mut())
                {
                    obj.insert("origin".into(), id.origin.into());
                    obj.insert("session".into(), id.session.into());
                    obj.insert("seq".into(), id.seq.into());
                }
                put
            }
            (_, Ok(None)) => json!({"entry_type": "normal", "op": "empty"}),
            (_, Err(err)) => {
                json!({"entry_type": "normal", "op": "undecodable", "error": err})
            }
        },
        _ => json!({
            "entry_type": "conf-change",
            "change": decode_conf_change(e)
                .ok()
                .map_or_else(|| "undecodable".to_string(), |cc| conf_change_text(&cc)),
        }),
    };
    if let (Some(obj), Value::Object(extra)) = (v.as_object_mut(), detail) {
        obj.extend(extra);
    }
    v
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::wal::{JoinedAt, Metadata};

    /// The incarnation line follows the log as a start reads it: the first registration
    /// committed, not one a new leader overwrote nor one beyond the commit; a snapshot marker
    /// gives its file's, and an older version's snapshot says it is unknown.
    #[test]
    fn the_incarnation_is_the_first_committed_registration_or_the_snapshots() {
        let register = |index: u64, term: u64, nonce: u64| {
            Record::Entry(Entry {
                index,
                term,
                data: proposal::encode_register(1, nonce).into(),
                ..Default::default()
            })
        };
        let hs = |commit: u64| {
            Record::HardState(raft::eraftpb::HardState {
                term: 3,
                commit,
                ..Default::default()
            })
        };
        let mut trail = IncarnationTrail::default();
        for record in [register(2, 2, 0xa1), register(3, 2, 0xa2), hs(1)] {
            trail.note(&record);
        }
        let none = BTreeMap::new();
        assert_eq!(trail.conclude(&none).0, "not-yet", "nothing committed");
        // A new leader overwrote both (its empty entry first), then committed its own.
        let empty = Record::Entry(Entry {
            index: 2,
            term: 3,
            ..Default::default()
        });
        for record in [empty, register(3, 3, 0xb1), hs(3)] {
            trail.note(&record);
        }
        assert_eq!(
            trail.conclude(&none),
            (
                "00000000000000b1".to_string(),
                "the first session registration, at index 3".to_string()
            )
        );
        let meta = SnapshotMetadata {
            term: 3,
            index: 5,
            ..Default::default()
        };
        trail.note(&Record::SnapshotReset(meta));
        assert_eq!(
            trail.conclude(&none),
            (
                "?".to_string(),
                "the snapshot at index 5 is missing: no file \
                 0000000000000003-0000000000000005.snap"
                    .to_string()
            )
        );
        let unreadable = BTreeMap::from([((3, 5), None)]);
        assert!(trail.conclude(&unreadable).1.contains("cannot be read"));
        let older = BTreeMap::from([((3, 5), Some(Incarnation::Unknown))]);
        assert_eq!(trail.conclude(&older).0, "unknown");
        let known = BTreeMap::from([((3, 5), Some(Incarnation::Known(0xc1)))]);
        assert_eq!(trail.conclude(&known).0, "00000000000000c1");
    }

    /// A node that joined on an empty data dir: its metadata says where its admitters were,
    /// which it votes by until its log commits that far.
    #[test]
    fn a_joined_nodes_metadata_says_what_its_admitters_had_applied() {
        let joined = Metadata {
            node_id: 4,
            cluster_id: 0xabc,
            peer_url: "http://127.0.0.1:4".into(),
            initial_cluster: vec![],
            joined_at: Some(JoinedAt {
                index: 30,
                term: 4,
                in_term: 6,
            }),
        };
        let path = Path::new("/data/wal/0000000000000000-0000000000000000.wal");
        let record = Record::Metadata(joined.clone());
        let text = record_text(path, 0, &record, None);
        assert!(
            text[0].ends_with(
                "initial-cluster=(joined in term 6; its admitters had applied index 30 of term 4)"
            ),
            "{text:?}"
        );
        let json = record_json(path, 0, 64, &record, None);
        assert_eq!(
            json[0]["joined_at"],
            json!({"index": 30, "term": 4, "in_term": 6})
        );
        let before = Record::Metadata(Metadata {
            joined_at: None,
            ..joined
        });
        assert!(record_text(path, 0, &before, None)[0].ends_with("initial-cluster=(joined)"));
        assert_eq!(
            record_json(path, 0, 64, &before, None)[0]["joined_at"],
            Value::Null
        );
    }

    /// The metadata's cluster id reads in 16 hex digits, leading zeros and all, in text and
    /// in JSON, as the incarnation beside it does (review 116 N3).
    #[test]
    fn the_cluster_id_reads_in_16_hex_digits() {
        let record = Record::Metadata(Metadata {
            node_id: 1,
            cluster_id: 0xabc,
            peer_url: "http://127.0.0.1:1".into(),
            initial_cluster: vec!["http://127.0.0.1:1".into()],
            joined_at: None,
        });
        let path = Path::new("/data/wal/0000000000000000-0000000000000000.wal");
        let text = record_text(path, 0, &record, None);
        assert!(text[0].contains(" cluster=0000000000000abc "), "{text:?}");
        let json = record_json(path, 0, 64, &record, None);
        assert_eq!(json[0]["cluster"], "0000000000000abc");
    }

    /// A snapshot file's line in JSON gives `keys` as a number and `members` as an object of
    /// id to peer URL (they were a string each: `"13"`, `"1=http://..,2=.."`); voters are in
    /// ascending order there, in its text line and on a snapshot marker's lines, whatever
    /// order raft keeps them in (`[2, 1, 3]` read like a fault).
    #[test]
    fn snapshot_lines_give_numbers_a_map_of_members_and_sorted_voters() {
        let mut state = crate::kvstore::ClusterState::default();
        for id in [2, 1, 3] {
            state.members.add(id, format!("http://127.0.0.1:{id}"), id);
        }
        let mut map = crate::kvstore::Map::default();
        map.insert("/a", "1");
        map.insert("/b", b"\xff");
        let mut meta = SnapshotMetadata {
            term: 4,
            index: 20,
            ..Default::default()
        };
        meta.mut_conf_state().voters = vec![2, 1, 3];
        let mut snap = raft::eraftpb::Snapshot {
            data: crate::kvstore::encode_snapshot(&state, &map).into(),
            ..Default::default()
        };
        snap.set_metadata(meta.clone());
        let path = Path::new("/data/snap/0000000000000004-0000000000000014.snap");

        let (line, incarnation) = snapshot_file_line(path, &snap, true);
        assert_eq!(incarnation.ok(), Some(state.incarnation));
        let v: Value = serde_json::from_str(&line).expect("a JSON line");
        assert_eq!(v["keys"], 2, "{v}");
        assert_eq!(
            v["members"],
            json!({
                "1": "http://127.0.0.1:1", "2": "http://127.0.0.1:2", "3": "http://127.0.0.1:3",
            }),
        );
        assert_eq!(v["voters"], json!([1, 2, 3]));
        let (line, _) = snapshot_file_line(path, &snap, false);
        assert!(
            line.contains(" voters=[1, 2, 3] members=1=http://127.0.0.1:1,"),
            "{line}"
        );
        assert!(line.contains(" keys=2 "), "{line}");

        snap.data = b"not a snapshot".to_vec().into();
        let (line, incarnation) = snapshot_file_line(path, &snap, true);
        assert!(incarnation.is_err());
        let v: Value = serde_json::from_str(&line).expect("a JSON line");
        assert_eq!(
            (&v["keys"], &v["members"]),
            (&Value::Null, &Value::Null),
            "{v}"
        );
        assert!(
            v["error"]
                .as_str()
                .is_some_and(|e| e.contains("does not decode")),
            "{v}"
        );

        let wal = Path::new("/data/wal/0000000000000000-0000000000000000.wal");
        for record in [Record::Snapshot(meta.clone()), Record::SnapshotReset(meta)] {
            let text = record_text(wal, 0, &record, None);
            assert!(text[0].contains("index=20 voters=[1, 2, 3]"), "{text:?}");
            assert_eq!(
                record_json(wal, 0, 64, &record, None)[0]["voters"],
                json!([1, 2, 3])
            );
        }
    }

    /// A value that is not UTF-8 is shown escaped, cut like any other, in text and in JSON
    /// (where `value_escaped` says so); a text value is shown as text.
    #[test]
    fn a_value_that_is_not_text_is_shown_escaped() {
        let put = |value: &'static [u8]| Entry {
            index: 5,
            term: 2,
            data: crate::kvstore::Command::Put {
                key: "/bin".into(),
                value: bytes::Bytes::from_static(value),
            }
            .encode()
            .into(),
            ..Default::default()
        };
        let binary = put(b"a\xff\x00\"");
        assert_eq!(
            describe_entry(&binary, Some(SHOWN_BYTES)),
            r#"put "/bin" = b"a\xff\x00\"""#
        );
        let json = entry_json("f", 0, &binary, Some(SHOWN_BYTES));
        assert_eq!(json["value"], r#"a\xff\x00\""#);
        assert_eq!(json["value_escaped"], true);
        assert_eq!(json["value_bytes"], 4);
        assert_eq!(json["cut"], Value::Null);
        let long = entry_json("f", 0, &put(&[0xfe; 100]), Some(SHOWN_BYTES));
        assert_eq!(long["value"], r"\xfe".repeat(SHOWN_BYTES));
        assert_eq!(
            (&long["value_bytes"], &long["cut"]),
            (&100.into(), &true.into())
        );
        let text = entry_json("f", 0, &put("é".as_bytes()), Some(SHOWN_BYTES));
        assert_eq!(
            (&text["value"], &text["value_escaped"]),
            (&"é".into(), &Value::Null)
        );
    }

    /// A WAL of node 1 in `dir` with at least three segments (every record synced); returns
    /// its config and its segments, oldest first.
    fn wal_of_segments(dir: &Path) -> (Config, Vec<std::path::PathBuf>) {
        use crate::wal::tests::{ents, hs, meta, opts};
        let config = Config {
            data_dir: dir.to_path_buf(),
            ..Config::default()
        };
        let mut wal = wal::Wal::create(&config.wal_dir(), &meta(), opts(256)).expect("a WAL");
        for first in [1, 11, 21] {
            wal.save(
                Some(&hs(1, 1, first + 9)),
                &ents(first..=first + 9, 1),
                true,
            )
            .expect("saved");
        }
        drop(wal);
        let mut segments: Vec<_> = std::fs::read_dir(config.wal_dir())
            .expect("the WAL folder")
            .map(|entry| entry.expect("a folder entry").path())
            .filter(|path| path.extension().is_some_and(|ext| ext == "wal"))
            .collect();
        segments.sort();
        assert!(segments.len() >= 3, "{segments:?}");
        (config, segments)
    }

    fn cut(path: &Path, bytes: u64) {
        let file = std::fs::OpenOptions::new()
            .write(true)
            .open(path)
            .expect("a segment");
        let len = file.metadata().expect("its length").len();
        file.set_len(len - bytes).expect("cut");
    }

    /// The last line of a dump that stopped.
    fn stopped(config: &Config) -> String {
        let mut out = Vec::new();
        run(config, &Options::default(), &mut out).expect_err("the dump stops");
        let text = String::from_utf8(out).expect("text");
        let last = text.lines().last().expect("a line");
        assert!(last.starts_with("stopped: "), "{text}");
        last.to_string()
    }

    /// An older segment cut short is damage a start refuses ("not the last segment, so not an
    /// unsynced tail"); dump called it a plain torn record, which reads as the crash tail a
    /// start cuts, and did not say that newer segments followed unread (a user's campaign). It
    /// now says what the start says, and names them.
    #[test]
    fn a_middle_segment_cut_short_is_told_as_a_start_tells_it_with_the_segments_not_read() {
        let tmp = tempfile::TempDir::new().expect("temp dir");
        let (config, segments) = wal_of_segments(tmp.path());
        cut(&segments[0], 3);
        let start = wal::Wal::open(&config.wal_dir(), crate::wal::tests::opts(256))
            .map(drop)
            .expect_err("a start refuses it")
            .to_string();
        assert!(start.contains("not the last segment"), "{start}");
        let line = stopped(&config);
        assert!(line.contains(&start), "the start says {start:?}\n{line}");
        assert!(
            line.contains(&all_but_the_oldest_unread(&segments)),
            "{line}"
        );
    }

    /// A segment deleted from the middle: dump says what a start says, the sequence missing
    /// between the segments on either side, not that the one after it is corrupt (a
    /// hands-on campaign).
    #[test]
    fn a_deleted_middle_segment_is_told_as_missing_as_a_start_tells_it() {
        let tmp = tempfile::TempDir::new().expect("temp dir");
        let (config, segments) = wal_of_segments(tmp.path());
        std::fs::remove_file(&segments[1]).expect("a middle segment is lost");
        let start = wal::Wal::open(&config.wal_dir(), crate::wal::tests::opts(256))
            .map(drop)
            .expect_err("a start refuses it")
            .to_string();
        assert!(
            start.contains("lacks the WAL segment with sequence 1, between"),
            "{start}"
        );
        let line = stopped(&config);
        assert!(line.contains(&start), "the start says {start:?}\n{line}");
    }

    /// What a dump that stopped in the oldest of `segments` says of the others.
    fn all_but_the_oldest_unread(segments: &[std::path::PathBuf]) -> String {
        let name = |path: &std::path::PathBuf| {
            path.file_name()
                .expect("a name")
                .to_string_lossy()
                .into_owned()
        };
        format!(
            "; reading stopped there, so the {} newer segments, {} to {}, were not read",
            segments.len() - 1,
            name(&segments[1]),
            name(segments.last().expect("segments"))
        )
    }

    /// A whole record of a type this build does not know is told as a start tells it: a
    /// newer build wrote it, not damage. Before, dump said "invalid record: unknown record
    /// type", as of damage (review 111).
    #[test]
    fn a_record_of_a_newer_build_is_told_as_a_start_tells_it() {
        let tmp = tempfile::TempDir::new().expect("temp dir");
        let (config, _) = wal_of_segments(tmp.path());
        let (path, at) = crate::wal::tests::put_newer_record(&config.wal_dir());
        let start = wal::Wal::open(&config.wal_dir(), crate::wal::tests::opts(256))
            .map(drop)
            .expect_err("a start refuses it")
            .to_string();
        let line = stopped(&config);
        assert!(line.contains(&start), "the start says {start:?}\n{line}");
        let place = format!("at {} offset {at}", path.display());
        assert!(
            line.contains("written by a newer build") && line.contains(&place),
            "{line}"
        );
    }

    /// A record of a newer build in the oldest segment stops the dump there, which says so and
    /// names the newer segments it left unread, as it does after damage; it named none, and
    /// the place it stopped at read as the end of the log (review 113 NIT-2).
    #[test]
    fn a_record_of_a_newer_build_before_the_newest_segment_names_the_segments_not_read() {
        let tmp = tempfile::TempDir::new().expect("temp dir");
        let (config, segments) = wal_of_segments(tmp.path());
        let mut ends = None;
        wal::scan(&config.wal_dir(), |path, off, _, record| {
            if path == segments[0] && matches!(record, Record::Next { .. }) {
                ends = Some(off);
            }
        })
        .expect("a readable WAL");
        let at = ends.expect("the oldest segment ends naming the next");
        crate::wal::tests::put_newer_record_at(&segments[0], at);
        let line = stopped(&config);
        let place = format!("at {} offset {at}", segments[0].display());
        assert!(
            line.contains("written by a newer build") && line.contains(&place),
            "{line}"
        );
        // Where it stopped, then what it left unread, then the advice (review 114 N2).
        let unread = all_but_the_oldest_unread(&segments);
        assert!(
            line.contains(&format!(
                "(its checksum holds: it is not damage){unread}; start this node with that \
                 build (or a newer one)"
            )),
            "{line}"
        );
        assert!(!line.contains("corrupt"), "not damage: {line}");
    }

    /// A dump of `config` in text and in JSON that a start's judgement stops: returns its
    /// incarnation line and its last line, in text, then in JSON.
    fn refused(config: &Config) -> [String; 4] {
        let mut said = Vec::new();
        for json in [false, true] {
            let mut out = Vec::new();
            let options = Options {
                json,
                ..Options::default()
            };
            let err = run(config, &options, &mut out).expect_err("the dump says a start refuses");
            assert!(matches!(err, DumpError::Refused(_)), "{err:?}");
            let text = String::from_utf8(out).expect("text");
            let lines: Vec<&str> = text.lines().collect();
            let [.., incarnation, last] = lines[..] else {
                panic!("fewer than two lines: {text}");
            };
            said.extend([incarnation.to_string(), last.to_string()]);
        }
        let [text_incarnation, text_last, json_incarnation, json_last] =
            <[String; 4]>::try_from(said).expect("two lines of each dump");
        assert!(text_last.starts_with("refused: "), "{text_last}");
        let json_last: Value = serde_json::from_str(&json_last).expect("a JSON line");
        assert_eq!(json_last["type"], "error", "{json_last}");
        let json_incarnation: Value = serde_json::from_str(&json_incarnation).expect("JSON");
        assert_eq!(
            json_incarnation["type"], "incarnation",
            "{json_incarnation}"
        );
        [
            text_incarnation,
            text_last,
            json_incarnation.to_string(),
            json_last["error"]
                .as_str()
                .expect("an error text")
                .to_string(),
        ]
    }

    /// The WAL of node 1 of the default `--cluster` in `dir`, as its first start would have
    /// made it, in segments of a few entries, every one committed: session registrations at
    /// indexes 1 (nonce `a1`) and 31 (`b2`), other entries between. Returns its config and
    /// the WAL, open.
    fn registered_wal(dir: &Path) -> (Config, wal::Wal) {
        use crate::wal::tests::{ents, hs, opts};
        let config = Config {
            data_dir: dir.to_path_buf(),
            ..Config::default()
        };
        let meta = crate::wal::Metadata {
            node_id: 1,
            cluster_id: crate::membership::cluster_id(&config.cluster_token, &config.cluster),
            peer_url: config.cluster[0].clone(),
            initial_cluster: config.cluster.clone(),
            joined_at: None,
        };
        let mut wal = wal::Wal::create(&config.wal_dir(), &meta, opts(256)).expect("a WAL");
        let registration = |index: u64, nonce: u64| Entry {
            index,
            term: 1,
            data: proposal::encode_register(1, nonce).into(),
            ..Default::default()
        };
        let mut log = vec![registration(1, 0xa1)];
        log.extend(ents(2..=30, 1));
        log.push(registration(31, 0xb2));
        for batch in log.chunks(8) {
            let commit = batch.last().expect("a batch").index;
            wal.save(Some(&hs(1, 1, commit)), batch, true)
                .expect("saved");
        }
        (config, wal)
    }

    /// The oldest WAL segment deleted: a start refuses ("lacks entry 1 but holds entry N"),
    /// but dump read the rest without a word, exited 0, and gave as the incarnation the first
    /// registration it saw in the segments left, which was not the cluster's (a user's
    /// campaign). It now says what the start says, in text and JSON, and that the
    /// incarnation is unknown.
    #[test]
    fn a_wal_whose_oldest_segment_is_gone_is_refused_as_a_start_refuses_it() {
        let tmp = tempfile::TempDir::new().expect("temp dir");
        let (config, wal) = registered_wal(tmp.path());
        drop(wal);
        let segments = wal::Wal::open(&config.wal_dir(), crate::wal::tests::opts(256))
            .expect("a whole WAL")
            .0
            .segment_paths();
        assert!(segments.len() >= 3, "{segments:?}");
        std::fs::remove_file(&segments[0]).expect("the oldest segment removed");

        let [incarnation, last, json_incarnation, json_error] = refused(&config);
        let start = crate::raft_node::replay_wal(&config)
            .map(drop)
            .expect_err("a start refuses it")
            .to_string();
        assert!(start.contains("lacks entry 1 but holds entry "), "{start}");
        assert!(last.contains(&start), "the start says {start:?}\n{last}");
        assert!(json_error.contains(&start), "{json_error}");
        for line in [&incarnation, &json_incarnation] {
            assert!(
                line.contains("unknown: a start refuses this data dir") && !line.contains("b2"),
                "{line}"
            );
        }
    }

    /// The snapshot folder emptied while the WAL's markers name snapshots whose entries it
    /// released: a start refuses, naming the files that are gone, but dump exited 0 with only
    /// "incarnation ? (the snapshot at index N cannot be read)" (a user's campaign). It now
    /// says what the start says, in text and JSON: the files the WAL names that are not
    /// there (the newest alone, then all), and where the WAL's own entries end.
    #[test]
    fn a_snapshot_folder_emptied_under_the_wals_markers_is_refused_as_a_start_refuses_it() {
        let tmp = tempfile::TempDir::new().expect("temp dir");
        let (config, mut wal) = registered_wal(tmp.path());
        let snapshotter =
            crate::snapshotter::Snapshotter::new(&config.snap_dir(), 2).expect("a snapshotter");
        let mut state = crate::kvstore::ClusterState::default();
        state.members.add(1, config.cluster[0].clone(), 1);
        state.incarnation = Incarnation::Known(0xa1);
        for index in [20, 28] {
            let mut snap = raft::eraftpb::Snapshot {
                data: crate::kvstore::encode_snapshot(&state, &Default::default()).into(),
                ..Default::default()
            };
            snap.mut_metadata().index = index;
            snap.mut_metadata().term = 1;
            snap.mut_metadata().mut_conf_state().voters = vec![1];
            snapshotter.save(&snap).expect("snapshot saved");
            wal.save_snapshot_marker(snap.get_metadata())
                .expect("marker written");
            wal.release_to(index).expect("segments released");
        }
        wal.wait_for_removals();
        drop(wal);
        snapshotter.wait_for_removals();
        drop(snapshotter);
        let mut whole = Vec::new();
        run(&config, &Options::default(), &mut whole).expect("the data dir is whole");
        let whole = String::from_utf8(whole).expect("text");
        assert!(
            whole.ends_with("incarnation  00000000000000a1  (from the snapshot at index 28)\n"),
            "{whole}"
        );
        let files = crate::snapshotter::list_files(&config.snap_dir()).expect("the files");
        assert_eq!(files.len(), 2, "{files:?}");
        let start = || {
            crate::raft_node::replay_wal(&config)
                .map(drop)
                .expect_err("a start refuses it")
                .to_string()
        };
        // The newest alone gone: the WAL released the entries after the older one, so a start
        // refuses too, in the same words as for all of them, naming the one it would load.
        std::fs::remove_file(&files[1]).expect("the newest snapshot file removed");
        let newest_gone = start();
        assert!(
            newest_gone.contains(
                "names above 0000000000000001-0000000000000014.snap, the newest it has: \
                 0000000000000001-000000000000001c.snap (term 1, index 28); the log"
            ),
            "{newest_gone}"
        );
        assert!(refused(&config)[1].contains(&newest_gone));
        std::fs::remove_file(&files[0]).expect("the older snapshot file removed");

        let [incarnation, last, json_incarnation, json_error] = refused(&config);
        let start = start();
        let said = format!(
            "{} lacks the snapshot file(s) that {} names: 0000000000000001-000000000000001c.snap \
             (term 1, index 28), 0000000000000001-0000000000000014.snap (term 1, index 20); the \
             log the node acknowledged cannot be rebuilt without them: the WAL's own entries \
             end at index 31",
            config.snap_dir().display(),
            config.wal_dir().display()
        );
        assert!(start.contains(&said), "{said:?} not in {start}");
        assert!(last.contains(&start), "the start says {start:?}\n{last}");
        assert!(json_error.contains(&start), "{json_error}");
        for line in [&incarnation, &json_incarnation] {
            assert!(
                line.contains("unknown: a start refuses this data dir"),
                "{line}"
            );
        }
    }

    /// A torn end of the newest segment is what a crash leaves, and a start cuts it with a
    /// warning and goes on: dump says what the start will cut, where, and judges the rest as
    /// the start does, with no failure (it exited 1, as for damage: a hands-on campaign).
    #[test]
    fn a_torn_tail_is_told_as_the_cut_a_start_makes_and_is_no_failure() {
        let tmp = tempfile::TempDir::new().expect("temp dir");
        let (config, segments) = wal_of_segments(tmp.path());
        let newest = segments.last().expect("segments");
        let records = records_in(&config, newest);
        let &(at, len, _) = records.last().expect("the newest segment's last record");
        let file_len = std::fs::metadata(newest).expect("the newest segment").len();
        assert_eq!(at + len, file_len, "the segment ends with its last record");
        cut(newest, 3);
        let [text, json] = [false, true].map(|json| {
            let mut out = Vec::new();
            let options = Options {
                json,
                ..Options::default()
            };
            run(&config, &options, &mut out).expect("a start goes on, so dump does");
            String::from_utf8(out).expect("text")
        });
        let tail = text
            .lines()
            .find(|l| l.starts_with("tail: "))
            .unwrap_or_else(|| panic!("no line of the tail: {text}"));
        let said = format!(
            "a start cuts the last {} bytes at offset {at} of {} and goes on",
            len - 3,
            newest.display()
        );
        assert!(tail.contains(&said), "{said:?} not in {tail:?}");
        // Judged as a start judges it: the log before the tail is whole.
        let verdict = text.lines().last().expect("lines");
        assert!(
            verdict.starts_with("incarnation  ") && !verdict.contains("refuses"),
            "{text}"
        );
        let tail: Value = json
            .lines()
            .map(|l| serde_json::from_str::<Value>(l).expect("a JSON line"))
            .find(|l| l["type"] == "torn-tail")
            .unwrap_or_else(|| panic!("no line of the tail: {json}"));
        let file = newest.file_name().map(|n| n.to_string_lossy().into_owned());
        assert_eq!(
            (&tail["file"], &tail["offset"], &tail["bytes"]),
            (&file.into(), &at.into(), &(len - 3).into()),
            "{tail}"
        );
        wal::Wal::open(&config.wal_dir(), crate::wal::tests::opts(256))
            .expect("a start cuts the tail and goes on");
    }

    /// The records of `segment` of `config`'s WAL, which reads whole: offset, length, record.
    fn records_in(config: &Config, segment: &Path) -> Vec<(u64, u64, Record)> {
        let mut records = Vec::new();
        wal::scan(&config.wal_dir(), |path, off, len, record| {
            if path == segment {
                records.push((off, len, record.clone()));
            }
        })
        .expect("a readable WAL");
        records
    }

    /// Damage in the newest segment where a completed sync covered it is no tail: dump stops
    /// there and fails, in the start's words, as the start refuses it.
    #[test]
    fn damage_a_sync_covered_in_the_newest_segment_still_fails() {
        let tmp = tempfile::TempDir::new().expect("temp dir");
        let (config, segments) = wal_of_segments(tmp.path());
        let newest = segments.last().expect("segments");
        let records = records_in(&config, newest);
        // A record after the header that a later sync mark says a completed sync covered.
        let synced = records.iter().filter_map(|(_, _, r)| match r {
            Record::Synced(n) => Some(*n),
            _ => None,
        });
        let covered = synced.max().expect("the newest segment has a sync mark");
        let (off, len, _) = records
            .iter()
            .find(|(off, len, r)| {
                *off > 0 && off + len <= covered && !matches!(r, Record::Synced(_))
            })
            .expect("a record a sync covered");
        let at = (off + len / 2) as usize;
        let mut bytes = std::fs::read(newest).expect("the newest segment");
        bytes[at] ^= 0x40;
        std::fs::write(newest, bytes).expect("damaged");
        let start = wal::Wal::open(&config.wal_dir(), crate::wal::tests::opts(256))
            .map(drop)
            .expect_err("a start refuses it")
            .to_string();
        assert!(start.contains("a completed sync covered"), "{start}");
        let line = stopped(&config);
        assert!(line.contains(&start), "the start says {start:?}\n{line}");
    }
}
