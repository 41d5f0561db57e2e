"""The official Python MCP SDK's own server (`MCPServer`, named FastMCP
before SDK 2.x) over Streamable HTTP, the reference of ccx's `/mcp`.

One tool, `execute`, that runs a shell command the way an SDK user writes
it: an asyncio subprocess, its stdout and stderr read to the end, the output
as the result. Everything else (sessions, SSE answers, the uvicorn server) is
the SDK's default.

It binds 127.0.0.1 on a port the OS picks (or the one given as the first
argument) and prints one JSON readiness line on stdout once uvicorn serves:
{"event": "ready", "port": N, "pid": P}.
"""

import asyncio
import json
import os
import socket
import sys

import uvicorn
from mcp.server import MCPServer

server = MCPServer("sdk-peer", log_level="WARNING")


@server.tool()
async def execute(command: str) -> str:
    """Run a shell command and return its output."""
    proc = await asyncio.create_subprocess_shell(
        command,
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.PIPE,
        start_new_session=True,
    )
    stdout, stderr = await proc.communicate()
    if proc.returncode != 0:
        raise RuntimeError(f"exit code {proc.returncode}: {stderr.decode(errors='replace')}")
    return stdout.decode(errors="replace")


class ReadyServer(uvicorn.Server):
    """uvicorn that says so on stdout once it accepts connections."""

    async def startup(self, sockets=None):
        await super().startup(sockets=sockets)
        port = self.servers[0].sockets[0].getsockname()[1]
        print(json.dumps({"event": "ready", "port": port, "pid": os.getpid()}), flush=True)


def main():
    port = int(sys.argv[1]) if len(sys.argv) > 1 else 0
    sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    sock.bind(("127.0.0.1", port))
    app = server.streamable_http_app(host="127.0.0.1")
    config = uvicorn.Config(app, log_level="warning", lifespan="on")
    asyncio.run(ReadyServer(config).serve(sockets=[sock]))


if __name__ == "__main__":
    main()
