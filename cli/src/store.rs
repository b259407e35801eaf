//! The store `--store` names: one string for either backend (a SQLite file path, or a CQL
//! cluster as `cql://host:port/keyspace[?settings]`), so switching backends is changing one
//! value, in a flag or in `METERFLOW_STORE`.

use anyhow::{Context, Result};
use meterflow_store_cql::AnyStore;

/// Opens (a SQLite file: creates) the store `spec` names.
pub async fn open(spec: &str) -> Result<AnyStore> {
    if !AnyStore::is_cql(spec) {
        // The store's error names the file and says what to check.
        return Ok(AnyStore::open(spec).await?);
    }
    AnyStore::open(spec).await.with_context(|| {
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
