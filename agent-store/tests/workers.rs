//! Workers on PostgreSQL as separate processes: one paused past its lease (SIGSTOP) loses
//! its run to another and none of its late writes land; and chaos, where 4 workers drive
//! 200 runs of 5 side-effecting steps while one of them is SIGKILLed every ~2 s and
//! restarted: every run finishes, no step is lost or committed twice, no side effect runs
//! twice, and a killed worker's runs are taken over within the lease (+ polling).
//!
//! This test binary is its own child: with `AGENT_WORKER_ROLE=worker` it is a worker
//! process; without it, it is the test. Skipped without a PostgreSQL server (see
//! `support/pg.rs`), unless `AGENT_POSTGRES_REQUIRED=1`.

// A test's `main` (harness = false): a failure panics, as an assertion in a test does.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

#[path = "support/pg.rs"]
mod pg;

use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::process::{Child, Command};
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::{Duration, Instant};

use agent_core::durable::{RunQuery, RunStatus, RunStore};
use agent_core::{
    CancellationToken, ChatModel, ChatRequest, ChatResponse, LlmAgent, Message, ModelError,
    ToolCall, async_trait, tool_fn,
};
use agent_store::conformance::fixtures::Ledger;
use agent_store::{Job, PostgresStore, Worker};
use nix::sys::signal::{Signal, kill};
use nix::unistd::Pid;
use serde::Deserialize;

/// Tool calls each run makes, one per model turn, before its answer.
const STEPS: u64 = 5;

fn main() {
    if std::env::var("AGENT_WORKER_ROLE").as_deref() == Ok("worker") {
        child_worker();
        return;
    }
    let rt = runtime();
    rt.block_on(a_worker_paused_past_its_lease_loses_its_run_and_its_late_writes_never_land());
    rt.block_on(workers_killed_at_random_lose_no_step_and_repeat_no_side_effect());
}

fn runtime() -> tokio::runtime::Runtime {
    tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .unwrap()
}

/// A model that calls `act` once per turn until it has seen `STEPS` results, then answers:
/// a pure function of the request, so every process gives the same answers.
#[derive(Debug)]
struct StepsModel;

#[async_trait]
impl ChatModel for StepsModel {
    fn provider(&self) -> &str {
        "scripted"
    }

    fn model(&self) -> &str {
        "steps"
    }

    async fn chat(&self, request: &ChatRequest) -> Result<ChatResponse, ModelError> {
        let done = request
            .messages
            .iter()
            .rev()
            .take_while(|m| !matches!(m, Message::User { .. }))
            .filter(|m| matches!(m, Message::Tool(_)))
            .count();
        Ok(if (done as u64) < STEPS {
            ChatResponse::tool_calls(vec![ToolCall::new(
                "",
                "act",
                &serde_json::json!({ "step": done }),
            )])
        } else {
            ChatResponse::text("All steps done.")
        })
    }
}

#[derive(Deserialize, schemars::JsonSchema)]
struct Act {
    /// Which step.
    step: u32,
}

/// The agent every worker runs: `act` is side-effecting (recorded in the ledger file).
/// With a gate file named, `act` waits for that file after its effect.
/// `pace` is how long each effect takes (the chaos test's runs last long enough to be
/// killed in the middle).
fn agent(
    store: Arc<PostgresStore>,
    ledger: Ledger,
    gate: Option<PathBuf>,
    pace: Duration,
) -> Arc<LlmAgent> {
    Arc::new(
        LlmAgent::builder(Arc::new(StepsModel))
            .name("steps")
            .store(store)
            .tool(tool_fn("act", "Acts.", move |a: Act, ctx| {
                let (ledger, gate) = (ledger.clone(), gate.clone());
                async move {
                    ledger.record(format!("act {}", ctx.idempotency_key()));
                    tokio::time::sleep(pace).await;
                    if let Some(gate) = gate {
                        while !gate.exists() {
                            tokio::time::sleep(Duration::from_millis(20)).await;
                        }
                    }
                    Ok(format!("step {} acted", a.step))
                }
            }))
            .build()
            .unwrap(),
    )
}

fn env(name: &str) -> String {
    std::env::var(name).unwrap()
}

/// Child: a worker on the store, until killed (or, with `AGENT_STOP_AFTER`, after that
/// many reports), appending each report to `AGENT_REPORT_PATH`.
fn child_worker() {
    runtime().block_on(async {
        let lease = Duration::from_millis(env("AGENT_LEASE_MS").parse().unwrap());
        let store = Arc::new(
            PostgresStore::builder(env("AGENT_PG_URL"))
                .schema(env("AGENT_PG_SCHEMA"))
                .lease(lease)
                .max_connections(6)
                .connect()
                .await
                .unwrap(),
        );
        let ledger = Ledger::in_file(env("AGENT_LEDGER_PATH"));
        let gate = std::env::var("AGENT_GATE_PATH").ok().map(PathBuf::from);
        let pace = Duration::from_millis(
            std::env::var("AGENT_PACE_MS").map_or(0, |ms| ms.parse().unwrap()),
        );
        let report_path = PathBuf::from(env("AGENT_REPORT_PATH"));
        let stop_after: Option<usize> = std::env::var("AGENT_STOP_AFTER")
            .ok()
            .map(|n| n.parse().unwrap());
        let shutdown = CancellationToken::new();
        let reports = Arc::new(AtomicUsize::new(0));
        let (stop, count) = (shutdown.clone(), reports.clone());
        let worker = Worker::builder(store.clone())
            .agent(agent(store, ledger, gate, pace))
            .concurrency(4)
            .lease(lease)
            .poll_interval(Duration::from_millis(50))
            .grace(Duration::ZERO)
            .on_report(move |r| {
                Ledger::in_file(&report_path).record(format!("{} {:?}", r.run_id, r.status));
                let n = count.fetch_add(1, Ordering::SeqCst) + 1;
                if stop_after.is_some_and(|max| n >= max) {
                    stop.cancel();
                }
            })
            .build();
        worker.run(shutdown).await;
    });
}

struct Dirs {
    dir: tempfile::TempDir,
}

impl Dirs {
    fn path(&self, name: &str) -> PathBuf {
        self.dir.path().join(name)
    }
}

fn spawn_worker(
    db: &pg::TestDb,
    schema: &str,
    dirs: &Dirs,
    lease_ms: u64,
    extra: &[(&str, String)],
) -> Child {
    let mut command = Command::new(std::env::current_exe().unwrap());
    command
        .env("AGENT_WORKER_ROLE", "worker")
        .env("AGENT_PG_URL", &db.url)
        .env("AGENT_PG_SCHEMA", schema)
        .env("AGENT_LEASE_MS", lease_ms.to_string())
        .env("AGENT_LEDGER_PATH", dirs.path("ledger"))
        .env("AGENT_REPORT_PATH", dirs.path("reports"));
    for (k, v) in extra {
        command.env(k, v);
    }
    command.spawn().unwrap()
}

async fn sql_i64(db: &pg::TestDb, schema: &str, query: &str) -> i64 {
    let (client, connection) = tokio_postgres::connect(&db.url, tokio_postgres::NoTls)
        .await
        .unwrap();
    tokio::spawn(connection);
    client
        .batch_execute(&format!("SET search_path = {schema}"))
        .await
        .unwrap();
    client.query_one(query, &[]).await.unwrap().get(0)
}

fn act_keys(ledger: &Path) -> HashMap<String, usize> {
    let mut keys = HashMap::new();
    for line in Ledger::in_file(ledger).lines() {
        if let Some(key) = line.strip_prefix("act ") {
            *keys.entry(key.to_owned()).or_insert(0) += 1;
        }
    }
    keys
}

/// A run's own messages as a finished run must have them: its input, then per step a call
/// of `act` for that step and its result, then the answer. Returns how many results read
/// "outcome unknown" (a call killed while it ran).
fn check_history(run_id: &str, own: &[Message]) -> usize {
    assert!(agent_core::check_history(own).is_ok(), "{run_id}");
    assert_eq!(own.len() as u64, 2 + 2 * STEPS, "{run_id}: {own:#?}");
    let mut unknown = 0;
    for step in 0..STEPS as usize {
        let Message::Assistant(turn) = &own[1 + 2 * step] else {
            panic!("{run_id}: message {} is not the model's", 1 + 2 * step);
        };
        assert_eq!(turn.tool_calls.len(), 1, "{run_id}");
        let args: serde_json::Value = serde_json::from_str(&turn.tool_calls[0].arguments).unwrap();
        assert_eq!(args["step"], step, "{run_id}: step order");
        let Message::Tool(result) = &own[2 + 2 * step] else {
            panic!("{run_id}: message {} is not a result", 2 + 2 * step);
        };
        if result.is_error {
            assert!(
                result.content.contains("unknown") || result.content.contains("interrupted"),
                "{run_id}: {}",
                result.content
            );
            unknown += 1;
        } else {
            assert_eq!(result.content, format!("step {step} acted"), "{run_id}");
        }
    }
    unknown
}

async fn a_worker_paused_past_its_lease_loses_its_run_and_its_late_writes_never_land() {
    let Some(db) = pg::TestDb::create("fence").await else {
        return;
    };
    let schema = "fence";
    let store = Arc::new(db.store(schema).await);
    let dirs = Dirs {
        dir: tempfile::tempdir().unwrap(),
    };
    store
        .enqueue(&Job::new("steps", "Do five steps.").run_id("run_fence"))
        .await
        .unwrap();
    let gate = dirs.path("gate");
    let mut a = spawn_worker(
        &db,
        schema,
        &dirs,
        1000,
        &[
            ("AGENT_GATE_PATH", gate.display().to_string()),
            ("AGENT_STOP_AFTER", "1".into()),
        ],
    );
    let ledger = dirs.path("ledger");
    pg::until(
        Duration::from_secs(30),
        "worker A's first effect",
        || async { !act_keys(&ledger).is_empty() },
    )
    .await;
    let a_pid = Pid::from_raw(i32::try_from(a.id()).unwrap());
    kill(a_pid, Signal::SIGSTOP).unwrap();
    std::fs::write(&gate, "open").unwrap();
    pg::until(Duration::from_secs(10), "A's lease running out", || async {
        sql_i64(
            &db,
            schema,
            "SELECT COUNT(*) FROM runs WHERE run_id = 'run_fence' AND lease_until_ms < \
             (EXTRACT(EPOCH FROM clock_timestamp()) * 1000)::BIGINT",
        )
        .await
            == 1
    })
    .await;
    // B: a worker in this process takes the run over and finishes it.
    let shutdown = CancellationToken::new();
    let b = Worker::builder(store.clone())
        .agent(agent(
            store.clone(),
            Ledger::in_file(&ledger),
            None,
            Duration::ZERO,
        ))
        .lease(Duration::from_secs(5))
        .poll_interval(Duration::from_millis(20))
        .build();
    let b_task = tokio::spawn({
        let shutdown = shutdown.clone();
        async move { b.run(shutdown).await }
    });
    pg::until(Duration::from_secs(30), "B finishing the run", || async {
        store.load_run("run_fence").await.unwrap().info.status == RunStatus::Finished
    })
    .await;
    shutdown.cancel();
    let b_summary = b_task.await.unwrap();
    assert_eq!(b_summary.ended, 1, "B finished the run");
    let before = store.load_run("run_fence").await.unwrap();
    let journal_before = sql_i64(&db, schema, "SELECT COUNT(*) FROM journal").await;
    // A wakes up inside its tool, with a lease that another worker's claim replaced.
    kill(a_pid, Signal::SIGCONT).unwrap();
    let exited = tokio::task::spawn_blocking(move || a.wait().unwrap())
        .await
        .unwrap();
    assert!(
        exited.success(),
        "worker A stops by itself after its report"
    );
    let reports = Ledger::in_file(dirs.path("reports")).lines();
    assert_eq!(
        reports,
        vec!["run_fence Fenced".to_owned()],
        "A learnt it was fenced"
    );
    let after = store.load_run("run_fence").await.unwrap();
    assert_eq!(
        after.messages, before.messages,
        "none of A's late writes landed"
    );
    assert_eq!(after.info.steps, before.info.steps);
    assert_eq!(
        sql_i64(&db, schema, "SELECT COUNT(*) FROM journal").await,
        journal_before,
        "no journal record from A after the takeover"
    );
    let own = &after.messages[after.new_from..];
    let unknown = check_history("run_fence", own);
    assert_eq!(
        unknown, 1,
        "the call A was inside reads outcome unknown, not run again"
    );
    let keys = act_keys(&ledger);
    assert_eq!(keys.len() as u64, STEPS, "each step acted once");
    assert!(keys.values().all(|&n| n == 1), "no effect twice: {keys:?}");
    drop(store);
    db.drop_db().await;
    println!("fencing: worker A paused past its lease, B finished, A's writes refused: ok");
}

async fn workers_killed_at_random_lose_no_step_and_repeat_no_side_effect() {
    const RUNS: usize = 200;
    const WORKERS: usize = 4;
    const LEASE_MS: u64 = 1000;
    let Some(db) = pg::TestDb::create("chaos").await else {
        return;
    };
    let schema = "chaos";
    let store = Arc::new(db.store(schema).await);
    let dirs = Dirs {
        dir: tempfile::tempdir().unwrap(),
    };
    for i in 0..RUNS {
        store
            .enqueue(
                &Job::new("steps", "Do five steps.")
                    .run_id(format!("run_chaos_{i:03}"))
                    .priority(i32::try_from(i % 3).unwrap()),
            )
            .await
            .unwrap();
    }
    let start = Instant::now();
    let mut seed = u64::from(std::process::id()) ^ 0x9e37_79b9_7f4a_7c15;
    let mut random = move || {
        seed ^= seed << 13;
        seed ^= seed >> 7;
        seed ^= seed << 17;
        seed
    };
    let pace = [("AGENT_PACE_MS", "150".to_owned())];
    let mut workers: Vec<Child> = (0..WORKERS)
        .map(|_| spawn_worker(&db, schema, &dirs, LEASE_MS, &pace))
        .collect();
    let mut takeovers: Vec<Duration> = Vec::new();
    let mut kills = 0;
    let unfinished = || async {
        sql_i64(
            &db,
            schema,
            "SELECT COUNT(*) FROM runs WHERE kind <> 'memory' AND status <> 'finished'",
        )
        .await
    };
    let mut last_kill = Instant::now();
    while unfinished().await > 0 {
        assert!(
            start.elapsed() < Duration::from_secs(90),
            "the runs did not all finish in 90 s ({} left)",
            unfinished().await
        );
        if last_kill.elapsed() >= Duration::from_secs(2) {
            let i = usize::try_from(random() % WORKERS as u64).unwrap();
            let pid = workers[i].id();
            workers[i].kill().unwrap();
            workers[i].wait().unwrap();
            let killed_at = Instant::now();
            last_kill = killed_at;
            kills += 1;
            workers[i] = spawn_worker(&db, schema, &dirs, LEASE_MS, &pace);
            let held = format!(
                "SELECT COUNT(*) FROM runs WHERE owner LIKE 'pid:{pid}:%' AND status = 'running'"
            );
            if sql_i64(&db, schema, &held).await > 0 {
                pg::until(
                    Duration::from_secs(30),
                    "the takeover of a killed worker's runs",
                    || {
                        let held = held.clone();
                        let db = &db;
                        async move { sql_i64(db, schema, &held).await == 0 }
                    },
                )
                .await;
                takeovers.push(killed_at.elapsed());
            }
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    let elapsed = start.elapsed();
    for worker in &mut workers {
        worker.kill().unwrap();
        worker.wait().unwrap();
    }
    // Every run finished, with every step once and in order.
    let mut unknown = 0;
    let mut before = None;
    let mut finished = 0;
    loop {
        let mut query = RunQuery::new().limit(100);
        if let Some(b) = before.take() {
            query = query.before(b);
        }
        let page = store.list_runs(&query).await.unwrap();
        let Some(last) = page.last() else { break };
        before = Some(last.run_id.clone());
        for info in &page {
            assert_eq!(info.status, RunStatus::Finished, "{}", info.run_id);
            let run = store.load_run(&info.run_id).await.unwrap();
            unknown += check_history(&info.run_id, &run.messages[run.new_from..]);
            finished += 1;
        }
    }
    assert_eq!(finished, RUNS, "every run is in the store, finished");
    let keys = act_keys(&dirs.path("ledger"));
    let twice: Vec<_> = keys.iter().filter(|(_, n)| **n > 1).collect();
    assert!(twice.is_empty(), "side effects executed twice: {twice:?}");
    // Each step's effect ran once, except the calls killed mid-flight, which ran at most once.
    assert!(
        keys.len() + unknown >= RUNS * STEPS as usize,
        "{} effects, {unknown} unknown",
        keys.len()
    );
    assert!(keys.len() <= RUNS * STEPS as usize);
    let max = takeovers.iter().max().copied().unwrap_or_default();
    let mean = takeovers
        .iter()
        .sum::<Duration>()
        .checked_div(u32::try_from(takeovers.len()).unwrap().max(1))
        .unwrap_or_default();
    println!(
        "chaos: {RUNS} runs x {STEPS} steps, {WORKERS} workers, {kills} SIGKILLs in {elapsed:.1?}; \
         0 lost steps, 0 duplicated commits, 0 effects twice ({} effects, {unknown} outcome \
         unknown); takeover after a kill (lease {LEASE_MS} ms): mean {} ms, max {} ms over {} \
         kills that held runs",
        keys.len(),
        mean.as_millis(),
        max.as_millis(),
        takeovers.len()
    );
    assert!(
        max <= Duration::from_millis(LEASE_MS) + Duration::from_secs(5),
        "a takeover took {max:?} (lease {LEASE_MS} ms)"
    );
    drop(store);
    db.drop_db().await;
}
