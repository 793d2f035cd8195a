//! The planner loop.
//!
//! [`RunState`] is a sans-I/O state machine: given what just happened ([`Input`]) it says
//! what to do next ([`Action`]): call the model with this request, run these tool calls,
//! pause, finished, failed. Every decision is its own: what the driver reports includes
//! cancellation, a hook's stop, a budget overrun and a human's approvals, each an input. It
//! performs no I/O, owns the history, and serialises, so the state after any input is a
//! complete checkpoint, to be resumed elsewhere. [`drive`] is the thin async driver that
//! carries out its actions with a [`ChatModel`](crate::ChatModel) and a
//! [`ToolSet`](crate::ToolSet), and reports what happened.

mod approval;
mod control;
mod driver;
mod handoff;
mod nested;
mod outcome;
mod repeat;
mod state;

use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use serde::{Deserialize, Serialize};
use serde_json::{Map, Value};
use tokio_util::sync::CancellationToken;

use crate::model::{ResponseFormat, ToolChoice};

pub use crate::budget::{
    Budget, BudgetKind, BudgetTracker, Exceeded, OnBudgetExceeded, Price, Prices, Refusal,
    Reservation, Spent,
};
pub use approval::{Approval, Interruption, PendingApproval};
pub use control::{EventSink, HookAction, RunEvent, RunHooks, ToolHookAction};
pub use driver::{RunControls, ToolRunner, drive, drive_with};
pub use handoff::{Member, Roster};
pub use nested::{AgentUsage, EventRelay, NestedLink, NestedResume, SubAgentRun};
pub use outcome::{AgentError, PartialRun, RunResult, StopReason};
pub(crate) use state::cap_tool_result;
pub use state::{
    Action, BudgetOverrun, Input, RunState, STATE_VERSION, ToolInvocation, ToolOutcome, Veto,
};

/// What to do when the turn limit is reached while the model still calls tools.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum OnMaxTurns {
    /// One last model call with tools disabled asks for the best answer so far.
    #[default]
    WrapUp,
    /// End with [`AgentError::MaxTurns`], carrying the history.
    Fail,
}

/// The limits of one run.
///
/// ```
/// use std::time::Duration;
/// use agent_core::{OnMaxTurns, RunLimits};
/// let limits = RunLimits {
///     max_turns: 5,
///     on_max_turns: OnMaxTurns::Fail,
///     tool_timeout: Duration::from_secs(10),
///     ..Default::default()
/// };
/// assert_eq!(limits.max_consecutive_tool_failures, 3);
/// ```
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct RunLimits {
    /// Model calls that may ask for tools (default 10).
    pub max_turns: u32,
    /// What happens when `max_turns` is reached (default: a wrap-up call without tools).
    pub on_max_turns: OnMaxTurns,
    /// Failures of the same tool in a row before the run gives up (default 3). Invalid
    /// arguments, an unknown tool name, a tool error, a panic and a timeout all count; a
    /// success resets the count.
    pub max_consecutive_tool_failures: u32,
    /// How long a tool call may take unless the tool sets its own timeout (default 60 s).
    #[serde(with = "millis")]
    pub tool_timeout: Duration,
    /// How many parallel-safe tool calls run at once (default 8).
    pub max_parallel_tools: usize,
    /// The same tool, with the same arguments, giving the same result this many times in a
    /// row: the model is told; once more and the run stops with
    /// [`AgentError::StuckLoop`] (default 3; 0 turns it off).
    #[serde(default = "default_identical_calls")]
    pub max_identical_calls: u32,
    /// The most bytes of one tool result the model reads (default 256 KiB). A longer result
    /// is cut on a character boundary and ends with a note saying how much was cut, so a
    /// tool that returns 100 MiB cannot flood the request (or the bill).
    #[serde(default = "default_result_bytes")]
    pub max_tool_result_bytes: usize,
    /// The most tool calls one model turn may make (default 128). A turn asking for more is
    /// refused before anything runs, with
    /// [`AgentError::TooManyToolCalls`].
    #[serde(default = "default_calls_per_turn")]
    pub max_tool_calls_per_turn: u32,
    /// The most handoffs (transfers to another agent) one run may make (default 10). A turn
    /// that asks for one more ends the run with
    /// [`AgentError::HandoffLimit`], so two agents cannot hand a conversation back and forth
    /// forever.
    #[serde(default = "default_handoffs")]
    pub max_handoffs: u32,
}

fn default_handoffs() -> u32 {
    10
}

fn default_identical_calls() -> u32 {
    3
}

fn default_result_bytes() -> usize {
    256 * 1024
}

fn default_calls_per_turn() -> u32 {
    128
}

impl Default for RunLimits {
    fn default() -> Self {
        RunLimits {
            max_turns: 10,
            on_max_turns: OnMaxTurns::WrapUp,
            max_consecutive_tool_failures: 3,
            tool_timeout: Duration::from_secs(60),
            max_parallel_tools: 8,
            max_identical_calls: default_identical_calls(),
            max_tool_result_bytes: default_result_bytes(),
            max_tool_calls_per_turn: default_calls_per_turn(),
            max_handoffs: default_handoffs(),
        }
    }
}

mod millis {
    use std::time::Duration;

    use serde::{Deserialize, Deserializer, Serializer};

    pub fn serialize<S: Serializer>(d: &Duration, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_u64(u64::try_from(d.as_millis()).unwrap_or(u64::MAX))
    }

    pub fn deserialize<'de, D: Deserializer<'de>>(d: D) -> Result<Duration, D::Error> {
        u64::deserialize(d).map(Duration::from_millis)
    }
}

/// Request options an agent applies to every model call.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
pub struct ModelSettings {
    /// Call the model's streaming endpoint (and assemble the answer) instead of waiting for
    /// the whole answer. Same result; first bytes arrive sooner, and long answers do not hit
    /// the request timeout.
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub stream: bool,
    /// Whether and which tools the model may call.
    #[serde(default)]
    pub tool_choice: ToolChoice,
    /// Sampling temperature.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub temperature: Option<f32>,
    /// The most tokens one answer may have.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub max_output_tokens: Option<u32>,
    /// Sequences that end generation.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub stop: Vec<String>,
    /// The shape of the final answer.
    #[serde(default)]
    pub response_format: ResponseFormat,
    /// Provider-specific request fields.
    #[serde(default, skip_serializing_if = "Map::is_empty")]
    pub extra: Map<String, Value>,
}

/// The caller's side of a run: which session, and a token to cancel it.
///
/// ```
/// use agent_core::RunContext;
/// let ctx = RunContext::new().with_session("user-42");
/// let cancel = ctx.cancel.clone(); // fire from anywhere: cancel.cancel()
/// # drop(cancel);
/// ```
#[derive(Clone, Debug, Default)]
pub struct RunContext {
    /// The memory session to load and append to; `None` runs without memory.
    pub session: Option<String>,
    /// Cancels the run when fired.
    pub cancel: CancellationToken,
    /// Limits shared by this run and every run nested in it (agents used as tools).
    pub budget: Option<std::sync::Arc<BudgetTracker>>,
    /// The id of the run to start (default: a fresh one). With a store, a second run with
    /// the same id is refused, so a job submitted twice runs once.
    pub run_id: Option<String>,
    /// The name this run's driver holds the run's lease under in a store (default: a fresh
    /// [`Lease::new_owner`](crate::durable::Lease::new_owner)). A worker that claimed the run
    /// from a queue passes the owner it claimed it as, so the run goes on under that claim.
    pub owner: Option<String>,
    /// Where a nested run's events go (set by an agent used as a tool).
    pub(crate) relay: Option<EventRelay>,
}

impl RunContext {
    /// A context with no session and a fresh cancellation token.
    pub fn new() -> Self {
        Self::default()
    }

    /// Uses this memory session.
    #[must_use]
    pub fn with_session(mut self, session: impl Into<String>) -> Self {
        self.session = Some(session.into());
        self
    }

    /// Spends from this budget (shared: pass the same tracker to several runs to give them
    /// one budget).
    #[must_use]
    pub fn with_budget(mut self, budget: std::sync::Arc<BudgetTracker>) -> Self {
        self.budget = Some(budget);
        self
    }

    /// Starts the run under this id instead of a fresh one (your job's id, say), so it is
    /// known before the run starts: to resume it after a crash, or to refuse a duplicate.
    #[must_use]
    pub fn with_run_id(mut self, run_id: impl Into<String>) -> Self {
        self.run_id = Some(run_id.into());
        self
    }

    /// Drives the run (creates or claims it in the store) as this lease owner: see
    /// [`owner`](Self::owner).
    #[must_use]
    pub fn with_owner(mut self, owner: impl Into<String>) -> Self {
        self.owner = Some(owner.into());
        self
    }

    /// Relays this run's events to a run it is nested in (what
    /// [`AgentTool`](crate::AgentTool) does with [`NestedLink::relay_for`]).
    #[must_use]
    pub fn with_relay(mut self, relay: EventRelay) -> Self {
        self.relay = Some(relay);
        self
    }

    /// Uses this cancellation token.
    #[must_use]
    pub fn with_cancel(mut self, cancel: CancellationToken) -> Self {
        self.cancel = cancel;
        self
    }
}

/// A fresh, process-unique run id (`run_` and 16 hex digits).
pub fn new_run_id() -> String {
    static COUNTER: AtomicU64 = AtomicU64::new(0);
    let nanos = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_nanos() as u64);
    let n = COUNTER.fetch_add(1, Ordering::Relaxed);
    // Mix so that ids from one process do not look sequential.
    let mixed = (nanos ^ n.wrapping_mul(0x9E37_79B9_7F4A_7C15)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
    format!("run_{mixed:016x}")
}
