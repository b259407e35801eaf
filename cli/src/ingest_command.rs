//! `meterflow ingest` and `meterflow reprocess`: their arguments and wiring (which inputs,
//! which destination, which settings). `reprocess` is `ingest` of `s3://` prefixes only: the
//! objects are named and versioned as the splitter Lambda names them, so a reprocessed object
//! writes the keys its first pass wrote, and lands once.

use std::io::IsTerminal;
use std::path::PathBuf;
use std::process::ExitCode;
use std::sync::Arc;

use anyhow::Result;
use clap::ValueEnum;
use meterflow_core::decompress::Limits;
use meterflow_core::TimestampLabel;
use meterflow_store_cql::AnyStore;

use crate::ingest::{self, Destination, IngestConfig};
use crate::kinesis_destination::KinesisDestination;

#[derive(Clone, Copy, ValueEnum)]
enum Labels {
    /// From the header (`interval_start`/`interval_end`), else interval end.
    Auto,
    Start,
    End,
}

#[derive(clap::Args)]
pub struct Args {
    /// Files, directories, or s3://bucket/prefix (every object under the prefix).
    #[arg(required_unless_present = "source")]
    paths: Vec<PathBuf>,
    /// An s3://bucket/prefix to read (repeatable; the same as naming it among the paths).
    #[arg(long)]
    source: Vec<PathBuf>,
    #[command(flatten)]
    settings: Settings,
}

#[derive(clap::Args)]
pub struct ReprocessArgs {
    /// s3://bucket/prefix (every object under it, as the splitter Lambda names them; its
    /// rejects reports are passed over).
    #[arg(required = true, value_name = "S3_PREFIX")]
    prefixes: Vec<String>,
    #[command(flatten)]
    settings: Settings,
}

/// What `ingest` and `reprocess` share.
#[derive(clap::Args)]
struct Settings {
    /// Put the records on this Kinesis stream (kinesis://NAME), for the aggregator Lambda,
    /// instead of writing them to the store.
    #[arg(long)]
    stream: Option<String>,
    /// PutRecords calls in flight on the stream.
    #[arg(long, requires = "stream", default_value_t = 4)]
    puts_in_flight: usize,
    /// Write every rejected row (file, line, column, reason) to this CSV file.
    #[arg(long)]
    rejects: Option<PathBuf>,
    /// Exit with status 3 if any row or record was rejected (warnings do not count).
    #[arg(long)]
    strict: bool,
    /// Print the summary as JSON on stdout.
    #[arg(long)]
    json: bool,
    /// Threads parsing files (default: the number of cores). A plain wide or long file of
    /// two pieces or more (`--piece-kib`) is parsed by all of them at once.
    #[arg(long)]
    jobs: Option<usize>,
    /// Size of the pieces a large plain wide or long file is cut in, in KiB, each parsed by
    /// whichever thread is free; 0 reads every file whole on one thread.
    #[arg(long, default_value_t = meterflow_core::format::pieces::PIECE_BYTES / 1024)]
    piece_kib: u64,
    /// Which end of its interval a long file's timestamp labels.
    #[arg(long, value_enum, default_value = "auto")]
    timestamps: Labels,
    /// Interval length of long files, in minutes.
    #[arg(long, default_value_t = 30)]
    long_interval: u16,
    /// Largest decompressed size of one .gz/.zip input, in bytes (zip-bomb guard).
    #[arg(long, default_value_t = Limits::default().max_bytes)]
    max_decompressed: u64,
    /// Largest decompressed/compressed ratio of one .gz/.zip input (zip-bomb guard).
    #[arg(long, default_value_t = Limits::default().max_ratio)]
    max_ratio: u64,
    /// Most entries read from one .zip archive.
    #[arg(long, default_value_t = Limits::default().max_entries)]
    max_zip_entries: u64,
}

pub async fn run(args: Args, store: &str) -> Result<ExitCode> {
    let all: Vec<PathBuf> = args.paths.iter().chain(&args.source).cloned().collect();
    ingest(&all, args.settings, store).await
}

pub async fn reprocess(args: ReprocessArgs, store: &str) -> Result<ExitCode> {
    for p in &args.prefixes {
        anyhow::ensure!(
            p.starts_with("s3://"),
            "`{p}` is not an S3 prefix: reprocess re-splits objects in S3 (s3://bucket/prefix); read local files with `meterflow ingest`"
        );
    }
    let all: Vec<PathBuf> = args.prefixes.iter().map(PathBuf::from).collect();
    ingest(&all, args.settings, store).await
}

async fn ingest(all: &[PathBuf], args: Settings, store: &str) -> Result<ExitCode> {
    // The destination first: a wrong store or stream fails before any listing.
    let destination: Destination<AnyStore> = match &args.stream {
        Some(url) => Destination::Stream(KinesisDestination::open(url, args.puts_in_flight).await?),
        None => Destination::Store(Arc::new(crate::store::open_to_load(store).await?)),
    };
    let found = crate::inputs::expand(all, args.rejects.as_deref()).await?;
    if found.inputs.is_empty() {
        let why = found
            .failures
            .iter()
            .map(|(_, message)| format!("; {message}"))
            .collect::<String>();
        anyhow::bail!(
            "no data files found in the given paths (looked for {}){why}",
            crate::inputs::DATA_EXTENSIONS.join(", ")
        );
    }
    let cfg = IngestConfig {
        rejects: args.rejects.clone(),
        jobs: args
            .jobs
            .unwrap_or_else(|| std::thread::available_parallelism().map_or(2, |n| n.get())),
        timestamps: match args.timestamps {
            Labels::Auto => TimestampLabel::Auto,
            Labels::Start => TimestampLabel::Start,
            Labels::End => TimestampLabel::End,
        },
        long_interval_minutes: args.long_interval,
        limits: Limits {
            max_bytes: args.max_decompressed,
            max_ratio: args.max_ratio,
            max_entries: args.max_zip_entries,
            ..Limits::default()
        },
        progress: !args.json && std::io::stderr().is_terminal(),
        piece_bytes: (args.piece_kib > 0).then_some(args.piece_kib * 1024),
        s3: found.s3.clone(),
    };
    let summary = ingest::run(destination, found, cfg).await?;
    if args.json {
        out!("{}", serde_json::to_string_pretty(&summary)?)?;
    }
    if !args.json || summary.failed() {
        summary.print_text(&mut std::io::stderr().lock(), args.rejects.as_deref());
    }
    Ok(if summary.failed() {
        ExitCode::from(1)
    } else if args.strict && summary.stats.rows_rejected + summary.stats.records_rejected > 0 {
        ExitCode::from(3)
    } else {
        ExitCode::SUCCESS
    })
}
