#!/usr/bin/env bash
# Create the virtual environment of the LiteLLM proxy used by the end-to-end tests
# (scripts/with-litellm.sh) and print its path.
#
# Its own venv, not the model server's .venv: LiteLLM brings ~115 packages the model server
# does not need. It lives in ${YLOKH_CACHE:-$HOME/.cache/libylokh}, outside the checkout,
# named by a hash of the pins and the interpreter, so fresh clones (CI) reuse it: about a
# minute the first time, nothing after. Idempotent and safe to run concurrently.
set -euo pipefail

repo="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
pins="$repo/scripts/litellm-requirements.txt"
python="${PYTHON:-python3}"
cache="${YLOKH_CACHE:-$HOME/.cache/libylokh}"

if ! "$python" -c 'import venv, ensurepip' >/dev/null 2>&1; then
    echo "setup-litellm: '$python' cannot create virtual environments; on Debian: apt-get install -y python3-venv" >&2
    exit 1
fi
key="$( { "$python" -c 'import sys; print(sys.executable, sys.version)'; cat "$pins"; } | sha256sum | cut -c1-16)"
venv="$cache/litellm-$key"
stamp="$venv/.ylokh-ready"
if [[ -f "$stamp" ]]; then
    echo "$venv"
    exit 0
fi

mkdir -p "$cache"
exec 9>"$cache/litellm.lock"
flock 9
if [[ ! -f "$stamp" ]]; then
    echo "setup-litellm: creating $venv" >&2
    rm -rf "$venv"
    "$python" -m venv "$venv"
    "$venv/bin/python" -m pip install --quiet --disable-pip-version-check --no-input \
        --no-deps -r "$pins" >&2
    # Fail here, not when the tests start it.
    LITELLM_LOCAL_MODEL_COST_MAP=True "$venv/bin/python" -c 'import litellm.proxy.proxy_server' >&2
    touch "$stamp"
    echo "setup-litellm: ready" >&2
fi
echo "$venv"
