//! The file tools against real files, folders, symlinks and a FIFO in a temporary folder:
//! every escape is tried and must be refused, and the ordinary work must succeed.

use std::os::unix::fs::symlink;
use std::sync::Arc;

use agent_core::{Tool, ToolContext, ToolError, ToolErrorKind, ToolSet};
use agent_tools::FileTools;
use serde_json::{Value, json};

struct Sandbox {
    _outside: tempfile::TempDir,
    root: tempfile::TempDir,
    tools: ToolSet,
    secret: std::path::PathBuf,
}

fn sandbox() -> Sandbox {
    let outside = tempfile::tempdir().unwrap();
    let secret = outside.path().join("secret.txt");
    std::fs::write(&secret, "TOP SECRET").unwrap();
    let root = tempfile::tempdir().unwrap();
    std::fs::create_dir(root.path().join("src")).unwrap();
    std::fs::write(
        root.path().join("src/main.rs"),
        "fn main() {\n    println!(\"hi\");\n}\n",
    )
    .unwrap();
    std::fs::write(
        root.path().join("notes.txt"),
        "alpha\nbeta\ngamma\nbeta again\n",
    )
    .unwrap();
    let tools = ToolSet::new(FileTools::new(root.path()).unwrap().all_tools()).unwrap();
    Sandbox {
        _outside: outside,
        root,
        tools,
        secret,
    }
}

async fn call(s: &Sandbox, tool: &str, args: Value) -> Result<String, ToolError> {
    call_in(&s.tools, tool, args).await
}

/// Checks and runs one call in a tool set, as the loop would.
async fn call_in(tools: &ToolSet, tool: &str, args: Value) -> Result<String, ToolError> {
    let call = agent_core::ToolCall::new("c", tool, &args);
    let args = tools.check_call(&call)?;
    tools
        .invoke(
            tool,
            args,
            ToolContext::detached(),
            std::time::Duration::from_secs(10),
        )
        .await
        .map(|o| o.into_content())
}

fn assert_denied(result: Result<String, ToolError>, needle: &str) {
    let err = result.expect_err("must be refused");
    assert_eq!(err.kind, ToolErrorKind::PermissionDenied, "{err:?}");
    assert!(err.message.contains(needle), "{}", err.message);
}

#[tokio::test]
async fn dot_dot_traversal_is_refused() {
    let s = sandbox();
    for path in ["../secret.txt", "src/../../secret.txt", "./../x"] {
        assert_denied(
            call(&s, "read_file", json!({"path": path})).await,
            "contains `..`",
        );
        assert_denied(
            call(&s, "write_file", json!({"path": path, "content": "x"})).await,
            "contains `..`",
        );
    }
}

#[tokio::test]
async fn absolute_paths_outside_the_root_are_refused_and_inside_are_allowed() {
    let s = sandbox();
    assert_denied(
        call(&s, "read_file", json!({"path": "/etc/passwd"})).await,
        "outside the allowed directory",
    );
    assert_denied(
        call(&s, "read_file", json!({"path": s.secret.to_str().unwrap()})).await,
        "outside",
    );
    let inside = s.root.path().canonicalize().unwrap().join("notes.txt");
    assert!(
        call(&s, "read_file", json!({"path": inside.to_str().unwrap()}))
            .await
            .unwrap()
            .starts_with("alpha")
    );
}

#[tokio::test]
async fn symlinks_leading_outside_are_refused_anywhere_in_the_path() {
    let s = sandbox();
    symlink(&s.secret, s.root.path().join("link.txt")).unwrap();
    symlink(s.secret.parent().unwrap(), s.root.path().join("outdir")).unwrap();
    assert_denied(
        call(&s, "read_file", json!({"path": "link.txt"})).await,
        "symbolic link",
    );
    assert_denied(
        call(&s, "read_file", json!({"path": "outdir/secret.txt"})).await,
        "symbolic link",
    );
    assert_denied(
        call(
            &s,
            "write_file",
            json!({"path": "outdir/new.txt", "content": "x"}),
        )
        .await,
        "symbolic link",
    );
    assert_denied(
        call(
            &s,
            "write_file",
            json!({"path": "link.txt", "content": "overwrite"}),
        )
        .await,
        "symbolic link",
    );
    assert_denied(
        call(&s, "list_files", json!({"path": "outdir"})).await,
        "symbolic link",
    );
    assert_denied(
        call(
            &s,
            "edit_file",
            json!({"path": "link.txt", "old_text": "TOP", "new_text": "x"}),
        )
        .await,
        "symbolic link",
    );
    // A dangling link must not become a way to create a file elsewhere.
    symlink(
        s.secret.parent().unwrap().join("created.txt"),
        s.root.path().join("dangling.txt"),
    )
    .unwrap();
    assert!(
        call(
            &s,
            "write_file",
            json!({"path": "dangling.txt", "content": "x"})
        )
        .await
        .is_err()
    );
    assert!(!s.secret.parent().unwrap().join("created.txt").exists());
    assert_eq!(std::fs::read_to_string(&s.secret).unwrap(), "TOP SECRET");
    // Search does not follow links out either.
    let found = call(&s, "search_files", json!({"text": "SECRET"}))
        .await
        .unwrap();
    assert!(found.starts_with("no line contains"), "{found}");
}

#[tokio::test]
async fn links_are_never_followed_even_when_they_stay_inside() {
    // A link inside the root can be re-pointed outside at any moment, so none is followed.
    let s = sandbox();
    symlink(
        s.root.path().join("notes.txt"),
        s.root.path().join("alias.txt"),
    )
    .unwrap();
    symlink(s.root.path().join("src"), s.root.path().join("code")).unwrap();
    assert_denied(
        call(&s, "read_file", json!({"path": "alias.txt"})).await,
        "symbolic link",
    );
    assert_denied(
        call(&s, "read_file", json!({"path": "code/main.rs"})).await,
        "symbolic link",
    );
    let listing = call(&s, "list_files", json!({})).await.unwrap();
    assert!(listing.contains("link   alias.txt"), "{listing}");
}

#[tokio::test]
async fn a_file_with_a_second_hard_link_is_neither_read_nor_written() {
    // A hard link in the root can name a file outside it (same file system, same owner).
    let s = sandbox();
    std::fs::hard_link(&s.secret, s.root.path().join("innocent.txt")).unwrap();
    assert_denied(
        call(&s, "read_file", json!({"path": "innocent.txt"})).await,
        "hard links",
    );
    assert_denied(
        call(
            &s,
            "write_file",
            json!({"path": "innocent.txt", "content": "pwned"}),
        )
        .await,
        "hard links",
    );
    assert_denied(
        call(
            &s,
            "edit_file",
            json!({"path": "innocent.txt", "old_text": "TOP", "new_text": "x"}),
        )
        .await,
        "hard links",
    );
    let found = call(&s, "search_files", json!({"text": "SECRET"}))
        .await
        .unwrap();
    assert!(found.starts_with("no line contains"), "{found}");
    assert_eq!(std::fs::read_to_string(&s.secret).unwrap(), "TOP SECRET");
}

#[tokio::test]
async fn writes_into_git_folders_are_refused_by_default() {
    let s = sandbox();
    std::fs::create_dir_all(s.root.path().join(".git/hooks")).unwrap();
    std::fs::write(s.root.path().join(".git/config"), "[core]\n").unwrap();
    for path in [".git/config", ".git/hooks/pre-commit", "./.GIT/config"] {
        assert_denied(
            call(
                &s,
                "write_file",
                json!({"path": path, "content": "[core]\nfsmonitor = evil"}),
            )
            .await,
            ".git",
        );
    }
    assert_denied(
        call(
            &s,
            "edit_file",
            json!({"path": ".git/config", "old_text": "[core]", "new_text": "[core]\npager = evil"}),
        )
        .await,
        ".git",
    );
    assert_eq!(
        std::fs::read_to_string(s.root.path().join(".git/config")).unwrap(),
        "[core]\n"
    );
    // Reading is fine, and a user can allow writes on purpose.
    assert!(
        call(&s, "read_file", json!({"path": ".git/config"}))
            .await
            .is_ok()
    );
    let allowed = ToolSet::new(
        FileTools::new(s.root.path())
            .unwrap()
            .allow_git_writes()
            .all_tools(),
    )
    .unwrap();
    call_in(
        &allowed,
        "write_file",
        json!({"path": ".git/description", "content": "x"}),
    )
    .await
    .unwrap();
}

#[tokio::test]
async fn a_folder_swapped_for_a_link_during_calls_never_leads_outside() {
    // A racing process flips `work` between a real folder and a link to the outside while
    // the tools read and write through it; a bounded number of tries.
    let s = sandbox();
    let outside = s.secret.parent().unwrap().to_path_buf();
    std::fs::write(outside.join("data.txt"), "OUTSIDE").unwrap();
    let work = s.root.path().join("work");
    let real = s.root.path().join("work.real");
    std::fs::create_dir(&real).unwrap();
    std::fs::write(real.join("data.txt"), "inside").unwrap();
    let stop = Arc::new(std::sync::atomic::AtomicBool::new(false));
    let flipper = {
        let (stop, work, real, outside) =
            (stop.clone(), work.clone(), real.clone(), outside.clone());
        std::thread::spawn(move || {
            let link = work.with_extension("link");
            while !stop.load(std::sync::atomic::Ordering::Relaxed) {
                let _ = std::fs::remove_file(&link);
                let _ = symlink(&outside, &link);
                let _ = std::fs::rename(&link, &work); // work -> outside
                let _ = std::fs::remove_file(&work);
                let _ = symlink(&real, &link);
                let _ = std::fs::rename(&link, &work); // work -> real (a link: refused too)
                let _ = std::fs::remove_file(&work);
                let _ = std::fs::rename(&real, &work); // work is the real folder
                let _ = std::fs::rename(&work, &real);
            }
        })
    };
    for i in 0..300 {
        if let Ok(text) = call(&s, "read_file", json!({"path": "work/data.txt"})).await {
            assert!(!text.contains("OUTSIDE"), "read outside on try {i}: {text}");
        }
        let _ = call(
            &s,
            "write_file",
            json!({"path": "work/written.txt", "content": "x"}),
        )
        .await;
        let _ = call(&s, "search_files", json!({"text": "OUTSIDE"}))
            .await
            .map(|found| assert!(!found.contains("data.txt:1"), "{found}"));
    }
    stop.store(true, std::sync::atomic::Ordering::Relaxed);
    flipper.join().unwrap();
    assert!(
        !outside.join("written.txt").exists(),
        "a write landed outside"
    );
    assert_eq!(
        std::fs::read_to_string(outside.join("data.txt")).unwrap(),
        "OUTSIDE"
    );
}

#[tokio::test]
async fn names_with_newlines_and_escapes_are_shown_escaped() {
    let s = sandbox();
    std::fs::write(
        s.root.path().join("evil\nfile   fake.txt (1 bytes)"),
        "beta",
    )
    .unwrap();
    std::fs::write(s.root.path().join("term\u{1b}[2J.txt"), "beta").unwrap();
    let listing = call(&s, "list_files", json!({})).await.unwrap();
    assert!(listing.contains("evil\\nfile"), "{listing}");
    assert!(listing.contains("term\\u{1b}[2J.txt"), "{listing}");
    assert!(!listing.contains('\u{1b}'), "{listing}");
    let found = call(&s, "search_files", json!({"text": "beta"}))
        .await
        .unwrap();
    assert!(found.contains("evil\\nfile"), "{found}");
    assert_eq!(found.lines().count(), 4, "{found}");
}

#[tokio::test]
async fn search_bounds_its_output_and_cuts_long_lines() {
    let s = sandbox();
    let long = format!("needle {}", "x".repeat(100_000));
    std::fs::write(s.root.path().join("minified.js"), &long).unwrap();
    let found = call(&s, "search_files", json!({"text": "needle"}))
        .await
        .unwrap();
    assert!(found.len() < 1_000, "{} bytes", found.len());
    assert!(found.contains("[… line cut]"), "{found}");
    // Many matching lines: the bytes cap holds before the match cap.
    let tools = ToolSet::new(
        FileTools::new(s.root.path())
            .unwrap()
            .max_search_bytes(2_000)
            .read_only_tools(),
    )
    .unwrap();
    std::fs::write(
        s.root.path().join("many.txt"),
        "needle line\n".repeat(10_000),
    )
    .unwrap();
    let out = call_in(&tools, "search_files", json!({"text": "needle"}))
        .await
        .unwrap();
    assert!(out.len() <= 2_100, "{} bytes", out.len());
    assert!(
        out.contains("[search stopped early: the results reached 2000 bytes]"),
        "{out}"
    );
}

#[tokio::test]
async fn a_cancelled_search_stops_walking() {
    let s = sandbox();
    for i in 0..200 {
        let dir = s.root.path().join(format!("d{i:03}"));
        std::fs::create_dir(&dir).unwrap();
        std::fs::write(dir.join("f.txt"), "nothing here").unwrap();
    }
    let tools = ToolSet::new(FileTools::new(s.root.path()).unwrap().read_only_tools()).unwrap();
    let call_ = agent_core::ToolCall::new("c", "search_files", &json!({"text": "needle"}));
    let args = tools.check_call(&call_).unwrap();
    let ctx = ToolContext::detached();
    ctx.cancel.cancel();
    let out = tools
        .invoke(
            "search_files",
            args,
            ctx,
            std::time::Duration::from_secs(10),
        )
        .await;
    // Either the loop answered the cancellation itself, or the walk stopped at once.
    if let Ok(out) = out {
        let out = out.into_content();
        assert!(out.contains("search stopped early"), "{out}");
    }
    // The time bound: a zero search time stops the walk on its first folder.
    let tools = ToolSet::new(
        FileTools::new(s.root.path())
            .unwrap()
            .search_time(std::time::Duration::ZERO)
            .read_only_tools(),
    )
    .unwrap();
    let out = call_in(&tools, "search_files", json!({"text": "needle"}))
        .await
        .unwrap();
    assert!(out.contains("search time"), "{out}");
}

#[tokio::test]
async fn fifos_and_folders_are_not_read_as_files() {
    let s = sandbox();
    let fifo = s.root.path().join("pipe");
    nix::unistd::mkfifo(&fifo, nix::sys::stat::Mode::S_IRWXU).unwrap();
    assert_denied(
        call(&s, "read_file", json!({"path": "pipe"})).await,
        "not a regular file",
    );
    assert_denied(
        call(&s, "write_file", json!({"path": "pipe", "content": "x"})).await,
        "not a regular file",
    );
    let err = call(&s, "read_file", json!({"path": "src"}))
        .await
        .unwrap_err();
    assert!(err.message.contains("is a folder"), "{}", err.message);
    // A device reached through an absolute path is outside the root anyway.
    assert_denied(
        call(&s, "read_file", json!({"path": "/dev/zero"})).await,
        "outside",
    );
}

#[tokio::test]
async fn size_caps_apply_to_reads_and_writes() {
    let s = sandbox();
    let small = ToolSet::new(
        FileTools::new(s.root.path())
            .unwrap()
            .max_read_bytes(10)
            .max_write_bytes(5)
            .all_tools(),
    )
    .unwrap();
    let s2 = Sandbox { tools: small, ..s };
    let err = call(&s2, "read_file", json!({"path": "notes.txt"}))
        .await
        .unwrap_err();
    assert!(
        err.message.contains("read a range of lines"),
        "{}",
        err.message
    );
    let ranged = call(
        &s2,
        "read_file",
        json!({"path": "notes.txt", "start_line": 2, "end_line": 2}),
    )
    .await
    .unwrap();
    assert_eq!(ranged, "beta\n[lines 2-2 of 4]");
    let err = call(
        &s2,
        "write_file",
        json!({"path": "a.txt", "content": "too long"}),
    )
    .await
    .unwrap_err();
    assert!(err.message.contains("more than the 5"), "{}", err.message);
}

#[tokio::test]
async fn reading_listing_searching_writing_and_editing_work() {
    let s = sandbox();
    let listing = call(&s, "list_files", json!({})).await.unwrap();
    assert_eq!(listing, "file   notes.txt (28 bytes)\nfolder src/");
    let found = call(&s, "search_files", json!({"text": "beta"}))
        .await
        .unwrap();
    assert_eq!(found, "notes.txt:2: beta\nnotes.txt:4: beta again");
    assert_eq!(
        call(
            &s,
            "write_file",
            json!({"path": "src/report.md", "content": "# Report\n"})
        )
        .await
        .unwrap(),
        "wrote 9 bytes to `src/report.md`"
    );
    let err = call(
        &s,
        "edit_file",
        json!({"path": "notes.txt", "old_text": "beta", "new_text": "BETA"}),
    )
    .await
    .unwrap_err();
    assert!(err.message.contains("occurs 2 times"), "{}", err.message);
    call(
        &s,
        "edit_file",
        json!({"path": "notes.txt", "old_text": "beta again", "new_text": "delta"}),
    )
    .await
    .unwrap();
    assert_eq!(
        std::fs::read_to_string(s.root.path().join("notes.txt")).unwrap(),
        "alpha\nbeta\ngamma\ndelta\n"
    );
    let err = call(
        &s,
        "write_file",
        json!({"path": "missing/dir/x.txt", "content": "x"}),
    )
    .await
    .unwrap_err();
    assert!(err.message.contains("does not exist"), "{}", err.message);
}

#[tokio::test]
async fn read_only_mode_has_no_writing_tools_and_reads_are_marked_read_only() {
    let s = sandbox();
    let tools = ToolSet::new(FileTools::new(s.root.path()).unwrap().read_only_tools()).unwrap();
    let names: Vec<&str> = tools.names().collect();
    assert_eq!(names, ["read_file", "list_files", "search_files"]);
    for name in names {
        assert!(tools.meta(name).unwrap().parallel_safe);
    }
    let all: Vec<Arc<dyn Tool>> = FileTools::new(s.root.path()).unwrap().all_tools();
    let write = all.iter().find(|t| t.name() == "write_file").unwrap();
    assert_eq!(
        write.meta().side_effect,
        agent_core::SideEffect::SideEffecting
    );
}

#[tokio::test]
async fn a_file_swapped_for_a_fifo_never_hangs_a_call() {
    // A racing thread replaces `swap.txt` by a FIFO (no writer: opening it for reading would
    // block forever) and back; every read and write must still answer.
    let s = sandbox();
    let file = s.root.path().join("swap.txt");
    let fifo = s.root.path().join("swap.fifo");
    let regular = s.root.path().join("swap.regular");
    let stop = Arc::new(std::sync::atomic::AtomicBool::new(false));
    let swapper = {
        let (stop, file, fifo, regular) =
            (stop.clone(), file.clone(), fifo.clone(), regular.clone());
        std::thread::spawn(move || {
            while !stop.load(std::sync::atomic::Ordering::Relaxed) {
                let _ = std::fs::write(&regular, "plain text");
                let _ = std::fs::rename(&regular, &file);
                let _ = nix::unistd::mkfifo(&fifo, nix::sys::stat::Mode::S_IRWXU);
                let _ = std::fs::rename(&fifo, &file);
            }
        })
    };
    for i in 0..200 {
        for (tool, args) in [
            ("read_file", json!({"path": "swap.txt"})),
            ("write_file", json!({"path": "swap.txt", "content": "x"})),
            (
                "edit_file",
                json!({"path": "swap.txt", "old_text": "plain", "new_text": "p"}),
            ),
        ] {
            let answered =
                tokio::time::timeout(std::time::Duration::from_secs(5), call(&s, tool, args)).await;
            assert!(answered.is_ok(), "{tool} hung on try {i}");
        }
    }
    stop.store(true, std::sync::atomic::Ordering::Relaxed);
    swapper.join().unwrap();
}

#[tokio::test]
async fn an_edit_that_would_multiply_a_file_is_refused_before_it_is_built() {
    // 500,000 one-byte matches, each replaced by 100 KB: 50 GB if built before the check.
    let s = sandbox();
    std::fs::write(s.root.path().join("a.txt"), "a".repeat(500_000)).unwrap();
    let err = call(
        &s,
        "edit_file",
        json!({"path": "a.txt", "old_text": "a", "new_text": "b".repeat(100_000), "replace_all": true}),
    )
    .await
    .unwrap_err();
    assert!(err.message.contains("too large"), "{}", err.message);
    assert_eq!(
        std::fs::read_to_string(s.root.path().join("a.txt"))
            .unwrap()
            .len(),
        500_000
    );
}
