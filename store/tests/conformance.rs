//! The store conformance suite on the embedded SQLite store, in memory and in a file.

use meterflow_store::{SqliteStore, Store};
use meterflow_testkit::conformance;

#[tokio::test]
async fn sqlite_in_memory_conforms() {
    conformance::run_all(|| async { SqliteStore::open_in_memory().expect("open") }).await;
}

#[tokio::test]
async fn sqlite_file_conforms_and_persists() {
    let dir = tempfile::tempdir().expect("tempdir");
    let n = std::sync::atomic::AtomicUsize::new(0);
    let path = |i: usize| dir.path().join(format!("store-{i}.db"));
    conformance::run_all(|| {
        let i = n.fetch_add(1, std::sync::atomic::Ordering::SeqCst);
        let p = path(i);
        async move { SqliteStore::open(&p).expect("open") }
    })
    .await;
    // Reopening a file gives back what was written.
    let p = dir.path().join("persist.db");
    let all = conformance::sample();
    SqliteStore::open(&p)
        .expect("open")
        .put(all.clone())
        .await
        .expect("put");
    let again = SqliteStore::open(&p).expect("reopen");
    let got = again
        .fragments(
            &"EE1".parse().unwrap(),
            meterflow_core::Day::parse_iso("2019-01-01").unwrap(),
            meterflow_core::Day::parse_iso("2020-12-31").unwrap(),
        )
        .await
        .expect("read");
    assert_eq!(
        got.len(),
        all.iter().filter(|f| f.series.as_str() == "EE1").count()
    );
}
