//! The process-wide exporter, as a Lambda's `main` uses it (its own test binary: installing a
//! global recorder must not catch other tests' metrics).

use meterflow_core::metric_names as m;
use meterflow_telemetry::emf::{self, EmfError};

#[test]
fn install_from_env_publishes_under_the_configured_namespace_and_function() {
    std::env::set_var(emf::NAMESPACE_ENV, "meterflow-dev");
    std::env::set_var(emf::FUNCTION_NAME_ENV, "meterflow-splitter");
    emf::flush().expect("nothing installed: nothing to write");
    emf::install_from_env().unwrap();
    assert!(matches!(
        emf::install_from_env(),
        Err(EmfError::AlreadyInstalled)
    ));
    // Recorded on another thread: the global recorder sees every thread.
    std::thread::spawn(|| metrics::counter!(m::SPLITTER_ROWS_READ).increment(7))
        .join()
        .unwrap();
    let mut out = Vec::new();
    let exporter = emf::installed().unwrap();
    assert_eq!(exporter.flush_to(&mut out, 1).unwrap(), 1);
    let doc: serde_json::Value = serde_json::from_slice(&out).unwrap();
    assert_eq!(
        doc["_aws"]["CloudWatchMetrics"][0]["Namespace"],
        "meterflow-dev"
    );
    assert_eq!(doc["FunctionName"], "meterflow-splitter");
    assert_eq!(doc[m::SPLITTER_ROWS_READ], 7);
    assert!(out.ends_with(b"\n") && out.iter().filter(|&&b| b == b'\n').count() == 1);
    // The free function writes to stdout; with nothing recorded since, it writes nothing.
    emf::flush().unwrap();
}
