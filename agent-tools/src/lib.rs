//! # agent-tools
//!
//! Ready tools that are safe to hand to a model. A model may call them with arguments an
//! attacker wrote (prompt injection through a page or a file), so each tool is safe by default
//! and says exactly what went wrong when it refuses. This crate knows no model backend.
//!
//! ```
//! use std::sync::Arc;
//! use agent_core::{Tool, ToolSet};
//! use agent_tools::Calculator;
//! let tools = ToolSet::new([Arc::new(Calculator::new()) as Arc<dyn Tool>]).unwrap();
//! assert!(tools.get("calculator").is_some());
//! ```

pub mod calculator;
pub mod clock;
pub mod files;
pub mod http_fetch;
#[cfg(feature = "mcp")]
pub mod mcp;
pub mod shell;
pub mod web_search;

/// Installs the process-wide TLS provider reqwest 0.13 needs (rustls on ring, as in the
/// rest of the workspace) before a tool builds an HTTP client. Harmless when one is
/// installed already.
pub(crate) fn tls_provider() {
    let _ = rustls::crypto::ring::default_provider().install_default();
}

pub use calculator::Calculator;
pub use clock::Clock;
pub use files::FileTools;
pub use http_fetch::HttpFetch;
pub use shell::Shell;
pub use web_search::{Brave, SearchEngine, SearchResult, SearxNg, WebSearch};

/// The longest prefix of `text` of at most `max` bytes, on a character boundary (the tools'
/// one way to cut text to a cap).
pub(crate) fn cut(text: &str, max: usize) -> &str {
    let mut end = max.min(text.len());
    while !text.is_char_boundary(end) {
        end -= 1;
    }
    &text[..end]
}
