#!/usr/bin/env bash
# Run CMD [ARGS...] through a LiteLLM proxy in front of the server YLOKH_BASE_URL points at.
#
#   scripts/with-model-server.sh scripts/with-litellm.sh cargo test --test e2e -- --ignored
#
# Starts the proxy (scripts/setup-litellm.sh installs it) on 127.0.0.1, with every model
# name routed to the upstream server and a master key; runs CMD with YLOKH_BASE_URL set to
# the proxy, YLOKH_API_KEY to its key and YLOKH_UPSTREAM_URL to the server behind it; stops
# the proxy and exits with CMD's status.
#
# Environment: YLOKH_LITELLM_TIMEOUT seconds to wait for the proxy (default 300; it took
# 86 s to answer on a 2-core machine under a load of 20), YLOKH_LITELLM_LOG its log file
# (default .cache/litellm.log).
set -euo pipefail

if [[ $# -eq 0 || -z "${YLOKH_BASE_URL:-}" ]]; then
    echo "usage: YLOKH_BASE_URL=http://upstream/v1 $0 CMD [ARGS...]" >&2
    exit 2
fi

repo="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
timeout="${YLOKH_LITELLM_TIMEOUT:-300}"
log="${YLOKH_LITELLM_LOG:-$repo/.cache/litellm.log}"
mkdir -p "$(dirname "$log")"
venv="$("$repo/scripts/setup-litellm.sh")"

work="$(mktemp -d)"
port="$("$venv/bin/python" -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])')"
key="sk-ylokh-e2e-$(od -An -N8 -tx8 /dev/urandom | tr -d ' ')"
cat >"$work/config.yaml" <<YAML
model_list:
  - model_name: "*"
    litellm_params:
      model: "openai/*"
      api_base: "$YLOKH_BASE_URL"
      api_key: "none"
litellm_settings:
  telemetry: false
  num_retries: 0
  request_timeout: 120
general_settings:
  master_key: "$key"
YAML

# Nothing leaves the machine: the model price list comes from the installed package.
LITELLM_LOCAL_MODEL_COST_MAP=True LITELLM_LOG=ERROR \
    "$venv/bin/litellm" --config "$work/config.yaml" --host 127.0.0.1 --port "$port" \
    --num_workers 1 >"$log" 2>&1 </dev/null &
proxy_pid=$!

# shellcheck disable=SC2317  # invoked via trap
stop_proxy() {
    kill -TERM "$proxy_pid" 2>/dev/null || true
    for _ in $(seq 100); do
        kill -0 "$proxy_pid" 2>/dev/null || break
        sleep 0.1
    done
    kill -KILL "$proxy_pid" 2>/dev/null || true
    rm -rf "$work"
}
trap stop_proxy EXIT
trap 'exit 130' INT
trap 'exit 143' TERM

started=$SECONDS
until "$venv/bin/python" - "$port" <<'PY' 2>/dev/null
import sys, urllib.request
urllib.request.urlopen(f"http://127.0.0.1:{sys.argv[1]}/health/liveliness", timeout=2).read()
PY
do
    if ! kill -0 "$proxy_pid" 2>/dev/null || (( SECONDS - started > timeout )); then
        echo "with-litellm: the proxy did not come up within ${timeout}s; last lines of $log:" >&2
        tail -n 30 "$log" >&2 || true
        exit 1
    fi
    sleep 0.5
done
echo "with-litellm: LiteLLM on 127.0.0.1:$port in front of $YLOKH_BASE_URL ($((SECONDS - started)) s to start)" >&2

export YLOKH_UPSTREAM_URL="$YLOKH_BASE_URL"
export YLOKH_BASE_URL="http://127.0.0.1:$port/v1"
export YLOKH_API_KEY="$key"
set +e
"$@"
status=$?
set -e
exit "$status"
