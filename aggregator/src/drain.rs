//! Records from an in-process channel into the store: the aggregator side of `meterflow
//! ingest` (the in-process Kinesis), applied as the Lambda applies a batch ([`crate::apply_owned`]).

use std::collections::{BTreeSet, HashSet};
use std::sync::Arc;

use meterflow_core::day::{FIRST_DAY, LAST_DAY};
use meterflow_core::envelope::StreamRecord;
use meterflow_core::{Day, SeriesId};
use meterflow_store::{Store, StoreError};
use tokio::sync::mpsc;

use crate::apply_owned;

/// Groups of records applied concurrently (each a validating walk, regrouping into packs, and
/// one store write): one decodes while the store writes the other.
const WRITERS: usize = 2;
/// Most bytes of records gathered into one store write.
const GROUP_BYTES: usize = 4 << 20;

/// What the records held and did.
#[derive(Debug, Default)]
pub struct Drained {
    pub records: u64,
    /// Records that could not be decoded (each skipped, never retried forever).
    pub quarantined: u64,
    pub series: HashSet<SeriesId>,
    pub days: DaySet,
}

/// Distinct days, one bit each: a meter-major file changes day on every fragment, and a
/// hashed set cost a hash and a probe per fragment (2 % of an ingest's CPU).
#[derive(Debug, Default, Clone)]
pub struct DaySet {
    /// Bit `d` for the day [`FIRST_DAY`]` + d`; allocated at the first insert.
    bits: Vec<u64>,
    /// Days the bits do not cover (none from a decoded record, whose days lie in the accepted
    /// years; kept rather than dropped all the same).
    others: BTreeSet<Day>,
    len: usize,
}

impl DaySet {
    /// Adds `day`; true when it was not there yet.
    pub fn insert(&mut self, day: Day) -> bool {
        let d = day.days();
        if !(FIRST_DAY..=LAST_DAY).contains(&d) {
            let new = self.others.insert(day);
            self.len += usize::from(new);
            return new;
        }
        if self.bits.is_empty() {
            self.bits = vec![0; (LAST_DAY - FIRST_DAY) as usize / 64 + 1];
        }
        let at = (d - FIRST_DAY) as usize;
        let (word, bit) = (&mut self.bits[at / 64], 1u64 << (at % 64));
        let new = *word & bit == 0;
        *word |= bit;
        self.len += usize::from(new);
        new
    }

    pub fn len(&self) -> usize {
        self.len
    }

    pub fn is_empty(&self) -> bool {
        self.len == 0
    }

    fn absorb(&mut self, other: DaySet) {
        if self.bits.is_empty() {
            self.bits = other.bits;
        } else if !other.bits.is_empty() {
            self.bits
                .iter_mut()
                .zip(&other.bits)
                .for_each(|(a, b)| *a |= b);
        }
        self.others.extend(other.others);
        self.len = self
            .bits
            .iter()
            .map(|w| w.count_ones() as usize)
            .sum::<usize>()
            + self.others.len();
    }
}

impl Drained {
    fn absorb(&mut self, other: Drained) {
        self.records += other.records;
        self.quarantined += other.quarantined;
        self.series.extend(other.series);
        self.days.absorb(other.days);
    }
}

/// Why draining stopped.
#[derive(Debug, thiserror::Error)]
pub enum DrainError {
    #[error("writing to the store failed")]
    Store(#[from] StoreError),
    #[error("a store writer task failed: {0}")]
    Task(#[from] tokio::task::JoinError),
}

/// Applies a group of records, as the aggregator Lambda applies a batch.
async fn apply_group<S: Store>(
    store: Arc<S>,
    records: Vec<StreamRecord>,
) -> (Drained, Option<StoreError>) {
    let mut done = Drained {
        records: records.len() as u64,
        ..Drained::default()
    };
    // Fragments come in runs of one series and consecutive days: only look up changes.
    let (mut last_series, mut last_day) = (None::<SeriesId>, None::<Day>);
    let data = records.into_iter().map(|r| r.data).collect();
    let out = apply_owned(store.as_ref(), data, |f| {
        if last_series.as_ref() != Some(f.series) {
            done.series.insert(f.series.clone());
            last_series = Some(f.series.clone());
        }
        if last_day != Some(f.day) {
            done.days.insert(f.day);
            last_day = Some(f.day);
        }
    })
    .await;
    done.quarantined = out.quarantined.len() as u64;
    (done, out.failed.map(|(_, e)| e))
}

/// Applies every record received into `store` until the channel closes or a write fails. A
/// couple of groups are in flight; order does not matter (the merge rule). Whatever waits on
/// the channel joins the next write (one transaction for SQLite), so groups grow exactly when
/// the store falls behind. On failure the receiver is dropped, which stops the producers.
pub async fn store_all<S: Store + 'static>(
    store: Arc<S>,
    mut rx: mpsc::Receiver<StreamRecord>,
) -> Result<Drained, DrainError> {
    let mut done = Drained::default();
    let mut failed = None;
    let mut in_flight = tokio::task::JoinSet::new();
    while let Some(record) = rx.recv().await {
        while in_flight.len() >= WRITERS {
            if let Some(joined) = in_flight.join_next().await {
                let (group, error) = joined?;
                done.absorb(group);
                failed = failed.or(error);
            }
        }
        if failed.is_some() {
            break;
        }
        let mut group = vec![record];
        let mut bytes = group[0].data.len();
        while bytes < GROUP_BYTES {
            let Ok(next) = rx.try_recv() else { break };
            bytes += next.data.len();
            group.push(next);
        }
        in_flight.spawn(apply_group(Arc::clone(&store), group));
    }
    // Closed now, so producers blocked on a full channel see it at once.
    drop(rx);
    while let Some(joined) = in_flight.join_next().await {
        let (group, error) = joined?;
        done.absorb(group);
        failed = failed.or(error);
    }
    match failed {
        Some(e) => Err(e.into()),
        None => Ok(done),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use meterflow_core::day::{MAX_YEAR, MIN_YEAR};

    #[test]
    fn a_day_set_counts_each_day_once_across_the_accepted_years_and_beyond() {
        let first = Day::from_ymd(MIN_YEAR, 1, 1).unwrap();
        let last = Day::from_ymd(MAX_YEAR, 12, 31).unwrap();
        let beyond = last.succ();
        let mid = Day::from_ymd(2019, 6, 30).unwrap();
        let (mut a, mut b) = (DaySet::default(), DaySet::default());
        assert!(a.is_empty());
        for d in [first, mid, mid, beyond, beyond] {
            a.insert(d);
        }
        assert_eq!(a.len(), 3);
        assert!(!a.insert(first) && b.insert(last) && b.insert(mid) && b.insert(beyond));
        a.absorb(b);
        assert_eq!(a.len(), 4, "first, mid, last and the day past the range");
        let mut empty = DaySet::default();
        empty.absorb(a);
        assert_eq!(empty.len(), 4);
    }
}
