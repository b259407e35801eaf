//! The splitter Lambda: S3 `ObjectCreated` notifications in, envelope records onto Kinesis,
//! a rejects report back to S3.
//!
//! Configuration (environment):
//!
//! | variable | default | meaning |
//! |---|---|---|
//! | `METERFLOW_STREAM` | required | the Kinesis stream's name |
//! | `METERFLOW_PARTITION_BUCKETS` | 64 | buckets series are hashed into (1–65536); at least the stream's shard count, more spreads better; changing it moves series between shards |
//! | `METERFLOW_PUT_CONCURRENCY` | 4 | PutRecords calls in flight (1–64) |
//! | `METERFLOW_REJECTS_PREFIX` | unset | `s3://bucket/prefix` for rejects reports; unset: next to the input |
//! | `METERFLOW_MAX_REJECTS` | 10000 | rejects listed per report (1–1000000); all are counted. They are held in memory (a few hundred bytes each): raise the function's memory with it |
//! | `METERFLOW_DEADLINE_MARGIN_SECONDS` | 10 | hand the rest of an object over this long before the invocation's deadline (1–600), but never more than a fifth of the time an invocation has (so a function with Lambda's default 3 s timeout still works) |
//! | `METERFLOW_MAX_BYTES_PER_INVOCATION` | unset | also hand over once an invocation has read this many bytes of an input (1048576–2^50): bounds each invocation's work whatever its timeout |
//! | `METERFLOW_HANDOVER_PREFIX` | unset | `s3://bucket/prefix` for hand-over notes; unset: next to the input. Its `ObjectCreated` events must reach this function (see [`crate::handover`]) |
//! | `AWS_REGION`, `AWS_ACCESS_KEY_ID`, `AWS_SECRET_ACCESS_KEY`, `AWS_SESSION_TOKEN` | set by Lambda | the execution role |
//! | `AWS_ENDPOINT_URL` | unset | an emulator (moto) instead of AWS |
//!
//! Errors: a retryable failure (throttling that outlasted the retries, S3 or Kinesis
//! unavailable) fails the invocation, so S3's asynchronous invocation retries it; splitting is
//! idempotent, so records already put are put again under the same keys. A permanent one (a
//! bad header, a corrupt archive, a vanished object) can never succeed: it is logged with the
//! object, written to the rejects report, and the invocation goes on with the next object.
//! An object that cannot finish before the deadline is cut at a row boundary and handed over
//! to a new invocation through a note in S3 ([`crate::handover`]): files of any size are
//! split, in parts. Only a part that cannot even put what it read before the deadline fails
//! the invocation (and is retried from the same start).
//!
//! A report belongs to the newest version of its input that was split: one that splits
//! cleanly removes the report an earlier version left (DeleteObject on the same key). An
//! object split in parts gets one report, written by its last part.

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::{Duration, SystemTime};

use crate::object::{Handover, Part};
use crate::s3::{ship_object_part, PartError, PipelineError, PipelineSettings, SplitReport};
use bytes::Bytes;
use lambda_runtime::tracing::{error, info, warn};
use meterflow_aws::event::{created_objects, EventError, ObjectRef};
use meterflow_aws::kinesis::{RecordStream, Shipper};
use meterflow_aws::s3::{read_small, ObjectSource, SourceError};
use meterflow_aws::sink::{ObjectSink, SinkError};
use meterflow_core::Reject;
use serde::Serialize;
use tokio::time::Instant;

use crate::handover::{self, Done, Note, NoteError};
use crate::report;
use meterflow_aws::env::{number, required, ConfigError, S3Location, Vars};

/// The splitter's settings (see the module docs).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SplitterConfig {
    pub stream_name: String,
    pub buckets: u32,
    pub put_concurrency: usize,
    pub rejects_prefix: Option<S3Location>,
    pub max_rejects: usize,
    pub deadline_margin: Duration,
    pub max_bytes_per_invocation: Option<u64>,
    pub handover_prefix: Option<S3Location>,
}

impl SplitterConfig {
    pub fn from_vars(vars: &impl Vars) -> Result<SplitterConfig, ConfigError> {
        Ok(SplitterConfig {
            stream_name: required(
                vars,
                "METERFLOW_STREAM",
                "set it to the name of the Kinesis stream the records go to",
            )?,
            buckets: number(vars, "METERFLOW_PARTITION_BUCKETS", 64, 1..=65_536)?,
            put_concurrency: number(vars, "METERFLOW_PUT_CONCURRENCY", 4, 1..=64)?,
            rejects_prefix: S3Location::from_var(vars, "METERFLOW_REJECTS_PREFIX")?,
            max_rejects: number(vars, "METERFLOW_MAX_REJECTS", 10_000, 1..=1_000_000)?,
            deadline_margin: Duration::from_secs(number(
                vars,
                "METERFLOW_DEADLINE_MARGIN_SECONDS",
                10,
                1..=600,
            )?),
            max_bytes_per_invocation: match vars.get("METERFLOW_MAX_BYTES_PER_INVOCATION") {
                None => None,
                Some(_) => Some(number(
                    vars,
                    "METERFLOW_MAX_BYTES_PER_INVOCATION",
                    1 << 30,
                    1 << 20..=1 << 50,
                )?),
            },
            handover_prefix: S3Location::from_var(vars, "METERFLOW_HANDOVER_PREFIX")?,
        })
    }
}

/// Conditional writes of a hand-over note before this invocation gives up (and S3's
/// asynchronous invocation retries it).
const NOTE_WRITE_ATTEMPTS: u32 = 3;

/// Why an invocation fails (so that S3's asynchronous invocation retries it).
#[derive(Debug, thiserror::Error)]
pub enum SplitterError {
    #[error("the payload is not an S3 event notification ({0}); is this function subscribed to the bucket's ObjectCreated events?")]
    Event(EventError),
    #[error("s3://{bucket}/{key}: {source} (retrying the invocation)")]
    Retryable {
        bucket: String,
        key: String,
        source: PipelineError,
    },
    #[error("{0} (the rejects report; retrying the invocation)")]
    Report(SinkError),
    #[error("{0} (a hand-over note; retrying the invocation)")]
    Note(String),
    #[error("s3://{bucket}/{key}{size}: told to hand over {margin:?} before the deadline, the part could not put what it had read in time ({elapsed:?} spent); raise METERFLOW_DEADLINE_MARGIN_SECONDS or the function's timeout (at most 900 s)")]
    Deadline {
        bucket: String,
        key: String,
        /// ` (N bytes)` when the event said.
        size: String,
        elapsed: Duration,
        margin: Duration,
    },
}

impl From<SplitterError> for lambda_runtime::Diagnostic {
    fn from(e: SplitterError) -> Self {
        let kind = match &e {
            SplitterError::Event(_) => "InvalidEvent",
            SplitterError::Retryable { .. } | SplitterError::Report(_) | SplitterError::Note(_) => {
                "Retryable"
            }
            SplitterError::Deadline { .. } => "DeadlineExceeded",
        };
        lambda_runtime::Diagnostic {
            error_type: kind.to_owned(),
            error_message: e.to_string(),
        }
    }
}

/// What happened to one object of an event: the invocation's response, and a log line each.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize)]
pub struct ObjectSummary {
    /// `s3://bucket/key`.
    pub object: String,
    /// `split`, `handed_over` (the rest goes on in another invocation: see `handover_note`),
    /// `duplicate` (another delivery of the same event had already handed the rest over:
    /// this run stopped there), `failed` (permanently: see `error`) or `skipped` (a rejects
    /// report, or a note already used).
    pub outcome: &'static str,
    /// The part of the object this invocation split (1, or more for a hand-over note); the
    /// figures below add up all its parts so far.
    pub part: u32,
    /// Rows, fragments, records and calls of all the object's parts so far (flat in the JSON).
    #[serde(flatten)]
    pub counts: Done,
    /// `s3://bucket/key` of the rejects report, when one was written.
    pub rejects_report: Option<String>,
    /// Rejects counted but not listed in the report ([`SplitterConfig::max_rejects`]).
    pub rejects_unlisted: u64,
    /// `s3://bucket/key` of the note the next part starts from.
    pub handover_note: Option<String>,
    pub error: Option<String>,
}

/// The invocation's response.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize)]
pub struct SplitterResponse {
    pub objects: Vec<ObjectSummary>,
}

/// The handler, generic over its three external systems so tests drive it against moto and
/// through fault-injecting wrappers.
pub struct Splitter<Src, St, Snk> {
    pub source: Arc<Src>,
    pub shipper: Shipper<St>,
    pub sink: Snk,
    pub settings: PipelineSettings,
    pub rejects_prefix: Option<S3Location>,
    pub deadline_margin: Duration,
    pub max_bytes_per_invocation: Option<u64>,
    pub handover_prefix: Option<S3Location>,
}

/// The part an invocation runs: the input, and the note it starts from (none for part 1).
struct Run {
    input: ObjectRef,
    note: Option<(ObjectRef, Note)>,
    from: Option<Handover>,
}

impl Run {
    fn part(&self) -> u32 {
        self.note.as_ref().map_or(1, |(_, n)| n.part)
    }
}

impl<Src: ObjectSource, St: RecordStream, Snk: ObjectSink> Splitter<Src, St, Snk> {
    pub fn new(source: Arc<Src>, stream: St, sink: Snk, config: &SplitterConfig) -> Self {
        let mut shipper = Shipper::new(Arc::new(stream), config.buckets);
        shipper.max_in_flight = config.put_concurrency;
        let mut settings = PipelineSettings::default();
        settings.split.pack.buckets = config.buckets;
        settings.max_rejects_kept = config.max_rejects;
        Splitter {
            source,
            shipper,
            sink,
            settings,
            rejects_prefix: config.rejects_prefix.clone(),
            deadline_margin: config.deadline_margin,
            max_bytes_per_invocation: config.max_bytes_per_invocation,
            handover_prefix: config.handover_prefix.clone(),
        }
    }

    /// Splits every object `event` (the raw notification JSON) names, in order. `deadline` is
    /// the invocation's ([`instant_of`] of `Context::deadline`); `None` runs unbounded.
    pub async fn handle(
        &self,
        event: &[u8],
        deadline: Option<Instant>,
    ) -> Result<SplitterResponse, SplitterError> {
        let objects = created_objects(event).map_err(SplitterError::Event)?;
        let stop_at = deadline.map(|d| stop_time(Instant::now(), d, self.deadline_margin));
        let mut response = SplitterResponse::default();
        for object in objects {
            let summary = self.object(&object, stop_at).await?;
            info!(
                object = %summary.object,
                outcome = summary.outcome,
                rows_read = summary.counts.rows_read,
                rows_rejected = summary.counts.rows_rejected,
                records = summary.counts.records,
                "object done"
            );
            response.objects.push(summary);
        }
        Ok(response)
    }

    async fn object(
        &self,
        object: &ObjectRef,
        stop_at: Option<(Instant, Duration)>,
    ) -> Result<ObjectSummary, SplitterError> {
        let mut summary = ObjectSummary {
            object: format!("s3://{}/{}", object.bucket, object.key),
            part: 1,
            ..ObjectSummary::default()
        };
        if report::is_report(object, self.rejects_prefix.as_ref()) {
            summary.outcome = "skipped";
            return Ok(summary);
        }
        let run = if handover::is_note(object) {
            match self.read_note(object).await? {
                Ok((note, from)) => Run {
                    input: note.input(),
                    note: Some((object.clone(), note)),
                    from: Some(from),
                },
                Err(None) => {
                    info!(note = %summary.object, "the hand-over note is gone: an earlier delivery of its event used it");
                    summary.outcome = "skipped";
                    return Ok(summary);
                }
                Err(Some(e)) => {
                    error!(note = %summary.object, error = %e, "the hand-over note cannot be used; the rest of its input is not split");
                    summary.outcome = "failed";
                    summary.error = Some(e);
                    return Ok(summary);
                }
            }
        } else {
            Run {
                input: object.clone(),
                note: None,
                from: None,
            }
        };
        summary.object = format!("s3://{}/{}", run.input.bucket, run.input.key);
        summary.part = run.part();
        let started = Instant::now();
        let stop = Arc::new(AtomicBool::new(false));
        let part = Part {
            from: run.from.clone(),
            stop: Arc::clone(&stop),
            max_bytes: self.max_bytes_per_invocation,
        };
        let split = ship_object_part(
            Arc::clone(&self.source),
            &run.input,
            &self.shipper,
            self.settings,
            part,
        );
        let result = match stop_at {
            // At `at` the splitting thread is told to cut at the next row boundary; it then only
            // has to put what it packed. If even that does not end within most of the margin,
            // dropping the split cancels the calls in flight.
            Some((at, margin)) => {
                let timer = tokio::spawn(async move {
                    tokio::time::sleep_until(at).await;
                    stop.store(true, Ordering::Relaxed);
                });
                let r = tokio::time::timeout_at(at + margin * 3 / 4, split).await;
                timer.abort();
                r.map_err(|_| SplitterError::Deadline {
                    bucket: run.input.bucket.clone(),
                    key: run.input.key.clone(),
                    size: run
                        .input
                        .size
                        .map(|n| format!(" ({n} bytes)"))
                        .unwrap_or_default(),
                    elapsed: started.elapsed(),
                    margin,
                })?
            }
            None => split.await,
        };
        let mut done = run.note.as_ref().map(|(_, n)| n.done).unwrap_or_default();
        let mut rejects = run
            .note
            .as_ref()
            .map(|(_, n)| n.rejects())
            .unwrap_or_default();
        let summary = match result {
            Ok(report) => {
                done.add(&report.stats, report.put.records, report.put.calls);
                done.skipped_bytes += report.skipped;
                done.inputs_failed += report.inputs_failed;
                rejects.extend(report.rejects.iter().cloned());
                rejects.truncate(self.settings.max_rejects_kept);
                self.part_done(&run, report, done, rejects, summary).await?
            }
            Err(PartError { error: source, .. }) if source.is_retryable() => {
                return Err(SplitterError::Retryable {
                    bucket: run.input.bucket.clone(),
                    key: run.input.key.clone(),
                    source,
                })
            }
            Err(PartError {
                error: e,
                rejects: found,
                stats,
                put,
            }) => {
                error!(object = %summary.object, part = summary.part, error = %e, "the object cannot be split; reported, not retried");
                summary.outcome = "failed";
                summary.error = Some(e.to_string());
                // The rows before the failure were put: the summary counts them, and their
                // records and calls.
                done.add(&stats, put.records, put.calls);
                summary.counts = done;
                // The rows rejected before the failure are reported with it, not lost.
                rejects.extend(found);
                rejects.truncate(self.settings.max_rejects_kept.saturating_sub(1));
                rejects.push(report::failure_row(&run.input, &e));
                summary.rejects_report = self.write_report(&run.input, &rejects).await?;
                summary
            }
        };
        self.remove_note(&run).await;
        Ok(summary)
    }

    /// Reads the note `object`. `Err` outside when it may be read later; inside, `None` when it
    /// is gone (an earlier delivery of the event used it), else why it can never be used.
    async fn read_note(
        &self,
        object: &ObjectRef,
    ) -> Result<Result<(Note, Handover), Option<String>>, SplitterError> {
        let read = read_small(
            self.source.as_ref(),
            &object.bucket,
            &object.key,
            handover::MAX_NOTE_BYTES,
        )
        .await;
        let bytes = match read {
            Ok((_, bytes)) => bytes,
            Err(e) if e.is_retryable() => return Err(SplitterError::Note(e.to_string())),
            Err(SourceError::NotFound { .. }) => return Ok(Err(None)),
            Err(e) => return Ok(Err(Some(e.to_string()))),
        };
        let note = Note::from_json(&bytes).and_then(|n| Ok((n.handover()?, n)));
        Ok(note
            .map(|(from, note)| (note, from))
            .map_err(|e: NoteError| Some(e.to_string())))
    }

    /// Removes the note this part started from, now that it is done with (logged if not).
    async fn remove_note(&self, run: &Run) {
        if let Some((note, _)) = &run.note {
            if let Err(e) = self.sink.delete_object(&note.bucket, &note.key).await {
                warn!(error = %e, "a used hand-over note could not be removed; check the role's s3:DeleteObject permission");
            }
        }
    }

    /// Writes `note` as `bucket`/`key` for the next part; `false` when a note of the same
    /// chain is already there (another run of this event wrote it: see [`crate::handover`]),
    /// so that this run stops instead of starting a second chain.
    async fn write_note(
        &self,
        bucket: &str,
        key: &str,
        note: &Note,
    ) -> Result<bool, SplitterError> {
        // Without its note the rest cannot be split: fail the invocation so that it is
        // retried, and say what to fix.
        let failed = |e: SinkError| {
            SplitterError::Note(if e.is_retryable() {
                e.to_string()
            } else {
                format!(
                    "{e}; check METERFLOW_HANDOVER_PREFIX and the role's s3:PutObject permission"
                )
            })
        };
        let body = Bytes::from(note.to_json());
        let content_type = "application/json";
        if note.chain.is_some() {
            let there = ObjectRef::new(bucket, key);
            // A few times at most: a note that was there may be used and removed before it is
            // read, and S3 answers 409 to a conditional write that races another write of the
            // key, asking for a retry.
            for attempt in 1..=NOTE_WRITE_ATTEMPTS {
                match self
                    .sink
                    .put_object_if_absent(bucket, key, body.clone(), content_type)
                    .await
                {
                    Ok(true) => return Ok(true),
                    Ok(false) => {}
                    Err(e) if e.is_retryable() && attempt < NOTE_WRITE_ATTEMPTS => {
                        warn!(error = %e, attempt, "writing the hand-over note failed; trying again");
                        tokio::time::sleep(Duration::from_millis(50 << attempt)).await;
                        continue;
                    }
                    Err(e) => return Err(failed(e)),
                }
                match self.read_note(&there).await? {
                    Ok((other, _)) if other.same_chain(note) => return Ok(false),
                    // Gone meanwhile: try again.
                    Err(None) => continue,
                    // Another chain's, or unreadable: replaced below.
                    _ => break,
                }
            }
        }
        self.sink
            .put_object(bucket, key, body, content_type)
            .await
            .map_err(failed)?;
        Ok(true)
    }

    async fn part_done(
        &self,
        run: &Run,
        report: SplitReport,
        done: Done,
        rejects: Vec<Reject>,
        mut summary: ObjectSummary,
    ) -> Result<ObjectSummary, SplitterError> {
        summary.counts = done;
        let reported =
            done.rows_rejected + done.records_rejected + done.warnings + done.inputs_failed;
        summary.rejects_unlisted = reported.saturating_sub(rejects.len() as u64);
        if let Some(at) = &report.handover {
            let next = run.part() + 1;
            let note = Note::new(&run.input, next, at, done, &rejects);
            let (bucket, key) = handover::location(&run.input, next, self.handover_prefix.as_ref());
            summary.handover_note = Some(format!("s3://{bucket}/{key}"));
            if self.write_note(&bucket, &key, &note).await? {
                info!(object = %summary.object, part = summary.part, offset = at.resume.offset, line = at.resume.line, "handed over");
                summary.outcome = "handed_over";
            } else {
                info!(object = %summary.object, part = summary.part, note = ?summary.handover_note, "another delivery of this event already handed the rest over; this run's writes repeated its idempotent ones");
                summary.outcome = "duplicate";
            }
            return Ok(summary);
        }
        summary.outcome = "split";
        if summary.rejects_unlisted > 0 {
            warn!(object = %summary.object, unlisted = summary.rejects_unlisted, "more rejects than METERFLOW_MAX_REJECTS: the report lists the first ones");
        }
        if rejects.is_empty() {
            self.remove_stale_report(&run.input).await;
        } else {
            summary.rejects_report = self.write_report(&run.input, &rejects).await?;
        }
        Ok(summary)
    }

    /// Removes the report an earlier version of `object` may have left, so that a report in
    /// the bucket always belongs to the newest version that was split. A failure is logged,
    /// not returned: splitting the whole object again would not be worth a stale report.
    async fn remove_stale_report(&self, object: &ObjectRef) {
        let (bucket, key) = report::location(object, self.rejects_prefix.as_ref());
        if let Err(e) = self.sink.delete_object(&bucket, &key).await {
            warn!(error = %e, "an earlier rejects report could not be removed; check the role's s3:DeleteObject permission");
        }
    }

    /// Writes a report; `s3://…` of it, or `None` when it could not be written for good
    /// (logged: a lost report must not make the data be split again and again).
    async fn write_report(
        &self,
        object: &ObjectRef,
        rejects: &[Reject],
    ) -> Result<Option<String>, SplitterError> {
        let (bucket, key) = report::location(object, self.rejects_prefix.as_ref());
        let body = Bytes::from(report::csv(rejects));
        match self.sink.put_object(&bucket, &key, body, "text/csv").await {
            Ok(()) => Ok(Some(format!("s3://{bucket}/{key}"))),
            Err(e) if e.is_retryable() => Err(SplitterError::Report(e)),
            Err(e) => {
                error!(error = %e, "the rejects report cannot be written; check METERFLOW_REJECTS_PREFIX and the role's s3:PutObject permission");
                Ok(None)
            }
        }
    }
}

/// When to give up on an invocation that started at `now` and must end by `deadline`, and the
/// margin that leaves: the configured margin, capped at a fifth of the time there is. A fixed
/// margin alone would stop at once any function whose timeout is shorter than it (Lambda's
/// default timeout is 3 s).
pub fn stop_time(now: Instant, deadline: Instant, margin: Duration) -> (Instant, Duration) {
    let margin = margin.min(deadline.saturating_duration_since(now) / 5);
    (deadline - margin, margin)
}

/// The tokio instant of a wall-clock deadline (`Context::deadline()`), or `None` when it is not
/// in the future. Lambda always gives a future deadline; a local runtime emulator may send a
/// stale or missing one (seen with `cargo lambda watch`), and stopping at once would make every
/// local run fail, so such an invocation runs without a deadline (the caller logs it).
pub fn instant_of(deadline: SystemTime) -> Option<Instant> {
    match deadline.duration_since(SystemTime::now()) {
        Ok(left) if !left.is_zero() => Some(Instant::now() + left),
        _ => None,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::collections::HashMap;
    use std::time::UNIX_EPOCH;

    #[test]
    fn a_deadline_not_in_the_future_is_no_deadline() {
        let now = SystemTime::now();
        assert!(instant_of(now - Duration::from_secs(1)).is_none());
        assert!(instant_of(UNIX_EPOCH).is_none());
        let at = instant_of(now + Duration::from_secs(60)).unwrap();
        let left = at.saturating_duration_since(Instant::now());
        assert!(left > Duration::from_secs(50) && left <= Duration::from_secs(60));
    }

    #[test]
    fn the_margin_is_at_most_a_fifth_of_the_time_left() {
        let now = Instant::now();
        let s = Duration::from_secs;
        let ten = s(10);
        // 15 min: the configured margin.
        assert_eq!(stop_time(now, now + s(900), ten), (now + s(890), ten));
        // 30 s: 6 s; 3 s (Lambda's default): 600 ms.
        assert_eq!(stop_time(now, now + s(30), ten), (now + s(24), s(6)));
        let ms = Duration::from_millis;
        assert_eq!(stop_time(now, now + s(3), ten), (now + ms(2400), ms(600)));
        // Already past: stop now, no margin.
        assert_eq!(stop_time(now + s(1), now, ten), (now, Duration::ZERO));
    }

    #[test]
    fn the_config_needs_a_stream_and_checks_its_numbers() {
        let mut vars: HashMap<&str, &str> = HashMap::new();
        let e = SplitterConfig::from_vars(&vars).unwrap_err();
        assert!(
            e.to_string().starts_with("METERFLOW_STREAM is not set"),
            "{e}"
        );
        vars.insert("METERFLOW_STREAM", "fragments");
        let c = SplitterConfig::from_vars(&vars).unwrap();
        assert_eq!(
            (
                c.buckets,
                c.put_concurrency,
                c.max_rejects,
                c.deadline_margin
            ),
            (64, 4, 10_000, Duration::from_secs(10))
        );
        assert_eq!(c.rejects_prefix, None);
        assert_eq!(
            (c.max_bytes_per_invocation, c.handover_prefix),
            (None, None)
        );
        vars.insert("METERFLOW_MAX_BYTES_PER_INVOCATION", "4294967296");
        vars.insert("METERFLOW_HANDOVER_PREFIX", "s3://ops/notes");
        let c = SplitterConfig::from_vars(&vars).unwrap();
        assert_eq!(c.max_bytes_per_invocation, Some(4 << 30));
        assert_eq!(c.handover_prefix.unwrap().prefix, "notes/");
        vars.insert("METERFLOW_MAX_BYTES_PER_INVOCATION", "1000");
        let e = SplitterConfig::from_vars(&vars).unwrap_err();
        assert!(e.to_string().contains("from 1048576"), "{e}");
        vars.remove("METERFLOW_MAX_BYTES_PER_INVOCATION");
        vars.insert("METERFLOW_PARTITION_BUCKETS", "0");
        let e = SplitterConfig::from_vars(&vars).unwrap_err();
        assert!(
            e.to_string().contains("METERFLOW_PARTITION_BUCKETS=\"0\""),
            "{e}"
        );
    }
}
