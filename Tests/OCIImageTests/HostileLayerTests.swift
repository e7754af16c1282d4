import Foundation
import OCIImage
import Testing
#if canImport(Glibc)
import Glibc
#endif

/// Layers built to escape the snapshot. Each must either be refused or land entirely inside the snapshot; the host
/// directory the layer aims at (a canary directory, and /etc/passwd) must be untouched either way.
@Suite(.enabled(if: Env.isRoot, "needs root: unpacking sets owners and creates device nodes"))
struct HostileLayerTests {
    /// `HOST` in entry names and link targets is replaced by the canary directory's absolute path.
    static let cases: [(String, [TarEntry])] = [
        ("absolute path", [.file("HOST/evil", "x")]),
        ("dot-dot path", [.file("../../../../../../HOST/evil", "x")]),
        ("dot-dot inside", [.dir("a"), .file("a/../../../../../../../HOST/evil", "x")]),
        ("write through symlink", [.symlink("link", to: "HOST"), .file("link/evil", "x")]),
        ("write through relative symlink", [.symlink("link", to: "../../../../../../../../HOST"), .file("link/evil", "x")]),
        ("file over symlink", [.symlink("evil", to: "HOST/evil"), .file("evil", "x")]),
        ("dir replaced by symlink", [.dir("d"), .file("d/ok", "ok"), .symlink("d", to: "HOST"), .file("d/evil", "x")]),
        ("symlink chain", [.symlink("a", to: "b"), .symlink("b", to: "HOST"), .file("a/evil", "x")]),
        ("hard link to host file", [.hardlink("passwd", to: "/etc/passwd")]),
        ("hard link via dot-dot", [.hardlink("passwd", to: "../../../../../../../etc/passwd")]),
        ("hard link through symlink", [.symlink("etc", to: "/etc"), .hardlink("passwd", to: "etc/passwd")]),
        ("hard link then write", [.hardlink("passwd", to: "/etc/passwd"), .file("passwd", "owned")]),
        ("whiteout escaping", [.file("../../../../HOST/.wh.keep", "")]),
        ("whiteout through symlink", [.symlink("w", to: "HOST"), .file("w/.wh.keep", "")]),
        ("opaque through symlink", [.symlink("o", to: "HOST"), .file("o/.wh..wh..opq", "")]),
        ("device through symlink", [.symlink("dev", to: "HOST"), TarEntry(name: "dev/evil", type: "chr", mode: 0o666, devmajor: 1, devminor: 3)]),
        ("chmod through symlink", [.symlink("x", to: "HOST"), TarEntry(name: "x", type: "dir", mode: 0o777)]),
        ("root replaced", [.symlink(".", to: "HOST")]),
    ]

    @Test(arguments: cases.indices)
    func hostileLayerCannotEscape(_ index: Int) throws {
        let (label, template) = Self.cases[index]
        let tmp = TempDir()
        let canary = tmp.sub("host")
        try FileManager.default.createDirectory(atPath: canary, withIntermediateDirectories: true)
        try "keep".write(toFile: canary + "/keep", atomically: true, encoding: .utf8)
        chmod(canary, 0o755)
        let canaryBefore = try treeListing(canary)
        let passwd = try #require(lstatOf("/etc/passwd"))
        let passwdBytes = try Data(contentsOf: URL(fileURLWithPath: "/etc/passwd"))

        let entries = template.map { e -> TarEntry in
            var e = e
            e.name = e.name.replacingOccurrences(of: "HOST", with: canary)
            e.linkname = e.linkname?.replacingOccurrences(of: "HOST", with: canary)
            return e
        }
        let b = try LayoutBuilder(dir: tmp.sub("layout"))
        try b.addLayer(entries)
        try b.finish()
        let store = try ImageStore(dataRoot: tmp.sub("store"))
        var outcome = "imported"
        do {
            _ = try store.importImage(from: b.dir, options: ImportOptions(name: "hostile"))
        } catch let error as ImageError {
            outcome = "refused: \(error)"
            #expect(try store.list().isEmpty)
        }
        print("hostile layer \(label): \(outcome)")
        // The host is untouched either way.
        #expect(try treeListing(canary) == canaryBefore, "\(label): \(outcome)")
        #expect(lstatOf(canary).map { $0.st_mode & 0o7777 } == 0o755, "\(label): \(outcome)")
        let after = try #require(lstatOf("/etc/passwd"))
        #expect(after.st_nlink == passwd.st_nlink && after.st_ino == passwd.st_ino, "\(label): \(outcome)")
        #expect(try Data(contentsOf: URL(fileURLWithPath: "/etc/passwd")) == passwdBytes)
        // And, when it was imported, what it wrote is inside the snapshot.
        if outcome == "imported" {
            let image = try store.resolve("hostile")
            let snapshot = tmp.sub("store/snapshots/\(image.layerDiffIDs[0].dropFirst(7))")
            let hasEvil = try run("find", [snapshot, "-name", "evil"]).isEmpty == false
                || entries.allSatisfy { !$0.name.hasSuffix("evil") }
            #expect(hasEvil, "\(label): contained")
        }
    }

    @Test func dotDotIsRefusedByName() throws {
        let tmp = TempDir()
        let b = try LayoutBuilder(dir: tmp.sub("layout"))
        try b.addLayer([.file("../evil", "x")])
        try b.finish()
        let store = try ImageStore(dataRoot: tmp.sub("store"))
        let error = #expect(throws: ImageError.self) { try store.importImage(from: b.dir) }
        #expect(error?.description.contains("\"../evil\"") == true)
        #expect(error?.description.contains("..") == true)
    }
}

@Suite(.enabled(if: Env.isRoot, "needs root"))
struct EntryNameTests {
    /// A name that is not UTF-8 is refused rather than silently renamed.
    @Test func nonUTF8NamesAreRefused() throws {
        let tmp = TempDir()
        let dir = tmp.sub("src")
        try FileManager.default.createDirectory(atPath: dir, withIntermediateDirectories: true)
        // "caf\xe9" (Latin-1), created through the C API so Foundation does not re-encode it.
        let name: [CChar] = Array("\(dir)/caf".utf8CString.dropLast()) + [CChar(bitPattern: 0xe9), 0]
        let fd = open(name, O_CREAT | O_WRONLY | O_CLOEXEC, 0o644)
        #expect(fd >= 0)
        close(fd)
        let layer = tmp.sub("layer.tar")
        try run("tar", ["--format=gnu", "-C", dir, "-cf", layer, "."])
        let b = try LayoutBuilder(dir: tmp.sub("layout"))
        let bytes = Array(try Data(contentsOf: URL(fileURLWithPath: layer)))
        b.layers.append((bytes, bytes, "application/vnd.oci.image.layer.v1.tar"))
        try b.finish()
        let store = try ImageStore(dataRoot: tmp.sub("store"))
        let error = #expect(throws: ImageError.self) { try store.importImage(from: b.dir) }
        #expect(error?.description.contains("not valid UTF-8") == true)
    }
}
