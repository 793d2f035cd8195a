//! Tools: what a model can call.
//!
//! Three ways to write one: implement [`Tool`] (JSON in, JSON out), implement [`TypedTool`]
//! (a typed `Args` struct; the schema is derived), or wrap a closure with [`tool_fn`]. A
//! [`ToolSet`] holds the tools of an agent, checks every call against the tool's schema
//! before the tool sees it, and runs calls contained: a panic, a hang or a cancellation
//! becomes a [`ToolError`], never a crash (see [`ToolSet::invoke`] for what a current-thread
//! runtime cannot contain). This module knows no specific tool.

use std::collections::HashMap;
use std::fmt;
use std::future::Future;
use std::marker::PhantomData;
use std::sync::Arc;
use std::time::Duration;

use async_trait::async_trait;
use schemars::JsonSchema;
use serde::de::DeserializeOwned;
use serde::{Deserialize, Serialize};
use serde_json::Value;
use tokio_util::sync::CancellationToken;

use crate::error::{ToolError, ToolErrorKind, ToolSetError};
use crate::message::ToolCall;
use crate::model::{ToolExample, ToolSpec};
use crate::schema::{ArgumentValidator, schema_for, try_normalize};

/// What calling a tool does to the world; tells approval policies and schedulers what is
/// safe to repeat or run side by side.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum SideEffect {
    /// Only reads.
    ReadOnly,
    /// Changes the world, but calling twice with the same arguments is the same as once.
    Idempotent,
    /// Changes the world.
    #[default]
    SideEffecting,
}

/// How a tool may be scheduled.
///
/// The default is the careful one: side-effecting, run one at a time, the run's default
/// timeout.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct ToolMeta {
    /// What a call does to the world.
    pub side_effect: SideEffect,
    /// Whether calls may run concurrently with other parallel-safe calls of the same turn.
    pub parallel_safe: bool,
    /// How long one call may take; `None` uses the run's default tool timeout.
    pub timeout: Option<Duration>,
    /// Ask the provider to enforce the parameter schema exactly (OpenAI strict mode).
    pub strict: bool,
    /// Pause the run for a human's decision before every call.
    pub needs_approval: bool,
}

impl ToolMeta {
    /// A read-only tool, safe to run in parallel.
    pub fn read_only() -> Self {
        ToolMeta {
            side_effect: SideEffect::ReadOnly,
            parallel_safe: true,
            timeout: None,
            strict: false,
            needs_approval: false,
        }
    }

    /// An idempotent tool (not parallel-safe unless said so).
    pub fn idempotent() -> Self {
        ToolMeta {
            side_effect: SideEffect::Idempotent,
            ..Default::default()
        }
    }

    /// A side-effecting tool, run one call at a time.
    pub fn side_effecting() -> Self {
        ToolMeta::default()
    }

    /// Sets whether calls may run concurrently.
    #[must_use]
    pub fn parallel(mut self, parallel_safe: bool) -> Self {
        self.parallel_safe = parallel_safe;
        self
    }

    /// Pauses the run for a human's decision before every call.
    #[must_use]
    pub fn with_approval(mut self) -> Self {
        self.needs_approval = true;
        self
    }

    /// Asks providers to enforce the schema strictly.
    #[must_use]
    pub fn strict(mut self, strict: bool) -> Self {
        self.strict = strict;
        self
    }

    /// Sets a timeout for one call.
    #[must_use]
    pub fn with_timeout(mut self, timeout: Duration) -> Self {
        self.timeout = Some(timeout);
        self
    }
}

/// What a tool call knows about the run it is part of.
#[derive(Clone, Debug)]
pub struct ToolContext {
    /// The run's id.
    pub run_id: Arc<str>,
    /// The name of the agent running the tool.
    pub agent: Arc<str>,
    /// The id of this call.
    pub call_id: String,
    /// The model call (1 for the first) whose answer made this call.
    pub turn: u32,
    /// Fired when the run is cancelled or the call timed out; long-running tools should
    /// watch it and stop.
    pub cancel: CancellationToken,
    /// The run's budget, for tools that start runs of their own (agents as tools).
    pub budget: Option<Arc<crate::budget::BudgetTracker>>,
    /// For a tool that [nests runs](Tool::nests_runs): the driver's link for this call
    /// (reached through `agent_core::run::NestedLink::of`).
    pub(crate) nested: Option<Arc<dyn std::any::Any + Send + Sync>>,
}

impl ToolContext {
    /// A context outside any run (for calling a tool directly, e.g. in tests).
    pub fn detached() -> Self {
        ToolContext {
            run_id: Arc::from("detached"),
            agent: Arc::from(""),
            call_id: String::from("detached"),
            turn: 0,
            cancel: CancellationToken::new(),
            budget: None,
            nested: None,
        }
    }

    /// A key that names this call, the same every time the call is attempted (after a
    /// crash and a resume, too): `<run id>/<turn>/<call id>`. Pass it to the services a
    /// side-effecting tool calls (an `Idempotency-Key` header, a unique column), so that a
    /// call run again does its work once.
    ///
    /// ```
    /// use agent_core::ToolContext;
    /// let mut ctx = ToolContext::detached();
    /// ctx.turn = 3;
    /// assert_eq!(ctx.idempotency_key(), "detached/3/detached");
    /// ```
    pub fn idempotency_key(&self) -> String {
        format!("{}/{}/{}", self.run_id, self.turn, self.call_id)
    }
}

/// What a tool returns for the model to read.
#[derive(Clone, Debug, PartialEq)]
pub enum ToolOutput {
    /// Text, given to the model as it is.
    Text(String),
    /// JSON, given to the model as compact JSON text.
    Json(Value),
}

impl ToolOutput {
    /// The text the model reads.
    pub fn into_content(self) -> String {
        match self {
            ToolOutput::Text(t) => t,
            ToolOutput::Json(Value::String(s)) => s,
            ToolOutput::Json(v) => v.to_string(),
        }
    }
}

impl From<String> for ToolOutput {
    fn from(s: String) -> Self {
        ToolOutput::Text(s)
    }
}

impl From<&str> for ToolOutput {
    fn from(s: &str) -> Self {
        ToolOutput::Text(s.to_owned())
    }
}

impl From<Value> for ToolOutput {
    fn from(v: Value) -> Self {
        ToolOutput::Json(v)
    }
}

macro_rules! output_from_number {
    ($($t:ty),*) => {$(
        impl From<$t> for ToolOutput {
            fn from(n: $t) -> Self {
                ToolOutput::Json(Value::from(n))
            }
        }
    )*};
}
output_from_number!(i32, i64, u32, u64, f64, bool);

/// A tool in its dynamic form: JSON arguments in, [`ToolOutput`] out.
///
/// Most tools are easier to write as a [`TypedTool`] or with [`tool_fn`]; implement this
/// directly when the schema is only known at run time (an MCP server's tools, say).
#[async_trait]
pub trait Tool: Send + Sync {
    /// The name the model calls it by (1 to 64 of `a-z A-Z 0-9 _ -`).
    fn name(&self) -> &str;

    /// What it does and when to use it, written for the model.
    fn description(&self) -> &str;

    /// The JSON Schema of its arguments (an object schema). Called once, when the tool is
    /// put in a [`ToolSet`].
    fn parameters(&self) -> Value;

    /// How it may be scheduled.
    fn meta(&self) -> ToolMeta {
        ToolMeta::default()
    }

    /// Example tasks and calls, for small models that learn from examples (none by default).
    fn examples(&self) -> Vec<ToolExample> {
        Vec::new()
    }

    /// Whether a call runs an agent of its own whose usage, events and approval pauses the
    /// calling run takes in ([`AgentTool`](crate::AgentTool): `true`). The driver then lends
    /// each call a link for them.
    fn nests_runs(&self) -> bool {
        false
    }

    /// The agent a call of this tool hands the conversation to (a `transfer_to_<name>`
    /// tool of a [`Handoff`](crate::Handoff)); the run's state machine answers such calls
    /// itself, so [`call`](Tool::call) is never reached in a run.
    fn hands_off_to(&self) -> Option<&str> {
        None
    }

    /// Runs the tool. `args` has already been checked against [`parameters`](Tool::parameters).
    async fn call(&self, args: Value, ctx: &ToolContext) -> Result<ToolOutput, ToolError>;
}

/// Tools that can change while an agent lives, such as an MCP server's: an agent given one
/// ([`LlmAgentBuilder::tool_source`](crate::LlmAgentBuilder::tool_source)) looks at
/// [`version`](ToolSource::version) when a run starts and takes the new
/// [`tools`](ToolSource::tools) when it moved.
pub trait ToolSource: Send + Sync {
    /// Changes whenever the tools change.
    fn version(&self) -> u64;
    /// The tools now.
    fn tools(&self) -> Vec<Arc<dyn Tool>>;
}

/// A tool with typed arguments; the schema is derived from `Args` with schemars.
///
/// ```
/// use agent_core::{async_trait, ToolContext, ToolError, ToolOutput, TypedTool};
/// use schemars::JsonSchema;
/// use serde::Deserialize;
///
/// #[derive(Deserialize, JsonSchema)]
/// struct WeatherArgs {
///     /// City name, e.g. "Lyon".
///     city: String,
/// }
///
/// struct Weather;
///
/// #[async_trait]
/// impl TypedTool for Weather {
///     type Args = WeatherArgs;
///     fn name(&self) -> &str { "weather" }
///     fn description(&self) -> &str { "Current weather in a city." }
///     async fn call(&self, args: WeatherArgs, _ctx: &ToolContext) -> Result<ToolOutput, ToolError> {
///         Ok(format!("Sunny in {}", args.city).into())
///     }
/// }
/// ```
#[async_trait]
pub trait TypedTool: Send + Sync + 'static {
    /// The arguments; their doc comments become the schema's descriptions.
    type Args: DeserializeOwned + JsonSchema + Send + 'static;

    /// The name the model calls it by.
    fn name(&self) -> &str;

    /// What it does and when to use it, written for the model.
    fn description(&self) -> &str;

    /// How it may be scheduled.
    fn meta(&self) -> ToolMeta {
        ToolMeta::default()
    }

    /// Example tasks and calls, for small models that learn from examples (none by default).
    fn examples(&self) -> Vec<ToolExample> {
        Vec::new()
    }

    /// Runs the tool.
    async fn call(&self, args: Self::Args, ctx: &ToolContext) -> Result<ToolOutput, ToolError>;
}

#[async_trait]
impl<T: TypedTool> Tool for T {
    fn name(&self) -> &str {
        TypedTool::name(self)
    }
    fn description(&self) -> &str {
        TypedTool::description(self)
    }
    fn parameters(&self) -> Value {
        schema_for::<T::Args>()
    }
    fn meta(&self) -> ToolMeta {
        TypedTool::meta(self)
    }
    fn examples(&self) -> Vec<ToolExample> {
        TypedTool::examples(self)
    }
    async fn call(&self, args: Value, ctx: &ToolContext) -> Result<ToolOutput, ToolError> {
        let args = deserialize_args::<T::Args>(args)?;
        TypedTool::call(self, args, ctx).await
    }
}

fn deserialize_args<A: DeserializeOwned>(args: Value) -> Result<A, ToolError> {
    serde_json::from_value(args).map_err(|e| ToolError::invalid_arguments(format!("{e}")))
}

/// A tool made from a closure; see [`tool_fn`].
pub struct FnTool<A, F> {
    name: String,
    description: String,
    meta: ToolMeta,
    examples: Vec<ToolExample>,
    f: F,
    _args: PhantomData<fn(A)>,
}

impl<A, F> FnTool<A, F> {
    /// Sets how the tool may be scheduled.
    #[must_use]
    pub fn with_meta(mut self, meta: ToolMeta) -> Self {
        self.meta = meta;
        self
    }

    /// Marks the tool read-only and parallel-safe.
    #[must_use]
    pub fn read_only(self) -> Self {
        self.with_meta(ToolMeta::read_only())
    }

    /// Adds an example task and call (see [`ToolExample`]).
    #[must_use]
    pub fn with_example(mut self, task: impl Into<String>, arguments: Value) -> Self {
        self.examples.push(ToolExample::new(task, arguments));
        self
    }
}

impl<A, F> fmt::Debug for FnTool<A, F> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("FnTool")
            .field("name", &self.name)
            .field("meta", &self.meta)
            .finish_non_exhaustive()
    }
}

/// Makes a tool from a name, a description and an async closure over typed arguments.
///
/// ```
/// use agent_core::{tool_fn, ToolError};
/// use schemars::JsonSchema;
/// use serde::Deserialize;
///
/// #[derive(Deserialize, JsonSchema)]
/// struct Add { a: i64, b: i64 }
///
/// let add = tool_fn("add", "Adds two integers.", |args: Add, _ctx| async move {
///     Ok(args.a + args.b)
/// })
/// .read_only();
/// ```
pub fn tool_fn<A, F, Fut, O>(
    name: impl Into<String>,
    description: impl Into<String>,
    f: F,
) -> FnTool<A, F>
where
    A: DeserializeOwned + JsonSchema + Send + 'static,
    F: Fn(A, ToolContext) -> Fut + Send + Sync + 'static,
    Fut: Future<Output = Result<O, ToolError>> + Send + 'static,
    O: Into<ToolOutput>,
{
    FnTool {
        name: name.into(),
        description: description.into(),
        meta: ToolMeta::default(),
        examples: Vec::new(),
        f,
        _args: PhantomData,
    }
}

#[async_trait]
impl<A, F, Fut, O> Tool for FnTool<A, F>
where
    A: DeserializeOwned + JsonSchema + Send + 'static,
    F: Fn(A, ToolContext) -> Fut + Send + Sync + 'static,
    Fut: Future<Output = Result<O, ToolError>> + Send + 'static,
    O: Into<ToolOutput>,
{
    fn name(&self) -> &str {
        &self.name
    }
    fn description(&self) -> &str {
        &self.description
    }
    fn parameters(&self) -> Value {
        schema_of::<A>()
    }
    fn meta(&self) -> ToolMeta {
        self.meta
    }
    fn examples(&self) -> Vec<ToolExample> {
        self.examples.clone()
    }
    async fn call(&self, args: Value, ctx: &ToolContext) -> Result<ToolOutput, ToolError> {
        let args = deserialize_args::<A>(args)?;
        (self.f)(args, ctx.clone()).await.map(Into::into)
    }
}

struct ToolEntry {
    tool: Arc<dyn Tool>,
    meta: ToolMeta,
    validator: Arc<ArgumentValidator>,
}

/// The schema of an argument type, generated once per type in the process (a program has
/// as many as it has types, so the cache is bounded by the code): an agent built per
/// request does not run schemars again.
fn schema_of<A: JsonSchema + 'static>() -> Value {
    static SCHEMAS: std::sync::Mutex<Vec<(std::any::TypeId, Value)>> =
        std::sync::Mutex::new(Vec::new());
    let id = std::any::TypeId::of::<A>();
    // A poisoned lock only means a panic elsewhere; the list is still whole.
    if let Some((_, schema)) = SCHEMAS
        .lock()
        .unwrap_or_else(|p| p.into_inner())
        .iter()
        .find(|(t, _)| *t == id)
    {
        return schema.clone();
    }
    let schema = schema_for::<A>();
    SCHEMAS
        .lock()
        .unwrap_or_else(|p| p.into_inner())
        .push((id, schema.clone()));
    schema
}

/// A checked schema: normalised, its top level an object, compiled.
type CheckedSchema = (Value, Arc<ArgumentValidator>);

/// Normalises and compiles a tool's schema, or takes both from the process's cache of the
/// last [`KEPT_SCHEMAS`] distinct schemas (keyed by their JSON text), so that tool sets built
/// again and again (an agent per request) compile nothing. Errors are not cached.
fn checked_schema(name: &str, raw: Value) -> Result<CheckedSchema, ToolSetError> {
    static CACHE: std::sync::Mutex<SchemaCache> = std::sync::Mutex::new(SchemaCache {
        entries: Vec::new(),
        capacity: KEPT_SCHEMAS,
    });
    let key = raw.to_string();
    // A poisoned lock only means a panic elsewhere; the list is still whole.
    if let Some(hit) = CACHE.lock().unwrap_or_else(|p| p.into_inner()).get(&key) {
        return Ok(hit);
    }
    let parameters = try_normalize(raw).map_err(|e| ToolSetError::InvalidSchema {
        tool: name.to_owned(),
        reason: e.to_string(),
    })?;
    if parameters.get("type").and_then(Value::as_str) != Some("object") {
        return Err(ToolSetError::InvalidSchema {
            tool: name.to_owned(),
            reason: "the top level must be `\"type\": \"object\"`".into(),
        });
    }
    let validator =
        ArgumentValidator::new(&parameters).map_err(|reason| ToolSetError::InvalidSchema {
            tool: name.to_owned(),
            reason,
        })?;
    let checked = (parameters, Arc::new(validator));
    CACHE
        .lock()
        .unwrap_or_else(|p| p.into_inner())
        .put(key, checked.clone());
    Ok(checked)
}

/// Compiled schemas by their JSON text, the oldest dropped past `capacity`.
struct SchemaCache {
    entries: Vec<(String, CheckedSchema)>,
    capacity: usize,
}

impl SchemaCache {
    fn get(&self, key: &str) -> Option<CheckedSchema> {
        self.entries
            .iter()
            .find(|(k, _)| k == key)
            .map(|(_, checked)| checked.clone())
    }

    fn put(&mut self, key: String, checked: CheckedSchema) {
        if self.get(&key).is_some() {
            return;
        }
        if self.entries.len() >= self.capacity {
            // The oldest goes: a stream of new schemas (an MCP server's) cannot grow it.
            self.entries.remove(0);
        }
        self.entries.push((key, checked));
    }
}

/// How many distinct tool schemas the process keeps compiled.
const KEPT_SCHEMAS: usize = 128;

impl ToolEntry {
    fn tool_description(&self) -> Option<&str> {
        Some(self.tool.description()).filter(|d| !d.is_empty())
    }
}

/// The tools of an agent: unique names, schemas compiled once, calls checked and contained.
///
/// ```
/// use std::sync::Arc;
/// use agent_core::{tool_fn, Tool, ToolError, ToolSet};
/// #[derive(serde::Deserialize, schemars::JsonSchema)]
/// struct NoArgs {}
/// let ping = tool_fn("ping", "Answers pong.", |_: NoArgs, _| async { Ok("pong") });
/// let tools = ToolSet::new([Arc::new(ping) as Arc<dyn Tool>]).unwrap();
/// assert_eq!(tools.names().collect::<Vec<_>>(), ["ping"]);
/// ```
#[derive(Clone, Default)]
pub struct ToolSet {
    entries: Arc<[ToolEntry]>,
    index: Arc<HashMap<String, usize>>,
    specs: Arc<[ToolSpec]>,
    approval: Option<ApprovalPolicy>,
}

/// Decides, from a tool's name and its checked arguments (`None` when they are invalid),
/// whether a call needs a human's approval.
pub type ApprovalPolicy = Arc<dyn Fn(&str, Option<&Value>) -> bool + Send + Sync>;

impl fmt::Debug for ToolSet {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_list().entries(self.names()).finish()
    }
}

impl ToolSet {
    /// Builds a tool set. Fails on a duplicate or invalid name, or a schema that is not a
    /// valid object schema.
    pub fn new(tools: impl IntoIterator<Item = Arc<dyn Tool>>) -> Result<Self, ToolSetError> {
        let mut entries = Vec::new();
        let mut specs = Vec::new();
        let mut index = HashMap::new();
        for tool in tools {
            let name = tool.name().to_owned();
            if !valid_tool_name(&name) {
                return Err(ToolSetError::InvalidName(name));
            }
            if index.contains_key(&name) {
                return Err(ToolSetError::DuplicateName(name));
            }
            let (parameters, validator) = checked_schema(&name, tool.parameters())?;
            let meta = tool.meta();
            let examples = tool.examples();
            for (i, example) in examples.iter().enumerate() {
                if let Err(problems) = validator.validate(&example.arguments) {
                    return Err(ToolSetError::InvalidSchema {
                        tool: name,
                        reason: format!(
                            "example {} does not match the parameters: {}",
                            i + 1,
                            problems.join("; ")
                        ),
                    });
                }
            }
            index.insert(name.clone(), entries.len());
            specs.push(ToolSpec {
                name,
                description: tool.description().to_owned(),
                parameters,
                strict: meta.strict,
                examples,
            });
            entries.push(ToolEntry {
                meta,
                tool,
                validator,
            });
        }
        Ok(ToolSet {
            entries: entries.into(),
            index: Arc::new(index),
            specs: specs.into(),
            approval: None,
        })
    }

    /// Adds a policy that can require approval for calls (on top of
    /// [`ToolMeta::needs_approval`]).
    #[must_use]
    pub fn with_approval_policy(mut self, policy: ApprovalPolicy) -> Self {
        self.approval = Some(policy);
        self
    }

    /// Whether a call of this tool with these checked arguments (`None`: invalid) must wait
    /// for a human. Unknown tools never do: there is nothing to approve.
    pub fn needs_approval(&self, name: &str, args: Option<&Value>) -> bool {
        let Some(meta) = self.meta(name) else {
            return false;
        };
        meta.needs_approval
            || self
                .approval
                .as_ref()
                .is_some_and(|policy| policy(name, args))
    }

    /// A set with no tools.
    pub fn empty() -> Self {
        Self::default()
    }

    /// The specs to send to a model, shared (cloning is a reference-count increment).
    pub fn specs(&self) -> &Arc<[ToolSpec]> {
        &self.specs
    }

    /// The tool names, in the order given.
    pub fn names(&self) -> impl Iterator<Item = &str> {
        self.specs.iter().map(|s| s.name.as_str())
    }

    /// How many tools there are.
    pub fn len(&self) -> usize {
        self.entries.len()
    }

    /// Whether there are none.
    pub fn is_empty(&self) -> bool {
        self.entries.is_empty()
    }

    /// The tool with this name.
    pub fn get(&self, name: &str) -> Option<&Arc<dyn Tool>> {
        self.index.get(name).map(|&i| &self.entries[i].tool)
    }

    /// The scheduling metadata of the tool with this name.
    pub fn meta(&self, name: &str) -> Option<ToolMeta> {
        self.index.get(name).map(|&i| self.entries[i].meta)
    }

    /// The description of a tool, by name (for its span).
    pub(crate) fn description(&self, name: &str) -> Option<&str> {
        self.index
            .get(name)
            .and_then(|&i| self.entries[i].tool_description())
    }

    /// Checks a model's call before anything runs: the tool exists, the arguments are valid
    /// JSON, an object, and match the schema. Returns the parsed arguments, or an error whose
    /// message tells the model exactly what to fix.
    pub fn check_call(&self, call: &ToolCall) -> Result<Value, ToolError> {
        let Some(&i) = self.index.get(call.name.as_str()) else {
            let available = if self.specs.is_empty() {
                "none".to_owned()
            } else {
                self.names().collect::<Vec<_>>().join(", ")
            };
            return Err(ToolError::new(
                ToolErrorKind::NotFound,
                format!(
                    "There is no tool named `{}`. Available tools: {available}.",
                    call.name
                ),
            ));
        };
        let args = call.parse_arguments().map_err(|e| {
            ToolError::invalid_arguments(format!(
                "The arguments for `{}` are not valid JSON ({e}). Send one JSON object that \
                 matches the tool's parameters.",
                call.name
            ))
        })?;
        if !args.is_object() {
            return Err(ToolError::invalid_arguments(format!(
                "The arguments for `{}` must be a JSON object, not {}.",
                call.name,
                json_kind(&args)
            )));
        }
        // A run's saved state holds the checked arguments a few levels down, and JSON
        // readers stop at 128 levels: arguments nested deeper could be run but never resumed.
        if nesting(&args) > MAX_ARGUMENT_NESTING {
            return Err(ToolError::invalid_arguments(format!(
                "The arguments for `{}` nest deeper than {MAX_ARGUMENT_NESTING} levels. Send a \
                 flatter JSON object.",
                call.name
            )));
        }
        if let Err(problems) = self.entries[i].validator.validate(&args) {
            return Err(ToolError::invalid_arguments(format!(
                "The arguments for `{}` do not match its parameters:\n- {}",
                call.name,
                problems.join("\n- ")
            )));
        }
        Ok(args)
    }

    /// Runs a checked call, contained: a panic becomes a [`ToolErrorKind::Panicked`] error,
    /// and the call is stopped after its timeout (the tool's own, or `default_timeout`) and
    /// when `ctx.cancel` fires.
    ///
    /// On a multi-thread runtime each call runs on a task of its own, so a tool that blocks
    /// its thread (a synchronous sleep, a CPU loop, a blocking read) still gets its timeout
    /// result on time and does not hold up the calls beside it; the blocked thread itself is
    /// only freed when the tool returns, and `ctx.cancel` is fired so a tool that looks at it
    /// can stop. On a current-thread runtime there is only one thread, and a call runs in
    /// the run's own task: a timeout or a cancellation can only take effect when the tool
    /// awaits, so there a tool must not block (put blocking work in
    /// `tokio::task::spawn_blocking`, where the timeout still applies to the wait).
    pub async fn invoke(
        &self,
        name: &str,
        args: Value,
        ctx: ToolContext,
        default_timeout: Duration,
    ) -> Result<ToolOutput, ToolError> {
        let Some(&i) = self.index.get(name) else {
            return Err(ToolError::new(
                ToolErrorKind::NotFound,
                format!("There is no tool named `{name}`."),
            ));
        };
        let entry = &self.entries[i];
        let timeout = entry.meta.timeout.unwrap_or(default_timeout);
        let cancel = ctx.cancel.clone();
        let call = contained(entry.tool.clone(), args, ctx);
        let outcome = tokio::select! {
            joined = call => joined,
            _ = tokio::time::sleep(timeout) => {
                cancel.cancel();
                return Err(ToolError::new(
                    ToolErrorKind::Timeout,
                    format!("`{name}` did not finish within {} and was stopped.", human_duration(timeout)),
                ));
            }
            _ = cancel.cancelled() => {
                return Err(ToolError::new(
                    ToolErrorKind::Cancelled,
                    format!("`{name}` was stopped because the run was cancelled."),
                ));
            }
        };
        match outcome {
            Ok(result) => result,
            Err(payload) => {
                let detail = panic_message(payload.as_ref());
                Err(ToolError::new(
                    ToolErrorKind::Panicked,
                    format!("`{name}` failed with an internal error."),
                )
                .with_detail(format!("tool `{name}` panicked: {detail}")))
            }
        }
    }
}

type Panic = Box<dyn std::any::Any + Send>;

/// Runs one call with its panic caught: on a task of its own on a multi-thread runtime (so a
/// tool that blocks its thread cannot block the caller), in place on a current-thread one
/// (where a task of its own would share the one thread anyway). The task is aborted when
/// the caller stops waiting.
async fn contained(
    tool: Arc<dyn Tool>,
    args: Value,
    ctx: ToolContext,
) -> Result<Result<ToolOutput, ToolError>, Panic> {
    let multi_thread = tokio::runtime::Handle::try_current().is_ok_and(|h| {
        !matches!(
            h.runtime_flavor(),
            tokio::runtime::RuntimeFlavor::CurrentThread
        )
    });
    if !multi_thread {
        let call = async move { tool.call(args, &ctx).await };
        return futures::FutureExt::catch_unwind(std::panic::AssertUnwindSafe(call)).await;
    }
    // The task goes on in the caller's span (the call's `execute_tool`), so what the tool
    // traces, an agent used as a tool included, nests under it.
    let call = async move { tool.call(args, &ctx).await };
    let mut task = AbortOnDrop(tokio::spawn(tracing::Instrument::in_current_span(call)));
    match (&mut task.0).await {
        Ok(result) => Ok(result),
        Err(error) => match error.try_into_panic() {
            Ok(payload) => Err(payload),
            Err(_) => Ok(Err(ToolError::new(
                ToolErrorKind::Cancelled,
                "the call's task was cancelled before it finished",
            ))),
        },
    }
}

/// A spawned call that nobody waits for any more is aborted (at its next await).
struct AbortOnDrop<T>(tokio::task::JoinHandle<T>);

impl<T> Drop for AbortOnDrop<T> {
    fn drop(&mut self) {
        self.0.abort();
    }
}

fn panic_message(payload: &(dyn std::any::Any + Send)) -> String {
    if let Some(s) = payload.downcast_ref::<&str>() {
        (*s).to_owned()
    } else if let Some(s) = payload.downcast_ref::<String>() {
        s.clone()
    } else {
        "non-string panic payload".to_owned()
    }
}

/// How deep checked arguments may nest (objects and arrays), so that every state that
/// holds them can be saved and read back.
const MAX_ARGUMENT_NESTING: usize = 64;

/// The deepest nesting of objects and arrays in `value` (a scalar is 0), without recursion.
/// How deep a value nests (0 for a scalar). Recursive: the arguments it measures come from
/// the JSON parser, which stops at 128 levels, so the recursion is bounded; it allocates
/// nothing.
fn nesting(value: &Value) -> usize {
    match value {
        Value::Object(map) => 1 + map.values().map(nesting).max().unwrap_or(0),
        Value::Array(items) => 1 + items.iter().map(nesting).max().unwrap_or(0),
        _ => 0,
    }
}

fn json_kind(v: &Value) -> &'static str {
    match v {
        Value::Null => "null",
        Value::Bool(_) => "a boolean",
        Value::Number(_) => "a number",
        Value::String(_) => "a string",
        Value::Array(_) => "an array",
        Value::Object(_) => "an object",
    }
}

/// Formats a duration for a message: `30s`, `1.5s`, `200ms`.
pub(crate) fn human_duration(d: Duration) -> String {
    if d.as_millis() < 1000 {
        format!("{}ms", d.as_millis())
    } else if d.subsec_millis() == 0 {
        format!("{}s", d.as_secs())
    } else {
        format!("{:.1}s", d.as_secs_f64())
    }
}

fn valid_tool_name(name: &str) -> bool {
    (1..=64).contains(&name.len())
        && name
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b == b'_' || b == b'-')
}

#[cfg(test)]
mod schema_cache_tests {
    use super::*;
    use serde_json::json;

    /// A tool with a given schema, for the cache.
    struct Schema(&'static str, Value);

    #[async_trait]
    impl Tool for Schema {
        fn name(&self) -> &str {
            self.0
        }
        fn description(&self) -> &str {
            "a schema"
        }
        fn parameters(&self) -> Value {
            self.1.clone()
        }
        async fn call(&self, _args: Value, _ctx: &ToolContext) -> Result<ToolOutput, ToolError> {
            Ok(ToolOutput::from("ok"))
        }
    }

    fn set(name: &'static str, schema: Value) -> Result<ToolSet, ToolSetError> {
        ToolSet::new([Arc::new(Schema(name, schema)) as Arc<dyn Tool>])
    }

    #[test]
    fn tool_sets_built_again_share_one_compiled_schema() {
        let schema = json!({"type": "object", "properties": {
            "only_in_the_cache_test": {"type": "integer", "minimum": 3}}});
        let a = set("a", schema.clone()).unwrap();
        let b = set("b", schema).unwrap();
        assert!(Arc::ptr_eq(
            &a.entries[0].validator,
            &b.entries[0].validator
        ));
        assert_eq!(a.specs()[0].parameters, b.specs()[0].parameters);
        // The shared validator still judges each set's calls.
        let call = ToolCall::new("id", "b", &json!({"only_in_the_cache_test": 2}));
        assert!(b.check_call(&call).is_err());
    }

    #[test]
    fn an_invalid_schema_is_refused_every_time() {
        for _ in 0..2 {
            let error = set("bad", json!({"type": "array"})).unwrap_err();
            assert!(
                matches!(error, ToolSetError::InvalidSchema { .. }),
                "{error}"
            );
        }
    }

    #[test]
    fn the_cache_keeps_at_most_its_capacity_and_drops_the_oldest() {
        let mut cache = SchemaCache {
            entries: Vec::new(),
            capacity: 3,
        };
        let checked = || {
            let schema = json!({"type": "object"});
            let validator = Arc::new(ArgumentValidator::new(&schema).unwrap());
            (schema, validator)
        };
        for key in ["a", "b", "c", "a", "d"] {
            cache.put(key.to_owned(), checked());
        }
        let keys: Vec<&str> = cache.entries.iter().map(|(k, _)| k.as_str()).collect();
        assert_eq!(keys, ["b", "c", "d"]);
        assert!(cache.get("a").is_none());
    }
}
