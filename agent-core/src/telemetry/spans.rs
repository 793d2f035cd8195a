//! The spans a run emits, named and filled as the OpenTelemetry GenAI semantic conventions
//! say (see the [module documentation](super) for the version and the full list).
//!
//! Everything here is formatting: the driver and the agent call these functions and stay
//! free of attribute names. Nothing here may put a key in a span, and nothing puts content
//! (messages, tool arguments, tool results) in one unless [`super::captures_content`].

use serde_json::{Value, json};
use tracing::{Span, field};

use crate::budget::Prices;
use crate::error::{ModelError, ToolError};
use crate::message::{ContentPart, Message, Usage};
use crate::model::{ChatModel, ChatRequest, ChatResponse, FinishReason, ResponseFormat};
use crate::run::{AgentError, RunResult};
use crate::tool::ToolOutput;

/// The `gen_ai.provider.name` of one of our provider names: the convention's spelling where
/// it has one (`gemini` is `gcp.gemini`, `mistral` is `mistral_ai`), ours otherwise.
pub(crate) fn provider_name(ours: &str) -> &str {
    match ours {
        "gemini" => "gcp.gemini",
        "mistral" => "mistral_ai",
        other => other,
    }
}

/// The span kind of a model call: `client`, or `internal` for a model in this process.
fn model_span_kind(provider: &str) -> &'static str {
    if provider == "local" {
        "internal"
    } else {
        "client"
    }
}

/// The `invoke_agent {agent}` span (kind internal: the agent runs in this process).
pub(crate) fn agent_span(
    agent: &str,
    model: &dyn ChatModel,
    session: Option<&str>,
    run_id: &str,
) -> Span {
    let span = tracing::info_span!(
        "invoke_agent",
        otel.name = %format_args!("invoke_agent {agent}"),
        otel.kind = "internal",
        otel.status_code = field::Empty,
        gen_ai.operation.name = "invoke_agent",
        gen_ai.provider.name = provider_name(model.provider()),
        gen_ai.request.model = model.model(),
        gen_ai.agent.name = agent,
        gen_ai.conversation.id = field::Empty,
        gen_ai.usage.input_tokens = field::Empty,
        gen_ai.usage.output_tokens = field::Empty,
        gen_ai.usage.cache_read.input_tokens = field::Empty,
        gen_ai.usage.reasoning.output_tokens = field::Empty,
        error.type = field::Empty,
        agentic.run.id = run_id,
        agentic.turns = field::Empty,
        agentic.usage.cost_usd = field::Empty,
    );
    if let Some(session) = session {
        span.record("gen_ai.conversation.id", session);
    }
    span
}

/// Records how a run ended on its agent span: its own model calls' usage and cost (nested
/// agents have spans of their own), its turns, and the error type if it failed.
pub(crate) fn record_agent_end(
    span: &Span,
    outcome: Result<&RunResult, &AgentError>,
    prices: Option<&Prices>,
) {
    if span.is_disabled() {
        return;
    }
    match outcome {
        Ok(result) => {
            record_usage(span, &result.usage);
            span.record("agentic.turns", result.turns);
            let prices = prices.unwrap_or_else(|| crate::budget::default_prices());
            // Unknown (not recorded) when a call's model has no price.
            let cost: Option<f64> = result
                .turn_usage
                .iter()
                .zip(&result.turn_models)
                .map(|(usage, model)| prices.cost(model, usage))
                .sum();
            span.record("agentic.usage.cost_usd", cost);
        }
        Err(error) => {
            if let Some(partial) = error.partial() {
                record_usage(span, &partial.usage);
                span.record("agentic.turns", partial.turns);
            }
            span.record("error.type", agent_error_type(error));
            span.record("otel.status_code", "ERROR");
        }
    }
}

/// The `chat {model}` span of one model call (turn numbers count from 1).
pub(crate) fn chat_span(
    model: &dyn ChatModel,
    request: &ChatRequest,
    turn: u32,
    stream: bool,
) -> Span {
    let requested = model.model();
    let span = tracing::info_span!(
        "chat",
        otel.name = %format_args!("chat {requested}"),
        otel.kind = model_span_kind(model.provider()),
        otel.status_code = field::Empty,
        gen_ai.operation.name = "chat",
        gen_ai.provider.name = provider_name(model.provider()),
        gen_ai.request.model = requested,
        gen_ai.request.temperature = field::Empty,
        gen_ai.request.max_tokens = field::Empty,
        gen_ai.request.stop_sequences = field::Empty,
        gen_ai.request.stream = field::Empty,
        gen_ai.output.type = field::Empty,
        gen_ai.response.model = field::Empty,
        gen_ai.response.finish_reasons = field::Empty,
        gen_ai.usage.input_tokens = field::Empty,
        gen_ai.usage.output_tokens = field::Empty,
        gen_ai.usage.cache_read.input_tokens = field::Empty,
        gen_ai.usage.reasoning.output_tokens = field::Empty,
        gen_ai.system_instructions = field::Empty,
        gen_ai.input.messages = field::Empty,
        gen_ai.output.messages = field::Empty,
        gen_ai.tool.definitions = field::Empty,
        error.type = field::Empty,
        agentic.turn = turn,
        agentic.retries = field::Empty,
        agentic.usage.cost_usd = field::Empty,
        agentic.usage.estimated = field::Empty,
    );
    if span.is_disabled() {
        return span;
    }
    if let Some(t) = request.temperature {
        span.record("gen_ai.request.temperature", f64::from(t));
    }
    if let Some(max) = request.max_output_tokens {
        span.record("gen_ai.request.max_tokens", max);
    }
    if !request.stop.is_empty() {
        span.record(
            "gen_ai.request.stop_sequences",
            json!(request.stop).to_string(),
        );
    }
    if stream {
        span.record("gen_ai.request.stream", true);
    }
    if !matches!(request.response_format, ResponseFormat::Text) {
        span.record("gen_ai.output.type", "json");
    }
    if super::captures_content() {
        let (system, input) = messages_json(&request.messages);
        if let Some(system) = system {
            span.record("gen_ai.system_instructions", system.to_string());
        }
        span.record("gen_ai.input.messages", input.to_string());
        if !request.tools.is_empty() {
            let tools: Vec<Value> = request
                .tools
                .iter()
                .map(|t| {
                    json!({"type": "function", "name": t.name, "description": t.description,
                           "parameters": t.parameters})
                })
                .collect();
            span.record("gen_ai.tool.definitions", Value::from(tools).to_string());
        }
    }
    span
}

/// Records a model's answer on its chat span, with its cost at `prices` (the run's budget's,
/// or the default table).
pub(crate) fn record_chat_response(
    span: &Span,
    response: &ChatResponse,
    answered_by: &str,
    prices: Option<&Prices>,
) {
    if span.is_disabled() {
        return;
    }
    span.record("gen_ai.response.model", answered_by);
    span.record(
        "gen_ai.response.finish_reasons",
        json!([finish_reason(&response.finish_reason)]).to_string(),
    );
    record_usage(span, &response.usage);
    let prices = prices.unwrap_or_else(|| crate::budget::default_prices());
    span.record(
        "agentic.usage.cost_usd",
        prices.cost(answered_by, &response.usage),
    );
    if response.usage.estimated {
        span.record("agentic.usage.estimated", true);
    }
    if super::captures_content() {
        let mut parts = Vec::new();
        if !response.message.content.is_empty() {
            parts.push(json!({"type": "text", "content": response.message.content}));
        }
        for call in &response.message.tool_calls {
            parts.push(tool_call_part(&call.id, &call.name, &call.arguments));
        }
        let output = json!([{
            "role": "assistant",
            "parts": parts,
            "finish_reason": finish_reason(&response.finish_reason),
        }]);
        span.record("gen_ai.output.messages", output.to_string());
    }
}

/// Marks a chat span as failed. The error's text goes in the event the driver logs, not in
/// an attribute; backends have already scrubbed keys out of it.
pub(crate) fn record_chat_error(span: &Span, error: &ModelError) {
    span.record("error.type", model_error_type(error));
    span.record("otel.status_code", "ERROR");
}

/// Counts a retried model request on the current span (the chat span the request runs
/// in): `attempts` retries so far.
pub(crate) fn note_retry(attempts: u32) {
    Span::current().record("agentic.retries", attempts);
}

/// The `execute_tool {tool}` span of one call.
pub(crate) fn tool_span(
    name: &str,
    call_id: &str,
    description: Option<&str>,
    turn: u32,
    args: &Value,
) -> Span {
    let span = tracing::info_span!(
        "execute_tool",
        otel.name = %format_args!("execute_tool {name}"),
        otel.kind = "internal",
        otel.status_code = field::Empty,
        gen_ai.operation.name = "execute_tool",
        gen_ai.tool.name = name,
        gen_ai.tool.call.id = call_id,
        gen_ai.tool.type = "function",
        gen_ai.tool.description = field::Empty,
        gen_ai.tool.call.arguments = field::Empty,
        gen_ai.tool.call.result = field::Empty,
        error.type = field::Empty,
        agentic.turn = turn,
    );
    if span.is_disabled() {
        return span;
    }
    if let Some(description) = description {
        span.record("gen_ai.tool.description", description);
    }
    if super::captures_content() {
        span.record("gen_ai.tool.call.arguments", args.to_string());
    }
    span
}

/// Records a tool call's outcome on its span.
pub(crate) fn record_tool_result(span: &Span, result: &Result<ToolOutput, ToolError>) {
    if span.is_disabled() {
        return;
    }
    match result {
        Ok(output) => {
            if super::captures_content() {
                let text = match output {
                    ToolOutput::Text(text) => text.clone(),
                    ToolOutput::Json(value) => value.to_string(),
                };
                span.record("gen_ai.tool.call.result", text);
            }
        }
        Err(error) => {
            span.record("error.type", serde_name(&error.kind));
            span.record("otel.status_code", "ERROR");
        }
    }
}

fn record_usage(span: &Span, usage: &Usage) {
    span.record("gen_ai.usage.input_tokens", usage.input_tokens);
    span.record("gen_ai.usage.output_tokens", usage.output_tokens);
    if usage.cached_input_tokens > 0 {
        span.record(
            "gen_ai.usage.cache_read.input_tokens",
            usage.cached_input_tokens,
        );
    }
    if usage.reasoning_tokens > 0 {
        span.record(
            "gen_ai.usage.reasoning.output_tokens",
            usage.reasoning_tokens,
        );
    }
}

/// A finish reason in the convention's words (`stop`, `length`, `content_filter`,
/// `tool_calls`), or the provider's own.
fn finish_reason(reason: &FinishReason) -> &str {
    match reason {
        FinishReason::Stop => "stop",
        FinishReason::ToolCalls => "tool_calls",
        FinishReason::Length => "length",
        FinishReason::ContentFilter => "content_filter",
        FinishReason::Other(other) => other,
    }
}

/// The low-cardinality `error.type` of a model error: its kind in snake case
/// (`rate_limited`, `authentication`, ...).
pub(crate) fn model_error_type(error: &ModelError) -> String {
    serde_name(&error.kind)
}

fn agent_error_type(error: &AgentError) -> String {
    let name = match error {
        AgentError::Model { source, .. } => return model_error_type(source),
        AgentError::ToolFailureLimit { .. } => "tool_failure_limit",
        AgentError::StuckLoop { .. } => "stuck_loop",
        AgentError::MaxTurns { .. } => "max_turns",
        AgentError::History(_) => "history",
        AgentError::Memory(_) => "memory",
        AgentError::BudgetExceeded { .. } => "budget_exceeded",
        AgentError::Stopped { .. } => "stopped",
        AgentError::OutputRejected { .. } => "output_rejected",
        AgentError::InputRejected(_) => "input_rejected",
        AgentError::Cancelled { .. } => "cancelled",
        AgentError::TooManyToolCalls { .. } => "too_many_tool_calls",
        AgentError::InvalidOutput { .. } => "invalid_output",
        AgentError::OutputSchema(_) => "output_schema",
        AgentError::Paused(_) => "paused",
        AgentError::InvalidState(_) => "invalid_state",
        AgentError::Store(_) => "store",
        // A variant added later: its own name is the best low-cardinality type.
        #[allow(unreachable_patterns)]
        _ => "agent_error",
    };
    name.to_owned()
}

/// The serde (snake case) name of a unit enum value, such as an error kind.
fn serde_name<T: serde::Serialize>(value: &T) -> String {
    match serde_json::to_value(value) {
        Ok(Value::String(name)) => name,
        _ => "other".to_owned(),
    }
}

fn tool_call_part(id: &str, name: &str, arguments: &str) -> Value {
    // Arguments are JSON text as the model wrote it; kept as text when they do not parse.
    let arguments = serde_json::from_str::<Value>(arguments)
        .unwrap_or_else(|_| Value::String(arguments.to_owned()));
    json!({"type": "tool_call", "id": id, "name": name, "arguments": arguments})
}

/// The conversation in the convention's message shape: the system instructions apart, then
/// every other message with its role and parts.
fn messages_json(messages: &[Message]) -> (Option<Value>, Value) {
    let mut system = Vec::new();
    let mut input = Vec::new();
    for message in messages {
        match message {
            Message::System { content } => {
                system.push(json!({"type": "text", "content": content}));
            }
            Message::User { content } => {
                let parts: Vec<Value> = content
                    .iter()
                    .map(|part| match part {
                        ContentPart::Text { text } => json!({"type": "text", "content": text}),
                        ContentPart::Image { url, .. } => {
                            // A data: URL would put the whole image in the trace.
                            let uri = if url.starts_with("data:") {
                                "data:(inline)"
                            } else {
                                url.as_str()
                            };
                            json!({"type": "uri", "modality": "image", "uri": uri})
                        }
                        // The bytes stay out of the trace: only what kind of file it was.
                        ContentPart::Document {
                            media_type, name, ..
                        } => json!({"type": "blob", "modality": "document",
                                    "mime_type": media_type, "name": name}),
                    })
                    .collect();
                input.push(json!({"role": "user", "parts": parts}));
            }
            Message::Assistant(assistant) => {
                let mut parts = Vec::new();
                if !assistant.content.is_empty() {
                    parts.push(json!({"type": "text", "content": assistant.content}));
                }
                for call in &assistant.tool_calls {
                    parts.push(tool_call_part(&call.id, &call.name, &call.arguments));
                }
                input.push(json!({"role": "assistant", "parts": parts}));
            }
            Message::Tool(result) => {
                input.push(json!({"role": "tool", "parts": [{
                    "type": "tool_call_response",
                    "id": result.call_id,
                    "response": result.content,
                }]}));
            }
        }
    }
    let system = (!system.is_empty()).then(|| Value::from(system));
    (system, Value::from(input))
}
