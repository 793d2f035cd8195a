//! Model Context Protocol: use any MCP server's tools, and serve a [`ToolSet`] over MCP.
//!
//! Built on [`rmcp`], the official Rust SDK (feature `mcp`, on by default).
//!
//! - [`McpClient`] connects to a server, over stdio (a child process it starts) or streamable
//!   HTTP, and turns each of its tools into a [`Tool`](agent_core::Tool): the server's schema
//!   goes through the same normalisation as every other tool, calls carry the run's
//!   cancellation and a timeout, and the server's errors reach the model as tool errors it
//!   can read.
//! - [`McpServer`] serves a [`ToolSet`] (the ready tools, your own) to any MCP client.
//!
//! ```no_run
//! # async fn demo() -> Result<(), Box<dyn std::error::Error>> {
//! use agent_core::prelude::*;
//! use agent_tools::mcp::McpClient;
//!
//! let files = McpClient::stdio("npx", ["-y", "@modelcontextprotocol/server-filesystem", "/tmp"])
//!     .prefix("fs")
//!     .deny(["write_file", "edit_file", "move_file"])
//!     .connect()
//!     .await?;
//! let model = ModelRegistry::builtin().create("openai:gpt-4o-mini")?;
//! let agent = LlmAgent::builder(model).tools(files.tools()).build()?;
//! let answer = agent.ask("Which files in /tmp are larger than 1 MB?").await?;
//! println!("{}", answer.text);
//! files.shutdown().await?;
//! # Ok(())
//! # }
//! ```
//!
//! [`ToolSet`]: agent_core::ToolSet

mod client;
mod content;
mod error;
mod handler;
mod server;
mod stdio;
mod tools;

pub use client::{McpClient, McpClientBuilder, McpToolInfo};
pub use error::McpError;
pub use server::McpServer;

/// The rmcp version this module is built and tested against.
pub const RMCP_VERSION: &str = "3.11";
