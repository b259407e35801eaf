//! The API Lambda: the router of `meterflow serve` behind a Function URL.
//!
//! Configuration (environment):
//! - `METERFLOW_STORE`: the store. A path is an embedded SQLite file (for `cargo lambda watch`
//!   runs on a developer machine); the CQL store for Keyspaces arrives with the AWS issue.
//! - `METERFLOW_MAX_RANGE_DAYS`: longest date range per request (default 366).
//! - `AWS_LAMBDA_LOG_FORMAT=JSON` for JSON logs (set by the Lambda runtime configuration).

use std::sync::Arc;

use lambda_http::{run, tracing, Error};
use meterflow_api::{router, ApiConfig};
use meterflow_store::SqliteStore;

#[tokio::main]
async fn main() -> Result<(), Error> {
    tracing::init_default_subscriber();
    let path = std::env::var("METERFLOW_STORE").map_err(|_| {
        "METERFLOW_STORE is not set: point it at the store (a SQLite file path for local runs)"
    })?;
    let store = SqliteStore::open(std::path::Path::new(&path))?;
    let max_range_days = match std::env::var("METERFLOW_MAX_RANGE_DAYS") {
        Ok(v) => v
            .parse()
            .map_err(|_| format!("METERFLOW_MAX_RANGE_DAYS must be a number of days, not `{v}`"))?,
        Err(_) => ApiConfig::default().max_range_days,
    };
    run(router(Arc::new(store), ApiConfig { max_range_days })).await
}
