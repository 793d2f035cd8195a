//! Runs on PostgreSQL (agent-store's `PostgresStore`) beside SQLite: step commits per
//! second with 1 and 8 concurrent drivers (each its own run), their p50/p99 latency, and the
//! latency of claiming a queued run with 8 claimers at once.
//!
//! ```text
//! cargo run --release -p agent-tests --example pg_bench
//! AGENT_DATABASE_URL=postgres://user@host/db cargo run --release -p agent-tests --example pg_bench -- --steps 4000
//! ```
//!
//! Each commit adds one 1 KiB message and a control state, in one transaction (on SQLite
//! with `synchronous=FULL`, on PostgreSQL with the server's `synchronous_commit`). The
//! benchmark uses a schema of its own (`agent_bench_<pid>`) and drops it at the end.

use std::sync::Arc;
use std::time::{Duration, Instant};

use agent_core::Message;
use agent_core::durable::{Lease, NewRun, RunStatus, RunStore, Step};
use agent_store::{Job, PostgresStore, SqliteStore};

fn main() -> Result<(), Box<dyn std::error::Error>> {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let option = |name: &str| {
        args.iter()
            .position(|a| a == name)
            .and_then(|i| args.get(i + 1).cloned())
    };
    let steps: usize = option("--steps").map_or(Ok(2000), |s| s.parse())?;
    let url = std::env::var("AGENT_DATABASE_URL")
        .unwrap_or_else(|_| "postgres://postgres@127.0.0.1:5432/postgres".to_owned());
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()?;
    runtime.block_on(async {
        let schema = format!("agent_bench_{}", std::process::id());
        let pg = Arc::new(
            PostgresStore::builder(&url)
                .schema(&schema)
                .max_connections(16)
                .connect()
                .await?,
        );
        let dir = tempfile::tempdir()?;
        let sqlite = Arc::new(SqliteStore::open(dir.path().join("bench.db"))?);
        for drivers in [1, 8] {
            let (rate, times) = commits(pg.clone(), drivers, steps, "pg").await?;
            report(&format!("PostgreSQL, {drivers} driver(s)"), rate, times);
            let (rate, times) = commits(sqlite.clone(), drivers, steps, "sq").await?;
            report(&format!("SQLite,     {drivers} driver(s)"), rate, times);
        }
        claims(&pg, steps).await?;
        let (client, connection) = tokio_postgres::connect(&url, tokio_postgres::NoTls).await?;
        tokio::spawn(connection);
        client
            .batch_execute(&format!("DROP SCHEMA {schema} CASCADE"))
            .await?;
        Ok(())
    })
}

fn percentile(sorted: &[Duration], p: f64) -> Duration {
    let i = ((sorted.len() as f64 - 1.0) * p).round() as usize;
    sorted[i.min(sorted.len() - 1)]
}

fn report(what: &str, rate: f64, mut times: Vec<Duration>) {
    times.sort();
    println!(
        "{what}: {rate:.0} step commits/s, p50 {:.3} ms, p99 {:.3} ms ({} commits)",
        percentile(&times, 0.5).as_secs_f64() * 1e3,
        percentile(&times, 0.99).as_secs_f64() * 1e3,
        times.len()
    );
}

/// `drivers` runs committed concurrently, `steps` commits in all; the rate and each
/// commit's latency.
async fn commits<S: RunStore + 'static>(
    store: Arc<S>,
    drivers: usize,
    steps: usize,
    tag: &str,
) -> Result<(f64, Vec<Duration>), Box<dyn std::error::Error>> {
    let control = format!(
        "{{\"phase\":\"call_model\",\"pad\":\"{}\"}}",
        "c".repeat(300)
    );
    let context = vec![Message::system("Be brief."), Message::user("Go.")];
    let mut runs = Vec::new();
    for d in 0..drivers {
        let run_id = format!("run_{tag}_{drivers}_{d}");
        let lease = store
            .create_run(NewRun {
                run_id: &run_id,
                agent: "bench",
                session: None,
                input: "Go.",
                control: "{}",
                messages: &context,
                new_from: 1,
                owner: &Lease::new_owner(),
            })
            .await?;
        runs.push((run_id, lease));
    }
    let per_driver = steps / drivers;
    let started = Instant::now();
    let tasks: Vec<_> = runs
        .into_iter()
        .map(|(run_id, lease)| {
            let store = store.clone();
            let control = control.clone();
            let base = context.len();
            tokio::spawn(async move {
                let mut times = Vec::with_capacity(per_driver);
                for i in 0..per_driver {
                    let message = [Message::assistant("a".repeat(1024))];
                    let t = Instant::now();
                    store
                        .commit(
                            &run_id,
                            &lease,
                            Step {
                                step: i as u64 + 1,
                                control: &control,
                                messages_from: base + i,
                                messages: &message,
                                status: RunStatus::Running,
                                end: None,
                                session: None,
                            },
                        )
                        .await?;
                    times.push(t.elapsed());
                }
                Ok::<_, agent_core::durable::StoreError>(times)
            })
        })
        .collect();
    let mut times = Vec::new();
    for task in tasks {
        times.extend(task.await??);
    }
    let rate = times.len() as f64 / started.elapsed().as_secs_f64();
    Ok((rate, times))
}

/// `n` queued runs claimed by 8 claimers at once: each claim's latency.
async fn claims(store: &Arc<PostgresStore>, n: usize) -> Result<(), Box<dyn std::error::Error>> {
    for i in 0..n {
        store
            .enqueue(&Job::new("bench", "Go.").run_id(format!("run_claim_{i}")))
            .await?;
    }
    let agents = vec!["bench".to_owned()];
    let started = Instant::now();
    let tasks: Vec<_> = (0..8)
        .map(|w| {
            let store = store.clone();
            let agents = agents.clone();
            tokio::spawn(async move {
                let owner = format!("bench-worker-{w}");
                let mut times = Vec::new();
                loop {
                    let t = Instant::now();
                    let claimed = store
                        .claim_next(&owner, &agents, Duration::from_secs(60))
                        .await?;
                    if claimed.is_none() {
                        break;
                    }
                    times.push(t.elapsed());
                }
                Ok::<_, agent_core::durable::StoreError>(times)
            })
        })
        .collect();
    let mut times = Vec::new();
    for task in tasks {
        times.extend(task.await??);
    }
    let rate = times.len() as f64 / started.elapsed().as_secs_f64();
    times.sort();
    println!(
        "PostgreSQL claims, 8 claimers: {rate:.0} claims/s, p50 {:.3} ms, p99 {:.3} ms ({} claims)",
        percentile(&times, 0.5).as_secs_f64() * 1e3,
        percentile(&times, 0.99).as_secs_f64() * 1e3,
        times.len()
    );
    Ok(())
}
