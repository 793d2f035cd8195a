//! MCP benchmark: what our client adds to a tool call, against a real server process.
//!
//! ```text
//! cargo build --release --example mcp_server -p agent-examples
//! cargo run --release --example mcp_bench -- target/release/examples/mcp_server
//! cargo run --release --example mcp_bench -- tests/mcp-servers/node_modules/.bin/mcp-server-everything
//! ```
//!
//! Starts the server given on the command line (stdio), and measures: connect (spawn,
//! handshake, tools/list), sequential calls (median and p99 round trip, client CPU per call),
//! 64 calls in flight at once (calls/s), and the client's peak RSS. The call is `calculator`
//! with "12*37+8" when the server has it, else `echo`.

use std::time::Instant;

use agent_core::ToolSet;
use agent_tests::mcp_servers::call_tool;
use agent_tests::proc_stats::{cpu_time, peak_rss_mib};
use agent_tools::mcp::McpClient;
use serde_json::{Value, json};

async fn call(tools: &ToolSet, name: &str, args: &Value) -> String {
    call_tool(tools, name, args.clone())
        .await
        .expect("call succeeds")
}

#[tokio::main]
async fn main() {
    let mut args = std::env::args().skip(1);
    let Some(program) = args.next() else {
        eprintln!("usage: mcp_bench SERVER_COMMAND [ARGS...]");
        std::process::exit(2);
    };
    let rest: Vec<String> = args.collect();

    let started = Instant::now();
    let client = McpClient::stdio(&program, &rest)
        .connect()
        .await
        .expect("connect");
    let connect = started.elapsed();
    let tools = ToolSet::new(client.tools()).expect("tool set");
    let (name, args) = if tools.get("calculator").is_some() {
        ("calculator", json!({"expression": "12*37+8"}))
    } else {
        ("echo", json!({"message": "hello"}))
    };

    for _ in 0..50 {
        call(&tools, name, &args).await;
    }
    let n = 2000;
    let mut times = Vec::with_capacity(n);
    let cpu0 = cpu_time();
    for _ in 0..n {
        let t = Instant::now();
        call(&tools, name, &args).await;
        times.push(t.elapsed());
    }
    let cpu = cpu_time() - cpu0;
    times.sort();
    let median = times[n / 2];
    let p99 = times[n * 99 / 100];

    let concurrent = 64;
    let total = 4000;
    let t = Instant::now();
    let mut done = 0;
    while done < total {
        let batch: Vec<_> = (0..concurrent).map(|_| call(&tools, name, &args)).collect();
        futures::future::join_all(batch).await;
        done += concurrent;
    }
    let rate = done as f64 / t.elapsed().as_secs_f64();

    println!("server: {program} {}", rest.join(" "));
    println!("tool: {name}");
    println!(
        "connect (spawn + handshake + tools/list): {:.1} ms",
        connect.as_secs_f64() * 1e3
    );
    println!(
        "sequential: median {:.0} µs, p99 {:.0} µs per call; client CPU {:.0} µs per call",
        median.as_secs_f64() * 1e6,
        p99.as_secs_f64() * 1e6,
        cpu.as_secs_f64() * 1e6 / n as f64
    );
    println!("{concurrent} in flight: {rate:.0} calls/s");
    println!("client peak RSS: {:.1} MiB", peak_rss_mib());
    client.shutdown().await.expect("shutdown");
}
