//! One large plain input read by several workers at once: cut at row boundaries found from the
//! bytes around each multiple of the piece size ([`meterflow_core::format::pieces`]), each
//! piece parsed by whichever worker takes it, resuming from the header as a handed-over part
//! does. Fragments go to the store in any order (merging does not depend on it); what must
//! not change is each row's line number, part of its key: a piece's first line is known once
//! every piece before it has counted its line ends, which each worker does first thing (a pass
//! over its piece from the page cache), so a worker waits at most for the counts of the pieces
//! taken before its own.

use std::collections::HashMap;
use std::io::{self, Read};
use std::sync::{Arc, Condvar, Mutex};

use meterflow_core::decompress::{sniff, Compression};
use meterflow_core::format::pieces::{
    after_header, nominal_cuts, piece_resume, piece_start, LOOK_AHEAD, LOOK_BEHIND,
};
use meterflow_core::format::record::line_ends;
use meterflow_core::format::{Resume, DETECT_LIMIT};

use crate::files::{split_from, Channels, FileFailure, FileOutcome, Openable};
use crate::object::{Handover, ObjectName, ObjectReport, Part, SplitSettings};

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

    /// The line of piece `k`'s first byte, once the pieces before it are counted.
    fn first_line_of(&self, k: usize) -> Result<u64, String> {
        let mut counts = self.counts.lock().unwrap_or_else(|p| p.into_inner());
        while counts[..k].iter().any(Option::is_none) {
            counts = self.counted.wait(counts).unwrap_or_else(|p| p.into_inner());
        }
        counts[..k]
            .iter()
            .flatten()
            .try_fold(self.first_line, |line, c| match c {
                Ok(n) => Ok(line + n),
                Err(e) => Err(e.clone()),
            })
    }
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

/// Splits piece `k` of `set`: counts its line ends (and says so to the other pieces' workers),
/// waits for the line it starts on, and parses it into the channels.
pub(crate) fn split_piece<I: Openable>(
    set: &Pieces<I>,
    k: usize,
    settings: &SplitSettings,
    channels: &Channels,
) -> Result<ObjectReport, FileFailure> {
    let (from, to) = (set.starts[k], set.starts[k + 1]);
    let failed = |message: String| FileFailure {
        message,
        done: Box::default(),
    };
    // Published whatever happens (a worker waiting on it must never wait forever).
    let guard = Unpublished { set, k };
    let count = count_line_ends(&set.input, from, to).map_err(|e| format!("{}: {e}", set.input));
    std::mem::forget(guard);
    set.publish(k, count);
    let line = set.first_line_of(k).map_err(failed)?;
    let reader = match set.input.open_at(from) {
        Some(Ok(r)) => r,
        Some(Err(e)) => return Err(failed(format!("{}: {e}", set.input))),
        None => {
            return Err(failed(format!(
                "{}: cannot be read from byte {from}",
                set.input
            )))
        }
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
    let mut done = split_from(
        Box::new(reader.take(to - from)),
        &set.name,
        settings,
        &part,
        channels,
    )?;
    done.stats.bytes = to - from;
    Ok(done)
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
