//! What the Lambda tests share: fixtures, a moto server with the bucket and stream the
//! fixtures name, and handlers tuned for small inputs.
#![allow(dead_code)] // each test file uses its own part

use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use meterflow_api::ApiConfig;
use meterflow_aws::kinesis::RecordStream;
use meterflow_aws::retry::RetryPolicy;
use meterflow_aws::s3::{ObjectInfo, ObjectSource};
use meterflow_aws::sink::ObjectSink;
use meterflow_lambda::api::app;
use meterflow_lambda::splitter::{Splitter, SplitterConfig};
use meterflow_splitter::PackSettings;
use meterflow_store::Store;
use meterflow_testkit::moto::ShardRecord;
use meterflow_testkit::s3::InMemory;
use tower::ServiceExt;

/// The bucket and key `s3_put_encoded_key.json` names (its key is `incoming%2Fmeter+data.csv`).
pub const BUCKET: &str = "meter-uploads";
pub const KEY: &str = "incoming/meter data.csv";
pub const STREAM: &str = "meterflow-fragments";
pub const SHARDS: i32 = 4;
pub const BUCKETS: u32 = 16;

pub fn fixture(name: &str) -> Vec<u8> {
    let path = format!("{}/tests/fixtures/{name}", env!("CARGO_MANIFEST_DIR"));
    std::fs::read(&path).unwrap_or_else(|e| panic!("{path}: {e}"))
}

pub fn config() -> SplitterConfig {
    SplitterConfig {
        stream_name: STREAM.to_owned(),
        buckets: BUCKETS,
        put_concurrency: 1,
        rejects_prefix: None,
        max_rejects: 1000,
        deadline_margin: Duration::from_secs(1),
        max_bytes_per_invocation: None,
        handover_prefix: None,
    }
}

pub fn fast() -> RetryPolicy {
    RetryPolicy {
        max_attempts: 3,
        base: Duration::from_millis(1),
        cap: Duration::from_millis(5),
    }
}

/// A splitter with small records (many per test file) and fast retries. One PutRecords call
/// at a time: moto can give two concurrent calls the same sequence number (ARCHITECTURE).
pub fn splitter<Src: ObjectSource, St: RecordStream, Snk: ObjectSink>(
    source: Src,
    stream: St,
    sink: Snk,
    config: &SplitterConfig,
) -> Splitter<Src, St, Snk> {
    let mut s = Splitter::new(Arc::new(source), stream, sink, config);
    s.shipper.policy = fast();
    s.settings.split.pack = PackSettings {
        buckets: config.buckets,
        max_record_bytes: 2048,
        max_held_bytes: 32 * 1024,
    };
    s.settings.read.retry = fast();
    s
}

/// `data` as the object the fixture names, without a server.
pub fn in_memory(data: impl Into<Bytes>) -> InMemory {
    let data = data.into();
    InMemory {
        info: ObjectInfo {
            bucket: BUCKET.into(),
            key: KEY.into(),
            size: data.len() as u64,
            etag: Some("e1".into()),
            version_id: None,
            last_modified_ms: 1_546_300_800_000,
        },
        data,
        chunk: 4096,
    }
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

pub use meterflow_testkit::moto::Env;

/// A moto server with the fixture's bucket and a 4-shard stream.
pub async fn moto() -> Env {
    Env::start(BUCKET, STREAM, SHARDS).await
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

/// The api handler's answer to a Function URL request (the event's JSON): status and JSON.
pub async fn ask<S: Store + Clone + 'static>(store: &S, request: &str) -> (u16, serde_json::Value) {
    let request = lambda_http::request::from_str(request).expect("a Function URL event");
    let response = app(store.clone(), ApiConfig::default())
        .oneshot(request)
        .await
        .unwrap();
    let status = response.status().as_u16();
    let body = axum::body::to_bytes(response.into_body(), 1 << 22)
        .await
        .unwrap();
    (status, serde_json::from_slice(&body).unwrap())
}
