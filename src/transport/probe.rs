//! The strict reconfiguration check's probe of a member's peer port ([`PROBE_PATH`]): whether
//! a process that the cluster would count on answers at the member's URL. The probe names the
//! prober's cluster and incarnation and the member it is meant for, and a node of another
//! cluster, of another run of this one (a data dir kept from a run started with the same
//! flags), or another member at that URL refuses it as the members refuse its messages
//! (`412`): such a node answers at the URL, but its vote does not count for that member, and a
//! change judged with it could leave the members without a quorum (reviews 101, 102).
//!
//! The same probe tells which build a member runs, for the check before a value that is not
//! UTF-8 is written (`builds`, which asks with `Prober::ask`).

use std::convert::Infallible;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use http_body_util::{BodyExt, Empty};
use hyper::{HeaderMap, Method, Request, StatusCode};

use super::http::PeerRefusal;
use super::{HEADER_REST_LISTEN, HttpClient, PROBE_PATH, PeerFilter};

/// How long a member may take to answer the probe and still count as answering.
const PROBE_TIMEOUT: Duration = Duration::from_millis(300);

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

    /// The status and headers of member `id`'s answer to the probe, if it answers as that
    /// member within `timeout`.
    pub(super) async fn ask(
        &self,
        id: u64,
        url: &str,
        timeout: Duration,
    ) -> Option<(StatusCode, HeaderMap)> {
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
        // A node still starting (replaying its log) does not answer as the member yet, as it
        // did not before its port was served while it started (`super::starting`).
        if !answers_as_member(response.status())
            || super::starting::said(response.headers()).is_some()
        {
            return None;
        }
        let parts = response.into_parts().0;
        Some((parts.status, parts.headers))
    }
}

/// Whether a probed node's answer with `status` counts as the member's: any answer but "meant
/// for another node" will do, since the process is there to give it (a node of an older build
/// answers without looking at the headers).
pub(super) fn answers_as_member(status: StatusCode) -> bool {
    PeerRefusal::from_status(status) != Some(PeerRefusal::WrongNode)
}
