//! Agents: the [`Agent`] trait, the standard [`LlmAgent`] and its builder, and
//! [`AgentTool`], which lets one agent call another as a tool.
//!
//! An agent only wires parts together (model, tools, memory, limits) and hands the run to the
//! planner loop in [`crate::run`]; it makes no decisions of its own.

use std::fmt;
use std::sync::Arc;

use async_trait::async_trait;
use serde::Deserialize;
use serde_json::Value;
use tracing::Instrument;

use crate::error::{AgentError, ToolError, ToolSetError};
use crate::memory::{ContextPolicy, KeepAll, Memory};
use crate::message::Message;
use crate::model::ChatModel;
use crate::run::{ModelSettings, RunContext, RunLimits, RunResult, RunState, drive, new_run_id};
use crate::tool::{Tool, ToolContext, ToolMeta, ToolOutput, ToolSet};

/// Something that takes a task and returns a result.
#[async_trait]
pub trait Agent: Send + Sync {
    /// Its name (also its tool name when used as a tool).
    fn name(&self) -> &str;

    /// What it does, for people and for models that may delegate to it.
    fn description(&self) -> &str;

    /// Runs the task to its end.
    async fn run(&self, input: &str, ctx: &RunContext) -> Result<RunResult, AgentError>;
}

/// The standard agent: a model, instructions, tools, optional memory and limits, run by the
/// planner loop.
///
/// ```
/// use std::sync::Arc;
/// use agent_core::{LlmAgent, testing::ScriptedModel};
/// # tokio::runtime::Builder::new_current_thread().enable_all().build().unwrap().block_on(async {
/// let model = Arc::new(ScriptedModel::new().then_text("Hello!"));
/// let agent = LlmAgent::builder(model)
///     .instructions("Greet the user.")
///     .build()
///     .unwrap();
/// let result = agent.ask("Hi").await.unwrap();
/// assert_eq!(result.text, "Hello!");
/// # });
/// ```
pub struct LlmAgent {
    name: String,
    description: String,
    model: Arc<dyn ChatModel>,
    instructions: Option<String>,
    tools: ToolSet,
    memory: Option<Arc<dyn Memory>>,
    context_policy: Arc<dyn ContextPolicy>,
    limits: RunLimits,
    settings: ModelSettings,
}

impl fmt::Debug for LlmAgent {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("LlmAgent")
            .field("name", &self.name)
            .field(
                "model",
                &format_args!("{}:{}", self.model.provider(), self.model.model()),
            )
            .field("tools", &self.tools)
            .field("limits", &self.limits)
            .finish_non_exhaustive()
    }
}

impl LlmAgent {
    /// Starts building an agent on a model.
    pub fn builder(model: Arc<dyn ChatModel>) -> LlmAgentBuilder {
        LlmAgentBuilder {
            name: "agent".into(),
            description: String::new(),
            model,
            instructions: None,
            tools: Vec::new(),
            memory: None,
            context_policy: Arc::new(KeepAll),
            limits: RunLimits::default(),
            settings: ModelSettings::default(),
        }
    }

    /// Runs a task with no session and no way to cancel it: the one-liner.
    pub async fn ask(&self, input: &str) -> Result<RunResult, AgentError> {
        self.run(input, &RunContext::default()).await
    }

    /// The agent's tools.
    pub fn tools(&self) -> &ToolSet {
        &self.tools
    }

    /// The agent's model.
    pub fn model(&self) -> &Arc<dyn ChatModel> {
        &self.model
    }

    /// Builds the state of a new run over the given earlier history, without running it.
    /// Drive it with [`resume`](Self::resume), or step it yourself.
    pub fn start(&self, input: &str, history: &[Message]) -> RunState {
        let start = self.context_policy.start(history);
        let mut context = Vec::with_capacity(history.len() - start + 1);
        if let Some(instructions) = &self.instructions {
            context.push(Message::system(instructions.clone()));
        }
        context.extend_from_slice(&history[start..]);
        RunState::new(
            new_run_id(),
            context,
            vec![Message::user(input)],
            self.settings.clone(),
            self.limits.clone(),
        )
    }

    /// Runs a run state to its end: a new one from [`start`](Self::start), or one restored
    /// from a saved state. On success the run's messages are appended to the session in
    /// `ctx`, if any.
    pub async fn resume(
        &self,
        mut state: RunState,
        ctx: &RunContext,
    ) -> Result<RunResult, AgentError> {
        let span = tracing::info_span!(
            "invoke_agent",
            gen_ai.operation.name = "invoke_agent",
            gen_ai.agent.name = %self.name,
            gen_ai.conversation.id = ctx.session.as_deref().unwrap_or(""),
            run.id = state.run_id(),
        );
        let result = drive(
            &mut state,
            self.model.as_ref(),
            &self.tools,
            &self.name,
            &ctx.cancel,
        )
        .instrument(span)
        .await?;
        if let (Some(memory), Some(session)) = (&self.memory, &ctx.session) {
            memory.append(session, &result.new_messages).await?;
        }
        Ok(result)
    }
}

#[async_trait]
impl Agent for LlmAgent {
    fn name(&self) -> &str {
        &self.name
    }

    fn description(&self) -> &str {
        &self.description
    }

    async fn run(&self, input: &str, ctx: &RunContext) -> Result<RunResult, AgentError> {
        let history = match (&self.memory, &ctx.session) {
            (Some(memory), Some(session)) => memory.load(session).await?,
            _ => Vec::new(),
        };
        let state = self.start(input, &history);
        self.resume(state, ctx).await
    }
}

/// Builds an [`LlmAgent`].
pub struct LlmAgentBuilder {
    name: String,
    description: String,
    model: Arc<dyn ChatModel>,
    instructions: Option<String>,
    tools: Vec<Arc<dyn Tool>>,
    memory: Option<Arc<dyn Memory>>,
    context_policy: Arc<dyn ContextPolicy>,
    limits: RunLimits,
    settings: ModelSettings,
}

impl LlmAgentBuilder {
    /// Names the agent (default `agent`).
    pub fn name(mut self, name: impl Into<String>) -> Self {
        self.name = name.into();
        self
    }

    /// Describes the agent (used when it is a tool of another agent).
    pub fn description(mut self, description: impl Into<String>) -> Self {
        self.description = description.into();
        self
    }

    /// The system instructions.
    pub fn instructions(mut self, instructions: impl Into<String>) -> Self {
        self.instructions = Some(instructions.into());
        self
    }

    /// Adds a tool.
    pub fn tool(mut self, tool: impl Tool + 'static) -> Self {
        self.tools.push(Arc::new(tool));
        self
    }

    /// Adds tools that are already shared.
    pub fn tools(mut self, tools: impl IntoIterator<Item = Arc<dyn Tool>>) -> Self {
        self.tools.extend(tools);
        self
    }

    /// Keeps conversations in this memory (used when a run names a session).
    pub fn memory(mut self, memory: Arc<dyn Memory>) -> Self {
        self.memory = Some(memory);
        self
    }

    /// Chooses which remembered messages are sent (default: all).
    pub fn context_policy(mut self, policy: impl ContextPolicy + 'static) -> Self {
        self.context_policy = Arc::new(policy);
        self
    }

    /// Sets all limits.
    pub fn limits(mut self, limits: RunLimits) -> Self {
        self.limits = limits;
        self
    }

    /// Sets the turn limit (default 10).
    pub fn max_turns(mut self, max_turns: u32) -> Self {
        self.limits.max_turns = max_turns;
        self
    }

    /// Sets the request options applied to every model call.
    pub fn settings(mut self, settings: ModelSettings) -> Self {
        self.settings = settings;
        self
    }

    /// Calls the model's streaming endpoint and assembles each answer (default: off).
    pub fn streaming(mut self, stream: bool) -> Self {
        self.settings.stream = stream;
        self
    }

    /// Sets the sampling temperature.
    pub fn temperature(mut self, temperature: f32) -> Self {
        self.settings.temperature = Some(temperature);
        self
    }

    /// Builds the agent; fails when two tools share a name or a tool's schema is invalid.
    pub fn build(self) -> Result<LlmAgent, ToolSetError> {
        Ok(LlmAgent {
            name: self.name,
            description: self.description,
            model: self.model,
            instructions: self.instructions,
            tools: ToolSet::new(self.tools)?,
            memory: self.memory,
            context_policy: self.context_policy,
            limits: self.limits,
            settings: self.settings,
        })
    }
}

/// Any [`Agent`] as a tool: the model passes a task as `input`, the agent's final answer
/// comes back as the result. The inner run shares the outer run's cancellation.
pub struct AgentTool {
    agent: Arc<dyn Agent>,
}

impl AgentTool {
    /// Wraps an agent.
    pub fn new(agent: Arc<dyn Agent>) -> Self {
        AgentTool { agent }
    }
}

#[derive(Deserialize)]
struct AgentToolArgs {
    input: String,
}

#[async_trait]
impl Tool for AgentTool {
    fn name(&self) -> &str {
        self.agent.name()
    }

    fn description(&self) -> &str {
        self.agent.description()
    }

    fn parameters(&self) -> Value {
        serde_json::json!({
            "type": "object",
            "properties": {
                "input": {"type": "string", "description": "The task for this agent, stated completely."}
            },
            "required": ["input"]
        })
    }

    fn meta(&self) -> ToolMeta {
        ToolMeta::side_effecting()
    }

    async fn call(&self, args: Value, ctx: &ToolContext) -> Result<ToolOutput, ToolError> {
        let args: AgentToolArgs = serde_json::from_value(args)
            .map_err(|e| ToolError::invalid_arguments(e.to_string()))?;
        let run_ctx = RunContext::new().with_cancel(ctx.cancel.child_token());
        match self.agent.run(&args.input, &run_ctx).await {
            Ok(result) => Ok(ToolOutput::Text(result.text)),
            Err(e) => Err(ToolError::failed(format!(
                "The agent `{}` could not complete the task: {e}",
                self.agent.name()
            ))),
        }
    }
}
