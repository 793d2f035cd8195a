//! Red team: the file tools through their public API, with real files, links and races.

use std::time::Duration;

use agent_core::{ToolContext, ToolError};
use agent_tools::FileTools;
use serde_json::{Value, json};

async fn call(files: &FileTools, tool: &str, args: Value) -> Result<String, ToolError> {
    let tool = files
        .all_tools()
        .into_iter()
        .find(|t| t.name() == tool)
        .unwrap();
    tool.call(args, &ToolContext::detached())
        .await
        .map(|o| o.into_content())
}

// BREAKS: the `.git` write guard matches the folder name `.git` only; a bare repository (a
// backup remote `project.git/`, or a worktree's or submodule's git directory under another
// name) has the same `config` and `hooks/`: a `post-receive` hook or `core.fsmonitor` there
// runs code at the user's next push or git command in it.
#[tokio::test]
async fn attack_bare_repository_config_and_hooks_are_not_writable() {
    let root = tempfile::tempdir().unwrap();
    let status = std::process::Command::new("git")
        .args(["init", "-q", "--bare", "backup.git"])
        .current_dir(root.path())
        .status()
        .unwrap();
    assert!(status.success());
    let files = FileTools::new(root.path()).unwrap();
    for (path, content) in [
        ("backup.git/config", "[core]\n\tfsmonitor = touch PWNED\n"),
        ("backup.git/hooks/post-receive", "#!/bin/sh\ntouch PWNED\n"),
    ] {
        let result = call(
            &files,
            "write_file",
            json!({"path": path, "content": content}),
        )
        .await;
        assert!(result.is_err(), "{path} was written: {result:?}");
    }
}

/// Held: a folder swapped for a link to the outside, again and again during writes and
/// reads, never lets a call reach outside.
#[tokio::test]
async fn attack_folder_link_swap_race_stays_inside() {
    let root = tempfile::tempdir().unwrap();
    let outside = tempfile::tempdir().unwrap();
    std::fs::write(outside.path().join("secret.txt"), "TOP SECRET").unwrap();
    let files = FileTools::new(root.path()).unwrap();
    let d = root.path().join("d");
    let real = root.path().join("real");
    std::fs::create_dir(&real).unwrap();
    std::fs::write(real.join("secret.txt"), "inside").unwrap();
    let stop = std::sync::Arc::new(std::sync::atomic::AtomicBool::new(false));
    let flipper = {
        let (d, real, out, stop) = (
            d.clone(),
            real.clone(),
            outside.path().to_path_buf(),
            stop.clone(),
        );
        std::thread::spawn(move || {
            let mut i = 0u64;
            while !stop.load(std::sync::atomic::Ordering::Relaxed) {
                let _ = std::fs::remove_file(&d);
                let target = if i.is_multiple_of(2) { &out } else { &real };
                let _ = std::os::unix::fs::symlink(target, &d);
                let _ = std::fs::remove_file(&d);
                let _ = std::fs::create_dir(&d);
                let _ = std::fs::remove_dir(&d);
                i += 1;
            }
        })
    };
    for _ in 0..300 {
        let _ = call(
            &files,
            "write_file",
            json!({"path": "d/pwned.txt", "content": "x"}),
        )
        .await;
        if let Ok(out) = call(&files, "read_file", json!({"path": "d/secret.txt"})).await {
            assert!(!out.contains("TOP SECRET"), "{out}");
        }
        if let Ok(out) = call(&files, "search_files", json!({"text": "SECRET"})).await {
            assert!(!out.contains("TOP SECRET"), "{out}");
        }
    }
    stop.store(true, std::sync::atomic::Ordering::Relaxed);
    flipper.join().unwrap();
    assert!(!outside.path().join("pwned.txt").exists());
}

// BREAKS: search_files checks its clock and its cancellation only between folders; inside one
// folder it opens and reads every file (up to 50,000 of up to 1 MiB each) before looking
// again, so one wide folder overruns the search time by as much as it likes.
#[tokio::test]
async fn attack_one_wide_folder_cannot_outrun_the_search_time() {
    let root = tempfile::tempdir().unwrap();
    let wide = root.path().join("wide");
    std::fs::create_dir(&wide).unwrap();
    let body = "nothing to see here\n".repeat(1600); // 32 KB
    for i in 0..2000 {
        std::fs::write(wide.join(format!("f{i:05}.txt")), &body).unwrap();
    }
    let files = FileTools::new(root.path())
        .unwrap()
        .search_time(Duration::from_millis(1));
    let out = call(&files, "search_files", json!({"text": "needle"}))
        .await
        .unwrap();
    assert!(
        out.contains("search stopped early"),
        "64 MB were searched past a 1 ms search time: {out}"
    );
}

/// Held: names that try to reach `.git` in other spellings, devices, FIFOs and hard links.
#[tokio::test]
async fn attack_odd_paths_are_refused_or_stay_inside() {
    let root = tempfile::tempdir().unwrap();
    let r = root.path();
    std::fs::create_dir(r.join(".git")).unwrap();
    std::fs::create_dir(r.join("sub")).unwrap();
    let outside = tempfile::tempdir().unwrap();
    std::fs::write(outside.path().join("victim"), "original").unwrap();
    std::fs::hard_link(outside.path().join("victim"), r.join("hard")).unwrap();
    nix::unistd::mkfifo(
        &r.join("fifo"),
        nix::sys::stat::Mode::from_bits_truncate(0o644),
    )
    .unwrap();
    std::os::unix::fs::symlink(r, r.join("self")).unwrap();
    let files = FileTools::new(r).unwrap();
    let root_abs = std::fs::canonicalize(r).unwrap();
    for path in [
        ".git/config".to_owned(),
        ".GIT/config".to_owned(),
        "./.git/config".to_owned(),
        "sub/../.git/config".to_owned(),
        ".git//config".to_owned(),
        " .git/config".to_owned(),
        format!("{}/.git/config", root_abs.display()),
        format!("{}//.git/hooks/pre-commit", root_abs.display()),
        "self/.git/config".to_owned(),
        "hard".to_owned(),
        "fifo".to_owned(),
        "".to_owned(),
        "/".to_owned(),
        "sub/".to_owned(),
        "a\\..\\..\\x".to_owned(),
    ] {
        let result = tokio::time::timeout(
            Duration::from_secs(5),
            call(&files, "write_file", json!({"path": path, "content": "x"})),
        )
        .await
        .expect("a write hung");
        if path == "a\\..\\..\\x" {
            // A backslash is an ordinary character on Unix: a file of that name, inside.
            continue;
        }
        assert!(result.is_err(), "{path:?}: {result:?}");
    }
    assert!(!r.join(".git/config").exists());
    assert_eq!(
        std::fs::read_to_string(outside.path().join("victim")).unwrap(),
        "original"
    );
    let long = "a/".repeat(3000) + "x";
    let result = call(&files, "read_file", json!({"path": long})).await;
    assert!(result.is_err());
}
