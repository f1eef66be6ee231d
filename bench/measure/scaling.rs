//! The state-size rows of the scaling table (issue 16), one node's worth each, on the release
//! binary. `bench/scale.sh` runs them; each can run on its own:
//!
//! ```sh
//! cargo build --release
//! cargo run --release --example scaling -- state 1000000      # KEYS [VALUE_LEN]
//! cargo run --release --example scaling -- catchup 10000 65536 # KEYS [VALUE_LEN]
//! cargo run --release --example scaling -- wiped 4096 65536   # KEYS [VALUE_LEN]
//! ```
//!
//! - `state`: a node holding KEYS keys (written straight to a snapshot by
//!   `tests/common/bigdata.rs`): its restart time from that snapshot (until `/-/ready`
//!   answers 200) and resident memory against the raw size of keys and values (median of
//!   three); then `CLIENTS` (16) clients PUT over the same keys for `DURATION` (20) s with a
//!   snapshot every `SNAPSHOT_COUNT` (10,000) entries: throughput, the time each snapshot took
//!   (`/-/metrics`), and PUT latency split by whether the request overlapped a snapshot being
//!   taken, so "p99 during a snapshot" and "steady p99" come from the same run.
//! - `catchup`: node 1 holds KEYS keys; node 2 (an empty data dir) joins, and can only catch
//!   up through the snapshot: the time until it serves the last key, the leader's resident
//!   memory before and at its peak meanwhile, and whether the leader changed.
//! - `wiped`: three members hold KEYS keys (nodes 2 and 3 caught up as in `catchup`); node 3
//!   is killed, its data dir wiped, removed and added back under its id (as the README says to
//!   bring back a member that lost its disk; started again without that, it is refused), and
//!   started with `--join`: the same figures for its second catch-up.
//!
//! Data dirs go under `BENCH_TMPDIR` (`/var/tmp`: a real disk, fsync on).

#[path = "../../tests/common/bigdata.rs"]
#[allow(dead_code)] // the other examples use more of it
mod bigdata;

mod support;

use std::path::PathBuf;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::time::{Duration, Instant};

use support::{Node, env_or, free_port, http, quantile_ms, rss_mib, temp_dir};

fn main() {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let usage = "usage: scaling (state|catchup|wiped) KEYS [VALUE_LEN]";
    let row = args.first().expect(usage).clone();
    let keys: u64 = args.get(1).expect(usage).parse().expect("KEYS is a number");
    let value_len: usize = args.get(2).map_or(bigdata::VALUE_LEN, |v| {
        v.parse().expect("VALUE_LEN is a number")
    });
    let runtime = tokio::runtime::Runtime::new().expect("a tokio runtime");
    match row.as_str() {
        "state" => runtime.block_on(state(keys, value_len)),
        "catchup" => runtime.block_on(catchup(keys, value_len)),
        "wiped" => runtime.block_on(wiped(keys, value_len)),
        _ => panic!("{usage}"),
    }
}

fn raw_mib(keys: u64, value_len: usize) -> f64 {
    (0..keys)
        .map(|i| (bigdata::key(i).len() + value_len) as f64)
        .sum::<f64>()
        / (1 << 20) as f64
}

async fn state(keys: u64, value_len: usize) {
    let http = http();
    let dir = temp_dir("scaling-");
    let peer = format!("http://127.0.0.1:{}", free_port());
    let raw = raw_mib(keys, value_len);
    let written = Instant::now();
    bigdata::write_snapshot_of(dir.path(), &peer, keys, value_len);
    let snap_dir = dir.path().join("raftexample-1-snap");
    let snap_mib = std::fs::read_dir(&snap_dir)
        .expect("the snapshot folder")
        .filter_map(|e| e.ok()?.metadata().ok())
        .map(|m| m.len() as f64)
        .sum::<f64>()
        / (1 << 20) as f64;
    println!(
        "state: {keys} keys of {value_len} B: raw {raw:.1} MiB, snapshot file {snap_mib:.1} MiB \
         (written by the example in {:.1} s)",
        written.elapsed().as_secs_f64()
    );
    let cluster = [peer];
    let mut restarts = Vec::new();
    for _ in 0..3 {
        let started = Instant::now();
        let node = Node::start(1, &cluster, dir.path(), &[]);
        let secs = node.wait(&http, "-/ready", None, started, || {}).await;
        restarts.push((secs, rss_mib(node.pid())));
    }
    restarts.sort_by(|a, b| a.0.total_cmp(&b.0));
    let (secs, rss) = restarts[1];
    println!(
        "restart from the snapshot: ready in {secs:.3} s (median of 3: {:.3} {:.3} {:.3}); RSS \
         {rss:.1} MiB = {:.2} x raw",
        restarts[0].0,
        restarts[1].0,
        restarts[2].0,
        rss / raw
    );

    let clients: usize = env_or("CLIENTS", 16);
    let seconds: u64 = env_or("DURATION", 20);
    let every: u64 = env_or("SNAPSHOT_COUNT", 10_000);
    let node = Arc::new(Node::start(
        1,
        &cluster,
        dir.path(),
        &["--snapshot-count", &every.to_string()],
    ));
    node.wait(&http, "-/ready", None, Instant::now(), || {})
        .await;
    let t0 = Instant::now();
    let stop = Arc::new(AtomicBool::new(false));
    // Snapshot windows, from the metrics polled every 10 ms: a snapshot that ended between two
    // polls ran for the time its histogram sum grew by.
    let poller = {
        let (node, http, stop) = (node.clone(), http.clone(), stop.clone());
        tokio::spawn(async move {
            let mut windows = Vec::new();
            let mut peak_rss: f64 = 0.0;
            let mut last = (0.0, 0.0);
            let mut first = true;
            while !stop.load(Ordering::Relaxed) {
                peak_rss = peak_rss.max(rss_mib(node.pid()));
                let count = node.metric(&http, "snapshots_total").await;
                let sum = node.metric(&http, "snapshot_seconds_sum").await;
                if let (Some(count), Some(sum)) = (count, sum) {
                    let now = t0.elapsed().as_secs_f64();
                    if !first && count > last.0 {
                        windows.push((now - (sum - last.1) - 0.01, now));
                    }
                    first = false;
                    last = (count, sum);
                }
                tokio::time::sleep(Duration::from_millis(10)).await;
            }
            (windows, last, peak_rss)
        })
    };
    let value = "y".repeat(value_len);
    let deadline = t0 + Duration::from_secs(seconds);
    let puts = Arc::new(AtomicU64::new(0));
    let tasks: Vec<_> = (0..clients)
        .map(|c| {
            let (node, http, value, puts) =
                (node.clone(), http.clone(), value.clone(), puts.clone());
            tokio::spawn(async move {
                let mut spans = Vec::new();
                let mut i = c as u64;
                while Instant::now() < deadline {
                    // Spread over the existing keys: the state stays KEYS keys.
                    let key = bigdata::key(i.wrapping_mul(2_654_435_761) % keys.max(1));
                    i += clients as u64;
                    let start = t0.elapsed().as_secs_f64();
                    let ok = http
                        .put(node.url(&key[1..]))
                        .body(value.clone())
                        .send()
                        .await
                        .is_ok_and(|r| r.status().is_success());
                    if ok {
                        spans.push((start, t0.elapsed().as_secs_f64()));
                        puts.fetch_add(1, Ordering::Relaxed);
                    }
                }
                spans
            })
        })
        .collect();
    let mut spans = Vec::new();
    for t in tasks {
        spans.extend(t.await.expect("a client task"));
    }
    let elapsed = t0.elapsed().as_secs_f64();
    // One more poll after the load, for a snapshot still being written.
    tokio::time::sleep(Duration::from_millis(50)).await;
    stop.store(true, Ordering::Relaxed);
    let (windows, (count, sum), peak_rss) = poller.await.expect("the poller");
    let overlaps = |(s, e): (f64, f64)| windows.iter().any(|&(ws, we)| s < we && e > ws);
    let (mut during, mut steady): (Vec<f64>, Vec<f64>) = (Vec::new(), Vec::new());
    for &span in &spans {
        if overlaps(span) {
            during.push(span.1 - span.0);
        } else {
            steady.push(span.1 - span.0);
        }
    }
    let mut all: Vec<f64> = spans.iter().map(|(s, e)| e - s).collect();
    let snap_secs = if count > 0.0 { sum / count } else { f64::NAN };
    let in_snapshot: f64 = windows.iter().map(|(s, e)| e - s).sum();
    println!(
        "PUT load: {clients} clients, {seconds} s, a snapshot every {every} entries: {:.0} PUT/s; \
         p50 {:.2} ms p99 {:.2} ms; peak RSS {peak_rss:.1} MiB",
        puts.load(Ordering::Relaxed) as f64 / elapsed,
        quantile_ms(&mut all, 0.5),
        quantile_ms(&mut all, 0.99),
    );
    println!(
        "snapshots taken: {count} (in the run: {}), {snap_secs:.3} s each on average; a snapshot \
         was being taken {:.0} % of the run",
        windows.len(),
        100.0 * in_snapshot / elapsed
    );
    let (n_steady, n_during) = (steady.len(), during.len());
    let (steady99, during99) = (
        quantile_ms(&mut steady, 0.99),
        quantile_ms(&mut during, 0.99),
    );
    println!(
        "PUT p99: steady {steady99:.2} ms ({n_steady} PUTs), during a snapshot {during99:.2} ms \
         ({n_during} PUTs): {:.2} x; p50 steady {:.2} ms, during {:.2} ms",
        during99 / steady99,
        quantile_ms(&mut steady, 0.5),
        quantile_ms(&mut during, 0.5),
    );
}

async fn catchup(keys: u64, value_len: usize) {
    let http = http();
    let dir = temp_dir("scaling-");
    let cluster = [
        format!("http://127.0.0.1:{}", free_port()),
        format!("http://127.0.0.1:{}", free_port()),
    ];
    let d1 = dir.path().join("node1");
    let d2 = dir.path().join("node2");
    std::fs::create_dir_all(&d2).expect("node 2's folder");
    bigdata::write_snapshot_of(&d1, &cluster[0], keys, value_len);
    let snap_mib = std::fs::read_dir(d1.join("raftexample-1-snap"))
        .expect("the snapshot folder")
        .filter_map(|e| e.ok()?.metadata().ok())
        .map(|m| m.len() as f64)
        .sum::<f64>()
        / (1 << 20) as f64;
    let leader = Node::start(1, &cluster[..1], &d1, &["--strict-reconfig-check=false"]);
    leader
        .wait(&http, "-/ready", None, Instant::now(), || {})
        .await;
    let term = leader.metric(&http, "_term").await;
    let changes = leader.metric(&http, "leader_changes_total").await;
    let before = rss_mib(leader.pid());
    add_member(&http, &leader, 2, &cluster[1]).await;
    let started = Instant::now();
    let follower = Node::start(2, &cluster, &d2, &["--join"]);
    let last = bigdata::key(keys - 1);
    let value = "x".repeat(value_len);
    let mut peak = before;
    let pid = leader.pid();
    let secs = follower
        .wait(
            &http,
            &format!("{}?stale", &last[1..]),
            Some(&value),
            started,
            || peak = peak.max(rss_mib(pid)),
        )
        .await;
    let term_after = leader.metric(&http, "_term").await;
    let changes_after = leader.metric(&http, "leader_changes_total").await;
    println!(
        "catchup: {keys} keys of {value_len} B, snapshot file {snap_mib:.1} MiB: the new member \
         served the last key after {secs:.2} s; leader RSS {before:.1} MiB before, peak \
         {peak:.1} MiB (+{:.1} MiB); leader term {term:?} -> {term_after:?}, leader changes \
         {changes:?} -> {changes_after:?}; follower RSS {:.1} MiB",
        peak - before,
        rss_mib(follower.pid())
    );
}

/// Node 3 of three loses its disk and comes back under its id (see the module doc).
/// `POST /<id>` with `url` through `leader`: adds the member, or the run stops.
async fn add_member(http: &reqwest::Client, leader: &Node, id: u64, url: &str) {
    let added = http
        .post(leader.url(&id.to_string()))
        .body(url.to_string())
        .send()
        .await
        .expect("POST a member");
    assert_eq!(added.status(), 204, "adding node {id}");
}

async fn wiped(keys: u64, value_len: usize) {
    let http = http();
    let dir = temp_dir("scaling-");
    let cluster: Vec<String> = (0..3)
        .map(|_| format!("http://127.0.0.1:{}", free_port()))
        .collect();
    let dirs: Vec<PathBuf> = (1..=3)
        .map(|i| dir.path().join(format!("node{i}")))
        .collect();
    for d in &dirs[1..] {
        std::fs::create_dir_all(d).expect("a node's folder");
    }
    bigdata::write_snapshot_of(&dirs[0], &cluster[0], keys, value_len);
    let leader = Node::start(
        1,
        &cluster[..1],
        &dirs[0],
        &["--strict-reconfig-check=false"],
    );
    leader
        .wait(&http, "-/ready", None, Instant::now(), || {})
        .await;
    let last = bigdata::key(keys - 1);
    let last_path = format!("{}?stale", &last[1..]);
    let value = "x".repeat(value_len);
    let mut followers = Vec::new();
    for id in 2..=3u64 {
        add_member(&http, &leader, id, &cluster[id as usize - 1]).await;
        let node = Node::start(id, &cluster, &dirs[id as usize - 1], &["--join"]);
        node.wait(&http, &last_path, Some(&value), Instant::now(), || {})
            .await;
        followers.push(node);
    }
    let third = followers.pop().expect("node 3 was started");
    drop(third);
    std::fs::remove_dir_all(&dirs[2]).expect("wiping node 3");
    std::fs::create_dir_all(&dirs[2]).expect("node 3's empty folder");
    let removed = http
        .delete(leader.url("3"))
        .send()
        .await
        .expect("DELETE node 3");
    assert_eq!(removed.status(), 204, "removing node 3");
    add_member(&http, &leader, 3, &cluster[2]).await;
    let term = leader.metric(&http, "_term").await;
    let changes = leader.metric(&http, "leader_changes_total").await;
    let before = rss_mib(leader.pid());
    let started = Instant::now();
    let wiped = Node::start(3, &cluster, &dirs[2], &["--join"]);
    let mut peak = before;
    let pid = leader.pid();
    let secs = wiped
        .wait(&http, &last_path, Some(&value), started, || {
            peak = peak.max(rss_mib(pid))
        })
        .await;
    let term_after = leader.metric(&http, "_term").await;
    let changes_after = leader.metric(&http, "leader_changes_total").await;
    println!(
        "wiped: {keys} keys of {value_len} B: node 3, wiped, removed and added back, served \
         the last key after {secs:.2} s; leader RSS {before:.1} MiB before, peak {peak:.1} MiB \
         (+{:.1} MiB); leader term {term:?} -> {term_after:?}, leader changes {changes:?} -> \
         {changes_after:?}",
        peak - before
    );
}
