//! The `meterflow` binary, end to end: ingest, query, serve, generate, demo; exit codes and
//! reports. Fixtures are written by the tests themselves.

mod common;

use std::io::{BufRead, BufReader, Read, Write};
use std::path::PathBuf;
use std::process::{Command, Output, Stdio};
use std::time::{Duration, SystemTime};

use common::header;
use serde_json::Value;

fn bin() -> Command {
    Command::new(env!("CARGO_BIN_EXE_meterflow"))
}

struct Env {
    dir: tempfile::TempDir,
}

impl Env {
    fn new() -> Env {
        Env {
            dir: tempfile::tempdir().expect("tempdir"),
        }
    }

    fn path(&self, name: &str) -> PathBuf {
        self.dir.path().join(name)
    }

    fn store(&self) -> String {
        self.path("store.db").display().to_string()
    }

    /// Writes a file and sets its modification time (its version) to `age_s` seconds ago.
    fn write(&self, name: &str, body: &str, age_s: u64) -> PathBuf {
        let p = self.path(name);
        if let Some(parent) = p.parent() {
            std::fs::create_dir_all(parent).unwrap();
        }
        std::fs::write(&p, body).unwrap();
        let f = std::fs::File::options().write(true).open(&p).unwrap();
        f.set_modified(SystemTime::now() - Duration::from_secs(age_s))
            .unwrap();
        p
    }

    fn run(&self, args: &[&str]) -> Output {
        bin()
            .arg("--store")
            .arg(self.store())
            .args(args)
            .output()
            .expect("run meterflow")
    }

    fn ingest_json(&self, args: &[&str]) -> Value {
        let mut all = vec!["ingest", "--json"];
        all.extend_from_slice(args);
        let out = self.run(&all);
        assert!(
            out.status.success(),
            "ingest failed: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        serde_json::from_slice(&out.stdout).expect("summary JSON")
    }

    /// `(date, total as written)` for a meter.
    fn totals(&self, meter: &str, from: &str, to: &str) -> Vec<(String, String)> {
        let out = self.run(&["query", meter, "--from", from, "--to", to]);
        assert!(
            out.status.success(),
            "query failed: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        let v: Value = serde_json::from_slice(&out.stdout).expect("query JSON");
        v["days"]
            .as_array()
            .unwrap()
            .iter()
            .map(|d| {
                (
                    d["date"].as_str().unwrap().to_string(),
                    d["total"].to_string(),
                )
            })
            .collect()
    }
}

fn row(meter: &str, date: &str, cells: &[&str]) -> String {
    format!("{meter},{date},{}\n", cells.join(","))
}

#[test]
fn ingest_then_query_exact_totals_and_idempotent() {
    let env = Env::new();
    let body = header()
        + &row("EE00027", "2019-01-01", &["7.604"; 48])
        + &row("EE00027", "2019-01-02", &vec!["0.1"; 48])
        + &row("EE00028", "2019-01-01", &["1"; 48]);
    let f = env.write("day.csv", &body, 100);
    let s = env.ingest_json(&[f.to_str().unwrap()]);
    assert_eq!(
        (
            s["files"].as_u64(),
            s["rows_read"].as_u64(),
            s["rows_accepted"].as_u64(),
            s["rows_rejected"].as_u64()
        ),
        (Some(1), Some(3), Some(3), Some(0))
    );
    assert_eq!(
        (
            s["series"].as_u64(),
            s["days"].as_u64(),
            s["fragments"].as_u64()
        ),
        (Some(2), Some(2), Some(3))
    );
    let want = vec![
        ("2019-01-01".to_string(), "364.992".to_string()),
        ("2019-01-02".to_string(), "4.8".to_string()),
    ];
    assert_eq!(env.totals("EE00027", "2019-01-01", "2019-01-31"), want);
    // Again, and again through a different spelling of the path: nothing changes.
    env.ingest_json(&[f.to_str().unwrap()]);
    let s = env.ingest_json(&[env.dir.path().to_str().unwrap()]);
    assert_eq!(env.totals("EE00027", "2019-01-01", "2019-01-31"), want);
    // The walk read day.csv and said which files it passed over (the store itself).
    assert_eq!(s["files"].as_u64(), Some(1));
    let skipped: Vec<&str> = s["skipped"]
        .as_array()
        .unwrap()
        .iter()
        .map(|p| p["path"].as_str().unwrap())
        .collect();
    assert!(
        skipped.iter().any(|p| p.ends_with("store.db")),
        "{skipped:?}"
    );
    // The table form says the same.
    let out = env.run(&[
        "query",
        "EE00027",
        "--from",
        "2019-01-01",
        "--to",
        "2019-01-01",
        "--table",
    ]);
    let text = String::from_utf8(out.stdout).unwrap();
    assert!(
        text.contains("2019-01-01") && text.contains("364.992"),
        "{text}"
    );
}

#[test]
fn newer_files_correct_days_older_ones_do_not() {
    let env = Env::new();
    env.write(
        "a/original.csv",
        &(header() + &row("M1", "2019-01-01", &["1"; 48])),
        3000,
    );
    env.ingest_json(&[env.path("a").to_str().unwrap()]);
    let mut cells = ["1"; 48];
    cells[0] = "10";
    env.write(
        "b/correction.csv",
        &(header() + &row("M1", "2019-01-01", &cells)),
        2000,
    );
    env.ingest_json(&[env.path("b").to_str().unwrap()]);
    assert_eq!(
        env.totals("M1", "2019-01-01", "2019-01-01"),
        vec![("2019-01-01".into(), "57".into())]
    );
    env.write(
        "c/stale.csv",
        &(header() + &row("M1", "2019-01-01", &["2"; 48])),
        9000,
    );
    env.ingest_json(&[env.path("c").to_str().unwrap()]);
    assert_eq!(
        env.totals("M1", "2019-01-01", "2019-01-01"),
        vec![("2019-01-01".into(), "57".into())]
    );
}

#[test]
fn partial_days_merge_across_files() {
    let env = Env::new();
    let mut morning = vec![""; 48];
    let mut evening = vec![""; 48];
    for k in 0..24 {
        morning[k] = "0.5";
        evening[k + 24] = "0.25";
    }
    env.write(
        "am.csv",
        &(header() + &row("M2", "2019-01-01", &morning)),
        10,
    );
    env.write(
        "pm.csv",
        &(header() + &row("M2", "2019-01-01", &evening)),
        20,
    );
    env.ingest_json(&[
        env.path("am.csv").to_str().unwrap(),
        env.path("pm.csv").to_str().unwrap(),
    ]);
    let out = env.run(&["query", "M2", "--from", "2019-01-01", "--to", "2019-01-01"]);
    let v: Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(v["days"][0]["total"].to_string(), "18");
    assert_eq!(
        (
            v["days"][0]["intervals"].as_u64(),
            v["days"][0]["complete"].as_bool()
        ),
        (Some(48), Some(true))
    );
}

#[test]
fn rejects_report_and_exit_codes() {
    let env = Env::new();
    let mut bad = ["1"; 48];
    bad[5] = "1.2.3";
    let body = header()
        + &row("M3", "2019-01-01", &["1"; 48])
        + &row("M3", "2019-02-30", &["1"; 48])
        + &row("M3", "2019-01-02", &bad);
    let f = env.write("mixed.csv", &body, 10);
    let report = env.path("rejects.csv");
    let out = env.run(&[
        "ingest",
        f.to_str().unwrap(),
        "--rejects",
        report.to_str().unwrap(),
    ]);
    assert_eq!(
        out.status.code(),
        Some(0),
        "rejects are reported, not fatal"
    );
    let text = std::fs::read_to_string(&report).unwrap();
    let lines: Vec<&str> = text.lines().collect();
    assert_eq!(lines[0], "file,line,column,kind,reason");
    assert_eq!(lines.len(), 3, "{text}");
    assert!(
        lines[1].contains("mixed.csv,3,2,row,") && lines[1].contains("2019-02-30"),
        "{}",
        lines[1]
    );
    assert!(
        lines[2].contains("mixed.csv,4,8,row,") && lines[2].contains("1.2.3"),
        "{}",
        lines[2]
    );
    let out = env.run(&["ingest", "--strict", f.to_str().unwrap()]);
    assert_eq!(out.status.code(), Some(3));
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        stderr.contains("2 rejected") && stderr.contains("--rejects"),
        "{stderr}"
    );
    // A file that cannot be read at all: exit 1 with a message, the good file still counted.
    let junk = env.write("junk.csv", "hello,world\n1,2\n", 10);
    let out = env.run(&[
        "ingest",
        "--json",
        junk.to_str().unwrap(),
        f.to_str().unwrap(),
    ]);
    assert_eq!(out.status.code(), Some(1));
    let v: Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(
        (v["files_failed"].as_u64(), v["rows_accepted"].as_u64()),
        (Some(1), Some(1))
    );
    assert!(String::from_utf8_lossy(&out.stderr).contains("cannot tell the format"));
    // Nothing of it was stored, so there is nothing to complete.
    let out = env.run(&["ingest", junk.to_str().unwrap()]);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(!stderr.contains("ingest it again"), "{stderr}");
    let out = env.run(&["ingest", env.path("missing.csv").to_str().unwrap()]);
    assert_eq!(out.status.code(), Some(1));
    let out = env.run(&["ingest"]);
    assert_eq!(out.status.code(), Some(2));
}

#[test]
fn demo_shows_totals_from_every_format() {
    let env = Env::new();
    let out = bin()
        .current_dir(env.dir.path())
        .arg("demo")
        .output()
        .unwrap();
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    for needle in [
        "VABD000163-E1   2004-02-01      53.328",
        "106.656 kVArh",
        "CCCC123456-E1   2004-04-17      896.99",
        "EE00027",
        "EE00040",
        "1200012345678",
    ] {
        assert!(stdout.contains(needle), "missing {needle:?} in\n{stdout}");
    }
    assert!(env.path("meterflow-demo.db").exists());
}

#[test]
fn a_file_that_fails_part_way_counts_exactly_the_rows_it_stored() {
    let env = Env::new();
    let (data, expected) = (env.path("w.csv"), env.path("w.expected.csv"));
    common::generate("wide", 20, 60, "2019-01-01", &data, &expected);
    let mut gz = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::fast());
    std::io::Write::write_all(&mut gz, &std::fs::read(&data).unwrap()).unwrap();
    let gz = gz.finish().unwrap();
    // An upload cut short: two thirds of the compressed bytes.
    let cut = env.path("cut.csv.gz");
    std::fs::write(&cut, &gz[..gz.len() * 2 / 3]).unwrap();
    let out = env.run(&["ingest", "--json", cut.to_str().unwrap()]);
    assert_eq!(out.status.code(), Some(1));
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        stderr.contains("fix the file and ingest it again"),
        "{stderr}"
    );
    let v: Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(v["files_failed"].as_u64(), Some(1));
    let accepted = v["rows_accepted"].as_u64().unwrap();
    assert!(accepted > 100 && accepted < 1200, "{v}");
    assert!(
        v["failures"][0]
            .as_str()
            .unwrap()
            .contains("rows before the failure"),
        "{v}"
    );
    let oracle = std::fs::read_to_string(&expected).unwrap();
    let meters: std::collections::BTreeSet<&str> = oracle
        .lines()
        .skip(1)
        .filter_map(|l| l.split(',').next())
        .collect();
    let stored: usize = meters
        .iter()
        .map(|m| env.totals(m, "2019-01-01", "2019-03-01").len())
        .sum();
    assert_eq!(
        stored as u64, accepted,
        "the store holds exactly the rows counted"
    );
}

#[test]
fn generated_data_matches_its_oracle() {
    let env = Env::new();
    for (format, n) in [("wide", 3), ("long", 2), ("nem12", 2)] {
        let data = env.path(&format!("{format}.csv"));
        let expected = env.path(&format!("{format}.expected.csv"));
        common::generate(format, n, 3, "2019-01-01", &data, &expected);
        env.ingest_json(&[data.to_str().unwrap()]);
        let oracle = std::fs::read_to_string(&expected).unwrap();
        let mut checked = 0;
        for line in oracle.lines().skip(1) {
            let f: Vec<&str> = line.split(',').collect();
            let got = env.totals(f[0], f[1], f[1]);
            assert_eq!(
                got,
                vec![(f[1].to_string(), f[2].to_string())],
                "{format} {line}"
            );
            checked += 1;
        }
        assert_eq!(checked, n * 3, "{format}");
    }
}

#[test]
fn serve_answers_over_http() {
    let env = Env::new();
    env.write(
        "d.csv",
        &(header() + &row("EE9", "2019-01-01", &["1.111"; 48])),
        10,
    );
    env.ingest_json(&[env.path("d.csv").to_str().unwrap()]);
    let mut child = bin()
        .args(["--store", &env.store(), "serve", "--listen", "127.0.0.1:0"])
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let mut lines = BufReader::new(child.stderr.take().unwrap()).lines();
    let first = lines.next().unwrap().unwrap();
    let addr = first
        .split("http://")
        .nth(1)
        .and_then(|r| r.split_whitespace().next())
        .expect(&first)
        .to_string();
    let get = |target: &str| {
        let mut s = std::net::TcpStream::connect(&addr).unwrap();
        write!(
            s,
            "GET {target} HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n"
        )
        .unwrap();
        let mut buf = String::new();
        s.read_to_string(&mut buf).unwrap();
        buf
    };
    let resp = get("/?meterId=EE9&date=01-01-2019");
    assert!(resp.starts_with("HTTP/1.1 200"), "{resp}");
    assert!(
        resp.ends_with(r#"{"meterId":"EE9","date":"01-01-2019","sum":53.328}"#),
        "{resp}"
    );
    let resp = get("/meters/EE9/daily?from=2019-01-01&to=2020-06-01");
    assert!(resp.starts_with("HTTP/1.1 400"), "{resp}");
    child.kill().unwrap();
    child.wait().unwrap();
}

#[test]
fn a_closed_stdout_ends_quietly() {
    let env = Env::new();
    let mut child = bin()
        .current_dir(env.dir.path())
        .arg("demo")
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let mut first = String::new();
    BufReader::new(child.stdout.take().unwrap())
        .read_line(&mut first)
        .unwrap();
    // The reader goes away after one line, as `| head -1` does.
    let status = child.wait().unwrap();
    let mut stderr = String::new();
    child
        .stderr
        .take()
        .unwrap()
        .read_to_string(&mut stderr)
        .unwrap();
    assert!(status.success(), "{status}: {stderr}");
    assert!(!stderr.contains("panicked"), "{stderr}");
}

/// A file cut in pieces parsed by several threads (`--piece-kib`) stores what a whole read
/// stores: the same counts (a long file's days cut across two pieces are two fragments) and
/// every meter-day equal to the generator's oracle.
#[test]
fn a_file_read_in_pieces_stores_what_a_whole_read_stores() {
    for (format, meters) in [("wide", 40), ("long", 6)] {
        let (whole, cut) = (Env::new(), Env::new());
        let data = whole.path(&format!("{format}.csv"));
        let expected = whole.path("expected.csv");
        common::generate(format, meters, 10, "2019-03-25", &data, &expected);
        let size = std::fs::metadata(&data).unwrap().len();
        assert!(
            size > 24 * 1024,
            "{format}: {size} bytes is too small to cut in 4 KiB pieces"
        );
        let path = data.to_str().unwrap();
        let a = whole.ingest_json(&["--piece-kib", "0", path]);
        let b = cut.ingest_json(&["--piece-kib", "4", "--jobs", "3", path]);
        for field in common::COUNTS.iter().filter(|f| **f != "fragments") {
            assert_eq!(a[field], b[field], "{format}: {field}");
        }
        if format == "long" {
            // Proof that it was cut: 4 KiB pieces end inside days of 48 readings.
            let (a, b) = (a["fragments"].as_u64(), b["fragments"].as_u64());
            assert!(b > a, "long: {b:?} fragments in pieces, {a:?} whole");
        }
        let oracle = std::fs::read_to_string(&expected).unwrap();
        let mut want: std::collections::BTreeMap<&str, Vec<(String, String)>> = Default::default();
        for line in oracle.lines().skip(1) {
            let f: Vec<&str> = line.split(',').collect();
            want.entry(f[0])
                .or_default()
                .push((f[1].to_string(), f[2].to_string()));
        }
        assert_eq!(want.len(), meters as usize);
        for (meter, days) in want {
            assert_eq!(
                cut.totals(meter, "2019-03-25", "2019-04-03"),
                days,
                "{format} {meter}"
            );
        }
    }
}
