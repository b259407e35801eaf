//! A one-line progress display on a terminal (stderr), quiet otherwise.

use std::io::Write;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

pub struct Progress {
    stop: Arc<AtomicBool>,
    thread: std::thread::JoinHandle<()>,
}

impl Progress {
    /// Shows bytes read from `counter` and the rate, refreshed a few times a second.
    pub fn start(counter: Arc<AtomicU64>) -> Progress {
        let stop = Arc::new(AtomicBool::new(false));
        let flag = stop.clone();
        let thread = std::thread::spawn(move || {
            let started = Instant::now();
            while !flag.load(Ordering::Relaxed) {
                std::thread::park_timeout(Duration::from_millis(250));
                let bytes = counter.load(Ordering::Relaxed) as f64;
                let secs = started.elapsed().as_secs_f64().max(1e-3);
                eprint!(
                    "\r\x1b[2K{:.1} MB read, {:.0} MB/s",
                    bytes / 1e6,
                    bytes / 1e6 / secs
                );
                let _ = std::io::stderr().flush();
            }
            eprint!("\r\x1b[2K");
        });
        Progress { stop, thread }
    }

    pub fn stop(self) {
        self.stop.store(true, Ordering::Relaxed);
        self.thread.thread().unpark();
        let _ = self.thread.join();
    }
}
