//! A server's tools as our [`Tool`]s: names and filters, the shared connection, the list
//! that follows the server's changes, and the call itself.

use std::collections::HashSet;
use std::sync::{Arc, RwLock};
use std::time::Duration;

use agent_core::{Tool, ToolContext, ToolError, ToolErrorKind, ToolMeta, ToolOutput, async_trait};
use rmcp::model::{CallToolRequestParams, PaginatedRequestParams, Tool as RemoteTool};
use rmcp::service::ServiceError;
use rmcp::{Peer, RoleClient};
use serde_json::{Map, Value};
use tokio::sync::{Notify, watch};
use tokio_util::sync::CancellationToken;

use super::content::result_to_output;
use super::stdio::StderrTail;

/// Which of the server's tools the model sees, and under which names.
pub(super) struct Filter {
    pub(super) prefix: Option<String>,
    pub(super) allow: Option<HashSet<String>>,
    pub(super) deny: HashSet<String>,
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
pub(super) struct Conn {
    pub(super) label: String,
    pub(super) peer: Peer<RoleClient>,
    pub(super) call_timeout: Option<Duration>,
    /// The most bytes of a result passed on to the model; the rest is cut with a note.
    pub(super) max_result_bytes: usize,
    pub(super) stderr: StderrTail,
    /// The server names of the tools it currently offers.
    pub(super) offered: RwLock<HashSet<String>>,
}

/// The tools offered now, and a counter of the lists fetched.
pub(super) struct ToolsState {
    pub(super) tools: RwLock<Arc<[Arc<McpTool>]>>,
    pub(super) version: watch::Sender<u64>,
}

impl ToolsState {
    pub(super) fn replace(&self, conn: &Arc<Conn>, filter: &Filter, listed: Vec<RemoteTool>) {
        let mut seen = HashSet::new();
        let mut tools = Vec::new();
        let mut offered = HashSet::new();
        let mut schema_bytes = 0usize;
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
            let remote_name = remote.name.to_string();
            let tool = Arc::new(McpTool::new(name, remote, conn.clone()));
            // What the model would be sent with every request, after `$ref`s are inlined:
            // bounded per tool and for the whole server.
            let size = agent_core::schema::try_normalize(tool.parameters())
                .map(|schema| schema.to_string().len())
                .unwrap_or(0);
            if size > MAX_SCHEMA_BYTES {
                tracing::warn!(
                    target: "agent_tools::mcp",
                    server = %conn.label,
                    "skipping tool `{remote_name}`: its schema is {size} bytes, more than \
                     {MAX_SCHEMA_BYTES}"
                );
                continue;
            }
            if schema_bytes + size > MAX_TOTAL_SCHEMA_BYTES {
                tracing::warn!(
                    target: "agent_tools::mcp",
                    server = %conn.label,
                    "skipping tool `{remote_name}`: the server's schemas already hold \
                     {schema_bytes} bytes, and at most {MAX_TOTAL_SCHEMA_BYTES} are taken"
                );
                continue;
            }
            // The same checks an agent's tool set makes (a valid object schema that compiles
            // within the inlining budget, a valid name): a server's bad tool is skipped, by
            // name, instead of making every agent that uses this client fail to build.
            if let Err(e) = agent_core::ToolSet::new([tool.clone() as Arc<dyn Tool>]) {
                tracing::warn!(
                    target: "agent_tools::mcp",
                    server = %conn.label,
                    "skipping tool `{remote_name}`: {e}"
                );
                continue;
            }
            schema_bytes += size;
            tools.push(tool);
        }
        if let Ok(mut o) = conn.offered.write() {
            *o = offered;
        }
        if let Ok(mut t) = self.tools.write() {
            *t = tools.into();
        }
        self.version.send_modify(|v| *v += 1);
    }

    pub(super) fn current(&self) -> Arc<[Arc<McpTool>]> {
        self.tools
            .read()
            .map(|t| t.clone())
            .unwrap_or_else(|_| Arc::from(Vec::new()))
    }
}

/// The most pages of a tool listing read; a server that pages forever is cut off here.
pub(super) const MAX_LIST_PAGES: usize = 64;
/// The most tools taken from one server's listing.
pub(super) const MAX_LISTED_TOOLS: usize = 1024;
/// The largest schema of one tool, in bytes once its `$ref`s are inlined: it goes to the
/// model with every request.
const MAX_SCHEMA_BYTES: usize = 32 << 10;
/// The most schema bytes taken from one server, all tools together.
const MAX_TOTAL_SCHEMA_BYTES: usize = 512 << 10;
/// The longest tool description passed on to the model, in bytes.
const MAX_DESCRIPTION_BYTES: usize = 4096;

/// Lists the server's tools page by page, within [`MAX_LIST_PAGES`] pages and
/// [`MAX_LISTED_TOOLS`] tools, stopping at a cursor it has seen before.
pub(super) async fn list_tools_bounded(
    peer: &Peer<RoleClient>,
    label: &str,
) -> Result<Vec<RemoteTool>, ServiceError> {
    let mut tools = Vec::new();
    let mut cursor: Option<String> = None;
    let mut seen = HashSet::new();
    for _ in 0..MAX_LIST_PAGES {
        let page = peer
            .list_tools(Some(
                PaginatedRequestParams::default().with_cursor(cursor.take()),
            ))
            .await?;
        let room = MAX_LISTED_TOOLS - tools.len();
        if page.tools.len() > room {
            tracing::warn!(
                target: "agent_tools::mcp",
                server = %label,
                "the server lists more than {MAX_LISTED_TOOLS} tools; only the first are used"
            );
            tools.extend(page.tools.into_iter().take(room));
            return Ok(tools);
        }
        tools.extend(page.tools);
        match page.next_cursor {
            None => return Ok(tools),
            Some(next) if !seen.insert(next.clone()) => {
                tracing::warn!(
                    target: "agent_tools::mcp",
                    server = %label,
                    "the server's tool listing repeats a page cursor; listing stopped there"
                );
                return Ok(tools);
            }
            Some(next) => cursor = Some(next),
        }
    }
    tracing::warn!(
        target: "agent_tools::mcp",
        server = %label,
        "the server's tool listing goes on past {MAX_LIST_PAGES} pages; the rest is ignored"
    );
    Ok(tools)
}

/// Fetches the list again each time the server announces a change, until `stop`.
pub(super) async fn refresh_on_change(
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
            listed = tokio::time::timeout(Duration::from_secs(30), list_tools_bounded(&conn.peer, &conn.label)) => listed,
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

/// The tool list, followed by agents.
pub(super) struct Source(pub(super) Arc<ToolsState>);

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
pub(super) struct McpTool {
    pub(super) name: String,
    pub(super) remote: String,
    pub(super) description: String,
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
        let description = if description.len() > MAX_DESCRIPTION_BYTES {
            format!(
                "{} [description cut at {MAX_DESCRIPTION_BYTES} bytes]",
                crate::cut(&description, MAX_DESCRIPTION_BYTES)
            )
        } else {
            description
        };
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
            Ok(result) => result_to_output(&self.name, result)
                .map(|output| cap_output(output, self.conn.max_result_bytes)),
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

/// A result within `max` bytes: longer ones are cut, with a note saying how much was cut
/// (JSON that is too long becomes cut text).
fn cap_output(output: ToolOutput, max: usize) -> ToolOutput {
    let text = match output {
        ToolOutput::Text(text) if text.len() > max => text,
        ToolOutput::Json(json) => {
            let text = json.to_string();
            if text.len() <= max {
                return ToolOutput::Json(json);
            }
            text
        }
        other => return other,
    };
    ToolOutput::Text(format!(
        "{}\n[result cut at {max} of {} bytes]",
        crate::cut(&text, max),
        text.len()
    ))
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
}
