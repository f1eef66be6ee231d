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
//! sent whenever it changes, checked every [`STATUS_EVERY`]), `ready` and `light_ready` (each
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
use tokio_util::sync::CancellationToken;

use crate::events::{CAPACITY, Events, Received, Subscription};
use crate::http_api::ApiError;
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
        }
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

/// Any other method: the 405 of the node's other endpoints (a reason, `Allow: GET`), not
/// axum's bare one.
async fn only_get(method: axum::http::Method) -> ApiError {
    ApiError::MethodNotAllowed(method, &["GET"])
}

async fn page() -> impl IntoResponse {
    Html(PAGE)
}

async fn stream(
    State(ui): State<Arc<Ui>>,
) -> Sse<impl Stream<Item = Result<SseEvent, Infallible>>> {
    let mut ticker = tokio::time::interval(STATUS_EVERY);
    ticker.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    let feed = Feed {
        sub: ui.events.subscribe(),
        ticker,
        last_status: String::new(),
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
    ticker: tokio::time::Interval,
    /// The last `status` sent: only changes are sent.
    last_status: String,
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
                _ = self.ticker.tick() => {
                    if let Some(event) = self.status_event().await {
                        return Some(event);
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

    /// A `status` event if the status changed since the last one.
    async fn status_event(&mut self) -> Option<SseEvent> {
        // A node too busy to answer in time is simply asked again at the next tick.
        let status = self.ui.node.status().await.ok()?;
        let event = StatusEvent {
            rest_urls: self.ui.directory.rest_urls(&status.members),
            status: &status,
            watchers: self.ui.events.watchers(),
        };
        let text = serde_json::to_string(&event).ok()?;
        if text == self.last_status {
            return None;
        }
        self.last_status = text.clone();
        Some(SseEvent::default().event("status").data(text))
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
