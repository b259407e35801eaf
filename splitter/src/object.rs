//! One object or file, of any compression, through the parsers into an [`Output`]: the driver
//! that `meterflow ingest` runs for each file (on its worker threads, [`crate::files`]) and the
//! splitter Lambda for each S3 object ([`crate::s3`]).
//!
//! [`split_object`] opens the object's inputs ([`for_each_input`]: the file itself, a gzip
//! stream, or each entry of a zip), splits each ([`crate::input::split_part`]) and, told to
//! stop, cuts at the next row boundary and says where the next part starts ([`Handover`]). A
//! plain object is read on from the cut (ranged GETs); a gzip one from the access point the
//! reader kept just before the cut (a deflate block boundary, with its 32 KiB window: see
//! [`meterflow_core::decompress::AccessPoint`]), inflating only the bytes between that point
//! and the cut again; a zip entry is decompressed from its start again and the bytes before
//! the cut skipped.
//! An archive entry that fails alone (see [`SplitError::is_input_only`]) is reported and the
//! archive read on.

use std::cell::RefCell;
use std::io;
use std::rc::Rc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;

use meterflow_core::decompress::{
    for_each_input, resume_gzip, sniff, AccessPoint, Compression, InputRead, Limits, SNIFF_LEN,
};
use meterflow_core::format::Resume;
use meterflow_core::source::source_name;
use meterflow_core::{FileError, Options, Reject, RejectKind, Stats, TimestampLabel, Version};

use crate::input::{split_part, SplitError, SplitErrorKind};
use crate::pack::{Output, PackSettings};

/// What names an object's fragments: see [`meterflow_core::source`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ObjectName {
    /// What it is: a canonical path, or `s3://bucket/key`.
    pub object: String,
    /// Which content of it: an S3 version id or ETag, a local file's ctime.
    pub delivery: Option<String>,
    /// The version of rows that carry none of their own: its last-modified time.
    pub version: Version,
    /// The S3 ETag as the first part read it: a later part of a replaced object fails instead
    /// of mixing two versions' rows.
    pub etag: Option<String>,
}

/// How to split objects: the packing, the decompression limits, and how long files read.
#[derive(Debug, Clone, Copy)]
pub struct SplitSettings {
    pub pack: PackSettings,
    pub limits: Limits,
    pub timestamps: TimestampLabel,
    pub long_interval_minutes: u16,
    /// Large plain wide and long inputs that can be read from anywhere (local files) are cut
    /// in pieces of about this size, read by several workers at once ([`crate::files`]);
    /// `None`: every input is read whole by one.
    pub piece_bytes: Option<u64>,
}

impl SplitSettings {
    /// The defaults, with this packing.
    pub fn packing(pack: PackSettings) -> SplitSettings {
        SplitSettings {
            pack,
            limits: Limits::default(),
            timestamps: TimestampLabel::Auto,
            long_interval_minutes: 30,
            piece_bytes: Some(meterflow_core::format::pieces::PIECE_BYTES),
        }
    }

    /// How to parse `input` (the object, or an entry of it) of the object `name`.
    pub fn options(&self, input: &str, name: &ObjectName) -> Options {
        let source = source_name(input, name.delivery.as_deref());
        let mut opts = Options::new(source, name.version);
        opts.timestamps = self.timestamps;
        opts.long_interval_minutes = self.long_interval_minutes;
        opts
    }
}

impl Default for SplitSettings {
    fn default() -> Self {
        SplitSettings::packing(PackSettings::default())
    }
}

/// How much of an object one call splits.
#[derive(Debug, Clone, Default)]
pub struct Part {
    /// Start here instead of at the object's first byte.
    pub from: Option<Handover>,
    /// Set to stop (an invocation's deadline is near): the input is cut at the next row
    /// boundary and the report carries the [`Handover`].
    pub stop: Arc<AtomicBool>,
    /// Stop once this many bytes (of the inputs parsed, decompressed) were read in this part:
    /// bounds an invocation's work whatever its deadline.
    pub max_bytes: Option<u64>,
}

/// Where one part of an object stopped, at a row boundary: the next part's start.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Handover {
    /// The object's ETag when the first part read it.
    pub etag: Option<String>,
    /// The input of the object (0, or the zip entry) the cut is in.
    pub input: u64,
    /// The object is not compressed: the next part reads it from `resume.offset`.
    pub plain: bool,
    /// A gzip object: where the next part enters it (at or before `resume.offset`); `None`
    /// (a zip, a gzip with no block boundary kept before the cut): decompressed from the start.
    pub access: Option<AccessPoint>,
    pub resume: Resume,
}

/// What splitting one object (or one part of it) did.
#[derive(Debug, Clone, Default)]
pub struct ObjectReport {
    /// Inputs begun in this part (1, or a zip's entries).
    pub inputs: u64,
    /// Entries of a zip that failed alone, each as a [`RejectKind::File`] reject naming it;
    /// the other entries were split.
    pub failed_entries: Vec<Reject>,
    pub stats: Stats,
    /// Decompressed bytes inflated only to reach this part's start (from its access point, or
    /// from the input's start) and thrown away: the work a hand-over costs.
    pub skipped: u64,
    /// Where the next part starts, when this one was told to stop before the end.
    pub handover: Option<Handover>,
}

/// Why an object stopped before its end, and what it did until then (its rows before the
/// failure were given to the output: they count).
#[derive(Debug, thiserror::Error)]
#[error("{error}")]
pub struct ObjectError {
    pub error: ObjectFailure,
    pub done: Box<ObjectReport>,
}

/// What failed.
#[derive(Debug, thiserror::Error)]
pub enum ObjectFailure {
    /// The input as a whole cannot be read (a bad header, not meter data): it never will be.
    #[error(transparent)]
    File(FileError),
    /// Reading or decompressing failed (a corrupt or truncated archive, a dropped connection,
    /// the records' consumer gone).
    #[error("{}", read_message(object, source))]
    Read { object: String, source: io::Error },
}

/// A decompression error names its input (the archive entry) already; other read errors are
/// named here.
pub(crate) fn read_message(object: &str, source: &io::Error) -> String {
    match meterflow_core::decompress::DecompressError::of(source) {
        Some(e) => e.to_string(),
        None => format!("{object}: {source}"),
    }
}

/// Splits `reader` (the object's bytes from the part's start: the whole object, or a plain
/// object's bytes from `part.from`'s offset) into `out`.
pub fn split_object<R: io::Read, O: Output>(
    reader: R,
    name: &ObjectName,
    settings: &SplitSettings,
    part: &Part,
    out: &mut O,
) -> Result<ObjectReport, ObjectError> {
    let mut run = Run {
        name,
        settings,
        part,
        done: ObjectReport::default(),
        file_error: None,
        entry: false,
    };
    let result = run.inputs(reader, out);
    let Run {
        done, file_error, ..
    } = run;
    match (result, file_error) {
        (_, Some(e)) => Err(ObjectError {
            error: ObjectFailure::File(e),
            done: Box::new(done),
        }),
        (Ok(()), None) => Ok(done),
        (Err(source), None) => Err(ObjectError {
            error: ObjectFailure::Read {
                object: name.object.clone(),
                source,
            },
            done: Box::new(done),
        }),
    }
}

/// One call of [`split_object`]: which inputs to skip, where to start and stop.
struct Run<'a> {
    name: &'a ObjectName,
    settings: &'a SplitSettings,
    part: &'a Part,
    done: ObjectReport,
    file_error: Option<FileError>,
    /// The input being split is an entry of an archive (which may fail alone).
    entry: bool,
}

impl Run<'_> {
    /// Splits the inputs of `reader`; a cut ends them with an error that is no failure.
    fn inputs<R: io::Read, O: Output>(&mut self, reader: R, out: &mut O) -> io::Result<()> {
        let object = self.name.object.as_str();
        if let Some(h) = self.part.from.clone().filter(|h| h.plain) {
            // A plain object read on from the cut: no archive to open, and its bytes there
            // are rows, which must not be mistaken for a compression header.
            self.done.inputs = 1;
            let result = self.input(object, &mut Plain(reader), Some(&h.resume), true, 0, out);
            return self.unless_handed_over(result);
        }
        let entered = self
            .part
            .from
            .clone()
            .and_then(|h| Some((h.access.clone()?, h)));
        if let Some((at, h)) = entered {
            // A gzip object entered at the access point kept before the cut.
            let limits = self.settings.limits;
            let result = resume_gzip(reader, object, limits, &at, |input, r| {
                self.done.inputs = 1;
                self.skip(r, h.resume.offset - at.out.min(h.resume.offset))?;
                self.input(input, r, Some(&h.resume), false, 0, out)
            });
            return self.unless_handed_over(result);
        }
        // The first bytes say whether the object is plain (a later part then reads it with a
        // ranged GET from the cut).
        let first = Rc::new(RefCell::new(Vec::with_capacity(SNIFF_LEN)));
        let reader = FirstBytes {
            inner: reader,
            first: Rc::clone(&first),
        };
        let mut index = 0u64;
        let handed = for_each_input(reader, object, self.settings.limits, |input, r| {
            let i = index;
            index += 1;
            let plain = sniff(&first.borrow()) == Compression::None;
            self.entry = input != object;
            match self.part.from.clone() {
                Some(h) if i < h.input => Ok(()),
                Some(h) if i == h.input => {
                    self.skip(r, h.resume.offset)?;
                    self.done.inputs += 1;
                    self.input(input, r, Some(&h.resume), plain, i, out)
                }
                _ => {
                    self.done.inputs += 1;
                    self.input(input, r, None, plain, i, out)
                }
            }
        });
        self.unless_handed_over(handed.map(drop))
    }

    /// A cut ends the inputs with an error that is no failure.
    fn unless_handed_over(&self, result: io::Result<()>) -> io::Result<()> {
        match result {
            Err(_) if self.done.handover.is_some() => Ok(()),
            other => other,
        }
    }

    /// Reads and throws away the `n` bytes of `r` before a part's start.
    fn skip(&mut self, r: &mut dyn InputRead, n: u64) -> io::Result<()> {
        let skipped = io::copy(&mut io::Read::take(&mut *r, n), &mut io::sink())?;
        self.done.skipped += skipped;
        if skipped < n {
            let msg = format!("the input ends {skipped} bytes into the {n} before the hand-over's cut: was the object replaced?");
            return Err(io::Error::new(io::ErrorKind::UnexpectedEof, msg));
        }
        Ok(())
    }

    /// Splits one input; after a cut, fails with an error that ends the object's inputs (the
    /// handover is set, so [`Run::inputs`] knows it for what it is).
    fn input<O: Output>(
        &mut self,
        input: &str,
        r: &mut dyn InputRead,
        from: Option<&Resume>,
        plain: bool,
        index: u64,
        out: &mut O,
    ) -> io::Result<()> {
        let stop = Arc::clone(&self.part.stop);
        let max = self.part.max_bytes.unwrap_or(u64::MAX);
        // The budget is the part's, across a zip's inputs, not each input's.
        let before = self.done.stats.bytes;
        let halt = |read: u64| stop.load(Ordering::Relaxed) || before + read >= max;
        let opts = self.settings.options(input, self.name);
        match split_part(&mut *r, opts, from, self.settings.pack, out, halt) {
            Ok((s, cut)) => {
                self.done.stats.add(&s);
                let Some(resume) = cut else { return Ok(()) };
                self.done.handover = Some(Handover {
                    etag: self.name.etag.clone(),
                    input: index,
                    plain,
                    access: r.access_point(resume.offset),
                    resume,
                });
                Err(io::Error::other("handed over to the next part"))
            }
            Err(e) if self.entry && e.is_input_only() => {
                // An archive entry that fails alone: reported, and the archive read on.
                self.done.stats.add(&e.stats);
                let line = match &e.kind {
                    SplitErrorKind::File(
                        FileError::Header { line, .. } | FileError::RecordTooLong { line, .. },
                    ) => *line,
                    _ => 0,
                };
                self.done.failed_entries.push(Reject {
                    source: source_name(input, self.name.delivery.as_deref()).into(),
                    line,
                    column: None,
                    kind: RejectKind::File,
                    reason: e.to_string(),
                });
                Ok(())
            }
            Err(SplitError { kind, stats }) => {
                // The rows before the failure were given to the output: they count.
                self.done.stats.add(&stats);
                match kind {
                    SplitErrorKind::Io { source, .. } => Err(source),
                    SplitErrorKind::File(e) => {
                        let msg = e.to_string();
                        self.file_error = Some(e);
                        Err(io::Error::new(io::ErrorKind::InvalidData, msg))
                    }
                }
            }
        }
    }
}

/// A plain object read on from a cut: no access points.
struct Plain<R>(R);

impl<R: io::Read> io::Read for Plain<R> {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        self.0.read(buf)
    }
}

impl<R: io::Read> InputRead for Plain<R> {}

/// Keeps the first [`SNIFF_LEN`] bytes read through it.
struct FirstBytes<R> {
    inner: R,
    first: Rc<RefCell<Vec<u8>>>,
}

impl<R: io::Read> io::Read for FirstBytes<R> {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        let n = self.inner.read(buf)?;
        let mut first = self.first.borrow_mut();
        let want = SNIFF_LEN.saturating_sub(first.len()).min(n);
        first.extend_from_slice(&buf[..want]);
        Ok(n)
    }
}
