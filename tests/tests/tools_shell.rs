//! The shell tool: allow-list, no shell interpretation, argument policies, Landlock and PID
//! namespace confinement, an empty environment, timeouts that kill every process a call
//! started. Attacks use real programs, files, links and processes.

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
async fn the_environment_starts_empty_and_secrets_never_reach_the_child() {
    // `printenv` has no argument policy: it runs only where Landlock confines it.
    if !landlock_available("printenv") {
        return;
    }
    let dir = sandbox();
    let parent = vec![
        ("PATH".to_owned(), std::env::var("PATH").unwrap_or_default()),
        ("OPENAI_API_KEY".to_owned(), "sk-parent-secret".to_owned()),
        ("GITHUB_TOKEN".to_owned(), "ghp-secret".to_owned()),
        ("PGPASSWORD".to_owned(), "pg-secret".to_owned()),
        (
            "DATABASE_URL".to_owned(),
            "postgres://u:db-secret@h/d".to_owned(),
        ),
        ("AWS_ACCESS_KEY_ID".to_owned(), "AKIA-secret".to_owned()),
        (
            "SLACK_WEBHOOK".to_owned(),
            "https://hooks/secret".to_owned(),
        ),
        ("DEPLOY_KEY".to_owned(), "passed-on-purpose".to_owned()),
        ("LANG".to_owned(), "C".to_owned()),
    ];
    let shell = Shell::new(dir.path(), ["printenv"])
        .unwrap()
        .with_parent_env(parent)
        .pass_env("DEPLOY_KEY");
    let out = run(&shell, json!({"program": "printenv"})).await.unwrap();
    for secret in [
        "sk-parent",
        "ghp-",
        "pg-secret",
        "db-secret",
        "AKIA",
        "hooks/secret",
    ] {
        assert!(!out.contains(secret), "{out}");
    }
    assert!(out.contains("DEPLOY_KEY=passed-on-purpose"), "{out}");
    assert!(out.contains("LANG=C"), "{out}");
    let mut names: Vec<&str> = out
        .lines()
        .filter_map(|l| l.split_once('=').map(|(n, _)| n))
        .collect();
    names.sort_unstable();
    assert_eq!(
        names,
        ["DEPLOY_KEY", "HOME", "LANG", "PATH", "TMPDIR"],
        "{out}"
    );
    // HOME is a private empty folder, not the root (where a model could write rc files).
    assert!(
        !out.contains(&format!("HOME={}", dir.path().display())),
        "{out}"
    );
}

#[test]
fn programs_that_run_other_programs_or_code_cannot_be_allowed() {
    let dir = sandbox();
    for program in [
        "env", "xargs", "nice", "timeout", "nohup", "setsid", "sh", "bash", "python3", "perl",
        "awk", "sed", "busybox", "sudo", "/bin/ls",
    ] {
        let err = Shell::new(dir.path(), ["ls", program]).unwrap_err();
        assert_eq!(err.kind(), std::io::ErrorKind::InvalidInput, "{program}");
    }
}

async fn refused(shell: &Shell, program: &str, args: &[&str]) -> String {
    let err = run(shell, json!({"program": program, "args": args}))
        .await
        .expect_err(&format!("{program} {args:?} must be refused"));
    assert_eq!(
        err.kind,
        ToolErrorKind::PermissionDenied,
        "{program} {args:?}: {err:?}"
    );
    err.message
}

#[tokio::test]
async fn options_that_run_programs_read_file_lists_or_write_files_are_refused() {
    let dir = sandbox();
    let shell = Shell::new(
        dir.path(),
        [
            "wc", "find", "tar", "sort", "git", "cat", "head", "grep", "ls", "uniq", "md5sum",
        ],
    )
    .unwrap();
    let attacks: &[(&str, &[&str])] = &[
        ("wc", &["--files0-from=list.txt"]),
        ("wc", &["--files0-from", "list.txt"]),
        ("wc", &["--files0", "list.txt"]), // an abbreviation of the same option
        ("wc", &["/proc/self/environ"]),
        ("wc", &["-c", "/etc/shadow"]),
        ("cat", &["../../etc/passwd"]),
        ("cat", &["sub/../../x"]),
        ("head", &["-n", "1", "/dev/zero"]),
        ("find", &[".", "-exec", "touch", "pwned", ";"]),
        ("find", &[".", "-execdir", "id", ";"]),
        ("find", &[".", "-ok", "id", ";"]),
        ("find", &[".", "-delete"]),
        ("find", &[".", "-fprint", "out.txt"]),
        ("find", &["-L", "."]),
        ("find", &["/", "-name", "id_rsa"]),
        ("tar", &["--to-command=sh", "-xf", "a.tar"]),
        (
            "tar",
            &[
                "-xf",
                "a.tar",
                "--checkpoint=1",
                "--checkpoint-action=exec=id",
            ],
        ),
        ("tar", &["-I", "./evil", "-xf", "a.tar"]),
        ("tar", &["xIf", "evil", "a.tar"]),
        ("tar", &["-cf", "/tmp/exfil.tar", "."]),
        ("tar", &["-xf", "a.tar", "-C", "/"]),
        ("tar", &["-P", "-xf", "a.tar"]),
        ("sort", &["-o", "sub/a.txt", "sub/a.txt"]),
        ("sort", &["--compress-program=id", "sub/a.txt"]),
        ("sort", &["--files0-from=list"]),
        ("uniq", &["sub/a.txt", "overwritten.txt"]),
        ("git", &["-c", "core.pager=id", "log"]),
        ("git", &["config", "core.fsmonitor", "id"]),
        ("git", &["fetch", "--upload-pack=id", "origin"]),
        ("git", &["clone", "ext::sh -c id", "x"]),
        ("git", &["log", "--output=/tmp/x"]),
        ("git", &["diff", "--ext-diff"]),
        ("git", &["grep", "-O", "x"]),
        ("git", &["--git-dir=/etc", "status"]),
        ("git", &["commit", "-m", "runs hooks"]),
        ("grep", &["-r", "KEY", "/proc/1/environ"]),
        ("ls", &["--dired", "-l", "/home"]),
        ("md5sum", &["--help"]),
        ("md5sum", &["/etc/passwd"]),
    ];
    for (program, args) in attacks {
        refused(&shell, program, args).await;
    }
    assert!(!dir.path().join("pwned").exists());
    // Ordinary use still works.
    let found = run(
        &shell,
        json!({"program": "find", "args": [".", "-name", "*.txt", "-type", "f"]}),
    )
    .await
    .unwrap();
    assert!(found.contains("./sub/a.txt"), "{found}");
    let counted = run(
        &shell,
        json!({"program": "wc", "args": ["-l", "sub/a.txt"]}),
    )
    .await
    .unwrap();
    assert!(counted.contains("2 sub/a.txt"), "{counted}");
    let grep = run(
        &shell,
        json!({"program": "grep", "args": ["-rn", "two", "sub"]}),
    )
    .await
    .unwrap();
    assert!(grep.contains("sub/a.txt:2:two"), "{grep}");
    if !landlock_available("md5sum") {
        return;
    }
    let summed = run(&shell, json!({"program": "md5sum", "args": ["sub/a.txt"]}))
        .await
        .unwrap();
    assert!(summed.contains("sub/a.txt"), "{summed}");
}

/// Landlock is a Linux feature a machine may lack; CI requires it.
fn landlock_available(what: &str) -> bool {
    let c = agent_tools::shell::confinement();
    let available = c.filesystem != agent_tools::shell::Level::None;
    if !available {
        assert!(
            std::env::var("AGENT_SANDBOX_REQUIRED").is_err(),
            "AGENT_SANDBOX_REQUIRED is set but this machine has no Landlock: {c:?}"
        );
        println!("skipped ({what}): this machine has no Landlock ({c:?})");
    }
    available
}

/// Landlock and the PID namespace are Linux features a machine may lack; CI requires them.
fn confinement_available(what: &str) -> bool {
    let c = agent_tools::shell::confinement();
    let available = c.filesystem != agent_tools::shell::Level::None && c.process_tree;
    if !available {
        assert!(
            std::env::var("AGENT_SANDBOX_REQUIRED").is_err(),
            "AGENT_SANDBOX_REQUIRED is set but this machine cannot confine programs: {c:?}"
        );
        println!("skipped ({what}): this machine lacks Landlock or PID namespaces ({c:?})");
    }
    available
}

#[tokio::test]
async fn even_a_missed_option_cannot_read_or_write_outside_the_root() {
    if !confinement_available("confinement") {
        return;
    }
    // The argument checks pass (every path is inside the root), but the links lead out: only
    // the confinement stands between the program and the outside.
    let dir = sandbox();
    let outside = tempfile::tempdir().unwrap();
    std::fs::write(outside.path().join("secret.txt"), "TOP SECRET").unwrap();
    std::os::unix::fs::symlink(
        outside.path().join("secret.txt"),
        dir.path().join("link.txt"),
    )
    .unwrap();
    std::os::unix::fs::symlink(outside.path(), dir.path().join("outdir")).unwrap();
    std::os::unix::fs::symlink("/proc/self/environ", dir.path().join("environ")).unwrap();
    let parent_environ = format!("/proc/{}/environ", std::process::id());
    std::os::unix::fs::symlink(&parent_environ, dir.path().join("parent_environ")).unwrap();
    let shell = Shell::new(dir.path(), ["cat", "cp", "touch"]).unwrap();
    for file in ["link.txt", "environ", "parent_environ", "outdir/secret.txt"] {
        let out = run(&shell, json!({"program": "cat", "args": [file]}))
            .await
            .unwrap();
        assert!(
            !out.contains("TOP SECRET") && !out.contains("PATH="),
            "{file}: {out}"
        );
        assert!(!out.starts_with("exit status: 0"), "{file}: {out}");
    }
    let out = run(
        &shell,
        json!({"program": "cp", "args": ["sub/a.txt", "outdir/copied.txt"]}),
    )
    .await
    .unwrap();
    assert!(!out.starts_with("exit status: 0"), "{out}");
    let out = run(
        &shell,
        json!({"program": "touch", "args": ["outdir/touched"]}),
    )
    .await
    .unwrap();
    assert!(!out.starts_with("exit status: 0"), "{out}");
    assert!(!outside.path().join("copied.txt").exists());
    assert!(!outside.path().join("touched").exists());
    // Inside the root, the same programs work.
    let out = run(
        &shell,
        json!({"program": "cp", "args": ["sub/a.txt", "copy.txt"]}),
    )
    .await
    .unwrap();
    assert!(out.starts_with("exit status: 0"), "{out}");
    assert_eq!(
        std::fs::read_to_string(dir.path().join("copy.txt")).unwrap(),
        "one\ntwo\n"
    );
}

/// The folder holding the test binary `detach` (it leaves its process group with `setsid`).
fn detach_path() -> String {
    let bin = std::path::Path::new(env!("CARGO_BIN_EXE_detach"));
    format!("{}:/usr/bin:/bin", bin.parent().unwrap().display())
}

/// Whether a process whose command line holds `marker` is alive (zombies count as dead).
fn alive_with(marker: &str) -> bool {
    std::fs::read_dir("/proc")
        .unwrap()
        .filter_map(Result::ok)
        .filter(|e| {
            e.file_name()
                .to_string_lossy()
                .chars()
                .all(|c| c.is_ascii_digit())
        })
        .any(|e| {
            let cmdline = std::fs::read(e.path().join("cmdline")).unwrap_or_default();
            let status = std::fs::read_to_string(e.path().join("status")).unwrap_or_default();
            String::from_utf8_lossy(&cmdline).contains(marker) && !status.contains("State:\tZ")
        })
}

async fn gone(marker: &str) -> bool {
    for _ in 0..100 {
        if !alive_with(marker) {
            return true;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    false
}

#[tokio::test]
async fn a_command_that_outlives_its_timeout_is_killed_with_everything_it_started() {
    if !confinement_available("process tree") {
        return;
    }
    let dir = sandbox();
    let marker = format!("987.{}", std::process::id());
    let shell = Shell::new(dir.path(), ["detach"])
        .unwrap()
        .with_parent_env(vec![("PATH".into(), detach_path())])
        .timeout(Duration::from_millis(500));
    let started = std::time::Instant::now();
    let err = run(
        &shell,
        json!({"program": "detach", "args": ["wait", marker]}),
    )
    .await
    .unwrap_err();
    assert_eq!(err.kind, ToolErrorKind::Timeout, "{err:?}");
    assert!(
        started.elapsed() < Duration::from_secs(10),
        "{:?}",
        started.elapsed()
    );
    assert!(
        gone(&marker).await,
        "the setsid process survived the timeout"
    );
}

#[tokio::test]
async fn nothing_a_command_started_survives_the_call() {
    if !confinement_available("process tree") {
        return;
    }
    let dir = sandbox();
    let marker = format!("986.{}", std::process::id());
    let shell = Shell::new(dir.path(), ["detach"])
        .unwrap()
        .with_parent_env(vec![("PATH".into(), detach_path())]);
    let out = run(
        &shell,
        json!({"program": "detach", "args": ["exit", marker]}),
    )
    .await
    .unwrap();
    assert!(out.starts_with("exit status: 0"), "{out}");
    assert!(gone(&marker).await, "a detached process outlived the call");
}

#[tokio::test]
async fn git_runs_no_pager_hook_fsmonitor_or_diff_driver_from_a_poisoned_config() {
    let dir = sandbox();
    let git = |args: &[&str]| {
        std::process::Command::new("git")
            .args(args)
            .current_dir(dir.path())
            .env("GIT_CONFIG_NOSYSTEM", "1")
            .env("GIT_CONFIG_GLOBAL", "/dev/null")
            .output()
    };
    if git(&["init", "-q"]).is_err() {
        assert!(
            std::env::var("AGENT_SANDBOX_REQUIRED").is_err(),
            "git is required"
        );
        println!("skipped: git is not installed");
        return;
    }
    let marker = dir.path().join("pwned");
    let evil = format!("touch {}", marker.display());
    for (key, value) in [
        ("core.pager", evil.as_str()),
        ("core.fsmonitor", evil.as_str()),
        ("diff.external", evil.as_str()),
        ("diff.evil.textconv", evil.as_str()),
        ("core.hooksPath", "hooks"),
        ("user.email", "a@b.c"),
        ("user.name", "A"),
    ] {
        git(&["config", key, value]).unwrap();
    }
    std::fs::write(dir.path().join(".gitattributes"), "*.txt diff=evil\n").unwrap();
    git(&["-c", "core.fsmonitor=false", "add", "."]).unwrap();
    git(&[
        "-c",
        "core.fsmonitor=false",
        "-c",
        "core.hooksPath=/dev/null",
        "commit",
        "-qm",
        "one",
    ])
    .unwrap();
    std::fs::write(dir.path().join("sub/a.txt"), "changed\n").unwrap();
    assert!(!marker.exists(), "the setup itself ran the command");
    let shell = Shell::new(dir.path(), ["git"]).unwrap();
    for args in [
        vec!["status"],
        vec!["diff"],
        vec!["log", "-p", "-n", "1"],
        vec!["show", "--stat"],
        vec!["blame", "sub/a.txt"],
    ] {
        let out = run(&shell, json!({"program": "git", "args": args}))
            .await
            .unwrap();
        assert!(
            !marker.exists(),
            "git {args:?} ran a configured command: {out}"
        );
    }
    let out = run(
        &shell,
        json!({"program": "git", "args": ["diff", "--stat"]}),
    )
    .await
    .unwrap();
    assert!(out.contains("sub/a.txt"), "{out}");
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

#[tokio::test]
async fn a_repository_config_changed_through_a_link_is_put_back() {
    // Argument checks see only names: an archive can carry a link to `.git`, and a second
    // archive extracted through it lands in `.git/config`. The shell puts it back.
    let dir = sandbox();
    let tar = |args: &[&str], cwd: &std::path::Path| {
        std::process::Command::new("tar")
            .args(args)
            .current_dir(cwd)
            .status()
            .map(|s| s.success())
    };
    let staging = tempfile::tempdir().unwrap();
    std::os::unix::fs::symlink(".git", staging.path().join("g")).unwrap();
    std::fs::write(
        staging.path().join("config"),
        "[core]\n\tfsmonitor = evil\n",
    )
    .unwrap();
    std::fs::create_dir(staging.path().join("hooks")).unwrap();
    std::fs::write(staging.path().join("hooks/pre-commit"), "#!/bin/sh\nevil\n").unwrap();
    let made = tar(&["-cf", "link.tar", "g"], staging.path())
        .and_then(|_| tar(&["-cf", "config.tar", "config", "hooks"], staging.path()));
    if !made.unwrap_or(false) {
        assert!(
            std::env::var("AGENT_SANDBOX_REQUIRED").is_err(),
            "tar is required"
        );
        println!("skipped: tar is not installed");
        return;
    }
    for archive in ["link.tar", "config.tar"] {
        std::fs::copy(staging.path().join(archive), dir.path().join(archive)).unwrap();
    }
    std::fs::create_dir_all(dir.path().join(".git/hooks")).unwrap();
    std::fs::write(dir.path().join(".git/config"), "[core]\n\tbare = false\n").unwrap();
    let shell = Shell::new(dir.path(), ["tar"]).unwrap();
    run(
        &shell,
        json!({"program": "tar", "args": ["-xf", "link.tar"]}),
    )
    .await
    .unwrap();
    let out = run(
        &shell,
        json!({"program": "tar", "args": ["-xf", "config.tar", "-C", "g"]}),
    )
    .await
    .unwrap();
    assert!(out.contains("the change was undone"), "{out}");
    assert_eq!(
        std::fs::read_to_string(dir.path().join(".git/config")).unwrap(),
        "[core]\n\tbare = false\n"
    );
    assert!(!dir.path().join(".git/hooks/pre-commit").exists());
}

#[tokio::test]
async fn an_argument_list_too_large_for_the_system_is_an_error_not_a_crash() {
    // 400,000 arguments (4 MB) pass the per-argument checks but exceed the kernel's limit.
    let dir = sandbox();
    let shell = Shell::new(dir.path(), ["echo"]).unwrap();
    let args: Vec<String> = (0..400_000).map(|_| "xxxxxxxxx".to_owned()).collect();
    let result = run(&shell, json!({"program": "echo", "args": args})).await;
    let err = result.expect_err("the system refuses a 4 MB argument list");
    assert_eq!(err.kind, ToolErrorKind::Failed, "{err:?}");
    assert!(err.message.contains("cannot start"), "{}", err.message);
}
