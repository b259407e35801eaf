//! The aggregator handler on real Kinesis event JSON.

use meterflow_aggregator::lambda::handle;
use meterflow_core::{Day, Fragment, SeriesId};
use meterflow_store::{daily_totals, SqliteStore, Store, StoreError};

fn event() -> aws_lambda_events::event::kinesis::KinesisEvent {
    serde_json::from_str(include_str!("fixtures/kinesis-batch-with-undecodable.json"))
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
        Err(StoreError::Retryable("injected: connection reset".into()))
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
