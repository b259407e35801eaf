//! The aggregator Lambda: Kinesis batches in, fragments stored, `batchItemFailures` out.
//!
//! Configuration (environment):
//!
//! | variable | default | meaning |
//! |---|---|---|
//! | `METERFLOW_STORE` | unset | a SQLite path or a `cql://host:port/keyspace` URL (local runs); unset: the CQL store of the `METERFLOW_CQL_*` variables (on AWS: Keyspaces) |
//! | `METERFLOW_CQL_*` | | the CQL store's settings (see `meterflow_store_cql::CqlConfig::from_env`) |
//! | `METERFLOW_DEAD_LETTER` | unset | `s3://bucket/prefix`: undecodable records are copied there as `<prefix><stream>/<shard>/<sequence number>` |
//! | `AWS_REGION`, `AWS_ACCESS_KEY_ID`, … | set by Lambda | for the dead-letter writes and SigV4 |
//!
//! A record that can never decode is quarantined: logged with its stream position and, when
//! `METERFLOW_DEAD_LETTER` is set, copied to S3 under a key made of that position, so a
//! redelivered batch overwrites the copy instead of adding one.
//!
//! Store errors are sorted by the store ([`meterflow_store::StoreError`]): a retryable one
//! (timeouts, throttling, unavailable replicas, lost connections) fails the batch from the
//! record that failed, and the event source mapping redelivers it from there; a permanent one
//! (the store will never take this write: an invalid request, a refused authorisation) skips
//! the record as a quarantined one is skipped (logged, counted as `records_refused`,
//! dead-lettered) and the rest of the batch is written, so that one such record cannot hold
//! its shard until it expires. A store that refuses everything (a dropped table, a revoked
//! role) is then an alarm on `records_refused`, and the records stay on the stream for
//! `meterflow replay --from-time` once it is fixed. Configuration errors that show at start
//! (no table, wrong credentials) fail the cold start instead, so nothing is skipped for them. A dead-letter write that
//! failed retryably makes the batch fail from that record on (the event source mapping
//! redelivers it, and the copy is written then); one that fails for good is logged.
//!
//! [`handle`] is the pure part: a raw `KinesisEvent` in, `batchItemFailures` out, generic over
//! the store so that it is tested on the embedded store with real event JSON and deployed on
//! the CQL store. The event source mapping is configured with ReportBatchItemFailures:
//! returning the records from the first failed one on makes Lambda checkpoint just before it
//! and retry from there; records before it were written and stay written (writes are
//! idempotent, so a retry that repeats some is harmless).

use aws_lambda_events::event::kinesis::{KinesisEvent, KinesisEventRecord};
use aws_lambda_events::event::streams::KinesisEventResponse;
use meterflow_core::metric_names;
use std::time::{SystemTime, UNIX_EPOCH};

use crate::{apply, batch_item_failures, Outcome, Quarantined, Refused};
use bytes::Bytes;
use lambda_runtime::tracing::{error, info, warn};
use meterflow_aws::env::{ConfigError, S3Location, Vars};
use meterflow_aws::sink::ObjectSink;
use meterflow_store::Store;
use serde::Serialize;

/// Applies a batch; returns the response for Lambda and what happened (for logs and metrics).
/// The wall-clock form of [`handle_at`].
pub async fn handle<S: Store>(store: &S, event: &KinesisEvent) -> (KinesisEventResponse, Outcome) {
    handle_at(store, event, SystemTime::now()).await
}

/// [`handle`] with the time of the invocation given, which the iterator age is measured
/// against (so that tests can pin it).
pub async fn handle_at<S: Store>(
    store: &S,
    event: &KinesisEvent,
    now: SystemTime,
) -> (KinesisEventResponse, Outcome) {
    if let Some(age) = iterator_age_ms(event, now) {
        metrics::histogram!(metric_names::AGGREGATOR_ITERATOR_AGE_MS).record(age as f64);
    }
    let ids: Vec<&str> = event
        .records
        .iter()
        .map(|r| r.kinesis.sequence_number.as_str())
        .collect();
    let data: Vec<&[u8]> = event
        .records
        .iter()
        .map(|r| r.kinesis.data.0.as_slice())
        .collect();
    let mut outcome = Outcome::default();
    let mut start = 0;
    while start < data.len() {
        let part = apply(store, &data[start..], |_| {}).await;
        outcome.applied += part.applied;
        outcome.fragments += part.fragments;
        outcome
            .quarantined
            .extend(part.quarantined.into_iter().map(|q| Quarantined {
                index: start + q.index,
                ..q
            }));
        match part.failed {
            // Refused for good: retrying would hold the shard until the record expires.
            Some((i, error)) if !error.is_retryable() => {
                outcome.refused.push(Refused {
                    index: start + i,
                    error,
                });
                metrics::counter!(metric_names::AGGREGATOR_RECORDS_REFUSED).increment(1);
                start += i + 1;
            }
            failed => {
                outcome.failed = failed.map(|(i, e)| (start + i, e));
                break;
            }
        }
    }
    let mut response = KinesisEventResponse::default();
    response.set_failures(batch_item_failures(&ids, &outcome));
    (response, outcome)
}

/// How long the newest record of the batch waited in the stream, in milliseconds: how far
/// this consumer is behind. `None` for an empty batch; 0 when the clocks disagree (a record
/// "from the future").
pub fn iterator_age_ms(event: &KinesisEvent, now: SystemTime) -> Option<u64> {
    let newest = event
        .records
        .iter()
        .map(|r| r.kinesis.approximate_arrival_timestamp.0.timestamp_millis())
        .max()?;
    let now_ms = match now.duration_since(UNIX_EPOCH) {
        Ok(d) => i64::try_from(d.as_millis()).unwrap_or(i64::MAX),
        Err(before) => -i64::try_from(before.duration().as_millis()).unwrap_or(i64::MAX),
    };
    Some(u64::try_from(now_ms.saturating_sub(newest)).unwrap_or(0))
}

/// The aggregator's settings besides the store's (see the module docs).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AggregatorConfig {
    pub dead_letter: Option<S3Location>,
}

impl AggregatorConfig {
    pub fn from_vars(vars: &impl Vars) -> Result<AggregatorConfig, ConfigError> {
        Ok(AggregatorConfig {
            dead_letter: S3Location::from_var(vars, "METERFLOW_DEAD_LETTER")?,
        })
    }
}

/// Where a record sits in its stream, from the event's own fields.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Position<'a> {
    pub stream: &'a str,
    pub shard: &'a str,
    pub sequence_number: &'a str,
}

impl<'a> Position<'a> {
    /// The stream is the name in `eventSourceARN` (`arn:aws:kinesis:…:stream/NAME`), the
    /// shard the part of `eventID` before `:` (`shardId-000000000000:SEQUENCE`).
    pub fn of(record: &'a KinesisEventRecord) -> Position<'a> {
        let stream = record
            .event_source_arn
            .as_deref()
            .and_then(|arn| arn.rsplit_once(":stream/"))
            .map_or("unknown-stream", |(_, name)| name);
        let shard = record
            .event_id
            .as_deref()
            .and_then(|id| id.split_once(':'))
            .map_or("unknown-shard", |(shard, _)| shard);
        Position {
            stream,
            shard,
            sequence_number: &record.kinesis.sequence_number,
        }
    }

    /// The dead letter's name under the prefix: unique per record, the same on redelivery.
    pub fn dead_letter_name(&self) -> String {
        format!("{}/{}/{}", self.stream, self.shard, self.sequence_number)
    }
}

/// What a batch did, for the log.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize)]
pub struct BatchSummary {
    pub records: usize,
    pub applied: usize,
    pub fragments: usize,
    pub quarantined: usize,
    /// Records the store refused for good (skipped, as quarantined ones are).
    pub refused: usize,
    pub dead_letters: usize,
    /// Records reported in `batchItemFailures` (redelivered).
    pub retried: usize,
}

/// The handler, generic over the store and the dead-letter sink.
pub struct Aggregator<S, K> {
    pub store: S,
    /// The sink and where in it; `None`: quarantined records are only logged.
    pub dead_letter: Option<(K, S3Location)>,
}

impl<S: Store, K: ObjectSink> Aggregator<S, K> {
    pub async fn handle(&self, event: &KinesisEvent) -> (KinesisEventResponse, BatchSummary) {
        let (mut response, outcome) = handle(&self.store, event).await;
        let mut retry_from = outcome.failed.as_ref().map(|(i, _)| *i);
        if let Some((i, e)) = &outcome.failed {
            let p = Position::of(&event.records[*i]);
            warn!(stream = p.stream, shard = p.shard, sequence_number = p.sequence_number, error = %e.report(), "store write failed; the batch is retried from this record");
        }
        let mut summary = BatchSummary {
            records: event.records.len(),
            applied: outcome.applied,
            fragments: outcome.fragments,
            quarantined: outcome.quarantined.len(),
            refused: outcome.refused.len(),
            ..BatchSummary::default()
        };
        let skipped = outcome
            .quarantined
            .iter()
            .map(|q| {
                (
                    q.index,
                    q.error.to_string(),
                    "quarantined a record that cannot be decoded",
                )
            })
            .chain(outcome.refused.iter().map(|r| {
                (
                    r.index,
                    r.error.report(),
                    "the store refused a record for good; it is skipped",
                )
            }));
        for (index, error, what) in skipped {
            let record = &event.records[index];
            let p = Position::of(record);
            error!(stream = p.stream, shard = p.shard, sequence_number = p.sequence_number, error = %error, "{what}");
            let Some((sink, at)) = &self.dead_letter else {
                continue;
            };
            let key = at.key(&p.dead_letter_name());
            let body = Bytes::copy_from_slice(&record.kinesis.data.0);
            match sink
                .put_object(&at.bucket, &key, body, "application/octet-stream")
                .await
            {
                Ok(()) => {
                    summary.dead_letters += 1;
                    info!(dead_letter = %format!("s3://{}/{key}", at.bucket), "skipped record copied");
                }
                Err(e) if e.is_retryable() => {
                    warn!(error = %e, "dead-letter copy failed; the batch is retried from this record");
                    retry_from = Some(retry_from.map_or(index, |r| r.min(index)));
                }
                Err(e) => {
                    error!(error = %e, "dead-letter copy failed for good; check METERFLOW_DEAD_LETTER and the role's s3:PutObject permission")
                }
            }
        }
        if retry_from.is_some() {
            let ids: Vec<&str> = event
                .records
                .iter()
                .map(|r| r.kinesis.sequence_number.as_str())
                .collect();
            let failures = crate::retry_from(&ids, retry_from);
            summary.retried = failures.len();
            response.set_failures(failures);
        }
        (response, summary)
    }
}
