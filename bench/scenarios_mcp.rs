//! P10: MCP `tools/call execute` of `echo x` over Streamable HTTP, one
//! session, sequential, against ccx's own WebSocket round trip (P1's
//! scenario) and the official Python MCP SDK's server running the same
//! command, all three taking turns in each round on one fresh ccx.

use std::path::Path;
use std::time::Duration;

use crate::load::{self, new_histogram};
use crate::mcp_load::{self, McpHttpTarget};
use crate::report::{Goal, Row, Spec};
use crate::scenarios::{p, reference, settle};
use crate::servers;
use crate::setup::Peer;

/// Sizes of a P10 run.
pub struct Sizes {
    pub rounds: usize,
    pub runs: usize,
    pub limit: Duration,
}

pub async fn p10(bin: &Path, logs: &Path, sdk: &Result<Peer, String>, sizes: Sizes) -> Vec<Row> {
    let scenario = "MCP `tools/call execute` of `echo x`, Streamable HTTP, sequential, p50";
    let p1_spec = Spec::new(
        "P10",
        scenario,
        Goal::RatioAtMost(1.5),
        "≤ 1.5 × P1's round trip",
    );
    let sdk_spec = Spec::new(
        "P10",
        scenario,
        Goal::RatioAtMost(0.2),
        "≥ 5 × faster than the MCP SDK (≤ 0.2×)",
    );
    eprintln!("bench: P10 …");
    let result = async {
        let ccx = servers::start_ccx(bin, logs, "p10")?;
        let sdk_server = match sdk {
            Ok(peer) => servers::start_mcp_sdk_peer(&peer.python, &peer.script, logs)
                .map_err(|e| e.to_string()),
            Err(e) => Err(e.clone()),
        };
        let ccx_mcp = McpHttpTarget {
            name: "ccx /mcp",
            port: ccx.port,
        };
        let (mut ws_h, mut mcp_h, mut sdk_h) = (new_histogram(), new_histogram(), new_histogram());
        for _ in 0..sizes.rounds {
            let _ = ws_h.add(load::sequential(&ccx.target(), sizes.runs, sizes.limit).await?);
            let _ = mcp_h.add(mcp_load::sequential(&ccx_mcp, sizes.runs, sizes.limit).await?);
            if let Ok(server) = &sdk_server {
                let target = McpHttpTarget {
                    name: "MCP SDK peer",
                    port: server.port,
                };
                // The SDK peer is an order of magnitude slower: a fifth of
                // the calls measures its median as well.
                let runs = (sizes.runs / 5).max(20);
                let _ = sdk_h.add(mcp_load::sequential(&target, runs, sizes.limit).await?);
            }
        }
        let mcp_fig = p(&mcp_h, 0.5);
        let note = format!(
            "p99 /mcp {}, WebSocket {}; {} calls each on one ccx; WebSocket p50 measured here, not in P1's row",
            p(&mcp_h, 0.99),
            p(&ws_h, 0.99),
            mcp_h.len()
        );
        let p1_row = Row::measured(
            &p1_spec,
            mcp_fig,
            reference("P1 round trip (WebSocket)", p(&ws_h, 0.5)),
            note,
        );
        let sdk_row = match &sdk_server {
            Ok(_) => Row::measured(
                &sdk_spec,
                mcp_fig,
                reference("MCP SDK peer", p(&sdk_h, 0.5)),
                format!(
                    "MCP SDK peer (MCPServer, asyncio subprocess) p99 {}; {} calls",
                    p(&sdk_h, 0.99),
                    sdk_h.len()
                ),
            ),
            Err(e) => Row::skipped(&sdk_spec, format!("MCP SDK peer unavailable: {e}")),
        };
        Ok(vec![p1_row, sdk_row])
    }
    .await;
    settle(&[&p1_spec, &sdk_spec], result)
}
