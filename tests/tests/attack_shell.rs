//! Red-team attacks on the `shell` tool through its public API: real programs, real files,
//! links and archives. Each test asserts the SAFE behaviour, so a successful attack is a
//! failing test (marked `// BREAKS:`).

use std::os::unix::fs::{FileTypeExt, PermissionsExt};
use std::path::Path;

use agent_core::{Tool, ToolContext, ToolError};
use agent_tools::{FileTools, Shell};
use serde_json::{Value, json};

async fn run(shell: &Shell, args: Value) -> Result<String, ToolError> {
    Tool::call(shell, args, &ToolContext::detached())
        .await
        .map(|o| o.into_content())
}

fn confined() -> bool {
    let c = agent_tools::shell::confinement();
    let ok = c.filesystem != agent_tools::shell::Level::None && c.process_tree;
    if !ok {
        println!("skipped: no Landlock or PID namespace here ({c:?})");
    }
    ok
}

fn is_root() -> bool {
    use std::os::unix::fs::MetadataExt;
    std::fs::metadata("/proc/self").is_ok_and(|m| m.uid() == 0)
}

fn sh(dir: &Path, program: &str, args: &[&str]) {
    let status = std::process::Command::new(program)
        .args(args)
        .current_dir(dir)
        .env("GIT_CONFIG_GLOBAL", "/dev/null")
        .env("GIT_CONFIG_NOSYSTEM", "1")
        .status()
        .unwrap();
    assert!(status.success(), "{program} {args:?}");
}

/// Writes an archive into the root the way a model would: with `write_file` (a GNU tar of
/// small ASCII files is valid UTF-8).
async fn write_archive(root: &Path, name: &str, archive: &Path) {
    let bytes = std::fs::read(archive).unwrap();
    let text = String::from_utf8(bytes).expect("the archive is UTF-8, as a model could write it");
    let files = FileTools::new(root).unwrap();
    let write = files
        .all_tools()
        .into_iter()
        .find(|t| t.name() == "write_file")
        .unwrap();
    write
        .call(
            json!({"path": name, "content": text}),
            &ToolContext::detached(),
        )
        .await
        .unwrap();
}

fn archive_of(staging: &Path, members: &[&str]) -> std::path::PathBuf {
    let out = staging.join("../archive.tar");
    let mut args = vec!["--format=gnu", "--owner=0", "--group=0", "-cf"];
    let out_s = out.to_str().unwrap().to_owned();
    args.push(&out_s);
    args.extend_from_slice(members);
    sh(staging, "tar", &args);
    out
}

// BREAKS: tar treats an archive name with a colon as a remote archive and runs the remote
// shell (`/usr/bin/rsh`, which is ssh on many distributions: a host of `-oProxyCommand=...`
// runs any command); `-f` values are only checked as paths.
#[tokio::test]
async fn attack_tar_remote_archive_name_is_refused() {
    let dir = tempfile::tempdir().unwrap();
    let shell = Shell::new(dir.path(), ["tar"]).unwrap();
    for name in ["localhost:x.tar", "-oProxyCommand=touch PWNED:x.tar"] {
        let result = run(
            &shell,
            json!({"program": "tar", "args": ["-t", "-f", name]}),
        )
        .await;
        assert!(
            result.is_err(),
            "tar ran with the remote archive name {name:?} (it resolves the host and starts \
             a remote shell): {result:?}"
        );
    }
}

// BREAKS: tar (allowed, with a policy) extracts `.git/config` from an archive the model wrote
// with write_file; the argument policy never looks at member names and the `.git` write
// guard lives only in the file tools. git's read-only `status` then runs the config's
// `filter.*.clean` command: arbitrary code from an allow-list of ["tar", "git"].
#[tokio::test]
async fn attack_tar_into_git_then_git_status_runs_no_code() {
    let root = tempfile::tempdir().unwrap();
    let r = root.path();
    std::fs::write(r.join("a.txt"), "hello\n").unwrap();
    sh(r, "git", &["init", "-q"]);
    sh(r, "git", &["add", "a.txt"]);
    sh(
        r,
        "git",
        &[
            "-c",
            "user.name=u",
            "-c",
            "user.email=u@e",
            "commit",
            "-qm",
            "init",
        ],
    );
    let staging_parent = tempfile::tempdir().unwrap();
    let staging = staging_parent.path().join("s");
    std::fs::create_dir_all(staging.join(".git")).unwrap();
    let mut config = std::fs::read_to_string(r.join(".git/config")).unwrap();
    config.push_str("[filter \"x\"]\n\tclean = \"touch PWNED; cat\"\n");
    std::fs::write(staging.join(".git/config"), config).unwrap();
    std::fs::write(staging.join(".gitattributes"), "* filter=x\n").unwrap();
    std::fs::write(staging.join("a.txt"), "changed\n").unwrap();
    let archive = archive_of(&staging, &[".git/config", ".gitattributes", "a.txt"]);
    write_archive(r, "update.tar", &archive).await;

    let shell = Shell::new(r, ["tar", "git"]).unwrap();
    let _ = run(
        &shell,
        json!({"program": "tar", "args": ["-x", "-f", "update.tar"]}),
    )
    .await;
    for args in [vec!["status"], vec!["diff"]] {
        let _ = run(&shell, json!({"program": "git", "args": args})).await;
    }
    assert!(
        !r.join("PWNED").exists(),
        "git ran a filter command from a .git/config written by tar"
    );
    let config = std::fs::read_to_string(r.join(".git/config")).unwrap();
    assert!(!config.contains("filter"), "tar wrote into .git: {config}");
}

// BREAKS: a symlink to /etc extracted by tar makes every lexical path check moot, and
// Landlock grants read on all of /etc: as root, /etc/shadow (or ssh host keys, TLS private
// keys) is readable with `cat`.
#[tokio::test]
async fn attack_symlink_from_archive_reads_no_etc_secret() {
    if !confined() {
        return;
    }
    let root = tempfile::tempdir().unwrap();
    let staging_parent = tempfile::tempdir().unwrap();
    let staging = staging_parent.path().join("s");
    std::fs::create_dir(&staging).unwrap();
    std::os::unix::fs::symlink("/etc", staging.join("conf")).unwrap();
    let archive = archive_of(&staging, &["conf"]);
    write_archive(root.path(), "a.tar", &archive).await;
    let shell = Shell::new(root.path(), ["tar", "cat"]).unwrap();
    run(
        &shell,
        json!({"program": "tar", "args": ["-x", "-f", "a.tar"]}),
    )
    .await
    .unwrap();
    let Ok(shadow) = std::fs::read_to_string("/etc/shadow") else {
        println!("skipped: this test process cannot read /etc/shadow itself");
        return;
    };
    let first = shadow.lines().next().unwrap_or_default().to_owned();
    let out = run(&shell, json!({"program": "cat", "args": ["conf/shadow"]}))
        .await
        .unwrap_or_default();
    assert!(
        first.is_empty() || !out.contains(&first),
        "read /etc/shadow through a link: {out}"
    );
}

/// Held: Landlock stops reads and writes through a link outside /etc and the system folders.
#[tokio::test]
async fn attack_symlink_from_archive_cannot_leave_the_root_elsewhere() {
    if !confined() {
        return;
    }
    let root = tempfile::tempdir().unwrap();
    let outside = tempfile::tempdir().unwrap();
    std::fs::write(outside.path().join("secret.txt"), "TOP SECRET").unwrap();
    let staging_parent = tempfile::tempdir().unwrap();
    let staging = staging_parent.path().join("s");
    std::fs::create_dir(&staging).unwrap();
    std::os::unix::fs::symlink(outside.path(), staging.join("out")).unwrap();
    let archive = archive_of(&staging, &["out"]);
    write_archive(root.path(), "a.tar", &archive).await;
    // A second archive with a file "through" the link.
    let staging2 = staging_parent.path().join("t");
    std::fs::create_dir_all(staging2.join("out")).unwrap();
    std::fs::write(staging2.join("out/pwned"), "x").unwrap();
    let out2 = staging_parent.path().join("b.tar");
    sh(
        &staging2,
        "tar",
        &["--format=gnu", "-cf", out2.to_str().unwrap(), "out/pwned"],
    );
    write_archive(root.path(), "b.tar", &out2).await;
    // A third: only a hard-link member whose target goes through the link.
    let staging3 = staging_parent.path().join("u");
    std::fs::create_dir_all(staging3.join("out")).unwrap();
    std::fs::write(staging3.join("out/secret.txt"), "decoy").unwrap();
    std::fs::hard_link(staging3.join("out/secret.txt"), staging3.join("h")).unwrap();
    let out3 = staging_parent.path().join("c.tar");
    let out3_s = out3.to_str().unwrap();
    sh(
        &staging3,
        "tar",
        &["--format=gnu", "-cf", out3_s, "out/secret.txt", "h"],
    );
    sh(
        &staging3,
        "tar",
        &["--delete", "-f", out3_s, "out/secret.txt"],
    );
    write_archive(root.path(), "c.tar", &out3).await;
    let shell = Shell::new(root.path(), ["tar", "cat", "grep"]).unwrap();
    for args in [
        vec!["-x", "-f", "a.tar"],
        vec!["-x", "-f", "b.tar"],
        vec!["-x", "-f", "b.tar", "-C", "out"],
        vec!["-x", "-f", "c.tar"],
    ] {
        let _ = run(&shell, json!({"program": "tar", "args": args})).await;
    }
    for (program, args) in [
        ("cat", vec!["out/secret.txt"]),
        ("cat", vec!["h"]),
        ("grep", vec!["-r", "SECRET", "out/"]),
        ("grep", vec!["-f", "out/secret.txt", "a.tar"]),
    ] {
        let out = run(&shell, json!({"program": program, "args": args}))
            .await
            .unwrap_or_default();
        assert!(!out.contains("TOP SECRET"), "{program}: {out}");
    }
    assert!(!outside.path().join("pwned").exists());
    assert!(!outside.path().join("out").exists());
}

// BREAKS: as root the shell's programs keep every capability (no user namespace is used when
// running as root), and tar extracts device nodes from an archive: a block device for the
// machine's disk appears inside the root, and Landlock allows reading it (it is beneath the
// root), so every file on the disk is readable raw with `head`/`grep -a`.
#[tokio::test]
async fn attack_tar_device_node_gives_no_raw_disk() {
    if !confined() || !is_root() {
        return;
    }
    use std::os::unix::fs::MetadataExt;
    let dev = std::fs::metadata("/").unwrap().dev();
    let (major, minor) = (nix::sys::stat::major(dev), nix::sys::stat::minor(dev));
    let staging_parent = tempfile::tempdir().unwrap();
    let staging = staging_parent.path().join("s");
    std::fs::create_dir(&staging).unwrap();
    sh(
        &staging,
        "mknod",
        &["disk", "b", &major.to_string(), &minor.to_string()],
    );
    sh(&staging, "mknod", &["log", "c", "1", "11"]);
    let archive = archive_of(&staging, &["disk", "log"]);
    let root = tempfile::tempdir().unwrap();
    std::fs::copy(&archive, root.path().join("a.tar")).unwrap();
    let shell = Shell::new(root.path(), ["tar", "wc", "head"])
        .unwrap()
        .timeout(std::time::Duration::from_secs(5));
    let _ = run(
        &shell,
        json!({"program": "tar", "args": ["-x", "-f", "a.tar"]}),
    )
    .await;
    let node = root.path().join("disk");
    let is_device = std::fs::symlink_metadata(&node)
        .map(|m| m.file_type().is_block_device() || m.file_type().is_char_device())
        .unwrap_or(false);
    if is_device {
        let out = run(&shell, json!({"program": "wc", "args": ["-c", "disk"]}))
            .await
            .unwrap_or_default();
        // No full-disk read here (it is big): the first block is enough to show it opens.
        println!("wc on the device: {out}");
    }
    // The kernel log, through a character device tar made: `/dev` is refused by name only.
    let out = run(
        &shell,
        json!({"program": "head", "args": ["-n", "1", "log"]}),
    )
    .await
    .unwrap_or_default();
    assert!(
        !out.contains("Linux version"),
        "read the kernel log through a device node tar extracted: {out}"
    );
    assert!(!is_device, "tar created a block device for the host's disk");
}

// BREAKS: `date`'s operands are "text", but `date MMDDhhmm[[CC]YY]` SETS the system clock
// (and as root without a user namespace the child has CAP_SYS_TIME). Shown with a fake
// `date` on PATH that records what it was asked to do.
#[tokio::test]
async fn attack_date_operand_that_sets_the_clock_is_refused() {
    let root = tempfile::tempdir().unwrap();
    let bin = tempfile::tempdir().unwrap();
    let fake = bin.path().join("date");
    std::fs::write(&fake, "#!/bin/sh\necho \"$@\" > \"$PWD/ran\"\n").unwrap();
    std::fs::set_permissions(&fake, std::fs::Permissions::from_mode(0o755)).unwrap();
    let path = format!("{}:/usr/bin:/bin", bin.path().display());
    let shell = Shell::new(root.path(), ["date"])
        .unwrap()
        .with_parent_env(vec![("PATH".into(), path)]);
    let result = run(&shell, json!({"program": "date", "args": ["010100002030"]})).await;
    assert!(
        result.is_err() && !root.path().join("ran").exists(),
        "`date 010100002030` (set the clock) was run: {result:?}"
    );
}

// BREAKS: programs without a policy may take any operand that looks like a relative path,
// and `@file` is such an operand; gcc reads options from it, and `-wrapper` runs any
// program: arbitrary code from an allow-list of ["cc"].
#[tokio::test]
async fn attack_cc_response_file_runs_no_code() {
    if std::process::Command::new("cc")
        .arg("--version")
        .output()
        .is_err()
    {
        return;
    }
    let root = tempfile::tempdir().unwrap();
    std::fs::write(root.path().join("x.c"), "int main(void){return 0;}\n").unwrap();
    std::fs::write(
        root.path().join("opts"),
        "-wrapper /bin/sh,-c,touch${IFS}PWNED -c -o x.o\n",
    )
    .unwrap();
    let shell = Shell::new(root.path(), ["cc"]).unwrap();
    let result = run(&shell, json!({"program": "cc", "args": ["@opts", "x.c"]})).await;
    assert!(
        !root.path().join("PWNED").exists(),
        "cc @file ran a command: {result:?}"
    );
}

// BREAKS: the never-allowed list is a deny-list, so programs that run other programs and are
// not on it (`setarch`, `linux64`, `run-parts`, `pytest`, `go`, ...) can be allowed, and their
// operands pass the path check: `setarch x86_64 sh script` runs a script the model wrote.
#[tokio::test]
async fn attack_runner_missing_from_never_list_runs_no_script() {
    let root = tempfile::tempdir().unwrap();
    std::fs::write(root.path().join("s"), "touch PWNED\n").unwrap();
    let Ok(shell) = Shell::new(root.path(), ["setarch"]) else {
        return; // refused at construction: held
    };
    let result = run(
        &shell,
        json!({"program": "setarch", "args": ["x86_64", "sh", "s"]}),
    )
    .await;
    assert!(
        !root.path().join("PWNED").exists(),
        "setarch ran sh with a script: {result:?}"
    );
}

/// Held: option-parsing tricks against the policies are refused.
#[tokio::test]
async fn attack_option_parsing_quirks_are_refused() {
    let root = tempfile::tempdir().unwrap();
    std::fs::write(root.path().join("a.txt"), "x\n").unwrap();
    let shell = Shell::new(
        root.path(),
        [
            "wc", "sort", "grep", "find", "git", "tar", "head", "diff", "cp", "uniq", "du",
        ],
    )
    .unwrap();
    let cases: &[(&str, &[&str])] = &[
        ("wc", &["--files0-from=/proc/self/environ"]),
        ("wc", &["--files0=/etc/passwd"]),
        ("wc", &["--files0-fr", "x"]),
        ("sort", &["-o", "/tmp/x", "a.txt"]),
        ("sort", &["-uo/tmp/x", "a.txt"]),
        ("sort", &["--compress-prog=sh", "a.txt"]),
        ("sort", &["-T", "/tmp", "a.txt"]),
        ("grep", &["x", "/etc/passwd"]),
        ("grep", &["-e", "x", "/etc/passwd"]),
        ("grep", &["-ie", "x", "/etc/passwd"]),
        ("grep", &["-fa.txt", "/etc/passwd"]),
        ("grep", &["-f/etc/passwd", "a.txt"]),
        ("grep", &["--file=/proc/self/environ", "a.txt"]),
        ("grep", &["-r", "x", "//etc"]),
        ("grep", &["x", "a.txt", "--", "/etc/passwd"]),
        ("find", &[".", "-newer", "/etc/passwd"]),
        ("find", &["/", "-name", "x"]),
        ("find", &[".", "-fprint", "x"]),
        ("find", &[".", "-exec", "sh", ";"]),
        ("find", &["-L", "."]),
        ("find", &[".", "-name", "x", "/etc"]),
        ("find", &["-D", "exec", "."]),
        ("git", &["-c", "core.pager=sh", "log"]),
        ("git", &["--exec-path=/tmp", "log"]),
        ("git", &["log", "--output=/tmp/x"]),
        ("git", &["log", "--ext-diff"]),
        ("git", &["grep", "-O", "x"]),
        ("git", &["grep", "--open-files-in-pager=sh", "x"]),
        ("git", &["diff", "--no-index", "/etc/passwd", "a.txt"]),
        ("git", &["log", "--", "/etc"]),
        ("tar", &["xf", "a.tar"]),
        ("tar", &["-xf", "a.tar", "-C", "/tmp"]),
        ("tar", &["-x", "--to-command=sh", "-f", "a.tar"]),
        ("tar", &["-xf", "a.tar", "--checkpoint-action=exec=sh"]),
        ("tar", &["-cf", "/tmp/out.tar", "a.txt"]),
        ("tar", &["-cf", "out.tar", "/etc/passwd"]),
        ("tar", &["-cf", "out.tar", "-T", "list"]),
        ("tar", &["-Ipython3", "-xf", "a.tar"]),
        ("tar", &["-xf", "a.tar", "--use-compress-program=sh"]),
        ("head", &["-c", "10", "/proc/self/environ"]),
        ("head", &["/dev/vda"]),
        ("diff", &["a.txt", "/proc/1/environ"]),
        ("diff", &["--from-file=/etc/passwd", "a.txt"]),
        ("cp", &["a.txt", "/tmp/x"]),
        ("cp", &["-t", "x", "a.txt"]),
        ("cp", &["a.txt", ".git/config"]),
        ("cp", &["a.txt", ".GIT/hooks/pre-commit"]),
        ("uniq", &["a.txt", "b.txt"]),
        ("du", &["-X", "/etc/passwd"]),
        ("du", &["--files0-from=/proc/self/environ"]),
    ];
    for (program, args) in cases {
        let result = run(&shell, json!({"program": program, "args": args})).await;
        assert!(
            result.is_err(),
            "{program} {args:?} was allowed: {result:?}"
        );
    }
}

// BREAKS: once any code runs in the sandbox (here through `setarch`, see above; `tar` + `git`
// or `cc` do as well), Landlock does not govern connecting to a Unix socket by path: a socket
// outside the root (the Docker or containerd socket, an ssh-agent, D-Bus) is reachable.
// What the confinement does stop is checked alongside: /proc of the agent, writes outside,
// TCP to this machine.
#[tokio::test]
async fn attack_code_in_the_sandbox_reaches_no_socket_outside() {
    if !confined() {
        return;
    }
    use std::io::Read;
    let outside = tempfile::tempdir().unwrap();
    let socket = outside.path().join("agent.sock");
    let unix = std::os::unix::net::UnixListener::bind(&socket).unwrap();
    unix.set_nonblocking(true).unwrap();
    let tcp = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    tcp.set_nonblocking(true).unwrap();
    let abstract_name = format!("attack-{}", std::process::id());
    let abstract_addr = {
        use std::os::linux::net::SocketAddrExt;
        std::os::unix::net::SocketAddr::from_abstract_name(abstract_name.as_bytes()).unwrap()
    };
    let abstract_listener = std::os::unix::net::UnixListener::bind_addr(&abstract_addr).unwrap();
    abstract_listener.set_nonblocking(true).unwrap();
    let port = tcp.local_addr().unwrap().port();
    let root = tempfile::tempdir().unwrap();
    let pid = std::process::id();
    let script = format!(
        "curl -s -m 3 --unix-socket {sock} http://x/ -d unix-socket-reached\n\
         curl -s -m 3 http://127.0.0.1:{port}/ -d tcp-reached\n\
         /usr/bin/python3 -c \"import socket; s=socket.socket(socket.AF_UNIX); s.connect(b'\\\\0{abstract_name}')\"\n\
         cat /proc/{pid}/environ > environ.txt\n\
         echo x > {out}/written\n",
        sock = socket.display(),
        out = outside.path().display(),
    );
    std::fs::write(root.path().join("probe.sh"), script).unwrap();
    let Ok(shell) = Shell::new(root.path(), ["setarch"]) else {
        return;
    };
    let shell = shell.timeout(std::time::Duration::from_secs(15));
    let _ = run(
        &shell,
        json!({"program": "setarch", "args": ["x86_64", "sh", "probe.sh"]}),
    )
    .await;
    let mut reached = Vec::new();
    if let Ok((mut stream, _)) = unix.accept() {
        stream.set_nonblocking(false).unwrap();
        stream
            .set_read_timeout(Some(std::time::Duration::from_secs(1)))
            .unwrap();
        let mut buf = [0u8; 512];
        let n = stream.read(&mut buf).unwrap_or(0);
        reached.push(format!(
            "unix socket: {}",
            String::from_utf8_lossy(&buf[..n])
        ));
    }
    if abstract_listener.accept().is_ok() {
        reached.push("an abstract unix socket".to_owned());
    }
    if tcp.accept().is_ok() {
        reached.push("tcp 127.0.0.1".to_owned());
    }
    let environ = std::fs::read(root.path().join("environ.txt")).unwrap_or_default();
    if !environ.is_empty() {
        reached.push("the agent's /proc environ".to_owned());
    }
    if outside.path().join("written").exists() {
        reached.push("a write outside".to_owned());
    }
    assert!(reached.is_empty(), "sandboxed code reached: {reached:?}");
}

// BREAKS: `cwd` may be `.git` (the working folder goes through the file tools' resolver, which
// refuses links but not `.git`), and the `.git` check on operands looks at the names given,
// not where they land: `cp <root>/evil.txt config` run in `.git` replaces the repository's
// config with one that sets `core.fsmonitor` (code at the user's next `git status`, outside
// any sandbox) and a filter that the agent's own `git status` runs.
#[tokio::test]
async fn attack_cwd_in_git_lets_cp_rewrite_the_config() {
    let root = tempfile::tempdir().unwrap();
    let r = root.path();
    std::fs::write(r.join("a.txt"), "hello\n").unwrap();
    sh(r, "git", &["init", "-q"]);
    sh(r, "git", &["add", "a.txt"]);
    sh(
        r,
        "git",
        &[
            "-c",
            "user.name=u",
            "-c",
            "user.email=u@e",
            "commit",
            "-qm",
            "init",
        ],
    );
    let mut config = std::fs::read_to_string(r.join(".git/config")).unwrap();
    config.push_str(
        "\tfsmonitor = touch USER-PWNED\n[filter \"x\"]\n\tclean = \"touch PWNED; cat\"\n",
    );
    // Both written by the model with write_file, outside `.git`.
    let files = FileTools::new(r).unwrap();
    let write = files
        .all_tools()
        .into_iter()
        .find(|t| t.name() == "write_file")
        .unwrap();
    for (path, content) in [
        ("notes.txt", config.as_str()),
        (".gitattributes", "* filter=x\n"),
        ("a.txt", "changed\n"),
    ] {
        write
            .call(
                json!({"path": path, "content": content}),
                &ToolContext::detached(),
            )
            .await
            .unwrap();
    }
    let source = files.root().join("notes.txt");
    let shell = Shell::new(r, ["cp", "git"]).unwrap();
    let copied = run(
        &shell,
        json!({"program": "cp", "args": [source.to_str().unwrap(), "config"], "cwd": ".git"}),
    )
    .await;
    let _ = run(&shell, json!({"program": "git", "args": ["status"]})).await;
    let config = std::fs::read_to_string(r.join(".git/config")).unwrap();
    assert!(
        !config.contains("fsmonitor"),
        "cp rewrote .git/config ({copied:?}): {config}"
    );
    assert!(!r.join("PWNED").exists(), "git status ran the filter");
}
