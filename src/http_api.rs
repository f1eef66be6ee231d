//! The client REST API, the first box of the flow. Routes and status codes are the original's:
//! `PUT /<key>` stores the body, `GET /<key>` reads it, `POST /<id>` adds a member with the
//! body as its peer URL, `DELETE /<id>` removes one, anything else is 405. Unlike the original,
//! a write is answered only once it is committed and applied, and a read is linearizable
//! unless `?stale` asks for the local map.
//!
//! Paths under `/-/` are the node's own endpoints and never keys. Every error is one line of
//! plain text; [`ApiError`] is the single place where failures become status codes.
//!
//! The handlers port the original's `httpapi.go`: [`router`]'s `dispatch`, then `get_key`,
//! `put_key`, `add_member`, `remove_member` and `read_body`; `endpoints` serves the node's own.
//! Before any of that, [`server_checks`] answers what Go's HTTP server, and so the original,
//! answers before its handler runs: that, and the rest of what Go's server does around a
//! handler, is `http_api/go_server.rs`. Until the node has started, the REST port answers
//! as a starting node ([`starting`]), on the same port.

use axum::Router;
use axum::body::{Body, Bytes, HttpBody as _};
use axum::extract::{Request, State};
use axum::http::{HeaderValue, Method, StatusCode, header};
use axum::response::{IntoResponse, Response};
use bytes::BytesMut;
use percent_encoding::percent_decode_str;

use crate::membership::{check_peer_scheme, parse_node_id, reaches_listener, validate_peer_url};
use crate::raft_node::{MemberChange, NodeHandle, ProposalError, ReadConsistency};

mod go_server;
pub mod starting;
pub use go_server::server_checks;
use go_server::{discard, go_takes_as_uri, waits_to_send};

/// Methods the key-value routes answer, listed as the original does: one `Allow` header each.
const ALLOWED: &[&str] = &["PUT", "GET", "POST", "DELETE"];

/// Methods the node's own endpoints under `/-/` answer (the live page's too).
pub const ENDPOINT_METHODS: &[&str] = &["GET", "HEAD"];
/// Prefix reserved for the node's own endpoints.
pub const RESERVED_PREFIX: &str = "/-/";

/// What every handler shares.
#[derive(Clone)]
pub struct AppState {
    /// The raft node.
    pub node: NodeHandle,
    /// Largest accepted body.
    pub max_body_bytes: usize,
    /// `--client-timeout-ms`: past it, a body must have averaged
    /// [`crate::config::MIN_BODY_RATE`].
    pub client_timeout: std::time::Duration,
    /// Whether peers speak TLS: a new member's URL must then be `https://` (else `http://`).
    pub peer_tls: bool,
    /// The address the REST API listens on: a new member's URL that reaches this listener is
    /// refused (see [`reaches_listener`]).
    pub rest_addr: std::net::SocketAddr,
}

/// The REST router.
pub fn router(state: AppState) -> Router {
    // One handler, dispatching on method and path like the original's ServeHTTP: the key is
    // the whole path, which no route pattern captures faithfully (`/`, `//a`, `/a/b`).
    // Shared behind one `Arc`: axum clones the state for every request, and a clone of the
    // handle itself (a dozen reference counts, a channel's sender count among them, touched
    // by both cores) cost a sixth of a stale GET's CPU.
    Router::new()
        .fallback(dispatch)
        .with_state(std::sync::Arc::new(state))
}

/// `router` whose every answer, once `stopping` is cancelled, asks the client to close its
/// connection, so it does not send its next request down a connection about to close (and
/// a stopping node, which serves its clients' open connections, is left sooner).
pub fn close_when_stopping(
    router: Router,
    stopping: tokio_util::sync::CancellationToken,
) -> Router {
    // Behind an `Arc`: axum clones this closure for every response, and cloning a token
    // takes its lock.
    let stopping = std::sync::Arc::new(stopping);
    router.layer(axum::middleware::map_response(
        move |mut response: Response| {
            let stopping = stopping.is_cancelled();
            async move {
                if stopping {
                    response
                        .headers_mut()
                        .insert(header::CONNECTION, HeaderValue::from_static("close"));
                }
                response
            }
        },
    ))
}

/// Why a request failed; the one place where failures become HTTP answers.
#[derive(Debug, thiserror::Error)]
pub enum ApiError {
    /// The raft node could not carry out the request.
    #[error(transparent)]
    Proposal(#[from] ProposalError),
    /// GET of a missing key.
    #[error("key {0:?} not found")]
    NotFound(String),
    /// The path has a `%` not followed by two hex digits (the escape, as sent).
    #[error(
        "malformed percent-escape {0:?} in the path: a % must be followed by two hex digits (%25 \
         for a % itself)"
    )]
    BadEscape(String),
    /// The request target is neither a path nor `*` (`GET k`), which hyper lets through.
    #[error("request target {0:?} is not a path: it must start with / (or be *)")]
    NotAPath(String),
    /// The key is not UTF-8 once percent-decoded (the path, as sent).
    #[error(
        "path {0:?} names no key: a key must be UTF-8 text once percent-decoded \
         (%C3%A9 for é, not %E9); a value may be any bytes"
    )]
    BadKey(String),
    /// The key, once percent-decoded, is under `/-/`.
    #[error("key {0:?} is under /-/, which is reserved for the node's own endpoints")]
    ReservedKey(String),
    /// `/<id>` is not a positive integer.
    #[error(
        "bad node id {0:?}: want a positive integer such as 4 (POST and DELETE add and remove \
         members; a key is only written with PUT, and cannot be deleted, as in the original)"
    )]
    BadId(String),
    /// The body of a POST is not a peer URL.
    #[error("bad peer URL in the body: {0}")]
    BadUrl(String),
    /// The body exceeds the limit.
    #[error("request body exceeds {} (the limit of --max-body-bytes)", count(*.0 as u64, "byte"))]
    TooLarge(usize),
    /// The body could not be read.
    #[error("cannot read the request body: {0}")]
    Body(String),
    /// The body came too slowly (see [`crate::config::body_patience`]).
    #[error(
        "request body too slow: {} in {} ms; past --client-timeout-ms a body must average 64 KiB/s",
        count(*.0, "byte"),
        .1
    )]
    SlowBody(u64, u128),
    /// A method the route does not serve, and those it does (also in `Allow` headers).
    #[error("method {0} not allowed; this path takes {allowed}", allowed = .1.join(", "))]
    MethodNotAllowed(Method, &'static [&'static str]),
    /// A browser request from a page that is not served by a member of this cluster.
    #[error(
        "cross-origin request from {0} refused: only pages served by this cluster's members (their \
         REST URLs) may call this node"
    )]
    ForeignOrigin(String),
    /// A browser request from a page at this node, but under a DNS name that is not one of
    /// its cluster's (a page whose name was pointed here: DNS rebinding).
    #[error(
        "request from a page at {origin} refused: that name is not one of this cluster's; open the \
         page at {open}"
    )]
    ForeignName {
        /// The page's origin.
        origin: String,
        /// Where to open it.
        open: String,
    },
    /// An HTTP/1.1 request without a `Host` header.
    #[error("missing required Host header: an HTTP/1.1 request must name the host it is sent to")]
    MissingHost,
    /// More than one `Host` header (how many).
    #[error("{0} Host headers: a request names the host it is sent to once")]
    ManyHosts(usize),
    /// A `Host` header that cannot be a host (the value, as sent).
    #[error("malformed Host header {0:?}: want a host name or address, with an optional :port")]
    BadHost(String),
    /// A transfer coding other than `chunked` alone (the `Transfer-Encoding` values, as sent).
    #[error(
        "unsupported transfer encoding {0:?}: send the body as it is, with a Content-Length or \
         Transfer-Encoding: chunked alone"
    )]
    UnsupportedTransferCoding(String),
    /// An `Expect` header other than `100-continue` (the value, as sent). A list that holds
    /// `100-continue` can be refused too (see `go_server::unmet_expectation`): the reason says
    /// "alone", or it read as if the list had been served.
    #[error(
        "expectation {0:?} cannot be met: send Expect: 100-continue alone, or no Expect header"
    )]
    UnmetExpectation(String),
    /// A boolean query flag (`?pretty`, `?stale`) with a value that is none (see
    /// `query_flag`).
    #[error(
        "bad value {value:?} for ?{name}: want {want}; ?{name} alone is true, and without it \
         {without}"
    )]
    BadFlag {
        /// The flag's name.
        name: &'static str,
        /// The value, as decoded.
        value: String,
        /// The values taken.
        want: String,
        /// What the request does without the flag.
        without: &'static str,
    },
    /// An unknown path under `/-/`.
    #[error(
        "no endpoint {0}: the node's endpoints are {known}, and the live page /-/ui with its \
         stream /-/events (see the README's REST API); paths under /-/ are never keys",
        known = KNOWN_ENDPOINTS.join(", ")
    )]
    UnknownEndpoint(String),
    /// `/-/ready` while the node is not ready (why, as the node says it).
    #[error("not ready: {0}")]
    NotReady(String),
    /// Any request but `/-/health` and `/-/ready` while node `id` starts, saying what it is
    /// doing (see [`starting`]); the answer asks the client to try again in a second, and
    /// says, in the words every other certain refusal of a write uses, that nothing was done:
    /// a client (and the fault suite's) must not count the write as perhaps made.
    #[error(
        "node {id} is starting ({doing}) and serves no requests yet: this one was not taken and \
         will not happen; ask again"
    )]
    Starting {
        /// The node.
        id: u64,
        /// What it is doing, in words.
        doing: String,
    },
    /// An answer that could not be encoded as JSON (serde's reason).
    #[error("cannot encode JSON: {0}")]
    Encode(String),
}

/// The status code of an answer about a request: 503 for what the node could not do now (its
/// text says whether the request may still happen), 409 for a membership change that conflicts
/// with the members, 404 for a member that is not one, 400 for a bad peer URL. Public so the
/// simulator's clients see the codes a client of the REST API sees.
pub fn proposal_status(p: &ProposalError) -> StatusCode {
    match p {
        ProposalError::NoLeader(_)
        | ProposalError::NotProposed(_)
        | ProposalError::NotTaken(_)
        | ProposalError::Replaced(_)
        | ProposalError::Timeout(_)
        | ProposalError::Withdrawn(_)
        | ProposalError::WithdrawnUnknown(_)
        | ProposalError::OutcomeUnknown
        | ProposalError::ReadNoLeader(_)
        | ProposalError::ReadTimeout(_)
        | ProposalError::ReadNotTaken(_)
        | ProposalError::ReadStopped(_)
        | ProposalError::NodeStopped(_)
        | ProposalError::Busy(_)
        | ProposalError::Stopped(_)
        | ProposalError::StoppedUnproposed(_)
        | ProposalError::BuildsUnknown(..)
        | ProposalError::LeaderUnlisted(..) => StatusCode::SERVICE_UNAVAILABLE,
        ProposalError::NotMember(_) => StatusCode::NOT_FOUND,
        // As for this node's own REST URL (`add_member`): a bad URL.
        ProposalError::UrlIsRestApi { .. } => StatusCode::BAD_REQUEST,
        ProposalError::AlreadyMember(_)
        | ProposalError::UrlInUse { .. }
        | ProposalError::LastVoter(_)
        | ProposalError::ChangePending
        | ProposalError::MembershipChanged { .. }
        | ProposalError::Rejected(_)
        | ProposalError::WouldLoseQuorum(_)
        | ProposalError::OlderBuild(_) => StatusCode::CONFLICT,
        // The code of what ran out: the node's refusal is its cause, not another status.
        ProposalError::CannotCatchUp { answer, .. } => proposal_status(answer),
    }
}

impl ApiError {
    fn status(&self) -> StatusCode {
        match self {
            ApiError::Proposal(p) => proposal_status(p),
            ApiError::NotFound(_) | ApiError::UnknownEndpoint(_) => StatusCode::NOT_FOUND,
            ApiError::BadEscape(_)
            | ApiError::NotAPath(_)
            | ApiError::BadKey(_)
            | ApiError::ReservedKey(_)
            | ApiError::BadId(_)
            | ApiError::BadUrl(_)
            | ApiError::BadFlag { .. }
            | ApiError::Body(_)
            | ApiError::MissingHost
            | ApiError::ManyHosts(_)
            | ApiError::BadHost(_) => StatusCode::BAD_REQUEST,
            ApiError::TooLarge(_) => StatusCode::PAYLOAD_TOO_LARGE,
            ApiError::SlowBody(..) => StatusCode::REQUEST_TIMEOUT,
            ApiError::ForeignOrigin(_) | ApiError::ForeignName { .. } => StatusCode::FORBIDDEN,
            ApiError::MethodNotAllowed(..) => StatusCode::METHOD_NOT_ALLOWED,
            ApiError::UnmetExpectation(_) => StatusCode::EXPECTATION_FAILED,
            ApiError::UnsupportedTransferCoding(_) => StatusCode::NOT_IMPLEMENTED,
            ApiError::NotReady(_) | ApiError::Starting { .. } => StatusCode::SERVICE_UNAVAILABLE,
            ApiError::Encode(_) => StatusCode::INTERNAL_SERVER_ERROR,
        }
    }
}

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        let status = self.status();
        if status.is_server_error() {
            tracing::debug!(%status, error = %self, "request failed");
        }
        let mut response = (status, format!("{self}\n")).into_response();
        match self {
            ApiError::MethodNotAllowed(_, allow) => {
                for method in allow {
                    response
                        .headers_mut()
                        .append(header::ALLOW, HeaderValue::from_static(method));
                }
            }
            // A start takes seconds, or minutes for a large log: a client that retries on
            // its own (`curl --retry` reads this header) is asked to wait a second between
            // tries, not to ask again at once.
            ApiError::Starting { .. } => {
                response
                    .headers_mut()
                    .insert(header::RETRY_AFTER, HeaderValue::from_static("1"));
            }
            // Go closes the connection after these answers; so does this node: a client that
            // held its body back could send it after the answer, to be read as a request.
            ApiError::MissingHost
            | ApiError::ManyHosts(_)
            | ApiError::BadHost(_)
            | ApiError::UnmetExpectation(_)
            | ApiError::UnsupportedTransferCoding(_) => {
                response
                    .headers_mut()
                    .insert(header::CONNECTION, HeaderValue::from_static("close"));
            }
            _ => {}
        }
        response
    }
}

async fn dispatch(State(app): State<std::sync::Arc<AppState>>, request: Request) -> Response {
    let (parts, mut body) = request.into_parts();
    // Hyper takes an authority-form target (`GET k`, `GET h:1`), whose path is empty. The
    // original's key is the request target, and Go's server takes one that starts like a URL
    // scheme (see `go_takes_as_uri`): such a target is a key here too, one that no path can
    // name, as `*` is.
    let opaque_key = match parts.uri.authority() {
        Some(target) if parts.uri.scheme().is_none() && go_takes_as_uri(target.as_str()) => {
            Some(target.as_str().to_string())
        }
        _ => None,
    };
    let is_key_target = opaque_key.is_some();
    let path = opaque_key.unwrap_or_else(|| parts.uri.path().to_string());
    let query = parts.uri.query().unwrap_or("").to_string();
    let (route, result) = if parts.method == Method::CONNECT && !path.starts_with('/') {
        // Go's server takes a CONNECT's `host:port` target, and the original's handler then
        // refuses the method, as for any target.
        (
            "other",
            Err(ApiError::MethodNotAllowed(Method::CONNECT, ALLOWED)),
        )
    } else if !path.starts_with('/') && path != "*" && !is_key_target {
        // What Go's server refuses too (`GET 127.0.0.1:9121`, `GET k`): `400`. `*` is a key
        // in the original (its key is the request target, which Go's server lets be `*`),
        // one that no path can name.
        ("bad_target", Err(ApiError::NotAPath(parts.uri.to_string())))
    } else if path.starts_with(RESERVED_PREFIX) {
        match KNOWN_ENDPOINTS.iter().find(|known| **known == path) {
            Some(route) => (*route, endpoints(&app, &parts.method, route, &query).await),
            None => ("/-/unknown", Err(ApiError::UnknownEndpoint(path.clone()))),
        }
    } else {
        match parts.method {
            Method::GET => ("get", get_key(&app, &path, is_key_target, &query).await),
            Method::PUT => (
                "put",
                put_key(&app, &path, is_key_target, &parts.headers, &mut body).await,
            ),
            Method::POST => (
                "add_member",
                add_member(&app, &path, parts.uri.query(), &parts.headers, &mut body).await,
            ),
            Method::DELETE => (
                "remove_member",
                remove_member(&app, &path, parts.uri.query()).await,
            ),
            m => ("other", Err(ApiError::MethodNotAllowed(m, ALLOWED))),
        }
    };
    // A body left unread (a refused request's, a GET's) is read to its end first: see
    // `discard`. Refusing before reading, rather than reading first, names the request's
    // first fault (a bad key, not its size) and asks no `Expect: 100-continue` client for a
    // body that would be thrown away.
    if !body.is_end_stream() && !waits_to_send(&parts.headers) {
        discard(body, tokio::time::Instant::now(), 0, app.client_timeout).await;
    }
    let response = result.unwrap_or_else(IntoResponse::into_response);
    app.node
        .metrics()
        .http_requests
        .with_label_values(&[route, response.status().as_str()])
        .inc();
    response
}

/// The node's own endpoints.
const KNOWN_ENDPOINTS: &[&str] = &[
    "/-/members",
    "/-/status",
    "/-/health",
    "/-/ready",
    "/-/metrics",
];

/// The key a request names: its decoded path, or (`literal`) a target Go's server takes as
/// a URI (see [`go_takes_as_uri`]), spelt as sent, as the original's key is: Go decodes
/// nothing of it (`u:p%41@h:1` is not `u:pA@h:1`, and `u:p%zz@h:1` is a key, not a bad
/// escape). It cannot start with `/-/`.
fn key_of(target: &str, literal: bool) -> Result<String, ApiError> {
    if literal {
        return Ok(target.to_string());
    }
    decode_key(target)
}

fn decode_key(path: &str) -> Result<String, ApiError> {
    // Taken literally, `/a%zz` would be the key `/a%25zz` names; the original refused it too
    // (Go's URL parser does).
    if let Some(at) = bad_escape(path) {
        return Err(ApiError::BadEscape(path[at..].chars().take(3).collect()));
    }
    let key = percent_decode_str(path)
        .decode_utf8()
        .map(|k| k.into_owned())
        .map_err(|_| ApiError::BadKey(path.to_string()))?;
    // `/%2D/x` decodes to `/-/x`: the node's own namespace, which is never a key.
    if key.starts_with(RESERVED_PREFIX) {
        return Err(ApiError::ReservedKey(key));
    }
    Ok(key)
}

/// Where `path` has a `%` not followed by two hex digits.
fn bad_escape(path: &str) -> Option<usize> {
    let bytes = path.as_bytes();
    (0..bytes.len()).find(|&at| {
        bytes[at] == b'%'
            && !bytes
                .get(at + 1..at + 3)
                .is_some_and(|hex| hex.iter().all(u8::is_ascii_hexdigit))
    })
}

/// Whether the query string asks for a stale (local) read (see [`query_flag`]). Only
/// `?stale`, `=true` and `=1` were, and any other value (`?stale=t`, `?stale=maybe`) was
/// silently a linearizable read (found by a newcomer's campaign).
fn wants_stale(query: &str) -> Result<bool, ApiError> {
    query_flag(query, "stale", "the read is linearizable")
}

/// Whether the query string asks `/-/status` for the text laid out for a person (see
/// [`query_flag`]): taken as "yes", `?pretty=0` was the text.
fn wants_pretty(query: &str) -> Result<bool, ApiError> {
    query_flag(query, "pretty", "the status is JSON")
}

/// The boolean query flag `name`: `?name` alone, or a boolean as the flags take one
/// (`name=1`, `name=false`; the last counts); any other value is refused, naming the values
/// taken and what the request does `without` the flag. Decoded as a form is, since a client
/// may escape any character: compared raw, `?pretty=%31` was a 400.
fn query_flag(query: &str, name: &'static str, without: &'static str) -> Result<bool, ApiError> {
    let mut on = false;
    for (given, value) in form_urlencoded::parse(query.as_bytes()) {
        if given == name {
            on = value.is_empty()
                || crate::config::go_bool(&value).map_err(|want| ApiError::BadFlag {
                    name,
                    value: value.into_owned(),
                    want,
                    without,
                })?;
        }
    }
    Ok(on)
}

async fn get_key(
    app: &AppState,
    path: &str,
    literal: bool,
    query: &str,
) -> Result<Response, ApiError> {
    let key = key_of(path, literal)?;
    let consistency = if wants_stale(query)? {
        ReadConsistency::Stale
    } else {
        ReadConsistency::Linearizable
    };
    match app.node.get(&key, consistency).await? {
        Some(value) => {
            // A value is any bytes: text is labelled text, as every value was when values had
            // to be UTF-8; the rest is labelled as bytes, not passed off as text.
            let content_type = if std::str::from_utf8(&value).is_ok() {
                "text/plain; charset=utf-8"
            } else {
                "application/octet-stream"
            };
            Ok((
                StatusCode::OK,
                [(header::CONTENT_TYPE, content_type)],
                value,
            )
                .into_response())
        }
        None => Err(ApiError::NotFound(key)),
    }
}

async fn put_key(
    app: &AppState,
    path: &str,
    literal: bool,
    headers: &axum::http::HeaderMap,
    body: &mut Body,
) -> Result<Response, ApiError> {
    // Left unread when the key is refused: `dispatch` discards it.
    let key = key_of(path, literal)?;
    let body = std::mem::take(body);
    let body = read_body(headers, body, app.max_body_bytes, app.client_timeout).await?;
    app.node.put(key, body).await?;
    Ok(StatusCode::NO_CONTENT.into_response())
}

/// The id of `POST`/`DELETE /<id>`. As the original's, it is the request target after its one
/// leading `/`, query string and all, so `//4` and `/4?dry-run=1` are no ids (`400`): folded
/// into `4`, they removed member 4 without a word about what else they said (found by a
/// review).
fn node_id(path: &str, query: Option<&str>) -> Result<u64, ApiError> {
    let text = path.strip_prefix('/').unwrap_or(path);
    match (parse_node_id(text), query) {
        (Some(id), None) if id > 0 => Ok(id),
        (_, None) => Err(ApiError::BadId(text.to_string())),
        (_, Some(query)) => Err(ApiError::BadId(format!("{text}?{query}"))),
    }
}

async fn add_member(
    app: &AppState,
    path: &str,
    query: Option<&str>,
    headers: &axum::http::HeaderMap,
    body: &mut Body,
) -> Result<Response, ApiError> {
    // Left unread when the id is refused: `dispatch` discards it.
    let id = node_id(path, query)?;
    let body = std::mem::take(body);
    let body = read_body(headers, body, app.max_body_bytes, app.client_timeout).await?;
    let text = std::str::from_utf8(&body).map_err(|_| ApiError::BadUrl("not UTF-8".into()))?;
    let url = validate_peer_url(text)
        .and_then(|url| check_peer_scheme(&url, app.peer_tls).map(|()| url))
        .map_err(|e| ApiError::BadUrl(e.to_string()))?;
    // A member there could never be reached (raft's messages would go to the REST API), and
    // counting in the quorum from its addition on, it could leave the cluster unable to
    // commit even its own removal: `12380` for `12379` is an easy slip.
    if reaches_listener(&url, app.rest_addr) {
        return Err(ApiError::BadUrl(format!(
            "{url} is this node's REST API (--port {}), not a peer port: a member's peer URL is \
             its entry in --cluster",
            app.rest_addr.port()
        )));
    }
    app.node
        .change_members(MemberChange::Add { id, url })
        .await?;
    Ok(StatusCode::NO_CONTENT.into_response())
}

async fn remove_member(
    app: &AppState,
    path: &str,
    query: Option<&str>,
) -> Result<Response, ApiError> {
    let id = node_id(path, query)?;
    app.node.change_members(MemberChange::Remove { id }).await?;
    Ok(StatusCode::NO_CONTENT.into_response())
}

/// Reads the whole body, refusing more than `limit` bytes (early, from Content-Length, when
/// the client says how much it will send), and one that arrives too slowly (see
/// [`crate::config::body_patience`]; `patience` is the client timeout). A refused body is
/// read to its end first when the client is sending it (see [`discard`]).
async fn read_body(
    headers: &axum::http::HeaderMap,
    mut body: Body,
    limit: usize,
    patience: std::time::Duration,
) -> Result<Bytes, ApiError> {
    use http_body_util::BodyExt;
    let started = tokio::time::Instant::now();
    // A body's size hint is its Content-Length (a chunked body's is 0).
    if body.size_hint().lower() > limit as u64 {
        if !waits_to_send(headers) {
            discard(body, started, 0, patience).await;
        }
        return Err(ApiError::TooLarge(limit));
    }
    // Each frame is copied out and dropped at once: a frame shares hyper's read buffer (8 KiB
    // or more), so a body trickled a byte per TCP segment, each kept as it came, held 8 KiB
    // per byte received: gigabytes from one client (found by a review).
    let mut collected = BytesMut::new();
    let mut received: u64 = 0;
    loop {
        let due = started + crate::config::body_patience(patience, received);
        let frame = match tokio::time::timeout_at(due, body.frame()).await {
            Err(_) => return Err(ApiError::SlowBody(received, started.elapsed().as_millis())),
            Ok(None) => break,
            Ok(Some(frame)) => frame.map_err(|err| ApiError::Body(err.to_string()))?,
        };
        if let Ok(data) = frame.into_data() {
            received += data.len() as u64;
            if received > limit as u64 {
                // A chunked body past the limit. Reading it sent any `100 Continue`: the
                // client is sending the rest.
                drop(collected);
                discard(body, started, received, patience).await;
                return Err(ApiError::TooLarge(limit));
            }
            collected.extend_from_slice(&data);
        }
    }
    Ok(collected.freeze())
}

/// The node's own endpoints under `/-/` (`path` is one of [`KNOWN_ENDPOINTS`]): read-only,
/// GET and HEAD (health checkers often ask with HEAD; the server sends a HEAD's headers only).
async fn endpoints(
    app: &AppState,
    method: &Method,
    path: &str,
    query: &str,
) -> Result<Response, ApiError> {
    if method != Method::GET && method != Method::HEAD {
        return Err(ApiError::MethodNotAllowed(method.clone(), ENDPOINT_METHODS));
    }
    match path {
        "/-/health" => Ok((StatusCode::OK, "ok\n").into_response()),
        "/-/members" => {
            let status = app.node.status().await?;
            json(&status.members)
        }
        "/-/status" => {
            let pretty = wants_pretty(query)?;
            let status = app.node.status().await?;
            if pretty {
                Ok((StatusCode::OK, pretty_status(&status)).into_response())
            } else {
                json(&status)
            }
        }
        // From shared state, not the inbox: a node busy replaying still answers.
        "/-/ready" => match app.node.readiness() {
            Ok(()) => Ok((StatusCode::OK, "ready\n").into_response()),
            Err(why) => Err(ApiError::NotReady(why)),
        },
        "/-/metrics" => Ok((
            StatusCode::OK,
            [(header::CONTENT_TYPE, "text/plain; version=0.0.4")],
            app.node.metrics().render(),
        )
            .into_response()),
        _ => Err(ApiError::UnknownEndpoint(path.to_string())),
    }
}

/// `value` as a JSON answer.
fn json<T: serde::Serialize>(value: &T) -> Result<Response, ApiError> {
    let text = serde_json::to_string(value).map_err(|err| ApiError::Encode(err.to_string()))?;
    Ok((
        StatusCode::OK,
        [(header::CONTENT_TYPE, "application/json")],
        text + "\n",
    )
        .into_response())
}

/// `/-/status?pretty`: the same facts, laid out for a person.
fn pretty_status(s: &crate::raft_node::NodeStatus) -> String {
    use std::fmt::Write;
    let mut out = String::new();
    let leader = if s.leader == 0 {
        "none known".to_string()
    } else {
        s.leader.to_string()
    };
    let _ = writeln!(out, "node {} is {} (leader: {leader})", s.id, s.role);
    let _ = writeln!(out, "term {}  vote {}", s.term, s.vote);
    let _ = writeln!(
        out,
        "log: first {}  last {}  commit {}  applied {}  snapshot {}",
        s.first_index, s.last_index, s.commit, s.applied, s.snapshot_index
    );
    let _ = writeln!(out, "wal: {} bytes on disk", s.wal_bytes);
    let _ = writeln!(
        out,
        "sessions: {} ({} of applied requests)",
        s.sessions.0,
        count(s.sessions.1 as u64, "range")
    );
    let _ = writeln!(out, "incarnation: {}", s.incarnation);
    let _ = writeln!(out, "members:");
    for m in &s.members {
        let mark = if m.is_leader { "  (leader)" } else { "" };
        let _ = writeln!(out, "  {}  {}{mark}", m.id, m.url);
    }
    if let Some(progress) = &s.progress {
        let _ = writeln!(out, "followers:");
        for (id, p) in progress {
            let reach = if p.reachable {
                "reachable"
            } else {
                "unreachable"
            };
            let _ = writeln!(
                out,
                "  {id}  match {}  next {}  {}  {reach}",
                p.matched, p.next, p.state
            );
        }
    }
    if let Some(to) = s.transferring_to {
        let _ = writeln!(out, "handing leadership to {to}");
    }
    out
}

/// `n` and `noun`, in the plural unless `n` is 1: "1 range", "3 ranges" (it said "1 ranges").
fn count(n: u64, noun: &str) -> String {
    if n == 1 {
        format!("1 {noun}")
    } else {
        format!("{n} {noun}s")
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A body that arrives a byte at a time, each byte a frame pinning a buffer of 8 KiB (as
    /// hyper's are), is read whole while holding at most one such buffer: kept as they came,
    /// a client trickling a body held 8 KiB per byte sent.
    #[tokio::test]
    async fn a_trickled_body_keeps_none_of_the_buffers_its_bytes_came_in() {
        const BYTES: usize = 1000;
        let (body, buffers) = crate::transport::http_tests::trickled(BYTES);
        let got = read_body(
            &axum::http::HeaderMap::new(),
            body,
            1 << 20,
            std::time::Duration::from_secs(30),
        )
        .await
        .expect("a body within its limits");
        assert_eq!(got, Bytes::from(vec![b'x'; BYTES]));
        let (most, alive) = buffers.most_and_alive();
        assert!(most <= 2, "{most} buffers of 8 KiB held at once");
        assert_eq!(alive, 0);
    }

    /// Once the node stops, every answer of the router it wraps (a page, a refusal) asks the
    /// client to close its connection; before, none does.
    #[tokio::test]
    async fn every_answer_asks_to_close_the_connection_once_stopping() {
        let stopping = tokio_util::sync::CancellationToken::new();
        let page = Router::new().route("/-/ui", axum::routing::get(|| async { "page" }));
        let router = close_when_stopping(page, stopping.clone());
        let ask = |path: &str| {
            let request = axum::http::Request::builder().uri(path).body(Body::empty());
            let request = request.expect("a well-formed request");
            tower::ServiceExt::oneshot(router.clone(), request)
        };
        let before = ask("/-/ui").await.expect("the router always answers");
        assert_eq!(before.status(), StatusCode::OK);
        assert_eq!(before.headers().get(header::CONNECTION), None);
        stopping.cancel();
        for path in ["/-/ui", "/no-such-page"] {
            let after = ask(path).await.expect("the router always answers");
            assert_eq!(
                after.headers().get(header::CONNECTION),
                Some(&HeaderValue::from_static("close")),
                "{path}"
            );
        }
    }

    /// `/-/ready`'s 503 and a JSON answer that cannot be encoded (500) are `ApiError`s, mapped
    /// to their status with the others, and answer the text the 503 had when it was built
    /// in place.
    #[tokio::test]
    async fn not_ready_and_an_unencodable_answer_get_their_status_from_api_error() {
        let not_ready = ApiError::NotReady("replaying the log".into()).into_response();
        assert_eq!(not_ready.status(), StatusCode::SERVICE_UNAVAILABLE);
        let body = axum::body::to_bytes(not_ready.into_body(), usize::MAX)
            .await
            .expect("a body in memory");
        assert_eq!(&body[..], b"not ready: replaying the log\n");
        // JSON keys are strings: a map keyed by pairs has no JSON.
        let unencodable = std::collections::BTreeMap::from([((1, 2), 3)]);
        let err = json(&unencodable).expect_err("no JSON for a map keyed by pairs");
        assert!(matches!(err, ApiError::Encode(_)), "{err:?}");
        assert_eq!(err.status(), StatusCode::INTERNAL_SERVER_ERROR);
        assert!(err.to_string().starts_with("cannot encode JSON: "), "{err}");
    }

    /// An answer naming a refused snapshot keeps the status code of the answer it names the
    /// cause of: a client's handling of 503s (and of a conflict) does not change with it.
    #[test]
    fn an_answer_naming_a_refused_snapshot_keeps_its_status_code() {
        let d = std::time::Duration::from_secs(5);
        for answer in [
            ProposalError::NotProposed(d),
            ProposalError::read_timeout_after(d),
            ProposalError::timeout_after(d),
            // Not one a node names the refusal in, but the rule is the answer's code.
            ProposalError::ChangePending,
        ] {
            let named = ProposalError::CannotCatchUp {
                answer: Box::new(answer.clone()),
                refused: "no room".into(),
            };
            assert_eq!(
                ApiError::Proposal(named).status(),
                ApiError::Proposal(answer.clone()).status(),
                "{answer}"
            );
        }
        let named = ProposalError::NotProposed(d).on_a_node_that_refused_a_snapshot("x".into());
        assert_eq!(
            ApiError::Proposal(named).status(),
            StatusCode::SERVICE_UNAVAILABLE
        );
    }

    /// `?stale` takes a boolean as `?pretty` does: `stale=t` and `stale=TRUE` are stale reads,
    /// and a value that is no boolean is refused, naming it and the values taken, where it was
    /// silently a linearizable read (`?stale=maybe`: a newcomer's campaign).
    #[test]
    fn stale_takes_a_boolean() {
        for query in [
            "stale",
            "stale=",
            "a=b&stale=true",
            "stale=1",
            "stale=t",
            "stale=TRUE",
        ] {
            assert!(matches!(wants_stale(query), Ok(true)), "{query}");
        }
        for query in ["", "notstale", "stale=false", "stale=0", "stale=1&stale=F"] {
            assert!(matches!(wants_stale(query), Ok(false)), "{query}");
        }
        let err = wants_stale("stale=maybe").expect_err("not a boolean");
        assert_eq!(err.status(), StatusCode::BAD_REQUEST);
        let text = err.to_string();
        assert!(
            text.starts_with(r#"bad value "maybe" for ?stale: "#),
            "{text}"
        );
        assert!(text.contains("true or false"), "{text}");
        assert!(
            text.contains("without it the read is linearizable"),
            "{text}"
        );
        assert_eq!(text.lines().count(), 1, "{text}");
    }

    /// `?pretty` takes the flags' booleans: `pretty=0` and `pretty=false` are the JSON, where
    /// any value was taken as "yes"; a value that is no boolean is refused, naming it.
    #[test]
    fn pretty_takes_a_boolean() {
        for query in [
            "pretty",
            "pretty=",
            "pretty=1",
            "a=b&pretty=true",
            "pretty=T",
        ] {
            assert!(matches!(wants_pretty(query), Ok(true)), "{query}");
        }
        for query in [
            "",
            "pretty=0",
            "pretty=false",
            "pretty=F",
            "prettyx",
            "pretty=1&pretty=0",
        ] {
            assert!(matches!(wants_pretty(query), Ok(false)), "{query}");
        }
        let err = wants_pretty("pretty=yes").expect_err("not a boolean");
        assert_eq!(err.status(), StatusCode::BAD_REQUEST);
        assert!(err.to_string().contains(r#""yes" for ?pretty"#), "{err}");
    }

    /// The query is decoded as a form is, names and values alike: `?pretty=%31` is
    /// `?pretty=1` (it was a 400, compared raw: review 108), and `?stale=%31` a stale read (it
    /// was a linearizable one). A refused value is named decoded.
    #[test]
    fn query_names_and_values_are_percent_decoded() {
        for query in [
            "pretty=%31",
            "pretty=%74rue",
            "%70retty=1",
            "a=%26&pretty=%54",
        ] {
            assert!(matches!(wants_pretty(query), Ok(true)), "{query}");
        }
        for query in ["pretty=%30", "pretty=%66alse", "pretty=1&%70retty=0"] {
            assert!(matches!(wants_pretty(query), Ok(false)), "{query}");
        }
        let err = wants_pretty("pretty=%79es").expect_err("not a boolean");
        assert!(err.to_string().contains(r#""yes" for ?pretty"#), "{err}");
        assert!(matches!(wants_stale("stale=%31"), Ok(true)));
        assert!(matches!(wants_stale("st%61le=true"), Ok(true)));
        assert!(matches!(wants_stale("stale=%30"), Ok(false)));
    }

    /// The README's `/-/status?pretty` example is what the code prints for that state, and a
    /// count of 1 is singular there ("1 range": it said "1 ranges") as in the errors.
    #[test]
    fn the_readme_shows_the_pretty_status_as_printed() {
        use crate::raft_node::{MemberStatus, PeerProgress};
        let member = |id, is_leader| MemberStatus {
            id,
            url: format!("http://127.0.0.1:{id}2379"),
            is_leader,
        };
        let follower = || PeerProgress {
            matched: 8,
            next: 9,
            state: "Replicate".into(),
            reachable: true,
        };
        let status = crate::raft_node::NodeStatus {
            id: 2,
            role: "Leader".into(),
            leader: 2,
            term: 2,
            vote: 2,
            commit: 8,
            applied: 8,
            snapshot_index: 0,
            first_index: 1,
            last_index: 8,
            commit_at_start: 8,
            wal_bytes: 539,
            sessions: (3, 1),
            incarnation: "f3a7143625a82248".into(),
            build: crate::version::BUILD,
            members: vec![member(1, false), member(2, true), member(3, false)],
            progress: Some([(1, follower()), (3, follower())].into()),
            transferring_to: None,
            log_tail: Vec::new(),
        };
        const README: &str = include_str!("../README.md");
        let (_, example) = README
            .split_once("$ curl -s 'localhost:22380/-/status?pretty'\n")
            .expect("README.md shows /-/status?pretty");
        let (example, _) = example.split_once("```").expect("the example's block ends");
        // The block is indented by two spaces under its list item.
        let shown: String = example
            .trim_end()
            .lines()
            .map(|l| l.strip_prefix("  ").unwrap_or(l).to_string() + "\n")
            .collect();
        let printed = pretty_status(&status);
        assert_eq!(shown, printed);
        assert!(
            printed.contains("sessions: 3 (1 range of applied requests)"),
            "{printed}"
        );
        assert_eq!(count(0, "byte"), "0 bytes");
        let slow = ApiError::SlowBody(1, 5000).to_string();
        assert!(
            slow.starts_with("request body too slow: 1 byte in 5000 ms"),
            "{slow}"
        );
        let large = ApiError::TooLarge(1).to_string();
        assert!(large.starts_with("request body exceeds 1 byte "), "{large}");
    }

    #[test]
    fn keys_are_percent_decoded_paths() {
        assert_eq!(decode_key("/a%20b").expect("valid"), "/a b");
        assert_eq!(decode_key("/").expect("valid"), "/");
        assert!(matches!(decode_key("/%FF"), Err(ApiError::BadKey(_))));
        // The reserved namespace, spelled with a percent escape, is still reserved.
        assert!(matches!(
            decode_key("/%2D/x"),
            Err(ApiError::ReservedKey(k)) if k == "/-/x"
        ));
        assert!(matches!(
            decode_key("/%2d/members"),
            Err(ApiError::ReservedKey(_))
        ));
        assert_eq!(decode_key("/-x").ok().as_deref(), Some("/-x"));
    }

    /// A key that is not UTF-8 once decoded is refused naming the path as sent and what a
    /// key must be: the reason said neither. The path is quoted and escaped, one line.
    #[test]
    fn a_key_that_is_not_utf8_names_the_path_and_what_a_key_must_be() {
        let err = decode_key("/bad%FF").expect_err("not UTF-8");
        assert_eq!(err.status(), StatusCode::BAD_REQUEST);
        let text = err.to_string();
        assert!(
            text.starts_with(r#"path "/bad%FF" names no key: "#),
            "{text}"
        );
        assert!(text.contains("UTF-8 text once percent-decoded"), "{text}");
        assert!(text.contains("a value may be any bytes"), "{text}");
        let text = ApiError::BadKey("/a\"\n%C3".into()).to_string();
        assert!(text.starts_with(r#"path "/a\"\n%C3" "#), "{text}");
        assert_eq!(text.lines().count(), 1, "{text}");
    }

    /// Go's URL parser refuses a `%` not followed by two hex digits, so the original answered
    /// 400; taken literally, `/bad%zz` was the key `/bad%25zz` names.
    #[test]
    fn malformed_percent_escapes_are_refused() {
        for (path, escape) in [
            ("/bad%zz", "%zz"),
            ("/a%4", "%4"),
            ("/a%", "%"),
            ("/%%41", "%%4"),
            ("/ok%41%g1", "%g1"),
            ("/a%4é", "%4é"),
        ] {
            match decode_key(path) {
                Err(err @ ApiError::BadEscape(_)) => {
                    assert!(
                        matches!(&err, ApiError::BadEscape(e) if e == escape),
                        "{path}: {err}"
                    );
                    assert_eq!(err.status(), StatusCode::BAD_REQUEST);
                    assert!(err.to_string().contains(&format!("{escape:?}")), "{err}");
                }
                other => panic!("{path}: {other:?}"),
            }
        }
        assert_eq!(decode_key("/bad%25zz").ok().as_deref(), Some("/bad%zz"));
        assert_eq!(decode_key("/%4a%4A").ok().as_deref(), Some("/JJ"));
    }

    /// A path under `/-/` that is no endpoint is refused naming those that are, the live
    /// page's included: the reason said only that such paths are no keys (a newcomer's
    /// campaign).
    #[test]
    fn an_unknown_endpoint_names_the_endpoints_there_are() {
        let err = ApiError::UnknownEndpoint("/-/nothing".into());
        assert_eq!(err.status(), StatusCode::NOT_FOUND);
        let text = err.to_string();
        assert!(text.starts_with("no endpoint /-/nothing: "), "{text}");
        for endpoint in KNOWN_ENDPOINTS.iter().chain(&["/-/ui", "/-/events"]) {
            assert!(text.contains(endpoint), "{endpoint}: {text}");
        }
        assert_eq!(text.lines().count(), 1, "{text}");
    }

    /// An `Expect` list that holds `100-continue` (refused with a body) is told that only
    /// `100-continue` alone is served: "the only expectation served is 100-continue" read as
    /// if `foo, 100-continue` had been (a newcomer's campaign).
    #[test]
    fn an_unmet_expectation_says_100_continue_alone_is_served() {
        let err = ApiError::UnmetExpectation("foo, 100-continue".into());
        assert_eq!(err.status(), StatusCode::EXPECTATION_FAILED);
        let text = err.to_string();
        assert!(
            text.starts_with(r#"expectation "foo, 100-continue" cannot be met: "#),
            "{text}"
        );
        assert!(text.contains("100-continue alone"), "{text}");
        assert!(text.contains("or no Expect header"), "{text}");
    }

    /// The refusals of a membership change say what to do, not only what is wrong: where to
    /// see the members, how to replace one, which id or URL to pick (a newcomer's campaign).
    /// Each keeps its status, and its first words, which clients and tests match.
    #[test]
    fn membership_refusals_say_what_to_do() {
        let cases = [
            (
                ProposalError::NotMember(99),
                StatusCode::NOT_FOUND,
                "node 99 is not a member: ",
                &["GET /-/members"][..],
            ),
            (
                ProposalError::AlreadyMember(2),
                StatusCode::CONFLICT,
                "node 2 is already a member: ",
                &["DELETE /2", "GET /-/members"][..],
            ),
            (
                ProposalError::UrlInUse {
                    url: "http://127.0.0.1:22379".into(),
                    id: 2,
                },
                StatusCode::CONFLICT,
                "peer URL http://127.0.0.1:22379 is already used by node 2: ",
                &["DELETE /2", "a peer URL of its own"][..],
            ),
            (
                ProposalError::LastVoter(1),
                StatusCode::CONFLICT,
                "removing node 1 would leave the cluster with no voter: ",
                &["add another member first"][..],
            ),
        ];
        for (refusal, status, start, advice) in cases {
            let err = ApiError::from(refusal);
            assert_eq!(err.status(), status, "{err}");
            let text = err.to_string();
            assert!(text.starts_with(start), "{text}");
            for words in advice {
                assert!(text.contains(words), "{words}: {text}");
            }
            assert_eq!(text.lines().count(), 1, "{text}");
        }
    }

    #[test]
    fn ids_must_be_positive() {
        assert_eq!(node_id("/4", None).expect("valid"), 4);
        assert_eq!(node_id("/0x10", None).expect("valid"), 16);
        assert!(node_id("/0", None).is_err());
        assert!(node_id("/abc", None).is_err());
        assert!(node_id("/", None).is_err());
    }

    /// The id is the whole target after its first `/`, as in the original.
    #[test]
    fn an_id_is_the_whole_target_after_its_first_slash() {
        assert!(node_id("//4", None).is_err());
        let with_query = node_id("/4", Some("dry-run=1")).expect_err("a query is no id");
        assert!(
            with_query.to_string().contains("4?dry-run=1"),
            "{with_query}"
        );
        assert!(node_id("/4", Some("")).is_err());
    }
}
