//! Fleet mode over `rediss://` (feature `tls`): a redis-server with TLS and a
//! CA, server and client certificates made in the test (rcgen). Skipped,
//! saying why, when redis-server is missing, unless CB_REQUIRE_REDIS=1.
//!
//! `cargo test -p cb-fleet --features tls --test tls`
#![cfg(feature = "tls")]

use std::io::Write;
use std::path::PathBuf;
use std::sync::{Mutex, OnceLock};
use std::time::Duration;

use cb_fleet::testing::{redis_available, replica, wait_until as eventually, RedisServer};
use cb_fleet::{Fleet, FleetError};
use cb_runtime::{Config, Registry, State};
use rcgen::{
    BasicConstraints, Certificate, CertificateParams, DnType, ExtendedKeyUsagePurpose, IsCa, KeyPair, SanType,
};

/// Everything logged by this test binary, at every level.
fn logs() -> &'static Mutex<Vec<u8>> {
    static LOGS: OnceLock<&'static Mutex<Vec<u8>>> = OnceLock::new();
    LOGS.get_or_init(|| {
        let buf: &'static Mutex<Vec<u8>> = Box::leak(Box::new(Mutex::new(Vec::new())));
        struct W(&'static Mutex<Vec<u8>>);
        impl Write for W {
            fn write(&mut self, b: &[u8]) -> std::io::Result<usize> {
                self.0.lock().unwrap().extend_from_slice(b);
                Ok(b.len())
            }
            fn flush(&mut self) -> std::io::Result<()> {
                Ok(())
            }
        }
        let subscriber = tracing_subscriber::fmt()
            .with_max_level(tracing::Level::TRACE)
            .with_ansi(false)
            .with_writer(move || W(buf))
            .finish();
        tracing::subscriber::set_global_default(subscriber).expect("the only subscriber");
        buf
    })
}

fn logged() -> String {
    String::from_utf8_lossy(&logs().lock().unwrap()).into_owned()
}

/// PEM files of a test CA, a server certificate for 127.0.0.1 and a client
/// certificate, in a directory removed on drop.
struct Pki {
    dir: PathBuf,
    ca: String,
    client_cert: String,
    client_key: String,
}

impl Drop for Pki {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}

fn leaf(
    names: &[&str],
    purpose: ExtendedKeyUsagePurpose,
    ca: &Certificate,
    ca_key: &KeyPair,
) -> (String, String) {
    let key = KeyPair::generate().unwrap();
    let mut params =
        CertificateParams::new(names.iter().map(|n| (*n).to_owned()).collect::<Vec<_>>()).unwrap();
    params
        .subject_alt_names
        .push(SanType::IpAddress([127, 0, 0, 1].into()));
    params.distinguished_name.push(DnType::CommonName, names[0]);
    params.extended_key_usages = vec![purpose];
    let cert = params.signed_by(&key, ca, ca_key).unwrap();
    (cert.pem(), key.serialize_pem())
}

fn pki() -> Pki {
    let ca_key = KeyPair::generate().unwrap();
    let mut params = CertificateParams::new(Vec::<String>::new()).unwrap();
    params.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
    params
        .distinguished_name
        .push(DnType::CommonName, "cb-fleet test CA");
    let ca = params.self_signed(&ca_key).unwrap();
    let (server_cert, server_key) = leaf(&["localhost"], ExtendedKeyUsagePurpose::ServerAuth, &ca, &ca_key);
    let (client_cert, client_key) = leaf(
        &["cb-fleet-client"],
        ExtendedKeyUsagePurpose::ClientAuth,
        &ca,
        &ca_key,
    );
    let dir = std::env::temp_dir().join(format!(
        "cb-fleet-tls-{}-{:x}",
        std::process::id(),
        fastrand::u64(..)
    ));
    std::fs::create_dir_all(&dir).unwrap();
    for (file, text) in [
        ("ca.pem", ca.pem()),
        ("server.pem", server_cert),
        ("server.key", server_key),
    ] {
        std::fs::write(dir.join(file), text).unwrap();
    }
    Pki {
        dir,
        ca: ca.pem(),
        client_cert,
        client_key,
    }
}

impl Pki {
    fn file(&self, name: &str) -> PathBuf {
        self.dir.join(name)
    }
    fn server(&self, client_certs: bool) -> RedisServer {
        let f = |n| self.file(n);
        RedisServer::start_tls(&f("server.pem"), &f("server.key"), &f("ca.pem"), client_certs)
    }
}

const PASSWORD: &str = "tls-pa55word-never-shown";

/// A user with a password, so the URL carries credentials.
fn url_with_password(server: &RedisServer) -> String {
    let setup = [
        "ACL",
        "SETUSER",
        "fleet",
        "on",
        &format!(">{PASSWORD}"),
        "~*",
        "&*",
        "+@all",
    ];
    assert_eq!(server.command(&setup), "+OK");
    server
        .tls_url()
        .unwrap()
        .replace("rediss://", &format!("rediss://fleet:{PASSWORD}@"))
}

fn dep(r: &'static Registry) -> std::sync::Arc<cb_runtime::CircuitBreaker> {
    r.get_or_insert("dep", || {
        Config::builder()
            .failure_threshold(1)
            .open_duration(Duration::from_secs(30))
            .build()
            .unwrap()
    })
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn replicas_share_an_open_over_mutual_tls_with_a_private_ca() {
    if !redis_available("replicas_share_an_open_over_mutual_tls_with_a_private_ca") {
        return;
    }
    logs();
    let pki = pki();
    let server = pki.server(true);
    let url = url_with_password(&server);
    let join = |id: &str, r| {
        Fleet::builder(&url)
            .namespace("tls")
            .replica_id(id)
            .io_timeout(Duration::from_millis(500))
            .tls_root_ca_pem(pki.ca.as_bytes())
            .tls_client_identity_pem(pki.client_cert.as_bytes(), pki.client_key.as_bytes())
            .join(r)
    };
    let (ra, rb) = (replica(), replica());
    let fa = join("a", ra).await.unwrap();
    let fb = join("b", rb).await.unwrap();
    assert!(fa.is_connected() && fb.is_connected(), "{}", logged());
    let (a, b) = (dep(ra), dep(rb));
    a.try_acquire().unwrap().record(false);
    assert!(eventually(Duration::from_secs(3), || b.state() == State::Open).await);
    assert!(b.try_acquire().unwrap_err().is_rejected());
    let log = fa.transitions("dep", 5).await.unwrap();
    assert!(log.iter().any(|t| t.replica == "b" && t.to == "open"), "{log:?}");
    assert!(!format!("{fa:?}").contains(PASSWORD));
    assert!(format!("{fa:?}").contains("rediss://***@127.0.0.1"), "{fa:?}");
    assert!(!logged().contains(PASSWORD));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn certificates_are_checked_and_the_password_stays_out_of_logs() {
    if !redis_available("certificates_are_checked_and_the_password_stays_out_of_logs") {
        return;
    }
    logs();
    let pki = pki();
    let server = pki.server(false);
    let url = url_with_password(&server);
    let quick = |url: &str| {
        Fleet::builder(url)
            .namespace("tls-checked")
            .io_timeout(Duration::from_millis(300))
    };
    // The server's CA is not among the built-in roots: no connection, and a
    // WARN that shows the URL without its password.
    let untrusting = quick(&url).join(replica()).await.unwrap();
    assert!(!untrusting.is_connected());
    assert!(
        eventually(Duration::from_secs(3), || logged()
            .contains("fleet lost Redis at rediss://***@127.0.0.1"))
        .await,
        "{}",
        logged()
    );
    // Trusting the CA: connected (no client certificate needed by this server).
    let trusting = quick(&url)
        .tls_root_ca_pem(pki.ca.as_bytes())
        .join(replica())
        .await
        .unwrap();
    assert!(trusting.is_connected(), "{}", logged());
    // The plain protocol on the TLS port is refused by the server.
    let plain = url.replace("rediss://", "redis://");
    assert!(!quick(&plain).join(replica()).await.unwrap().is_connected());
    drop(untrusting);
    assert!(!logged().contains(PASSWORD), "{}", logged());

    // Bad TLS settings are errors naming the setting, without the password.
    let field = |e: &FleetError| match e {
        FleetError::Invalid { field, .. } => *field,
        _ => "not Invalid",
    };
    let e = quick(&url)
        .tls_root_ca_pem("not a certificate")
        .join(replica())
        .await
        .unwrap_err();
    assert_eq!(field(&e), "tls_root_ca_pem", "{e}");
    let e = quick(&url)
        .tls_client_identity_pem(pki.client_cert.as_bytes(), "-----BEGIN NOTHING-----")
        .join(replica())
        .await
        .unwrap_err();
    assert_eq!(field(&e), "tls_client_identity_pem", "{e}");
    let e = quick(&plain)
        .tls_root_ca_pem(pki.ca.as_bytes())
        .join(replica())
        .await
        .unwrap_err();
    assert_eq!(field(&e), "url", "{e}");
    assert!(!e.to_string().contains(PASSWORD), "{e}");
    let e = quick(&format!("{url}#insecure"))
        .join(replica())
        .await
        .unwrap_err();
    assert!(
        e.to_string().contains("#insecure") && !e.to_string().contains(PASSWORD),
        "{e}"
    );
}
