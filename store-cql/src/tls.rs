//! TLS for Amazon Keyspaces (port 9142) and other TLS clusters, on rustls.
//!
//! Why a custom verifier: the scylla driver hands rustls the node's *IP address* as the server
//! name, so a certificate issued for a host name (Keyspaces': `cassandra.<region>.amazonaws.com`)
//! would always fail hostname verification. [`PinnedName`] runs the standard WebPKI checks
//! (chain to a trusted root, validity, signatures) against the configured name instead of
//! the IP. Verification is never switched off.

use std::sync::Arc;

use meterflow_store::StoreError;
use rustls::client::danger::{HandshakeSignatureValid, ServerCertVerified, ServerCertVerifier};
use rustls::client::WebPkiServerVerifier;
use rustls::crypto::CryptoProvider;
use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, ServerName, UnixTime};
use rustls::{ClientConfig, DigitallySignedStruct, RootCertStore, SignatureScheme};

use crate::config::{node_host, TlsConfig};

/// Checks certificates for one fixed name, whatever address the driver connected to.
#[derive(Debug)]
struct PinnedName {
    inner: Arc<WebPkiServerVerifier>,
    name: ServerName<'static>,
}

impl ServerCertVerifier for PinnedName {
    fn verify_server_cert(
        &self,
        end_entity: &CertificateDer<'_>,
        intermediates: &[CertificateDer<'_>],
        _driver_supplied_ip: &ServerName<'_>,
        ocsp_response: &[u8],
        now: UnixTime,
    ) -> Result<ServerCertVerified, rustls::Error> {
        self.inner
            .verify_server_cert(end_entity, intermediates, &self.name, ocsp_response, now)
    }

    fn verify_tls12_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        self.inner.verify_tls12_signature(message, cert, dss)
    }

    fn verify_tls13_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        self.inner.verify_tls13_signature(message, cert, dss)
    }

    fn supported_verify_schemes(&self) -> Vec<SignatureScheme> {
        self.inner.supported_verify_schemes()
    }
}

fn permanent(msg: String) -> StoreError {
    StoreError::refused(msg)
}

/// The trusted roots: the PEM file if given, else the Mozilla set compiled in (so a Lambda
/// needs no CA bundle on disk).
fn roots(tls: &TlsConfig) -> Result<RootCertStore, StoreError> {
    let Some(path) = &tls.ca_file else {
        return Ok(RootCertStore {
            roots: webpki_roots::TLS_SERVER_ROOTS.to_vec(),
        });
    };
    let mut store = RootCertStore::empty();
    let certs = CertificateDer::pem_file_iter(path).map_err(|e| {
        permanent(format!(
            "cannot read METERFLOW_CQL_CA_FILE {}: {e}; point it at a readable PEM file",
            path.display()
        ))
    })?;
    for cert in certs {
        let cert = cert.map_err(|e| {
            permanent(format!(
                "METERFLOW_CQL_CA_FILE {} is not a PEM certificate bundle: {e}",
                path.display()
            ))
        })?;
        store.add(cert).map_err(|e| {
            permanent(format!(
                "a certificate in METERFLOW_CQL_CA_FILE {} is unusable: {e}",
                path.display()
            ))
        })?;
    }
    if store.is_empty() {
        return Err(permanent(format!(
            "METERFLOW_CQL_CA_FILE {} holds no certificate",
            path.display()
        )));
    }
    Ok(store)
}

/// A rustls client configuration for `nodes`, verifying certificates for the configured name
/// (or the first node's host).
pub(crate) fn client_config(
    tls: &TlsConfig,
    nodes: &[String],
) -> Result<Arc<ClientConfig>, StoreError> {
    let name = match &tls.server_name {
        Some(n) => n.clone(),
        None => nodes
            .first()
            .map(|n| node_host(n).to_string())
            .ok_or_else(|| permanent("no CQL node to take the TLS server name from".into()))?,
    };
    let name = ServerName::try_from(name.clone()).map_err(|e| {
        permanent(format!(
            "`{name}` cannot be a TLS server name ({e}): set METERFLOW_CQL_TLS_SERVER_NAME to the name on the server's certificate"
        ))
    })?;
    // Explicit provider: if another crate in the binary enables rustls' `ring` too, the
    // process-wide default would be ambiguous and `ClientConfig::builder()` would panic.
    let provider = Arc::new(rustls::crypto::aws_lc_rs::default_provider());
    let inner =
        WebPkiServerVerifier::builder_with_provider(Arc::new(roots(tls)?), provider.clone())
            .build()
            .map_err(|e| permanent(format!("cannot build the TLS verifier: {e}")))?;
    let config = ClientConfig::builder_with_provider(provider as Arc<CryptoProvider>)
        .with_safe_default_protocol_versions()
        .map_err(|e| permanent(format!("cannot configure TLS: {e}")))?
        .dangerous() // only to install a verifier that verifies fully, see PinnedName
        .with_custom_certificate_verifier(Arc::new(PinnedName { inner, name }))
        .with_no_client_auth();
    Ok(Arc::new(config))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn builds_with_builtin_roots_and_the_first_node_as_name() {
        let tls = TlsConfig::default();
        let nodes = vec!["cassandra.eu-west-1.amazonaws.com:9142".to_string()];
        assert!(client_config(&tls, &nodes).is_ok());
        assert!(!roots(&tls).expect("roots").is_empty());
    }

    #[test]
    fn bad_ca_file_and_name_say_what_to_fix() {
        let tls = TlsConfig {
            ca_file: Some("/nonexistent/ca.pem".into()),
            server_name: None,
        };
        let e = client_config(&tls, &["h:9142".into()]).expect_err("missing file");
        assert!(!e.is_retryable());
        assert!(e.to_string().contains("METERFLOW_CQL_CA_FILE"), "{e}");
        let tls = TlsConfig {
            ca_file: None,
            server_name: Some("not a name".into()),
        };
        let e = client_config(&tls, &["h:9142".into()]).expect_err("bad name");
        assert!(
            e.to_string().contains("METERFLOW_CQL_TLS_SERVER_NAME"),
            "{e}"
        );
    }
}
