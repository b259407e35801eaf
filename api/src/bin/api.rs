//! The API Lambda (see `meterflow_api::lambda` for its configuration).

use anyhow::Context;
use lambda_http::{run, tracing::info};
use meterflow_api::lambda::{app, config_from_vars};
use meterflow_aws::cql_store::store_from_env;
use meterflow_aws::env::ProcessEnv;

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    lambda_http::tracing::init_default_subscriber();
    let config = config_from_vars(&ProcessEnv)?;
    let store = store_from_env().await?;
    info!(store = store.kind(), "api ready");
    run(app(store, config))
        .await
        .map_err(|e| anyhow::anyhow!(e))
        .context("the Lambda runtime stopped")
}
