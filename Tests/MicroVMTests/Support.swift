import Foundation
import Testing
@testable import MicroVM
import LinuxOS
import TestSupport

/// Whether this host can run the KVM tests, and why not.
enum Host {
    static let hasKVM = FileManager.default.isReadableFile(atPath: "/dev/kvm") && getuid() == 0
    static let hasCompiler = FileManager.default.isExecutableFile(atPath: "/usr/bin/gcc")
    static let canRunGuests = hasKVM && hasCompiler
    static let kvmReason: Comment = "needs /dev/kvm (as root) and gcc to build the test guests"
    /// A VMM that ended early must fail its test, not kill the test process when the test writes to its stdin.
    static let ignoresSIGPIPE: Bool = { signal(SIGPIPE, SIG_IGN); return true }()
}

/// The freestanding test guests (built by TestSupport's ``FreestandingGuests``).
enum Guests {
    static func elf(_ name: String) throws -> String { try FreestandingGuests.elf(name) }
    static func flat(_ name: String) throws -> String { try FreestandingGuests.flat(name) }
}

struct CommandFailed: Error, CustomStringConvertible { let description: String }

/// Runs a tool, throwing with its stderr when it fails.
@discardableResult
func run(_ tool: String, _ arguments: [String]) throws -> String {
    let process = Process()
    process.executableURL = URL(fileURLWithPath: tool)
    process.arguments = arguments
    let out = Pipe(), err = Pipe()
    process.standardOutput = out
    process.standardError = err
    try process.run()
    let data = out.fileHandleForReading.readDataToEndOfFile()
    let errors = err.fileHandleForReading.readDataToEndOfFile()
    process.waitUntilExit()
    guard process.terminationStatus == 0 else {
        throw CommandFailed(description: "\(tool) \(arguments.joined(separator: " ")) failed: \(String(decoding: errors, as: UTF8.self))")
    }
    return String(decoding: data, as: UTF8.self)
}

/// The `bulkhead` binary built beside this test bundle.
enum BulkheadBinary {
    static var path: String {
        _ = Host.ignoresSIGPIPE
        let exe = (try? FileManager.default.destinationOfSymbolicLink(atPath: "/proc/self/exe")) ?? CommandLine.arguments[0]
        var dir = URL(fileURLWithPath: exe).deletingLastPathComponent()
        while dir.path != "/" {
            let candidate = dir.appendingPathComponent("bulkhead").path
            if FileManager.default.isExecutableFile(atPath: candidate), !candidate.hasSuffix(".xctest") { return candidate }
            dir = dir.deletingLastPathComponent()
        }
        return "bulkhead"
    }

    struct Result {
        var status: Int32
        var stdout: String
        var stderr: String
    }

    /// Runs `bulkhead args…` to completion (with a timeout that kills it and fails loudly).
    static func run(_ arguments: [String], timeout: TimeInterval = 30) throws -> Result {
        let process = Process()
        process.executableURL = URL(fileURLWithPath: path)
        process.arguments = arguments
        let outPath = FileManager.default.temporaryDirectory.appendingPathComponent("bulkhead-out-\(UUID().uuidString)").path
        let errPath = outPath + ".err"
        _ = FileManager.default.createFile(atPath: outPath, contents: nil)
        _ = FileManager.default.createFile(atPath: errPath, contents: nil)
        defer { unlink(outPath); unlink(errPath) }
        process.standardOutput = FileHandle(forWritingAtPath: outPath)
        process.standardError = FileHandle(forWritingAtPath: errPath)
        process.standardInput = FileHandle.nullDevice
        try process.run()
        let deadline = Date().addingTimeInterval(timeout)
        while process.isRunning && Date() < deadline { usleep(5_000) }
        let timedOut = process.isRunning
        if timedOut { process.terminate() }
        process.waitUntilExit()
        let out = (try? String(contentsOfFile: outPath, encoding: .utf8)) ?? ""
        let err = (try? String(contentsOfFile: errPath, encoding: .utf8)) ?? ""
        if timedOut {
            throw CommandFailed(description: "bulkhead \(arguments.joined(separator: " ")) did not finish in \(Int(timeout)) s; output: \(out) \(err)")
        }
        return Result(status: process.terminationStatus, stdout: out, stderr: err)
    }
}

/// FNV-1a 64, as the block-reader guest computes it.
func fnv1a64(_ bytes: [UInt8]) -> UInt64 {
    var hash: UInt64 = 0xcbf2_9ce4_8422_2325
    for b in bytes { hash ^= UInt64(b); hash = hash &* 0x100_0000_01b3 }
    return hash
}

/// A temporary file with `bytes`, removed by the caller.
func temporaryFile(_ bytes: [UInt8], suffix: String = ".img") throws -> String {
    let path = FileManager.default.temporaryDirectory.appendingPathComponent("bulkhead-\(UUID().uuidString)\(suffix)").path
    try Data(bytes).write(to: URL(fileURLWithPath: path))
    return path
}
