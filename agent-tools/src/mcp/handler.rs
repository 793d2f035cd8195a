//! The client's side of an MCP session: what it tells the server, and the server's
//! notifications it listens to. A leaf, shared by the stdio and HTTP transports.

use std::sync::Arc;

use rmcp::model::ClientConfig;
use rmcp::service::NotificationContext;
use rmcp::{ClientHandler, RoleClient};
use tokio::sync::Notify;

/// Receives the server's notifications.
pub(super) struct Handler {
    /// What the client says about itself in the handshake.
    pub(super) info: ClientConfig,
    /// Notified when the server's tool list changes.
    pub(super) list_changed: Arc<Notify>,
    /// The server's label, for logs.
    pub(super) server: String,
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
