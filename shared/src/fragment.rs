//! Fragments: the unit of data between parsing and storage.
//!
//! A fragment is `(series, day, version, source, line) -> {slot: value}`: part or all of one
//! series' day as one input row (or run of rows) delivered it. Its key is deterministic, so
//! writing it again is a no-op; the merge rules in [`crate::merge`] turn overlapping fragments
//! into exact daily totals.

use std::sync::Arc;

use crate::day::Day;
use crate::series::{SeriesId, Unit};
use crate::value::MAX_ABS_VALUE;

/// Orders corrections: Unix epoch milliseconds of the data's own update time (NEM12
/// UpdateDateTime) or, failing that, of the input object's last modification.
pub type Version = i64;

/// Interval lengths a day may be cut into, in minutes.
pub const INTERVAL_MINUTES: [u16; 5] = [5, 10, 15, 30, 60];
/// Most slots a day can have (5-minute data).
pub const MAX_SLOTS: usize = 288;

/// Returns the number of slots per day for a valid interval length.
pub fn slots_per_day(interval_minutes: u16) -> Option<usize> {
    INTERVAL_MINUTES
        .contains(&interval_minutes)
        .then(|| 1440 / usize::from(interval_minutes))
}

/// The interval length whose day has `slots` slots.
pub fn interval_for_slots(slots: usize) -> Option<u16> {
    INTERVAL_MINUTES
        .iter()
        .copied()
        .find(|&m| 1440 / usize::from(m) == slots)
}

/// Per-interval quality flags present in a fragment (NEM12 QualityMethod first letter).
///
/// A bit set rather than per-slot flags: enough to report a day as actual, estimated,
/// substituted or mixed, at one byte per fragment.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Hash)]
pub struct Quality(pub u8);

impl Quality {
    /// `A`: read from the meter.
    pub const ACTUAL: Quality = Quality(1);
    /// `E`: a forward estimate, to be replaced by actual or substituted data.
    pub const ESTIMATED: Quality = Quality(2);
    /// `S`: substituted for missing or faulty data; may still be replaced.
    pub const SUBSTITUTED: Quality = Quality(4);
    /// `F`: a final substitution, which no actual read will replace.
    pub const FINAL_SUBSTITUTED: Quality = Quality(8);
    /// `N`: null data, the meter gave no reading.
    pub const NULL: Quality = Quality(16);
    /// The source format carries no quality (plain CSV).
    pub const UNSPECIFIED: Quality = Quality(32);
    const ALL: u8 = 63;

    /// Maps a NEM12 quality flag (`A`, `E`, `S`, `F`, `N`); `V` is not a flag of its own but
    /// defers to 400 records, so it is not accepted here.
    pub fn from_nem12_flag(flag: u8) -> Option<Quality> {
        Some(match flag {
            b'A' => Quality::ACTUAL,
            b'E' => Quality::ESTIMATED,
            b'S' => Quality::SUBSTITUTED,
            b'F' => Quality::FINAL_SUBSTITUTED,
            b'N' => Quality::NULL,
            _ => return None,
        })
    }

    /// The flags of a stored or decoded byte; `None` when it sets a bit no flag defines.
    pub fn from_bits(bits: u8) -> Option<Quality> {
        (bits & !Self::ALL == 0).then_some(Quality(bits))
    }

    /// Both sets of flags together: how a day gathers the quality of its fragments.
    pub fn union(self, other: Quality) -> Quality {
        Quality(self.0 | other.0)
    }

    /// Whether every flag of `other` is set in `self`.
    pub fn contains(self, other: Quality) -> bool {
        self.0 & other.0 == other.0
    }

    /// One word for a day's quality, as the API reports it.
    pub fn label(self) -> &'static str {
        match self.0 {
            0 => "none",
            1 => "actual",
            2 => "estimated",
            4 | 8 | 12 => "substituted",
            16 => "null",
            32 => "unspecified",
            _ => "mixed",
        }
    }
}

/// Sentinel for a missing slot. `parse_decimal` bounds values far inside `i64`, so this value
/// can never be data; it keeps [`Slots`] a flat `Vec<i64>`.
const MISSING: i64 = i64::MIN;

/// A day's interval values, some possibly missing (a partial day).
///
/// The sum and the count of present values are cached: sinks ask for the total of every
/// fragment, and the parsers already have both in hand as they fill the slots, so a second
/// pass over the values per fragment is wasted work. The cache is maintained by `set`, `clear`
/// and `reset`; `Slots::raw_mut` marks it stale (recomputed on demand) until a parser
/// commits the figures it computed with `Slots::commit_raw`. Equality and hashing look at
/// the values only.
#[derive(Debug, Clone)]
pub struct Slots {
    values: Vec<i64>,
    /// Wrapping sum of the present values: equal to the plain sum whenever that fits in `i64`,
    /// which bounded parsed values guarantee.
    sum: i64,
    present: usize,
    /// `sum` and `present` describe `values`.
    fresh: bool,
    /// Every present value is known to lie within ±[`MAX_ABS_VALUE`] (parsed values always
    /// do): lets the encoder skip its range check. False only means "not known".
    bounded: bool,
}

impl PartialEq for Slots {
    fn eq(&self, other: &Slots) -> bool {
        self.values == other.values
    }
}

impl Eq for Slots {}

impl std::hash::Hash for Slots {
    fn hash<H: std::hash::Hasher>(&self, state: &mut H) {
        self.values.hash(state);
    }
}

impl Slots {
    /// `len` slots, all missing.
    pub fn new(len: usize) -> Slots {
        Slots {
            values: vec![MISSING; len],
            sum: 0,
            present: 0,
            fresh: true,
            bounded: true,
        }
    }

    /// Empties every slot and sets the length, reusing the allocation.
    pub fn reset(&mut self, len: usize) {
        self.values.clear();
        self.values.resize(len, MISSING);
        (self.sum, self.present, self.fresh, self.bounded) = (0, 0, true, true);
    }

    /// Number of slots, present or missing (a whole day of 5-minute intervals has 288).
    pub fn len(&self) -> usize {
        self.values.len()
    }

    /// True for zero slots (not for slots that are all missing: see [`Slots::present`]).
    pub fn is_empty(&self) -> bool {
        self.values.is_empty()
    }

    /// The value of `slot` in millionths of the unit; `None` when missing or out of range.
    pub fn get(&self, slot: usize) -> Option<i64> {
        self.values.get(slot).copied().filter(|&v| v != MISSING)
    }

    /// Sets a slot. `value` must come from the value parser (bounded), never `i64::MIN`.
    pub fn set(&mut self, slot: usize, value: i64) {
        debug_assert_ne!(value, MISSING);
        self.bounded &= value > -MAX_ABS_VALUE && value < MAX_ABS_VALUE;
        let old = std::mem::replace(&mut self.values[slot], value);
        if old == MISSING {
            self.present += 1;
            self.sum = self.sum.wrapping_add(value);
        } else {
            self.sum = self.sum.wrapping_add(value.wrapping_sub(old));
        }
    }

    /// The raw cells, missing ones holding the sentinel, at length `len` (existing cells keep
    /// their values, new ones are missing): for parsers' hot loops only, which write every
    /// cell with a parsed (bounded) value or the sentinel ([`Slots::missing`]), then call
    /// [`Slots::commit_raw`]. Until then the cached total is stale and recomputed on demand,
    /// so a parser that gives up half way leaves nothing inconsistent behind.
    pub(crate) fn raw_mut(&mut self, len: usize) -> &mut [i64] {
        (self.fresh, self.bounded) = (false, false);
        if self.values.len() != len {
            self.values.resize(len, MISSING);
        }
        &mut self.values
    }

    /// The value [`Slots::raw_mut`] cells hold for a missing slot.
    pub(crate) const fn missing() -> i64 {
        MISSING
    }

    /// Records the sum and count of present values of cells just written through
    /// [`Slots::raw_mut`], whose values the parser bounded. Checked against a recount in debug
    /// builds.
    pub(crate) fn commit_raw(&mut self, sum: i64, present: usize) {
        (self.sum, self.present, self.fresh, self.bounded) = (sum, present, true, true);
        debug_assert_eq!(
            (sum, present),
            (self.recount_total(), self.recount_present())
        );
    }

    /// Makes `slot` missing. Panics when `slot` is out of range.
    pub fn clear(&mut self, slot: usize) {
        let old = std::mem::replace(&mut self.values[slot], MISSING);
        if old != MISSING {
            self.present -= 1;
            self.sum = self.sum.wrapping_sub(old);
        }
    }

    /// `(slot, value)` for every present slot, in slot order.
    pub fn iter(&self) -> impl Iterator<Item = (usize, i64)> + '_ {
        self.values
            .iter()
            .enumerate()
            .filter(|(_, &v)| v != MISSING)
            .map(|(i, &v)| (i, v))
    }

    /// The first present value beyond ±[`MAX_ABS_VALUE`], if any: answered without a pass
    /// when every value is known to be bounded (always, for parsed values).
    pub fn first_unbounded(&self) -> Option<(usize, i64)> {
        if self.bounded {
            return None;
        }
        self.iter()
            .find(|&(_, v)| v <= -MAX_ABS_VALUE || v >= MAX_ABS_VALUE)
    }

    /// Appends the present values, in slot order (a straight copy for a complete day).
    pub fn present_values(&self, out: &mut Vec<i64>) {
        if self.present() == self.values.len() {
            out.extend_from_slice(&self.values);
        } else {
            out.extend(self.values.iter().copied().filter(|&v| v != MISSING));
        }
    }

    /// How many slots hold a value; cached, like [`Slots::total`].
    pub fn present(&self) -> usize {
        if self.fresh {
            self.present
        } else {
            self.recount_present()
        }
    }

    /// The exact sum of the present values; cached, see the type's documentation.
    pub fn total(&self) -> i64 {
        if self.fresh {
            self.sum
        } else {
            self.recount_total()
        }
    }

    fn recount_present(&self) -> usize {
        self.values.iter().map(|&v| usize::from(v != MISSING)).sum()
    }

    /// Branch-free so that it vectorises; wrapping like the cache.
    fn recount_total(&self) -> i64 {
        self.values
            .iter()
            .map(|&v| if v == MISSING { 0 } else { v })
            .fold(0i64, |a, v| a.wrapping_add(v))
    }
}

/// Part or all of one series' day, as delivered by one input.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct Fragment {
    /// The meter or channel the values belong to.
    pub series: SeriesId,
    /// The local calendar day of the meter's market that the slots divide.
    pub day: Day,
    /// Orders corrections: for each slot the fragment with the greatest version wins (see
    /// [`Version`]).
    pub version: Version,
    /// Names the input deterministically (file path, or S3 key + version id / ETag).
    pub source: Arc<str>,
    /// First input line that contributed. Makes keys unique within one input (two rows for the
    /// same meter-day never overwrite each other in the store) and orders them: later lines win.
    pub line: u64,
    /// Interval length in minutes, one of [`INTERVAL_MINUTES`]; `slots` holds a whole day of
    /// them.
    pub interval_minutes: u16,
    /// The unit the values are millionths of (kWh for energy).
    pub unit: Unit,
    /// Every quality flag among the values (one set per fragment, not per slot).
    pub quality: Quality,
    /// The values in millionths of `unit`, slot 0 being the day's first interval; slots the
    /// input did not give are missing.
    pub slots: Slots,
}

/// The deterministic identity of a fragment, and its rank in the merge: for each slot the
/// fragment with the greatest `(version, source, line)` wins.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct FragmentRank<'a> {
    /// Compared first: a correction with a later version wins.
    pub version: Version,
    /// Breaks ties between inputs at one version (see [`crate::source`]).
    pub source: &'a str,
    /// Compared last: within one input a later line wins.
    pub line: u64,
}

impl Fragment {
    /// The fragment's merge rank, borrowing its source.
    pub fn rank(&self) -> FragmentRank<'_> {
        FragmentRank {
            version: self.version,
            source: &self.source,
            line: self.line,
        }
    }

    /// The exact sum of the present values, in millionths of `unit`.
    pub fn total(&self) -> i64 {
        self.slots.total()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn slot_counts() {
        assert_eq!(slots_per_day(30), Some(48));
        assert_eq!(slots_per_day(5), Some(288));
        assert_eq!(slots_per_day(7), None);
        assert_eq!(interval_for_slots(96), Some(15));
        assert_eq!(interval_for_slots(50), None);
    }

    #[test]
    fn slots_track_presence() {
        let mut s = Slots::new(48);
        assert_eq!(s.present(), 0);
        s.set(3, 0);
        s.set(47, 1_500_000);
        assert_eq!(s.get(3), Some(0));
        assert_eq!(s.get(4), None);
        assert_eq!(s.get(48), None);
        assert_eq!(s.present(), 2);
        assert_eq!(s.total(), 1_500_000);
        assert_eq!(s.iter().collect::<Vec<_>>(), vec![(3, 0), (47, 1_500_000)]);
        s.reset(24);
        assert_eq!((s.len(), s.present()), (24, 0));
    }

    #[test]
    fn cached_total_follows_every_change() {
        let mut s = Slots::new(4);
        s.set(0, 5);
        s.set(0, 7);
        s.set(2, -3);
        assert_eq!((s.total(), s.present()), (4, 2));
        s.clear(0);
        s.clear(1);
        assert_eq!((s.total(), s.present()), (-3, 1));
        let raw = s.raw_mut(3);
        raw.copy_from_slice(&[1, Slots::missing(), 2]);
        // Stale until committed: recomputed on demand.
        assert_eq!((s.total(), s.present()), (3, 2));
        s.commit_raw(3, 2);
        assert_eq!((s.total(), s.present()), (3, 2));
        let mut t = Slots::new(3);
        t.set(0, 1);
        t.set(2, 2);
        assert_eq!(s, t);
        s.reset(3);
        assert_eq!((s.total(), s.present()), (0, 0));
    }

    #[test]
    fn quality_labels() {
        assert_eq!(Quality::ACTUAL.label(), "actual");
        assert_eq!(
            Quality::SUBSTITUTED
                .union(Quality::FINAL_SUBSTITUTED)
                .label(),
            "substituted"
        );
        assert_eq!(Quality::ACTUAL.union(Quality::ESTIMATED).label(), "mixed");
        assert_eq!(Quality::from_nem12_flag(b'V'), None);
        assert_eq!(Quality::from_bits(64), None);
    }
}
