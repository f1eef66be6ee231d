//! The live page of the cluster, `GET /-/ui` on every node's REST port, and the event stream
//! it reads, `GET /-/events` (server-sent events).
//!
//! The page is one HTML file compiled into the binary (`page.html`: no build step, nothing
//! fetched from elsewhere). It opens the stream of the node that served it, learns the members
//! and their REST URLs from that node's `status` events, and opens every member's stream, so
//! it shows the whole cluster from any node; a member whose stream breaks is shown down until
//! it answers again. Its actions (put, get, add or remove a member) are the REST API's own
//! calls, sent to the member the user picks; [`cors`] lets them cross between the members'
//! ports.
//!
//! A stream sends, in this order and then as things happen (the README documents each):
//! `hello` (who this node is), `status` (this node's `/-/status` plus the members' REST URLs,
//! sent whenever it changes, checked every [`STATUS_EVERY`] by one poll that every stream of
//! the node shares), `ready` and `light_ready` (each
//! `Ready` the node handles, [`crate::events`]), and `lagged` when the page fell behind and
//! events were dropped. A stream ends when its node starts to stop.

pub mod cors;
pub mod directory;

use std::convert::Infallible;
use std::sync::Arc;
use std::time::Duration;

use axum::Router;
use axum::extract::State;
use axum::response::sse::{Event as SseEvent, KeepAlive, Sse};
use axum::response::{Html, IntoResponse};
use axum::routing::get;
use futures_util::Stream;
use serde::Serialize;
use tokio::sync::watch;
use tokio_util::sync::CancellationToken;

use crate::events::{CAPACITY, Events, Received, Subscription};
use crate::http_api::{ApiError, ENDPOINT_METHODS};
use crate::raft_node::{NodeHandle, NodeStatus};
use directory::{Directory, REST_URL_PATH};

pub use directory::advertised_rest_url;

/// The page.
const PAGE: &str = include_str!("page.html");
/// How often a stream checks its node's status for changes.
pub const STATUS_EVERY: Duration = Duration::from_millis(250);
/// How long the browser waits before reconnecting a broken stream.
const RETRY: Duration = Duration::from_secs(1);
/// A comment line this often keeps idle connections (and proxies) from timing out.
const KEEP_ALIVE: Duration = Duration::from_secs(5);

/// The page, the event stream, and what they need.
#[derive(Clone)]
pub struct Ui {
    node: NodeHandle,
    events: Events,
    directory: Arc<Directory>,
    peer_url: String,
    /// Cancelled when the node starts to stop: every stream ends then, so that open pages do
    /// not hold up the REST server's graceful stop.
    stopping: CancellationToken,
    poll: Arc<StatusPoll>,
}

/// The node's status, asked for once per [`STATUS_EVERY`] while any page watches, however
/// many do: each ask is a request to the raft thread, which describes the log's last entries
/// for it. Asked by every stream, 60 streams (or one, with values of tens of MiB) kept the raft
/// thread busy with them alone (found by a review).
struct StatusPoll {
    /// The latest `status` event's text; empty until the first answer.
    latest: watch::Sender<Arc<str>>,
    /// Whether the poll runs. The poll clears it itself, under this lock, when it finds no
    /// page watching; a stream sets it (and starts the poll) under it once subscribed, so one
    /// of the two always sees the other.
    running: std::sync::Mutex<bool>,
}

impl Ui {
    /// The page of node `node`, whose REST API is at `rest_url` and peer port at `peer_url`;
    /// `cluster` is the `--cluster` list, `peer_tls` what the node presents and trusts on
    /// peer ports (it asks them for their REST URLs).
    pub fn new(
        node: NodeHandle,
        events: Events,
        rest_url: String,
        peer_url: String,
        cluster: &[String],
        peer_tls: Option<rustls::ClientConfig>,
        stopping: CancellationToken,
    ) -> Ui {
        let directory = Directory::new(node.id, rest_url, cluster, peer_tls);
        Ui {
            node,
            events,
            directory,
            peer_url,
            stopping,
            poll: Arc::new(StatusPoll {
                latest: watch::Sender::new(Arc::from("")),
                running: std::sync::Mutex::new(false),
            }),
        }
    }

    /// Starts the status poll unless it runs; after the caller has subscribed to the events.
    fn ensure_status_poll(self: &Arc<Self>) {
        // A plain flag: what a panicking holder left is still usable.
        let mut running = self.poll.running.lock().unwrap_or_else(|p| p.into_inner());
        if !*running {
            *running = true;
            tokio::spawn(poll_status(self.clone()));
        }
    }

    /// A `status` event's text: the node's status and the members' REST URLs.
    async fn status_text(&self) -> Option<String> {
        // A node too busy to answer in time is simply asked again at the next tick.
        let status = self.node.status().await.ok()?;
        let event = StatusEvent {
            rest_urls: self.directory.rest_urls(&status.members),
            status: &status,
            watchers: self.events.watchers(),
        };
        serde_json::to_string(&event).ok()
    }

    /// `rest` with the page and the stream added, and cross-origin calls from the cluster's
    /// pages allowed ([`cors`]).
    pub fn around(&self, rest: Router) -> Router {
        // Shared behind one `Arc`: axum clones a layer's state for every request, the REST
        // API's too, and a clone of this one (a handle, a token whose clone takes a lock, a
        // string) cost a twentieth of a stale GET's CPU.
        let ui = Arc::new(self.clone());
        Router::new()
            .route("/-/ui", get(page).fallback(only_get))
            .route("/-/events", get(stream).fallback(only_get))
            .with_state(ui.clone())
            .merge(rest)
            .layer(axum::middleware::from_fn_with_state(ui, cors::layer))
    }

    /// The route other nodes ask this node's REST URL at, for the peer port.
    pub fn peer_routes(&self) -> Router {
        let url = self.directory.own_rest_url().to_string();
        Router::new().route(
            REST_URL_PATH,
            get(move || std::future::ready(url.clone() + "\n")),
        )
    }
}

/// Asks the node's status every [`STATUS_EVERY`] and publishes it when it changed, while a
/// page watches.
async fn poll_status(ui: Arc<Ui>) {
    let mut ticker = tokio::time::interval(STATUS_EVERY);
    ticker.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        tokio::select! {
            biased;
            _ = ui.stopping.cancelled() => return,
            _ = ticker.tick() => {}
        }
        {
            let mut running = ui.poll.running.lock().unwrap_or_else(|p| p.into_inner());
            if ui.events.watchers() == 0 {
                // Forgotten: a page that comes back later must get the status as it is then,
                // not this one (which would turn what it has since seen into ghosts).
                ui.poll.latest.send_replace(Arc::from(""));
                *running = false;
                return;
            }
        }
        if let Some(text) = ui.status_text().await {
            ui.poll.latest.send_if_modified(|latest| {
                let changed = **latest != *text;
                if changed {
                    *latest = Arc::from(text);
                }
                changed
            });
        }
    }
}

/// Any other method than GET (and HEAD, which axum answers with GET's route): the 405 of the
/// node's other endpoints (a reason, `Allow: GET` and `Allow: HEAD`), not axum's bare one.
async fn only_get(method: axum::http::Method) -> ApiError {
    ApiError::MethodNotAllowed(method, ENDPOINT_METHODS)
}

async fn page() -> impl IntoResponse {
    Html(PAGE)
}

async fn stream(
    State(ui): State<Arc<Ui>>,
) -> Sse<impl Stream<Item = Result<SseEvent, Infallible>>> {
    let sub = ui.events.subscribe();
    ui.ensure_status_poll();
    let mut status = ui.poll.latest.subscribe();
    // The latest status is this page's first, once there is one.
    status.mark_changed();
    let feed = Feed {
        sub,
        status,
        said_hello: false,
        ui,
    };
    let events = futures_util::stream::unfold(feed, |mut feed| async move {
        let event = feed.next().await?;
        Some((Ok(event), feed))
    });
    Sse::new(events).keep_alive(KeepAlive::new().interval(KEEP_ALIVE))
}

/// The first event of a stream.
#[derive(Serialize)]
struct Hello<'a> {
    id: u64,
    rest_url: &'a str,
    peer_url: &'a str,
    /// Events the node keeps for a slow page before it drops the oldest.
    capacity: usize,
    status_every_ms: u64,
}

/// A `status` event: `/-/status` and the members' REST URLs.
#[derive(Serialize)]
struct StatusEvent<'a> {
    #[serde(flatten)]
    status: &'a NodeStatus,
    /// Member id → REST URL, for the members whose URL this node has learned.
    rest_urls: std::collections::BTreeMap<u64, String>,
    /// Pages watching this node now.
    watchers: usize,
}

/// One page's stream.
struct Feed {
    ui: Arc<Ui>,
    sub: Subscription,
    /// The node's status poll: each change is sent.
    status: watch::Receiver<Arc<str>>,
    said_hello: bool,
}

impl Feed {
    /// The next event to send; `None` ends the stream.
    async fn next(&mut self) -> Option<SseEvent> {
        if !self.said_hello {
            self.said_hello = true;
            return Some(
                json_event(
                    "hello",
                    &Hello {
                        id: self.ui.node.id,
                        rest_url: self.ui.directory.own_rest_url(),
                        peer_url: &self.ui.peer_url,
                        capacity: CAPACITY,
                        status_every_ms: STATUS_EVERY.as_millis() as u64,
                    },
                )
                .retry(RETRY),
            );
        }
        loop {
            tokio::select! {
                // The status first: under load, Readys come faster than a page reads them.
                biased;
                _ = self.ui.stopping.cancelled() => return None,
                changed = self.status.changed() => {
                    // The sender lives as long as the node's page.
                    changed.ok()?;
                    let text = self.status.borrow_and_update().clone();
                    if !text.is_empty() {
                        return Some(SseEvent::default().event("status").data(&*text));
                    }
                }
                received = self.sub.recv() => return match received {
                    Received::Event(event) => Some(json_event(event.name(), &*event)),
                    Received::Lagged(missed) => {
                        Some(json_event("lagged", &serde_json::json!({ "missed": missed })))
                    }
                    Received::Closed => None,
                },
            }
        }
    }
}

fn json_event<T: Serialize>(name: &str, data: &T) -> SseEvent {
    let event = SseEvent::default().event(name);
    match serde_json::to_string(data) {
        Ok(text) => event.data(text),
        // Our own plain structs always serialize; say so in the stream if one ever did not.
        Err(err) => event.data(serde_json::json!({ "error": err.to_string() }).to_string()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::kvstore::KvStore;
    use crate::metrics::Metrics;
    use crate::request::{NodeStatus, Request, Sent, Shared};
    use http_body_util::BodyExt;
    use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
    use tokio::sync::mpsc;

    fn status(term: u64) -> NodeStatus {
        NodeStatus {
            id: 1,
            role: "Leader".into(),
            leader: 1,
            term,
            vote: 1,
            commit: 3,
            applied: 3,
            snapshot_index: 0,
            first_index: 1,
            last_index: 3,
            commit_at_start: 0,
            wal_bytes: 0,
            sessions: (0, 0),
            incarnation: "not-yet".into(),
            build: crate::version::BUILD,
            members: Vec::new(),
            progress: None,
            transferring_to: None,
            log_tail: Vec::new(),
        }
    }

    /// A node's page and stream, the node faked: it answers each status request with the
    /// term in `term`, counting the requests in `asked`.
    struct Fake {
        router: Router,
        asked: Arc<AtomicUsize>,
        term: Arc<AtomicU64>,
        stopping: CancellationToken,
    }

    impl Fake {
        fn new() -> Fake {
            let (inbox, mut requests) = mpsc::channel::<Sent>(64);
            let asked = Arc::new(AtomicUsize::new(0));
            let term = Arc::new(AtomicU64::new(2));
            let (counted, answered) = (asked.clone(), term.clone());
            tokio::spawn(async move {
                while let Some(sent) = requests.recv().await {
                    if let Request::Status(reply) = sent.request {
                        counted.fetch_add(1, Ordering::SeqCst);
                        let _ = reply.send(status(answered.load(Ordering::SeqCst)));
                    }
                }
            });
            let node = NodeHandle::new(
                1,
                inbox,
                KvStore::default(),
                Duration::from_secs(5),
                Arc::new(Shared::default()),
                Arc::new(Metrics::new(1)),
            );
            let stopping = CancellationToken::new();
            let ui = Ui::new(
                node,
                Events::new(crate::describe::entry_text),
                "http://127.0.0.1:12380".into(),
                "http://127.0.0.1:12379".into(),
                &["http://127.0.0.1:12379".to_string()],
                None,
                stopping.clone(),
            );
            Fake {
                router: ui.around(Router::new()),
                asked,
                term,
                stopping,
            }
        }

        /// A page's stream.
        async fn open(&self) -> axum::body::Body {
            let request = axum::http::Request::builder()
                .uri("/-/events")
                .body(axum::body::Body::empty())
                .expect("a well-formed request");
            let answer = tower::ServiceExt::oneshot(self.router.clone(), request)
                .await
                .expect("the router always answers");
            assert_eq!(answer.status(), 200);
            answer.into_body()
        }
    }

    /// The data of the first `status` event on `body`.
    async fn first_status(body: &mut axum::body::Body) -> serde_json::Value {
        while let Some(Ok(frame)) = body.frame().await {
            let Ok(data) = frame.into_data() else {
                continue;
            };
            let text = String::from_utf8_lossy(&data).into_owned();
            if let Some(event) = text.split("event: status\n").nth(1) {
                let json = event
                    .trim_start_matches("data: ")
                    .lines()
                    .next()
                    .unwrap_or("");
                return serde_json::from_str(json).expect("a status event's data is JSON");
            }
        }
        panic!("the stream ended before a status");
    }

    /// However many pages watch a node, its raft thread is asked for the status once per
    /// tick: each ask describes the log's last entries there, and asked by every stream, a few
    /// dozen pages kept it busy (found by a review). Each page still gets the status.
    #[tokio::test(start_paused = true)]
    async fn many_pages_share_one_status_poll() {
        let fake = Fake::new();
        const PAGES: usize = 20;
        let mut pages = Vec::new();
        for _ in 0..PAGES {
            let mut body = fake.open().await;
            // Read as a browser does, counting the page's `status` events.
            pages.push(tokio::spawn(async move {
                let mut statuses = 0;
                while let Some(Ok(frame)) = body.frame().await {
                    if let Ok(data) = frame.into_data() {
                        statuses += String::from_utf8_lossy(&data)
                            .matches("event: status")
                            .count();
                    }
                }
                statuses
            }));
        }
        tokio::time::sleep(Duration::from_secs(1)).await;
        fake.stopping.cancel();
        for page in pages {
            let statuses = page.await.expect("the page's reader");
            assert_eq!(
                statuses, 1,
                "each page gets the status (once: it did not change)"
            );
        }
        let asked = fake.asked.load(Ordering::SeqCst);
        assert!(asked <= 6, "{asked} asks in a second for {PAGES} pages");
    }

    /// A page that comes back after every page had gone gets the status as it is then, not
    /// the last one the poll saw before it stopped (found by a review: the page took the old
    /// one's log for the truth, and drew what it had seen since as overwritten).
    #[tokio::test(start_paused = true)]
    async fn a_page_that_comes_back_gets_the_status_of_now() {
        let fake = Fake::new();
        let mut page = fake.open().await;
        assert_eq!(first_status(&mut page).await["term"], 2);
        drop(page);
        tokio::time::sleep(STATUS_EVERY * 2).await;
        fake.term.store(3, Ordering::SeqCst);
        let mut page = fake.open().await;
        assert_eq!(first_status(&mut page).await["term"], 3);
        fake.stopping.cancel();
    }
}
