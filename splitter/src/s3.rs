//! One S3 object through the splitter into Kinesis: the body of the splitter Lambda.
//!
//! Three stages run at once, joined by bounded channels so memory stays flat: the fetching task
//! of [`s3::open`] (ranged GETs), a blocking thread that runs the object driver
//! ([`crate::object::split_object`]: decompress and split), and the [`Shipper`] with its
//! PutRecords calls in flight. When the shipper fails it drops its channel; the splitting
//! thread notices at its next read and stops, instead of parsing the rest of a large file for
//! nothing.
//!
//! An object too large for one invocation is split in parts ([`ship_object_part`]): told to
//! stop, the splitting thread cuts the input at the next row boundary, the shipper puts what
//! was packed before it, and the [`Handover`] says where the next part starts.

use std::io;
use std::sync::atomic::AtomicBool;
use std::sync::Arc;

use meterflow_aws::event::ObjectRef;
use meterflow_aws::kinesis::{PutError, PutReport, RecordStream, Shipper};
use meterflow_aws::s3::{self, ObjectInfo, ObjectSource, ReadSettings, SourceError};
use meterflow_core::decompress::DecompressError;
use meterflow_core::{FileError, Reject, Stats};
use tokio::sync::mpsc;

use crate::channel::{ChannelOutput, StopWhenClosed};
use crate::object::{split_object, Handover, ObjectFailure, ObjectName, Part, SplitSettings};

/// How to split one object.
#[derive(Debug, Clone, Copy)]
pub struct PipelineSettings {
    pub split: SplitSettings,
    pub read: ReadSettings,
    /// Records queued between the splitter and the shipper (each up to 1 MiB): enough to
    /// keep the shipper's next batch ready while calls are in flight, few enough to keep the
    /// Lambda's memory flat (see `bench/splitter_rss.sh`).
    pub queued_records: usize,
    /// Rejects kept for the report; more are counted only.
    pub max_rejects_kept: usize,
}

impl Default for PipelineSettings {
    fn default() -> Self {
        PipelineSettings {
            split: SplitSettings::default(),
            read: ReadSettings::default(),
            queued_records: 4,
            max_rejects_kept: 10_000,
        }
    }
}

/// What splitting one object (or one part of it) did.
#[derive(Debug, Clone)]
pub struct SplitReport {
    pub object: ObjectInfo,
    /// Inputs inside it (1, or a zip's entries) begun in this part.
    pub inputs: u64,
    /// Entries of a zip that failed alone in this part (each also a line of `rejects`, of kind
    /// `file`); the others were split.
    pub inputs_failed: u64,
    pub stats: Stats,
    pub put: PutReport,
    /// The first rejects (see [`PipelineSettings::max_rejects_kept`]); `stats` counts all.
    pub rejects: Vec<Reject>,
    /// Decompressed bytes inflated only to reach this part's start (see
    /// [`crate::object::ObjectReport::skipped`]).
    pub skipped: u64,
    /// Where the next part starts, when this one was told to stop before the end.
    pub handover: Option<Handover>,
}

/// A part that failed, with the rejects it had found before the failure: they belong in the
/// report of a permanent failure too, not only the failure itself.
#[derive(Debug, thiserror::Error)]
#[error("{error}")]
pub struct PartError {
    pub error: PipelineError,
    pub rejects: Vec<Reject>,
    /// The rows split before the failure (their records were put unless putting failed).
    pub stats: Stats,
    /// What was put before the failure (nothing is known when putting failed).
    pub put: PutReport,
}

impl From<PipelineError> for PartError {
    fn from(error: PipelineError) -> Self {
        PartError {
            error,
            rejects: Vec::new(),
            stats: Stats::default(),
            put: PutReport::default(),
        }
    }
}

/// Why an object could not be split.
#[derive(Debug, thiserror::Error)]
pub enum PipelineError {
    #[error(transparent)]
    Source(SourceError),
    #[error("{}", crate::object::read_message(input, source))]
    Input { input: String, source: io::Error },
    #[error(transparent)]
    File(FileError),
    #[error(transparent)]
    Put(PutError),
    #[error("the splitting thread panicked")]
    Panicked,
    #[error("{object} changed (ETag {now:?}, was {was:?}) before all its parts were split; the new version is split from its own upload event")]
    Replaced {
        object: String,
        was: Option<String>,
        now: Option<String>,
    },
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
            PipelineError::Panicked | PipelineError::Replaced { .. } => false,
        }
    }
}

/// Reads `object` from `source`, splits it and puts its records with `shipper`. Must run on a
/// multi-threaded tokio runtime (the splitter runs on a blocking thread).
pub async fn ship_object<Src: ObjectSource, St: RecordStream>(
    source: Arc<Src>,
    object: &ObjectRef,
    shipper: &Shipper<St>,
    settings: PipelineSettings,
) -> Result<SplitReport, PipelineError> {
    ship_object_part(source, object, shipper, settings, Part::default())
        .await
        .map_err(|e| e.error)
}

/// [`ship_object`] for one part of an object: from `part.from`, until told to stop.
pub async fn ship_object_part<Src: ObjectSource, St: RecordStream>(
    source: Arc<Src>,
    object: &ObjectRef,
    shipper: &Shipper<St>,
    settings: PipelineSettings,
    part: Part,
) -> Result<SplitReport, PartError> {
    let info = source
        .head(&object.bucket, &object.key, object.version_id.as_deref())
        .await
        .map_err(PipelineError::Source)?;
    if let Some(h) = part.from.as_ref().filter(|h| h.etag != info.etag) {
        return Err(PipelineError::Replaced {
            object: info.name(),
            was: h.etag.clone(),
            now: info.etag.clone(),
        }
        .into());
    }
    let start = match &part.from {
        Some(h) if h.plain => h.resume.offset,
        Some(h) => h.access.as_ref().map_or(0, |a| a.compressed),
        None => 0,
    };
    let reader = s3::open(
        &tokio::runtime::Handle::current(),
        source,
        info.clone(),
        start,
        settings.read,
    );
    let (tx, rx) = mpsc::channel(settings.queued_records.max(1));
    let closed = Arc::new(AtomicBool::new(false));
    let name = ObjectName {
        object: info.name(),
        delivery: info.delivery().map(str::to_owned),
        version: info.last_modified_ms,
        etag: info.etag.clone(),
    };
    let stop = Arc::clone(&closed);
    let splitting = tokio::task::spawn_blocking(move || {
        let mut rejects = Vec::new();
        let max = settings.max_rejects_kept;
        let mut out = ChannelOutput::new(tx, stop.clone(), |r| {
            if rejects.len() < max {
                rejects.push(r);
            }
        });
        let reader = StopWhenClosed::new(reader, stop);
        let result = split_object(reader, &name, &settings.split, &part, &mut out);
        drop(out);
        (result, rejects)
    });
    let shipped = shipper.ship(rx).await;
    let (result, mut rejects) = splitting.await.map_err(|_| PipelineError::Panicked)?;
    let (done, failure) = match result {
        Ok(done) => (done, None),
        Err(e) => (*e.done, Some(e.error)),
    };
    // Failed zip entries are lines of the report too.
    rejects.extend(done.failed_entries.iter().cloned());
    let failed = |error, put| PartError {
        error,
        rejects: rejects.clone(),
        stats: done.stats,
        put,
    };
    // The shipper's failure explains the splitter's (it closed the channel): report it first.
    let put = shipped.map_err(|e| failed(PipelineError::Put(e), PutReport::default()))?;
    match failure {
        None => {}
        Some(ObjectFailure::File(e)) => return Err(failed(PipelineError::File(e), put)),
        Some(ObjectFailure::Read { object, source }) => {
            let error = match SourceError::of(&source) {
                Some(s) => PipelineError::Source(s.clone()),
                None => PipelineError::Input {
                    input: object,
                    source,
                },
            };
            return Err(failed(error, put));
        }
    }
    Ok(SplitReport {
        object: info,
        inputs: done.inputs,
        inputs_failed: done.failed_entries.len() as u64,
        stats: done.stats,
        put,
        rejects,
        skipped: done.skipped,
        handover: done.handover,
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::pack::PackSettings;
    use bytes::Bytes;
    use meterflow_aws::retry::RetryPolicy;
    use meterflow_core::synth::Spec;
    use meterflow_core::{daily_totals, Format, Fragment, RejectKind};
    use meterflow_testkit::kinesis::{throttled, Fault, Faulty, Recording};
    use meterflow_testkit::s3::{Breaking, InMemory};
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
        ObjectRef::new("b", "k.csv")
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
            split: SplitSettings::packing(PackSettings {
                buckets: 8,
                max_record_bytes: 2048,
                max_held_bytes: 16 * 1024,
            }),
            ..PipelineSettings::default()
        };
        let report = ship_object(src, &object(), &shipper, settings)
            .await
            .unwrap();
        assert_eq!(report.stats.rows_accepted, 500);
        assert_eq!(report.inputs, 1);
        let records = shipper.stream.entries.lock().unwrap().len();
        assert_eq!(report.put.records, records as u64);
        let fragments = shipper.stream.fragments();
        assert!(fragments
            .iter()
            .all(|f| &*f.source == "s3://b/k.csv#@e1" && f.version == 1_546_300_800_000));
        assert_exact(&spec, Format::Wide, &fragments);
    }

    /// The fragments' daily totals are the spec's, exactly.
    fn assert_exact(spec: &Spec, format: Format, fragments: &[Fragment]) {
        let mut want = spec.totals(format);
        want.sort();
        let got: Vec<i64> = daily_totals(fragments.iter())
            .iter()
            .map(|t| t.total)
            .collect();
        assert_eq!(got, want.iter().map(|t| t.total).collect::<Vec<_>>());
    }

    /// Default settings for a stream of 8 buckets.
    fn eight() -> PipelineSettings {
        let mut settings = PipelineSettings::default();
        settings.split.pack.buckets = 8;
        settings
    }

    /// Splits `data` part after part (each stopping after `max_bytes`) until one is not cut:
    /// the reports and the fragments put.
    async fn in_parts(data: Vec<u8>, max_bytes: u64) -> (Vec<SplitReport>, Vec<Fragment>) {
        in_parts_from(memory(data), max_bytes).await
    }

    /// [`in_parts`] from any source.
    async fn in_parts_from<S: ObjectSource>(
        src: Arc<S>,
        max_bytes: u64,
    ) -> (Vec<SplitReport>, Vec<Fragment>) {
        let shipper = Shipper::new(Arc::new(Recording::default()), 8);
        let (mut reports, mut from) = (Vec::new(), None);
        loop {
            let part = Part {
                from,
                max_bytes: Some(max_bytes),
                ..Part::default()
            };
            let report = ship_object_part(Arc::clone(&src), &object(), &shipper, eight(), part)
                .await
                .unwrap();
            from = report.handover.clone();
            reports.push(report);
            if from.is_none() {
                break;
            }
        }
        (reports, shipper.stream.fragments())
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn a_plain_or_gzip_object_split_in_parts_puts_every_row_once() {
        let spec = Spec::new(60, 31);
        let plain = spec.generate(Format::Nem12).unwrap();
        let (whole, _) = in_parts(plain.clone(), u64::MAX).await;
        assert_eq!(whole.len(), 1);
        let mut gz = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::fast());
        std::io::Write::write_all(&mut gz, &plain).unwrap();
        for (data, compressed) in [(plain.clone(), false), (gz.finish().unwrap(), true)] {
            let (reports, fragments) = in_parts(data, 200_000).await;
            assert!(reports.len() > 3, "{}", reports.len());
            let handovers: Vec<&Handover> = reports.iter().flat_map(|r| &r.handover).collect();
            assert!(handovers
                .iter()
                .all(|h| h.plain != compressed && h.input == 0));
            assert!(handovers.iter().all(|h| h.etag.as_deref() == Some("e1")));
            let offsets: Vec<u64> = handovers.iter().map(|h| h.resume.offset).collect();
            assert!(offsets.windows(2).all(|w| w[0] < w[1]), "{offsets:?}");
            let mut sum = Stats::default();
            reports.iter().for_each(|r| sum.add(&r.stats));
            assert_eq!(sum, whole[0].stats);
            assert_exact(&spec, Format::Nem12, &fragments);
        }
    }

    /// A `.gz` object handed over in many parts: each later part reads the object from the
    /// access point kept before its cut and inflates only the bytes from there, so the work
    /// for the file is O(file), not O(parts × file); the whole is exact.
    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn a_gzip_object_in_parts_enters_each_part_at_an_access_point() {
        let spec = Spec::new(300, 31);
        let plain = spec.generate(Format::Wide).unwrap();
        let mut gz = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::default());
        std::io::Write::write_all(&mut gz, &plain).unwrap();
        let gz = gz.finish().unwrap();
        let src = Arc::new(Breaking::new(
            Arc::unwrap_or_clone(memory(gz.clone())),
            0,
            0,
        ));
        let (reports, fragments) = in_parts_from(Arc::clone(&src), 300_000).await;
        assert!(reports.len() >= 5, "{} parts", reports.len());
        let mut sum = Stats::default();
        reports.iter().for_each(|r| sum.add(&r.stats));
        assert_eq!(sum.bytes, plain.len() as u64);
        assert_eq!(sum.rows_accepted, 300 * 31);
        assert_exact(&spec, Format::Wide, &fragments);
        // Each later part enters the object where the previous one's note says, and inflates
        // at most the bytes from that point to the cut before its share.
        let ranges = src.ranges();
        for (k, pair) in reports.windows(2).enumerate() {
            let h = pair[0].handover.as_ref().unwrap();
            let at = h.access.as_ref().expect("an access point before every cut");
            assert!(at.out <= h.resume.offset && at.compressed > 0);
            assert_eq!(pair[1].skipped, h.resume.offset - at.out);
            // At most a deflate block (~128 KiB of output here) and the points' spacing.
            assert!(
                pair[1].skipped < 256 << 10,
                "part {}: {}",
                k + 2,
                pair[1].skipped
            );
            assert!(
                ranges.iter().any(|r| r.start == at.compressed),
                "{ranges:?}"
            );
        }
        // Inflating each part from the start would have cost the sum of the cuts' offsets.
        let inflated: u64 = reports.iter().map(|r| r.stats.bytes + r.skipped).sum();
        let parts = reports.len() as u64;
        assert!(inflated <= plain.len() as u64 + (parts - 1) * (256 << 10));
        let restarting: u64 = reports
            .iter()
            .flat_map(|r| &r.handover)
            .map(|h| h.resume.offset)
            .sum();
        assert!(
            inflated < (plain.len() as u64 + restarting) / 2,
            "{inflated} vs {restarting}"
        );
    }

    /// A zip of two inputs (a wide file, then a NEM12 file) cut in many parts: later parts
    /// skip to the right entry and offset, and the whole adds up to one split's.
    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn a_zip_split_in_parts_resumes_in_the_right_entry() {
        let zip = include_bytes!("../tests/fixtures/two_inputs.zip").to_vec();
        let (whole, whole_fragments) = in_parts(zip.clone(), u64::MAX).await;
        assert_eq!((whole.len(), whole[0].inputs), (1, 2));
        let (reports, fragments) = in_parts(zip, 60_000).await;
        let handovers: Vec<&Handover> = reports.iter().flat_map(|r| &r.handover).collect();
        let entries: Vec<u64> = handovers.iter().map(|h| h.input).collect();
        assert!(entries.contains(&0) && entries.contains(&1), "{entries:?}");
        assert!(entries.windows(2).all(|w| w[0] <= w[1]), "{entries:?}");
        assert!(handovers.iter().all(|h| !h.plain));
        let formats: Vec<Format> = handovers.iter().map(|h| h.resume.format).collect();
        assert!(formats.contains(&Format::Wide) && formats.contains(&Format::Nem12));
        let mut sum = Stats::default();
        reports.iter().for_each(|r| sum.add(&r.stats));
        assert_eq!(sum, whole[0].stats);
        assert_eq!(
            daily_totals(fragments.iter()),
            daily_totals(whole_fragments.iter())
        );
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn a_later_part_of_a_replaced_object_fails_for_good() {
        let src = memory(Spec::new(5, 5).generate(Format::Wide).unwrap());
        let shipper = Shipper::new(Arc::new(Recording::default()), 8);
        let stop = Arc::new(AtomicBool::new(true));
        let part = Part {
            stop,
            ..Part::default()
        };
        let first = ship_object_part(Arc::clone(&src), &object(), &shipper, eight(), part)
            .await
            .unwrap();
        let mut from = first.handover.expect("stopped at once: handed over");
        assert_eq!(from.resume.line, 2, "right after the header");
        from.etag = Some("an older upload".into());
        let part = Part {
            from: Some(from),
            ..Part::default()
        };
        let e = ship_object_part(src, &object(), &shipper, eight(), part)
            .await
            .unwrap_err();
        assert!(
            matches!(e.error, PipelineError::Replaced { .. }) && !e.error.is_retryable(),
            "{e}"
        );
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
            split: SplitSettings::packing(PackSettings {
                buckets: 8,
                max_record_bytes: 1024,
                max_held_bytes: 8 * 1024,
            }),
            queued_records: 1,
            ..PipelineSettings::default()
        };
        let e = ship_object(src, &object(), &shipper, settings)
            .await
            .unwrap_err();
        assert!(matches!(e, PipelineError::Put(_)), "{e}");
        assert!(e.is_retryable());
        assert_eq!(shipper.stream.calls(), 3, "one batch's attempts, then stop");
    }

    /// A zip whose first entries are empty, an archive, compressed with another method or not
    /// meter data: each is a `file` line of the report, and the last, good entry is split.
    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn bad_zip_entries_fail_alone_and_the_rest_is_split() {
        let zip = include_bytes!("../../tests/bad-inputs/zip-bad-entries.zip").to_vec();
        let (reports, fragments) = in_parts(zip, u64::MAX).await;
        let report = &reports[0];
        assert_eq!((report.inputs, report.inputs_failed), (5, 4));
        let failed: Vec<(&str, RejectKind)> = report
            .rejects
            .iter()
            .map(|r| (&*r.source, r.kind))
            .collect();
        let entry = |name: &'static str| (name, RejectKind::File);
        assert_eq!(
            failed,
            [
                entry("s3://b/k.csv!empty.csv#@e1"),
                entry("s3://b/k.csv!inner.zip#@e1"),
                entry("s3://b/k.csv!bzip2.csv#@e1"),
                entry("s3://b/k.csv!not-meter-data.csv#@e1"),
            ]
        );
        assert!(report.rejects[1]
            .reason
            .contains("zip data inside an archive"));
        assert!(report.rejects[2].reason.contains("bzip2"));
        assert_eq!(report.stats.rows_accepted, 2);
        let totals: Vec<(String, i64)> = daily_totals(fragments.iter())
            .iter()
            .map(|t| (t.series.to_string(), t.total))
            .collect();
        assert_eq!(
            totals,
            [
                ("EE1".to_string(), 24_000_000),
                ("EE2".to_string(), 48_000_000)
            ]
        );
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn a_bad_header_is_a_permanent_file_error() {
        let src = memory(b"this is not,a meter file\n1,2\n".to_vec());
        let shipper = Shipper::new(Arc::new(Recording::default()), 8);
        let e = ship_object(src, &object(), &shipper, PipelineSettings::default())
            .await
            .unwrap_err();
        assert!(matches!(e, PipelineError::File(_)), "{e}");
        assert!(!e.is_retryable());
    }
}
