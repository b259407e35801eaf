//! The merge rule: from stored fragments to exact daily totals.
//!
//! Writes are plain idempotent upserts of fragments under deterministic keys; this function is
//! where corrections and partial days are resolved, at read time. For each slot of a day the
//! value comes from the fragment with the greatest `(version, source, line)` that has that slot;
//! the day's total is the exact sum of those values. Hence:
//! - idempotent: the same fragment twice is one key, and a duplicate changes no winner;
//! - order-independent: winners depend on ranks, never on arrival order;
//! - corrections replace: a higher version's slot wins over a lower one, it is never added;
//! - partial days merge: disjoint slots from different fragments all count.
//!
//! One exception to the slot-by-slot rule: two *deliveries* of one input at one version (see
//! [`crate::source`]: a file rewritten with its timestamp kept, a key uploaded twice in one
//! second) are two contents that nothing orders. Mixing their slots would make a day neither
//! delivered, so only the greatest delivery's fragments count at that version (the source
//! names break the tie deterministically; for a local file, the later write wins); the other
//! delivery's are left out and counted in [`DayTotal::superseded`].
//!
//! A day whose fragments disagree on the interval length (a provider re-sent 30-minute data as
//! 5-minute data) cannot be merged slot by slot; the interval length of the highest-ranked
//! fragment is taken as the day's resolution and fragments of other lengths are left out of that
//! day, which [`DayTotal::superseded`] counts so that a caller can show it.

use std::cmp::Ordering;

use crate::day::Day;
use crate::envelope::{decode, DecodeError, Envelope, SummedFragment};
use crate::fragment::{slots_per_day, Fragment, Quality, Version};
use crate::series::{SeriesId, Unit};
use crate::source::object_of;

/// One series' merged day.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DayTotal {
    /// The meter or channel.
    pub series: SeriesId,
    /// The day totalled.
    pub day: Day,
    /// Exact sum in amount units (millionths of `unit`).
    pub total: i64,
    /// Slots that have a value.
    pub intervals: usize,
    /// Slots in a whole day at `interval_minutes` (48 for half-hourly data).
    pub slots_per_day: usize,
    /// Interval length, in minutes, of the highest-ranked fragment: the day's resolution.
    pub interval_minutes: u16,
    /// Unit of `total`, from the highest-ranked fragment.
    pub unit: Unit,
    /// Union of the quality flags of fragments that supplied at least one winning slot.
    pub quality: Quality,
    /// Fragments of this day left out: their interval length differs from the day's, or a
    /// later delivery of their input at their version replaced them.
    pub superseded: usize,
}

impl DayTotal {
    /// True when every slot of the day has a value, so `total` covers the whole day.
    pub fn complete(&self) -> bool {
        self.intervals == self.slots_per_day
    }
}

/// Total order used to pick winners. Equal keys come from the same input row, so their
/// contents are equal too; the content comparison only makes the result independent of order
/// even if a faulty producer broke that assumption.
fn by_rank_desc(a: &&Fragment, b: &&Fragment) -> Ordering {
    b.rank()
        .cmp(&a.rank())
        .then_with(|| b.interval_minutes.cmp(&a.interval_minutes))
        .then_with(|| b.quality.0.cmp(&a.quality.0))
        .then_with(|| b.slots.iter().cmp(a.slots.iter()))
        .then_with(|| b.unit.as_str().cmp(a.unit.as_str()))
}

/// Whether each fragment (in rank order) counts: not when a higher-ranked fragment of the same
/// version and object is of another delivery (see the module documentation).
fn latest_deliveries(ranked: &[&Fragment]) -> Vec<bool> {
    let first = ranked.first().map(|f| &f.source);
    if ranked.iter().all(|f| Some(&f.source) == first) {
        // The common case: one input delivered the day.
        return vec![true; ranked.len()];
    }
    // The first fragment of each (version, object) in rank order has the greatest source.
    let mut leaders: Vec<(Version, &str, &str)> = Vec::new();
    ranked
        .iter()
        .map(|f| {
            let object = object_of(&f.source);
            match leaders
                .iter()
                .find(|(v, o, _)| *v == f.version && *o == object)
            {
                Some((_, _, source)) => *source == &*f.source,
                None => {
                    leaders.push((f.version, object, &f.source));
                    true
                }
            }
        })
        .collect()
}

/// A day held by one fragment whose slots fit the day: all its values count.
fn one_fragment_day(
    series: &SeriesId,
    day: Day,
    (total, intervals): (i64, usize),
    (interval_minutes, slots_per_day): (u16, usize),
    unit: &Unit,
    quality: Quality,
) -> DayTotal {
    DayTotal {
        series: series.clone(),
        day,
        total,
        intervals,
        slots_per_day,
        interval_minutes,
        unit: unit.clone(),
        quality: match intervals {
            0 => Quality::default(),
            _ => Quality::default().union(quality),
        },
        superseded: 0,
    }
}

/// Merges one series-day's fragments (all with the same series and day).
pub fn merge_day(fragments: &mut [&Fragment]) -> Option<DayTotal> {
    fragments.sort_unstable_by(by_rank_desc);
    let top = *fragments.first()?;
    let minutes = top.interval_minutes;
    let n = slots_per_day(minutes).unwrap_or(top.slots.len());
    if let ([only], true) = (&*fragments, top.slots.len() <= n) {
        // The common case, a day from one row: every value it holds counts (what the loop
        // below finds for it, without its scratch vectors; a read of a year is 365 of these).
        return Some(one_fragment_day(
            &only.series,
            only.day,
            (only.slots.total(), only.slots.present()),
            (minutes, n),
            &only.unit,
            only.quality,
        ));
    }
    let mut filled = vec![false; n];
    let counts = latest_deliveries(fragments);
    // Copies of one fragment (a store may hold it in two packs, written in different
    // batches) sort next to each other and are left out once.
    let superseded = fragments
        .iter()
        .zip(&counts)
        .enumerate()
        .filter(|&(i, (f, &counts))| {
            let copy = i > 0 && fragments[i - 1].rank() == f.rank();
            (f.interval_minutes != minutes || !counts) && !copy
        })
        .count();
    let (mut total, mut intervals, mut quality) = (0i64, 0usize, Quality::default());
    let counted = fragments
        .iter()
        .zip(&counts)
        .filter(|(f, &counts)| counts && f.interval_minutes == minutes);
    for (f, _) in counted {
        let mut contributed = false;
        for (slot, v) in f.slots.iter() {
            if let Some(seen) = filled.get_mut(slot) {
                if !*seen {
                    *seen = true;
                    total += v;
                    intervals += 1;
                    contributed = true;
                }
            }
        }
        if contributed {
            quality = quality.union(f.quality);
        }
        if intervals == n {
            // Every slot has its winner: lower ranks cannot change the day.
            break;
        }
    }
    Some(DayTotal {
        series: top.series.clone(),
        day: top.day,
        total,
        intervals,
        slots_per_day: n,
        interval_minutes: minutes,
        unit: top.unit.clone(),
        quality,
        superseded,
    })
}

/// Daily totals of the fragments in `packs` (envelopes, as a store keeps them) whose day lies
/// in `from..=to`: exactly what [`daily_totals`] gives for them decoded, but a day held by one
/// fragment (most days) is totalled from the values' sum as they are read, with no fragment,
/// slot vector or key copies made for it; only the packs holding a day of several fragments
/// (corrections, partial days, redeliveries) are decoded, and those days merged as ever.
///
/// An undecodable pack fails the call with its index in `packs`.
pub fn daily_totals_of_packs<P: AsRef<[u8]>>(
    packs: &[P],
    from: Day,
    to: Day,
) -> Result<Vec<DayTotal>, (usize, DecodeError)> {
    let envelopes = packs
        .iter()
        .enumerate()
        .map(|(at, p)| Envelope::parse(p.as_ref()).map_err(|e| (at, e)))
        .collect::<Result<Vec<_>, _>>()?;
    let mut summed: Vec<(usize, SummedFragment<'_>)> = Vec::new();
    for (at, envelope) in envelopes.iter().enumerate() {
        for f in envelope.summed_fragments() {
            let f = f.map_err(|e| (at, e))?;
            if f.raw.day >= from && f.raw.day <= to {
                summed.push((at, f));
            }
        }
    }
    summed.sort_unstable_by(|(_, a), (_, b)| {
        (a.raw.series, a.raw.day).cmp(&(b.raw.series, b.raw.day))
    });
    // Packs decoded for days of several fragments, each once.
    let mut decoded: Vec<Option<Vec<Fragment>>> = vec![None; packs.len()];
    let mut out = Vec::with_capacity(summed.len());
    for run in
        summed.chunk_by(|(_, a), (_, b)| a.raw.day == b.raw.day && a.raw.series == b.raw.series)
    {
        let (_, first) = run[0];
        let minutes = first.raw.interval_minutes;
        let n = slots_per_day(minutes).unwrap_or(first.slots);
        if let ([(_, only)], true) = (run, first.slots <= n) {
            out.push(one_fragment_day(
                only.raw.series,
                only.raw.day,
                (only.total, only.present),
                (minutes, n),
                only.raw.unit,
                only.raw.quality,
            ));
            continue;
        }
        for &(at, _) in run {
            if decoded[at].is_none() {
                decoded[at] = Some(decode(packs[at].as_ref()).map_err(|e| (at, e))?);
            }
        }
        let mut day: Vec<&Fragment> = Vec::new();
        let mut seen = Vec::new();
        for &(at, _) in run {
            if seen.contains(&at) {
                continue;
            }
            seen.push(at);
            let fragments = decoded[at].iter().flatten();
            day.extend(
                fragments.filter(|f| f.day == first.raw.day && &f.series == first.raw.series),
            );
        }
        out.extend(merge_day(&mut day));
    }
    Ok(out)
}

/// Merges any fragments into daily totals, ordered by series then day.
pub fn daily_totals<'a>(fragments: impl IntoIterator<Item = &'a Fragment>) -> Vec<DayTotal> {
    // Sorted and cut into runs of one series-day: no map and no vector per day (the API reads
    // a year of one series per request).
    let mut all: Vec<&Fragment> = fragments.into_iter().collect();
    all.sort_unstable_by(|a, b| (&a.series, a.day).cmp(&(&b.series, b.day)));
    all.chunk_by_mut(|a, b| a.day == b.day && a.series == b.series)
        .filter_map(merge_day)
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::fragment::Slots;
    use crate::source::source_name;
    use crate::value::MAX_ABS_VALUE;
    use proptest::prelude::*;
    use std::collections::{BTreeMap, HashMap};
    use std::sync::Arc;

    fn frag(
        series: &str,
        day: i32,
        version: i64,
        source: &str,
        line: u64,
        slots: &[(usize, i64)],
    ) -> Fragment {
        let mut s = Slots::new(48);
        for &(i, v) in slots {
            s.set(i, v);
        }
        Fragment {
            series: series.parse().unwrap(),
            day: Day::from_days(day).unwrap(),
            version,
            source: Arc::from(source),
            line,
            interval_minutes: 30,
            unit: Unit::kwh(),
            quality: Quality::ACTUAL,
            slots: s,
        }
    }

    fn totals(fs: &[Fragment]) -> Vec<(String, i32, i64, usize)> {
        daily_totals(fs)
            .into_iter()
            .map(|t| (t.series.to_string(), t.day.days(), t.total, t.intervals))
            .collect()
    }

    #[test]
    fn corrections_replace_and_partials_merge() {
        let a = frag("M", 1, 10, "a.csv", 2, &[(0, 5), (1, 5)]);
        let b = frag("M", 1, 20, "b.csv", 2, &[(1, 7)]);
        let c = frag("M", 1, 5, "c.csv", 9, &[(2, 1), (1, 100)]);
        assert_eq!(
            totals(&[a.clone(), b.clone(), c.clone()]),
            vec![("M".into(), 1, 5 + 7 + 1, 3)]
        );
        // A later line of the same source and version wins too.
        let d = frag("M", 1, 10, "a.csv", 3, &[(0, 1)]);
        assert_eq!(totals(&[a, b, c, d]), vec![("M".into(), 1, 1 + 7 + 1, 3)]);
    }

    #[test]
    fn interval_change_takes_the_newest_resolution() {
        let old = frag("M", 1, 10, "a", 1, &[(0, 5)]);
        let mut new = frag("M", 1, 20, "b", 1, &[]);
        new.interval_minutes = 5;
        new.slots = Slots::new(288);
        new.slots.set(0, 1);
        let t = &daily_totals([&old, &new])[0];
        assert_eq!(
            (t.total, t.slots_per_day, t.superseded, t.complete()),
            (1, 288, 1, false)
        );
    }

    /// `(series, day, slot)` and `(version, source, line, value)` of the model's winners.
    type SlotKey = (String, i32, usize);
    type Winner = (i64, String, u64, i64);
    /// A store's key: `(series, day, version, source, line)`.
    type StoreKey = (String, i32, i64, String, u64);

    /// The reference model: per slot, the value of the maximum-rank fragment holding it, among
    /// the fragments of the greatest delivery of each input at each version.
    fn model(fs: &[Fragment]) -> Vec<(String, i32, i64, usize)> {
        // One input at one version of a series-day.
        let group = |f: &'_ Fragment| {
            let object = object_of(&f.source).to_string();
            (f.series.to_string(), f.day.days(), f.version, object)
        };
        let mut latest: HashMap<(String, i32, i64, String), &str> = HashMap::new();
        for f in fs {
            let e = latest.entry(group(f)).or_insert(&f.source);
            if &*f.source > *e {
                *e = &f.source;
            }
        }
        let mut best: BTreeMap<SlotKey, Winner> = BTreeMap::new();
        for f in fs {
            if latest[&group(f)] != &*f.source {
                continue;
            }
            for (slot, v) in f.slots.iter() {
                let key = (f.series.to_string(), f.day.days(), slot);
                let cand = (f.version, f.source.to_string(), f.line, v);
                let e = best.entry(key).or_insert_with(|| cand.clone());
                if (cand.0, &cand.1, cand.2) > (e.0, &e.1, e.2) {
                    *e = cand;
                }
            }
        }
        let mut out: BTreeMap<(String, i32), (i64, usize)> = BTreeMap::new();
        for ((s, d, _), (.., v)) in best {
            let e = out.entry((s, d)).or_default();
            e.0 += v;
            e.1 += 1;
        }
        out.into_iter()
            .map(|((s, d), (t, n))| (s, d, t, n))
            .collect()
    }

    fn arb_fragment() -> impl Strategy<Value = Fragment> {
        (
            0u8..3,
            0i32..3,
            0i64..4,
            0u8..9,
            0u64..4,
            proptest::collection::vec(
                (
                    0usize..48,
                    prop_oneof![-1_000_000i64..1_000_000, Just(MAX_ABS_VALUE - 1)],
                ),
                1..10,
            ),
        )
            .prop_map(|(m, d, v, s, l, slots)| {
                frag(&format!("M{m}"), d, v, &arb_source(s), l, &slots)
            })
    }

    /// Three inputs, each in up to two deliveries or without one (names of old stores).
    fn arb_source(s: u8) -> String {
        let delivery = ["d1", "d2", ""][usize::from(s / 3)];
        source_name(
            &format!("s{}", s % 3),
            Some(delivery).filter(|d| !d.is_empty()),
        )
    }

    /// Fragments with distinct keys: the store keeps one fragment per key, and one input row
    /// produces one content per key, so generated duplicates of a key must share content.
    fn dedup_keys(fs: Vec<Fragment>) -> Vec<Fragment> {
        let mut seen = HashMap::new();
        for f in fs {
            seen.entry((f.series.clone(), f.day, f.version, f.source.clone(), f.line))
                .or_insert(f);
        }
        seen.into_values().collect()
    }

    proptest! {
        /// Totals read from packs agree with decoding them all and merging, whatever packs
        /// the fragments were batched into, with some in several (as a store keeps
        /// differently batched writes) and whatever the day range.
        #[test]
        fn totals_of_packs_equal_the_merge_of_their_fragments(
            fs in proptest::collection::vec(arb_fragment(), 0..30),
            placing in proptest::collection::vec((0usize..4, proptest::option::of(0usize..4)), 30),
            range in (0i32..3, 0i32..3),
        ) {
            let fs = dedup_keys(fs);
            let mut packs: Vec<_> = (0..4)
                .map(|_| crate::envelope::EnvelopeBuilder::new(crate::envelope::MAX_ENVELOPE_BYTES))
                .collect();
            for (f, &(pack, again)) in fs.iter().zip(&placing) {
                packs[pack].try_push(f).unwrap();
                if let Some(other) = again.filter(|&o| o != pack) {
                    packs[other].try_push(f).unwrap();
                }
            }
            let bodies: Vec<Vec<u8>> = packs.into_iter().map(|b| b.finish()).collect();
            let (from, to) = (Day::from_days(range.0).unwrap(), Day::from_days(range.1).unwrap());
            // Every copy, as a store's `fragments` returns them.
            let decoded: Vec<Fragment> = bodies.iter().flat_map(|b| decode(b).unwrap()).collect();
            let inside = decoded.iter().filter(|f| f.day >= from && f.day <= to);
            prop_assert_eq!(daily_totals_of_packs(&bodies, from, to).unwrap(), daily_totals(inside));
        }

        #[test]
        fn exact_and_equal_to_the_reference_model(fs in proptest::collection::vec(arb_fragment(), 0..30)) {
            let fs = dedup_keys(fs);
            prop_assert_eq!(totals(&fs), model(&fs));
        }

        #[test]
        fn idempotent_and_order_independent_under_any_schedule(
            fs in proptest::collection::vec(arb_fragment(), 1..20),
            schedule in proptest::collection::vec((0usize..100, 1usize..4), 1..60),
        ) {
            let fs = dedup_keys(fs);
            let want = totals(&fs);
            // Deliver fragments in a random order, some many times (redelivery, replays), into a
            // store keyed like the real one; every fragment arrives at least once.
            let mut store: HashMap<StoreKey, Fragment> = HashMap::new();
            let mut put = |f: &Fragment| {
                store.insert((f.series.to_string(), f.day.days(), f.version, f.source.to_string(), f.line), f.clone());
            };
            for (pick, times) in schedule {
                for _ in 0..times {
                    put(&fs[pick % fs.len()]);
                }
            }
            for f in fs.iter().rev() {
                put(f);
            }
            let stored: Vec<Fragment> = store.into_values().collect();
            prop_assert_eq!(totals(&stored), want.clone());
            let mut doubled = fs.clone();
            doubled.extend(fs.iter().cloned());
            prop_assert_eq!(totals(&doubled), want);
        }

        /// Two contents of one input at one version (a file rewritten with its timestamp
        /// kept): the day is one delivery's, wholly, never a mix of both.
        #[test]
        fn two_deliveries_of_one_input_at_one_version_never_mix(
            a in proptest::collection::vec((0usize..48, -1000i64..1000), 1..48),
            b in proptest::collection::vec((0usize..48, -1000i64..1000), 1..48),
            lines in (1u64..5, 1u64..5),
            other in proptest::collection::vec((0usize..48, -1000i64..1000), 0..10),
        ) {
            let older = frag("M", 0, 7, "/d/f.csv#@1700000000.000000001", lines.0, &a);
            let newer = frag("M", 0, 7, "/d/f.csv#@1700000000.000000002", lines.1, &b);
            // Another input's partial day still merges slot by slot.
            let third = frag("M", 0, 7, "/d/g.csv#@1", 1, &other);
            let day = |fs: &[&Fragment]| daily_totals(fs.iter().copied()).pop().map(|t| (t.total, t.intervals));
            prop_assert_eq!(day(&[&older, &newer, &third]), day(&[&newer, &third]));
            prop_assert_eq!(day(&[&newer, &older]), day(&[&newer]));
            prop_assert_eq!(daily_totals([&older, &newer])[0].superseded, 1);
            // The older delivery stored twice (two packs) is still one fragment left out.
            prop_assert_eq!(daily_totals([&older, &newer, &older])[0].superseded, 1);
        }

        #[test]
        fn a_higher_version_replaces_never_adds(base in arb_fragment(), bump in 1i64..100, vals in proptest::collection::vec(-1000i64..1000, 48)) {
            let mut newer = base.clone();
            newer.version = base.version + bump;
            for (slot, _) in base.slots.iter() {
                newer.slots.set(slot, vals[slot]);
            }
            let want: i64 = newer.slots.total();
            let got = daily_totals([&base, &newer]);
            prop_assert_eq!(got.len(), 1);
            prop_assert_eq!(got[0].total, want);
            prop_assert_eq!(got[0].intervals, base.slots.present());
        }

        #[test]
        fn disjoint_partials_sum(a in proptest::collection::vec(any::<Option<i32>>(), 48), va in 0i64..5, vb in 0i64..5) {
            let part = |keep: bool, version| {
                let slots: Vec<(usize, i64)> = a.iter().enumerate()
                    .filter_map(|(i, v)| v.filter(|_| (i % 2 == 0) == keep).map(|v| (i, i64::from(v))))
                    .collect();
                frag("M", 0, version, "x", 1, &slots)
            };
            let (even, odd) = (part(true, va), part(false, vb));
            let want: i64 = a.iter().flatten().map(|&v| i64::from(v)).sum();
            let got = daily_totals([&even, &odd]);
            let present = a.iter().flatten().count();
            if present == 0 {
                prop_assert_eq!(got[0].intervals, 0);
            } else {
                prop_assert_eq!(got[0].total, want);
                prop_assert_eq!(got[0].intervals, present);
            }
        }
    }
}
