//! The async driver: carries out the state machine's actions. All I/O of a run happens
//! here, and nothing else: every decision is the state machine's.

use std::sync::Arc;
use std::time::Instant;

use futures::StreamExt;
use tokio_util::sync::CancellationToken;
use tracing::{Instrument, field};

use super::state::{Action, Input, RunState, ToolInvocation, ToolOutcome};
use super::{RunLimits, RunResult};
use crate::error::{AgentError, ToolError, ToolErrorKind};
use crate::model::ChatModel;
use crate::tool::{ToolContext, ToolSet};

/// Runs a state machine to its end: calls the model, runs the tools, feeds the outcomes back.
///
/// Works from a fresh [`RunState`] and from one restored mid-run. `cancel` stops the run
/// promptly at any point; the error then carries the history, every tool call answered.
pub async fn drive(
    state: &mut RunState,
    model: &dyn ChatModel,
    tools: &ToolSet,
    agent: &str,
    cancel: &CancellationToken,
) -> Result<RunResult, AgentError> {
    let limits = state.limits().clone();
    let stream = state.settings().stream;
    let run_id: Arc<str> = Arc::from(state.run_id());
    let agent: Arc<str> = Arc::from(agent);
    let mut input = Input::Resume;
    loop {
        let action = state.step(tools, input);
        if cancel.is_cancelled() && !matches!(action, Action::Finished(_) | Action::Failed(_)) {
            return Err(state.cancel());
        }
        input = match action {
            Action::Finished(result) => return Ok(result),
            Action::Failed(error) => return Err(error),
            Action::CallModel(request) => {
                let span = tracing::info_span!(
                    "chat",
                    gen_ai.operation.name = "chat",
                    gen_ai.provider.name = model.provider(),
                    gen_ai.request.model = model.model(),
                    gen_ai.usage.input_tokens = field::Empty,
                    gen_ai.usage.output_tokens = field::Empty,
                    gen_ai.response.finish_reasons = field::Empty,
                );
                let call = async {
                    tokio::select! {
                        biased;
                        _ = cancel.cancelled() => None,
                        r = call_model(model, &request, stream) => Some(r),
                    }
                };
                match call.instrument(span.clone()).await {
                    None => return Err(state.cancel()),
                    Some(Ok(response)) => {
                        span.record("gen_ai.usage.input_tokens", response.usage.input_tokens);
                        span.record("gen_ai.usage.output_tokens", response.usage.output_tokens);
                        span.record(
                            "gen_ai.response.finish_reasons",
                            field::debug(&response.finish_reason),
                        );
                        Input::ModelResponse(response)
                    }
                    Some(Err(error)) => {
                        tracing::warn!(parent: &span, error = %error, "model call failed");
                        Input::ModelFailed(error)
                    }
                }
            }
            Action::RunTools(invocations) => {
                let runner = ToolRunner {
                    tools,
                    limits: &limits,
                    run_id: &run_id,
                    agent: &agent,
                    cancel,
                };
                let outcomes = runner.run(invocations).await;
                if cancel.is_cancelled() {
                    // Record what finished, then end: nothing is lost, nothing unanswered.
                    let _ = state.step(tools, Input::ToolResults(outcomes));
                    return Err(state.cancel());
                }
                Input::ToolResults(outcomes)
            }
        };
    }
}

async fn call_model(
    model: &dyn ChatModel,
    request: &crate::model::ChatRequest,
    stream: bool,
) -> Result<crate::model::ChatResponse, crate::error::ModelError> {
    if stream {
        crate::model::collect_stream(model.chat_stream(request).await?).await
    } else {
        model.chat(request).await
    }
}

/// Runs the tool calls of one turn for a run: the tools, the limits, and the run's
/// identity and cancellation token that every call's [`ToolContext`] is made from.
#[derive(Clone, Copy, Debug)]
pub struct ToolRunner<'a> {
    /// The tools.
    pub tools: &'a ToolSet,
    /// Timeout and parallelism limits.
    pub limits: &'a RunLimits,
    /// The run's id, given to each call.
    pub run_id: &'a Arc<str>,
    /// The agent's name, given to each call.
    pub agent: &'a Arc<str>,
    /// The run's cancellation token; each call gets a child of it.
    pub cancel: &'a CancellationToken,
}

impl ToolRunner<'_> {
    /// Runs one turn's tool calls and returns their outcomes in call order.
    ///
    /// Consecutive parallel-safe calls run concurrently (at most `limits.max_parallel_tools`
    /// at once); any other call runs alone, after the calls before it and before the calls
    /// after it, so side effects happen in the order the model asked for them.
    pub async fn run(&self, invocations: Vec<ToolInvocation>) -> Vec<ToolOutcome> {
        let mut outcomes = Vec::with_capacity(invocations.len());
        let mut batch: Vec<ToolInvocation> = Vec::new();
        for invocation in invocations {
            let parallel = self
                .tools
                .meta(&invocation.name)
                .is_some_and(|m| m.parallel_safe);
            if parallel {
                batch.push(invocation);
                continue;
            }
            self.run_batch(&mut batch, &mut outcomes).await;
            outcomes.push(self.run_one(invocation).await);
        }
        self.run_batch(&mut batch, &mut outcomes).await;
        outcomes
    }

    /// Runs the parallel-safe calls collected so far, concurrently, in order.
    async fn run_batch(&self, batch: &mut Vec<ToolInvocation>, outcomes: &mut Vec<ToolOutcome>) {
        if batch.len() <= 1 {
            if let Some(invocation) = batch.pop() {
                outcomes.push(self.run_one(invocation).await);
            }
            return;
        }
        let done: Vec<ToolOutcome> = futures::stream::iter(batch.drain(..))
            .map(|invocation| self.run_one(invocation))
            .buffered(self.limits.max_parallel_tools.max(1))
            .collect()
            .await;
        outcomes.extend(done);
    }

    async fn run_one(&self, invocation: ToolInvocation) -> ToolOutcome {
        let ToolInvocation {
            call_id,
            name,
            args,
        } = invocation;
        if self.cancel.is_cancelled() {
            return ToolOutcome {
                call_id,
                result: Err(ToolError::new(
                    ToolErrorKind::Cancelled,
                    format!("`{name}` was not run because the run was cancelled."),
                )),
            };
        }
        let span = tracing::info_span!(
            "execute_tool",
            gen_ai.operation.name = "execute_tool",
            gen_ai.tool.name = %name,
            gen_ai.tool.call.id = %call_id,
            error.type = field::Empty,
        );
        let ctx = ToolContext {
            run_id: self.run_id.clone(),
            agent: self.agent.clone(),
            call_id: call_id.clone(),
            cancel: self.cancel.child_token(),
        };
        let started = Instant::now();
        let result = self
            .tools
            .invoke(&name, args, ctx, self.limits.tool_timeout)
            .instrument(span.clone())
            .await;
        if let Err(error) = &result {
            span.record("error.type", field::debug(error.kind));
            tracing::warn!(
                parent: &span,
                kind = ?error.kind,
                detail = error.detail.as_deref().unwrap_or(""),
                elapsed_ms = started.elapsed().as_millis() as u64,
                "tool call failed: {}",
                error.message
            );
        }
        ToolOutcome { call_id, result }
    }
}
