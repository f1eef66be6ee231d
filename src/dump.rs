//! `raftexample dump`: every WAL record and snapshot file of a data dir, one line each (one
//! per entry of a run of entries), for a person learning what raft writes (or a script, with
//! `--json`, whose lines also give each record's length on disk). Read-only and lock-free, so
//! it works on a stopped node's files and on a broken WAL: it prints the good records and then
//! where and why reading stopped.

use std::io::Write;
use std::path::Path;

use raft::eraftpb::{ConfChangeType, ConfChangeV2, Entry, EntryType, SnapshotMetadata};
use serde_json::{Value, json};

use crate::config::Config;
use crate::kvstore::{Command, decode_snapshot};
use crate::membership::decode_conf_change;
use crate::proposal::{self, Payload};
use crate::wal::{self, Record};

/// Why the dump could not finish.
#[derive(Debug, thiserror::Error)]
pub enum DumpError {
    /// The WAL is damaged; everything before the damage was printed.
    #[error("WAL reading stopped: {0}")]
    Wal(#[from] wal::Error),
    /// Writing the output failed.
    #[error("cannot write output: {0}")]
    Output(#[from] std::io::Error),
    /// Nothing to dump.
    #[error(
        "no WAL in {0}: is --data-dir/--id right? (the WAL folder is <data-dir>/raftexample-<id>)"
    )]
    NoWal(String),
}

/// Prints the WAL, then the snapshot files, of the node `config` names.
pub fn run(config: &Config, as_json: bool, out: &mut impl Write) -> Result<(), DumpError> {
    let wal_dir = config.wal_dir();
    if !wal::Wal::exists(&wal_dir) {
        return Err(DumpError::NoWal(wal_dir.display().to_string()));
    }
    let mut write_error = None;
    let scanned = wal::scan(&wal_dir, |path, offset, len, record| {
        if write_error.is_some() {
            return;
        }
        let lines = if as_json {
            record_json(path, offset, len, record)
                .iter()
                .map(Value::to_string)
                .collect()
        } else {
            record_text(path, offset, record)
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
    // Snapshots are listed even when the WAL is damaged: they may be what is left.
    dump_snapshots(&config.snap_dir(), as_json, out)?;
    if let Err(err) = scanned {
        let line = if as_json {
            json!({"type": "error", "error": err.to_string()}).to_string()
        } else {
            format!("stopped: {err}")
        };
        writeln!(out, "{line}")?;
        return Err(err.into());
    }
    Ok(())
}

fn dump_snapshots(dir: &Path, as_json: bool, out: &mut impl Write) -> Result<(), DumpError> {
    let Ok(files) = crate::snapshotter::list_files(dir) else {
        return Ok(());
    };
    for path in files {
        let line = match crate::snapshotter::read_file(&path) {
            Ok(snap) => {
                let meta = snap.get_metadata();
                let decoded = decode_snapshot(&snap.data);
                let (members, keys) = match &decoded {
                    Ok((state, map)) => (
                        state
                            .members
                            .urls
                            .iter()
                            .map(|(id, url)| format!("{id}={url}"))
                            .collect::<Vec<_>>()
                            .join(","),
                        map.len().to_string(),
                    ),
                    Err(e) => (format!("undecodable: {e}"), "?".into()),
                };
                if as_json {
                    json!({
                        "file": path.display().to_string(), "type": "snapshot-file",
                        "term": meta.term, "index": meta.index,
                        "voters": meta.get_conf_state().voters, "members": members,
                        "keys": keys, "bytes": snap.data.len(),
                    })
                    .to_string()
                } else {
                    format!(
                        "{}  snapshot-file  term={} index={} voters={:?} members={members} keys={keys} bytes={}",
                        path.display(),
                        meta.term,
                        meta.index,
                        meta.get_conf_state().voters,
                        snap.data.len()
                    )
                }
            }
            Err(err) => {
                if as_json {
                    json!({"file": path.display().to_string(), "type": "snapshot-file", "error": err.to_string()})
                        .to_string()
                } else {
                    format!("{}  snapshot-file  unreadable: {err}", path.display())
                }
            }
        };
        writeln!(out, "{line}")?;
    }
    Ok(())
}

/// One line per record, and per entry of a run of entries.
fn record_text(path: &Path, offset: u64, record: &Record) -> Vec<String> {
    let place = format!("{}@{offset}", short(path));
    let entry_line = |e: &Entry| {
        format!(
            "{place}  entry  term={} index={} {}",
            e.term,
            e.index,
            entry_text(e)
        )
    };
    let line = match record {
        Record::Metadata(m) => format!(
            "{place}  metadata  node={} cluster={:x} peer={} initial-cluster={}",
            m.node_id,
            m.cluster_id,
            m.peer_url,
            if m.initial_cluster.is_empty() {
                "(joined)".to_string()
            } else {
                m.initial_cluster.join(",")
            }
        ),
        Record::HardState(hs) => format!(
            "{place}  hardstate  term={} vote={} commit={}",
            hs.term, hs.vote, hs.commit
        ),
        Record::Snapshot(meta) => format!("{place}  snapshot-marker  {}", snapshot_text(meta)),
        Record::Entry(e) => entry_line(e),
        Record::Entries(es) => return es.iter().map(entry_line).collect(),
        Record::Padding(n) => format!("{place}  padding  {n} zero bytes (to a page boundary)"),
    };
    vec![line]
}

fn snapshot_text(meta: &SnapshotMetadata) -> String {
    format!(
        "term={} index={} voters={:?}",
        meta.term,
        meta.index,
        meta.get_conf_state().voters
    )
}

/// The file name without its folders: the folder is the same on every line.
fn short(path: &Path) -> String {
    path.file_name()
        .map(|n| n.to_string_lossy().into_owned())
        .unwrap_or_else(|| path.display().to_string())
}

/// One entry, decoded for a person: a put, a conf change, or a new leader's empty entry.
pub fn entry_text(e: &Entry) -> String {
    match e.get_entry_type() {
        EntryType::EntryNormal if e.data.is_empty() => "empty (a new leader's first entry)".into(),
        EntryType::EntryNormal => {
            let origin = match proposal::decode(&e.data) {
                Ok(Payload::Register { origin, nonce }) => {
                    return format!("session registration of node {origin} (nonce {nonce:x})");
                }
                Ok(Payload::Proposal { id, .. }) => {
                    format!(" (node {} session {} #{})", id.origin, id.session, id.seq)
                }
                _ => String::new(),
            };
            match Command::from_entry(&e.data) {
                Ok(Some(Command::Put { key, value })) => {
                    format!("put {key:?} = {value:?}{origin}")
                }
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

fn conf_change_text(cc: &ConfChangeV2) -> String {
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

/// One JSON object per record, and per entry of a run of entries; `len` is the record's
/// length on disk (shared by the entries of a run).
fn record_json(path: &Path, offset: u64, len: u64, record: &Record) -> Vec<Value> {
    let file = short(path);
    let value = match record {
        Record::Metadata(m) => json!({
            "file": file, "offset": offset, "type": "metadata", "node": m.node_id,
            "cluster": format!("{:x}", m.cluster_id), "peer_url": m.peer_url,
            "initial_cluster": m.initial_cluster,
        }),
        Record::HardState(hs) => json!({
            "file": file, "offset": offset, "type": "hardstate",
            "term": hs.term, "vote": hs.vote, "commit": hs.commit,
        }),
        Record::Snapshot(meta) => json!({
            "file": file, "offset": offset, "type": "snapshot-marker",
            "term": meta.term, "index": meta.index, "voters": meta.get_conf_state().voters,
        }),
        Record::Padding(n) => json!({
            "file": file, "offset": offset, "type": "padding", "bytes": n,
        }),
        Record::Entry(e) => entry_json(&file, offset, e),
        Record::Entries(es) => {
            return es
                .iter()
                .map(|e| with_len(entry_json(&file, offset, e), len))
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

fn entry_json(file: &str, offset: u64, e: &Entry) -> Value {
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
            (payload, Ok(Some(Command::Put { key, value }))) => {
                let mut put =
                    json!({"entry_type": "normal", "op": "put", "key": key, "value": value});
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
            "change": decode_conf_change(e).ok().map_or_else(|| "undecodable".to_string(), |cc| conf_change_text(&cc)),
        }),
    };
    if let (Some(obj), Value::Object(extra)) = (v.as_object_mut(), detail) {
        obj.extend(extra);
    }
    v
}
