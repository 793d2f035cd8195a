//! Secrets: [`ApiKey`], a key that never prints.
//!
//! It sits below the backends and the tools so both can hold keys (a provider's, an MCP
//! server's bearer token, a search API's) without one depending on the other. Nothing here
//! may log, format or compare a secret in a way that leaks it.

use std::fmt;

use reqwest::header::HeaderValue;

use crate::error::{ModelError, ModelErrorKind};

/// An API key. Its `Debug` is redacted and it has no `Display`, so it cannot end up in a
/// log line, an error or a trace by accident.
#[derive(Clone, PartialEq, Eq)]
pub struct ApiKey(String);

impl ApiKey {
    /// Wraps a key.
    pub fn new(key: impl Into<String>) -> Self {
        ApiKey(key.into())
    }

    /// The key itself, for building a request header.
    pub fn expose(&self) -> &str {
        &self.0
    }

    /// A header value holding the key (with an optional prefix such as `Bearer `), marked
    /// sensitive so HTTP tooling does not print it.
    pub fn header_value(&self, prefix: &str) -> Result<HeaderValue, ModelError> {
        let mut value = HeaderValue::from_str(&format!("{prefix}{}", self.0)).map_err(|_| {
            ModelError::new(
                ModelErrorKind::Configuration,
                "the API key contains characters that cannot go in an HTTP header",
            )
        })?;
        value.set_sensitive(true);
        Ok(value)
    }
}

impl fmt::Debug for ApiKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("ApiKey(<redacted>)")
    }
}
