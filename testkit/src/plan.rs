//! [`Plan`]: the faults a fault-injecting double gives its calls, in call order, shared by
//! [`crate::kinesis::Faulty`] and [`crate::store::Faulty`] so that both count the same way.

use std::collections::VecDeque;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Mutex;

/// The `n`-th call gets the `n`-th planned fault (`None`: pass through); calls past the plan
/// pass through.
#[derive(Debug)]
pub struct Plan<F> {
    faults: Mutex<VecDeque<Option<F>>>,
    calls: AtomicU64,
    injected: AtomicU64,
}

impl<F> Plan<F> {
    pub fn new(faults: Vec<Option<F>>) -> Plan<F> {
        Plan {
            faults: Mutex::new(faults.into()),
            calls: AtomicU64::new(0),
            injected: AtomicU64::new(0),
        }
    }

    /// The fault planned for this call, counting the call (and the fault, if any).
    pub fn next(&self) -> Option<F> {
        self.calls.fetch_add(1, Ordering::SeqCst);
        let fault = self
            .faults
            .lock()
            .ok()
            .and_then(|mut p| p.pop_front())
            .flatten();
        if fault.is_some() {
            self.injected.fetch_add(1, Ordering::SeqCst);
        }
        fault
    }

    /// Calls so far.
    pub fn calls(&self) -> u64 {
        self.calls.load(Ordering::SeqCst)
    }

    /// Calls that got a planned fault so far (a test can check its faults were reached).
    pub fn injected(&self) -> u64 {
        self.injected.load(Ordering::SeqCst)
    }
}
