//! `meterflow generate`: deterministic synthetic data of any size, with its exact oracle.

use std::fs::File;
use std::io::{BufWriter, Write};
use std::path::PathBuf;
use std::process::ExitCode;

use anyhow::{Context, Result};
use clap::ValueEnum;
use meterflow_core::synth::Spec;
use meterflow_core::value::write_amount;
use meterflow_core::{Day, Format};

#[derive(Clone, Copy, ValueEnum)]
pub enum FormatArg {
    Wide,
    Long,
    Nem12,
}

#[derive(clap::Args)]
pub struct Args {
    #[arg(long, value_enum)]
    format: FormatArg,
    #[arg(long)]
    meters: u32,
    #[arg(long)]
    days: u32,
    #[arg(long, default_value_t = 1)]
    seed: u64,
    /// First day (YYYY-MM-DD).
    #[arg(long, default_value = "2019-01-01")]
    start: String,
    /// Interval length in minutes.
    #[arg(long, default_value_t = 30)]
    interval: u16,
    /// Percentage of meters that read whole kWh only (like the original sample).
    #[arg(long, default_value_t = 0)]
    integer_meters: u8,
    /// Output file (`-` for stdout).
    #[arg(long)]
    out: PathBuf,
    /// Also write the exact daily totals as CSV `series,date,total`.
    #[arg(long)]
    expected: Option<PathBuf>,
}

pub fn run(a: Args) -> Result<ExitCode> {
    let format = match a.format {
        FormatArg::Wide => Format::Wide,
        FormatArg::Long => Format::Long,
        FormatArg::Nem12 => Format::Nem12,
    };
    let spec = Spec {
        meters: a.meters,
        days: a.days,
        start: Day::parse_iso(&a.start).context("--start")?,
        seed: a.seed,
        interval_minutes: a.interval,
        integer_meters_percent: a.integer_meters,
    };
    spec.check(format)?;
    let bytes = if a.out.as_os_str() == "-" {
        spec.write(format, BufWriter::new(std::io::stdout().lock()))?
    } else {
        let f =
            File::create(&a.out).with_context(|| format!("cannot create {}", a.out.display()))?;
        spec.write(format, BufWriter::with_capacity(1 << 20, f))?
    };
    if let Some(p) = &a.expected {
        let mut w = BufWriter::new(
            File::create(p).with_context(|| format!("cannot create {}", p.display()))?,
        );
        writeln!(w, "series,date,total")?;
        let mut line = String::new();
        let mut result = Ok(());
        spec.for_each_total(format, |series, day, total| {
            line.clear();
            line.push_str(series);
            line.push(',');
            line.push_str(&day.to_string());
            line.push(',');
            write_amount(&mut line, total);
            line.push('\n');
            if result.is_ok() {
                result = w.write_all(line.as_bytes());
            }
        });
        result?;
        w.flush()?;
    }
    eprintln!("wrote {bytes} bytes");
    Ok(ExitCode::SUCCESS)
}
