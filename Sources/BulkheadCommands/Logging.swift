import Logging
import LinuxOS
#if canImport(Glibc)
import Glibc
#endif

/// Where log lines go: stderr for people (text) and, with `--log`, a file in text or runc's JSON
/// line format (`{"level":"error","msg":"…","time":"…"}`), which container engines read back.
struct BulkheadLogHandler: LogHandler {
    var metadata: Logger.Metadata = [:]
    var logLevel: Logger.Level
    let format: LogFormat
    let fileFD: Int32?      // owned by `LogSink`, which lives for the whole process
    let toStderr: Bool

    subscript(metadataKey key: String) -> Logger.Metadata.Value? {
        get { metadata[key] }
        set { metadata[key] = newValue }
    }

    func log(event: LogEvent) {
        let level = event.level, message = event.message
        var all = metadata
        if let extra = event.metadata { all.merge(extra) { $1 } }
        if toStderr && (fileFD == nil || level >= .error) {
            var text = level >= .error ? "bulkhead: error: \(message)" : "bulkhead: \(message)"
            if !all.isEmpty { text += " " + all.sorted { $0.key < $1.key }.map { "\($0.key)=\($0.value)" }.joined(separator: " ") }
            writeLine(2, text)
        }
        if let fileFD {
            let line: String
            switch format {
            case .text:
                line = "time=\"\(Timestamp.now())\" level=\(level.runcName) msg=\"\(message)\""
            case .json:
                var fields = "{\"level\":\"\(level.runcName)\",\"msg\":\(JSONString.quote("\(message)"))"
                for (key, value) in all.sorted(by: { $0.key < $1.key }) {
                    fields += ",\(JSONString.quote(key)):\(JSONString.quote("\(value)"))"
                }
                line = fields + ",\"time\":\"\(Timestamp.now())\"}"
            }
            writeLine(fileFD, line)
        }
    }

    private func writeLine(_ fd: Int32, _ text: String) {
        // One write(2) per line, on an O_APPEND fd: concurrent writers never interleave within a line.
        var bytes = Array(text.utf8)
        bytes.append(0x0a)
        bytes.withUnsafeBytes { buffer in
            var offset = 0
            while offset < buffer.count {
                let n = Glibc.write(fd, buffer.baseAddress! + offset, buffer.count - offset)
                if n < 0 { if errno == EINTR { continue } else { return } }
                offset += n
            }
        }
    }
}

extension Logger.Level {
    /// The level names runc and logrus use.
    var runcName: String {
        switch self {
        case .trace, .debug: "debug"
        case .info, .notice: "info"
        case .warning: "warning"
        case .error: "error"
        case .critical: "fatal"
        }
    }
}

/// JSON string quoting without going through an encoder (used on the error path and for log lines).
public enum JSONString {
    public static func quote(_ s: String) -> String {
        var out = "\""
        for scalar in s.unicodeScalars {
            switch scalar {
            case "\"": out += "\\\""
            case "\\": out += "\\\\"
            case "\n": out += "\\n"
            case "\r": out += "\\r"
            case "\t": out += "\\t"
            case _ where scalar.value < 0x20:
                let hex = String(scalar.value, radix: 16)
                out += "\\u" + String(repeating: "0", count: 4 - hex.count) + hex
            default: out.unicodeScalars.append(scalar)
            }
        }
        return out + "\""
    }
}

/// RFC 3339 timestamps with nanoseconds, in UTC, as runc writes them.
public enum Timestamp {
    public static func now() -> String {
        var ts = timespec()
        clock_gettime(CLOCK_REALTIME, &ts)
        return format(seconds: ts.tv_sec, nanoseconds: Int(ts.tv_nsec))
    }

    public static func format(seconds: Int, nanoseconds: Int = 0) -> String {
        var t = time_t(seconds)
        var tmv = tm()
        gmtime_r(&t, &tmv)
        func pad(_ v: Int32, _ width: Int) -> String {
            let s = String(v)
            return String(repeating: "0", count: max(0, width - s.count)) + s
        }
        let ns = String(nanoseconds)
        return "\(pad(tmv.tm_year + 1900, 4))-\(pad(tmv.tm_mon + 1, 2))-\(pad(tmv.tm_mday, 2))T"
            + "\(pad(tmv.tm_hour, 2)):\(pad(tmv.tm_min, 2)):\(pad(tmv.tm_sec, 2))."
            + String(repeating: "0", count: 9 - ns.count) + ns + "Z"
    }
}

/// Process-wide logging set-up, done once from the global options.
public enum LogSink {
    nonisolated(unsafe) private static var configured = false

    /// Configures swift-log for this process. Called once, before any verb runs.
    public static func configure(_ options: GlobalOptions) {
        if configured { return }
        configured = true
        var fd: Int32? = nil
        if let path = options.log {
            let raw = open(path, O_WRONLY | O_CREAT | O_APPEND | O_CLOEXEC, 0o644)
            if raw >= 0 { fd = raw } else {
                let msg = "bulkhead: warning: cannot open log file \(path): \(String(cString: strerror(errno)))\n"
                _ = msg.withCString { Glibc.write(2, $0, strlen($0)) }
            }
        }
        let level: Logger.Level = options.debug ? .debug : .info
        let format = options.logFormat
        let fileFD = fd
        LoggingSystem.bootstrap { _ in
            BulkheadLogHandler(logLevel: level, format: format, fileFD: fileFD, toStderr: true)
        }
    }
}
