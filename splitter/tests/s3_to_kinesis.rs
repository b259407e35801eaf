//! The S3 → Kinesis pipeline of the splitter Lambda against a real `moto_server` with the real
//! SDK clients: S3 ranged GETs → splitter → PutRecords into a 4-shard stream → GetRecords on
//! every shard → decoded totals equal the synthetic data's oracle exactly.

use std::collections::{BTreeMap, BTreeSet};
use std::io::{Read, Write};
use std::sync::Arc;
use std::time::Duration;

use meterflow_aws::event::{created_objects, ObjectRef};
use meterflow_aws::kinesis::{KinesisStream, RecordStream, Shipper};
use meterflow_aws::retry::RetryPolicy;
use meterflow_aws::s3::{self, ObjectSource, ReadSettings, S3Source, SourceError};
use meterflow_core::envelope::decode;
use meterflow_core::partition::explicit_hash_key;
use meterflow_core::synth::Spec;
use meterflow_core::{daily_totals, Format, Fragment};
use meterflow_splitter::object::SplitSettings;
use meterflow_splitter::s3::{ship_object as split_object, PipelineSettings, SplitReport};
use meterflow_splitter::PackSettings;
use meterflow_testkit::kinesis::{throttled, Fault, Faulty};
use meterflow_testkit::moto::{Env, ShardRecord};
use meterflow_testkit::s3::Breaking;

const BUCKET: &str = "meter-uploads";
const STREAM: &str = "meterflow-fragments";
const SHARDS: i32 = 4;
const BUCKETS: u32 = 16;

async fn env() -> Env {
    Env::start(BUCKET, STREAM, SHARDS).await
}

fn spec() -> Spec {
    let mut spec = Spec::new(300, 20);
    spec.seed = 4;
    spec
}

async fn upload(env: &Env, key: &str, body: Vec<u8>) {
    env.upload(BUCKET, key, body).await;
}

fn object(key: &str) -> ObjectRef {
    ObjectRef::new(BUCKET, key)
}

/// Small records and ranges, so a few MB exercise several GETs and PutRecords calls.
fn settings() -> PipelineSettings {
    PipelineSettings {
        split: SplitSettings::packing(PackSettings {
            buckets: BUCKETS,
            max_record_bytes: 512,
            max_held_bytes: 32 * 1024,
        }),
        read: ReadSettings {
            range_bytes: 1 << 20,
            buffered_chunks: 4,
            retry: fast(),
        },
        ..PipelineSettings::default()
    }
}

fn fast() -> RetryPolicy {
    RetryPolicy {
        max_attempts: 5,
        base: Duration::from_millis(1),
        cap: Duration::from_millis(10),
    }
}

fn shipper<S: RecordStream>(stream: S) -> Shipper<S> {
    let mut s = Shipper::new(Arc::new(stream), BUCKETS);
    s.policy = fast();
    // One call at a time: moto's PutRecords is not safe for concurrency (its Shard.put_record
    // says so): two calls in flight can get the same sequence number on a shard, and the later
    // record silently replaces the earlier. Concurrent calls are tested without moto.
    s.max_in_flight = 1;
    s
}

fn kinesis_stream(env: &Env) -> KinesisStream {
    env.stream()
}

async fn read_back(env: &Env) -> (Vec<ShardRecord>, BTreeMap<String, (u128, u128)>) {
    let (records, ranges) = env.read_back().await;
    assert_eq!(ranges.len(), SHARDS as usize);
    (records, ranges)
}

/// Decodes what the stream holds and checks it against the oracle; returns the record count.
async fn check_stream(env: &Env, spec: &Spec) -> usize {
    let (records, ranges) = read_back(env).await;
    let mut fragments: Vec<Fragment> = Vec::new();
    let mut shards_of: BTreeMap<String, BTreeSet<String>> = BTreeMap::new();
    for r in &records {
        // The record sits on the shard that owns its bucket's hash key.
        let bucket: u32 = r
            .partition_key
            .strip_prefix("bucket-")
            .unwrap()
            .parse()
            .unwrap();
        let (lo, hi) = ranges[&r.shard];
        let key = explicit_hash_key(bucket, BUCKETS);
        assert!((lo..=hi).contains(&key), "bucket {bucket} on {}", r.shard);
        for f in decode(&r.data).unwrap() {
            shards_of
                .entry(f.series.as_str().to_owned())
                .or_default()
                .insert(r.shard.clone());
            fragments.push(f);
        }
    }
    let used: BTreeSet<&String> = records.iter().map(|r| &r.shard).collect();
    assert_eq!(
        used.len(),
        SHARDS as usize,
        "buckets spread over every shard"
    );
    assert_eq!(shards_of.len(), spec.meters as usize);
    assert!(
        shards_of.values().all(|s| s.len() == 1),
        "every series on exactly one shard"
    );
    let got: Vec<(String, String, i64)> = daily_totals(fragments.iter())
        .into_iter()
        .map(|t| (t.series.as_str().to_owned(), t.day.to_string(), t.total))
        .collect();
    let mut want: Vec<(String, String, i64)> = spec
        .totals(Format::Wide)
        .into_iter()
        .map(|t| (t.series, t.day.to_string(), t.total))
        .collect();
    want.sort();
    assert_eq!(got.len(), want.len());
    assert!(got == want, "daily totals differ from the oracle");
    records.len()
}

fn check_report(report: &SplitReport, spec: &Spec, records: usize) {
    let rows = u64::from(spec.meters * spec.days);
    assert_eq!(report.stats.rows_read, rows);
    assert_eq!(report.stats.rows_accepted, rows);
    assert_eq!(report.put.fragments, rows);
    assert_eq!(report.put.records, records as u64, "each record put once");
    assert!(report.rejects.is_empty());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_wide_csv_goes_from_s3_to_every_shard_with_exact_totals() {
    let env = env().await;
    let spec = spec();
    let csv = spec.generate(Format::Wide).unwrap();
    assert!(csv.len() > 1 << 20, "at least two ranges: {}", csv.len());
    let key = "incoming/meter data 2019+1.csv";
    upload(&env, key, csv).await;

    // The key arrives URL-encoded in the event, as S3 (and moto) write it.
    let event = format!(
        r#"{{"Records":[{{"eventName":"ObjectCreated:Put","s3":{{"bucket":{{"name":"{BUCKET}"}},"object":{{"key":"incoming%2Fmeter+data+2019%2B1.csv"}}}}}}]}}"#
    );
    let objects = created_objects(event.as_bytes()).unwrap();
    assert_eq!(objects[0].key, key);

    let source = Arc::new(S3Source {
        client: env.s3.clone(),
    });
    let report = split_object(
        source,
        &objects[0],
        &shipper(kinesis_stream(&env)),
        settings(),
    )
    .await
    .unwrap();
    assert!(
        report.put.calls >= 2,
        "more than 500 records: several calls"
    );
    assert!(report
        .object
        .source_id()
        .starts_with("s3://meter-uploads/incoming/meter data 2019+1.csv#"));
    let records = check_stream(&env, &spec).await;
    check_report(&report, &spec, records);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_gzipped_object_is_streamed_through() {
    let env = env().await;
    let spec = spec();
    let mut gz = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::fast());
    gz.write_all(&spec.generate(Format::Wide).unwrap()).unwrap();
    upload(&env, "in/day.csv.gz", gz.finish().unwrap()).await;
    let source = Arc::new(S3Source {
        client: env.s3.clone(),
    });
    let report = split_object(
        source,
        &object("in/day.csv.gz"),
        &shipper(kinesis_stream(&env)),
        settings(),
    )
    .await
    .unwrap();
    let records = check_stream(&env, &spec).await;
    check_report(&report, &spec, records);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn broken_connections_resume_from_the_last_byte() {
    let env = env().await;
    let spec = spec();
    let csv = spec.generate(Format::Wide).unwrap();
    let size = csv.len() as u64;
    upload(&env, "in/big.csv", csv).await;
    // The first three GET bodies break after 300 KB each.
    let source = Arc::new(Breaking::new(
        S3Source {
            client: env.s3.clone(),
        },
        300_000,
        3,
    ));
    let report = split_object(
        Arc::clone(&source),
        &object("in/big.csv"),
        &shipper(kinesis_stream(&env)),
        settings(),
    )
    .await
    .unwrap();
    let ranges = source.ranges();
    let mib = 1 << 20;
    let from = |start: u64| start..(start + mib).min(size);
    assert_eq!(
        &ranges[..4],
        [from(0), from(300_000), from(600_000), from(900_000)]
    );
    assert_eq!(ranges.last().map(|r| r.end), Some(size));
    let records = check_stream(&env, &spec).await;
    check_report(&report, &spec, records);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn partial_putrecords_failures_are_retried_without_duplicates() {
    let env = env().await;
    let spec = spec();
    upload(&env, "in/f.csv", spec.generate(Format::Wide).unwrap()).await;
    let faulty = Faulty::new(
        kinesis_stream(&env),
        vec![
            Some(Fault::Entries(vec![0, 7, 499])),
            Some(Fault::Call(throttled())),
            Some(Fault::Entries((0..100).collect())),
        ],
    );
    let shipper = shipper(faulty);
    let source = Arc::new(S3Source {
        client: env.s3.clone(),
    });
    let report = split_object(source, &object("in/f.csv"), &shipper, settings())
        .await
        .unwrap();
    assert!(report.put.retried_entries >= 3, "{:?}", report.put);
    let records = check_stream(&env, &spec).await;
    check_report(&report, &spec, records);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_object_replaced_mid_read_fails_instead_of_splicing() {
    let env = env().await;
    upload(&env, "in/r.csv", vec![b'a'; 3 << 20]).await;
    let source = Arc::new(S3Source {
        client: env.s3.clone(),
    });
    let info = source.head(BUCKET, "in/r.csv", None).await.unwrap();
    assert_eq!(info.size, 3 << 20);
    assert!(info.last_modified_ms > 1_500_000_000_000);
    let read = ReadSettings {
        range_bytes: 64 * 1024,
        buffered_chunks: 1,
        retry: fast(),
    };
    let mut reader = s3::open(&tokio::runtime::Handle::current(), source, info, 0, read);
    let first = tokio::task::spawn_blocking(move || {
        let mut buf = vec![0; 1000];
        reader.read_exact(&mut buf).map(|_| reader)
    })
    .await
    .unwrap()
    .unwrap();
    upload(&env, "in/r.csv", vec![b'b'; 3 << 20]).await;
    let e = tokio::task::spawn_blocking(move || {
        let mut reader = first;
        let mut rest = Vec::new();
        reader.read_to_end(&mut rest).map(|_| rest)
    })
    .await
    .unwrap()
    .unwrap_err();
    assert!(
        matches!(SourceError::of(&e), Some(SourceError::Changed { .. })),
        "{e}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_missing_object_is_a_permanent_error() {
    let env = env().await;
    let source = Arc::new(S3Source {
        client: env.s3.clone(),
    });
    let e = split_object(
        source,
        &object("nope.csv"),
        &shipper(kinesis_stream(&env)),
        settings(),
    )
    .await
    .unwrap_err();
    assert!(!e.is_retryable(), "{e}");
    assert!(e.to_string().contains("no such object"), "{e}");
}
