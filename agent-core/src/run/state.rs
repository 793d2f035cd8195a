//! The run as a state machine. No I/O, no clocks, no randomness: the same inputs give the
//! same actions, which is what makes a run testable, resumable and serialisable.

use std::collections::BTreeMap;
use std::sync::Arc;

use serde::{Deserialize, Serialize};
use serde_json::Value;

use super::approval::{Approval, Interruption, PendingApproval};
use super::repeat::{Repeat, RepeatTracker};
use super::{ModelSettings, OnMaxTurns, PartialRun, RunLimits, RunResult, StopReason};
use crate::error::{AgentError, ModelError, ToolError, ToolErrorKind};
use crate::message::{Message, ToolCall, ToolResult, Usage, check_history};
use crate::model::{ChatRequest, ChatResponse, FinishReason, ToolChoice};
use crate::tool::{ToolOutput, ToolSet};

/// The format version written into every serialised [`RunState`]; a state of another
/// version is refused on resume rather than misread.
pub const STATE_VERSION: u32 = 1;

/// The message the wrap-up call adds to its request (not to the history).
const WRAP_UP_PROMPT: &str = "You have reached the limit of tool-using turns for this task. \
Do not call any more tools. Using what you have found so far, give your best final answer now, \
and say plainly what remains uncertain or unfinished.";

/// What the driver reports to the state machine.
#[derive(Debug)]
pub enum Input {
    /// Start, or resume after a restore: "what should I do now?"
    Resume,
    /// The model answered.
    ModelResponse(ChatResponse),
    /// The model call failed (after the backend's retries).
    ModelFailed(ModelError),
    /// The tool calls of the last [`Action::RunTools`] finished, one outcome per invocation.
    ToolResults(Vec<ToolOutcome>),
    /// A human's decisions on calls of the last [`Action::AwaitApproval`]. Calls without a
    /// decision stay pending.
    Approvals(Vec<(String, Approval)>),
}

/// What the state machine asks the driver to do.
#[derive(Debug)]
pub enum Action {
    /// Call the model with this request.
    CallModel(ChatRequest),
    /// Run these tool calls (already checked against their schemas) and report their
    /// outcomes. Calls that failed the checks have been answered already.
    RunTools(Vec<ToolInvocation>),
    /// Some calls need a human's decision: pause, ask, and come back with
    /// [`Input::Approvals`].
    AwaitApproval(Vec<PendingApproval>),
    /// The run is over.
    Finished(RunResult),
    /// The run failed.
    Failed(AgentError),
}

/// One checked tool call for the driver to run.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct ToolInvocation {
    /// The call's id.
    pub call_id: String,
    /// The tool's name (it exists in the tool set).
    pub name: String,
    /// The arguments, valid against the tool's schema.
    pub args: Value,
}

/// The outcome of one [`ToolInvocation`].
#[derive(Clone, Debug, PartialEq)]
pub struct ToolOutcome {
    /// The call's id.
    pub call_id: String,
    /// What the tool returned.
    pub result: Result<ToolOutput, ToolError>,
    /// How long it ran.
    pub duration: std::time::Duration,
}

/// One slot per tool call of the latest assistant message: answered, or waiting.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(tag = "status", rename_all = "snake_case")]
enum Slot {
    Answered {
        result: ToolResult,
    },
    Pending {
        invocation: ToolInvocation,
    },
    /// Waits for a human: the call as the model made it, its checked arguments when they
    /// were valid, and what is wrong with them when not (malformed calls fail closed: they
    /// go to the human, never to the tool).
    AwaitingApproval {
        call: ToolCall,
        args: Option<Value>,
        problem: Option<String>,
    },
}

#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(tag = "phase", rename_all = "snake_case")]
enum Phase {
    /// Next: a model call with tools.
    CallModel,
    /// Next: the wrap-up call with tools disabled, because the turn limit was reached
    /// (`budget: false`) or a budget ran out.
    WrapUp {
        #[serde(default)]
        budget: bool,
    },
    /// Next: run the pending tool calls.
    RunTools { slots: Vec<Slot> },
    /// Over.
    Done,
}

/// The state of one run, between two steps. Serialise it to pause a run; deserialise and
/// call [`step`](RunState::step) with [`Input::Resume`] to continue.
///
/// ```
/// use agent_core::{Action, Input, Message, ModelSettings, RunLimits, RunState, ToolSet};
/// let mut state = RunState::new(
///     "run_1",
///     vec![Message::system("Be brief.")],
///     vec![Message::user("Hi")],
///     ModelSettings::default(),
///     RunLimits::default(),
/// );
/// let tools = ToolSet::empty();
/// let Action::CallModel(request) = state.step(&tools, Input::Resume) else { unreachable!() };
/// assert_eq!(request.messages.len(), 2);
/// let saved = serde_json::to_string(&state).unwrap();
/// let restored: RunState = serde_json::from_str(&saved).unwrap();
/// assert_eq!(restored, state);
/// ```
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct RunState {
    version: u32,
    run_id: String,
    /// The whole conversation: instructions and earlier history, then what this run added
    /// (from `new_from` on). Shared with the request of a model call in flight, so a turn
    /// does not copy the history; appending copies it only if someone still holds a request.
    messages: Arc<Vec<Message>>,
    /// Where this run's own messages begin.
    new_from: usize,
    settings: ModelSettings,
    limits: RunLimits,
    turns: u32,
    usage: Usage,
    turn_usage: Vec<Usage>,
    /// Consecutive failures per tool name.
    failures: BTreeMap<String, u32>,
    /// Fingerprint of the last tool call (tool, arguments, result) and how many times in a
    /// row it has repeated.
    #[serde(default)]
    last_call: RepeatTracker,
    phase: Phase,
    /// Results of calls the last model turn made that the checks refused (unknown tool,
    /// invalid arguments), for the driver to report; drained after each step.
    #[serde(skip)]
    refused: Vec<ToolResult>,
}

impl RunState {
    /// A new run: `context` (instructions, earlier history) is sent but not returned as new;
    /// `input` (usually one user message) starts the run's own messages.
    pub fn new(
        run_id: impl Into<String>,
        context: Vec<Message>,
        input: Vec<Message>,
        settings: ModelSettings,
        limits: RunLimits,
    ) -> Self {
        let new_from = context.len();
        let mut messages = context;
        messages.extend(input);
        RunState {
            version: STATE_VERSION,
            run_id: run_id.into(),
            messages: Arc::new(messages),
            new_from,
            settings,
            limits,
            turns: 0,
            usage: Usage::default(),
            turn_usage: Vec::new(),
            failures: BTreeMap::new(),
            last_call: RepeatTracker::default(),
            phase: Phase::CallModel,
            refused: Vec::new(),
        }
    }

    /// The run's id.
    pub fn run_id(&self) -> &str {
        &self.run_id
    }

    /// The messages this run added so far.
    pub fn new_messages(&self) -> &[Message] {
        self.messages.get(self.new_from..).unwrap_or_default()
    }

    fn push(&mut self, message: Message) {
        Arc::make_mut(&mut self.messages).push(message);
    }

    /// Takes this run's messages out (the run is over).
    /// Takes this run's messages out; the context (instructions, earlier history) stays,
    /// so a reopened run still sends it.
    fn take_new_messages(&mut self) -> Vec<Message> {
        let mut all = Arc::try_unwrap(std::mem::take(&mut self.messages))
            .unwrap_or_else(|shared| (*shared).clone());
        let new = all.split_off(self.new_from.min(all.len()));
        self.messages = Arc::new(all);
        new
    }

    /// Takes the results of calls the checks refused in the last step (unknown tool,
    /// arguments that are not valid JSON or break the schema): they never run, so this is
    /// the only place a driver sees them before the history does.
    pub fn take_refused(&mut self) -> Vec<ToolResult> {
        std::mem::take(&mut self.refused)
    }

    /// The request options of every model call.
    pub fn settings(&self) -> &ModelSettings {
        &self.settings
    }

    /// The run's limits.
    pub fn limits(&self) -> &RunLimits {
        &self.limits
    }

    /// Model calls made so far.
    pub fn turns(&self) -> u32 {
        self.turns
    }

    /// Tokens used so far.
    pub fn usage(&self) -> Usage {
        self.usage
    }

    /// Whether the run is over (finished, failed or cancelled).
    pub fn is_done(&self) -> bool {
        self.phase == Phase::Done
    }

    /// The one transition function: record what happened, decide what comes next.
    pub fn step(&mut self, tools: &ToolSet, input: Input) -> Action {
        if self.version != STATE_VERSION {
            self.phase = Phase::Done;
            return Action::Failed(AgentError::InvalidState(format!(
                "state format version {} is not supported (expected {STATE_VERSION})",
                self.version
            )));
        }
        match input {
            Input::Resume => {}
            Input::ModelResponse(response) => {
                if let Some(action) = self.on_model_response(tools, response) {
                    return action;
                }
            }
            Input::ModelFailed(error) => {
                self.phase = Phase::Done;
                return Action::Failed(AgentError::Model {
                    source: error,
                    partial: Box::new(self.take_partial()),
                });
            }
            Input::ToolResults(outcomes) => {
                if let Some(action) = self.on_tool_results(outcomes) {
                    return action;
                }
            }
            Input::Approvals(decisions) => {
                if let Some(action) = self.on_approvals(tools, decisions) {
                    return action;
                }
            }
        }
        self.next_action(tools)
    }

    /// Ends the run as cancelled: every pending tool call is answered with a cancellation
    /// result so the history keeps its invariant, and the error carries that history.
    pub fn cancel(&mut self) -> AgentError {
        self.close_pending("the run was cancelled before this call finished");
        AgentError::Cancelled {
            partial: Box::new(self.take_partial()),
        }
    }

    /// Ends the run because a hook or guardrail said so, with the same guarantee as
    /// [`cancel`](Self::cancel): no call is left unanswered.
    pub fn stop(&mut self, reason: impl Into<String>) -> AgentError {
        let reason = reason.into();
        self.close_pending(&format!(
            "the run was stopped before this call finished ({reason})"
        ));
        AgentError::Stopped {
            reason,
            partial: Box::new(self.take_partial()),
        }
    }

    /// Ends the run because a budget ran out; open calls are answered first.
    pub(crate) fn over_budget(&mut self, exceeded: super::budget::Exceeded) -> AgentError {
        self.close_pending(&format!("the {} budget was exceeded", exceeded.kind));
        AgentError::BudgetExceeded {
            kind: exceeded.kind,
            limit: exceeded.limit,
            used: exceeded.used,
            partial: Box::new(self.take_partial()),
        }
    }

    /// Makes the next model call the wrap-up call (tools disabled); open calls are answered
    /// with why they were not run.
    pub(crate) fn wrap_up_now(&mut self, why: &str) {
        self.answer_open_calls(why);
        self.phase = Phase::WrapUp { budget: true };
    }

    /// Whether the next model call is the wrap-up call.
    pub fn is_wrapping_up(&self) -> bool {
        matches!(self.phase, Phase::WrapUp { .. })
    }

    /// Answers every call still open with an error saying why, and ends the run.
    fn close_pending(&mut self, why: &str) {
        self.answer_open_calls(why);
        self.phase = Phase::Done;
    }

    fn answer_open_calls(&mut self, why: &str) {
        if let Phase::RunTools { slots } = std::mem::replace(&mut self.phase, Phase::Done) {
            for slot in slots {
                let result = match slot {
                    Slot::Answered { result } => result,
                    Slot::Pending { invocation } => ToolResult {
                        call_id: invocation.call_id,
                        name: invocation.name,
                        content: format!("Error: {why}."),
                        is_error: true,
                    },
                    Slot::AwaitingApproval { call, .. } => {
                        ToolResult::error(&call, format!("Error: {why}."))
                    }
                };
                self.push(Message::Tool(result));
            }
        }
    }

    /// The action for the current phase.
    fn next_action(&mut self, tools: &ToolSet) -> Action {
        match &self.phase {
            Phase::CallModel => self.model_request(tools, false),
            Phase::WrapUp { .. } => self.model_request(tools, true),
            Phase::RunTools { slots } => {
                let waiting: Vec<PendingApproval> = slots
                    .iter()
                    .filter_map(|s| match s {
                        Slot::AwaitingApproval { call, problem, .. } => Some(PendingApproval {
                            call_id: call.id.clone(),
                            name: call.name.clone(),
                            arguments: call.arguments.clone(),
                            problem: problem.clone(),
                        }),
                        _ => None,
                    })
                    .collect();
                if !waiting.is_empty() {
                    return Action::AwaitApproval(waiting);
                }
                Action::RunTools(
                    slots
                        .iter()
                        .filter_map(|s| match s {
                            Slot::Pending { invocation } => Some(invocation.clone()),
                            _ => None,
                        })
                        .collect(),
                )
            }
            Phase::Done => {
                Action::Failed(AgentError::InvalidState("the run is already over".into()))
            }
        }
    }

    fn model_request(&mut self, tools: &ToolSet, wrap_up: bool) -> Action {
        if let Err(e) = check_history(&self.messages) {
            self.phase = Phase::Done;
            return Action::Failed(AgentError::History(e));
        }
        let messages = if wrap_up {
            // The wrap-up prompt goes to the model, not into the history.
            let mut with_prompt = Vec::with_capacity(self.messages.len() + 1);
            with_prompt.extend_from_slice(&self.messages);
            with_prompt.push(Message::user(WRAP_UP_PROMPT));
            Arc::new(with_prompt)
        } else {
            Arc::clone(&self.messages)
        };
        let s = &self.settings;
        Action::CallModel(ChatRequest {
            messages,
            tools: tools.specs().clone(),
            tool_choice: if wrap_up {
                ToolChoice::None
            } else {
                s.tool_choice.clone()
            },
            temperature: s.temperature,
            max_output_tokens: s.max_output_tokens,
            stop: s.stop.clone(),
            response_format: s.response_format.clone(),
            extra: s.extra.clone(),
        })
    }

    fn on_model_response(&mut self, tools: &ToolSet, response: ChatResponse) -> Option<Action> {
        let (wrap_up, budget) = match self.phase {
            Phase::CallModel => (false, false),
            Phase::WrapUp { budget } => (true, budget),
            _ => {
                return Some(Action::Failed(AgentError::InvalidState(
                    "a model response arrived while no model call was pending".into(),
                )));
            }
        };
        self.turns += 1;
        self.usage += response.usage;
        self.turn_usage.push(response.usage);
        let mut message = response.message;

        if wrap_up || message.tool_calls.is_empty() {
            // A final answer. The wrap-up call had tools disabled; calls it made anyway are
            // dropped so the history stays valid.
            message.tool_calls.clear();
            let text = message.content.clone();
            self.push(Message::Assistant(message));
            let stop_reason = if budget {
                StopReason::BudgetExhausted
            } else if wrap_up {
                StopReason::MaxTurns
            } else {
                match response.finish_reason {
                    FinishReason::Length => StopReason::OutputLimit,
                    FinishReason::ContentFilter => StopReason::ContentFilter,
                    _ => StopReason::Completed,
                }
            };
            self.phase = Phase::Done;
            return Some(Action::Finished(self.take_result(text, stop_reason)));
        }

        ensure_unique_ids(&mut message.tool_calls, self.turns);
        let slots: Vec<Slot> = message
            .tool_calls
            .iter()
            .map(|call| {
                let checked = tools.check_call(call);
                if tools.needs_approval(&call.name, checked.as_ref().ok()) {
                    let (args, problem) = match checked {
                        Ok(args) => (Some(args), None),
                        Err(error) => (None, Some(error.message)),
                    };
                    return Slot::AwaitingApproval {
                        call: call.clone(),
                        args,
                        problem,
                    };
                }
                match checked {
                    Ok(args) => Slot::Pending {
                        invocation: ToolInvocation {
                            call_id: call.id.clone(),
                            name: call.name.clone(),
                            args,
                        },
                    },
                    Err(error) => Slot::Answered {
                        result: error_result(call, &error),
                    },
                }
            })
            .collect();
        self.refused
            .extend(slots.iter().filter_map(|slot| match slot {
                Slot::Answered { result } => Some(result.clone()),
                _ => None,
            }));
        self.push(Message::Assistant(message));
        self.phase = Phase::RunTools { slots };
        if self.pending_count() == 0 {
            // Every call was refused by the checks: record them now.
            return self.on_tool_results(Vec::new());
        }
        None
    }

    fn pending_count(&self) -> usize {
        match &self.phase {
            Phase::RunTools { slots } => slots
                .iter()
                .filter(|s| !matches!(s, Slot::Answered { .. }))
                .count(),
            _ => 0,
        }
    }

    fn on_tool_results(&mut self, outcomes: Vec<ToolOutcome>) -> Option<Action> {
        let Phase::RunTools { slots } = std::mem::replace(&mut self.phase, Phase::CallModel) else {
            return Some(Action::Failed(AgentError::InvalidState(
                "tool results arrived while no tool call was pending".into(),
            )));
        };
        let mut outcomes: BTreeMap<String, Result<ToolOutput, ToolError>> = outcomes
            .into_iter()
            .map(|o| (o.call_id, o.result))
            .collect();
        let mut over_limit: Option<(String, u32, String)> = None;
        let mut stuck: Option<(String, u32)> = None;
        let arguments: Vec<(String, String)> = self
            .messages
            .iter()
            .rev()
            .find_map(Message::as_assistant)
            .map(|a| {
                a.tool_calls
                    .iter()
                    .map(|c| (c.id.clone(), c.arguments.clone()))
                    .collect()
            })
            .unwrap_or_default();
        for slot in slots {
            let mut result = match slot {
                Slot::Answered { result } => result,
                Slot::AwaitingApproval { call, .. } => ToolResult::error(
                    &call,
                    "Error: this call was never approved, so it was not run.",
                ),
                Slot::Pending { invocation } => {
                    let call = ToolCall::raw(invocation.call_id, invocation.name, String::new());
                    match outcomes.remove(&call.id) {
                        Some(Ok(output)) => ToolResult::ok(&call, output.into_content()),
                        Some(Err(error)) => error_result(&call, &error),
                        None => error_result(
                            &call,
                            &ToolError::new(
                                ToolErrorKind::Failed,
                                format!("`{}` returned no result.", call.name),
                            ),
                        ),
                    }
                }
            };
            let count = self.failures.entry(result.name.clone()).or_insert(0);
            if result.is_error {
                *count += 1;
                if *count >= self.limits.max_consecutive_tool_failures && over_limit.is_none() {
                    over_limit = Some((result.name.clone(), *count, result.content.clone()));
                }
            } else {
                *count = 0;
            }
            let args = arguments
                .iter()
                .find(|(id, _)| *id == result.call_id)
                .map_or("", |(_, a)| a.as_str());
            match self
                .last_call
                .observe(&result, args, self.limits.max_identical_calls)
            {
                Repeat::Fresh => {}
                Repeat::Warn(times) => result.content.push_str(&format!(
                    "\n\nNote: `{}` has now been called {times} times in a row with the same \
                     arguments and gave the same result each time. Calling it again will not \
                     change the result: use it, or try something different.",
                    result.name
                )),
                Repeat::Stuck(times) => {
                    if stuck.is_none() {
                        stuck = Some((result.name.clone(), times));
                    }
                }
            }
            self.push(Message::Tool(result));
        }
        if let Some((tool, repeats)) = stuck {
            self.phase = Phase::Done;
            return Some(Action::Failed(AgentError::StuckLoop {
                tool,
                repeats,
                partial: Box::new(self.take_partial()),
            }));
        }
        if let Some((tool, failures, last_error)) = over_limit {
            self.phase = Phase::Done;
            return Some(Action::Failed(AgentError::ToolFailureLimit {
                tool,
                failures,
                last_error,
                partial: Box::new(self.take_partial()),
            }));
        }
        if self.turns >= self.limits.max_turns {
            match self.limits.on_max_turns {
                OnMaxTurns::WrapUp => self.phase = Phase::WrapUp { budget: false },
                OnMaxTurns::Fail => {
                    self.phase = Phase::Done;
                    return Some(Action::Failed(AgentError::MaxTurns {
                        max_turns: self.limits.max_turns,
                        partial: Box::new(self.take_partial()),
                    }));
                }
            }
        }
        None
    }

    fn on_approvals(
        &mut self,
        tools: &ToolSet,
        decisions: Vec<(String, Approval)>,
    ) -> Option<Action> {
        let Phase::RunTools { slots } = &mut self.phase else {
            return Some(Action::Failed(AgentError::InvalidState(
                "approvals arrived while no call was waiting for one".into(),
            )));
        };
        for (call_id, decision) in decisions {
            let Some(slot) = slots
                .iter_mut()
                .find(|s| matches!(s, Slot::AwaitingApproval { call, .. } if call.id == call_id))
            else {
                continue;
            };
            let Slot::AwaitingApproval {
                call,
                args,
                problem,
            } = slot
            else {
                continue;
            };
            let invocation = |args: Value| Slot::Pending {
                invocation: ToolInvocation {
                    call_id: call.id.clone(),
                    name: call.name.clone(),
                    args,
                },
            };
            let next = match decision {
                Approval::Approve => match (args.take(), problem.take()) {
                    (Some(args), _) => invocation(args),
                    (None, problem) => Slot::Answered {
                        result: ToolResult::error(
                            call,
                            format!(
                                "Error: the arguments were invalid, so the call was not run: {}",
                                problem.unwrap_or_default()
                            ),
                        ),
                    },
                },
                Approval::Reject { message } => Slot::Answered {
                    result: ToolResult::error(
                        call,
                        format!("Error: the user rejected this call: {message}"),
                    ),
                },
                Approval::Edit { args } => {
                    let edited = ToolCall::new(call.id.clone(), call.name.clone(), &args);
                    match tools.check_call(&edited) {
                        Ok(args) => invocation(args),
                        Err(error) => Slot::Answered {
                            result: error_result(call, &error),
                        },
                    }
                }
            };
            *slot = next;
        }
        if self.pending_count() == 0 {
            return self.on_tool_results(Vec::new());
        }
        None
    }

    /// Reopens a finished run to send the model feedback on its answer (an output
    /// guardrail's retry): the answer stays in the history, the feedback follows as a user
    /// message, and the next action is a model call.
    pub(crate) fn reopen(&mut self, result: RunResult, feedback: &str) {
        let mut all = Arc::try_unwrap(std::mem::take(&mut self.messages))
            .unwrap_or_else(|shared| (*shared).clone());
        all.truncate(self.new_from);
        all.extend(result.new_messages);
        all.push(Message::user(feedback));
        self.messages = Arc::new(all);
        self.turn_usage = result.turn_usage;
        self.phase = Phase::CallModel;
    }

    /// The result of a run paused for approval: what it did so far, the calls waiting, and
    /// the state to resume from (which this one stays, too).
    pub(crate) fn interrupted_result(&self, pending: Vec<PendingApproval>) -> RunResult {
        RunResult {
            run_id: self.run_id.clone(),
            text: String::new(),
            new_messages: self.new_messages().to_vec(),
            usage: self.usage,
            turn_usage: self.turn_usage.clone(),
            turns: self.turns,
            stop_reason: StopReason::AwaitingApproval,
            interruption: Some(Box::new(Interruption {
                pending,
                state: self.clone(),
            })),
        }
    }

    fn take_partial(&mut self) -> PartialRun {
        PartialRun {
            run_id: self.run_id.clone(),
            new_messages: self.take_new_messages(),
            usage: self.usage,
            turns: self.turns,
        }
    }

    fn take_result(&mut self, text: String, stop_reason: StopReason) -> RunResult {
        RunResult {
            run_id: self.run_id.clone(),
            text,
            new_messages: self.take_new_messages(),
            usage: self.usage,
            turn_usage: std::mem::take(&mut self.turn_usage),
            turns: self.turns,
            stop_reason,
            interruption: None,
        }
    }
}

/// The result message for a failed call: says it is an error and what to do about it.
fn error_result(call: &ToolCall, error: &ToolError) -> ToolResult {
    ToolResult::error(call, format!("Error: {}", error.message))
}

/// Some models send empty or repeated call ids; results are paired by id, so every call of a
/// turn gets a unique, non-empty one.
fn ensure_unique_ids(calls: &mut [ToolCall], turn: u32) {
    for i in 0..calls.len() {
        let clash = calls[i].id.is_empty() || calls[..i].iter().any(|c| c.id == calls[i].id);
        if clash {
            let mut n = i;
            loop {
                let id = format!("call_{turn}_{n}");
                if !calls.iter().any(|c| c.id == id) {
                    calls[i].id = id;
                    break;
                }
                n += calls.len();
            }
        }
    }
}
