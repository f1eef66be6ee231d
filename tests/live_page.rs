//! The live page: its event stream read as a program would (`GET /-/events`, server-sent
//! events), the cross-origin rules its calls rely on, and the page itself in a real browser:
//! headless Chromium from Debian's packages, driven through chromedriver (WebDriver) by
//! fantoccini, against three `raftexample` processes. Screenshots of each step of the browser
//! test are kept in `target/live-page/`.
//!
//! fantoccini rather than a DevTools-protocol crate: WebDriver is a W3C standard that Debian's
//! chromium-driver speaks at exactly the browser's version, and the crate is small, async on
//! tokio like the rest of the tests, and needs no TLS to talk to a local driver.

mod common;

use std::os::unix::process::CommandExt;
use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use common::{ProcCluster, free_ports, wait_for};
use protobuf::Message as _;
use raft::eraftpb::{ConfChangeSingle, ConfChangeType, ConfChangeV2, Entry, EntryType};
use raftexample::describe;
use raftexample::kvstore;
use raftexample::proposal::{self, ProposalId};
use serde_json::{Value, json};

// ---- the event stream, without a browser ----------------------------------------------------

/// Reads a server-sent-event stream: one `(event name, JSON data)` at a time.
struct EventStream {
    response: reqwest::Response,
    buf: String,
}

impl EventStream {
    async fn open(url: &str) -> EventStream {
        let response = reqwest::Client::new()
            .get(format!("{url}/-/events"))
            .send()
            .await
            .expect("the event stream answers");
        assert_eq!(response.status(), 200);
        assert_eq!(
            response.headers()["content-type"],
            "text/event-stream",
            "an event stream"
        );
        EventStream {
            response,
            buf: String::new(),
        }
    }

    /// The next event with a name (comments, the keep-alives, are skipped).
    async fn next(&mut self) -> (String, Value) {
        loop {
            if let Some(end) = self.buf.find("\n\n") {
                let block: String = self.buf.drain(..end + 2).collect();
                let (mut name, mut data) = (None, String::new());
                for line in block.lines() {
                    if let Some(v) = line.strip_prefix("event: ") {
                        name = Some(v.to_string());
                    } else if let Some(v) = line.strip_prefix("data: ") {
                        data.push_str(v);
                    }
                }
                if let Some(name) = name {
                    let value = serde_json::from_str(&data)
                        .unwrap_or_else(|e| panic!("event {name} carries JSON: {e}: {data}"));
                    return (name, value);
                }
                continue;
            }
            let chunk = self
                .response
                .chunk()
                .await
                .expect("reading the stream")
                .expect("the stream stays open");
            self.buf
                .push_str(std::str::from_utf8(&chunk).expect("the stream is UTF-8"));
        }
    }

    /// Reads events until `found` picks one, within `timeout`.
    async fn find<T>(
        &mut self,
        timeout: Duration,
        what: &str,
        mut found: impl FnMut(&str, &Value) -> Option<T>,
    ) -> T {
        let deadline = Instant::now() + timeout;
        loop {
            let left = deadline.saturating_duration_since(Instant::now());
            let (name, value) = tokio::time::timeout(left, self.next())
                .await
                .unwrap_or_else(|_| panic!("no {what} within {timeout:?}"));
            if let Some(t) = found(&name, &value) {
                return t;
            }
        }
    }
}

fn rest_url(port: u16) -> String {
    format!("http://127.0.0.1:{port}")
}

/// The stream's format, as the README documents it: `hello` first, then `status` (with every
/// member's REST URL, learned from the members' peer ports, and the log's last entries), and
/// a `ready` event for each Ready: a PUT shows up as a new entry, then as a committed one,
/// with the hard state's commit index and the messages counted by kind.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_event_stream_shows_each_ready() {
    let mut c = ProcCluster::start(3, &[]).await;
    let leader = c.wait_leader().await;
    let follower = (1..=3).find(|id| *id != leader).expect("a follower");
    let url = rest_url(c.rest_ports[follower as usize - 1]);
    let mut stream = EventStream::open(&url).await;

    let (name, hello) = stream.next().await;
    assert_eq!(name, "hello", "the first event: {hello}");
    assert_eq!(hello["id"], follower);
    assert_eq!(hello["rest_url"], url.as_str());
    assert_eq!(hello["peer_url"], c.peers[follower as usize - 1].as_str());
    assert!(hello["capacity"].as_u64().is_some_and(|n| n > 0), "{hello}");

    // Every member's REST URL, asked of its peer port, shows up within a few status events.
    let status = stream
        .find(
            Duration::from_secs(10),
            "a status with every REST URL",
            |name, v| {
                (name == "status" && v["rest_urls"].as_object().is_some_and(|m| m.len() == 3))
                    .then(|| v.clone())
            },
        )
        .await;
    for id in 1..=3u64 {
        assert_eq!(
            status["rest_urls"][id.to_string()],
            rest_url(c.rest_ports[id as usize - 1]).as_str()
        );
    }
    assert_eq!(status["role"], "Follower");
    assert_eq!(status["leader"], leader);
    assert_eq!(status["members"].as_array().map(Vec::len), Some(3));
    assert!(status["watchers"].as_u64() >= Some(1), "{status}");
    let tail = status["log_tail"]
        .as_array()
        .expect("the log's last entries");
    let last = tail.last().expect("a bootstrapped log has entries");
    assert_eq!(last["index"], status["last_index"]);
    assert!(
        tail[0]["text"]
            .as_str()
            .is_some_and(|t| t.contains("conf-change add node 1"))
    );

    // Retried: on a busy machine an election may come in between.
    c.put_ok(leader, "seen-live", "yes").await;
    let appended = stream
        .find(
            Duration::from_secs(10),
            "a Ready appending the PUT",
            |name, v| {
                let listed = v["entries"]["first"].as_array()?;
                (name == "ready" && listed.iter().any(|e| text_has(e, "/seen-live")))
                    .then(|| v.clone())
            },
        )
        .await;
    assert_eq!(appended["node"], follower);
    assert!(appended["must_sync"].as_bool() == Some(true), "{appended}");
    assert!(
        appended["persisted_messages"]["by_kind"]["MsgAppendResponse"].as_u64() >= Some(1),
        "a follower acknowledges after its WAL write: {appended}"
    );
    let entry = appended["entries"]["first"]
        .as_array()
        .and_then(|l| l.iter().find(|e| text_has(e, "/seen-live")).cloned())
        .expect("listed above");
    let committed = stream
        .find(Duration::from_secs(10), "the PUT committed", |name, v| {
            let listed = v["committed"]["first"].as_array()?;
            (matches!(name, "ready" | "light_ready")
                && listed.iter().any(|e| e["index"] == entry["index"]))
            .then(|| v.clone())
        })
        .await;
    if let Some(hs) = committed.get("hard_state") {
        assert!(
            hs["commit"].as_u64() >= entry["index"].as_u64(),
            "{committed}"
        );
    }
}

fn text_has(entry: &Value, needle: &str) -> bool {
    entry["text"].as_str().is_some_and(|t| t.contains(needle))
}

/// Every open stream counts as one watcher, and a closed one stops counting: the node builds
/// events only while the count is above zero.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn closed_streams_stop_counting_as_watchers() {
    let mut c = ProcCluster::start(1, &[]).await;
    c.wait_leader().await;
    let url = rest_url(c.rest_ports[0]);
    let watchers = |n: u64| {
        move |name: &str, v: &Value| (name == "status" && v["watchers"] == n).then_some(())
    };
    let mut first = EventStream::open(&url).await;
    first
        .find(Duration::from_secs(5), "one watcher", watchers(1))
        .await;
    let mut second = EventStream::open(&url).await;
    second
        .find(Duration::from_secs(5), "two watchers", watchers(2))
        .await;
    drop(first);
    second
        .find(Duration::from_secs(5), "one watcher again", watchers(1))
        .await;
}

/// The page is served as HTML by every node, each member's peer port says where its REST API
/// is, and the cross-origin rules hold: the cluster's own pages may call any member (with a
/// preflight for writes), any other origin gets 403 with a reason (another port of a
/// member's host too), a plain `OPTIONS` is still the original's 405, and requests without
/// an `Origin` (curl) are untouched.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_page_and_its_cross_origin_rules() {
    let mut c = ProcCluster::start(2, &[]).await;
    c.wait_leader().await;
    let url = rest_url(c.rest_ports[0]);
    let http = reqwest::Client::new();

    let page = http
        .get(format!("{url}/-/ui"))
        .send()
        .await
        .expect("the page");
    assert_eq!(page.status(), 200);
    assert!(
        page.headers()["content-type"]
            .to_str()
            .is_ok_and(|t| t.starts_with("text/html"))
    );
    let html = page.text().await.expect("the page's text");
    assert!(html.contains("<title>raftexample: live</title>"));
    assert!(
        !html.contains("src=\"http") && !html.contains("href=\"http"),
        "the page loads nothing from elsewhere"
    );

    let rest = http
        .get(format!("{}/-/rest-url", c.peers[0]))
        .send()
        .await
        .expect("the peer port answers");
    assert_eq!(rest.text().await.expect("text").trim(), url);

    // Another member's page, asked for before this node has looked up that member's REST
    // URL (no page has watched its stream), under another loopback name than its own.
    let other = &format!("http://localhost:{}", c.rest_ports[1]);
    let preflight = http
        .request(reqwest::Method::OPTIONS, format!("{url}/k"))
        .header("origin", other)
        .header("access-control-request-method", "PUT")
        .send()
        .await
        .expect("preflight");
    assert_eq!(preflight.status(), 204);
    assert_eq!(preflight.headers()["access-control-allow-origin"], other);
    assert!(
        preflight.headers()["access-control-allow-methods"]
            .to_str()
            .is_ok_and(|m| m.contains("PUT") && m.contains("DELETE"))
    );
    let put = http
        .put(format!("{url}/k"))
        .header("origin", other)
        .body("v")
        .send()
        .await
        .expect("put");
    assert_eq!(put.status(), 204);
    assert_eq!(put.headers()["access-control-allow-origin"], other);

    // Another host, and another program on a member's host (a port no member serves).
    let elsewhere = format!("http://127.0.0.1:{}", free_ports(1)[0]);
    for origin in ["http://evil.example", elsewhere.as_str()] {
        let foreign = http
            .post(format!("{url}/4"))
            .header("origin", origin)
            .body("http://127.0.0.1:1")
            .send()
            .await
            .expect("foreign post");
        assert_eq!(foreign.status(), 403, "{origin}");
        assert!(
            foreign
                .headers()
                .get("access-control-allow-origin")
                .is_none()
        );
        let reason = foreign.text().await.expect("text");
        assert_eq!(reason.lines().count(), 1, "{reason}");
        assert!(reason.contains(origin), "{reason}");
    }
    // A page from elsewhere whose name was pointed at this machine once it had loaded (DNS
    // rebinding): to the node, its requests look same-origin, under a name not the cluster's.
    let port = c.rest_ports[0];
    // A page's PUT of `value` at `key`, to the page's own origin under `host`.
    let same_origin_put = |host: String, key: &str, value: &'static str| {
        http.put(format!("{url}/{key}"))
            .header("host", &host)
            .header("origin", format!("http://{host}"))
            .body(value)
            .send()
    };
    let rebound = format!("http://rebind.example:{port}");
    let put = same_origin_put(format!("rebind.example:{port}"), "k", "rebound")
        .await
        .expect("rebound put");
    assert_eq!(put.status(), 403);
    let reason = put.text().await.expect("text");
    assert_eq!(reason.lines().count(), 1, "{reason}");
    assert!(reason.contains(&rebound), "{reason}");
    let k = http.get(format!("{url}/k")).send().await.expect("get k");
    assert_eq!(
        k.text().await.expect("text"),
        "v",
        "the rebound write took effect"
    );
    assert!(
        reason.contains(&url),
        "it says where to open the page: {reason}"
    );
    // An address no member's URL names (the machine's LAN address, here one of the
    // documentation's) needs no DNS, so no rebinding: the page's writes pass there.
    let put = same_origin_put(format!("192.0.2.5:{port}"), "by-address", "v")
        .await
        .expect("put under an address");
    assert_eq!(put.status(), 204);
    // The page's own writes, under the name it was served at, still pass.
    let own = http
        .put(format!("{url}/own"))
        .header("origin", &url)
        .body("v")
        .send()
        .await
        .expect("same-origin put");
    assert_eq!(own.status(), 204);
    let members = http
        .get(format!("{url}/-/members"))
        .send()
        .await
        .expect("members");
    let members: Value = serde_json::from_str(&members.text().await.expect("text")).expect("JSON");
    assert_eq!(
        members.as_array().map(Vec::len),
        Some(2),
        "nothing was added"
    );

    let options = http
        .request(reqwest::Method::OPTIONS, format!("{url}/k"))
        .send()
        .await
        .expect("options");
    assert_eq!(options.status(), 405);
    assert_eq!(options.headers().get_all("allow").iter().count(), 4);
    // The page, its stream and every other endpoint answer GET and HEAD alone, and say so
    // alike. A HEAD is the GET's status and headers (health checkers ask so; the server sends
    // no body to a HEAD).
    for path in [
        "/-/ui",
        "/-/events",
        "/-/status",
        "/-/health",
        "/-/ready",
        "/-/members",
        "/-/metrics",
    ] {
        let head = http
            .head(format!("{url}{path}"))
            .send()
            .await
            .expect("head");
        assert_eq!(head.status(), 200, "HEAD {path}");
        assert!(head.headers().contains_key("content-type"), "HEAD {path}");
        let put = http
            .put(format!("{url}{path}"))
            .body("v")
            .send()
            .await
            .expect("put");
        assert_eq!(put.status(), 405, "{path}");
        let allow: Vec<_> = put.headers().get_all("allow").iter().collect();
        assert_eq!(allow, ["GET", "HEAD"], "{path}");
        let reason = put.text().await.expect("text");
        assert_eq!(
            reason, "method PUT not allowed; this path takes GET, HEAD\n",
            "{path}"
        );
    }
    let plain = http.get(format!("{url}/k")).send().await.expect("get");
    assert_eq!(plain.status(), 200);
    assert!(plain.headers().get("access-control-allow-origin").is_none());
}

// ---- the page in a browser ------------------------------------------------------------------

/// chromedriver and the WebDriver session. chromedriver runs in a process group of its own,
/// which the Chromium it starts joins: dropping this ends the whole group, so a failed test
/// leaves no browser behind (killing chromedriver alone would orphan Chromium, whose page
/// would keep reconnecting to the nodes' ports).
struct Browser {
    client: Option<fantoccini::Client>,
    driver: Child,
    _profile: tempfile::TempDir,
    shots: PathBuf,
}

impl Browser {
    /// Starts chromedriver and headless Chromium, or says why they cannot run here.
    async fn start() -> Result<Browser, String> {
        let chromium = std::env::var("CHROMIUM").unwrap_or_else(|_| "/usr/bin/chromium".into());
        let chromedriver =
            std::env::var("CHROMEDRIVER").unwrap_or_else(|_| "/usr/bin/chromedriver".into());
        for path in [&chromium, &chromedriver] {
            if !std::path::Path::new(path).exists() {
                return Err(format!(
                    "{path} is missing (apt-get install chromium chromium-driver; .ci/run does)"
                ));
            }
        }
        let port = free_ports(1)[0];
        let driver = Command::new(&chromedriver)
            .arg(format!("--port={port}"))
            .process_group(0)
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .map_err(|e| format!("cannot start {chromedriver}: {e}"))?;
        let profile = tempfile::TempDir::with_prefix("raftexample-chromium-")
            .map_err(|e| format!("no temp dir: {e}"))?;
        let mut browser = Browser {
            client: None,
            driver,
            _profile: profile,
            shots: screenshot_dir(),
        };
        let driver_url = format!("http://127.0.0.1:{port}");
        let http = reqwest::Client::new();
        wait_for(
            Duration::from_secs(20),
            "chromedriver to answer",
            || async {
                let r = http.get(format!("{driver_url}/status")).send().await.ok()?;
                r.status().is_success().then_some(())
            },
        )
        .await;
        // The flags that work on this kind of machine (no sandbox as root, nothing that
        // reaches for the network beyond loopback).
        let args = [
            "--headless",
            "--no-sandbox",
            "--disable-gpu",
            "--disable-quic",
            "--no-first-run",
            "--disable-background-networking",
            "--disable-component-update",
            "--disable-sync",
            "--disable-dev-shm-usage",
            "--window-size=1280,1250",
            &format!("--user-data-dir={}", browser._profile.path().display()),
        ];
        let mut caps = serde_json::Map::new();
        caps.insert(
            "goog:chromeOptions".into(),
            json!({ "binary": chromium, "args": args }),
        );
        let client = fantoccini::ClientBuilder::new(
            hyper_util::client::legacy::connect::HttpConnector::new(),
        )
        .capabilities(caps)
        .connect(&driver_url)
        .await
        .map_err(|e| format!("chromedriver could not start Chromium: {e}"))?;
        browser.client = Some(client);
        Ok(browser)
    }

    /// Ends the session: chromedriver closes Chromium.
    async fn close(mut self) {
        if let Some(client) = self.client.take() {
            client.close().await.expect("closing the browser");
        }
    }

    fn client(&self) -> &fantoccini::Client {
        self.client.as_ref().expect("set in start")
    }

    /// Saves a screenshot as `<step>.png` in the screenshot folder.
    async fn screenshot(&self, step: &str) {
        let png = self.client().screenshot().await.expect("a screenshot");
        let path = self.shots.join(format!("{step}.png"));
        std::fs::write(&path, png).expect("writing the screenshot");
        println!("screenshot: {}", path.display());
    }

    /// Runs `script` in the page; its return value as JSON.
    async fn eval(&self, script: &str, args: Vec<Value>) -> Value {
        self.client()
            .execute(script, args)
            .await
            .unwrap_or_else(|e| panic!("script failed: {e}"))
    }

    /// Waits until `check` finds what it wants in the page's member cards; on a timeout,
    /// saves `failed-<step>.png` and panics with the cards as last seen.
    async fn wait_members<T>(
        &self,
        step: &str,
        timeout: Duration,
        mut check: impl FnMut(&[Card]) -> Option<T>,
    ) -> T {
        let deadline = Instant::now() + timeout;
        loop {
            let cards = self.cards().await;
            if let Some(t) = check(&cards) {
                return t;
            }
            if Instant::now() >= deadline {
                self.screenshot(&format!("failed-{step}")).await;
                panic!("{step}: not seen within {timeout:?}; the page shows {cards:?}");
            }
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    }

    /// Clicks the button `id` of the page's actions; waits for the answer the page shows
    /// for it: its status (or "failed") and its body.
    async fn click_for_answer(&self, id: &str) -> (String, String) {
        let count = "return document.querySelectorAll('#answers li').length;";
        let before = self.eval(count, vec![]).await;
        self.eval(
            "document.getElementById(arguments[0]).click();",
            vec![json!(id)],
        )
        .await;
        let deadline = Instant::now() + Duration::from_secs(20);
        while self.eval(count, vec![]).await == before {
            if Instant::now() >= deadline {
                self.screenshot(&format!("failed-{id}")).await;
                panic!("no answer shown for {id}");
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
        let answer = self
            .eval(
                "const li = document.querySelector('#answers li');
                 return [li.dataset.status, li.querySelector('.body')?.textContent ?? ''];",
                vec![],
            )
            .await;
        serde_json::from_value(answer).expect("status and body")
    }

    /// The member cards as the page shows them.
    async fn cards(&self) -> Vec<Card> {
        let v = self
            .eval(
                "return [...document.querySelectorAll('.member')].map(e => ({
                    id: +e.dataset.id, up: e.dataset.up === 'true', role: e.dataset.role,
                    term: +e.dataset.term, leader: e.dataset.leader === 'true' }));",
                vec![],
            )
            .await;
        serde_json::from_value(v).expect("cards as JSON")
    }
}

impl Drop for Browser {
    fn drop(&mut self) {
        // The group's id is chromedriver's pid (process_group(0)).
        let group = nix::unistd::Pid::from_raw(self.driver.id() as i32);
        let _ = nix::sys::signal::killpg(group, nix::sys::signal::Signal::SIGKILL);
        let _ = self.driver.wait();
    }
}

/// One member card of the page.
#[derive(Debug, serde::Deserialize)]
struct Card {
    id: u64,
    up: bool,
    role: String,
    term: u64,
    leader: bool,
}

fn screenshot_dir() -> PathBuf {
    let target = std::env::var_os("CARGO_TARGET_DIR")
        .map(PathBuf::from)
        .unwrap_or_else(|| PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("target"));
    let dir = target.join("live-page");
    std::fs::create_dir_all(&dir).expect("creating the screenshot folder");
    dir
}

/// The page in headless Chromium, against three real processes: it shows three members and
/// one leader; when the leader is killed it shows that node down and a new leader with a
/// higher term within seconds; the node restarted, the page shows it up again; a key put
/// from the page's form is answered 204 and appears in every node's log strip; the answers
/// of a read and of a refused member removal are shown; an entry that a new leader
/// overwrote is shown under its replacement; a count of 1 is singular; and every kind of
/// entry gets its word in its log box.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_live_page_in_a_browser() {
    let browser = match Browser::start().await {
        Ok(browser) => browser,
        Err(why) => panic!("Chromium cannot run here: {why}"),
    };
    let mut c = ProcCluster::start(3, &[]).await;
    let leader = c.wait_leader().await;
    browser
        .client()
        .goto(&format!("{}/-/ui", c.url(1)))
        .await
        .expect("opening the page");

    // 1. Three members, all up, one leader: the one the nodes agree on.
    let term = browser
        .wait_members("three-members", Duration::from_secs(15), |cards| {
            let leaders: Vec<&Card> = cards.iter().filter(|c| c.leader).collect();
            (cards.len() == 3
                && cards.iter().all(|c| c.up)
                && leaders.len() == 1
                && leaders[0].id == leader
                && leaders[0].role == "Leader")
                .then(|| leaders[0].term)
        })
        .await;
    browser.screenshot("1-three-members").await;

    // 2. Kill the leader: the page shows it down, and a new leader with a higher term.
    let killed_at = Instant::now();
    c.kill(leader);
    let new_leader = browser
        .wait_members("new-leader", Duration::from_secs(15), |cards| {
            let down = cards.iter().any(|c| c.id == leader && !c.up);
            let new = cards
                .iter()
                .find(|c| c.leader && c.up && c.id != leader && c.term > term)?;
            down.then_some(new.id)
        })
        .await;
    println!(
        "the page showed node {leader} down and node {new_leader} leading {:?} after the kill",
        killed_at.elapsed()
    );
    browser.screenshot("2-leader-killed").await;

    // 3. Restart it: the page reconnects to its stream.
    c.spawn(leader, &[]);
    browser
        .wait_members("back-up", Duration::from_secs(20), |cards| {
            (cards.len() == 3 && cards.iter().all(|c| c.up && !c.role.is_empty())).then_some(())
        })
        .await;
    browser.screenshot("3-restarted").await;

    // 4. Put a key from the page's form; the answer is shown, and the entry reaches every
    // node's log strip.
    let key = format!("from-the-page-{}", std::process::id());
    browser
        .eval(
            "document.getElementById('key').value = arguments[0];
             document.getElementById('value').value = 'hello';
             document.getElementById('put').click();",
            vec![json!(key)],
        )
        .await;
    let deadline = Instant::now() + Duration::from_secs(20);
    loop {
        let seen = browser
            .eval(
                "const key = arguments[0];
                 const answer = document.querySelector('#answers li');
                 return {
                   status: answer ? answer.dataset.status : null,
                   strips: [...document.querySelectorAll('[data-strip]')].map(s =>
                     [...s.querySelectorAll('.entry')].some(e => e.dataset.text.includes(key)))
                 };",
                vec![json!(key)],
            )
            .await;
        let strips: Vec<bool> = serde_json::from_value(seen["strips"].clone()).expect("bools");
        if seen["status"] == "204" && strips.len() == 3 && strips.iter().all(|s| *s) {
            break;
        }
        if Instant::now() >= deadline {
            browser.screenshot("failed-put").await;
            panic!("the PUT from the page: {seen}");
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    browser.screenshot("4-put-from-the-page").await;
    assert_eq!(
        c.get(new_leader, &format!("{key}?stale")).await,
        Some((200, "hello".to_string()))
    );

    // 5. The other actions show their answers too, errors included.
    let (status, text) = browser.click_for_answer("get").await;
    assert_eq!((status.as_str(), text.as_str()), ("200", "hello"));
    browser
        .eval("document.getElementById('member-id').value = '9';", vec![])
        .await;
    let (status, text) = browser.click_for_answer("remove").await;
    assert_eq!(status, "404", "{text}");
    assert!(text.contains("node 9 is not a member"), "{text}");
    browser.screenshot("5-answers").await;

    // 6. An overwritten suffix: the leader appends an entry that only it holds (its followers
    // are down), dies, the others elect a new leader whose own entries take that index, and
    // the old leader, restarted, has its entry replaced. The page shows the replaced entry
    // as a ghost under the new one.
    let old_leader = c.wait_leader().await;
    // A node's first write registers its session, which must commit before its requests are
    // proposed: register it while the others are up.
    c.put_ok(old_leader, "session", "registered").await;
    let followers: Vec<u64> = (1..=3).filter(|id| *id != old_leader).collect();
    for id in &followers {
        c.kill(*id);
    }
    let doomed = {
        let http = c.http.clone();
        let url = format!("{}/doomed", c.url(old_leader));
        // Never committed: its answer (a 503 after the proposal timeout) does not matter.
        tokio::spawn(async move { http.put(url).body("lost").send().await })
    };
    let (index, term) = wait_for(
        Duration::from_secs(10),
        "the lone leader to append the entry",
        || async {
            let s = c.status(old_leader).await?;
            let tail = s["log_tail"].as_array()?;
            let e = tail.iter().find(|e| text_has(e, "/doomed"))?;
            Some((e["index"].as_u64()?, e["term"].as_u64()?))
        },
    )
    .await;
    c.kill(old_leader);
    doomed.abort();
    for id in &followers {
        c.spawn(*id, &[]);
    }
    c.wait_leader().await;
    c.spawn(old_leader, &[]);
    let deadline = Instant::now() + Duration::from_secs(20);
    loop {
        let seen = browser
            .eval(
                "const [node, index] = arguments;
                 const boxes = [...document.querySelectorAll(`[data-strip=\"${node}\"] .entry`)]
                   .filter(e => +e.dataset.index === index).map(e => +e.dataset.term);
                 const ghosts = [...document.querySelectorAll(`[data-ghosts=\"${node}\"] .entry`)]
                   .filter(e => +e.dataset.index === index).map(e => +e.dataset.term);
                 return { boxes, ghosts };",
                vec![json!(old_leader), json!(index)],
            )
            .await;
        let terms =
            |k: &str| -> Vec<u64> { serde_json::from_value(seen[k].clone()).expect("terms") };
        if terms("ghosts").contains(&term) && terms("boxes").iter().any(|t| *t > term) {
            break;
        }
        if Instant::now() >= deadline {
            browser.screenshot("failed-overwritten").await;
            panic!(
                "node {old_leader}'s entry {index} (term {term}) is not shown overwritten: {seen}"
            );
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    browser.screenshot("6-overwritten").await;

    // 7. Readys older than the status shown (a status can overtake the Readys queued for the
    // page) draw no ghost and move no number back: fed to the page's own handlers, for a node
    // of its own. They cut the log after each and drew ghosts of entries nobody overwrote.
    let fed = browser
        .eval(
            r#"
            const n = node(9999);
            const tail = [];
            for (let i = 1; i <= 20; i++) tail.push({ index: i, term: 2, text: "put" });
            n.status = { last_index: 20, first_index: 1, commit: 20, applied: 20, term: 2,
                         vote: 1, log_tail: tail, members: [] };
            mergeTail(n, n.status);
            const none = { count: 0, first: [], background: true, by_kind: {} };
            const ready = (from, to) => ({
                number: from, at_ms: Date.now(), entries: { count: to - from + 1,
                first: tail.slice(from - 1, to) }, committed: none, messages: none,
                persisted_messages: none, hard_state: { term: 2, vote: 1, commit: from - 1 },
                must_sync: true, read_states: 0, probe_read_states: 0 });
            onReady(n, ready(11, 15));
            onReady(n, ready(16, 20));
            const out = { ghosts: n.ghosts.length, held: n.log.size,
                          last: n.status.last_index, commit: n.status.commit };
            nodes.delete(9999);
            return out;
            "#,
            vec![],
        )
        .await;
    assert_eq!(
        fed,
        serde_json::json!({ "ghosts": 0, "held": 20, "last": 20, "commit": 20 }),
        "older Readys replayed after the status"
    );

    // 8. A count of 1 is singular, as in the pretty status (review 108: "1 ranges"): a Ready
    // with one read state, and one heartbeat hidden, through the page's own handlers; and one
    // event dropped, as the lagged row and the node's card say it.
    let said = browser
        .eval(
            r#"
            const n = node(9999);
            const none = { count: 0, first: [], background: true, by_kind: {} };
            onReady(n, { number: 77, at_ms: Date.now(), entries: none, committed: none,
                         messages: none, persisted_messages: none, must_sync: false,
                         read_states: 1, probe_read_states: 0 });
            const row = [...document.querySelectorAll('#stream li')]
              .map(li => li.textContent).find(t => t.includes("Ready 77"));
            hiddenHeartbeats = 0;
            document.getElementById("show-heartbeats").checked = false;
            addRow(9999, "Ready 78", [], true);
            const hidden = document.getElementById("hidden-count").textContent;
            nodes.delete(9999);
            return { row, hidden, dropped: count(1, "event"), many: count(2, "event") };
            "#,
            vec![],
        )
        .await;
    let row = said["row"].as_str().unwrap_or_default();
    assert!(row.ends_with("Ready 77 1 read state"), "{said}");
    assert_eq!(
        said["hidden"], "1 heartbeat or ready-probe Ready hidden",
        "{said}"
    );
    assert_eq!(
        (&said["dropped"], &said["many"]),
        (&json!("1 event"), &json!("2 events"))
    );

    // 9. Every kind of entry gets its word in its log box, from the line the node describes
    // it with (review 119 N6: a fence got none).
    let (texts, words): (Vec<String>, Vec<&str>) = entry_kinds().into_iter().unzip();
    let labels = browser
        .eval("return arguments[0].map(kind);", vec![json!(texts)])
        .await;
    assert_eq!(labels, json!(words), "the words for {texts:?}");
    browser.close().await;
}

/// The line the node describes each kind of entry with (as its status's `log_tail` and its
/// Readys carry it), and the word the page's log boxes should show for it.
fn entry_kinds() -> Vec<(String, &'static str)> {
    let normal = |data: Vec<u8>| Entry {
        data: data.into(),
        ..Default::default()
    };
    let id = ProposalId {
        origin: 2,
        session: 5,
        seq: 300,
    };
    let put = kvstore::Command::Put {
        key: "/my-key".into(),
        value: "hello".into(),
    };
    let mut cc = ConfChangeV2::default();
    cc.mut_changes().push(ConfChangeSingle {
        change_type: ConfChangeType::RemoveNode,
        node_id: 3,
        ..Default::default()
    });
    let conf_change = Entry {
        entry_type: EntryType::EntryConfChangeV2,
        data: cc.write_to_bytes().expect("encoding a conf change").into(),
        ..Default::default()
    };
    [
        (
            normal(proposal::encode_proposal(id, 290, &put.encode())),
            "put",
        ),
        (normal(proposal::encode_register(2, 12345)), "session"),
        (normal(proposal::encode_fence(2, 5, 301)), "fence"),
        (normal(Vec::new()), "no-op"),
        (conf_change, "conf"),
    ]
    .into_iter()
    .map(|(entry, word)| (describe::entry_text(&entry), word))
    .collect()
}
