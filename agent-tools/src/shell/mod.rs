//! `shell`: runs allow-listed programs, never a shell, with arguments confined.
//!
//! The model gives a program name and an argument array; there is no shell in between, so
//! `;`, `|`, `&&`, `$(...)` and globs are plain text. Four layers, each closing a class of
//! escape by construction:
//!
//! 1. **Programs**: only allow-listed ones, by bare name; programs that run other programs
//!    or code (`env`, `xargs`, `timeout`, shells, interpreters, `sed`, `awk`, ...) cannot be
//!    allowed at all.
//! 2. **Arguments**: known programs ([`KNOWN_PROGRAMS`]) have an allow-list of options, so
//!    `find -exec`, `tar --to-command`, `wc --files0-from`, `git -c`, `sort -o` are refused
//!    because they are not on it; every path must stay inside the root (no absolute path
//!    outside it, no `..`, nothing under `/proc`, `/dev` or `/sys`); programs without a
//!    policy may only be given plain paths inside the root, no options, and run only where
//!    Landlock can stop them from running anything else. `git` may run only the
//!    read-only commands in [`GIT_READ_ONLY`], with configuration that switches off pagers,
//!    hooks, fsmonitor, external diffs and text conversion whatever `.git/config` says.
//! 3. **Confinement** ([`confinement`]): Landlock and a PID namespace where the machine
//!    offers them, so a missed option still cannot read or write outside, and every process
//!    a call starts ends with it.
//! 4. **Environment**: the child's starts empty, plus `PATH`, `LANG`, and `HOME`/`TMPDIR`
//!    pointing at a private empty folder made for the call (not the root: a model could
//!    write rc files there), and only the variables passed on purpose with
//!    [`Shell::pass_env`].
//!
//! Output is capped; the timeout, a cancellation or dropping the call kills the program and
//! everything it started. Side-effecting.

mod confine;
mod git_guard;
mod policy;

use std::path::PathBuf;
use std::process::Stdio;
use std::time::Duration;

use agent_core::{
    ToolContext, ToolError, ToolErrorKind, ToolMeta, ToolOutput, TypedTool, async_trait,
};
pub use confine::{Confinement, Level, confinement};
use nix::sys::signal::{Signal, kill, killpg};
use nix::unistd::Pid;
pub use policy::{GIT_READ_ONLY, KNOWN_PROGRAMS};
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
/// // Programs that run other programs cannot be allowed:
/// assert!(Shell::new(&dir, ["xargs"]).is_err());
/// ```
#[derive(Clone, Debug)]
pub struct Shell {
    sandbox: FileTools,
    allowed: Vec<String>,
    timeout: Duration,
    max_output: usize,
    env: Vec<(String, String)>,
    passed: Vec<String>,
    require_confinement: bool,
}

/// The PATH a child gets when the parent has none.
const DEFAULT_PATH: &str = "/usr/local/bin:/usr/bin:/bin";

impl Shell {
    /// A shell confined to `root` that may run only `allowed` programs. Defaults: 30 s
    /// timeout, 64 KiB of output per stream, an environment of `PATH`, `LANG`, `HOME` and
    /// `TMPDIR` only.
    ///
    /// Fails when `root` is not a folder, or when an allowed program runs other programs or
    /// code (`env`, `xargs`, `nice`, `timeout`, shells, interpreters, `sed`, `awk`, ...).
    pub fn new<S: Into<String>>(
        root: impl AsRef<std::path::Path>,
        allowed: impl IntoIterator<Item = S>,
    ) -> std::io::Result<Self> {
        let allowed: Vec<String> = allowed.into_iter().map(Into::into).collect();
        for program in &allowed {
            if let Some(why) = policy::never_allowed(program) {
                return Err(std::io::Error::new(std::io::ErrorKind::InvalidInput, why));
            }
        }
        Ok(Shell {
            sandbox: FileTools::new(root)?,
            allowed,
            timeout: Duration::from_secs(30),
            max_output: 64 * 1024,
            env: std::env::vars().collect(),
            passed: Vec::new(),
            require_confinement: false,
        })
    }

    /// Sets the timeout.
    #[must_use]
    pub fn timeout(mut self, timeout: Duration) -> Self {
        self.timeout = timeout;
        self
    }

    /// Sets the output cap, per stream, in bytes.
    #[must_use]
    pub fn max_output(mut self, bytes: usize) -> Self {
        self.max_output = bytes;
        self
    }

    /// Passes this variable of the parent's environment to the programs (nothing else is
    /// passed besides `PATH` and `LANG`).
    #[must_use]
    pub fn pass_env(mut self, name: impl Into<String>) -> Self {
        self.passed.push(name.into());
        self
    }

    /// Uses this environment as the parent's (instead of the process's own).
    #[must_use]
    pub fn with_parent_env(mut self, env: Vec<(String, String)>) -> Self {
        self.env = env;
        self
    }

    /// Refuses to run anything unless Landlock is fully enforced and programs get their own
    /// PID namespace (see [`confinement`]); without this the shell runs with what the
    /// machine offers.
    #[must_use]
    pub fn require_confinement(mut self) -> Self {
        self.require_confinement = true;
        self
    }

    /// The environment the programs get, besides `HOME` and `TMPDIR` (a private empty folder
    /// per call): `PATH`, `LANG`, and the variables passed with [`Shell::pass_env`].
    pub fn child_env(&self) -> Vec<(String, String)> {
        let get = |name: &str| {
            self.env
                .iter()
                .find(|(n, _)| n == name)
                .map(|(_, v)| v.clone())
        };
        let mut env = vec![
            (
                "PATH".to_owned(),
                get("PATH").unwrap_or_else(|| DEFAULT_PATH.to_owned()),
            ),
            (
                "LANG".to_owned(),
                get("LANG").unwrap_or_else(|| "C.UTF-8".to_owned()),
            ),
        ];
        for name in &self.passed {
            if let Some(value) = get(name)
                && !env.iter().any(|(n, _)| n == name)
            {
                env.push((name.clone(), value));
            }
        }
        env
    }
}

/// Kills the whole process group when dropped, unless the process was reaped.
struct GroupGuard {
    pgid: Option<Pid>,
    /// No PID namespace holds the program's processes: find its descendants by hand.
    sweep: bool,
}

impl GroupGuard {
    fn kill(&mut self) {
        if let Some(pgid) = self.pgid.take() {
            if self.sweep {
                // Before the group dies and its children are handed to init.
                for pid in confine::descendants(pgid.as_raw()) {
                    let _ = kill(Pid::from_raw(pid), Signal::SIGKILL);
                }
            }
            // With a namespace, killing `unshare` kills its init, and the kernel then ends
            // every process in the namespace.
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
        policy::check(&args.program, &args.args, self.sandbox.root())
            .map_err(ToolError::permission_denied)?;
        let confined = confinement();
        if confined.filesystem == Level::None && !policy::has_policy(&args.program) {
            // Arguments that name only files do not make an unknown program safe (`setarch
            // x86_64 sh script` runs a shell): without Landlock nothing would stop it from
            // running another program, so only programs with a policy run here.
            return Err(ToolError::permission_denied(format!(
                "`{}` has no argument policy, and this machine cannot confine what it runs \
                 (no Landlock); only these programs can run here: {}",
                args.program,
                KNOWN_PROGRAMS.join(", ")
            )));
        }
        if self.require_confinement
            && (confined.filesystem != Level::Full || !confined.process_tree)
        {
            return Err(ToolError::permission_denied(format!(
                "this machine cannot confine programs as required (Landlock: {:?}, own \
                 process tree: {})",
                confined.filesystem, confined.process_tree
            )));
        }
        if let Some(cwd) = &args.cwd
            && policy::names_git(cwd)
        {
            return Err(ToolError::permission_denied(format!(
                "`{cwd}` is inside a `.git` folder; programs may not run there"
            )));
        }
        let cwd: PathBuf = self
            .sandbox
            .resolve(args.cwd.as_deref().unwrap_or("."), true)?;
        if !cwd.is_dir() {
            return Err(ToolError::invalid_arguments("`cwd` must be a folder"));
        }
        let mut env = self.child_env();
        let path = env
            .iter()
            .find(|(n, _)| n == "PATH")
            .map(|(_, v)| v.clone())
            .unwrap_or_default();
        let Some(executable) = confine::find_program(&args.program, &path) else {
            return Err(ToolError::failed(format!(
                "`{}` is allowed but not installed (not found on PATH)",
                args.program
            )));
        };
        let private = confine::PrivateDir::new()
            .map_err(|e| ToolError::failed(format!("cannot make a private folder: {e}")))?;
        for name in ["HOME", "TMPDIR"] {
            env.push((name.to_owned(), private.path().display().to_string()));
        }
        let mut program_args = args.args.clone();
        if args.program == "git" {
            env.extend(policy::git_environment());
            program_args = policy::git_arguments(&args.args);
        }
        if args.program == "tar" {
            program_args = policy::tar_arguments(&args.args);
        }
        let namespace = confine::namespace_prefix();
        let mut command = match namespace {
            Some(flags) => {
                let mut command = tokio::process::Command::new("unshare");
                command.args(flags).arg("--").arg(&executable);
                command
            }
            None => tokio::process::Command::new(&executable),
        };
        command
            .args(&program_args)
            .current_dir(&cwd)
            .env_clear()
            .envs(env)
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .process_group(0)
            .kill_on_drop(true);
        // What may run: the program, its script interpreter, `unshare`, and the helpers the
        // program's policy names (tar's compressors).
        let mut runs = vec![executable.clone()];
        runs.extend(confine::interpreter(&executable));
        if namespace.is_some() {
            runs.extend(confine::find_program("unshare", &path));
        }
        runs.extend(
            policy::helpers(&args.program)
                .iter()
                .filter_map(|helper| confine::find_program(helper, &path)),
        );
        // Whatever the program does, the repository's config and hooks (which would run code
        // at a person's next `git` command, outside any sandbox) are put back as they were.
        let git_guard = git_guard::Snapshot::take(self.sandbox.root());
        let mut child = spawn_confined(
            command,
            self.sandbox.root().to_path_buf(),
            private.path().to_path_buf(),
            runs,
        )
        .await
        .map_err(|e| ToolError::failed(format!("cannot start `{}`: {e}", args.program)))?;
        let mut guard = GroupGuard {
            pgid: child
                .id()
                .and_then(|id| i32::try_from(id).ok())
                .map(Pid::from_raw),
            sweep: namespace.is_none(),
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
        drop(private);
        let undone = git_guard.and_then(|g| g.restore());
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
        if let Some(undone) = undone {
            text.push_str(&undone);
            text.push('\n');
        }
        Ok(ToolOutput::Text(text))
    }
}

/// Starts `command` from a thread of its own that first restricts itself with Landlock
/// (what it starts inherits the rules; the rest of the process is untouched), then ends.
async fn spawn_confined(
    mut command: tokio::process::Command,
    root: PathBuf,
    private: PathBuf,
    runs: Vec<PathBuf>,
) -> std::io::Result<tokio::process::Child> {
    let runtime = tokio::runtime::Handle::current();
    let (sender, receiver) = tokio::sync::oneshot::channel();
    std::thread::Builder::new()
        .name("agent-shell-spawn".into())
        .spawn(move || {
            let _entered = runtime.enter();
            confine::restrict(&root, &private, &runs);
            let _ = sender.send(command.spawn());
        })?;
    receiver
        .await
        .map_err(|_| std::io::Error::other("the thread that starts programs stopped"))?
}
