//! Command-line flags: the original's four (`--id`, `--cluster`, `--port`, `--join`) with the
//! original's defaults, plus knobs the original kept in package variables. Every extra flag
//! defaults to the original's behaviour, so a Procfile written for etcd's raftexample runs
//! unchanged.

use std::net::IpAddr;
use std::path::PathBuf;
use std::time::Duration;

use clap::{ArgAction, Parser, Subcommand};

/// Flags of the server (and of its `dump` subcommand).
#[derive(Parser, Debug, Clone)]
#[command(
    name = "raftexample",
    version = crate::version::VERSION,
    about = "A replicated key-value store on Raft: etcd's contrib/raftexample, in Rust.",
    long_about = "A replicated key-value store on Raft: etcd's contrib/raftexample, in Rust.\n\n\
        Start a single node with no flags, or three nodes with the Procfile. \
        PUT /<key> stores the request body, GET /<key> reads it, \
        POST /<id> with a peer URL adds a member, DELETE /<id> removes one. \
        Every flag also takes a single dash, Go-style (-id 2)."
)]
pub struct Config {
    /// This node's raft id: a 1-based index into --cluster.
    #[arg(long, default_value_t = 1)]
    pub id: u64,

    /// Comma-separated peer URLs of the cluster, in id order (blanks around a URL and a
    /// trailing `/` are dropped).
    // Only the parser spells the entries so: a Config built in code must list them in that
    // form already.
    #[arg(long, default_value = "http://127.0.0.1:9021", value_delimiter = ',',
          value_parser = cluster_entry)]
    pub cluster: Vec<String>,

    /// Port of the key-value REST API.
    #[arg(long, default_value_t = 9121)]
    pub port: u16,

    /// Join an existing cluster: start with no members and wait to be added with `POST /<id>`.
    #[arg(long, num_args = 0..=1, default_value_t = false, default_missing_value = "true",
          action = ArgAction::Set, value_parser = go_bool)]
    pub join: bool,

    /// Folder that holds `raftexample-<id>/` (the WAL) and `raftexample-<id>-snap/` (snapshots).
    #[arg(long, default_value = ".")]
    pub data_dir: PathBuf,

    /// Address the REST API listens on (the original listens on every interface).
    #[arg(long, default_value = "0.0.0.0")]
    pub listen_host: IpAddr,

    /// Take a snapshot after this many applied entries (0 counts as 1). A snapshot writes the
    /// whole state, so a big state wants a bigger count (1 M keys of 100 bytes: 110 MB per
    /// snapshot).
    #[arg(long, default_value_t = 10_000)]
    pub snapshot_count: u64,

    /// Entries kept in the log behind a snapshot, so slow followers catch up without one.
    #[arg(long, default_value_t = 10_000)]
    pub snapshot_catchup_entries: u64,

    /// Bytes of entries that bound the log in memory, for big values: a snapshot is also taken
    /// once the entries applied since the last one carry this many bytes (or as many as that
    /// snapshot, if more), and no more than this stays behind a snapshot. 0: entries only.
    #[arg(long, default_value_t = 64 << 20)]
    pub snapshot_log_bytes: u64,

    /// Snapshot files kept on disk (older ones are deleted); at least 2: a lower value counts
    /// as 2.
    #[arg(long, default_value_t = crate::snapshotter::DEFAULT_KEEP)]
    pub max_snapshots: usize,

    /// How long a PUT, POST or DELETE waits for its entry to commit and apply, and a
    /// linearizable GET or /-/status for the node, before it answers 503. A write that went
    /// out is withdrawn in the last fifth of the wait (at most 1 s), and the 503 says whether
    /// it can still commit. Milliseconds; at least 10.
    #[arg(long, default_value_t = 5_000, value_parser = proposal_timeout)]
    pub proposal_timeout_ms: u64,

    /// Largest accepted request body, in bytes (larger bodies get 413); at most 1 GiB.
    #[arg(long, default_value_t = 1 << 20, value_parser = body_limit)]
    pub max_body_bytes: usize,

    /// How long a connection to either port may take to send a request's head (counted from
    /// when it opens or was last answered, so an idle connection is closed after this long)
    /// or leave an answer's bytes untaken; past this long a request body (or a peer's
    /// snapshot) must have arrived at 64 KiB/s on average, else 408. Milliseconds; at least 1.
    #[arg(long, default_value_t = 30_000,
          value_parser = clap::value_parser!(u64).range(1..=MAX_CLIENT_TIMEOUT_MS))]
    pub client_timeout_ms: u64,

    /// Connections each port holds open at once; more wait in the kernel's queue until one
    /// closes.
    #[arg(long, default_value_t = 8192, value_parser = clap::value_parser!(u64).range(1..=1 << 20))]
    pub max_connections: u64,

    /// Raft tick interval in milliseconds (elections after 10 to 20 ticks, a heartbeat every
    /// tick). 1 to 60000.
    #[arg(long, default_value_t = 100, value_parser = clap::value_parser!(u64).range(1..=60_000))]
    pub tick_ms: u64,

    /// WAL segment size in bytes before a new segment file is started; at least 4096 (a
    /// page).
    // Smaller sizes were taken, and a segment smaller than one write started a new file per
    // write (found by a hands-on test: 113 files after 55 PUTs with 1).
    #[arg(long, default_value_t = 64 << 20,
          value_parser = clap::value_parser!(u64).range(4096..))]
    pub wal_segment_bytes: u64,

    /// Write the WAL around the page cache (O_DIRECT), in whole physical sectors rather than
    /// 4 KiB pages, where the file system allows it; `=false` writes through the page cache.
    #[arg(long, num_args = 0..=1, default_value_t = true, default_missing_value = "true",
          action = ArgAction::Set, value_parser = go_bool)]
    pub wal_direct_io: bool,

    /// Refuse a POST or DELETE of a member that would leave the cluster unable to reach a
    /// quorum with the members that answer now (etcd's --strict-reconfig-check); `=false`
    /// turns the check off.
    #[arg(long, num_args = 0..=1, default_value_t = true, default_missing_value = "true",
          action = ArgAction::Set, value_parser = go_bool)]
    pub strict_reconfig_check: bool,

    /// Mixed into the cluster identity, so two clusters started from the same peer URLs
    /// (say, the same Procfile in two folders) reject each other's messages.
    #[arg(long, default_value = "")]
    pub cluster_token: String,

    /// Largest snapshot file accepted from a peer, in bytes; 0 (the default, as in etcd): no
    /// limit. A snapshot streams to disk as it arrives and is never held in memory, so this
    /// bounds the disk a peer can make a node fill, not its memory.
    #[arg(long, default_value_t = 0)]
    pub max_snapshot_bytes: u64,

    /// Certificate (PEM) of the REST API. With --key-file, the REST API speaks HTTPS only.
    #[arg(long, help_heading = "Client TLS (etcd's flags)")]
    pub cert_file: Option<PathBuf>,

    /// Private key (PEM) of --cert-file.
    #[arg(long, help_heading = "Client TLS (etcd's flags)")]
    pub key_file: Option<PathBuf>,

    /// CA certificate(s) (PEM) that signs the clients' certificates (for --client-cert-auth).
    #[arg(long, help_heading = "Client TLS (etcd's flags)")]
    pub trusted_ca_file: Option<PathBuf>,

    /// Admit only clients that present a certificate signed by --trusted-ca-file.
    #[arg(long, num_args = 0..=1, default_value_t = false, default_missing_value = "true",
          action = ArgAction::Set, value_parser = go_bool,
          help_heading = "Client TLS (etcd's flags)")]
    pub client_cert_auth: bool,

    /// Certificate (PEM) this node presents to its peers, as server and as client. Required
    /// when --cluster uses https:// URLs.
    #[arg(long, help_heading = "Peer TLS (etcd's flags; https:// peer URLs)")]
    pub peer_cert_file: Option<PathBuf>,

    /// Private key (PEM) of --peer-cert-file.
    #[arg(long, help_heading = "Peer TLS (etcd's flags; https:// peer URLs)")]
    pub peer_key_file: Option<PathBuf>,

    /// CA certificate(s) (PEM) that must have signed every peer's certificate; peer TLS
    /// checks the other side both ways.
    #[arg(long, help_heading = "Peer TLS (etcd's flags; https:// peer URLs)")]
    pub peer_trusted_ca_file: Option<PathBuf>,

    /// For tests of rolling upgrades only, hidden from `--help`: this node's peer requests and
    /// probe answers leave out the header that says its build stores values of any bytes, so
    /// its peers take it for a build before them (which skips a PUT's value that is not
    /// UTF-8) and refuse such values (see `transport::builds`). It still stores them itself.
    #[arg(long, hide = true, num_args = 0..=1, default_value_t = false,
          default_missing_value = "true", action = ArgAction::Set, value_parser = go_bool)]
    pub test_as_older_build: bool,

    /// Tools that work on a data dir instead of serving.
    #[command(subcommand)]
    pub command: Option<Command>,
}

/// Subcommands; with none, the binary serves.
#[derive(Subcommand, Debug, Clone)]
pub enum Command {
    /// Print every WAL record and snapshot file of a node's data dir, one per line
    /// (`raftexample dump --id 1 --data-dir .`). Read-only: works on a stopped node's files.
    Dump {
        /// The node whose files to print: they are in `raftexample-<id>/` and
        /// `raftexample-<id>-snap/` [default: 1].
        // Not the server's flags made global: `certs --help` then listed them, and `dump`
        // described `--id` as an index into a `--cluster` it does not take. `from_args` copies
        // these into the server's fields, so `raftexample --id 2 dump` still works too.
        #[arg(long)]
        id: Option<u64>,
        /// Folder that holds the node's folders [default: .].
        #[arg(long)]
        data_dir: Option<PathBuf>,
        /// Print JSON lines instead of text.
        #[arg(long)]
        json: bool,
        /// Print keys and values whole; by default one longer than 64 bytes is cut there, with
        /// its full length shown.
        #[arg(long)]
        full_values: bool,
    },
    /// Make a CA and certificates for TLS: `ca.crt`, `node<N>.crt` for nodes 1..=N (server and
    /// client use, for both ports) and `client.crt` (for curl), each with its `.key`. Files
    /// that exist are kept; an existing CA signs the new certificates.
    Certs {
        /// Folder to write into.
        #[arg(long, default_value = "certs")]
        out: PathBuf,
        /// Number of node certificates.
        #[arg(long, default_value_t = 3)]
        nodes: u64,
        /// Names and addresses the node certificates are valid for (comma-separated).
        #[arg(long, default_value = "127.0.0.1,localhost,::1", value_delimiter = ',')]
        hosts: Vec<String>,
    },
}

/// The longest `--client-timeout-ms`, a day: deadlines are instants, which a far larger one
/// would overflow.
pub const MAX_CLIENT_TIMEOUT_MS: u64 = 86_400_000;

/// Past `--client-timeout-ms`, the least average rate (bytes per second) at which a body
/// must have arrived, a REST request's or a peer's snapshot: one trickled in (a byte every
/// few seconds) would otherwise hold its connection, and a task, for as long as its sender
/// likes. A 1 Mbit/s link carries twice this.
pub const MIN_BODY_RATE: u64 = 64 << 10;

/// How long a body may have taken once `received` bytes of it arrived: the client timeout,
/// and 1/[`MIN_BODY_RATE`] s for each byte.
pub fn body_patience(client_timeout: Duration, received: u64) -> Duration {
    client_timeout + Duration::from_micros(received.saturating_mul(1_000_000) / MIN_BODY_RATE)
}

/// The largest `--max-body-bytes`: a value travels to the peers in one raft message, whose
/// length on the wire is a 32-bit number (with raft's 1 MiB of other entries beside it).
pub const MAX_BODY_LIMIT: usize = 1 << 30;

/// A boolean as Go's `flag` package takes one (`strconv.ParseBool`), so that `-join=1` or
/// `-join=T` works as with the original (and `?pretty=0` as a flag would take it).
pub(crate) fn go_bool(text: &str) -> Result<bool, String> {
    match text {
        "1" | "t" | "T" | "TRUE" | "true" | "True" => Ok(true),
        "0" | "f" | "F" | "FALSE" | "false" | "False" => Ok(false),
        _ => Err("true or false (or 1, t, T, TRUE, True and 0, f, F, FALSE, False)".into()),
    }
}

/// A `--cluster` entry in the one form every user of it gets: `http://a:1/` and, after a
/// comma in a quoted list, ` http://a:1` are `http://a:1`. Spelled here, once, because the
/// entries go on as they are into request URIs (`{url}/raft/join`, where a trailing `/`
/// made a 404 and a blank an unparsable URI: a joining node was never admitted), the WAL's
/// metadata and the live page. `check_flags` judges the rest of the URL.
fn cluster_entry(text: &str) -> Result<String, String> {
    Ok(crate::membership::normalize_url(text).to_string())
}

/// The least `--proposal-timeout-ms`. Below 5 ms, a write's last fifth, in which it is no
/// longer proposed, is under `transport::builds::LEAST_PATIENCE`, so a follower would refuse
/// a value that is not UTF-8 unasked even when it could have been proposed, and at 1 ms every
/// one (review 111); 10 ms leaves that fifth twice the floor.
pub const MIN_PROPOSAL_TIMEOUT_MS: u64 = 10;

fn proposal_timeout(text: &str) -> Result<u64, String> {
    let ms: u64 = text.parse().map_err(|e| format!("{e}"))?;
    if ms < MIN_PROPOSAL_TIMEOUT_MS {
        return Err(format!(
            "at least {MIN_PROPOSAL_TIMEOUT_MS} (milliseconds): with less, a follower has no \
             time to ask its leader before writing a value that is not UTF-8"
        ));
    }
    Ok(ms)
}

fn body_limit(text: &str) -> Result<usize, String> {
    let n: usize = text.parse().map_err(|e| format!("{e}"))?;
    if n > MAX_BODY_LIMIT {
        return Err(format!(
            "at most {MAX_BODY_LIMIT} (1 GiB): a value travels to the peers in one message"
        ));
    }
    Ok(n)
}

impl Config {
    /// Parses flags the way the original's Go `flag` package does: `-id 2` and `--id 2`
    /// both work, as do `--join=true` and `-join`, for every flag.
    pub fn from_args<I: IntoIterator<Item = String>>(args: I) -> Result<Config, clap::Error> {
        let longs = long_flags();
        let mut config =
            Config::try_parse_from(args.into_iter().map(|arg| go_style_flag(arg, &longs)))?;
        if let Some(Command::Dump { id, data_dir, .. }) = &config.command {
            config.id = id.unwrap_or(config.id);
            config.data_dir = data_dir.clone().unwrap_or(config.data_dir);
        }
        Ok(config)
    }

    /// This node's own peer URL (`--cluster[id-1]`).
    pub fn own_peer_url(&self) -> Option<&str> {
        let index = usize::try_from(self.id.checked_sub(1)?).ok()?;
        self.cluster.get(index).map(String::as_str)
    }

    /// Folder of the write-ahead log.
    pub fn wal_dir(&self) -> PathBuf {
        self.data_dir.join(format!("raftexample-{}", self.id))
    }

    /// How the WAL is written: segment size from the flags, the rest as the WAL defaults.
    /// A segment is never preallocated past its size: small segments (tests, the simulator)
    /// would otherwise each carry megabytes of zeros.
    pub fn wal_options(&self) -> crate::wal::WalOptions {
        let defaults = crate::wal::WalOptions::default();
        crate::wal::WalOptions {
            segment_size: self.wal_segment_bytes,
            preallocate: defaults.preallocate.min(self.wal_segment_bytes),
            direct_io: self.wal_direct_io,
        }
    }

    /// Folder of the snapshot files.
    pub fn snap_dir(&self) -> PathBuf {
        self.data_dir.join(format!("raftexample-{}-snap", self.id))
    }

    /// How long a proposal may take to commit and apply.
    pub fn proposal_timeout(&self) -> Duration {
        Duration::from_millis(self.proposal_timeout_ms)
    }

    /// See `--client-timeout-ms`.
    pub fn client_timeout(&self) -> Duration {
        Duration::from_millis(self.client_timeout_ms)
    }

    /// The raft tick.
    pub fn tick(&self) -> Duration {
        Duration::from_millis(self.tick_ms.max(1))
    }
}

impl Default for Config {
    fn default() -> Self {
        Config::try_parse_from(["raftexample"])
            .expect("the default flags parse (they are literals)")
    }
}

/// The long flags of the server and of its subcommands.
fn long_flags() -> Vec<String> {
    let command = <Config as clap::CommandFactory>::command();
    let subcommands = command.get_subcommands().flat_map(|c| c.get_arguments());
    command
        .get_arguments()
        .chain(subcommands)
        .filter_map(|a| a.get_long())
        .map(str::to_owned)
        .collect()
}

/// `-name` (or `-name=value`) becomes `--name` for every long flag `name`, as Go's `flag`
/// package takes one dash or two (the original's `-id 2`, etcd's `-cert-file x`). Other
/// single-dash words are left alone for clap to report.
fn go_style_flag(arg: String, longs: &[String]) -> String {
    if let Some(rest) = arg.strip_prefix('-')
        && !rest.starts_with('-')
    {
        let name = rest.split('=').next().unwrap_or(rest);
        if longs.iter().any(|long| long == name) {
            return format!("-{arg}");
        }
    }
    arg
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parse(args: &[&str]) -> Config {
        Config::from_args(args.iter().map(|s| s.to_string())).expect("flags parse")
    }

    #[test]
    fn the_strict_reconfiguration_check_is_on_unless_turned_off() {
        assert!(parse(&["raftexample"]).strict_reconfig_check);
        assert!(!parse(&["raftexample", "--strict-reconfig-check=false"]).strict_reconfig_check);
        assert!(parse(&["raftexample", "--strict-reconfig-check"]).strict_reconfig_check);
    }

    #[test]
    fn defaults_match_the_original() {
        let c = parse(&["raftexample"]);
        assert_eq!(c.id, 1);
        assert_eq!(c.cluster, vec!["http://127.0.0.1:9021"]);
        assert_eq!(c.port, 9121);
        assert!(!c.join);
        assert_eq!(c.snapshot_count, 10_000);
        assert_eq!(c.snapshot_catchup_entries, 10_000);
        // Not the original's (it has no such bound); 10,000 entries of up to 6 KiB are under it.
        assert_eq!(c.snapshot_log_bytes, 64 << 20);
        assert_eq!(c.own_peer_url(), Some("http://127.0.0.1:9021"));
        assert_eq!(c.wal_dir(), PathBuf::from("./raftexample-1"));
        assert_eq!(c.snap_dir(), PathBuf::from("./raftexample-1-snap"));
    }

    /// Found by a review: a limit near `usize::MAX` overflowed the peers' message limit
    /// (raft's 1 MiB plus this), so the REST port took values the peers refused.
    #[test]
    fn a_body_limit_past_what_a_message_can_carry_is_refused() {
        let parsed = Config::from_args(
            ["raftexample", "--max-body-bytes", "18446744073709551615"].map(String::from),
        );
        let err = parsed.expect_err("a limit past 1 GiB");
        assert!(err.to_string().contains("at most 1073741824"), "{err}");
        let c = parse(&["raftexample", "--max-body-bytes", "1073741824"]);
        assert_eq!(c.max_body_bytes, MAX_BODY_LIMIT);
    }

    /// Below 5 ms a follower refused a value that is not UTF-8 that it could have written, at
    /// 1 ms every one, with a 503 (review 111): the flag says its minimum instead.
    #[test]
    fn a_proposal_timeout_under_ten_milliseconds_is_refused() {
        for bad in ["0", "1", "4", "9"] {
            let parsed =
                Config::from_args(["raftexample", "--proposal-timeout-ms", bad].map(String::from));
            let err = parsed.expect_err("under the minimum");
            assert!(
                err.to_string().contains("at least 10 (milliseconds)"),
                "--proposal-timeout-ms {bad}: {err}"
            );
        }
        let c = parse(&["raftexample", "--proposal-timeout-ms", "10"]);
        assert_eq!(c.proposal_timeout(), Duration::from_millis(10));
        assert_eq!(parse(&["raftexample"]).proposal_timeout_ms, 5_000);
    }

    /// Found by a review: a client timeout near `u64::MAX` overflowed the deadlines made
    /// from it (a panic at the first connection); 0 would close every connection at once.
    #[test]
    fn client_timeouts_past_a_day_or_of_zero_are_refused() {
        for bad in ["0", "86400001", "18446744073709551615"] {
            let parsed =
                Config::from_args(["raftexample", "--client-timeout-ms", bad].map(String::from));
            assert!(parsed.is_err(), "--client-timeout-ms {bad} was taken");
        }
        let c = parse(&["raftexample", "--client-timeout-ms", "86400000"]);
        assert_eq!(c.client_timeout(), Duration::from_secs(86_400));
    }

    /// A tick of 0 was taken as 1 ms without a word; past a minute, elections would take ten
    /// minutes or more: a slip of the finger, not a setting.
    #[test]
    fn ticks_of_zero_or_over_a_minute_are_refused() {
        for bad in ["0", "60001"] {
            let parsed = Config::from_args(["raftexample", "--tick-ms", bad].map(String::from));
            assert!(parsed.is_err(), "--tick-ms {bad} was taken");
        }
        assert_eq!(
            parse(&["raftexample", "-tick-ms", "1"]).tick(),
            Duration::from_millis(1)
        );
    }

    /// A WAL segment under a page (0 and 1 were taken) started a new file for every write.
    #[test]
    fn wal_segments_under_a_page_are_refused() {
        for bad in ["0", "1", "4095"] {
            let parsed =
                Config::from_args(["raftexample", "--wal-segment-bytes", bad].map(String::from));
            let Err(err) = parsed else {
                panic!("--wal-segment-bytes {bad} was taken");
            };
            assert!(err.to_string().contains("4096"), "{err}");
        }
        let c = parse(&["raftexample", "--wal-segment-bytes", "4096"]);
        assert_eq!(c.wal_segment_bytes, 4096);
    }

    #[test]
    fn procfile_flags_parse() {
        let c = parse(&[
            "raftexample",
            "--id",
            "2",
            "--cluster",
            "http://127.0.0.1:12379,http://127.0.0.1:22379,http://127.0.0.1:32379",
            "--port",
            "22380",
        ]);
        assert_eq!(c.id, 2);
        assert_eq!(c.cluster.len(), 3);
        assert_eq!(c.own_peer_url(), Some("http://127.0.0.1:22379"));
        assert_eq!(c.port, 22380);
    }

    /// Found by a review: entries were kept as written, and a trailing `/` or a blank after
    /// a comma reached the join lookup's URIs, so a node started with `--join` was never
    /// admitted (see `tests/membership.rs` for the node that joins).
    #[test]
    fn cluster_entries_lose_their_blanks_and_trailing_slashes() {
        let c = parse(&[
            "raftexample",
            "--id",
            "2",
            "--cluster",
            "http://127.0.0.1:12379/, https://node2:22379// ,\thttp://[::1]:32379",
        ]);
        assert_eq!(
            c.cluster,
            [
                "http://127.0.0.1:12379",
                "https://node2:22379",
                "http://[::1]:32379"
            ]
        );
        assert_eq!(c.own_peer_url(), Some("https://node2:22379"));
        // Single-dash, as the Procfile's, and an entry that is only blanks: kept empty, for
        // check_flags to refuse as no URL.
        let c = parse(&["raftexample", "-cluster", "http://a:1/, "]);
        assert_eq!(c.cluster, ["http://a:1", ""]);
        assert!(crate::raft_node::check_flags(&c).is_err());
    }

    #[test]
    fn go_style_single_dash_and_join_forms() {
        let c = parse(&["raftexample", "-id", "4", "-join", "-port=42380"]);
        assert_eq!((c.id, c.join, c.port), (4, true, 42380));
        // Not only the original's four: every flag, the subcommand's too.
        let c = parse(&["raftexample", "-data-dir", "/d", "-snapshot-count=7"]);
        assert_eq!((c.data_dir, c.snapshot_count), (PathBuf::from("/d"), 7));
        let c = parse(&["raftexample", "dump", "-json", "-id", "2"]);
        assert!(matches!(c.command, Some(Command::Dump { json: true, .. })));
        assert_eq!(c.id, 2);
        // A single-dash word that is no flag is still refused.
        assert!(Config::from_args(["raftexample", "-no-such-flag"].map(String::from)).is_err());
        let c = parse(&["raftexample", "--join=false"]);
        assert!(!c.join);
        let c = parse(&["raftexample", "--join=true"]);
        assert!(c.join);
        // Go's spellings of a boolean, as the original takes them.
        for (text, join) in [("1", true), ("T", true), ("TRUE", true), ("t", true)]
            .into_iter()
            .chain([("0", false), ("F", false), ("False", false), ("f", false)])
        {
            let c = parse(&["raftexample", &format!("-join={text}")]);
            assert_eq!(c.join, join, "-join={text}");
        }
        assert!(Config::from_args(["raftexample", "--join=yes"].map(String::from)).is_err());
        // Every switch, as etcd's flags take them (`-client-cert-auth=1` was refused: a
        // review).
        let c = parse(&[
            "raftexample",
            "-client-cert-auth=1",
            "-strict-reconfig-check=F",
            "-wal-direct-io=0",
        ]);
        assert!(c.client_cert_auth && !c.strict_reconfig_check && !c.wal_direct_io);
        let c = parse(&[
            "raftexample",
            "-strict-reconfig-check=T",
            "-wal-direct-io=t",
        ]);
        assert!(c.strict_reconfig_check && c.wal_direct_io);
    }

    /// Every switch of the server takes a value, in Go's spellings, as well as none: the
    /// hidden `--test-as-older-build` was a bare switch, which refused `=true` (review 120
    /// N2). A switch added without the attributes fails here.
    #[test]
    fn every_switch_of_the_server_takes_a_value() {
        let command = <Config as clap::CommandFactory>::command();
        let bare: Vec<&str> = command
            .get_arguments()
            .filter(|a| {
                matches!(
                    a.get_action(),
                    ArgAction::SetTrue | ArgAction::SetFalse | ArgAction::Count
                )
            })
            .map(|a| a.get_id().as_str())
            .collect();
        assert_eq!(bare, Vec::<&str>::new(), "switches that take no value");

        let older = |args: &[&str]| parse(args).test_as_older_build;
        assert!(!older(&["raftexample"]));
        assert!(older(&["raftexample", "--test-as-older-build"]));
        assert!(older(&["raftexample", "--test-as-older-build=true"]));
        assert!(!older(&["raftexample", "--test-as-older-build=false"]));
        assert!(older(&["raftexample", "-test-as-older-build=1"]));
    }

    #[test]
    fn dump_takes_the_data_dir_flags() {
        let c = parse(&[
            "raftexample",
            "dump",
            "--data-dir",
            "/tmp/x",
            "--id",
            "2",
            "--json",
        ]);
        assert_eq!(c.wal_dir(), PathBuf::from("/tmp/x/raftexample-2"));
        assert!(matches!(c.command, Some(Command::Dump { json: true, .. })));
        // Before the subcommand, as the server's flags, they count as well.
        let c = parse(&["raftexample", "--id", "3", "--data-dir", "/d", "dump"]);
        assert_eq!(c.wal_dir(), PathBuf::from("/d/raftexample-3"));
    }

    #[test]
    fn certs_takes_no_node_flags_and_dump_describes_its_own() {
        // `certs` makes files for every node: an --id or --data-dir given to it was ignored.
        for flag in ["--id", "--data-dir"] {
            let args = ["raftexample", "certs", flag, "7"].map(String::from);
            assert!(Config::from_args(args).is_err(), "certs took {flag}");
        }
        let mut command = <Config as clap::CommandFactory>::command();
        let dump = command
            .find_subcommand_mut("dump")
            .expect("the dump subcommand");
        let help = dump.render_long_help().to_string();
        assert!(help.contains("raftexample-<id>-snap"), "{help}");
        assert!(!help.contains("--cluster"), "{help}");
    }

    #[test]
    fn etcd_tls_flags_parse_in_both_styles() {
        let c = parse(&[
            "raftexample",
            "-cert-file",
            "a.crt",
            "--key-file=a.key",
            "-trusted-ca-file",
            "ca.crt",
            "-client-cert-auth",
            "--peer-cert-file",
            "p.crt",
            "-peer-key-file=p.key",
            "--peer-trusted-ca-file",
            "pca.crt",
        ]);
        assert_eq!(c.cert_file, Some(PathBuf::from("a.crt")));
        assert_eq!(c.key_file, Some(PathBuf::from("a.key")));
        assert_eq!(c.trusted_ca_file, Some(PathBuf::from("ca.crt")));
        assert!(c.client_cert_auth);
        assert_eq!(c.peer_cert_file, Some(PathBuf::from("p.crt")));
        assert_eq!(c.peer_key_file, Some(PathBuf::from("p.key")));
        assert_eq!(c.peer_trusted_ca_file, Some(PathBuf::from("pca.crt")));
        let plain = parse(&["raftexample"]);
        assert!(plain.cert_file.is_none() && plain.peer_cert_file.is_none());
        assert!(!plain.client_cert_auth);
    }

    #[test]
    fn certs_subcommand_defaults() {
        let c = parse(&["raftexample", "certs"]);
        match c.command {
            Some(Command::Certs { out, nodes, hosts }) => {
                assert_eq!(out, PathBuf::from("certs"));
                assert_eq!(nodes, 3);
                assert_eq!(hosts, vec!["127.0.0.1", "localhost", "::1"]);
            }
            other => panic!("expected certs, got {other:?}"),
        }
    }

    #[test]
    fn id_outside_the_cluster_has_no_url() {
        let c = parse(&["raftexample", "--id", "3"]);
        assert_eq!(c.own_peer_url(), None);
        let c = parse(&["raftexample", "--id", "0"]);
        assert_eq!(c.own_peer_url(), None);
    }
}
