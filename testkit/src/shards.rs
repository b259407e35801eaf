//! A fault-injecting [`ShardReader`]: iterators that expire and calls that are throttled in
//! the middle of a read, which an emulator never does (moto's iterators live for ever and it
//! has no read limits).

use std::sync::atomic::{AtomicU64, Ordering};

use meterflow_aws::kinesis::CallError;
use meterflow_aws::shards::{
    ReadError, RecordPage, ShardInfo, ShardReader, StartingPosition, EXPIRED_ITERATOR,
    THROUGHPUT_EXCEEDED,
};

/// Wraps a reader: every `expire_every`-th GetRecords call fails with an expired iterator,
/// every `throttle_every`-th with throttling (0: never), and records how often each happened.
pub struct Unreliable<R> {
    pub inner: R,
    pub expire_every: u64,
    pub throttle_every: u64,
    calls: AtomicU64,
    /// Calls that failed with an expired iterator.
    pub expired: AtomicU64,
    /// Calls that failed with throttling.
    pub throttled: AtomicU64,
    /// Iterators asked for.
    pub iterators: AtomicU64,
}

impl<R> Unreliable<R> {
    pub fn new(inner: R, expire_every: u64, throttle_every: u64) -> Unreliable<R> {
        Unreliable {
            inner,
            expire_every,
            throttle_every,
            calls: AtomicU64::new(0),
            expired: AtomicU64::new(0),
            throttled: AtomicU64::new(0),
            iterators: AtomicU64::new(0),
        }
    }
}

fn every(n: u64, call: u64) -> bool {
    n > 0 && call.is_multiple_of(n)
}

impl<R: ShardReader> ShardReader for Unreliable<R> {
    async fn list_shards(&self) -> Result<Vec<ShardInfo>, ReadError> {
        self.inner.list_shards().await
    }

    async fn iterator(&self, shard: &str, from: &StartingPosition) -> Result<String, ReadError> {
        self.iterators.fetch_add(1, Ordering::SeqCst);
        self.inner.iterator(shard, from).await
    }

    async fn records(&self, iterator: &str, limit: i32) -> Result<RecordPage, ReadError> {
        let call = self.calls.fetch_add(1, Ordering::SeqCst) + 1;
        let fail = |code: &str, counter: &AtomicU64, retryable: bool| {
            counter.fetch_add(1, Ordering::SeqCst);
            Err(CallError {
                retryable,
                code: code.to_owned(),
                message: format!("injected on GetRecords call {call}"),
            })
        };
        if every(self.expire_every, call) {
            return fail(EXPIRED_ITERATOR, &self.expired, false);
        }
        if every(self.throttle_every, call) {
            return fail(THROUGHPUT_EXCEEDED, &self.throttled, true);
        }
        self.inner.records(iterator, limit).await
    }
}
