//! The splitter: one input's bytes in, envelope records out, each record holding fragments of
//! one bucket of series (see [`meterflow_core::partition`]), at most `max_record_bytes` long.
//!
//! Synchronous and I/O-free like the core: the caller reads (a local file, S3 ranged GETs) and
//! ships records (an in-process channel, Kinesis PutRecords). Packing is a pure function of
//! the input bytes and the settings, so re-splitting an input yields the same records, which
//! keeps downstream writes idempotent.

pub mod channel;
pub mod files;
#[cfg(feature = "lambda")]
pub mod handover;
pub mod input;
#[cfg(feature = "lambda")]
pub mod lambda;
pub mod object;
pub mod pack;
mod pieces;
#[cfg(feature = "lambda")]
pub mod report;
pub mod s3;

pub use input::{split, split_part, SplitError, SplitErrorKind, READ_CHUNK};
pub use meterflow_core::envelope::StreamRecord;
pub use pack::{Collected, Output, PackSettings, Packer};
