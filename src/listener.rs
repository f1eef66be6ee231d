//! The two ports' listeners: plain TCP or TLS, and for the REST port, one that closes when the
//! node starts to stop and then watches the client connections still open, so that the node
//! serves them until they have gone. A client may send on its kept-alive connection before it
//! reads the answer that tells it the node stops (`Connection: close`); refusing that request,
//! or closing the connection under it, would fail a write that any other node would take.
//! What is left of HTTP/1.1's race: a connection idle for [`CLIENT_QUIET`] is let go, and a
//! request sent on it just as the node exits still fails (the client cannot know it was not
//! taken; curl, which opens a connection per request, never meets it). A connection the
//! kernel had completed but the server not yet taken when the node was asked to stop is
//! taken before the port closes ([`Queued`]; on a TLS port, each once its handshake is done, as
//! are those under way, for up to a quarter of a second): closing a port resets the
//! connections in its queue, and their clients, curl too, could not know whether their
//! requests were taken.

use std::collections::HashMap;
use std::future::Future;
use std::io::IoSlice;
use std::net::SocketAddr;
use std::pin::Pin;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::task::{Context, Poll};
use std::time::{Duration, Instant};

use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};
use tokio::net::{TcpListener, TcpStream};
use tokio_rustls::server::TlsStream;
use tokio_util::either::Either;
use tokio_util::sync::CancellationToken;

use crate::tls::{Port, TlsListener};

/// One port's listener: plain TCP, or TLS when the flags ask for it.
pub(crate) enum PortListener {
    Plain(TcpListener),
    Tls(TlsListener),
}

impl PortListener {
    /// `listener` as `port`: with TLS if `tls`.
    pub(crate) fn new(
        listener: TcpListener,
        tls: Option<Arc<rustls::ServerConfig>>,
        port: Port,
    ) -> std::io::Result<Self> {
        Ok(match tls {
            Some(tls) => PortListener::Tls(TlsListener::new(listener, tls, port)?),
            None => PortListener::Plain(listener),
        })
    }

    /// A TLS port's accept loop, which owns the port and ends once this listener is dropped
    /// (see [`TlsListener::take_accept_task`]); a plain port has none (it closes on drop).
    pub(crate) fn take_accept_task(&mut self) -> Option<tokio::task::JoinHandle<()>> {
        match self {
            PortListener::Plain(_) => None,
            PortListener::Tls(listener) => listener.take_accept_task(),
        }
    }
}

/// A listener whose connections already queued can be taken without waiting: the server
/// takes them before it closes the port, which would reset them.
pub(crate) trait Queued: axum::serve::Listener {
    /// The next connection already queued, or `None` once there is none left (a TLS port:
    /// each as soon as its handshake is done, for those under way or not yet begun, and
    /// `None` once they have ended or the port has waited its limit for them).
    fn next_queued(&mut self) -> impl Future<Output = Option<(Self::Io, Self::Addr)>> + Send;
}

impl Queued for PortListener {
    async fn next_queued(&mut self) -> Option<(Self::Io, Self::Addr)> {
        match self {
            PortListener::Plain(listener) => crate::tls::accept_queued(listener, 1)
                .pop()
                .map(|(tcp, addr)| (Either::Left(tcp), addr)),
            PortListener::Tls(listener) => listener
                .next_queued()
                .await
                .map(|(tls, addr)| (Either::Right(tls), addr)),
        }
    }
}

impl axum::serve::Listener for PortListener {
    type Io = Either<TcpStream, TlsStream<TcpStream>>;
    type Addr = SocketAddr;

    async fn accept(&mut self) -> (Self::Io, Self::Addr) {
        match self {
            PortListener::Plain(listener) => {
                let (tcp, addr) = axum::serve::Listener::accept(listener).await;
                // Small requests and answers: Nagle's delay would dominate their latency
                // (the TLS listener sets it too).
                let _ = tcp.set_nodelay(true);
                (Either::Left(tcp), addr)
            }
            PortListener::Tls(listener) => {
                let (tls, addr) = listener.accept().await;
                (Either::Right(tls), addr)
            }
        }
    }

    fn local_addr(&self) -> std::io::Result<SocketAddr> {
        match self {
            PortListener::Plain(listener) => listener.local_addr(),
            PortListener::Tls(listener) => axum::serve::Listener::local_addr(listener),
        }
    }
}

/// How long a stopping node waits for one more request on a client connection it has just
/// answered: the client may send again before it reads that the node stops. A connection
/// quiet for longer is taken to be idle; one with a request not yet answered always holds the
/// node (up to its stop limit).
const CLIENT_QUIET: Duration = Duration::from_millis(200);

/// A listener that counts the connections it took, for a node that stops: the server drops
/// it once the node is asked to stop (closing the port, so that new clients are refused at
/// once) while the connections it took go on being served; from then a watcher cancels
/// `gone` once each of them has closed or sat answered for [`CLIENT_QUIET`]. The watcher
/// starts at the drop, not at the stop: by then every connection the server took is
/// counted (one accepted just as the stop came is not missed), and the server calls
/// `accept` only with a connection slot free, so it is not the place to watch from.
pub(crate) struct UntilStopped {
    inner: PortListener,
    addr: SocketAddr,
    open: Arc<Connections>,
    dropped: CancellationToken,
}

impl UntilStopped {
    pub(crate) fn new(inner: PortListener, addr: SocketAddr, gone: CancellationToken) -> Self {
        let open = Arc::new(Connections::new(gone));
        let dropped = CancellationToken::new();
        let (watching, closed) = (open.clone(), dropped.clone());
        tokio::spawn(async move {
            closed.cancelled().await;
            while let Some(wait) = watching.close_port_and_wait(CLIENT_QUIET) {
                tokio::select! {
                    _ = tokio::time::sleep(wait) => {}
                    _ = watching.gone.cancelled() => {}
                }
            }
            watching.gone.cancel();
        });
        UntilStopped {
            inner,
            addr,
            open,
            dropped,
        }
    }
}

impl Drop for UntilStopped {
    fn drop(&mut self) {
        self.dropped.cancel();
    }
}

impl axum::serve::Listener for UntilStopped {
    type Io = Counted<<PortListener as axum::serve::Listener>::Io>;
    type Addr = SocketAddr;

    async fn accept(&mut self) -> (Self::Io, Self::Addr) {
        let (io, addr) = axum::serve::Listener::accept(&mut self.inner).await;
        let open = Connections::opened(&self.open);
        (Counted { io, open }, addr)
    }

    fn local_addr(&self) -> std::io::Result<SocketAddr> {
        Ok(self.addr)
    }
}

impl Queued for UntilStopped {
    async fn next_queued(&mut self) -> Option<(Self::Io, Self::Addr)> {
        // Counted before the drop starts the watcher, like every connection taken.
        let (io, addr) = self.inner.next_queued().await?;
        let open = Connections::opened(&self.open);
        Some((Counted { io, open }, addr))
    }
}

/// The connections a port took and has not closed, each with what it last did.
struct Connections {
    started: Instant,
    state: Mutex<OpenState>,
    /// Cancelled once the port has closed and no connection is open, or all are quiet.
    gone: CancellationToken,
}

#[derive(Default)]
struct OpenState {
    /// Connection → its [`LastIo`].
    open: HashMap<u64, Arc<AtomicU64>>,
    next: u64,
    port_closed: bool,
}

/// What a connection last did, packed in a `u64` so one atomic store records it: the
/// milliseconds from [`Connections::started`] to its last bytes in or out, shifted left one
/// bit, and in the low bit whether those were bytes in (a request not yet answered).
struct LastIo;

impl LastIo {
    fn pack(ms: u64, came_in: bool) -> u64 {
        (ms << 1) | u64::from(came_in)
    }

    /// `(ms, came_in)`.
    fn unpack(packed: u64) -> (u64, bool) {
        (packed >> 1, packed & 1 == 1)
    }
}

impl Connections {
    fn new(gone: CancellationToken) -> Self {
        Connections {
            started: Instant::now(),
            state: Mutex::default(),
            gone,
        }
    }

    fn now_ms(&self) -> u64 {
        self.started.elapsed().as_millis() as u64
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, OpenState> {
        // The state is a map and two plain fields, consistent after every statement: a
        // panic elsewhere while it was held leaves nothing half-done.
        self.state
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
    }

    fn opened(this: &Arc<Connections>) -> OneOpen {
        // A connection just opened has its request still to send: a short grace, as if just
        // answered.
        let last = Arc::new(AtomicU64::new(LastIo::pack(this.now_ms(), false)));
        let mut state = this.lock();
        let id = state.next;
        state.next += 1;
        state.open.insert(id, last.clone());
        OneOpen {
            connections: this.clone(),
            id,
            last,
        }
    }

    /// Notes that the port is closed (the server has dropped its listener), then: `None` if every
    /// open connection (if any) has sat answered for `quiet`, else how long to wait before asking
    /// again.
    fn close_port_and_wait(&self, quiet: Duration) -> Option<Duration> {
        let now = self.now_ms();
        let mut state = self.lock();
        state.port_closed = true;
        let quiet = quiet.as_millis() as u64;
        state
            .open
            .values()
            .map(|last| {
                let (ms, came_in) = LastIo::unpack(last.load(Ordering::Relaxed));
                // A request in: hold, and look again after a quiet time (its answer ends it).
                if came_in {
                    quiet
                } else {
                    quiet.saturating_sub(now.saturating_sub(ms))
                }
            })
            .max()
            .filter(|wait| *wait > 0)
            .map(Duration::from_millis)
    }
}

/// One open connection; closing it (dropping this) may be the last.
struct OneOpen {
    connections: Arc<Connections>,
    id: u64,
    last: Arc<AtomicU64>,
}

impl OneOpen {
    fn moved(&self, came_in: bool) {
        let ms = self.connections.now_ms();
        self.last
            .store(LastIo::pack(ms, came_in), Ordering::Relaxed);
    }
}

impl Drop for OneOpen {
    fn drop(&mut self) {
        let mut state = self.connections.lock();
        state.open.remove(&self.id);
        if state.port_closed && state.open.is_empty() {
            self.connections.gone.cancel();
        }
    }
}

/// A connection counted among the open ones until it is dropped.
pub(crate) struct Counted<T> {
    io: T,
    open: OneOpen,
}

impl<T: AsyncRead + Unpin> AsyncRead for Counted<T> {
    fn poll_read(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<std::io::Result<()>> {
        let before = buf.filled().len();
        let read = Pin::new(&mut self.io).poll_read(cx, buf);
        if buf.filled().len() > before {
            self.open.moved(true);
        }
        read
    }
}

impl<T: AsyncWrite + Unpin> AsyncWrite for Counted<T> {
    fn poll_write(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<std::io::Result<usize>> {
        let written = Pin::new(&mut self.io).poll_write(cx, buf);
        if matches!(written, Poll::Ready(Ok(n)) if n > 0) {
            self.open.moved(false);
        }
        written
    }

    fn poll_write_vectored(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        bufs: &[IoSlice<'_>],
    ) -> Poll<std::io::Result<usize>> {
        let written = Pin::new(&mut self.io).poll_write_vectored(cx, bufs);
        if matches!(written, Poll::Ready(Ok(n)) if n > 0) {
            self.open.moved(false);
        }
        written
    }

    fn is_write_vectored(&self) -> bool {
        self.io.is_write_vectored()
    }

    fn poll_flush(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<std::io::Result<()>> {
        Pin::new(&mut self.io).poll_flush(cx)
    }

    fn poll_shutdown(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<std::io::Result<()>> {
        Pin::new(&mut self.io).poll_shutdown(cx)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// `gone` fires once the port has closed and the last connection has, in either order.
    #[test]
    fn gone_once_the_port_and_every_connection_have_closed() {
        let quiet = Duration::from_secs(3600);
        let open = Arc::new(Connections::new(CancellationToken::new()));
        let (a, b) = (Connections::opened(&open), Connections::opened(&open));
        drop(a);
        assert!(
            open.close_port_and_wait(quiet).is_some(),
            "b was just opened"
        );
        assert!(!open.gone.is_cancelled(), "one connection is still open");
        drop(b);
        assert!(open.gone.is_cancelled());
        assert_eq!(open.close_port_and_wait(quiet), None);

        let open = Arc::new(Connections::new(CancellationToken::new()));
        drop(Connections::opened(&open));
        assert!(!open.gone.is_cancelled(), "the port is still open");
        assert_eq!(
            open.close_port_and_wait(quiet),
            None,
            "no connection is open"
        );
    }

    /// A connection answered long enough ago does not hold the port; one answered lately
    /// does for the rest of the quiet time; one with a request in holds it however long.
    #[test]
    fn only_a_connection_answered_lately_or_with_a_request_in_holds_the_port() {
        let quiet = Duration::from_millis(50);
        let open = Arc::new(Connections::new(CancellationToken::new()));
        let idle = Connections::opened(&open);
        let asking = Connections::opened(&open);
        asking.moved(true);
        std::thread::sleep(quiet * 2);
        idle.moved(false);
        let wait = open.close_port_and_wait(quiet).expect("both hold it");
        assert!(wait <= quiet, "{wait:?}");
        std::thread::sleep(quiet * 2);
        assert_eq!(
            open.close_port_and_wait(quiet),
            Some(quiet),
            "the request in still holds it"
        );
        asking.moved(false);
        std::thread::sleep(quiet * 2);
        assert_eq!(open.close_port_and_wait(quiet), None, "all answered, quiet");
        assert!(
            !open.gone.is_cancelled(),
            "the watcher cancels it, not the check"
        );
        drop((idle, asking));
        assert!(open.gone.is_cancelled(), "the last one closed");
    }
}
