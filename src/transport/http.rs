//! The HTTP pieces both ends of the transport share: a request body fed from a channel (a
//! stream of batches, or a snapshot file read chunk by chunk) and a refusal, the peer
//! server's answer to what it will not take.

use std::convert::Infallible;
use std::pin::Pin;
use std::task::{Context, Poll};

use axum::http::{HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use bytes::Bytes;
use hyper::body::{Body, Frame};
use tokio::sync::mpsc;

use super::wire::WireError;
use crate::request::SentSnapshot;

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
