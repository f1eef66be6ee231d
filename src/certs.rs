//! `raftexample certs`: a CA and the certificates a TLS cluster needs, in one command, on
//! rcgen (ECDSA P-256 keys). Made for trying TLS out and for the tests, as etcd's docs use
//! cfssl: the CA key sits next to the certificates, unencrypted.
//!
//! Files, in `--out`: `ca.crt` + `ca.key`; `node<N>.crt` + `.key` for nodes 1..=`--nodes`,
//! valid for `--hosts` and for both server and client use (one certificate per node serves
//! both ports, and is the client certificate it presents to its peers); `client.crt` + `.key`
//! for curl. A file that exists is kept; an existing CA signs whatever is new, so running the
//! command again with `--nodes 4` adds node 4's certificate to the same CA.

use crate::disk::IoError;
use std::fs::OpenOptions;
use std::io::Write;
use std::path::{Path, PathBuf};

use rcgen::{
    BasicConstraints, CertificateParams, DnType, ExtendedKeyUsagePurpose, IsCa, Issuer, KeyPair,
    KeyUsagePurpose,
};

/// Why certificates could not be made; each names the file.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// A file could not be read or written.
    #[error(transparent)]
    Io(#[from] IoError),
    /// rcgen refused a parameter (a host name that is not a DNS name or an address) or a key.
    #[error("{what}: {source}")]
    Rcgen {
        /// What was being made.
        what: String,
        /// rcgen's complaint.
        source: rcgen::Error,
    },
    /// Only one of a certificate and its key exists (`ca.crt` and `ca.key`, or a node's): made
    /// again, the other would be lost or no longer match.
    #[error("{0} exists without its partner; remove it, or put both back")]
    HalfPair(PathBuf),
    /// A node's or the client's certificate is in the folder, and the CA that signed it is
    /// not.
    #[error(
        "{0} was signed by a CA whose ca.crt and ca.key are gone: put them back, or remove the \
         certificates and keys of the nodes and the client to make everything anew"
    )]
    Orphan(PathBuf),
}

/// The start of the CA's name; each new CA adds an id of its own ([`ca_name`]).
const CA_NAME: &str = "raftexample CA";

/// A new CA's name: [`CA_NAME`] and 8 random hex digits. TLS looks a certificate's issuer up
/// by name: when every run's CA had the same one, a certificate from another run was taken
/// for one of this CA's and failed on its signature ("decrypt error", `BadSignature`), not
/// as a certificate of an unknown CA (found by a hands-on campaign).
fn ca_name() -> String {
    format!("{CA_NAME} {:08x}", rand::random::<u32>())
}

/// Makes whatever is missing in `out`; tells `log` what it wrote and what it kept.
pub fn run(out: &Path, nodes: u64, hosts: &[String], log: &mut dyn Write) -> Result<(), Error> {
    std::fs::create_dir_all(out).map_err(IoError::at(out))?;
    let ca = ca(out, log)?;
    for n in 1..=nodes {
        let params = leaf_params(
            &format!("node{n}"),
            hosts,
            &[
                ExtendedKeyUsagePurpose::ServerAuth,
                ExtendedKeyUsagePurpose::ClientAuth,
            ],
        )?;
        leaf(out, &format!("node{n}"), params, &ca, log)?;
    }
    let client = leaf_params("client", &[], &[ExtendedKeyUsagePurpose::ClientAuth])?;
    leaf(out, "client", client, &ca, log)
}

fn ca_params() -> CertificateParams {
    let mut params = CertificateParams::default();
    params
        .distinguished_name
        .push(DnType::CommonName, ca_name());
    params.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
    params.key_usages = vec![
        KeyUsagePurpose::KeyCertSign,
        KeyUsagePurpose::CrlSign,
        KeyUsagePurpose::DigitalSignature,
    ];
    params
}

/// The certificates of nodes and the client in `out` (`node<N>.crt`, `client.crt`), sorted.
fn leaves_in(out: &Path) -> Vec<PathBuf> {
    let mut leaves: Vec<PathBuf> = std::fs::read_dir(out)
        .into_iter()
        .flatten()
        .flatten()
        .map(|e| e.path())
        .filter(|p| {
            let name = p.file_name().map(|n| n.to_string_lossy().into_owned());
            name.is_some_and(|n| {
                n == "client.crt" || (n.starts_with("node") && n.ends_with(".crt"))
            })
        })
        .collect();
    leaves.sort();
    leaves
}

/// Whether the certificate at `cert` and its key at `key` both exist (`false`: neither does).
/// Half a pair is refused, the CA's or a node's: made again, a lone key would be overwritten,
/// a lone certificate replaced by one that no longer matches what was handed out with it.
fn pair_exists(cert: &Path, key: &Path) -> Result<bool, Error> {
    match (cert.exists(), key.exists()) {
        (true, true) => Ok(true),
        (false, false) => Ok(false),
        (true, false) => Err(Error::HalfPair(cert.to_path_buf())),
        (false, true) => Err(Error::HalfPair(key.to_path_buf())),
    }
}

/// The CA of `out`: loaded from `ca.crt` and `ca.key` if they exist, made otherwise.
fn ca(out: &Path, log: &mut dyn Write) -> Result<Issuer<'static, KeyPair>, Error> {
    let cert_path = out.join("ca.crt");
    let key_path = out.join("ca.key");
    if pair_exists(&cert_path, &key_path)? {
        let pem = std::fs::read_to_string(&key_path).map_err(IoError::at(&key_path))?;
        let key = KeyPair::from_pem(&pem).map_err(|source| Error::Rcgen {
            what: format!("reading {}", key_path.display()),
            source,
        })?;
        // The name is the certificate's, not made again: what is new names as its issuer the
        // CA that clients and peers trust (an older run's, a CA of the user's own).
        let cert = std::fs::read_to_string(&cert_path).map_err(IoError::at(&cert_path))?;
        let issuer = Issuer::from_ca_cert_pem(&cert, key).map_err(|source| Error::Rcgen {
            what: format!("reading {}", cert_path.display()),
            source,
        })?;
        let _ = writeln!(log, "kept {} (signs what is new)", cert_path.display());
        return Ok(issuer);
    }
    // A certificate of the old CA left beside a new one would be kept as it is and trusted by
    // nobody: the cluster's TLS fails at the next start, naming no file.
    if let Some(orphan) = leaves_in(out).into_iter().next() {
        return Err(Error::Orphan(orphan));
    }
    let rcgen_err = |source| Error::Rcgen {
        what: "making the CA".into(),
        source,
    };
    let key = KeyPair::generate().map_err(rcgen_err)?;
    let params = ca_params();
    let cert = params.self_signed(&key).map_err(rcgen_err)?;
    write_file(&cert_path, &cert.pem(), false)?;
    write_file(&key_path, &key.serialize_pem(), true)?;
    let _ = writeln!(log, "wrote {}", cert_path.display());
    Ok(Issuer::new(params, key))
}

fn leaf_params(
    name: &str,
    hosts: &[String],
    usages: &[ExtendedKeyUsagePurpose],
) -> Result<CertificateParams, Error> {
    // rcgen takes each host as an IP address if it parses as one, as a DNS name otherwise.
    let mut params = CertificateParams::new(hosts.to_vec()).map_err(|source| Error::Rcgen {
        what: format!("the hosts of {name} ({})", hosts.join(",")),
        source,
    })?;
    params.distinguished_name.push(DnType::CommonName, name);
    params.key_usages = vec![KeyUsagePurpose::DigitalSignature];
    params.extended_key_usages = usages.to_vec();
    params.use_authority_key_identifier_extension = true;
    Ok(params)
}

fn leaf(
    out: &Path,
    name: &str,
    params: CertificateParams,
    ca: &Issuer<'static, KeyPair>,
    log: &mut dyn Write,
) -> Result<(), Error> {
    let cert_path = out.join(format!("{name}.crt"));
    let key_path = out.join(format!("{name}.key"));
    if pair_exists(&cert_path, &key_path)? {
        let _ = writeln!(log, "kept {}", cert_path.display());
        return Ok(());
    }
    let rcgen_err = |source| Error::Rcgen {
        what: format!("making {}", cert_path.display()),
        source,
    };
    let key = KeyPair::generate().map_err(rcgen_err)?;
    let cert = params.signed_by(&key, ca).map_err(rcgen_err)?;
    write_file(&cert_path, &cert.pem(), false)?;
    write_file(&key_path, &key.serialize_pem(), true)?;
    let _ = writeln!(log, "wrote {}", cert_path.display());
    Ok(())
}

fn write_file(path: &Path, text: &str, private: bool) -> Result<(), Error> {
    let mut options = OpenOptions::new();
    options.write(true).create(true).truncate(true);
    #[cfg(unix)]
    if private {
        use std::os::unix::fs::OpenOptionsExt;
        options.mode(0o600);
    }
    #[cfg(not(unix))]
    let _ = private;
    let mut file = options.open(path).map_err(IoError::at(path))?;
    Ok(file.write_all(text.as_bytes()).map_err(IoError::at(path))?)
}

#[cfg(test)]
mod tests {
    use super::*;
    use rustls::pki_types::pem::PemObject;
    use rustls::pki_types::{CertificateDer, PrivateKeyDer, ServerName};
    use rustls::{ClientConfig, RootCertStore, ServerConfig};
    use std::sync::Arc;

    fn provider() -> Arc<rustls::crypto::CryptoProvider> {
        Arc::new(rustls::crypto::ring::default_provider())
    }

    fn roots(dir: &Path) -> Arc<RootCertStore> {
        let mut roots = RootCertStore::empty();
        for cert in CertificateDer::pem_file_iter(dir.join("ca.crt")).expect("ca.crt") {
            roots
                .add(cert.expect("a PEM certificate"))
                .expect("a usable CA");
        }
        Arc::new(roots)
    }

    /// `dir`'s certificate and key called `name` (`node1`, `client`).
    fn identity(dir: &Path, name: &str) -> (Vec<CertificateDer<'static>>, PrivateKeyDer<'static>) {
        let certs = CertificateDer::pem_file_iter(dir.join(format!("{name}.crt")))
            .expect("a certificate file")
            .collect::<Result<_, _>>()
            .expect("PEM certificates");
        let key = PrivateKeyDer::from_pem_file(dir.join(format!("{name}.key"))).expect("a key");
        (certs, key)
    }

    /// The subject of `dir`'s CA (DER, as TLS compares issuers' names), as `ca.crt` has it.
    fn ca_subject(dir: &Path) -> Vec<u8> {
        roots(dir).roots[0].subject.as_ref().to_vec()
    }

    /// A handshake, in memory, between a server with `server_dir`'s `node1` that asks for a
    /// client certificate of `server_dir`'s CA, and a client with `client_dir`'s `client`
    /// (`localhost`, a name of every node's certificate here). `Err` names the side that
    /// refused, with rustls's reason.
    fn handshake(
        server_dir: &Path,
        client_dir: &Path,
        client: &str,
    ) -> Result<(), (&'static str, rustls::Error)> {
        let verifier = rustls::server::WebPkiClientVerifier::builder_with_provider(
            roots(server_dir),
            provider(),
        )
        .build()
        .expect("a client verifier");
        let (certs, key) = identity(server_dir, "node1");
        let server = ServerConfig::builder_with_provider(provider())
            .with_safe_default_protocol_versions()
            .expect("the default versions")
            .with_client_cert_verifier(verifier)
            .with_single_cert(certs, key)
            .expect("the server's identity");
        let (certs, key) = identity(client_dir, client);
        let client = ClientConfig::builder_with_provider(provider())
            .with_safe_default_protocol_versions()
            .expect("the default versions")
            .with_root_certificates(roots(server_dir))
            .with_client_auth_cert(certs, key)
            .expect("the client's identity");
        let name = ServerName::try_from("localhost").expect("a DNS name");
        let mut client =
            rustls::ClientConnection::new(Arc::new(client), name).map_err(|e| ("client", e))?;
        let mut server =
            rustls::ServerConnection::new(Arc::new(server)).map_err(|e| ("server", e))?;
        // Each round moves what one side wrote to the other; a handshake takes a few.
        for _ in 0..16 {
            let mut bytes = Vec::new();
            while client.wants_write() {
                client.write_tls(&mut bytes).expect("writing to memory");
            }
            server
                .read_tls(&mut &bytes[..])
                .expect("reading from memory");
            server.process_new_packets().map_err(|e| ("server", e))?;
            let mut bytes = Vec::new();
            while server.wants_write() {
                server.write_tls(&mut bytes).expect("writing to memory");
            }
            client
                .read_tls(&mut &bytes[..])
                .expect("reading from memory");
            client.process_new_packets().map_err(|e| ("client", e))?;
            if !client.is_handshaking() && !server.is_handshaking() {
                return Ok(());
            }
        }
        panic!("the handshake neither ended nor failed in 16 rounds");
    }

    /// Two runs make two CAs, each with a name of its own, and a client certificate of one,
    /// shown to a server that trusts the other, is refused as one of an unknown CA. With one
    /// name for every CA, it was taken for the server CA's and failed on its signature: curl
    /// showed "decrypt error", a node's log `BadSignature` (found by a hands-on campaign).
    #[test]
    fn a_certificate_of_another_run_is_refused_as_one_of_an_unknown_ca() {
        let (a, b) = (tempfile::TempDir::new(), tempfile::TempDir::new());
        let (a, b) = (a.expect("temp dir"), b.expect("temp dir"));
        let hosts = vec!["localhost".to_string()];
        run(a.path(), 1, &hosts, &mut Vec::new()).expect("run A");
        run(b.path(), 1, &hosts, &mut Vec::new()).expect("run B");
        let (subject_a, subject_b) = (ca_subject(a.path()), ca_subject(b.path()));
        assert_ne!(subject_a, subject_b, "two runs made CAs of the same name");
        for subject in [&subject_a, &subject_b] {
            let named = subject
                .windows(CA_NAME.len() + 1)
                .any(|w| w == b"raftexample CA ");
            assert!(
                named,
                "the CA's name is not raftexample CA and an id: {subject:x?}"
            );
        }
        handshake(a.path(), a.path(), "client").expect("A's own client gets in");
        for foreign in ["client", "node1"] {
            let refused = handshake(a.path(), b.path(), foreign).expect_err("B's gets in");
            assert_eq!(
                refused,
                (
                    "server",
                    rustls::Error::InvalidCertificate(rustls::CertificateError::UnknownIssuer)
                ),
                "B's {foreign} certificate shown to A's node"
            );
        }
    }

    fn names(dir: &Path) -> Vec<String> {
        let mut names: Vec<String> = std::fs::read_dir(dir)
            .expect("the folder")
            .map(|e| {
                e.expect("an entry")
                    .file_name()
                    .to_string_lossy()
                    .into_owned()
            })
            .collect();
        names.sort();
        names
    }

    /// One command makes the CA, the nodes' and the client's files; a second run with more
    /// nodes keeps them all and adds only the new node, signed by the same CA.
    #[test]
    fn certs_are_made_once_and_extended_with_the_same_ca() {
        let dir = tempfile::TempDir::new().expect("temp dir");
        let hosts = vec!["127.0.0.1".to_string(), "localhost".to_string()];
        run(dir.path(), 2, &hosts, &mut Vec::new()).expect("first run");
        assert_eq!(
            names(dir.path()),
            [
                "ca.crt",
                "ca.key",
                "client.crt",
                "client.key",
                "node1.crt",
                "node1.key",
                "node2.crt",
                "node2.key"
            ]
        );
        let ca_before = std::fs::read(dir.path().join("ca.crt")).expect("ca.crt");
        let node1_before = std::fs::read(dir.path().join("node1.crt")).expect("node1.crt");
        let mut log = Vec::new();
        run(dir.path(), 3, &hosts, &mut log).expect("second run");
        let log = String::from_utf8(log).expect("UTF-8");
        assert!(log.contains("wrote") && log.contains("node3.crt"), "{log}");
        assert_eq!(
            std::fs::read(dir.path().join("ca.crt")).expect("ca"),
            ca_before
        );
        assert_eq!(
            std::fs::read(dir.path().join("node1.crt")).expect("node1"),
            node1_before
        );
        // The new node's certificate names the kept CA as its issuer, and its signature
        // holds: the node that presents it gets in.
        handshake(dir.path(), dir.path(), "node3").expect("node3 is one of the CA's");
        #[cfg(unix)]
        {
            use std::os::unix::fs::PermissionsExt;
            let mode = std::fs::metadata(dir.path().join("node3.key"))
                .expect("node3.key")
                .permissions()
                .mode();
            assert_eq!(
                mode & 0o077,
                0,
                "a key file is readable by others: {mode:o}"
            );
        }
    }

    #[test]
    fn half_a_ca_is_refused() {
        let dir = tempfile::TempDir::new().expect("temp dir");
        std::fs::write(dir.path().join("ca.crt"), "x").expect("write");
        let err = run(dir.path(), 1, &["localhost".into()], &mut Vec::new())
            .expect_err("a CA certificate without its key");
        assert!(err.to_string().contains("ca.crt"), "{err}");
    }

    /// A CA removed with the nodes' files left beside it is not made anew: the new CA would
    /// not have signed them (it did, silently, before).
    #[test]
    fn a_ca_gone_from_beside_its_certificates_is_not_made_anew() {
        let dir = tempfile::TempDir::new().expect("temp dir");
        let hosts = vec!["localhost".to_string()];
        run(dir.path(), 1, &hosts, &mut Vec::new()).expect("first run");
        std::fs::remove_file(dir.path().join("ca.crt")).expect("remove");
        std::fs::remove_file(dir.path().join("ca.key")).expect("remove");
        let err = run(dir.path(), 1, &hosts, &mut Vec::new()).expect_err("orphans");
        assert!(err.to_string().contains("client.crt"), "{err}");
        assert!(!dir.path().join("ca.crt").exists(), "a new CA was made");
        // With everything removed, it starts anew.
        for name in ["client.crt", "client.key", "node1.crt", "node1.key"] {
            std::fs::remove_file(dir.path().join(name)).expect("remove");
        }
        run(dir.path(), 1, &hosts, &mut Vec::new()).expect("a new start");
    }

    /// A node's key without its certificate (or the other way round) is refused too, and left
    /// as it was: it used to be overwritten by a new pair.
    #[test]
    fn half_a_nodes_pair_is_refused_and_kept() {
        let dir = tempfile::TempDir::new().expect("temp dir");
        let hosts = vec!["localhost".to_string()];
        run(dir.path(), 1, &hosts, &mut Vec::new()).expect("first run");
        for (gone, kept) in [("node1.crt", "node1.key"), ("node1.key", "node1.crt")] {
            let kept_path = dir.path().join(kept);
            let before = std::fs::read(&kept_path).expect("the kept half");
            let gone_path = dir.path().join(gone);
            let gone_bytes = std::fs::read(&gone_path).expect("the other half");
            std::fs::remove_file(&gone_path).expect("remove");
            let err = run(dir.path(), 1, &hosts, &mut Vec::new()).expect_err("half a pair");
            assert!(err.to_string().contains(kept), "{err}");
            assert_eq!(std::fs::read(&kept_path).expect("still there"), before);
            assert!(!gone_path.exists(), "the missing half was made anew");
            std::fs::write(&gone_path, gone_bytes).expect("put it back");
        }
    }
}
