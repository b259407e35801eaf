//! The aggregator Lambda's handler: a raw `KinesisEvent` in, `batchItemFailures` out.
//!
//! Generic over the store so that it is tested on the embedded store with real event JSON,
//! and deployed on the CQL store. The event source mapping is configured with
//! ReportBatchItemFailures: returning the records from the first failed one on makes Lambda
//! checkpoint just before it and retry from there; records before it were written and stay
//! written (writes are idempotent, so a retry that repeats some is harmless).

use aws_lambda_events::event::kinesis::KinesisEvent;
use aws_lambda_events::event::streams::KinesisEventResponse;
use meterflow_core::metric_names;
use meterflow_store::Store;
use std::time::{SystemTime, UNIX_EPOCH};

use crate::{apply, batch_item_failures, Outcome};

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
    let outcome = apply(store, &data, |_| {}).await;
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
