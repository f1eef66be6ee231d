//! A snapshot taken while entries go on being applied: copy-before-write, a shard at a time.
//!
//! A snapshot must hold exactly the state at its index, but writing a big map to disk takes
//! seconds, and writes must not wait that long. So when the snapshot begins (in log order, on
//! the state machine's thread), it only records the map's size and writes the file's header;
//! a thread of its own then writes the map shard after shard, each under the read lock for
//! the moment it takes to copy that shard. Whoever is about to change a shard the snapshot has
//! not written yet (an apply, under the write lock) first copies that shard as it still is and
//! hands the copy to the snapshot's thread. Every shard thus reaches the file exactly once, as
//! it was at the snapshot's index, and an apply waits at most for one shard to be copied.
//!
//! The copies wait in memory until the thread writes them: at worst (every shard changed
//! before the thread reached it) as much as the snapshot itself. Measured at ten million keys
//! with sixteen clients writing all over the map: the resident memory rose by a quarter of
//! the state during a snapshot (BENCHMARKS.md).

use std::io::{self, Write};
use std::sync::Arc;
use std::sync::mpsc::{Receiver, channel};

use raft::eraftpb::SnapshotMetadata;
use tokio::sync::oneshot;

use super::map::Capture;
use super::{ClusterState, KvStore, codec};
use crate::snapshotter::{self, SnapshotWriter, Snapshotter};

/// Starts a snapshot of `kv` as of now (every entry sent before it applied, none after): the
/// header is written here, the shards by a thread of its own, which answers `reply` once the
/// file is durable, with the bytes of data it holds. Called on the state machine's thread, in
/// log order.
pub(super) fn start(
    kv: &KvStore,
    state: &ClusterState,
    meta: &SnapshotMetadata,
    snapshotter: &Snapshotter,
    reply: oneshot::Sender<Result<u64, snapshotter::Error>>,
) {
    let mut map = kv.write();
    if let Some(earlier) = map.capture.take() {
        // Not expected (the node waits for each snapshot), but never leave one half-taken.
        earlier.take_all(&map);
    }
    let count = map.len() as u64;
    let data_len = codec::data_len(state, count, map.encoded_len());
    let mut file = match snapshotter.begin(meta, data_len) {
        Ok(file) => file,
        Err(err) => {
            let _ = reply.send(Err(err));
            return;
        }
    };
    if let Err(err) = codec::write_header(&mut file, state, count) {
        let _ = reply.send(Err(file.failed(err)));
        return;
    }
    let (tx, rx) = channel();
    let capture = Arc::new(Capture::new(map.shard_count(), tx));
    map.capture = Some(capture.clone());
    drop(map);
    let kv = kv.clone();
    let spawned = std::thread::Builder::new()
        .name(format!("snapshot-{}", meta.index))
        .spawn(move || {
            let written = write_shards(&kv, &capture, &rx, &mut file);
            capture.abandon();
            kv.end_capture(&capture);
            let _ = reply.send(match written {
                Ok(()) => file.finish().map(|()| data_len),
                Err(err) => Err(file.failed(err)),
            });
        });
    if let Err(err) = spawned {
        // The closure, and the reply in it, is gone; the node sees its channel closed and
        // stops, which is what a node that cannot start a thread should do.
        tracing::error!(%err, "cannot start the snapshot's thread");
    }
}

/// Writes every shard into `file`: the copies applies made, and the rest as they are now.
fn write_shards(
    kv: &KvStore,
    capture: &Capture,
    copies: &Receiver<Vec<u8>>,
    file: &mut SnapshotWriter,
) -> io::Result<()> {
    let mut buf = Vec::new();
    for index in 0..capture.shards() {
        for copy in copies.try_iter() {
            file.write_all(&copy)?;
        }
        buf.clear();
        {
            let map = kv.read();
            if capture.take(index) {
                map.encode_shard(index, &mut buf);
            }
        }
        file.write_all(&buf)?;
    }
    // Copies are sent under the write lock: once the read lock is ours, the last is queued.
    drop(kv.read());
    for copy in copies.try_iter() {
        file.write_all(&copy)?;
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::super::tests::put_entry as put;
    use super::super::{Apply, Map, SHARDS, decode_snapshot};
    use super::*;

    /// Writes that land while a snapshot is being written (to every shard, new keys and
    /// replaced ones, many times each) never reach it: the file holds exactly the state as of
    /// its index, and the map goes on to hold every write.
    #[test]
    fn a_snapshot_holds_its_index_whatever_is_applied_meanwhile() {
        let keys = 4 * SHARDS as u64;
        let map: Map = (0..keys)
            .map(|i| (format!("/k{i}"), "before".to_string()))
            .collect();
        let kv = KvStore::new(map, 1);
        let (applier, handle) = kv.spawn_apply_loop(1).expect("an apply thread");
        let dir = tempfile::TempDir::new().expect("temp dir");
        let snapshotter = Arc::new(Snapshotter::new(dir.path(), 5).expect("snapshotter"));
        let (reply, saved) = oneshot::channel();
        applier
            .send(Apply::Snapshot {
                state: ClusterState::default(),
                meta: SnapshotMetadata {
                    index: 1,
                    term: 1,
                    ..Default::default()
                },
                snapshotter: snapshotter.clone(),
                reply,
            })
            .expect("queued");
        let mut index = 1;
        for round in 0..3 {
            for chunk in (0..keys).collect::<Vec<_>>().chunks(200) {
                let mut entries = Vec::new();
                for i in chunk {
                    index += 1;
                    entries.push(put(index, &format!("/k{i}"), format!("after-{round}")));
                }
                index += 1;
                entries.push(put(index, &format!("/new-{index}"), "x"));
                applier
                    .send(Apply::Entries {
                        entries,
                        last: index,
                        done: vec![],
                    })
                    .expect("applied or queued");
            }
        }
        saved.blocking_recv().expect("answered").expect("saved");
        let data = snapshotter.load(1, 1).expect("snapshot file").data;
        let (_, snap) = decode_snapshot(&data).expect("decodes");
        assert_eq!(snap.len() as u64, keys);
        assert!(snap.iter().all(|(_, v)| v == b"before"));
        drop(applier);
        handle.join().expect("apply thread ends cleanly");
        assert_eq!(kv.get("/k0"), Some("after-2".into()));
        assert_eq!(kv.len() as u64, keys + 3 * keys.div_ceil(200));
    }
}
