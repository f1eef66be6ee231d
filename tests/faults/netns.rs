//! Private networks for the fault runs: one network namespace per node, joined by a bridge that
//! lives in a namespace of the run's own, and the firewall rules that cut or thin the links
//! between nodes.
//!
//! One run's network (`<pid>` is the test process, `<run>` counts the runs of that process, so
//! tests running in parallel never share a name):
//!
//! ```text
//!  rxf-<pid>-<run>-br                 rxf-<pid>-<run>-n1
//!  ┌──────────────────────┐           ┌──────────────────────────────────────────────┐
//!  │ br0 10.77.0.1/24     │── v1 ═════│ eth0 10.77.0.11/24                           │
//!  │   the harness's      │           │  :2379 REST      raftexample --id 1          │
//!  │   clients live here  │           │  :2380 peers     (binds its --cluster URL)   │
//!  └──────────────────────┘           │  :2390 proxy ◀── nat PREROUTING REDIRECT of  │
//!             │── v2 ═══ n2 ...       │                  incoming :2380 traffic      │
//!                                     └──────────────────────────────────────────────┘
//! ```
//!
//! Nothing is created in the test's own namespace: the veth pairs are made inside the bridge
//! namespace with their far ends moved straight into the node namespaces, and the harness reaches
//! the nodes from a thread that [`enter`]s the bridge namespace. So the test's own namespace has
//! no route to 10.77.0.0/24, and no packet of a run can leave the machine.
//!
//! Faults are `iptables` rules in the *filter* table of the node namespaces ([`Net::cut`],
//! [`Net::loss`]); [`Net::heal`] flushes that table and leaves the proxy's *nat* rule alone.
//! Client traffic (from the bridge address) is never dropped: a partitioned leader still hears
//! its clients, as a real one would, and must refuse them.

use std::collections::HashMap;
use std::fs::File;
use std::net::Ipv4Addr;
use std::path::Path;
use std::process::{Command, Output};
use std::sync::{Mutex, Once, OnceLock};

use nix::sched::CloneFlags;
use nix::sys::signal::{Signal, kill};
use nix::unistd::Pid;

/// First word of every namespace name the fault runs create; stale ones are found by it.
pub const PREFIX: &str = "rxf";
/// The REST port of every node (each node has its own address, so the ports can be fixed).
pub const REST_PORT: u16 = 2379;
/// The peer port of every node: the port of its `--cluster` URL.
pub const PEER_PORT: u16 = 2380;
/// Where each node's fault-injecting proxy listens; incoming peer traffic is redirected here.
pub const PROXY_PORT: u16 = 2390;
/// The bridge's address, from which all the harness's requests come.
pub const BRIDGE_IP: Ipv4Addr = Ipv4Addr::new(10, 77, 0, 1);

/// The address of node `id` (ids 1..=240).
pub fn node_ip(id: u64) -> Ipv4Addr {
    let host = u8::try_from(10 + id).expect("node ids stay below 246");
    Ipv4Addr::new(10, 77, 0, host)
}

/// Moves the calling thread into namespace `ns`: sockets it creates from now on (and threads it
/// spawns) belong to that namespace. Panics if that is impossible, because a thread that stayed
/// in the test's own namespace would send the run's traffic to the real network.
pub fn enter(ns: &str) {
    let path = format!("/run/netns/{ns}");
    let file = File::open(&path).unwrap_or_else(|e| panic!("cannot open {path}: {e}"));
    nix::sched::setns(&file, CloneFlags::CLONE_NEWNET)
        .unwrap_or_else(|e| panic!("cannot enter network namespace {ns} (setns): {e}"));
}

/// The namespaces of one run. Dropping it kills whatever still runs inside them and deletes
/// them, which also deletes every veth and firewall rule they hold.
pub struct Net {
    /// `rxf-<pid>-<run>`: the common start of this run's namespace names.
    name: String,
    /// Node ids, each with its own namespace.
    ids: Vec<u64>,
    /// Namespaces created so far, so a failure half-way through setup still cleans them up.
    created: Vec<String>,
}

impl Net {
    /// Creates the bridge namespace and one namespace per node in `ids`, wired as in the module
    /// doc. Panics with the reason if namespaces cannot be made: the fault tests must fail, not
    /// skip, where they cannot run.
    pub fn create(run: u64, ids: &[u64]) -> Net {
        check_tools();
        clean_stale();
        let mut net = Net {
            name: format!("{PREFIX}-{}-{run}", std::process::id()),
            ids: ids.to_vec(),
            created: Vec::new(),
        };
        let br = net.bridge_ns();
        net.add_ns(&br);
        ip(&["-n", &br, "link", "set", "lo", "up"]);
        ip(&["-n", &br, "link", "add", "br0", "type", "bridge"]);
        ip(&[
            "-n",
            &br,
            "addr",
            "add",
            &format!("{BRIDGE_IP}/24"),
            "dev",
            "br0",
        ]);
        ip(&["-n", &br, "link", "set", "br0", "up"]);
        for &id in ids {
            let ns = net.node_ns(id);
            net.add_ns(&ns);
            let veth = format!("v{id}");
            ip(&[
                "-n", &br, "link", "add", &veth, "type", "veth", "peer", "name", "eth0", "netns",
                &ns,
            ]);
            ip(&["-n", &br, "link", "set", &veth, "master", "br0"]);
            ip(&["-n", &br, "link", "set", &veth, "up"]);
            ip(&["-n", &ns, "link", "set", "lo", "up"]);
            let addr = format!("{}/24", node_ip(id));
            ip(&["-n", &ns, "addr", "add", &addr, "dev", "eth0"]);
            ip(&["-n", &ns, "link", "set", "eth0", "up"]);
            // Peer traffic goes through the proxy: connections to the node's --cluster URL are
            // redirected to the proxy, which forwards them to the node. PREROUTING only sees
            // packets from outside, so the proxy's own connection to the node is not redirected.
            let dst = node_ip(id).to_string();
            let (peer, proxy) = (PEER_PORT.to_string(), PROXY_PORT.to_string());
            let rule = [
                "-t",
                "nat",
                "-A",
                "PREROUTING",
                "-p",
                "tcp",
                "-d",
                &dst,
                "--dport",
                &peer,
                "-j",
                "REDIRECT",
                "--to-ports",
                &proxy,
            ];
            must(
                &mut iptables_command(&ns, &rule),
                "adding the proxy's REDIRECT rule",
            );
        }
        net
    }

    /// The namespace holding the bridge, where the harness's clients live.
    pub fn bridge_ns(&self) -> String {
        format!("{}-br", self.name)
    }

    /// The namespace of node `id`.
    pub fn node_ns(&self, id: u64) -> String {
        format!("{}-n{id}", self.name)
    }

    /// Drops every packet between the nodes of `a` and those of `b`, both ways, as a cut cable
    /// or a dead switch port would: connections hang rather than fail at once.
    pub async fn cut(&self, a: &[u64], b: &[u64]) -> Result<(), String> {
        let mut commands = Vec::new();
        for (side, other) in [(a, b), (b, a)] {
            let others = ip_list(other);
            for &id in side {
                let ns = self.node_ns(id);
                commands.push(iptables_command(
                    &ns,
                    &["-A", "INPUT", "-s", &others, "-j", "DROP"],
                ));
                commands.push(iptables_command(
                    &ns,
                    &["-A", "OUTPUT", "-d", &others, "-j", "DROP"],
                ));
            }
        }
        run_all(commands).await
    }

    /// Drops every packet the nodes of `from` send to the peer port of those of `to`, and only
    /// those: `to`'s firewall refuses `from`'s connections (and the bytes of those already
    /// open) while its own connections to `from` work, so `from` goes on hearing `to`. Only
    /// the unacknowledged bytes of `from`'s own connection say that it is dead.
    pub async fn cut_one_way(&self, from: &[u64], to: &[u64]) -> Result<(), String> {
        let senders = ip_list(from);
        // The nat rule has redirected the peer port to the proxy's by the time INPUT sees
        // the packet; conntrack still knows the port it was sent to.
        let port = PEER_PORT.to_string();
        let commands = to
            .iter()
            .map(|&id| {
                iptables_command(
                    &self.node_ns(id),
                    &[
                        "-A",
                        "INPUT",
                        "-s",
                        &senders,
                        "-p",
                        "tcp",
                        "-m",
                        "conntrack",
                        // Packets of `from`'s connections only: the answers of `to`'s own
                        // connections to `from`'s peer port come from there too.
                        "--ctdir",
                        "ORIGINAL",
                        "--ctorigdstport",
                        &port,
                        "-j",
                        "DROP",
                    ],
                )
            })
            .collect();
        run_all(commands).await
    }

    /// Drops each packet between `ids` and every other node with probability `p`, both ways.
    pub async fn loss(&self, ids: &[u64], p: f64) -> Result<(), String> {
        let p = format!("{p:.3}");
        let mut commands = Vec::new();
        for &id in ids {
            let others: Vec<u64> = self.ids.iter().copied().filter(|o| *o != id).collect();
            let others = ip_list(&others);
            let ns = self.node_ns(id);
            for (chain, dir) in [("INPUT", "-s"), ("OUTPUT", "-d")] {
                let rule = [
                    "-A",
                    chain,
                    dir,
                    &others,
                    "-m",
                    "statistic",
                    "--mode",
                    "random",
                    "--probability",
                    &p,
                    "-j",
                    "DROP",
                ];
                commands.push(iptables_command(&ns, &rule));
            }
        }
        run_all(commands).await
    }

    /// Removes every cut and loss rule (the filter table), keeping the proxy redirects.
    pub async fn heal(&self) -> Result<(), String> {
        let commands = self
            .ids
            .iter()
            .map(|id| iptables_command(&self.node_ns(*id), &["-F"]))
            .collect();
        run_all(commands).await
    }

    fn add_ns(&mut self, ns: &str) {
        let out = run(Command::new(tool("ip")).args(["netns", "add", ns]));
        if !out.status.success() {
            panic!(
                "cannot create network namespace {ns}: `ip netns add` said: {}\n\
                 The fault tests need root (CAP_SYS_ADMIN and CAP_NET_ADMIN) to build their \
                 private network; they do not skip without it. As root: ./test-everything.sh",
                String::from_utf8_lossy(&out.stderr).trim()
            );
        }
        self.created.push(ns.to_string());
    }
}

impl Drop for Net {
    fn drop(&mut self) {
        for ns in self.created.iter().rev() {
            delete_ns(ns);
        }
    }
}

/// `a,b,c`: the addresses of `ids`, as iptables takes a list of sources or destinations.
fn ip_list(ids: &[u64]) -> String {
    ids.iter()
        .map(|id| node_ip(*id).to_string())
        .collect::<Vec<_>>()
        .join(",")
}

/// `iptables` run inside namespace `ns`. `-w` waits for the xtables lock, which all namespaces
/// share, instead of failing when a parallel test holds it.
fn iptables_command(ns: &str, args: &[&str]) -> Command {
    let mut cmd = Command::new(tool("ip"));
    cmd.args(["netns", "exec", ns, tool("iptables"), "-w", "10"]);
    cmd.args(args);
    cmd
}

/// Runs `commands` at once (they are independent processes); the first failure is the error.
async fn run_all(commands: Vec<Command>) -> Result<(), String> {
    let mut set = tokio::task::JoinSet::new();
    for cmd in commands {
        let mut cmd = tokio::process::Command::from(cmd);
        set.spawn(async move {
            let out = cmd.output().await.map_err(|e| format!("{cmd:?}: {e}"))?;
            if out.status.success() {
                Ok(())
            } else {
                let stderr = String::from_utf8_lossy(&out.stderr);
                Err(format!("{cmd:?}: {}", stderr.trim()))
            }
        });
    }
    let mut first_error = Ok(());
    while let Some(joined) = set.join_next().await {
        let result = joined.map_err(|e| format!("an iptables task failed: {e}"))?;
        if first_error.is_ok() {
            first_error = result;
        }
    }
    first_error
}

/// The path of system tool `name`: found on `PATH`, else in the sbin folders, which a
/// non-login root shell may not have on its `PATH`.
pub fn tool(name: &str) -> &'static str {
    static FOUND: OnceLock<Mutex<HashMap<String, &'static str>>> = OnceLock::new();
    let mut found = FOUND
        .get_or_init(Mutex::default)
        .lock()
        .expect("no panic while looking up a tool");
    found.entry(name.to_string()).or_insert_with(|| {
        let path = ["/usr/sbin", "/sbin", "/usr/bin", "/bin"]
            .iter()
            .map(|dir| format!("{dir}/{name}"))
            .find(|p| Path::new(p).exists())
            .unwrap_or_else(|| name.to_string());
        // Leaked once per tool name: a handful of short strings for the life of the test.
        Box::leak(path.into_boxed_str())
    })
}

/// Panics unless `ip` and `iptables` can run: without them no fault can be injected.
fn check_tools() {
    for name in ["ip", "iptables"] {
        let tool = tool(name);
        match Command::new(tool).arg("-V").output() {
            Ok(out) if out.status.success() => {}
            other => panic!(
                "the fault tests need `{name}` (Debian packages iproute2 and iptables; \
                 ./test-everything.sh installs them), and running it failed: {other:?}"
            ),
        }
    }
}

/// Deletes namespaces left by fault runs of test processes that no longer exist (a run killed
/// before its clean-up), with whatever still runs inside them. Runs once per test process.
fn clean_stale() {
    static ONCE: Once = Once::new();
    ONCE.call_once(|| {
        let out = run(Command::new(tool("ip")).args(["netns", "list"]));
        let me = std::process::id();
        let listing = String::from_utf8_lossy(&out.stdout).to_string();
        for line in listing.lines() {
            // Lines are `name` or `name (id: N)`.
            let Some(name) = line.split_whitespace().next() else {
                continue;
            };
            let Some(pid) = owner_pid(name) else {
                continue;
            };
            if pid != me && !Path::new(&format!("/proc/{pid}")).exists() {
                eprintln!("removing network namespace {name}, left by a run that died");
                delete_ns(name);
            }
        }
    });
}

/// The test process that made namespace `name`, if it is one of ours (`rxf-<pid>-...`).
fn owner_pid(name: &str) -> Option<u32> {
    let mut parts = name.split('-');
    if parts.next() != Some(PREFIX) {
        return None;
    }
    parts.next()?.parse().ok()
}

/// Kills every process inside `ns` (only runs of ours put processes there: our nodes) and
/// deletes it. Best effort: this runs in `Drop` and for stale leftovers.
fn delete_ns(ns: &str) {
    let out = run(Command::new(tool("ip")).args(["netns", "pids", ns]));
    let me = std::process::id();
    for pid in String::from_utf8_lossy(&out.stdout).split_whitespace() {
        if let Ok(pid) = pid.parse::<i32>()
            && pid as u32 != me
        {
            let _ = kill(Pid::from_raw(pid), Signal::SIGKILL);
        }
    }
    let out = run(Command::new(tool("ip")).args(["netns", "del", ns]));
    if !out.status.success() {
        eprintln!(
            "could not delete network namespace {ns}: {}",
            String::from_utf8_lossy(&out.stderr).trim()
        );
    }
}

/// `ip ARGS`, panicking with its message on failure (used while building a network).
fn ip(args: &[&str]) {
    must(
        Command::new(tool("ip")).args(args),
        "building the run's network",
    );
}

fn must(cmd: &mut Command, what: &str) {
    let out = run(cmd);
    if !out.status.success() {
        panic!(
            "{what}: {cmd:?} failed: {}",
            String::from_utf8_lossy(&out.stderr).trim()
        );
    }
}

fn run(cmd: &mut Command) -> Output {
    cmd.output()
        .unwrap_or_else(|e| panic!("cannot run {cmd:?}: {e}"))
}
