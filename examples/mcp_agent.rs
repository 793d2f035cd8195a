//! An agent with the tools of any MCP server: started from the command line (stdio) or
//! reached by URL (streamable HTTP).
//!
//! ```text
//! cargo run --example mcp_agent
//! cargo run --example mcp_agent -- npx -y @modelcontextprotocol/server-filesystem /some/dir
//! cargo run --example mcp_agent -- --url http://127.0.0.1:3001/mcp
//! AGENT_MODEL=openai:gpt-4o-mini cargo run --example mcp_agent -- \
//!     --task "Which is the largest file?" npx -y @modelcontextprotocol/server-filesystem .
//! ```
//!
//! With no server given, it starts itself as a small MCP server (the calculator and the
//! clock, like the `mcp_server` example) and connects to that: a real MCP session over
//! stdio either way. Without `AGENT_MODEL`, the built-in scripted model drives the run: it
//! lists what the server offers, calls one tool it can call without knowing anything (no required arguments, or only
//! choices), and reports.

use std::process::ExitCode;
use std::sync::Arc;

use agent_core::prelude::*;
use agent_core::testing::ScriptedModel;
use agent_core::{ChatRequest, ChatResponse, Tool, ToolCall, ToolSet};
use agent_examples::{choose_model, exit_code, last_tool_output, print_transcript};
use agent_tools::mcp::{McpClient, McpServer};
use agent_tools::{Calculator, Clock};
use serde_json::{Map, Value};

const TASK: &str = "Find out what this MCP server's tools can do, try one, and report what you \
                    learned.";
const USAGE: &str =
    "usage: mcp_agent [--task TEXT] [--prefix NAME] [--url URL | [--] COMMAND [ARGS...]]";

#[tokio::main]
async fn main() -> ExitCode {
    let args: Vec<String> = std::env::args().skip(1).collect();
    if args.first().map(String::as_str) == Some("--serve-builtin") {
        return exit_code(serve_builtin().await);
    }
    exit_code(run(args).await)
}

struct Options {
    task: String,
    prefix: Option<String>,
    url: Option<String>,
    command: Vec<String>,
}

fn parse(args: Vec<String>) -> Result<Options, String> {
    let mut options = Options {
        task: TASK.to_owned(),
        prefix: None,
        url: None,
        command: Vec::new(),
    };
    let mut args = args.into_iter();
    while let Some(arg) = args.next() {
        let mut value = |flag: &str| args.next().ok_or(format!("{flag} needs a value\n{USAGE}"));
        match arg.as_str() {
            "--task" => options.task = value("--task")?,
            "--prefix" => options.prefix = Some(value("--prefix")?),
            "--url" => options.url = Some(value("--url")?),
            "-h" | "--help" => return Err(USAGE.to_owned()),
            "--" => {
                options.command.extend(args.by_ref());
            }
            _ => {
                options.command.push(arg);
                options.command.extend(args.by_ref());
            }
        }
    }
    Ok(options)
}

async fn run(args: Vec<String>) -> Result<(), Box<dyn std::error::Error>> {
    let options = parse(args)?;
    let mut builder = match (&options.url, options.command.split_first()) {
        (Some(url), _) => {
            println!("server: {url}");
            McpClient::http(url)
        }
        (None, Some((program, rest))) => {
            println!("server: {}", options.command.join(" "));
            McpClient::stdio(program, rest)
        }
        (None, None) => {
            let me = std::env::current_exe()?;
            println!("server: this example's own calculator and clock, over stdio");
            McpClient::stdio(me, ["--serve-builtin"])
        }
    };
    if let Some(prefix) = &options.prefix {
        builder = builder.prefix(prefix);
    }
    let client = builder.connect().await?;
    let infos = client.tool_infos();
    println!(
        "tools: {}",
        infos
            .iter()
            .map(|t| t.name.as_str())
            .collect::<Vec<_>>()
            .join(", ")
    );

    let model = choose_model(offline_script)?;
    let agent = LlmAgent::builder(model)
        .instructions("You can use the tools of an MCP server. Use them to do the task.")
        .tools(client.tools())
        .max_turns(10)
        .build()?;
    println!("task: {}", options.task);
    let result = agent.ask(&options.task).await;
    client.shutdown().await?;
    print_transcript(&result?);
    Ok(())
}

/// The built-in server: the calculator and the clock, on this process's stdin/stdout.
async fn serve_builtin() -> Result<(), Box<dyn std::error::Error>> {
    let tools = ToolSet::new([
        Arc::new(Calculator::new()) as Arc<dyn Tool>,
        Arc::new(Clock::new()),
    ])?;
    McpServer::new(tools)
        .named("mcp-agent-builtin", env!("CARGO_PKG_VERSION"))
        .serve_stdio()
        .await?;
    Ok(())
}

/// Offline: call the first tool that needs no arguments and does not look like it changes
/// anything, then report the tools and what the call returned. Works with any server.
fn offline_script() -> ScriptedModel {
    ScriptedModel::new()
        .then_reply(|req| {
            let names = tool_names(req);
            match harmless_tool(req) {
                Some((name, args)) => Ok(ChatResponse::tool_calls(vec![ToolCall::new(
                    "", name, &args,
                )])),
                None => Ok(ChatResponse::text(format!(
                    "The server offers {} tools ({names}); none can be tried without arguments.",
                    req.tools.len()
                ))),
            }
        })
        .then_reply(|req| {
            let called = req
                .last_tool_results()
                .last()
                .map(|r| r.name.clone())
                .unwrap_or_default();
            let (output, failed) = last_tool_output(req).unwrap_or_default();
            let mut output: String = output.chars().take(300).collect();
            if failed {
                output = format!("an error: {output}");
            }
            Ok(ChatResponse::text(format!(
                "The server offers {} tools ({}). I tried `{called}`, which returned {output}",
                req.tools.len(),
                tool_names(req)
            )))
        })
}

fn tool_names(req: &ChatRequest) -> String {
    req.tools
        .iter()
        .map(|t| t.name.as_str())
        .collect::<Vec<_>>()
        .join(", ")
}

/// The first tool that does not look like it changes anything and whose required arguments
/// can be filled without knowing anything: none, or each one a choice (the first is taken).
fn harmless_tool(req: &ChatRequest) -> Option<(String, Value)> {
    const CHANGES: [&str; 8] = [
        "write", "edit", "delete", "move", "create", "toggle", "trigger", "set",
    ];
    req.tools.iter().find_map(|t| {
        let lower = t.name.to_ascii_lowercase();
        if CHANGES.iter().any(|c| lower.contains(c)) {
            return None;
        }
        let mut args = Map::new();
        let required = t.parameters.get("required").and_then(Value::as_array);
        for name in required.into_iter().flatten().filter_map(Value::as_str) {
            let choice = first_choice(&t.parameters["properties"][name])?;
            args.insert(name.to_owned(), choice);
        }
        Some((t.name.clone(), Value::Object(args)))
    })
}

/// The first allowed value of a property given as `enum` or as a `oneOf` of `const`s.
fn first_choice(property: &Value) -> Option<Value> {
    if let Some(first) = property.get("enum").and_then(|e| e.get(0)) {
        return Some(first.clone());
    }
    property
        .get("oneOf")
        .and_then(|o| o.get(0))
        .and_then(|o| o.get("const"))
        .cloned()
}
