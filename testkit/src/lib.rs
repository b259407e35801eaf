//! Test support, shared by the workspace's tests and never part of a production build (a
//! dev-dependency only: `cargo tree -e normal` shows no testkit).
//!
//! - [`moto`]: a `moto_server` (S3, Kinesis, SSM emulator) on a loopback port, and helpers to
//!   fill and read it;
//! - [`cql`]: an in-process CQL server (the `kassandra` engine) on a loopback port, plain or
//!   behind TLS;
//! - [`kinesis`], [`s3`], [`sink`], [`shards`]: doubles of the AWS adapters' traits, including
//!   the fault-injecting ones for failures the emulator cannot produce;
//! - [`store`]: a fault-injecting wrapper around any [`meterflow_store::Store`] (timeouts
//!   before a write and after it); [`plan`]: the fault plans of both wrappers;
//! - [`conformance`]: the suite every [`meterflow_store::Store`] must pass, and sample data;
//! - [`events`]: Lambda event JSON, fixtures and builders (S3 notifications, Kinesis batches,
//!   Function URL requests).

pub mod conformance;
pub mod cql;
pub mod events;
pub mod kinesis;
pub mod moto;
pub mod plan;
pub mod s3;
pub mod shards;
pub mod sink;
pub mod store;
