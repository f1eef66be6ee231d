//! A node inside the calling process, with no socket and no real disk: the same raft node,
//! state machine and REST router as [`crate::start`] runs, on a [`MemNet`] and a file system
//! of the caller's choosing (an in-memory [`crate::disk::MemFs`], say), on the caller's tokio
//! runtime, applying entries on the raft node's own task. A test can then pause tokio's clock:
//! elections, heartbeats and timeouts take no wall-clock time, and a cluster test runs in
//! milliseconds. A node on an empty data dir asks the members first, as [`crate::start`]'s
//! does: with `--join` until they admit it ([`MemNet::join`]), without it once. What only real
//! processes show (signals, ports, exit codes) stays with the whole-binary tests.

use std::sync::Arc;

use axum::Router;
use tokio::sync::mpsc;
use tokio::task::JoinHandle;
use tokio_util::sync::CancellationToken;

use crate::config::Config;
use crate::disk::SharedFs;
use crate::http_api;
use crate::kvstore::{Applier, KvStore};
use crate::metrics::Metrics;
use crate::raft_node::{self, Exit, NodeEnv, NodeHandle, RaftNode, StartError};
use crate::request::Shared;
use crate::transport::mem::MemNet;
use crate::wal::Wal;

/// Client requests queued before senders wait (as [`crate::start`]).
const INBOX_CAPACITY: usize = 16 * 1024;

/// A node started by [`start`].
pub struct MemNode {
    /// Talks to the raft node.
    pub node: NodeHandle,
    /// The node's REST API, to be called without a socket (`tower::ServiceExt::oneshot`).
    pub router: Router,
    shutdown: CancellationToken,
    exit: JoinHandle<Exit>,
    /// Ends a joining node's questions to the members.
    lookup: CancellationToken,
    net: MemNet,
    id: u64,
}

impl MemNode {
    /// Asks the node to stop (it hands leadership over and answers what is in flight).
    pub fn shutdown(&self) {
        self.shutdown.cancel();
    }

    /// Waits until the node stops, and takes it off the network.
    pub async fn wait(self) -> Exit {
        let exit = self
            .exit
            .await
            .unwrap_or_else(|e| Exit::Fatal(format!("the raft node's task failed: {e}")));
        self.lookup.cancel();
        self.net.detach(self.id);
        exit
    }

    /// Whether the node's task has ended (it stopped on its own: removed, say), though
    /// nobody has waited for it yet.
    pub fn has_stopped(&self) -> bool {
        self.exit.is_finished()
    }

    /// Stops the node at once, as a crash would: nothing is flushed, and the node's task is
    /// dropped where it stands (its disk keeps what it had synced, and more). Returns once the
    /// task is gone, and with it its hold on the data dir's lock: the node can start again.
    pub async fn crash(self) {
        self.exit.abort();
        self.lookup.cancel();
        self.net.detach(self.id);
        // Its error says the task was cancelled, as asked (or how it ended before that).
        let _ = self.exit.await;
    }
}

/// Starts node `config.id` on `net`, its storage on `fs`.
pub async fn start(config: Config, net: &MemNet, fs: SharedFs) -> Result<MemNode, StartError> {
    let own_url = raft_node::check_flags(&config)?;
    // As `crate::start`: a member of the first cluster on an empty data dir would make its
    // first entries again, which it must not if its id has run (see `transport::join`).
    if !config.join && !Wal::exists_on(&*fs, &config.wal_dir()) && config.cluster.len() > 1 {
        net.before_bootstrap(config.id, &own_url)
            .map_err(StartError::LostData)?;
    }
    let mut recovered = raft_node::replay_wal_on(&config, fs.clone())?;
    let kv = KvStore::new(std::mem::take(&mut recovered.kv), recovered.snapshot_index);
    let (requests_tx, requests_rx) = mpsc::channel(INBOX_CAPACITY);
    let joining = recovered.cluster_id == 0;
    let (endpoint, peers_rx) = if joining {
        net.attach_joining(config.id)
    } else {
        net.attach(config.id)
    };
    let shared = Arc::new(Shared::default());
    let endpoint = endpoint
        .with_snapshots(recovered.storage.snapshotter().clone())
        .with_shared(shared.clone());
    let metrics = Arc::new(Metrics::new(config.id));
    let env = NodeEnv::production();
    let clock = env.clock.clone();
    let node = RaftNode::new(
        &config,
        recovered,
        Box::new(endpoint),
        Applier::inline(kv.clone()),
        shared.clone(),
        metrics.clone(),
        env,
    )?;
    let shutdown = CancellationToken::new();
    let exit = tokio::spawn(node.run(requests_rx, peers_rx, shutdown.clone()));
    let lookup = shutdown.child_token();
    if joining {
        tokio::spawn({
            let net = net.clone();
            let lookup = lookup.clone();
            async move { net.join(config.id, own_url, lookup).await }
        });
    }
    let handle = NodeHandle::new(
        config.id,
        requests_tx,
        kv,
        config.proposal_timeout(),
        shared,
        metrics,
    )
    .with_clock(clock)
    // Peers have no port to probe here, and every node runs this build.
    .with_strict_reconfig(None)
    .with_values_check(None);
    let router = http_api::close_when_stopping(
        http_api::router(http_api::AppState {
            node: handle.clone(),
            max_body_bytes: config.max_body_bytes,
            client_timeout: config.client_timeout(),
            peer_tls: false,
            // No socket: the address the flags give, which a test may name.
            rest_addr: std::net::SocketAddr::new(config.listen_host, config.port),
        }),
        shutdown.clone(),
    );
    Ok(MemNode {
        node: handle,
        router,
        shutdown,
        exit,
        lookup,
        net: net.clone(),
        id: config.id,
    })
}
