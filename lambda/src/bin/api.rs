//! The API Lambda (see `meterflow_lambda::api` for its configuration).

use lambda_http::{run, tracing::info, Error};
use meterflow_lambda::api::{app, config_from_vars};
use meterflow_lambda::env::ProcessEnv;
use meterflow_lambda::StartError;

#[tokio::main]
async fn main() -> Result<(), Error> {
    meterflow_lambda::init_logs();
    let config = config_from_vars(&ProcessEnv).map_err(StartError::of)?;
    let store = meterflow_lambda::store::from_env().await?;
    info!(store = store.kind(), "api ready");
    run(app(store, config)).await
}
