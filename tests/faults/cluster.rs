//! The `raftexample` processes of a fault run: started inside their namespaces, signalled,
//! killed and restarted by pid, and their data dirs damaged on purpose.
//!
//! Every node gets its own data dir under the run's temporary folder, and its stderr goes to
//! `node-<id>.log` in the run folder (appended across restarts, with a harness line before each
//! start), so a failed run keeps what every incarnation of every node said.

use std::collections::{BTreeMap, BTreeSet};
use std::fs::OpenOptions;
use std::io::Write;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, ExitStatus, Stdio};

use nix::sys::signal::{Signal, kill};
use nix::unistd::Pid;

use crate::netns::{PEER_PORT, REST_PORT, node_ip};

/// Knobs passed to every node (a run's choice: see `run::knobs`).
#[derive(Clone, Debug)]
pub struct NodeKnobs {
    /// `--tick-ms`: elections after 10–20 ticks.
    pub tick_ms: u64,
    /// `--proposal-timeout-ms`.
    pub proposal_timeout_ms: u64,
    /// `--snapshot-count`.
    pub snapshot_count: u64,
    /// `--snapshot-catchup-entries`.
    pub catchup_entries: u64,
}

/// The processes of one run.
pub struct Cluster {
    /// Node ids `1..=n` at bootstrap; a node removed and added back keeps its id and URL.
    n: u64,
    /// Namespace of each node.
    ns: BTreeMap<u64, String>,
    /// Where the data dirs live (a temporary folder the run owns).
    data_root: PathBuf,
    /// Where the logs go (the run folder).
    log_root: PathBuf,
    knobs: NodeKnobs,
    /// Running (or stopped) processes; a node that exited is not in here.
    children: BTreeMap<u64, Child>,
    /// Nodes currently stopped with SIGSTOP.
    paused: BTreeSet<u64>,
    /// With `FAULT_TLS=1`: the run's certificates (`raftexample certs`), for both ports.
    certs: Option<PathBuf>,
}

/// Whether this run speaks TLS on both ports (`FAULT_TLS=1`).
pub fn tls() -> bool {
    std::env::var("FAULT_TLS").is_ok_and(|v| v == "1")
}

/// Makes a CA and certificates for nodes `1..=n` (valid for their addresses) and a client in
/// `dir`, with `raftexample certs`.
pub fn make_certs(dir: &Path, n: u64) -> Result<(), String> {
    let hosts: Vec<String> = (1..=n).map(|id| node_ip(id).to_string()).collect();
    let out = Command::new(env!("CARGO_BIN_EXE_raftexample"))
        .args(["certs", "--out"])
        .arg(dir)
        .args(["--nodes", &n.to_string(), "--hosts", &hosts.join(",")])
        .output()
        .map_err(|e| format!("running raftexample certs: {e}"))?;
    if !out.status.success() {
        return Err(format!(
            "raftexample certs failed: {}",
            String::from_utf8_lossy(&out.stderr)
        ));
    }
    Ok(())
}

impl Cluster {
    /// A cluster of `n` nodes, none started yet.
    pub fn new(
        n: u64,
        ns: BTreeMap<u64, String>,
        data_root: &Path,
        log_root: &Path,
        knobs: NodeKnobs,
        certs: Option<PathBuf>,
    ) -> Cluster {
        Cluster {
            n,
            ns,
            data_root: data_root.to_path_buf(),
            log_root: log_root.to_path_buf(),
            knobs,
            children: BTreeMap::new(),
            paused: BTreeSet::new(),
            certs,
        }
    }

    /// Ids of the bootstrap members.
    pub fn ids(&self) -> Vec<u64> {
        (1..=self.n).collect()
    }

    /// The peer URL of node `id`, as in `--cluster`.
    pub fn url(id: u64) -> String {
        let scheme = if tls() { "https" } else { "http" };
        format!("{scheme}://{}:{PEER_PORT}", node_ip(id))
    }

    /// Node `id`'s data dir (holding `raftexample-<id>/` and `raftexample-<id>-snap/`).
    pub fn data_dir(&self, id: u64) -> PathBuf {
        self.data_root.join(format!("node-{id}"))
    }

    /// Node `id`'s log file.
    pub fn log_path(&self, id: u64) -> PathBuf {
        self.log_root.join(format!("node-{id}.log"))
    }

    /// Starts node `id`; `join` starts it with `--join` (after it was added back).
    pub fn start(&mut self, id: u64, join: bool) -> Result<(), String> {
        assert!(
            !self.children.contains_key(&id),
            "node {id} is already running"
        );
        let data_dir = self.data_dir(id);
        std::fs::create_dir_all(&data_dir)
            .map_err(|e| format!("creating {}: {e}", data_dir.display()))?;
        let log_path = self.log_path(id);
        let mut log = OpenOptions::new()
            .create(true)
            .append(true)
            .open(&log_path)
            .map_err(|e| format!("opening {}: {e}", log_path.display()))?;
        let _ = writeln!(log, "=== harness: starting node {id} (join: {join}) ===");
        let cluster: Vec<String> = self.ids().into_iter().map(Cluster::url).collect();
        let mut cmd = Command::new(crate::netns::tool("ip"));
        // `ip netns exec` enters the namespace and execs the binary: the pid we get is the
        // node's own, so signals reach it directly.
        cmd.args([
            "netns",
            "exec",
            &self.ns[&id],
            env!("CARGO_BIN_EXE_raftexample"),
        ])
        .args(["--id", &id.to_string()])
        .args(["--cluster", &cluster.join(",")])
        .args(["--port", &REST_PORT.to_string()])
        .args(["--listen-host", &node_ip(id).to_string()])
        .arg("--data-dir")
        .arg(&data_dir)
        .args(["--tick-ms", &self.knobs.tick_ms.to_string()])
        .args([
            "--proposal-timeout-ms",
            &self.knobs.proposal_timeout_ms.to_string(),
        ])
        .args(["--snapshot-count", &self.knobs.snapshot_count.to_string()])
        .args([
            "--snapshot-catchup-entries",
            &self.knobs.catchup_entries.to_string(),
        ])
        .env(
            "RUST_LOG",
            std::env::var("RUST_LOG").unwrap_or_else(|_| "info".into()),
        )
        // Plain text in the log files: no colour codes.
        .env("NO_COLOR", "1")
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(log);
        if join {
            cmd.arg("--join");
        }
        if let Some(certs) = &self.certs {
            let cert = certs.join(format!("node{id}.crt"));
            let key = certs.join(format!("node{id}.key"));
            let ca = certs.join("ca.crt");
            for (flag, file) in [
                ("--cert-file", &cert),
                ("--key-file", &key),
                ("--trusted-ca-file", &ca),
                ("--peer-cert-file", &cert),
                ("--peer-key-file", &key),
                ("--peer-trusted-ca-file", &ca),
            ] {
                cmd.arg(flag).arg(file);
            }
            cmd.arg("--client-cert-auth");
        }
        let child = cmd
            .spawn()
            .map_err(|e| format!("starting node {id}: {e}"))?;
        self.children.insert(id, child);
        Ok(())
    }

    /// Whether node `id` has a process (running or stopped).
    pub fn is_up(&mut self, id: u64) -> bool {
        self.poll_exit(id);
        self.children.contains_key(&id)
    }

    /// Whether node `id` is stopped with SIGSTOP.
    pub fn is_paused(&self, id: u64) -> bool {
        self.paused.contains(&id)
    }

    /// If node `id` has exited, forgets its process and returns how it ended.
    pub fn poll_exit(&mut self, id: u64) -> Option<ExitStatus> {
        let child = self.children.get_mut(&id)?;
        match child.try_wait() {
            Ok(Some(status)) => {
                self.children.remove(&id);
                self.paused.remove(&id);
                Some(status)
            }
            _ => None,
        }
    }

    /// SIGKILLs node `id` (stopped or not) and reaps it.
    pub fn kill(&mut self, id: u64) {
        if let Some(mut child) = self.children.remove(&id) {
            signal(&child, Signal::SIGKILL);
            // SIGKILL cannot be caught: the wait is short.
            let _ = child.wait();
        }
        self.paused.remove(&id);
    }

    /// SIGSTOPs node `id`.
    pub fn pause(&mut self, id: u64) {
        if let Some(child) = self.children.get(&id) {
            signal(child, Signal::SIGSTOP);
            self.paused.insert(id);
        }
    }

    /// SIGCONTs node `id` if it was stopped.
    pub fn resume(&mut self, id: u64) {
        if self.paused.remove(&id)
            && let Some(child) = self.children.get(&id)
        {
            signal(child, Signal::SIGCONT);
        }
    }

    /// Deletes node `id`'s data dir, so it can join again as a new member.
    pub fn wipe(&self, id: u64) -> Result<(), String> {
        let dir = self.data_dir(id);
        match std::fs::remove_dir_all(&dir) {
            Ok(()) => Ok(()),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(()),
            Err(e) => Err(format!("removing {}: {e}", dir.display())),
        }
    }

    /// The final record of stopped node `id`'s WAL, read with `raftexample dump --json` (which
    /// only reads).
    pub fn wal_tail(&self, id: u64) -> Result<WalTail, String> {
        assert!(
            !self.children.contains_key(&id),
            "reading a running node's WAL"
        );
        let out = Command::new(env!("CARGO_BIN_EXE_raftexample"))
            .args(["dump", "--json", "--id", &id.to_string(), "--data-dir"])
            .arg(self.data_dir(id))
            .output()
            .map_err(|e| format!("running raftexample dump: {e}"))?;
        if !out.status.success() {
            return Err(format!(
                "raftexample dump failed: {}",
                String::from_utf8_lossy(&out.stderr).trim()
            ));
        }
        let records: Vec<serde_json::Value> = String::from_utf8_lossy(&out.stdout)
            .lines()
            .filter_map(|line| serde_json::from_str::<serde_json::Value>(line).ok())
            .filter(|r| {
                let kind = r["type"].as_str().unwrap_or_default();
                ["metadata", "entry", "hardstate", "snapshot-marker"].contains(&kind)
            })
            .collect();
        let last = records.last().ok_or("the WAL holds no record")?;
        let file = last["file"].as_str().ok_or("a record without a file")?;
        let path = self
            .data_dir(id)
            .join(format!("raftexample-{id}"))
            .join(file);
        let file_len = std::fs::metadata(&path)
            .map_err(|e| format!("{}: {e}", path.display()))?
            .len();
        let kind = last["type"].as_str().unwrap_or_default().to_string();
        let len = last["len"].as_u64().ok_or("a record without a length")?;
        let in_file: Vec<&serde_json::Value> =
            records.iter().filter(|r| r["file"] == file).collect();
        // A segment's header (metadata, maybe a snapshot marker, the hard state) is written to
        // a temporary file, synced and renamed: a crash cannot tear it.
        let in_header = in_file.len() <= 3 && in_file.iter().all(|r| r["type"] != "entry");
        let hard_states: Vec<&serde_json::Value> = records
            .iter()
            .filter(|r| r["type"] == "hardstate")
            .collect();
        let commit_only = kind == "hardstate"
            && hard_states.len() >= 2
            && hard_states[hard_states.len() - 2]["term"] == last["term"]
            && hard_states[hard_states.len() - 2]["vote"] == last["vote"];
        Ok(WalTail {
            path,
            file_len,
            offset: last["offset"]
                .as_u64()
                .ok_or("a record without an offset")?,
            len,
            index: last["index"].as_u64(),
            kind,
            in_header,
            commit_only,
        })
    }

    /// Tears the WAL tail of stopped node `id` as [`Tear`] says; `at` (0..1) picks the cut
    /// point among the bytes of the record cut into. Returns what was done.
    pub fn tear_wal(&self, id: u64, tail: &WalTail, how: Tear, at: f64) -> Result<String, String> {
        assert!(
            !self.children.contains_key(&id),
            "tearing a running node's WAL"
        );
        let path = &tail.path;
        let name = path.file_name().unwrap_or_default().to_string_lossy();
        let io = |what: &str, e: std::io::Error| format!("{what} {}: {e}", path.display());
        let record_len = tail.len;
        let record_end = tail.offset + tail.len;
        // Somewhere strictly inside a record of `record_len` bytes that starts at `start`.
        let cut_point = |start: u64| start + 1 + ((record_len - 1) as f64 * at) as u64;
        let file = OpenOptions::new()
            .read(true)
            .write(true)
            .open(path)
            .map_err(|e| io("opening", e))?;
        let (new_len, what) = match how {
            Tear::Cut => (
                cut_point(tail.offset).min(record_end - 1),
                format!(
                    "its final record ({} at offset {})",
                    tail.label(),
                    tail.offset
                ),
            ),
            Tear::AppendAndCut => {
                use std::os::unix::fs::FileExt;
                let mut record = vec![0u8; record_len as usize];
                file.read_exact_at(&mut record, tail.offset)
                    .map_err(|e| io("reading", e))?;
                // Where the next write would have gone (over the preallocated zeros, if any).
                file.write_all_at(&record, record_end)
                    .map_err(|e| io("appending to", e))?;
                (
                    cut_point(record_end).min(record_end + record_len - 1),
                    format!(
                        "a copy of its final record ({}), appended as the next write",
                        tail.label()
                    ),
                )
            }
        };
        file.set_len(new_len).map_err(|e| io("truncating", e))?;
        file.sync_all().map_err(|e| io("syncing", e))?;
        Ok(format!(
            "cut inside {what}: {name} now {new_len} bytes (was {})",
            tail.file_len
        ))
    }

    /// What node `id`'s last start ended with, for failure messages: its panic message if it
    /// panicked (the backtrace after it is left to the log file), and its last `lines` lines.
    pub fn log_tail(&self, id: u64, lines: usize) -> String {
        let text = std::fs::read_to_string(self.log_path(id)).unwrap_or_default();
        let last_start = text
            .rsplit("=== harness: starting node")
            .next()
            .unwrap_or_default();
        let all: Vec<&str> = last_start.lines().collect();
        let mut out = Vec::new();
        if let Some(at) = all.iter().position(|l| l.contains("panicked at")) {
            out.extend(all[at..(at + 2).min(all.len())].iter().copied());
            out.push("  [backtrace: see the log file]");
        }
        let tail: Vec<&str> = all.iter().copied().filter(|l| !is_backtrace(l)).collect();
        out.extend(tail[tail.len().saturating_sub(lines)..].iter().copied());
        out.join("\n")
    }
}

impl Drop for Cluster {
    fn drop(&mut self) {
        for (_, mut child) in std::mem::take(&mut self.children) {
            // SIGKILL also ends a stopped process.
            signal(&child, Signal::SIGKILL);
            let _ = child.wait();
        }
    }
}

/// The final record of a WAL, and what losing it would mean.
#[derive(Debug)]
pub struct WalTail {
    /// The last segment.
    pub path: PathBuf,
    /// Its size (it may run past the final record: the WAL preallocates).
    pub file_len: u64,
    /// Where its final record starts.
    pub offset: u64,
    /// The final record's length (a run of entries is one record).
    pub len: u64,
    /// `entry`, `hardstate`, `snapshot-marker` or `metadata`.
    pub kind: String,
    /// The entry's index, for an entry.
    pub index: Option<u64>,
    /// Whether the final record is part of the segment's header.
    pub in_header: bool,
    /// Whether it is a hard state that only moved the commit index (same term and vote as the
    /// one before): a write raft does not sync, and losing it loses nothing raft relies on.
    pub commit_only: bool,
}

impl WalTail {
    fn label(&self) -> String {
        match self.index {
            Some(index) => format!("{} {index}", self.kind),
            None if self.commit_only => format!("{}, commit only", self.kind),
            None => self.kind.clone(),
        }
    }
}

/// How to tear a WAL tail.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Tear {
    /// Cut inside the final record.
    Cut,
    /// Append a copy of the final record and cut inside the copy: a crash in the middle of the
    /// next append. Used when the final record may have been acknowledged (see `run.rs`).
    AppendAndCut,
}

/// Whether `line` is a frame of a backtrace (`  12: raft::...` or `      at /path:1:2`).
fn is_backtrace(line: &str) -> bool {
    let line = line.trim_start();
    line.starts_with("at ")
        || line
            .split_once(':')
            .is_some_and(|(n, _)| !n.is_empty() && n.chars().all(|c| c.is_ascii_digit()))
}

/// Sends `sig` to `child` by its pid. A child that already exited but was not reaped yet is
/// a zombie, which takes any signal harmlessly; a reaped one is no longer in our map.
fn signal(child: &Child, sig: Signal) {
    let pid = i32::try_from(child.id()).expect("pids fit in i32");
    let _ = kill(Pid::from_raw(pid), sig);
}
