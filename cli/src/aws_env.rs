//! AWS settings for `s3://` inputs and `kinesis://` streams, from the variables the AWS tools
//! use, so one command drives an emulator (`AWS_ENDPOINT_URL`) or a real account unchanged.

use anyhow::{Context, Result};
use meterflow_aws::client::ClientSettings;

/// Region, credentials and endpoint from the environment.
pub fn settings() -> Result<ClientSettings> {
    ClientSettings::from_env().context(
        "s3:// and kinesis:// need AWS settings: set AWS_REGION, AWS_ACCESS_KEY_ID and \
         AWS_SECRET_ACCESS_KEY (and AWS_ENDPOINT_URL=http://127.0.0.1:PORT for an emulator such as moto)",
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
