//! The harness's side of the REST API, and the concurrent clients whose operations make the
//! history the checker judges.
//!
//! Every request is made from the run's thread, which lives in the bridge namespace, so its
//! sockets are made there. Each answer is turned into the checker's [`Outcome`], on the safe
//! side: only an answer that proves a PUT was never proposed is a definite failure.

use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use rand::rngs::StdRng;
use rand::{RngExt, SeedableRng};

pub use crate::history::{Recorded, Why};
use crate::lincheck::{OpKind, Operation, Outcome};
use crate::netns::{REST_PORT, node_ip};

impl Why {
    /// From a failed request of reqwest: refused, timed out or cut.
    fn of_error(e: &reqwest::Error) -> Why {
        if e.is_connect() {
            Why::Refused(error_chain(e))
        } else if e.is_timeout() {
            Why::ClientTimeout
        } else {
            Why::Cut(error_chain(e))
        }
    }
}

/// An error and its sources on one line: reqwest's own message alone ("error sending
/// request") does not say whether the connection was reset or closed.
fn error_chain(e: &(dyn std::error::Error + 'static)) -> String {
    let mut text = e.to_string();
    let mut source = e.source();
    while let Some(s) = source {
        text.push_str(": ");
        text.push_str(&s.to_string());
        source = s.source();
    }
    text
}

/// An HTTP client of the nodes' REST API.
#[derive(Clone)]
pub struct Http {
    client: reqwest::Client,
}

/// What a membership request answered.
#[derive(Debug)]
pub enum Answer {
    /// An HTTP status and its body.
    Status(u16, String),
    /// No answer (connection refused or cut, or the client's timeout).
    NoAnswer(String),
}

impl Http {
    /// A client whose requests give up after `timeout` (longer than a node takes to answer,
    /// so a node's own answer comes first and tells more than a timeout). With `certs` (a
    /// `raftexample certs` folder), over TLS with its client certificate.
    pub fn new(timeout: Duration, certs: Option<&std::path::Path>) -> Http {
        let mut builder = reqwest::Client::builder()
            .timeout(timeout)
            .connect_timeout(Duration::from_secs(1))
            // Never ask a proxy (the environment may name one): the nodes are on our bridge.
            .no_proxy();
        if let Some(dir) = certs {
            let read = |name: &str| {
                std::fs::read(dir.join(name))
                    .unwrap_or_else(|e| panic!("{}: {e}", dir.join(name).display()))
            };
            let mut identity = read("client.crt");
            identity.extend(read("client.key"));
            builder = builder
                .use_rustls_tls()
                .tls_built_in_root_certs(false)
                .add_root_certificate(
                    reqwest::Certificate::from_pem(&read("ca.crt")).expect("a CA in PEM"),
                )
                .identity(reqwest::Identity::from_pem(&identity).expect("a client identity"));
        }
        let client = builder.build().expect("building the HTTP client");
        Http { client }
    }

    fn url(id: u64, path: &str) -> String {
        let scheme = if crate::cluster::tls() {
            "https"
        } else {
            "http"
        };
        format!("{scheme}://{}:{REST_PORT}{path}", node_ip(id))
    }

    /// `PUT /key` on node `id`, and why it did not succeed if it did not. The value is any
    /// bytes, as the REST API takes.
    pub async fn put(&self, id: u64, key: &str, value: &[u8]) -> (Outcome, Option<Why>) {
        let request = self
            .client
            .put(Http::url(id, &format!("/{key}")))
            .body(value.to_vec());
        match request.send().await {
            Ok(response) => put_answer(key, response).await,
            Err(e) => unsent(&e),
        }
    }

    /// `GET /key` on node `id`, and why it did not succeed if it did not: linearizable, or
    /// with `stale` the node's local read (`?stale`, which may lag: only the checker's own
    /// test uses it, to see it caught).
    pub async fn get(&self, id: u64, key: &str, stale: bool) -> (Outcome, Option<Why>) {
        let query = if stale { "?stale" } else { "" };
        let url = Http::url(id, &format!("/{key}{query}"));
        match self.client.get(url).send().await {
            Ok(response) => get_answer(key, response).await,
            Err(e) => unsent(&e),
        }
    }

    /// `GET /-/status` on node `id`, parsed.
    pub async fn status(&self, id: u64) -> Option<serde_json::Value> {
        let response = self
            .client
            .get(Http::url(id, "/-/status"))
            .timeout(Duration::from_secs(1))
            .send()
            .await
            .ok()?;
        if !response.status().is_success() {
            return None;
        }
        serde_json::from_str(&response.text().await.ok()?).ok()
    }

    /// Whether node `id` answers `GET /-/ready` with 200.
    pub async fn ready(&self, id: u64) -> bool {
        let response = self
            .client
            .get(Http::url(id, "/-/ready"))
            .timeout(Duration::from_secs(1))
            .send()
            .await;
        matches!(response, Ok(r) if r.status().is_success())
    }

    /// `POST /<member>` (with its URL) or `DELETE /<member>`, sent to node `via`.
    pub async fn change_member(&self, via: u64, member: u64, add_url: Option<&str>) -> Answer {
        let url = Http::url(via, &format!("/{member}"));
        let request = match add_url {
            Some(peer_url) => self.client.post(url).body(peer_url.to_owned()),
            None => self.client.delete(url),
        };
        match request.send().await {
            Ok(response) => {
                let status = response.status().as_u16();
                Answer::Status(status, response.text().await.unwrap_or_default())
            }
            Err(e) => Answer::NoAnswer(e.to_string()),
        }
    }
}

/// A request that got no answer: refused (never sent, so a definite failure), timed out or
/// cut (unknown).
fn unsent(e: &reqwest::Error) -> (Outcome, Option<Why>) {
    let why = Why::of_error(e);
    let outcome = match why {
        Why::Refused(_) => Outcome::Failed,
        _ => Outcome::Unknown,
    };
    (outcome, Some(why))
}

/// What a node's answer to `PUT /key` says of the write.
async fn put_answer(key: &str, response: reqwest::Response) -> (Outcome, Option<Why>) {
    let status = response.status().as_u16();
    let body = match response.text().await {
        Ok(body) => body,
        // A 204 is a success whatever became of its (empty) body.
        Err(_) if status == 204 => return (Outcome::Ok, None),
        // A 503's body says whether the write may still happen; it was lost.
        Err(e) => return (Outcome::Unknown, Some(Why::Cut(error_chain(&e)))),
    };
    let outcome = match status {
        204 => return (Outcome::Ok, None),
        // The node is certain the write did not and will not happen (it never left the
        // node, or every copy of it was overwritten). Only the body's text reaches a client
        // over HTTP; `request::tests::will_not_happen_is_what_the_text_says` holds every such
        // answer's text to `ProposalError::will_not_happen`, which the simulator asks.
        503 if body.contains("will not happen") => Outcome::Failed,
        // A timeout (or any other 503) may still commit.
        503 => Outcome::Unknown,
        // Whatever went wrong in the node, the write may have been proposed.
        _ => {
            let what = format!("PUT {key} answered {status}: {}", first_line(&body));
            return (Outcome::Unknown, Some(Why::Unexpected(what)));
        }
    };
    (outcome, Some(Why::Status(status, first_line(&body))))
}

/// What a node's answer to `GET /key` read. A 200 whose Content-Type does not fit its bytes
/// is not taken as a read: the history keeps it as [`Why::Unexpected`], and the run turns
/// that into a problem ([`unexpected_answers`]) instead of the harness panicking and losing
/// the run's files.
async fn get_answer(key: &str, response: reqwest::Response) -> (Outcome, Option<Why>) {
    let status = response.status().as_u16();
    let content_type = response
        .headers()
        .get(reqwest::header::CONTENT_TYPE)
        .cloned();
    let body = match response.bytes().await {
        Ok(body) => body,
        Err(e) => return (Outcome::Unknown, Some(Why::Cut(error_chain(&e)))),
    };
    if status == 200 {
        let expected = if std::str::from_utf8(&body).is_ok() {
            "text/plain; charset=utf-8"
        } else {
            "application/octet-stream"
        };
        if content_type.as_ref().is_some_and(|c| c == expected) {
            return (Outcome::Value(shown(&body)), None);
        }
        let what = format!(
            "GET {key} read {} as {content_type:?}, not {expected}",
            shown(&body)
        );
        return (Outcome::Failed, Some(Why::Unexpected(what)));
    }
    let body = String::from_utf8_lossy(&body);
    match status {
        404 => (Outcome::NotFound, None),
        // A read changes nothing: any refusal is a definite failure.
        503 => (
            Outcome::Failed,
            Some(Why::Status(status, first_line(&body))),
        ),
        _ => {
            let what = format!("GET {key} answered {status}: {}", first_line(&body));
            (Outcome::Failed, Some(Why::Unexpected(what)))
        }
    }
}

/// The problem a run reports when any of `history`'s answers was one the REST API never
/// gives ([`Why::Unexpected`]): how many, and the first three; `None` when there was none.
/// Any such answer fails the run, wherever it came from: a client, the stale probe, the final
/// reads.
pub fn unexpected_answers(history: &[Recorded]) -> Option<String> {
    let odd: Vec<String> = history
        .iter()
        .filter_map(|r| match &r.why {
            Some(Why::Unexpected(what)) => Some(format!("node {}: {what}", r.node)),
            _ => None,
        })
        .collect();
    if odd.is_empty() {
        return None;
    }
    let first: Vec<&str> = odd.iter().take(3).map(String::as_str).collect();
    Some(format!(
        "answers the REST API never gives: {} in all; {}",
        odd.len(),
        first.join("; ")
    ))
}

/// A value as the history shows it: escaped, so that values of any bytes compare as the bytes
/// do (ASCII text is shown as it is, but for `\\`, quotes and control characters).
pub fn shown(value: &[u8]) -> String {
    value.escape_ascii().to_string()
}

/// Client `client`'s `seq`th value: unique (`c<client>-<seq>`), and every third one followed by
/// bytes that are not UTF-8 (a byte that never starts a character, a NUL, a character cut
/// short), so the history covers values of any bytes through every fault, the log, snapshots
/// and restarts. Drawn from no random number: the schedules are what they were.
fn client_value(client: usize, seq: u64) -> Vec<u8> {
    let mut value = format!("c{client}-{seq}").into_bytes();
    if seq.is_multiple_of(3) {
        value.extend_from_slice(b"\xff\x00\xe2\x82");
    }
    value
}

/// The first line of an answer's body, trimmed (the nodes' errors are one line).
fn first_line(body: &str) -> String {
    body.lines().next().unwrap_or_default().trim().to_string()
}

/// The shared clock and the list the clients record into.
#[derive(Clone)]
pub struct Recorder {
    /// Time zero of the run: all times are nanoseconds since it, on one clock.
    pub epoch: Instant,
    ops: Arc<Mutex<Vec<Recorded>>>,
}

impl Recorder {
    /// A recorder whose clock starts now.
    pub fn new() -> Recorder {
        Recorder {
            epoch: Instant::now(),
            ops: Arc::default(),
        }
    }

    /// Nanoseconds since the epoch.
    pub fn now_ns(&self) -> u64 {
        u64::try_from(self.epoch.elapsed().as_nanos()).expect("a run lasts less than 584 years")
    }

    /// Records one finished operation.
    pub fn push(&self, recorded: Recorded) {
        self.ops
            .lock()
            .expect("a client panicked while recording")
            .push(recorded);
    }

    /// Everything recorded so far, in completion order.
    pub fn history(&self) -> Vec<Recorded> {
        self.ops
            .lock()
            .expect("a client panicked while recording")
            .clone()
    }
}

/// The load: how many clients, on which keys and nodes.
#[derive(Clone, Debug)]
pub struct Workload {
    /// Concurrent clients.
    pub clients: usize,
    /// The keys (few, so operations on one key overlap).
    pub keys: Vec<String>,
    /// The nodes the clients pick from.
    pub nodes: Vec<u64>,
    /// Chance that an operation is a PUT.
    pub put_ratio: f64,
    /// GETs with `?stale`: not linearizable, for showing that the checker catches it.
    pub stale_reads: bool,
    /// Pause between two operations of a client, at most (drawn uniformly): keeps the history
    /// small enough to check and leaves the two cores some air.
    pub max_think: Duration,
}

/// Client `client`'s loop: random PUTs and GETs on random keys and nodes until `stop` fires.
/// PUT values are unique ([`client_value`]), so a read names the write it saw.
pub async fn run_client(
    client: usize,
    seed: u64,
    workload: Arc<Workload>,
    http: Http,
    recorder: Recorder,
    stop: tokio_util::sync::CancellationToken,
) {
    let mut rng = StdRng::seed_from_u64(seed ^ (client as u64).wrapping_mul(0x9e37_79b9_7f4a_7c15));
    let mut seq = 0u64;
    while !stop.is_cancelled() {
        let key = workload.keys[rng.random_range(0..workload.keys.len())].clone();
        let node = workload.nodes[rng.random_range(0..workload.nodes.len())];
        let is_put = rng.random_bool(workload.put_ratio);
        let invoke_ns = recorder.now_ns();
        let (kind, (outcome, why)) = if is_put {
            seq += 1;
            let value = client_value(client, seq);
            let answer = http.put(node, &key, &value).await;
            (
                OpKind::Put {
                    value: shown(&value),
                },
                answer,
            )
        } else {
            (
                OpKind::Get,
                http.get(node, &key, workload.stale_reads).await,
            )
        };
        let complete_ns = recorder.now_ns();
        recorder.push(Recorded {
            node,
            why,
            op: Operation {
                client,
                key,
                kind,
                invoke_ns,
                complete_ns,
                outcome,
            },
        });
        let think = rng.random_range(Duration::ZERO..=workload.max_think);
        tokio::select! {
            _ = stop.cancelled() => {}
            _ = tokio::time::sleep(think) => {}
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A node's answer as reqwest hands it over: `status`, a Content-Type if any, `body`.
    fn answer(status: u16, content_type: Option<&str>, body: &[u8]) -> reqwest::Response {
        let mut builder = axum::http::Response::builder().status(status);
        if let Some(content_type) = content_type {
            builder = builder.header(reqwest::header::CONTENT_TYPE, content_type);
        }
        reqwest::Response::from(
            builder
                .body(body.to_vec())
                .expect("a status and a header that parse"),
        )
    }

    fn recorded(node: u64, (outcome, why): (Outcome, Option<Why>)) -> Recorded {
        Recorded {
            node,
            why,
            op: Operation {
                client: 0,
                key: "k0".into(),
                kind: OpKind::Get,
                invoke_ns: 1_000,
                complete_ns: 2_000,
                outcome,
            },
        }
    }

    /// A GET whose Content-Type does not fit its bytes, and a GET or PUT answered with a status
    /// the REST API never sends it, come back as `Why::Unexpected` (the harness used to panic
    /// on them, in its own final reads too, and lost the run's history); the history holding
    /// them gives the run a problem naming each, and one without them none.
    #[tokio::test]
    async fn an_answer_the_api_never_gives_is_recorded_for_the_run_to_report() {
        let binary = b"c0-3\xff\x00\xe2\x82";
        let as_text = get_answer("k0", answer(200, Some("text/plain; charset=utf-8"), binary));
        let (outcome, why) = as_text.await;
        assert_eq!(outcome, Outcome::Failed, "not taken as a read");
        let Some(Why::Unexpected(what)) = &why else {
            panic!("a mismatch is Unexpected: {why:?}");
        };
        assert!(
            what.contains(r"c0-3\xff\x00\xe2\x82") && what.contains("not application/octet-stream"),
            "{what}"
        );
        let untyped = get_answer("k0", answer(200, None, b"c0-1")).await;
        assert!(matches!(untyped.1, Some(Why::Unexpected(_))), "{untyped:?}");
        let server_error = get_answer("k1", answer(500, None, b"boom\nmore")).await;
        assert_eq!(
            server_error,
            (
                Outcome::Failed,
                Some(Why::Unexpected("GET k1 answered 500: boom".into()))
            )
        );
        let put = put_answer("k2", answer(400, None, b"bad request")).await;
        assert_eq!(
            put,
            (
                Outcome::Unknown,
                Some(Why::Unexpected("PUT k2 answered 400: bad request".into()))
            ),
            "the write may have been proposed"
        );

        // The answers the API does give are what they were.
        let octets = Some("application/octet-stream");
        let fine = [
            get_answer("k0", answer(200, octets, binary)).await,
            get_answer(
                "k0",
                answer(200, Some("text/plain; charset=utf-8"), b"c0-1"),
            )
            .await,
            get_answer("k0", answer(404, None, b"")).await,
            put_answer("k0", answer(204, None, b"")).await,
        ];
        assert_eq!(
            fine.clone().map(|(outcome, _)| outcome),
            [
                Outcome::Value(shown(binary)),
                Outcome::Value("c0-1".into()),
                Outcome::NotFound,
                Outcome::Ok
            ]
        );
        let mut history: Vec<Recorded> = fine.into_iter().map(|a| recorded(1, a)).collect();
        assert_eq!(unexpected_answers(&history), None);

        history.push(recorded(2, (outcome, why)));
        history.push(recorded(3, server_error));
        let problem = unexpected_answers(&history).expect("a problem for the run");
        assert!(problem.contains("2 in all"), "{problem}");
        assert!(problem.contains("node 2: GET k0 read"), "{problem}");
        assert!(problem.contains("node 3: GET k1 answered 500"), "{problem}");
    }
}
