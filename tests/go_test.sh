#!/usr/bin/env bash
# Runs the Go module's checks (gofmt, go vet, go test) against the library built in this
# repository, without installing it: `tests/go_test.sh [go test flags...]`, e.g. -race or
# -run TestStream. `cargo test` runs the same checks (tests/ecosystem.rs) against an
# installed copy; this script is for working on go/ by hand.
set -euo pipefail
root="$(cd "$(dirname "$0")/.." && pwd)"
profile="${PROFILE:-release}"
cargo build --lib --profile "$profile" --manifest-path "$root/Cargo.toml"
lib="$root/target/$([ "$profile" = dev ] && echo debug || echo "$profile")"

export GOPATH="$root/target/go/path" GOCACHE="$root/target/go/cache"
# No pkg-config (the library is not installed): link.go's `#cgo pkg-config` is left out by
# the ylokh_nopkgconfig tag, and CGO_LDFLAGS points at the build.
export GOFLAGS="-mod=mod -tags=ylokh_nopkgconfig" GOPROXY=off GOSUMDB=off GOTOOLCHAIN=local GOENV=off GO111MODULE=on
export CGO_ENABLED=1 CGO_LDFLAGS="-L$lib -Wl,-rpath,$lib"
unset YLOKH_BASE_URL YLOKH_API_KEY OPENAI_BASE_URL OPENAI_API_KEY

cd "$root/go"
unformatted="$(gofmt -l .)"
if [ -n "$unformatted" ]; then
    echo "needs gofmt: $unformatted" >&2
    exit 1
fi
go vet ./...
go test -count=1 "$@" ./...
