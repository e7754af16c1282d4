// swift-tools-version:6.0
// A peer for bench/policy.sh: the same policy file through Yams (the Swift YAML library), to compare with
// Bulkhead's libyaml-based loader. Not part of the Bulkhead build.
import PackageDescription

let package = Package(
    name: "yams-peer",
    dependencies: [.package(url: "https://github.com/jpsim/Yams", from: "5.0.1")],
    targets: [.executableTarget(name: "yams-peer", dependencies: ["Yams"])],
    swiftLanguageModes: [.v6]
)
