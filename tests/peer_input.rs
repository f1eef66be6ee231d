//! What a stranger on the peer port can do: garbage, a length prefix of 4 GiB, a missing or
//! wrong cluster header, a sender that is not a member, a forged heartbeat. Each must be
//! refused, the node's memory must stay bounded, and the node must keep serving. Requests are
//! written by hand over TCP, so the test controls every byte (and can send what no HTTP client
//! would).

mod common;

use std::time::Duration;

use common::{ProcCluster, rss};
use raft::eraftpb::{ConfState, Entry, Message, MessageType};
use raftexample::membership::cluster_id;
use raftexample::snapshotter::handle::{file_handle, follows_handle, is_incoming_name};
use raftexample::transport::{
    HEADER_CLUSTER, HEADER_FROM, HEADER_TO, RAFT_PATH, STREAM_PATH, encode_batch,
};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

/// The answer to a hand-written request: its status line's code, if one came back, and what
/// followed it.
#[derive(Debug)]
struct Answer {
    status: Option<u16>,
    text: String,
}

/// Sends `head` and then `body` in chunks of `chunk` bytes to `addr`, reading the answer all
/// the while (a server that refuses early answers and closes before the body is through; a
/// reader started only after the writes could lose that answer to the reset). Stops writing
/// at the first failed write.
async fn send_raw(addr: &str, head: &str, body: &[u8], chunk: usize) -> Answer {
    let stream = TcpStream::connect(addr)
        .await
        .expect("connect to the peer port");
    let (mut rd, mut wr) = stream.into_split();
    let reader = tokio::spawn(async move {
        let mut got = Vec::new();
        let mut buf = vec![0u8; 4096];
        loop {
            match tokio::time::timeout(Duration::from_secs(30), rd.read(&mut buf)).await {
                Ok(Ok(n)) if n > 0 => got.extend_from_slice(&buf[..n]),
                _ => break,
            }
            // One short answer is all a refusal has.
            if got.windows(4).any(|w| w == b"\r\n\r\n") && got.len() > 12 {
                let _ = tokio::time::timeout(Duration::from_millis(200), rd.read(&mut buf)).await;
                break;
            }
        }
        got
    });
    if wr.write_all(head.as_bytes()).await.is_ok() {
        for part in body.chunks(chunk.max(1)) {
            if wr.write_all(part).await.is_err() || reader.is_finished() {
                break;
            }
        }
    }
    let got = reader.await.expect("the reader task");
    let text = String::from_utf8_lossy(&got).into_owned();
    let status = text
        .strip_prefix("HTTP/1.1 ")
        .and_then(|rest| rest.get(..3))
        .and_then(|code| code.parse().ok());
    Answer { status, text }
}

/// The head of a `POST /raft/stream` with `headers` and a body of `len` bytes.
fn stream_head(addr: &str, headers: &[(&str, String)], len: usize) -> String {
    head_of(STREAM_PATH, addr, headers, len)
}

/// The head of a `POST` to `path` with `headers` and a body of `len` bytes.
fn head_of(path: &str, addr: &str, headers: &[(&str, String)], len: usize) -> String {
    let mut head = format!(
        "POST {path} HTTP/1.1\r\nhost: {addr}\r\ncontent-type: application/octet-stream\r\n\
         content-length: {len}\r\n"
    );
    for (name, value) in headers {
        head.push_str(&format!("{name}: {value}\r\n"));
    }
    head.push_str("\r\n");
    head
}

fn peer_addr(c: &ProcCluster, id: u64) -> String {
    c.peers[id as usize - 1]
        .trim_start_matches("http://")
        .to_string()
}

fn the_cluster_id(c: &ProcCluster) -> String {
    format!("{:x}", cluster_id("", &c.peers))
}

fn headers(cluster: Option<String>, from: u64, to: u64) -> Vec<(&'static str, String)> {
    let mut h = vec![(HEADER_FROM, from.to_string()), (HEADER_TO, to.to_string())];
    if let Some(cluster) = cluster {
        h.push((HEADER_CLUSTER, cluster));
    }
    h
}

fn heartbeat(from: u64, to: u64, term: u64) -> Vec<u8> {
    let mut m = Message {
        from,
        to,
        term,
        ..Default::default()
    };
    m.set_msg_type(MessageType::MsgHeartbeat);
    encode_batch(&[m])
}

/// Node `pid` holds at most 16 MiB more than `before`.
fn assert_bounded(before: u64, pid: i32) {
    let grown = rss(pid).saturating_sub(before);
    assert!(grown < 16 << 20, "the node grew by {} MiB", grown >> 20);
}

async fn term_of(c: &ProcCluster, id: u64) -> u64 {
    c.status(id).await.expect("status")["term"]
        .as_u64()
        .expect("a term")
}

/// The first finding: a frame that announces ~4 GiB, followed by 64 MiB of junk, was
/// buffered whole. Now the length prefix alone gets it refused: the node answers at once,
/// its memory does not grow with the junk, and it goes on serving.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_4_gib_length_prefix_is_refused_and_memory_stays_bounded() {
    let c = ProcCluster::start(3, &[]).await;
    c.put_ok(1, "before", "1").await;
    let pid = c.pid(1);
    let before = rss(pid);
    let addr = peer_addr(&c, 1);
    let junk_len = 64 << 20;
    let mut body = Vec::with_capacity(4 + junk_len);
    body.extend_from_slice(&u32::MAX.to_le_bytes());
    body.resize(4 + junk_len, 0xA5);
    let head = stream_head(&addr, &headers(Some(the_cluster_id(&c)), 2, 1), body.len());
    let answer = send_raw(&addr, &head, &body, 1 << 20).await;
    let grown = rss(pid).saturating_sub(before);
    assert!(
        matches!(answer.status, Some(s) if (400..500).contains(&s)),
        "a 4 GiB frame must be refused with a 4xx, got {answer:?}"
    );
    assert!(
        answer.text.contains("exceeds"),
        "the refusal says why: {answer:?}"
    );
    assert!(
        grown < 16 << 20,
        "node 1 grew by {} MiB while 64 MiB of junk arrived",
        grown >> 20
    );
    c.put_ok(1, "after", "2").await;
}

/// The second finding: one forged heartbeat with cluster header `0` moved node 1's
/// term from 2 to 1,000,001. A missing header, a `0` and a wrong identity are now refused,
/// and the term stays where it was.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_forged_heartbeat_without_the_cluster_identity_is_refused() {
    let c = ProcCluster::start(3, &[]).await;
    c.put_ok(1, "k", "v").await;
    let addr = peer_addr(&c, 1);
    let term = term_of(&c, 1).await;
    let before = rss(c.pid(1));
    let body = heartbeat(2, 1, 1_000_000);
    for (cluster, want) in [
        (Some("0".to_string()), 412),
        (None, 400),
        (Some("123456789abcdef".to_string()), 412),
    ] {
        let head = stream_head(&addr, &headers(cluster.clone(), 2, 1), body.len());
        let answer = send_raw(&addr, &head, &body, body.len()).await;
        assert_eq!(
            answer.status,
            Some(want),
            "cluster header {cluster:?}: {answer:?}"
        );
    }
    assert_eq!(
        term_of(&c, 1).await,
        term,
        "a refused heartbeat moved the term"
    );
    assert_bounded(before, c.pid(1));
    c.put_ok(1, "k", "w").await;
}

/// A sender that is not a member, with the right cluster identity, is refused while the node
/// knows a leader: raft would otherwise take its term (and follow it).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_sender_that_is_not_a_member_is_refused() {
    let c = ProcCluster::start(3, &[]).await;
    c.put_ok(1, "k", "v").await;
    let addr = peer_addr(&c, 1);
    let term = term_of(&c, 1).await;
    let before = rss(c.pid(1));
    let body = heartbeat(9, 1, 1_000_000);
    let head = stream_head(&addr, &headers(Some(the_cluster_id(&c)), 9, 1), body.len());
    let answer = send_raw(&addr, &head, &body, body.len()).await;
    assert_eq!(answer.status, Some(403), "{answer:?}");
    assert!(answer.text.contains("not a member"), "{answer:?}");
    assert_eq!(term_of(&c, 1).await, term, "a non-member moved the term");
    assert_bounded(before, c.pid(1));
    c.put_ok(1, "k", "w").await;
}

/// Garbage: bytes that are not HTTP at all, and a stream whose body is not a batch. Both
/// connections are closed by the node; its memory stays put and it keeps serving. The batch's
/// refusal is in the node's log, once, with who sent it: only the sender heard of it before.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn garbage_closes_the_connection_and_the_node_keeps_serving() {
    let c = ProcCluster::start(3, &[]).await;
    c.put_ok(1, "k", "v").await;
    let pid = c.pid(1);
    let before = rss(pid);
    let addr = peer_addr(&c, 1);
    // Deterministic junk: an xorshift stream.
    let mut x: u64 = 0x9E37_79B9_7F4A_7C15;
    let junk: Vec<u8> = (0..(8 << 20))
        .map(|_| {
            x ^= x << 13;
            x ^= x >> 7;
            x ^= x << 17;
            x as u8
        })
        .collect();
    let not_http = send_raw(&addr, "", &junk, 64 << 10).await;
    assert!(
        not_http.status.is_none_or(|s| (400..500).contains(&s)),
        "bytes that are not HTTP: {not_http:?}"
    );
    // A well-formed request whose body is a frame of junk a few bytes long, again and again.
    let mut body = Vec::new();
    for _ in 0..1000 {
        body.extend_from_slice(&16u32.to_le_bytes());
        body.extend_from_slice(&[0xFF; 16]);
    }
    let head = stream_head(&addr, &headers(Some(the_cluster_id(&c)), 2, 1), body.len());
    let bad_batch = send_raw(&addr, &head, &body, 4096).await;
    assert_eq!(bad_batch.status, Some(400), "{bad_batch:?}");
    assert!(bad_batch.text.contains("does not parse"), "{bad_batch:?}");
    assert!(
        bad_batch
            .text
            .to_ascii_lowercase()
            .contains("connection: close"),
        "the node closes a connection that sent garbage: {bad_batch:?}"
    );
    let again = send_raw(&addr, &head, &body, 4096).await;
    assert_eq!(again.status, Some(400), "{again:?}");
    let log = c.log(1);
    let said: Vec<&str> = log
        .lines()
        .filter(|l| l.contains("refused a peer request (400 Bad Request)"))
        .collect();
    assert_eq!(said.len(), 1, "said once within the minute: {log}");
    for needle in [
        "does not parse",
        "remote=127.0.0.1:",
        "route=/raft/stream",
        "peer=2",
    ] {
        assert!(said[0].contains(needle), "lacks {needle:?}: {}", said[0]);
    }
    let grown = rss(pid).saturating_sub(before);
    assert!(grown < 16 << 20, "node 1 grew by {} MiB", grown >> 20);
    c.put_ok(1, "k", "w").await;
    c.wait_value(2, "k", "w", false).await;
}

/// A chunked body: each part one chunk, then the end.
fn chunked(parts: &[&[u8]]) -> Vec<u8> {
    let mut out = Vec::new();
    for part in parts {
        out.extend(format!("{:x}\r\n", part.len()).into_bytes());
        out.extend_from_slice(part);
        out.extend_from_slice(b"\r\n");
    }
    out.extend_from_slice(b"0\r\n\r\n");
    out
}

/// Snapshots travel only on their own route, within `--max-snapshot-bytes`: a snapshot on the
/// stream, a request on the snapshot route that is not a snapshot, one that announces (or
/// sends) more than the limit, a file that is damaged or shorter than announced, and a
/// snapshot that names a file of the receiving node are refused; nothing stays on disk,
/// memory stays put and the node keeps serving.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn snapshots_only_on_their_route_and_within_the_limit() {
    let c = ProcCluster::start(3, &["--max-snapshot-bytes", "65536"]).await;
    c.put_ok(1, "k", "v").await;
    let pid = c.pid(1);
    let before = rss(pid);
    let addr = peer_addr(&c, 1);
    let ours = || headers(Some(the_cluster_id(&c)), 2, 1);
    let snapshot_with = |data: bytes::Bytes| {
        let mut snap = Message {
            from: 2,
            to: 1,
            term: 1,
            ..Default::default()
        };
        snap.set_msg_type(MessageType::MsgSnapshot);
        let s = snap.mut_snapshot();
        s.mut_metadata().index = 1000;
        s.mut_metadata().term = 1;
        s.mut_metadata()
            .set_conf_state(ConfState::from((vec![1, 2, 3], vec![])));
        s.data = data;
        encode_batch(std::slice::from_ref(&snap))
    };
    let on_stream = snapshot_with(bytes::Bytes::new());
    let head = stream_head(&addr, &ours(), on_stream.len());
    let answer = send_raw(&addr, &head, &on_stream, 4096).await;
    assert_eq!(answer.status, Some(400), "{answer:?}");
    assert!(answer.text.contains(RAFT_PATH), "{answer:?}");

    let not_a_snapshot = heartbeat(2, 1, 1);
    let head = head_of(RAFT_PATH, &addr, &ours(), not_a_snapshot.len());
    let answer = send_raw(&addr, &head, &not_a_snapshot, 4096).await;
    assert_eq!(answer.status, Some(400), "{answer:?}");
    assert!(answer.text.contains("snapshots only"), "{answer:?}");

    // Announced too large: refused before a byte of the body is read.
    let big = vec![0x5A; 32 << 20];
    let head = head_of(RAFT_PATH, &addr, &ours(), big.len());
    let answer = send_raw(&addr, &head, &big, 1 << 20).await;
    assert_eq!(answer.status, Some(413), "{answer:?}");
    // Sent without a length (chunked), a message announcing a file over the limit: refused
    // from the message alone.
    let chunked_head = head_of(RAFT_PATH, &addr, &ours(), 0)
        .replace("content-length: 0\r\n", "transfer-encoding: chunked\r\n");
    let over = snapshot_with(follows_handle(65537));
    let filler = vec![0x5A; 1 << 20];
    let answer = send_raw(&addr, &chunked_head, &chunked(&[&over, &filler]), 1 << 20).await;
    assert_eq!(answer.status, Some(413), "{answer:?}");
    assert!(answer.text.contains("--max-snapshot-bytes"), "{answer:?}");
    // Garbage where the message should be: a length prefix of 1.5 GB.
    let answer = send_raw(
        &addr,
        &chunked_head,
        &chunked(&[filler.as_slice(); 4]),
        1 << 20,
    )
    .await;
    assert_eq!(answer.status, Some(413), "{answer:?}");

    // Within the limit, but not a snapshot file: checked whole, refused, deleted.
    let damaged = snapshot_with(follows_handle(4096));
    let answer = send_raw(
        &addr,
        &chunked_head,
        &chunked(&[&damaged, &[7u8; 4096]]),
        4096,
    )
    .await;
    assert_eq!(answer.status, Some(400), "{answer:?}");
    assert!(answer.text.contains("snapshot refused"), "{answer:?}");
    // Shorter than announced.
    let answer = send_raw(
        &addr,
        &chunked_head,
        &chunked(&[&damaged, &[7u8; 100]]),
        4096,
    )
    .await;
    assert_eq!(answer.status, Some(400), "{answer:?}");
    assert!(answer.text.contains("ended after 100"), "{answer:?}");
    // A handle naming a file of node 1 (only node 1 itself makes those).
    let named = snapshot_with(file_handle("0000000000000001-0000000000000001.snap"));
    let answer = send_raw(&addr, &chunked_head, &chunked(&[&named]), 4096).await;
    assert_eq!(answer.status, Some(400), "{answer:?}");
    assert!(answer.text.contains("cannot name a file"), "{answer:?}");
    let snap_dir = c.data_dir(1).join("raftexample-1-snap");
    let left: Vec<String> = std::fs::read_dir(&snap_dir)
        .expect("node 1's snapshot folder")
        .flatten()
        .map(|e| e.file_name().to_string_lossy().into_owned())
        .filter(|n| is_incoming_name(n))
        .collect();
    assert!(left.is_empty(), "refused snapshots left files: {left:?}");

    assert_bounded(before, pid);
    c.put_ok(1, "k", "w").await;
    c.wait_value(3, "k", "w", false).await;
}

/// Messages no correct raft node sends, each of which made raft-rs panic and the node exit
/// (found by a review): a proposal or a read request without entries, an append whose entries
/// do not follow its index, and a snapshot whose membership cannot be restored (a voter that
/// is also a learner). Sent by a member, with the right cluster identity, to the leader and to
/// a follower (which would relay the first two to the leader), each is refused with a 400 that
/// says what was wrong, and the whole cluster keeps serving.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn messages_that_would_make_raft_panic_are_refused() {
    let mut c = ProcCluster::start(3, &[]).await;
    let leader = c.wait_leader().await;
    c.put_ok(leader, "k", "v").await;
    let follower = if leader == 1 { 2 } else { 1 };
    let sender = (1..=3)
        .find(|id| ![leader, follower].contains(id))
        .expect("a third node");
    for to in [leader, follower] {
        let addr = peer_addr(&c, to);
        let term = term_of(&c, to).await;
        let message = |kind: MessageType, index: u64, entries: &[u64]| {
            let mut m = Message {
                from: sender,
                to,
                term,
                index,
                ..Default::default()
            };
            m.set_msg_type(kind);
            m.set_entries(
                entries
                    .iter()
                    .map(|&index| Entry {
                        index,
                        term,
                        ..Default::default()
                    })
                    .collect::<Vec<_>>()
                    .into(),
            );
            m
        };
        let mut propose = message(MessageType::MsgPropose, 0, &[]);
        propose.term = 0;
        let mut read = message(MessageType::MsgReadIndex, 0, &[]);
        read.term = 0;
        // Matches the receiver's last entry, then skips ahead: a follower would slice its
        // entries at the gap.
        let last = c.status(to).await.expect("status")["last_index"]
            .as_u64()
            .expect("a last index");
        let mut append = message(MessageType::MsgAppend, last, &[last + 100]);
        append.log_term = term;
        for (m, said) in [
            (propose, "without entries"),
            (read, "0 entries"),
            (append, "do not follow"),
        ] {
            let body = encode_batch(std::slice::from_ref(&m));
            let head = stream_head(
                &addr,
                &headers(Some(the_cluster_id(&c)), sender, to),
                body.len(),
            );
            let answer = send_raw(&addr, &head, &body, body.len()).await;
            assert_eq!(answer.status, Some(400), "{m:?} to node {to}: {answer:?}");
            assert!(answer.text.contains(said), "{answer:?}");
        }
        // From a leader of a later term, above the commit: raft would restore it.
        let mut snap = message(MessageType::MsgSnapshot, 0, &[]);
        snap.term = term + 1;
        let meta = snap.mut_snapshot().mut_metadata();
        meta.index = 1_000_000;
        meta.term = term + 1;
        meta.set_conf_state(ConfState::from((vec![1, 2, 3], vec![3])));
        snap.mut_snapshot().data = b"inline".to_vec().into();
        let body = encode_batch(std::slice::from_ref(&snap));
        let head = head_of(
            RAFT_PATH,
            &addr,
            &headers(Some(the_cluster_id(&c)), sender, to),
            body.len(),
        );
        let answer = send_raw(&addr, &head, &body, body.len()).await;
        assert_eq!(
            answer.status,
            Some(400),
            "snapshot to node {to}: {answer:?}"
        );
        assert!(answer.text.contains("cannot be restored"), "{answer:?}");
    }
    for id in 1..=3 {
        assert!(c.is_running(id), "node {id} exited");
        c.put_ok(id, "k", &format!("w{id}")).await;
        c.wait_value(id, "k", &format!("w{id}"), false).await;
    }
}
