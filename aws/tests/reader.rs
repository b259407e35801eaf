//! The S3 object reader (ranged GETs that resume after a broken connection) against
//! in-memory and fault-injecting sources.

use std::io::{self, Read};
use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use meterflow_aws::retry::RetryPolicy;
use meterflow_aws::s3::{open, pump, ObjectInfo, ObjectSource, ReadSettings, SourceError};
use meterflow_core::metric_names;
use meterflow_testkit::s3::{Breaking, InMemory};
use tokio::sync::mpsc;

fn object(data: &[u8]) -> InMemory {
    InMemory {
        info: ObjectInfo {
            bucket: "b".into(),
            key: "k".into(),
            size: data.len() as u64,
            etag: Some("e".into()),
            version_id: None,
            last_modified_ms: 1,
        },
        data: Bytes::copy_from_slice(data),
        chunk: 1000,
    }
}

fn settings(range: u64) -> ReadSettings {
    ReadSettings {
        range_bytes: range,
        buffered_chunks: 2,
        retry: RetryPolicy {
            max_attempts: 3,
            base: Duration::from_micros(10),
            cap: Duration::from_micros(50),
        },
    }
}

fn read_all<S: ObjectSource>(
    src: Arc<S>,
    info: ObjectInfo,
    start: u64,
    s: ReadSettings,
) -> io::Result<Vec<u8>> {
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(1)
        .enable_time()
        .build()?;
    let mut r = open(rt.handle(), src, info, start, s);
    let mut out = Vec::new();
    r.read_to_end(&mut out).map(|_| out)
}

#[test]
fn reads_every_byte_across_ranges_and_from_an_offset() {
    let data: Vec<u8> = (0..50_000u32).map(|i| (i * 7 % 251) as u8).collect();
    let src = Arc::new(object(&data));
    for range in [1, 999, 4096, 100_000] {
        let got = read_all(Arc::clone(&src), src.info.clone(), 0, settings(range)).unwrap();
        assert_eq!(got, data, "range {range}");
    }
    let got = read_all(Arc::clone(&src), src.info.clone(), 12_345, settings(4096)).unwrap();
    assert_eq!(got, &data[12_345..]);
    let empty = Arc::new(object(b""));
    assert!(
        read_all(Arc::clone(&empty), empty.info.clone(), 0, settings(10))
            .unwrap()
            .is_empty()
    );
}

#[test]
fn broken_bodies_resume_from_the_last_byte() {
    let data: Vec<u8> = (0..30_000u32).map(|i| (i % 253) as u8).collect();
    let src = Arc::new(Breaking::new(object(&data), 2500, 2));
    let got = read_all(
        Arc::clone(&src),
        src.inner.info.clone(),
        0,
        settings(10_000),
    )
    .unwrap();
    assert_eq!(got, data);
    assert_eq!(
        src.ranges(),
        [
            0..10_000,
            2500..12_500,
            5000..15_000,
            15_000..25_000,
            25_000..30_000
        ]
    );
}

#[test]
fn retries_without_progress_are_bounded() {
    let data = vec![1u8; 10_000];
    // Breaks at byte 0 every time: no progress, so it gives up after 3 attempts.
    let src = Arc::new(Breaking::new(object(&data), 0, 100));
    let e = read_all(Arc::clone(&src), src.inner.info.clone(), 0, settings(4096)).unwrap_err();
    assert_eq!(e.kind(), io::ErrorKind::ConnectionReset);
    assert!(
        SourceError::of(&e).is_some_and(SourceError::is_retryable),
        "{e}"
    );
    assert_eq!(src.ranges().len(), 3);
    // Progress resets the count: a break every 1000 bytes still reads everything.
    let src = Arc::new(Breaking::new(object(&data), 1000, 9));
    assert_eq!(
        read_all(
            Arc::clone(&src),
            src.inner.info.clone(),
            0,
            settings(100_000)
        )
        .unwrap(),
        data
    );
}

#[tokio::test]
async fn bytes_read_and_resumed_gets_are_counted() {
    let data: Vec<u8> = (0..30_000u32).map(|i| (i % 253) as u8).collect();
    let src = Arc::new(Breaking::new(object(&data), 2500, 2));
    let acc = meterflow_telemetry::Accumulator::new();
    let _metrics = acc.local();
    // The fetching task and its consumer, both on this (current) thread's runtime.
    let (tx, mut rx) = mpsc::channel(2);
    let info = src.inner.info.clone();
    let fetching = pump(Arc::clone(&src), info, 0, settings(10_000), tx);
    let reading = async {
        let mut n = 0;
        while let Some(chunk) = rx.recv().await {
            n += chunk.unwrap().len();
        }
        n
    };
    let ((), n) = tokio::join!(fetching, reading);
    assert_eq!(n, data.len());
    let recorded = acc.take();
    assert_eq!(recorded.counter(metric_names::S3_BYTES_READ), 30_000);
    assert_eq!(recorded.counter(metric_names::S3_GET_RESUMES), 2);
    assert_eq!(src.ranges().len(), 5, "two broken GETs, three whole");
}

#[test]
fn a_short_object_is_an_error_not_a_silent_end() {
    let mut src = object(&[5u8; 1000]);
    src.info.size = 2000; // HEAD said more than the GETs give
    let e = read_all(Arc::new(src.clone()), src.info.clone(), 0, settings(4096)).unwrap_err();
    assert!(e.to_string().contains("body ended at byte 1000"), "{e}");
}
