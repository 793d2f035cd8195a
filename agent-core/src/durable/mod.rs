//! Durable runs: the interface between a run and the store that keeps it.
//!
//! A run with a [`RunStore`] writes a journal as it goes, so that a crash, a deploy or a
//! `kill -9` loses nothing and repeats no side effect:
//!
//! - the run's creation (input, agent, session, the context it was given);
//! - every model response, before the state machine consumes it;
//! - for each tool call that is not read-only, an *intent* before it runs and an *outcome*
//!   as it finishes (per call; an outcome written twice is kept once);
//! - each committed step: the state machine's control state and the messages added since the
//!   last step (a delta: a 100-turn run writes each message once, not the history 100 times);
//! - approval decisions, and the final status.
//!
//! [`LlmAgent::resume_run`](crate::LlmAgent::resume_run) loads the last committed step,
//! feeds the journal written after it back to the machine, and runs only what never
//! finished. A call with an intent and no outcome was interrupted while it ran: a read-only
//! or idempotent tool runs again with the same [`idempotency_key`](crate::ToolContext::idempotency_key);
//! a side-effecting one is never run again blindly (see [`InterruptedCalls`]).
//!
//! This module holds the trait and the records; the stores themselves live in the
//! `agent-store` crate (SQLite embedded, PostgreSQL for many workers). It never performs I/O
//! of its own.

mod crash;
mod log;

use std::fmt;

use async_trait::async_trait;
use serde::{Deserialize, Serialize};
use serde_json::Value;

use crate::error::ToolErrorKind;
use crate::memory::Memory;
use crate::message::{Message, Usage};
use crate::model::ChatResponse;
use crate::run::{Approval, StopReason, Veto};

pub use crash::crash_point;
pub(crate) use log::RunLog;

/// Where a run stands, as a store records it.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum RunStatus {
    /// Started and not over: being driven, or interrupted (a crash) and waiting for a resume.
    Running,
    /// Paused for a human's approval; resumes with
    /// [`LlmAgent::resume_run_with_approvals`](crate::LlmAgent::resume_run_with_approvals).
    Paused,
    /// Ended with an answer.
    Finished,
    /// Ended without an answer (an error, a limit, a guardrail).
    Failed,
    /// Cancelled by the caller.
    Cancelled,
}

impl RunStatus {
    /// The status as stored (`running`, `paused`, `finished`, `failed`, `cancelled`).
    pub fn as_str(self) -> &'static str {
        match self {
            RunStatus::Running => "running",
            RunStatus::Paused => "paused",
            RunStatus::Finished => "finished",
            RunStatus::Failed => "failed",
            RunStatus::Cancelled => "cancelled",
        }
    }

    /// Reads a stored status.
    pub fn parse(text: &str) -> Option<RunStatus> {
        Some(match text {
            "running" => RunStatus::Running,
            "paused" => RunStatus::Paused,
            "finished" => RunStatus::Finished,
            "failed" => RunStatus::Failed,
            "cancelled" => RunStatus::Cancelled,
            _ => return None,
        })
    }

    /// Whether the run is over (nothing left to resume).
    pub fn is_final(self) -> bool {
        matches!(
            self,
            RunStatus::Finished | RunStatus::Failed | RunStatus::Cancelled
        )
    }
}

impl fmt::Display for RunStatus {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// The right to write a run's journal, held by one driver at a time.
///
/// A store gives one out when a run is created or claimed; the `epoch` rises at every claim,
/// and every write names the lease it was made under, so a driver that lost its run (another
/// process took it over) gets [`StoreErrorKind::Fenced`] and none of its late writes land.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Lease {
    /// Who holds it: `pid:<process id>:<random>` for drivers in this library.
    pub owner: String,
    /// Rises at every claim of the run.
    pub epoch: u64,
}

impl Lease {
    /// A fresh owner name for a driver in this process: `pid:<pid>:<random hex>`. Stores on
    /// one machine may read the process id to tell whether the owner is still alive.
    pub fn new_owner() -> String {
        let id = crate::run::new_run_id();
        format!(
            "pid:{}:{}",
            std::process::id(),
            id.trim_start_matches("run_")
        )
    }

    /// The process id in an owner name made by [`new_owner`](Self::new_owner).
    pub fn owner_pid(owner: &str) -> Option<u32> {
        owner.strip_prefix("pid:")?.split(':').next()?.parse().ok()
    }
}

/// A new run, as [`RunStore::create_run`] records it.
#[derive(Clone, Copy, Debug)]
pub struct NewRun<'a> {
    /// The run's id.
    pub run_id: &'a str,
    /// The agent that runs it (a resume must use an agent of the same name).
    pub agent: &'a str,
    /// The memory session the run continues, if any.
    pub session: Option<&'a str>,
    /// The task, as the user gave it.
    pub input: &'a str,
    /// The state machine's control state (see [`RunState::control_json`](crate::RunState::control_json)).
    pub control: &'a str,
    /// Every message of the run so far: its context (instructions, earlier history), then
    /// its input.
    pub messages: &'a [Message],
    /// Where the run's own messages begin in `messages`.
    pub new_from: usize,
    /// Who drives it first.
    pub owner: &'a str,
}

/// One journal record: something that happened, written before the machine hears of it.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(tag = "kind", rename_all = "snake_case")]
pub enum JournalEntry {
    /// A model answered (model call number `turn`), with the objection raised on it if any.
    ModelResponse {
        /// The model call's number (1 for the first).
        turn: u32,
        /// The answer.
        response: ChatResponse,
        /// A hook's stop or a budget overrun found on the answer.
        #[serde(default, skip_serializing_if = "Option::is_none")]
        veto: Option<Veto>,
    },
    /// A call of a tool that is not read-only is about to run.
    ToolIntent {
        /// The model call whose answer made the call.
        turn: u32,
        /// The call's id.
        call_id: String,
        /// The tool.
        name: String,
        /// The checked arguments.
        args: Value,
    },
    /// A call finished (or was answered without running: a hook skipped it).
    ToolOutcome {
        /// The model call whose answer made the call.
        turn: u32,
        /// The call's id.
        call_id: String,
        /// What it returned.
        outcome: OutcomeRecord,
    },
    /// A human's decisions on paused calls.
    Approvals {
        /// By call id.
        decisions: Vec<(String, Approval)>,
    },
    /// A call that ran an agent reported what the nested run spent, or its pause.
    SubAgent {
        /// The call's id.
        call_id: String,
        /// The report.
        run: Box<crate::run::SubAgentRun>,
    },
    /// The conversation was handed to another agent.
    Handoff {
        /// The agent now active.
        agent: String,
        /// Its instructions.
        #[serde(default, skip_serializing_if = "Option::is_none")]
        instructions: Option<String>,
        /// The conversation after the handoff's input filter, if it has one.
        #[serde(default, skip_serializing_if = "Option::is_none")]
        conversation: Option<Vec<crate::message::Message>>,
    },
}

impl JournalEntry {
    /// The kind, as stored: `model_response`, `tool_intent`, `tool_outcome`, `approvals`,
    /// `sub_agent`, `handoff`.
    pub fn kind(&self) -> &'static str {
        match self {
            JournalEntry::ModelResponse { .. } => "model_response",
            JournalEntry::ToolIntent { .. } => "tool_intent",
            JournalEntry::ToolOutcome { .. } => "tool_outcome",
            JournalEntry::Approvals { .. } => "approvals",
            JournalEntry::SubAgent { .. } => "sub_agent",
            JournalEntry::Handoff { .. } => "handoff",
        }
    }

    /// The turn and call id of an intent or outcome (what makes a second write of the same
    /// record a duplicate).
    pub fn call_key(&self) -> Option<(u32, &str)> {
        match self {
            JournalEntry::ToolIntent { turn, call_id, .. }
            | JournalEntry::ToolOutcome { turn, call_id, .. } => Some((*turn, call_id)),
            _ => None,
        }
    }
}

/// A tool call's outcome as journalled: what the model will read.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct OutcomeRecord {
    /// Whether the call failed.
    pub is_error: bool,
    /// The result text, or the error's message (as the model reads it).
    pub content: String,
    /// The failure's kind.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub error_kind: Option<ToolErrorKind>,
    /// How long it ran, in milliseconds.
    #[serde(default)]
    pub duration_ms: u64,
}

/// A committed step, as [`RunStore::commit`] writes it.
#[derive(Clone, Copy, Debug)]
pub struct Step<'a> {
    /// The step's number: one more than the last committed one.
    pub step: u64,
    /// The state machine's control state (no messages).
    pub control: &'a str,
    /// The index of `messages[0]` in the run's conversation: the store already holds every
    /// message before it.
    pub messages_from: usize,
    /// The messages added since the last step.
    pub messages: &'a [Message],
    /// The run's status after this step.
    pub status: RunStatus,
    /// How the run ended, when `status` is final.
    pub end: Option<&'a RunEnd>,
    /// Appends the run's own messages to this memory session, in the same transaction
    /// (only with [`RunStatus::Finished`]).
    pub session: Option<&'a str>,
}

/// How a run ended, as a store keeps it for listing.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
pub struct RunEnd {
    /// The final answer, when there is one.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub text: Option<String>,
    /// Why it ended without one.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub error: Option<String>,
    /// Why it stopped, when it answered.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub stop_reason: Option<StopReason>,
    /// Tokens used.
    #[serde(default)]
    pub usage: Usage,
    /// Model calls made.
    #[serde(default)]
    pub turns: u32,
}

/// What a store knows of a run, for listing.
#[derive(Clone, Debug, PartialEq)]
pub struct RunInfo {
    /// The run's id.
    pub run_id: String,
    /// The agent that ran it.
    pub agent: String,
    /// Its memory session.
    pub session: Option<String>,
    /// The task.
    pub input: String,
    /// Where it stands.
    pub status: RunStatus,
    /// When it was created (milliseconds since the Unix epoch).
    pub created_ms: i64,
    /// When it was last written.
    pub updated_ms: i64,
    /// Committed steps.
    pub steps: u64,
    /// Messages of its conversation (context included).
    pub message_count: usize,
    /// How it ended, once it has.
    pub end: Option<RunEnd>,
}

/// A run as loaded from a store: its last committed step and what was journalled after it.
#[derive(Clone, Debug)]
pub struct StoredRun {
    /// The summary.
    pub info: RunInfo,
    /// The control state of the last committed step.
    pub control: String,
    /// Every message of the run's conversation, context included.
    pub messages: Vec<Message>,
    /// Where the run's own messages begin.
    pub new_from: usize,
    /// The records written after the last committed step, oldest first.
    pub journal: Vec<JournalEntry>,
}

/// Which runs [`RunStore::list_runs`] returns: newest first, filtered, one page at a time.
///
/// ```
/// use agent_core::durable::{RunQuery, RunStatus};
/// let page = RunQuery::new().status(RunStatus::Paused).session("user-42").limit(20);
/// assert_eq!(page.limit, 20);
/// ```
#[derive(Clone, Debug, PartialEq)]
#[must_use]
pub struct RunQuery {
    /// Only runs with this status.
    pub status: Option<RunStatus>,
    /// Only runs of this memory session.
    pub session: Option<String>,
    /// Only runs older than this run (the last id of the previous page).
    pub before: Option<String>,
    /// At most this many (default 50).
    pub limit: usize,
}

impl Default for RunQuery {
    fn default() -> Self {
        RunQuery {
            status: None,
            session: None,
            before: None,
            limit: 50,
        }
    }
}

impl RunQuery {
    /// Every run, newest first, 50 at a time.
    pub fn new() -> Self {
        Self::default()
    }

    /// Only runs with this status.
    pub fn status(mut self, status: RunStatus) -> Self {
        self.status = Some(status);
        self
    }

    /// Only runs of this session.
    pub fn session(mut self, session: impl Into<String>) -> Self {
        self.session = Some(session.into());
        self
    }

    /// The page after the one that ended with this run.
    pub fn before(mut self, run_id: impl Into<String>) -> Self {
        self.before = Some(run_id.into());
        self
    }

    /// At most this many runs.
    pub fn limit(mut self, limit: usize) -> Self {
        self.limit = limit;
        self
    }
}

/// What a memory session holds.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct SessionInfo {
    /// Whole runs appended to it.
    pub runs: u64,
    /// Messages in its history.
    pub messages: u64,
}

/// What a store failure means for the caller.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
#[non_exhaustive]
pub enum StoreErrorKind {
    /// No run has this id.
    NotFound,
    /// The run is over; there is nothing to resume.
    Finished,
    /// Another driver (this process or another) holds the run.
    Busy,
    /// This driver lost the run to another one; its write was refused.
    Fenced,
    /// The store was written by a newer version of this library.
    NewerFormat,
    /// Stored data cannot be read.
    Corrupt,
    /// The store cannot be reached or written (disk, locks, connection).
    Unavailable,
    /// The caller asked for something the run does not allow (wrong agent, bad argument).
    Invalid,
}

/// A store failure: what failed, and what to do about it.
#[derive(Debug, thiserror::Error)]
#[error("{message}")]
pub struct StoreError {
    /// What it means.
    pub kind: StoreErrorKind,
    /// What failed and what to do, for a person.
    pub message: String,
    /// The underlying cause.
    #[source]
    pub source: Option<Box<dyn std::error::Error + Send + Sync>>,
}

impl StoreError {
    /// An error of this kind.
    pub fn new(kind: StoreErrorKind, message: impl Into<String>) -> Self {
        StoreError {
            kind,
            message: message.into(),
            source: None,
        }
    }

    /// The same error with its cause.
    #[must_use]
    pub fn with_source(mut self, source: impl std::error::Error + Send + Sync + 'static) -> Self {
        self.source = Some(Box::new(source));
        self
    }

    /// No run has this id.
    pub fn not_found(run_id: &str) -> Self {
        StoreError::new(
            StoreErrorKind::NotFound,
            format!("there is no run `{run_id}` in this store (list runs to see the ids it holds)"),
        )
    }
}

/// Keeps runs and their journals, and (as a [`Memory`]) the sessions they continue.
///
/// Implemented by `agent-store` (SQLite, PostgreSQL); its conformance suite states the
/// contract every implementation keeps. Writes name the [`Lease`] they are made under and
/// fail with [`StoreErrorKind::Fenced`] when another driver has claimed the run since.
#[async_trait]
pub trait RunStore: Memory + Send + Sync + fmt::Debug {
    /// Records a new run (status running, step 0), held by `run.owner`.
    async fn create_run(&self, run: NewRun<'_>) -> Result<Lease, StoreError>;

    /// Takes a run over to drive it on: fails with [`StoreErrorKind::Busy`] while a live
    /// driver holds it, [`StoreErrorKind::Finished`] when it is over. The epoch rises.
    async fn claim_run(&self, run_id: &str, owner: &str) -> Result<(StoredRun, Lease), StoreError>;

    /// Appends a journal record. An intent or outcome already recorded for the same turn and
    /// call is ignored.
    async fn journal(
        &self,
        run_id: &str,
        lease: &Lease,
        entry: &JournalEntry,
    ) -> Result<(), StoreError>;

    /// Commits a step atomically: control state, message delta, status (and, at the end,
    /// the session append). A final status releases the lease.
    async fn commit(&self, run_id: &str, lease: &Lease, step: Step<'_>) -> Result<(), StoreError>;

    /// Lets go of a run without ending it (it stays resumable by anyone).
    async fn release(&self, run_id: &str, lease: &Lease) -> Result<(), StoreError>;

    /// Loads a run without taking it.
    async fn load_run(&self, run_id: &str) -> Result<StoredRun, StoreError>;

    /// Lists runs, newest first.
    async fn list_runs(&self, query: &RunQuery) -> Result<Vec<RunInfo>, StoreError>;

    /// Deletes a run with its messages and journal (and its part of its session's history).
    /// `false` when there was no such run.
    async fn delete_run(&self, run_id: &str) -> Result<bool, StoreError>;

    /// What a session holds.
    async fn session_info(&self, session: &str) -> Result<SessionInfo, StoreError>;
}

/// What a resumed run does with a call of a side-effecting tool that was interrupted while
/// it ran (an intent and no outcome): it may or may not have taken effect.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum InterruptedCalls {
    /// The model reads a result saying the outcome is unknown because the run was
    /// interrupted (the default): it can check, or ask the user.
    #[default]
    ReportUnknown,
    /// A human decides through the approval path: the run pauses with the call pending;
    /// approving runs it again.
    AskHuman,
}
