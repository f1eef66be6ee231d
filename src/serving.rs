//! Serving a port's connections (the REST API's and the peers'): the accept loop, with a cap
//! on the connections open at once, hyper's limit on the time a client takes to send a
//! request's head, and a limit on how long an answer may wait for a client that takes none of
//! it. Without them, a client that opens connections and then sends nothing (or reads
//! nothing) holds a task, its buffers and a file descriptor per connection for as long as it
//! likes. The limits on a slow body are the REST API's (`http_api::read_body`) and the
//! snapshot receiver's (`transport::snapshot`), on the same `config::body_patience`: a peer
//! stream is a body that never ends.

use std::future::Future;
use std::io::IoSlice;
use std::net::SocketAddr;
use std::pin::Pin;
use std::sync::{Arc, OnceLock};
use std::task::{Context, Poll};
use std::time::Duration;

use axum::extract::ConnectInfo;
use hyper::Request;
use hyper::body::Incoming;
use hyper_util::rt::{TokioIo, TokioTimer};
use hyper_util::server::graceful::GracefulShutdown;
use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};
use tokio::sync::{OwnedSemaphorePermit, Semaphore};
use tokio::task::JoinHandle;
use tokio::time::{Instant, Sleep};
use tokio_util::sync::CancellationToken;

use crate::listener::Queued;

/// What one port allows each client connection (`--client-timeout-ms`, `--max-connections`).
#[derive(Clone, Copy, Debug)]
pub(crate) struct Limits {
    /// To send a request's head (from when the connection opens or was last answered), and
    /// to take any of an answer that waits for it.
    pub(crate) client_timeout: Duration,
    /// Connections open at once; the next waits in the kernel's accept queue.
    pub(crate) max_connections: usize,
    /// Whether a client that shuts down its sending side once its request is sent (`nc -N`,
    /// many HTTP/1.0 tools) still gets the answer, as from Go's server. Without it hyper
    /// takes that end of input for a client gone, drops the request's future and closes the
    /// connection unanswered (a PUT could still take effect). The price, as in Go, whose
    /// handler runs on: a client that goes away while its answer is worked out is noticed
    /// only once a write to it fails, so its request runs to its end (a PUT or a read within
    /// `--proposal-timeout-ms`), and an event stream ends at its next event or keep-alive.
    pub(crate) half_close: bool,
}

impl Limits {
    pub(crate) fn new(config: &crate::config::Config) -> Self {
        Limits {
            client_timeout: config.client_timeout(),
            // The flag's parser bounds it to 2^20.
            max_connections: config.max_connections as usize,
            half_close: false,
        }
    }
}

/// A port's router that changes once, the port kept open: the peer port answers as a
/// starting node (`transport::starting`) from the moment it is bound, and as the peer server
/// once the node has replayed its log; the REST port likewise answers as a starting node
/// (`http_api::starting`) until the node serves, then as the REST API. Each request goes to
/// the router of the moment it arrives, so a connection kept alive across the change is
/// served by the new one from its next request on.
pub(crate) struct Handoff {
    then: Arc<OnceLock<axum::Router>>,
}

impl Handoff {
    /// The router to serve, which answers with `first` until [`Handoff::hand_to`].
    pub(crate) fn new(first: axum::Router) -> (Handoff, axum::Router) {
        let then = Arc::new(OnceLock::new());
        let dispatch = {
            let then = then.clone();
            move |request: axum::extract::Request| {
                let mut router = then.get().unwrap_or(&first).clone();
                async move {
                    // A router is always ready: axum's `poll_ready` returns at once.
                    let answer = tower::Service::call(&mut router, request).await;
                    answer.unwrap_or_else(|never| match never {})
                }
            }
        };
        (Handoff { then }, axum::Router::new().fallback(dispatch))
    }

    /// From now on, `router` answers: the first router handed to, for good.
    pub(crate) fn hand_to(&self, router: axum::Router) {
        // A second hand-off is no one's: the node's start makes one.
        let _ = self.then.set(router);
    }
}

/// Serves `router` on the connections `listener` takes until `stop_taking`, then takes those
/// already waiting in the kernel's queue (while slots are free), drops the listener (closing
/// the port) and goes on serving the connections it took until `shutdown`; then ends each
/// once its request in flight, if any, is answered.
pub(crate) fn serve<L>(
    mut listener: L,
    router: axum::Router,
    limits: Limits,
    stop_taking: CancellationToken,
    shutdown: CancellationToken,
) -> JoinHandle<()>
where
    L: Queued<Addr = SocketAddr>,
{
    tokio::spawn(async move {
        let slots = Arc::new(Semaphore::new(limits.max_connections));
        // HTTP/1.1 only, as before (and as the original).
        let mut builder = hyper::server::conn::http1::Builder::new();
        builder
            .timer(TokioTimer::new())
            .header_read_timeout(limits.client_timeout)
            .half_close(limits.half_close);
        let graceful = GracefulShutdown::new();
        let serve_one = |io, remote: SocketAddr, slot: OwnedSemaphorePermit| {
            let io = TokioIo::new(WriteDeadline::new(io, limits.client_timeout));
            // Each request carries its client's address, as axum's `ConnectInfo` reads it (the
            // peer server logs who sent what it refuses).
            let router = router.clone();
            let service = hyper::service::service_fn(move |mut request: Request<Incoming>| {
                request.extensions_mut().insert(ConnectInfo(remote));
                let mut router = router.clone();
                // A router is always ready: axum's `poll_ready` returns at once.
                async move { tower::Service::call(&mut router, request).await }
            });
            let conn = graceful.watch(builder.serve_connection(io, service));
            tokio::spawn(async move {
                if let Err(err) = conn.await {
                    // A client that went away, or one that ran out of time: its own business.
                    tracing::debug!(%err, "connection ended");
                }
                drop(slot);
            });
        };
        loop {
            // Stopping comes first, also while every slot is taken.
            let slot = tokio::select! {
                biased;
                _ = stop_taking.cancelled() => break,
                slot = slots.clone().acquire_owned() => slot,
            };
            let Ok(slot) = slot else {
                // Only a closed semaphore fails, and nothing closes this one.
                break;
            };
            let (io, remote) = tokio::select! {
                biased;
                _ = stop_taking.cancelled() => break,
                accepted = listener.accept() => accepted,
            };
            serve_one(io, remote, slot);
        }
        // Closing the port resets the connections in its queue: their clients sent requests
        // that they could not know were never taken. Each is served as soon as it is ready
        // (a TLS one once its handshake is done), while connection slots are free.
        while let Ok(slot) = slots.clone().try_acquire_owned() {
            let Some((io, remote)) = listener.next_queued().await else {
                break;
            };
            serve_one(io, remote, slot);
        }
        // Closes the port (a plain listener; a TLS one's accept task ends with it).
        drop(listener);
        shutdown.cancelled().await;
        graceful.shutdown().await;
    })
}

/// A connection whose writes fail once one has waited `limit` for the client to take any
/// byte of it (hyper waits for ever).
struct WriteDeadline<T> {
    io: T,
    limit: Duration,
    /// Armed while a write waits: when it gives up.
    timer: Pin<Box<Sleep>>,
    armed: bool,
}

impl<T> WriteDeadline<T> {
    fn new(io: T, limit: Duration) -> Self {
        WriteDeadline {
            io,
            limit,
            timer: Box::pin(tokio::time::sleep(limit)),
            armed: false,
        }
    }

    /// Passes a write's outcome on, unless it has waited too long.
    fn watch<R>(
        &mut self,
        cx: &mut Context<'_>,
        outcome: Poll<std::io::Result<R>>,
    ) -> Poll<std::io::Result<R>> {
        if outcome.is_ready() {
            self.armed = false;
            return outcome;
        }
        if !self.armed {
            self.armed = true;
            self.timer.as_mut().reset(Instant::now() + self.limit);
        }
        match self.timer.as_mut().poll(cx) {
            Poll::Ready(()) => Poll::Ready(Err(std::io::Error::new(
                std::io::ErrorKind::TimedOut,
                "the client took none of the answer within the client timeout",
            ))),
            Poll::Pending => Poll::Pending,
        }
    }
}

impl<T: AsyncRead + Unpin> AsyncRead for WriteDeadline<T> {
    fn poll_read(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<std::io::Result<()>> {
        Pin::new(&mut self.io).poll_read(cx, buf)
    }
}

impl<T: AsyncWrite + Unpin> AsyncWrite for WriteDeadline<T> {
    fn poll_write(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<std::io::Result<usize>> {
        let outcome = Pin::new(&mut self.io).poll_write(cx, buf);
        self.watch(cx, outcome)
    }

    fn poll_write_vectored(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        bufs: &[IoSlice<'_>],
    ) -> Poll<std::io::Result<usize>> {
        let outcome = Pin::new(&mut self.io).poll_write_vectored(cx, bufs);
        self.watch(cx, outcome)
    }

    fn is_write_vectored(&self) -> bool {
        self.io.is_write_vectored()
    }

    fn poll_flush(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<std::io::Result<()>> {
        let outcome = Pin::new(&mut self.io).poll_flush(cx);
        self.watch(cx, outcome)
    }

    fn poll_shutdown(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<std::io::Result<()>> {
        let outcome = Pin::new(&mut self.io).poll_shutdown(cx);
        self.watch(cx, outcome)
    }
}

/// Serves `router` on a fresh loopback port, as a node's port with room for a test's few
/// connections: its address, the token that stops it, and the server's task.
#[cfg(test)]
pub(crate) async fn serve_on_loopback(
    router: axum::Router,
) -> (SocketAddr, CancellationToken, JoinHandle<()>) {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
        .await
        .expect("a loopback port");
    let addr = listener.local_addr().expect("its address");
    let shutdown = CancellationToken::new();
    let limits = Limits {
        client_timeout: Duration::from_secs(30),
        max_connections: 4,
        half_close: false,
    };
    let serving = serve(
        crate::listener::PortListener::Plain(listener),
        router,
        limits,
        shutdown.clone(),
        shutdown.clone(),
    );
    (addr, shutdown, serving)
}

#[cfg(test)]
mod tests {
    use super::*;
    use tokio::io::{AsyncReadExt, AsyncWriteExt};

    /// Reads one answer whose body is `ok`.
    async fn answered(conn: &mut tokio::net::TcpStream) {
        let mut got = Vec::new();
        while !got.ends_with(b"\r\n\r\nok") {
            let mut buf = [0; 256];
            let n = conn.read(&mut buf).await.expect("reading an answer");
            assert!(n > 0, "closed: {:?}", String::from_utf8_lossy(&got));
            got.extend_from_slice(&buf[..n]);
        }
    }

    /// Told to stop taking connections while its only slot is taken, the server closes the
    /// port at once (new clients are refused, not queued for a server that will never take
    /// them), and goes on serving the connection it holds. It waited for a free slot before,
    /// and closed the port only once the node had stopped (found by a review).
    #[tokio::test]
    async fn told_to_stop_with_every_slot_taken_it_closes_the_port() {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
            .await
            .expect("a loopback port");
        let addr = listener.local_addr().expect("its address");
        let router = axum::Router::new().route("/", axum::routing::get(|| async { "ok" }));
        let limits = Limits {
            client_timeout: Duration::from_secs(30),
            max_connections: 1,
            half_close: false,
        };
        let (stop_taking, shutdown) = (CancellationToken::new(), CancellationToken::new());
        let server = serve(
            crate::listener::PortListener::Plain(listener),
            router,
            limits,
            stop_taking.clone(),
            shutdown.clone(),
        );
        let ask = b"GET / HTTP/1.1\r\nHost: x\r\n\r\n";
        let mut holder = tokio::net::TcpStream::connect(addr)
            .await
            .expect("connects");
        holder.write_all(ask).await.expect("asks");
        tokio::time::timeout(Duration::from_secs(10), answered(&mut holder))
            .await
            .expect("answered within 10 s");
        stop_taking.cancel();
        let deadline = Instant::now() + Duration::from_secs(5);
        while tokio::net::TcpStream::connect(addr).await.is_ok() {
            assert!(Instant::now() < deadline, "the port stayed open");
            tokio::time::sleep(Duration::from_millis(5)).await;
        }
        holder.write_all(ask).await.expect("asks again");
        tokio::time::timeout(Duration::from_secs(10), answered(&mut holder))
            .await
            .expect("the connection it holds is still served");
        shutdown.cancel();
        drop(holder);
        tokio::time::timeout(Duration::from_secs(10), server)
            .await
            .expect("the server ends once its connections have")
            .expect("the server task");
    }

    /// Connections the kernel completed before the server was told to stop are taken and
    /// answered, not reset by the port's close: their clients had sent requests they could not
    /// know were never taken (a PUT in flight when a node was stopped, found by using it).
    /// Told to stop before it starts, the server takes no connection but the queued ones.
    #[tokio::test]
    async fn the_connections_queued_when_told_to_stop_are_answered() {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
            .await
            .expect("a loopback port");
        let addr = listener.local_addr().expect("its address");
        let ask = b"GET / HTTP/1.1\r\nHost: x\r\n\r\n";
        let mut queued = Vec::new();
        for _ in 0..3 {
            let mut client = tokio::net::TcpStream::connect(addr)
                .await
                .expect("the kernel completes the connection");
            client.write_all(ask).await.expect("asks");
            queued.push(client);
        }
        let router = axum::Router::new().route("/", axum::routing::get(|| async { "ok" }));
        let limits = Limits {
            client_timeout: Duration::from_secs(30),
            max_connections: 8,
            half_close: false,
        };
        let (stop_taking, shutdown) = (CancellationToken::new(), CancellationToken::new());
        stop_taking.cancel();
        let server = serve(
            crate::listener::PortListener::Plain(listener),
            router,
            limits,
            stop_taking,
            shutdown.clone(),
        );
        for client in &mut queued {
            tokio::time::timeout(Duration::from_secs(10), answered(client))
                .await
                .expect("a queued connection is answered within 10 s");
        }
        let deadline = Instant::now() + Duration::from_secs(5);
        while tokio::net::TcpStream::connect(addr).await.is_ok() {
            assert!(Instant::now() < deadline, "the port stayed open");
            tokio::time::sleep(Duration::from_millis(5)).await;
        }
        shutdown.cancel();
        drop(queued);
        tokio::time::timeout(Duration::from_secs(10), server)
            .await
            .expect("the server ends once its connections have")
            .expect("the server task");
    }

    /// A write the other end never takes fails after the limit; one it takes resets the clock.
    #[tokio::test(start_paused = true)]
    async fn a_write_nobody_takes_fails_after_the_limit() {
        let (ours, theirs) = tokio::io::duplex(16);
        let mut conn = WriteDeadline::new(ours, Duration::from_secs(30));
        conn.write_all(&[0; 16]).await.expect("fits the buffer");
        let started = Instant::now();
        let err = conn
            .write_all(&[0; 16])
            .await
            .expect_err("nobody reads the other end");
        assert_eq!(err.kind(), std::io::ErrorKind::TimedOut);
        assert_eq!(started.elapsed(), Duration::from_secs(30));

        // Taken a little at a time, well within the limit each: never fails.
        let (ours, mut theirs2) = tokio::io::duplex(16);
        let mut conn = WriteDeadline::new(ours, Duration::from_secs(30));
        let reader = tokio::spawn(async move {
            let mut buf = [0; 16];
            let mut total = 0;
            while total < 160 {
                tokio::time::sleep(Duration::from_secs(20)).await;
                total += tokio::io::AsyncReadExt::read(&mut theirs2, &mut buf)
                    .await
                    .expect("reads");
            }
        });
        conn.write_all(&[0; 160])
            .await
            .expect("each byte taken in time");
        reader.await.expect("reader");
        drop(theirs);
    }
}
