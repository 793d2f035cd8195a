//! # agent-core
//!
//! The core of an agent framework: the message model, the [`ChatModel`] trait every backend
//! implements, tools ([`Tool`], [`TypedTool`], [`tool_fn`], [`ToolSet`]), memory, and the
//! planner loop: a sans-I/O state machine ([`RunState`]) with a thin async driver
//! ([`drive`]), wrapped by the standard agent [`LlmAgent`].
//!
//! ```
//! use std::sync::Arc;
//! use agent_core::prelude::*;
//! use agent_core::testing::ScriptedModel;
//! use serde_json::json;
//!
//! #[derive(serde::Deserialize, schemars::JsonSchema)]
//! struct Shout {
//!     /// What to shout.
//!     text: String,
//! }
//!
//! # tokio::runtime::Builder::new_multi_thread().enable_all().build().unwrap().block_on(async {
//! // A scripted model stands in for a real one (see `agent_core::testing`).
//! let model = Arc::new(
//!     ScriptedModel::new()
//!         .then_tool_call("shout", json!({"text": "hello"}))
//!         .then_text("I shouted."),
//! );
//! let agent = LlmAgent::builder(model)
//!     .instructions("Use the shout tool.")
//!     .tool(tool_fn("shout", "Upper-cases text.", |a: Shout, _ctx| async move {
//!         Ok(a.text.to_uppercase())
//!     }))
//!     .build()?;
//! let result = agent.ask("Shout hello").await?;
//! assert_eq!(result.text, "I shouted.");
//! assert_eq!(result.new_messages[2].text(), "HELLO");
//! # Ok::<(), Box<dyn std::error::Error>>(())
//! # }).unwrap();
//! ```

pub mod agent;
pub mod backends;
mod budget;
pub mod durable;
pub mod error;
pub mod memory;
pub mod message;
pub mod model;
pub mod output;
pub mod resilience;
pub mod run;
pub mod schema;
pub mod secret;
pub mod team;
pub mod telemetry;
pub mod testing;
pub mod tool;

pub use agent::{
    Agent, AgentTool, DEFAULT_SESSION, InputGuardrail, LlmAgent, LlmAgentBuilder, OutputCheck,
    OutputGuardrail,
};
pub use async_trait::async_trait;
pub use backends::{ModelFactory, ModelRegistry, ModelSpec, OpenAiCompatible};
pub use error::{MemoryError, ModelError, ModelErrorKind, ToolError, ToolErrorKind, ToolSetError};
pub use memory::{ContextPolicy, InMemoryMemory, KeepAll, Memory, SlidingWindow};
pub use message::{
    AssistantMessage, ContentPart, HistoryError, Message, Reasoning, Role, ToolCall, ToolResult,
    Usage, check_history,
};
pub use model::{
    Capabilities, ChatModel, ChatRequest, ChatResponse, ChatStream, FinishReason, ResponseFormat,
    StreamEvent, ToolChoice, ToolExample, ToolSpec, collect_stream,
};
pub use output::{Output, OutputMode, TypedAgent, TypedResult};
pub use run::{
    Action, AgentError, Approval, HookAction, Input, Interruption, ModelSettings, OnMaxTurns,
    PartialRun, PendingApproval, RunContext, RunEvent, RunHooks, RunLimits, RunResult, RunState,
    StopReason, ToolHookAction, ToolInvocation, ToolOutcome, drive,
};
pub use team::{Handoff, HandoffInfo, Team, TeamError};
pub use tokio_util::sync::CancellationToken;
pub use tool::{
    FnTool, SideEffect, Tool, ToolContext, ToolMeta, ToolOutput, ToolSet, ToolSource, TypedTool,
    tool_fn,
};

/// The names most programs need: `use agent_core::prelude::*;`.
///
/// It holds nothing that clashes: [`TypedTool`] is here and [`Tool`] is not (with both in
/// scope, `.name()` on a typed tool would be ambiguous, E0034); code that implements or
/// calls [`Tool`] itself imports it by name. The test double
/// [`ScriptedModel`](crate::testing::ScriptedModel) lives in [`testing`].
///
/// ```
/// use agent_core::prelude::*;
///
/// #[derive(serde::Deserialize, schemars::JsonSchema)]
/// struct Args { city: String }
/// struct Weather;
///
/// #[async_trait]
/// impl TypedTool for Weather {
///     type Args = Args;
///     fn name(&self) -> &str { "weather" }
///     fn description(&self) -> &str { "Current weather in a city." }
///     async fn call(&self, args: Args, _ctx: &ToolContext) -> Result<ToolOutput, ToolError> {
///         Ok(format!("sunny in {}", args.city).into())
///     }
/// }
///
/// assert_eq!(Weather.name(), "weather"); // one `name`, no E0034
/// ```
pub mod prelude {
    pub use crate::{
        Agent, AgentError, ChatModel, LlmAgent, Message, ModelRegistry, RunContext, RunLimits,
        RunResult, ToolContext, ToolError, ToolMeta, ToolOutput, TypedTool, async_trait, tool_fn,
    };
}

// Public types cross threads: agents are shared between tasks.
const _: () = {
    const fn assert_send_sync<T: Send + Sync>() {}
    assert_send_sync::<LlmAgent>();
    assert_send_sync::<ToolSet>();
    assert_send_sync::<RunState>();
    assert_send_sync::<AgentError>();
    assert_send_sync::<ModelError>();
    assert_send_sync::<ToolError>();
    assert_send_sync::<testing::ScriptedModel>();
};
