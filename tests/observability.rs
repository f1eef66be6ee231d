//! Seeing inside: `/-/status` across an election and a write, `/-/ready` while a large WAL
//! replays, `/-/metrics` as Prometheus text, and `raftexample dump` on good and torn WALs.

mod common;

use std::time::Duration;

use axum::http::{Method, StatusCode};
use common::{ProcCluster, TestCluster, bigdata, wait_for};

fn field(s: &serde_json::Value, name: &str) -> u64 {
    s[name]
        .as_u64()
        .unwrap_or_else(|| panic!("status lacks {name}: {s}"))
}

/// The status fields move as raft does: term grows with elections, commit and applied
/// advance with a write, and the leader moves when the leader is killed.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn status_follows_elections_and_writes() {
    let mut c = ProcCluster::start(3, &[]).await;
    let leader = c.wait_leader().await;
    // Every member registers its session once it knows the leader: wait for the three, so
    // that no registration lands between the write below and the status after it.
    wait_for(Duration::from_secs(15), "three sessions", || async {
        let s = c.status(leader).await?;
        (s["sessions"][0].as_u64() == Some(3) && s["last_index"] == s["applied"]).then_some(())
    })
    .await;
    let before = c.status(leader).await.expect("status");
    assert_eq!(before["role"], "Leader");
    assert_eq!(field(&before, "id"), leader);
    assert!(field(&before, "term") >= 2, "{before}");
    assert_eq!(before["members"].as_array().expect("members").len(), 3);
    let progress = before["progress"]
        .as_object()
        .expect("the leader reports progress");
    assert_eq!(progress.len(), 2);
    for p in progress.values() {
        assert_eq!(p["reachable"], true, "{p}");
    }

    c.put_ok(leader, "k", "v").await;
    let after = c.status(leader).await.expect("status");
    assert!(
        field(&after, "commit") > field(&before, "commit"),
        "{before} -> {after}"
    );
    assert!(
        field(&after, "applied") > field(&before, "applied"),
        "{before} -> {after}"
    );
    assert_eq!(field(&after, "last_index"), field(&after, "commit"));
    assert!(field(&after, "wal_bytes") > 0);

    let survivor = (1..=3).find(|id| *id != leader).expect("a follower");
    let follower = c.status(survivor).await.expect("status");
    assert_eq!(follower["role"], "Follower");
    assert!(
        follower.get("progress").is_none(),
        "followers report no progress: {follower}"
    );

    let changes_before = leader_changes(&c, survivor).await;
    c.kill(leader);
    let moved = wait_for(Duration::from_secs(15), "a new leader", || async {
        let s = c.status(survivor).await?;
        let l = s["leader"].as_u64()?;
        (l != 0 && l != leader).then_some(s)
    })
    .await;
    assert!(
        field(&moved, "term") > field(&after, "term"),
        "{after} -> {moved}"
    );
    // One new leader, one change: not the loss of the old one counted as another.
    assert_eq!(leader_changes(&c, survivor).await, changes_before + 1.0);

    let (code, text) = c
        .get(survivor, "-/status?pretty")
        .await
        .expect("pretty status");
    assert_eq!(code, 200);
    assert!(text.contains(&format!("node {survivor} is")), "{text}");
    assert!(text.contains("members:"), "{text}");
}

/// Node `id`'s `raftexample_leader_changes_total`.
async fn leader_changes(c: &ProcCluster, id: u64) -> f64 {
    let (code, metrics) = c.get(id, "-/metrics").await.expect("metrics");
    assert_eq!(code, 200);
    metrics
        .lines()
        .find(|l| l.starts_with("raftexample_leader_changes_total"))
        .and_then(|l| l.rsplit(' ').next())
        .and_then(|v| v.parse::<f64>().ok())
        .unwrap_or_else(|| panic!("no leader_changes_total in {metrics}"))
}

/// `/-/ready` answers 503 while a large WAL replays and 200 once everything committed before
/// the start is applied; `/-/health` answers 200 throughout.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn ready_waits_for_the_replay_of_a_large_wal() {
    let mut c = ProcCluster::new(1, &[]);
    let n = 1_000_000;
    bigdata::write_wal(&c.data_dir(1), &c.peers[0], n);
    c.spawn(1, &[]);
    let mut saw_replaying = false;
    let mut saw_health_during_replay = false;
    let deadline = std::time::Instant::now() + Duration::from_secs(120);
    loop {
        assert!(
            std::time::Instant::now() < deadline,
            "/-/ready never answered 200"
        );
        match c.get(1, "-/ready").await {
            Some((200, _)) => break,
            Some((503, body)) if body.contains("replaying") => {
                saw_replaying = true;
                saw_health_during_replay |= c.get(1, "-/health").await.map(|r| r.0) == Some(200);
            }
            _ => tokio::time::sleep(Duration::from_millis(5)).await,
        }
    }
    assert!(saw_replaying, "never saw /-/ready say it was replaying");
    assert!(
        saw_health_during_replay,
        "/-/health did not answer during replay"
    );
    // The last key of the WAL is there (the path drops the key's leading slash).
    let last = bigdata::key(n - 1);
    let path = format!("{}?stale", &last[1..]);
    assert_eq!(c.get(1, &path).await.map(|r| r.0), Some(200), "{last}");
}

/// A follower SIGKILLed right after it applied a write is ready again only once it has
/// applied that write again: its WAL's record of the commit index was written without a sync
/// and may have died with the process; the leader's answer to the node's ready probe (a
/// ReadIndex) says how far the cluster had committed.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn ready_after_a_crash_waits_for_what_the_node_had_applied() {
    let mut c = ProcCluster::start(3, &[]).await;
    let leader = c.wait_leader().await;
    let follower = (1..=3).find(|&n| n != leader).expect("three nodes");
    for i in 0..20 {
        c.put_ok(leader, &format!("k{i}"), &format!("v{i}")).await;
    }
    c.wait_value(follower, "k19", "v19", true).await;
    let applied = field(&c.status(follower).await.expect("status"), "applied");
    c.kill(follower);
    ready_again_at(&mut c, follower, applied, "k19", "v19").await;
}

/// A follower stopped while the others took writes is ready again only once it holds them.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn ready_after_a_restart_waits_for_the_writes_the_node_missed() {
    let mut c = ProcCluster::start(3, &[]).await;
    let leader = c.wait_leader().await;
    let follower = (1..=3).find(|&n| n != leader).expect("three nodes");
    c.put_ok(leader, "before", "1").await;
    c.wait_value(follower, "before", "1", true).await;
    c.stop(follower).await;
    for i in 0..30 {
        c.put_ok(leader, &format!("missed{i}"), &format!("v{i}"))
            .await;
    }
    let committed = field(&c.status(leader).await.expect("leader status"), "commit");
    ready_again_at(&mut c, follower, committed, "missed29", "v29").await;
}

/// A follower paused (SIGSTOP) while the others took writes, then let go on, is not ready
/// again until it holds them: the answers to its ready probe are all older than the window
/// from the moment it runs again, and a new one counts only once applied.
/// Before, `/-/ready` was checked at start-up only, and a resumed follower said ready while
/// its `?stale` reads missed writes acknowledged during the pause (found by a user's test).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn ready_after_a_pause_waits_for_the_writes_the_node_missed() {
    use nix::sys::signal::Signal;
    let mut c = ProcCluster::start(3, &[]).await;
    let leader = c.wait_leader().await;
    let follower = (1..=3).find(|&n| n != leader).expect("three nodes");
    c.put_ok(leader, "before", "1").await;
    c.wait_value(follower, "before", "1", true).await;
    assert_eq!(c.get(follower, "-/ready").await.map(|r| r.0), Some(200));
    // Every thread stopped before the writes: none of them may reach it.
    c.freeze(follower).await;
    // Big values, so that catching up takes a while after the pause.
    let big = "v".repeat(1_000_000);
    for i in 0..30 {
        c.put_ok(leader, &format!("paused{i}"), &big).await;
    }
    // Paused for longer than the ready window (an election timeout): the leader has stopped
    // counting it reachable.
    wait_for(
        Duration::from_secs(10),
        "the leader to miss the follower",
        || async {
            let status = c.status(leader).await?;
            let reachable = &status["progress"][follower.to_string()]["reachable"];
            (reachable == false).then_some(())
        },
    )
    .await;
    let committed = field(&c.status(leader).await.expect("leader status"), "commit");
    c.signal(follower, Signal::SIGCONT);
    ready_holding(&c, follower, committed, "paused29", &big).await;
}

/// A follower cut off from its leader in one direction (it hears the leader, the leader does
/// not hear it) stops being ready within an election timeout: it still gets heartbeats, but
/// the leader no longer confirms how far the cluster has committed (its rounds of the ready
/// probe go unanswered), and it could neither forward a write nor confirm a read. It is
/// ready again once the link is back. Before, readiness was judged at start-up only.
#[tokio::test(start_paused = true)]
async fn a_follower_cut_off_one_way_is_not_ready_until_the_link_is_back() {
    let c = TestCluster::start(3, |_| {}).await;
    let leader = c.wait_leader().await;
    let follower = (1..=3).find(|&n| n != leader).expect("three nodes");
    let ready = |c: &TestCluster| c.node(follower).readiness();
    wait_for(
        Duration::from_secs(10),
        "the follower to be ready",
        || async { ready(&c).ok() },
    )
    .await;
    c.net.cut_one_way(follower, leader);
    let why = wait_for(
        Duration::from_secs(10),
        "the follower to say it is not ready",
        || async { ready(&c).err() },
    )
    .await;
    assert!(why.contains("has not said"), "{why}");
    // Writes go on through the other follower meanwhile.
    let (status, body) =
        common::call(&c.router(leader), Method::PUT, "/during", b"v".to_vec()).await;
    assert_eq!(status, StatusCode::NO_CONTENT, "{body}");
    c.net.heal();
    wait_for(
        Duration::from_secs(10),
        "the follower to be ready again",
        || async { ready(&c).ok() },
    )
    .await;
    assert_eq!(c.node(follower).kv().get("/during"), Some("v".into()));
    c.shutdown().await;
}

/// Starts node `id` again and waits for its `/-/ready`; by then it must count `index` as
/// committed when it came back, have applied that far, and serve `key` as `value` locally.
async fn ready_again_at(c: &mut ProcCluster, id: u64, index: u64, key: &str, value: &str) {
    c.spawn(id, &[]);
    let status = ready_holding(c, id, index, key, value).await;
    assert!(
        field(&status, "commit_at_start") >= index,
        "ready before counting index {index} as committed when it came back: {status}"
    );
}

/// Waits for node `id`'s `/-/ready`; by then it must have applied `index` and serve `key` as
/// `value` locally. Returns its status.
async fn ready_holding(
    c: &ProcCluster,
    id: u64,
    index: u64,
    key: &str,
    value: &str,
) -> serde_json::Value {
    wait_for(Duration::from_secs(20), "/-/ready", || async {
        (c.get(id, "-/ready").await.map(|r| r.0) == Some(200)).then_some(())
    })
    .await;
    let status = c.status(id).await.expect("status once ready");
    assert!(
        field(&status, "applied") >= index,
        "ready before reaching index {index}: {status}"
    );
    assert_eq!(
        c.get(id, &format!("{key}?stale")).await,
        Some((200, value.to_string())),
        "ready without {key}"
    );
    status
}

/// `name{label="value",...} number`, the exposition format's sample line (the parser crate
/// skips lines it does not understand, so the grammar is checked here).
fn is_sample_line(line: &str) -> bool {
    let Some((series, value)) = line.rsplit_once(' ') else {
        return false;
    };
    let value_ok = value.parse::<f64>().is_ok() || ["+Inf", "-Inf", "NaN"].contains(&value);
    let (name, labels) = match series.split_once('{') {
        Some((name, rest)) => match rest.strip_suffix('}') {
            Some(labels) => (name, labels),
            None => return false,
        },
        None => (series, ""),
    };
    let name_ok = !name.is_empty()
        && name
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || c == '_' || c == ':')
        && !name.starts_with(|c: char| c.is_ascii_digit());
    let labels_ok = labels.is_empty()
        || labels.split(',').all(|pair| {
            pair.split_once('=').is_some_and(|(k, v)| {
                !k.is_empty()
                    && k.chars().all(|c| c.is_ascii_alphanumeric() || c == '_')
                    && v.len() >= 2
                    && v.starts_with('"')
                    && v.ends_with('"')
            })
        });
    value_ok && name_ok && labels_ok
}

/// `/-/metrics` is Prometheus text, and its counters move with traffic.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn metrics_parse_and_move_with_traffic() {
    let mut cluster = ProcCluster::start(3, &[]).await;
    let leader = cluster.wait_leader().await;
    let port = cluster.rest_ports[leader as usize - 1];
    let cluster = cluster;
    let http = reqwest::Client::new();
    let scrape = || async {
        let text = http
            .get(format!("http://127.0.0.1:{port}/-/metrics"))
            .send()
            .await
            .expect("GET /-/metrics")
            .text()
            .await
            .expect("body");
        for line in text
            .lines()
            .filter(|l| !l.is_empty() && !l.starts_with('#'))
        {
            assert!(
                is_sample_line(line),
                "not a Prometheus sample line: {line:?}"
            );
        }
        prometheus_parse::Scrape::parse(text.lines().map(|l| Ok(l.to_string()))).expect("parse")
    };
    let value = |s: &prometheus_parse::Scrape, name: &str, label: Option<(&str, &str)>| -> f64 {
        s.samples
            .iter()
            .filter(|x| x.metric == name)
            .filter(|x| label.is_none_or(|(k, v)| x.labels.get(k) == Some(v)))
            .map(|x| match &x.value {
                prometheus_parse::Value::Counter(v)
                | prometheus_parse::Value::Gauge(v)
                | prometheus_parse::Value::Untyped(v) => *v,
                prometheus_parse::Value::Histogram(buckets) => {
                    buckets.last().map_or(0.0, |b| b.count)
                }
                prometheus_parse::Value::Summary(_) => 0.0,
            })
            .sum()
    };
    let before = scrape().await;
    for i in 0..5 {
        let r = http
            .put(format!("http://127.0.0.1:{port}/m{i}"))
            .body("v")
            .send()
            .await
            .expect("PUT");
        assert_eq!(r.status().as_u16(), 204);
        let r = http
            .get(format!("http://127.0.0.1:{port}/m{i}"))
            .send()
            .await
            .expect("GET");
        assert_eq!(r.status().as_u16(), 200);
    }
    let after = scrape().await;
    let delta = |name: &str, label: Option<(&str, &str)>| {
        value(&after, name, label) - value(&before, name, label)
    };
    assert_eq!(delta("raftexample_proposals_received_total", None), 5.0);
    assert_eq!(delta("raftexample_proposals_committed_total", None), 5.0);
    assert!(delta("raftexample_entries_applied_total", None) >= 5.0);
    assert_eq!(delta("raftexample_read_index_requests_total", None), 5.0);
    assert!(delta("raftexample_read_index_seconds", None) >= 5.0);
    assert!(delta("raftexample_wal_sync_seconds", None) >= 1.0);
    // Each synced write is also counted by the entries it carried.
    assert_eq!(
        delta("raftexample_wal_sync_entries", None),
        delta("raftexample_wal_sync_seconds", None)
    );
    // Five entries of at least a key and a value, framed: well over 100 bytes.
    assert!(delta("raftexample_wal_bytes_written_total", None) > 100.0);
    assert!(delta("raftexample_peer_messages_sent_total", None) >= 2.0);
    assert_eq!(
        delta("raftexample_http_requests_total", Some(("route", "put"))),
        5.0
    );
    assert!(value(&after, "raftexample_term", None) >= 2.0);
    assert_eq!(value(&after, "raftexample_leader", None), leader as f64);
    // Another node serves the same values: the metrics above were the leader's own.
    let other = if leader == 1 { 2 } else { 1 };
    cluster.wait_value(other, "m0", "v", false).await;
}

fn dump(data_dir: &std::path::Path, json: bool) -> (bool, String) {
    let mut cmd = std::process::Command::new(common::binary());
    cmd.args(["dump", "--id", "1", "--data-dir"]).arg(data_dir);
    if json {
        cmd.arg("--json");
    }
    let out = cmd.output().expect("running raftexample dump");
    (
        out.status.success(),
        String::from_utf8_lossy(&out.stdout).into_owned(),
    )
}

/// `dump` prints every record of a WAL the node wrote, as text and as JSON lines, and on a
/// torn WAL prints the good records and the cut a start makes at the torn record.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn dump_prints_the_wal_and_the_cut_of_a_torn_record() {
    let mut c = ProcCluster::start(1, &[]).await;
    c.put_ok(1, "foo", "bar").await;
    c.put_ok(1, "a b", "with space").await;
    c.stop(1).await;
    let data_dir = c.data_dir(1);

    let (ok, text) = dump(&data_dir, false);
    assert!(ok, "dump failed:\n{text}");
    let lines: Vec<&str> = text.lines().collect();
    assert!(lines[0].contains("metadata  node=1"), "{text}");
    assert!(lines[0].contains(&c.peers[0]), "{text}");
    for needle in [
        "conf-change add node 1 url=",
        "put \"/foo\" = \"bar\"",
        "put \"/a b\" = \"with space\"",
        "empty (a new leader's first entry)",
        "hardstate  term=",
    ] {
        assert!(text.contains(needle), "dump lacks {needle:?}:\n{text}");
    }

    let (ok, json) = dump(&data_dir, true);
    assert!(ok);
    let records: Vec<serde_json::Value> = json
        .lines()
        .map(|l| serde_json::from_str(l).expect("each line is JSON"))
        .collect();
    let put = records
        .iter()
        .find(|r| r["op"] == "put" && r["key"] == "/foo")
        .expect("the put of /foo");
    assert_eq!(put["value"], "bar");
    assert!(put["index"].as_u64().expect("index") >= 2);
    assert!(records.iter().any(|r| r["type"] == "hardstate"));

    // Tear the last record: cut its last few bytes off (the file may run on past it, with
    // preallocated zeros). The incarnation line that ends the dump is no record.
    assert_eq!(
        records.last().map(|r| &r["type"]),
        Some(&"incarnation".into())
    );
    let last = records
        .iter()
        .rfind(|r| r["type"] != "padding" && r["type"] != "incarnation")
        .expect("a last record");
    let file = data_dir
        .join("raftexample-1")
        .join(last["file"].as_str().expect("file"));
    let end = last["offset"].as_u64().expect("offset") + last["len"].as_u64().expect("len");
    std::fs::OpenOptions::new()
        .write(true)
        .open(&file)
        .expect("open segment")
        .set_len(end - 3)
        .expect("truncate");
    // A start cuts such a tail and goes on: dump says so, and exits 0 as the start runs.
    let (ok, torn) = dump(&data_dir, false);
    assert!(ok, "a torn tail alone should not fail the dump:\n{torn}");
    let tail_line = torn
        .lines()
        .find(|l| l.starts_with("tail: "))
        .unwrap_or_else(|| panic!("no line says what a start cuts:\n{torn}"));
    let offset = last["offset"].as_u64().expect("offset");
    let cut = format!(
        "a start cuts the last {} bytes at offset {offset} of {} and goes on",
        end - 3 - offset,
        file.display()
    );
    assert!(tail_line.contains(&cut), "{cut:?} not in {tail_line:?}");
    assert!(
        torn.contains("put \"/foo\" = \"bar\""),
        "good records before the tear: {torn}"
    );
    // dump changed nothing: the node itself repairs the tail and starts.
    assert_eq!(std::fs::metadata(&file).expect("stat").len(), end - 3);
    c.spawn(1, &[]);
    c.wait_value(1, "foo", "bar", false).await;
    assert!(
        c.log(1).contains("torn"),
        "the node should warn about the torn tail"
    );
}
