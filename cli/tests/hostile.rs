//! Defects a hostile trial found, each through the built binary, where the case needs a setup
//! a corpus file cannot carry (the others are rows of `tests/bad-inputs/README.md`): symlink
//! loops, a report written over an input, an unreadable directory, a file rewritten under the
//! same timestamp, `serve` on a missing store, date errors, the demo's next steps.

mod common;

use std::io::{Read, Write};
use std::path::{Path, PathBuf};
use std::process::{Command, Output};
use std::time::{Duration, SystemTime};

use serde_json::Value;

/// The binary under test; `METERFLOW_BIN` runs these against another build (an older one).
fn bin() -> PathBuf {
    std::env::var_os("METERFLOW_BIN")
        .map(PathBuf::from)
        .unwrap_or_else(|| PathBuf::from(env!("CARGO_BIN_EXE_meterflow")))
}

/// `meterflow --store STORE ARGS…`, bounded by `timeout` so that a walk that never ends fails
/// the test instead of hanging it.
fn run(store: &Path, args: &[&str]) -> Output {
    Command::new("timeout")
        .arg("60")
        .arg(bin())
        .arg("--store")
        .arg(store)
        .args(args)
        .output()
        .expect("run meterflow")
}

fn json(out: &Output) -> Value {
    serde_json::from_slice(&out.stdout).unwrap_or_else(|e| {
        panic!(
            "no JSON summary ({e}): {}",
            String::from_utf8_lossy(&out.stderr)
        )
    })
}

fn stderr(out: &Output) -> String {
    String::from_utf8_lossy(&out.stderr).into_owned()
}

/// A wide file of one meter-day whose 48 cells are `cells`.
fn wide(meter: &str, cells: &[&str]) -> String {
    common::header() + &format!("{meter},2019-01-01,{}\n", cells.join(","))
}

fn write(path: &Path, body: &str) {
    std::fs::create_dir_all(path.parent().unwrap()).unwrap();
    std::fs::write(path, body).unwrap();
}

fn skipped(summary: &Value, reason: &str) -> Vec<String> {
    summary["skipped"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|s| s["reason"] == reason)
        .map(|s| s["path"].as_str().unwrap().to_string())
        .collect()
}

/// Defect 2: `ln -s .. d/sub/up` made the walk loop for ever; `ln -s . d/self` read a file 41
/// times. Each file and directory is now read once, and the summary says what was passed over.
#[test]
fn a_directory_walk_reads_each_file_once_whatever_symlinks_reach_it() {
    let t = tempfile::tempdir().unwrap();
    let d = t.path().join("d");
    write(&d.join("a.csv"), &wide("EE1", &["1"; 48]));
    write(&d.join("sub/b.csv"), &wide("EE2", &["2"; 48]));
    std::os::unix::fs::symlink("..", d.join("sub/up")).unwrap();
    std::os::unix::fs::symlink(".", d.join("self")).unwrap();
    std::os::unix::fs::symlink("../a.csv", d.join("sub/a-link.csv")).unwrap();
    let out = run(
        &t.path().join("s.db"),
        &["ingest", "--json", d.to_str().unwrap()],
    );
    assert_eq!(out.status.code(), Some(0), "{}", stderr(&out));
    let s = json(&out);
    assert_eq!(
        (s["files"].as_u64(), s["rows_read"].as_u64()),
        (Some(2), Some(2))
    );
    assert_eq!(skipped(&s, "loop").len(), 2, "{s}");
    assert_eq!(
        skipped(&s, "duplicate"),
        [d.join("sub/a-link.csv").display().to_string()]
    );
    // The same file named twice, or named and walked, is read once too.
    let a = d.join("a.csv");
    let out = run(
        &t.path().join("s.db"),
        &["ingest", "--json", a.to_str().unwrap(), d.to_str().unwrap()],
    );
    assert_eq!(json(&out)["files"].as_u64(), Some(2), "{}", stderr(&out));
}

/// Defects 3 and 4: `--rejects` over an input truncated it before it was read, and a report
/// inside a walked directory was read back as input on the next run.
#[test]
fn the_rejects_report_is_never_read_nor_written_over_an_input() {
    let t = tempfile::tempdir().unwrap();
    let store = t.path().join("s.db");
    let d = t.path().join("d");
    let input = d.join("d.csv");
    let body = wide("EE1", &["1"; 48]) + "EE1,2019-13-01,1\n";
    write(&input, &body);
    let link = t.path().join("link.csv");
    std::os::unix::fs::symlink(&input, &link).unwrap();
    for report in [&input, &link] {
        let out = run(
            &store,
            &[
                "ingest",
                input.to_str().unwrap(),
                "--rejects",
                report.to_str().unwrap(),
            ],
        );
        assert_eq!(out.status.code(), Some(1));
        assert!(
            stderr(&out).contains("is both an input and the --rejects report"),
            "{}",
            stderr(&out)
        );
        assert_eq!(std::fs::read_to_string(&input).unwrap(), body, "untouched");
    }
    // A report inside the walked directory, this run's or an older `*.rejects.csv`: passed over.
    write(&d.join("old.rejects.csv"), "file,line,column,kind,reason\n");
    let report = d.join("rejects.csv");
    // (The first run writes its report after the walk; the second finds it there.)
    for reports_seen in [1, 2] {
        let out = run(
            &store,
            &[
                "ingest",
                "--json",
                d.to_str().unwrap(),
                "--rejects",
                report.to_str().unwrap(),
            ],
        );
        let s = json(&out);
        assert_eq!(out.status.code(), Some(0), "{}", stderr(&out));
        assert_eq!(
            (s["files"].as_u64(), s["rows_rejected"].as_u64()),
            (Some(1), Some(1))
        );
        assert_eq!(skipped(&s, "report").len(), reports_seen, "{s}");
    }
}

/// Defect 6: one unreadable subdirectory aborted the whole ingest. It now fails alone (exit 1,
/// named), as an unreadable file does, and the rest is read. Permissions do not bind root, so
/// as root the binary runs as `nobody`.
#[test]
fn an_unreadable_directory_fails_alone() {
    use std::os::unix::fs::PermissionsExt;
    let t = tempfile::tempdir().unwrap();
    let root = t.path();
    std::fs::set_permissions(root, std::fs::Permissions::from_mode(0o777)).unwrap();
    let d = root.join("d");
    write(&d.join("a.csv"), &wide("EE1", &["1"; 48]));
    write(&d.join("locked/b.csv"), &wide("EE2", &["1"; 48]));
    write(&d.join("z/c.csv"), &wide("EE3", &["1"; 48]));
    for dir in [&d, &d.join("z")] {
        std::fs::set_permissions(dir, std::fs::Permissions::from_mode(0o755)).unwrap();
    }
    std::fs::set_permissions(d.join("locked"), std::fs::Permissions::from_mode(0o000)).unwrap();
    let as_root = Command::new("id").arg("-u").output().unwrap().stdout == b"0\n";
    let mut cmd = match as_root {
        true => {
            let mut c = Command::new("setpriv");
            c.args(["--reuid=65534", "--regid=65534", "--clear-groups"])
                .arg(bin());
            c
        }
        false => Command::new(bin()),
    };
    let out = cmd
        .arg("--store")
        .arg(root.join("s.db"))
        .args(["ingest", "--json"])
        .arg(&d)
        .output()
        .expect("run meterflow (as nobody when root: needs setpriv, from util-linux)");
    std::fs::set_permissions(d.join("locked"), std::fs::Permissions::from_mode(0o755)).unwrap();
    assert_eq!(out.status.code(), Some(1), "{}", stderr(&out));
    let s = json(&out);
    assert_eq!(
        (
            s["files"].as_u64(),
            s["rows_accepted"].as_u64(),
            s["dirs_failed"].as_u64()
        ),
        (Some(2), Some(2), Some(1)),
        "{s}"
    );
    let failures = s["failures"].to_string();
    assert!(
        failures.contains("locked: cannot list the directory"),
        "{failures}"
    );
}

/// Defect 7: the same path rewritten with an identical modification time mixed old and new
/// values slot by slot (24 slots of 1 and 24 of 2 made a day of 72 nobody delivered). The later
/// write now counts alone at that version; ingesting it again changes nothing.
#[test]
fn a_file_rewritten_under_the_same_timestamp_is_never_mixed_with_its_old_contents() {
    let t = tempfile::tempdir().unwrap();
    let store = t.path().join("s.db");
    let f = t.path().join("f.csv");
    let when = SystemTime::UNIX_EPOCH + Duration::from_secs(1_577_836_800);
    let mut first = vec!["1"; 24];
    first.extend([""; 24]);
    let mut second = vec![""; 24];
    second.extend(["2"; 24]);
    let total = |store: &Path| -> Value {
        let out = run(
            store,
            &["query", "EE1", "--from", "2019-01-01", "--to", "2019-01-01"],
        );
        json(&out)["days"][0].clone()
    };
    for cells in [&first, &second] {
        write(&f, &wide("EE1", cells));
        std::fs::File::options()
            .write(true)
            .open(&f)
            .unwrap()
            .set_modified(when)
            .unwrap();
        let out = run(&store, &["ingest", f.to_str().unwrap()]);
        assert_eq!(out.status.code(), Some(0), "{}", stderr(&out));
    }
    let day = total(&store);
    assert_eq!(
        (day["total"].as_u64(), day["intervals"].as_u64()),
        (Some(48), Some(24)),
        "{day}"
    );
    assert_eq!(day["superseded"].as_u64(), Some(1), "{day}");
    run(&store, &["ingest", f.to_str().unwrap()]);
    assert_eq!(
        total(&store),
        day,
        "ingesting the same file again changes nothing"
    );
}

/// Defect 9: `serve --store typo.db` created an empty store and answered 200 with no days for
/// every meter. It now refuses, unless `--create` asks for an empty store; and (defect 13)
/// `--listen` takes a host name.
#[test]
fn serve_needs_an_existing_store_unless_asked_to_create_one() {
    let t = tempfile::tempdir().unwrap();
    let typo = t.path().join("typo.db");
    let out = run(&typo, &["serve", "--listen", "127.0.0.1:0"]);
    assert_eq!(out.status.code(), Some(1));
    assert!(stderr(&out).contains("no store at"), "{}", stderr(&out));
    assert!(!typo.exists(), "no store file was made");
    let (mut server, addr) = common::serve(&typo, &["--create", "--listen", "localhost:0"]);
    let mut s = std::net::TcpStream::connect(&addr).unwrap();
    s.write_all(b"GET /health HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n")
        .unwrap();
    let mut answer = String::new();
    s.read_to_string(&mut answer).unwrap();
    server.kill().unwrap();
    server.wait().unwrap();
    assert!(answer.starts_with("HTTP/1.1 200"), "{answer}");
    assert!(typo.exists());
}

/// Defect 10: date errors of `query` suggested forms it does not accept; `query --help` gave
/// no date format (13). Messages name the input once (13).
#[test]
fn messages_say_what_is_accepted_and_name_the_input_once() {
    let t = tempfile::tempdir().unwrap();
    let store = t.path().join("s.db");
    let f = t.path().join("f.csv");
    write(&f, &wide("EE1", &["1"; 48]));
    run(&store, &["ingest", f.to_str().unwrap()]);
    let out = run(
        &store,
        &["query", "EE1", "--from", "31/01/2019", "--to", "2019-01-31"],
    );
    let e = stderr(&out);
    assert_eq!(out.status.code(), Some(1));
    assert!(
        e.contains("(accepted: YYYY-MM-DD only, like 2019-01-31)"),
        "{e}"
    );
    assert!(
        !e.contains("31/01/2019 or") && !e.contains("20190131"),
        "{e}"
    );
    let help = String::from_utf8(run(&store, &["query", "--help"]).stdout).unwrap();
    assert!(help.contains("--from <YYYY-MM-DD>"), "{help}");
    let junk = t.path().join("junk.csv");
    write(&junk, "hello,world\n");
    let out = run(&store, &["ingest", junk.to_str().unwrap()]);
    let e = stderr(&out);
    let line = e.lines().find(|l| l.starts_with("error:")).unwrap();
    assert_eq!(line.matches("junk.csv").count(), 1, "{line}");
}

/// Defect 13: `demo` run as the README says printed next steps calling `meterflow`, which is
/// not on that user's PATH. The printed command now runs as printed.
#[test]
fn the_demo_prints_next_steps_that_run() {
    let t = tempfile::tempdir().unwrap();
    let out = Command::new(bin())
        .arg("demo")
        .current_dir(t.path())
        .env("PATH", "/usr/bin:/bin")
        .output()
        .unwrap();
    assert!(out.status.success(), "{}", stderr(&out));
    let text = String::from_utf8(out.stdout).unwrap();
    let next = text
        .lines()
        .find_map(|l| l.strip_prefix("next:  "))
        .unwrap_or_else(|| panic!("no next step in {text}"));
    let words: Vec<&str> = next.split_whitespace().collect();
    assert_ne!(
        words[0], "meterflow",
        "meterflow is not on this PATH: {next}"
    );
    let again = Command::new(words[0])
        .args(&words[1..])
        .current_dir(t.path())
        .output()
        .unwrap();
    assert!(again.status.success(), "{next}: {}", stderr(&again));
    assert!(String::from_utf8_lossy(&again.stdout).contains("2019-01-01"));
}
