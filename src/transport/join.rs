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
//! and add it back; another member that knows of the session says so (409). A member with no
//! session for the id admits it.
//!
//! So the node asks every member at once, round after round, and weighs their answers: the
//! leader's refusal or admission is final; another member's admission counts only when no
//! member doubts it. A member that has not applied the session yet (it joined a moment ago, or
//! lags) would admit a node that lost its data, and one that has not applied a removal and
//! re-addition yet doubts a node that may join: the leader's word settles both, and until it
//! comes a doubt holds the node back (asked one at a time, the first to answer decided).

use std::collections::BTreeSet;
use std::convert::Infallible;
use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use http_body_util::{BodyExt, Empty};
use hyper::{Method, Request, StatusCode};

use super::{HEADER_FROM, HEADER_LEADER, HEADER_TO, HEADER_URL, HttpClient, JOIN_PATH, PeerFilter};

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
    /// This node is a member: the cluster's identity, and whether the leader said so.
    Admitted { cluster: u64, by_leader: bool },
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

    /// Asks round after round until the members' answers admit this node; `Err`: the leader
    /// refused it for good, and why.
    pub async fn run(self) -> Result<(), String> {
        // Once per distinct answer: the node may wait long for its POST.
        let mut logged = BTreeSet::new();
        loop {
            match self.round(&mut logged).await {
                Ok(Some((id, cluster))) => {
                    let now = self.filter.adopt_cluster_id(cluster);
                    tracing::info!(
                        member = id,
                        cluster = format!("{now:x}"),
                        "learned the cluster's identity from a member"
                    );
                    return Ok(());
                }
                Ok(None) => tokio::time::sleep(RETRY_PAUSE).await,
                Err(reason) => {
                    tracing::error!(%reason, "refused by the leader");
                    return Err(reason);
                }
            }
        }
    }

    /// One round: every member asked at once. `Ok(Some)`: admitted, by whom and into which
    /// cluster; `Ok(None)`: not yet (ask again); `Err`: refused for good. The leader's answer
    /// decides as soon as it comes; otherwise an admission holds only if no member doubted it.
    async fn round(
        &self,
        logged: &mut BTreeSet<(u64, String)>,
    ) -> Result<Option<(u64, u64)>, String> {
        use futures_util::StreamExt;
        let mut asks: futures_util::stream::FuturesUnordered<_> = self
            .members
            .iter()
            .map(|(id, url)| async move { (*id, url, self.ask(*id, url).await) })
            .collect();
        let mut admitted = None;
        let mut doubted = None;
        let note = |logged: &mut BTreeSet<_>, id, url: &String, reason: String| {
            if logged.insert((id, reason.clone())) {
                tracing::warn!(member = id, %url, %reason, "not admitted yet; asking again");
            }
        };
        while let Some((id, url, answer)) = asks.next().await {
            match answer {
                Ok(Answer::Refused(reason)) => {
                    return Err(format!("node {id} refuses this node: {reason}"));
                }
                Ok(Answer::Admitted {
                    cluster,
                    by_leader: true,
                }) => return Ok(Some((id, cluster))),
                Ok(Answer::Admitted { cluster, .. }) => {
                    admitted.get_or_insert((id, cluster));
                }
                Ok(Answer::Doubt(reason)) => {
                    doubted.get_or_insert(id);
                    note(logged, id, url, reason);
                }
                Err(reason) => note(logged, id, url, reason),
            }
        }
        match (admitted, doubted) {
            (Some(admission), None) => Ok(Some(admission)),
            (Some((id, _)), Some(doubter)) => {
                let why = format!(
                    "node {id} admits this node but node {doubter} doubts it: waiting for the \
                     leader's word"
                );
                if logged.insert((id, why.clone())) {
                    tracing::warn!("{why}");
                }
                Ok(None)
            }
            (None, _) => Ok(None),
        }
    }

    /// A member of the first cluster (its id in `--cluster`, no `--join`) about to start on an
    /// empty data dir, which would make its first entries again and rejoin as it is: asks the
    /// other members, at once and for `BOOTSTRAP_ASK` at most, whether its id has run since it
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
            let by_leader = response.headers().contains_key(HEADER_LEADER);
            let body = super::http::read_short(response.into_body(), MAX_ANSWER).await?;
            let text = String::from_utf8_lossy(&body).trim().to_string();
            Ok::<_, String>((status, by_leader, text))
        };
        let (status, by_leader, text) = tokio::time::timeout(ASK_TIMEOUT, answer)
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
            Ok(cluster) if cluster != 0 => Ok(Answer::Admitted { cluster, by_leader }),
            _ => Err(format!("answer {text:?} is not a cluster identity")),
        }
    }
}

#[cfg(test)]
mod tests {
    use std::sync::Mutex;
    use std::sync::atomic::{AtomicUsize, Ordering};
    use std::time::Instant;

    use axum::extract::State;
    use axum::http::HeaderValue;
    use axum::response::IntoResponse;
    use axum::routing::get;

    use super::*;

    /// What a stand-in member answers: status, whether as the leader, body.
    type Reply = (StatusCode, bool, &'static str);

    /// A stand-in member on 127.0.0.1 that answers every question as it is told to, and
    /// counts them.
    #[derive(Clone)]
    struct Member {
        reply: Arc<Mutex<Reply>>,
        asked: Arc<AtomicUsize>,
    }

    impl Member {
        async fn start(reply: Reply) -> (Member, String) {
            let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
                .await
                .expect("a free port on 127.0.0.1");
            let url = format!("http://{}", listener.local_addr().expect("bound"));
            let member = Member {
                reply: Arc::new(Mutex::new(reply)),
                asked: Arc::default(),
            };
            let app = axum::Router::new()
                .route(JOIN_PATH, get(Member::answer))
                .with_state(member.clone());
            tokio::spawn(async move { axum::serve(listener, app).await });
            (member, url)
        }

        async fn answer(State(member): State<Member>) -> axum::response::Response {
            member.asked.fetch_add(1, Ordering::SeqCst);
            let (status, by_leader, text) = *member.reply.lock().expect("not poisoned");
            let mut response = (status, text).into_response();
            if by_leader {
                response
                    .headers_mut()
                    .insert(HEADER_LEADER, HeaderValue::from_static("1"));
            }
            response
        }

        fn set(&self, reply: Reply) {
            *self.reply.lock().expect("not poisoned") = reply;
        }
    }

    fn lookup(members: Vec<(u64, String)>) -> Lookup {
        Lookup {
            client: super::super::http_client(None),
            filter: Arc::new(PeerFilter::new(4, 0)),
            own_url: "http://127.0.0.1:9".to_string(),
            members,
        }
    }

    const ADMIT: Reply = (StatusCode::OK, false, "abc");
    const DOUBT: Reply = (
        StatusCode::CONFLICT,
        false,
        "as far as node 2 knows, node 4 has run since it was last added",
    );

    /// Node 4 lost its data; node 1 joined a moment ago and has not applied node 4's session,
    /// so it admits it. Asked first and alone, it decided; now the leader's refusal, which
    /// comes in the same round, does.
    #[tokio::test]
    async fn a_lagging_members_admission_gives_way_to_the_leaders_refusal() {
        let (_lagging, lagging_url) = Member::start(ADMIT).await;
        let refusal = (
            StatusCode::GONE,
            false,
            "node 4 has run since it was last added",
        );
        let (_leader, leader_url) = Member::start(refusal).await;
        let lookup = lookup(vec![(1, lagging_url), (2, leader_url)]);
        let filter = lookup.filter.clone();
        let refused = lookup.run().await.expect_err("refused by the leader");
        assert!(refused.contains("node 2 refuses"), "{refused}");
        assert_eq!(filter.cluster_id(), 0, "the cluster's identity was adopted");
    }

    /// One member admits node 4, another doubts it (it has a session for it, which a removal
    /// it has not applied yet may have ended), and the leader is not answering: node 4 waits,
    /// round after round, until the leader's admission settles it.
    #[tokio::test]
    async fn a_doubt_holds_back_an_admission_until_the_leader_admits() {
        let (_admits, admits_url) = Member::start(ADMIT).await;
        let (doubts, doubts_url) = Member::start(DOUBT).await;
        let electing = (StatusCode::SERVICE_UNAVAILABLE, false, "no leader yet");
        let (leader, leader_url) = Member::start(electing).await;
        let lookup = lookup(vec![(1, admits_url), (2, doubts_url), (3, leader_url)]);
        let filter = lookup.filter.clone();
        let run = tokio::spawn(lookup.run());
        let deadline = Instant::now() + Duration::from_secs(20);
        while doubts.asked.load(Ordering::SeqCst) < 3 {
            assert!(!run.is_finished(), "node 4 joined over node 2's doubt");
            assert!(Instant::now() < deadline, "node 2 was not asked again");
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
        assert!(!run.is_finished(), "node 4 joined over node 2's doubt");
        assert_eq!(filter.cluster_id(), 0, "the cluster's identity was adopted");

        leader.set((StatusCode::OK, true, "abc"));
        tokio::time::timeout(Duration::from_secs(20), run)
            .await
            .expect("admitted once the leader says so")
            .expect("the lookup task")
            .expect("admitted, not refused");
        assert_eq!(filter.cluster_id(), 0xabc);
    }

    /// With no doubt, any member's admission is enough: the leader may be down, or the node
    /// the only one a new member can reach yet.
    #[tokio::test]
    async fn without_a_doubt_a_followers_admission_is_enough() {
        let (_admits, admits_url) = Member::start(ADMIT).await;
        let lookup = lookup(vec![(1, admits_url), (2, "http://127.0.0.1:9".to_string())]);
        let filter = lookup.filter.clone();
        tokio::time::timeout(Duration::from_secs(20), lookup.run())
            .await
            .expect("admitted within the round")
            .expect("admitted, not refused");
        assert_eq!(filter.cluster_id(), 0xabc);
    }
}
