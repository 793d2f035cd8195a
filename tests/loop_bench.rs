//! End-to-end benchmark: the agent loop over real HTTP against a mock OpenAI-compatible
//! server in a separate process, compared with a minimal hand-written loop on the same HTTP
//! client (reqwest + serde_json, no framework), the floor.
//!
//! ```text
//! cargo run --release --example loop_bench -- --runs 2000 --concurrency 64 --latency-ms 0
//! cargo run --release --example loop_bench -- --runs 2000 --concurrency 1000 --latency-ms 200
//! cargo run --release --example loop_bench -- --runs 200 --concurrency 1 --turns 100
//! cargo run --release --example loop_bench -- --runs 500 --concurrency 1 --store 1
//! cargo run --release --example loop_bench -- --runs 2000 --concurrency 1 --trace file
//! ```
//!
//! Each run is a fresh conversation: "Compute 2+3 and 4*5" with tools `add` and `multiply`.
//! The server answers with both tool calls in one turn (repeating that until the
//! conversation has `--turns` model turns), then "The results are 5 and 20."; every run
//! checks its answer. Client and server run in their own processes, so CPU time and peak RSS
//! are the client's alone. Prints runs/s, CPU ms per run and per turn (user + sys), peak
//! RSS and failures, for ours and the floor, and the ratios. With `--store 1` our agent
//! journals every run in a SQLite file (agent-store; `synchronous=FULL`, so each commit
//! waits for the disk): the floor stays as it is, so the ratio shows what durability costs.
//! `--trace` sets what our client's spans go to, for the cost of tracing: `none` (no
//! subscriber, the default), `fmt` (tracing-subscriber's default formatter, into a sink),
//! `file` (the JSON-lines trace file, in a temporary folder) or `otlp` (the OTLP/HTTP
//! exporter, batched, to the mock server's process, which accepts `/v1/traces`).

use std::process::{Command, Stdio};
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::{Duration, Instant};

use agent_core::backends::openai::OpenAiCompatible;
use agent_core::{LlmAgent, RunLimits, ToolMeta, tool_fn};
use agent_tests::fake_server::{FakeServer, Recorded, Reply};
use agent_tests::proc_stats::{cpu_time, peak_rss_kib};
use serde_json::{Value, json};

const PROMPT: &str = "Compute 2+3 and 4*5";
const ANSWER: &str = "The results are 5 and 20.";

#[derive(Clone, Debug)]
struct Options {
    runs: usize,
    concurrency: usize,
    latency_ms: u64,
    turns: usize,
    repeat: usize,
    store: bool,
    trace: Trace,
}

/// What our client's spans go to.
#[derive(Clone, Copy, Debug, PartialEq)]
enum Trace {
    None,
    Fmt,
    File,
    Otlp,
}

fn parse_options(args: &[String]) -> Result<Options, String> {
    let mut o = Options {
        runs: 2000,
        concurrency: 64,
        latency_ms: 0,
        turns: 2,
        repeat: 3,
        store: false,
        trace: Trace::None,
    };
    let mut i = 0;
    while i < args.len() {
        let value = |i: usize| {
            args.get(i + 1)
                .and_then(|v| v.parse::<u64>().ok())
                .ok_or_else(|| format!("{} needs a number", args[i]))
        };
        match args[i].as_str() {
            "--runs" => o.runs = value(i)? as usize,
            "--concurrency" => o.concurrency = value(i)?.max(1) as usize,
            "--latency-ms" => o.latency_ms = value(i)?,
            "--turns" => o.turns = value(i)?.max(2) as usize,
            "--repeat" => o.repeat = value(i)?.max(1) as usize,
            "--store" => o.store = value(i)? != 0,
            "--trace" => {
                o.trace = match args.get(i + 1).map(String::as_str) {
                    Some("none") => Trace::None,
                    Some("fmt") => Trace::Fmt,
                    Some("file") => Trace::File,
                    Some("otlp") => Trace::Otlp,
                    _ => return Err("--trace needs none, fmt, file or otlp".into()),
                }
            }
            other => return Err(format!("unknown option {other}")),
        }
        i += 2;
    }
    Ok(o)
}

fn main() {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let result = match args.first().map(String::as_str) {
        Some("--serve") => serve(&args[1..]),
        Some("--client") => client(&args[1..]),
        _ => parent(&args),
    };
    if let Err(e) = result {
        eprintln!("loop_bench: {e}");
        std::process::exit(1);
    }
}

// ------------------------------------------------------------------------- the mock server

fn mock_reply(turns: usize, latency: Duration) -> impl Fn(&Recorded, usize) -> Reply + Send + Sync {
    move |request, _| {
        if request.path.ends_with("/v1/traces") {
            // The OTLP sink: an empty ExportTraceServiceResponse.
            return Reply::raw(200, "application/x-protobuf", Vec::new());
        }
        let body: Value = serde_json::from_slice(&request.body).unwrap_or(Value::Null);
        let assistants = body["messages"]
            .as_array()
            .map_or(0, |m| m.iter().filter(|m| m["role"] == "assistant").count());
        let reply = if assistants + 1 >= turns {
            json!({"id": "x", "object": "chat.completion", "model": "mock",
                "choices": [{"index": 0, "message": {"role": "assistant", "content": ANSWER}, "finish_reason": "stop"}],
                "usage": {"prompt_tokens": 60, "completion_tokens": 8, "total_tokens": 68}})
        } else {
            let n = assistants;
            json!({"id": "x", "object": "chat.completion", "model": "mock",
                "choices": [{"index": 0, "message": {"role": "assistant", "content": null, "tool_calls": [
                    {"id": format!("call_{n}a"), "type": "function", "function": {"name": "add", "arguments": "{\"a\":2,\"b\":3}"}},
                    {"id": format!("call_{n}m"), "type": "function", "function": {"name": "multiply", "arguments": "{\"a\":4,\"b\":5}"}}
                ]}, "finish_reason": "tool_calls"}],
                "usage": {"prompt_tokens": 50, "completion_tokens": 30, "total_tokens": 80}})
        };
        Reply::json(200, &reply).after(latency)
    }
}

fn serve(args: &[String]) -> Result<(), String> {
    let o = parse_options(args)?;
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .map_err(|e| e.to_string())?;
    runtime.block_on(async {
        let server = FakeServer::start_with(
            mock_reply(o.turns, Duration::from_millis(o.latency_ms)),
            false,
            0,
        )
        .await;
        println!("{}", server.base_url());
        // Serve until the parent closes our stdin.
        let _ = tokio::task::spawn_blocking(|| {
            let mut sink = Vec::new();
            std::io::Read::read_to_end(&mut std::io::stdin(), &mut sink)
        })
        .await;
        drop(server);
    });
    Ok(())
}

// ------------------------------------------------------------------------- the two clients

fn client(args: &[String]) -> Result<(), String> {
    let (mode, rest) = args.split_first().ok_or("--client needs ours|floor")?;
    let (url, rest) = rest.split_first().ok_or("--client needs a server URL")?;
    let o = parse_options(rest)?;
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .map_err(|e| e.to_string())?;
    let failures = Arc::new(AtomicUsize::new(0));
    // Removed when the client ends.
    let store_dir = o
        .store
        .then(tempfile::tempdir)
        .transpose()
        .map_err(|e| e.to_string())?;
    let trace_dir = tempfile::tempdir().map_err(|e| e.to_string())?;
    let _tracing = (mode == "ours")
        .then(|| start_tracing(o.trace, url, trace_dir.path()))
        .transpose()?;
    let (wall, cpu) = runtime.block_on(async {
        let work: Arc<
            dyn Fn() -> futures::future::BoxFuture<'static, Result<(), String>> + Send + Sync,
        > = match mode.as_str() {
            "ours" => {
                let agent = Arc::new(ours(url, o.turns, store_dir.as_ref().map(|d| d.path()))?);
                Arc::new(move || {
                    let agent = agent.clone();
                    Box::pin(async move {
                        let result = agent.ask(PROMPT).await.map_err(|e| e.to_string())?;
                        (result.text == ANSWER).then_some(()).ok_or(result.text)
                    })
                })
            }
            "floor" => {
                // reqwest 0.13 takes the process-wide rustls provider (ring, as ours).
                let _ = rustls::crypto::ring::default_provider().install_default();
                let http = reqwest::Client::builder()
                    .tcp_nodelay(true)
                    .build()
                    .map_err(|e| e.to_string())?;
                let url = Arc::new(format!("{url}/chat/completions"));
                Arc::new(move || {
                    let http = http.clone();
                    let url = url.clone();
                    Box::pin(async move { floor_run(&http, &url).await })
                })
            }
            other => return Err(format!("unknown client {other}")),
        };
        // Warm up the connection pool and the allocator outside the measurement.
        for _ in 0..o.concurrency.min(8) {
            let _ = work().await;
        }
        let semaphore = Arc::new(tokio::sync::Semaphore::new(o.concurrency));
        let cpu_before = cpu_time();
        let started = Instant::now();
        let mut tasks = Vec::with_capacity(o.runs);
        for _ in 0..o.runs {
            let permit = semaphore
                .clone()
                .acquire_owned()
                .await
                .map_err(|e| e.to_string())?;
            let work = work.clone();
            let failures = failures.clone();
            tasks.push(tokio::spawn(async move {
                if let Err(e) = work().await
                    && failures.fetch_add(1, Ordering::Relaxed) < 3
                {
                    eprintln!("run failed: {e}");
                }
                drop(permit);
            }));
        }
        for task in tasks {
            let _ = task.await;
        }
        Ok::<_, String>((started.elapsed(), cpu_time() - cpu_before))
    })?;
    println!(
        "{}",
        json!({
            "wall_ms": wall.as_secs_f64() * 1000.0,
            "cpu_ms": cpu.as_secs_f64() * 1000.0,
            "peak_rss_kib": peak_rss_kib(),
            "failures": failures.load(Ordering::Relaxed),
        })
    );
    Ok(())
}

/// Installs what `--trace` asks for as the global subscriber; what it returns flushes the
/// file or the exporter when dropped.
fn start_tracing(
    trace: Trace,
    url: &str,
    dir: &std::path::Path,
) -> Result<Option<agent_core::telemetry::TelemetryGuard>, String> {
    use agent_core::telemetry::{OtlpExporter, Telemetry};
    match trace {
        Trace::None => Ok(None),
        Trace::Fmt => {
            tracing_subscriber::fmt()
                .with_writer(std::io::sink)
                .try_init()
                .map_err(|e| e.to_string())?;
            Ok(None)
        }
        Trace::File => Telemetry::new()
            .trace_file(dir.join("run.jsonl"))
            .init()
            .map(Some)
            .map_err(|e| e.to_string()),
        Trace::Otlp => {
            let base = url.trim_end_matches("/v1");
            Telemetry::new()
                .otlp(OtlpExporter::new().endpoint(base))
                .init()
                .map(Some)
                .map_err(|e| e.to_string())
        }
    }
}

#[derive(serde::Deserialize, schemars::JsonSchema)]
struct Pair {
    a: i64,
    b: i64,
}

fn ours(url: &str, turns: usize, store: Option<&std::path::Path>) -> Result<LlmAgent, String> {
    let model = OpenAiCompatible::builder("openai-compatible")
        .map_err(|e| e.to_string())?
        .model("mock")
        .base_url(url)
        .build()
        .map_err(|e| e.to_string())?;
    let mut builder = LlmAgent::builder(Arc::new(model));
    if let Some(dir) = store {
        let store =
            agent_store::SqliteStore::open(dir.join("runs.db")).map_err(|e| e.to_string())?;
        builder = builder.store(Arc::new(store));
    }
    builder
        .instructions("Use the tools for arithmetic.")
        .tool(
            tool_fn("add", "Adds two integers.", |p: Pair, _| async move {
                Ok(p.a + p.b)
            })
            .with_meta(ToolMeta::read_only()),
        )
        .tool(
            tool_fn(
                "multiply",
                "Multiplies two integers.",
                |p: Pair, _| async move { Ok(p.a * p.b) },
            )
            .with_meta(ToolMeta::read_only()),
        )
        .limits(RunLimits {
            max_turns: turns as u32 + 1,
            ..Default::default()
        })
        .build()
        .map_err(|e| e.to_string())
}

fn floor_tools() -> Value {
    let params = json!({"type": "object", "properties": {"a": {"type": "integer"}, "b": {"type": "integer"}}, "required": ["a", "b"]});
    json!([
        {"type": "function", "function": {"name": "add", "description": "Adds two integers.", "parameters": params}},
        {"type": "function", "function": {"name": "multiply", "description": "Multiplies two integers.", "parameters": params}}
    ])
}

/// The floor: what a program with no framework does, and nothing more.
async fn floor_run(http: &reqwest::Client, url: &str) -> Result<(), String> {
    let tools = floor_tools();
    let mut messages = vec![
        json!({"role": "system", "content": "Use the tools for arithmetic."}),
        json!({"role": "user", "content": PROMPT}),
    ];
    loop {
        let body = serde_json::to_vec(
            &json!({"model": "mock", "messages": messages, "tools": tools, "stream": false}),
        )
        .map_err(|e| e.to_string())?;
        let bytes = http
            .post(url)
            .header("content-type", "application/json")
            .body(body)
            .send()
            .await
            .map_err(|e| e.to_string())?
            .bytes()
            .await
            .map_err(|e| e.to_string())?;
        let mut response: Value = serde_json::from_slice(&bytes).map_err(|e| e.to_string())?;
        let message = response["choices"][0]["message"].take();
        let Some(calls) = message["tool_calls"].as_array().cloned() else {
            let text = message["content"].as_str().unwrap_or_default();
            return (text == ANSWER)
                .then_some(())
                .ok_or_else(|| text.to_owned());
        };
        messages.push(message);
        for call in calls {
            let args: Value =
                serde_json::from_str(call["function"]["arguments"].as_str().unwrap_or("{}"))
                    .map_err(|e| e.to_string())?;
            let (a, b) = (
                args["a"].as_i64().unwrap_or(0),
                args["b"].as_i64().unwrap_or(0),
            );
            let result = match call["function"]["name"].as_str() {
                Some("add") => a + b,
                Some("multiply") => a * b,
                _ => return Err("unknown tool".into()),
            };
            messages.push(
                json!({"role": "tool", "tool_call_id": call["id"], "content": result.to_string()}),
            );
        }
    }
}

// ------------------------------------------------------------------------- the parent

#[derive(Debug)]
struct Measured {
    wall_ms: f64,
    cpu_ms: f64,
    peak_rss_kib: u64,
    failures: u64,
}

fn run_client(mode: &str, url: &str, args: &[String]) -> Result<Measured, String> {
    let exe = std::env::current_exe().map_err(|e| e.to_string())?;
    let output = Command::new(exe)
        .arg("--client")
        .arg(mode)
        .arg(url)
        .args(args)
        .stderr(Stdio::inherit())
        .output()
        .map_err(|e| e.to_string())?;
    if !output.status.success() {
        return Err(format!("the {mode} client failed"));
    }
    let v: Value = serde_json::from_slice(&output.stdout).map_err(|e| format!("{mode}: {e}"))?;
    Ok(Measured {
        wall_ms: v["wall_ms"].as_f64().unwrap_or(0.0),
        cpu_ms: v["cpu_ms"].as_f64().unwrap_or(0.0),
        peak_rss_kib: v["peak_rss_kib"].as_u64().unwrap_or(0),
        failures: v["failures"].as_u64().unwrap_or(0),
    })
}

fn median(mut all: Vec<Measured>) -> Measured {
    all.sort_by(|a, b| a.cpu_ms.total_cmp(&b.cpu_ms));
    let middle = all.len() / 2;
    all.swap_remove(middle)
}

fn parent(args: &[String]) -> Result<(), String> {
    let o = parse_options(args)?;
    let exe = std::env::current_exe().map_err(|e| e.to_string())?;
    let mut server = Command::new(exe)
        .arg("--serve")
        .args(args)
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .spawn()
        .map_err(|e| e.to_string())?;
    let mut line = String::new();
    if let Some(stdout) = server.stdout.as_mut() {
        std::io::BufRead::read_line(&mut std::io::BufReader::new(stdout), &mut line)
            .map_err(|e| e.to_string())?;
    }
    let url = line.trim().to_owned();
    println!(
        "loop_bench: {} runs, {} at a time, {} ms model latency, {} model turns per run, median of {}{} (server: separate process at {url})",
        o.runs,
        o.concurrency,
        o.latency_ms,
        o.turns,
        o.repeat,
        if o.store {
            ", ours with a SQLite store"
        } else {
            ""
        }
    );
    // Alternate the two clients and keep each one's median CPU, so that noise from the
    // shared machine hits both alike.
    let mut floors = Vec::new();
    let mut ourses = Vec::new();
    let mut outcome = Ok(());
    for _ in 0..o.repeat {
        match (
            run_client("floor", &url, args),
            run_client("ours", &url, args),
        ) {
            (Ok(f), Ok(u)) => {
                floors.push(f);
                ourses.push(u);
            }
            (Err(e), _) | (_, Err(e)) => {
                outcome = Err(e);
                break;
            }
        }
    }
    drop(server.stdin.take());
    let _ = server.wait();
    outcome?;
    let (floor, ours) = (median(floors), median(ourses));
    let turns = (o.runs * o.turns) as f64;
    println!(
        "{:<8} {:>10} {:>12} {:>13} {:>13} {:>9}",
        "", "runs/s", "CPU ms/run", "CPU µs/turn", "peak RSS MiB", "failures"
    );
    for (name, m) in [("floor", &floor), ("ours", &ours)] {
        println!(
            "{:<8} {:>10.0} {:>12.3} {:>13.1} {:>13.1} {:>9}",
            name,
            o.runs as f64 / (m.wall_ms / 1000.0),
            m.cpu_ms / o.runs as f64,
            m.cpu_ms * 1000.0 / turns,
            m.peak_rss_kib as f64 / 1024.0,
            m.failures
        );
    }
    println!(
        "ours/floor: CPU {:.2}x, wall {:.2}x ({:.0} ms vs {:.0} ms), peak RSS {:.2}x",
        ours.cpu_ms / floor.cpu_ms.max(0.001),
        ours.wall_ms / floor.wall_ms.max(0.001),
        ours.wall_ms,
        floor.wall_ms,
        ours.peak_rss_kib as f64 / floor.peak_rss_kib.max(1) as f64
    );
    Ok(())
}
