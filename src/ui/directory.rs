//! Where each member's REST API is. Members are known by their peer URLs only (that is what
//! the log records), so a node asks each member's peer port (`GET /-/rest-url`, served by
//! [`super::Ui::peer_routes`]) and keeps the answers. The page learns every member's REST URL
//! from whichever node it is connected to, in that node's `status` events.
//!
//! The same list says which pages may call this node from another origin: those served by a
//! member's REST API (see [`super::cors`]). A page may call before this node has asked the
//! member that served it (the page opens every member's stream at once): an origin on a
//! member's host but at no REST URL known makes the node ask every member again, at most
//! once per `RETRY_MISSING`, and wait for their answers before it judges.

use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use futures_util::FutureExt;
use futures_util::future::{BoxFuture, Shared};

use crate::membership::{is_loopback, same_place, url_host};
use crate::raft_node::MemberStatus;
use crate::transport::{self, HttpClient};

/// Path on the peer port that answers the node's REST URL.
pub const REST_URL_PATH: &str = "/-/rest-url";
/// How long a lookup may take: a member that is down must not hold anything up.
const LOOKUP_TIMEOUT: Duration = Duration::from_secs(1);
/// How soon a member whose REST URL is unknown is asked again.
const RETRY_MISSING: Duration = Duration::from_secs(1);
/// How soon a known REST URL is checked again (a member restarted on another port).
const REFRESH_KNOWN: Duration = Duration::from_secs(10);
/// Longest answer taken as a URL.
const MAX_ANSWER: usize = 1024;

/// The members' REST URLs as far as this node knows them.
pub struct Directory {
    own_id: u64,
    own_rest_url: String,
    /// The transport's kind of client: it speaks TLS to the peer ports when they do.
    client: HttpClient,
    state: Mutex<State>,
}

#[derive(Default)]
struct State {
    /// Peer URL → REST URL.
    rest_urls: HashMap<String, String>,
    /// Peer URL → when it was last asked.
    asked: HashMap<String, Instant>,
    /// Hosts of every peer URL seen, and of this node's REST URL.
    hosts: BTreeSet<String>,
    /// The other members' peer URLs, as last told (their REST URLs alone admit pages: a
    /// removed member's port may serve anything later).
    members: Option<BTreeSet<String>>,
    /// The last time every member was asked for an origin's sake, and that round of asking
    /// (callers meanwhile wait for the same round).
    refresh: Option<(Instant, Shared<BoxFuture<'static, ()>>)>,
}

/// How a page's origin stands with this node.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum OriginIs {
    /// Served by a member's REST API (this node's included).
    Member,
    /// On a member's host, at no REST URL known: the members are worth asking again.
    Unknown,
    /// Elsewhere.
    Foreign,
}

impl Directory {
    /// A directory knowing this node's own REST URL and the hosts of `cluster` (the
    /// `--cluster` list); `peer_tls` is what the node presents and trusts on peer ports.
    pub fn new(
        own_id: u64,
        own_rest_url: String,
        cluster: &[String],
        peer_tls: Option<rustls::ClientConfig>,
    ) -> Arc<Directory> {
        let mut state = State::default();
        state.hosts.extend(
            cluster
                .iter()
                .chain([&own_rest_url])
                .filter_map(|u| url_host(u)),
        );
        Arc::new(Directory {
            own_id,
            own_rest_url,
            client: transport::http_client(peer_tls),
            state: Mutex::new(state),
        })
    }

    fn state(&self) -> std::sync::MutexGuard<'_, State> {
        // The state is a cache: what a panicking holder left is still usable.
        self.state.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// This node's REST URL.
    pub fn own_rest_url(&self) -> &str {
        &self.own_rest_url
    }

    /// The REST URLs known for `members` (by id); starts looking up the others, so that a
    /// later call knows them.
    pub fn rest_urls(self: &Arc<Self>, members: &[MemberStatus]) -> BTreeMap<u64, String> {
        let now = Instant::now();
        let mut known = BTreeMap::new();
        let mut ask = Vec::new();
        {
            let mut state = self.state();
            self.set_members(&mut state, members);
            for m in members {
                if let Some(host) = url_host(&m.url) {
                    state.hosts.insert(host);
                }
                if m.id == self.own_id {
                    known.insert(m.id, self.own_rest_url.clone());
                    continue;
                }
                let found = state.rest_urls.get(&m.url).cloned();
                let wait = if found.is_some() {
                    REFRESH_KNOWN
                } else {
                    RETRY_MISSING
                };
                if let Some(url) = found {
                    known.insert(m.id, url);
                }
                if state
                    .asked
                    .get(&m.url)
                    .is_none_or(|at| now.duration_since(*at) >= wait)
                {
                    state.asked.insert(m.url.clone(), now);
                    ask.push(m.url.clone());
                }
            }
        }
        for peer_url in ask {
            let directory = self.clone();
            tokio::spawn(async move { directory.look_up(peer_url).await });
        }
        known
    }

    async fn look_up(&self, peer_url: String) {
        match tokio::time::timeout(LOOKUP_TIMEOUT, self.ask(&peer_url)).await {
            Ok(Ok(rest_url)) => {
                self.state().rest_urls.insert(peer_url, rest_url);
            }
            // Down, or not answering yet: asked again on a later call.
            Ok(Err(err)) => tracing::debug!(%peer_url, %err, "no REST URL from member"),
            Err(_) => tracing::debug!(%peer_url, "no REST URL from member in time"),
        }
    }

    async fn ask(&self, peer_url: &str) -> Result<String, String> {
        let uri: hyper::Uri = format!("{}{REST_URL_PATH}", peer_url.trim_end_matches('/'))
            .parse()
            .map_err(|e| format!("bad peer URL: {e}"))?;
        let response = self.client.get(uri).await.map_err(|e| e.to_string())?;
        if !response.status().is_success() {
            return Err(format!("answered {}", response.status()));
        }
        let body = transport::read_short(response.into_body(), MAX_ANSWER).await?;
        let text = std::str::from_utf8(&body)
            .map_err(|_| "answer is not UTF-8".to_string())?
            .trim();
        if url_host(text).is_none() {
            return Err(format!("answer {text:?} is not an http:// or https:// URL"));
        }
        Ok(text.to_string())
    }

    /// Whether `host` is a host of a member (any loopback name counts for a loopback member).
    fn is_member_host(state: &State, host: &str) -> bool {
        state.hosts.contains(host)
            || (is_loopback(host) && state.hosts.iter().any(|h| is_loopback(h)))
    }

    /// Keeps `members` (but this node) as the members whose REST URLs admit pages.
    fn set_members(&self, state: &mut State, members: &[MemberStatus]) {
        state.members = Some(
            members
                .iter()
                .filter(|m| m.id != self.own_id)
                .map(|m| m.url.clone())
                .collect(),
        );
    }

    /// How a page served from `origin` stands: served by a member's REST API as far as this
    /// node knows (the scheme, the host, `localhost` for `127.0.0.1` or `[::1]`, and the port
    /// must match: see [`same_place`]), on a member's host only, or elsewhere.
    pub fn judge(&self, origin: &str) -> OriginIs {
        let Some(host) = url_host(origin) else {
            return OriginIs::Foreign;
        };
        let state = self.state();
        let members = state
            .rest_urls
            .iter()
            .filter(|(peer, _)| state.members.as_ref().is_none_or(|m| m.contains(*peer)))
            .map(|(_, rest)| rest);
        let known = std::iter::once(&self.own_rest_url)
            .chain(members)
            .any(|url| same_place(url, origin));
        if known {
            OriginIs::Member
        } else if Self::is_member_host(&state, &host) {
            OriginIs::Unknown
        } else {
            OriginIs::Foreign
        }
    }

    /// Asks every one of `members` but this node for its REST URL again and waits for the
    /// answers (each at most `LOOKUP_TIMEOUT`); a round asked less than `RETRY_MISSING`
    /// ago is waited for (or taken as it is) instead, so that pages cannot make the node ask
    /// more often than that.
    pub async fn ask_again(self: &Arc<Self>, members: &[MemberStatus]) {
        let round = {
            let mut state = self.state();
            match &state.refresh {
                Some((at, round)) if at.elapsed() < RETRY_MISSING => round.clone(),
                _ => {
                    let now = Instant::now();
                    self.set_members(&mut state, members);
                    let peers: Vec<String> = state.members.iter().flatten().cloned().collect();
                    for peer in &peers {
                        state.asked.insert(peer.clone(), now);
                    }
                    let directory = self.clone();
                    // A task of its own, so that it finishes even if every request waiting
                    // on it goes away (the peers are marked asked).
                    let asking = tokio::spawn(async move {
                        let asks = peers.into_iter().map(|p| directory.look_up(p));
                        futures_util::future::join_all(asks).await;
                    });
                    let round = async move {
                        let _ = asking.await;
                    }
                    .boxed()
                    .shared();
                    state.refresh = Some((now, round.clone()));
                    round
                }
            }
        };
        round.await;
    }
}

/// The URL this node's REST API is reached at (`https://` when it speaks TLS): its listen
/// address, or, when it listens on every interface, the host of its peer URL (the address
/// the other members reach it at).
pub fn advertised_rest_url(
    listen: std::net::IpAddr,
    port: u16,
    own_peer_url: &str,
    https: bool,
) -> String {
    let scheme = if https { "https" } else { "http" };
    if listen.is_unspecified() {
        let host = url_host(own_peer_url).unwrap_or_else(|| "127.0.0.1".to_string());
        format!("{scheme}://{host}:{port}")
    } else {
        format!("{scheme}://{}", std::net::SocketAddr::new(listen, port))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_advertised_url_follows_the_peer_url_when_listening_everywhere() {
        let any: std::net::IpAddr = "0.0.0.0".parse().expect("literal");
        let one: std::net::IpAddr = "10.0.0.5".parse().expect("literal");
        assert_eq!(
            advertised_rest_url(any, 12380, "http://127.0.0.1:12379", false),
            "http://127.0.0.1:12380"
        );
        assert_eq!(
            advertised_rest_url(one, 12380, "http://127.0.0.1:12379", false),
            "http://10.0.0.5:12380"
        );
        assert_eq!(
            advertised_rest_url(any, 12380, "https://node1:12379", true),
            "https://node1:12380",
            "a REST API on TLS is advertised as https://"
        );
    }

    /// Pages served by a member's REST API may call the node (any loopback name for a
    /// loopback member); another port on a member's host is worth asking the members about;
    /// other hosts are refused.
    #[tokio::test]
    async fn pages_served_by_members_are_allowed() {
        let dir = Directory::new(
            1,
            "http://127.0.0.1:12380".into(),
            &["http://127.0.0.1:12379".into()],
            None,
        );
        assert_eq!(dir.judge("http://127.0.0.1:12380"), OriginIs::Member);
        assert_eq!(dir.judge("http://localhost:12380"), OriginIs::Member);
        assert_eq!(dir.judge("https://127.0.0.1:12380"), OriginIs::Unknown);
        assert_eq!(dir.judge("http://[::1]:3000"), OriginIs::Unknown);
        assert_eq!(dir.judge("http://evil.example:12380"), OriginIs::Foreign);
        assert_eq!(dir.judge("http://192.0.2.7:22380"), OriginIs::Foreign);
        assert_eq!(dir.judge("null"), OriginIs::Foreign);
        dir.rest_urls(&[MemberStatus {
            id: 2,
            url: "http://192.0.2.7:22379".into(),
            is_leader: false,
        }]);
        assert_eq!(
            dir.judge("http://192.0.2.7:22380"),
            OriginIs::Unknown,
            "a member's host, learned from its status; its REST URL not yet"
        );
        dir.state().rest_urls.insert(
            "http://192.0.2.7:22379".into(),
            "http://192.0.2.7:22380".into(),
        );
        assert_eq!(dir.judge("http://192.0.2.7:22380"), OriginIs::Member);
        assert_eq!(dir.judge("http://192.0.2.7:22381"), OriginIs::Unknown);
        // Removed: its REST port may serve anything later.
        dir.rest_urls(&[]);
        assert_ne!(dir.judge("http://192.0.2.7:22380"), OriginIs::Member);
    }

    /// A page from a member this node has not asked yet is judged after asking it; pages
    /// cannot make the node ask more than once per RETRY_MISSING.
    #[tokio::test]
    async fn an_unknown_origin_makes_the_node_ask_the_members_once() {
        let asked = Arc::new(std::sync::atomic::AtomicUsize::new(0));
        let counter = asked.clone();
        let peer = tokio::net::TcpListener::bind("127.0.0.1:0")
            .await
            .expect("a port for the member's peer API");
        let peer_url = format!("http://{}", peer.local_addr().expect("its address"));
        let app = axum::Router::new().route(
            REST_URL_PATH,
            axum::routing::get(move || {
                counter.fetch_add(1, std::sync::atomic::Ordering::SeqCst);
                std::future::ready("http://127.0.0.1:22380\n")
            }),
        );
        tokio::spawn(async move { axum::serve(peer, app).await });
        let dir = Directory::new(1, "http://127.0.0.1:12380".into(), &[], None);
        let members = [
            MemberStatus {
                id: 1,
                url: "http://127.0.0.1:1".into(),
                is_leader: true,
            },
            MemberStatus {
                id: 2,
                url: peer_url,
                is_leader: false,
            },
        ];
        assert_eq!(dir.judge("http://localhost:22380"), OriginIs::Unknown);
        let started = std::time::Instant::now();
        dir.ask_again(&members).await;
        assert_eq!(dir.judge("http://localhost:22380"), OriginIs::Member);
        assert_eq!(asked.load(std::sync::atomic::Ordering::SeqCst), 1);
        for _ in 0..5 {
            dir.ask_again(&members).await;
        }
        // One round per RETRY_MISSING begun: once, unless the machine stalled this test for
        // longer than that.
        let rounds = 1 + started.elapsed().as_millis() / RETRY_MISSING.as_millis();
        let asked = asked.load(std::sync::atomic::Ordering::SeqCst);
        assert!(
            asked as u128 <= rounds,
            "asked {asked} times in {rounds} periods of RETRY_MISSING"
        );
        assert_eq!(dir.judge("http://localhost:3000"), OriginIs::Unknown);
    }
}
