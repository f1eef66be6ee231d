//! `raftexample dump` on a WAL holding a large value: cut to 64 bytes with its length unless
//! `--full-values`, in text and JSON; and quiet when its reader stops reading (`| head`).

mod common;

use std::io::Read;
use std::path::Path;
use std::process::{Command, Output, Stdio};

use common::ProcCluster;

const BIG: usize = 512 * 1024;

fn dump(data_dir: &Path, flags: &[&str]) -> Output {
    Command::new(common::binary())
        .args(["dump", "--id", "1", "--data-dir"])
        .arg(data_dir)
        .args(flags)
        .output()
        .expect("running raftexample dump")
}

fn lines_with(out: &Output, needle: &str) -> Vec<String> {
    String::from_utf8_lossy(&out.stdout)
        .lines()
        .filter(|l| l.contains(needle))
        .map(str::to_string)
        .collect()
}

/// A 512 KiB value: one short line with its length by default, whole with `--full-values`;
/// short values are untouched; JSON carries the lengths and says what was cut.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn dump_cuts_long_values_unless_asked() {
    let mut c = ProcCluster::start(1, &[]).await;
    let big = "v".repeat(BIG);
    c.put_ok(1, "big", &big).await;
    c.put_ok(1, "small", "bar").await;
    c.stop(1).await;
    let data_dir = c.data_dir(1);

    let out = dump(&data_dir, &[]);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let line = lines_with(&out, "\"/big\"").pop().expect("the put of /big");
    let expected = format!("put \"/big\" = \"{}\"... ({BIG} bytes)", "v".repeat(64));
    assert!(line.contains(&expected), "{line}");
    let small = lines_with(&out, "\"/small\"")
        .pop()
        .expect("the put of /small");
    assert!(small.contains("put \"/small\" = \"bar\" ("), "{small}");

    let out = dump(&data_dir, &["--full-values"]);
    assert!(out.status.success());
    let line = lines_with(&out, "\"/big\"").pop().expect("the put of /big");
    assert!(line.contains(&format!("= \"{big}\" (")), "the value whole");

    let out = dump(&data_dir, &["--json"]);
    assert!(out.status.success());
    let record: serde_json::Value =
        serde_json::from_str(&lines_with(&out, "\"/big\"").pop().expect("/big")).expect("JSON");
    assert_eq!(record["value"], "v".repeat(64));
    assert_eq!(record["value_bytes"], BIG);
    assert_eq!(record["key_bytes"], 4);
    assert_eq!(record["cut"], true);
    let record: serde_json::Value =
        serde_json::from_str(&lines_with(&out, "\"/small\"").pop().expect("/small")).expect("JSON");
    assert_eq!(record["value"], "bar");
    assert!(record.get("cut").is_none(), "{record}");

    let out = dump(&data_dir, &["--json", "--full-values"]);
    let record: serde_json::Value =
        serde_json::from_str(&lines_with(&out, "\"/big\"").pop().expect("/big")).expect("JSON");
    assert_eq!(record["value"].as_str().map(str::len), Some(BIG));
}

/// `dump | head`: the reader closes the pipe after a few bytes; dump exits 0 and says nothing,
/// where it used to print `Broken pipe (os error 32)` and fail.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn dump_is_quiet_when_its_reader_stops() {
    let mut c = ProcCluster::start(1, &[]).await;
    c.put_ok(1, "big", &"v".repeat(BIG)).await;
    c.stop(1).await;

    // Far more output than a pipe holds, so dump is still writing when the pipe closes.
    let mut child = Command::new(common::binary())
        .args(["dump", "--id", "1", "--full-values", "--data-dir"])
        .arg(c.data_dir(1))
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("running raftexample dump");
    let mut stdout = child.stdout.take().expect("piped");
    let mut first = [0u8; 100];
    stdout.read_exact(&mut first).expect("the first bytes");
    drop(stdout);
    let out = child.wait_with_output().expect("dump's exit");
    assert!(out.status.success(), "dump exited with {}", out.status);
    assert_eq!(
        String::from_utf8_lossy(&out.stderr),
        "",
        "dump said something"
    );
}

/// Each node process registers its session once: `dump` of a three-node cluster, one of whose
/// nodes was restarted, shows one registration per process (four), each nonce once. Every
/// start but a `--join` wrote two identical registrations at consecutive indexes (a new-user
/// campaign saw them in `dump`): a follower proposed its registration as soon as it heard of a
/// leader, then took that leader for a new one and proposed it again. A leader change before
/// the registration commits would rightly send it again, so a run with one does not count; and
/// so would a registration unapplied for 40 ticks (a loaded machine): ticks of 250 ms make
/// that 10 s.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn each_node_process_registers_its_session_once() {
    for _attempt in 0..3 {
        let mut c = ProcCluster::start(3, &["--tick-ms", "250"]).await;
        let leader = c.wait_leader().await;
        let follower = if leader == 1 { 2 } else { 1 };
        for id in 1..=3 {
            c.put_ok(id, &format!("k{id}"), "v").await;
        }
        c.stop(follower).await;
        c.spawn(follower, &[]);
        c.put_ok(follower, "again", "v").await;
        for id in 1..=3 {
            c.wait_value(id, "again", "v", true).await;
        }
        let data_dir = c.data_dir(1);
        for id in 1..=3 {
            c.stop(id).await;
        }
        let out = dump(&data_dir, &["--json"]);
        assert!(
            out.status.success(),
            "{}",
            String::from_utf8_lossy(&out.stderr)
        );
        let entries: Vec<serde_json::Value> = String::from_utf8_lossy(&out.stdout)
            .lines()
            .map(|l| serde_json::from_str(l).expect("a JSON line"))
            .filter(|v: &serde_json::Value| v["type"] == "entry")
            .collect();
        let terms: std::collections::BTreeSet<u64> = entries
            .iter()
            .filter(|e| e["op"] == "register" || e["op"] == "put")
            .filter_map(|e| e["term"].as_u64())
            .collect();
        if terms.len() > 1 {
            // A second leader: a registration in flight is rightly proposed again.
            continue;
        }
        let mut nonces: std::collections::BTreeMap<u64, Vec<u64>> = Default::default();
        for e in entries.iter().filter(|e| e["op"] == "register") {
            let nonce = e["nonce"].as_u64().expect("a nonce");
            nonces
                .entry(nonce)
                .or_default()
                .push(e["index"].as_u64().expect("an index"));
        }
        assert_eq!(nonces.len(), 4, "one registration per process: {nonces:?}");
        for (nonce, at) in &nonces {
            assert_eq!(at.len(), 1, "nonce {nonce:x} registered at indexes {at:?}");
        }
        return;
    }
    panic!("every try saw a second leader");
}
