//! `shell`: runs allow-listed programs, never a shell.
//!
//! The model gives a program name and an argument array; there is no shell in between, so
//! `;`, `|`, `&&`, `$(...)` and globs are plain text. The program must be on the allow-list
//! (by bare name), runs in a folder inside the sandbox root, with an environment scrubbed of
//! secrets (`*_KEY`, `*_TOKEN`, `*_SECRET`, unless passed explicitly), in its own process
//! group, which is killed when the timeout passes, the run is cancelled, or the call is
//! dropped. Output is capped. Side-effecting.

use std::path::PathBuf;
use std::process::Stdio;
use std::time::Duration;

use agent_core::{
    ToolContext, ToolError, ToolErrorKind, ToolMeta, ToolOutput, TypedTool, async_trait,
};
use nix::sys::signal::{Signal, killpg};
use nix::unistd::Pid;
use schemars::JsonSchema;
use serde::Deserialize;
use tokio::io::AsyncReadExt;

use crate::files::FileTools;

/// Arguments of `shell`.
#[derive(Debug, Deserialize, JsonSchema)]
pub struct ShellArgs {
    /// The program to run, by name (it must be allowed), e.g. "wc".
    pub program: String,
    /// Its arguments, one string each; no shell syntax is interpreted.
    #[serde(default)]
    pub args: Vec<String>,
    /// The folder to run in, relative to the sandbox root. Default: the root.
    #[serde(default)]
    pub cwd: Option<String>,
}

/// The `shell` tool.
///
/// ```
/// use agent_tools::Shell;
/// let dir = std::env::temp_dir();
/// let shell = Shell::new(&dir, ["ls", "wc", "grep"]).unwrap();
/// ```
#[derive(Clone, Debug)]
pub struct Shell {
    sandbox: FileTools,
    allowed: Vec<String>,
    timeout: Duration,
    max_output: usize,
    env: Vec<(String, String)>,
    passed: Vec<String>,
}

impl Shell {
    /// A shell confined to `root` that may run only `allowed` programs. Defaults: 30 s
    /// timeout, 64 KiB of output per stream, the process environment minus secrets.
    pub fn new<S: Into<String>>(
        root: impl AsRef<std::path::Path>,
        allowed: impl IntoIterator<Item = S>,
    ) -> std::io::Result<Self> {
        Ok(Shell {
            sandbox: FileTools::new(root)?,
            allowed: allowed.into_iter().map(Into::into).collect(),
            timeout: Duration::from_secs(30),
            max_output: 64 * 1024,
            env: std::env::vars().collect(),
            passed: Vec::new(),
        })
    }

    /// Sets the timeout.
    pub fn timeout(mut self, timeout: Duration) -> Self {
        self.timeout = timeout;
        self
    }

    /// Sets the output cap, per stream, in bytes.
    pub fn max_output(mut self, bytes: usize) -> Self {
        self.max_output = bytes;
        self
    }

    /// Lets a variable through even if it looks like a secret.
    pub fn pass_env(mut self, name: impl Into<String>) -> Self {
        self.passed.push(name.into());
        self
    }

    /// Uses this environment as the parent's (instead of the process's own).
    pub fn with_parent_env(mut self, env: Vec<(String, String)>) -> Self {
        self.env = env;
        self
    }

    /// The environment the programs get: the parent's, without secrets.
    pub fn child_env(&self) -> Vec<(String, String)> {
        self.env
            .iter()
            .filter(|(name, _)| self.passed.contains(name) || !looks_secret(name))
            .cloned()
            .collect()
    }
}

/// `*_KEY`, `*_TOKEN`, `*_SECRET` (any case), and the bare names.
fn looks_secret(name: &str) -> bool {
    let upper = name.to_ascii_uppercase();
    ["KEY", "TOKEN", "SECRET"]
        .iter()
        .any(|s| upper == *s || upper.ends_with(&format!("_{s}")))
}

/// Kills the whole process group when dropped, unless the process was reaped.
struct GroupGuard {
    pgid: Option<Pid>,
}

impl GroupGuard {
    fn kill(&mut self) {
        if let Some(pgid) = self.pgid.take() {
            let _ = killpg(pgid, Signal::SIGKILL);
        }
    }
}

impl Drop for GroupGuard {
    fn drop(&mut self) {
        self.kill();
    }
}

async fn read_capped(
    stream: Option<impl tokio::io::AsyncRead + Unpin>,
    cap: usize,
) -> (String, bool) {
    let Some(mut stream) = stream else {
        return (String::new(), false);
    };
    let mut buf = Vec::new();
    let mut chunk = [0u8; 8192];
    let mut truncated = false;
    loop {
        match stream.read(&mut chunk).await {
            Ok(0) | Err(_) => break,
            Ok(n) => {
                let room = cap.saturating_sub(buf.len());
                buf.extend_from_slice(&chunk[..n.min(room)]);
                // Keep draining so the program never blocks on a full pipe.
                truncated |= n > room;
            }
        }
    }
    (String::from_utf8_lossy(&buf).into_owned(), truncated)
}

#[async_trait]
impl TypedTool for Shell {
    type Args = ShellArgs;

    fn name(&self) -> &str {
        "shell"
    }

    fn description(&self) -> &str {
        "Runs one allowed program with an argument array (no shell: pipes, redirections and \
         `;` are not interpreted) in the sandbox folder, and returns its exit status and \
         output. Run one program per call."
    }

    fn meta(&self) -> ToolMeta {
        ToolMeta::side_effecting()
    }

    async fn call(&self, args: ShellArgs, ctx: &ToolContext) -> Result<ToolOutput, ToolError> {
        if args.program.contains('/') || !self.allowed.contains(&args.program) {
            return Err(ToolError::permission_denied(format!(
                "`{}` is not an allowed program; allowed: {}",
                args.program,
                self.allowed.join(", ")
            )));
        }
        let cwd: PathBuf = self
            .sandbox
            .resolve(args.cwd.as_deref().unwrap_or("."), true)?;
        if !cwd.is_dir() {
            return Err(ToolError::invalid_arguments("`cwd` must be a folder"));
        }
        let mut command = tokio::process::Command::new(&args.program);
        command
            .args(&args.args)
            .current_dir(&cwd)
            .env_clear()
            .envs(self.child_env())
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .process_group(0)
            .kill_on_drop(true);
        let mut child = command
            .spawn()
            .map_err(|e| ToolError::failed(format!("cannot start `{}`: {e}", args.program)))?;
        let mut guard = GroupGuard {
            pgid: child
                .id()
                .and_then(|id| i32::try_from(id).ok())
                .map(Pid::from_raw),
        };
        let stdout = read_capped(child.stdout.take(), self.max_output);
        let stderr = read_capped(child.stderr.take(), self.max_output);
        let run = async { tokio::join!(child.wait(), stdout, stderr) };
        let outcome = tokio::select! {
            done = run => done,
            _ = tokio::time::sleep(self.timeout) => {
                guard.kill();
                return Err(ToolError::new(
                    ToolErrorKind::Timeout,
                    format!(
                        "`{}` did not finish within {} s; it and its child processes were killed",
                        args.program,
                        self.timeout.as_secs_f64()
                    ),
                ));
            }
            _ = ctx.cancel.cancelled() => {
                guard.kill();
                return Err(ToolError::new(ToolErrorKind::Cancelled, "the run was cancelled; the program was killed"));
            }
        };
        let (status, (out, out_cut), (err, err_cut)) = outcome;
        // Reaped: children it left behind still share the group; end them too.
        guard.kill();
        let status = status.map_err(|e| {
            ToolError::failed(format!("waiting for `{}` failed: {e}", args.program))
        })?;
        let code = status
            .code()
            .map_or_else(|| "killed by a signal".to_owned(), |c| c.to_string());
        let mut text = format!("exit status: {code}\n");
        for (name, body, cut) in [("stdout", out, out_cut), ("stderr", err, err_cut)] {
            if body.is_empty() {
                continue;
            }
            text.push_str(&format!("{name}:\n{body}"));
            if !body.ends_with('\n') {
                text.push('\n');
            }
            if cut {
                text.push_str(&format!("[{name} cut at {} bytes]\n", self.max_output));
            }
        }
        Ok(ToolOutput::Text(text))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn secret_looking_names_are_recognised() {
        for name in [
            "OPENAI_API_KEY",
            "GITHUB_TOKEN",
            "aws_secret",
            "KEY",
            "My_Token",
        ] {
            assert!(looks_secret(name), "{name}");
        }
        for name in ["PATH", "HOME", "KEYBOARD", "TOKENIZER_PATH", "LANG"] {
            assert!(!looks_secret(name), "{name}");
        }
    }
}
