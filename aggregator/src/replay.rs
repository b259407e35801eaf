//! Re-driving a Kinesis stream through the aggregator: the driver of `meterflow replay`.
//!
//! After a store loss, an aggregator fix, a new table or a batch the event source mapping gave
//! up on, the records still on the stream are read back shard by shard and applied exactly as
//! the Lambda applies a batch ([`crate::apply`]: decode, quarantine, one store call). Writes
//! are idempotent, so replaying anything twice, or a range the Lambda already applied, changes
//! no total.
//!
//! A shard is read with GetRecords following each page's next iterator, within Kinesis' read
//! limits (at most 5 calls and 2 MB a second per shard: [`ReplaySettings`]); throttling is
//! retried with backoff and jitter; an iterator that expired (they live five minutes) is
//! renewed just after the last record applied, so nothing is lost or applied twice. A read
//! ends at the shard's tip (an open shard with nothing left), at a closed shard's end, at an
//! end sequence number or time, or when told to stop (after the batch in hand). Shards are
//! replayed in lineage order: after a reshard, a parent before its children, so a meter's
//! records arrive in the order they were written.

use std::cmp::Ordering as Order;
use std::collections::HashSet;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::Duration;

use meterflow_aws::kinesis::CallError;
use meterflow_aws::retry::RetryPolicy;
use meterflow_aws::shards::{
    sequence_order, ShardInfo, ShardReader, StartingPosition, EXPIRED_ITERATOR,
    MAX_READS_PER_SECOND, MAX_READ_BYTES_PER_SECOND, MAX_RECORDS_PER_CALL, THROUGHPUT_EXCEEDED,
};
use meterflow_core::{Day, Fragment, SeriesId};
use meterflow_store::{Store, StoreError};
use tokio::time::Instant;

use crate::apply;

/// Which records of one shard to apply.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ShardPlan {
    pub shard: String,
    pub from: StartingPosition,
    pub until: Until,
}

/// Where a shard's replay ends, besides the shard's tip or end.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Until {
    /// The last sequence number to apply (included): the end of a failed batch.
    pub sequence: Option<String>,
    /// Records that arrived after this time (epoch milliseconds) are not applied.
    pub time_ms: Option<i64>,
    /// At most this many records (a failed batch's size, when it names no end).
    pub records: Option<u64>,
}

/// How fast, and how patiently, to read.
#[derive(Debug, Clone, Copy)]
pub struct ReplaySettings {
    /// Records asked for per GetRecords call.
    pub limit: i32,
    /// Kinesis allows 5 GetRecords calls a second per shard: 200 ms between calls.
    pub min_call_interval: Duration,
    /// Kinesis allows 2 MB a second read per shard: after a page, wait its share.
    pub max_bytes_per_second: u64,
    /// Throttled or failed calls and retryable store failures: attempts and backoff.
    pub retry: RetryPolicy,
    /// Shards read at once (within one lineage wave).
    pub parallel: usize,
}

impl Default for ReplaySettings {
    fn default() -> Self {
        ReplaySettings {
            limit: MAX_RECORDS_PER_CALL,
            min_call_interval: Duration::from_secs(1) / MAX_READS_PER_SECOND,
            max_bytes_per_second: MAX_READ_BYTES_PER_SECOND,
            retry: RetryPolicy {
                max_attempts: 10,
                base: Duration::from_millis(200),
                cap: Duration::from_secs(10),
            },
            parallel: 4,
        }
    }
}

/// Why a shard's replay ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize)]
#[serde(rename_all = "snake_case")]
pub enum Ended {
    /// An open shard with nothing left to read.
    Tip,
    /// A closed shard (after a reshard) read to its end.
    Closed,
    /// The next record arrived after the end time.
    ToTime,
    /// The end sequence number was applied.
    EndSequence,
    /// As many records as the plan asked for were applied.
    Count,
    /// Told to stop (Ctrl-C): after the batch in hand.
    Stopped,
}

/// What replaying one shard did.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
pub struct ShardReport {
    pub shard: String,
    pub records: u64,
    pub fragments: u64,
    /// Bytes of record data read.
    pub bytes: u64,
    /// Records that can never be decoded (skipped, counted).
    pub quarantined: u64,
    /// The last record applied: `--from-sequence` just after it resumes a replay.
    pub last_sequence_number: Option<String>,
    pub ended: Option<Ended>,
    /// Iterators renewed after they expired.
    pub iterators_renewed: u64,
}

impl ShardReport {
    fn new(shard: &str) -> ShardReport {
        ShardReport {
            shard: shard.to_owned(),
            records: 0,
            fragments: 0,
            bytes: 0,
            quarantined: 0,
            last_sequence_number: None,
            ended: None,
            iterators_renewed: 0,
        }
    }
}

/// Why a shard's replay failed; what it applied before is in `report`.
#[derive(Debug, thiserror::Error)]
pub enum ReplayError {
    #[error("shard {}: reading failed: {error} ({})", report.shard, resume(report))]
    Read {
        report: Box<ShardReport>,
        error: CallError,
    },
    #[error("shard {}: writing to the store failed ({})", report.shard, resume(report))]
    Store {
        report: Box<ShardReport>,
        #[source]
        error: StoreError,
    },
}

impl ReplayError {
    /// What the shard applied before it failed.
    pub fn report(&self) -> &ShardReport {
        match self {
            ReplayError::Read { report, .. } | ReplayError::Store { report, .. } => report,
        }
    }
}

/// How to go on after a failure.
fn resume(r: &ShardReport) -> String {
    match &r.last_sequence_number {
        Some(s) => format!(
            "resume with --shard {} --from-sequence {s}: it was the last record applied",
            r.shard
        ),
        None => "nothing was applied yet: run the replay again".to_owned(),
    }
}

/// What a replay tells its caller as it goes (a progress display).
pub trait Observer: Send + Sync {
    /// A page of `shard` was applied: its report so far, and how far the shard's newest
    /// record is ahead.
    fn progress(&self, report: &ShardReport, millis_behind_latest: Option<i64>);
    /// `shard` is done (or failed).
    fn done(&self, report: &ShardReport);
}

/// An [`Observer`] that shows nothing.
pub struct Quiet;

impl Observer for Quiet {
    fn progress(&self, _: &ShardReport, _: Option<i64>) {}
    fn done(&self, _: &ShardReport) {}
}

/// The shards in lineage waves: a shard comes in a wave after its parents' (a shard whose
/// parents are not listed, aged out of the stream, starts the first). Within a wave, in id
/// order.
pub fn lineage_waves(shards: &[ShardInfo]) -> Vec<Vec<ShardInfo>> {
    let ids: HashSet<&str> = shards.iter().map(|s| s.id.as_str()).collect();
    let mut placed: HashSet<String> = HashSet::new();
    let mut left: Vec<&ShardInfo> = shards.iter().collect();
    left.sort_by(|a, b| a.id.cmp(&b.id));
    let mut waves = Vec::new();
    while !left.is_empty() {
        let ready = |s: &&ShardInfo| {
            [&s.parent, &s.adjacent_parent]
                .into_iter()
                .flatten()
                .all(|p| !ids.contains(p.as_str()) || placed.contains(p))
        };
        let (wave, rest): (Vec<&ShardInfo>, Vec<&ShardInfo>) = left.into_iter().partition(ready);
        if wave.is_empty() {
            // A cycle cannot happen in Kinesis; should a listing ever show one, read on anyway.
            waves.push(rest.into_iter().cloned().collect());
            break;
        }
        placed.extend(wave.iter().map(|s| s.id.clone()));
        waves.push(wave.into_iter().cloned().collect());
        left = rest;
    }
    waves
}

/// Replays every plan: the waves one after the other, the shards of a wave at once (at most
/// `settings.parallel`). Returns each shard's report; a shard that failed is reported with its
/// error, and the others go on.
pub async fn replay<R, S>(
    reader: Arc<R>,
    store: Arc<S>,
    waves: Vec<Vec<ShardPlan>>,
    settings: ReplaySettings,
    stop: Arc<AtomicBool>,
    observer: Arc<dyn Observer>,
) -> Vec<Result<ShardReport, ReplayError>>
where
    R: ShardReader + 'static,
    S: Store + 'static,
{
    let mut out = Vec::new();
    for wave in waves {
        for chunk in wave.chunks(settings.parallel.max(1)) {
            let mut tasks = tokio::task::JoinSet::new();
            for (i, plan) in chunk.iter().cloned().enumerate() {
                let (reader, store, stop, observer) = (
                    Arc::clone(&reader),
                    Arc::clone(&store),
                    Arc::clone(&stop),
                    Arc::clone(&observer),
                );
                tasks.spawn(async move {
                    let r = replay_shard(
                        reader.as_ref(),
                        store.as_ref(),
                        &plan,
                        &settings,
                        &stop,
                        observer.as_ref(),
                    )
                    .await;
                    (i, r)
                });
            }
            let mut done: Vec<(usize, Result<ShardReport, ReplayError>)> = Vec::new();
            while let Some(joined) = tasks.join_next().await {
                match joined {
                    Ok(r) => done.push(r),
                    Err(e) if e.is_panic() => std::panic::resume_unwind(e.into_panic()),
                    Err(_) => {}
                }
            }
            done.sort_by_key(|(i, _)| *i);
            out.extend(done.into_iter().map(|(_, r)| r));
        }
    }
    out
}

/// Replays one shard.
pub async fn replay_shard<R: ShardReader, S: Store>(
    reader: &R,
    store: &S,
    plan: &ShardPlan,
    settings: &ReplaySettings,
    stop: &AtomicBool,
    observer: &dyn Observer,
) -> Result<ShardReport, ReplayError> {
    let mut report = ShardReport::new(&plan.shard);
    let result = read_shard(reader, store, plan, settings, stop, observer, &mut report).await;
    observer.done(&report);
    match result {
        Ok(ended) => {
            report.ended = Some(ended);
            Ok(report)
        }
        Err(Failure::Read(error)) => Err(ReplayError::Read {
            report: Box::new(report),
            error,
        }),
        Err(Failure::Store(error)) => Err(ReplayError::Store {
            report: Box::new(report),
            error,
        }),
    }
}

enum Failure {
    Read(CallError),
    Store(StoreError),
}

/// The read loop of [`replay_shard`]; `report` is kept up to date as records are applied.
async fn read_shard<R: ShardReader, S: Store>(
    reader: &R,
    store: &S,
    plan: &ShardPlan,
    settings: &ReplaySettings,
    stop: &AtomicBool,
    observer: &dyn Observer,
    report: &mut ShardReport,
) -> Result<Ended, Failure> {
    let shard = plan.shard.as_str();
    // Where a new iterator starts: the plan's start, then just after the last record applied.
    let start = |report: &ShardReport| match &report.last_sequence_number {
        Some(s) => StartingPosition::AfterSequence(s.clone()),
        None => plan.from.clone(),
    };
    let from = start(report);
    let mut iterator = patiently(settings, || reader.iterator(shard, &from)).await?;
    let mut next_call = Instant::now();
    loop {
        if stop.load(Ordering::Relaxed) {
            return Ok(Ended::Stopped);
        }
        tokio::time::sleep_until(next_call).await;
        let called = Instant::now();
        let page = match patiently(settings, || reader.records(&iterator, settings.limit)).await {
            Ok(page) => page,
            Err(Failure::Read(e)) if e.code == EXPIRED_ITERATOR => {
                let from = start(report);
                iterator = patiently(settings, || reader.iterator(shard, &from)).await?;
                report.iterators_renewed += 1;
                continue;
            }
            Err(e) => return Err(e),
        };
        let page_bytes: u64 = page.records.iter().map(|r| r.data.len() as u64).sum();
        next_call = called + pause_after(page_bytes, settings);

        // The records of the page the plan wants, and whether the plan ends inside it.
        let mut ended = None;
        let mut batch = Vec::new();
        for r in &page.records {
            if plan
                .until
                .records
                .is_some_and(|n| report.records + batch.len() as u64 >= n)
            {
                ended = Some(Ended::Count);
                break;
            }
            if plan.until.time_ms.is_some_and(|t| r.arrival_ms > t) {
                ended = Some(Ended::ToTime);
                break;
            }
            let vs_end = plan
                .until
                .sequence
                .as_deref()
                .map(|end| sequence_order(&r.sequence_number, end));
            if vs_end == Some(Order::Greater) {
                ended = Some(Ended::EndSequence);
                break;
            }
            batch.push(r);
            if vs_end == Some(Order::Equal) {
                ended = Some(Ended::EndSequence);
                break;
            }
        }
        apply_batch(store, &batch, settings, report).await?;
        observer.progress(report, page.millis_behind_latest);
        if let Some(ended) = ended {
            return Ok(ended);
        }
        match page.next_iterator {
            None => return Ok(Ended::Closed),
            Some(_) if page.records.is_empty() && page.millis_behind_latest == Some(0) => {
                return Ok(Ended::Tip)
            }
            Some(next) => iterator = next,
        }
    }
}

/// How long after a call that returned `page_bytes` the next may start: the call rate's
/// interval, or the page's share of the byte rate if that is longer.
pub fn pause_after(page_bytes: u64, settings: &ReplaySettings) -> Duration {
    let per_second = settings.max_bytes_per_second.max(1);
    let share = Duration::from_secs(page_bytes / per_second)
        + Duration::from_nanos((page_bytes % per_second) * 1_000_000_000 / per_second);
    settings.min_call_interval.max(share)
}

/// Applies a batch as the aggregator Lambda does, retrying a retryable store failure from the
/// first record not written (writes are idempotent); counts what was applied.
async fn apply_batch<S: Store>(
    store: &S,
    batch: &[&meterflow_aws::shards::ReadRecord],
    settings: &ReplaySettings,
    report: &mut ShardReport,
) -> Result<(), Failure> {
    let mut from = 0;
    let mut attempt = 0;
    while from < batch.len() {
        let data: Vec<&[u8]> = batch[from..].iter().map(|r| r.data.as_slice()).collect();
        let out = apply(store, &data, |_| {}).await;
        let done = match &out.failed {
            Some((i, _)) => *i,
            None => data.len(),
        };
        for r in &batch[from..from + done] {
            report.records += 1;
            report.bytes += r.data.len() as u64;
            report.last_sequence_number = Some(r.sequence_number.clone());
        }
        report.fragments += out.fragments as u64;
        report.quarantined += out.quarantined.iter().filter(|q| q.index < done).count() as u64;
        from += done;
        if let Some((_, e)) = out.failed {
            attempt += 1;
            if !e.is_retryable() || attempt >= settings.retry.max_attempts {
                return Err(Failure::Store(e));
            }
            tokio::time::sleep(settings.retry.delay(attempt)).await;
        }
    }
    Ok(())
}

/// Runs a read call, retrying throttling and other retryable failures with backoff and
/// jitter (an expired iterator is the caller's to renew).
async fn patiently<T, F, Fut>(settings: &ReplaySettings, mut call: F) -> Result<T, Failure>
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = Result<T, CallError>>,
{
    let mut attempt = 0;
    loop {
        match call().await {
            Ok(v) => return Ok(v),
            Err(e) if e.code == EXPIRED_ITERATOR => return Err(Failure::Read(e)),
            Err(e) if e.retryable || e.code == THROUGHPUT_EXCEEDED => {
                attempt += 1;
                if attempt >= settings.retry.max_attempts {
                    return Err(Failure::Read(e));
                }
                tokio::time::sleep(settings.retry.delay(attempt)).await;
            }
            Err(e) => return Err(Failure::Read(e)),
        }
    }
}

/// A store that keeps nothing: `--dry-run` decodes and counts without writing (nor creating a
/// store).
#[derive(Debug, Clone, Copy, Default)]
pub struct DryRun;

impl Store for DryRun {
    async fn put(&self, _fragments: Vec<Fragment>) -> Result<(), StoreError> {
        Ok(())
    }

    async fn put_records(&self, _records: Vec<Vec<u8>>) -> Result<(), (usize, StoreError)> {
        Ok(())
    }

    async fn fragments(
        &self,
        _series: &SeriesId,
        _from: Day,
        _to: Day,
    ) -> Result<Vec<Fragment>, StoreError> {
        Ok(Vec::new())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn shard(id: &str, parent: Option<&str>, adjacent: Option<&str>) -> ShardInfo {
        ShardInfo {
            id: id.into(),
            parent: parent.map(Into::into),
            adjacent_parent: adjacent.map(Into::into),
            closed: false,
            hash_keys: None,
        }
    }

    #[test]
    fn reads_keep_within_the_shard_limits() {
        let s = ReplaySettings::default();
        // Five calls a second when pages are small...
        assert_eq!(pause_after(0, &s), Duration::from_millis(200));
        assert_eq!(pause_after(400_000, &s), Duration::from_millis(200));
        // ...and 2 MB a second when they are not: a 10 MB page (the most one call returns)
        // buys five seconds of quiet.
        assert_eq!(pause_after(1_000_000, &s), Duration::from_millis(500));
        assert_eq!(pause_after(10_000_000, &s), Duration::from_secs(5));
        assert_eq!(s.limit, 10_000);
    }

    #[test]
    fn parents_come_in_a_wave_before_their_children() {
        // 0 split into 4 and 5; 1 and 2 merged into 6; 3 untouched; 7's parent aged out.
        let shards = [
            shard("s6", Some("s1"), Some("s2")),
            shard("s5", Some("s0"), None),
            shard("s4", Some("s0"), None),
            shard("s3", None, None),
            shard("s2", None, None),
            shard("s1", None, None),
            shard("s0", None, None),
            shard("s7", Some("gone"), None),
        ];
        let waves: Vec<Vec<String>> = lineage_waves(&shards)
            .into_iter()
            .map(|w| w.into_iter().map(|s| s.id).collect())
            .collect();
        assert_eq!(
            waves,
            vec![vec!["s0", "s1", "s2", "s3", "s7"], vec!["s4", "s5", "s6"],]
        );
    }
}
