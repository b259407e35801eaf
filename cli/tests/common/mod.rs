//! Helpers shared by the binary's test files (each includes this module; not all use all).
#![allow(dead_code)]

pub mod aws;

use std::io::{BufRead, BufReader};
use std::path::Path;
use std::process::{Child, Command, Stdio};

use serde_json::Value;

/// The summary counts that must agree whichever store or source an ingest used.
pub const COUNTS: &[&str] = &[
    "files",
    "inputs",
    "rows_read",
    "rows_accepted",
    "rows_rejected",
    "fragments",
    "series",
    "days",
    "bytes",
];

pub fn assert_same_counts(got: &Value, want: &Value) {
    for field in COUNTS {
        assert_eq!(got[field], want[field], "{field}");
    }
}

/// A wide file's header: `Meter,Date,0:00,...,23:30`.
pub fn header() -> String {
    let labels: Vec<String> = (0..48)
        .map(|k| format!("{}:{:02}", k / 2, (k % 2) * 30))
        .collect();
    format!("Meter,Date,{}\n", labels.join(","))
}

/// `meterflow generate`: `meters` × `days` from `start` into `data`, and the exact daily
/// totals (`series,date,total`) into `expected`.
pub fn generate(format: &str, meters: u32, days: u32, start: &str, data: &Path, expected: &Path) {
    let out = Command::new(env!("CARGO_BIN_EXE_meterflow"))
        .args([
            "generate", "--format", format, "--seed", "9", "--start", start,
        ])
        .args(["--meters", &meters.to_string(), "--days", &days.to_string()])
        .arg("--out")
        .arg(data)
        .arg("--expected")
        .arg(expected)
        .output()
        .expect("run meterflow generate");
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
}

/// `meterflow --store STORE serve ARGS` with `--listen 127.0.0.1:0` (or the ARGS' own): the
/// running child and the address its banner says it listens on.
pub fn serve(store: &Path, args: &[&str]) -> (Child, String) {
    let mut server = Command::new(env!("CARGO_BIN_EXE_meterflow"))
        .arg("--store")
        .arg(store)
        .arg("serve")
        .args(args)
        .stderr(Stdio::piped())
        .spawn()
        .expect("start meterflow serve");
    let mut banner = String::new();
    BufReader::new(server.stderr.take().expect("stderr"))
        .read_line(&mut banner)
        .expect("the banner");
    let addr = banner
        .split("http://")
        .nth(1)
        .and_then(|r| r.split_whitespace().next())
        .unwrap_or_else(|| panic!("no address in {banner:?}"))
        .to_string();
    (server, addr)
}
