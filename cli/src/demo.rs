//! `meterflow demo`: the bundled examples through the real pipeline into a fresh store.
//!
//! The files of `examples/` are compiled in, so the demo works from any directory: they are
//! written to a temporary folder, ingested exactly as `meterflow ingest` would, and a few
//! meters' daily totals are printed with the commands to explore further.

use std::path::{Path, PathBuf};
use std::process::ExitCode;
use std::sync::Arc;

use anyhow::{Context, Result};
use meterflow_api::daily_report;
use meterflow_core::Day;
use meterflow_store::SqliteStore;

use crate::ingest::{self, Destination};
use crate::inputs::{Found, Input};

/// `(file name, contents)` of every example.
const EXAMPLES: &[(&str, &[u8])] = &[
    (
        "wide_consumption.csv",
        include_bytes!("../../examples/wide_consumption.csv"),
    ),
    (
        "uk_end_labelled.csv",
        include_bytes!("../../examples/uk_end_labelled.csv"),
    ),
    (
        "long_readings.csv.gz",
        include_bytes!("../../examples/long_readings.csv.gz"),
    ),
    (
        "nemreader_Example_NEM12_actual_interval.csv",
        include_bytes!("../../examples/nem12/nemreader_Example_NEM12_actual_interval.csv"),
    ),
    (
        "nemreader_Example_NEM12_multiple_quality.csv",
        include_bytes!("../../examples/nem12/nemreader_Example_NEM12_multiple_quality.csv"),
    ),
];

/// Meters to show: `(series, from, to)`.
const SHOW: &[(&str, &str, &str)] = &[
    ("EE00027", "2019-01-01", "2019-01-07"),
    ("1200012345678", "2019-02-01", "2019-02-28"),
    ("EE00040", "2019-03-01", "2019-03-31"),
    ("VABD000163-E1", "2004-02-01", "2004-02-01"),
    ("VABD000163-Q1", "2004-02-01", "2004-02-01"),
    ("CCCC123456-E1", "2004-04-17", "2004-04-17"),
];

/// The demo's scratch folder, removed however the demo ends (an error half way included).
struct ScratchDir(PathBuf);

impl Drop for ScratchDir {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

pub async fn run(store_path: &Path) -> Result<ExitCode> {
    let scratch =
        ScratchDir(std::env::temp_dir().join(format!("meterflow-demo-{}", std::process::id())));
    let dir = &scratch.0;
    std::fs::create_dir_all(dir).with_context(|| format!("cannot create {}", dir.display()))?;
    let mut files = Vec::new();
    for (name, bytes) in EXAMPLES {
        let p = dir.join(name);
        std::fs::write(&p, bytes).with_context(|| format!("cannot write {}", p.display()))?;
        files.push(p);
    }
    // A fresh store: the demo never touches an existing one.
    let store_path = if store_path == Path::new("meterflow.db") {
        Path::new("meterflow-demo.db")
    } else {
        store_path
    };
    for suffix in ["", "-wal", "-shm", "-journal"] {
        let p = format!("{}{suffix}", store_path.display());
        if Path::new(&p).exists() {
            std::fs::remove_file(&p)
                .with_context(|| format!("cannot remove the old demo store {p}"))?;
        }
    }
    let store = Arc::new(SqliteStore::open_to_load(store_path)?);
    let cfg = ingest::IngestConfig::local(2);
    let found = Found {
        inputs: files.into_iter().map(Input::File).collect(),
        ..Found::default()
    };
    let summary = ingest::run(Destination::Store(store.clone()), found, cfg).await?;
    summary.print_text(&mut std::io::stdout().lock(), None);
    out!()?;
    for (meter, from, to) in SHOW {
        let report = daily_report(
            store.as_ref(),
            &meter.parse()?,
            Day::parse_iso(from)?,
            Day::parse_iso(to)?,
        )
        .await?;
        for d in &report.days {
            out!(
                "{:<15} {}  {:>10} {:<5}  {:>3} intervals ({})  quality {}",
                report.meter,
                d.date,
                d.total.get(),
                d.unit_or(&report.unit),
                d.intervals,
                if d.complete { "complete" } else { "partial" },
                d.quality
            )?;
        }
    }
    drop(scratch);
    let me = self_command();
    let store = store_path.display();
    out!("\nstore: {store}")?;
    out!("next:  {me} --store {store} query EE00027 --from 2019-01-01 --to 2019-01-07 --table")?;
    out!("       {me} --store {store} serve   # then GET /meters/EE00027/daily?from=2019-01-01&to=2019-01-07")?;
    out!("       and open http://127.0.0.1:8080/?meter=EE00027&from=2019-01-01&to=2019-01-07 for the chart")?;
    if me != "meterflow" {
        out!("       (in the meterflow checkout, `cargo install --locked --path cli` puts `meterflow` on your PATH)")?;
    }
    Ok(ExitCode::SUCCESS)
}

/// How the user can run this program again: `meterflow` when that name on the PATH is this
/// program; the `cargo run` they probably used when it is a build of the workspace they are
/// in (the README's first command); else its full path.
fn self_command() -> String {
    let Ok(me) = std::env::current_exe().and_then(std::fs::canonicalize) else {
        return "meterflow".into();
    };
    let on_path = std::env::var_os("PATH").is_some_and(|path| {
        std::env::split_paths(&path)
            .filter_map(|dir| std::fs::canonicalize(dir.join("meterflow")).ok())
            .any(|p| p == me)
    });
    if on_path {
        return "meterflow".into();
    }
    // target/<profile>/meterflow of the workspace in the current directory.
    let workspace = me.parent().and_then(Path::parent).and_then(Path::parent);
    let here = std::env::current_dir().and_then(std::fs::canonicalize).ok();
    if workspace.is_some() && workspace == here.as_deref() {
        let release = me.parent().is_some_and(|p| p.ends_with("release"));
        return format!(
            "cargo run -q{} -p meterflow-cli --",
            if release { " --release" } else { "" }
        );
    }
    me.display().to_string()
}
