//! The shell tool: allow-list, no shell interpretation, confinement, scrubbed environment,
//! timeouts that kill the whole process group.

use std::time::Duration;

use agent_core::{Tool, ToolContext, ToolError, ToolErrorKind};
use agent_tools::Shell;
use serde_json::{Value, json};

async fn run(shell: &Shell, args: Value) -> Result<String, ToolError> {
    Tool::call(shell, args, &ToolContext::detached())
        .await
        .map(|o| o.into_content())
}

fn sandbox() -> tempfile::TempDir {
    let dir = tempfile::tempdir().unwrap();
    std::fs::create_dir(dir.path().join("sub")).unwrap();
    std::fs::write(dir.path().join("sub/a.txt"), "one\ntwo\n").unwrap();
    dir
}

#[tokio::test]
async fn shell_metacharacters_are_plain_arguments() {
    let dir = sandbox();
    let shell = Shell::new(dir.path(), ["echo"]).unwrap();
    let out = run(
        &shell,
        json!({"program": "echo", "args": ["a; rm -rf /", "$(whoami)", "|", "`id`", "*"]}),
    )
    .await
    .unwrap();
    assert_eq!(
        out,
        "exit status: 0\nstdout:\na; rm -rf / $(whoami) | `id` *\n"
    );
}

#[tokio::test]
async fn only_allowed_programs_by_bare_name_run() {
    let dir = sandbox();
    let shell = Shell::new(dir.path(), ["echo", "wc"]).unwrap();
    for program in ["sh", "bash", "/bin/echo", "../echo", "rm"] {
        let err = run(&shell, json!({"program": program, "args": []}))
            .await
            .unwrap_err();
        assert_eq!(err.kind, ToolErrorKind::PermissionDenied, "{program}");
        assert!(err.message.contains("allowed: echo, wc"), "{}", err.message);
    }
}

#[tokio::test]
async fn the_working_directory_stays_inside_the_sandbox() {
    let dir = sandbox();
    let shell = Shell::new(dir.path(), ["wc", "pwd"]).unwrap();
    let out = run(
        &shell,
        json!({"program": "wc", "args": ["-l", "a.txt"], "cwd": "sub"}),
    )
    .await
    .unwrap();
    assert!(out.contains("2 a.txt"), "{out}");
    for cwd in ["..", "/tmp", "sub/../.."] {
        let err = run(&shell, json!({"program": "pwd", "cwd": cwd}))
            .await
            .unwrap_err();
        assert_eq!(err.kind, ToolErrorKind::PermissionDenied, "{cwd}: {err:?}");
    }
}

#[tokio::test]
async fn secrets_in_the_parent_environment_do_not_reach_the_child() {
    let dir = sandbox();
    let parent = vec![
        ("PATH".to_owned(), std::env::var("PATH").unwrap_or_default()),
        ("OPENAI_API_KEY".to_owned(), "sk-parent-secret".to_owned()),
        ("GITHUB_TOKEN".to_owned(), "ghp-secret".to_owned()),
        ("DB_SECRET".to_owned(), "hunter2".to_owned()),
        ("DEPLOY_KEY".to_owned(), "passed-on-purpose".to_owned()),
        ("LANG".to_owned(), "C".to_owned()),
    ];
    let shell = Shell::new(dir.path(), ["env"])
        .unwrap()
        .with_parent_env(parent)
        .pass_env("DEPLOY_KEY");
    let out = run(&shell, json!({"program": "env"})).await.unwrap();
    for secret in ["sk-parent-secret", "ghp-secret", "hunter2"] {
        assert!(!out.contains(secret), "{out}");
    }
    assert!(out.contains("DEPLOY_KEY=passed-on-purpose"), "{out}");
    assert!(out.contains("LANG=C"), "{out}");
}

#[tokio::test]
async fn a_command_that_outlives_its_timeout_is_killed_with_its_children() {
    let dir = sandbox();
    let shell = Shell::new(dir.path(), ["sh"])
        .unwrap()
        .timeout(Duration::from_millis(300));
    // The program starts a grandchild in the background and writes its pid.
    let started = std::time::Instant::now();
    let err = run(
        &shell,
        json!({"program": "sh", "args": ["-c", "sleep 30 & echo $! > bg.pid; sleep 30"]}),
    )
    .await
    .unwrap_err();
    assert_eq!(err.kind, ToolErrorKind::Timeout);
    assert!(
        started.elapsed() < Duration::from_secs(10),
        "{:?}",
        started.elapsed()
    );
    let pid: i32 = std::fs::read_to_string(dir.path().join("bg.pid"))
        .unwrap()
        .trim()
        .parse()
        .unwrap();
    // The background grandchild is gone too (give the kernel a moment to reap it).
    let mut alive = true;
    for _ in 0..50 {
        // `ps -o stat=` (any Unix): nothing once it is gone, `Z...` while a zombie.
        let state = std::process::Command::new("ps")
            .args(["-o", "stat=", "-p", &pid.to_string()])
            .output()
            .map(|o| String::from_utf8_lossy(&o.stdout).trim().to_owned())
            .unwrap_or_default();
        alive = !state.is_empty() && !state.starts_with('Z');
        if !alive {
            break;
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    assert!(!alive, "the background process {pid} survived the timeout");
}

#[tokio::test]
async fn output_is_capped() {
    let dir = sandbox();
    let shell = Shell::new(dir.path(), ["seq"]).unwrap().max_output(100);
    let out = run(&shell, json!({"program": "seq", "args": ["1", "100000"]}))
        .await
        .unwrap();
    assert!(out.contains("[stdout cut at 100 bytes]"), "{out}");
    assert!(out.len() < 300, "{}", out.len());
}
