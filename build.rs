//! The build's identity: the git commit it was built from (short hash) and that commit's date,
//! for `--version`, the start-up log, `/-/status` and `/-/metrics` (src/version.rs). Mid-way
//! through a rolling upgrade an operator must know which nodes still run the old build, and
//! `0.1.0` is every build's version (found by a user's campaign).
//!
//! Without git, or outside a checkout (a source tarball), the build is "unknown commit". The
//! script reruns only when HEAD moves (a commit, a checkout): a change to a source file leaves
//! it alone, so an incremental build compiles no more than it would without it. A tree with
//! uncommitted changes shows the commit it started from.

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
    let known = git(&["log", "-1", "--format=%h %cd", "--date=short"]).and_then(|line| {
        let (commit, date) = line.split_once(' ')?;
        Some((commit.to_string(), date.to_string()))
    });
    identify(known);
    // HEAD names the branch; the branch's ref file (or packed-refs, where `git gc` moves it)
    // moves with each commit. A file that does not exist would rerun the script every build.
    let mut watched = vec![git(&["rev-parse", "--git-path", "HEAD"])];
    if let Some(branch) = git(&["symbolic-ref", "-q", "HEAD"]) {
        watched.push(git(&["rev-parse", "--git-path", &branch]));
    }
    watched.push(git(&["rev-parse", "--git-path", "packed-refs"]));
    for path in watched.into_iter().flatten() {
        if std::path::Path::new(&path).exists() {
            println!("cargo:rerun-if-changed={path}");
        }
    }
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
