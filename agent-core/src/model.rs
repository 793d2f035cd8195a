//! The `ChatModel` trait every backend implements, and the one request and response type it
//! speaks.
//!
//! One request struct carries every option: there is no `chat_with_tools_and_sampling`.
//! Nothing here performs I/O or knows a provider's wire format.

use std::pin::Pin;
use std::sync::Arc;

use async_trait::async_trait;
use futures::Stream;
use serde::{Deserialize, Serialize};
use serde_json::{Map, Value};

use crate::error::ModelError;
use crate::message::{AssistantMessage, Message, Usage};

/// A tool as the model sees it: name, description and JSON Schema of its arguments.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct ToolSpec {
    /// The name the model calls it by.
    pub name: String,
    /// What it does and when to use it, written for the model.
    pub description: String,
    /// JSON Schema (an object schema) of its arguments, with `$ref`s inlined.
    pub parameters: Value,
    /// Ask providers that support it (OpenAI) to enforce the schema exactly; the backend
    /// converts the schema to the provider's strict subset.
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub strict: bool,
    /// Example calls, for models that learn from examples in the prompt (the local
    /// backend's small models); remote providers are not sent them.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub examples: Vec<ToolExample>,
}

/// A task and the call that does it: a few of these teach a small model when and how to
/// call a tool.
///
/// ```
/// use agent_core::ToolExample;
/// let e = ToolExample::new("What is 6 times 7?", serde_json::json!({"expression": "6 * 7"}));
/// assert_eq!(e.task, "What is 6 times 7?");
/// ```
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct ToolExample {
    /// What a user asks.
    pub task: String,
    /// The arguments of the call that does it (checked against the tool's schema when the
    /// tool is put in a `ToolSet`).
    pub arguments: Value,
    /// What the call returns and the answer given from it, to show the whole exchange.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub outcome: Option<(String, String)>,
}

impl ToolExample {
    /// An example.
    pub fn new(task: impl Into<String>, arguments: Value) -> Self {
        ToolExample {
            task: task.into(),
            arguments,
            outcome: None,
        }
    }

    /// Adds the call's result and the answer made from it.
    #[must_use]
    pub fn with_outcome(mut self, result: impl Into<String>, answer: impl Into<String>) -> Self {
        self.outcome = Some((result.into(), answer.into()));
        self
    }
}

/// Whether and which tools the model may call.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum ToolChoice {
    /// The model decides.
    #[default]
    Auto,
    /// No tool calls.
    None,
    /// At least one tool call.
    Required,
    /// This tool, exactly.
    Tool(String),
}

/// The shape the model's text must have.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
#[serde(tag = "type", rename_all = "snake_case")]
pub enum ResponseFormat {
    /// Free text.
    #[default]
    Text,
    /// Any JSON object.
    JsonObject,
    /// JSON that follows a schema.
    JsonSchema {
        /// A name for the schema (some providers require one).
        name: String,
        /// The schema.
        schema: Value,
        /// Ask the provider to enforce it strictly, where it can.
        #[serde(default)]
        strict: bool,
    },
}

/// Everything a model call needs.
///
/// ```
/// use agent_core::{ChatRequest, Message};
/// let req = ChatRequest {
///     messages: vec![Message::user("Say hi")].into(),
///     temperature: Some(0.2),
///     ..Default::default()
/// };
/// assert!(req.tools.is_empty());
/// ```
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
pub struct ChatRequest {
    /// The conversation, system messages included. Shared: an agent's run hands its history
    /// to the request without copying it, and cloning a request is cheap. Build one from a
    /// `Vec` with `.into()`.
    pub messages: Arc<Vec<Message>>,
    /// The tools the model may call. Shared, since it is the same on every turn of a run.
    #[serde(default)]
    pub tools: Arc<[ToolSpec]>,
    /// Whether and which tools it may call.
    #[serde(default)]
    pub tool_choice: ToolChoice,
    /// Sampling temperature.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub temperature: Option<f32>,
    /// The most tokens the model may generate.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub max_output_tokens: Option<u32>,
    /// Sequences that end generation.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub stop: Vec<String>,
    /// The shape of the answer.
    #[serde(default)]
    pub response_format: ResponseFormat,
    /// Provider-specific fields, merged into the request body by the backend as they are.
    #[serde(default, skip_serializing_if = "Map::is_empty")]
    pub extra: Map<String, Value>,
}

/// Why the model stopped generating.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum FinishReason {
    /// It finished its answer.
    #[default]
    Stop,
    /// It wants tool results.
    ToolCalls,
    /// It hit the output token limit; the answer may be cut off.
    Length,
    /// The provider filtered the content.
    ContentFilter,
    /// Something else, in the provider's words.
    Other(String),
}

/// A model's answer to one request.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
pub struct ChatResponse {
    /// The assistant turn.
    pub message: AssistantMessage,
    /// Why it stopped.
    pub finish_reason: FinishReason,
    /// Tokens used by this call.
    pub usage: Usage,
    /// The model that answered, when a wrapper chose it among several (a
    /// [`FallbackModel`](crate::resilience::FallbackModel)); `None` means the model that was
    /// asked. Budgets price the answer at this model's price.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub model: Option<String>,
}

impl ChatResponse {
    /// When this answer carries no usage at all (every count zero: the provider reported
    /// none), replaces it by an estimate at four characters a token, marked
    /// [`Usage::estimated`]. Real usage is left alone. The run calls this after every model
    /// call, so budgets count an estimate rather than nothing.
    ///
    /// ```
    /// use agent_core::{ChatRequest, ChatResponse, Message};
    /// let request = ChatRequest { messages: vec![Message::user("What is 6 times 7?")].into(), ..Default::default() };
    /// let mut response = ChatResponse::text("6 times 7 is 42.");
    /// response.fill_missing_usage(&request);
    /// assert!(response.usage.estimated);
    /// assert_eq!(response.usage.output_tokens, 4);
    /// ```
    pub fn fill_missing_usage(&mut self, request: &ChatRequest) {
        if self.usage == Usage::default() {
            self.estimate_usage(request.estimated_input_tokens());
        }
    }

    /// Sets an estimated usage: the given input tokens, the output at four characters a
    /// token of the answer's text and calls.
    pub(crate) fn estimate_usage(&mut self, input_tokens: u64) {
        let output = self.message.content.len()
            + self
                .message
                .tool_calls
                .iter()
                .map(|c| c.name.len() + c.arguments.len())
                .sum::<usize>();
        self.usage = Usage {
            input_tokens,
            output_tokens: (output as u64).div_ceil(4),
            estimated: true,
            ..Usage::default()
        };
    }

    /// A final text answer.
    pub fn text(text: impl Into<String>) -> Self {
        ChatResponse {
            message: AssistantMessage::text(text),
            ..Default::default()
        }
    }

    /// A turn that calls tools.
    pub fn tool_calls(calls: Vec<crate::message::ToolCall>) -> Self {
        ChatResponse {
            message: AssistantMessage::with_tool_calls("", calls),
            finish_reason: FinishReason::ToolCalls,
            usage: Usage::default(),
            model: None,
        }
    }
}

impl ChatRequest {
    /// The tool results after the last assistant message, in call order.
    pub fn last_tool_results(&self) -> impl Iterator<Item = &crate::message::ToolResult> {
        let start = self
            .messages
            .iter()
            .rposition(|m| matches!(m, Message::Assistant(_)))
            .map_or(self.messages.len(), |i| i + 1);
        self.messages[start..]
            .iter()
            .filter_map(Message::as_tool_result)
    }

    /// A rough size of the conversation in tokens (four characters a token), for budgets and
    /// fake usage; no tokenizer is involved.
    pub fn estimated_input_tokens(&self) -> u64 {
        let chars: usize = self
            .messages
            .iter()
            .map(|m| match m {
                Message::Assistant(a) => {
                    a.content.len()
                        + a.tool_calls
                            .iter()
                            .map(|c| c.arguments.len())
                            .sum::<usize>()
                }
                Message::User { content } => content
                    .iter()
                    .map(|p| match p {
                        crate::message::ContentPart::Text { text } => text.len(),
                        crate::message::ContentPart::Image { .. }
                        | crate::message::ContentPart::Document { .. } => 0,
                    })
                    .sum(),
                Message::System { content } => content.len(),
                Message::Tool(r) => r.content.len(),
            })
            .sum();
        (chars as u64).div_ceil(4)
    }

    /// The text of the last user message.
    pub fn last_user_text(&self) -> Option<String> {
        self.messages
            .iter()
            .rev()
            .find(|m| matches!(m, Message::User { .. }))
            .map(Message::text)
    }
}

/// One event of a streamed model answer. The last event of a successful stream is
/// [`StreamEvent::Completed`], which carries the whole assembled response.
#[derive(Clone, Debug, PartialEq)]
#[non_exhaustive]
pub enum StreamEvent {
    /// More answer text.
    TextDelta(String),
    /// More reasoning text.
    ReasoningDelta(String),
    /// A tool call began.
    ToolCallStarted {
        /// Its position among this turn's calls.
        index: usize,
        /// The call id.
        id: String,
        /// The tool name.
        name: String,
    },
    /// More of a tool call's argument text.
    ToolCallDelta {
        /// Its position among this turn's calls.
        index: usize,
        /// The next piece of the JSON arguments.
        arguments: String,
    },
    /// Usage so far, when the provider reports it before the end.
    Usage(Usage),
    /// The stream is complete; this is the assembled answer.
    Completed(ChatResponse),
}

/// A stream of answer events.
pub type ChatStream = Pin<Box<dyn Stream<Item = Result<StreamEvent, ModelError>> + Send>>;

/// What a model can do, so callers can adapt before sending a request it would refuse.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Capabilities {
    /// It accepts tools and returns tool calls.
    pub tools: bool,
    /// It can return several tool calls in one turn.
    pub parallel_tool_calls: bool,
    /// It streams natively (not just the default wrapper around `chat`).
    pub streaming: bool,
    /// It accepts images in user messages.
    pub images: bool,
    /// It accepts documents (PDFs) in user messages.
    pub documents: bool,
    /// It honours [`ResponseFormat::JsonSchema`].
    pub structured_output: bool,
    /// It returns reasoning.
    pub reasoning: bool,
}

impl Default for Capabilities {
    fn default() -> Self {
        Capabilities {
            tools: true,
            parallel_tool_calls: true,
            streaming: false,
            images: false,
            documents: false,
            structured_output: false,
            reasoning: false,
        }
    }
}

/// A chat model: anything that turns a [`ChatRequest`] into a [`ChatResponse`].
///
/// Object-safe; agents hold an `Arc<dyn ChatModel>`. A backend that cannot stream only
/// implements [`chat`](ChatModel::chat); [`chat_stream`](ChatModel::chat_stream) then yields
/// the whole answer as a few coarse events.
///
/// ```
/// use agent_core::{async_trait, ChatModel, ChatRequest, ChatResponse, AssistantMessage, ModelError};
///
/// /// A model that always agrees.
/// struct Yes;
///
/// #[async_trait]
/// impl ChatModel for Yes {
///     fn provider(&self) -> &str { "example" }
///     fn model(&self) -> &str { "yes" }
///     async fn chat(&self, _req: &ChatRequest) -> Result<ChatResponse, ModelError> {
///         Ok(ChatResponse { message: AssistantMessage::text("yes"), ..Default::default() })
///     }
/// }
/// ```
#[async_trait]
pub trait ChatModel: Send + Sync {
    /// The provider name, as in the `provider:model` string.
    fn provider(&self) -> &str;

    /// The model name, as in the `provider:model` string.
    fn model(&self) -> &str;

    /// What this model can do.
    fn capabilities(&self) -> Capabilities {
        Capabilities::default()
    }

    /// Sends one request and waits for the whole answer.
    async fn chat(&self, request: &ChatRequest) -> Result<ChatResponse, ModelError>;

    /// Sends one request and streams the answer. The default calls [`chat`](Self::chat) and
    /// replays the answer as events.
    async fn chat_stream(&self, request: &ChatRequest) -> Result<ChatStream, ModelError> {
        let response = self.chat(request).await?;
        Ok(Box::pin(futures::stream::iter(
            response_events(response).into_iter().map(Ok),
        )))
    }
}

/// Reads a stream to its end and returns the assembled answer.
///
/// A stream that ends without [`StreamEvent::Completed`] was cut short: that is an error
/// ([`ModelErrorKind::StreamInterrupted`](crate::ModelErrorKind::StreamInterrupted)), never
/// a partial success.
pub async fn collect_stream(mut stream: ChatStream) -> Result<ChatResponse, ModelError> {
    use futures::StreamExt;
    while let Some(event) = stream.next().await {
        if let StreamEvent::Completed(response) = event? {
            return Ok(response);
        }
    }
    Err(ModelError::new(
        crate::error::ModelErrorKind::StreamInterrupted,
        "the stream ended without a complete answer",
    ))
}

/// The events that replay a complete response: its reasoning, its text, each tool call, the
/// usage, and `Completed`.
pub fn response_events(response: ChatResponse) -> Vec<StreamEvent> {
    let mut events = Vec::with_capacity(4 + 2 * response.message.tool_calls.len());
    if let Some(text) = response
        .message
        .reasoning
        .as_ref()
        .and_then(|r| r.text.clone())
    {
        events.push(StreamEvent::ReasoningDelta(text));
    }
    if !response.message.content.is_empty() {
        events.push(StreamEvent::TextDelta(response.message.content.clone()));
    }
    for (index, call) in response.message.tool_calls.iter().enumerate() {
        events.push(StreamEvent::ToolCallStarted {
            index,
            id: call.id.clone(),
            name: call.name.clone(),
        });
        events.push(StreamEvent::ToolCallDelta {
            index,
            arguments: call.arguments.clone(),
        });
    }
    events.push(StreamEvent::Usage(response.usage));
    events.push(StreamEvent::Completed(response));
    events
}

#[async_trait]
impl<M: ChatModel + ?Sized> ChatModel for Arc<M> {
    fn provider(&self) -> &str {
        (**self).provider()
    }
    fn model(&self) -> &str {
        (**self).model()
    }
    fn capabilities(&self) -> Capabilities {
        (**self).capabilities()
    }
    async fn chat(&self, request: &ChatRequest) -> Result<ChatResponse, ModelError> {
        (**self).chat(request).await
    }
    async fn chat_stream(&self, request: &ChatRequest) -> Result<ChatStream, ModelError> {
        (**self).chat_stream(request).await
    }
}
