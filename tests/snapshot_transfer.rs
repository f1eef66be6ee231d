//! A snapshot of a state far bigger than the memory a sender may spend on it: the leader
//! streams it from its file to a new member, over plain HTTP and over TLS, its resident memory
//! does not grow with it, nobody holds an election meanwhile, and the member then serves the
//! whole state.

mod common;

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::time::Duration;

use common::{ProcCluster, bigdata, rss, wait_for};

/// Values of 64 KiB, so that a debug build loads the state in moments.
const VALUE_LEN: usize = 64 << 10;
/// 192 MiB of values.
const KEYS: u64 = 3 * 1024;
/// What the leader's resident memory may grow by while it sends the snapshot (the issue's
/// bound for a state of 1 GiB): the snapshot is three times that.
const RISE_LIMIT: u64 = 64 << 20;

/// Samples the resident memory of `pid` every few milliseconds until dropped; keeps the peak.
struct PeakRss {
    peak: Arc<AtomicU64>,
    stop: Arc<AtomicBool>,
    thread: Option<std::thread::JoinHandle<()>>,
}

impl PeakRss {
    fn start(pid: i32) -> PeakRss {
        let peak = Arc::new(AtomicU64::new(rss(pid)));
        let stop = Arc::new(AtomicBool::new(false));
        let thread = {
            let (peak, stop) = (peak.clone(), stop.clone());
            std::thread::spawn(move || {
                while !stop.load(Ordering::Relaxed) {
                    peak.fetch_max(rss(pid), Ordering::Relaxed);
                    std::thread::sleep(Duration::from_millis(5));
                }
            })
        };
        PeakRss {
            peak,
            stop,
            thread: Some(thread),
        }
    }

    fn finish(mut self) -> u64 {
        self.stop.store(true, Ordering::Relaxed);
        if let Some(t) = self.thread.take() {
            t.join().expect("the sampler does not panic");
        }
        self.peak.load(Ordering::Relaxed)
    }
}

/// Node 1 starts alone from a snapshot of [`KEYS`] keys; node 2 joins, and can only catch up
/// through that snapshot (the log starts after it).
async fn a_joining_member_gets_a_big_snapshot(mut c: ProcCluster) {
    bigdata::write_snapshot_of(&c.data_dir(1), &c.peers[0], KEYS, VALUE_LEN);
    let snap_bytes: u64 = std::fs::read_dir(c.data_dir(1).join("raftexample-1-snap"))
        .expect("the snapshot folder")
        .map(|e| e.expect("an entry").metadata().expect("metadata").len())
        .sum();
    assert!(
        snap_bytes > 3 * RISE_LIMIT,
        "a snapshot of {snap_bytes} bytes"
    );
    c.spawn(1, &[]);
    c.wait_leader().await;
    let value = "x".repeat(VALUE_LEN);
    // The paths drop the keys' leading slash.
    let last = bigdata::key(KEYS - 1)[1..].to_string();
    c.wait_value(1, &last, &value, false).await;
    let term = c.status(1).await.expect("node 1's status")["term"].clone();

    let leader = c.pid(1);
    let before = rss(leader);
    let sampler = PeakRss::start(leader);
    let id = c.add_member(1).await;
    c.spawn(id, &["--join"]);
    wait_for(
        Duration::from_secs(180),
        "node 2 to serve the snapshot's last key",
        || async {
            let (code, body) = c.get(id, &format!("{last}?stale")).await?;
            (code == 200 && body == value).then_some(())
        },
    )
    .await;
    let peak = sampler.finish();

    let log = c.log(id);
    assert!(
        log.contains("installed a snapshot from the leader"),
        "node 2 caught up without a snapshot: {log}"
    );
    let rise = peak.saturating_sub(before);
    assert!(
        rise < RISE_LIMIT,
        "the leader's resident memory rose by {} MiB (from {} MiB) while it sent a snapshot of \
         {} MiB",
        rise >> 20,
        before >> 20,
        snap_bytes >> 20
    );
    let status = c.status(1).await.expect("node 1's status");
    assert_eq!(status["leader"].as_u64(), Some(1), "{status}");
    assert_eq!(status["term"], term, "an election was held: {status}");
    // The new member serves linearizable reads and takes writes.
    c.wait_value(id, &bigdata::key(0)[1..], &value, false).await;
    c.put_ok(id, "after", "yes").await;
    c.wait_value(1, "after", "yes", false).await;
}

/// A member that cannot store the leader's snapshot (here: over its `--max-snapshot-bytes`;
/// a full disk is the other way) stays behind however often the leader tries; its
/// `/-/ready` says why and what limit stops it, not only how far behind it is, and it
/// catches up once started without the limit (found by a hands-on test: it said "replaying
/// the log" and nothing else).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_member_that_cannot_store_the_snapshot_says_why_it_is_not_ready() {
    let mut c = ProcCluster::new(1, &[]);
    bigdata::write_snapshot_of(&c.data_dir(1), &c.peers[0], 64, 4096);
    c.spawn(1, &[]);
    c.wait_leader().await;
    let last = bigdata::key(63)[1..].to_string();
    let value = "x".repeat(4096);
    c.wait_value(1, &last, &value, false).await;
    let id = c.add_member(1).await;
    c.spawn(id, &["--join", "--max-snapshot-bytes", "65536"]);
    let why = wait_for(
        Duration::from_secs(30),
        "the new member to say why it is not ready",
        || async {
            let (code, body) = c.get(id, "-/ready").await?;
            (code == 503 && body.contains("could not")).then_some(body)
        },
    )
    .await;
    assert!(
        why.contains("leader's snapshot") && why.contains("--max-snapshot-bytes (65536 bytes)"),
        "{why}"
    );
    // A new member has no log to replay: it is catching up with the cluster.
    assert!(why.contains("catching up"), "{why}");
    // Its reads and writes, which run out of time however often they are sent to it again,
    // say why too, with their usual code (found by a hands-on campaign: they said "retry").
    let put = async {
        let answer = c
            .http
            .put(format!("{}/refused", c.url(id)))
            .body("v")
            .send()
            .await
            .expect("the member answers a PUT");
        let code = answer.status().as_u16();
        (code, answer.text().await.expect("the answer's text"))
    };
    let (put, get) = tokio::join!(put, c.get(id, &last));
    let get = get.expect("the member answers a GET");
    for ((code, text), outcome) in [(put, "will not happen"), (get, "nothing was read")] {
        assert_eq!(code, 503, "{text}");
        assert!(
            text.contains("cannot catch up: it refused the leader's snapshot")
                && text.contains("--max-snapshot-bytes (65536 bytes)")
                && text.contains("see /-/ready")
                && text.contains(outcome),
            "{text}"
        );
    }
    c.stop(id).await;
    c.spawn(id, &["--join"]);
    wait_for(
        Duration::from_secs(30),
        "the member to be ready without the limit",
        || async {
            let (code, _) = c.get(id, "-/ready").await?;
            (code == 200).then_some(())
        },
    )
    .await;
    c.wait_value(id, &last, &value, true).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_leader_streams_a_big_snapshot_without_holding_it() {
    a_joining_member_gets_a_big_snapshot(ProcCluster::new(1, &[])).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_leader_streams_a_big_snapshot_over_tls_without_holding_it() {
    a_joining_member_gets_a_big_snapshot(ProcCluster::new_tls(1, &[])).await;
}
