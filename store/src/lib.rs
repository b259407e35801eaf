//! Where fragments live between ingestion and queries.
//!
//! One trait, [`Store`], for every backend: the embedded SQLite file of local mode and the CQL
//! store (Amazon Keyspaces, Cassandra, ScyllaDB) of the AWS pipeline. A store only has to keep
//! fragments under their deterministic keys and give them back by series and day range; the
//! merge into daily totals is the core's pure function, applied by [`daily_totals`], so every
//! backend answers identically. The tests every backend must pass are the test kit's
//! conformance suite (`meterflow_testkit::conformance`).

pub mod sqlite;

use std::future::Future;

use meterflow_core::envelope::ValidRecord;
use meterflow_core::{Day, DayTotal, Fragment, SeriesId};

pub use sqlite::SqliteStore;

/// The cause of a [`StoreError`]: the driver's or the database's own error.
pub type Cause = Box<dyn std::error::Error + Send + Sync + 'static>;

/// Why a store call failed, split by what the caller should do about it. The message says what
/// failed and what to do; the cause (the driver's error, when there is one) is the error's
/// [`source`](std::error::Error::source), so that a caller can inspect it and a report can
/// show the whole chain ([`StoreError::report`]).
#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    /// Worth retrying as is: timeouts, overload, a lost connection.
    #[error("store temporarily unavailable: {message}; retrying later should succeed")]
    Retryable {
        message: String,
        #[source]
        cause: Option<Cause>,
    },
    /// Retrying the same call will fail again: bad configuration, corrupt data, a bug.
    #[error("{message}")]
    Permanent {
        message: String,
        #[source]
        cause: Option<Cause>,
    },
}

impl StoreError {
    /// A retryable failure of `message`, caused by `cause`.
    pub fn retryable(message: impl Into<String>, cause: impl Into<Cause>) -> StoreError {
        StoreError::Retryable {
            message: message.into(),
            cause: Some(cause.into()),
        }
    }

    /// A permanent failure of `message`, caused by `cause`.
    pub fn permanent(message: impl Into<String>, cause: impl Into<Cause>) -> StoreError {
        StoreError::Permanent {
            message: message.into(),
            cause: Some(cause.into()),
        }
    }

    /// A permanent failure with no other error behind it (bad data, a refused setting).
    pub fn refused(message: impl Into<String>) -> StoreError {
        StoreError::Permanent {
            message: message.into(),
            cause: None,
        }
    }

    pub fn is_retryable(&self) -> bool {
        matches!(self, StoreError::Retryable { .. })
    }

    /// The message and every cause under it, on one line (`message: cause: cause…`): for
    /// logs and answers that show a single string. A cause whose text is already there is
    /// left out: some drivers' errors repeat their own sources in their messages.
    pub fn report(&self) -> String {
        chain(self)
    }
}

/// `e` and its sources on one line, each text once (see [`StoreError::report`]).
pub fn chain(e: &(dyn std::error::Error + 'static)) -> String {
    let mut out = e.to_string();
    let mut next = e.source();
    while let Some(cause) = next {
        let text = cause.to_string();
        if !out.contains(&text) {
            out.push_str(": ");
            out.push_str(&text);
        }
        next = cause.source();
    }
    out
}

/// A fragment store.
///
/// `put` must be idempotent: writing the same fragments again, in any order and any number of
/// times, leaves the answers of `fragments` (after merging) unchanged. Stores are shared
/// between tasks, hence `Send + Sync` and `Send` futures.
pub trait Store: Send + Sync {
    /// Writes fragments. Callers pass deterministic batches (one envelope record's
    /// fragments), which lets a store pack them without losing idempotency. The batch is
    /// given by value so that a store can encode it off the caller's thread.
    fn put(&self, fragments: Vec<Fragment>) -> impl Future<Output = Result<(), StoreError>> + Send;

    /// Writes the fragments of one envelope record, which the caller has checked decodes
    /// ([`meterflow_core::envelope::Envelope::raw_fragments`] consumed without error).
    ///
    /// The default decodes it and calls [`put`](Self::put); a store that keeps encoded
    /// fragments overrides it to regroup the record's bytes without decoding the values.
    fn put_record(&self, record: Vec<u8>) -> impl Future<Output = Result<(), StoreError>> + Send {
        async move {
            let fragments = meterflow_core::envelope::decode(&record).map_err(|e| {
                StoreError::permanent("a record given to the store does not decode", e)
            })?;
            self.put(fragments).await
        }
    }

    /// Writes several checked records, in order. On failure, says how many leading records
    /// were durably written (the caller retries from the next one; rewriting is harmless).
    ///
    /// The default writes them one by one; a store that can write them together (SQLite: one
    /// transaction, so a page touched by several records is written once) overrides it.
    fn put_records(
        &self,
        records: Vec<Vec<u8>>,
    ) -> impl Future<Output = Result<(), (usize, StoreError)>> + Send {
        async move {
            for (written, record) in records.into_iter().enumerate() {
                self.put_record(record).await.map_err(|e| (written, e))?;
            }
            Ok(())
        }
    }

    /// [`put_records`](Self::put_records) for records the caller checked with
    /// [`ValidRecord::check`] (the aggregator does), which carry where each of their fragments
    /// sits. The default hands over their bytes; a store that regroups fragments (SQLite)
    /// overrides it so that a record is not walked a second time.
    fn put_valid_records(
        &self,
        records: Vec<ValidRecord>,
    ) -> impl Future<Output = Result<(), (usize, StoreError)>> + Send {
        self.put_records(records.into_iter().map(ValidRecord::into_bytes).collect())
    }

    /// Series ids that start with `prefix`, ascending, at most `limit`: how a person finds a
    /// meter (the web page's suggestions, `GET /meters`). The default says the store cannot;
    /// the SQLite and CQL stores can.
    fn series(
        &self,
        prefix: &str,
        limit: usize,
    ) -> impl Future<Output = Result<Vec<SeriesId>, StoreError>> + Send {
        let _ = (prefix, limit);
        async { Err(StoreError::refused("this store cannot list its series")) }
    }

    /// Every stored fragment of `series` whose day lies in `from..=to`, in no particular order.
    fn fragments(
        &self,
        series: &SeriesId,
        from: Day,
        to: Day,
    ) -> impl Future<Output = Result<Vec<Fragment>, StoreError>> + Send;

    /// Daily totals of `series` over `from..=to`, merged by the core's rule
    /// ([`meterflow_core::daily_totals`] of [`Store::fragments`]). A store that keeps encoded
    /// packs overrides it to total days without decoding them into fragments (SQLite).
    fn daily_totals(
        &self,
        series: &SeriesId,
        from: Day,
        to: Day,
    ) -> impl Future<Output = Result<Vec<DayTotal>, StoreError>> + Send {
        async move {
            let fragments = self.fragments(series, from, to).await?;
            Ok(meterflow_core::daily_totals(fragments.iter()))
        }
    }
}

/// Daily totals of one series over `from..=to`, merged by the core's rule.
pub async fn daily_totals<S: Store>(
    store: &S,
    series: &SeriesId,
    from: Day,
    to: Day,
) -> Result<Vec<DayTotal>, StoreError> {
    store.daily_totals(series, from, to).await
}

/// Month buckets (`yyyymm`) covering `from..=to`: the partitions a range read visits.
pub fn month_buckets(from: Day, to: Day) -> Vec<i32> {
    let mut out = Vec::new();
    if from > to {
        return out;
    }
    let (mut y, mut m, _) = from.ymd();
    let (ty, tm, _) = to.ymd();
    while (y, m) <= (ty, tm) {
        out.push(y * 100 + m as i32);
        (y, m) = if m == 12 { (y + 1, 1) } else { (y, m + 1) };
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn buckets_span_years() {
        let d = |s: &str| Day::parse_iso(s).unwrap();
        assert_eq!(
            month_buckets(d("2019-11-30"), d("2020-02-01")),
            vec![201911, 201912, 202001, 202002]
        );
        assert_eq!(
            month_buckets(d("2019-01-05"), d("2019-01-05")),
            vec![201901]
        );
        assert!(month_buckets(d("2019-02-01"), d("2019-01-01")).is_empty());
    }
}
