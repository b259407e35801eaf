//! The aggregator handler on real Kinesis event JSON.

use meterflow_aggregator::lambda::{handle, handle_at, iterator_age_ms};
use meterflow_core::metric_names as m;
use meterflow_core::{Day, Fragment, SeriesId};
use meterflow_store::{daily_totals, SqliteStore, Store, StoreError};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

fn event() -> aws_lambda_events::event::kinesis::KinesisEvent {
    serde_json::from_slice(&meterflow_testkit::events::fixture(
        "kinesis_batch_with_undecodable.json",
    ))
    .expect("fixture parses")
}

fn day(s: &str) -> Day {
    Day::parse_iso(s).unwrap()
}

#[tokio::test]
async fn undecodable_records_are_quarantined_and_the_rest_written() {
    let store = SqliteStore::open_in_memory().unwrap();
    let (response, outcome) = handle(&store, &event()).await;
    assert!(response.batch_item_failures.is_empty(), "{response:?}");
    assert_eq!(outcome.quarantined.len(), 1);
    assert_eq!(outcome.quarantined[0].index, 1);
    assert_eq!((outcome.applied, outcome.fragments), (2, 2));
    let series: SeriesId = "EE00027".parse().unwrap();
    let totals = daily_totals(&store, &series, day("2019-01-01"), day("2019-01-31"))
        .await
        .unwrap();
    let got: Vec<(String, i64)> = totals
        .iter()
        .map(|t| (t.day.to_string(), t.total))
        .collect();
    assert_eq!(
        got,
        vec![
            ("2019-01-01".into(), 364_992_000),
            ("2019-01-02".into(), 4_800_000)
        ]
    );
    // Redelivery of the whole batch changes nothing.
    handle(&store, &event()).await;
    assert_eq!(
        daily_totals(&store, &series, day("2019-01-01"), day("2019-01-31"))
            .await
            .unwrap(),
        totals
    );
}

/// A store whose writes always time out.
struct Down;

impl Store for Down {
    async fn put(&self, _: Vec<Fragment>) -> Result<(), StoreError> {
        Err(StoreError::retryable(
            "injected",
            std::io::Error::from(std::io::ErrorKind::ConnectionReset),
        ))
    }
    async fn fragments(&self, _: &SeriesId, _: Day, _: Day) -> Result<Vec<Fragment>, StoreError> {
        Ok(Vec::new())
    }
}

#[tokio::test]
async fn a_failed_write_reports_every_record_from_it_on() {
    let (response, outcome) = handle(&Down, &event()).await;
    let ids: Vec<_> = response
        .batch_item_failures
        .iter()
        .map(|f| f.item_identifier.clone())
        .collect();
    assert_eq!(
        ids,
        vec![
            Some("49656245325000000000000000000000000000000000000000000001".to_string()),
            Some("49656245325000000000000000000000000000000000000000000002".to_string()),
            Some("49656245325000000000000000000000000000000000000000000003".to_string()),
        ]
    );
    assert_eq!(outcome.failed.as_ref().map(|(i, _)| *i), Some(0));
    let json = serde_json::to_value(&response).unwrap();
    assert_eq!(
        json["batchItemFailures"][0]["itemIdentifier"],
        "49656245325000000000000000000000000000000000000000000001"
    );
}

#[tokio::test]
async fn the_iterator_age_is_measured_from_the_newest_record() {
    // The fixture's records arrived at 1732780800.125, .250 and .375 (seconds).
    let newest = UNIX_EPOCH + Duration::from_millis(1_732_780_800_375);
    let now = newest + Duration::from_millis(4_321);
    let acc = meterflow_telemetry::Accumulator::new();
    let (_, outcome) = {
        let _metrics = acc.local();
        handle_at(&SqliteStore::open_in_memory().unwrap(), &event(), now).await
    };
    assert_eq!(outcome.applied, 2);
    let recorded = acc.take();
    assert_eq!(recorded.histogram(m::AGGREGATOR_ITERATOR_AGE_MS), [4_321.0]);
    assert_eq!(recorded.counter(m::AGGREGATOR_RECORDS_QUARANTINED), 1);
    assert_eq!(recorded.counter(m::AGGREGATOR_RECORDS_APPLIED), 2);
    // A consumer clock behind the stream's is not a negative age; no records, no age.
    assert_eq!(
        iterator_age_ms(&event(), newest - Duration::from_secs(5)),
        Some(0)
    );
    let mut empty = event();
    empty.records.clear();
    assert_eq!(iterator_age_ms(&empty, SystemTime::now()), None);
}
