//! The real MCP servers the MCP tests talk to: the reference servers, the official
//! inspector and the official TypeScript SDK, pinned by `tests/mcp-servers/package-lock.json`.
//!
//! A test asks for them with [`installed`]. The first caller installs them (`npm ci`, from
//! the lock file, into `tests/mcp-servers/node_modules`) when Node.js and npm are on the
//! `PATH`; concurrent callers, in this process or in other test processes, are safe: each
//! installs into a private folder and the first to finish renames it into place, an atomic
//! step on one file system. Without Node.js the tests print one line saying how to run them
//! and pass as skipped, unless `AGENT_MCP_REQUIRED=1` (CI sets it), which makes a missing
//! server a failure. Nothing here runs during a test once the servers are installed, and the
//! servers themselves never reach the network.

use std::io::Write;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::OnceLock;
use std::time::Duration;

use agent_core::{ToolCall, ToolContext, ToolError, ToolSet};
use serde_json::Value;

/// The folder with `package.json`, the lock file and `changing-tools.mjs`.
pub fn dir() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("mcp-servers")
}

/// The installed servers.
#[derive(Clone, Debug)]
pub struct Servers {
    root: PathBuf,
}

impl Servers {
    /// The path of an installed executable (`mcp-server-everything`,
    /// `mcp-server-filesystem`, `mcp-inspector`).
    pub fn bin(&self, name: &str) -> PathBuf {
        self.root.join("node_modules").join(".bin").join(name)
    }

    /// The test server whose tool list changes (official TypeScript SDK); run it with `node`.
    pub fn changing_tools(&self) -> PathBuf {
        self.root.join("changing-tools.mjs")
    }
}

/// The servers, installed on first use; `None` (after one line on stderr saying how to run
/// these tests) when they cannot be installed and `AGENT_MCP_REQUIRED` is not `1`.
///
/// ```no_run
/// # async fn t() {
/// let Some(servers) = agent_tests::mcp_servers::installed() else { return };
/// let everything = servers.bin("mcp-server-everything");
/// # }
/// ```
pub fn installed() -> Option<Servers> {
    static RESULT: OnceLock<Result<Servers, String>> = OnceLock::new();
    match RESULT.get_or_init(|| install(&dir())) {
        Ok(servers) => Some(servers.clone()),
        Err(why) => {
            let required = std::env::var("AGENT_MCP_REQUIRED").is_ok_and(|v| v == "1");
            assert!(!required, "AGENT_MCP_REQUIRED=1, but {why}");
            static SAID: OnceLock<()> = OnceLock::new();
            SAID.get_or_init(|| {
                // Straight to stderr, past the test harness's capture: one line per process.
                let _ = writeln!(
                    std::io::stderr(),
                    "note: MCP tests against the reference servers skipped: {why}; install \
                     Node.js 20+ and npm (or run `npm ci --prefix tests/mcp-servers`) to run them"
                );
            });
            None
        }
    }
}

/// The executables every test needs, as a check that an installation is whole.
const EXPECTED: [&str; 3] = [
    "mcp-server-everything",
    "mcp-server-filesystem",
    "mcp-inspector",
];

fn is_installed(root: &Path) -> bool {
    let bins = root.join("node_modules").join(".bin");
    EXPECTED.iter().all(|name| bins.join(name).exists())
        && root
            .join("node_modules")
            .join("@modelcontextprotocol")
            .join("sdk")
            .exists()
}

fn install(root: &Path) -> Result<Servers, String> {
    let servers = Servers {
        root: root.to_path_buf(),
    };
    if is_installed(root) {
        return Ok(servers);
    }
    let npm_works = Command::new("npm")
        .arg("--version")
        .output()
        .is_ok_and(|o| o.status.success());
    let node_works = Command::new("node")
        .arg("--version")
        .output()
        .is_ok_and(|o| o.status.success());
    if !npm_works || !node_works {
        return Err("Node.js and npm are not on the PATH".into());
    }
    // A private folder next to the final one (same file system, so the rename is atomic).
    let staging = root.join(format!(".install-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&staging);
    let result = stage(root, &staging);
    let outcome = result.and_then(|()| {
        match std::fs::rename(staging.join("node_modules"), root.join("node_modules")) {
            Ok(()) => Ok(()),
            // Another process finished first: its copy is the same lock file's.
            Err(_) if is_installed(root) => Ok(()),
            Err(e) => Err(format!(
                "cannot move the installed servers into {}: {e}",
                root.join("node_modules").display()
            )),
        }
    });
    let _ = std::fs::remove_dir_all(&staging);
    outcome?;
    if is_installed(root) {
        Ok(servers)
    } else {
        Err(format!(
            "`npm ci` finished but {} is incomplete",
            root.join("node_modules").display()
        ))
    }
}

/// `npm ci` from the lock file into `staging`.
fn stage(root: &Path, staging: &Path) -> Result<(), String> {
    std::fs::create_dir_all(staging).map_err(|e| format!("cannot create {staging:?}: {e}"))?;
    for file in ["package.json", "package-lock.json"] {
        std::fs::copy(root.join(file), staging.join(file))
            .map_err(|e| format!("cannot copy {file}: {e}"))?;
    }
    let out = Command::new("npm")
        .args(["ci", "--no-audit", "--no-fund", "--prefix"])
        .arg(staging)
        .output()
        .map_err(|e| format!("cannot run npm: {e}"))?;
    if out.status.success() {
        Ok(())
    } else {
        let stderr = String::from_utf8_lossy(&out.stderr);
        let last = stderr.lines().rev().take(5).collect::<Vec<_>>();
        Err(format!(
            "`npm ci --prefix tests/mcp-servers` failed ({}): {}",
            out.status,
            last.into_iter().rev().collect::<Vec<_>>().join(" | ")
        ))
    }
}

/// Whether a process exists, zombies included (a zombie is a process nobody reaped).
pub fn process_exists(pid: u32) -> bool {
    let Ok(pid) = i32::try_from(pid) else {
        return false;
    };
    // Signal 0 checks without sending; EPERM still means the process is there.
    match nix::sys::signal::kill(nix::unistd::Pid::from_raw(pid), None) {
        Ok(()) => true,
        Err(errno) => errno == nix::errno::Errno::EPERM,
    }
}

/// The ids of the processes in a process group.
pub fn process_group_members(pgid: u32) -> Vec<u32> {
    // `pgrep -g` lists a process group on Linux, the BSDs and macOS alike.
    Command::new("pgrep")
        .arg("-g")
        .arg(pgid.to_string())
        .output()
        .map(|o| {
            String::from_utf8_lossy(&o.stdout)
                .lines()
                .filter_map(|l| l.trim().parse::<u32>().ok())
                .collect()
        })
        .unwrap_or_default()
}

/// Waits until `done` holds, checking every 20 ms, for at most `limit` (a generous bound:
/// the tests assert the condition, not the time).
pub async fn eventually(limit: Duration, mut done: impl FnMut() -> bool) -> bool {
    let deadline = tokio::time::Instant::now() + limit;
    while tokio::time::Instant::now() < deadline {
        if done() {
            return true;
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    done()
}

/// Checks a call against the tool set and runs it (30 s timeout), as the loop would; the
/// output as text.
pub async fn call_tool(tools: &ToolSet, name: &str, args: Value) -> Result<String, ToolError> {
    let checked = tools.check_call(&ToolCall::new("c1", name, &args))?;
    tools
        .invoke(
            name,
            checked,
            ToolContext::detached(),
            Duration::from_secs(30),
        )
        .await
        .map(|o| o.into_content())
}
