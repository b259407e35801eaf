//! Real event JSON, as Lambda delivers it: the fixtures in `fixtures/events/` (S3
//! notifications, Kinesis batches, Function URL requests; see the README there), and builders
//! of the same shapes for data a test makes.

use crate::moto::ShardRecord;

/// The bucket and key `s3_put_encoded_key.json` names (its key is `incoming%2Fmeter+data.csv`).
pub const BUCKET: &str = "meter-uploads";
pub const KEY: &str = "incoming/meter data.csv";
/// The stream the Kinesis fixtures and [`kinesis_event`] name.
pub const STREAM: &str = "meterflow-fragments";

/// The bytes of `fixtures/events/<name>`.
pub fn fixture(name: &str) -> Vec<u8> {
    let path = format!("{}/fixtures/events/{name}", env!("CARGO_MANIFEST_DIR"));
    std::fs::read(&path).unwrap_or_else(|e| panic!("{path}: {e}"))
}

/// The fixture's S3 event, for `key` (URL-encoded as S3 does) of the fixture's bucket.
pub fn s3_event(key: &str) -> Vec<u8> {
    let mut event: serde_json::Value =
        serde_json::from_slice(&fixture("s3_put_encoded_key.json")).unwrap();
    let encoded: String = key
        .bytes()
        .map(|b| match b {
            b' ' => "+".to_owned(),
            b'a'..=b'z' | b'A'..=b'Z' | b'0'..=b'9' | b'-' | b'_' | b'.' => (b as char).to_string(),
            _ => format!("%{b:02X}"),
        })
        .collect();
    event["Records"][0]["s3"]["object"]["key"] = encoded.into();
    serde_json::to_vec(&event).unwrap()
}

/// The `KinesisEvent` Lambda would deliver for `records`, as JSON in its real shape (data in
/// base64, `eventID` of shard and sequence number, the stream's ARN), parsed back as the
/// runtime does.
pub fn kinesis_event(records: &[ShardRecord]) -> aws_lambda_events::event::kinesis::KinesisEvent {
    let records: Vec<serde_json::Value> = records
        .iter()
        .map(|r| {
            // The event library's own encoder (its type cannot be built directly).
            let mut data = aws_lambda_events::encodings::Base64Data::default();
            data.0.clone_from(&r.data);
            serde_json::json!({
                "kinesis": {
                    "kinesisSchemaVersion": "1.0",
                    "partitionKey": r.partition_key,
                    "sequenceNumber": r.sequence_number,
                    "data": data,
                    "approximateArrivalTimestamp": 1732762800.123
                },
                "eventSource": "aws:kinesis",
                "eventVersion": "1.0",
                "eventID": format!("{}:{}", r.shard, r.sequence_number),
                "eventName": "aws:kinesis:record",
                "invokeIdentityArn": "arn:aws:iam::123456789012:role/meterflow-aggregator",
                "awsRegion": "us-east-1",
                "eventSourceARN": format!("arn:aws:kinesis:us-east-1:123456789012:stream/{STREAM}")
            })
        })
        .collect();
    let json = serde_json::json!({ "Records": records }).to_string();
    assert!(!json.contains("\"data\":["), "data must be base64 text");
    serde_json::from_str(&json).expect("a KinesisEvent")
}

/// The answer of `app` (the api Lambda's router) to a Function URL request (the event's JSON),
/// as `lambda_http` hands it over: status and JSON body.
pub async fn ask(app: axum::Router, request: &str) -> (u16, serde_json::Value) {
    use tower::ServiceExt;
    let request = lambda_http::request::from_str(request).expect("a Function URL event");
    let response = app.oneshot(request).await.unwrap();
    let status = response.status().as_u16();
    let body = axum::body::to_bytes(response.into_body(), 1 << 22)
        .await
        .unwrap();
    (status, serde_json::from_slice(&body).unwrap())
}
