//! The HTTP pieces both ends of the transport share: a request body fed from a channel (a
//! stream of batches, or a snapshot file read chunk by chunk), a refusal, the peer server's
//! answer to what it will not take, and the reading of a short answer.

use std::convert::Infallible;
use std::pin::Pin;
use std::task::{Context, Poll};

use axum::http::{HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use bytes::{Bytes, BytesMut};
use http_body_util::BodyExt;
use hyper::body::{Body, Frame};
use tokio::sync::mpsc;

use super::wire::WireError;
use crate::request::SentSnapshot;

/// Reads a short answer's `body` whole, up to `limit` bytes: each frame copied out and dropped
/// as it comes. A frame is a slice of hyper's read buffer (8 KiB or more), so an answer
/// trickled a byte per TCP segment, its frames kept until it ended, held 8 KiB per byte: up to
/// 128 MiB for 16 KiB (found by a review).
pub async fn read_short<B>(body: B, limit: usize) -> Result<Bytes, String>
where
    B: Body<Data = Bytes>,
    B::Error: std::fmt::Display,
{
    let mut body = std::pin::pin!(body);
    let mut answer = BytesMut::new();
    while let Some(frame) = body.frame().await {
        let frame = frame.map_err(|e| e.to_string())?;
        if let Ok(data) = frame.into_data() {
            if answer.len() + data.len() > limit {
                return Err(format!("the answer is longer than {limit} bytes"));
            }
            answer.extend_from_slice(&data);
        }
    }
    Ok(answer.freeze())
}

/// A request body fed from a channel: each batch (or chunk of a file) becomes one chunk.
pub(super) struct ChannelBody {
    rx: mpsc::Receiver<Bytes>,
    /// Bytes still to come, when known up front: the request then carries a
    /// `Content-Length`, and a body cut short fails rather than ends.
    remaining: Option<u64>,
}

impl ChannelBody {
    /// A body of unknown length (a stream).
    pub(super) fn open(rx: mpsc::Receiver<Bytes>) -> ChannelBody {
        ChannelBody {
            rx,
            remaining: None,
        }
    }

    /// A body of exactly `len` bytes.
    pub(super) fn sized(rx: mpsc::Receiver<Bytes>, len: u64) -> ChannelBody {
        ChannelBody {
            rx,
            remaining: Some(len),
        }
    }
}

impl Body for ChannelBody {
    type Data = Bytes;
    type Error = Infallible;

    fn poll_frame(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, Infallible>>> {
        self.rx.poll_recv(cx).map(|chunk| {
            chunk.map(|chunk| {
                if let Some(left) = &mut self.remaining {
                    *left = left.saturating_sub(chunk.len() as u64);
                }
                Ok(Frame::data(chunk))
            })
        })
    }

    fn size_hint(&self) -> hyper::body::SizeHint {
        self.remaining
            .map_or_else(Default::default, hyper::body::SizeHint::with_exact)
    }
}

/// A refused request: status and one line of reason. The connection is closed after it.
#[derive(Debug)]
pub struct Refusal {
    status: StatusCode,
    text: String,
    /// Set only when this node gave up on a snapshot on its own, after its last byte (a time
    /// limit of its own ran out): why, and what its operator should do, since the leader's
    /// next attempts are likely to meet the same trouble (see [`Refusal::gave_up`]).
    gave_up: Option<String>,
    /// The snapshot refused, once its message was read.
    snapshot: Option<SentSnapshot>,
}

impl Refusal {
    pub(super) fn new(status: StatusCode, text: impl Into<String>) -> Refusal {
        Refusal {
            status,
            text: text.into(),
            gave_up: None,
            snapshot: None,
        }
    }

    /// The same refusal, of `snapshot`.
    pub(super) fn of_snapshot(mut self, snapshot: SentSnapshot) -> Refusal {
        self.snapshot = Some(snapshot);
        self
    }

    /// The snapshot refused, if its message was read.
    pub fn snapshot(&self) -> Option<SentSnapshot> {
        self.snapshot
    }

    /// The same refusal, marked as this node giving up on its own: `why` is one line for its
    /// operator (its `/-/ready` says it), where the text is for the sender.
    pub(super) fn gave_up_because(mut self, why: impl Into<String>) -> Refusal {
        self.gave_up = Some(why.into());
        self
    }

    /// Why this node gave up on its own, if that is what this refusal is.
    pub fn gave_up(&self) -> Option<&str> {
        self.gave_up.as_deref()
    }

    /// The status it is answered with.
    pub fn status(&self) -> StatusCode {
        self.status
    }

    /// Its reason.
    pub fn text(&self) -> &str {
        &self.text
    }
}

impl IntoResponse for Refusal {
    fn into_response(self) -> Response {
        let mut response = (self.status, self.text + "\n").into_response();
        response
            .headers_mut()
            .insert(header::CONNECTION, HeaderValue::from_static("close"));
        response
    }
}

impl From<WireError> for Refusal {
    fn from(err: WireError) -> Refusal {
        let status = match err {
            WireError::TooLarge { .. } => StatusCode::PAYLOAD_TOO_LARGE,
            _ => StatusCode::BAD_REQUEST,
        };
        Refusal::new(status, format!("bad batch: {err}"))
    }
}

#[cfg(test)]
pub(crate) mod tests {
    use super::*;
    use std::sync::Arc;
    use std::sync::atomic::{AtomicUsize, Ordering};

    /// How many of a [`trickled`] body's buffers are alive, and the most that were at once.
    #[derive(Default)]
    pub(crate) struct Buffers {
        alive: AtomicUsize,
        most: AtomicUsize,
    }

    impl Buffers {
        /// The most buffers alive at once so far, and how many are alive now.
        pub(crate) fn most_and_alive(&self) -> (usize, usize) {
            (
                self.most.load(Ordering::SeqCst),
                self.alive.load(Ordering::SeqCst),
            )
        }
    }

    struct Buffer(Vec<u8>, Arc<Buffers>);

    impl AsRef<[u8]> for Buffer {
        fn as_ref(&self) -> &[u8] {
            &self.0
        }
    }

    impl Drop for Buffer {
        fn drop(&mut self) {
            self.1.alive.fetch_sub(1, Ordering::SeqCst);
        }
    }

    /// A body of `bytes` one-byte frames (`x`), each a slice of a buffer of 8 KiB of its own,
    /// as hyper's frames of a body trickled a byte per TCP segment are.
    pub(crate) fn trickled(bytes: usize) -> (axum::body::Body, Arc<Buffers>) {
        use futures_util::StreamExt;
        let buffers = Arc::new(Buffers::default());
        let counted = buffers.clone();
        let frames = futures_util::stream::iter(0..bytes).map(move |_| {
            let alive = counted.alive.fetch_add(1, Ordering::SeqCst) + 1;
            counted.most.fetch_max(alive, Ordering::SeqCst);
            let buffer = Buffer(vec![b'x'; 8192], counted.clone());
            Ok::<_, std::io::Error>(Bytes::from_owner(buffer).slice(0..1))
        });
        (axum::body::Body::from_stream(frames), buffers)
    }

    /// A short answer trickled a byte at a time is read holding one of its buffers at a time,
    /// and one over the limit is refused.
    #[tokio::test]
    async fn a_trickled_answer_keeps_none_of_the_buffers_its_bytes_came_in() {
        let (body, buffers) = trickled(1000);
        let answer = read_short(body, 4096).await.expect("within the limit");
        assert_eq!(answer, Bytes::from(vec![b'x'; 1000]));
        let (most, alive) = buffers.most_and_alive();
        assert!(most <= 2, "{most} buffers of 8 KiB held at once");
        assert_eq!(alive, 0);
        let (body, _) = trickled(1000);
        let err = read_short(body, 999).await.expect_err("over the limit");
        assert!(err.contains("999"), "{err}");
    }
}
