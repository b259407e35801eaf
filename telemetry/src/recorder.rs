//! An in-memory [`metrics::Recorder`]: counters, gauges and histograms accumulated since the
//! last [`Accumulator::take`].
//!
//! One implementation serves two readers: the CloudWatch EMF exporter ([`crate::emf`]),
//! which takes a [`Snapshot`] after each Lambda invocation and writes it out, and the tests of
//! every instrumented crate, which install it locally ([`Accumulator::local`]) and assert
//! what was recorded. meterflow records a handful of values per unit of work (a split input, a
//! PutRecords call, a batch), so one mutex over plain maps is plenty and keeps it obviously
//! right; nothing here is on a per-row path.
//!
//! Labels are not kept: a metric is its name (meterflow records no labels; the exporter adds
//! the Lambda's function name as the one dimension).

use std::collections::BTreeMap;
use std::sync::{Arc, Mutex, MutexGuard, PoisonError};

use metrics::{
    Counter, CounterFn, Gauge, GaugeFn, Histogram, HistogramFn, Key, KeyName, LocalRecorderGuard,
    Metadata, Recorder, SharedString, Unit,
};

/// What was recorded since the last take: only metrics touched in that time appear (a counter
/// incremented by 0 appears as 0).
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Snapshot {
    /// Sum of the increments.
    pub counters: BTreeMap<String, u64>,
    /// Last value set.
    pub gauges: BTreeMap<String, f64>,
    /// Every value recorded, in order.
    pub histograms: BTreeMap<String, Vec<f64>>,
}

impl Snapshot {
    pub fn is_empty(&self) -> bool {
        self.counters.is_empty() && self.gauges.is_empty() && self.histograms.is_empty()
    }

    /// A counter's sum (0 when it was not touched: what a reader of a count means).
    pub fn counter(&self, name: &str) -> u64 {
        self.counters.get(name).copied().unwrap_or(0)
    }

    /// A histogram's values (empty when none were recorded).
    pub fn histogram(&self, name: &str) -> &[f64] {
        self.histograms.get(name).map_or(&[], Vec::as_slice)
    }
}

/// The recorder. Clones share their values, so one clone can be installed (globally, or
/// locally for a test) while another takes snapshots.
#[derive(Debug, Clone, Default)]
pub struct Accumulator {
    values: Arc<Mutex<Snapshot>>,
    units: Arc<Mutex<BTreeMap<String, Unit>>>,
}

/// A poisoned lock only means another thread panicked mid-update of plain numbers: the data
/// is still the best we have, and metrics must never take the process down.
fn lock<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    m.lock().unwrap_or_else(PoisonError::into_inner)
}

impl Accumulator {
    pub fn new() -> Accumulator {
        Accumulator::default()
    }

    /// Everything recorded since the last take, and a fresh start.
    pub fn take(&self) -> Snapshot {
        std::mem::take(&mut *lock(&self.values))
    }

    /// Everything recorded since the last take, kept.
    pub fn peek(&self) -> Snapshot {
        lock(&self.values).clone()
    }

    /// The unit a `describe_*!` call gave the metric, if any.
    pub fn unit(&self, name: &str) -> Option<Unit> {
        lock(&self.units).get(name).copied()
    }

    /// Makes this the recorder of the current thread until the guard drops: for tests,
    /// including async ones on a current-thread runtime (every task runs on this thread).
    pub fn local(&self) -> LocalRecorderGuard<'_> {
        metrics::set_default_local_recorder(self)
    }

    fn handle(&self, key: &Key) -> Arc<Handle> {
        Arc::new(Handle {
            values: Arc::clone(&self.values),
            name: key.name().to_owned(),
        })
    }

    fn describe(&self, key: KeyName, unit: Option<Unit>) {
        if let Some(unit) = unit {
            lock(&self.units).insert(key.as_str().to_owned(), unit);
        }
    }
}

impl Recorder for Accumulator {
    fn describe_counter(&self, key: KeyName, unit: Option<Unit>, _: SharedString) {
        self.describe(key, unit);
    }

    fn describe_gauge(&self, key: KeyName, unit: Option<Unit>, _: SharedString) {
        self.describe(key, unit);
    }

    fn describe_histogram(&self, key: KeyName, unit: Option<Unit>, _: SharedString) {
        self.describe(key, unit);
    }

    fn register_counter(&self, key: &Key, _: &Metadata<'_>) -> Counter {
        Counter::from_arc(self.handle(key))
    }

    fn register_gauge(&self, key: &Key, _: &Metadata<'_>) -> Gauge {
        Gauge::from_arc(self.handle(key))
    }

    fn register_histogram(&self, key: &Key, _: &Metadata<'_>) -> Histogram {
        Histogram::from_arc(self.handle(key))
    }
}

/// One metric of one accumulator: every handle kind, the kind chosen by the macro used.
struct Handle {
    values: Arc<Mutex<Snapshot>>,
    name: String,
}

impl Handle {
    fn counter(&self, f: impl FnOnce(&mut u64)) {
        f(lock(&self.values)
            .counters
            .entry(self.name.clone())
            .or_default());
    }

    fn gauge(&self, f: impl FnOnce(&mut f64)) {
        f(lock(&self.values)
            .gauges
            .entry(self.name.clone())
            .or_default());
    }
}

impl CounterFn for Handle {
    fn increment(&self, value: u64) {
        self.counter(|c| *c = c.saturating_add(value));
    }

    /// The facade's counters only grow: an absolute value below the sum is ignored.
    fn absolute(&self, value: u64) {
        self.counter(|c| *c = (*c).max(value));
    }
}

impl GaugeFn for Handle {
    fn increment(&self, value: f64) {
        self.gauge(|g| *g += value);
    }

    fn decrement(&self, value: f64) {
        self.gauge(|g| *g -= value);
    }

    fn set(&self, value: f64) {
        self.gauge(|g| *g = value);
    }
}

impl HistogramFn for Handle {
    fn record(&self, value: f64) {
        lock(&self.values)
            .histograms
            .entry(self.name.clone())
            .or_default()
            .push(value);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn accumulates_until_taken_then_starts_afresh() {
        let acc = Accumulator::new();
        metrics::with_local_recorder(&acc, || {
            metrics::describe_histogram!("lat", Unit::Milliseconds, "latency");
            metrics::counter!("c").increment(2);
            metrics::counter!("c").increment(3);
            metrics::counter!("zero").increment(0);
            metrics::gauge!("g").set(7.5);
            metrics::gauge!("g").increment(1.0);
            metrics::histogram!("lat").record(1.5);
            metrics::histogram!("lat").record(0.25);
        });
        // Outside the closure nothing reaches it.
        metrics::counter!("c").increment(100);
        let s = acc.peek();
        assert_eq!((s.counter("c"), s.counter("zero")), (5, 0));
        assert!(s.counters.contains_key("zero"), "touched counters appear");
        assert_eq!(s.gauges["g"], 8.5);
        assert_eq!(s.histogram("lat"), [1.5, 0.25]);
        assert_eq!(acc.unit("lat"), Some(Unit::Milliseconds));
        assert_eq!(acc.take(), s);
        assert!(acc.take().is_empty(), "take resets");
        assert_eq!(acc.unit("lat"), Some(Unit::Milliseconds), "units stay");
    }

    #[tokio::test]
    async fn a_local_guard_spans_awaits_on_a_current_thread_runtime() {
        let acc = Accumulator::new();
        {
            let _guard = acc.local();
            tokio::task::yield_now().await;
            metrics::counter!("after_await").absolute(4);
            metrics::counter!("after_await").absolute(2);
        }
        assert_eq!(acc.take().counter("after_await"), 4);
    }
}
