#!/usr/bin/env python3
"""Interleaved A/B runs of workload 1 (one reply of TOKENS tokens), for comparing builds
or the two APIs on a noisy machine.

    python3 bench/ab.py TOKENS RUNS SPEC [SPEC ...]

SPEC is a `ylokh_bench` client (ylokh, ylokh-pull, raw), optionally followed by
@LIBDIR to load that directory's libylokh.so instead of target/release's (an older
build: `git worktree add /tmp/old REV && cargo build --release` there). Runs go round
robin, RUNS times, so slow spells of the machine fall on every SPEC alike. The blast
server runs on the last CPU and the clients on the others (with at least 2 CPUs), so
that the server's work never lands on the measured process's core. Prints each SPEC's
median and lowest CPU (user + system) per token, and how it compares with the first SPEC:
the median over rounds of the ratio within a round (runs next to each other in time),
which a slow spell of the machine moves less than the ratio of the medians.

Needs the benchmark's build (`make bench`, or bench/run.py's build()). Standard library
only.
"""

import os
import re
import statistics
import subprocess
import sys
from pathlib import Path

BUILD = Path(__file__).resolve().parent / "build"


def pinned(cpus):
    return (lambda: os.sched_setaffinity(0, cpus)) if cpus else None


def main():
    if len(sys.argv) < 4:
        sys.exit(__doc__)
    tokens, runs, specs = int(sys.argv[1]), int(sys.argv[2]), sys.argv[3:]
    cpus = sorted(os.sched_getaffinity(0))
    server_cpus, client_cpus = ({cpus[-1]}, set(cpus[:-1])) if len(cpus) > 1 else (None, None)
    server = subprocess.Popen([str(BUILD / "blast"), "0"], stdout=subprocess.PIPE, text=True,
                              preexec_fn=pinned(server_cpus))
    port = int(re.match(r"PORT (\d+)", server.stdout.readline()).group(1))
    cpu = {spec: [] for spec in specs}
    try:
        for _ in range(runs):
            for spec in specs:
                client, _, libdir = spec.partition("@")
                env = dict(os.environ, NO_PROXY="127.0.0.1")
                if libdir:
                    env["LD_LIBRARY_PATH"] = libdir
                p = subprocess.run(
                    [str(BUILD / "runstat"), str(BUILD / "ylokh_bench"), "--client", client,
                     "--base-url", f"http://127.0.0.1:{port}/v1", "--workload", "stream",
                     "--tokens", str(tokens)],
                    capture_output=True, text=True, env=env, preexec_fn=pinned(client_cpus))
                m = re.search(r"RUNSTAT (\S+) (\S+) (\d+)", p.stderr)
                if p.returncode != 0 or not m:
                    sys.exit(f"{spec} failed: {p.stderr[-2000:]}")
                cpu[spec].append(float(m.group(1)) / tokens * 1e6)
    finally:
        server.terminate()
    for spec in specs:
        ratio = statistics.median(a / b for a, b in zip(cpu[spec], cpu[specs[0]]))
        print(f"{spec}: median {statistics.median(cpu[spec]):.3f} µs/token, lowest "
              f"{min(cpu[spec]):.3f}, {ratio * 100 - 100:+.1f}% against {specs[0]} round by round")


if __name__ == "__main__":
    main()
