#!/usr/bin/env python3
"""The streaming benchmark: `make bench` runs this.

Builds everything it needs (the library, the blast server, the C bench client, the
async-openai bench crate, a venv with the pinned Python clients), starts the blast server
on a loopback port, runs every client on every workload several times (runs interleaved,
so that noise from other processes spreads over all clients alike), takes medians, prints
the tables, and writes them into BENCHMARKS.md (between the `bench:begin`/`bench:end`
markers; the rest of that file is kept) and the chart into docs/bench.svg.

Environment:
  BENCH_QUICK=1     a tenth of the tokens and calls, one run each: a smoke test, not numbers
  BENCH_RUNS=N      runs per client and workload for the native clients (default 5;
                    the Python clients get min(N, 3), and one run for workload 5)
  BENCH_CLIENTS=a,b only these clients (curl raw ylokh ylokh-pull async-openai openai requests)
  BENCH_NO_WRITE=1  print the tables, leave BENCHMARKS.md and docs/bench.svg alone
  BENCH_NO_VALGRIND=1  skip the instruction and allocation counts

Only the standard library is used here; it runs on the system's python3.
"""

import datetime
import hashlib
import json
import os
import platform
import re
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
import urllib.request
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
BENCH = ROOT / "bench"
BUILD = BENCH / "build"
VENV = BENCH / ".venv"
AOA = BENCH / "async-openai"
LIBDIR = ROOT / "target" / "release"

QUICK = bool(os.environ.get("BENCH_QUICK"))
RUNS = 1 if QUICK else int(os.environ.get("BENCH_RUNS", "5"))
PY_RUNS = min(RUNS, 3)
WRITE = not os.environ.get("BENCH_NO_WRITE")
VALGRIND = not os.environ.get("BENCH_NO_VALGRIND")
SCALE = 10 if QUICK else 1

W1_TOKENS = 200_000 // SCALE
W2_CALLS = 2_000 // SCALE
W2_TOKENS = 20
W3_CALLS = 2_000 // SCALE
# A new openai client costs tens of milliseconds of CPU: fewer calls keep the run short,
# and the figures are per call anyway.
W3_CALLS_OPENAI = 300 // SCALE
W4_STREAMS = 32
W4_TOKENS = 5_000 // SCALE
W5_TOKENS = 1_000_000 // SCALE
# The pull API beside the callback API: 64 concurrent streams (64 threads with callbacks,
# or ONE thread polling 64 stream descriptors), and the memory of many replies at once.
W6_STREAMS = 64
W6_TOKENS = 5_000 // SCALE
W7_REPLIES = 1_000 // SCALE
W7_TOKENS = 2_000

ALL_CLIENTS = ["curl", "raw", "ylokh", "ylokh-pull", "async-openai", "openai", "requests"]
# The clients of workloads 6 and 7 (libylokh's two APIs).
YLOKH_APIS = ["ylokh", "ylokh-pull"]
CLIENTS = [c for c in os.environ.get("BENCH_CLIENTS", ",".join(ALL_CLIENTS)).split(",") if c]
PYTHON_CLIENTS = {"openai", "requests"}

MODEL = "gpt-4o-mini"
MESSAGES = [{"role": "user", "content": "Write a long story."}]


def log(*a):
    print(*a, file=sys.stderr, flush=True)


def sh(cmd, **kw):
    log("+", " ".join(str(c) for c in cmd))
    subprocess.run([str(c) for c in cmd], check=True, **kw)


def out(cmd):
    try:
        return subprocess.run(cmd, capture_output=True, text=True).stdout.strip()
    except OSError:
        return ""


# ---------------------------------------------------------------------------------------
# Setup
# ---------------------------------------------------------------------------------------


def ensure_tools():
    """What a fresh Debian machine may lack: a C compiler, curl, valgrind, venv."""
    missing = []
    if not shutil.which("cc") and not shutil.which("gcc"):
        missing.append("gcc")
    if not shutil.which("curl"):
        missing.append("curl")
    if VALGRIND and not shutil.which("valgrind"):
        missing.append("valgrind")
    if subprocess.run([sys.executable, "-c", "import venv, ensurepip"], capture_output=True).returncode:
        missing.append("python3-venv")
    if missing:
        if os.geteuid() != 0 or not shutil.which("apt-get"):
            sys.exit(f"bench: please install {' '.join(missing)}")
        env = dict(os.environ, DEBIAN_FRONTEND="noninteractive")
        sh(["apt-get", "update", "-qq"], env=env)
        sh(["apt-get", "install", "-y", "-qq", *missing], env=env)
    if not shutil.which("cargo"):
        sys.exit("bench: cargo is needed (https://rustup.rs)")


def cc():
    return shutil.which("cc") or shutil.which("gcc")


def build():
    BUILD.mkdir(exist_ok=True)
    sh(["cargo", "build", "--release", "--lib"], cwd=ROOT)
    sh([cc(), "-O2", "-std=c11", "-Wall", "-Wextra", "-pthread", BENCH / "blast" / "blast.c",
        "-o", BUILD / "blast"])
    sh([cc(), "-O2", "-std=c11", "-Wall", "-Wextra", BENCH / "c" / "runstat.c", "-o", BUILD / "runstat"])
    sh([cc(), "-O2", "-std=c11", "-Wall", "-Wextra", f"-I{ROOT / 'include'}",
        BENCH / "c" / "ylokh_bench.c", "-o", BUILD / "ylokh_bench", f"-L{LIBDIR}", "-lylokh",
        "-lpthread", f"-Wl,-rpath,{LIBDIR}"])
    if "async-openai" in CLIENTS:
        sh(["cargo", "build", "--release", "--locked"], cwd=AOA)
    if PYTHON_CLIENTS & set(CLIENTS):
        req = BENCH / "python" / "requirements.txt"
        stamp = VENV / ".requirements.sha256"
        digest = hashlib.sha256(req.read_bytes()).hexdigest()
        if not (VENV / "bin" / "python").exists():
            sh([sys.executable, "-m", "venv", VENV])
        if not stamp.exists() or stamp.read_text() != digest:
            sh([VENV / "bin" / "pip", "install", "-q", "--disable-pip-version-check", "-r", req])
            stamp.write_text(digest)


# ---------------------------------------------------------------------------------------
# The server
# ---------------------------------------------------------------------------------------


class Blast:
    def __init__(self):
        self.proc = subprocess.Popen([str(BUILD / "blast"), "0"], stdout=subprocess.PIPE, text=True)
        line = self.proc.stdout.readline()
        m = re.match(r"PORT (\d+)", line)
        if not m:
            self.stop()
            sys.exit(f"bench: blast did not start ({line!r})")
        self.port = int(m.group(1))
        self.base = f"http://127.0.0.1:{self.port}/v1"
        self.url = f"{self.base}/chat/completions"

    def stats(self):
        with urllib.request.urlopen(f"http://127.0.0.1:{self.port}/stats", timeout=10) as r:
            return json.loads(r.read())

    def stop(self):
        if self.proc.poll() is None:
            self.proc.terminate()
            try:
                self.proc.wait(5)
            except subprocess.TimeoutExpired:
                self.proc.kill()


# ---------------------------------------------------------------------------------------
# Clients
# ---------------------------------------------------------------------------------------


def spawn(cmd, env=None):
    """Runs `cmd` under bench/c/runstat; returns its stdout, wall seconds, CPU seconds and
    peak RSS (KiB), all of `cmd` alone."""
    err = tempfile.TemporaryFile()
    p = subprocess.run([str(BUILD / "runstat"), *[str(c) for c in cmd]], stdout=subprocess.PIPE,
                       stderr=err, env=env)
    err.seek(0)
    stderr = err.read().decode(errors="replace")
    err.close()
    if p.returncode != 0:
        raise RuntimeError(f"{cmd[0]} failed ({p.returncode}): {stderr[-2000:]}")
    m = re.search(r"RUNSTAT (\S+) (\S+) (\d+)\s*$", stderr)
    if not m:
        raise RuntimeError(f"no RUNSTAT line from {cmd[0]}: {stderr[-2000:]}")
    return p.stdout.decode(), float(m.group(2)), float(m.group(1)), int(m.group(3))


def body(tokens):
    return json.dumps({"model": MODEL, "messages": MESSAGES, "stream": True, "max_tokens": tokens})


CURL_W = "%{time_starttransfer} %{time_total} %{num_connects} %{size_download}\\n"


def curl_cmd(server, tokens, urls, extra=()):
    cfg = Path(tempfile.mkstemp(prefix="bench-curl-", suffix=".cfg")[1])
    cfg.write_text("".join(f'url = "{server.url}"\noutput = "/dev/null"\n' for _ in range(urls)))
    return cfg, ["curl", "-sN", "-K", cfg, "-H", "Content-Type: application/json",
                 "-H", "Authorization: Bearer sk-bench", "-d", body(tokens), "-w", CURL_W, *extra]


class CurlBaseline:
    """curl's own start-up (one request for an empty reply), subtracted from its runs so
    that its per-token and per-call figures count the transfer only."""

    def __init__(self, server):
        self.cpu, self.wall, self.rss = [], [], []
        for _ in range(max(RUNS, 3)):
            cfg, cmd = curl_cmd(server, 0, 1)
            _, wall, cpu, rss = spawn(cmd)
            cfg.unlink()
            self.cpu.append(cpu)
            self.wall.append(wall)
            self.rss.append(rss)

    def medians(self):
        return statistics.median(self.cpu), statistics.median(self.wall), statistics.median(self.rss)


def run_curl(server, baseline, workload, tokens, calls, streams):
    n = {"stream": 1, "seq": calls, "seqnew": calls, "concurrent": streams}[workload]
    extra = []
    if workload == "seqnew":
        extra = ["-H", "Connection: close"]
    if workload == "concurrent":
        extra = ["-Z", "--parallel-immediate", "--parallel-max", str(streams)]
    cfg, cmd = curl_cmd(server, tokens, n, extra)
    try:
        stdout, wall, cpu, rss = spawn(cmd)
    finally:
        cfg.unlink()
    lines = [line.split() for line in stdout.strip().splitlines()]
    ttfb = [float(x[0]) * 1e6 for x in lines]
    total = [float(x[1]) * 1e6 for x in lines]
    later = slice(1, None) if len(lines) > 1 else slice(None)
    b_cpu, b_wall, b_rss = baseline.medians()
    return {
        "calls": len(lines),
        "tokens": tokens * len(lines),
        "bytes": None,
        "cpu_s": max(cpu - b_cpu, 0.0),
        "wall_s": max(wall - b_wall, 0.0) if workload != "stream" else sum(total) / 1e6,
        "ttft_us": statistics.median(ttfb[later]),
        "call_us": statistics.median(total[later]),
        "rss_before_kb": b_rss,
        "hwm_after_kb": rss,
    }


def client_cmd(client, server, workload, tokens, calls, streams):
    args = ["--base-url", server.base, "--workload", workload, "--tokens", tokens,
            "--calls", calls, "--streams", streams]
    if client in ("ylokh", "ylokh-pull", "raw"):
        return [BUILD / "ylokh_bench", "--client", client, *args]
    if client == "async-openai":
        return [AOA / "target" / "release" / "ylokh-bench-async-openai", *args]
    return [VENV / "bin" / "python", BENCH / "python" / "clients.py", "--client", client, *args]


def run_one(client, server, baseline, workload, tokens, calls=1, streams=1):
    before = server.stats()
    if client == "curl":
        r = run_curl(server, baseline, workload, tokens, calls, streams)
    else:
        env = dict(os.environ)
        for k in ("HTTP_PROXY", "HTTPS_PROXY", "ALL_PROXY", "http_proxy", "https_proxy", "all_proxy"):
            env.pop(k, None)
        env["NO_PROXY"] = "127.0.0.1"
        stdout, _, _, _ = spawn(client_cmd(client, server, workload, tokens, calls, streams), env)
        r = json.loads(stdout.strip().splitlines()[-1])
    after = server.stats()
    r["connections"] = after["connections"] - before["connections"]
    r["requests"] = after["requests"] - before["requests"]
    want = r["calls"] * tokens
    if client == "raw":
        # It counts bytes, not tokens; the server sent `want`.
        r["tokens"] = want
    if r["tokens"] != want:
        log(f"WARNING: {client} {workload}: {r['tokens']} tokens, expected {want}")
    return r


def runs_for(client, workload):
    if client in PYTHON_CLIENTS:
        return 1 if workload == "memory" else PY_RUNS
    return min(RUNS, 3) if workload == "memory" else RUNS


def median_result(results):
    keys = ["cpu_s", "wall_s", "ttft_us", "call_us", "rss_before_kb", "hwm_after_kb",
            "connections", "requests", "tokens", "calls"]
    m = {k: statistics.median([r[k] for r in results]) for k in keys}
    m["runs"] = len(results)
    m["bytes"] = results[0].get("bytes")
    return m


def run_workload(name, server, baseline, workload, tokens, calls=1, streams=1, calls_for=None,
                 clients=None):
    log(f"== {name}")
    clients = [c for c in (clients or CLIENTS) if c in CLIENTS]
    plan = [(c, runs_for(c, workload)) for c in clients]
    results = {c: [] for c in clients}
    for rep in range(max(n for _, n in plan)):
        for client, n in plan:
            if rep < n:
                k = (calls_for or {}).get(client, calls)
                r = run_one(client, server, baseline, workload, tokens, k, streams)
                log(f"   {client:13} run {rep + 1}: cpu {r['cpu_s']:.4f}s wall {r['wall_s']:.4f}s "
                    f"ttft {r['ttft_us']:.0f}us conns {r['connections']} reqs {r['requests']}")
                results[client].append(r)
    return {c: median_result(rs) for c, rs in results.items() if rs}


def run_scale(server):
    """Workload 7: the resident memory of W7_REPLIES replies at once on one client, all
    mid-stream when it is sampled (callbacks: every thread holds in its first token's
    callback; pull: every stream has delivered a token and is not pulled further), minus
    that of one reply, per reply."""
    log("== workload 7: many replies at once")
    out = {}
    for client in [c for c in YLOKH_APIS if c in CLIENTS]:
        per_reply, mids = [], []
        for rep in range(min(RUNS, 3)):
            one = run_one(client, server, None, "scale", W7_TOKENS, streams=1)
            many = run_one(client, server, None, "scale", W7_TOKENS, streams=W7_REPLIES)
            per = (many["rss_mid_kb"] - one["rss_mid_kb"]) / (W7_REPLIES - 1)
            log(f"   {client:13} run {rep + 1}: one reply {one['rss_mid_kb']} KiB, "
                f"{W7_REPLIES} replies {many['rss_mid_kb']} KiB: {per:.1f} KiB per reply")
            per_reply.append(per)
            mids.append((one["rss_mid_kb"], many["rss_mid_kb"], many["connections"]))
        out[client] = {"per_reply_kb": statistics.median(per_reply),
                       "one_kb": statistics.median(m[0] for m in mids),
                       "many_kb": statistics.median(m[1] for m in mids),
                       "connections": statistics.median(m[2] for m in mids)}
    return out


# ---------------------------------------------------------------------------------------
# Valgrind: instructions and heap allocations per token (repeatable on a noisy machine)
# ---------------------------------------------------------------------------------------


def valgrind_counts(server):
    """Instructions (callgrind) and heap allocations (memcheck) of one reply of N tokens
    minus those of an empty reply, divided by N."""
    if not shutil.which("valgrind"):
        return None
    n = 20_000 // SCALE
    rows = {}

    def cmd(client, tokens):
        if client == "curl":
            return ["curl", "-sN", "-o", "/dev/null", "-H", "Content-Type: application/json",
                    "-d", body(tokens), server.url]
        return client_cmd(client, server, "stream", tokens, 1, 1)

    def measure(tool, client, tokens):
        extra = {"callgrind": ["--callgrind-out-file=/dev/null"], "memcheck": ["--leak-check=no"]}[tool]
        p = subprocess.run(["valgrind", f"--tool={tool}", *extra, *map(str, cmd(client, tokens))],
                           capture_output=True, text=True)
        if tool == "callgrind":
            m = re.search(r"Collected : (\d+)", p.stderr)
            return int(m.group(1)) if m else None
        m = re.search(r"total heap usage: ([\d,]+) allocs, [\d,]+ frees, ([\d,]+) bytes", p.stderr)
        return (int(m.group(1).replace(",", "")), int(m.group(2).replace(",", ""))) if m else None

    for client in [c for c in ["curl", "raw", "ylokh", "async-openai"] if c in CLIENTS]:
        log(f"== valgrind: {client}")
        i0, i1 = measure("callgrind", client, 0), measure("callgrind", client, n)
        a_small, a_big = measure("memcheck", client, n // 10), measure("memcheck", client, n)
        row = {}
        if i0 is not None and i1 is not None:
            row["instr_per_token"] = (i1 - i0) / n
        if a_small and a_big:
            row["allocs_small"], row["allocs_big"] = a_small[0], a_big[0]
            row["allocs_per_token"] = (a_big[0] - a_small[0]) / (n - n // 10)
        rows[client] = row
    return {"tokens": n, "rows": rows}


# ---------------------------------------------------------------------------------------
# Report
# ---------------------------------------------------------------------------------------


def versions():
    def pyver(pkg):
        v = out([str(VENV / "bin" / "python"), "-c", f"import importlib.metadata as m; print(m.version('{pkg}'))"])
        return v or "?"

    cpu = "?"
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                cpu = line.split(":", 1)[1].strip()
                break
    except OSError:
        pass
    lock = (AOA / "Cargo.lock").read_text() if (AOA / "Cargo.lock").exists() else ""
    m = re.search(r'name = "async-openai"\nversion = "([^"]+)"', lock)
    return {
        "date": datetime.datetime.now(datetime.timezone.utc).strftime("%Y-%m-%d %H:%M UTC"),
        "machine": f"{cpu}, {os.cpu_count()} cores, Linux {platform.release()}",
        "libylokh": re.search(r'^version = "([^"]+)"', (ROOT / "Cargo.toml").read_text(), re.M).group(1),
        "rustc": out(["rustc", "--version"]),
        "cc": out([cc(), "--version"]).splitlines()[0] if cc() else "?",
        "curl": out(["curl", "--version"]).splitlines()[0].split(" (")[0].removeprefix("curl "),
        "python": out([str(VENV / "bin" / "python"), "--version"]) if VENV.exists() else "?",
        "openai": pyver("openai") if VENV.exists() else "?",
        "requests": pyver("requests") if VENV.exists() else "?",
        "async-openai": m.group(1) if m else "?",
        "valgrind": out(["valgrind", "--version"]).removeprefix("valgrind-"),
    }


def label(client, v):
    return {
        "curl": f"curl {v['curl']} -sN (floor)",
        "raw": "raw socket read loop, C (reference)",
        "ylokh": f"libylokh {v['libylokh']} (C ABI)",
        "ylokh-pull": f"libylokh {v['libylokh']} pull API (C ABI)",
        "async-openai": f"async-openai {v['async-openai']} (Rust, tokio)",
        "openai": f"openai {v['openai']} (Python SDK)",
        "requests": f"requests {v['requests']} iter_lines + json.loads",
    }[client]


def fmt(x, digits=2):
    if x is None:
        return "–"
    if x >= 100:
        return f"{x:,.0f}"
    if x >= 10:
        return f"{x:.1f}"
    return f"{x:.{digits}f}"


def mib(kb):
    return kb / 1024


def table(header, rows):
    lines = ["| " + " | ".join(header) + " |", "|" + "|".join(" --- " if i == 0 else " ---: " for i in range(len(header))) + "|"]
    lines += ["| " + " | ".join(r) + " |" for r in rows]
    return "\n".join(lines)


def report(res, vg, v):
    w1, w2, w3, w4, w5 = res["w1"], res["w2"], res["w3"], res["w4"], res["w5"]
    floor = w1.get("curl")
    floor_cpu = floor["cpu_s"] / floor["tokens"] * 1e6 if floor else None
    md = []
    md.append(f"Measured {v['date']} on {v['machine']}; {v['rustc']}, {v['cc']}, {v['python']}. "
              f"Medians of {RUNS} runs (Python clients: {PY_RUNS}; workload 5: "
              f"{min(RUNS, 3)} and 1){' — QUICK MODE, not representative' if QUICK else ''}. "
              "CPU is user + system time of the client process only (the server runs apart).")
    md.append("")

    md.append(f"### Workload 1: one reply of {W1_TOKENS:,} tokens")
    md.append("")
    rows = []
    for c, r in w1.items():
        cpu_tok = r["cpu_s"] / r["tokens"] * 1e6
        rows.append([label(c, v), fmt(cpu_tok, 3), fmt(r["wall_s"] / r["tokens"] * 1e6, 3),
                     f"{r['tokens'] / r['wall_s']:,.0f}" if r["wall_s"] else "–",
                     f"{cpu_tok / floor_cpu:.2f}x" if floor_cpu else "–",
                     fmt(mib(r["hwm_after_kb"]), 1)])
    md.append(table(["client", "CPU µs/token", "wall µs/token", "tokens/s", "CPU vs curl", "peak RSS MiB"], rows))
    md.append("")

    def seq_table(w, title, calls_note):
        md.append(title)
        md.append("")
        base = w.get("curl")
        rows = []
        for c, r in w.items():
            rows.append([label(c, v), fmt(r["ttft_us"], 1),
                         f"{r['ttft_us'] - base['ttft_us']:+.1f}" if base else "–",
                         fmt(r["call_us"], 1), fmt(r["cpu_s"] / r["calls"] * 1e6, 1),
                         f"{r['connections']:.0f} / {r['requests']:.0f}"])
        md.append(table(["client", "TTFT µs", "TTFT − curl µs", "wall µs/call", "CPU µs/call",
                         "server: connections / requests"], rows))
        md.append("")
        md.append(calls_note)
        md.append("")

    seq_table(w2, f"### Workload 2: {W2_CALLS:,} sequential replies of {W2_TOKENS} tokens on one client",
              "TTFT: from the start of a call to its first token, median over the second and later "
              "calls. For curl it is `%{time_starttransfer}` (first byte of the reply; the blast "
              "server sends the head and the first tokens in one segment), for the raw C client the "
              "first byte read. curl runs all calls in one process (`-K` with one URL per call), "
              "so its connection is reused too; its start-up is subtracted from its CPU.")
    seq_table(w3, f"### Workload 3: the same with a new client per call",
              f"{W3_CALLS:,} calls ({W3_CALLS_OPENAI:,} for the openai SDK, whose client alone costs "
              "milliseconds to create; the figures are per call). curl sends `Connection: close`, "
              "so each call opens a connection, in one process.")

    md.append(f"### Workload 4: {W4_STREAMS} concurrent streams of {W4_TOKENS:,} tokens on one shared client")
    md.append("")
    f4 = w4.get("curl")
    f4_cpu = f4["cpu_s"] / f4["tokens"] * 1e6 if f4 else None
    rows = []
    for c, r in w4.items():
        cpu_tok = r["cpu_s"] / r["tokens"] * 1e6
        rows.append([label(c, v), fmt(cpu_tok, 3), fmt(r["wall_s"], 3),
                     f"{r['tokens'] / r['wall_s']:,.0f}" if r["wall_s"] else "–",
                     f"{cpu_tok / f4_cpu:.2f}x" if f4_cpu else "–",
                     fmt(mib(r["hwm_after_kb"]), 1), f"{r['connections']:.0f}"])
    md.append(table(["client", "CPU µs/token", "wall s", "tokens/s (all streams)", "CPU vs curl",
                     "peak RSS MiB", "connections"], rows))
    md.append("")
    md.append("curl: one process, `-Z --parallel-max 32`; libylokh: 32 threads; async-openai: 32 tokio "
              "tasks; openai: `AsyncOpenAI` and `asyncio.gather`; requests: 32 threads, one session.")
    md.append("")

    md.append("libylokh pull API: 32 streams pulled by ONE thread that `poll()`s their descriptors "
              "(`ylokh_stream_fd`, then `ylokh_stream_next` with wait 0).")
    md.append("")
    md.append(f"### Workload 5: peak memory while streaming {W5_TOKENS:,} tokens")
    md.append("")
    rows = []
    for c, r in w5.items():
        rows.append([label(c, v), fmt(mib(r["rss_before_kb"]), 2), fmt(mib(r["hwm_after_kb"]), 2),
                     fmt(mib(r["hwm_after_kb"] - r["rss_before_kb"]), 2)])
    md.append(table(["client", "RSS before the call MiB", "peak RSS (VmHWM) after MiB", "growth MiB"], rows))
    md.append("")
    md.append("Before: VmRSS just before the call, with the client built; after: VmHWM (the process's "
              "peak) when the call has returned. curl: its peak RSS for an empty reply, then for this one.")
    md.append("")

    w6, w7 = res.get("w6", {}), res.get("w7", {})
    if w6:
        md.append(f"### Workload 6: {W6_STREAMS} concurrent streams of {W6_TOKENS:,} tokens: "
                  f"{W6_STREAMS} threads with callbacks, or one thread with poll()")
        md.append("")
        rows = []
        for c, r in w6.items():
            rows.append([label(c, v), fmt(r["cpu_s"] / r["tokens"] * 1e6, 3), fmt(r["wall_s"], 3),
                         f"{r['tokens'] / r['wall_s']:,.0f}" if r["wall_s"] else "–",
                         fmt(mib(r["hwm_after_kb"]), 1), f"{r['connections']:.0f}"])
        md.append(table(["client", "CPU µs/token", "wall s", "tokens/s (all streams)", "peak RSS MiB",
                         "connections"], rows))
        md.append("")
    if w7:
        md.append(f"### Workload 7: {W7_REPLIES:,} replies of {W7_TOKENS:,} tokens at once on one client")
        md.append("")
        rows = []
        for c, r in w7.items():
            rows.append([label(c, v), fmt(mib(r["one_kb"]), 1), fmt(mib(r["many_kb"]), 1),
                         fmt(r["per_reply_kb"], 1)])
        md.append(table(["client", "RSS, 1 reply MiB", f"RSS, {W7_REPLIES:,} replies MiB",
                         "KiB per reply beyond the first"], rows))
        md.append("")
        md.append("Resident memory (VmRSS) sampled when every reply is mid-stream: with callbacks, "
                  f"{W7_REPLIES:,} threads (256 KiB stacks) each hold in their first token's callback; "
                  "with the pull API, one thread opens the streams and stops pulling each after its "
                  "first token (so each stream's queue fills to its bound). A reply's thread stack "
                  "(28 KiB touched) is counted in both.")
        md.append("")

    if vg:
        md.append(f"### Instructions and heap allocations per token (valgrind)")
        md.append("")
        rows = []
        for c, r in vg["rows"].items():
            rows.append([label(c, v), fmt(r.get("instr_per_token"), 1),
                         f"{r.get('allocs_small', '–'):,}" if "allocs_small" in r else "–",
                         f"{r.get('allocs_big', '–'):,}" if "allocs_big" in r else "–",
                         fmt(r.get("allocs_per_token"), 3)])
        n = vg["tokens"]
        md.append(table(["client", "instructions/token", f"heap allocs, {n // 10:,} tokens",
                         f"heap allocs, {n:,} tokens", "allocs/token"], rows))
        md.append("")
        md.append(f"Instructions: callgrind's total for a {n:,}-token reply minus that for an empty reply, "
                  f"divided by {n:,}. Allocations: memcheck's `total heap usage` (the whole process).")
        md.append("")

    # Targets.
    md.append("### Targets")
    md.append("")
    t = []
    y1 = w1.get("ylokh")
    if y1 and floor_cpu:
        y = y1["cpu_s"] / y1["tokens"] * 1e6

        def per(c):
            r = w1.get(c)
            return r["cpu_s"] / r["tokens"] * 1e6 if r else None

        t.append(("W1: CPU/token within 1.5x of curl", f"{y / floor_cpu:.2f}x", y / floor_cpu <= 1.5))
        if per("openai"):
            t.append(("W1: at least 50x less CPU than the openai SDK", f"{per('openai') / y:.0f}x less", per("openai") / y >= 50))
        if per("requests"):
            t.append(("W1: at least 4x less CPU than the requests loop", f"{per('requests') / y:.1f}x less", per("requests") / y >= 4))
        if per("async-openai"):
            t.append(("W1: less CPU than async-openai", f"{per('async-openai') / y:.1f}x less", y < per("async-openai")))
    p1 = w1.get("ylokh-pull")
    if y1 and p1:
        a, b = y1["cpu_s"] / y1["tokens"], p1["cpu_s"] / p1["tokens"]
        t.append(("W1: pull API CPU/token within 10% of the callback API's",
                  f"{b * 1e6:.3f} vs {a * 1e6:.3f} µs ({(b / a - 1) * 100:+.0f}%)", b <= a * 1.1))
    for c in YLOKH_APIS:
        r = res.get("w7", {}).get(c)
        if r:
            t.append((f"W7 ({'pull' if c == 'ylokh-pull' else 'callbacks'}): at most 64 KiB of RSS "
                      "per concurrent reply beyond the first", f"{r['per_reply_kb']:.1f} KiB",
                      r["per_reply_kb"] <= 64))
    y2, c2 = w2.get("ylokh"), w2.get("curl")
    if y2:
        t.append(("W2: later calls reuse the pooled connection",
                  f"{y2['connections']:.0f} connection(s) for {y2['requests']:.0f} requests", y2["connections"] <= 1))
    if y2 and c2:
        d = y2["ttft_us"] - c2["ttft_us"]
        t.append(("W2: TTFT within 100 µs of the floor's", f"{y2['ttft_us']:.1f} µs vs {c2['ttft_us']:.1f} µs ({d:+.1f} µs)", d <= 100))
    y5 = w5.get("ylokh")
    if y5:
        g = mib(y5["hwm_after_kb"] - y5["rss_before_kb"])
        t.append((f"W5: {W5_TOKENS:,} tokens cost under 4 MiB over the RSS before the call", f"{g:.2f} MiB", g < 4))
    if vg and "ylokh" in vg["rows"] and "allocs_per_token" in vg["rows"]["ylokh"]:
        a = vg["rows"]["ylokh"]["allocs_per_token"]
        t.append(("No heap allocation per token in the steady state",
                  f"{a:.4f} allocs/token (valgrind); tests/alloc.rs asserts it", a < 0.001))
    md.append(table(["target", "measured", "met"], [[a, b, "yes" if ok else "**no**"] for a, b, ok in t]))
    md.append("")
    md.append("Versions: " + ", ".join(f"{k} {v[k]}" for k in ("libylokh", "async-openai", "openai", "requests", "curl", "valgrind")) + ".")
    return "\n".join(md)


def chart(res, v):
    """A hand-written SVG: CPU per token (workload 1) and TTFT (workload 2), log scales."""
    import math

    panels = []
    w1 = res["w1"]
    panels.append((f"CPU time per token, one {W1_TOKENS:,}-token reply (µs, log scale; lower is better)",
                   [(label(c, v), r["cpu_s"] / r["tokens"] * 1e6, c) for c, r in w1.items()]))
    panels.append((f"Time to first token, {W2_CALLS:,} sequential {W2_TOKENS}-token replies on one client "
                   "(µs, log scale)", [(label(c, v), r["ttft_us"], c) for c, r in res["w2"].items()]))

    def num(x):
        return f"{x:,.0f}" if x >= 100 else f"{x:.3g}"
    width, left, right, bar, gap = 900, 330, 90, 22, 8
    colors = {"ylokh": "#d9480f", "ylokh-pull": "#f08c00", "curl": "#495057", "raw": "#adb5bd"}
    y = 40
    parts = []
    for title, rows in panels:
        rows = [r for r in rows if r[1] and r[1] > 0]
        if not rows:
            continue
        lo = 10 ** math.floor(math.log10(min(r[1] for r in rows)))
        hi = 10 ** math.ceil(math.log10(max(r[1] for r in rows)))
        span = math.log10(hi) - math.log10(lo) or 1
        scale = lambda x: left + (width - left - right) * (math.log10(x) - math.log10(lo)) / span
        parts.append(f'<text x="10" y="{y}" font-size="15" font-weight="bold">{title}</text>')
        y += 14
        top = y
        bottom = top + len(rows) * (gap + bar)
        decade = lo
        while decade <= hi:
            x = scale(decade)
            parts.append(f'<line x1="{x:.1f}" y1="{top}" x2="{x:.1f}" y2="{bottom + 4}" stroke="#ced4da" stroke-dasharray="3,3"/>')
            parts.append(f'<text x="{x:.1f}" y="{bottom + 18}" font-size="11" text-anchor="middle" fill="#868e96">{decade:g}</text>')
            decade *= 10
        for name, value, c in rows:
            y += gap
            x1 = scale(value)
            color = colors.get(c, "#4c6ef5")
            parts.append(f'<text x="{left - 8}" y="{y + bar * 0.7:.1f}" font-size="13" text-anchor="end">{name}</text>')
            parts.append(f'<rect x="{left}" y="{y}" width="{max(x1 - left, 1):.1f}" height="{bar}" fill="{color}"/>')
            parts.append(f'<text x="{x1 + 5:.1f}" y="{y + bar * 0.7:.1f}" font-size="13">{num(value)}</text>')
            y += bar
        y += 50
    height = y
    svg = [f'<svg xmlns="http://www.w3.org/2000/svg" width="{width}" height="{height}" '
           f'viewBox="0 0 {width} {height}" font-family="DejaVu Sans, Arial, sans-serif">',
           f'<rect width="{width}" height="{height}" fill="white"/>', *parts,
           f'<text x="10" y="{height - 12}" font-size="11" fill="#868e96">libylokh streaming benchmark, '
           f'{v["date"]}, {v["machine"]} (make bench; see BENCHMARKS.md)</text>', "</svg>"]
    return "\n".join(svg) + "\n"


BEGIN, END = "<!-- bench:begin (written by bench/run.py) -->", "<!-- bench:end -->"


def write_benchmarks(md):
    path = ROOT / "BENCHMARKS.md"
    text = path.read_text() if path.exists() else f"# Benchmarks\n\n{BEGIN}\n{END}\n"
    if BEGIN not in text or END not in text:
        text += f"\n{BEGIN}\n{END}\n"
    head, rest = text.split(BEGIN, 1)
    _, tail = rest.split(END, 1)
    path.write_text(f"{head}{BEGIN}\n{md}\n{END}{tail}")


def main():
    started = time.time()
    ensure_tools()
    build()
    server = Blast()
    try:
        baseline = CurlBaseline(server) if "curl" in CLIENTS else None
        res = {
            "w1": run_workload("workload 1: one long reply", server, baseline, "stream", W1_TOKENS),
            "w2": run_workload("workload 2: sequential calls, one client", server, baseline, "seq",
                               W2_TOKENS, calls=W2_CALLS),
            "w3": run_workload("workload 3: sequential calls, new client each", server, baseline, "seqnew",
                               W2_TOKENS, calls=W3_CALLS, calls_for={"openai": W3_CALLS_OPENAI}),
            "w4": run_workload("workload 4: concurrent streams", server, baseline, "concurrent",
                               W4_TOKENS, streams=W4_STREAMS),
            "w5": run_memory(server, baseline),
            "w6": run_workload(f"workload 6: {W6_STREAMS} concurrent streams, callbacks or poll()",
                               server, baseline, "concurrent", W6_TOKENS, streams=W6_STREAMS,
                               clients=YLOKH_APIS),
            "w7": run_scale(server),
        }
        vg = valgrind_counts(server) if VALGRIND else None
    finally:
        server.stop()
    v = versions()
    md = report(res, vg, v)
    print()
    print(md)
    if WRITE:
        write_benchmarks(md)
        (ROOT / "docs").mkdir(exist_ok=True)
        (ROOT / "docs" / "bench.svg").write_text(chart(res, v))
        log(f"wrote BENCHMARKS.md and docs/bench.svg")
    log(f"bench: done in {time.time() - started:.0f} s")


def run_memory(server, baseline):
    """Workload 5 is workload 1's program with a longer reply, run fewer times."""
    log("== workload 5: memory")
    results = {c: [] for c in CLIENTS}
    plan = [(c, runs_for(c, "memory")) for c in CLIENTS]
    for rep in range(max(n for _, n in plan)):
        for client, n in plan:
            if rep < n:
                r = run_one(client, server, baseline, "stream", W5_TOKENS)
                log(f"   {client:13} run {rep + 1}: rss before {r['rss_before_kb']} KiB, "
                    f"peak after {r['hwm_after_kb']} KiB, cpu {r['cpu_s']:.3f}s")
                results[client].append(r)
    return {c: median_result(rs) for c, rs in results.items() if rs}


if __name__ == "__main__":
    main()
