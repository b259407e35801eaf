//! Kinesis doubles: [`Recording`] keeps what is put, in memory; [`Faulty`] injects the failures
//! the emulator cannot produce (throttled calls, partly failed PutRecords).

use std::sync::Mutex;

use crate::plan::Plan;

use meterflow_aws::kinesis::{CallError, Entry, EntryOutcome, RecordStream};

/// What [`Faulty`] does to one call.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Fault {
    /// The whole call fails with this error; nothing reaches the inner stream.
    Call(CallError),
    /// These entry positions are reported failed with
    /// `ProvisionedThroughputExceededException` and not passed on; the rest are put.
    Entries(Vec<usize>),
}

/// A fault-injecting [`RecordStream`] for tests: the `n`-th call gets the `n`-th planned
/// fault (calls past the plan pass through), and every call's size is recorded.
#[derive(Debug)]
pub struct Faulty<S> {
    pub inner: S,
    plan: Plan<Fault>,
    /// Entries per call, in call order.
    sizes: Mutex<Vec<usize>>,
}

impl<S> Faulty<S> {
    /// `plan[i]` is the fault of call `i` (`None`: pass through).
    pub fn new(inner: S, plan: Vec<Option<Fault>>) -> Faulty<S> {
        Faulty {
            inner,
            plan: Plan::new(plan),
            sizes: Mutex::new(Vec::new()),
        }
    }

    pub fn calls(&self) -> u64 {
        self.plan.calls()
    }

    /// Entries per call so far.
    pub fn call_sizes(&self) -> Vec<usize> {
        self.sizes.lock().map(|s| s.clone()).unwrap_or_default()
    }
}

/// A throttled call, as Kinesis reports it.
pub fn throttled() -> CallError {
    CallError {
        retryable: true,
        code: "ProvisionedThroughputExceededException".to_owned(),
        message: "Rate exceeded for shard (injected)".to_owned(),
    }
}

impl<S: RecordStream> RecordStream for Faulty<S> {
    async fn put_records(&self, entries: &[Entry]) -> Result<Vec<EntryOutcome>, CallError> {
        if let Ok(mut s) = self.sizes.lock() {
            s.push(entries.len());
        }
        let fault = self.plan.next();
        let failing = match fault {
            None => return self.inner.put_records(entries).await,
            Some(Fault::Call(e)) => return Err(e),
            Some(Fault::Entries(positions)) => positions,
        };
        let passed: Vec<Entry> = entries
            .iter()
            .enumerate()
            .filter(|(i, _)| !failing.contains(i))
            .map(|(_, e)| e.clone())
            .collect();
        let mut inner = if passed.is_empty() {
            Vec::new()
        } else {
            self.inner.put_records(&passed).await?
        }
        .into_iter();
        Ok((0..entries.len())
            .map(|i| {
                if failing.contains(&i) {
                    EntryOutcome::Failed {
                        code: "ProvisionedThroughputExceededException".to_owned(),
                        message: "Rate exceeded for shard (injected)".to_owned(),
                    }
                } else {
                    inner.next().unwrap_or(EntryOutcome::Failed {
                        code: "InternalFailure".to_owned(),
                        message: "inner stream returned too few outcomes".to_owned(),
                    })
                }
            })
            .collect())
    }
}

/// A [`RecordStream`] that keeps what it is given, in memory (tests, local dry runs).
#[derive(Debug, Default)]
pub struct Recording {
    pub entries: Mutex<Vec<Entry>>,
}

impl Recording {
    /// Every fragment of every entry put, decoded (tests compare them with a direct parse).
    /// Panics on an undecodable entry: this stream only ever holds the splitter's records.
    pub fn fragments(&self) -> Vec<meterflow_core::Fragment> {
        let entries = self.entries.lock().unwrap_or_else(|p| p.into_inner());
        entries
            .iter()
            .flat_map(|e| meterflow_core::envelope::decode(&e.data).expect("a splitter record"))
            .collect()
    }
}

impl RecordStream for Recording {
    async fn put_records(&self, entries: &[Entry]) -> Result<Vec<EntryOutcome>, CallError> {
        let mut all = self.entries.lock().map_err(|_| CallError {
            retryable: false,
            code: "Poisoned".to_owned(),
            message: "a test thread panicked".to_owned(),
        })?;
        let first = all.len();
        all.extend_from_slice(entries);
        Ok((first..all.len())
            .map(|n| EntryOutcome::Put {
                shard_id: "shardId-000000000000".to_owned(),
                sequence_number: n.to_string(),
            })
            .collect())
    }
}
