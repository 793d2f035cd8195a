//! `GenerateContentResponse` bodies and stream chunks → our message model (pure: no I/O).
//! Calls without ids get synthetic ones; a stream has no terminator, so it is complete only
//! when it said why it finished; errors may arrive as a bare JSON object.

use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use serde::Deserialize;
use serde_json::{Value, json};

use super::SYNTHETIC_ID_PREFIX;
use crate::backends::protocol::StreamAssembler;
use crate::error::{ModelError, ModelErrorKind};
use crate::message::{AssistantMessage, Reasoning, ToolCall, Usage};
use crate::model::{ChatResponse, FinishReason, StreamEvent};

/// Gemini's own reading of an error body: a bad key is a 400 with reason `API_KEY_INVALID`;
/// the wait is `RetryInfo.retryDelay` ("39s"); the code is the RPC status name.
pub(crate) fn refine_error(error: &mut ModelError, body: &[u8]) {
    let Ok(value) = serde_json::from_slice::<Value>(body) else {
        return;
    };
    let Some(inner) = value.get("error") else {
        return;
    };
    if let Some(status) = inner.get("status").and_then(Value::as_str) {
        error.code = Some(status.to_owned());
    }
    let details = inner
        .get("details")
        .and_then(Value::as_array)
        .cloned()
        .unwrap_or_default();
    let bad_key = details
        .iter()
        .any(|d| d.get("reason").and_then(Value::as_str) == Some("API_KEY_INVALID"))
        || error.message.contains("API key not valid");
    if bad_key {
        error.kind = ModelErrorKind::Authentication;
    }
    if let Some(delay) = details
        .iter()
        .find_map(|d| d.get("retryDelay").and_then(Value::as_str))
        .and_then(|d| d.strip_suffix('s'))
        .and_then(|d| d.parse::<f64>().ok())
        .filter(|d| d.is_finite() && *d >= 0.0)
    {
        error.retry_after = Some(Duration::from_secs_f64(delay));
    }
}

fn synthetic_id() -> String {
    static NEXT: AtomicU64 = AtomicU64::new(1);
    format!(
        "{SYNTHETIC_ID_PREFIX}{}",
        NEXT.fetch_add(1, Ordering::Relaxed)
    )
}

/// A `GenerateContentResponse`: a whole answer, or one chunk of a stream.
#[derive(Debug, Default, Deserialize)]
#[serde(default, rename_all = "camelCase")]
pub(crate) struct Chunk {
    candidates: Vec<Candidate>,
    usage_metadata: Option<UsageMetadata>,
    prompt_feedback: Option<PromptFeedback>,
    /// Kept raw: its reading is shared with the error bodies of failed requests.
    error: Option<Value>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(default, rename_all = "camelCase")]
struct Candidate {
    content: CandidateContent,
    finish_reason: Option<String>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(default)]
struct CandidateContent {
    /// Kept raw: a model turn with thought signatures goes back exactly as received.
    parts: Vec<Value>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(default, rename_all = "camelCase")]
struct UsageMetadata {
    prompt_token_count: u64,
    candidates_token_count: u64,
    cached_content_token_count: u64,
    thoughts_token_count: u64,
}

#[derive(Debug, Default, Deserialize)]
#[serde(default, rename_all = "camelCase")]
struct PromptFeedback {
    block_reason: Option<String>,
}

/// The fields of a part we read.
#[derive(Debug, Default, Deserialize)]
#[serde(default, rename_all = "camelCase")]
struct WirePart {
    text: Option<String>,
    thought: bool,
    thought_signature: Option<String>,
    function_call: Option<WireFunctionCall>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(default)]
struct WireFunctionCall {
    id: Option<String>,
    name: String,
    args: Value,
}

/// Assembles an answer from one response body or from the chunks of a stream.
#[derive(Debug, Default)]
pub(crate) struct Assembler {
    text: String,
    thoughts: String,
    parts: Vec<Value>,
    keep_parts: bool,
    calls: Vec<ToolCall>,
    finish_reason: Option<String>,
    blocked: Option<String>,
    usage: Usage,
}

impl Assembler {
    /// Takes one chunk and returns the events it produced.
    pub fn push(&mut self, chunk: Chunk, model: &str) -> Result<Vec<StreamEvent>, ModelError> {
        if let Some(error) = chunk.error {
            let mut e = ModelError::new(
                ModelErrorKind::Server,
                error
                    .get("message")
                    .and_then(Value::as_str)
                    .unwrap_or("error in stream"),
            )
            .with_provider("gemini", model);
            if let Some(code) = error
                .get("code")
                .and_then(Value::as_u64)
                .and_then(|c| u16::try_from(c).ok())
            {
                e.kind = crate::backends::http::kind_for_status(
                    code,
                    &crate::backends::http::ErrorBody::default(),
                );
                e.status = Some(code);
            }
            refine_error(&mut e, json!({ "error": error }).to_string().as_bytes());
            return Err(e);
        }
        let mut events = Vec::new();
        if let Some(meta) = chunk.usage_metadata {
            let thoughts = meta.thoughts_token_count;
            self.usage = Usage {
                input_tokens: meta.prompt_token_count,
                output_tokens: meta.candidates_token_count + thoughts,
                cached_input_tokens: meta.cached_content_token_count,
                reasoning_tokens: thoughts,
                ..Usage::default()
            };
            events.push(StreamEvent::Usage(self.usage));
        }
        if let Some(reason) = chunk.prompt_feedback.and_then(|f| f.block_reason) {
            self.blocked = Some(reason);
        }
        let Some(candidate) = chunk.candidates.into_iter().next() else {
            return Ok(events);
        };
        for raw in candidate.content.parts {
            // A part that is not what it should be is kept (to send back) but not read.
            let part = WirePart::deserialize(&raw).unwrap_or_default();
            self.parts.push(raw);
            if part.thought_signature.is_some() {
                self.keep_parts = true;
            }
            if let Some(call) = part.function_call {
                let id = call
                    .id
                    .filter(|id| !id.is_empty())
                    .unwrap_or_else(synthetic_id);
                let arguments = match call.args {
                    args @ Value::Object(_) => args.to_string(),
                    _ => "{}".to_owned(),
                };
                let index = self.calls.len();
                events.push(StreamEvent::ToolCallStarted {
                    index,
                    id: id.clone(),
                    name: call.name.clone(),
                });
                events.push(StreamEvent::ToolCallDelta {
                    index,
                    arguments: arguments.clone(),
                });
                self.calls.push(ToolCall {
                    id,
                    name: call.name,
                    arguments,
                });
            } else if let Some(text) = part.text.filter(|t| !t.is_empty()) {
                if part.thought {
                    self.keep_parts = true;
                    self.thoughts.push_str(&text);
                    events.push(StreamEvent::ReasoningDelta(text));
                } else {
                    self.text.push_str(&text);
                    events.push(StreamEvent::TextDelta(text));
                }
            }
        }
        if let Some(reason) = candidate.finish_reason {
            self.finish_reason = Some(reason);
        }
        Ok(events)
    }

    /// Whether the answer said why it finished (or was blocked).
    pub fn has_finished(&self) -> bool {
        self.finish_reason.is_some() || self.blocked.is_some()
    }

    /// The assembled answer.
    pub fn finish(self, model: &str) -> Result<ChatResponse, ModelError> {
        let has_calls = !self.calls.is_empty();
        let finish_reason = match (self.finish_reason.as_deref(), &self.blocked) {
            (_, _) if has_calls => FinishReason::ToolCalls,
            (None, Some(_)) => FinishReason::ContentFilter,
            (None | Some("STOP"), _) => FinishReason::Stop,
            (Some("MAX_TOKENS"), _) => FinishReason::Length,
            (
                Some(
                    "SAFETY" | "RECITATION" | "BLOCKLIST" | "PROHIBITED_CONTENT" | "SPII"
                    | "LANGUAGE",
                ),
                _,
            ) => FinishReason::ContentFilter,
            (
                Some(
                    r
                    @ ("MALFORMED_FUNCTION_CALL" | "UNEXPECTED_TOOL_CALL" | "TOO_MANY_TOOL_CALLS"),
                ),
                _,
            ) => {
                return Err(ModelError::new(
                    ModelErrorKind::InvalidResponse,
                    format!("Gemini could not produce a valid function call ({r})"),
                )
                .with_provider("gemini", model)
                .with_code(r));
            }
            (Some(r), _) if r.starts_with("IMAGE_") => FinishReason::ContentFilter,
            (Some(other), _) => FinishReason::Other(other.to_owned()),
        };
        let reasoning = self.keep_parts.then(|| Reasoning {
            provider: "gemini".into(),
            text: (!self.thoughts.is_empty()).then_some(self.thoughts),
            data: json!({"parts": self.parts}),
        });
        Ok(ChatResponse {
            message: AssistantMessage {
                content: self.text,
                tool_calls: self.calls,
                reasoning,
            },
            finish_reason,
            usage: self.usage,
            model: None,
        })
    }
}

/// Parses a whole `generateContent` response (pure).
pub(crate) fn parse_response(body: &[u8], model: &str) -> Result<ChatResponse, ModelError> {
    let chunk: Chunk = serde_json::from_slice(body).map_err(|e| {
        ModelError::new(
            ModelErrorKind::InvalidResponse,
            format!("the response is not a GenerateContentResponse ({e})"),
        )
        .with_provider("gemini", model)
    })?;
    let mut assembler = Assembler::default();
    assembler.push(chunk, model)?;
    assembler.finish(model)
}

/// One streamed answer: chunks until the connection closes.
#[derive(Debug)]
pub struct GeminiStream {
    assembler: Assembler,
    model: String,
}

impl GeminiStream {
    pub(crate) fn new(model: &str) -> Self {
        GeminiStream {
            assembler: Assembler::default(),
            model: model.to_owned(),
        }
    }
}

impl StreamAssembler for GeminiStream {
    fn push(&mut self, data: &str) -> Result<Vec<StreamEvent>, ModelError> {
        let chunk: Chunk = serde_json::from_str(data).map_err(|e| {
            ModelError::new(
                ModelErrorKind::InvalidResponse,
                format!("a stream chunk is not valid ({e})"),
            )
            .with_provider("gemini", self.model.clone())
        })?;
        self.assembler.push(chunk, &self.model)
    }

    /// No terminator: the stream ends at EOF.
    fn is_done(&self) -> bool {
        false
    }

    /// Complete only if it said why it finished; an error may come as a bare JSON object.
    fn finish(self, leftover: Option<String>) -> Result<ChatResponse, ModelError> {
        if let Some(error) = leftover
            .as_deref()
            .and_then(|r| serde_json::from_str::<Chunk>(r.trim()).ok())
        {
            Assembler::default().push(error, &self.model)?;
        }
        if self.assembler.has_finished() {
            self.assembler.finish(&self.model)
        } else {
            Err(ModelError::new(
                ModelErrorKind::StreamInterrupted,
                "the stream ended before a finishReason",
            )
            .with_provider("gemini", self.model))
        }
    }
}
