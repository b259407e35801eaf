//! Exact fixed-point amounts.
//!
//! Billing needs exact sums, so a reading is an `i64` count of millionths of the series unit
//! (for kWh: 1 unit = 1 mWh = 0.000001 kWh). Parsing never rounds: a value that needs more
//! decimal places than the target scale is an error, not a silently shortened number.

/// Decimal places of kWh held by one amount unit.
pub const SCALE: u32 = 6;
/// One whole series unit (1 kWh) in amount units.
pub const ONE: i64 = 1_000_000;
/// Largest magnitude a single interval value may have (10^9 kWh). Bounding single values
/// keeps any sum of a day's 288 slots, and of a year of days, far inside `i64`.
pub const MAX_ABS_VALUE: i64 = 1_000_000_000 * ONE;

/// Why a cell is not an exact decimal.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ValueError {
    /// The cell is not a plain decimal number (its text, cut to 40 characters).
    #[error(
        "`{0}` is not a decimal number (expected digits with an optional `.` and sign, like 0.123)"
    )]
    NotDecimal(String),
    /// The value has more decimal places than the target scale holds; meterflow never rounds.
    #[error("`{value}` has more than {places} decimal places; meterflow keeps values exact and never rounds, so convert the file to at most {places} places")]
    TooPrecise {
        /// The cell's text, cut to 40 characters.
        value: String,
        /// Decimal places the target scale allows (6 for kWh, 3 for Wh, 9 for MWh).
        places: u32,
    },
    /// The value's magnitude reaches [`MAX_ABS_VALUE`], 10^9 kWh (its text, cut to 40
    /// characters).
    #[error("`{0}` is out of range: a single interval value must be below 10^9 kWh")]
    OutOfRange(String),
}

fn lossy(field: &[u8]) -> String {
    let s = String::from_utf8_lossy(field);
    if s.len() > 40 {
        format!("{}…", s.chars().take(40).collect::<String>())
    } else {
        s.into_owned()
    }
}

/// Parses a decimal cell into an exact integer with `places` decimal places.
///
/// Returns `Ok(None)` for an empty (or all-blank) cell: a missing interval, not a zero.
/// `places` is 6 for kWh; NEM12 channels in Wh use 3 and in MWh 9, which normalises them to
/// kWh millionths without any arithmetic that could round.
pub fn parse_decimal(field: &[u8], places: u32) -> Result<Option<i64>, ValueError> {
    let s = field.trim_ascii();
    if s.is_empty() {
        return Ok(None);
    }
    let (neg, digits) = match s[0] {
        b'-' => (true, &s[1..]),
        b'+' => (false, &s[1..]),
        _ => (false, s),
    };
    let mut acc: i128 = 0;
    let mut seen_digit = false;
    let mut frac: Option<u32> = None;
    let limit = i128::from(MAX_ABS_VALUE);
    for &b in digits {
        match b {
            b'0'..=b'9' => {
                seen_digit = true;
                let d = i128::from(b - b'0');
                match frac {
                    Some(n) if n >= places => {
                        if d != 0 {
                            return Err(ValueError::TooPrecise {
                                value: lossy(field),
                                places,
                            });
                        }
                        // Trailing zeros beyond the scale change nothing: keep exactness.
                    }
                    Some(n) => {
                        acc = acc * 10 + d;
                        frac = Some(n + 1);
                    }
                    None => {
                        acc = acc * 10 + d;
                    }
                }
                if acc > limit * 1_000_000_000 {
                    return Err(ValueError::OutOfRange(lossy(field)));
                }
            }
            b'.' if frac.is_none() => frac = Some(0),
            _ => return Err(ValueError::NotDecimal(lossy(field))),
        }
    }
    if !seen_digit {
        return Err(ValueError::NotDecimal(lossy(field)));
    }
    let have = frac.unwrap_or(0);
    acc *= 10i128.pow(places - have);
    // Scale to amount units: `places` decimal places of the input unit map onto SCALE places
    // of kWh by the caller's choice of `places`, so `acc` is already in amount units.
    if acc >= limit {
        return Err(ValueError::OutOfRange(lossy(field)));
    }
    let v = acc as i64;
    Ok(Some(if neg { -v } else { v }))
}

/// Fast path for the overwhelmingly common cell shape `digits[.digits]` in kWh (6 places).
///
/// Scans from `pos` up to the next `,` or end of `line`. Returns `(value, end)` where `end` is
/// the index of the delimiter (or `line.len()`), or `None` when the cell needs the general
/// parser (sign, blanks, quotes, too many places, huge numbers, anything unusual). Sharing
/// [`parse_decimal`]'s semantics is checked by a property test.
#[inline(always)]
pub fn scan_plain_kwh(line: &[u8], pos: usize) -> Option<(Option<i64>, usize)> {
    scan_kwh(line, pos, |b| b == b',')
}

/// [`scan_plain_kwh`] for a cell read straight from a buffer of whole lines: the cell may also
/// end at `\n` or `\r` (the end of its line), and `end` is the index of that byte. `csv-core`
/// ends a field at all three, so the cell's text is the same either way; the caller checks
/// that the terminator is the one its position in the row calls for.
#[inline(always)]
pub fn scan_kwh_cell(buf: &[u8], pos: usize) -> Option<(Option<i64>, usize)> {
    scan_kwh(buf, pos, |b| matches!(b, b',' | b'\n' | b'\r'))
}

#[inline(always)]
fn scan_kwh(line: &[u8], pos: usize, is_end: impl Fn(u8) -> bool) -> Option<(Option<i64>, usize)> {
    let n = line.len();
    // The shapes of nearly every interval value, checked without a loop: `d.ddd` and
    // `dd.ddd` (kWh to the Wh), and small integers.
    if let Some(c) = line.get(pos..pos + 5) {
        let d = |b: u8| u64::from(b.wrapping_sub(b'0'));
        let ends_at = |end: usize| end == n || is_end(line[end]);
        if c[1] == b'.' {
            let (a, b, x, y) = (d(c[0]), d(c[2]), d(c[3]), d(c[4]));
            if (a < 10) & (b < 10) & (x < 10) & (y < 10) && ends_at(pos + 5) {
                return Some((
                    Some((a * 1_000_000 + b * 100_000 + x * 10_000 + y * 1000) as i64),
                    pos + 5,
                ));
            }
        } else if c[2] == b'.' && pos + 6 <= n {
            let (a, a2, b, x, y) = (d(c[0]), d(c[1]), d(c[3]), d(c[4]), d(line[pos + 5]));
            if (a < 10) & (a2 < 10) & (b < 10) & (x < 10) & (y < 10) && ends_at(pos + 6) {
                let v = (a * 10 + a2) * 1_000_000 + b * 100_000 + x * 10_000 + y * 1000;
                return Some((Some(v as i64), pos + 6));
            }
        } else if is_end(c[1]) {
            let a = d(c[0]);
            if a < 10 {
                return Some((Some(a as i64 * ONE), pos + 1));
            }
        }
    }
    let (int, i) = digits(line, pos);
    let int_digits = i - pos;
    if int_digits > 9 {
        return None;
    }
    if i == n || is_end(line[i]) {
        if int_digits == 0 {
            return Some((None, i));
        }
        return Some((Some(int as i64 * ONE), i));
    }
    if line[i] != b'.' {
        return None;
    }
    let fstart = i + 1;
    let (frac, i) = digits(line, fstart);
    let places = i - fstart;
    if places > SCALE as usize || (int_digits == 0 && places == 0) {
        return None;
    }
    if i != n && !is_end(line[i]) {
        return None;
    }
    const POW: [u64; 7] = [1_000_000, 100_000, 10_000, 1_000, 100, 10, 1];
    Some((Some((int * ONE as u64 + frac * POW[places]) as i64), i))
}

/// The run of decimal digits at `line[i..]`: its value and the index after it. The value
/// wraps past 19 digits instead of overflowing: callers refuse runs that long (more than 9
/// integer digits, more than [`SCALE`] decimals) before using it.
#[inline(always)]
fn digits(line: &[u8], mut i: usize) -> (u64, usize) {
    let mut v: u64 = 0;
    while let Some(&b) = line.get(i) {
        let d = b.wrapping_sub(b'0');
        if d > 9 {
            break;
        }
        v = v.wrapping_mul(10).wrapping_add(u64::from(d));
        i += 1;
    }
    (v, i)
}

/// Parses a cell of the exact shape `d.ddd,` from the first 6 of 8 little-endian bytes, in a
/// handful of register operations: the commonest cell of half-hourly kWh files. `None` for
/// anything else (which then takes [`scan_plain_kwh`]).
#[inline(always)]
pub fn swar_d_ddd_comma(x: u64) -> Option<i64> {
    swar_d_ddd_then(x, b',')
}

/// [`swar_d_ddd_comma`] with any terminator byte at byte 5: the last cell of a row read
/// straight from a buffer ends at `\n` (or `\r`).
#[inline(always)]
pub fn swar_d_ddd_then(x: u64, end: u8) -> Option<i64> {
    const SEP_MASK: u64 = 0x0000_FF00_0000_FF00;
    let seps: u64 = 0x0000_0000_0000_2E00 | (u64::from(end) << 40); // '.' at byte 1, `end` at byte 5
    const DIGITS: u64 = 0x0000_00FF_FFFF_00FF; // bytes 0, 2, 3, 4
    const ZEROS: u64 = 0x0000_0030_3030_0030;
    const HIGH: u64 = 0x0000_0080_8080_0080;
    if x & SEP_MASK != seps {
        return None;
    }
    let t = x & DIGITS;
    let d = t.wrapping_sub(ZEROS);
    // A byte above '9' sets its high bit when 0x46 is added; one below '0' borrows, which sets
    // the high bit of its difference. Only the lowest bad byte needs to be seen.
    if (t.wrapping_add(0x0000_0046_4646_0046) | d) & HIGH != 0 {
        return None;
    }
    let (d0, d2, d3, d4) = (
        d & 0xFF,
        (d >> 16) & 0xFF,
        (d >> 24) & 0xFF,
        (d >> 32) & 0xFF,
    );
    Some(((d0 * 1000 + d2 * 100 + d3 * 10 + d4) * 1000) as i64)
}

/// Renders an amount as an exact decimal in the series unit: `53328000` → `53.328`.
///
/// Trailing zeros are trimmed and whole numbers have no point, so the text is also a valid,
/// exact JSON number (never `53.327999`).
pub fn format_amount(v: i64) -> String {
    let mut out = String::with_capacity(24);
    write_amount(&mut out, v);
    out
}

/// [`format_amount`] into an existing buffer (used when streaming JSON or CSV).
///
/// Digits are written by hand, not through `fmt`: the API renders a total per day of a year
/// per request, and `write!` was most of the cost of rendering one.
pub fn write_amount(out: &mut String, v: i64) {
    let abs = v.unsigned_abs();
    let (mut int, mut frac) = (abs / ONE as u64, abs % ONE as u64);
    // 20 digits of the integer part at most, a point and 6 decimals.
    let mut buf = [0u8; 28];
    let mut at = buf.len();
    if frac != 0 {
        let mut width = SCALE as usize;
        while frac % 10 == 0 {
            frac /= 10;
            width -= 1;
        }
        for _ in 0..width {
            at -= 1;
            buf[at] = b'0' + (frac % 10) as u8;
            frac /= 10;
        }
        at -= 1;
        buf[at] = b'.';
    }
    loop {
        at -= 1;
        buf[at] = b'0' + (int % 10) as u8;
        int /= 10;
        if int == 0 {
            break;
        }
    }
    if v < 0 {
        out.push('-');
    }
    // Only ASCII digits and a point were written.
    out.push_str(std::str::from_utf8(&buf[at..]).unwrap_or_default());
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    #[test]
    fn parses_table() {
        let cases: &[(&str, Option<i64>)] = &[
            ("", None),
            ("  ", None),
            ("0", Some(0)),
            ("9", Some(9_000_000)),
            ("0.123", Some(123_000)),
            ("1.111", Some(1_111_000)),
            (".5", Some(500_000)),
            ("5.", Some(5_000_000)),
            ("-0.5", Some(-500_000)),
            ("+2", Some(2_000_000)),
            (" 3.25 ", Some(3_250_000)),
            ("0.000001", Some(1)),
            ("1.1234560000", Some(1_123_456)),
        ];
        for (s, want) in cases {
            assert_eq!(parse_decimal(s.as_bytes(), 6).unwrap(), *want, "{s:?}");
        }
    }

    #[test]
    fn rejects_table() {
        assert!(matches!(
            parse_decimal(b"0.0000001", 6),
            Err(ValueError::TooPrecise { .. })
        ));
        for bad in ["abc", "1.2.3", "1e3", "-", ".", "1,5", "0x10", "NaN"] {
            assert!(
                matches!(
                    parse_decimal(bad.as_bytes(), 6),
                    Err(ValueError::NotDecimal(_))
                ),
                "{bad}"
            );
        }
        assert!(matches!(
            parse_decimal(b"1000000000", 6),
            Err(ValueError::OutOfRange(_))
        ));
        assert!(matches!(
            parse_decimal(b"99999999999999999999999999999999", 6),
            Err(ValueError::OutOfRange(_))
        ));
    }

    /// Runs of digits longer than any value are declined by the fast scanner (which then
    /// leaves them to `parse_decimal`'s refusal); they once overflowed it.
    #[test]
    fn very_long_digit_runs_are_declined_not_overflowed() {
        for cell in [
            "123456789012345678901234567890",
            "0.123456789012345678901234567890",
            "1234567890.5",
        ] {
            let line = format!("{cell},");
            assert_eq!(scan_plain_kwh(line.as_bytes(), 0), None, "{cell}");
            assert!(parse_decimal(cell.as_bytes(), 6).is_err(), "{cell}");
        }
    }

    #[test]
    fn other_scales_normalise_to_kwh() {
        // 1500 Wh = 1.5 kWh; 0.0015 MWh = 1.5 kWh.
        assert_eq!(parse_decimal(b"1500", 3).unwrap(), Some(1_500_000));
        assert_eq!(parse_decimal(b"0.0015", 9).unwrap(), Some(1_500_000));
        assert!(parse_decimal(b"0.0001", 3).is_err());
    }

    #[test]
    fn formats_exactly() {
        assert_eq!(format_amount(53_328_000), "53.328");
        assert_eq!(format_amount(365_000_000), "365");
        assert_eq!(format_amount(1), "0.000001");
        assert_eq!(format_amount(-500_000), "-0.5");
        assert_eq!(format_amount(0), "0");
        assert_eq!(format_amount(i64::MIN), "-9223372036854.775808");
        assert_eq!(format_amount(i64::MAX), "9223372036854.775807");
        assert_eq!(format_amount(-1_000_000), "-1");
        assert_eq!(format_amount(10_000_050), "10.00005");
    }

    proptest! {
        #[test]
        fn format_then_parse_round_trips(v in -MAX_ABS_VALUE + 1..MAX_ABS_VALUE) {
            prop_assert_eq!(parse_decimal(format_amount(v).as_bytes(), 6).unwrap(), Some(v));
        }

        /// The hand-written digits say what `fmt` says: the integer part, then the decimals
        /// without trailing zeros.
        #[test]
        fn format_agrees_with_fmt(v in any::<i64>()) {
            let (int, frac) = (v.unsigned_abs() / ONE as u64, v.unsigned_abs() % ONE as u64);
            let sign = if v < 0 { "-" } else { "" };
            let decimals = format!("{frac:06}");
            let decimals = decimals.trim_end_matches('0');
            let want = match decimals {
                "" => format!("{sign}{int}"),
                d => format!("{sign}{int}.{d}"),
            };
            prop_assert_eq!(format_amount(v), want);
        }

        #[test]
        fn fast_path_agrees_with_general_parser(cell in "[0-9]{0,11}(\\.[0-9]{0,8})?|[-+ a-z.]{0,3}") {
            let line = format!("{cell},tail");
            if let Some((v, end)) = scan_plain_kwh(line.as_bytes(), 0) {
                prop_assert_eq!(end, cell.len());
                prop_assert_eq!(Ok(v), parse_decimal(cell.as_bytes(), 6));
            }
        }

        #[test]
        fn swar_agrees_with_general_parser(bytes in proptest::array::uniform8(prop_oneof![
            4 => b'0'..=b'9', 1 => Just(b'.'), 1 => Just(b','), 1 => any::<u8>()
        ])) {
            if let Some(v) = swar_d_ddd_comma(u64::from_le_bytes(bytes)) {
                prop_assert_eq!(bytes[5], b',');
                prop_assert_eq!(parse_decimal(&bytes[..5], 6), Ok(Some(v)));
            } else {
                let shaped = bytes[1] == b'.' && bytes[5] == b',' && [0, 2, 3, 4].iter().all(|&i| bytes[i].is_ascii_digit());
                prop_assert!(!shaped, "declined a d.ddd cell: {:?}", bytes);
            }
        }

        #[test]
        fn cell_scan_agrees_with_general_parser(cell in "[0-9]{0,11}(\\.[0-9]{0,8})?|[-+ a-z.\r]{0,3}", end in prop_oneof![Just(","), Just("\n"), Just("\r\n"), Just("")]) {
            let buf = format!("{cell}{end}");
            if let Some((v, stop)) = scan_kwh_cell(buf.as_bytes(), 0) {
                prop_assert!(stop == buf.len() || matches!(buf.as_bytes()[stop], b',' | b'\n' | b'\r'));
                prop_assert_eq!(Ok(v), parse_decimal(&buf.as_bytes()[..stop], 6));
                if !cell.contains('\r') {
                    prop_assert_eq!(stop, cell.len());
                }
            }
        }

        #[test]
        fn swar_with_any_terminator_agrees(bytes in proptest::array::uniform8(prop_oneof![
            4 => b'0'..=b'9', 1 => Just(b'.'), 1 => Just(b'\n'), 1 => any::<u8>()
        ])) {
            if let Some(v) = swar_d_ddd_then(u64::from_le_bytes(bytes), b'\n') {
                prop_assert_eq!(bytes[5], b'\n');
                prop_assert_eq!(parse_decimal(&bytes[..5], 6), Ok(Some(v)));
            } else {
                let shaped = bytes[1] == b'.' && bytes[5] == b'\n' && [0, 2, 3, 4].iter().all(|&i| bytes[i].is_ascii_digit());
                prop_assert!(!shaped, "declined a d.ddd cell: {:?}", bytes);
            }
        }

        #[test]
        fn fast_path_takes_plain_cells(int in 0u64..1_000_000, frac in proptest::option::of("[0-9]{1,6}")) {
            let cell = match &frac { Some(f) => format!("{int}.{f}"), None => int.to_string() };
            let got = scan_plain_kwh(cell.as_bytes(), 0);
            prop_assert_eq!(got, Some((parse_decimal(cell.as_bytes(), 6).unwrap(), cell.len())));
        }
    }
}
