import Foundation

/// podman configured for a test: a containers.conf under `directory` that makes `runtime` (a bulkhead binary or
/// wrapper) the default OCI runtime speaking runc's JSON, with cgroupfs, file events and no default ulimits
/// (this machine's hard limits are lower than podman's defaults). Returns the environment to run podman with.
public enum PodmanSetup {
    public static func environment(directory dir: String, runtime: String) throws -> [String: String] {
        let conf = """
            [containers]
            default_ulimits = []
            [engine]
            runtime = "bulkhead"
            runtime_supports_json = ["bulkhead"]
            cgroup_manager = "cgroupfs"
            events_logger = "file"
            [engine.runtimes]
            bulkhead = ["\(runtime)"]
            """
        try conf.write(toFile: dir + "/containers.conf", atomically: true, encoding: .utf8)
        var env = ProcessInfo.processInfo.environment
        env["CONTAINERS_CONF"] = dir + "/containers.conf"
        return env
    }
}
