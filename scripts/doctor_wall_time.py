"""Wall time of a full local `ccx doctor`: runs it 20 times (with --json,
checking that all six checks passed) and prints the median, min and max,
and the median duration of each step.

Usage: python3 scripts/doctor_wall_time.py target/debug/ccx doctor [ARGS...]
"""
import subprocess, sys, time, statistics, json, signal

signal.signal(signal.SIGPIPE, signal.SIG_DFL)  # quiet when piped into head
cmd = sys.argv[1:]
walls, steps = [], []
for _ in range(20):
    t = time.perf_counter()
    p = subprocess.run(cmd + ["--json"], capture_output=True, stdin=subprocess.DEVNULL)
    walls.append((time.perf_counter() - t) * 1000)
    r = json.loads(p.stdout)
    assert r["exit_code"] == 0, p.stdout
    steps.append({s["id"]: s["duration_ms"] for s in r["steps"]})
print("wall ms: median %.1f min %.1f max %.1f" % (statistics.median(walls), min(walls), max(walls)))
for k in steps[0]:
    print("  %-9s median %d ms" % (k, statistics.median(s[k] for s in steps)))
