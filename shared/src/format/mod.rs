//! Input formats: detection from content and the push parser that drives them.
//!
//! Like `csv-core`, a [`Parser`] does no I/O: it is fed byte chunks of any size, emits
//! fragments and rejects into a [`Sink`] as rows complete, and gives the same output whatever
//! the chunk boundaries. The caller owns reading (local file, S3 ranged GETs, decompression).

pub mod long;
pub mod nem12;
pub mod pieces;
pub mod record;
pub mod wide;

use std::sync::Arc;

use crate::fragment::{Fragment, Version};
use crate::reject::{FileError, Reject, RejectKind, Sink, Stats};
use record::{Handler, Records};

/// How a long file's timestamps relate to the interval they label.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum TimestampLabel {
    /// Use the header (`interval_start` / `interval_end`); other headers mean `End`, the
    /// metering convention (00:30 is the first half hour of the day, 00:00 the day before's last).
    #[default]
    Auto,
    /// A timestamp labels the interval it starts (00:00 is the day's first).
    Start,
    /// A timestamp labels the interval it ends (00:00 is the day before's last).
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
    /// How long files' timestamps label intervals; wide and NEM12 files ignore it.
    pub timestamps: TimestampLabel,
    /// Interval length of long files, in minutes.
    pub long_interval_minutes: u16,
}

impl Options {
    /// Options for the input `source`, with `version` for data that carries none: lines count
    /// from 1, timestamps labelled as the header says, long files in 30-minute intervals.
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
    /// The lowercase name (`wide`, `long`, `nem12`) used in options and messages.
    pub fn name(self) -> &'static str {
        match self {
            Format::Wide => "wide",
            Format::Long => "long",
            Format::Nem12 => "nem12",
        }
    }

    /// The format [`Format::name`] names.
    pub fn from_name(name: &str) -> Option<Format> {
        [Format::Wide, Format::Long, Format::Nem12]
            .into_iter()
            .find(|f| f.name() == name)
    }
}

/// A row boundary of an input from which a later run (another Lambda invocation) reads on, as
/// if the input had been parsed in one go: a file too large for one invocation is handed over
/// in parts ([`Parser::cut`], [`Parser::resume`]).
///
/// Every row before `offset` was accounted for by the run that cut; every row from it on is
/// the next run's. A day of a long file cut between its rows becomes two fragments, which the
/// merge rules add up like any partial day (their slots are disjoint, or the later row wins as
/// it would have within one fragment).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Resume {
    /// The input's format, as the run that cut detected it: a resumed parser does not detect it
    /// again.
    pub format: Format,
    /// Bytes of the (decompressed) input before the boundary.
    pub offset: u64,
    /// Line number of the byte at `offset`.
    pub line: u64,
    /// Records the format must have read to go on, replayed (silently) before `offset`, each
    /// with its own line number and without its terminator: the header of a wide or long file,
    /// the 200 record of a NEM12 file's open channel.
    pub context: Vec<(u64, Vec<u8>)>,
}

/// Longest context a [`Resume`] carries (it travels in a hand-over message).
pub const MAX_RESUME_CONTEXT: usize = 64 * 1024;

/// How far detection may look for the first line before giving up.
pub const DETECT_LIMIT: usize = 64 * 1024;
/// The bytes [`not_text`] looks at. Detection waits for this many (or the input's end) even
/// when the first line is complete sooner, so that what it decides never depends on how the
/// input was cut into chunks (found by the `parse_chunks` fuzz target: a NUL byte after a
/// short first line was seen or not, depending on the first chunk's length).
pub const SNIFF_WINDOW: usize = 512;
const BOM: &[u8] = b"\xEF\xBB\xBF";

/// Why the input's first bytes cannot be CSV text, if they cannot: compressed data (an
/// archive inside an archive, or a file compressed twice: only the outer layer is opened),
/// UTF-16 text, or binary data. Each says what to do instead.
pub fn not_text(head: &[u8]) -> Option<String> {
    use crate::decompress::{sniff, Compression};
    let head = &head[..head.len().min(SNIFF_WINDOW)];
    let compressed = match sniff(head) {
        Compression::None => None,
        Compression::Gzip => Some("gzip"),
        Compression::Zip => Some("zip"),
        Compression::Unsupported(name) => Some(name),
    };
    if let Some(name) = compressed {
        return Some(format!(
            "this is {name} data inside an archive (or a file compressed twice): meterflow opens one layer of .gz or .zip; extract the inner archive and ingest its files"
        ));
    }
    let utf16 = head.starts_with(b"\xFF\xFE")
        || head.starts_with(b"\xFE\xFF")
        || (head.len() >= 4
            && head
                .chunks_exact(2)
                .take(8)
                .all(|p| p.iter().filter(|&&b| b == 0).count() == 1));
    if utf16 {
        return Some("this is UTF-16 text (as Excel's \"Unicode Text\" saves it): meterflow reads UTF-8; convert it, for example `iconv -f UTF-16 -t UTF-8 in.csv > out.csv`, or save it as \"CSV UTF-8\"".into());
    }
    if head.contains(&0) {
        return Some("the file holds NUL bytes: it is binary data, not a CSV text file".into());
    }
    None
}

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
    let report: &[&[u8]] = &[b"file", b"line", b"column"];
    if fields.len() >= 4 && fields.iter().zip(report).all(|(f, r)| f == r) {
        return Err("this is a meterflow rejects report (file,line,column,...), not meter data; reports are written with --rejects, so fix the rows it lists in their own files".into());
    }
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
    let commas = first_line.iter().filter(|&&b| b == b',').count();
    let separator = [(b';', "semicolons (`;`)"), (b'\t', "tabs")]
        .into_iter()
        .find(|&(sep, _)| first_line.iter().filter(|&&b| b == sep).count() > commas);
    let hint = match separator {
        Some((_, name)) => format!(
            "; its fields look separated by {name}: meterflow reads comma-separated files, so export the file as CSV with commas (Excel: \"CSV (Comma delimited)\") or replace the separator"
        ),
        None => String::new(),
    };
    Err(format!(
        "cannot tell the format from the first line `{}`: expected a NEM12 100/200 record, a wide header (Meter,Date,0:00,0:30,...) or a long header (meter,timestamp,kwh){hint}",
        String::from_utf8_lossy(&first_line[..first_line.len().min(120)])
    ))
}

/// The one column of a header (fields trimmed and lower-cased) that `is` accepts: `Ok(None)`
/// when none does, an error naming them when several do (taking the first would silently read
/// the wrong one: `Meter` and `NMI` side by side, two `kWh` columns).
pub(crate) fn one_column(
    header: &[Vec<u8>],
    what: &str,
    is: impl Fn(&[u8]) -> bool,
) -> Result<Option<usize>, String> {
    let mut found = header.iter().enumerate().filter(|(_, f)| is(f));
    let first = found.next();
    match (first, found.next()) {
        (Some((a, fa)), Some((b, fb))) => Err(format!(
            "the header has more than one {what} column (column {} `{}` and column {} `{}`); keep one, or rename the others",
            a + 1,
            String::from_utf8_lossy(fa),
            b + 1,
            String::from_utf8_lossy(fb)
        )),
        (first, _) => Ok(first.map(|(i, _)| i)),
    }
}

/// Whether `field` is one of `names`.
pub(crate) fn named<'a>(names: &'a [&'a str]) -> impl Fn(&[u8]) -> bool + 'a {
    move |field| names.iter().any(|n| field == n.as_bytes())
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

    /// Rejects a row: counted read and rejected.
    pub fn reject(
        &mut self,
        sink: &mut dyn Sink,
        line: u64,
        column: Option<u32>,
        reason: impl Into<String>,
    ) {
        self.stats.rows_read += 1;
        self.stats.rows_rejected += 1;
        self.report(sink, RejectKind::Row, line, column, reason.into());
    }

    /// Refuses a record that is not a row (see [`RejectKind::Record`]).
    pub fn reject_record(
        &mut self,
        sink: &mut dyn Sink,
        line: u64,
        column: Option<u32>,
        reason: impl Into<String>,
    ) {
        self.stats.records_rejected += 1;
        self.report(sink, RejectKind::Record, line, column, reason.into());
    }

    /// Reports something worth a look that refuses nothing (see [`RejectKind::Warning`]).
    pub fn warn(&mut self, sink: &mut dyn Sink, line: u64, reason: impl Into<String>) {
        self.stats.warnings += 1;
        self.report(sink, RejectKind::Warning, line, None, reason.into());
    }

    fn report(
        &self,
        sink: &mut dyn Sink,
        kind: RejectKind,
        line: u64,
        column: Option<u32>,
        reason: String,
    ) {
        sink.reject(Reject {
            source: self.source.clone(),
            line,
            column,
            kind,
            reason,
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

    /// At the end of a file whose format needs a header: an error unless one was `seen`.
    pub fn require_header(&self, seen: bool) -> Result<(), FileError> {
        match seen {
            true => Ok(()),
            false => Err(self.header_error(1, "the file has no header line")),
        }
    }
}

/// A format's state machine, driven by [`Records`].
pub(crate) trait FormatHandler: Handler {
    /// Flushes rows held back (a long file's open day, a NEM12 300 awaiting 400s).
    fn finish(&mut self, sink: &mut dyn Sink) -> Result<(), FileError>;
    fn tally(&self) -> &Tally;

    /// The records to replay when resuming after the current row boundary (see
    /// [`Resume::context`]), given the input's first record: by default just that header.
    fn context(&self, header: &(u64, Vec<u8>)) -> Vec<(u64, Vec<u8>)> {
        vec![header.clone()]
    }

    /// Whether the input may be cut before a line whose first field is `next` (`None`: not
    /// known yet). A row that spans records (a NEM12 300 and its 400s) must not be cut.
    fn can_cut_before(&self, _next: Option<&[u8]>) -> bool {
        true
    }

    /// The input has really ended (it was not cut): report what only its end can tell, such
    /// as a NEM12 file without its 900 end record. Called after [`FormatHandler::finish`].
    fn end_of_input(&mut self, _sink: &mut dyn Sink) {}

    /// This handler reads on from a cut an earlier run made at line `at_line`, so the input's
    /// start is not here. Called after the context was replayed: whatever the replay reported
    /// (a refused 200 record, say) was the earlier run's to count, and is forgotten here.
    fn resumed(&mut self, _at_line: u64) {}
}

enum State {
    Detecting(Vec<u8>),
    Running {
        records: Box<Records>,
        handler: Box<dyn DynHandler>,
    },
    /// An error ended the input; `stats` counts the rows before it (their fragments and
    /// rejects were given to the sink, held rows included).
    Failed {
        error: FileError,
        stats: Stats,
    },
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
    fn flush_rows(&mut self, sink: &mut dyn Sink) -> Result<(), FileError>;
    fn context(&self, header: &(u64, Vec<u8>)) -> Vec<(u64, Vec<u8>)>;
    fn can_cut_before(&self, next: Option<&[u8]>) -> bool;
    fn resumed(&mut self, at_line: u64);
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
        FormatHandler::finish(self, sink)?;
        self.end_of_input(sink);
        Ok(())
    }
    fn stats(&self) -> Stats {
        self.tally().stats
    }
    fn flush_rows(&mut self, sink: &mut dyn Sink) -> Result<(), FileError> {
        FormatHandler::finish(self, sink)
    }
    fn context(&self, header: &(u64, Vec<u8>)) -> Vec<(u64, Vec<u8>)> {
        FormatHandler::context(self, header)
    }
    fn can_cut_before(&self, next: Option<&[u8]>) -> bool {
        FormatHandler::can_cut_before(self, next)
    }
    fn resumed(&mut self, at_line: u64) {
        FormatHandler::resumed(self, at_line)
    }
}

/// Parses one input of any supported format, detected from its first line.
pub struct Parser {
    opts: Options,
    state: State,
    format: Option<Format>,
    /// Bytes fed (less those a cut handed over).
    bytes: u64,
    /// Offset in the input of the first byte fed (0 unless resumed).
    start: u64,
    /// The input's first record and its line: what a wide or long file resumes with.
    header: Option<(u64, Vec<u8>)>,
    /// A [`Parser::cut`] ended this parser.
    cut: bool,
    /// The line of the first byte fed.
    first_line: u64,
}

impl Parser {
    /// A parser for an input from its start; the format is detected from the first line fed.
    pub fn new(opts: Options) -> Parser {
        Parser {
            first_line: opts.first_line,
            opts,
            state: State::Detecting(Vec::new()),
            format: None,
            bytes: 0,
            start: 0,
            header: None,
            cut: false,
        }
    }

    /// A parser that reads on from `at` (made by [`Parser::cut`] on the same input), to be fed
    /// the input's bytes from `at.offset`. `opts.first_line` is ignored: lines count from
    /// `at.line`. Errors when the context does not parse as it did (a different input).
    pub fn resume(opts: Options, at: &Resume) -> Result<Parser, FileError> {
        let mut handler = handler_for(at.format, &opts);
        let mut quiet = crate::reject::Discard;
        for (line, record) in &at.context {
            let mut records = Records::new(opts.source.clone(), *line);
            handler.feed(&mut records, record, &mut quiet)?;
            handler.feed(&mut records, b"\n", &mut quiet)?;
        }
        handler.resumed(at.line);
        // Context records are structure (headers, channels), never rows: nothing was counted.
        debug_assert_eq!(handler.stats(), Stats::default());
        let records = Box::new(Records::new(opts.source.clone(), at.line));
        Ok(Parser {
            // A NEM12 part may start with no channel open, so with no context at all: it can
            // still be cut (NEM12 resumes from its channel, never from the header).
            header: Some(at.context.first().cloned().unwrap_or_default()),
            opts,
            state: State::Running { records, handler },
            format: Some(at.format),
            bytes: 0,
            start: at.offset,
            cut: false,
            first_line: at.line,
        })
    }

    /// The detected format, once the first line has been seen.
    pub fn format(&self) -> Option<Format> {
        self.format
    }

    /// Parses the next `chunk` of the input (any size, cut anywhere), giving `sink` the
    /// fragments and rejects of rows as they complete. After an error the input has failed, and
    /// every later call returns that error.
    pub fn feed(&mut self, chunk: &[u8], sink: &mut dyn Sink) -> Result<(), FileError> {
        debug_assert!(!self.cut, "a parser that was cut takes no more input");
        self.bytes += chunk.len() as u64;
        match &mut self.state {
            State::Running { records, handler } => {
                let r = handler.feed(records, chunk, sink);
                self.fail_on(r, sink)
            }
            State::Detecting(buf) => {
                buf.extend_from_slice(chunk);
                if buf.len() < SNIFF_WINDOW {
                    return Ok(());
                }
                self.detect_now(sink)
            }
            State::Failed { error, .. } => Err(error.clone()),
        }
    }

    /// Detects the format from the bytes held, if they hold the first line; waits otherwise.
    fn detect_now(&mut self, sink: &mut dyn Sink) -> Result<(), FileError> {
        match &mut self.state {
            State::Detecting(buf) => {
                let start = if buf.starts_with(BOM) { BOM.len() } else { 0 };
                let body = &buf[start..];
                let skip = body.iter().take_while(|b| b.is_ascii_whitespace()).count();
                let Some(nl) = body[skip..].iter().position(|&b| b == b'\n' || b == b'\r') else {
                    if buf.len() > DETECT_LIMIT {
                        let err = FileError::Format {
                            input: self.opts.source.clone(),
                            reason: not_text(buf).unwrap_or_else(|| format!("no line break in the first {DETECT_LIMIT} bytes: not a CSV meter-data file")),
                        };
                        return self.fail_on(Err(err), sink);
                    }
                    return Ok(());
                };
                let first = body[skip..skip + nl].to_vec();
                let line = line_after(self.opts.first_line, &body[..skip]);
                self.header = Some((line, first.clone()));
                self.start(&first, start, sink)
            }
            _ => Ok(()),
        }
    }

    fn start(&mut self, first: &[u8], bom: usize, sink: &mut dyn Sink) -> Result<(), FileError> {
        let State::Detecting(buf) =
            std::mem::replace(&mut self.state, State::Detecting(Vec::new()))
        else {
            return Ok(());
        };
        let format = match not_text(&buf).map_or_else(|| detect(first), Err) {
            Ok(f) => f,
            Err(reason) => {
                return self.fail_on(
                    Err(FileError::Format {
                        input: self.opts.source.clone(),
                        reason,
                    }),
                    sink,
                )
            }
        };
        self.format = Some(format);
        let handler = handler_for(format, &self.opts);
        let records = Box::new(Records::new(self.opts.source.clone(), self.opts.first_line));
        self.state = State::Running { records, handler };
        // Re-feed what detection held back; `bytes` already counted it.
        self.bytes -= (buf.len() - bom) as u64;
        self.feed(&buf[bom..], sink)
    }

    /// Ends the input on an error: the rows the format holds back are flushed first, so that
    /// everything [`Parser::stats`] then counts has reached the sink.
    fn fail_on(&mut self, r: Result<(), FileError>, sink: &mut dyn Sink) -> Result<(), FileError> {
        if let Err(e) = &r {
            let stats = match &mut self.state {
                State::Running { handler, .. } => {
                    // A second error (a header never seen) changes nothing: the first is reported.
                    let _ = handler.flush_rows(sink);
                    handler.stats()
                }
                State::Failed { stats, .. } => *stats,
                State::Detecting(_) => Stats::default(),
            };
            self.state = State::Failed {
                error: e.clone(),
                stats,
            };
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
            // The first line: detection may have waited for more than it (SNIFF_WINDOW).
            let first = match body.iter().position(|&b| b == b'\n' || b == b'\r') {
                Some(nl) => body[..nl].to_vec(),
                None => body,
            };
            let skip = buf[start..].len() - buf[start..].trim_ascii_start().len();
            let line = line_after(self.opts.first_line, &buf[start..start + skip]);
            self.header = Some((line, first.clone()));
            self.start(&first, start, sink)?;
        }
        match &mut self.state {
            State::Running { records, handler } => {
                let r = handler.finish(records, sink);
                self.fail_on(r, sink)?;
                Ok(self.stats())
            }
            State::Failed { error, .. } => Err(error.clone()),
            State::Detecting(_) => unreachable!("detection ended above"),
        }
    }

    /// Hands the rest of the input over, if it can be cut right here, before `next` (the bytes
    /// that would be fed next; an empty slice when not known yet): finishes the rows read so
    /// far, ends this parser (only [`Parser::stats`] may follow) and returns where a
    /// [`Parser::resume`]d one reads on. `None` when this is no row boundary (inside a quoted
    /// record, before the header, between a NEM12 300 and its 400s): feed on (a line at a time
    /// keeps the overshoot small) and ask again.
    pub fn cut(&mut self, next: &[u8], sink: &mut dyn Sink) -> Result<Option<Resume>, FileError> {
        // A cut within the first SNIFF_WINDOW bytes (tests; hand-overs come megabytes in)
        // detects from what has arrived.
        self.detect_now(sink)?;
        let (State::Running { records, handler }, Some(header), Some(format)) =
            (&mut self.state, &self.header, self.format)
        else {
            return Ok(None);
        };
        let Some(held) = records.held_at_boundary(next) else {
            return Ok(None);
        };
        if records.next_line() <= header.0 {
            return Ok(None);
        }
        if !handler.can_cut_before(first_field(held, next).as_deref()) {
            return Ok(None);
        }
        let context = handler.context(header);
        if context.iter().map(|(_, r)| r.len()).sum::<usize>() > MAX_RESUME_CONTEXT {
            return Ok(None);
        }
        let held = held.len() as u64;
        let line = records.next_line();
        let r = handler.flush_rows(sink);
        self.fail_on(r, sink)?;
        self.bytes -= held;
        self.cut = true;
        Ok(Some(Resume {
            format,
            offset: self.start + self.bytes,
            line,
            context,
        }))
    }

    /// Feeds `chunk` a line at a time until the input can be [`Parser::cut`] and cuts it there,
    /// leaving the rest of `chunk` unfed (the next run reads it from [`Resume::offset`]). `None`
    /// when `chunk` was fed wholly without a boundary: call again with the next chunk.
    pub fn feed_until_cut(
        &mut self,
        chunk: &[u8],
        sink: &mut dyn Sink,
    ) -> Result<Option<Resume>, FileError> {
        let mut rest = chunk;
        loop {
            if let Some(r) = self.cut(rest, sink)? {
                return Ok(Some(r));
            }
            if rest.is_empty() {
                return Ok(None);
            }
            // A `\r` too: in a file of old Mac line ends it is the only line end there is.
            let n = memchr::memchr2(b'\n', b'\r', rest).map_or(rest.len(), |i| i + 1);
            self.feed(&rest[..n], sink)?;
            rest = &rest[n..];
        }
    }

    /// Ends the input early, where its reader failed: the rows the format holds back are
    /// flushed into `sink` (a line the failure cut short is not read), so that the accounting
    /// returned counts exactly what reached the sink. Only [`Parser::stats`] may follow.
    pub fn abandon(&mut self, sink: &mut dyn Sink) -> Stats {
        if let State::Running { handler, .. } = &mut self.state {
            // A format error here (a header never seen) adds nothing: the read failure is
            // what the caller reports.
            let _ = handler.flush_rows(sink);
        }
        self.cut = true;
        self.stats()
    }

    /// Accounting so far: complete after [`Parser::finish`]; after an error, the rows before
    /// it (all of which reached the sink).
    pub fn stats(&self) -> Stats {
        let mut s = match &self.state {
            State::Running { handler, .. } => handler.stats(),
            State::Failed { stats, .. } => *stats,
            State::Detecting(_) => Stats::default(),
        };
        s.bytes = self.bytes;
        if let State::Running { records, .. } = &self.state {
            s.line_ends = records.next_line() - self.first_line;
        }
        s
    }
}

/// The line of the byte after `prefix` (the input's blank start), the input's first byte
/// being on line `first_line`.
fn line_after(first_line: u64, prefix: &[u8]) -> u64 {
    first_line + record::line_ends(prefix, false).0
}

fn handler_for(format: Format, opts: &Options) -> Box<dyn DynHandler> {
    match format {
        Format::Wide => Box::new(wide::Wide::new(opts)),
        Format::Long => Box::new(long::Long::new(opts)),
        Format::Nem12 => Box::new(nem12::Nem12::new(opts)),
    }
}

/// The first field of the line that starts with `held` and goes on in `next` (blank lines
/// skipped), trimmed and unquoted, or `None` if those bytes do not reach its end.
fn first_field(held: &[u8], next: &[u8]) -> Option<Vec<u8>> {
    // A record indicator is short: a field this long is none, whatever follows.
    const ENOUGH: usize = 64;
    let mut line = held[..held.len().min(ENOUGH)].to_vec();
    let next = match line.is_empty() {
        true => {
            &next[next
                .iter()
                .take_while(|&&b| b == b'\r' || b == b'\n')
                .count()..]
        }
        false => next,
    };
    line.extend_from_slice(&next[..next.len().min(ENOUGH - line.len())]);
    let end = match line.iter().position(|&b| matches!(b, b',' | b'\n' | b'\r')) {
        Some(end) => end,
        None if line.len() == ENOUGH => ENOUGH,
        None => return None,
    };
    let field = line[..end].trim_ascii();
    let field = field.strip_prefix(b"\"").unwrap_or(field);
    let field = field.strip_suffix(b"\"").unwrap_or(field);
    Some(field.trim_ascii().to_vec())
}

/// Parses a whole in-memory input: for tests, fixtures and small files.
pub fn parse_all(bytes: &[u8], opts: Options, sink: &mut dyn Sink) -> Result<Stats, FileError> {
    let mut p = Parser::new(opts);
    p.feed(bytes, sink)?;
    p.finish(sink)
}

/// The high bit of every byte of `w` equal to `c`, exactly: the sum of a byte's low seven
/// bits and 0x7F never carries into the next byte. NEM12's fast path finds a record's commas
/// eight bytes at a time with it (the long split uses [`bytes_below`]).
pub(crate) fn bytes_equal(w: u64, c: u8) -> u64 {
    const LO: u64 = 0x0101_0101_0101_0101;
    const HI: u64 = 0x8080_8080_8080_8080;
    let x = w ^ (LO * u64::from(c));
    !(((x & !HI) + !HI) | x) & HI
}

/// The high bit of every byte of `w` below `c` (for `c` ≤ 0x80), exactly: a byte's low seven
/// bits plus `0x80 - c` reach the high bit when they are `c` or more, and never carry into the
/// next byte; bytes with the high bit set are never below. One test finds every byte of a
/// class that sorts low (the long split's `,`, `\n`, `\r` and `"` are all below `-`) for the
/// price of one [`bytes_equal`].
pub(crate) fn bytes_below(w: u64, c: u8) -> u64 {
    const LO: u64 = 0x0101_0101_0101_0101;
    const HI: u64 = 0x8080_8080_8080_8080;
    debug_assert!(c <= 0x80);
    let t = (w & !HI) + LO * u64::from(0x80 - c);
    !(t | w) & HI
}

/// Bytes `text,` at the start of a little-endian 16-byte word, and the mask of those bytes:
/// the fast paths recognise the previous row's meter (and wide's date) with one load and
/// compare instead of a `memchr` and a `memcmp`.
#[derive(Clone, Copy)]
pub(crate) struct Key {
    pub(crate) word: u128,
    mask: u128,
    /// Bytes before the comma.
    pub(crate) len: usize,
}

impl Key {
    /// Matches nothing: a masked word of zero length can never equal a word with bit 0 set.
    pub(crate) const NONE: Key = Key {
        word: 1,
        mask: 0,
        len: 0,
    };

    /// `text` followed by a comma, if that fits in 16 bytes.
    pub(crate) fn new(text: &[u8]) -> Key {
        if text.is_empty() || text.len() > 15 {
            return Key::NONE;
        }
        let mut bytes = [0u8; 16];
        bytes[..text.len()].copy_from_slice(text);
        bytes[text.len()] = b',';
        // The low `len + 1` bytes; shifting right keeps a 15-byte key's (all 16 bytes) in
        // range, where `(1 << 128) - 1` overflowed (found by the `parse_chunks` fuzz target).
        let mask = u128::MAX >> (8 * (15 - text.len()));
        Key {
            word: u128::from_le_bytes(bytes),
            mask,
            len: text.len(),
        }
    }

    #[inline(always)]
    pub(crate) fn matches(&self, word: u128) -> bool {
        word & self.mask == self.word
    }
}

/// The 16 bytes at `at`, little-endian, if the buffer has them.
#[inline(always)]
pub(crate) fn word16(buf: &[u8], at: usize) -> Option<u128> {
    buf.get(at..at + 16)
        .and_then(|b| <[u8; 16]>::try_from(b).ok())
        .map(u128::from_le_bytes)
}

/// The eight bytes of `buf` from `at` as a little-endian word, zeros past its end.
pub(crate) fn word_at(buf: &[u8], at: usize) -> u64 {
    let mut word = [0u8; 8];
    match buf.get(at..at + 8) {
        Some(bytes) => word.copy_from_slice(bytes),
        None => {
            let rest = buf.get(at..).unwrap_or_default();
            word[..rest.len()].copy_from_slice(rest);
        }
    }
    u64::from_le_bytes(word)
}

/// `csv-core` and a format's general row logic only, without its fast path: the authority
/// the fast-path property tests compare with.
#[cfg(test)]
pub(crate) struct SlowOnly<H>(pub H);

#[cfg(test)]
impl<H: record::Handler> record::Handler for SlowOnly<H> {
    fn record(
        &mut self,
        rec: &record::Record<'_>,
        lineno: u64,
        sink: &mut dyn Sink,
    ) -> Result<(), FileError> {
        self.0.record(rec, lineno, sink)
    }
}

/// Line ends of every kind (`\r\n`, a lone `\r`, blank lines among them), for the fast-path
/// property tests.
#[cfg(test)]
pub(crate) fn arb_eol() -> impl proptest::strategy::Strategy<Value = &'static str> {
    use proptest::prelude::*;
    prop_oneof![6 => Just("\n"), 2 => Just("\r\n"), 1 => Just("\r\r\n"), 1 => Just("\n\n"), 1 => Just("\r")]
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

/// Parses `input` as runs handing over to one another: each run is fed up to the next of
/// `cuts` (taken modulo the length, in order) and then cut at the first boundary it can be, the
/// way the splitter hands a large file to its next invocation. Returns what all runs emitted,
/// the sum of their accounting and the resume points used. The hand-over property tests of
/// every format compare this with a one-shot parse.
#[cfg(test)]
pub(crate) fn parse_in_parts(
    input: &[u8],
    cuts: &[usize],
    opts: Options,
) -> (crate::reject::Collect, Stats, Vec<Resume>) {
    let mut sink = crate::reject::Collect::default();
    let mut cuts: Vec<usize> = cuts.iter().map(|c| c % (input.len() + 1)).collect();
    cuts.sort_unstable();
    let (mut total, mut resumes) = (Stats::default(), Vec::new());
    let mut p = Parser::new(opts.clone());
    let mut at = 0;
    for c in cuts {
        if c < at {
            continue;
        }
        p.feed(&input[at..c], &mut sink).expect("feed");
        let Some(r) = p.feed_until_cut(&input[c..], &mut sink).expect("cut") else {
            at = input.len();
            break;
        };
        assert_eq!(r.offset, p.start + p.bytes, "a cut leaves the rest unfed");
        total.add(&p.stats());
        at = r.offset as usize;
        p = Parser::resume(opts.clone(), &r).expect("resume");
        resumes.push(r);
    }
    p.feed(&input[at..], &mut sink).expect("feed");
    total.add(&p.finish(&mut sink).expect("finish"));
    (sink, total, resumes)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::reject::Collect;

    proptest::proptest! {
        /// The word masks mark exactly the bytes a byte loop marks, whatever their neighbours.
        #[test]
        fn word_masks_agree_with_a_byte_loop(w in proptest::prelude::any::<u64>(), c in proptest::prelude::any::<u8>()) {
            let mark = |f: &dyn Fn(u8) -> bool| {
                w.to_le_bytes().iter().enumerate().fold(0u64, |m, (i, &b)| m | (u64::from(f(b)) << (8 * i + 7)))
            };
            proptest::prop_assert_eq!(bytes_equal(w, c), mark(&|b| b == c));
            if c <= 0x80 {
                proptest::prop_assert_eq!(bytes_below(w, c), mark(&|b| b < c));
            }
        }

    }

    /// A wide file of 24 hourly columns, rows of ones: (input, header line).
    fn hourly(rows: &[&str]) -> (Vec<u8>, String) {
        let header = (0..24).fold(String::from("Meter,Date"), |h, i| h + &format!(",{i}:00"));
        let mut input = format!("\u{feff}\n{header}\n");
        for r in rows {
            input += &format!("{r},2019-01-01{}\n", ",1".repeat(24));
        }
        (input.into_bytes(), header)
    }

    #[test]
    fn a_cut_lands_on_the_next_row_boundary_and_resumes_with_the_header() {
        let (input, header) = hourly(&["A", "\"B\"", "C"]);
        let first_row = 3 + 1 + header.len() + 1;
        let second_row =
            first_row + input[first_row..].iter().position(|&b| b == b'\n').unwrap() + 1;
        // Mid-way through the second row: the cut is at its start, so it is the next run's.
        let (sink, stats, resumes) =
            parse_in_parts(&input, &[second_row + 2], Options::new("w", 1));
        let r = &resumes[0];
        assert_eq!((r.format, r.line), (Format::Wide, 4));
        assert_eq!(&input[r.offset as usize..r.offset as usize + 4], b"\"B\",");
        assert_eq!(r.context, vec![(2, header.clone().into_bytes())]);
        assert_eq!((stats.rows_read, stats.bytes), (3, input.len() as u64));
        let lines: Vec<u64> = sink.fragments.iter().map(|f| f.line).collect();
        assert_eq!(lines, [3, 4, 5]);
        // Before the header has been read there is nothing to resume from.
        let mut p = Parser::new(Options::new("w", 1));
        let mut c = Collect::default();
        p.feed(&input[..first_row - 3], &mut c).unwrap();
        assert_eq!(p.cut(&input[first_row - 3..], &mut c).unwrap(), None);
    }

    #[test]
    fn a_nem12_cut_never_parts_a_300_from_its_400s_and_replays_the_channel() {
        let values = ",1".repeat(48);
        let channel = "200,NEM1201009,E1E2,1,E1,N1,01009,kWh,30,20050610";
        let input = format!(
            "100,NEM12,200405011135,MDA1,Ret1\n{channel}\n\
300,20050301{values},V,,,20050310121004,\n400,1,10,A,,\n400,11,48,E,,\n\
300,20050302{values},A,,,20050310121004,\n900\n"
        );
        let input = input.as_bytes();
        let second_300 = input
            .windows(12)
            .position(|w| w == b"300,20050302")
            .unwrap();
        let first_400 = input.windows(4).position(|w| w == b"400,").unwrap();
        let (sink, stats, resumes) = parse_in_parts(input, &[first_400], Options::new("n", 1));
        assert!(sink.rejects.is_empty(), "{:?}", sink.rejects);
        assert_eq!(resumes.len(), 1);
        let r = &resumes[0];
        assert_eq!((r.offset as usize, r.line), (second_300, 6));
        // The channel, and a no-op 500 on the last record's line: the file had not ended.
        assert_eq!(
            r.context,
            vec![(2, channel.as_bytes().to_vec()), (5, b"500".to_vec())]
        );
        assert_eq!((stats.rows_read, stats.rows_accepted), (2, 2));
        let series: Vec<&str> = sink.fragments.iter().map(|f| f.series.as_str()).collect();
        assert_eq!(series, ["NEM1201009-E1", "NEM1201009-E1"]);
        assert_eq!(sink.fragments[0].quality, crate::Quality(1 | 2));
    }

    #[test]
    fn a_nem12_part_that_starts_between_files_can_be_cut_again() {
        let values = ",1".repeat(48);
        let file = |nmi: &str| {
            format!(
                "100,NEM12,200405011135,MDA1,Ret1\n200,{nmi},E1,1,E1,N1,01009,kWh,30,\n\
300,20050301{values},A,,,20050310121004,\n300,20050302{values},A,,,20050310121004,\n900\n"
            )
        };
        let input = file("NMI0000001") + &file("NMI0000002");
        let second = input.rfind("100,NEM12").unwrap();
        let last_300 = input.rfind("300,").unwrap();
        let (sink, stats, resumes) =
            parse_in_parts(input.as_bytes(), &[second, last_300], Options::new("n", 1));
        assert_eq!(resumes.len(), 2, "{resumes:?}");
        // No channel open after a 900; the 900 itself, so that another is seen as a repeat.
        let first_900 = input[..second].lines().count() as u64;
        assert_eq!(resumes[0].context, vec![(first_900, b"900".to_vec())]);
        assert_eq!(resumes[1].context[0], (first_900, b"900".to_vec()));
        assert_eq!(
            resumes[1].context[1].0,
            first_900 + 2,
            "the second file's 200"
        );
        let warned: Vec<u64> = sink.rejects.iter().map(|r| r.line).collect();
        let second_900 = input.lines().count() as u64;
        assert_eq!(warned, [second_900], "the second 900 only, as in one parse");
        assert_eq!(
            (stats.rows_read, stats.rows_accepted, stats.warnings),
            (4, 4, 1)
        );
    }

    /// Found by the `parse_chunks` fuzz target: a NUL byte after a short first line made the
    /// file "binary" when it came in one chunk and "cannot tell the format" in small ones.
    #[test]
    fn detection_does_not_depend_on_chunking() {
        let mut input = b"04,MDA1,RET1\n200,NMI&000001,E1\n300,2\xfe\xff".to_vec();
        input.extend_from_slice(b"\x00 and more text after a NUL byte\n");
        let errors: Vec<String> = [input.len(), 7, 1]
            .iter()
            .map(|&size| {
                let mut p = Parser::new(Options::new("f", 1));
                let mut sink = Collect::default();
                let fed = input.chunks(size).try_for_each(|c| p.feed(c, &mut sink));
                fed.and_then(|()| p.finish(&mut sink).map(|_| ()))
                    .unwrap_err()
                    .to_string()
            })
            .collect();
        assert!(errors[0].contains("NUL bytes"), "{}", errors[0]);
        assert_eq!(errors[1], errors[0]);
        assert_eq!(errors[2], errors[0]);
    }

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
        let report = detect(crate::reject::CSV_HEADER.as_bytes()).unwrap_err();
        assert!(report.contains("rejects report"), "{report}");
        let semi = detect(b"Meter;Date;0:00;0:30;1:00").unwrap_err();
        assert!(semi.contains("semicolons"), "{semi}");
        assert!(detect(b"Meter\tDate\t0:00\t0:30")
            .unwrap_err()
            .contains("tabs"));
    }

    /// Bytes that cannot be CSV text say what they are and what to do, whatever the chunking.
    #[test]
    fn compressed_utf16_and_binary_inputs_say_what_they_are() {
        let utf16: Vec<u8> = "\u{feff}Meter,Date,0:00,0:30\r\n"
            .encode_utf16()
            .flat_map(u16::to_le_bytes)
            .collect();
        let cases: [(&[u8], &str); 5] = [
            (
                b"PK\x03\x04\x14\x00\x00\x00\x08\x00\n",
                "zip data inside an archive",
            ),
            (b"\x1f\x8b\x08\x00\x00\x00\x00\x00\n", "gzip data"),
            (&utf16, "UTF-16"),
            (b"Meter,Date\x00\x01\x02,0:00\n", "NUL bytes"),
            (&[0u8; 70_000], "NUL bytes"),
        ];
        for (input, needle) in cases {
            for chunk in [1.max(input.len() / 1000), 7, input.len()] {
                let mut p = Parser::new(Options::new("x", 1));
                let mut sink = Collect::default();
                let r = input
                    .chunks(chunk)
                    .try_for_each(|c| p.feed(c, &mut sink))
                    .and_then(|()| p.finish(&mut sink).map(|_| ()));
                let e = r.unwrap_err().to_string();
                assert!(e.contains(needle), "{needle}: {e}");
            }
        }
    }
}
