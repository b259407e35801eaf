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

mod aws_env;
mod demo;
mod failure_file;
mod generate;
mod ingest;
mod ingest_command;
mod inputs;
mod kinesis_destination;
mod progress;
mod replay_command;
mod s3_inputs;
mod store;

use std::path::Path;
use std::process::ExitCode;
use std::sync::Arc;

use anyhow::{Context, Result};
use clap::{Parser, Subcommand};
use meterflow_api::{daily_report, ApiConfig};
use meterflow_core::{Day, SeriesId};
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

#[derive(Subcommand)]
enum Command {
    /// Read files, directories (recursively) or S3 prefixes (.csv, NEM12, .gz, .zip; format
    /// from content) into the store, or onto a Kinesis stream with --stream.
    Ingest(ingest_command::Args),
    /// Re-split S3 objects (data older than the stream's retention) as the splitter Lambda
    /// would: into the store, or onto the stream with --stream. A reprocessed object lands
    /// once: it writes the keys its first pass wrote.
    Reprocess(ingest_command::ReprocessArgs),
    /// Apply what is still on a Kinesis stream again, through the aggregator's own code: after
    /// a store loss, an aggregator fix, a new table, or a batch the event source mapping gave
    /// up on (--from-failure). Idempotent: replaying twice changes nothing.
    Replay(replay_command::Args),
    /// Daily totals of one meter, as the API's JSON.
    Query {
        /// The meter (series id), e.g. EE00027, or NMI-suffix for NEM12 data (VABD000163-E1).
        meter: String,
        /// First day, YYYY-MM-DD (e.g. 2019-01-01).
        #[arg(long, value_name = "YYYY-MM-DD")]
        from: String,
        /// Last day, included, YYYY-MM-DD (e.g. 2019-01-31).
        #[arg(long, value_name = "YYYY-MM-DD")]
        to: String,
        /// A readable table instead of JSON.
        #[arg(long)]
        table: bool,
    },
    /// Serve the HTTP API (the same router as the API Lambda).
    Serve {
        /// Address to listen on: host:port (a name such as localhost, or an IP address).
        #[arg(long, default_value = "127.0.0.1:8080", value_name = "HOST:PORT")]
        listen: String,
        /// Longest date range one request may ask for, in days.
        #[arg(long, default_value_t = 366)]
        max_range_days: u32,
        /// Create an empty store if there is none (otherwise a missing store file is an
        /// error: a typo would serve an empty store, answering every meter with no days).
        #[arg(long)]
        create: bool,
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
            eprintln!("error: {}", meterflow_store::chain(e.as_ref()));
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
        Command::Ingest(args) => ingest_command::run(args, &cli.store).await,
        Command::Reprocess(args) => ingest_command::reprocess(args, &cli.store).await,
        Command::Replay(args) => replay_command::run(args, &cli.store).await,
        Command::Query {
            meter,
            from,
            to,
            table,
        } => {
            let series: SeriesId = meter.parse()?;
            let (from, to) = (parse_day(&from, "from")?, parse_day(&to, "to")?);
            anyhow::ensure!(from <= to, "--from ({from}) is after --to ({to})");
            let store = store::open_existing(&cli.store, "").await?;
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
                    let other_unit = match &d.unit {
                        Some(u) => format!("  (in {u})"),
                        None => String::new(),
                    };
                    out!(
                        "{:<12} {:>16} {:>9} {:>8}  {}{}",
                        d.date,
                        d.total.get(),
                        d.intervals,
                        d.complete,
                        d.quality,
                        other_unit
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
            create,
        } => {
            let store = match create {
                true => store::open(&cli.store).await?,
                false => {
                    let hint = "; pass --create to serve an empty store";
                    store::open_existing(&cli.store, hint).await?
                }
            };
            let store = Arc::new(store);
            let listener = tokio::net::TcpListener::bind(listen.as_str())
                .await
                .with_context(|| format!("cannot listen on {listen} (give HOST:PORT, like 127.0.0.1:8080 or localhost:8080, with a port that is free)"))?;
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
