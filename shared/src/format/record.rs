//! Record assembly: byte chunks in, complete CSV records out, whatever the chunk boundaries.
//!
//! `csv-core` is the authority on CSV syntax (quotes, escaped quotes, CR/LF/CRLF, newlines
//! inside quoted fields). Most meter files are plain unquoted lines, though, so complete lines
//! are first offered to the format's fast path: a run of whole lines straight from the chunk
//! ([`Handler::lines`], no separate newline search), then one line at a time
//! ([`Handler::line`]). The handler may take them or decline (no side effects) so that
//! `csv-core` parses them instead. A line cut by the end of a chunk is held back (up to
//! [`MAX_HELD_BYTES`]) and joined with its end from the next chunk, so it is offered to the
//! fast path too. Both paths must give the same results; the format modules test that with
//! chunk boundaries everywhere, and against `csv-core` alone.

use csv_core::{ReadRecordResult, Reader};
use memchr::memchr;

use crate::reject::{FileError, Sink};

/// Longest record accepted. A real 288-slot row is a few kB; an unterminated quote would
/// otherwise make the whole file one "record" held in memory.
pub const MAX_CSV_RECORD_BYTES: usize = 1 << 20;

/// Longest unterminated tail of a chunk held back to be joined with the next chunk. Well above
/// a 288-slot row; longer tails (a file without `\n`, a huge quoted field) go to `csv-core`
/// at once, so memory stays bounded and nothing is copied twice for long.
pub const MAX_HELD_BYTES: usize = 16 << 10;

/// One CSV record, fields unquoted.
pub struct Record<'a> {
    buf: &'a [u8],
    ends: &'a [usize],
}

impl<'a> Record<'a> {
    /// Number of fields.
    pub fn len(&self) -> usize {
        self.ends.len()
    }

    /// True for a record without fields.
    pub fn is_empty(&self) -> bool {
        self.ends.is_empty()
    }

    /// Field `i` (0-based), unquoted but not trimmed; `None` past the last field.
    pub fn get(&self, i: usize) -> Option<&'a [u8]> {
        let end = *self.ends.get(i)?;
        let start = if i == 0 { 0 } else { self.ends[i - 1] };
        Some(&self.buf[start..end])
    }

    /// The fields in order, as [`Record::get`] gives them.
    pub fn iter(&self) -> impl Iterator<Item = &'a [u8]> + '_ {
        (0..self.len()).filter_map(|i| self.get(i))
    }

    /// True when the record repeats the (lower-cased, trimmed) header: files concatenated with
    /// `cat` carry their header again, and it is not a row.
    pub fn repeats(&self, header: &[Vec<u8>]) -> bool {
        self.len() == header.len()
            && self
                .iter()
                .zip(header)
                .all(|(f, h)| f.trim_ascii().eq_ignore_ascii_case(h))
    }

    /// The reject for a row shorter than its header, if it is. A quoted field that holds line
    /// breaks is most often a stray or unclosed `"` that swallowed the lines after it, which
    /// the message says, so that the lines missing from the count are not a mystery.
    pub fn has_fields(&self, fields: usize) -> Result<(), (Option<u32>, String)> {
        if self.len() < fields {
            let mut message = format!(
                "the row has {} fields but the header has {fields}",
                self.len()
            );
            let breaks = self
                .buf
                .trim_ascii_end()
                .iter()
                .filter(|&&b| b == b'\n')
                .count();
            if breaks > 0 {
                message.push_str(&format!(
                    "; a quoted field runs over {breaks} more line{}: an unclosed `\"` joined \
                     {} to this row (close the quote, or remove it)",
                    if breaks == 1 { "" } else { "s" },
                    if breaks == 1 {
                        "the next line"
                    } else {
                        "the lines after it"
                    },
                ));
            }
            return Err((None, message));
        }
        Ok(())
    }

    /// True when every field is blank (`,,,` lines exported by spreadsheets).
    pub fn is_blank(&self) -> bool {
        self.iter().all(|f| f.trim_ascii().is_empty())
    }
}

/// One CSV line (no terminator) that parses back into `fields`: quoted where it must be.
pub fn csv_line<'a>(fields: impl IntoIterator<Item = &'a [u8]>) -> Vec<u8> {
    let mut line = Vec::new();
    for (i, f) in fields.into_iter().enumerate() {
        if i > 0 {
            line.push(b',');
        }
        if f.iter().any(|b| matches!(b, b',' | b'"' | b'\r' | b'\n')) {
            line.push(b'"');
            for &b in f {
                if b == b'"' {
                    line.push(b'"');
                }
                line.push(b);
            }
            line.push(b'"');
        } else {
            line.extend_from_slice(f);
        }
    }
    line
}

/// What a format does with records.
pub trait Handler {
    /// Offers `input`, which starts at the beginning of line `lineno`: the handler takes as
    /// many whole lines from its start as it fully understands and returns `(bytes, lines)`
    /// taken. Every line taken must end with its `\n` or `\r\n` inside `input` and hold no
    /// other `\r` or `\n` (each is one line: see [`line_ends`]); taking a line has the same
    /// effect as [`Handler::line`] on it (its `\r` stripped).
    /// The first line it does not understand (or an incomplete one) it leaves untouched.
    fn lines(&mut self, _input: &[u8], _lineno: u64, _sink: &mut dyn Sink) -> (usize, u64) {
        (0, 0)
    }

    /// Offers a complete line without its terminator (`\n` or `\r\n`) that is not empty.
    /// It may still hold quotes or a `\r` (an old Mac line end, so really more than one
    /// line): a handler must take only a line without either, and otherwise return `false`,
    /// having changed nothing, so that `csv-core` parses it and calls [`Handler::record`].
    fn line(&mut self, _line: &[u8], _lineno: u64, _sink: &mut dyn Sink) -> bool {
        false
    }

    /// A complete record starting at 1-based line `lineno`.
    fn record(
        &mut self,
        rec: &Record<'_>,
        lineno: u64,
        sink: &mut dyn Sink,
    ) -> Result<(), FileError>;
}

/// The line ends in `bytes` and whether its last byte is a `\r`, `after_cr` telling whether
/// the byte before them was one. `\n`, `\r\n` and a lone `\r` each end one line, as
/// `csv-core` ends records and as editors number lines, so that a row of a file saved with old
/// Mac line ends (Excel's "CSV (Macintosh)") is reported on its own line, not all on line 1.
pub fn line_ends(bytes: &[u8], after_cr: bool) -> (u64, bool) {
    let Some(&last) = bytes.last() else {
        return (0, after_cr);
    };
    let mut n = memchr::memchr_iter(b'\n', bytes).count() as u64;
    if after_cr && bytes[0] == b'\n' {
        n -= 1;
    }
    // A `\r` ends a line unless a `\n` follows (then that `\n` ended it, counted above).
    n += memchr::memchr_iter(b'\r', bytes)
        .filter(|&i| bytes.get(i + 1) != Some(&b'\n'))
        .count() as u64;
    (n, last == b'\r')
}

/// Resumable record splitter over pushed chunks.
pub struct Records {
    csv: Reader,
    out: Vec<u8>,
    out_len: usize,
    ends: Vec<usize>,
    ends_len: usize,
    /// Line ends consumed so far ([`line_ends`]): the line of the next byte is `newlines + 1`.
    newlines: u64,
    /// The last byte consumed was a `\r`, so a `\n` right after it ends no other line.
    after_cr: bool,
    record_line: u64,
    /// `csv-core` holds part of a record.
    in_record: bool,
    /// The unterminated start of a line that ended a chunk, outside any record, waiting for
    /// its end (no `\n` in it). At most [`MAX_HELD_BYTES`].
    held: Vec<u8>,
    source: std::sync::Arc<str>,
}

impl Records {
    /// `first_line` is the line number of the first byte fed (1 for a whole file; more when a
    /// Lambda resumes a large file at a row boundary).
    pub fn new(source: std::sync::Arc<str>, first_line: u64) -> Records {
        Records {
            csv: Reader::new(),
            out: vec![0; 4096],
            out_len: 0,
            ends: vec![0; 320],
            ends_len: 0,
            newlines: first_line.saturating_sub(1),
            after_cr: false,
            record_line: 0,
            in_record: false,
            held: Vec::new(),
            source,
        }
    }

    /// Line number of the next unread byte.
    pub fn next_line(&self) -> u64 {
        self.newlines + 1
    }

    /// Outside any record, the start of the next line held back so far (possibly empty; it
    /// has no `\n` and begins at line [`Records::next_line`]); `None` inside a record, and
    /// between a `\r` and the `\n` that may end its line (`next`, the bytes that follow, does
    /// not show otherwise): a run started there would count that `\n` as another line.
    pub fn held_at_boundary(&self, next: &[u8]) -> Option<&[u8]> {
        let mid_crlf =
            self.after_cr && self.held.is_empty() && next.first().is_none_or(|&b| b == b'\n');
        (!self.in_record && !mid_crlf).then_some(self.held.as_slice())
    }

    /// Counts the line ends in `consumed`, the bytes read after all those before.
    fn consume(&mut self, consumed: &[u8]) {
        let (n, after_cr) = line_ends(consumed, self.after_cr);
        self.newlines += n;
        self.after_cr = after_cr;
    }

    /// Splits the next bytes of the input into records for `h`, whatever the chunk boundaries:
    /// an unterminated last line is held back and joined with the next chunk. Fails on a record
    /// longer than [`MAX_CSV_RECORD_BYTES`], or with the handler's error.
    pub fn feed<H: Handler>(
        &mut self,
        mut input: &[u8],
        h: &mut H,
        sink: &mut dyn Sink,
    ) -> Result<(), FileError> {
        if !self.held.is_empty() {
            let mut held = std::mem::take(&mut self.held);
            let r = match memchr(b'\n', input) {
                Some(nl) => {
                    held.extend_from_slice(&input[..=nl]);
                    input = &input[nl + 1..];
                    self.run(&held, h, sink, false)
                }
                None if held.len() + input.len() <= MAX_HELD_BYTES => {
                    held.extend_from_slice(input);
                    self.held = held;
                    return Ok(());
                }
                None => self.run(&held, h, sink, false),
            };
            held.clear();
            // `run` without holding leaves `self.held` empty: give the allocation back.
            self.held = held;
            r?;
        }
        self.run(input, h, sink, true)
    }

    /// Parses `input` wholly; with `hold`, an unterminated last line outside any record is kept
    /// in `self.held` instead of being started in `csv-core`.
    fn run<H: Handler>(
        &mut self,
        mut input: &[u8],
        h: &mut H,
        sink: &mut dyn Sink,
        hold: bool,
    ) -> Result<(), FileError> {
        loop {
            if !self.in_record {
                let mut complete = true;
                loop {
                    let (used, lines) = h.lines(input, self.newlines + 1, sink);
                    if used > 0 {
                        // Lines the fast path takes end in `\n` and hold no other line end.
                        debug_assert_eq!(line_ends(&input[..used], self.after_cr), (lines, false));
                        self.newlines += lines;
                        self.after_cr = false;
                    }
                    input = &input[used..];
                    let Some(nl) = memchr(b'\n', input) else {
                        complete = false;
                        break;
                    };
                    let line = &input[..nl];
                    let line = line.strip_suffix(b"\r").unwrap_or(line);
                    if !line.is_empty() && !h.line(line, self.newlines + 1, sink) {
                        break;
                    }
                    if line.is_empty() {
                        // Maybe the `\n` of a `\r\n` cut by the end of a chunk.
                        self.consume(&input[..=nl]);
                    } else {
                        // A line taken holds no `\r`: it ends exactly one line.
                        debug_assert_eq!(line_ends(&input[..=nl], self.after_cr), (1, false));
                        self.newlines += 1;
                        self.after_cr = false;
                    }
                    input = &input[nl + 1..];
                }
                // Terminators before a record are blank lines; skipping them here keeps the
                // record's line number exact (csv-core would skip them too).
                let skip = input
                    .iter()
                    .take_while(|&&b| b == b'\r' || b == b'\n')
                    .count();
                self.consume(&input[..skip]);
                input = &input[skip..];
                if input.is_empty() {
                    return Ok(());
                }
                if hold && !complete && input.len() <= MAX_HELD_BYTES {
                    self.held.extend_from_slice(input);
                    return Ok(());
                }
                self.in_record = true;
                self.record_line = self.newlines + 1;
            }
            if input.is_empty() {
                return Ok(());
            }
            let (res, nin, nout, nend) = self.csv.read_record(
                input,
                &mut self.out[self.out_len..],
                &mut self.ends[self.ends_len..],
            );
            self.consume(&input[..nin]);
            input = &input[nin..];
            self.out_len += nout;
            self.ends_len += nend;
            self.step(res, h, sink)?;
        }
    }

    /// Signals the end of input: delivers a final record that lacked a line terminator.
    pub fn finish<H: Handler>(&mut self, h: &mut H, sink: &mut dyn Sink) -> Result<(), FileError> {
        if !self.held.is_empty() {
            let held = std::mem::take(&mut self.held);
            self.run(&held, h, sink, false)?;
        }
        while self.in_record {
            let (res, _, nout, nend) = self.csv.read_record(
                &[],
                &mut self.out[self.out_len..],
                &mut self.ends[self.ends_len..],
            );
            self.out_len += nout;
            self.ends_len += nend;
            if res == ReadRecordResult::End || res == ReadRecordResult::InputEmpty {
                self.in_record = false;
                break;
            }
            self.step(res, h, sink)?;
        }
        Ok(())
    }

    fn step<H: Handler>(
        &mut self,
        res: ReadRecordResult,
        h: &mut H,
        sink: &mut dyn Sink,
    ) -> Result<(), FileError> {
        match res {
            ReadRecordResult::InputEmpty | ReadRecordResult::End => {}
            ReadRecordResult::OutputFull => {
                if self.out.len() >= MAX_CSV_RECORD_BYTES {
                    return Err(FileError::RecordTooLong {
                        input: self.source.clone(),
                        line: self.record_line,
                        limit: MAX_CSV_RECORD_BYTES,
                    });
                }
                let n = self.out.len() * 2;
                self.out.resize(n, 0);
            }
            ReadRecordResult::OutputEndsFull => {
                let n = self.ends.len() * 2;
                self.ends.resize(n, 0);
            }
            ReadRecordResult::Record => {
                self.in_record = false;
                let rec = Record {
                    buf: &self.out[..self.out_len],
                    ends: &self.ends[..self.ends_len],
                };
                let line = self.record_line;
                self.out_len = 0;
                self.ends_len = 0;
                if !rec.is_blank() {
                    h.record(&rec, line, sink)?;
                }
            }
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::reject::Collect;
    use proptest::prelude::*;

    /// Logs every record as `line:field|field`, and takes the fast path when asked.
    struct Log {
        fast: bool,
        seen: Vec<String>,
    }

    impl Handler for Log {
        /// Takes lines up to the first empty or declined one, the way a fused fast path does.
        fn lines(&mut self, input: &[u8], lineno: u64, sink: &mut dyn Sink) -> (usize, u64) {
            let (mut used, mut n) = (0, 0);
            while let Some(nl) = memchr(b'\n', &input[used..]) {
                let line = &input[used..used + nl];
                let line = line.strip_suffix(b"\r").unwrap_or(line);
                if line.is_empty() || !self.line(line, lineno + n, sink) {
                    break;
                }
                used += nl + 1;
                n += 1;
            }
            (used, n)
        }

        fn line(&mut self, line: &[u8], lineno: u64, _: &mut dyn Sink) -> bool {
            if !self.fast
                || line.contains(&b'"')
                || line.contains(&b'\r')
                || line.iter().all(|&b| b == b',' || b == b' ')
            {
                return false;
            }
            let fields: Vec<_> = line
                .split(|&b| b == b',')
                .map(String::from_utf8_lossy)
                .collect();
            self.seen.push(format!("{lineno}:{}", fields.join("|")));
            true
        }
        fn record(
            &mut self,
            rec: &Record<'_>,
            lineno: u64,
            _: &mut dyn Sink,
        ) -> Result<(), FileError> {
            let fields: Vec<_> = rec.iter().map(String::from_utf8_lossy).collect();
            self.seen.push(format!("{lineno}:{}", fields.join("|")));
            Ok(())
        }
    }

    fn run(input: &[u8], cuts: &[usize], fast: bool) -> Vec<String> {
        let mut r = Records::new("t".into(), 1);
        let mut h = Log { fast, seen: vec![] };
        let mut sink = Collect::default();
        let mut prev = 0;
        let mut cuts: Vec<usize> = cuts.iter().map(|c| c % (input.len() + 1)).collect();
        cuts.sort_unstable();
        for c in cuts {
            r.feed(&input[prev..c], &mut h, &mut sink).unwrap();
            prev = c;
        }
        r.feed(&input[prev..], &mut h, &mut sink).unwrap();
        r.finish(&mut h, &mut sink).unwrap();
        h.seen
    }

    #[test]
    fn lines_quotes_and_blank_lines() {
        let input = b"a,b\r\n\r\n\"x,1\",\"say \"\"hi\"\"\"\n\n\"multi\nline\",2\nlast,row";
        let want = vec!["1:a|b", "3:x,1|say \"hi\"", "5:multi\nline|2", "7:last|row"];
        assert_eq!(run(input, &[], false), want);
        assert_eq!(run(input, &[], true), want);
    }

    #[test]
    fn overlong_record_is_a_file_error() {
        let mut input = vec![b'"'];
        input.resize(MAX_CSV_RECORD_BYTES + 10, b'x');
        let mut r = Records::new("t".into(), 1);
        let mut h = Log {
            fast: false,
            seen: vec![],
        };
        let err = r.feed(&input, &mut h, &mut Collect::default()).unwrap_err();
        assert!(
            matches!(err, FileError::RecordTooLong { line: 1, .. }),
            "{err}"
        );
    }

    #[test]
    fn long_unterminated_tails_go_to_csv_core_and_still_match() {
        // A line longer than MAX_HELD_BYTES fed in small chunks overflows the held tail; so
        // does a file of bare-CR line ends (no `\n` at all).
        let long = "x".repeat(MAX_HELD_BYTES + 100);
        let inputs = [format!("a,b\n{long},1\nc,d\n"), "a,b\rc,d\r".repeat(3000)];
        for input in &inputs {
            let cuts: Vec<usize> = (1..input.len() / 1000).map(|k| k * 1000).collect();
            let whole = run(input.as_bytes(), &[], false);
            assert_eq!(run(input.as_bytes(), &cuts, true), whole);
            assert_eq!(run(input.as_bytes(), &cuts, false), whole);
        }
    }

    /// The records of an input without quotes, numbered by a plain reading of universal
    /// newlines (`\r\n`, `\r`, `\n`), blank ones left out: what [`run`] must give.
    fn reference(input: &[u8]) -> Vec<String> {
        let (mut out, mut line, mut start, mut i) = (Vec::new(), 1, 0, 0);
        while start < input.len() {
            let end = match input[i..].iter().position(|&b| b == b'\r' || b == b'\n') {
                Some(p) => i + p,
                None => input.len(),
            };
            let text = std::str::from_utf8(&input[start..end]).unwrap();
            if text.split(',').any(|f| !f.trim().is_empty()) {
                out.push(format!(
                    "{line}:{}",
                    text.split(',').collect::<Vec<_>>().join("|")
                ));
            }
            let eol = match input.get(end..end + 2) {
                Some(b"\r\n") => 2,
                _ => 1,
            };
            (start, i, line) = (end + eol, end + eol, line + 1);
        }
        out
    }

    /// `lines`, each ended by its `eols` entry, the last one only with `final_eol`.
    fn joined(lines: &[String], eols: &[&str], final_eol: bool) -> String {
        let mut input = String::new();
        for (i, l) in lines.iter().enumerate() {
            input.push_str(l);
            if i + 1 < lines.len() || final_eol {
                input.push_str(eols[i]);
            }
        }
        input
    }

    #[test]
    fn bare_cr_line_ends_number_lines() {
        let input = b"a,b\rc,d\r\r\ne,f\r\rg,h\n\ni,j\r";
        let want = ["1:a|b", "2:c|d", "4:e|f", "6:g|h", "8:i|j"];
        assert_eq!(reference(input), want);
        for cut in 0..=input.len() {
            assert_eq!(run(input, &[cut], false), want, "cut at {cut}");
            assert_eq!(run(input, &[cut], true), want, "cut at {cut}");
        }
        assert_eq!(line_ends(b"\r", false), (1, true));
        assert_eq!(line_ends(b"\n", true), (0, false));
        assert_eq!(line_ends(b"\r\r\n\n", false), (3, false));
        assert_eq!(line_ends(b"", true), (0, true));
    }

    proptest! {
        /// Lines ended any way (old Mac `\r` and a doubled `\r\r\n` included), cut anywhere,
        /// with and without the fast path: each record on the line an editor shows it on.
        #[test]
        fn records_are_numbered_by_universal_newlines(
            lines in proptest::collection::vec("[a-c,]{0,6}", 0..12),
            eols in proptest::collection::vec(prop_oneof![Just("\n"), Just("\r\n"), Just("\r"), Just("\r\r\n")], 12),
            cuts in proptest::collection::vec(0usize..200, 0..6),
            final_eol in any::<bool>(),
        ) {
            let input = joined(&lines, &eols, final_eol);
            let want = reference(input.as_bytes());
            prop_assert_eq!(&run(input.as_bytes(), &cuts, false), &want);
            prop_assert_eq!(&run(input.as_bytes(), &cuts, true), &want);
        }

        #[test]
        fn chunking_and_fast_path_never_change_records(
            lines in proptest::collection::vec("[a-c,\" ]{0,6}", 0..12),
            eols in proptest::collection::vec(prop_oneof![Just("\n"), Just("\r\n"), Just("\r")], 12),
            cuts in proptest::collection::vec(0usize..200, 0..6),
            final_eol in any::<bool>(),
        ) {
            let input = joined(&lines, &eols, final_eol);
            let whole = run(input.as_bytes(), &[], false);
            prop_assert_eq!(&run(input.as_bytes(), &cuts, false), &whole);
            prop_assert_eq!(&run(input.as_bytes(), &cuts, true), &whole);
        }
    }
}
