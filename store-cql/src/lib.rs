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

use std::sync::Arc;

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

/// A fragment store in one keyspace of a CQL cluster.
///
/// Cheap to clone (the session is shared); one per process is enough, the driver keeps a
/// connection pool per node.
#[derive(Clone)]
pub struct CqlStore {
    session: Arc<Session>,
    insert: PreparedStatement,
    select: PreparedStatement,
    concurrency: usize,
}

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
        let mut insert = session.prepare(schema::insert(ks)).await.map_err(|e| {
            error::prepare_error(&format!("preparing the write to {ks}.{TABLE}"), &e)
        })?;
        insert.set_is_idempotent(true);
        insert.set_consistency(Consistency::LocalQuorum);
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
    let statements = [
        format!(
            "CREATE KEYSPACE IF NOT EXISTS {keyspace} WITH REPLICATION = {{'class': 'SimpleStrategy', 'replication_factor': {replication_factor}}}"
        ),
        schema::create_table(keyspace),
    ];
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
            .await
    }

    async fn fragments(
        &self,
        series: &SeriesId,
        from: Day,
        to: Day,
    ) -> Result<Vec<Fragment>, StoreError> {
        let mut out = Vec::new();
        for month in month_buckets(from, to) {
            self.read_month(series, month, from, to, &mut out).await?;
        }
        Ok(out)
    }
}

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
