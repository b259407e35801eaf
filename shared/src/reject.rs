//! Rejected rows, whole-file failures, and the sink parsers report into.

use std::fmt;
use std::io::{self, Write};
use std::sync::Arc;

use crate::fragment::Fragment;
use crate::source::object_of;

/// One line of the rejects report: a row that was not counted, a record that was refused, a
/// warning about an input, or an input that failed as a whole; and why. Every row read is
/// either accepted into a fragment or becomes exactly one reject of kind [`RejectKind::Row`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Reject {
    /// The source name (reports and messages show its object, see [`crate::source`]).
    pub source: Arc<str>,
    /// 1-based line where the row starts.
    pub line: u64,
    /// 1-based column (field) at fault, when one is.
    pub column: Option<u32>,
    /// What the line is about, which decides the count of [`Stats`] it adds to.
    pub kind: RejectKind,
    /// Why, in words meant for whoever supplied the input.
    pub reason: String,
}

/// What a report line is about; each kind has its own count in [`Stats`], so the report's
/// lines and the summary's counts always agree.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Default)]
pub enum RejectKind {
    /// A row (a wide or long row, a NEM12 300 with its 400s) that was not counted
    /// ([`Stats::rows_rejected`]).
    #[default]
    Row,
    /// A record that is not a row and was refused: a NEM12 200, 100 or 400 record, or one of
    /// an unknown kind ([`Stats::records_rejected`]). The rows it affects are reported on their
    /// own lines.
    Record,
    /// Nothing was refused, but the input deserves a look: a NEM12 file without its 900 end
    /// record may have lost its tail ([`Stats::warnings`]).
    Warning,
    /// The input as a whole could not be read from this line on (the Lambda's report; the CLI
    /// lists such failures in its summary).
    File,
}

impl RejectKind {
    /// The report's `kind` column.
    pub fn as_str(self) -> &'static str {
        match self {
            RejectKind::Row => "row",
            RejectKind::Record => "record",
            RejectKind::Warning => "warning",
            RejectKind::File => "file",
        }
    }

    /// The kind a report's `kind` column names.
    pub fn from_name(name: &str) -> Option<RejectKind> {
        [
            RejectKind::Row,
            RejectKind::Record,
            RejectKind::Warning,
            RejectKind::File,
        ]
        .into_iter()
        .find(|k| k.as_str() == name)
    }
}

impl fmt::Display for Reject {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}:{}", object_of(&self.source), self.line)?;
        if let Some(c) = self.column {
            write!(f, ": column {c}")?;
        }
        let prefix = match self.kind {
            RejectKind::Row => "",
            RejectKind::Record => "record refused: ",
            RejectKind::Warning => "warning: ",
            RejectKind::File => "input failed: ",
        };
        write!(f, ": {prefix}{}", self.reason)
    }
}

/// The rejects report is CSV with these columns, written by [`Reject::write_csv_header`] and
/// [`Reject::write_csv`]: one writer for the CLI's `--rejects` file and the splitter Lambda's
/// report object, so both read the same way. `kind` is [`RejectKind::as_str`].
pub const CSV_HEADER: &str = "file,line,column,kind,reason";

impl Reject {
    /// Writes the report's header line.
    pub fn write_csv_header(w: &mut impl Write) -> io::Result<()> {
        writeln!(w, "{CSV_HEADER}")
    }

    /// Writes this reject as one report line; an absent column is an empty field.
    pub fn write_csv(&self, w: &mut impl Write) -> io::Result<()> {
        write_csv_field(w, object_of(&self.source))?;
        write!(w, ",{},", self.line)?;
        if let Some(c) = self.column {
            write!(w, "{c}")?;
        }
        write!(w, ",{},", self.kind.as_str())?;
        write_csv_field(w, &self.reason)?;
        writeln!(w)
    }
}

/// A field quoted (quotes doubled) when it holds a separator, quote or line break: file names
/// and reasons may hold commas.
fn write_csv_field(w: &mut impl Write, s: &str) -> io::Result<()> {
    if s.contains([',', '"', '\n', '\r']) {
        write!(w, "\"{}\"", s.replace('"', "\"\""))
    } else {
        w.write_all(s.as_bytes())
    }
}

/// The input as a whole cannot be read: nothing after the failure was interpreted. `input` is
/// the source name; messages show its object (see [`crate::source`]).
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum FileError {
    /// The header line is missing or unusable (a required column absent, say), so no row can
    /// be read.
    #[error("{}:{line}: {reason}", object_of(input))]
    Header {
        /// The source name.
        input: Arc<str>,
        /// 1-based line of the header, or where it was expected.
        line: u64,
        /// What is wrong with it.
        reason: String,
    },
    /// The input is not a meter-data file meterflow reads: empty, binary, UTF-16, compressed
    /// twice, or of no recognised format.
    #[error("{}: {reason}", object_of(input))]
    Format {
        /// The source name.
        input: Arc<str>,
        /// What the input is instead, and what to do.
        reason: String,
    },
    /// One CSV record exceeds the length limit: usually an unterminated quote that swallows the
    /// rest of the file.
    #[error("{}:{line}: a single record is longer than {limit} bytes; is this really a meter-data CSV file?", object_of(input))]
    RecordTooLong {
        /// The source name.
        input: Arc<str>,
        /// 1-based line where the record starts.
        line: u64,
        /// The limit, in bytes ([`crate::format::record::MAX_CSV_RECORD_BYTES`]).
        limit: usize,
    },
}

/// Receives a parser's output. Fragments are lent, not given: the parser reuses one buffer
/// per row, and a sink that keeps them clones (most encode them straight onto the wire).
pub trait Sink {
    /// Receives an accepted fragment, lent for the duration of the call.
    fn fragment(&mut self, fragment: &Fragment);
    /// Receives one line of the rejects report.
    fn reject(&mut self, reject: Reject);
}

/// Accounting for one input: `rows_read == rows_accepted + rows_rejected` always holds, and
/// every report line is counted by exactly one of `rows_rejected`, `records_rejected` and
/// `warnings` (by its [`RejectKind`]).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
#[cfg_attr(feature = "serde", derive(serde::Serialize))]
pub struct Stats {
    /// Data rows read (headers and structural records excluded); each is either accepted or
    /// rejected, never dropped.
    pub rows_read: u64,
    /// Rows whose values went into fragments.
    pub rows_accepted: u64,
    /// Rows not counted, each reported as a [`RejectKind::Row`] reject.
    pub rows_rejected: u64,
    /// Records that are not rows and were refused ([`RejectKind::Record`]).
    pub records_rejected: u64,
    /// Warnings reported ([`RejectKind::Warning`]).
    pub warnings: u64,
    /// Fragments given to the sink: a long file folds a day's rows into one, so this may be
    /// fewer than `rows_accepted`.
    pub fragments: u64,
    /// Decompressed input bytes fed to the parser, less those a cut handed over.
    #[cfg_attr(feature = "serde", serde(skip))]
    pub bytes: u64,
    /// Line ends in those bytes ([`crate::format::record::line_ends`]): how many lines a piece
    /// of a file cut in pieces moves the lines of the pieces after it.
    #[cfg_attr(feature = "serde", serde(skip))]
    pub line_ends: u64,
}

impl Stats {
    /// Adds `o`'s counts to these: totals several inputs, or the parts of a cut one.
    pub fn add(&mut self, o: &Stats) {
        self.rows_read += o.rows_read;
        self.rows_accepted += o.rows_accepted;
        self.rows_rejected += o.rows_rejected;
        self.records_rejected += o.records_rejected;
        self.warnings += o.warnings;
        self.fragments += o.fragments;
        self.bytes += o.bytes;
        self.line_ends += o.line_ends;
    }

    /// Report lines these counts stand for: rejected rows and records, and warnings.
    pub fn reported(&self) -> u64 {
        self.rows_rejected + self.records_rejected + self.warnings
    }
}

/// A sink that keeps nothing: for records replayed only to restore a parser's state.
#[derive(Debug, Default)]
pub struct Discard;

impl Sink for Discard {
    fn fragment(&mut self, _fragment: &Fragment) {}
    fn reject(&mut self, _reject: Reject) {}
}

/// A sink that keeps everything; for tests and small inputs.
#[derive(Debug, Default)]
pub struct Collect {
    /// Every fragment received, cloned, in order.
    pub fragments: Vec<Fragment>,
    /// Every reject received, in order.
    pub rejects: Vec<Reject>,
}

impl Sink for Collect {
    fn fragment(&mut self, fragment: &Fragment) {
        self.fragments.push(fragment.clone());
    }
    fn reject(&mut self, reject: Reject) {
        self.rejects.push(reject);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn rejects_write_as_csv_with_quoting_where_needed() {
        let mut out = Vec::new();
        Reject::write_csv_header(&mut out).unwrap();
        let rows = [
            Reject {
                source: "data/a.csv".into(),
                line: 7,
                column: Some(3),
                kind: RejectKind::Row,
                reason: "not a number".into(),
            },
            Reject {
                source: "s3://b/x, \"y\".csv".into(),
                line: 1,
                column: None,
                kind: RejectKind::Warning,
                reason: "two\nlines".into(),
            },
        ];
        for r in &rows {
            r.write_csv(&mut out).unwrap();
        }
        assert_eq!(
            String::from_utf8(out).unwrap(),
            "file,line,column,kind,reason\n\
             data/a.csv,7,3,row,not a number\n\
             \"s3://b/x, \"\"y\"\".csv\",1,,warning,\"two\nlines\"\n"
        );
    }
}
