//! The names of every metric meterflow records, and their units, in one place.
//!
//! The crates record through the `metrics` facade (a no-op until a binary installs a recorder;
//! the Lambdas install the CloudWatch EMF exporter of `meterflow_telemetry::emf`). The names live
//! here so that dashboards, alarms and code agree on one spelling; the core itself records
//! nothing and stays free of the facade. Counters are recorded once per unit of work (a split
//! input, a PutRecords call, a batch written), never per row, so the parser's hot path pays
//! nothing for them.

/// What a metric counts, in CloudWatch's unit names (the EMF exporter writes them as is).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Unit {
    /// A number of things: rows, records, calls.
    Count,
    /// A size in bytes.
    Bytes,
    /// A duration in milliseconds.
    Milliseconds,
}

impl Unit {
    /// The CloudWatch `StandardUnit` spelling.
    pub const fn cloudwatch(self) -> &'static str {
        match self {
            Unit::Count => "Count",
            Unit::Bytes => "Bytes",
            Unit::Milliseconds => "Milliseconds",
        }
    }
}

// Splitter (counters, added once per split input).

/// Count: data rows read (`rows_read = rows_accepted + rows_rejected`).
pub const SPLITTER_ROWS_READ: &str = "splitter.rows_read";
/// Count: rows that became fragments.
pub const SPLITTER_ROWS_ACCEPTED: &str = "splitter.rows_accepted";
/// Count: rows rejected (each reported with file, line and reason).
pub const SPLITTER_ROWS_REJECTED: &str = "splitter.rows_rejected";
/// Count: fragments packed into stream records.
pub const SPLITTER_FRAGMENTS: &str = "splitter.fragments";
/// Bytes: decompressed input bytes parsed.
pub const SPLITTER_INPUT_BYTES: &str = "splitter.input_bytes";

// Kinesis PutRecords (counters, added once per batch put).

/// Count: records the stream accepted.
pub const KINESIS_RECORDS_PUT: &str = "kinesis.records_put";
/// Bytes: data bytes of the records accepted (partition keys not counted).
pub const KINESIS_BYTES_PUT: &str = "kinesis.bytes_put";
/// Count: PutRecords calls made, retries included.
pub const KINESIS_PUT_CALLS: &str = "kinesis.put_calls";
/// Count: entries sent again after they (or their whole call) failed.
pub const KINESIS_ENTRIES_RETRIED: &str = "kinesis.entries_retried";
/// Count: calls the service throttled, whole or for some of their entries.
pub const KINESIS_THROTTLED_CALLS: &str = "kinesis.throttled_calls";

// S3 ranged reads (counters, added once per GET).

/// Bytes: object bytes received from S3 (a resumed range counts only the new bytes).
pub const S3_BYTES_READ: &str = "s3.bytes_read";
/// Count: GETs issued again after a failed GET or a broken body.
pub const S3_GET_RESUMES: &str = "s3.get_resumes";

// Aggregator (counters once per batch; latency per store write).

/// Count: records written to the store.
pub const AGGREGATOR_RECORDS_APPLIED: &str = "aggregator.records_applied";
/// Count: fragments inside the records written.
pub const AGGREGATOR_FRAGMENTS_WRITTEN: &str = "aggregator.fragments_written";
/// Count: records that can never decode, skipped (never retried).
pub const AGGREGATOR_RECORDS_QUARANTINED: &str = "aggregator.records_quarantined";
/// Count: records the store refused with a permanent error, skipped and dead-lettered by the
/// aggregator Lambda (never retried).
pub const AGGREGATOR_RECORDS_REFUSED: &str = "aggregator.records_refused";
/// Count: store writes that failed (retryable: the batch is retried from the failed record;
/// permanent: the record is refused).
pub const AGGREGATOR_STORE_FAILURES: &str = "aggregator.store_failures";
/// Milliseconds (histogram): time of one store write of a batch's valid records.
pub const AGGREGATOR_STORE_WRITE_MS: &str = "aggregator.store_write_ms";
/// Milliseconds (histogram): how long the newest record of a Kinesis batch waited in the
/// stream (handler's now minus its `approximateArrivalTimestamp`; 0 if the clocks disagree).
pub const AGGREGATOR_ITERATOR_AGE_MS: &str = "aggregator.iterator_age_ms";

/// Every metric with its unit, for exporters that must state units (CloudWatch EMF).
pub const ALL: &[(&str, Unit)] = &[
    (SPLITTER_ROWS_READ, Unit::Count),
    (SPLITTER_ROWS_ACCEPTED, Unit::Count),
    (SPLITTER_ROWS_REJECTED, Unit::Count),
    (SPLITTER_FRAGMENTS, Unit::Count),
    (SPLITTER_INPUT_BYTES, Unit::Bytes),
    (KINESIS_RECORDS_PUT, Unit::Count),
    (KINESIS_BYTES_PUT, Unit::Bytes),
    (KINESIS_PUT_CALLS, Unit::Count),
    (KINESIS_ENTRIES_RETRIED, Unit::Count),
    (KINESIS_THROTTLED_CALLS, Unit::Count),
    (S3_BYTES_READ, Unit::Bytes),
    (S3_GET_RESUMES, Unit::Count),
    (AGGREGATOR_RECORDS_APPLIED, Unit::Count),
    (AGGREGATOR_FRAGMENTS_WRITTEN, Unit::Count),
    (AGGREGATOR_RECORDS_QUARANTINED, Unit::Count),
    (AGGREGATOR_RECORDS_REFUSED, Unit::Count),
    (AGGREGATOR_STORE_FAILURES, Unit::Count),
    (AGGREGATOR_STORE_WRITE_MS, Unit::Milliseconds),
    (AGGREGATOR_ITERATOR_AGE_MS, Unit::Milliseconds),
];

/// The unit of a metric named here, if it is one.
pub fn unit_of(name: &str) -> Option<Unit> {
    ALL.iter().find(|(n, _)| *n == name).map(|&(_, u)| u)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_are_unique_and_fit_cloudwatch() {
        let mut names: Vec<&str> = ALL.iter().map(|(n, _)| *n).collect();
        names.sort_unstable();
        names.dedup();
        assert_eq!(names.len(), ALL.len(), "a name is listed twice");
        // CloudWatch metric names: 1 to 255 characters; ASCII keeps them easy to type.
        assert!(names
            .iter()
            .all(|n| (1..=255).contains(&n.len()) && n.is_ascii()));
        assert_eq!(unit_of(AGGREGATOR_STORE_WRITE_MS), Some(Unit::Milliseconds));
        assert_eq!(
            unit_of(KINESIS_BYTES_PUT).map(Unit::cloudwatch),
            Some("Bytes")
        );
        assert_eq!(unit_of("nope"), None);
    }
}
