//! [`PostgresStore`]: runs, journals and sessions in PostgreSQL, shared by many processes on
//! many machines.
//!
//! A run is held under a lease (owner, epoch, expiry). Liveness is the lease's expiry, kept
//! by the database's clock: a driver renews it with every write (and a [`Worker`](crate::Worker)
//! with heartbeats); a run whose lease ran out can be claimed by anyone, and the claim raises
//! the epoch. Every journal write and step commit checks owner and epoch in the same
//! transaction as the write, so a driver that lost its run (paused, partitioned, slow) gets
//! [`StoreErrorKind::Fenced`] and none of its late writes land. On the machine that holds a
//! lease, a driver whose process is gone is known at once (its process id), as with SQLite.
//!
//! The schema migrates itself ([`POSTGRES_SCHEMA_VERSION`]); the queue of runs for workers
//! is in [`queue`](self::queue). This module never keeps a connection string in its errors
//! or its `Debug` output (it may hold a password).

mod queue;
mod schema;

use std::str::FromStr;
use std::sync::Arc;
use std::time::Duration;

use crate::common::{corrupt, i64_of, joinable, memory_error, process_alive, to_json, usize_of};
use agent_core::durable::{
    JournalEntry, Lease, NewRun, RunEnd, RunInfo, RunQuery, RunStatus, RunStore, SessionInfo, Step,
    StoreError, StoreErrorKind, StoredRun,
};
use agent_core::{Memory, MemoryError, Message, async_trait};
use deadpool_postgres::{Manager, ManagerConfig, Pool, RecyclingMethod, Runtime};
use tokio_postgres::{NoTls, Row};

pub use queue::{Claimed, Job};
pub use schema::POSTGRES_SCHEMA_VERSION;

/// The database's clock, in milliseconds since the Unix epoch: every lease is measured by
/// it, so machines with skewed clocks agree on when a lease ends.
const NOW_MS: &str = "(EXTRACT(EPOCH FROM clock_timestamp()) * 1000)::BIGINT";

/// Runs, their journals and memory sessions in a PostgreSQL schema (see the module docs).
///
/// ```no_run
/// # async fn example() -> Result<(), agent_store::StoreError> {
/// use std::sync::Arc;
/// use agent_store::PostgresStore;
/// let store = PostgresStore::builder("postgres://postgres@127.0.0.1:5432/app")
///     .schema("agents")
///     .connect()
///     .await?;
/// let agent = agent_core::LlmAgent::builder(Arc::new(agent_core::testing::ScriptedModel::new()))
///     .store(Arc::new(store))
///     .build();
/// # Ok(()) }
/// ```
#[derive(Clone)]
pub struct PostgresStore {
    inner: Arc<Inner>,
}

struct Inner {
    pool: Pool,
    schema: String,
    lease: Duration,
    /// This machine (its boot): owners recorded with it can be checked by process id.
    host: Option<String>,
}

impl std::fmt::Debug for PostgresStore {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("PostgresStore")
            .field("schema", &self.inner.schema)
            .field("lease", &self.inner.lease)
            .finish_non_exhaustive()
    }
}

/// Connects a [`PostgresStore`]: [`PostgresStore::builder`].
#[derive(Clone)]
#[must_use]
pub struct PostgresStoreBuilder {
    url: String,
    schema: String,
    lease: Duration,
    max_connections: usize,
    connect_timeout: Duration,
}

impl std::fmt::Debug for PostgresStoreBuilder {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("PostgresStoreBuilder")
            .field("schema", &self.schema)
            .field("lease", &self.lease)
            .field("max_connections", &self.max_connections)
            .finish_non_exhaustive()
    }
}

impl PostgresStoreBuilder {
    /// The PostgreSQL schema the store's tables live in (default `agent_store`; created if
    /// missing): letters, digits and `_`.
    pub fn schema(mut self, schema: impl Into<String>) -> Self {
        self.schema = schema.into();
        self
    }

    /// How long a lease lasts without a write or a heartbeat (default 30 s) for runs this
    /// store creates or claims; a driver silent longer loses its run to the next claimer.
    pub fn lease(mut self, lease: Duration) -> Self {
        self.lease = lease;
        self
    }

    /// The most connections the pool opens (default 16).
    pub fn max_connections(mut self, n: usize) -> Self {
        self.max_connections = n.max(1);
        self
    }

    /// How long connecting may take before it fails (default 10 s).
    pub fn connect_timeout(mut self, timeout: Duration) -> Self {
        self.connect_timeout = timeout;
        self
    }

    /// Connects and migrates the schema. Fails with [`StoreErrorKind::Invalid`] for a URL
    /// that is not a PostgreSQL connection string or a bad schema name,
    /// [`StoreErrorKind::Unavailable`] when the server cannot be reached or refuses (the
    /// message says why: authentication, a missing database, a missing permission), and
    /// [`StoreErrorKind::NewerFormat`] for a schema a newer version migrated.
    pub async fn connect(self) -> Result<PostgresStore, StoreError> {
        valid_schema_name(&self.schema)?;
        let mut config = tokio_postgres::Config::from_str(&self.url).map_err(|e| {
            StoreError::new(
                StoreErrorKind::Invalid,
                format!(
                    "the database URL is not a PostgreSQL connection string \
                     (postgres://user@host:port/database): {e}"
                ),
            )
        })?;
        config.options(format!("-c search_path={}", self.schema));
        config.connect_timeout(self.connect_timeout);
        let manager = Manager::from_config(
            config,
            NoTls,
            ManagerConfig {
                recycling_method: RecyclingMethod::Fast,
            },
        );
        let pool = Pool::builder(manager)
            .max_size(self.max_connections)
            .runtime(Runtime::Tokio1)
            .wait_timeout(Some(self.connect_timeout.saturating_mul(3)))
            .create_timeout(Some(self.connect_timeout))
            .build()
            .map_err(|e| {
                StoreError::new(
                    StoreErrorKind::Invalid,
                    format!("the connection pool cannot be built: {e}"),
                )
            })?;
        let store = PostgresStore {
            inner: Arc::new(Inner {
                pool,
                schema: self.schema,
                lease: self.lease,
                host: host_id(),
            }),
        };
        let mut client = store.client().await?;
        schema::migrate(&mut client, &store.inner.schema).await?;
        Ok(store)
    }
}

impl PostgresStore {
    /// A builder for a store at this `postgres://` URL.
    pub fn builder(url: impl Into<String>) -> PostgresStoreBuilder {
        PostgresStoreBuilder {
            url: url.into(),
            schema: "agent_store".into(),
            lease: Duration::from_secs(30),
            max_connections: 16,
            connect_timeout: Duration::from_secs(10),
        }
    }

    /// The schema its tables live in.
    pub fn schema(&self) -> &str {
        &self.inner.schema
    }

    /// The lease length of runs it creates or claims.
    pub fn lease(&self) -> Duration {
        self.inner.lease
    }

    /// A connection from the pool; one whose server went away (a restart, a dropped
    /// network) is thrown out, not handed on.
    async fn client(&self) -> Result<deadpool_postgres::Client, StoreError> {
        loop {
            let client = self.inner.pool.get().await.map_err(pool_error)?;
            if !client.is_closed() {
                return Ok(client);
            }
            drop(deadpool_postgres::Object::take(client));
        }
    }

    fn lease_ms(&self) -> i64 {
        millis(self.inner.lease)
    }

    /// Whether the holder of a run may still be driving it: its lease has not run out and,
    /// when it was taken on this machine by a process that is gone, it is not held.
    fn held(&self, row: &Row) -> bool {
        let owner: Option<String> = row.get("owner");
        let Some(owner) = owner else {
            return false;
        };
        if !row.get::<_, bool>("live") {
            return false;
        }
        let host: Option<String> = row.get("owner_host");
        if host.is_some()
            && host == self.inner.host
            && let Some(pid) = Lease::owner_pid(&owner)
        {
            return process_alive(pid);
        }
        true
    }
}

/// This machine's boot (Linux: `boot_id`, which also changes at a reboot, when process
/// ids start over); `None` elsewhere, where liveness is the lease's expiry alone.
fn host_id() -> Option<String> {
    std::fs::read_to_string("/proc/sys/kernel/random/boot_id")
        .ok()
        .map(|id| id.trim().to_owned())
        .filter(|id| !id.is_empty())
}

pub(crate) fn valid_schema_name(schema: &str) -> Result<(), StoreError> {
    let mut chars = schema.chars();
    let ok = chars
        .next()
        .is_some_and(|c| c.is_ascii_lowercase() || c == '_')
        && chars.all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '_')
        && schema.len() <= 63;
    if ok {
        Ok(())
    } else {
        Err(StoreError::new(
            StoreErrorKind::Invalid,
            format!(
                "`{schema}` is not a schema name this store uses: lower-case letters, digits \
                 and `_`, starting with a letter or `_`, at most 63 characters"
            ),
        ))
    }
}

/// A database error, typed: the server's own message (which never holds the connection
/// string), or the connection's failure.
pub(crate) fn db(e: tokio_postgres::Error) -> StoreError {
    let message = match e.as_db_error() {
        Some(server)
            if server.code() == &tokio_postgres::error::SqlState::INSUFFICIENT_PRIVILEGE =>
        {
            format!(
                "the run store's database user lacks a permission: {} (grant it, or use a \
                 schema the user owns)",
                server.message()
            )
        }
        Some(server) => format!(
            "the run store's database refused a statement: {} ({})",
            server.message(),
            server.code().code()
        ),
        None => format!("the run store's database connection failed: {e}"),
    };
    StoreError::new(StoreErrorKind::Unavailable, message).with_source(e)
}

fn pool_error(e: deadpool_postgres::PoolError) -> StoreError {
    let message = match &e {
        deadpool_postgres::PoolError::Backend(inner) => {
            return StoreError::new(
                StoreErrorKind::Unavailable,
                format!(
                    "cannot connect to the run store's database: {}",
                    db_text(inner)
                ),
            );
        }
        deadpool_postgres::PoolError::Timeout(_) => {
            "cannot connect to the run store's database in time (is the server up, and the \
             pool large enough?)"
                .to_owned()
        }
        other => format!("the run store's connection pool failed: {other}"),
    };
    StoreError::new(StoreErrorKind::Unavailable, message).with_source(e)
}

fn db_text(e: &tokio_postgres::Error) -> String {
    match e.as_db_error() {
        Some(server) => server.message().to_owned(),
        None => match std::error::Error::source(e) {
            Some(cause) => format!("{e}: {cause}"),
            None => e.to_string(),
        },
    }
}

fn millis(d: Duration) -> i64 {
    i64::try_from(d.as_millis()).unwrap_or(i64::MAX)
}

fn i64_of_u64(n: u64) -> i64 {
    i64::try_from(n).unwrap_or(i64::MAX)
}

/// The columns of a run, as read for listing, loading and claiming.
const RUN_COLUMNS: &str = "run_id, agent, session, input, status, created_ms, updated_ms, step, \
     message_count, run_end, new_from, control, owner, owner_host, epoch, kind, \
     (lease_until_ms IS NOT NULL AND lease_until_ms > (EXTRACT(EPOCH FROM clock_timestamp()) \
     * 1000)::BIGINT) AS live";

fn run_info(row: &Row) -> Result<RunInfo, StoreError> {
    let run_id: String = row.get("run_id");
    let status: String = row.get("status");
    let status =
        RunStatus::parse(&status).ok_or_else(|| corrupt(&run_id, "its status", &status))?;
    let end = match row.get::<_, Option<String>>("run_end") {
        Some(text) => Some(
            serde_json::from_str::<RunEnd>(&text).map_err(|e| corrupt(&run_id, "its end", e))?,
        ),
        None => None,
    };
    Ok(RunInfo {
        agent: row.get("agent"),
        session: row.get("session"),
        input: row.get("input"),
        status,
        created_ms: row.get("created_ms"),
        updated_ms: row.get("updated_ms"),
        steps: u64::try_from(row.get::<_, i64>("step")).unwrap_or(0),
        message_count: usize_of(row.get("message_count")),
        end,
        run_id,
    })
}

/// A run's row (`lock`: `" FOR UPDATE"` to hold it until the transaction ends, or `""`).
async fn find_run(
    tx: &deadpool_postgres::Transaction<'_>,
    run_id: &str,
    lock: &str,
) -> Result<Row, StoreError> {
    let statement = tx
        .prepare_cached(&format!(
            "SELECT {RUN_COLUMNS} FROM runs WHERE run_id = $1 AND kind <> 'memory'{lock}"
        ))
        .await
        .map_err(db)?;
    tx.query_opt(&statement, &[&run_id])
        .await
        .map_err(db)?
        .ok_or_else(|| StoreError::not_found(run_id))
}

/// The run with its messages and the journal written after its last step.
async fn load_full(
    tx: &deadpool_postgres::Transaction<'_>,
    row: &Row,
) -> Result<StoredRun, StoreError> {
    let info = run_info(row)?;
    let run_id = info.run_id.clone();
    let statement = tx
        .prepare_cached("SELECT seq, body FROM messages WHERE run_id = $1 ORDER BY seq")
        .await
        .map_err(db)?;
    let rows = tx.query(&statement, &[&run_id]).await.map_err(db)?;
    let mut messages = Vec::with_capacity(rows.len());
    for r in rows {
        let seq: i64 = r.get(0);
        if usize_of(seq) != messages.len() {
            return Err(corrupt(
                &run_id,
                &format!("message {}", messages.len()),
                "missing",
            ));
        }
        let body: &str = r.get(1);
        messages.push(
            serde_json::from_str::<Message>(body)
                .map_err(|e| corrupt(&run_id, &format!("message {seq}"), e))?,
        );
    }
    if messages.len() != info.message_count {
        return Err(corrupt(
            &run_id,
            "its messages",
            format!("{} stored, {} expected", messages.len(), info.message_count),
        ));
    }
    let statement = tx
        .prepare_cached(
            "SELECT seq, body FROM journal WHERE run_id = $1 AND step = $2 ORDER BY seq",
        )
        .await
        .map_err(db)?;
    let rows = tx
        .query(&statement, &[&run_id, &i64_of_u64(info.steps)])
        .await
        .map_err(db)?;
    let mut journal = Vec::with_capacity(rows.len());
    for r in rows {
        let seq: i64 = r.get(0);
        let body: &str = r.get(1);
        journal.push(
            serde_json::from_str::<JournalEntry>(body)
                .map_err(|e| corrupt(&run_id, &format!("journal record {seq}"), e))?,
        );
    }
    Ok(StoredRun {
        control: row.get("control"),
        new_from: usize_of(row.get("new_from")),
        messages,
        journal,
        info,
    })
}

/// Checks that `lease` still holds the run and renews it, in the caller's transaction (the
/// row stays locked until it ends); returns the run's last step and message count.
async fn check_lease(
    tx: &deadpool_postgres::Transaction<'_>,
    run_id: &str,
    lease: &Lease,
    default_lease_ms: i64,
) -> Result<(i64, i64), StoreError> {
    let statement = tx
        .prepare_cached(&format!(
            "UPDATE runs SET lease_until_ms = {NOW_MS} + COALESCE(lease_ms, $4), \
             updated_ms = {NOW_MS} \
             WHERE run_id = $1 AND owner = $2 AND epoch = $3 AND kind = 'run' \
             RETURNING step, message_count"
        ))
        .await
        .map_err(db)?;
    let row = tx
        .query_opt(
            &statement,
            &[
                &run_id,
                &lease.owner,
                &i64_of_u64(lease.epoch),
                &default_lease_ms,
            ],
        )
        .await
        .map_err(db)?;
    if let Some(row) = row {
        return Ok((row.get(0), row.get(1)));
    }
    let exists = tx
        .query_opt(
            "SELECT 1 FROM runs WHERE run_id = $1 AND kind <> 'memory'",
            &[&run_id],
        )
        .await
        .map_err(db)?
        .is_some();
    Err(if exists {
        fenced(run_id)
    } else {
        StoreError::not_found(run_id)
    })
}

fn fenced(run_id: &str) -> StoreError {
    StoreError::new(
        StoreErrorKind::Fenced,
        format!(
            "run `{run_id}` is no longer held by this driver (another one claimed it, or it \
             ended or paused): this write was refused and the run goes on there"
        ),
    )
}

async fn insert_messages(
    tx: &deadpool_postgres::Transaction<'_>,
    run_id: &str,
    from: usize,
    bodies: &[String],
) -> Result<(), StoreError> {
    if bodies.is_empty() {
        return Ok(());
    }
    let seqs: Vec<i64> = (0..bodies.len()).map(|i| i64_of(from + i)).collect();
    let statement = tx
        .prepare_cached(
            "INSERT INTO messages (run_id, seq, body) \
             SELECT $1, s, b FROM UNNEST($2::BIGINT[], $3::TEXT[]) AS t (s, b)",
        )
        .await
        .map_err(db)?;
    tx.execute(&statement, &[&run_id, &seqs, &bodies])
        .await
        .map_err(db)?;
    Ok(())
}

async fn next_session_seq(
    tx: &deadpool_postgres::Transaction<'_>,
    session: &str,
) -> Result<i64, StoreError> {
    let statement = tx
        .prepare_cached(
            "INSERT INTO sessions (session, last_seq) VALUES ($1, 1) ON CONFLICT (session) \
             DO UPDATE SET last_seq = sessions.last_seq + 1 RETURNING last_seq",
        )
        .await
        .map_err(db)?;
    Ok(tx
        .query_one(&statement, &[&session])
        .await
        .map_err(db)?
        .get(0))
}

fn bodies(messages: &[Message]) -> Result<Vec<String>, StoreError> {
    messages.iter().map(|m| to_json(m, "a message")).collect()
}

#[async_trait]
impl RunStore for PostgresStore {
    async fn create_run(&self, run: NewRun<'_>) -> Result<Lease, StoreError> {
        let bodies = bodies(run.messages)?;
        let mut client = self.client().await?;
        let tx = client.transaction().await.map_err(db)?;
        let count = i64_of(bodies.len());
        let new_from = i64_of(run.new_from);
        let lease_ms = self.lease_ms();
        let statement = tx
            .prepare_cached(&format!(
                "INSERT INTO runs (run_id, kind, agent, session, input, status, created_ms, \
                 updated_ms, step, message_count, new_from, control, owner, owner_host, epoch, \
                 lease_ms, lease_until_ms) VALUES ($1, 'run', $2, $3, $4, 'running', {NOW_MS}, \
                 {NOW_MS}, 0, $5, $6, $7, $8, $9, 1, $10, {NOW_MS} + $10) \
                 ON CONFLICT (run_id) DO NOTHING"
            ))
            .await
            .map_err(db)?;
        let inserted = tx
            .execute(
                &statement,
                &[
                    &run.run_id,
                    &run.agent,
                    &run.session,
                    &run.input,
                    &count,
                    &new_from,
                    &run.control,
                    &run.owner,
                    &self.inner.host,
                    &lease_ms,
                ],
            )
            .await
            .map_err(db)?;
        let epoch = if inserted == 1 {
            1
        } else {
            // A run queued for a worker starts under the worker's claim, by that owner.
            let started = tx
                .query_opt(
                    &format!(
                        "UPDATE runs SET kind = 'run', agent = $2, session = $3, input = $4, \
                         message_count = $5, new_from = $6, control = $7, updated_ms = {NOW_MS}, \
                         lease_until_ms = {NOW_MS} + COALESCE(lease_ms, $9) \
                         WHERE run_id = $1 AND kind = 'queued' AND owner = $8 RETURNING epoch"
                    ),
                    &[
                        &run.run_id,
                        &run.agent,
                        &run.session,
                        &run.input,
                        &count,
                        &new_from,
                        &run.control,
                        &run.owner,
                        &lease_ms,
                    ],
                )
                .await
                .map_err(db)?;
            match started {
                Some(row) => row.get::<_, i64>(0),
                None => {
                    let queued = tx
                        .query_opt(
                            "SELECT 1 FROM runs WHERE run_id = $1 AND kind = 'queued'",
                            &[&run.run_id],
                        )
                        .await
                        .map_err(db)?
                        .is_some();
                    return Err(if queued {
                        fenced(run.run_id)
                    } else {
                        StoreError::new(
                            StoreErrorKind::Invalid,
                            format!("a run with the id `{}` is already in the store", run.run_id),
                        )
                    });
                }
            }
        };
        insert_messages(&tx, run.run_id, 0, &bodies).await?;
        tx.commit().await.map_err(db)?;
        Ok(Lease {
            owner: run.owner.to_owned(),
            epoch: u64::try_from(epoch).unwrap_or(0),
        })
    }

    async fn claim_run(&self, run_id: &str, owner: &str) -> Result<(StoredRun, Lease), StoreError> {
        let mut client = self.client().await?;
        let tx = client.transaction().await.map_err(db)?;
        let row = find_run(&tx, run_id, " FOR UPDATE").await?;
        let info = run_info(&row)?;
        if info.status.is_final() {
            return Err(StoreError::new(
                StoreErrorKind::Finished,
                format!(
                    "run `{run_id}` is over ({}): there is nothing to resume; load it to read its \
                     result",
                    info.status
                ),
            ));
        }
        if row.get::<_, &str>("kind") == "queued" {
            return Err(StoreError::new(
                StoreErrorKind::Invalid,
                format!(
                    "run `{run_id}` is queued and has not started: a worker starts it (there is \
                     nothing to resume yet)"
                ),
            ));
        }
        let holder: Option<String> = row.get("owner");
        if holder.as_deref() != Some(owner) && self.held(&row) {
            return Err(StoreError::new(
                StoreErrorKind::Busy,
                format!(
                    "run `{run_id}` is being driven by another live driver ({}): wait for it to \
                     finish or pause, or for its lease to run out",
                    holder.unwrap_or_default()
                ),
            ));
        }
        let epoch: i64 = tx
            .query_one(
                &format!(
                    "UPDATE runs SET owner = $2, owner_host = $3, epoch = epoch + 1, \
                     lease_ms = COALESCE(CASE WHEN owner = $2 THEN lease_ms END, $4), \
                     lease_until_ms = {NOW_MS} + COALESCE(CASE WHEN owner = $2 THEN lease_ms \
                     END, $4), updated_ms = {NOW_MS} WHERE run_id = $1 RETURNING epoch"
                ),
                &[&run_id, &owner, &self.inner.host, &self.lease_ms()],
            )
            .await
            .map_err(db)?
            .get(0);
        let stored = load_full(&tx, &row).await?;
        tx.commit().await.map_err(db)?;
        Ok((
            stored,
            Lease {
                owner: owner.to_owned(),
                epoch: u64::try_from(epoch).unwrap_or(0),
            },
        ))
    }

    async fn journal(
        &self,
        run_id: &str,
        lease: &Lease,
        entry: &JournalEntry,
    ) -> Result<(), StoreError> {
        let body = to_json(entry, "a journal record")?;
        let (turn, call_id) = entry
            .call_key()
            .map(|(turn, id)| (i64::from(turn), id.to_owned()))
            .unzip();
        let mut client = self.client().await?;
        let tx = client.transaction().await.map_err(db)?;
        let (step, _) = check_lease(&tx, run_id, lease, self.lease_ms()).await?;
        let statement = tx
            .prepare_cached(
                "INSERT INTO journal (run_id, seq, step, kind, turn, call_id, body) VALUES ($1, \
                 (SELECT COALESCE(MAX(seq), 0) + 1 FROM journal WHERE run_id = $1), $2, $3, $4, \
                 $5, $6) ON CONFLICT DO NOTHING",
            )
            .await
            .map_err(db)?;
        tx.execute(
            &statement,
            &[&run_id, &step, &entry.kind(), &turn, &call_id, &body],
        )
        .await
        .map_err(db)?;
        if matches!(entry, JournalEntry::Approvals { .. }) {
            // Decisions posted for a worker are consumed by the very write that records them.
            tx.execute(
                "UPDATE runs SET approvals = NULL WHERE run_id = $1",
                &[&run_id],
            )
            .await
            .map_err(db)?;
        }
        tx.commit().await.map_err(db)
    }

    async fn commit(&self, run_id: &str, lease: &Lease, step: Step<'_>) -> Result<(), StoreError> {
        let bodies = bodies(step.messages)?;
        let end = step.end.map(|e| to_json(e, "a run's end")).transpose()?;
        let session = step.session.filter(|_| step.status == RunStatus::Finished);
        let number = step.step;
        let from = step.messages_from;
        let mut client = self.client().await?;
        let tx = client.transaction().await.map_err(db)?;
        let (stored_step, stored_count) = check_lease(&tx, run_id, lease, self.lease_ms()).await?;
        if usize_of(stored_count) != from
            || u64::try_from(stored_step).ok() != number.checked_sub(1)
        {
            return Err(StoreError::new(
                StoreErrorKind::Invalid,
                format!(
                    "step {number} of run `{run_id}` does not follow the stored one (step \
                     {stored_step}, {stored_count} messages; the commit starts at message {from})"
                ),
            ));
        }
        insert_messages(&tx, run_id, from, &bodies).await?;
        let session_seq = match session {
            Some(session) => Some(next_session_seq(&tx, session).await?),
            None => None,
        };
        // A pause or an end lets go of the run: anyone may resume it next.
        let releases = step.status != RunStatus::Running;
        let statement = tx
            .prepare_cached(
                "UPDATE runs SET step = $1, control = $2, message_count = $3, status = $4, \
                 run_end = COALESCE($5::TEXT, run_end), \
                 owner = CASE WHEN $6::BOOLEAN THEN NULL ELSE owner END, \
                 lease_until_ms = CASE WHEN $6::BOOLEAN THEN NULL ELSE lease_until_ms END, \
                 session_seq = COALESCE($7::BIGINT, session_seq), \
                 session = CASE WHEN $7::BIGINT IS NULL THEN session ELSE $8::TEXT END \
                 WHERE run_id = $9",
            )
            .await
            .map_err(db)?;
        tx.execute(
            &statement,
            &[
                &i64_of_u64(number),
                &step.control,
                &i64_of(from + bodies.len()),
                &step.status.as_str(),
                &end,
                &releases,
                &session_seq,
                &session,
                &run_id,
            ],
        )
        .await
        .map_err(db)?;
        tx.commit().await.map_err(db)
    }

    async fn release(&self, run_id: &str, lease: &Lease) -> Result<(), StoreError> {
        let client = self.client().await?;
        client
            .execute(
                "UPDATE runs SET owner = NULL, lease_until_ms = NULL \
                 WHERE run_id = $1 AND owner = $2 AND epoch = $3",
                &[&run_id, &lease.owner, &i64_of_u64(lease.epoch)],
            )
            .await
            .map_err(db)?;
        Ok(())
    }

    async fn load_run(&self, run_id: &str) -> Result<StoredRun, StoreError> {
        let mut client = self.client().await?;
        let tx = client
            .build_transaction()
            .isolation_level(tokio_postgres::IsolationLevel::RepeatableRead)
            .read_only(true)
            .start()
            .await
            .map_err(db)?;
        let row = find_run(&tx, run_id, "").await?;
        let stored = load_full(&tx, &row).await?;
        tx.commit().await.map_err(db)?;
        Ok(stored)
    }

    async fn list_runs(&self, query: &RunQuery) -> Result<Vec<RunInfo>, StoreError> {
        let client = self.client().await?;
        let before: Option<i64> = match &query.before {
            Some(run_id) => Some(
                client
                    .query_opt(
                        "SELECT id FROM runs WHERE run_id = $1 AND kind <> 'memory'",
                        &[run_id],
                    )
                    .await
                    .map_err(db)?
                    .ok_or_else(|| StoreError::not_found(run_id))?
                    .get(0),
            ),
            None => None,
        };
        let statement = client
            .prepare_cached(&format!(
                "SELECT {RUN_COLUMNS} FROM runs WHERE kind <> 'memory' \
                 AND ($1::TEXT IS NULL OR status = $1) AND ($2::TEXT IS NULL OR session = $2) \
                 AND ($3::BIGINT IS NULL OR id < $3) ORDER BY id DESC LIMIT $4"
            ))
            .await
            .map_err(db)?;
        let rows = client
            .query(
                &statement,
                &[
                    &query.status.map(RunStatus::as_str),
                    &query.session,
                    &before,
                    &i64_of(query.limit),
                ],
            )
            .await
            .map_err(db)?;
        rows.iter().map(run_info).collect()
    }

    async fn delete_run(&self, run_id: &str) -> Result<bool, StoreError> {
        let mut client = self.client().await?;
        let tx = client.transaction().await.map_err(db)?;
        let deleted = tx
            .execute(
                "DELETE FROM runs WHERE run_id = $1 AND kind <> 'memory'",
                &[&run_id],
            )
            .await
            .map_err(db)?;
        if deleted > 0 {
            tx.execute("DELETE FROM messages WHERE run_id = $1", &[&run_id])
                .await
                .map_err(db)?;
            tx.execute("DELETE FROM journal WHERE run_id = $1", &[&run_id])
                .await
                .map_err(db)?;
        }
        tx.commit().await.map_err(db)?;
        Ok(deleted > 0)
    }

    async fn session_info(&self, session: &str) -> Result<SessionInfo, StoreError> {
        let client = self.client().await?;
        let row = client
            .query_one(
                "SELECT COUNT(CASE WHEN kind = 'run' THEN 1 END), \
                 COALESCE(SUM(message_count - new_from), 0)::BIGINT \
                 FROM runs WHERE session = $1 AND session_seq IS NOT NULL",
                &[&session],
            )
            .await
            .map_err(db)?;
        Ok(SessionInfo {
            runs: u64::try_from(row.get::<_, i64>(0)).unwrap_or(0),
            messages: u64::try_from(row.get::<_, i64>(1)).unwrap_or(0),
        })
    }
}

impl PostgresStore {
    async fn load_session(&self, session: &str) -> Result<Vec<Message>, StoreError> {
        let client = self.client().await?;
        let statement = client
            .prepare_cached(
                "SELECT r.run_id, m.seq, m.body FROM runs r \
                 JOIN messages m ON m.run_id = r.run_id AND m.seq >= r.new_from \
                 WHERE r.session = $1 AND r.session_seq IS NOT NULL \
                 ORDER BY r.session_seq, m.seq",
            )
            .await
            .map_err(db)?;
        let rows = client.query(&statement, &[&session]).await.map_err(db)?;
        rows.iter()
            .map(|r| {
                let run_id: &str = r.get(0);
                let seq: i64 = r.get(1);
                serde_json::from_str(r.get(2))
                    .map_err(|e| corrupt(run_id, &format!("message {seq}"), e))
            })
            .collect()
    }

    async fn append_session(&self, session: &str, bodies: Vec<String>) -> Result<(), StoreError> {
        let entry_id = format!(
            "mem_{}",
            agent_core::run::new_run_id().trim_start_matches("run_")
        );
        let mut client = self.client().await?;
        let tx = client.transaction().await.map_err(db)?;
        let seq = next_session_seq(&tx, session).await?;
        tx.execute(
            &format!(
                "INSERT INTO runs (run_id, kind, agent, session, input, status, created_ms, \
                 updated_ms, step, message_count, new_from, control, epoch, session_seq) \
                 VALUES ($1, 'memory', '', $2, '', 'finished', {NOW_MS}, {NOW_MS}, 0, $3, 0, '', \
                 0, $4)"
            ),
            &[&entry_id, &session, &i64_of(bodies.len()), &seq],
        )
        .await
        .map_err(db)?;
        insert_messages(&tx, &entry_id, 0, &bodies).await?;
        tx.commit().await.map_err(db)
    }

    async fn clear_session(&self, session: &str) -> Result<(), StoreError> {
        let mut client = self.client().await?;
        let tx = client.transaction().await.map_err(db)?;
        tx.execute(
            "DELETE FROM messages WHERE run_id IN \
             (SELECT run_id FROM runs WHERE session = $1 AND kind = 'memory')",
            &[&session],
        )
        .await
        .map_err(db)?;
        tx.execute(
            "DELETE FROM runs WHERE session = $1 AND kind = 'memory'",
            &[&session],
        )
        .await
        .map_err(db)?;
        tx.execute(
            "UPDATE runs SET session_seq = NULL WHERE session = $1",
            &[&session],
        )
        .await
        .map_err(db)?;
        tx.commit().await.map_err(db)
    }
}

#[async_trait]
impl Memory for PostgresStore {
    async fn load(&self, session: &str) -> Result<Vec<Message>, MemoryError> {
        self.load_session(session).await.map_err(memory_error)
    }

    /// Appends messages that did not come from a durable run: kept as one finished entry of
    /// the session, refused when they break the history invariant (a call without its
    /// result).
    async fn append(&self, session: &str, messages: &[Message]) -> Result<(), MemoryError> {
        if messages.is_empty() {
            return Ok(());
        }
        joinable(session, messages)?;
        let bodies = bodies(messages).map_err(memory_error)?;
        self.append_session(session, bodies)
            .await
            .map_err(memory_error)
    }

    /// Forgets a session's history. Its runs stay in the store (listed, loadable) until
    /// deleted; they are no longer part of the session.
    async fn clear(&self, session: &str) -> Result<(), MemoryError> {
        self.clear_session(session).await.map_err(memory_error)
    }
}
