//! The splitter handler on real S3 event JSON: test events, rejects reports (to moto's S3),
//! permanent and retryable failures, the deadline.

mod common;

use std::time::Duration;

use common::{in_memory, splitter, BUCKET, KEY};
use meterflow_aws::env::S3Location;
use meterflow_aws::kinesis::{CallError, Entry, EntryOutcome, RecordStream};
use meterflow_aws::s3::ObjectSource;
use meterflow_aws::sink::{ObjectSink, SinkError};
use meterflow_core::synth::Spec;
use meterflow_core::Format;
use meterflow_splitter::lambda::{ObjectSummary, Splitter, SplitterError, SplitterResponse};
use meterflow_testkit::events::{fixture, s3_event};
use meterflow_testkit::kinesis::{throttled, Fault, Faulty, Recording};
use meterflow_testkit::s3::InMemory;
use meterflow_testkit::sink::MemorySink;
use tokio::time::Instant;

fn wide(meters: u32, days: u32) -> String {
    String::from_utf8(Spec::new(meters, days).generate(Format::Wide).unwrap()).unwrap()
}

/// `csv` with field `field` (0-based) of line `line` (1-based) replaced.
fn with_field(csv: &str, line: usize, field: usize, value: &str) -> String {
    let mut lines: Vec<String> = csv.lines().map(str::to_owned).collect();
    let mut fields: Vec<&str> = lines[line - 1].split(',').collect();
    fields[field] = value;
    lines[line - 1] = fields.join(",");
    lines.join("\n") + "\n"
}

/// Splits `data` as the fixture's object (in memory, records kept, reports in memory) for the
/// fixture's event, which must not fail the invocation.
async fn split_in_memory(
    data: impl Into<bytes::Bytes>,
) -> (Splitter<InMemory, Recording, MemorySink>, SplitterResponse) {
    let s = splitter(
        in_memory(data),
        Recording::default(),
        MemorySink::default(),
        &common::config(),
    );
    let response = s
        .handle(&fixture("s3_put_encoded_key.json"), far())
        .await
        .expect("a permanent error is not an invocation failure");
    (s, response)
}

fn far() -> Option<Instant> {
    Some(Instant::now() + Duration::from_secs(600))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_test_event_does_nothing() {
    let sink = MemorySink::default();
    let s = splitter(
        in_memory(wide(2, 2)),
        Recording::default(),
        sink,
        &common::config(),
    );
    let response = s
        .handle(&fixture("s3_test_event.json"), far())
        .await
        .unwrap();
    assert!(response.objects.is_empty());
    assert!(s.shipper.stream.entries.lock().unwrap().is_empty());
    assert!(s.sink.written().is_empty());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn bad_rows_are_reported_as_csv_next_to_the_input_or_under_the_prefix() {
    let env = common::moto().await;
    let csv = with_field(&wide(3, 2), 3, 2, "abc");
    let csv = with_field(&csv, 6, 11, "1.1234567");
    env.upload(BUCKET, KEY, csv.into_bytes()).await;
    let (stream, source, sink) = (|| env.stream(), || env.source(), || env.sink());
    let event = fixture("s3_put_encoded_key.json");

    let s = splitter(source(), stream(), sink(), &common::config());
    let response = s.handle(&event, far()).await.unwrap();
    let o = &response.objects[0];
    assert_eq!(
        (o.outcome, o.counts.rows_read, o.counts.rows_rejected),
        ("split", 6, 2)
    );
    let report_key = "incoming/meter data.csv.rejects.csv";
    assert_eq!(
        o.rejects_report.as_deref(),
        Some(format!("s3://{BUCKET}/{report_key}").as_str())
    );
    let report = env.download(BUCKET, report_key).await;
    let lines: Vec<&str> = report.lines().collect();
    assert_eq!(lines.len(), 3, "{report}");
    assert_eq!(lines[0], "file,line,column,kind,reason");
    // Rows name the object (the key, not its delivery) with line, column and kind.
    let object = format!("s3://{BUCKET}/{KEY}");
    for (row, want) in lines[1..].iter().zip([",3,3,row,", ",6,12,row,"]) {
        assert!(
            row.starts_with(&format!("{object}{want}")),
            "{row} should hold {want}"
        );
    }

    // Under a prefix in another bucket, named by input bucket and key.
    env.s3
        .create_bucket()
        .bucket("meter-reports")
        .send()
        .await
        .unwrap();
    let mut config = common::config();
    config.rejects_prefix = Some(S3Location {
        bucket: "meter-reports".into(),
        prefix: "rejects/".into(),
    });
    let s = splitter(source(), stream(), sink(), &config);
    s.handle(&event, far()).await.unwrap();
    let moved = env
        .download(
            "meter-reports",
            "rejects/meter-uploads/incoming/meter data.csv.rejects.csv",
        )
        .await;
    assert_eq!(moved, report);

    // A corrected upload without bad rows takes the old report away (and writes none).
    env.upload(BUCKET, KEY, wide(3, 2).into_bytes()).await;
    let s = splitter(source(), stream(), sink(), &common::config());
    let response = s.handle(&event, far()).await.unwrap();
    assert_eq!(response.objects[0].counts.rows_rejected, 0);
    assert_eq!(response.objects[0].rejects_report, None);
    let gone = env
        .s3
        .head_object()
        .bucket(BUCKET)
        .key(report_key)
        .send()
        .await;
    assert!(gone.is_err(), "the stale report is still there");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_bad_header_is_reported_and_does_not_fail_the_invocation() {
    let (s, response) = split_in_memory("this is not,a meter file\n1,2\n").await;
    let o = &response.objects[0];
    assert_eq!(o.outcome, "failed");
    let error = o.error.as_deref().unwrap_or_default();
    assert!(error.contains("cannot tell the format"), "{o:?}");
    let written = s.sink.written();
    assert_eq!(written.len(), 1);
    let (bucket, key, body) = &written[0];
    assert_eq!(
        (bucket.as_str(), key.as_str()),
        (BUCKET, "incoming/meter data.csv.rejects.csv")
    );
    let body = std::str::from_utf8(body).unwrap();
    let rows: Vec<&str> = body.lines().collect();
    assert_eq!(rows.len(), 2, "{body}");
    // Line 0: the object as a whole (the format could not be told, no line is at fault).
    assert!(
        rows[1].starts_with("s3://meter-uploads/incoming/meter data.csv,0,,"),
        "{body}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn rows_rejected_before_a_file_fails_are_reported_with_the_failure() {
    // A bad cell on line 3, then an unterminated quote that swallows more than a record may
    // hold (a permanent failure of the whole file at line 12).
    let mut csv = with_field(&wide(5, 2), 3, 2, "abc");
    csv += "\"EE9,2019-01-01";
    csv += &"x".repeat(1_100_000);
    let (s, response) = split_in_memory(csv).await;
    let o = &response.objects[0];
    assert_eq!(o.outcome, "failed", "{o:?}");
    assert_eq!(
        (
            o.counts.rows_read,
            o.counts.rows_accepted,
            o.counts.rows_rejected
        ),
        (10, 9, 1),
        "the rows before the failure were put and count"
    );
    assert_eq!(
        s.shipper.stream.fragments().len(),
        9,
        "and their records were put"
    );
    let entries = s.shipper.stream.entries.lock().unwrap().len() as u64;
    assert_eq!(
        (o.counts.records, o.counts.put_calls),
        (entries, 1),
        "the summary counts them"
    );
    let written = s.sink.written();
    let body = std::str::from_utf8(&written[0].2).unwrap();
    let rows: Vec<&str> = body.lines().collect();
    assert_eq!(rows.len(), 3, "{body}");
    assert!(rows[1].contains(",3,3,"), "the bad cell: {body}");
    assert!(
        rows[2].contains(",12,,") && rows[2].contains("longer than"),
        "the failure: {body}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_kinesis_throttle_storm_fails_the_invocation_as_retryable() {
    let storm = (0..1000).map(|_| Some(Fault::Call(throttled()))).collect();
    let s = splitter(
        in_memory(wide(20, 5)),
        Faulty::new(Recording::default(), storm),
        MemorySink::default(),
        &common::config(),
    );
    let e = s
        .handle(&fixture("s3_put_encoded_key.json"), far())
        .await
        .unwrap_err();
    assert!(matches!(e, SplitterError::Retryable { .. }), "{e}");
    assert!(
        e.to_string().contains("ProvisionedThroughputExceeded"),
        "{e}"
    );
    let d = lambda_runtime::Diagnostic::from(e);
    assert_eq!(d.error_type, "Retryable");
    assert!(
        s.sink.written().is_empty(),
        "no report for a retried object"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_object_that_cannot_finish_stops_before_the_deadline() {
    // Every call throttled, with retries far slower than the time left.
    let storm = (0..1000).map(|_| Some(Fault::Call(throttled()))).collect();
    let mut s = splitter(
        in_memory(wide(20, 5)),
        Faulty::new(Recording::default(), storm),
        MemorySink::default(),
        &common::config(),
    );
    s.shipper.policy.base = Duration::from_secs(30);
    s.shipper.policy.cap = Duration::from_secs(30);
    s.shipper.policy.max_attempts = 100;
    let started = Instant::now();
    // 400 ms left: the 10 s margin is capped at a fifth of that (80 ms).
    let deadline = started + Duration::from_millis(400);
    let e = s
        .handle(&fixture("s3_put_encoded_key.json"), Some(deadline))
        .await
        .unwrap_err();
    assert!(matches!(e, SplitterError::Deadline { .. }), "{e}");
    assert!(Instant::now() < deadline, "stopped before the deadline");
    assert!(
        e.to_string().contains("could not put what it had read"),
        "{e}"
    );
}

/// A stream whose calls complete only after `open_at`: Kinesis slower than the parser, so
/// the splitting thread is still reading when the deadline's stop comes, however fast the
/// machine (the test does not race the parser against the clock).
struct SlowUntil {
    inner: Recording,
    open_at: Instant,
}

impl RecordStream for SlowUntil {
    async fn put_records(&self, entries: &[Entry]) -> Result<Vec<EntryOutcome>, CallError> {
        tokio::time::sleep_until(self.open_at).await;
        self.inner.put_records(entries).await
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_object_too_large_for_the_time_left_is_handed_over_at_a_row_boundary() {
    let csv = wide(400, 30);
    // 2 s left: the 1 s margin is capped at 400 ms, so the splitter is told to stop at 1.6 s
    // and must be done by 1.9 s. Puts stall until just after the stop.
    let deadline = Instant::now() + Duration::from_secs(2);
    let stream = SlowUntil {
        inner: Recording::default(),
        open_at: deadline - Duration::from_millis(390),
    };
    let mut s = splitter(
        in_memory(csv.clone()),
        stream,
        MemorySink::default(),
        &common::config(),
    );
    // Small calls, one at a time: the stalled stream holds back the parser within kilobytes.
    (s.shipper.max_in_flight, s.shipper.max_batch_bytes) = (1, 4096);
    let response = s
        .handle(&fixture("s3_put_encoded_key.json"), Some(deadline))
        .await
        .unwrap();
    assert!(Instant::now() < deadline, "handed over before the deadline");
    let summary = &response.objects[0];
    assert_eq!((summary.outcome, summary.part), ("handed_over", 1));
    let want = format!("s3://{BUCKET}/{KEY}.part-00002.handover.json");
    assert_eq!(summary.handover_note.as_deref(), Some(want.as_str()));
    let written = s.sink.written();
    assert_eq!(written.len(), 1, "the note only: no report yet");
    let note: serde_json::Value = serde_json::from_slice(&written[0].2).unwrap();
    // The note starts the next part at the first row not yet read, after the header.
    let offset = note["offset"].as_u64().unwrap() as usize;
    assert!(offset > 0 && offset < csv.len() && csv.as_bytes()[offset - 1] == b'\n');
    let line = note["line"].as_u64().unwrap();
    assert_eq!(line as usize, csv[..offset].matches('\n').count() + 1);
    assert_eq!(
        summary.counts.rows_read,
        line - 2,
        "every row before it was read here"
    );
    assert_eq!(
        s.shipper.stream.inner.fragments().len() as u64,
        line - 2,
        "and put"
    );
    assert_eq!(note["done"]["rows_read"], summary.counts.rows_read);
    assert_eq!(note["part"], 2);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_function_with_a_timeout_shorter_than_the_margin_still_splits() {
    // Lambda's default timeout, 3 s, against the default 10 s margin.
    let mut config = common::config();
    config.deadline_margin = Duration::from_secs(10);
    let s = splitter(
        in_memory(wide(5, 2)),
        Recording::default(),
        MemorySink::default(),
        &config,
    );
    let response = s
        .handle(
            &fixture("s3_put_encoded_key.json"),
            Some(Instant::now() + Duration::from_secs(3)),
        )
        .await
        .unwrap();
    assert_eq!(response.objects[0].counts.rows_accepted, 10);
    assert!(!s.shipper.stream.entries.lock().unwrap().is_empty());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_rejects_report_is_never_split() {
    let event = String::from_utf8(fixture("s3_put_encoded_key.json"))
        .unwrap()
        .replace("meter+data.csv", "meter+data.csv.rejects.csv");
    let s = splitter(
        in_memory(wide(2, 2)),
        Recording::default(),
        MemorySink::default(),
        &common::config(),
    );
    let response = s.handle(event.as_bytes(), far()).await.unwrap();
    assert_eq!(response.objects[0].outcome, "skipped");
    assert!(s.shipper.stream.entries.lock().unwrap().is_empty());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_object_of_an_event_is_split_in_order() {
    let mut event: serde_json::Value =
        serde_json::from_slice(&fixture("s3_put_encoded_key.json")).unwrap();
    let mut second = event["Records"][0].clone();
    second["s3"]["object"]["key"] = "incoming%2Fsecond+file.csv".into();
    event["Records"].as_array_mut().unwrap().push(second);
    let s = splitter(
        in_memory(wide(4, 3)),
        Recording::default(),
        MemorySink::default(),
        &common::config(),
    );
    let response = s.handle(event.to_string().as_bytes(), far()).await.unwrap();
    let got: Vec<(&str, &str, u64)> = response
        .objects
        .iter()
        .map(|o| (o.object.as_str(), o.outcome, o.counts.rows_accepted))
        .collect();
    assert_eq!(
        got,
        [
            ("s3://meter-uploads/incoming/meter data.csv", "split", 12),
            ("s3://meter-uploads/incoming/second file.csv", "split", 12)
        ]
    );
    let put: u64 = response.objects.iter().map(|o| o.counts.records).sum();
    assert_eq!(s.shipper.stream.entries.lock().unwrap().len() as u64, put);
}

/// Runs `event` (an upload), then the event of each note it leads to, until the object is
/// split: every part's summary, and the event of the last note.
async fn split_chain<Src: ObjectSource, St: RecordStream, Snk: ObjectSink>(
    s: &Splitter<Src, St, Snk>,
    mut event: Vec<u8>,
) -> (Vec<ObjectSummary>, Vec<u8>) {
    let mut parts: Vec<ObjectSummary> = Vec::new();
    loop {
        let response = s.handle(&event, far()).await.unwrap();
        let o = response.objects[0].clone();
        assert_eq!(o.object, format!("s3://{BUCKET}/{KEY}"));
        assert_eq!(o.part as usize, parts.len() + 1);
        parts.push(o.clone());
        match o.outcome {
            "handed_over" => {
                let note = o.handover_note.expect("a note");
                let key = note.strip_prefix(&format!("s3://{BUCKET}/")).unwrap();
                assert_eq!(key, format!("{KEY}.part-{:05}.handover.json", o.part + 1));
                event = s3_event(key);
            }
            "split" => return (parts, event),
            other => panic!("part {}: {other} {:?}", o.part, o.error),
        }
        assert!(parts.len() < 10, "no end to the parts");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_large_object_is_split_in_parts_chained_by_notes_in_s3() {
    let env = common::moto().await;
    // ~3 MB, a bad row near the start and one near the end: parts of 1 MiB or so.
    let csv = with_field(&wide(3000, 3), 3, 2, "abc");
    let csv = with_field(&csv, 8000, 5, "x");
    env.upload(BUCKET, KEY, csv.into_bytes()).await;
    let mut config = common::config();
    config.max_bytes_per_invocation = Some(1 << 20);
    let (source, sink) = (|| env.source(), || env.sink());
    let s = splitter(source(), Recording::default(), sink(), &config);
    let (parts, event) = split_chain(&s, fixture("s3_put_encoded_key.json")).await;
    assert!(parts.len() >= 3, "{} parts", parts.len());
    let last = parts.last().unwrap();
    assert_eq!(
        (
            last.counts.rows_read,
            last.counts.rows_accepted,
            last.counts.rows_rejected
        ),
        (9000, 8998, 2),
        "the last part reports the whole object"
    );
    let report = env.download(BUCKET, &format!("{KEY}.rejects.csv")).await;
    let lines: Vec<&str> = report.lines().collect();
    assert_eq!(lines.len(), 3, "{report}");
    assert!(
        lines[1].contains(",3,3,") && lines[2].contains(",8000,6,"),
        "{report}"
    );

    // The same totals as one invocation of the whole object.
    let whole = splitter(source(), Recording::default(), sink(), &common::config());
    let response = whole
        .handle(&fixture("s3_put_encoded_key.json"), far())
        .await
        .unwrap();
    assert_eq!(response.objects[0].part, 1);
    let totals = |stream: &Recording| meterflow_core::daily_totals(stream.fragments().iter());
    let in_parts = totals(&s.shipper.stream);
    assert_eq!(in_parts.len(), 8998);
    assert_eq!(in_parts, totals(&whole.shipper.stream));

    // Each part removed the note it started from; a late duplicate of a note's event is a
    // no-op.
    let keys = source().list_keys(BUCKET, "").await.unwrap();
    assert_eq!(keys, [KEY.to_owned(), format!("{KEY}.rejects.csv")]);
    let response = s.handle(&event, far()).await.unwrap();
    assert_eq!(response.objects[0].outcome, "skipped");
}

/// A `.gz` object chained in parts through notes in (moto's) S3: each later part reads the
/// object with a ranged GET from the access point its note carries, so the parts together
/// inflate the file about once (not once per part), and the totals are exact.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_gzip_object_in_parts_resumes_each_part_at_its_notes_access_point() {
    let env = common::moto().await;
    let csv = wide(3000, 3);
    let mut gz = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::default());
    std::io::Write::write_all(&mut gz, csv.as_bytes()).unwrap();
    env.upload(BUCKET, KEY, gz.finish().unwrap()).await;
    let mut config = common::config();
    config.max_bytes_per_invocation = Some(512 << 10);
    let s = splitter(env.source(), Recording::default(), env.sink(), &config);
    let (parts, _) = split_chain(&s, fixture("s3_put_encoded_key.json")).await;
    assert!(parts.len() >= 5, "{} parts", parts.len());
    let last = parts.last().unwrap().counts;
    assert_eq!((last.rows_accepted, last.bytes), (9000, csv.len() as u64));
    // Re-inflating from the start would skip ~ parts²/2 × 512 KiB; entering at access
    // points skips less than a deflate block (~128 KiB here) per part.
    assert!(
        last.skipped_bytes < (parts.len() as u64 - 1) * (256 << 10),
        "{} bytes skipped over {} parts",
        last.skipped_bytes,
        parts.len()
    );
    let whole = splitter(
        env.source(),
        Recording::default(),
        env.sink(),
        &common::config(),
    );
    whole
        .handle(&fixture("s3_put_encoded_key.json"), far())
        .await
        .unwrap();
    let totals = |stream: &Recording| meterflow_core::daily_totals(stream.fragments().iter());
    assert_eq!(totals(&s.shipper.stream).len(), 9000);
    assert_eq!(totals(&s.shipper.stream), totals(&whole.shipper.stream));
}

/// S3 may deliver an event twice, and Lambda may run one twice. The second run of a part
/// finds the next note already written by the same chain and stops there, instead of
/// splitting the rest of the object a second time; a note left by another chain is replaced.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_second_run_of_an_event_stops_at_the_note_the_first_wrote() {
    let env = common::moto().await;
    env.upload(BUCKET, KEY, wide(3000, 3).into_bytes()).await;
    let with_budget = |bytes| {
        let mut config = common::config();
        config.max_bytes_per_invocation = Some(bytes);
        splitter(env.source(), Recording::default(), env.sink(), &config)
    };
    let s = with_budget(1 << 20);
    let upload = fixture("s3_put_encoded_key.json");
    let note_key = format!("{KEY}.part-00002.handover.json");
    let note_url = format!("s3://{BUCKET}/{note_key}");
    let outcome = |r: SplitterResponse| (r.objects[0].part, r.objects[0].outcome);
    assert_eq!(
        outcome(s.handle(&upload, far()).await.unwrap()),
        (1, "handed_over")
    );
    let note = env.download(BUCKET, &note_key).await;

    // The upload's event again, on a run that cuts elsewhere: it does not replace the note.
    let again = with_budget(2 << 20);
    let r = again.handle(&upload, far()).await.unwrap();
    assert_eq!(
        r.objects[0].handover_note.as_deref(),
        Some(note_url.as_str())
    );
    assert_eq!(outcome(r), (1, "duplicate"));
    assert_eq!(env.download(BUCKET, &note_key).await, note);

    // The note's event twice at once: the second run read the note before the first removed
    // it (put back here), and stops at the third part's note.
    let note_event = s3_event(&note_key);
    assert_eq!(
        outcome(s.handle(&note_event, far()).await.unwrap()),
        (2, "handed_over")
    );
    env.upload(BUCKET, &note_key, note.clone().into_bytes())
        .await;
    assert_eq!(
        outcome(s.handle(&note_event, far()).await.unwrap()),
        (2, "duplicate")
    );

    // A new upload of the same key (another sequencer) meets the notes of the chain above,
    // left as if it had broken there (the second part's put back again): it replaces them
    // and splits the whole object.
    env.upload(BUCKET, &note_key, note.into_bytes()).await;
    let mut reupload: serde_json::Value = serde_json::from_slice(&upload).unwrap();
    reupload["Records"][0]["s3"]["object"]["sequencer"] = "0055AED6DCD90281F0".into();
    let fresh = with_budget(1 << 20);
    let (parts, _) = split_chain(&fresh, serde_json::to_vec(&reupload).unwrap()).await;
    assert!(parts.len() >= 3, "{} parts", parts.len());
    let last = parts.last().unwrap();
    assert_eq!(
        (last.counts.rows_read, last.counts.rows_accepted),
        (9000, 9000)
    );
    assert_eq!(
        meterflow_core::daily_totals(fresh.shipper.stream.fragments().iter()).len(),
        9000
    );
    assert_eq!(env.source().list_keys(BUCKET, "").await.unwrap(), [KEY]);
}

/// A sink whose first conditional writes fail as S3 fails one that races another write of
/// the same key (409 `ConditionalRequestConflict`, which S3 asks callers to retry).
struct Conflicted<S> {
    inner: S,
    conflicts: std::sync::atomic::AtomicU32,
}

impl<S: ObjectSink> ObjectSink for Conflicted<S> {
    async fn put_object(
        &self,
        bucket: &str,
        key: &str,
        body: bytes::Bytes,
        content_type: &str,
    ) -> Result<(), SinkError> {
        self.inner.put_object(bucket, key, body, content_type).await
    }

    async fn put_object_if_absent(
        &self,
        bucket: &str,
        key: &str,
        body: bytes::Bytes,
        content_type: &str,
    ) -> Result<bool, SinkError> {
        use std::sync::atomic::Ordering::Relaxed;
        if self
            .conflicts
            .fetch_update(Relaxed, Relaxed, |left| left.checked_sub(1))
            .is_ok()
        {
            return Err(SinkError {
                bucket: bucket.to_owned(),
                key: key.to_owned(),
                message: "409 ConditionalRequestConflict".to_owned(),
                retryable: true,
            });
        }
        self.inner
            .put_object_if_absent(bucket, key, body, content_type)
            .await
    }

    async fn delete_object(&self, bucket: &str, key: &str) -> Result<(), SinkError> {
        self.inner.delete_object(bucket, key).await
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_note_write_that_races_another_is_tried_again_not_the_whole_part() {
    let env = common::moto().await;
    env.upload(BUCKET, KEY, wide(3000, 3).into_bytes()).await;
    let mut config = common::config();
    config.max_bytes_per_invocation = Some(1 << 20);
    let upload = fixture("s3_put_encoded_key.json");
    let with_conflicts = |conflicts: u32| {
        let sink = Conflicted {
            inner: env.sink(),
            conflicts: conflicts.into(),
        };
        splitter(env.source(), Recording::default(), sink, &config)
    };
    // Two conflicts, then the write goes through: handed over in this invocation.
    let r = with_conflicts(2).handle(&upload, far()).await.unwrap();
    assert_eq!(r.objects[0].outcome, "handed_over", "{:?}", r.objects[0]);
    assert!(env
        .download(BUCKET, &format!("{KEY}.part-00002.handover.json"))
        .await
        .contains("\"chain\": \"0055AED6DCD90281E5\""));
    // Conflicts every time: the invocation fails as retryable, so S3 runs it again.
    match with_conflicts(10).handle(&upload, far()).await {
        Err(e @ SplitterError::Note(_)) => assert!(e.to_string().contains("409"), "{e}"),
        other => panic!("{other:?}"),
    }
}
