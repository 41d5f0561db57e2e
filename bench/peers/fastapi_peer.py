"""A minimal FastAPI + uvicorn peer of ccx's wire protocol, the reference the
bench compares ccx with.

It is written the way cc_executor serves a command (asyncio subprocess in a
new session, one `readline()` loop per pipe, one `process.output` per line,
`send_json` per message, the same JSON-RPC messages: `connected`, the
`execute` result, `process.started` / `process.output` / `process.completed`),
without cc_executor's hooks, Redis and logging, so it measures what that
design costs at best.

It binds 127.0.0.1 on a port the OS picks and prints one JSON readiness line
on stdout: {"event": "ready", "port": N, "pid": P}.
"""

import asyncio
import json
import os
import signal
import socket
import uuid

import uvicorn
from fastapi import FastAPI, WebSocket, WebSocketDisconnect

MAX_CHUNK = 65536  # cc_executor's chunk size for long lines
READ_LIMIT = 8 * 1024 * 1024  # cc_executor's StreamReader limit

app = FastAPI()


def notification(method, params):
    return {"jsonrpc": "2.0", "method": method, "params": params}


async def pump(ws, stream, kind):
    """One readline() loop per pipe; each line is one process.output."""
    while True:
        try:
            line = await stream.readline()
        except ValueError:  # a line longer than READ_LIMIT: forward what is there
            line = await stream.read(READ_LIMIT)
        if not line:
            return
        data = line.decode("utf-8", errors="replace")
        if len(data) <= MAX_CHUNK:
            await ws.send_json(
                notification(
                    "process.output", {"type": kind, "data": data, "truncated": False}
                )
            )
            continue
        total = (len(data) + MAX_CHUNK - 1) // MAX_CHUNK
        for index in range(total):
            chunk = data[index * MAX_CHUNK : (index + 1) * MAX_CHUNK]
            await ws.send_json(
                notification(
                    "process.output",
                    {
                        "type": kind,
                        "data": chunk,
                        "truncated": index + 1 < total,
                        "chunk_index": index,
                        "total_chunks": total,
                    },
                )
            )


async def stream_process(ws, proc, pgid):
    await asyncio.gather(pump(ws, proc.stdout, "stdout"), pump(ws, proc.stderr, "stderr"))
    code = await proc.wait()
    await ws.send_json(
        notification(
            "process.completed",
            {
                "status": "completed" if code == 0 else "failed",
                "pid": proc.pid,
                "pgid": pgid,
                "exit_code": code,
            },
        )
    )


@app.websocket("/ws/mcp")
async def mcp(ws: WebSocket):
    await ws.accept()
    await ws.send_json(
        notification(
            "connected",
            {
                "session_id": str(uuid.uuid4()),
                "version": "bench-peer",
                "capabilities": ["execute", "control", "stream"],
            },
        )
    )
    proc = None
    task = None
    try:
        while True:
            msg = await ws.receive_json()
            method = msg.get("method")
            msg_id = msg.get("id")
            if method == "execute":
                if task is not None and not task.done():
                    await ws.send_json(
                        {
                            "jsonrpc": "2.0",
                            "id": msg_id,
                            "error": {"code": -32602, "message": "A process is already running"},
                        }
                    )
                    continue
                proc = await asyncio.create_subprocess_exec(
                    "/bin/sh",
                    "-c",
                    msg["params"]["command"],
                    stdin=asyncio.subprocess.DEVNULL,
                    stdout=asyncio.subprocess.PIPE,
                    stderr=asyncio.subprocess.PIPE,
                    preexec_fn=os.setsid,
                    limit=READ_LIMIT,
                )
                try:  # as cc_executor: a quick command may be gone already
                    pgid = os.getpgid(proc.pid)
                except ProcessLookupError:
                    pgid = None
                await ws.send_json(
                    {
                        "jsonrpc": "2.0",
                        "id": msg_id,
                        "result": {"status": "started", "pid": proc.pid, "pgid": pgid},
                    }
                )
                await ws.send_json(
                    notification(
                        "process.started", {"status": "started", "pid": proc.pid, "pgid": pgid}
                    )
                )
                task = asyncio.create_task(stream_process(ws, proc, pgid))
            elif method in ("pong", "hook_status"):
                await ws.send_json({"jsonrpc": "2.0", "id": msg_id, "result": {}})
            else:
                await ws.send_json(
                    {
                        "jsonrpc": "2.0",
                        "id": msg_id,
                        "error": {"code": -32601, "message": f"Method not found: {method}"},
                    }
                )
    except WebSocketDisconnect:
        pass
    finally:
        if task is not None and not task.done():
            task.cancel()
        if proc is not None and proc.returncode is None:
            try:
                os.killpg(proc.pid, signal.SIGKILL)
            except ProcessLookupError:
                pass


def main():
    sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    sock.bind(("127.0.0.1", 0))
    sock.listen(2048)
    config = uvicorn.Config(app, log_level="warning", lifespan="off")
    server = uvicorn.Server(config)
    ready = {"event": "ready", "port": sock.getsockname()[1], "pid": os.getpid()}
    print(json.dumps(ready), flush=True)
    server.run(sockets=[sock])


if __name__ == "__main__":
    main()
