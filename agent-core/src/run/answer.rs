//! The typed-answer part of the run's state machine: how a run that wants a typed answer
//! shapes its requests (a `final_answer` tool, the provider's structured output, or the
//! schema in the instructions), reads the answer (from the call or the text), checks it
//! against the schema, and sends an invalid one back to the model within a retry budget.
//!
//! Like the rest of the machine it performs no I/O and keeps everything it needs (the spec,
//! every attempt's error) in the state, so a paused run resumes with its retry count.
//! What only the caller can check (deserialising into the Rust type, the user's
//! validators) comes back through [`RunState::retry_answer`].

use std::sync::Arc;

use serde::{Deserialize, Serialize};
use serde_json::Value;

use super::{Action, Phase, RunState, ensure_unique_ids};
use crate::message::{AssistantMessage, Message, ToolCall, ToolResult};
use crate::model::{ChatRequest, ResponseFormat, ToolChoice};
use crate::output::{FINAL_ANSWER_TOOL, OutputMode, OutputSpec};
use crate::run::outcome::{AgentError, RunResult, StopReason};
use crate::tool::ToolSet;

/// What a run that wants a typed answer carries: the spec, the error of every rejected
/// attempt, and an answer given in a turn that also called other tools (taken once they
/// have run).
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub(super) struct AnswerState {
    spec: OutputSpec,
    #[serde(default)]
    errors: Vec<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pending: Option<PendingAnswer>,
}

#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
struct PendingAnswer {
    call_id: String,
    answer: Result<Value, String>,
}

/// What the tool result of a valid `final_answer` call says.
const ANSWER_RECEIVED: &str = "Answer received.";

impl AnswerState {
    fn new(spec: OutputSpec) -> Self {
        AnswerState {
            spec,
            errors: Vec::new(),
            pending: None,
        }
    }

    /// Whether answers come as `final_answer` calls on this call (a wrap-up call has tools
    /// off, so it asks for the JSON in the text).
    fn by_tool(&self, wrap_up: bool) -> bool {
        self.spec.mode == OutputMode::Tool && !wrap_up
    }

    /// What the model reads after an invalid answer.
    fn feedback(&self, error: &str, wrap_up: bool) -> String {
        if self.by_tool(wrap_up) {
            format!("{error}\nCall `{FINAL_ANSWER_TOOL}` again with the corrected answer.")
        } else {
            format!("{error}\nAnswer again with the corrected JSON value only.")
        }
    }

    /// Shapes a request for the answer (the state's own history is never changed).
    pub(super) fn shape(&self, request: &mut ChatRequest, wrap_up: bool) {
        match self.spec.mode {
            OutputMode::Tool if !wrap_up => {
                let had_tools = !request.tools.is_empty();
                let mut tools = request.tools.to_vec();
                tools.push(self.spec.answer_tool());
                request.tools = tools.into();
                // Every turn ends in a call: another tool's, or the answer.
                request.tool_choice = match &request.tool_choice {
                    ToolChoice::Auto | ToolChoice::Required if !had_tools => {
                        ToolChoice::Tool(FINAL_ANSWER_TOOL.into())
                    }
                    ToolChoice::Auto => ToolChoice::Required,
                    other => other.clone(),
                };
            }
            OutputMode::Native => {
                request.response_format = ResponseFormat::JsonSchema {
                    name: self.spec.name.clone(),
                    schema: self.spec.schema.clone(),
                    strict: self.spec.strict,
                };
            }
            _ => request.messages = with_instructions(&request.messages, &self.spec.prompt()),
        }
    }
}

/// The messages with `extra` added to the system instructions (a new system message first
/// when there are none).
fn with_instructions(messages: &Arc<Vec<Message>>, extra: &str) -> Arc<Vec<Message>> {
    let mut all = Vec::with_capacity(messages.len() + 1);
    all.extend_from_slice(messages);
    match all.first_mut() {
        Some(Message::System { content }) => {
            content.push_str("\n\n");
            content.push_str(extra);
        }
        _ => all.insert(0, Message::system(extra)),
    }
    Arc::new(all)
}

impl RunState {
    /// Asks this run for a typed answer: its final answer must follow `spec`, or go back to
    /// the model (at most `spec.max_retries` times) with what is wrong. The accepted value
    /// is [`RunResult::output`]; past the budget the run fails with
    /// [`AgentError::InvalidOutput`]. [`Output`](crate::output::Output) builds specs;
    /// [`LlmAgent::run_as`](crate::LlmAgent::run_as) does all of this for you.
    #[must_use]
    pub fn with_output(mut self, spec: OutputSpec) -> Self {
        self.output = Some(AnswerState::new(spec));
        self
    }

    /// The typed answer this run asks for, if any.
    pub fn output_spec(&self) -> Option<&OutputSpec> {
        self.output.as_ref().map(|o| &o.spec)
    }

    /// Why each rejected answer of this run was rejected, in order (its length is the
    /// number of retries used).
    pub fn output_errors(&self) -> &[String] {
        self.output.as_ref().map_or(&[], |o| o.errors.as_slice())
    }

    /// A model turn of a run that wants a typed answer: `Ok` with the next action when the
    /// turn gave (or failed to give) the answer, `Err` with the message when it is an
    /// ordinary tool-calling turn for the rest of the machine.
    pub(super) fn answer_turn(
        &mut self,
        tools: &ToolSet,
        mut message: AssistantMessage,
        wrap_up: bool,
        stop_reason: StopReason,
    ) -> Result<Action, Box<AssistantMessage>> {
        let Some(state) = &self.output else {
            return Err(Box::new(message));
        };
        if state.by_tool(wrap_up) {
            let Some(first) = message
                .tool_calls
                .iter()
                .position(|c| c.name == FINAL_ANSWER_TOOL)
            else {
                if message.tool_calls.is_empty() {
                    return Ok(self.text_answer(tools, message, wrap_up, stop_reason));
                }
                return Err(Box::new(message));
            };
            ensure_unique_ids(&mut message.tool_calls, self.turns);
            let call = &message.tool_calls[first];
            let answer = call
                .parse_arguments()
                .map_err(|e| {
                    format!(
                        "The arguments of `{FINAL_ANSWER_TOOL}` are not valid JSON ({e}); send \
                         the answer as one JSON object."
                    )
                })
                .and_then(|value| state.spec.check(value));
            let call_id = call.id.clone();
            if message
                .tool_calls
                .iter()
                .any(|c| c.name != FINAL_ANSWER_TOOL)
            {
                // The other calls run first (once); the answer is taken after them.
                if let Some(state) = &mut self.output {
                    state.pending = Some(PendingAnswer { call_id, answer });
                }
                return Err(Box::new(message));
            }
            let feedback = answer.as_ref().err().map(|e| state.feedback(e, wrap_up));
            let results: Vec<ToolResult> = message
                .tool_calls
                .iter()
                .map(|c| match (&feedback, c.id == call_id) {
                    (None, true) => ToolResult::ok(c, ANSWER_RECEIVED),
                    (Some(feedback), true) => ToolResult::error(c, format!("Error: {feedback}")),
                    (_, false) => ToolResult::error(
                        c,
                        "Error: only the first `final_answer` call of a turn is read.",
                    ),
                })
                .collect();
            self.push(Message::Assistant(message));
            for result in results {
                self.push(Message::Tool(result));
            }
            return Ok(match answer {
                Ok(value) => self.finish_answer(value, stop_reason),
                Err(error) => self.reject_answer(tools, error, None),
            });
        }
        if !message.tool_calls.is_empty() && !wrap_up {
            return Err(Box::new(message));
        }
        // A wrap-up call had tools off; calls it made anyway are dropped.
        message.tool_calls.clear();
        Ok(self.text_answer(tools, message, wrap_up, stop_reason))
    }

    /// A final text answer: the JSON in it, checked.
    fn text_answer(
        &mut self,
        tools: &ToolSet,
        message: AssistantMessage,
        wrap_up: bool,
        stop_reason: StopReason,
    ) -> Action {
        let Some(state) = &self.output else {
            return Action::Failed(AgentError::InvalidState("no typed answer is wanted".into()));
        };
        let checked = state.spec.check_text(&message.content);
        let feedback = checked.as_ref().err().map(|e| state.feedback(e, wrap_up));
        self.push(Message::Assistant(message));
        match checked {
            Ok(value) => self.finish_answer(value, stop_reason),
            Err(error) => self.reject_answer(tools, error, feedback),
        }
    }

    /// An answer given beside other calls, now that they have run: taken, or sent back.
    pub(super) fn take_pending_answer(&mut self, tools: &ToolSet) -> Option<Action> {
        let pending = self.output.as_mut()?.pending.take()?;
        Some(match pending.answer {
            Ok(value) => self.finish_answer(value, StopReason::Completed),
            Err(error) => self.reject_answer(tools, error, None),
        })
    }

    /// The tool result of a `final_answer` call made beside other calls, if `call` is it.
    pub(super) fn pending_answer_result(&self, call: &ToolCall) -> Option<ToolResult> {
        let state = self.output.as_ref()?;
        let pending = state.pending.as_ref().filter(|p| p.call_id == call.id)?;
        Some(match &pending.answer {
            Ok(_) => ToolResult::ok(call, ANSWER_RECEIVED),
            Err(error) => {
                ToolResult::error(call, format!("Error: {}", state.feedback(error, false)))
            }
        })
    }

    fn finish_answer(&mut self, value: Value, stop_reason: StopReason) -> Action {
        self.phase = Phase::Done;
        let mut result = self.take_result(value.to_string(), stop_reason);
        result.output = Some(value);
        Action::Finished(result)
    }

    /// Counts a rejected answer; past the budget the run fails, else the model is asked
    /// again (with `feedback` as a user message when the answer was text; a `final_answer`
    /// call's result already says what is wrong).
    fn reject_answer(
        &mut self,
        tools: &ToolSet,
        error: String,
        feedback: Option<String>,
    ) -> Action {
        if let Some(attempts) = self.count_rejection(error) {
            self.phase = Phase::Done;
            let partial = self.take_partial();
            return Action::Failed(AgentError::InvalidOutput {
                attempts,
                partial: Box::new(partial),
            });
        }
        if let Some(feedback) = feedback {
            self.push(Message::user(feedback));
        }
        self.next_action(tools)
    }

    /// Records a rejection; returns every attempt's error when the budget is spent.
    fn count_rejection(&mut self, error: String) -> Option<Vec<String>> {
        let state = self.output.as_mut()?;
        state.errors.push(error);
        (state.errors.len() > state.spec.max_retries as usize).then(|| state.errors.clone())
    }

    /// The caller rejected a finished run's answer (it did not deserialise into the type, or
    /// a validator refused it): the model is told why and asked again, within the same
    /// retry budget; past it, returns the error that ends the run, carrying every
    /// attempt's error and the history.
    pub(crate) fn retry_answer(&mut self, result: RunResult, error: String) -> Option<AgentError> {
        if let Some(attempts) = self.count_rejection(error.clone()) {
            return Some(AgentError::InvalidOutput {
                attempts,
                partial: Box::new(result.into_partial()),
            });
        }
        let feedback = match &self.output {
            Some(state) => state.feedback(&error, false),
            None => error,
        };
        // After a `final_answer` call the model answered a tool result; it reads the
        // feedback as the user's next message either way.
        self.reopen(result, &feedback);
        None
    }
}
