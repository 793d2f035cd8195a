//! Responses API answers and stream events → our message model (pure: no I/O). Lenient:
//! unknown item, content and event types are skipped, optional fields may be missing. The
//! final answer is read from the response object (`response.completed` carries it whole);
//! the deltas before it only feed the stream events.

use std::collections::HashMap;

use serde::Deserialize;
use serde_json::{Value, json};

use super::PROVIDER;
use crate::backends::http::{ErrorBody, kind_from_words};
use crate::backends::protocol::StreamAssembler;
use crate::error::{ModelError, ModelErrorKind};
use crate::message::{AssistantMessage, Reasoning, ToolCall, Usage};
use crate::model::{ChatResponse, FinishReason, StreamEvent};

/// A response object (a whole answer, or the one a terminal stream event carries).
#[derive(Debug, Default, Deserialize)]
#[serde(default)]
pub(crate) struct WireResponse {
    status: Option<String>,
    /// Kept raw: items are sent back exactly as received.
    output: Vec<Value>,
    usage: Option<WireUsage>,
    error: Option<Value>,
    incomplete_details: Option<IncompleteDetails>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(default)]
struct IncompleteDetails {
    reason: Option<String>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(default)]
struct WireUsage {
    input_tokens: u64,
    output_tokens: u64,
    input_tokens_details: Option<InputDetails>,
    output_tokens_details: Option<OutputDetails>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(default)]
struct InputDetails {
    cached_tokens: u64,
}

#[derive(Debug, Default, Deserialize)]
#[serde(default)]
struct OutputDetails {
    reasoning_tokens: u64,
}

/// The output items we read; the rest are skipped.
#[derive(Debug, Deserialize)]
#[serde(tag = "type", rename_all = "snake_case")]
enum OutputItem {
    Message {
        #[serde(default)]
        content: Vec<OutputContent>,
    },
    FunctionCall {
        call_id: String,
        name: String,
        #[serde(default)]
        arguments: String,
    },
    Reasoning {
        #[serde(default)]
        summary: Vec<OutputContent>,
    },
    #[serde(other)]
    Other,
}

#[derive(Debug, Deserialize)]
#[serde(tag = "type", rename_all = "snake_case")]
enum OutputContent {
    OutputText {
        text: String,
    },
    SummaryText {
        text: String,
    },
    Refusal {
        refusal: String,
    },
    #[serde(other)]
    Other,
}

/// The stream events we act on; the rest (`response.created`, `…content_part.added`,
/// `…output_text.done`, ...) are skipped.
#[derive(Debug, Deserialize)]
#[serde(tag = "type")]
enum Event {
    #[serde(rename = "response.output_item.added")]
    ItemAdded { output_index: usize, item: Value },
    #[serde(rename = "response.output_item.done")]
    ItemDone { output_index: usize, item: Value },
    #[serde(rename = "response.output_text.delta")]
    TextDelta { delta: String },
    #[serde(
        rename = "response.reasoning_summary_text.delta",
        alias = "response.reasoning_text.delta"
    )]
    ReasoningDelta { delta: String },
    #[serde(rename = "response.function_call_arguments.delta")]
    ArgumentsDelta { output_index: usize, delta: String },
    #[serde(
        rename = "response.completed",
        alias = "response.incomplete",
        alias = "response.failed"
    )]
    Finished { response: WireResponse },
    #[serde(rename = "error")]
    Error {
        #[serde(default)]
        code: Option<Value>,
        #[serde(default)]
        message: Option<String>,
    },
    #[serde(other)]
    Other,
}

fn error(kind: ModelErrorKind, message: impl Into<String>, model: &str) -> ModelError {
    ModelError::new(kind, message).with_provider(PROVIDER, model)
}

/// An error object (`{code, message}`) from a failed response or an `error` event.
fn embedded_error(value: &Value, model: &str) -> ModelError {
    let body = ErrorBody::from_value(&json!({ "error": value }));
    let mut e = error(
        kind_from_words(&body),
        body.message.unwrap_or_else(|| value.to_string()),
        model,
    );
    e.code = body.code.or(body.kind);
    e
}

impl WireResponse {
    /// Our answer, or the error a failed response carries.
    fn into_response(self, model: &str) -> Result<ChatResponse, ModelError> {
        if let Some(e) = self.error.as_ref().filter(|e| !e.is_null()) {
            return Err(embedded_error(e, model));
        }
        if self.status.as_deref() == Some("failed") {
            return Err(error(ModelErrorKind::Server, "the response failed", model));
        }
        let mut text = String::new();
        let mut summary = String::new();
        let mut calls = Vec::new();
        let mut has_reasoning = false;
        for item in &self.output {
            match serde_json::from_value::<OutputItem>(item.clone()) {
                Ok(OutputItem::Message { content }) => {
                    for part in content {
                        match part {
                            OutputContent::OutputText { text: t } => text.push_str(&t),
                            OutputContent::Refusal { refusal } => text.push_str(&refusal),
                            _ => {}
                        }
                    }
                }
                Ok(OutputItem::FunctionCall {
                    call_id,
                    name,
                    arguments,
                }) => calls.push(ToolCall {
                    id: call_id,
                    name,
                    // A function without parameters may come back with "" arguments.
                    arguments: if arguments.trim().is_empty() {
                        "{}".to_owned()
                    } else {
                        arguments
                    },
                }),
                Ok(OutputItem::Reasoning { summary: parts }) => {
                    has_reasoning = true;
                    for part in parts {
                        if let OutputContent::SummaryText { text: t } = part {
                            summary.push_str(&t);
                        }
                    }
                }
                // Items of other types, or that are not what their type says: skipped.
                Ok(OutputItem::Other) | Err(_) => {}
            }
        }
        let refused = self.output.iter().any(|i| {
            i.pointer("/content")
                .and_then(Value::as_array)
                .is_some_and(|c| c.iter().any(|p| p["type"] == "refusal"))
        });
        let finish_reason = if !calls.is_empty() {
            FinishReason::ToolCalls
        } else if refused {
            FinishReason::ContentFilter
        } else {
            match (
                self.status.as_deref(),
                self.incomplete_details.and_then(|d| d.reason).as_deref(),
            ) {
                (Some("incomplete"), Some("max_output_tokens")) => FinishReason::Length,
                (Some("incomplete"), Some("content_filter")) => FinishReason::ContentFilter,
                (Some("incomplete"), reason) => {
                    FinishReason::Other(reason.unwrap_or("incomplete").to_owned())
                }
                _ => FinishReason::Stop,
            }
        };
        // The turn's items go back on the next request when it reasoned (the encrypted
        // reasoning must travel with the calls that followed it).
        let reasoning = has_reasoning.then(|| Reasoning {
            provider: PROVIDER.into(),
            text: (!summary.is_empty()).then_some(summary),
            data: json!({ "output": self.output }),
        });
        let usage = self.usage.map_or_else(Usage::default, |u| Usage {
            input_tokens: u.input_tokens,
            output_tokens: u.output_tokens,
            cached_input_tokens: u.input_tokens_details.map_or(0, |d| d.cached_tokens),
            reasoning_tokens: u.output_tokens_details.map_or(0, |d| d.reasoning_tokens),
            ..Usage::default()
        });
        Ok(ChatResponse {
            message: AssistantMessage {
                content: text,
                tool_calls: calls,
                reasoning,
            },
            finish_reason,
            usage,
            model: None,
        })
    }
}

/// Parses a whole response body (pure).
pub(crate) fn parse_response(body: &[u8], model: &str) -> Result<ChatResponse, ModelError> {
    let response: WireResponse = serde_json::from_slice(body).map_err(|e| {
        error(
            ModelErrorKind::InvalidResponse,
            format!("the response is not a Responses API response ({e})"),
            model,
        )
    })?;
    response.into_response(model)
}

/// One streamed answer: typed events until `response.completed` (or `.incomplete`,
/// `.failed`); there is no `[DONE]`.
#[derive(Debug)]
pub struct ResponsesStream {
    model: String,
    /// `output_index` → the call's position among this turn's calls.
    calls: HashMap<usize, usize>,
    /// Items finished so far, for a terminal event whose response lists no output.
    items: Vec<(usize, Value)>,
    finished: Option<WireResponse>,
}

impl ResponsesStream {
    pub(crate) fn new(model: &str) -> Self {
        ResponsesStream {
            model: model.to_owned(),
            calls: HashMap::new(),
            items: Vec::new(),
            finished: None,
        }
    }
}

impl StreamAssembler for ResponsesStream {
    fn push(&mut self, data: &str) -> Result<Vec<StreamEvent>, ModelError> {
        let event: Event = serde_json::from_str(data).map_err(|e| {
            error(
                ModelErrorKind::InvalidResponse,
                format!(
                    "a stream event is not valid ({e}): {}",
                    data.chars().take(200).collect::<String>()
                ),
                &self.model,
            )
        })?;
        let mut out = Vec::new();
        match event {
            Event::ItemAdded { output_index, item } if item["type"] == "function_call" => {
                let index = self.calls.len();
                self.calls.insert(output_index, index);
                out.push(StreamEvent::ToolCallStarted {
                    index,
                    id: item["call_id"].as_str().unwrap_or_default().to_owned(),
                    name: item["name"].as_str().unwrap_or_default().to_owned(),
                });
            }
            Event::ArgumentsDelta {
                output_index,
                delta,
            } => {
                if let Some(&index) = self.calls.get(&output_index)
                    && !delta.is_empty()
                {
                    out.push(StreamEvent::ToolCallDelta {
                        index,
                        arguments: delta,
                    });
                }
            }
            Event::TextDelta { delta } if !delta.is_empty() => {
                out.push(StreamEvent::TextDelta(delta))
            }
            Event::ReasoningDelta { delta } if !delta.is_empty() => {
                out.push(StreamEvent::ReasoningDelta(delta))
            }
            Event::ItemDone { output_index, item } => self.items.push((output_index, item)),
            Event::Finished { response } => self.finished = Some(response),
            Event::Error { code, message } => {
                return Err(embedded_error(
                    &json!({"code": code, "message": message}),
                    &self.model,
                ));
            }
            _ => {}
        }
        Ok(out)
    }

    fn is_done(&self) -> bool {
        self.finished.is_some()
    }

    fn finish(mut self, _leftover: Option<String>) -> Result<ChatResponse, ModelError> {
        let Some(mut response) = self.finished.take() else {
            return Err(error(
                ModelErrorKind::StreamInterrupted,
                "the stream ended before response.completed",
                &self.model,
            ));
        };
        if response.output.is_empty() {
            self.items.sort_by_key(|(index, _)| *index);
            response.output = self.items.into_iter().map(|(_, item)| item).collect();
        }
        response.into_response(&self.model)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn calls_text_reasoning_and_usage_are_read() {
        let body = json!({"id": "resp_1", "status": "completed", "output": [
            {"type": "reasoning", "id": "rs_1", "summary": [{"type": "summary_text", "text": "Two lookups."}],
             "encrypted_content": "gAAAA=="},
            {"type": "function_call", "id": "fc_1", "call_id": "call_a", "name": "weather", "arguments": "{\"city\":\"Paris\"}", "status": "completed"},
            {"type": "function_call", "id": "fc_2", "call_id": "call_b", "name": "now", "arguments": "", "status": "completed"},
            {"type": "web_search_call", "id": "ws_1"}
        ], "usage": {"input_tokens": 100, "input_tokens_details": {"cached_tokens": 64},
                     "output_tokens": 40, "output_tokens_details": {"reasoning_tokens": 30}, "total_tokens": 140}});
        let r = parse_response(body.to_string().as_bytes(), "o4-mini").unwrap();
        assert_eq!(r.finish_reason, FinishReason::ToolCalls);
        let calls: Vec<_> = r
            .message
            .tool_calls
            .iter()
            .map(|c| (c.id.as_str(), c.name.as_str(), c.arguments.as_str()))
            .collect();
        assert_eq!(
            calls,
            [
                ("call_a", "weather", "{\"city\":\"Paris\"}"),
                ("call_b", "now", "{}")
            ]
        );
        let reasoning = r.message.reasoning.unwrap();
        assert_eq!(reasoning.text.as_deref(), Some("Two lookups."));
        assert_eq!(reasoning.data["output"], body["output"]);
        assert_eq!(
            r.usage,
            Usage {
                input_tokens: 100,
                output_tokens: 40,
                cached_input_tokens: 64,
                reasoning_tokens: 30,
                ..Usage::default()
            }
        );
    }

    #[test]
    fn incomplete_failed_and_refused_answers() {
        let one = |v: Value| parse_response(v.to_string().as_bytes(), "m");
        let r = one(
            json!({"status": "incomplete", "incomplete_details": {"reason": "max_output_tokens"},
            "output": [{"type": "message", "content": [{"type": "output_text", "text": "Cut"}]}]}),
        )
        .unwrap();
        assert_eq!(
            (r.finish_reason, r.message.content.as_str()),
            (FinishReason::Length, "Cut")
        );
        assert!(
            r.message.reasoning.is_none(),
            "no reasoning item, nothing to send back"
        );
        let e = one(json!({"status": "failed", "error": {"code": "rate_limit_exceeded", "message": "Slow down"}}))
            .unwrap_err();
        assert_eq!(
            (e.kind, e.message.as_str()),
            (ModelErrorKind::RateLimited, "Slow down")
        );
        let r = one(
            json!({"status": "completed", "output": [{"type": "message", "content": [
            {"type": "refusal", "refusal": "I can't help with that."}]}]}),
        )
        .unwrap();
        assert_eq!(r.finish_reason, FinishReason::ContentFilter);
        assert_eq!(
            one(json!([1])).unwrap_err().kind,
            ModelErrorKind::InvalidResponse
        );
    }

    #[test]
    fn a_stream_without_output_in_its_last_event_uses_the_finished_items() {
        let mut s = ResponsesStream::new("m");
        for event in [
            json!({"type": "response.created", "response": {"id": "r"}}),
            json!({"type": "response.output_item.added", "output_index": 0, "item": {"type": "function_call", "call_id": "c", "name": "f", "arguments": ""}}),
            json!({"type": "response.function_call_arguments.delta", "output_index": 0, "delta": "{\"a\":1}"}),
            json!({"type": "response.function_call_arguments.done", "output_index": 0, "arguments": "{\"a\":1}"}),
            json!({"type": "response.output_item.done", "output_index": 0, "item": {"type": "function_call", "call_id": "c", "name": "f", "arguments": "{\"a\":1}"}}),
            json!({"type": "response.something_new", "x": 1}),
            json!({"type": "response.completed", "response": {"status": "completed", "usage": {"input_tokens": 1, "output_tokens": 2}}}),
        ] {
            s.push(&event.to_string()).unwrap();
        }
        assert!(s.is_done());
        let r = s.finish(None).unwrap();
        assert_eq!(r.message.tool_calls[0].arguments, "{\"a\":1}");
        assert_eq!(r.usage.total_tokens(), 3);
    }
}
