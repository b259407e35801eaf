//! The embedded store of local mode: one SQLite file.
//!
//! Rows are *packs*: the fragments of one put that share series, quarter and source, encoded
//! with the core's envelope codec. One row per series-quarter-input instead of one per day
//! keeps ingest far faster than SQLite's per-row cost would allow (a quarter of a meter is one
//! insert), and a read is one range scan of the series' buckets. A pack's key ends with a
//! digest of its encoded contents, so writing the same fragments again is `INSERT OR IGNORE`
//! of the same row; differently batched writes of the same fragments land in other rows, and
//! the merge (which treats equal keys as one) makes them harmless.

use std::collections::HashMap;
use std::path::Path;
use std::sync::{Arc, Mutex};

use meterflow_core::envelope::{
    self, DecodeError, Envelope, EnvelopeBuilder, PushError, RawFragment, ValidRecord,
};
use meterflow_core::{Day, DayTotal, Fragment, SeriesId};
use rusqlite::{params, Connection, OptionalExtension};

use crate::{Store, StoreError};

mod checkpoint;
use checkpoint::{Checkpoints, Limits};

const SCHEMA: &str = "
CREATE TABLE IF NOT EXISTS packs (
    series     TEXT    NOT NULL,
    month      INTEGER NOT NULL,   -- yyyymm of the first month of the fragments' quarter
    source     TEXT    NOT NULL,
    first_line INTEGER NOT NULL,
    digest     BLOB    NOT NULL,   -- XXH3-128 of body: same contents, same key
    fragments  INTEGER NOT NULL,
    body       BLOB    NOT NULL,   -- meterflow envelope holding the fragments
    PRIMARY KEY (series, month, source, first_line, digest)
) WITHOUT ROWID;
CREATE TABLE IF NOT EXISTS meta (key TEXT PRIMARY KEY, value TEXT NOT NULL);
";

/// Page size of new store files, SQLite's largest; see [`SqliteStore::open`].
const PAGE_SIZE: u32 = 64 * 1024;

/// 2: pack digests are XXH3-128 (1 used FNV-1a 128).
const SCHEMA_VERSION: &str = "2";

/// A fragment store in one SQLite file (or in memory).
#[derive(Clone)]
pub struct SqliteStore {
    conn: Arc<Mutex<Connection>>,
    /// A store file's log checkpoints (none in memory, which has no log).
    checkpoints: Option<Arc<Checkpoints>>,
    /// Set while a first load writes through a rollback journal ([`SqliteStore::open_to_load`]).
    load: Option<Arc<BackToLog>>,
}

/// Puts a store file that was loaded through a rollback journal back on the write-ahead log
/// when the load's last handle is dropped, as [`SqliteStore::open`] leaves every file. An
/// error is ignored here: the next `open` of the file sets the log again.
struct BackToLog(Arc<Mutex<Connection>>);

impl Drop for BackToLog {
    fn drop(&mut self) {
        if let Ok(conn) = self.0.lock() {
            let _ = conn.pragma_update(None, "journal_mode", "WAL");
        }
    }
}

/// True when another connection holds the lock that was asked for.
fn is_locked(e: &rusqlite::Error) -> bool {
    matches!(e, rusqlite::Error::SqliteFailure(f, _) if matches!(
        f.code,
        rusqlite::ErrorCode::DatabaseBusy | rusqlite::ErrorCode::DatabaseLocked
    ))
}

fn sqlite_error(context: &str) -> impl Fn(rusqlite::Error) -> StoreError + '_ {
    move |e| {
        if is_locked(&e) {
            StoreError::retryable(
                format!("{context}: the SQLite file is locked by another process"),
                e,
            )
        } else {
            StoreError::permanent(context, e)
        }
    }
}

/// How long an open waits to put a file on the write-ahead log while another process loads
/// it through its rollback journal ([`SqliteStore::open_to_load`]) before going on in that
/// journal's mode. Ordinary statements wait [`BUSY_WAIT`].
const LOG_SWITCH_WAIT: std::time::Duration = std::time::Duration::from_secs(1);
/// How long a statement waits for another connection's lock before failing as retryable.
const BUSY_WAIT: std::time::Duration = std::time::Duration::from_secs(30);

impl SqliteStore {
    /// Opens (creating if needed) the store file at `path`.
    pub fn open(path: &Path) -> Result<SqliteStore, StoreError> {
        Self::open_with(path, Limits::default(), false)
    }

    /// [`open`](Self::open) for a bulk write such as `meterflow ingest`. A store file that
    /// holds no packs yet is loaded through a rollback journal instead of the write-ahead log:
    /// its pages are written once, into the file, instead of into the log and then copied into
    /// the file by a checkpoint. A 1 GB ingest took 9 % less time and 7 % less CPU
    /// (bench/RESULTS.md, round eight). Each commit is as durable as SQLite's default
    /// (`synchronous = FULL`), so an interrupted load is run again like any other. The file is
    /// put back on the log when the load's last handle is dropped.
    ///
    /// A store that holds packs is opened as by `open`: it may be serving reads, which the log
    /// lets go on during a write. A reader that opens the file during a load (`serve`,
    /// `query`) puts it on the log itself, which the load then follows; the results are the
    /// same, only the load's gain is lost. If the load holds the file for longer than a
    /// second, the reader reads in the journal's mode instead, waiting out each commit of the
    /// load.
    pub fn open_to_load(path: &Path) -> Result<SqliteStore, StoreError> {
        Self::open_with(path, Limits::default(), true)
    }

    fn open_with(path: &Path, limits: Limits, load: bool) -> Result<SqliteStore, StoreError> {
        let conn = Connection::open(path).map_err(|e| {
            StoreError::permanent(
                format!(
                    "cannot open the store file {}; check that its folder exists and is writable, or choose another with --store",
                    path.display()
                ),
                e,
            )
        })?;
        // A pack (a series-quarter, ~6 KB for half-hourly data) must fit a leaf page of the
        // WITHOUT ROWID table, whose rows spill to overflow pages past about a quarter of a
        // page: with the default 4 KiB pages every pack took an extra page and the file grew
        // to 2.3 times its contents. Past that, larger pages are fuller (a leaf split leaves
        // less room unused) and fewer: a 1 GB ingest made a 259 MB file with 64 KiB pages
        // against 296 MB with 16 KiB ones, in 7–12 % less time and CPU (bench/RESULTS.md,
        // round seven). A one-day read copies a larger page (p50 +10–20 µs); a year's is
        // unchanged. Only takes effect on a new file (before WAL is enabled).
        conn.pragma_update(None, "page_size", PAGE_SIZE)
            .map_err(sqlite_error("setting the page size"))?;
        // A journal mode that cannot be set (another connection has the file open on the
        // log) stays as it was: then this is an ordinary open.
        let rollback = load
            && holds_no_packs(&conn)?
            && conn
                .pragma_update_and_check(None, "journal_mode", "DELETE", |r| r.get::<_, String>(0))
                .map_err(sqlite_error("choosing a rollback journal for the load"))?
                .eq_ignore_ascii_case("delete");
        // WAL lets `serve` read while `ingest` writes; NORMAL sync is durable at checkpoints,
        // and an interrupted ingest is simply run again (puts are idempotent). Putting a file
        // on the log takes it whole for a moment: while another process loads it through the
        // rollback journal, that can fail, and then this connection works in the journal's
        // mode (SQLite's locks keep readers and the writer consistent; the load puts the file
        // back on the log when it ends).
        conn.busy_timeout(LOG_SWITCH_WAIT)
            .map_err(sqlite_error("setting busy timeout"))?;
        if !rollback {
            match conn.pragma_update(None, "journal_mode", "WAL") {
                Err(e) if !is_locked(&e) => return Err(sqlite_error("enabling WAL")(e)),
                _ => {}
            }
        }
        let mode: String = conn
            .query_row("PRAGMA journal_mode", [], |r| r.get(0))
            .map_err(sqlite_error("reading the journal mode"))?;
        // A rollback journal is durable against power loss only with FULL, SQLite's default.
        let sync = if mode.eq_ignore_ascii_case("wal") {
            "NORMAL"
        } else {
            "FULL"
        };
        conn.pragma_update(None, "synchronous", sync)
            .map_err(sqlite_error("setting synchronous"))?;
        // A page cache that holds an ingest's working set of B-tree pages (the default 2 MB
        // re-read them), bounded so memory stays flat however large the store grows.
        conn.pragma_update(None, "cache_size", -16384)
            .map_err(sqlite_error("setting cache_size"))?;
        conn.busy_timeout(BUSY_WAIT)
            .map_err(sqlite_error("setting busy timeout"))?;
        let checkpoints = Checkpoints::new(&conn, path.to_path_buf(), limits);
        let mut store = Self::init(conn)?;
        store.checkpoints = Some(Arc::new(checkpoints));
        if rollback {
            store.load = Some(Arc::new(BackToLog(Arc::clone(&store.conn))));
        }
        Ok(store)
    }

    pub fn open_in_memory() -> Result<SqliteStore, StoreError> {
        Self::init(
            Connection::open_in_memory().map_err(sqlite_error("opening an in-memory store"))?,
        )
    }

    fn init(conn: Connection) -> Result<SqliteStore, StoreError> {
        conn.execute_batch(SCHEMA)
            .map_err(sqlite_error("creating the schema"))?;
        let version: Option<String> = conn
            .query_row("SELECT value FROM meta WHERE key = 'schema'", [], |r| {
                r.get(0)
            })
            .optional()
            .map_err(sqlite_error("reading the schema version"))?;
        match version.as_deref() {
            None => {
                conn.execute("INSERT INTO meta (key, value) VALUES ('schema', ?1)", [SCHEMA_VERSION])
                    .map_err(sqlite_error("writing the schema version"))?;
            }
            Some(SCHEMA_VERSION) => {}
            Some(v) => {
                return Err(StoreError::refused(format!(
                    "the store file has schema version {v}, this build reads {SCHEMA_VERSION}; use a matching meterflow or a new --store file"
                )))
            }
        }
        Ok(SqliteStore {
            conn: Arc::new(Mutex::new(conn)),
            checkpoints: None,
            load: None,
        })
    }

    async fn blocking<T: Send + 'static>(
        &self,
        f: impl FnOnce(&mut Connection) -> Result<T, StoreError> + Send + 'static,
    ) -> Result<T, StoreError> {
        let conn = self.conn.clone();
        tokio::task::spawn_blocking(move || {
            let mut guard = conn
                .lock()
                .map_err(|_| StoreError::refused("the store lock was poisoned by a panic"))?;
            f(&mut guard)
        })
        .await
        .map_err(|e| StoreError::permanent("the store task failed", e))?
    }
}

/// True for a new file, or one whose packs table is empty.
fn holds_no_packs(conn: &Connection) -> Result<bool, StoreError> {
    let has_table: bool = conn
        .query_row(
            "SELECT EXISTS (SELECT 1 FROM sqlite_schema WHERE type = 'table' AND name = 'packs')",
            [],
            |r| r.get(0),
        )
        .map_err(sqlite_error("reading the store's schema"))?;
    if !has_table {
        return Ok(true);
    }
    conn.query_row("SELECT NOT EXISTS (SELECT 1 FROM packs)", [], |r| r.get(0))
        .map_err(sqlite_error("checking whether the store holds packs"))
}

/// XXH3-128 of a pack's bytes: a published, versioned algorithm, so the same contents give
/// the same key in every build and on every platform (unlike std's hasher), which keys that
/// live in files need.
fn digest(bytes: &[u8]) -> [u8; 16] {
    xxhash_rust::xxh3::xxh3_128(bytes).to_be_bytes()
}

struct Pack {
    series: String,
    month: i32,
    source: String,
    first_line: u64,
    fragments: usize,
    body: Vec<u8>,
}

/// What a pack shares: series, bucket ([`Day::quarter_bucket`]) and source.
type GroupKey<'a> = (&'a str, i32, &'a str);

/// What packs are made of: decoded fragments (from `put`) or a record's raw fragments (from
/// `put_record`, copied without decoding their values). Both encode to the same bytes, so a
/// batch gives the same packs whichever way it arrives.
trait Packable {
    fn key(&self) -> GroupKey<'_>;
    fn line(&self) -> u64;
    fn push_into(&self, builder: &mut EnvelopeBuilder) -> Result<(), PushError>;
}

impl Packable for Fragment {
    fn key(&self) -> GroupKey<'_> {
        (
            self.series.as_str(),
            self.day.quarter_bucket(),
            &self.source,
        )
    }
    fn line(&self) -> u64 {
        self.line
    }
    fn push_into(&self, builder: &mut EnvelopeBuilder) -> Result<(), PushError> {
        builder.try_push(self)
    }
}

impl Packable for RawFragment<'_> {
    fn key(&self) -> GroupKey<'_> {
        (self.series.as_str(), self.day.quarter_bucket(), self.source)
    }
    fn line(&self) -> u64 {
        self.line
    }
    fn push_into(&self, builder: &mut EnvelopeBuilder) -> Result<(), PushError> {
        builder.push_raw(self)
    }
}

/// Groups a batch into packs: per series, quarter and source, in input order.
fn packs<T: Packable>(items: &[T]) -> Result<Vec<Pack>, StoreError> {
    // Fragments come in runs of one group: look a group up only when the key changes.
    let mut index: HashMap<GroupKey<'_>, usize> = HashMap::new();
    let mut groups: Vec<(GroupKey<'_>, Vec<&T>)> = Vec::new();
    let mut last: Option<(GroupKey<'_>, usize)> = None;
    for f in items {
        let key = f.key();
        let at = match last {
            Some((k, at)) if same_key(k, key) => at,
            _ => *index.entry(key).or_insert_with(|| {
                groups.push((key, Vec::new()));
                groups.len() - 1
            }),
        };
        groups[at].1.push(f);
        last = Some((key, at));
    }
    groups.sort_unstable_by(|a, b| a.0.cmp(&b.0));
    let mut out = Vec::new();
    let mut builder = EnvelopeBuilder::new(envelope::MAX_ENVELOPE_BYTES);
    for ((series, month, source), group) in groups {
        let mut first_line = group[0].line();
        let mut count = 0;
        let ship = |builder: &mut EnvelopeBuilder, first_line: u64, count: usize| Pack {
            series: series.into(),
            month,
            source: source.into(),
            first_line,
            fragments: count,
            body: builder.take(),
        };
        for f in group {
            if f.push_into(&mut builder).is_err() {
                out.push(ship(&mut builder, first_line, count));
                f.push_into(&mut builder)
                    .map_err(|e| StoreError::permanent("a fragment cannot be encoded", e))?;
                first_line = f.line();
                count = 0;
            }
            count += 1;
        }
        out.push(ship(&mut builder, first_line, count));
    }
    Ok(out)
}

/// Key equality that tries pointers first: a record's fragments borrow their series and
/// source from its dictionaries, so equal keys are usually the very same strings.
fn same_key(a: GroupKey<'_>, b: GroupKey<'_>) -> bool {
    let same = |x: &str, y: &str| std::ptr::eq(x, y) || x == y;
    a.1 == b.1 && same(a.0, b.0) && same(a.2, b.2)
}

/// A record's fragments regrouped into packs, values copied as encoded.
fn record_packs(record: &[u8]) -> Result<Vec<Pack>, StoreError> {
    let env = Envelope::parse(record).map_err(undecodable)?;
    let raw = env.all_raw_fragments().map_err(undecodable)?;
    packs(&raw)
}

fn undecodable(e: DecodeError) -> StoreError {
    StoreError::permanent("a record given to the store does not decode", e)
}

impl SqliteStore {
    /// Builds packs with `make` off the async runtime and before taking the connection (so
    /// encoding overlaps another put's write), then inserts them in one transaction.
    async fn write(
        &self,
        make: impl FnOnce() -> Result<Vec<Pack>, StoreError> + Send + 'static,
    ) -> Result<(), StoreError> {
        let conn = self.conn.clone();
        let checkpoints = self.checkpoints.clone();
        tokio::task::spawn_blocking(move || {
            let packs = make()?;
            let mut conn = conn.lock().map_err(|_| {
                StoreError::refused("the store lock was poisoned by a panic")
            })?;
            let tx = conn.transaction().map_err(sqlite_error("starting a write"))?;
            {
                let mut stmt = tx
                    .prepare_cached(
                        "INSERT OR IGNORE INTO packs (series, month, source, first_line, digest, fragments, body) \
                         VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7)",
                    )
                    .map_err(sqlite_error("preparing the insert"))?;
                for p in &packs {
                    stmt.execute(params![p.series, p.month, p.source, p.first_line as i64, &digest(&p.body)[..], p.fragments as i64, p.body])
                        .map_err(sqlite_error("writing fragments"))?;
                }
            }
            tx.commit().map_err(sqlite_error("committing fragments"))?;
            match checkpoints {
                Some(c) => c.after_commit(&conn),
                None => Ok(()),
            }
        })
        .await
        .map_err(|e| StoreError::permanent("the store task failed", e))?
    }
}

impl Store for SqliteStore {
    async fn put(&self, fragments: Vec<Fragment>) -> Result<(), StoreError> {
        if fragments.is_empty() {
            return Ok(());
        }
        self.write(move || packs(&fragments)).await
    }

    async fn put_record(&self, record: Vec<u8>) -> Result<(), StoreError> {
        self.write(move || record_packs(&record)).await
    }

    /// All records in one transaction: all written, or none.
    async fn put_records(&self, records: Vec<Vec<u8>>) -> Result<(), (usize, StoreError)> {
        self.write(move || {
            let mut packs = Vec::new();
            for r in &records {
                packs.extend(record_packs(r)?);
            }
            Ok(packs)
        })
        .await
        .map_err(|e| (0, e))
    }

    /// As [`put_records`](Self::put_records), with each record's fragments looked up instead
    /// of walked again.
    async fn put_valid_records(
        &self,
        records: Vec<ValidRecord>,
    ) -> Result<(), (usize, StoreError)> {
        self.write(move || {
            let mut all = Vec::new();
            for r in &records {
                all.extend(r.with_fragments(|raw| packs(raw)).map_err(undecodable)??);
            }
            Ok(all)
        })
        .await
        .map_err(|e| (0, e))
    }

    /// A range scan of the primary key's leading column: `limit` series cost about `limit`
    /// index steps per pack of theirs, whatever the table's size.
    async fn series(&self, prefix: &str, limit: usize) -> Result<Vec<SeriesId>, StoreError> {
        let (low, high) = (prefix.to_string(), SeriesId::prefix_end(prefix));
        let limit = i64::try_from(limit).unwrap_or(i64::MAX);
        self.blocking(move |conn| {
            let mut stmt = conn
                .prepare_cached(
                    "SELECT DISTINCT series FROM packs WHERE series >= ?1 AND series < ?2 \
                     ORDER BY series LIMIT ?3",
                )
                .map_err(sqlite_error("preparing the series listing"))?;
            let mut rows = stmt
                .query(params![low, high, limit])
                .map_err(sqlite_error("listing series"))?;
            let mut out = Vec::new();
            while let Some(row) = rows.next().map_err(sqlite_error("listing series"))? {
                let id: String = row.get(0).map_err(sqlite_error("reading a series id"))?;
                out.push(SeriesId::parse(id.as_bytes()).map_err(|e| {
                    StoreError::permanent(format!("a stored series id `{id}` is invalid"), e)
                })?);
            }
            Ok(out)
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
            let mut out = Vec::new();
            for_each_pack(conn, &series, from, to, |month, body| {
                let decoded = envelope::decode(body).map_err(|e| unreadable(&series, month, e))?;
                out.extend(decoded.into_iter().filter(|f| f.day >= from && f.day <= to));
                Ok(())
            })?;
            Ok(out)
        })
        .await
    }

    /// The packs' days totalled as they are read (`daily_totals_of_packs`): a year of
    /// half-hourly data is 365 days without a fragment decoded, unless days hold several.
    async fn daily_totals(
        &self,
        series: &SeriesId,
        from: Day,
        to: Day,
    ) -> Result<Vec<DayTotal>, StoreError> {
        let series = series.to_string();
        self.blocking(move |conn| {
            let mut packs = Vec::new();
            let mut months = Vec::new();
            for_each_pack(conn, &series, from, to, |month, body| {
                packs.push(body.to_vec());
                months.push(month);
                Ok(())
            })?;
            meterflow_core::merge::daily_totals_of_packs(&packs, from, to)
                .map_err(|(at, e)| unreadable(&series, months[at], e))
        })
        .await
    }
}

/// Calls `each` with the bucket and body of every pack of `series` that may hold days of
/// `from..=to`: one range scan of the key's (series, month) prefix, one statement and one read
/// transaction for a year, not one per bucket. The scan starts at the first month of `from`'s
/// quarter, so it finds quarter packs and the month packs of stores written before them
/// (`meterflow` until round eight of issue 14) alike; callers keep only the days asked for.
fn for_each_pack(
    conn: &mut Connection,
    series: &str,
    from: Day,
    to: Day,
    mut each: impl FnMut(i32, &[u8]) -> Result<(), StoreError>,
) -> Result<(), StoreError> {
    if from > to {
        return Ok(());
    }
    let (first, last) = (from.quarter_bucket(), to.month_bucket());
    let mut stmt = conn
        .prepare_cached(
            "SELECT month, body FROM packs WHERE series = ?1 AND month BETWEEN ?2 AND ?3",
        )
        .map_err(sqlite_error("preparing the read"))?;
    let mut rows = stmt
        .query(params![series, first, last])
        .map_err(sqlite_error("reading fragments"))?;
    while let Some(row) = rows.next().map_err(sqlite_error("reading fragments"))? {
        let month: i32 = row.get(0).map_err(sqlite_error("reading a pack"))?;
        let body = row
            .get_ref(1)
            .and_then(|v| Ok(v.as_blob()?))
            .map_err(sqlite_error("reading a pack"))?;
        each(month, body)?;
    }
    Ok(())
}

fn unreadable(series: &str, month: i32, e: DecodeError) -> StoreError {
    StoreError::permanent(
        format!("a stored pack of {series} ({month}) is unreadable"),
        e,
    )
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::path::PathBuf;

    #[test]
    fn digest_is_stable() {
        // Keys live in files: the digest must never change between builds. XXH3-128 of the
        // empty input, from the algorithm's reference test vectors.
        assert_eq!(
            digest(b""),
            0x99aa_06d3_0147_98d8_6001_c324_468d_497f_u128.to_be_bytes()
        );
        assert_ne!(digest(b"a"), digest(b"b"));
    }

    /// `puts` writes of 30 series-months each, every value distinct (so no page compresses
    /// into another), into a file store with the given checkpoint limits.
    async fn write_months(store: &SqliteStore, puts: usize) -> Vec<Fragment> {
        use meterflow_testkit::conformance::fragment;
        let mut all = Vec::new();
        for p in 0..puts {
            let batch: Vec<Fragment> = (0..30)
                .flat_map(|s| {
                    (1..=28).map(move |d| {
                        let v = (p * 1_000_000 + s * 1_000 + d) as i64;
                        let values: Vec<Option<i64>> = (0..48).map(|i| Some(v * 48 + i)).collect();
                        fragment(
                            &format!("M{p:04}-{s:02}"),
                            &format!("2024-03-{d:02}"),
                            1,
                            "f.csv",
                            d as u64,
                            &values,
                        )
                    })
                })
                .collect();
            store.put(batch.clone()).await.expect("put");
            all.extend(batch);
        }
        all
    }

    fn wal_bytes(path: &Path) -> u64 {
        let wal = path.with_file_name(format!(
            "{}-wal",
            path.file_name().unwrap().to_string_lossy()
        ));
        std::fs::metadata(wal).map_or(0, |m| m.len())
    }

    /// The journal mode of `store`'s own connection.
    async fn journal_mode(store: &SqliteStore) -> String {
        store
            .blocking(|conn| {
                conn.query_row("PRAGMA journal_mode", [], |r| r.get(0))
                    .map_err(sqlite_error("reading the journal mode"))
            })
            .await
            .unwrap()
    }

    /// The journal mode a file is left in, read by a connection that sets none.
    fn file_journal_mode(path: &Path) -> String {
        Connection::open(path)
            .unwrap()
            .query_row("PRAGMA journal_mode", [], |r| r.get(0))
            .unwrap()
    }

    /// Every fragment of March 2024 in `store`, in a canonical order.
    async fn march(store: &SqliteStore, of: &[Fragment]) -> Vec<Fragment> {
        let (from, to) = (
            Day::parse_iso("2024-03-01").unwrap(),
            Day::parse_iso("2024-03-31").unwrap(),
        );
        let mut read = Vec::new();
        for s in of
            .iter()
            .map(|f| f.series.clone())
            .collect::<std::collections::BTreeSet<_>>()
        {
            read.extend(store.fragments(&s, from, to).await.unwrap());
        }
        read.sort_by(|a, b| (&a.series, a.day, a.line).cmp(&(&b.series, b.day, b.line)));
        read
    }

    #[tokio::test]
    async fn a_first_load_writes_through_a_rollback_journal_and_leaves_the_file_on_the_log() {
        let dir = tempfile::tempdir().unwrap();
        let (loaded, logged) = (dir.path().join("load.db"), dir.path().join("log.db"));
        let store = SqliteStore::open_to_load(&loaded).unwrap();
        assert_eq!(journal_mode(&store).await, "delete");
        let all = write_months(&store, 6).await;
        assert_eq!(
            wal_bytes(&loaded),
            0,
            "a load through the journal writes no log"
        );
        let read = march(&store, &all).await;
        drop(store);
        assert_eq!(
            file_journal_mode(&loaded),
            "wal",
            "the load's end puts the file on the log"
        );

        // The same writes through `open` read back the same.
        let other = SqliteStore::open(&logged).unwrap();
        assert_eq!(journal_mode(&other).await, "wal");
        write_months(&other, 6).await;
        assert_eq!(march(&other, &all).await, read);
        assert_eq!(read.len(), all.len());

        // A store that holds packs is loaded on the log, as `open` would (it may be serving).
        let again = SqliteStore::open_to_load(&loaded).unwrap();
        assert_eq!(journal_mode(&again).await, "wal");
        assert!(again.load.is_none());
        assert_eq!(march(&again, &all).await, read);
    }

    /// A first load of a new store file with `puts` writes done: its folder (kept while the
    /// test runs), path, store and fragments.
    async fn loading(puts: usize) -> (tempfile::TempDir, PathBuf, SqliteStore, Vec<Fragment>) {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("s.db");
        let load = SqliteStore::open_to_load(&path).unwrap();
        let all = write_months(&load, puts).await;
        (dir, path, load, all)
    }

    #[tokio::test]
    async fn a_reader_opening_during_a_load_puts_it_on_the_log_and_every_write_lands() {
        let (_dir, path, load, before) = loading(3).await;
        // `serve` or `query` opening the file meanwhile.
        let reader = SqliteStore::open(&path).unwrap();
        assert_eq!(march(&reader, &before).await.len(), before.len());
        assert_eq!(file_journal_mode(&path), "wal");
        // The load goes on, on the log now (writing the first three puts again, which changes
        // nothing); what it writes is read by the reader.
        let all = write_months(&load, 6).await;
        assert_eq!(journal_mode(&load).await, "wal");
        assert_eq!(march(&reader, &all).await, march(&load, &all).await);
        assert_eq!(march(&reader, &all).await.len(), all.len());
    }

    /// Every row of the packs table, in key order.
    async fn all_rows(
        store: &SqliteStore,
    ) -> Vec<(String, i32, String, i64, Vec<u8>, i64, Vec<u8>)> {
        store
            .blocking(|conn| {
                let mut stmt = conn
                    .prepare(
                        "SELECT * FROM packs ORDER BY series, month, source, first_line, digest",
                    )
                    .map_err(sqlite_error("listing packs"))?;
                let rows = stmt
                    .query_map([], |r| {
                        Ok((
                            r.get(0)?,
                            r.get(1)?,
                            r.get(2)?,
                            r.get(3)?,
                            r.get(4)?,
                            r.get(5)?,
                            r.get(6)?,
                        ))
                    })
                    .and_then(|rows| rows.collect())
                    .map_err(sqlite_error("listing packs"));
                rows
            })
            .await
            .unwrap()
    }

    #[tokio::test]
    async fn a_reader_that_cannot_switch_a_load_to_the_log_reads_in_its_journal() {
        let (_dir, path, load, all) = loading(2).await;
        // A transaction of the load holds the file (another process, as `ingest` would).
        let writer = Connection::open(&path).unwrap();
        writer.execute_batch("BEGIN IMMEDIATE").unwrap();
        let reader = SqliteStore::open(&path).expect("an open during a load must not fail");
        assert_eq!(journal_mode(&reader).await, "delete");
        assert_eq!(march(&reader, &all).await.len(), all.len());
        writer.execute_batch("COMMIT").unwrap();
        drop((reader, writer, load));
        assert_eq!(file_journal_mode(&path), "wal");
    }

    #[tokio::test]
    async fn checked_records_make_the_packs_their_bytes_make() {
        // Records of several series and months each, in the order a file gives them.
        let fragments: Vec<Fragment> = (0..4)
            .flat_map(|s| {
                (0..70).map(move |d| {
                    let day = Day::parse_iso("2024-02-01").unwrap().days() + d;
                    let day = Day::from_days(day).unwrap().to_string();
                    let values: Vec<Option<i64>> =
                        (0..48).map(|i| Some(s * 7 + d as i64 + i)).collect();
                    meterflow_testkit::conformance::fragment(
                        &format!("M{s}"),
                        &day,
                        1,
                        "f.csv",
                        d as u64,
                        &values,
                    )
                })
            })
            .collect();
        let records: Vec<Vec<u8>> = fragments
            .chunks(45)
            .map(|c| {
                let mut b = EnvelopeBuilder::default();
                c.iter().for_each(|f| b.try_push(f).unwrap());
                b.finish()
            })
            .collect();
        let (bytes, checked) = (
            SqliteStore::open_in_memory().unwrap(),
            SqliteStore::open_in_memory().unwrap(),
        );
        bytes.put_records(records.clone()).await.unwrap();
        let valid = records
            .into_iter()
            .map(|r| ValidRecord::check(r, |_| ()).unwrap())
            .collect();
        checked.put_valid_records(valid).await.unwrap();
        let rows = all_rows(&bytes).await;
        let groups: usize = fragments
            .chunks(45)
            .map(|c| {
                c.iter()
                    .map(|f| (&f.series, f.day.quarter_bucket()))
                    .collect::<std::collections::BTreeSet<_>>()
                    .len()
            })
            .sum();
        assert_eq!(rows.len(), groups, "a row per series, quarter and record");
        assert_eq!(all_rows(&checked).await, rows);
    }

    /// Days `first..first + n` of meter `M`, 48 distinct values each.
    fn days_of(first: &str, n: i32) -> Vec<Fragment> {
        let first = Day::parse_iso(first).unwrap().days();
        (0..n)
            .map(|d| {
                let day = Day::from_days(first + d).unwrap().to_string();
                let values: Vec<Option<i64>> =
                    (0..48).map(|i| Some(i64::from(d) * 100 + i)).collect();
                meterflow_testkit::conformance::fragment(
                    "M",
                    &day,
                    1,
                    "f.csv",
                    d as u64 + 2,
                    &values,
                )
            })
            .collect()
    }

    /// `totals` are one per fragment of `want` (each day's only one), with its day and sum.
    fn assert_days(totals: &[DayTotal], want: &[&Fragment]) {
        let got: Vec<(Day, i64)> = totals.iter().map(|t| (t.day, t.total)).collect();
        let want: Vec<(Day, i64)> = want.iter().map(|f| (f.day, f.slots.total())).collect();
        assert_eq!(got, want);
    }

    #[tokio::test]
    async fn a_range_inside_a_quarter_reads_its_days_and_no_other() {
        let store = SqliteStore::open_in_memory().unwrap();
        let all = days_of("2024-01-20", 120); // into May: three quarter packs
        store.put(all.clone()).await.unwrap();
        let series = "M".parse().unwrap();
        for (from, to) in [
            ("2024-03-10", "2024-04-05"),
            ("2024-02-29", "2024-02-29"),
            ("2024-04-01", "2024-05-18"),
        ] {
            let (from, to) = (Day::parse_iso(from).unwrap(), Day::parse_iso(to).unwrap());
            let want: Vec<&Fragment> = all
                .iter()
                .filter(|f| f.day >= from && f.day <= to)
                .collect();
            let got = store.fragments(&series, from, to).await.unwrap();
            assert_eq!(got.iter().collect::<Vec<_>>(), want);
            assert_days(&store.daily_totals(&series, from, to).await.unwrap(), &want);
        }
    }

    #[tokio::test]
    async fn month_packs_of_an_older_store_are_read_beside_quarter_packs() {
        // Stores written before quarter packs hold a pack per series-month, keyed by the
        // month: a read finds them, and the same fragments written again as a quarter pack
        // count once.
        let store = SqliteStore::open_in_memory().unwrap();
        let all = days_of("2024-02-01", 60); // February and March
        let (feb, march): (Vec<Fragment>, Vec<Fragment>) = all
            .iter()
            .cloned()
            .partition(|f| f.day.month_bucket() == 202402);
        let packs: Vec<Pack> = [&feb, &march]
            .into_iter()
            .map(|month| {
                let mut b = EnvelopeBuilder::default();
                month.iter().for_each(|f| b.try_push(f).unwrap());
                Pack {
                    series: "M".into(),
                    month: month[0].day.month_bucket(),
                    source: "f.csv".into(),
                    first_line: month[0].line,
                    fragments: month.len(),
                    body: b.finish(),
                }
            })
            .collect();
        store.write(move || Ok(packs)).await.unwrap();
        store.put(march.clone()).await.unwrap();
        let series = "M".parse().unwrap();
        let (from, to) = (
            Day::parse_iso("2024-02-10").unwrap(),
            Day::parse_iso("2024-03-31").unwrap(),
        );
        let want: Vec<&Fragment> = all.iter().filter(|f| f.day >= from).collect();
        assert_days(&store.daily_totals(&series, from, to).await.unwrap(), &want);
    }

    #[tokio::test]
    async fn a_damaged_pack_is_reported_with_its_series_and_month() {
        let store = SqliteStore::open_in_memory().unwrap();
        write_months(&store, 1).await;
        store
            .blocking(|conn| {
                conn.execute(
                    "UPDATE packs SET body = x'00' WHERE series = 'M0000-03'",
                    [],
                )
                .map_err(sqlite_error("damaging a pack"))
            })
            .await
            .unwrap();
        let (from, to) = (
            Day::parse_iso("2024-01-01").unwrap(),
            Day::parse_iso("2024-12-31").unwrap(),
        );
        let series = "M0000-03".parse().unwrap();
        let err = store
            .daily_totals(&series, from, to)
            .await
            .unwrap_err()
            .report();
        assert!(
            err.contains("a stored pack of M0000-03 (202401) is unreadable"),
            "{err}"
        );
        let err = store
            .fragments(&series, from, to)
            .await
            .unwrap_err()
            .report();
        assert!(
            err.contains("a stored pack of M0000-03 (202401) is unreadable"),
            "{err}"
        );
        // Another meter's days are still read.
        let other = store
            .daily_totals(&"M0000-04".parse().unwrap(), from, to)
            .await
            .unwrap();
        assert_eq!(other.len(), 28);
    }

    #[tokio::test]
    async fn the_writer_restarts_the_log_at_its_hard_limit() {
        // Without checkpoints, 40 puts of ~4 pages each leave a log of ~150 frames; the
        // writer's own checkpoint at 64 frames keeps it near that.
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("s.db");
        let limits = Limits {
            soft: i32::MAX,
            hard: 64,
        };
        let store = SqliteStore::open_with(&path, limits, false).unwrap();
        let all = write_months(&store, 40).await;
        let frame = u64::from(PAGE_SIZE) + 24;
        let wal = wal_bytes(&path);
        assert!(wal > 0, "the store file should be in WAL mode");
        assert!(
            wal <= 100 * frame,
            "the log grew to {wal} bytes ({} frames)",
            wal / frame
        );
        // Every fragment is there, in the store and after reopening it.
        drop(store);
        assert_eq!(
            wal_bytes(&path),
            0,
            "closing the store checkpoints and removes the log"
        );
        let again = SqliteStore::open(&path).unwrap();
        assert_eq!(march(&again, &all).await.len(), all.len());
    }

    #[tokio::test]
    async fn the_thread_checkpoints_while_the_writer_goes_on() {
        // No hard limit: only the thread copies the log into the database file, which is
        // all a database file grows by in WAL mode.
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("s.db");
        let limits = Limits {
            soft: 16,
            hard: i32::MAX,
        };
        let store = SqliteStore::open_with(&path, limits, false).unwrap();
        let empty = std::fs::metadata(&path).unwrap().len();
        let checkpoints = store.checkpoints.clone().unwrap();
        let day = Day::parse_iso("2024-03-01").unwrap();
        store
            .fragments(&"M0000-00".parse().unwrap(), day, day)
            .await
            .unwrap();
        assert!(
            !checkpoints.started(),
            "opening and reading started a thread"
        );
        write_months(&store, 10).await;
        assert!(checkpoints.started());
        // Only a checkpoint writes to the database file in WAL mode: wait for the thread's.
        let deadline = std::time::Instant::now() + std::time::Duration::from_secs(30);
        let mut grown = empty;
        while grown <= empty && std::time::Instant::now() < deadline {
            std::thread::yield_now();
            grown = std::fs::metadata(&path).unwrap().len();
        }
        assert!(grown > empty, "the database file stayed at {grown} bytes");
    }
}
