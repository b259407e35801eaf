//! The aggregator handler on real Kinesis event JSON: undecodable records quarantined and
//! copied to the dead-letter prefix under their stream position; a dead-letter write that
//! fails retryably makes the batch be redelivered from that record.

use aws_lambda_events::event::kinesis::KinesisEvent;
use meterflow_aggregator::lambda::Aggregator;
use meterflow_aws::env::S3Location;
use meterflow_core::synth::Spec;
use meterflow_core::{Day, Format};
use meterflow_splitter::{split, Collected, PackSettings};
use meterflow_store::{SqliteStore, Store, StoreError};
use meterflow_testkit::events::{fixture, kinesis_event};
use meterflow_testkit::moto::ShardRecord;
use meterflow_testkit::sink::MemorySink;

const SEQUENCE: &str = "49656524937215339431553815463526104836536063432391622770";

fn dead_letter(sink: MemorySink) -> Option<(MemorySink, S3Location)> {
    Some((
        sink,
        S3Location {
            bucket: "meter-dead-letters".into(),
            prefix: "dead/".into(),
        },
    ))
}

fn aggregator(sink: MemorySink) -> Aggregator<SqliteStore, MemorySink> {
    Aggregator {
        store: SqliteStore::open_in_memory().unwrap(),
        dead_letter: dead_letter(sink),
    }
}

/// A valid record, the fixture's undecodable one, another valid record.
fn mixed_batch() -> KinesisEvent {
    let csv = Spec::new(2, 1).generate(Format::Wide).unwrap();
    let mut out = Collected::default();
    let opts = meterflow_core::Options::new("m.csv", 1);
    let settings = PackSettings {
        buckets: 1,
        max_record_bytes: 1024,
        max_held_bytes: 4096,
    };
    split(&csv[..], opts, settings, &mut out).unwrap();
    let bad: KinesisEvent = serde_json::from_slice(&fixture("kinesis_undecodable.json")).unwrap();
    let record = |n: &str, data: Vec<u8>| ShardRecord {
        shard: "shardId-000000000003".into(),
        sequence_number: n.into(),
        partition_key: "bucket-0".into(),
        data,
        arrival_ms: 0,
    };
    let mut records = vec![record("1001", out.records[0].data.clone())];
    records.push(record(SEQUENCE, bad.records[0].kinesis.data.0.clone()));
    records.push(record("1003", out.records[0].data.clone()));
    kinesis_event(&records)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_undecodable_record_is_quarantined_and_copied_under_its_position() {
    let event: KinesisEvent = serde_json::from_slice(&fixture("kinesis_undecodable.json")).unwrap();
    let a = aggregator(MemorySink::default());
    for _ in 0..2 {
        let (response, summary) = a.handle(&event).await;
        assert!(
            response.batch_item_failures.is_empty(),
            "never retried forever"
        );
        assert_eq!((summary.quarantined, summary.dead_letters), (1, 1));
    }
    let written = a.dead_letter.as_ref().unwrap().0.written();
    let key = format!("dead/meterflow-fragments/shardId-000000000003/{SEQUENCE}");
    assert_eq!(written.len(), 2);
    for (bucket, k, body) in &written {
        assert_eq!(
            (bucket.as_str(), k.as_str()),
            ("meter-dead-letters", key.as_str())
        );
        assert_eq!(&body[..], b"not an envelope record");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_failed_dead_letter_copy_is_retried_from_its_record_unless_permanent() {
    let event = mixed_batch();
    let retryable = aggregator(MemorySink {
        fail: Some(true),
        ..MemorySink::default()
    });
    let (response, summary) = retryable.handle(&event).await;
    let ids: Vec<_> = response
        .batch_item_failures
        .iter()
        .map(|f| f.item_identifier.as_deref().unwrap_or_default())
        .collect();
    assert_eq!(ids, [SEQUENCE, "1003"]);
    assert_eq!((summary.applied, summary.retried), (2, 2));

    let permanent = aggregator(MemorySink {
        fail: Some(false),
        ..MemorySink::default()
    });
    let (response, summary) = permanent.handle(&event).await;
    assert!(response.batch_item_failures.is_empty());
    assert_eq!((summary.applied, summary.quarantined), (2, 1));
    // The valid records were stored.
    let day = Day::from_ymd(2019, 1, 1).unwrap();
    let stored = permanent
        .store
        .fragments(&"EE000001".parse().unwrap(), day, day)
        .await
        .unwrap();
    assert!(!stored.is_empty());
}

/// `kinesis_batch.json` (also the `cargo lambda invoke` example): a record of a two-meter
/// day, then the undecodable one.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_batch_fixture_stores_its_day_and_quarantines_the_rest() {
    let event: KinesisEvent = serde_json::from_slice(&fixture("kinesis_batch.json")).unwrap();
    let a = aggregator(MemorySink::default());
    let (response, summary) = a.handle(&event).await;
    assert!(response.batch_item_failures.is_empty());
    assert_eq!(
        (summary.applied, summary.fragments, summary.quarantined),
        (1, 2, 1)
    );
    let day = Day::from_ymd(2019, 1, 1).unwrap();
    for want in Spec::new(2, 1).totals(Format::Wide) {
        let fragments = a
            .store
            .fragments(&want.series.parse().unwrap(), day, day)
            .await
            .unwrap();
        let totals = meterflow_core::daily_totals(fragments.iter());
        assert_eq!(totals[0].total, want.total, "{}", want.series);
    }
}

/// Refuses for good (a permanent error) any record equal to `refuse`, writing the ones
/// before it: a store that will never take one particular write.
struct Refusing {
    inner: SqliteStore,
    refuse: Vec<u8>,
}

impl Store for Refusing {
    async fn put(&self, fragments: Vec<meterflow_core::Fragment>) -> Result<(), StoreError> {
        self.inner.put(fragments).await
    }

    async fn put_records(&self, records: Vec<Vec<u8>>) -> Result<(), (usize, StoreError)> {
        match records.iter().position(|r| *r == self.refuse) {
            None => self.inner.put_records(records).await,
            Some(at) => {
                let before = records[..at].to_vec();
                self.inner.put_records(before).await?;
                Err((at, StoreError::refused("injected: this write is invalid")))
            }
        }
    }

    async fn fragments(
        &self,
        series: &meterflow_core::SeriesId,
        from: Day,
        to: Day,
    ) -> Result<Vec<meterflow_core::Fragment>, StoreError> {
        self.inner.fragments(series, from, to).await
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_record_the_store_refuses_for_good_is_skipped_and_the_rest_written() {
    let spec = Spec::new(3, 1);
    let csv = spec.generate(Format::Wide).unwrap();
    let mut out = Collected::default();
    let settings = PackSettings {
        buckets: 1,
        max_record_bytes: 160,
        max_held_bytes: 1024,
    };
    split(&csv[..], spec.options("m.csv"), settings, &mut out).unwrap();
    assert_eq!(out.records.len(), 3, "one meter-day per record");
    let records: Vec<ShardRecord> = out
        .records
        .iter()
        .enumerate()
        .map(|(i, r)| ShardRecord {
            shard: "shardId-000000000001".into(),
            sequence_number: format!("200{i}"),
            partition_key: "bucket-0".into(),
            data: r.data.clone(),
            arrival_ms: 0,
        })
        .collect();
    let event = kinesis_event(&records);
    let sink = MemorySink::default();
    let a = Aggregator {
        store: Refusing {
            inner: SqliteStore::open_in_memory().unwrap(),
            refuse: out.records[1].data.clone(),
        },
        dead_letter: dead_letter(sink),
    };
    let acc = meterflow_telemetry::Accumulator::new();
    let (response, summary) = {
        let _metrics = acc.local();
        a.handle(&event).await
    };
    assert!(
        response.batch_item_failures.is_empty(),
        "a permanent refusal must not hold the shard"
    );
    assert_eq!(
        (summary.applied, summary.refused, summary.dead_letters),
        (2, 1, 1)
    );
    assert_eq!(
        acc.take()
            .counter(meterflow_core::metric_names::AGGREGATOR_RECORDS_REFUSED),
        1
    );
    let written = a.dead_letter.as_ref().unwrap().0.written();
    assert_eq!(
        written[0].1,
        "dead/meterflow-fragments/shardId-000000000001/2001"
    );
    // The records on both sides of the refused one were written; its meter has no day.
    let day = spec.day(0);
    for (meter, stored) in [(0, true), (1, false), (2, true)] {
        let series = spec.series_id(Format::Wide, meter).parse().unwrap();
        let got = a.store.fragments(&series, day, day).await.unwrap();
        assert_eq!(!got.is_empty(), stored, "meter {meter}");
    }
}
