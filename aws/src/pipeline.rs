//! One S3 object through the splitter into Kinesis: the body of the splitter Lambda.
//!
//! Three stages run at once, joined by bounded channels so memory stays flat: the fetching task
//! of [`s3::open`] (ranged GETs), a blocking thread that decompresses (`for_each_input`) and
//! splits, and the [`Shipper`] with its PutRecords calls in flight. When the shipper fails it
//! drops its channel; the splitting thread notices at its next read and stops, instead of
//! parsing the rest of a large file for nothing.

use std::io;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;

use meterflow_core::decompress::{for_each_input, DecompressError, Limits};
use meterflow_core::{FileError, Options, Reject, Stats};
use meterflow_splitter::{split, Output, PackSettings, SplitError, StreamRecord};
use tokio::sync::mpsc;

use crate::event::ObjectRef;
use crate::kinesis::{PutError, PutReport, RecordStream, Shipper};
use crate::s3::{self, ObjectInfo, ObjectSource, ReadSettings, SourceError};

/// How to split one object.
#[derive(Debug, Clone, Copy)]
pub struct PipelineSettings {
    pub pack: PackSettings,
    pub read: ReadSettings,
    pub limits: Limits,
    /// Records queued between the splitter and the shipper (each up to 1 MiB).
    pub queued_records: usize,
    /// Rejects kept for the report; more are counted only.
    pub max_rejects_kept: usize,
}

impl Default for PipelineSettings {
    fn default() -> Self {
        PipelineSettings {
            pack: PackSettings::default(),
            read: ReadSettings::default(),
            limits: Limits::default(),
            queued_records: 8,
            max_rejects_kept: 10_000,
        }
    }
}

/// What splitting one object did.
#[derive(Debug, Clone)]
pub struct SplitReport {
    pub object: ObjectInfo,
    /// Inputs inside it (1, or a zip's entries).
    pub inputs: u64,
    pub stats: Stats,
    pub put: PutReport,
    /// The first rejects (see [`PipelineSettings::max_rejects_kept`]); `stats` counts all.
    pub rejects: Vec<Reject>,
}

/// Why an object could not be split.
#[derive(Debug, thiserror::Error)]
pub enum PipelineError {
    #[error(transparent)]
    Source(SourceError),
    #[error("{input}: {source}")]
    Input { input: String, source: io::Error },
    #[error(transparent)]
    File(FileError),
    #[error(transparent)]
    Put(PutError),
    #[error("the splitting thread panicked")]
    Panicked,
}

impl PipelineError {
    /// Whether running the whole object again may succeed (fail the invocation so it is
    /// retried; the pipeline is idempotent). A bad header or a corrupt archive fails again.
    pub fn is_retryable(&self) -> bool {
        match self {
            PipelineError::Source(e) => e.is_retryable(),
            PipelineError::Input { source, .. } => DecompressError::of(source).is_none(),
            PipelineError::File(_) => false,
            PipelineError::Put(e) => e.is_retryable(),
            PipelineError::Panicked => false,
        }
    }
}

/// Sends records to the shipper from the blocking thread.
struct ChannelOutput {
    tx: mpsc::Sender<StreamRecord>,
    closed: Arc<AtomicBool>,
    rejects: Vec<Reject>,
    max_rejects: usize,
}

impl Output for ChannelOutput {
    fn record(&mut self, record: StreamRecord) {
        if self.tx.blocking_send(record).is_err() {
            // The shipper failed; its error is the one reported. Stop reading (see below).
            self.closed.store(true, Ordering::Relaxed);
        }
    }

    fn reject(&mut self, reject: Reject) {
        if self.rejects.len() < self.max_rejects {
            self.rejects.push(reject);
        }
    }
}

/// A reader that fails once `closed` is set (the records' consumer is gone), so the splitter
/// stops at its next read instead of parsing the rest of a large input for nothing.
pub struct StopWhenClosed<R> {
    inner: R,
    closed: Arc<AtomicBool>,
}

impl<R> StopWhenClosed<R> {
    pub fn new(inner: R, closed: Arc<AtomicBool>) -> StopWhenClosed<R> {
        StopWhenClosed { inner, closed }
    }
}

impl<R: io::Read> io::Read for StopWhenClosed<R> {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        if self.closed.load(Ordering::Relaxed) {
            return Err(io::Error::other("the record stream failed"));
        }
        self.inner.read(buf)
    }
}

/// Reads `object` from `source`, splits it and puts its records with `shipper`. Must run on a
/// multi-threaded tokio runtime (the splitter runs on a blocking thread).
pub async fn split_object<Src: ObjectSource, St: RecordStream>(
    source: Arc<Src>,
    object: &ObjectRef,
    shipper: &Shipper<St>,
    settings: PipelineSettings,
) -> Result<SplitReport, PipelineError> {
    let info = source
        .head(&object.bucket, &object.key, object.version_id.as_deref())
        .await
        .map_err(PipelineError::Source)?;
    let reader = s3::open(
        &tokio::runtime::Handle::current(),
        source,
        info.clone(),
        0,
        settings.read,
    );
    let (tx, rx) = mpsc::channel(settings.queued_records.max(1));
    let closed = Arc::new(AtomicBool::new(false));
    let name = info.source_id();
    let version = info.last_modified_ms;
    let stop = Arc::clone(&closed);
    let splitting = tokio::task::spawn_blocking(move || {
        let mut out = ChannelOutput {
            tx,
            closed: stop.clone(),
            rejects: Vec::new(),
            max_rejects: settings.max_rejects_kept,
        };
        let mut stats = Stats::default();
        let mut file_error = None;
        let reader = StopWhenClosed::new(reader, stop);
        let inputs = for_each_input(reader, &name, settings.limits, |input, r| {
            match split(r, Options::new(input, version), settings.pack, &mut out) {
                Ok(s) => {
                    stats.add(&s);
                    Ok(())
                }
                Err(SplitError::Io { source, .. }) => Err(source),
                Err(SplitError::File(e)) => {
                    let msg = e.to_string();
                    file_error = Some(e);
                    Err(io::Error::new(io::ErrorKind::InvalidData, msg))
                }
            }
        });
        (inputs, stats, out.rejects, file_error)
    });
    let shipped = shipper.ship(rx).await;
    let (inputs, stats, rejects, file_error) =
        splitting.await.map_err(|_| PipelineError::Panicked)?;
    // The shipper's failure explains the splitter's (it closed the channel): report it first.
    let put = shipped.map_err(PipelineError::Put)?;
    if let Some(e) = file_error {
        return Err(PipelineError::File(e));
    }
    let inputs = inputs.map_err(|e| match SourceError::of(&e) {
        Some(s) => PipelineError::Source(s.clone()),
        None => PipelineError::Input {
            input: info.source_id(),
            source: e,
        },
    })?;
    Ok(SplitReport {
        object: info,
        inputs,
        stats,
        put,
        rejects,
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::kinesis::{throttled, Fault, Faulty, Recording};
    use crate::retry::RetryPolicy;
    use crate::s3::InMemory;
    use bytes::Bytes;
    use meterflow_core::envelope::decode;
    use meterflow_core::synth::Spec;
    use meterflow_core::{daily_totals, Format};
    use std::time::Duration;

    fn memory(data: Vec<u8>) -> Arc<InMemory> {
        Arc::new(InMemory {
            info: ObjectInfo {
                bucket: "b".into(),
                key: "k.csv".into(),
                size: data.len() as u64,
                etag: Some("e1".into()),
                version_id: None,
                last_modified_ms: 1_546_300_800_000,
            },
            data: Bytes::from(data),
            chunk: 7000,
        })
    }

    fn object() -> ObjectRef {
        ObjectRef {
            bucket: "b".into(),
            key: "k.csv".into(),
            version_id: None,
            etag: None,
            size: None,
            sequencer: None,
        }
    }

    fn fast() -> RetryPolicy {
        RetryPolicy {
            max_attempts: 3,
            base: Duration::from_micros(10),
            cap: Duration::from_micros(100),
        }
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn an_object_splits_into_records_with_exact_totals() {
        let spec = Spec::new(50, 10);
        let src = memory(spec.generate(Format::Wide).unwrap());
        let mut shipper = Shipper::new(Arc::new(Recording::default()), 8);
        shipper.policy = fast();
        let settings = PipelineSettings {
            pack: PackSettings {
                buckets: 8,
                max_record_bytes: 2048,
                max_held_bytes: 16 * 1024,
            },
            ..PipelineSettings::default()
        };
        let report = split_object(src, &object(), &shipper, settings)
            .await
            .unwrap();
        assert_eq!(report.stats.rows_accepted, 500);
        assert_eq!(report.inputs, 1);
        let entries = shipper.stream.entries.lock().unwrap().clone();
        assert_eq!(report.put.records, entries.len() as u64);
        let fragments: Vec<_> = entries
            .iter()
            .flat_map(|e| decode(&e.data).unwrap())
            .collect();
        assert!(fragments
            .iter()
            .all(|f| &*f.source == "s3://b/k.csv#e1" && f.version == 1_546_300_800_000));
        let got: Vec<i64> = daily_totals(fragments.iter())
            .iter()
            .map(|t| t.total)
            .collect();
        let mut want = spec.totals(Format::Wide);
        want.sort();
        assert_eq!(got, want.iter().map(|t| t.total).collect::<Vec<_>>());
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn a_failing_stream_fails_the_split_with_its_error() {
        let spec = Spec::new(400, 30);
        let src = memory(spec.generate(Format::Wide).unwrap());
        let always = (0..1000).map(|_| Some(Fault::Call(throttled()))).collect();
        let mut shipper = Shipper::new(Arc::new(Faulty::new(Recording::default(), always)), 8);
        shipper.policy = fast();
        shipper.max_in_flight = 1;
        let settings = PipelineSettings {
            pack: PackSettings {
                buckets: 8,
                max_record_bytes: 1024,
                max_held_bytes: 8 * 1024,
            },
            queued_records: 1,
            ..PipelineSettings::default()
        };
        let e = split_object(src, &object(), &shipper, settings)
            .await
            .unwrap_err();
        assert!(matches!(e, PipelineError::Put(_)), "{e}");
        assert!(e.is_retryable());
        assert_eq!(shipper.stream.calls(), 3, "one batch's attempts, then stop");
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn a_bad_header_is_a_permanent_file_error() {
        let src = memory(b"this is not,a meter file\n1,2\n".to_vec());
        let shipper = Shipper::new(Arc::new(Recording::default()), 8);
        let e = split_object(src, &object(), &shipper, PipelineSettings::default())
            .await
            .unwrap_err();
        assert!(matches!(e, PipelineError::File(_)), "{e}");
        assert!(!e.is_retryable());
    }
}
