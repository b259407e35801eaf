//! Progress on a terminal, one facility for `ingest`, `reprocess` and `replay`: `indicatif`
//! bars on stderr, drawn only when stderr is a terminal and the summary is not JSON (a pipe or
//! a log gets the summary alone).

use std::collections::HashMap;
use std::io::IsTerminal;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use indicatif::{MultiProgress, ProgressBar, ProgressDrawTarget, ProgressStyle};
use meterflow_aggregator::replay::{Observer, ShardReport};

/// The bars of one command.
pub struct Bars {
    multi: MultiProgress,
}

impl Bars {
    /// Bars on stderr when `wanted` and stderr is a terminal; else bars nobody sees.
    pub fn new(wanted: bool) -> Bars {
        let target = match wanted && std::io::stderr().is_terminal() {
            true => ProgressDrawTarget::stderr(),
            false => ProgressDrawTarget::hidden(),
        };
        Bars {
            multi: MultiProgress::with_draw_target(target),
        }
    }

    /// Bytes read so far of a known `total` (polled from `read`), with the rate and the time
    /// left: `ingest` and `reprocess`.
    pub fn bytes(&self, total: u64, read: Arc<AtomicU64>) -> Ticker {
        let bar = self.multi.add(ProgressBar::new(total.max(1)));
        bar.set_style(style(
            "{bar:30} {bytes}/{total_bytes} {binary_bytes_per_sec} (eta {eta})",
        ));
        let stop = Arc::new(AtomicBool::new(false));
        let thread = std::thread::spawn({
            let (bar, stop) = (bar.clone(), Arc::clone(&stop));
            move || {
                while !stop.load(Ordering::Relaxed) {
                    bar.set_position(read.load(Ordering::Relaxed).min(total));
                    std::thread::park_timeout(Duration::from_millis(200));
                }
                bar.finish_and_clear();
            }
        });
        Ticker { stop, thread }
    }

    /// A line per shard, records and bytes applied and how far behind the tip: `replay`.
    pub fn shards(&self) -> ShardBars {
        ShardBars {
            multi: self.multi.clone(),
            bars: Mutex::new(HashMap::new()),
        }
    }
}

fn style(template: &str) -> ProgressStyle {
    // The templates are constants of this file: one that fails to parse is a bug caught by
    // the first run, so fall back to the default rather than fail the command.
    ProgressStyle::with_template(template).unwrap_or_else(|_| ProgressStyle::default_bar())
}

/// A bytes bar kept up to date by a thread until [`Ticker::stop`].
pub struct Ticker {
    stop: Arc<AtomicBool>,
    thread: std::thread::JoinHandle<()>,
}

impl Ticker {
    pub fn stop(self) {
        self.stop.store(true, Ordering::Relaxed);
        self.thread.thread().unpark();
        let _ = self.thread.join();
    }
}

/// The replay's shard lines.
pub struct ShardBars {
    multi: MultiProgress,
    bars: Mutex<HashMap<String, ProgressBar>>,
}

impl ShardBars {
    fn bar(&self, shard: &str) -> ProgressBar {
        let mut bars = self.bars.lock().unwrap_or_else(|p| p.into_inner());
        bars.entry(shard.to_owned())
            .or_insert_with(|| {
                let bar = self.multi.add(ProgressBar::new_spinner());
                bar.set_style(style("{spinner} {prefix}: {pos} records {per_sec} {msg}"));
                bar.set_prefix(shard.to_owned());
                bar
            })
            .clone()
    }
}

impl Observer for ShardBars {
    fn progress(&self, report: &ShardReport, millis_behind_latest: Option<i64>) {
        let bar = self.bar(&report.shard);
        bar.set_position(report.records);
        let behind = match millis_behind_latest {
            Some(ms) if ms > 0 => format!(", {} behind the tip", human(ms)),
            Some(_) => ", at the tip".to_owned(),
            None => String::new(),
        };
        bar.set_message(format!("{:.1} MB{behind}", report.bytes as f64 / 1e6));
    }

    /// The summary lists every shard: its line goes.
    fn done(&self, report: &ShardReport) {
        self.bar(&report.shard).finish_and_clear();
    }
}

/// Milliseconds as the largest unit that reads well.
fn human(ms: i64) -> String {
    let s = ms / 1000;
    match s {
        0..=119 => format!("{s}s"),
        120..=7199 => format!("{}m", s / 60),
        _ => format!("{}h", s / 3600),
    }
}
