//! Writes large data dirs directly through the library, so that start-up can be measured (and
//! tested) on a million entries without first sending a million PUTs: a WAL of `n` committed
//! puts, or a snapshot of `n` keys. Both are what a single-node cluster at
//! `url` would have written.

use std::path::Path;

use protobuf::Message as _;
use raft::eraftpb::{
    ConfChangeSingle, ConfChangeType, ConfChangeV2, ConfState, Entry, EntryType, HardState,
    SnapshotMetadata,
};
use raftexample::fsutil::DirLock;
use raftexample::kvstore::{self, ClusterState, Command, Map};
use raftexample::membership::cluster_id;
use raftexample::snapshotter::Snapshotter;
use raftexample::wal::{Metadata, Wal, WalOptions};

/// Length of every value.
pub const VALUE_LEN: usize = 100;

/// The `i`-th key.
pub fn key(i: u64) -> String {
    format!("/key-{i:08}")
}

/// Bytes of keys and values of `n` keys: the "raw data size".
pub fn raw_size(n: u64) -> u64 {
    (0..n).map(|i| (key(i).len() + VALUE_LEN) as u64).sum()
}

fn create_wal(data_dir: &Path, url: &str) -> (DirLock, Wal) {
    let dir = data_dir.join("raftexample-1");
    let lock = DirLock::acquire(&dir).expect("locking the new WAL dir");
    let meta = Metadata {
        node_id: 1,
        cluster_id: cluster_id("", &[url.to_string()]),
        peer_url: url.to_string(),
        initial_cluster: vec![url.to_string()],
        joined_at: None,
    };
    let wal = Wal::create(&dir, &meta, WalOptions::default()).expect("creating the WAL");
    (lock, wal)
}

/// A WAL holding the bootstrap entry and then `n` committed puts of keys `0..n`.
pub fn write_wal(data_dir: &Path, url: &str, n: u64) {
    let (_lock, mut wal) = create_wal(data_dir, url);
    let mut single = ConfChangeSingle {
        node_id: 1,
        ..Default::default()
    };
    single.set_change_type(ConfChangeType::AddNode);
    let mut cc = ConfChangeV2 {
        context: url.as_bytes().to_vec().into(),
        ..Default::default()
    };
    cc.mut_changes().push(single);
    let mut first = Entry {
        term: 1,
        index: 1,
        data: cc.write_to_bytes().expect("encoding a conf change").into(),
        ..Default::default()
    };
    first.set_entry_type(EntryType::EntryConfChangeV2);
    wal.save(None, &[first], false).expect("writing the WAL");
    let value = bytes::Bytes::from("x".repeat(VALUE_LEN));
    let mut next = 0;
    while next < n {
        let batch: Vec<Entry> = (next..(next + 10_000).min(n))
            .map(|i| Entry {
                term: 1,
                index: i + 2,
                data: Command::Put {
                    key: key(i),
                    value: value.clone(),
                }
                .encode()
                .into(),
                ..Default::default()
            })
            .collect();
        next += batch.len() as u64;
        wal.save(None, &batch, false).expect("writing the WAL");
    }
    let hs = HardState {
        term: 1,
        commit: n + 1,
        ..Default::default()
    };
    wal.save(Some(&hs), &[], true).expect("writing the WAL");
}

/// A snapshot of keys `0..n` at index `n + 1`, and a WAL that names it and holds nothing else.
pub fn write_snapshot(data_dir: &Path, url: &str, n: u64) {
    write_snapshot_of(data_dir, url, n, VALUE_LEN);
}

/// [`write_snapshot`] with values of `value_len` bytes.
pub fn write_snapshot_of(data_dir: &Path, url: &str, n: u64, value_len: usize) {
    let (_lock, mut wal) = create_wal(data_dir, url);
    let value = "x".repeat(value_len);
    let map: Map = (0..n).map(|i| (key(i), value.as_str())).collect();
    let mut state = ClusterState::default();
    state.members.add(1, url.to_string(), 1);
    let mut meta = SnapshotMetadata {
        index: n + 1,
        term: 1,
        ..Default::default()
    };
    meta.set_conf_state(ConfState::from((vec![1], vec![])));
    let snapshotter =
        Snapshotter::new(&data_dir.join("raftexample-1-snap"), 5).expect("creating the snap dir");
    // Streamed into the file: a second copy of a big state in memory is what this avoids.
    snapshotter
        .save_with(&meta, kvstore::snapshot_len(&state, &map), |w| {
            kvstore::write_snapshot(w, &state, &map)
        })
        .expect("saving the snapshot");
    wal.save_snapshot_marker(&meta).expect("writing the marker");
    let hs = HardState {
        term: 1,
        commit: n + 1,
        ..Default::default()
    };
    wal.save(Some(&hs), &[], true).expect("writing the WAL");
}
