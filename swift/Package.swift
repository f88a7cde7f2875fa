// swift-tools-version:6.0
//
// Swift bindings for libylokh. Swift 6 language mode, strict concurrency. Built and tested by
// `make test` (tests/swift.rs) with Debian's swiftlang 6.0 against an installed libylokh.
//
// It needs libylokh installed where pkg-config finds it: `make install` in the repository,
// then PKG_CONFIG_PATH=$PREFIX/lib/pkgconfig if the prefix is not a standard one (and the
// library on the loader's path at run time: ldconfig, LD_LIBRARY_PATH or an rpath).
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
        // Run by tests/swift.rs, which starts the loopback servers these tests talk to and
        // passes their URLs in YLOKH_SWIFT_TEST_* variables.
        .testTarget(name: "YlokhTests", dependencies: ["Ylokh", "CYlokh"], path: "Tests/YlokhTests"),
    ]
)
