//! Clients that hold a connection without using it: one that never finishes a request's head,
//! one that trickles a body, one that never reads its answers. Each is cut after
//! `--client-timeout-ms` (the body's after it falls below 64 KiB/s), so with
//! `--max-connections` the port stays open to everyone else; the node keeps serving. The whole
//! binary, over real sockets.

mod common;

use std::time::{Duration, Instant};

use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

/// A one-node cluster started with `args`, whose test client opens a connection per request:
/// a kept-alive one would take a slot of a port allowed one.
async fn start(args: &[&str]) -> common::ProcCluster {
    let mut c = common::ProcCluster::new(1, args);
    c.http = reqwest::Client::builder()
        .pool_max_idle_per_host(0)
        .timeout(Duration::from_secs(10))
        .build()
        .expect("an HTTP client");
    c.spawn(1, &[]);
    c.wait_leader().await;
    c
}

async fn connect(c: &common::ProcCluster) -> TcpStream {
    let addr = c.url(1).replacen("http://", "", 1);
    TcpStream::connect(&addr)
        .await
        .unwrap_or_else(|e| panic!("connecting to {addr}: {e}"))
}

/// Reads until the server closes the connection (or resets it), within `within`; returns what
/// it sent.
async fn read_until_closed(conn: &mut TcpStream, within: Duration) -> String {
    let mut got = Vec::new();
    let read = tokio::time::timeout(within, async {
        let mut buf = [0; 4096];
        loop {
            match conn.read(&mut buf).await {
                Ok(0) | Err(_) => return,
                Ok(n) => got.extend_from_slice(&buf[..n]),
            }
        }
    })
    .await;
    let text = String::from_utf8_lossy(&got).into_owned();
    assert!(
        read.is_ok(),
        "the server kept the connection open: {text:?}"
    );
    text
}

/// `GET /-/health` on a connection of its own, answered within `within`.
async fn health_within(c: &common::ProcCluster, within: Duration) {
    let mut conn = connect(c).await;
    conn.write_all(b"GET /-/health HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n")
        .await
        .expect("sending a request");
    let answer = read_until_closed(&mut conn, within).await;
    assert!(answer.starts_with("HTTP/1.1 200"), "{answer:?}");
}

/// A connection that never finishes its request's head, and one left idle after an answer,
/// are closed after the client timeout; the only connection slot is then free for the next.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_request_head_never_finished_or_an_idle_connection_is_closed() {
    let c = start(&["--client-timeout-ms", "500", "--max-connections", "1"]).await;
    // Before the connection opens: the server's clock starts once it has taken it.
    let started = Instant::now();
    let mut half = connect(&c).await;
    half.write_all(b"GET /-/health HTTP/1.1\r\nHo")
        .await
        .expect("sending half a head");
    read_until_closed(&mut half, Duration::from_secs(10)).await;
    assert!(
        started.elapsed() >= Duration::from_millis(500),
        "closed before the client timeout: {:?}",
        started.elapsed()
    );

    let mut idle = connect(&c).await;
    idle.write_all(b"GET /-/health HTTP/1.1\r\nHost: x\r\n\r\n")
        .await
        .expect("sending a request");
    let answer = read_until_closed(&mut idle, Duration::from_secs(10)).await;
    assert!(answer.starts_with("HTTP/1.1 200"), "{answer:?}");
    health_within(&c, Duration::from_secs(10)).await;
    c.put_ok(1, "k", "v").await;
}

/// With every slot taken, the next connection waits (it is not refused) until one closes.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn past_max_connections_a_client_waits_for_a_free_slot() {
    let c = start(&["--max-connections", "1"]).await;
    let holder = connect(&c).await;
    let mut waiting = connect(&c).await;
    waiting
        .write_all(b"GET /-/health HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n")
        .await
        .expect("sending a request");
    let mut buf = [0; 64];
    // Nothing can answer it while the slot is held; a short look only shortens the check.
    let early = tokio::time::timeout(Duration::from_millis(300), waiting.read(&mut buf)).await;
    assert!(early.is_err(), "answered past the cap: {early:?}");
    drop(holder);
    let answer = read_until_closed(&mut waiting, Duration::from_secs(10)).await;
    assert!(answer.starts_with("HTTP/1.1 200"), "{answer:?}");
}

/// A body that stops coming gets 408 with a one-line reason once the client timeout has
/// passed, and writes nothing; the node keeps serving.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_body_that_stops_coming_gets_408() {
    let c = start(&["--client-timeout-ms", "500"]).await;
    let mut conn = connect(&c).await;
    conn.write_all(b"PUT /slow HTTP/1.1\r\nHost: x\r\nContent-Length: 100\r\n\r\n0123456789")
        .await
        .expect("sending a tenth of a body");
    let answer = read_until_closed(&mut conn, Duration::from_secs(10)).await;
    assert!(answer.starts_with("HTTP/1.1 408"), "{answer:?}");
    let reason = answer.split("\r\n\r\n").nth(1).unwrap_or_default();
    assert!(
        reason.contains("10 bytes") && reason.ends_with('\n') && reason.lines().count() == 1,
        "{reason:?}"
    );
    assert_eq!(c.get(1, "slow").await.map(|(s, _)| s), Some(404));
    c.put_ok(1, "slow", "fast").await;
}

/// A client that sends requests and never reads the answers: once an answer has waited the
/// client timeout for it, its connection is cut, which frees the only slot for others.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_client_that_never_reads_its_answers_is_cut() {
    let c = start(&[
        "--client-timeout-ms",
        "500",
        "--max-connections",
        "1",
        "--max-body-bytes",
        "4000000",
    ])
    .await;
    let value = "v".repeat(4_000_000);
    c.put_ok(1, "big", &value).await;
    // Sixteen answers of 4 MB: far more than the socket buffers hold.
    let mut greedy = connect(&c).await;
    let ask = b"GET /big HTTP/1.1\r\nHost: x\r\n\r\n".repeat(16);
    greedy.write_all(&ask).await.expect("sending the requests");
    health_within(&c, Duration::from_secs(20)).await;
    drop(greedy);
}
