//! The bad-input corpus (`tests/bad-inputs/`): every file through the built binary, checked
//! against the table of expected outcomes in that folder's README.
//!
//! `METERFLOW_BIN=/path/to/meterflow` runs the corpus against another build (an older one, to
//! see which rows it fails).
//!
//! Every run stays under [`MAX_RSS_KIB`] of resident memory: read from `getrusage` of this
//! process's children, whose peak is the largest any run reached.

use std::collections::BTreeSet;
use std::io::Write;
use std::path::{Path, PathBuf};
use std::process::Command;

use serde_json::Value;

fn corpus() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../tests/bad-inputs")
}

/// The most resident memory one run may take (debug build included).
const MAX_RSS_KIB: i64 = 64 * 1024;

/// Rows whose file cell starts with this are written by [`generate`], not kept in the folder.
const GENERATED: &str = "(generated) ";

/// Writes the generated case `name` into `dir`.
fn generate(name: &str, dir: &Path) -> PathBuf {
    let path = dir.join(name);
    let header: String = std::iter::once("Meter,Date".to_string())
        .chain((0..48).map(|i| format!("{}:{:02}", i / 2, i % 2 * 30)))
        .collect::<Vec<_>>()
        .join(",");
    let row = format!("M1,2019-01-01{}", ",0.5".repeat(48));
    // Written in pieces: a child's peak memory as `getrusage` reports it can include this
    // process's at the time it was started, so this process never holds the 50 MB.
    let mut out = std::io::BufWriter::new(std::fs::File::create(&path).expect("create"));
    match name {
        "long-line-no-newline.csv" => {
            write!(out, "{header}\n{row}\n").expect("write");
            let chunk = vec![b'x'; 1 << 20];
            for _ in 0..50 {
                out.write_all(&chunk).expect("write");
            }
        }
        other => panic!("no generator for {other}"),
    }
    out.flush().expect("write a generated case");
    path
}

/// The peak resident size, in KiB, of the children that ended so far.
fn children_peak_kib() -> i64 {
    // SAFETY: getrusage writes into the zeroed struct it is given and reads nothing else.
    let mut usage: libc::rusage = unsafe { std::mem::zeroed() };
    let r = unsafe { libc::getrusage(libc::RUSAGE_CHILDREN, &mut usage) };
    assert_eq!(r, 0, "getrusage");
    usage.ru_maxrss
}

fn binary() -> PathBuf {
    std::env::var_os("METERFLOW_BIN")
        .map(PathBuf::from)
        .unwrap_or_else(|| PathBuf::from(env!("CARGO_BIN_EXE_meterflow")))
}

/// One row of the table.
#[derive(Debug)]
struct Case {
    file: String,
    exit: i32,
    /// `rows_read`, `rows_accepted`, `rows_rejected`, `records_rejected`, `warnings`, `series`.
    counts: [u64; 6],
    says: Vec<String>,
}

const COUNTS: [&str; 6] = [
    "rows_read",
    "rows_accepted",
    "rows_rejected",
    "records_rejected",
    "warnings",
    "series",
];

/// The table's rows: `| file | exit | read | accepted | rejected | records | warnings | series
/// | says |`, *says* a run of phrases between backticks.
fn cases() -> Vec<Case> {
    let table = std::fs::read_to_string(corpus().join("README.md")).expect("the corpus table");
    table
        .lines()
        .filter(|l| l.starts_with("| ") && !l.starts_with("| file "))
        .map(|line| {
            let cells: Vec<&str> = line.trim_matches('|').split(" | ").map(str::trim).collect();
            assert_eq!(cells.len(), 9, "a row of nine cells: {line}");
            let num = |i: usize| -> u64 {
                cells[i]
                    .parse()
                    .unwrap_or_else(|_| panic!("cell {i} of {line}"))
            };
            Case {
                file: cells[0].to_string(),
                exit: num(1) as i32,
                counts: [num(2), num(3), num(4), num(5), num(6), num(7)],
                says: cells[8]
                    .split('`')
                    .skip(1)
                    .step_by(2)
                    .map(str::to_string)
                    .collect(),
            }
        })
        .collect()
}

/// Runs one case; `Err` says what differed.
fn run(case: &Case) -> Result<(), String> {
    let dir = tempfile::tempdir().expect("tempdir");
    let report = dir.path().join("report.csv");
    let input = match case.file.strip_prefix(GENERATED) {
        Some(name) => generate(name, dir.path()),
        None => corpus().join(&case.file),
    };
    let out = Command::new(binary())
        .arg("--store")
        .arg(dir.path().join("store.db"))
        .args(["ingest", "--json"])
        .arg(input)
        .arg("--rejects")
        .arg(&report)
        .output()
        .map_err(|e| format!("cannot run {}: {e}", binary().display()))?;
    let stderr = String::from_utf8_lossy(&out.stderr);
    let summary: Value = serde_json::from_slice(&out.stdout)
        .map_err(|e| format!("no JSON summary ({e}); stderr: {stderr}"))?;
    let mut wrong = Vec::new();
    if out.status.code() != Some(case.exit) {
        wrong.push(format!("exit {:?}, not {}", out.status.code(), case.exit));
    }
    for (field, want) in COUNTS.iter().zip(case.counts) {
        let got = summary[field].as_u64();
        if got != Some(want) {
            wrong.push(format!("{field} {got:?}, not {want}"));
        }
    }
    let report_text = std::fs::read_to_string(&report).unwrap_or_default();
    let lines = report_text.lines().count().saturating_sub(1) as u64;
    let failures = summary["failures"].as_array().map_or(0, Vec::len) as u64;
    let reported: u64 = ["rows_rejected", "records_rejected", "warnings"]
        .iter()
        .map(|f| summary[f].as_u64().unwrap_or(0))
        .sum::<u64>()
        + failures;
    if lines != reported {
        wrong.push(format!(
            "the report has {lines} lines, the counts say {reported}"
        ));
    }
    let all = format!("{stderr}\n{summary}\n{report_text}");
    for phrase in &case.says {
        if !all.contains(phrase.as_str()) {
            wrong.push(format!("`{phrase}` is not said"));
        }
    }
    match wrong.is_empty() {
        true => Ok(()),
        false => Err(format!("{}: {}\n{all}", case.file, wrong.join("; "))),
    }
}

#[test]
fn every_bad_input_has_the_outcome_its_table_row_says() {
    let cases = cases();
    let listed: BTreeSet<&str> = cases
        .iter()
        .map(|c| c.file.as_str())
        .filter(|f| !f.starts_with(GENERATED))
        .collect();
    let present: BTreeSet<String> = std::fs::read_dir(corpus())
        .expect("the corpus")
        .map(|e| e.expect("entry").file_name().to_string_lossy().into_owned())
        .filter(|name| name != "README.md")
        .collect();
    let present: BTreeSet<&str> = present.iter().map(String::as_str).collect();
    assert_eq!(listed, present, "every file has a row and every row a file");
    let mut peak = children_peak_kib();
    let mut failures: Vec<String> = Vec::new();
    for case in &cases {
        if let Err(e) = run(case) {
            failures.push(e);
        }
        let now = children_peak_kib();
        if now > peak.max(MAX_RSS_KIB) {
            failures.push(format!(
                "{}: peak resident memory {} KiB, above the bound of {MAX_RSS_KIB} KiB",
                case.file, now
            ));
        }
        peak = peak.max(now);
    }
    eprintln!(
        "{} cases; the largest run's peak resident memory: {} KiB",
        cases.len(),
        peak
    );
    assert!(
        failures.is_empty(),
        "{} of {} cases differ:\n\n{}",
        failures.len(),
        cases.len(),
        failures.join("\n\n")
    );
}
