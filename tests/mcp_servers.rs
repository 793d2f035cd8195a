//! The real MCP servers the MCP tests talk to, installed from the npm registry into
//! `tests/mcp-servers/node_modules` by `npm ci --prefix tests/mcp-servers` (`.ci/run` does
//! it). Nothing here reaches the network: the servers run from that folder.

use std::path::PathBuf;
use std::time::Duration;

use agent_core::{ToolCall, ToolContext, ToolError, ToolSet};
use serde_json::Value;

/// The folder with `package.json`, the lock file and `changing-tools.mjs`.
pub fn dir() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("mcp-servers")
}

/// The path of an installed server's executable (`mcp-server-everything`,
/// `mcp-server-filesystem`, `mcp-inspector`). Panics, saying how to install them, when they
/// are missing: these tests must fail, not pass silently, on a machine without them.
pub fn bin(name: &str) -> PathBuf {
    let path = dir().join("node_modules").join(".bin").join(name);
    assert!(
        path.exists(),
        "{} is not installed: run `npm ci --prefix tests/mcp-servers` (Node.js 20 and npm \
         needed) before `cargo test`",
        path.display()
    );
    path
}

/// The test server whose tool list changes (official TypeScript SDK).
pub fn changing_tools() -> PathBuf {
    bin("mcp-server-everything");
    dir().join("changing-tools.mjs")
}

/// Whether a process exists, zombies included (a zombie is a process nobody reaped).
pub fn process_exists(pid: u32) -> bool {
    std::path::Path::new(&format!("/proc/{pid}")).exists()
}

/// The ids of the processes in a process group.
pub fn process_group_members(pgid: u32) -> Vec<u32> {
    let Ok(entries) = std::fs::read_dir("/proc") else {
        return Vec::new();
    };
    entries
        .filter_map(|e| e.ok()?.file_name().to_str()?.parse::<u32>().ok())
        .filter(|pid| {
            std::fs::read_to_string(format!("/proc/{pid}/stat"))
                .ok()
                .and_then(|stat| {
                    // pid (comm) state ppid pgrp ...; comm may hold spaces, so split after ')'.
                    let rest = &stat[stat.rfind(')')? + 2..];
                    rest.split(' ').nth(2)?.parse::<u32>().ok()
                })
                == Some(pgid)
        })
        .collect()
}

/// Waits until `done` holds, checking every 20 ms, for at most `limit` (a generous bound:
/// the tests assert the condition, not the time).
pub async fn eventually(limit: Duration, mut done: impl FnMut() -> bool) -> bool {
    let deadline = tokio::time::Instant::now() + limit;
    while tokio::time::Instant::now() < deadline {
        if done() {
            return true;
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    done()
}

/// Checks a call against the tool set and runs it (30 s timeout), as the loop would; the
/// output as text.
pub async fn call_tool(tools: &ToolSet, name: &str, args: Value) -> Result<String, ToolError> {
    let checked = tools.check_call(&ToolCall::new("c1", name, &args))?;
    tools
        .invoke(
            name,
            checked,
            ToolContext::detached(),
            Duration::from_secs(30),
        )
        .await
        .map(|o| o.into_content())
}
