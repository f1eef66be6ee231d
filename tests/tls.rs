//! TLS on both ports, with etcd's flags: the README's curl walk-through with
//! `--cacert`/`--cert`/`--key`, clients and peers without the right certificate shut out at
//! the handshake, a node with another CA unable to join, and the flag checks.

mod common;

use std::path::Path;
use std::process::Command;
use std::sync::Arc;
use std::time::Duration;

use common::{ProcCluster, make_certs, tls_client, wait_for};
use raftexample::Config;
use raftexample::transport::{HEADER_CLUSTER, HEADER_FROM, HEADER_TO, STREAM_PATH};
use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, PrivateKeyDer, ServerName};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

/// Runs curl with `args`; returns its exit code and what it printed. The README's commands,
/// as a user types them.
fn curl(args: &[&str]) -> (i32, String) {
    let out = Command::new("curl")
        .args(["-sS", "--max-time", "10", "-w", "\n%{http_code}"])
        .args(args)
        .output()
        .expect("curl runs (the README's walk-through needs it; .ci/run installs it)");
    let text = format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    (out.status.code().unwrap_or(-1), text)
}

fn path(dir: &Path, name: &str) -> String {
    dir.join(name).display().to_string()
}

/// The README's walk-through over TLS: curl with the CA and the client certificate writes
/// and reads; without a client certificate, or with one from another CA, the handshake
/// fails and nothing is written.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn curl_gets_in_only_with_a_client_certificate_of_the_ca() {
    let c = ProcCluster::start_tls(3, &[]).await;
    let certs = c.tls.clone().expect("a TLS cluster");
    let other = c.dir.path().join("other-ca");
    make_certs(&other, 1);
    let (ca, cert, key) = (
        path(&certs, "ca.crt"),
        path(&certs, "client.crt"),
        path(&certs, "client.key"),
    );
    let url = |id: u64, key: &str| format!("{}/{key}", c.url(id));
    let good = ["--cacert", &ca, "--cert", &cert, "--key", &key];

    let put = wait_for(Duration::from_secs(15), "a PUT over TLS", || async {
        let (code, text) = curl(
            &[
                &good[..],
                &["-L", &url(1, "my-key"), "-XPUT", "-d", "hello"],
            ]
            .concat(),
        );
        (code == 0 && text.ends_with("204")).then_some(text)
    })
    .await;
    assert!(put.ends_with("204"), "{put}");
    let (code, text) = curl(&[&good[..], &["-L", &url(3, "my-key")]].concat());
    assert_eq!((code, text.as_str()), (0, "hello\n200"));

    // No client certificate: the server refuses the handshake.
    let (code, text) = curl(&["--cacert", &ca, "-XPUT", "-d", "x", &url(1, "stranger")]);
    assert_ne!(code, 0, "a client without a certificate got in: {text}");
    assert!(!text.ends_with("204"), "{text}");
    // A certificate from another CA: refused too.
    let (code, text) = curl(&[
        "--cacert",
        &ca,
        "--cert",
        &path(&other, "client.crt"),
        "--key",
        &path(&other, "client.key"),
        "-XPUT",
        "-d",
        "x",
        &url(1, "stranger"),
    ]);
    assert_ne!(code, 0, "a client of another CA got in: {text}");
    // Plain HTTP on the TLS port gets no answer of the store, but a 400 saying what to do, as
    // from Go's server (it was a TLS alert, which curl calls "HTTP/0.9").
    let (code, text) = curl(&[
        "-XPUT",
        "-d",
        "x",
        &url(1, "stranger").replacen("https://", "http://", 1),
    ]);
    assert_eq!(code, 0, "{text}");
    assert!(text.ends_with("\n400"), "{text}");
    assert!(text.contains("https://"), "{text}");

    let (code, text) = curl(&[&good[..], &[&format!("{}?stale", url(2, "stranger"))]].concat());
    assert!(
        code == 0 && text.ends_with("\n404"),
        "nothing was written: {text}"
    );
}

/// The rustls client config of a peer with `dir`'s certificate of `node`, trusting `ca_dir`'s CA.
fn peer_client(dir: &Path, node: u64, ca_dir: &Path) -> rustls::ClientConfig {
    let certs: Vec<CertificateDer<'static>> =
        CertificateDer::pem_file_iter(dir.join(format!("node{node}.crt")))
            .expect("a certificate file")
            .collect::<Result<_, _>>()
            .expect("PEM certificates");
    let key = PrivateKeyDer::from_pem_file(dir.join(format!("node{node}.key"))).expect("a key");
    let mut roots = rustls::RootCertStore::empty();
    for ca in CertificateDer::pem_file_iter(ca_dir.join("ca.crt")).expect("the CA") {
        roots
            .add(ca.expect("a CA certificate"))
            .expect("a usable CA");
    }
    rustls::ClientConfig::builder_with_provider(Arc::new(rustls::crypto::ring::default_provider()))
        .with_safe_default_protocol_versions()
        .expect("TLS versions")
        .with_root_certificates(roots)
        .with_client_auth_cert(certs, key)
        .expect("a client identity")
}

/// Sends one empty raft stream request from "node 2" to node 1's peer port over TLS with
/// `client`; returns the HTTP status, or the error that ended the exchange.
async fn raft_request(
    addr: &str,
    client: rustls::ClientConfig,
    cluster: u64,
) -> Result<u16, String> {
    let tcp = TcpStream::connect(addr).await.map_err(|e| e.to_string())?;
    let connector = tokio_rustls::TlsConnector::from(Arc::new(client));
    let name = ServerName::try_from("127.0.0.1").expect("an IP name");
    let mut tls = connector
        .connect(name, tcp)
        .await
        .map_err(|e| e.to_string())?;
    let head = format!(
        "POST {STREAM_PATH} HTTP/1.1\r\nhost: {addr}\r\n{HEADER_FROM}: 2\r\n{HEADER_TO}: 1\r\n\
         {HEADER_CLUSTER}: {cluster:x}\r\ncontent-length: 0\r\nconnection: close\r\n\r\n"
    );
    tls.write_all(head.as_bytes())
        .await
        .map_err(|e| e.to_string())?;
    let mut answer = Vec::new();
    tokio::time::timeout(Duration::from_secs(10), tls.read_to_end(&mut answer))
        .await
        .map_err(|_| "no answer".to_string())?
        .map_err(|e| e.to_string())?;
    let text = String::from_utf8_lossy(&answer);
    text.strip_prefix("HTTP/1.1 ")
        .and_then(|r| r.get(..3))
        .and_then(|s| s.parse().ok())
        .ok_or_else(|| format!("no HTTP answer: {text:?}"))
}

/// A node started with certificates of another CA cannot join: the members' handshakes with
/// it fail both ways, it never learns the cluster's identity, and the cluster keeps serving.
/// A peer client with another CA's certificate cannot deliver raft messages either, while the
/// same request with the cluster's own certificate is answered.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_node_with_another_ca_can_neither_join_nor_send_raft_messages() {
    let mut c = ProcCluster::start_tls(3, &[]).await;
    let certs = c.tls.clone().expect("a TLS cluster");
    let other = c.dir.path().join("other-ca");
    make_certs(&other, 4);
    let id = c.add_member(1).await;
    c.tls_dirs.insert(id, other.clone());
    c.spawn(id, &["--join"]);
    let refused = wait_for(
        Duration::from_secs(20),
        "node 4 to say why it is not admitted",
        || async {
            let log = c.log(id);
            log.lines()
                .find(|l| l.contains("not admitted yet"))
                .map(str::to_string)
        },
    )
    .await;
    assert!(
        refused.to_ascii_lowercase().contains("certificate"),
        "the reason names the certificate: {refused}"
    );
    c.put_ok(1, "still", "serving").await;
    c.wait_value(3, "still", "serving", false).await;
    // The members say so too, naming the address and rustls's reason: node 4 refused their
    // certificates, or they its (they logged nothing).
    let warned = wait_for(
        Duration::from_secs(20),
        "node 1 to warn about a failed peer handshake",
        || async {
            let log = c.log(1);
            log.lines()
                .find(|l| l.contains("WARN") && l.contains("TLS handshake on the peer port"))
                .map(str::to_string)
        },
    )
    .await;
    assert!(
        warned.contains("addr=127.0.0.1:")
            && (warned.contains("UnknownCA") || warned.contains("UnknownIssuer")),
        "the address and an unknown CA as the reason: {warned}"
    );
    assert!(
        !c.log(id).contains("learned the cluster's identity"),
        "node 4 learned the identity through a foreign CA"
    );
    // Node 4's REST port is its own (another CA): ask it with its own CA.
    let own = tls_client(&other, Some(&other));
    let text = own
        .get(format!("{}/-/status", c.url(id)))
        .send()
        .await
        .expect("node 4 answers its own clients")
        .text()
        .await
        .expect("a status");
    let status: serde_json::Value = serde_json::from_str(&text).expect("status JSON");
    assert_eq!(status["leader"], 0, "node 4 found a leader: {status}");

    let addr = c.peers[0].trim_start_matches("https://").to_string();
    let cluster = raftexample::membership::cluster_id("", &c.peers[..3]);
    let foreign = raft_request(&addr, peer_client(&other, 2, &certs), cluster).await;
    // Refused as a certificate of an unknown CA: when every run's CA had one name, the
    // signature check failed instead ("decrypt error").
    assert!(
        foreign.as_ref().is_err_and(|e| e.contains("UnknownCA")),
        "a foreign certificate is refused as one of an unknown CA: {foreign:?}"
    );
    let own = raft_request(&addr, peer_client(&certs, 2, &certs), cluster).await;
    assert_eq!(own, Ok(204), "the cluster's own certificate is answered");
}

/// With peer TLS, `POST /<id>` takes https:// URLs only; the refusal says why.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_tls_cluster_refuses_a_plain_member_url() {
    let c = ProcCluster::start_tls(3, &[]).await;
    let r = c
        .http
        .post(format!("{}/4", c.url(1)))
        .body("http://127.0.0.1:1")
        .send()
        .await
        .expect("POST");
    assert_eq!(r.status().as_u16(), 400);
    let text = r.text().await.expect("body");
    assert!(text.contains("https://"), "{text}");
}

/// Contradictory or incomplete TLS flags, or a peer certificate that does not name the host
/// of the node's own peer URL, stop the node before it touches its data dir, with
/// a message naming the flag or the file.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn tls_flags_are_checked_before_start() {
    let dir = tempfile::TempDir::new().expect("temp dir");
    let certs = dir.path().join("certs");
    make_certs(&certs, 2);
    let f = |name: &str| Some(certs.join(name));
    // Certificates that name `localhost` only, for URLs that say 127.0.0.1.
    let named = dir.path().join("named");
    raftexample::certs::run(&named, 1, &["localhost".into()], &mut Vec::new()).expect("certs");
    let base = Config {
        cluster: vec!["https://127.0.0.1:1".into()],
        data_dir: dir.path().join("data"),
        listen_host: "127.0.0.1".parse().expect("an address"),
        port: 0,
        ..Config::default()
    };
    let mut cases: Vec<(Config, &str)> = vec![
        (base.clone(), "--peer-cert-file"),
        (
            Config {
                cluster: vec!["https://127.0.0.1:1".into(), "http://127.0.0.1:2".into()],
                ..base.clone()
            },
            "mixes http:// and https://",
        ),
        (
            Config {
                cluster: vec!["http://127.0.0.1:1".into()],
                peer_cert_file: f("node1.crt"),
                peer_key_file: f("node1.key"),
                peer_trusted_ca_file: f("ca.crt"),
                ..base.clone()
            },
            "are for https:// peer URLs",
        ),
        (
            Config {
                cluster: vec!["http://127.0.0.1:1".into()],
                cert_file: f("node1.crt"),
                ..base.clone()
            },
            "--cert-file and --key-file go together",
        ),
        (
            Config {
                cluster: vec!["http://127.0.0.1:1".into()],
                cert_file: f("node1.crt"),
                key_file: f("node1.key"),
                client_cert_auth: true,
                ..base.clone()
            },
            "--client-cert-auth needs --trusted-ca-file",
        ),
        (
            Config {
                peer_cert_file: f("node1.crt"),
                peer_key_file: f("missing.key"),
                peer_trusted_ca_file: f("ca.crt"),
                ..base.clone()
            },
            "missing.key",
        ),
        (
            Config {
                peer_cert_file: f("node1.crt"),
                peer_key_file: f("node1.key"),
                peer_trusted_ca_file: f("node1.key"),
                ..base.clone()
            },
            "--peer-trusted-ca-file",
        ),
        // A key of another certificate: only the pair is wrong, and the error names both
        // files (it named only the flags).
        (
            Config {
                peer_cert_file: f("node1.crt"),
                peer_key_file: f("node2.key"),
                peer_trusted_ca_file: f("ca.crt"),
                ..base.clone()
            },
            "node2.key",
        ),
        (
            Config {
                cluster: vec!["http://127.0.0.1:1".into()],
                cert_file: f("node1.crt"),
                key_file: f("node2.key"),
                ..base.clone()
            },
            "--key-file",
        ),
    ];
    cases.push((
        Config {
            peer_cert_file: Some(named.join("node1.crt")),
            peer_key_file: Some(named.join("node1.key")),
            peer_trusted_ca_file: Some(named.join("ca.crt")),
            ..base.clone()
        },
        "does not name 127.0.0.1, the host of this node's peer URL https://127.0.0.1:1",
    ));
    for (config, wanted) in cases {
        let err = match raftexample::start(config.clone()).await {
            Ok(_) => panic!("started with bad TLS flags: {config:?}"),
            Err(err) => err.to_string(),
        };
        assert!(err.contains(wanted), "{wanted:?} not in {err:?}");
        if wanted.ends_with("node2.key") || wanted == "--key-file" {
            let cert = certs.join("node1.crt");
            let key = certs.join("node2.key");
            assert!(
                err.contains(&*cert.to_string_lossy()) && err.contains(&*key.to_string_lossy()),
                "the mismatched pair's files not named: {err:?}"
            );
        }
    }
    assert!(
        !dir.path().join("data").exists(),
        "a refused start created the data dir"
    );
}

/// The README's "growing the cluster" over TLS: node 4, with a certificate of the cluster's
/// CA, asks a member for the cluster's identity, joins, and catches up through a snapshot
/// (the members keep few entries), which travels on its own route and arrives on disk first.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_node_with_the_cluster_ca_joins_over_tls_and_gets_a_snapshot() {
    let mut c = ProcCluster::start_tls(
        3,
        &["--snapshot-count", "20", "--snapshot-catchup-entries", "5"],
    )
    .await;
    for i in 0..60 {
        c.put_ok(1, &format!("k{i}"), &format!("v{i}")).await;
    }
    let id = c.add_member(1).await;
    c.spawn(id, &["--join"]);
    c.wait_value(id, "k59", "v59", true).await;
    c.wait_value(id, "k0", "v0", true).await;
    let log = c.log(id);
    assert!(log.contains("learned the cluster's identity"), "{log}");
    assert!(
        log.contains("installed a snapshot from the leader"),
        "node 4 caught up without a snapshot"
    );
    c.put_ok(id, "from-4", "yes").await;
    c.wait_value(2, "from-4", "yes", false).await;
}

/// Children killed when the test ends, however it ends.
struct Children(Vec<std::process::Child>);

impl Drop for Children {
    fn drop(&mut self) {
        for child in &mut self.0 {
            let _ = child.kill();
            let _ = child.wait();
        }
    }
}

/// `Procfile.tls` as written (only its ports moved to free ones, and `certs/` made by
/// `raftexample certs`), then the README's TLS walk-through with curl: write through node 1,
/// read through node 3.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn procfile_tls_runs_the_readme_walkthrough() {
    let procfile = std::fs::read_to_string(concat!(env!("CARGO_MANIFEST_DIR"), "/Procfile.tls"))
        .expect("Procfile.tls");
    let dir = tempfile::TempDir::with_prefix("raftexample-procfile-tls-").expect("temp dir");
    make_certs(&dir.path().join("certs"), 3);
    let ports = common::free_ports(6);
    let moved = |line: &str| {
        let mut line = line.to_string();
        for n in 1..=3 {
            line = line.replace(&format!("{n}2379"), &ports[n - 1].to_string());
            line = line.replace(&format!("{n}2380"), &ports[n + 2].to_string());
        }
        line
    };
    let mut children = Children(Vec::new());
    for line in procfile
        .lines()
        .filter(|l| !l.starts_with('#') && l.contains(':'))
    {
        let (name, command) = line.split_once(':').expect("name: command");
        let command = moved(command);
        let mut words = command.split_whitespace();
        assert_eq!(words.next(), Some("./target/release/raftexample"), "{line}");
        let log = std::fs::File::create(dir.path().join(format!("{name}.log"))).expect("a log");
        children.0.push(
            Command::new(common::binary())
                .args(words)
                .args(["--listen-host", "127.0.0.1"])
                .current_dir(dir.path())
                .stderr(log)
                .spawn()
                .expect("starting a node of Procfile.tls"),
        );
    }
    assert_eq!(children.0.len(), 3, "Procfile.tls starts three nodes");
    let certs = dir.path().join("certs");
    let (ca, cert, key) = (
        path(&certs, "ca.crt"),
        path(&certs, "client.crt"),
        path(&certs, "client.key"),
    );
    let url = |node: usize| format!("https://127.0.0.1:{}/my-key", ports[node + 2]);
    let good = ["--cacert", &ca, "--cert", &cert, "--key", &key];
    wait_for(Duration::from_secs(20), "a PUT through node 1", || async {
        let (code, text) = curl(&[&good[..], &["-L", &url(1), "-XPUT", "-d", "foo"]].concat());
        (code == 0 && text.ends_with("204")).then_some(())
    })
    .await;
    let (code, text) = curl(&[&good[..], &["-L", &url(3)]].concat());
    assert_eq!((code, text.as_str()), (0, "foo\n200"));
}

/// The live page over TLS: a node asks its fellow members' peer ports for their REST URLs
/// over peer TLS, and every member's REST API is advertised as `https://`, so the page's
/// links and calls reach it.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_live_page_lists_every_member_at_its_https_url() {
    let mut c = ProcCluster::start_tls(3, &[]).await;
    c.wait_leader().await;
    let certs = c.tls.clone().expect("a TLS cluster");
    let want: Vec<String> = (1..=3).map(|id| c.url(id)).collect();
    assert!(want.iter().all(|u| u.starts_with("https://")), "{want:?}");
    // The client's own timeout (10 s) ends the stream if the URLs never show up.
    let mut response = tls_client(&certs, Some(&certs))
        .get(format!("{}/-/events", c.url(1)))
        .send()
        .await
        .expect("the event stream over TLS");
    assert_eq!(response.status(), 200);
    let mut seen = String::new();
    let listed_all = |text: &str| {
        text.lines()
            .filter_map(|l| l.strip_prefix("data: "))
            .filter_map(|d| serde_json::from_str::<serde_json::Value>(d).ok())
            .any(|v| (1..=3u64).all(|id| v["rest_urls"][id.to_string()] == want[id as usize - 1]))
    };
    while !listed_all(&seen) {
        match response.chunk().await {
            Ok(Some(bytes)) => seen.push_str(&String::from_utf8_lossy(&bytes)),
            end => panic!("the stream ended ({end:?}) before a status listed {want:?}:\n{seen}"),
        }
    }
}
