//! Envelope records into a Kinesis stream with PutRecords.
//!
//! Shaped like Vector's `aws_kinesis` sink: building requests is pure ([`Entry::new`],
//! [`Batcher`]) and tested against the service limits, named below; the I/O is one trait,
//! [`RecordStream`], with an implementation on `aws-sdk-kinesis` ([`KinesisStream`]); the test
//! kit's fault-injecting double tests what an emulator never does (moto's `FailedRecordCount`
//! is always 0). [`put_batch`] retries only the entries a call reports
//! failed, with backoff and jitter, and [`Shipper`] keeps a bounded number of calls in flight.
//!
//! Retries reorder records within a shard. That is harmless here: every record holds fragments
//! under deterministic keys, and the merge rule does not depend on arrival order.

use std::future::Future;
use std::sync::Arc;

use aws_sdk_kinesis::error::{DisplayErrorContext, ProvideErrorMetadata, SdkError};
use aws_sdk_kinesis::primitives::Blob;
use aws_sdk_kinesis::types::PutRecordsRequestEntry;
use meterflow_core::envelope::StreamRecord;
use meterflow_core::partition::{explicit_hash_key, partition_key};
use tokio::sync::mpsc;
use tokio::task::JoinSet;

use crate::retry::RetryPolicy;

/// Most records one PutRecords call may carry.
pub const MAX_RECORDS_PER_CALL: usize = 500;
/// Most bytes one PutRecords call may carry, counting each record's data and partition key
/// (the explicit hash key does not count).
pub const MAX_BYTES_PER_CALL: usize = 5 * 1024 * 1024;
/// Most bytes one record may have, data and partition key together.
pub const MAX_RECORD_BYTES: usize = 1024 * 1024;
/// Bytes the splitter puts in one call: under the 5 MiB limit on purpose. Each call in flight
/// holds its batch, the SDK's JSON body (base64: 4/3 of it) and the retry copy, so calls of
/// 5 MiB made the Lambda's memory grow past 64 MiB with four in flight; 2 MiB calls, four at a
/// time, still put ~8 MiB per round trip, more than a stream of eight shards takes a second.
pub const DEFAULT_BATCH_BYTES: usize = 2 * 1024 * 1024;

/// One PutRecords entry: an envelope record addressed to its bucket's point of the hash space.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Entry {
    pub data: Vec<u8>,
    pub partition_key: String,
    /// Decimal, as the API wants it: the middle of the bucket's slice of `0..2^128`, so every
    /// series of a bucket lands on the one shard that owns that point.
    pub explicit_hash_key: String,
    /// Fragments inside, for accounting.
    pub fragments: u32,
}

impl Entry {
    /// The entry for a splitter record; refused when it cannot fit one Kinesis record (the
    /// splitter's default `max_record_bytes` leaves room for the key, so this means the
    /// settings are wrong, not the data).
    pub fn new(record: StreamRecord, buckets: u32) -> Result<Entry, PutError> {
        if record.bucket >= buckets {
            return Err(PutError::Bucket {
                bucket: record.bucket,
                buckets,
            });
        }
        let partition_key = partition_key(record.bucket);
        let size = record.data.len() + partition_key.len();
        if size > MAX_RECORD_BYTES {
            return Err(PutError::Oversize { size });
        }
        Ok(Entry {
            explicit_hash_key: explicit_hash_key(record.bucket, buckets).to_string(),
            partition_key,
            fragments: record.fragments,
            data: record.data,
        })
    }

    /// Bytes this entry counts against the per-call and per-record limits.
    pub fn size(&self) -> usize {
        self.data.len() + self.partition_key.len()
    }
}

/// Groups entries into PutRecords calls within [`MAX_RECORDS_PER_CALL`] and
/// [`MAX_BYTES_PER_CALL`] (or a smaller byte cap), in arrival order.
#[derive(Debug)]
pub struct Batcher {
    entries: Vec<Entry>,
    bytes: usize,
    max_bytes: usize,
}

impl Default for Batcher {
    fn default() -> Self {
        Batcher::with_max_bytes(MAX_BYTES_PER_CALL)
    }
}

impl Batcher {
    pub fn new() -> Batcher {
        Batcher::default()
    }

    /// Batches of at most `max_bytes` (capped at [`MAX_BYTES_PER_CALL`]); an entry larger
    /// than that still goes, alone.
    pub fn with_max_bytes(max_bytes: usize) -> Batcher {
        Batcher {
            entries: Vec::new(),
            bytes: 0,
            max_bytes: max_bytes.min(MAX_BYTES_PER_CALL),
        }
    }

    /// Adds an entry; returns the previous batch when this entry does not fit it. An entry
    /// made by [`Entry::new`] always fits an empty batch.
    pub fn push(&mut self, entry: Entry) -> Option<Vec<Entry>> {
        let full = !self.entries.is_empty()
            && (self.entries.len() >= MAX_RECORDS_PER_CALL
                || self.bytes + entry.size() > self.max_bytes);
        let out = if full { self.take() } else { None };
        self.bytes += entry.size();
        self.entries.push(entry);
        out
    }

    /// The batch being filled, if any.
    pub fn take(&mut self) -> Option<Vec<Entry>> {
        self.bytes = 0;
        let batch = std::mem::take(&mut self.entries);
        (!batch.is_empty()).then_some(batch)
    }

    pub fn len(&self) -> usize {
        self.entries.len()
    }

    pub fn is_empty(&self) -> bool {
        self.entries.is_empty()
    }
}

/// All entries as PutRecords calls (pure; the streaming form is [`Batcher`]).
pub fn batches(entries: impl IntoIterator<Item = Entry>) -> Vec<Vec<Entry>> {
    let mut b = Batcher::new();
    let mut out: Vec<Vec<Entry>> = entries.into_iter().filter_map(|e| b.push(e)).collect();
    out.extend(b.take());
    out
}

/// What the service did with one entry of a call.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum EntryOutcome {
    Put {
        shard_id: String,
        /// Opaque: moto's repeat across shards, real ones have 56 digits.
        sequence_number: String,
    },
    /// `ProvisionedThroughputExceededException` or `InternalFailure`: both transient.
    Failed { code: String, message: String },
}

/// A whole call failed.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("PutRecords failed ({code}): {message}")]
pub struct CallError {
    /// Throttling, a 5xx, a timeout or a broken connection: the same call may succeed later.
    pub retryable: bool,
    pub code: String,
    pub message: String,
}

/// One external system, one trait: a Kinesis stream that takes PutRecords calls.
pub trait RecordStream: Send + Sync + 'static {
    /// Puts `entries` (within the call limits) and returns one outcome per entry, in order.
    fn put_records(
        &self,
        entries: &[Entry],
    ) -> impl Future<Output = Result<Vec<EntryOutcome>, CallError>> + Send;
}

/// Why records could not be put.
#[derive(Debug, thiserror::Error)]
pub enum PutError {
    #[error("{failed} of {total} records still failing after {attempts} attempts; last: {last}")]
    Exhausted {
        failed: usize,
        total: usize,
        attempts: u32,
        last: String,
    },
    #[error(transparent)]
    Call(CallError),
    #[error("a record of {size} bytes (data and partition key) exceeds Kinesis' {MAX_RECORD_BYTES}-byte limit: lower the splitter's max_record_bytes")]
    Oversize { size: usize },
    #[error("record of bucket {bucket} but only {buckets} buckets: the shipper and the splitter must use the same bucket count")]
    Bucket { bucket: u32, buckets: u32 },
    #[error("the record channel closed before the records were put")]
    Aborted,
}

impl PutError {
    /// Whether running the same work again may succeed (the Lambda should fail the invocation
    /// so it is retried) rather than fail the same way.
    pub fn is_retryable(&self) -> bool {
        match self {
            PutError::Exhausted { .. } | PutError::Aborted => true,
            PutError::Call(e) => e.retryable,
            PutError::Oversize { .. } | PutError::Bucket { .. } => false,
        }
    }
}

/// What a put achieved.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, serde::Serialize)]
pub struct PutReport {
    pub records: u64,
    pub fragments: u64,
    pub bytes: u64,
    pub calls: u64,
    /// Entries sent again after an entry or call failure.
    pub retried_entries: u64,
    /// Calls throttled, whole or for some of their entries.
    pub throttled_calls: u64,
}

impl PutReport {
    fn add(&mut self, o: PutReport) {
        self.records += o.records;
        self.fragments += o.fragments;
        self.bytes += o.bytes;
        self.calls += o.calls;
        self.retried_entries += o.retried_entries;
        self.throttled_calls += o.throttled_calls;
    }

    /// Adds this report to the metrics (once per batch, whatever its end).
    fn record(&self) {
        use meterflow_core::metric_names as m;
        metrics::counter!(m::KINESIS_RECORDS_PUT).increment(self.records);
        metrics::counter!(m::KINESIS_BYTES_PUT).increment(self.bytes);
        metrics::counter!(m::KINESIS_PUT_CALLS).increment(self.calls);
        metrics::counter!(m::KINESIS_ENTRIES_RETRIED).increment(self.retried_entries);
        metrics::counter!(m::KINESIS_THROTTLED_CALLS).increment(self.throttled_calls);
    }
}

/// Error codes that mean "slow down" (a whole call's, or one entry's).
const THROTTLING_CODES: &[&str] = &[
    "ProvisionedThroughputExceededException",
    "ThrottlingException",
    "LimitExceededException",
    "KMSThrottlingException",
];

fn is_throttling(code: &str) -> bool {
    THROTTLING_CODES.contains(&code)
}

/// Puts one batch, retrying only the entries that failed (and whole calls that failed
/// retryably), with backoff and jitter, at most `policy.max_attempts` calls. What was done is
/// added to the metrics whether or not the batch was put in the end.
pub async fn put_batch<S: RecordStream + ?Sized>(
    stream: &S,
    batch: Vec<Entry>,
    policy: &RetryPolicy,
) -> Result<PutReport, PutError> {
    let mut report = PutReport::default();
    let result = put_pending(stream, batch, policy, &mut report).await;
    report.record();
    result.map(|()| report)
}

/// The body of [`put_batch`]: `report` follows what was done, failed or not.
async fn put_pending<S: RecordStream + ?Sized>(
    stream: &S,
    batch: Vec<Entry>,
    policy: &RetryPolicy,
    report: &mut PutReport,
) -> Result<(), PutError> {
    let total = batch.len();
    let mut pending = batch;
    let mut last = String::new();
    let attempts = policy.max_attempts.max(1);
    for attempt in 1..=attempts {
        report.calls += 1;
        match stream.put_records(&pending).await {
            Ok(outcomes) if outcomes.len() == pending.len() => {
                let mut failed = Vec::new();
                let throttled = outcomes
                    .iter()
                    .any(|o| matches!(o, EntryOutcome::Failed { code, .. } if is_throttling(code)));
                report.throttled_calls += u64::from(throttled);
                for (entry, outcome) in pending.into_iter().zip(outcomes) {
                    match outcome {
                        EntryOutcome::Put { .. } => {
                            report.records += 1;
                            report.fragments += u64::from(entry.fragments);
                            report.bytes += entry.data.len() as u64;
                        }
                        EntryOutcome::Failed { code, message } => {
                            last = format!("{code}: {message}");
                            failed.push(entry);
                        }
                    }
                }
                if failed.is_empty() {
                    return Ok(());
                }
                pending = failed;
            }
            Ok(outcomes) => {
                last = format!(
                    "the service answered {} outcomes for {} records",
                    outcomes.len(),
                    pending.len()
                );
            }
            Err(e) => {
                report.throttled_calls += u64::from(is_throttling(&e.code));
                if !e.retryable {
                    return Err(PutError::Call(e));
                }
                last = e.to_string();
            }
        }
        if attempt < attempts {
            report.retried_entries += pending.len() as u64;
            tokio::time::sleep(policy.delay(attempt)).await;
        }
    }
    Err(PutError::Exhausted {
        failed: pending.len(),
        total,
        attempts,
        last,
    })
}

/// Ships records from a channel to a stream: batches them and keeps at most `max_in_flight`
/// calls (each with its own retries) running at once.
#[derive(Debug, Clone)]
pub struct Shipper<S> {
    pub stream: Arc<S>,
    pub buckets: u32,
    pub policy: RetryPolicy,
    /// Calls in flight: with `max_batch_bytes`, the bound on memory and on load.
    pub max_in_flight: usize,
    /// Bytes per call ([`DEFAULT_BATCH_BYTES`]; at most [`MAX_BYTES_PER_CALL`]).
    pub max_batch_bytes: usize,
}

impl<S: RecordStream> Shipper<S> {
    pub fn new(stream: Arc<S>, buckets: u32) -> Shipper<S> {
        Shipper {
            stream,
            buckets,
            policy: RetryPolicy::default(),
            max_in_flight: 4,
            max_batch_bytes: DEFAULT_BATCH_BYTES,
        }
    }

    /// Puts every record received until the channel closes. On the first error the calls in
    /// flight are cancelled and the channel is dropped, so the producer sees it closed.
    pub async fn ship(&self, mut rx: mpsc::Receiver<StreamRecord>) -> Result<PutReport, PutError> {
        let mut batcher = Batcher::with_max_bytes(self.max_batch_bytes);
        let mut calls: JoinSet<Result<PutReport, PutError>> = JoinSet::new();
        let mut report = PutReport::default();
        while let Some(record) = rx.recv().await {
            if let Some(batch) = batcher.push(Entry::new(record, self.buckets)?) {
                self.start(&mut calls, &mut report, batch).await?;
            }
        }
        if let Some(batch) = batcher.take() {
            self.start(&mut calls, &mut report, batch).await?;
        }
        while let Some(done) = calls.join_next().await {
            report.add(joined(done)?);
        }
        Ok(report)
    }

    async fn start(
        &self,
        calls: &mut JoinSet<Result<PutReport, PutError>>,
        report: &mut PutReport,
        batch: Vec<Entry>,
    ) -> Result<(), PutError> {
        while calls.len() >= self.max_in_flight.max(1) {
            match calls.join_next().await {
                Some(done) => report.add(joined(done)?),
                None => break,
            }
        }
        let stream = Arc::clone(&self.stream);
        let policy = self.policy;
        calls.spawn(async move { put_batch(&*stream, batch, &policy).await });
        Ok(())
    }
}

fn joined(
    done: Result<Result<PutReport, PutError>, tokio::task::JoinError>,
) -> Result<PutReport, PutError> {
    match done {
        Ok(r) => r,
        // A panicking put is a bug, but the records it held are not known to be put.
        Err(e) if e.is_panic() => std::panic::resume_unwind(e.into_panic()),
        Err(_) => Err(PutError::Aborted),
    }
}

/// [`RecordStream`] on a real (or emulated) Kinesis stream.
#[derive(Debug, Clone)]
pub struct KinesisStream {
    pub client: aws_sdk_kinesis::Client,
    pub stream_name: String,
}

/// Service error codes worth retrying.
const RETRYABLE_CODES: &[&str] = &[
    "ProvisionedThroughputExceededException",
    "KMSThrottlingException",
    "LimitExceededException",
    "InternalFailure",
    "ServiceUnavailable",
    "ThrottlingException",
];

/// Sorts an SDK error into retryable or not (the SDK's own retries have already run).
pub(crate) fn classify<E, R>(e: SdkError<E, R>) -> CallError
where
    E: ProvideErrorMetadata + std::error::Error + Send + Sync + 'static,
    R: std::fmt::Debug,
{
    let message = DisplayErrorContext(&e).to_string();
    match &e {
        SdkError::ServiceError(s) => {
            let code = s.err().code().unwrap_or("Unknown").to_owned();
            let retryable = RETRYABLE_CODES.contains(&code.as_str());
            CallError {
                retryable,
                code,
                message,
            }
        }
        SdkError::ConstructionFailure(_) => CallError {
            retryable: false,
            code: "ConstructionFailure".to_owned(),
            message,
        },
        SdkError::DispatchFailure(d) => CallError {
            retryable: !d.is_user(),
            code: "DispatchFailure".to_owned(),
            message,
        },
        SdkError::TimeoutError(_) => CallError {
            retryable: true,
            code: "Timeout".to_owned(),
            message,
        },
        // A response that could not be read or parsed: the connection may have broken.
        _ => CallError {
            retryable: true,
            code: "ResponseError".to_owned(),
            message,
        },
    }
}

impl KinesisStream {
    /// The stream's open shard count, from DescribeStreamSummary: a misnamed stream fails
    /// here, by name, before anything is parsed, instead of at the first full batch.
    pub async fn open_shards(&self) -> Result<u32, CallError> {
        let out = self
            .client
            .describe_stream_summary()
            .stream_name(&self.stream_name)
            .send()
            .await
            .map_err(classify)?;
        let shards = out
            .stream_description_summary()
            .map_or(0, |s| s.open_shard_count());
        Ok(u32::try_from(shards).unwrap_or(0))
    }
}

impl RecordStream for KinesisStream {
    async fn put_records(&self, entries: &[Entry]) -> Result<Vec<EntryOutcome>, CallError> {
        let mut records = Vec::with_capacity(entries.len());
        for e in entries {
            let entry = PutRecordsRequestEntry::builder()
                .data(Blob::new(e.data.clone()))
                .partition_key(&e.partition_key)
                .explicit_hash_key(&e.explicit_hash_key)
                .build()
                .map_err(|b| CallError {
                    retryable: false,
                    code: "BuildError".to_owned(),
                    message: b.to_string(),
                })?;
            records.push(entry);
        }
        let out = self
            .client
            .put_records()
            .stream_name(&self.stream_name)
            .set_records(Some(records))
            .send()
            .await
            .map_err(classify)?;
        Ok(out
            .records()
            .iter()
            .map(|r| match r.error_code() {
                Some(code) => EntryOutcome::Failed {
                    code: code.to_owned(),
                    message: r.error_message().unwrap_or_default().to_owned(),
                },
                None => EntryOutcome::Put {
                    shard_id: r.shard_id().unwrap_or_default().to_owned(),
                    sequence_number: r.sequence_number().unwrap_or_default().to_owned(),
                },
            })
            .collect())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn rec(bucket: u32, len: usize) -> StreamRecord {
        StreamRecord {
            bucket,
            fragments: 1,
            data: vec![7; len],
        }
    }

    #[test]
    fn entries_carry_the_bucket_keys() {
        let e = Entry::new(rec(3, 10), 4).unwrap();
        assert_eq!(e.partition_key, "bucket-3");
        assert_eq!(e.explicit_hash_key, explicit_hash_key(3, 4).to_string());
        assert!(e.explicit_hash_key.bytes().all(|b| b.is_ascii_digit()));
        assert_eq!(e.size(), 10 + "bucket-3".len());
    }

    #[test]
    fn the_record_limit_counts_the_partition_key() {
        let key = partition_key(1).len();
        assert!(Entry::new(rec(1, MAX_RECORD_BYTES - key), 4).is_ok());
        let e = Entry::new(rec(1, MAX_RECORD_BYTES - key + 1), 4).unwrap_err();
        assert!(matches!(e, PutError::Oversize { size } if size == MAX_RECORD_BYTES + 1));
        assert!(!e.is_retryable());
        let e = Entry::new(rec(4, 1), 4).unwrap_err();
        assert!(
            matches!(
                e,
                PutError::Bucket {
                    bucket: 4,
                    buckets: 4
                }
            ),
            "{e}"
        );
    }

    #[test]
    fn batches_stop_at_500_records() {
        let entries = (0..1201).map(|i| Entry::new(rec(i % 4, 10), 4).unwrap());
        let sizes: Vec<usize> = batches(entries).iter().map(Vec::len).collect();
        assert_eq!(sizes, [500, 500, 201]);
    }

    #[test]
    fn batches_stop_at_5_mib_counting_keys() {
        // Five records of exactly 1 MiB (data + key) fill a call to the byte.
        let key = partition_key(0).len();
        let full = || Entry::new(rec(0, MAX_RECORD_BYTES - key), 1).unwrap();
        let bs = batches((0..11).map(|_| full()));
        let sizes: Vec<usize> = bs.iter().map(Vec::len).collect();
        assert_eq!(sizes, [5, 5, 1]);
        for b in &bs {
            assert!(b.iter().map(Entry::size).sum::<usize>() <= MAX_BYTES_PER_CALL);
        }
        // One byte more and only four fit.
        let over = Entry::new(rec(0, MAX_RECORD_BYTES - key - 200_000), 1).unwrap();
        let mut b = Batcher::new();
        for _ in 0..5 {
            assert!(b.push(full()).is_none() || b.len() == 1);
        }
        assert_eq!(b.len(), 5);
        assert_eq!(b.push(over).map(|v| v.len()), Some(5));
        assert_eq!(b.len(), 1);
        // Order is kept and nothing is lost.
        let entries: Vec<Entry> = (0..1300)
            .map(|i| Entry::new(rec(i % 7, (i as usize * 4099) % 20_000), 7).unwrap())
            .collect();
        let flat: Vec<Entry> = batches(entries.clone()).into_iter().flatten().collect();
        assert_eq!(flat, entries);
        assert!(batches(Vec::new()).is_empty());
    }

    #[test]
    fn a_smaller_byte_cap_makes_smaller_calls_but_never_drops_a_large_entry() {
        const { assert!(DEFAULT_BATCH_BYTES <= MAX_BYTES_PER_CALL) };
        let half = Entry::new(rec(0, 600_000), 1).unwrap();
        let mut b = Batcher::with_max_bytes(DEFAULT_BATCH_BYTES);
        let mut calls = Vec::new();
        for _ in 0..7 {
            calls.extend(b.push(half.clone()));
        }
        calls.extend(b.take());
        let sizes: Vec<usize> = calls.iter().map(Vec::len).collect();
        assert_eq!(sizes, [3, 3, 1], "three 600 kB entries per 2 MiB call");
        // A cap below one entry: each entry goes alone; a cap above the limit is the limit.
        let mut tiny = Batcher::with_max_bytes(1000);
        assert!(tiny.push(half.clone()).is_none());
        assert_eq!(tiny.push(half.clone()).map(|v| v.len()), Some(1));
        assert_eq!(
            Batcher::with_max_bytes(usize::MAX).max_bytes,
            MAX_BYTES_PER_CALL
        );
    }
}
