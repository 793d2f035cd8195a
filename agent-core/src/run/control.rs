//! What a caller sees and steers while a run goes: [`RunEvent`]s as they happen, and
//! [`RunHooks`] that may continue, skip a tool, rewrite its arguments or stop the run.
//!
//! Both are driver-side: the driver sends the events and consults the hooks, and what a hook
//! decides reaches the state machine as an input (a stop is [`Input::Stopped`], or
//! [`Input::ModelResponseVetoed`] after a model call; a skipped or replaced result is the
//! call's [`Input::ToolFinished`]), so the machine's inputs alone replay the run.
//!
//! [`Input::Stopped`]: super::Input::Stopped
//! [`Input::ModelResponseVetoed`]: super::Input::ModelResponseVetoed
//! [`Input::ToolFinished`]: super::Input::ToolFinished

use std::time::Duration;

use async_trait::async_trait;
use serde_json::Value;

use super::RunResult;
use super::approval::PendingApproval;
use super::outcome::AgentError;
use super::state::ToolInvocation;
use crate::error::ToolError;
use crate::message::Usage;
use crate::model::{ChatRequest, ChatResponse};
use crate::tool::ToolOutput;

/// Something that happened in a run, in order.
///
/// With a streaming model (`LlmAgent::builder(..).streaming(true)`) text and reasoning
/// arrive as many small deltas; without, one delta per turn.
#[derive(Debug)]
#[non_exhaustive]
pub enum RunEvent {
    /// A model call begins (turns count from 1).
    TurnStarted {
        /// Its number.
        turn: u32,
    },
    /// Answer text.
    TextDelta(String),
    /// Reasoning text.
    ReasoningDelta(String),
    /// A streamed model turn began a tool call (its arguments follow as
    /// [`ToolArgumentsDelta`](Self::ToolArgumentsDelta)s; it runs, if at all, after the turn).
    ToolCallStreamed {
        /// Its position among the turn's calls.
        index: usize,
        /// The call's id (the one a later [`ToolCallStarted`](Self::ToolCallStarted) names).
        call_id: String,
        /// The tool.
        name: String,
    },
    /// More of a streamed tool call's argument text.
    ToolArgumentsDelta {
        /// Its position among the turn's calls.
        index: usize,
        /// The next piece of the JSON arguments.
        arguments: String,
    },
    /// A tool call is about to run, with its checked arguments.
    ToolCallStarted {
        /// The call's id.
        call_id: String,
        /// The tool.
        name: String,
        /// Its arguments.
        arguments: Value,
    },
    /// A tool call finished, was skipped by a hook, or was refused by the checks (unknown
    /// tool, invalid arguments: then without a `ToolCallStarted` before it).
    ToolCallFinished {
        /// The call's id.
        call_id: String,
        /// The tool.
        name: String,
        /// What the model will read.
        content: String,
        /// Whether it failed.
        is_error: bool,
        /// How long it ran.
        duration: Duration,
    },
    /// A model request waited for a shared limit before it was sent
    /// ([`SharedLimit`](crate::resilience::SharedLimit)); comes before the call's answer.
    ModelWaited {
        /// The limit's name.
        limit: String,
        /// What it waited for: requests in flight, requests per minute, or the provider's
        /// retry-after.
        reason: String,
        /// How long.
        waited: Duration,
    },
    /// A model call ended.
    TurnFinished {
        /// Its number.
        turn: u32,
        /// Its tokens.
        usage: Usage,
        /// The model that answered.
        model: String,
        /// What it cost in US dollars, priced at the model that answered with the run's
        /// budget's price table (else the default one); `None` when the model has no price
        /// (unknown, not free).
        cost_usd: Option<f64>,
    },
    /// An event of a run nested in this one (an agent used as a tool), in order: `agent`
    /// is the nested agent, `depth` 1 for a tool of this run's agent, 2 for a tool of that
    /// one, and so on. The nested run's end comes as the tool call's result.
    SubAgent {
        /// The nested agent's name.
        agent: String,
        /// How deep it is nested.
        depth: u32,
        /// What happened in it.
        event: Box<RunEvent>,
    },
    /// The conversation was handed from one agent to another: the new one's instructions
    /// and tools apply from the next model call on.
    Handoff {
        /// The agent that handed it off.
        from: String,
        /// The agent now active.
        to: String,
    },
    /// The run paused: these calls wait for a human's decision. The final event follows.
    ApprovalRequested(Vec<PendingApproval>),
    /// The run ended with a result (also when paused for approval).
    Finished(RunResult),
    /// The run ended with an error.
    Failed(AgentError),
}

/// Where a run's events go. With nobody listening, events are never built (no copies of
/// text or arguments on the plain `run` path).
pub struct EventSink<'a>(Option<&'a mut (dyn FnMut(RunEvent) + Send)>);

impl<'a> EventSink<'a> {
    /// Events go to this callback.
    pub fn new(callback: &'a mut (dyn FnMut(RunEvent) + Send)) -> Self {
        EventSink(Some(callback))
    }

    /// Nobody listens.
    pub fn none() -> Self {
        EventSink(None)
    }

    /// Whether anybody listens.
    pub fn is_listening(&self) -> bool {
        self.0.is_some()
    }

    /// Sends the event `make` builds, if anybody listens.
    pub fn send(&mut self, make: impl FnOnce() -> RunEvent) {
        if let Some(callback) = self.0.as_mut() {
            callback(make());
        }
    }

    /// The same sink, borrowed for a shorter time.
    pub fn reborrow(&mut self) -> EventSink<'_> {
        EventSink(
            self.0
                .as_mut()
                .map(|c| &mut **c as &mut (dyn FnMut(RunEvent) + Send)),
        )
    }
}

/// What a model hook decides.
#[derive(Clone, Debug, PartialEq)]
pub enum HookAction {
    /// Go on.
    Continue,
    /// End the run with [`AgentError::Stopped`] and this reason.
    Stop(String),
}

/// What a tool hook decides.
#[derive(Clone, Debug, PartialEq)]
pub enum ToolHookAction {
    /// Go on.
    Continue,
    /// Before the call: do not run it, use this result. After: replace the result.
    Skip(Result<ToolOutput, ToolError>),
    /// Before the call: run it with these arguments instead (checked against the schema).
    RewriteArgs(Value),
    /// End the run with [`AgentError::Stopped`] and this reason.
    Stop(String),
}

/// Typed callbacks around each model call and each tool call. Every method has a default
/// that continues, so a hook implements only what it needs. Guardrails on tool arguments
/// and results are hooks too.
///
/// ```
/// use agent_core::{async_trait, ToolInvocation, run::{RunHooks, ToolHookAction}};
///
/// /// Refuses to delete anything.
/// struct NoDeletes;
///
/// #[async_trait]
/// impl RunHooks for NoDeletes {
///     async fn before_tool(&self, call: &ToolInvocation) -> ToolHookAction {
///         if call.name == "delete_file" {
///             return ToolHookAction::Skip(Err(agent_core::ToolError::permission_denied(
///                 "deleting files is not allowed in this session",
///             )));
///         }
///         ToolHookAction::Continue
///     }
/// }
/// ```
#[async_trait]
pub trait RunHooks: Send + Sync {
    /// Before each model call.
    async fn before_model(&self, _request: &ChatRequest) -> HookAction {
        HookAction::Continue
    }

    /// After each model call.
    async fn after_model(&self, _response: &ChatResponse) -> HookAction {
        HookAction::Continue
    }

    /// Before each tool call that passed the checks.
    async fn before_tool(&self, _call: &ToolInvocation) -> ToolHookAction {
        ToolHookAction::Continue
    }

    /// After each tool call, with its result.
    async fn after_tool(
        &self,
        _call: &ToolInvocation,
        _result: &Result<ToolOutput, ToolError>,
    ) -> ToolHookAction {
        ToolHookAction::Continue
    }
}
