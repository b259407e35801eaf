//! `meterflow ingest`: files and S3 objects → splitter → bounded in-process stream →
//! aggregator → store, or → a Kinesis stream for the aggregator Lambda.
//!
//! The same pieces as on AWS: the splitter library packs envelope records exactly as the
//! splitter Lambda does, the records cross a bounded channel (the in-process Kinesis, whose
//! bound is the backpressure: parsers block when the store falls behind), and the aggregator
//! library writes them as the aggregator Lambda does. When the store or the stream fails, the
//! parsers stop at their next read instead of parsing the rest of their files for nothing.

use std::fs::File;
use std::io::{self, Write};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Instant;

use anyhow::{Context, Result};
use meterflow_aggregator::drain::{store_all, Drained};
use meterflow_core::decompress::Limits;
use meterflow_core::envelope::StreamRecord;
use meterflow_core::{Reject, RejectKind, Stats, TimestampLabel};
use meterflow_splitter::files;
use meterflow_splitter::object::SplitSettings;
use meterflow_splitter::PackSettings;
use meterflow_store::Store;
use serde::Serialize;
use tokio::sync::mpsc;

use crate::inputs::{Found, Input, SkipReason, Skipped};
use crate::kinesis_destination::{KinesisDestination, PutSummary};
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
    /// Large local files are cut in pieces of this size (see `SplitSettings::piece_bytes`).
    pub piece_bytes: Option<u64>,
    /// Where `s3://` inputs are read from (`None` when there are none).
    pub s3: Option<Arc<S3Inputs>>,
}

impl IngestConfig {
    /// Local files on `jobs` threads, with every setting at its default and no report.
    pub fn local(jobs: usize) -> IngestConfig {
        IngestConfig {
            rejects: None,
            jobs,
            timestamps: TimestampLabel::Auto,
            long_interval_minutes: 30,
            limits: Limits::default(),
            progress: false,
            piece_bytes: SplitSettings::default().piece_bytes,
            s3: None,
        }
    }
}

/// Where the records go.
pub enum Destination<S> {
    /// Aggregated here, into a store.
    Store(Arc<S>),
    /// Put on a Kinesis stream, for the aggregator Lambda.
    Stream(KinesisDestination),
}

impl<S> Destination<S> {
    fn packing(&self) -> PackSettings {
        match self {
            Destination::Store(_) => LOCAL_PACKING,
            Destination::Stream(_) => crate::kinesis_destination::packing(),
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
    /// Rows read, accepted and rejected, refused records, warnings and fragments (flat in
    /// the JSON; see [`Stats`]): each rejected row, refused record and warning is a line of
    /// the rejects report.
    #[serde(flatten)]
    pub stats: Stats,
    pub records: u64,
    pub records_quarantined: u64,
    pub series: u64,
    pub days: u64,
    pub bytes: u64,
    pub seconds: f64,
    pub mb_per_s: f64,
    /// Directories that could not be listed (or entries of them that could not be read):
    /// each fails alone, as a file does; they are in `failures`.
    pub dirs_failed: u64,
    /// Why each file, archive entry or directory that could not be read failed (each message
    /// names it); each is also a `file` line of the rejects report.
    pub failures: Vec<String>,
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

/// The rejects report (CSV `file,line,column,kind,reason`), shared by the splitting threads.
struct RejectLog {
    file: Option<io::BufWriter<File>>,
    sample: Vec<Reject>,
    /// The first write that failed: the run fails with it (a report missing lines would lie).
    error: Option<io::Error>,
}

impl RejectLog {
    fn add(&mut self, r: Reject) {
        if let Some(f) = &mut self.file {
            if let Err(e) = r.write_csv(f) {
                self.error.get_or_insert(e);
            }
        }
        if self.sample.len() < 10 {
            self.sample.push(r);
        }
    }

    /// A `file` line for an input or directory that failed as a whole.
    fn failure(&mut self, source: &str, message: &str) {
        self.add(Reject {
            source: source.into(),
            line: 0,
            column: None,
            kind: RejectKind::File,
            reason: message.to_owned(),
        });
    }
}

/// What the consumer of the records made of them.
type Consumed = (Drained, Option<PutSummary>);

/// Runs the pipeline over what `found` names into `destination`.
pub async fn run<S: Store + 'static>(
    destination: Destination<S>,
    found: Found,
    cfg: IngestConfig,
) -> Result<Summary> {
    let started = Instant::now();
    let file = match &cfg.rejects {
        Some(p) => {
            let mut f =
                io::BufWriter::new(File::create(p).with_context(|| {
                    format!("cannot create the rejects report {}", p.display())
                })?);
            Reject::write_csv_header(&mut f)?;
            Some(f)
        }
        None => None,
    };
    let log = Arc::new(Mutex::new(RejectLog {
        file,
        sample: Vec::new(),
        error: None,
    }));
    {
        let mut l = log.lock().unwrap_or_else(|p| p.into_inner());
        for (path, message) in &found.failures {
            l.failure(path, message);
        }
    }
    let (tx, rx) = mpsc::channel::<StreamRecord>(STREAM_CAPACITY);
    let read = Arc::new(AtomicU64::new(0));
    let halt = Arc::new(AtomicBool::new(false));
    let total_bytes = found.bytes;
    let mut summary = Summary {
        files: found.inputs.len() as u64,
        skipped: found.skipped,
        dirs_failed: found.failures.len() as u64,
        failures: found.failures.into_iter().map(|(_, m)| m).collect(),
        ..Summary::default()
    };
    let settings = SplitSettings {
        pack: destination.packing(),
        limits: cfg.limits,
        timestamps: cfg.timestamps,
        long_interval_minutes: cfg.long_interval_minutes,
        piece_bytes: cfg.piece_bytes,
    };
    let inputs: Vec<Opening> = found
        .inputs
        .into_iter()
        .map(|input| Opening {
            input,
            s3: cfg.s3.clone(),
        })
        .collect();
    let rejects = Arc::clone(&log);
    let workers = files::spawn(
        inputs,
        cfg.jobs,
        settings,
        files::Channels {
            records: tx,
            halt: Arc::clone(&halt),
            read: Arc::clone(&read),
            rejects: Arc::new(move |r| rejects.lock().unwrap_or_else(|p| p.into_inner()).add(r)),
        },
    );
    let bars = crate::progress::Bars::new(cfg.progress);
    let ticker = bars.bytes(total_bytes, Arc::clone(&read));

    // The consumer: the aggregator library as in the Lambda, or the Lambda's Kinesis shipper.
    let consumed: Result<Consumed> = match &destination {
        Destination::Store(store) => store_all(Arc::clone(store), rx)
            .await
            .map(|d| (d, None))
            .map_err(anyhow::Error::from),
        Destination::Stream(stream) => stream.ship(rx).await.map(|p| {
            let d = Drained {
                records: p.report.records,
                ..Drained::default()
            };
            (d, Some(p))
        }),
    };
    if consumed.is_err() {
        halt.store(true, Ordering::Relaxed);
    }
    let outcomes = tokio::task::spawn_blocking(move || workers.join())
        .await
        .map_err(|e| anyhow::anyhow!("waiting for the splitting threads: {e}"))??;
    ticker.stop();
    let mut stats = Stats::default();
    let mut log_guard = log.lock().unwrap_or_else(|p| p.into_inner());
    for outcome in outcomes {
        let done = match outcome.result {
            Ok(done) => done,
            Err(failure) => {
                summary.files_failed += 1;
                summary.rows_before_failures += failure.done.stats.rows_read;
                let stored = match failure.done.stats.rows_read {
                    0 => String::new(),
                    n => format!(" ({n} rows before the failure were read and are counted)"),
                };
                log_guard.failure(&outcome.input, &failure.message);
                summary
                    .failures
                    .push(format!("{}{stored}", failure.message));
                *failure.done
            }
        };
        stats.add(&done.stats);
        summary.inputs += done.inputs;
        summary.inputs_failed += done.failed_entries.len() as u64;
        for entry in done.failed_entries {
            summary.failures.push(entry.reason.clone());
            log_guard.add(entry);
        }
    }
    let (drained, put) = consumed?;
    if let Some(f) = &mut log_guard.file {
        if let Err(e) = f.flush() {
            log_guard.error.get_or_insert(e);
        }
    }
    if let Some(e) = log_guard.error.take() {
        anyhow::bail!("cannot write the rejects report: {e}");
    }
    summary.stats = stats;
    summary.records = drained.records;
    summary.records_quarantined = drained.quarantined;
    summary.series = drained.series.len() as u64;
    summary.days = drained.days.len() as u64;
    summary.put = put;
    summary.bytes = read.load(Ordering::Relaxed);
    summary.seconds = started.elapsed().as_secs_f64();
    summary.mb_per_s = if summary.seconds > 0.0 {
        summary.bytes as f64 / 1e6 / summary.seconds
    } else {
        0.0
    };
    summary.sample_rejects = std::mem::take(&mut log_guard.sample);
    Ok(summary)
}

/// An input and the S3 client an `s3://` one is read with, as the splitting threads open it.
struct Opening {
    input: Input,
    s3: Option<Arc<S3Inputs>>,
}

impl std::fmt::Display for Opening {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        self.input.fmt(f)
    }
}

impl files::Openable for Opening {
    fn open(&self) -> Result<files::Opened, String> {
        self.input.open(self.s3.as_deref())
    }

    fn seekable_len(&self) -> Option<u64> {
        match &self.input {
            Input::File(p) => std::fs::metadata(p)
                .ok()
                .filter(|m| m.is_file())
                .map(|m| m.len()),
            Input::S3 { .. } => None,
        }
    }

    fn open_at(&self, offset: u64) -> Option<std::io::Result<Box<dyn std::io::Read + Send>>> {
        match &self.input {
            Input::File(p) => Some(files::open_file_at(p, offset)),
            Input::S3 { .. } => None,
        }
    }
}

impl Summary {
    /// Whether something could not be read (a file, an archive entry, a directory): exit 1.
    pub fn failed(&self) -> bool {
        self.files_failed + self.inputs_failed + self.dirs_failed > 0
    }

    /// Lines of the rejects report: rejected rows, refused records, warnings, failures.
    pub fn reported(&self) -> u64 {
        self.stats.reported() + self.failures.len() as u64
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
            self.files, self.inputs, self.stats.rows_read, self.stats.rows_accepted, self.stats.rows_rejected, self.stats.fragments,
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
        if self.stats.records_rejected > 0 || self.stats.warnings > 0 {
            let _ = writeln!(
                err,
                "{} records that are not rows refused, {} warnings",
                self.stats.records_rejected, self.stats.warnings
            );
        }
        if self.reported() > 0 {
            match rejects_report {
                Some(p) => {
                    let _ = writeln!(
                        err,
                        "rejected rows, refused records, warnings and failures are listed in {}",
                        p.display()
                    );
                }
                None => {
                    // (Failures are printed below, as errors.)
                    let rows = self
                        .sample_rejects
                        .iter()
                        .filter(|r| r.kind != RejectKind::File);
                    for r in rows {
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
    use meterflow_core::{Day, Format, Fragment, SeriesId};
    use meterflow_store::StoreError;

    use super::*;

    /// A store whose every write fails.
    struct Broken;

    impl Store for Broken {
        async fn put(&self, _: Vec<Fragment>) -> Result<(), StoreError> {
            Err(StoreError::refused("the disk is full"))
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
        let cfg = IngestConfig::local(1);
        let found = Found {
            inputs: vec![Input::File(fifo)],
            ..Found::default()
        };
        let run = run(Destination::Store(Arc::new(Broken)), found, cfg);
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
