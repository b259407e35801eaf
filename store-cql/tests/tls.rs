//! TLS at run time, as Amazon Keyspaces needs it (port 9142): the real `scylla` driver with
//! our rustls client configuration against the in-process `kassandra` behind a TLS listener
//! with a certificate for `cql.test` from a test CA (`tests/fixtures/README.md`). The store
//! conformance suite passes over it; a server the CA did not sign, or a certificate for
//! another name, is refused with an error that says what to fix. Needs the `keyspaces`
//! feature (`scripts/test` runs it).
#![cfg(feature = "keyspaces")]

use std::path::PathBuf;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;

use meterflow_store_cql::{CqlConfig, CqlStore, TlsConfig};
use meterflow_testkit::conformance;
use meterflow_testkit::cql::Kassandra;
use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, PrivateKeyDer};

static NEXT_KEYSPACE: AtomicUsize = AtomicUsize::new(0);

fn fixture(name: &str) -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
        .join("tests/fixtures")
        .join(name)
}

/// Kassandra behind TLS with the `cql.test` certificate.
async fn tls_server() -> Kassandra {
    let certs: Vec<CertificateDer<'static>> =
        CertificateDer::pem_file_iter(fixture("cql-test.pem"))
            .expect("the test certificate")
            .collect::<Result<_, _>>()
            .expect("a PEM certificate");
    let key = PrivateKeyDer::from_pem_file(fixture("cql-test.key")).expect("the test key");
    let provider = Arc::new(rustls::crypto::aws_lc_rs::default_provider());
    let config = rustls::ServerConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .expect("TLS versions")
        .with_no_client_auth()
        .with_single_cert(certs, key)
        .expect("the test certificate and key match");
    Kassandra::start_tls(tokio_rustls::TlsAcceptor::from(Arc::new(config))).await
}

/// A fresh keyspace on `server` over TLS, trusting `ca` and expecting `name`.
fn tls_config(server: &Kassandra, ca: &str, name: &str) -> CqlConfig {
    let n = NEXT_KEYSPACE.fetch_add(1, Ordering::SeqCst);
    let mut config = CqlConfig::new(vec![server.addr.to_string()], format!("tls{n}"));
    config.create_schema = true;
    config.await_schema_agreement = false;
    config.tls = Some(TlsConfig {
        ca_file: Some(fixture(ca)),
        server_name: Some(name.to_owned()),
    });
    config
}

async fn connect(config: CqlConfig) -> CqlStore {
    match CqlStore::connect(&config).await {
        Ok(store) => store,
        Err(e) => panic!("connecting over TLS to {:?}: {e}", config.nodes),
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_store_conforms_over_tls() {
    let server = tls_server().await;
    conformance::run_all(|| connect(tls_config(&server, "test-ca.pem", "cql.test"))).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_server_the_ca_did_not_sign_or_another_name_is_refused() {
    let server = tls_server().await;
    for (ca, name) in [("other-ca.pem", "cql.test"), ("test-ca.pem", "other.test")] {
        let mut config = tls_config(&server, ca, name);
        config.connect_timeout = std::time::Duration::from_secs(5);
        let e = match CqlStore::connect(&config).await {
            Ok(_) => panic!("connected with CA {ca} to a server for `cql.test` as `{name}`"),
            Err(e) => e.report(),
        };
        let why = if ca == "other-ca.pem" {
            "UnknownIssuer"
        } else {
            "not valid for name"
        };
        assert!(e.contains(why), "{ca}, {name}: {e}");
        assert!(
            e.contains("check METERFLOW_CQL_CA_FILE and METERFLOW_CQL_TLS_SERVER_NAME"),
            "{e}"
        );
    }
    // Plain CQL to the TLS port gets nowhere either.
    let mut plain = tls_config(&server, "test-ca.pem", "cql.test");
    plain.tls = None;
    plain.connect_timeout = std::time::Duration::from_secs(5);
    assert!(CqlStore::connect(&plain).await.is_err());
}
