#!/usr/bin/env bash
# A Debian trixie root with Swift, for building and testing swift/ on a Debian 12 machine.
#
#   scripts/swift-root.sh setup          make the root once (about 3.4 GB; cached)
#   scripts/swift-root.sh run CMD [ARG]  run CMD inside the root, in the current directory
#
# Why a root: Debian 12 has no Swift toolchain; Debian 13 ("trixie") ships `swiftlang`
# (Swift 6.0), which needs trixie's newer glibc, so it runs only inside a trixie root.
# A library built on the host (older glibc) loads fine inside it.
#
# The root lives outside the checkout, in ${YLOKH_CACHE:-$HOME/.cache/libylokh}/swift-root,
# and is reused by every later run; a stamp file marks it complete, so an interrupted setup
# starts again from scratch. Needs root (debootstrap, chroot) and Debian's `debootstrap`.
#
# `run` enters a private mount namespace (unshare -m) before bind-mounting /proc, /dev and
# the directories the command needs into the root, so the mounts vanish when the command
# ends, however it ends (even SIGKILL), and two runs at once do not see each other's.
# Extra directories to bind (same path inside): YLOKH_SWIFT_BINDS="dir1 dir2".
set -euo pipefail

cache="${YLOKH_CACHE:-$HOME/.cache/libylokh}"
root="$cache/swift-root"
stamp="$root/.ylokh-swift-root"
# What the stamp records: change it to rebuild every cached root.
want="trixie swiftlang pkg-config libc6-dev v1"
mirror="${YLOKH_DEBIAN_MIRROR:-http://deb.debian.org/debian}"

die() { echo "swift-root: $*" >&2; exit 1; }

setup() {
    if [[ -f "$stamp" && "$(cat "$stamp")" == "$want" ]]; then
        return 0
    fi
    [[ $(id -u) -eq 0 ]] || die "setup needs root (debootstrap and chroot)"
    command -v debootstrap >/dev/null || die "debootstrap is missing (apt-get install debootstrap)"
    local start=$SECONDS
    local tmp="$root.partial"
    # A lock: two first runs at once must not build the same root.
    mkdir -p "$cache"
    exec 9>"$cache/swift-root.lock"
    flock 9
    if [[ -f "$stamp" && "$(cat "$stamp")" == "$want" ]]; then
        return 0
    fi
    rm -rf "$tmp" "$root"
    echo "swift-root: debootstrap trixie into $tmp (once; about 3.4 GB with Swift)" >&2
    debootstrap --variant=minbase trixie "$tmp" "$mirror" >"$cache/swift-root.debootstrap.log" 2>&1 \
        || { tail -n 30 "$cache/swift-root.debootstrap.log" >&2; die "debootstrap failed (log: $cache/swift-root.debootstrap.log)"; }
    echo "swift-root: installing swiftlang in the root" >&2
    in_root "$tmp" "" env DEBIAN_FRONTEND=noninteractive sh -c \
        'apt-get update -qq && apt-get install -y -qq --no-install-recommends swiftlang pkg-config libc6-dev ca-certificates && apt-get clean' \
        >"$cache/swift-root.apt.log" 2>&1 \
        || { tail -n 30 "$cache/swift-root.apt.log" >&2; die "installing swiftlang in the root failed (log: $cache/swift-root.apt.log)"; }
    in_root "$tmp" "" swift --version >&2
    echo "$want" >"$tmp/.ylokh-swift-root"
    mv "$tmp" "$root"
    echo "swift-root: ready in $((SECONDS - start)) s" >&2
}

# in_root ROOT WORKDIR CMD...: CMD in ROOT with /proc, /dev, the network's name files and
# the bind directories mounted, in a mount namespace of its own.
in_root() {
    local r="$1" wd="$2"
    shift 2
    local binds=()
    [[ -n "$wd" ]] && binds+=("$wd")
    # shellcheck disable=SC2206  # a space-separated list by design
    [[ -n "${YLOKH_SWIFT_BINDS:-}" ]] && binds+=(${YLOKH_SWIFT_BINDS})
    unshare --mount --propagation private -- bash -euo pipefail -c '
        r="$1" wd="$2" nb="$3"; shift 3
        binds=("${@:1:$nb}"); shift "$nb"
        mount -t proc proc "$r/proc"
        mount --rbind /dev "$r/dev"
        # Name resolution for apt inside the root.
        cp -L /etc/resolv.conf "$r/etc/resolv.conf" 2>/dev/null || true
        for d in "${binds[@]}"; do
            mkdir -p "$r$d"
            mount --rbind "$d" "$r$d"
        done
        exec chroot "$r" /usr/bin/env -C "${wd:-/}" HOME=/root PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin "$@"
    ' in_root "$r" "$wd" "${#binds[@]}" "${binds[@]}" "$@"
}

case "${1:-}" in
setup)
    setup
    ;;
run)
    shift
    [[ $# -gt 0 ]] || die "usage: $0 run CMD [ARGS...]"
    setup
    in_root "$root" "$PWD" "$@"
    ;;
*)
    echo "usage: $0 setup | run CMD [ARGS...]" >&2
    exit 2
    ;;
esac
