//! The HTTP pieces both ends of the transport share: a request body fed from a channel (a
//! stream of batches, or a snapshot file read chunk by chunk), what a refusal means and the
//! status that says it ([`PeerRefusal`]), the peer server's answer to what it will not take
//! ([`Refusal`]), and the reading of a short answer.

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

/// What a refusal on the peer port means, and the one place its status is chosen: the peer
/// server answers with [`PeerRefusal::status`], and the clients read an answer back with
/// [`PeerRefusal::from_status`], so the two ends of the protocol cannot drift apart. The
/// statuses are the wire protocol between nodes, older builds among them: a variant's status
/// never changes. One status per variant, so that a client can tell them apart; where one
/// covers several situations, the endpoint asked and the reason's text tell them apart.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum PeerRefusal {
    /// 400: not what a correct node sends: headers missing or malformed, a batch that does
    /// not decode or whose messages disagree with its headers, a message to its own sender, a
    /// snapshot on the stream, a snapshot file that fails its checks.
    Malformed,
    /// 403: a sender this node does not count as a member, while it hears another leader.
    Stranger,
    /// 404: what the request asks about is unknown here: a joining node this member does not
    /// have as a member at its URL (yet), or the path itself (a build older than the route,
    /// which is how `builds` reads the probe's 404).
    Unknown,
    /// 408: a snapshot that stalled, or arrived too slowly.
    TimedOut,
    /// 409: what this node holds stands against the request: a snapshot from the same sender
    /// still arriving, or, to a joining node, a doubt (see [`super::join::Answer::Doubt`]).
    Conflict,
    /// 410: the sender counts as removed, and stops: a removed node's vote requests, or a
    /// joining node the leader refuses for good.
    Removed,
    /// 412: meant for another node than this one: the request names another cluster, another
    /// run of this one ([`crate::incarnation`]), or another member.
    WrongNode,
    /// 413: a message or a snapshot over this node's limits.
    TooLarge,
    /// 500: checking an arrived snapshot failed in this node.
    Internal,
    /// 503: not now, ask again later: this node is starting (it replays its log: see
    /// [`super::starting`]), joining (it has not learned its cluster's identity), shutting
    /// down, or gave up settling an arrived snapshot in time.
    Unavailable,
    /// 507: this node cannot store the snapshot: no room on its disk, or a write failed.
    CannotStore,
}

impl PeerRefusal {
    /// Every refusal, for [`PeerRefusal::from_status`].
    pub(super) const ALL: [PeerRefusal; 11] = [
        PeerRefusal::Malformed,
        PeerRefusal::Stranger,
        PeerRefusal::Unknown,
        PeerRefusal::TimedOut,
        PeerRefusal::Conflict,
        PeerRefusal::Removed,
        PeerRefusal::WrongNode,
        PeerRefusal::TooLarge,
        PeerRefusal::Internal,
        PeerRefusal::Unavailable,
        PeerRefusal::CannotStore,
    ];

    /// The status it is answered with.
    pub fn status(self) -> StatusCode {
        match self {
            PeerRefusal::Malformed => StatusCode::BAD_REQUEST,
            PeerRefusal::Stranger => StatusCode::FORBIDDEN,
            PeerRefusal::Unknown => StatusCode::NOT_FOUND,
            PeerRefusal::TimedOut => StatusCode::REQUEST_TIMEOUT,
            PeerRefusal::Conflict => StatusCode::CONFLICT,
            PeerRefusal::Removed => StatusCode::GONE,
            PeerRefusal::WrongNode => StatusCode::PRECONDITION_FAILED,
            PeerRefusal::TooLarge => StatusCode::PAYLOAD_TOO_LARGE,
            PeerRefusal::Internal => StatusCode::INTERNAL_SERVER_ERROR,
            PeerRefusal::Unavailable => StatusCode::SERVICE_UNAVAILABLE,
            PeerRefusal::CannotStore => StatusCode::INSUFFICIENT_STORAGE,
        }
    }

    /// The refusal a peer's answer with `status` means; `None` for a success, and for a
    /// status no node of this protocol answers with (a proxy's, say).
    pub fn from_status(status: StatusCode) -> Option<PeerRefusal> {
        PeerRefusal::ALL.into_iter().find(|r| r.status() == status)
    }
}

/// A refused request: what it means and one line of reason. The connection is closed after
/// it.
#[derive(Debug)]
pub struct Refusal {
    kind: PeerRefusal,
    text: String,
    /// Set only when this node gave up on a snapshot on its own, after its last byte (a time
    /// limit of its own ran out): why, and what its operator should do, since the leader's
    /// next attempts are likely to meet the same trouble (see [`Refusal::gave_up`]).
    gave_up: Option<String>,
    /// The snapshot refused, once its message was read.
    snapshot: Option<SentSnapshot>,
    /// The connection broke while the body arrived (the sender reconnected, stopped, or was
    /// reset): a transport event, not what it sent, so the log does not warn of it.
    cut: bool,
}

impl Refusal {
    pub(super) fn new(kind: PeerRefusal, text: impl Into<String>) -> Refusal {
        Refusal {
            kind,
            text: text.into(),
            gave_up: None,
            snapshot: None,
            cut: false,
        }
    }

    /// A request whose body broke off: `text` says how. Answered as malformed, as before,
    /// but the peer server's log says it only at DEBUG (see [`Refused`]).
    pub(super) fn cut_short(text: impl Into<String>) -> Refusal {
        Refusal {
            cut: true,
            ..Refusal::new(PeerRefusal::Malformed, text)
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

    /// What it means.
    pub fn kind(&self) -> PeerRefusal {
        self.kind
    }

    /// The status it is answered with.
    pub fn status(&self) -> StatusCode {
        self.kind.status()
    }

    /// Its reason.
    pub fn text(&self) -> &str {
        &self.text
    }
}

/// A refusal's kind and reason, kept in its answer's extensions (which are not sent) for the
/// peer server's log of what it refuses (`server::log_refusals`): the answer is made with no
/// side effect, and the log knows who asked.
#[derive(Clone, Debug)]
pub(super) struct Refused {
    pub(super) kind: PeerRefusal,
    pub(super) text: String,
    /// The body broke off ([`Refusal::cut_short`]).
    pub(super) cut: bool,
}

impl IntoResponse for Refusal {
    fn into_response(self) -> Response {
        let mut response = (self.status(), format!("{}\n", self.text)).into_response();
        response
            .headers_mut()
            .insert(header::CONNECTION, HeaderValue::from_static("close"));
        response.extensions_mut().insert(Refused {
            kind: self.kind,
            text: self.text,
            cut: self.cut,
        });
        response
    }
}

impl From<WireError> for Refusal {
    fn from(err: WireError) -> Refusal {
        let kind = match err {
            WireError::TooLarge { .. } => PeerRefusal::TooLarge,
            _ => PeerRefusal::Malformed,
        };
        Refusal::new(kind, format!("bad batch: {err}"))
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

    /// Where `refusal` is in [`PeerRefusal::ALL`]. A match without a wildcard: a new refusal
    /// does not compile here until it is given a place, and the test below then fails until
    /// it is in `ALL` at that place.
    fn place_in_all(refusal: PeerRefusal) -> usize {
        match refusal {
            PeerRefusal::Malformed => 0,
            PeerRefusal::Stranger => 1,
            PeerRefusal::Unknown => 2,
            PeerRefusal::TimedOut => 3,
            PeerRefusal::Conflict => 4,
            PeerRefusal::Removed => 5,
            PeerRefusal::WrongNode => 6,
            PeerRefusal::TooLarge => 7,
            PeerRefusal::Internal => 8,
            PeerRefusal::Unavailable => 9,
            PeerRefusal::CannotStore => 10,
        }
    }

    /// Each refusal the peer server answers with comes back from its status as itself (no two
    /// share one, none is a success), and each client decides on that status what the
    /// refusal means: a sender stops as removed only on `Removed`; a joining node takes
    /// `Removed` as a refusal for good, `Conflict` as a doubt, and
    /// any other refusal as "ask again"; the probe counts every answer but `WrongNode` as the
    /// member's; the build check reads `Unknown` (no probe route) as an older build and
    /// nothing from the others. Successes and statuses of no refusal read as before.
    #[test]
    fn every_refusal_is_read_back_from_its_status_as_it_was_meant() {
        use super::super::builds::{Build, build_of};
        use super::super::join::{Answer, Said, read_answer};
        use super::super::peer::{Sent, sent};
        use super::super::probe::answers_as_member;
        use axum::http::HeaderMap;

        let none = HeaderMap::new();
        for (at, refusal) in PeerRefusal::ALL.into_iter().enumerate() {
            assert_eq!(place_in_all(refusal), at, "{refusal:?}");
            let status = refusal.status();
            assert!(!status.is_success(), "{refusal:?}: {status}");
            assert_eq!(PeerRefusal::from_status(status), Some(refusal), "{status}");
            let refused = Refusal::new(refusal, "why");
            assert_eq!((refused.kind(), refused.status()), (refusal, status));
            assert_eq!(refused.into_response().status(), status, "{refusal:?}");

            let gone = matches!(sent(status, "why".into()), Sent::Gone(text) if text == "why");
            assert_eq!(gone, refusal == PeerRefusal::Removed, "{refusal:?}: stream");

            let answer = read_answer(status, Said::default(), "why".into());
            match refusal {
                PeerRefusal::Removed => assert_eq!(answer, Ok(Answer::Refused("why".into()))),
                PeerRefusal::Conflict => assert_eq!(answer, Ok(Answer::Doubt("why".into(), None))),
                _ => assert!(
                    answer.as_ref().is_err_and(|e| e.contains("why")),
                    "{refusal:?}: join {answer:?}"
                ),
            }

            let counts = refusal != PeerRefusal::WrongNode;
            assert_eq!(answers_as_member(status), counts, "{refusal:?}: probe");

            let older = (refusal == PeerRefusal::Unknown).then_some(Build::Older);
            assert_eq!(build_of(status, &none), older, "{refusal:?}: build");
        }

        // A success, and a status no node answers with (a proxy's).
        assert_eq!(PeerRefusal::from_status(StatusCode::OK), None);
        assert_eq!(PeerRefusal::from_status(StatusCode::NO_CONTENT), None);
        assert!(matches!(
            sent(StatusCode::NO_CONTENT, String::new()),
            Sent::Ok
        ));
        assert!(matches!(sent(StatusCode::OK, String::new()), Sent::Ok));
        assert!(answers_as_member(StatusCode::OK));
        assert_eq!(build_of(StatusCode::OK, &none), Some(Build::Older));
        let mut values = HeaderMap::new();
        values.insert(super::super::HEADER_VALUES, HeaderValue::from_static("1"));
        assert_eq!(build_of(StatusCode::OK, &values), Some(Build::AnyBytes));
        let admitted = read_answer(StatusCode::OK, Said::default(), "abc".into());
        assert!(
            matches!(admitted, Ok(Answer::Admitted { cluster: 0xabc, .. })),
            "{admitted:?}"
        );
        let proxy = StatusCode::BAD_GATEWAY;
        assert_eq!(PeerRefusal::from_status(proxy), None);
        assert!(matches!(sent(proxy, "x".into()), Sent::Failed(_)));
        assert!(read_answer(proxy, Said::default(), "x".into()).is_err());
        assert!(answers_as_member(proxy));
        assert_eq!(build_of(proxy, &none), None);
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
