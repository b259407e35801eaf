//! SDK clients for S3, Kinesis and SSM, pointed at AWS or at an emulator.
//!
//! The SDK crates are built without default features: their default HTTPS client brings
//! `aws-lc-rs`, a large C build, for nothing we need. We build the same hyper + rustls client on
//! `ring` instead, once, and share it between both clients (one connection pool per host).
//!
//! Credentials: the Lambdas take the execution role's from the environment, where the runtime
//! puts them ([`ClientSettings::from_env`]); `aws-config` with its STS and SSO clients stays
//! out of their binaries. An operator's `meterflow` on a laptop wants what the AWS CLI does
//! (profiles, SSO, web identity, container and instance roles): feature `credential-chain`,
//! [`ClientSettings::from_chain`].

use aws_sdk_kinesis::config::{Credentials, Region, SharedCredentialsProvider};
use aws_sdk_s3::config::SharedHttpClient;
use aws_smithy_http_client::tls::{rustls_provider::CryptoMode, Provider};
use aws_smithy_http_client::Builder;

/// Where and as whom clients connect.
#[derive(Debug, Clone)]
pub struct ClientSettings {
    pub region: String,
    /// An emulator's URL (`http://127.0.0.1:PORT`); `None` for AWS itself.
    pub endpoint_url: Option<String>,
    /// Static keys, or a chain that finds and refreshes them.
    pub credentials: SharedCredentialsProvider,
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
            credentials: static_credentials("testing", "testing", None),
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
            credentials: static_credentials(
                &var("AWS_ACCESS_KEY_ID")?,
                &var("AWS_SECRET_ACCESS_KEY")?,
                var("AWS_SESSION_TOKEN").ok(),
            ),
        })
    }
}

fn static_credentials(key: &str, secret: &str, token: Option<String>) -> SharedCredentialsProvider {
    SharedCredentialsProvider::new(Credentials::new(
        key,
        secret,
        token,
        None,
        "meterflow-static",
    ))
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
            .credentials_provider(settings.credentials.clone())
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

/// The standard chain, as the AWS CLI resolves it (feature `credential-chain`).
#[cfg(feature = "credential-chain")]
mod chain {
    use super::{ClientSettings, SharedHttpClient};
    use aws_config::BehaviorVersion;
    use aws_credential_types::provider::ProvideCredentials;

    /// Why the chain found no region or no credentials.
    #[derive(Debug, thiserror::Error)]
    pub enum ChainError {
        #[error(
            "no AWS region: set AWS_REGION, or `region` in the profile{} of the shared config file (~/.aws/config, or AWS_CONFIG_FILE)",
            profile_note()
        )]
        NoRegion,
        #[error(
            "no AWS credentials{}: {reason}. Set AWS_PROFILE to a profile of ~/.aws/config (run `aws sso login --profile NAME` first for an SSO profile), or set AWS_ACCESS_KEY_ID and AWS_SECRET_ACCESS_KEY",
            profile_note()
        )]
        NoCredentials { reason: String },
    }

    fn profile_note() -> String {
        match std::env::var("AWS_PROFILE") {
            Ok(p) => format!(" (AWS_PROFILE={p})"),
            Err(_) => String::new(),
        }
    }

    impl ClientSettings {
        /// Region, endpoint and credentials as the AWS CLI finds them: environment variables,
        /// then the profile (`AWS_PROFILE`, else `default`) of the shared config and
        /// credentials files (static keys, `credential_process`, SSO, an assumed role), web
        /// identity, then the container's or the instance's role. The credentials are fetched
        /// once here, so a wrong profile fails before any work, saying so; the provider
        /// refreshes them as they expire.
        pub async fn from_chain(http: SharedHttpClient) -> Result<ClientSettings, ChainError> {
            let config = aws_config::defaults(BehaviorVersion::latest())
                .http_client(http)
                .load()
                .await;
            let region = config.region().ok_or(ChainError::NoRegion)?.to_string();
            let credentials =
                config
                    .credentials_provider()
                    .ok_or_else(|| ChainError::NoCredentials {
                        reason: "no credential provider was configured".to_owned(),
                    })?;
            credentials
                .provide_credentials()
                .await
                .map_err(|e| ChainError::NoCredentials {
                    reason: error_chain(&e),
                })?;
            Ok(ClientSettings {
                region,
                endpoint_url: config.endpoint_url().map(str::to_owned),
                credentials,
            })
        }
    }

    /// An error and its causes on one line (the SDK's top message alone says little).
    fn error_chain(e: &(dyn std::error::Error + 'static)) -> String {
        let mut text = e.to_string();
        let mut cause = e.source();
        while let Some(c) = cause {
            let next = c.to_string();
            if !text.contains(&next) {
                text.push_str(": ");
                text.push_str(&next);
            }
            cause = c.source();
        }
        text
    }
}

#[cfg(feature = "credential-chain")]
pub use chain::ChainError;
