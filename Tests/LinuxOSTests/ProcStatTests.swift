import Testing
import Foundation
import LinuxOS

/// statFields reads /proc/PID/stat as bytes; it must agree with a plain reading of the same file, also for a process
/// whose command name has spaces and parentheses in it.
@Suite struct ProcStatTests {
    static func reference(_ pid: Int32) throws -> (Character, UInt64) {
        let text = try String(contentsOfFile: "/proc/\(pid)/stat", encoding: .utf8)
        let after = text[text.index(after: text.lastIndex(of: ")")!)...].split(separator: " ")
        return (after[0].first!, UInt64(after[19])!)
    }

    @Test func ownStatMatchesAPlainReading() throws {
        let (state, start) = try ChildProcess.statFields(getpid())
        let (refState, refStart) = try Self.reference(getpid())
        #expect(state == refState && start == refStart && start > 0)
    }

    @Test func aCommandNameWithSpacesAndParenthesesIsSkipped() throws {
        let dir = FileManager.default.temporaryDirectory.appendingPathComponent("stat-\(getpid())")
        try FileManager.default.createDirectory(at: dir, withIntermediateDirectories: true)
        defer { try? FileManager.default.removeItem(at: dir) }
        let odd = dir.appendingPathComponent("a) b (c) d")
        try FileManager.default.copyItem(atPath: "/bin/sleep", toPath: odd.path)
        let pid = try ChildProcess.spawn(odd.path, arguments: [odd.lastPathComponent, "30"], environment: [])
        defer { kill(pid, SIGKILL); var status: Int32 = 0; _ = waitpid(pid, &status, 0) }
        // Until the exec has happened, the child still bears the test runner's name.
        for _ in 0..<200 where ((try? String(contentsOfFile: "/proc/\(pid)/stat", encoding: .utf8)) ?? "").contains("(a) b (c) d)") == false {
            usleep(10_000)
        }
        let (state, start) = try ChildProcess.statFields(pid)
        let (refState, refStart) = try Self.reference(pid)
        #expect(try String(contentsOfFile: "/proc/\(pid)/stat", encoding: .utf8).contains("(a) b (c) d)"))
        #expect(state == refState && start == refStart)
        #expect(throws: SystemError.self) { try ChildProcess.statFields(Int32.max - 1) }
    }
}

/// mkdir -p on host paths (state root, image store, audit log directory, microVM files).
@Suite struct MakeDirectoriesTests {
    @Test func makesWhatIsMissingKeepsWhatExistsAndNamesAFailure() throws {
        let base = FileManager.default.temporaryDirectory.path + "/mkdirs-\(getpid())"
        defer { try? FileManager.default.removeItem(atPath: base) }
        try HostPath.makeDirectories(base + "//a/b/", mode: 0o711)
        var st = stat()
        #expect(stat(base + "/a/b", &st) == 0 && st.st_mode & S_IFMT == S_IFDIR && st.st_mode & 0o077 & ~0o011 == 0)
        try HostPath.makeDirectories(base + "/a/b/c", mode: 0o700)   // the existing part is left as it is
        #expect(stat(base + "/a/b/c", &st) == 0 && st.st_mode & S_IFMT == S_IFDIR)
        #expect(FileManager.default.createFile(atPath: base + "/file", contents: nil))
        do {
            try HostPath.makeDirectories(base + "/file/x", mode: 0o700)
            Issue.record("a directory was made under a file")
        } catch let e as SystemError {
            #expect(e.description.contains(base + "/file/x") && e.errno == ENOTDIR, "\(e)")
        }
    }
}
