//! WAL append throughput with a sync per batch: what a raft node pays per `Ready`.
//!
//! Batches of 1, 16 and 256 entries of 100 bytes, each batch one `Wal::save(.., sync = true)`,
//! so one write plus one `sync_data` (`wal_save_sync`), and the same without the sync
//! (`wal_save_no_sync`: the framing and the write alone). If the WAL costs about one sync per
//! batch, entries per second rise almost linearly with the batch size until the disk's
//! bandwidth is reached.
//!
//! Each runs twice: `direct` writes whole physical sectors around the page cache (the default where
//! the file system allows it), `page_cache` writes through it (`--wal-direct-io=false`).
//! Without a sync, a direct writer only frames the batch into memory, and writes once about
//! 1 MiB has gathered.
//!
//! The WAL lives in a `tempfile` directory under the system temp dir (`/tmp`), which on the
//! development machine is the same disk (`/dev/vda`) as the `/work` checkout. Run with
//! `cargo bench --bench wal`; set `TMPDIR` to measure another disk.

use std::hint::black_box;

use criterion::{BenchmarkId, Criterion, Throughput, criterion_group, criterion_main};
use raftexample::wal::{Entry, Metadata, Wal, WalOptions};

const ENTRY_BYTES: usize = 100;
/// Old segments are released beyond this, so a long run does not fill the disk.
const MAX_WAL_BYTES: u64 = 512 * 1024 * 1024;

fn append_with_sync(c: &mut Criterion) {
    append(c, "wal_save_sync", true);
}

/// The same without the sync: framing the batch and writing it (to the page cache, or to
/// memory for a direct writer), the part of a save that is the WAL's own code.
fn append_without_sync(c: &mut Criterion) {
    append(c, "wal_save_no_sync", false);
}

fn append(c: &mut Criterion, name: &str, sync: bool) {
    let mut group = c.benchmark_group(name);
    for (mode, direct_io) in [("direct", true), ("page_cache", false)] {
        for batch in [1u64, 16, 256] {
            let tmp = tempfile::tempdir().expect("tempdir");
            let meta = Metadata {
                node_id: 1,
                cluster_id: 0x1000,
                peer_url: "http://127.0.0.1:12379".into(),
                initial_cluster: vec!["http://127.0.0.1:12379".into()],
                joined_at: None,
            };
            let opts = WalOptions {
                direct_io,
                ..WalOptions::default()
            };
            let mut wal = Wal::create(tmp.path(), &meta, opts).expect("create");
            let mut entries: Vec<Entry> = (1..=batch)
                .map(|index| Entry {
                    index,
                    term: 1,
                    data: vec![0xAB; ENTRY_BYTES].into(),
                    ..Default::default()
                })
                .collect();

            // Bytes that reach the file per batch, framing included.
            let before = wal.size_on_disk();
            wal.save(None, &entries, sync).expect("save");
            let bytes_per_batch = wal.size_on_disk() - before;

            group.throughput(Throughput::ElementsAndBytes {
                elements: batch,
                bytes: bytes_per_batch,
            });
            group.bench_with_input(BenchmarkId::new(mode, batch), &batch, |b, &batch| {
                b.iter(|| {
                    for e in entries.iter_mut() {
                        e.index += batch;
                    }
                    wal.save(None, black_box(&entries), sync).expect("save");
                    if wal.size_on_disk() > MAX_WAL_BYTES {
                        let last = entries.last().map_or(0, |e| e.index);
                        wal.release_to(last).expect("release");
                    }
                })
            });
        }
    }
    group.finish();
}

criterion_group!(benches, append_with_sync, append_without_sync);
criterion_main!(benches);
