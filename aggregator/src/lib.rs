//! The aggregator: envelope records in, fragments stored.
//!
//! [`apply`] walks a batch's records once to validate them, then hands the valid ones to the
//! store in one call ([`meterflow_store::Store::put_valid_records`]: one transaction for SQLite),
//! which says how many leading records it wrote if it fails. A record that can never decode is
//! quarantined, counted and skipped, never retried forever; a store failure stops the batch at
//! the first record not written so that the caller retries from there (Kinesis:
//! `batchItemFailures` from that record, as Lambda checkpoints at the lowest failed sequence
//! number). Writes are idempotent, so records applied before a failure may safely be applied
//! again.
//!
//! - [`drain`]: records from an in-process channel into the store (`meterflow ingest`);
//! - [`replay`]: a Kinesis stream read back through [`apply`] (`meterflow replay`);
//! - `lambda` (feature `lambda`): the aggregator Lambda's handler, and its binary.

pub mod drain;
#[cfg(feature = "lambda")]
pub mod lambda;
pub mod replay;

use meterflow_core::envelope::{DecodeError, RawFragment, ValidRecord};
use meterflow_core::metric_names as m;
use meterflow_store::{Store, StoreError};

/// A record that was skipped because it cannot be decoded.
#[derive(Debug)]
pub struct Quarantined {
    /// Position of the record in the batch.
    pub index: usize,
    pub error: DecodeError,
}

/// A record the store refused for good (a permanent error): skipped like an undecodable one,
/// by the aggregator Lambda only (see [`lambda`](crate)'s docs).
#[derive(Debug)]
pub struct Refused {
    /// Position of the record in the batch.
    pub index: usize,
    pub error: StoreError,
}

/// What applying a batch did.
#[derive(Debug, Default)]
pub struct Outcome {
    /// Records fully written.
    pub applied: usize,
    pub fragments: usize,
    pub quarantined: Vec<Quarantined>,
    /// Records the store refused with a permanent error (never filled by [`apply`], which
    /// stops at any failure; the Lambda's handler skips such records and goes on).
    pub refused: Vec<Refused>,
    /// The first record whose write failed, and why; records from there on were not applied.
    pub failed: Option<(usize, StoreError)>,
}

/// Applies `records` in order. `observe` sees each fragment of a record (keys and fields,
/// values still encoded) before the records are written (a failed write is reported in
/// [`Outcome::failed`]).
///
/// Each record is validated by one walk over its fragments without decoding values into
/// memory; the valid ones are handed whole to [`Store::put_valid_records`] with where their
/// fragments sit, so a store that keeps encoded fragments never decodes them nor walks them
/// again, and one that writes in transactions writes the batch in one.
pub async fn apply<S, D>(store: &S, records: &[D], observe: impl FnMut(&RawFragment<'_>)) -> Outcome
where
    S: Store,
    D: AsRef<[u8]>,
{
    let records = records.iter().map(|r| r.as_ref().to_vec());
    let (valid, out) = check(records, observe);
    write(store, valid, out).await
}

/// [`apply`] for records the caller gives up: they go to the store as they are, without the
/// copy that [`apply`] makes of each (about 0.2 GB per GB of wide CSV in `meterflow ingest`,
/// whose drain has no use for them after).
pub async fn apply_owned<S: Store>(
    store: &S,
    records: Vec<Vec<u8>>,
    observe: impl FnMut(&RawFragment<'_>),
) -> Outcome {
    let (valid, out) = check(records, observe);
    write(store, valid, out).await
}

/// Checks every record ([`ValidRecord::check`]): the valid ones with their index in the
/// batch, and an outcome with the others quarantined.
fn check(
    records: impl IntoIterator<Item = Vec<u8>>,
    mut observe: impl FnMut(&RawFragment<'_>),
) -> (Vec<(usize, ValidRecord)>, Outcome) {
    let mut out = Outcome::default();
    let mut valid = Vec::new();
    for (index, record) in records.into_iter().enumerate() {
        match ValidRecord::check(record, &mut observe) {
            Ok(record) => valid.push((index, record)),
            Err((_, error)) => out.quarantined.push(Quarantined { index, error }),
        }
    }
    (valid, out)
}

/// Writes the valid records (with their index in the batch) in one call and completes `out`.
async fn write<S: Store>(store: &S, valid: Vec<(usize, ValidRecord)>, mut out: Outcome) -> Outcome {
    // A batch of only quarantined records writes nothing (and cannot fail a write).
    if valid.is_empty() {
        record(&out);
        return out;
    }
    let counts: Vec<(usize, usize)> = valid.iter().map(|(i, r)| (*i, r.len())).collect();
    let records = valid.into_iter().map(|(_, r)| r).collect();
    let started = std::time::Instant::now();
    let result = store.put_valid_records(records).await;
    metrics::histogram!(m::AGGREGATOR_STORE_WRITE_MS).record(started.elapsed().as_secs_f64() * 1e3);
    let written = match result {
        Ok(()) => counts.len(),
        Err((written, e)) => {
            // Quarantined records before the failed one stay skipped; the caller retries
            // from the failed record on. A store claiming more than it was given is clamped.
            let written = written.min(counts.len() - 1);
            out.failed = Some((counts[written].0, e));
            written
        }
    };
    out.applied = written;
    out.fragments = counts[..written].iter().map(|&(_, n)| n).sum();
    record(&out);
    out
}

/// Adds a batch's outcome to the metrics, once per batch.
fn record(out: &Outcome) {
    metrics::counter!(m::AGGREGATOR_RECORDS_APPLIED).increment(out.applied as u64);
    metrics::counter!(m::AGGREGATOR_FRAGMENTS_WRITTEN).increment(out.fragments as u64);
    metrics::counter!(m::AGGREGATOR_RECORDS_QUARANTINED).increment(out.quarantined.len() as u64);
    metrics::counter!(m::AGGREGATOR_STORE_FAILURES).increment(u64::from(out.failed.is_some()));
}

/// The ids (Kinesis sequence numbers) to report as `batchItemFailures`: every record from the
/// first failed one on, or none. `ids[i]` names `records[i]`.
pub fn batch_item_failures<'a>(ids: &[&'a str], outcome: &Outcome) -> Vec<&'a str> {
    retry_from(ids, outcome.failed.as_ref().map(|(first, _)| *first))
}

/// The ids of every record from index `first` on (none for `None`): Lambda checkpoints at the
/// lowest sequence number reported, so the batch is redelivered from there. The aggregator
/// Lambda also retries from a record whose dead letter could not be written yet.
pub fn retry_from<'a>(ids: &[&'a str], first: Option<usize>) -> Vec<&'a str> {
    match first {
        Some(first) => ids.get(first..).unwrap_or_default().to_vec(),
        None => Vec::new(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use meterflow_core::envelope::EnvelopeBuilder;
    use meterflow_core::Fragment;
    use meterflow_store::SqliteStore;
    use meterflow_testkit::conformance::sample;
    use std::sync::atomic::{AtomicUsize, Ordering};

    /// Fails every write after the first `ok` ones (a fault-injecting wrapper).
    struct Flaky {
        inner: SqliteStore,
        ok: usize,
        calls: AtomicUsize,
    }

    impl Store for Flaky {
        async fn put(&self, fragments: Vec<Fragment>) -> Result<(), StoreError> {
            if self.calls.fetch_add(1, Ordering::SeqCst) >= self.ok {
                return Err(StoreError::Retryable {
                    message: "injected timeout".into(),
                    cause: None,
                });
            }
            self.inner.put(fragments).await
        }
        async fn fragments(
            &self,
            series: &meterflow_core::SeriesId,
            from: meterflow_core::Day,
            to: meterflow_core::Day,
        ) -> Result<Vec<Fragment>, StoreError> {
            self.inner.fragments(series, from, to).await
        }
    }

    fn record(fs: &[Fragment]) -> Vec<u8> {
        let mut b = EnvelopeBuilder::new(1 << 20);
        for f in fs {
            b.try_push(f).unwrap();
        }
        b.finish()
    }

    #[tokio::test]
    async fn quarantines_garbage_and_stops_at_the_first_failed_write() {
        let all = sample();
        let records = vec![
            record(&all[..2]),
            b"garbage".to_vec(),
            record(&all[2..4]),
            record(&all[4..]),
        ];
        let store = Flaky {
            inner: SqliteStore::open_in_memory().unwrap(),
            ok: 1,
            calls: AtomicUsize::new(0),
        };
        let mut seen = 0;
        let acc = meterflow_telemetry::Accumulator::new();
        let out = {
            let _metrics = acc.local();
            apply(&store, &records, |_| seen += 1).await
        };
        let recorded = acc.take();
        assert_eq!(recorded.counter(m::AGGREGATOR_RECORDS_APPLIED), 1);
        assert_eq!(recorded.counter(m::AGGREGATOR_FRAGMENTS_WRITTEN), 2);
        assert_eq!(recorded.counter(m::AGGREGATOR_RECORDS_QUARANTINED), 1);
        assert_eq!(recorded.counter(m::AGGREGATOR_STORE_FAILURES), 1);
        let latency = recorded.histogram(m::AGGREGATOR_STORE_WRITE_MS);
        assert!(latency.len() == 1 && latency[0] >= 0.0, "{latency:?}");
        // Every valid record is observed (checked before the batch is written); only the
        // first was written before the failure.
        assert_eq!((out.applied, out.fragments, seen), (1, 2, all.len()));
        assert_eq!(out.quarantined.len(), 1);
        assert_eq!(out.quarantined[0].index, 1);
        let (first, err) = out.failed.as_ref().unwrap();
        assert!(err.is_retryable());
        assert_eq!(*first, 2);
        assert_eq!(
            batch_item_failures(&["s0", "s1", "s2", "s3"], &out),
            vec!["s2", "s3"]
        );

        // The retry from the checkpoint, plus a redelivery of everything, gives the same totals
        // as one clean pass.
        let clean = SqliteStore::open_in_memory().unwrap();
        let once = {
            let _metrics = acc.local();
            apply(&clean, &records, |_| {}).await
        };
        assert!(once.failed.is_none());
        let recorded = acc.take();
        assert_eq!(recorded.counter(m::AGGREGATOR_RECORDS_APPLIED), 3);
        assert_eq!(
            recorded.counter(m::AGGREGATOR_FRAGMENTS_WRITTEN),
            all.len() as u64
        );
        assert_eq!(recorded.counter(m::AGGREGATOR_STORE_FAILURES), 0);
        assert!(recorded.counters.contains_key(m::AGGREGATOR_STORE_FAILURES));
        assert_eq!(
            batch_item_failures(&["s0", "s1", "s2", "s3"], &once),
            Vec::<&str>::new()
        );
        let retried = Flaky {
            inner: store.inner.clone(),
            ok: usize::MAX,
            calls: AtomicUsize::new(0),
        };
        apply(&retried, &records[*first..], |_| {}).await;
        apply(&retried, &records, |_| {}).await;
        let s = "EE1".parse().unwrap();
        let (from, to) = (
            meterflow_core::Day::parse_iso("2019-01-01").unwrap(),
            meterflow_core::Day::parse_iso("2020-12-31").unwrap(),
        );
        assert_eq!(
            meterflow_store::daily_totals(&retried, &s, from, to)
                .await
                .unwrap(),
            meterflow_store::daily_totals(&clean, &s, from, to)
                .await
                .unwrap()
        );
    }

    /// The owned form hands the store the same records as the borrowing one (garbage left
    /// out, order kept) and reports the same outcome, failure included.
    #[tokio::test]
    async fn apply_owned_writes_and_reports_what_apply_does() {
        let all = sample();
        let records = vec![
            b"garbage".to_vec(),
            record(&all[..2]),
            record(&all[2..4]),
            Vec::new(),
            record(&all[4..]),
        ];
        for ok in [0, 1, usize::MAX] {
            let flaky = || Flaky {
                inner: SqliteStore::open_in_memory().unwrap(),
                ok,
                calls: AtomicUsize::new(0),
            };
            let (borrowed, owned) = (flaky(), flaky());
            let (mut seen_borrowed, mut seen_owned) = (Vec::new(), Vec::new());
            let a = apply(&borrowed, &records, |f| seen_borrowed.push(f.line)).await;
            let b = apply_owned(&owned, records.clone(), |f| seen_owned.push(f.line)).await;
            let summary = |o: &Outcome| {
                let quarantined: Vec<usize> = o.quarantined.iter().map(|q| q.index).collect();
                (
                    o.applied,
                    o.fragments,
                    quarantined,
                    o.failed.as_ref().map(|f| f.0),
                )
            };
            assert_eq!(summary(&a), summary(&b), "ok = {ok}");
            assert_eq!(seen_borrowed, seen_owned);
            let s: meterflow_core::SeriesId = "EE1".parse().unwrap();
            let (from, to) = (
                meterflow_core::Day::parse_iso("2019-01-01").unwrap(),
                meterflow_core::Day::parse_iso("2020-12-31").unwrap(),
            );
            let totals_a = borrowed.inner.daily_totals(&s, from, to).await.unwrap();
            let totals_b = owned.inner.daily_totals(&s, from, to).await.unwrap();
            assert_eq!(totals_a, totals_b, "ok = {ok}");
            assert_eq!(totals_a.is_empty(), ok == 0, "ok = {ok}");
        }
    }

    #[tokio::test]
    async fn a_batch_of_only_garbage_is_quarantined_without_touching_the_store() {
        let down = Flaky {
            inner: SqliteStore::open_in_memory().unwrap(),
            ok: 0,
            calls: AtomicUsize::new(0),
        };
        let acc = meterflow_telemetry::Accumulator::new();
        let out = {
            let _metrics = acc.local();
            apply(&down, &[b"garbage".to_vec(), Vec::new()], |_| {}).await
        };
        assert!(out.failed.is_none(), "{:?}", out.failed);
        assert_eq!((out.applied, out.quarantined.len()), (0, 2));
        assert_eq!(down.calls.load(Ordering::SeqCst), 0);
        let recorded = acc.take();
        assert_eq!(recorded.counter(m::AGGREGATOR_RECORDS_QUARANTINED), 2);
        assert!(recorded.histogram(m::AGGREGATOR_STORE_WRITE_MS).is_empty());
    }
}
