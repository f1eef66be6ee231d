//! How a joining node learns which cluster it joins. A node started with `--join` on an
//! empty data dir has no cluster identity: the bootstrap members derive theirs from the
//! initial `--cluster` list, which the joining node did not start with. Rather than believe
//! the first message that names one (anyone could send that first message), it asks the
//! members in its `--cluster` list: `GET /raft/join` with its id and peer URL. A member
//! answers with the identity only if it has that id as a member at that URL, that is once a
//! `POST /<id>` was applied; with peer TLS the answer comes from a certificate the node
//! trusts. Until then the node refuses every raft message (503), and asks again.
//!
//! An id that has run since it was last added (it has a session in the exactly-once table)
//! is refused: this start on an empty data dir lost the data of that run, the votes it cast
//! and the entries it acknowledged, and a voter that forgot them can help elect a leader that
//! lacks acknowledged writes, or let a leader that is cut off go on serving. The leader, in touch
//! with a quorum, refuses it for good (410 Gone), and the node stops, saying to remove the id
//! and add it back; another member that knows of the session says so (409), and the node asks
//! another. A member with no session for the id admits it.

use std::collections::BTreeSet;
use std::convert::Infallible;
use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use http_body_util::{BodyExt, Empty};
use hyper::{Method, Request, StatusCode};

use super::{HEADER_FROM, HEADER_TO, HEADER_URL, HttpClient, JOIN_PATH, PeerFilter};

/// How long a member of the first cluster about to start on an empty data dir waits for the
/// others' answers ([`Lookup::before_bootstrap`]). Short: in a new cluster the others are
/// starting too, their ports bound but not answering yet, and every start would wait this long.
const BOOTSTRAP_ASK: Duration = Duration::from_millis(500);
/// Pause between rounds of questions.
const RETRY_PAUSE: Duration = Duration::from_millis(500);
/// How long one question may take.
const ASK_TIMEOUT: Duration = Duration::from_secs(3);
/// Longest answer read (a hex id, or a one-line refusal).
const MAX_ANSWER: usize = 4096;

/// What node `id`, refused for having run before, must do: said by the leader's refusal and
/// by a node that stops on another member's doubt.
pub(super) fn add_back(id: u64) -> String {
    format!(
        "remove it and add it back (DELETE /{id}, then POST /{id} with its peer URL, on a \
         member), then start it again with --join"
    )
}

/// A member's answer.
enum Answer {
    /// This node is a member: the cluster's identity.
    Admitted(u64),
    /// This node must not join as it is, and why.
    Refused(String),
    /// Not a definite answer, but the member knows something against this node: its id has
    /// run since it was added (a follower, or a member not sure of the latest membership),
    /// or it is a member at another URL. Ask another; a node about to make its first entries
    /// again does not start.
    Doubt(String),
}

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
    /// The questions node `filter.self_id`, at `own_url`, asks the other nodes of `cluster`
    /// (`--cluster`: the n-th URL is node n's).
    pub fn new(
        client: HttpClient,
        filter: Arc<PeerFilter>,
        own_url: &str,
        cluster: &[String],
    ) -> Lookup {
        let members = (1..)
            .zip(cluster.iter().cloned())
            .filter(|(id, _)| *id != filter.self_id)
            .collect();
        Lookup {
            client,
            filter,
            own_url: own_url.to_string(),
            members,
        }
    }

    /// Asks round after round until a member answers; `Err`: a member refused this node for
    /// good, and why.
    pub async fn run(self) -> Result<(), String> {
        let mut logged = BTreeSet::new();
        loop {
            for (id, url) in &self.members {
                match self.ask(*id, url).await {
                    Ok(Answer::Refused(reason)) => {
                        tracing::error!(member = id, %reason, "refused by a member");
                        return Err(format!("node {id} refuses this node: {reason}"));
                    }
                    Ok(Answer::Admitted(cluster)) => {
                        let now = self.filter.adopt_cluster_id(cluster);
                        tracing::info!(
                            member = id,
                            cluster = format!("{now:x}"),
                            "learned the cluster's identity from a member"
                        );
                        return Ok(());
                    }
                    Ok(Answer::Doubt(reason)) | Err(reason) => {
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

    /// A member of the first cluster (its id in `--cluster`, no `--join`) about to start on an
    /// empty data dir, which would make its first entries again and rejoin as it is: asks the
    /// other members, at once and for [`BOOTSTRAP_ASK`] at most, whether its id has run since it
    /// was added. `Err`: one knows it has (it lost the data of that run; here a follower's
    /// word is enough, as a node that starts anew must not guess), or knows it at another
    /// URL, and why. A member that does not answer in time, or knows nothing of it, says
    /// nothing: in a new cluster they are all starting. So this is a check on what the members
    /// that answer know, where a joining node waits for a definite answer.
    pub async fn before_bootstrap(&self) -> Result<(), String> {
        let asks = self.members.iter().map(|(id, url)| async move {
            match tokio::time::timeout(BOOTSTRAP_ASK, self.ask(*id, url)).await {
                Ok(Ok(answer @ (Answer::Refused(_) | Answer::Doubt(_)))) => Some((*id, answer)),
                _ => None,
            }
        });
        let answers: Vec<_> = futures_util::future::join_all(asks)
            .await
            .into_iter()
            .flatten()
            .collect();
        // The leader's refusal first: it says what to do. A follower's doubt does not (the
        // same answer sends a joining node on to ask another), so that is said here.
        let refusal = answers
            .iter()
            .find(|(_, a)| matches!(a, Answer::Refused(_)))
            .or(answers.first());
        match refusal {
            Some((id, Answer::Refused(reason))) => {
                Err(format!("node {id} refuses this node: {reason}"))
            }
            Some((id, Answer::Doubt(reason))) => Err(format!(
                "node {id} refuses this node: {reason}. This node starts on an empty data dir, so \
                 it would start anew under an id that has run: {}",
                add_back(self.filter.self_id)
            )),
            _ => Ok(()),
        }
    }

    /// One question to member `id` at `url`: the identity, a refusal for good, or a doubt;
    /// `Err`: why not now.
    async fn ask(&self, id: u64, url: &str) -> Result<Answer, String> {
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
        if status == StatusCode::GONE {
            return Ok(Answer::Refused(text));
        }
        if status == StatusCode::CONFLICT {
            return Ok(Answer::Doubt(text));
        }
        if status != StatusCode::OK {
            return Err(format!("{status}: {text}"));
        }
        match u64::from_str_radix(&text, 16) {
            Ok(cluster) if cluster != 0 => Ok(Answer::Admitted(cluster)),
            _ => Err(format!("answer {text:?} is not a cluster identity")),
        }
    }
}
