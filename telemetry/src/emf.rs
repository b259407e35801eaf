//! The Lambdas' metrics exporter: CloudWatch Embedded Metric Format (EMF) on stdout.
//!
//! A Lambda's stdout is its CloudWatch Logs stream, and CloudWatch extracts metrics from any
//! log line that is an EMF document: no agent, no API call, no extra latency on the
//! invocation. So the exporter is an in-memory recorder ([`Accumulator`]) installed as the
//! `metrics` facade's global recorder, and [`flush`], called after each invocation, writes what
//! was recorded since the last flush as one JSON line and starts afresh:
//!
//! ```json
//! {"_aws":{"Timestamp":1732780800000,"CloudWatchMetrics":[{"Namespace":"meterflow",
//!  "Dimensions":[["FunctionName"]],"Metrics":[{"Name":"kinesis.records_put","Unit":"Count"}]}]},
//!  "FunctionName":"meterflow-splitter","kinesis.records_put":42}
//! ```
//!
//! Counters are written as their sum since the last flush, gauges as their last value,
//! histograms as the array of values recorded (CloudWatch computes the statistics). A metric
//! not touched since the last flush is not written; a flush with nothing recorded writes
//! nothing. The specification's limits are kept by writing more documents, never by dropping
//! or merging values: at most [`MAX_METRICS_PER_DOCUMENT`] metrics and
//! [`MAX_DOCUMENT_BYTES`] per document, and a histogram with more than
//! [`MAX_VALUES_PER_METRIC`] values continues in further documents (CloudWatch aggregates
//! values of one metric across documents).
//!
//! Units come from a `describe_*!` call if the metric had one, else from
//! [`meterflow_core::metric_names::ALL`], else `None` (CloudWatch's "no unit").

use std::io::{self, Write};
use std::sync::OnceLock;
use std::time::{SystemTime, UNIX_EPOCH};

use crate::recorder::{Accumulator, Snapshot};
use meterflow_core::metric_names;
use serde_json::{json, Map, Value};

/// Environment variable naming the CloudWatch namespace.
pub const NAMESPACE_ENV: &str = "METERFLOW_METRICS_NAMESPACE";
/// The namespace when [`NAMESPACE_ENV`] is unset or empty.
pub const DEFAULT_NAMESPACE: &str = "meterflow";
/// Set by Lambda to the function's name: the value of the one dimension.
pub const FUNCTION_NAME_ENV: &str = "AWS_LAMBDA_FUNCTION_NAME";
/// The dimension every metric is published under (when the function name is known).
pub const DIMENSION: &str = "FunctionName";

/// EMF: a MetricDirective's `Metrics` array holds at most 100 MetricDefinitions.
pub const MAX_METRICS_PER_DOCUMENT: usize = 100;
/// EMF: a metric's array of values has at most 100 members.
pub const MAX_VALUES_PER_METRIC: usize = 100;
/// EMF documents are CloudWatch Logs events: at most 256 KB each.
pub const MAX_DOCUMENT_BYTES: usize = 256 * 1024;
/// CloudWatch namespaces and metric names: 1 to 255 characters.
pub const MAX_NAME_CHARS: usize = 255;

/// Why the exporter could not be set up or could not write.
#[derive(Debug, thiserror::Error)]
pub enum EmfError {
    #[error("{NAMESPACE_ENV}={namespace:?} is not a usable CloudWatch namespace: {reason}")]
    Namespace {
        namespace: String,
        reason: &'static str,
    },
    #[error("a metrics recorder is already installed: call emf::install_from_env once, at start")]
    AlreadyInstalled,
    #[error("writing metrics to stdout: {0}")]
    Write(#[from] io::Error),
}

/// The exporter: an accumulating recorder and where its documents are published.
#[derive(Debug, Clone)]
pub struct Emf {
    recorder: Accumulator,
    namespace: String,
    function_name: Option<String>,
}

/// One metric's value as it goes into a document.
struct MetricEntry<'a> {
    name: &'a str,
    unit: &'static str,
    value: Value,
    /// Its share of the document's size: the member, and the definition naming it.
    bytes: usize,
}

impl Emf {
    /// An exporter publishing under `namespace`, with the `FunctionName` dimension when
    /// `function_name` is given (none: metrics without dimensions).
    pub fn new(namespace: &str, function_name: Option<String>) -> Result<Emf, EmfError> {
        let bad = |reason| EmfError::Namespace {
            namespace: namespace.to_owned(),
            reason,
        };
        if namespace.is_empty() || namespace.chars().count() > MAX_NAME_CHARS {
            return Err(bad("it must be 1 to 255 characters long"));
        }
        if namespace.starts_with("AWS/") {
            return Err(bad("the AWS/ prefix is reserved for AWS services"));
        }
        Ok(Emf {
            recorder: Accumulator::new(),
            namespace: namespace.to_owned(),
            function_name: function_name.filter(|f| !f.is_empty()),
        })
    }

    /// The exporter the Lambda environment describes (see [`NAMESPACE_ENV`] and
    /// [`FUNCTION_NAME_ENV`]).
    pub fn from_env() -> Result<Emf, EmfError> {
        let namespace = std::env::var(NAMESPACE_ENV)
            .ok()
            .filter(|n| !n.is_empty())
            .unwrap_or_else(|| DEFAULT_NAMESPACE.to_owned());
        Emf::new(&namespace, std::env::var(FUNCTION_NAME_ENV).ok())
    }

    /// The recorder to install (clones share what is recorded).
    pub fn recorder(&self) -> &Accumulator {
        &self.recorder
    }

    /// Writes what was recorded since the last flush, one document per line, and starts
    /// afresh; returns the number of documents written (0 when nothing was recorded).
    pub fn flush_to(&self, out: &mut impl Write, timestamp_ms: i64) -> io::Result<usize> {
        let documents = self.documents(&self.recorder.take(), timestamp_ms);
        for document in &documents {
            let mut line = serde_json::to_vec(document)?;
            line.push(b'\n');
            // One write per document, so a line is never interleaved with other output.
            out.write_all(&line)?;
        }
        out.flush()?;
        Ok(documents.len())
    }

    /// The EMF documents for `snapshot`, within the specification's limits (see the module
    /// docs).
    pub fn documents(&self, snapshot: &Snapshot, timestamp_ms: i64) -> Vec<Value> {
        let empty = self.document(timestamp_ms, &[]).to_string().len();
        let budget = MAX_DOCUMENT_BYTES.saturating_sub(empty);
        let mut documents = Vec::new();
        for round in self.rounds(snapshot) {
            let mut start = 0;
            let mut bytes = 0;
            for (i, entry) in round.iter().enumerate() {
                if i - start == MAX_METRICS_PER_DOCUMENT || bytes + entry.bytes > budget {
                    documents.push(self.document(timestamp_ms, &round[start..i]));
                    start = i;
                    bytes = 0;
                }
                bytes += entry.bytes;
            }
            if start < round.len() {
                documents.push(self.document(timestamp_ms, &round[start..]));
            }
        }
        documents
    }

    /// The entries to write, in rounds that each name a metric at most once: the first holds
    /// every counter and gauge and each histogram's first [`MAX_VALUES_PER_METRIC`] values,
    /// the next ones the rest of the histograms that have more.
    fn rounds<'s>(&self, snapshot: &'s Snapshot) -> Vec<Vec<MetricEntry<'s>>> {
        let mut rounds: Vec<Vec<MetricEntry<'s>>> = vec![Vec::new()];
        let mut add = |round: usize, name: &'s str, value: Value| {
            if !usable(name) {
                return;
            }
            if rounds.len() <= round {
                rounds.resize_with(round + 1, Vec::new);
            }
            let unit = self.unit(name);
            // The member `"name":value,` and the definition `{"Name":"name","Unit":"unit"},`.
            let quoted = Value::from(name).to_string().len();
            let bytes = quoted + value.to_string().len() + 2 + quoted + unit.len() + 22;
            rounds[round].push(MetricEntry {
                name,
                unit,
                value,
                bytes,
            });
        };
        for (name, &sum) in &snapshot.counters {
            add(0, name, Value::from(sum));
        }
        for (name, &last) in &snapshot.gauges {
            if last.is_finite() {
                add(0, name, Value::from(last));
            }
        }
        for (name, values) in &snapshot.histograms {
            // JSON has no NaN or infinity; CloudWatch would refuse the document.
            let finite: Vec<f64> = values.iter().copied().filter(|v| v.is_finite()).collect();
            for (round, chunk) in finite.chunks(MAX_VALUES_PER_METRIC).enumerate() {
                add(round, name, Value::from(chunk.to_vec()));
            }
        }
        rounds.retain(|r| !r.is_empty());
        rounds
    }

    fn unit(&self, name: &str) -> &'static str {
        match self.recorder.unit(name) {
            Some(unit) => cloudwatch_unit(unit),
            None => metric_names::unit_of(name).map_or("None", metric_names::Unit::cloudwatch),
        }
    }

    fn document(&self, timestamp_ms: i64, entries: &[MetricEntry<'_>]) -> Value {
        let definitions: Vec<Value> = entries
            .iter()
            .map(|e| json!({"Name": e.name, "Unit": e.unit}))
            .collect();
        let dimensions: Vec<&str> = self.function_name.iter().map(|_| DIMENSION).collect();
        let mut root = Map::new();
        root.insert(
            "_aws".to_owned(),
            json!({
                "Timestamp": timestamp_ms,
                "CloudWatchMetrics": [{
                    "Namespace": self.namespace,
                    "Dimensions": [dimensions],
                    "Metrics": definitions,
                }],
            }),
        );
        if let Some(function) = &self.function_name {
            root.insert(DIMENSION.to_owned(), Value::from(function.as_str()));
        }
        for e in entries {
            root.insert(e.name.to_owned(), e.value.clone());
        }
        Value::Object(root)
    }
}

/// Whether a metric name can be a member of the root without breaking the document: CloudWatch
/// takes 1 to 255 characters, and `_aws` and the dimension's member are taken.
fn usable(name: &str) -> bool {
    !name.is_empty()
        && name.chars().count() <= MAX_NAME_CHARS
        && name != "_aws"
        && name != DIMENSION
}

/// CloudWatch's name for a facade unit. CloudWatch has no nanoseconds and does not say its
/// kilobytes are binary, so those are published without a unit rather than mislabelled.
fn cloudwatch_unit(unit: metrics::Unit) -> &'static str {
    use metrics::Unit as U;
    match unit {
        U::Count => "Count",
        U::Percent => "Percent",
        U::Seconds => "Seconds",
        U::Milliseconds => "Milliseconds",
        U::Microseconds => "Microseconds",
        U::Bytes => "Bytes",
        U::CountPerSecond => "Count/Second",
        U::BitsPerSecond => "Bits/Second",
        U::KilobitsPerSecond => "Kilobits/Second",
        U::MegabitsPerSecond => "Megabits/Second",
        U::GigabitsPerSecond => "Gigabits/Second",
        U::TerabitsPerSecond => "Terabits/Second",
        U::Nanoseconds | U::Kibibytes | U::Mebibytes | U::Gibibytes | U::Tebibytes => "None",
    }
}

static INSTALLED: OnceLock<Emf> = OnceLock::new();

/// Installs the exporter the environment describes as the process's metrics recorder. Call
/// once, at the start of a Lambda's `main`.
pub fn install_from_env() -> Result<(), EmfError> {
    install(Emf::from_env()?)
}

/// Installs `emf` as the process's metrics recorder (once per process).
pub fn install(emf: Emf) -> Result<(), EmfError> {
    metrics::set_global_recorder(emf.recorder.clone()).map_err(|_| EmfError::AlreadyInstalled)?;
    INSTALLED.set(emf).map_err(|_| EmfError::AlreadyInstalled)
}

/// The installed exporter, if any.
pub fn installed() -> Option<&'static Emf> {
    INSTALLED.get()
}

/// Writes what was recorded since the last flush to stdout (see [`Emf::flush_to`]). Call
/// after each invocation, so each invocation's metrics carry its time. Without an installed
/// exporter there is nothing to write.
pub fn flush() -> Result<(), EmfError> {
    if let Some(emf) = installed() {
        emf.flush_to(&mut io::stdout().lock(), now_ms())?;
    }
    Ok(())
}

fn now_ms() -> i64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| i64::try_from(d.as_millis()).unwrap_or(i64::MAX))
}

/// [`flush`], logging a failure instead of returning it: after every invocation, failed ones
/// too (a failing batch still shows what it did). Losing a metrics line must not make Lambda
/// redeliver a batch that was stored.
pub fn flush_logged() {
    if let Err(e) = flush() {
        tracing::warn!(error = %e, "could not write the metrics (EMF) line");
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use meterflow_core::metric_names as m;

    const TS: i64 = 1_732_780_800_000;

    /// Checks `line` against the EMF specification's rules and returns it parsed.
    fn checked(line: &[u8]) -> Value {
        assert!(line.len() <= MAX_DOCUMENT_BYTES, "{} bytes", line.len());
        let doc: Value = serde_json::from_slice(line).unwrap();
        let aws = &doc["_aws"];
        assert!(aws["Timestamp"].is_i64(), "{doc}");
        let directives = aws["CloudWatchMetrics"].as_array().unwrap();
        assert_eq!(directives.len(), 1);
        let d = &directives[0];
        assert!(d["Namespace"].as_str().is_some_and(|n| !n.is_empty()));
        for set in d["Dimensions"].as_array().unwrap() {
            for key in set.as_array().unwrap() {
                assert!(doc[key.as_str().unwrap()].is_string(), "dimension {key}");
            }
        }
        let metrics = d["Metrics"].as_array().unwrap();
        assert!(!metrics.is_empty() && metrics.len() <= MAX_METRICS_PER_DOCUMENT);
        let units = ["Count", "Bytes", "Milliseconds", "Seconds", "None"];
        for def in metrics {
            assert!(units.contains(&def["Unit"].as_str().unwrap()), "{def}");
            let target = &doc[def["Name"].as_str().unwrap()];
            match target.as_array() {
                Some(values) => {
                    assert!(!values.is_empty() && values.len() <= MAX_VALUES_PER_METRIC);
                    assert!(values.iter().all(Value::is_number));
                }
                None => assert!(target.is_number(), "{def}: {target}"),
            }
        }
        doc
    }

    fn flushed(emf: &Emf) -> Vec<Value> {
        let mut out = Vec::new();
        let n = emf.flush_to(&mut out, TS).unwrap();
        let docs: Vec<Value> = out
            .split(|&b| b == b'\n')
            .filter(|l| !l.is_empty())
            .map(checked)
            .collect();
        assert_eq!(docs.len(), n);
        docs
    }

    fn emf() -> Emf {
        Emf::new("meterflow-test", Some("meterflow-aggregator".into())).unwrap()
    }

    #[test]
    fn one_document_holds_every_metric_with_its_unit_and_the_function_dimension() {
        let emf = emf();
        metrics::with_local_recorder(emf.recorder(), || {
            metrics::counter!(m::KINESIS_RECORDS_PUT).increment(40);
            metrics::counter!(m::KINESIS_RECORDS_PUT).increment(2);
            metrics::counter!(m::KINESIS_BYTES_PUT).increment(1_000_000);
            metrics::counter!(m::AGGREGATOR_STORE_FAILURES).increment(0);
            metrics::histogram!(m::AGGREGATOR_STORE_WRITE_MS).record(1.5);
            metrics::histogram!(m::AGGREGATOR_STORE_WRITE_MS).record(20.25);
            metrics::gauge!("lambda.memory_in_use").set(3.0);
        });
        let docs = flushed(&emf);
        assert_eq!(docs.len(), 1);
        let doc = &docs[0];
        assert_eq!(doc["_aws"]["Timestamp"], TS);
        let d = &doc["_aws"]["CloudWatchMetrics"][0];
        assert_eq!(d["Namespace"], "meterflow-test");
        assert_eq!(d["Dimensions"], json!([["FunctionName"]]));
        assert_eq!(doc["FunctionName"], "meterflow-aggregator");
        let units: Vec<(String, String)> = d["Metrics"]
            .as_array()
            .unwrap()
            .iter()
            .map(|m| {
                (
                    m["Name"].as_str().unwrap().into(),
                    m["Unit"].as_str().unwrap().into(),
                )
            })
            .collect();
        let want = [
            (m::AGGREGATOR_STORE_FAILURES, "Count"),
            (m::KINESIS_BYTES_PUT, "Bytes"),
            (m::KINESIS_RECORDS_PUT, "Count"),
            ("lambda.memory_in_use", "None"),
            (m::AGGREGATOR_STORE_WRITE_MS, "Milliseconds"),
        ];
        assert_eq!(units, want.map(|(n, u)| (n.to_owned(), u.to_owned())));
        assert_eq!(doc[m::KINESIS_RECORDS_PUT], 42);
        assert_eq!(doc[m::KINESIS_BYTES_PUT], 1_000_000);
        assert_eq!(doc[m::AGGREGATOR_STORE_FAILURES], 0);
        assert_eq!(doc[m::AGGREGATOR_STORE_WRITE_MS], json!([1.5, 20.25]));
        assert_eq!(doc["lambda.memory_in_use"], 3.0);
    }

    #[test]
    fn a_flush_resets_and_an_idle_flush_writes_nothing() {
        let emf = emf();
        let record = |n| {
            metrics::with_local_recorder(emf.recorder(), || {
                metrics::counter!(m::S3_GET_RESUMES).increment(n);
            })
        };
        record(3);
        assert_eq!(flushed(&emf)[0][m::S3_GET_RESUMES], 3);
        assert!(flushed(&emf).is_empty(), "nothing recorded since");
        record(1);
        metrics::with_local_recorder(emf.recorder(), || {
            metrics::histogram!(m::AGGREGATOR_ITERATOR_AGE_MS).record(5.0);
        });
        let docs = flushed(&emf);
        assert_eq!(docs[0][m::S3_GET_RESUMES], 1, "a sum since the last flush");
        assert_eq!(docs[0][m::AGGREGATOR_ITERATOR_AGE_MS], json!([5.0]));
    }

    #[test]
    fn more_metrics_than_one_document_takes_continue_in_the_next() {
        let emf = emf();
        let n = 2 * MAX_METRICS_PER_DOCUMENT + 50;
        metrics::with_local_recorder(emf.recorder(), || {
            for i in 0..n {
                metrics::counter!(format!("c{i:03}")).increment(i as u64);
            }
        });
        let docs = flushed(&emf);
        let sizes: Vec<usize> = docs
            .iter()
            .map(|d| {
                d["_aws"]["CloudWatchMetrics"][0]["Metrics"]
                    .as_array()
                    .unwrap()
                    .len()
            })
            .collect();
        assert_eq!(
            sizes,
            [MAX_METRICS_PER_DOCUMENT, MAX_METRICS_PER_DOCUMENT, 50]
        );
        for i in 0..n {
            let name = format!("c{i:03}");
            let holders: Vec<&Value> = docs.iter().filter(|d| !d[&name].is_null()).collect();
            assert_eq!(holders.len(), 1, "{name} written once");
            assert_eq!(holders[0][&name], i as u64);
        }
    }

    #[test]
    fn long_histograms_continue_in_further_documents_losing_no_value() {
        let emf = emf();
        let n = 2 * MAX_VALUES_PER_METRIC + 7;
        metrics::with_local_recorder(emf.recorder(), || {
            metrics::counter!(m::KINESIS_PUT_CALLS).increment(9);
            for i in 0..n {
                metrics::histogram!(m::AGGREGATOR_STORE_WRITE_MS).record(i as f64);
            }
            metrics::histogram!(m::AGGREGATOR_STORE_WRITE_MS).record(f64::NAN);
            metrics::gauge!("g").set(f64::INFINITY);
        });
        let docs = flushed(&emf);
        assert_eq!(docs.len(), 3);
        let values: Vec<Vec<f64>> = docs
            .iter()
            .map(|d| {
                let a = d[m::AGGREGATOR_STORE_WRITE_MS].as_array().unwrap();
                a.iter().map(|v| v.as_f64().unwrap()).collect()
            })
            .collect();
        assert_eq!(
            values.iter().map(Vec::len).collect::<Vec<_>>(),
            [MAX_VALUES_PER_METRIC, MAX_VALUES_PER_METRIC, 7]
        );
        let all: Vec<f64> = values.concat();
        assert_eq!(
            all,
            (0..n).map(|i| i as f64).collect::<Vec<_>>(),
            "NaN left out"
        );
        // The counter is written once, with the first values; the infinite gauge never.
        assert_eq!(docs[0][m::KINESIS_PUT_CALLS], 9);
        assert!(docs[1..].iter().all(|d| d[m::KINESIS_PUT_CALLS].is_null()));
        assert!(docs.iter().all(|d| d["g"].is_null()));
    }

    #[test]
    fn documents_stay_within_the_size_limit() {
        let emf = emf();
        // 100 full histograms of 24-character numbers would pass 256 KB in one document.
        metrics::with_local_recorder(emf.recorder(), || {
            for h in 0..MAX_METRICS_PER_DOCUMENT {
                let name = format!("{}.{h:03}", "histogram.with.a.long.name".repeat(4));
                for i in 0..MAX_VALUES_PER_METRIC {
                    metrics::histogram!(name.clone()).record(-1e-100 / (3 + h * 1000 + i) as f64);
                }
            }
        });
        let docs = flushed(&emf);
        assert!(docs.len() > 1, "split by size, not only by count");
        let total: usize = docs
            .iter()
            .flat_map(|d| d.as_object().unwrap().iter())
            .filter(|(k, _)| k.starts_with("histogram."))
            .map(|(_, v)| v.as_array().unwrap().len())
            .sum();
        assert_eq!(total, MAX_METRICS_PER_DOCUMENT * MAX_VALUES_PER_METRIC);
    }

    #[test]
    fn units_from_descriptions_win_and_no_function_name_means_no_dimension() {
        let emf = Emf::new("ns", None).unwrap();
        metrics::with_local_recorder(emf.recorder(), || {
            metrics::describe_histogram!("took", metrics::Unit::Seconds, "time taken");
            metrics::histogram!("took").record(0.5);
            metrics::counter!("_aws").increment(1);
            metrics::counter!(DIMENSION).increment(1);
        });
        let docs = flushed(&emf);
        let d = &docs[0]["_aws"]["CloudWatchMetrics"][0];
        assert_eq!(d["Dimensions"], json!([[]]));
        assert_eq!(d["Metrics"], json!([{"Name": "took", "Unit": "Seconds"}]));
        assert!(
            docs[0].get(DIMENSION).is_none(),
            "reserved names are not written"
        );
    }

    #[test]
    fn namespaces_are_checked() {
        assert!(Emf::new("", None).is_err());
        assert!(Emf::new(&"n".repeat(256), None).is_err());
        let e = Emf::new("AWS/Lambda", None).unwrap_err();
        assert!(e.to_string().contains("reserved"), "{e}");
        assert!(Emf::new(&"n".repeat(255), Some(String::new())).is_ok());
    }
}
