//! Long CSV: one reading per row, `meter,timestamp,kwh` (header names vary).
//!
//! Consecutive readings of the same series and day are folded into one fragment, which is
//! emitted when the series or day changes (files are usually sorted by meter, then time). If
//! the same day shows up again later in the file it becomes a second fragment with its own
//! line, and the merge rule (later line wins per slot) combines them; so does a reading
//! repeated inside one run: the later row's value stands, as it would across files.
//!
//! Timestamps are the wall-clock times written in the file. An offset (`Z`, `+10:00`) is
//! validated but not applied: meter data is billed per local day of the meter's market, and
//! moving readings across midnight by a UTC conversion would change daily totals.

use super::record::{Handler, Record};
use super::{
    bytes_below, named, one_column, word16, word_at, FormatHandler, Key, Options, Tally,
    TimestampLabel,
};
use crate::day::Day;
use crate::fragment::{slots_per_day, Fragment, Quality, Slots};
use crate::reject::{FileError, Sink};
use crate::series::{SeriesId, Unit};
use crate::value::{parse_decimal, scan_kwh_cell, scan_plain_kwh};

const METER_NAMES: &[&str] = &[
    "meter", "meter_id", "meterid", "meter id", "nmi", "series", "mpan", "mprn",
];
const START_NAMES: &[&str] = &["interval_start", "interval start", "start", "start_time"];
const END_NAMES: &[&str] = &["interval_end", "interval end", "end", "end_time"];
const TIME_NAMES: &[&str] = &[
    "timestamp",
    "read_at",
    "datetime",
    "date_time",
    "time",
    "reading_time",
    "ts",
];
const VALUE_NAMES: &[&str] = &[
    "kwh",
    "value",
    "consumption",
    "reading",
    "energy",
    "usage",
    "kwh_value",
];

fn position(fields: &[Vec<u8>], names: &[&str]) -> Option<usize> {
    fields
        .iter()
        .position(|f| names.iter().any(|n| f.as_slice() == n.as_bytes()))
}

/// True when lower-cased header fields name a meter, a timestamp and a value column.
pub(crate) fn looks_like_header(fields: &[Vec<u8>]) -> bool {
    let has_time = [START_NAMES, END_NAMES, TIME_NAMES]
        .iter()
        .any(|n| position(fields, n).is_some());
    position(fields, METER_NAMES).is_some() && has_time && position(fields, VALUE_NAMES).is_some()
}

struct Layout {
    fields: usize,
    meter: usize,
    time: usize,
    value: usize,
    end_labelled: bool,
    header: Vec<Vec<u8>>,
    /// The header is exactly meter, timestamp and value, in that order.
    canonical: bool,
}

/// A parsed ISO 8601 timestamp: date and minutes after midnight (1440 for `24:00`).
#[derive(Debug, PartialEq, Eq)]
pub struct Timestamp {
    /// The date as written; a UTC offset is not applied (see the module documentation).
    pub day: Day,
    /// Minutes after midnight, 0 to 1440 (1440 for `24:00`, the end of `day`).
    pub minutes: u16,
}

fn digits(b: &[u8]) -> Option<u16> {
    if b.is_empty() || !b.iter().all(u8::is_ascii_digit) {
        return None;
    }
    Some(b.iter().fold(0u16, |a, &d| {
        a.saturating_mul(10).saturating_add(u16::from(d - b'0'))
    }))
}

/// Parses `2019-01-01T00:30`, `2019-01-01 00:30:00`, `…:00.000`, with an optional `Z` or
/// `±HH:MM`/`±HHMM` offset. Seconds must be zero: readings label interval boundaries.
pub fn parse_timestamp(raw: &[u8]) -> Result<Timestamp, String> {
    let t = raw.trim_ascii();
    let shown = || String::from_utf8_lossy(raw).into_owned();
    if t.len() < 16 || (t[10] != b'T' && t[10] != b' ' && t[10] != b't') {
        return Err(format!(
            "`{}` is not an ISO 8601 timestamp like 2019-01-01T00:30:00",
            shown()
        ));
    }
    let day = Day::parse_iso(std::str::from_utf8(&t[..10]).unwrap_or_default())
        .map_err(|e| e.to_string())?;
    let mut rest = &t[11..];
    // Split off an offset: `Z`, or a sign after the time part.
    if let Some(r) = rest.strip_suffix(b"Z").or_else(|| rest.strip_suffix(b"z")) {
        rest = r;
    } else if let Some(sign) = rest.iter().position(|&b| b == b'+' || b == b'-') {
        let off = &rest[sign + 1..];
        let ok = match off.len() {
            5 if off[2] == b':' => digits(&off[..2])
                .zip(digits(&off[3..]))
                .is_some_and(|(h, m)| h <= 14 && m < 60),
            4 => digits(&off[..2])
                .zip(digits(&off[2..]))
                .is_some_and(|(h, m)| h <= 14 && m < 60),
            2 => digits(off).is_some_and(|h| h <= 14),
            _ => false,
        };
        if !ok {
            return Err(format!(
                "`{}` has an unreadable UTC offset (use Z, +10:00 or +1000)",
                shown()
            ));
        }
        rest = &rest[..sign];
    }
    let bad = || {
        format!(
            "`{}` has an unreadable time of day (expected HH:MM or HH:MM:SS)",
            shown()
        )
    };
    let (hm, secs) = match rest.len() {
        5 => (rest, &b""[..]),
        n if n >= 8 && rest[5] == b':' => (&rest[..5], &rest[6..]),
        _ => return Err(bad()),
    };
    if hm[2] != b':' {
        return Err(bad());
    }
    let (h, m) = digits(&hm[..2]).zip(digits(&hm[3..])).ok_or_else(bad)?;
    if !secs.is_empty() {
        let (s, frac) = match secs.iter().position(|&b| b == b'.' || b == b',') {
            Some(p) => (&secs[..p], &secs[p + 1..]),
            None => (secs, &b""[..]),
        };
        if s.len() != 2 || digits(s).is_none() || (!frac.is_empty() && digits(frac).is_none()) {
            return Err(bad());
        }
        if s != b"00" || frac.iter().any(|&b| b != b'0') {
            return Err(format!(
                "`{}` is not on a whole minute; interval readings label interval boundaries",
                shown()
            ));
        }
    }
    if m >= 60 || h > 24 || (h == 24 && m != 0) {
        return Err(bad());
    }
    Ok(Timestamp {
        day,
        minutes: h * 60 + m,
    })
}

/// Most fields a line may have for the fast path to take it.
const FAST_FIELDS: usize = 16;

/// The lengths of the timestamps [`plain_timestamp`] reads: with and without seconds.
const PLAIN_TIMESTAMP_LENS: [usize; 2] = [19, 16];

/// The plain timestamps the fast path reads itself: `YYYY-MM-DD?HH:MM` or `…:00` (`?` one of
/// `T`, `t`, space), as its date bytes and minutes after midnight. Anything else (an offset,
/// fractions, blanks, a bad field) is `None`, and [`parse_timestamp`] decides it.
fn plain_timestamp(t: &[u8]) -> Option<(&[u8], u16)> {
    let ok = match t.len() {
        16 => true,
        19 => t[16] == b':' && t[17] == b'0' && t[18] == b'0',
        _ => false,
    };
    if !ok || !matches!(t[10], b'T' | b't' | b' ') || t[13] != b':' {
        return None;
    }
    let two = |i: usize| {
        let (a, b) = (t[i].wrapping_sub(b'0'), t[i + 1].wrapping_sub(b'0'));
        (a < 10 && b < 10).then(|| u16::from(a) * 10 + u16::from(b))
    };
    let (h, m) = (two(11)?, two(14)?);
    (m < 60 && (h < 24 || (h == 24 && m == 0))).then_some((&t[..10], h * 60 + m))
}

/// Splits the plain line at the start of `buf` on commas, in one pass: up to its `\n` (or
/// `\r\n`) when `newline`, else to the end of `buf` (a line given without its terminator).
/// Returns how many fields were put in `fields` and the bytes the line takes, terminator
/// included; `None` for anything `csv-core` must read: a quote, any other `\r`, more than
/// [`FAST_FIELDS`] fields, an empty line, or no `\n` in `buf` when one is wanted.
///
/// Eight bytes at a time, every special byte of a word taken from one mask (a line is ~36
/// bytes with three fields: a byte loop was a third of the parse, and searching afresh from
/// each comma loaded and tested most words twice).
fn split_plain<'a>(
    buf: &'a [u8],
    newline: bool,
    fields: &mut [&'a [u8]; FAST_FIELDS],
) -> Option<(usize, usize)> {
    let (mut n, mut start) = (0, 0);
    let mut end = None;
    let mut i = 0;
    'words: while i < buf.len() {
        let w = word_at(buf, i);
        // `,` `\n` `\r` `"` all sort below `-`; so do a space and a few punctuation marks,
        // which are skipped one by one (rare in a plain line: a space-separated timestamp).
        let mut specials = bytes_below(w, b'-');
        if i + 8 > buf.len() {
            // `word_at` pads the end of `buf` with zeros, which sort below `-` too.
            specials &= u64::MAX >> (8 * (i + 8 - buf.len()));
        }
        while specials != 0 {
            let j = i + (specials.trailing_zeros() / 8) as usize;
            specials &= specials - 1;
            match buf[j] {
                b',' => {
                    if n == FAST_FIELDS - 1 {
                        return None;
                    }
                    fields[n] = &buf[start..j];
                    n += 1;
                    start = j + 1;
                }
                b'\n' if newline => {
                    end = Some((j, j + 1));
                    break 'words;
                }
                b'\r' if newline && buf.get(j + 1) == Some(&b'\n') => {
                    end = Some((j, j + 2));
                    break 'words;
                }
                // A quote, or a line end not wanted here or not `\r\n`.
                b'\n' | b'\r' | b'"' => return None,
                // Below `-` but no separator.
                _ => {}
            }
        }
        i += 8;
    }
    let (line_end, used) = match end {
        Some(e) => e,
        None if newline => return None,
        None => (buf.len(), buf.len()),
    };
    if line_end == 0 {
        return None;
    }
    fields[n] = &buf[start..line_end];
    Some((n + 1, used))
}

/// The long-format state machine.
pub struct Long {
    tally: Tally,
    layout: Option<Layout>,
    label: TimestampLabel,
    interval: u16,
    slots: usize,
    frag: Fragment,
    /// A fragment is being filled (`frag` holds an open day).
    open: bool,
    /// The open meter's id followed by a comma, as [`open_meters_line`](Long::open_meters_line)
    /// finds it at the start of a line (ids over 15 bytes have none and take the split).
    meter_key: Key,
    /// The date text the fast path parsed last, and its day: a day's readings repeat it.
    last_date: [u8; 10],
    last_day: Option<Day>,
}

impl Long {
    pub(crate) fn new(opts: &Options) -> Long {
        let interval = opts.long_interval_minutes;
        Long {
            tally: Tally::new(opts.source.clone()),
            layout: None,
            label: opts.timestamps,
            interval,
            slots: slots_per_day(interval).unwrap_or(0),
            frag: Fragment {
                series: SeriesId::parse(b"-").expect("valid placeholder"),
                day: Day::from_days(0).expect("1970 is in range"),
                version: opts.version,
                source: opts.source.clone(),
                line: 0,
                interval_minutes: interval,
                unit: Unit::kwh(),
                quality: Quality::UNSPECIFIED,
                slots: Slots::new(slots_per_day(interval).unwrap_or(0)),
            },
            open: false,
            meter_key: Key::NONE,
            last_date: [0; 10],
            last_day: None,
        }
    }

    /// A plain line's fields ([`split_plain`]) read without `csv-core`: `true` when the line
    /// was taken as [`Long::row`] takes a valid row. A line that is anything but plain and
    /// valid is left alone (`false`, nothing changed), for `csv-core` and [`Long::row`] to
    /// parse and, if need be, reject with the reason.
    fn fast_row(&mut self, fields: &[&[u8]], lineno: u64, sink: &mut dyn Sink) -> bool {
        let Some(layout) = self.layout.as_ref() else {
            return false;
        };
        if fields.len() < layout.fields {
            return false;
        }
        let (time, cell) = (fields[layout.time], fields[layout.value]);
        let meter = fields[layout.meter].trim_ascii();
        let value = match scan_plain_kwh(cell, 0) {
            Some((Some(v), _)) => v,
            Some((None, _)) => return false,
            None => match parse_decimal(cell, 6) {
                Ok(Some(v)) => v,
                _ => return false,
            },
        };
        let same = self.open && meter == self.frag.series.as_str().as_bytes();
        let series = match same {
            true => None,
            false => match SeriesId::parse(meter) {
                Ok(s) => Some(s),
                Err(_) => return false,
            },
        };
        self.fast_reading(series, time, value, lineno, sink)
    }

    /// The line at the start of `buf` taken without splitting it, when it is the open meter's
    /// next reading in the usual layout `meter,timestamp,value` with a plain timestamp (one of
    /// [`PLAIN_TIMESTAMP_LENS`]): the meter and its comma are recognised by `meter_key`, the
    /// other comma and the line end are checked where they must be, and every byte between is
    /// read by a field parser that accepts no separator, quote or `\r`. Returns the bytes the
    /// line takes; `None` (nothing changed) sends it to [`split_plain`] and
    /// [`Long::fast_row`]. Most lines of a long file are such a line, and finding their commas
    /// was 40 % of the parse.
    fn open_meters_line(&mut self, buf: &[u8], lineno: u64, sink: &mut dyn Sink) -> Option<usize> {
        if !self.open || !self.layout.as_ref().is_some_and(|l| l.canonical) {
            return None;
        }
        if !word16(buf, 0).is_some_and(|w| self.meter_key.matches(w)) {
            return None;
        }
        let time_at = self.meter_key.len + 1;
        let time_end = PLAIN_TIMESTAMP_LENS
            .map(|len| time_at + len)
            .into_iter()
            .find(|&at| buf.get(at) == Some(&b','))?;
        let (Some(value), end) = scan_kwh_cell(buf, time_end + 1)? else {
            return None;
        };
        let used = match buf.get(end..end + 2)? {
            [b'\n', _] => end + 1,
            b"\r\n" => end + 2,
            _ => return None,
        };
        self.fast_reading(None, &buf[time_at..time_end], value, lineno, sink)
            .then_some(used)
    }

    /// A plain reading of `value` at `time`, for `series` (`None`: the open one), taken as
    /// [`Long::row`] takes a valid row: `false`, with nothing changed, for a timestamp the
    /// general path must read or reject.
    fn fast_reading(
        &mut self,
        series: Option<SeriesId>,
        time: &[u8],
        value: i64,
        lineno: u64,
        sink: &mut dyn Sink,
    ) -> bool {
        let Some(layout) = self.layout.as_ref() else {
            return false;
        };
        let end = layout.end_labelled;
        let Some((date, minutes)) = plain_timestamp(time) else {
            return false;
        };
        let day = match self.last_day {
            Some(d) if self.last_date == date => d,
            _ => match Day::parse_iso(std::str::from_utf8(date).unwrap_or_default()) {
                Ok(d) => {
                    self.last_date.copy_from_slice(date);
                    self.last_day = Some(d);
                    d
                }
                Err(_) => return false,
            },
        };
        let Ok((day, slot)) = self.slot_of(day, minutes, end) else {
            return false;
        };
        self.fold(series, day, slot, value, lineno, sink);
        self.tally.accept_rows(1);
        true
    }

    /// The day and slot a reading labelled `minutes` after midnight of `day` belongs to (an
    /// end label of 00:00 closes the day before), or why it has none.
    fn slot_of(&self, day: Day, minutes: u16, end_labelled: bool) -> Result<(Day, usize), String> {
        let step = self.interval;
        if minutes % step != 0 {
            return Err(format!(
                "{:02}:{:02} is not on a {step}-minute interval boundary",
                minutes / 60,
                minutes % 60
            ));
        }
        Ok(match (end_labelled, minutes) {
            (true, 0) => (day.pred(), self.slots - 1),
            (true, m) => (day, usize::from(m / step) - 1),
            (false, 1440) => return Err("24:00 cannot start an interval".into()),
            (false, m) => (day, usize::from(m / step)),
        })
    }

    /// Adds one reading to the open fragment, or to a new one when the series or day changed.
    fn fold(
        &mut self,
        series: Option<SeriesId>,
        day: Day,
        slot: usize,
        value: i64,
        lineno: u64,
        sink: &mut dyn Sink,
    ) {
        if series.is_some() || day != self.frag.day || !self.open {
            self.flush(sink);
            if let Some(s) = series {
                self.meter_key = Key::new(s.as_str().as_bytes());
                self.frag.series = s;
            }
            self.frag.day = day;
            self.frag.line = lineno;
            self.frag.slots.reset(self.slots);
            self.open = true;
        }
        self.frag.slots.set(slot, value);
    }

    fn flush(&mut self, sink: &mut dyn Sink) {
        if self.open {
            self.open = false;
            self.tally.emit(sink, &self.frag);
        }
    }

    fn row(
        &mut self,
        rec: &Record<'_>,
        lineno: u64,
        sink: &mut dyn Sink,
    ) -> Result<(), (Option<u32>, String)> {
        let layout = self.layout.as_ref().expect("header parsed before rows");
        let col = |i: usize| Some(i as u32 + 1);
        rec.has_fields(layout.fields)?;
        let (mc, tc, vc, end) = (layout.meter, layout.time, layout.value, layout.end_labelled);
        let meter = rec.get(mc).unwrap_or_default().trim_ascii();
        let series = if self.open && meter == self.frag.series.as_str().as_bytes() {
            None
        } else {
            Some(SeriesId::parse(meter).map_err(|e| (col(mc), e.to_string()))?)
        };
        let ts = parse_timestamp(rec.get(tc).unwrap_or_default()).map_err(|e| (col(tc), e))?;
        let (day, slot) = self
            .slot_of(ts.day, ts.minutes, end)
            .map_err(|e| (col(tc), e))?;
        let value = match parse_decimal(rec.get(vc).unwrap_or_default(), 6) {
            Ok(Some(v)) => v,
            Ok(None) => return Err((col(vc), "the reading is empty".into())),
            Err(e) => return Err((col(vc), e.to_string())),
        };
        self.fold(series, day, slot, value, lineno, sink);
        Ok(())
    }
}

impl Handler for Long {
    fn lines(&mut self, input: &[u8], lineno: u64, sink: &mut dyn Sink) -> (usize, u64) {
        let (mut pos, mut n) = (0, 0);
        let mut fields = [&b""[..]; FAST_FIELDS];
        loop {
            let rest = &input[pos..];
            let used = match self.open_meters_line(rest, lineno + n, sink) {
                Some(used) => used,
                None => match split_plain(rest, true, &mut fields) {
                    Some((count, used)) if self.fast_row(&fields[..count], lineno + n, sink) => {
                        used
                    }
                    _ => break,
                },
            };
            pos += used;
            n += 1;
        }
        (pos, n)
    }

    fn line(&mut self, line: &[u8], lineno: u64, sink: &mut dyn Sink) -> bool {
        let mut fields = [&b""[..]; FAST_FIELDS];
        match split_plain(line, false, &mut fields) {
            Some((count, _)) => self.fast_row(&fields[..count], lineno, sink),
            None => false,
        }
    }

    fn record(
        &mut self,
        rec: &Record<'_>,
        lineno: u64,
        sink: &mut dyn Sink,
    ) -> Result<(), FileError> {
        let Some(layout) = &self.layout else {
            if self.slots == 0 {
                return Err(self.tally.header_error(
                    lineno,
                    format!(
                        "interval length {} minutes is not one of 5, 10, 15, 30, 60",
                        self.interval
                    ),
                ));
            }
            let names: Vec<Vec<u8>> = rec
                .iter()
                .map(|f| f.trim_ascii().to_ascii_lowercase())
                .collect();
            let missing = |what: &str| {
                self.tally
                    .header_error(lineno, format!("the header has no {what} column"))
            };
            let column = |what: &str, names_of: &[&str]| {
                one_column(&names, what, named(names_of))
                    .map_err(|e| self.tally.header_error(lineno, e))
            };
            let meter = column("meter", METER_NAMES)?
                .ok_or_else(|| missing("meter (meter, meter_id or nmi)"))?;
            let value = column("value", VALUE_NAMES)?
                .ok_or_else(|| missing("value (kwh, value or consumption)"))?;
            // Interval start and end columns side by side are common: the start is read.
            let (time, header_label) = if let Some(i) = column("interval start", START_NAMES)? {
                (i, TimestampLabel::Start)
            } else if let Some(i) = column("interval end", END_NAMES)? {
                (i, TimestampLabel::End)
            } else {
                let i = column("timestamp", TIME_NAMES)?
                    .ok_or_else(|| missing("timestamp (timestamp, interval_start or read_at)"))?;
                (i, TimestampLabel::Auto)
            };
            let label = match (self.label, header_label) {
                (TimestampLabel::Auto, TimestampLabel::Auto) => TimestampLabel::End,
                (TimestampLabel::Auto, h) => h,
                (o, _) => o,
            };
            self.layout = Some(Layout {
                fields: names.len(),
                meter,
                time,
                value,
                end_labelled: label == TimestampLabel::End,
                canonical: (meter, time, value, names.len()) == (0, 1, 2, 3),
                header: names,
            });
            return Ok(());
        };
        if rec.repeats(&layout.header) {
            return Ok(());
        }
        match self.row(rec, lineno, sink) {
            Ok(()) => self.tally.accept_rows(1),
            Err((column, reason)) => self.tally.reject(sink, lineno, column, reason),
        }
        Ok(())
    }
}

impl FormatHandler for Long {
    fn finish(&mut self, sink: &mut dyn Sink) -> Result<(), FileError> {
        self.tally.require_header(self.layout.is_some())?;
        self.flush(sink);
        Ok(())
    }

    fn tally(&self) -> &Tally {
        &self.tally
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::format::{arb_eol, parse_all, Parser, SlowOnly};
    use crate::reject::Collect;
    use crate::value::ONE;
    use proptest::prelude::*;

    fn opts(label: TimestampLabel) -> Options {
        let mut o = Options::new("long.csv", 7);
        o.timestamps = label;
        o
    }

    fn parse(input: &str, label: TimestampLabel) -> (Collect, crate::reject::Stats) {
        let mut sink = Collect::default();
        let stats = parse_all(input.as_bytes(), opts(label), &mut sink).unwrap();
        (sink, stats)
    }

    fn summary(c: &Collect) -> Vec<(String, String, i64, usize)> {
        c.fragments
            .iter()
            .map(|f| {
                (
                    f.series.to_string(),
                    f.day.to_string(),
                    f.total(),
                    f.slots.present(),
                )
            })
            .collect()
    }

    #[test]
    fn timestamps() {
        let d = Day::from_ymd(2019, 1, 1).unwrap();
        for (s, m) in [
            ("2019-01-01T00:30", 30),
            ("2019-01-01 00:30:00", 30),
            ("2019-01-01T23:30:00.000", 1410),
            ("2019-01-01T00:00:00Z", 0),
            ("2019-01-01T00:30:00+10:00", 30),
            ("2019-01-01T00:30:00-0500", 30),
            ("2019-01-01T24:00", 1440),
        ] {
            assert_eq!(
                parse_timestamp(s.as_bytes()),
                Ok(Timestamp { day: d, minutes: m }),
                "{s}"
            );
        }
        for s in [
            "2019-01-01",
            "2019-01-01T0:30",
            "2019-01-01T00:30:15",
            "2019-01-01T25:00",
            "2019-01-01T00:30+99:00",
            "01/01/2019 00:30",
        ] {
            assert!(parse_timestamp(s.as_bytes()).is_err(), "{s}");
        }
    }

    #[test]
    fn end_labelled_by_default_midnight_belongs_to_the_day_before() {
        let input = "meter,timestamp,kwh\nEE1,2019-01-01T00:30:00,1.5\nEE1,2019-01-01T01:00:00,0.25\nEE1,2019-01-02T00:00:00,2\n";
        let (c, stats) = parse(input, TimestampLabel::Auto);
        assert_eq!(
            summary(&c),
            vec![("EE1".into(), "2019-01-01".into(), 3_750_000, 3)]
        );
        let f = &c.fragments[0];
        assert_eq!(
            (f.slots.get(0), f.slots.get(1), f.slots.get(47)),
            (Some(1_500_000), Some(250_000), Some(2 * ONE))
        );
        assert_eq!(
            (stats.rows_read, stats.rows_accepted, stats.fragments),
            (3, 3, 1)
        );
    }

    #[test]
    fn start_labelled_by_header_or_option() {
        let input =
            "nmi,interval_start,value\nN1,2019-01-01T00:00:00,1\nN1,2019-01-01T23:30:00,1\n";
        let (c, _) = parse(input, TimestampLabel::Auto);
        assert_eq!(
            summary(&c),
            vec![("N1".into(), "2019-01-01".into(), 2 * ONE, 2)]
        );
        let input = "meter_id,read_at,consumption\nM,2019-01-01T00:00:00,1\n";
        let (c, _) = parse(input, TimestampLabel::Start);
        assert_eq!(c.fragments[0].day.to_string(), "2019-01-01");
        let (c, _) = parse(input, TimestampLabel::End);
        assert_eq!(c.fragments[0].day.to_string(), "2018-12-31");
    }

    #[test]
    fn runs_split_into_fragments_and_rejects_carry_lines() {
        let input = "meter,timestamp,kwh\r\n\
            A,2019-01-01T00:30,1\r\n\
            A,2019-01-01T00:45,1\r\n\
            A,2019-01-01T01:00,\r\n\
            A,2019-01-01T01:00,x\r\n\
            A B,2019-01-01T01:00,1\r\n\
            B,2019-01-01T00:30,2\r\n\
            A,2019-01-01T01:30,3\r\n\
            A,2019-01-02T00:30,4";
        let (c, stats) = parse(input, TimestampLabel::Auto);
        let rejects: Vec<_> = c.rejects.iter().map(|r| (r.line, r.column)).collect();
        assert_eq!(
            rejects,
            vec![(3, Some(2)), (4, Some(3)), (5, Some(3)), (6, Some(1))]
        );
        assert_eq!(
            summary(&c),
            vec![
                ("A".into(), "2019-01-01".into(), ONE, 1),
                ("B".into(), "2019-01-01".into(), 2 * ONE, 1),
                ("A".into(), "2019-01-01".into(), 3 * ONE, 1),
                ("A".into(), "2019-01-02".into(), 4 * ONE, 1),
            ]
        );
        assert_eq!(
            c.fragments.iter().map(|f| f.line).collect::<Vec<_>>(),
            vec![2, 7, 8, 9]
        );
        assert_eq!(
            (stats.rows_read, stats.rows_accepted, stats.rows_rejected),
            (8, 4, 4)
        );
    }

    #[test]
    fn interval_option_and_bad_header() {
        let mut o = opts(TimestampLabel::Auto);
        o.long_interval_minutes = 15;
        let mut c = Collect::default();
        parse_all(
            b"meter,timestamp,kwh\nA,2019-01-01T00:15,1\nA,2019-01-02T00:00,1\n",
            o,
            &mut c,
        )
        .unwrap();
        assert_eq!(
            (c.fragments[0].slots.len(), c.fragments[0].slots.present()),
            (96, 2)
        );
        let mut p = Parser::new(opts(TimestampLabel::Auto));
        let err = p
            .feed(b"meter,timestamp,kwh,x\n", &mut c)
            .and(p.finish(&mut c).map(|_| ()));
        assert!(err.is_ok(), "extra header columns are fine");
        let mut o = opts(TimestampLabel::Auto);
        o.long_interval_minutes = 7;
        let err = parse_all(b"meter,timestamp,kwh\nA,2019-01-01T00:15,1\n", o, &mut c).unwrap_err();
        assert!(err.to_string().contains("7 minutes"), "{err}");
        // Two columns of one role: refused, never the first taken silently.
        for (header, what) in [
            (
                "meter,nmi,timestamp,kwh",
                "meter column (column 1 `meter` and column 2 `nmi`)",
            ),
            ("meter,timestamp,kwh,value", "value column"),
            ("meter,read_at,timestamp,kwh", "timestamp column"),
        ] {
            let input = format!("{header}\nA,2019-01-01T00:30,B,1\n");
            let err = parse_all(input.as_bytes(), opts(TimestampLabel::Auto), &mut c);
            let err = err.unwrap_err().to_string();
            assert!(err.contains(&format!("more than one {what}")), "{err}");
        }
        // Start and end columns side by side are fine: the start is read.
        let mut c = Collect::default();
        parse_all(
            b"meter,interval_start,interval_end,kwh\nA,2019-01-01T00:00,2019-01-01T00:30,1\n",
            opts(TimestampLabel::Auto),
            &mut c,
        )
        .unwrap();
        assert_eq!(c.fragments[0].slots.iter().next(), Some((0, 1_000_000)));
    }

    proptest! {
        #[test]
        fn chunk_boundaries_never_change_the_output(
            rows in proptest::collection::vec((0u8..3, 0u8..3, 0u16..49, 0u32..5000, any::<bool>()), 1..40),
            cuts in proptest::collection::vec(0usize..4000, 0..8),
        ) {
            let mut input = String::from("meter,timestamp,kwh\n");
            for (m, d, slot, v, quoted) in &rows {
                let minutes = u32::from(*slot) * 30;
                let ts = format!("2019-02-{:02}T{:02}:{:02}:00", d + 1, minutes / 60, minutes % 60);
                let val = format!("{}.{:03}", v / 1000, v % 1000);
                if *quoted {
                    input += &format!("\"M{m}\",\"{ts}\",\"{val}\"\n");
                } else {
                    input += &format!("M{m},{ts},{val}\n");
                }
            }
            let whole = parse(&input, TimestampLabel::Auto);
            let (sink, stats) = crate::format::parse_in_chunks(input.as_bytes(), &cuts, opts(TimestampLabel::Auto));
            prop_assert_eq!(&sink.fragments, &whole.0.fragments);
            prop_assert_eq!(&sink.rejects, &whole.0.rejects);
            prop_assert_eq!(stats.rows_read, rows.len() as u64);
            prop_assert_eq!(stats.rows_read, stats.rows_accepted + stats.rows_rejected);
            // Handed over between runs: a day cut between its rows is two fragments that merge
            // to the same totals; rows and rejects are the same.
            let (parts, part_stats, _) = crate::format::parse_in_parts(input.as_bytes(), &cuts, opts(TimestampLabel::Auto));
            prop_assert_eq!(crate::daily_totals(parts.fragments.iter()), crate::daily_totals(whole.0.fragments.iter()));
            prop_assert_eq!(&parts.rejects, &whole.0.rejects);
            prop_assert_eq!((part_stats.rows_read, part_stats.rows_accepted, part_stats.bytes), (stats.rows_read, stats.rows_accepted, stats.bytes));
        }
    }

    proptest! {
        /// The word-at-a-time split cuts where a byte loop cuts, whatever bytes follow.
        #[test]
        fn split_plain_agrees_with_a_byte_loop(
            buf in proptest::collection::vec(prop_oneof![4 => any::<u8>(), 2 => Just(b','), 1 => Just(b'\n'), 1 => Just(b'"'), 1 => Just(b'\r'), 1 => Just(b'-')], 0..60),
            newline in any::<bool>(),
        ) {
            // The reference: the first `\n` (or `\r\n`) ends the line when wanted; any other
            // special byte before it sends the line to csv-core.
            let want = (|| {
                let stop = buf.iter().position(|&b| newline && b == b'\n');
                let (line_end, used) = match stop {
                    Some(k) if k > 0 && buf[k - 1] == b'\r' => (k - 1, k + 1),
                    Some(k) => (k, k + 1),
                    None if newline => return None,
                    None => (buf.len(), buf.len()),
                };
                let line = &buf[..line_end];
                if line.is_empty() || line.iter().any(|b| matches!(b, b'"' | b'\r' | b'\n')) {
                    return None;
                }
                let parts: Vec<&[u8]> = line.split(|&b| b == b',').collect();
                (parts.len() <= FAST_FIELDS).then_some((parts, used))
            })();
            let mut fields = [&b""[..]; FAST_FIELDS];
            let got = split_plain(&buf, newline, &mut fields).map(|(n, used)| (fields[..n].to_vec(), used));
            prop_assert_eq!(got, want);
        }
    }

    fn parse_slow(input: &str, o: &Options) -> (Collect, (u64, u64, u64)) {
        let mut records = super::super::record::Records::new(o.source.clone(), 1);
        let mut h = SlowOnly(Long::new(o));
        let mut sink = Collect::default();
        if records.feed(input.as_bytes(), &mut h, &mut sink).is_ok()
            && records.finish(&mut h, &mut sink).is_ok()
        {
            let _ = h.0.finish(&mut sink);
        }
        let st = h.0.tally().stats;
        (sink, (st.rows_read, st.rows_accepted, st.rows_rejected))
    }

    fn arb_meter() -> impl Strategy<Value = String> {
        prop_oneof![
            8 => (0u8..3).prop_map(|m| format!("EE{m}")),
            1 => Just(" EE1".to_string()),
            1 => Just("EE 1".to_string()),
            1 => Just("\"EE1\"".to_string()),
            1 => Just(String::new()),
        ]
    }

    fn arb_timestamp() -> impl Strategy<Value = String> {
        let plain = (
            1u32..4,
            0u32..49,
            prop_oneof![Just("T"), Just(" "), Just("t")],
            any::<bool>(),
        )
            .prop_map(|(d, slot, sep, secs)| {
                let m = slot * 30;
                let secs = if secs { ":00" } else { "" };
                format!("2019-02-{d:02}{sep}{:02}:{:02}{secs}", m / 60, m % 60)
            });
        let odd = prop::sample::select(
            &[
                "2019-02-01T00:15:00",
                "2019-02-01T24:30:00",
                "2019-02-01T10:60",
                "2019-02-30T00:30:00",
                "2019-02-01T00:30:30",
                "2019-02-01T00:30:00Z",
                "2019-02-01T00:30:00+10:00",
                "2019-02-01T00:30:00.000",
                "01/02/2019T00:30:00",
                "2019/02/01T00:30:00",
                " 2019-02-01T00:30",
                "2019-02-01X00:30",
                "timestamp",
            ][..],
        );
        prop_oneof![10 => plain, 13 => odd.prop_map(str::to_owned)]
    }

    fn arb_value() -> impl Strategy<Value = String> {
        prop_oneof![
            8 => (0u32..3000).prop_map(|v| format!("{}.{:03}", v / 1000, v % 1000)),
            2 => (0u32..20).prop_map(|v| v.to_string()),
            1 => Just(String::new()),
            1 => Just("x".to_string()),
            1 => Just(" 2".to_string()),
            1 => Just("\"1.5\"".to_string()),
            1 => Just("0.1234567".to_string()),
            1 => Just("-0.25".to_string()),
        ]
    }

    proptest! {
        /// Meters, timestamps and values of every kind (valid, off the interval, offsets,
        /// other layouts, quoted, blank, invalid), extra fields, repeated headers and line ends
        /// of every kind, cut anywhere, end- or start-labelled, at 30 or 15 minutes: the fast
        /// path and `csv-core` alone agree on every fragment, reject and count.
        #[test]
        fn fast_path_agrees_with_csv_core(
            rows in proptest::collection::vec((arb_meter(), arb_timestamp(), arb_value(), 0u8..8, arb_eol()), 1..30),
            cuts in proptest::collection::vec(0usize..3_000, 0..8),
            label in prop_oneof![Just(TimestampLabel::Auto), Just(TimestampLabel::Start)],
            fifteen in any::<bool>(),
            last_eol in any::<bool>(),
        ) {
            let mut o = opts(label);
            if fifteen {
                o.long_interval_minutes = 15;
            }
            let mut input = String::from("meter,timestamp,kwh\n");
            for (i, (m, t, v, shape, eol)) in rows.iter().enumerate() {
                match shape {
                    0 => input += &format!("{m},{t},{v},extra"),
                    1 => input += &format!("{m},{t}"),
                    2 => input += "meter,timestamp,kwh",
                    _ => input += &format!("{m},{t},{v}"),
                }
                if i + 1 < rows.len() || last_eol {
                    input += eol;
                }
            }
            let slow = parse_slow(&input, &o);
            let (sink, stats) = crate::format::parse_in_chunks(input.as_bytes(), &cuts, o.clone());
            prop_assert_eq!(&sink.fragments, &slow.0.fragments);
            prop_assert_eq!(&sink.rejects, &slow.0.rejects);
            prop_assert_eq!((stats.rows_read, stats.rows_accepted, stats.rows_rejected), slow.1);
        }
    }
}
