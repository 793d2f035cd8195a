//! The PostgreSQL schema and its versioned migrations: applied in order, each once, under
//! an advisory lock so that many workers starting together migrate once. A database
//! migrated by a newer version of this library is refused, never written.

use deadpool_postgres::Client;

use super::{db, valid_schema_name};
use agent_core::durable::{StoreError, StoreErrorKind};

/// The schema version this build writes (the last migration it knows).
pub const POSTGRES_SCHEMA_VERSION: i32 = 1;

/// The migrations, in order: `(version, SQL)`.
const MIGRATIONS: &[(i32, &str)] = &[(
    1,
    "
CREATE TABLE runs (
    id BIGSERIAL PRIMARY KEY,
    run_id TEXT NOT NULL UNIQUE,
    kind TEXT NOT NULL,
    agent TEXT NOT NULL,
    session TEXT,
    input TEXT NOT NULL,
    status TEXT NOT NULL,
    created_ms BIGINT NOT NULL,
    updated_ms BIGINT NOT NULL,
    step BIGINT NOT NULL,
    message_count BIGINT NOT NULL,
    new_from BIGINT NOT NULL,
    control TEXT NOT NULL,
    run_end TEXT,
    owner TEXT,
    owner_host TEXT,
    epoch BIGINT NOT NULL,
    lease_ms BIGINT,
    lease_until_ms BIGINT,
    session_seq BIGINT,
    priority INTEGER NOT NULL DEFAULT 0,
    approvals TEXT
);
CREATE INDEX runs_by_session ON runs (session, session_seq);
CREATE INDEX runs_runnable ON runs (priority DESC, id)
    WHERE kind <> 'memory' AND status IN ('running', 'paused');
CREATE TABLE sessions (session TEXT PRIMARY KEY, last_seq BIGINT NOT NULL);
CREATE TABLE messages (
    run_id TEXT NOT NULL,
    seq BIGINT NOT NULL,
    body TEXT NOT NULL,
    PRIMARY KEY (run_id, seq)
);
CREATE TABLE journal (
    run_id TEXT NOT NULL,
    seq BIGINT NOT NULL,
    step BIGINT NOT NULL,
    kind TEXT NOT NULL,
    turn BIGINT,
    call_id TEXT,
    body TEXT NOT NULL,
    PRIMARY KEY (run_id, seq)
);
CREATE UNIQUE INDEX journal_calls ON journal (run_id, kind, turn, call_id)
    WHERE call_id IS NOT NULL;
",
)];

/// Creates the schema if needed and applies the migrations it lacks.
pub(super) async fn migrate(client: &mut Client, schema: &str) -> Result<(), StoreError> {
    valid_schema_name(schema)?;
    let exists = client
        .query_opt("SELECT 1 FROM pg_namespace WHERE nspname = $1", &[&schema])
        .await
        .map_err(db)?
        .is_some();
    if !exists {
        client
            .batch_execute(&format!("CREATE SCHEMA IF NOT EXISTS {schema}"))
            .await
            .map_err(db)?;
    }
    let tx = client.transaction().await.map_err(db)?;
    tx.execute(
        "SELECT pg_advisory_xact_lock(hashtext('agent_store_migrations.' || $1))",
        &[&schema],
    )
    .await
    .map_err(db)?;
    tx.batch_execute(
        "CREATE TABLE IF NOT EXISTS agent_store_migrations \
         (version INTEGER PRIMARY KEY, applied_at TIMESTAMPTZ NOT NULL DEFAULT now())",
    )
    .await
    .map_err(db)?;
    let current: i32 = tx
        .query_one(
            "SELECT COALESCE(MAX(version), 0) FROM agent_store_migrations",
            &[],
        )
        .await
        .map_err(db)?
        .get(0);
    if current > POSTGRES_SCHEMA_VERSION {
        return Err(StoreError::new(
            StoreErrorKind::NewerFormat,
            format!(
                "the run store in schema `{schema}` is at version {current}, migrated by a newer \
                 version of agent-store; this one knows up to version \
                 {POSTGRES_SCHEMA_VERSION}: upgrade agent-store to use it"
            ),
        ));
    }
    for (version, sql) in MIGRATIONS.iter().filter(|(v, _)| *v > current) {
        tx.batch_execute(sql).await.map_err(db)?;
        tx.execute(
            "INSERT INTO agent_store_migrations (version) VALUES ($1)",
            &[version],
        )
        .await
        .map_err(db)?;
    }
    tx.commit().await.map_err(db)
}
