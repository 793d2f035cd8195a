//! The typed entry points: [`LlmAgent::ask_as`] and [`LlmAgent::run_as`] for one call,
//! [`TypedAgent`] (from [`LlmAgentBuilder::output_type`]) for an agent that always answers
//! with `T`, and [`TypedResult`], the value beside the usual [`RunResult`].
//!
//! They only wire the run: the state machine asks and checks, the agent drives, and the
//! caller-side checks (deserialising into `T`, the validators) are handed to the agent's
//! loop, which sends a refused answer back through the run's state.

use std::fmt;
use std::ops::Deref;

use async_trait::async_trait;
use schemars::JsonSchema;
use serde::de::DeserializeOwned;
use serde_json::Value;

use super::OutputMode;
use super::{FINAL_ANSWER_TOOL, Output, OutputSchemaError, OutputSpec};
use crate::agent::{Agent, LlmAgent, LlmAgentBuilder};
use crate::error::ToolSetError;
use crate::message::Message;
use futures::{Stream, StreamExt};

use crate::run::{
    AgentError, Approval, EventSink, Input, RunContext, RunEvent, RunResult, RunState, StopReason,
};

/// A typed answer and the run that gave it (usage, turns, history: reach them through
/// `run`, or directly, since this derefs to [`RunResult`]).
#[derive(Clone, Debug)]
pub struct TypedResult<T> {
    /// The answer.
    pub value: T,
    /// The run: its messages, usage, turns; `run.text` is the answer as JSON.
    pub run: RunResult,
}

impl<T> Deref for TypedResult<T> {
    type Target = RunResult;

    fn deref(&self) -> &RunResult {
        &self.run
    }
}

/// The end of a typed run: the value read from a finished run, or why there is none.
fn into_typed<T: DeserializeOwned + JsonSchema>(
    result: RunResult,
    output: &Output<T>,
) -> Result<TypedResult<T>, Box<AgentError>> {
    if result.stop_reason == StopReason::AwaitingApproval {
        return Err(Box::new(AgentError::Paused(Box::new(result))));
    }
    let read = match &result.output {
        Some(value) => output.accept(value),
        None => Err("the run ended without a typed answer".into()),
    };
    match read {
        Ok(value) => Ok(TypedResult { value, run: result }),
        Err(error) => Err(Box::new(AgentError::InvalidOutput {
            attempts: vec![error],
            partial: Box::new(result.into_partial()),
        })),
    }
}

/// The spec of a run of `agent` for `output`: `Auto` resolved for its model and tools. A
/// tool of the agent's own named `final_answer` would be shadowed in tool mode: refused.
fn spec_for<T: DeserializeOwned + JsonSchema>(
    agent: &LlmAgent,
    output: &Output<T>,
) -> Result<OutputSpec, OutputSchemaError> {
    let tools = agent.tools();
    let spec = output.spec(agent.model().capabilities(), !tools.is_empty())?;
    if spec.mode == OutputMode::Tool && tools.get(FINAL_ANSWER_TOOL).is_some() {
        return Err(OutputSchemaError(format!(
            "the agent has a tool named `{FINAL_ANSWER_TOOL}`, the name tool mode gives the \
             answer; rename it, or choose another `OutputMode`"
        )));
    }
    Ok(spec)
}

impl LlmAgent {
    /// Runs a task for an answer of type `T` ([`Output::new`]'s defaults), with no way to
    /// cancel it: `let invoice: Invoice = agent.ask_as("...").await?.value;`. See
    /// [`crate::output`].
    pub async fn ask_as<T: DeserializeOwned + JsonSchema>(
        &self,
        input: &str,
    ) -> Result<TypedResult<T>, AgentError> {
        self.run_as(input, &RunContext::default(), &Output::new())
            .await
    }

    /// Runs a task for an answer of type `T`, as `output` says (mode, retries, validators).
    /// Fails with [`AgentError::InvalidOutput`] when no valid answer came within the retry
    /// budget, and with [`AgentError::Paused`] when a tool call waits for approval.
    pub async fn run_as<T: DeserializeOwned + JsonSchema>(
        &self,
        input: &str,
        ctx: &RunContext,
        output: &Output<T>,
    ) -> Result<TypedResult<T>, AgentError> {
        let spec = spec_for(self, output)?;
        let check = |value: &Value| output.accept(value).map(drop);
        let result = self
            .run_with_events(input, ctx, EventSink::none(), Some((spec, &check)))
            .await?;
        into_typed(result, output).map_err(|e| *e)
    }
}

/// What a typed run streams ([`LlmAgent::run_stream_as`]): the run's events, the answer's
/// JSON as it grows, and last the checked answer or the error.
#[derive(Debug)]
#[non_exhaustive]
pub enum TypedEvent<T> {
    /// Something that happened in the run (its end comes as `Answer` or `Failed`).
    Run(RunEvent),
    /// The answer's JSON so far, as the model writes it (best effort: it may stop anywhere,
    /// and starts again when an invalid answer is sent back). With a streaming model
    /// ([`LlmAgentBuilder::streaming`]) it grows piece by piece; without, it comes whole.
    PartialAnswer(String),
    /// The answer: checked against the schema, deserialised and validated.
    Answer(Box<TypedResult<T>>),
    /// The run ended without an answer.
    Failed(AgentError),
}

/// Follows the answer's JSON through a run's events: the text of text answers, or the
/// arguments of a `final_answer` call in tool mode.
struct PartialAnswer {
    by_tool: bool,
    answer_call: Option<usize>,
    text: String,
}

impl PartialAnswer {
    fn observe(&mut self, event: &RunEvent) -> Option<String> {
        match event {
            RunEvent::TurnStarted { .. } => {
                self.text.clear();
                self.answer_call = None;
                None
            }
            RunEvent::TextDelta(piece) if !self.by_tool => {
                self.text.push_str(piece);
                Some(self.text.clone())
            }
            RunEvent::ToolCallStreamed { index, name, .. } if self.by_tool => {
                if name == FINAL_ANSWER_TOOL {
                    self.answer_call = Some(*index);
                    self.text.clear();
                }
                None
            }
            RunEvent::ToolArgumentsDelta { index, arguments }
                if self.answer_call == Some(*index) =>
            {
                self.text.push_str(arguments);
                Some(self.text.clone())
            }
            _ => None,
        }
    }
}

impl LlmAgent {
    /// [`run_as`](Self::run_as), streamed: the run's events, the answer's JSON as it
    /// arrives, then the checked answer.
    ///
    /// ```
    /// use std::sync::Arc;
    /// use futures::StreamExt;
    /// use agent_core::{LlmAgent, Output, RunContext, output::TypedEvent, testing::ScriptedModel};
    /// #[derive(serde::Deserialize, schemars::JsonSchema)]
    /// struct Total { cents: u64 }
    /// # tokio::runtime::Builder::new_current_thread().enable_all().build().unwrap().block_on(async {
    /// let agent = LlmAgent::builder(Arc::new(ScriptedModel::new().then_text(r#"{"cents": 1250}"#)))
    ///     .streaming(true)
    ///     .build()
    ///     .unwrap();
    /// let (ctx, output) = (RunContext::new(), Output::<Total>::new());
    /// let events: Vec<_> = agent.run_stream_as("Total?", &ctx, &output).collect().await;
    /// assert!(matches!(events.last(), Some(TypedEvent::Answer(a)) if a.value.cents == 1250));
    /// # });
    /// ```
    pub fn run_stream_as<'a, T: DeserializeOwned + JsonSchema + Send + 'a>(
        &'a self,
        input: &'a str,
        ctx: &'a RunContext,
        output: &'a Output<T>,
    ) -> impl Stream<Item = TypedEvent<T>> + Send + 'a {
        let (sender, receiver) = futures::channel::mpsc::unbounded();
        let run = async move {
            let outcome = match spec_for(self, output) {
                Err(error) => Err(AgentError::from(error)),
                Ok(spec) => {
                    let mut partial = PartialAnswer {
                        by_tool: spec.mode == OutputMode::Tool,
                        answer_call: None,
                        text: String::new(),
                    };
                    let mut emit = |event: RunEvent| {
                        if let Some(json) = partial.observe(&event) {
                            let _ = sender.unbounded_send(TypedEvent::PartialAnswer(json));
                        }
                        let _ = sender.unbounded_send(TypedEvent::Run(event));
                    };
                    let check = |value: &Value| output.accept(value).map(drop);
                    self.run_with_events(
                        input,
                        ctx,
                        EventSink::new(&mut emit),
                        Some((spec, &check)),
                    )
                    .await
                }
            };
            let last = match outcome.map(|result| into_typed(result, output)) {
                Ok(Ok(typed)) => TypedEvent::Answer(Box::new(typed)),
                Ok(Err(error)) => TypedEvent::Failed(*error),
                Err(error) => TypedEvent::Failed(error),
            };
            let _ = sender.unbounded_send(last);
        };
        // Every event goes through the channel, in order; the run is driven by polling.
        futures::stream::select(
            receiver,
            futures::stream::once(run).filter_map(|()| std::future::ready(None)),
        )
    }
}

impl LlmAgentBuilder {
    /// Makes the agent answer every run with a `T` (see [`crate::output`]); configure how
    /// on the returned builder, then `build()`.
    ///
    /// ```
    /// use std::sync::Arc;
    /// use agent_core::{LlmAgent, testing::ScriptedModel};
    /// #[derive(serde::Deserialize, schemars::JsonSchema)]
    /// struct City { name: String, country: String }
    /// # tokio::runtime::Builder::new_current_thread().enable_all().build().unwrap().block_on(async {
    /// let model = Arc::new(ScriptedModel::new().then_text(r#"{"name":"Lyon","country":"France"}"#));
    /// let agent = LlmAgent::builder(model).output_type::<City>().max_retries(1).build()?;
    /// let city = agent.ask("Where was the Lumière brothers' first film shown?").await?.value;
    /// assert_eq!(city.name, "Lyon");
    /// # Ok::<(), Box<dyn std::error::Error>>(())
    /// # }).unwrap();
    /// ```
    pub fn output_type<T: DeserializeOwned + JsonSchema>(self) -> TypedAgentBuilder<T> {
        TypedAgentBuilder {
            builder: self,
            output: Output::new(),
        }
    }
}

/// Builds a [`TypedAgent`]: the agent's builder, then how its answers are asked for.
#[must_use = "a builder does nothing until `.build()`"]
pub struct TypedAgentBuilder<T> {
    builder: LlmAgentBuilder,
    output: Output<T>,
}

impl<T> fmt::Debug for TypedAgentBuilder<T> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("TypedAgentBuilder")
            .field("output", &self.output)
            .finish_non_exhaustive()
    }
}

impl<T: DeserializeOwned + JsonSchema> TypedAgentBuilder<T> {
    /// How the model is asked (default [`OutputMode::Auto`]).
    pub fn mode(mut self, mode: OutputMode) -> Self {
        self.output = self.output.mode(mode);
        self
    }

    /// How many times an invalid answer goes back to the model (default 2).
    pub fn max_retries(mut self, retries: u32) -> Self {
        self.output = self.output.max_retries(retries);
        self
    }

    /// See [`Output::allow_non_strict`].
    pub fn allow_non_strict(mut self) -> Self {
        self.output = self.output.allow_non_strict();
        self
    }

    /// Adds a validator (see [`Output::validate`]).
    pub fn validate(
        mut self,
        check: impl Fn(&T) -> Result<(), String> + Send + Sync + 'static,
    ) -> Self {
        self.output = self.output.validate(check);
        self
    }

    /// Builds the agent; fails as [`LlmAgentBuilder::build`] does.
    pub fn build(self) -> Result<TypedAgent<T>, ToolSetError> {
        Ok(TypedAgent {
            agent: self.builder.build()?,
            output: self.output,
        })
    }
}

/// An agent that always answers with a `T`. As a tool of another agent (it implements
/// [`Agent`]), its answer is the value as JSON.
pub struct TypedAgent<T> {
    agent: LlmAgent,
    output: Output<T>,
}

impl<T> fmt::Debug for TypedAgent<T> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("TypedAgent")
            .field("agent", &self.agent)
            .field("output", &self.output)
            .finish()
    }
}

impl<T: DeserializeOwned + JsonSchema> TypedAgent<T> {
    /// The agent underneath (untyped runs, settings, tools).
    pub fn agent(&self) -> &LlmAgent {
        &self.agent
    }

    /// Runs a task with no way to cancel it.
    pub async fn ask(&self, input: &str) -> Result<TypedResult<T>, AgentError> {
        self.run_typed(input, &RunContext::default()).await
    }

    /// Runs a task.
    pub async fn run_typed(
        &self,
        input: &str,
        ctx: &RunContext,
    ) -> Result<TypedResult<T>, AgentError> {
        self.agent.run_as(input, ctx, &self.output).await
    }

    /// The state of a new run that asks for a `T`, without running it (to save it, or to
    /// step it yourself); drive it with [`resume`](Self::resume).
    pub fn start(&self, input: &str, history: &[Message]) -> Result<RunState, OutputSchemaError> {
        let spec = spec_for(&self.agent, &self.output)?;
        Ok(self.agent.start(input, history).with_output(spec))
    }

    /// Runs a saved state to its end; its retry count goes on from where it was.
    pub async fn resume(
        &self,
        state: RunState,
        ctx: &RunContext,
    ) -> Result<TypedResult<T>, AgentError> {
        self.drive(state, Input::Resume, ctx).await
    }

    /// Continues a run paused for approval ([`AgentError::Paused`] holds its state, in
    /// `interruption`) with a human's decisions.
    pub async fn resume_with_approvals(
        &self,
        state: RunState,
        decisions: Vec<(String, Approval)>,
        ctx: &RunContext,
    ) -> Result<TypedResult<T>, AgentError> {
        self.drive(state, Input::Approvals(decisions), ctx).await
    }

    async fn drive(
        &self,
        state: RunState,
        first: Input,
        ctx: &RunContext,
    ) -> Result<TypedResult<T>, AgentError> {
        let check = |value: &Value| self.output.accept(value).map(drop);
        let result = self
            .agent
            .continue_state(state, first, ctx, Some(&check))
            .await?;
        into_typed(result, &self.output).map_err(|e| *e)
    }
}

#[async_trait]
impl<T: DeserializeOwned + JsonSchema> Agent for TypedAgent<T> {
    fn name(&self) -> &str {
        self.agent.name()
    }

    fn description(&self) -> &str {
        self.agent.description()
    }

    /// The run, its answer (checked, deserialised and validated) in `text` as JSON.
    async fn run(&self, input: &str, ctx: &RunContext) -> Result<RunResult, AgentError> {
        self.run_typed(input, ctx).await.map(|typed| typed.run)
    }
}
