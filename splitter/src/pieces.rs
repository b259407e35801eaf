//! One large plain input read by several workers at once: cut at row boundaries found from the
//! bytes around each multiple of the piece size ([`meterflow_core::format::pieces`]), each
//! piece parsed by whichever worker takes it, resuming from the header as a handed-over part
//! does. Fragments go to the store in any order (merging does not depend on it); what must
//! not change is each row's line number, part of its key: a piece's first line is the sum of
//! the line ends of the pieces before it, which each counts as it is parsed. A piece taken
//! while those before it are still being read is parsed all the same, numbered from line 1,
//! and held until they are (see [`split_piece`]): the file is read once, not once to count
//! its lines and again to parse them.

use std::collections::HashMap;
use std::io::{self, Read};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Condvar, Mutex};

use meterflow_core::decompress::{sniff, Compression};
use meterflow_core::envelope::{shift_lines, DecodeError, StreamRecord};
use meterflow_core::format::pieces::{
    after_header, nominal_cuts, piece_resume, piece_start, LOOK_AHEAD, LOOK_BEHIND,
};
use meterflow_core::format::record::line_ends;
use meterflow_core::format::{Resume, DETECT_LIMIT};
use meterflow_core::Reject;

use crate::channel::CONSUMER_GONE;
use crate::files::{split_from, Channels, FileFailure, FileOutcome, Openable};
use crate::object::{Handover, ObjectName, ObjectReport, Part, SplitSettings};
use crate::pack::Output;

/// An input cut in pieces, shared by the workers reading them.
pub(crate) struct Pieces<I> {
    input: I,
    name: ObjectName,
    /// Piece `k` is the bytes `starts[k]..starts[k + 1]`; the last start is the input's size.
    starts: Vec<u64>,
    /// The parse state after the header: what every piece but the first resumes from.
    header: Resume,
    first_line: u64,
    /// Line ends of each piece, as its worker counted them (or why it could not).
    counts: Mutex<Vec<Option<Result<u64, String>>>>,
    counted: Condvar,
}

impl<I> Pieces<I> {
    pub(crate) fn len(&self) -> usize {
        self.starts.len() - 1
    }

    fn publish(&self, k: usize, count: Result<u64, String>) {
        let mut counts = self.counts.lock().unwrap_or_else(|p| p.into_inner());
        counts[k] = Some(count);
        self.counted.notify_all();
    }

    /// Piece `k`'s bytes.
    fn len_of(&self, k: usize) -> u64 {
        self.starts[k + 1] - self.starts[k]
    }

    /// The line ends in piece `k`, read for them alone (after its parse failed), unless the
    /// run is stopping: then no piece after it will be read either.
    fn count_line_ends_unless_stopped(&self, k: usize, channels: &Channels) -> Result<u64, String>
    where
        I: Openable,
    {
        if channels.halt.load(Ordering::Relaxed) {
            return Err(CONSUMER_GONE.to_string());
        }
        count_line_ends(&self.input, self.starts[k], self.starts[k + 1])
            .map_err(|e| format!("{}: {e}", self.input))
    }

    /// The line of piece `k`'s first byte if the pieces before it are all counted, without
    /// waiting for them.
    fn first_line_now(&self, k: usize) -> Option<Result<u64, String>> {
        let counts = self.counts.lock().unwrap_or_else(|p| p.into_inner());
        counts[..k]
            .iter()
            .all(Option::is_some)
            .then(|| sum_lines(self.first_line, &counts[..k]))
    }

    /// The line of piece `k`'s first byte, once the pieces before it are counted.
    fn first_line_of(&self, k: usize) -> Result<u64, String> {
        let mut counts = self.counts.lock().unwrap_or_else(|p| p.into_inner());
        while counts[..k].iter().any(Option::is_none) {
            counts = self.counted.wait(counts).unwrap_or_else(|p| p.into_inner());
        }
        sum_lines(self.first_line, &counts[..k])
    }
}

/// `first_line` moved down by every count (all known), or the first count's failure.
fn sum_lines(first_line: u64, counts: &[Option<Result<u64, String>>]) -> Result<u64, String> {
    counts
        .iter()
        .flatten()
        .try_fold(first_line, |line, c| match c {
            Ok(n) => Ok(line + n),
            Err(e) => Err(e.clone()),
        })
}

/// Cuts `input` in pieces, or gives it back to be read whole: when it cannot be read from
/// anywhere, is smaller than two pieces, is compressed, is not wide or long, or no cut could be
/// made (quotes near every one). Errors are not reported here: reading the input whole does.
pub(crate) fn plan<I: Openable>(input: I, settings: &SplitSettings) -> Result<Arc<Pieces<I>>, I> {
    let Some(piece) = settings.piece_bytes else {
        return Err(input);
    };
    match input.seekable_len() {
        Some(len) if len >= 2 * piece => {}
        _ => return Err(input),
    }
    let Ok(opened) = input.open() else {
        return Err(input);
    };
    let size = opened.size;
    let mut head = Vec::with_capacity(DETECT_LIMIT);
    if opened
        .reader
        .take(DETECT_LIMIT as u64)
        .read_to_end(&mut head)
        .is_err()
        || sniff(&head) != Compression::None
    {
        return Err(input);
    }
    let opts = settings.options(&opened.name.object, &opened.name);
    let Some(header) = after_header(&opts, &head) else {
        return Err(input);
    };
    let mut starts = vec![0];
    for cut in nominal_cuts(size, piece).filter(|&cut| cut > header.offset) {
        let from = cut.saturating_sub(LOOK_BEHIND as u64).max(header.offset);
        let to = (cut + LOOK_AHEAD as u64).min(size);
        let Ok(window) = read_range(&input, from, to) else {
            return Err(input);
        };
        let split = ((cut - from) as usize).min(window.len());
        let (before, after) = window.split_at(split);
        // Cuts a piece apart on one long line find the same start: one piece, not an empty one.
        let last = starts.last().copied().unwrap_or(0);
        match piece_start(before, after).map(|at| cut + at as u64) {
            Some(start) if start > last && start < size => starts.push(start),
            _ => {}
        }
    }
    if starts.len() < 2 {
        return Err(input);
    }
    starts.push(size);
    let n = starts.len() - 1;
    Ok(Arc::new(Pieces {
        input,
        name: opened.name,
        starts,
        header,
        first_line: opts.first_line,
        counts: Mutex::new(vec![None; n]),
        counted: Condvar::new(),
    }))
}

/// Splits piece `k` of `set` into the channels.
///
/// When the pieces before it have all been read (the first piece always), its first line is
/// known and it is parsed straight into the channels. Otherwise it is parsed at once all the
/// same, numbered from line 1, into a [`Held`] output; once the pieces before it are read its
/// records and rejects are moved down to the lines they are on ([`shift_lines`]) and sent. A
/// piece whose held output outgrows [`Held`]'s budget (a piece of mostly bad rows) or whose
/// parse fails is read the old way: its line ends counted first, then parsed numbered.
/// Either way its line ends are published as soon as they are known, for the pieces after it.
pub(crate) fn split_piece<I: Openable>(
    set: &Pieces<I>,
    k: usize,
    settings: &SplitSettings,
    channels: &Channels,
) -> Result<ObjectReport, FileFailure> {
    // Published whatever happens (a worker waiting on it must never wait forever).
    let guard = Unpublished { set, k };
    if let Some(line) = set.first_line_now(k) {
        let done = line.map_err(failed).and_then(|line| {
            let mut out = channels.output();
            split_numbered(set, k, line, settings, channels, &mut out, None)
        });
        guard.publish(done.as_ref().ok(), channels);
        return done;
    }
    let mut held = Held::new(set.len_of(k) / HELD_SHARE);
    let watch = held.watch();
    let tried = split_numbered(set, k, 1, settings, channels, &mut held, Some(watch));
    let done = tried.ok().filter(|_| !held.overflowed());
    guard.publish(done.as_ref(), channels);
    let line = set.first_line_of(k).map_err(failed)?;
    match done {
        Some(done) => {
            held.send(line - 1, &mut channels.output())
                .map_err(|e| failed(format!("{}: {e}", set.input)))?;
            Ok(done)
        }
        None => {
            // Its first attempt's bytes are read again: count them once.
            channels
                .read
                .fetch_sub(held.read.load(Ordering::Relaxed), Ordering::Relaxed);
            split_numbered(
                set,
                k,
                line,
                settings,
                channels,
                &mut channels.output(),
                None,
            )
        }
    }
}

/// A piece that failed before it read a row.
fn failed(message: String) -> FileFailure {
    FileFailure {
        message,
        done: Box::default(),
    }
}

/// Parses piece `k` of `set` numbered from `line` into `out`; with `held`, reading also
/// stops once a [`Held`] output is over its budget, and counts what it read for it.
fn split_numbered<I: Openable>(
    set: &Pieces<I>,
    k: usize,
    line: u64,
    settings: &SplitSettings,
    channels: &Channels,
    out: &mut impl Output,
    held: Option<Watch>,
) -> Result<ObjectReport, FileFailure> {
    let (from, to) = (set.starts[k], set.starts[k + 1]);
    let reader = match set.input.open_at(from) {
        Some(Ok(r)) => r.take(to - from),
        Some(Err(e)) => return Err(failed(format!("{}: {e}", set.input))),
        None => {
            return Err(failed(format!(
                "{}: cannot be read from byte {from}",
                set.input
            )))
        }
    };
    let reader: Box<dyn Read + Send> = match held {
        Some(watch) => Box::new(Watched {
            inner: reader,
            watch,
        }),
        None => Box::new(reader),
    };
    let part = Part {
        from: (k > 0).then(|| Handover {
            etag: set.name.etag.clone(),
            input: 0,
            plain: true,
            access: None,
            resume: piece_resume(&set.header, from, line),
        }),
        ..Part::default()
    };
    let mut done = split_from(reader, &set.name, settings, &part, channels, out)?;
    done.stats.bytes = to - from;
    Ok(done)
}

/// A piece's held output may grow to its bytes over this: the records of a piece of clean rows
/// (about a fifth of its CSV) fit, a piece of mostly rejected rows does not.
const HELD_SHARE: u64 = 4;

/// The records and rejects of a piece parsed before the line it starts on is known, numbered
/// from line 1, up to a budget of bytes.
struct Held {
    records: Vec<StreamRecord>,
    rejects: Vec<Reject>,
    bytes: u64,
    budget: u64,
    /// Set once over the budget: the piece's reader stops, and the piece is read again.
    over: Arc<AtomicBool>,
    /// Bytes the piece's first attempt read (counted for progress as they were read).
    read: Arc<AtomicU64>,
}

impl Held {
    fn new(budget: u64) -> Held {
        Held {
            records: Vec::new(),
            rejects: Vec::new(),
            bytes: 0,
            budget,
            over: Arc::new(AtomicBool::new(false)),
            read: Arc::new(AtomicU64::new(0)),
        }
    }

    /// What the piece's reader shares with this output.
    fn watch(&self) -> Watch {
        Watch {
            over: Arc::clone(&self.over),
            read: Arc::clone(&self.read),
        }
    }

    fn overflowed(&self) -> bool {
        self.over.load(Ordering::Relaxed)
    }

    fn hold(&mut self, bytes: usize) -> bool {
        self.bytes += bytes as u64;
        if self.bytes > self.budget {
            self.over.store(true, Ordering::Relaxed);
        }
        !self.overflowed()
    }

    /// Sends everything held to `out`, `by` lines further down the input.
    fn send(self, by: u64, out: &mut impl Output) -> Result<(), DecodeError> {
        for mut r in self.records {
            shift_lines(&mut r.data, by)?;
            out.record(r);
        }
        for mut r in self.rejects {
            // Line 0 is no line (a reject of the whole input), which no move changes.
            if r.line > 0 {
                r.line += by;
            }
            out.reject(r);
        }
        Ok(())
    }
}

/// A [`Held`] output's budget flag and byte count, as its piece's reader sees them.
struct Watch {
    over: Arc<AtomicBool>,
    read: Arc<AtomicU64>,
}

/// A reader that stops once its [`Held`] output is over budget, and counts what it reads.
struct Watched<R> {
    inner: R,
    watch: Watch,
}

impl<R: Read> Read for Watched<R> {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        if self.watch.over.load(Ordering::Relaxed) {
            return Err(io::Error::other("held too much: read again numbered"));
        }
        let n = self.inner.read(buf)?;
        self.watch.read.fetch_add(n as u64, Ordering::Relaxed);
        Ok(n)
    }
}

impl Output for Held {
    fn record(&mut self, record: StreamRecord) {
        if self.hold(record.data.len()) {
            self.records.push(record);
        }
    }

    fn reject(&mut self, reject: Reject) {
        if self.hold(std::mem::size_of::<Reject>() + reject.reason.len()) {
            self.rejects.push(reject);
        }
    }
}

/// What a worker did with piece `k` of `set`.
pub(crate) struct PieceDone<I> {
    pub set: Arc<Pieces<I>>,
    pub k: usize,
    pub result: Result<ObjectReport, FileFailure>,
}

/// Publishes a failed count for piece `k` if dropped before its count was published (a
/// panicking worker), so that no other worker waits for it forever.
struct Unpublished<'a, I> {
    set: &'a Pieces<I>,
    k: usize,
}

impl<I: Openable> Unpublished<'_, I> {
    /// Publishes the piece's line ends: those its parse counted when it read the piece whole
    /// (`done`), else a count of their own (the parse failed or stopped early).
    fn publish(self, done: Option<&ObjectReport>, channels: &Channels) {
        let count = match done {
            Some(done) => Ok(done.stats.line_ends),
            None => self.set.count_line_ends_unless_stopped(self.k, channels),
        };
        let (set, k) = (self.set, self.k);
        std::mem::forget(self);
        set.publish(k, count);
    }
}

impl<I> Drop for Unpublished<'_, I> {
    fn drop(&mut self) {
        self.set.publish(
            self.k,
            Err("a splitting thread panicked while counting lines".into()),
        );
    }
}

/// The line ends in bytes `from..to` of `input` (`from` is a line start).
fn count_line_ends<I: Openable>(input: &I, from: u64, to: u64) -> io::Result<u64> {
    let mut r = open_at(input, from)?.take(to - from);
    let mut buf = vec![0u8; crate::READ_CHUNK];
    let (mut n, mut after_cr) = (0, false);
    loop {
        let got = match r.read(&mut buf) {
            Ok(0) => return Ok(n),
            Ok(got) => got,
            Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
            Err(e) => return Err(e),
        };
        let (ends, cr) = line_ends(&buf[..got], after_cr);
        n += ends;
        after_cr = cr;
    }
}

fn read_range<I: Openable>(input: &I, from: u64, to: u64) -> io::Result<Vec<u8>> {
    let mut bytes = Vec::with_capacity((to - from) as usize);
    open_at(input, from)?
        .take(to - from)
        .read_to_end(&mut bytes)?;
    Ok(bytes)
}

fn open_at<I: Openable>(input: &I, offset: u64) -> io::Result<Box<dyn Read + Send>> {
    input
        .open_at(offset)
        .unwrap_or_else(|| Err(io::Error::other("cannot be read from an offset")))
}

/// The outcome of each input read in pieces, from its pieces' results: one input, its rows
/// counted from every piece; failed if a piece failed (the first failure's message) or was
/// never read (the run stopped).
pub(crate) fn outcomes<I: Openable>(pieces: Vec<PieceDone<I>>) -> Vec<FileOutcome> {
    type Results<I> = (
        Arc<Pieces<I>>,
        Vec<(usize, Result<ObjectReport, FileFailure>)>,
    );
    let mut by_input: HashMap<*const Pieces<I>, Results<I>> = HashMap::new();
    for PieceDone { set, k, result } in pieces {
        by_input
            .entry(Arc::as_ptr(&set))
            .or_insert_with(|| (Arc::clone(&set), Vec::new()))
            .1
            .push((k, result));
    }
    by_input
        .into_values()
        .map(|(set, mut results)| {
            results.sort_by_key(|(k, _)| *k);
            let mut done = ObjectReport {
                inputs: 1,
                ..ObjectReport::default()
            };
            let mut failure = None;
            for (_, result) in &results {
                let report = match result {
                    Ok(report) => report,
                    Err(f) => {
                        failure.get_or_insert_with(|| f.message.clone());
                        &f.done
                    }
                };
                done.stats.add(&report.stats);
                done.failed_entries
                    .extend(report.failed_entries.iter().cloned());
            }
            if results.len() < set.len() && failure.is_none() {
                failure = Some(format!(
                    "{}: the run stopped before {} of its {} pieces were read",
                    set.input,
                    set.len() - results.len(),
                    set.len()
                ));
            }
            FileOutcome {
                input: set.input.to_string(),
                result: match failure {
                    None => Ok(done),
                    Some(message) => Err(FileFailure {
                        message,
                        done: Box::new(done),
                    }),
                },
            }
        })
        .collect()
}
