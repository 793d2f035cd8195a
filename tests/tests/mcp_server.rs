//! Our tools served over MCP (the `mcp_server` example), checked with our own client and
//! with the official inspector's command-line mode; and the `mcp_agent` example run as a
//! user runs it.

use std::path::PathBuf;

use agent_core::{ToolErrorKind, ToolSet};
use agent_tests::mcp_servers::{Servers, call_tool, dir, installed, process_exists};
use agent_tools::mcp::McpClient;
use serde_json::{Value, json};

fn server() -> PathBuf {
    PathBuf::from(env!("CARGO_BIN_EXE_mcp_server_e2e"))
}

async fn inspector(servers: &Servers, args: &[&str]) -> Value {
    let out = tokio::process::Command::new(servers.bin("mcp-inspector"))
        .arg("--cli")
        .arg(server())
        .args(args)
        .current_dir(dir())
        .output()
        .await
        .unwrap();
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success(),
        "inspector {args:?} failed:\n{stdout}\n{}",
        String::from_utf8_lossy(&out.stderr)
    );
    // The inspector prints a deprecation banner before the JSON.
    let start = stdout.find('{').unwrap_or(0);
    serde_json::from_str(&stdout[start..]).unwrap_or_else(|e| panic!("{e}: {stdout}"))
}

#[tokio::test]
async fn the_official_inspector_lists_and_calls_our_tools() {
    let Some(servers) = installed() else {
        return;
    };
    let listed = inspector(&servers, &["--method", "tools/list"]).await;
    let tools = listed["tools"].as_array().unwrap();
    let names: Vec<&str> = tools.iter().map(|t| t["name"].as_str().unwrap()).collect();
    assert_eq!(names, ["calculator", "clock"]);
    for tool in tools {
        assert_eq!(tool["inputSchema"]["type"], "object");
        assert_eq!(tool["annotations"]["readOnlyHint"], true);
        assert!(!tool["description"].as_str().unwrap().is_empty());
    }

    let sum = inspector(
        &servers,
        &[
            "--method",
            "tools/call",
            "--tool-name",
            "calculator",
            "--tool-arg",
            "expression=12*37+8",
        ],
    )
    .await;
    assert_eq!(sum["isError"], false, "{sum}");
    assert_eq!(sum["content"][0]["text"], "452");

    let span = inspector(
        &servers,
        &[
            "--method",
            "tools/call",
            "--tool-name",
            "clock",
            "--tool-arg",
            "action=days_between",
            "from=2024-01-01",
            "to=2024-03-01",
        ],
    )
    .await;
    assert_eq!(span["structuredContent"]["days"], 60, "{span}");

    // A bad expression is a tool error the calling model can read, not a protocol error.
    let bad = inspector(
        &servers,
        &[
            "--method",
            "tools/call",
            "--tool-name",
            "calculator",
            "--tool-arg",
            "expression=2+",
        ],
    )
    .await;
    assert_eq!(bad["isError"], true, "{bad}");
    assert!(
        bad["content"][0]["text"]
            .as_str()
            .unwrap()
            .contains("expression"),
        "{bad}"
    );
}

#[tokio::test]
async fn the_official_inspector_gets_an_error_for_an_unknown_tool() {
    let Some(servers) = installed() else {
        return;
    };
    let out = tokio::process::Command::new(servers.bin("mcp-inspector"))
        .args(["--cli"])
        .arg(server())
        .args(["--method", "tools/call", "--tool-name", "rm_rf"])
        .current_dir(dir())
        .output()
        .await
        .unwrap();
    let all = format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(!out.status.success(), "{all}");
    assert!(all.contains("There is no tool named `rm_rf`"), "{all}");
}

async fn call(tools: &ToolSet, name: &str, args: Value) -> Result<String, agent_core::ToolError> {
    call_tool(tools, name, args).await
}

#[tokio::test]
async fn our_client_uses_our_server() {
    let client = McpClient::stdio(server(), Vec::<String>::new())
        .connect()
        .await
        .unwrap();
    assert_eq!(client.server_info().unwrap().0, "agent-tools-example");
    let tools = ToolSet::new(client.tools()).unwrap();
    assert_eq!(tools.names().collect::<Vec<_>>(), ["calculator", "clock"]);
    // Read-only on our side became readOnlyHint on the wire, and read-only again here.
    assert!(tools.meta("calculator").unwrap().parallel_safe);
    assert_eq!(
        call(&tools, "calculator", json!({"expression": "12*37+8"}))
            .await
            .unwrap(),
        "452"
    );
    let date = call(
        &tools,
        "clock",
        json!({"action": "add_to_date", "date": "2024-01-31", "months": 1}),
    )
    .await
    .unwrap();
    assert!(date.contains("2024-02-29"), "{date}");
    // The server's own checks reach the model as readable tool errors.
    let error = call(
        &tools,
        "clock",
        json!({"action": "days_between", "from": "2024-01-01"}),
    )
    .await
    .unwrap_err();
    assert_eq!(error.kind, ToolErrorKind::Failed);
    assert!(
        error.message.contains("`to` (YYYY-MM-DD) is required"),
        "{}",
        error.message
    );
    let pid = client.pid().unwrap();
    client.shutdown().await.unwrap();
    assert!(!process_exists(pid));
}

fn agent_example() -> tokio::process::Command {
    let mut command = tokio::process::Command::new(env!("CARGO_BIN_EXE_mcp_agent_e2e"));
    command.env_remove("AGENT_MODEL");
    command
}

#[tokio::test]
async fn the_mcp_agent_example_runs_offline_on_its_own_server() {
    let out = agent_example().output().await.unwrap();
    let stdout = agent_tests::stdout_of_success(&out);
    assert!(stdout.contains("tools: calculator, clock"), "{stdout}");
    assert!(stdout.contains("built-in scripted model"), "{stdout}");
    assert!(stdout.contains("→ clock({\"action\":\"now\"})"), "{stdout}");
    assert!(
        stdout.contains("answer: The server offers 2 tools"),
        "{stdout}"
    );
}

#[tokio::test]
async fn the_mcp_agent_example_uses_a_server_given_on_the_command_line() {
    let Some(servers) = installed() else {
        return;
    };
    let folder = tempfile::tempdir().unwrap();
    std::fs::write(folder.path().join("hello.txt"), "hi").unwrap();
    let out = agent_example()
        .arg("--")
        .arg(servers.bin("mcp-server-filesystem"))
        .arg(folder.path())
        .output()
        .await
        .unwrap();
    let stdout = agent_tests::stdout_of_success(&out);
    assert!(
        stdout.contains("→ list_allowed_directories({})"),
        "{stdout}"
    );
    assert!(
        stdout.contains(&folder.path().display().to_string()),
        "{stdout}"
    );

    let missing = agent_example()
        .args(["--", "no-such-mcp-server-xyz"])
        .output()
        .await
        .unwrap();
    let stderr = String::from_utf8_lossy(&missing.stderr);
    assert!(!missing.status.success());
    assert!(
        stderr.contains("could not start MCP server `no-such-mcp-server-xyz`: program not found"),
        "{stderr}"
    );
}
