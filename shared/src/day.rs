//! Calendar days without a time zone.
//!
//! Meter data is billed per local calendar day of the meter's market, so a day is a plain civil
//! date: no offsets, no DST arithmetic. Stored as days since 1970-01-01, which makes it a cheap
//! `Copy` key and a small varint on the wire. The conversions are the proleptic Gregorian
//! algorithms of Howard Hinnant's `chrono`-compatible date library.

use std::fmt;

/// A civil date, as days since 1970-01-01.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct Day(i32);

/// Why a date was refused, and which forms the place it came from accepts.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("`{text}` is not a date: {why} (accepted: {accepted})")]
pub struct DayError {
    /// The refused text as read, blanks included (shown lossily if not UTF-8).
    pub text: String,
    /// What is wrong with it, in a few words (such as "no such day in the calendar").
    pub why: &'static str,
    /// The forms accepted where the date was read: [`FILE_DATE_FORMS`] or [`ISO_DATE_FORM`].
    pub accepted: &'static str,
}

/// The date forms [`Day::parse`] reads in meter files.
pub const FILE_DATE_FORMS: &str =
    "2019-01-31, 31/01/2019 or 1/1/2019 day first, 20190131, 31-01-2019";
/// The one form of API parameters and command-line options ([`Day::parse_iso`]).
pub const ISO_DATE_FORM: &str = "YYYY-MM-DD only, like 2019-01-31";

impl DayError {
    /// The same error, saying that `accepted` are the forms accepted where it was read.
    pub fn accepting(self, accepted: &'static str) -> DayError {
        DayError { accepted, ..self }
    }
}

/// Years accepted from input: wide enough for any metering history, narrow enough that a
/// typo such as `219-01-01` is caught instead of stored.
pub const MIN_YEAR: i32 = 1900;
/// Last year accepted from input; see [`MIN_YEAR`].
pub const MAX_YEAR: i32 = 2999;
/// The first day of [`MIN_YEAR`], in days since 1970-01-01.
pub const FIRST_DAY: i32 = days_from_civil(MIN_YEAR, 1, 1);
/// The last day of [`MAX_YEAR`], in days since 1970-01-01.
pub const LAST_DAY: i32 = days_from_civil(MAX_YEAR, 12, 31);
/// Why a date outside [`MIN_YEAR`]..=[`MAX_YEAR`] is refused.
const YEAR_RANGE: &str = "the year is outside 1900–2999, the years meter data can have";

impl Day {
    /// Builds a day from year, month (1–12) and day of month, validating all three.
    pub fn from_ymd(y: i32, m: u32, d: u32) -> Option<Day> {
        if !(MIN_YEAR..=MAX_YEAR).contains(&y) || !(1..=12).contains(&m) || d == 0 {
            return None;
        }
        if d > days_in_month(y, m) {
            return None;
        }
        Some(Day(days_from_civil(y, m, d)))
    }

    /// Days since 1970-01-01, within [`FIRST_DAY`]..=[`LAST_DAY`]: a compare, not a calendar
    /// conversion (the encoder checks every fragment's day).
    pub fn from_days(days: i32) -> Option<Day> {
        (FIRST_DAY..=LAST_DAY).contains(&days).then_some(Day(days))
    }

    /// Days since 1970-01-01 (negative before it): the compact form used in keys and on the
    /// wire.
    pub fn days(self) -> i32 {
        self.0
    }

    /// `(year, month 1–12, day of month 1–31)` in the proleptic Gregorian calendar.
    pub fn ymd(self) -> (i32, u32, u32) {
        civil_from_days(self.0)
    }

    /// `yyyymm`: the month bucket that bounds a series' storage partitions.
    pub fn month_bucket(self) -> i32 {
        let (y, m, _) = self.ymd();
        y * 100 + m as i32
    }

    /// `yyyymm` of the first month of the day's quarter (`yyyy01`, `04`, `07` or `10`): the
    /// SQLite store's pack bucket, which sorts with month buckets.
    pub fn quarter_bucket(self) -> i32 {
        let (y, m, _) = self.ymd();
        y * 100 + ((m as i32 - 1) / 3 * 3 + 1)
    }

    /// The next day. Unchecked: it may step past the last day of [`MAX_YEAR`], which
    /// [`Day::from_days`] would refuse.
    pub fn succ(self) -> Day {
        Day(self.0 + 1)
    }

    /// The day before. Unchecked, like [`Day::succ`]: it may step before [`MIN_YEAR`].
    pub fn pred(self) -> Day {
        Day(self.0 - 1)
    }

    /// Parses any date form found in meter files: `2019-01-31`, `31/01/2019` or `1/1/2019`
    /// (day first, as in Australia and the UK), `20190131`, and `31-01-2019` (the original
    /// API's `dd-MM-yyyy`).
    pub fn parse(text: &[u8]) -> Result<Day, DayError> {
        // `YYYY-MM-DD` without surrounding blanks is the common case in bulk files: no
        // splitting, no trimming.
        if let &[y0, y1, y2, y3, b'-', m0, m1, b'-', d0, d1] = text {
            let dig = |b: u8| u32::from(b.wrapping_sub(b'0'));
            let all = [y0, y1, y2, y3, m0, m1, d0, d1].map(dig);
            if all.iter().all(|&v| v < 10) {
                let y = all[0] * 1000 + all[1] * 100 + all[2] * 10 + all[3];
                if let Some(day) =
                    Day::from_ymd(y as i32, all[4] * 10 + all[5], all[6] * 10 + all[7])
                {
                    return Ok(day);
                }
            }
        }
        let t = text.trim_ascii();
        let err = |why| DayError {
            text: String::from_utf8_lossy(text).into_owned(),
            why,
            accepted: FILE_DATE_FORMS,
        };
        let (y, m, d) = if t.len() == 8 && t.iter().all(u8::is_ascii_digit) {
            (num(&t[0..4]), num(&t[4..6]), num(&t[6..8]))
        } else if let Some(parts) = split3(t, b'-') {
            if parts[0].len() == 4 {
                (num(parts[0]), num(parts[1]), num(parts[2]))
            } else if parts[2].len() == 4 {
                (num(parts[2]), num(parts[1]), num(parts[0]))
            } else {
                return Err(err("a dashed date needs a four-digit year first or last"));
            }
        } else if let Some(parts) = split3(t, b'/') {
            if parts[2].len() != 4 {
                return Err(err("a slashed date must be day/month/four-digit year"));
            }
            (num(parts[2]), num(parts[1]), num(parts[0]))
        } else {
            return Err(err("unrecognised layout"));
        };
        match (y, m, d) {
            (Some(y), Some(m), Some(d)) => {
                let y = y as i32;
                if !(MIN_YEAR..=MAX_YEAR).contains(&y) {
                    return Err(err(YEAR_RANGE));
                }
                Day::from_ymd(y, m, d).ok_or_else(|| err("no such day in the calendar"))
            }
            _ => Err(err("non-digit where digits were expected")),
        }
    }

    /// The day's `YYYY-MM-DD` text as bytes, without allocating: the wide parser compares a
    /// row's date cell with the expected next day's text instead of parsing every date.
    /// [`Day::parse`] reads it back as the same day (years are four digits in range).
    pub fn iso_bytes(self) -> [u8; 10] {
        let (y, m, d) = self.ymd();
        iso_text(y, m, d)
    }

    /// Parses `YYYY-MM-DD` only: the form of API parameters, where ambiguity is unwelcome.
    pub fn parse_iso(text: &str) -> Result<Day, DayError> {
        let b = text.as_bytes();
        if b.len() != 10 || b[4] != b'-' || b[7] != b'-' {
            return Err(DayError {
                text: text.to_string(),
                why: "not in the form YYYY-MM-DD",
                accepted: ISO_DATE_FORM,
            });
        }
        Day::parse(b).map_err(|e| e.accepting(ISO_DATE_FORM))
    }
}

/// How a slashed date (`a/b/yyyy`) reads: the files meterflow takes write them day first,
/// but a US-style export writes them month first, and many dates read both ways.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SlashedOrder {
    /// Not a slashed date, or one that reads one way only (day first) or no way at all.
    Plain,
    /// Both fields are months and differ (`1/2/2019`): read day first, a month-first file
    /// would mean another day.
    Ambiguous,
    /// Only month first makes it a date (`12/31/2019`).
    MonthFirstOnly,
}

impl SlashedOrder {
    /// How `text` (blanks trimmed) reads as a slashed date: lets the wide parser flag dates
    /// a month-first (US-style) export may have written.
    pub fn of(text: &[u8]) -> SlashedOrder {
        let Some([a, b, y]) = split3(text.trim_ascii(), b'/') else {
            return SlashedOrder::Plain;
        };
        let (Some(a), Some(b), Some(y)) = (num(a), num(b), num(y)) else {
            return SlashedOrder::Plain;
        };
        let y = y as i32;
        let day_first = Day::from_ymd(y, b, a).is_some();
        let month_first = Day::from_ymd(y, a, b).is_some();
        match (day_first, month_first) {
            (true, true) if a != b => SlashedOrder::Ambiguous,
            (false, true) => SlashedOrder::MonthFirstOnly,
            _ => SlashedOrder::Plain,
        }
    }
}

/// An RFC 3339 instant (`2019-01-31T13:45:00Z`, `2019-01-31T23:45:00.250+10:00`) as epoch
/// milliseconds: the times of the stream (`meterflow replay --from-time`), which, unlike a
/// reading's timestamp, name one moment, so the offset is required and applied.
pub fn parse_instant_ms(text: &str) -> Result<i64, String> {
    let err = |why: &str| {
        format!("`{text}` is not a time: {why} (write it as RFC 3339, like 2019-01-31T13:45:00Z or 2019-01-31T23:45:00+10:00)")
    };
    let t = text.trim().as_bytes();
    if t.len() < 20 || !matches!(t[10], b'T' | b't' | b' ') {
        return Err(err("expected a date, `T` and a time"));
    }
    let day = Day::parse_iso(std::str::from_utf8(&t[..10]).unwrap_or_default())
        .map_err(|e| err(e.why))?;
    let two = |b: &[u8]| match b {
        [a @ b'0'..=b'9', c @ b'0'..=b'9'] => Some(i64::from((a - b'0') * 10 + (c - b'0'))),
        _ => None,
    };
    let (h, m, sec) = match (&t[13..14], &t[16..17]) {
        (b":", b":") => (two(&t[11..13]), two(&t[14..16]), two(&t[17..19])),
        _ => (None, None, None),
    };
    let (Some(h), Some(m), Some(sec)) = (h, m, sec) else {
        return Err(err("the time must be HH:MM:SS"));
    };
    if h > 23 || m > 59 || sec > 60 {
        return Err(err("no such time of day"));
    }
    let mut rest = &t[19..];
    let mut millis = 0i64;
    if let Some(frac) = rest.strip_prefix(b".") {
        let n = frac.iter().take_while(|b| b.is_ascii_digit()).count();
        if n == 0 {
            return Err(err("a `.` with no fraction of a second after it"));
        }
        let digits = &frac[..n];
        millis = (0..3).fold(0, |acc, i| {
            acc * 10 + digits.get(i).map_or(0, |d| i64::from(d - b'0'))
        });
        rest = &frac[n..];
    }
    let offset_minutes = match rest {
        b"Z" | b"z" => 0,
        [sign @ (b'+' | b'-'), oh0, oh1, b':', om0, om1] => {
            let (Some(oh), Some(om)) = (two(&[*oh0, *oh1]), two(&[*om0, *om1])) else {
                return Err(err("unreadable UTC offset"));
            };
            if oh > 23 || om > 59 {
                return Err(err("unreadable UTC offset"));
            }
            let minutes = oh * 60 + om;
            if *sign == b'-' {
                -minutes
            } else {
                minutes
            }
        }
        [] => return Err(err("no UTC offset: add Z for UTC, or +HH:MM")),
        _ => return Err(err("unreadable UTC offset")),
    };
    let secs = i64::from(day.days()) * 86_400 + h * 3600 + m * 60 + sec - offset_minutes * 60;
    Ok(secs * 1000 + millis)
}

fn split3(t: &[u8], sep: u8) -> Option<[&[u8]; 3]> {
    let mut it = t.split(|&b| b == sep);
    let a = it.next()?;
    let b = it.next()?;
    let c = it.next()?;
    if it.next().is_some() || a.is_empty() || b.is_empty() || c.is_empty() {
        return None;
    }
    if a.len() > 4 || b.len() > 2 || c.len() > 4 {
        return None;
    }
    Some([a, b, c])
}

fn num(d: &[u8]) -> Option<u32> {
    if d.is_empty() || d.len() > 4 {
        return None;
    }
    let mut v = 0u32;
    for &c in d {
        if !c.is_ascii_digit() {
            return None;
        }
        v = v * 10 + u32::from(c - b'0');
    }
    Some(v)
}

pub(crate) fn is_leap(y: i32) -> bool {
    (y % 4 == 0 && y % 100 != 0) || y % 400 == 0
}

pub(crate) fn days_in_month(y: i32, m: u32) -> u32 {
    match m {
        1 | 3 | 5 | 7 | 8 | 10 | 12 => 31,
        4 | 6 | 9 | 11 => 30,
        2 if is_leap(y) => 29,
        _ => 28,
    }
}

pub(crate) const fn days_from_civil(y: i32, m: u32, d: u32) -> i32 {
    let y = if m <= 2 { y - 1 } else { y };
    let era = if y >= 0 { y } else { y - 399 } / 400;
    let yoe = (y - era * 400) as u32;
    let mp = (m + 9) % 12;
    let doy = (153 * mp + 2) / 5 + d - 1;
    let doe = yoe * 365 + yoe / 4 - yoe / 100 + doy;
    era * 146_097 + doe as i32 - 719_468
}

fn civil_from_days(z: i32) -> (i32, u32, u32) {
    let z = z + 719_468;
    let era = if z >= 0 { z } else { z - 146_096 } / 146_097;
    let doe = (z - era * 146_097) as u32;
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let y = yoe as i32 + era * 400;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let d = doy - (153 * mp + 2) / 5 + 1;
    let m = if mp < 10 { mp + 3 } else { mp - 9 };
    (if m <= 2 { y + 1 } else { y }, m, d)
}

/// `YYYY-MM-DD` of a year, month and day (the year's last four digits).
fn iso_text(y: i32, m: u32, d: u32) -> [u8; 10] {
    let y = y.unsigned_abs();
    let digit = |v: u32| b'0' + (v % 10) as u8;
    [
        digit(y / 1000),
        digit(y / 100),
        digit(y / 10),
        digit(y),
        b'-',
        digit(m / 10),
        digit(m),
        b'-',
        digit(d / 10),
        digit(d),
    ]
}

impl fmt::Display for Day {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let (y, m, d) = self.ymd();
        if (0..=9999).contains(&y) {
            // By hand ([`iso_text`]): the API renders a date per day of a year per request,
            // and three padded `write!` arguments were most of the cost.
            let text = iso_text(y, m, d);
            return f.write_str(std::str::from_utf8(&text).unwrap_or_default());
        }
        write!(f, "{y:04}-{m:02}-{d:02}")
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    proptest! {
        #[test]
        fn iso_bytes_read_back(days in -25_567i32..376_000) {
            if let Some(day) = Day::from_days(days) {
                let text = day.iso_bytes();
                let shown = day.to_string();
                prop_assert_eq!(&text[..], shown.as_bytes());
                prop_assert_eq!(Day::parse(&text), Ok(day));
            }
        }
    }

    #[test]
    fn parses_every_layout() {
        let want = Day::from_ymd(2019, 1, 31).unwrap();
        for s in [
            "2019-01-31",
            "31/01/2019",
            "31/1/2019",
            "20190131",
            "31-01-2019",
            " 2019-01-31 ",
        ] {
            assert_eq!(Day::parse(s.as_bytes()).unwrap(), want, "{s}");
        }
        assert_eq!(Day::parse(b"1/01/2019").unwrap().to_string(), "2019-01-01");
        assert_eq!(Day::from_ymd(1970, 1, 1).unwrap().days(), 0);
        // The accepted range is exactly the accepted years, either side of its ends.
        assert_eq!((FIRST_DAY, LAST_DAY), (-25_567, 376_199));
        assert_eq!(Day::from_days(FIRST_DAY).unwrap().ymd(), (MIN_YEAR, 1, 1));
        assert_eq!(Day::from_days(LAST_DAY).unwrap().ymd(), (MAX_YEAR, 12, 31));
        assert_eq!(Day::from_days(FIRST_DAY - 1), None);
        assert_eq!(Day::from_days(LAST_DAY + 1), None);
        assert_eq!(Day::from_ymd(2004, 2, 1).unwrap().month_bucket(), 200_402);
        for (m, q) in [
            (1, 1),
            (3, 1),
            (4, 4),
            (6, 4),
            (7, 7),
            (9, 7),
            (10, 10),
            (12, 10),
        ] {
            let day = Day::from_ymd(2004, m, 15).unwrap();
            assert_eq!(day.quarter_bucket(), 200_400 + q, "month {m}");
        }
    }

    #[test]
    fn refuses_impossible_dates() {
        for s in [
            "2019-02-29",
            "2019-13-01",
            "2019-00-10",
            "32/01/2019",
            "2019/01/01",
            "19-01-01",
            "",
            "tomorrow",
            "2019-1-1x",
            "2019-01-01-01",
        ] {
            assert!(Day::parse(s.as_bytes()).is_err(), "{s}");
        }
        assert!(Day::parse(b"2020-02-29").is_ok());
        assert!(Day::parse_iso("01-01-2019").is_err());
    }

    #[test]
    fn slashed_dates_that_read_both_ways_are_told_apart() {
        for (text, order) in [
            ("1/2/2019", SlashedOrder::Ambiguous),
            ("12/31/2019", SlashedOrder::MonthFirstOnly),
            ("31/12/2019", SlashedOrder::Plain),
            ("3/3/2019", SlashedOrder::Plain),
            ("2019-01-02", SlashedOrder::Plain),
            ("13/13/2019", SlashedOrder::Plain),
        ] {
            assert_eq!(SlashedOrder::of(text.as_bytes()), order, "{text}");
        }
    }

    #[test]
    fn instants_apply_their_offset() {
        let utc = parse_instant_ms("2019-01-31T13:45:00Z").unwrap();
        assert_eq!(utc, 1_548_942_300_000);
        assert_eq!(parse_instant_ms("2019-01-31T23:45:00+10:00"), Ok(utc));
        assert_eq!(
            parse_instant_ms("2019-01-31T08:45:00.250-05:00"),
            Ok(utc + 250)
        );
        assert_eq!(parse_instant_ms("1970-01-01T00:00:00.9999Z"), Ok(999));
        for bad in [
            "2019-01-31T13:45:00",
            "2019-01-31",
            "2019-01-31T25:00:00Z",
            "2019-02-30T00:00:00Z",
            "2019-01-31T13:45Z",
            "2019-01-31T13:45:00+1000",
        ] {
            let e = parse_instant_ms(bad).unwrap_err();
            assert!(e.contains("RFC 3339"), "{bad}: {e}");
        }
    }

    /// An error suggests only forms the place that read the date accepts.
    #[test]
    fn errors_name_the_forms_accepted_where_the_date_was_read() {
        for bad in ["31/01/2019", "20190131", "2019-02-30", "2019-13-01"] {
            let e = Day::parse_iso(bad).unwrap_err().to_string();
            assert!(
                e.ends_with("(accepted: YYYY-MM-DD only, like 2019-01-31)"),
                "{e}"
            );
            assert!(
                !e.contains("31/01/2019 ") && !e.contains("20190131,"),
                "{e}"
            );
        }
        let e = Day::parse(b"2019-02-30").unwrap_err().to_string();
        assert!(e.contains("31/01/2019 or 1/1/2019 day first"), "{e}");
    }

    proptest! {
        #[test]
        fn civil_round_trip(days in -25_000i32..300_000) {
            let (y, m, d) = civil_from_days(days);
            prop_assert_eq!(days_from_civil(y, m, d), days);
            prop_assert!(d >= 1 && d <= days_in_month(y, m));
        }

        #[test]
        fn display_parses_back(days in -25_000i32..300_000) {
            let day = Day(days);
            prop_assert_eq!(Day::parse(day.to_string().as_bytes()).unwrap(), day);
        }
    }
}
