//! The aggregator Lambda's handler: a raw `KinesisEvent` in, `batchItemFailures` out.
//!
//! Generic over the store so that it is tested on the embedded store with real event JSON,
//! and deployed on the CQL store. The event source mapping is configured with
//! ReportBatchItemFailures: returning the records from the first failed one on makes Lambda
//! checkpoint just before it and retry from there; records before it were written and stay
//! written (writes are idempotent, so a retry that repeats some is harmless).

use aws_lambda_events::event::kinesis::KinesisEvent;
use aws_lambda_events::event::streams::KinesisEventResponse;
use meterflow_store::Store;

use crate::{apply, batch_item_failures, Outcome};

/// Applies a batch; returns the response for Lambda and what happened (for logs and metrics).
pub async fn handle<S: Store>(store: &S, event: &KinesisEvent) -> (KinesisEventResponse, Outcome) {
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
