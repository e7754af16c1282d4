import Foundation
import OCIRuntime
import Testing
import LinuxOS
#if canImport(Glibc)
import Glibc
#endif

/// The same bundles under `bulkhead` and under Debian's `runc`; what the container sees must match.
@Suite(.serialized, .enabled(if: TestEnv.canRunContainers && TestEnv.runc != nil, "needs root, busybox-static and runc"),
       .enabled(if: Mount.isMountPoint("/"), "/ is not a mount point here (a chroot onto a plain directory): pivot_root and mount propagation need one (runc fails the same way)"))
struct MatrixTests {
    /// What a container reports about itself, one `key=value` line each; mountinfo reduced to
    /// "mount point, filesystem type, per-mount flags" (ids and sources differ between runs by nature).
    static let probe = """
        echo "hostname=$(hostname)"; echo "id=$(id)"; echo "cwd=$(pwd)"; echo "umask=$(umask)"
        env | sort | sed 's/^/env=/'
        echo "fds=$(ls /proc/self/fd | sort | tr '\\n' ' ')"
        while read -r id parent dev root point opts rest; do
          fstype=${rest#*- }; fstype=${fstype%% *}
          echo "mount=$point $fstype $(echo $opts | tr ',' '\\n' | sort | tr '\\n' ',')"
        done < /proc/self/mountinfo | sort
        exit 5
        """

    struct Case: Sendable {
        var name: String
        var edit: @Sendable (inout Spec) -> Void
    }

    static let cases: [Case] = [
        Case(name: "default") { _ in },
        Case(name: "user-cwd-env") {
            $0.process?.user = Spec.User(uid: 1000, gid: 1000, umask: 0o027, additionalGids: [2000])
            $0.process?.cwd = "/tmp"
            $0.process?.env = ["PATH=/bin", "A=1", "B=two words"]
            $0.hostname = "matrix"
        },
        Case(name: "readonly-masked-binds") {
            $0.root?.readonly = true
            $0.linux?.maskedPaths = ["/proc/kcore", "/proc/acpi", "/etc/group"]
            $0.linux?.readonlyPaths = ["/proc/sys", "/tmp"]
            $0.mounts?.append(Spec.Mount(destination: "/data", type: "bind", source: "/etc", options: ["rbind", "ro", "nosuid", "nodev"]))
            $0.mounts?.append(Spec.Mount(destination: "/scratch", type: "tmpfs", source: "tmpfs", options: ["noexec", "size=1m", "mode=1777"]))
        },
        Case(name: "shared-namespaces") {
            // No pid/ipc/uts namespace of its own: the host's are shared (hostname is not set then).
            $0.linux?.namespaces = [.init(type: .mount), .init(type: .network)]
            $0.hostname = nil
            $0.mounts = $0.mounts?.filter { $0.type != "mqueue" }
        },
    ]

    func runBoth(_ c: Case) throws -> (bulkhead: TestEnv.Result, runc: TestEnv.Result) {
        let dir = try TestEnv.scratch("matrix-\(c.name)")
        defer { TestEnv.remove(dir) }
        let bundle = try TestEnv.busyboxBundle(at: dir, args: ["sh", "-c", Self.probe]) { spec in
            spec.process?.env = ["PATH=/bin", "TERM=xterm"]
            c.edit(&spec)
        }
        for applet in ["sed", "tr"] {
            try? FileManager.default.createSymbolicLink(atPath: bundle + "/rootfs/bin/" + applet, withDestinationPath: "busybox")
        }
        try FileManager.default.createDirectory(atPath: bundle + "/rootfs/etc/x", withIntermediateDirectories: true)
        let ours = try TestEnv.run([TestEnv.bulkhead, "--root", dir + "/bh", "run", "--bundle", bundle, "m-\(c.name)-\(getpid())"])
        let theirs = try TestEnv.run([TestEnv.runc!, "--root", dir + "/runc", "run", "--bundle", bundle, "m-\(c.name)-\(getpid())"])
        return (ours, theirs)
    }

    @Test(arguments: cases.map(\.name))
    func containerSeesTheSameWorld(_ name: String) throws {
        let c = Self.cases.first { $0.name == name }!
        let (ours, theirs) = try runBoth(c)
        #expect(theirs.code == 5, "runc failed: \(theirs.stderr)")
        #expect(ours.code == theirs.code, "bulkhead: \(ours.stderr)")
        let a = ours.stdout.split(separator: "\n").map(String.init)
        let b = theirs.stdout.split(separator: "\n").map(String.init)
        let onlyOurs = a.filter { !b.contains($0) }
        let onlyRunc = b.filter { !a.contains($0) }
        #expect(onlyOurs.isEmpty && onlyRunc.isEmpty, "only bulkhead: \(onlyOurs)\nonly runc: \(onlyRunc)")
    }
}
