//! How long clients wait when the leader goes away: three nodes of the release binary on
//! loopback, the leader stopped, and from that moment a linearizable GET loop and a PUT loop
//! through one of the other two nodes, each retrying every 5 ms until it is answered.
//!
//! ```sh
//! cargo build --release
//! cargo run --release --example failover [-- TRIALS]     # 5 of each by default
//! ```
//!
//! - `kill`: the leader gets SIGKILL, as in a crash. The others wait out an election timeout
//!   (10–20 ticks of 100 ms) before one of them leads; the requests waiting at the survivor
//!   are answered once the new leader has committed an entry of its term.
//! - `term`: the leader gets SIGTERM, as from an operator. It hands leadership to the most
//!   caught-up follower before it exits, so no election timeout is waited out.
//!
//! Printed per trial and as medians: seconds from the signal until the survivor names a new
//! leader in `/-/status`, and until the first GET and the first PUT are answered. Data dirs go
//! under `BENCH_TMPDIR` (`/var/tmp`); `OURS_BIN` runs another build.

mod support;

use std::time::{Duration, Instant};

use support::{Node, free_port, http, temp_dir};

/// Longest any one figure may take before the trial is called failed.
const LIMIT: Duration = Duration::from_secs(30);

/// One trial's seconds from the signal: (new leader named, first GET, first PUT).
type Figures = (f64, f64, f64);

fn main() {
    let trials: usize = std::env::args()
        .nth(1)
        .map_or(5, |a| a.parse().expect("TRIALS is a number"));
    let runtime = tokio::runtime::Runtime::new().expect("a tokio runtime");
    println!(
        "{:<6} {:>5} {:>14} {:>12} {:>12}",
        "signal", "trial", "new leader s", "first GET s", "first PUT s"
    );
    for signal in ["kill", "term"] {
        let mut all = Vec::with_capacity(trials);
        for trial in 1..=trials {
            // A node that could not start (another process took a port between `free_port`
            // and its bind) spoils only its cluster: start another.
            let (leader, get, put) = (0..3)
                .find_map(|_| match runtime.block_on(one_trial(signal)) {
                    Ok(figures) => Some(figures),
                    Err(why) => {
                        eprintln!("trial {trial}: {why}; starting another cluster");
                        None
                    }
                })
                .expect("three clusters in a row failed to start");
            println!("{signal:<6} {trial:>5} {leader:>14.3} {get:>12.3} {put:>12.3}");
            all.push((leader, get, put));
        }
        let median = |f: fn(&Figures) -> f64| {
            let mut v: Vec<f64> = all.iter().map(f).collect();
            v.sort_by(f64::total_cmp);
            v[v.len() / 2]
        };
        println!(
            "{signal:<6} {:>5} {:>14.3} {:>12.3} {:>12.3}",
            "median",
            median(|f| f.0),
            median(|f| f.1),
            median(|f| f.2)
        );
    }
}

async fn one_trial(signal: &str) -> Result<Figures, String> {
    let client = http();
    let http = &client;
    let dir = temp_dir("failover-");
    let cluster: Vec<String> = (0..3)
        .map(|_| format!("http://127.0.0.1:{}", free_port()))
        .collect();
    let mut nodes: Vec<Node> = (1..=3u64)
        .map(|id| {
            let data = dir.path().join(format!("n{id}"));
            std::fs::create_dir_all(&data).expect("a data dir");
            Node::start(id, &cluster, &data, &[])
        })
        .collect();
    all_ready(http, &mut nodes).await?;
    let leader = leader_of(http, &nodes[0], 0, Instant::now()).await;
    let put = |node: &Node, value: &'static str| {
        http.put(node.url("k"))
            .body(value)
            .timeout(Duration::from_secs(5))
            .send()
    };
    let answered =
        |r: Result<reqwest::Response, reqwest::Error>| r.is_ok_and(|r| r.status().is_success());
    assert!(
        answered(put(&nodes[leader as usize - 1], "before").await),
        "the first PUT failed"
    );
    let survivor = &nodes[leader as usize % 3];

    let pid = nodes[leader as usize - 1].pid();
    let sig = if signal == "kill" { "-KILL" } else { "-TERM" };
    let stopped = Instant::now();
    let status = std::process::Command::new("kill")
        .args([sig, &pid.to_string()])
        .status()
        .expect("running kill");
    assert!(status.success(), "kill {sig} {pid} failed");

    let first = |get: bool| async move {
        loop {
            let r = if get {
                http.get(survivor.url("k"))
                    .timeout(Duration::from_secs(5))
                    .send()
                    .await
            } else {
                put(survivor, "after").await
            };
            if answered(r) {
                return stopped.elapsed().as_secs_f64();
            }
            assert!(
                stopped.elapsed() < LIMIT,
                "no answer {LIMIT:?} after the stop"
            );
            tokio::time::sleep(Duration::from_millis(5)).await;
        }
    };
    let new_leader = async {
        leader_of(http, survivor, leader, stopped).await;
        stopped.elapsed().as_secs_f64()
    };
    // The stopped leader's process is reaped when `nodes` is dropped.
    Ok(tokio::join!(new_leader, first(true), first(false)))
}

/// Waits until every node answers `/-/ready` (at most 60 s); `Err` if one has exited.
async fn all_ready(http: &reqwest::Client, nodes: &mut [Node]) -> Result<(), String> {
    let deadline = Instant::now() + Duration::from_secs(60);
    loop {
        let mut ready = 0;
        for node in nodes.iter_mut() {
            if let Ok(Some(status)) = node.child.try_wait() {
                return Err(format!("a node exited as it started ({status})"));
            }
            if let Ok(r) = http.get(node.url("-/ready")).send().await
                && r.status() == 200
            {
                ready += 1;
            }
        }
        if ready == nodes.len() {
            return Ok(());
        }
        if Instant::now() > deadline {
            return Err("the cluster was not ready within 60 s".into());
        }
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
}

/// The leader `node`'s `/-/status` names, once it names one other than `not` (0: any).
async fn leader_of(http: &reqwest::Client, node: &Node, not: u64, since: Instant) -> u64 {
    loop {
        if let Ok(r) = http.get(node.url("-/status")).send().await
            && let Ok(text) = r.text().await
            && let Ok(status) = serde_json::from_str::<serde_json::Value>(&text)
            && let Some(leader) = status["leader"].as_u64()
            && leader != 0
            && leader != not
        {
            return leader;
        }
        assert!(
            since.elapsed() < LIMIT,
            "no new leader {LIMIT:?} after the stop"
        );
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
}
