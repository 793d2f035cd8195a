//! A hostile MCP server over stdio, for the tests: raw JSON-RPC lines, no SDK, so it can
//! send what a well-behaved SDK never would.
//!
//! `hostile_mcp_server tools`: lists one good tool (`echo`) among bad ones (a schema that is
//! not an object, a schema that does not compile, doubling `$ref`s, a 10,000-link `$ref`
//! chain, a 1 MiB description) and answers `big` with 4 MiB of text.
//! `hostile_mcp_server pages`: a tool listing that pages forever, one tool per page.

use std::io::{BufRead, Write};

use serde_json::{Map, Value, json};

fn doubling_refs(levels: usize) -> Value {
    let mut defs = Map::new();
    defs.insert("d0".into(), json!({"type": "string"}));
    for i in 1..=levels {
        let prev = format!("#/$defs/d{}", i - 1);
        defs.insert(
            format!("d{i}"),
            json!({"type": "object", "properties": {"a": {"$ref": prev}, "b": {"$ref": prev}}}),
        );
    }
    json!({"type": "object", "properties": {"x": {"$ref": format!("#/$defs/d{levels}")}}, "$defs": defs})
}

fn ref_chain(links: usize) -> Value {
    let mut defs = Map::new();
    for i in 0..links {
        defs.insert(
            format!("c{i}"),
            json!({"type": "object", "properties": {"n": {"$ref": format!("#/$defs/c{}", i + 1)}}}),
        );
    }
    defs.insert(format!("c{links}"), json!({"type": "string"}));
    json!({"type": "object", "properties": {"start": {"$ref": "#/$defs/c0"}}, "$defs": defs})
}

fn tool(name: &str, description: &str, schema: Value) -> Value {
    json!({"name": name, "description": description, "inputSchema": schema})
}

fn tools_page(mode: &str, cursor: Option<&str>) -> Value {
    if mode == "pages" {
        let n: u64 = cursor.and_then(|c| c.parse().ok()).unwrap_or(0);
        return json!({
            "tools": [tool(&format!("t{n}"), "One of endless tools.", json!({"type": "object"}))],
            "nextCursor": (n + 1).to_string(),
        });
    }
    json!({"tools": [
        tool("echo", "Echoes its text.", json!({"type": "object", "properties": {"text": {"type": "string"}}})),
        tool("big", "Answers with a lot of text.", json!({"type": "object"})),
        tool("array_schema", "Its schema is not an object.", json!({"type": "array"})),
        tool("broken_schema", "Its schema does not compile.", json!({"type": "object", "properties": {"x": {"type": 17}}})),
        tool("doubling", "Exponential refs.", doubling_refs(30)),
        tool("chain", "A long ref chain.", ref_chain(10_000)),
        tool("verbose", &"blah ".repeat(200_000), json!({"type": "object"})),
    ]})
}

fn main() {
    let mode = std::env::args().nth(1).unwrap_or_else(|| "tools".into());
    let stdin = std::io::stdin();
    let mut stdout = std::io::stdout().lock();
    for line in stdin.lock().lines() {
        let Ok(line) = line else { break };
        let Ok(request) = serde_json::from_str::<Value>(&line) else {
            continue;
        };
        let Some(id) = request.get("id").cloned() else {
            continue; // a notification
        };
        let method = request["method"].as_str().unwrap_or_default();
        let result = match method {
            "initialize" => json!({
                "protocolVersion": request["params"]["protocolVersion"],
                "capabilities": {"tools": {}},
                "serverInfo": {"name": "hostile", "version": "0.0.1"},
            }),
            "tools/list" => tools_page(&mode, request["params"]["cursor"].as_str()),
            "tools/call" => {
                let text = match request["params"]["name"].as_str() {
                    Some("big") => "x".repeat(4 << 20),
                    _ => request["params"]["arguments"]["text"]
                        .as_str()
                        .unwrap_or_default()
                        .to_owned(),
                };
                json!({"content": [{"type": "text", "text": text}]})
            }
            _ => json!({}),
        };
        let reply = json!({"jsonrpc": "2.0", "id": id, "result": result});
        if writeln!(stdout, "{reply}")
            .and_then(|()| stdout.flush())
            .is_err()
        {
            break;
        }
    }
}
