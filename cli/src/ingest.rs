//! `meterflow ingest`: files and S3 objects → splitter → bounded in-process stream →
//! aggregator → store, or → a Kinesis stream for the aggregator Lambda.
//!
//! The same pieces as on AWS: the splitter library packs envelope records exactly as the
//! splitter Lambda does, the records cross a bounded channel (the in-process Kinesis, whose
//! bound is the backpressure: parsers block when the store falls behind), and the aggregator
//! library writes them as the aggregator Lambda does. When the store or the stream fails, the
//! parsers stop at their next read instead of parsing the rest of their files for nothing.

use std::collections::{HashSet, VecDeque};
use std::fs::File;
use std::io::{self, Read, Write};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Instant;

use anyhow::{Context, Result};
use meterflow_aggregator::apply;
use meterflow_aws::pipeline::StopWhenClosed;
use meterflow_core::decompress::{for_each_input, DecompressError, Limits};
use meterflow_core::source::source_name;
use meterflow_core::{Day, Options, Reject, SeriesId, Stats, TimestampLabel};
use meterflow_splitter::{split, Output, PackSettings, StreamRecord};
use meterflow_store::Store;
use serde::Serialize;
use tokio::sync::mpsc;

use crate::inputs::{Input, SkipReason, Skipped};
use crate::kinesis_sink::{KinesisSink, PutSummary};
use crate::s3_inputs::S3Inputs;

/// Records in flight between parsers and the store.
const STREAM_CAPACITY: usize = 16;
/// Packing for the in-process stream. Kinesis wants full records spread over many partition
/// keys, which means holding up to `max_held_bytes` of partly filled records: the store sees
/// nothing until that much is parsed, and gets the last of it only after parsing ends. Locally
/// there are no shards to spread over, so few buckets and small records keep the parser and
/// the store busy at the same time (the whole of a 1 GB file's ingest, not two thirds of it).
const LOCAL_PACKING: PackSettings = PackSettings {
    buckets: 4,
    max_record_bytes: 256 * 1024,
    max_held_bytes: 1024 * 1024,
};

pub struct IngestConfig {
    pub rejects: Option<PathBuf>,
    pub jobs: usize,
    pub timestamps: TimestampLabel,
    pub long_interval_minutes: u16,
    pub limits: Limits,
    pub progress: bool,
    /// Where `s3://` inputs are read from (`None` when there are none).
    pub s3: Option<Arc<S3Inputs>>,
}

/// Where the records go.
pub enum Sink<S> {
    /// Aggregated here, into a store.
    Store(Arc<S>),
    /// Put on a Kinesis stream, for the aggregator Lambda.
    Stream(KinesisSink),
}

impl<S> Sink<S> {
    fn packing(&self) -> PackSettings {
        match self {
            Sink::Store(_) => LOCAL_PACKING,
            Sink::Stream(_) => crate::kinesis_sink::packing(),
        }
    }
}

/// The run's accounting, printed as text or JSON.
#[derive(Debug, Default, Serialize)]
pub struct Summary {
    pub files: u64,
    pub files_failed: u64,
    pub inputs: u64,
    /// Entries of archives that could not be read, while the rest of their archive was.
    pub inputs_failed: u64,
    pub rows_read: u64,
    pub rows_accepted: u64,
    pub rows_rejected: u64,
    /// Records that are not rows and were refused (a bad NEM12 200 record, say); each is a
    /// line of the rejects report, as each rejected row is.
    pub records_rejected: u64,
    /// Warnings (a NEM12 file without its 900 end record, say): lines of the report too.
    pub warnings: u64,
    pub fragments: u64,
    pub records: u64,
    pub records_quarantined: u64,
    pub series: u64,
    pub days: u64,
    pub bytes: u64,
    pub seconds: f64,
    pub mb_per_s: f64,
    /// Why each file that could not be read at all, or archive entry that could not, failed
    /// (each message names it).
    pub failures: Vec<String>,
    /// Directories that could not be listed (or entries of them that could not be read):
    /// each fails alone, as a file does; they are in `failures`.
    pub dirs_failed: u64,
    /// Paths found but not read, and why: a name that is not a meter-data file name (csv, txt,
    /// dat, gz, zip, nem12, mdff; name such a file explicitly to read it), a rejects report,
    /// a file or directory reached again through a symlink.
    pub skipped: Vec<Skipped>,
    /// What was put on the stream, with `--stream` (`series` and `days` are then not
    /// counted: the aggregator Lambda sees the fragments, not this process).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub put: Option<PutSummary>,
    /// The first rejects, for the console when no `--rejects` report was asked for.
    #[serde(skip)]
    pub sample_rejects: Vec<Reject>,
    /// Rows of failed files read (and stored) before their failure.
    #[serde(skip)]
    pub rows_before_failures: u64,
}

/// Writes the rejects report as CSV: `file,line,column,kind,reason`.
struct RejectLog {
    file: Option<io::BufWriter<File>>,
    count: u64,
    sample: Vec<Reject>,
}

impl RejectLog {
    fn add(&mut self, r: Reject) -> io::Result<()> {
        self.count += 1;
        if let Some(f) = &mut self.file {
            r.write_csv(f)?;
        }
        if self.sample.len() < 10 {
            self.sample.push(r);
        }
        Ok(())
    }
}

/// The splitter's output: records onto the channel, rejects into the log.
struct LocalOutput<'a> {
    tx: &'a mpsc::Sender<StreamRecord>,
    rejects: &'a Mutex<RejectLog>,
    write_error: Option<io::Error>,
    /// Set when the records' consumer has stopped (shared by all parsers).
    halt: &'a Arc<AtomicBool>,
}

impl Output for LocalOutput<'_> {
    fn record(&mut self, record: StreamRecord) {
        // Blocking send is the backpressure; it fails only if the consumer has stopped,
        // which the caller reports from the consumer's side.
        if self.tx.blocking_send(record).is_err() {
            self.halt.store(true, Ordering::Relaxed);
        }
    }

    fn reject(&mut self, reject: Reject) {
        let mut log = self.rejects.lock().unwrap_or_else(|p| p.into_inner());
        if let Err(e) = log.add(reject) {
            self.write_error.get_or_insert(e);
        }
    }
}

/// Counts bytes read, for progress and throughput.
struct Counting<R> {
    inner: R,
    counter: Arc<AtomicU64>,
}

impl<R: Read> Read for Counting<R> {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        let n = self.inner.read(buf)?;
        self.counter.fetch_add(n as u64, Ordering::Relaxed);
        Ok(n)
    }
}

/// What one file did: its accounting, the inputs it held (1, or an archive's entries), and
/// the entries of an archive that failed alone (each message names its entry).
struct FileDone {
    stats: Stats,
    inputs: u64,
    failed_entries: Vec<String>,
}

/// Parses one file (each input of an archive) into the channel. An archive entry that fails
/// alone (see [`meterflow_splitter::SplitError::is_input_only`]) is noted and the archive read on.
fn ingest_input(
    input: &Input,
    cfg: &IngestConfig,
    packing: PackSettings,
    out: &mut LocalOutput<'_>,
    counter: &Arc<AtomicU64>,
) -> Result<FileDone, Failed> {
    let opened = input
        .open(cfg.s3.as_deref())
        .map_err(|e| (e, Stats::default()))?;
    let reader = Counting {
        inner: StopWhenClosed::new(opened.reader, out.halt.clone()),
        counter: counter.clone(),
    };
    let mut done = FileDone {
        stats: Stats::default(),
        inputs: 0,
        failed_entries: Vec::new(),
    };
    let mut failure: Option<String> = None;
    let result = for_each_input(reader, &opened.object, cfg.limits, |input, r| {
        let source = source_name(input, opened.delivery.as_deref());
        let mut opts = Options::new(source, opened.version);
        opts.timestamps = cfg.timestamps;
        opts.long_interval_minutes = cfg.long_interval_minutes;
        done.inputs += 1;
        match split(r, opts, packing, out) {
            Ok(s) => {
                done.stats.add(&s);
                Ok(())
            }
            Err(e) => {
                // The rows before the failure reached the store: they count.
                done.stats.add(&e.stats);
                if input != opened.object && e.is_input_only() {
                    done.failed_entries.push(e.to_string());
                    return Ok(());
                }
                failure = Some(e.to_string());
                Err(io::Error::other(e.to_string()))
            }
        }
    });
    if let Some(f) = failure {
        return Err((f, done.stats));
    }
    if let Err(e) = result {
        // Errors of the archive itself name it; a read error may not.
        let message = match DecompressError::of(&e) {
            Some(d) => d.to_string(),
            None => format!("{}: {e}", opened.object),
        };
        return Err((message, done.stats));
    }
    done.stats.bytes = opened.size;
    Ok(done)
}

/// Why a file failed (the message names it), and the accounting of its rows before the
/// failure.
type Failed = (String, Stats);

/// Groups of records applied concurrently (each a validating walk, regrouping into packs, and
/// one store write).
const AGGREGATORS: usize = 2;
/// Most bytes of records gathered into one store write.
const GROUP_BYTES: usize = 4 << 20;

/// What one aggregated record contributed to the summary.
struct Tally {
    records: u64,
    quarantined: u64,
    series: HashSet<SeriesId>,
    days: HashSet<Day>,
    error: Option<meterflow_store::StoreError>,
}

/// Applies a group of records, as the aggregator Lambda applies a batch.
async fn aggregate<S: Store + 'static>(store: Arc<S>, records: Vec<StreamRecord>) -> Tally {
    let mut series = HashSet::new();
    let mut days = HashSet::new();
    // Fragments come in runs of one series and consecutive days: only look up changes.
    let (mut last_series, mut last_day) = (None::<SeriesId>, None::<Day>);
    let data: Vec<&[u8]> = records.iter().map(|r| r.data.as_slice()).collect();
    let out = apply(store.as_ref(), &data, |f| {
        if last_series.as_ref() != Some(f.series) {
            series.insert(f.series.clone());
            last_series = Some(f.series.clone());
        }
        if last_day != Some(f.day) {
            days.insert(f.day);
            last_day = Some(f.day);
        }
    })
    .await;
    Tally {
        records: records.len() as u64,
        quarantined: out.quarantined.len() as u64,
        series,
        days,
        error: out.failed.map(|(_, e)| e),
    }
}

/// What the aggregator made of the records.
#[derive(Default)]
struct Aggregated {
    records: u64,
    quarantined: u64,
    series: HashSet<SeriesId>,
    days: HashSet<Day>,
}

/// Adds a group's tally; returns its store error, if any.
fn absorb(tally: Tally, done: &mut Aggregated) -> Option<meterflow_store::StoreError> {
    done.records += tally.records;
    done.quarantined += tally.quarantined;
    done.series.extend(tally.series);
    done.days.extend(tally.days);
    tally.error
}

/// Aggregates every record received into `store`, until the channel closes or a write fails.
/// A couple of groups in flight let one decode while the store writes the previous one; order
/// does not matter (merge rule).
async fn store_all<S: Store + 'static>(
    store: Arc<S>,
    mut rx: mpsc::Receiver<StreamRecord>,
) -> Result<Aggregated> {
    let mut done = Aggregated::default();
    let mut store_error = None;
    let mut in_flight = tokio::task::JoinSet::new();
    while let Some(record) = rx.recv().await {
        while in_flight.len() >= AGGREGATORS {
            if let Some(tally) = in_flight.join_next().await {
                let tally = tally.map_err(|e| anyhow::anyhow!("an aggregator task failed: {e}"))?;
                store_error = store_error.or(absorb(tally, &mut done));
            }
        }
        if store_error.is_some() {
            break;
        }
        // Whatever else is already waiting joins this write (one transaction for SQLite):
        // groups grow exactly when the store falls behind.
        let mut group = vec![record];
        let mut bytes = group[0].data.len();
        while bytes < GROUP_BYTES {
            let Ok(next) = rx.try_recv() else { break };
            bytes += next.data.len();
            group.push(next);
        }
        in_flight.spawn(aggregate(store.clone(), group));
    }
    // Closed now, so parsers blocked on a full channel see it at once.
    drop(rx);
    while let Some(tally) = in_flight.join_next().await {
        let tally = tally.map_err(|e| anyhow::anyhow!("an aggregator task failed: {e}"))?;
        store_error = store_error.or(absorb(tally, &mut done));
    }
    match store_error {
        Some(e) => Err(anyhow::anyhow!("writing to the store failed: {e}")),
        None => Ok(done),
    }
}

/// What each parser thread did: per file, what it did or why it could not be read.
type ParserResults = Vec<Result<FileDone, Failed>>;

/// One parser thread: takes inputs from the shared queue until it is empty or the records'
/// consumer has stopped.
fn parse_inputs(
    queue: &Mutex<VecDeque<Input>>,
    tx: &mpsc::Sender<StreamRecord>,
    rejects: &Mutex<RejectLog>,
    halt: &Arc<AtomicBool>,
    counter: &Arc<AtomicU64>,
    cfg: &IngestConfig,
    packing: PackSettings,
) -> ParserResults {
    let mut results = Vec::new();
    while !halt.load(Ordering::Relaxed) {
        let Some(input) = queue.lock().unwrap_or_else(|p| p.into_inner()).pop_front() else {
            break;
        };
        let mut out = LocalOutput {
            tx,
            rejects,
            write_error: None,
            halt,
        };
        let r = ingest_input(&input, cfg, packing, &mut out, counter);
        if let Some(e) = out.write_error {
            results.push(Err((
                format!("{input}: cannot write the rejects report: {e}"),
                Stats::default(),
            )));
            break;
        }
        results.push(r);
    }
    results
}

/// Runs the pipeline over `inputs` into `sink`.
pub async fn run<S: Store + 'static>(
    sink: Sink<S>,
    inputs: Vec<Input>,
    cfg: IngestConfig,
) -> Result<Summary> {
    let started = Instant::now();
    let rejects = RejectLog {
        file: match &cfg.rejects {
            Some(p) => {
                let mut f = io::BufWriter::new(File::create(p).with_context(|| {
                    format!("cannot create the rejects report {}", p.display())
                })?);
                Reject::write_csv_header(&mut f)?;
                Some(f)
            }
            None => None,
        },
        count: 0,
        sample: Vec::new(),
    };
    let rejects = Arc::new(Mutex::new(rejects));
    let (tx, rx) = mpsc::channel::<StreamRecord>(STREAM_CAPACITY);
    let counter = Arc::new(AtomicU64::new(0));
    let halt = Arc::new(AtomicBool::new(false));
    let total_files = inputs.len() as u64;
    let queue = Arc::new(Mutex::new(inputs.into_iter().collect::<VecDeque<_>>()));
    let cfg = Arc::new(cfg);
    let packing = sink.packing();

    // Parsers: one OS thread per job, pulling inputs from a shared queue.
    let mut workers = Vec::new();
    for _ in 0..cfg.jobs.max(1) {
        let (queue, tx, rejects, halt, counter, cfg) = (
            queue.clone(),
            tx.clone(),
            rejects.clone(),
            halt.clone(),
            counter.clone(),
            cfg.clone(),
        );
        workers.push(std::thread::spawn(move || {
            parse_inputs(&queue, &tx, &rejects, &halt, &counter, &cfg, packing)
        }));
    }
    drop(tx);

    let progress = cfg
        .progress
        .then(|| crate::progress::Progress::start(counter.clone()));

    // The consumer: the aggregator library as in the Lambda, or the Lambda's Kinesis shipper.
    let consumed = match &sink {
        Sink::Store(store) => store_all(store.clone(), rx).await.map(|a| (a, None)),
        Sink::Stream(stream) => stream.ship(rx).await.map(|p| {
            let a = Aggregated {
                records: p.report.records,
                ..Aggregated::default()
            };
            (a, Some(p))
        }),
    };
    if consumed.is_err() {
        halt.store(true, Ordering::Relaxed);
    }
    let mut summary = Summary {
        files: total_files,
        ..Summary::default()
    };
    let mut stats = Stats::default();
    for w in workers {
        let results = w
            .join()
            .map_err(|_| anyhow::anyhow!("a parser thread panicked"))?;
        for r in results {
            match r {
                Ok(done) => {
                    stats.add(&done.stats);
                    summary.inputs += done.inputs;
                    summary.inputs_failed += done.failed_entries.len() as u64;
                    summary.failures.extend(done.failed_entries);
                }
                Err((e, before)) => {
                    summary.files_failed += 1;
                    stats.add(&before);
                    summary.rows_before_failures += before.rows_read;
                    let stored = match before.rows_read {
                        0 => String::new(),
                        n => format!(" ({n} rows before the failure were read and are counted)"),
                    };
                    summary.failures.push(format!("{e}{stored}"));
                }
            }
        }
    }
    if let Some(p) = progress {
        p.stop();
    }
    let (aggregated, put) = consumed?;
    let mut log = rejects.lock().unwrap_or_else(|p| p.into_inner());
    if let Some(f) = &mut log.file {
        f.flush().context("cannot write the rejects report")?;
    }
    summary.rows_read = stats.rows_read;
    summary.rows_accepted = stats.rows_accepted;
    summary.rows_rejected = stats.rows_rejected;
    summary.records_rejected = stats.records_rejected;
    summary.warnings = stats.warnings;
    summary.fragments = stats.fragments;
    summary.records = aggregated.records;
    summary.records_quarantined = aggregated.quarantined;
    summary.series = aggregated.series.len() as u64;
    summary.days = aggregated.days.len() as u64;
    summary.put = put;
    summary.bytes = counter.load(Ordering::Relaxed);
    summary.seconds = started.elapsed().as_secs_f64();
    summary.mb_per_s = if summary.seconds > 0.0 {
        summary.bytes as f64 / 1e6 / summary.seconds
    } else {
        0.0
    };
    summary.sample_rejects = std::mem::take(&mut log.sample);
    Ok(summary)
}

impl Summary {
    /// Whether something could not be read (a file, an archive entry, a directory): exit 1.
    pub fn failed(&self) -> bool {
        self.files_failed + self.inputs_failed + self.dirs_failed > 0
    }

    /// Lines of the rejects report: rejected rows, refused records, warnings.
    pub fn reported(&self) -> u64 {
        self.rows_rejected + self.records_rejected + self.warnings
    }

    /// The human summary (stderr for `ingest`, keeping stdout for `--json`; stdout for the demo).
    pub fn print_text(&self, err: &mut dyn Write, rejects_report: Option<&Path>) {
        // With --stream the series and days are the aggregator Lambda's to count.
        let spread = match self.put {
            None => format!(" for {} series over {} days", self.series, self.days),
            Some(_) => String::new(),
        };
        let _ = writeln!(
            err,
            "{} files ({} inputs), {} rows read: {} accepted, {} rejected; {} fragments{spread}; {:.1} MB in {:.2}s ({:.0} MB/s)",
            self.files, self.inputs, self.rows_read, self.rows_accepted, self.rows_rejected, self.fragments,
            self.bytes as f64 / 1e6, self.seconds, self.mb_per_s
        );
        if let Some(p) = &self.put {
            let _ = writeln!(
                err,
                "{} records ({:.1} MB, {} fragments) put on {} in {} PutRecords calls; {} entries retried, {} calls throttled",
                p.report.records,
                p.report.bytes as f64 / 1e6,
                p.report.fragments,
                p.stream,
                p.report.calls,
                p.report.retried_entries,
                p.report.throttled_calls
            );
        }
        if self.records_rejected > 0 || self.warnings > 0 {
            let _ = writeln!(
                err,
                "{} records that are not rows refused, {} warnings",
                self.records_rejected, self.warnings
            );
        }
        if self.reported() > 0 {
            match rejects_report {
                Some(p) => {
                    let _ = writeln!(
                        err,
                        "rejected rows, refused records and warnings are listed in {}",
                        p.display()
                    );
                }
                None => {
                    for r in &self.sample_rejects {
                        let _ = writeln!(err, "  rejected {r}");
                    }
                    let _ = writeln!(
                        err,
                        "pass --rejects FILE for a CSV report of every rejected row"
                    );
                }
            }
        }
        if self.records_quarantined > 0 {
            let _ = writeln!(
                err,
                "{} stream records could not be decoded and were quarantined",
                self.records_quarantined
            );
        }
        let mut reasons: Vec<SkipReason> = Vec::new();
        for s in &self.skipped {
            if !reasons.contains(&s.reason) {
                reasons.push(s.reason);
            }
        }
        for reason in reasons {
            let mut these = self.skipped.iter().filter(|s| s.reason == reason);
            let n = these.clone().count();
            let example = these.next().map_or("", |s| s.path.as_str());
            let _ = writeln!(err, "{n} paths {}, e.g. {example}", reason.describe());
        }
        for f in &self.failures {
            let _ = writeln!(err, "error: {f}");
        }
        if self.rows_before_failures > 0 {
            // A file streams into the store as it is read, so one that fails part-way is
            // partly stored: the rows before the failure, which the counts above include.
            let _ = writeln!(
                err,
                "the rows of a failed file before its failure are stored (and counted above): fix the file and ingest it again, which completes it without adding anything twice"
            );
        }
    }
}

#[cfg(test)]
mod tests {
    use std::process::Command;
    use std::time::Duration;

    use meterflow_core::synth::Spec;
    use meterflow_core::{Format, Fragment};
    use meterflow_store::StoreError;

    use super::*;

    /// A store whose every write fails.
    struct Broken;

    impl Store for Broken {
        async fn put(&self, _: Vec<Fragment>) -> Result<(), StoreError> {
            Err(StoreError::Permanent("the disk is full".into()))
        }

        async fn fragments(
            &self,
            _: &SeriesId,
            _: Day,
            _: Day,
        ) -> Result<Vec<Fragment>, StoreError> {
            Ok(Vec::new())
        }
    }

    /// The input is a FIFO fed rows for ever: only parsers that stop reading once the store
    /// has failed let the feeder see a closed pipe and the run end.
    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn a_failed_store_stops_the_parsers_mid_input() {
        let dir = tempfile::tempdir().unwrap();
        let fifo = dir.path().join("endless.csv");
        assert!(Command::new("mkfifo")
            .arg(&fifo)
            .status()
            .unwrap()
            .success());
        let csv = Spec::new(50, 20).generate(Format::Wide).unwrap();
        let split = csv.iter().position(|&b| b == b'\n').unwrap() + 1;
        let feeder = std::thread::spawn({
            let fifo = fifo.clone();
            move || {
                let mut f = File::options().write(true).open(&fifo).unwrap();
                let mut written = f.write_all(&csv[..split]).map(|()| split);
                while let Ok(n) = written {
                    written = f.write_all(&csv[split..]).map(|()| n + csv.len() - split);
                }
                written.unwrap_err()
            }
        });
        let cfg = IngestConfig {
            rejects: None,
            jobs: 1,
            timestamps: TimestampLabel::Auto,
            long_interval_minutes: 30,
            limits: Limits::default(),
            progress: false,
            s3: None,
        };
        let run = run(Sink::Store(Arc::new(Broken)), vec![Input::File(fifo)], cfg);
        let e = tokio::time::timeout(Duration::from_secs(120), run)
            .await
            .expect("the parser stopped")
            .unwrap_err();
        assert!(
            e.to_string().contains("writing to the store failed"),
            "{e:#}"
        );
        assert!(format!("{e:#}").contains("the disk is full"), "{e:#}");
        let closed = feeder.join().unwrap();
        assert_eq!(closed.kind(), io::ErrorKind::BrokenPipe);
    }
}
