//! The MCP client: a server's tools as our [`Tool`]s.

use std::collections::{HashMap, HashSet, VecDeque};
use std::ffi::OsString;
use std::fmt;
use std::path::PathBuf;
use std::process::Stdio;
use std::sync::{Arc, Mutex, RwLock};
use std::time::Duration;

use agent_core::backends::ApiKey;
use agent_core::{ToolContext, ToolError, ToolErrorKind, ToolMeta, ToolOutput, async_trait};
use process_wrap::tokio::{CommandWrap, KillOnDrop, ProcessGroup};
use rmcp::model::{
    CallToolRequestParams, ClientCapabilities, ClientConfig, Implementation, Tool as RemoteTool,
};
use rmcp::service::{NotificationContext, RunningService, ServiceError};
use rmcp::transport::streamable_http_client::StreamableHttpClientTransportConfig;
use rmcp::transport::{StreamableHttpClientTransport, TokioChildProcess};
use rmcp::{ClientHandler, Peer, RoleClient, ServiceExt};
use serde_json::{Map, Value};
use tokio::io::{AsyncBufReadExt, BufReader};
use tokio::sync::{Notify, watch};
use tokio_util::sync::CancellationToken;

use agent_core::Tool;

use super::content::result_to_output;

/// How many lines of a stdio server's stderr are kept for error messages.
const STDERR_TAIL_LINES: usize = 20;

/// What went wrong starting, talking to or stopping an MCP server.
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
#[non_exhaustive]
pub enum McpError {
    /// The server's program could not be started.
    #[error("could not start MCP server `{program}`: {reason}")]
    Spawn {
        /// The program as given.
        program: String,
        /// What to fix.
        reason: String,
    },
    /// The server started (or was reached) but the MCP handshake failed.
    #[error("MCP server {server} did not complete the handshake: {reason}{}", stderr_suffix(.stderr))]
    Handshake {
        /// The server (program or URL).
        server: String,
        /// Why, including what to check.
        reason: String,
        /// The last lines the server wrote to stderr, if it is a child process.
        stderr: Vec<String>,
    },
    /// A request to the server failed.
    #[error("MCP server {server}: {operation} failed: {reason}")]
    Request {
        /// The server (program or URL).
        server: String,
        /// What was asked, e.g. `tools/list`.
        operation: &'static str,
        /// Why.
        reason: String,
    },
    /// The builder was given something unusable.
    #[error("invalid MCP client configuration: {0}")]
    Config(String),
    /// Serving our tools over MCP failed.
    #[error("MCP server failed: {0}")]
    Serve(String),
}

fn stderr_suffix(lines: &[String]) -> String {
    if lines.is_empty() {
        String::new()
    } else {
        format!("; its stderr ends with:\n  {}", lines.join("\n  "))
    }
}

/// A tool as the server lists it, and the name our agent knows it by.
#[derive(Clone, Debug, PartialEq)]
pub struct McpToolInfo {
    /// The name the model calls it by (prefixed and made valid for every provider).
    pub name: String,
    /// The name on the server.
    pub remote_name: String,
    /// The description given to the model.
    pub description: String,
}

enum Endpoint {
    Stdio {
        program: OsString,
        args: Vec<OsString>,
        env: Vec<(OsString, Option<OsString>)>,
        clear_env: bool,
        current_dir: Option<PathBuf>,
    },
    Http {
        url: String,
        bearer: Option<ApiKey>,
        headers: Vec<(String, ApiKey)>,
    },
}

/// Configures an [`McpClient`]; made by [`McpClient::stdio`] or [`McpClient::http`].
pub struct McpClientBuilder {
    endpoint: Endpoint,
    prefix: Option<String>,
    allow: Option<HashSet<String>>,
    deny: HashSet<String>,
    call_timeout: Option<Duration>,
    startup_timeout: Duration,
}

impl fmt::Debug for McpClientBuilder {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("McpClientBuilder")
            .field("server", &self.label())
            .field("prefix", &self.prefix)
            .field("allow", &self.allow)
            .field("deny", &self.deny)
            .field("call_timeout", &self.call_timeout)
            .field("startup_timeout", &self.startup_timeout)
            .finish_non_exhaustive()
    }
}

impl McpClientBuilder {
    fn new(endpoint: Endpoint) -> Self {
        McpClientBuilder {
            endpoint,
            prefix: None,
            allow: None,
            deny: HashSet::new(),
            call_timeout: None,
            startup_timeout: Duration::from_secs(60),
        }
    }

    fn label(&self) -> String {
        match &self.endpoint {
            Endpoint::Stdio { program, .. } => format!("`{}`", program.to_string_lossy()),
            Endpoint::Http { url, .. } => format!("at {url}"),
        }
    }

    /// Prefixes every tool name with `prefix_` (e.g. `fs_read_file`), to keep the tools of
    /// several servers apart.
    pub fn prefix(mut self, prefix: impl Into<String>) -> Self {
        self.prefix = Some(prefix.into());
        self
    }

    /// Offers the model only these tools (server names, before the prefix).
    pub fn allow<S: Into<String>>(mut self, names: impl IntoIterator<Item = S>) -> Self {
        self.allow
            .get_or_insert_with(HashSet::new)
            .extend(names.into_iter().map(Into::into));
        self
    }

    /// Never offers the model these tools (server names, before the prefix).
    pub fn deny<S: Into<String>>(mut self, names: impl IntoIterator<Item = S>) -> Self {
        self.deny.extend(names.into_iter().map(Into::into));
        self
    }

    /// How long one tool call may take. Unset, the run's tool timeout applies (60 s by
    /// default); a call made outside a run has no limit but its cancellation.
    pub fn call_timeout(mut self, timeout: Duration) -> Self {
        self.call_timeout = Some(timeout);
        self
    }

    /// How long starting the server and the MCP handshake may take (60 s by default, since
    /// `npx -y` may first download the server).
    pub fn startup_timeout(mut self, timeout: Duration) -> Self {
        self.startup_timeout = timeout;
        self
    }

    /// Sets an environment variable of the server process (stdio only; the server otherwise
    /// inherits this process's environment).
    pub fn env(mut self, key: impl Into<OsString>, value: impl Into<OsString>) -> Self {
        if let Endpoint::Stdio { env, .. } = &mut self.endpoint {
            env.push((key.into(), Some(value.into())));
        }
        self
    }

    /// Starts the server with only `PATH`, `HOME`, `USER`, `LANG` and `TMPDIR` from this
    /// process's environment, plus what [`env`](Self::env) gives it (stdio only): the API
    /// keys of this process stay out of a third-party server.
    pub fn env_clear(mut self) -> Self {
        if let Endpoint::Stdio { clear_env, .. } = &mut self.endpoint {
            *clear_env = true;
        }
        self
    }

    /// Removes a variable from the server process's environment (stdio only), e.g. an API
    /// key the server must not see.
    pub fn env_remove(mut self, key: impl Into<OsString>) -> Self {
        if let Endpoint::Stdio { env, .. } = &mut self.endpoint {
            env.push((key.into(), None));
        }
        self
    }

    /// The working directory of the server process (stdio only).
    pub fn current_dir(mut self, dir: impl Into<PathBuf>) -> Self {
        if let Endpoint::Stdio { current_dir, .. } = &mut self.endpoint {
            *current_dir = Some(dir.into());
        }
        self
    }

    /// Sends `Authorization: Bearer <token>` with every request (HTTP only). The token never
    /// appears in `Debug` output or errors.
    pub fn bearer_token(mut self, token: impl Into<String>) -> Self {
        if let Endpoint::Http { bearer, .. } = &mut self.endpoint {
            *bearer = Some(ApiKey::new(token));
        }
        self
    }

    /// Sends a header with every request (HTTP only); its value is treated as a secret.
    pub fn header(mut self, name: impl Into<String>, value: impl Into<String>) -> Self {
        if let Endpoint::Http { headers, .. } = &mut self.endpoint {
            headers.push((name.into(), ApiKey::new(value)));
        }
        self
    }

    /// Starts (or reaches) the server, completes the MCP handshake and lists its tools.
    ///
    /// Errors say what to fix: a program that is not installed, a server that exited
    /// during the handshake (with the end of its stderr), one that did not answer within
    /// the startup timeout, a URL that cannot be reached.
    pub async fn connect(self) -> Result<McpClient, McpError> {
        let label = self.label();
        let list_changed = Arc::new(Notify::new());
        let handler = Handler {
            info: ClientConfig::new(
                ClientCapabilities::default(),
                Implementation::new("agent-tools", env!("CARGO_PKG_VERSION")),
            ),
            list_changed: list_changed.clone(),
            server: label.clone(),
        };
        let stderr = StderrTail::default();
        let (service, pid) = match self.endpoint {
            Endpoint::Stdio {
                ref program,
                ref args,
                ref env,
                clear_env,
                ref current_dir,
            } => {
                let mut command = tokio::process::Command::new(program);
                command.args(args);
                if clear_env {
                    command.env_clear();
                    for key in ["PATH", "HOME", "USER", "LANG", "TMPDIR"] {
                        if let Some(value) = std::env::var_os(key) {
                            command.env(key, value);
                        }
                    }
                }
                for (key, value) in env {
                    match value {
                        Some(v) => command.env(key, v),
                        None => command.env_remove(key),
                    };
                }
                if let Some(dir) = current_dir {
                    command.current_dir(dir);
                }
                let mut wrapped = CommandWrap::from(command);
                // Its own process group, so shutting down also ends what the server started
                // (`npx` runs the server as a grandchild).
                wrapped.wrap(ProcessGroup::leader()).wrap(KillOnDrop);
                let (transport, child_stderr) = TokioChildProcess::builder(wrapped)
                    .stderr(Stdio::piped())
                    .spawn()
                    .map_err(|e| spawn_error(program, &e))?;
                let pid = transport.id();
                let reader = child_stderr.map(|s| stderr.follow(s, label.clone()));
                let started =
                    tokio::time::timeout(self.startup_timeout, handler.serve(transport)).await;
                match started {
                    Ok(Ok(service)) => (service, pid),
                    failed => {
                        // The transport was dropped with the failed handshake, which ends
                        // the child; give its last words a moment to arrive.
                        if let Some(reader) = reader {
                            let _ = tokio::time::timeout(Duration::from_millis(500), reader).await;
                        }
                        let reason = match failed {
                            Err(_) => format!(
                                "no answer to `initialize` within {}s; is it an MCP server \
                                 speaking stdio? (raise startup_timeout if it is slow to start)",
                                self.startup_timeout.as_secs_f32()
                            ),
                            Ok(Err(e)) => handshake_reason(&e.to_string(), true),
                            Ok(Ok(_)) => String::new(),
                        };
                        return Err(McpError::Handshake {
                            server: label,
                            reason,
                            stderr: stderr.lines(),
                        });
                    }
                }
            }
            Endpoint::Http {
                ref url,
                ref bearer,
                ref headers,
            } => {
                if !(url.starts_with("http://") || url.starts_with("https://")) {
                    return Err(McpError::Config(format!(
                        "`{url}` is not an http:// or https:// URL"
                    )));
                }
                // reqwest 0.13 (inside rmcp) needs a process-wide TLS provider; ring is the
                // one the rest of the workspace already uses. Installing twice is harmless.
                let _ = rustls::crypto::ring::default_provider().install_default();
                let mut config = StreamableHttpClientTransportConfig::with_uri(url.as_str());
                if let Some(token) = bearer {
                    config = config.auth_header(token.expose());
                }
                if !headers.is_empty() {
                    let mut map = HashMap::new();
                    for (name, value) in headers {
                        let name = reqwest::header::HeaderName::from_bytes(name.as_bytes())
                            .map_err(|_| {
                                McpError::Config(format!("`{name}` is not a valid header name"))
                            })?;
                        let mut value = reqwest::header::HeaderValue::from_str(value.expose())
                            .map_err(|_| {
                                McpError::Config(format!(
                                    "the value of header `{name}` is not valid in a header"
                                ))
                            })?;
                        value.set_sensitive(true);
                        map.insert(name, value);
                    }
                    config = config.custom_headers(map);
                }
                let transport = StreamableHttpClientTransport::from_config(config);
                match tokio::time::timeout(self.startup_timeout, handler.serve(transport)).await {
                    Ok(Ok(service)) => (service, None),
                    Ok(Err(e)) => {
                        return Err(McpError::Handshake {
                            server: label,
                            reason: handshake_reason(&e.to_string(), false),
                            stderr: Vec::new(),
                        });
                    }
                    Err(_) => {
                        return Err(McpError::Handshake {
                            server: label,
                            reason: format!(
                                "no answer to `initialize` within {}s",
                                self.startup_timeout.as_secs_f32()
                            ),
                            stderr: Vec::new(),
                        });
                    }
                }
            }
        };

        let conn = Arc::new(Conn {
            label: label.clone(),
            peer: service.peer().clone(),
            call_timeout: self.call_timeout,
            stderr,
            offered: RwLock::new(HashSet::new()),
        });
        let filter = Filter {
            prefix: self.prefix,
            allow: self.allow,
            deny: self.deny,
        };
        let listed = tokio::time::timeout(self.startup_timeout, conn.peer.list_all_tools())
            .await
            .map_err(|_| McpError::Request {
                server: label.clone(),
                operation: "tools/list",
                reason: "no answer in time".into(),
            })?
            .map_err(|e| McpError::Request {
                server: label.clone(),
                operation: "tools/list",
                reason: e.to_string(),
            })?;
        let state = Arc::new(ToolsState {
            tools: RwLock::new(Arc::from(Vec::new())),
            version: watch::Sender::new(0),
        });
        state.replace(&conn, &filter, listed);

        let stop = CancellationToken::new();
        tokio::spawn(refresh_on_change(
            conn.clone(),
            state.clone(),
            filter,
            list_changed,
            stop.clone(),
        ));
        Ok(McpClient {
            conn,
            state,
            service: tokio::sync::Mutex::new(Some(service)),
            pid,
            stop,
        })
    }
}

fn spawn_error(program: &OsString, e: &std::io::Error) -> McpError {
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

fn handshake_reason(error: &str, child: bool) -> String {
    let lower = error.to_ascii_lowercase();
    let gone = ["closed", "broken pipe", "end of file", "eof"];
    if child && gone.iter().any(|g| lower.contains(g)) {
        format!(
            "it exited or closed its stdout before answering `initialize` ({error}); check the \
             command and its arguments"
        )
    } else if !child && (lower.contains("connect") || lower.contains("dns")) {
        format!("cannot reach the server ({error}); is it running, and is the URL right?")
    } else {
        error.to_owned()
    }
}

/// The last lines a stdio server wrote to stderr (also logged at `debug`).
#[derive(Clone, Default)]
struct StderrTail(Arc<Mutex<VecDeque<String>>>);

impl StderrTail {
    fn follow(
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

    fn lines(&self) -> Vec<String> {
        self.0
            .lock()
            .map(|t| t.iter().cloned().collect())
            .unwrap_or_default()
    }
}

/// Receives the server's notifications.
struct Handler {
    info: ClientConfig,
    list_changed: Arc<Notify>,
    server: String,
}

impl ClientHandler for Handler {
    fn get_info(&self) -> ClientConfig {
        self.info.clone()
    }

    async fn on_tool_list_changed(&self, _context: NotificationContext<RoleClient>) {
        tracing::debug!(target: "agent_tools::mcp", server = %self.server, "tool list changed");
        self.list_changed.notify_one();
    }
}

/// Which of the server's tools the model sees, and under which names.
struct Filter {
    prefix: Option<String>,
    allow: Option<HashSet<String>>,
    deny: HashSet<String>,
}

impl Filter {
    fn admits(&self, remote: &str) -> bool {
        !self.deny.contains(remote) && self.allow.as_ref().is_none_or(|a| a.contains(remote))
    }

    /// The name the model calls a tool by: prefixed, and with characters that some
    /// providers refuse (`.`, `/`, spaces) replaced by `_`, at most 64 long.
    fn local_name(&self, remote: &str) -> String {
        let full = match &self.prefix {
            Some(p) => format!("{p}_{remote}"),
            None => remote.to_owned(),
        };
        let mut name: String = full
            .chars()
            .map(|c| {
                if c.is_ascii_alphanumeric() || c == '_' || c == '-' {
                    c
                } else {
                    '_'
                }
            })
            .collect();
        name.truncate(64);
        name
    }
}

/// What the tools share: the connection.
struct Conn {
    label: String,
    peer: Peer<RoleClient>,
    call_timeout: Option<Duration>,
    stderr: StderrTail,
    /// The server names of the tools it currently offers.
    offered: RwLock<HashSet<String>>,
}

struct ToolsState {
    tools: RwLock<Arc<[Arc<McpTool>]>>,
    version: watch::Sender<u64>,
}

impl ToolsState {
    fn replace(&self, conn: &Arc<Conn>, filter: &Filter, listed: Vec<RemoteTool>) {
        let mut seen = HashSet::new();
        let mut tools = Vec::new();
        let mut offered = HashSet::new();
        for remote in listed {
            offered.insert(remote.name.to_string());
            if !filter.admits(&remote.name) {
                continue;
            }
            let name = filter.local_name(&remote.name);
            if !seen.insert(name.clone()) {
                tracing::warn!(
                    target: "agent_tools::mcp",
                    server = %conn.label,
                    "skipping tool `{}`: its name `{name}` is taken by another of the server's tools",
                    remote.name
                );
                continue;
            }
            tools.push(Arc::new(McpTool::new(name, remote, conn.clone())));
        }
        if let Ok(mut o) = conn.offered.write() {
            *o = offered;
        }
        if let Ok(mut t) = self.tools.write() {
            *t = tools.into();
        }
        self.version.send_modify(|v| *v += 1);
    }

    fn current(&self) -> Arc<[Arc<McpTool>]> {
        self.tools
            .read()
            .map(|t| t.clone())
            .unwrap_or_else(|_| Arc::from(Vec::new()))
    }
}

async fn refresh_on_change(
    conn: Arc<Conn>,
    state: Arc<ToolsState>,
    filter: Filter,
    list_changed: Arc<Notify>,
    stop: CancellationToken,
) {
    loop {
        tokio::select! {
            _ = stop.cancelled() => return,
            _ = list_changed.notified() => {}
        }
        let listed = tokio::select! {
            _ = stop.cancelled() => return,
            listed = tokio::time::timeout(Duration::from_secs(30), conn.peer.list_all_tools()) => listed,
        };
        match listed {
            Ok(Ok(tools)) => state.replace(&conn, &filter, tools),
            Ok(Err(ServiceError::TransportClosed)) => return,
            Ok(Err(e)) => tracing::warn!(
                target: "agent_tools::mcp",
                server = %conn.label,
                "could not refresh the tool list after a change: {e}"
            ),
            Err(_) => tracing::warn!(
                target: "agent_tools::mcp",
                server = %conn.label,
                "could not refresh the tool list after a change: no answer within 30s"
            ),
        }
    }
}

/// A connection to one MCP server, and its tools as [`Tool`]s.
///
/// The tool list follows the server: when it announces a change, the list is fetched again
/// ([`tools`](McpClient::tools) returns the new one; [`tools_changed`](McpClient::tools_changed)
/// waits for it). An agent given [`tool_source`](McpClient::tool_source) starts each run
/// with the tools of that moment; one given [`tools`](McpClient::tools) keeps the tools it
/// was built with. A tool the server no longer offers answers calls with a clear error.
///
/// [`shutdown`](McpClient::shutdown) ends the session and the server process (closing its
/// stdin, then `SIGTERM`, then `SIGKILL` to its whole process group, and reaping it).
/// Dropping the client also ends the server, in the background.
pub struct McpClient {
    conn: Arc<Conn>,
    state: Arc<ToolsState>,
    service: tokio::sync::Mutex<Option<RunningService<RoleClient, Handler>>>,
    pid: Option<u32>,
    stop: CancellationToken,
}

impl fmt::Debug for McpClient {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("McpClient")
            .field("server", &self.conn.label)
            .field("pid", &self.pid)
            .field(
                "tools",
                &self
                    .state
                    .current()
                    .iter()
                    .map(|t| t.name.as_str())
                    .collect::<Vec<_>>(),
            )
            .finish()
    }
}

impl McpClient {
    /// A server started as a child process, spoken to over its stdin and stdout.
    ///
    /// ```no_run
    /// # async fn demo() -> Result<(), agent_tools::mcp::McpError> {
    /// use agent_tools::mcp::McpClient;
    /// let everything = McpClient::stdio("npx", ["-y", "@modelcontextprotocol/server-everything"])
    ///     .connect()
    ///     .await?;
    /// println!("{:?}", everything.tool_infos());
    /// # Ok(()) }
    /// ```
    pub fn stdio<S: Into<OsString>>(
        program: impl Into<OsString>,
        args: impl IntoIterator<Item = S>,
    ) -> McpClientBuilder {
        McpClientBuilder::new(Endpoint::Stdio {
            program: program.into(),
            args: args.into_iter().map(Into::into).collect(),
            env: Vec::new(),
            clear_env: false,
            current_dir: None,
        })
    }

    /// A server reached over streamable HTTP at `url` (e.g. `http://127.0.0.1:3001/mcp`).
    pub fn http(url: impl Into<String>) -> McpClientBuilder {
        McpClientBuilder::new(Endpoint::Http {
            url: url.into(),
            bearer: None,
            headers: Vec::new(),
        })
    }

    /// The server's tools (after the allow/deny filters), ready for an agent.
    pub fn tools(&self) -> Vec<Arc<dyn Tool>> {
        self.state
            .current()
            .iter()
            .map(|t| t.clone() as Arc<dyn Tool>)
            .collect()
    }

    /// The server's tools as a [`ToolSource`](agent_core::ToolSource), for an agent that
    /// should follow the server's changes: each run starts with the tools of that moment.
    ///
    /// ```no_run
    /// # async fn demo(model: std::sync::Arc<dyn agent_core::ChatModel>) -> Result<(), Box<dyn std::error::Error>> {
    /// use agent_core::LlmAgent;
    /// use agent_tools::mcp::McpClient;
    /// let server = McpClient::stdio("npx", ["-y", "@modelcontextprotocol/server-everything"])
    ///     .connect()
    ///     .await?;
    /// let agent = LlmAgent::builder(model).tool_source(server.tool_source()).build()?;
    /// # Ok(()) }
    /// ```
    pub fn tool_source(&self) -> Arc<dyn agent_core::ToolSource> {
        Arc::new(Source(self.state.clone()))
    }

    /// The name, server name and description of each tool offered.
    pub fn tool_infos(&self) -> Vec<McpToolInfo> {
        self.state
            .current()
            .iter()
            .map(|t| McpToolInfo {
                name: t.name.clone(),
                remote_name: t.remote.clone(),
                description: t.description.clone(),
            })
            .collect()
    }

    /// How many times the tool list has been fetched: 1 after [`connect`](McpClientBuilder::connect),
    /// one more after each change the server announced.
    pub fn tools_version(&self) -> u64 {
        *self.state.version.borrow()
    }

    /// Waits until the tool list changes (after the server announced a change and the new
    /// list was fetched).
    pub async fn tools_changed(&self) {
        let mut rx = self.state.version.subscribe();
        rx.mark_unchanged();
        let _ = rx.changed().await;
    }

    /// The server's name and version, as it gave them in the handshake.
    pub fn server_info(&self) -> Option<(String, String)> {
        self.conn
            .peer
            .peer_info()
            .and_then(|i| i.server_info.clone())
            .map(|s| (s.name, s.version))
    }

    /// The server process's id (stdio only).
    pub fn pid(&self) -> Option<u32> {
        self.pid
    }

    /// Whether the connection is closed (the server exited, or the client was shut down).
    pub fn is_closed(&self) -> bool {
        self.conn.peer.is_transport_closed()
    }

    /// The last lines the server wrote to stderr (stdio only).
    pub fn stderr_tail(&self) -> Vec<String> {
        self.conn.stderr.lines()
    }

    /// Ends the session and the server: for stdio, closes its stdin, waits, sends `SIGTERM`,
    /// waits, then kills its process group, and reaps it; for HTTP, ends the session.
    pub async fn shutdown(self) -> Result<(), McpError> {
        self.close().await
    }

    async fn close(&self) -> Result<(), McpError> {
        self.stop.cancel();
        let service = self.service.lock().await.take();
        if let Some(mut service) = service {
            let closed = service.close_with_timeout(Duration::from_secs(10)).await;
            self.kill_group();
            match closed {
                Ok(Some(_)) => {}
                Ok(None) => {
                    return Err(McpError::Request {
                        server: self.conn.label.clone(),
                        operation: "shutdown",
                        reason: "the session did not close within 10s; the process group was \
                                 killed"
                            .into(),
                    });
                }
                Err(e) => {
                    return Err(McpError::Request {
                        server: self.conn.label.clone(),
                        operation: "shutdown",
                        reason: e.to_string(),
                    });
                }
            }
        }
        Ok(())
    }

    /// Kills what is left of the server's process group (what the server itself started).
    fn kill_group(&self) {
        if let Some(pid) = self.pid.and_then(|p| i32::try_from(p).ok()) {
            let _ = nix::sys::signal::killpg(
                nix::unistd::Pid::from_raw(pid),
                nix::sys::signal::Signal::SIGKILL,
            );
        }
    }
}

impl Drop for McpClient {
    fn drop(&mut self) {
        self.stop.cancel();
        let open = self.service.get_mut().as_ref().is_some();
        if open {
            // Dropping the service ends the session in the background, which closes the
            // server's stdin and reaps it; SIGTERM to the group makes sure the server and
            // whatever it started stop now.
            if let Some(pid) = self.pid.and_then(|p| i32::try_from(p).ok()) {
                let _ = nix::sys::signal::killpg(
                    nix::unistd::Pid::from_raw(pid),
                    nix::sys::signal::Signal::SIGTERM,
                );
            }
        }
    }
}

/// The tool list, followed by agents.
struct Source(Arc<ToolsState>);

impl agent_core::ToolSource for Source {
    fn version(&self) -> u64 {
        *self.0.version.borrow()
    }

    fn tools(&self) -> Vec<Arc<dyn Tool>> {
        self.0
            .current()
            .iter()
            .map(|t| t.clone() as Arc<dyn Tool>)
            .collect()
    }
}

/// One of the server's tools.
struct McpTool {
    name: String,
    remote: String,
    description: String,
    parameters: Value,
    meta: ToolMeta,
    conn: Arc<Conn>,
}

impl McpTool {
    fn new(name: String, remote: RemoteTool, conn: Arc<Conn>) -> Self {
        let description = remote
            .description
            .as_deref()
            .map(str::to_owned)
            .or_else(|| remote.title.clone())
            .filter(|d| !d.trim().is_empty())
            .unwrap_or_else(|| format!("The `{}` tool of MCP server {}.", remote.name, conn.label));
        let mut parameters = (*remote.input_schema).clone();
        // Servers sometimes send `{}` for "no arguments"; the model needs an object schema.
        if !parameters.contains_key("type") {
            parameters.insert("type".into(), Value::from("object"));
        }
        if !parameters.contains_key("properties") {
            parameters.insert("properties".into(), Value::Object(Map::new()));
        }
        let annotations = remote.annotations.as_ref();
        let mut meta = if annotations.and_then(|a| a.read_only_hint) == Some(true) {
            ToolMeta::read_only()
        } else if annotations.and_then(|a| a.idempotent_hint) == Some(true) {
            ToolMeta::idempotent()
        } else {
            ToolMeta::side_effecting()
        };
        meta.timeout = conn.call_timeout;
        McpTool {
            name,
            remote: remote.name.to_string(),
            description,
            parameters: Value::Object(parameters),
            meta,
            conn,
        }
    }

    fn closed_error(&self) -> ToolError {
        let stderr = self.conn.stderr.lines();
        let mut error = ToolError::new(
            ToolErrorKind::Unavailable,
            format!(
                "`{}` could not finish: the MCP server {} is no longer running.",
                self.name, self.conn.label
            ),
        )
        .with_retryable(false);
        if !stderr.is_empty() {
            error = error.with_detail(format!("server stderr:\n{}", stderr.join("\n")));
        }
        error
    }
}

#[async_trait]
impl Tool for McpTool {
    fn name(&self) -> &str {
        &self.name
    }

    fn description(&self) -> &str {
        &self.description
    }

    fn parameters(&self) -> Value {
        self.parameters.clone()
    }

    fn meta(&self) -> ToolMeta {
        self.meta
    }

    async fn call(&self, args: Value, ctx: &ToolContext) -> Result<ToolOutput, ToolError> {
        let offered = self
            .conn
            .offered
            .read()
            .map(|o| o.contains(&self.remote))
            .unwrap_or(false);
        if !offered {
            return Err(ToolError::new(
                ToolErrorKind::NotFound,
                format!(
                    "`{}` is no longer offered by the MCP server {}.",
                    self.name, self.conn.label
                ),
            ));
        }
        let arguments = match args {
            Value::Object(map) => map,
            Value::Null => Map::new(),
            other => {
                return Err(ToolError::invalid_arguments(format!(
                    "the arguments for `{}` must be a JSON object, not {other}",
                    self.name
                )));
            }
        };
        let params = CallToolRequestParams::new(self.remote.clone()).with_arguments(arguments);
        // Dropping the request (cancellation, timeout) sends `notifications/cancelled`.
        let call = self.conn.peer.call_tool(params);
        let timeout = async {
            match self.conn.call_timeout {
                Some(t) => tokio::time::sleep(t).await,
                None => std::future::pending().await,
            }
        };
        let result = tokio::select! {
            result = call => result,
            _ = ctx.cancel.cancelled() => {
                return Err(ToolError::new(
                    ToolErrorKind::Cancelled,
                    format!("`{}` was cancelled; the MCP server was told to stop.", self.name),
                ));
            }
            _ = timeout => {
                return Err(ToolError::new(
                    ToolErrorKind::Timeout,
                    format!("`{}` did not finish in time and was cancelled.", self.name),
                ));
            }
        };
        match result {
            Ok(result) => result_to_output(&self.name, result),
            Err(ServiceError::McpError(e)) => {
                // -32602: invalid params; -32601: method not found.
                let (kind, retryable) = match e.code.0 {
                    -32602 => (ToolErrorKind::InvalidArguments, true),
                    -32601 => (ToolErrorKind::NotFound, false),
                    _ => (ToolErrorKind::Failed, true),
                };
                Err(ToolError::new(
                    kind,
                    format!("The MCP server refused `{}`: {}", self.name, e.message),
                )
                .with_retryable(retryable))
            }
            Err(ServiceError::TransportClosed | ServiceError::TransportSend(_)) => {
                Err(self.closed_error())
            }
            Err(ServiceError::Timeout { .. }) => Err(ToolError::new(
                ToolErrorKind::Timeout,
                format!("`{}` did not finish in time.", self.name),
            )),
            Err(ServiceError::Cancelled { reason }) => Err(ToolError::new(
                ToolErrorKind::Cancelled,
                format!(
                    "`{}` was cancelled by the server{}.",
                    self.name,
                    reason.map(|r| format!(": {r}")).unwrap_or_default()
                ),
            )),
            Err(other) => Err(ToolError::failed(format!(
                "`{}` failed: {other}",
                self.name
            ))),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_are_prefixed_and_made_valid() {
        let f = Filter {
            prefix: Some("fs".into()),
            allow: None,
            deny: HashSet::new(),
        };
        assert_eq!(f.local_name("read_file"), "fs_read_file");
        assert_eq!(f.local_name("files.read/v2 x"), "fs_files_read_v2_x");
        assert_eq!(f.local_name(&"a".repeat(100)).len(), 64);
        let g = Filter {
            prefix: None,
            allow: None,
            deny: HashSet::new(),
        };
        assert_eq!(g.local_name("get-sum"), "get-sum");
    }

    #[test]
    fn allow_and_deny_use_server_names() {
        let f = Filter {
            prefix: Some("p".into()),
            allow: Some(["a".to_owned(), "b".to_owned()].into()),
            deny: ["b".to_owned()].into(),
        };
        assert!(f.admits("a"));
        assert!(!f.admits("b"));
        assert!(!f.admits("c"));
    }

    #[test]
    fn errors_say_what_to_fix() {
        let e = spawn_error(
            &OsString::from("no-such-mcp-server"),
            &std::io::Error::from(std::io::ErrorKind::NotFound),
        );
        assert!(e.to_string().contains("program not found"), "{e}");
        let e = McpError::Handshake {
            server: "`x`".into(),
            reason: "it exited".into(),
            stderr: vec!["boom".into()],
        };
        assert_eq!(
            e.to_string(),
            "MCP server `x` did not complete the handshake: it exited; its stderr ends with:\n  boom"
        );
    }

    #[test]
    fn the_bearer_token_stays_out_of_debug_output() {
        let b = McpClient::http("http://127.0.0.1:1/mcp").bearer_token("sk-secret-123");
        assert!(!format!("{b:?}").contains("sk-secret-123"));
    }
}
