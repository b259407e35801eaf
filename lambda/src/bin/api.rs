//! The API Lambda (see `meterflow_lambda::api` for its configuration).

use lambda_http::{run, tracing::info, Error};
use meterflow_lambda::api::{app, config_from_vars};
use meterflow_lambda::env::ProcessEnv;
use meterflow_lambda::StartError;
use meterflow_store_cql::AnyStore;

#[tokio::main]
async fn main() -> Result<(), Error> {
    meterflow_lambda::init_logs();
    let config = config_from_vars(&ProcessEnv).map_err(StartError::of)?;
    let store = AnyStore::from_env().await.map_err(StartError::of)?;
    info!(store = store.kind(), "api ready");
    run(app(store, config)).await
}
