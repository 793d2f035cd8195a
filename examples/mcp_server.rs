//! Our tools as an MCP server: the calculator and the clock, over stdio, for any MCP client
//! (Claude Desktop, an IDE, the official inspector, another agent).
//!
//! ```text
//! cargo build --example mcp_server
//! npx @modelcontextprotocol/inspector-cli --cli target/debug/examples/mcp_server --method tools/list
//! npx @modelcontextprotocol/inspector-cli --cli target/debug/examples/mcp_server \
//!     --method tools/call --tool-name calculator --tool-arg 'expression=12*37+8'
//! ```
//!
//! It speaks MCP on stdin and stdout until the client disconnects, so run it from a client,
//! not by hand. Errors go to stderr: stdout belongs to the protocol.

use std::process::ExitCode;
use std::sync::Arc;

use agent_core::{Tool, ToolSet};
use agent_tools::mcp::McpServer;
use agent_tools::{Calculator, Clock};

#[tokio::main(flavor = "current_thread")]
async fn main() -> ExitCode {
    let tools = match ToolSet::new([
        Arc::new(Calculator::new()) as Arc<dyn Tool>,
        Arc::new(Clock::new()),
    ]) {
        Ok(tools) => tools,
        Err(e) => {
            eprintln!("error: {e}");
            return ExitCode::FAILURE;
        }
    };
    let server = McpServer::new(tools)
        .named("agent-tools-example", env!("CARGO_PKG_VERSION"))
        .instructions("A calculator for exact arithmetic and a clock for the current time.");
    match server.serve_stdio().await {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("error: {e}");
            ExitCode::FAILURE
        }
    }
}
