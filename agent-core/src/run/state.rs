//! The run as a state machine. No I/O, no clocks, no randomness: the same inputs give the
//! same actions, which is what makes a run testable, resumable and serialisable.

use std::collections::BTreeMap;
use std::sync::Arc;

use serde::{Deserialize, Serialize};
use serde_json::Value;

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
}

/// What the state machine asks the driver to do.
#[derive(Debug)]
pub enum Action {
    /// Call the model with this request.
    CallModel(ChatRequest),
    /// Run these tool calls (already checked against their schemas) and report their
    /// outcomes. Calls that failed the checks have been answered already.
    RunTools(Vec<ToolInvocation>),
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
}

/// One slot per tool call of the latest assistant message: answered, or waiting.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(tag = "status", rename_all = "snake_case")]
enum Slot {
    Answered { result: ToolResult },
    Pending { invocation: ToolInvocation },
}

#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(tag = "phase", rename_all = "snake_case")]
enum Phase {
    /// Next: a model call with tools.
    CallModel,
    /// Next: the wrap-up call with tools disabled.
    WrapUp,
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
    phase: Phase,
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
            phase: Phase::CallModel,
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
    fn take_new_messages(&mut self) -> Vec<Message> {
        let all = Arc::try_unwrap(std::mem::take(&mut self.messages))
            .unwrap_or_else(|shared| (*shared).clone());
        let mut all = all;
        all.split_off(self.new_from.min(all.len()))
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
        }
        self.next_action(tools)
    }

    /// Ends the run as cancelled: every pending tool call is answered with a cancellation
    /// result so the history keeps its invariant, and the error carries that history.
    pub fn cancel(&mut self) -> AgentError {
        if let Phase::RunTools { slots } = std::mem::replace(&mut self.phase, Phase::Done) {
            for slot in slots {
                let result = match slot {
                    Slot::Answered { result } => result,
                    Slot::Pending { invocation } => ToolResult {
                        call_id: invocation.call_id,
                        name: invocation.name,
                        content: "Error: the run was cancelled before this call finished.".into(),
                        is_error: true,
                    },
                };
                self.push(Message::Tool(result));
            }
        }
        AgentError::Cancelled {
            partial: Box::new(self.take_partial()),
        }
    }

    /// The action for the current phase.
    fn next_action(&mut self, tools: &ToolSet) -> Action {
        match &self.phase {
            Phase::CallModel => self.model_request(tools, false),
            Phase::WrapUp => self.model_request(tools, true),
            Phase::RunTools { slots } => Action::RunTools(
                slots
                    .iter()
                    .filter_map(|s| match s {
                        Slot::Pending { invocation } => Some(invocation.clone()),
                        Slot::Answered { .. } => None,
                    })
                    .collect(),
            ),
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
        let wrap_up = match self.phase {
            Phase::CallModel => false,
            Phase::WrapUp => true,
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
            let stop_reason = if wrap_up {
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
        let slots = message
            .tool_calls
            .iter()
            .map(|call| match tools.check_call(call) {
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
            })
            .collect();
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
                .filter(|s| matches!(s, Slot::Pending { .. }))
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
        for slot in slots {
            let result = match slot {
                Slot::Answered { result } => result,
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
            self.push(Message::Tool(result));
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
                OnMaxTurns::WrapUp => self.phase = Phase::WrapUp,
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
