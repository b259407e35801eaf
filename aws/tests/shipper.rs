//! The Kinesis shipper against fault-injecting streams (the failures the emulator cannot
//! produce): only failed entries are retried, attempts are bounded, calls stay bounded, and a
//! failing shipper closes its channel.

use std::sync::Arc;
use std::time::Duration;

use meterflow_aws::kinesis::*;
use meterflow_aws::retry::RetryPolicy;
use meterflow_core::envelope::StreamRecord;
use meterflow_testkit::kinesis::{throttled, Fault, Faulty, Recording};
use tokio::sync::mpsc;

fn rec(bucket: u32, len: usize) -> StreamRecord {
    StreamRecord {
        bucket,
        fragments: 1,
        data: vec![7; len],
    }
}

fn fast() -> RetryPolicy {
    RetryPolicy {
        max_attempts: 4,
        base: Duration::from_micros(10),
        cap: Duration::from_micros(100),
    }
}

fn entries(n: u32) -> Vec<Entry> {
    (0..n)
        .map(|i| Entry::new(rec(i % 4, 5), 4).unwrap())
        .collect()
}

#[tokio::test]
async fn only_failed_entries_are_retried() {
    let s = Faulty::new(
        Recording::default(),
        vec![
            Some(Fault::Entries(vec![1, 3])),
            Some(Fault::Entries(vec![0])),
        ],
    );
    let batch = entries(5);
    let report = put_batch(&s, batch.clone(), &fast()).await.unwrap();
    assert_eq!(s.call_sizes(), [5, 2, 1]);
    assert_eq!(
        (report.records, report.calls, report.retried_entries),
        (5, 3, 3)
    );
    assert_eq!(report.throttled_calls, 2);
    let mut got = s.inner.entries.lock().unwrap().clone();
    got.sort_by(|a, b| a.partition_key.cmp(&b.partition_key));
    let mut want = batch;
    want.sort_by(|a, b| a.partition_key.cmp(&b.partition_key));
    assert_eq!(got, want, "each entry put exactly once");
}

#[tokio::test]
async fn throttled_calls_are_retried_and_attempts_are_bounded() {
    let s = Faulty::new(
        Recording::default(),
        vec![Some(Fault::Call(throttled())), None],
    );
    let r = put_batch(&s, entries(3), &fast()).await.unwrap();
    assert_eq!((r.records, r.calls), (3, 2));

    let always: Vec<_> = (0..10).map(|_| Some(Fault::Entries(vec![0]))).collect();
    let s = Faulty::new(Recording::default(), always);
    let e = put_batch(&s, entries(3), &fast()).await.unwrap_err();
    assert!(e.is_retryable());
    assert!(
        matches!(&e, PutError::Exhausted { failed: 1, total: 3, attempts: 4, last } if last.starts_with("ProvisionedThroughputExceeded")),
        "{e}"
    );
    assert_eq!(s.calls(), 4);
}

#[tokio::test]
async fn every_batch_adds_its_report_to_the_metrics_failed_or_not() {
    use meterflow_core::metric_names as m;
    let acc = meterflow_telemetry::Accumulator::new();
    let _metrics = acc.local();
    let s = Faulty::new(
        Recording::default(),
        vec![
            Some(Fault::Call(throttled())),
            Some(Fault::Entries(vec![1])),
        ],
    );
    let batch = entries(3);
    let bytes: u64 = batch.iter().map(|e| e.data.len() as u64).sum();
    let report = put_batch(&s, batch, &fast()).await.unwrap();
    let recorded = acc.take();
    assert_eq!(recorded.counter(m::KINESIS_RECORDS_PUT), 3);
    assert_eq!(recorded.counter(m::KINESIS_BYTES_PUT), bytes);
    assert_eq!(recorded.counter(m::KINESIS_PUT_CALLS), 3);
    assert_eq!(recorded.counter(m::KINESIS_ENTRIES_RETRIED), 3 + 1);
    assert_eq!(recorded.counter(m::KINESIS_THROTTLED_CALLS), 2);
    assert_eq!(report.throttled_calls, 2);

    // A batch that never gets through still reports the calls it made.
    let always: Vec<_> = (0..10).map(|_| Some(Fault::Entries(vec![0]))).collect();
    let s = Faulty::new(Recording::default(), always);
    put_batch(&s, entries(2), &fast()).await.unwrap_err();
    let recorded = acc.take();
    assert_eq!(recorded.counter(m::KINESIS_PUT_CALLS), 4);
    assert_eq!(recorded.counter(m::KINESIS_RECORDS_PUT), 1);
    assert_eq!(recorded.counter(m::KINESIS_ENTRIES_RETRIED), 3);
    assert_eq!(recorded.counter(m::KINESIS_THROTTLED_CALLS), 4);
}

#[tokio::test]
async fn permanent_call_errors_stop_at_once() {
    let denied = CallError {
        retryable: false,
        code: "ResourceNotFoundException".to_owned(),
        message: "no such stream".to_owned(),
    };
    let s = Faulty::new(Recording::default(), vec![Some(Fault::Call(denied))]);
    let e = put_batch(&s, entries(3), &fast()).await.unwrap_err();
    assert!(!e.is_retryable());
    assert_eq!(s.calls(), 1);
}

#[tokio::test]
async fn the_shipper_puts_everything_with_bounded_calls() {
    let s = Arc::new(Faulty::new(
        Recording::default(),
        vec![
            None,
            Some(Fault::Entries(vec![0, 499])),
            Some(Fault::Call(throttled())),
        ],
    ));
    let mut shipper = Shipper::new(Arc::clone(&s), 4);
    shipper.policy = fast();
    shipper.max_in_flight = 2;
    let (tx, rx) = mpsc::channel(8);
    let producer = tokio::spawn(async move {
        for i in 0..1700u32 {
            tx.send(rec(i % 4, 100)).await.unwrap();
        }
    });
    let report = shipper.ship(rx).await.unwrap();
    producer.await.unwrap();
    assert_eq!(report.records, 1700);
    assert_eq!(s.inner.entries.lock().unwrap().len(), 1700);
    assert!(s.call_sizes().iter().all(|&n| n <= MAX_RECORDS_PER_CALL));
}

#[tokio::test]
async fn a_failing_shipper_closes_its_channel() {
    let always: Vec<_> = (0..100).map(|_| Some(Fault::Call(throttled()))).collect();
    let s = Arc::new(Faulty::new(Recording::default(), always));
    let mut shipper = Shipper::new(s, 4);
    shipper.policy = fast();
    let (tx, rx) = mpsc::channel(1);
    let producer = tokio::spawn(async move {
        for i in 0..100_000u32 {
            if tx.send(rec(i % 4, 1000)).await.is_err() {
                return i;
            }
        }
        u32::MAX
    });
    let e = shipper.ship(rx).await.unwrap_err();
    assert!(e.is_retryable(), "{e}");
    assert!(
        producer.await.unwrap() < 100_000,
        "the producer saw the channel close"
    );
}
