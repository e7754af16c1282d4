// swift-tools-version:6.0
// Bulkhead: one OCI image format, two isolation tiers (namespaces or a KVM microVM),
// chosen per deployment by the host owner's trust-boundary policy.
import PackageDescription

/// C libraries linked statically into the hot `bulkhead` binary (Debian ships their `.a` files).
let archiveLinks: [LinkerSetting] = ["archive", "zstd", "lz4", "lzma", "bz2", "z", "acl", "nettle", "xml2"]
    .map { .linkedLibrary($0) }

let package = Package(
    name: "Bulkhead",
    platforms: [.macOS(.v15)],
    products: [
        .executable(name: "bulkhead", targets: ["bulkhead"]),
    ],
    dependencies: [
        .package(url: "https://github.com/apple/swift-argument-parser", from: "1.5.0"),
        .package(url: "https://github.com/apple/swift-log", from: "1.6.0"),
        .package(url: "https://github.com/apple/swift-crypto", from: "3.12.0"),
    ],
    targets: [
        // C shims: raw syscalls glibc does not wrap, ioctl numbers, variadic functions, fork/exec child set-up.
        .target(name: "CShims"),
        // System libraries, found through pkg-config.
        .systemLibrary(name: "CArchive", pkgConfig: "libarchive", providers: [.apt(["libarchive-dev"])]),

        // Safe Linux layer: every syscall through one EINTR-retrying helper, owned fds, *at() path work.
        .target(name: "LinuxOS", dependencies: ["CShims"]),

        // OCI images: spec types, content-addressed blob store, importers, layer snapshots, overlay rootfs.
        .target(name: "OCIImage", dependencies: [
            "LinuxOS", "CArchive", "CShims",
            .product(name: "Crypto", package: "swift-crypto"),
        ], linkerSettings: archiveLinks),
        .testTarget(name: "OCIImageTests", dependencies: ["OCIImage", "LinuxOS"]),

        // The CLI verbs (one file per verb) and the thin executable over them.
        .target(name: "BulkheadCommands", dependencies: [
            "LinuxOS", "OCIImage",
            "MicroVM",
            "CShims",
            .product(name: "ArgumentParser", package: "swift-argument-parser"),
            .product(name: "Logging", package: "swift-log"),
        ]),
        .executableTarget(name: "bulkhead", dependencies: ["BulkheadCommands"]),

        .testTarget(name: "LinuxOSTests", dependencies: ["LinuxOS"]),

        // Our own VMM (issue 7): KVM ioctls through a C shim, libseccomp for per-thread filters.
        .target(name: "CKVM"),
        .systemLibrary(name: "CSeccomp", pkgConfig: "libseccomp", providers: [.apt(["libseccomp-dev"])]),
        .target(name: "MicroVM", dependencies: ["CKVM", "CSeccomp", "CShims", "LinuxOS"]),
        .testTarget(name: "MicroVMTests", dependencies: ["MicroVM", "LinuxOS"], exclude: ["Guests"]),
    ],
    swiftLanguageModes: [.v6]
)
