//! Decoding: an envelope back into fragments, validated as it is walked, never panicking on
//! arbitrary bytes ([`decode`], [`Envelope`]).

use std::sync::Arc;

use crate::day::Day;
use crate::fragment::{Fragment, Quality, Slots, Version, INTERVAL_MINUTES};
use crate::series::{SeriesId, Unit};
use crate::value::MAX_ABS_VALUE;

use super::bits::*;
use super::*;

/// Why bytes are not a readable envelope.
///
/// Only [`DecodeError::NewerVersion`] can succeed later (after upgrading the reader); every
/// other variant means the bytes are not, or no longer, a valid envelope and never will be.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum DecodeError {
    /// The bytes do not start with [`MAGIC`]: not a meterflow envelope at all.
    #[error("not a meterflow envelope (bad magic)")]
    BadMagic,
    /// A newer build wrote the envelope; this one reads it once upgraded.
    #[error("envelope version {found} is newer than this build understands ({supported}); upgrade the aggregator")]
    NewerVersion {
        /// The format version the envelope declares.
        found: u8,
        /// The newest version this build reads ([`FORMAT_VERSION`]).
        supported: u8,
    },
    /// The bytes end before the envelope does.
    #[error("corrupt envelope: it ends at byte {offset} in the middle of {what}")]
    Truncated {
        /// Where the data ran out: the length of the bytes given.
        offset: usize,
        /// The field being read when they ran out.
        what: &'static str,
    },
    /// The bytes are invalid at `offset`: a count, index or value out of range, or bytes left
    /// over after the last fragment.
    #[error("corrupt envelope at byte {offset}: {reason}")]
    Corrupt {
        /// Byte offset of the offending field.
        offset: usize,
        /// What is wrong there.
        reason: String,
    },
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

    /// True when the envelope announces no fragments.
    pub fn is_empty(&self) -> bool {
        self.count == 0
    }

    /// Where the first fragment's head starts and its values start, and the fields it
    /// encodes (`None` for an envelope without fragments): what [`super::shift_lines`]
    /// rewrites.
    pub(super) fn first_head(&self) -> Result<Option<(usize, usize, Cursor)>, DecodeError> {
        let mut walk = Walk::new(self);
        let start = walk.r.pos;
        match walk.next_head(self, &mut ()) {
            None => Ok(None),
            Some(h) => {
                let h = h?;
                let values_at = h.payload.as_ptr() as usize - self.body.buf.as_ptr() as usize;
                Ok(Some((start, values_at, h.next)))
            }
        }
    }

    /// Every fragment as [`raw_fragments`](Self::raw_fragments) gives it, checked, in one
    /// allocation of the announced count (which [`Envelope::parse`] bounds by the bytes left,
    /// so a corrupt count cannot ask for more than the record could hold): a record's few
    /// thousand fragments are not copied again at every doubling of a growing vector.
    pub fn all_raw_fragments(&self) -> Result<Vec<RawFragment<'_>>, DecodeError> {
        let mut all = Vec::with_capacity(self.count);
        for f in self.raw_fragments() {
            all.push(f?);
        }
        Ok(all)
    }

    /// Where every fragment sits and the fields its head gives, checked as
    /// [`all_raw_fragments`](Self::all_raw_fragments) checks them: what a
    /// [`super::ValidRecord`] keeps so that its fragments are not walked again.
    pub(super) fn spots(&self) -> Result<Vec<Spot>, DecodeError> {
        let mut all = Vec::with_capacity(self.count);
        let mut walk = Walk::new(self);
        let base = self.body.buf.as_ptr() as usize;
        while let Some(h) = walk.next_head(self, &mut ()) {
            let h = h?;
            // The payload is a subslice of the envelope's own bytes.
            let start = h.payload.as_ptr() as usize - base;
            all.push(Spot {
                series: h.series as u32,
                source: h.source as u32,
                day: h.day,
                version: h.next.version,
                line: h.next.line,
                quality: h.quality,
                interval_minutes: h.interval_minutes,
                flags: h.next.flags,
                payload: start..start + h.payload.len(),
            });
        }
        Ok(all)
    }

    /// The fragment at `spot`, which [`spots`](Self::spots) of these very bytes gave.
    pub(super) fn raw_at(&self, spot: &Spot) -> RawFragment<'_> {
        let (series, unit) = &self.series[spot.series as usize];
        RawFragment {
            series,
            unit,
            source: &self.sources[spot.source as usize],
            day: spot.day,
            version: spot.version,
            line: spot.line,
            quality: spot.quality,
            interval_minutes: spot.interval_minutes,
            flags: spot.flags,
            payload: &self.body.buf[spot.payload.clone()],
        }
    }

    /// The fragments without decoding their values into slots (each value is still checked,
    /// so consuming the iterator fully validates the record exactly as [`fragments`] does).
    pub fn raw_fragments(&self) -> RawFragments<'_> {
        RawFragments {
            walk: Walk::new(self),
            env: self,
        }
    }

    /// The fragments with the sum and count of their values instead of the values: all a day
    /// read from one fragment needs (most days), without a slot vector per fragment. Values are
    /// decoded and checked exactly as [`fragments`] does.
    pub fn summed_fragments(&self) -> SummedFragments<'_> {
        SummedFragments {
            walk: Walk::new(self),
            env: self,
            sum: Sum::default(),
        }
    }
}

/// A fragment's keys and fields with what its values add up to. See
/// [`Envelope::summed_fragments`].
#[derive(Debug, Clone, Copy)]
pub struct SummedFragment<'e> {
    /// The keys and fields, as [`Envelope::raw_fragments`] gives them.
    pub raw: RawFragment<'e>,
    /// The exact sum of the values present (as [`Slots::total`]).
    pub total: i64,
    /// Slots holding a value (as [`Slots::present`]).
    pub present: usize,
    /// Slots in the fragment, present or not (as [`Slots::len`]).
    pub slots: usize,
}

/// The fragments of one envelope, summed. See [`Envelope::summed_fragments`].
#[derive(Debug)]
pub struct SummedFragments<'e> {
    env: &'e Envelope<'e>,
    walk: Walk<'e>,
    sum: Sum,
}

impl<'e> Iterator for SummedFragments<'e> {
    type Item = Result<SummedFragment<'e>, DecodeError>;

    fn next(&mut self) -> Option<Self::Item> {
        let env = self.env;
        let head = self.walk.next_head(env, &mut self.sum)?;
        let sum = self.sum;
        Some(head.map(|h| SummedFragment {
            raw: h.raw(env),
            total: sum.total,
            present: sum.present,
            slots: sum.len,
        }))
    }

    fn size_hint(&self) -> (usize, Option<usize>) {
        self.walk.size_hint()
    }
}

impl std::iter::FusedIterator for SummedFragments<'_> {}

/// A [`Values`] sink that keeps only the sum and count.
#[derive(Debug, Default, Clone, Copy)]
struct Sum {
    total: i64,
    present: usize,
    len: usize,
}

impl Values for Sum {
    const DECODES: bool = true;
    fn start(&mut self, len: usize) {
        *self = Sum {
            len,
            ..Sum::default()
        };
    }

    fn set(&mut self, _slot: usize, value: i64) {
        // Wrapping like `Slots::total`; validated values cannot reach it.
        self.total = self.total.wrapping_add(value);
        self.present += 1;
    }
}

/// A fragment as it sits in an envelope: decoded keys and fields, values still encoded.
/// Re-encode it with [`EnvelopeBuilder::push_raw`] or decode it by decoding its envelope.
#[derive(Debug, Clone, Copy)]
pub struct RawFragment<'e> {
    /// The series, borrowed from the envelope's dictionary.
    pub series: &'e SeriesId,
    /// The unit the series' values are millionths of.
    pub unit: &'e Unit,
    /// The source name (object and delivery, see [`crate::source`]), shared by the
    /// dictionary.
    pub source: &'e Arc<str>,
    /// The civil day the values belong to.
    pub day: Day,
    /// Epoch milliseconds that order corrections: for each slot the higher version wins.
    pub version: Version,
    /// First input line that contributed; orders fragments of one source.
    pub line: u64,
    /// Quality flags of the values.
    pub quality: Quality,
    /// Interval length in minutes, one of [`INTERVAL_MINUTES`].
    pub interval_minutes: u16,
    /// Interval code, presence and scale, as encoded.
    pub(super) flags: u8,
    /// The presence bitmap and packed values, exactly as encoded.
    pub(super) payload: &'e [u8],
}

/// A checked fragment's place in its envelope and its head's fields, with dictionary indexes:
/// a [`RawFragment`] without the borrows.
#[derive(Debug, Clone)]
pub(super) struct Spot {
    series: u32,
    source: u32,
    day: Day,
    version: Version,
    line: u64,
    quality: Quality,
    interval_minutes: u16,
    flags: u8,
    payload: std::ops::Range<usize>,
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
        Some(head.map(|h| h.raw(env)))
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

impl<'a> Head<'a> {
    /// The fragment as it sits in `env`, its keys borrowed from the dictionaries.
    fn raw<'e>(&self, env: &'e Envelope<'e>) -> RawFragment<'e>
    where
        'a: 'e,
    {
        let (series, unit) = &env.series[self.series];
        RawFragment {
            series,
            unit,
            source: &env.sources[self.source],
            day: self.day,
            version: self.next.version,
            line: self.next.line,
            quality: self.quality,
            interval_minutes: self.interval_minutes,
            flags: self.next.flags,
            payload: self.payload,
        }
    }
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
        // A dictionary index: the previous one, or moved by a delta the head says follows.
        let index = |r: &mut Reader<'a>, given: bool, prev: u64, n: usize, name: &'static str| {
            let at = match given {
                true => prev.wrapping_add(unzigzag(r.varint(name)?) as u64),
                false => prev,
            };
            let valid = usize::try_from(at).ok().filter(|&i| i < n);
            let outside = || {
                let why = format!("{name} {at} is outside the {n}-entry dictionary");
                r.corrupt(start, what(&why))
            };
            valid.map(|i| (at, i)).ok_or_else(outside)
        };
        let (at, series) = index(
            r,
            head & HEAD_SERIES != 0,
            prev.series,
            n_series,
            "series index",
        )?;
        next.series = at;
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
        let (at, source) = index(
            r,
            head & HEAD_SOURCE != 0,
            prev.source,
            n_sources,
            "source index",
        )?;
        next.source = at;
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
