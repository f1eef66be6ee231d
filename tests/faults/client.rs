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
        let (status, body) = match request.send().await {
            Ok(response) => {
                let status = response.status().as_u16();
                match response.text().await {
                    Ok(body) => (status, body),
                    // A 204 is a success whatever became of its (empty) body.
                    Err(_) if status == 204 => return (Outcome::Ok, None),
                    // A 503's body says whether the write may still happen; it was lost.
                    Err(e) => return (Outcome::Unknown, Some(Why::Cut(error_chain(&e)))),
                }
            }
            Err(e) => {
                let why = Why::of_error(&e);
                // Refused: the connection was never made, so the request was never sent.
                let outcome = match why {
                    Why::Refused(_) => Outcome::Failed,
                    _ => Outcome::Unknown,
                };
                return (outcome, Some(why));
            }
        };
        let outcome = match status {
            204 => return (Outcome::Ok, None),
            // The node is certain the write did not and will not happen (it never left the
            // node, or every copy of it was overwritten).
            503 if body.contains("will not happen") => Outcome::Failed,
            // A timeout (or any other 503) may still commit.
            503 => Outcome::Unknown,
            _ => panic!("PUT on node {id} answered {status}: {body}"),
        };
        (outcome, Some(Why::Status(status, first_line(&body))))
    }

    /// `GET /key` on node `id`, and why it did not succeed if it did not: linearizable, or
    /// with `stale` the node's local read (`?stale`, which may lag: only the checker's own
    /// test uses it, to see it caught).
    pub async fn get(&self, id: u64, key: &str, stale: bool) -> (Outcome, Option<Why>) {
        let query = if stale { "?stale" } else { "" };
        let url = Http::url(id, &format!("/{key}{query}"));
        match self.client.get(url).send().await {
            Ok(response) => {
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
                    let text = std::str::from_utf8(&body).is_ok();
                    let expected = if text {
                        "text/plain; charset=utf-8"
                    } else {
                        "application/octet-stream"
                    };
                    assert!(
                        content_type.as_ref().is_some_and(|c| c == expected),
                        "GET {key} on node {id} read {} as {content_type:?}, not {expected}",
                        shown(&body)
                    );
                    return (Outcome::Value(shown(&body)), None);
                }
                let body = String::from_utf8_lossy(&body);
                match status {
                    404 => (Outcome::NotFound, None),
                    // A read changes nothing: any refusal is a definite failure.
                    503 => (
                        Outcome::Failed,
                        Some(Why::Status(status, first_line(&body))),
                    ),
                    _ => panic!("GET on node {id} answered {status}: {body}"),
                }
            }
            Err(e) => {
                let why = Why::of_error(&e);
                let outcome = match why {
                    Why::Refused(_) => Outcome::Failed,
                    _ => Outcome::Unknown,
                };
                (outcome, Some(why))
            }
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
