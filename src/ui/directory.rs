//! Where each member's REST API is. Members are known by their peer URLs only (that is what
//! the log records), so a node asks each member's peer port (`GET /-/rest-url`, served by
//! [`super::Ui::peer_routes`]) and keeps the answers. The page learns every member's REST URL
//! from whichever node it is connected to, in that node's `status` events.
//!
//! The same list says which pages may call this node from another origin: those served from
//! a host of a member (see [`super::cors`]).

use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use http_body_util::BodyExt;

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
        let body = http_body_util::Limited::new(response.into_body(), MAX_ANSWER)
            .collect()
            .await
            .map_err(|e| e.to_string())?
            .to_bytes();
        let text = std::str::from_utf8(&body)
            .map_err(|_| "answer is not UTF-8".to_string())?
            .trim();
        if url_host(text).is_none() {
            return Err(format!("answer {text:?} is not an http:// or https:// URL"));
        }
        Ok(text.to_string())
    }

    /// Whether a page served from `host` may call this node: `host` is a host of a member
    /// (any loopback name counts for a loopback member).
    pub fn allows_host(&self, host: &str) -> bool {
        let state = self.state();
        state.hosts.contains(host)
            || (is_loopback(host) && state.hosts.iter().any(|h| is_loopback(h)))
    }
}

/// The host of an `http://` or `https://` URL (or origin): `127.0.0.1`, `[::1]`, `node1`.
pub fn url_host(url: &str) -> Option<String> {
    let rest = url
        .strip_prefix("http://")
        .or_else(|| url.strip_prefix("https://"))?;
    let authority = rest.split(['/', '?', '#']).next()?;
    let host = if authority.starts_with('[') {
        &authority[..=authority.find(']')?]
    } else {
        authority.rsplit_once(':').map_or(authority, |(h, _)| h)
    };
    (!host.is_empty()).then(|| host.to_ascii_lowercase())
}

fn is_loopback(host: &str) -> bool {
    if host == "localhost" {
        return true;
    }
    host.trim_start_matches('[')
        .trim_end_matches(']')
        .parse::<std::net::IpAddr>()
        .is_ok_and(|ip| ip.is_loopback())
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
    fn hosts_of_urls() {
        assert_eq!(
            url_host("http://127.0.0.1:12379").as_deref(),
            Some("127.0.0.1")
        );
        assert_eq!(url_host("http://[::1]:80/x").as_deref(), Some("[::1]"));
        assert_eq!(url_host("https://Node1").as_deref(), Some("node1"));
        assert_eq!(url_host("null"), None);
        assert_eq!(url_host("ftp://a:1"), None);
        assert_eq!(url_host("http://:80"), None);
    }

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

    /// Pages from the members' hosts may call the node; a loopback member admits every
    /// loopback name; other hosts are refused.
    #[tokio::test]
    async fn pages_from_member_hosts_are_allowed() {
        let dir = Directory::new(
            1,
            "http://127.0.0.1:12380".into(),
            &["http://127.0.0.1:12379".into()],
            None,
        );
        assert!(dir.allows_host("127.0.0.1"));
        assert!(dir.allows_host("localhost"));
        assert!(dir.allows_host("[::1]"));
        assert!(!dir.allows_host("evil.example"));
        assert!(!dir.allows_host("192.0.2.7"));
        dir.rest_urls(&[MemberStatus {
            id: 2,
            url: "http://192.0.2.7:22379".into(),
            is_leader: false,
        }]);
        assert!(
            dir.allows_host("192.0.2.7"),
            "a member's host, learned from its status"
        );
    }
}
