//! The replay example, run as a user runs it: offline it records against the scripted
//! stand-in, against a conforming server named by `AGENT_MODEL` it records the real
//! exchange, and either way the replay gives the same answer with the server gone.

use std::path::PathBuf;

use agent_tests::fake_server::{FakeServer, calculator_six_times_seven};

const KEY: &str = "sk-e2e-0123456789abcdefghijklmnop";

async fn run(cassette: &std::path::Path, env: &[(&str, String)]) -> std::process::Output {
    let mut command = tokio::process::Command::new(PathBuf::from(env!("CARGO_BIN_EXE_replay_e2e")));
    command
        .arg(cassette)
        .env_remove("AGENT_MODEL")
        .env_remove("OPENAI_BASE_URL")
        .env_remove("OPENAI_API_KEY");
    for (k, v) in env {
        command.env(k, v);
    }
    command.output().await.unwrap()
}

#[tokio::test]
async fn the_replay_example_records_offline_then_replays_the_same_answer() {
    let dir = tempfile::tempdir().unwrap();
    let cassette = dir.path().join("calc.json");
    let stdout = agent_tests::stdout_of_success(&run(&cassette, &[]).await);
    assert!(stdout.contains("answer: 6 times 7 is 42."), "{stdout}");
    assert!(
        stdout.contains("replayed offline: the same answer"),
        "{stdout}"
    );
    let text = std::fs::read_to_string(&cassette).unwrap();
    assert!(text.contains("\"provider\": \"scripted\""), "{text}");
}

#[tokio::test]
async fn the_replay_example_records_a_server_named_by_agent_model() {
    let server = FakeServer::start(calculator_six_times_seven).await;
    let dir = tempfile::tempdir().unwrap();
    let cassette = dir.path().join("server.json");
    let env = [
        ("AGENT_MODEL", "openai:gpt-4o-mini".to_owned()),
        ("OPENAI_BASE_URL", server.base_url()),
        ("OPENAI_API_KEY", KEY.to_owned()),
    ];
    let stdout = agent_tests::stdout_of_success(&run(&cassette, &env).await);
    assert_eq!(server.requests().len(), 2, "the replay reached the server");
    assert!(stdout.contains("answer: It is 42."), "{stdout}");
    assert!(
        stdout.contains("replayed offline: the same answer"),
        "{stdout}"
    );
    let text = std::fs::read_to_string(&cassette).unwrap();
    assert!(text.contains("\"model\": \"gpt-4o-mini\""), "{text}");
    assert!(!text.contains(KEY), "the key reached the cassette");
}
