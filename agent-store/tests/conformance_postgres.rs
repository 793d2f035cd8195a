//! The PostgreSQL store passes the conformance suite: each check on a fresh schema of a
//! database made for this test (skipped without a server, see `support/pg.rs`).

#[path = "support/pg.rs"]
mod pg;

use std::sync::Arc;
use std::sync::atomic::{AtomicU32, Ordering};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_postgres_store_keeps_the_run_store_contract() {
    let Some(db) = pg::TestDb::create("conformance").await else {
        return;
    };
    let counter = AtomicU32::new(0);
    agent_store::conformance::run_all(|| {
        let n = counter.fetch_add(1, Ordering::SeqCst);
        let db = &db;
        async move { Arc::new(db.store(&format!("check_{n}")).await) }
    })
    .await;
    db.drop_db().await;
}
