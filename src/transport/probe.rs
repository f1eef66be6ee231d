//! The strict reconfiguration check's probe of a member's peer port ([`PROBE_PATH`]): whether
//! a process that the cluster would count on answers at the member's URL. The probe names the
//! prober's cluster and incarnation and the member it is meant for, and a node of another
//! cluster, of another run of this one (a data dir kept from a run started with the same
//! flags), or another member at that URL refuses it as the members refuse its messages
//! (`412`): such a node answers at the URL, but its vote does not count for that member, and a
//! change judged with it could leave the members without a quorum (reviews 101, 102).
//!
//! The same probe tells which build a member runs, for the check before a value that is not
//! UTF-8 is written ([`super::builds`]).

use std::convert::Infallible;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use http_body_util::{BodyExt, Empty};
use hyper::{HeaderMap, Method, Request, StatusCode};

use super::builds::Build;
use super::{HEADER_REST_LISTEN, HttpClient, PROBE_PATH, PeerFilter};

/// How long a member may take to answer the probe and still count as answering.
const PROBE_TIMEOUT: Duration = Duration::from_millis(300);

/// How long the leader may take to say which builds the members run, before a value that is
/// not UTF-8 is refused (a request the client may send again): longer than a probe, as the
/// write waits on it, and a slow answer must not pass for "none".
const BUILDS_TIMEOUT: Duration = Duration::from_secs(1);

/// What the strict reconfiguration check asks members with: a client that keeps no
/// connection ([`super::probe_client`]) and this node's identity.
#[derive(Clone)]
pub struct Prober {
    client: HttpClient,
    filter: Arc<PeerFilter>,
}

impl Prober {
    /// Probes with `client`, naming the identity and incarnation `filter` knows at each probe.
    pub fn new(client: HttpClient, filter: Arc<PeerFilter>) -> Prober {
        Prober { client, filter }
    }

    /// Whether member `id` at peer URL `url` answers as that member, of this cluster and run
    /// (a node that is down, cut off or stopped with SIGSTOP gives no answer, although the
    /// kernel of a stopped one still takes connections). `None` if not; else where its REST
    /// API listens, if it says (see [`HEADER_REST_LISTEN`]).
    pub async fn answers(&self, id: u64, url: &str) -> Option<Option<SocketAddr>> {
        let (_, headers) = self.ask(id, url, PROBE_TIMEOUT).await?;
        Some(
            headers
                .get(HEADER_REST_LISTEN)
                .and_then(|v| v.to_str().ok()?.parse().ok()),
        )
    }

    /// The build the leader `id` at peer URL `url` runs, as its answer says ([`Build::of`]: a
    /// build without this probe answers 404, without the header, as an older build does),
    /// and the members it last heard as older ([`super::builds::older_of`], `None` if it
    /// does not say, or not readably); `None` if it
    /// does not answer as that member within [`BUILDS_TIMEOUT`], or answers something else.
    pub async fn builds_known_to(&self, id: u64, url: &str) -> Option<(Build, Option<Vec<u64>>)> {
        let (status, headers) = self.ask(id, url, BUILDS_TIMEOUT).await?;
        let build = match status {
            StatusCode::OK => Build::of(&headers),
            StatusCode::NOT_FOUND => Build::Older,
            _ => return None,
        };
        self.filter.builds().record(id, build);
        Some((build, super::builds::older_of(&headers)))
    }

    /// The status and headers of member `id`'s answer to the probe, if it answers as that
    /// member within `timeout`.
    async fn ask(&self, id: u64, url: &str, timeout: Duration) -> Option<(StatusCode, HeaderMap)> {
        let request = self
            .filter
            .name_sender(
                Request::builder()
                    .method(Method::GET)
                    .uri(format!("{}{PROBE_PATH}", url.trim_end_matches('/'))),
                id,
            )
            .body(
                Empty::<Bytes>::new()
                    .map_err(|e: Infallible| match e {})
                    .boxed(),
            )
            .ok()?;
        let response = tokio::time::timeout(timeout, self.client.request(request))
            .await
            .ok()?
            .ok()?;
        // Any other answer will do: the process is there to give it (a node of an older
        // build answers without looking at the headers).
        if response.status() == StatusCode::PRECONDITION_FAILED {
            return None;
        }
        let parts = response.into_parts().0;
        Some((parts.status, parts.headers))
    }
}
