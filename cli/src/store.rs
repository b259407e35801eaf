//! The store `--store` names: one string for either backend (a SQLite file path, or a CQL
//! cluster as `cql://host:port/keyspace[?settings]`), so switching backends is changing one
//! value, in a flag or in `METERFLOW_STORE`.

use anyhow::{Context, Result};
use meterflow_store::StoreError;
use meterflow_store_cql::AnyStore;

/// Opens (a SQLite file: creates) the store `spec` names.
pub async fn open(spec: &str) -> Result<AnyStore> {
    explained(spec, AnyStore::open(spec).await)
}

/// [`open`] for a bulk write (`ingest`): a new SQLite file is loaded through a rollback
/// journal (see `SqliteStore::open_to_load`).
pub async fn open_to_load(spec: &str) -> Result<AnyStore> {
    explained(spec, AnyStore::open_to_load(spec).await)
}

fn explained(spec: &str, opened: Result<AnyStore, StoreError>) -> Result<AnyStore> {
    if !AnyStore::is_cql(spec) {
        // The store's error names the file and says what to check.
        return Ok(opened?);
    }
    opened.with_context(|| {
        format!("cannot open the CQL store {spec} (fix the URL or the cluster, or pass --store PATH for a local file)")
    })
}

/// Opens a store that must already hold data: a missing SQLite file is a mistake (a typo, or
/// no ingest yet), not an empty store to create. `or_else` says how else to go on.
pub async fn open_existing(spec: &str, or_else: &str) -> Result<AnyStore> {
    if !AnyStore::is_cql(spec) && !std::path::Path::new(spec).exists() {
        anyhow::bail!(
            "no store at {spec}: run `meterflow ingest` first, or check --store (or METERFLOW_STORE){or_else}"
        );
    }
    open(spec).await
}
