//! Starting a stdio MCP server: the child process, its stderr, and ending its process group.

use std::collections::VecDeque;
use std::ffi::OsString;
use std::path::PathBuf;
use std::process::Stdio;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use process_wrap::tokio::{CommandWrap, KillOnDrop, ProcessGroup};
use rmcp::RoleClient;
use rmcp::ServiceExt;
use rmcp::service::RunningService;
use rmcp::transport::TokioChildProcess;
use tokio::io::{AsyncBufReadExt, BufReader};

use super::error::{McpError, handshake_reason};
use super::handler::Handler;

/// How many lines of a stdio server's stderr are kept for error messages.
const STDERR_TAIL_LINES: usize = 20;

/// The variables a server keeps after [`env_clear`](super::McpClientBuilder::env_clear).
const KEPT_WITH_ENV_CLEAR: [&str; 5] = ["PATH", "HOME", "USER", "LANG", "TMPDIR"];

/// How to start a stdio server.
pub(super) struct StdioCommand {
    pub(super) program: OsString,
    pub(super) args: Vec<OsString>,
    /// Set (`Some`) or removed (`None`), in order.
    pub(super) env: Vec<(OsString, Option<OsString>)>,
    pub(super) clear_env: bool,
    pub(super) current_dir: Option<PathBuf>,
}

impl StdioCommand {
    fn command(&self) -> tokio::process::Command {
        let mut command = tokio::process::Command::new(&self.program);
        command.args(&self.args);
        if self.clear_env {
            command.env_clear();
            for key in KEPT_WITH_ENV_CLEAR {
                if let Some(value) = std::env::var_os(key) {
                    command.env(key, value);
                }
            }
        }
        for (key, value) in &self.env {
            match value {
                Some(v) => command.env(key, v),
                None => command.env_remove(key),
            };
        }
        if let Some(dir) = &self.current_dir {
            command.current_dir(dir);
        }
        command
    }
}

/// Starts the server and completes the handshake; returns the session and the server's
/// process id (the leader of its process group).
pub(super) async fn start(
    spec: &StdioCommand,
    handler: Handler,
    label: &str,
    stderr: &StderrTail,
    startup_timeout: Duration,
) -> Result<(RunningService<RoleClient, Handler>, Option<u32>), McpError> {
    let mut wrapped = CommandWrap::from(spec.command());
    // Its own process group, so shutting down also ends what the server started (`npx`
    // runs the server as a grandchild).
    wrapped.wrap(ProcessGroup::leader()).wrap(KillOnDrop);
    let (transport, child_stderr) = TokioChildProcess::builder(wrapped)
        .stderr(Stdio::piped())
        .spawn()
        .map_err(|e| spawn_error(&spec.program, &e))?;
    let pid = transport.id();
    let reader = child_stderr.map(|s| stderr.follow(s, label.to_owned()));
    let failed = match tokio::time::timeout(startup_timeout, handler.serve(transport)).await {
        Ok(Ok(service)) => return Ok((service, pid)),
        Ok(Err(e)) => handshake_reason(&e.to_string(), true),
        Err(_) => format!(
            "no answer to `initialize` within {}s; is it an MCP server speaking stdio? (raise \
             startup_timeout if it is slow to start)",
            startup_timeout.as_secs_f32()
        ),
    };
    // The transport was dropped with the failed handshake, which ends the child; give its
    // last words a moment to arrive.
    if let Some(reader) = reader {
        let _ = tokio::time::timeout(Duration::from_millis(500), reader).await;
    }
    Err(McpError::Handshake {
        server: label.to_owned(),
        reason: failed,
        stderr: stderr.lines(),
    })
}

/// Sends `signal` to the server's whole process group; a group already gone is fine.
pub(super) fn signal_group(pid: Option<u32>, signal: nix::sys::signal::Signal) {
    if let Some(pid) = pid.and_then(|p| i32::try_from(p).ok()) {
        let _ = nix::sys::signal::killpg(nix::unistd::Pid::from_raw(pid), signal);
    }
}

pub(super) fn spawn_error(program: &OsString, e: &std::io::Error) -> McpError {
    let program = program.to_string_lossy().into_owned();
    let reason = match e.kind() {
        std::io::ErrorKind::NotFound => format!(
            "program not found ({e}); install it or give its full path (is it on PATH? \
             `npx` comes with Node.js, `uvx` with uv)"
        ),
        std::io::ErrorKind::PermissionDenied => {
            format!("permission denied ({e}); is the file executable?")
        }
        _ => e.to_string(),
    };
    McpError::Spawn { program, reason }
}

/// The last lines a stdio server wrote to stderr (also logged at `debug`).
#[derive(Clone, Default)]
pub(super) struct StderrTail(Arc<Mutex<VecDeque<String>>>);

impl StderrTail {
    pub(super) fn follow(
        &self,
        stderr: tokio::process::ChildStderr,
        server: String,
    ) -> tokio::task::JoinHandle<()> {
        let tail = self.0.clone();
        tokio::spawn(async move {
            let mut lines = BufReader::new(stderr).lines();
            while let Ok(Some(line)) = lines.next_line().await {
                tracing::debug!(target: "agent_tools::mcp", %server, "stderr: {line}");
                if let Ok(mut tail) = tail.lock() {
                    if tail.len() == STDERR_TAIL_LINES {
                        tail.pop_front();
                    }
                    tail.push_back(line);
                }
            }
        })
    }

    pub(super) fn lines(&self) -> Vec<String> {
        self.0
            .lock()
            .map(|t| t.iter().cloned().collect())
            .unwrap_or_default()
    }
}
