import Foundation
import LinuxOS
import OCIImage
import Testing
#if canImport(Glibc)
import Glibc
#endif

/// Shared helpers: temporary directories, running tools, building tarballs with Python's tarfile, and writing OCI
/// layouts by hand (so tests control every byte: digests, sizes, media types).
enum Env {
    static let isRoot = getuid() == 0
    static func has(_ tool: String) -> Bool {
        (ProcessInfo.processInfo.environment["PATH"] ?? "/usr/bin:/bin").split(separator: ":").contains {
            access("\($0)/\(tool)", X_OK) == 0
        }
    }
    /// The package root (for scripts/ and the built binary).
    static let packageRoot: String = {
        var url = URL(fileURLWithPath: #filePath)
        for _ in 0..<3 { url.deleteLastPathComponent() }
        return url.path
    }()
    static var bulkheadBinary: String? {
        for config in ["debug", "release"] {
            let path = "\(packageRoot)/.build/\(config)/bulkhead"
            if access(path, X_OK) == 0 { return path }
        }
        return nil
    }
}

final class TempDir {
    let path: String
    init(_ prefix: String = "bh-test") {
        var template = Array("/tmp/\(prefix)-XXXXXX".utf8CString)
        path = String(cString: mkdtemp(&template)!)
    }
    deinit {
        // Overlay mounts left by a failed test would make removal fail; detach them first.
        if let mounts = try? String(contentsOfFile: "/proc/self/mountinfo", encoding: .utf8) {
            for line in mounts.split(separator: "\n") {
                let fields = line.split(separator: " ")
                if fields.count > 4, fields[4].hasPrefix(path) { umount2(String(fields[4]), Int32(MNT_DETACH)) }
            }
        }
        try? FileManager.default.removeItem(atPath: path)
    }
    func sub(_ name: String) -> String { "\(path)/\(name)" }
}

@discardableResult
func run(_ tool: String, _ args: [String], cwd: String? = nil, env: [String: String]? = nil) throws -> String {
    let p = Process()
    p.executableURL = URL(fileURLWithPath: tool.hasPrefix("/") ? tool : "/usr/bin/env")
    p.arguments = tool.hasPrefix("/") ? args : [tool] + args
    if let cwd { p.currentDirectoryURL = URL(fileURLWithPath: cwd) }
    if let env { p.environment = ProcessInfo.processInfo.environment.merging(env) { $1 } }
    let out = Pipe(), err = Pipe()
    p.standardOutput = out
    p.standardError = err
    try p.run()
    let outData = out.fileHandleForReading.readDataToEndOfFile()
    let errData = err.fileHandleForReading.readDataToEndOfFile()
    p.waitUntilExit()
    let text = String(decoding: outData, as: UTF8.self)
    guard p.terminationStatus == 0 else {
        throw ToolError(message: "\(tool) \(args.joined(separator: " ")) exited \(p.terminationStatus): \(String(decoding: errData, as: UTF8.self))\(text)")
    }
    return text
}

struct ToolError: Error, CustomStringConvertible { let message: String; var description: String { message } }

/// One tar entry for ``makeTar(_:to:compression:)``.
struct TarEntry: Encodable {
    var name: String
    var type: String = "file"   // file, dir, symlink, hardlink, chr, blk, fifo
    var data: String? = nil
    var size: Int? = nil        // a file of this many zero bytes (instead of data)
    var linkname: String? = nil
    var mode: Int = 0o644
    var uid: Int = 0
    var gid: Int = 0
    var mtime: Int = 1_700_000_000
    var devmajor: Int = 0
    var devminor: Int = 0
    var xattrs: [String: String]? = nil

    static func file(_ name: String, _ data: String, mode: Int = 0o644, uid: Int = 0, gid: Int = 0) -> TarEntry {
        TarEntry(name: name, data: data, mode: mode, uid: uid, gid: gid)
    }
    static func dir(_ name: String, mode: Int = 0o755) -> TarEntry { TarEntry(name: name, type: "dir", mode: mode) }
    static func symlink(_ name: String, to target: String) -> TarEntry { TarEntry(name: name, type: "symlink", linkname: target, mode: 0o777) }
    static func hardlink(_ name: String, to target: String) -> TarEntry { TarEntry(name: name, type: "hardlink", linkname: target) }
}

private let tarScript = """
import json, sys, tarfile, io
spec = json.load(open(sys.argv[1]))
out = sys.argv[2]
types = {"file": tarfile.REGTYPE, "dir": tarfile.DIRTYPE, "symlink": tarfile.SYMTYPE, "hardlink": tarfile.LNKTYPE,
         "chr": tarfile.CHRTYPE, "blk": tarfile.BLKTYPE, "fifo": tarfile.FIFOTYPE}
with tarfile.open(out, "w", format=tarfile.PAX_FORMAT) as tar:
    for e in spec:
        info = tarfile.TarInfo(e["name"])
        info.type = types[e["type"]]
        info.mode = e["mode"]; info.uid = e["uid"]; info.gid = e["gid"]; info.mtime = e["mtime"]
        info.devmajor = e["devmajor"]; info.devminor = e["devminor"]
        if e.get("linkname"): info.linkname = e["linkname"]
        if e.get("xattrs"): info.pax_headers = {"SCHILY.xattr." + k: v for k, v in e["xattrs"].items()}
        data = None
        if e["type"] == "file":
            if e.get("size") is not None:
                info.size = e["size"]
                class Zero(io.RawIOBase):
                    def __init__(self, n): self.n = n
                    def readable(self): return True
                    def readinto(self, b):
                        k = min(len(b), self.n); b[:k] = bytes(k); self.n -= k; return k
                data = io.BufferedReader(Zero(e["size"]), 1 << 20)
            else:
                raw = (e.get("data") or "").encode(); info.size = len(raw); data = io.BytesIO(raw)
        tar.addfile(info, data)
"""

enum Compression { case none, gzip, zstd }

/// Writes a tar of `entries` (through Python's tarfile) to `path`, optionally compressed; returns the bytes.
@discardableResult
func makeTar(_ entries: [TarEntry], to path: String, compression: Compression = .none) throws -> [UInt8] {
    let script = path + ".py", spec = path + ".json"
    try tarScript.write(toFile: script, atomically: true, encoding: .utf8)
    try JSONEncoder().encode(entries).write(to: URL(fileURLWithPath: spec))
    try run("python3", [script, spec, path])
    switch compression {
    case .none: break
    case .gzip: try run("gzip", ["-n", "-f", path]); try FileManager.default.moveItem(atPath: path + ".gz", toPath: path)
    case .zstd: try run("zstd", ["-q", "-f", "--rm", path]); try FileManager.default.moveItem(atPath: path + ".zst", toPath: path)
    }
    try? FileManager.default.removeItem(atPath: script)
    try? FileManager.default.removeItem(atPath: spec)
    return Array(try Data(contentsOf: URL(fileURLWithPath: path)))
}

func sha256(_ bytes: [UInt8]) -> String { Digest(of: bytes).description }

/// Writes an OCI image layout by hand. Layers are given as raw blob bytes plus the uncompressed tar's bytes.
final class LayoutBuilder {
    let dir: String
    var layers: [(blob: [UInt8], tar: [UInt8], mediaType: String)] = []
    var configOverride: [UInt8]? = nil
    var diffIDsOverride: [String]? = nil
    var architecture = "amd64"

    init(dir: String) throws {
        self.dir = dir
        try FileManager.default.createDirectory(atPath: dir + "/blobs/sha256", withIntermediateDirectories: true)
        try #"{"imageLayoutVersion":"1.0.0"}"#.write(toFile: dir + "/oci-layout", atomically: true, encoding: .utf8)
    }

    /// Adds a layer built from `entries`.
    func addLayer(_ entries: [TarEntry], compression: Compression = .gzip) throws {
        let tmp = TempDir("bh-layer")
        let tar = try makeTar(entries, to: tmp.sub("l.tar"))
        let blob = compression == .none ? tar : try makeTar(entries, to: tmp.sub("c.tar"), compression: compression)
        let type = compression == .gzip ? "application/vnd.oci.image.layer.v1.tar+gzip"
            : compression == .zstd ? "application/vnd.oci.image.layer.v1.tar+zstd" : "application/vnd.oci.image.layer.v1.tar"
        layers.append((blob, tar, type))
    }

    @discardableResult
    func writeBlob(_ bytes: [UInt8]) throws -> String {
        let digest = sha256(bytes)
        try Data(bytes).write(to: URL(fileURLWithPath: "\(dir)/blobs/sha256/\(digest.dropFirst(7))"))
        return digest
    }

    func configBytes() -> [UInt8] {
        if let configOverride { return configOverride }
        let diffIDs = diffIDsOverride ?? layers.map { sha256($0.tar) }
        let ids = diffIDs.map { "\"\($0)\"" }.joined(separator: ",")
        return Array("""
            {"architecture":"\(architecture)","os":"linux","created":"2024-01-01T00:00:00Z","config":{"Cmd":["/bin/sh"],"Env":["PATH=/bin"],"User":"0:0","WorkingDir":"/","Labels":{"a":"b"},"StopSignal":"SIGTERM","ExposedPorts":{"80/tcp":{}}},"rootfs":{"type":"layers","diff_ids":[\(ids)]}}
            """.utf8)
    }

    /// Writes blobs and a manifest; returns the manifest descriptor JSON (for an index).
    func writeManifest(layerSizes: [Int]? = nil, platform: String? = nil) throws -> String {
        var layerDescs: [String] = []
        for (i, layer) in layers.enumerated() {
            let d = try writeBlob(layer.blob)
            layerDescs.append(#"{"mediaType":"\#(layer.mediaType)","digest":"\#(d)","size":\#(layerSizes?[i] ?? layer.blob.count)}"#)
        }
        let config = configBytes()
        let configDigest = try writeBlob(config)
        let manifest = Array("""
            {"schemaVersion":2,"mediaType":"application/vnd.oci.image.manifest.v1+json","config":{"mediaType":"application/vnd.oci.image.config.v1+json","digest":"\(configDigest)","size":\(config.count)},"layers":[\(layerDescs.joined(separator: ","))]}
            """.utf8)
        let manifestDigest = try writeBlob(manifest)
        let platformJSON = platform.map { p -> String in
            let parts = p.split(separator: "/")
            return #","platform":{"os":"\#(parts[0])","architecture":"\#(parts[1])"}"#
        } ?? ""
        return #"{"mediaType":"application/vnd.oci.image.manifest.v1+json","digest":"\#(manifestDigest)","size":\#(manifest.count)\#(platformJSON)}"#
    }

    func writeIndex(_ descriptors: [String]) throws {
        try #"{"schemaVersion":2,"manifests":[\#(descriptors.joined(separator: ","))]}"#.write(toFile: dir + "/index.json", atomically: true, encoding: .utf8)
    }

    /// The usual case: one image, index.json pointing at it.
    func finish() throws { try writeIndex([try writeManifest()]) }
}

/// A listing of everything under `root` (path, type, size, mode, owner) for "exactly as it was" comparisons.
func treeListing(_ root: String, excluding: Set<String> = ["store.lock"]) throws -> [String] {
    try run("find", [root, "-mindepth", "1", "-printf", "%P %y %s %m %U:%G %l\n"])
        .split(separator: "\n").map(String.init)
        .filter { line in !excluding.contains(String(line.split(separator: " ")[0])) }
        .sorted()
}

func lstatOf(_ path: String) -> stat? {
    var st = stat()
    return lstat(path, &st) == 0 ? st : nil
}

func xattr(_ path: String, _ name: String) -> String? {
    linkXattr(path, name).map { String(decoding: $0, as: UTF8.self) }
}
