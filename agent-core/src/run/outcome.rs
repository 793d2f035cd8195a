//! How a run ends: [`RunResult`] with an answer (or paused for approval), [`AgentError`]
//! without one, and [`PartialRun`], the history an error carries so nothing is lost.
//!
//! These live beside the run, above the lower layers' errors ([`ModelError`], [`ToolError`](crate::ToolError)
//! in `error.rs`), which never refer back to them.

use serde::{Deserialize, Serialize};

use super::approval::Interruption;
use super::nested::AgentUsage;
use crate::budget::BudgetKind;
use crate::error::{MemoryError, ModelError};
use crate::message::{HistoryError, Message, Usage};

/// Why a run ended with an answer.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum StopReason {
    /// The model gave its final answer.
    Completed,
    /// The final answer hit the output token limit and may be cut off.
    OutputLimit,
    /// The provider filtered the final answer.
    ContentFilter,
    /// The turn limit was reached; the answer came from the wrap-up call with tools
    /// disabled.
    MaxTurns,
    /// A budget set to wrap up ran out; the answer came from the wrap-up call with tools
    /// disabled.
    BudgetExhausted,
    /// Paused: tool calls wait for a human's decision (see [`RunResult::interruption`]).
    AwaitingApproval,
}

/// The outcome of a finished run.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct RunResult {
    /// The run's id.
    pub run_id: String,
    /// The final answer.
    pub text: String,
    /// Every message this run added: the input, each model turn, each tool result.
    pub new_messages: Vec<Message>,
    /// Tokens used in total: this run's model calls and those of the agents it used as
    /// tools, at any depth.
    pub usage: Usage,
    /// Tokens used by each model call, in order.
    pub turn_usage: Vec<Usage>,
    /// The model that answered each model call, in order (beside `turn_usage`): with a
    /// [`FallbackModel`](crate::resilience::FallbackModel), the one that took the call.
    /// Empty for an answer that named no model (one fed to a [`RunState`](crate::RunState)
    /// directly; the driver names every answer).
    #[serde(default)]
    pub turn_models: Vec<String>,
    /// How many model calls were made.
    pub turns: u32,
    /// Why the run ended.
    pub stop_reason: StopReason,
    /// The typed answer, checked against its schema, when the run asked for one
    /// ([`LlmAgent::run_as`](crate::LlmAgent::run_as)); `text` holds it as JSON.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub output: Option<serde_json::Value>,
    /// What the agents this run used as tools spent (their own sub-agents inside), in the
    /// order their runs ended; `usage` includes it. See [`usage_tree`](Self::usage_tree).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub sub_agents: Vec<AgentUsage>,
    /// Set when the run paused for approval: the calls waiting and the state to resume.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub interruption: Option<Box<Interruption>>,
}

impl RunResult {
    /// What the run spent, as a tree: this run (named `agent`) → its calls and its
    /// sub-agents' runs → theirs. Price it with [`AgentUsage::cost_usd`] or print it with
    /// [`AgentUsage::render`].
    pub fn usage_tree(&self, agent: &str) -> AgentUsage {
        AgentUsage {
            agent: agent.to_owned(),
            turn_usage: self.turn_usage.clone(),
            turn_models: self.turn_models.clone(),
            sub_agents: self.sub_agents.clone(),
        }
    }

    /// The result as the history of a run that did not end well (for errors raised after
    /// the answer came: a hook or guardrail refusing it).
    pub fn into_partial(self) -> PartialRun {
        PartialRun {
            run_id: self.run_id,
            new_messages: self.new_messages,
            usage: self.usage,
            turns: self.turns,
        }
    }
}

/// What a run had done when it ended without an answer. Its messages keep the history
/// invariant: every tool call in them is answered.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
pub struct PartialRun {
    /// The run's id.
    pub run_id: String,
    /// The messages the run added so far.
    pub new_messages: Vec<Message>,
    /// Tokens used so far.
    pub usage: Usage,
    /// How many model calls were made.
    pub turns: u32,
}

/// A run ended without a final answer.
///
/// Every variant that ends a started run carries a [`PartialRun`]: the messages the run added
/// so far (with every tool call answered), the usage and the turns taken.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum AgentError {
    /// The model failed (after the backend's own retries).
    #[error("model call failed on turn {}: {source}", partial.turns + 1)]
    Model {
        /// The model's error.
        source: ModelError,
        /// What the run had done before.
        partial: Box<PartialRun>,
    },
    /// The same tool failed too many times in a row.
    #[error("tool `{tool}` failed {failures} times in a row; last error: {last_error}")]
    ToolFailureLimit {
        /// The tool (as the model named it).
        tool: String,
        /// How many consecutive failures.
        failures: u32,
        /// The last failure's message.
        last_error: String,
        /// What the run had done before.
        partial: Box<PartialRun>,
    },
    /// The model kept calling the same tool with the same arguments for the same result,
    /// after being told.
    #[error(
        "the run was stopped: `{tool}` was called {repeats} times in a row with the same arguments and result"
    )]
    StuckLoop {
        /// The tool.
        tool: String,
        /// How many identical calls in a row.
        repeats: u32,
        /// What the run had done before.
        partial: Box<PartialRun>,
    },
    /// The turn limit was reached and the run is configured to fail rather than wrap up.
    #[error("the run reached its limit of {max_turns} turns without a final answer")]
    MaxTurns {
        /// The limit.
        max_turns: u32,
        /// What the run had done before.
        partial: Box<PartialRun>,
    },
    /// The conversation broke the history invariant; no request was sent.
    #[error("invalid conversation history: {0}")]
    History(#[from] HistoryError),
    /// The memory store failed.
    #[error(transparent)]
    Memory(#[from] MemoryError),
    /// A budget ran out (and the budget says to fail rather than wrap up).
    #[error("the {kind} budget was exceeded: {used} of {limit}")]
    BudgetExceeded {
        /// Which limit.
        kind: BudgetKind,
        /// The limit.
        limit: f64,
        /// The spending that broke it.
        used: f64,
        /// What the run had done before.
        partial: Box<PartialRun>,
    },
    /// A hook or guardrail stopped the run.
    #[error("the run was stopped: {reason}")]
    Stopped {
        /// Why, as the hook or guardrail said.
        reason: String,
        /// What the run had done before.
        partial: Box<PartialRun>,
    },
    /// An output guardrail refused the final answer (or the model ran out of retries).
    #[error("the answer was refused: {reason}")]
    OutputRejected {
        /// The guardrail's reason.
        reason: String,
        /// The run, the refused answer included.
        partial: Box<PartialRun>,
    },
    /// The input was refused by an input guardrail before any model call.
    #[error("the input was refused: {0}")]
    InputRejected(String),
    /// The caller cancelled the run.
    #[error("the run was cancelled")]
    Cancelled {
        /// What the run had done before.
        partial: Box<PartialRun>,
    },
    /// One model turn asked for more tool calls than
    /// [`RunLimits::max_tool_calls_per_turn`](crate::RunLimits::max_tool_calls_per_turn)
    /// allows; none of them ran, and the turn is not in the history.
    #[error(
        "the model asked for {calls} tool calls in one turn; at most {limit} are allowed (RunLimits::max_tool_calls_per_turn)"
    )]
    TooManyToolCalls {
        /// How many calls the turn made.
        calls: usize,
        /// The limit.
        limit: u32,
        /// What the run had done before that turn.
        partial: Box<PartialRun>,
    },
    /// A model turn asked to hand the conversation off once more than
    /// [`RunLimits::max_handoffs`](crate::RunLimits::max_handoffs) allows (agents handing it
    /// back and forth); that turn's calls were not run.
    #[error("the run reached its limit of {limit} handoffs (RunLimits::max_handoffs)")]
    HandoffLimit {
        /// The limit.
        limit: u32,
        /// What the run had done before, the refused turn included.
        partial: Box<PartialRun>,
    },
    /// The model did not give a valid typed answer within the retry budget. `attempts`
    /// holds each rejected answer's error, in order (the JSON pointer and what was
    /// expected, or a validator's message).
    #[error(
        "no valid answer after {} attempts; last error: {}",
        attempts.len(),
        attempts.last().map_or("", String::as_str)
    )]
    InvalidOutput {
        /// Why each attempt was rejected.
        attempts: Vec<String>,
        /// The run, every attempt included.
        partial: Box<PartialRun>,
    },
    /// The answer type cannot be asked for as configured (a map in a strict schema, a mode
    /// the model does not support); nothing was sent.
    #[error("the answer type cannot be asked for: {0}")]
    OutputSchema(String),
    /// A typed run paused for approval before its answer: resume it with the decisions
    /// ([`TypedAgent::resume_with_approvals`](crate::output::TypedAgent::resume_with_approvals)).
    #[error("the run paused for approval before giving its answer")]
    Paused(Box<RunResult>),
    /// A saved run state cannot be resumed by this version or in this situation.
    #[error("cannot resume run: {0}")]
    InvalidState(String),
    /// The run's store failed or refused (see [`StoreErrorKind`](crate::durable::StoreErrorKind)).
    /// A run that had started is kept up to its last committed step: resume it with
    /// [`LlmAgent::resume_run`](crate::LlmAgent::resume_run) once the store works.
    #[error("run store: {0}")]
    Store(#[from] crate::durable::StoreError),
}

impl AgentError {
    /// The history and usage of the run so far, when the run had started.
    pub fn partial(&self) -> Option<&PartialRun> {
        match self {
            AgentError::Model { partial, .. }
            | AgentError::ToolFailureLimit { partial, .. }
            | AgentError::MaxTurns { partial, .. }
            | AgentError::StuckLoop { partial, .. }
            | AgentError::Stopped { partial, .. }
            | AgentError::BudgetExceeded { partial, .. }
            | AgentError::OutputRejected { partial, .. }
            | AgentError::TooManyToolCalls { partial, .. }
            | AgentError::HandoffLimit { partial, .. }
            | AgentError::InvalidOutput { partial, .. }
            | AgentError::Cancelled { partial } => Some(partial),
            _ => None,
        }
    }
}
