#!/usr/bin/env bash
# Installs what `make test` needs and a fresh Debian 12 machine lacks; does nothing (in well
# under a second) when everything is there. `make test` runs it first, and `.ci/run` is only
# a call of `make test`, so a new user and CI install the same things the same way.
#
# System packages come from apt (as root, or through sudo when it is there); Rust components
# from rustup; cargo-fuzz from crates.io with cargo, pinned. Set YLOKH_SKIP_DEPS=1 to skip
# this script (for a machine you manage yourself); what is missing then fails the test that
# needs it, naming the package.
#
# To add a dependency: one line in NEEDS below (a command that succeeds when it is present,
# then the Debian package that provides it).
set -euo pipefail

if [[ "${YLOKH_SKIP_DEPS:-}" == 1 ]]; then
    exit 0
fi

# "check|package": the check is run with bash; the package is installed when it fails.
NEEDS=(
    "command -v cc|gcc"
    "command -v g++|g++"
    "command -v make|make"
    "command -v pkg-config|pkg-config"
    "command -v nm && command -v readelf && command -v strip && command -v objcopy|binutils"
    "command -v cmake|cmake"
    "command -v go && command -v gofmt|golang-go"
    "command -v valgrind|valgrind"
    "command -v abidw && command -v abidiff|abigail-tools"
    "command -v man|man-db"
    "python3 -c 'import venv, ensurepip'|python3-venv"
    # xllamacpp's native library (the local model of the end-to-end tests) links OpenMP's runtime.
    "ldconfig -p | grep -q 'libgomp\\.so\\.1'|libgomp1"
    # The Windows build (make windows) and its tests under Wine (tests/windows.rs).
    "command -v x86_64-w64-mingw32-gcc && command -v x86_64-w64-mingw32-dlltool|gcc-mingw-w64-x86-64-posix"
    "test -x /usr/lib/wine/wine64|wine64"
    "command -v wine|wine"
    # The Debian trixie root the Swift package is built and tested in (scripts/swift-root.sh).
    "command -v debootstrap|debootstrap"
)

missing=()
for need in "${NEEDS[@]}"; do
    check=${need%|*}
    package=${need##*|}
    if ! bash -c "$check" >/dev/null 2>&1; then
        missing+=("$package")
    fi
done

if ((${#missing[@]})); then
    echo "install-deps: installing ${missing[*]}" >&2
    if [[ $(id -u) == 0 ]]; then
        as_root=()
    elif command -v sudo >/dev/null; then
        as_root=(sudo)
    else
        echo "install-deps: run as root: apt-get install ${missing[*]}" >&2
        exit 1
    fi
    export DEBIAN_FRONTEND=noninteractive
    "${as_root[@]}" apt-get update -qq
    "${as_root[@]}" apt-get install -y -qq --no-install-recommends "${missing[@]}"
fi

if ! command -v cargo >/dev/null; then
    echo "install-deps: Rust is missing: install it with rustup (https://rustup.rs), stable 1.85 or newer" >&2
    exit 1
fi
cargo fmt --version >/dev/null 2>&1 || rustup component add rustfmt
cargo clippy --version >/dev/null 2>&1 || rustup component add clippy
# The fuzz targets (make fuzz). Pinned: newer releases may need a newer rustc.
if ! cargo fuzz --version 2>/dev/null | grep -q '0\.13\.2'; then
    cargo install cargo-fuzz --locked --version 0.13.2
fi
# The Windows build's Rust standard library (make windows, tests/windows.rs).
if ! rustup target list --installed 2>/dev/null | grep -qx x86_64-pc-windows-gnu; then
    rustup target add x86_64-pc-windows-gnu
fi
# Swift: a Debian trixie root with swiftlang, made once (about 2.5 minutes, 2.6 GB) and cached
# in ${YLOKH_CACHE:-$HOME/.cache/libylokh}/swift-root; it needs root (debootstrap, chroot).
if [[ $(id -u) == 0 ]]; then
    "$(dirname "$0")/swift-root.sh" setup
elif command -v sudo >/dev/null; then
    sudo env YLOKH_CACHE="${YLOKH_CACHE:-$HOME/.cache/libylokh}" "$(dirname "$0")/swift-root.sh" setup
else
    echo "install-deps: the Swift tests need root: run scripts/swift-root.sh setup as root" >&2
    exit 1
fi
