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
