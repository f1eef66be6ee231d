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
