//! The queue of runs on PostgreSQL: jobs enqueued with a priority, claimed by workers with
//! `FOR UPDATE SKIP LOCKED` (two workers never wait on, nor take, the same run), held by a
//! lease that heartbeats renew, and taken over by anyone once it runs out. A paused run
//! becomes claimable again when a human's decisions are posted to the store.
//!
//! Claiming only hands out the right to drive a run; the run is driven by an agent given the
//! claim's owner ([`RunContext::with_owner`](agent_core::RunContext::with_owner)), so its
//! writes go on under the very lease the claim took (see [`Worker`](crate::Worker)).

use std::time::Duration;

use agent_core::Approval;
use agent_core::durable::{Lease, StoreError, StoreErrorKind};

use super::{NOW_MS, PostgresStore, db, fenced, millis};
use crate::common::{corrupt, to_json};

/// A run to enqueue: the agent (by name) that drives it, its input, its session and
/// priority.
///
/// ```
/// use agent_store::Job;
/// let job = Job::new("support", "Refund order 42").session("user-7").priority(10);
/// assert_eq!(job.agent, "support");
/// ```
#[derive(Clone, Debug, PartialEq)]
#[must_use]
pub struct Job {
    /// The run's id (default: a fresh one); enqueuing the same id twice is refused.
    pub run_id: String,
    /// The agent's name, as workers register it.
    pub agent: String,
    /// The task.
    pub input: String,
    /// The memory session the run continues.
    pub session: Option<String>,
    /// Higher runs first (default 0); equal priorities run in the order enqueued.
    pub priority: i32,
}

impl Job {
    /// A job for `agent` with this input, a fresh run id and priority 0.
    pub fn new(agent: impl Into<String>, input: impl Into<String>) -> Job {
        Job {
            run_id: agent_core::run::new_run_id(),
            agent: agent.into(),
            input: input.into(),
            session: None,
            priority: 0,
        }
    }

    /// Uses this run id (your job's id, so a job submitted twice runs once).
    pub fn run_id(mut self, run_id: impl Into<String>) -> Job {
        self.run_id = run_id.into();
        self
    }

    /// Continues this memory session.
    pub fn session(mut self, session: impl Into<String>) -> Job {
        self.session = Some(session.into());
        self
    }

    /// Runs before jobs of a lower priority.
    pub fn priority(mut self, priority: i32) -> Job {
        self.priority = priority;
        self
    }
}

/// A run a worker claimed: what to drive and the lease it is held under.
#[derive(Clone, Debug, PartialEq)]
pub struct Claimed {
    /// The run's id.
    pub run_id: String,
    /// The agent that drives it.
    pub agent: String,
    /// The task.
    pub input: String,
    /// Its memory session.
    pub session: Option<String>,
    /// Whether the run has started (then it is resumed, else started under its id).
    pub started: bool,
    /// Decisions posted for a run paused for approval, to resume it with.
    pub approvals: Option<Vec<(String, Approval)>>,
    /// The lease: the owner to drive it as, and the epoch of this claim.
    pub lease: Lease,
}

impl PostgresStore {
    /// Enqueues a run for the workers. Fails with [`StoreErrorKind::Invalid`] when a run
    /// with this id is already in the store.
    pub async fn enqueue(&self, job: &Job) -> Result<(), StoreError> {
        let client = self.client().await?;
        let statement = client
            .prepare_cached(&format!(
                "INSERT INTO runs (run_id, kind, agent, session, input, status, created_ms, \
                 updated_ms, step, message_count, new_from, control, epoch, priority) VALUES \
                 ($1, 'queued', $2, $3, $4, 'running', {NOW_MS}, {NOW_MS}, 0, 0, 0, '', 0, $5) \
                 ON CONFLICT (run_id) DO NOTHING"
            ))
            .await
            .map_err(db)?;
        let inserted = client
            .execute(
                &statement,
                &[
                    &job.run_id,
                    &job.agent,
                    &job.session,
                    &job.input,
                    &job.priority,
                ],
            )
            .await
            .map_err(db)?;
        if inserted == 0 {
            return Err(StoreError::new(
                StoreErrorKind::Invalid,
                format!("a run with the id `{}` is already in the store", job.run_id),
            ));
        }
        Ok(())
    }

    /// Claims the runnable run of the highest priority (oldest first) among those of
    /// `agents`, for `owner`, with a lease of `lease`: a queued run, a running run whose
    /// lease ran out or that nobody holds, or a paused run with decisions posted. The epoch
    /// rises. `None` when there is nothing to do. Rows other workers are claiming are
    /// skipped, not waited for.
    pub async fn claim_next(
        &self,
        owner: &str,
        agents: &[String],
        lease: Duration,
    ) -> Result<Option<Claimed>, StoreError> {
        let client = self.client().await?;
        let statement = client
            .prepare_cached(&format!(
                "WITH next AS (SELECT id FROM runs \
                 WHERE kind <> 'memory' AND status IN ('running', 'paused') \
                 AND (status = 'running' OR approvals IS NOT NULL) \
                 AND (owner IS NULL OR lease_until_ms < {NOW_MS}) AND agent = ANY($2) \
                 ORDER BY priority DESC, id LIMIT 1 FOR UPDATE SKIP LOCKED) \
                 UPDATE runs r SET owner = $1, owner_host = $3, epoch = r.epoch + 1, \
                 lease_ms = $4, lease_until_ms = {NOW_MS} + $4, updated_ms = {NOW_MS} \
                 FROM next WHERE r.id = next.id \
                 RETURNING r.run_id, r.agent, r.input, r.session, r.kind, r.approvals, r.epoch"
            ))
            .await
            .map_err(db)?;
        let row = client
            .query_opt(
                &statement,
                &[&owner, &agents, &self.inner.host, &millis(lease)],
            )
            .await
            .map_err(db)?;
        let Some(row) = row else {
            return Ok(None);
        };
        let run_id: String = row.get("run_id");
        let approvals = match row.get::<_, Option<String>>("approvals") {
            Some(text) => Some(
                serde_json::from_str(&text)
                    .map_err(|e| corrupt(&run_id, "its posted decisions", e))?,
            ),
            None => None,
        };
        Ok(Some(Claimed {
            agent: row.get("agent"),
            input: row.get("input"),
            session: row.get("session"),
            started: row.get::<_, &str>("kind") == "run",
            approvals,
            lease: Lease {
                owner: owner.to_owned(),
                epoch: u64::try_from(row.get::<_, i64>("epoch")).unwrap_or(0),
            },
            run_id,
        }))
    }

    /// Renews the lease `owner` holds on a run for its lease length. Fails with
    /// [`StoreErrorKind::Fenced`] when the owner no longer holds it (another claimed it, or
    /// it paused or ended): its driver must stop.
    pub async fn heartbeat(&self, run_id: &str, owner: &str) -> Result<(), StoreError> {
        let client = self.client().await?;
        let statement = client
            .prepare_cached(&format!(
                "UPDATE runs SET lease_until_ms = {NOW_MS} + COALESCE(lease_ms, $3) \
                 WHERE run_id = $1 AND owner = $2"
            ))
            .await
            .map_err(db)?;
        let renewed = client
            .execute(&statement, &[&run_id, &owner, &self.lease_ms()])
            .await
            .map_err(db)?;
        if renewed == 1 {
            Ok(())
        } else {
            Err(fenced(run_id))
        }
    }

    /// Lets go of a run `owner` holds, whatever the epoch (a worker draining on shutdown):
    /// it is claimable at once. Nothing happens when the owner no longer holds it.
    pub async fn release_owner(&self, run_id: &str, owner: &str) -> Result<(), StoreError> {
        let client = self.client().await?;
        client
            .execute(
                "UPDATE runs SET owner = NULL, lease_until_ms = NULL \
                 WHERE run_id = $1 AND owner = $2",
                &[&run_id, &owner],
            )
            .await
            .map_err(db)?;
        Ok(())
    }

    /// Posts a human's decisions (by call id) on a run paused for approval: the run becomes
    /// claimable by any worker, which resumes it with them. Fails with
    /// [`StoreErrorKind::NotFound`] for an unknown run and [`StoreErrorKind::Invalid`] for a
    /// run that is not paused.
    pub async fn post_approvals(
        &self,
        run_id: &str,
        decisions: &[(String, Approval)],
    ) -> Result<(), StoreError> {
        let body = to_json(decisions, "the decisions")?;
        let client = self.client().await?;
        let posted = client
            .execute(
                &format!(
                    "UPDATE runs SET approvals = $2, updated_ms = {NOW_MS} \
                     WHERE run_id = $1 AND kind = 'run' AND status = 'paused'"
                ),
                &[&run_id, &body],
            )
            .await
            .map_err(db)?;
        if posted == 1 {
            return Ok(());
        }
        let status = client
            .query_opt(
                "SELECT status FROM runs WHERE run_id = $1 AND kind <> 'memory'",
                &[&run_id],
            )
            .await
            .map_err(db)?;
        Err(match status {
            None => StoreError::not_found(run_id),
            Some(row) => StoreError::new(
                StoreErrorKind::Invalid,
                format!(
                    "run `{run_id}` is {}, not paused for approval: there is nothing to decide",
                    row.get::<_, &str>(0)
                ),
            ),
        })
    }

    /// Runs waiting in the queue or being driven (status running or paused with decisions
    /// posted), for monitoring.
    pub async fn pending(&self) -> Result<u64, StoreError> {
        let client = self.client().await?;
        let row = client
            .query_one(
                "SELECT COUNT(*) FROM runs WHERE kind <> 'memory' AND (status = 'running' \
                 OR (status = 'paused' AND approvals IS NOT NULL))",
                &[],
            )
            .await
            .map_err(db)?;
        Ok(u64::try_from(row.get::<_, i64>(0)).unwrap_or(0))
    }
}
