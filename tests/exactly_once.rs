//! Exactly once, at the state machine: a proposal whose copies both commit (one proposed
//! again after a leader change, one committed late) takes effect once, on replay, after a
//! snapshot and after a restart; and the table that remembers applied proposals stays small
//! however long a node runs.
//!
//! The duplicates are written straight into a node's WAL as committed entries, the way a
//! leader change can leave them in the log, and the node is then started on it: it applies
//! them through the same path as entries committed live.

mod common;

use std::path::Path;
use std::time::Duration;

use raft::eraftpb::{Entry, HardState};
use raftexample::kvstore::Command;
use raftexample::proposal::{ProposalId, encode_proposal, encode_register};
use raftexample::raft_node::ReadConsistency;
use raftexample::wal::Wal;
use raftexample::{Config, raft_node};

/// A one-node config on `dir`, with a snapshot after every `snapshot_count` entries.
fn config(dir: &Path, snapshot_count: u64) -> Config {
    let port = common::free_ports(1)[0];
    Config {
        cluster: vec![format!("http://127.0.0.1:{port}")],
        port: 0,
        listen_host: "127.0.0.1".parse().expect("a literal address"),
        data_dir: dir.to_path_buf(),
        snapshot_count,
        snapshot_catchup_entries: 0,
        ..Config::default()
    }
}

fn put(id: ProposalId, floor: u64, key: &str, value: &str) -> Vec<u8> {
    let command = Command::Put {
        key: key.into(),
        value: bytes::Bytes::copy_from_slice(value.as_bytes()),
    }
    .encode();
    encode_proposal(id, floor, &command)
}

/// Appends `data` as committed entries of term 1 after what the WAL holds.
fn append_committed(config: &Config, data: Vec<Vec<u8>>) {
    let (mut wal, contents) = Wal::open(&config.wal_dir(), config.wal_options()).expect("WAL");
    let mut last = contents.hard_state.commit;
    let entries: Vec<Entry> = data
        .into_iter()
        .map(|data| {
            last += 1;
            Entry {
                term: 1,
                index: last,
                data: data.into(),
                ..Default::default()
            }
        })
        .collect();
    let hs = HardState {
        term: contents.hard_state.term.max(1),
        vote: contents.hard_state.vote,
        commit: last,
        ..Default::default()
    };
    wal.save(Some(&hs), &entries, true).expect("appending");
}

async fn values(config: &Config, keys: &[&str]) -> Vec<Option<bytes::Bytes>> {
    let running = raftexample::start(config.clone()).await.expect("start");
    let node = running.node.clone();
    common::wait_for(Duration::from_secs(10), "the node to apply its log", || {
        let node = node.clone();
        async move {
            node.get("/nothing", ReadConsistency::Linearizable)
                .await
                .ok()
                .map(|_| ())
        }
    })
    .await;
    let mut out = Vec::new();
    for key in keys {
        out.push(node.get(key, ReadConsistency::Stale).await.expect("read"));
    }
    running.shutdown();
    running.wait().await;
    out
}

/// Node 2's write of `a`, another node's later write of `b` to the same key, then a late copy
/// of node 2's write: the store ends with `b`, as if the write had been applied once. A copy
/// below the origin's floor is skipped too. Both survive a snapshot and a restart.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_proposal_committed_twice_takes_effect_once() {
    let dir = tempfile::TempDir::new().expect("temp dir");
    let config = config(dir.path(), 3);
    drop(raft_node::replay_wal(&config).expect("bootstrap"));
    // Bootstrap wrote entry 1; sessions are the indexes of their registrations.
    let s2 = ProposalId {
        origin: 2,
        session: 2,
        seq: 1,
    };
    let s3 = ProposalId {
        origin: 3,
        session: 3,
        seq: 1,
    };
    append_committed(
        &config,
        vec![
            encode_register(2, 0xAAAA),                     // 2: session 2
            encode_register(3, 0xBBBB),                     // 3: session 3
            put(s2, 1, "/k", "a"),                          // 4: applies
            put(s3, 1, "/k", "b"),                          // 5: a later write
            put(s2, 1, "/k", "a"),                          // 6: the copy: skipped
            put(ProposalId { seq: 2, ..s2 }, 2, "/j", "x"), // 7: floor moves past 1
            put(s2, 1, "/j", "late"),                       // 8: below the floor: skipped
        ],
    );
    assert_eq!(
        values(&config, &["/k", "/j"]).await,
        [Some("b".into()), Some("x".into())]
    );
    // The node took snapshots meanwhile (every 3 entries): start again, from the newest,
    // with more late copies after it.
    append_committed(
        &config,
        vec![
            put(ProposalId { seq: 2, ..s2 }, 2, "/j", "x"), // a copy of 7: skipped
            put(s3, 1, "/k", "b"),                          // a copy of 5: skipped
            put(ProposalId { seq: 3, ..s2 }, 3, "/k", "c"), // new: applies
            put(s2, 1, "/k", "a"),                          // the copy of 4 once more
        ],
    );
    assert_eq!(
        values(&config, &["/k", "/j"]).await,
        [Some("c".into()), Some("x".into())]
    );
    let snaps = raftexample::snapshotter::list_files(&config.snap_dir()).expect("snapshots");
    assert!(!snaps.is_empty(), "the test meant to go through a snapshot");
}

/// Thousands of writes from many clients through two nodes, one of them restarted halfway:
/// the exactly-once table holds one session per node and a handful of ranges.
#[tokio::test(start_paused = true)]
async fn the_exactly_once_table_stays_small() {
    let mut cluster = common::TestCluster::start(3, |c| c.snapshot_count = 500).await;
    cluster.wait_leader().await;
    for half in 0..2 {
        let mut writers = Vec::new();
        for w in 0..16u64 {
            let node = cluster.node(1 + w % 2).clone();
            writers.push(tokio::spawn(async move {
                for i in 0..100u64 {
                    let key = format!("/w{w}-{}", i % 7);
                    node.put(key, format!("{half}-{i}").into())
                        .await
                        .expect("a healthy cluster commits");
                }
            }));
        }
        for w in writers {
            w.await.expect("writer");
        }
        if half == 0 {
            cluster.stop(2).await;
            cluster.start_node(2, false).await;
            cluster.wait_leader().await;
        }
    }
    let status = cluster.node(3).status().await.expect("status");
    let (sessions, ranges) = status.sessions;
    // One per node: every member registers, writes or not (node 3 proposed nothing), and node
    // 2's restart replaced its first session.
    assert_eq!(sessions, 3, "{status:?}");
    assert!(
        ranges <= 4,
        "{ranges} ranges: the table grows with the load"
    );
    cluster.shutdown().await;
}
