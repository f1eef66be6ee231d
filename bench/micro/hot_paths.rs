//! The CPU hot paths of a write and a snapshot, apart from the disk and the network:
//! encoding and decoding a PUT's entry data, a peer batch on the wire, applying committed
//! entries to the map, and a snapshot of the map. Run with `cargo bench --bench hot_paths`.

use std::hint::black_box;

use criterion::{BenchmarkId, Criterion, Throughput, criterion_group, criterion_main};
use raft::eraftpb::{Entry, Message, MessageType};
use raftexample::kvstore::{
    Apply, ClusterState, Command, KvStore, Map, decode_snapshot, encode_snapshot,
};
use raftexample::transport::{decode_batch, encode_batch};

fn put(i: u64) -> Command {
    Command::Put {
        key: format!("/bench-{i:08}"),
        value: "x".repeat(100).into(),
    }
}

fn entry_data(c: &mut Criterion) {
    let mut group = c.benchmark_group("entry_data");
    group.throughput(Throughput::Elements(1));
    let cmd = put(42);
    let bytes = cmd.encode();
    group.bench_function("encode_put", |b| b.iter(|| black_box(&cmd).encode()));
    group.bench_function("decode_put", |b| {
        b.iter(|| Command::decode(black_box(&bytes)).expect("decodes"))
    });
    group.finish();
}

/// A leader's append to one follower: `n` entries of one PUT each.
fn peer_batch(c: &mut Criterion) {
    let mut group = c.benchmark_group("peer_batch");
    for n in [1u64, 64, 1024] {
        let mut msg = Message {
            to: 2,
            from: 1,
            term: 3,
            index: 100,
            log_term: 3,
            commit: 100,
            ..Default::default()
        };
        msg.set_msg_type(MessageType::MsgAppend);
        for i in 0..n {
            msg.mut_entries().push(Entry {
                term: 3,
                index: 101 + i,
                data: put(i).encode().into(),
                context: vec![7; 16].into(),
                ..Default::default()
            });
        }
        let batch = vec![msg];
        let body = encode_batch(&batch);
        group.throughput(Throughput::Elements(n));
        group.bench_with_input(BenchmarkId::new("encode", n), &batch, |b, batch| {
            b.iter(|| encode_batch(black_box(batch)))
        });
        group.bench_with_input(BenchmarkId::new("decode", n), &body, |b, body| {
            b.iter(|| decode_batch(black_box(body), usize::MAX).expect("decodes"))
        });
    }
    group.finish();
}

/// The state machine applying a batch of committed PUTs (the apply thread's whole job).
fn apply(c: &mut Criterion) {
    let mut group = c.benchmark_group("apply");
    let kv = KvStore::default();
    let (applier, _thread) = kv.spawn_apply_loop(1).expect("an apply thread");
    // 64: applied at once on the caller's thread (nothing queued); 1024: a batch big enough
    // to go to the state machine's thread.
    for n in [64u64, 1024] {
        group.throughput(Throughput::Elements(n));
        let entries: Vec<Entry> = (0..n)
            .map(|i| Entry {
                term: 1,
                index: i + 1,
                data: put(i % 10_000).encode().into(),
                ..Default::default()
            })
            .collect();
        group.bench_with_input(BenchmarkId::new("puts", n), &entries, |b, entries| {
            b.iter(|| {
                let (done, wait) = tokio::sync::oneshot::channel();
                applier
                    .send(Apply::Entries {
                        entries: entries.clone(),
                        last: n,
                        done: vec![done],
                    })
                    .expect("apply loop runs");
                wait.blocking_recv().expect("answered").expect("applied");
            })
        });
    }
    group.finish();
}

/// Serializing and loading the whole map, as every snapshot and every restart does.
fn snapshot(c: &mut Criterion) {
    let mut group = c.benchmark_group("snapshot");
    group.sample_size(10);
    let n = 100_000u64;
    let value = "x".repeat(100);
    let map: Map = (0..n)
        .map(|i| (format!("/bench-{i:08}"), value.as_str()))
        .collect();
    let state = ClusterState::default();
    let data = encode_snapshot(&state, &map);
    group.throughput(Throughput::Elements(n));
    group.bench_function("encode_100k_keys", |b| {
        b.iter(|| encode_snapshot(&state, black_box(&map)))
    });
    group.bench_function("decode_100k_keys", |b| {
        b.iter(|| decode_snapshot(black_box(&data)).expect("decodes"))
    });
    group.finish();
}

criterion_group!(benches, entry_data, peer_batch, apply, snapshot);
criterion_main!(benches);
