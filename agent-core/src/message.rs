//! The message model: what a conversation is made of, independent of any provider.
//!
//! Every backend translates to and from these types; nothing here knows a wire format. The
//! history invariant ([`check_history`]) is enforced here so that no backend ever sends a
//! conversation in which a tool call is left unanswered.

use std::ops::{Add, AddAssign};

use serde::{Deserialize, Serialize};
use serde_json::Value;

/// Who wrote a message.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Role {
    /// Instructions for the model.
    System,
    /// The person (or program) the agent works for.
    User,
    /// The model.
    Assistant,
    /// The result of a tool call.
    Tool,
}

/// One message of a conversation.
///
/// ```
/// use agent_core::Message;
/// let history = vec![
///     Message::system("You are terse."),
///     Message::user("Hi"),
///     Message::assistant("Hello."),
/// ];
/// assert_eq!(history[2].text(), "Hello.");
/// ```
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(tag = "role", rename_all = "snake_case")]
pub enum Message {
    /// Instructions; backends that take the system prompt out of band (Anthropic, Gemini)
    /// lift these out of the list.
    System {
        /// The instructions.
        content: String,
    },
    /// Input from the user: text, and for capable models, images.
    User {
        /// The parts, in order.
        content: Vec<ContentPart>,
    },
    /// A model turn: text, tool calls, or both.
    Assistant(AssistantMessage),
    /// The answer to one tool call.
    Tool(ToolResult),
}

impl Message {
    /// A system message.
    pub fn system(text: impl Into<String>) -> Self {
        Message::System {
            content: text.into(),
        }
    }

    /// A user message made of parts: text, images, documents (see [`ContentPart`]).
    ///
    /// ```
    /// use agent_core::{ContentPart, Message};
    /// let task = Message::user_parts(vec![
    ///     ContentPart::text("What does this invoice total?"),
    ///     ContentPart::pdf("invoice.pdf", b"%PDF-1.7 ..."),
    /// ]);
    /// assert_eq!(task.text(), "What does this invoice total?");
    /// ```
    pub fn user_parts(parts: Vec<ContentPart>) -> Self {
        Message::User { content: parts }
    }

    /// A user message holding one text part.
    pub fn user(text: impl Into<String>) -> Self {
        Message::User {
            content: vec![ContentPart::Text { text: text.into() }],
        }
    }

    /// An assistant message holding only text.
    pub fn assistant(text: impl Into<String>) -> Self {
        Message::Assistant(AssistantMessage::text(text))
    }

    /// A tool result message.
    pub fn tool_result(result: ToolResult) -> Self {
        Message::Tool(result)
    }

    /// The role of this message.
    pub fn role(&self) -> Role {
        match self {
            Message::System { .. } => Role::System,
            Message::User { .. } => Role::User,
            Message::Assistant(_) => Role::Assistant,
            Message::Tool(_) => Role::Tool,
        }
    }

    /// The message's text: all text parts joined for a user message, the text of an
    /// assistant message, the content of a tool result.
    pub fn text(&self) -> String {
        match self {
            Message::System { content } => content.clone(),
            Message::User { content } => ContentPart::join_text(content),
            Message::Assistant(a) => a.content.clone(),
            Message::Tool(r) => r.content.clone(),
        }
    }

    /// The assistant message inside, if this is one.
    pub fn as_assistant(&self) -> Option<&AssistantMessage> {
        match self {
            Message::Assistant(a) => Some(a),
            _ => None,
        }
    }

    /// The tool result inside, if this is one.
    pub fn as_tool_result(&self) -> Option<&ToolResult> {
        match self {
            Message::Tool(r) => Some(r),
            _ => None,
        }
    }
}

/// A part of a user message.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(tag = "type", rename_all = "snake_case")]
pub enum ContentPart {
    /// Plain text.
    Text {
        /// The text.
        text: String,
    },
    /// An image, by URL (`https:` or a `data:` URL).
    Image {
        /// Where the image is.
        url: String,
        /// Its media type when known (`image/png`, ...).
        #[serde(default, skip_serializing_if = "Option::is_none")]
        media_type: Option<String>,
    },
    /// A document (a PDF), by its bytes.
    Document {
        /// Its media type (`application/pdf`).
        media_type: String,
        /// Its bytes, base64-encoded.
        data: String,
        /// A file name, for providers that show or want one.
        #[serde(default, skip_serializing_if = "Option::is_none")]
        name: Option<String>,
    },
}

impl ContentPart {
    /// A text part.
    pub fn text(text: impl Into<String>) -> Self {
        ContentPart::Text { text: text.into() }
    }

    /// An image the provider fetches itself (`https:`), or a `data:` URL.
    pub fn image_url(url: impl Into<String>) -> Self {
        ContentPart::Image {
            url: url.into(),
            media_type: None,
        }
    }

    /// An image given by its bytes (`image/png`, `image/jpeg`, `image/webp`, `image/gif`).
    ///
    /// ```
    /// use agent_core::ContentPart;
    /// let part = ContentPart::image_bytes("image/png", &[0x89, b'P', b'N', b'G']);
    /// assert!(matches!(part, ContentPart::Image { url, .. } if url == "data:image/png;base64,iVBORw=="));
    /// ```
    pub fn image_bytes(media_type: &str, bytes: &[u8]) -> Self {
        use base64::Engine;
        let data = base64::engine::general_purpose::STANDARD.encode(bytes);
        ContentPart::Image {
            url: format!("data:{media_type};base64,{data}"),
            media_type: Some(media_type.to_owned()),
        }
    }

    /// A PDF given by its bytes, with a file name.
    pub fn pdf(name: impl Into<String>, bytes: &[u8]) -> Self {
        use base64::Engine;
        ContentPart::Document {
            media_type: "application/pdf".into(),
            data: base64::engine::general_purpose::STANDARD.encode(bytes),
            name: Some(name.into()),
        }
    }

    /// The media type and base64 data of an inline image or document (a `data:` URL's
    /// parts); `None` for an image by `https:` URL or a text.
    pub fn inline_data(&self) -> Option<(&str, &str)> {
        match self {
            ContentPart::Image { url, media_type } => {
                let (mime, data) = url.strip_prefix("data:")?.split_once(";base64,")?;
                Some((media_type.as_deref().unwrap_or(mime), data))
            }
            ContentPart::Document {
                media_type, data, ..
            } => Some((media_type, data)),
            ContentPart::Text { .. } => None,
        }
    }

    /// Joins the text parts of a list, ignoring the others.
    pub fn join_text(parts: &[ContentPart]) -> String {
        let mut out = String::new();
        for part in parts {
            if let ContentPart::Text { text } = part {
                out.push_str(text);
            }
        }
        out
    }
}

/// A model's turn.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
pub struct AssistantMessage {
    /// The text the model wrote (may be empty when it only called tools).
    #[serde(default)]
    pub content: String,
    /// The tools the model asked to call, in its order.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub tool_calls: Vec<ToolCall>,
    /// Provider reasoning that must be sent back unchanged on the next request.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub reasoning: Option<Reasoning>,
}

impl AssistantMessage {
    /// An assistant message with only text.
    pub fn text(text: impl Into<String>) -> Self {
        AssistantMessage {
            content: text.into(),
            ..Default::default()
        }
    }

    /// An assistant message that calls tools.
    pub fn with_tool_calls(text: impl Into<String>, tool_calls: Vec<ToolCall>) -> Self {
        AssistantMessage {
            content: text.into(),
            tool_calls,
            reasoning: None,
        }
    }
}

/// Reasoning a provider returned with a turn (DeepSeek `reasoning_content`, Anthropic thinking
/// blocks and their signatures, Gemini thought signatures).
///
/// It is opaque to the loop: the backend that produced it reads `data` back when it builds the
/// next request; other backends drop it. `text` is the human-readable part, if any.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct Reasoning {
    /// The provider that produced it (`deepseek`, `anthropic`, ...).
    pub provider: String,
    /// The readable reasoning text, if the provider exposes one.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub text: Option<String>,
    /// Whatever the provider needs back, exactly as it sent it.
    #[serde(default, skip_serializing_if = "Value::is_null")]
    pub data: Value,
}

/// A tool call requested by the model.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct ToolCall {
    /// The provider's id for this call; the result must carry the same id.
    pub id: String,
    /// The tool's name, as the model wrote it (it may name no real tool).
    pub name: String,
    /// The arguments as raw JSON text, exactly as the model produced them. They may be invalid
    /// JSON; the loop reports that back to the model instead of failing.
    pub arguments: String,
}

impl ToolCall {
    /// A tool call whose arguments are the given JSON value.
    pub fn new(id: impl Into<String>, name: impl Into<String>, arguments: &Value) -> Self {
        ToolCall {
            id: id.into(),
            name: name.into(),
            arguments: arguments.to_string(),
        }
    }

    /// A tool call with raw argument text (possibly invalid JSON).
    pub fn raw(
        id: impl Into<String>,
        name: impl Into<String>,
        arguments: impl Into<String>,
    ) -> Self {
        ToolCall {
            id: id.into(),
            name: name.into(),
            arguments: arguments.into(),
        }
    }

    /// Parses the arguments. An empty or all-whitespace string means `{}`, as several
    /// providers send it for tools without parameters.
    pub fn parse_arguments(&self) -> Result<Value, serde_json::Error> {
        if self.arguments.trim().is_empty() {
            return Ok(Value::Object(Default::default()));
        }
        serde_json::from_str(&self.arguments)
    }
}

/// The answer to one tool call.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct ToolResult {
    /// The id of the call this answers.
    pub call_id: String,
    /// The name of the tool that was called (some providers need it back).
    pub name: String,
    /// What the model reads: the tool's output, or an explanation of what went wrong.
    pub content: String,
    /// True when the call failed; the content then says why.
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub is_error: bool,
}

impl ToolResult {
    /// A successful result.
    pub fn ok(call: &ToolCall, content: impl Into<String>) -> Self {
        ToolResult {
            call_id: call.id.clone(),
            name: call.name.clone(),
            content: content.into(),
            is_error: false,
        }
    }

    /// A failed result whose content tells the model what went wrong.
    pub fn error(call: &ToolCall, content: impl Into<String>) -> Self {
        ToolResult {
            call_id: call.id.clone(),
            name: call.name.clone(),
            content: content.into(),
            is_error: true,
        }
    }
}

/// Token counts for one or more model calls. Adds up with `+` and `+=`.
///
/// `input_tokens` includes `cached_input_tokens`; `output_tokens` includes
/// `reasoning_tokens`. When a provider reports no usage for a call, the run counts an
/// estimate instead of zero and says so with [`estimated`](Self::estimated), so budgets
/// still hold.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Usage {
    /// Prompt tokens, cached ones included.
    pub input_tokens: u64,
    /// Generated tokens, reasoning included.
    pub output_tokens: u64,
    /// The part of `input_tokens` served from the provider's prompt cache.
    #[serde(default)]
    pub cached_input_tokens: u64,
    /// The part of `output_tokens` spent on reasoning.
    #[serde(default)]
    pub reasoning_tokens: u64,
    /// The part of `input_tokens` written to the provider's prompt cache by this call
    /// (Anthropic's `cache_creation_input_tokens`, billed above the plain input price);
    /// reads from the cache are [`cached_input_tokens`](Self::cached_input_tokens).
    #[serde(default, skip_serializing_if = "is_zero")]
    pub cache_write_input_tokens: u64,
    /// `true` when the provider reported no usage for this call (or for one of the calls
    /// added up here) and the counts are an estimate at four characters a token: unknown,
    /// not zero.
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub estimated: bool,
}

fn is_zero(n: &u64) -> bool {
    *n == 0
}

impl Usage {
    /// Input plus output tokens.
    pub fn total_tokens(&self) -> u64 {
        self.input_tokens.saturating_add(self.output_tokens)
    }
}

impl Add for Usage {
    type Output = Usage;
    fn add(mut self, rhs: Usage) -> Usage {
        self += rhs;
        self
    }
}

impl AddAssign for Usage {
    fn add_assign(&mut self, rhs: Usage) {
        self.input_tokens = self.input_tokens.saturating_add(rhs.input_tokens);
        self.output_tokens = self.output_tokens.saturating_add(rhs.output_tokens);
        self.cached_input_tokens = self
            .cached_input_tokens
            .saturating_add(rhs.cached_input_tokens);
        self.reasoning_tokens = self.reasoning_tokens.saturating_add(rhs.reasoning_tokens);
        self.cache_write_input_tokens = self
            .cache_write_input_tokens
            .saturating_add(rhs.cache_write_input_tokens);
        // One estimated part makes the whole sum an estimate.
        self.estimated = self.estimated || rhs.estimated;
    }
}

impl std::iter::Sum for Usage {
    fn sum<I: Iterator<Item = Usage>>(iter: I) -> Usage {
        iter.fold(Usage::default(), Add::add)
    }
}

/// A break of the history invariant: every tool call is answered exactly once, in call
/// order, by the tool messages that directly follow it, and no tool message stands anywhere
/// else.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub enum HistoryError {
    /// A tool call has no result before the next non-tool message (or the end).
    #[error("message {index}: tool call `{call_id}` ({name}) has no result")]
    UnansweredCall {
        /// Index of the assistant message that made the call.
        index: usize,
        /// The call's id.
        call_id: String,
        /// The tool's name.
        name: String,
    },
    /// A tool message answers no pending call (or answers one twice).
    #[error("message {index}: tool result for `{call_id}` answers no pending call")]
    OrphanResult {
        /// Index of the tool message.
        index: usize,
        /// The id it claims to answer.
        call_id: String,
    },
    /// Results are present but not in the order of the calls.
    #[error("message {index}: tool result for `{found}` where the result for `{expected}` was due")]
    OutOfOrder {
        /// Index of the tool message.
        index: usize,
        /// The id whose result was due.
        expected: String,
        /// The id found instead.
        found: String,
    },
    /// Two calls of one assistant message share an id.
    #[error("message {index}: two tool calls share the id `{call_id}`")]
    DuplicateCallId {
        /// Index of the assistant message.
        index: usize,
        /// The repeated id.
        call_id: String,
    },
}

/// Checks the history invariant over a whole conversation.
///
/// ```
/// use agent_core::{check_history, Message, ToolCall, ToolResult, AssistantMessage};
/// let call = ToolCall::raw("c1", "clock", "{}");
/// let mut history = vec![
///     Message::user("time?"),
///     Message::Assistant(AssistantMessage::with_tool_calls("", vec![call.clone()])),
/// ];
/// assert!(check_history(&history).is_err()); // the call is unanswered
/// history.push(Message::Tool(ToolResult::ok(&call, "12:00")));
/// assert!(check_history(&history).is_ok());
/// ```
pub fn check_history(messages: &[Message]) -> Result<(), HistoryError> {
    // The calls of the latest assistant message still waiting for a result, and where the
    // next expected one is.
    let mut pending: Option<(usize, &[ToolCall], usize)> = None;
    for (index, message) in messages.iter().enumerate() {
        if let Message::Tool(result) = message {
            let Some((_, calls, next)) = pending.as_mut() else {
                return Err(HistoryError::OrphanResult {
                    index,
                    call_id: result.call_id.clone(),
                });
            };
            let Some(expected) = calls.get(*next) else {
                return Err(HistoryError::OrphanResult {
                    index,
                    call_id: result.call_id.clone(),
                });
            };
            if expected.id != result.call_id {
                return Err(if calls.iter().any(|c| c.id == result.call_id) {
                    HistoryError::OutOfOrder {
                        index,
                        expected: expected.id.clone(),
                        found: result.call_id.clone(),
                    }
                } else {
                    HistoryError::OrphanResult {
                        index,
                        call_id: result.call_id.clone(),
                    }
                });
            }
            *next += 1;
            continue;
        }
        close_pending(pending.take())?;
        if let Message::Assistant(a) = message
            && !a.tool_calls.is_empty()
        {
            if let Some(call) = first_repeated_id(&a.tool_calls) {
                return Err(HistoryError::DuplicateCallId {
                    index,
                    call_id: call.id.clone(),
                });
            }
            pending = Some((index, &a.tool_calls, 0));
        }
    }
    close_pending(pending)
}

/// The first call whose id an earlier call of the same turn already has. Linear: a turn may
/// hold many calls, and the history is checked before every request.
fn first_repeated_id(calls: &[ToolCall]) -> Option<&ToolCall> {
    if calls.len() <= 8 {
        // Few calls (the usual case): comparing them is cheaper than hashing them.
        return calls
            .iter()
            .enumerate()
            .find(|(i, call)| calls[..*i].iter().any(|c| c.id == call.id))
            .map(|(_, call)| call);
    }
    let mut seen = std::collections::HashSet::with_capacity(calls.len());
    calls.iter().find(|call| !seen.insert(call.id.as_str()))
}

fn close_pending(pending: Option<(usize, &[ToolCall], usize)>) -> Result<(), HistoryError> {
    if let Some((index, calls, next)) = pending
        && let Some(call) = calls.get(next)
    {
        return Err(HistoryError::UnansweredCall {
            index,
            call_id: call.id.clone(),
            name: call.name.clone(),
        });
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn calls(ids: &[&str]) -> (Message, Vec<ToolCall>) {
        let calls: Vec<ToolCall> = ids.iter().map(|id| ToolCall::raw(*id, "t", "{}")).collect();
        (
            Message::Assistant(AssistantMessage::with_tool_calls("", calls.clone())),
            calls,
        )
    }

    #[test]
    fn answered_calls_in_order_pass() {
        let (a, c) = calls(&["1", "2"]);
        let h = vec![
            Message::user("x"),
            a,
            Message::Tool(ToolResult::ok(&c[0], "a")),
            Message::Tool(ToolResult::ok(&c[1], "b")),
            Message::assistant("done"),
        ];
        assert_eq!(check_history(&h), Ok(()));
    }

    #[test]
    fn unanswered_call_before_next_user_message_is_rejected() {
        let (a, c) = calls(&["1", "2"]);
        let h = vec![
            a,
            Message::Tool(ToolResult::ok(&c[0], "a")),
            Message::user("y"),
        ];
        assert!(matches!(
            check_history(&h),
            Err(HistoryError::UnansweredCall { call_id, .. }) if call_id == "2"
        ));
    }

    #[test]
    fn results_out_of_call_order_are_rejected() {
        let (a, c) = calls(&["1", "2"]);
        let h = vec![
            a,
            Message::Tool(ToolResult::ok(&c[1], "b")),
            Message::Tool(ToolResult::ok(&c[0], "a")),
        ];
        assert!(matches!(
            check_history(&h),
            Err(HistoryError::OutOfOrder { .. })
        ));
    }

    #[test]
    fn a_result_answered_twice_or_without_a_call_is_rejected() {
        let (a, c) = calls(&["1"]);
        let twice = vec![
            a,
            Message::Tool(ToolResult::ok(&c[0], "a")),
            Message::Tool(ToolResult::ok(&c[0], "a")),
        ];
        assert!(matches!(
            check_history(&twice),
            Err(HistoryError::OrphanResult { .. })
        ));
        let stray = vec![
            Message::user("x"),
            Message::Tool(ToolResult::ok(&c[0], "a")),
        ];
        assert!(matches!(
            check_history(&stray),
            Err(HistoryError::OrphanResult { .. })
        ));
    }

    #[test]
    fn duplicate_call_ids_are_rejected() {
        let (a, _) = calls(&["1", "1"]);
        assert!(matches!(
            check_history(&[a]),
            Err(HistoryError::DuplicateCallId { .. })
        ));
    }

    #[test]
    fn usage_adds_up() {
        let a = Usage {
            input_tokens: 10,
            output_tokens: 5,
            cached_input_tokens: 2,
            cache_write_input_tokens: 3,
            reasoning_tokens: 1,
            estimated: false,
        };
        let total: Usage = [a, a, a].into_iter().sum();
        assert_eq!(total.input_tokens, 30);
        assert_eq!(total.cached_input_tokens, 6);
        assert_eq!(total.cache_write_input_tokens, 9);
        assert_eq!(total.total_tokens(), 45);
        assert!(!total.estimated);
        let guessed = Usage {
            estimated: true,
            ..a
        };
        assert!(
            (total + guessed).estimated,
            "one estimate makes the sum an estimate"
        );
    }

    #[test]
    fn empty_arguments_mean_an_empty_object() {
        assert_eq!(
            ToolCall::raw("1", "t", " ").parse_arguments().unwrap(),
            json!({})
        );
    }

    #[test]
    fn reasoning_round_trips_unchanged_through_serde() {
        let data =
            json!({"signature": "abc==", "blocks": [{"type": "thinking", "thinking": "hm"}]});
        let m = Message::Assistant(AssistantMessage {
            content: "hi".into(),
            tool_calls: vec![],
            reasoning: Some(Reasoning {
                provider: "anthropic".into(),
                text: Some("hm".into()),
                data: data.clone(),
            }),
        });
        let back: Message = serde_json::from_str(&serde_json::to_string(&m).unwrap()).unwrap();
        assert_eq!(back, m);
        assert_eq!(
            back.as_assistant()
                .unwrap()
                .reasoning
                .as_ref()
                .unwrap()
                .data,
            data
        );
    }
}
