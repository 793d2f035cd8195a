//! The async driver: carries out the state machine's actions. All I/O of a run happens
//! here, and nothing else: every decision is the state machine's.

use std::sync::Arc;
use std::time::Instant;

use futures::StreamExt;
use tokio_util::sync::CancellationToken;
use tracing::{Instrument, field};

use super::budget::{BudgetTracker, OnBudgetExceeded};
use super::control::{EventSink, HookAction, RunEvent, RunHooks, ToolHookAction};
use super::state::{Action, Input, RunState, ToolInvocation, ToolOutcome};
use super::{RunLimits, RunResult};
use crate::error::{AgentError, ModelError, ModelErrorKind, ToolError, ToolErrorKind};
use crate::model::{ChatModel, ChatRequest, ChatResponse, StreamEvent};
use crate::tool::{ToolContext, ToolOutput, ToolSet};

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
    let controls = RunControls {
        hooks: &[],
        emit: EventSink::none(),
        budget: None,
    };
    drive_with(state, model, tools, agent, cancel, Input::Resume, controls).await
}

/// The caller's side of [`drive_with`]: hooks to consult and where events go.
pub struct RunControls<'a> {
    /// Consulted around every model and tool call, in order.
    pub hooks: &'a [Arc<dyn RunHooks>],
    /// Receives every [`RunEvent`] as it happens.
    pub emit: EventSink<'a>,
    /// Limits checked before and after every model call and before every tool batch.
    pub budget: Option<Arc<BudgetTracker>>,
}

/// [`drive`] with a first input (for example [`Input::Approvals`] when resuming a paused
/// run), hooks and events.
pub async fn drive_with(
    state: &mut RunState,
    model: &dyn ChatModel,
    tools: &ToolSet,
    agent: &str,
    cancel: &CancellationToken,
    first: Input,
    controls: RunControls<'_>,
) -> Result<RunResult, AgentError> {
    let RunControls {
        hooks,
        mut emit,
        budget,
    } = controls;
    let limits = state.limits().clone();
    let stream = state.settings().stream;
    let run_id: Arc<str> = Arc::from(state.run_id());
    let agent: Arc<str> = Arc::from(agent);
    let mut input = first;
    loop {
        let action = state.step(tools, input);
        for refused in state.take_refused() {
            emit.send(|| RunEvent::ToolCallFinished {
                call_id: refused.call_id,
                name: refused.name,
                content: refused.content,
                is_error: true,
                duration: std::time::Duration::ZERO,
            });
        }
        if cancel.is_cancelled() && matches!(action, Action::CallModel(_) | Action::RunTools(_)) {
            return Err(state.cancel());
        }
        input = match action {
            Action::Finished(result) => return Ok(result),
            Action::Failed(error) => return Err(error),
            Action::AwaitApproval(pending) => {
                emit.send(|| RunEvent::ApprovalRequested(pending.clone()));
                return Ok(state.interrupted_result(pending));
            }
            Action::CallModel(request) => {
                for hook in hooks {
                    if let HookAction::Stop(reason) = hook.before_model(&request).await {
                        return Err(state.stop(reason));
                    }
                }
                if let Some(tracker) = &budget
                    && !state.is_wrapping_up()
                    && let Err(exceeded) = tracker.check_model_call(model.model(), &request)
                {
                    if tracker.budget().on_exceeded == OnBudgetExceeded::Fail {
                        return Err(state.over_budget(exceeded));
                    }
                    state.wrap_up_now(&format!("the {} budget was exceeded", exceeded.kind));
                    input = Input::Resume;
                    continue;
                }
                let turn = state.turns() + 1;
                emit.send(|| RunEvent::TurnStarted { turn });
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
                        r = call_model(model, &request, stream, emit.reborrow()) => Some(r),
                    }
                };
                match call.instrument(span.clone()).await {
                    None => return Err(state.cancel()),
                    Some(Ok(mut response)) => {
                        // Usage the provider did not report is estimated, never zero.
                        response.fill_missing_usage(&request);
                        span.record("gen_ai.usage.input_tokens", response.usage.input_tokens);
                        span.record("gen_ai.usage.output_tokens", response.usage.output_tokens);
                        span.record(
                            "gen_ai.response.finish_reasons",
                            field::debug(&response.finish_reason),
                        );
                        emit.send(|| RunEvent::Usage(response.usage));
                        let over = budget.as_ref().and_then(|t| {
                            t.record_model_call(model.model(), &response.usage).err()
                        });
                        emit.send(|| RunEvent::TurnFinished {
                            turn,
                            usage: response.usage,
                        });
                        for hook in hooks {
                            if let HookAction::Stop(reason) = hook.after_model(&response).await {
                                // The answer is recorded first, so the history shows it.
                                return Err(
                                    match state.step(tools, Input::ModelResponse(response)) {
                                        Action::Finished(result) => AgentError::Stopped {
                                            reason,
                                            partial: Box::new(result.into_partial()),
                                        },
                                        Action::Failed(error) => error,
                                        _ => state.stop(reason),
                                    },
                                );
                            }
                        }
                        match over {
                            // Over budget, and the model wants more: record its turn, then
                            // stop or wrap up. A final answer is kept even if it went over.
                            Some(exceeded) if !response.message.tool_calls.is_empty() => {
                                match state.step(tools, Input::ModelResponse(response)) {
                                    // The wrap-up answer (its calls dropped) ends the run.
                                    Action::Finished(result) => return Ok(result),
                                    Action::Failed(error) => return Err(error),
                                    _ => {}
                                }
                                let fail = budget.as_ref().is_none_or(|t| {
                                    t.budget().on_exceeded == OnBudgetExceeded::Fail
                                });
                                if fail {
                                    return Err(state.over_budget(exceeded));
                                }
                                state.wrap_up_now(&format!(
                                    "the {} budget was exceeded, so this call was not run",
                                    exceeded.kind
                                ));
                                Input::Resume
                            }
                            _ => Input::ModelResponse(response),
                        }
                    }
                    Some(Err(error)) => {
                        tracing::warn!(parent: &span, error = %error, "model call failed");
                        Input::ModelFailed(error)
                    }
                }
            }
            Action::RunTools(invocations) => {
                if let Some(tracker) = &budget
                    && let Err(exceeded) = tracker.record_tool_calls(invocations.len() as u32)
                {
                    if tracker.budget().on_exceeded == OnBudgetExceeded::Fail {
                        return Err(state.over_budget(exceeded));
                    }
                    state.wrap_up_now(&format!(
                        "the {} budget was exceeded, so this call was not run",
                        exceeded.kind
                    ));
                    input = Input::Resume;
                    continue;
                }
                let runner = ToolRunner {
                    tools,
                    limits: &limits,
                    run_id: &run_id,
                    agent: &agent,
                    cancel,
                    budget: budget.as_ref(),
                };
                let (outcomes, stop) = runner.run_with(invocations, hooks, emit.reborrow()).await;
                if cancel.is_cancelled() || stop.is_some() {
                    // Record what finished, then end: nothing is lost, nothing unanswered.
                    if let Action::Failed(error) = state.step(tools, Input::ToolResults(outcomes)) {
                        return Err(error);
                    }
                    return Err(match stop {
                        Some(reason) => state.stop(reason),
                        None => state.cancel(),
                    });
                }
                Input::ToolResults(outcomes)
            }
        };
    }
}

fn stopped_before() -> ToolError {
    ToolError::new(
        ToolErrorKind::Cancelled,
        "The run was stopped before this call.",
    )
}

fn finished_event(name: &str, outcome: &ToolOutcome) -> RunEvent {
    let (content, is_error) = match &outcome.result {
        Ok(output) => (output.clone().into_content(), false),
        Err(error) => (format!("Error: {}", error.message), true),
    };
    RunEvent::ToolCallFinished {
        call_id: outcome.call_id.clone(),
        name: name.to_owned(),
        content,
        is_error,
        duration: outcome.duration,
    }
}

async fn call_model(
    model: &dyn ChatModel,
    request: &ChatRequest,
    stream: bool,
    mut emit: EventSink<'_>,
) -> Result<ChatResponse, ModelError> {
    if !stream {
        let response = model.chat(request).await?;
        if let Some(text) = response
            .message
            .reasoning
            .as_ref()
            .and_then(|r| r.text.clone())
        {
            emit.send(|| RunEvent::ReasoningDelta(text));
        }
        if !response.message.content.is_empty() {
            emit.send(|| RunEvent::TextDelta(response.message.content.clone()));
        }
        return Ok(response);
    }
    let mut events = model.chat_stream(request).await?;
    while let Some(event) = events.next().await {
        match event? {
            StreamEvent::TextDelta(text) => emit.send(|| RunEvent::TextDelta(text)),
            StreamEvent::ReasoningDelta(text) => emit.send(|| RunEvent::ReasoningDelta(text)),
            StreamEvent::Completed(response) => return Ok(response),
            _ => {}
        }
    }
    Err(ModelError::new(
        ModelErrorKind::StreamInterrupted,
        "the stream ended without a complete answer",
    )
    .with_provider(model.provider(), model.model()))
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
    /// The run's budget, handed to each call (for nested runs).
    pub budget: Option<&'a Arc<BudgetTracker>>,
}

impl ToolRunner<'_> {
    /// [`run`](Self::run) with hooks and events: each call is announced, offered to the
    /// hooks (which may skip it, rewrite its arguments or stop the run), run, offered to
    /// the hooks again, and reported. Returns the outcomes in call order, and a hook's
    /// reason to stop, if one said so (calls after that point are not run).
    pub async fn run_with(
        &self,
        invocations: Vec<ToolInvocation>,
        hooks: &[Arc<dyn RunHooks>],
        mut emit: EventSink<'_>,
    ) -> (Vec<ToolOutcome>, Option<String>) {
        let mut runnable = Vec::with_capacity(invocations.len());
        let mut decided: Vec<(ToolInvocation, Result<ToolOutput, ToolError>)> = Vec::new();
        let mut stop = None;
        for mut invocation in invocations {
            if stop.is_some() {
                decided.push((invocation, Err(stopped_before())));
                continue;
            }
            let mut skipped = None;
            for hook in hooks {
                match hook.before_tool(&invocation).await {
                    ToolHookAction::Continue => {}
                    ToolHookAction::Skip(result) => skipped = Some(result),
                    ToolHookAction::RewriteArgs(args) => {
                        let call = crate::message::ToolCall::new(
                            invocation.call_id.clone(),
                            invocation.name.clone(),
                            &args,
                        );
                        match self.tools.check_call(&call) {
                            Ok(args) => invocation.args = args,
                            Err(error) => skipped = Some(Err(error)),
                        }
                    }
                    ToolHookAction::Stop(reason) => stop = Some(reason),
                }
                if skipped.is_some() || stop.is_some() {
                    break;
                }
            }
            match (skipped, &stop) {
                (Some(result), _) => decided.push((invocation, result)),
                (None, Some(_)) => decided.push((invocation, Err(stopped_before()))),
                (None, None) => {
                    emit.send(|| RunEvent::ToolCallStarted {
                        call_id: invocation.call_id.clone(),
                        name: invocation.name.clone(),
                        arguments: invocation.args.clone(),
                    });
                    runnable.push(invocation);
                }
            }
        }
        // Keep the invocations only for whoever looks at them afterwards.
        let ran = if hooks.is_empty() && !emit.is_listening() {
            Vec::new()
        } else {
            runnable.clone()
        };
        let mut outcomes = self.run(runnable).await;
        for (outcome, invocation) in outcomes.iter_mut().zip(&ran) {
            for hook in hooks {
                match hook.after_tool(invocation, &outcome.result).await {
                    ToolHookAction::Skip(result) => outcome.result = result,
                    ToolHookAction::Stop(reason) => {
                        stop.get_or_insert(reason);
                    }
                    ToolHookAction::Continue | ToolHookAction::RewriteArgs(_) => {}
                }
            }
            emit.send(|| finished_event(&invocation.name, outcome));
        }
        for (invocation, result) in decided {
            let outcome = ToolOutcome {
                call_id: invocation.call_id,
                result,
                duration: std::time::Duration::ZERO,
            };
            emit.send(|| finished_event(&invocation.name, &outcome));
            outcomes.push(outcome);
        }
        (outcomes, stop)
    }

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
                duration: std::time::Duration::ZERO,
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
            budget: self.budget.cloned(),
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
        ToolOutcome {
            call_id,
            result,
            duration: started.elapsed(),
        }
    }
}
