import Foundation
import Testing

let isRoot = getuid() == 0

/// Runs a program; returns (status, stdout+stderr).
@discardableResult
func run(_ path: String, _ args: [String], input: Data? = nil) throws -> (status: Int32, output: String) {
    let p = Process()
    p.executableURL = URL(fileURLWithPath: path)
    p.arguments = args
    let pipe = Pipe()
    p.standardOutput = pipe
    p.standardError = pipe
    if let input {
        let inPipe = Pipe()
        p.standardInput = inPipe
        try p.run()
        inPipe.fileHandleForWriting.write(input)
        try inPipe.fileHandleForWriting.close()
    } else {
        p.standardInput = FileHandle.nullDevice
        try p.run()
    }
    let data = pipe.fileHandleForReading.readDataToEndOfFile()
    p.waitUntilExit()
    return (p.terminationStatus, String(decoding: data, as: UTF8.self))
}

/// Runs a shell command, failing the test (with its output) when it fails.
@discardableResult
func sh(_ command: String) throws -> String {
    let (status, output) = try run("/bin/sh", ["-c", command])
    if status != 0 { throw ShellFailure(description: "`\(command)` exited \(status): \(output)") }
    return output
}

struct ShellFailure: Error, CustomStringConvertible { let description: String }

/// A fresh directory under /tmp, removed at the end.
final class TempDir {
    let path: String
    init(_ tag: String) throws {
        var template = Array("/tmp/bh-guest-\(tag)-XXXXXX".utf8CString)
        guard mkdtemp(&template) != nil else { throw ShellFailure(description: "mkdtemp failed") }
        path = String(decoding: template.dropLast().map { UInt8(bitPattern: $0) }, as: UTF8.self)
    }
    deinit {
        _ = try? run("/bin/sh", ["-c", "grep -o ' \(path)[^ ]*' /proc/self/mountinfo | sort -r | xargs -r -n1 umount -l 2>/dev/null; rm -rf '\(path)'"])
    }
}

/// The repository's top directory (tests run from it under `swift test`, but do not rely on that).
let repoRoot: String = {
    var url = URL(fileURLWithPath: #filePath)
    for _ in 0..<3 { url.deleteLastPathComponent() }
    return url.path
}()

func commandExists(_ name: String) -> Bool {
    ["/usr/sbin", "/usr/bin", "/sbin", "/bin"].contains { FileManager.default.isExecutableFile(atPath: "\($0)/\(name)") }
}
