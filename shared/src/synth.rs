//! Deterministic synthetic meter data, for benchmarks, tests and `meterflow generate`.
//!
//! A [`Spec`] names a fleet of meters, a run of days and a seed. Every interval value is a pure
//! function of `(seed, meter, day, slot)`, generated directly as an exact integer amount (no
//! floating point anywhere), so:
//!
//! - the same spec always writes the same bytes, in every format;
//! - [`Spec::for_each_total`] (the oracle) gives the exact daily totals from the same integers,
//!   without parsing anything back;
//! - any `(meter, day)` can be generated on its own, in any order.
//!
//! Values follow smooth household load curves (a low night base, a morning and an evening peak,
//! some daytime use, weekday/weekend and seasonal variation, noise and the odd kettle spike):
//! at 30-minute intervals mostly 0.05–2.0 kWh, always with exactly three decimals. A share of
//! meters can read whole kWh only (`9,8,8,10`), like the original project's sample files.
//!
//! Writers produce the three input formats ([`Format::Wide`], [`Format::Long`],
//! [`Format::Nem12`]) to any [`std::io::Write`].

use std::io::{self, Write};

use crate::day::Day;
use crate::format::{Format, Options, TimestampLabel};
use crate::fragment::{slots_per_day, Version};
use crate::value::{write_amount, ONE};

/// A small, fast, seedable PRNG (SplitMix64, Steele, Lea and Flood 2014): deterministic across
/// platforms and releases, which is all synthetic data needs.
#[derive(Debug, Clone)]
pub struct SplitMix64 {
    state: u64,
}

impl SplitMix64 {
    /// A generator started from `seed`: equal seeds give equal streams.
    pub fn new(seed: u64) -> SplitMix64 {
        SplitMix64 { state: seed }
    }

    /// The next 64 uniformly distributed bits.
    pub fn next_u64(&mut self) -> u64 {
        self.state = self.state.wrapping_add(0x9E37_79B9_7F4A_7C15);
        let mut z = self.state;
        z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
        z ^ (z >> 31)
    }

    /// Uniform in `0..n` (`n > 0`), by multiply-shift; the bias is below 2^-32 for the small
    /// ranges used here.
    pub fn below(&mut self, n: u64) -> u64 {
        ((u128::from(self.next_u64()) * u128::from(n)) >> 64) as u64
    }

    /// Uniform in `lo..=hi`.
    pub fn range(&mut self, lo: i64, hi: i64) -> i64 {
        debug_assert!(lo <= hi);
        lo + self.below((hi - lo) as u64 + 1) as i64
    }

    /// True with probability `per_mille / 1000`.
    pub fn chance(&mut self, per_mille: u64) -> bool {
        self.below(1000) < per_mille
    }
}

/// Independent stream for a `(seed, a, b)` triple.
fn stream(seed: u64, a: u64, b: u64) -> SplitMix64 {
    let mut s = SplitMix64::new(
        seed ^ a.wrapping_mul(0xD6E8_FEB8_6659_FD93) ^ b.wrapping_mul(0xA076_1D64_78BD_642F),
    );
    // Decorrelate neighbouring keys before use.
    let _ = s.next_u64();
    SplitMix64::new(s.next_u64())
}

/// What to generate.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Spec {
    /// Number of meters (NEM12: NMIs, one `E1` channel each). At most [`MAX_METERS`].
    pub meters: u32,
    /// Number of consecutive days per meter.
    pub days: u32,
    /// First day.
    pub start: Day,
    /// Seeds every value: the same spec always gives the same data.
    pub seed: u64,
    /// Interval length in minutes: one of 5, 10, 15, 30, 60 (wide files: not 10, which has no
    /// wide layout).
    pub interval_minutes: u16,
    /// Share of meters, in percent (0–100), that read whole kWh only.
    pub integer_meters_percent: u8,
}

/// Most meters a spec may name: NMIs are ten characters, `NMI` and seven digits.
pub const MAX_METERS: u32 = 9_999_999;

/// Why a spec cannot be written in a format.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum SpecError {
    /// The meter count is 0 or above [`MAX_METERS`].
    #[error("{0} meters: at least 1 and at most {MAX_METERS}")]
    Meters(u32),
    /// The day count is 0.
    #[error("{0} days: at least 1")]
    Days(u32),
    /// The last day, or the day after it that long files' last timestamp names, would be after
    /// [`MAX_YEAR`](crate::day::MAX_YEAR).
    #[error("the last day would be after the year {}", crate::day::MAX_YEAR)]
    End,
    /// The interval length cannot be written in the chosen format.
    #[error("{minutes}-minute intervals cannot be written as {format} (choose {allowed})")]
    Interval {
        /// The spec's interval length, in minutes.
        minutes: u16,
        /// The format's name ([`Format::name`]).
        format: &'static str,
        /// The interval lengths that format can take, for the message.
        allowed: &'static str,
    },
    /// [`Spec::integer_meters_percent`] is above 100.
    #[error("integer meter share {0}% is above 100%")]
    IntegerShare(u8),
}

impl From<SpecError> for io::Error {
    fn from(e: SpecError) -> io::Error {
        io::Error::new(io::ErrorKind::InvalidInput, e)
    }
}

/// One expected daily total, as the oracle reports it.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct ExpectedTotal {
    /// The series id a parser gives the meter in the written format ([`Spec::series_id`]).
    pub series: String,
    /// The day totalled.
    pub day: Day,
    /// Amount units (millionths of a kWh).
    pub total: i64,
}

/// A meter's load curve: parabolic-squared bumps over a base load, per 30 minutes.
#[derive(Debug, Clone)]
struct Household {
    /// `Some(k)`: a whole-kWh meter whose readings are `k` times the household curve.
    integer_scale: Option<i64>,
    base: i64,
    morning: Bump,
    midday: Bump,
    evening: Bump,
    /// Multiplicative noise bound, per mille.
    noise: i64,
}

#[derive(Debug, Clone, Copy)]
struct Bump {
    /// Minutes after midnight.
    center: i64,
    half_width: i64,
    /// Height at the centre, amount units per 30 minutes.
    amp: i64,
}

impl Bump {
    /// A smooth bump (`amp * (1 - d²/w²)²`), zero outside `center ± half_width`.
    fn at(self, t: i64) -> i64 {
        let d = t - self.center;
        let w2 = self.half_width * self.half_width;
        if d * d >= w2 {
            return 0;
        }
        let q = w2 - d * d;
        self.amp * q / w2 * q / w2
    }

    fn shifted(self, minutes: i64, amp_per_mille: i64) -> Bump {
        Bump {
            center: self.center + minutes,
            half_width: self.half_width,
            amp: self.amp * amp_per_mille / 1000,
        }
    }
}

impl Spec {
    /// `meters` meters for `days` days from 2019-01-01, seed 1, 30-minute intervals, all meters
    /// reading three decimals.
    pub fn new(meters: u32, days: u32) -> Spec {
        Spec {
            meters,
            days,
            start: Day::from_ymd(2019, 1, 1).expect("valid date"),
            seed: 1,
            interval_minutes: 30,
            integer_meters_percent: 0,
        }
    }

    /// Checks that the spec can be written as `format`.
    pub fn check(&self, format: Format) -> Result<(), SpecError> {
        if self.meters == 0 || self.meters > MAX_METERS {
            return Err(SpecError::Meters(self.meters));
        }
        if self.days == 0 {
            return Err(SpecError::Days(self.days));
        }
        // One day more: long files label the last interval with the next day's midnight.
        if Day::from_days(self.start.days().saturating_add(self.days as i32)).is_none() {
            return Err(SpecError::End);
        }
        if self.integer_meters_percent > 100 {
            return Err(SpecError::IntegerShare(self.integer_meters_percent));
        }
        let (ok, allowed) = match format {
            Format::Wide => (
                [5, 15, 30, 60].contains(&self.interval_minutes),
                "5, 15, 30 or 60",
            ),
            Format::Long | Format::Nem12 => (
                slots_per_day(self.interval_minutes).is_some(),
                "5, 10, 15, 30 or 60",
            ),
        };
        if !ok {
            return Err(SpecError::Interval {
                minutes: self.interval_minutes,
                format: format.name(),
                allowed,
            });
        }
        Ok(())
    }

    /// Interval values per day.
    pub fn slots(&self) -> usize {
        1440 / usize::from(self.interval_minutes.max(1))
    }

    /// The `i`-th day (0-based) of the run.
    pub fn day(&self, i: u32) -> Day {
        Day::from_days(self.start.days() + i as i32).expect("checked by Spec::check")
    }

    /// Meter id in CSV formats: `EE000001` for meter 0 (at least six digits).
    pub fn meter_id(&self, meter: u32) -> String {
        format!("EE{:06}", meter + 1)
    }

    /// NMI of meter `meter`: `NMI0000001` for meter 0 (always ten characters).
    pub fn nmi(&self, meter: u32) -> String {
        format!("NMI{:07}", meter + 1)
    }

    /// The series id a parser gives meter `meter`'s data in `format`.
    pub fn series_id(&self, format: Format, meter: u32) -> String {
        match format {
            Format::Wide | Format::Long => self.meter_id(meter),
            Format::Nem12 => format!("{}-E1", self.nmi(meter)),
        }
    }

    /// Parser options that match what the writers produce (`source` names the input).
    pub fn options(&self, source: &str) -> Options {
        let mut o = Options::new(source, 0);
        o.timestamps = TimestampLabel::End;
        o.long_interval_minutes = self.interval_minutes;
        o
    }

    /// NEM12 UpdateDateTime of a day's 300 record, as epoch milliseconds: the writer prints
    /// the next day at 03:00 plus a per-meter minute, in NEM market time (AEST, UTC+10).
    pub fn nem12_version(&self, meter: u32, day_index: u32) -> Version {
        let next = i64::from(self.day(day_index).days() + 1);
        (next * 86_400 + 3 * 3600 + i64::from(meter % 60) * 60 - 10 * 3600) * 1000
    }

    fn household(&self, meter: u32) -> Household {
        let mut r = stream(self.seed, u64::from(meter), u64::MAX);
        let integer = r.below(100) < u64::from(self.integer_meters_percent);
        Household {
            integer_scale: integer.then(|| r.range(15, 50)),
            base: r.range(50_000, 200_000),
            morning: Bump {
                center: r.range(6 * 60, 8 * 60 + 30),
                half_width: r.range(60, 120),
                amp: r.range(150_000, 700_000),
            },
            midday: Bump {
                center: r.range(11 * 60, 14 * 60),
                half_width: r.range(120, 240),
                amp: r.range(0, 200_000),
            },
            evening: Bump {
                center: r.range(17 * 60 + 30, 20 * 60),
                half_width: r.range(90, 180),
                amp: r.range(300_000, 1_100_000),
            },
            noise: r.range(40, 150),
        }
    }

    /// Fills `out` with meter `meter`'s interval values on day `day_index` (0-based), in
    /// amount units (multiples of 1000, i.e. three decimals of kWh).
    pub fn day_values(&self, meter: u32, day_index: u32, out: &mut Vec<i64>) {
        let h = self.household(meter);
        self.day_values_of(&h, meter, day_index, out);
    }

    fn day_values_of(&self, h: &Household, meter: u32, day_index: u32, out: &mut Vec<i64>) {
        let day = self.day(day_index);
        let mut r = stream(self.seed, u64::from(meter), u64::from(day_index));
        let (_, month, dom) = day.ymd();
        // Day of year, roughly: winter (around New Year) uses more than midsummer.
        let doy = i64::from((month - 1) * 30 + dom);
        let season = 850 + 350 * (doy - 183).abs() / 183;
        // 1970-01-01 was a Thursday; 0 = Monday.
        let weekday = (day.days() + 3).rem_euclid(7);
        let weekend = weekday >= 5;
        let (morning, midday) = if weekend {
            (h.morning.shifted(60, 800), h.midday.shifted(0, 2500))
        } else {
            (h.morning, h.midday)
        };
        let day_factor = r.range(900, 1100);
        let step = i64::from(self.interval_minutes);
        let spike_per_mille = (25 * step / 30).max(1) as u64;
        out.clear();
        for k in 0..self.slots() as i64 {
            let t = k * step + step / 2;
            let mut v = h.base + morning.at(t) + midday.at(t) + h.evening.at(t);
            v = v * season / 1000 * day_factor / 1000;
            v = v * (1000 + r.range(-h.noise, h.noise)) / 1000;
            if r.chance(spike_per_mille) {
                v += r.range(200_000, 1_000_000);
            }
            // Per 30 minutes so far: scale to the interval length.
            v = v * step / 30;
            let v = match h.integer_scale {
                Some(s) => (v * s + ONE / 2) / ONE * ONE,
                None => (v + 500) / 1000 * 1000,
            };
            out.push(v.max(0));
        }
    }

    /// Calls `f(series, day, total)` for every generated series-day, in writing order, with
    /// the exact total in amount units. Series ids are those a parser gives `format`.
    pub fn for_each_total(&self, format: Format, mut f: impl FnMut(&str, Day, i64)) {
        let mut values = Vec::with_capacity(self.slots());
        for m in 0..self.meters {
            let h = self.household(m);
            let series = self.series_id(format, m);
            for d in 0..self.days {
                self.day_values_of(&h, m, d, &mut values);
                f(&series, self.day(d), values.iter().sum());
            }
        }
    }

    /// The oracle as a list: every series-day's exact total, in writing order.
    pub fn totals(&self, format: Format) -> Vec<ExpectedTotal> {
        let mut out = Vec::with_capacity(self.meters as usize * self.days as usize);
        self.for_each_total(format, |series, day, total| {
            out.push(ExpectedTotal {
                series: series.to_string(),
                day,
                total,
            })
        });
        out
    }

    /// Writes the data as `format`; returns the number of bytes written.
    pub fn write<W: Write>(&self, format: Format, w: W) -> io::Result<u64> {
        self.check(format)?;
        let mut out = Out::new(w);
        match format {
            Format::Wide => self.write_wide(&mut out)?,
            Format::Long => self.write_long(&mut out)?,
            Format::Nem12 => self.write_nem12(&mut out)?,
        }
        out.finish()
    }

    /// The data as `format`, in memory.
    pub fn generate(&self, format: Format) -> Result<Vec<u8>, SpecError> {
        self.check(format)?;
        let mut buf = Vec::new();
        self.write(format, &mut buf)
            .expect("writing to a Vec cannot fail once the spec is checked");
        Ok(buf)
    }

    /// `Meter,Date,0:00,0:30,...,23:30` (interval-start labels), one row per meter-day,
    /// meters in order and each meter's days in order.
    fn write_wide<W: Write>(&self, out: &mut Out<W>) -> io::Result<()> {
        let step = usize::from(self.interval_minutes);
        out.buf.push_str("Meter,Date");
        for k in 0..self.slots() {
            let m = k * step;
            out.buf.push_str(&format!(",{}:{:02}", m / 60, m % 60));
        }
        out.buf.push('\n');
        let dates: Vec<String> = (0..self.days).map(|d| self.day(d).to_string()).collect();
        let mut values = Vec::with_capacity(self.slots());
        for m in 0..self.meters {
            let h = self.household(m);
            let id = self.meter_id(m);
            for (d, date) in dates.iter().enumerate() {
                self.day_values_of(&h, m, d as u32, &mut values);
                out.buf.push_str(&id);
                out.buf.push(',');
                out.buf.push_str(date);
                for &v in &values {
                    out.buf.push(',');
                    push_value(&mut out.buf, v, h.integer_scale.is_some());
                }
                out.buf.push('\n');
                out.flush_if_full()?;
            }
        }
        Ok(())
    }

    /// `meter,timestamp,kwh`, one reading per row, timestamps labelling the interval end:
    /// `2019-01-01T00:30:00` is the first half hour of the day, `2019-01-02T00:00:00` its last.
    fn write_long<W: Write>(&self, out: &mut Out<W>) -> io::Result<()> {
        out.buf.push_str("meter,timestamp,kwh\n");
        let step = usize::from(self.interval_minutes);
        let times: Vec<String> = (1..=self.slots())
            .map(|k| {
                let m = (k * step) % 1440;
                format!("T{:02}:{:02}:00,", m / 60, m % 60)
            })
            .collect();
        let dates: Vec<String> = (0..=self.days).map(|d| self.day(d).to_string()).collect();
        let mut values = Vec::with_capacity(self.slots());
        for m in 0..self.meters {
            let h = self.household(m);
            let id = self.meter_id(m);
            for d in 0..self.days as usize {
                self.day_values_of(&h, m, d as u32, &mut values);
                let last = values.len() - 1;
                for (k, &v) in values.iter().enumerate() {
                    out.buf.push_str(&id);
                    out.buf.push(',');
                    out.buf.push_str(&dates[if k == last { d + 1 } else { d }]);
                    out.buf.push_str(&times[k]);
                    push_value(&mut out.buf, v, h.integer_scale.is_some());
                    out.buf.push('\n');
                }
                out.flush_if_full()?;
            }
        }
        Ok(())
    }

    /// NEM12: a 100 header, per NMI one 200 record (suffix E1, kWh) and one 300 record per day
    /// (quality `A`, UpdateDateTime per [`Spec::nem12_version`]), and a 900 end record.
    fn write_nem12<W: Write>(&self, out: &mut Out<W>) -> io::Result<()> {
        let compact = |day: Day| day.to_string().replace('-', "");
        let created = compact(self.day(self.days));
        out.buf
            .push_str(&format!("100,NEM12,{created}0400,SYNTHMDP,SYNTHRET\n"));
        let mut values = Vec::with_capacity(self.slots());
        for m in 0..self.meters {
            let h = self.household(m);
            let nmi = self.nmi(m);
            out.buf.push_str(&format!(
                "200,{nmi},E1,1,E1,N1,METSER{:07},kWh,{},\n",
                m + 1,
                self.interval_minutes
            ));
            for d in 0..self.days {
                self.day_values_of(&h, m, d, &mut values);
                out.buf.push_str("300,");
                out.buf.push_str(&compact(self.day(d)));
                for &v in &values {
                    out.buf.push(',');
                    push_value(&mut out.buf, v, h.integer_scale.is_some());
                }
                out.buf.push_str(&format!(
                    ",A,,,{}03{:02}00,\n",
                    compact(self.day(d + 1)),
                    m % 60
                ));
                out.flush_if_full()?;
            }
        }
        out.buf.push_str("900\n");
        Ok(())
    }
}

/// Prints an amount with `write_amount`, padded to exactly three decimals unless the meter
/// reads whole kWh (`0.12` → `0.120`, `1` → `1.000`; whole: `9`).
fn push_value(buf: &mut String, v: i64, whole: bool) {
    let start = buf.len();
    write_amount(buf, v);
    if whole {
        return;
    }
    let places = match buf[start..].find('.') {
        Some(p) => buf.len() - start - p - 1,
        None => {
            buf.push('.');
            0
        }
    };
    for _ in places..3 {
        buf.push('0');
    }
}

/// Batches rows into large writes (unbuffered writers see 64 KiB at a time).
struct Out<W: Write> {
    w: W,
    buf: String,
    written: u64,
}

const OUT_BATCH: usize = 64 * 1024;

impl<W: Write> Out<W> {
    fn new(w: W) -> Out<W> {
        Out {
            w,
            buf: String::with_capacity(OUT_BATCH + 8 * 1024),
            written: 0,
        }
    }

    fn flush_if_full(&mut self) -> io::Result<()> {
        if self.buf.len() >= OUT_BATCH {
            self.w.write_all(self.buf.as_bytes())?;
            self.written += self.buf.len() as u64;
            self.buf.clear();
        }
        Ok(())
    }

    fn finish(mut self) -> io::Result<u64> {
        self.w.write_all(self.buf.as_bytes())?;
        self.written += self.buf.len() as u64;
        self.w.flush()?;
        Ok(self.written)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::format::parse_all;
    use crate::merge::daily_totals;
    use crate::reject::Collect;

    fn small() -> Spec {
        Spec {
            integer_meters_percent: 20,
            ..Spec::new(12, 9)
        }
    }

    /// Parses `spec` written as `format` and checks every fragment against the oracle.
    fn parse_matches_oracle(spec: &Spec, format: Format) {
        let bytes = spec.generate(format).unwrap();
        let mut sink = Collect::default();
        let stats = parse_all(&bytes, spec.options("synth"), &mut sink).unwrap();
        assert!(sink.rejects.is_empty(), "{:?}", &sink.rejects[..1]);
        // Through the real merge rule, as a reader of the store would see the days.
        let merged = daily_totals(&sink.fragments);
        let got: Vec<ExpectedTotal> = merged
            .iter()
            .map(|t| ExpectedTotal {
                series: t.series.to_string(),
                day: t.day,
                total: t.total,
            })
            .collect();
        let mut want = spec.totals(format);
        want.sort();
        assert_eq!(got.len(), want.len());
        assert_eq!(got, want);
        for t in &merged {
            assert!(t.complete(), "{} {} is partial", t.series, t.day);
            assert_eq!(t.interval_minutes, spec.interval_minutes);
        }
        if format == Format::Nem12 {
            // Versions are the 300 records' UpdateDateTime, as the oracle says.
            for f in &sink.fragments {
                let meter: u32 = f.series.as_str()[3..10].parse().unwrap();
                let day = (f.day.days() - spec.start.days()) as u32;
                assert_eq!(
                    f.version,
                    spec.nem12_version(meter - 1, day),
                    "{}",
                    f.series
                );
                assert_eq!(f.quality, crate::fragment::Quality::ACTUAL);
            }
        }
        assert_eq!(stats.rows_rejected, 0);
        assert_eq!(stats.rows_read, stats.rows_accepted);
    }

    #[test]
    fn same_seed_same_bytes_other_seed_other_bytes() {
        for format in [Format::Wide, Format::Long, Format::Nem12] {
            let a = small().generate(format).unwrap();
            let b = small().generate(format).unwrap();
            assert_eq!(a, b, "{}", format.name());
            let c = Spec { seed: 2, ..small() }.generate(format).unwrap();
            assert_ne!(a, c, "{}", format.name());
        }
        // The oracle does not depend on the format's layout, only on its series names.
        let wide: Vec<i64> = small()
            .totals(Format::Wide)
            .iter()
            .map(|t| t.total)
            .collect();
        let nem: Vec<i64> = small()
            .totals(Format::Nem12)
            .iter()
            .map(|t| t.total)
            .collect();
        assert_eq!(wide, nem);
    }

    #[test]
    fn values_are_generated_independently_of_order() {
        let spec = small();
        let mut a = Vec::new();
        let mut b = Vec::new();
        spec.day_values(3, 5, &mut a);
        spec.day_values(0, 0, &mut b);
        spec.day_values(3, 5, &mut b);
        assert_eq!(a, b);
    }

    #[test]
    fn writer_reports_bytes_and_matches_generate() {
        let spec = small();
        let mut sink = Vec::new();
        let n = spec.write(Format::Wide, &mut sink).unwrap();
        assert_eq!(n, sink.len() as u64);
        assert_eq!(sink, spec.generate(Format::Wide).unwrap());
    }

    #[test]
    fn wide_layout_and_value_shape() {
        let spec = Spec::new(40, 30);
        let text = String::from_utf8(spec.generate(Format::Wide).unwrap()).unwrap();
        let mut lines = text.lines();
        let header: Vec<&str> = lines.next().unwrap().split(',').collect();
        assert_eq!(header.len(), 50);
        assert_eq!(&header[..4], &["Meter", "Date", "0:00", "0:30"]);
        assert_eq!(header[49], "23:30");
        let first: Vec<&str> = lines.next().unwrap().split(',').collect();
        assert_eq!(&first[..2], &["EE000001", "2019-01-01"]);
        let (mut n, mut typical) = (0, 0);
        for line in text.lines().skip(1) {
            for cell in line.split(',').skip(2) {
                let (int, frac) = cell.split_once('.').expect("three decimals");
                assert_eq!(frac.len(), 3, "{cell}");
                assert!(int.bytes().all(|b| b.is_ascii_digit()) && !int.is_empty());
                let v: i64 = format!("{int}{frac}").parse().unwrap();
                n += 1;
                typical += usize::from((50..=2000).contains(&v));
            }
        }
        assert_eq!(n, 40 * 30 * 48);
        assert!(typical * 100 >= n * 90, "{typical} of {n} in 0.05..=2.0");
        // Daily totals look like a household's: a few kWh to a few tens of kWh.
        for t in spec.totals(Format::Wide) {
            assert!((3 * ONE..60 * ONE).contains(&t.total), "{t:?}");
        }
    }

    #[test]
    fn integer_meters_read_whole_numbers() {
        let spec = Spec {
            integer_meters_percent: 100,
            ..Spec::new(3, 2)
        };
        let text = String::from_utf8(spec.generate(Format::Wide).unwrap()).unwrap();
        let row = text.lines().nth(1).unwrap();
        assert!(row
            .split(',')
            .skip(2)
            .all(|c| !c.is_empty() && c.bytes().all(|b| b.is_ascii_digit())));
        assert!(spec.totals(Format::Wide).iter().all(|t| t.total % ONE == 0));
    }

    #[test]
    fn long_and_nem12_layouts() {
        let spec = Spec::new(2, 2);
        let long = String::from_utf8(spec.generate(Format::Long).unwrap()).unwrap();
        let lines: Vec<&str> = long.lines().collect();
        assert_eq!(lines[0], "meter,timestamp,kwh");
        assert!(lines[1].starts_with("EE000001,2019-01-01T00:30:00,"));
        assert!(lines[48].starts_with("EE000001,2019-01-02T00:00:00,"));
        assert!(lines[49].starts_with("EE000001,2019-01-02T00:30:00,"));
        assert_eq!(lines.len(), 1 + 2 * 2 * 48);

        let spec = Spec {
            interval_minutes: 5,
            ..spec
        };
        let nem = String::from_utf8(spec.generate(Format::Nem12).unwrap()).unwrap();
        let lines: Vec<&str> = nem.lines().collect();
        assert_eq!(lines[0], "100,NEM12,201901030400,SYNTHMDP,SYNTHRET");
        assert_eq!(lines[1], "200,NMI0000001,E1,1,E1,N1,METSER0000001,kWh,5,");
        let r300: Vec<&str> = lines[2].split(',').collect();
        assert_eq!(r300.len(), 2 + 288 + 5);
        assert_eq!(&r300[..2], &["300", "20190101"]);
        assert_eq!(&r300[290..], &["A", "", "", "20190102030000", ""]);
        assert!(lines[3].starts_with("300,20190102,"));
        assert!(lines[3].ends_with(",A,,,20190103030000,"));
        assert_eq!(lines[4], "200,NMI0000002,E1,1,E1,N1,METSER0000002,kWh,5,");
        assert!(lines[5].ends_with(",A,,,20190102030100,"));
        assert_eq!(*lines.last().unwrap(), "900");
        assert_eq!(lines.len(), 1 + 2 * (1 + 2) + 1);
        assert_eq!(spec.series_id(Format::Nem12, 0), "NMI0000001-E1");
        // 2019-01-02T03:00:00 AEST = 2019-01-01T17:00:00Z
        assert_eq!(spec.nem12_version(0, 0), 1_546_362_000_000);
    }

    #[test]
    fn specs_are_checked() {
        let bad = Spec {
            interval_minutes: 10,
            ..Spec::new(1, 1)
        };
        assert!(matches!(
            bad.check(Format::Wide),
            Err(SpecError::Interval { .. })
        ));
        assert!(bad.check(Format::Nem12).is_ok());
        assert!(Spec::new(0, 1).generate(Format::Wide).is_err());
        assert!(Spec::new(1, 0).check(Format::Long).is_err());
        let io = Spec::new(1, 0).write(Format::Wide, Vec::new()).unwrap_err();
        assert_eq!(io.kind(), io::ErrorKind::InvalidInput);
    }

    #[test]
    fn wide_parses_to_the_oracle() {
        parse_matches_oracle(&small(), Format::Wide);
        for minutes in [5, 15, 60] {
            let spec = Spec {
                interval_minutes: minutes,
                seed: 7,
                ..small()
            };
            parse_matches_oracle(&spec, Format::Wide);
        }
    }

    #[test]
    fn long_parses_to_the_oracle() {
        parse_matches_oracle(&small(), Format::Long);
        let spec = Spec {
            interval_minutes: 15,
            ..small()
        };
        parse_matches_oracle(&spec, Format::Long);
    }

    #[test]
    fn nem12_parses_to_the_oracle() {
        for minutes in [30, 5] {
            let spec = Spec {
                interval_minutes: minutes,
                ..small()
            };
            parse_matches_oracle(&spec, Format::Nem12);
        }
    }
}
