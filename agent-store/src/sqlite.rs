//! [`SqliteStore`]: runs, journals and sessions in one SQLite file.
//!
//! WAL mode with `synchronous=FULL`: a commit is on disk when it returns, and a process
//! killed at any moment leaves the file at its last commit. Every write of a run names the
//! lease it is made under and is refused ([`StoreErrorKind::Fenced`]) once another driver has
//! claimed the run. Work runs on tokio's blocking pool, one connection behind a mutex: SQLite
//! has one writer at a time anyway.
//!
//! Sessions cost no copy: a session's history is the runs appended to it, in order (each
//! run's own messages), so a finished run joins its session by taking the next place in it,
//! in the same transaction that ends it.

use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use crate::common::{corrupt, i64_of, joinable, memory_error, process_alive, to_json, usize_of};
use agent_core::durable::{
    JournalEntry, Lease, NewRun, RunEnd, RunInfo, RunQuery, RunStatus, RunStore, SessionInfo, Step,
    StoreError, StoreErrorKind, StoredRun,
};
use agent_core::{Memory, MemoryError, Message, async_trait};
use rusqlite::{Connection, OptionalExtension, Transaction, TransactionBehavior, params};

/// The format this build writes. A file of a newer format is refused, never misread.
pub const FORMAT_VERSION: u32 = 1;

const SCHEMA: &str = "
CREATE TABLE IF NOT EXISTS agent_store_meta (key TEXT PRIMARY KEY, value TEXT NOT NULL);
CREATE TABLE IF NOT EXISTS runs (
    id INTEGER PRIMARY KEY,
    run_id TEXT NOT NULL UNIQUE,
    kind TEXT NOT NULL,
    agent TEXT NOT NULL,
    session TEXT,
    input TEXT NOT NULL,
    status TEXT NOT NULL,
    created_ms INTEGER NOT NULL,
    updated_ms INTEGER NOT NULL,
    step INTEGER NOT NULL,
    message_count INTEGER NOT NULL,
    new_from INTEGER NOT NULL,
    control TEXT NOT NULL,
    run_end TEXT,
    owner TEXT,
    epoch INTEGER NOT NULL,
    lease_until_ms INTEGER,
    session_seq INTEGER
);
CREATE INDEX IF NOT EXISTS runs_by_session ON runs (session, session_seq);
CREATE TABLE IF NOT EXISTS messages (
    run_id TEXT NOT NULL,
    seq INTEGER NOT NULL,
    body TEXT NOT NULL,
    PRIMARY KEY (run_id, seq)
) WITHOUT ROWID;
CREATE TABLE IF NOT EXISTS journal (
    run_id TEXT NOT NULL,
    seq INTEGER NOT NULL,
    step INTEGER NOT NULL,
    kind TEXT NOT NULL,
    turn INTEGER,
    call_id TEXT,
    body TEXT NOT NULL,
    PRIMARY KEY (run_id, seq)
) WITHOUT ROWID;
CREATE UNIQUE INDEX IF NOT EXISTS journal_calls ON journal (run_id, kind, turn, call_id)
    WHERE call_id IS NOT NULL;
";

/// Runs, their journals and memory sessions in one SQLite file (see the module docs).
///
/// ```
/// # tokio::runtime::Builder::new_current_thread().enable_all().build().unwrap().block_on(async {
/// use std::sync::Arc;
/// use agent_core::{LlmAgent, testing::ScriptedModel};
/// use agent_store::SqliteStore;
/// let dir = tempfile::tempdir().unwrap();
/// let store = Arc::new(SqliteStore::open(dir.path().join("runs.db")).unwrap());
/// let agent = LlmAgent::builder(Arc::new(ScriptedModel::new().then_text("Done.")))
///     .store(store.clone())
///     .build()
///     .unwrap();
/// let result = agent.ask("Do it").await.unwrap();
/// let stored = agent_core::durable::RunStore::load_run(&*store, &result.run_id).await.unwrap();
/// assert_eq!(stored.info.status, agent_core::durable::RunStatus::Finished);
/// # });
/// ```
#[derive(Clone)]
pub struct SqliteStore {
    inner: Arc<Inner>,
}

struct Inner {
    conn: Mutex<Connection>,
    path: PathBuf,
    lease: Duration,
}

impl std::fmt::Debug for SqliteStore {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("SqliteStore")
            .field("path", &self.inner.path)
            .finish_non_exhaustive()
    }
}

impl SqliteStore {
    /// Opens (or creates) a store file. Fails with [`StoreErrorKind::NewerFormat`] for a
    /// file written by a newer version, [`StoreErrorKind::Unavailable`] when the file cannot
    /// be opened or is not a SQLite database.
    pub fn open(path: impl AsRef<Path>) -> Result<SqliteStore, StoreError> {
        let path = path.as_ref().to_path_buf();
        let unavailable = |e: rusqlite::Error| {
            StoreError::new(
                StoreErrorKind::Unavailable,
                format!("cannot open the run store `{}`: {e}", path.display()),
            )
            .with_source(e)
        };
        let conn = Connection::open(&path).map_err(unavailable)?;
        conn.busy_timeout(Duration::from_secs(10))
            .map_err(unavailable)?;
        conn.pragma_update(None, "journal_mode", "WAL")
            .map_err(unavailable)?;
        conn.pragma_update(None, "synchronous", "FULL")
            .map_err(unavailable)?;
        conn.execute_batch(SCHEMA).map_err(unavailable)?;
        let format: Option<String> = conn
            .query_row(
                "SELECT value FROM agent_store_meta WHERE key = 'format'",
                [],
                |r| r.get(0),
            )
            .optional()
            .map_err(unavailable)?;
        match format.as_deref().map(str::parse::<u32>) {
            None => {
                conn.execute(
                    "INSERT INTO agent_store_meta (key, value) VALUES ('format', ?1)",
                    [FORMAT_VERSION.to_string()],
                )
                .map_err(unavailable)?;
            }
            Some(Ok(v)) if v <= FORMAT_VERSION => {}
            Some(Ok(v)) => {
                return Err(StoreError::new(
                    StoreErrorKind::NewerFormat,
                    format!(
                        "the run store `{}` has format {v}, written by a newer version of \
                         agent-store; this one reads up to format {FORMAT_VERSION}: upgrade \
                         agent-store to open it",
                        path.display()
                    ),
                ));
            }
            Some(Err(_)) => {
                return Err(StoreError::new(
                    StoreErrorKind::Corrupt,
                    format!(
                        "the run store `{}` has an unreadable format marker",
                        path.display()
                    ),
                ));
            }
        }
        Ok(SqliteStore {
            inner: Arc::new(Inner {
                conn: Mutex::new(conn),
                path,
                lease: Duration::from_secs(60),
            }),
        })
    }

    /// The file.
    pub fn path(&self) -> &Path {
        &self.inner.path
    }

    /// Runs `op` on the connection on the blocking pool.
    async fn with<T: Send + 'static>(
        &self,
        op: impl FnOnce(&mut Connection, Duration) -> Result<T, StoreError> + Send + 'static,
    ) -> Result<T, StoreError> {
        let inner = self.inner.clone();
        tokio::task::spawn_blocking(move || {
            let mut conn = lock(&inner.conn)?;
            op(&mut conn, inner.lease)
        })
        .await
        .map_err(|e| {
            StoreError::new(
                StoreErrorKind::Unavailable,
                format!("a run store task failed: {e}"),
            )
        })?
    }
}

fn lock(conn: &Mutex<Connection>) -> Result<MutexGuard<'_, Connection>, StoreError> {
    // A panic while holding the lock leaves no half-done transaction behind (SQLite rolls it
    // back when the transaction is dropped), so the connection is still good.
    Ok(conn.lock().unwrap_or_else(|poisoned| poisoned.into_inner()))
}

fn db(e: rusqlite::Error) -> StoreError {
    StoreError::new(
        StoreErrorKind::Unavailable,
        format!("the run store failed: {e}"),
    )
    .with_source(e)
}

fn now_ms() -> i64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| i64::try_from(d.as_millis()).unwrap_or(i64::MAX))
}

/// Whether the owner of a lease may still be driving its run: a process on this machine
/// that is alive (an owner name without a process id counts as alive until its lease ends).
fn owner_alive(owner: &str, lease_until_ms: Option<i64>) -> bool {
    match Lease::owner_pid(owner) {
        Some(pid) => process_alive(pid),
        None => lease_until_ms.is_some_and(|until| until > now_ms()),
    }
}

/// The row of a run, as read for listing and loading.
const RUN_COLUMNS: &str = "run_id, agent, session, input, status, created_ms, updated_ms, \
                           step, message_count, run_end, new_from, control, owner, epoch, \
                           lease_until_ms";

struct RunRow {
    info: RunInfo,
    new_from: usize,
    control: String,
    owner: Option<String>,
    epoch: u64,
    lease_until_ms: Option<i64>,
}

fn read_row(row: &rusqlite::Row<'_>) -> rusqlite::Result<(RunRowRaw, String)> {
    Ok((
        RunRowRaw {
            run_id: row.get(0)?,
            agent: row.get(1)?,
            session: row.get(2)?,
            input: row.get(3)?,
            status: row.get(4)?,
            created_ms: row.get(5)?,
            updated_ms: row.get(6)?,
            step: row.get(7)?,
            message_count: row.get(8)?,
            run_end: row.get(9)?,
            new_from: row.get(10)?,
            owner: row.get(12)?,
            epoch: row.get(13)?,
            lease_until_ms: row.get(14)?,
        },
        row.get(11)?,
    ))
}

struct RunRowRaw {
    run_id: String,
    agent: String,
    session: Option<String>,
    input: String,
    status: String,
    created_ms: i64,
    updated_ms: i64,
    step: i64,
    message_count: i64,
    run_end: Option<String>,
    new_from: i64,
    owner: Option<String>,
    epoch: i64,
    lease_until_ms: Option<i64>,
}

impl RunRowRaw {
    fn parse(self, control: String) -> Result<RunRow, StoreError> {
        let status = RunStatus::parse(&self.status)
            .ok_or_else(|| corrupt(&self.run_id, "its status", &self.status))?;
        let end = match &self.run_end {
            Some(text) => Some(
                serde_json::from_str::<RunEnd>(text)
                    .map_err(|e| corrupt(&self.run_id, "its end", e))?,
            ),
            None => None,
        };
        Ok(RunRow {
            info: RunInfo {
                run_id: self.run_id,
                agent: self.agent,
                session: self.session,
                input: self.input,
                status,
                created_ms: self.created_ms,
                updated_ms: self.updated_ms,
                steps: u64::try_from(self.step).unwrap_or(0),
                message_count: usize_of(self.message_count),
                end,
            },
            new_from: usize_of(self.new_from),
            control,
            owner: self.owner,
            epoch: u64::try_from(self.epoch).unwrap_or(0),
            lease_until_ms: self.lease_until_ms,
        })
    }
}

fn find_run(conn: &Connection, run_id: &str) -> Result<Option<RunRow>, StoreError> {
    let raw = conn
        .query_row(
            &format!("SELECT {RUN_COLUMNS} FROM runs WHERE run_id = ?1 AND kind = 'run'"),
            [run_id],
            read_row,
        )
        .optional()
        .map_err(db)?;
    raw.map(|(raw, control)| raw.parse(control)).transpose()
}

/// The run with its messages and the journal written after its last step.
fn load_full(conn: &Connection, row: RunRow) -> Result<StoredRun, StoreError> {
    let run_id = row.info.run_id.clone();
    let mut messages = Vec::with_capacity(row.info.message_count);
    let mut statement = conn
        .prepare_cached("SELECT seq, body FROM messages WHERE run_id = ?1 ORDER BY seq")
        .map_err(db)?;
    let mut rows = statement.query([&run_id]).map_err(db)?;
    while let Some(r) = rows.next().map_err(db)? {
        let seq: i64 = r.get(0).map_err(db)?;
        let body: String = r.get(1).map_err(db)?;
        if usize_of(seq) != messages.len() {
            return Err(corrupt(
                &run_id,
                &format!("message {}", messages.len()),
                "missing",
            ));
        }
        let message: Message = serde_json::from_str(&body)
            .map_err(|e| corrupt(&run_id, &format!("message {seq}"), e))?;
        messages.push(message);
    }
    if messages.len() != row.info.message_count {
        return Err(corrupt(
            &run_id,
            "its messages",
            format!(
                "{} stored, {} expected",
                messages.len(),
                row.info.message_count
            ),
        ));
    }
    let mut journal = Vec::new();
    let mut statement = conn
        .prepare_cached(
            "SELECT seq, body FROM journal WHERE run_id = ?1 AND step = ?2 ORDER BY seq",
        )
        .map_err(db)?;
    let mut rows = statement
        .query(params![
            &run_id,
            i64::try_from(row.info.steps).unwrap_or(i64::MAX)
        ])
        .map_err(db)?;
    while let Some(r) = rows.next().map_err(db)? {
        let seq: i64 = r.get(0).map_err(db)?;
        let body: String = r.get(1).map_err(db)?;
        let entry: JournalEntry = serde_json::from_str(&body)
            .map_err(|e| corrupt(&run_id, &format!("journal record {seq}"), e))?;
        journal.push(entry);
    }
    Ok(StoredRun {
        info: row.info,
        control: row.control,
        messages,
        new_from: row.new_from,
        journal,
    })
}

/// Checks that `lease` still holds the run and renews it; the error says why not.
fn check_lease(
    tx: &Transaction<'_>,
    run_id: &str,
    lease: &Lease,
    renew: Duration,
) -> Result<(), StoreError> {
    let now = now_ms();
    let changed = tx
        .prepare_cached(
            "UPDATE runs SET lease_until_ms = ?1, updated_ms = ?2 \
             WHERE run_id = ?3 AND owner = ?4 AND epoch = ?5",
        )
        .and_then(|mut s| {
            s.execute(params![
                now.saturating_add(i64::try_from(renew.as_millis()).unwrap_or(i64::MAX)),
                now,
                run_id,
                lease.owner,
                i64::try_from(lease.epoch).unwrap_or(i64::MAX)
            ])
        })
        .map_err(db)?;
    if changed == 1 {
        return Ok(());
    }
    let status: Option<String> = tx
        .query_row(
            "SELECT status FROM runs WHERE run_id = ?1 AND kind = 'run'",
            [run_id],
            |r| r.get(0),
        )
        .optional()
        .map_err(db)?;
    Err(match status {
        None => StoreError::not_found(run_id),
        Some(_) => StoreError::new(
            StoreErrorKind::Fenced,
            format!(
                "run `{run_id}` is no longer held by this driver (another one claimed it, or it \
                 ended or paused): this write was refused and the run goes on there"
            ),
        ),
    })
}

fn insert_messages(
    tx: &Transaction<'_>,
    run_id: &str,
    from: usize,
    messages: &[Message],
) -> Result<(), StoreError> {
    let mut insert = tx
        .prepare_cached("INSERT INTO messages (run_id, seq, body) VALUES (?1, ?2, ?3)")
        .map_err(db)?;
    for (i, message) in messages.iter().enumerate() {
        let body = to_json(message, "a message")?;
        insert
            .execute(params![run_id, i64_of(from + i), body])
            .map_err(db)?;
    }
    Ok(())
}

fn next_session_seq(tx: &Transaction<'_>, session: &str) -> Result<i64, StoreError> {
    tx.query_row(
        "SELECT COALESCE(MAX(session_seq), 0) + 1 FROM runs WHERE session = ?1",
        [session],
        |r| r.get(0),
    )
    .map_err(db)
}

fn begin(conn: &mut Connection) -> Result<Transaction<'_>, StoreError> {
    conn.transaction_with_behavior(TransactionBehavior::Immediate)
        .map_err(db)
}

#[async_trait]
impl RunStore for SqliteStore {
    async fn create_run(&self, run: NewRun<'_>) -> Result<Lease, StoreError> {
        let run_id = run.run_id.to_owned();
        let agent = run.agent.to_owned();
        let session = run.session.map(str::to_owned);
        let input = run.input.to_owned();
        let control = run.control.to_owned();
        let bodies = run
            .messages
            .iter()
            .map(|m| to_json(m, "a message"))
            .collect::<Result<Vec<_>, _>>()?;
        let new_from = run.new_from;
        let owner = run.owner.to_owned();
        self.with(move |conn, lease_for| {
            let tx = begin(conn)?;
            let now = now_ms();
            let inserted = tx
                .execute(
                    "INSERT INTO runs (run_id, kind, agent, session, input, status, created_ms, \
                     updated_ms, step, message_count, new_from, control, owner, epoch, \
                     lease_until_ms) VALUES (?1, 'run', ?2, ?3, ?4, 'running', ?5, ?5, 0, ?6, \
                     ?7, ?8, ?9, 1, ?10) ON CONFLICT (run_id) DO NOTHING",
                    params![
                        run_id,
                        agent,
                        session,
                        input,
                        now,
                        i64_of(bodies.len()),
                        i64_of(new_from),
                        control,
                        owner,
                        now.saturating_add(
                            i64::try_from(lease_for.as_millis()).unwrap_or(i64::MAX)
                        ),
                    ],
                )
                .map_err(db)?;
            if inserted == 0 {
                return Err(StoreError::new(
                    StoreErrorKind::Invalid,
                    format!("a run with the id `{run_id}` is already in the store"),
                ));
            }
            let mut insert = tx
                .prepare_cached("INSERT INTO messages (run_id, seq, body) VALUES (?1, ?2, ?3)")
                .map_err(db)?;
            for (i, body) in bodies.iter().enumerate() {
                insert
                    .execute(params![run_id, i64_of(i), body])
                    .map_err(db)?;
            }
            drop(insert);
            tx.commit().map_err(db)?;
            Ok(Lease { owner, epoch: 1 })
        })
        .await
    }

    async fn claim_run(&self, run_id: &str, owner: &str) -> Result<(StoredRun, Lease), StoreError> {
        let run_id = run_id.to_owned();
        let owner = owner.to_owned();
        self.with(move |conn, lease_for| {
            let tx = begin(conn)?;
            let row = find_run(&tx, &run_id)?.ok_or_else(|| StoreError::not_found(&run_id))?;
            if row.info.status.is_final() {
                return Err(StoreError::new(
                    StoreErrorKind::Finished,
                    format!(
                        "run `{run_id}` is over ({}): there is nothing to resume; load it to read \
                         its result",
                        row.info.status
                    ),
                ));
            }
            if let Some(holder) = &row.owner
                && owner_alive(holder, row.lease_until_ms)
            {
                return Err(StoreError::new(
                    StoreErrorKind::Busy,
                    format!(
                        "run `{run_id}` is being driven by another live driver ({holder}): wait \
                         for it to finish or pause, or stop that process first"
                    ),
                ));
            }
            let epoch = row.epoch + 1;
            let now = now_ms();
            tx.execute(
                "UPDATE runs SET owner = ?1, epoch = ?2, lease_until_ms = ?3, updated_ms = ?4 \
                 WHERE run_id = ?5",
                params![
                    owner,
                    i64::try_from(epoch).unwrap_or(i64::MAX),
                    now.saturating_add(i64::try_from(lease_for.as_millis()).unwrap_or(i64::MAX)),
                    now,
                    run_id
                ],
            )
            .map_err(db)?;
            let stored = load_full(&tx, row)?;
            tx.commit().map_err(db)?;
            Ok((stored, Lease { owner, epoch }))
        })
        .await
    }

    async fn journal(
        &self,
        run_id: &str,
        lease: &Lease,
        entry: &JournalEntry,
    ) -> Result<(), StoreError> {
        let run_id = run_id.to_owned();
        let lease = lease.clone();
        let body = to_json(entry, "a journal record")?;
        let kind = entry.kind();
        let key = entry.call_key().map(|(turn, id)| (turn, id.to_owned()));
        self.with(move |conn, lease_for| {
            let tx = begin(conn)?;
            check_lease(&tx, &run_id, &lease, lease_for)?;
            let (turn, call_id) = key.unzip();
            tx.prepare_cached(
                "INSERT INTO journal (run_id, seq, step, kind, turn, call_id, body) \
                 VALUES (?1, (SELECT COALESCE(MAX(seq), 0) + 1 FROM journal WHERE run_id = ?1), \
                 (SELECT step FROM runs WHERE run_id = ?1), ?2, ?3, ?4, ?5) \
                 ON CONFLICT DO NOTHING",
            )
            .and_then(|mut s| s.execute(params![run_id, kind, turn, call_id, body]))
            .map_err(db)?;
            tx.commit().map_err(db)
        })
        .await
    }

    async fn commit(&self, run_id: &str, lease: &Lease, step: Step<'_>) -> Result<(), StoreError> {
        let run_id = run_id.to_owned();
        let lease = lease.clone();
        let control = step.control.to_owned();
        let messages = step.messages.to_vec();
        let from = step.messages_from;
        let end = step.end.map(|e| to_json(e, "a run's end")).transpose()?;
        let status = step.status;
        let number = step.step;
        let session = step
            .session
            .filter(|_| status == RunStatus::Finished)
            .map(str::to_owned);
        self.with(move |conn, lease_for| {
            let tx = begin(conn)?;
            check_lease(&tx, &run_id, &lease, lease_for)?;
            let (stored_step, stored_count): (i64, i64) = tx
                .query_row(
                    "SELECT step, message_count FROM runs WHERE run_id = ?1",
                    [&run_id],
                    |r| Ok((r.get(0)?, r.get(1)?)),
                )
                .map_err(db)?;
            if usize_of(stored_count) != from
                || u64::try_from(stored_step).ok() != number.checked_sub(1)
            {
                return Err(StoreError::new(
                    StoreErrorKind::Invalid,
                    format!(
                        "step {number} of run `{run_id}` does not follow the stored one (step \
                         {stored_step}, {stored_count} messages; the commit starts at message \
                         {from})"
                    ),
                ));
            }
            insert_messages(&tx, &run_id, from, &messages)?;
            // A pause or an end lets go of the run: anyone may resume it next.
            let releases = status != RunStatus::Running;
            let session_seq = match &session {
                Some(session) => Some(next_session_seq(&tx, session)?),
                None => None,
            };
            tx.prepare_cached(
                "UPDATE runs SET step = ?1, control = ?2, message_count = ?3, status = ?4, \
                 run_end = COALESCE(?5, run_end), \
                 owner = CASE WHEN ?6 THEN NULL ELSE owner END, \
                 session_seq = COALESCE(?7, session_seq), \
                 session = CASE WHEN ?7 IS NULL THEN session ELSE ?8 END \
                 WHERE run_id = ?9",
            )
            .and_then(|mut s| {
                s.execute(params![
                    i64::try_from(number).unwrap_or(i64::MAX),
                    control,
                    i64_of(from + messages.len()),
                    status.as_str(),
                    end,
                    releases,
                    session_seq,
                    session,
                    run_id
                ])
            })
            .map_err(db)?;
            tx.commit().map_err(db)
        })
        .await
    }

    async fn release(&self, run_id: &str, lease: &Lease) -> Result<(), StoreError> {
        let run_id = run_id.to_owned();
        let lease = lease.clone();
        self.with(move |conn, _| {
            conn.execute(
                "UPDATE runs SET owner = NULL WHERE run_id = ?1 AND owner = ?2 AND epoch = ?3",
                params![
                    run_id,
                    lease.owner,
                    i64::try_from(lease.epoch).unwrap_or(i64::MAX)
                ],
            )
            .map_err(db)?;
            Ok(())
        })
        .await
    }

    async fn load_run(&self, run_id: &str) -> Result<StoredRun, StoreError> {
        let run_id = run_id.to_owned();
        self.with(move |conn, _| {
            let tx = conn.transaction().map_err(db)?;
            let row = find_run(&tx, &run_id)?.ok_or_else(|| StoreError::not_found(&run_id))?;
            load_full(&tx, row)
        })
        .await
    }

    async fn list_runs(&self, query: &RunQuery) -> Result<Vec<RunInfo>, StoreError> {
        let query = query.clone();
        self.with(move |conn, _| {
            let before = match &query.before {
                Some(run_id) => Some(
                    conn.query_row(
                        "SELECT id FROM runs WHERE run_id = ?1 AND kind = 'run'",
                        [run_id],
                        |r| r.get::<_, i64>(0),
                    )
                    .optional()
                    .map_err(db)?
                    .ok_or_else(|| StoreError::not_found(run_id))?,
                ),
                None => None,
            };
            let mut statement = conn
                .prepare_cached(&format!(
                    "SELECT {RUN_COLUMNS} FROM runs WHERE kind = 'run' \
                     AND (?1 IS NULL OR status = ?1) AND (?2 IS NULL OR session = ?2) \
                     AND (?3 IS NULL OR id < ?3) ORDER BY id DESC LIMIT ?4"
                ))
                .map_err(db)?;
            let rows = statement
                .query_map(
                    params![
                        query.status.map(RunStatus::as_str),
                        query.session,
                        before,
                        i64_of(query.limit)
                    ],
                    read_row,
                )
                .map_err(db)?;
            let mut runs = Vec::new();
            for row in rows {
                let (raw, _) = row.map_err(db)?;
                runs.push(raw.parse(String::new())?.info);
            }
            Ok(runs)
        })
        .await
    }

    async fn delete_run(&self, run_id: &str) -> Result<bool, StoreError> {
        let run_id = run_id.to_owned();
        self.with(move |conn, _| {
            let tx = begin(conn)?;
            let deleted = tx
                .execute(
                    "DELETE FROM runs WHERE run_id = ?1 AND kind = 'run'",
                    [&run_id],
                )
                .map_err(db)?;
            if deleted > 0 {
                tx.execute("DELETE FROM messages WHERE run_id = ?1", [&run_id])
                    .map_err(db)?;
                tx.execute("DELETE FROM journal WHERE run_id = ?1", [&run_id])
                    .map_err(db)?;
            }
            tx.commit().map_err(db)?;
            Ok(deleted > 0)
        })
        .await
    }

    async fn session_info(&self, session: &str) -> Result<SessionInfo, StoreError> {
        let session = session.to_owned();
        self.with(move |conn, _| {
            conn.query_row(
                "SELECT COUNT(CASE WHEN kind = 'run' THEN 1 END), \
                 COALESCE(SUM(message_count - new_from), 0) \
                 FROM runs WHERE session = ?1 AND session_seq IS NOT NULL",
                [&session],
                |r| {
                    Ok(SessionInfo {
                        runs: u64::try_from(r.get::<_, i64>(0)?).unwrap_or(0),
                        messages: u64::try_from(r.get::<_, i64>(1)?).unwrap_or(0),
                    })
                },
            )
            .map_err(db)
        })
        .await
    }
}

#[async_trait]
impl Memory for SqliteStore {
    async fn load(&self, session: &str) -> Result<Vec<Message>, MemoryError> {
        let session = session.to_owned();
        self.with(move |conn, _| {
            let mut statement = conn
                .prepare_cached(
                    "SELECT r.run_id, m.seq, m.body FROM runs r \
                     JOIN messages m ON m.run_id = r.run_id AND m.seq >= r.new_from \
                     WHERE r.session = ?1 AND r.session_seq IS NOT NULL \
                     ORDER BY r.session_seq, m.seq",
                )
                .map_err(db)?;
            let mut rows = statement.query([&session]).map_err(db)?;
            let mut messages = Vec::new();
            while let Some(r) = rows.next().map_err(db)? {
                let run_id: String = r.get(0).map_err(db)?;
                let seq: i64 = r.get(1).map_err(db)?;
                let body: String = r.get(2).map_err(db)?;
                messages.push(
                    serde_json::from_str(&body)
                        .map_err(|e| corrupt(&run_id, &format!("message {seq}"), e))?,
                );
            }
            Ok(messages)
        })
        .await
        .map_err(memory_error)
    }

    /// Appends messages that did not come from a durable run (an agent whose memory is this
    /// store but which is not durable, or a direct call): kept as one finished entry of the
    /// session, refused when they break the history invariant (a call without its result).
    async fn append(&self, session: &str, messages: &[Message]) -> Result<(), MemoryError> {
        if messages.is_empty() {
            return Ok(());
        }
        joinable(session, messages)?;
        let session = session.to_owned();
        let bodies = messages
            .iter()
            .map(|m| to_json(m, "a message"))
            .collect::<Result<Vec<_>, _>>()
            .map_err(memory_error)?;
        let entry_id = format!(
            "mem_{}",
            agent_core::run::new_run_id().trim_start_matches("run_")
        );
        self.with(move |conn, _| {
            let tx = begin(conn)?;
            let seq = next_session_seq(&tx, &session)?;
            let now = now_ms();
            tx.execute(
                "INSERT INTO runs (run_id, kind, agent, session, input, status, created_ms, \
                 updated_ms, step, message_count, new_from, control, epoch, session_seq) \
                 VALUES (?1, 'memory', '', ?2, '', 'finished', ?3, ?3, 0, ?4, 0, '', 0, ?5)",
                params![entry_id, session, now, i64_of(bodies.len()), seq],
            )
            .map_err(db)?;
            let mut insert = tx
                .prepare_cached("INSERT INTO messages (run_id, seq, body) VALUES (?1, ?2, ?3)")
                .map_err(db)?;
            for (i, body) in bodies.iter().enumerate() {
                insert
                    .execute(params![entry_id, i64_of(i), body])
                    .map_err(db)?;
            }
            drop(insert);
            tx.commit().map_err(db)
        })
        .await
        .map_err(memory_error)
    }

    /// Forgets a session's history. Its runs stay in the store (listed, loadable) until
    /// deleted; they are no longer part of the session.
    async fn clear(&self, session: &str) -> Result<(), MemoryError> {
        let session = session.to_owned();
        self.with(move |conn, _| {
            let tx = begin(conn)?;
            tx.execute(
                "DELETE FROM messages WHERE run_id IN \
                 (SELECT run_id FROM runs WHERE session = ?1 AND kind = 'memory')",
                [&session],
            )
            .map_err(db)?;
            tx.execute(
                "DELETE FROM runs WHERE session = ?1 AND kind = 'memory'",
                [&session],
            )
            .map_err(db)?;
            tx.execute(
                "UPDATE runs SET session_seq = NULL WHERE session = ?1",
                [&session],
            )
            .map_err(db)?;
            tx.commit().map_err(db)
        })
        .await
        .map_err(memory_error)
    }
}
