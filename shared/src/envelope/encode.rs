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
    values: Scaled,
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
            values: Scaled::default(),
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
    fn fields(&self, values: &mut Scaled) -> (Day, Version, u64, Quality, u8);
    /// Appends the presence bitmap and packed values.
    fn payload(&self, out: &mut Vec<u8>, values: &Scaled, flags: u8);

    /// Appends the fragment's bytes relative to `prev` with the given dictionary indexes and
    /// returns the cursor the next fragment refers to.
    fn encode(
        &self,
        out: &mut Vec<u8>,
        values: &mut Scaled,
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

    fn fields(&self, values: &mut Scaled) -> (Day, Version, u64, Quality, u8) {
        let f = self.f;
        let scale = match f.slots.complete() {
            Some(all) => values.fill(all),
            None => {
                let mut gathered = std::mem::take(&mut values.gathered);
                gathered.clear();
                f.slots.present_values(&mut gathered);
                let scale = values.fill(&gathered);
                values.gathered = gathered;
                scale
            }
        };
        let mut flags = self.code | (scale << SCALE_SHIFT);
        if values.values.len() == f.slots.len() {
            flags |= ALL_PRESENT;
        }
        (f.day, f.version, f.line, f.quality, flags)
    }

    fn payload(&self, out: &mut Vec<u8>, values: &Scaled, flags: u8) {
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
        if !values.values.is_empty() {
            values.encode(out);
        }
    }
}

impl Encodable for RawFragment<'_> {
    fn keys(&self) -> (&SeriesId, &Unit, &Arc<str>) {
        (self.series, self.unit, self.source)
    }

    fn fields(&self, _values: &mut Scaled) -> (Day, Version, u64, Quality, u8) {
        (self.day, self.version, self.line, self.quality, self.flags)
    }

    fn payload(&self, out: &mut Vec<u8>, _values: &Scaled, _flags: u8) {
        out.extend_from_slice(self.payload);
    }
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
/// `v / 10^e` for a multiple `v` of 10^`e` (and, for any other `v` that 2^`e` divides, a
/// quotient beyond `POW5_QUOTIENT_BOUND[e]`: how [`Scaled::fill`] tests divisibility).
#[inline(always)]
pub(super) fn exact_div(v: i64, e: usize) -> i64 {
    ((v >> e) as u64).wrapping_mul(INV_POW5[e]) as i64
}

/// `⌊i64::MAX / 5^e⌋`: the multiples of 5^e are exactly the `m` whose `m × (5^e)⁻¹` (mod
/// 2^64, as signed) lies within ± this bound, as the inverse maps them one to one onto it:
/// a multiplication and a compare test divisibility, where `%` by a constant costs a wide
/// multiplication, shifts and a subtraction.
const POW5_QUOTIENT_BOUND: [u64; MAX_SCALE + 1] = {
    let mut b = [0u64; MAX_SCALE + 1];
    let mut e = 0;
    while e <= MAX_SCALE {
        b[e] = i64::MAX as u64 / 5u64.pow(e as u32);
        e += 1;
    }
    b
};

/// A fragment's present values divided by their common scale, with what choosing between
/// the two packings needs, found as the values are divided.
#[derive(Debug, Default)]
pub(super) struct Scaled {
    values: Vec<i64>,
    min: i64,
    max: i64,
    /// OR of the zigzagged differences between neighbours.
    delta_bits: u64,
    /// The present values of a day with gaps, copied out of its slots.
    gathered: Vec<i64>,
}

impl Scaled {
    /// Takes `present` divided by the largest `e` such that 10^e divides every value (0 when
    /// all are zero), and returns `e`: meter data is mostly written with 3 decimal places or
    /// as whole kWh, so dividing out 10^3 or 10^6 saves 10 or 20 bits per value before any
    /// packing. 2^e must divide every value, so the trailing zeros of their OR bound `e`, and
    /// usually name it: the pass that divides also checks, and is run again with a smaller
    /// `e` only when some value turns out not to divide.
    fn fill(&mut self, present: &[i64]) -> u8 {
        let Some(&first) = present.first() else {
            self.values.clear();
            return 0;
        };
        let or = present.iter().fold(0, |acc, &v| acc | v);
        let mut e = if or == 0 {
            0
        } else {
            (or.trailing_zeros() as usize).min(MAX_SCALE)
        };
        loop {
            if self.divide(present, first, e) || e == 0 {
                return e as u8;
            }
            e -= 1;
        }
    }

    /// Fills `values` with `present` divided by 10^`e` (2^`e` dividing each), and the
    /// statistics; false if 5^`e` does not divide them all, leaving garbage behind.
    #[inline(always)]
    fn divide(&mut self, present: &[i64], first: i64, e: usize) -> bool {
        let bound = POW5_QUOTIENT_BOUND[e];
        // `exact_div` is `v / 10^e` exactly when 10^e divides `v`, which it does if and only
        // if the quotient lies within ± `bound`.
        let first = exact_div(first, e);
        let (mut min, mut max, mut delta_bits, mut prev) = (first, first, 0u64, first);
        let mut outside = false;
        self.values.clear();
        self.values.extend(present.iter().map(|&v| {
            let v = exact_div(v, e);
            outside |= (v as u64).wrapping_add(bound) > 2 * bound;
            min = if v < min { v } else { min };
            max = if v > max { v } else { max };
            // Scaled values lie within ±10^15, so these differences cannot overflow (and
            // garbage from a failed division is thrown away: wrapping, not checked).
            delta_bits |= zigzag(v.wrapping_sub(prev));
            prev = v;
            v
        }));
        (self.min, self.max, self.delta_bits) = (min, max, delta_bits);
        !outside
    }

    /// Packs the values with whichever of frame of reference and delta is smaller.
    ///
    /// Frame of reference suits noisy data in a narrow band (whole-kWh days like `9,8,8,10`);
    /// delta suits smooth load curves whose level drifts further than it jumps.
    fn encode(&self, out: &mut Vec<u8>) {
        let (values, min) = (&self.values, self.min);
        let n = values.len();
        let for_width = bit_width((self.max - min) as u64);
        let delta_width = bit_width(self.delta_bits);
        let for_len = varint_len(zigzag(min)) + packed_len(n, for_width);
        let delta_len = varint_len(zigzag(values[0])) + packed_len(n - 1, delta_width);
        if delta_len < for_len {
            out.push(DELTA_METHOD | delta_width as u8);
            put_varint(out, zigzag(values[0]));
            let deltas = values.windows(2).map(|p| zigzag(p[1] - p[0]));
            pack(out, n - 1, delta_width, deltas);
        } else {
            out.push(for_width as u8);
            put_varint(out, zigzag(min));
            pack(out, n, for_width, values.iter().map(|&v| (v - min) as u64));
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    /// The definition, one candidate at a time.
    fn largest_scale(values: &[i64]) -> u8 {
        if values.iter().all(|&v| v == 0) {
            return 0;
        }
        (1..=MAX_SCALE)
            .rev()
            .find(|&e| values.iter().all(|&v| v % POW10[e] == 0))
            .unwrap_or(0) as u8
    }

    /// Values that share a few decimal zeros, of either sign, sometimes zero.
    fn arb_values() -> impl Strategy<Value = Vec<i64>> {
        (0..=MAX_SCALE, 1usize..60).prop_flat_map(|(e, n)| {
            let unit = POW10[e];
            let most = MAX_ABS_VALUE / unit;
            prop::collection::vec(
                prop_oneof![
                    (-most..most).prop_map(move |k| k * unit),
                    (-9i64..=9).prop_map(move |k| k * unit),
                    Just(0i64),
                    (-MAX_ABS_VALUE + 1..MAX_ABS_VALUE),
                ],
                n,
            )
        })
    }

    proptest! {
        #[test]
        fn the_scale_is_the_largest_power_of_ten_dividing_every_value(values in arb_values()) {
            let mut s = Scaled::default();
            let e = s.fill(&values);
            prop_assert_eq!(e, largest_scale(&values));
            let divided: Vec<i64> = values.iter().map(|&v| v / POW10[usize::from(e)]).collect();
            prop_assert_eq!(&s.values, &divided);
            prop_assert_eq!(s.min, *divided.iter().min().unwrap());
            prop_assert_eq!(s.max, *divided.iter().max().unwrap());
        }
    }

    #[test]
    fn the_scale_is_right_at_the_edges_of_the_range() {
        for (e, &p) in POW10.iter().enumerate().skip(1) {
            let most = (MAX_ABS_VALUE - 1) / p * p;
            for v in [
                p,
                -p,
                most,
                -most,
                most - (1 << e),
                -most + (1 << e),
                1 << e,
                -(1 << e),
            ] {
                let mut s = Scaled::default();
                assert_eq!(s.fill(&[v, p]), largest_scale(&[v, p]), "{v} by 10^{e}");
            }
        }
    }
}
