//! Whole-binary tests: real `raftexample` processes on loopback, stopped with signals,
//! restarted from their folders.

mod common;
#[path = "faults/stalls.rs"]
mod stalls;

use std::collections::BTreeMap;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use common::{ProcCluster, wait_for};

/// The README's fault-tolerance walk-through: put foo, stop node 2, put bar and read it on
/// node 3, restart node 2 and read bar from it.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn readme_fault_tolerance_walkthrough() {
    let mut c = ProcCluster::start(3, &[]).await;
    c.put_ok(1, "foo", "bar").await;
    c.wait_value(1, "foo", "bar", false).await;
    let status = c.stop(2).await;
    assert!(status.success(), "node 2 exited with {status} on SIGTERM");
    c.put_ok(1, "bar", "baz").await;
    c.wait_value(3, "bar", "baz", false).await;
    c.spawn(2, &[]);
    c.wait_value(2, "bar", "baz", false).await;
    c.wait_value(2, "foo", "bar", false).await;
}

/// Any node takes writes: a PUT on a follower is forwarded through raft, and every node
/// serves it.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn proposals_on_a_follower_succeed() {
    let mut c = ProcCluster::start(3, &[]).await;
    let leader = c.wait_leader().await;
    let follower = (1..=3).find(|id| *id != leader).expect("a follower");
    assert_eq!(c.put(follower, "via-follower", "yes").await, Some(204));
    for id in 1..=3 {
        // Linearizable reads: a 204 means committed, so every node must see it at once.
        assert_eq!(
            c.get(id, "via-follower").await,
            Some((200, "yes".to_string())),
            "node {id}"
        );
    }
}

/// Every node SIGKILLed in the middle of a write load, then restarted: no acknowledged
/// write is lost.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn kill_all_nodes_loses_no_acknowledged_write() {
    let c = ProcCluster::start(3, &["--snapshot-count", "200"]).await;
    let acked: Arc<Mutex<BTreeMap<String, String>>> = Arc::default();
    let c = Arc::new(tokio::sync::Mutex::new(c));
    let stop = tokio_util::sync::CancellationToken::new();
    let mut writers = Vec::new();
    for w in 0..8u64 {
        let (acked, stop) = (acked.clone(), stop.clone());
        let (urls, http) = {
            let c = c.lock().await;
            (
                (1..=3).map(|id| c.url(id)).collect::<Vec<_>>(),
                c.http.clone(),
            )
        };
        writers.push(tokio::spawn(async move {
            let mut i = 0u64;
            while !stop.is_cancelled() {
                let key = format!("w{w}-{i}");
                let url = &urls[(i % 3) as usize];
                let r = http
                    .put(format!("{url}/{key}"))
                    .body(format!("v{i}"))
                    .timeout(Duration::from_secs(2))
                    .send()
                    .await;
                if matches!(r, Ok(ref r) if r.status().as_u16() == 204) {
                    acked.lock().expect("lock").insert(key, format!("v{i}"));
                }
                i += 1;
            }
        }));
    }
    // Kill everything while the writers are busy, once enough writes were acknowledged to
    // mean anything (a busy machine takes longer to get there).
    let enough = 200;
    wait_for(
        Duration::from_secs(60),
        "writes to be acknowledged",
        || async { (acked.lock().expect("lock").len() >= enough).then_some(()) },
    )
    .await;
    {
        let mut c = c.lock().await;
        for id in 1..=3 {
            c.kill(id);
        }
    }
    stop.cancel();
    for w in writers {
        w.await.expect("writer");
    }
    let acked = acked.lock().expect("lock").clone();
    assert!(acked.len() >= enough);
    let mut c = Arc::try_unwrap(c)
        .ok()
        .expect("writers are done")
        .into_inner();
    for id in 1..=3 {
        c.spawn(id, &[]);
    }
    c.wait_leader().await;
    for (key, value) in &acked {
        for id in 1..=3 {
            c.wait_value(id, key, value, false).await;
        }
    }
}

/// A follower that was down while the log was compacted past its position catches up from a
/// snapshot sent by the leader. Each snapshot is one info line, with its index, size and
/// duration: taken on the leader, installed on the follower (an install said so three times,
/// a snapshot taken twice, by the node and its snapshotter).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_follower_down_past_a_snapshot_catches_up_from_it() {
    let mut c = ProcCluster::start(
        3,
        &["--snapshot-count", "20", "--snapshot-catchup-entries", "5"],
    )
    .await;
    c.put_ok(1, "before", "0").await;
    let leader = c.wait_leader().await;
    let lagging = (1..=3).find(|id| *id != leader).expect("a follower");
    c.stop(lagging).await;
    for i in 0..100 {
        c.put_ok(leader, &format!("k{i}"), &i.to_string()).await;
    }
    let status = c.status(leader).await.expect("leader status");
    assert!(
        status["first_index"].as_u64().unwrap_or(0) > 10,
        "the leader's log should be compacted: {status}"
    );
    c.spawn(lagging, &[]);
    for i in [0, 50, 99] {
        c.wait_value(lagging, &format!("k{i}"), &i.to_string(), true)
            .await;
    }
    c.wait_value(lagging, "before", "0", true).await;
    let (installed, _) = snapshot_info_lines(&c.log(lagging));
    assert!(
        installed > 0,
        "node {lagging} should have caught up through a snapshot"
    );
    let (_, taken) = snapshot_info_lines(&c.log(leader));
    assert!(taken > 0, "the leader took no snapshot");
    // And it keeps following afterwards.
    c.put_ok(leader, "after", "1").await;
    c.wait_value(lagging, "after", "1", true).await;
}

/// The snapshots installed and taken that a node's `log` tells of, checking that the info
/// lines of the modules that take, save and restore snapshots (`raft_node::snapshots`,
/// `snapshotter`, `kvstore`) are each one snapshot installed ("installed a snapshot from the
/// leader") or taken ("snapshot saved"), with its index, size and duration as fields.
fn snapshot_info_lines(log: &str) -> (usize, usize) {
    const MODULES: [&str; 3] = [
        "raftexample::raft_node::snapshots:",
        "raftexample::snapshotter",
        "raftexample::kvstore",
    ];
    let (mut installed, mut taken) = (0, 0);
    for line in log.lines() {
        let Some((_, said)) = line.split_once(" INFO ") else {
            continue;
        };
        if !MODULES.iter().any(|module| said.starts_with(module)) {
            continue;
        }
        let install = said.contains("installed a snapshot from the leader");
        let take = said.contains("snapshot saved");
        assert!(
            install || take,
            "an info line about a snapshot that is not its one line:\n{line}\n{log}"
        );
        for field in ["index=", "bytes=", "seconds="] {
            assert!(said.contains(field), "no {field} in {line}");
        }
        installed += usize::from(install);
        taken += usize::from(take);
    }
    (installed, taken)
}

/// Keys are limited by the HTTP library, not by us: a key of 60,000 bytes is stored and read
/// back over a real socket; a request line over hyper's 65,534 bytes gets 414 (hyper's own
/// answer, before the node sees it), nothing is stored, and the node keeps serving. The long
/// requests go over a bare socket, as curl sends them: Rust's `http` crate will not even build
/// a URI that long.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_key_too_long_for_the_http_library_gets_414_and_the_node_keeps_serving() {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let c = ProcCluster::start(1, &[]).await;
    let long = "k".repeat(60_000);
    c.put_ok(1, &long, "fits").await;
    assert_eq!(c.get(1, &long).await, Some((200, "fits".into())));

    let applied = |st: Option<serde_json::Value>| st.expect("status")["applied"].as_u64();
    let before = applied(c.status(1).await);
    let port = c.url(1).rsplit(':').next().expect("a port").to_string();
    let too_long = "k".repeat(70_000);
    for head in [
        format!("PUT /{too_long} HTTP/1.1\r\nHost: x\r\nContent-Length: 1\r\n\r\nv"),
        format!("GET /{too_long} HTTP/1.1\r\nHost: x\r\n\r\n"),
    ] {
        let mut conn = tokio::net::TcpStream::connect(format!("127.0.0.1:{port}"))
            .await
            .expect("connect to the REST port");
        conn.write_all(head.as_bytes()).await.expect("send");
        let mut answer = Vec::new();
        tokio::time::timeout(
            std::time::Duration::from_secs(10),
            conn.read_to_end(&mut answer),
        )
        .await
        .expect("hyper closes the connection after a 414")
        .expect("read the answer");
        let answer = String::from_utf8_lossy(&answer);
        assert!(
            answer.starts_with("HTTP/1.1 414 "),
            "{}",
            &answer[..answer.len().min(200)]
        );
    }
    assert_eq!(
        applied(c.status(1).await),
        before,
        "a refused PUT proposed nothing"
    );
    c.put_ok(1, "after-414", "alive").await;
    assert_eq!(c.get(1, "after-414").await, Some((200, "alive".into())));
}

/// A node's second process on the same data dir fails at once with a clear message.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_second_process_on_one_data_dir_is_refused() {
    let c = ProcCluster::start(1, &[]).await;
    // Same folders, other ports: only the lock can stop it.
    let mut args = c.args(1);
    let port_flag = args.iter().position(|a| a == "--port").expect("--port");
    args[port_flag + 1] = common::free_ports(1)[0].to_string();
    let out = std::process::Command::new(common::binary())
        .args(&args)
        .output()
        .expect("running a second raftexample");
    assert!(!out.status.success());
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        stderr.contains("another raftexample"),
        "unclear error: {stderr}"
    );
}

/// A WAL damaged in the middle (a byte flipped in records a later sync covered): the node
/// refuses to start, names the file and offset, and says on a second line how to bring it
/// back (a backup, or --join to copy the others), leaving the data dir as it was.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_damaged_wal_is_refused_with_what_to_do() {
    let mut c = ProcCluster::start(1, &[]).await;
    for i in 0..20 {
        c.put_ok(1, &format!("k{i}"), "some value to fill the log")
            .await;
    }
    c.stop(1).await;
    let wal_dir = c.data_dir(1).join("raftexample-1");
    let segment = std::fs::read_dir(&wal_dir)
        .expect("WAL folder")
        .map(|e| e.expect("entry").path())
        .find(|p| p.extension().is_some_and(|e| e == "wal"))
        .expect("a WAL segment");
    let mut bytes = std::fs::read(&segment).expect("segment");
    bytes[600] ^= 0x40;
    std::fs::write(&segment, &bytes).expect("damaged");
    let (status, stderr) = c.run_on_data_dir(1, &c.data_dir(1));
    assert_eq!(status.code(), Some(1), "{stderr}");
    let lines: Vec<&str> = stderr
        .lines()
        .filter(|l| l.starts_with("raftexample:"))
        .collect();
    assert_eq!(lines.len(), 2, "{stderr}");
    let name = segment.file_name().expect("name").to_string_lossy();
    assert!(
        lines[0].contains("cannot start:")
            && lines[0].contains(&*name)
            && lines[0].contains("offset"),
        "{stderr}"
    );
    assert!(
        lines[1].contains("--join") && lines[1].contains("backup"),
        "{stderr}"
    );
    assert_eq!(
        std::fs::read(&segment).expect("segment"),
        bytes,
        "left as it was"
    );
}

/// The newest WAL segment deleted (by hand, or lost): the node refuses to start, naming the
/// segment that names it and the missing one, where it used to start without the writes that
/// segment held (and acknowledge that log as its own).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_deleted_newest_wal_segment_is_refused() {
    let mut c = ProcCluster::start(1, &["--wal-segment-bytes", "4096"]).await;
    for i in 0..60 {
        c.put_ok(
            1,
            &format!("k{i}"),
            "some value to fill the log, segment after segment",
        )
        .await;
    }
    c.stop(1).await;
    let wal_dir = c.data_dir(1).join("raftexample-1");
    let mut segments: Vec<_> = std::fs::read_dir(&wal_dir)
        .expect("WAL folder")
        .map(|e| e.expect("entry").path())
        .filter(|p| p.extension().is_some_and(|e| e == "wal"))
        .collect();
    segments.sort();
    assert!(segments.len() >= 2, "{segments:?}");
    let newest = segments.pop().expect("a segment");
    std::fs::remove_file(&newest).expect("deleting the newest segment");
    let (status, stderr) = c.run_on_data_dir(1, &c.data_dir(1));
    assert_eq!(status.code(), Some(1), "{stderr}");
    let name = |p: &std::path::Path| p.file_name().expect("name").to_string_lossy().into_owned();
    let first = stderr
        .lines()
        .find(|l| l.starts_with("raftexample: cannot start:"))
        .unwrap_or_else(|| panic!("{stderr}"));
    let before = segments.last().expect("the segment before");
    assert!(
        first.contains(&name(before))
            && first.contains(&name(&newest))
            && first.contains("missing"),
        "{stderr}"
    );
}

/// With no flags, the binary serves a single-node store on the original's ports.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn no_flags_start_a_working_single_node_store() {
    // The default ports (9021, 9121) may be taken on a busy machine; skip only the part that
    // needs them, loudly.
    if std::net::TcpListener::bind("127.0.0.1:9121").is_err()
        || std::net::TcpListener::bind("127.0.0.1:9021").is_err()
    {
        panic!("ports 9021/9121 are in use; this test needs them free");
    }
    let dir = tempfile::TempDir::new().expect("temp dir");
    let mut child = std::process::Command::new(common::binary())
        .current_dir(dir.path())
        .stderr(std::process::Stdio::null())
        .spawn()
        .expect("starting raftexample");
    let http = reqwest::Client::new();
    let result = async {
        wait_for(
            Duration::from_secs(15),
            "PUT on the default port",
            || async {
                let r = http
                    .put("http://127.0.0.1:9121/hello")
                    .body("world")
                    .send()
                    .await
                    .ok()?;
                (r.status().as_u16() == 204).then_some(())
            },
        )
        .await;
        let r = http
            .get("http://127.0.0.1:9121/hello")
            .send()
            .await
            .expect("GET");
        r.text().await.expect("body")
    }
    .await;
    let _ = child.kill();
    let _ = child.wait();
    assert_eq!(result, "world");
    assert!(
        dir.path().join("raftexample-1").is_dir(),
        "WAL folder in the working dir"
    );
    assert!(
        dir.path().join("raftexample-1-snap").is_dir(),
        "snapshot folder in the working dir"
    );
}

/// A node whose log reader goes away (`raftexample 2>&1 | head -1`) goes on serving and stops
/// cleanly: a log line it cannot write is dropped. Before, the subscriber reported the failed
/// write on stderr, the same broken pipe, and that panicked the logging thread (exit 101).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_node_whose_log_reader_went_away_serves_on() {
    use std::io::BufRead;
    let ports = common::free_ports(2);
    let dir = tempfile::TempDir::new().expect("temp dir");
    let mut child = std::process::Command::new(common::binary())
        .current_dir(dir.path())
        .args([
            "--listen-host",
            "127.0.0.1",
            "--port",
            &ports[0].to_string(),
        ])
        .args(["--cluster", &format!("http://127.0.0.1:{}", ports[1])])
        .stderr(std::process::Stdio::piped())
        .spawn()
        .expect("starting raftexample");
    let pid = nix::unistd::Pid::from_raw(child.id() as i32);
    {
        let stderr = child.stderr.take().expect("piped stderr");
        let mut first = String::new();
        std::io::BufReader::new(stderr)
            .read_line(&mut first)
            .expect("the first log line");
        assert!(!first.is_empty(), "the node logged nothing");
        // Dropped here: the pipe's reader is gone, as `head -1` goes.
    }
    let url = format!("http://127.0.0.1:{}", ports[0]);
    let http = reqwest::Client::new();
    wait_for(
        Duration::from_secs(15),
        "a PUT after the reader went",
        || async {
            let r = http.put(format!("{url}/k")).body("v").send().await.ok()?;
            (r.status().as_u16() == 204).then_some(())
        },
    )
    .await;
    let r = http.get(format!("{url}/k")).send().await.expect("GET");
    assert_eq!(r.text().await.expect("body"), "v");
    // Stopping logs (to nowhere now) and must still end cleanly.
    nix::sys::signal::kill(pid, nix::sys::signal::Signal::SIGTERM).expect("SIGTERM");
    let deadline = Instant::now() + Duration::from_secs(10);
    let status = loop {
        if let Some(status) = child.try_wait().expect("wait") {
            break status;
        }
        assert!(
            Instant::now() < deadline,
            "the node did not exit after SIGTERM"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    };
    assert!(status.success(), "exited with {status}");
}

/// Stops `probe` (started at `epoch`); of the stalls it saw that overlap `from..=to`, the
/// longest (what a timing bound excuses) and each described (for the assertion's message).
fn stalls_within(
    probe: stalls::StallProbe,
    epoch: Instant,
    from: Instant,
    to: Instant,
) -> (Duration, Vec<String>) {
    let ns = |t: Instant| u64::try_from(t.duration_since(epoch).as_nanos()).unwrap_or(u64::MAX);
    let stalls: Vec<stalls::Stall> = probe
        .finish()
        .into_iter()
        .filter(|s| s.overlaps(ns(from), ns(to)))
        .collect();
    let longest = stalls.iter().map(|s| s.took).max().unwrap_or_default();
    (
        longest,
        stalls.iter().map(stalls::Stall::describe).collect(),
    )
}

/// SIGTERM to every node at once (`./cluster.sh stop`, Ctrl-C of goreman): the leader hands
/// over to a follower that is stopping too, and must not wait for it to lead (it used to
/// wait out its 800 ms limit, and log that it stopped "with requests still in flight"). Once
/// every other voter is unreachable it has no one to hand over to, and every node stops
/// cleanly, on its own, well inside that limit. Each log says it heard the signal before it
/// says it is stopping (the other way round, it read as a stop of the node's own accord).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn stopping_every_node_at_once_is_quick_and_clean() {
    let mut c = ProcCluster::start(3, &[]).await;
    // A connection per request, as curl: a kept-alive one would hold its node a little
    // longer at the stop (see the kept-alive test below), and the leader with it.
    c.http = reqwest::Client::builder()
        .pool_max_idle_per_host(0)
        .build()
        .expect("a client");
    let leader = c.wait_leader().await;
    c.put_ok(leader, "k", "v").await;
    for id in 1..=3 {
        c.signal(id, nix::sys::signal::Signal::SIGTERM);
    }
    for id in 1..=3 {
        let status = c.wait_exit(id, Duration::from_secs(10)).await;
        assert!(status.success(), "node {id} exited with {status}");
    }
    for id in 1..=3 {
        let log = c.log(id);
        assert!(
            !log.contains("still in flight") && !log.contains("still open"),
            "node {id} stopped at its time limit instead of cleanly:\n{log}"
        );
        let heard = log.find("signal received");
        let stopping = log.find("stopping: answering what is in flight");
        assert!(
            heard.is_some() && stopping.is_some() && heard < stopping,
            "node {id} logged its stop before the signal that asked it:\n{log}"
        );
    }
}

/// SIGTERM of the leader while 16 clients write: it hands leadership to a follower before it
/// goes (no election timeout to wait out), answers what it had in flight, and exits at once.
/// No client gets a 503, and no write around the hand-over waits more than 500 ms (or, on a
/// machine so busy that writes stall that long anyway, longer than the slowest write of the
/// steady load before it), beyond what the machine itself stalled meanwhile (a disk sync of a
/// second holds every node's WAL, whatever the hand-over does); a client whose node has gone
/// moves to another (a refused connection is all it sees).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn stopping_the_leader_hands_over_without_stalling_writes() {
    let mut c = ProcCluster::start(3, &[]).await;
    let epoch = Instant::now();
    let probe = stalls::StallProbe::start(c.dir.path(), epoch);
    let leader = c.wait_leader().await;
    let urls: Vec<String> = (1..=3).map(|id| c.url(id)).collect();
    let stop = tokio_util::sync::CancellationToken::new();
    let mut clients = Vec::new();
    for w in 0..16usize {
        let (urls, stop, http) = (urls.clone(), stop.clone(), c.http.clone());
        clients.push(tokio::spawn(async move {
            let mut target = w % 3;
            // (started, took) of every acknowledged write, and what went wrong.
            let (mut writes, mut bad) = (Vec::new(), Vec::new());
            let mut i = 0u64;
            while !stop.is_cancelled() {
                i += 1;
                let started = Instant::now();
                let sent = http
                    .put(format!("{}/c{w}-{i}", urls[target]))
                    .body("v")
                    .send()
                    .await;
                let took = started.elapsed();
                match sent {
                    Ok(r) if r.status().as_u16() == 204 => writes.push((started, took)),
                    Ok(r) => {
                        let status = r.status();
                        let body = r.text().await.unwrap_or_default();
                        bad.push(format!(
                            "{status} from node {} after {took:?}: {}",
                            target + 1,
                            body.trim_end()
                        ));
                    }
                    // The node has gone: try the next one.
                    Err(e) if e.is_connect() => target = (target + 1) % 3,
                    // The whole chain: "error sending request" alone does not say whether
                    // the connection was closed under the request or the answer never came.
                    Err(e) => bad.push(format!("{e:?} after {took:?}")),
                }
            }
            (writes, bad)
        }));
    }
    // A second of steady load; then stop the leader.
    tokio::time::sleep(Duration::from_millis(1_000)).await;
    let stopped_at = Instant::now();
    c.signal(leader, nix::sys::signal::Signal::SIGTERM);
    let new_leader = c.wait_new_leader(leader, Duration::from_secs(5)).await;
    let took_over = stopped_at.elapsed();
    let status = c.wait_exit(leader, Duration::from_secs(5)).await;
    let exited = stopped_at.elapsed();
    assert!(status.success(), "the leader exited with {status}");
    // Keep writing a little with the new leader, then stop the clients.
    tokio::time::sleep(Duration::from_millis(500)).await;
    stop.cancel();
    let (mut before, mut around, mut total) = (Duration::ZERO, Duration::ZERO, 0);
    // Writes in flight at the SIGTERM or started within a second of it.
    let window = stopped_at..stopped_at + Duration::from_secs(1);
    for client in clients {
        let (writes, bad) = client.await.expect("client");
        assert!(bad.is_empty(), "a client got {bad:?}");
        total += writes.len();
        for (started, took) in writes {
            if window.contains(&started) || (started < stopped_at && started + took > stopped_at) {
                around = around.max(took);
            } else if started < stopped_at {
                before = before.max(took);
            }
        }
    }
    eprintln!(
        "{total} writes; node {new_leader} led {took_over:?} after the SIGTERM; the old leader \
         exited after {exited:?}; slowest write {around:?} around the hand-over, {before:?} before"
    );
    assert!(total > 0, "no write went through");
    let (stalled, seen) = stalls_within(probe, epoch, stopped_at, window.end + around);
    assert!(
        around <= Duration::from_millis(500).max(before) + stalled,
        "a write around the hand-over waited {around:?} (before it, at most {before:?}; the \
         machine's stalls meanwhile: {seen:?})"
    );
    assert!(
        took_over <= Duration::from_secs(1) + stalled,
        "node {new_leader} led only after {took_over:?} (the machine's stalls: {seen:?})"
    );
    assert!(
        exited <= Duration::from_secs(1) + stalled,
        "the leader took {exited:?} to exit (the machine's stalls: {seen:?})"
    );
}

/// A client that keeps its connection to the leader open and writes on it after the SIGTERM
/// has handed leadership over: the stopping node serves that write (forwarded to the new
/// leader: 204, with `Connection: close`, so the client goes elsewhere next) rather than
/// refusing it or closing the connection under it; once the client has closed the connection,
/// the node exits. The write is sent in two parts, its head at once and its body only once
/// the new leader leads, so that it is in flight across the whole hand-over however slow the
/// machine.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_write_on_a_kept_alive_connection_to_a_stopping_leader_is_served() {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    // Ticks of 300 ms: the stopping leader goes at its limit of eight ticks whatever is in
    // flight, and the hand-over, the test's polling and the forwarded write must fit in it;
    // 800 ms (the default) is short for that on a loaded machine.
    let mut c = ProcCluster::start(3, &["--tick-ms", "300"]).await;
    let leader = c.wait_leader().await;
    let addr = c.url(leader).trim_start_matches("http://").to_string();
    let mut conn = tokio::net::TcpStream::connect(&addr)
        .await
        .expect("connect");
    let head = |key: &str| format!("PUT /{key} HTTP/1.1\r\nHost: x\r\nContent-Length: 1\r\n\r\n");
    // The answer on `conn`: its status and its head, lower-cased.
    async fn answer(conn: &mut tokio::net::TcpStream, key: &str) -> (u16, String) {
        let mut got = Vec::new();
        let mut buf = [0u8; 1024];
        while !got.windows(4).any(|w| w == b"\r\n\r\n") {
            let n = conn.read(&mut buf).await.expect("read the answer");
            assert!(
                n > 0,
                "the node closed the connection under the PUT of {key}"
            );
            got.extend_from_slice(&buf[..n]);
        }
        let head = String::from_utf8_lossy(&got).to_lowercase();
        let status = head[9..12].parse().expect("a status code");
        (status, head)
    }
    conn.write_all(format!("{}v", head("before")).as_bytes())
        .await
        .expect("send");
    let (status, answered) = answer(&mut conn, "before").await;
    assert_eq!(status, 204, "{answered}");
    assert!(!answered.contains("connection: close"), "{answered}");

    c.signal(leader, nix::sys::signal::Signal::SIGTERM);
    conn.write_all(head("after").as_bytes())
        .await
        .expect("send the head");
    let new_leader = c.wait_new_leader(leader, Duration::from_secs(5)).await;
    conn.write_all(b"v").await.expect("send the body");
    let (status, answered) = answer(&mut conn, "after").await;
    assert_eq!(status, 204, "the write across the hand-over: {answered}");
    assert!(answered.contains("connection: close"), "{answered}");
    assert_eq!(
        c.get(new_leader, "after").await,
        Some((200, "v".to_string()))
    );
    drop(conn);
    let status = c.wait_exit(leader, Duration::from_secs(5)).await;
    assert!(status.success(), "the old leader exited with {status}");
    // It stopped because its last client had gone, not at its stop limit.
    let log = c.log(leader);
    assert!(!log.contains("stopping with"), "{log}");
}

/// SIGTERM of a follower: it exits within half a second (its clients, like curl, open a
/// connection per request: a client it has just answered on a kept-alive connection would
/// hold it a little longer, see the test above).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn stopping_a_follower_is_quick() {
    let mut c = ProcCluster::start(3, &[]).await;
    c.http = reqwest::Client::builder()
        .pool_max_idle_per_host(0)
        .build()
        .expect("a client");
    let leader = c.wait_leader().await;
    let follower = (1..=3).find(|id| *id != leader).expect("a follower");
    c.put_ok(follower, "k", "v").await;
    let epoch = Instant::now();
    let probe = stalls::StallProbe::start(c.dir.path(), epoch);
    let started = Instant::now();
    let status = c.stop(follower).await;
    let took = started.elapsed();
    eprintln!("the follower exited after {took:?}");
    assert!(status.success(), "the follower exited with {status}");
    // Beyond what the machine stalled meanwhile (its last WAL sync is part of the stop).
    let (stalled, seen) = stalls_within(probe, epoch, started, started + took);
    assert!(
        took <= Duration::from_millis(500) + stalled,
        "the follower took {took:?} to exit (the machine's stalls: {seen:?})"
    );
}

/// A client connected to node `id` that has sent half a body: a stop waits for it (up to two
/// seconds) while the connection stays open.
async fn holding_the_stop_up(c: &ProcCluster, id: u64) -> tokio::net::TcpStream {
    use tokio::io::AsyncWriteExt;
    let addr = c.url(id).trim_start_matches("http://").to_string();
    let mut conn = tokio::net::TcpStream::connect(&addr)
        .await
        .expect("connect");
    conn.write_all(b"PUT /k HTTP/1.1\r\nHost: x\r\nContent-Length: 10\r\n\r\nhalf")
        .await
        .expect("send half a request");
    conn
}

/// A stop held up (here by a client that sends half a body: the node waits for it up to two
/// seconds) ends at once at a second Ctrl-C, with the status a shell gives a process SIGINT
/// killed. tokio keeps the signal's handler once the first has come, so a second one did
/// nothing: a person whose stop hung (a disk that stopped answering) had to find a `kill -9`.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_second_ctrl_c_ends_a_stop_that_is_held_up() {
    let mut c = ProcCluster::start(1, &[]).await;
    c.wait_leader().await;
    let conn = holding_the_stop_up(&c, 1).await;
    c.signal(1, nix::sys::signal::Signal::SIGINT);
    // Once the first signal has been taken (two sent together may arrive as one).
    wait_for(
        Duration::from_secs(10),
        "the node to log the signal",
        || {
            let taken = c.log(1).contains("signal received");
            async move { taken.then_some(()) }
        },
    )
    .await;
    assert!(
        c.is_running(1),
        "the half-sent request did not hold the stop up"
    );
    c.signal(1, nix::sys::signal::Signal::SIGINT);
    let status = c.wait_exit(1, Duration::from_secs(10)).await;
    assert_eq!(
        status.code(),
        Some(130),
        "the second Ctrl-C did not end the stop: {status}\n{}",
        c.log(1)
    );
    assert!(
        c.log(1)
            .contains("a second signal: exiting without finishing the stop"),
        "{}",
        c.log(1)
    );
    drop(conn);
}

/// A stop whose log lines cannot be written (stderr a pipe nobody reads: a terminal stopped
/// with Ctrl-S, a pager that does not read) and that is held up (a client that sent half a
/// body) still ends at a second signal, with the status a shell gives a process SIGTERM
/// killed. The first signal's log line blocked the task that waits for the second, so the
/// second went unheard, and the process hung on its stop (found by a review).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_second_signal_ends_a_stop_whose_stderr_nobody_reads() {
    use raftexample::transport::{HEADER_CLUSTER, HEADER_FROM, HEADER_TO, STREAM_PATH};
    use std::io::Write;
    use tokio::io::AsyncWriteExt;
    let c = ProcCluster::new(1, &[]);
    std::fs::create_dir_all(c.data_dir(1)).expect("the node's folder");
    let (reader, writer) = std::io::pipe().expect("a pipe");
    // A write end of its own (a new open file description, not a copy of the node's): made
    // non-blocking below, it must not make the node's writes non-blocking too.
    let mut filler = std::fs::OpenOptions::new()
        .write(true)
        .open(format!(
            "/proc/self/fd/{}",
            std::os::fd::AsRawFd::as_raw_fd(&writer)
        ))
        .expect("a write end of the test's own");
    /// Stops the node, by its PID, however the test ends.
    struct Stopped(std::process::Child);
    impl Drop for Stopped {
        fn drop(&mut self) {
            let _ = self.0.kill();
            let _ = self.0.wait();
        }
    }
    let mut node = Stopped(
        std::process::Command::new(common::binary())
            .args(c.args(1))
            .env("RUST_LOG", "info")
            // One worker thread, which a log line below holds.
            .env("TOKIO_WORKER_THREADS", "1")
            .stdout(std::process::Stdio::null())
            .stderr(writer)
            .spawn()
            .expect("starting raftexample"),
    );
    // Read while it starts (its start-up lines must not block it), until told to stop; the
    // reading end stays open after that, unread.
    let stop_reading = std::sync::Arc::new(std::sync::atomic::AtomicBool::new(false));
    let drain = std::thread::spawn({
        let stop_reading = stop_reading.clone();
        move || {
            let mut reader = reader;
            let mut buf = [0u8; 4096];
            while !stop_reading.load(std::sync::atomic::Ordering::Acquire) {
                match std::io::Read::read(&mut reader, &mut buf) {
                    Ok(0) | Err(_) => break,
                    Ok(_) => {}
                }
            }
            reader
        }
    });
    c.put_ok(1, "k", "v").await;
    let conn = holding_the_stop_up(&c, 1).await;
    // From now on nobody reads: the reader stops (a byte wakes its read), its end stays
    // open, and the pipe is filled to the brim.
    stop_reading.store(true, std::sync::atomic::Ordering::Release);
    filler.write_all(b"\n").expect("a byte to wake the reader");
    let unread = drain.join().expect("the reader thread");
    rustix::fs::fcntl_setfl(&filler, rustix::fs::OFlags::NONBLOCK).expect("non-blocking");
    // Big writes first, then single bytes: a pipe takes a write of a page only where a whole
    // page is free, and a log line fits in less.
    for size in [4096, 1] {
        let chunk = vec![b'.'; size];
        let deadline = std::time::Instant::now() + Duration::from_secs(10);
        loop {
            match filler.write(&chunk) {
                Ok(_) => {}
                Err(e) if e.kind() == std::io::ErrorKind::WouldBlock => break,
                Err(e) => panic!("filling the pipe: {e}"),
            }
            assert!(
                std::time::Instant::now() < deadline,
                "the pipe never filled"
            );
        }
    }
    // A peer request naming another cluster: the node logs its refusal, and the worker that
    // serves it stays in that write. Not waited for: it is never answered.
    let peer = c.peers[0].trim_start_matches("http://").to_string();
    let mut stray = tokio::net::TcpStream::connect(&peer)
        .await
        .expect("connect to the peer port");
    let request = format!(
        "POST {STREAM_PATH} HTTP/1.1\r\nHost: x\r\n{HEADER_CLUSTER}: ff\r\n{HEADER_FROM}: 9\r\n\
         {HEADER_TO}: 1\r\nContent-Length: 0\r\n\r\n"
    );
    stray
        .write_all(request.as_bytes())
        .await
        .expect("send the stray request");
    let pid = nix::unistd::Pid::from_raw(node.0.id() as i32);
    // A signal, then another every half second until it exits (two sent at once may arrive
    // as one): the first asks for the stop, any later one ends it.
    let deadline = std::time::Instant::now() + Duration::from_secs(10);
    let status = loop {
        nix::sys::signal::kill(pid, nix::sys::signal::Signal::SIGTERM).expect("signal");
        let until = std::time::Instant::now() + Duration::from_millis(500);
        let mut exited = None;
        while exited.is_none() && std::time::Instant::now() < until {
            exited = node.0.try_wait().expect("try_wait");
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
        if let Some(status) = exited {
            break status;
        }
        assert!(
            std::time::Instant::now() < deadline,
            "the node did not exit at its second signal with stderr blocked"
        );
    };
    assert_eq!(status.code(), Some(143), "{status}");
    drop(conn);
    drop(stray);
    drop(filler);
    drop(unread);
}
