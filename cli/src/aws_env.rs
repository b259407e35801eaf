//! AWS settings for `s3://` inputs and `kinesis://` streams, found as the AWS CLI finds them
//! (environment variables, `AWS_PROFILE` and the shared config and credentials files, SSO, web
//! identity, container and instance roles; `AWS_ENDPOINT_URL` or a profile's `endpoint_url`
//! for an emulator), so one command drives an emulator or a real account unchanged.

use anyhow::{Context, Result};
use meterflow_aws::client::{http_client, ClientSettings};

/// Region, credentials and endpoint from the standard chain.
pub async fn settings() -> Result<ClientSettings> {
    ClientSettings::from_chain(http_client()).await.context(
        "s3:// and kinesis:// need AWS settings (for an emulator such as moto, also \
         AWS_ENDPOINT_URL=http://127.0.0.1:PORT)",
    )
}

/// Where requests go, for error messages: a wrong region or endpoint is the usual reason a
/// bucket or stream that exists is not found.
pub fn place(settings: &ClientSettings) -> String {
    match &settings.endpoint_url {
        Some(url) => format!("region {} at {url}", settings.region),
        None => format!("region {}", settings.region),
    }
}
