//! [`Faulty`]: a fault-injecting wrapper around any [`Store`], for the failures a real store
//! shows under load and that SQLite never does: a call that times out before it reaches the
//! store, and the ambiguous one that was applied but whose answer was lost.

use crate::plan::Plan;
use meterflow_core::{Day, Fragment, SeriesId};
use meterflow_store::{Store, StoreError};

/// What [`Faulty`] does to one write call. Both errors are retryable: they are the ones the
/// aggregator must survive by redelivery (a permanent error skips a record on purpose, which
/// changes totals, so it is not a fault here).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Fault {
    /// The call writes its first `n` records (clamped so that at least one is left) and then
    /// fails before writing the next, saying `n` were written: a timeout mid-batch. A call
    /// of one batch of fragments (`put`, `put_record`) writes nothing.
    FailBefore(usize),
    /// The call writes every record and then fails, saying only the first `n` (clamped as
    /// above) were written: the timeout whose write landed anyway, so the caller retries
    /// records that are already stored.
    FailAfter(usize),
}

/// A [`Store`] whose `n`-th write call (`put`, `put_record` or `put_records`) gets the `n`-th
/// planned fault; calls past the plan, and reads, pass through to `inner`.
#[derive(Debug)]
pub struct Faulty<S> {
    pub inner: S,
    plan: Plan<Fault>,
}

impl<S> Faulty<S> {
    /// `plan[i]` is the fault of write call `i` (`None`: pass through).
    pub fn new(inner: S, plan: Vec<Option<Fault>>) -> Faulty<S> {
        Faulty {
            inner,
            plan: Plan::new(plan),
        }
    }

    /// Write calls so far.
    pub fn calls(&self) -> u64 {
        self.plan.calls()
    }

    /// Write calls that failed by plan so far (a test can check its faults were reached).
    pub fn injected(&self) -> u64 {
        self.plan.injected()
    }

    /// The fault planned for this call, counting it.
    fn next(&self) -> Option<Fault> {
        self.plan.next()
    }
}

/// The error of every injected fault.
fn timeout() -> StoreError {
    StoreError::retryable(
        "write timed out (injected)",
        std::io::Error::from(std::io::ErrorKind::TimedOut),
    )
}

impl<S: Store> Faulty<S> {
    /// One batch written whole or not at all (`put`, `put_record`): `FailBefore` skips the
    /// write, `FailAfter` reports the write as failed after it happened.
    async fn whole<F, W>(&self, write: W) -> Result<(), StoreError>
    where
        W: FnOnce() -> F + Send,
        F: std::future::Future<Output = Result<(), StoreError>> + Send,
    {
        match self.next() {
            None => write().await,
            Some(Fault::FailBefore(_)) => Err(timeout()),
            Some(Fault::FailAfter(_)) => {
                write().await?;
                Err(timeout())
            }
        }
    }
}

impl<S: Store> Store for Faulty<S> {
    async fn put(&self, fragments: Vec<Fragment>) -> Result<(), StoreError> {
        self.whole(|| self.inner.put(fragments)).await
    }

    async fn put_record(&self, record: Vec<u8>) -> Result<(), StoreError> {
        self.whole(|| self.inner.put_record(record)).await
    }

    async fn put_records(&self, mut records: Vec<Vec<u8>>) -> Result<(), (usize, StoreError)> {
        let fault = self.next();
        // A failed call leaves at least its last record unwritten (or unacknowledged), as a
        // failure must; an empty call has nothing to fail.
        let clamp = |n: usize| n.min(records.len().saturating_sub(1));
        match fault {
            None => self.inner.put_records(records).await,
            Some(_) if records.is_empty() => Ok(()),
            Some(Fault::FailBefore(n)) => {
                let n = clamp(n);
                records.truncate(n);
                if !records.is_empty() {
                    self.inner.put_records(records).await?;
                }
                Err((n, timeout()))
            }
            Some(Fault::FailAfter(n)) => {
                let n = clamp(n);
                self.inner.put_records(records).await?;
                Err((n, timeout()))
            }
        }
    }

    async fn series(&self, prefix: &str, limit: usize) -> Result<Vec<SeriesId>, StoreError> {
        self.inner.series(prefix, limit).await
    }

    async fn fragments(
        &self,
        series: &SeriesId,
        from: Day,
        to: Day,
    ) -> Result<Vec<Fragment>, StoreError> {
        self.inner.fragments(series, from, to).await
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::conformance::sample;
    use meterflow_core::envelope::EnvelopeBuilder;
    use meterflow_store::SqliteStore;

    fn record(f: &Fragment) -> Vec<u8> {
        let mut b = EnvelopeBuilder::new(1 << 20);
        b.try_push(f).expect("a sample fragment fits a record");
        b.finish()
    }

    #[tokio::test]
    async fn faults_fail_before_or_after_the_write_as_planned() {
        // EE1 on 2019-01-01, 01-02, 01-31 and 02-01, one fragment each.
        let all = sample();
        let records: Vec<Vec<u8>> = all[..3].iter().map(record).collect();
        let plan = vec![
            Some(Fault::FailBefore(1)),
            Some(Fault::FailAfter(0)),
            Some(Fault::FailBefore(0)),
            None,
        ];
        let store = Faulty::new(SqliteStore::open_in_memory().expect("a store"), plan);
        let series: SeriesId = "EE1".parse().expect("an id");
        let (from, to) = (all[0].day, all[3].day);
        let stored = || async {
            let fragments = store.fragments(&series, from, to).await;
            fragments.expect("reads pass through").len()
        };

        let (written, e) = store
            .put_records(records.clone())
            .await
            .expect_err("planned");
        assert!(e.is_retryable());
        assert_eq!((written, stored().await), (1, 1), "the first record only");

        let (written, e) = store
            .put_records(records[1..].to_vec())
            .await
            .expect_err("planned");
        assert!(e.is_retryable());
        assert_eq!(
            (written, stored().await),
            (0, 3),
            "written, though reported failed"
        );

        let e = store.put(all[3..4].to_vec()).await.expect_err("planned");
        assert!(e.is_retryable());
        assert_eq!(stored().await, 3, "nothing written");

        store.put(all[3..4].to_vec()).await.expect("past the plan");
        assert_eq!(stored().await, 4);
        assert_eq!((store.calls(), store.injected()), (4, 3));
    }
}
