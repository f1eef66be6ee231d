//! The README's walk-through, run as written: every `sh` block from the top of README.md down
//! to "## The REST API", in order, block by block, in one fresh folder, as a reader pasting
//! them would, with `./cluster.sh`. The blocks are read from README.md itself, so the README
//! and this test cannot drift apart.
//!
//! What a reader does beyond pasting, the test does the same way, and no more:
//! - `cargo run --release` (the README's first command) serves until Ctrl-C: it runs in the
//!   background, like the reader's first terminal; the next block waits until its log says
//!   `raftexample is serving`, as the README says to; at the end of the "Single node"
//!   section it gets SIGINT (Ctrl-C) and must exit 0.
//! - The README's test command is this suite: not run from here.
//! - `cargo` is a stand-in that runs the binary under test for `cargo build --release` and
//!   `cargo run --release` (building it again here would take minutes); every other command
//!   runs as it is.
//! - Each block runs with `set -e` (a command that fails fails the test) and `set -x`, whose
//!   trace tells which line printed what. On a `curl` line, the comment is exactly what it
//!   prints; a `curl` line without one must print nothing (a `204`; an error prints a line).
//!
//! The README's ports (12379, 12380, ...) are fixed, so each run gets private network and PID
//! namespaces: two runs at once cannot collide, and whatever a failed run left running dies
//! with its namespace. That needs root, as the fault suite does.

mod common;

use std::fmt::Write as _;
use std::io::{BufRead, BufReader};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, ExitStatus, Stdio};
use std::time::{Duration, Instant};

use tempfile::TempDir;

const README: &str = include_str!("../README.md");
/// The walk-through ends where the reference part of the README begins.
const END_HEADING: &str = "## The REST API";
/// The section after which the README says to stop the single node with Ctrl-C.
const CTRL_C_SECTION: &str = "## Single node";
/// What the single node logs once it serves; the README tells the reader to wait for it.
const SERVING: &str = "raftexample is serving";
/// Long enough for any block on a loaded machine; a block that never returns (a command left
/// in the foreground) fails the test instead of hanging it.
const BLOCK_TIMEOUT: Duration = Duration::from_secs(120);
/// Marks a trace line of `set -x` (PS4), with the line of the block it traces.
const TRACE_MARK: &str = "@@walkthrough line ";

/// One fenced `sh` block of the README.
#[derive(Debug)]
struct Block {
    /// The `##`/`###` heading it is under.
    section: String,
    /// README line of the block's first line (1-based).
    first_line: usize,
    lines: Vec<String>,
}

impl Block {
    fn text(&self) -> String {
        self.lines.join("\n") + "\n"
    }

    fn is(&self, command: &str) -> bool {
        self.lines.len() == 1 && self.lines[0].trim() == command
    }

    /// The README line of line `script_line` of this block's script (whose first line is the
    /// tracing set-up).
    fn readme_line(&self, script_line: usize) -> usize {
        self.first_line + script_line.saturating_sub(2)
    }
}

/// The `sh` blocks before [`END_HEADING`], and the prose of every section.
fn walkthrough_blocks() -> (Vec<Block>, Vec<(String, String)>) {
    let mut blocks = Vec::new();
    let mut sections: Vec<(String, String)> = vec![(String::new(), String::new())];
    let mut open: Option<Block> = None;
    let mut in_other_fence = false;
    for (i, line) in README.lines().enumerate() {
        let trimmed = line.trim_start();
        if let Some(block) = open.as_mut() {
            if trimmed.starts_with("```") {
                blocks.extend(open.take());
            } else {
                block.lines.push(line.to_string());
            }
            continue;
        }
        if trimmed.starts_with("```") {
            if in_other_fence || trimmed != "```sh" {
                in_other_fence = !in_other_fence;
            } else {
                open = Some(Block {
                    section: sections.last().expect("never empty").0.clone(),
                    first_line: i + 2,
                    lines: Vec::new(),
                });
            }
            continue;
        }
        if in_other_fence {
            continue;
        }
        if line.starts_with("## ") || line.starts_with("### ") {
            if line.trim_end() == END_HEADING {
                return (blocks, sections);
            }
            sections.push((line.trim_end().to_string(), String::new()));
        } else {
            let prose = &mut sections.last_mut().expect("never empty").1;
            prose.push_str(line);
            prose.push('\n');
        }
    }
    panic!("README.md has no {END_HEADING:?} heading: where does the walk-through end?");
}

/// The path of system tool `name`, also where a non-login root shell's PATH lacks it.
fn system_tool(name: &str) -> String {
    ["/usr/sbin", "/sbin", "/usr/bin", "/bin", "/usr/local/bin"]
        .iter()
        .map(|dir| format!("{dir}/{name}"))
        .find(|p| Path::new(p).exists())
        .unwrap_or_else(|| name.to_string())
}

/// Private network, PID and mount namespaces that live as long as this value: the walk-through
/// runs inside them, and everything in them dies with them.
struct Namespaces {
    /// `unshare`, which ends its child (the namespaces' init) when it dies.
    holder: Child,
    /// Host PID of the namespaces' init, for `nsenter`.
    init_pid: u32,
}

impl Namespaces {
    fn new() -> Namespaces {
        let mut holder = Command::new(system_tool("unshare"))
            .args(["--net", "--pid", "--mount-proc", "--kill-child", "--"])
            .arg(system_tool("bash"))
            .arg("-c")
            // Loopback up; outgoing connections' ports above the README's (12379 to 52380,
            // inside the kernel's usual ephemeral range: a node's connection to another could
            // otherwise hold the port a node started later listens on); then an init that
            // reaps what its orphans leave behind.
            .arg(format!(
                "{} link set lo up || exit 1; \
                 echo '60000 64999' > /proc/sys/net/ipv4/ip_local_port_range || exit 1; \
                 echo up; while :; do sleep 60 & wait $!; done",
                system_tool("ip")
            ))
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .expect("running unshare (util-linux)");
        let mut up = String::new();
        let read = BufReader::new(holder.stdout.take().expect("piped"))
            .read_line(&mut up)
            .expect("reading unshare's output");
        if read == 0 || up.trim() != "up" {
            let out = holder.wait_with_output().expect("unshare's exit");
            panic!(
                "cannot make private namespaces for the walk-through: {}\n\
                 The walk-through runs the README's commands on the README's own ports \
                 (12379, 12380, ...) inside private network and PID namespaces, so that two \
                 runs cannot collide and nothing outlives the test. That needs root and `ip` \
                 (iproute2): run the suite as root with ./test-everything.sh, which installs \
                 what is missing.",
                String::from_utf8_lossy(&out.stderr).trim()
            );
        }
        let init_pid = child_of(holder.id()).expect("unshare has forked the namespaces' init");
        Namespaces { holder, init_pid }
    }

    /// `bash <script>` inside the namespaces, in `dir`, with `path` first on the PATH; its
    /// output goes to `out` and `err`.
    fn bash(&self, dir: &Path, path: &Path, script: &Path, out: &Path, err: &Path) -> Child {
        let file = |p: &Path| std::fs::File::create(p).expect("creating an output file");
        Command::new(system_tool("nsenter"))
            .arg(format!("--target={}", self.init_pid))
            // --root: entering a mount namespace resets the root, which would leave a
            // chroot the test runs in.
            .args(["--net", "--pid", "--mount", "--root"])
            .arg(format!("--wd={}", dir.display()))
            .arg("--")
            .arg(system_tool("bash"))
            .arg(script)
            .env("PATH", prepend_path(path))
            .stdin(Stdio::null())
            .stdout(file(out))
            .stderr(file(err))
            .spawn()
            .expect("running nsenter (util-linux)")
    }

    /// Runs a short shell command inside the namespaces and returns what it printed.
    fn run(&self, dir: &Path, command: &str) -> String {
        let out = Command::new(system_tool("nsenter"))
            .arg(format!("--target={}", self.init_pid))
            .args(["--net", "--pid", "--mount", "--root"])
            .arg(format!("--wd={}", dir.display()))
            .args(["--", &system_tool("bash"), "-c", command])
            .output()
            .expect("running nsenter (util-linux)");
        assert!(
            out.status.success(),
            "{command}: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        String::from_utf8_lossy(&out.stdout).into_owned()
    }
}

impl Drop for Namespaces {
    fn drop(&mut self) {
        // unshare ignores SIGTERM while it waits for its child; SIGKILL ends it, its child
        // (--kill-child), and with that init every process of the PID namespace.
        let _ = self.holder.kill();
        let _ = self.holder.wait();
    }
}

/// The PID of the one child of process `parent`.
fn child_of(parent: u32) -> Option<u32> {
    let path = format!("/proc/{parent}/task/{parent}/children");
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        let children = std::fs::read_to_string(&path).unwrap_or_default();
        if let Some(pid) = children.split_whitespace().next() {
            return pid.parse().ok();
        }
        if Instant::now() > deadline {
            return None;
        }
        std::thread::sleep(Duration::from_millis(10));
    }
}

fn prepend_path(dir: &Path) -> String {
    let rest = std::env::var("PATH").unwrap_or_default();
    format!("{}:{rest}", dir.display())
}

/// Waits for `child` until `timeout`; `None` if it is still running then.
fn wait_with_timeout(child: &mut Child, timeout: Duration) -> Option<ExitStatus> {
    let deadline = Instant::now() + timeout;
    loop {
        if let Some(status) = child.try_wait().expect("waiting for a child") {
            return Some(status);
        }
        if Instant::now() > deadline {
            return None;
        }
        std::thread::sleep(Duration::from_millis(20));
    }
}

/// The reader's folder: a clone's `cluster.sh` and `Procfile`, and the binary under test
/// where `cargo build --release` puts it.
struct Walkthrough {
    root: TempDir,
    ns: Namespaces,
    /// The `cargo run --release` of the README's first command, while it runs.
    foreground: Option<Child>,
}

impl Walkthrough {
    fn new() -> Walkthrough {
        let root = TempDir::with_prefix("raftexample-walkthrough-").expect("a temp dir");
        let w = Walkthrough {
            root,
            ns: Namespaces::new(),
            foreground: None,
        };
        let repo = Path::new(env!("CARGO_MANIFEST_DIR"));
        let folder = w.folder();
        std::fs::create_dir_all(folder.join("target/release")).expect("creating the folder");
        for file in ["cluster.sh", "Procfile"] {
            std::fs::copy(repo.join(file), folder.join(file)).expect("copying the runner");
        }
        std::os::unix::fs::symlink(common::binary(), folder.join("target/release/raftexample"))
            .expect("linking the binary");
        std::fs::create_dir_all(w.bin()).expect("creating bin/");
        let cargo = w.bin().join("cargo");
        std::fs::write(
            &cargo,
            "#!/usr/bin/env bash\n\
             # The walk-through test's cargo: the binary under test is already built.\n\
             case \"$1 $2\" in\n\
             'build --release') exit 0 ;;\n\
             'run --release') shift 2; [ \"${1:-}\" = -- ] && shift; \
             exec ./target/release/raftexample \"$@\" ;;\n\
             esac\n\
             echo \"the walk-through test's cargo runs only 'build --release' and \
             'run --release', not: cargo $*\" >&2\n\
             exit 2\n",
        )
        .expect("writing the cargo stand-in");
        use std::os::unix::fs::PermissionsExt;
        std::fs::set_permissions(&cargo, std::fs::Permissions::from_mode(0o755))
            .expect("making the stand-in executable");
        w
    }

    fn folder(&self) -> PathBuf {
        self.root.path().join("raftexample")
    }

    fn bin(&self) -> PathBuf {
        self.root.path().join("bin")
    }

    /// Writes block `n` as a script: a line of tracing set-up, then the block as written.
    fn script(&self, n: usize, block: &Block) -> PathBuf {
        let path = self.root.path().join(format!("block-{n}.sh"));
        let setup = format!("BASH_XTRACEFD=1; PS4=$'\\n{TRACE_MARK}${{LINENO}}@@ '; set -ex\n");
        std::fs::write(&path, setup + &block.text()).expect("writing a block");
        path
    }

    /// Starts the README's first command in the background, as the reader's first terminal.
    fn start_foreground(&mut self, n: usize, block: &Block) {
        let script = self.script(n, block);
        let log = self.root.path().join("terminal-1.log");
        let child = self.ns.bash(
            &self.folder(),
            &self.bin(),
            &script,
            &self.root.path().join("terminal-1.out"),
            &log,
        );
        self.foreground = Some(child);
        let deadline = Instant::now() + Duration::from_secs(60);
        while !std::fs::read_to_string(&log)
            .unwrap_or_default()
            .contains(SERVING)
        {
            if let Some(status) = self
                .foreground
                .as_mut()
                .and_then(|c| c.try_wait().expect("polling the single node"))
            {
                panic!(
                    "`{}` exited ({status}) before it logged {SERVING:?}:\n{}",
                    block.text().trim(),
                    std::fs::read_to_string(&log).unwrap_or_default()
                );
            }
            assert!(
                Instant::now() < deadline,
                "the single node did not log {SERVING:?} within 60 s:\n{}",
                std::fs::read_to_string(&log).unwrap_or_default()
            );
            std::thread::sleep(Duration::from_millis(20));
        }
    }

    /// Ctrl-C for the single node: SIGINT, then it must exit 0.
    fn interrupt_foreground(&mut self) {
        let mut child = self.foreground.take().expect("the single node runs");
        self.ns.run(
            &self.folder(),
            "for p in /proc/[0-9]*; do \
               [ \"$(cat $p/comm 2>/dev/null)\" = raftexample ] && kill -INT ${p#/proc/}; \
             done; true",
        );
        let status = wait_with_timeout(&mut child, Duration::from_secs(30))
            .expect("the single node did not exit within 30 s of Ctrl-C");
        assert!(
            status.success(),
            "the single node exited with {status} after Ctrl-C:\n{}",
            std::fs::read_to_string(self.root.path().join("terminal-1.log")).unwrap_or_default()
        );
    }

    /// Runs block `n` as written and checks every line of it.
    fn run_block(&self, n: usize, block: &Block) {
        let script = self.script(n, block);
        let out = self.root.path().join(format!("block-{n}.out"));
        let err = self.root.path().join(format!("block-{n}.err"));
        let mut child = self
            .ns
            .bash(&self.folder(), &self.bin(), &script, &out, &err);
        let status = wait_with_timeout(&mut child, BLOCK_TIMEOUT);
        if status.is_none() {
            let _ = child.kill();
            let _ = child.wait();
        }
        let output = std::fs::read_to_string(&out).unwrap_or_default();
        let traced = parse_trace(&output);
        let context = || self.context(block, &traced, &err);
        let Some(status) = status else {
            panic!(
                "the block did not finish within {BLOCK_TIMEOUT:?}: does a command stay in the \
                 foreground?\n{}",
                context()
            );
        };
        for command in commands(block) {
            let at = block.readme_line(command.line);
            let outputs: Vec<&str> = traced
                .iter()
                .filter(|t| t.line == command.line)
                .map(|t| t.output.as_str())
                .collect();
            if outputs.is_empty() {
                panic!(
                    "README.md:{at}: `{}` never ran (the block stopped before it: {status})\n{}",
                    command.text,
                    context()
                );
            }
            let printed = outputs.join("\n");
            let printed = printed.trim();
            match command.expected.as_deref() {
                Some("") => assert!(
                    printed.is_empty(),
                    "README.md:{at}: `{}` printed {printed:?}; the README expects nothing \
                     (204)\n{}",
                    command.text,
                    context()
                ),
                Some(expected) => assert!(
                    printed == expected,
                    "README.md:{at}: `{}` printed {printed:?}; the README says {expected:?}\n{}",
                    command.text,
                    context()
                ),
                None => {}
            }
        }
        assert!(
            status.success(),
            "the block exited with {status}\n{}",
            context()
        );
    }

    /// What to show when a block fails: the block, its trace and output, the nodes' logs.
    fn context(&self, block: &Block, traced: &[Traced], err: &Path) -> String {
        let mut s = format!(
            "---- README.md:{} ({}) ----\n{}",
            block.first_line,
            block.section,
            block.text()
        );
        s.push_str("---- what each line printed ----\n");
        for t in traced {
            let at = block.readme_line(t.line);
            let _ = writeln!(s, "README.md:{at}: + {}\n{}", t.command, t.output);
        }
        let _ = writeln!(
            s,
            "---- stderr ----\n{}",
            std::fs::read_to_string(err).unwrap_or_default()
        );
        let mut logs: Vec<PathBuf> = std::fs::read_dir(self.folder().join(".cluster"))
            .into_iter()
            .flatten()
            .flatten()
            .map(|e| e.path())
            .filter(|p| p.extension().is_some_and(|e| e == "log"))
            .collect();
        logs.push(self.root.path().join("terminal-1.log"));
        logs.sort();
        for log in logs {
            let text = std::fs::read_to_string(&log).unwrap_or_default();
            let lines: Vec<&str> = text.lines().collect();
            let _ = writeln!(s, "---- end of {} ----", log.display());
            for line in &lines[lines.len().saturating_sub(25)..] {
                let _ = writeln!(s, "{line}");
            }
        }
        s
    }
}

/// A command line of a block, and what the README says it prints.
struct Expected {
    /// Line within the block (1-based), as `$LINENO` counts it after the set-up line.
    line: usize,
    text: String,
    /// For a `curl` line: its comment, or nothing at all.
    expected: Option<String>,
}

/// The command lines of a block (a `\`-continued command counts as its first line).
fn commands(block: &Block) -> Vec<Expected> {
    let mut out = Vec::new();
    let mut continued = false;
    for (i, line) in block.lines.iter().enumerate() {
        let starts_here = !continued;
        continued = line.trim_end().ends_with('\\');
        let trimmed = line.trim();
        if !starts_here || trimmed.is_empty() || trimmed.starts_with('#') {
            continue;
        }
        let (command, comment) = match trimmed.find(" #") {
            Some(at) => (trimmed[..at].trim(), Some(trimmed[at + 2..].trim())),
            None => (trimmed, None),
        };
        let expected = command
            .starts_with("curl ")
            .then(|| comment.unwrap_or("").to_string());
        out.push(Expected {
            // The set-up line comes first in the script.
            line: i + 2,
            text: command.to_string(),
            expected,
        });
    }
    out
}

/// One command the shell ran, and what it printed.
struct Traced {
    line: usize,
    command: String,
    output: String,
}

/// Splits `set -x` output (trace lines marked by [`TRACE_MARK`], on stdout like the commands'
/// own output) into the commands and what each printed.
fn parse_trace(output: &str) -> Vec<Traced> {
    let mut traced = Vec::new();
    let mut rest = output;
    while let Some(at) = rest.find(TRACE_MARK) {
        if let Some(last) = traced.last_mut() {
            let last: &mut Traced = last;
            last.output = rest[..at].trim_end_matches('\n').to_string();
        }
        rest = &rest[at + TRACE_MARK.len()..];
        let (head, tail) = rest.split_once('\n').unwrap_or((rest, ""));
        let (line, command) = head.split_once("@@ ").unwrap_or((head, ""));
        traced.push(Traced {
            line: line.parse().unwrap_or(0),
            command: command.to_string(),
            output: String::new(),
        });
        rest = tail;
    }
    if let Some(last) = traced.last_mut() {
        last.output = rest.trim_end_matches('\n').to_string();
    }
    traced
}

/// The README, top to bottom, as a reader pastes it; see the module doc.
#[test]
fn the_readme_walkthrough_works_as_written() {
    let (blocks, sections) = walkthrough_blocks();
    assert!(
        blocks.iter().any(|b| b.is("cargo run --release")),
        "the README's first command should be `cargo run --release`: {blocks:#?}"
    );
    let ctrl_c_prose = sections
        .iter()
        .find(|(heading, _)| heading == CTRL_C_SECTION)
        .map(|(_, prose)| prose.as_str())
        .unwrap_or_else(|| panic!("README.md has no {CTRL_C_SECTION:?} section"));
    assert!(
        ctrl_c_prose.contains("Ctrl-C") && ctrl_c_prose.contains(SERVING),
        "the {CTRL_C_SECTION:?} section should tell the reader to wait for {SERVING:?} and \
         to stop the node with Ctrl-C, as this test does"
    );
    assert!(
        Path::new(&system_tool("curl")).exists(),
        "the walk-through needs curl (./test-everything.sh installs it)"
    );

    let mut w = Walkthrough::new();
    let mut ran = 0;
    let mut in_ctrl_c_section = false;
    for (n, block) in blocks.iter().enumerate() {
        if block.section == CTRL_C_SECTION {
            in_ctrl_c_section = true;
        } else if in_ctrl_c_section && w.foreground.is_some() {
            w.interrupt_foreground();
        }
        if block.is("cargo run --release") {
            w.start_foreground(n, block);
        } else if block.is("./test-everything.sh") {
            // The README's test command: this suite.
        } else {
            w.run_block(n, block);
            ran += 1;
        }
    }
    assert!(
        w.foreground.is_none(),
        "the single node still runs at the end of the walk-through"
    );
    assert!(ran >= 5, "only {ran} blocks ran: {blocks:#?}");

    // The README's last command stopped everything it started.
    let left = w.ns.run(
        &w.folder(),
        "for p in /proc/[0-9]*; do cat $p/comm 2>/dev/null; done",
    );
    assert!(
        !left.lines().any(|c| c == "raftexample"),
        "nodes still run after the walk-through's last command:\n{left}"
    );
}
