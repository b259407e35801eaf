//! The splitter Lambda (see `meterflow_lambda::splitter` for its configuration).

use std::sync::Arc;

use lambda_runtime::tracing::warn;
use lambda_runtime::{run, service_fn, Error, LambdaEvent};
use meterflow_aws::client::{http_client, kinesis_client, s3_client, ClientSettings};
use meterflow_aws::kinesis::KinesisStream;
use meterflow_aws::s3::S3Source;
use meterflow_aws::sink::S3Sink;
use meterflow_lambda::env::ProcessEnv;
use meterflow_lambda::splitter::{instant_of, Splitter, SplitterConfig};
use meterflow_lambda::StartError;
use serde_json::value::RawValue;

#[tokio::main]
async fn main() -> Result<(), Error> {
    meterflow_lambda::init_observability()?;
    let config = SplitterConfig::from_vars(&ProcessEnv).map_err(StartError::of)?;
    let clients = ClientSettings::from_env().map_err(StartError::of)?;
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
            meterflow_lambda::flush_metrics();
            result
        }
    }))
    .await
}
