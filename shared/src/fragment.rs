//! Fragments: the unit of data between parsing and storage.
//!
//! A fragment is `(series, day, version, source, line) -> {slot: value}`: part or all of one
//! series' day as one input row (or run of rows) delivered it. Its key is deterministic, so
//! writing it again is a no-op; the merge rules in [`crate::merge`] turn overlapping fragments
//! into exact daily totals.

use std::sync::Arc;

use crate::day::Day;
use crate::series::{SeriesId, Unit};

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
    pub const ACTUAL: Quality = Quality(1);
    pub const ESTIMATED: Quality = Quality(2);
    pub const SUBSTITUTED: Quality = Quality(4);
    pub const FINAL_SUBSTITUTED: Quality = Quality(8);
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

    pub fn from_bits(bits: u8) -> Option<Quality> {
        (bits & !Self::ALL == 0).then_some(Quality(bits))
    }

    pub fn union(self, other: Quality) -> Quality {
        Quality(self.0 | other.0)
    }

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
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct Slots {
    values: Vec<i64>,
}

impl Slots {
    pub fn new(len: usize) -> Slots {
        Slots {
            values: vec![MISSING; len],
        }
    }

    /// Empties every slot and sets the length, reusing the allocation.
    pub fn reset(&mut self, len: usize) {
        self.values.clear();
        self.values.resize(len, MISSING);
    }

    pub fn len(&self) -> usize {
        self.values.len()
    }

    pub fn is_empty(&self) -> bool {
        self.values.is_empty()
    }

    pub fn get(&self, slot: usize) -> Option<i64> {
        self.values.get(slot).copied().filter(|&v| v != MISSING)
    }

    /// Sets a slot. `value` must come from the value parser (bounded), never `i64::MIN`.
    pub fn set(&mut self, slot: usize, value: i64) {
        debug_assert_ne!(value, MISSING);
        self.values[slot] = value;
    }

    /// The raw cells, missing ones holding the sentinel: for parsers' hot loops only, which
    /// write parsed (bounded) values into a freshly reset buffer.
    pub(crate) fn raw_mut(&mut self) -> &mut [i64] {
        &mut self.values
    }

    pub fn clear(&mut self, slot: usize) {
        self.values[slot] = MISSING;
    }

    /// `(slot, value)` for every present slot, in slot order.
    pub fn iter(&self) -> impl Iterator<Item = (usize, i64)> + '_ {
        self.values
            .iter()
            .enumerate()
            .filter(|(_, &v)| v != MISSING)
            .map(|(i, &v)| (i, v))
    }

    /// Appends the present values, in slot order (a straight copy for a complete day).
    pub fn present_values(&self, out: &mut Vec<i64>) {
        if !self.values.contains(&MISSING) {
            out.extend_from_slice(&self.values);
        } else {
            out.extend(self.values.iter().copied().filter(|&v| v != MISSING));
        }
    }

    pub fn present(&self) -> usize {
        self.values.iter().map(|&v| usize::from(v != MISSING)).sum()
    }

    /// Branch-free so that it vectorises: sinks call it once per fragment.
    pub fn total(&self) -> i64 {
        self.values
            .iter()
            .map(|&v| if v == MISSING { 0 } else { v })
            .sum()
    }
}

/// Part or all of one series' day, as delivered by one input.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct Fragment {
    pub series: SeriesId,
    pub day: Day,
    pub version: Version,
    /// Names the input deterministically (file path, or S3 key + version id / ETag).
    pub source: Arc<str>,
    /// First input line that contributed. Makes keys unique within one input (two rows for the
    /// same meter-day never overwrite each other in the store) and orders them: later lines win.
    pub line: u64,
    pub interval_minutes: u16,
    pub unit: Unit,
    pub quality: Quality,
    pub slots: Slots,
}

/// The deterministic identity of a fragment, and its rank in the merge: for each slot the
/// fragment with the greatest `(version, source, line)` wins.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct FragmentRank<'a> {
    pub version: Version,
    pub source: &'a str,
    pub line: u64,
}

impl Fragment {
    pub fn rank(&self) -> FragmentRank<'_> {
        FragmentRank {
            version: self.version,
            source: &self.source,
            line: self.line,
        }
    }

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
