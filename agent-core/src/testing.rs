//! Test kit: [`ScriptedModel`], a fake chat model that answers from a script;
//! [`call_tool`], which calls one tool with JSON arguments as a run would; [`CassetteModel`],
//! which records real sessions and replays them offline; [`SchemaDrivenModel`], which calls
//! every offered tool once with arguments generated from its schema.
//!
//! Not in the prelude: a test double has no place in every program's namespace.
//!
//! It is for your own tests (and for the examples' offline mode), never a real model: its
//! provider is `scripted`. It records every request so tests can assert on what the agent
//! sent, and [`ScriptedModel::assert_complete`] checks the whole script was used.

pub mod cassette;
mod generate;
mod schema_model;

pub use cassette::{
    CASSETTE_MODE_VAR, CassetteBuilder, CassetteError, CassetteMode, CassetteModel,
};
pub use schema_model::{SUMMARY_HEADING, SchemaDrivenModel};

use std::collections::VecDeque;
use std::fmt;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};

use async_trait::async_trait;
use serde_json::Value;

use crate::error::{ModelError, ModelErrorKind, ToolError};
use crate::message::ToolCall;
use crate::model::{ChatModel, ChatRequest, ChatResponse};
use crate::tool::{Tool, ToolContext, ToolOutput, ToolSet};

type ReplyFn = Box<dyn Fn(&ChatRequest) -> Result<ChatResponse, ModelError> + Send + Sync>;

/// One step of a script.
pub enum Step {
    /// Answer with this response.
    Respond(ChatResponse),
    /// Fail with this error.
    Fail(ModelError),
    /// Build the answer from the request (for example from the last tool result).
    Reply(ReplyFn),
}

impl fmt::Debug for Step {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Step::Respond(r) => f.debug_tuple("Respond").field(r).finish(),
            Step::Fail(e) => f.debug_tuple("Fail").field(e).finish(),
            Step::Reply(_) => f.write_str("Reply(..)"),
        }
    }
}

/// A chat model that plays a script, one step per request, and records the requests.
///
/// Tool-call ids are generated (`call_1`, `call_2`, ... across the whole script) unless a
/// step gives its own. Usage is estimated at four characters a token, so budgets have
/// something to count.
///
/// ```
/// use std::sync::Arc;
/// use agent_core::{LlmAgent, ToolError, tool_fn, testing::ScriptedModel};
/// use serde_json::json;
/// # tokio::runtime::Builder::new_multi_thread().enable_all().build().unwrap().block_on(async {
/// #[derive(serde::Deserialize, schemars::JsonSchema)]
/// struct Add { a: i64, b: i64 }
///
/// let model = Arc::new(
///     ScriptedModel::new()
///         .then_tool_call("add", json!({"a": 2, "b": 3}))
///         .then_reply(|req| {
///             let sum = req.last_tool_results().next().map(|r| r.content.clone()).unwrap_or_default();
///             Ok(agent_core::ChatResponse::text(format!("2 + 3 = {sum}")))
///         }),
/// );
/// let agent = LlmAgent::builder(model.clone())
///     .tool(tool_fn("add", "Adds.", |x: Add, _| async move { Ok(x.a + x.b) }))
///     .build()
///     .unwrap();
/// assert_eq!(agent.ask("2+3?").await.unwrap().text, "2 + 3 = 5");
/// model.assert_complete();
/// assert_eq!(model.requests().len(), 2);
/// # });
/// ```
pub struct ScriptedModel {
    model: String,
    steps: Mutex<VecDeque<Step>>,
    requests: Mutex<Vec<ChatRequest>>,
    next_call_id: AtomicU64,
}

impl fmt::Debug for ScriptedModel {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("ScriptedModel")
            .field("model", &self.model)
            .field("remaining", &self.remaining())
            .finish_non_exhaustive()
    }
}

impl Default for ScriptedModel {
    fn default() -> Self {
        Self::new()
    }
}

impl ScriptedModel {
    /// An empty script (model name `scripted`).
    pub fn new() -> Self {
        Self::named("scripted")
    }

    /// An empty script with a model name of your choice.
    pub fn named(model: impl Into<String>) -> Self {
        ScriptedModel {
            model: model.into(),
            steps: Mutex::new(VecDeque::new()),
            requests: Mutex::new(Vec::new()),
            next_call_id: AtomicU64::new(1),
        }
    }

    /// Adds a step.
    #[must_use]
    pub fn then(self, step: Step) -> Self {
        if let Ok(mut steps) = self.steps.lock() {
            steps.push_back(step);
        }
        self
    }

    /// Answers with text.
    #[must_use]
    pub fn then_text(self, text: impl Into<String>) -> Self {
        self.then(Step::Respond(ChatResponse::text(text)))
    }

    /// Calls one tool with these arguments.
    #[must_use]
    pub fn then_tool_call(self, name: impl Into<String>, args: Value) -> Self {
        self.then_tool_calls([(name.into(), args)])
    }

    /// Calls several tools in one turn.
    pub fn then_tool_calls<N: Into<String>>(
        self,
        calls: impl IntoIterator<Item = (N, Value)>,
    ) -> Self {
        let calls = calls
            .into_iter()
            .map(|(name, args)| ToolCall::new("", name, &args))
            .collect();
        self.then(Step::Respond(ChatResponse::tool_calls(calls)))
    }

    /// Calls a tool with raw argument text, which may be invalid JSON.
    #[must_use]
    pub fn then_raw_tool_call(self, name: impl Into<String>, arguments: impl Into<String>) -> Self {
        self.then(Step::Respond(ChatResponse::tool_calls(vec![
            ToolCall::raw("", name, arguments),
        ])))
    }

    /// Fails with an error.
    #[must_use]
    pub fn then_error(self, error: ModelError) -> Self {
        self.then(Step::Fail(error))
    }

    /// Answers with a complete response.
    #[must_use]
    pub fn then_response(self, response: ChatResponse) -> Self {
        self.then(Step::Respond(response))
    }

    /// Builds the answer from the request.
    pub fn then_reply(
        self,
        reply: impl Fn(&ChatRequest) -> Result<ChatResponse, ModelError> + Send + Sync + 'static,
    ) -> Self {
        self.then(Step::Reply(Box::new(reply)))
    }

    /// Every request received so far, in order.
    pub fn requests(&self) -> Vec<ChatRequest> {
        self.requests.lock().map(|r| r.clone()).unwrap_or_default()
    }

    /// How many steps are left.
    pub fn remaining(&self) -> usize {
        self.steps.lock().map(|s| s.len()).unwrap_or(0)
    }

    /// Panics unless every step of the script was used.
    #[allow(clippy::panic)] // An assertion helper for tests: panicking is its job.
    #[track_caller]
    pub fn assert_complete(&self) {
        let remaining = self.remaining();
        if remaining != 0 {
            panic!(
                "ScriptedModel: {remaining} scripted step(s) were never requested ({} request(s) received)",
                self.requests.lock().map(|r| r.len()).unwrap_or(0)
            );
        }
    }

    fn fill_ids(&self, response: &mut ChatResponse) {
        for call in &mut response.message.tool_calls {
            if call.id.is_empty() {
                let n = self.next_call_id.fetch_add(1, Ordering::Relaxed);
                call.id = format!("call_{n}");
            }
        }
    }
}

#[async_trait]
impl ChatModel for ScriptedModel {
    fn provider(&self) -> &str {
        "scripted"
    }

    fn model(&self) -> &str {
        &self.model
    }

    async fn chat(&self, request: &ChatRequest) -> Result<ChatResponse, ModelError> {
        let received = {
            let mut requests = self.requests.lock().map_err(|_| {
                ModelError::new(ModelErrorKind::Other, "ScriptedModel lock poisoned")
            })?;
            requests.push(request.clone());
            requests.len()
        };
        let step = self
            .steps
            .lock()
            .map_err(|_| ModelError::new(ModelErrorKind::Other, "ScriptedModel lock poisoned"))?
            .pop_front();
        let mut response = match step {
            Some(Step::Respond(response)) => response,
            Some(Step::Fail(error)) => return Err(error),
            Some(Step::Reply(reply)) => reply(request)?,
            None => {
                return Err(ModelError::new(
                    ModelErrorKind::Other,
                    format!("the script has no step left for request #{received}"),
                )
                .with_provider("scripted", self.model.clone()));
            }
        };
        self.fill_ids(&mut response);
        response.fill_missing_usage(request);
        Ok(response)
    }
}

/// Calls one tool as a run would, for tests: checks `args` against the tool's schema (a
/// mismatch is the error the model would read), runs it with a detached context and a 30 s
/// timeout, and returns its output as text.
///
/// ```
/// use agent_core::{ToolErrorKind, testing::call_tool, tool_fn};
/// use serde_json::json;
///
/// #[derive(serde::Deserialize, schemars::JsonSchema)]
/// struct Add { a: i64, b: i64 }
///
/// # tokio::runtime::Builder::new_current_thread().enable_all().build().unwrap().block_on(async {
/// let add = || tool_fn("add", "Adds two integers.", |x: Add, _ctx| async move { Ok(x.a + x.b) });
/// assert_eq!(call_tool(add(), json!({"a": 2, "b": 3})).await.unwrap(), "5");
/// let wrong = call_tool(add(), json!({"a": "two"})).await.unwrap_err();
/// assert_eq!(wrong.kind, ToolErrorKind::InvalidArguments);
/// # });
/// ```
pub async fn call_tool(tool: impl Tool + 'static, args: Value) -> Result<String, ToolError> {
    let name = tool.name().to_owned();
    let tools = ToolSet::new([Arc::new(tool) as Arc<dyn Tool>])
        .map_err(|e| ToolError::invalid_arguments(format!("the tool itself is invalid: {e}")))?;
    let checked = tools.check_call(&ToolCall::new("test-call", &name, &args))?;
    tools
        .invoke(
            &name,
            checked,
            ToolContext::detached(),
            std::time::Duration::from_secs(30),
        )
        .await
        .map(ToolOutput::into_content)
}
