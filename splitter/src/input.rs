//! One (already decompressed) input through the parser into a [`Packer`]: [`split`], and
//! [`split_part`] for a run of an input handed over between Lambda invocations.

use std::io::Read;

use meterflow_core::decompress::DecompressError;
use meterflow_core::format::Resume;
use meterflow_core::source::object_of;
use meterflow_core::{FileError, Options, Parser, Sink, Stats};

use crate::pack::{Output, PackSettings, Packer};

/// Why an input could not be split, with the accounting of the rows before the failure: all
/// their records were given to the output (a consumer that stores records as they come holds
/// exactly those rows of the failed input).
#[derive(Debug, thiserror::Error)]
#[error("{kind}")]
pub struct SplitError {
    pub kind: SplitErrorKind,
    pub stats: Stats,
}

/// What went wrong.
#[derive(Debug, thiserror::Error)]
pub enum SplitErrorKind {
    #[error(transparent)]
    File(#[from] FileError),
    #[error("{}", io_message(input, source))]
    Io {
        input: String,
        source: std::io::Error,
    },
}

/// A decompression error names its input already; other read errors are named here.
fn io_message(input: &str, source: &std::io::Error) -> String {
    match DecompressError::of(source) {
        Some(e) => e.to_string(),
        None => format!("reading {}: {source}", object_of(input)),
    }
}

impl SplitError {
    /// Whether the failure concerns this input alone, so that the other entries of the archive
    /// it is in may still be read: its content is not what the parsers read (a bad header, an
    /// empty entry, an archive inside the archive), or the archive cannot decompress this one
    /// entry. A read error of the archive itself, or a decompression limit, is not.
    pub fn is_input_only(&self) -> bool {
        match &self.kind {
            SplitErrorKind::File(_) => true,
            SplitErrorKind::Io { source, .. } => {
                DecompressError::of(source).is_some_and(DecompressError::is_entry_only)
            }
        }
    }
}

/// Chunk size for reads: large enough to amortise calls, small enough to stay in cache.
pub const READ_CHUNK: usize = 256 * 1024;

/// Parses one (already decompressed) input from `reader` and packs it into `out`.
/// Returns the input's accounting; a fragment refused for size counts as rejected.
pub fn split<R: Read, O: Output>(
    reader: R,
    opts: Options,
    settings: PackSettings,
    out: &mut O,
) -> Result<Stats, SplitError> {
    let (stats, _) = split_part(reader, opts, None, settings, out, |_| false)?;
    Ok(stats)
}

/// Like [`split`], for one run of an input handed over between runs (a Lambda invocation that
/// would not finish in time): starts at `from` (the reader then yields the input's bytes from
/// `from.offset`), and once `stop` (asked with the bytes read so far, once per chunk) says so,
/// cuts at the next row boundary. Returns this run's accounting and, when it was cut, where
/// the next run starts; every record of the rows before that point has been given to `out`.
pub fn split_part<R: Read, O: Output>(
    mut reader: R,
    opts: Options,
    from: Option<&Resume>,
    settings: PackSettings,
    out: &mut O,
    mut stop: impl FnMut(u64) -> bool,
) -> Result<(Stats, Option<Resume>), SplitError> {
    let mut parser = match from {
        Some(at) => Parser::resume(opts.clone(), at).map_err(|e| SplitError {
            kind: e.into(),
            stats: Stats::default(),
        })?,
        None => Parser::new(opts.clone()),
    };
    let mut packer = Packer::new(settings, out);
    let outcome = drive(
        &mut reader,
        &mut parser,
        &mut packer,
        &mut stop,
        &opts.source,
    );
    // Whatever happened, the rows read so far are shipped and counted alike.
    let mut stats = match &outcome {
        Err(SplitErrorKind::Io { .. }) => parser.abandon(&mut packer),
        _ => parser.stats(),
    };
    packer.flush();
    let oversize = packer.take_oversize().len() as u64;
    stats.rows_accepted -= oversize.min(stats.rows_accepted);
    stats.rows_rejected += oversize;
    stats.fragments -= oversize.min(stats.fragments);
    record(&stats);
    match outcome {
        Ok(cut) => Ok((stats, cut)),
        Err(kind) => Err(SplitError { kind, stats }),
    }
}

/// Feeds the parser until the input ends (finished), `stop` cuts it (the resume point), or
/// reading or parsing fails.
fn drive<R: Read>(
    reader: &mut R,
    parser: &mut Parser,
    packer: &mut dyn Sink,
    stop: &mut impl FnMut(u64) -> bool,
    input: &str,
) -> Result<Option<Resume>, SplitErrorKind> {
    let mut buf = vec![0u8; READ_CHUNK];
    let (mut read, mut stopping) = (0u64, false);
    loop {
        let n = match reader.read(&mut buf) {
            Ok(0) => break,
            Ok(n) => n,
            Err(e) if e.kind() == std::io::ErrorKind::Interrupted => continue,
            Err(source) => {
                let input = input.to_owned();
                return Err(SplitErrorKind::Io { input, source });
            }
        };
        read += n as u64;
        stopping = stopping || stop(read);
        if !stopping {
            parser.feed(&buf[..n], packer)?;
        } else if let Some(at) = parser.feed_until_cut(&buf[..n], packer)? {
            return Ok(Some(at));
        }
    }
    parser.finish(packer)?;
    Ok(None)
}

/// Adds one input's accounting to the metrics: once per input, so the parser's per-row path
/// never touches the facade (a no-op without an installed recorder, as in the CLI).
fn record(stats: &Stats) {
    use meterflow_core::metric_names as m;
    metrics::counter!(m::SPLITTER_ROWS_READ).increment(stats.rows_read);
    metrics::counter!(m::SPLITTER_ROWS_ACCEPTED).increment(stats.rows_accepted);
    metrics::counter!(m::SPLITTER_ROWS_REJECTED).increment(stats.rows_rejected);
    metrics::counter!(m::SPLITTER_FRAGMENTS).increment(stats.fragments);
    metrics::counter!(m::SPLITTER_INPUT_BYTES).increment(stats.bytes);
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::pack::Collected;
    use meterflow_core::envelope::decode;
    use meterflow_core::partition::bucket;
    use meterflow_core::{daily_totals, Collect};

    fn wide(meters: usize, days: usize) -> String {
        let mut s = String::from("Meter,Date");
        for k in 0..48 {
            s += &format!(",{}:{:02}", k / 2, (k % 2) * 30);
        }
        s.push('\n');
        for m in 0..meters {
            for d in 1..=days {
                s += &format!("M{m},2019-01-{d:02}");
                for k in 0..48 {
                    s += &format!(",{}.{:03}", (m + k) % 3, (d * 7 + k) % 1000);
                }
                s.push('\n');
            }
        }
        s
    }

    #[test]
    fn records_hold_one_bucket_respect_the_cap_and_lose_nothing() {
        let input = wide(40, 28);
        let settings = PackSettings {
            buckets: 4,
            max_record_bytes: 4096,
            max_held_bytes: 4 * 4096,
        };
        let mut out = Collected::default();
        let stats = split(
            input.as_bytes(),
            Options::new("w.csv", 1),
            settings,
            &mut out,
        )
        .unwrap();
        assert_eq!(
            (stats.rows_read, stats.rows_accepted, stats.fragments),
            (1120, 1120, 1120)
        );
        let mut decoded = Vec::new();
        for r in &out.records {
            assert!(r.data.len() <= 4096);
            let fs = decode(&r.data).unwrap();
            assert_eq!(fs.len() as u32, r.fragments);
            assert!(fs.iter().all(|f| bucket(&f.series, 4) == r.bucket));
            decoded.extend(fs);
        }
        let mut direct = Collect::default();
        meterflow_core::parse_all(input.as_bytes(), Options::new("w.csv", 1), &mut direct).unwrap();
        assert_eq!(
            daily_totals(decoded.iter()),
            daily_totals(direct.fragments.iter())
        );
        assert!(out.records.len() > 4, "small cap must split records");
        // A small budget for partly filled records ships them early, losing nothing.
        let mut tight = Collected::default();
        let budget = PackSettings {
            max_held_bytes: 2048,
            ..settings
        };
        split(
            input.as_bytes(),
            Options::new("w.csv", 1),
            budget,
            &mut tight,
        )
        .unwrap();
        assert!(
            tight.records.len() > out.records.len(),
            "a small budget ships records early"
        );
        assert_eq!(tight.records.iter().map(|r| r.fragments).sum::<u32>(), 1120);
        // Deterministic: the same input packs into the same records.
        let mut again = Collected::default();
        split(
            input.as_bytes(),
            Options::new("w.csv", 1),
            settings,
            &mut again,
        )
        .unwrap();
        assert_eq!(again.records, out.records);
    }

    #[test]
    fn an_input_split_in_parts_puts_every_row_once() {
        let input = wide(30, 28) + "M9,2019-01-01,oops\n";
        let settings = PackSettings {
            buckets: 4,
            max_record_bytes: 4096,
            max_held_bytes: 4 * 4096,
        };
        let opts = || Options::new("w.csv", 1);
        let mut whole = Collected::default();
        let all = split(input.as_bytes(), opts(), settings, &mut whole).unwrap();
        // Runs of at most ~10 kB each, read in 3 kB pieces, until one is not cut.
        let (mut parts, mut sum, mut from, mut runs) =
            (Collected::default(), Stats::default(), None, 0);
        loop {
            let start = from.as_ref().map_or(0, |r: &Resume| r.offset as usize);
            let reader = Chunked(&input.as_bytes()[start..], 3000);
            let (stats, cut) = split_part(
                reader,
                opts(),
                from.as_ref(),
                settings,
                &mut parts,
                |read| read >= 10_000,
            )
            .unwrap();
            sum.add(&stats);
            runs += 1;
            match cut {
                Some(at) => from = Some(at),
                None => break,
            }
        }
        assert!(runs > 5, "{runs}");
        assert_eq!(sum, all);
        assert_eq!(parts.rejects, whole.rejects);
        let fragments = |c: &Collected| -> Vec<_> {
            c.records
                .iter()
                .flat_map(|r| decode(&r.data).unwrap())
                .collect()
        };
        assert_eq!(
            daily_totals(fragments(&parts).iter()),
            daily_totals(fragments(&whole).iter())
        );
    }

    /// A reader that yields at most `.1` bytes per read.
    struct Chunked<'a>(&'a [u8], usize);

    impl Read for Chunked<'_> {
        fn read(&mut self, buf: &mut [u8]) -> std::io::Result<usize> {
            let n = self.0.len().min(self.1).min(buf.len());
            buf[..n].copy_from_slice(&self.0[..n]);
            self.0 = &self.0[n..];
            Ok(n)
        }
    }

    #[test]
    fn a_fragment_too_big_for_any_record_is_rejected_not_dropped() {
        let input = wide(1, 1);
        let settings = PackSettings {
            buckets: 1,
            max_record_bytes: 16,
            ..PackSettings::default()
        };
        let mut out = Collected::default();
        let stats = split(
            input.as_bytes(),
            Options::new("w.csv", 1),
            settings,
            &mut out,
        )
        .unwrap();
        assert_eq!(
            (stats.rows_read, stats.rows_accepted, stats.rows_rejected),
            (1, 0, 1)
        );
        assert_eq!(out.rejects.len(), 1);
        assert!(out.records.is_empty());
    }

    #[test]
    fn each_split_adds_its_accounting_to_the_metrics_once() {
        use meterflow_core::metric_names as m;
        let acc = meterflow_telemetry::Accumulator::new();
        let input = wide(3, 2) + "M9,2019-01-01,oops\n";
        let settings = PackSettings {
            buckets: 2,
            ..PackSettings::default()
        };
        let stats = metrics::with_local_recorder(&acc, || {
            ["a.csv", "b.csv"].map(|name| {
                let mut out = Collected::default();
                split(input.as_bytes(), Options::new(name, 1), settings, &mut out).unwrap()
            })
        });
        assert_eq!((stats[0].rows_read, stats[0].rows_rejected), (7, 1));
        let s = acc.take();
        assert_eq!(s.counter(m::SPLITTER_ROWS_READ), 14);
        assert_eq!(s.counter(m::SPLITTER_ROWS_ACCEPTED), 12);
        assert_eq!(s.counter(m::SPLITTER_ROWS_REJECTED), 2);
        assert_eq!(s.counter(m::SPLITTER_FRAGMENTS), 12);
        assert_eq!(s.counter(m::SPLITTER_INPUT_BYTES), 2 * input.len() as u64);
        assert_eq!(s.counters.len(), 5, "{s:?}");
    }
}
