//! The MCP client: a server's tools as our [`Tool`]s.

use std::collections::{HashMap, HashSet};
use std::ffi::OsString;
use std::fmt;
use std::path::PathBuf;
use std::sync::{Arc, RwLock};
use std::time::Duration;

use agent_core::Tool;
use agent_core::secret::ApiKey;
use rmcp::model::{ClientCapabilities, ClientConfig, Implementation};
use rmcp::service::RunningService;
use rmcp::transport::StreamableHttpClientTransport;
use rmcp::transport::streamable_http_client::StreamableHttpClientTransportConfig;
use rmcp::{RoleClient, ServiceExt};
use tokio::sync::{Notify, watch};
use tokio_util::sync::CancellationToken;

use super::error::McpError;
use super::error::handshake_reason;
use super::handler::Handler;
use super::stdio::{self, StderrTail, StdioCommand, signal_group};
use super::tools::{Conn, Filter, Source, ToolsState, refresh_on_change};

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
    Stdio(StdioCommand),
    Http(HttpTarget),
}

/// How to reach a streamable-HTTP server.
struct HttpTarget {
    url: String,
    bearer: Option<ApiKey>,
    headers: Vec<(String, ApiKey)>,
}

impl HttpTarget {
    fn config(&self) -> Result<StreamableHttpClientTransportConfig, McpError> {
        let url = &self.url;
        if !(url.starts_with("http://") || url.starts_with("https://")) {
            return Err(McpError::Config(format!(
                "`{url}` is not an http:// or https:// URL"
            )));
        }
        let mut config = StreamableHttpClientTransportConfig::with_uri(url.as_str());
        if let Some(token) = &self.bearer {
            config = config.auth_header(token.expose());
        }
        if !self.headers.is_empty() {
            let mut map = HashMap::new();
            for (name, value) in &self.headers {
                let name =
                    reqwest::header::HeaderName::from_bytes(name.as_bytes()).map_err(|_| {
                        McpError::Config(format!("`{name}` is not a valid header name"))
                    })?;
                let mut value =
                    reqwest::header::HeaderValue::from_str(value.expose()).map_err(|_| {
                        McpError::Config(format!(
                            "the value of header `{name}` is not valid in a header"
                        ))
                    })?;
                value.set_sensitive(true);
                map.insert(name, value);
            }
            config = config.custom_headers(map);
        }
        Ok(config)
    }
}

/// Reaches the server and completes the handshake.
async fn start_http(
    target: &HttpTarget,
    handler: Handler,
    label: &str,
    startup_timeout: Duration,
) -> Result<RunningService<RoleClient, Handler>, McpError> {
    let config = target.config()?;
    // reqwest 0.13 (inside rmcp) needs a process-wide TLS provider.
    crate::tls_provider();
    let transport = StreamableHttpClientTransport::from_config(config);
    let reason = match tokio::time::timeout(startup_timeout, handler.serve(transport)).await {
        Ok(Ok(service)) => return Ok(service),
        Ok(Err(e)) => handshake_reason(&e.to_string(), false),
        Err(_) => format!(
            "no answer to `initialize` within {}s",
            startup_timeout.as_secs_f32()
        ),
    };
    Err(McpError::Handshake {
        server: label.to_owned(),
        reason,
        stderr: Vec::new(),
    })
}

/// Configures an [`McpClient`]; made by [`McpClient::stdio`] or [`McpClient::http`].
#[must_use = "a builder does nothing until `.connect()`"]
pub struct McpClientBuilder {
    endpoint: Endpoint,
    prefix: Option<String>,
    allow: Option<HashSet<String>>,
    deny: HashSet<String>,
    call_timeout: Option<Duration>,
    startup_timeout: Duration,
    max_result_bytes: usize,
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
            max_result_bytes: 256 << 10,
        }
    }

    fn label(&self) -> String {
        match &self.endpoint {
            Endpoint::Stdio(spec) => format!("`{}`", spec.program.to_string_lossy()),
            Endpoint::Http(target) => format!("at {}", target.url),
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

    /// The most bytes of one call's result passed on to the model (256 KiB by default); a
    /// longer result is cut, with a note saying how much was cut.
    pub fn max_result_bytes(mut self, bytes: usize) -> Self {
        self.max_result_bytes = bytes;
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
        if let Endpoint::Stdio(spec) = &mut self.endpoint {
            spec.env.push((key.into(), Some(value.into())));
        }
        self
    }

    /// Starts the server with only `PATH`, `HOME`, `USER`, `LANG` and `TMPDIR` from this
    /// process's environment, plus what [`env`](Self::env) gives it (stdio only): the API
    /// keys of this process stay out of a third-party server.
    pub fn env_clear(mut self) -> Self {
        if let Endpoint::Stdio(spec) = &mut self.endpoint {
            spec.clear_env = true;
        }
        self
    }

    /// Removes a variable from the server process's environment (stdio only), e.g. an API
    /// key the server must not see.
    pub fn env_remove(mut self, key: impl Into<OsString>) -> Self {
        if let Endpoint::Stdio(spec) = &mut self.endpoint {
            spec.env.push((key.into(), None));
        }
        self
    }

    /// The working directory of the server process (stdio only).
    pub fn current_dir(mut self, dir: impl Into<PathBuf>) -> Self {
        if let Endpoint::Stdio(spec) = &mut self.endpoint {
            spec.current_dir = Some(dir.into());
        }
        self
    }

    /// Sends `Authorization: Bearer <token>` with every request (HTTP only). The token never
    /// appears in `Debug` output or errors.
    pub fn bearer_token(mut self, token: impl Into<String>) -> Self {
        if let Endpoint::Http(target) = &mut self.endpoint {
            target.bearer = Some(ApiKey::new(token));
        }
        self
    }

    /// Sends a header with every request (HTTP only); its value is treated as a secret.
    pub fn header(mut self, name: impl Into<String>, value: impl Into<String>) -> Self {
        if let Endpoint::Http(target) = &mut self.endpoint {
            target.headers.push((name.into(), ApiKey::new(value)));
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
            Endpoint::Stdio(ref spec) => {
                stdio::start(spec, handler, &label, &stderr, self.startup_timeout).await?
            }
            Endpoint::Http(ref target) => (
                start_http(target, handler, &label, self.startup_timeout).await?,
                None,
            ),
        };

        let conn = Arc::new(Conn {
            label: label.clone(),
            peer: service.peer().clone(),
            call_timeout: self.call_timeout,
            max_result_bytes: self.max_result_bytes,
            stderr,
            offered: RwLock::new(HashSet::new()),
        });
        let filter = Filter {
            prefix: self.prefix,
            allow: self.allow,
            deny: self.deny,
        };
        let listed = tokio::time::timeout(
            self.startup_timeout,
            super::tools::list_tools_bounded(&conn.peer, &label),
        )
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
        McpClientBuilder::new(Endpoint::Stdio(StdioCommand {
            program: program.into(),
            args: args.into_iter().map(Into::into).collect(),
            env: Vec::new(),
            clear_env: false,
            current_dir: None,
        }))
    }

    /// A server reached over streamable HTTP at `url` (e.g. `http://127.0.0.1:3001/mcp`).
    pub fn http(url: impl Into<String>) -> McpClientBuilder {
        McpClientBuilder::new(Endpoint::Http(HttpTarget {
            url: url.into(),
            bearer: None,
            headers: Vec::new(),
        }))
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
            // What is left of the group (what the server itself started).
            signal_group(self.pid, nix::sys::signal::Signal::SIGKILL);
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
}

impl Drop for McpClient {
    fn drop(&mut self) {
        self.stop.cancel();
        let open = self.service.get_mut().as_ref().is_some();
        if open {
            // Dropping the service ends the session in the background, which closes the
            // server's stdin and reaps it; SIGTERM to the group makes sure the server and
            // whatever it started stop now.
            signal_group(self.pid, nix::sys::signal::Signal::SIGTERM);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::super::stdio::spawn_error;
    use super::*;

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
