//! Real Model Context Protocol: ccx's `execute` as an MCP tool.
//!
//! The protocol itself (JSON-RPC framing, the `initialize` handshake and the
//! handshake-less `server/discover` era, version negotiation, cancellation,
//! Streamable HTTP sessions) is the official Rust SDK's (`rmcp`); this
//! module owns only what ccx adds: the tool catalogue ([`Tools`], here), the
//! `execute` tool ([`execute`]) and the two transports ([`stdio`], [`http`]).
//! (The client the doctor checks MCP servers with is `client::mcp`.)
//!
//! It must not know the WebSocket protocol on `/ws/mcp` or the CLI.

pub mod execute;
pub mod http;
pub mod output;
pub mod sessions;
pub mod stdio;

use std::sync::Arc;

use rmcp::model::{
    CallToolRequestParams, CallToolResponse, Implementation, ListToolsResult,
    PaginatedRequestParams, ServerCapabilities, ServerConfig, Tool,
};
use rmcp::service::RequestContext;
use rmcp::{ErrorData, RoleServer, ServerHandler};

use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;

use crate::config::Config;
use crate::process::Executor;

/// The name under which ccx introduces itself to MCP clients.
pub const SERVER_NAME: &str = "ccx";

/// The MCP tools of one connection (stdio) or one HTTP session: `execute`,
/// run with the server's process rules from `config`.
#[derive(Clone)]
pub struct Tools {
    config: Arc<Config>,
    /// The process rules and admission of `config`, built once.
    executor: Arc<Executor>,
    /// Cancelled when the server serving the tools starts draining.
    draining: Option<CancellationToken>,
}

/// The drain of the server that serves `/mcp` (`ccx serve`, on SIGTERM):
/// once `draining` is cancelled, no session opens and `execute` starts no
/// command; a running call holds `running` open until its answer is
/// written, so the drain waits for it as it waits for a WebSocket
/// session's command.
#[derive(Clone)]
pub struct Drain {
    pub draining: CancellationToken,
    pub running: TaskTracker,
}

impl Tools {
    /// Tools with no server around them (`ccx mcp` over stdio).
    pub fn new(config: Arc<Config>) -> Self {
        Tools {
            executor: Arc::new(Executor::from_config(&config)),
            config,
            draining: None,
        }
    }

    /// Tools served by a server that drains.
    pub fn served(
        config: Arc<Config>,
        executor: Arc<Executor>,
        draining: CancellationToken,
    ) -> Self {
        Tools {
            config,
            executor,
            draining: Some(draining),
        }
    }

    fn catalogue() -> Vec<Tool> {
        vec![execute::tool()]
    }
}

impl ServerHandler for Tools {
    fn get_info(&self) -> ServerConfig {
        ServerConfig::new(ServerCapabilities::builder().enable_tools().build())
            .with_server_info(Implementation::new(SERVER_NAME, crate::VERSION))
            .with_instructions(
                "`execute` runs one shell command on this machine (in its own process group, \
                 with the server's timeout, output cap and command allowlist) and returns its \
                 output, exit code and status. Send a progress token to receive output while \
                 it runs; cancel the request to end the command.",
            )
    }

    async fn list_tools(
        &self,
        _request: Option<PaginatedRequestParams>,
        _context: RequestContext<RoleServer>,
    ) -> Result<ListToolsResult, ErrorData> {
        Ok(ListToolsResult::with_all_items(Self::catalogue()))
    }

    fn get_tool(&self, name: &str) -> Option<Tool> {
        Self::catalogue().into_iter().find(|t| t.name == name)
    }

    async fn call_tool(
        &self,
        request: CallToolRequestParams,
        context: RequestContext<RoleServer>,
    ) -> Result<CallToolResponse, ErrorData> {
        match request.name.as_ref() {
            execute::NAME => {
                let result = execute::call(
                    &self.config,
                    &self.executor,
                    self.draining.as_ref(),
                    request.arguments,
                    context,
                )
                .await;
                Ok(result.into())
            }
            other => Err(ErrorData::invalid_params(
                format!("unknown tool {other:?}: this server has the tool `execute`"),
                None,
            )),
        }
    }
}
