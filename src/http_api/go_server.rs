//! What Go's HTTP server, and so the original, answers before the original's handler runs,
//! reproduced for the REST port so that a client switching over gets the answers it got
//! there: [`server_checks`] refuses a request Go's server refuses (an unsupported transfer
//! coding, a missing or malformed `Host`, an unmet `Expect`) and answers `OPTIONS *` itself;
//! [`go_takes_as_uri`] says which request targets that are not paths Go takes as a URI, and so
//! the original as a key; [`discard`] reads a refused request's body to its end, as Go's server
//! does, so that the client gets its answer. None of this is in `httpapi.go`: keeping it here
//! lets `http_api.rs` read beside it.

use axum::Router;
use axum::body::{Body, HttpBody as _};
use axum::extract::Request;
use axum::http::{HeaderValue, Method, StatusCode, header};
use axum::response::{IntoResponse, Response};

use super::ApiError;

/// `router` behind the checks Go's HTTP server (and so the original) makes before any
/// handler runs, for the REST port: a client switching over gets the answers it got there.
/// A transfer coding other than `chunked` alone is `501`; an HTTP/1.1 request without a
/// `Host` header (HTTP/1.0 need not send one), or one with two, or with one that names no
/// host, is `400`; an `Expect` other than `100-continue` is `417`, checked in that order as
/// Go does; then `OPTIONS *` is `200` with an empty body. A body is discarded first, as for
/// the handlers' refusals, within `client_timeout` (see `discard`). The peer port has none
/// of these: only nodes talk to it.
pub fn server_checks(router: Router, client_timeout: std::time::Duration) -> Router {
    router.layer(ServerChecks { client_timeout })
}

/// The layer of [`server_checks`]. A service of its own rather than axum's `from_fn`, which
/// boxes every request's future and clones the service it wraps: the same checks through
/// `from_fn` added 0.41 µs to the 0.98 µs a GET took through a bare router, this 0.18 µs
/// (the best of ten runs of a million calls each, the router called without a socket, in a
/// release build).
#[derive(Clone, Copy)]
struct ServerChecks {
    /// Bounds the discarding of a body (see `discard`).
    client_timeout: std::time::Duration,
}

impl<S> tower::Layer<S> for ServerChecks {
    type Service = Checked<S>;

    fn layer(&self, inner: S) -> Checked<S> {
        Checked {
            inner,
            client_timeout: self.client_timeout,
        }
    }
}

/// A route behind [`server_checks`].
#[derive(Clone)]
struct Checked<S> {
    /// The route, which serves every request the checks let through.
    inner: S,
    /// Bounds the discarding of a body (see `discard`).
    client_timeout: std::time::Duration,
}

impl<S> tower::Service<Request> for Checked<S>
where
    S: tower::Service<Request, Response = Response, Error = std::convert::Infallible>,
{
    type Response = Response;
    type Error = std::convert::Infallible;
    type Future = futures_util::future::Either<
        S::Future,
        futures_util::future::BoxFuture<'static, Result<Response, Self::Error>>,
    >;

    fn poll_ready(
        &mut self,
        cx: &mut std::task::Context<'_>,
    ) -> std::task::Poll<Result<(), Self::Error>> {
        self.inner.poll_ready(cx)
    }

    fn call(&mut self, request: Request) -> Self::Future {
        use futures_util::future::Either;
        match server_answer(&request) {
            None => Either::Left(self.inner.call(request)),
            Some(answer) => Either::Right(Box::pin(answer_itself(
                request,
                answer,
                self.client_timeout,
            ))),
        }
    }
}

/// What Go's server answers `request` itself, if anything: checked in Go's order.
fn server_answer(request: &Request) -> Option<Result<Response, ApiError>> {
    if let Some(codings) = unsupported_transfer_coding(request.headers()) {
        Some(Err(ApiError::UnsupportedTransferCoding(codings)))
    } else if lacks_host(request) {
        Some(Err(ApiError::MissingHost))
    } else if let Some(fault) = bad_host(request.headers()) {
        Some(Err(fault))
    } else if let Some(expectation) =
        unmet_expectation(request.headers(), !request.body().is_end_stream())
    {
        Some(Err(ApiError::UnmetExpectation(expectation)))
    } else if request.method() == Method::OPTIONS && request.uri() == "*" {
        // A question about the server rather than a resource, which Go's server answers
        // itself: an empty 200, and no `Allow` (a plain `OPTIONS /<key>` still gets the
        // original's 405 with its `Allow` headers).
        Some(Ok(StatusCode::OK.into_response()))
    } else {
        None
    }
}

/// Sends `answer` to `request`, whose body is read to its end first.
async fn answer_itself(
    request: Request,
    answer: Result<Response, ApiError>,
    client_timeout: std::time::Duration,
) -> Result<Response, std::convert::Infallible> {
    // Read to its end, as for the handlers' refusals (see `discard`): a client sends its
    // body at once unless it waits for a `100 Continue`. One that lists `100-continue`
    // among others may wait for one that hyper never sends, so it is answered at once (the
    // refusal closes the connection); one that waits on an expectation it does not name is
    // answered once the slow-body rule gives up on it. `OPTIONS *` reads it even then, as
    // Go does.
    let waits = answer.is_err()
        && request
            .headers()
            .get_all(header::EXPECT)
            .iter()
            .any(|v| lists_100_continue(v.as_bytes()));
    let body = request.into_body();
    if !body.is_end_stream() && !waits {
        discard(body, tokio::time::Instant::now(), 0, client_timeout).await;
    }
    Ok(answer.unwrap_or_else(IntoResponse::into_response))
}

/// Whether `request` is HTTP/1.1 without a `Host` header, which HTTP/1.1 requires. Go
/// refuses it (an empty `Host` is one) unless it is a `CONNECT`; so does this node.
fn lacks_host(request: &Request) -> bool {
    request.version() >= axum::http::Version::HTTP_11
        && request.method() != Method::CONNECT
        && !request.headers().contains_key(header::HOST)
}

/// The `Transfer-Encoding` values, as sent, unless there are none or a single `chunked` (in
/// any case), the only coding Go's server decodes; it answers `501` to any other. Hyper,
/// which refuses a list that does not end in `chunked`, decodes the chunks of one that does
/// (`gzip, chunked`) and passes the body on still coded: it would be stored so. An HTTP/1.0
/// request with a `Transfer-Encoding` never gets here: hyper refuses it (`400`).
fn unsupported_transfer_coding(headers: &axum::http::HeaderMap) -> Option<String> {
    let mut values = headers.get_all(header::TRANSFER_ENCODING).iter();
    match (values.next(), values.next()) {
        (None, _) => None,
        (Some(only), None) if only.as_bytes().eq_ignore_ascii_case(b"chunked") => None,
        _ => {
            let sent = headers.get_all(header::TRANSFER_ENCODING).iter();
            let sent: Vec<_> = sent
                .map(|v| String::from_utf8_lossy(v.as_bytes()))
                .collect();
            Some(sent.join(", "))
        }
    }
}

/// What is wrong with the request's `Host` headers, if anything: RFC 9112 (§3.2) wants a
/// server to refuse a request with more than one, or with one that is not a host, and Go's
/// server does, whatever the HTTP version. As lenient as Go's `httpguts.ValidHostHeader`: a
/// value is refused only for a byte that no host, address or port has (a space, a `/`, a
/// `@`, a control byte); an empty one is let through.
fn bad_host(headers: &axum::http::HeaderMap) -> Option<ApiError> {
    let mut hosts = headers.get_all(header::HOST).iter();
    let first = hosts.next()?;
    if hosts.next().is_some() {
        return Some(ApiError::ManyHosts(
            headers.get_all(header::HOST).iter().count(),
        ));
    }
    let host_byte = |b: &u8| b.is_ascii_alphanumeric() || b"!$%&'()*+,-.:;=[]_~".contains(b);
    if first.as_bytes().iter().all(host_byte) {
        return None;
    }
    Some(ApiError::BadHost(
        String::from_utf8_lossy(first.as_bytes()).into_owned(),
    ))
}

/// The expectation this node cannot meet, if any (the `Expect` values, as sent). Go heeds
/// the first `Expect` header only: it answers `417` unless that one is empty or lists
/// `100-continue` (in any case, alone or among others: `foo, 100-continue`), whatever
/// follows it. So does this node, but for one case: a request with a body (`has_body`) whose
/// first value lists `100-continue`, which Go answers with a `100 Continue`, is refused
/// unless hyper would send one too, which it does only when the *last* `Expect` is
/// `100-continue` alone; the client may be waiting for it. Without a body there is nothing
/// to wait for (Go sends no `100 Continue` then either), so it is served, as by Go.
fn unmet_expectation(headers: &axum::http::HeaderMap, has_body: bool) -> Option<String> {
    let mut values = headers.get_all(header::EXPECT).iter();
    let first = values.next()?;
    if first.is_empty() {
        return None;
    }
    let as_sent = |v: &HeaderValue| String::from_utf8_lossy(v.as_bytes()).into_owned();
    if !lists_100_continue(first.as_bytes()) {
        return Some(as_sent(first));
    }
    let last = values.next_back().unwrap_or(first);
    if has_body && !last.as_bytes().eq_ignore_ascii_case(b"100-continue") {
        let all: Vec<String> = headers
            .get_all(header::EXPECT)
            .iter()
            .map(as_sent)
            .collect();
        return Some(all.join(", "));
    }
    None
}

/// Whether `100-continue` is one of the tokens of `value`, split where Go's `hasToken`
/// splits (a comma, space or tab).
fn lists_100_continue(value: &[u8]) -> bool {
    value
        .split(|b| matches!(b, b',' | b' ' | b'\t'))
        .any(|token| token.eq_ignore_ascii_case(b"100-continue"))
}

/// Whether Go's server takes `target`, a request target that is neither a path nor `*`, as a
/// URI (and so the original as a key): a scheme, that is a letter then letters, digits, `+`,
/// `-` or `.`, before a `:` (`localhost:9121`, `h:1`; Go's `url.ParseRequestURI`). Go refuses
/// any other such target (`127.0.0.1:9121`, `[::1]:80`, `k`) with `400`.
pub(super) fn go_takes_as_uri(target: &str) -> bool {
    let Some((scheme, _)) = target.split_once(':') else {
        return false;
    };
    let mut chars = scheme.bytes();
    chars.next().is_some_and(|c| c.is_ascii_alphabetic())
        && chars.all(|c| c.is_ascii_alphanumeric() || matches!(c, b'+' | b'-' | b'.'))
}

/// Whether the client waits for an answer before it sends its body (`Expect: 100-continue`):
/// hyper sends the `100 Continue` only once the body is first read, so a body never read never
/// comes, and need not be discarded.
pub(super) fn waits_to_send(headers: &axum::http::HeaderMap) -> bool {
    headers
        .get(header::EXPECT)
        .is_some_and(|v| v.as_bytes().eq_ignore_ascii_case(b"100-continue"))
}

/// Reads the rest of a body that will not be used, keeping none of it (`received` bytes of it
/// arrived since `started`), so that hyper can send the answer and keep the connection. Hyper
/// closes a connection whose body is left unread, the kernel resets one closed with data
/// unread, and a client that sends its whole body before it reads (Python's http.client, for
/// one) then gets an error instead of the answer (nginx's lingering close and Go's server
/// discard such a body too). Bounded: it gives up (the connection is then closed) past
/// [`crate::config::MAX_BODY_LIMIT`] bytes in all, at once when the Content-Length says so, and
/// under the slow-body rule of [`super::read_body`].
pub(super) async fn discard(
    mut body: Body,
    started: tokio::time::Instant,
    mut received: u64,
    patience: std::time::Duration,
) {
    use http_body_util::BodyExt;
    const MAX: u64 = crate::config::MAX_BODY_LIMIT as u64;
    if received.saturating_add(body.size_hint().lower()) > MAX {
        return;
    }
    while received <= MAX {
        let due = started + crate::config::body_patience(patience, received);
        match tokio::time::timeout_at(due, body.frame()).await {
            Ok(Some(Ok(frame))) => {
                if let Ok(data) = frame.into_data() {
                    received += data.len() as u64;
                }
            }
            // Its end, or the connection's.
            Ok(None | Some(Err(_))) => return,
            Err(_) => {
                tracing::debug!(received, "stopped discarding a slow request body");
                return;
            }
        }
    }
    tracing::debug!(received, "stopped discarding a request body past 1 GiB");
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Headers with `values` of `name`, in order.
    fn header_map(name: header::HeaderName, values: &[&str]) -> axum::http::HeaderMap {
        let mut headers = axum::http::HeaderMap::new();
        for v in values {
            let value = HeaderValue::from_bytes(v.as_bytes()).expect("a header value");
            headers.append(name.clone(), value);
        }
        headers
    }

    /// Go's server answers `417` to any `Expect` but `100-continue`, in any case, and serves
    /// an empty one; it heeds the first `Expect` only, and so does this node, but with a body
    /// it serves a first value listing `100-continue` only when hyper sends the `100 Continue`
    /// (the last value is `100-continue` alone; see `unmet_expectation`).
    #[test]
    fn only_100_continue_is_an_expectation_met() {
        let headers = |values: &[&str]| header_map(header::EXPECT, values);
        for has_body in [false, true] {
            for met in [
                &[][..],
                &["100-continue"],
                &["100-Continue"],
                &[""],
                // Go heeds the first: what follows does not count.
                &["", "foo"],
                &["100-continue", "100-continue"],
                &["foo, 100-continue", "100-continue"],
            ] {
                assert_eq!(
                    unmet_expectation(&headers(met), has_body),
                    None,
                    "{met:?}, body: {has_body}"
                );
            }
            for (sent, unmet) in [
                (&["foo"][..], "foo"),
                (&["foo", "100-continue"], "foo"),
                (&["100-continuer, foo"], "100-continuer, foo"),
            ] {
                assert_eq!(
                    unmet_expectation(&headers(sent), has_body).as_deref(),
                    Some(unmet),
                    "{sent:?}, body: {has_body}"
                );
            }
        }
        // Without a body, served as by Go; with one, hyper would not send the `100 Continue`.
        for (sent, values) in [
            (&["100-continue, foo"][..], "100-continue, foo"),
            (&["foo,100-CONTINUE"], "foo,100-CONTINUE"),
            (&["foo 100-continue"], "foo 100-continue"),
            (&["100-continue", "foo"], "100-continue, foo"),
            (&["100-continue", ""], "100-continue, "),
        ] {
            assert_eq!(unmet_expectation(&headers(sent), false), None, "{sent:?}");
            assert_eq!(
                unmet_expectation(&headers(sent), true).as_deref(),
                Some(values),
                "{sent:?} with a body"
            );
        }
        assert_eq!(
            ApiError::UnmetExpectation("foo".into()).status(),
            StatusCode::EXPECTATION_FAILED
        );
    }

    /// HTTP/1.1 requires a `Host` header, HTTP/1.0 does not; an empty one is one, and a
    /// `CONNECT` is let through, as by Go.
    #[test]
    fn only_http_1_1_must_name_its_host() {
        let request = |version, method, host: Option<&'static str>| {
            let mut request = axum::http::Request::builder()
                .version(version)
                .method(method)
                .uri("/k");
            if let Some(host) = host {
                request = request.header(header::HOST, host);
            }
            request.body(Body::empty()).expect("a well-formed request")
        };
        use axum::http::Version;
        assert!(lacks_host(&request(Version::HTTP_11, Method::GET, None)));
        assert!(lacks_host(&request(Version::HTTP_11, Method::PUT, None)));
        assert!(!lacks_host(&request(
            Version::HTTP_11,
            Method::GET,
            Some("x")
        )));
        assert!(!lacks_host(&request(
            Version::HTTP_11,
            Method::GET,
            Some("")
        )));
        assert!(!lacks_host(&request(Version::HTTP_10, Method::GET, None)));
        assert!(!lacks_host(&request(
            Version::HTTP_11,
            Method::CONNECT,
            None
        )));
        assert_eq!(ApiError::MissingHost.status(), StatusCode::BAD_REQUEST);
    }

    /// Two `Host` headers are refused, even alike, and so is one with a byte no host has, as
    /// by Go; a name, an address (IPv6 and its zone too), a port, an empty value are not.
    #[test]
    fn a_host_is_named_once_and_is_a_host() {
        let headers = |values: &[&str]| header_map(header::HOST, values);
        for fine in [
            &[][..],
            &["x"],
            &[""],
            &["localhost:9121"],
            &["127.0.0.1:9121"],
            &["[fe80::1%25eth0]:9121"],
            &["a-b.example_1.com"],
        ] {
            assert!(bad_host(&headers(fine)).is_none(), "{fine:?}");
        }
        for (sent, count) in [(&["x", "y"][..], 2), (&["x", "x", "x"], 3)] {
            let fault = bad_host(&headers(sent));
            assert!(
                matches!(fault, Some(ApiError::ManyHosts(n)) if n == count),
                "{fault:?}"
            );
        }
        for sent in ["a b", "user@host", "host/path", "hé", "h\tx"] {
            let fault = bad_host(&headers(&[sent]));
            assert!(
                matches!(&fault, Some(ApiError::BadHost(v)) if v == sent),
                "{fault:?}"
            );
        }
        assert_eq!(ApiError::ManyHosts(2).status(), StatusCode::BAD_REQUEST);
        assert_eq!(
            ApiError::BadHost("a b".into()).status(),
            StatusCode::BAD_REQUEST
        );
    }

    /// Only `chunked`, alone, in any case, is a transfer coding served, as by Go's server;
    /// any other, a list ending in `chunked` included, or two headers, is `501`.
    #[test]
    fn chunked_alone_is_the_only_transfer_coding() {
        let headers = |values: &[&str]| header_map(header::TRANSFER_ENCODING, values);
        for fine in [&[][..], &["chunked"], &["Chunked"], &["CHUNKED"]] {
            assert_eq!(
                unsupported_transfer_coding(&headers(fine)),
                None,
                "{fine:?}"
            );
        }
        for (sent, as_sent) in [
            (&["gzip, chunked"][..], "gzip, chunked"),
            (&["gzip", "chunked"], "gzip, chunked"),
            (&["chunked", "chunked"], "chunked, chunked"),
            (&["chunked, chunked"], "chunked, chunked"),
            (&["identity"], "identity"),
        ] {
            assert_eq!(
                unsupported_transfer_coding(&headers(sent)).as_deref(),
                Some(as_sent),
                "{sent:?}"
            );
        }
        assert_eq!(
            ApiError::UnsupportedTransferCoding("gzip, chunked".into()).status(),
            StatusCode::NOT_IMPLEMENTED
        );
    }

    /// The targets Go's server takes as a URI (a scheme before the `:`), and so the original
    /// as a key, and those it refuses with `400`, as sent to it.
    #[test]
    fn targets_that_go_takes_as_a_uri() {
        for taken in [
            "h:1",
            "localhost:9121",
            "H:1",
            "h:",
            "u:p@h:1",
            "a+b.c-d:1",
            "xn--e:1",
        ] {
            assert!(go_takes_as_uri(taken), "{taken}");
        }
        for refused in [
            "127.0.0.1:9121",
            "[::1]:80",
            "k",
            ":1",
            "h@x:1",
            "h_x:1",
            "1h:1",
            "+h:1",
        ] {
            assert!(!go_takes_as_uri(refused), "{refused}");
        }
    }
}
