//! The store a `--store` option or `METERFLOW_STORE` names, whichever backend it is.
//!
//! The CLI and the Lambdas take one string for their store: a CQL URL (`cql://`, `cqls://`)
//! opens the CQL store, anything else is the path of an embedded SQLite file. One enum
//! rather than `dyn Store` because the store trait's futures are not object safe.

use std::path::Path;

use meterflow_core::envelope::ValidRecord;
use meterflow_core::{Day, DayTotal, Fragment, SeriesId};
use meterflow_store::{SqliteStore, Store, StoreError};

use crate::{CqlConfig, CqlStore};

/// Either backend, chosen at run time.
#[derive(Clone)]
pub enum AnyStore {
    Sqlite(SqliteStore),
    /// Boxed: the CQL store holds prepared statements, the SQLite one a pointer.
    Cql(Box<CqlStore>),
}

impl AnyStore {
    /// True when `spec` names a CQL store rather than a file.
    pub fn is_cql(spec: &str) -> bool {
        spec.starts_with("cql://") || spec.starts_with("cqls://")
    }

    /// Opens the store `spec` names: `cql://host[:port][,...]/keyspace[?settings]` (see
    /// [`CqlConfig::from_url`]; credentials from `METERFLOW_CQL_USERNAME`/`_PASSWORD`), or a
    /// SQLite file path, created if missing.
    pub async fn open(spec: &str) -> Result<AnyStore, StoreError> {
        if Self::is_cql(spec) {
            let config = CqlConfig::from_url(spec)
                .and_then(CqlConfig::with_env_credentials)
                .map_err(|e| StoreError::refused(e.to_string()))?;
            return Self::cql(&config).await;
        }
        Ok(AnyStore::Sqlite(SqliteStore::open(Path::new(spec))?))
    }

    /// [`open`](Self::open) for a bulk write (`meterflow ingest`): a SQLite file that holds no
    /// packs yet is loaded through a rollback journal ([`SqliteStore::open_to_load`]). A CQL
    /// store is opened as by `open`.
    pub async fn open_to_load(spec: &str) -> Result<AnyStore, StoreError> {
        if Self::is_cql(spec) {
            return Self::open(spec).await;
        }
        Ok(AnyStore::Sqlite(SqliteStore::open_to_load(Path::new(
            spec,
        ))?))
    }

    /// The store the environment names: `METERFLOW_STORE` (as [`open`](Self::open)) or, when
    /// it is unset, the CQL store of `METERFLOW_CQL_NODES` and its companion variables
    /// ([`CqlConfig::from_env`]), which is how the Lambdas are configured on AWS.
    pub async fn from_env() -> Result<AnyStore, StoreError> {
        match Self::spec_from_env() {
            Some(spec) => Self::open(&spec).await,
            None => Self::cql(&Self::cql_config_from_env()?).await,
        }
    }

    /// `METERFLOW_STORE`, when it is set.
    pub fn spec_from_env() -> Option<String> {
        std::env::var("METERFLOW_STORE")
            .ok()
            .filter(|s| !s.is_empty())
    }

    /// The CQL store's settings from the `METERFLOW_CQL_*` variables, or what to set.
    pub fn cql_config_from_env() -> Result<CqlConfig, StoreError> {
        CqlConfig::from_env().map_err(|e| {
            StoreError::refused(format!(
                "no store configured: set METERFLOW_STORE to a SQLite path or a cql:// URL, or configure the CQL store ({e})"
            ))
        })
    }

    /// Connects to the CQL store `config` describes.
    pub async fn cql(config: &CqlConfig) -> Result<AnyStore, StoreError> {
        Ok(AnyStore::Cql(Box::new(CqlStore::connect(config).await?)))
    }

    /// Which backend, for logs and banners.
    pub fn kind(&self) -> &'static str {
        match self {
            AnyStore::Sqlite(_) => "sqlite",
            AnyStore::Cql(_) => "cql",
        }
    }
}

impl Store for AnyStore {
    async fn put(&self, fragments: Vec<Fragment>) -> Result<(), StoreError> {
        match self {
            AnyStore::Sqlite(s) => s.put(fragments).await,
            AnyStore::Cql(s) => s.put(fragments).await,
        }
    }

    async fn put_record(&self, record: Vec<u8>) -> Result<(), StoreError> {
        match self {
            AnyStore::Sqlite(s) => s.put_record(record).await,
            AnyStore::Cql(s) => s.put_record(record).await,
        }
    }

    async fn put_records(&self, records: Vec<Vec<u8>>) -> Result<(), (usize, StoreError)> {
        match self {
            AnyStore::Sqlite(s) => s.put_records(records).await,
            AnyStore::Cql(s) => s.put_records(records).await,
        }
    }

    async fn put_valid_records(
        &self,
        records: Vec<ValidRecord>,
    ) -> Result<(), (usize, StoreError)> {
        match self {
            AnyStore::Sqlite(s) => s.put_valid_records(records).await,
            AnyStore::Cql(s) => s.put_valid_records(records).await,
        }
    }

    async fn series(&self, prefix: &str, limit: usize) -> Result<Vec<SeriesId>, StoreError> {
        match self {
            AnyStore::Sqlite(s) => s.series(prefix, limit).await,
            AnyStore::Cql(s) => s.series(prefix, limit).await,
        }
    }

    async fn fragments(
        &self,
        series: &SeriesId,
        from: Day,
        to: Day,
    ) -> Result<Vec<Fragment>, StoreError> {
        match self {
            AnyStore::Sqlite(s) => s.fragments(series, from, to).await,
            AnyStore::Cql(s) => s.fragments(series, from, to).await,
        }
    }

    async fn daily_totals(
        &self,
        series: &SeriesId,
        from: Day,
        to: Day,
    ) -> Result<Vec<DayTotal>, StoreError> {
        match self {
            AnyStore::Sqlite(s) => s.daily_totals(series, from, to).await,
            AnyStore::Cql(s) => s.daily_totals(series, from, to).await,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn a_path_opens_sqlite_and_a_bad_url_says_what_is_wrong() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("s.db");
        let store = AnyStore::open(path.to_str().unwrap()).await.unwrap();
        assert_eq!(store.kind(), "sqlite");
        meterflow_testkit::conformance::records_and_fragments_agree(&store).await;
        let err = AnyStore::open("cql://db.example:9042")
            .await
            .err()
            .expect("a URL without keyspace part is refused");
        assert!(err.to_string().contains("cql://host"), "{err}");
    }
}
