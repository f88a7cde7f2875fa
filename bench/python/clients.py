"""Python clients for the benchmark: the official `openai` SDK and a `requests` loop.

    python clients.py --client openai|requests --base-url URL --workload W
                      [--tokens N] [--calls K] [--streams S]

Same workloads and the same one-line JSON output as bench/c/ylokh_bench.c. CPU time is
this process's (all threads), measured around the calls only, so interpreter start-up and
imports are not counted.

- openai: `client.chat.completions.create(..., stream=True)` and a loop over the chunks,
  reading `chunk.choices[0].delta.content`; `concurrent` uses `AsyncOpenAI` and
  `asyncio.gather`, as one would for concurrency.
- requests: `Session.post(..., stream=True)`, `iter_lines()` and `json.loads` of each
  `data:` line, as the original Python provider read the stream; `concurrent` uses threads
  sharing one session (pool size raised to fit).
"""

import argparse
import json
import resource
import sys
import threading
import time

MESSAGES = [{"role": "user", "content": "Write a long story."}]
MODEL = "gpt-4o-mini"


def cpu_s():
    ru = resource.getrusage(resource.RUSAGE_SELF)
    return ru.ru_utime + ru.ru_stime


def status_kb(field):
    with open("/proc/self/status") as f:
        for line in f:
            if line.startswith(field):
                return int(line.split()[1])
    return 0


class Call:
    __slots__ = ("tokens", "bytes", "ttft", "total")

    def __init__(self):
        self.tokens = 0
        self.bytes = 0
        self.ttft = 0.0
        self.total = 0.0


# ---- openai ----

def openai_client(base_url):
    import openai

    return openai.OpenAI(base_url=base_url, api_key="sk-bench", max_retries=0)


def openai_call(client, tokens):
    call = Call()
    start = time.perf_counter()
    stream = client.chat.completions.create(
        model=MODEL, messages=MESSAGES, max_tokens=tokens, stream=True
    )
    for chunk in stream:
        if not chunk.choices:
            continue
        choice = chunk.choices[0]
        if choice.index != 0:
            continue
        text = choice.delta.content
        if text:
            if call.tokens == 0:
                call.ttft = time.perf_counter() - start
            call.tokens += 1
            call.bytes += len(text.encode())
    call.total = time.perf_counter() - start
    return call


async def openai_async_call(client, tokens):
    call = Call()
    start = time.perf_counter()
    stream = await client.chat.completions.create(
        model=MODEL, messages=MESSAGES, max_tokens=tokens, stream=True
    )
    async for chunk in stream:
        if not chunk.choices:
            continue
        choice = chunk.choices[0]
        if choice.index != 0:
            continue
        text = choice.delta.content
        if text:
            if call.tokens == 0:
                call.ttft = time.perf_counter() - start
            call.tokens += 1
            call.bytes += len(text.encode())
    call.total = time.perf_counter() - start
    return call


def openai_concurrent(base_url, tokens, streams):
    import asyncio

    import openai

    async def main():
        client = openai.AsyncOpenAI(base_url=base_url, api_key="sk-bench", max_retries=0)
        calls = await asyncio.gather(*(openai_async_call(client, tokens) for _ in range(streams)))
        await client.close()
        return calls

    return asyncio.run(main())


# ---- requests ----

def requests_client(base_url, pool=10):
    import requests
    import requests.adapters

    session = requests.Session()
    adapter = requests.adapters.HTTPAdapter(pool_connections=pool, pool_maxsize=pool)
    session.mount("http://", adapter)
    session.base = base_url
    return session


def requests_call(session, tokens):
    call = Call()
    start = time.perf_counter()
    body = {
        "model": MODEL,
        "messages": MESSAGES,
        "max_tokens": tokens,
        "stream": True,
    }
    with session.post(
        session.base + "/chat/completions",
        json=body,
        headers={"Authorization": "Bearer sk-bench"},
        stream=True,
    ) as r:
        r.raise_for_status()
        for line in r.iter_lines():
            if not line.startswith(b"data: "):
                continue
            data = line[6:]
            if data == b"[DONE]":
                # Only the end of the body is left; reading it lets the connection be reused.
                continue
            chunk = json.loads(data)
            choices = chunk.get("choices")
            if not choices:
                continue
            text = choices[0].get("delta", {}).get("content")
            if text:
                if call.tokens == 0:
                    call.ttft = time.perf_counter() - start
                call.tokens += 1
                call.bytes += len(text.encode())
    call.total = time.perf_counter() - start
    return call


def run(args):
    kind = args.client
    if kind == "openai":
        make, one = openai_client, openai_call
    elif kind == "requests":
        make, one = requests_client, requests_call
    else:
        sys.exit(f"unknown client {kind}")
    # Import outside the measured region.
    __import__(kind)
    shared = make(args.base_url) if args.workload != "seqnew" else None
    if kind == "requests" and args.workload == "concurrent":
        shared = requests_client(args.base_url, pool=args.streams)
    rss_before = status_kb("VmRSS:")
    c0, w0 = cpu_s(), time.perf_counter()
    calls = []
    if args.workload == "stream":
        calls.append(one(shared, args.tokens))
    elif args.workload == "seq":
        for _ in range(args.calls):
            calls.append(one(shared, args.tokens))
    elif args.workload == "seqnew":
        for _ in range(args.calls):
            c = make(args.base_url)
            calls.append(one(c, args.tokens))
            c.close()
    elif args.workload == "concurrent":
        if kind == "openai":
            calls = openai_concurrent(args.base_url, args.tokens, args.streams)
        else:
            out = [None] * args.streams
            start_line = threading.Barrier(args.streams)

            def worker(i):
                start_line.wait()
                out[i] = one(shared, args.tokens)

            threads = [threading.Thread(target=worker, args=(i,)) for i in range(args.streams)]
            for t in threads:
                t.start()
            for t in threads:
                t.join()
            calls = out
    else:
        sys.exit(f"unknown workload {args.workload}")
    wall = time.perf_counter() - w0
    cpu = cpu_s() - c0
    hwm_after = status_kb("VmHWM:")
    later = calls[1:] if len(calls) > 1 else calls

    def median(values):
        values = sorted(values)
        return values[len(values) // 2] if values else 0.0

    print(
        json.dumps(
            {
                "client": kind,
                "calls": len(calls),
                "tokens": sum(c.tokens for c in calls),
                "bytes": sum(c.bytes for c in calls),
                "cpu_s": round(cpu, 6),
                "wall_s": round(wall, 6),
                "ttft_us": round(median([c.ttft * 1e6 for c in later]), 1),
                "call_us": round(median([c.total * 1e6 for c in later]), 1),
                "rss_before_kb": rss_before,
                "hwm_after_kb": hwm_after,
            }
        ),
        flush=True,
    )


def main():
    p = argparse.ArgumentParser()
    p.add_argument("--client", required=True)
    p.add_argument("--base-url", required=True)
    p.add_argument("--workload", default="stream")
    p.add_argument("--tokens", type=int, default=20)
    p.add_argument("--calls", type=int, default=1)
    p.add_argument("--streams", type=int, default=1)
    run(p.parse_args())


if __name__ == "__main__":
    main()
