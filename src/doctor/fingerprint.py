# The Python half of the fingerprint probe of `ccx doctor --compare` (see
# fingerprint.rs), run as `python3 -c CODE MODULE...`. No single quote
# anywhere: the code runs inside a single-quoted sh word.
import os, sys, re
w = sys.stdout.write
def o(k, v):
    w(k + "=" + str(v).replace("\n", " ").replace("\r", " ") + "\n")
o("version", sys.version.split()[0])
o("executable", sys.executable)
for p in sys.path[:200]:
    o("sys_path", p)
try:
    from importlib import metadata as md
    d = {}
    for x in md.distributions():
        n = x.metadata["Name"]
        if n:
            d[re.sub(r"[-_.]+", "-", n).lower()] = x.version
    for n in sorted(d)[:2000]:
        o("dist", n + "==" + str(d[n]))
except Exception as e:
    o("dist_error", type(e).__name__ + ": " + str(e))
names = sys.argv[1:]
for base in (".", "src"):
    try:
        for n in sorted(os.listdir(base)):
            if (re.match(r"^[A-Za-z_][A-Za-z0-9_]*$", n) and n not in ("tests", "test", "docs")
                    and n not in names and os.path.isfile(os.path.join(base, n, "__init__.py"))):
                names.append(n)
    except Exception:
        pass
import importlib, signal
def late(s, f):
    raise RuntimeError("did not import within 10 s")
alarm = hasattr(signal, "SIGALRM")
if alarm:
    signal.signal(signal.SIGALRM, late)
sys.stdout.flush()
null = os.open(os.devnull, os.O_WRONLY)
keep = (os.dup(1), os.dup(2))
for n in names[:50]:
    os.dup2(null, 1)
    os.dup2(null, 2)
    try:
        if alarm:
            signal.alarm(10)
        m = importlib.import_module(n)
        f = getattr(m, "__file__", None)
        if f is None:
            p = list(getattr(m, "__path__", []))
            f = p[0] if p else "(built in)"
        elif os.path.basename(f).startswith("__init__."):
            f = os.path.dirname(f)
        r = "ok\t" + str(f)
    except BaseException as e:
        r = "error\t" + type(e).__name__ + ": " + str(e)
    if alarm:
        signal.alarm(0)
    try:
        sys.stdout.flush()
        sys.stderr.flush()
    except BaseException:
        pass
    os.dup2(keep[0], 1)
    os.dup2(keep[1], 2)
    o("module", n + "\t" + r)
o("done", "1")
sys.stdout.flush()
os._exit(0)
