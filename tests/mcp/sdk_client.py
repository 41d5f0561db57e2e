"""Drives an MCP server with the official Python SDK's client and prints one
JSON document on stdout saying what it saw. Used by tests/mcp.rs.

    sdk_client.py SCENARIO [--mode MODE] (--http URL [--token T] | --stdio CMD...)

SCENARIO:
  basic     initialize, tools/list, execute `echo NONCE`, execute `exit 4`
  progress  execute with a progress token; the output comes as progress messages
  cancel    execute a long command, abandon it (the SDK sends
            notifications/cancelled), then watch /proc until its process
            group is gone, with the session still open; then one more echo
"""

import argparse
import json
import os
import sys
import time
import uuid

import anyio
import httpx2
from mcp import Client, StdioServerParameters
from mcp.client.stdio import stdio_client
from mcp.client.streamable_http import streamable_http_client


def group_members(pgid: int) -> list[int]:
    members = []
    for entry in os.listdir("/proc"):
        if not entry.isdigit():
            continue
        try:
            with open(f"/proc/{entry}/stat") as f:
                stat = f.read()
        except OSError:
            continue
        # pid (comm) state ppid pgrp ...: comm may contain spaces
        fields = stat.rsplit(")", 1)[1].split()
        if fields[0] != "Z" and int(fields[2]) == pgid:
            members.append(int(entry))
    return members


def text_of(result) -> str:
    return "".join(getattr(c, "text", "") for c in result.content)


def call_summary(result) -> dict:
    return {
        "is_error": bool(result.is_error),
        "text": text_of(result),
        "structured": result.structured_content,
    }


async def basic(client: Client) -> dict:
    tools = await client.list_tools()
    nonce = uuid.uuid4().hex
    echo = await client.call_tool("execute", {"command": f"echo {nonce}"})
    failing = await client.call_tool("execute", {"command": "echo on-stderr >&2; exit 4"})
    return {
        "protocol_version": client.protocol_version,
        "server_name": client.server_info.name if client.server_info else None,
        "tools": [t.name for t in tools.tools],
        "nonce": nonce,
        "echo": call_summary(echo),
        "exit4": call_summary(failing),
    }


async def progress(client: Client) -> dict:
    messages = []

    async def on_progress(progress, total, message):
        messages.append({"progress": progress, "message": message})

    result = await client.call_tool(
        "execute",
        {"command": "echo first; sleep 0.3; echo second"},
        progress_callback=on_progress,
    )
    return {"result": call_summary(result), "progress": messages}


async def cancel(client: Client) -> dict:
    started = anyio.Event()
    seen = {}

    async def on_progress(progress, total, message):
        if message and message.startswith("pgid:") and "pgid" not in seen:
            seen["pgid"] = int(message.split(":")[1].split()[0])
            started.set()

    async def run():
        await client.call_tool(
            "execute",
            # two members: the shell and a background sleep, both must end
            {"command": "echo pgid:$$; sleep 300 & sleep 300; wait"},
            progress_callback=on_progress,
        )

    out = {}
    async with anyio.create_task_group() as tg:
        tg.start_soon(run)
        with anyio.fail_after(20):
            await started.wait()
        pgid = seen["pgid"]
        out["pgid"] = pgid
        out["members_before"] = group_members(pgid)
        tg.cancel_scope.cancel()
    cancelled_at = time.monotonic()
    while group_members(pgid) and time.monotonic() - cancelled_at < 15:
        await anyio.sleep(0.05)
    out["members_after"] = group_members(pgid)
    out["gone_after_ms"] = int((time.monotonic() - cancelled_at) * 1000)
    echo = await client.call_tool("execute", {"command": "echo still-open"})
    out["after"] = call_summary(echo)
    return out


SCENARIOS = {"basic": basic, "progress": progress, "cancel": cancel}


async def main() -> None:
    parser = argparse.ArgumentParser()
    target = parser.add_mutually_exclusive_group(required=True)
    target.add_argument("--stdio", nargs=argparse.REMAINDER)
    target.add_argument("--http")
    parser.add_argument("--token")
    parser.add_argument("--mode", default="auto")
    parser.add_argument("scenario", choices=sorted(SCENARIOS))
    args = parser.parse_args(sys.argv[1:])
    if args.stdio:
        server = StdioServerParameters(command=args.stdio[0], args=args.stdio[1:], env=dict(os.environ))
        async with Client(stdio_client(server), mode=args.mode) as client:
            out = await SCENARIOS[args.scenario](client)
    else:
        headers = {"Authorization": f"Bearer {args.token}"} if args.token else {}
        async with httpx2.AsyncClient(headers=headers, timeout=30) as http:
            transport = streamable_http_client(args.http, http_client=http)
            async with Client(transport, mode=args.mode) as client:
                out = await SCENARIOS[args.scenario](client)
    print(json.dumps(out))


if __name__ == "__main__":
    anyio.run(main)
