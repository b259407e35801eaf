//! Records from an in-process channel into the store: the aggregator side of `meterflow
//! ingest` (the in-process Kinesis), applied as the Lambda applies a batch ([`crate::apply`]).

use std::collections::HashSet;
use std::sync::Arc;

use meterflow_core::envelope::StreamRecord;
use meterflow_core::{Day, SeriesId};
use meterflow_store::{Store, StoreError};
use tokio::sync::mpsc;

use crate::apply;

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
    pub days: HashSet<Day>,
}

impl Drained {
    fn absorb(&mut self, other: Drained) {
        self.records += other.records;
        self.quarantined += other.quarantined;
        self.series.extend(other.series);
        self.days.extend(other.days);
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
    let data: Vec<&[u8]> = records.iter().map(|r| r.data.as_slice()).collect();
    let out = apply(store.as_ref(), &data, |f| {
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
