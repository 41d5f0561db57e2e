"""A minimal MCP server written with the official Python SDK, speaking stdio:
one tool, `execute`, that runs a shell command. `ccx doctor --mcp
--server-cmd` must pass against it (a server that is not ccx).

    sdk_server.py          the tool works
    sdk_server.py --broken the tool call fails (the SDK returns isError: true)
"""

import subprocess
import sys

from mcp.server import MCPServer

BROKEN = "--broken" in sys.argv[1:]

server = MCPServer("sdk-minimal")


@server.tool()
def execute(command: str) -> str:
    """Run a shell command and return its output."""
    if BROKEN:
        raise RuntimeError("this server's execute is broken on purpose")
    done = subprocess.run(command, shell=True, capture_output=True, text=True, timeout=30)
    if done.returncode != 0:
        raise RuntimeError(f"exit code {done.returncode}: {done.stderr}")
    return done.stdout


if __name__ == "__main__":
    server.run("stdio")
