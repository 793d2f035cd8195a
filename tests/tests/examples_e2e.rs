//! The quickstart binary, run as a user runs it: offline, against a conforming server named
//! by `AGENT_MODEL` and `OPENAI_BASE_URL`, and with a key missing.

use std::path::PathBuf;
use std::process::Output;

use agent_tests::fake_server::{FakeServer, Reply, calculator_six_times_seven};
use serde_json::json;

fn quickstart() -> PathBuf {
    PathBuf::from(env!("CARGO_BIN_EXE_quickstart_e2e"))
}

async fn run(args: &[&str], env: &[(&str, String)]) -> Output {
    let mut command = tokio::process::Command::new(quickstart());
    command.args(args).env_remove("AGENT_MODEL");
    for var in [
        "OPENAI_API_KEY",
        "OPENAI_BASE_URL",
        "MISTRAL_API_KEY",
        "ANTHROPIC_API_KEY",
        "ANTHROPIC_BASE_URL",
        "GEMINI_API_KEY",
        "GOOGLE_API_KEY",
        "GEMINI_BASE_URL",
    ] {
        command.env_remove(var);
    }
    for (k, v) in env {
        command.env(k, v);
    }
    command.output().await.unwrap()
}

#[tokio::test]
async fn the_quickstart_runs_offline_and_says_so() {
    let out = run(&[], &[]).await;
    let stdout = agent_tests::stdout_of_success(&out);
    assert!(
        stdout
            .lines()
            .next()
            .unwrap()
            .contains("built-in scripted model"),
        "{stdout}"
    );
    assert!(stdout.contains("← calculator: 452"), "{stdout}");
    assert!(stdout.contains("answer: The answer is 452."), "{stdout}");
}

#[tokio::test]
async fn the_quickstart_runs_on_any_conforming_server_named_by_agent_model() {
    let server = FakeServer::start(calculator_six_times_seven).await;
    let out = run(
        &["What is six times seven?"],
        &[
            ("AGENT_MODEL", "openai:gpt-4o-mini".into()),
            ("OPENAI_BASE_URL", server.base_url()),
            ("OPENAI_API_KEY", "x".into()),
        ],
    )
    .await;
    let stdout = agent_tests::stdout_of_success(&out);
    assert!(
        stdout.starts_with("model: openai:gpt-4o-mini (from AGENT_MODEL)"),
        "{stdout}"
    );
    assert!(stdout.contains("answer: It is 42."), "{stdout}");
    assert_eq!(server.requests().len(), 2);
    assert_eq!(
        server.requests()[0].header("authorization"),
        Some("Bearer x")
    );
}

#[tokio::test]
async fn a_missing_key_is_a_one_line_error_naming_the_variable() {
    let out = run(
        &[],
        &[("AGENT_MODEL", "mistral:mistral-small-latest".into())],
    )
    .await;
    assert!(!out.status.success());
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(stderr.contains("MISTRAL_API_KEY is not set"), "{stderr}");
}

#[tokio::test]
async fn the_quickstart_runs_on_anthropic_and_gemini_servers_named_by_their_base_urls() {
    let anthropic = FakeServer::start(|req, _| {
        let body = req.json();
        let last = body["messages"].as_array().unwrap().last().unwrap().clone();
        match last["content"][0]["type"].as_str() {
            Some("tool_result") => {
                let text = format!("It is {}.", last["content"][0]["content"].as_str().unwrap());
                Reply::json(200, &json!({"content": [{"type": "text", "text": text}], "stop_reason": "end_turn", "usage": {"input_tokens": 9, "output_tokens": 3}}))
            }
            _ => Reply::json(200, &json!({"content": [{"type": "tool_use", "id": "toolu_1", "name": "calculator", "input": {"expression": "6*7"}}],
                "stop_reason": "tool_use", "usage": {"input_tokens": 9, "output_tokens": 3}})),
        }
    })
    .await;
    let gemini = FakeServer::start(|req, _| {
        let body = req.json();
        let last = body["contents"].as_array().unwrap().last().unwrap().clone();
        match last["parts"][0].pointer("/functionResponse/response/output") {
            Some(output) => Reply::json(200, &json!({"candidates": [{"content": {"role": "model", "parts": [{"text": format!("It is {}.", output.as_str().unwrap())}]}, "finishReason": "STOP"}]})),
            None => Reply::json(200, &json!({"candidates": [{"content": {"role": "model", "parts": [{"functionCall": {"name": "calculator", "args": {"expression": "6*7"}}}]}, "finishReason": "STOP"}]})),
        }
    })
    .await;
    for (model, vars) in [
        (
            "anthropic:claude-sonnet-4-5",
            vec![
                ("ANTHROPIC_BASE_URL", format!("http://{}", anthropic.addr())),
                ("ANTHROPIC_API_KEY", "x".to_owned()),
            ],
        ),
        (
            "gemini:gemini-2.5-flash",
            vec![
                ("GEMINI_BASE_URL", format!("http://{}", gemini.addr())),
                ("GEMINI_API_KEY", "x".to_owned()),
            ],
        ),
    ] {
        let mut env = vars;
        env.push(("AGENT_MODEL", model.to_owned()));
        let out = run(&["What is six times seven?"], &env).await;
        let stdout = String::from_utf8_lossy(&out.stdout);
        assert!(
            out.status.success(),
            "{model}: {stdout}\n{}",
            String::from_utf8_lossy(&out.stderr)
        );
        assert!(
            stdout.starts_with(&format!("model: {model} (from AGENT_MODEL)")),
            "{stdout}"
        );
        assert!(stdout.contains("answer: It is 42."), "{stdout}");
    }
    assert_eq!(anthropic.requests().len(), 2);
    assert_eq!(gemini.requests().len(), 2);
}

async fn run_bin(bin: &str, args: &[&str]) -> (bool, String) {
    let out = tokio::process::Command::new(bin)
        .args(args)
        .env_remove("AGENT_MODEL")
        .stdin(std::process::Stdio::null())
        .output()
        .await
        .unwrap();
    (
        out.status.success(),
        String::from_utf8_lossy(&out.stdout).into_owned(),
    )
}

#[tokio::test]
async fn the_approval_example_runs_offline_both_ways() {
    let bin = env!("CARGO_BIN_EXE_approval_e2e");
    let (ok, stdout) = run_bin(bin, &["--auto", "approve"]).await;
    assert!(ok, "{stdout}");
    assert!(
        stdout.contains("approved (--auto approve)")
            && stdout.contains("answer: Done: wrote 24 bytes"),
        "{stdout}"
    );
    let (ok, stdout) = run_bin(bin, &["--auto", "deny"]).await;
    assert!(ok, "{stdout}");
    assert!(stdout.contains("the user rejected this call"), "{stdout}");
}

#[tokio::test]
async fn the_streaming_example_runs_offline() {
    let (ok, stdout) = run_bin(env!("CARGO_BIN_EXE_streaming_e2e"), &[]).await;
    assert!(ok, "{stdout}");
    assert!(
        stdout.contains("→ calculator(") && stdout.contains("← calculator: 122.4"),
        "{stdout}"
    );
    assert!(stdout.contains("three times that is 122.4."), "{stdout}");
}

#[tokio::test]
async fn the_team_example_hands_off_by_topic_and_prints_the_usage_tree_offline() {
    let bin = env!("CARGO_BIN_EXE_team_e2e");
    let (ok, stdout) = run_bin(bin, &[]).await;
    assert!(ok, "{stdout}");
    assert!(stdout.contains("handoff: triage -> tech"), "{stdout}");
    assert!(stdout.contains("tech calls researcher"), "{stdout}");
    assert!(
        stdout.contains("  researcher says: Known issue #812"),
        "{stdout}"
    );
    assert!(
        stdout.contains("answer (tech): Known issue #812"),
        "{stdout}"
    );
    // triage 180+12 and tech 410+25, 520+45 on their own; the researcher's 320+40 under it.
    // At the default table's gpt-4o and gpt-4o-mini prices.
    assert!(
        stdout.contains("triage -> tech: 4 calls, 1552 tokens, $0.003131\n"),
        "{stdout}"
    );
    assert!(
        stdout.contains("\n  researcher: 1 call, 360 tokens, $0.000072\n"),
        "{stdout}"
    );
    let (ok, stdout) = run_bin(bin, &["I was charged twice"]).await;
    assert!(ok, "{stdout}");
    assert!(stdout.contains("handoff: triage -> billing"), "{stdout}");
    assert!(
        stdout.contains("answer (billing): I have refunded"),
        "{stdout}"
    );
    assert!(!stdout.contains("researcher"), "{stdout}");
}

#[tokio::test]
async fn the_file_agent_example_counts_lines_and_writes_its_report_offline() {
    let (ok, stdout) = run_bin(env!("CARGO_BIN_EXE_file_agent_e2e"), &[]).await;
    assert!(ok, "{stdout}");
    assert!(
        stdout.contains("| greet.rs | 5 |") && stdout.contains("| main.rs | 3 |"),
        "{stdout}"
    );
    assert!(stdout.contains("answer: Counted the lines"), "{stdout}");
}

#[tokio::test]
async fn the_research_agent_example_runs_offline_on_its_sample_index() {
    let (ok, stdout) = run_bin(env!("CARGO_BIN_EXE_research_agent_e2e"), &[]).await;
    assert!(ok, "{stdout}");
    assert!(
        stdout.contains(
            "answer: About 1082.67716535 feet (source: https://en.wikipedia.org/wiki/Eiffel_Tower)."
        ),
        "{stdout}"
    );
}

#[test]
fn the_durable_example_is_killed_mid_run_and_finished_by_resume_without_shipping_twice() {
    use std::io::{BufRead, BufReader};
    use std::process::{Command, Stdio};
    let dir = tempfile::tempdir().unwrap();
    let store = dir.path().join("runs.db");
    let bin = env!("CARGO_BIN_EXE_durable_agent_e2e");
    let mut first = Command::new(bin)
        .env_remove("AGENT_MODEL")
        .env("AGENT_STORE_PATH", &store)
        .stdout(Stdio::piped())
        .spawn()
        .unwrap();
    let mut run_id = None;
    for line in BufReader::new(first.stdout.take().unwrap()).lines() {
        let line = line.unwrap();
        if let Some(rest) = line.strip_prefix("run: ") {
            run_id = rest.split_whitespace().next().map(str::to_owned);
        }
        if line.contains("shipped parcel 1") {
            break;
        }
    }
    // As `kill -9` would: no destructor, no flush.
    first.kill().unwrap();
    first.wait().unwrap();
    let run_id = run_id.expect("the example prints its run id first");
    let resumed = Command::new(bin)
        .args(["--resume", &run_id])
        .env_remove("AGENT_MODEL")
        .env("AGENT_STORE_PATH", &store)
        .output()
        .unwrap();
    let stdout = agent_tests::stdout_of_success(&resumed);
    assert!(
        stdout.contains(&format!("run: {run_id} (resumed)")),
        "{stdout}"
    );
    assert!(stdout.contains("answer: All"), "{stdout}");
    let outbox = std::fs::read_to_string(store.with_extension("outbox")).unwrap();
    for parcel in 1..=3 {
        let shipped = outbox.matches(&format!("parcel {parcel} shipped")).count();
        assert!(
            shipped <= 1,
            "parcel {parcel} shipped {shipped} times: {outbox}"
        );
    }
    assert_eq!(outbox.matches("parcel 1 shipped").count(), 1, "{outbox}");
    assert_eq!(outbox.matches("parcel 3 shipped").count(), 1, "{outbox}");
    let listed = Command::new(bin)
        .arg("--list")
        .env("AGENT_STORE_PATH", &store)
        .output()
        .unwrap();
    let listed = agent_tests::stdout_of_success(&listed);
    assert!(listed.contains(&format!("{run_id}  finished")), "{listed}");
}
