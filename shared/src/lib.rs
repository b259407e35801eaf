#![deny(missing_docs)]
//! meterflow's pure, synchronous core: input formats, readings, merge rules and the wire
//! encoding. No I/O beyond `std::io::Read` adapters, no async runtime, no AWS: the Lambdas and
//! the CLI wire their I/O to these functions.

pub mod day;
pub mod decompress;
pub mod envelope;
pub mod format;
pub mod fragment;
pub mod merge;
pub mod metric_names;
pub mod partition;
pub mod reject;
pub mod series;
pub mod source;
pub mod synth;
pub mod value;

pub use day::Day;
pub use format::{parse_all, Format, Options, Parser, TimestampLabel};
pub use fragment::{Fragment, Quality, Slots, Version};
pub use merge::{daily_totals, DayTotal};
pub use reject::{Collect, FileError, Reject, RejectKind, Sink, Stats};
pub use series::{SeriesId, Unit};
