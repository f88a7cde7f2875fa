// swift-tools-version:5.7
//
// Swift bindings for libylokh. UNTESTED: no Swift toolchain was available where this was
// written; it is kept deliberately small. It needs libylokh installed where pkg-config
// finds it (`make install` in the repository, then PKG_CONFIG_PATH if the prefix is not a
// standard one).
import PackageDescription

let package = Package(
    name: "Ylokh",
    // AsyncThrowingStream needs macOS 10.15 / iOS 13.
    platforms: [.macOS(.v10_15), .iOS(.v13)],
    products: [
        .library(name: "Ylokh", targets: ["Ylokh"]),
    ],
    targets: [
        // The C API: a module map over ylokh.h, compiler and linker flags from ylokh.pc.
        .systemLibrary(name: "CYlokh", path: "Sources/CYlokh", pkgConfig: "ylokh"),
        .target(name: "Ylokh", dependencies: ["CYlokh"], path: "Sources/Ylokh"),
    ]
)
