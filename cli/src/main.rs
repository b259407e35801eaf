//! `meterflow`: the whole pipeline on one machine, with an embedded store.
//!
//! Exit codes: 0 success (rejected rows are reported, not fatal); 1 an error, or a file that
//! could not be read at all; 2 bad usage; 3 `--strict` and some rows were rejected.

/// `println!` that returns the write's result instead of panicking when stdout is closed
/// (`meterflow query ... | head`): a broken pipe then ends the program quietly.
macro_rules! out {
    () => {{
        use std::io::Write as _;
        writeln!(std::io::stdout().lock())
    }};
    ($($arg:tt)*) => {{
        use std::io::Write as _;
        writeln!(std::io::stdout().lock(), $($arg)*)
    }};
}

mod demo;
mod generate;
mod ingest;
mod progress;
mod store;

use std::io::IsTerminal;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::process::ExitCode;
use std::sync::Arc;

use anyhow::{Context, Result};
use clap::{Parser, Subcommand, ValueEnum};
use meterflow_api::{daily_report, ApiConfig};
use meterflow_core::decompress::Limits;
use meterflow_core::{Day, SeriesId, TimestampLabel};
use meterflow_store_cql::AnyStore;

#[derive(Parser)]
#[command(
    name = "meterflow",
    version,
    about = "Exact daily energy totals from meter-data files (wide CSV, long CSV, NEM12)"
)]
struct Cli {
    /// The store: a SQLite file path, or a CQL cluster as cql://host:port/keyspace[?settings]
    /// (cqls:// for TLS; credentials from METERFLOW_CQL_USERNAME/_PASSWORD).
    #[arg(
        long,
        global = true,
        env = "METERFLOW_STORE",
        default_value = "meterflow.db"
    )]
    store: String,
    #[command(subcommand)]
    command: Command,
}

#[derive(Clone, Copy, ValueEnum)]
enum Labels {
    /// From the header (`interval_start`/`interval_end`), else interval end.
    Auto,
    Start,
    End,
}

#[derive(Subcommand)]
enum Command {
    /// Read files or directories (recursively; .csv, NEM12, .gz, .zip; format from content).
    Ingest {
        #[arg(required = true)]
        paths: Vec<PathBuf>,
        /// Write every rejected row (file, line, column, reason) to this CSV file.
        #[arg(long)]
        rejects: Option<PathBuf>,
        /// Exit with status 3 if any row was rejected.
        #[arg(long)]
        strict: bool,
        /// Print the summary as JSON on stdout.
        #[arg(long)]
        json: bool,
        /// Files parsed in parallel (default: the number of cores).
        #[arg(long)]
        jobs: Option<usize>,
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
    },
    /// Daily totals of one meter, as the API's JSON.
    Query {
        meter: String,
        #[arg(long)]
        from: String,
        #[arg(long)]
        to: String,
        /// A readable table instead of JSON.
        #[arg(long)]
        table: bool,
    },
    /// Serve the HTTP API (the same router as the API Lambda).
    Serve {
        #[arg(long, default_value = "127.0.0.1:8080")]
        listen: SocketAddr,
        /// Longest date range one request may ask for, in days.
        #[arg(long, default_value_t = 366)]
        max_range_days: u32,
    },
    /// Write deterministic synthetic data, optionally with its exact daily totals.
    Generate(generate::Args),
    /// Ingest the bundled example files into a fresh store and show some totals.
    Demo,
}

fn parse_day(s: &str, what: &str) -> Result<Day> {
    Day::parse_iso(s).with_context(|| format!("--{what}"))
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    match run(cli) {
        Ok(code) => code,
        Err(e) if is_broken_pipe(&e) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("error: {e:#}");
            ExitCode::from(1)
        }
    }
}

/// The reader of our output went away (`| head`): not an error of ours.
fn is_broken_pipe(e: &anyhow::Error) -> bool {
    e.chain().any(|c| {
        c.downcast_ref::<std::io::Error>()
            .is_some_and(|io| io.kind() == std::io::ErrorKind::BrokenPipe)
    })
}

#[tokio::main]
async fn run(cli: Cli) -> Result<ExitCode> {
    match cli.command {
        Command::Ingest {
            paths,
            rejects,
            strict,
            json,
            jobs,
            timestamps,
            long_interval,
            max_decompressed,
            max_ratio,
            max_zip_entries,
        } => {
            let store = Arc::new(store::open(&cli.store).await?);
            let (files, skipped) = ingest::expand(&paths)?;
            if files.is_empty() {
                anyhow::bail!(
                    "no data files found in the given paths (looked for {})",
                    "csv, txt, dat, gz, zip, nem12"
                );
            }
            let cfg = ingest::IngestConfig {
                rejects: rejects.clone(),
                jobs: jobs
                    .unwrap_or_else(|| std::thread::available_parallelism().map_or(2, |n| n.get())),
                timestamps: match timestamps {
                    Labels::Auto => TimestampLabel::Auto,
                    Labels::Start => TimestampLabel::Start,
                    Labels::End => TimestampLabel::End,
                },
                long_interval_minutes: long_interval,
                limits: Limits {
                    max_bytes: max_decompressed,
                    max_ratio,
                    max_entries: max_zip_entries,
                    ..Limits::default()
                },
                progress: !json && std::io::stderr().is_terminal(),
            };
            let mut summary = ingest::run(store, files, cfg).await?;
            summary.skipped = skipped.iter().map(|p| p.display().to_string()).collect();
            if json {
                out!("{}", serde_json::to_string_pretty(&summary)?)?;
            }
            if !json || summary.files_failed > 0 {
                summary.print_text(&mut std::io::stderr().lock(), rejects.as_deref());
            }
            Ok(if summary.files_failed > 0 {
                ExitCode::from(1)
            } else if strict && summary.rows_rejected > 0 {
                ExitCode::from(3)
            } else {
                ExitCode::SUCCESS
            })
        }
        Command::Query {
            meter,
            from,
            to,
            table,
        } => {
            let series: SeriesId = meter.parse()?;
            let (from, to) = (parse_day(&from, "from")?, parse_day(&to, "to")?);
            anyhow::ensure!(from <= to, "--from ({from}) is after --to ({to})");
            let store = store::open_existing(&cli.store).await?;
            let report = daily_report(&store, &series, from, to).await?;
            if table {
                out!(
                    "{:<12} {:>16} {:>9} {:>8}  quality",
                    "date",
                    format!("total {}", report.unit),
                    "intervals",
                    "complete"
                )?;
                for d in &report.days {
                    out!(
                        "{:<12} {:>16} {:>9} {:>8}  {}",
                        d.date,
                        d.total.get(),
                        d.intervals,
                        d.complete,
                        d.quality
                    )?;
                }
            } else {
                out!("{}", serde_json::to_string_pretty(&report)?)?;
            }
            Ok(ExitCode::SUCCESS)
        }
        Command::Serve {
            listen,
            max_range_days,
        } => {
            let store = Arc::new(store::open(&cli.store).await?);
            let listener = tokio::net::TcpListener::bind(listen)
                .await
                .with_context(|| format!("cannot listen on {listen}"))?;
            eprintln!(
                "meterflow API on http://{} (store {}); Ctrl-C stops",
                listener.local_addr()?,
                cli.store
            );
            tokio::select! {
                r = meterflow_api::serve(listener, store, ApiConfig { max_range_days }) => r?,
                _ = tokio::signal::ctrl_c() => eprintln!("stopping"),
            }
            Ok(ExitCode::SUCCESS)
        }
        Command::Generate(args) => generate::run(args),
        Command::Demo => {
            anyhow::ensure!(
                !AnyStore::is_cql(&cli.store),
                "the demo makes a fresh local store: pass --store PATH (a file), not a CQL URL"
            );
            demo::run(Path::new(&cli.store)).await
        }
    }
}
