//! The bad-input corpus (`tests/bad-inputs/`): every file through the built binary, checked
//! against the table of expected outcomes in that folder's README.
//!
//! `METERFLOW_BIN=/path/to/meterflow` runs the corpus against another build (an older one, to
//! see which rows it fails).

use std::collections::BTreeSet;
use std::path::{Path, PathBuf};
use std::process::Command;

use serde_json::Value;

fn corpus() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../tests/bad-inputs")
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
    let out = Command::new(binary())
        .arg("--store")
        .arg(dir.path().join("store.db"))
        .args(["ingest", "--json"])
        .arg(corpus().join(&case.file))
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
    let listed: BTreeSet<&str> = cases.iter().map(|c| c.file.as_str()).collect();
    let present: BTreeSet<String> = std::fs::read_dir(corpus())
        .expect("the corpus")
        .map(|e| e.expect("entry").file_name().to_string_lossy().into_owned())
        .filter(|name| name != "README.md")
        .collect();
    let present: BTreeSet<&str> = present.iter().map(String::as_str).collect();
    assert_eq!(listed, present, "every file has a row and every row a file");
    let failures: Vec<String> = cases.iter().filter_map(|c| run(c).err()).collect();
    assert!(
        failures.is_empty(),
        "{} of {} cases differ:\n\n{}",
        failures.len(),
        cases.len(),
        failures.join("\n\n")
    );
}
