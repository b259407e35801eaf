//! `meterflow ingest`: files → splitter → bounded in-process stream → aggregator → store.
//!
//! The same pieces as on AWS: the splitter library packs envelope records exactly as the
//! splitter Lambda does, the records cross a bounded channel (the in-process Kinesis, whose
//! bound is the backpressure: parsers block when the store falls behind), and the aggregator
//! library writes them as the aggregator Lambda does.

use std::collections::{HashSet, VecDeque};
use std::fs::File;
use std::io::{self, Read, Write};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Instant, UNIX_EPOCH};

use anyhow::{Context, Result};
use meterflow_aggregator::apply;
use meterflow_core::decompress::{for_each_input, Limits};
use meterflow_core::{Day, Options, Reject, SeriesId, Stats, TimestampLabel};
use meterflow_splitter::{split, Output, PackSettings, StreamRecord};
use meterflow_store::Store;
use serde::Serialize;

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
/// Extensions picked up when walking a directory (files named on the command line are always read).
const DATA_EXTENSIONS: &[&str] = &["csv", "txt", "dat", "gz", "zip", "nem12", "mdff"];

pub struct IngestConfig {
    pub rejects: Option<PathBuf>,
    pub jobs: usize,
    pub timestamps: TimestampLabel,
    pub long_interval_minutes: u16,
    pub limits: Limits,
    pub progress: bool,
}

/// The run's accounting, printed as text or JSON.
#[derive(Debug, Default, Serialize)]
pub struct Summary {
    pub files: u64,
    pub files_failed: u64,
    pub inputs: u64,
    pub rows_read: u64,
    pub rows_accepted: u64,
    pub rows_rejected: u64,
    pub fragments: u64,
    pub records: u64,
    pub records_quarantined: u64,
    pub series: u64,
    pub days: u64,
    pub bytes: u64,
    pub seconds: f64,
    pub mb_per_s: f64,
    /// `file: reason` for each file that could not be read at all.
    pub failures: Vec<String>,
    /// Files found in directories but not read, for their extension (not a meter-data file
    /// name: csv, txt, dat, gz, zip, nem12, mdff). Name such a file explicitly to read it.
    pub skipped: Vec<String>,
    /// The first rejects, for the console when no `--rejects` report was asked for.
    #[serde(skip)]
    pub sample_rejects: Vec<Reject>,
}

/// Files to read (named files as given, directories walked recursively in name order) and
/// the files a walk passed over for their extension, which the summary lists.
pub fn expand(paths: &[PathBuf]) -> Result<(Vec<PathBuf>, Vec<PathBuf>)> {
    fn walk(dir: &Path, out: &mut Vec<PathBuf>, skipped: &mut Vec<PathBuf>) -> Result<()> {
        let mut entries: Vec<_> = std::fs::read_dir(dir)
            .with_context(|| format!("cannot list directory {}", dir.display()))?
            .collect::<io::Result<_>>()
            .with_context(|| format!("cannot list directory {}", dir.display()))?;
        entries.sort_by_key(|e| e.file_name());
        for e in entries {
            let p = e.path();
            if p.is_dir() {
                walk(&p, out, skipped)?;
            } else {
                let ext = p
                    .extension()
                    .and_then(|x| x.to_str())
                    .unwrap_or("")
                    .to_ascii_lowercase();
                if DATA_EXTENSIONS.contains(&ext.as_str()) {
                    out.push(p);
                } else {
                    skipped.push(p);
                }
            }
        }
        Ok(())
    }
    let (mut out, mut skipped) = (Vec::new(), Vec::new());
    for p in paths {
        let meta = std::fs::metadata(p).with_context(|| format!("cannot read {}", p.display()))?;
        if meta.is_dir() {
            walk(p, &mut out, &mut skipped)?;
        } else {
            out.push(p.clone());
        }
    }
    Ok((out, skipped))
}

/// Writes the rejects report as CSV: `file,line,column,reason`.
struct RejectLog {
    file: Option<io::BufWriter<File>>,
    count: u64,
    sample: Vec<Reject>,
}

fn csv_field(s: &str) -> String {
    if s.contains([',', '"', '\n', '\r']) {
        format!("\"{}\"", s.replace('"', "\"\""))
    } else {
        s.to_string()
    }
}

impl RejectLog {
    fn add(&mut self, r: Reject) -> io::Result<()> {
        self.count += 1;
        if let Some(f) = &mut self.file {
            let column = r.column.map(|c| c.to_string()).unwrap_or_default();
            writeln!(
                f,
                "{},{},{},{}",
                csv_field(&r.source),
                r.line,
                column,
                csv_field(&r.reason)
            )?;
        }
        if self.sample.len() < 10 {
            self.sample.push(r);
        }
        Ok(())
    }
}

/// The splitter's output in local mode: records onto the channel, rejects into the log.
struct LocalOutput<'a> {
    tx: &'a tokio::sync::mpsc::Sender<StreamRecord>,
    rejects: &'a Mutex<RejectLog>,
    write_error: Option<io::Error>,
    closed: bool,
}

impl Output for LocalOutput<'_> {
    fn record(&mut self, record: StreamRecord) {
        // Blocking send is the backpressure; it fails only if the aggregator has stopped,
        // which the caller reports from the aggregator's side.
        if self.tx.blocking_send(record).is_err() {
            self.closed = true;
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

fn version_of(meta: &std::fs::Metadata) -> i64 {
    meta.modified()
        .ok()
        .and_then(|t| t.duration_since(UNIX_EPOCH).ok())
        .map_or(0, |d| d.as_millis() as i64)
}

/// Parses one file (each input of an archive) into the channel.
fn ingest_file(
    path: &Path,
    cfg: &IngestConfig,
    out: &mut LocalOutput<'_>,
    counter: &Arc<AtomicU64>,
) -> Result<(Stats, u64), String> {
    let file = File::open(path).map_err(|e| format!("cannot open: {e}"))?;
    let meta = file.metadata().map_err(|e| format!("cannot stat: {e}"))?;
    let version = version_of(&meta);
    // A canonical path names the input the same way however it was spelled.
    let name = std::fs::canonicalize(path)
        .unwrap_or_else(|_| path.to_path_buf())
        .display()
        .to_string();
    let reader = Counting {
        inner: file,
        counter: counter.clone(),
    };
    let mut stats = Stats::default();
    let mut inputs = 0;
    let mut failure: Option<String> = None;
    let result = for_each_input(reader, &name, cfg.limits, |input, r| {
        let mut opts = Options::new(input, version);
        opts.timestamps = cfg.timestamps;
        opts.long_interval_minutes = cfg.long_interval_minutes;
        inputs += 1;
        match split(r, opts, LOCAL_PACKING, out) {
            Ok(s) => {
                stats.add(&s);
                Ok(())
            }
            Err(e) => {
                failure = Some(e.to_string());
                Err(io::Error::other(e.to_string()))
            }
        }
    });
    if let Some(f) = failure {
        return Err(f);
    }
    result.map_err(|e| e.to_string())?;
    stats.bytes = meta.len();
    Ok((stats, inputs))
}

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

/// Runs the pipeline over `files` into `store`.
pub async fn run<S: Store + 'static>(
    store: Arc<S>,
    files: Vec<PathBuf>,
    cfg: IngestConfig,
) -> Result<Summary> {
    let started = Instant::now();
    let rejects = RejectLog {
        file: match &cfg.rejects {
            Some(p) => {
                let mut f = io::BufWriter::new(File::create(p).with_context(|| {
                    format!("cannot create the rejects report {}", p.display())
                })?);
                writeln!(f, "file,line,column,reason")?;
                Some(f)
            }
            None => None,
        },
        count: 0,
        sample: Vec::new(),
    };
    let rejects = Arc::new(Mutex::new(rejects));
    let (tx, mut rx) = tokio::sync::mpsc::channel::<StreamRecord>(STREAM_CAPACITY);
    let counter = Arc::new(AtomicU64::new(0));
    let total_files = files.len() as u64;
    let queue = Arc::new(Mutex::new(files.into_iter().collect::<VecDeque<_>>()));
    let cfg = Arc::new(cfg);

    // Parsers: one OS thread per job, pulling files from a shared queue.
    let mut workers = Vec::new();
    for _ in 0..cfg.jobs.max(1) {
        let (queue, tx, rejects, counter, cfg) = (
            queue.clone(),
            tx.clone(),
            rejects.clone(),
            counter.clone(),
            cfg.clone(),
        );
        workers.push(std::thread::spawn(move || {
            let mut results = Vec::new();
            loop {
                let Some(path) = queue.lock().unwrap_or_else(|p| p.into_inner()).pop_front() else {
                    break;
                };
                let mut out = LocalOutput {
                    tx: &tx,
                    rejects: &rejects,
                    write_error: None,
                    closed: false,
                };
                let r = ingest_file(&path, &cfg, &mut out, &counter);
                if let Some(e) = out.write_error {
                    results.push((path, Err(format!("cannot write the rejects report: {e}"))));
                    break;
                }
                results.push((path, r));
                if out.closed {
                    break;
                }
            }
            results
        }));
    }
    drop(tx);

    let progress = cfg
        .progress
        .then(|| crate::progress::Progress::start(counter.clone()));

    // The aggregator: the same library as the Lambda. A couple of records in flight let one
    // decode while the store writes the previous one; order does not matter (merge rule).
    let mut summary = Summary {
        files: total_files,
        ..Summary::default()
    };
    let mut series: HashSet<SeriesId> = HashSet::new();
    let mut days: HashSet<Day> = HashSet::new();
    let mut store_error = None;
    let mut in_flight = tokio::task::JoinSet::new();
    let mut absorb = |done: Tally, summary: &mut Summary| {
        summary.records += done.records;
        summary.records_quarantined += done.quarantined;
        series.extend(done.series);
        days.extend(done.days);
        done.error
    };
    while let Some(record) = rx.recv().await {
        while in_flight.len() >= AGGREGATORS {
            if let Some(done) = in_flight.join_next().await {
                let done = done.map_err(|e| anyhow::anyhow!("an aggregator task failed: {e}"))?;
                store_error = store_error.or(absorb(done, &mut summary));
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
    while let Some(done) = in_flight.join_next().await {
        let done = done.map_err(|e| anyhow::anyhow!("an aggregator task failed: {e}"))?;
        store_error = store_error.or(absorb(done, &mut summary));
    }
    drop(rx);
    let mut stats = Stats::default();
    for w in workers {
        let results = w
            .join()
            .map_err(|_| anyhow::anyhow!("a parser thread panicked"))?;
        for (path, r) in results {
            match r {
                Ok((s, inputs)) => {
                    stats.add(&s);
                    summary.inputs += inputs;
                }
                Err(e) => {
                    summary.files_failed += 1;
                    summary.failures.push(format!("{}: {e}", path.display()));
                }
            }
        }
    }
    if let Some(p) = progress {
        p.stop();
    }
    if let Some(e) = store_error {
        return Err(anyhow::anyhow!("writing to the store failed: {e}"));
    }
    let mut log = rejects.lock().unwrap_or_else(|p| p.into_inner());
    if let Some(f) = &mut log.file {
        f.flush().context("cannot write the rejects report")?;
    }
    summary.rows_read = stats.rows_read;
    summary.rows_accepted = stats.rows_accepted;
    summary.rows_rejected = stats.rows_rejected;
    summary.fragments = stats.fragments;
    summary.bytes = counter.load(Ordering::Relaxed);
    summary.series = series.len() as u64;
    summary.days = days.len() as u64;
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
    /// The human summary (stderr for `ingest`, keeping stdout for `--json`; stdout for the demo).
    pub fn print_text(&self, err: &mut dyn Write, rejects_report: Option<&Path>) {
        let _ = writeln!(
            err,
            "{} files ({} inputs), {} rows read: {} accepted, {} rejected; {} fragments for {} series over {} days; {:.1} MB in {:.2}s ({:.0} MB/s)",
            self.files, self.inputs, self.rows_read, self.rows_accepted, self.rows_rejected, self.fragments, self.series, self.days,
            self.bytes as f64 / 1e6, self.seconds, self.mb_per_s
        );
        if self.rows_rejected > 0 {
            match rejects_report {
                Some(p) => {
                    let _ = writeln!(err, "rejected rows are listed in {}", p.display());
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
        if !self.skipped.is_empty() {
            let _ = writeln!(
                err,
                "{} files in the directories were not read for their extension (name them to read them), e.g. {}",
                self.skipped.len(),
                self.skipped[0]
            );
        }
        for f in &self.failures {
            let _ = writeln!(err, "error: {f}");
        }
    }
}
