//! What the measuring programs share: nodes of ours started as processes on free loopback
//! ports (killed when dropped), the binary they run, data dirs on a real disk, and a few
//! figures read from `/proc` and `/-/metrics`.

// Each program uses part of it.
#![allow(dead_code)]

use std::net::TcpListener;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

pub fn free_port() -> u16 {
    TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .map(|a| a.port())
        .expect("a free loopback port")
}

pub fn env_or<T: std::str::FromStr>(name: &str, default: T) -> T {
    std::env::var(name)
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(default)
}

pub fn rss_mib(pid: u32) -> f64 {
    std::fs::read_to_string(format!("/proc/{pid}/status"))
        .ok()
        .and_then(|s| {
            s.lines()
                .find_map(|l| l.strip_prefix("VmRSS:"))
                .and_then(|v| v.trim().trim_end_matches("kB").trim().parse::<f64>().ok())
        })
        .map_or(0.0, |kib| kib / 1024.0)
}

/// A node of ours, killed when dropped.
pub struct Node {
    pub child: Child,
    pub rest: u16,
}

impl Drop for Node {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

impl Node {
    pub fn start(id: u64, cluster: &[String], data_dir: &Path, extra: &[&str]) -> Node {
        let rest = free_port();
        let child = Command::new(binary())
            .args(["--id", &id.to_string(), "--cluster", &cluster.join(",")])
            .args(["--port", &rest.to_string(), "--listen-host", "127.0.0.1"])
            .arg("--data-dir")
            .arg(data_dir)
            .args(extra)
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("starting raftexample");
        Node { child, rest }
    }

    pub fn url(&self, path: &str) -> String {
        format!("http://127.0.0.1:{}/{path}", self.rest)
    }

    pub fn pid(&self) -> u32 {
        self.child.id()
    }

    /// Seconds from `since` until `path` answers 200 with `body` (any body if `None`).
    pub async fn wait(
        &self,
        http: &reqwest::Client,
        path: &str,
        body: Option<&str>,
        since: Instant,
        mut each: impl FnMut(),
    ) -> f64 {
        let deadline = since + Duration::from_secs(600);
        loop {
            each();
            if let Ok(r) = http.get(self.url(path)).send().await
                && r.status() == 200
                && match body {
                    None => true,
                    Some(b) => r.text().await.is_ok_and(|t| t == b),
                }
            {
                return since.elapsed().as_secs_f64();
            }
            assert!(Instant::now() < deadline, "{path} not ready after 600 s");
            tokio::time::sleep(Duration::from_millis(5)).await;
        }
    }

    /// A counter or sum of `/-/metrics` whose name ends with `suffix`.
    pub async fn metric(&self, http: &reqwest::Client, suffix: &str) -> Option<f64> {
        let text = http
            .get(self.url("-/metrics"))
            .send()
            .await
            .ok()?
            .text()
            .await
            .ok()?;
        text.lines()
            .filter(|l| !l.starts_with('#'))
            .find(|l| {
                l.split(['{', ' '])
                    .next()
                    .is_some_and(|name| name.ends_with(suffix))
            })
            .and_then(|l| l.rsplit(' ').next())
            .and_then(|v| v.parse().ok())
    }
}

/// The release binary, or `OURS_BIN` (as in `bench/compare.sh`: another build to compare).
pub fn binary() -> PathBuf {
    if let Some(bin) = std::env::var_os("OURS_BIN") {
        return PathBuf::from(bin);
    }
    let binary = Path::new(env!("CARGO_MANIFEST_DIR")).join("target/release/raftexample");
    assert!(
        binary.exists(),
        "{} is missing: run `cargo build --release` first",
        binary.display()
    );
    binary
}

/// A temp dir named `prefix…` under `BENCH_TMPDIR` (`/var/tmp`: a real disk, fsync on).
pub fn temp_dir(prefix: &str) -> tempfile::TempDir {
    let parent = std::env::var("BENCH_TMPDIR").unwrap_or_else(|_| "/var/tmp".into());
    tempfile::TempDir::with_prefix_in(prefix, parent).expect("a temp dir on a real disk")
}

pub fn http() -> reqwest::Client {
    reqwest::Client::builder()
        .timeout(Duration::from_secs(30))
        .build()
        .expect("an HTTP client")
}

/// The `q` quantile of `v` (sorted here), in ms.
pub fn quantile_ms(v: &mut [f64], q: f64) -> f64 {
    if v.is_empty() {
        return f64::NAN;
    }
    v.sort_by(f64::total_cmp);
    v[((v.len() - 1) as f64 * q).round() as usize] * 1e3
}
