//! AWS I/O adapters: the pieces the Lambdas (and `meterflow ingest --source s3://… --stream
//! kinesis://…`) wire to the pure core. Adapters only: the drivers that use them live in the
//! splitter and aggregator crates.
//!
//! - [`kinesis`]: envelope records → PutRecords. Request building ([`kinesis::Entry`],
//!   [`kinesis::Batcher`]) is pure and tested against the named service limits; the I/O sits
//!   behind one trait, [`kinesis::RecordStream`], implemented on `aws-sdk-kinesis` (the test kit
//!   has fault-injecting doubles for the failures the emulator cannot produce).
//! - [`s3`]: an object as a blocking [`std::io::Read`] fed by ranged GETs that resume after a
//!   broken connection, behind the [`s3::ObjectSource`] trait; memory stays bounded whatever
//!   the object's size.
//! - [`event`]: S3 event notifications → object references (URL-decoded keys, test events
//!   ignored).
//! - [`shards`]: a stream read back shard by shard (ListShards, GetShardIterator,
//!   GetRecords) behind the [`shards::ShardReader`] trait, for replays.
//! - [`sink`]: whole small objects written to S3 (rejects reports, dead letters), behind the
//!   [`sink::ObjectSink`] trait.
//! - [`secrets`]: SSM parameters (Keyspaces service-specific credentials), behind the
//!   [`secrets::SecretSource`] trait.
//! - [`client`]: SDK clients on a lean HTTPS stack, pointed at AWS or at an emulator.
//! - [`mod@env`]: the Lambdas' settings from environment variables, validated with messages that
//!   name the variable; with the `cql` feature, `cql_store`: the aggregator's and api's
//!   store from them (Keyspaces credentials from SSM).
//!
//! Errors say whether a retry can help (`is_retryable`): a Lambda fails the invocation on a
//! retryable error so the platform retries it (the pipeline is idempotent by construction), and
//! reports a permanent one without retrying forever.

pub mod client;
#[cfg(feature = "cql")]
pub mod cql_store;
pub mod env;
pub mod event;
pub mod kinesis;
pub mod retry;
pub mod s3;
pub mod secrets;
pub mod shards;
pub mod sink;
