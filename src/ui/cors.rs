//! Cross-origin requests from the live page. The page is served by one node and talks to
//! every member (their event streams, and the REST calls of its actions), so each node
//! answers pages served by the cluster's nodes: an `Origin` that is a member's REST URL (see
//! [`super::directory::Directory::judge`]). A request from any other origin is refused with
//! 403 before it does anything: without this, a page from anywhere could send a simple
//! cross-origin `POST /<id>` that adds a member, and a page served by any other program on a
//! member's host (a development server on another port of the same laptop) still could.
//! Requests without an `Origin` (curl, the peers) pass untouched, and so do same-origin
//! requests to a name of the cluster's (not one whose DNS was pointed at this machine).
//!
//! Written here rather than taken from tower-http's `CorsLayer`, which answers every
//! `OPTIONS` as a preflight: the REST API answers a plain `OPTIONS /<key>` with the
//! original's 405 and its `Allow` headers, and keeps doing so.

use axum::extract::{Request, State};
use axum::http::{HeaderMap, HeaderValue, Method, StatusCode, header};
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};

use super::Ui;
use super::directory::OriginIs;
use crate::http_api::ApiError;
use crate::membership::{host_ip, url_host};

/// How long a browser may cache a preflight's answer.
const PREFLIGHT_MAX_AGE_SECS: &str = "600";
/// Methods the page uses (the REST API's).
const ALLOW_METHODS: &str = "GET, PUT, POST, DELETE";

/// The middleware: refuses foreign origins, answers preflights, and marks the answers to
/// allowed cross-origin requests.
pub async fn layer(State(ui): State<std::sync::Arc<Ui>>, req: Request, next: Next) -> Response {
    let Some(origin) = req
        .headers()
        .get(header::ORIGIN)
        .and_then(|v| v.to_str().ok())
        .map(str::to_owned)
    else {
        return next.run(req).await;
    };
    // Same-origin only under an address, `localhost`, or a name of this cluster's: a page
    // served from anywhere whose name its DNS then points at this machine (DNS rebinding)
    // sends that name as both `Host` and `Origin`, and got every write through (found by a
    // review). An address or `localhost` is no DNS name (browsers resolve `localhost`
    // themselves), so a page opened so (at the machine's LAN address, through an SSH tunnel)
    // keeps working on a cluster whose URLs name its hosts otherwise (found by the next).
    if same_origin(&origin, req.headers()) {
        if resolves_without_dns(&origin) || ui.directory.judge(&origin) != OriginIs::Foreign {
            return next.run(req).await;
        }
        return ApiError::ForeignName {
            origin,
            open: ui.directory.own_rest_url().to_string(),
        }
        .into_response();
    }
    if !allowed(&ui, &origin).await {
        return ApiError::ForeignOrigin(origin).into_response();
    }
    let preflight = req.method() == Method::OPTIONS
        && req
            .headers()
            .contains_key(header::ACCESS_CONTROL_REQUEST_METHOD);
    let mut response = if preflight {
        let mut response = StatusCode::NO_CONTENT.into_response();
        let headers = response.headers_mut();
        headers.insert(
            header::ACCESS_CONTROL_ALLOW_METHODS,
            HeaderValue::from_static(ALLOW_METHODS),
        );
        headers.insert(
            header::ACCESS_CONTROL_ALLOW_HEADERS,
            HeaderValue::from_static("content-type"),
        );
        headers.insert(
            header::ACCESS_CONTROL_MAX_AGE,
            HeaderValue::from_static(PREFLIGHT_MAX_AGE_SECS),
        );
        // Chrome asks before a page reaches a more private address than its own (a page on
        // a LAN address calling a loopback member).
        if req
            .headers()
            .get("access-control-request-private-network")
            .is_some_and(|v| v == "true")
        {
            headers.insert(
                "access-control-allow-private-network",
                HeaderValue::from_static("true"),
            );
        }
        response
    } else {
        next.run(req).await
    };
    if let Ok(value) = HeaderValue::from_str(&origin) {
        let headers = response.headers_mut();
        headers.insert(header::ACCESS_CONTROL_ALLOW_ORIGIN, value);
        headers.append(header::VARY, HeaderValue::from_static("origin"));
    }
    response
}

/// Whether a page from `origin` is one of the cluster's: judged by the REST URLs known, and
/// once more after asking the members when it comes from a member's host.
async fn allowed(ui: &Ui, origin: &str) -> bool {
    match ui.directory.judge(origin) {
        OriginIs::Member => true,
        OriginIs::Foreign => false,
        OriginIs::Unknown => {
            // A node too busy to say who its members are refuses this once; the page retries.
            let Ok(status) = ui.node.status().await else {
                return false;
            };
            ui.directory.ask_again(&status.members).await;
            ui.directory.judge(origin) == OriginIs::Member
        }
    }
}

/// Whether `origin`'s host is an address or `localhost`: a name no DNS answers for.
fn resolves_without_dns(origin: &str) -> bool {
    url_host(origin).is_some_and(|host| host == "localhost" || host_ip(&host).is_some())
}

/// Whether `origin` is the origin the request was sent to (browsers send `Origin` on
/// same-origin writes too).
fn same_origin(origin: &str, headers: &HeaderMap) -> bool {
    let authority = origin
        .strip_prefix("http://")
        .or_else(|| origin.strip_prefix("https://"));
    let host = headers.get(header::HOST).and_then(|v| v.to_str().ok());
    matches!((authority, host), (Some(a), Some(h)) if a.eq_ignore_ascii_case(h))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn same_origin_compares_the_authority() {
        let mut headers = HeaderMap::new();
        headers.insert(header::HOST, HeaderValue::from_static("127.0.0.1:12380"));
        assert!(same_origin("http://127.0.0.1:12380", &headers));
        assert!(!same_origin("http://127.0.0.1:22380", &headers));
        assert!(!same_origin("null", &headers));
    }

    #[test]
    fn addresses_and_localhost_need_no_dns() {
        for origin in [
            "http://127.0.0.1:12380",
            "http://192.168.1.5:12380",
            "https://[::1]:12380",
            "http://localhost:12380",
        ] {
            assert!(resolves_without_dns(origin), "{origin}");
        }
        for origin in ["http://rebind.example:12380", "http://node1:12380", "null"] {
            assert!(!resolves_without_dns(origin), "{origin}");
        }
    }
}
