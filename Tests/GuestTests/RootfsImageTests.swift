import Foundation
import LinuxOS
import Testing
@testable import GuestImage

let digestA = "sha256:" + String(repeating: "a", count: 64)
let digestB = "sha256:" + String(repeating: "b", count: 64)

/// A manifest of a tree: one line per entry with type, mode, owner, size, mtime and link target.
func manifest(_ dir: String) throws -> String {
    try sh("cd '\(dir)' && find . -mindepth 1 ! -name lost+found ! -path './lost+found/*' -printf '%p %y %m %U:%G %s %Ts %l\\n' | awk '$2 == \"d\" { $5 = \"-\" } { print }' | sort")
}

/// Content hashes of the regular files a shell can name (paths under PATH_MAX).
func contentHashes(_ dir: String) throws -> String {
    try sh("cd '\(dir)' && find . -type f ! -path './lost+found/*' -printf '%p\\n' | awk 'length($0) < 3000' | sort | while read -r f; do printf '%s ' \"$f\"; md5sum < \"$f\"; done")
}

func mountImage(_ image: RootfsImage, at dir: String) throws {
    try sh("mkdir -p '\(dir)' && mount -t \(image.format.rawValue) -o loop,ro '\(image.path)' '\(dir)'")
}

@Suite struct RootfsImageNames {
    @Test func digestsAreCheckedBeforeNamingAFile() throws {
        #expect(try RootfsImageStore.fileName(digest: digestA, format: .erofs) == "sha256-" + String(repeating: "a", count: 64) + ".erofs")
        for bad in ["sha256:../../etc/passwd", "sha256:" + String(repeating: "A", count: 64), "sha512:" + String(repeating: "a", count: 64),
                    "sha256:" + String(repeating: "a", count: 63), "sha256:" + String(repeating: "a", count: 63) + "/", ""] {
            #expect(throws: (any Error).self, "\(bad)") { try RootfsImageStore.fileName(digest: bad, format: .ext4) }
        }
    }
}

@Suite(.serialized) struct RootfsImageBuilds {
    static let canMount = isRoot && commandExists("mkfs.erofs") && commandExists("mke2fs") && FileManager.default.fileExists(atPath: "/dev/loop-control")

    @Test(.enabled(if: canMount, "needs root, loop devices, mkfs.erofs and mke2fs"), arguments: RootfsFormat.allCases)
    func anOrdinaryTreeComesOutIdentical(format: RootfsFormat) throws {
        let t = try TempDir("rootfs-\(format)")
        let src = t.path + "/src"
        try sh("""
            mkdir -p \(src)/bin \(src)/etc/empty \(src)/tmp && cp /bin/busybox \(src)/bin/busybox && ln -s busybox \(src)/bin/sh
            printf 'root:x:0:0::/root:/bin/sh\\n' > \(src)/etc/passwd && chmod 0644 \(src)/etc/passwd
            chmod 1777 \(src)/tmp && touch \(src)/etc/owned && chown 1000:100 \(src)/etc/owned && chmod 4755 \(src)/etc/owned
            ln \(src)/etc/passwd \(src)/etc/passwd.hard && mkfifo \(src)/etc/fifo && mknod \(src)/etc/nul c 1 3
            touch -d '2001-02-03 04:05:06' \(src)/etc/passwd
            """)
        let store = RootfsImageStore(directory: t.path + "/cache")
        let image = try store.image(digest: digestA, source: src, format: format)
        #expect(image.built)
        #expect(image.summary?.files == 4)  // busybox, passwd, its hard link, owned
        try mountImage(image, at: t.path + "/mnt")
        #expect(try manifest(t.path + "/mnt") == manifest(src))
        #expect(try contentHashes(t.path + "/mnt") == contentHashes(src))
        // Hard links stay hard links.
        #expect(try sh("stat -c %h '\(t.path)/mnt/etc/passwd'").hasPrefix("2"))
        // Cached: a second call does not rebuild, and the file is read-only.
        let again = try store.image(digest: digestA, source: src, format: format)
        #expect(!again.built && again.path == image.path)
        #expect(try sh("stat -c %a '\(image.path)'").hasPrefix("444"))
        // Only the image and its lock are in the cache directory.
        #expect(try sh("ls -A '\(t.path)/cache'").split(separator: "\n").sorted() == [".\(try RootfsImageStore.fileName(digest: digestA, format: .erofs)).lock", try RootfsImageStore.fileName(digest: digestA, format: format)].sorted().map { Substring($0) })
    }

    /// The input is an overlay-merged view: deleted files and opaque directories of the upper layer must
    /// come out as absent, not as whiteout devices.
    @Test(.enabled(if: canMount, "needs root, loop devices, overlayfs, mkfs.erofs and mke2fs"), arguments: RootfsFormat.allCases)
    func whiteoutsOfAMergedViewComeOutRight(format: RootfsFormat) throws {
        let t = try TempDir("whiteout-\(format)")
        let p = t.path
        try sh("""
            mkdir -p \(p)/lower/keep \(p)/lower/gone-dir/sub \(p)/lower/opaque \(p)/upper \(p)/work \(p)/merged
            echo keep > \(p)/lower/keep/a && echo old > \(p)/lower/gone && echo x > \(p)/lower/gone-dir/sub/f
            echo hidden > \(p)/lower/opaque/old
            mount -t overlay overlay -o lowerdir=\(p)/lower,upperdir=\(p)/upper,workdir=\(p)/work \(p)/merged
            cd \(p)/merged && rm gone && rm -r gone-dir opaque && mkdir opaque && echo new > opaque/new && echo changed > keep-new
            test -c \(p)/upper/gone
            """)
        let store = RootfsImageStore(directory: p + "/cache")
        let image = try store.image(digest: digestB, source: p + "/merged", format: format)
        try mountImage(image, at: p + "/mnt")
        let listing = try sh("cd \(p)/mnt && find . -mindepth 1 ! -path './lost+found*' | sort")
        #expect(listing.split(separator: "\n") == ["./keep", "./keep-new", "./keep/a", "./opaque", "./opaque/new"])
        // A raw layer (whiteouts still in it) is refused with a message saying what to pass instead.
        #expect(throws: (any Error).self) { try store.image(digest: digestA, source: p + "/upper", format: format) }
        do { _ = try store.image(digest: digestA, source: p + "/upper", format: format) } catch {
            #expect("\(error)".contains("merged root"))
        }
    }

    /// Large and many files, a deep tree with paths far over PATH_MAX, symlinks pointing everywhere:
    /// the image holds exactly the tree, and nothing is written outside the cache directory.
    @Test(.enabled(if: canMount, "needs root, loop devices, mkfs.erofs and mke2fs"), arguments: RootfsFormat.allCases)
    func hostileTreesBuildCorrectlyAndStayInTheCache(format: RootfsFormat) throws {
        let t = try TempDir("hostile-\(format)")
        let src = t.path + "/src", outside = t.path + "/outside", cache = t.path + "/cache"
        let name200 = String(repeating: "d", count: 200)
        try sh("""
            mkdir -p \(src)/many \(outside) && echo sentinel > \(outside)/sentinel
            truncate -s 64M \(src)/big && printf 'tail' | dd of=\(src)/big bs=1 seek=67108860 conv=notrunc status=none
            head -c 1000000 /dev/urandom > \(src)/random
            cd \(src)/many && seq 1 3000 | xargs touch && seq 1 300 | xargs -I{} sh -c 'echo {} > f{}'
            ln -s /etc/shadow \(src)/abs && ln -s ../../../../../../.. \(src)/up && ln -s \(outside) \(src)/out && ln -s \(cache) \(src)/cache-link
            ln -s loop1 \(src)/loop2 && ln -s loop2 \(src)/loop1 && ln -s "$(printf 'x%.0s' $(seq 1 1000))" \(src)/longtarget
            ln -s sha256-\(String(repeating: "c", count: 64)).\(format.rawValue) \(src)/trap
            """)
        // 30 levels of 200-byte names: paths of 6000+ bytes, beyond PATH_MAX; made with *at() calls.
        var dir = try FileDescriptor.open(src, O_RDONLY | O_DIRECTORY)
        try dir.mkdir("deep")
        dir = try dir.openAt("deep", O_RDONLY | O_DIRECTORY)
        for _ in 0..<30 {
            try dir.mkdir(name200)
            dir = try dir.openAt(name200, O_RDONLY | O_DIRECTORY)
        }
        let bottom = try dir.openAt("file", O_WRONLY | O_CREAT, mode: 0o644)
        try bottom.writeAll("bottom\n")
        let before = try sh("cd \(outside) && ls -lA && md5sum sentinel")
        let store = RootfsImageStore(directory: cache)
        let digest = "sha256:" + String(repeating: "c", count: 64)
        // mkfs.erofs 1.5 cannot hold paths over PATH_MAX: asked for erofs strictly, the build says so;
        // by default it falls back to ext4.
        if format == .erofs {
            #expect(throws: (any Error).self) { try store.image(digest: digest, source: src, format: .erofs, fallback: false) }
        }
        let image = try store.image(digest: digest, source: src, format: format)
        #expect(image.format == .ext4)
        #expect((image.summary?.maxPathLength ?? 0) > 6000)
        try mountImage(image, at: t.path + "/mnt")
        #expect(try manifest(t.path + "/mnt") == manifest(src))
        #expect(try contentHashes(t.path + "/mnt") == contentHashes(src))
        #expect(try sh("tail -c 4 '\(t.path)/mnt/big'") == "tail")
        #expect(try sh("cd '\(t.path)/mnt' && find deep -name file -execdir cat {} \\;") == "bottom\n")
        #expect(try sh("readlink '\(t.path)/mnt/out'") == outside + "\n")
        // Nothing outside changed; the cache holds only the image and its lock.
        #expect(try sh("cd \(outside) && ls -lA && md5sum sentinel") == before)
        #expect(try sh("ls -A \(cache) | wc -l").trimmingCharacters(in: .whitespacesAndNewlines) == "2")
    }

    @Test(.enabled(if: isRoot, "needs root to create the tree"))
    func sourcesThatAreSymlinksOrTooDeepAreRefused() throws {
        let t = try TempDir("refuse")
        try sh("mkdir -p \(t.path)/real/a/b/c/d && ln -s \(t.path)/real \(t.path)/link")
        var store = RootfsImageStore(directory: t.path + "/cache")
        #expect(throws: (any Error).self) { try store.image(digest: digestA, source: t.path + "/link") }
        store.maxDepth = 3
        #expect(throws: (any Error).self) { try store.image(digest: digestA, source: t.path + "/real") }
        store.maxDepth = 4
        #expect(try store.image(digest: digestA, source: t.path + "/real").built)
    }
}

@Suite struct InitramfsBuild {
    @Test(.enabled(if: commandExists("bsdcpio") || commandExists("cpio"), "needs bsdcpio or cpio to list the archive"))
    func holdsTheAgentAsInitAndAConsole() throws {
        let t = try TempDir("initramfs")
        // Any static ELF stands in for the agent here.
        let out = t.path + "/initramfs.cpio"
        try Initramfs.build(agent: "/bin/busybox", output: out)
        let tool = commandExists("bsdcpio") ? "bsdcpio" : "cpio"
        let listing = try sh("\(tool) -itv < \(out) 2>/dev/null")
        #expect(listing.contains("init"))
        #expect(listing.split(separator: "\n").contains { $0.hasPrefix("crw") && $0.hasSuffix("dev/console") })
        #expect(listing.split(separator: "\n").contains { $0.hasPrefix("-rwxr-xr-x") && $0.hasSuffix(" init") })
        try sh("mkdir \(t.path)/x && cd \(t.path)/x && \(tool) -id init < \(out) 2>/dev/null && test -x init && head -c 4 init | grep -q ELF")
        // Not an ELF: refused.
        #expect(throws: (any Error).self) { try Initramfs.build(agent: "/etc/passwd", output: t.path + "/bad.cpio") }
        #expect(!FileManager.default.fileExists(atPath: t.path + "/bad.cpio"))
    }
}
