//! Input formats: detection from content and the push parser that drives them.
//!
//! Like `csv-core`, a [`Parser`] does no I/O: it is fed byte chunks of any size, emits
//! fragments and rejects into a [`Sink`] as rows complete, and gives the same output whatever
//! the chunk boundaries. The caller owns reading (local file, S3 ranged GETs, decompression).

pub mod long;
pub mod nem12;
pub mod record;
pub mod wide;

use std::sync::Arc;

use crate::fragment::{Fragment, Version};
use crate::reject::{FileError, Reject, Sink, Stats};
use record::{Handler, Records};

/// How a long file's timestamps relate to the interval they label.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum TimestampLabel {
    /// Use the header (`interval_start` / `interval_end`); other headers mean `End`, the
    /// metering convention (00:30 is the first half hour of the day, 00:00 the day before's last).
    #[default]
    Auto,
    Start,
    End,
}

/// Everything a parser needs to know that the bytes do not say.
#[derive(Debug, Clone)]
pub struct Options {
    /// Names the input in fragments' keys and in rejects: a path, or `s3://bucket/key#version`.
    pub source: Arc<str>,
    /// Version for data that carries none of its own (epoch ms of the input's last change).
    pub version: Version,
    /// Line number of the first byte fed (1 unless resuming mid-file).
    pub first_line: u64,
    pub timestamps: TimestampLabel,
    /// Interval length of long files, in minutes.
    pub long_interval_minutes: u16,
}

impl Options {
    pub fn new(source: impl Into<Arc<str>>, version: Version) -> Options {
        Options {
            source: source.into(),
            version,
            first_line: 1,
            timestamps: TimestampLabel::Auto,
            long_interval_minutes: 30,
        }
    }
}

/// The formats meterflow reads.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Format {
    /// `Meter,Date,0:00,...,23:30`: one row per meter per day.
    Wide,
    /// `meter,timestamp,kwh`: one reading per row.
    Long,
    /// AEMO NEM12 (100/200/300/400/500/900 records).
    Nem12,
}

impl Format {
    pub fn name(self) -> &'static str {
        match self {
            Format::Wide => "wide",
            Format::Long => "long",
            Format::Nem12 => "nem12",
        }
    }
}

/// How far detection may look for the first line before giving up.
pub const DETECT_LIMIT: usize = 64 * 1024;
const BOM: &[u8] = b"\xEF\xBB\xBF";

/// Decides the format from the first non-blank line (BOM already removed).
pub fn detect(first_line: &[u8]) -> Result<Format, String> {
    let fields: Vec<Vec<u8>> = first_line
        .split(|&b| b == b',')
        .map(|f| {
            let t = f.trim_ascii();
            let t = t.strip_prefix(b"\"").unwrap_or(t);
            let t = t.strip_suffix(b"\"").unwrap_or(t);
            t.trim_ascii().to_ascii_lowercase()
        })
        .collect();
    let first = fields.first().map(Vec::as_slice).unwrap_or_default();
    if first == b"100" {
        return match fields.get(1).map(Vec::as_slice) {
            Some(b"nem12") => Ok(Format::Nem12),
            Some(b"nem13") => Err("this is a NEM13 (accumulation meter) file; meterflow reads NEM12 interval data only".into()),
            _ => Err("a 100 header record that does not say NEM12".into()),
        };
    }
    if first == b"200" {
        // A NEM12 file whose 100 header was lost (a known real-world quirk).
        return Ok(Format::Nem12);
    }
    if fields
        .iter()
        .filter(|f| wide::parse_time_label(f).is_some())
        .count()
        >= 2
    {
        return Ok(Format::Wide);
    }
    if long::looks_like_header(&fields) {
        return Ok(Format::Long);
    }
    Err(format!(
        "cannot tell the format from the first line `{}`: expected a NEM12 100/200 record, a wide header (Meter,Date,0:00,0:30,...) or a long header (meter,timestamp,kwh)",
        String::from_utf8_lossy(&first_line[..first_line.len().min(120)])
    ))
}

/// Row accounting and reject reporting shared by the formats.
pub(crate) struct Tally {
    pub stats: Stats,
    pub source: Arc<str>,
}

impl Tally {
    fn new(source: Arc<str>) -> Tally {
        Tally {
            stats: Stats::default(),
            source,
        }
    }

    pub fn reject(
        &mut self,
        sink: &mut dyn Sink,
        line: u64,
        column: Option<u32>,
        reason: impl Into<String>,
    ) {
        self.stats.rows_read += 1;
        self.stats.rows_rejected += 1;
        sink.reject(Reject {
            source: self.source.clone(),
            line,
            column,
            reason: reason.into(),
        });
    }

    pub fn accept_rows(&mut self, n: u64) {
        self.stats.rows_read += n;
        self.stats.rows_accepted += n;
    }

    pub fn emit(&mut self, sink: &mut dyn Sink, f: &Fragment) {
        self.stats.fragments += 1;
        sink.fragment(f);
    }

    pub fn header_error(&self, line: u64, reason: impl Into<String>) -> FileError {
        FileError::Header {
            input: self.source.clone(),
            line,
            reason: reason.into(),
        }
    }
}

/// A format's state machine, driven by [`Records`].
pub(crate) trait FormatHandler: Handler {
    /// Flushes rows held back (a long file's open day, a NEM12 300 awaiting 400s).
    fn finish(&mut self, sink: &mut dyn Sink) -> Result<(), FileError>;
    fn tally(&self) -> &Tally;
}

enum State {
    Detecting(Vec<u8>),
    Running {
        records: Box<Records>,
        handler: Box<dyn DynHandler>,
    },
    Failed(FileError),
}

/// Object-safe bridge so one [`Parser`] holds any format.
trait DynHandler {
    fn feed(
        &mut self,
        records: &mut Records,
        chunk: &[u8],
        sink: &mut dyn Sink,
    ) -> Result<(), FileError>;
    fn finish(&mut self, records: &mut Records, sink: &mut dyn Sink) -> Result<(), FileError>;
    fn stats(&self) -> Stats;
}

impl<H: FormatHandler> DynHandler for H {
    fn feed(
        &mut self,
        records: &mut Records,
        chunk: &[u8],
        sink: &mut dyn Sink,
    ) -> Result<(), FileError> {
        records.feed(chunk, self, sink)
    }
    fn finish(&mut self, records: &mut Records, sink: &mut dyn Sink) -> Result<(), FileError> {
        records.finish(self, sink)?;
        FormatHandler::finish(self, sink)
    }
    fn stats(&self) -> Stats {
        self.tally().stats
    }
}

/// Parses one input of any supported format, detected from its first line.
pub struct Parser {
    opts: Options,
    state: State,
    format: Option<Format>,
    bytes: u64,
}

impl Parser {
    pub fn new(opts: Options) -> Parser {
        Parser {
            opts,
            state: State::Detecting(Vec::new()),
            format: None,
            bytes: 0,
        }
    }

    /// The detected format, once the first line has been seen.
    pub fn format(&self) -> Option<Format> {
        self.format
    }

    pub fn feed(&mut self, chunk: &[u8], sink: &mut dyn Sink) -> Result<(), FileError> {
        self.bytes += chunk.len() as u64;
        match &mut self.state {
            State::Running { records, handler } => {
                let r = handler.feed(records, chunk, sink);
                self.fail_on(r)
            }
            State::Detecting(buf) => {
                buf.extend_from_slice(chunk);
                let start = if buf.starts_with(BOM) { BOM.len() } else { 0 };
                let body = &buf[start..];
                let skip = body.iter().take_while(|b| b.is_ascii_whitespace()).count();
                let Some(nl) = body[skip..].iter().position(|&b| b == b'\n' || b == b'\r') else {
                    if buf.len() > DETECT_LIMIT {
                        let err = FileError::Format {
                            input: self.opts.source.clone(),
                            reason: format!("no line break in the first {DETECT_LIMIT} bytes: not a CSV meter-data file"),
                        };
                        return self.fail_on(Err(err));
                    }
                    return Ok(());
                };
                let first = body[skip..skip + nl].to_vec();
                self.start(&first, start, sink)
            }
            State::Failed(e) => Err(e.clone()),
        }
    }

    fn start(&mut self, first: &[u8], bom: usize, sink: &mut dyn Sink) -> Result<(), FileError> {
        let State::Detecting(buf) =
            std::mem::replace(&mut self.state, State::Detecting(Vec::new()))
        else {
            return Ok(());
        };
        let format = match detect(first) {
            Ok(f) => f,
            Err(reason) => {
                return self.fail_on(Err(FileError::Format {
                    input: self.opts.source.clone(),
                    reason,
                }))
            }
        };
        self.format = Some(format);
        let handler: Box<dyn DynHandler> = match format {
            Format::Wide => Box::new(wide::Wide::new(&self.opts)),
            Format::Long => Box::new(long::Long::new(&self.opts)),
            Format::Nem12 => Box::new(nem12::Nem12::new(&self.opts)),
        };
        let records = Box::new(Records::new(self.opts.source.clone(), self.opts.first_line));
        self.state = State::Running { records, handler };
        // Re-feed what detection held back; `bytes` already counted it.
        self.bytes -= (buf.len() - bom) as u64;
        self.feed(&buf[bom..], sink)
    }

    fn fail_on(&mut self, r: Result<(), FileError>) -> Result<(), FileError> {
        if let Err(e) = &r {
            self.state = State::Failed(e.clone());
        }
        r
    }

    /// Ends the input and returns its accounting.
    pub fn finish(&mut self, sink: &mut dyn Sink) -> Result<Stats, FileError> {
        if let State::Detecting(buf) = &self.state {
            let start = if buf.starts_with(BOM) { BOM.len() } else { 0 };
            let body = buf[start..].trim_ascii().to_vec();
            if body.is_empty() {
                return Err(FileError::Format {
                    input: self.opts.source.clone(),
                    reason: "the file is empty".into(),
                });
            }
            self.start(&body, start, sink)?;
        }
        match &mut self.state {
            State::Running { records, handler } => {
                let r = handler.finish(records, sink);
                self.fail_on(r)?;
                Ok(self.stats())
            }
            State::Failed(e) => Err(e.clone()),
            State::Detecting(_) => unreachable!("detection ended above"),
        }
    }

    /// Accounting so far (complete after [`Parser::finish`]).
    pub fn stats(&self) -> Stats {
        let mut s = match &self.state {
            State::Running { handler, .. } => handler.stats(),
            _ => Stats::default(),
        };
        s.bytes = self.bytes;
        s
    }
}

/// Parses a whole in-memory input: for tests, fixtures and small files.
pub fn parse_all(bytes: &[u8], opts: Options, sink: &mut dyn Sink) -> Result<Stats, FileError> {
    let mut p = Parser::new(opts);
    p.feed(bytes, sink)?;
    p.finish(sink)
}

/// Parses `input` fed in pieces cut at `cuts` (taken modulo the length, in order): the
/// chunk-boundary property tests of every format compare this with a one-shot parse.
#[cfg(test)]
pub(crate) fn parse_in_chunks(
    input: &[u8],
    cuts: &[usize],
    opts: Options,
) -> (crate::reject::Collect, Stats) {
    let mut p = Parser::new(opts);
    let mut sink = crate::reject::Collect::default();
    let mut cuts: Vec<usize> = cuts.iter().map(|c| c % (input.len() + 1)).collect();
    cuts.sort_unstable();
    let mut prev = 0;
    for c in cuts {
        p.feed(&input[prev..c], &mut sink).expect("feed");
        prev = c;
    }
    p.feed(&input[prev..], &mut sink).expect("feed");
    let stats = p.finish(&mut sink).expect("finish");
    (sink, stats)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn detects_formats_from_content() {
        assert_eq!(
            detect(b"100,NEM12,200405011135,MDA1,Ret1"),
            Ok(Format::Nem12)
        );
        assert_eq!(
            detect(b"200,VABD000163,E1Q1,1,E1,N1,METSER123,kWh,30,"),
            Ok(Format::Nem12)
        );
        assert_eq!(detect(b"Meter,Date,0:00,0:30,1:00"), Ok(Format::Wide));
        assert_eq!(
            detect(b"\"meter\",\"date\",\"00:30\",\"01:00\""),
            Ok(Format::Wide)
        );
        assert_eq!(detect(b"meter,timestamp,kwh"), Ok(Format::Long));
        assert_eq!(detect(b"NMI,read_at,consumption"), Ok(Format::Long));
        assert!(detect(b"100,NEM13,x").unwrap_err().contains("NEM13"));
        assert!(detect(b"hello,world").unwrap_err().contains("cannot tell"));
    }
}
