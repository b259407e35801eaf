//! The splitting thread's side of the records channel: records go to the consumer (the
//! store's writers in `meterflow ingest`, the Kinesis shipper in the Lambda) over a bounded
//! channel, whose bound is the backpressure; and when the consumer fails, the splitter stops at
//! its next read instead of parsing the rest of a large input for nothing.

use std::io;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;

use meterflow_core::envelope::StreamRecord;
use meterflow_core::Reject;
use tokio::sync::mpsc;

use crate::pack::Output;

/// An [`Output`] that sends records over a bounded channel (blocking: call it off the async
/// runtime) and hands rejects to `on_reject`.
pub struct ChannelOutput<F: FnMut(Reject)> {
    tx: mpsc::Sender<StreamRecord>,
    /// Set when the consumer is gone (shared with [`StopWhenClosed`] readers).
    closed: Arc<AtomicBool>,
    on_reject: F,
}

impl<F: FnMut(Reject)> ChannelOutput<F> {
    pub fn new(tx: mpsc::Sender<StreamRecord>, closed: Arc<AtomicBool>, on_reject: F) -> Self {
        ChannelOutput {
            tx,
            closed,
            on_reject,
        }
    }
}

impl<F: FnMut(Reject)> Output for ChannelOutput<F> {
    fn record(&mut self, record: StreamRecord) {
        // Blocking send is the backpressure; it fails only if the consumer has stopped, whose
        // own error is the one reported. Stop reading (see `StopWhenClosed`).
        if self.tx.blocking_send(record).is_err() {
            self.closed.store(true, Ordering::Relaxed);
        }
    }

    fn reject(&mut self, reject: Reject) {
        (self.on_reject)(reject);
    }
}

/// A reader that fails once `closed` is set (the records' consumer is gone), so the splitter
/// stops at its next read instead of parsing the rest of a large input for nothing.
pub struct StopWhenClosed<R> {
    inner: R,
    closed: Arc<AtomicBool>,
}

impl<R> StopWhenClosed<R> {
    pub fn new(inner: R, closed: Arc<AtomicBool>) -> StopWhenClosed<R> {
        StopWhenClosed { inner, closed }
    }
}

/// The error [`StopWhenClosed`] reads fail with.
pub const CONSUMER_GONE: &str = "the records' consumer stopped (its own error says why)";

impl<R: io::Read> io::Read for StopWhenClosed<R> {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        if self.closed.load(Ordering::Relaxed) {
            return Err(io::Error::other(CONSUMER_GONE));
        }
        self.inner.read(buf)
    }
}
