//! The aggregator Lambda (see `meterflow_lambda::aggregator` for its configuration).

use std::sync::Arc;

use aws_lambda_events::event::kinesis::KinesisEvent;
use lambda_runtime::tracing::info;
use lambda_runtime::{run, service_fn, Error, LambdaEvent};
use meterflow_aws::client::{http_client, s3_client, ClientSettings};
use meterflow_aws::sink::S3Sink;
use meterflow_lambda::aggregator::{Aggregator, AggregatorConfig};
use meterflow_lambda::env::ProcessEnv;
use meterflow_lambda::StartError;

#[tokio::main]
async fn main() -> Result<(), Error> {
    meterflow_lambda::init_observability()?;
    let config = AggregatorConfig::from_vars(&ProcessEnv).map_err(StartError::of)?;
    let store = meterflow_lambda::store::from_env().await?;
    // S3 credentials only matter with a dead-letter prefix.
    let dead_letter = match config.dead_letter {
        Some(at) => {
            let client = s3_client(
                &ClientSettings::from_env().map_err(StartError::of)?,
                http_client(),
            );
            Some((S3Sink { client }, at))
        }
        None => None,
    };
    info!(store = store.kind(), "aggregator ready");
    let aggregator = Arc::new(Aggregator { store, dead_letter });
    run(service_fn(move |event: LambdaEvent<KinesisEvent>| {
        let aggregator = Arc::clone(&aggregator);
        async move {
            let (response, summary) = aggregator.handle(&event.payload).await;
            meterflow_lambda::flush_metrics();
            info!(
                records = summary.records,
                applied = summary.applied,
                fragments = summary.fragments,
                quarantined = summary.quarantined,
                retried = summary.retried,
                "batch done"
            );
            Ok::<_, Error>(response)
        }
    }))
    .await
}
