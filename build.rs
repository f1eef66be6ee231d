//! The build's identity: the git commit it was built from (short hash) and that commit's date,
//! for `--version`, the start-up log, `/-/status` and `/-/metrics` (src/version.rs). Mid-way
//! through a rolling upgrade an operator must know which nodes still run the old build, and
//! `0.1.0` is every build's version (found by a user's campaign).
//!
//! Without git, or outside a checkout (a source tarball), the build is "unknown commit". The
//! script reruns only when HEAD moves (a commit, a checkout; with reflogs off, also when any
//! branch moves): a change to a source file leaves it alone, so an incremental build compiles
//! no more than it would without it. A tree with
//! uncommitted changes shows the commit it started from. The commit is the first 12 hex
//! digits of its hash on every machine.

use std::process::Command;

fn main() {
    println!("cargo:rerun-if-changed=build.rs");
    // Unpacked inside another project's checkout, a source tarball is not that commit.
    let manifest = std::env::var("CARGO_MANIFEST_DIR").ok();
    let top = git(&["rev-parse", "--show-toplevel"]);
    let ours = match (manifest, top) {
        (Some(manifest), Some(top)) => same_folder(&manifest, &top),
        _ => false,
    };
    if !ours {
        identify(None);
        return;
    }
    // The full hash cut to a fixed length: `%h` follows the clone's size and `core.abbrev`, so
    // one commit would read differently from machine to machine (review 116 N6).
    let known = git(&["log", "-1", "--format=%H %cd", "--date=short"]).and_then(|line| {
        let (commit, date) = line.split_once(' ')?;
        Some((commit.get(..SHORT)?.to_string(), date.to_string()))
    });
    identify(known);
    for path in moved_by_a_commit() {
        println!("cargo:rerun-if-changed={path}");
    }
}

/// Hex digits of the commit's hash the build names.
const SHORT: usize = 12;

/// Files and folders of which at least one changes on every commit, checkout, reset or amend,
/// whether the branch's ref is a loose file, packed, or HEAD is detached (review 116 M1).
/// The branch's own ref file is not enough: once `git gc` packs it, it does not exist, and the
/// next commit writes it anew without anything watched changing. Only paths that exist: a
/// missing one would rerun the script on every build.
fn moved_by_a_commit() -> Vec<String> {
    let path = |name: &str| git(&["rev-parse", "--git-path", name]);
    let exists = |p: &String| std::path::Path::new(p).exists();
    // HEAD changes on a checkout and on a commit while detached.
    let mut watched: Vec<String> = path("HEAD").into_iter().collect();
    // Git appends to HEAD's reflog on every move of HEAD, also through the branch it names.
    let reflog = path("logs/HEAD").filter(exists);
    let reflog_kept = reflog.is_some();
    watched.extend(reflog);
    if !reflog_kept {
        // Reflogs off: a commit writes the branch's loose ref, and cargo scans a watched
        // folder's entries recursively, so a ref written anew after packing is seen too.
        watched.extend(path("refs/heads"));
    }
    // `git pack-refs` itself; and the reftable format keeps every ref (and reflog) in there.
    watched.extend(path("packed-refs"));
    watched.extend(path("reftable"));
    watched.retain(exists);
    watched
}

/// Hands the commit and its date (`None`: unknown) to the crate's code.
fn identify(known: Option<(String, String)>) {
    let described = match &known {
        Some((commit, date)) => format!("commit {commit}, {date}"),
        None => "unknown commit".to_string(),
    };
    let (commit, date) = known.unwrap_or_else(|| ("unknown".into(), "unknown".into()));
    println!("cargo:rustc-env=RAFTEXAMPLE_COMMIT={commit}");
    println!("cargo:rustc-env=RAFTEXAMPLE_COMMIT_DATE={date}");
    println!("cargo:rustc-env=RAFTEXAMPLE_BUILD={described}");
}

/// What `git args` prints on its first line, run in the package's folder; `None` if git is
/// missing, fails (no checkout), or prints nothing.
fn git(args: &[&str]) -> Option<String> {
    let out = Command::new("git").args(args).output().ok()?;
    let text = String::from_utf8(out.stdout).ok()?;
    let line = text.lines().next()?.trim();
    (out.status.success() && !line.is_empty()).then(|| line.to_string())
}

fn same_folder(a: &str, b: &str) -> bool {
    match (std::fs::canonicalize(a), std::fs::canonicalize(b)) {
        (Ok(a), Ok(b)) => a == b,
        _ => false,
    }
}
