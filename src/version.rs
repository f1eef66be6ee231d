//! Which build a node runs: the git commit it was built from and that commit's date, taken by
//! `build.rs` at build time ("unknown" where it was built without git or outside a checkout).
//! Shown by `--version`, the "raftexample is serving" log line, `/-/status` (`build`) and
//! `/-/metrics` (`raftexample_build_info`): during a rolling upgrade an operator must tell the
//! nodes that still run the old build from the others, and every build is version 0.1.0.

use serde::Serialize;

/// This build, as `--version` says it after the crate's version: `commit abc1234, 2026-12-07`,
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
    /// The commit's short hash, or `unknown`.
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
    /// not tell builds apart). Built from this checkout with git at hand, it names HEAD.
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
        assert!(BUILD.commit.len() >= 7, "{BUILD:?}");
        assert!(
            BUILD.commit.bytes().all(|b| b.is_ascii_hexdigit()),
            "{BUILD:?}"
        );
        let date: Vec<&str> = BUILD.date.split('-').collect();
        assert!(
            date.len() == 3 && date.iter().all(|p| p.bytes().all(|b| b.is_ascii_digit())),
            "{BUILD:?}"
        );
        let head = std::process::Command::new("git")
            .args(["rev-parse", "HEAD"])
            .current_dir(env!("CARGO_MANIFEST_DIR"))
            .output();
        if let Some(head) = head.ok().filter(|out| out.status.success()) {
            let head = String::from_utf8_lossy(&head.stdout);
            assert!(head.starts_with(BUILD.commit), "{head} built as {BUILD:?}");
        }
    }
}
