//! Errors as values: what failed, where, and whether trying again can help.
//!
//! The lower layers' errors live here: [`ModelError`] (a chat backend failed), [`ToolError`]
//! (a tool refused or failed; it has one text for the model and one for the operator),
//! [`MemoryError`] and [`ToolSetError`]. A run's own error, [`AgentError`], lives beside the
//! run (`run/outcome.rs`) and is re-exported here under its old path; nothing in this file
//! depends on the run. Nothing here may hold or print a secret.

use std::fmt;
use std::time::Duration;

// The old path of the run's errors (a re-export only: nothing in this module uses them).
#[doc(no_inline)]
pub use crate::run::{AgentError, PartialRun};

/// What kind of failure a model call met; decides whether a retry can help.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, serde::Serialize, serde::Deserialize)]
#[serde(rename_all = "snake_case")]
#[non_exhaustive]
pub enum ModelErrorKind {
    /// The key is missing, invalid or revoked (401/403). Never retried.
    Authentication,
    /// The key may not use this model or endpoint (403). Never retried.
    PermissionDenied,
    /// Billing: credits or quota exhausted (402, OpenAI's `insufficient_quota`). Never retried.
    QuotaExceeded,
    /// The request was refused as malformed (400/422). Never retried.
    BadRequest,
    /// The conversation is longer than the model's context window.
    ContextLengthExceeded,
    /// The model or endpoint does not exist (404).
    NotFound,
    /// Too many requests (429). Retried after the provider's `retry-after`.
    RateLimited,
    /// The provider is overloaded (503/529). Retried.
    Overloaded,
    /// The provider failed (500/502/504). Retried.
    Server,
    /// The request timed out. Retried.
    Timeout,
    /// The connection failed or dropped. Retried.
    Connection,
    /// The provider answered something we could not understand.
    InvalidResponse,
    /// A stream ended or broke before it was complete.
    StreamInterrupted,
    /// The call was cancelled by the caller.
    Cancelled,
    /// The model is not configured (unknown provider, missing key, bad model string).
    Configuration,
    /// The request holds something this backend or model cannot take (an image for a
    /// text-only model, a document where only images are read). Refused before it is
    /// sent; never retried.
    Unsupported,
    /// Anything else.
    Other,
}

impl ModelErrorKind {
    /// Whether a retry of the same request can succeed.
    pub fn is_retryable(self) -> bool {
        matches!(
            self,
            ModelErrorKind::RateLimited
                | ModelErrorKind::Overloaded
                | ModelErrorKind::Server
                | ModelErrorKind::Timeout
                | ModelErrorKind::Connection
        )
    }
}

/// A chat backend failed.
///
/// It carries the provider, model, HTTP status and the provider's own error code and message,
/// but never the API key.
///
/// ```
/// use agent_core::{ModelError, ModelErrorKind};
/// let e = ModelError::new(ModelErrorKind::RateLimited, "slow down")
///     .with_provider("openai", "gpt-4o-mini")
///     .with_status(429);
/// assert!(e.is_retryable());
/// assert_eq!(e.to_string(), "openai:gpt-4o-mini: rate limited (HTTP 429): slow down");
/// ```
#[derive(Clone, Debug, PartialEq)]
pub struct ModelError {
    /// What kind of failure this is.
    pub kind: ModelErrorKind,
    /// The provider (`openai`, `anthropic`, ...), empty when unknown.
    pub provider: String,
    /// The model name, empty when unknown.
    pub model: String,
    /// The HTTP status, if the failure came with one.
    pub status: Option<u16>,
    /// The provider's error code or type (`rate_limit_exceeded`, `overloaded_error`, ...).
    pub code: Option<String>,
    /// What went wrong, in the provider's words where it gave some.
    pub message: String,
    /// How long the provider asked us to wait before retrying.
    pub retry_after: Option<Duration>,
}

impl ModelError {
    /// A new error of a kind with a message.
    pub fn new(kind: ModelErrorKind, message: impl Into<String>) -> Self {
        ModelError {
            kind,
            provider: String::new(),
            model: String::new(),
            status: None,
            code: None,
            message: message.into(),
            retry_after: None,
        }
    }

    /// Names the provider and model.
    pub fn with_provider(mut self, provider: impl Into<String>, model: impl Into<String>) -> Self {
        self.provider = provider.into();
        self.model = model.into();
        self
    }

    /// Sets the HTTP status.
    pub fn with_status(mut self, status: u16) -> Self {
        self.status = Some(status);
        self
    }

    /// Sets the provider's error code.
    pub fn with_code(mut self, code: impl Into<String>) -> Self {
        self.code = Some(code.into());
        self
    }

    /// Sets how long the provider asked us to wait.
    pub fn with_retry_after(mut self, wait: Duration) -> Self {
        self.retry_after = Some(wait);
        self
    }

    /// Whether retrying the same request can help.
    pub fn is_retryable(&self) -> bool {
        self.kind.is_retryable()
    }
}

impl fmt::Display for ModelError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match (self.provider.is_empty(), self.model.is_empty()) {
            (false, false) => write!(f, "{}:{}: ", self.provider, self.model)?,
            (false, true) => write!(f, "{}: ", self.provider)?,
            _ => {}
        }
        let kind = match self.kind {
            ModelErrorKind::Authentication => "authentication failed",
            ModelErrorKind::PermissionDenied => "permission denied",
            ModelErrorKind::QuotaExceeded => "quota exceeded",
            ModelErrorKind::BadRequest => "bad request",
            ModelErrorKind::ContextLengthExceeded => "context length exceeded",
            ModelErrorKind::NotFound => "not found",
            ModelErrorKind::RateLimited => "rate limited",
            ModelErrorKind::Overloaded => "overloaded",
            ModelErrorKind::Server => "server error",
            ModelErrorKind::Timeout => "timed out",
            ModelErrorKind::Connection => "connection failed",
            ModelErrorKind::InvalidResponse => "invalid response",
            ModelErrorKind::StreamInterrupted => "stream interrupted",
            ModelErrorKind::Cancelled => "cancelled",
            ModelErrorKind::Configuration => "not configured",
            ModelErrorKind::Unsupported => "unsupported input",
            ModelErrorKind::Other => "model error",
        };
        f.write_str(kind)?;
        match (self.status, &self.code) {
            (Some(s), Some(c)) => write!(f, " (HTTP {s}, {c})")?,
            (Some(s), None) => write!(f, " (HTTP {s})")?,
            (None, Some(c)) => write!(f, " ({c})")?,
            (None, None) => {}
        }
        if !self.message.is_empty() {
            write!(f, ": {}", self.message)?;
        }
        Ok(())
    }
}

impl std::error::Error for ModelError {}

/// What kind of failure a tool call met.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, serde::Serialize, serde::Deserialize)]
#[serde(rename_all = "snake_case")]
#[non_exhaustive]
pub enum ToolErrorKind {
    /// The arguments were not valid JSON, not an object, or broke the schema.
    InvalidArguments,
    /// The model named a tool that does not exist.
    NotFound,
    /// The tool took longer than its timeout.
    Timeout,
    /// The run was cancelled while the tool ran.
    Cancelled,
    /// The tool refused: the action is outside what it is allowed to do.
    PermissionDenied,
    /// The tool panicked; the panic was contained.
    Panicked,
    /// The tool ran and failed.
    Failed,
    /// What the tool relies on is gone: an MCP server that exited or closed the connection.
    Unavailable,
}

/// A tool refused or failed.
///
/// It has two texts: `message` is fed back to the model and should tell it what to fix;
/// `detail` is for the operator's logs and may say more (never a secret).
///
/// ```
/// use agent_core::{ToolError, ToolErrorKind};
/// let e = ToolError::invalid_arguments("`expression` must not be empty");
/// assert_eq!(e.kind, ToolErrorKind::InvalidArguments);
/// assert!(e.retryable);
/// ```
#[derive(Clone, Debug, PartialEq, thiserror::Error)]
#[error("{message}")]
pub struct ToolError {
    /// What kind of failure this is.
    pub kind: ToolErrorKind,
    /// The text the model reads.
    pub message: String,
    /// More detail for the operator; not sent to the model.
    pub detail: Option<String>,
    /// Whether the model can succeed by calling again (with other arguments, or later).
    pub retryable: bool,
}

impl ToolError {
    /// A new error; `retryable` defaults to true except for permission refusals.
    pub fn new(kind: ToolErrorKind, message: impl Into<String>) -> Self {
        ToolError {
            kind,
            message: message.into(),
            detail: None,
            retryable: !matches!(
                kind,
                ToolErrorKind::PermissionDenied | ToolErrorKind::Cancelled
            ),
        }
    }

    /// The arguments were wrong; the message says how to fix them.
    pub fn invalid_arguments(message: impl Into<String>) -> Self {
        Self::new(ToolErrorKind::InvalidArguments, message)
    }

    /// The tool ran and failed.
    pub fn failed(message: impl Into<String>) -> Self {
        Self::new(ToolErrorKind::Failed, message)
    }

    /// The tool refused an action it is not allowed to take.
    pub fn permission_denied(message: impl Into<String>) -> Self {
        Self::new(ToolErrorKind::PermissionDenied, message)
    }

    /// Adds detail for the operator.
    pub fn with_detail(mut self, detail: impl Into<String>) -> Self {
        self.detail = Some(detail.into());
        self
    }

    /// Marks whether calling again can help.
    pub fn with_retryable(mut self, retryable: bool) -> Self {
        self.retryable = retryable;
        self
    }
}

/// A memory store failed.
#[derive(Debug, thiserror::Error)]
#[error("memory store failed: {message}")]
pub struct MemoryError {
    /// What failed.
    pub message: String,
    /// The underlying cause, if any.
    #[source]
    pub source: Option<Box<dyn std::error::Error + Send + Sync>>,
}

impl MemoryError {
    /// A memory error with a message.
    pub fn new(message: impl Into<String>) -> Self {
        MemoryError {
            message: message.into(),
            source: None,
        }
    }
}

/// A tool set could not be built.
#[derive(Clone, Debug, PartialEq, thiserror::Error)]
#[non_exhaustive]
pub enum ToolSetError {
    /// Two tools share a name; the model could not tell them apart.
    #[error("two tools are named `{0}`; tool names must be unique")]
    DuplicateName(String),
    /// The name has characters or a length providers reject.
    #[error("tool name `{0}` is invalid: use 1 to 64 characters from a-z, A-Z, 0-9, `_` and `-`")]
    InvalidName(String),
    /// The tool has no description, so a model cannot tell when to use it (an agent made a
    /// tool without [`LlmAgentBuilder::description`](crate::LlmAgentBuilder::description)).
    #[error(
        "tool `{0}` has no description: a model cannot tell when to use it; describe it (for an agent, `.description(..)` on its builder)"
    )]
    MissingDescription(String),
    /// The parameters are not a JSON Schema for an object.
    #[error("tool `{tool}` has an invalid parameter schema: {reason}")]
    InvalidSchema {
        /// The tool.
        tool: String,
        /// What is wrong with the schema.
        reason: String,
    },
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn retryability_follows_the_kind() {
        for kind in [
            ModelErrorKind::RateLimited,
            ModelErrorKind::Overloaded,
            ModelErrorKind::Server,
            ModelErrorKind::Timeout,
            ModelErrorKind::Connection,
        ] {
            assert!(kind.is_retryable(), "{kind:?}");
        }
        for kind in [
            ModelErrorKind::Authentication,
            ModelErrorKind::BadRequest,
            ModelErrorKind::ContextLengthExceeded,
            ModelErrorKind::NotFound,
            ModelErrorKind::Configuration,
        ] {
            assert!(!kind.is_retryable(), "{kind:?}");
        }
    }

    #[test]
    fn display_names_provider_status_and_code() {
        let e = ModelError::new(ModelErrorKind::Overloaded, "try later")
            .with_provider("anthropic", "claude-sonnet-4-5")
            .with_status(529)
            .with_code("overloaded_error");
        assert_eq!(
            e.to_string(),
            "anthropic:claude-sonnet-4-5: overloaded (HTTP 529, overloaded_error): try later"
        );
    }
}
