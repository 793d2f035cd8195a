//! [`SchemaDrivenModel`]: a test model that needs no script. It calls each tool the request
//! offers once, with arguments generated from the tool's schema (valid by construction,
//! deterministic for a seed), then answers with a summary of what each call returned: a
//! smoke test for "every tool of my agent can be called".
//!
//! It is a test double, never a real model (its provider is `schema-driven`). It never
//! calls a tool the request does not offer and never sends arguments its schema refuses: a
//! schema it cannot satisfy is a [`ModelError`] naming the tool.

use std::collections::HashSet;
use std::sync::Mutex;

use async_trait::async_trait;

use super::generate::{Rng, valid_value};
use crate::error::{ModelError, ModelErrorKind};
use crate::message::{Message, ToolCall};
use crate::model::{ChatModel, ChatRequest, ChatResponse, ToolChoice};

/// The first line of the summary answer.
pub const SUMMARY_HEADING: &str = "Every offered tool was called once:";

/// A model that calls every offered tool once with generated arguments, one tool a turn in
/// the order offered, then answers with a summary (one line per tool: `- name: ok` or
/// `- name: error: <first line>`).
///
/// ```
/// use std::sync::Arc;
/// use agent_core::{LlmAgent, tool_fn, testing::{SchemaDrivenModel, SUMMARY_HEADING}};
/// # tokio::runtime::Builder::new_multi_thread().enable_all().build().unwrap().block_on(async {
/// #[derive(serde::Deserialize, schemars::JsonSchema)]
/// struct Add { a: i64, b: i64 }
///
/// let model = Arc::new(SchemaDrivenModel::new(42));
/// let agent = LlmAgent::builder(model.clone())
///     .tool(tool_fn("add", "Adds.", |x: Add, _| async move { Ok(x.a + x.b) }))
///     .build()
///     .unwrap();
/// let answer = agent.ask("Try every tool").await.unwrap().text;
/// assert!(answer.starts_with(SUMMARY_HEADING));
/// assert!(answer.contains("- add: ok"));
/// assert_eq!(model.calls().len(), 1);
/// # });
/// ```
#[derive(Debug)]
pub struct SchemaDrivenModel {
    seed: u64,
    calls: Mutex<Vec<ToolCall>>,
}

impl SchemaDrivenModel {
    /// A model whose arguments are deterministic for `seed`.
    pub fn new(seed: u64) -> Self {
        SchemaDrivenModel {
            seed,
            calls: Mutex::new(Vec::new()),
        }
    }

    /// Every call it made so far, in order.
    pub fn calls(&self) -> Vec<ToolCall> {
        self.calls.lock().map(|c| c.clone()).unwrap_or_default()
    }

    fn summary(request: &ChatRequest) -> String {
        let mut lines = vec![SUMMARY_HEADING.to_owned()];
        for message in request.messages.iter() {
            if let Message::Tool(result) = message {
                let first = result.content.lines().next().unwrap_or_default();
                let first: String = first.chars().take(120).collect();
                lines.push(if result.is_error {
                    format!("- {}: error: {first}", result.name)
                } else {
                    format!("- {}: ok", result.name)
                });
            }
        }
        lines.join("\n")
    }
}

#[async_trait]
impl ChatModel for SchemaDrivenModel {
    fn provider(&self) -> &str {
        "schema-driven"
    }

    fn model(&self) -> &str {
        "schema-driven"
    }

    async fn chat(&self, request: &ChatRequest) -> Result<ChatResponse, ModelError> {
        let called: HashSet<&str> = request
            .messages
            .iter()
            .filter_map(|m| match m {
                Message::Assistant(a) => Some(a.tool_calls.iter().map(|c| c.name.as_str())),
                _ => None,
            })
            .flatten()
            .collect();
        let next = match &request.tool_choice {
            ToolChoice::None => None,
            ToolChoice::Tool(name) => request
                .tools
                .iter()
                .find(|t| &t.name == name && !called.contains(t.name.as_str())),
            ToolChoice::Auto | ToolChoice::Required => request
                .tools
                .iter()
                .find(|t| !called.contains(t.name.as_str())),
        };
        let mut response = match next {
            None => ChatResponse::text(Self::summary(request)),
            Some(tool) => {
                let mut rng = Rng::for_name(self.seed, &tool.name);
                let args = valid_value(&tool.parameters, &mut rng).map_err(|e| {
                    ModelError::new(
                        ModelErrorKind::Other,
                        format!("cannot generate arguments for tool `{}`: {e}", tool.name),
                    )
                    .with_provider("schema-driven", "schema-driven")
                })?;
                let mut calls = self.calls.lock().map_err(|_| {
                    ModelError::new(ModelErrorKind::Other, "SchemaDrivenModel lock poisoned")
                })?;
                let call = ToolCall::new(format!("call_{}", calls.len() + 1), &tool.name, &args);
                calls.push(call.clone());
                ChatResponse::tool_calls(vec![call])
            }
        };
        response.fill_missing_usage(request);
        Ok(response)
    }
}
