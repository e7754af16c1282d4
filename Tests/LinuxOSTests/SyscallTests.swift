import Testing
import LinuxOS
#if canImport(Glibc)
import Glibc
#endif

@Suite struct SyscallTests {
    @Test func errorNamesOperationAndPath() throws {
        let error = #expect(throws: SystemError.self) {
            _ = try FileDescriptor.open("/nonexistent/bulkhead-test", O_RDONLY)
        }
        #expect(error?.errno == ENOENT)
        #expect(error?.description.contains("open /nonexistent/bulkhead-test") == true)
        #expect(error?.description.contains("check that the path exists") == true)
    }

    @Test func openedDescriptorsAreCloseOnExec() throws {
        let fd = try FileDescriptor.open("/proc/self/status", O_RDONLY)
        #expect(fcntl(fd.raw, F_GETFD) & FD_CLOEXEC != 0)
    }

    @Test func resolveInRootKeepsDotDotInside() throws {
        let dir = try FileDescriptor.open("/proc/self", O_RDONLY | O_DIRECTORY)
        // "../../etc/passwd" resolved in the root of /proc/self cannot reach the host's /etc/passwd.
        #expect(throws: SystemError.self) {
            _ = try dir.openAt2("../../etc/passwd", O_RDONLY, resolve: BH_RESOLVE_IN_ROOT_VALUE)
        }
        #expect(throws: SystemError.self) {
            _ = try dir.openAt2("../../etc/passwd", O_RDONLY, resolve: BH_RESOLVE_BENEATH_VALUE)
        }
    }

    @Test func readAllRefusesOverLimit() throws {
        let fd = try FileDescriptor.open("/proc/self/maps", O_RDONLY)
        #expect(throws: SystemError.self) { _ = try fd.readAll(limit: 8) }
    }
}

@Suite struct DirectoryOpsTests {
    @Test func removeTreeStaysInsideAndSkipsSymlinks() throws {
        var template = Array("/tmp/bh-dirops-XXXXXX".utf8CString)
        let base = String(cString: mkdtemp(&template)!)
        var outsideTemplate = Array("/tmp/bh-outside-XXXXXX".utf8CString)
        let outside = String(cString: mkdtemp(&outsideTemplate)!)
        defer { rmdir(outside) }
        let dir = try FileDescriptor.open(base, O_RDONLY | O_DIRECTORY)
        try dir.mkdir("a")
        let a = try dir.openDirectory("a")
        try a.mkdir("b")
        try a.symlink("escape", target: outside)
        let f = try a.openAt("file", O_WRONLY | O_CREAT)
        try f.writeAll("hello")
        #expect(try a.entries().sorted() == ["b", "escape", "file"])
        #expect(try a.readlink("escape") == outside)
        try dir.removeTree("a")
        let stillThere = dir.exists("a")
        #expect(!stillThere)
        #expect(access(outside, F_OK) == 0, "a symlink's target outside the tree must survive")
        rmdir(base)
    }

    @Test func mountinfoUnescapes() throws {
        #expect(Mount.unescapeMountinfoForTesting("a\\040b") == "a b")
        #expect(try Mount.mountPoints(under: "/proc").contains("/proc"))
    }
}
