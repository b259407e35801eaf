//! meterflow's three Lambdas, as handlers generic over their external systems (so the tests
//! call them with moto's S3 and Kinesis, SQLite or an in-process CQL server, and
//! fault-injecting wrappers) and thin binaries that wire them to the real clients:
//!
//! - [`splitter`]: S3 notifications → objects split into envelope records → Kinesis, rejects
//!   reports → S3;
//! - [`aggregator`]: Kinesis batches → the store, `batchItemFailures`, dead letters → S3;
//! - [`api`]: Function URL requests → the HTTP API over the store.
//!
//! Configuration comes only from environment variables, listed in each module's docs and
//! validated at start ([`mod@env`]). The store is [`store::from_env`]: `METERFLOW_STORE` (a
//! SQLite path or `cql://` URL) for local runs, else the `METERFLOW_CQL_*` variables
//! (Keyspaces, with the `keyspaces` feature for TLS; credentials by SigV4 or from SSM). Logs are `tracing` through the
//! runtime's subscriber ([`init_logs`]): JSON when the function's log format is JSON
//! (`AWS_LAMBDA_LOG_FORMAT=JSON`), level from `AWS_LAMBDA_LOG_LEVEL` or `RUST_LOG`.

pub mod aggregator;
pub mod api;
pub mod env;
pub mod handover;
pub mod report;
pub mod splitter;
pub mod store;

/// Starts the runtime's log subscriber (see the crate docs).
pub fn init_logs() {
    lambda_runtime::tracing::init_default_subscriber();
}

/// Starts the logs and installs the CloudWatch Embedded Metric Format exporter
/// ([`meterflow_telemetry::emf`]: namespace `METERFLOW_METRICS_NAMESPACE`, default `meterflow`,
/// dimension `FunctionName`). Call once at the start of `main`.
pub fn init_observability() -> Result<(), StartError> {
    init_logs();
    meterflow_telemetry::emf::install_from_env().map_err(StartError::of)
}

/// Writes the invocation's metrics (one EMF document on stdout, more only past EMF's
/// limits). Called after every invocation, failed ones too, so a failing batch still shows
/// what it did. A failure to write is logged, not returned: losing a metrics line must not
/// make Lambda redeliver a batch that was stored.
pub fn flush_metrics() {
    if let Err(e) = meterflow_telemetry::emf::flush() {
        lambda_runtime::tracing::warn!(error = %e, "could not write the metrics (EMF) line");
    }
}

/// Why a Lambda could not start. `main` returning `Err` prints the error's `Debug`, which for
/// the typed errors is a struct dump; this one's `Debug` is the message that says what to fix.
pub struct StartError(String);

impl StartError {
    pub fn of(e: impl std::fmt::Display) -> StartError {
        StartError(e.to_string())
    }
}

impl std::fmt::Debug for StartError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.0)
    }
}

impl std::fmt::Display for StartError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.0)
    }
}

impl std::error::Error for StartError {}
