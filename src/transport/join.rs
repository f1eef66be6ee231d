//! How a joining node learns which cluster it joins. A node started with `--join` on an
//! empty data dir has no cluster identity: the bootstrap members derive theirs from the
//! initial `--cluster` list, which the joining node did not start with. Rather than believe
//! the first message that names one (anyone could send that first message), it asks the
//! members in its `--cluster` list: `GET /raft/join` with its id and peer URL. A member
//! answers with the identity only if it has that id as a member at that URL, that is once a
//! `POST /<id>` was applied; with peer TLS the answer comes from a certificate the node
//! trusts. Until then the node refuses every raft message (503), and asks again.

use std::collections::BTreeSet;
use std::convert::Infallible;
use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use http_body_util::{BodyExt, Empty};
use hyper::{Method, Request, StatusCode};

use super::{HEADER_FROM, HEADER_TO, HEADER_URL, HttpClient, JOIN_PATH, PeerFilter};

/// Pause between rounds of questions.
const RETRY_PAUSE: Duration = Duration::from_millis(500);
/// How long one question may take.
const ASK_TIMEOUT: Duration = Duration::from_secs(3);
/// Longest answer read (a hex id, or a one-line refusal).
const MAX_ANSWER: usize = 4096;

/// The questions a joining node asks.
pub struct Lookup {
    /// The peers' HTTP client.
    pub client: HttpClient,
    /// Where the identity is stored once learned.
    pub filter: Arc<PeerFilter>,
    /// This node's peer URL, which the member must have on record for it.
    pub own_url: String,
    /// Whom to ask: (id, peer URL) of the other nodes in `--cluster`.
    pub members: Vec<(u64, String)>,
}

impl Lookup {
    /// Asks round after round until a member answers.
    pub async fn run(self) {
        let mut logged = BTreeSet::new();
        loop {
            for (id, url) in &self.members {
                match self.ask(*id, url).await {
                    Ok(cluster) => {
                        let now = self.filter.adopt_cluster_id(cluster);
                        tracing::info!(
                            member = id,
                            cluster = format!("{now:x}"),
                            "learned the cluster's identity from a member"
                        );
                        return;
                    }
                    Err(reason) => {
                        // Once per distinct answer: the node may wait long for its POST.
                        if logged.insert((*id, reason.clone())) {
                            tracing::warn!(member = id, %url, %reason, "not admitted yet; asking again");
                        }
                    }
                }
            }
            tokio::time::sleep(RETRY_PAUSE).await;
        }
    }

    /// One question to member `id` at `url`: the identity, or why not.
    async fn ask(&self, id: u64, url: &str) -> Result<u64, String> {
        let request = Request::builder()
            .method(Method::GET)
            .uri(format!("{url}{JOIN_PATH}"))
            .header(HEADER_FROM, self.filter.self_id.to_string())
            .header(HEADER_TO, id.to_string())
            .header(HEADER_URL, &self.own_url)
            .body(
                Empty::<Bytes>::new()
                    .map_err(|e: Infallible| match e {})
                    .boxed(),
            )
            .map_err(|e| format!("bad peer URL {url}: {e}"))?;
        let answer = async {
            let response = self
                .client
                .request(request)
                .await
                .map_err(|e| super::peer::error_chain(&e))?;
            let status = response.status();
            let body = http_body_util::Limited::new(response.into_body(), MAX_ANSWER)
                .collect()
                .await
                .map_err(|e| e.to_string())?
                .to_bytes();
            Ok::<_, String>((status, String::from_utf8_lossy(&body).trim().to_string()))
        };
        let (status, text) = tokio::time::timeout(ASK_TIMEOUT, answer)
            .await
            .map_err(|_| format!("no answer within {ASK_TIMEOUT:?}"))??;
        if status != StatusCode::OK {
            return Err(format!("{status}: {text}"));
        }
        match u64::from_str_radix(&text, 16) {
            Ok(cluster) if cluster != 0 => Ok(cluster),
            _ => Err(format!("answer {text:?} is not a cluster identity")),
        }
    }
}
