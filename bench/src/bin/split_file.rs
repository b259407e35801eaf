//! Splits one file from disk as `meterflow ingest` does (parse, pack into envelope records) on
//! JOBS threads, the records counted and dropped instead of stored, and prints `bytes seconds
//! MB/s records rows_accepted`: how the splitting stage scales with threads when one large
//! file is cut in pieces (PIECE_KIB; 0 reads it whole on one thread), apart from the store,
//! whose single writer does not (`bench/scaling.sh`).

use std::fmt;
use std::io::Read;
use std::path::PathBuf;
use std::sync::atomic::{AtomicBool, AtomicU64};
use std::sync::Arc;
use std::time::Instant;

use meterflow_core::Version;
use meterflow_splitter::files::{self, Channels, Openable, Opened};
use meterflow_splitter::object::{ObjectName, SplitSettings};

struct LocalFile(PathBuf);

impl fmt::Display for LocalFile {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}", self.0.display())
    }
}

impl Openable for LocalFile {
    fn open(&self) -> Result<Opened, String> {
        let file = std::fs::File::open(&self.0).map_err(|e| e.to_string())?;
        let size = file.metadata().map_err(|e| e.to_string())?.len();
        Ok(Opened {
            reader: Box::new(file) as Box<dyn Read + Send>,
            name: ObjectName {
                object: self.to_string(),
                delivery: None,
                version: Version::default(),
                etag: None,
            },
            size,
        })
    }

    fn seekable_len(&self) -> Option<u64> {
        std::fs::metadata(&self.0).ok().map(|m| m.len())
    }

    fn open_at(&self, offset: u64) -> Option<std::io::Result<Box<dyn Read + Send>>> {
        Some(files::open_file_at(&self.0, offset))
    }
}

fn main() -> std::io::Result<()> {
    let usage = || std::io::Error::other("usage: split_file FILE JOBS PIECE_KIB");
    let mut args = std::env::args().skip(1);
    let path = PathBuf::from(args.next().ok_or_else(usage)?);
    let jobs: usize = args.next().and_then(|a| a.parse().ok()).ok_or_else(usage)?;
    let piece_kib: u64 = args.next().and_then(|a| a.parse().ok()).ok_or_else(usage)?;
    let settings = SplitSettings {
        piece_bytes: (piece_kib > 0).then_some(piece_kib * 1024),
        ..SplitSettings::default()
    };
    let (tx, mut rx) = tokio::sync::mpsc::channel(16);
    let started = Instant::now();
    let workers = files::spawn(
        vec![LocalFile(path)],
        jobs,
        settings,
        Channels {
            records: tx,
            halt: Arc::new(AtomicBool::new(false)),
            read: Arc::new(AtomicU64::new(0)),
            rejects: Arc::new(|_| {}),
        },
    );
    let mut records = 0u64;
    while rx.blocking_recv().is_some() {
        records += 1;
    }
    let outcomes = workers.join().map_err(std::io::Error::other)?;
    let secs = started.elapsed().as_secs_f64();
    let (mut bytes, mut accepted) = (0, 0);
    for o in outcomes {
        let done = o.result.map_err(|f| std::io::Error::other(f.message))?;
        bytes += done.stats.bytes;
        accepted += done.stats.rows_accepted;
    }
    println!(
        "{bytes} {secs:.3} {:.0} {records} {accepted}",
        bytes as f64 / 1e6 / secs
    );
    Ok(())
}
