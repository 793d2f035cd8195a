//! The MCP client against a hostile server of our own (raw JSON-RPC, always built): bad
//! tools are skipped by name, a listing that pages forever is cut off, a huge result is cut
//! with a note, and nothing crashes or exhausts memory.

use std::sync::Arc;
use std::time::Duration;

use agent_core::{Tool, ToolContext, ToolSet};
use agent_tools::mcp::McpClient;
use serde_json::json;

fn server() -> &'static str {
    env!("CARGO_BIN_EXE_hostile_mcp_server")
}

#[tokio::test]
async fn bad_tools_are_skipped_and_the_good_ones_work() {
    let client = McpClient::stdio(server(), ["tools"])
        .max_result_bytes(64 * 1024)
        .connect()
        .await
        .unwrap();
    let mut names: Vec<String> = client.tools().iter().map(|t| t.name().to_owned()).collect();
    names.sort();
    // array_schema, broken_schema, doubling and chain are refused; the verbose one stays,
    // with its description cut.
    assert_eq!(names, ["big", "echo", "verbose"]);
    let verbose = client
        .tools()
        .into_iter()
        .find(|t| t.name() == "verbose")
        .unwrap();
    assert!(
        verbose.description().len() < 5_000,
        "{}",
        verbose.description().len()
    );
    assert!(
        verbose
            .description()
            .ends_with("[description cut at 4096 bytes]")
    );
    // The whole list makes a valid tool set for an agent.
    let tools = ToolSet::new(client.tools()).unwrap();
    assert_eq!(tools.names().count(), 3);

    let echo: Arc<dyn Tool> = tools.get("echo").unwrap().clone();
    let out = echo
        .call(json!({"text": "hi"}), &ToolContext::detached())
        .await
        .unwrap()
        .into_content();
    assert_eq!(out, "hi");
    let big = tools.get("big").unwrap().clone();
    let out = big
        .call(json!({}), &ToolContext::detached())
        .await
        .unwrap()
        .into_content();
    assert!(out.len() < 66 * 1024, "{} bytes", out.len());
    assert!(
        out.ends_with("[result cut at 65536 of 4194304 bytes]"),
        "{}",
        &out[out.len() - 60..]
    );
    client.shutdown().await.unwrap();
}

#[tokio::test]
async fn a_listing_that_pages_forever_is_cut_off() {
    let client = tokio::time::timeout(
        Duration::from_secs(60),
        McpClient::stdio(server(), ["pages"]).connect(),
    )
    .await
    .expect("connect must not hang on endless pages")
    .unwrap();
    assert_eq!(client.tools().len(), 64);
    client.shutdown().await.unwrap();
}

/// A tool with whatever schema a server sent.
struct Foreign(serde_json::Value);

#[agent_core::async_trait]
impl Tool for Foreign {
    fn name(&self) -> &str {
        "foreign"
    }
    fn description(&self) -> &str {
        "A tool with a schema from outside."
    }
    fn parameters(&self) -> serde_json::Value {
        self.0.clone()
    }
    async fn call(
        &self,
        _args: serde_json::Value,
        _ctx: &ToolContext,
    ) -> Result<agent_core::ToolOutput, agent_core::ToolError> {
        Ok("ran".into())
    }
}

#[test]
fn refs_that_point_at_each_other_outside_defs_cannot_loop_the_validator() {
    // Not `$defs` (which the inliner budgets) but JSON pointers into the schema itself,
    // each naming the other: a validator that follows them without consuming input never
    // stops. Either the schema is refused, or checking a call answers.
    let schema = json!({
        "type": "object",
        "properties": {
            "x": {"$ref": "#/properties/y"},
            "y": {"$ref": "#/properties/x"}
        }
    });
    let Ok(tools) = ToolSet::new([Arc::new(Foreign(schema)) as Arc<dyn Tool>]) else {
        return; // refused: held
    };
    let call = agent_core::ToolCall::new("c", "foreign", &json!({"x": 1}));
    let _ = tools.check_call(&call);
}
