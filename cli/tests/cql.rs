//! `--store cql://…`: the binary against an in-process `kassandra` CQL server on loopback.
//! Ingesting the bundled examples into it answers queries with the very JSON the SQLite store
//! gives; a wrong URL fails with exit 1 and says what to fix.

mod common;

use std::path::{Path, PathBuf};
use std::process::{Command, Output};

use meterflow_testkit::cql::Kassandra;
use serde_json::Value;

/// Meters of the examples, one or more per format: `(series, from, to)`.
const METERS: &[(&str, &str, &str)] = &[
    ("EE00027", "2019-01-01", "2019-01-31"),
    ("1200012345678", "2019-02-01", "2019-02-28"),
    ("EE00040", "2019-03-01", "2019-03-31"),
    ("VABD000163-E1", "2004-02-01", "2004-02-29"),
    ("CCCC123456-E1", "2004-04-01", "2004-04-30"),
];

fn run(store: &str, args: &[&str]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_meterflow"))
        .arg("--store")
        .arg(store)
        .args(args)
        .output()
        .expect("run meterflow")
}

fn examples() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../examples")
}

fn ok(out: Output, what: &str) -> Value {
    assert!(
        out.status.success(),
        "{what} failed: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    serde_json::from_slice(&out.stdout).expect("JSON on stdout")
}

/// The server, on a runtime of its own that serves it while the test waits on the binary.
fn server() -> (tokio::runtime::Runtime, Kassandra) {
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .expect("runtime");
    let server = rt.block_on(Kassandra::start());
    (rt, server)
}

#[test]
fn examples_into_cql_query_as_on_sqlite() {
    let (_rt, server) = server();
    // The store creates keyspace and table; kassandra cannot take part in schema agreement.
    let cql = format!(
        "cql://{}/cli_examples?create_schema=true&await_schema_agreement=false",
        server.addr
    );
    let dir = tempfile::tempdir().unwrap();
    let sqlite = dir.path().join("s.db").display().to_string();
    let examples = examples();
    let examples = examples.to_str().unwrap();
    let on_cql = ok(
        run(&cql, &["ingest", "--json", examples]),
        "ingest into CQL",
    );
    let on_sqlite = ok(run(&sqlite, &["ingest", "--json", examples]), "ingest");
    common::assert_same_counts(&on_cql, &on_sqlite);
    assert!(on_cql["rows_accepted"].as_u64() > Some(0));
    // Idempotent on CQL too: a second ingest changes no answer.
    ok(run(&cql, &["ingest", "--json", examples]), "ingest again");
    for (meter, from, to) in METERS {
        let args = ["query", meter, "--from", from, "--to", to];
        let want = run(&sqlite, &args);
        let got = run(&cql, &args);
        assert!(
            got.status.success(),
            "{}",
            String::from_utf8_lossy(&got.stderr)
        );
        let v: Value = serde_json::from_slice(&got.stdout).unwrap();
        assert!(!v["days"].as_array().unwrap().is_empty(), "{meter}: {v}");
        assert_eq!(
            String::from_utf8_lossy(&got.stdout),
            String::from_utf8_lossy(&want.stdout),
            "{meter}"
        );
    }
}

#[test]
fn a_wrong_cql_url_fails_saying_what_to_fix() {
    let (_rt, server) = server();
    let no_keyspace = format!("cql://{}", server.addr);
    let out = run(
        &no_keyspace,
        &["query", "M1", "--from", "2019-01-01", "--to", "2019-01-01"],
    );
    assert_eq!(out.status.code(), Some(1));
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        stderr.contains("cql://host[:port]") && stderr.contains("/keyspace"),
        "{stderr}"
    );
    let out = run(
        &format!("cql://{}/ks?colour=blue", server.addr),
        &["ingest", "x.csv"],
    );
    assert_eq!(out.status.code(), Some(1));
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(stderr.contains("`colour` is not a setting"), "{stderr}");
    // Nothing listens there (a port just released by a bound socket).
    let closed = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap();
    let out = run(
        &format!("cql://{closed}/ks"),
        &["query", "M1", "--from", "2019-01-01", "--to", "2019-01-01"],
    );
    assert_eq!(out.status.code(), Some(1));
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(stderr.contains(&format!("cql://{closed}/ks")), "{stderr}");
    // A keyspace that does not exist, without create_schema: say how to create it.
    let out = run(
        &format!(
            "cql://{}/nothing_here?await_schema_agreement=false",
            server.addr
        ),
        &["query", "M1", "--from", "2019-01-01", "--to", "2019-01-01"],
    );
    assert_eq!(out.status.code(), Some(1));
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(stderr.contains("create_schema"), "{stderr}");
}
