import Foundation
#if canImport(Glibc)
import Glibc
#endif

/// A containerd daemon of a test's own: config, root, state and socket under `directory`, no CRI plugin, waited
/// for until its socket exists. `stop()` ends it.
public final class PrivateContainerd {
    public let socket: String
    private let process = Foundation.Process()

    public init(binary: String, directory dir: String) throws {
        socket = dir + "/containerd.sock"
        let config = """
            version = 2
            root = "\(dir)/root"
            state = "\(dir)/state"
            disabled_plugins = ["io.containerd.grpc.v1.cri"]
            [grpc]
              address = "\(socket)"
            [ttrpc]
              address = "\(socket).ttrpc"
            """
        try config.write(toFile: dir + "/config.toml", atomically: true, encoding: .utf8)
        process.executableURL = URL(fileURLWithPath: binary)
        process.arguments = ["--config", dir + "/config.toml", "--log-level", "warn"]
        process.standardOutput = FileHandle.nullDevice
        process.standardError = FileHandle(forWritingAtPath: "/dev/null")
        try process.run()
        for _ in 0..<200 where !FileManager.default.fileExists(atPath: socket) { usleep(20_000) }
    }

    public func stop() {
        process.terminate()
        process.waitUntilExit()
    }
}
