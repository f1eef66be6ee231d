//! Shared test helpers: free loopback ports, waiting for a condition with a deadline, an
//! in-process cluster on an in-memory network and disks ([`TestCluster`]), a cluster of real
//! `raftexample` processes ([`ProcCluster`]), and big data dirs written straight to disk
//! ([`bigdata`], which the measuring programs under bench/measure borrow too).

#![allow(dead_code)] // each test binary uses a different part of this module

pub mod bigdata;

use std::collections::{BTreeMap, HashMap};
use std::future::Future;
use std::net::TcpListener;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::Arc;
use std::time::Duration;

use raftexample::disk::{MemFs, SharedFs};
use raftexample::in_memory::{self, MemNode};
use raftexample::raft_node::ReadConsistency;
use raftexample::transport::mem::MemNet;
use raftexample::{Config, NodeHandle};
use tempfile::TempDir;

/// Logs to the test's captured output; `RUST_LOG` picks the level (default: warnings).
pub fn init_logging() {
    let filter = tracing_subscriber::EnvFilter::try_from_default_env()
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("warn"));
    let _ = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_test_writer()
        .try_init();
}

/// Where the tests' ports come from: below Linux's ephemeral range (32768–60999 by default),
/// so the kernel never hands one of them to another process's `bind(0)` or outgoing
/// connection while a test has let go of it between two runs of a node, and clear of the
/// README's ports (12379, 12380, 22379, ...).
const TEST_PORTS: std::ops::Range<u16> = 13000..22000;

/// `n` distinct loopback ports, each reserved for this test process until it exits.
///
/// Test processes run side by side (nextest runs every test in a process of its own), and a
/// port that was merely free a moment ago was, once, taken by another test's node before this
/// one's bound it. So each port is claimed by an exclusive lock on a file named after it in a
/// shared folder; the lock is held for the life of the process and dropped by the OS when it
/// ends, however it ends.
pub fn free_ports(n: usize) -> Vec<u16> {
    static HELD: std::sync::Mutex<Vec<std::fs::File>> = std::sync::Mutex::new(Vec::new());
    let dir = std::env::temp_dir().join("raftexample-test-ports");
    std::fs::create_dir_all(&dir).expect("creating the folder of port locks");
    let span = u64::from(TEST_PORTS.end - TEST_PORTS.start);
    // Start where other processes are unlikely to look, so most first tries succeed.
    let seed = u64::from(std::process::id()).wrapping_mul(0x9E37_79B9_7F4A_7C15)
        ^ std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map_or(0, |d| u64::from(d.subsec_nanos()));
    let mut held = HELD
        .lock()
        .expect("no test panics while holding the port list");
    let mut ports = Vec::with_capacity(n);
    for step in 0..span {
        if ports.len() == n {
            break;
        }
        let port = TEST_PORTS.start + ((seed.wrapping_add(step)) % span) as u16;
        let Ok(file) = std::fs::OpenOptions::new()
            .create(true)
            .truncate(false)
            .write(true)
            .open(dir.join(port.to_string()))
        else {
            continue;
        };
        if file.try_lock().is_err() {
            continue; // another test process (or this one) holds it
        }
        // Something outside the tests may listen there.
        if TcpListener::bind(("127.0.0.1", port)).is_err() {
            continue;
        }
        held.push(file);
        ports.push(port);
    }
    assert_eq!(
        ports.len(),
        n,
        "no {n} free ports left in {TEST_PORTS:?} (locks in {})",
        dir.display()
    );
    ports
}

/// Polls `cond` until it returns `Some`, or panics with `what` after `timeout` (of tokio's
/// clock: a test that paused it waits no wall-clock time).
pub async fn wait_for<T, F, Fut>(timeout: Duration, what: &str, mut cond: F) -> T
where
    F: FnMut() -> Fut,
    Fut: Future<Output = Option<T>>,
{
    let deadline = tokio::time::Instant::now() + timeout;
    loop {
        if let Some(v) = cond().await {
            return v;
        }
        if tokio::time::Instant::now() >= deadline {
            panic!("timed out after {timeout:?} waiting for {what}");
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

/// Resident memory of process `pid`, in bytes; 0 once the process is gone (a test that
/// samples it while the process fails then fails on its own terms).
pub fn rss(pid: i32) -> u64 {
    let Ok(status) = std::fs::read_to_string(format!("/proc/{pid}/status")) else {
        return 0;
    };
    let kib: u64 = status
        .lines()
        .find_map(|l| l.strip_prefix("VmRSS:"))
        .and_then(|v| v.trim().trim_end_matches("kB").trim().parse().ok())
        .unwrap_or(0);
    kib * 1024
}

/// The state letter of process `pid` in `/proc/PID/stat` (`R`, `S`, `T` stopped, `Z`
/// zombie...); `None` once it is gone.
pub fn process_state(pid: i32) -> Option<char> {
    state_in(Path::new(&format!("/proc/{pid}/stat")))
}

/// The state letter in the `stat` file at `path` (a process's or a thread's).
fn state_in(path: &Path) -> Option<char> {
    let stat = std::fs::read_to_string(path).ok()?;
    // `pid (comm) state ...`: the name may hold anything, so the state follows the last ')'.
    stat.rsplit_once(')')?.1.trim_start().chars().next()
}

/// Whether every thread of process `pid` is stopped (state `T` or `t` in
/// `/proc/PID/task/*/stat`): a SIGSTOP stops each thread as it next gets to run, and one
/// that had not stopped yet could still answer a peer.
pub fn all_threads_stopped(pid: i32) -> bool {
    let Ok(tasks) = std::fs::read_dir(format!("/proc/{pid}/task")) else {
        return false;
    };
    tasks
        .flatten()
        .all(|task| matches!(state_in(&task.path().join("stat")), Some('T' | 't')))
}

/// Peer URLs for `n` nodes on fresh loopback ports.
pub fn peer_urls(n: usize) -> Vec<String> {
    free_ports(n)
        .into_iter()
        .map(|p| format!("http://127.0.0.1:{p}"))
        .collect()
}

/// The nodes an agreed leader is asked of: `leaders` gives each node's idea of the leader
/// (0 or `None` for none); the leader they all name, if they agree.
pub fn agreed(leaders: impl IntoIterator<Item = Option<u64>>) -> Option<u64> {
    let mut seen = Vec::new();
    for leader in leaders {
        seen.push(leader.filter(|l| *l != 0)?);
    }
    seen.dedup();
    (seen.len() == 1).then(|| seen[0])
}

/// A cluster of nodes inside the test process ([`raftexample::in_memory`]): an in-memory
/// network and one in-memory disk per node (kept across restarts), on the test's runtime, so a
/// test with `#[tokio::test(start_paused = true)]` spends no wall-clock time on elections or
/// timeouts.
pub struct TestCluster {
    /// The network the nodes share.
    pub net: MemNet,
    /// Peer URLs, in id order (names only: nothing listens on them).
    pub peers: Vec<String>,
    disks: BTreeMap<u64, MemFs>,
    nodes: BTreeMap<u64, MemNode>,
    tweak: fn(&mut Config),
}

impl TestCluster {
    /// Starts `n` nodes; `tweak` adjusts every node's config.
    pub async fn start(n: usize, tweak: fn(&mut Config)) -> TestCluster {
        init_logging();
        let mut cluster = TestCluster {
            net: MemNet::new(),
            peers: Vec::new(),
            disks: BTreeMap::new(),
            nodes: BTreeMap::new(),
            tweak,
        };
        for _ in 0..n {
            cluster.grow();
        }
        for id in 1..=n as u64 {
            cluster.start_node(id, false).await;
        }
        cluster
    }

    /// The config node `id` runs with (its data dir is on its own in-memory disk).
    pub fn config(&self, id: u64, join: bool) -> Config {
        let mut config = Config {
            id,
            cluster: self.peers.clone(),
            listen_host: "127.0.0.1".parse().expect("a literal address"),
            data_dir: PathBuf::from("/data"),
            join,
            ..Default::default()
        };
        (self.tweak)(&mut config);
        config
    }

    /// Node `id`'s disk (the same one across its restarts).
    pub fn disk(&mut self, id: u64) -> SharedFs {
        Arc::new(self.mem_disk(id))
    }

    /// Node `id`'s disk, to fill or fail (clones share it).
    pub fn mem_disk(&mut self, id: u64) -> MemFs {
        self.disks
            .entry(id)
            .or_insert_with(|| MemFs::new(id))
            .clone()
    }

    /// Starts (or restarts) node `id`.
    pub async fn start_node(&mut self, id: u64, join: bool) {
        let disk = self.disk(id);
        let node = in_memory::start(self.config(id, join), &self.net, disk)
            .await
            .unwrap_or_else(|e| panic!("node {id} failed to start: {e}"));
        self.nodes.insert(id, node);
    }

    /// Wipes stopped node `id`'s disk: its next start is on an empty data dir.
    pub fn wipe(&mut self, id: u64) {
        assert!(!self.nodes.contains_key(&id), "node {id} is running");
        self.disks.insert(id, MemFs::new(id + 1000));
    }

    /// Adds a slot for one more node, returning its id.
    pub fn grow(&mut self) -> u64 {
        let id = self.peers.len() as u64 + 1;
        self.peers.push(format!("http://127.0.0.1:{}", 20_000 + id));
        id
    }

    /// Node `id`'s handle.
    pub fn node(&self, id: u64) -> &NodeHandle {
        &self.running_node(id).node
    }

    /// Node `id`'s REST API, to call without a socket.
    pub fn router(&self, id: u64) -> axum::Router {
        self.running_node(id).router.clone()
    }

    fn running_node(&self, id: u64) -> &MemNode {
        self.nodes
            .get(&id)
            .unwrap_or_else(|| panic!("node {id} is not running"))
    }

    /// Ids of the running nodes.
    pub fn running(&self) -> Vec<u64> {
        self.nodes.keys().copied().collect()
    }

    /// Stops node `id` cleanly and waits for it.
    pub async fn stop(&mut self, id: u64) -> raftexample::Exit {
        let node = self.nodes.remove(&id).expect("stopping a running node");
        node.shutdown();
        node.wait().await
    }

    /// Crashes node `id` (see [`MemNode::crash`]): its disk keeps what it had synced.
    pub async fn crash(&mut self, id: u64) {
        let node = self.nodes.remove(&id).expect("crashing a running node");
        node.crash().await;
    }

    /// Whether started node `id` has stopped on its own, though not yet waited for.
    pub fn has_stopped(&self, id: u64) -> bool {
        self.running_node(id).has_stopped()
    }

    /// Waits until node `id` has stopped on its own (say, after its removal).
    pub async fn wait_exit(&mut self, id: u64, timeout: Duration) -> raftexample::Exit {
        let node = self.nodes.remove(&id).expect("a running node");
        tokio::time::timeout(timeout, node.wait())
            .await
            .unwrap_or_else(|_| panic!("node {id} did not stop within {timeout:?}"))
    }

    /// Waits until every running node agrees on one leader; returns it.
    pub async fn wait_leader(&self) -> u64 {
        wait_for(
            Duration::from_secs(10),
            "a leader all nodes agree on",
            || async {
                let mut leaders = Vec::new();
                for id in self.running() {
                    leaders.push(self.node(id).status().await.ok().map(|s| s.leader));
                }
                agreed(leaders)
            },
        )
        .await
    }

    /// Waits until `key` reads `value` locally on every running node.
    pub async fn wait_converged(&self, key: &str, value: &str) {
        for id in self.running() {
            let node = self.node(id);
            wait_for(
                Duration::from_secs(10),
                &format!("{key}={value} on node {id}"),
                || async {
                    let v = node.get(key, ReadConsistency::Stale).await.ok()??;
                    (v == value).then_some(())
                },
            )
            .await;
        }
    }

    /// Three nodes taking a snapshot every five entries and keeping one entry behind it: a
    /// cluster for [`Self::snapshot_with_a_follower_behind`].
    pub async fn snapshotting_often() -> TestCluster {
        TestCluster::start(3, |c| {
            c.snapshot_count = 5;
            c.snapshot_catchup_entries = 1;
        })
        .await
    }

    /// Waits up to `within` for the follower `setup` left behind to have applied what the
    /// leader had when it went idle.
    pub async fn caught_up(&self, setup: &SnapshotBehind, within: Duration, what: &str) {
        let behind = self.node(setup.behind).clone();
        wait_for(within, what, || async {
            let s = behind.status().await.ok()?;
            (s.applied >= setup.idle.applied).then_some(())
        })
        .await;
    }

    /// Cuts a follower off its leader and writes, one entry at a time (each waited for until
    /// any snapshot it made due is saved), until the leader's newest snapshot lands on its
    /// applied index past the follower's log: the cluster then goes idle, and the follower
    /// can catch up only from that snapshot once the network heals.
    pub async fn snapshot_with_a_follower_behind(&mut self) -> SnapshotBehind {
        let cut = self.cut_a_follower_off().await;
        self.snapshot_past(cut).await
    }

    /// Cuts a follower off its leader (both ways); returns them and where its log ends.
    pub async fn cut_a_follower_off(&mut self) -> CutOff {
        let leader = self.wait_leader().await;
        let behind = if leader == 3 { 2 } else { 3 };
        let behind_last = self
            .node(behind)
            .status()
            .await
            .expect("the follower's status")
            .last_index;
        self.net.cut(leader, behind);
        CutOff {
            leader,
            behind,
            behind_last,
        }
    }

    /// The rest of [`TestCluster::snapshot_with_a_follower_behind`], for a follower cut off
    /// by [`TestCluster::cut_a_follower_off`] (a test may write between the two).
    pub async fn snapshot_past(&mut self, cut: CutOff) -> SnapshotBehind {
        let CutOff {
            leader,
            behind,
            behind_last,
        } = cut;
        let count = self.config(leader, false).snapshot_count;
        let node = self.node(leader).clone();
        let mut taken = None;
        for i in 0..100 {
            node.put(format!("/k{i}"), "v".into()).await.expect("put");
            let status = wait_for(
                Duration::from_secs(10),
                "a snapshot made due to be saved",
                || async {
                    let s = node.status().await.ok()?;
                    (s.applied - s.snapshot_index < count).then_some(s)
                },
            )
            .await;
            if status.snapshot_index == status.applied && status.first_index > behind_last + 1 {
                taken = Some(status);
                break;
            }
        }
        let idle = taken.expect("a snapshot at the leader's applied index");
        let snap_dir = self.config(leader, false).snap_dir();
        let name = self
            .disk(leader)
            .list_dir(&snap_dir)
            .expect("the leader's snapshot folder")
            .into_iter()
            .find(|n| {
                raftexample::snapshotter::parse_snap_name(n)
                    .is_some_and(|(_, i)| i == idle.snapshot_index)
            })
            .expect("the file of the leader's newest snapshot");
        SnapshotBehind {
            leader,
            behind,
            idle,
            snap_dir,
            name,
        }
    }

    /// Flips a byte near the end of the leader's newest snapshot file (its data's last):
    /// damage its checksum catches.
    pub fn damage(&mut self, s: &SnapshotBehind) {
        let path = s.snap_dir.join(&s.name);
        let (_, len) = self
            .disk(s.leader)
            .open_read(&path)
            .expect("the snapshot file");
        self.mem_disk(s.leader)
            .flip_byte(&path, len - 5, 0x40)
            .expect("damaged");
    }

    /// Stops every node, keeping their disks.
    pub async fn stop_all(&mut self) {
        for id in self.running() {
            self.stop(id).await;
        }
    }

    /// Stops every node.
    pub async fn shutdown(mut self) {
        self.stop_all().await;
    }
}

/// A follower cut off from its leader ([`TestCluster::cut_a_follower_off`]).
#[derive(Clone, Copy)]
pub struct CutOff {
    /// The leader.
    pub leader: u64,
    /// The follower cut off.
    pub behind: u64,
    /// The last index of the follower's log when it was cut off.
    pub behind_last: u64,
}

/// What [`TestCluster::snapshot_with_a_follower_behind`] set up.
pub struct SnapshotBehind {
    /// The leader.
    pub leader: u64,
    /// The follower cut off behind the leader's snapshot.
    pub behind: u64,
    /// The leader's status once idle: its snapshot at its applied index.
    pub idle: raftexample::request::NodeStatus,
    /// The leader's snapshot folder, on its disk.
    pub snap_dir: PathBuf,
    /// The name of its newest snapshot file there.
    pub name: String,
}

/// Calls `router` without a socket; returns the status and the body as text.
pub async fn call(
    router: &axum::Router,
    method: axum::http::Method,
    path: &str,
    body: Vec<u8>,
) -> (axum::http::StatusCode, String) {
    let (status, _, bytes) = call_raw(router, method, path, body).await;
    (status, String::from_utf8_lossy(&bytes).into_owned())
}

/// [`call`], returning the answer's Content-Type (empty if none) and its body as it is.
pub async fn call_raw(
    router: &axum::Router,
    method: axum::http::Method,
    path: &str,
    body: Vec<u8>,
) -> (axum::http::StatusCode, String, axum::body::Bytes) {
    use tower::ServiceExt;
    let request = axum::http::Request::builder()
        .method(method)
        .uri(path)
        .body(axum::body::Body::from(body))
        .expect("a well-formed request");
    let response = router
        .clone()
        .oneshot(request)
        .await
        .expect("the router always answers");
    let status = response.status();
    let content_type = response
        .headers()
        .get(axum::http::header::CONTENT_TYPE)
        .map(|v| String::from_utf8_lossy(v.as_bytes()).into_owned())
        .unwrap_or_default();
    let bytes = axum::body::to_bytes(response.into_body(), usize::MAX)
        .await
        .expect("a body");
    (status, content_type, bytes)
}

/// Path of the built binary.
pub fn binary() -> &'static str {
    env!("CARGO_BIN_EXE_raftexample")
}

/// A cluster of real `raftexample` processes on loopback, each with its own data dir.
pub struct ProcCluster {
    /// Holds data dirs and logs.
    pub dir: TempDir,
    /// Peer URLs, in id order.
    pub peers: Vec<String>,
    /// REST ports, in id order.
    pub rest_ports: Vec<u16>,
    children: HashMap<u64, Child>,
    /// Flags added to every node's command line.
    pub extra_args: Vec<String>,
    /// HTTP client for the REST API.
    pub http: reqwest::Client,
    /// Folder of `raftexample certs` output when the cluster runs TLS on both ports.
    pub tls: Option<PathBuf>,
    /// Nodes whose certificates come from another folder (another CA, say).
    pub tls_dirs: HashMap<u64, PathBuf>,
}

impl ProcCluster {
    /// Slots for `n` nodes; none started yet.
    pub fn new(n: usize, extra_args: &[&str]) -> ProcCluster {
        ProcCluster {
            dir: TempDir::with_prefix("raftexample-proc-").expect("creating a temp dir"),
            peers: peer_urls(n),
            rest_ports: free_ports(n),
            children: HashMap::new(),
            extra_args: extra_args.iter().map(|s| s.to_string()).collect(),
            http: reqwest::Client::builder()
                .timeout(Duration::from_secs(10))
                .build()
                .expect("building an HTTP client"),
            tls: None,
            tls_dirs: HashMap::new(),
        }
    }

    /// Slots for `n` nodes that will run TLS on both ports (https:// peer URLs, client
    /// certificates required), with certificates made by `raftexample certs` in the cluster's
    /// folder; the REST client presents `client.crt`.
    pub fn new_tls(n: usize, extra_args: &[&str]) -> ProcCluster {
        let mut c = ProcCluster::new(n, extra_args);
        let certs = c.dir.path().join("certs");
        make_certs(&certs, n as u64 + 1);
        c.peers = c
            .peers
            .iter()
            .map(|u| u.replacen("http://", "https://", 1))
            .collect();
        c.http = tls_client(&certs, Some(&certs));
        c.tls = Some(certs);
        c
    }

    /// Starts `n` TLS nodes (see [`ProcCluster::new_tls`]) and waits for a leader.
    pub async fn start_tls(n: usize, extra_args: &[&str]) -> ProcCluster {
        let mut c = ProcCluster::new_tls(n, extra_args);
        for id in 1..=n as u64 {
            c.spawn(id, &[]);
        }
        c.wait_leader().await;
        c
    }

    /// The TLS flags of node `id`: etcd's, with its own certificate on both ports.
    pub fn tls_args(&self, id: u64) -> Vec<String> {
        let Some(default) = &self.tls else {
            return Vec::new();
        };
        let dir = self.tls_dirs.get(&id).unwrap_or(default);
        let file = |name: &str| dir.join(name).display().to_string();
        let cert = file(&format!("node{id}.crt"));
        let key = file(&format!("node{id}.key"));
        let ca = file("ca.crt");
        [
            ("--cert-file", cert.clone()),
            ("--key-file", key.clone()),
            ("--trusted-ca-file", ca.clone()),
            ("--client-cert-auth", "true".into()),
            ("--peer-cert-file", cert),
            ("--peer-key-file", key),
            ("--peer-trusted-ca-file", ca),
        ]
        .into_iter()
        .flat_map(|(flag, value)| [flag.to_string(), value])
        .collect()
    }

    /// Starts `n` nodes and waits until they agree on a leader.
    pub async fn start(n: usize, extra_args: &[&str]) -> ProcCluster {
        let mut c = ProcCluster::new(n, extra_args);
        for id in 1..=n as u64 {
            c.spawn(id, &[]);
        }
        c.wait_leader().await;
        c
    }

    /// Data folder of node `id` (the folder holding raftexample-<id>/).
    pub fn data_dir(&self, id: u64) -> PathBuf {
        self.dir.path().join(format!("node{id}"))
    }

    /// Log file of node `id`.
    pub fn log_path(&self, id: u64) -> PathBuf {
        self.dir.path().join(format!("node{id}.log"))
    }

    /// Adds a slot for one more node, returning its id.
    pub fn grow(&mut self) -> u64 {
        let scheme = if self.tls.is_some() {
            "https://"
        } else {
            "http://"
        };
        self.peers.extend(
            peer_urls(1)
                .iter()
                .map(|u| u.replacen("http://", scheme, 1)),
        );
        self.rest_ports.extend(free_ports(1));
        self.peers.len() as u64
    }

    /// Adds a slot for one more node and asks node `via` to add it as a member (`POST /<id>`
    /// with its peer URL), expecting 204; returns its id. The node is not started.
    pub async fn add_member(&mut self, via: u64) -> u64 {
        let id = self.grow();
        let added = self
            .http
            .post(format!("{}/{id}", self.url(via)))
            .body(self.peers[id as usize - 1].clone())
            .send()
            .await
            .unwrap_or_else(|e| panic!("POST /{id} to node {via}: {e}"));
        let code = added.status().as_u16();
        assert_eq!(code, 204, "{}", added.text().await.unwrap_or_default());
        id
    }

    /// The command line node `id` runs with (before `extra`).
    pub fn args(&self, id: u64) -> Vec<String> {
        let mut args = vec![
            "--id".to_string(),
            id.to_string(),
            "--cluster".to_string(),
            self.peers.join(","),
            "--port".to_string(),
            self.rest_ports[id as usize - 1].to_string(),
            "--listen-host".to_string(),
            "127.0.0.1".to_string(),
            "--data-dir".to_string(),
            self.data_dir(id).display().to_string(),
        ];
        args.extend(self.tls_args(id));
        args.extend(self.extra_args.iter().cloned());
        args
    }

    /// Starts node `id` with `extra` flags; its stderr goes to its log file (appended).
    pub fn spawn(&mut self, id: u64, extra: &[&str]) {
        std::fs::create_dir_all(self.data_dir(id)).expect("creating the node's folder");
        let log = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(self.log_path(id))
            .expect("opening the node's log");
        let child = Command::new(binary())
            .args(self.args(id))
            .args(extra)
            .env(
                "RUST_LOG",
                std::env::var("RUST_LOG").unwrap_or_else(|_| "info".into()),
            )
            .stdout(Stdio::null())
            .stderr(log)
            .spawn()
            .expect("starting raftexample");
        self.children.insert(id, child);
    }

    /// Runs the binary for node `id` with its usual flags but on `data_dir`; returns its exit
    /// status and stderr (for start-up refusals).
    pub fn run_on_data_dir(&self, id: u64, data_dir: &Path) -> (std::process::ExitStatus, String) {
        let mut args = self.args(id);
        let flag = args
            .iter()
            .position(|a| a == "--data-dir")
            .expect("args() always passes --data-dir");
        args[flag + 1] = data_dir.display().to_string();
        let out = Command::new(binary())
            .args(&args)
            .output()
            .expect("running raftexample");
        (
            out.status,
            String::from_utf8_lossy(&out.stderr).into_owned(),
        )
    }

    /// PID of node `id`.
    pub fn pid(&self, id: u64) -> i32 {
        self.children[&id].id() as i32
    }

    /// Whether node `id` has a running process.
    pub fn is_running(&mut self, id: u64) -> bool {
        match self.children.get_mut(&id) {
            Some(c) => matches!(c.try_wait(), Ok(None)),
            None => false,
        }
    }

    /// Sends a signal to node `id`'s process.
    pub fn signal(&self, id: u64, sig: nix::sys::signal::Signal) {
        nix::sys::signal::kill(nix::unistd::Pid::from_raw(self.pid(id)), sig)
            .expect("signalling our own child");
    }

    /// Stops node `id` with SIGSTOP and returns once every thread of it has stopped (its
    /// kernel still takes connections on its ports; the process answers nothing).
    pub async fn freeze(&self, id: u64) {
        self.signal(id, nix::sys::signal::Signal::SIGSTOP);
        let pid = self.pid(id);
        wait_for(Duration::from_secs(5), "a frozen node to stop", || async {
            all_threads_stopped(pid).then_some(())
        })
        .await;
    }

    /// SIGKILLs node `id` and reaps it.
    pub fn kill(&mut self, id: u64) {
        if let Some(mut child) = self.children.remove(&id) {
            let _ = child.kill();
            let _ = child.wait();
        }
    }

    /// SIGTERMs node `id` and waits for it to exit; returns its status.
    pub async fn stop(&mut self, id: u64) -> std::process::ExitStatus {
        self.signal(id, nix::sys::signal::Signal::SIGTERM);
        self.wait_exit(id, Duration::from_secs(10)).await
    }

    /// Waits until node `id` exits on its own; returns its status.
    pub async fn wait_exit(&mut self, id: u64, timeout: Duration) -> std::process::ExitStatus {
        let mut child = self.children.remove(&id).expect("a started node");
        wait_for(timeout, &format!("node {id} to exit"), || {
            let s = child.try_wait().ok().flatten();
            async move { s }
        })
        .await
    }

    /// Base URL of node `id`'s REST API.
    pub fn url(&self, id: u64) -> String {
        let scheme = if self.tls.is_some() { "https" } else { "http" };
        format!("{scheme}://127.0.0.1:{}", self.rest_ports[id as usize - 1])
    }

    /// PUT; returns the status code, or None if the request failed.
    pub async fn put(&self, id: u64, key: &str, value: &str) -> Option<u16> {
        let r = self
            .http
            .put(format!("{}/{key}", self.url(id)))
            .body(value.to_string())
            .send()
            .await
            .ok()?;
        Some(r.status().as_u16())
    }

    /// GET; returns (status, body), or None if the request failed.
    pub async fn get(&self, id: u64, path: &str) -> Option<(u16, String)> {
        let r = self
            .http
            .get(format!("{}/{path}", self.url(id)))
            .send()
            .await
            .ok()?;
        let status = r.status().as_u16();
        Some((status, r.text().await.ok()?))
    }

    /// PUT that must succeed within a deadline (retrying 503s while a leader is elected).
    pub async fn put_ok(&self, id: u64, key: &str, value: &str) {
        wait_for(
            Duration::from_secs(15),
            &format!("PUT {key} on node {id}"),
            || async { (self.put(id, key, value).await == Some(204)).then_some(()) },
        )
        .await
    }

    /// Waits until node `id` serves `GET key` as `value` (with `?stale` if `stale`).
    pub async fn wait_value(&self, id: u64, key: &str, value: &str, stale: bool) {
        let path = if stale {
            format!("{key}?stale")
        } else {
            key.to_string()
        };
        wait_for(
            Duration::from_secs(20),
            &format!("{key}={value} on node {id}"),
            || async {
                let (status, body) = self.get(id, &path).await?;
                (status == 200 && body == value).then_some(())
            },
        )
        .await
    }

    /// Node `id`'s `/-/status` as JSON.
    pub async fn status(&self, id: u64) -> Option<serde_json::Value> {
        let (code, body) = self.get(id, "-/status").await?;
        if code != 200 {
            return None;
        }
        serde_json::from_str(&body).ok()
    }

    /// Waits until the running nodes agree on a leader; returns its id.
    pub async fn wait_leader(&mut self) -> u64 {
        let ids: Vec<u64> = self.children.keys().copied().collect();
        wait_for(Duration::from_secs(20), "an agreed leader", || {
            self.agreed_leader(&ids)
        })
        .await
    }

    /// The leader nodes `ids` all name now, if they agree on one (see [`agreed`]).
    async fn agreed_leader(&self, ids: &[u64]) -> Option<u64> {
        let mut leaders = Vec::new();
        for id in ids {
            leaders.push(self.status(*id).await.and_then(|s| s["leader"].as_u64()));
        }
        agreed(leaders)
    }

    /// Waits (up to `within`) until the running nodes other than `old` agree on a leader
    /// other than `old`; returns it.
    pub async fn wait_new_leader(&self, old: u64, within: Duration) -> u64 {
        let ids: Vec<u64> = self
            .children
            .keys()
            .copied()
            .filter(|id| *id != old)
            .collect();
        wait_for(within, "a new leader", || async {
            let leader = self.agreed_leader(&ids).await;
            leader.filter(|leader| *leader != old)
        })
        .await
    }

    /// The log of node `id` so far.
    pub fn log(&self, id: u64) -> String {
        std::fs::read_to_string(self.log_path(id)).unwrap_or_default()
    }
}

impl Drop for ProcCluster {
    fn drop(&mut self) {
        for (_, mut child) in self.children.drain() {
            let _ = child.kill();
            let _ = child.wait();
        }
        if std::thread::panicking() {
            // Show what the nodes said: the temp dir disappears with the test.
            for entry in std::fs::read_dir(self.dir.path())
                .into_iter()
                .flatten()
                .flatten()
            {
                let path = entry.path();
                if path.extension().is_some_and(|e| e == "log") {
                    print_tail(&path);
                }
            }
        }
    }
}

/// Runs `raftexample certs` into `dir`: a CA, certificates for nodes 1..=`nodes` valid for
/// 127.0.0.1, and a client certificate.
pub fn make_certs(dir: &Path, nodes: u64) {
    let out = Command::new(binary())
        .args(["certs", "--out"])
        .arg(dir)
        .args([
            "--nodes",
            &nodes.to_string(),
            "--hosts",
            "127.0.0.1,localhost",
        ])
        .output()
        .expect("running raftexample certs");
    assert!(
        out.status.success(),
        "raftexample certs failed: {}",
        String::from_utf8_lossy(&out.stderr)
    );
}

/// A REST client over TLS that trusts the CA in `ca_dir` and, given `identity_dir`, presents
/// its `client.crt`.
pub fn tls_client(ca_dir: &Path, identity_dir: Option<&Path>) -> reqwest::Client {
    let read = |p: PathBuf| std::fs::read(&p).unwrap_or_else(|e| panic!("{}: {e}", p.display()));
    let ca = reqwest::Certificate::from_pem(&read(ca_dir.join("ca.crt"))).expect("a CA in PEM");
    let mut builder = reqwest::Client::builder()
        .use_rustls_tls()
        .tls_built_in_root_certs(false)
        .add_root_certificate(ca)
        .timeout(Duration::from_secs(10));
    if let Some(dir) = identity_dir {
        let mut pem = read(dir.join("client.crt"));
        pem.extend(read(dir.join("client.key")));
        builder = builder.identity(reqwest::Identity::from_pem(&pem).expect("a client identity"));
    }
    builder.build().expect("building a TLS client")
}

fn print_tail(path: &Path) {
    let text = std::fs::read_to_string(path).unwrap_or_default();
    let lines: Vec<&str> = text.lines().collect();
    let from = lines.len().saturating_sub(60);
    eprintln!("---- last lines of {} ----", path.display());
    for line in &lines[from..] {
        eprintln!("{line}");
    }
}
