"""A client written the way cc_executor users write theirs: plain Python
`websockets`, JSON-RPC by hand. Usage: cc_executor_client.py WS_URL

Runs `execute`, reads output and completion, then a PAUSE/RESUME/CANCEL
round, and prints one JSON summary line on stdout.
"""
import asyncio
import json
import sys

import websockets


async def until(ws, method):
    seen = []
    while True:
        msg = json.loads(await asyncio.wait_for(ws.recv(), timeout=20))
        assert msg.get("jsonrpc") == "2.0", msg
        seen.append(msg)
        if msg.get("method") == method or (method is None and "id" in msg):
            return msg, seen


async def main(url):
    summary = {}
    async with websockets.connect(url) as ws:
        connected = json.loads(await asyncio.wait_for(ws.recv(), timeout=10))
        summary["connected"] = connected["method"] == "connected" and "session_id" in connected["params"]

        await ws.send(json.dumps({
            "jsonrpc": "2.0", "id": 1, "method": "execute",
            "params": {"command": "echo hello from python; echo oops >&2; exit 3"},
        }))
        response, _ = await until(ws, None)
        summary["started"] = response["result"]["status"] == "started"
        completed, seen = await until(ws, "process.completed")
        outputs = [m["params"] for m in seen if m.get("method") == "process.output"]
        summary["stdout"] = "".join(o["data"] for o in outputs if o["type"] == "stdout")
        summary["stderr"] = "".join(o["data"] for o in outputs if o["type"] == "stderr")
        summary["exit_code"] = completed["params"]["exit_code"]
        summary["status"] = completed["params"]["status"]

        await ws.send(json.dumps({
            "jsonrpc": "2.0", "id": 2, "method": "execute", "params": {"command": "sleep 300"},
        }))
        await until(ws, None)
        controls = []
        for i, kind in enumerate(["PAUSE", "RESUME", "CANCEL"], start=3):
            await ws.send(json.dumps({
                "jsonrpc": "2.0", "id": i, "method": "control", "params": {"type": kind},
            }))
            reply, _ = await until(ws, None)
            controls.append(reply["result"]["status"])
        summary["controls"] = controls
        completed, _ = await until(ws, "process.completed")
        summary["cancelled"] = completed["params"]["status"]

        await ws.send("not json")
        error, _ = await until(ws, None)
        summary["parse_error"] = error["error"]["code"]
    print(json.dumps(summary))


if __name__ == "__main__":
    asyncio.run(main(sys.argv[1]))
