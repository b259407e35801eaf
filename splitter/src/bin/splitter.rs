//! The splitter Lambda (see `meterflow_splitter::lambda` for its configuration).

use std::sync::Arc;

use anyhow::Context;
use lambda_runtime::tracing::warn;
use lambda_runtime::{run, service_fn, LambdaEvent};
use meterflow_aws::client::{http_client, kinesis_client, s3_client, ClientSettings};
use meterflow_aws::env::ProcessEnv;
use meterflow_aws::kinesis::KinesisStream;
use meterflow_aws::s3::S3Source;
use meterflow_aws::sink::S3Sink;
use meterflow_splitter::lambda::{instant_of, Splitter, SplitterConfig};
use serde_json::value::RawValue;

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    lambda_runtime::tracing::init_default_subscriber();
    meterflow_telemetry::emf::install_from_env()?;
    let config = SplitterConfig::from_vars(&ProcessEnv)?;
    let clients = ClientSettings::from_env()?;
    let http = http_client();
    let s3 = s3_client(&clients, http.clone());
    let stream = KinesisStream {
        client: kinesis_client(&clients, http),
        stream_name: config.stream_name.clone(),
    };
    let splitter = Arc::new(Splitter::new(
        Arc::new(S3Source { client: s3.clone() }),
        stream,
        S3Sink { client: s3 },
        &config,
    ));
    run(service_fn(move |event: LambdaEvent<Box<RawValue>>| {
        let splitter = Arc::clone(&splitter);
        async move {
            let deadline = instant_of(event.context.deadline());
            if deadline.is_none() {
                warn!("the invocation's deadline is not in the future (a local emulator?): running without one");
            }
            let result = splitter
                .handle(event.payload.get().as_bytes(), deadline)
                .await;
            meterflow_telemetry::emf::flush_logged();
            result
        }
    }))
    .await
    .map_err(|e| anyhow::anyhow!(e))
    .context("the Lambda runtime stopped")
}
