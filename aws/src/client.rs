//! SDK clients for S3, Kinesis and SSM, pointed at AWS or at an emulator.
//!
//! The SDK crates are built without default features: their default HTTPS client brings
//! `aws-lc-rs`, a large C build, for nothing we need. We build the same hyper + rustls client on
//! `ring` instead, once, and share it between both clients (one connection pool per host).
//! Credentials are static (the Lambda runtime puts the execution role's in the environment);
//! `aws-config` and its STS/SSO clients are left out on purpose.

use aws_sdk_kinesis::config::{Credentials, Region};
use aws_sdk_s3::config::SharedHttpClient;
use aws_smithy_http_client::tls::{rustls_provider::CryptoMode, Provider};
use aws_smithy_http_client::Builder;

/// Where and as whom clients connect.
#[derive(Debug, Clone)]
pub struct ClientSettings {
    pub region: String,
    /// An emulator's URL (`http://127.0.0.1:PORT`); `None` for AWS itself.
    pub endpoint_url: Option<String>,
    pub access_key_id: String,
    pub secret_access_key: String,
    pub session_token: Option<String>,
}

/// Why settings could not be read from the environment.
#[derive(Debug, thiserror::Error)]
#[error("environment variable {0} is not set")]
pub struct MissingEnv(pub &'static str);

impl ClientSettings {
    /// Static dummy credentials against an emulator in `us-east-1` (moto accepts any).
    pub fn emulator(endpoint_url: impl Into<String>) -> ClientSettings {
        ClientSettings {
            region: "us-east-1".to_owned(),
            endpoint_url: Some(endpoint_url.into()),
            access_key_id: "testing".to_owned(),
            secret_access_key: "testing".to_owned(),
            session_token: None,
        }
    }

    /// From the variables Lambda sets for the execution role (`AWS_REGION`,
    /// `AWS_ACCESS_KEY_ID`, `AWS_SECRET_ACCESS_KEY`, `AWS_SESSION_TOKEN`), plus
    /// `AWS_ENDPOINT_URL` to point at an emulator.
    pub fn from_env() -> Result<ClientSettings, MissingEnv> {
        let var = |name: &'static str| std::env::var(name).map_err(|_| MissingEnv(name));
        Ok(ClientSettings {
            region: var("AWS_REGION").or_else(|_| var("AWS_DEFAULT_REGION"))?,
            endpoint_url: var("AWS_ENDPOINT_URL").ok(),
            access_key_id: var("AWS_ACCESS_KEY_ID")?,
            secret_access_key: var("AWS_SECRET_ACCESS_KEY")?,
            session_token: var("AWS_SESSION_TOKEN").ok(),
        })
    }

    fn credentials(&self) -> Credentials {
        Credentials::new(
            &self.access_key_id,
            &self.secret_access_key,
            self.session_token.clone(),
            None,
            "meterflow-static",
        )
    }
}

/// The HTTPS client both SDK clients share: hyper + rustls on ring.
pub fn http_client() -> SharedHttpClient {
    Builder::new()
        .tls_provider(Provider::Rustls(CryptoMode::Ring))
        .build_https()
}

/// A client's configuration builder with what every client shares: the region, the role's
/// credentials, our HTTPS client, and the emulator's endpoint when there is one.
macro_rules! config_builder {
    ($sdk:ident, $settings:expr, $http:expr) => {{
        let settings: &ClientSettings = $settings;
        let mut b = $sdk::Config::builder()
            .region(Region::new(settings.region.clone()))
            .credentials_provider(settings.credentials())
            .http_client($http);
        if let Some(url) = &settings.endpoint_url {
            b = b.endpoint_url(url);
        }
        b
    }};
}

/// An S3 client. Path-style addressing against an emulator (`http://host:port/bucket/key`):
/// virtual-host style would need DNS for `bucket.127.0.0.1`.
pub fn s3_client(settings: &ClientSettings, http: SharedHttpClient) -> aws_sdk_s3::Client {
    let b = config_builder!(aws_sdk_s3, settings, http);
    let b = b.force_path_style(settings.endpoint_url.is_some());
    aws_sdk_s3::Client::from_conf(b.build())
}

/// A Kinesis client.
pub fn kinesis_client(
    settings: &ClientSettings,
    http: SharedHttpClient,
) -> aws_sdk_kinesis::Client {
    aws_sdk_kinesis::Client::from_conf(config_builder!(aws_sdk_kinesis, settings, http).build())
}

/// An SSM client (Parameter Store).
pub fn ssm_client(settings: &ClientSettings, http: SharedHttpClient) -> aws_sdk_ssm::Client {
    aws_sdk_ssm::Client::from_conf(config_builder!(aws_sdk_ssm, settings, http).build())
}
