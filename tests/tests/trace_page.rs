//! The local trace file and the trace page: a run with a nested agent, a retried model
//! request and a failing tool is written by `Telemetry::trace_file` (the process's global
//! subscriber, on a multi-thread runtime); `trace_view` turns it into a page and a text
//! summary; Debian's chromium renders the page from a file, and the rendered DOM shows the
//! turns, the three time shares and the totals. A screenshot is left for people to look
//! at. Without chromium the browser test says how to run it and passes as skipped, unless
//! `AGENT_BROWSER_REQUIRED=1` (as in CI).

// Test helpers outside #[test] fns unwrap and panic: a failure there is a failed test.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::sync::{Arc, OnceLock};
use std::time::{Duration, Instant};

use agent_core::prelude::*;
use agent_core::telemetry::Telemetry;
use agent_core::telemetry::view::TraceView;
use agent_core::testing::ScriptedModel;
use agent_core::{AgentTool, ChatModel};
use agent_tests::fake_server::{FakeServer, Reply, openai_on, quick_retries};
use serde_json::{Value, json};

#[derive(serde::Deserialize, schemars::JsonSchema)]
struct Query {
    q: String,
}

/// Records one run into a trace file, once for the whole binary (the subscriber is global).
fn recorded() -> &'static (PathBuf, String) {
    static RECORDED: OnceLock<(PathBuf, String)> = OnceLock::new();
    RECORDED.get_or_init(|| {
        let dir = tempfile::tempdir().unwrap().keep();
        let path = dir.join("run.jsonl");
        let guard = Telemetry::new().trace_file(&path).init().unwrap();
        let answer = tokio::runtime::Builder::new_multi_thread()
            .worker_threads(2)
            .enable_all()
            .build()
            .unwrap()
            .block_on(planner_run());
        assert_eq!(answer, "Done: the answer is 42.");
        drop(guard);
        let text = std::fs::read_to_string(&path).unwrap();
        (path, text)
    })
}

/// A planner on a fake OpenAI server (its first request is rate limited once) calls a
/// researcher agent (a tool) and a failing tool in turn 1, and answers in turn 2.
async fn planner_run() -> String {
    let server = FakeServer::start(|req, n| {
        if n == 0 {
            return Reply::json(429, &json!({"error": {"message": "slow down"}}))
                .header("retry-after", "0");
        }
        let has_results = req.json()["messages"]
            .as_array()
            .is_some_and(|m| m.iter().any(|m| m["role"] == "tool"));
        let body = if has_results {
            json!({"choices": [{"message": {"content": "Done: the answer is 42."},
                                "finish_reason": "stop"}],
                   "usage": {"prompt_tokens": 300, "completion_tokens": 12}})
        } else {
            json!({"choices": [{"message": {"content": null, "tool_calls": [
                      {"id": "r1", "type": "function", "function":
                        {"name": "researcher", "arguments": "{\"input\":\"what is 6*7?\"}"}},
                      {"id": "f1", "type": "function", "function":
                        {"name": "flaky", "arguments": "{\"q\":\"x\"}"}}]},
                    "finish_reason": "tool_calls"}],
                   "usage": {"prompt_tokens": 200, "completion_tokens": 30}})
        };
        Reply::json(200, &body).after(Duration::from_millis(15))
    })
    .await;
    let planner_model = openai_on(&server, "gpt-4o-mini", "sk-planner", quick_retries()).unwrap();
    let researcher = LlmAgent::builder(Arc::new(
        ScriptedModel::named("gpt-4o")
            .then_tool_call("lookup", json!({"q": "6*7"}))
            .then_text("42"),
    ))
    .name("researcher")
    .description("Looks things up.")
    .tool(tool_fn("lookup", "Looks up.", |_: Query, _| async move {
        tokio::time::sleep(Duration::from_millis(10)).await;
        Ok("42")
    }))
    .build()
    .unwrap();
    let planner = LlmAgent::builder(Arc::new(planner_model) as Arc<dyn ChatModel>)
        .name("planner")
        .tool(AgentTool::new(Arc::new(researcher)).unwrap())
        .tool(tool_fn("flaky", "Fails.", |x: Query, _| async move {
            Err::<String, _>(ToolError::failed(format!("no {}", x.q)))
        }))
        .build()
        .unwrap();
    planner.ask("What is 6*7?").await.unwrap().text
}

fn lines(text: &str) -> Vec<Value> {
    text.lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect()
}

#[test]
fn the_trace_file_holds_every_span_with_the_nested_agent_under_its_tool() {
    let (_, text) = recorded();
    let lines = lines(text);
    assert_eq!(lines[0], json!({"type": "trace_file", "version": 1}));
    let spans: Vec<&Value> = lines.iter().filter(|l| l["type"] == "span").collect();
    let find = |name: &str, key: &str, value: &str| -> &Value {
        spans
            .iter()
            .find(|s| s["name"] == name && s["attrs"][key] == value)
            .unwrap_or_else(|| panic!("no {name} span with {key}={value} in {text}"))
    };
    let planner = find("invoke_agent", "gen_ai.agent.name", "planner");
    assert_eq!(planner["parent"], Value::Null);
    let tool = find("execute_tool", "gen_ai.tool.name", "researcher");
    assert_eq!(tool["parent"], planner["id"]);
    let researcher = find("invoke_agent", "gen_ai.agent.name", "researcher");
    assert_eq!(
        researcher["parent"], tool["id"],
        "the nested agent runs in its tool's span, even on a task of its own"
    );
    let lookup = find("execute_tool", "gen_ai.tool.name", "lookup");
    assert_eq!(lookup["parent"], researcher["id"]);
    let flaky = find("execute_tool", "gen_ai.tool.name", "flaky");
    assert_eq!(flaky["attrs"]["error.type"], "failed");
    let chats: Vec<_> = spans
        .iter()
        .filter(|s| s["name"] == "chat" && s["parent"] == planner["id"])
        .collect();
    assert_eq!(chats.len(), 2);
    assert_eq!(chats[0]["attrs"]["agentic.retries"], 1);
    assert!(
        lines.iter().any(|l| l["type"] == "event"
            && l["level"] == "WARN"
            && l["attrs"]["error.type"] == "rate_limited"
            && l["span"] == chats[0]["id"]),
        "the retry is an event of its chat span"
    );
    for span in &spans {
        assert!(span["end_us"].as_u64().unwrap() >= span["start_us"].as_u64().unwrap());
    }
    assert!(!text.contains("sk-planner"));
}

#[test]
fn the_trace_view_reads_the_run_back_with_its_nested_agent() {
    let (_, text) = recorded();
    let view = TraceView::parse(text).unwrap();
    assert_eq!(view.runs.len(), 1, "the nested agent is inside the planner");
    let planner = &view.runs[0];
    assert_eq!(planner.name, "planner");
    assert_eq!(planner.turns.len(), 2);
    let turn1 = &planner.turns[0];
    assert_eq!((turn1.input_tokens, turn1.output_tokens), (200, 30));
    assert_eq!(turn1.retries, 1);
    assert!(turn1.model_us >= 15_000, "the model answered after 15 ms");
    assert_eq!(turn1.tools.len(), 2);
    let researcher = &turn1.tools.iter().find(|t| t.name == "researcher").unwrap();
    assert_eq!(researcher.agents.len(), 1);
    assert_eq!(researcher.agents[0].name, "researcher");
    assert_eq!(researcher.agents[0].turns.len(), 2);
    assert!(turn1.tool_us >= 10_000, "the lookup slept 10 ms");
    assert_eq!(
        turn1
            .tools
            .iter()
            .find(|t| t.name == "flaky")
            .unwrap()
            .error
            .as_deref(),
        Some("failed")
    );
    assert_eq!(
        turn1.model_us + turn1.tool_us + turn1.framework_us,
        turn1.duration_us
    );
    assert_eq!(planner.own.input_tokens, 500);
    assert!(
        planner.total.input_tokens > planner.own.input_tokens,
        "nested tokens count"
    );
    assert_eq!(planner.own.errors, 1);
}

fn trace_view(args: &[&str]) -> String {
    let out = Command::new(env!("CARGO_BIN_EXE_trace_view_e2e"))
        .args(args)
        .output()
        .unwrap();
    agent_tests::stdout_of_success(&out)
}

#[test]
fn trace_view_prints_a_text_summary_and_refuses_what_is_not_a_trace() {
    let (path, _) = recorded();
    let text = trace_view(&["--text", path.to_str().unwrap()]);
    assert!(text.contains("agent planner (gpt-4o-mini)"), "{text}");
    assert!(text.contains("  turn 1: model "), "{text}");
    assert!(text.contains("RETRIES 1"), "{text}");
    assert!(text.contains("TOOL flaky FAILED: failed"), "{text}");
    assert!(
        text.contains("    agent researcher (gpt-4o)"),
        "nested, indented: {text}"
    );
    assert!(text.contains("with nested agents:"), "{text}");

    let dir = tempfile::tempdir().unwrap();
    let bad = dir.path().join("bad.jsonl");
    std::fs::write(&bad, "{\"type\":\"trace_file\",\"version\":1}\nnot json\n").unwrap();
    let out = Command::new(env!("CARGO_BIN_EXE_trace_view_e2e"))
        .arg(&bad)
        .output()
        .unwrap();
    assert!(!out.status.success());
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        stderr.contains("line 2 of the trace file is not JSON"),
        "{stderr}"
    );
    let out = Command::new(env!("CARGO_BIN_EXE_trace_view_e2e"))
        .arg(dir.path().join("missing.jsonl"))
        .output()
        .unwrap();
    assert!(!out.status.success());
    assert!(String::from_utf8_lossy(&out.stderr).contains("cannot read"));
}

/// A trace with known times: turn 1 is 0..50 ms (model 10..30, tools 30..40 and 35..45 in
/// parallel), turn 2 is 50..80 ms (model 50..70), the run ends at 80 ms.
const KNOWN: &str = r#"{"type":"trace_file","version":1}
{"type":"span","id":2,"parent":1,"name":"chat","start_us":10000,"end_us":30000,"attrs":{"gen_ai.request.model":"m","agentic.turn":1,"gen_ai.usage.input_tokens":100,"gen_ai.usage.output_tokens":10,"agentic.usage.cost_usd":0.25,"agentic.retries":2}}
{"type":"span","id":3,"parent":1,"name":"execute_tool","start_us":30000,"end_us":40000,"attrs":{"gen_ai.tool.name":"search","agentic.turn":1}}
{"type":"span","id":4,"parent":1,"name":"execute_tool","start_us":35000,"end_us":45000,"attrs":{"gen_ai.tool.name":"fetch","agentic.turn":1,"error.type":"timeout"}}
{"type":"span","id":5,"parent":1,"name":"chat","start_us":50000,"end_us":70000,"attrs":{"gen_ai.request.model":"m","agentic.turn":2,"gen_ai.usage.input_tokens":200,"gen_ai.usage.output_tokens":20,"agentic.usage.cost_usd":0.5}}
{"type":"span","id":1,"parent":null,"name":"invoke_agent","start_us":0,"end_us":80000,"attrs":{"gen_ai.agent.name":"known","gen_ai.request.model":"m"}}
"#;

#[test]
fn each_turn_is_split_into_model_tool_and_framework_time() {
    let view = TraceView::parse(KNOWN).unwrap();
    let run = &view.runs[0];
    let t1 = &run.turns[0];
    assert_eq!(
        (t1.duration_us, t1.model_us, t1.tool_us),
        (50_000, 20_000, 15_000)
    );
    assert_eq!(t1.framework_us, 15_000);
    let t2 = &run.turns[1];
    assert_eq!(
        (t2.duration_us, t2.model_us, t2.tool_us, t2.framework_us),
        (30_000, 20_000, 0, 10_000)
    );
    assert_eq!((run.own.input_tokens, run.own.output_tokens), (300, 30));
    assert_eq!((run.own.retries, run.own.errors), (2, 1));
    assert!((run.own.cost_usd - 0.75).abs() < 1e-12);
}

fn chromium() -> Option<PathBuf> {
    if let Some(path) = std::env::var_os("AGENT_CHROMIUM") {
        return Some(PathBuf::from(path));
    }
    ["/usr/bin/chromium", "/usr/bin/chromium-browser"]
        .iter()
        .map(PathBuf::from)
        .find(|p| p.exists())
}

/// Runs headless chromium on a page from a file and returns what it prints, waiting at most
/// two minutes (a browser that hangs fails the test rather than the whole run).
fn headless(browser: &Path, profile: &Path, args: &[String]) -> String {
    let mut child = Command::new(browser)
        .args([
            "--headless",
            "--no-sandbox",
            "--disable-gpu",
            "--disable-dev-shm-usage",
            "--no-first-run",
            "--hide-scrollbars",
        ])
        .arg(format!("--user-data-dir={}", profile.display()))
        .args(args)
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    let started = Instant::now();
    loop {
        if child.try_wait().unwrap().is_some() {
            break;
        }
        if started.elapsed() > Duration::from_secs(120) {
            let _ = child.kill();
            panic!("chromium did not finish within two minutes");
        }
        std::thread::sleep(Duration::from_millis(50));
    }
    let out = child.wait_with_output().unwrap();
    String::from_utf8_lossy(&out.stdout).into_owned()
}

#[test]
fn the_trace_page_renders_in_a_real_browser() {
    let Some(browser) = chromium() else {
        if std::env::var("AGENT_BROWSER_REQUIRED").as_deref() == Ok("1") {
            panic!("AGENT_BROWSER_REQUIRED=1 but no chromium: apt-get install -y chromium");
        }
        println!(
            "skipped: no chromium; `apt-get install -y chromium` and run \
             `cargo test -p agent-tests --test trace_page` to check the trace page in a browser"
        );
        return;
    };
    let dir = tempfile::tempdir().unwrap();
    let known = dir.path().join("known.jsonl");
    std::fs::write(&known, KNOWN).unwrap();
    let html = trace_view(&[known.to_str().unwrap()]);
    assert!(!html.contains("http://") && !html.contains("https://") && !html.contains("<script"));
    let page = dir.path().join("known.html");
    std::fs::write(&page, &html).unwrap();
    let profile = dir.path().join("profile");
    let url = format!("file://{}", page.display());
    let dom = headless(&browser, &profile, &["--dump-dom".into(), url]);
    assert!(
        dom.contains("<section class=\"agent\" data-agent=\"known\""),
        "{dom}"
    );
    // The turns, each with its three time shares.
    assert!(
        dom.contains("<div class=\"turn-row\" data-turn=\"1\">"),
        "{dom}"
    );
    assert!(
        dom.contains("<div class=\"turn-row\" data-turn=\"2\">"),
        "{dom}"
    );
    for row in [
        "<tr class=\"turn\" data-turn=\"1\"><td>1</td><td class=\"model-name\">m</td>\
         <td class=\"model-ms\">20.0</td><td class=\"tool-ms\">15.0</td>\
         <td class=\"framework-ms\">15.0</td><td class=\"input\">100</td>\
         <td class=\"output\">10</td><td class=\"cost\">$0.250000</td>",
        "<tr class=\"turn\" data-turn=\"2\"><td>2</td><td class=\"model-name\">m</td>\
         <td class=\"model-ms\">20.0</td><td class=\"tool-ms\">0.0</td>\
         <td class=\"framework-ms\">10.0</td><td class=\"input\">200</td>\
         <td class=\"output\">20</td><td class=\"cost\">$0.500000</td>",
        // The totals.
        "<tr class=\"total\"><td>total</td><td></td><td class=\"model-ms\">40.0</td>\
         <td class=\"tool-ms\">15.0</td><td class=\"framework-ms\">25.0</td>\
         <td class=\"input\">300</td><td class=\"output\">30</td><td class=\"cost\">$0.750000</td>",
    ] {
        assert!(dom.contains(row), "{row} not in {dom}");
    }
    assert!(
        dom.contains("<span class=\"retry\">2 retries</span>"),
        "{dom}"
    );
    assert!(
        dom.contains("<span class=\"error\">fetch failed: timeout</span>"),
        "{dom}"
    );
    assert!(
        dom.contains("style=\"width:40.00%\""),
        "turn 1's model share: {dom}"
    );

    // A picture of the recorded run, for people.
    let (recorded, _) = recorded();
    let html = trace_view(&[recorded.to_str().unwrap()]);
    let page = dir.path().join("run.html");
    std::fs::write(&page, html).unwrap();
    let shot = Path::new(env!("CARGO_TARGET_TMPDIR")).join("trace-page.png");
    let _ = std::fs::remove_file(&shot);
    headless(
        &browser,
        &profile,
        &[
            format!("--screenshot={}", shot.display()),
            "--window-size=1100,760".into(),
            format!("file://{}", page.display()),
        ],
    );
    let png = std::fs::read(&shot).unwrap();
    assert!(png.starts_with(b"\x89PNG"), "a PNG screenshot");
    println!("screenshot: {}", shot.display());
}

#[test]
fn agent_trace_file_names_the_file_and_nothing_is_written_without_it() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("quickstart.jsonl");
    let run = |trace: Option<&Path>| {
        let mut command = Command::new(env!("CARGO_BIN_EXE_quickstart_e2e"));
        command
            .env_remove("AGENT_MODEL")
            .env_remove("AGENT_TRACE_FILE");
        command.current_dir(dir.path());
        if let Some(trace) = trace {
            command.env("AGENT_TRACE_FILE", trace);
        }
        agent_tests::stdout_of_success(&command.output().unwrap())
    };
    run(None);
    assert_eq!(
        std::fs::read_dir(dir.path()).unwrap().count(),
        0,
        "nothing written unless asked"
    );
    run(Some(&path));
    let view = TraceView::parse(&std::fs::read_to_string(&path).unwrap()).unwrap();
    assert_eq!(view.runs.len(), 1);
    assert_eq!(view.runs[0].name, "quickstart");
    assert_eq!(view.runs[0].turns.len(), 2);
}
