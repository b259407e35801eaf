//! What `ingest` reads: local files (directories walked) and S3 objects (prefixes listed),
//! each opened as a reader with the name and version its fragments carry.

use std::fmt;
use std::fs::File;
use std::io::{self, Read};
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::UNIX_EPOCH;

use anyhow::{Context, Result};

use crate::s3_inputs::{S3Inputs, S3Prefix};

/// Extensions picked up when walking a directory or listing a prefix (files and keys named
/// exactly are always read).
const DATA_EXTENSIONS: &[&str] = &["csv", "txt", "dat", "gz", "zip", "nem12", "mdff"];

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

/// An input ready to read.
pub struct Opened {
    pub reader: Box<dyn Read + Send>,
    /// The fragments' source: a canonical path, or `s3://bucket/key#etag`.
    pub name: String,
    /// Epoch milliseconds: the version of data that carries none of its own.
    pub version: i64,
    pub size: u64,
}

/// The inputs the arguments name.
#[derive(Default)]
pub struct Found {
    pub inputs: Vec<Input>,
    /// Files and keys a walk or listing passed over for their extension.
    pub skipped: Vec<String>,
    /// The S3 client, when some argument is an `s3://` prefix.
    pub s3: Option<Arc<S3Inputs>>,
}

fn is_data_file(name: &str) -> bool {
    let ext = Path::new(name)
        .extension()
        .and_then(|x| x.to_str())
        .unwrap_or("")
        .to_ascii_lowercase();
    DATA_EXTENSIONS.contains(&ext.as_str())
}

/// Files and objects to read, in argument order: named files as given, directories walked
/// recursively in name order, `s3://bucket/prefix` listed in key order.
pub async fn expand(args: &[PathBuf]) -> Result<Found> {
    let mut found = Found::default();
    for arg in args {
        match arg.to_str().and_then(S3Prefix::parse) {
            Some(at) => {
                let at = at?;
                let s3 = match &found.s3 {
                    Some(s3) => s3.clone(),
                    None => found.s3.insert(Arc::new(S3Inputs::from_env()?)).clone(),
                };
                for key in s3.list(&at).await? {
                    if key == at.prefix || (!key.ends_with('/') && is_data_file(&key)) {
                        found.inputs.push(Input::S3 {
                            bucket: at.bucket.clone(),
                            key,
                        });
                    } else if !key.ends_with('/') {
                        // (A key ending in `/` is a console "folder", not data.)
                        found.skipped.push(format!("s3://{}/{key}", at.bucket));
                    }
                }
            }
            None => {
                let meta = std::fs::metadata(arg)
                    .with_context(|| format!("cannot read {}", arg.display()))?;
                if meta.is_dir() {
                    walk(arg, &mut found)?;
                } else {
                    found.inputs.push(Input::File(arg.clone()));
                }
            }
        }
    }
    Ok(found)
}

fn walk(dir: &Path, found: &mut Found) -> Result<()> {
    let mut entries: Vec<_> = std::fs::read_dir(dir)
        .with_context(|| format!("cannot list directory {}", dir.display()))?
        .collect::<io::Result<_>>()
        .with_context(|| format!("cannot list directory {}", dir.display()))?;
    entries.sort_by_key(|e| e.file_name());
    for e in entries {
        let p = e.path();
        if p.is_dir() {
            walk(&p, found)?;
        } else if is_data_file(&e.file_name().to_string_lossy()) {
            found.inputs.push(Input::File(p));
        } else {
            found.skipped.push(p.display().to_string());
        }
    }
    Ok(())
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
    let name = std::fs::canonicalize(path)
        .unwrap_or_else(|_| path.to_path_buf())
        .display()
        .to_string();
    Ok(Opened {
        reader: Box::new(file),
        name,
        version,
        size: meta.len(),
    })
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
