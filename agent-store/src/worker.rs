//! [`Worker`]: claims runs from a [`PostgresStore`]'s queue and drives them with the
//! agents it knows by name, a few at a time, until told to stop.
//!
//! Each run is driven under the lease its claim took (the agent gets the claim's owner), and
//! a heartbeat renews that lease every third of its length. When a heartbeat finds the run
//! taken over (this worker was paused or cut off past its lease), the run is dropped here at
//! once: its late writes would be fenced anyway. A run paused for approval is let go as
//! paused; decisions posted with [`PostgresStore::post_approvals`] make it claimable by any
//! worker. On shutdown the worker claims nothing more, lets its runs finish for a grace
//! period, then lets go of the rest, which other workers resume from their last step.
//!
//! It never decides what a run does: that is the agent's, and the store's journal's.

use std::collections::HashMap;
use std::sync::Arc;
use std::time::Duration;

use agent_core::durable::{Lease, StoreErrorKind};
use agent_core::{Agent, AgentError, CancellationToken, LlmAgent, RunContext, StopReason};
use tokio::task::JoinSet;

use crate::postgres::{Claimed, PostgresStore};

/// What became of a run a worker drove.
#[derive(Clone, Debug, PartialEq)]
pub struct RunReport {
    /// The run.
    pub run_id: String,
    /// Its agent.
    pub agent: String,
    /// What happened.
    pub status: RunReportStatus,
}

/// How a worker's turn with a run ended.
#[derive(Clone, Debug, PartialEq)]
#[non_exhaustive]
pub enum RunReportStatus {
    /// The run ended with an answer.
    Finished,
    /// The run paused for a human's approval and was let go; it waits for decisions.
    Paused,
    /// The run ended without an answer (the error's message).
    Failed(String),
    /// Another worker took the run over (this one lost its lease); it goes on there.
    Fenced,
    /// The worker let go of the run on shutdown; another resumes it.
    Released,
    /// The run could not be driven here (a store failure, a damaged run): it becomes
    /// claimable again once its lease runs out.
    Error(String),
}

type OnReport = Arc<dyn Fn(&RunReport) + Send + Sync>;

/// Builds a [`Worker`]: [`Worker::builder`].
#[must_use]
pub struct WorkerBuilder {
    store: Arc<PostgresStore>,
    agents: HashMap<String, Arc<LlmAgent>>,
    concurrency: usize,
    lease: Duration,
    poll: Duration,
    grace: Duration,
    on_report: Option<OnReport>,
}

impl std::fmt::Debug for WorkerBuilder {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("WorkerBuilder")
            .field("agents", &self.agents.keys().collect::<Vec<_>>())
            .field("concurrency", &self.concurrency)
            .field("lease", &self.lease)
            .finish_non_exhaustive()
    }
}

impl WorkerBuilder {
    /// Drives the runs of this agent: those enqueued with its name, and those it started
    /// elsewhere and left behind. Build it with `.store(..)` of the same store (its writes
    /// go there); a second agent of the same name replaces the first.
    pub fn agent(mut self, agent: Arc<LlmAgent>) -> Self {
        self.agents.insert(agent.name().to_owned(), agent);
        self
    }

    /// Drives at most this many runs at once (default 4).
    pub fn concurrency(mut self, n: usize) -> Self {
        self.concurrency = n.max(1);
        self
    }

    /// The lease each claim takes (default 30 s): after a crash, another worker takes the
    /// run over this long after the last heartbeat.
    pub fn lease(mut self, lease: Duration) -> Self {
        self.lease = lease.max(Duration::from_millis(300));
        self
    }

    /// How long to wait before looking for work again when the queue is empty (default
    /// 250 ms).
    pub fn poll_interval(mut self, poll: Duration) -> Self {
        self.poll = poll;
        self
    }

    /// How long runs may go on after shutdown is asked before they are let go (default
    /// 10 s).
    pub fn grace(mut self, grace: Duration) -> Self {
        self.grace = grace;
        self
    }

    /// Called with each run's report as it comes.
    pub fn on_report(mut self, report: impl Fn(&RunReport) + Send + Sync + 'static) -> Self {
        self.on_report = Some(Arc::new(report));
        self
    }

    /// The worker.
    pub fn build(self) -> Worker {
        Worker {
            store: self.store,
            agents: Arc::new(self.agents),
            concurrency: self.concurrency,
            lease: self.lease,
            poll: self.poll,
            grace: self.grace,
            on_report: self.on_report,
        }
    }
}

/// Claims and drives runs from a [`PostgresStore`] (see the module docs).
///
/// ```no_run
/// # async fn example(store: std::sync::Arc<agent_store::PostgresStore>,
/// #                  agent: std::sync::Arc<agent_core::LlmAgent>) -> Result<(), agent_store::StoreError> {
/// use std::time::Duration;
/// use agent_core::CancellationToken;
/// use agent_store::Worker;
/// let shutdown = CancellationToken::new();
/// let worker = Worker::builder(store)
///     .agent(agent) // runs of the agent named as this one is
///     .concurrency(8)
///     .lease(Duration::from_secs(15))
///     .on_report(|r| println!("{} {:?}", r.run_id, r.status))
///     .build();
/// let summary = worker.run(shutdown).await; // until shutdown.cancel(), then drains
/// println!("{summary:?}");
/// # Ok(()) }
/// ```
pub struct Worker {
    store: Arc<PostgresStore>,
    agents: Arc<HashMap<String, Arc<LlmAgent>>>,
    concurrency: usize,
    lease: Duration,
    poll: Duration,
    grace: Duration,
    on_report: Option<OnReport>,
}

impl std::fmt::Debug for Worker {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Worker")
            .field("agents", &self.agents.keys().collect::<Vec<_>>())
            .field("concurrency", &self.concurrency)
            .field("lease", &self.lease)
            .finish_non_exhaustive()
    }
}

/// How many runs a worker drove, by how each ended, when it stopped.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct WorkerSummary {
    /// Runs that finished or failed here.
    pub ended: u64,
    /// Runs let go as paused for approval.
    pub paused: u64,
    /// Runs lost to another worker or let go on shutdown.
    pub handed_over: u64,
    /// Runs that could not be driven.
    pub errors: u64,
}

impl Worker {
    /// A worker on this store, with no agents yet.
    pub fn builder(store: Arc<PostgresStore>) -> WorkerBuilder {
        WorkerBuilder {
            store,
            agents: HashMap::new(),
            concurrency: 4,
            lease: Duration::from_secs(30),
            poll: Duration::from_millis(250),
            grace: Duration::from_secs(10),
            on_report: None,
        }
    }

    /// Claims and drives runs until `shutdown` fires, then drains (see the module docs).
    /// A failure to reach the store is logged and retried; the worker never stops by itself.
    pub async fn run(&self, shutdown: CancellationToken) -> WorkerSummary {
        let names: Vec<String> = self.agents.keys().cloned().collect();
        let stop_runs = CancellationToken::new();
        let mut running: JoinSet<RunReport> = JoinSet::new();
        let mut summary = WorkerSummary::default();
        while !shutdown.is_cancelled() {
            while let Some(done) = running.try_join_next() {
                self.count(done, &mut summary);
            }
            if running.len() < self.concurrency {
                let owner = Lease::new_owner();
                match self.store.claim_next(&owner, &names, self.lease).await {
                    Ok(Some(claimed)) => {
                        running.spawn(self.drive(claimed, stop_runs.child_token()));
                        continue;
                    }
                    Ok(None) => {}
                    Err(e) => tracing::warn!("a worker could not claim a run: {e}"),
                }
            }
            tokio::select! {
                () = shutdown.cancelled() => {}
                Some(done) = running.join_next(), if !running.is_empty() => {
                    self.count(done, &mut summary);
                }
                () = tokio::time::sleep(self.poll) => {}
            }
        }
        let grace = tokio::time::sleep(self.grace);
        tokio::pin!(grace);
        loop {
            tokio::select! {
                done = running.join_next() => match done {
                    Some(done) => self.count(done, &mut summary),
                    None => break,
                },
                () = &mut grace, if !stop_runs.is_cancelled() => stop_runs.cancel(),
            }
        }
        summary
    }

    fn count(&self, done: Result<RunReport, tokio::task::JoinError>, summary: &mut WorkerSummary) {
        let report = match done {
            Ok(report) => report,
            Err(e) => {
                tracing::warn!("a worker's run task failed: {e}");
                summary.errors += 1;
                return;
            }
        };
        match report.status {
            RunReportStatus::Finished | RunReportStatus::Failed(_) => summary.ended += 1,
            RunReportStatus::Paused => summary.paused += 1,
            RunReportStatus::Fenced | RunReportStatus::Released => summary.handed_over += 1,
            RunReportStatus::Error(_) => summary.errors += 1,
        }
        if let Some(on_report) = &self.on_report {
            on_report(&report);
        }
    }

    /// Drives one claimed run, heartbeating its lease, until it ends, is taken over, or
    /// the worker lets go of it.
    fn drive(
        &self,
        claimed: Claimed,
        stop: CancellationToken,
    ) -> impl std::future::Future<Output = RunReport> + Send + 'static {
        let store = self.store.clone();
        let agent = self.agents.get(&claimed.agent).cloned();
        let beat = self.lease / 3;
        async move {
            let Claimed {
                run_id,
                agent: name,
                input,
                session,
                started,
                approvals,
                lease,
            } = claimed;
            let report = |status| RunReport {
                run_id: run_id.clone(),
                agent: name.clone(),
                status,
            };
            let Some(agent) = agent else {
                let _ = store.release_owner(&run_id, &lease.owner).await;
                return report(RunReportStatus::Error(format!(
                    "this worker has no agent `{name}`"
                )));
            };
            let ctx = RunContext::new().with_owner(lease.owner.clone());
            let run = async {
                match (started, approvals) {
                    (false, _) => {
                        let mut ctx = ctx.clone().with_run_id(run_id.clone());
                        ctx.session = session.clone();
                        agent.run(&input, &ctx).await
                    }
                    (true, Some(decisions)) => {
                        agent
                            .resume_run_with_approvals(&run_id, decisions, &ctx)
                            .await
                    }
                    (true, None) => agent.resume_run(&run_id, &ctx).await,
                }
            };
            let heartbeat = async {
                loop {
                    tokio::time::sleep(beat).await;
                    match store.heartbeat(&run_id, &lease.owner).await {
                        Ok(()) => {}
                        Err(e) if e.kind == StoreErrorKind::Fenced => return,
                        // The database is out of reach: the lease may run out; the next
                        // write will say whether the run is still ours.
                        Err(e) => tracing::warn!(run.id = %run_id, "a heartbeat failed: {e}"),
                    }
                }
            };
            tokio::select! {
                outcome = run => report(match outcome {
                    Ok(result) if result.stop_reason == StopReason::AwaitingApproval => {
                        RunReportStatus::Paused
                    }
                    Ok(_) => RunReportStatus::Finished,
                    Err(AgentError::Store(e)) if e.kind == StoreErrorKind::Fenced => {
                        RunReportStatus::Fenced
                    }
                    // Kept until its lease runs out, so a run that cannot be driven is not
                    // claimed again at once, in a loop.
                    Err(AgentError::Store(e)) => RunReportStatus::Error(e.to_string()),
                    Err(e) => RunReportStatus::Failed(e.to_string()),
                }),
                () = heartbeat => report(RunReportStatus::Fenced),
                () = stop.cancelled() => {
                    // The run's future is dropped here, mid-step: what it committed stays,
                    // the rest is redone by whoever claims it next.
                    let _ = store.release_owner(&run_id, &lease.owner).await;
                    report(RunReportStatus::Released)
                }
            }
        }
    }
}
