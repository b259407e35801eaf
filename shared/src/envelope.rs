//! The wire envelope: many fragments in one compact, versioned Kinesis record.
//!
//! Why a custom binary encoding: Kinesis takes at most 1 MB/s and 1,000 records/s per shard
//! and on-demand streams bill every record rounded up to 1 KB, so one CSV row (≈300 bytes) per
//! record wastes both the record budget and the bill. Packing many fragments per record and
//! shrinking each complete half-hourly meter-day from ≈300 bytes of CSV to a few dozen bytes
//! multiplies what one shard carries. The encoding is exact (no floating point, every field
//! round-trips bit for bit) because the merge rules of [`crate::merge`] depend on exact values,
//! versions, sources and lines.
//!
//! # Layout (format version 1)
//!
//! All integers are unsigned LEB128 varints unless noted; "zigzag" maps signed to unsigned
//! (`0, -1, 1, -2` → `0, 1, 2, 3`) so small negative deltas stay one byte.
//!
//! ```text
//! envelope  = magic "MFEN" | version u8 (=1)
//!             | n_units | n_units × (len | utf-8 bytes)
//!             | n_series | n_series × (id_len | id | unit_index)
//!             | n_sources | n_sources × (len | utf-8 bytes)
//!             | n_fragments | n_fragments × fragment
//! fragment  = head u8
//!             | [zigzag(series index − prev)] | [zigzag(day − prev)] | [zigzag(version − prev)]
//!             | [zigzag(source index − prev)] | [zigzag(line − prev)] | [flags u8] | [quality u8]
//!             | [presence bitmap] | [values]
//! head      = which bracketed fields are present; an absent field repeats the previous
//!             fragment's value (or, for day and line, advances it by one):
//!             bit 0 series index given, bits 1–2 day (0 same as previous, 1 previous + 1,
//!             2 delta given, 3 undefined), bit 3 version delta given, bit 4 source index
//!             given, bit 5 line delta given (absent: previous + 1), bit 6 quality given,
//!             bit 7 flags given
//! flags     = bits 0–2 interval code (index into INTERVAL_MINUTES), bit 3 all slots present,
//!             bits 4–7 scale exponent e (every present value is a multiple of 10^e)
//! bitmap    = slots_per_day bits, slot i at bit i%8 of byte i/8; absent when flags bit 3 is
//!             set
//! values    = (only when at least one slot is present)
//!             pack u8 (bits 0–6 bit width w ≤ 64, bit 7 method: 0 frame of reference,
//!             1 delta) | zigzag(base) | bit-packed words, least significant bit first
//!   frame of reference: base = min, then every value − min in w bits
//!   delta:              base = first value, then zigzag(value − previous) in w bits
//! ```
//!
//! Why the head byte: a batch from one file repeats almost everything but the values (one
//! source and version, lines counting up, a meter's days in a row or many meters on one day,
//! the same interval, scale and quality), so eliding repeats cuts a fragment's fixed part from
//! about ten bytes to one. It is the same information as a plain field list, only omitted when
//! predictable.
//!
//! Every "previous" field (series and source index, day, version, line, flags, quality) starts
//! at 0 before the first fragment of an envelope. Version and line deltas wrap: both are
//! full-range integers, and wrapping arithmetic keeps them exact.
//!
//! A series is keyed in the dictionary together with its unit, since a series has one unit;
//! should a producer ever send one id under two units both entries are kept, so decoding is
//! exact regardless. Units have a dictionary of their own because thousands of meters share
//! one or two of them. Indices are sent as deltas because new series appear in order (a
//! one-day file of many meters is `+1` after `+1`).
//!
//! # Evolution
//!
//! The version byte is the only compatibility mechanism: any change to the layout bumps it, an
//! older decoder refuses a newer envelope with [`DecodeError::NewerVersion`] (upgrade the
//! aggregator before the splitter), and every other decode error means the bytes are corrupt
//! and will never decode (quarantine the record, do not retry it).

use std::collections::HashMap;
use std::sync::Arc;

use crate::day::Day;
use crate::fragment::{slots_per_day, Fragment, Quality, Slots, Version, INTERVAL_MINUTES};
use crate::series::{same_str, SeriesId, Unit};
use crate::value::MAX_ABS_VALUE;

/// First bytes of every envelope: tells a meterflow record from anything else on the stream.
pub const MAGIC: [u8; 4] = *b"MFEN";
/// The layout this build writes and the newest it reads.
pub const FORMAT_VERSION: u8 = 1;
/// Kinesis' limit on one record's data blob (1 MiB); the default cap of a builder.
///
/// Kinesis counts the partition key against the same limit, so a producer with long partition
/// keys passes `MAX_RECORD_BYTES - key.len()` as the cap.
pub const MAX_RECORD_BYTES: usize = 1024 * 1024;

/// One envelope record ready for the stream, and the partition bucket its series are in
/// (which picks its Kinesis shard).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct StreamRecord {
    pub bucket: u32,
    pub fragments: u32,
    pub data: Vec<u8>,
}
/// Bytes of magic plus version that open every envelope.
pub const HEADER_BYTES: usize = MAGIC.len() + 1;

/// Largest scale exponent: four bits of the flags byte. Values stay below 10^15, so a non-zero
/// value never has more than 14 trailing decimal zeros.
const MAX_SCALE: usize = 15;
const POW10: [i64; MAX_SCALE + 1] = {
    let mut p = [1i64; MAX_SCALE + 1];
    let mut i = 1;
    while i <= MAX_SCALE {
        p[i] = p[i - 1] * 10;
        i += 1;
    }
    p
};
const INTERVAL_CODE_MASK: u8 = 0b0000_0111;
const ALL_PRESENT: u8 = 0b0000_1000;
const SCALE_SHIFT: u32 = 4;
const WIDTH_MASK: u8 = 0b0111_1111;
const DELTA_METHOD: u8 = 0b1000_0000;
const HEAD_SERIES: u8 = 1;
const HEAD_DAY_SHIFT: u32 = 1;
const HEAD_DAY_MASK: u8 = 0b11 << HEAD_DAY_SHIFT;
const DAY_SAME: u8 = 0;
const DAY_NEXT: u8 = 1;
const DAY_DELTA: u8 = 2;
const HEAD_VERSION: u8 = 1 << 3;
const HEAD_SOURCE: u8 = 1 << 4;
const HEAD_LINE: u8 = 1 << 5;
const HEAD_QUALITY: u8 = 1 << 6;
const HEAD_FLAGS: u8 = 1 << 7;
/// Fewest bytes a fragment can take (a head byte, then a width-0 pack byte and a one-byte
/// base): bounds how many fragments a count may announce for the bytes that are left.
const MIN_FRAGMENT_BYTES: usize = 3;
/// Fewest bytes a series entry can take (id length, one id byte, unit index).
const MIN_SERIES_ENTRY_BYTES: usize = 3;

// ---------------------------------------------------------------------------------------------
// Encoding
// ---------------------------------------------------------------------------------------------

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
    TooLarge { bytes: usize, max: usize },
    /// The fragment breaks an invariant the parsers guarantee, so the envelope cannot carry it
    /// exactly (and a decoder would reject it).
    #[error("the fragment cannot be encoded: {0}")]
    Invalid(#[from] InvalidFragment),
}

/// A fragment outside what the envelope represents.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum InvalidFragment {
    #[error("interval length {0} minutes is not one of 5, 10, 15, 30, 60")]
    Interval(u16),
    #[error("{len} slots do not make a day of {interval_minutes}-minute intervals")]
    SlotCount { interval_minutes: u16, len: usize },
    #[error("quality bits {0:#04x} include undefined flags")]
    Quality(u8),
    #[error("day {0} is outside years 1900–2999")]
    Day(Day),
    #[error("slot {slot} holds {value}, beyond the ±10^9 kWh bound of a single value")]
    Value { slot: usize, value: i64 },
}

/// The previous fragment's fields, which the next one's deltas and omissions refer to.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
struct Cursor {
    series: u64,
    day: i64,
    version: i64,
    source: u64,
    line: u64,
    flags: u8,
    quality: u8,
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
/// use meterflow_core::envelope::{EnvelopeBuilder, PushError, MAX_RECORD_BYTES};
/// # let fragments: Vec<meterflow_core::Fragment> = Vec::new();
/// let mut builder = EnvelopeBuilder::new(MAX_RECORD_BYTES);
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
        EnvelopeBuilder::new(MAX_RECORD_BYTES)
    }
}

impl EnvelopeBuilder {
    /// A builder whose envelopes never exceed `max_bytes` (normally [`MAX_RECORD_BYTES`]).
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

    pub fn max_bytes(&self) -> usize {
        self.max_bytes
    }

    /// Fragments in the envelope so far.
    pub fn len(&self) -> usize {
        self.count
    }

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

    fn push_entry(&mut self, f: &impl Entry) -> Result<(), PushError> {
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
        f: &impl Entry,
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

fn value_in_range(v: i64) -> bool {
    v > -MAX_ABS_VALUE && v < MAX_ABS_VALUE
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
trait Entry {
    fn keys(&self) -> (&SeriesId, &Unit, &Arc<str>);
    /// Day, version, line, quality and flags byte; `values` is scratch space shared with
    /// [`payload`](Entry::payload).
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

impl Entry for Checked<'_> {
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

impl Entry for RawFragment<'_> {
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
fn exact_div(v: i64, e: usize) -> i64 {
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

fn bit_width(v: u64) -> u32 {
    u64::BITS - v.leading_zeros()
}

fn packed_len(count: usize, width: u32) -> usize {
    (count * width as usize).div_ceil(8)
}

/// LSB-first bit packer. A `u64` accumulator flushed 32 bits at a time: cheaper than a `u128`
/// shifted per value, and the same bytes.
struct BitWriter<'a> {
    out: &'a mut Vec<u8>,
    acc: u64,
    /// Bits held in `acc`, always below 32 between calls.
    bits: u32,
}

impl<'a> BitWriter<'a> {
    fn new(out: &'a mut Vec<u8>) -> Self {
        BitWriter {
            out,
            acc: 0,
            bits: 0,
        }
    }

    #[inline(always)]
    fn put(&mut self, v: u64, width: u32) {
        debug_assert!(width == 64 || v >> width == 0);
        if width > 32 {
            return self.put_wide(v, width);
        }
        self.put_small(v, width);
    }

    #[cold]
    fn put_wide(&mut self, v: u64, width: u32) {
        self.put_small(v & 0xFFFF_FFFF, 32);
        self.put_small(v >> 32, width - 32);
    }

    #[inline(always)]
    fn put_small(&mut self, v: u64, width: u32) {
        self.acc |= v << self.bits;
        self.bits += width;
        if self.bits >= 32 {
            self.out.extend_from_slice(&(self.acc as u32).to_le_bytes());
            self.acc >>= 32;
            self.bits -= 32;
        }
    }

    fn finish(self) {
        let n = self.bits.div_ceil(8) as usize;
        self.out.extend_from_slice(&self.acc.to_le_bytes()[..n]);
    }
}

fn zigzag(v: i64) -> u64 {
    ((v << 1) ^ (v >> 63)) as u64
}

fn unzigzag(v: u64) -> i64 {
    ((v >> 1) as i64) ^ -((v & 1) as i64)
}

fn put_varint(out: &mut Vec<u8>, mut v: u64) {
    while v >= 0x80 {
        out.push(v as u8 | 0x80);
        v >>= 7;
    }
    out.push(v as u8);
}

fn varint_len(v: u64) -> usize {
    (bit_width(v).max(1) as usize).div_ceil(7)
}

// ---------------------------------------------------------------------------------------------
// Decoding
// ---------------------------------------------------------------------------------------------

/// Why bytes are not a readable envelope.
///
/// Only [`DecodeError::NewerVersion`] can succeed later (after upgrading the reader); every
/// other variant means the bytes are not, or no longer, a valid envelope and never will be.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum DecodeError {
    #[error("not a meterflow envelope (bad magic)")]
    BadMagic,
    #[error("envelope version {found} is newer than this build understands ({supported}); upgrade the aggregator")]
    NewerVersion { found: u8, supported: u8 },
    #[error("corrupt envelope: it ends at byte {offset} in the middle of {what}")]
    Truncated { offset: usize, what: &'static str },
    #[error("corrupt envelope at byte {offset}: {reason}")]
    Corrupt { offset: usize, reason: String },
}

impl DecodeError {
    /// True when a newer producer wrote the record: retry after upgrading, do not discard.
    pub fn is_newer_version(&self) -> bool {
        matches!(self, DecodeError::NewerVersion { .. })
    }
}

/// Decodes a whole envelope.
///
/// No length field can make this allocate beyond what the input holds: every count is checked
/// against the bytes left before anything is reserved for it. Decoded fragments are still far
/// larger than their encoding (a run of repeated 5-minute days costs 3 bytes each on the wire
/// and 2.3 KB each in memory), so the aggregator should fold with [`fragments`], which holds
/// one fragment at a time.
pub fn decode(bytes: &[u8]) -> Result<Vec<Fragment>, DecodeError> {
    let iter = fragments(bytes)?;
    // The count is bounded by the input's length already; reserving for at most a few
    // thousand up front keeps a corrupt count from reserving memory the data never fills.
    let mut out = Vec::with_capacity(iter.remaining().min(4096));
    for f in iter {
        out.push(f?);
    }
    Ok(out)
}

/// Reads an envelope's header and dictionaries and returns an iterator over its fragments.
///
/// The iterator yields at most one error, after which it ends; bytes left over after the
/// announced fragments are reported as an error too, so a caller that consumes the iterator
/// fully has validated the whole record.
pub fn fragments(bytes: &[u8]) -> Result<Fragments<'_>, DecodeError> {
    let env = Envelope::parse(bytes)?;
    Ok(Fragments {
        walk: Walk::new(&env),
        env,
        slots: Slots::new(0),
    })
}

/// An envelope's header and dictionaries, read once; its fragments are read lazily, decoded
/// ([`fragments`]) or as they sit in the record ([`Envelope::raw_fragments`]).
#[derive(Debug)]
pub struct Envelope<'a> {
    /// Positioned at the first fragment.
    body: Reader<'a>,
    series: Vec<(SeriesId, Unit)>,
    sources: Vec<Arc<str>>,
    count: usize,
}

impl<'a> Envelope<'a> {
    /// Reads the header and dictionaries; fragments are checked as they are read.
    pub fn parse(bytes: &'a [u8]) -> Result<Envelope<'a>, DecodeError> {
        let mut r = Reader { buf: bytes, pos: 0 };
        if bytes.len() < MAGIC.len() || bytes[..MAGIC.len()] != MAGIC {
            return Err(DecodeError::BadMagic);
        }
        r.pos = MAGIC.len();
        let version = r.byte("the format version")?;
        if version > FORMAT_VERSION {
            return Err(DecodeError::NewerVersion {
                found: version,
                supported: FORMAT_VERSION,
            });
        }
        if version == 0 {
            return Err(r.corrupt(r.pos - 1, "format version 0 was never written".into()));
        }

        let n_units = r.count("the unit dictionary", 1)?;
        let mut units = Vec::with_capacity(n_units);
        for _ in 0..n_units {
            units.push(Unit::from_stored(r.str_with_len("a unit")?));
        }
        let n_series = r.count("the series dictionary", MIN_SERIES_ENTRY_BYTES)?;
        let mut series = Vec::with_capacity(n_series);
        for i in 0..n_series {
            let at = r.pos;
            let id = r.bytes_with_len("a series id")?;
            // `check` first: `parse` would trim blanks, and a stored id must be exact.
            let id = SeriesId::check(id)
                .and_then(|()| SeriesId::parse(id))
                .map_err(|e| r.corrupt(at, format!("series #{i} in the dictionary: {e}")))?;
            let at = r.pos;
            let u = r.varint("a unit index")?;
            let unit = usize::try_from(u)
                .ok()
                .and_then(|u| units.get(u))
                .ok_or_else(|| {
                    r.corrupt(
                        at,
                        format!("series #{i} names unit {u} of a {n_units}-entry dictionary"),
                    )
                })?;
            series.push((id, unit.clone()));
        }
        let n_sources = r.count("the source dictionary", 1)?;
        let mut sources = Vec::with_capacity(n_sources);
        for _ in 0..n_sources {
            sources.push(Arc::<str>::from(r.str_with_len("a source")?));
        }
        let remaining = r.count("the fragment count", MIN_FRAGMENT_BYTES)?;
        Ok(Envelope {
            body: r,
            series,
            sources,
            count: remaining,
        })
    }

    /// Fragments the envelope announces.
    pub fn len(&self) -> usize {
        self.count
    }

    pub fn is_empty(&self) -> bool {
        self.count == 0
    }

    /// The fragments without decoding their values into slots (each value is still checked,
    /// so consuming the iterator fully validates the record exactly as [`fragments`] does).
    pub fn raw_fragments(&self) -> RawFragments<'_> {
        RawFragments {
            walk: Walk::new(self),
            env: self,
        }
    }
}

/// A fragment as it sits in an envelope: decoded keys and fields, values still encoded.
/// Re-encode it with [`EnvelopeBuilder::push_raw`] or decode it by decoding its envelope.
#[derive(Debug, Clone, Copy)]
pub struct RawFragment<'e> {
    pub series: &'e SeriesId,
    pub unit: &'e Unit,
    pub source: &'e Arc<str>,
    pub day: Day,
    pub version: Version,
    pub line: u64,
    pub quality: Quality,
    pub interval_minutes: u16,
    /// Interval code, presence and scale, as encoded.
    flags: u8,
    /// The presence bitmap and packed values, exactly as encoded.
    payload: &'e [u8],
}

/// The fragments of one envelope with their values left encoded. See [`Envelope::raw_fragments`].
#[derive(Debug)]
pub struct RawFragments<'e> {
    env: &'e Envelope<'e>,
    walk: Walk<'e>,
}

impl<'e> Iterator for RawFragments<'e> {
    type Item = Result<RawFragment<'e>, DecodeError>;

    fn next(&mut self) -> Option<Self::Item> {
        let env = self.env;
        let head = self.walk.next_head(env, &mut ())?;
        Some(head.map(|h| {
            let (series, unit) = &env.series[h.series];
            RawFragment {
                series,
                unit,
                source: &env.sources[h.source],
                day: h.day,
                version: h.next.version,
                line: h.next.line,
                quality: h.quality,
                interval_minutes: h.interval_minutes,
                flags: h.next.flags,
                payload: h.payload,
            }
        }))
    }

    fn size_hint(&self) -> (usize, Option<usize>) {
        self.walk.size_hint()
    }
}

impl std::iter::FusedIterator for RawFragments<'_> {}

/// The fragments of one envelope, decoded lazily. See [`fragments`].
#[derive(Debug)]
pub struct Fragments<'a> {
    env: Envelope<'a>,
    walk: Walk<'a>,
    /// Reused while reading; each fragment gets a copy of exactly its length.
    slots: Slots,
}

impl Fragments<'_> {
    /// Fragments the envelope announces that have not been yielded yet.
    pub fn remaining(&self) -> usize {
        self.walk.remaining
    }
}

impl Iterator for Fragments<'_> {
    type Item = Result<Fragment, DecodeError>;

    fn next(&mut self) -> Option<Self::Item> {
        let head = self.walk.next_head(&self.env, &mut self.slots)?;
        Some(head.map(|h| {
            let (series, unit) = &self.env.series[h.series];
            Fragment {
                series: series.clone(),
                day: h.day,
                version: h.next.version,
                source: self.env.sources[h.source].clone(),
                line: h.next.line,
                interval_minutes: h.interval_minutes,
                unit: unit.clone(),
                quality: h.quality,
                slots: self.slots.clone(),
            }
        }))
    }

    fn size_hint(&self) -> (usize, Option<usize>) {
        self.walk.size_hint()
    }
}

impl std::iter::FusedIterator for Fragments<'_> {}

/// Where decoded values go: the slots of a fragment, or nowhere (checked and dropped).
trait Values {
    /// False for a sink that drops values: the reader may then skip unpacking them when it
    /// can prove them valid without.
    const DECODES: bool;
    fn start(&mut self, len: usize);
    fn set(&mut self, slot: usize, value: i64);
}

impl Values for Slots {
    const DECODES: bool = true;
    fn start(&mut self, len: usize) {
        self.reset(len);
    }

    fn set(&mut self, slot: usize, value: i64) {
        Slots::set(self, slot, value);
    }
}

impl Values for () {
    const DECODES: bool = false;
    fn start(&mut self, _len: usize) {}
    fn set(&mut self, _slot: usize, _value: i64) {}
}

/// A fragment's fields as read, with dictionary indexes (checked against the dictionaries).
struct Head<'a> {
    series: usize,
    source: usize,
    day: Day,
    quality: Quality,
    interval_minutes: u16,
    next: Cursor,
    payload: &'a [u8],
}

/// The reading position in an envelope's fragments and the previous fragment's fields.
#[derive(Debug)]
struct Walk<'a> {
    r: Reader<'a>,
    remaining: usize,
    index: usize,
    cursor: Cursor,
    done: bool,
}

impl<'a> Walk<'a> {
    fn new(env: &Envelope<'a>) -> Walk<'a> {
        Walk {
            r: env.body.clone(),
            remaining: env.count,
            index: 0,
            cursor: Cursor::default(),
            done: false,
        }
    }

    fn size_hint(&self) -> (usize, Option<usize>) {
        if self.done {
            (0, Some(0))
        } else {
            // Plus one for a possible error after the last fragment.
            (0, Some(self.remaining + 1))
        }
    }

    /// The next fragment's head, its values sent to `values`; at most one error, then `None`.
    fn next_head(
        &mut self,
        env: &Envelope<'_>,
        values: &mut impl Values,
    ) -> Option<Result<Head<'a>, DecodeError>> {
        if self.done {
            return None;
        }
        if self.remaining == 0 {
            self.done = true;
            let extra = self.r.buf.len() - self.r.pos;
            return (extra > 0).then(|| {
                Err(self.r.corrupt(
                    self.r.pos,
                    format!("{extra} bytes follow the last fragment"),
                ))
            });
        }
        self.remaining -= 1;
        let h = self.head(env.series.len(), env.sources.len(), values);
        if h.is_err() {
            self.done = true;
        }
        Some(h)
    }

    fn head<V: Values>(
        &mut self,
        n_series: usize,
        n_sources: usize,
        values: &mut V,
    ) -> Result<Head<'a>, DecodeError> {
        let r = &mut self.r;
        let start = r.pos;
        let what = |name: &str| format!("fragment #{}: {name}", self.index);

        let prev = self.cursor;
        let head = r.byte("a fragment head")?;
        let mut next = prev;
        if head & HEAD_SERIES != 0 {
            let delta = unzigzag(r.varint("a series index")?);
            next.series = prev.series.wrapping_add(delta as u64);
        }
        let series = usize::try_from(next.series)
            .ok()
            .filter(|&i| i < n_series)
            .ok_or_else(|| {
                r.corrupt(
                    start,
                    what(&format!(
                        "series index {} is outside the {}-entry dictionary",
                        next.series, n_series
                    )),
                )
            })?;
        let day_delta = match (head & HEAD_DAY_MASK) >> HEAD_DAY_SHIFT {
            DAY_SAME => 0,
            DAY_NEXT => 1,
            DAY_DELTA => unzigzag(r.varint("a day")?),
            _ => return Err(r.corrupt(start, what("the head byte's day code is undefined"))),
        };
        let day = prev
            .day
            .checked_add(day_delta)
            .filter(|d| d.unsigned_abs() <= 1_000_000)
            .and_then(|d| Day::from_days(d as i32))
            .ok_or_else(|| r.corrupt(start, what("the day is outside years 1900–2999")))?;
        next.day = i64::from(day.days());
        if head & HEAD_VERSION != 0 {
            next.version = prev.version.wrapping_add(unzigzag(r.varint("a version")?));
        }
        if head & HEAD_SOURCE != 0 {
            let delta = unzigzag(r.varint("a source index")?);
            next.source = prev.source.wrapping_add(delta as u64);
        }
        let source = usize::try_from(next.source)
            .ok()
            .filter(|&i| i < n_sources)
            .ok_or_else(|| {
                r.corrupt(
                    start,
                    what(&format!(
                        "source index {} is outside the {}-entry dictionary",
                        next.source, n_sources
                    )),
                )
            })?;
        next.line = if head & HEAD_LINE != 0 {
            prev.line.wrapping_add(unzigzag(r.varint("a line")?) as u64)
        } else {
            prev.line.wrapping_add(1)
        };
        if head & HEAD_QUALITY != 0 {
            next.quality = r.byte("the quality")?;
        }
        let quality = Quality::from_bits(next.quality).ok_or_else(|| {
            r.corrupt(
                start,
                what(&format!("quality bits {:#04x} are undefined", next.quality)),
            )
        })?;
        if head & HEAD_FLAGS != 0 {
            next.flags = r.byte("the fragment flags")?;
        }
        let code = usize::from(next.flags & INTERVAL_CODE_MASK);
        let interval_minutes = *INTERVAL_MINUTES
            .get(code)
            .ok_or_else(|| r.corrupt(start, what(&format!("interval code {code} is undefined"))))?;
        let len = 1440 / usize::from(interval_minutes);
        let scale = usize::from(next.flags >> SCALE_SHIFT);
        let flags = next.flags;

        values.start(len);
        let payload_at = r.pos;
        let bitmap = if flags & ALL_PRESENT != 0 {
            None
        } else {
            Some(r.bytes(len / 8, "a presence bitmap")?)
        };
        let present = |i: usize| bitmap.is_none_or(|b| b[i / 8] >> (i % 8) & 1 == 1);
        let n = match bitmap {
            None => len,
            Some(b) => b.iter().map(|x| x.count_ones() as usize).sum(),
        };
        'values: {
            if n == 0 {
                break 'values;
            }
            let at = r.pos;
            let pack = r.byte("the value packing")?;
            let width = u32::from(pack & WIDTH_MASK);
            if width > 64 {
                return Err(r.corrupt(at, what(&format!("bit width {width} exceeds 64"))));
            }
            let delta = pack & DELTA_METHOD != 0;
            let base = unzigzag(r.varint("the base value")?);
            let words = if delta { n - 1 } else { n };
            let at = r.pos;
            let packed = r.bytes(packed_len(words, width), "packed values")?;
            let padding_error = || DecodeError::Corrupt {
                offset: at,
                reason: what("padding bits after the packed values are not zero"),
            };
            if !V::DECODES && surely_in_range(base, width, words, delta, scale) {
                // Checking only: the header proves every value in range, so what is left to
                // check is that the bits after the last word are zero.
                let used = words * width as usize % 8;
                if used != 0 && packed.last().is_some_and(|b| b >> used != 0) {
                    return Err(padding_error());
                }
                break 'values;
            }
            let mut bits = BitReader {
                buf: packed,
                pos: 0,
                acc: 0,
                bits: 0,
            };
            let out_of_range = || DecodeError::Corrupt {
                offset: at,
                reason: what("a value is beyond ±10^9 kWh"),
            };
            let mut prev = base;
            let mut first = true;
            for slot in (0..len).filter(|&i| present(i)) {
                let scaled = if delta {
                    if first {
                        base
                    } else {
                        prev.checked_add(unzigzag(bits.get(width)))
                            .ok_or_else(out_of_range)?
                    }
                } else {
                    i64::try_from(bits.get(width))
                        .ok()
                        .and_then(|o| base.checked_add(o))
                        .ok_or_else(out_of_range)?
                };
                first = false;
                prev = scaled;
                let v = scaled
                    .checked_mul(POW10[scale])
                    .filter(|&v| value_in_range(v))
                    .ok_or_else(out_of_range)?;
                values.set(slot, v);
            }
            if bits.acc != 0 {
                return Err(padding_error());
            }
        }
        self.index += 1;
        self.cursor = next;
        Ok(Head {
            series,
            source,
            day,
            quality,
            interval_minutes,
            next,
            payload: &r.buf[payload_at..r.pos],
        })
    }
}

/// True when the packing header alone proves every value lies within ±[`MAX_ABS_VALUE`]:
/// frame-of-reference values lie in `base..base + 2^width`, delta-coded ones within
/// `words × 2^(width-1)` of `base`. Meter data is far inside the bound, so a validating walk
/// skips unpacking its values.
fn surely_in_range(base: i64, width: u32, words: usize, delta: bool, scale: usize) -> bool {
    if width > 62 {
        return false;
    }
    // At most 2^63 + 288 × 2^61 times 10^15: far inside i128.
    let (base, p) = (i128::from(base), i128::from(POW10[scale]));
    let (lo, hi) = if delta {
        let span = if width == 0 {
            0
        } else {
            words as i128 * (1i128 << (width - 1))
        };
        (base - span, base + span)
    } else {
        (base, base + (1i128 << width) - 1)
    };
    let max = i128::from(MAX_ABS_VALUE);
    lo * p > -max && hi * p < max
}

#[derive(Debug, Clone)]
struct Reader<'a> {
    buf: &'a [u8],
    pos: usize,
}

impl<'a> Reader<'a> {
    fn corrupt(&self, offset: usize, reason: String) -> DecodeError {
        DecodeError::Corrupt { offset, reason }
    }

    fn truncated(&self, what: &'static str) -> DecodeError {
        DecodeError::Truncated {
            offset: self.buf.len(),
            what,
        }
    }

    fn byte(&mut self, what: &'static str) -> Result<u8, DecodeError> {
        let b = *self.buf.get(self.pos).ok_or_else(|| self.truncated(what))?;
        self.pos += 1;
        Ok(b)
    }

    fn bytes(&mut self, n: usize, what: &'static str) -> Result<&'a [u8], DecodeError> {
        let end = self
            .pos
            .checked_add(n)
            .filter(|&e| e <= self.buf.len())
            .ok_or_else(|| self.truncated(what))?;
        let s = &self.buf[self.pos..end];
        self.pos = end;
        Ok(s)
    }

    fn varint(&mut self, what: &'static str) -> Result<u64, DecodeError> {
        let start = self.pos;
        let mut v = 0u64;
        for shift in (0..64).step_by(7) {
            let b = self.byte(what)?;
            if shift == 63 && b > 1 {
                return Err(self.corrupt(start, format!("{what} overflows 64 bits")));
            }
            v |= u64::from(b & 0x7f) << shift;
            if b < 0x80 {
                return Ok(v);
            }
        }
        Err(self.corrupt(start, format!("{what} overflows 64 bits")))
    }

    /// A count of items each at least `min_bytes` long, refused when the rest of the input
    /// could not hold that many: no length field can make us allocate beyond the input.
    fn count(&mut self, what: &'static str, min_bytes: usize) -> Result<usize, DecodeError> {
        let at = self.pos;
        let n = self.varint(what)?;
        let left = self.buf.len() - self.pos;
        usize::try_from(n)
            .ok()
            .filter(|&n| n <= left / min_bytes)
            .ok_or_else(|| {
                self.corrupt(
                    at,
                    format!("{what} announces {n} entries but only {left} bytes follow"),
                )
            })
    }

    fn bytes_with_len(&mut self, what: &'static str) -> Result<&'a [u8], DecodeError> {
        let n = self.varint(what)?;
        let n = usize::try_from(n).map_err(|_| self.truncated(what))?;
        self.bytes(n, what)
    }

    fn str_with_len(&mut self, what: &'static str) -> Result<&'a str, DecodeError> {
        let at = self.pos;
        let b = self.bytes_with_len(what)?;
        std::str::from_utf8(b).map_err(|_| self.corrupt(at, format!("{what} is not UTF-8")))
    }
}

/// Reads fixed-width words from a slice whose length was checked to hold them all; the
/// mirror of [`BitWriter`], refilling 32 bits at a time.
struct BitReader<'a> {
    buf: &'a [u8],
    pos: usize,
    acc: u64,
    /// Bits held in `acc`, always below 32 between calls.
    bits: u32,
}

impl BitReader<'_> {
    #[inline(always)]
    fn get(&mut self, width: u32) -> u64 {
        if width > 32 {
            return self.get_wide(width);
        }
        self.get_small(width)
    }

    #[cold]
    fn get_wide(&mut self, width: u32) -> u64 {
        let lo = self.get_small(32);
        lo | (self.get_small(width - 32) << 32)
    }

    #[inline(always)]
    fn get_small(&mut self, width: u32) -> u64 {
        if self.bits < width {
            let mut word = [0u8; 4];
            let rest = self.buf.get(self.pos..).unwrap_or_default();
            let n = rest.len().min(4);
            word[..n].copy_from_slice(&rest[..n]);
            self.acc |= u64::from(u32::from_le_bytes(word)) << self.bits;
            self.pos += 4;
            self.bits += 32;
        }
        let v = self.acc & ((1u64 << width) - 1);
        self.acc >>= width;
        self.bits -= width;
        v
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    fn frag(series: &str, day: Day, source: &str, line: u64, values: &[Option<i64>]) -> Fragment {
        let mut slots = Slots::new(values.len());
        for (i, v) in values.iter().enumerate() {
            if let Some(v) = v {
                slots.set(i, *v);
            }
        }
        Fragment {
            series: series.parse().unwrap(),
            day,
            version: 1_546_300_800_000,
            source: Arc::from(source),
            line,
            interval_minutes: crate::fragment::interval_for_slots(values.len()).unwrap(),
            unit: Unit::kwh(),
            quality: Quality::UNSPECIFIED,
            slots,
        }
    }

    fn day(y: i32, m: u32, d: u32) -> Day {
        Day::from_ymd(y, m, d).unwrap()
    }

    fn encode(fragments: &[Fragment]) -> Vec<u8> {
        let mut b = EnvelopeBuilder::new(usize::MAX);
        for f in fragments {
            b.try_push(f).unwrap();
        }
        assert_eq!(b.len(), fragments.len());
        let len = b.encoded_len();
        let out = b.finish();
        assert_eq!(out.len(), len);
        out
    }

    /// Packs fragments into envelopes under `cap` the way the splitter will; returns the
    /// envelopes and the indices of fragments refused as too large.
    fn pack(fragments: &[Fragment], cap: usize) -> (Vec<Vec<u8>>, Vec<usize>) {
        let mut b = EnvelopeBuilder::new(cap);
        let mut records = Vec::new();
        let mut too_large = Vec::new();
        for (i, f) in fragments.iter().enumerate() {
            match b.try_push(f) {
                Ok(()) => {}
                Err(PushError::Full) => {
                    records.push(b.take());
                    b.try_push(f)
                        .expect("Full promises the fragment fits alone");
                }
                Err(PushError::TooLarge { bytes, max }) => {
                    assert!(bytes > max);
                    assert_eq!(max, cap);
                    too_large.push(i);
                }
                Err(e) => panic!("{e}"),
            }
            // (An empty envelope is 9 bytes, more than the smallest caps tried.)
            assert!(b.is_empty() || b.encoded_len() <= cap);
        }
        if !b.is_empty() {
            records.push(b.take());
        }
        (records, too_large)
    }

    /// splitmix64: deterministic, dependency-free test data.
    struct Rng(u64);

    impl Rng {
        fn next(&mut self) -> u64 {
            self.0 = self.0.wrapping_add(0x9E37_79B9_7F4A_7C15);
            let mut z = self.0;
            z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
            z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
            z ^ (z >> 31)
        }

        fn range(&mut self, lo: i64, hi: i64) -> i64 {
            lo + (self.next() % (hi - lo + 1) as u64) as i64
        }
    }

    /// A household's half-hourly day in Wh (0.001 kWh): a base load, a morning and an evening
    /// peak shaped as parabolic bumps, and noise; clamped to 0.05–2.0 kWh. Integer arithmetic
    /// only, so the data (and the measured size) is the same on every machine.
    fn household_day(rng: &mut Rng, base: i64, morning: i64, evening: i64) -> Vec<i64> {
        let bump = |t: i64, centre: i64, half: i64, amp: i64| {
            let d = t - centre;
            if d.abs() >= half {
                0
            } else {
                amp * (half * half - d * d) / (half * half)
            }
        };
        let m_centre = rng.range(13, 16);
        let e_centre = rng.range(35, 39);
        (0..48)
            .map(|t| {
                let v = base
                    + bump(t, m_centre, 5, morning)
                    + bump(t, e_centre, 8, evening)
                    + rng.range(-25, 25);
                v.clamp(50, 2000)
            })
            .collect()
    }

    /// `meters` households × `days` days, meter-major as wide CSV files list them.
    fn household_batch(seed: u64, meters: usize, days: usize) -> Vec<Fragment> {
        let mut rng = Rng(seed);
        let start = day(2024, 1, 1);
        let mut out = Vec::new();
        for m in 0..meters {
            let base = rng.range(100, 300);
            let morning = rng.range(150, 500);
            let evening = rng.range(300, 1000);
            for d in 0..days {
                let wh = household_day(&mut rng, base, morning, evening);
                let values: Vec<Option<i64>> = wh.iter().map(|v| Some(v * 1000)).collect();
                let line = (m * days + d + 2) as u64;
                let dd = Day::from_days(start.days() + d as i32).unwrap();
                out.push(frag(
                    &format!("NMI{:07}-E1", m),
                    dd,
                    "s3://meter-drop/2024/01/households.csv#etag=9b2cf535f27731c974343645a3985328",
                    line,
                    &values,
                ));
            }
        }
        out
    }

    /// Whole-kWh days in 4..=10 like the original project's sample file.
    fn integer_batch(seed: u64, meters: usize, days: usize) -> Vec<Fragment> {
        let mut rng = Rng(seed);
        let start = day(2019, 1, 1);
        let mut out = Vec::new();
        for m in 0..meters {
            for d in 0..days {
                let values: Vec<Option<i64>> = (0..48)
                    .map(|_| Some(rng.range(4, 10) * 1_000_000))
                    .collect();
                let dd = Day::from_days(start.days() + d as i32).unwrap();
                out.push(frag(
                    &format!("EE{:05}", m),
                    dd,
                    "consumption.csv",
                    (m * days + d + 2) as u64,
                    &values,
                ));
            }
        }
        out
    }

    fn csv_row_len(f: &Fragment) -> usize {
        let cells: Vec<String> = (0..f.slots.len())
            .map(|i| {
                f.slots
                    .get(i)
                    .map(crate::value::format_amount)
                    .unwrap_or_default()
            })
            .collect();
        format!("{},{},{}\n", f.series, f.day, cells.join(",")).len()
    }

    /// Envelope bytes per fragment (dictionaries and headers included) under the default
    /// 1 MiB cap and CSV bytes per row for the same data, both in tenths of a byte (integer
    /// arithmetic, like everything else here), and the number of records.
    fn measure(fragments: &[Fragment]) -> (usize, usize, usize) {
        let (records, too_large) = pack(fragments, MAX_RECORD_BYTES);
        assert!(too_large.is_empty());
        let total: usize = records.iter().map(Vec::len).sum();
        let csv: usize = fragments.iter().map(csv_row_len).sum();
        let decoded: Vec<Fragment> = records.iter().flat_map(|r| decode(r).unwrap()).collect();
        assert_eq!(decoded, fragments);
        let n = fragments.len();
        (total * 10 / n, csv * 10 / n, records.len())
    }

    fn tenths(x: usize) -> String {
        format!("{}.{}", x / 10, x % 10)
    }

    /// The size target: a complete half-hourly meter-day in at most 60 bytes on typical data,
    /// against ≈300 bytes as a CSV row. The generated batches are deterministic, so the sizes
    /// printed (`--nocapture`) are the same on every run and machine.
    #[test]
    fn bytes_per_meter_day() {
        let households = household_batch(7, 200, 31);
        let (env, csv, records) = measure(&households);
        println!(
            "household profiles, 3-decimal kWh, 200 meters x 31 days: {} bytes per 48-slot \
             meter-day in {records} record(s), vs {} bytes of CSV",
            tenths(env),
            tenths(csv)
        );
        assert!(env <= 600, "{} bytes per fragment", tenths(env));

        let integers = integer_batch(8, 200, 31);
        let (env, csv, records) = measure(&integers);
        println!(
            "whole-kWh days (9,8,8,10,...), 200 meters x 31 days: {} bytes per 48-slot \
             meter-day in {records} record(s), vs {} bytes of CSV",
            tenths(env),
            tenths(csv)
        );
        assert!(env <= 300, "{} bytes per fragment", tenths(env));

        // One day of many meters: each series id is carried for a single fragment.
        let one_day = household_batch(9, 2000, 1);
        let (env, csv, _) = measure(&one_day);
        println!(
            "household profiles, 2000 meters x 1 day: {} bytes per meter-day, vs {} bytes \
             of CSV",
            tenths(env),
            tenths(csv)
        );
        assert!(env <= 800, "{} bytes per fragment", tenths(env));
    }

    #[test]
    fn limits() {
        assert_eq!(MAX_RECORD_BYTES, 1_048_576);
        assert_eq!(MAGIC, *b"MFEN");
        assert_eq!(FORMAT_VERSION, 1);
        assert_eq!(HEADER_BYTES, 5);
        assert_eq!(EnvelopeBuilder::default().max_bytes(), MAX_RECORD_BYTES);
        assert_eq!(POW10[MAX_SCALE], 1_000_000_000_000_000);
        // Every interval length yields whole bitmap bytes (the layout relies on it).
        for m in INTERVAL_MINUTES {
            assert_eq!(slots_per_day(m).unwrap() % 8, 0);
        }
        // The largest value fits the scaled range the packer assumes.
        assert!(MAX_ABS_VALUE <= POW10[MAX_SCALE]);
    }

    #[test]
    fn empty_envelope() {
        let b = EnvelopeBuilder::default();
        assert_eq!((b.len(), b.is_empty(), b.encoded_len()), (0, true, 9));
        let bytes = b.finish();
        assert_eq!(bytes, b"MFEN\x01\x00\x00\x00\x00");
        assert_eq!(decode(&bytes).unwrap(), vec![]);
    }

    /// The exact bytes of a small envelope. A failure here means the layout changed: bump
    /// FORMAT_VERSION (old aggregators must refuse, not misread) and update this test.
    #[test]
    fn golden_bytes() {
        let d = day(1970, 1, 3);
        let mut a = frag("EE1", d, "f.csv", 2, &[Some(1_111_000); 24]);
        a.version = 3;
        let mut values = [None; 24];
        values[0] = Some(9_000_000);
        values[9] = Some(-1_000_000);
        let b = frag("EE1", d.succ(), "f.csv", 3, &values);
        let mut b = b;
        b.version = 3;
        let bytes = encode(&[a.clone(), b.clone()]);
        #[rustfmt::skip]
        let want: &[u8] = &[
            b'M', b'F', b'E', b'N', 1,
            1, 3, b'k', b'W', b'h',                 // units
            1, 3, b'E', b'E', b'1', 0,              // series: id, unit index
            1, 5, b'f', b'.', b'c', b's', b'v',     // sources
            2,                                      // fragments
            // a: head = day delta, version, line, quality and flags given
            0b1110_1100, 4, 6, 4, 32,               // zigzag 2, 3, 2; quality UNSPECIFIED
            0x3c,                                   // 60-minute code 4, all present, scale 3
            0, 0xae, 0x11,                          // width 0, frame of reference, min 1111
            // b: head = next day, line + 1, flags given
            0b1000_0010,
            0x64,                                   // code 4, scale 6, bitmap follows
            0b0000_0001, 0b0000_0010, 0,            // slots 0 and 9
            4, 1, 0b0000_1010,                      // width 4, min -1, offsets 10 and 0
        ];
        assert_eq!(bytes, want);
        assert_eq!(decode(&bytes).unwrap(), vec![a, b]);
    }

    #[test]
    fn full_versus_too_large() {
        let d = day(2019, 1, 1);
        let small = frag("EE00027", d, "a.csv", 2, &[Some(1_000); 48]);
        let alone = encode(std::slice::from_ref(&small)).len();

        // Room for exactly one: the second push is Full and changes nothing.
        let mut b = EnvelopeBuilder::new(alone);
        b.try_push(&small).unwrap();
        let before = b.encoded_len();
        let mut next = small.clone();
        next.day = d.succ();
        next.line = 3;
        assert_eq!(b.try_push(&next), Err(PushError::Full));
        assert_eq!(b.encoded_len(), before);
        assert_eq!(b.len(), 1);
        assert_eq!(decode(&b.take()).unwrap(), vec![small.clone()]);
        assert!(b.is_empty());
        b.try_push(&next).unwrap();
        assert_eq!(decode(&b.take()).unwrap(), vec![next]);

        // A fragment that can never fit is TooLarge, on an empty or a non-empty builder.
        let long_source = "s3://bucket/".to_string() + &"k".repeat(300);
        let big = frag("EE00027", d, &long_source, 2, &[Some(1_000); 48]);
        let mut b = EnvelopeBuilder::new(200);
        let err = b.try_push(&big).unwrap_err();
        assert!(
            matches!(err, PushError::TooLarge { bytes, max: 200 } if bytes > 300),
            "{err}"
        );
        b.try_push(&small).unwrap();
        assert!(matches!(
            b.try_push(&big),
            Err(PushError::TooLarge { max: 200, .. })
        ));
        assert_eq!(decode(&b.finish()).unwrap(), vec![small]);
        assert!(
            err.to_string().contains("more than the 200-byte cap"),
            "{err}"
        );
    }

    #[test]
    fn refuses_what_it_cannot_carry_exactly() {
        let d = day(2019, 1, 1);
        let ok = frag("EE1", d, "a", 2, &[Some(1); 48]);
        let mut b = EnvelopeBuilder::default();
        let mut f = ok.clone();
        f.interval_minutes = 7;
        assert_eq!(
            b.try_push(&f),
            Err(PushError::Invalid(InvalidFragment::Interval(7)))
        );
        let mut f = ok.clone();
        f.interval_minutes = 15;
        assert!(matches!(
            b.try_push(&f),
            Err(PushError::Invalid(InvalidFragment::SlotCount {
                len: 48,
                ..
            }))
        ));
        let mut f = ok.clone();
        f.quality = Quality(64);
        assert_eq!(
            b.try_push(&f),
            Err(PushError::Invalid(InvalidFragment::Quality(64)))
        );
        let mut f = ok.clone();
        f.day = day(2999, 12, 31).succ();
        assert_eq!(
            b.try_push(&f),
            Err(PushError::Invalid(InvalidFragment::Day(f.day)))
        );
        let mut f = ok.clone();
        f.slots.set(5, -MAX_ABS_VALUE);
        assert_eq!(
            b.try_push(&f),
            Err(PushError::Invalid(InvalidFragment::Value {
                slot: 5,
                value: -MAX_ABS_VALUE
            }))
        );
        assert!(b.is_empty());
        b.try_push(&ok).unwrap();
    }

    #[test]
    fn refuses_foreign_and_newer_records() {
        for bad in [
            &b""[..],
            b"MF",
            b"MFEX\x01",
            b"{\"meter\":1}",
            b"PK\x03\x04",
        ] {
            let err = decode(bad).unwrap_err();
            assert_eq!(err, DecodeError::BadMagic);
            assert_eq!(err.to_string(), "not a meterflow envelope (bad magic)");
            assert!(!err.is_newer_version());
        }
        let err = decode(b"MFEN\x07anything").unwrap_err();
        assert_eq!(
            err,
            DecodeError::NewerVersion {
                found: 7,
                supported: 1
            }
        );
        assert_eq!(
            err.to_string(),
            "envelope version 7 is newer than this build understands (1); upgrade the aggregator"
        );
        assert!(err.is_newer_version());
        let err = decode(b"MFEN\x00\x00\x00\x00\x00").unwrap_err();
        assert!(
            matches!(err, DecodeError::Corrupt { offset: 4, .. }),
            "{err}"
        );
        assert!(!err.is_newer_version());
        let err = decode(b"MFEN").unwrap_err();
        assert!(matches!(err, DecodeError::Truncated { .. }), "{err}");
    }

    #[test]
    fn reports_corruption_precisely() {
        let f = frag("EE1", day(2019, 1, 1), "a", 2, &[Some(1); 48]);
        let good = encode(std::slice::from_ref(&f));

        let mut extra = good.clone();
        extra.push(0);
        let err = decode(&extra).unwrap_err();
        assert!(
            err.to_string().contains("1 bytes follow the last fragment"),
            "{err}"
        );

        let cut = &good[..good.len() - 1];
        let err = decode(cut).unwrap_err();
        assert!(err.to_string().contains("ends at byte"), "{err}");

        // A count no input of this length could hold is refused before allocating.
        let mut huge = b"MFEN\x01\x00\x00\x00".to_vec();
        huge.extend_from_slice(&[0xff, 0xff, 0xff, 0xff, 0x0f]);
        let err = decode(&huge).unwrap_err();
        assert!(err.to_string().contains("announces 4294967295"), "{err}");

        // No units, one series `E E` naming unit 0, no sources, no fragments.
        let mut bad_series = b"MFEN\x01\x00\x01\x03E E\x00\x00\x00".to_vec();
        let err = decode(&bad_series).unwrap_err();
        assert!(
            err.to_string()
                .starts_with("corrupt envelope at byte 7: series #0 in the dictionary: meter id `E E` contains ' '"),
            "{err}"
        );
        bad_series[9] = b'E';
        assert_eq!(
            decode(&bad_series).unwrap_err().to_string(),
            "corrupt envelope at byte 11: series #0 names unit 0 of a 0-entry dictionary"
        );
    }

    // Property tests -------------------------------------------------------------------------

    fn arb_value() -> impl Strategy<Value = i64> {
        prop_oneof![
            Just(0i64),
            Just(MAX_ABS_VALUE - 1),
            Just(-(MAX_ABS_VALUE - 1)),
            -(MAX_ABS_VALUE - 1)..MAX_ABS_VALUE,
            (0i64..3000).prop_map(|v| v * 1000),
            (-20i64..20).prop_map(|v| v * 1_000_000),
            (-5i64..5).prop_map(|v| v * 100_000_000_000_000),
        ]
    }

    fn arb_slots(len: usize) -> impl Strategy<Value = Vec<Option<i64>>> {
        prop_oneof![
            proptest::collection::vec(proptest::option::weighted(0.8, arb_value()), len),
            proptest::collection::vec(arb_value().prop_map(Some), len),
            (arb_value(), proptest::collection::vec(any::<bool>(), len))
                .prop_map(|(v, keep)| keep.into_iter().map(|k| k.then_some(v)).collect()),
            Just(vec![None; len]),
        ]
    }

    fn arb_series() -> impl Strategy<Value = SeriesId> {
        prop_oneof![
            proptest::sample::select(vec!["EE00027", "VABD000163-E1", "a", "m.n:o_p-q"]),
            "[A-Za-z0-9._:-]{1,64}".prop_map(|s| Box::leak(s.into_boxed_str()) as &str),
        ]
        .prop_map(|s| s.parse().unwrap())
    }

    fn arb_text() -> impl Strategy<Value = String> {
        prop_oneof![
            proptest::sample::select(vec![
                "",
                "kWh",
                "kVArh",
                "s3://drop/2024/a.csv#etag=9b2cf535",
                "日本語 ünïcode",
            ])
            .prop_map(String::from),
            "\\PC{0,12}",
            "x{200,300}",
        ]
    }

    fn arb_fragment() -> impl Strategy<Value = Fragment> {
        let days =
            Day::from_ymd(1900, 1, 1).unwrap().days()..=Day::from_ymd(2999, 12, 31).unwrap().days();
        (
            arb_series(),
            arb_text(),
            prop_oneof![days.clone(), Just(*days.start()), Just(*days.end())],
            prop_oneof![
                any::<i64>(),
                Just(i64::MIN),
                Just(i64::MAX),
                -3i64..3,
                1_500_000_000_000i64..1_800_000_000_000
            ],
            arb_text(),
            prop_oneof![any::<u64>(), Just(u64::MAX), 0u64..100],
            0u8..64,
            proptest::sample::select(INTERVAL_MINUTES.to_vec()),
        )
            .prop_flat_map(
                |(series, unit, days, version, source, line, quality, minutes)| {
                    arb_slots(slots_per_day(minutes).unwrap()).prop_map(move |values| {
                        let mut slots = Slots::new(values.len());
                        for (i, v) in values.iter().enumerate() {
                            if let Some(v) = v {
                                slots.set(i, *v);
                            }
                        }
                        Fragment {
                            series: series.clone(),
                            day: Day::from_days(days).unwrap(),
                            version,
                            source: Arc::from(source.as_str()),
                            line,
                            interval_minutes: minutes,
                            unit: Unit::from_stored(&unit),
                            quality: Quality(quality),
                            slots,
                        }
                    })
                },
            )
    }

    /// Random fragments, each one by a random mask made to repeat parts of the previous one
    /// (series, day or next day, version, source, next line, quality, layout) as real batches
    /// do, so every elision in the head byte is exercised.
    fn arb_batch(max: usize) -> impl Strategy<Value = Vec<Fragment>> {
        proptest::collection::vec((arb_fragment(), any::<u8>()), 0..max).prop_map(|items| {
            let mut out: Vec<Fragment> = Vec::with_capacity(items.len());
            for (mut f, mask) in items {
                if let Some(p) = out.last() {
                    if mask & 1 != 0 {
                        f.series = p.series.clone();
                        f.unit = p.unit.clone();
                    }
                    if mask & 2 != 0 {
                        f.day = p.day;
                    } else if mask & 4 != 0 {
                        f.day = Day::from_days(p.day.days() + 1).unwrap_or(p.day);
                    }
                    if mask & 8 != 0 {
                        f.version = p.version;
                    }
                    if mask & 16 != 0 {
                        f.source = p.source.clone();
                    }
                    if mask & 32 != 0 {
                        f.line = p.line.wrapping_add(1);
                    }
                    if mask & 64 != 0 {
                        f.quality = p.quality;
                    }
                    if mask & 128 != 0 {
                        f.interval_minutes = p.interval_minutes;
                        f.slots = p.slots.clone();
                    }
                }
                out.push(f);
            }
            out
        })
    }

    proptest! {
        #[test]
        fn round_trips_exactly(batch in arb_batch(12)) {
            let bytes = encode(&batch);
            prop_assert_eq!(&decode(&bytes).unwrap(), &batch);
            let lazily: Result<Vec<_>, _> = fragments(&bytes).unwrap().collect();
            prop_assert_eq!(&lazily.unwrap(), &batch);
        }

        #[test]
        fn splits_under_any_cap(batch in arb_batch(16), cap in 8usize..700) {
            let (records, too_large) = pack(&batch, cap);
            let mut decoded = Vec::new();
            for r in &records {
                prop_assert!(r.len() <= cap);
                let fs = decode(r).unwrap();
                prop_assert!(!fs.is_empty());
                decoded.extend(fs);
            }
            let expected: Vec<Fragment> = batch
                .iter()
                .enumerate()
                .filter(|(i, _)| !too_large.contains(i))
                .map(|(_, f)| f.clone())
                .collect();
            prop_assert_eq!(decoded, expected);
            for &i in &too_large {
                prop_assert!(encode(std::slice::from_ref(&batch[i])).len() > cap);
            }
        }

        #[test]
        fn exact_division_agrees_with_the_operator(
            q in prop_oneof![-MAX_ABS_VALUE..MAX_ABS_VALUE, Just(0i64), Just(-1i64), Just(1i64)],
            e in 0usize..=MAX_SCALE,
        ) {
            // Every multiple of 10^e whose quotient a scaled value can have.
            let v = q / POW10[e] * POW10[e];
            prop_assert_eq!(exact_div(v, e), v / POW10[e]);
        }

        #[test]
        fn raw_copies_encode_like_the_decoded_fragments(batch in arb_batch(12), cap in 64usize..2000) {
            // Regrouping without decoding: the same bytes as encoding the fragments afresh,
            // whatever envelope boundaries the cap puts between them.
            let (records, _) = pack(&batch, cap);
            for record in &records {
                let env = Envelope::parse(record).unwrap();
                let mut copy = EnvelopeBuilder::new(cap);
                for raw in env.raw_fragments() {
                    copy.push_raw(&raw.unwrap()).unwrap();
                }
                prop_assert_eq!(&copy.finish(), record);
            }
            // One fragment at a time into separate envelopes, in reverse order.
            let bytes = encode(&batch);
            let env = Envelope::parse(&bytes).unwrap();
            let raws: Vec<_> = env.raw_fragments().collect::<Result<_, _>>().unwrap();
            prop_assert_eq!(raws.len(), batch.len());
            for (raw, f) in raws.iter().rev().zip(batch.iter().rev()) {
                prop_assert_eq!((raw.series, raw.day, raw.version, &**raw.source, raw.line), (&f.series, f.day, f.version, &*f.source, f.line));
                let mut one = EnvelopeBuilder::default();
                one.push_raw(raw).unwrap();
                prop_assert_eq!(decode(&one.finish()).unwrap(), vec![f.clone()]);
            }
        }

        #[test]
        fn arbitrary_bytes_never_panic(bytes in proptest::collection::vec(any::<u8>(), 0..400), headed in any::<bool>()) {
            let input = if headed { [&b"MFEN\x01"[..], &bytes].concat() } else { bytes };
            if let Ok(fs) = decode(&input) {
                // Whatever decodes is valid: it re-encodes and decodes to itself.
                prop_assert_eq!(decode(&encode(&fs)).unwrap(), fs);
            }
        }

        #[test]
        fn damaged_envelopes_never_panic(
            batch in arb_batch(6),
            flips in proptest::collection::vec((any::<usize>(), 1u8..=255), 0..4),
            cut in proptest::option::of(any::<usize>()),
        ) {
            let mut bytes = encode(&batch);
            for (at, x) in flips {
                let i = at % bytes.len();
                bytes[i] ^= x;
            }
            let whole = bytes.len();
            if let Some(c) = cut {
                bytes.truncate(c % whole);
            }
            // The raw walk accepts exactly what the decoder accepts: it decides quarantine.
            let raw_ok = Envelope::parse(&bytes)
                .is_ok_and(|env| env.raw_fragments().all(|r| r.is_ok()));
            prop_assert_eq!(raw_ok, decode(&bytes).is_ok());
            match decode(&bytes) {
                Ok(fs) => {
                    prop_assert_eq!(bytes.len(), whole, "a truncated envelope decoded");
                    prop_assert_eq!(decode(&encode(&fs)).unwrap(), fs);
                }
                Err(e) => prop_assert!(!e.to_string().is_empty()),
            }
        }
    }
}
