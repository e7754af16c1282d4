import Foundation
import LinuxOS
import OCIImage
import Testing
#if canImport(Glibc)
import Glibc
#endif

@Suite struct SpecTests {
    @Test func digestsParseStrictly() throws {
        let hex = String(repeating: "ab", count: 32)
        #expect(try Digest(parsing: "sha256:" + hex).hex == hex)
        #expect(throws: ImageError.self) { try Digest(parsing: "sha256:" + hex.uppercased()) }
        #expect(throws: ImageError.self) { try Digest(parsing: "sha512:" + hex) }
        #expect(throws: ImageError.self) { try Digest(parsing: "sha256:../../etc/passwd") }
        #expect(Digest(of: Array("abc".utf8)).hex == "ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad")
    }

    @Test func platformsParseAndMatch() throws {
        let p = try Platform(parsing: "linux/arm/v7")
        #expect(p.variant == "v7")
        #expect(Platform(os: "linux", architecture: "arm").satisfies(p))
        #expect(!Platform(os: "linux", architecture: "arm", variant: "v6").satisfies(p))
        #expect(throws: ImageError.self) { try Platform(parsing: "linux") }
        #expect(throws: ImageError.self) { try Platform(parsing: "linux//v7") }
    }

    @Test func namesGetLatest() throws {
        #expect(ImageName.normalize("busybox") == "busybox:latest")
        #expect(ImageName.normalize("localhost:5000/busybox") == "localhost:5000/busybox:latest")
        #expect(ImageName.normalize("busybox:1.36") == "busybox:1.36")
        #expect(throws: ImageError.self) { try ImageName.validate("bad name") }
        #expect(throws: ImageError.self) { try ImageName.validate("sha256:abc") }
    }
}

/// Imports of hand-made layouts: every byte under the test's control.
@Suite(.enabled(if: Env.isRoot, "needs root: layer snapshots keep owners, device nodes and trusted.* xattrs"))
struct ImportTests {
    static let layer1: [TarEntry] = [
        .dir("etc"), .file("etc/hostname", "base\n"),
        .file("bin/tool", "#!/bin/sh\n", mode: 0o4755, uid: 1000, gid: 1001),
        .hardlink("bin/tool-link", to: "bin/tool"),
        .symlink("bin/sh", to: "/bin/tool"),
        TarEntry(name: "dev/null", type: "chr", mode: 0o666, devmajor: 1, devminor: 3),
        TarEntry(name: "run/fifo", type: "fifo", mode: 0o600),
        .dir("opaque"), .file("opaque/old", "old"),
        .file("gone", "deleted by layer 2"),
        TarEntry(name: "attr", data: "x", xattrs: ["user.bulkhead": "yes"]),
        .dir("tmp", mode: 0o1777),
    ]
    static let layer2: [TarEntry] = [
        .file(".wh.gone", ""), .file("opaque/.wh..wh..opq", ""), .file("opaque/new", "new"),
        .file("etc/hostname", "top\n"),
    ]

    func twoLayerLayout(_ tmp: TempDir) throws -> String {
        let b = try LayoutBuilder(dir: tmp.sub("layout"))
        try b.addLayer(Self.layer1, compression: .gzip)
        try b.addLayer(Self.layer2, compression: .zstd)
        try b.finish()
        return b.dir
    }

    @Test func importsLayoutAndPreservesMetadata() throws {
        let tmp = TempDir()
        let store = try ImageStore(dataRoot: tmp.sub("store"))
        let result = try store.importImage(from: try twoLayerLayout(tmp), options: ImportOptions(name: "test/img:1"))
        #expect(result.layersUnpacked == 2)
        let image = try store.resolve("test/img:1")
        #expect(image.layerDiffIDs.count == 2)
        #expect(image.config.config?.cmd == ["/bin/sh"])
        #expect(image.config.config?.exposedPorts?.keys.sorted() == ["80/tcp"])
        let snap1 = tmp.sub("store/snapshots/\(image.layerDiffIDs[0].dropFirst(7))")
        let snap2 = tmp.sub("store/snapshots/\(image.layerDiffIDs[1].dropFirst(7))")

        let tool = try #require(lstatOf(snap1 + "/bin/tool"))
        #expect(tool.st_mode & 0o7777 == 0o4755)      // setuid survives the chown
        #expect(tool.st_uid == 1000 && tool.st_gid == 1001)
        #expect(tool.st_mtim.tv_sec == 1_700_000_000)
        #expect(lstatOf(snap1 + "/bin/tool-link")?.st_ino == tool.st_ino)
        #expect(try FileManager.default.destinationOfSymbolicLink(atPath: snap1 + "/bin/sh") == "/bin/tool")
        let null = try #require(lstatOf(snap1 + "/dev/null"))
        #expect(null.st_mode & S_IFMT == S_IFCHR && null.st_rdev == makeDevice(major: 1, minor: 3))
        #expect(lstatOf(snap1 + "/run/fifo").map { $0.st_mode & S_IFMT == S_IFIFO } == true)
        #expect(xattr(snap1 + "/attr", "user.bulkhead") == "yes")
        #expect(lstatOf(snap1 + "/tmp").map { $0.st_mode & 0o7777 } == 0o1777)
        // Whiteouts and opaque markers become overlayfs's.
        let wh = try #require(lstatOf(snap2 + "/gone"))
        #expect(wh.st_mode & S_IFMT == S_IFCHR && wh.st_rdev == 0)
        #expect(xattr(snap2 + "/opaque", "trusted.overlay.opaque") == "y")
        #expect(lstatOf(snap2 + "/.wh.gone") == nil)
    }

    @Test func overlayRootfsAppliesWhiteoutsAndTracksUsers() throws {
        let tmp = TempDir()
        let store = try ImageStore(dataRoot: tmp.sub("store"))
        _ = try store.importImage(from: try twoLayerLayout(tmp), options: ImportOptions(name: "img"))
        let image = try store.resolve("img")
        let merged = try store.prepareRootfs(image: image, containerID: "c1")
        #expect(merged == tmp.sub("store/rootfs/c1/merged"))
        #expect(try store.prepareRootfs(image: image, containerID: "c1") == merged)   // idempotent
        #expect(try String(contentsOfFile: merged + "/etc/hostname", encoding: .utf8) == "top\n")
        #expect(lstatOf(merged + "/gone") == nil)
        #expect(lstatOf(merged + "/opaque/old") == nil)
        #expect(lstatOf(merged + "/opaque/new") != nil)
        try "written".write(toFile: merged + "/new-file", atomically: false, encoding: .utf8)
        #expect(lstatOf(tmp.sub("store/rootfs/c1/upper/new-file")) != nil)

        // A second container shares the same lower snapshots.
        let merged2 = try store.prepareRootfs(image: image, containerID: "c2")
        #expect(lstatOf(merged2 + "/new-file") == nil)

        // rm while containers use the layers: the image goes, the snapshots stay.
        _ = try store.remove("img")
        #expect(throws: ImageError.self) { try store.resolve("img") }
        for id in image.layerDiffIDs { #expect(lstatOf(tmp.sub("store/snapshots/\(id.dropFirst(7))")) != nil) }
        _ = try store.prune()
        for id in image.layerDiffIDs { #expect(lstatOf(tmp.sub("store/snapshots/\(id.dropFirst(7))")) != nil) }

        try store.releaseRootfs(containerID: "c1")
        try store.releaseRootfs(containerID: "c1")   // idempotent
        try store.releaseRootfs(containerID: "c2")
        #expect(lstatOf(tmp.sub("store/rootfs/c1")) == nil)
        let pruned = try store.prune()
        #expect(pruned.deletedSnapshots == 2)
        #expect(try FileManager.default.contentsOfDirectory(atPath: tmp.sub("store/snapshots")).isEmpty)
        #expect(try FileManager.default.contentsOfDirectory(atPath: tmp.sub("store/blobs/sha256")).isEmpty)
    }

    @Test func sharedLayersAreNotReadAgain() throws {
        let tmp = TempDir()
        let store = try ImageStore(dataRoot: tmp.sub("store"))
        let b1 = try LayoutBuilder(dir: tmp.sub("a"))
        try b1.addLayer(Self.layer1)
        try b1.finish()
        _ = try store.importImage(from: b1.dir, options: ImportOptions(name: "a"))
        // Same base layer plus one more: only the new layer is read and unpacked.
        let b2 = try LayoutBuilder(dir: tmp.sub("b"))
        b2.layers = b1.layers
        try b2.addLayer(Self.layer2)
        try b2.finish()
        let result = try store.importImage(from: b2.dir, options: ImportOptions(name: "b"))
        #expect(result.layersShared == 1 && result.layersUnpacked == 1)
        #expect(result.bytesRead == Int64(b2.layers[1].blob.count))
        // Removing "a" keeps the base layer "b" uses.
        _ = try store.remove("a")
        let b = try store.resolve("b")
        #expect(lstatOf(tmp.sub("store/snapshots/\(b.layerDiffIDs[0].dropFirst(7))/etc/hostname")) != nil)
    }

    @Test func multiPlatformNestedIndex() throws {
        let tmp = TempDir()
        let b = try LayoutBuilder(dir: tmp.sub("layout"))
        try b.addLayer([.file("arch", "amd64")])
        let amd = try b.writeManifest(platform: "linux/amd64")
        b.layers = []
        b.architecture = "arm64"
        try b.addLayer([.file("arch", "arm64")])
        let arm = try b.writeManifest(platform: "linux/arm64")
        let nested = Array(#"{"schemaVersion":2,"mediaType":"application/vnd.oci.image.index.v1+json","manifests":[\#(amd),\#(arm)]}"#.utf8)
        let nestedDigest = try b.writeBlob(nested)
        try b.writeIndex([#"{"mediaType":"application/vnd.oci.image.index.v1+json","digest":"\#(nestedDigest)","size":\#(nested.count),"annotations":{"org.opencontainers.image.ref.name":"multi:1"}}"#])

        let store = try ImageStore(dataRoot: tmp.sub("store"))
        let host = try store.importImage(from: b.dir)
        #expect(host.record.platform == hostPlatform().description)
        #expect(host.record.names == ["multi:1"])
        let arm64 = try store.importImage(from: b.dir, options: ImportOptions(name: "arm", platform: try Platform(parsing: "linux/arm64")))
        #expect(arm64.record.platform == "linux/arm64")
        let error = #expect(throws: ImageError.self) {
            try store.importImage(from: b.dir, options: ImportOptions(platform: try Platform(parsing: "linux/s390x")))
        }
        #expect(error?.description.contains("linux/amd64") == true && error?.description.contains("--platform") == true)
    }

    /// Each broken input is refused with an error naming the blob and the problem; the store is byte-for-byte as before.
    @Test(arguments: ["tampered", "truncated", "malformed-config", "unknown-media-type", "diff-id", "wrong-compression", "missing-blob"])
    func brokenInputsLeaveStoreUntouched(_ kind: String) throws {
        let tmp = TempDir()
        let store = try ImageStore(dataRoot: tmp.sub("store"))
        // Something already in the store, which must survive untouched.
        let good = try LayoutBuilder(dir: tmp.sub("good"))
        try good.addLayer([.file("keep", "me")])
        try good.finish()
        _ = try store.importImage(from: good.dir, options: ImportOptions(name: "good"))
        let before = try treeListing(store.dataRoot)
        let stateBefore = try String(contentsOfFile: store.dataRoot + "/images.json", encoding: .utf8)

        let b = try LayoutBuilder(dir: tmp.sub("bad"))
        try b.addLayer(Self.layer1)
        var expected = ""
        switch kind {
        case "tampered":
            try b.finish()
            let blob = b.dir + "/blobs/sha256/" + sha256(b.layers[0].blob).dropFirst(7)
            var bytes = Array(try Data(contentsOf: URL(fileURLWithPath: blob)))
            bytes[bytes.count / 2] ^= 0xff
            try Data(bytes).write(to: URL(fileURLWithPath: blob))
            expected = "content digest is"
        case "truncated":
            try b.finish()
            let blob = b.dir + "/blobs/sha256/" + sha256(b.layers[0].blob).dropFirst(7)
            try Data(b.layers[0].blob.prefix(b.layers[0].blob.count - 100)).write(to: URL(fileURLWithPath: blob))
            expected = "truncated"
        case "malformed-config":
            b.configOverride = Array(#"{"architecture":"amd64","os":"linux","rootfs":{"type":"layers","diff_ids":["#.utf8)
            try b.finish()
            expected = "malformed JSON"
        case "unknown-media-type":
            b.layers[0].mediaType = "application/x-evil"
            try b.finish()
            expected = "unknown media type"
        case "diff-id":
            b.diffIDsOverride = ["sha256:" + String(repeating: "0", count: 64)]
            try b.finish()
            expected = "rootfs.diff_ids"
        case "wrong-compression":
            b.layers[0].mediaType = "application/vnd.oci.image.layer.v1.tar+zstd"
            try b.finish()
            expected = "does not match"
        case "missing-blob":
            try b.finish()
            try FileManager.default.removeItem(atPath: b.dir + "/blobs/sha256/" + sha256(b.layers[0].blob).dropFirst(7))
            expected = "missing"
        default: Issue.record("unknown case")
        }
        let error = #expect(throws: ImageError.self) { try store.importImage(from: b.dir, options: ImportOptions(name: "bad")) }
        #expect(error?.description.contains(expected) == true, "\(kind): \(String(describing: error))")
        if kind != "unknown-media-type" && kind != "missing-blob" && kind != "diff-id" {
            #expect(error?.description.contains("sha256:") == true, "the error names the blob")
        }
        #expect(try treeListing(store.dataRoot) == before)
        #expect(try String(contentsOfFile: store.dataRoot + "/images.json", encoding: .utf8) == stateBefore)
        #expect(try store.list().map(\.names) == [["good:latest"]])
    }

    @Test func bombsAreStoppedByLimits() throws {
        let tmp = TempDir()
        var store = try ImageStore(dataRoot: tmp.sub("store"))
        store.limits = UnpackLimits(maxBytes: 4 << 20, maxEntries: 50)
        let before = try treeListing(store.dataRoot)
        let big = try LayoutBuilder(dir: tmp.sub("big"))
        try big.addLayer([TarEntry(name: "zeros", size: 64 << 20)], compression: .gzip)   // 64 MiB of zeros, ~64 KiB gzipped
        try big.finish()
        let e1 = #expect(throws: ImageError.self) { try store.importImage(from: big.dir) }
        #expect(e1?.description.contains("decompression bomb") == true)
        let many = try LayoutBuilder(dir: tmp.sub("many"))
        try many.addLayer((0..<200).map { TarEntry.file("f\($0)", "") })
        try many.finish()
        let e2 = #expect(throws: ImageError.self) { try store.importImage(from: many.dir) }
        #expect(e2?.description.contains("entries") == true)
        #expect(try treeListing(store.dataRoot) == before)
    }

    @Test func staleTemporariesAreCleanedButLiveOnesKept() throws {
        let tmp = TempDir()
        let store = try ImageStore(dataRoot: tmp.sub("store"))
        // A killed import: a staging directory whose lock nobody holds.
        try FileManager.default.createDirectory(atPath: store.dataRoot + "/tmp/dead/snapshots/x", withIntermediateDirectories: true)
        _ = FileManager.default.createFile(atPath: store.dataRoot + "/tmp/dead.lock", contents: nil)
        // A live one: its lock is held (by this process, through another open file description).
        try FileManager.default.createDirectory(atPath: store.dataRoot + "/tmp/live", withIntermediateDirectories: true)
        let fd = open(store.dataRoot + "/tmp/live.lock", O_RDWR | O_CREAT | O_CLOEXEC, 0o600)
        defer { close(fd) }
        #expect(flock(fd, LOCK_EX) == 0)
        let b = try LayoutBuilder(dir: tmp.sub("layout"))
        try b.addLayer([.file("a", "b")])
        try b.finish()
        _ = try store.importImage(from: b.dir, options: ImportOptions(name: "x"))
        let left = try FileManager.default.contentsOfDirectory(atPath: store.dataRoot + "/tmp").sorted()
        #expect(left == ["live", "live.lock"])
    }

    @Test func dockerArchiveWithRepoTags() throws {
        let tmp = TempDir()
        let dir = tmp.sub("docker")
        try FileManager.default.createDirectory(atPath: dir + "/abc", withIntermediateDirectories: true)
        let layer = try makeTar([.file("hello", "world")], to: dir + "/abc/layer.tar")
        let config = Array(#"{"architecture":"amd64","os":"linux","config":{"Cmd":["/hello"]},"rootfs":{"type":"layers","diff_ids":["\#(sha256(layer))"]}}"#.utf8)
        let configName = String(sha256(config).dropFirst(7)) + ".json"
        try Data(config).write(to: URL(fileURLWithPath: dir + "/" + configName))
        try #"[{"Config":"\#(configName)","RepoTags":["docker.io/library/hello:1"],"Layers":["abc/layer.tar"]}]"#
            .write(toFile: dir + "/manifest.json", atomically: true, encoding: .utf8)
        try run("tar", ["-C", dir, "-cf", tmp.sub("docker.tar"), "manifest.json", configName, "abc"])
        let store = try ImageStore(dataRoot: tmp.sub("store"))
        let result = try store.importImage(from: tmp.sub("docker.tar"))
        #expect(result.record.names == ["docker.io/library/hello:1"])
        let image = try store.resolve("hello:1")   // the short form finds it
        #expect(image.layerDiffIDs == [sha256(layer)])
        #expect(image.config.config?.cmd == ["/hello"])
    }
}
