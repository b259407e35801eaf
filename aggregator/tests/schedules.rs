//! The pipeline against a model, under random fault schedules.
//!
//! Random input files (wide, long and NEM12; partial days, rejected rows, corrections of
//! earlier deliveries at later versions) go through the real drivers: the splitter's
//! `ship_object` from an in-memory S3 object into a fault-injecting Kinesis double, then the
//! aggregator Lambda's handler on `KinesisEvent`s cut from the stream's shards the way the
//! event source mapping cuts them, into SQLite behind a fault-injecting store. The daily totals
//! read back must equal a pure reference computed from the inputs alone, whatever was
//! duplicated, failed, retried or replayed on the way: the pipeline's promise is exact,
//! idempotent totals under any redelivery.
//!
//! Each successful splitter run's accounting is checked too (rows read = accepted + rejected,
//! the planted bad rows rejected), and the stream must hold exactly the reference's meter-days.
//!
//! Faults, each optional and chosen by proptest (so failures shrink):
//! - an S3 event delivered twice (the object shipped twice), events out of order;
//! - PutRecords throttled whole or failing some entries (the shipper retries them itself), or
//!   failing for good, which fails the splitter run midway; the whole object is then shipped
//!   again, as a retried invocation or a reprocess would;
//! - shards read in any interleaving, in batches of any size, per-shard order kept;
//! - store timeouts mid-batch, before the write or after it (applied, but reported failed):
//!   the handler's `batchItemFailures` are redelivered from the first failed record;
//! - a crash after the writes and before the checkpoint: the whole batch is redelivered;
//! - whole shards replayed from the start at the end.

use std::collections::{BTreeMap, BTreeSet};
use std::sync::Arc;
use std::time::Duration;

use meterflow_aggregator::lambda::Aggregator;
use meterflow_aws::env::S3Location;
use meterflow_aws::event::ObjectRef;
use meterflow_aws::kinesis::{CallError, Shipper};
use meterflow_aws::retry::RetryPolicy;
use meterflow_aws::s3::{ObjectInfo, ReadSettings};
use meterflow_core::{Day, SeriesId, Stats};
use meterflow_splitter::object::SplitSettings;
use meterflow_splitter::s3::{ship_object, PipelineError, PipelineSettings};
use meterflow_splitter::PackSettings;
use meterflow_store::{daily_totals, SqliteStore};
use meterflow_testkit::events::kinesis_event;
use meterflow_testkit::kinesis::{self, throttled, Recording};
use meterflow_testkit::moto::ShardRecord;
use meterflow_testkit::s3::InMemory;
use meterflow_testkit::sink::MemorySink;
use meterflow_testkit::store;
use proptest::prelude::*;
use proptest::sample::Index;
use proptest::test_runner::TestCaseError;

/// Series ids as NEM12 names them (`NMI-suffix`); wide and long files use the same ids as
/// meter names, so a file of one format corrects another's data. Their buckets (of
/// [`BUCKETS`]) lie on shards 1, 1, 2 and 0 of [`SHARDS`]: every shard has records, one has two
/// series.
const SERIES: [&str; 4] = [
    "6001000001-E1",
    "6001000001-B1",
    "6001000002-E1",
    "6001000002-B1",
];
/// Days from 2024-02-28: across a month's end (the stores keep months apart) and a leap day.
const DAYS: usize = 4;
const SLOTS: usize = 48;
const BUCKET: &str = "meter-uploads";
/// Object keys: a delivery to a key already used is a new upload of that object.
const KEYS: [&str; 2] = ["incoming/a.csv", "incoming/b.csv"];
const SHARDS: usize = 3;
const BUCKETS: u32 = 8;
/// The event source mapping's batch size once the planned steps are used up.
const FULL_BATCH: usize = 100;
/// A cell no kWh, Wh or MWh channel can hold exactly (10 decimals): the row is rejected.
const TOO_PRECISE: &str = "1.0000000001";

/// A meter-day of one delivery: values in thousandths of a kWh, `None` for a missing interval.
#[derive(Clone)]
struct Readings(Vec<Option<i32>>);

/// One line (`1.234 _ 0.500 …`, `_` for a missing interval): a shrunk case stays readable.
impl std::fmt::Debug for Readings {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let cells: Vec<String> = self
            .0
            .iter()
            .map(|v| v.map_or_else(|| "_".to_owned(), kwh))
            .collect();
        write!(f, "\"{}\"", cells.join(" "))
    }
}

/// How a delivery is written.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Layout {
    /// `end_labelled`: columns named by interval end (`00:30` … `24:00`), not start.
    Wide { end_labelled: bool },
    /// `interleaved`: readings slot by slot across meter-days, so each day arrives in many
    /// runs (many fragments of one day, one input and version); `end_labelled`: timestamps
    /// name interval ends (`interval_end`), the last of a day at the next day's 00:00.
    Long {
        interleaved: bool,
        end_labelled: bool,
    },
    /// `wh`: the channels' unit is Wh (integers parsed at 3 places); `blank_update`: the 300s'
    /// UpdateDateTime is empty, so the version falls back to the object's LastModified.
    Nem12 { wh: bool, blank_update: bool },
}

/// Why a planted row must be rejected.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Bad {
    /// Dated 2024-02-30.
    NoSuchDate,
    /// A real day, with a value of 10 decimals.
    TooPrecise,
}

/// A row planted among the good ones, which must be rejected and change nothing.
#[derive(Debug, Clone)]
struct BadRow {
    kind: Bad,
    series: usize,
    day: usize,
    slot: usize,
    /// Where among the delivery's lines (a NEM12 one goes among its channel's).
    at: Index,
}

/// One upload: a file and how often its S3 event arrives.
#[derive(Debug, Clone)]
struct Delivery {
    layout: Layout,
    key: usize,
    /// `(series, day)` → readings; each delivery has a meter-day at most once.
    rows: BTreeMap<(usize, usize), Readings>,
    bad: Vec<BadRow>,
    /// Body chunk size of the S3 double (rows cut anywhere).
    chunk: usize,
    /// 2: the S3 event is delivered twice.
    events: usize,
    /// Deliveries are shipped by rank, then index: S3 events may arrive out of order, a
    /// correction before the data it corrects.
    rank: u8,
    /// Seconds into its day of the delivery's version (see [`version`]).
    offset: u32,
}

/// One planned read of the event source mapping.
#[derive(Debug, Clone)]
struct Step {
    /// Which of the shards with records left.
    shard: Index,
    /// Records in the batch (at most).
    batch: usize,
    /// The handler crashes after writing: its batch is redelivered whatever it answered.
    crash: bool,
}

#[derive(Debug, Clone)]
struct Case {
    deliveries: Vec<Delivery>,
    /// Fault of each PutRecords call, in call order across all splitter runs.
    kinesis: Vec<Option<kinesis::Fault>>,
    /// Fault of each store write call (one per handler invocation).
    store: Vec<Option<store::Fault>>,
    steps: Vec<Step>,
    /// Per shard: every record of it applied once more at the end.
    replay: Vec<bool>,
}

fn first_day() -> Day {
    Day::from_ymd(2024, 2, 28).expect("a real day")
}

fn day(d: usize) -> Day {
    Day::from_days(first_day().days() + d as i32).expect("a day in range")
}

/// Delivery `i`'s version, epoch ms: on day `i` after 2024-03-10, whole seconds (NEM12 writes
/// seconds), strictly increasing with `i`, so no two deliveries tie.
fn version(i: usize, offset: u32) -> i64 {
    let base = i64::from(Day::from_ymd(2024, 3, 10).expect("a real day").days());
    ((base + i as i64) * 86_400 + i64::from(offset)) * 1000
}

/// `ms` in NEM market time (AEST, UTC+10) as `YYYYMMDDhhmmss`.
fn market_time(ms: i64) -> String {
    let secs = ms / 1000 + 10 * 3600;
    let days = i32::try_from(secs.div_euclid(86_400)).expect("a day in range");
    let (y, m, d) = Day::from_days(days).expect("a day in range").ymd();
    let s = secs.rem_euclid(86_400);
    format!(
        "{y:04}{m:02}{d:02}{:02}{:02}{:02}",
        s / 3600,
        s / 60 % 60,
        s % 60
    )
}

/// Thousandths of a kWh as a decimal with 3 places (`-0.250`).
fn kwh(thousandths: i32) -> String {
    let sign = if thousandths < 0 { "-" } else { "" };
    let n = thousandths.unsigned_abs();
    format!("{sign}{}.{:03}", n / 1000, n % 1000)
}

fn hhmm(slot: usize) -> String {
    format!("{:02}:{:02}", slot / 2, slot % 2 * 30)
}

/// A wide column's label for `slot`.
fn column(slot: usize, end_labelled: bool) -> String {
    match (end_labelled, slot + 1 == SLOTS) {
        (false, _) => hhmm(slot),
        (true, false) => hhmm(slot + 1),
        (true, true) => "24:00".to_owned(),
    }
}

/// A long file's timestamp for `slot` of `day`.
fn timestamp(day: Day, slot: usize, end_labelled: bool) -> String {
    match (end_labelled, slot + 1 == SLOTS) {
        (false, _) => format!("{day}T{}:00", hhmm(slot)),
        (true, false) => format!("{day}T{}:00", hhmm(slot + 1)),
        (true, true) => format!("{}T00:00:00", day.succ()),
    }
}

/// A rendered file and the rows it holds.
struct File {
    bytes: Vec<u8>,
    /// Rows the splitter must accept: meter-days (wide, NEM12) or readings (long).
    good: u64,
}

/// Writes `d` in its layout, as delivery `version`.
fn render(d: &Delivery, version: i64) -> File {
    // (series, line) in file order, the header and NEM12 structure aside.
    let mut lines: Vec<(usize, String)> = Vec::new();
    let cells = |values: &dyn Fn(usize) -> String| -> String {
        (0..SLOTS).map(values).collect::<Vec<_>>().join(",")
    };
    let header: String;
    match d.layout {
        Layout::Wide { end_labelled } => {
            header = format!("Meter,Date,{}", cells(&|k| column(k, end_labelled)));
            for (&(s, dd), r) in &d.rows {
                let values = cells(&|k| r.0[k].map(kwh).unwrap_or_default());
                lines.push((s, format!("{},{},{values}", SERIES[s], day(dd))));
            }
        }
        Layout::Long {
            interleaved,
            end_labelled,
        } => {
            let time = if end_labelled { "end" } else { "start" };
            header = format!("meter,interval_{time},kwh");
            let reading = |s: usize, dd: usize, k: usize, v: i32| {
                let at = timestamp(day(dd), k, end_labelled);
                (s, format!("{},{at},{}", SERIES[s], kwh(v)))
            };
            if interleaved {
                for k in 0..SLOTS {
                    for (&(s, dd), r) in &d.rows {
                        lines.extend(r.0[k].map(|v| reading(s, dd, k, v)));
                    }
                }
            } else {
                for (&(s, dd), r) in &d.rows {
                    lines.extend((0..SLOTS).filter_map(|k| r.0[k].map(|v| reading(s, dd, k, v))));
                }
            }
        }
        Layout::Nem12 { wh, blank_update } => {
            header = "100,NEM12,202403100000,MDP1,RETAILER1".to_owned();
            let update = if blank_update {
                String::new()
            } else {
                market_time(version)
            };
            for (&(s, dd), r) in &d.rows {
                let (y, m, dy) = day(dd).ymd();
                let values = cells(&|k| match r.0[k] {
                    Some(v) if wh => v.to_string(),
                    Some(v) => kwh(v),
                    None => String::new(),
                });
                let line = format!("300,{y:04}{m:02}{dy:02},{values},A,,,{update},");
                lines.push((s, line));
            }
        }
    }
    let good = match d.layout {
        Layout::Long { .. } => lines.len() as u64,
        _ => d.rows.len() as u64,
    };
    for b in &d.bad {
        let line = bad_line(d.layout, b);
        let at = b.at.index(lines.len() + 1);
        lines.insert(at, (b.series, line));
    }
    let mut out = header;
    out.push('\n');
    if let Layout::Nem12 { wh, .. } = d.layout {
        // One 200 channel record per series, its 300s after it, in order of first appearance.
        let mut order: Vec<usize> = Vec::new();
        for (s, _) in &lines {
            if !order.contains(s) {
                order.push(*s);
            }
        }
        for s in order {
            let (nmi, suffix) = SERIES[s].split_once('-').expect("NMI-suffix");
            let uom = if wh { "Wh" } else { "kWh" };
            out.push_str(&format!(
                "200,{nmi},E1B1,1,{suffix},N1,METER{s},{uom},30,20240401\n"
            ));
            for (_, line) in lines.iter().filter(|(of, _)| *of == s) {
                out.push_str(line);
                out.push('\n');
            }
        }
        out.push_str("900\n");
    } else {
        for (_, line) in &lines {
            out.push_str(line);
            out.push('\n');
        }
    }
    File {
        bytes: out.into_bytes(),
        good,
    }
}

/// A line the splitter must reject, in `layout`'s format.
fn bad_line(layout: Layout, b: &BadRow) -> String {
    let (date, value) = match b.kind {
        Bad::NoSuchDate => ("2024-02-30".to_owned(), "1.000"),
        Bad::TooPrecise => (day(b.day).to_string(), TOO_PRECISE),
    };
    let cells = (0..SLOTS)
        .map(|k| if k == b.slot { value } else { "" })
        .collect::<Vec<_>>()
        .join(",");
    match layout {
        Layout::Wide { .. } => format!("{},{date},{cells}", SERIES[b.series]),
        Layout::Long { end_labelled, .. } => {
            let at = match b.kind {
                Bad::NoSuchDate => format!("{date}T{}:00", hhmm(b.slot)),
                Bad::TooPrecise => timestamp(day(b.day), b.slot, end_labelled),
            };
            format!("{},{at},{value}", SERIES[b.series])
        }
        Layout::Nem12 { .. } => format!("300,{},{cells},A,,,,", date.replace('-', "")),
    }
}

/// The model: for each series-day, each slot's value from the delivery of greatest version
/// that has it, summed exactly (millionths of a kWh); days without a slot are absent.
/// `(total, intervals)` per `(series, day)`.
fn reference(deliveries: &[Delivery]) -> BTreeMap<(String, String), (i64, usize)> {
    /// `(version, millionths)` of a slot's winner so far.
    type Winner = Option<(i64, i64)>;
    let mut winners: BTreeMap<(usize, usize), Vec<Winner>> = BTreeMap::new();
    for (i, d) in deliveries.iter().enumerate() {
        let v = version(i, d.offset);
        for (key, r) in &d.rows {
            let slots = winners.entry(*key).or_insert_with(|| vec![None; SLOTS]);
            for (slot, value) in slots.iter_mut().zip(&r.0) {
                if let Some(value) = value {
                    if slot.is_none_or(|(won, _)| v > won) {
                        *slot = Some((v, i64::from(*value) * 1000));
                    }
                }
            }
        }
    }
    winners
        .into_iter()
        .filter_map(|((s, dd), slots)| {
            let values: Vec<i64> = slots.iter().flatten().map(|&(_, value)| value).collect();
            let key = (SERIES[s].to_owned(), day(dd).to_string());
            (!values.is_empty()).then(|| (key, (values.iter().sum(), values.len())))
        })
        .collect()
}

fn fast() -> RetryPolicy {
    RetryPolicy {
        max_attempts: 4,
        base: Duration::from_micros(10),
        cap: Duration::from_micros(100),
    }
}

/// Small records, held bytes and reads, so a few meter-days make several records, early
/// flushes, PutRecords calls and GETs.
fn settings() -> PipelineSettings {
    PipelineSettings {
        split: SplitSettings::packing(PackSettings {
            buckets: BUCKETS,
            max_record_bytes: 400,
            max_held_bytes: 1000,
        }),
        read: ReadSettings {
            range_bytes: 1500,
            buffered_chunks: 2,
            retry: fast(),
        },
        queued_records: 2,
        ..PipelineSettings::default()
    }
}

/// A PutRecords call refused for good (a revoked permission, say): the splitter run fails.
fn refused() -> CallError {
    CallError {
        retryable: false,
        code: "AccessDeniedException".to_owned(),
        message: "not authorized to perform kinesis:PutRecords (injected)".to_owned(),
    }
}

/// Ships every delivery (each event, each failed run again) into one stream; checks each
/// successful run's accounting.
async fn split_all(
    case: &Case,
    stream: &Arc<kinesis::Faulty<Recording>>,
) -> Result<(), TestCaseError> {
    let mut shipper = Shipper::new(Arc::clone(stream), BUCKETS);
    shipper.policy = fast();
    // One call at a time keeps the call order, hence the planned faults, deterministic.
    shipper.max_in_flight = 1;
    shipper.max_batch_bytes = 700;
    let planned = case.kinesis.iter().flatten().count();
    let mut failed_runs = 0;
    let mut order: Vec<(usize, &Delivery)> = case.deliveries.iter().enumerate().collect();
    order.sort_by_key(|(i, d)| (d.rank, *i));
    for (i, d) in order {
        let v = version(i, d.offset);
        let file = render(d, v);
        let source = Arc::new(InMemory {
            info: ObjectInfo {
                bucket: BUCKET.to_owned(),
                key: KEYS[d.key].to_owned(),
                size: file.bytes.len() as u64,
                etag: Some(format!("upload-{i}")),
                version_id: None,
                last_modified_ms: v,
            },
            data: file.bytes.into(),
            chunk: d.chunk,
        });
        let object = ObjectRef::new(BUCKET, KEYS[d.key]);
        for _ in 0..d.events {
            let report = loop {
                match ship_object(Arc::clone(&source), &object, &shipper, settings()).await {
                    Ok(report) => break report,
                    Err(e) => {
                        prop_assert!(matches!(e, PipelineError::Put(_)), "{e}");
                        failed_runs += 1;
                        // Each failed run used up at least one planned fault.
                        prop_assert!(failed_runs <= planned, "run failed unplanned: {e}");
                    }
                }
            };
            let Stats {
                rows_read,
                rows_accepted,
                rows_rejected,
                records_rejected,
                ..
            } = report.stats;
            let bad = d.bad.len() as u64;
            prop_assert_eq!(
                (rows_read, rows_accepted, rows_rejected, records_rejected),
                (file.good + bad, file.good, bad, 0),
                "delivery {}: rows read = accepted + rejected",
                i
            );
        }
    }
    Ok(())
}

/// The shard of an explicit hash key on a stream of [`SHARDS`] equal shards.
fn shard_of(hash_key: &str) -> usize {
    let key: u128 = hash_key.parse().expect("a decimal hash key");
    let shard = key / (u128::MAX / SHARDS as u128 + 1);
    (shard as usize).min(SHARDS - 1)
}

/// The stream's records by shard, each with a per-shard increasing sequence number.
fn shards(stream: &kinesis::Faulty<Recording>) -> Vec<Vec<ShardRecord>> {
    let entries = stream
        .inner
        .entries
        .lock()
        .expect("no test thread panicked");
    let mut shards = vec![Vec::new(); SHARDS];
    for e in entries.iter() {
        let s = shard_of(&e.explicit_hash_key);
        let records: &mut Vec<ShardRecord> = &mut shards[s];
        records.push(ShardRecord {
            shard: format!("shardId-{s:012}"),
            sequence_number: format!("{:056}", records.len() + 1),
            partition_key: e.partition_key.clone(),
            data: e.data.clone(),
            arrival_ms: 0,
        });
    }
    shards
}

type Handler = Aggregator<store::Faulty<SqliteStore>, MemorySink>;

/// The event source mapping: batches from each shard's checkpoint, shards interleaved as the
/// steps say (then in order, full batches), until every shard's checkpoint is at its end.
/// A batch answered with `batchItemFailures` is redelivered from the first failed record; one
/// whose handler crashed, whole.
async fn consume(
    handler: &Handler,
    shards: &[Vec<ShardRecord>],
    checkpoints: &mut [usize],
    steps: &mut std::slice::Iter<'_, Step>,
) -> Result<(), TestCaseError> {
    for _ in 0..10_000 {
        let open: Vec<usize> = (0..SHARDS)
            .filter(|&s| checkpoints[s] < shards[s].len())
            .collect();
        if open.is_empty() {
            return Ok(());
        }
        let (s, batch, crash) = match steps.next() {
            Some(step) => (open[step.shard.index(open.len())], step.batch, step.crash),
            None => (open[0], FULL_BATCH, false),
        };
        let from = checkpoints[s];
        let records = &shards[s][from..(from + batch).min(shards[s].len())];
        let (response, summary) = handler.handle(&kinesis_event(records)).await;
        prop_assert_eq!((summary.quarantined, summary.refused), (0, 0));
        let failed: Vec<&str> = response
            .batch_item_failures
            .iter()
            .map(|f| f.item_identifier.as_deref().unwrap_or_default())
            .collect();
        let done = match failed.first() {
            None => records.len(),
            Some(first) => {
                let at = records.iter().position(|r| r.sequence_number == *first);
                let at = at.ok_or_else(|| TestCaseError::fail("a failure not in the batch"))?;
                let rest: Vec<&str> = records[at..]
                    .iter()
                    .map(|r| r.sequence_number.as_str())
                    .collect();
                prop_assert_eq!(&failed, &rest, "failures are the batch from the first on");
                at
            }
        };
        if !crash {
            checkpoints[s] = from + done;
        }
    }
    Err(TestCaseError::fail("the shards were not drained"))
}

/// The whole pipeline for one case; the totals read back against the reference.
async fn pipeline(case: Case) -> Result<(), TestCaseError> {
    let stream = Arc::new(kinesis::Faulty::new(
        Recording::default(),
        case.kinesis.clone(),
    ));
    split_all(&case, &stream).await?;
    let shards = shards(&stream);

    let handler: Handler = Aggregator {
        store: store::Faulty::new(
            SqliteStore::open_in_memory().expect("an in-memory store"),
            case.store.clone(),
        ),
        dead_letter: None::<(MemorySink, S3Location)>,
    };
    let mut steps = case.steps.iter();
    let mut checkpoints = vec![0; SHARDS];
    consume(&handler, &shards, &mut checkpoints, &mut steps).await?;
    for (s, _) in case.replay.iter().enumerate().filter(|(_, r)| **r) {
        checkpoints[s] = 0;
    }
    consume(&handler, &shards, &mut checkpoints, &mut steps).await?;

    let want = reference(&case.deliveries);
    // The stream holds exactly the reference's meter-days (no rejected row, no day moved), so
    // reading every series the files name, over days well around the files', shows anything
    // stored beyond the reference.
    let streamed: BTreeSet<(String, String)> = stream
        .inner
        .fragments()
        .iter()
        .map(|f| (f.series.to_string(), f.day.to_string()))
        .collect();
    let expected: BTreeSet<(String, String)> = want.keys().cloned().collect();
    prop_assert_eq!(streamed, expected);
    let from = Day::from_days(first_day().days() - 40).expect("a day in range");
    let to = Day::from_days(first_day().days() + 40).expect("a day in range");
    let mut got = BTreeMap::new();
    for s in SERIES {
        let id: SeriesId = s.parse().expect("a series id");
        let totals = daily_totals(&handler.store, &id, from, to)
            .await
            .map_err(|e| TestCaseError::fail(e.report()))?;
        for t in totals {
            prop_assert_eq!(t.superseded, 0, "{} {}: nothing ties", s, t.day);
            got.insert((s.to_owned(), t.day.to_string()), (t.total, t.intervals));
        }
    }
    prop_assert_eq!(got, want);
    Ok(())
}

fn run(case: Case) -> Result<(), TestCaseError> {
    // The splitter runs on a blocking thread beside the shipper: a multi-threaded runtime.
    tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .expect("a tokio runtime")
        .block_on(pipeline(case))
}

fn readings() -> impl Strategy<Value = Readings> {
    // Mostly consumption; some negative values (export, corrections) test signed sums.
    let value = || prop_oneof![9 => 0i32..100_000, 1 => -99_999i32..0];
    let partial = |p| prop::collection::vec(prop::option::weighted(p, value()), SLOTS);
    // Whole days, about half days, a few intervals.
    prop_oneof![
        prop::collection::vec(value().prop_map(Some), SLOTS),
        partial(0.5),
        partial(0.1),
    ]
    .prop_filter("a day with a value", |r| r.iter().any(Option::is_some))
    .prop_map(Readings)
}

fn layout() -> impl Strategy<Value = Layout> {
    prop_oneof![
        any::<bool>().prop_map(|end_labelled| Layout::Wide { end_labelled }),
        (any::<bool>(), any::<bool>()).prop_map(|(interleaved, end_labelled)| Layout::Long {
            interleaved,
            end_labelled
        }),
        (any::<bool>(), any::<bool>())
            .prop_map(|(wh, blank_update)| Layout::Nem12 { wh, blank_update }),
    ]
}

fn bad_row() -> impl Strategy<Value = BadRow> {
    (
        prop_oneof![Just(Bad::NoSuchDate), Just(Bad::TooPrecise)],
        0..SERIES.len(),
        0..DAYS,
        0..SLOTS,
        any::<Index>(),
    )
        .prop_map(|(kind, series, day, slot, at)| BadRow {
            kind,
            series,
            day,
            slot,
            at,
        })
}

fn delivery() -> impl Strategy<Value = Delivery> {
    // The readings last: shrinking them takes the most runs, so what matters more goes first.
    (
        layout(),
        0..KEYS.len(),
        prop::collection::vec(bad_row(), 0..=2),
        prop_oneof![Just(4096usize), Just(61), Just(3)],
        1..=2usize,
        0..3u8,
        0..86_400u32,
        prop::collection::btree_map((0..SERIES.len(), 0..DAYS), readings(), 0..=4),
    )
        .prop_map(
            |(layout, key, bad, chunk, events, rank, offset, rows)| Delivery {
                layout,
                key,
                rows,
                bad,
                chunk,
                events,
                rank,
                offset,
            },
        )
}

fn kinesis_fault() -> impl Strategy<Value = kinesis::Fault> {
    prop_oneof![
        Just(kinesis::Fault::Call(throttled())),
        prop::collection::vec(0..4usize, 1..=3).prop_map(kinesis::Fault::Entries),
        Just(kinesis::Fault::Call(refused())),
    ]
}

fn store_fault() -> impl Strategy<Value = store::Fault> {
    prop_oneof![
        (0..4usize).prop_map(store::Fault::FailBefore),
        (0..4usize).prop_map(store::Fault::FailAfter),
    ]
}

fn step() -> impl Strategy<Value = Step> {
    (any::<Index>(), 1..=5usize, prop::bool::weighted(0.15)).prop_map(|(shard, batch, crash)| {
        Step {
            shard,
            batch,
            crash,
        }
    })
}

fn case() -> impl Strategy<Value = Case> {
    // The schedule first: it shrinks by dropping faults and steps, quickly; then the files.
    (
        prop::collection::vec(prop::option::weighted(0.3, kinesis_fault()), 0..10),
        prop::collection::vec(prop::option::weighted(0.4, store_fault()), 0..10),
        prop::collection::vec(step(), 0..30),
        prop::collection::vec(prop::bool::weighted(0.3), SHARDS),
        prop::collection::vec(delivery(), 1..=4),
    )
        .prop_map(|(kinesis, store, steps, replay, deliveries)| Case {
            deliveries,
            kinesis,
            store,
            steps,
            replay,
        })
}

/// Each case runs the whole pipeline (about 25 ms in a debug build): 64 cases, and up to 4096
/// shrinking runs, unless `PROPTEST_CASES` or `PROPTEST_MAX_SHRINK_ITERS` say otherwise.
fn config() -> ProptestConfig {
    let unset = |var| std::env::var_os(var).is_none();
    let mut config = ProptestConfig::default();
    if unset("PROPTEST_CASES") {
        config.cases = 64;
    }
    if unset("PROPTEST_MAX_SHRINK_ITERS") {
        config.max_shrink_iters = 4096;
    }
    // An integration test has no lib.rs to put a regressions file beside; a failure prints
    // its shrunk case, which goes into a regression test of its own.
    config.failure_persistence = None;
    config
}

proptest! {
    #![proptest_config(config())]

    #[test]
    fn daily_totals_equal_the_model_under_any_fault_schedule(case in case()) {
        run(case)?;
    }
}
