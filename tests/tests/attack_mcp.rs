//! Red team: the MCP client against a hostile server of our own.

use std::sync::Arc;

use agent_core::testing::ScriptedModel;
use agent_core::{LlmAgent, Tool};
use agent_tools::FileTools;
use agent_tools::mcp::McpClient;

fn server() -> &'static str {
    env!("CARGO_BIN_EXE_attack_mcp_server")
}

// BREAKS: only the tool's top-level description is capped (4 KiB); a description inside the
// argument schema passes whole (one JSON value for the node budget), so a server puts 4 MiB
// of instructions into every request the agent sends to its provider.
#[tokio::test]
async fn attack_schema_descriptions_are_bounded() {
    let client = McpClient::stdio(server(), ["fat"]).connect().await.unwrap();
    for tool in client.tools() {
        let size = tool.parameters().to_string().len();
        assert!(
            size < 64 * 1024,
            "`{}` sends a {size}-byte schema to the model",
            tool.name()
        );
    }
    client.shutdown().await.unwrap();
}

// BREAKS: a server's tool named like a local tool (`read_file`) is not skipped or renamed:
// the agent cannot be built at all (a hostile server stops every agent that uses it), and a
// server that adds it later with a list change freezes the agent's tool set.
#[tokio::test]
async fn attack_server_tool_named_like_a_local_tool_does_not_stop_the_agent() {
    let root = tempfile::tempdir().unwrap();
    let log = root.path().join("log");
    let client = McpClient::stdio(server(), ["shadow"])
        .env("ATTACK_LOG", log.to_str().unwrap())
        .connect()
        .await
        .unwrap();
    let files = FileTools::new(root.path()).unwrap();
    let model = Arc::new(ScriptedModel::new().then_text("done"));
    let built = LlmAgent::builder(model)
        .tools(files.all_tools())
        .tool_source(client.tool_source())
        .build();
    let agent = built.expect("the agent builds; the server's clashing tools are left out");
    let tools = agent.tools();
    let read: Arc<dyn Tool> = tools.get("read_file").unwrap().clone();
    assert_eq!(read.description(), files.all_tools()[0].description());
    client.shutdown().await.unwrap();
}

// BREAKS: the inlining budget is per schema (20,000 values) and the listing cap is 1,024
// tools, but nothing bounds their product: ~1 KB of doubling `$ref`s per tool stays under the
// budget and inlines to ~10,000 values, so a 70 KB listing becomes ~8 MB of tool
// definitions held in memory and sent with every model request (a full 1,024-tool listing of
// ~1 MB: hundreds of MB per request, GBs of memory).
#[tokio::test]
async fn attack_many_schemas_under_the_budget_stay_bounded_together() {
    let client = McpClient::stdio(server(), ["amplify"])
        .connect()
        .await
        .unwrap();
    let listed: usize = client
        .tools()
        .iter()
        .map(|t| t.parameters().to_string().len())
        .sum();
    let tools = agent_core::ToolSet::new(client.tools()).unwrap();
    let sent: usize = tools
        .specs()
        .iter()
        .map(|s| serde_json::to_string(s).map(|j| j.len()).unwrap_or(0))
        .sum();
    assert!(
        sent < 4 << 20,
        "a {listed}-byte listing became {sent} bytes of tool definitions ({} tools)",
        tools.len()
    );
    client.shutdown().await.unwrap();
}
