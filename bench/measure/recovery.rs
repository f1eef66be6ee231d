//! Recovery and memory figures of issue 7: how long a node takes to restart from a WAL of a
//! million entries (no snapshot) and from a snapshot of a million keys, and how much memory it
//! then holds against the raw size of its keys and values.
//!
//! ```sh
//! cargo build --release && cargo run --release --example recovery [-- ENTRIES]
//! ```
//!
//! Start-up time is measured from spawning `target/release/raftexample` until `GET /-/ready`
//! answers 200 (everything committed before the restart is applied and the node leads);
//! memory is the process's resident set at that moment. Each case runs three times and the
//! median is printed.

#[path = "../../tests/common/bigdata.rs"]
mod bigdata;

mod support;

use std::path::Path;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use support::{binary, free_port, rss_mib, temp_dir};

/// Starts the node on `data_dir`; returns (seconds until ready, RSS in MiB).
fn restart(binary: &Path, data_dir: &Path, peer: u16) -> (f64, f64) {
    let rest = free_port();
    let started = Instant::now();
    let mut child = Command::new(binary)
        .args([
            "--id",
            "1",
            "--cluster",
            &format!("http://127.0.0.1:{peer}"),
        ])
        .args(["--port", &rest.to_string(), "--listen-host", "127.0.0.1"])
        .arg("--data-dir")
        .arg(data_dir)
        .stderr(Stdio::null())
        .spawn()
        .expect("starting raftexample");
    let deadline = started + Duration::from_secs(120);
    let ready = loop {
        if ready_now(rest, "/-/ready") {
            break started.elapsed().as_secs_f64();
        }
        assert!(Instant::now() < deadline, "not ready after 120 s");
        std::thread::sleep(Duration::from_millis(2));
    };
    let rss = rss_mib(child.id());
    let _ = child.kill();
    let _ = child.wait();
    (ready, rss)
}

/// One HTTP/1.0 GET without a client library: the example should measure the node, not a
/// client's start-up.
fn ready_now(port: u16, path: &str) -> bool {
    use std::io::{Read, Write};
    let Ok(mut s) = std::net::TcpStream::connect(("127.0.0.1", port)) else {
        return false;
    };
    if s.write_all(format!("GET {path} HTTP/1.0\r\n\r\n").as_bytes())
        .is_err()
    {
        return false;
    }
    let mut answer = String::new();
    let _ = s.read_to_string(&mut answer);
    answer.starts_with("HTTP/1.0 200") || answer.starts_with("HTTP/1.1 200")
}

fn median(mut v: Vec<(f64, f64)>) -> (f64, f64) {
    v.sort_by(|a, b| a.0.total_cmp(&b.0));
    v[v.len() / 2]
}

fn main() {
    let n: u64 = std::env::args()
        .nth(1)
        .map(|a| a.parse().expect("ENTRIES is a number"))
        .unwrap_or(1_000_000);
    // `OURS_BIN`: another build to compare, as in `bench/compare.sh`.
    let binary = binary();
    let raw = bigdata::raw_size(n) as f64 / (1 << 20) as f64;
    println!(
        "{n} keys of {} bytes: raw data {raw:.1} MiB",
        bigdata::VALUE_LEN
    );
    println!(
        "{:<22} {:>10} {:>10} {:>10}",
        "restart from", "ready (s)", "RSS (MiB)", "RSS/raw"
    );
    for case in ["WAL, no snapshot", "snapshot"] {
        let dir = temp_dir("recovery-");
        let peer = free_port();
        let url = format!("http://127.0.0.1:{peer}");
        if case == "snapshot" {
            bigdata::write_snapshot(dir.path(), &url, n);
        } else {
            bigdata::write_wal(dir.path(), &url, n);
        }
        let runs = (0..3).map(|_| restart(&binary, dir.path(), peer)).collect();
        let (secs, rss) = median(runs);
        println!("{case:<22} {secs:>10.3} {rss:>10.1} {:>10.2}", rss / raw);
    }
}
