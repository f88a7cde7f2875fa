//go:build !cgo

package ylokh

// This package calls libylokh, a C library, through cgo, so it cannot be built with
// CGO_ENABLED=0 (cross-compiling turns cgo off unless CC is set). Build with
// CGO_ENABLED=1, a C compiler, and libylokh installed (see the README).
//
// The line below fails on purpose, so that the build error names the problem.
var _ = ylokh_needs_cgo__build_with_CGO_ENABLED_1_and_libylokh_installed
