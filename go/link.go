//go:build cgo && !ylokh_nopkgconfig

package ylokh

// The library's compiler and linker flags come from pkg-config's ylokh.pc, which
// `make install` writes: set PKG_CONFIG_PATH=$PREFIX/lib/pkgconfig for a prefix pkg-config
// does not search (and PKG_CONFIG to use another pkg-config program). To link without
// pkg-config, build with -tags ylokh_nopkgconfig (see link_manual.go).

// #cgo pkg-config: ylokh
import "C"
