//! The `raftexample` binary: parse flags, set up logging, run a node until it stops.
//! Exit status: 0 when stopped by a signal or removed from the cluster (as the original),
//! 1 when it cannot start or a storage failure stops it, 130 or 143 when a second SIGINT or
//! SIGTERM cut its stop short (as a shell reports a process those signals killed).

use std::io::IsTerminal;
use std::process::ExitCode;
use std::time::Duration;

use raftexample::config::{Command, Config};
use raftexample::{Exit, StartError, start_unless_stopped};
use tokio_util::sync::CancellationToken;
use tracing_subscriber::EnvFilter;

/// mimalloc rather than glibc's malloc: every HTTP request and raft message allocates a
/// little, and with mimalloc a three-node cluster served 12-16% more PUTs and GETs per second
/// on the development machine (measured back to back, same load). mimalloc keeps freed memory
/// for reuse, so the node avoids large temporary buffers: its snapshots stream to and from
/// their files, also on their way to and from a peer.
#[global_allocator]
static ALLOCATOR: mimalloc::MiMalloc = mimalloc::MiMalloc;

/// A line on stderr for the person running the node, dropped if nobody reads it any more
/// (`eprintln!` panics on a broken pipe: `raftexample ... 2>&1 | head -1`).
fn say(line: std::fmt::Arguments<'_>) {
    use std::io::Write;
    let _ = writeln!(std::io::stderr(), "{line}");
}

fn main() -> ExitCode {
    let config = match Config::from_args(std::env::args()) {
        Ok(config) => config,
        Err(err) => err.exit(),
    };
    // Quiet by default: start-up, leader changes, membership changes and problems.
    // RUST_LOG=debug (or info,raftexample::ready=trace, ...) shows more.
    let filter = EnvFilter::try_from_default_env()
        .unwrap_or_else(|_| EnvFilter::new("warn,raftexample=info"));
    tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr)
        .with_ansi(colour_on_stderr())
        // A log line that cannot be written (its reader went away: `... 2>&1 | head`) is
        // dropped. By default the subscriber would say so on stderr, the same broken pipe,
        // and that write panicked whichever thread was logging, the raft thread included.
        .log_internal_errors(false)
        .init();

    if let Some(Command::Dump {
        json, full_values, ..
    }) = &config.command
    {
        let options = raftexample::dump::Options {
            json: *json,
            full_values: *full_values,
        };
        let mut out = std::io::BufWriter::new(std::io::stdout().lock());
        return match raftexample::dump::run(&config, &options, &mut out) {
            Ok(()) => ExitCode::SUCCESS,
            // The reader has all it wanted (`dump | head`): nothing went wrong.
            Err(raftexample::dump::DumpError::Output(err))
                if err.kind() == std::io::ErrorKind::BrokenPipe =>
            {
                ExitCode::SUCCESS
            }
            Err(err) => {
                say(format_args!("raftexample dump: {err}"));
                ExitCode::FAILURE
            }
        };
    }

    if let Some(Command::Certs { out, nodes, hosts }) = &config.command {
        return match raftexample::certs::run(out, *nodes, hosts, &mut std::io::stdout().lock()) {
            Ok(()) => ExitCode::SUCCESS,
            Err(err) => {
                say(format_args!("raftexample certs: {err}"));
                ExitCode::FAILURE
            }
        };
    }

    raise_open_files_limit();
    let runtime = match tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
    {
        Ok(rt) => rt,
        Err(err) => {
            say(format_args!(
                "raftexample: cannot start the async runtime: {err}"
            ));
            return ExitCode::FAILURE;
        }
    };
    let code = runtime.block_on(serve(config));
    // Dropping a runtime waits for every blocking task it started, however long it takes: a
    // follower's check of a big snapshot still arriving (minutes per GiB on a slow disk) held
    // the exit that long (found by a review). The node has stopped and its state is durable
    // by now; a task cut off here is no different from one a crash cuts off.
    runtime.shutdown_timeout(Duration::from_millis(100));
    code
}

async fn serve(config: Config) -> ExitCode {
    // Listening before the node serves: a SIGTERM sent as soon as it answers (a script that
    // waits for /health, then stops it) must stop it gracefully, not kill it.
    // A signal during the start stops the node as soon as it has started, or at once while
    // it waits for a member's answer (which may take as long as that member's start).
    let stop_asked = CancellationToken::new();
    listen_for_signals(stop_asked.clone());
    let running = match start_unless_stopped(config.clone(), stop_asked.clone()).await {
        Ok(running) => running,
        Err(StartError::Stopped(reason)) => {
            say(format_args!("raftexample: {reason}"));
            return ExitCode::SUCCESS;
        }
        Err(err) => {
            // Printed, not logged: a refusal must show whatever RUST_LOG says, and only once.
            say(format_args!("raftexample: cannot start: {err}"));
            if let Some(remedy) = err.remedy(&config) {
                say(format_args!("raftexample: {remedy}"));
            }
            return ExitCode::FAILURE;
        }
    };
    let token = running.shutdown_token();
    tokio::spawn(async move {
        stop_asked.cancelled().await;
        token.cancel();
    });
    match running.wait().await {
        Exit::Shutdown => ExitCode::SUCCESS,
        Exit::Removed => {
            tracing::info!("removed from the cluster; exiting");
            ExitCode::SUCCESS
        }
        Exit::Fatal(reason) => {
            say(format_args!("raftexample: stopped: {reason}"));
            ExitCode::FAILURE
        }
    }
}

/// Raises the soft limit of open files to the hard one, as Go does at start (since 1.19), so
/// the original's users get the same headroom: every client connection holds a descriptor,
/// and with the common soft limit of 1,024 a busy node ran out, and then could not open a WAL
/// segment or a snapshot file either (found by a review). Left as it is if it cannot be
/// raised (an unlimited hard limit is more than Linux lets a process have).
fn raise_open_files_limit() {
    use rustix::process::{Resource, Rlimit, getrlimit, setrlimit};
    let limit = getrlimit(Resource::Nofile);
    if let (Some(current), Some(maximum)) = (limit.current, limit.maximum)
        && current < maximum
    {
        let raised = Rlimit {
            current: Some(maximum),
            maximum: Some(maximum),
        };
        if let Err(err) = setrlimit(Resource::Nofile, raised) {
            tracing::debug!(%err, current, maximum, "cannot raise the open-files limit");
        }
    }
}

/// Colour codes only for a person at a terminal: in a log file (`./cluster.sh`, goreman,
/// systemd) they are noise. `NO_COLOR` (https://no-color.org) turns them off there too.
fn colour_on_stderr() -> bool {
    std::io::stderr().is_terminal() && std::env::var_os("NO_COLOR").is_none_or(|v| v.is_empty())
}

/// The first stop signal asks for a graceful stop; a second one ends the process at once,
/// for a person whose stop hangs (a disk that stopped answering) and who presses Ctrl-C
/// again: tokio keeps the signals' handlers, so without this nothing would happen.
///
/// Nothing here waits long on stderr ([`SAY_AT_EXIT`] at most), nor on the node's threads: a
/// stderr nobody reads (a terminal stopped with Ctrl-S, a pager that does not read) blocks
/// every write to it, and with it any worker thread that logs, and a second signal must
/// still end the process (found by two reviews: the first signal's log line held this task,
/// so the second was never heard; then workers blocked in log lines left no thread to run
/// it). So it runs on a thread of its own (see [`listen_for_signals`]) and says its lines
/// from others.
async fn on_signals(mut signals: StopSignals, stop_asked: CancellationToken) {
    signals.next().await;
    // Said before the stop is asked, so that it comes before the stop's own lines (asked
    // first, the node's "stopping: answering what is in flight" came first: a newcomer's
    // campaign); waited for no longer than a line at exit is, so that a stderr nobody reads
    // holds the stop up that long at most.
    let said = off_thread(|| {
        tracing::info!("signal received; shutting down (a second one stops at once)");
    });
    if let Some(said) = said {
        let _ = tokio::time::timeout(SAY_AT_EXIT, said).await;
    }
    stop_asked.cancel();
    let code = signals.next().await;
    let said = off_thread(|| {
        say(format_args!(
            "raftexample: a second signal: exiting without finishing the stop"
        ));
    });
    if let Some(said) = said {
        let _ = tokio::time::timeout(SAY_AT_EXIT, said).await;
    }
    // What the node has acknowledged is durable; ending here is no worse than a crash.
    std::process::exit(code);
}

/// Listens for stop signals from now on, on a thread of its own with a runtime of its own
/// ([`on_signals`]), or on the node's runtime if that thread cannot be made.
fn listen_for_signals(stop_asked: CancellationToken) {
    let (listening, started) = std::sync::mpsc::channel();
    let thread = std::thread::Builder::new().name("signals".into()).spawn({
        let stop_asked = stop_asked.clone();
        move || {
            let runtime = tokio::runtime::Builder::new_current_thread()
                .enable_all()
                .build();
            match runtime {
                Ok(runtime) => runtime.block_on(async {
                    let signals = StopSignals::listen();
                    let _ = listening.send(true);
                    on_signals(signals, stop_asked).await;
                }),
                Err(_) => {
                    let _ = listening.send(false);
                }
            }
        }
    });
    // Listening before the node starts: a signal sent the moment it answers must be heard.
    let on_its_own = thread.is_ok() && started.recv().unwrap_or(false);
    if !on_its_own {
        tokio::spawn(on_signals(StopSignals::listen(), stop_asked));
    }
}

/// Runs `f` on a thread of its own, if one can be made; the receiver hears when it is done.
fn off_thread(f: impl FnOnce() + Send + 'static) -> Option<tokio::sync::oneshot::Receiver<()>> {
    let (done, finished) = tokio::sync::oneshot::channel();
    std::thread::Builder::new()
        .spawn(move || {
            f();
            let _ = done.send(());
        })
        .ok()
        .map(|_| finished)
}

/// How long a signal's line may take to reach stderr before what the signal asks is done
/// without it.
const SAY_AT_EXIT: Duration = Duration::from_millis(200);

/// SIGINT and SIGTERM, listened for from the moment they are created (on Unix; elsewhere
/// Ctrl-C, listened for while awaited).
struct StopSignals {
    #[cfg(unix)]
    unix: Option<(tokio::signal::unix::Signal, tokio::signal::unix::Signal)>,
}

impl StopSignals {
    fn listen() -> StopSignals {
        #[cfg(unix)]
        {
            use tokio::signal::unix::{SignalKind, signal};
            let unix = match (
                signal(SignalKind::interrupt()),
                signal(SignalKind::terminate()),
            ) {
                (Ok(int), Ok(term)) => Some((int, term)),
                _ => None,
            };
            StopSignals { unix }
        }
        #[cfg(not(unix))]
        {
            StopSignals {}
        }
    }

    /// The next signal; returns the status a shell gives a process that signal killed.
    async fn next(&mut self) -> i32 {
        #[cfg(unix)]
        if let Some((int, term)) = &mut self.unix {
            return tokio::select! {
                _ = int.recv() => 128 + 2,
                _ = term.recv() => 128 + 15,
            };
        }
        let _ = tokio::signal::ctrl_c().await;
        128 + 2
    }
}
