//! Our MCP client against real MCP servers from the npm registry (the reference
//! `server-everything` and `server-filesystem`, and a server on the official TypeScript SDK
//! whose tools change), over stdio and streamable HTTP: listing, calling, the agent loop,
//! error results, cancellation, a server killed mid-call, startup failures, and shutdown.

use std::sync::Arc;
use std::time::Duration;

use agent_core::prelude::*;
use agent_core::testing::ScriptedModel;
use agent_core::{ChatResponse, Message, Tool, ToolCall, ToolContext, ToolErrorKind, ToolSet};
use agent_tests::mcp_servers::{
    Servers, call_tool, eventually, installed, process_exists, process_group_members,
};
use agent_tools::mcp::{McpClient, McpError};
use serde_json::{Value, json};

async fn everything(servers: &Servers) -> McpClient {
    McpClient::stdio(servers.bin("mcp-server-everything"), ["stdio"])
        .connect()
        .await
        .unwrap()
}

fn tool_set(client: &McpClient) -> ToolSet {
    ToolSet::new(client.tools()).unwrap()
}

async fn call(tools: &ToolSet, name: &str, args: Value) -> Result<String, agent_core::ToolError> {
    call_tool(tools, name, args).await
}

#[tokio::test]
async fn lists_and_calls_the_reference_servers_tools_over_stdio() {
    let Some(servers) = installed() else {
        return;
    };
    let client = everything(&servers).await;
    let (name, _) = client.server_info().unwrap();
    assert_eq!(name, "mcp-servers/everything");
    let names: Vec<String> = client.tool_infos().into_iter().map(|t| t.name).collect();
    for expected in [
        "echo",
        "get-sum",
        "get-tiny-image",
        "get-structured-content",
    ] {
        assert!(names.iter().any(|n| n == expected), "{names:?}");
    }
    // Every schema went through our normalisation and compiled into a validator.
    let tools = tool_set(&client);
    for spec in tools.specs().iter() {
        assert_eq!(spec.parameters["type"], "object", "{}", spec.name);
    }
    // Read-only hints make tools parallel-safe; the others stay one at a time.
    assert!(tools.meta("get-sum").unwrap().parallel_safe);

    assert_eq!(
        call(&tools, "echo", json!({"message": "hi there"}))
            .await
            .unwrap(),
        "Echo: hi there"
    );
    let sum = call(&tools, "get-sum", json!({"a": 17, "b": 25}))
        .await
        .unwrap();
    assert!(sum.contains("42"), "{sum}");
    let image = call(&tools, "get-tiny-image", json!({})).await.unwrap();
    assert!(image.contains("[image omitted: image/png"), "{image}");
    let weather = call(
        &tools,
        "get-structured-content",
        json!({"location": "Chicago"}),
    )
    .await
    .unwrap();
    assert!(weather.contains("temperature"), "{weather}");

    // Arguments that break the server's schema are refused before the server sees them.
    let bad = call(&tools, "get-sum", json!({"a": "seventeen"}))
        .await
        .unwrap_err();
    assert_eq!(bad.kind, ToolErrorKind::InvalidArguments);
    assert!(bad.message.contains("get-sum"), "{}", bad.message);

    let pid = client.pid().unwrap();
    client.shutdown().await.unwrap();
    assert!(
        !process_exists(pid),
        "the server is still there after shutdown"
    );
}

#[tokio::test]
async fn an_agent_uses_a_servers_tools_in_the_full_loop() {
    let Some(servers) = installed() else {
        return;
    };
    let client = everything(&servers).await;
    let model = Arc::new(
        ScriptedModel::new()
            .then_tool_call("get-sum", json!({"a": 400, "b": 52}))
            .then_reply(|req| {
                let result = req.last_tool_results().last().unwrap().content.clone();
                Ok(ChatResponse::text(format!("The server says: {result}")))
            }),
    );
    let agent = LlmAgent::builder(model.clone())
        .tools(client.tools())
        .build()
        .unwrap();
    let result = agent.ask("What is 400 + 52?").await.unwrap();
    assert!(result.text.contains("452"), "{}", result.text);
    // The model was offered the server's tools with their descriptions.
    let request = &model.requests()[0];
    let sum = request.tools.iter().find(|t| t.name == "get-sum").unwrap();
    assert!(!sum.description.is_empty());
    assert_eq!(sum.parameters["required"], json!(["a", "b"]));
    model.assert_complete();
    client.shutdown().await.unwrap();
}

#[tokio::test]
async fn error_results_reach_the_model_as_tool_errors_it_can_read() {
    let Some(servers) = installed() else {
        return;
    };
    let allowed = tempfile::tempdir().unwrap();
    std::fs::write(allowed.path().join("notes.txt"), "inside").unwrap();
    let outside = tempfile::tempdir().unwrap();
    std::fs::write(outside.path().join("secret.txt"), "TOP-SECRET-CONTENT").unwrap();
    let client = McpClient::stdio(
        servers.bin("mcp-server-filesystem"),
        [allowed.path().as_os_str()],
    )
    .prefix("fs")
    .deny(["write_file", "edit_file", "move_file", "create_directory"])
    .connect()
    .await
    .unwrap();
    let names: Vec<String> = client.tool_infos().into_iter().map(|t| t.name).collect();
    assert!(names.contains(&"fs_read_text_file".to_owned()), "{names:?}");
    assert!(!names.iter().any(|n| n.contains("write_file")), "{names:?}");

    let secret = outside.path().join("secret.txt");
    let inside = allowed.path().join("notes.txt");
    let model = Arc::new(
        ScriptedModel::new()
            .then_tool_call("fs_read_text_file", json!({"path": secret}))
            .then_tool_call("fs_read_text_file", json!({"path": inside}))
            .then_text("done"),
    );
    let agent = LlmAgent::builder(model.clone())
        .tools(client.tools())
        .build()
        .unwrap();
    let result = agent.ask("read them").await.unwrap();
    let results: Vec<_> = result
        .new_messages
        .iter()
        .filter_map(|m| match m {
            Message::Tool(r) => Some(r.clone()),
            _ => None,
        })
        .collect();
    assert!(results[0].is_error);
    assert!(
        results[0].content.contains("Access denied"),
        "{}",
        results[0].content
    );
    assert!(!results[0].content.contains("TOP-SECRET-CONTENT"));
    assert!(!results[1].is_error);
    assert!(
        results[1].content.contains("inside"),
        "{}",
        results[1].content
    );
    client.shutdown().await.unwrap();
}

#[tokio::test]
async fn a_server_killed_mid_call_gives_a_typed_error_not_a_hang() {
    let Some(servers) = installed() else {
        return;
    };
    let client = everything(&servers).await;
    let tools = tool_set(&client);
    let pid = client.pid().unwrap();
    let killer = tokio::spawn(async move {
        tokio::time::sleep(Duration::from_millis(300)).await;
        nix::sys::signal::kill(
            nix::unistd::Pid::from_raw(pid as i32),
            nix::sys::signal::Signal::SIGKILL,
        )
        .unwrap();
    });
    let outcome = tokio::time::timeout(
        Duration::from_secs(20),
        call(
            &tools,
            "trigger-long-running-operation",
            json!({"duration": 60, "steps": 60}),
        ),
    )
    .await
    .expect("the call hung after the server died");
    killer.await.unwrap();
    let error = outcome.unwrap_err();
    assert_eq!(error.kind, ToolErrorKind::Unavailable, "{error:?}");
    assert!(
        error.message.contains("no longer running"),
        "{}",
        error.message
    );
    assert!(client.is_closed());
    // A later call fails the same way, at once.
    let again = call(&tools, "echo", json!({"message": "x"}))
        .await
        .unwrap_err();
    assert_eq!(again.kind, ToolErrorKind::Unavailable);
    client.shutdown().await.unwrap();
    assert!(eventually(Duration::from_secs(10), || !process_exists(pid)).await);
}

#[tokio::test]
async fn a_cancelled_call_stops_and_the_session_goes_on() {
    let Some(servers) = installed() else {
        return;
    };
    let client = everything(&servers).await;
    let tools = tool_set(&client);
    let args = tools
        .check_call(&ToolCall::new(
            "c1",
            "trigger-long-running-operation",
            &json!({"duration": 60, "steps": 60}),
        ))
        .unwrap();
    let ctx = ToolContext::detached();
    let cancel = ctx.cancel.clone();
    tokio::spawn(async move {
        tokio::time::sleep(Duration::from_millis(200)).await;
        cancel.cancel();
    });
    let error = tokio::time::timeout(
        Duration::from_secs(20),
        tools.invoke(
            "trigger-long-running-operation",
            args,
            ctx,
            Duration::from_secs(120),
        ),
    )
    .await
    .expect("cancellation did not stop the call")
    .unwrap_err();
    assert_eq!(error.kind, ToolErrorKind::Cancelled);
    assert_eq!(
        call(&tools, "echo", json!({"message": "still here"}))
            .await
            .unwrap(),
        "Echo: still here"
    );
    client.shutdown().await.unwrap();
}

#[tokio::test]
async fn a_call_timeout_stops_a_slow_call() {
    let Some(servers) = installed() else {
        return;
    };
    let client = McpClient::stdio(servers.bin("mcp-server-everything"), ["stdio"])
        .call_timeout(Duration::from_millis(300))
        .connect()
        .await
        .unwrap();
    let tools = tool_set(&client);
    let error = call(
        &tools,
        "trigger-long-running-operation",
        json!({"duration": 60, "steps": 60}),
    )
    .await
    .unwrap_err();
    assert_eq!(error.kind, ToolErrorKind::Timeout, "{error:?}");
    client.shutdown().await.unwrap();
}

#[tokio::test]
async fn shutdown_ends_the_server_and_what_it_started() {
    let Some(servers) = installed() else {
        return;
    };
    // The server starts a background child of its own, as `npx` does.
    let script = format!(
        "sleep 600 & exec {}",
        servers.bin("mcp-server-everything").display()
    );
    let client = McpClient::stdio("sh", ["-c", script.as_str()])
        .connect()
        .await
        .unwrap();
    let pid = client.pid().unwrap();
    let members = process_group_members(pid);
    assert!(
        members.len() >= 2,
        "expected the server and its sleep: {members:?}"
    );
    client.shutdown().await.unwrap();
    assert!(
        eventually(Duration::from_secs(10), || process_group_members(pid)
            .is_empty())
        .await,
        "left behind: {:?}",
        process_group_members(pid)
    );
}

#[tokio::test]
async fn dropping_the_client_ends_the_server_too() {
    let Some(servers) = installed() else {
        return;
    };
    let client = everything(&servers).await;
    let pid = client.pid().unwrap();
    drop(client);
    assert!(
        eventually(Duration::from_secs(15), || !process_exists(pid)).await,
        "the server outlived its client (or was left a zombie)"
    );
}

#[tokio::test]
async fn startup_failures_say_what_to_fix() {
    let missing = McpClient::stdio("no-such-mcp-server-xyz", ["--stdio"])
        .connect()
        .await
        .unwrap_err();
    assert!(matches!(missing, McpError::Spawn { .. }), "{missing:?}");
    assert!(
        missing.to_string().contains("program not found"),
        "{missing}"
    );

    let exits = McpClient::stdio("sh", ["-c", "echo 'bad flag --x' >&2; exit 3"])
        .connect()
        .await
        .unwrap_err();
    let text = exits.to_string();
    assert!(text.contains("before answering `initialize`"), "{text}");
    assert!(text.contains("bad flag --x"), "{text}");

    let silent = McpClient::stdio("sleep", ["600"])
        .startup_timeout(Duration::from_millis(500))
        .connect()
        .await
        .unwrap_err();
    assert!(
        silent
            .to_string()
            .contains("no answer to `initialize` within 0.5s"),
        "{silent}"
    );
    // The silent process was not left running.
    let leftover = std::process::Command::new("pgrep")
        .args(["-f", "^sleep 600$"])
        .output()
        .map(|o| String::from_utf8_lossy(&o.stdout).trim().to_owned())
        .unwrap_or_default();
    for pid in leftover.lines().filter_map(|p| p.parse::<u32>().ok()) {
        // Only count sleeps that are ours: children of this test process (`ps -o ppid=`
        // works on every Unix, unlike /proc).
        let parent = std::process::Command::new("ps")
            .args(["-o", "ppid=", "-p", &pid.to_string()])
            .output()
            .map(|o| String::from_utf8_lossy(&o.stdout).trim().to_owned())
            .unwrap_or_default();
        assert_ne!(
            parent,
            std::process::id().to_string(),
            "the timed-out server {pid} is still running"
        );
    }

    let unreachable = McpClient::http("http://127.0.0.1:9/mcp")
        .startup_timeout(Duration::from_secs(10))
        .connect()
        .await
        .unwrap_err();
    assert!(
        matches!(unreachable, McpError::Handshake { .. }),
        "{unreachable:?}"
    );
}

#[tokio::test]
async fn the_tool_list_follows_the_server() {
    let Some(servers) = installed() else {
        return;
    };
    let client = McpClient::stdio("node", [servers.changing_tools()])
        .connect()
        .await
        .unwrap();
    assert_eq!(client.tools_version(), 1);
    let tools = tool_set(&client);
    assert_eq!(
        call(
            &tools,
            "add_tool",
            json!({"name": "forty_two", "answer": "42"})
        )
        .await
        .unwrap(),
        "added forty_two"
    );
    assert!(
        eventually(Duration::from_secs(10), || client
            .tool_infos()
            .iter()
            .any(|t| t.name == "forty_two"))
        .await,
        "the new tool never appeared"
    );
    let tools = tool_set(&client);
    assert_eq!(call(&tools, "forty_two", json!({})).await.unwrap(), "42");

    let version = client.tools_version();
    call(&tools, "remove_tool", json!({"name": "forty_two"}))
        .await
        .unwrap();
    assert!(eventually(Duration::from_secs(10), || client.tools_version() > version).await);
    assert!(!client.tool_infos().iter().any(|t| t.name == "forty_two"));
    // A tool set taken before the change still holds the tool; its calls get a clear error.
    let gone = call(&tools, "forty_two", json!({})).await.unwrap_err();
    assert_eq!(gone.kind, ToolErrorKind::NotFound);
    assert!(
        gone.message.contains("no longer offered"),
        "{}",
        gone.message
    );
    client.shutdown().await.unwrap();
}

/// A free port on 127.0.0.1 (the listener is closed before the server binds it).
fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

#[tokio::test]
async fn streamable_http_lists_and_calls_tools() {
    let Some(servers) = installed() else {
        return;
    };
    let port = free_port();
    let mut server = tokio::process::Command::new(servers.bin("mcp-server-everything"))
        .arg("streamableHttp")
        .env("PORT", port.to_string())
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::null())
        .kill_on_drop(true)
        .spawn()
        .unwrap();
    let listening = eventually(Duration::from_secs(30), || {
        std::net::TcpStream::connect(("127.0.0.1", port)).is_ok()
    })
    .await;
    assert!(listening, "the HTTP server did not start");

    let client = McpClient::http(format!("http://127.0.0.1:{port}/mcp"))
        .bearer_token("not-a-real-token")
        .prefix("everything")
        .connect()
        .await
        .unwrap();
    assert!(client.pid().is_none());
    let tools = tool_set(&client);
    assert_eq!(
        call(&tools, "everything_echo", json!({"message": "over http"}))
            .await
            .unwrap(),
        "Echo: over http"
    );
    let sum = call(&tools, "everything_get-sum", json!({"a": 1, "b": 2}))
        .await
        .unwrap();
    assert!(sum.contains('3'), "{sum}");
    assert!(!format!("{client:?}").contains("not-a-real-token"));
    client.shutdown().await.unwrap();
    server.kill().await.unwrap();
}

#[tokio::test]
async fn tools_of_two_servers_live_side_by_side_with_prefixes() {
    let Some(servers) = installed() else {
        return;
    };
    let a = McpClient::stdio(servers.bin("mcp-server-everything"), ["stdio"])
        .prefix("a")
        .allow(["echo"])
        .connect()
        .await
        .unwrap();
    let b = McpClient::stdio(servers.bin("mcp-server-everything"), ["stdio"])
        .prefix("b")
        .allow(["echo"])
        .connect()
        .await
        .unwrap();
    let all: Vec<Arc<dyn Tool>> = a.tools().into_iter().chain(b.tools()).collect();
    let tools = ToolSet::new(all).unwrap();
    assert_eq!(tools.names().collect::<Vec<_>>(), ["a_echo", "b_echo"]);
    assert_eq!(
        call(&tools, "b_echo", json!({"message": "b"}))
            .await
            .unwrap(),
        "Echo: b"
    );
    a.shutdown().await.unwrap();
    b.shutdown().await.unwrap();
}

#[tokio::test]
async fn an_agent_on_the_tool_source_follows_the_servers_changes_between_runs() {
    let Some(servers) = installed() else {
        return;
    };
    let client = McpClient::stdio("node", [servers.changing_tools()])
        .connect()
        .await
        .unwrap();
    let model = Arc::new(
        ScriptedModel::new()
            .then_tool_call("add_tool", json!({"name": "forty_two", "answer": "42"}))
            .then_text("added")
            .then_tool_call("forty_two", json!({}))
            .then_reply(|req| {
                let result = req.last_tool_results().last().unwrap();
                assert!(!result.is_error, "{}", result.content);
                Ok(ChatResponse::text(format!("it says {}", result.content)))
            }),
    );
    let agent = LlmAgent::builder(model.clone())
        .tool_source(client.tool_source())
        .build()
        .unwrap();
    assert_eq!(
        agent.tools().names().collect::<Vec<_>>(),
        ["add_tool", "remove_tool"]
    );
    agent.ask("add a tool").await.unwrap();
    assert!(
        eventually(Duration::from_secs(10), || agent
            .tools()
            .get("forty_two")
            .is_some())
        .await,
        "the agent never saw the new tool"
    );
    let result = agent.ask("use it").await.unwrap();
    assert_eq!(result.text, "it says 42");
    // The second run's model request offered the new tool.
    let offered: Vec<String> = model.requests()[2]
        .tools
        .iter()
        .map(|t| t.name.clone())
        .collect();
    assert!(offered.contains(&"forty_two".to_owned()), "{offered:?}");
    model.assert_complete();
    client.shutdown().await.unwrap();
}

#[tokio::test]
async fn env_clear_keeps_this_processs_variables_from_the_server() {
    let Some(servers) = installed() else {
        return;
    };
    // Cargo gives test processes CARGO_PKG_NAME; a server started normally inherits it.
    assert!(std::env::var("CARGO_PKG_NAME").is_ok());
    let env_of = |client: &McpClient| ToolSet::new(client.tools()).unwrap();
    let inherits = everything(&servers).await;
    let seen = call(&env_of(&inherits), "get-env", json!({}))
        .await
        .unwrap();
    assert!(seen.contains("CARGO_PKG_NAME"), "{seen}");
    inherits.shutdown().await.unwrap();

    let cleared = McpClient::stdio(servers.bin("mcp-server-everything"), ["stdio"])
        .env_clear()
        .env("GIVEN_ON_PURPOSE", "yes")
        .connect()
        .await
        .unwrap();
    let seen = call(&env_of(&cleared), "get-env", json!({})).await.unwrap();
    assert!(!seen.contains("CARGO_PKG_NAME"), "{seen}");
    assert!(
        seen.contains("GIVEN_ON_PURPOSE") && seen.contains("PATH"),
        "{seen}"
    );
    cleared.shutdown().await.unwrap();
}
