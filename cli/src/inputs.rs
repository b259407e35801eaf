//! What `ingest` reads: local files (directories walked) and S3 objects (prefixes listed),
//! each opened as a reader with the name and version its fragments carry.

use std::collections::HashSet;
use std::fmt;
use std::fs::File;
use std::io;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::UNIX_EPOCH;

use anyhow::{Context, Result};
use meterflow_splitter::files::Opened;
use meterflow_splitter::object::ObjectName;

use crate::s3_inputs::{S3Inputs, S3Prefix};

/// Extensions picked up when walking a directory or listing a prefix (files and keys named
/// exactly are always read).
pub const DATA_EXTENSIONS: &[&str] = &["csv", "txt", "dat", "gz", "zip", "nem12", "mdff"];

/// One file or object to ingest.
#[derive(Debug, Clone)]
pub enum Input {
    File(PathBuf),
    S3 { bucket: String, key: String },
}

impl fmt::Display for Input {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Input::File(p) => write!(f, "{}", p.display()),
            Input::S3 { bucket, key } => write!(f, "s3://{bucket}/{key}"),
        }
    }
}

/// The inputs the arguments name.
#[derive(Default)]
pub struct Found {
    pub inputs: Vec<Input>,
    /// Paths and keys passed over, and why.
    pub skipped: Vec<Skipped>,
    /// Directories (or entries of them) that could not be read, as `(path, message naming
    /// it)`: each fails alone, as an unreadable file does, and the rest is read.
    pub failures: Vec<(String, String)>,
    /// The S3 client, when some argument is an `s3://` prefix.
    pub s3: Option<Arc<S3Inputs>>,
    /// Bytes of all the inputs (as stored: compressed ones compressed), for progress.
    pub bytes: u64,
}

/// A path or key that a directory walk or prefix listing did not read.
#[derive(Debug, Clone, serde::Serialize)]
pub struct Skipped {
    pub path: String,
    pub reason: SkipReason,
}

/// Why a path was not read.
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize)]
#[serde(rename_all = "snake_case")]
pub enum SkipReason {
    /// Not a meter-data file name (csv, txt, dat, gz, zip, nem12, mdff): name it to read it.
    Extension,
    /// A rejects report (`*.rejects.csv`, or this run's `--rejects` file), never data.
    Report,
    /// A file already read through another path (a symlink or a repeated argument).
    Duplicate,
    /// A directory already walked: a symlink loop, or a second path to it.
    Loop,
    /// Not a regular file (a FIFO, socket or device) found in a directory.
    Special,
}

impl SkipReason {
    /// Why, in words, for the text summary.
    pub fn describe(self) -> &'static str {
        match self {
            SkipReason::Extension => "were not read for their extension (name a file to read it)",
            SkipReason::Report => "are rejects reports, not meter data",
            SkipReason::Duplicate => "were reached a second time (symlinks) and read once",
            SkipReason::Loop => "are directories reached again (a symlink loop): walked once",
            SkipReason::Special => "are not regular files (FIFOs, sockets, devices)",
        }
    }
}

/// The suffix of rejects reports: the splitter Lambda's name for them, never split; a walk
/// passes over local files named so too.
pub const REPORT_SUFFIX: &str = ".rejects.csv";

fn is_data_file(name: &str) -> bool {
    let ext = Path::new(name)
        .extension()
        .and_then(|x| x.to_str())
        .unwrap_or("")
        .to_ascii_lowercase();
    DATA_EXTENSIONS.contains(&ext.as_str())
}

/// A file's identity whatever path reaches it (device and inode): what makes a walk read
/// each file once and walk each directory once.
type Identity = (u64, u64);

#[cfg(unix)]
fn identity(meta: &std::fs::Metadata) -> Option<Identity> {
    use std::os::unix::fs::MetadataExt;
    Some((meta.dev(), meta.ino()))
}

#[cfg(not(unix))]
fn identity(_meta: &std::fs::Metadata) -> Option<Identity> {
    None
}

/// Local paths found so far, by identity.
struct Walk<'a> {
    found: &'a mut Found,
    files: HashSet<Identity>,
    dirs: HashSet<Identity>,
    /// This run's rejects report, if it exists already.
    report: Option<Identity>,
}

impl Walk<'_> {
    fn skip(&mut self, path: &Path, reason: SkipReason) {
        self.found.skipped.push(Skipped {
            path: path.display().to_string(),
            reason,
        });
    }

    /// A file named or found: read once, never the rejects report.
    fn file(&mut self, path: &Path, meta: &std::fs::Metadata) {
        let id = identity(meta);
        if id.is_some() && id == self.report {
            return self.skip(path, SkipReason::Report);
        }
        if id.is_some_and(|id| !self.files.insert(id)) {
            return self.skip(path, SkipReason::Duplicate);
        }
        self.found.inputs.push(Input::File(path.to_path_buf()));
        self.found.bytes += meta.len();
    }

    /// Walks `dir` in name order; what cannot be read is a failure of its own.
    fn dir(&mut self, dir: &Path, meta: &std::fs::Metadata) {
        if identity(meta).is_some_and(|id| !self.dirs.insert(id)) {
            return self.skip(dir, SkipReason::Loop);
        }
        let entries = std::fs::read_dir(dir).and_then(|d| d.collect::<io::Result<Vec<_>>>());
        let mut entries = match entries {
            Ok(e) => e,
            Err(e) => {
                let msg = format!("{}: cannot list the directory: {e}", dir.display());
                return self.found.failures.push((dir.display().to_string(), msg));
            }
        };
        entries.sort_by_key(|e| e.file_name());
        for e in entries {
            let p = e.path();
            let name = e.file_name().to_string_lossy().into_owned();
            // Follows symlinks: a linked file or directory is read (once).
            let meta = match std::fs::metadata(&p) {
                Ok(m) => m,
                Err(err) => {
                    let msg = format!("{}: cannot read: {err}", p.display());
                    self.found.failures.push((p.display().to_string(), msg));
                    continue;
                }
            };
            if meta.is_dir() {
                self.dir(&p, &meta);
            } else if !meta.is_file() {
                self.skip(&p, SkipReason::Special);
            } else if !is_data_file(&name) {
                self.skip(&p, SkipReason::Extension);
            } else if name.to_ascii_lowercase().ends_with(REPORT_SUFFIX) {
                self.skip(&p, SkipReason::Report);
            } else {
                self.file(&p, &meta);
            }
        }
    }
}

/// Files and objects to read, in argument order: named files as given, directories walked
/// recursively in name order (each file and directory once, however many symlinks reach it),
/// `s3://bucket/prefix` listed in key order. `report` is this run's rejects report: it is
/// never read, and naming it as an input is refused (it would be overwritten before it is
/// read).
pub async fn expand(args: &[PathBuf], report: Option<&Path>) -> Result<Found> {
    let mut found = Found::default();
    let report_id = report
        .and_then(|p| std::fs::metadata(p).ok())
        .as_ref()
        .and_then(identity);
    let mut walk = Walk {
        found: &mut found,
        files: HashSet::new(),
        dirs: HashSet::new(),
        report: report_id,
    };
    for arg in args {
        match arg.to_str().and_then(S3Prefix::parse) {
            Some(at) => {
                let at = at?;
                let s3 = match &walk.found.s3 {
                    Some(s3) => s3.clone(),
                    None => walk
                        .found
                        .s3
                        .insert(Arc::new(S3Inputs::from_env().await?))
                        .clone(),
                };
                for object in s3.list(&at).await? {
                    let key = object.key;
                    let path = format!("s3://{}/{key}", at.bucket);
                    if key.ends_with(REPORT_SUFFIX) && key != at.prefix {
                        // The splitter Lambda's rejects reports beside their objects.
                        walk.skip(Path::new(&path), SkipReason::Report);
                    } else if key == at.prefix || (!key.ends_with('/') && is_data_file(&key)) {
                        walk.found.bytes += object.size;
                        walk.found.inputs.push(Input::S3 {
                            bucket: at.bucket.clone(),
                            key,
                        });
                    } else if !key.ends_with('/') {
                        // (A key ending in `/` is a console "folder", not data; the splitter
                        // Lambda's hand-over notes, `*.handover.json`, are passed over here.)
                        walk.skip(Path::new(&path), SkipReason::Extension);
                    }
                }
            }
            None => {
                let meta = std::fs::metadata(arg)
                    .with_context(|| format!("cannot read {}", arg.display()))?;
                if meta.is_dir() {
                    walk.dir(arg, &meta);
                } else {
                    let id = identity(&meta);
                    anyhow::ensure!(
                        id.is_none() || id != report_id,
                        "{} is both an input and the --rejects report: the report would overwrite it before it is read; write the report to another file",
                        arg.display()
                    );
                    walk.file(arg, &meta);
                }
            }
        }
    }
    Ok(found)
}

/// Opens a local file: named by its canonical path (the same however it was spelled) and
/// versioned by its modification time.
pub fn open_file(path: &Path) -> Result<Opened, String> {
    let file = File::open(path).map_err(|e| format!("{}: cannot open: {e}", path.display()))?;
    let meta = file
        .metadata()
        .map_err(|e| format!("{}: cannot stat: {e}", path.display()))?;
    let version = meta
        .modified()
        .ok()
        .and_then(|t| t.duration_since(UNIX_EPOCH).ok())
        .map_or(0, |d| d.as_millis() as i64);
    let object = std::fs::canonicalize(path)
        .unwrap_or_else(|_| path.to_path_buf())
        .display()
        .to_string();
    Ok(Opened {
        reader: Box::new(file),
        name: ObjectName {
            object,
            delivery: local_delivery(&meta),
            version,
            etag: None,
        },
        size: meta.len(),
    })
}

/// A local file's delivery: its status-change time (ctime), to the nanosecond, fixed-width so
/// that a later write sorts after an earlier one. The kernel sets it on every write and no
/// tool can set it back, so a file rewritten with its modification time kept (`cp -p`,
/// `touch -r`) is a new delivery, and the merge lets the later one count alone at that
/// version instead of mixing both. Re-reading an unchanged file gives the same name (writes
/// stay idempotent). Not a content hash: hashing every file before reading it cost half a
/// second per GB here, a third of the ingest's time; a file whose status changed without a
/// write (`chmod`) is stored once more under the new name, with the same totals.
#[cfg(unix)]
fn local_delivery(meta: &std::fs::Metadata) -> Option<String> {
    use std::os::unix::fs::MetadataExt;
    Some(format!("{:010}.{:09}", meta.ctime(), meta.ctime_nsec()))
}

#[cfg(not(unix))]
fn local_delivery(_meta: &std::fs::Metadata) -> Option<String> {
    None
}

impl Input {
    /// Opens the input on a parser thread.
    pub fn open(&self, s3: Option<&S3Inputs>) -> Result<Opened, String> {
        match self {
            Input::File(p) => open_file(p),
            Input::S3 { bucket, key } => s3
                .ok_or("no S3 client (an s3:// input outside an s3:// argument)")?
                .open(bucket, key),
        }
    }
}
