//! The REST API's answers, good and bad: every malformed request gets its 4xx with a one-line
//! reason, and the node keeps serving afterwards. The router is called without a socket, the
//! node runs in memory on a paused clock.

mod common;

use std::time::Duration;

use axum::http::{Method, StatusCode};
use common::TestCluster;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

/// A node's REST API, called without a socket.
struct Api {
    router: axum::Router,
}

impl Api {
    async fn call(&self, method: Method, path: &str, body: Vec<u8>) -> (StatusCode, String) {
        common::call(&self.router, method, path, body).await
    }

    /// The node still takes writes and serves them.
    async fn assert_serving(&self, tag: &str) {
        let (s, _) = self.call(Method::PUT, "/alive", tag.into()).await;
        assert_eq!(
            s,
            StatusCode::NO_CONTENT,
            "node stopped serving after {tag}"
        );
        let (s, body) = self.call(Method::GET, "/alive", vec![]).await;
        assert_eq!((s, body.as_str()), (StatusCode::OK, tag));
    }
}

fn one_line(body: &str) {
    assert!(
        body.ends_with('\n') && body.trim_end().lines().count() == 1,
        "not one line: {body:?}"
    );
    assert!(body.trim().len() > 5, "reason too short: {body:?}");
}

async fn single_node() -> (TestCluster, Api) {
    let cluster = TestCluster::start(1, |c| c.max_body_bytes = 1024).await;
    cluster.wait_leader().await;
    let api = Api {
        router: cluster.router(1),
    };
    (cluster, api)
}

/// `/-/status?pretty` is the text for a person, and so are `pretty=1` and `pretty=true`;
/// `pretty=0` and `pretty=false` are the JSON, as is no `pretty` at all (both were the text);
/// another value is a `400` naming it.
#[tokio::test(start_paused = true)]
async fn status_takes_pretty_as_a_boolean() {
    let (cluster, api) = single_node().await;
    for query in ["?pretty", "?pretty=1", "?pretty=true", "?stale&pretty=True"] {
        let (s, body) = api
            .call(Method::GET, &format!("/-/status{query}"), vec![])
            .await;
        assert_eq!(s, StatusCode::OK, "{query}: {body}");
        assert!(body.starts_with("node 1 is "), "{query}: {body}");
    }
    for query in ["", "?pretty=0", "?pretty=false", "?pretty=1&pretty=false"] {
        let (s, body) = api
            .call(Method::GET, &format!("/-/status{query}"), vec![])
            .await;
        assert_eq!(s, StatusCode::OK, "{query}: {body}");
        let status: serde_json::Value = serde_json::from_str(&body)
            .unwrap_or_else(|e| panic!("{query}: not JSON ({e}): {body}"));
        assert_eq!(status["id"], 1, "{query}: {body}");
    }
    let (s, body) = api.call(Method::GET, "/-/status?pretty=yes", vec![]).await;
    assert_eq!(s, StatusCode::BAD_REQUEST, "{body}");
    one_line(&body);
    assert!(body.contains(r#""yes" for ?pretty"#), "{body}");
    cluster.shutdown().await;
}

/// The status and the metrics name the build the node runs (a user's campaign, upgrading node
/// by node, could not tell which nodes still ran the old one): `build` in the status JSON,
/// after `incarnation` (the fields before it keep their order), and `raftexample_build_info`.
/// So does `--version`, which said `raftexample 0.1.0` for every build.
#[tokio::test(start_paused = true)]
async fn the_status_the_metrics_and_the_version_name_the_build() {
    let (cluster, api) = single_node().await;
    let build = raftexample::version::BUILD;
    let (s, body) = api.call(Method::GET, "/-/status", vec![]).await;
    assert_eq!(s, StatusCode::OK, "{body}");
    let status: serde_json::Value = serde_json::from_str(&body).expect("JSON");
    assert_eq!(status["build"]["commit"], build.commit, "{body}");
    assert_eq!(status["build"]["date"], build.date, "{body}");
    let at = |field: &str| body.find(&format!("\"{field}\":")).expect(field);
    assert!(
        at("incarnation") < at("build") && at("build") < at("members"),
        "{body}"
    );

    let (s, metrics) = api.call(Method::GET, "/-/metrics", vec![]).await;
    assert_eq!(s, StatusCode::OK, "{metrics}");
    let info = format!(
        "raftexample_build_info{{commit=\"{}\",date=\"{}\",node=\"1\"}} 1",
        build.commit, build.date
    );
    assert!(metrics.lines().any(|l| l == info), "{info} in {metrics}");
    cluster.shutdown().await;

    let version = std::process::Command::new(env!("CARGO_BIN_EXE_raftexample"))
        .arg("--version")
        .output()
        .expect("raftexample --version runs");
    let said = String::from_utf8_lossy(&version.stdout);
    assert!(version.status.success(), "{said}");
    let described = raftexample::version::DESCRIBED;
    assert_eq!(
        said.trim_end(),
        format!("raftexample {} ({described})", env!("CARGO_PKG_VERSION"))
    );
    assert!(
        described == format!("commit {}, {}", build.commit, build.date)
            || described == "unknown commit",
        "{described}"
    );
}

/// `GET /<key>?stale` takes a boolean as `?pretty` does: `stale=t` is a stale read, and a
/// value that is none is a `400` naming it, where it was silently a linearizable read.
#[tokio::test(start_paused = true)]
async fn a_get_takes_stale_as_a_boolean() {
    let (cluster, api) = single_node().await;
    api.call(Method::PUT, "/foo", b"bar".to_vec()).await;
    for query in ["?stale=t", "?stale=TRUE", "?stale=0"] {
        let (s, body) = api.call(Method::GET, &format!("/foo{query}"), vec![]).await;
        assert_eq!((s, body.as_str()), (StatusCode::OK, "bar"), "{query}");
    }
    let (s, body) = api.call(Method::GET, "/foo?stale=maybe", vec![]).await;
    assert_eq!(s, StatusCode::BAD_REQUEST, "{body}");
    one_line(&body);
    assert!(body.contains(r#""maybe" for ?stale"#), "{body}");
    cluster.shutdown().await;
}

#[tokio::test(start_paused = true)]
async fn routes_and_codes_match_the_original() {
    let (cluster, api) = single_node().await;
    assert_eq!(
        api.call(Method::PUT, "/foo", b"bar".to_vec()).await.0,
        StatusCode::NO_CONTENT
    );
    assert_eq!(
        api.call(Method::GET, "/foo", vec![]).await,
        (StatusCode::OK, "bar".into())
    );
    let (s, body) = api.call(Method::GET, "/missing", vec![]).await;
    assert_eq!(s, StatusCode::NOT_FOUND);
    one_line(&body);
    // The key is the whole path, leading slash and all, so /a/b and /a are different keys.
    api.call(Method::PUT, "/a/b", b"deep".to_vec()).await;
    assert_eq!(
        api.call(Method::GET, "/a", vec![]).await.0,
        StatusCode::NOT_FOUND
    );
    assert_eq!(api.call(Method::GET, "/a/b", vec![]).await.1, "deep");
    // Percent-encoding names the same key as its decoded form.
    api.call(Method::PUT, "/a%20b", b"space".to_vec()).await;
    assert_eq!(api.call(Method::GET, "/a%20b", vec![]).await.1, "space");
    // A stale read sees the same applied value on a single node.
    assert_eq!(api.call(Method::GET, "/foo?stale", vec![]).await.1, "bar");
    // Empty values are values.
    api.call(Method::PUT, "/empty", vec![]).await;
    assert_eq!(
        api.call(Method::GET, "/empty", vec![]).await,
        (StatusCode::OK, String::new())
    );
    cluster.shutdown().await;
}

#[tokio::test(start_paused = true)]
async fn bad_input_gets_a_4xx_and_the_node_keeps_serving() {
    let (cluster, api) = single_node().await;

    let request = axum::http::Request::builder()
        .method(Method::PATCH)
        .uri("/x")
        .body(axum::body::Body::empty())
        .expect("a well-formed request");
    let r = tower::ServiceExt::oneshot(api.router.clone(), request)
        .await
        .expect("the router always answers");
    assert_eq!(r.status(), StatusCode::METHOD_NOT_ALLOWED);
    // The original sends one Allow header per method, in this order.
    let allow: Vec<&str> = r
        .headers()
        .get_all("allow")
        .iter()
        .map(|v| v.to_str().expect("ascii"))
        .collect();
    assert_eq!(allow, ["PUT", "GET", "POST", "DELETE"]);
    let body = axum::body::to_bytes(r.into_body(), usize::MAX)
        .await
        .expect("a body");
    let body = String::from_utf8_lossy(&body);
    one_line(&body);
    // The body says what the path takes too, for a reader that shows no headers.
    assert!(
        body.ends_with("this path takes PUT, GET, POST, DELETE\n"),
        "{body}"
    );
    api.assert_serving("after-405").await;

    let (s, body) = api.call(Method::PUT, "/big", vec![b'x'; 1025]).await;
    assert_eq!(s, StatusCode::PAYLOAD_TOO_LARGE);
    one_line(&body);
    assert_eq!(
        api.call(Method::GET, "/big", vec![]).await.0,
        StatusCode::NOT_FOUND
    );
    api.assert_serving("after-413").await;

    // As in the original, the id is all of the target after its first `/`: `//4` and
    // `/4?dry-run=1` name no id (and there is no member 4 to add or remove by mistake).
    for path in ["/abc", "/0", "/-1", "/1.5", "//4", "/4?dry-run=1", "/4?"] {
        let (s, body) = api
            .call(Method::POST, path, b"http://127.0.0.1:1".to_vec())
            .await;
        assert_eq!(s, StatusCode::BAD_REQUEST, "POST {path}");
        one_line(&body);
        let (s, body) = api.call(Method::DELETE, path, vec![]).await;
        assert_eq!(s, StatusCode::BAD_REQUEST, "DELETE {path}");
        one_line(&body);
        // A DELETE of a key is the likeliest way here: the reason says there is none.
        assert!(body.contains("cannot be deleted"), "{body}");
    }
    api.assert_serving("after-bad-id").await;

    for url in [
        "not a url",
        "127.0.0.1:5",
        "http://127.0.0.1",
        "ftp://x:1",
        "",
    ] {
        let (s, body) = api.call(Method::POST, "/4", url.into()).await;
        assert_eq!(s, StatusCode::BAD_REQUEST, "POST /4 {url:?}");
        one_line(&body);
    }
    api.assert_serving("after-bad-url").await;

    // The original refused a malformed escape too (Go's URL parser does); taken literally,
    // it would be the key its `%25` spelling names.
    for path in ["/bad%zz", "/bad%2", "/bad%"] {
        let (s, body) = api.call(Method::PUT, path, b"v".to_vec()).await;
        assert_eq!(s, StatusCode::BAD_REQUEST, "PUT {path}: {body}");
        assert!(body.contains("percent-escape"), "{body}");
        one_line(&body);
    }
    assert_eq!(
        api.call(Method::GET, "/bad%25zz", vec![]).await.0,
        StatusCode::NOT_FOUND
    );
    // A target that is not a path, which hyper lets through (`GET k HTTP/1.1`).
    let (s, body) = api.call(Method::GET, "k", vec![]).await;
    assert_eq!(s, StatusCode::BAD_REQUEST, "{body}");
    assert!(body.contains("must start with /"), "{body}");
    one_line(&body);
    api.assert_serving("after-bad-path").await;

    // A key is text (the original's was a Go string from the URL); a value need not be.
    let (s, body) = api.call(Method::PUT, "/%FF%FE", b"v".to_vec()).await;
    assert_eq!(s, StatusCode::BAD_REQUEST);
    one_line(&body);
    // It names the path and says what a key must be, as every error body says what to do.
    assert!(body.contains(r#""/%FF%FE""#), "{body}");
    assert!(body.contains("must be UTF-8 text"), "{body}");
    assert_eq!(
        api.call(Method::GET, "/%FF%FE", vec![]).await.0,
        StatusCode::BAD_REQUEST
    );
    api.assert_serving("after-bad-utf8").await;
    cluster.shutdown().await;
}

/// A value is any bytes, as the original's (a Go string holds any): a lone 0xFF, a NUL, a
/// character cut short are stored and read back exactly, labelled `application/octet-stream`;
/// a text value is still labelled `text/plain; charset=utf-8`. It was refused with 400.
#[tokio::test(start_paused = true)]
async fn a_value_of_any_bytes_reads_back_exactly() {
    let (cluster, api) = single_node().await;
    let values: [&[u8]; 4] = [
        b"\xff",
        b"a\x00\xffb",
        b"caf\xc3",
        b"\x00\xff\xfe\xe2\x82 ok\xf0\x9f\x98",
    ];
    for (i, value) in values.into_iter().enumerate() {
        let path = format!("/bin{i}");
        let (s, _, body) = common::call_raw(&api.router, Method::PUT, &path, value.into()).await;
        assert_eq!(s, StatusCode::NO_CONTENT, "PUT {value:?}: {body:?}");
        let (s, content_type, body) =
            common::call_raw(&api.router, Method::GET, &path, vec![]).await;
        assert_eq!(
            (s, content_type.as_str(), &body[..]),
            (StatusCode::OK, "application/octet-stream", value)
        );
    }
    let text = "café, with a NUL\0 too".as_bytes();
    let (s, _) = api.call(Method::PUT, "/text", text.into()).await;
    assert_eq!(s, StatusCode::NO_CONTENT);
    let (s, content_type, body) = common::call_raw(&api.router, Method::GET, "/text", vec![]).await;
    assert_eq!(
        (s, content_type.as_str(), &body[..]),
        (StatusCode::OK, "text/plain; charset=utf-8", text)
    );
    // Bounded by --max-body-bytes all the same.
    let (s, body) = api.call(Method::PUT, "/bin0", vec![0xff; 1025]).await;
    assert_eq!(s, StatusCode::PAYLOAD_TOO_LARGE, "{body}");
    let (s, _, body) = common::call_raw(&api.router, Method::GET, "/bin0", vec![]).await;
    assert_eq!(
        (s, &body[..]),
        (StatusCode::OK, values[0]),
        "a refused PUT left it"
    );
    cluster.shutdown().await;
}

/// A rolling upgrade: while node 3 runs a build before values of any bytes (played with the
/// hidden `--test-as-older-build`; such a build skips a value that is not UTF-8 where this one
/// stores it), a PUT of such a value to either other node is refused with `409` naming node 3,
/// and nothing is written anywhere; text is written as before. Once node 3 runs this build
/// again, the same PUT is `204` on both, and reads back exactly on every node. It was `204`
/// all along, and node 3's copy would have lacked the key without an error.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_value_that_is_not_utf8_is_refused_while_a_member_runs_an_older_build() {
    let mut c = common::ProcCluster::new(3, &[]);
    c.spawn(1, &[]);
    c.spawn(2, &[]);
    // Node 3 starts once 1 and 2 have a leader, so that of the two nodes asked below one leads
    // (it judges by what it heard) and one follows (it asks the leader).
    let leader = c.wait_leader().await;
    c.spawn(3, &["--test-as-older-build"]);
    // Once node 3 has an entry, the leader has heard from it (a leader just elected may not
    // have yet, and cannot tell its build until it does).
    c.put_ok(leader, "first", "1").await;
    c.wait_value(3, "first", "1", true).await;
    let value: &[u8] = b"\x00\xff not UTF-8 \xfe";
    async fn put(c: &common::ProcCluster, id: u64, value: &[u8]) -> (u16, String) {
        let request = c
            .http
            .put(format!("{}/bin", c.url(id)))
            .body(value.to_vec());
        let answer = request.send().await.expect("the node answers");
        let status = answer.status().as_u16();
        (status, answer.text().await.unwrap_or_default())
    }
    for id in [1, 2] {
        let (status, body) = put(&c, id, value).await;
        assert_eq!(status, 409, "node {id}: {body}");
        one_line(&body);
        assert!(
            body.contains("node 3 runs an older build")
                && body.contains("not UTF-8")
                && body.contains("upgrade every node first"),
            "node {id}: {body}"
        );
    }
    for id in 1..=3 {
        assert_eq!(
            c.get(id, "bin").await.map(|(status, _)| status),
            Some(404),
            "node {id} has the refused value"
        );
    }
    for id in [1, 2] {
        assert_eq!(c.put(id, "text", "café").await, Some(204), "node {id}");
    }

    c.stop(3).await;
    c.spawn(3, &[]);
    c.wait_leader().await;
    common::wait_for(Duration::from_secs(20), "node 3 ready", || async {
        (c.get(3, "-/ready").await?.0 == 200).then_some(())
    })
    .await;
    for id in [1, 2] {
        let (status, body) = put(&c, id, value).await;
        assert_eq!(status, 204, "node {id}: {body}");
    }
    for id in 1..=3 {
        let answer = c
            .http
            .get(format!("{}/bin", c.url(id)))
            .send()
            .await
            .expect("the node answers");
        assert_eq!(answer.status().as_u16(), 200, "node {id}");
        let got = answer.bytes().await.expect("the body");
        assert_eq!(&got[..], value, "node {id}");
    }
}

#[tokio::test(start_paused = true)]
async fn the_reserved_prefix_is_not_a_key() {
    let (cluster, api) = single_node().await;
    let (s, body) = api.call(Method::PUT, "/-/status", b"x".to_vec()).await;
    assert_eq!(s, StatusCode::METHOD_NOT_ALLOWED);
    one_line(&body);
    let (s, body) = api.call(Method::PUT, "/-/anything", b"x".to_vec()).await;
    assert_eq!(s, StatusCode::NOT_FOUND);
    one_line(&body);
    // Spelled with a percent escape, the prefix is still not a key: nothing is stored.
    for method in [Method::PUT, Method::GET] {
        let (s, body) = api.call(method, "/%2D/x", b"x".to_vec()).await;
        assert_eq!(s, StatusCode::BAD_REQUEST, "{body}");
        assert!(body.contains("reserved"), "{body}");
        one_line(&body);
    }
    assert_eq!(cluster.node(1).kv().len(), 0, "a reserved key was stored");
    assert_eq!(
        api.call(Method::GET, "/-/health", vec![]).await.0,
        StatusCode::OK
    );
    let (s, body) = api.call(Method::GET, "/-/members", vec![]).await;
    assert_eq!(s, StatusCode::OK);
    let members: serde_json::Value = serde_json::from_str(&body).expect("members JSON");
    assert_eq!(members[0]["id"], 1);
    assert_eq!(members[0]["is_leader"], true);
    cluster.shutdown().await;
}

/// With no quorum there is no leader: a write waits for one, until the last fifth of the
/// proposal timeout (the settle window, in which nothing is proposed), then answers 503 saying
/// that none came and that the write will not happen; a read, for the whole timeout, likewise.
#[tokio::test(start_paused = true)]
async fn no_leader_answers_503_after_waiting_for_one() {
    let mut cluster = TestCluster::start(3, |c| c.proposal_timeout_ms = 2_000).await;
    cluster.wait_leader().await;
    cluster.stop(2).await;
    cluster.stop(3).await;
    let api = Api {
        router: cluster.router(1),
    };
    // CheckQuorum makes the lone leader step down within an election timeout; a write sent
    // before that was proposed and may still happen (if the others came back in time).
    let started = tokio::time::Instant::now();
    loop {
        let (s, body) = api.call(Method::PUT, "/k", b"v".to_vec()).await;
        assert_eq!(s, StatusCode::SERVICE_UNAVAILABLE, "{body}");
        one_line(&body);
        if body.contains("no leader") {
            assert!(body.contains("will not happen"), "{body}");
            break;
        }
        assert!(body.contains("may still happen"), "{body}");
        assert!(
            started.elapsed().as_secs() < 20,
            "never stopped claiming a leader"
        );
    }
    let waited = tokio::time::Instant::now();
    let (s, body) = api.call(Method::PUT, "/k", b"v".to_vec()).await;
    assert_eq!(s, StatusCode::SERVICE_UNAVAILABLE);
    assert!(
        body.contains("no leader was elected in time for a wait of 2s"),
        "{body}"
    );
    // It waited for a leader (the bound is loose: this is about which path answered).
    assert!(
        waited.elapsed() >= std::time::Duration::from_millis(1_500),
        "503 came after {:?}: it did not wait for a leader",
        waited.elapsed()
    );
    let (s, body) = api.call(Method::GET, "/k", vec![]).await;
    assert_eq!(s, StatusCode::SERVICE_UNAVAILABLE, "{body}");
    assert!(body.contains("nothing was read"), "{body}");
    cluster.shutdown().await;
}

/// Each client connection holds a descriptor: the node raises its soft limit of open files to
/// the hard one, as Go (and so the original) does, rather than run out at the common 1,024
/// and then fail to open a WAL segment. Started from a process whose soft limit is 256.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_open_files_limit_is_raised_to_the_hard_one() {
    use rustix::process::{Resource, Rlimit, getrlimit, setrlimit};
    let hard = getrlimit(Resource::Nofile)
        .maximum
        .expect("a finite hard limit of open files");
    let low = 256.min(hard / 2);
    // nextest runs each test in a process of its own: the node inherits this.
    setrlimit(
        Resource::Nofile,
        Rlimit {
            current: Some(low),
            maximum: Some(hard),
        },
    )
    .expect("lowering this test's soft limit");
    let c = common::ProcCluster::start(1, &[]).await;
    let limits = std::fs::read_to_string(format!("/proc/{}/limits", c.pid(1)))
        .expect("the node's /proc limits");
    let line = limits
        .lines()
        .find(|l| l.starts_with("Max open files"))
        .expect("a line for open files");
    let numbers: Vec<&str> = line.split_whitespace().skip(3).take(2).collect();
    assert_eq!(
        numbers,
        vec![hard.to_string(), hard.to_string()],
        "soft and hard limits of the node: {line}"
    );
    c.put_ok(1, "k", "v").await;
}

/// The first answer in `got`, if all of it is there: its status, head and body (by its
/// Content-Length), and how many bytes it takes.
fn parse_answer(got: &[u8]) -> Option<((u16, String, String), usize)> {
    let end = got.windows(4).position(|w| w == b"\r\n\r\n")?;
    let head = String::from_utf8_lossy(&got[..end]).into_owned();
    let length = head
        .lines()
        .filter_map(|l| l.split_once(':'))
        .find(|(name, _)| name.eq_ignore_ascii_case("content-length"))
        .map_or(0, |(_, v)| {
            v.trim().parse().expect("a numeric Content-Length")
        });
    let body = got.get(end + 4..end + 4 + length)?;
    let body = String::from_utf8_lossy(body).into_owned();
    let status = head
        .split(' ')
        .nth(1)
        .and_then(|s| s.parse().ok())
        .unwrap_or_else(|| panic!("no status in {head:?}"));
    Some(((status, head, body), end + 4 + length))
}

/// One answer read off a raw connection: its status, head and body (by its Content-Length).
async fn read_answer(conn: &mut TcpStream) -> (u16, String, String) {
    let read = async {
        let mut got = Vec::new();
        let mut buf = [0; 4096];
        loop {
            if let Some((answer, _)) = parse_answer(&got) {
                return answer;
            }
            let n = conn.read(&mut buf).await.unwrap_or_else(|e| {
                panic!(
                    "reading an answer: {e} (got {:?})",
                    String::from_utf8_lossy(&got)
                )
            });
            assert!(
                n > 0,
                "closed before an answer: {:?}",
                String::from_utf8_lossy(&got)
            );
            got.extend_from_slice(&buf[..n]);
        }
    };
    tokio::time::timeout(Duration::from_secs(30), read)
        .await
        .expect("an answer within 30 s")
}

async fn connect(c: &common::ProcCluster) -> TcpStream {
    let addr = c.url(1).replacen("http://", "", 1);
    TcpStream::connect(&addr)
        .await
        .unwrap_or_else(|e| panic!("connecting to {addr}: {e}"))
}

/// Sixteen times `--max-body-bytes` (1 MiB by default).
const BIG: usize = 16 << 20;

/// A client that sends its whole body before it reads (Python's http.client, urllib and
/// requests do) gets the refusal, and its connection is kept: the node reads a refused body
/// to its end. Before, it answered at once and closed the connection with the body unread,
/// the kernel reset it, and the client saw a broken pipe. Also for a body refused for its
/// key, its id or its path, which the node did not read at all.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_refused_body_sent_before_reading_still_gets_its_answer() {
    let c = common::ProcCluster::start(1, &[]).await;
    let mut conn = connect(&c).await;
    let body = vec![b'x'; BIG];
    for (method, path, status) in [
        ("PUT", "/big", 413),
        ("PUT", "/-/x", 404),
        ("PUT", "/%FF", 400),
        ("PUT", "/bad%zz", 400),
        ("POST", "/0", 400),
        ("GET", "/big", 404),
        ("GET", "k", 400),
    ] {
        let head = format!("{method} {path} HTTP/1.1\r\nHost: x\r\nContent-Length: {BIG}\r\n\r\n");
        conn.write_all(head.as_bytes())
            .await
            .expect("sending a head");
        conn.write_all(&body)
            .await
            .unwrap_or_else(|e| panic!("{method} {path}: sending the whole body: {e}"));
        let (got, head, reason) = read_answer(&mut conn).await;
        assert_eq!(got, status, "{method} {path}: {head}\n{reason}");
        one_line(&reason);
    }
    // Still the same connection.
    conn.write_all(b"GET /-/health HTTP/1.1\r\nHost: x\r\n\r\n")
        .await
        .expect("sending a request");
    assert_eq!(read_answer(&mut conn).await.0, 200);
}

/// The same for a chunked body, which passes the limit on the way.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_chunked_body_past_the_limit_sent_before_reading_still_gets_its_answer() {
    let c = common::ProcCluster::start(1, &[]).await;
    let mut conn = connect(&c).await;
    let chunk = vec![b'x'; 1 << 20];
    let mut request =
        b"PUT /big HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\n\r\n".to_vec();
    for _ in 0..BIG / chunk.len() {
        request.extend_from_slice(format!("{:x}\r\n", chunk.len()).as_bytes());
        request.extend_from_slice(&chunk);
        request.extend_from_slice(b"\r\n");
    }
    request.extend_from_slice(b"0\r\n\r\n");
    conn.write_all(&request)
        .await
        .expect("sending the whole chunked body");
    let (status, head, reason) = read_answer(&mut conn).await;
    assert_eq!(status, 413, "{head}\n{reason}");
    one_line(&reason);
    conn.write_all(b"GET /big HTTP/1.1\r\nHost: x\r\n\r\n")
        .await
        .expect("sending a request");
    assert_eq!(read_answer(&mut conn).await.0, 404);
}

/// A client that asks before it sends (`Expect: 100-continue`) is answered `413` at once, from
/// the Content-Length, and never asked for the body.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_body_announced_too_large_with_expect_is_refused_before_it_is_sent() {
    let c = common::ProcCluster::start(1, &[]).await;
    let mut conn = connect(&c).await;
    let head = format!(
        "PUT /big HTTP/1.1\r\nHost: x\r\nContent-Length: {BIG}\r\nExpect: 100-continue\r\n\r\n"
    );
    conn.write_all(head.as_bytes())
        .await
        .expect("sending a head");
    let (status, head, reason) = read_answer(&mut conn).await;
    assert_eq!(status, 413, "{head}\n{reason}");
    one_line(&reason);
}

/// The node still takes a write and serves it, asked on `conn`.
async fn assert_serving_on(conn: &mut TcpStream, tag: &str) {
    let put = format!(
        "PUT /alive HTTP/1.1\r\nHost: x\r\nContent-Length: {}\r\n\r\n{tag}",
        tag.len()
    );
    conn.write_all(put.as_bytes()).await.expect("sending a PUT");
    let (status, head, body) = read_answer(conn).await;
    assert_eq!(status, 204, "PUT after {tag}: {head}\n{body}");
    conn.write_all(b"GET /alive HTTP/1.1\r\nHost: x\r\n\r\n")
        .await
        .expect("sending a GET");
    let (status, head, body) = read_answer(conn).await;
    assert_eq!(
        (status, body.as_str()),
        (200, tag),
        "GET after {tag}: {head}"
    );
}

/// The node closes `conn` after the answer read from it.
async fn assert_closed(conn: &mut TcpStream, what: &str) {
    let mut rest = Vec::new();
    tokio::time::timeout(Duration::from_secs(30), conn.read_to_end(&mut rest))
        .await
        .unwrap_or_else(|_| panic!("{what}: the connection stayed open"))
        .unwrap_or_else(|e| panic!("{what}: reading to the close: {e}"));
    assert!(
        rest.is_empty(),
        "{what}: more after the answer: {:?}",
        String::from_utf8_lossy(&rest)
    );
}

/// Sends `head` and `body` on a new connection: the answer is `status`, a one-line reason
/// that contains `part`, and the connection is closed after it.
async fn refused_and_closed(
    c: &common::ProcCluster,
    what: &str,
    head: &str,
    body: &[u8],
    status: u16,
    part: &str,
) {
    let mut conn = connect(c).await;
    conn.write_all(head.as_bytes())
        .await
        .expect("sending a head");
    conn.write_all(body)
        .await
        .unwrap_or_else(|e| panic!("{what}: sending the body: {e}"));
    let (got, head, reason) = read_answer(&mut conn).await;
    assert_eq!(got, status, "{what}: {head}\n{reason}");
    assert!(
        head.to_ascii_lowercase().contains("\r\nconnection: close"),
        "{what}: {head}"
    );
    assert!(reason.contains(part), "{what}: {reason}");
    one_line(&reason);
    assert_closed(&mut conn, what).await;
}

/// An `Expect` other than `100-continue` is `417`, as Go's server (the original's) answers:
/// the handler never runs (nothing is written), a body sent with the request is read and
/// dropped so that the client gets the answer, the connection is closed as Go closes it, and
/// the node serves on. Before, the request was served as if it had no `Expect`. An empty
/// `Expect` is served, as by Go, and so is a list with `100-continue` in it on a request
/// without a body (it was `417`); with a body it stays `417`, as hyper would not send the
/// `100 Continue` such a client waits for.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_expectation_other_than_100_continue_is_417_and_nothing_is_written() {
    let c = common::ProcCluster::start(1, &[]).await;
    let big = vec![b'x'; BIG];
    for (what, head, body) in [
        (
            "Expect: foo",
            "PUT /exp HTTP/1.1\r\nHost: x\r\nExpect: foo\r\nContent-Length: 1\r\n\r\n".to_string(),
            &b"v"[..],
        ),
        (
            "HTTP/1.0",
            "PUT /exp HTTP/1.0\r\nExpect: foo\r\nContent-Length: 1\r\n\r\n".to_string(),
            b"v",
        ),
        (
            "no body",
            "GET /-/health HTTP/1.1\r\nHost: x\r\nExpect: 100-continue-please\r\n\r\n".to_string(),
            b"",
        ),
        (
            "a second Expect",
            "PUT /exp HTTP/1.1\r\nHost: x\r\nExpect: 100-continue\r\nExpect: foo\r\n\
             Content-Length: 1\r\n\r\n"
                .to_string(),
            b"",
        ),
        (
            "a big body sent before reading",
            format!("PUT /exp HTTP/1.1\r\nHost: x\r\nExpect: foo\r\nContent-Length: {BIG}\r\n\r\n"),
            &big[..],
        ),
        (
            "a list with 100-continue, and a body",
            "PUT /exp HTTP/1.1\r\nHost: x\r\nExpect: foo, 100-continue\r\nContent-Length: 1\r\n\r\n"
                .to_string(),
            b"v",
        ),
    ] {
        refused_and_closed(&c, what, &head, body, 417, "100-continue").await;
    }
    assert_eq!(
        c.get(1, "exp").await,
        Some((404, "key \"/exp\" not found\n".into()))
    );
    let mut conn = connect(&c).await;
    assert_serving_on(&mut conn, "after-417").await;
    conn.write_all(
        b"PUT /empty-expect HTTP/1.1\r\nHost: x\r\nExpect:\r\nContent-Length: 1\r\n\r\nv",
    )
    .await
    .expect("sending a PUT");
    assert_eq!(read_answer(&mut conn).await.0, 204);
    for request in [
        "GET /-/health HTTP/1.1\r\nHost: x\r\nExpect: foo, 100-continue\r\n\r\n",
        "PUT /exp HTTP/1.1\r\nHost: x\r\nExpect: foo 100-Continue\r\nContent-Length: 0\r\n\r\n",
    ] {
        let (status, head, body) = exchange(&mut conn, request).await;
        assert!(matches!(status, 200 | 204), "{request:?}: {head}\n{body}");
    }
    assert_eq!(c.get(1, "exp").await, Some((200, String::new())));
    assert_serving_on(&mut conn, "after-a-list").await;
}

/// Go's server heeds the first `Expect` header only, and so does the node: a header that
/// follows an empty first one (`Expect:` then `Expect: foo`), or one listing `100-continue`
/// on a request without a body, is not looked at (served, and a `PUT`'s body written), and
/// one that follows an unmet first one (`Expect: foo` then `Expect: 100-continue`) does not
/// save it (`417`, closed, nothing written). Before, every value had to be met: the served
/// ones here were `417`.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn only_the_first_expect_header_counts_as_in_go() {
    let c = common::ProcCluster::start(1, &[]).await;
    let mut conn = connect(&c).await;
    for request in [
        "GET /-/health HTTP/1.1\r\nHost: x\r\nExpect: 100-continue\r\nExpect: foo\r\n\r\n",
        "GET /-/health HTTP/1.1\r\nHost: x\r\nExpect: foo, 100-continue\r\nExpect: bar\r\n\r\n",
        "GET /-/health HTTP/1.1\r\nHost: x\r\nExpect:\r\nExpect: foo\r\n\r\n",
        "PUT /second HTTP/1.1\r\nHost: x\r\nExpect:\r\nExpect: foo\r\n\
         Content-Length: 6\r\n\r\nsecond",
    ] {
        let (status, head, body) = exchange(&mut conn, request).await;
        assert!(matches!(status, 200 | 204), "{request:?}: {head}\n{body}");
    }
    assert_eq!(c.get(1, "second").await, Some((200, "second".into())));
    assert_serving_on(&mut conn, "after-two-expects").await;
    refused_and_closed(
        &c,
        "an unmet first Expect",
        "PUT /exp HTTP/1.1\r\nHost: x\r\nExpect: foo\r\nExpect: 100-continue\r\n\
         Content-Length: 1\r\n\r\n",
        b"",
        417,
        r#""foo""#,
    )
    .await;
    assert_eq!(
        c.get(1, "exp").await,
        Some((404, "key \"/exp\" not found\n".into()))
    );
}

/// An HTTP/1.1 request without a `Host` header is `400`, as Go's server (the original's)
/// answers, before anything is done and on any path, and the connection is closed as Go
/// closes it; the node serves on. An HTTP/1.0 one, which need not name its host, is served,
/// as is an empty `Host` (as by Go). Before, every one was served.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_http_1_1_request_without_host_is_400_and_nothing_is_written() {
    let c = common::ProcCluster::start(1, &[]).await;
    let big = vec![b'x'; BIG];
    for (what, head, body) in [
        (
            "PUT",
            "PUT /nohost HTTP/1.1\r\nContent-Length: 1\r\n\r\n".to_string(),
            &b"v"[..],
        ),
        (
            "GET of an endpoint",
            "GET /-/health HTTP/1.1\r\n\r\n".to_string(),
            b"",
        ),
        (
            "an absolute target (Go wants the header too)",
            "PUT http://x/nohost HTTP/1.1\r\nContent-Length: 1\r\n\r\n".to_string(),
            b"v",
        ),
        (
            "with an unmet expectation (the Host is checked first, as by Go)",
            "PUT /nohost HTTP/1.1\r\nExpect: foo\r\nContent-Length: 1\r\n\r\n".to_string(),
            b"v",
        ),
        (
            "a big body sent before reading",
            format!("PUT /nohost HTTP/1.1\r\nContent-Length: {BIG}\r\n\r\n"),
            &big[..],
        ),
    ] {
        refused_and_closed(&c, what, &head, body, 400, "Host header").await;
    }
    assert_eq!(
        c.get(1, "nohost").await,
        Some((404, "key \"/nohost\" not found\n".into()))
    );
    let mut conn = connect(&c).await;
    conn.write_all(b"PUT /old HTTP/1.0\r\nContent-Length: 3\r\n\r\nold")
        .await
        .expect("sending an HTTP/1.0 PUT");
    assert_eq!(read_answer(&mut conn).await.0, 204, "HTTP/1.0 without Host");
    assert_eq!(c.get(1, "old").await, Some((200, "old".into())));
    let mut conn = connect(&c).await;
    conn.write_all(b"PUT /empty-host HTTP/1.1\r\nHost:\r\nContent-Length: 1\r\n\r\nv")
        .await
        .expect("sending a PUT");
    assert_eq!(read_answer(&mut conn).await.0, 204, "an empty Host");
    assert_serving_on(&mut conn, "after-400").await;
}

/// Two `Host` headers, or one that names no host (`Host: a b`), are `400` as RFC 9112 (§3.2)
/// wants and Go's server (the original's) answers, whatever the HTTP version; a transfer
/// coding other than `chunked` alone (`gzip, chunked`, or `gzip` then `chunked`) is `501`,
/// as from Go, checked before the `Host` as Go does. Each before anything is done, with a
/// one-line reason, and the connection closed as Go closes it; the node serves on, and a
/// body sent `chunked` alone (in any case) is still stored as sent. Before, each was served:
/// a `gzip, chunked` body was stored still coded (found by using it).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn two_hosts_a_bad_host_or_a_coded_body_are_refused_and_nothing_is_written() {
    let c = common::ProcCluster::start(1, &[]).await;
    let chunk = b"4\r\nbody\r\n0\r\n\r\n";
    for (what, head, body, status, part) in [
        (
            "two Host headers",
            "PUT /refused HTTP/1.1\r\nHost: x\r\nHost: y\r\nContent-Length: 4\r\n\r\n",
            &b"body"[..],
            400,
            "2 Host headers",
        ),
        (
            "two alike, HTTP/1.0",
            "PUT /refused HTTP/1.0\r\nHost: x\r\nHost: x\r\nContent-Length: 4\r\n\r\n",
            b"body",
            400,
            "2 Host headers",
        ),
        (
            "a Host with a space",
            "PUT /refused HTTP/1.1\r\nHost: a b\r\nContent-Length: 4\r\n\r\n",
            b"body",
            400,
            r#"malformed Host header "a b""#,
        ),
        (
            "a Host with a path, on an endpoint",
            "GET /-/health HTTP/1.1\r\nHost: x/y\r\n\r\n",
            b"",
            400,
            "malformed Host header",
        ),
        (
            "gzip, chunked",
            "PUT /refused HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: gzip, chunked\r\n\r\n",
            chunk,
            501,
            r#"unsupported transfer encoding "gzip, chunked""#,
        ),
        (
            "gzip, then chunked",
            "PUT /refused HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: gzip\r\n\
             Transfer-Encoding: chunked\r\n\r\n",
            chunk,
            501,
            r#""gzip, chunked""#,
        ),
        (
            "gzip, chunked without a Host (the coding is checked first, as by Go)",
            "PUT /refused HTTP/1.1\r\nTransfer-Encoding: gzip, chunked\r\n\r\n",
            chunk,
            501,
            "unsupported transfer encoding",
        ),
    ] {
        refused_and_closed(&c, what, head, body, status, part).await;
    }
    assert_eq!(
        c.get(1, "refused").await,
        Some((404, "key \"/refused\" not found\n".into()))
    );
    let mut conn = connect(&c).await;
    let (status, head, body) = exchange(
        &mut conn,
        "PUT /plain HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: Chunked\r\n\r\n\
         4\r\nbody\r\n0\r\n\r\n",
    )
    .await;
    assert_eq!(status, 204, "chunked alone: {head}\n{body}");
    assert_eq!(c.get(1, "plain").await, Some((200, "body".into())));
    assert_serving_on(&mut conn, "after-501").await;
}

/// `OPTIONS *` (a question about the server, not a key) is `200` with an empty body, as Go's
/// server (the original's) answers it, body or not, and the connection is kept; a plain
/// `OPTIONS /key` is still the original's `405` with its `Allow` headers. Before, `OPTIONS *`
/// was `400` (its target is not a path).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn options_asterisk_is_an_empty_200_and_options_of_a_key_stays_405() {
    let c = common::ProcCluster::start(1, &[]).await;
    let mut conn = connect(&c).await;
    for (what, request) in [
        ("no body", "OPTIONS * HTTP/1.1\r\nHost: x\r\n\r\n"),
        (
            "a body",
            "OPTIONS * HTTP/1.1\r\nHost: x\r\nContent-Length: 3\r\n\r\nabc",
        ),
    ] {
        conn.write_all(request.as_bytes())
            .await
            .expect("sending OPTIONS *");
        let (status, head, body) = read_answer(&mut conn).await;
        assert_eq!((status, body.as_str()), (200, ""), "{what}: {head}");
        let head = head.to_ascii_lowercase();
        assert!(head.contains("\r\ncontent-length: 0"), "{what}: {head}");
        assert!(!head.contains("\r\nallow:"), "{what}: {head}");
        assert!(!head.contains("\r\nconnection: close"), "{what}: {head}");
    }
    // Still the same connection.
    assert_serving_on(&mut conn, "after-options-star").await;
    conn.write_all(b"OPTIONS /key HTTP/1.1\r\nHost: x\r\n\r\n")
        .await
        .expect("sending OPTIONS /key");
    let (status, head, reason) = read_answer(&mut conn).await;
    assert_eq!(status, 405, "{head}\n{reason}");
    assert_eq!(allow_headers(&head), ["PUT", "GET", "POST", "DELETE"]);
    one_line(&reason);
    assert_serving_on(&mut conn, "after-options-key").await;
}

/// Sends `request` on `conn` and reads its answer: (status, head, body).
async fn exchange(conn: &mut TcpStream, request: &str) -> (u16, String, String) {
    conn.write_all(request.as_bytes())
        .await
        .unwrap_or_else(|e| panic!("sending {request:?}: {e}"));
    read_answer(conn).await
}

/// The values of the `Allow` headers in `head`, in order.
fn allow_headers(head: &str) -> Vec<&str> {
    head.lines()
        .filter_map(|l| l.split_once(':'))
        .filter(|(name, _)| name.eq_ignore_ascii_case("allow"))
        .map(|(_, v)| v.trim())
        .collect()
}

/// A client that shuts down its sending side once it has sent its request (`nc -N`, many
/// HTTP/1.0 tools) still gets the answer, as from Go's server (the original's), and then the
/// connection is closed: a PUT its `204`, with the value stored; a linearizable GET its
/// `200` and the value; both when sent together before the shutdown. Before, the node closed
/// the connection at the shutdown with no status line, while the PUT could still take
/// effect (found by using it). Three nodes, so that a read waits for a round of heartbeats:
/// a single node often answered a GET before it noticed the shutdown.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_client_that_half_closes_after_its_request_gets_its_answer() {
    let c = common::ProcCluster::start(3, &[]).await;
    let asked_then_half_closed = async |request: String, answers: &[(u16, &str)]| {
        let mut conn = connect(&c).await;
        conn.write_all(request.as_bytes())
            .await
            .unwrap_or_else(|e| panic!("sending {request:?}: {e}"));
        conn.shutdown()
            .await
            .unwrap_or_else(|e| panic!("{request:?}: shutting down the sending side: {e}"));
        // Read to the close first: two answers may come in one read.
        let mut got = Vec::new();
        tokio::time::timeout(Duration::from_secs(30), conn.read_to_end(&mut got))
            .await
            .unwrap_or_else(|_| panic!("{request:?}: not answered and closed within 30 s"))
            .unwrap_or_else(|e| panic!("{request:?}: reading the answers: {e}"));
        let mut rest = &got[..];
        for want in answers {
            let ((status, head, body), len) = parse_answer(rest).unwrap_or_else(|| {
                let rest = String::from_utf8_lossy(rest);
                panic!("{request:?}: closed before an answer: {rest:?}")
            });
            assert_eq!((status, body.as_str()), *want, "{request:?}: {head}");
            rest = &rest[len..];
        }
        let rest = String::from_utf8_lossy(rest);
        assert!(
            rest.is_empty(),
            "{request:?}: more after the answers: {rest:?}"
        );
    };
    for (key, version, connection) in [
        ("kept", "HTTP/1.1", ""),
        ("closed", "HTTP/1.1", "Connection: close\r\n"),
        ("old", "HTTP/1.0", ""),
    ] {
        let head = |method: &str| format!("{method} /{key} {version}\r\nHost: x\r\n{connection}");
        let put = format!("{}Content-Length: {}\r\n\r\n{key}", head("PUT"), key.len());
        asked_then_half_closed(put, &[(204, "")]).await;
        asked_then_half_closed(format!("{}\r\n", head("GET")), &[(200, key)]).await;
    }
    let both = "PUT /both HTTP/1.1\r\nHost: x\r\nContent-Length: 4\r\n\r\nboth\
                GET /both HTTP/1.1\r\nHost: x\r\n\r\n";
    asked_then_half_closed(both.to_string(), &[(204, ""), (200, "both")]).await;
    for key in ["kept", "closed", "old", "both"] {
        assert_eq!(c.get(1, key).await, Some((200, key.to_string())), "{key}");
    }
}

/// The request target `*` is the key `*` for every method but `OPTIONS`, as in the original,
/// whose key is the request target (Go's server takes `*` for any method): `GET *` is `404`
/// until `PUT *` stores it, `POST *` and `DELETE *` are a bad id, another method is `405`, and
/// the key is not `/*`. The connection is kept throughout. Before, each was `400` (not a
/// path).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_target_asterisk_is_the_key_asterisk() {
    let c = common::ProcCluster::start(1, &[]).await;
    let mut conn = connect(&c).await;
    let (status, head, reason) = exchange(&mut conn, "GET * HTTP/1.1\r\nHost: x\r\n\r\n").await;
    assert_eq!(status, 404, "GET * before PUT *: {head}\n{reason}");
    assert!(reason.contains(r#""*""#), "{reason}");
    one_line(&reason);
    let put = "PUT * HTTP/1.1\r\nHost: x\r\nContent-Length: 4\r\n\r\nstar";
    assert_eq!(exchange(&mut conn, put).await.0, 204, "PUT *");
    let (status, head, value) = exchange(&mut conn, "GET * HTTP/1.1\r\nHost: x\r\n\r\n").await;
    assert_eq!((status, value.as_str()), (200, "star"), "GET *: {head}");
    let (status, head, reason) = exchange(&mut conn, "GET /* HTTP/1.1\r\nHost: x\r\n\r\n").await;
    assert_eq!(status, 404, "GET /* is another key: {head}\n{reason}");
    for request in [
        "POST * HTTP/1.1\r\nHost: x\r\nContent-Length: 18\r\n\r\nhttp://127.0.0.1:1",
        "DELETE * HTTP/1.1\r\nHost: x\r\n\r\n",
    ] {
        let (status, head, reason) = exchange(&mut conn, request).await;
        assert_eq!(status, 400, "{request:?}: {head}\n{reason}");
        assert!(reason.contains("bad node id"), "{reason}");
        one_line(&reason);
    }
    let (status, head, reason) = exchange(&mut conn, "PATCH * HTTP/1.1\r\nHost: x\r\n\r\n").await;
    assert_eq!(status, 405, "PATCH *: {head}\n{reason}");
    assert_eq!(allow_headers(&head), ["PUT", "GET", "POST", "DELETE"]);
    one_line(&reason);
    assert_serving_on(&mut conn, "after-asterisk").await;
}

/// A target that is neither a path nor `*` but starts like a URL scheme (`h:1`,
/// `localhost:9121`; hyper takes it as authority-form) is a key, as in the original, whose key
/// is the request target, which Go's server takes as a URI: `GET h:1` is `404` until `PUT h:1`
/// stores it, spelt as sent (`H:1` and `/h:1` are other keys); `POST` and `DELETE` of it are a
/// bad id, and another method `405`, as there. A target Go refuses (`127.0.0.1:9121`, `k`)
/// stays `400`. Before, every such target was `400` (not a path).
#[tokio::test(start_paused = true)]
async fn a_target_go_takes_as_a_uri_is_a_key() {
    let (cluster, api) = single_node().await;
    let (s, body) = api.call(Method::GET, "localhost:9121", vec![]).await;
    assert_eq!(s, StatusCode::NOT_FOUND, "GET localhost:9121: {body}");
    assert!(body.contains(r#""localhost:9121""#), "{body}");
    one_line(&body);
    let (s, body) = api.call(Method::PUT, "h:1", b"opaque".to_vec()).await;
    assert_eq!(s, StatusCode::NO_CONTENT, "PUT h:1: {body}");
    assert_eq!(
        api.call(Method::GET, "h:1", vec![]).await,
        (StatusCode::OK, "opaque".to_string())
    );
    // Spelt as sent: nothing of it is decoded, as Go decodes nothing of it (a `%` is let
    // through in the user part alone).
    let (s, body) = api.call(Method::PUT, "u:p%41@h:1", b"kept".to_vec()).await;
    assert_eq!(s, StatusCode::NO_CONTENT, "PUT u:p%41@h:1: {body}");
    assert_eq!(
        api.call(Method::GET, "u:p%41@h:1", vec![]).await,
        (StatusCode::OK, "kept".to_string())
    );
    for other in ["H:1", "/h:1", "u:pA@h:1", "u:p%zz@h:1"] {
        let (s, body) = api.call(Method::GET, other, vec![]).await;
        assert_eq!(
            s,
            StatusCode::NOT_FOUND,
            "GET {other} is another key: {body}"
        );
    }
    for method in [Method::POST, Method::DELETE] {
        let (s, body) = api
            .call(method.clone(), "h:5", b"http://127.0.0.1:1".to_vec())
            .await;
        assert_eq!(s, StatusCode::BAD_REQUEST, "{method} h:5: {body}");
        assert!(body.contains("bad node id"), "{body}");
        one_line(&body);
    }
    let (s, body) = api.call(Method::OPTIONS, "h:1", vec![]).await;
    assert_eq!(s, StatusCode::METHOD_NOT_ALLOWED, "OPTIONS h:1: {body}");
    for refused in ["127.0.0.1:9121", "[::1]:80", "h@x:1", "k"] {
        let (s, body) = api.call(Method::GET, refused, vec![]).await;
        assert_eq!(s, StatusCode::BAD_REQUEST, "GET {refused}: {body}");
        assert!(body.contains("must start with /"), "{body}");
        one_line(&body);
    }
    api.assert_serving("after-uri-targets").await;
    cluster.shutdown().await;
}

/// A target in absolute form (`PUT http://host/k`, as a client sends it to a proxy) names
/// the resource of its path, whatever its host (RFC 9112): the key is its decoded path, as
/// for `PUT /k`, and `POST`/`DELETE http://host/<id>` name member `<id>`. Deliberately not
/// the original's answer, whose key was the whole target (`http://host/k`, a key that
/// `GET /k` did not find) and which parsed `ttp://host/<id>` as the id (`400`).
#[tokio::test(start_paused = true)]
async fn an_absolute_target_names_the_key_of_its_path() {
    let (cluster, api) = single_node().await;
    let (s, body) = api
        .call(
            Method::PUT,
            "http://node.example/abs%20k?q=1",
            b"v".to_vec(),
        )
        .await;
    assert_eq!(s, StatusCode::NO_CONTENT, "{body}");
    for get in ["/abs%20k", "http://another:1/abs%20k"] {
        assert_eq!(
            api.call(Method::GET, get, vec![]).await,
            (StatusCode::OK, "v".to_string()),
            "GET {get}"
        );
    }
    let (s, body) = api
        .call(Method::DELETE, "http://node.example/7", vec![])
        .await;
    assert_eq!(s, StatusCode::NOT_FOUND, "DELETE of member 7: {body}");
    one_line(&body);
    let (s, body) = api
        .call(Method::GET, "http://node.example/-/health", vec![])
        .await;
    assert_eq!((s, body.as_str()), (StatusCode::OK, "ok\n"));
    cluster.shutdown().await;
}

/// A `CONNECT` is `405` with the original's `Allow` headers whatever its target, as the
/// original's handler answers any method but its four: Go's server takes the `host:port`
/// target a `CONNECT` carries (and needs no `Host` header with it). Its body, if any, is read
/// and the connection kept, as by Go. Before, a `host:port` target was `400` (not a path).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn connect_is_405_whatever_its_target() {
    let c = common::ProcCluster::start(1, &[]).await;
    let mut conn = connect(&c).await;
    for request in [
        "CONNECT example.com:443 HTTP/1.1\r\nHost: example.com:443\r\n\r\n",
        "CONNECT example.com:443 HTTP/1.1\r\n\r\n",
        "CONNECT 127.0.0.1:1 HTTP/1.1\r\nHost: x\r\nContent-Length: 3\r\n\r\nabc",
        "CONNECT /k HTTP/1.1\r\nHost: x\r\n\r\n",
    ] {
        let (status, head, reason) = exchange(&mut conn, request).await;
        assert_eq!(status, 405, "{request:?}: {head}\n{reason}");
        assert_eq!(
            allow_headers(&head),
            ["PUT", "GET", "POST", "DELETE"],
            "{request:?}"
        );
        assert!(
            !head.to_ascii_lowercase().contains("\r\nconnection: close"),
            "{request:?}: {head}"
        );
        one_line(&reason);
    }
    assert_serving_on(&mut conn, "after-connect").await;
    // HTTP/1.0 closes after its answer, as it does for any request without keep-alive.
    let mut conn = connect(&c).await;
    let (status, head, _) = exchange(&mut conn, "CONNECT example.com:443 HTTP/1.0\r\n\r\n").await;
    assert_eq!(status, 405, "{head}");
    assert_closed(&mut conn, "CONNECT over HTTP/1.0").await;
}

/// A client whose `Expect` lists `100-continue` (`foo, 100-continue`) may wait for the
/// `100 Continue` before it sends its body, which hyper does not send for a list: it gets its
/// `417` at once, not once the slow-body rule gives up on the body (30 s), and the connection
/// is closed. Before, it waited the 30 s.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_client_waiting_on_a_listed_100_continue_gets_its_417_at_once() {
    let c = common::ProcCluster::start(1, &[]).await;
    let mut conn = connect(&c).await;
    conn.write_all(
        b"PUT /exp HTTP/1.1\r\nHost: x\r\nExpect: foo, 100-continue\r\nContent-Length: 3\r\n\r\n",
    )
    .await
    .expect("sending a head");
    let (status, head, reason) =
        tokio::time::timeout(Duration::from_secs(5), read_answer(&mut conn))
            .await
            .expect("the 417 within 5 s, its body never sent");
    assert_eq!(status, 417, "{head}\n{reason}");
    assert!(
        head.to_ascii_lowercase().contains("\r\nconnection: close"),
        "{head}"
    );
    one_line(&reason);
    assert_closed(&mut conn, "a listed 100-continue").await;
    assert_serving_on(&mut connect(&c).await, "after-a-waiting-417").await;
}

/// A new member's peer URL that is this node's own REST API (`--port`, here the default
/// 9121 on 127.0.0.1, in any spelling of that listener) is `400` with a one-line reason, and
/// nothing is proposed: such a member could never be reached, and counting in the quorum, it
/// left a single node unable to commit anything, its removal included (the original accepted
/// it, as this node did). The same host at another port, a peer's, is still added.
#[tokio::test(start_paused = true)]
async fn a_peer_url_that_is_this_nodes_rest_api_is_refused() {
    let (cluster, api) = single_node().await;
    for url in ["http://127.0.0.1:9121", "http://localhost:9121/"] {
        let (s, body) = api.call(Method::POST, "/2", url.into()).await;
        assert_eq!(s, StatusCode::BAD_REQUEST, "POST /2 {url}: {body}");
        assert!(body.contains("REST API (--port 9121)"), "{body}");
        one_line(&body);
    }
    api.assert_serving("after-own-rest-url").await;
    let (s, body) = api.call(Method::GET, "/-/members", vec![]).await;
    assert_eq!(s, StatusCode::OK);
    assert!(!body.contains("\"id\":2"), "{body}");
    let (s, body) = api
        .call(Method::POST, "/2", b"http://127.0.0.1:9122".to_vec())
        .await;
    assert_eq!(
        s,
        StatusCode::NO_CONTENT,
        "another port of the same host: {body}"
    );
    cluster.shutdown().await;
}

/// The same refusal by the binary, whose REST port is the one it bound: `POST /2` with its
/// own REST URL is `400`, and the node serves on alone.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_binary_refuses_its_own_rest_url_as_a_peer_url() {
    let c = common::ProcCluster::start(1, &[]).await;
    let own = c.url(1);
    let localhost = own.replacen("127.0.0.1", "localhost", 1);
    for url in [own.clone(), localhost] {
        let r = c
            .http
            .post(format!("{own}/2"))
            .body(url.clone())
            .send()
            .await
            .unwrap_or_else(|e| panic!("POST /2 {url}: {e}"));
        assert_eq!(r.status().as_u16(), 400, "POST /2 {url}");
        let reason = r.text().await.expect("a reason");
        assert!(reason.contains("REST API"), "{reason}");
        one_line(&reason);
    }
    assert_serving_on(&mut connect(&c).await, "after-own-rest-url").await;
}

/// A new member's peer URL that is another member's REST API is `400` too, and nothing is
/// proposed: that member tells where its REST API listens when the strict reconfiguration
/// check probes it, and its messages to the new member would go to that REST API (the
/// original accepted it). The same host at another port is still added.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_peer_url_that_is_another_members_rest_api_is_refused() {
    let c = common::ProcCluster::start(2, &[]).await;
    let other = c.url(2);
    let localhost = other.replacen("127.0.0.1", "localhost", 1);
    for url in [other.clone(), localhost] {
        let r = c
            .http
            .post(format!("{}/3", c.url(1)))
            .body(url.clone())
            .send()
            .await
            .unwrap_or_else(|e| panic!("POST /3 {url}: {e}"));
        assert_eq!(r.status().as_u16(), 400, "POST /3 {url}");
        let reason = r.text().await.expect("a reason");
        assert!(reason.contains("node 2's REST API"), "{reason}");
        one_line(&reason);
    }
    let members = c.status(1).await.expect("a status")["members"].to_string();
    assert!(!members.contains("\"id\":3"), "{members}");
    assert_serving_on(&mut connect(&c).await, "after-another-rest-url").await;
    let free = common::free_ports(1)[0];
    let r = c
        .http
        .post(format!("{}/3", c.url(1)))
        .body(format!("http://127.0.0.1:{free}"))
        .send()
        .await
        .expect("POST /3 at a free port");
    assert_eq!(r.status().as_u16(), 204, "{:?}", r.text().await);
}
