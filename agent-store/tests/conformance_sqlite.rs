//! The SQLite store passes the conformance suite: each check on a fresh file.

use std::sync::Arc;

use agent_store::SqliteStore;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_sqlite_store_keeps_the_run_store_contract() {
    let dir = tempfile::tempdir().unwrap();
    let counter = std::sync::atomic::AtomicU32::new(0);
    agent_store::conformance::run_all(|| {
        let n = counter.fetch_add(1, std::sync::atomic::Ordering::SeqCst);
        let path = dir.path().join(format!("store-{n}.db"));
        async move { Arc::new(SqliteStore::open(path).unwrap()) }
    })
    .await;
}
