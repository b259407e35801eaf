//! The embedded store of local mode: one SQLite file.
//!
//! Rows are *packs*: the fragments of one put that share series, month and source, encoded
//! with the core's envelope codec. One row per series-month-input instead of one per day keeps
//! ingest far faster than SQLite's per-row cost would allow (a month of a meter is one insert),
//! and reads stay one indexed lookup per month bucket. A pack's key ends with a digest of its
//! encoded contents, so writing the same fragments again is `INSERT OR IGNORE` of the same row;
//! differently batched writes of the same fragments land in other rows, and the merge (which
//! treats equal keys as one) makes them harmless.

use std::collections::BTreeMap;
use std::path::Path;
use std::sync::{Arc, Mutex};

use meterflow_core::envelope::{self, EnvelopeBuilder};
use meterflow_core::{Day, Fragment, SeriesId};
use rusqlite::{params, Connection, OptionalExtension};

use crate::{month_buckets, Store, StoreError};

const SCHEMA: &str = "
CREATE TABLE IF NOT EXISTS packs (
    series     TEXT    NOT NULL,
    month      INTEGER NOT NULL,   -- yyyymm bucket of the fragments' days
    source     TEXT    NOT NULL,
    first_line INTEGER NOT NULL,
    digest     BLOB    NOT NULL,   -- FNV-1a 128 of body: same contents, same key
    fragments  INTEGER NOT NULL,
    body       BLOB    NOT NULL,   -- meterflow envelope holding the fragments
    PRIMARY KEY (series, month, source, first_line, digest)
) WITHOUT ROWID;
CREATE TABLE IF NOT EXISTS meta (key TEXT PRIMARY KEY, value TEXT NOT NULL);
";

const SCHEMA_VERSION: &str = "1";

/// A fragment store in one SQLite file (or in memory).
#[derive(Clone)]
pub struct SqliteStore {
    conn: Arc<Mutex<Connection>>,
}

fn permanent(context: &str) -> impl Fn(rusqlite::Error) -> StoreError + '_ {
    move |e| match e {
        rusqlite::Error::SqliteFailure(f, _)
            if matches!(
                f.code,
                rusqlite::ErrorCode::DatabaseBusy | rusqlite::ErrorCode::DatabaseLocked
            ) =>
        {
            StoreError::Retryable(format!(
                "{context}: the SQLite file is locked by another process"
            ))
        }
        e => StoreError::Permanent(format!("{context}: {e}")),
    }
}

impl SqliteStore {
    /// Opens (creating if needed) the store file at `path`.
    pub fn open(path: &Path) -> Result<SqliteStore, StoreError> {
        let conn = Connection::open(path).map_err(|e| {
            StoreError::Permanent(format!(
                "cannot open the store file {}: {e}; check that its folder exists and is writable, or choose another with --store",
                path.display()
            ))
        })?;
        // WAL lets `serve` read while `ingest` writes; NORMAL sync is durable at checkpoints,
        // and an interrupted ingest is simply run again (puts are idempotent).
        conn.pragma_update(None, "journal_mode", "WAL")
            .map_err(permanent("enabling WAL"))?;
        conn.pragma_update(None, "synchronous", "NORMAL")
            .map_err(permanent("setting synchronous"))?;
        conn.busy_timeout(std::time::Duration::from_secs(30))
            .map_err(permanent("setting busy timeout"))?;
        Self::init(conn)
    }

    pub fn open_in_memory() -> Result<SqliteStore, StoreError> {
        Self::init(Connection::open_in_memory().map_err(permanent("opening an in-memory store"))?)
    }

    fn init(conn: Connection) -> Result<SqliteStore, StoreError> {
        conn.execute_batch(SCHEMA)
            .map_err(permanent("creating the schema"))?;
        let version: Option<String> = conn
            .query_row("SELECT value FROM meta WHERE key = 'schema'", [], |r| {
                r.get(0)
            })
            .optional()
            .map_err(permanent("reading the schema version"))?;
        match version.as_deref() {
            None => {
                conn.execute("INSERT INTO meta (key, value) VALUES ('schema', ?1)", [SCHEMA_VERSION])
                    .map_err(permanent("writing the schema version"))?;
            }
            Some(SCHEMA_VERSION) => {}
            Some(v) => {
                return Err(StoreError::Permanent(format!(
                    "the store file has schema version {v}, this build reads {SCHEMA_VERSION}; use a matching meterflow or a new --store file"
                )))
            }
        }
        Ok(SqliteStore {
            conn: Arc::new(Mutex::new(conn)),
        })
    }

    async fn blocking<T: Send + 'static>(
        &self,
        f: impl FnOnce(&mut Connection) -> Result<T, StoreError> + Send + 'static,
    ) -> Result<T, StoreError> {
        let conn = self.conn.clone();
        tokio::task::spawn_blocking(move || {
            let mut guard = conn.lock().map_err(|_| {
                StoreError::Permanent("the store lock was poisoned by a panic".into())
            })?;
            f(&mut guard)
        })
        .await
        .map_err(|e| StoreError::Permanent(format!("store task failed: {e}")))?
    }
}

/// FNV-1a, 128-bit: stable across builds and platforms (unlike std's hasher), which keys need.
fn digest(bytes: &[u8]) -> [u8; 16] {
    let mut h: u128 = 0x6c62_272e_07bb_0142_62b8_2175_6295_c58d;
    for &b in bytes {
        h ^= u128::from(b);
        h = h.wrapping_mul(0x0000_0000_0100_0000_0000_0000_0000_013b);
    }
    h.to_be_bytes()
}

struct Pack {
    series: String,
    month: i32,
    source: String,
    first_line: u64,
    fragments: usize,
    body: Vec<u8>,
}

/// Groups a batch into packs: per series, month and source, in input order.
fn packs(fragments: &[Fragment]) -> Result<Vec<Pack>, StoreError> {
    let mut groups: BTreeMap<(&str, i32, &str), Vec<&Fragment>> = BTreeMap::new();
    for f in fragments {
        groups
            .entry((f.series.as_str(), f.day.month_bucket(), &f.source))
            .or_default()
            .push(f);
    }
    let mut out = Vec::new();
    for ((series, month, source), group) in groups {
        let mut builder = EnvelopeBuilder::new(envelope::MAX_RECORD_BYTES);
        let mut first_line = group[0].line;
        let mut count = 0;
        for f in group {
            if builder.try_push(f).is_err() {
                out.push(Pack {
                    series: series.into(),
                    month,
                    source: source.into(),
                    first_line,
                    fragments: count,
                    body: builder.finish(),
                });
                builder = EnvelopeBuilder::new(envelope::MAX_RECORD_BYTES);
                builder.try_push(f).map_err(|e| {
                    StoreError::Permanent(format!("a fragment cannot be encoded: {e}"))
                })?;
                first_line = f.line;
                count = 0;
            }
            count += 1;
        }
        out.push(Pack {
            series: series.into(),
            month,
            source: source.into(),
            first_line,
            fragments: count,
            body: builder.finish(),
        });
    }
    Ok(out)
}

impl Store for SqliteStore {
    async fn put(&self, fragments: Vec<Fragment>) -> Result<(), StoreError> {
        if fragments.is_empty() {
            return Ok(());
        }
        self.blocking(move |conn| {
            let packs = packs(&fragments)?;
            let tx = conn.transaction().map_err(permanent("starting a write"))?;
            {
                let mut stmt = tx
                    .prepare_cached(
                        "INSERT OR IGNORE INTO packs (series, month, source, first_line, digest, fragments, body) \
                         VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7)",
                    )
                    .map_err(permanent("preparing the insert"))?;
                for p in &packs {
                    stmt.execute(params![p.series, p.month, p.source, p.first_line as i64, &digest(&p.body)[..], p.fragments as i64, p.body])
                        .map_err(permanent("writing fragments"))?;
                }
            }
            tx.commit().map_err(permanent("committing fragments"))
        })
        .await
    }

    async fn fragments(
        &self,
        series: &SeriesId,
        from: Day,
        to: Day,
    ) -> Result<Vec<Fragment>, StoreError> {
        let series = series.to_string();
        self.blocking(move |conn| {
            let mut stmt = conn
                .prepare_cached("SELECT body FROM packs WHERE series = ?1 AND month = ?2")
                .map_err(permanent("preparing the read"))?;
            let mut out = Vec::new();
            for month in month_buckets(from, to) {
                let mut rows = stmt
                    .query(params![series, month])
                    .map_err(permanent("reading fragments"))?;
                while let Some(row) = rows.next().map_err(permanent("reading fragments"))? {
                    let body: Vec<u8> = row.get(0).map_err(permanent("reading a pack"))?;
                    let decoded = envelope::decode(&body).map_err(|e| {
                        StoreError::Permanent(format!(
                            "a stored pack of {series} ({month}) is unreadable: {e}"
                        ))
                    })?;
                    out.extend(decoded.into_iter().filter(|f| f.day >= from && f.day <= to));
                }
            }
            Ok(out)
        })
        .await
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn digest_is_stable() {
        // Keys live in files: the digest must never change between builds.
        assert_eq!(
            digest(b""),
            0x6c62_272e_07bb_0142_62b8_2175_6295_c58d_u128.to_be_bytes()
        );
        assert_ne!(digest(b"a"), digest(b"b"));
    }
}
