//! The fragment store on CQL: Amazon Keyspaces, Apache Cassandra and ScyllaDB, through the
//! `scylla` driver.
//!
//! # Layout
//!
//! ```text
//! CREATE TABLE day_fragments (
//!   series text, month int,                 -- month bucket (yyyymm) bounds partitions
//!   day date, version bigint, source text, line bigint,
//!   total bigint,                           -- this fragment's sum (1 unit = 10^-6 kWh)
//!   slots blob,                             -- the fragment as a one-fragment envelope
//!   interval_minutes int, unit text, quality int,
//!   PRIMARY KEY ((series, month), day, version, source, line))
//! ```
//!
//! One row per fragment under its deterministic key, written with a plain `INSERT`: writing
//! it again rewrites the same row with the same values, so redelivery never double counts.
//! Nothing is a counter and no write carries a client timestamp (Cassandra forbids them on
//! counters, Keyspaces refuses timestamps more than 2 days old); the merge of overlapping
//! fragments happens when reading, with the core's rule.
//!
//! Why the blob is a whole one-fragment envelope: the core's codec is the only slot encoding
//! in the project (a second one would be a second thing to keep exact). It repeats the key
//! columns (series, source: tens of bytes a row), which buys a check on every read: a row
//! whose blob disagrees with its key is reported as corrupt instead of merged. `total`,
//! `interval_minutes`, `unit` and `quality` are plain columns so that `cqlsh` users and
//! other tools can read a day without the codec.
//!
//! # Queries
//!
//! Only an `INSERT` and an equality `SELECT` on the partition key (one per month bucket),
//! days filtered in code: that is the CQL every target supports, including the in-process
//! test server, which has no range predicates. Both are prepared, use LOCAL_QUORUM
//! (required for Keyspaces writes, and read-your-writes with it), and are marked idempotent
//! so the driver may retry them.

mod any;
pub mod config;
mod error;
pub mod schema;
pub mod sigv4;
#[cfg(feature = "keyspaces")]
mod tls;

use std::collections::HashSet;
use std::sync::{Arc, Mutex};

use futures_util::{StreamExt, TryStreamExt};
use meterflow_core::envelope::{self, EnvelopeBuilder};
use meterflow_core::{Day, Fragment, SeriesId};
use meterflow_store::{month_buckets, Store, StoreError};
use scylla::client::execution_profile::ExecutionProfile;
use scylla::client::session::Session;
use scylla::client::session_builder::SessionBuilder;
use scylla::policies::load_balancing::DefaultPolicy;
use scylla::statement::prepared::PreparedStatement;
use scylla::statement::Consistency;
use scylla::value::CqlDate;

pub use any::AnyStore;
pub use config::{ConfigError, CqlConfig, Credentials, TlsConfig};

pub use schema::TABLE;
use schema::{FRAGMENTS, SERIES};

/// Rows per page of a series listing (a listing asks for a few dozen).
const LIST_PAGE: i32 = 100;

/// A fragment store in one keyspace of a CQL cluster.
///
/// Cheap to clone (the session is shared); one per process is enough, the driver keeps a
/// connection pool per node.
#[derive(Clone)]
pub struct CqlStore {
    session: Arc<Session>,
    insert: PreparedStatement,
    select: PreparedStatement,
    insert_series: PreparedStatement,
    /// Series this process has written to the index (cleared past [`KNOWN_SERIES`]): each
    /// is written once per process, not once per fragment.
    known: Arc<Mutex<HashSet<SeriesId>>>,
    keyspace: String,
    concurrency: usize,
}

/// Most series ids a store remembers having indexed; past it, it forgets them all and writes
/// again what comes (an idempotent upsert), so memory stays bounded (~40 MB).
const KNOWN_SERIES: usize = 500_000;

impl std::fmt::Debug for CqlStore {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("CqlStore")
            .field("concurrency", &self.concurrency)
            .finish_non_exhaustive()
    }
}

/// A CQL `date` holds days since 1970-01-01 offset by 2^31, so it is unsigned.
fn cql_date(day: Day) -> CqlDate {
    CqlDate((1u32 << 31).wrapping_add_signed(day.days()))
}

fn day_of(date: CqlDate) -> i32 {
    date.0.wrapping_sub(1u32 << 31) as i32
}

/// One row of a read: the key columns, the total, and the blob.
type Row = (CqlDate, i64, String, i64, i64, Vec<u8>);

impl CqlStore {
    /// Connects, creates the schema if [`CqlConfig::create_schema`] asks for it, and prepares
    /// the two statements (so a missing table is reported now, not at the first write).
    pub async fn connect(config: &CqlConfig) -> Result<CqlStore, StoreError> {
        let session = Arc::new(Self::open_session(config).await?);
        if config.create_schema {
            create_schema(&session, &config.keyspace, 1).await?;
        }
        let ks = &config.keyspace;
        let prepare = |cql: String, what: &'static str, table: &'static str| {
            let session = Arc::clone(&session);
            async move {
                let mut statement = session.prepare(cql).await.map_err(|e| {
                    error::prepare_error(&format!("preparing the {what} {ks}.{table}"), &e)
                })?;
                statement.set_is_idempotent(true);
                statement.set_consistency(Consistency::LocalQuorum);
                Ok::<_, StoreError>(statement)
            }
        };
        let insert = prepare(FRAGMENTS.insert(ks), "write to", FRAGMENTS.name).await?;
        let insert_series = prepare(SERIES.insert(ks), "write to", SERIES.name).await?;
        let mut select = session
            .prepare(format!(
                "SELECT day, version, source, line, total, slots FROM {ks}.{TABLE} WHERE series = ? AND month = ?"
            ))
            .await
            .map_err(|e| error::prepare_error(&format!("preparing the read of {ks}.{TABLE}"), &e))?;
        select.set_is_idempotent(true);
        select.set_consistency(Consistency::LocalQuorum);
        select.set_page_size(config.page_size.max(1));
        Ok(CqlStore {
            session,
            insert,
            select,
            insert_series,
            known: Arc::default(),
            keyspace: config.keyspace.clone(),
            concurrency: config.concurrency.max(1),
        })
    }

    /// The driver session, for administration beyond the store's two statements.
    pub fn session(&self) -> &Session {
        &self.session
    }

    async fn open_session(config: &CqlConfig) -> Result<Session, StoreError> {
        let mut policy = DefaultPolicy::builder().token_aware(true);
        if let Some(dc) = &config.datacenter {
            // LOCAL_QUORUM counts replicas of this datacenter; keep requests in it.
            policy = policy
                .prefer_datacenter(dc.clone())
                .permit_dc_failover(false);
        }
        let profile = ExecutionProfile::builder()
            .load_balancing_policy(policy.build())
            .request_timeout(Some(config.request_timeout))
            .consistency(Consistency::LocalQuorum)
            .build();
        let mut builder = SessionBuilder::new()
            .known_nodes(&config.nodes)
            .connection_timeout(config.connect_timeout)
            .default_execution_profile_handle(profile.into_handle())
            .keyspaces_to_fetch([config.keyspace.clone()])
            .auto_await_schema_agreement(config.await_schema_agreement);
        if let Some(c) = &config.credentials {
            builder = builder.user(c.username.clone(), c.password.clone());
        }
        if let Some(sigv4) = &config.sigv4 {
            builder = builder.authenticator_provider(std::sync::Arc::new(
                sigv4::SigV4Authenticator::new(sigv4.clone()),
            ));
        }
        if let Some(tls) = &config.tls {
            builder = with_tls(builder, tls, &config.nodes)?;
        }
        builder.build().await.map_err(|e| error::new_session(&e))
    }

    async fn put_one(&self, f: &Fragment) -> Result<(), StoreError> {
        let context = || format!("writing the fragment of {} on {}", f.series, f.day);
        let mut builder = EnvelopeBuilder::new(envelope::MAX_ENVELOPE_BYTES);
        builder
            .try_push(f)
            .map_err(|e| StoreError::permanent(context(), e))?;
        let blob = builder.finish();
        let line = i64::try_from(f.line).map_err(|_| {
            StoreError::refused(format!(
                "{}: line {} does not fit a CQL bigint",
                context(),
                f.line
            ))
        })?;
        let values = (
            f.series.as_str(),
            f.day.month_bucket(),
            cql_date(f.day),
            f.version,
            &*f.source,
            line,
            f.total(),
            blob,
            i32::from(f.interval_minutes),
            f.unit.as_str(),
            i32::from(f.quality.0),
        );
        self.session
            .execute_unpaged(&self.insert, values)
            .await
            .map(|_| ())
            .map_err(|e| error::execution(&context(), &e))
    }

    /// Writes the series this process has not indexed yet to the series table (after their
    /// fragments, so a listed meter has data). A failure fails the batch, which is retried.
    async fn index_series<'a>(
        &self,
        series: impl Iterator<Item = &'a SeriesId>,
    ) -> Result<(), StoreError> {
        let new: Vec<SeriesId> = {
            let known = self.known.lock().unwrap_or_else(|p| p.into_inner());
            let mut new: Vec<SeriesId> = series.filter(|s| !known.contains(*s)).cloned().collect();
            new.sort_unstable();
            new.dedup();
            new
        };
        futures_util::stream::iter(new.iter().map(Ok))
            .try_for_each_concurrent(self.concurrency, |s| async move {
                self.session
                    .execute_unpaged(
                        &self.insert_series,
                        (schema::initial(s.as_str()), s.as_str()),
                    )
                    .await
                    .map(|_| ())
                    .map_err(|e| error::execution(&format!("indexing series {s}"), &e))
            })
            .await?;
        let mut known = self.known.lock().unwrap_or_else(|p| p.into_inner());
        if known.len() + new.len() > KNOWN_SERIES {
            known.clear();
        }
        known.extend(new);
        Ok(())
    }

    /// The fragments of one month partition whose day lies in `from..=to`, each checked
    /// against its row's key.
    async fn read_month(
        &self,
        series: &SeriesId,
        month: i32,
        from: Day,
        to: Day,
        out: &mut Vec<Fragment>,
    ) -> Result<(), StoreError> {
        let context = || format!("reading fragments of {series} in {month}");
        let pager = self
            .session
            .execute_iter(self.select.clone(), (series.as_str(), month))
            .await
            .map_err(|e| error::pager(&context(), &e))?;
        let mut rows = pager.rows_stream::<Row>().map_err(|e| {
            StoreError::permanent(
                format!(
                    "{}; the table's columns differ from what this build expects (created by another meterflow version?)",
                    context()
                ),
                e,
            )
        })?;
        while let Some(row) = rows.next().await {
            let (date, version, source, line, total, blob) =
                row.map_err(|e| error::next_row(&context(), &e))?;
            let day = day_of(date);
            if day < from.days() || day > to.days() {
                continue;
            }
            let corrupt = |why: String| {
                StoreError::refused(format!(
                    "{}: the row ({day} days, version {version}, {source}, line {line}) is corrupt: {why}; rewrite it by ingesting its source again",
                    context()
                ))
            };
            let mut decoded = envelope::decode(&blob).map_err(|e| corrupt(e.to_string()))?;
            if decoded.len() != 1 {
                return Err(corrupt(format!(
                    "its blob holds {} fragments",
                    decoded.len()
                )));
            }
            let f = decoded.remove(0);
            let key_matches = f.series == *series
                && f.day.days() == day
                && f.version == version
                && *f.source == *source
                && i64::try_from(f.line) == Ok(line);
            if !key_matches {
                return Err(corrupt(format!(
                    "its blob is the fragment of {} on {} (version {}, {}, line {})",
                    f.series, f.day, f.version, f.source, f.line
                )));
            }
            if f.total() != total {
                return Err(corrupt(format!(
                    "its total column says {total}, its slots sum to {}",
                    f.total()
                )));
            }
            out.push(f);
        }
        Ok(())
    }
}

#[cfg(feature = "keyspaces")]
fn with_tls(
    builder: SessionBuilder,
    tls: &TlsConfig,
    nodes: &[String],
) -> Result<SessionBuilder, StoreError> {
    Ok(builder.tls_context(Some(tls::client_config(tls, nodes)?)))
}

#[cfg(not(feature = "keyspaces"))]
fn with_tls(_: SessionBuilder, _: &TlsConfig, _: &[String]) -> Result<SessionBuilder, StoreError> {
    Err(StoreError::refused(
        "TLS was asked for, but this build of meterflow-store-cql lacks the `keyspaces` feature: rebuild with it, or turn METERFLOW_CQL_TLS off",
    ))
}

/// Creates the keyspace (SimpleStrategy, `replication_factor` copies) and the table if they
/// do not exist. For development clusters only: on AWS, CloudFormation owns the schema
/// (Keyspaces creates tables asynchronously and has no SimpleStrategy).
pub async fn create_schema(
    session: &Session,
    keyspace: &str,
    replication_factor: u32,
) -> Result<(), StoreError> {
    // The keyspace name is spliced into the text: only accept what `CqlConfig` would.
    if CqlConfig::from_url(&format!("cql://localhost/{keyspace}")).is_err() {
        return Err(StoreError::refused(
            config::ConfigError::BadKeyspace(keyspace.to_string()).to_string(),
        ));
    }
    let statements = [format!(
            "CREATE KEYSPACE IF NOT EXISTS {keyspace} WITH REPLICATION = {{'class': 'SimpleStrategy', 'replication_factor': {replication_factor}}}"
        ),
    ]
    .into_iter()
    .chain(schema::TABLES.iter().map(|t| t.create(keyspace)));
    for cql in statements {
        session
            .query_unpaged(cql.as_str(), &[])
            .await
            .map_err(|e| error::execution(&format!("creating the schema ({cql})"), &e))?;
    }
    Ok(())
}

impl Store for CqlStore {
    /// One INSERT per fragment, at most `concurrency` in flight. Stops at the first failure:
    /// the caller retries the whole batch, which is safe because every write is idempotent.
    async fn put(&self, fragments: Vec<Fragment>) -> Result<(), StoreError> {
        futures_util::stream::iter(fragments.iter().map(Ok))
            .try_for_each_concurrent(self.concurrency, |f| self.put_one(f))
            .await?;
        self.index_series(fragments.iter().map(|f| &f.series)).await
    }

    /// One range read per partition visited: the prefix's initial, or (no prefix) each
    /// possible initial in order until `limit` ids are found. The statement is written out
    /// rather than prepared (the prefix holds only id characters, so it cannot break out of
    /// its quotes): the in-process test server does not bind range markers. The range is
    /// checked here too, for the same reason.
    async fn series(&self, prefix: &str, limit: usize) -> Result<Vec<SeriesId>, StoreError> {
        if !SeriesId::could_start(prefix) {
            return Ok(Vec::new());
        }
        let initials: Vec<&str> = match schema::initial(prefix) {
            "" => (0..schema::INITIALS.len())
                .map(|i| &schema::INITIALS[i..=i])
                .collect(),
            one => vec![one],
        };
        let mut out = Vec::new();
        for initial in initials {
            if out.len() >= limit {
                break;
            }
            let context = || format!("listing series starting with `{prefix}`");
            let cql = format!(
                "SELECT series FROM {}.{} WHERE initial = '{initial}' AND series >= '{prefix}' AND series < '{}'",
                self.keyspace,
                SERIES.name,
                SeriesId::prefix_end(prefix)
            );
            let mut statement = scylla::statement::unprepared::Statement::new(cql);
            statement.set_page_size(LIST_PAGE);
            statement.set_consistency(Consistency::LocalQuorum);
            let pager = self
                .session
                .query_iter(statement, ())
                .await
                .map_err(|e| error::pager(&context(), &e))?;
            let mut rows = pager
                .rows_stream::<(String,)>()
                .map_err(|e| StoreError::permanent(context(), e))?;
            while out.len() < limit {
                let Some(row) = rows.next().await else { break };
                let (id,) = row.map_err(|e| error::next_row(&context(), &e))?;
                if !id.starts_with(prefix) {
                    continue;
                }
                out.push(SeriesId::parse(id.as_bytes()).map_err(|e| {
                    StoreError::permanent(
                        format!("{}: a stored id `{id}` is invalid", context()),
                        e,
                    )
                })?);
            }
        }
        Ok(out)
    }

    async fn fragments(
        &self,
        series: &SeriesId,
        from: Day,
        to: Day,
    ) -> Result<Vec<Fragment>, StoreError> {
        // The months' queries in flight together (a year is 12 round trips to Keyspaces, not
        // 12 in a row), results kept in month order.
        let months: Vec<Vec<Fragment>> = futures_util::stream::iter(month_buckets(from, to))
            .map(|month| async move {
                let mut out = Vec::new();
                self.read_month(series, month, from, to, &mut out).await?;
                Ok::<_, StoreError>(out)
            })
            .buffered(MONTHS_IN_FLIGHT)
            .try_collect()
            .await?;
        Ok(months.into_iter().flatten().collect())
    }
}

/// Month queries of one range read in flight at once: a year's in one wave.
const MONTHS_IN_FLIGHT: usize = 12;

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn dates_map_to_cql_and_back() {
        for s in ["1970-01-01", "1900-01-01", "2999-12-31", "2019-02-28"] {
            let d = Day::parse_iso(s).expect("day");
            assert_eq!(day_of(cql_date(d)), d.days(), "{s}");
        }
        assert_eq!(
            cql_date(Day::parse_iso("1970-01-01").expect("day")).0,
            1 << 31
        );
        assert_eq!(
            cql_date(Day::parse_iso("1969-12-31").expect("day")).0,
            (1 << 31) - 1
        );
    }
}
