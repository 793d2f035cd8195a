//! Typed answers: a Rust type as the result of a run.
//!
//! Ask for any `T: DeserializeOwned + JsonSchema`, per call ([`LlmAgent::ask_as`],
//! [`LlmAgent::run_as`]) or for every run of an agent ([`LlmAgentBuilder::output_type`]).
//! The answer goes through three checks, in order: the JSON Schema of `T` (each problem
//! named by its JSON pointer), deserialising into `T`, then your validators. A failure goes
//! back to the model, within a retry budget kept in the run's state; past it the run fails
//! with [`AgentError::InvalidOutput`], which carries every attempt's error and the history.
//! How the model is asked depends on the backend ([`OutputMode`]); doc comments of `T`'s
//! fields become the schema's descriptions.
//!
//! ```
//! use std::sync::Arc;
//! use agent_core::{LlmAgent, testing::ScriptedModel};
//!
//! /// A person mentioned in the text.
//! #[derive(serde::Deserialize, schemars::JsonSchema, Debug)]
//! struct Person {
//!     /// Their full name.
//!     name: String,
//!     age: u32,
//! }
//!
//! # tokio::runtime::Builder::new_current_thread().enable_all().build().unwrap().block_on(async {
//! let model = Arc::new(ScriptedModel::new().then_text(r#"{"name": "Ada Lovelace", "age": 36}"#));
//! let agent = LlmAgent::builder(model).build()?;
//! let person: Person = agent.ask_as("Ada Lovelace died at 36.").await?.value;
//! assert_eq!(person.age, 36);
//! # Ok::<(), Box<dyn std::error::Error>>(())
//! # }).unwrap();
//! ```
//!
//! This module never performs I/O and never knows a provider: the run's state machine
//! shapes requests and checks answers; the backends put `response_format` on their wire.
//!
//! [`LlmAgent::ask_as`]: crate::LlmAgent::ask_as
//! [`LlmAgent::run_as`]: crate::LlmAgent::run_as
//! [`LlmAgentBuilder::output_type`]: crate::LlmAgentBuilder::output_type
//! [`AgentError::InvalidOutput`]: crate::AgentError::InvalidOutput

mod spec;
mod typed;

use std::fmt;
use std::marker::PhantomData;
use std::sync::Arc;

use schemars::JsonSchema;
use serde::de::DeserializeOwned;
use serde_json::Value;

pub use spec::{
    FINAL_ANSWER_TOOL, OutputMode, OutputSpec, answer_schema, extract_json, strict_problem,
};
pub use typed::{TypedAgent, TypedAgentBuilder, TypedEvent, TypedResult};

use crate::model::Capabilities;
use crate::run::AgentError;
use crate::schema::schema_for;

/// Why an answer type cannot be asked for as configured (see
/// [`AgentError::OutputSchema`], which a run returns for it).
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
#[error("{0}")]
pub struct OutputSchemaError(pub String);

impl From<OutputSchemaError> for AgentError {
    fn from(error: OutputSchemaError) -> Self {
        AgentError::OutputSchema(error.0)
    }
}

/// The default number of times an invalid answer goes back to the model.
pub const DEFAULT_OUTPUT_RETRIES: u32 = 2;

type Validator<T> = Arc<dyn Fn(&T) -> Result<(), String> + Send + Sync>;

/// How to ask for an answer of type `T`: the mode, the retry budget, strictness, and
/// validators that check the value once it deserialised.
///
/// ```
/// use agent_core::output::{Output, OutputMode};
/// #[derive(serde::Deserialize, schemars::JsonSchema)]
/// struct Invoice { total_cents: u64 }
/// let output = Output::<Invoice>::new()
///     .mode(OutputMode::Tool)
///     .max_retries(1)
///     .validate(|i| if i.total_cents > 0 { Ok(()) } else { Err("the total must be positive".into()) });
/// # drop(output);
/// ```
#[must_use]
pub struct Output<T> {
    mode: OutputMode,
    max_retries: u32,
    allow_non_strict: bool,
    validators: Vec<Validator<T>>,
    _type: PhantomData<fn() -> T>,
}

impl<T> Clone for Output<T> {
    fn clone(&self) -> Self {
        Output {
            mode: self.mode,
            max_retries: self.max_retries,
            allow_non_strict: self.allow_non_strict,
            validators: self.validators.clone(),
            _type: PhantomData,
        }
    }
}

impl<T> fmt::Debug for Output<T> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Output")
            .field("type", &std::any::type_name::<T>())
            .field("mode", &self.mode)
            .field("max_retries", &self.max_retries)
            .field("allow_non_strict", &self.allow_non_strict)
            .field("validators", &self.validators.len())
            .finish()
    }
}

impl<T: DeserializeOwned + JsonSchema> Default for Output<T> {
    fn default() -> Self {
        Self::new()
    }
}

impl<T: DeserializeOwned + JsonSchema> Output<T> {
    /// An answer of type `T`: mode [`OutputMode::Auto`], [`DEFAULT_OUTPUT_RETRIES`] retries,
    /// strict, no validators.
    pub fn new() -> Self {
        Output {
            mode: OutputMode::Auto,
            max_retries: DEFAULT_OUTPUT_RETRIES,
            allow_non_strict: false,
            validators: Vec::new(),
            _type: PhantomData,
        }
    }

    /// How the model is asked (default [`OutputMode::Auto`]).
    pub fn mode(mut self, mode: OutputMode) -> Self {
        self.mode = mode;
        self
    }

    /// How many times an invalid answer goes back to the model (default 2).
    pub fn max_retries(mut self, retries: u32) -> Self {
        self.max_retries = retries;
        self
    }

    /// Lets a type that strict structured output cannot express (a map field) be asked for
    /// without strictness in [`OutputMode::Native`], instead of failing with
    /// [`AgentError::OutputSchema`] naming the field. The answer is still validated here.
    pub fn allow_non_strict(mut self) -> Self {
        self.allow_non_strict = true;
        self
    }

    /// Checks the deserialised value; `Err(message)` sends the model back with the message
    /// (within the retry budget). Validators run in the order added.
    pub fn validate(
        mut self,
        check: impl Fn(&T) -> Result<(), String> + Send + Sync + 'static,
    ) -> Self {
        self.validators.push(Arc::new(check));
        self
    }

    /// The spec of a run on a model with these capabilities, with or without other tools:
    /// `Auto` resolved, the schema made ready, strictness decided. Fails when `Native` is
    /// asked of a model without structured output, or of a type strict output cannot
    /// express (unless [`allow_non_strict`](Self::allow_non_strict)).
    pub fn spec(
        &self,
        capabilities: Capabilities,
        has_tools: bool,
    ) -> Result<OutputSpec, OutputSchemaError> {
        let (schema, wrapped) = answer_schema(schema_for::<T>());
        let mode = match self.mode {
            OutputMode::Auto if has_tools && capabilities.tools => OutputMode::Tool,
            OutputMode::Auto if capabilities.structured_output => OutputMode::Native,
            OutputMode::Auto if capabilities.tools => OutputMode::Tool,
            OutputMode::Auto => OutputMode::Prompted,
            chosen => chosen,
        };
        if mode == OutputMode::Native && !capabilities.structured_output {
            return Err(OutputSchemaError(
                "this model does not constrain its output to a schema \
                 (`Capabilities::structured_output`); use `OutputMode::Tool` or \
                 `OutputMode::Prompted`"
                    .into(),
            ));
        }
        let problem = strict_problem(&schema);
        if let (OutputMode::Native, Some(problem), false) = (mode, &problem, self.allow_non_strict)
        {
            return Err(OutputSchemaError(format!(
                "{problem}; use a struct with named fields there, or allow non-strict output \
                 (`Output::allow_non_strict`)"
            )));
        }
        Ok(OutputSpec {
            name: type_name::<T>(),
            schema,
            wrapped,
            strict: problem.is_none(),
            mode,
            max_retries: self.max_retries,
        })
    }

    /// Reads a checked answer into `T` and runs the validators; the error is written for the
    /// model.
    pub fn accept(&self, value: &Value) -> Result<T, String> {
        let typed = T::deserialize(value)
            .map_err(|e| format!("Your answer follows the schema but could not be read: {e}."))?;
        for validator in &self.validators {
            validator(&typed).map_err(|e| format!("Your answer was refused: {e}"))?;
        }
        Ok(typed)
    }
}

/// A schema name providers accept (`[a-zA-Z0-9_-]`, at most 64): the type's own name.
fn type_name<T: JsonSchema>() -> String {
    let name: String = T::schema_name()
        .chars()
        .map(|c| {
            if c.is_ascii_alphanumeric() || c == '-' {
                c
            } else {
                '_'
            }
        })
        .take(64)
        .collect();
    if name.is_empty() {
        "answer".into()
    } else {
        name
    }
}
