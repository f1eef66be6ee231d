//! Which build a node runs: the git commit it was built from and that commit's date, taken by
//! `build.rs` at build time ("unknown" where it was built without git or outside a checkout).
//! Shown by `--version`, the "raftexample is serving" log line, `/-/status` (`build`) and
//! `/-/metrics` (`raftexample_build_info`): during a rolling upgrade an operator must tell the
//! nodes that still run the old build from the others, and every build is version 0.1.0.

use serde::Serialize;

/// This build, as `--version` says it after the crate's version: `commit f1781de0a3b2, 2026-12-07`,
/// or `unknown commit`.
pub const DESCRIBED: &str = env!("RAFTEXAMPLE_BUILD");

/// `--version`'s text after the program's name.
pub const VERSION: &str = concat!(
    env!("CARGO_PKG_VERSION"),
    " (",
    env!("RAFTEXAMPLE_BUILD"),
    ")"
);

/// The build in `/-/status` and in the `raftexample_build_info` metric's labels.
#[derive(Debug, Clone, Copy, Serialize, PartialEq, Eq)]
pub struct Build {
    /// The commit's hash cut to its first 12 hex digits, or `unknown`.
    pub commit: &'static str,
    /// The commit's date (`YYYY-MM-DD`, the committer's), or `unknown`.
    pub date: &'static str,
}

/// This build.
pub const BUILD: Build = Build {
    commit: env!("RAFTEXAMPLE_COMMIT"),
    date: env!("RAFTEXAMPLE_COMMIT_DATE"),
};

#[cfg(test)]
mod tests {
    use super::*;

    /// The version names the commit and its date, both as the checkout says, or says the
    /// commit is unknown (a build without git), never a bare "0.1.0" (a user's campaign could
    /// not tell builds apart). The commit is 12 hex digits on every machine (review 116 N6).
    /// Built from this checkout with git at hand, it is a commit of this repository that HEAD
    /// has (HEAD itself or an ancestor): not HEAD as the test runs, for someone may have
    /// committed since the build (review 116 M2).
    #[test]
    fn the_version_names_the_commit_and_its_date() {
        assert!(VERSION.starts_with(env!("CARGO_PKG_VERSION")), "{VERSION}");
        if BUILD.commit == "unknown" {
            assert_eq!(DESCRIBED, "unknown commit");
            assert_eq!(BUILD.date, "unknown");
            return;
        }
        assert_eq!(
            DESCRIBED,
            format!("commit {}, {}", BUILD.commit, BUILD.date)
        );
        assert_eq!(BUILD.commit.len(), 12, "{BUILD:?}");
        assert!(
            BUILD.commit.bytes().all(|b| b.is_ascii_hexdigit()),
            "{BUILD:?}"
        );
        let date: Vec<&str> = BUILD.date.split('-').collect();
        assert!(
            date.len() == 3
                && [4, 2, 2].iter().zip(&date).all(|(n, p)| p.len() == *n)
                && date.iter().all(|p| p.bytes().all(|b| b.is_ascii_digit())),
            "{BUILD:?}"
        );
        let git = |args: &[&str]| {
            std::process::Command::new("git")
                .args(args)
                .current_dir(env!("CARGO_MANIFEST_DIR"))
                .output()
        };
        // Git missing, or refusing this checkout (`safe.directory`), says nothing of the
        // build: the test says it skipped, rather than pass as if it had looked.
        match git(&["rev-parse", "--verify", "-q", "HEAD"]) {
            Ok(out) if out.status.success() => {}
            other => {
                eprintln!("skipped: {BUILD:?} not checked against the checkout: {other:?}");
                return;
            }
        }
        let object = format!("{}^{{commit}}", BUILD.commit);
        let known = git(&["cat-file", "-e", &object]).expect("git ran a moment ago");
        assert!(
            known.status.success(),
            "{BUILD:?} is no commit of this repository"
        );
        let had = git(&["merge-base", "--is-ancestor", BUILD.commit, "HEAD"]).expect("git ran");
        assert!(
            had.status.success(),
            "HEAD does not have the commit {BUILD:?} names"
        );
    }
}
