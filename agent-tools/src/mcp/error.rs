//! The MCP client's and server's error, and the wording of a failed handshake. A leaf: the
//! other MCP modules import it, and it imports none of them.

/// What went wrong starting, talking to or stopping an MCP server.
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
#[non_exhaustive]
pub enum McpError {
    /// The server's program could not be started.
    #[error("could not start MCP server `{program}`: {reason}")]
    Spawn {
        /// The program as given.
        program: String,
        /// What to fix.
        reason: String,
    },
    /// The server started (or was reached) but the MCP handshake failed.
    #[error("MCP server {server} did not complete the handshake: {reason}{}", stderr_suffix(.stderr))]
    Handshake {
        /// The server (program or URL).
        server: String,
        /// Why, including what to check.
        reason: String,
        /// The last lines the server wrote to stderr, if it is a child process.
        stderr: Vec<String>,
    },
    /// A request to the server failed.
    #[error("MCP server {server}: {operation} failed: {reason}")]
    Request {
        /// The server (program or URL).
        server: String,
        /// What was asked, e.g. `tools/list`.
        operation: &'static str,
        /// Why.
        reason: String,
    },
    /// The builder was given something unusable.
    #[error("invalid MCP client configuration: {0}")]
    Config(String),
    /// Serving our tools over MCP failed.
    #[error("MCP server failed: {0}")]
    Serve(String),
}

fn stderr_suffix(lines: &[String]) -> String {
    if lines.is_empty() {
        String::new()
    } else {
        format!("; its stderr ends with:\n  {}", lines.join("\n  "))
    }
}

pub(super) fn handshake_reason(error: &str, child: bool) -> String {
    let lower = error.to_ascii_lowercase();
    let gone = ["closed", "broken pipe", "end of file", "eof"];
    if child && gone.iter().any(|g| lower.contains(g)) {
        format!(
            "it exited or closed its stdout before answering `initialize` ({error}); check the \
             command and its arguments"
        )
    } else if !child && (lower.contains("connect") || lower.contains("dns")) {
        format!("cannot reach the server ({error}); is it running, and is the URL right?")
    } else {
        error.to_owned()
    }
}
