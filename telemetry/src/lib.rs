//! meterflow's telemetry: the `metrics` facade's recorder and where its values go.
//!
//! - [`recorder`]: an in-memory recorder ([`Accumulator`]) that every instrumented crate's
//!   tests install to assert what was recorded, and that the exporter flushes;
//! - [`emf`]: the Lambdas' exporter, CloudWatch Embedded Metric Format lines on stdout.
//!
//! Named `telemetry`, not `metrics`, so that it never shadows the `metrics` crate it builds on.
//! Metric names and units are [`meterflow_core::metric_names`].

pub mod emf;
pub mod recorder;

pub use recorder::{Accumulator, Snapshot};
