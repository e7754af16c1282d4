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
        .executable(name: "bulkhead-agent", targets: ["bulkhead-agent"]),
        .executable(name: "bulkhead-vm-monitor", targets: ["bulkhead-vm-monitor"]),
    ],
    dependencies: [
        .package(url: "https://github.com/apple/swift-argument-parser", from: "1.5.0"),
        .package(url: "https://github.com/apple/swift-log", from: "1.6.0"),
    ],
    targets: [
        // C shims: raw syscalls glibc does not wrap, ioctl numbers, variadic functions, fork/exec child set-up.
        .target(name: "CShims"),
        // System libraries, found through pkg-config.
        .systemLibrary(name: "CArchive", pkgConfig: "libarchive", providers: [.apt(["libarchive-dev"])]),

        // Safe Linux layer: every syscall through one EINTR-retrying helper, owned fds, *at() path work.
        .target(name: "LinuxOS", dependencies: ["CShims"]),

        // OCI images: spec types, content-addressed blob store, importers, layer snapshots, overlay rootfs.
        // SHA-256 comes from Nettle (CNettle, declared with Policy below; linked anyway for libarchive): swift-crypto
        // 3.x imports all of Foundation, which would add ~60 MB and milliseconds of start-up to the static binary.
        .target(name: "OCIImage", dependencies: ["LinuxOS", "CArchive", "CShims", "CNettle"], linkerSettings: archiveLinks),
        .testTarget(name: "OCIImageTests", dependencies: ["OCIImage", "LinuxOS"]),

        // Hand-written compact JSON for the records written on every container start (state.json, the audit line).
        .target(name: "JSONText"),

        // The namespace tier. OCIRuntime: config.json types (FoundationEssentials only). Cgroups: v1/hybrid/v2
        // behind one interface. Runtime: state store, container state machine, the Backend protocol, hooks.
        // NamespaceBackend: the container itself (re-exec'd init, rootfs, namespaces).
        .target(name: "OCIRuntime"),
        .target(name: "Cgroups", dependencies: ["LinuxOS", "CShims"]),
        .target(name: "Runtime", dependencies: ["OCIRuntime", "Cgroups", "LinuxOS", "CShims", "JSONText"]),
        .target(name: "NamespaceBackend", dependencies: [
            "CShims", "LinuxOS", "OCIRuntime", "Cgroups", "Runtime", "Confine",
            .product(name: "Logging", package: "swift-log"),
        ]),
        .testTarget(name: "RuntimeTests", dependencies: ["OCIRuntime", "Cgroups", "Runtime", "NamespaceBackend", "LinuxOS", "CShims", "TestSupport", "JSONText"]),
        // What several test targets share: running a tool with stdio to files and a deadline.
        .target(name: "TestSupport", dependencies: ["LinuxOS"], path: "Tests/Support"),

        // The CLI verbs (one file per verb) and the thin executable over them.
        .target(name: "BulkheadCommands", dependencies: [
            "LinuxOS", "CShims", "OCIImage", "Policy", "PolicyGate",
            "OCIRuntime", "Cgroups", "Runtime", "NamespaceBackend", "MicroVM", "MicroVMBackend", "GuestHost", "Confine",
            .product(name: "ArgumentParser", package: "swift-argument-parser"),
            .product(name: "Logging", package: "swift-log"),
        ]),
        .executableTarget(name: "bulkhead", dependencies: ["BulkheadCommands", "NamespaceBackend"]),

        // The CLI's own parsing: the runc fast path against ArgumentParser.
        .testTarget(name: "CLITests", dependencies: [
            "BulkheadCommands",
            .product(name: "ArgumentParser", package: "swift-argument-parser"),
        ]),

        .testTarget(name: "LinuxOSTests", dependencies: ["LinuxOS"]),

        // Trust-boundary policy (issue 5): the policy file (YAML through libyaml, the C parser Yams wraps), the
        // decision engine and its explanations (`Policy`, pure: reads the file, nothing else), and the gate that
        // loads it by the host's rules, decides and writes the audit log (`PolicyGate`).
        .systemLibrary(name: "CYAML", pkgConfig: "yaml-0.1", providers: [.apt(["libyaml-dev"])]),
        .systemLibrary(name: "CNettle", pkgConfig: "nettle", providers: [.apt(["nettle-dev"])]),
        .target(name: "Policy", dependencies: ["CYAML", "LinuxOS"]),
        .target(name: "PolicyGate", dependencies: ["Policy", "LinuxOS", "CNettle", "JSONText"]),
        .executableTarget(name: "policy-bench", dependencies: ["Policy"], path: "bench/policy-bench"),
        .testTarget(name: "PolicyTests", dependencies: ["Policy", "PolicyGate", "BulkheadCommands"],
                    exclude: ["Corpus"]),

        // MicroVM guest side: the host<->guest wire format, the guest agent (PID 1 of the initramfs,
        // linked -static-executable), and the images a microVM boots (initramfs, shared rootfs image).
        .target(name: "GuestProtocol"),
        .target(name: "CAgentShims"),
        .target(name: "GuestAgent", dependencies: ["GuestProtocol", "LinuxOS", "CAgentShims", "Confine", "OCIRuntime"]),
        .executableTarget(name: "bulkhead-agent", dependencies: ["GuestAgent"]),
        .target(name: "GuestHost", dependencies: ["GuestProtocol", "LinuxOS", "CShims"]),
        .executableTarget(name: "bulkhead-guest-bench", dependencies: ["GuestHost", "GuestImage", "GuestProtocol"]),
        .target(name: "GuestImage", dependencies: ["LinuxOS", "CArchive"], linkerSettings: archiveLinks),
        .testTarget(name: "GuestProtocolTests", dependencies: ["GuestProtocol"]),
        .testTarget(name: "GuestTests", dependencies: ["GuestAgent", "GuestHost", "GuestImage", "GuestProtocol", "LinuxOS"]),

        // Our own VMM (issue 7): KVM ioctls through a C shim, libseccomp for per-thread filters.
        .target(name: "CKVM"),
        .systemLibrary(name: "CSeccomp", pkgConfig: "libseccomp", providers: [.apt(["libseccomp-dev"])]),
        .target(name: "MicroVM", dependencies: ["CKVM", "CSeccomp", "CShims", "LinuxOS"]),
        .testTarget(name: "MicroVMTests", dependencies: ["MicroVM", "LinuxOS", "TestSupport"], exclude: ["Guests"]),

        // The microVM tier behind the runc verbs (issue 6 items 5-7). MicroVMBackend (in the static `bulkhead`):
        // builds the rootfs image and initramfs, starts one `bulkhead-vm-monitor` per container and talks to it.
        // bulkhead-vm-monitor (dynamically linked: libvirt cannot be linked statically) drives the libvirt domain
        // (embedded QEMU driver by default) and relays the container's stdio and signals to the guest agent.
        .systemLibrary(name: "CVirt", pkgConfig: "libvirt", providers: [.apt(["libvirt-dev"])]),
        .target(name: "MicroVMBackend", dependencies: ["Runtime", "OCIRuntime", "LinuxOS", "CShims", "GuestImage", "GuestHost", "GuestProtocol", "MicroVM"]),
        .executableTarget(name: "bulkhead-vm-monitor", dependencies: ["CVirt", "CShims", "MicroVM", "MicroVMBackend", "GuestHost", "GuestProtocol", "LinuxOS"]),
        .testTarget(name: "MicroVMTierTests", dependencies: ["MicroVMBackend", "LinuxOS", "CShims", "TestSupport"]),

        // Capabilities and seccomp from the runtime spec (issue 4): spec -> libcap / libseccomp, in a target of its
        // own so that both the namespace tier's init and the microVM guest agent can apply the same confinement.
        .systemLibrary(name: "CCap", pkgConfig: "libcap", providers: [.apt(["libcap-dev"])]),
        .target(name: "Confine", dependencies: ["CCap", "CSeccomp", "CShims", "LinuxOS", "OCIRuntime", "JSONText"]),
        .testTarget(name: "ConfineTests", dependencies: ["Confine", "OCIRuntime", "LinuxOS", "CShims", "JSONText"]),
    ],
    swiftLanguageModes: [.v6]
)

// Concrete generic types (`KeyedDecodingContainer<Spec.CodingKeys>`, `[String: Mount]`, …) get their metadata through
// direct accessor calls instead of the compact mangled-name form. The mangled form makes the runtime demangle the
// name and look up each generic requirement's conformance by scanning every conformance record of the (static)
// binary, once per type per process: perf showed that as a quarter of the CLI's user-space time in a `bulkhead run`
// (bench/start.sh). Code size grows slightly; behaviour is the same.
for target in package.targets where target.type == .regular || target.type == .executable {
    let isCShim = target.name.count > 1 && target.name.first == "C" && target.name.dropFirst().first!.isUppercase
    if isCShim { continue }
    target.swiftSettings = (target.swiftSettings ?? []) + [
        .unsafeFlags(["-Xfrontend", "-disable-concrete-type-metadata-mangled-name-accessors"]),
    ]
}
