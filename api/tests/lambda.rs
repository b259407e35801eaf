//! The API Lambda's service answering real Function URL events.

use meterflow_api::lambda::app;
use meterflow_api::ApiConfig;
use meterflow_store::{SqliteStore, Store};
use meterflow_testkit::conformance::fragment;
use meterflow_testkit::events::{ask, fixture};

async fn answer(request: &str) -> (u16, serde_json::Value) {
    let store = SqliteStore::open_in_memory().unwrap();
    store
        .put(vec![fragment(
            "VABD000163-E1",
            "2004-02-01",
            1,
            "nem.csv",
            3,
            &[Some(1_111_000); 48],
        )])
        .await
        .unwrap();
    ask(app(store, ApiConfig::default()), request).await
}

#[tokio::test]
async fn daily_totals_through_a_function_url_event() {
    let (status, json) =
        answer(&String::from_utf8(fixture("function_url_daily.json")).unwrap()).await;
    assert_eq!(status, 200);
    assert_eq!(json["meter"], "VABD000163-E1");
    assert_eq!(json["days"][0]["total"].to_string(), "53.328");
    assert_eq!(json["days"].as_array().map(Vec::len), Some(1));
}

#[tokio::test]
async fn client_mistakes_are_400_json_through_lambda_too() {
    let (status, json) =
        answer(&String::from_utf8(fixture("function_url_legacy_bad_date.json")).unwrap()).await;
    assert_eq!(status, 400);
    assert!(
        json["error"].as_str().unwrap().contains("no such day"),
        "{json}"
    );
}
