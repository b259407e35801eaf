//! The aggregator Lambda (see `meterflow_aggregator::lambda` for its configuration).

use std::sync::Arc;

use anyhow::Context;
use aws_lambda_events::event::kinesis::KinesisEvent;
use lambda_runtime::tracing::info;
use lambda_runtime::{run, service_fn, Error, LambdaEvent};
use meterflow_aggregator::lambda::{Aggregator, AggregatorConfig};
use meterflow_aws::client::{http_client, s3_client, ClientSettings};
use meterflow_aws::cql_store::store_from_env;
use meterflow_aws::env::ProcessEnv;
use meterflow_aws::sink::S3Sink;

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    lambda_runtime::tracing::init_default_subscriber();
    meterflow_telemetry::emf::install_from_env()?;
    let config = AggregatorConfig::from_vars(&ProcessEnv)?;
    let store = store_from_env().await?;
    // S3 credentials only matter with a dead-letter prefix.
    let dead_letter = match config.dead_letter {
        Some(at) => {
            let client = s3_client(&ClientSettings::from_env()?, http_client());
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
            meterflow_telemetry::emf::flush_logged();
            info!(
                records = summary.records,
                applied = summary.applied,
                fragments = summary.fragments,
                quarantined = summary.quarantined,
                refused = summary.refused,
                retried = summary.retried,
                "batch done"
            );
            Ok::<_, Error>(response)
        }
    }))
    .await
    .map_err(|e| anyhow::anyhow!(e))
    .context("the Lambda runtime stopped")
}
