//! Encoding: fragments into an envelope under a byte cap ([`EnvelopeBuilder`]).

use std::collections::HashMap;
use std::sync::Arc;

use crate::day::Day;
use crate::fragment::{slots_per_day, Fragment, Quality, Version, INTERVAL_MINUTES};
use crate::series::{same_str, SeriesId, Unit};

use super::bits::*;
use super::*;

/// Why [`EnvelopeBuilder::try_push`] did not take a fragment.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum PushError {
    /// This envelope has no room left; the builder is unchanged. Send it
    /// ([`EnvelopeBuilder::take`]) and push the fragment again: it fits an empty envelope.
    #[error("the envelope is full; send it and push the fragment into a new one")]
    Full,
    /// Even alone in an empty envelope this fragment would exceed the cap, so retrying can never
    /// succeed. Distinct from [`PushError::Full`] so a caller's flush-and-retry loop terminates.
    #[error(
        "the fragment needs {bytes} bytes even alone in an envelope, more than the {max}-byte cap"
    )]
    TooLarge {
        /// Bytes the fragment takes alone in an empty envelope.
        bytes: usize,
        /// The builder's cap in bytes ([`EnvelopeBuilder::max_bytes`]).
        max: usize,
    },
    /// The fragment breaks an invariant the parsers guarantee, so the envelope cannot carry it
    /// exactly (and a decoder would reject it).
    #[error("the fragment cannot be encoded: {0}")]
    Invalid(#[from] InvalidFragment),
}

/// A fragment outside what the envelope represents.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum InvalidFragment {
    /// The interval length, in minutes, is not one of [`INTERVAL_MINUTES`].
    #[error("interval length {0} minutes is not one of 5, 10, 15, 30, 60")]
    Interval(u16),
    /// The slot count is not the number of intervals in a day of that length.
    #[error("{len} slots do not make a day of {interval_minutes}-minute intervals")]
    SlotCount {
        /// The fragment's interval length, in minutes.
        interval_minutes: u16,
        /// Slots the fragment holds.
        len: usize,
    },
    /// The quality byte sets bits that no [`Quality`] flag defines.
    #[error("quality bits {0:#04x} include undefined flags")]
    Quality(u8),
    /// The day lies outside the years [`MIN_YEAR`](crate::day::MIN_YEAR) to
    /// [`MAX_YEAR`](crate::day::MAX_YEAR), which the decoder refuses.
    #[error("day {0} is outside years 1900–2999")]
    Day(Day),
    /// A value lies beyond ±[`MAX_ABS_VALUE`](crate::value::MAX_ABS_VALUE).
    #[error("slot {slot} holds {value}, beyond the ±10^9 kWh bound of a single value")]
    Value {
        /// Index of the first slot out of range.
        slot: usize,
        /// Its value, in millionths of the unit.
        value: i64,
    },
}

/// Builds one envelope, fragment by fragment, under a byte cap.
///
/// Pure request building in the manner of Vector's `aws_kinesis` sink: no I/O, the caller
/// decides when to send. [`try_push`](Self::try_push) accounts for everything the fragment
/// would add (its own bytes, new dictionary entries, wider count varints), so
/// [`encoded_len`](Self::encoded_len) never exceeds the cap and equals the length
/// [`finish`](Self::finish) returns.
///
/// ```
/// use meterflow_core::envelope::{EnvelopeBuilder, PushError, MAX_ENVELOPE_BYTES};
/// # let fragments: Vec<meterflow_core::Fragment> = Vec::new();
/// let mut builder = EnvelopeBuilder::new(MAX_ENVELOPE_BYTES);
/// let mut records = Vec::new();
/// for f in &fragments {
///     match builder.try_push(f) {
///         Ok(()) => {}
///         Err(PushError::Full) => {
///             records.push(builder.take());
///             builder.try_push(f).expect("a fragment that was Full fits an empty envelope");
///         }
///         Err(e) => eprintln!("cannot send {}: {e}", f.series),
///     }
/// }
/// if !builder.is_empty() {
///     records.push(builder.take());
/// }
/// ```
#[derive(Debug)]
pub struct EnvelopeBuilder {
    max_bytes: usize,
    units: HashMap<Unit, usize>,
    /// Series id → (unit index, series index) for each unit seen with it.
    series: HashMap<SeriesId, Vec<(usize, usize)>>,
    sources: HashMap<Arc<str>, usize>,
    /// The encoded unit, series and source dictionaries, in envelope order.
    tables: [Table; 3],
    body: Vec<u8>,
    count: usize,
    cursor: Cursor,
    /// A fragment encoded alone, to tell a full envelope from a fragment too large for any.
    scratch: Vec<u8>,
    values: Vec<i64>,
    /// The previous fragment's dictionary keys and indexes: fragments come in runs of one
    /// series and source, so most pushes skip the hash lookups.
    last: Option<LastKeys>,
}

#[derive(Debug)]
struct LastKeys {
    series: SeriesId,
    unit: Unit,
    source: Arc<str>,
    indexes: (usize, usize, usize),
}

const UNITS: usize = 0;
const SERIES: usize = 1;
const SOURCES: usize = 2;

/// One encoded dictionary: its entry count and entry bytes.
#[derive(Debug, Default)]
struct Table {
    count: usize,
    buf: Vec<u8>,
}

impl Default for EnvelopeBuilder {
    fn default() -> Self {
        EnvelopeBuilder::new(MAX_ENVELOPE_BYTES)
    }
}

impl EnvelopeBuilder {
    /// A builder whose envelopes never exceed `max_bytes` (normally [`MAX_ENVELOPE_BYTES`]).
    pub fn new(max_bytes: usize) -> EnvelopeBuilder {
        EnvelopeBuilder {
            max_bytes,
            units: HashMap::new(),
            series: HashMap::new(),
            sources: HashMap::new(),
            tables: Default::default(),
            body: Vec::new(),
            count: 0,
            cursor: Cursor::default(),
            scratch: Vec::new(),
            values: Vec::new(),
            last: None,
        }
    }

    /// The cap, in bytes, that no envelope of this builder exceeds.
    pub fn max_bytes(&self) -> usize {
        self.max_bytes
    }

    /// Fragments in the envelope so far.
    pub fn len(&self) -> usize {
        self.count
    }

    /// True when the envelope holds no fragment yet: there is nothing to send.
    pub fn is_empty(&self) -> bool {
        self.count == 0
    }

    /// Exact length of the envelope [`finish`](Self::finish) would return now.
    pub fn encoded_len(&self) -> usize {
        self.len_with([None; 3], None)
    }

    /// Adds a fragment, or explains why not without changing the builder.
    pub fn try_push(&mut self, f: &Fragment) -> Result<(), PushError> {
        let code = validate(f)?;
        self.push_entry(&Checked { f, code })
    }

    /// Adds a fragment read from another envelope, copying its encoded values as they are
    /// instead of decoding and re-encoding them: regrouping a record's fragments (the SQLite
    /// store packs them per series-month) costs a head and a copy per fragment. The result is
    /// byte for byte what [`try_push`](Self::try_push) of the decoded fragment would give.
    pub fn push_raw(&mut self, f: &RawFragment<'_>) -> Result<(), PushError> {
        self.push_entry(f)
    }

    fn push_entry(&mut self, f: &impl Encodable) -> Result<(), PushError> {
        let (series, unit, source) = f.keys();
        let hit = self
            .last
            .as_ref()
            .filter(|l| l.series == *series && l.unit == *unit && same_str(&l.source, source));
        if let Some(&LastKeys {
            indexes: (_, series_idx, source_idx),
            ..
        }) = hit
        {
            return self.push_encoded(f, [None; 3], series_idx, source_idx, None);
        }
        let unit_idx = self.units.get(unit).copied();
        let series_idx = unit_idx.and_then(|u| {
            let units = self.series.get(series)?;
            units.iter().find(|&&(unit, _)| unit == u).map(|&(_, i)| i)
        });
        let source_idx = self.sources.get(&**source).copied();
        let unit_idx = unit_idx.unwrap_or(self.tables[UNITS].count);
        let series_idx = series_idx.ok_or(self.tables[SERIES].count);
        let source_idx = source_idx.ok_or(self.tables[SOURCES].count);
        // Bytes of the dictionary entries this fragment would add, if any.
        let mut entries = [None; 3];
        if !self.units.contains_key(unit) {
            entries[UNITS] = Some(str_len(unit.as_str()));
        }
        if series_idx.is_err() {
            entries[SERIES] = Some(series_entry_len(series, unit_idx));
        }
        if source_idx.is_err() {
            entries[SOURCES] = Some(str_len(source));
        }
        let (series_idx, source_idx) = (
            series_idx.unwrap_or_else(|new| new),
            source_idx.unwrap_or_else(|new| new),
        );
        self.push_encoded(f, entries, series_idx, source_idx, Some(unit_idx))
    }

    /// Encodes `f` with the given dictionary indexes and commits it if it fits. `entries` are
    /// the sizes of the dictionary entries it adds; `unit_idx` is known when any are added.
    fn push_encoded(
        &mut self,
        f: &impl Encodable,
        entries: [Option<usize>; 3],
        series_idx: usize,
        source_idx: usize,
        unit_idx: Option<usize>,
    ) -> Result<(), PushError> {
        let (series, unit, source) = f.keys();
        // Only a fragment with the previous one's keys comes without a unit index.
        let same_keys = unit_idx.is_none();
        let unit_idx = unit_idx.unwrap_or_else(|| self.last.as_ref().map_or(0, |l| l.indexes.0));
        // Encoded in place at the end of the body, cut off again if it does not fit.
        let mark = self.body.len();
        let next = f.encode(
            &mut self.body,
            &mut self.values,
            series_idx,
            source_idx,
            self.cursor,
        );
        // The body already holds the fragment's bytes: count it as a fragment of length 0.
        let total = self.len_with(entries, Some(0));
        if total > self.max_bytes {
            self.body.truncate(mark);
            let alone = if self.is_empty() {
                total
            } else {
                self.scratch.clear();
                f.encode(&mut self.scratch, &mut self.values, 0, 0, Cursor::default());
                let entries = [
                    str_len(unit.as_str()),
                    series_entry_len(series, 0),
                    str_len(source),
                ];
                // Each dictionary and the fragment count hold one entry: one-byte counts.
                HEADER_BYTES + entries.iter().map(|e| 1 + e).sum::<usize>() + 1 + self.scratch.len()
            };
            return Err(if alone > self.max_bytes {
                PushError::TooLarge {
                    bytes: alone,
                    max: self.max_bytes,
                }
            } else {
                PushError::Full
            });
        }

        if entries[UNITS].is_some() {
            put_str(&mut self.tables[UNITS].buf, unit.as_str());
            self.tables[UNITS].count += 1;
            self.units.insert(unit.clone(), unit_idx);
        }
        if entries[SERIES].is_some() {
            let t = &mut self.tables[SERIES];
            put_str(&mut t.buf, series.as_str());
            put_varint(&mut t.buf, unit_idx as u64);
            t.count += 1;
            self.series
                .entry(series.clone())
                .or_default()
                .push((unit_idx, series_idx));
        }
        if entries[SOURCES].is_some() {
            put_str(&mut self.tables[SOURCES].buf, source);
            self.tables[SOURCES].count += 1;
            self.sources.insert(source.clone(), source_idx);
        }
        self.count += 1;
        self.cursor = next;
        if !same_keys {
            self.last = Some(LastKeys {
                series: series.clone(),
                unit: unit.clone(),
                source: source.clone(),
                indexes: (unit_idx, series_idx, source_idx),
            });
        }
        Ok(())
    }

    /// The envelope's bytes.
    pub fn finish(self) -> Vec<u8> {
        let mut out = Vec::with_capacity(self.encoded_len());
        self.write_to(&mut out);
        out
    }

    /// The envelope's bytes, leaving the builder empty and ready for the next envelope with its
    /// buffers and dictionaries' allocations kept.
    pub fn take(&mut self) -> Vec<u8> {
        let mut out = Vec::with_capacity(self.encoded_len());
        self.write_to(&mut out);
        self.clear();
        out
    }

    /// Appends the envelope to `out` (for a caller that reuses its own buffer), then empties
    /// the builder like [`take`](Self::take).
    pub fn take_into(&mut self, out: &mut Vec<u8>) {
        out.reserve(self.encoded_len());
        self.write_to(out);
        self.clear();
    }

    /// Drops every fragment, keeping allocations.
    pub fn clear(&mut self) {
        self.units.clear();
        self.series.clear();
        self.sources.clear();
        for t in &mut self.tables {
            t.count = 0;
            t.buf.clear();
        }
        self.body.clear();
        self.count = 0;
        self.cursor = Cursor::default();
        self.last = None;
    }

    fn write_to(&self, out: &mut Vec<u8>) {
        out.extend_from_slice(&MAGIC);
        out.push(FORMAT_VERSION);
        for t in &self.tables {
            put_varint(out, t.count as u64);
            out.extend_from_slice(&t.buf);
        }
        put_varint(out, self.count as u64);
        out.extend_from_slice(&self.body);
    }

    /// Envelope length after adding dictionary entries and a fragment of the given byte
    /// lengths (each optional): counts whose varints grow are accounted for.
    fn len_with(&self, entries: [Option<usize>; 3], fragment: Option<usize>) -> usize {
        let with = |count: usize, add: Option<usize>| {
            varint_len((count + usize::from(add.is_some())) as u64) + add.unwrap_or(0)
        };
        let tables: usize = self
            .tables
            .iter()
            .zip(entries)
            .map(|(t, add)| with(t.count, add) + t.buf.len())
            .sum();
        HEADER_BYTES + tables + with(self.count, fragment) + self.body.len()
    }
}

/// Checks the invariants the layout relies on; returns the interval code.
fn validate(f: &Fragment) -> Result<u8, InvalidFragment> {
    let code = INTERVAL_MINUTES
        .iter()
        .position(|&m| m == f.interval_minutes)
        .ok_or(InvalidFragment::Interval(f.interval_minutes))?;
    if slots_per_day(f.interval_minutes) != Some(f.slots.len()) {
        return Err(InvalidFragment::SlotCount {
            interval_minutes: f.interval_minutes,
            len: f.slots.len(),
        });
    }
    if Quality::from_bits(f.quality.0).is_none() {
        return Err(InvalidFragment::Quality(f.quality.0));
    }
    // `Day::succ` can step past the accepted years; the decoder would refuse such a day.
    if Day::from_days(f.day.days()).is_none() {
        return Err(InvalidFragment::Day(f.day));
    }
    if let Some((slot, value)) = f.slots.first_unbounded() {
        return Err(InvalidFragment::Value { slot, value });
    }
    Ok(code as u8)
}

fn series_entry_len(id: &SeriesId, unit_idx: usize) -> usize {
    str_len(id.as_str()) + varint_len(unit_idx as u64)
}

fn str_len(s: &str) -> usize {
    varint_len(s.len() as u64) + s.len()
}

fn put_str(out: &mut Vec<u8>, s: &str) {
    put_varint(out, s.len() as u64);
    out.extend_from_slice(s.as_bytes());
}

/// What a builder can take: a fragment's dictionary keys, fields and value bytes.
trait Encodable {
    fn keys(&self) -> (&SeriesId, &Unit, &Arc<str>);
    /// Day, version, line, quality and flags byte; `values` is scratch space shared with
    /// [`payload`](Encodable::payload).
    fn fields(&self, values: &mut Vec<i64>) -> (Day, Version, u64, Quality, u8);
    /// Appends the presence bitmap and packed values.
    fn payload(&self, out: &mut Vec<u8>, values: &mut Vec<i64>, flags: u8);

    /// Appends the fragment's bytes relative to `prev` with the given dictionary indexes and
    /// returns the cursor the next fragment refers to.
    fn encode(
        &self,
        out: &mut Vec<u8>,
        values: &mut Vec<i64>,
        series_idx: usize,
        source_idx: usize,
        prev: Cursor,
    ) -> Cursor {
        let (day, version, line, quality, flags) = self.fields(values);
        let next = Cursor {
            series: series_idx as u64,
            day: i64::from(day.days()),
            version,
            source: source_idx as u64,
            line,
            flags,
            quality: quality.0,
        };
        encode_head(out, next, prev);
        self.payload(out, values, flags);
        next
    }
}

/// A fragment that passed [`validate`], with its interval code.
struct Checked<'f> {
    f: &'f Fragment,
    code: u8,
}

impl Encodable for Checked<'_> {
    fn keys(&self) -> (&SeriesId, &Unit, &Arc<str>) {
        (&self.f.series, &self.f.unit, &self.f.source)
    }

    fn fields(&self, values: &mut Vec<i64>) -> (Day, Version, u64, Quality, u8) {
        let f = self.f;
        values.clear();
        f.slots.present_values(values);
        let scale = common_scale(values);
        let mut flags = self.code | (scale << SCALE_SHIFT);
        if values.len() == f.slots.len() {
            flags |= ALL_PRESENT;
        }
        (f.day, f.version, f.line, f.quality, flags)
    }

    fn payload(&self, out: &mut Vec<u8>, values: &mut Vec<i64>, flags: u8) {
        let slots = &self.f.slots;
        if flags & ALL_PRESENT == 0 {
            // Every interval length gives a multiple of 8 slots, so the bitmap has no padding.
            for base in (0..slots.len()).step_by(8) {
                let mut byte = 0u8;
                for bit in 0..8 {
                    if slots.get(base + bit).is_some() {
                        byte |= 1 << bit;
                    }
                }
                out.push(byte);
            }
        }
        if !values.is_empty() {
            unscale(values, flags >> SCALE_SHIFT);
            encode_values(out, values);
        }
    }
}

impl Encodable for RawFragment<'_> {
    fn keys(&self) -> (&SeriesId, &Unit, &Arc<str>) {
        (self.series, self.unit, self.source)
    }

    fn fields(&self, _values: &mut Vec<i64>) -> (Day, Version, u64, Quality, u8) {
        (self.day, self.version, self.line, self.quality, self.flags)
    }

    fn payload(&self, out: &mut Vec<u8>, _values: &mut Vec<i64>, _flags: u8) {
        out.extend_from_slice(self.payload);
    }
}

/// Moves every fragment of the envelope `record` `by` lines further into its source: a piece
/// of a file parsed before the line it starts on was known is numbered from 1 and moved once
/// it is. Only the first fragment holds its line whole (each later one holds the difference
/// from the one before it), so only the first head is rewritten; the values are not touched.
pub fn shift_lines(record: &mut Vec<u8>, by: u64) -> Result<(), DecodeError> {
    if by == 0 {
        return Ok(());
    }
    let Some((start, values_at, first)) = Envelope::parse(record)?.first_head()? else {
        return Ok(());
    };
    let mut head = Vec::with_capacity(values_at - start + 10);
    let moved = Cursor {
        line: first.line.wrapping_add(by),
        ..first
    };
    encode_head(&mut head, moved, Cursor::default());
    record.splice(start..values_at, head);
    Ok(())
}

/// Appends a fragment's head byte and the fields that differ from `prev`.
fn encode_head(out: &mut Vec<u8>, next: Cursor, prev: Cursor) {
    let head_at = out.len();
    out.push(0);
    let mut head = 0;
    if next.series != prev.series {
        head |= HEAD_SERIES;
        put_varint(out, zigzag(next.series.wrapping_sub(prev.series) as i64));
    }
    // Validated days lie within years 1900–2999, so this difference cannot overflow.
    let day_delta = next.day - prev.day;
    head |= match day_delta {
        0 => DAY_SAME,
        1 => DAY_NEXT,
        _ => {
            put_varint(out, zigzag(day_delta));
            DAY_DELTA
        }
    } << HEAD_DAY_SHIFT;
    if next.version != prev.version {
        head |= HEAD_VERSION;
        put_varint(out, zigzag(next.version.wrapping_sub(prev.version)));
    }
    if next.source != prev.source {
        head |= HEAD_SOURCE;
        put_varint(out, zigzag(next.source.wrapping_sub(prev.source) as i64));
    }
    if next.line != prev.line.wrapping_add(1) {
        head |= HEAD_LINE;
        put_varint(out, zigzag(next.line.wrapping_sub(prev.line) as i64));
    }
    if next.quality != prev.quality {
        head |= HEAD_QUALITY;
        out.push(next.quality);
    }
    if next.flags != prev.flags {
        head |= HEAD_FLAGS;
        out.push(next.flags);
    }
    out[head_at] = head;
}

/// 10^e = 2^e × 5^e, and 5^e is odd, so it has an inverse modulo 2^64: dividing a known
/// multiple of 10^e is a shift and a multiplication instead of a division per value.
const INV_POW5: [u64; MAX_SCALE + 1] = {
    let mut inv = [1u64; MAX_SCALE + 1];
    let mut e = 1;
    while e <= MAX_SCALE {
        let a = 5u64.pow(e as u32);
        // Newton's iteration doubles the correct low bits each step: 3 → 6 → … → 96 ≥ 64.
        let mut x = a;
        let mut i = 0;
        while i < 5 {
            x = x.wrapping_mul(2u64.wrapping_sub(a.wrapping_mul(x)));
            i += 1;
        }
        inv[e] = x;
        e += 1;
    }
    inv
};
/// `v / 10^e` for a multiple `v` of 10^`e`.
#[inline(always)]
pub(super) fn exact_div(v: i64, e: usize) -> i64 {
    ((v >> e) as u64).wrapping_mul(INV_POW5[e]) as i64
}

/// The largest `e` such that 10^e divides every value (0 when all are zero): meter data is
/// mostly written with 3 decimal places or as whole kWh, so dividing out 10^3 or 10^6 saves
/// 10 or 20 bits per value before any packing.
fn common_scale(values: &[i64]) -> u8 {
    if values.iter().all(|&v| v == 0) {
        return 0;
    }
    // Largest first: each candidate usually fails at the first value. A constant divisor per
    // arm lets the compiler test divisibility with multiplications.
    fn all_divide<const P: i64>(values: &[i64]) -> bool {
        values.iter().all(|&v| v % P == 0)
    }
    macro_rules! first_scale {
        ($($e:literal => $p:literal),*) => {
            $(if all_divide::<$p>(values) { return $e; })*
        };
    }
    first_scale!(
        15 => 1_000_000_000_000_000, 14 => 100_000_000_000_000, 13 => 10_000_000_000_000,
        12 => 1_000_000_000_000, 11 => 100_000_000_000, 10 => 10_000_000_000,
        9 => 1_000_000_000, 8 => 100_000_000, 7 => 10_000_000, 6 => 1_000_000,
        5 => 100_000, 4 => 10_000, 3 => 1_000, 2 => 100, 1 => 10
    );
    0
}

/// Divides every value by 10^`scale` (which divides them all).
fn unscale(values: &mut [i64], scale: u8) {
    let e = usize::from(scale);
    if e > 0 {
        values.iter_mut().for_each(|v| *v = exact_div(*v, e));
    }
}

/// Packs scaled values with whichever of frame of reference and delta is smaller.
///
/// Frame of reference suits noisy data in a narrow band (whole-kWh days like `9,8,8,10`);
/// delta suits smooth load curves whose level drifts further than it jumps.
fn encode_values(out: &mut Vec<u8>, values: &[i64]) {
    let n = values.len();
    let (mut min, mut max, mut delta_bits) = (values[0], values[0], 0u64);
    let mut prev = values[0];
    // One pass for both candidate encodings' widths.
    for &v in &values[1..] {
        min = if v < min { v } else { min };
        max = if v > max { v } else { max };
        delta_bits |= zigzag(v - prev);
        prev = v;
    }
    // Scaled values lie within ±10^15, so these differences cannot overflow.
    let for_width = bit_width((max - min) as u64);
    let delta_width = bit_width(delta_bits);
    let for_len = varint_len(zigzag(min)) + packed_len(n, for_width);
    let delta_len = varint_len(zigzag(values[0])) + packed_len(n - 1, delta_width);
    if delta_len < for_len {
        out.push(DELTA_METHOD | delta_width as u8);
        put_varint(out, zigzag(values[0]));
        let mut w = BitWriter::new(out);
        for pair in values.windows(2) {
            w.put(zigzag(pair[1] - pair[0]), delta_width);
        }
        w.finish();
    } else {
        out.push(for_width as u8);
        put_varint(out, zigzag(min));
        let mut w = BitWriter::new(out);
        for &v in values {
            w.put((v - min) as u64, for_width);
        }
        w.finish();
    }
}
