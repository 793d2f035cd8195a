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

use std::time::{Duration, Instant};

use agent_core::{ToolCall, ToolContext, ToolSet};
use agent_tools::mcp::McpClient;
use serde_json::{Value, json};

fn cpu_time() -> Duration {
    let Ok(stat) = std::fs::read_to_string("/proc/self/stat") else {
        return Duration::ZERO;
    };
    let Some(rest) = stat.rfind(')').map(|i| &stat[i + 2..]) else {
        return Duration::ZERO;
    };
    let fields: Vec<&str> = rest.split(' ').collect();
    // utime and stime are fields 14 and 15 of the whole line, in clock ticks (100 Hz).
    let ticks: u64 =
        fields[11].parse::<u64>().unwrap_or(0) + fields[12].parse::<u64>().unwrap_or(0);
    Duration::from_millis(ticks * 10)
}

fn peak_rss_mib() -> f64 {
    std::fs::read_to_string("/proc/self/status")
        .ok()
        .and_then(|s| {
            s.lines()
                .find_map(|l| l.strip_prefix("VmHWM:"))
                .and_then(|v| v.trim().trim_end_matches(" kB").trim().parse::<f64>().ok())
        })
        .map(|kib| kib / 1024.0)
        .unwrap_or(0.0)
}

async fn call(tools: &ToolSet, name: &str, args: &Value) -> String {
    let checked = tools
        .check_call(&ToolCall::new("b", name, args))
        .expect("valid call");
    tools
        .invoke(
            name,
            checked,
            ToolContext::detached(),
            Duration::from_secs(30),
        )
        .await
        .expect("call succeeds")
        .into_content()
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
