//! The two ports' listeners: plain TCP or TLS, and for the REST port, one that closes when the
//! node starts to stop while it counts the client connections still open, so that the node
//! serves them until they have gone (a client may send on its kept-alive connection before it
//! reads the answer that tells it the node stops; refusing that request, or closing the
//! connection under it, would fail a write that a moment later any other node would take).

use std::io::IoSlice;
use std::net::SocketAddr;
use std::pin::Pin;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::task::{Context, Poll};

use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};
use tokio::net::{TcpListener, TcpStream};
use tokio_rustls::server::TlsStream;
use tokio_util::either::Either;
use tokio_util::sync::CancellationToken;

use crate::tls::TlsListener;

/// One port's listener: plain TCP, or TLS when the flags ask for it.
pub(crate) enum PortListener {
    Plain(TcpListener),
    Tls(TlsListener),
}

impl PortListener {
    pub(crate) fn new(
        listener: TcpListener,
        tls: Option<Arc<rustls::ServerConfig>>,
    ) -> std::io::Result<Self> {
        Ok(match tls {
            Some(tls) => PortListener::Tls(TlsListener::new(listener, tls)?),
            None => PortListener::Plain(listener),
        })
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

/// A listener that stops taking connections once `stop` is cancelled, and closes its port so
/// that new clients are refused at once, while the connections it took go on being served;
/// it cancels `gone` once the last of them has closed.
pub(crate) struct UntilStopped {
    inner: Option<PortListener>,
    stop: CancellationToken,
    addr: SocketAddr,
    open: OpenConnections,
}

impl UntilStopped {
    pub(crate) fn new(
        inner: PortListener,
        stop: CancellationToken,
        addr: SocketAddr,
        gone: CancellationToken,
    ) -> Self {
        UntilStopped {
            inner: Some(inner),
            stop,
            addr,
            open: OpenConnections::new(gone),
        }
    }
}

impl axum::serve::Listener for UntilStopped {
    type Io = Counted<<PortListener as axum::serve::Listener>::Io>;
    type Addr = SocketAddr;

    async fn accept(&mut self) -> (Self::Io, Self::Addr) {
        let UntilStopped {
            inner, stop, open, ..
        } = self;
        if let Some(listener) = inner.as_mut() {
            tokio::select! {
                (io, addr) = axum::serve::Listener::accept(listener) => {
                    return (Counted { io, _open: open.opened() }, addr);
                }
                _ = stop.cancelled() => {}
            }
        }
        *inner = None;
        open.closed_port();
        std::future::pending().await
    }

    fn local_addr(&self) -> std::io::Result<SocketAddr> {
        Ok(self.addr)
    }
}

/// How many connections are open, and whether the port has closed.
struct OpenConnections(Arc<Counts>);

struct Counts {
    open: AtomicUsize,
    port_closed: AtomicBool,
    gone: CancellationToken,
}

impl OpenConnections {
    fn new(gone: CancellationToken) -> Self {
        OpenConnections(Arc::new(Counts {
            open: AtomicUsize::new(0),
            port_closed: AtomicBool::new(false),
            gone,
        }))
    }

    fn opened(&self) -> OneOpen {
        self.0.open.fetch_add(1, Ordering::SeqCst);
        OneOpen(self.0.clone())
    }

    fn closed_port(&self) {
        // SeqCst on both sides: of this and the last connection's close, at least one sees
        // the other's write, so `gone` is never missed.
        self.0.port_closed.store(true, Ordering::SeqCst);
        if self.0.open.load(Ordering::SeqCst) == 0 {
            self.0.gone.cancel();
        }
    }
}

/// One open connection; closing it (dropping this) may be the last.
struct OneOpen(Arc<Counts>);

impl Drop for OneOpen {
    fn drop(&mut self) {
        if self.0.open.fetch_sub(1, Ordering::SeqCst) == 1
            && self.0.port_closed.load(Ordering::SeqCst)
        {
            self.0.gone.cancel();
        }
    }
}

/// A connection counted among the open ones until it is dropped.
pub(crate) struct Counted<T> {
    io: T,
    _open: OneOpen,
}

impl<T: AsyncRead + Unpin> AsyncRead for Counted<T> {
    fn poll_read(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<std::io::Result<()>> {
        Pin::new(&mut self.io).poll_read(cx, buf)
    }
}

impl<T: AsyncWrite + Unpin> AsyncWrite for Counted<T> {
    fn poll_write(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<std::io::Result<usize>> {
        Pin::new(&mut self.io).poll_write(cx, buf)
    }

    fn poll_write_vectored(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        bufs: &[IoSlice<'_>],
    ) -> Poll<std::io::Result<usize>> {
        Pin::new(&mut self.io).poll_write_vectored(cx, bufs)
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
        let open = OpenConnections::new(CancellationToken::new());
        let (a, b) = (open.opened(), open.opened());
        drop(a);
        open.closed_port();
        assert!(!open.0.gone.is_cancelled(), "one connection is still open");
        drop(b);
        assert!(open.0.gone.is_cancelled());

        let open = OpenConnections::new(CancellationToken::new());
        drop(open.opened());
        assert!(!open.0.gone.is_cancelled(), "the port is still open");
        open.closed_port();
        assert!(open.0.gone.is_cancelled(), "no connection was open");
    }
}
