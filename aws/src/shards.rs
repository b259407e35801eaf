//! Reading a Kinesis stream back, shard by shard: the adapter behind `meterflow replay`.
//!
//! One trait, [`ShardReader`], with the three calls a replay needs (ListShards, GetShardIterator,
//! GetRecords), implemented on `aws-sdk-kinesis` by [`KinesisShards`]; the test kit wraps it to
//! make iterators expire and calls throttle, which an emulator never does. Errors are
//! [`CallError`]s sorted as the producer side sorts them, with the codes a reader must tell
//! apart ([`ReadError`]).

use std::future::Future;

use aws_sdk_kinesis::primitives::DateTime;
use aws_sdk_kinesis::types::ShardIteratorType;

use crate::kinesis::{classify, CallError};

/// Errors of the read calls (a [`CallError`]: code, message, whether retrying helps).
pub type ReadError = CallError;

/// Kinesis' code for an iterator used after its five minutes.
pub const EXPIRED_ITERATOR: &str = "ExpiredIteratorException";
/// Kinesis' code for a shard read faster than 5 calls or 2 MB a second.
pub const THROUGHPUT_EXCEEDED: &str = "ProvisionedThroughputExceededException";

/// Most records one GetRecords call may return.
pub const MAX_RECORDS_PER_CALL: i32 = 10_000;
/// GetRecords calls a shard answers per second; more are throttled.
pub const MAX_READS_PER_SECOND: u32 = 5;
/// Bytes a shard serves per second across its readers ("2 MB": read as 10^6, the safe side
/// of 2 MiB). One call may return up to 10 MB; calls after it are throttled until the shard
/// has caught up.
pub const MAX_READ_BYTES_PER_SECOND: u64 = 2_000_000;

/// One shard as ListShards describes it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ShardInfo {
    pub id: String,
    /// The shard this one was split from or merged from, after a reshard.
    pub parent: Option<String>,
    /// The other shard of a merge.
    pub adjacent_parent: Option<String>,
    /// A closed shard (split or merged away) takes no more records; its data stays readable
    /// until the stream's retention drops it.
    pub closed: bool,
    /// The hash keys it owns, first and last (a record's explicit hash key picks its shard).
    pub hash_keys: Option<(u128, u128)>,
}

/// Where a read starts.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum StartingPosition {
    /// The oldest record the stream still holds.
    TrimHorizon,
    /// At this sequence number (the record itself included).
    AtSequence(String),
    /// Just after this sequence number: how a read resumes after the last record it applied.
    AfterSequence(String),
    /// The first record that arrived at or after this time (epoch milliseconds).
    AtTimestamp(i64),
}

/// One record read back.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ReadRecord {
    /// Opaque (moto's are small integers; real ones have 56 digits): compare with
    /// [`sequence_order`], never as text.
    pub sequence_number: String,
    pub partition_key: String,
    pub data: Vec<u8>,
    /// When Kinesis received it, epoch milliseconds.
    pub arrival_ms: i64,
}

/// What one GetRecords call returned.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct RecordPage {
    pub records: Vec<ReadRecord>,
    /// Where the next call reads; `None` once a closed shard has been read to its end.
    pub next_iterator: Option<String>,
    /// How far the shard's newest record is ahead of this page; 0 at the tip.
    pub millis_behind_latest: Option<i64>,
}

/// A Kinesis stream read back.
pub trait ShardReader: Send + Sync {
    /// Every shard of the stream, closed ones included (all pages of ListShards).
    fn list_shards(&self) -> impl Future<Output = Result<Vec<ShardInfo>, ReadError>> + Send;

    /// An iterator on `shard` from `from` (it expires five minutes after it is issued).
    fn iterator(
        &self,
        shard: &str,
        from: &StartingPosition,
    ) -> impl Future<Output = Result<String, ReadError>> + Send;

    /// Up to `limit` records from `iterator` (at most [`MAX_RECORDS_PER_CALL`]).
    fn records(
        &self,
        iterator: &str,
        limit: i32,
    ) -> impl Future<Output = Result<RecordPage, ReadError>> + Send;
}

/// The order of two sequence numbers: numerically (they are decimal strings of up to 128
/// bits, longer than any integer type; leading zeros are not written).
pub fn sequence_order(a: &str, b: &str) -> std::cmp::Ordering {
    let (a, b) = (a.trim_start_matches('0'), b.trim_start_matches('0'));
    a.len().cmp(&b.len()).then_with(|| a.cmp(b))
}

/// [`ShardReader`] on a real (or emulated) stream.
#[derive(Debug, Clone)]
pub struct KinesisShards {
    pub client: aws_sdk_kinesis::Client,
    pub stream_name: String,
}

impl ShardReader for KinesisShards {
    async fn list_shards(&self) -> Result<Vec<ShardInfo>, ReadError> {
        let mut shards = Vec::new();
        let mut token: Option<String> = None;
        loop {
            // A page after the first names only its token (the API refuses both).
            let req = match &token {
                Some(t) => self.client.list_shards().next_token(t),
                None => self.client.list_shards().stream_name(&self.stream_name),
            };
            let page = req.send().await.map_err(classify)?;
            shards.extend(page.shards().iter().map(|s| {
                ShardInfo {
                    id: s.shard_id().to_owned(),
                    parent: s.parent_shard_id().map(str::to_owned),
                    adjacent_parent: s.adjacent_parent_shard_id().map(str::to_owned),
                    closed: s
                        .sequence_number_range()
                        .and_then(|r| r.ending_sequence_number())
                        .is_some(),
                    hash_keys: s.hash_key_range().and_then(|r| {
                        let first = r.starting_hash_key().parse().ok()?;
                        Some((first, r.ending_hash_key().parse().ok()?))
                    }),
                }
            }));
            token = page.next_token().map(str::to_owned);
            if token.is_none() {
                return Ok(shards);
            }
        }
    }

    async fn iterator(&self, shard: &str, from: &StartingPosition) -> Result<String, ReadError> {
        let req = self
            .client
            .get_shard_iterator()
            .stream_name(&self.stream_name)
            .shard_id(shard);
        let req = match from {
            StartingPosition::TrimHorizon => {
                req.shard_iterator_type(ShardIteratorType::TrimHorizon)
            }
            StartingPosition::AtSequence(s) => req
                .shard_iterator_type(ShardIteratorType::AtSequenceNumber)
                .starting_sequence_number(s),
            StartingPosition::AfterSequence(s) => req
                .shard_iterator_type(ShardIteratorType::AfterSequenceNumber)
                .starting_sequence_number(s),
            StartingPosition::AtTimestamp(ms) => req
                .shard_iterator_type(ShardIteratorType::AtTimestamp)
                .timestamp(DateTime::from_millis(*ms)),
        };
        let out = req.send().await.map_err(classify)?;
        out.shard_iterator()
            .map(str::to_owned)
            .ok_or_else(|| CallError {
                retryable: false,
                code: "NoIterator".to_owned(),
                message: format!("GetShardIterator on {shard} returned no iterator"),
            })
    }

    async fn records(&self, iterator: &str, limit: i32) -> Result<RecordPage, ReadError> {
        let out = self
            .client
            .get_records()
            .shard_iterator(iterator)
            .limit(limit.clamp(1, MAX_RECORDS_PER_CALL))
            .send()
            .await
            .map_err(classify)?;
        Ok(RecordPage {
            records: out
                .records()
                .iter()
                .map(|r| ReadRecord {
                    sequence_number: r.sequence_number().to_owned(),
                    partition_key: r.partition_key().unwrap_or_default().to_owned(),
                    data: r.data().as_ref().to_vec(),
                    arrival_ms: r
                        .approximate_arrival_timestamp()
                        .and_then(|t| t.to_millis().ok())
                        .unwrap_or(0),
                })
                .collect(),
            next_iterator: out.next_shard_iterator().map(str::to_owned),
            millis_behind_latest: out.millis_behind_latest(),
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::cmp::Ordering;

    #[test]
    fn sequence_numbers_compare_as_numbers() {
        let real = "49590338271490256608559692538361571095921575989136588898";
        let later = "49590338271490256608559692538361571095921575989136588899";
        assert_eq!(sequence_order(real, later), Ordering::Less);
        assert_eq!(
            sequence_order("9", "10"),
            Ordering::Less,
            "moto's are small"
        );
        assert_eq!(sequence_order("010", "10"), Ordering::Equal);
        assert_eq!(sequence_order(later, real), Ordering::Greater);
    }
}
