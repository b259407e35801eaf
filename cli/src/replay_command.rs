//! `meterflow replay`: what is still on a Kinesis stream, applied again through the aggregator
//! (`meterflow_aggregator::replay`), into the store or, with `--dry-run`, nowhere.

use std::io::Write;
use std::path::PathBuf;
use std::process::ExitCode;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;

use anyhow::Result;
use meterflow_aggregator::replay::{
    lineage_waves, replay, DryRun, Ended, Observer, ReplayError, ReplaySettings, ShardPlan,
    ShardReport, Until,
};
use meterflow_aws::client::{http_client, kinesis_client};
use meterflow_aws::shards::{KinesisShards, ShardReader, StartingPosition};
use meterflow_core::day::parse_instant_ms;
use serde::Serialize;

use crate::failure_file::{self, FailedBatch};

#[derive(clap::Args)]
#[command(group(clap::ArgGroup::new("from").required(true).args(
    ["trim_horizon", "from_sequence", "from_time", "from_failure"]
)))]
pub struct Args {
    /// The stream: NAME or kinesis://NAME.
    #[arg(long)]
    stream: String,
    /// Every shard, closed ones included (parents before their children).
    #[arg(long, conflicts_with_all = ["shard", "from_failure"])]
    all_shards: bool,
    /// A shard to replay (repeatable), e.g. shardId-000000000001.
    #[arg(long, conflicts_with = "from_failure")]
    shard: Vec<String>,
    /// From the oldest record the stream holds.
    #[arg(long)]
    trim_horizon: bool,
    /// From this sequence number, included (with exactly one --shard).
    #[arg(
        long,
        value_name = "SEQ",
        requires = "shard",
        conflicts_with = "all_shards"
    )]
    from_sequence: Option<String>,
    /// From the first record that arrived at or after this time.
    #[arg(long, value_name = "RFC3339")]
    from_time: Option<String>,
    /// Exactly the batches named in this file: what the aggregator's on-failure destination
    /// received (one invocation record, a JSON array or JSON lines of them, or `aws sqs
    /// receive-message` output).
    #[arg(long, value_name = "FILE")]
    from_failure: Option<PathBuf>,
    /// Do not apply records that arrived after this time.
    #[arg(long, value_name = "RFC3339")]
    to_time: Option<String>,
    /// Decode and count, write nothing (and make no store).
    #[arg(long)]
    dry_run: bool,
    /// Print the summary as JSON on stdout.
    #[arg(long)]
    json: bool,
    /// Shards read at once.
    #[arg(long, default_value_t = 4)]
    parallel: usize,
}

/// What the replay did, for the summary.
#[derive(Debug, Default, Serialize)]
struct Summary {
    stream: String,
    dry_run: bool,
    shards: Vec<ShardReport>,
    records: u64,
    fragments: u64,
    bytes: u64,
    quarantined: u64,
    /// `shard: reason` of each shard that failed (its report says what it applied before).
    failures: Vec<String>,
    /// Ctrl-C stopped the replay after the batches in hand.
    stopped: bool,
}

pub async fn run(args: Args, store: &str) -> Result<ExitCode> {
    let name = crate::kinesis_destination::stream_name(&args.stream)?.to_owned();
    let settings = crate::aws_env::settings().await?;
    let reader = Arc::new(KinesisShards {
        client: kinesis_client(&settings, http_client()),
        stream_name: name.clone(),
    });
    let shards = reader.list_shards().await.map_err(|e| {
        let place = crate::aws_env::place(&settings);
        match e.code.as_str() {
            "ResourceNotFoundException" => anyhow::anyhow!(
                "kinesis://{name}: no such stream ({place}): check the name, AWS_REGION and AWS_ENDPOINT_URL"
            ),
            _ => anyhow::anyhow!("kinesis://{name}: cannot list its shards ({place}): {e}"),
        }
    })?;
    let waves = plan(&args, &shards)?;

    let stop = Arc::new(AtomicBool::new(false));
    let on_ctrl_c = Arc::clone(&stop);
    tokio::spawn(async move {
        if tokio::signal::ctrl_c().await.is_ok() {
            eprintln!("stopping after the batches in hand (Ctrl-C again to abort)");
            on_ctrl_c.store(true, Ordering::Relaxed);
        }
        // The handler replaced the default one: a second Ctrl-C must still end the process.
        if tokio::signal::ctrl_c().await.is_ok() {
            eprintln!("aborted: writes are idempotent, so the next replay may simply repeat them");
            std::process::exit(130);
        }
    });
    let bars = crate::progress::Bars::new(!args.json);
    let observer: Arc<dyn Observer> = Arc::new(bars.shards());
    let replay_settings = ReplaySettings {
        parallel: args.parallel.max(1),
        ..ReplaySettings::default()
    };
    let results = if args.dry_run {
        replay(
            reader,
            Arc::new(DryRun),
            waves,
            replay_settings,
            Arc::clone(&stop),
            observer,
        )
        .await
    } else {
        let store = Arc::new(crate::store::open(store).await?);
        let results = replay(
            reader,
            Arc::clone(&store),
            waves,
            replay_settings,
            Arc::clone(&stop),
            observer,
        )
        .await;
        drop(store);
        results
    };
    let mut summary = Summary {
        stream: format!("kinesis://{name}"),
        dry_run: args.dry_run,
        ..Summary::default()
    };
    for r in results {
        let report = match r {
            Ok(report) => report,
            Err(e) => {
                summary.failures.push(meterflow_store::chain(&e));
                failed_report(e)
            }
        };
        summary.records += report.records;
        summary.fragments += report.fragments;
        summary.bytes += report.bytes;
        summary.quarantined += report.quarantined;
        summary.stopped |= report.ended == Some(Ended::Stopped);
        summary.shards.push(report);
    }
    if args.json {
        out!("{}", serde_json::to_string_pretty(&summary)?)?;
    } else {
        print_text(&summary, &mut std::io::stderr().lock());
    }
    Ok(if summary.failures.is_empty() && !summary.stopped {
        ExitCode::SUCCESS
    } else {
        ExitCode::from(1)
    })
}

fn failed_report(e: ReplayError) -> ShardReport {
    match e {
        ReplayError::Read { report, .. } | ReplayError::Store { report, .. } => *report,
    }
}

/// Which shards, from where, until what, in lineage waves.
fn plan(args: &Args, shards: &[meterflow_aws::shards::ShardInfo]) -> Result<Vec<Vec<ShardPlan>>> {
    let to_time = args
        .to_time
        .as_deref()
        .map(parse_instant_ms)
        .transpose()
        .map_err(|e| anyhow::anyhow!("--to-time: {e}"))?;
    if let Some(file) = &args.from_failure {
        let batches = failure_file::read(file)?;
        return Ok(vec![failure_plans(&batches, to_time)]);
    }
    let from = match (&args.from_sequence, &args.from_time) {
        (Some(seq), _) => {
            anyhow::ensure!(
                args.shard.len() == 1,
                "--from-sequence names a position in one shard: give exactly one --shard"
            );
            StartingPosition::AtSequence(seq.clone())
        }
        (None, Some(t)) => StartingPosition::AtTimestamp(
            parse_instant_ms(t).map_err(|e| anyhow::anyhow!("--from-time: {e}"))?,
        ),
        (None, None) => StartingPosition::TrimHorizon,
    };
    anyhow::ensure!(
        args.all_shards || !args.shard.is_empty(),
        "say which shards: --all-shards, or --shard ID (repeatable)"
    );
    let wanted: Vec<_> = match args.all_shards {
        true => shards.to_vec(),
        false => {
            for id in &args.shard {
                anyhow::ensure!(
                    shards.iter().any(|s| &s.id == id),
                    "the stream has no shard {id}; it has {}",
                    shards
                        .iter()
                        .map(|s| s.id.as_str())
                        .collect::<Vec<_>>()
                        .join(", ")
                );
            }
            shards
                .iter()
                .filter(|s| args.shard.contains(&s.id))
                .cloned()
                .collect()
        }
    };
    let until = Until {
        time_ms: to_time,
        ..Until::default()
    };
    Ok(lineage_waves(&wanted)
        .into_iter()
        .map(|wave| {
            wave.into_iter()
                .map(|s| ShardPlan {
                    shard: s.id,
                    from: from.clone(),
                    until: until.clone(),
                })
                .collect()
        })
        .collect())
}

/// One plan per failed batch: from its first sequence number to its last (or its size).
fn failure_plans(batches: &[FailedBatch], to_time: Option<i64>) -> Vec<ShardPlan> {
    batches
        .iter()
        .map(|b| ShardPlan {
            shard: b.shard_id.clone(),
            from: StartingPosition::AtSequence(b.start_sequence_number.clone()),
            until: Until {
                sequence: b.end_sequence_number.clone(),
                time_ms: to_time,
                records: match b.end_sequence_number {
                    Some(_) => None,
                    None => b.batch_size,
                },
            },
        })
        .collect()
}

fn print_text(s: &Summary, err: &mut dyn Write) {
    let what = if s.dry_run {
        "decoded (dry run, nothing written)"
    } else {
        "applied"
    };
    let _ = writeln!(
        err,
        "{}: {} records {what} from {} shards ({} fragments, {:.1} MB); {} quarantined",
        s.stream,
        s.records,
        s.shards.len(),
        s.fragments,
        s.bytes as f64 / 1e6,
        s.quarantined
    );
    for r in &s.shards {
        let ended = match r.ended {
            None => "failed",
            Some(Ended::Tip) => "read to the tip",
            Some(Ended::Closed) => "a closed shard, read to its end",
            Some(Ended::ToTime) => "stopped at --to-time",
            Some(Ended::EndSequence) => "the batch's last record reached",
            Some(Ended::Count) => "the batch's size reached",
            Some(Ended::Stopped) => "stopped by Ctrl-C",
        };
        let last = r.last_sequence_number.as_deref().unwrap_or("none");
        let _ = writeln!(
            err,
            "  {}: {} records, last sequence number {last} ({ended})",
            r.shard, r.records
        );
    }
    if s.quarantined > 0 {
        let _ = writeln!(
            err,
            "quarantined records can never be decoded: they were skipped, as the aggregator Lambda skips them"
        );
    }
    for f in &s.failures {
        let _ = writeln!(err, "error: {f}");
    }
    if s.stopped {
        let _ = writeln!(
            err,
            "stopped: resume a shard with --shard ID --from-sequence LAST (the record after LAST is next; applying LAST again changes nothing)"
        );
    }
}
