//! A large plain file read in pieces by several workers gives what one worker reading it whole
//! gives: the same fragments (wide; long days a cut splits are two fragments with the same
//! daily totals), the same rejects on the same lines, the same counts; and every byte is read
//! once for the records (progress counts the file once).

use std::fmt;
use std::io::{self, Read};
use std::path::PathBuf;
use std::sync::atomic::{AtomicBool, AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};

use meterflow_core::envelope::decode;
use meterflow_core::{daily_totals, DayTotal, Fragment, Reject, Stats, Version};
use meterflow_splitter::files::{self, Channels, Openable, Opened};
use meterflow_splitter::object::{ObjectName, SplitSettings};
use proptest::prelude::*;

/// A local file, counting how often it is opened at an offset (each piece, each cut's window).
struct LocalFile {
    path: PathBuf,
    opened_at: Arc<AtomicUsize>,
}

impl fmt::Display for LocalFile {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}", self.path.display())
    }
}

impl Openable for LocalFile {
    fn open(&self) -> Result<Opened, String> {
        let file = std::fs::File::open(&self.path).map_err(|e| e.to_string())?;
        let size = file.metadata().map_err(|e| e.to_string())?.len();
        Ok(Opened {
            reader: Box::new(file),
            name: ObjectName {
                object: self.path.display().to_string(),
                delivery: Some("7".into()),
                version: Version::default(),
                etag: None,
            },
            size,
        })
    }

    fn seekable_len(&self) -> Option<u64> {
        std::fs::metadata(&self.path).ok().map(|m| m.len())
    }

    fn open_at(&self, offset: u64) -> Option<io::Result<Box<dyn Read + Send>>> {
        self.opened_at.fetch_add(1, Ordering::Relaxed);
        Some(files::open_file_at(&self.path, offset))
    }
}

/// What one ingest of a file gave.
#[derive(Debug, PartialEq)]
struct Run {
    fragments: Vec<Fragment>,
    totals: Vec<DayTotal>,
    /// `(line, column, reason)`, sorted.
    rejects: Vec<(u64, Option<u32>, String)>,
    stats: Stats,
    /// Bytes read for records (progress).
    read: u64,
    /// Times the file was opened at an offset: 0 when it was read whole.
    opened_at: usize,
    failed: Option<String>,
}

fn ingest(path: &std::path::Path, jobs: usize, piece_bytes: Option<u64>) -> Run {
    let opened_at = Arc::new(AtomicUsize::new(0));
    let file = LocalFile {
        path: path.to_path_buf(),
        opened_at: Arc::clone(&opened_at),
    };
    let (tx, mut rx) = tokio::sync::mpsc::channel(4);
    let rejects: Arc<Mutex<Vec<Reject>>> = Arc::default();
    let read = Arc::new(AtomicU64::new(0));
    let settings = SplitSettings {
        piece_bytes,
        ..SplitSettings::default()
    };
    let sink = Arc::clone(&rejects);
    let workers = files::spawn(
        vec![file],
        jobs,
        settings,
        Channels {
            records: tx,
            halt: Arc::new(AtomicBool::new(false)),
            read: Arc::clone(&read),
            rejects: Arc::new(move |r| sink.lock().unwrap().push(r)),
        },
    );
    let mut fragments = Vec::new();
    while let Some(record) = rx.blocking_recv() {
        fragments.extend(decode(&record.data).expect("records decode"));
    }
    let mut outcomes = workers.join().expect("no worker panicked");
    assert_eq!(outcomes.len(), 1, "one outcome for the one file");
    let outcome = outcomes.remove(0);
    let (stats, failed) = match outcome.result {
        Ok(done) => (done.stats, None),
        Err(f) => (f.done.stats, Some(f.message)),
    };
    fragments.sort_by_key(|f| (f.series.to_string(), f.day, f.line));
    let mut rejects: Vec<_> = std::mem::take(&mut *rejects.lock().unwrap())
        .into_iter()
        .map(|r| (r.line, r.column, r.reason))
        .collect();
    rejects.sort();
    Run {
        totals: daily_totals(&fragments),
        fragments,
        rejects,
        stats,
        read: read.load(Ordering::Relaxed),
        opened_at: opened_at.load(Ordering::Relaxed),
        failed,
    }
}

/// One line of a generated file.
#[derive(Debug, Clone)]
enum Line {
    /// Meter (0..4), day (0..28), cells (a blank one is a missing reading).
    Row(u8, u8, Vec<Option<u16>>),
    /// A row with a bad date: rejected with its line.
    BadDate(u8),
    Blank,
    /// A row whose meter is quoted (a piece cannot start near it).
    Quoted(u8, u8),
}

fn value(v: Option<u16>) -> String {
    v.map(|v| format!("{}.{:03}", v / 1000, v % 1000))
        .unwrap_or_default()
}

fn hhmm(slot: usize) -> String {
    format!("{:02}:{:02}", slot / 2, slot % 2 * 30)
}

/// A wide (48 cells a row) or long (one reading a row) file of `lines`, with line end `eol`.
fn render(long: bool, lines: &[Line], eol: &str) -> Vec<u8> {
    let mut out = String::new();
    let date = |d: u8| format!("2019-02-{:02}", d % 28 + 1);
    let meter = |m: u8| format!("EE{:06}", m % 4 + 1);
    if long {
        out.push_str(&format!("meter,interval_start,kwh{eol}"));
    } else {
        let cols: Vec<_> = (0..48).map(hhmm).collect();
        out.push_str(&format!("Meter,Date,{}{eol}", cols.join(",")));
    }
    for line in lines {
        match line {
            Line::Row(m, d, cells) if long => {
                for (k, v) in cells.iter().enumerate().filter(|(_, v)| v.is_some()) {
                    let at = format!("{}T{}:00", date(*d), hhmm(k % 48));
                    out.push_str(&format!("{},{at},{}{eol}", meter(*m), value(*v)));
                }
            }
            Line::Row(m, d, cells) => {
                let mut cells: Vec<_> = cells.iter().map(|v| value(*v)).collect();
                cells.resize(48, String::new());
                out.push_str(&format!(
                    "{},{},{}{eol}",
                    meter(*m),
                    date(*d),
                    cells.join(",")
                ));
            }
            Line::BadDate(m) if long => {
                out.push_str(&format!("{},2019-13-01T00:00:00,1.000{eol}", meter(*m)))
            }
            Line::BadDate(m) => out.push_str(&format!("{},2019-13-01,1.000{eol}", meter(*m))),
            Line::Blank => out.push_str(eol),
            Line::Quoted(m, d) if long => out.push_str(&format!(
                "\"{}\",{}T00:00:00,0.500{eol}",
                meter(*m),
                date(*d)
            )),
            Line::Quoted(m, d) => {
                let blanks = ",".repeat(47);
                out.push_str(&format!(
                    "\"{}\",{},0.500{blanks}{eol}",
                    meter(*m),
                    date(*d)
                ))
            }
        }
    }
    out.into_bytes()
}

fn line() -> impl Strategy<Value = Line> {
    prop_oneof![
        12 => (0u8..4, 0u8..28, prop::collection::vec(prop::option::weighted(0.9, 0u16..5000), 1..48))
            .prop_map(|(m, d, c)| Line::Row(m, d, c)),
        1 => (0u8..4).prop_map(Line::BadDate),
        1 => Just(Line::Blank),
        1 => (0u8..4, 0u8..28).prop_map(|(m, d)| Line::Quoted(m, d)),
    ]
}

fn write(bytes: &[u8]) -> tempfile::NamedTempFile {
    let mut f = tempfile::NamedTempFile::new().expect("a temporary file");
    io::Write::write_all(&mut f, bytes).expect("written");
    f
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 48, ..ProptestConfig::default() })]

    #[test]
    fn pieces_read_in_parallel_give_what_one_whole_read_gives(
        long in any::<bool>(),
        lines in prop::collection::vec(line(), 1..120),
        quotes in prop::bool::weighted(0.25),
        eol in prop::sample::select(vec!["\n", "\r\n", "\r"]),
        piece in 200u64..4000,
        jobs in 1usize..4,
    ) {
        let lines: Vec<Line> = lines
            .into_iter()
            .map(|l| match l {
                Line::Quoted(m, d) if !quotes => Line::Row(m, d, vec![Some(500)]),
                l => l,
            })
            .collect();
        let bytes = render(long, &lines, eol);
        let file = write(&bytes);
        let whole = ingest(file.path(), 1, None);
        let pieces = ingest(file.path(), jobs, Some(piece));
        prop_assert_eq!(whole.opened_at, 0);
        // Without quotes every cut past the header starts a piece (old Mac line ends aside:
        // such a file is read whole, see `meterflow_core::format::pieces`).
        if !quotes && eol != "\r" && bytes.len() as u64 > 3 * piece {
            prop_assert!(pieces.opened_at > 0, "the file was not cut");
        }
        prop_assert_eq!(&pieces.totals, &whole.totals);
        prop_assert_eq!(&pieces.rejects, &whole.rejects);
        prop_assert_eq!(&pieces.failed, &whole.failed);
        prop_assert_eq!(pieces.read, whole.read);
        let (mut a, mut b) = (pieces.stats, whole.stats);
        if long {
            // A cut inside a day's run of readings makes two fragments of it.
            prop_assert!(a.fragments >= b.fragments);
            (a.fragments, b.fragments) = (0, 0);
        } else {
            prop_assert_eq!(&pieces.fragments, &whole.fragments);
        }
        prop_assert_eq!(a, b);
    }
}

/// The pieces really are read apart (the property above would pass if they never were), and a
/// file with quotes near every cut is read whole.
#[test]
fn a_large_file_is_cut_unless_quotes_are_near_its_cuts() {
    let rows: Vec<Line> = (0..400)
        .map(|i| Line::Row((i % 4) as u8, (i / 4 % 28) as u8, vec![Some(1234); 48]))
        .collect();
    let file = write(&render(false, &rows, "\n"));
    let size = std::fs::metadata(file.path()).unwrap().len();
    let whole = ingest(file.path(), 1, None);
    let cut = ingest(file.path(), 2, Some(size / 8));
    // 7 cuts: a window read for each, then each of the 8 pieces opened once, its line ends
    // counted as it is parsed (a piece read before those before it is held, then moved).
    assert_eq!(cut.opened_at, 7 + 8);
    assert_eq!(cut.fragments, whole.fragments);
    assert_eq!((cut.stats.rows_accepted, cut.read), (400, size));

    // Rows that are all rejected: a piece read ahead of the pieces before it (two workers:
    // most runs, not all) holds more rejects than its budget, so it is read again the old
    // way (its line ends counted, then parsed numbered). The report's lines are the whole
    // read's all the same. (This failed in two of three runs with the re-read one line off.)
    let bad: Vec<Line> = (0..400).map(|i| Line::BadDate((i % 4) as u8)).collect();
    let file = write(&render(false, &bad, "\n"));
    let size = std::fs::metadata(file.path()).unwrap().len();
    let whole = ingest(file.path(), 1, None);
    let cut = ingest(file.path(), 2, Some(size / 8));
    assert_eq!(cut.rejects, whole.rejects);
    assert_eq!((cut.stats.rows_rejected, cut.read), (400, size));

    let quoted: Vec<Line> = (0..400)
        .map(|i| Line::Quoted((i % 4) as u8, (i / 4 % 28) as u8))
        .collect();
    let file = write(&render(false, &quoted, "\n"));
    let size = std::fs::metadata(file.path()).unwrap().len();
    let run = ingest(file.path(), 2, Some(size / 8));
    // Only the windows were read: no piece could start.
    assert_eq!(run.opened_at, 7);
    assert_eq!(run.stats.rows_accepted, 400);
}
