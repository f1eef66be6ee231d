//! raftexample: etcd's `contrib/raftexample` in Rust — a replicated key-value store on raft-rs.
//!
//! # Layout
//! Each module is one box of the data flow; arrows point the way modules import each other
//! (downwards: the graph has no cycle).
//!
//! ```text
//!  client ─HTTP─▶ http_api ──▶ raft_node::NodeHandle ── request::Request ──┐ (bounded queue)
//!     ▲                                                                   ▼
//!     │   peers ─HTTP─▶ transport::server ── transport::PeerEvent ──▶ raft_node ◀── tick
//!     │                                                    each round (raft_node/ready.rs):
//!     │                                                    propose what is due, then for
//!     │                                                    each Ready, in raft-rs's order:
//!     │                                      ┌─────────────┤ 1 leader's messages ─▶ transport
//!     │                                      │             │ 2 a leader's snapshot ─▶ snapshotter
//!     │                                      │             │ 3 committed entries, through
//!     │                                      │             │   the exactly-once table (proposal)
//!     │                                      │             │ 4 entries, hard state ─▶ wal (sync)
//!     │                                      │             │ 5 read states ─▶ waiting reads
//!     │                                      │             │ 6 follower's messages ─▶ transport
//!     │                                      │             │ 7 advance; what it releases, too
//!     │                                      ▼             ▼
//!     └──── 204 / 200 / 503 ◀── answered once applied ── kvstore (in log order)
//! ```
//!
//! - [`request`]: what a client asks of the node and how it is answered (a leaf).
//! - [`http_api`]: the REST API; errors become status codes in one place.
//! - [`raft_node`]: owns the `RawNode`; its loop, top to bottom, is `raft_node/ready.rs`.
//! - [`proposal`]: what a proposal carries through the log, and the exactly-once table.
//! - [`wal`] and [`snapshotter`]: our own crash-safe storage; [`fsutil`]: fsync and locking;
//!   [`disk`]: the file system they use (the real one, or one in memory that loses power).
//! - [`transport`]: batched HTTP between peers, never blocking the raft node; the
//!   [`transport::Network`] the node sends through (the HTTP one, or one in memory).
//! - [`kvstore`]: the state machine, fed committed entries in log order (small batches on the
//!   raft thread, the rest over the apply channel to a thread of its own).
//! - [`membership`]: member URLs, removed ids and the cluster identity; [`incarnation`]: which
//!   run of the cluster a log belongs to (the first session registration's nonce).
//! - [`clock`]: the one clock the raft node's decisions use (tokio's, or a simulated one).
//! - [`config`]: the original's flags, plus knobs with the original's defaults.
//! - [`in_memory`]: the same node in a test's process, on an in-memory network and disk.
//! - [`pb`]: protobuf decoding bounded by its input; [`varint`]: the one varint.
//! - `listener`: the ports' listeners; the REST one counts the client connections a stopping
//!   node still serves. `serving`: the loop that serves a port's connections, with its limits
//!   on slow and idle clients and on connections open at once; both ports are served from
//!   the moment they are bound, as a starting node ([`transport::starting`],
//!   [`http_api::starting`]) until the node has replayed its log, then handed to the peer
//!   server and the REST API.
//! - [`tls`]: rustls for both ports (etcd's TLS flags); [`certs`]: makes a CA and certificates.
//! - [`metrics`]: Prometheus counters, served at `/-/metrics`; [`dump`]: prints a data dir;
//!   [`describe`]: log entries for people (the dump and the Ready trace).
//! - [`version`]: the build a node runs (its git commit and date), for people and metrics.
//! - [`mutation`]: fixes the simulator takes out again to show it finds their bugs.
//! - [`events`] and [`ui`]: the live page at `/-/ui`, fed by each `Ready` while a page watches.

#![forbid(unsafe_code)]
#![deny(missing_docs)]

pub mod certs;
pub mod clock;
pub mod config;
pub mod describe;
pub mod disk;
pub mod dump;
pub mod events;
pub mod fsutil;
pub mod http_api;
pub mod in_memory;
pub mod incarnation;
pub mod kvstore;
mod listener;
pub mod membership;
pub mod metrics;
pub mod mutation;
pub mod pb;
pub mod proposal;
pub mod raft_node;
pub mod request;
mod serving;
pub mod snapshotter;
pub mod tls;
pub mod transport;
pub mod ui;
pub mod varint;
pub mod version;
pub mod wal;

use std::net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr};
use std::sync::Arc;
use std::time::Duration;

use tokio::net::TcpListener;
use tokio::sync::{mpsc, oneshot};
use tokio::task::JoinHandle;
use tokio_util::sync::CancellationToken;

pub use config::Config;
pub use raft_node::{Exit, NodeHandle, StartError};

use kvstore::KvStore;
use listener::{PortListener, UntilStopped};
use raft_node::RaftNode;
use tls::TlsSetup;
use transport::{PeerFilter, PeerLimits, Transport, server::PeerServer};

/// Messages waiting for the raft node before senders have to wait.
const INBOX_CAPACITY: usize = 16 * 1024;

// A connection a stopping TLS port hands on after its handshake must still find the node
// there to answer it: the port stops waiting for handshakes well before the node's stop limit,
// leaving at least 100 ms to answer the last one handed on.
const _: () = assert!(
    tls::HANDSHAKES_AT_STOP.as_millis() + 100 <= raft_node::STOP_LIMIT.as_millis(),
    "a stopping TLS port waits for handshakes for less than a node's stop limit"
);

/// A started node: its handle, its addresses, and a way to stop or await it.
pub struct Running {
    /// Talks to the raft node (what the REST API uses).
    pub node: NodeHandle,
    /// Where the REST API listens.
    pub rest_addr: SocketAddr,
    /// Where the peer transport listens.
    pub peer_addr: SocketAddr,
    /// Asks the node to stop: it stops taking REST connections, hands leadership over if it
    /// leads, answers what is in flight, and stops.
    shutdown: CancellationToken,
    /// Stops the transport and the peer server, once the node has stopped (until then it
    /// needs them to hand over and answer).
    services: CancellationToken,
    exit: oneshot::Receiver<Exit>,
    rest_server: JoinHandle<()>,
    peer_port: PeerPort,
}

impl Running {
    /// Asks the node and its servers to stop; [`Running::wait`] returns once they have.
    pub fn shutdown(&self) {
        self.shutdown.cancel();
    }

    /// A token that stops the node when cancelled.
    pub fn shutdown_token(&self) -> CancellationToken {
        self.shutdown.clone()
    }

    /// Waits until the node stops (shut down, removed, or failed), then stops the servers.
    pub async fn wait(self) -> Exit {
        let exit = self.exit.await.unwrap_or_else(|_| {
            Exit::Fatal("the raft node thread ended without saying why".to_string())
        });
        self.shutdown.cancel();
        self.services.cancel();
        self.peer_port.close().await;
        // Requests still waiting on the node fail at once now that it has stopped; give the
        // REST server a moment to answer them and close.
        let _ = tokio::time::timeout(Duration::from_secs(2), self.rest_server).await;
        exit
    }
}

/// Recovers the node's state, binds its listeners and starts it. Must be called inside a
/// multi-threaded tokio runtime: the transport and the servers run on it, while the raft node
/// gets a thread of its own.
pub async fn start(config: Config) -> Result<Running, StartError> {
    start_unless_stopped(config, CancellationToken::new()).await
}

/// [`start`], given up if `stop_asked` is cancelled while it waits for a member that holds
/// data to say whether this node's id has run ([`transport::join::Lookup::before_bootstrap`]):
/// that wait has no end of its own. A signal at any other time stops the node once started.
pub async fn start_unless_stopped(
    config: Config,
    stop_asked: CancellationToken,
) -> Result<Running, StartError> {
    start_replaying(config, stop_asked, raft_node::replay_wal).await
}

/// [`start_unless_stopped`], recovering with `replay` (the tests' seam for a slow replay).
async fn start_replaying(
    config: Config,
    stop_asked: CancellationToken,
    replay: impl FnOnce(&Config) -> Result<raft_node::Recovered, StartError> + Send + 'static,
) -> Result<Running, StartError> {
    // Before the data dir is touched: a mistake in the flags, the TLS files or the ports
    // should not leave a fresh node's folders behind (a WAL records --cluster, and would
    // then refuse the corrected flags).
    let own_url = raft_node::check_flags(&config)?;
    check_ports(&config, &own_url)?;
    let tls = TlsSetup::load(&config).map_err(|e| StartError::BadFlags(e.to_string()))?;
    let ports = match Ports::bind(&config, &own_url).await {
        Ok(ports) => ports,
        // Most likely this data dir's own node, already running: say that rather than which
        // port it holds. (Its WAL folder exists, so taking the lock to see writes nothing.)
        // Else flags that put this node at another's URL (a --cluster in another order): its
        // data dir says where it belongs, which "stop the process that holds the port" does
        // not, and that process is a running member (found by a hands-on test).
        Err(err) if config.wal_dir().is_dir() => {
            let (config, own_url) = (config.clone(), own_url.clone());
            off_the_runtime(move || {
                // Held until the check has read: a start of this node racing in may be
                // truncating a torn tail or finishing a rotation under it (review 123, N1).
                let _lock = fsutil::DirLock::acquire(&config.wal_dir())?;
                raft_node::check_data_dir(&config, &own_url)
            })
            .await?;
            return Err(err);
        }
        Err(err) => return Err(err),
    };
    // Served from here on, while the node starts: a peer that asks whether its own id has
    // run hears that this node is starting, and whether it holds data, rather than wait on a
    // port nobody answers until the log is replayed (review 106, L-E); a client, a load
    // balancer or a probe hears that it is starting, and what it is doing (review 119, N2).
    let holds_data = wal::Wal::exists(&config.wal_dir());
    if holds_data {
        // Said to hold data only if it is this node's: a foreign data dir (another node's or
        // cluster's, or a cluster of one node that --cluster puts beside strangers) is refused
        // now, not after the others have waited on its replay (review 115, L1).
        let (config, own_url) = (config.clone(), own_url.clone());
        off_the_runtime(move || raft_node::check_data_dir(&config, &own_url)).await?;
    }
    let asks_first = asks_whether_it_has_run(&config, holds_data);
    let phase = transport::starting::Phase::new(asks_first);
    // Both made before either is served: a failure then leaves neither port answering.
    let peer = port_listener(ports.peer, tls.peer_server.clone(), tls::Port::Peer)?;
    let rest = port_listener(ports.rest, tls.rest.clone(), tls::Port::Rest)?;
    let services = CancellationToken::new();
    let peer_port = PeerPort::serve(&config, peer, holds_data, &services);
    let rest_port = RestPort::serve(&config, rest, phase.clone(), &services);
    // A start that ends before the node serves closes the ports, however it ends: an error,
    // a panic, or this future dropped (a caller's timeout). Left open, the peer port said
    // "starting" for the life of the process, and a node asking it waited for good (review
    // 115, L3). (The REST port stops with `services`, whose child its stop is.)
    let unstarted = services.clone().drop_guard();
    let recovered = recover(
        &config,
        &own_url,
        &tls,
        asks_first,
        &phase,
        &stop_asked,
        replay,
    );
    let started = match recovered.await {
        Ok(recovered) => {
            let ports = (&peer_port, &rest_port);
            start_recovered(config, &own_url, recovered, tls, ports, services.clone()).await
        }
        Err(err) => Err(err),
    };
    match started {
        Ok(running) => {
            unstarted.disarm();
            Ok(running(peer_port, rest_port))
        }
        Err(err) => {
            drop(unstarted);
            // Awaited, so that the ports are closed when this returns: a start tried again in
            // the same process binds them at once.
            peer_port.close().await;
            rest_port.close().await;
            Err(err)
        }
    }
}

/// Whether a node started with `config` first asks the other members whether its id has run
/// (see [`recover`]): a member of the first cluster, not alone in it, whose data dir has no
/// WAL (`holds_data` false).
fn asks_whether_it_has_run(config: &Config, holds_data: bool) -> bool {
    !config.join && !holds_data && config.cluster.len() > 1
}

/// The node's state, as `replay` recovers it from its data dir. A member of the first cluster
/// on an empty data dir makes its first entries again and rejoins as it is: not if it has run
/// before, which lost that run's data (its votes and what it acknowledged: see
/// [`transport::join`]), so it asks the others first (`asks_first`, as
/// [`asks_whether_it_has_run`] says). `phase` is told what it does, for the REST port's
/// starting answers.
async fn recover(
    config: &Config,
    own_url: &str,
    tls: &TlsSetup,
    asks_first: bool,
    phase: &transport::starting::Phase,
    stop_asked: &CancellationToken,
    replay: impl FnOnce(&Config) -> Result<raft_node::Recovered, StartError> + Send + 'static,
) -> Result<raft_node::Recovered, StartError> {
    if asks_first {
        let mut lookup = transport::join::Lookup::new(
            transport::http_client(tls.peer_client.clone()),
            Arc::new(PeerFilter::new(config.id, 0)),
            own_url,
            &config.cluster,
        );
        lookup.phase = phase.clone();
        lookup
            .before_bootstrap([&config.wal_dir(), &config.snap_dir()], stop_asked)
            .await?;
        phase.replaying();
    }
    let config = config.clone();
    off_the_runtime(move || replay(&config)).await
}

/// Runs `work`, which reads the data dir (its WAL, maybe a snapshot as big as the store),
/// on a thread for blocking work: on a runtime worker it would hold up the tasks queued
/// there (the ports' answers of "starting" during the replay, other nodes' in a test's
/// process), and on a current-thread runtime every task (review 123, R1).
async fn off_the_runtime<T: Send + 'static>(
    work: impl FnOnce() -> Result<T, StartError> + Send + 'static,
) -> Result<T, StartError> {
    tokio::task::spawn_blocking(work)
        .await
        .map_err(|e| StartError::Inconsistent(format!("start-up task failed: {e}")))?
}

/// Refuses a `--port` that is this node's own peer port on an address the two listeners would
/// share: the REST bind then failed as if "another process" held the port, which sent the
/// reader looking for one (review 111). A host name is taken to be every address only when
/// the REST side listens on every address (`localhost` as the loopback addresses): which
/// others it names is the resolver's to say, and a bind that does fail still says so.
fn check_ports(config: &Config, own_url: &str) -> Result<(), StartError> {
    let peer = membership::host_port(own_url)
        .map_err(|e| StartError::BadFlags(format!("--cluster: {e}")))?;
    // `check_flags` has judged the URL: it ends in a port, not 0.
    let split = peer.rsplit_once(':').map(|(h, p)| (h, p.parse::<u16>()));
    let Some((host, Ok(port))) = split else {
        return Ok(());
    };
    let rest = config.listen_host;
    let shared = match host.trim_start_matches('[').trim_end_matches(']').parse() {
        Ok(ip) => shares_port(ip, rest),
        Err(_) => {
            let loopback = [Ipv4Addr::LOCALHOST.into(), Ipv6Addr::LOCALHOST.into()];
            rest.is_unspecified()
                || host.eq_ignore_ascii_case("localhost") && loopback.contains(&rest)
        }
    };
    if port != config.port || !shared {
        return Ok(());
    }
    Err(StartError::BadFlags(format!(
        "--port {port} is this node's own peer port ({own_url}, its URL in --cluster), on an \
         address both would listen on: the REST port and the peer port must differ (the \
         original's are 9121 and 9021); pick another --port"
    )))
}

/// Whether listening on `a` and on `b` at one port collide: the same address, or either the
/// wildcard of the other's family (`::`, dual-stack, is every address of both).
fn shares_port(a: IpAddr, b: IpAddr) -> bool {
    let covers =
        |any: IpAddr, other: IpAddr| any.is_unspecified() && (any.is_ipv6() || other.is_ipv4());
    a == b || covers(a, b) || covers(b, a)
}

/// The node's two listeners, bound before anything else happens.
struct Ports {
    /// The peer port's, and its address.
    peer: (TcpListener, SocketAddr),
    /// The REST port's, and its address.
    rest: (TcpListener, SocketAddr),
}

impl Ports {
    /// Binds `own_url` (this node's peer URL, as `check_flags` returned it) and `--port`.
    async fn bind(config: &Config, own_url: &str) -> Result<Ports, StartError> {
        let peer_bind = membership::host_port(own_url)
            .map_err(|e| StartError::BadFlags(format!("--cluster: {e}")))?;
        let peer = TcpListener::bind(&peer_bind).await.map_err(|source| {
            bind_error(
                format!("{peer_bind} (this node's peer URL in --cluster)"),
                source,
                " (the port cannot simply move: the other members know this node by that URL)",
            )
        })?;
        let rest_bind = SocketAddr::new(config.listen_host, config.port);
        let rest = TcpListener::bind(rest_bind).await.map_err(|source| {
            bind_error(
                format!("{rest_bind} (--port)"),
                source,
                ", or pick another port with --port",
            )
        })?;
        let (peer_addr, rest_addr) = (
            local_addr(&peer, &peer_bind)?,
            local_addr(&rest, &rest_bind.to_string())?,
        );
        Ok(Ports {
            peer: (peer, peer_addr),
            rest: (rest, rest_addr),
        })
    }
}

/// `source`, the failure to bind `addr`, as a start error. A port in use also says what may
/// hold it and what to do (`remedy`, after "stop it"), which the OS's "Address already in
/// use" leaves to the reader (a newcomer's campaign).
fn bind_error(addr: String, source: std::io::Error, remedy: &str) -> StartError {
    let source = if source.kind() == std::io::ErrorKind::AddrInUse {
        std::io::Error::new(
            source.kind(),
            format!(
                "{source}: another process holds that port, perhaps an earlier run of this \
                 node that is still running; stop it{remedy}"
            ),
        )
    } else {
        source
    };
    StartError::Bind { addr, source }
}

/// The peer port, served from the moment it is bound: as a starting node
/// ([`transport::starting`]) until the node has recovered, then by the peer server, on the
/// same listener ([`serving::Handoff`]).
struct PeerPort {
    /// Where it listens.
    addr: SocketAddr,
    /// Hands the port to the peer server.
    handoff: serving::Handoff,
    server: JoinHandle<()>,
    /// A TLS port's accept loop, which holds the port open until it ends.
    accept: Option<JoinHandle<()>>,
}

impl PeerPort {
    /// Serves `listener` as the port of node `config.id`, starting; `holds_data`: its WAL
    /// exists.
    fn serve(
        config: &Config,
        (mut listener, addr): (PortListener, SocketAddr),
        holds_data: bool,
        services: &CancellationToken,
    ) -> PeerPort {
        let accept = listener.take_accept_task();
        let (handoff, router) =
            serving::Handoff::new(transport::starting::router(config.id, holds_data));
        let server = serving::serve(
            listener,
            router,
            serving::Limits::new(config),
            services.clone(),
            services.clone(),
        );
        PeerPort {
            addr,
            handoff,
            server,
            accept,
        }
    }

    /// Closes the port, its connections with it. Peer streams are long-lived requests that a
    /// graceful stop would wait for; nothing is owed to them. Awaited (see [`close_port`]).
    async fn close(self) {
        close_port(self.server, self.accept).await;
    }
}

/// Closes the port that `server` serves: aborted, the server drops its listener. Awaited,
/// with a TLS port's `accept` loop (which owns the port and ends once the server has dropped
/// its listener), so the port is closed when this returns: a node started again in the same
/// process binds it at once.
async fn close_port(server: JoinHandle<()>, accept: Option<JoinHandle<()>>) {
    server.abort();
    let _ = server.await;
    if let Some(accept) = accept {
        let _ = accept.await;
    }
}

/// `listener`, bound at `addr`, as `port`'s listener: with TLS if `tls`.
fn port_listener(
    (listener, addr): (TcpListener, SocketAddr),
    tls: Option<Arc<rustls::ServerConfig>>,
    port: tls::Port,
) -> Result<(PortListener, SocketAddr), StartError> {
    let listener = PortListener::new(listener, tls, port).map_err(|source| StartError::Bind {
        addr: addr.to_string(),
        source,
    })?;
    Ok((listener, addr))
}

/// The REST port, served from the moment it is bound, as the peer port is: as a starting
/// node ([`http_api::starting`]) until the node serves, then by the REST API, on the same
/// listener ([`serving::Handoff`]). Before, it was bound but answered nobody until then: a
/// client, a load balancer's health check or a liveness probe hung for the whole replay
/// (review 119, N2).
struct RestPort {
    /// Where it listens.
    addr: SocketAddr,
    /// Hands the port to the REST API.
    handoff: serving::Handoff,
    server: JoinHandle<()>,
    /// A TLS port's accept loop, which holds the port open until it ends.
    accept: Option<JoinHandle<()>>,
    /// Asks the node to stop: the port then closes at once, and the connections already open
    /// are served until they have gone (see [`listener::UntilStopped`]). A child of the
    /// services' token: a start that fails closes the port with the peer port.
    shutdown: CancellationToken,
    /// Cancelled once the port has closed and its clients' connections have gone.
    clients_gone: CancellationToken,
}

impl RestPort {
    /// Serves `listener` as the REST port of node `config.id`, starting, saying what `phase`
    /// says it does, until it is handed to the REST API. `services` stops what serves it
    /// once its node has stopped.
    fn serve(
        config: &Config,
        (mut listener, addr): (PortListener, SocketAddr),
        phase: transport::starting::Phase,
        services: &CancellationToken,
    ) -> RestPort {
        let accept = listener.take_accept_task();
        let (shutdown, clients_gone) = (services.child_token(), CancellationToken::new());
        let starting = http_api::starting::router(config.id, phase, config.client_timeout());
        let (handoff, router) = serving::Handoff::new(starting);
        // Asked to stop, the REST port closes at once (new clients go elsewhere), while the
        // connections already open are served until each has closed (every answer from then
        // on asks the client to close it) or sat answered for a moment, or the node's stop
        // limit.
        let listener = UntilStopped::new(listener, addr, clients_gone.clone());
        let server = serving::serve(
            listener,
            router,
            // Clients may half-close; peers keep hyper's default, which notices at once a
            // sender that went away (a leader that gave up on a snapshot): nodes never
            // half-close.
            serving::Limits {
                half_close: true,
                ..serving::Limits::new(config)
            },
            shutdown.clone(),
            services.clone(),
        );
        RestPort {
            addr,
            handoff,
            server,
            accept,
            shutdown,
            clients_gone,
        }
    }

    /// Closes the port, its connections with it (a start that failed: they are owed
    /// nothing more than the starting answers they had). Awaited (see [`close_port`]).
    async fn close(self) {
        close_port(self.server, self.accept).await;
    }
}

/// The second half of [`start`]: serve what [`raft_node::replay_wal`] recovered. `own_url` is
/// this node's peer URL as [`raft_node::check_flags`] returned it (its `--cluster` entry,
/// which the flags' parser spelled without blanks or a trailing slash). Built in dependency
/// order: the state machine and the queues, the transport and the peer server, the node on
/// its thread ([`spawn_node_thread`]), the handle and the live page, the REST router
/// ([`rest_router`]), then the two ports handed to the REST API and to the peer server.
/// `services` stops what serves the peers, the peer port among them, and the REST port.
/// Gives the running node once given its ports, which the caller keeps until then, to close
/// them should this fail.
async fn start_recovered(
    config: Config,
    own_url: &str,
    mut recovered: raft_node::Recovered,
    tls: TlsSetup,
    (peer_port, rest_port): (&PeerPort, &RestPort),
    services: CancellationToken,
) -> Result<impl FnOnce(PeerPort, RestPort) -> Running + use<>, StartError> {
    let kv = KvStore::new(std::mem::take(&mut recovered.kv), recovered.snapshot_index);
    let (apply_tx, _apply_thread) = kv.spawn_apply_loop(config.id).map_err(|e| {
        StartError::Inconsistent(format!("cannot start the state machine's thread: {e}"))
    })?;
    // Client requests and what the transport hears from peers: two queues, so that neither
    // kind waits behind a flood of the other.
    let (requests_tx, requests_rx) = mpsc::channel(INBOX_CAPACITY);
    let (peers_tx, peers_rx) = mpsc::channel(INBOX_CAPACITY);
    let (shutdown, rest_addr) = (rest_port.shutdown.clone(), rest_port.addr);
    let filter = Arc::new(
        PeerFilter::new(config.id, recovered.cluster_id)
            .with_url(own_url)
            .announcing_values(!config.test_as_older_build),
    );
    let metrics = Arc::new(metrics::Metrics::new(config.id));
    let shared = Arc::new(raft_node::Shared {
        events: events::Events::new(describe::entry_text),
        ..Default::default()
    });
    let events = shared.events.clone();
    let peer_tls = tls.peer_client.is_some();
    let ui_peer_tls = tls.peer_client.clone();
    // One prober, for the check before a value that is not UTF-8 and, if on, the strict
    // reconfiguration check.
    let probes = transport::probe::Prober::new(
        transport::probe_client(tls.peer_client.clone()),
        filter.clone(),
    );
    let values_check = transport::builds::ValuesCheck::new(probes.clone(), filter.clone());
    let prober = config.strict_reconfig_check.then_some(probes);
    let transport = Transport::new(
        filter.clone(),
        peers_tx.clone(),
        tokio::runtime::Handle::current(),
        services.child_token(),
        metrics.clone(),
        tls.peer_client,
        (**recovered.storage.snapshotter()).clone(),
    );
    transport.learn_cluster_id(own_url, &config.cluster);
    let peer_endpoints = PeerServer::new(
        filter,
        peers_tx,
        shared.clone(),
        PeerLimits::from_config(&config),
        &config.snap_dir(),
    )
    .with_rest_listen(rest_addr);
    let env = raft_node::NodeEnv::production();
    let clock = env.clock.clone();
    let node = RaftNode::new(
        &config,
        recovered,
        Box::new(transport),
        apply_tx,
        shared.clone(),
        metrics.clone(),
        env,
    )?;

    let node = node.serve_clients_until(rest_port.clients_gone.clone());
    let exit_rx = spawn_node_thread(config.id, node, requests_rx, peers_rx, shutdown.clone())?;
    // A start that fails from here stops the node's thread too, which ran on otherwise.
    let unstarted = shutdown.clone().drop_guard();

    let handle = NodeHandle::new(
        config.id,
        requests_tx,
        kv,
        config.proposal_timeout(),
        shared,
        metrics,
    )
    .with_clock(clock)
    .with_strict_reconfig(prober)
    .with_values_check(Some(values_check));
    let ui = ui::Ui::new(
        handle.clone(),
        events,
        ui::advertised_rest_url(
            config.listen_host,
            rest_addr.port(),
            own_url,
            tls.rest.is_some(),
        ),
        own_url.to_string(),
        &config.cluster,
        ui_peer_tls,
        shutdown.clone(),
    );
    let rest_router = rest_router(&config, &ui, handle.clone(), peer_tls, rest_addr, &shutdown);
    rest_port.handoff.hand_to(rest_router);
    peer_port
        .handoff
        .hand_to(peer_endpoints.router().merge(ui.peer_routes()));
    let peer_addr = peer_port.addr;
    unstarted.disarm();
    tracing::info!(
        id = config.id,
        rest = %rest_addr,
        peer = %peer_addr,
        build = version::DESCRIBED,
        "raftexample is serving"
    );
    Ok(move |peer_port, rest_port: RestPort| Running {
        node: handle,
        rest_addr,
        peer_addr,
        shutdown,
        services,
        exit: exit_rx,
        rest_server: rest_port.server,
        peer_port,
    })
}

/// Runs `node` (node `id`) on a thread of its own with a single-threaded runtime (see
/// `raft_node`: an fsync then blocks nothing but raft), until it exits or `shutdown` is
/// cancelled: its exit arrives on the channel returned.
fn spawn_node_thread(
    id: u64,
    node: RaftNode,
    requests: mpsc::Receiver<raft_node::Sent>,
    peers: mpsc::Receiver<transport::PeerEvent>,
    shutdown: CancellationToken,
) -> Result<oneshot::Receiver<Exit>, StartError> {
    let (exit_tx, exit_rx) = oneshot::channel();
    std::thread::Builder::new()
        .name(format!("raft-{id}"))
        .spawn(move || {
            let exit = match tokio::runtime::Builder::new_current_thread()
                .enable_all()
                .build()
            {
                Ok(rt) => rt.block_on(node.run(requests, peers, shutdown)),
                Err(err) => Exit::Fatal(format!("cannot start the raft node's runtime: {err}")),
            };
            let _ = exit_tx.send(exit);
        })
        .map_err(|e| StartError::Inconsistent(format!("cannot start the raft thread: {e}")))?;
    Ok(exit_rx)
}

/// The REST port's router: the REST API, with the live page around it. The live page's
/// answers too ask the clients to close their connections once stopping, and its requests
/// pass the same checks as the REST API's.
fn rest_router(
    config: &Config,
    ui: &ui::Ui,
    node: NodeHandle,
    peer_tls: bool,
    rest_addr: SocketAddr,
    shutdown: &CancellationToken,
) -> axum::Router {
    http_api::close_when_stopping(
        http_api::server_checks(
            ui.around(http_api::router(http_api::AppState {
                node,
                max_body_bytes: config.max_body_bytes,
                client_timeout: config.client_timeout(),
                peer_tls,
                rest_addr,
            })),
            config.client_timeout(),
        ),
        shutdown.clone(),
    )
}

fn local_addr(listener: &TcpListener, addr: &str) -> Result<SocketAddr, StartError> {
    listener.local_addr().map_err(|source| StartError::Bind {
        addr: addr.to_string(),
        source,
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::raft_node::ProposalError;
    use crate::transport::starting::Phase;

    /// A port on 127.0.0.1 that was free a moment ago.
    fn free_port() -> u16 {
        std::net::TcpListener::bind("127.0.0.1:0")
            .and_then(|l| l.local_addr())
            .expect("a free port")
            .port()
    }

    /// A start that fails because a port is taken writes nothing: the data dir stays as it
    /// was, so the same command with a free port starts (the WAL records --cluster, and a
    /// WAL left by the failed start used to refuse corrected flags; found by a review).
    #[test]
    fn a_start_refused_for_a_taken_port_writes_nothing() {
        let dir = tempfile::TempDir::new().expect("temp dir");
        let taken = std::net::TcpListener::bind("127.0.0.1:0").expect("a port to hold");
        let peer = free_port();
        let mut config = Config {
            cluster: vec![format!("http://127.0.0.1:{peer}")],
            port: taken.local_addr().expect("its address").port(),
            listen_host: "127.0.0.1".parse().expect("a literal address"),
            data_dir: dir.path().to_path_buf(),
            ..Config::default()
        };
        let runtime = tokio::runtime::Runtime::new().expect("a runtime");
        let err = runtime
            .block_on(start(config.clone()))
            .err()
            .expect("the REST port is taken");
        assert!(err.to_string().contains("(--port)"), "{err}");
        let left: Vec<_> = std::fs::read_dir(dir.path()).expect("data dir").collect();
        assert!(left.is_empty(), "the failed start wrote {left:?}");
        config.port = 0;
        let running = runtime.block_on(start(config)).expect("a free port");
        running.shutdown();
        runtime.block_on(running.wait());
    }

    /// A `--port` that is this node's own peer port, on an address both listeners would
    /// take, is refused before anything is bound, saying the two must differ: the REST bind
    /// failed as if another process held the port (review 111). Listeners that do not
    /// collide are left alone.
    #[test]
    fn a_rest_port_that_is_the_nodes_own_peer_port_is_refused() {
        // --port, --listen-host, this node's URL in --cluster, and whether that is refused.
        for (port, host, url, refused) in [
            (9121, "0.0.0.0", "http://127.0.0.1:9121", true),
            (9121, "127.0.0.1", "http://127.0.0.1:9121", true),
            (9121, "::", "http://127.0.0.1:9121", true),
            (9121, "127.0.0.1", "http://0.0.0.0:9121", true),
            (9121, "::1", "http://[::1]:9121", true),
            (9121, "0.0.0.0", "http://localhost:9121", true),
            (9121, "127.0.0.1", "http://localhost:9121", true),
            (9121, "0.0.0.0", "http://127.0.0.1:9021", false),
            (9121, "127.0.0.2", "http://127.0.0.1:9121", false),
            (9121, "0.0.0.0", "http://[::1]:9121", false),
            (9121, "127.0.0.1", "http://node1.example:9121", false),
            (9021, "127.0.0.1", "http://localhost:9121", false),
        ] {
            let config = Config {
                port,
                listen_host: host.parse().expect("a literal address"),
                ..Config::default()
            };
            let Err(err) = check_ports(&config, url) else {
                assert!(!refused, "{host}, {url}: taken");
                continue;
            };
            let text = err.to_string();
            assert!(refused, "{host}, {url}: {text}");
            assert!(
                text.starts_with(&format!("--port 9121 is this node's own peer port ({url}")),
                "{text}"
            );
            assert!(
                text.contains("the REST port and the peer port must differ")
                    && text.contains("9121 and 9021"),
                "{text}"
            );
        }
    }

    /// The same refusal from `start`, before a port is bound or the data dir touched.
    #[tokio::test]
    async fn a_start_whose_rest_port_is_its_peer_port_is_refused_before_binding() {
        let dir = tempfile::TempDir::new().expect("temp dir");
        let port = free_port();
        let config = Config {
            cluster: vec![format!("http://127.0.0.1:{port}")],
            port,
            data_dir: dir.path().to_path_buf(),
            ..Config::default()
        };
        let err = start(config).await.err().expect("refused");
        assert!(matches!(err, StartError::BadFlags(_)), "{err}");
        assert!(err.to_string().contains("must differ"), "{err}");
        let left: Vec<_> = std::fs::read_dir(dir.path()).expect("data dir").collect();
        assert!(left.is_empty(), "the refused start wrote {left:?}");
    }

    /// A port in use, the REST port or the peer port, says what may hold it and what to do
    /// about it: the OS's "Address already in use" left that to a newcomer (a campaign).
    #[tokio::test]
    async fn a_taken_port_says_what_may_hold_it_and_what_to_do() {
        let holder = TcpListener::bind("127.0.0.1:0")
            .await
            .expect("a port to hold");
        let taken = holder.local_addr().expect("its address").port();
        let config = |port| Config {
            port,
            listen_host: "127.0.0.1".parse().expect("a literal address"),
            ..Config::default()
        };
        for (which, config, own_url, remedy) in [
            (
                "--port",
                config(taken),
                format!("http://127.0.0.1:{}", free_port()),
                "or pick another port with --port",
            ),
            (
                "--cluster",
                config(0),
                format!("http://127.0.0.1:{taken}"),
                "the other members know this node by that URL",
            ),
        ] {
            let Err(err) = Ports::bind(&config, &own_url).await else {
                panic!("{which}: port {taken} is held");
            };
            let text = err.to_string();
            assert!(text.starts_with("cannot listen on 127.0.0.1:"), "{text}");
            assert!(text.contains(which), "{text}");
            assert!(text.contains("another process holds that port"), "{text}");
            assert!(text.contains("an earlier run of this node"), "{text}");
            assert!(text.contains(remedy), "{text}");
            assert_eq!(text.lines().count(), 1, "{text}");
        }
    }

    /// A replay that waits until the sender sends (or is dropped), then replays: a node whose
    /// log takes as long as the test says to replay.
    fn held_replay() -> (
        std::sync::mpsc::Sender<()>,
        impl FnOnce(&Config) -> Result<raft_node::Recovered, StartError> + Send + 'static,
    ) {
        let (release, released) = std::sync::mpsc::channel();
        let replay = move |config: &Config| {
            let _ = released.recv();
            raft_node::replay_wal(config)
        };
        (release, replay)
    }

    /// A node's config on 127.0.0.1: node `id` of the nodes at `peers` (URLs), in `dir`.
    fn node(id: u64, peers: &[String], dir: &std::path::Path) -> Config {
        Config {
            id,
            cluster: peers.to_vec(),
            port: 0,
            listen_host: "127.0.0.1".parse().expect("a literal address"),
            data_dir: dir.to_path_buf(),
            ..Config::default()
        }
    }

    /// Waits, within 20 s, until `addr` takes connections.
    async fn listening(addr: &str) {
        let deadline = std::time::Instant::now() + Duration::from_secs(20);
        while tokio::net::TcpStream::connect(addr).await.is_err() {
            assert!(
                std::time::Instant::now() < deadline,
                "{addr} never listened"
            );
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
    }

    /// Waits, within 20 s, until `addr` (`what`) refuses connections.
    async fn closed(addr: &str, what: &str) {
        let deadline = std::time::Instant::now() + Duration::from_secs(20);
        while tokio::net::TcpStream::connect(addr).await.is_ok() {
            assert!(std::time::Instant::now() < deadline, "{what} still answers");
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    }

    /// A voter that lost its data, started again as a member of the first cluster beside the
    /// only other member, whose replay is slow (held back until the voter has waited past its
    /// half second): the other member's peer port says it is starting and holds data, the
    /// voter waits for its real answer (its REST port says so), and is refused with the
    /// remedy. Before, the member's port was bound but not served while it replayed, and the
    /// voter started anew at the half second (review 106, L-E).
    #[test]
    fn a_wiped_voter_waits_for_a_member_still_replaying_and_is_refused() {
        let log = crate::raft_node::storage::tests::Captured::default();
        let _logging = tracing::subscriber::set_default(log.subscriber());
        let dirs = [(); 2].map(|_| tempfile::TempDir::new().expect("temp dir"));
        let peers: Vec<String> = (0..2)
            .map(|_| format!("http://127.0.0.1:{}", free_port()))
            .collect();
        let config = |id: u64| node(id, &peers, dirs[id as usize - 1].path());
        let runtime = tokio::runtime::Runtime::new().expect("a runtime");
        runtime.block_on(async {
            // Node 2 has run: a write through it is taken once its session is applied.
            let (one, two) = tokio::join!(start(config(1)), start(config(2)));
            let (one, two) = (one.expect("node 1 starts"), two.expect("node 2 starts"));
            let deadline = std::time::Instant::now() + Duration::from_secs(20);
            while two.node.put("/k".into(), "v".into()).await.is_err() {
                assert!(
                    std::time::Instant::now() < deadline,
                    "no write through node 2"
                );
                tokio::time::sleep(Duration::from_millis(20)).await;
            }
            one.shutdown();
            two.shutdown();
            one.wait().await;
            two.wait().await;
            let rest = free_port();
            let wiped = Config {
                port: rest,
                ..config(2)
            };
            std::fs::remove_dir_all(wiped.wal_dir()).expect("node 2's WAL");
            std::fs::remove_dir_all(wiped.snap_dir()).expect("node 2's snapshots");

            let (release, replay) = held_replay();
            let one = tokio::spawn(start_replaying(config(1), CancellationToken::new(), replay));
            listening(peers[0].trim_start_matches("http://")).await;
            let two = start(wiped);
            let mut two = std::pin::pin!(two);
            let waiting = "node 1 holds data and is still starting; waiting for its answer";
            let deadline = std::time::Instant::now() + Duration::from_secs(20);
            while log.count(waiting) == 0 {
                assert!(std::time::Instant::now() < deadline, "{}", log.text());
                tokio::select! {
                    started = two.as_mut() => panic!(
                        "node 2 did not wait for node 1, which replays its log: {:?}",
                        started.map(|r| r.peer_addr)
                    ),
                    _ = tokio::time::sleep(Duration::from_millis(20)) => {}
                }
            }
            // Its REST port says whom it waits for (review 119, N2).
            let mut conn = tokio::net::TcpStream::connect(("127.0.0.1", rest))
                .await
                .expect("node 2's REST port");
            let ready = exchange(&mut conn, "GET", "/-/ready", "").await;
            assert_eq!(
                (ready.status, ready.body.as_str()),
                (
                    503,
                    "not ready: node 2 is starting (waiting for node 1, which holds data and \
                     is itself starting, to say whether this node has run before)\n"
                )
            );
            release.send(()).expect("node 1's replay waits");
            let refused = tokio::time::timeout(Duration::from_secs(20), two)
                .await
                .expect("node 1 answers once it has started");
            let Err(err) = refused else {
                panic!("node 2 started anew");
            };
            assert!(matches!(err, StartError::LostData(_)), "{err}");
            let text = err.to_string();
            assert!(text.contains("node 1 refuses this node"), "{text}");
            assert!(text.contains("has run since it was last added"), "{text}");
            assert!(
                text.contains("remove it and add it back (DELETE /2"),
                "{text}"
            );
            let one = one.await.expect("node 1's task").expect("node 1 starts");
            one.shutdown();
            one.wait().await;
        });
    }

    /// A data dir that holds another cluster's WAL (the single-node walk-through's, started
    /// again with a three-node --cluster) is refused from its metadata before the peer port is
    /// served: it never says it holds data, which kept the other members of a new cluster
    /// waiting some 10 s for a node that then exited (review 115, L1). The replay is not run.
    #[test]
    fn a_foreign_data_dir_is_refused_before_the_peer_port_says_it_holds_data() {
        // Not the first peer's URL, which makes node 1's old list a prefix of the new one: the
        // metadata passes that (a cluster grown since may be restarted with a longer list), and
        // the log refuses it (the next test).
        let err = refused_before_the_replay(|peers| {
            std::iter::repeat_with(|| format!("http://127.0.0.1:{}", free_port()))
                .find(|url| !peers.contains(url))
                .expect("an endless supply of ports has one not in three")
        });
        let text = err.to_string();
        assert!(text.contains("belongs to a cluster started with"), "{text}");
    }

    /// As above, node 1's old URL the first of the three (a port handed out twice did that in
    /// a test run: fa03123): the lists agree as far as the shorter goes, and the data dir is
    /// refused from its log, as a cluster of one node among strangers, still before the peer
    /// port says it holds data.
    #[test]
    fn a_lone_nodes_data_dir_is_refused_before_the_peer_port_says_it_holds_data() {
        let err = refused_before_the_replay(|peers| peers[0].clone());
        let text = err.to_string();
        assert!(text.contains("node(s) 2, 3 were never members"), "{text}");
    }

    /// Leaves in node 1's data dir a cluster of one node at the URL that `old_url` picks given
    /// three new peers' URLs, then starts node 1 of those three on it: the start must be
    /// refused as a foreign data dir before its log is replayed (so before its peer port is
    /// served). Returns the refusal.
    fn refused_before_the_replay(old_url: impl FnOnce(&[String]) -> String) -> StartError {
        let dir = tempfile::TempDir::new().expect("temp dir");
        let peers: Vec<String> = (0..3)
            .map(|_| format!("http://127.0.0.1:{}", free_port()))
            .collect();
        let alone = [old_url(&peers)];
        drop(raft_node::replay_wal(&node(1, &alone, dir.path())).expect("node 1 alone"));
        let replayed = Arc::new(std::sync::atomic::AtomicBool::new(false));
        let replay = {
            let replayed = replayed.clone();
            move |config: &Config| {
                replayed.store(true, std::sync::atomic::Ordering::SeqCst);
                raft_node::replay_wal(config)
            }
        };
        let runtime = tokio::runtime::Runtime::new().expect("a runtime");
        let config = node(1, &peers, dir.path());
        let started = runtime.block_on(start_replaying(config, CancellationToken::new(), replay));
        let Err(err) = started else {
            panic!("started on another cluster's data");
        };
        assert!(matches!(err, StartError::ForeignDataDir(_)), "{err}");
        assert!(
            !replayed.load(std::sync::atomic::Ordering::SeqCst),
            "refused only by the replay, after the peer port said it held data: {err}"
        );
        err
    }

    /// Node 1's data dir given a `--cluster` in another order, which puts node 1 at node 2's
    /// URL, while node 2 runs: the port is taken, but the answer is where the data belongs,
    /// not "stop the process that holds it" (that is node 2, a running member).
    #[test]
    fn a_data_dir_started_at_a_running_members_url_says_where_it_belongs() {
        let dir = tempfile::TempDir::new().expect("temp dir");
        let peers: Vec<String> = (0..3)
            .map(|_| format!("http://127.0.0.1:{}", free_port()))
            .collect();
        drop(raft_node::replay_wal(&node(1, &peers, dir.path())).expect("node 1 of three"));
        let node_2 = std::net::TcpListener::bind(peers[1].trim_start_matches("http://"))
            .expect("node 2's port, free a moment ago");
        let swapped = [peers[1].clone(), peers[0].clone(), peers[2].clone()];
        let runtime = tokio::runtime::Runtime::new().expect("a runtime");
        let started = runtime.block_on(start_replaying(
            node(1, &swapped, dir.path()),
            CancellationToken::new(),
            raft_node::replay_wal,
        ));
        drop(node_2);
        let Err(err) = started else {
            panic!("started at node 2's URL");
        };
        let text = err.to_string();
        assert!(matches!(err, StartError::ForeignDataDir(_)), "{text}");
        assert!(
            text.contains(&format!(
                "belongs to a cluster started with --cluster {}",
                peers.join(",")
            )),
            "{text}"
        );
    }

    /// A start given up while the node replays (a library caller's timeout drops the future)
    /// closes the peer port: it said "starting" for the life of the process, and a node that
    /// asked it waited for good (review 115, L3).
    #[test]
    fn a_start_given_up_while_replaying_closes_the_peer_port() {
        let dir = tempfile::TempDir::new().expect("temp dir");
        let peer = format!("127.0.0.1:{}", free_port());
        let config = node(1, &[format!("http://{peer}")], dir.path());
        let runtime = tokio::runtime::Runtime::new().expect("a runtime");
        let (release, replay) = held_replay();
        runtime.block_on(async {
            let started = tokio::spawn(start_replaying(config, CancellationToken::new(), replay));
            listening(&peer).await;
            started.abort();
            assert!(started.await.is_err_and(|e| e.is_cancelled()), "given up");
            closed(&peer, "the peer port of a start given up").await;
        });
        // The replay, still held on its blocking thread, may now end.
        drop(release);
    }

    /// A TLS peer port answers as a starting node over TLS from the moment it is bound (a
    /// plain request gets the TLS port's "speaks HTTPS", not the starting node's answer), and
    /// hands over to the peer server on the same port once the node has replayed its log.
    #[test]
    fn a_tls_peer_port_answers_as_a_starting_node_over_tls() {
        let dir = tempfile::TempDir::new().expect("temp dir");
        let certs = dir.path().join("certs");
        let hosts = ["127.0.0.1".to_string()];
        certs::run(&certs, 1, &hosts, &mut Vec::new()).expect("certificates");
        let peer = format!("127.0.0.1:{}", free_port());
        let config = Config {
            peer_cert_file: Some(certs.join("node1.crt")),
            peer_key_file: Some(certs.join("node1.key")),
            peer_trusted_ca_file: Some(certs.join("ca.crt")),
            ..node(1, &[format!("https://{peer}")], dir.path())
        };
        let tls = TlsSetup::load(&config).expect("the certificates load");
        let client = transport::http_client(tls.peer_client);
        let join = |scheme: &str| {
            hyper::Request::get(format!("{scheme}://{peer}{}", transport::JOIN_PATH))
                .header(transport::HEADER_FROM, "2")
                .header(transport::HEADER_TO, "1")
                .header(transport::HEADER_URL, "https://127.0.0.1:9")
                .body(http_body_util::BodyExt::boxed(http_body_util::Empty::new()))
                .expect("a valid request")
        };
        // Within 10 s: a port bound but not served never answers.
        let ask = |scheme| {
            let asked = client.request(join(scheme));
            async move {
                tokio::time::timeout(Duration::from_secs(10), asked)
                    .await
                    .expect("an answer within 10 s")
                    .expect("an answer")
            }
        };
        let runtime = tokio::runtime::Runtime::new().expect("a runtime");
        runtime.block_on(async {
            let (release, replay) = held_replay();
            let started = tokio::spawn(start_replaying(config, CancellationToken::new(), replay));
            listening(&peer).await;
            let answer = ask("https").await;
            assert_eq!(answer.status(), hyper::StatusCode::SERVICE_UNAVAILABLE);
            assert_eq!(transport::starting::said(answer.headers()), Some(false));
            let plain = ask("http").await;
            assert_eq!(plain.status(), hyper::StatusCode::BAD_REQUEST, "plain HTTP");
            assert_eq!(transport::starting::said(plain.headers()), None);

            release.send(()).expect("the replay waits");
            let running = started.await.expect("the task").expect("the node starts");
            let answer = ask("https").await;
            assert_eq!(transport::starting::said(answer.headers()), None, "started");
            assert_eq!(
                answer.status(),
                hyper::StatusCode::NOT_FOUND,
                "node 2: no member"
            );
            running.shutdown();
            running.wait().await;
        });
    }

    /// An answer read off a connection: its status, its head and its body.
    struct Answer {
        status: u16,
        head: String,
        body: String,
    }

    impl Answer {
        /// The value of the header `name`, if the answer has one.
        fn header(&self, name: &str) -> Option<&str> {
            self.head
                .lines()
                .filter_map(|line| line.split_once(':'))
                .find(|(n, _)| n.eq_ignore_ascii_case(name))
                .map(|(_, value)| value.trim())
        }
    }

    /// Sends `method path` with `body` on `conn`, kept alive, and reads its answer (whose
    /// body has a Content-Length, as every answer here but a 204 does), within 10 s.
    async fn exchange(
        conn: &mut tokio::net::TcpStream,
        method: &str,
        path: &str,
        body: &str,
    ) -> Answer {
        use tokio::io::{AsyncReadExt, AsyncWriteExt};
        let asked = format!(
            "{method} {path} HTTP/1.1\r\nHost: 127.0.0.1\r\nContent-Length: {}\r\n\r\n{body}",
            body.len()
        );
        let answered = async {
            conn.write_all(asked.as_bytes()).await.expect("sends");
            let mut got = Vec::new();
            let mut more = async |got: &mut Vec<u8>| {
                let mut buf = [0; 1024];
                let n = conn.read(&mut buf).await.expect("reads");
                assert!(n > 0, "closed: {:?}", String::from_utf8_lossy(got));
                got.extend_from_slice(&buf[..n]);
            };
            let head_len = loop {
                if let Some(at) = got.windows(4).position(|w| w == b"\r\n\r\n") {
                    break at + 4;
                }
                more(&mut got).await;
            };
            let head = String::from_utf8_lossy(&got[..head_len]).into_owned();
            let mut answer = Answer {
                status: head
                    .split(' ')
                    .nth(1)
                    .and_then(|code| code.parse().ok())
                    .unwrap_or_else(|| panic!("no status line: {head:?}")),
                head,
                body: String::new(),
            };
            let length: usize = match answer.header("content-length") {
                _ if answer.status == 204 => 0,
                Some(n) => n.parse().expect("a length"),
                None => panic!("no length: {:?}", answer.head),
            };
            while got.len() < head_len + length {
                more(&mut got).await;
            }
            answer.body = String::from_utf8_lossy(&got[head_len..]).into_owned();
            answer
        };
        tokio::time::timeout(Duration::from_secs(10), answered)
            .await
            .unwrap_or_else(|_| panic!("no answer to {method} {path} within 10 s"))
    }

    /// The REST port answers from the moment it is bound, as a starting node, while the node
    /// replays its log (held here): `/-/health` is 200 saying it is starting (a liveness probe
    /// must not kill it), `/-/ready` 503 saying why, a key 503 saying what the node is doing,
    /// with `Retry-After: 1`. Once the node has started, the connection opened meanwhile, on
    /// the same listener, is served by the REST API. Before, the port was bound but answered
    /// nobody until the node served, and each of these requests hung (review 119, N2).
    #[test]
    fn the_rest_port_answers_as_a_starting_node_until_the_node_serves() {
        let dir = tempfile::TempDir::new().expect("temp dir");
        let port = free_port();
        let rest = format!("127.0.0.1:{port}");
        let peers = [format!("http://127.0.0.1:{}", free_port())];
        let config = Config {
            port,
            ..node(1, &peers, dir.path())
        };
        let runtime = tokio::runtime::Runtime::new().expect("a runtime");
        runtime.block_on(async {
            let (release, replay) = held_replay();
            let started = tokio::spawn(start_replaying(config, CancellationToken::new(), replay));
            listening(&rest).await;
            let mut conn = tokio::net::TcpStream::connect(&rest)
                .await
                .expect("connects");
            let health = exchange(&mut conn, "GET", "/-/health", "").await;
            let starting = "node 1 is starting (replaying its log)";
            assert_eq!(health.status, 200, "{}", health.body);
            assert_eq!(health.body, format!("ok: {starting}\n"));
            let ready = exchange(&mut conn, "GET", "/-/ready", "").await;
            assert_eq!(ready.status, 503, "{}", ready.body);
            assert_eq!(ready.body, format!("not ready: {starting}\n"));
            // A PUT's body is read to its end, larger than hyper reads ahead, so that the
            // client gets the answer and the connection stays usable.
            let large = "x".repeat(1 << 20);
            for (method, body) in [("GET", ""), ("PUT", large.as_str())] {
                let key = exchange(&mut conn, method, "/my-key", body).await;
                assert_eq!(key.status, 503, "{method}: {}", key.body);
                assert_eq!(
                    key.body,
                    format!(
                        "{starting} and serves no requests yet: this one was not taken and \
                         will not happen; ask again\n"
                    ),
                );
                assert_eq!(key.header("retry-after"), Some("1"), "{method}");
            }

            release.send(()).expect("the replay waits");
            let running = started.await.expect("the task").expect("the node starts");
            assert_eq!(running.rest_addr.to_string(), rest);
            let health = exchange(&mut conn, "GET", "/-/health", "").await;
            assert_eq!((health.status, health.body.as_str()), (200, "ok\n"));
            let deadline = std::time::Instant::now() + Duration::from_secs(20);
            loop {
                let put = exchange(&mut conn, "PUT", "/my-key", "hello").await;
                if put.status == 204 {
                    break;
                }
                assert!(
                    std::time::Instant::now() < deadline,
                    "no write: {} {}",
                    put.status,
                    put.body
                );
                tokio::time::sleep(Duration::from_millis(20)).await;
            }
            let get = exchange(&mut conn, "GET", "/my-key", "").await;
            assert_eq!((get.status, get.body.as_str()), (200, "hello"));
            running.shutdown();
            running.wait().await;
        });
    }

    /// Over TLS (`--cert-file`, `--key-file`), the REST port's starting answers are TLS too:
    /// an HTTPS client gets the starting node's, a plain request the TLS port's own refusal,
    /// and once the node has started, the same port serves the REST API over TLS.
    #[test]
    fn a_tls_rest_port_answers_as_a_starting_node_over_tls() {
        let dir = tempfile::TempDir::new().expect("temp dir");
        let certs = dir.path().join("certs");
        certs::run(&certs, 1, &["127.0.0.1".to_string()], &mut Vec::new()).expect("certificates");
        let port = free_port();
        let rest = format!("127.0.0.1:{port}");
        let peers = [format!("http://127.0.0.1:{}", free_port())];
        let config = Config {
            port,
            cert_file: Some(certs.join("node1.crt")),
            key_file: Some(certs.join("node1.key")),
            ..node(1, &peers, dir.path())
        };
        let ca = std::fs::read(certs.join("ca.crt")).expect("the CA");
        let client = reqwest::Client::builder()
            .use_rustls_tls()
            .tls_built_in_root_certs(false)
            .add_root_certificate(reqwest::Certificate::from_pem(&ca).expect("a CA in PEM"))
            .timeout(Duration::from_secs(10))
            .build()
            .expect("a TLS client");
        let ask = |scheme: &str, path: &str| {
            let asked = client.get(format!("{scheme}://{rest}{path}")).send();
            async move {
                let answer = asked.await.expect("an answer within 10 s");
                let retry = answer.headers().get("retry-after").cloned();
                let status = answer.status().as_u16();
                let text = answer.text().await.expect("the body");
                (status, retry, text)
            }
        };
        let runtime = tokio::runtime::Runtime::new().expect("a runtime");
        runtime.block_on(async {
            let (release, replay) = held_replay();
            let started = tokio::spawn(start_replaying(config, CancellationToken::new(), replay));
            listening(&rest).await;
            let starting = "node 1 is starting (replaying its log)";
            let (status, _, text) = ask("https", "/-/health").await;
            assert_eq!((status, text), (200, format!("ok: {starting}\n")));
            let (status, _, text) = ask("https", "/-/ready").await;
            assert_eq!((status, text), (503, format!("not ready: {starting}\n")));
            let (status, retry, text) = ask("https", "/my-key").await;
            assert_eq!(status, 503, "{text}");
            assert_eq!(retry.as_ref().map(|v| v.as_bytes()), Some(&b"1"[..]));
            let (status, _, text) = ask("http", "/-/health").await;
            assert_eq!(status, 400, "plain HTTP: {text}");
            assert!(
                text.contains("this port speaks HTTPS"),
                "plain HTTP: {text}"
            );

            release.send(()).expect("the replay waits");
            let running = started.await.expect("the task").expect("the node starts");
            let (status, _, text) = ask("https", "/-/health").await;
            assert_eq!((status, text.as_str()), (200, "ok\n"), "started");
            running.shutdown();
            running.wait().await;
        });
    }

    /// A start that ends while the node replays its log closes the REST port, as it does the
    /// peer port: one given up (its future dropped by a library caller's timeout) at once, and
    /// one that fails by the time it returns, so that a start tried again in the same process
    /// binds it; this one's port speaks TLS, with a handshake under way (the accept loop
    /// holds the port). Left open, the port said "starting" for the life of the process, to
    /// clients and probes that would wait for good.
    #[test]
    fn a_start_that_ends_while_replaying_closes_the_rest_port() {
        let runtime = tokio::runtime::Runtime::new().expect("a runtime");
        for given_up in [false, true] {
            let dir = tempfile::TempDir::new().expect("temp dir");
            let certs = dir.path().join("certs");
            let hosts = ["127.0.0.1".to_string()];
            certs::run(&certs, 1, &hosts, &mut Vec::new()).expect("certificates");
            let port = free_port();
            let rest = format!("127.0.0.1:{port}");
            let peers = [format!("http://127.0.0.1:{}", free_port())];
            let tls = !given_up;
            let config = Config {
                port,
                cert_file: tls.then(|| certs.join("node1.crt")),
                key_file: tls.then(|| certs.join("node1.key")),
                ..node(1, &peers, dir.path())
            };
            let (release, released) = std::sync::mpsc::channel::<()>();
            let replay = move |_: &Config| {
                let _ = released.recv();
                Err(StartError::Inconsistent("a replay that fails".into()))
            };
            runtime.block_on(async {
                let started = start_replaying(config, CancellationToken::new(), replay);
                let started = tokio::spawn(started);
                listening(&rest).await;
                let mut conn = tokio::net::TcpStream::connect(&rest)
                    .await
                    .expect("connects");
                if given_up {
                    let health = exchange(&mut conn, "GET", "/-/health", "").await;
                    assert_eq!(health.status, 200, "{}", health.body);
                    started.abort();
                    assert!(started.await.is_err_and(|e| e.is_cancelled()), "given up");
                    closed(&rest, "the REST port of a start given up").await;
                } else {
                    // A TLS record's first byte: a handshake begun, never finished.
                    tokio::io::AsyncWriteExt::write_all(&mut conn, &[0x16])
                        .await
                        .expect("sends a byte");
                    release.send(()).expect("the replay waits");
                    let failed = started.await.expect("the task");
                    let failed = failed.err().expect("the replay fails").to_string();
                    assert!(failed.contains("a replay that fails"), "{failed}");
                    let refused = tokio::net::TcpStream::connect(&rest).await;
                    assert!(refused.is_err(), "the REST port of a failed start is open");
                }
            });
            // The replay, still held on its blocking thread if given up, may now end.
            drop(release);
        }
    }

    /// A failed fsync is final: the node stops with an error naming the WAL file, and the
    /// write whose batch could not be synced is never acknowledged. The data dir then opens
    /// again from what is on disk.
    #[test]
    fn a_failed_sync_stops_the_node_and_acknowledges_nothing() {
        let dir = tempfile::TempDir::new().expect("temp dir");
        let port = free_port();
        let config = Config {
            cluster: vec![format!("http://127.0.0.1:{port}")],
            port: 0,
            listen_host: "127.0.0.1".parse().expect("a literal address"),
            data_dir: dir.path().to_path_buf(),
            ..Config::default()
        };
        let runtime = tokio::runtime::Runtime::new().expect("a runtime");
        runtime.block_on(async {
            let mut recovered = raft_node::replay_wal(&config).expect("bootstrap");
            recovered
                .wal
                .as_mut()
                .expect("a bootstrapped node has a WAL")
                .inject_sync_failure();
            let own_url = raft_node::check_flags(&config).expect("valid flags");
            let ports = Ports::bind(&config, &own_url).await.expect("free ports");
            let services = CancellationToken::new();
            let peer = port_listener(ports.peer, None, tls::Port::Peer).expect("a plain listener");
            let rest = port_listener(ports.rest, None, tls::Port::Rest).expect("a plain listener");
            let peer_port = PeerPort::serve(&config, peer, true, &services);
            let rest_port = RestPort::serve(&config, rest, Phase::new(false), &services);
            let running = start_recovered(
                config.clone(),
                &own_url,
                recovered,
                TlsSetup::default(),
                (&peer_port, &rest_port),
                services,
            )
            .await
            .expect("start")(peer_port, rest_port);
            let put = running.node.put("/k".into(), "v".into()).await;
            assert!(
                matches!(
                    put,
                    Err(ProposalError::Stopped(_)
                        | ProposalError::StoppedUnproposed(_)
                        | ProposalError::NoLeader(_))
                ),
                "a write must not be acknowledged: {put:?}"
            );
            let kv = running.node.kv().clone();
            match running.wait().await {
                Exit::Fatal(reason) => {
                    assert!(reason.contains("raftexample-1"), "{reason}");
                    assert!(reason.contains("sync"), "{reason}");
                }
                other => panic!("expected a fatal stop, got {other:?}"),
            }
            assert_eq!(kv.get("/k"), None);

            let running = start(config).await.expect("restart from disk");
            let node = running.node.clone();
            let deadline = std::time::Instant::now() + Duration::from_secs(10);
            while node.put("/k".into(), "v".into()).await.is_err() {
                assert!(
                    std::time::Instant::now() < deadline,
                    "no write after restart"
                );
                tokio::time::sleep(Duration::from_millis(20)).await;
            }
            running.shutdown();
            running.wait().await;
        });
    }
}
