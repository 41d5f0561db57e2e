"""Sequences a cc_executor user's client runs on one session, written the
way such clients are: plain Python `websockets`, JSON-RPC by hand.

Usage: sequence_client.py WS_URL order RUNS
         runs `echo out; echo err >&2` and `echo err >&2; echo out` RUNS
         times each and counts the runs whose lines arrived in write order.
       sequence_client.py WS_URL cancel-then-execute RUNS
         starts `sleep 300`, CANCELs it and sends the next `execute` at once
         (without waiting for process.completed), RUNS times.
       sequence_client.py WS_URL collect OUT_FILE COMMAND
         runs COMMAND, writes its stdout to OUT_FILE and counts the
         messages, and those that are not one line.

Prints one JSON summary line on stdout.
"""
import asyncio
import json
import sys

import websockets

PATTERNS = {
    "out_then_err": ("echo out; echo err >&2", ["out\n", "err\n"]),
    "err_then_out": ("echo err >&2; echo out", ["err\n", "out\n"]),
}


async def recv(ws):
    msg = json.loads(await asyncio.wait_for(ws.recv(), timeout=20))
    assert msg.get("jsonrpc") == "2.0", msg
    return msg


async def run_one(ws, rid, command):
    """Executes `command`; returns (answer, outputs in arrival order,
    completion). What arrives before the answer belongs to an earlier
    command and is skipped."""
    await ws.send(json.dumps({
        "jsonrpc": "2.0", "id": rid, "method": "execute", "params": {"command": command},
    }))
    answer, outputs = None, []
    while True:
        msg = await recv(ws)
        if msg.get("id") == rid:
            answer = msg
            if "error" in msg:
                return answer, outputs, None
        elif answer is None:
            continue
        elif msg.get("method") == "process.output":
            outputs.append(msg["params"]["data"])
        elif msg.get("method") == "process.completed":
            return answer, outputs, msg["params"]


async def order(ws, runs):
    summary = {}
    rid = 0
    for name, (command, expected) in PATTERNS.items():
        in_order, wrong = 0, []
        for _ in range(runs):
            rid += 1
            answer, outputs, completed = await run_one(ws, rid, command)
            assert completed is not None, answer
            if outputs == expected:
                in_order += 1
            elif sorted(outputs) == sorted(expected):
                wrong.append(outputs)
            else:
                raise AssertionError(f"{command!r} sent {outputs!r}")
        summary[name] = {"runs": runs, "in_order": in_order, "examples": wrong[:3]}
    return summary


async def cancel_then_execute(ws, runs):
    accepted, canceled, refusals = 0, 0, []
    rid = 1
    await ws.send(json.dumps({
        "jsonrpc": "2.0", "id": rid, "method": "execute", "params": {"command": "sleep 300"},
    }))
    for i in range(runs + 1):
        # The answer to the pending `execute`; the previous command's
        # completion comes before it.
        while True:
            msg = await recv(ws)
            if msg.get("method") == "process.completed" and msg["params"]["status"] == "canceled":
                canceled += 1
            if msg.get("id") == rid:
                break
        if "error" in msg:
            refusals.append(msg["error"])
            break
        accepted += 1
        if i == runs:
            break
        rid += 1
        await ws.send(json.dumps({
            "jsonrpc": "2.0", "id": rid, "method": "control", "params": {"type": "CANCEL"},
        }))
        while (await recv(ws)).get("method") != "process.canceled":
            pass
        # The next command at once: the canceled one may still be ending.
        rid += 1
        await ws.send(json.dumps({
            "jsonrpc": "2.0", "id": rid, "method": "execute",
            "params": {"command": "sleep 300" if i + 1 < runs else "echo done"},
        }))
    last = None
    if accepted == runs + 1:
        while last is None:
            msg = await recv(ws)
            if msg.get("method") == "process.completed":
                last = msg["params"]["status"]
    return {"runs": runs, "accepted": accepted - 1, "canceled": canceled,
            "last": last, "refusals": refusals[:3]}


async def collect(ws, out_file, command):
    answer, outputs, completed = await run_one(ws, 1, command)
    assert completed is not None, answer
    data = "".join(outputs)
    with open(out_file, "w", encoding="utf-8", newline="") as f:
        f.write(data)
    # One line per message: each ends with its newline, but the stream's
    # last (unterminated) line.
    not_lines = sum(1 for o in outputs[:-1] if not o.endswith("\n") or "\n" in o[:-1])
    return {"messages": len(outputs), "not_one_line": not_lines,
            "exit_code": completed["exit_code"]}


async def main(url, mode, args):
    async with websockets.connect(url, max_size=None) as ws:
        connected = await recv(ws)
        assert connected["method"] == "connected", connected
        if mode == "order":
            summary = await order(ws, int(args[0]))
        elif mode == "cancel-then-execute":
            summary = await cancel_then_execute(ws, int(args[0]))
        elif mode == "collect":
            summary = await collect(ws, args[0], args[1])
        else:
            raise SystemExit(f"unknown mode {mode!r}: order, cancel-then-execute or collect")
    print(json.dumps(summary))


if __name__ == "__main__":
    asyncio.run(main(sys.argv[1], sys.argv[2], sys.argv[3:]))
