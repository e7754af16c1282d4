import Foundation
import LinuxOS
import OCIImage
import Testing
#if canImport(Glibc)
import Glibc
#endif

/// Images written by tools nobody here wrote: umoci, skopeo, podman. Each test is skipped, with the reason, when its
/// tool is missing (scripts/setup installs them all).
enum Interop {
    /// The busybox OCI archive scripts/make-busybox-image builds with umoci, extracted to a layout directory too.
    static func busybox(in tmp: TempDir) throws -> (archive: String, layout: String) {
        let archive = tmp.sub("busybox.oci.tar")
        try run(Env.packageRoot + "/scripts/make-busybox-image", [archive])
        let layout = tmp.sub("busybox-layout")
        try FileManager.default.createDirectory(atPath: layout, withIntermediateDirectories: true)
        try run("tar", ["-xf", archive, "-C", layout])
        return (archive, layout)
    }

    /// Adds a second layer with umoci that deletes, replaces and adds files of every kind.
    static func addSecondLayer(_ layout: String, tmp: TempDir) throws {
        let bundle = tmp.sub("bundle-edit")
        try run("umoci", ["unpack", "--image", layout + ":latest", bundle])
        let root = bundle + "/rootfs"
        try run("sh", ["-c", """
            set -e
            cd '\(root)'
            rm bin/ls sbin/reboot etc/hostname
            rm -rf var/tmp && mkdir -m 0700 var/tmp && echo new > var/tmp/fresh
            mkdir -p usr/share/doc/bulkhead
            printf 'hello\\n' > usr/share/doc/bulkhead/README
            chown 1000:1001 usr/share/doc/bulkhead/README && chmod 0640 usr/share/doc/bulkhead/README
            printf '#!/bin/sh\\n' > usr/bin/suid && chmod 4755 usr/bin/suid
            ln usr/bin/suid usr/bin/suid-hardlink
            ln -s ../share/doc/bulkhead/README usr/bin/readme-link
            mkfifo -m 0600 var/fifo
            mknod -m 0660 dev/ttyX c 4 64
            """])
        try run("umoci", ["repack", "--image", layout + ":latest", bundle])
    }

    /// (path, type, mode, owner, link target, content digest) for everything under `root`.
    static func tree(_ root: String) throws -> [String] {
        let lines = try run("find", [root, "-mindepth", "1", "-printf", "%P|%y|%m|%U:%G|%l\n"]).split(separator: "\n")
        return try lines.map { line -> String in
            let fields = line.split(separator: "|", omittingEmptySubsequences: false)
            guard fields[1] == "f" else { return String(line) }
            let data = try Data(contentsOf: URL(fileURLWithPath: root + "/" + fields[0]))
            return String(line) + "|" + sha256(Array(data))
        }.sorted()
    }
}

@Suite(.enabled(if: Env.isRoot, "needs root: umoci and the store keep file owners; overlay mounts"))
struct InteropTests {
    @Test(.enabled(if: Env.has("umoci"), "umoci is not installed (Debian package umoci)"))
    func umociLayoutAndArchiveImport() throws {
        let tmp = TempDir()
        let (archive, layout) = try Interop.busybox(in: tmp)
        let store = try ImageStore(dataRoot: tmp.sub("store"))
        let fromArchive = try store.importImage(from: archive, options: ImportOptions(name: "busybox"))
        #expect(fromArchive.layersUnpacked == 1)
        let fromLayout = try store.importImage(from: layout, options: ImportOptions(name: "busybox:layout"))
        #expect(fromLayout.record.digest == fromArchive.record.digest)
        #expect(fromLayout.layersShared == 1 && fromLayout.bytesRead == 0)
        let image = try store.resolve("busybox")
        #expect(image.config.config?.cmd == ["/bin/sh"])
        let snapshot = tmp.sub("store/snapshots/\(image.layerDiffIDs[0].dropFirst(7))")
        #expect(lstatOf(snapshot + "/bin/busybox").map { $0.st_mode & S_IFMT == S_IFREG } == true)
        #expect(try FileManager.default.destinationOfSymbolicLink(atPath: snapshot + "/bin/ls") == "/bin/busybox")
    }

    @Test(.enabled(if: Env.has("umoci") && Env.has("skopeo"), "umoci or skopeo is not installed"))
    func skopeoArchivesImport() throws {
        let tmp = TempDir()
        let (_, layout) = try Interop.busybox(in: tmp)
        try Interop.addSecondLayer(layout, tmp: tmp)
        let ociArchive = tmp.sub("skopeo.oci.tar"), dockerArchive = tmp.sub("skopeo.docker.tar")
        try run("skopeo", ["copy", "--quiet", "oci:\(layout):latest", "oci-archive:\(ociArchive):busybox:2"])
        try run("skopeo", ["copy", "--quiet", "oci:\(layout):latest", "docker-archive:\(dockerArchive):bulkhead/busybox:2"])
        let store = try ImageStore(dataRoot: tmp.sub("store"))
        let fromLayout = try store.importImage(from: layout, options: ImportOptions(name: "umoci:2"))
        let oci = try store.importImage(from: ociArchive, options: ImportOptions(name: "skopeo-oci:2"))
        let docker = try store.importImage(from: dockerArchive)
        #expect(fromLayout.layersUnpacked == 2)
        #expect(oci.record.diffIDs == fromLayout.record.diffIDs)
        #expect(docker.record.diffIDs == fromLayout.record.diffIDs)
        #expect(docker.record.names == ["docker.io/bulkhead/busybox:2"])
        #expect(oci.layersUnpacked == 0 && docker.layersUnpacked == 0)   // layers are shared, not unpacked again
    }

    @Test(.enabled(if: Env.has("podman"), "podman is not installed"),
          .enabled(if: Mount.isMountPoint("/"), "/ is not a mount point here (a chroot onto a plain directory): podman's storage cannot remount it"))
    func podmanSaveImports() throws {
        let tmp = TempDir()
        let rootfs = tmp.sub("rootfs")
        try FileManager.default.createDirectory(atPath: rootfs + "/bin", withIntermediateDirectories: true)
        try run("cp", ["/bin/busybox", rootfs + "/bin/busybox"])
        try run("ln", ["-s", "busybox", rootfs + "/bin/sh"])
        try run("tar", ["-C", rootfs, "-cf", tmp.sub("rootfs.tar"), "."])
        // A private podman store, so the host's containers/storage is not touched.
        let podman = ["--root", tmp.sub("podman/root"), "--runroot", tmp.sub("podman/run"), "--storage-driver", "vfs", "--events-backend", "none"]
        try run("podman", podman + ["import", "--quiet", tmp.sub("rootfs.tar"), "localhost/bulkhead-test:1"])
        try run("podman", podman + ["save", "--quiet", "--format", "oci-archive", "-o", tmp.sub("podman.oci.tar"), "localhost/bulkhead-test:1"])
        try run("podman", podman + ["save", "--quiet", "--format", "docker-archive", "-o", tmp.sub("podman.docker.tar"), "localhost/bulkhead-test:1"])
        let store = try ImageStore(dataRoot: tmp.sub("store"))
        let oci = try store.importImage(from: tmp.sub("podman.oci.tar"))
        let docker = try store.importImage(from: tmp.sub("podman.docker.tar"), options: ImportOptions(name: "from-docker"))
        #expect(oci.record.names == ["localhost/bulkhead-test:1"])
        #expect(oci.layersUnpacked == 1)
        #expect(docker.record.diffIDs == oci.record.diffIDs)
        let image = try store.resolve("bulkhead-test:1")
        let merged = try store.prepareRootfs(image: image, containerID: "podman-test")
        defer { try? store.releaseRootfs(containerID: "podman-test") }
        #expect(try Data(contentsOf: URL(fileURLWithPath: merged + "/bin/busybox")) == Data(contentsOf: URL(fileURLWithPath: "/bin/busybox")))
    }

    /// The same two-layer image unpacked by `umoci unpack` and seen through our overlay rootfs: same names, types,
    /// modes, owners, link targets and file contents.
    @Test(.enabled(if: Env.has("umoci"), "umoci is not installed"))
    func treesMatchUmociUnpack() throws {
        let tmp = TempDir()
        let (_, layout) = try Interop.busybox(in: tmp)
        try Interop.addSecondLayer(layout, tmp: tmp)
        let store = try ImageStore(dataRoot: tmp.sub("store"))
        _ = try store.importImage(from: layout, options: ImportOptions(name: "two"))
        let image = try store.resolve("two")
        #expect(image.layerDiffIDs.count == 2)
        let merged = try store.prepareRootfs(image: image, containerID: "compare")
        defer { try? store.releaseRootfs(containerID: "compare") }
        try run("umoci", ["unpack", "--image", layout + ":latest", tmp.sub("umoci-bundle")])
        let theirs = try Interop.tree(tmp.sub("umoci-bundle/rootfs"))
        let ours = try Interop.tree(merged)
        #expect(theirs.count > 250)
        let onlyTheirs = Set(theirs).subtracting(ours).sorted(), onlyOurs = Set(ours).subtracting(theirs).sorted()
        #expect(onlyTheirs.isEmpty && onlyOurs.isEmpty, "only umoci: \(onlyTheirs.prefix(10)); only bulkhead: \(onlyOurs.prefix(10))")
        // Spot checks of what the second layer did.
        #expect(lstatOf(merged + "/bin/ls") == nil)
        #expect(lstatOf(merged + "/usr/bin/suid").map { $0.st_mode & 0o7777 } == 0o4755)
        #expect(lstatOf(merged + "/usr/bin/suid")?.st_ino == lstatOf(merged + "/usr/bin/suid-hardlink")?.st_ino)
        #expect(lstatOf(merged + "/dev/ttyX")?.st_rdev == makeDevice(major: 4, minor: 64))
    }

    /// Without a terminal (and under --log-format json) an import is quiet: one result line on stdout, nothing on stderr.
    @Test(.enabled(if: Env.has("umoci") && Env.bulkheadBinary != nil, "umoci missing, or the bulkhead binary is not built"))
    func importIsQuietWithoutTerminal() throws {
        let tmp = TempDir()
        let (archive, _) = try Interop.busybox(in: tmp)
        for extra in [[], ["--log-format", "json", "--log", tmp.sub("log.json")]] {
            let p = Process()
            p.executableURL = URL(fileURLWithPath: Env.bulkheadBinary!)
            p.arguments = extra + ["--data-root", tmp.sub("store"), "image", "import", archive, "--name", "quiet"]
            let out = Pipe(), err = Pipe()
            p.standardOutput = out
            p.standardError = err
            try p.run()
            let stdout = String(decoding: out.fileHandleForReading.readDataToEndOfFile(), as: UTF8.self)
            let stderr = String(decoding: err.fileHandleForReading.readDataToEndOfFile(), as: UTF8.self)
            p.waitUntilExit()
            #expect(p.terminationStatus == 0)
            #expect(stderr.isEmpty, "stderr: \(stderr)")
            #expect(stdout.split(separator: "\n").count == 1 && stdout.hasPrefix("imported quiet:latest sha256:"))
        }
    }

    @Test(.enabled(if: Env.has("umoci") && Env.bulkheadBinary != nil, "umoci missing, or the bulkhead binary is not built"))
    func concurrentImportsAndKilledImport() throws {
        let tmp = TempDir()
        let (archive, layout) = try Interop.busybox(in: tmp)
        let bin = Env.bulkheadBinary!
        let data = tmp.sub("store")
        // Four processes import at once (two sources of the same image, two names each).
        let procs = try (0..<4).map { i -> Process in
            let p = Process()
            p.executableURL = URL(fileURLWithPath: bin)
            p.arguments = ["--data-root", data, "image", "import", i % 2 == 0 ? archive : layout, "--name", "bb:\(i)"]
            p.standardOutput = FileHandle.nullDevice
            try p.run()
            return p
        }
        for p in procs { p.waitUntilExit(); #expect(p.terminationStatus == 0) }
        let store = try ImageStore(dataRoot: data)
        let images = try store.list()
        #expect(images.count == 1)
        #expect(Set(images[0].names) == ["bb:0", "bb:1", "bb:2", "bb:3"])
        #expect(try FileManager.default.contentsOfDirectory(atPath: data + "/snapshots").count == 1)
        #expect(try FileManager.default.contentsOfDirectory(atPath: data + "/tmp").isEmpty)

        // A killed import leaves nothing that `image ls` shows and nothing that blocks the next one.
        let big = try LayoutBuilder(dir: tmp.sub("big"))
        try big.addLayer((0..<3000).map { TarEntry.file("d\($0 % 30)/f\($0)", String(repeating: "x", count: 4096)) })
        try big.finish()
        let p = Process()
        p.executableURL = URL(fileURLWithPath: bin)
        p.arguments = ["--data-root", data, "image", "import", big.dir, "--name", "killed"]
        try p.run()
        usleep(30_000)
        kill(p.processIdentifier, SIGKILL)
        p.waitUntilExit()
        let after = try store.list()
        #expect(after.allSatisfy { !$0.names.contains("killed:latest") } || p.terminationReason == .exit)
        let again = try store.importImage(from: big.dir, options: ImportOptions(name: "killed"))
        #expect(again.record.names == ["killed:latest"])
        #expect(try FileManager.default.contentsOfDirectory(atPath: data + "/tmp").isEmpty)
    }
}
