//! Serving a [`ToolSet`] over MCP, so other MCP clients can use our tools.

use std::sync::Arc;
use std::time::Duration;

use agent_core::{SideEffect, ToolCall, ToolContext, ToolErrorKind, ToolSet};
use rmcp::model::{
    CallToolRequestParams, CallToolResponse, Implementation, ListToolsResult,
    PaginatedRequestParams, ServerCapabilities, ServerConfig, Tool as RemoteTool, ToolAnnotations,
};
use rmcp::service::RequestContext;
use rmcp::{ErrorData, RoleServer, ServerHandler, ServiceExt};
use tokio::io::{AsyncRead, AsyncWrite};

use super::McpError;
use super::content::output_to_result;

/// Serves a [`ToolSet`] as an MCP server: `tools/list` gives each tool's name, description,
/// schema and hints (read-only, idempotent), and `tools/call` checks the arguments against
/// the schema and runs the tool contained (timeout, panics, the client's cancellation).
/// Bad arguments and tool failures come back as `isError` results the calling model can
/// read; an unknown tool is a JSON-RPC error.
///
/// ```no_run
/// use std::sync::Arc;
/// use agent_core::{Tool, ToolSet};
/// use agent_tools::{mcp::McpServer, Calculator, Clock};
///
/// #[tokio::main]
/// async fn main() -> Result<(), Box<dyn std::error::Error>> {
///     let tools = ToolSet::new([
///         Arc::new(Calculator::new()) as Arc<dyn Tool>,
///         Arc::new(Clock::new()),
///     ])?;
///     McpServer::new(tools).serve_stdio().await?;
///     Ok(())
/// }
/// ```
#[derive(Clone, Debug)]
pub struct McpServer {
    tools: ToolSet,
    name: String,
    version: String,
    instructions: Option<String>,
    call_timeout: Duration,
}

impl McpServer {
    /// A server for these tools, named `agent-tools`, with a 60 s timeout per call.
    pub fn new(tools: ToolSet) -> Self {
        McpServer {
            tools,
            name: "agent-tools".into(),
            version: env!("CARGO_PKG_VERSION").into(),
            instructions: None,
            call_timeout: Duration::from_secs(60),
        }
    }

    /// The name and version the server gives in the handshake.
    #[must_use]
    pub fn named(mut self, name: impl Into<String>, version: impl Into<String>) -> Self {
        self.name = name.into();
        self.version = version.into();
        self
    }

    /// Instructions for the client's model, sent in the handshake.
    #[must_use]
    pub fn instructions(mut self, instructions: impl Into<String>) -> Self {
        self.instructions = Some(instructions.into());
        self
    }

    /// How long one call may run (for tools without a timeout of their own).
    #[must_use]
    pub fn call_timeout(mut self, timeout: Duration) -> Self {
        self.call_timeout = timeout;
        self
    }

    /// Serves over this process's stdin and stdout until the client disconnects. Nothing
    /// else may write to stdout meanwhile: log to stderr.
    pub async fn serve_stdio(self) -> Result<(), McpError> {
        self.serve_io(tokio::io::stdin(), tokio::io::stdout()).await
    }

    /// Serves over any byte stream pair (a socket, a pipe, an in-memory duplex) until the
    /// client disconnects.
    pub async fn serve_io<R, W>(self, reader: R, writer: W) -> Result<(), McpError>
    where
        R: AsyncRead + Send + Unpin + 'static,
        W: AsyncWrite + Send + Unpin + 'static,
    {
        let service = Handler(Arc::new(self))
            .serve((reader, writer))
            .await
            .map_err(|e| McpError::Serve(format!("handshake failed: {e}")))?;
        service
            .waiting()
            .await
            .map_err(|e| McpError::Serve(e.to_string()))?;
        Ok(())
    }

    fn remote_tools(&self) -> Vec<RemoteTool> {
        self.tools
            .specs()
            .iter()
            .map(|spec| {
                let schema = match &spec.parameters {
                    serde_json::Value::Object(map) => map.clone(),
                    _ => serde_json::Map::new(),
                };
                let mut tool = RemoteTool::new(
                    spec.name.clone(),
                    spec.description.clone(),
                    Arc::new(schema),
                );
                if let Some(meta) = self.tools.meta(&spec.name) {
                    let mut hints = ToolAnnotations::default();
                    match meta.side_effect {
                        SideEffect::ReadOnly => {
                            hints.read_only_hint = Some(true);
                            hints.destructive_hint = Some(false);
                            hints.idempotent_hint = Some(true);
                        }
                        SideEffect::Idempotent => {
                            hints.read_only_hint = Some(false);
                            hints.idempotent_hint = Some(true);
                        }
                        SideEffect::SideEffecting => hints.read_only_hint = Some(false),
                    }
                    tool = tool.with_annotations(hints);
                }
                tool
            })
            .collect()
    }
}

struct Handler(Arc<McpServer>);

impl ServerHandler for Handler {
    fn get_info(&self) -> ServerConfig {
        let server = &self.0;
        let mut info = ServerConfig::new(ServerCapabilities::builder().enable_tools().build())
            .with_server_info(Implementation::new(&server.name, &server.version));
        if let Some(instructions) = &server.instructions {
            info = info.with_instructions(instructions);
        }
        info
    }

    async fn list_tools(
        &self,
        _request: Option<PaginatedRequestParams>,
        _context: RequestContext<RoleServer>,
    ) -> Result<ListToolsResult, ErrorData> {
        Ok(ListToolsResult::with_all_items(self.0.remote_tools()))
    }

    async fn call_tool(
        &self,
        request: CallToolRequestParams,
        context: RequestContext<RoleServer>,
    ) -> Result<CallToolResponse, ErrorData> {
        let server = &self.0;
        let args = serde_json::Value::Object(request.arguments.unwrap_or_default());
        let call_id = format!("mcp-{}", context.id);
        let call = ToolCall::new(call_id.clone(), request.name.to_string(), &args);
        let args = match server.tools.check_call(&call) {
            Ok(args) => args,
            Err(e) if e.kind == ToolErrorKind::NotFound => {
                return Err(ErrorData::invalid_params(e.message, None));
            }
            Err(e) => return Ok(output_to_result(Err(e)).into()),
        };
        let mut ctx = ToolContext::detached();
        ctx.run_id = Arc::from("mcp");
        ctx.agent = Arc::from(server.name.as_str());
        ctx.call_id = call_id;
        // Fired when the client sends `notifications/cancelled` for this request.
        ctx.cancel = context.ct.clone();
        let outcome = server
            .tools
            .invoke(&call.name, args, ctx, server.call_timeout)
            .await;
        Ok(output_to_result(outcome).into())
    }
}
