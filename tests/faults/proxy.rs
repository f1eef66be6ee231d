//! A fault-injecting TCP proxy in front of each node's peer port, for delay: the kernels of
//! these machines lack `tc netem`, so, as etcd's robustness suite does, the bytes of every peer
//! connection pass through a proxy that can hold them back.
//!
//! The proxy of node `j` runs in `j`'s namespace on [`PROXY_PORT`]; a nat rule there redirects
//! every connection that arrives for `j`'s `--cluster` URL to it (see `netns.rs`), and it
//! forwards the bytes to the node. So every message *to* `j` crosses it, and so does every reply
//! `j` sends on those connections. [`Delays`] sets a latency for each direction, plus jitter:
//! each chunk read is written out once its due time has come, in order (jitter never reorders
//! bytes of one TCP stream, as on a real network). Latency does not cut throughput: chunks are
//! queued, not sent one round trip apart.

use std::net::SocketAddr;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::thread::JoinHandle;
use std::time::Duration;

use rand::RngExt;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::tcp::{OwnedReadHalf, OwnedWriteHalf};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::mpsc;
use tokio::time::Instant;
use tokio_util::sync::CancellationToken;

use crate::netns::{self, PEER_PORT, PROXY_PORT, node_ip};

/// Chunks in flight per direction of a connection: enough for a window of raft messages, and a
/// bound, so a stalled node makes its senders wait instead of filling memory.
const QUEUE: usize = 1024;

/// The latencies a proxy adds, changeable while it runs.
#[derive(Debug, Default)]
pub struct Delays {
    /// Milliseconds added to bytes going to the node (other nodes' messages).
    to_node_ms: AtomicU64,
    /// Milliseconds added to bytes coming from the node (its replies on those connections).
    from_node_ms: AtomicU64,
    /// Up to this many more milliseconds, drawn per chunk.
    jitter_ms: AtomicU64,
}

impl Delays {
    /// Sets the latencies (milliseconds).
    pub fn set(&self, to_node_ms: u64, from_node_ms: u64, jitter_ms: u64) {
        self.to_node_ms.store(to_node_ms, Ordering::Relaxed);
        self.from_node_ms.store(from_node_ms, Ordering::Relaxed);
        self.jitter_ms.store(jitter_ms, Ordering::Relaxed);
    }

    /// No added latency.
    pub fn clear(&self) {
        self.set(0, 0, 0);
    }

    fn delay(&self, to_node: bool) -> Duration {
        let base = if to_node {
            self.to_node_ms.load(Ordering::Relaxed)
        } else {
            self.from_node_ms.load(Ordering::Relaxed)
        };
        let jitter = self.jitter_ms.load(Ordering::Relaxed);
        let extra = if jitter == 0 {
            0
        } else {
            rand::rng().random_range(0..=jitter)
        };
        Duration::from_millis(base + extra)
    }
}

/// A running proxy. Dropping it stops it and closes its connections.
pub struct Proxy {
    /// The latencies this proxy adds.
    pub delays: Arc<Delays>,
    cancel: CancellationToken,
    thread: Option<JoinHandle<()>>,
}

impl Proxy {
    /// Starts the proxy of node `id` inside namespace `ns`, on its own thread (sockets belong to
    /// the namespace of the thread that makes them). Returns once it listens.
    pub fn start(ns: String, id: u64) -> Proxy {
        let delays = Arc::new(Delays::default());
        let cancel = CancellationToken::new();
        let (bound_tx, bound_rx) = std::sync::mpsc::channel();
        let thread = {
            let (delays, cancel) = (delays.clone(), cancel.clone());
            std::thread::Builder::new()
                .name(format!("proxy-{id}"))
                .spawn(move || {
                    netns::enter(&ns);
                    let rt = tokio::runtime::Builder::new_current_thread()
                        .enable_all()
                        .build()
                        .expect("building the proxy's runtime");
                    rt.block_on(serve(id, delays, cancel, bound_tx));
                })
                .expect("spawning the proxy thread")
        };
        match bound_rx.recv() {
            Ok(Ok(())) => {}
            Ok(Err(e)) => panic!("proxy of node {id} cannot listen: {e}"),
            Err(_) => panic!("proxy thread of node {id} died before listening"),
        }
        Proxy {
            delays,
            cancel,
            thread: Some(thread),
        }
    }
}

impl Drop for Proxy {
    fn drop(&mut self) {
        self.cancel.cancel();
        if let Some(thread) = self.thread.take() {
            // A panic in the proxy thread was already printed; the run's own result decides.
            let _ = thread.join();
        }
    }
}

/// Accepts redirected peer connections until cancelled.
async fn serve(
    id: u64,
    delays: Arc<Delays>,
    cancel: CancellationToken,
    bound_tx: std::sync::mpsc::Sender<std::io::Result<()>>,
) {
    let listener = match TcpListener::bind((node_ip(id), PROXY_PORT)).await {
        Ok(listener) => {
            let _ = bound_tx.send(Ok(()));
            listener
        }
        Err(e) => {
            let _ = bound_tx.send(Err(e));
            return;
        }
    };
    let upstream = SocketAddr::from((node_ip(id), PEER_PORT));
    loop {
        tokio::select! {
            _ = cancel.cancelled() => return,
            accepted = listener.accept() => {
                // An accept error (e.g. too many files) is transient: the peer retries.
                let Ok((client, _)) = accepted else { continue };
                let delays = delays.clone();
                let cancel = cancel.clone();
                tokio::spawn(async move {
                    tokio::select! {
                        _ = cancel.cancelled() => {}
                        _ = relay(client, upstream, delays) => {}
                    }
                });
            }
        }
    }
}

/// Forwards one connection to the node, both ways, with the configured latencies. A node that
/// is down refuses the upstream connection, and the peer sees its connection closed, much as it
/// would see it refused without the proxy.
async fn relay(client: TcpStream, upstream: SocketAddr, delays: Arc<Delays>) {
    let Ok(server) = TcpStream::connect(upstream).await else {
        return;
    };
    let _ = client.set_nodelay(true);
    let _ = server.set_nodelay(true);
    let (client_read, client_write) = client.into_split();
    let (server_read, server_write) = server.into_split();
    tokio::join!(
        pump(client_read, server_write, delays.clone(), true),
        pump(server_read, client_write, delays, false),
    );
}

/// Copies one direction, each chunk held until `delay` after it was read. The end of the
/// stream is passed on (after the data before it) as a write shutdown.
async fn pump(mut from: OwnedReadHalf, mut to: OwnedWriteHalf, delays: Arc<Delays>, to_node: bool) {
    let (chunk_tx, mut chunk_rx) = mpsc::channel::<(Instant, Vec<u8>)>(QUEUE);
    let reader = async move {
        let mut last_due = Instant::now();
        loop {
            let mut buf = vec![0u8; 64 * 1024];
            let n = match from.read(&mut buf).await {
                Ok(0) | Err(_) => break,
                Ok(n) => n,
            };
            buf.truncate(n);
            // Never before an earlier chunk: jitter must not reorder a stream.
            let due = (Instant::now() + delays.delay(to_node)).max(last_due);
            last_due = due;
            if chunk_tx.send((due, buf)).await.is_err() {
                break;
            }
        }
    };
    let writer = async move {
        while let Some((due, buf)) = chunk_rx.recv().await {
            tokio::time::sleep_until(due).await;
            if to.write_all(&buf).await.is_err() {
                return;
            }
        }
        let _ = to.shutdown().await;
    };
    tokio::join!(reader, writer);
}
