import ArgumentParser

/// Options every verb accepts, before or after the verb name (runc's contract puts them before).
public struct GlobalOptions: ParsableArguments, Sendable {
    public init() {}

    @Option(help: ArgumentHelp("Directory for runtime state of containers.", valueName: "dir"))
    public var root: String = "/run/bulkhead"

    @Option(name: .customLong("data-root"), help: ArgumentHelp("Directory for images, layers and caches.", valueName: "dir"))
    public var dataRoot: String = "/var/lib/bulkhead"

    @Option(help: ArgumentHelp("Also write log lines to this file.", valueName: "file"))
    public var log: String?

    @Option(name: .customLong("log-format"), help: "Log format: text or json.")
    public var logFormat: LogFormat = .text

    @Flag(help: "Log debug messages.")
    public var debug: Bool = false

    @Flag(name: .customLong("systemd-cgroup"),
          help: "Read linux.cgroupsPath as systemd's slice:prefix:name (the cgroupfs driver places it when systemd is not running).")
    public var systemdCgroup: Bool = false

    @Option(help: ArgumentHelp("Accepted for runc compatibility (true|false|auto); rootless mode is not implemented.", valueName: "value"))
    public var rootless: String?
}

public enum LogFormat: String, ExpressibleByArgument, Sendable, CaseIterable {
    case text, json
}
