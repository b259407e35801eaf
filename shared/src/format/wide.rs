//! Wide interval CSV: `Meter,Date,0:00,0:30,...,23:30`, one row per meter per day.
//!
//! Columns are found by name, in any order. Interval columns are labelled by interval start
//! (`0:00`..`23:30`) or, UK style, by interval end (`00:30`..`00:00`/`24:00`); 24, 48, 96 or 288
//! of them. An optional total column is checked against the sum, never added to it.
//!
//! Files in the canonical layout (meter, date, the intervals in order, optional total) take a
//! fused single-pass fast path; anything it does not fully understand goes through `csv-core`
//! and the general row logic, which is the authority on rejects.

use super::record::{Handler, Record};
use super::{named, one_column, word16, FormatHandler, Key, Options, Tally};
use crate::day::{Day, SlashedOrder};
use crate::fragment::{interval_for_slots, Fragment, Quality, Slots};
use crate::reject::{FileError, Sink};
use crate::series::{SeriesId, Unit, MAX_SERIES_LEN};
use crate::value::{format_amount, parse_decimal, scan_kwh_cell, swar_d_ddd_then};

const METER_NAMES: &[&str] = &[
    "meter",
    "meter_id",
    "meterid",
    "meter id",
    "meter_number",
    "nmi",
    "mpan",
    "mprn",
    "serial",
];
const DATE_NAMES: &[&str] = &[
    "date",
    "day",
    "read_date",
    "reading_date",
    "interval_date",
    "reading date",
];

/// Minutes after midnight named by an interval column label (`0:30`, `00:30`, `24:00`,
/// `23:30:00`); `None` if the label is not a time.
pub fn parse_time_label(label: &[u8]) -> Option<u16> {
    let t = label.trim_ascii();
    let t = t
        .strip_suffix(b":00")
        .filter(|r| r.contains(&b':'))
        .unwrap_or(t);
    let colon = t.iter().position(|&b| b == b':')?;
    let (h, m) = (&t[..colon], &t[colon + 1..]);
    if h.is_empty() || h.len() > 2 || m.len() != 2 {
        return None;
    }
    if !h.iter().chain(m).all(u8::is_ascii_digit) {
        return None;
    }
    let h = h.iter().fold(0u16, |a, &d| a * 10 + u16::from(d - b'0'));
    let m = m.iter().fold(0u16, |a, &d| a * 10 + u16::from(d - b'0'));
    (m < 60 && (h < 24 || (h == 24 && m == 0))).then_some(h * 60 + m)
}

fn is_total_name(name: &[u8]) -> bool {
    let n = name.trim_ascii().to_ascii_lowercase();
    n == b"total"
        || n.starts_with(b"total ")
        || n.starts_with(b"total_")
        || n.ends_with(b" total")
        || {
            let s = String::from_utf8_lossy(&n);
            s.contains("day total") || s.contains("daily total")
        }
}

/// Where each field of a row goes, learnt from the header.
struct Layout {
    fields: usize,
    meter: usize,
    date: usize,
    total: Option<usize>,
    /// `(column, slot)` for every interval column.
    intervals: Vec<(usize, usize)>,
    slots: usize,
    interval_minutes: u16,
    /// Meter, date, intervals in slot order, optional total, nothing else.
    canonical: bool,
    header: Vec<Vec<u8>>,
}

impl Layout {
    fn from_header(rec: &Record<'_>) -> Result<Layout, String> {
        let names: Vec<Vec<u8>> = rec
            .iter()
            .map(|f| f.trim_ascii().to_ascii_lowercase())
            .collect();
        let meter = one_column(&names, "meter", named(METER_NAMES))?.ok_or(
            "the header has no meter column (expected a column named Meter, meter_id or NMI)",
        )?;
        let date = one_column(&names, "date", named(DATE_NAMES))?
            .ok_or("the header has no date column (expected a column named Date)")?;
        let labelled: Vec<(usize, u16)> = names
            .iter()
            .enumerate()
            .filter_map(|(i, n)| parse_time_label(n).map(|m| (i, m)))
            .collect();
        let n = labelled.len();
        let interval_minutes = interval_for_slots(n)
            .filter(|m| [15, 30, 60, 5].contains(m))
            .ok_or_else(|| {
                format!("the header has {n} interval columns; expected 24, 48, 96 or 288")
            })?;
        let step = interval_minutes;
        // The leftmost interval column says which end of the interval labels name.
        let end_labelled = match labelled[0].1 {
            0 => false,
            m if m == step => true,
            m => {
                return Err(format!(
                    "the first interval column is {}:{:02}; expected 0:00 (interval start) or {}:{:02} (interval end)",
                    m / 60, m % 60, step / 60, step % 60
                ))
            }
        };
        let mut intervals = Vec::with_capacity(n);
        for (k, &(col, minutes)) in labelled.iter().enumerate() {
            let expected_start = (k as u16) * step;
            let ok = if end_labelled {
                minutes == expected_start + step || (k + 1 == n && minutes == 0)
            } else {
                minutes == expected_start
            };
            if !ok {
                let label = String::from_utf8_lossy(rec.get(col).unwrap_or_default()).into_owned();
                return Err(format!(
                    "interval column {} is labelled `{label}`, out of sequence for {step}-minute intervals labelled by interval {}",
                    col + 1,
                    if end_labelled { "end" } else { "start" }
                ));
            }
            intervals.push((col, k));
        }
        let total = one_column(&names, "total", is_total_name)?;
        let canonical = meter == 0
            && date == 1
            && intervals
                .iter()
                .enumerate()
                .all(|(k, &(col, _))| col == k + 2)
            && names.len() == n + 2 + usize::from(total.is_some())
            && total.is_none_or(|t| t == n + 2);
        Ok(Layout {
            fields: names.len(),
            meter,
            date,
            total,
            intervals,
            slots: n,
            interval_minutes,
            canonical,
            header: names,
        })
    }
}

/// The wide-format state machine.
pub struct Wide {
    tally: Tally,
    layout: Option<Layout>,
    frag: Fragment,
    /// Last meter id's bytes, to reuse its `SeriesId` on the next row without validating again.
    last_meter: Vec<u8>,
    last_date: Vec<u8>,
    /// The previous row's meter and date, and the day after it, as masked 16-byte words with
    /// their trailing comma, so that the fast path recognises a repeated meter, a repeated date
    /// or the next day with one load and compare each instead of a `memchr`, a `memcmp` and a
    /// date parse per row. A key that cannot be built (long meter, odd date text) never
    /// matches, and the row takes the general comparisons.
    meter_key: Key,
    date_key: Key,
    next_date_key: Key,
    /// The first slashed date read day first that a month-first file would mean otherwise
    /// (`1/2/2019`), and the first refused because it reads only month first (`12/31/2019`),
    /// with their lines: both in one file are warned about at its end.
    ambiguous: Option<(u64, String)>,
    month_first: Option<(u64, String)>,
}

/// Date text that may be compared byte for byte with a raw row: a date cell that matches it
/// is then the same field to `csv-core` (no quote, comma or line end inside).
fn plain_date_text(text: &[u8]) -> bool {
    text.iter()
        .all(|&b| b.is_ascii_digit() || matches!(b, b'-' | b'/' | b' '))
}

/// One interval cell followed by a comma: `(value or the missing sentinel, index after the
/// comma)`. The SWAR shape `d.ddd,` first, then the general plain-decimal scan.
#[inline(always)]
fn cell_then_comma(buf: &[u8], pos: usize) -> Option<(i64, usize)> {
    if let Some(w) = buf
        .get(pos..pos + 8)
        .and_then(|b| <[u8; 8]>::try_from(b).ok())
    {
        if let Some(v) = swar_d_ddd_then(u64::from_le_bytes(w), b',') {
            return Some((v, pos + 6));
        }
    }
    let (v, end) = scan_kwh_cell(buf, pos)?;
    (buf.get(end) == Some(&b',')).then_some((v.unwrap_or(Slots::missing()), end + 1))
}

/// The last cell of a line: as [`cell_then_comma`], but ended by `\n` or `\r\n`; the index
/// returned is just after the `\n`.
#[inline(always)]
fn cell_then_eol(buf: &[u8], pos: usize) -> Option<(i64, usize)> {
    if let Some(w) = buf
        .get(pos..pos + 8)
        .and_then(|b| <[u8; 8]>::try_from(b).ok())
    {
        if let Some(v) = swar_d_ddd_then(u64::from_le_bytes(w), b'\n') {
            return Some((v, pos + 6));
        }
    }
    let (v, end) = scan_kwh_cell(buf, pos)?;
    let next = match buf.get(end..)? {
        [b'\n', ..] => end + 1,
        [b'\r', b'\n', ..] => end + 2,
        _ => return None,
    };
    Some((v.unwrap_or(Slots::missing()), next))
}

impl Wide {
    pub(crate) fn new(opts: &Options) -> Wide {
        Wide {
            tally: Tally::new(opts.source.clone()),
            layout: None,
            frag: Fragment {
                series: SeriesId::parse(b"-").expect("valid placeholder"),
                day: Day::from_days(0).expect("1970 is in range"),
                version: opts.version,
                source: opts.source.clone(),
                line: 0,
                interval_minutes: 30,
                unit: Unit::kwh(),
                quality: Quality::UNSPECIFIED,
                slots: Slots::new(48),
            },
            last_meter: Vec::new(),
            last_date: Vec::new(),
            meter_key: Key::NONE,
            date_key: Key::NONE,
            next_date_key: Key::NONE,
            ambiguous: None,
            month_first: None,
        }
    }

    /// Makes `raw` (trimmed, already validated) the current meter.
    fn remember_meter(&mut self, raw: &[u8], series: SeriesId) {
        self.frag.series = series;
        self.last_meter.clear();
        self.last_meter.extend_from_slice(raw);
        self.meter_key = Key::new(raw);
    }

    /// Makes `raw`, which parses as `day`, the current date.
    fn remember_date(&mut self, raw: &[u8], day: Day, lineno: u64) {
        // (Cheap for the usual ISO date: a slashed one has its first `/` at byte 1 or 2.)
        let slashed = raw.get(1..3).is_some_and(|b| b.contains(&b'/'));
        if slashed && self.ambiguous.is_none() && SlashedOrder::of(raw) == SlashedOrder::Ambiguous {
            self.ambiguous = Some((lineno, String::from_utf8_lossy(raw).into_owned()));
        }
        self.frag.day = day;
        self.last_date.clear();
        self.last_date.extend_from_slice(raw);
        self.date_key = if plain_date_text(raw) {
            Key::new(raw)
        } else {
            Key::NONE
        };
        // `Day::parse` reads the ISO text back as exactly the next day; a day past the last
        // accepted year has no key. Before the 28th of a month given as `YYYY-MM-DD` (which
        // `Day::parse` reads no other way) the next day's text is this one with the day of
        // month counted up, which spares a calendar conversion per row.
        self.next_date_key = match *raw {
            [y0, y1, y2, y3, b'-', m0, m1, b'-', d0 @ b'0'..=b'2', d1 @ b'0'..=b'9']
                if (d0, d1) < (b'2', b'8') =>
            {
                let (d0, d1) = if d1 == b'9' {
                    (d0 + 1, b'0')
                } else {
                    (d0, d1 + 1)
                };
                Key::new(&[y0, y1, y2, y3, b'-', m0, m1, b'-', d0, d1])
            }
            _ => match Day::from_days(day.days() + 1) {
                Some(next) => Key::new(&next.iso_bytes()),
                None => Key::NONE,
            },
        };
        debug_assert!(Day::from_days(day.days() + 1)
            .is_none_or(|n| Key::new(&n.iso_bytes()).word == self.next_date_key.word));
    }

    // An empty cell is parsed (and refused) even when the previous row's was empty too: before
    // the first row `last_meter` and `last_date` are empty, and an empty cell matching them
    // would keep the placeholder series `-` and day 1970-01-01.
    fn set_meter(&mut self, raw: &[u8]) -> Result<(), String> {
        let raw = raw.trim_ascii();
        if raw.is_empty() || raw != self.last_meter.as_slice() {
            let series = SeriesId::parse(raw).map_err(|e| e.to_string())?;
            self.remember_meter(raw, series);
        }
        Ok(())
    }

    fn set_day(&mut self, raw: &[u8], lineno: u64) -> Result<(), String> {
        if raw.is_empty() || raw != self.last_date.as_slice() {
            let day = Day::parse(raw).map_err(|e| {
                if SlashedOrder::of(raw) != SlashedOrder::MonthFirstOnly {
                    return e.to_string();
                }
                self.month_first.get_or_insert((lineno, e.text.clone()));
                format!("{e}; it reads as a date only month first (US style), but meterflow reads slashed dates day first: convert the file's dates to YYYY-MM-DD")
            })?;
            self.remember_date(raw, day, lineno);
        }
        Ok(())
    }

    /// The fused fast path: parses the canonical row of plain decimals that starts at
    /// `buf[start]` and ends with a `\n` inside `buf`, straight from the buffer, and returns
    /// the index after that `\n`. Declines (`None`) anything else, with nothing observable
    /// changed: the slots buffer may hold partial values, but its cached total is then stale
    /// and the slow path resets it before use.
    #[inline(always)]
    fn fast_row_at(
        &mut self,
        buf: &[u8],
        start: usize,
        lineno: u64,
        slots: usize,
        has_total: bool,
    ) -> Option<usize> {
        // Meter: the previous row's (one compare), or a new one validated as a series id,
        // whose characters exclude quotes, blanks and line ends.
        let head = word16(buf, start);
        let (c1, new_meter) = match head {
            Some(w) if self.meter_key.matches(w) => (start + self.meter_key.len, false),
            _ => {
                let c1 = start
                    + buf
                        .get(start..)?
                        .iter()
                        .take(MAX_SERIES_LEN + 1)
                        .position(|&b| b == b',')?;
                let meter = &buf[start..c1];
                if meter.is_empty() {
                    return None;
                }
                if meter != self.last_meter.as_slice() {
                    SeriesId::check(meter).ok()?;
                }
                (c1, meter != self.last_meter.as_slice())
            }
        };
        // Date: the previous row's, the day after it, or a field parsed in full.
        let d0 = c1 + 1;
        let (c2, new_day) = match word16(buf, d0) {
            Some(w) if self.date_key.matches(w) => (d0 + self.date_key.len, None),
            Some(w) if self.next_date_key.matches(w) => {
                (d0 + self.next_date_key.len, Some(self.frag.day.succ()))
            }
            _ => {
                let c2 = d0
                    + buf
                        .get(d0..)?
                        .iter()
                        .take(40)
                        .position(|&b| matches!(b, b',' | b'\n' | b'\r' | b'"'))?;
                if buf[c2] != b',' {
                    return None;
                }
                let date = &buf[d0..c2];
                if date.is_empty() {
                    return None;
                }
                if date == self.last_date.as_slice() {
                    (c2, None)
                } else {
                    (c2, Some(Day::parse(date).ok()?))
                }
            }
        };
        let raw = self.frag.slots.raw_mut(slots);
        let (last, body) = raw.split_last_mut()?;
        let mut pos = c2 + 1;
        let (mut sum, mut present) = (0i64, 0usize);
        for cell in body {
            let (v, next) = cell_then_comma(buf, pos)?;
            *cell = v;
            let here = v != Slots::missing();
            sum += if here { v } else { 0 };
            present += usize::from(here);
            pos = next;
        }
        let (v, next) = if has_total {
            cell_then_comma(buf, pos)?
        } else {
            cell_then_eol(buf, pos)?
        };
        *last = v;
        let here = v != Slots::missing();
        sum += if here { v } else { 0 };
        present += usize::from(here);
        pos = next;
        if has_total {
            let (total, next) = cell_then_eol(buf, pos)?;
            if total != Slots::missing() && total != sum {
                return None;
            }
            pos = next;
        }
        if present == 0 {
            return None;
        }
        if new_meter {
            let meter = &buf[start..c1];
            let series = SeriesId::parse(meter).ok()?;
            self.remember_meter(meter, series);
        }
        if let Some(day) = new_day {
            self.remember_date(&buf[d0..c2], day, lineno);
        }
        self.frag.slots.commit_raw(sum, present);
        self.frag.line = lineno;
        Some(pos)
    }

    fn slow_row(&mut self, rec: &Record<'_>, lineno: u64) -> Result<(), (Option<u32>, String)> {
        let layout = self.layout.as_ref().expect("header parsed before rows");
        let col = |i: usize| Some(i as u32 + 1);
        rec.has_fields(layout.fields)?;
        if let Some(extra) = (layout.fields..rec.len())
            .find(|&i| !rec.get(i).unwrap_or_default().trim_ascii().is_empty())
        {
            return Err((
                col(extra),
                format!(
                    "the row has {} fields but the header has {}",
                    rec.len(),
                    layout.fields
                ),
            ));
        }
        let (meter_col, date_col, total_col) = (layout.meter, layout.date, layout.total);
        let (slots, minutes) = (layout.slots, layout.interval_minutes);
        let intervals = layout.intervals.clone();
        self.set_meter(rec.get(meter_col).unwrap_or_default())
            .map_err(|e| (col(meter_col), e))?;
        self.set_day(rec.get(date_col).unwrap_or_default(), lineno)
            .map_err(|e| (col(date_col), e))?;
        self.frag.slots.reset(slots);
        for (c, slot) in intervals {
            let raw = rec.get(c).unwrap_or_default();
            match parse_decimal(raw, 6) {
                Ok(Some(v)) => self.frag.slots.set(slot, v),
                Ok(None) => {}
                Err(e) => return Err((col(c), e.to_string())),
            }
        }
        if self.frag.slots.present() == 0 {
            return Err((None, "the row has no interval values".into()));
        }
        if let Some(tc) = total_col {
            let sum = self.frag.slots.total();
            match parse_decimal(rec.get(tc).unwrap_or_default(), 6) {
                Ok(Some(t)) if t != sum => {
                    return Err((
                        col(tc),
                        format!(
                            "the total column says {} but the intervals sum to {}; the row is not counted",
                            format_amount(t),
                            format_amount(sum)
                        ),
                    ))
                }
                Ok(_) => {}
                Err(e) => return Err((col(tc), format!("total column: {e}"))),
            }
        }
        self.frag.interval_minutes = minutes;
        self.frag.line = lineno;
        Ok(())
    }
}

impl Handler for Wide {
    fn lines(&mut self, input: &[u8], lineno: u64, sink: &mut dyn Sink) -> (usize, u64) {
        let Some(layout) = self.layout.as_ref().filter(|l| l.canonical) else {
            return (0, 0);
        };
        let (slots, has_total) = (layout.slots, layout.total.is_some());
        let (mut pos, mut n) = (0, 0);
        while let Some(end) = self.fast_row_at(input, pos, lineno + n, slots, has_total) {
            self.tally.accept_rows(1);
            self.tally.emit(sink, &self.frag);
            pos = end;
            n += 1;
        }
        (pos, n)
    }

    fn record(
        &mut self,
        rec: &Record<'_>,
        lineno: u64,
        sink: &mut dyn Sink,
    ) -> Result<(), FileError> {
        let Some(layout) = &self.layout else {
            let layout =
                Layout::from_header(rec).map_err(|e| self.tally.header_error(lineno, e))?;
            self.frag.interval_minutes = layout.interval_minutes;
            self.layout = Some(layout);
            return Ok(());
        };
        // A repeated header (files concatenated with `cat`) is not a row.
        if rec.repeats(&layout.header) {
            return Ok(());
        }
        match self.slow_row(rec, lineno) {
            Ok(()) => {
                self.tally.accept_rows(1);
                self.tally.emit(sink, &self.frag);
            }
            Err((column, reason)) => self.tally.reject(sink, lineno, column, reason),
        }
        Ok(())
    }
}

impl FormatHandler for Wide {
    fn finish(&mut self, _sink: &mut dyn Sink) -> Result<(), FileError> {
        self.tally.require_header(self.layout.is_some())
    }

    fn end_of_input(&mut self, sink: &mut dyn Sink) {
        if let (Some((a_line, a)), Some((m_line, m))) = (&self.ambiguous, &self.month_first) {
            let reason = format!(
                "this file's slashed dates look month first (US style): `{m}` at line {m_line} reads only that way, but meterflow reads slashed dates day first, so rows with dates such as `{a}` (first at line {a_line}) were counted on another day than a month-first file means; convert the dates to YYYY-MM-DD and ingest the file again"
            );
            self.tally.warn(sink, *m_line, reason);
        }
    }

    fn tally(&self) -> &Tally {
        &self.tally
    }
}

/// Source name helper for tests in sibling modules.
#[cfg(test)]
pub(crate) fn test_opts() -> Options {
    Options::new("test.csv", 1_000)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::format::record::Records;
    use crate::format::{arb_eol, parse_all, FormatHandler, Parser, SlowOnly};
    use crate::reject::Collect;
    use crate::value::ONE;
    use proptest::prelude::*;

    fn header(n: usize, end_labelled: bool, sep: &str) -> String {
        let step = 1440 / n;
        let labels: Vec<String> = (0..n)
            .map(|k| {
                let m = if end_labelled {
                    (k + 1) * step % 1440
                } else {
                    k * step
                };
                format!("{}:{:02}", m / 60, m % 60)
            })
            .collect();
        format!("Meter{sep}Date{sep}{}", labels.join(sep))
    }

    fn parse(input: &str) -> (Collect, crate::reject::Stats) {
        let mut sink = Collect::default();
        let stats = parse_all(input.as_bytes(), test_opts(), &mut sink).unwrap();
        (sink, stats)
    }

    /// Found by the `parse_chunks` fuzz target: a 15-byte meter id (16 with its comma, a
    /// whole fast-path key) overflowed the key's mask and panicked in debug builds.
    #[test]
    fn ids_and_dates_of_every_key_length_take_the_fast_path_safely() {
        for len in 1..=17 {
            let meter = "M".repeat(len);
            let row = format!("{meter},2019-01-01{}\n", ",1".repeat(48));
            let input = format!(
                "{}\n{row}{}",
                header(48, false, ","),
                row.replace("01-01", "01-02")
            );
            let (sink, stats) = parse(&input);
            assert_eq!((stats.rows_read, stats.rows_accepted), (2, 2), "{len}");
            assert!(sink.fragments.iter().all(|f| f.series.as_str() == meter));
        }
    }

    fn row(meter: &str, date: &str, values: &[&str]) -> String {
        format!("{meter},{date},{}", values.join(","))
    }

    /// A file saved with old Mac line ends (`\r` only, as Excel's "CSV (Macintosh)" writes):
    /// each row is reported on its own line, and a hand-over anywhere resumes exactly, also
    /// past the 16 KiB that the record splitter holds back before `csv-core` takes over.
    #[test]
    fn old_mac_line_ends_number_rows_and_hand_over_anywhere() {
        let ones = vec!["1"; 48];
        let mut bad = ones.clone();
        bad[5] = "x";
        let rows: Vec<String> = (0..300)
            .map(|i| {
                row(
                    &format!("EE{i}"),
                    "2019-01-01",
                    if i % 100 == 7 { &bad } else { &ones },
                )
            })
            .collect();
        let head = header(48, false, ",");
        let input = format!("{head}\r{}\r", rows.join("\r"));
        assert!(input.len() > 2 * crate::format::record::MAX_HELD_BYTES);
        let (whole, stats) = parse(&input);
        assert_eq!((stats.rows_read, stats.rows_rejected), (300, 3));
        let rejected: Vec<u64> = whole.rejects.iter().map(|r| r.line).collect();
        assert_eq!(
            rejected,
            [9, 109, 209],
            "the header is line 1, row i is line i + 2"
        );
        assert_eq!(whole.fragments.last().map(|f| f.line), Some(301));
        let mut handed_over = 0;
        for cut in (0..=input.len())
            .step_by(37)
            .chain([head.len(), head.len() + 1])
        {
            let (parts, part_stats, resumes) =
                crate::format::parse_in_parts(input.as_bytes(), &[cut], test_opts());
            assert_eq!(parts.fragments, whole.fragments, "cut at {cut}");
            assert_eq!(parts.rejects, whole.rejects, "cut at {cut}");
            assert_eq!(part_stats, stats, "cut at {cut}");
            for r in &resumes {
                // Each resumes at the start of a row, on that row's line.
                let at = r.offset as usize;
                assert_eq!(input.as_bytes()[at - 1], b'\r', "cut at {cut}");
                let line = 1 + input[..at].matches('\r').count() as u64;
                assert_eq!(r.line, line, "cut at {cut}");
                handed_over += 1;
            }
        }
        assert!(handed_over > 100, "only {handed_over} hand-overs");

        // Blank CRLF lines: a cut never falls between a `\r` and its `\n`, where the next
        // part would count the `\n` as one more line.
        let crlf = format!("{head}\r\n\r\n{}\r\n", rows[..8].join("\r\n\r\n"));
        let (whole, stats) = parse(&crlf);
        let rejected: Vec<u64> = whole.rejects.iter().map(|r| r.line).collect();
        assert_eq!(rejected, [17]);
        for cut in 0..=crlf.len() {
            let (parts, part_stats, _) =
                crate::format::parse_in_parts(crlf.as_bytes(), &[cut], test_opts());
            assert_eq!(parts.rejects, whole.rejects, "cut at {cut}");
            assert_eq!(parts.fragments, whole.fragments, "cut at {cut}");
            assert_eq!(part_stats, stats, "cut at {cut}");
        }
    }

    #[test]
    fn time_labels() {
        assert_eq!(parse_time_label(b"0:00"), Some(0));
        assert_eq!(parse_time_label(b"23:30"), Some(1410));
        assert_eq!(parse_time_label(b"24:00"), Some(1440));
        assert_eq!(parse_time_label(b"00:30:00"), Some(30));
        assert_eq!(parse_time_label(b"24:30"), None);
        assert_eq!(parse_time_label(b"Date"), None);
        assert_eq!(parse_time_label(b"1:5"), None);
    }

    #[test]
    fn variants_of_the_format() {
        let ones = vec!["1"; 48];
        let halves = vec!["0.5"; 48];
        struct Case {
            name: &'static str,
            input: String,
            day_totals: Vec<(&'static str, &'static str, i64)>,
        }
        let h48 = header(48, false, ",");
        let cases = vec![
            Case {
                name: "start labelled LF",
                input: format!("{h48}\n{}\n", row("EE1", "2019-01-01", &ones)),
                day_totals: vec![("EE1", "2019-01-01", 48 * ONE)],
            },
            Case {
                name: "CRLF, no final newline",
                input: format!(
                    "{h48}\r\n{}\r\n{}",
                    row("EE1", "2019-01-01", &ones),
                    row("EE1", "2019-01-02", &halves)
                ),
                day_totals: vec![
                    ("EE1", "2019-01-01", 48 * ONE),
                    ("EE1", "2019-01-02", 24 * ONE),
                ],
            },
            Case {
                name: "BOM and blank lines",
                input: format!("\u{feff}{h48}\n\n{}\n\n", row("EE1", "1/01/2019", &ones)),
                day_totals: vec![("EE1", "2019-01-01", 48 * ONE)],
            },
            Case {
                name: "end labelled UK style 24:00",
                input: format!(
                    "{}\n{}\n",
                    header(48, true, ",").replace(",0:00", ",24:00"),
                    row("EE1", "20190101", &ones)
                ),
                day_totals: vec![("EE1", "2019-01-01", 48 * ONE)],
            },
            Case {
                name: "end labelled 00:00",
                input: format!(
                    "{}\n{}\n",
                    header(48, true, ","),
                    row("EE1", "2019-01-01", &ones)
                ),
                day_totals: vec![("EE1", "2019-01-01", 48 * ONE)],
            },
            Case {
                name: "quoted fields",
                input: format!(
                    "{}\n{}\n",
                    header(48, false, ",")
                        .split(',')
                        .map(|f| format!("\"{f}\""))
                        .collect::<Vec<_>>()
                        .join(","),
                    row("\"EE1\"", "\"2019-01-01\"", &vec!["\"1\""; 48])
                ),
                day_totals: vec![("EE1", "2019-01-01", 48 * ONE)],
            },
            Case {
                name: "columns in another order, lower case",
                input: format!(
                    "date,{},meter\n2019-01-01,{},EE2\n",
                    header(24, false, ",").trim_start_matches("Meter,Date,"),
                    vec!["2"; 24].join(",")
                ),
                day_totals: vec![("EE2", "2019-01-01", 48 * ONE)],
            },
            Case {
                name: "96 and 288 intervals",
                input: format!(
                    "{}\n{}\n",
                    header(96, false, ","),
                    row("EE3", "2019-01-01", &vec!["0.25"; 96])
                ),
                day_totals: vec![("EE3", "2019-01-01", 24 * ONE)],
            },
            Case {
                name: "288",
                input: format!(
                    "{}\n{}\n",
                    header(288, false, ","),
                    row("EE3", "2019-01-01", &vec!["0.001"; 288])
                ),
                day_totals: vec![("EE3", "2019-01-01", 288_000)],
            },
            Case {
                name: "total column checked",
                input: format!("{h48},Total\n{},48\n", row("EE1", "2019-01-01", &ones)),
                day_totals: vec![("EE1", "2019-01-01", 48 * ONE)],
            },
            Case {
                name: "one day total kwh",
                input: format!(
                    "{h48},One Day Total kWh\n{},24.0\n",
                    row("EE1", "2019-01-01", &halves)
                ),
                day_totals: vec![("EE1", "2019-01-01", 24 * ONE)],
            },
            Case {
                name: "repeated header",
                input: format!(
                    "{h48}\n{}\n{h48}\n{}\n",
                    row("EE1", "2019-01-01", &ones),
                    row("EE1", "2019-01-02", &ones)
                ),
                day_totals: vec![
                    ("EE1", "2019-01-01", 48 * ONE),
                    ("EE1", "2019-01-02", 48 * ONE),
                ],
            },
            Case {
                name: "decimals never dropped",
                input: format!("{h48}\n{}\n", row("EE1", "2019-01-01", &vec!["0.123"; 48])),
                day_totals: vec![("EE1", "2019-01-01", 48 * 123_000)],
            },
        ];
        for c in cases {
            let (sink, stats) = parse(&c.input);
            assert!(sink.rejects.is_empty(), "{}: {:?}", c.name, sink.rejects);
            let got: Vec<(String, String, i64)> = sink
                .fragments
                .iter()
                .map(|f| (f.series.to_string(), f.day.to_string(), f.total()))
                .collect();
            let want: Vec<(String, String, i64)> = c
                .day_totals
                .iter()
                .map(|(m, d, t)| (m.to_string(), d.to_string(), *t))
                .collect();
            assert_eq!(got, want, "{}", c.name);
            assert_eq!(stats.rows_read, want.len() as u64, "{}", c.name);
        }
    }

    #[test]
    fn partial_days_keep_missing_slots_missing() {
        let mut vals = vec!["1"; 48];
        vals[0] = "";
        vals[47] = " ";
        let (sink, _) = parse(&format!(
            "{}\n{}\n",
            header(48, false, ","),
            row("EE1", "2019-01-01", &vals)
        ));
        let f = &sink.fragments[0];
        assert_eq!(
            (f.slots.present(), f.slots.get(0), f.total()),
            (46, None, 46 * ONE)
        );
    }

    #[test]
    fn bad_rows_are_rejected_with_line_and_column_and_the_rest_is_read() {
        let h = header(48, false, ",");
        let mut bad_value = vec!["1"; 48];
        bad_value[3] = "1.2x";
        let mut precise = vec!["1"; 48];
        precise[0] = "0.0000001";
        let input = [
            h.clone() + ",Total",
            row("EE1", "2019-01-01", &vec!["1"; 48]) + ",48",
            row("EE 1", "2019-01-02", &vec!["1"; 48]) + ",48",
            row("EE1", "2019-02-30", &vec!["1"; 48]) + ",48",
            row("EE1", "2019-01-03", &bad_value) + ",",
            row("EE1", "2019-01-04", &vec!["1"; 48]) + ",47",
            row("EE1", "2019-01-05", &vec![""; 48]) + ",",
            "EE1,2019-01-06,1,2".into(),
            row("EE1", "2019-01-07", &precise) + ",",
            row("EE1", "2019-01-08", &vec!["1"; 48]) + ",48,x",
            row("EE1", "2019-01-09", &vec!["1"; 48]) + ",",
        ]
        .join("\n");
        let (sink, stats) = parse(&input);
        let rejects: Vec<(u64, Option<u32>)> =
            sink.rejects.iter().map(|r| (r.line, r.column)).collect();
        assert_eq!(
            rejects,
            vec![
                (3, Some(1)),
                (4, Some(2)),
                (5, Some(6)),
                (6, Some(51)),
                (7, None),
                (8, None),
                (9, Some(3)),
                (10, Some(52))
            ]
        );
        assert!(
            sink.rejects[3].reason.contains("sum to 48"),
            "{}",
            sink.rejects[3].reason
        );
        assert!(
            sink.rejects[6].reason.contains("decimal places"),
            "{}",
            sink.rejects[6].reason
        );
        assert_eq!(
            sink.fragments.iter().map(|f| f.line).collect::<Vec<_>>(),
            vec![2, 11]
        );
        assert_eq!(
            (stats.rows_read, stats.rows_accepted, stats.rows_rejected),
            (10, 2, 8)
        );
    }

    /// Before the first row the remembered meter and date are empty: an empty cell there must
    /// be refused, not taken for "the same as the previous row" (it was stored as meter `-` on
    /// 1970-01-01). Both paths, every position of the blank cell.
    #[test]
    fn an_empty_meter_or_date_is_rejected_even_on_the_first_row() {
        let h = header(48, false, ",");
        let ones = vec!["1"; 48];
        for (rows, bad_column) in [
            (vec![row("", "2019-01-01", &ones)], 1),
            (vec![row("EE1", "", &ones)], 2),
            (vec![row(" ", "2019-01-01", &ones)], 1),
            (vec![row("\"\"", "2019-01-01", &ones)], 1),
        ] {
            let input = [h.clone()]
                .into_iter()
                .chain(rows)
                .chain([row("EE1", "", &ones), row("", "2019-01-02", &ones)])
                .chain([row("EE2", "2019-01-03", &ones)])
                .collect::<Vec<_>>()
                .join("\n");
            let (fast, stats) = parse(&input);
            let fast_counts = (stats.rows_read, stats.rows_accepted, stats.rows_rejected);
            for (sink, counts) in [(fast, fast_counts), parse_slow(&input)] {
                let rejects: Vec<(u64, Option<u32>)> =
                    sink.rejects.iter().map(|r| (r.line, r.column)).collect();
                assert_eq!(
                    rejects,
                    vec![(2, Some(bad_column)), (3, Some(2)), (4, Some(1))],
                    "{input}"
                );
                let kept: Vec<(String, String)> = sink
                    .fragments
                    .iter()
                    .map(|f| (f.series.to_string(), f.day.to_string()))
                    .collect();
                assert_eq!(kept, [("EE2".to_string(), "2019-01-03".to_string())]);
                assert_eq!(counts, (4, 1, 3));
            }
        }
    }

    /// A file whose slashed dates are month first: the row that reads only that way is refused
    /// saying so, and the rows read day first are warned about at the end.
    #[test]
    fn month_first_dates_are_refused_and_the_ambiguous_ones_warned_about() {
        let h = header(48, false, ",");
        let ones = vec!["1"; 48];
        let input = [
            h,
            row("EE1", "1/2/2019", &ones),
            row("EE1", "12/31/2019", &ones),
            row("EE1", "3/3/2019", &ones),
        ]
        .join("\n");
        let (sink, stats) = parse(&input);
        assert_eq!(
            (stats.rows_accepted, stats.rows_rejected, stats.warnings),
            (2, 1, 1)
        );
        assert!(
            sink.rejects[0].reason.contains("only month first"),
            "{:?}",
            sink.rejects
        );
        let warning = &sink.rejects[1];
        assert_eq!(
            (warning.kind, warning.line),
            (crate::RejectKind::Warning, 3)
        );
        assert!(
            warning.reason.contains("`1/2/2019` (first at line 2)"),
            "{}",
            warning.reason
        );
        // Day-first files (or unambiguous ones) are not warned about.
        let day_first = input.replace("12/31/2019", "31/12/2019");
        assert_eq!(parse(&day_first).1.warnings, 0);
    }

    #[test]
    fn bad_headers_reject_the_file_once() {
        for (input, needle) in [
            (
                "Meter,Date,0:00,0:30\nEE1,2019-01-01,1,1\n",
                "2 interval columns",
            ),
            ("Meter,0:00,0:30\n", "no date column"),
            (
                &*header(48, false, ",").replace("Meter,Date,", "Meter,Date,NMI,"),
                "more than one meter column (column 1 `meter` and column 3 `nmi`)",
            ),
            (
                &*(header(48, false, ",") + ",Total,total"),
                "more than one total column",
            ),
            (
                &*format!(
                    "Date,{}\n",
                    header(48, false, ",").trim_start_matches("Meter,Date,")
                ),
                "no meter column",
            ),
            (
                &*header(48, false, ",").replace(",1:00,", ",1:15,"),
                "out of sequence",
            ),
        ] {
            let mut p = Parser::new(test_opts());
            let mut sink = Collect::default();
            let err = p
                .feed(input.as_bytes(), &mut sink)
                .and_then(|_| p.finish(&mut sink).map(|_| ()));
            let msg = err.unwrap_err().to_string();
            assert!(msg.contains(needle), "{msg}");
        }
    }

    fn arb_cell() -> impl Strategy<Value = String> {
        prop_oneof![
            8 => (0u32..3000).prop_map(|v| format!("{}.{:03}", v / 1000, v % 1000)),
            3 => (0u32..20).prop_map(|v| v.to_string()),
            1 => Just(String::new()),
            1 => Just("\"1.5\"".to_string()),
            1 => Just(" 2".to_string()),
            1 => Just("-0.25".to_string()),
            1 => Just("x".to_string()),
            1 => Just("0.1234567".to_string()),
        ]
    }

    fn parse_slow(input: &str) -> (Collect, (u64, u64, u64)) {
        let opts = test_opts();
        let mut records = Records::new(opts.source.clone(), 1);
        let mut h = SlowOnly(Wide::new(&opts));
        let mut sink = Collect::default();
        records.feed(input.as_bytes(), &mut h, &mut sink).unwrap();
        records.finish(&mut h, &mut sink).unwrap();
        let st = h.0.tally().stats;
        (sink, (st.rows_read, st.rows_accepted, st.rows_rejected))
    }

    /// A row's cells: mostly plain (so that the fast path takes the row), sometimes with one
    /// cell of any kind at any place.
    fn arb_cells(n: usize) -> impl Strategy<Value = Vec<String>> {
        let plain = prop_oneof![
            8 => (0u32..3000).prop_map(|v| format!("{}.{:03}", v / 1000, v % 1000)),
            2 => (0u32..99_999).prop_map(|v| format!("{}.{:03}", v / 1000, v % 1000)),
            2 => (0u32..20).prop_map(|v| v.to_string()),
            1 => (0u32..1_000_000).prop_map(|v| format!("0.{v:06}")),
            1 => Just(String::new()),
        ];
        (
            proptest::collection::vec(plain, n),
            proptest::option::weighted(0.3, (0..n, arb_cell())),
        )
            .prop_map(|(mut cells, odd)| {
                if let Some((i, c)) = odd {
                    cells[i] = c;
                }
                cells
            })
    }

    fn arb_meter() -> impl Strategy<Value = String> {
        prop_oneof![
            8 => (0u8..3).prop_map(|m| format!("EE{m}")),
            1 => Just("NMI_LONGER_THAN_SIXTEEN".to_string()),
            1 => Just("EE 1".to_string()),
            1 => Just(" EE1".to_string()),
            1 => Just("\"EE1\"".to_string()),
        ]
    }

    fn arb_date() -> impl Strategy<Value = String> {
        prop_oneof![
            8 => (1u32..29).prop_map(|d| format!("2019-02-{d:02}")),
            1 => (1u32..29).prop_map(|d| format!("{d}/02/2019")),
            1 => (1u32..29).prop_map(|d| format!("201902{d:02}")),
            1 => Just("2019-02-30".to_string()),
            1 => Just("2999-12-31".to_string()),
            1 => Just(" 2019-02-03".to_string()),
        ]
    }

    proptest! {
        #[test]
        fn chunk_boundaries_never_change_the_output(
            rows in proptest::collection::vec((0u8..3, 1u32..28, arb_cells(48), any::<bool>()), 1..8),
            cuts in proptest::collection::vec(0usize..20_000, 0..8),
            crlf in any::<bool>(),
        ) {
            let eol = if crlf { "\r\n" } else { "\n" };
            let mut input = header(48, false, ",") + ",Total" + eol;
            for (m, d, cells, with_total) in &rows {
                let total = if *with_total {
                    let sum: i64 = cells.iter().filter_map(|c| parse_decimal(c.trim_matches('"').as_bytes(), 6).ok().flatten()).sum();
                    format_amount(sum)
                } else { String::new() };
                input += &format!("EE{m},2019-01-{d:02},{},{total}{eol}", cells.join(","));
            }
            let whole = parse(&input);
            let (sink, stats) = crate::format::parse_in_chunks(input.as_bytes(), &cuts, test_opts());
            prop_assert_eq!(&sink.fragments, &whole.0.fragments);
            prop_assert_eq!(&sink.rejects, &whole.0.rejects);
            prop_assert_eq!(stats.rows_read, rows.len() as u64);
            prop_assert_eq!(stats.rows_read, stats.rows_accepted + stats.rows_rejected);
            let slow = parse_slow(&input);
            prop_assert_eq!(&sink.fragments, &slow.0.fragments);
            prop_assert_eq!(&sink.rejects, &slow.0.rejects);
            // Handed over between runs at the same places: the same rows, nothing twice.
            let (parts, part_stats, resumes) = crate::format::parse_in_parts(input.as_bytes(), &cuts, test_opts());
            prop_assert_eq!(&parts.fragments, &whole.0.fragments);
            prop_assert_eq!(&parts.rejects, &whole.0.rejects);
            prop_assert_eq!(part_stats, stats);
            prop_assert!(resumes.iter().all(|r| r.context.len() == 1 && r.context[0].0 == 1));
        }

        /// Meters, dates (repeated, consecutive, other layouts, invalid), line ends and cells
        /// of every kind, cut anywhere: the fast path and `csv-core` alone agree on everything.
        #[test]
        fn fast_path_agrees_with_csv_core(
            rows in proptest::collection::vec((arb_meter(), arb_date(), arb_cells(24), arb_eol()), 1..10),
            cuts in proptest::collection::vec(0usize..5_000, 0..8),
            with_total in any::<bool>(),
            last_eol in any::<bool>(),
        ) {
            let mut input = header(24, false, ",");
            if with_total {
                input += ",Total";
            }
            input += "\n";
            for (i, (m, d, cells, eol)) in rows.iter().enumerate() {
                let total = if with_total {
                    let sum: i64 = cells.iter().filter_map(|c| parse_decimal(c.trim_matches('"').as_bytes(), 6).ok().flatten()).sum();
                    format!(",{}", if i % 3 == 2 { "1".to_string() } else { format_amount(sum) })
                } else { String::new() };
                input += &format!("{m},{d},{}{total}", cells.join(","));
                if i + 1 < rows.len() || last_eol {
                    input += eol;
                }
            }
            let slow = parse_slow(&input);
            let (sink, stats) = crate::format::parse_in_chunks(input.as_bytes(), &cuts, test_opts());
            prop_assert_eq!(&sink.fragments, &slow.0.fragments);
            prop_assert_eq!(&sink.rejects, &slow.0.rejects);
            prop_assert_eq!((stats.rows_read, stats.rows_accepted, stats.rows_rejected), slow.1);
            let (parts, part_stats, _) = crate::format::parse_in_parts(input.as_bytes(), &cuts, test_opts());
            prop_assert_eq!(&parts.fragments, &slow.0.fragments);
            prop_assert_eq!(&parts.rejects, &slow.0.rejects);
            prop_assert_eq!((part_stats.rows_read, part_stats.rows_accepted, part_stats.rows_rejected), slow.1);
            prop_assert_eq!(part_stats.bytes, input.len() as u64);
            for f in &sink.fragments {
                let recount: i64 = f.slots.iter().map(|(_, v)| v).sum();
                prop_assert_eq!((f.total(), f.slots.present()), (recount, f.slots.iter().count()));
            }
        }
    }
}
