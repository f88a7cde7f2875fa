#!/usr/bin/env bash
# Run CMD [ARGS...] with YLOKH_BASE_URL pointing at a local model server.
#
#   scripts/with-model-server.sh cargo test --test live
#
# If YLOKH_BASE_URL is already set, CMD runs against that server as is.
# Otherwise this sets up .venv, starts scripts/model_server.py, exports
# YLOKH_BASE_URL, runs CMD, stops the server, and exits with CMD's status.
#
# Environment:
#   YLOKH_MODEL_SERVER_ARGS     extra options for model_server.py (word-split),
#                               e.g. "--n-parallel 2 --ctx 1024"
#   YLOKH_MODEL_SERVER_TIMEOUT  seconds to wait for the server (default 180)
#   YLOKH_MODEL_SERVER_LOG      server log file (default .cache/model-server.log)
set -euo pipefail

if [[ $# -eq 0 ]]; then
    echo "usage: $0 CMD [ARGS...]" >&2
    exit 2
fi

if [[ -n "${YLOKH_BASE_URL:-}" ]]; then
    exec "$@"
fi

repo="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
timeout="${YLOKH_MODEL_SERVER_TIMEOUT:-180}"
log="${YLOKH_MODEL_SERVER_LOG:-$repo/.cache/model-server.log}"
mkdir -p "$(dirname "$log")"

"$repo/scripts/setup-venv.sh"

# A coprocess gives the server a stdin pipe whose write end only this shell
# holds (bash does not pass coproc fds on to CMD). If this shell dies, even by
# SIGKILL, the pipe closes and the server stops on EOF. Its stdout is a pipe
# we read the base-URL line from; its log goes to a file to keep CMD's output
# readable.
# shellcheck disable=SC2086  # YLOKH_MODEL_SERVER_ARGS is meant to be split
coproc SERVER {
    exec "$repo/.venv/bin/python" "$repo/scripts/model_server.py" \
        ${YLOKH_MODEL_SERVER_ARGS:-} 2>"$log"
}
# shellcheck disable=SC2153  # SERVER_PID is set by coproc
server_pid=$SERVER_PID
server_out=${SERVER[0]}
server_in=${SERVER[1]}

# shellcheck disable=SC2317  # invoked via trap
stop_server() {
    # Closing stdin is the polite stop; SIGTERM covers a server not yet
    # reading it; SIGKILL a server stuck for 20 s.
    exec {server_in}>&- 2>/dev/null || true
    kill -TERM "$server_pid" 2>/dev/null || true
    for _ in $(seq 200); do
        kill -0 "$server_pid" 2>/dev/null || return 0
        sleep 0.1
    done
    echo "with-model-server: server did not stop, killing it" >&2
    kill -KILL "$server_pid" 2>/dev/null || true
}
trap stop_server EXIT
# Make INT/TERM/HUP go through the EXIT trap too.
trap 'exit 130' INT
trap 'exit 143' TERM
trap 'exit 129' HUP

line=""
read_status=0
read -r -t "$timeout" -u "$server_out" line || read_status=$?
if [[ $read_status -ne 0 || "$line" != YLOKH_BASE_URL=http* ]]; then
    if [[ $read_status -gt 128 ]]; then
        echo "with-model-server: the model server did not report its URL within ${timeout}s" >&2
    else
        echo "with-model-server: the model server exited or printed something else (got: '${line}')" >&2
    fi
    echo "with-model-server: last lines of $log:" >&2
    tail -n 30 "$log" >&2 || true
    exit 1
fi
export YLOKH_BASE_URL="${line#YLOKH_BASE_URL=}"
echo "with-model-server: YLOKH_BASE_URL=$YLOKH_BASE_URL (server log: $log)" >&2

status=0
"$@" || status=$?
if [[ $status -ne 0 ]]; then
    echo "with-model-server: command exited with $status; last lines of $log:" >&2
    tail -n 30 "$log" >&2 || true
fi
exit "$status"
