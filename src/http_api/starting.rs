//! What the REST port answers while the node starts: from the moment the port is bound until
//! the node serves. It replays its log then, and first, if it is a member of the first
//! cluster on an empty data dir, asks the others whether its id has run, which may wait
//! without end for a member that holds data and is still replaying its own log
//! (`transport::join`). Then the REST API ([`super::router`]) takes over on the same port,
//! as the peer server does on the peer port (`serving::Handoff`).
//!
//! Before, the port was bound but served by nobody all that time: the kernel took a client's
//! connection and nobody answered it, so curl (which has no timeout of its own), a load
//! balancer's health check or a Kubernetes probe hung for the whole replay, minutes for a
//! large log; and a liveness probe that timed out had the process killed and started again,
//! so a large node could never finish starting (review 119, N2). Now:
//!
//! - `/-/health` is `200`, as once started, its text saying that the node is starting: the
//!   process is alive, and a liveness probe must not kill a node that replays its log.
//! - `/-/ready` is `503`, saying why, as while the node catches up once started.
//! - Every other request is `503` saying what the node is doing, with `Retry-After: 1`
//!   ([`ApiError::Starting`]): keys, members, `/-/status`, `/-/metrics` and the live page
//!   need the started node.
//!
//! As once started, `/-/health` and `/-/ready` take GET and HEAD only (`405`), what Go's HTTP
//! server answers before any handler comes first ([`super::server_checks`]: a missing `Host`
//! is still `400`), and a body sent is read to its end before the answer (see
//! `go_server::discard`), so that the client reads the answer rather than a reset. These
//! requests are not counted in `/-/metrics`: its counters start with the node.

use std::time::Duration;

use axum::Router;
use axum::body::HttpBody as _;
use axum::extract::Request;
use axum::http::{Method, StatusCode};
use axum::response::{IntoResponse, Response};

use super::go_server::{discard, waits_to_send};
use super::{ApiError, ENDPOINT_METHODS};
use crate::transport::starting::Phase;

/// The REST port's router while node `id` starts, saying what `phase` says it is doing;
/// `client_timeout` bounds the reading of a body, as for the REST API.
pub fn router(id: u64, phase: Phase, client_timeout: Duration) -> Router {
    let answer = move |request: Request| {
        let phase = phase.clone();
        async move { answer(id, &phase, request, client_timeout).await }
    };
    super::server_checks(Router::new().fallback(answer), client_timeout)
}

/// A starting node's answer to `request`.
async fn answer(id: u64, phase: &Phase, request: Request, client_timeout: Duration) -> Response {
    let (parts, body) = request.into_parts();
    let doing = phase.now().to_string();
    let starting = format!("node {id} is starting ({doing})");
    let endpoint = matches!(parts.uri.path(), "/-/health" | "/-/ready");
    let result = if endpoint && parts.method != Method::GET && parts.method != Method::HEAD {
        Err(ApiError::MethodNotAllowed(parts.method, ENDPOINT_METHODS))
    } else if parts.uri.path() == "/-/health" {
        Ok((StatusCode::OK, format!("ok: {starting}\n")).into_response())
    } else if endpoint {
        Err(ApiError::NotReady(starting))
    } else {
        Err(ApiError::Starting { id, doing })
    };
    if !body.is_end_stream() && !waits_to_send(&parts.headers) {
        discard(body, tokio::time::Instant::now(), 0, client_timeout).await;
    }
    result.unwrap_or_else(IntoResponse::into_response)
}

#[cfg(test)]
mod tests {
    use super::*;
    use axum::body::Body;
    use axum::http::header;
    use tower::ServiceExt;

    /// `request` to a router of node 2 in `phase`: its status, `Retry-After` and text.
    async fn ask(phase: &Phase, request: Request) -> (StatusCode, Option<String>, String) {
        let response = router(2, phase.clone(), Duration::from_secs(5))
            .oneshot(request)
            .await
            .expect("infallible");
        let retry = response
            .headers()
            .get(header::RETRY_AFTER)
            .map(|v| v.to_str().expect("ASCII").to_string());
        let status = response.status();
        let body = axum::body::to_bytes(response.into_body(), 4096)
            .await
            .expect("a short body");
        (status, retry, String::from_utf8_lossy(&body).into_owned())
    }

    fn request(method: Method, path: &str, body: &'static str) -> Request {
        Request::builder()
            .method(method)
            .uri(path)
            .header(header::HOST, "127.0.0.1:9121")
            .body(Body::from(body))
            .expect("a valid request")
    }

    /// `/-/health` is 200 saying the node starts (a liveness probe must not kill it),
    /// `/-/ready` 503 saying why, and every other request 503 saying what the node is doing,
    /// with `Retry-After: 1`.
    #[tokio::test]
    async fn a_starting_node_is_healthy_not_ready_and_asks_to_be_asked_again() {
        let phase = Phase::new(false);
        for method in [Method::GET, Method::HEAD] {
            let (status, retry, text) = ask(&phase, request(method.clone(), "/-/health", "")).await;
            assert_eq!(status, StatusCode::OK, "{method}");
            assert_eq!(retry, None, "{method}");
            if method == Method::GET {
                assert_eq!(text, "ok: node 2 is starting (replaying its log)\n");
            }
        }
        let (status, retry, text) = ask(&phase, request(Method::GET, "/-/ready", "")).await;
        assert_eq!(status, StatusCode::SERVICE_UNAVAILABLE);
        assert_eq!(retry, None, "as the other not-ready answers");
        assert_eq!(text, "not ready: node 2 is starting (replaying its log)\n");
        let starting = "node 2 is starting (replaying its log) and serves no requests yet: this \
                        one was not taken and will not happen; ask again\n";
        for (method, path, body) in [
            (Method::GET, "/my-key", ""),
            (Method::PUT, "/my-key", "hello"),
            (Method::POST, "/4", "http://127.0.0.1:42379"),
            (Method::DELETE, "/4", ""),
            (Method::GET, "/-/status", ""),
            (Method::GET, "/-/members", ""),
            (Method::GET, "/-/metrics", ""),
            (Method::GET, "/-/ui", ""),
            (Method::OPTIONS, "/my-key", ""),
        ] {
            let (status, retry, text) = ask(&phase, request(method.clone(), path, body)).await;
            assert_eq!(status, StatusCode::SERVICE_UNAVAILABLE, "{method} {path}");
            assert_eq!(retry.as_deref(), Some("1"), "{method} {path}");
            assert_eq!(text, starting, "{method} {path}");
        }
    }

    /// The two endpoints take GET and HEAD only, as once started; what Go's server answers
    /// before any handler is answered as once started (`400` for a request without `Host`).
    #[tokio::test]
    async fn the_endpoints_methods_and_go_s_server_checks_are_as_once_started() {
        let phase = Phase::new(false);
        for path in ["/-/health", "/-/ready"] {
            let (status, _, text) = ask(&phase, request(Method::POST, path, "x")).await;
            assert_eq!(status, StatusCode::METHOD_NOT_ALLOWED, "{path}");
            assert!(
                text.starts_with("method POST not allowed"),
                "{path}: {text}"
            );
        }
        let no_host = Request::builder()
            .uri("/-/health")
            .body(Body::empty())
            .expect("a valid request");
        let (status, _, text) = ask(&phase, no_host).await;
        assert_eq!(status, StatusCode::BAD_REQUEST);
        assert!(text.starts_with("missing required Host header"), "{text}");
    }

    /// The answers say what the node does as it changes: which members that hold data and
    /// are starting it waits for, then that it replays its log.
    #[tokio::test]
    async fn the_answers_say_what_the_node_is_doing() {
        let phase = Phase::new(true);
        let ready = || request(Method::GET, "/-/ready", "");
        let asking = "not ready: node 2 is starting (asking the other members whether this \
                      node has run before)\n";
        assert_eq!(ask(&phase, ready()).await.2, asking);
        let one = phase.waiting_for(1);
        let three = phase.waiting_for(3);
        let (_, _, text) = ask(&phase, request(Method::GET, "/k", "")).await;
        assert_eq!(
            text,
            "node 2 is starting (waiting for nodes 1 and 3, which hold data and are themselves \
             starting, to say whether this node has run before) and serves no requests yet: \
             this one was not taken and will not happen; ask again\n"
        );
        drop(one);
        let (_, _, text) = ask(&phase, request(Method::GET, "/-/health", "")).await;
        assert_eq!(
            text,
            "ok: node 2 is starting (waiting for node 3, which holds data and is itself \
             starting, to say whether this node has run before)\n"
        );
        drop(three);
        assert_eq!(ask(&phase, ready()).await.2, asking);
        phase.replaying();
        let (_, _, text) = ask(&phase, ready()).await;
        assert_eq!(text, "not ready: node 2 is starting (replaying its log)\n");
    }
}
