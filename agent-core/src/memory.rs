//! Conversation memory: where a session's messages are kept between runs, and which of them
//! are sent to the model.
//!
//! A [`Memory`] stores; a [`ContextPolicy`] selects. A policy never cuts between a tool call
//! and its result, so whatever it keeps still passes [`check_history`](crate::check_history).

use std::collections::HashMap;
use std::sync::Mutex;

use async_trait::async_trait;

use crate::error::MemoryError;
use crate::message::Message;

/// A store of conversations, keyed by session id.
///
/// `append` is called once per finished run with all the messages the run added (the user
/// input, every model turn and tool result), so a store that writes them atomically never
/// holds half a turn.
#[async_trait]
pub trait Memory: Send + Sync {
    /// All messages of a session, oldest first (empty for a new session).
    async fn load(&self, session: &str) -> Result<Vec<Message>, MemoryError>;

    /// Appends messages to a session.
    async fn append(&self, session: &str, messages: &[Message]) -> Result<(), MemoryError>;

    /// Forgets a session.
    async fn clear(&self, session: &str) -> Result<(), MemoryError>;
}

/// Memory in a hash map; gone when the process ends.
///
/// ```
/// # tokio_test_block(async {
/// use agent_core::{InMemoryMemory, Memory, Message};
/// let memory = InMemoryMemory::new();
/// memory.append("s1", &[Message::user("hi")]).await.unwrap();
/// assert_eq!(memory.load("s1").await.unwrap().len(), 1);
/// assert!(memory.load("s2").await.unwrap().is_empty());
/// # });
/// # fn tokio_test_block(f: impl std::future::Future<Output = ()>) {
/// #     tokio::runtime::Builder::new_current_thread().build().unwrap().block_on(f)
/// # }
/// ```
#[derive(Debug, Default)]
pub struct InMemoryMemory {
    sessions: Mutex<HashMap<String, Vec<Message>>>,
}

impl InMemoryMemory {
    /// An empty store.
    pub fn new() -> Self {
        Self::default()
    }

    fn lock(
        &self,
    ) -> Result<std::sync::MutexGuard<'_, HashMap<String, Vec<Message>>>, MemoryError> {
        self.sessions
            .lock()
            .map_err(|_| MemoryError::new("in-memory store lock poisoned by a panic"))
    }
}

#[async_trait]
impl Memory for InMemoryMemory {
    async fn load(&self, session: &str) -> Result<Vec<Message>, MemoryError> {
        Ok(self.lock()?.get(session).cloned().unwrap_or_default())
    }

    async fn append(&self, session: &str, messages: &[Message]) -> Result<(), MemoryError> {
        self.lock()?
            .entry(session.to_owned())
            .or_default()
            .extend_from_slice(messages);
        Ok(())
    }

    async fn clear(&self, session: &str) -> Result<(), MemoryError> {
        self.lock()?.remove(session);
        Ok(())
    }
}

/// Chooses which stored messages go into the model's context.
pub trait ContextPolicy: Send + Sync + std::fmt::Debug {
    /// The index of the first message to keep; everything from there on is sent.
    fn start(&self, history: &[Message]) -> usize;
}

/// Sends the whole history.
#[derive(Clone, Copy, Debug, Default)]
pub struct KeepAll;

impl ContextPolicy for KeepAll {
    fn start(&self, _history: &[Message]) -> usize {
        0
    }
}

/// Sends at most the last `max_messages` messages, starting at a clean boundary: the window
/// never begins with a tool result (which would separate it from its call), and prefers to
/// begin at a user message.
///
/// ```
/// use agent_core::{ContextPolicy, Message, SlidingWindow};
/// let history: Vec<Message> = (0..10).map(|i| Message::user(format!("m{i}"))).collect();
/// assert_eq!(SlidingWindow::new(4).start(&history), 6);
/// ```
#[derive(Clone, Copy, Debug)]
pub struct SlidingWindow {
    max_messages: usize,
}

impl SlidingWindow {
    /// A window of at most `max_messages` messages (at least 1).
    pub fn new(max_messages: usize) -> Self {
        SlidingWindow {
            max_messages: max_messages.max(1),
        }
    }
}

impl ContextPolicy for SlidingWindow {
    fn start(&self, history: &[Message]) -> usize {
        let naive = history.len().saturating_sub(self.max_messages);
        // The first user message at or after the cut is the cleanest start.
        if let Some(offset) = history[naive..]
            .iter()
            .position(|m| matches!(m, Message::User { .. }))
        {
            return naive + offset;
        }
        // No user message in the window: start at the first message that is not a tool
        // result, so no result loses its call.
        history[naive..]
            .iter()
            .position(|m| !matches!(m, Message::Tool(_)))
            .map_or(history.len(), |offset| naive + offset)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::message::{AssistantMessage, ToolCall, ToolResult, check_history};

    fn tool_turn(id: &str) -> Vec<Message> {
        let call = ToolCall::raw(id, "t", "{}");
        vec![
            Message::Assistant(AssistantMessage::with_tool_calls("", vec![call.clone()])),
            Message::Tool(ToolResult::ok(&call, "r")),
        ]
    }

    #[test]
    fn sliding_window_never_separates_a_call_from_its_result() {
        let mut h = vec![Message::user("q1")];
        h.extend(tool_turn("a"));
        h.extend(tool_turn("b"));
        h.push(Message::assistant("a1"));
        h.push(Message::user("q2"));
        h.extend(tool_turn("c"));
        h.push(Message::assistant("a2"));
        for max in 1..=h.len() {
            let start = SlidingWindow::new(max).start(&h);
            assert!(
                check_history(&h[start..]).is_ok(),
                "window of {max} starts at {start}"
            );
            assert!(h.len() - start <= max || start == h.len());
        }
    }

    #[test]
    fn sliding_window_prefers_to_start_at_a_user_message() {
        let mut h = vec![Message::user("q1")];
        h.extend(tool_turn("a"));
        h.push(Message::assistant("a1"));
        h.push(Message::user("q2"));
        h.push(Message::assistant("a2"));
        assert_eq!(SlidingWindow::new(4).start(&h), 4);
    }

    #[tokio::test]
    async fn in_memory_store_keeps_sessions_apart() {
        let m = InMemoryMemory::new();
        m.append("a", &[Message::user("1")]).await.unwrap();
        m.append("b", &[Message::user("2")]).await.unwrap();
        m.append("a", &[Message::assistant("3")]).await.unwrap();
        assert_eq!(m.load("a").await.unwrap().len(), 2);
        m.clear("a").await.unwrap();
        assert!(m.load("a").await.unwrap().is_empty());
        assert_eq!(m.load("b").await.unwrap().len(), 1);
    }
}
