//! Who is in the cluster: member ids and their peer URLs, the ids that were removed, and the
//! cluster's identity. The raft node updates [`Members`] as configuration changes apply; the
//! transport reads it to know where to send and whom to refuse; snapshots carry it, because a
//! raft `ConfState` holds ids but no URLs.

use std::collections::{BTreeMap, BTreeSet};

use raft::eraftpb::{ConfChange, ConfChangeSingle, ConfChangeV2, Entry, EntryType};
use serde::{Deserialize, Serialize};

/// The membership as of some applied index.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Members {
    /// Voting members and their peer URLs.
    pub urls: BTreeMap<u64, String>,
    /// Ids removed from the cluster and not added back: their vote requests are answered 410
    /// Gone (when their log is no further than this node's applied state: see
    /// `transport::gone_as_of`), which tells a removed node that never applied its own removal
    /// to stop.
    pub removed: BTreeSet<u64>,
    /// The log index of each member's latest addition, where known (a snapshot of an older
    /// build does not say): a session registered before it belongs to an earlier life of the
    /// id (see [`ran_since_added`](Self::ran_since_added)). Not part of the bincode form: the
    /// snapshot codec writes it after the rest of the cluster state, so that older snapshots
    /// still load.
    #[serde(skip)]
    pub added: BTreeMap<u64, u64>,
}

impl Members {
    /// Records `id` as a member at `url`, added by the entry at `index` (an id re-added after
    /// removal is a member again). An addition of a member (an older build's log may hold
    /// one, unchecked) does not move its addition's index: its session of before is still
    /// a run as this member.
    pub fn add(&mut self, id: u64, url: String, index: u64) {
        self.removed.remove(&id);
        if self.urls.insert(id, url).is_none() {
            self.added.insert(id, index);
        }
    }

    /// Records that `id` left the cluster.
    pub fn remove(&mut self, id: u64) {
        self.urls.remove(&id);
        self.removed.insert(id);
        self.added.remove(&id);
    }

    /// Whether member `id`'s session `session` (its registration's index) began since the
    /// id was last added: then a process ran under the id as this member. A registration can
    /// commit after its node's removal (it was in flight), and the removal's forgetting of
    /// the session cannot catch it; such a session belongs to no run as this member. Where the
    /// addition's index is unknown, every session of a member counts.
    pub fn ran_since_added(&self, id: u64, session: u64) -> bool {
        self.contains(id) && session > self.added.get(&id).copied().unwrap_or(0)
    }

    /// Whether `id` is a member.
    pub fn contains(&self, id: u64) -> bool {
        self.urls.contains_key(&id)
    }

    /// The member, other than `except`, that uses `url`, if any.
    pub fn id_with_url(&self, url: &str, except: u64) -> Option<u64> {
        self.urls
            .iter()
            .find(|(id, u)| **id != except && same_url(u, url))
            .map(|(id, _)| *id)
    }
}

/// [`Members`] with its URLs borrowed from the bytes it is decoded from: decoding it checks
/// every string's length against those bytes, where decoding a `String` would first allocate
/// whatever its length field claims. Its fields mirror [`Members`], in the same order.
#[derive(Deserialize)]
struct MembersRef<'a> {
    #[serde(borrow)]
    urls: BTreeMap<u64, &'a str>,
    removed: BTreeSet<u64>,
}

impl Members {
    /// Decodes what `bincode::serde::encode_to_vec(members, standard())` wrote at the front
    /// of `bytes`, allocating no more than the decoded membership holds, whatever the bytes;
    /// returns it and the bytes it took.
    pub fn decode_prefix(bytes: &[u8]) -> Result<(Members, usize), bincode::error::DecodeError> {
        let (m, used): (MembersRef<'_>, _) =
            bincode::serde::borrow_decode_from_slice(bytes, bincode::config::standard())?;
        let members = Members {
            urls: m
                .urls
                .into_iter()
                .map(|(id, u)| (id, u.to_string()))
                .collect(),
            removed: m.removed,
            added: BTreeMap::new(),
        };
        Ok((members, used))
    }
}

/// The membership change a conf-change entry carries, as a v2 change (raft-rs's own v1→v2
/// conversion trait is not exported). This node only proposes v2; v1 is read for completeness.
pub fn decode_conf_change(entry: &Entry) -> Result<ConfChangeV2, protobuf::ProtobufError> {
    if entry.get_entry_type() != EntryType::EntryConfChange {
        return crate::pb::parse::<ConfChangeV2>(&entry.data);
    }
    let v1 = crate::pb::parse::<ConfChange>(&entry.data)?;
    let mut single = ConfChangeSingle::default();
    single.set_change_type(v1.get_change_type());
    single.node_id = v1.node_id;
    let mut cc = ConfChangeV2::default();
    cc.mut_changes().push(single);
    cc.context = v1.context;
    Ok(cc)
}

/// etcd's `--strict-reconfig-check`: whether the cluster can still reach a quorum after
/// adding (`add`) or removing node `id`, counting only the members that answer now
/// (`reachable`; a node being added has not started yet, so it does not count), except that a
/// lone member may take a second, as etcd allows. `Err` gives the arithmetic in words, who
/// answers and who does not, and what to do (`--strict-reconfig-check=false` only where the
/// voters of now, node `id` among them when it is one, have a quorum that answers).
pub fn quorum_after_change(
    voters: &BTreeSet<u64>,
    add: bool,
    id: u64,
    reachable: &BTreeSet<u64>,
) -> Result<(), String> {
    let mut after = voters.clone();
    if add {
        after.insert(id);
    } else {
        after.remove(&id);
    }
    if after.is_empty() {
        // Removing the last voter: refused elsewhere, with its own reason.
        return Ok(());
    }
    let quorum = after.len() / 2 + 1;
    let up: Vec<u64> = after
        .iter()
        .filter(|v| **v != id && reachable.contains(v))
        .copied()
        .collect();
    if up.len() >= quorum {
        return Ok(());
    }
    if add && after.len() == 2 && up.len() == 1 {
        // etcd's exception: a lone member running may take a second (the way to grow a
        // single node, or to restore a cluster from one member's data); until the newcomer
        // runs, the two have no quorum.
        return Ok(());
    }
    let down: Vec<u64> = after
        .iter()
        .filter(|v| **v != id && !reachable.contains(v))
        .copied()
        .collect();
    // Of the voters of now (before `voters` names the sentence's words).
    let (voters_now, up_now) = (
        voters.len(),
        voters.iter().filter(|v| reachable.contains(v)).count(),
    );
    let quorum_now = voters_now / 2 + 1;
    let voters = match after.len() {
        1 => "1 voter, which needs".to_string(),
        n => format!("{n} voters, which need"),
    };
    let what = if add {
        format!("adding node {id} would make {voters}")
    } else {
        format!("removing node {id} would leave {voters}")
    };
    let answer = match up.len() {
        0 if after.len() == 1 => "it does not answer now".to_string(),
        0 => "none of them answers now".to_string(),
        1 => "only 1 of them answers now".to_string(),
        n => format!("only {n} of them answer now"),
    };
    // Who answers and who does not, by name: "(node 1 does; node 2 does not)".
    let does = |ids: &[u64], not: &str| {
        let verb = if ids.len() == 1 { "does" } else { "do" };
        format!("{} {verb}{not}", nodes(ids))
    };
    let mut who = Vec::new();
    if !up.is_empty() {
        who.push(does(&up, ""));
    }
    who.push(does(&down, " not"));
    if add {
        // The newcomer has not started: it never counts.
        who.push(format!("node {id}, being added, has not started yet"));
    }
    // The check runs on the node asked, with the flag it started with. The flag helps only
    // if the change can commit: the voters of now must have a quorum that answers (a user
    // who restarted a node with it, in a cluster of five with two up, met a timeout).
    let way_out = if up_now >= quorum_now {
        ", or restart this node with --strict-reconfig-check=false".to_string()
    } else {
        format!(
            "; no change can commit before then (the {} voters of now need {quorum_now} and \
             {up_now} answer), so --strict-reconfig-check=false would not help",
            voters_now
        )
    };
    Err(format!(
        "{what} {quorum} for a quorum, but {answer} ({}): bring {} back first{way_out}",
        who.join("; "),
        nodes(&down),
    ))
}

/// Node ids for a sentence: "node 2", "nodes 2 and 4", "nodes 2, 4 and 5".
pub fn nodes(ids: &[u64]) -> String {
    match ids {
        [one] => format!("node {one}"),
        [init @ .., last] => {
            let init: Vec<String> = init.iter().map(u64::to_string).collect();
            format!("nodes {} and {last}", init.join(", "))
        }
        // Not in a refusal: one has a member down (a full house is a quorum, and a lone
        // member may take a second).
        [] => "no node".to_string(),
    }
}

/// The cluster identity derived from the bootstrap peer list: the same `--cluster` list and
/// token give the same id on every initial member, with no extra round of agreement.
pub fn cluster_id(token: &str, initial_cluster: &[String]) -> u64 {
    // FNV-1a: tiny, stable across versions and platforms, and good enough to tell two
    // clusters apart (this is an identity, not a defence against forgery).
    let mut hash: u64 = 0xcbf2_9ce4_8422_2325;
    let mut feed = |bytes: &[u8]| {
        for b in bytes {
            hash ^= u64::from(*b);
            hash = hash.wrapping_mul(0x0000_0100_0000_01b3);
        }
    };
    feed(token.as_bytes());
    for url in initial_cluster {
        feed(b"\n");
        feed(normalize_url(url).as_bytes());
    }
    // 0 means "not known yet" on a joining node, so never hand it out.
    hash.max(1)
}

/// A URL without surrounding blanks or a trailing slash, so `http://a:1/` and `http://a:1`
/// compare equal.
pub fn normalize_url(url: &str) -> &str {
    url.trim().trim_end_matches('/')
}

/// Whether two peer URLs name the same place (scheme and host names are not case-sensitive;
/// a trailing `/` does not count).
pub fn same_url(a: &str, b: &str) -> bool {
    normalize_url(a).eq_ignore_ascii_case(normalize_url(b))
}

/// Whether two URLs name one listener: the same scheme and port, and the same host, where
/// `localhost` stands for `127.0.0.1` and `[::1]` (other addresses are compared as they are:
/// `127.0.0.2` is another listener, as is `[::1]` beside `127.0.0.1`). Looser than
/// [`same_url`], which the replicated membership rules use and must keep as it is: this one
/// only judges requests (a member added at another spelling of a member's URL, a page's
/// origin).
pub fn same_place(a: &str, b: &str) -> bool {
    match (Endpoint::parse(a), Endpoint::parse(b)) {
        (Some(a), Some(b)) => {
            a.https == b.https
                && a.port == b.port
                && (a.host == b.host
                    || (a.host == "localhost" && localhost_is(&b.host))
                    || (b.host == "localhost" && localhost_is(&a.host)))
        }
        _ => false,
    }
}

/// Whether the URL `url` reaches the listener this node bound at `listen` (its REST API),
/// judged from the URL alone, with no name looked up: the same port, and a host that is
/// `listen`'s address (or `localhost` for a loopback one); when `listen` is every interface,
/// any loopback address of its family, or `localhost`. A host that names this machine
/// otherwise (another interface's address, a name of it, the host of its own peer URL) is
/// not recognised, so nothing reachable elsewhere is refused: `http://node4:12380` is
/// another machine's, even when this node's REST port is 12380, and behind published ports
/// (a container) `http://node1:12380` may be another member's peer port, though node 1's
/// REST API listens on 12380 inside (found by a review of a version that counted the peer
/// URL's host). The scheme does not count: a listener is reached at its address either way.
pub fn reaches_listener(url: &str, listen: std::net::SocketAddr) -> bool {
    let Some(endpoint) = Endpoint::parse(url) else {
        return false;
    };
    if endpoint.port != listen.port() {
        return false;
    }
    let host = endpoint.host.as_str();
    let ip = host_ip(host);
    let listen_ip = listen.ip();
    // A connection to `0.0.0.0` (`::`) goes to `127.0.0.1` (`::1`) on Linux: the address the
    // start-up line prints for a node listening on every interface, easy to paste (found by
    // a review).
    let to_this_host = |ip: std::net::IpAddr| ip.is_loopback() || ip.is_unspecified();
    if !listen_ip.is_unspecified() {
        let first_loopback = match listen_ip {
            std::net::IpAddr::V4(v4) => v4 == std::net::Ipv4Addr::LOCALHOST,
            std::net::IpAddr::V6(v6) => v6 == std::net::Ipv6Addr::LOCALHOST,
        };
        return match ip {
            Some(ip) if ip.is_unspecified() => {
                first_loopback && ip.is_ipv4() == listen_ip.is_ipv4()
            }
            Some(ip) => ip == listen_ip,
            None => host == "localhost" && listen_ip.is_loopback(),
        };
    }
    // `0.0.0.0` takes IPv4 only; `::` takes both on the usual dual-stack set-up.
    match ip {
        Some(ip) => to_this_host(ip) && (listen_ip.is_ipv6() || ip.is_ipv4()),
        None => host == "localhost",
    }
}

/// The parts of an `http://` or `https://` URL (or origin) that [`same_place`] compares.
#[derive(Debug, PartialEq, Eq)]
struct Endpoint {
    https: bool,
    host: String,
    port: u16,
}

impl Endpoint {
    fn parse(url: &str) -> Option<Endpoint> {
        let url = url.trim();
        let host = url_host(url)?;
        let (https, rest) = match url.strip_prefix("https://") {
            Some(rest) => (true, rest),
            None => (false, url.strip_prefix("http://")?),
        };
        let authority = rest.split(['/', '?', '#']).next()?;
        let port = if authority.starts_with('[') {
            authority[authority.find(']')? + 1..].strip_prefix(':')
        } else {
            authority.rsplit_once(':').map(|(_, port)| port)
        };
        let port = match port {
            Some(port) => port.parse().ok()?,
            None if https => 443,
            None => 80,
        };
        Some(Endpoint { https, host, port })
    }
}

/// The host of an `http://` or `https://` URL (or origin), lower-cased: `127.0.0.1`,
/// `[::1]`, `node1`.
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

/// Whether `localhost` names the address `host`: `127.0.0.1` or `[::1]`.
fn localhost_is(host: &str) -> bool {
    matches!(host, "127.0.0.1" | "[::1]")
}

/// Whether `host` (as [`url_host`] gives it) names this machine's loopback interface.
pub fn is_loopback(host: &str) -> bool {
    host == "localhost" || host_ip(host).is_some_and(|ip| ip.is_loopback())
}

/// The address `host` (as [`url_host`] gives it, an IPv6 one in brackets or not) is, if it is
/// one rather than a name.
pub fn host_ip(host: &str) -> Option<std::net::IpAddr> {
    host.trim_start_matches('[')
        .trim_end_matches(']')
        .parse()
        .ok()
}

/// Why a peer URL was refused.
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum UrlError {
    /// Not `http://host:port` or `https://host:port`.
    #[error("peer URL {0:?} is not of the form http://host:port (or https://host:port)")]
    Malformed(String),
    /// The scheme is not the one this cluster's peers speak.
    #[error("peer URL {url:?} must start with {wanted}: this cluster's peers use {wanted}")]
    Scheme {
        /// The URL.
        url: String,
        /// The scheme the cluster uses.
        wanted: &'static str,
    },
}

/// The scheme prefix of a peer URL: `https://` means TLS.
fn scheme_prefix(tls: bool) -> &'static str {
    if tls { "https://" } else { "http://" }
}

/// Checks that `url` is a peer URL this transport can reach: `http://host:port` or
/// `https://host:port` (TLS), no path.
pub fn validate_peer_url(url: &str) -> Result<String, UrlError> {
    let url = normalize_url(url);
    let bad = || UrlError::Malformed(url.to_string());
    let rest = url
        .strip_prefix("http://")
        .or_else(|| url.strip_prefix("https://"))
        .ok_or_else(bad)?;
    let (host, port) = rest.rsplit_once(':').ok_or_else(bad)?;
    if host.is_empty() || host.contains(['/', '?', '#', '@', ' ']) {
        return Err(bad());
    }
    // Digits only, no leading zero: `+45002` and `045002` are port 45002 to `parse`, and
    // would let one member's port pass as an unused URL.
    if port.is_empty() || !port.bytes().all(|b| b.is_ascii_digit()) || port.starts_with('0') {
        return Err(bad());
    }
    // What the transport will make of it: a URL it cannot send to (a control character,
    // a non-ASCII host, an unclosed `[`) would make a member no one can reach.
    match (port.parse::<u16>(), url.parse::<hyper::Uri>()) {
        (Ok(p), Ok(uri)) if p != 0 && uri.host().is_some_and(|h| !h.is_empty()) => {
            Ok(url.to_string())
        }
        _ => Err(bad()),
    }
}

/// Checks that a (valid) peer URL speaks what the cluster speaks: `https://` with peer TLS,
/// `http://` without.
pub fn check_peer_scheme(url: &str, tls: bool) -> Result<(), UrlError> {
    let wanted = scheme_prefix(tls);
    if url.trim().starts_with(wanted) {
        return Ok(());
    }
    Err(UrlError::Scheme {
        url: url.to_string(),
        wanted,
    })
}

/// Splits a peer URL into the `host:port` a listener binds.
pub fn host_port(url: &str) -> Result<String, UrlError> {
    let url = validate_peer_url(url)?;
    let rest = url
        .strip_prefix(scheme_prefix(false))
        .or_else(|| url.strip_prefix(scheme_prefix(true)))
        .unwrap_or(&url);
    Ok(rest.to_string())
}

/// Parses a node id the way Go's `strconv.ParseUint(s, 0, 64)` does, as the original's
/// `POST /<id>` does: decimal, `0x` hex, `0o` or leading-`0` octal, `0b` binary, `_` separators.
pub fn parse_node_id(text: &str) -> Option<u64> {
    let lower = text.to_ascii_lowercase();
    let (digits, radix) = if let Some(d) = lower.strip_prefix("0x") {
        (d, 16)
    } else if let Some(d) = lower.strip_prefix("0o") {
        (d, 8)
    } else if let Some(d) = lower.strip_prefix("0b") {
        (d, 2)
    } else if lower.len() > 1 && lower.starts_with('0') {
        (&lower[1..], 8)
    } else {
        (lower.as_str(), 10)
    };
    // Go's syntax of integer literals, which base 0 follows: underscores between digits, and
    // between a base prefix (or octal's leading `0`) and a digit (`1_000`, `0x_1f`, `0_7`;
    // not `_10`). A first version refused them in decimal (found by a review).
    let digits = match digits.strip_prefix('_') {
        Some(rest) if radix != 10 => rest,
        _ => digits,
    };
    if digits.is_empty()
        || digits.starts_with('_')
        || digits.ends_with('_')
        || digits.contains("__")
    {
        return None;
    }
    let clean: String = digits.chars().filter(|c| *c != '_').collect();
    if clean.starts_with(['+', '-']) {
        return None;
    }
    u64::from_str_radix(&clean, radix).ok()
}

#[cfg(test)]
mod tests {
    /// A URL reaches this node's REST listener only when it names it for certain: its port,
    /// and its address or a loopback spelling of it; another host at the same port is
    /// another machine's.
    #[test]
    fn a_url_reaches_the_rest_listener_only_at_its_own_address_and_port() {
        let any: std::net::SocketAddr = "0.0.0.0:12380".parse().expect("literal");
        let any6: std::net::SocketAddr = "[::]:12380".parse().expect("literal");
        let lo: std::net::SocketAddr = "127.0.0.1:12380".parse().expect("literal");
        let one: std::net::SocketAddr = "10.0.0.5:12380".parse().expect("literal");
        for (url, listen, reaches) in [
            ("http://127.0.0.1:12380", any, true),
            ("http://localhost:12380/", any, true),
            ("https://127.0.0.1:12380", any, true),
            ("http://127.0.0.2:12380", any, true),
            ("http://[::1]:12380", any, false),
            ("http://[::1]:12380", any6, true),
            ("http://node1:12380", any, false),
            ("http://node2:12380", any, false),
            ("http://10.0.0.5:12380", any, false),
            ("http://127.0.0.1:12379", any, false),
            ("http://127.0.0.1:22380", any, false),
            ("http://127.0.0.1:12380", lo, true),
            ("http://localhost:12380", lo, true),
            ("http://127.0.0.2:12380", lo, false),
            ("http://10.0.0.5:12380", one, true),
            ("http://127.0.0.1:12380", one, false),
            ("http://localhost:12380", one, false),
            ("not a url", any, false),
            ("http://0.0.0.0:12380", any, true),
            ("http://[::]:12380", any6, true),
            ("http://[::]:12380", any, false),
            ("http://0.0.0.0:12380", lo, true),
            ("http://0.0.0.0:12380", one, false),
            ("http://0.0.0.0:12379", any, false),
        ] {
            assert_eq!(
                reaches_listener(url, listen),
                reaches,
                "{url} against {listen}"
            );
        }
    }

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
    fn endpoints_of_urls() {
        let at = |https, host: &str, port| {
            Some(Endpoint {
                https,
                host: host.into(),
                port,
            })
        };
        assert_eq!(
            Endpoint::parse("http://127.0.0.1:12380"),
            at(false, "127.0.0.1", 12380)
        );
        assert_eq!(Endpoint::parse("https://[::1]/x"), at(true, "[::1]", 443));
        assert_eq!(Endpoint::parse("http://Node1"), at(false, "node1", 80));
        assert_eq!(Endpoint::parse("http://[::1]:8/"), at(false, "[::1]", 8));
        assert_eq!(Endpoint::parse("http://a:port"), None);
        assert_eq!(Endpoint::parse("null"), None);
    }

    /// One listener in other spellings: loopback names alike, the default port spelled out
    /// or not; another port, scheme or host is another place.
    #[test]
    fn places_of_urls() {
        assert!(same_place(
            "http://127.0.0.1:12379",
            "http://LOCALHOST:12379/"
        ));
        assert!(same_place("http://[::1]:12379", "http://localhost:12379"));
        assert!(!same_place(
            "http://127.0.0.1:12379",
            "http://127.0.0.2:12379"
        ));
        assert!(!same_place("http://127.0.0.1:12379", "http://[::1]:12379"));
        assert!(!same_place(
            "http://localhost:12379",
            "http://127.0.0.2:12379"
        ));
        assert!(same_place("https://node1", "https://Node1:443"));
        assert!(!same_place(
            "http://127.0.0.1:12379",
            "http://127.0.0.1:12380"
        ));
        assert!(!same_place(
            "http://127.0.0.1:12379",
            "https://127.0.0.1:12379"
        ));
        assert!(!same_place(
            "http://127.0.0.2:12379",
            "http://10.0.0.2:12379"
        ));
        assert!(!same_place("null", "null"));
    }

    /// etcd's arithmetic: after the change, the members that answer (a new one does not
    /// count: it has not started) must be a quorum of the voters, except that a lone member
    /// may take a second.
    #[test]
    fn a_change_is_refused_when_those_who_answer_would_not_be_a_quorum() {
        let ids = |v: &[u64]| v.iter().copied().collect::<BTreeSet<u64>>();
        let three = ids(&[1, 2, 3]);
        // All up: adding a fourth (4 voters, quorum 3, 3 answer) is fine.
        assert!(quorum_after_change(&three, true, 4, &three).is_ok());
        // Node 2 down: 4 voters would need 3, only 2 answer.
        let err = quorum_after_change(&three, true, 5, &ids(&[1, 3])).expect_err("refused");
        assert!(
            err.contains("adding node 5 would make 4 voters, which need 3"),
            "{err}"
        );
        assert!(
            err.contains(
                "but only 2 of them answer now (nodes 1 and 3 do; node 2 does not; node 5, \
                 being added, has not started yet): bring node 2 back first"
            ),
            "{err}"
        );
        // A lone member may take a second, as etcd allows (the pair has no quorum until the
        // newcomer runs); not a third while the second is down.
        assert!(quorum_after_change(&ids(&[1]), true, 2, &ids(&[1])).is_ok());
        let err = quorum_after_change(&ids(&[1, 2]), true, 3, &ids(&[1])).expect_err("refused");
        assert!(
            err.contains("only 1 of them answers now (node 1 does; node 2 does not; node 3,"),
            "{err}"
        );
        // Removing the member that is down leaves 2 voters, both up: fine.
        assert!(quorum_after_change(&three, false, 2, &ids(&[1, 3])).is_ok());
        // Removing a live one while another is down: 2 voters, 1 answers.
        let err = quorum_after_change(&three, false, 3, &ids(&[1, 3])).expect_err("refused");
        assert_eq!(
            err,
            "removing node 3 would leave 2 voters, which need 2 for a quorum, but only 1 of them \
             answers now (node 1 does; node 2 does not): bring node 2 back first, or restart \
             this node with --strict-reconfig-check=false"
        );
        // Three of five down, removing one that answers: four voters left, one answers.
        let five = ids(&[1, 2, 3, 4, 5]);
        let err = quorum_after_change(&five, false, 5, &ids(&[1, 5])).expect_err("refused");
        assert!(
            err.contains("(node 1 does; nodes 2, 3 and 4 do not): bring nodes 2, 3 and 4 back"),
            "{err}"
        );
        // There the flag cannot help: the five voters of now need 3, and 2 answer.
        assert!(
            err.ends_with(
                "back first; no change can commit before then (the 5 voters of now need 3 and \
                 2 answer), so --strict-reconfig-check=false would not help"
            ),
            "{err}"
        );
        // Removing a lone live member whose only partner is down: nobody answers after it.
        let err = quorum_after_change(&ids(&[1, 2]), false, 1, &ids(&[1])).expect_err("refused");
        assert!(
            err.contains(
                "removing node 1 would leave 1 voter, which needs 1 for a quorum, but it does not \
                 answer now (node 2 does not): bring node 2 back first"
            ),
            "{err}"
        );
    }
    use super::*;

    #[test]
    fn node_ids_parse_like_go() {
        assert_eq!(parse_node_id("4"), Some(4));
        assert_eq!(parse_node_id("0x10"), Some(16));
        assert_eq!(parse_node_id("0o17"), Some(15));
        assert_eq!(parse_node_id("017"), Some(15));
        assert_eq!(parse_node_id("0b101"), Some(5));
        assert_eq!(parse_node_id("0x_1_0"), Some(16));
        assert_eq!(parse_node_id("0"), Some(0));
        assert_eq!(parse_node_id("1_0"), Some(10));
        assert_eq!(parse_node_id("1_2_3_4_5"), Some(12345));
        assert_eq!(parse_node_id("0_17"), Some(15));
        for bad in [
            "",
            "abc",
            "-1",
            "+1",
            "_10",
            "10_",
            "1__0",
            "0x",
            "4 ",
            "18446744073709551616",
            "0x_",
        ] {
            assert_eq!(parse_node_id(bad), None, "{bad:?}");
        }
    }

    #[test]
    fn peer_urls_are_checked() {
        assert_eq!(
            validate_peer_url("http://127.0.0.1:42379/").as_deref(),
            Ok("http://127.0.0.1:42379")
        );
        assert_eq!(
            host_port("http://localhost:1").as_deref(),
            Ok("localhost:1")
        );
        assert_eq!(
            host_port("https://127.0.0.1:42379/").as_deref(),
            Ok("127.0.0.1:42379")
        );
        assert!(check_peer_scheme("https://a:1", true).is_ok());
        assert!(check_peer_scheme("http://a:1", false).is_ok());
        let err = check_peer_scheme("http://a:1", true).expect_err("plain URL on a TLS cluster");
        assert!(err.to_string().contains("https://"), "{err}");
        assert!(check_peer_scheme("https://a:1", false).is_err());
        for bad in [
            "127.0.0.1:42379",
            "http://127.0.0.1",
            "http://127.0.0.1:0",
            "http://127.0.0.1:99999",
            "ftp://a:1",
            "https://a",
            "http://:1",
            "http://a:1/path",
            "not a url",
            // Found by a review: each was accepted, and made a member no one could reach or
            // one that shadowed another member's port.
            "http://127.0.0.1\t:45006",
            "http://h\u{e9}:45011",
            "http://a\\b:45012",
            "http://[zz:45013",
            "http://a\u{1}b:45014",
            "http://127.0.0.1:045002",
            "http://127.0.0.1:+45005",
        ] {
            assert!(validate_peer_url(bad).is_err(), "{bad:?}");
        }
    }

    #[test]
    fn cluster_id_depends_on_list_and_token() {
        let three: Vec<String> = ["http://a:1", "http://b:2", "http://c:3"]
            .iter()
            .map(|s| s.to_string())
            .collect();
        let one = vec!["http://a:1".to_string()];
        assert_eq!(cluster_id("", &three), cluster_id("", &three));
        assert_ne!(cluster_id("", &three), cluster_id("", &one));
        assert_ne!(cluster_id("", &three), cluster_id("x", &three));
        assert_ne!(cluster_id("", &three), 0);
    }

    #[test]
    fn members_decode_what_bincode_encodes_and_refuse_lying_lengths() {
        let mut m = Members::default();
        m.add(1, "https://a:1".into(), 1);
        m.add(7, "http://b:2".into(), 9);
        m.remove(3);
        let bytes = bincode::serde::encode_to_vec(&m, bincode::config::standard()).expect("encode");
        // The addition indexes travel apart (see the snapshot codec).
        m.added.clear();
        assert_eq!(
            Members::decode_prefix(&bytes).expect("decodes"),
            (m, bytes.len())
        );
        // One member whose URL claims 2^62 bytes.
        let lying = [1, 1, 0xFF, 0, 0, 0, 0, 0, 0, 0, 0x40, 0];
        assert!(Members::decode_prefix(&lying).is_err());
    }

    #[test]
    fn membership_tracks_removals_and_urls() {
        let mut m = Members::default();
        m.add(1, "http://a:1".into(), 1);
        m.add(2, "http://b:2".into(), 2);
        assert_eq!(m.id_with_url("http://b:2/", 1), Some(2));
        assert_eq!(m.id_with_url("HTTP://B:2", 1), Some(2));
        assert_eq!(m.id_with_url("http://b:2", 2), None);
        m.remove(2);
        assert!(!m.contains(2) && m.removed.contains(&2));
        m.add(2, "http://b:2".into(), 9);
        assert!(m.contains(2) && !m.removed.contains(&2));
    }

    /// A session counts as a run of a member only if it began after the member's latest
    /// addition: a registration that was in flight when its node was removed can commit
    /// after the removal, and must not make the id's next life look as if it had run.
    #[test]
    fn a_session_counts_only_if_it_began_since_the_member_was_added() {
        let mut m = Members::default();
        m.add(3, "http://c:3".into(), 3);
        assert!(m.ran_since_added(3, 7));
        m.remove(3);
        assert!(!m.ran_since_added(3, 12), "not a member");
        m.add(3, "http://c:3".into(), 14);
        assert!(
            !m.ran_since_added(3, 12),
            "registered between removal and re-addition"
        );
        assert!(m.ran_since_added(3, 15));
        // Added again while a member (unchecked in an older build's log): no new life.
        m.add(3, "http://c:3".into(), 20);
        assert!(m.ran_since_added(3, 15));
        // Where the addition's index is unknown (an older snapshot), every session counts.
        m.added.clear();
        assert!(m.ran_since_added(3, 12));
    }
}
