//! Packing: fragments into envelope records, each holding fragments of one bucket of series
//! (see [`meterflow_core::partition`]), at most `max_record_bytes` long. Packing is a pure
//! function of the fragments and the settings, so re-splitting an input yields the same
//! records, which keeps downstream writes idempotent.

use meterflow_core::envelope::{EnvelopeBuilder, StreamRecord, MAX_ENVELOPE_BYTES};
use meterflow_core::partition::bucket;
use meterflow_core::{Fragment, Reject, RejectKind, Sink};

/// How to pack records.
#[derive(Debug, Clone, Copy)]
pub struct PackSettings {
    /// Buckets series are spread over (at least the stream's shard count; more spreads better).
    pub buckets: u32,
    /// Cap on one record's bytes (Kinesis: 1 MiB including the partition key).
    pub max_record_bytes: usize,
    /// Cap on the bytes of all partly filled records together: past it the largest is shipped
    /// early. Keeps memory flat whatever the input (otherwise up to `buckets` MiB are held).
    pub max_held_bytes: usize,
}

impl Default for PackSettings {
    fn default() -> Self {
        PackSettings {
            buckets: 64,
            // 1 MiB less room for the partition key Kinesis counts against the same limit.
            max_record_bytes: MAX_ENVELOPE_BYTES - 256,
            max_held_bytes: 8 << 20,
        }
    }
}

/// Where finished records and rejects go.
pub trait Output {
    fn record(&mut self, record: StreamRecord);
    fn reject(&mut self, reject: Reject);
}

/// A [`Sink`] that packs fragments into per-bucket envelope records.
pub struct Packer<'o, O: Output> {
    settings: PackSettings,
    builders: Vec<Option<EnvelopeBuilder>>,
    /// Encoded size of each bucket's open record, and their sum.
    sizes: Vec<usize>,
    held: usize,
    out: &'o mut O,
    /// A fragment that can never fit a record is not silently dropped: it becomes a reject.
    oversize: Vec<Reject>,
}

impl<'o, O: Output> Packer<'o, O> {
    pub fn new(settings: PackSettings, out: &'o mut O) -> Self {
        let n = settings.buckets.max(1) as usize;
        Packer {
            settings,
            builders: (0..n).map(|_| None).collect(),
            sizes: vec![0; n],
            held: 0,
            out,
            oversize: Vec::new(),
        }
    }

    fn emit(&mut self, b: usize, builder: EnvelopeBuilder) {
        self.held -= std::mem::take(&mut self.sizes[b]);
        let fragments = builder.len() as u32;
        if fragments > 0 {
            self.out.record(StreamRecord {
                bucket: b as u32,
                fragments,
                data: builder.finish(),
            });
        }
    }

    /// Ships every partly filled record, in bucket order.
    pub fn flush(&mut self) {
        for b in 0..self.builders.len() {
            if let Some(builder) = self.builders[b].take() {
                self.emit(b, builder);
            }
        }
    }

    /// Fragments refused because they can never fit one record (reported as rejects).
    pub fn take_oversize(&mut self) -> Vec<Reject> {
        std::mem::take(&mut self.oversize)
    }

    /// Accounts bucket `b`'s new size after a push, and ships the largest open record when the
    /// held bytes pass the budget. The choice depends only on the input, so packing stays a
    /// pure function of it.
    fn track(&mut self, b: usize) {
        let now = self.builders[b]
            .as_ref()
            .map_or(0, EnvelopeBuilder::encoded_len);
        self.held = self.held + now - self.sizes[b];
        self.sizes[b] = now;
        if self.held > self.settings.max_held_bytes {
            let largest = (0..self.sizes.len())
                .max_by_key(|&i| (self.sizes[i], std::cmp::Reverse(i)))
                .unwrap_or(b);
            if let Some(builder) = self.builders[largest].take() {
                self.emit(largest, builder);
            }
        }
    }
}

impl<O: Output> Sink for Packer<'_, O> {
    fn fragment(&mut self, f: &Fragment) {
        let b = bucket(&f.series, self.settings.buckets) as usize;
        let cap = self.settings.max_record_bytes;
        let builder = self.builders[b].get_or_insert_with(|| EnvelopeBuilder::new(cap));
        if builder.try_push(f).is_ok() {
            return self.track(b);
        }
        if let Some(full) = self.builders[b].take() {
            self.emit(b, full);
        }
        let builder = self.builders[b].insert(EnvelopeBuilder::new(cap));
        match builder.try_push(f) {
            Ok(()) => self.track(b),
            Err(e) => {
                let reject = Reject {
                    source: f.source.clone(),
                    line: f.line,
                    column: None,
                    kind: RejectKind::Row,
                    reason: format!("the row's fragment cannot fit one stream record: {e}"),
                };
                self.oversize.push(reject.clone());
                self.out.reject(reject);
            }
        }
    }

    fn reject(&mut self, reject: Reject) {
        self.out.reject(reject);
    }
}

/// An [`Output`] that keeps everything; for tests and small inputs.
#[derive(Debug, Default)]
pub struct Collected {
    pub records: Vec<StreamRecord>,
    pub rejects: Vec<Reject>,
}

impl Output for Collected {
    fn record(&mut self, record: StreamRecord) {
        self.records.push(record);
    }
    fn reject(&mut self, reject: Reject) {
        self.rejects.push(reject);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Kinesis counts the partition key against its record limit: the default cap leaves room
    /// for any bucket's key.
    #[test]
    fn the_default_record_cap_leaves_room_for_any_partition_key() {
        use meterflow_aws::kinesis::Entry;
        let cap = PackSettings::default().max_record_bytes;
        let record = StreamRecord {
            bucket: u32::MAX - 1,
            fragments: 1,
            data: vec![7; cap],
        };
        assert!(Entry::new(record, u32::MAX).is_ok());
    }
}
