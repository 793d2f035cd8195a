//! Teams of agents: [`Handoff`]s between agents, and the [`Team`] that holds them by name.
//!
//! An agent with a handoff offers its model a `transfer_to_<name>` tool. When the model
//! calls it, the run's state machine answers the call ("Transferred to ..."), records the
//! agent it was handed to by name, and from the next model call on that agent's
//! instructions, model and tools apply (its tools only: a call to a tool of the previous
//! agent is refused as unknown). The first transfer of a turn wins; the others are answered
//! with why not. [`RunLimits::max_handoffs`](crate::RunLimits::max_handoffs) ends ping-pong
//! with [`AgentError::HandoffLimit`].
//!
//! A [`Team`] registers agents by name and runs a conversation among them. Since the state
//! records the active agent by name, a saved run resumes in any process whose team has the
//! same agents. This module decides nothing: the state machine does.

use std::collections::HashMap;
use std::fmt;
use std::sync::Arc;

use async_trait::async_trait;
use futures::StreamExt;
use futures::stream::BoxStream;
use serde_json::Value;

use crate::agent::{Continue, LlmAgent};
use crate::error::ToolError;
use crate::message::Message;
use crate::run::{
    AgentError, Approval, EventSink, Input, Member, Roster, RunContext, RunEvent, RunResult,
    RunState,
};
use crate::tool::{Tool, ToolContext, ToolMeta, ToolOutput, ToolSet};

/// What a handoff's callback learns: who handed the conversation to whom, and the
/// conversation so far (without the system message).
#[derive(Debug)]
pub struct HandoffInfo<'a> {
    /// The agent that handed it off.
    pub from: &'a str,
    /// The agent it was handed to.
    pub to: &'a str,
    /// The conversation, before the handoff's input filter.
    pub conversation: &'a [Message],
}

type InputFilter = Arc<dyn Fn(&[Message]) -> Vec<Message> + Send + Sync>;
type Callback = Arc<dyn Fn(&HandoffInfo<'_>) + Send + Sync>;

/// A way for an agent to hand its conversation to another, named one:
/// [`LlmAgentBuilder::handoff`](crate::LlmAgentBuilder::handoff).
///
/// ```
/// use agent_core::{Handoff, Message};
/// let to_billing = Handoff::to("billing")
///     .description("Questions about invoices and payments.")
///     // The specialist sees only what the user said.
///     .input_filter(|conversation: &[Message]| {
///         conversation.iter().filter(|m| matches!(m, Message::User { .. })).cloned().collect()
///     })
///     .on_handoff(|info| println!("{} -> {}", info.from, info.to));
/// assert_eq!(to_billing.tool_name(), "transfer_to_billing");
/// ```
#[derive(Clone)]
#[must_use]
pub struct Handoff {
    to: String,
    description: Option<String>,
    filter: Option<InputFilter>,
    callback: Option<Callback>,
}

impl fmt::Debug for Handoff {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Handoff")
            .field("to", &self.to)
            .field("filter", &self.filter.is_some())
            .field("callback", &self.callback.is_some())
            .finish_non_exhaustive()
    }
}

impl Handoff {
    /// A handoff to the agent of this name (which the [`Team`] must have).
    pub fn to(agent: impl Into<String>) -> Self {
        Handoff {
            to: agent.into(),
            description: None,
            filter: None,
            callback: None,
        }
    }

    /// A handoff to this agent, described by its own description.
    pub fn to_agent(agent: &LlmAgent) -> Self {
        use crate::agent::Agent;
        let handoff = Self::to(agent.name());
        match agent.description().trim() {
            "" => handoff,
            text => handoff.description(text),
        }
    }

    /// What the target does, for the model deciding whether to transfer.
    pub fn description(mut self, description: impl Into<String>) -> Self {
        self.description = Some(description.into());
        self
    }

    /// Rewrites the conversation the new agent sees (and the run keeps) from the handoff
    /// on. It gets the conversation without the system message; the new agent's
    /// instructions come first either way. What it returns must keep every tool call
    /// answered, or the next request is refused ([`AgentError::History`]).
    pub fn input_filter(
        mut self,
        filter: impl Fn(&[Message]) -> Vec<Message> + Send + Sync + 'static,
    ) -> Self {
        self.filter = Some(Arc::new(filter));
        self
    }

    /// Called once when the handoff happens, before the new agent's first model call.
    pub fn on_handoff(
        mut self,
        callback: impl Fn(&HandoffInfo<'_>) + Send + Sync + 'static,
    ) -> Self {
        self.callback = Some(Arc::new(callback));
        self
    }

    /// The name of the tool the model calls: `transfer_to_<agent>`.
    pub fn tool_name(&self) -> String {
        format!("transfer_to_{}", self.to)
    }

    /// The agent it hands off to.
    pub fn target(&self) -> &str {
        &self.to
    }

    pub(crate) fn tool(&self) -> Arc<dyn Tool> {
        let description = match &self.description {
            Some(text) => format!("Transfer the conversation to `{}`: {text}", self.to),
            None => format!("Transfer the conversation to the agent `{}`.", self.to),
        };
        Arc::new(TransferTool {
            name: self.tool_name(),
            to: self.to.clone(),
            description,
        })
    }
}

/// The `transfer_to_<name>` tool of a handoff. The state machine answers its calls.
#[derive(Debug)]
struct TransferTool {
    name: String,
    to: String,
    description: String,
}

#[async_trait]
impl Tool for TransferTool {
    fn name(&self) -> &str {
        &self.name
    }

    fn description(&self) -> &str {
        &self.description
    }

    fn parameters(&self) -> Value {
        serde_json::json!({"type": "object", "properties": {}})
    }

    fn meta(&self) -> ToolMeta {
        ToolMeta::read_only()
    }

    fn hands_off_to(&self) -> Option<&str> {
        Some(&self.to)
    }

    async fn call(&self, _args: Value, _ctx: &ToolContext) -> Result<ToolOutput, ToolError> {
        Err(ToolError::failed(format!(
            "`{}` transfers a conversation within a run; it does nothing on its own",
            self.name
        )))
    }
}

/// Why a [`Team`] cannot be made.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum TeamError {
    /// Two agents share a name (handoffs find agents by name).
    #[error("two agents of the team are named `{0}`")]
    DuplicateAgent(String),
    /// An agent hands off to a name the team does not have.
    #[error("`{from}` hands off to `{to}`, which is not in the team")]
    UnknownAgent {
        /// The agent with the handoff.
        from: String,
        /// The missing agent.
        to: String,
    },
}

/// Agents that hand a conversation to one another, by name.
///
/// ```
/// use std::sync::Arc;
/// use agent_core::{Handoff, LlmAgent, Team, testing::ScriptedModel};
/// # tokio::runtime::Builder::new_current_thread().enable_all().build().unwrap().block_on(async {
/// let triage = LlmAgent::builder(Arc::new(
///     ScriptedModel::new().then_tool_call("transfer_to_billing", serde_json::json!({})),
/// ))
/// .name("triage")
/// .handoff(Handoff::to("billing"))
/// .build()
/// .unwrap();
/// let billing = LlmAgent::builder(Arc::new(ScriptedModel::new().then_text("Refunded.")))
///     .name("billing")
///     .instructions("You handle invoices.")
///     .build()
///     .unwrap();
/// let team = Team::new([Arc::new(triage), Arc::new(billing)]).unwrap();
/// let result = team.run("triage", "I was charged twice", &Default::default()).await.unwrap();
/// assert_eq!(result.text, "Refunded.");
/// # });
/// ```
pub struct Team {
    members: Vec<(Arc<LlmAgent>, ToolSet)>,
    by_name: HashMap<String, usize>,
}

impl fmt::Debug for Team {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Team")
            .field("agents", &self.by_name.keys().collect::<Vec<_>>())
            .finish()
    }
}

impl Team {
    /// A team of these agents. Fails when two share a name or a handoff names an agent
    /// that is not here. Each agent's tools are taken as they are now.
    pub fn new(agents: impl IntoIterator<Item = Arc<LlmAgent>>) -> Result<Team, TeamError> {
        use crate::agent::Agent;
        let mut members = Vec::new();
        let mut by_name = HashMap::new();
        for agent in agents {
            let name = agent.name().to_owned();
            if by_name.insert(name.clone(), members.len()).is_some() {
                return Err(TeamError::DuplicateAgent(name));
            }
            let tools = agent.tools();
            members.push((agent, tools));
        }
        for (agent, _) in &members {
            for handoff in agent.handoffs() {
                if !by_name.contains_key(handoff.target()) {
                    return Err(TeamError::UnknownAgent {
                        from: agent.name().to_owned(),
                        to: handoff.target().to_owned(),
                    });
                }
            }
        }
        Ok(Team { members, by_name })
    }

    /// The agent of this name.
    pub fn agent(&self, name: &str) -> Option<&Arc<LlmAgent>> {
        self.by_name.get(name).map(|&i| &self.members[i].0)
    }

    fn starter(&self, name: &str) -> Option<&Arc<LlmAgent>> {
        self.agent(name)
    }

    /// Runs a conversation that starts with the agent `first` (whose memory, hooks,
    /// guardrails, budget and store apply to the whole run; after a handoff the new agent's
    /// instructions, model and tools do).
    pub async fn run(
        &self,
        first: &str,
        input: &str,
        ctx: &RunContext,
    ) -> Result<RunResult, AgentError> {
        self.starter(first)
            .ok_or_else(|| no_such_agent(first))?
            .run_in(
                vec![crate::message::ContentPart::text(input)],
                ctx,
                EventSink::none(),
                None,
                Some(self),
            )
            .await
    }

    /// [`run`](Self::run), streaming what happens (see [`LlmAgent::run_stream`]), handoffs
    /// included ([`RunEvent::Handoff`]).
    pub fn run_stream<'a>(
        &'a self,
        first: &'a str,
        input: &'a str,
        ctx: &'a RunContext,
    ) -> BoxStream<'a, RunEvent> {
        match self.starter(first) {
            Some(agent) => agent.stream_in(input, ctx, Some(self)).boxed(),
            None => {
                let error = no_such_agent(first);
                futures::stream::once(async move { RunEvent::Failed(error) }).boxed()
            }
        }
    }

    /// Goes on with a saved run state of a conversation that started with `first`, with
    /// whichever agent the state says is active.
    pub async fn resume(
        &self,
        first: &str,
        state: RunState,
        ctx: &RunContext,
    ) -> Result<RunResult, AgentError> {
        self.go_on(first, state, Input::Resume, ctx).await
    }

    /// Continues a paused run of the team (see [`LlmAgent::resume_with_approvals`]).
    pub async fn resume_with_approvals(
        &self,
        first: &str,
        state: RunState,
        decisions: Vec<(String, Approval)>,
        ctx: &RunContext,
    ) -> Result<RunResult, AgentError> {
        self.go_on(first, state, Input::Approvals(decisions), ctx)
            .await
    }

    async fn go_on(
        &self,
        first: &str,
        state: RunState,
        input: Input,
        ctx: &RunContext,
    ) -> Result<RunResult, AgentError> {
        let agent = self.starter(first).ok_or_else(|| no_such_agent(first))?;
        let mut run = Continue::fresh(agent.session(ctx));
        run.first = input;
        run.team = Some(self);
        agent
            .execute(state, run, ctx, EventSink::none(), None)
            .await
    }

    /// Resumes a durable run of the team from its store (see [`LlmAgent::resume_run`]).
    pub async fn resume_run(
        &self,
        first: &str,
        run_id: &str,
        ctx: &RunContext,
    ) -> Result<RunResult, AgentError> {
        self.starter(first)
            .ok_or_else(|| no_such_agent(first))?
            .resume_stored_in(run_id, None, ctx, Some(self))
            .await
    }
}

fn no_such_agent(name: &str) -> AgentError {
    AgentError::InvalidState(format!("the team has no agent named `{name}`"))
}

impl Roster for Team {
    fn member(&self, name: &str) -> Option<Member<'_>> {
        let (agent, tools) = &self.members[*self.by_name.get(name)?];
        Some(Member {
            model: agent.model().as_ref(),
            tools,
            instructions: agent.instructions(),
        })
    }

    fn hand_off(&self, from: &str, to: &str, conversation: &[Message]) -> Option<Vec<Message>> {
        let handoff = self
            .agent(from)?
            .handoffs()
            .iter()
            .find(|h| h.target() == to)?;
        if let Some(callback) = &handoff.callback {
            callback(&HandoffInfo {
                from,
                to,
                conversation,
            });
        }
        handoff.filter.as_ref().map(|filter| filter(conversation))
    }
}
