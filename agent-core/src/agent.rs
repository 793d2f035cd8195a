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

use crate::durable::{InterruptedCalls, JournalEntry, Lease, RunEnd, RunLog, RunStatus, RunStore};
use crate::error::{ToolError, ToolSetError};
use crate::memory::{ContextPolicy, KeepAll, Memory};
use crate::message::{ContentPart, Message};
use crate::model::ChatModel;
use crate::output::OutputSpec;
use crate::run::{
    AgentError, AgentUsage, Approval, Budget, BudgetTracker, EventSink, Input, ModelSettings,
    NestedLink, Prices, Roster, RunContext, RunControls, RunEvent, RunHooks, RunLimits, RunResult,
    RunState, StopReason, SubAgentRun, ToolHookAction, ToolInvocation, drive_with, new_run_id,
};
use crate::team::{Handoff, Team};
use crate::telemetry::spans;
use crate::tool::{
    ApprovalPolicy, SideEffect, Tool, ToolContext, ToolMeta, ToolOutput, ToolSet, ToolSource,
};
use futures::{Stream, StreamExt};

/// The memory session of runs that name none, on an agent with memory.
pub const DEFAULT_SESSION: &str = "default";

/// Something that takes a task and returns a result.
#[async_trait]
pub trait Agent: Send + Sync {
    /// Its name (also its tool name when used as a tool).
    fn name(&self) -> &str;

    /// What it does, for people and for models that may delegate to it.
    fn description(&self) -> &str;

    /// Runs the task to its end.
    async fn run(&self, input: &str, ctx: &RunContext) -> Result<RunResult, AgentError>;

    /// Continues a run of this agent that paused for approval, with a human's decisions by
    /// call id (how an [`AgentTool`] resumes its nested run). By default the agent cannot:
    /// [`AgentError::InvalidState`].
    async fn resume_with_approvals(
        &self,
        state: RunState,
        decisions: Vec<(String, Approval)>,
        ctx: &RunContext,
    ) -> Result<RunResult, AgentError> {
        let _ = (state, decisions, ctx);
        Err(AgentError::InvalidState(format!(
            "the agent `{}` cannot resume a paused run",
            self.name()
        )))
    }
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
    dynamic: Option<DynamicTools>,
    memory: Option<Arc<dyn Memory>>,
    context_policy: Arc<dyn ContextPolicy>,
    limits: RunLimits,
    settings: ModelSettings,
    hooks: Vec<Arc<dyn RunHooks>>,
    input_guardrails: Vec<InputGuardrail>,
    output_guardrails: Vec<OutputGuardrail>,
    max_output_retries: u32,
    budget: Option<Budget>,
    prices: Option<Prices>,
    handoffs: Vec<Handoff>,
    store: Option<Arc<dyn RunStore>>,
    /// Whether `memory` is the store itself (then a finished run reaches its session in the
    /// store's final commit, atomically, instead of through `Memory::append`).
    memory_is_store: bool,
    /// Whether the memory is the store because no memory was given.
    memory_from_store: bool,
    interrupted: InterruptedCalls,
}

/// An agent's tools when some come from [`ToolSource`]s: rebuilt when a source's version
/// moves.
struct DynamicTools {
    fixed: Vec<Arc<dyn Tool>>,
    sources: Vec<Arc<dyn ToolSource>>,
    approval: Option<ApprovalPolicy>,
    current: std::sync::Mutex<(Vec<u64>, ToolSet)>,
}

impl DynamicTools {
    fn build(
        fixed: &[Arc<dyn Tool>],
        sources: &[Arc<dyn ToolSource>],
        approval: &Option<ApprovalPolicy>,
    ) -> Result<(Vec<u64>, ToolSet), ToolSetError> {
        let versions = sources.iter().map(|s| s.version()).collect();
        // The agent's own tools win: a source's tool that takes a name already in use is
        // left out (a server cannot stop the agent from building, or shadow `read_file`).
        let mut names: std::collections::HashSet<String> =
            fixed.iter().map(|t| t.name().to_owned()).collect();
        let mut all = fixed.to_vec();
        for tool in sources.iter().flat_map(|s| s.tools()) {
            if names.insert(tool.name().to_owned()) {
                all.push(tool);
            } else {
                tracing::warn!(
                    "a tool source's `{}` is left out: the agent already has a tool of that name",
                    tool.name()
                );
            }
        }
        let mut tools = ToolSet::new(all)?;
        if let Some(policy) = approval {
            tools = tools.with_approval_policy(policy.clone());
        }
        Ok((versions, tools))
    }

    /// The tools for a run starting now.
    fn current(&self) -> ToolSet {
        let Ok(mut current) = self.current.lock() else {
            return ToolSet::empty();
        };
        let moved = self
            .sources
            .iter()
            .zip(&current.0)
            .any(|(s, &v)| s.version() != v);
        if moved {
            match Self::build(&self.fixed, &self.sources, &self.approval) {
                Ok(fresh) => *current = fresh,
                // Keep the last good set; the next run tries again.
                Err(e) => tracing::warn!("the changed tools cannot be used: {e}"),
            }
        }
        current.1.clone()
    }
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
            sources: Vec::new(),
            memory: None,
            context_policy: Arc::new(KeepAll),
            limits: RunLimits::default(),
            settings: ModelSettings::default(),
            max_turns: None,
            stream: None,
            temperature: None,
            hooks: Vec::new(),
            input_guardrails: Vec::new(),
            output_guardrails: Vec::new(),
            max_output_retries: 2,
            approval_policy: None,
            budget: None,
            prices: None,
            handoffs: Vec::new(),
            store: None,
            interrupted: InterruptedCalls::default(),
        }
    }

    /// Runs a task with no way to cancel it: the one-liner. On an agent with
    /// [`memory`](LlmAgentBuilder::memory), it continues the [`DEFAULT_SESSION`], so
    /// consecutive calls are one conversation; name another session through
    /// [`run`](Agent::run) with [`RunContext::with_session`].
    pub async fn ask(&self, input: &str) -> Result<RunResult, AgentError> {
        self.run(input, &RunContext::default()).await
    }

    /// [`ask`](Self::ask) with a task made of parts: text, images (by URL or bytes) and
    /// documents (PDF bytes). A model that cannot take a part fails the run with
    /// [`ModelErrorKind::Unsupported`](crate::ModelErrorKind::Unsupported) before
    /// anything is sent; nothing is dropped silently.
    ///
    /// ```no_run
    /// # async fn demo(agent: agent_core::LlmAgent) -> Result<(), agent_core::AgentError> {
    /// use agent_core::ContentPart;
    /// let result = agent
    ///     .ask_parts(vec![
    ///         ContentPart::text("What is the total of this invoice, and does the photo match it?"),
    ///         ContentPart::pdf("invoice.pdf", &std::fs::read("invoice.pdf").unwrap_or_default()),
    ///         ContentPart::image_url("https://example.com/receipt.jpg"),
    ///     ])
    ///     .await?;
    /// println!("{}", result.text);
    /// # Ok(()) }
    /// ```
    pub async fn ask_parts(&self, parts: Vec<ContentPart>) -> Result<RunResult, AgentError> {
        self.run_parts(parts, &RunContext::default()).await
    }

    /// [`run`](Agent::run) with a task made of parts (see [`ask_parts`](Self::ask_parts)).
    pub async fn run_parts(
        &self,
        parts: Vec<ContentPart>,
        ctx: &RunContext,
    ) -> Result<RunResult, AgentError> {
        self.run_task_with_events(parts, ctx, EventSink::none(), None)
            .await
    }

    /// The agent's tools, as the next run gets them (cheap: the set is shared).
    pub fn tools(&self) -> ToolSet {
        match &self.dynamic {
            Some(dynamic) => dynamic.current(),
            None => self.tools.clone(),
        }
    }

    /// The agent's model.
    pub fn model(&self) -> &Arc<dyn ChatModel> {
        &self.model
    }

    /// The request options applied to every model call.
    pub fn settings(&self) -> &ModelSettings {
        &self.settings
    }

    /// The run limits.
    pub fn limits(&self) -> &RunLimits {
        &self.limits
    }

    /// The system instructions.
    pub fn instructions(&self) -> Option<&str> {
        self.instructions.as_deref()
    }

    /// The agents this one may hand a conversation to.
    pub fn handoffs(&self) -> &[Handoff] {
        &self.handoffs
    }

    /// Builds the state of a new run over the given earlier history, without running it.
    /// Drive it with [`resume`](Self::resume), or step it yourself.
    pub fn start(&self, input: &str, history: &[Message]) -> RunState {
        self.start_as(new_run_id(), vec![ContentPart::text(input)], history)
    }

    fn start_as(&self, run_id: String, task: Vec<ContentPart>, history: &[Message]) -> RunState {
        // A policy is the user's code: a start past the end keeps nothing rather than panic.
        let start = self.context_policy.start(history).min(history.len());
        let mut context = Vec::with_capacity(history.len() - start + 1);
        if let Some(instructions) = &self.instructions {
            context.push(Message::system(instructions.clone()));
        }
        context.extend_from_slice(&history[start..]);
        RunState::new(
            run_id,
            context,
            vec![Message::user_parts(task)],
            self.settings.clone(),
            self.limits.clone(),
        )
    }

    /// Runs a run state to its end: a new one from [`start`](Self::start), or one restored
    /// from a saved state. On success the run's messages are appended to the session in
    /// `ctx`, if any (a run paused for approval appends nothing until it finishes).
    ///
    /// On an agent with a [`store`](LlmAgentBuilder::store) the run is durable: a state the
    /// store knows is resumed from the store (as [`resume_run`](Self::resume_run) does: the
    /// store's journal is the truth, not the copy given here); a new one is recorded first.
    pub async fn resume(&self, state: RunState, ctx: &RunContext) -> Result<RunResult, AgentError> {
        let Some(store) = &self.store else {
            return self
                .execute(
                    state,
                    Continue::fresh(self.session(ctx)),
                    ctx,
                    EventSink::none(),
                    None,
                )
                .await;
        };
        match self.resume_stored(state.run_id(), None, ctx).await {
            Err(AgentError::Store(e)) if e.kind == crate::durable::StoreErrorKind::NotFound => {
                let mut state = state;
                let input = state
                    .new_messages()
                    .first()
                    .map(Message::text)
                    .unwrap_or_default();
                let session = self.session(ctx);
                let log =
                    RunLog::create(store.clone(), &mut state, &self.name, session, &input, ctx)
                        .await?;
                let run = Continue {
                    first: Input::Resume,
                    replay: Vec::new(),
                    log: Some(&log),
                    session,
                    team: None,
                };
                self.execute(state, run, ctx, EventSink::none(), None).await
            }
            other => other,
        }
    }

    /// Continues a run paused for approval ([`StopReason::AwaitingApproval`]) with a
    /// human's decisions, given by call id. The state may come from another process
    /// (it serialises); calls left without a decision stay pending.
    ///
    /// On an agent with a [`store`](LlmAgentBuilder::store), this is
    /// [`resume_run_with_approvals`](Self::resume_run_with_approvals) for the state's run:
    /// the decisions are journalled and the stored run goes on.
    ///
    /// [`StopReason::AwaitingApproval`]: crate::StopReason::AwaitingApproval
    pub async fn resume_with_approvals(
        &self,
        state: RunState,
        decisions: Vec<(String, Approval)>,
        ctx: &RunContext,
    ) -> Result<RunResult, AgentError> {
        if self.store.is_some() {
            return self
                .resume_stored(state.run_id(), Some(decisions), ctx)
                .await;
        }
        let mut run = Continue::fresh(self.session(ctx));
        run.first = Input::Approvals(decisions);
        self.execute(state, run, ctx, EventSink::none(), None).await
    }

    /// Runs a task and streams what happens: turns, text and reasoning deltas, tool calls
    /// and their results, usage, approval requests, and last `Finished` or `Failed`.
    ///
    /// ```
    /// use std::sync::Arc;
    /// use futures::StreamExt;
    /// use agent_core::{LlmAgent, RunContext, run::RunEvent, testing::ScriptedModel};
    /// # tokio::runtime::Builder::new_current_thread().enable_all().build().unwrap().block_on(async {
    /// let agent = LlmAgent::builder(Arc::new(ScriptedModel::new().then_text("Hi!"))).build().unwrap();
    /// let ctx = RunContext::new();
    /// let events: Vec<RunEvent> = agent.run_stream("Hello", &ctx).collect().await;
    /// assert!(matches!(events.last(), Some(RunEvent::Finished(r)) if r.text == "Hi!"));
    /// # });
    /// ```
    pub fn run_stream<'a>(
        &'a self,
        input: &'a str,
        ctx: &'a RunContext,
    ) -> impl Stream<Item = RunEvent> + Send + 'a {
        self.stream_in(input, ctx, None)
    }

    /// [`run_stream`](Self::run_stream), within a team when `team` is given.
    pub(crate) fn stream_in<'a>(
        &'a self,
        input: &'a str,
        ctx: &'a RunContext,
        team: Option<&'a Team>,
    ) -> impl Stream<Item = RunEvent> + Send + 'a {
        let (sender, receiver) = futures::channel::mpsc::unbounded();
        let run = async move {
            let mut emit = |event: RunEvent| {
                let _ = sender.unbounded_send(event);
            };
            let outcome = self
                .run_in(
                    vec![ContentPart::text(input)],
                    ctx,
                    EventSink::new(&mut emit),
                    None,
                    team,
                )
                .await;
            emit(match outcome {
                Ok(result) => RunEvent::Finished(result),
                Err(error) => RunEvent::Failed(error),
            });
        };
        // Every event, the last one included, goes through the channel, in order; the run
        // itself is driven by polling the stream.
        futures::stream::select(
            receiver,
            futures::stream::once(run).filter_map(|()| std::future::ready(None)),
        )
    }

    /// Runs a task; with `answer`, for a typed answer of that spec, which the check reads
    /// (see [`crate::output`]).
    pub(crate) async fn run_with_events(
        &self,
        input: &str,
        ctx: &RunContext,
        emit: EventSink<'_>,
        answer: Option<(OutputSpec, &AnswerCheck<'_>)>,
    ) -> Result<RunResult, AgentError> {
        self.run_task_with_events(vec![ContentPart::text(input)], ctx, emit, answer)
            .await
    }

    /// [`run_with_events`](Self::run_with_events) for a task made of parts; guardrails and
    /// the journal see its text.
    async fn run_task_with_events(
        &self,
        task: Vec<ContentPart>,
        ctx: &RunContext,
        emit: EventSink<'_>,
        answer: Option<(OutputSpec, &AnswerCheck<'_>)>,
    ) -> Result<RunResult, AgentError> {
        self.run_in(task, ctx, emit, answer, None).await
    }

    /// A new run of a task made of parts, within a team when `team` is given.
    pub(crate) async fn run_in(
        &self,
        task: Vec<ContentPart>,
        ctx: &RunContext,
        emit: EventSink<'_>,
        answer: Option<(OutputSpec, &AnswerCheck<'_>)>,
        team: Option<&Team>,
    ) -> Result<RunResult, AgentError> {
        let text = ContentPart::join_text(&task);
        let input = text.as_str();
        for guardrail in &self.input_guardrails {
            guardrail(input).map_err(AgentError::InputRejected)?;
        }
        let history = match (&self.memory, self.session(ctx)) {
            (Some(memory), Some(session)) => memory.load(session).await?,
            _ => Vec::new(),
        };
        let run_id = ctx.run_id.clone().unwrap_or_else(new_run_id);
        let mut state = self.start_as(run_id, task, &history);
        let mut check = None;
        if let Some((spec, answer_check)) = answer {
            state = state.with_output(spec);
            check = Some(answer_check);
        }
        let session = self.session(ctx);
        let log = match &self.store {
            Some(store) => Some(
                RunLog::create(store.clone(), &mut state, &self.name, session, input, ctx).await?,
            ),
            None => None,
        };
        let run = Continue {
            first: Input::Resume,
            replay: Vec::new(),
            log: log.as_ref(),
            session,
            team,
        };
        self.execute(state, run, ctx, emit, check).await
    }

    /// Drives a state from `first` without a store's journal (the typed agent's
    /// state-based API).
    pub(crate) async fn continue_state(
        &self,
        state: RunState,
        first: Input,
        ctx: &RunContext,
        check: Option<&AnswerCheck<'_>>,
    ) -> Result<RunResult, AgentError> {
        let mut run = Continue::fresh(self.session(ctx));
        run.first = first;
        self.execute(state, run, ctx, EventSink::none(), check)
            .await
    }

    /// Resumes a durable run from its store, in this process or any other that has an
    /// agent of the same name: loads its last committed step, feeds back what was
    /// journalled after it, and runs only what never finished.
    ///
    /// A tool call interrupted while it ran (an intent and no outcome) runs again when its
    /// tool is read-only or idempotent (with the same
    /// [`idempotency_key`](crate::ToolContext::idempotency_key)); a side-effecting one is
    /// not run again blindly: see [`LlmAgentBuilder::on_interrupted_calls`]. The session
    /// is the run's own; `ctx` gives cancellation and budget.
    ///
    /// Errors: [`AgentError::Store`] when the run does not exist, is over, is held by a live
    /// driver, or was started by an agent of another name; [`AgentError::InvalidState`]
    /// when the agent has no store.
    pub async fn resume_run(
        &self,
        run_id: &str,
        ctx: &RunContext,
    ) -> Result<RunResult, AgentError> {
        self.resume_stored(run_id, None, ctx).await
    }

    /// Continues a durable run paused for approval with a human's decisions (by call id),
    /// in any process. The decisions are journalled before they apply.
    pub async fn resume_run_with_approvals(
        &self,
        run_id: &str,
        decisions: Vec<(String, Approval)>,
        ctx: &RunContext,
    ) -> Result<RunResult, AgentError> {
        self.resume_stored(run_id, Some(decisions), ctx).await
    }

    async fn resume_stored(
        &self,
        run_id: &str,
        decisions: Option<Vec<(String, Approval)>>,
        ctx: &RunContext,
    ) -> Result<RunResult, AgentError> {
        self.resume_stored_in(run_id, decisions, ctx, None).await
    }

    /// Resumes a durable run, within a team when `team` is given.
    pub(crate) async fn resume_stored_in(
        &self,
        run_id: &str,
        decisions: Option<Vec<(String, Approval)>>,
        ctx: &RunContext,
        team: Option<&Team>,
    ) -> Result<RunResult, AgentError> {
        let Some(store) = &self.store else {
            return Err(AgentError::InvalidState(format!(
                "the agent `{}` has no store to resume run `{run_id}` from: build it with \
                 `.store(..)`",
                self.name
            )));
        };
        let owner = ctx.owner.clone().unwrap_or_else(Lease::new_owner);
        let (stored, lease) = store.claim_run(run_id, &owner).await?;
        let log = RunLog::claimed(
            store.clone(),
            run_id,
            lease,
            stored.info.steps,
            stored.messages.len(),
            stored.new_from,
        );
        let refuse = |error: crate::durable::StoreError| async {
            // Leave the run as it was for whoever can resume it.
            let _ = log.release().await;
            Err(AgentError::Store(error))
        };
        if stored.info.agent != self.name {
            return refuse(crate::durable::StoreError::new(
                crate::durable::StoreErrorKind::Invalid,
                format!(
                    "run `{run_id}` was started by the agent `{}`, not `{}`: resume it with an \
                     agent of that name",
                    stored.info.agent, self.name
                ),
            ))
            .await;
        }
        let state = match RunState::from_control_json(&stored.control, stored.messages) {
            Ok(state) => state,
            Err(e) => {
                return refuse(crate::durable::StoreError::new(
                    crate::durable::StoreErrorKind::Corrupt,
                    format!("the saved state of run `{run_id}` cannot be read: {e}"),
                ))
                .await;
            }
        };
        let tools = self.tools();
        let mut replay = catch_up(&state, stored.journal, &tools, self.interrupted);
        if let Some(decisions) = decisions {
            let entry = JournalEntry::Approvals {
                decisions: decisions.clone(),
            };
            if let Err(e) = store.journal(run_id, log.lease(), &entry).await {
                return refuse(e).await;
            }
            replay.push(Input::Approvals(decisions));
        }
        let run = Continue {
            first: Input::Resume,
            replay,
            log: Some(&log),
            session: stored.info.session.as_deref(),
            team,
        };
        self.execute(state, run, ctx, EventSink::none(), None).await
    }

    /// Drives a state to its end, applying output guardrails (and the caller's check of a
    /// typed answer: a refusal goes back to the model through the state's retry budget),
    /// then appends to memory (for a durable run: commits its end, with the session append
    /// when the store is the memory).
    pub(crate) async fn execute(
        &self,
        mut state: RunState,
        run: Continue<'_>,
        ctx: &RunContext,
        emit: EventSink<'_>,
        answer_check: Option<&AnswerCheck<'_>>,
    ) -> Result<RunResult, AgentError> {
        let Continue {
            mut first,
            mut replay,
            log,
            session,
            team,
        } = run;
        // A nested run (an agent used as a tool) sends its events to the run above it.
        let mut relay = |event: RunEvent| {
            if let Some(relay) = &ctx.relay {
                relay.send(event);
            }
        };
        let mut given = emit;
        let mut emit = if !given.is_listening() && ctx.relay.is_some() {
            EventSink::new(&mut relay)
        } else {
            given.reborrow()
        };
        let span = spans::agent_span(&self.name, self.model.as_ref(), session, state.run_id());
        let tools = self.tools();
        // The agent's own budget sits under the one the run brings (a parent run's, or the
        // caller's shared one): both apply, and spending counts in both.
        let tracker = match (&ctx.budget, &self.budget) {
            (Some(parent), Some(own)) => {
                Some(Arc::new(BudgetTracker::child(parent.clone(), own.clone())))
            }
            (Some(shared), None) => Some(shared.clone()),
            (None, Some(own)) => Some(Arc::new(BudgetTracker::with_prices(
                own.clone(),
                self.prices.clone().unwrap_or_default(),
            ))),
            (None, None) => None,
        };
        if let Some(tracker) = &tracker
            && state.turns() > 0
            && log.is_some()
        {
            // A resumed run has spent already: a budget counts it.
            let _ = tracker.record_model_call(self.model.model(), &state.usage());
        }
        let mut retries = 0;
        let outcome = loop {
            let controls = RunControls {
                hooks: &self.hooks,
                emit: emit.reborrow(),
                budget: tracker.clone(),
                journal: log,
                replay: std::mem::take(&mut replay),
                roster: team.map(|t| t as &dyn Roster),
            };
            let result = match drive_with(
                &mut state,
                self.model.as_ref(),
                &tools,
                &self.name,
                &ctx.cancel,
                first,
                controls,
            )
            .instrument(span.clone())
            .await
            {
                Ok(result) => result,
                Err(error) => break Err(error),
            };
            if result.stop_reason == StopReason::AwaitingApproval {
                spans::record_agent_end(&span, Ok(&result), tracker.as_deref().map(|t| t.prices()));
                return Ok(result);
            }
            match self.check_output(&result.text) {
                OutputCheck::Accept => {
                    let refused = match (answer_check, &result.output) {
                        (Some(check), Some(value)) => check(value).err(),
                        _ => None,
                    };
                    match refused {
                        None => break Ok(result),
                        Some(error) => {
                            if let Some(failed) = state.retry_answer(result, error) {
                                break Err(failed);
                            }
                            if let Some(log) = log {
                                log.commit(&mut state, RunStatus::Running).await?;
                            }
                            first = Input::Resume;
                        }
                    }
                }
                OutputCheck::Retry(feedback) if retries < self.max_output_retries => {
                    retries += 1;
                    state.reopen(result, &feedback);
                    if let Some(log) = log {
                        log.commit(&mut state, RunStatus::Running).await?;
                    }
                    first = Input::Resume;
                }
                OutputCheck::Retry(reason) | OutputCheck::Reject(reason) => {
                    break Err(AgentError::OutputRejected {
                        reason,
                        partial: Box::new(result.into_partial()),
                    });
                }
            }
        };
        let separate_memory = self.memory.as_ref().filter(|_| !self.memory_is_store);
        if let Some(log) = log {
            let in_store = session.filter(|_| self.memory_is_store);
            finish_durable(log, &mut state, &outcome, in_store).await?;
        }
        spans::record_agent_end(
            &span,
            outcome.as_ref(),
            tracker.as_deref().map(|t| t.prices()),
        );
        let result = outcome?;
        if let (Some(memory), Some(session)) = (separate_memory, session) {
            memory.append(session, &result.new_messages).await?;
        }
        Ok(result)
    }

    /// The memory session of a run: the context's, or [`DEFAULT_SESSION`] when the agent has
    /// memory of its own and the context names none (memory is never silently ignored). A
    /// store that is the memory only because it is the store serves sessions that are named:
    /// unrelated durable runs do not become one conversation.
    pub(crate) fn session<'a>(&self, ctx: &'a RunContext) -> Option<&'a str> {
        match (&ctx.session, &self.memory) {
            (Some(session), _) => Some(session),
            (None, Some(_)) if !self.memory_from_store => Some(DEFAULT_SESSION),
            _ => None,
        }
    }

    fn check_output(&self, text: &str) -> OutputCheck {
        for guardrail in &self.output_guardrails {
            match guardrail(text) {
                OutputCheck::Accept => {}
                other => return other,
            }
        }
        OutputCheck::Accept
    }
}

/// How [`LlmAgent::execute`] goes on with a state: its first input, the journalled inputs
/// to catch up on, the durable run's journal, and the memory session.
pub(crate) struct Continue<'a> {
    pub(crate) first: Input,
    pub(crate) replay: Vec<Input>,
    pub(crate) log: Option<&'a RunLog>,
    pub(crate) session: Option<&'a str>,
    /// The team the run may hand off within.
    pub(crate) team: Option<&'a Team>,
}

impl<'a> Continue<'a> {
    pub(crate) fn fresh(session: Option<&'a str>) -> Self {
        Continue {
            first: Input::Resume,
            replay: Vec::new(),
            log: None,
            session,
            team: None,
        }
    }
}

/// The inputs a resumed run catches up on: what was journalled after its last committed
/// step, in order, then a verdict for each call that was interrupted while it ran (an
/// intent, no outcome) and whose tool may have side effects. Interrupted calls of
/// read-only and idempotent tools stay pending: the driver runs them again.
fn catch_up(
    state: &RunState,
    journal: Vec<JournalEntry>,
    tools: &ToolSet,
    interrupted: InterruptedCalls,
) -> Vec<Input> {
    let mut replay = Vec::with_capacity(journal.len());
    let mut turn = state.turns();
    let mut intents = Vec::new();
    let mut finished = std::collections::HashSet::new();
    for entry in journal {
        match entry {
            JournalEntry::ModelResponse { response, veto, .. } => {
                turn += 1;
                replay.push(match veto {
                    Some(veto) => Input::ModelResponseVetoed(response, veto),
                    None => Input::ModelResponse(response),
                });
            }
            JournalEntry::ToolIntent {
                turn,
                call_id,
                name,
                ..
            } => intents.push((turn, call_id, name)),
            JournalEntry::ToolOutcome {
                turn,
                call_id,
                outcome,
            } => {
                finished.insert((turn, call_id.clone()));
                replay.push(Input::ToolFinished(outcome.into_outcome(call_id)));
            }
            JournalEntry::Approvals { decisions } => replay.push(Input::Approvals(decisions)),
            JournalEntry::SubAgent { call_id, run } => {
                replay.push(Input::SubAgent { call_id, run });
            }
            JournalEntry::Handoff {
                agent,
                instructions,
                conversation,
            } => replay.push(Input::HandedOff {
                agent,
                instructions,
                conversation,
            }),
        }
    }
    for (call_turn, call_id, name) in intents {
        if call_turn != turn || finished.contains(&(call_turn, call_id.clone())) {
            continue;
        }
        let side_effecting = tools
            .meta(&name)
            .is_none_or(|m| m.side_effect == SideEffect::SideEffecting);
        if side_effecting {
            replay.push(Input::OutcomeUnknown {
                call_id,
                ask_human: interrupted == InterruptedCalls::AskHuman,
            });
        }
    }
    replay
}

/// Commits the end of a durable run: its last messages and status, and (with `session`)
/// its place in that session's history, in one write. A store error while recording a
/// failure is logged: the run's own error is the one to report.
async fn finish_durable(
    log: &RunLog,
    state: &mut RunState,
    outcome: &Result<RunResult, AgentError>,
    session: Option<&str>,
) -> Result<(), AgentError> {
    match outcome {
        Ok(result) => {
            let end = RunEnd {
                text: Some(result.text.clone()),
                error: None,
                stop_reason: Some(result.stop_reason),
                usage: result.usage,
                turns: result.turns,
            };
            log.finish(
                state,
                &result.new_messages,
                RunStatus::Finished,
                &end,
                session,
            )
            .await?;
        }
        // The store is the problem (or a resume was refused): the run stays as stored.
        Err(AgentError::Store(_)) => {}
        Err(error) => {
            let status = match error {
                AgentError::Cancelled { .. } => RunStatus::Cancelled,
                _ => RunStatus::Failed,
            };
            let partial = error.partial();
            let end = RunEnd {
                text: None,
                error: Some(error.to_string()),
                stop_reason: None,
                usage: partial.map(|p| p.usage).unwrap_or_default(),
                turns: partial.map_or(0, |p| p.turns),
            };
            let messages = partial.map_or(&[][..], |p| &p.new_messages[..]);
            if let Err(e) = log.finish(state, messages, status, &end, None).await {
                tracing::warn!(
                    run.id = log.run_id(),
                    "the end of a failed run could not be stored: {e}"
                );
            }
        }
    }
    Ok(())
}

/// An output guardrail's verdict on a final answer.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum OutputCheck {
    /// The answer may go out.
    Accept,
    /// The answer may not go out; the run ends with [`AgentError::OutputRejected`].
    Reject(String),
    /// The model gets this feedback and tries again (within the agent's
    /// `max_output_retries`; past it, this is a rejection).
    Retry(String),
}

/// The caller's check of a typed answer (deserialise, validate): `Err` is fed back.
pub(crate) type AnswerCheck<'a> = dyn Fn(&Value) -> Result<(), String> + Send + Sync + 'a;

/// Checks the input before the first model call: `Err(reason)` refuses it.
pub type InputGuardrail = Arc<dyn Fn(&str) -> Result<(), String> + Send + Sync>;
/// Checks a final answer.
pub type OutputGuardrail = Arc<dyn Fn(&str) -> OutputCheck + Send + Sync>;

type ArgumentCheck = Arc<dyn Fn(&ToolInvocation) -> Result<(), String> + Send + Sync>;
type ResultCheck = Arc<dyn Fn(&ToolInvocation, &str) -> Result<(), String> + Send + Sync>;

/// A guardrail on tool arguments or results, as a hook.
struct ToolGuardrail {
    on_args: Option<ArgumentCheck>,
    on_result: Option<ResultCheck>,
}

#[async_trait]
impl RunHooks for ToolGuardrail {
    async fn before_tool(&self, call: &ToolInvocation) -> ToolHookAction {
        match self.on_args.as_ref().map(|check| check(call)) {
            Some(Err(reason)) => ToolHookAction::Skip(Err(ToolError::permission_denied(reason))),
            _ => ToolHookAction::Continue,
        }
    }

    async fn after_tool(
        &self,
        call: &ToolInvocation,
        result: &Result<ToolOutput, ToolError>,
    ) -> ToolHookAction {
        let (Some(check), Ok(output)) = (self.on_result.as_ref(), result) else {
            return ToolHookAction::Continue;
        };
        match check(call, &output.clone().into_content()) {
            Ok(()) => ToolHookAction::Continue,
            Err(reason) => ToolHookAction::Skip(Err(ToolError::permission_denied(format!(
                "the result of `{}` was withheld: {reason}",
                call.name
            )))),
        }
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

    /// [`run_stream`](LlmAgent::run_stream) without the events.
    async fn run(&self, input: &str, ctx: &RunContext) -> Result<RunResult, AgentError> {
        self.run_with_events(input, ctx, EventSink::none(), None)
            .await
    }

    async fn resume_with_approvals(
        &self,
        state: RunState,
        decisions: Vec<(String, Approval)>,
        ctx: &RunContext,
    ) -> Result<RunResult, AgentError> {
        LlmAgent::resume_with_approvals(self, state, decisions, ctx).await
    }
}

/// Builds an [`LlmAgent`].
#[must_use = "a builder does nothing until `.build()`"]
pub struct LlmAgentBuilder {
    name: String,
    description: String,
    model: Arc<dyn ChatModel>,
    instructions: Option<String>,
    tools: Vec<Arc<dyn Tool>>,
    sources: Vec<Arc<dyn ToolSource>>,
    memory: Option<Arc<dyn Memory>>,
    context_policy: Arc<dyn ContextPolicy>,
    limits: RunLimits,
    settings: ModelSettings,
    // The one-field setters, kept apart so that `.settings(..)` and `.limits(..)` never
    // undo them, whatever the order of the calls; applied by `build`.
    max_turns: Option<u32>,
    stream: Option<bool>,
    temperature: Option<f32>,
    hooks: Vec<Arc<dyn RunHooks>>,
    input_guardrails: Vec<InputGuardrail>,
    output_guardrails: Vec<OutputGuardrail>,
    max_output_retries: u32,
    approval_policy: Option<ApprovalPolicy>,
    budget: Option<Budget>,
    prices: Option<Prices>,
    handoffs: Vec<Handoff>,
    store: Option<Arc<dyn RunStore>>,
    interrupted: InterruptedCalls,
}

impl LlmAgentBuilder {
    /// Makes every run durable: journalled in this store as it goes, so that after a crash
    /// [`LlmAgent::resume_run`] finishes it without repeating a side effect. The store is
    /// also the agent's [`memory`](Self::memory) unless another one is set: a run whose
    /// [`RunContext`] names a session continues it, and joins it in the same write that ends
    /// the run (a run that names none has no memory, rather than [`DEFAULT_SESSION`]).
    ///
    /// ```no_run
    /// # use std::sync::Arc;
    /// # use agent_core::{LlmAgent, durable::RunStore, testing::ScriptedModel};
    /// # fn open_store() -> Arc<dyn RunStore> { unimplemented!() }
    /// let store = open_store(); // e.g. agent_store::SqliteStore::open("runs.db")?
    /// let agent = LlmAgent::builder(Arc::new(ScriptedModel::new()))
    ///     .store(store)
    ///     .build()
    ///     .unwrap();
    /// ```
    pub fn store(mut self, store: Arc<dyn RunStore>) -> Self {
        self.store = Some(store);
        self
    }

    /// What a resumed run does with a side-effecting call that was interrupted while it ran
    /// (default: the model reads that its outcome is unknown; or a human decides).
    pub fn on_interrupted_calls(mut self, what: InterruptedCalls) -> Self {
        self.interrupted = what;
        self
    }

    /// Gives every run of this agent a budget of its own. When the run's context brings a
    /// budget too (a caller's shared one, or the parent run's when this agent is a tool),
    /// this one sits under it: both limits apply, and spending counts in both.
    pub fn budget(mut self, budget: Budget) -> Self {
        self.budget = Some(budget);
        self
    }

    /// Lets the model hand the conversation to another agent of the [`Team`] this agent
    /// runs in, with a `transfer_to_<name>` tool (see [`crate::team`]).
    pub fn handoff(mut self, handoff: Handoff) -> Self {
        self.tools.push(handoff.tool());
        self.handoffs.push(handoff);
        self
    }

    /// The price table of this agent's own [`budget`](Self::budget) (default:
    /// [`Prices::default`]). A budget the run's context brings prices with its own table.
    pub fn prices(mut self, prices: Prices) -> Self {
        self.prices = Some(prices);
        self
    }

    /// Adds hooks, consulted around every model and tool call, in the order added.
    pub fn hook(mut self, hooks: impl RunHooks + 'static) -> Self {
        self.hooks.push(Arc::new(hooks));
        self
    }

    /// Requires a human's approval for calls this policy picks (by tool name and checked
    /// arguments, `None` when invalid), on top of tools marked
    /// [`ToolMeta::with_approval`].
    pub fn approval_policy(
        mut self,
        policy: impl Fn(&str, Option<&Value>) -> bool + Send + Sync + 'static,
    ) -> Self {
        self.approval_policy = Some(Arc::new(policy));
        self
    }

    /// Checks the input before the first model call; `Err(reason)` ends the run with
    /// [`AgentError::InputRejected`].
    pub fn input_guardrail(
        mut self,
        check: impl Fn(&str) -> Result<(), String> + Send + Sync + 'static,
    ) -> Self {
        self.input_guardrails.push(Arc::new(check));
        self
    }

    /// Checks the final answer: accept, reject, or send the model feedback to try again.
    pub fn output_guardrail(
        mut self,
        check: impl Fn(&str) -> OutputCheck + Send + Sync + 'static,
    ) -> Self {
        self.output_guardrails.push(Arc::new(check));
        self
    }

    /// How many times an output guardrail may send the model back (default 2).
    pub fn max_output_retries(mut self, retries: u32) -> Self {
        self.max_output_retries = retries;
        self
    }

    /// Checks tool arguments before a call runs; `Err(reason)` refuses the call (the model
    /// reads the reason).
    pub fn tool_argument_guardrail(
        mut self,
        check: impl Fn(&ToolInvocation) -> Result<(), String> + Send + Sync + 'static,
    ) -> Self {
        self.hooks.push(Arc::new(ToolGuardrail {
            on_args: Some(Arc::new(check)),
            on_result: None,
        }));
        self
    }

    /// Checks a tool's result before the model sees it; `Err(reason)` withholds it (the
    /// model reads the reason instead).
    pub fn tool_result_guardrail(
        mut self,
        check: impl Fn(&ToolInvocation, &str) -> Result<(), String> + Send + Sync + 'static,
    ) -> Self {
        self.hooks.push(Arc::new(ToolGuardrail {
            on_args: None,
            on_result: Some(Arc::new(check)),
        }));
        self
    }

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

    /// Keeps conversations in this memory: each run loads its session's messages and
    /// appends its own. A run whose [`RunContext`] names no session (such as
    /// [`LlmAgent::ask`]) uses [`DEFAULT_SESSION`].
    pub fn memory(mut self, memory: Arc<dyn Memory>) -> Self {
        self.memory = Some(memory);
        self
    }

    /// Chooses which remembered messages are sent (default: all).
    pub fn context_policy(mut self, policy: impl ContextPolicy + 'static) -> Self {
        self.context_policy = Arc::new(policy);
        self
    }

    /// Sets all limits. A [`max_turns`](Self::max_turns) call, before or after this one,
    /// still applies.
    pub fn limits(mut self, limits: RunLimits) -> Self {
        self.limits = limits;
        self
    }

    /// Sets the turn limit (default 10), whether [`limits`](Self::limits) is called before
    /// or after.
    pub fn max_turns(mut self, max_turns: u32) -> Self {
        self.max_turns = Some(max_turns);
        self
    }

    /// Sets the request options applied to every model call. The one-option setters
    /// ([`streaming`](Self::streaming), [`temperature`](Self::temperature)) win over the
    /// same fields here, whatever the order of the calls:
    ///
    /// ```
    /// # use std::sync::Arc;
    /// # use agent_core::{LlmAgent, ModelSettings, testing::ScriptedModel};
    /// let settings = ModelSettings { max_output_tokens: Some(256), ..Default::default() };
    /// let a = LlmAgent::builder(Arc::new(ScriptedModel::new()))
    ///     .streaming(true)
    ///     .settings(settings.clone())
    ///     .build()
    ///     .unwrap();
    /// let b = LlmAgent::builder(Arc::new(ScriptedModel::new()))
    ///     .settings(settings)
    ///     .streaming(true)
    ///     .build()
    ///     .unwrap();
    /// assert_eq!(a.settings(), b.settings());
    /// assert!(a.settings().stream && a.settings().max_output_tokens == Some(256));
    /// ```
    pub fn settings(mut self, settings: ModelSettings) -> Self {
        self.settings = settings;
        self
    }

    /// Calls the model's streaming endpoint and assembles each answer (default: off).
    /// Applies whether [`settings`](Self::settings) is called before or after.
    pub fn streaming(mut self, stream: bool) -> Self {
        self.stream = Some(stream);
        self
    }

    /// Sets the sampling temperature, whether [`settings`](Self::settings) is called before
    /// or after.
    pub fn temperature(mut self, temperature: f32) -> Self {
        self.temperature = Some(temperature);
        self
    }

    /// Adds tools that can change while the agent lives (an MCP server's, say): each run
    /// starts with the source's tools of that moment. A source's tool named like a tool the
    /// agent already has (its own, or an earlier source's) is left out with a warning: the
    /// agent's own tools always win.
    pub fn tool_source(mut self, source: Arc<dyn ToolSource>) -> Self {
        self.sources.push(source);
        self
    }

    /// Builds the agent; fails when two tools share a name or a tool's schema is invalid.
    pub fn build(self) -> Result<LlmAgent, ToolSetError> {
        let mut settings = self.settings;
        if let Some(stream) = self.stream {
            settings.stream = stream;
        }
        if let Some(temperature) = self.temperature {
            settings.temperature = Some(temperature);
        }
        let mut limits = self.limits;
        if let Some(max_turns) = self.max_turns {
            limits.max_turns = max_turns;
        }
        let (tools, dynamic) = if self.sources.is_empty() {
            let mut tools = ToolSet::new(self.tools)?;
            if let Some(policy) = self.approval_policy {
                tools = tools.with_approval_policy(policy);
            }
            (tools, None)
        } else {
            let current = DynamicTools::build(&self.tools, &self.sources, &self.approval_policy)?;
            let tools = current.1.clone();
            let dynamic = DynamicTools {
                fixed: self.tools,
                sources: self.sources,
                approval: self.approval_policy,
                current: std::sync::Mutex::new(current),
            };
            (tools, Some(dynamic))
        };
        let memory_from_store = self.memory.is_none() && self.store.is_some();
        let (memory, memory_is_store) = match (self.memory, &self.store) {
            (Some(memory), Some(store)) => {
                let same = std::ptr::addr_eq(Arc::as_ptr(&memory), Arc::as_ptr(store));
                (Some(memory), same)
            }
            (Some(memory), None) => (Some(memory), false),
            (None, Some(store)) => (Some(store.clone() as Arc<dyn Memory>), true),
            (None, None) => (None, false),
        };
        Ok(LlmAgent {
            name: self.name,
            description: self.description,
            model: self.model,
            instructions: self.instructions,
            tools,
            dynamic,
            memory,
            memory_is_store,
            memory_from_store,
            store: self.store,
            interrupted: self.interrupted,
            context_policy: self.context_policy,
            limits,
            settings,
            hooks: self.hooks,
            input_guardrails: self.input_guardrails,
            output_guardrails: self.output_guardrails,
            max_output_retries: self.max_output_retries,
            budget: self.budget,
            prices: self.prices,
            handoffs: self.handoffs,
        })
    }
}

/// Any [`Agent`] as a tool: the model passes a task, the agent's final answer comes back
/// as the result. The nested run shares the outer run's cancellation, and spends from its
/// budget (an agent with a budget of its own gets it under the outer one: both apply).
///
/// What the outer run takes in: the nested run's usage, in its
/// [`RunResult::usage`](crate::RunResult::usage) and, per sub-agent, in
/// [`RunResult::sub_agents`](crate::RunResult::sub_agents); its events, as
/// [`RunEvent::SubAgent`] tagged with the agent's name and depth; and its approval pause,
/// which pauses the outer run with the nested calls (ids `<outer call id>/<nested call
/// id>`) and resumes as one with [`LlmAgent::resume_with_approvals`].
///
/// ```
/// use std::sync::Arc;
/// use agent_core::{AgentTool, LlmAgent, ToolSetError, testing::ScriptedModel};
/// let model = Arc::new(ScriptedModel::new());
/// let anonymous = LlmAgent::builder(model.clone()).name("helper").build().unwrap();
/// assert!(matches!(AgentTool::new(Arc::new(anonymous)), Err(ToolSetError::MissingDescription(_))));
/// let helper = LlmAgent::builder(model)
///     .name("helper")
///     .description("Answers questions about the weather.")
///     .build()
///     .unwrap();
/// let tool = AgentTool::new(Arc::new(helper)).unwrap();
/// ```
#[derive(Clone)]
pub struct AgentTool {
    agent: Arc<dyn Agent>,
    /// The arguments' schema; `None`: `{"input": string}`.
    schema: Option<Value>,
    parallel: bool,
}

impl fmt::Debug for AgentTool {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("AgentTool")
            .field("name", &self.agent.name())
            .finish_non_exhaustive()
    }
}

impl AgentTool {
    /// Wraps an agent; the model passes the task as a string, `input`. Fails when the agent
    /// has no description: the calling model reads it to decide when to delegate, so an
    /// empty one is a mistake, not a default.
    pub fn new(agent: Arc<dyn Agent>) -> Result<Self, ToolSetError> {
        if agent.description().trim().is_empty() {
            return Err(ToolSetError::MissingDescription(agent.name().to_owned()));
        }
        Ok(AgentTool {
            agent,
            schema: None,
            parallel: false,
        })
    }

    /// Wraps an agent whose input is a struct: the model fills in `T`'s fields (checked
    /// against its schema, like any tool's arguments), and the agent reads them as JSON.
    ///
    /// ```
    /// # use std::sync::Arc;
    /// # use agent_core::{AgentTool, LlmAgent, testing::ScriptedModel};
    /// #[derive(serde::Deserialize, schemars::JsonSchema)]
    /// struct Research {
    ///     /// What to find out.
    ///     question: String,
    ///     /// How many sources at most.
    ///     max_sources: u32,
    /// }
    /// let researcher = LlmAgent::builder(Arc::new(ScriptedModel::new()))
    ///     .name("researcher")
    ///     .description("Finds sources.")
    ///     .build()
    ///     .unwrap();
    /// let tool = AgentTool::typed::<Research>(Arc::new(researcher)).unwrap();
    /// ```
    pub fn typed<T: schemars::JsonSchema>(agent: Arc<dyn Agent>) -> Result<Self, ToolSetError> {
        let mut tool = Self::new(agent)?;
        tool.schema = Some(crate::schema::schema_for::<T>());
        Ok(tool)
    }

    /// Lets calls of this agent run at the same time as other parallel-safe calls of the
    /// same turn (default: one at a time). The nested runs then spend from the shared
    /// budget together; the ledger keeps them within it.
    #[must_use]
    pub fn parallel(mut self, parallel: bool) -> Self {
        self.parallel = parallel;
        self
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
        match &self.schema {
            Some(schema) => schema.clone(),
            None => serde_json::json!({
                "type": "object",
                "properties": {
                    "input": {"type": "string", "description": "The task for this agent, stated completely."}
                },
                "required": ["input"]
            }),
        }
    }

    fn meta(&self) -> ToolMeta {
        let mut meta = ToolMeta::side_effecting();
        meta.parallel_safe = self.parallel;
        meta
    }

    fn nests_runs(&self) -> bool {
        true
    }

    async fn call(&self, args: Value, ctx: &ToolContext) -> Result<ToolOutput, ToolError> {
        let name = self.agent.name();
        let link = NestedLink::of(ctx);
        let mut run_ctx = RunContext::new().with_cancel(ctx.cancel.child_token());
        // A nested run spends from the same budget.
        run_ctx.budget = ctx.budget.clone();
        if let Some(relay) = link.and_then(|l| l.relay_for(name)) {
            run_ctx = run_ctx.with_relay(relay);
        }
        let outcome = match link.and_then(NestedLink::take_resume) {
            Some(resume) => {
                self.agent
                    .resume_with_approvals(resume.state, resume.decisions, &run_ctx)
                    .await
            }
            None => {
                let input = match &self.schema {
                    Some(_) => args.to_string(),
                    None => {
                        serde_json::from_value::<AgentToolArgs>(args)
                            .map_err(|e| ToolError::invalid_arguments(e.to_string()))?
                            .input
                    }
                };
                self.agent.run(&input, &run_ctx).await
            }
        };
        match outcome {
            Ok(mut result) => {
                let usage = result.usage_tree(name);
                let paused = result.interruption.take();
                let Some(link) = link else {
                    if paused.is_some() {
                        return Err(ToolError::failed(format!(
                            "The agent `{name}` paused for approval, and this call cannot \
                             pause: run it as a tool of an agent's run"
                        )));
                    }
                    return Ok(ToolOutput::Text(result.text));
                };
                let waiting = paused.is_some();
                link.report(SubAgentRun { usage, paused });
                if waiting {
                    // The run waits for the decisions; this result is not the call's.
                    return Ok(ToolOutput::Text(format!(
                        "`{name}` is waiting for approval."
                    )));
                }
                Ok(ToolOutput::Text(result.text))
            }
            Err(e) => {
                // What the nested run spent before it failed still counts.
                if let (Some(link), Some(partial)) = (link, e.partial()) {
                    link.report(SubAgentRun {
                        usage: AgentUsage {
                            agent: name.to_owned(),
                            turn_usage: vec![partial.usage],
                            turn_models: vec![String::new()],
                            sub_agents: Vec::new(),
                        },
                        paused: None,
                    });
                }
                Err(ToolError::failed(format!(
                    "The agent `{name}` could not complete the task: {e}"
                )))
            }
        }
    }
}
