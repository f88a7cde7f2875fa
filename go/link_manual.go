//go:build cgo && ylokh_nopkgconfig

package ylokh

// Built with -tags ylokh_nopkgconfig: pkg-config is not used; the linker looks for
// libylokh where CGO_LDFLAGS says, e.g.
//
//	CGO_LDFLAGS="-L/opt/ylokh/lib -Wl,-rpath,/opt/ylokh/lib" go build -tags ylokh_nopkgconfig
//
// The header is the copy in this module (ylokh_vendored.h): no include path is needed.

// #cgo LDFLAGS: -lylokh
import "C"
