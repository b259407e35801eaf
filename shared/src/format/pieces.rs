//! Cutting one large plain input into pieces that parse in parallel, each from a row boundary
//! found without parsing what comes before it.
//!
//! A piece starts at the first line start at or after a multiple of [`PIECE_BYTES`]: the cut
//! depends on the input alone, never on how many threads read it, so every run stores the same
//! fragments. A line start is a row boundary unless a quoted field spans it; a field that does
//! opens with a `"` within [`MAX_CSV_RECORD_BYTES`] before it (a longer record fails the input
//! wherever it is read), so a piece starts only where that stretch holds no `"` at all, and is
//! merged into the piece before it otherwise. Only wide and long inputs are cut (their one piece
//! of context is the header); a NEM12 piece would need the file's open channel and end-record
//! state, so NEM12 inputs are read whole, as are files of old Mac line ends (a lone `\r`:
//! [`after_header`] finds no boundary in them, as a hand-over does not).
//!
//! Each piece needs the line number of its first byte, the line ends before it:
//! [`super::record::line_ends`] of each piece before it (the parser counts them as it reads,
//! [`crate::Stats::line_ends`]), summed. A piece starts at a line start, so its count needs
//! nothing from the bytes before it, and a piece read ahead of its line can be numbered from 1
//! and moved down once its line is known ([`crate::envelope::shift_lines`]).

use super::record::MAX_CSV_RECORD_BYTES;
use super::{Format, Options, Parser, Resume};

/// The nominal length of a piece. Large enough that the per-piece costs (a read of the bytes
/// around the cut, a held buffer's records moved) vanish, small enough that two cores share a file of a
/// few hundred megabytes evenly.
pub const PIECE_BYTES: u64 = 32 << 20;

/// How far before a nominal cut the bytes are searched for a `"`: a record that is not longer
/// than [`MAX_CSV_RECORD_BYTES`] and spans the cut starts within it.
pub const LOOK_BEHIND: usize = MAX_CSV_RECORD_BYTES;

/// How far after a nominal cut the next line start is looked for; a cut without one there is
/// merged into the piece before it.
pub const LOOK_AHEAD: usize = 64 * 1024;

/// Where the pieces of a `len`-byte input may be cut: the multiples of `piece_bytes` that
/// leave every piece at least half a piece long.
pub fn nominal_cuts(len: u64, piece_bytes: u64) -> impl Iterator<Item = u64> {
    let piece = piece_bytes.max(1);
    (1..)
        .map(move |k| k * piece)
        .take_while(move |&at| at.saturating_add(piece / 2) < len)
}

/// The row boundary a piece starts at, as an index into `after` (the input's bytes from the
/// nominal cut, up to [`LOOK_AHEAD`] of them, or to the input's end), given `before` (the
/// [`LOOK_BEHIND`] bytes before the cut, or all of them from the header's end). `None` when
/// no piece can start there: a `"` in sight, or no line start within `after` (the bytes must
/// show what follows a `\r` too).
pub fn piece_start(before: &[u8], after: &[u8]) -> Option<usize> {
    let at = match (before.last()?, after.first()?) {
        // The cut is a line start already (after `\n`, or after a `\r` no `\n` follows).
        (b'\n', _) => 0,
        // The cut splits a `\r\n`: the line starts after it.
        (b'\r', b'\n') => 1,
        (b'\r', _) => 0,
        _ => {
            let end = memchr::memchr2(b'\n', b'\r', after)?;
            match (after[end], after.get(end + 1)) {
                // What follows a `\r` is not in sight: it may be a `\n`.
                (b'\r', None) => return None,
                (b'\r', Some(b'\n')) => end + 2,
                _ => end + 1,
            }
        }
    };
    let quoted =
        memchr::memchr(b'"', before).is_some() || memchr::memchr(b'"', &after[..at]).is_some();
    (!quoted).then_some(at)
}

/// Where the rows of an input start, and what its pieces must replay first: parses `head`
/// (the input's first bytes, up to the end of its header at least) with `opts` and cuts
/// right after the header. `None` unless the input is wide or long and its header is in
/// `head`: such an input is read whole, and that reading reports whatever is wrong with it.
pub fn after_header(opts: &Options, head: &[u8]) -> Option<Resume> {
    let mut parser = Parser::new(opts.clone());
    let mut quiet = crate::reject::Discard;
    let resume = parser.feed_until_cut(head, &mut quiet).ok()??;
    matches!(resume.format, Format::Wide | Format::Long).then_some(resume)
}

/// The resume point of a piece starting at `offset`, on line `line`: the header's context,
/// as after [`after_header`].
pub fn piece_resume(header: &Resume, offset: u64, line: u64) -> Resume {
    Resume {
        format: header.format,
        offset,
        line,
        context: header.context.clone(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn pieces_start_at_the_next_line_start() {
        assert_eq!(piece_start(b"a,b", b"c\nd,e"), Some(2));
        assert_eq!(piece_start(b"a,b\n", b"d,e"), Some(0));
        assert_eq!(piece_start(b"a,b", b"c\r\nd,e"), Some(3));
        assert_eq!(piece_start(b"a,b\r", b"\nd,e"), Some(1));
        // Old Mac line ends: a lone `\r` ends a line.
        assert_eq!(piece_start(b"a,b\r", b"d,e"), Some(0));
        assert_eq!(piece_start(b"a,b", b"c\rd,e"), Some(2));
    }

    #[test]
    fn no_piece_starts_where_it_cannot_be_sure() {
        // A quote before or in the stretch to the line start.
        assert_eq!(piece_start(b"\"a,b", b"c\nd"), None);
        assert_eq!(piece_start(b"a,b", b"\"c\nd"), None);
        // No line end in sight, or a `\r` whose next byte is unknown.
        assert_eq!(piece_start(b"a,b", b"cdef"), None);
        assert_eq!(piece_start(b"a,b", b"c\r"), None);
        assert_eq!(piece_start(b"", b"c\nd"), None);
    }

    #[test]
    fn a_quote_after_the_start_does_not_matter() {
        assert_eq!(piece_start(b"a,b", b"c\n\"d\",e"), Some(2));
    }

    #[test]
    fn nominal_cuts_leave_no_short_piece() {
        assert_eq!(nominal_cuts(100, 40).collect::<Vec<_>>(), vec![40]);
        assert_eq!(nominal_cuts(101, 40).collect::<Vec<_>>(), vec![40, 80]);
        assert_eq!(nominal_cuts(59, 40).count(), 0);
    }
}

#[cfg(test)]
mod header_tests {
    use super::*;

    fn opts() -> Options {
        Options::new("f.csv", crate::Version::default())
    }

    #[test]
    fn wide_and_long_resume_after_their_header() {
        let long = b"meter,interval_start,kwh\nEE1,2019-02-01T00:00:00,1.000\nEE1,2019-02-01T00:30:00,1.000\n";
        let r = after_header(&opts(), long).expect("long resumes");
        assert_eq!((r.format, r.offset, r.line), (Format::Long, 25, 2));
        let mac: Vec<u8> = long
            .iter()
            .map(|&b| if b == b'\n' { b'\r' } else { b })
            .collect();
        // A file of old Mac line ends (`\r` alone) goes through csv-core, which never reports a
        // record boundary between chunks: it is read whole, as it is never handed over.
        assert!(after_header(&opts(), &mac).is_none());
        let cols: Vec<_> = (0..48)
            .map(|k| format!("{:02}:{:02}", k / 2, k % 2 * 30))
            .collect();
        let wide = format!("Meter,Date,{}\nEE1,2019-02-01,1.000\n", cols.join(","));
        let r = after_header(&opts(), wide.as_bytes()).expect("wide resumes");
        assert_eq!((r.format, r.line), (Format::Wide, 2));
    }
}
