//! The conformance suite every [`Store`] passes: SQLite here, CQL (against an in-process CQL
//! server, or a real cluster named by an environment variable) in its own crate.
//!
//! Each check takes a fresh, empty store and panics with a description of what broke.
//! Backends call [`run_all`] from an integration test.

use std::collections::BTreeMap;
use std::sync::Arc;

use meterflow_core::envelope::EnvelopeBuilder;
use meterflow_core::{Day, Fragment, Quality, SeriesId, Slots, Unit};

use meterflow_store::{daily_totals, Store};

/// A fragment's identity in a store: `(series, day, version, source, line)`.
type Key = (String, i32, i64, String, u64);

fn key(f: &Fragment) -> Key {
    (
        f.series.to_string(),
        f.day.days(),
        f.version,
        f.source.to_string(),
        f.line,
    )
}

fn day(s: &str) -> Day {
    Day::parse_iso(s).expect("valid test date")
}

fn series(s: &str) -> SeriesId {
    s.parse().expect("valid test series")
}

/// A fragment of `interval` minutes with `values` in the first slots (`None` = missing).
pub fn fragment(
    s: &str,
    d: &str,
    version: i64,
    source: &str,
    line: u64,
    values: &[Option<i64>],
) -> Fragment {
    let mut slots = Slots::new(48);
    for (i, v) in values.iter().enumerate() {
        if let Some(v) = v {
            slots.set(i, *v);
        }
    }
    Fragment {
        series: series(s),
        day: day(d),
        version,
        source: Arc::from(source),
        line,
        interval_minutes: 30,
        unit: Unit::kwh(),
        quality: Quality::UNSPECIFIED,
        slots,
    }
}

/// Fragments by key; asserts that duplicates of a key (allowed) have identical content.
fn by_key(fs: Vec<Fragment>) -> BTreeMap<Key, Fragment> {
    let mut out = BTreeMap::new();
    for f in fs {
        if let Some(prev) = out.insert(key(&f), f.clone()) {
            assert_eq!(
                prev, f,
                "a store returned two different fragments under one key"
            );
        }
    }
    out
}

async fn read<S: Store>(store: &S, s: &str, from: &str, to: &str) -> BTreeMap<Key, Fragment> {
    by_key(
        store
            .fragments(&series(s), day(from), day(to))
            .await
            .expect("read"),
    )
}

/// A varied set: partial days, 5-minute data, another unit, quality flags, negative values,
/// several months and years, ids that are prefixes of each other.
pub fn sample() -> Vec<Fragment> {
    let mut out = vec![
        fragment("EE1", "2019-01-01", 10, "a.csv", 2, &[Some(1_000_000); 48]),
        fragment(
            "EE1",
            "2019-01-02",
            10,
            "a.csv",
            3,
            &[Some(5), None, Some(-7)],
        ),
        fragment("EE1", "2019-01-31", 10, "a.csv", 4, &[Some(123_000)]),
        fragment("EE1", "2019-02-01", 10, "a.csv", 5, &[Some(1)]),
        fragment("EE1", "2019-12-31", 11, "b.csv", 2, &[Some(2)]),
        fragment("EE1", "2020-01-01", 11, "b.csv", 3, &[Some(3)]),
        fragment("EE10", "2019-01-01", 10, "a.csv", 9, &[Some(999)]),
    ];
    let mut five = fragment("N1-E1", "2019-01-01", 20, "s3://bkt/x.csv#v1", 7, &[]);
    five.interval_minutes = 5;
    five.slots = Slots::new(288);
    five.slots.set(287, 42);
    five.quality = Quality::ACTUAL.union(Quality::SUBSTITUTED);
    out.push(five);
    let mut q1 = fragment(
        "N1-Q1",
        "2019-01-01",
        20,
        "s3://bkt/x.csv#v1",
        8,
        &[Some(2_222_000)],
    );
    q1.unit = Unit::normalise("kVArh").0;
    out.push(q1);
    out
}

/// What goes in comes back, field for field, and only within the asked range.
pub async fn round_trip<S: Store>(store: &S) {
    let all = sample();
    store.put(all.clone()).await.expect("put");
    let got = read(store, "EE1", "2019-01-01", "2020-12-31").await;
    let want = by_key(
        all.iter()
            .filter(|f| f.series.as_str() == "EE1")
            .cloned()
            .collect(),
    );
    assert_eq!(got, want, "EE1's fragments do not round-trip");
    for s in ["N1-E1", "N1-Q1", "EE10"] {
        let got = read(store, s, "2019-01-01", "2019-01-01").await;
        let want = by_key(
            all.iter()
                .filter(|f| f.series.as_str() == s)
                .cloned()
                .collect(),
        );
        assert_eq!(got, want, "{s}'s fragments do not round-trip");
    }
}

/// `from` and `to` are inclusive; neighbours outside the range stay out.
pub async fn day_range_is_inclusive<S: Store>(store: &S) {
    store.put(sample()).await.expect("put");
    let days =
        |m: BTreeMap<Key, Fragment>| m.values().map(|f| f.day.to_string()).collect::<Vec<_>>();
    assert_eq!(
        days(read(store, "EE1", "2019-01-02", "2019-01-31").await),
        ["2019-01-02", "2019-01-31"]
    );
    assert_eq!(
        days(read(store, "EE1", "2019-01-31", "2019-02-01").await),
        ["2019-01-31", "2019-02-01"]
    );
    assert_eq!(
        days(read(store, "EE1", "2019-12-31", "2020-01-01").await),
        ["2019-12-31", "2020-01-01"]
    );
    assert!(read(store, "EE1", "2019-03-01", "2019-11-30")
        .await
        .is_empty());
    assert!(read(store, "EE2", "2019-01-01", "2020-12-31")
        .await
        .is_empty());
}

/// Writing again, re-batched, any number of times, changes nothing.
pub async fn put_is_idempotent<S: Store>(store: &S) {
    let all = sample();
    store.put(all.clone()).await.expect("put");
    let before = read(store, "EE1", "2019-01-01", "2020-12-31").await;
    let totals = daily_totals(store, &series("EE1"), day("2019-01-01"), day("2020-12-31"))
        .await
        .expect("totals");
    for _ in 0..3 {
        store.put(all.clone()).await.expect("put again");
    }
    for chunk in all.chunks(2).rev() {
        store.put(chunk.to_vec()).await.expect("put re-batched");
    }
    assert_eq!(
        read(store, "EE1", "2019-01-01", "2020-12-31").await,
        before,
        "re-put changed the fragments"
    );
    let again = daily_totals(store, &series("EE1"), day("2019-01-01"), day("2020-12-31"))
        .await
        .expect("totals");
    assert_eq!(again, totals, "re-put changed the totals");
    assert_eq!(totals[0].total, 48_000_000);
}

/// Newer versions replace slot values; partial fragments of one day combine.
pub async fn corrections_and_partial_days<S: Store>(store: &S) {
    store
        .put(vec![fragment(
            "M",
            "2019-05-01",
            1,
            "old.csv",
            2,
            &[Some(10), Some(10), Some(10)],
        )])
        .await
        .expect("put");
    store
        .put(vec![fragment(
            "M",
            "2019-05-01",
            2,
            "new.csv",
            2,
            &[None, Some(1)],
        )])
        .await
        .expect("put");
    store
        .put(vec![fragment(
            "M",
            "2019-05-01",
            0,
            "older.csv",
            2,
            &[Some(99), Some(99), Some(99), Some(4)],
        )])
        .await
        .expect("put");
    let t = daily_totals(store, &series("M"), day("2019-05-01"), day("2019-05-01"))
        .await
        .expect("totals");
    assert_eq!(t.len(), 1);
    assert_eq!(
        (t[0].total, t[0].intervals),
        (10 + 1 + 10 + 4, 4),
        "merge of stored fragments is wrong"
    );
    totals_agree_with_fragments(store, "M", "2019-04-30", "2019-05-02").await;
}

/// A store's own [`Store::daily_totals`] (SQLite totals its packs without decoding them) is
/// the core's merge of [`Store::fragments`].
pub async fn totals_agree_with_fragments<S: Store>(store: &S, s: &str, from: &str, to: &str) {
    let (s, from, to) = (series(s), day(from), day(to));
    let fragments = store.fragments(&s, from, to).await.expect("fragments");
    let totals = store.daily_totals(&s, from, to).await.expect("totals");
    assert!(!totals.is_empty(), "no days to compare");
    assert_eq!(totals, meterflow_core::daily_totals(fragments.iter()));
}

/// Concurrent writers of overlapping batches leave one consistent answer.
pub async fn concurrent_puts<S: Store>(store: &S) {
    let all = sample();
    let (a, b, c) = tokio::join!(
        store.put(all.clone()),
        store.put(all[..4].to_vec()),
        store.put(all[3..].to_vec())
    );
    a.and(b).and(c).expect("concurrent puts");
    let got = read(store, "EE1", "2019-01-01", "2020-12-31").await;
    assert_eq!(
        got,
        by_key(
            all.into_iter()
                .filter(|f| f.series.as_str() == "EE1")
                .collect()
        )
    );
    // Across months, years and packs written three ways.
    totals_agree_with_fragments(store, "EE1", "2019-01-01", "2020-12-31").await;
}

/// A whole envelope record (as the aggregator hands it over, alone or several at once)
/// stores exactly its fragments, idempotently, and agrees with `put` of the same fragments in
/// other batches.
pub async fn records_and_fragments_agree<S: Store>(store: &S) {
    let all = sample();
    let record = |fs: &[Fragment]| {
        let mut b = EnvelopeBuilder::default();
        for f in fs {
            b.try_push(f).expect("sample fragments encode");
        }
        b.finish()
    };
    store.put_record(record(&all)).await.expect("put_record");
    let want = |s: &str| {
        by_key(
            all.iter()
                .filter(|f| f.series.as_str() == s)
                .cloned()
                .collect(),
        )
    };
    for s in ["EE1", "N1-E1", "N1-Q1", "EE10"] {
        assert_eq!(
            read(store, s, "2019-01-01", "2020-12-31").await,
            want(s),
            "{s}'s fragments from a record do not round-trip"
        );
    }
    let totals = daily_totals(store, &series("EE1"), day("2019-01-01"), day("2020-12-31"))
        .await
        .expect("totals");
    store
        .put_record(record(&all))
        .await
        .expect("put_record again");
    store
        .put_record(record(&all[2..]))
        .await
        .expect("put_record re-batched");
    store
        .put(all[..3].to_vec())
        .await
        .expect("put the same fragments");
    store
        .put_records(vec![record(&all[..2]), record(&all[2..])])
        .await
        .map_err(|(_, e)| e)
        .expect("put_records");
    assert_eq!(
        read(store, "EE1", "2019-01-01", "2020-12-31").await,
        want("EE1"),
        "re-putting a record changed the fragments"
    );
    let again = daily_totals(store, &series("EE1"), day("2019-01-01"), day("2020-12-31"))
        .await
        .expect("totals");
    assert_eq!(again, totals, "re-putting a record changed the totals");
    assert!(
        store.put_record(b"not an envelope".to_vec()).await.is_err(),
        "a record that does not decode was accepted"
    );
}

/// Series are listed by prefix, ascending, without repeats, at most `limit`, whichever way
/// their fragments arrived (fragments, one record, several records).
pub async fn series_are_listed_by_prefix<S: Store>(store: &S) {
    let all = sample();
    store.put(all[..3].to_vec()).await.expect("put");
    let mut b = EnvelopeBuilder::default();
    for f in &all[3..] {
        b.try_push(f).expect("sample fragments encode");
    }
    store
        .put_records(vec![b.finish()])
        .await
        .map_err(|(_, e)| e)
        .expect("put_records");
    let list = |prefix: &'static str, limit: usize| async move {
        let ids = store.series(prefix, limit).await.expect("series");
        ids.iter().map(|s| s.to_string()).collect::<Vec<_>>()
    };
    assert_eq!(list("", 10).await, ["EE1", "EE10", "N1-E1", "N1-Q1"]);
    assert_eq!(list("EE", 10).await, ["EE1", "EE10"]);
    assert_eq!(list("EE1", 10).await, ["EE1", "EE10"]);
    assert_eq!(list("EE10", 10).await, ["EE10"]);
    assert_eq!(list("N1-", 1).await, ["N1-E1"]);
    assert_eq!(list("", 3).await, ["EE1", "EE10", "N1-E1"]);
    assert!(list("X", 10).await.is_empty());
    assert!(list("ee", 10).await.is_empty(), "ids are case-sensitive");
}

/// Runs every check, each on a fresh store from `fresh`.
pub async fn run_all<S: Store, F, Fut>(fresh: F)
where
    F: Fn() -> Fut,
    Fut: std::future::Future<Output = S>,
{
    round_trip(&fresh().await).await;
    day_range_is_inclusive(&fresh().await).await;
    put_is_idempotent(&fresh().await).await;
    corrections_and_partial_days(&fresh().await).await;
    concurrent_puts(&fresh().await).await;
    records_and_fragments_agree(&fresh().await).await;
    series_are_listed_by_prefix(&fresh().await).await;
}
