import Foundation
import LinuxOS
import OCIRuntime
import Testing
#if canImport(Glibc)
import Glibc
#endif

/// Real containers through the `bulkhead` binary: the runc verbs, the created→started split, errors engines
/// read, and tear-down after failures. Needs root and busybox-static.
@Suite(.serialized, .enabled(if: TestEnv.canRunContainers, "needs root and busybox-static (/bin/busybox)"),
       .enabled(if: Mount.isMountPoint("/"), "/ is not a mount point here (a chroot onto a plain directory): pivot_root and mount propagation need one (runc fails the same way)"))
struct ContainerTests {
    let root: String
    let dir: String

    init() throws {
        dir = try TestEnv.scratch("ct")
        root = dir + "/state"
    }

    func bh(_ args: [String], stdin: String? = nil) throws -> TestEnv.Result {
        try TestEnv.run([TestEnv.bulkhead, "--root", root] + args, stdin: stdin)
    }

    func cgroupExists(_ id: String) -> Bool {
        FileManager.default.fileExists(atPath: "/sys/fs/cgroup/pids/bulkhead/\(id)")
            || FileManager.default.fileExists(atPath: "/sys/fs/cgroup/bulkhead/\(id)")
    }

    @Test func runReportsTheExitStatusAndSeesItsOwnWorld() throws {
        defer { TestEnv.remove(dir) }
        let bundle = try TestEnv.busyboxBundle(at: dir, args: ["sh", "-c", "echo hello; hostname; id -u; ps -o pid | wc -l; exit 7"]) {
            $0.hostname = "box"
        }
        let r = try bh(["run", "--bundle", bundle, TestEnv.uniqueID("run")])
        #expect(r.code == 7, "stderr: \(r.stderr)")
        let lines = r.stdout.split(separator: "\n").map(String.init)
        #expect(lines.first == "hello")
        #expect(lines.contains("box"))
        // Only the container's processes are visible (sh, ps, wc + the header line).
        #expect(lines.last.flatMap { Int($0.trimmingCharacters(in: .whitespaces)) }.map { $0 <= 4 } == true, "\(lines)")
    }

    @Test func createWaitsUntilStartThenStateAndDeleteFollow() throws {
        defer { TestEnv.remove(dir) }
        let marker = dir + "/bundle/rootfs/tmp/started"
        let bundle = try TestEnv.busyboxBundle(at: dir, args: ["sh", "-c", "touch /tmp/started; sleep 30"]) { $0.root?.readonly = false }
        let id = TestEnv.uniqueID("life")
        let created = try bh(["create", "--bundle", bundle, "--pid-file", dir + "/pid", id])
        #expect(created.code == 0, "\(created.stderr)")
        let state = try JSONDecoder().decode(ContainerStateJSON.self, from: Data(try bh(["state", id]).stdout.utf8))
        #expect(state.status == "created")
        #expect(state.pid > 0)
        #expect(try String(contentsOfFile: dir + "/pid", encoding: .utf8) == String(state.pid))
        #expect(cgroupExists(id))
        usleep(200_000)
        #expect(!FileManager.default.fileExists(atPath: marker), "the program ran before start")
        #expect(try bh(["start", id]).code == 0)
        for _ in 0..<100 where !FileManager.default.fileExists(atPath: marker) { usleep(20_000) }
        #expect(FileManager.default.fileExists(atPath: marker))
        #expect(try bh(["state", id]).stdout.contains("\"running\""))
        let refused = try bh(["delete", id])
        #expect(refused.code == 1)
        #expect(refused.stderr.contains("not stopped"))
        #expect(try bh(["kill", id, "KILL"]).code == 0)
        for _ in 0..<100 where !(try bh(["state", id]).stdout.contains("\"stopped\"")) { usleep(20_000) }
        #expect(try bh(["state", id]).stdout.contains("\"stopped\""))
        let again = try bh(["kill", id, "9"])
        #expect(again.code == 1)
        #expect(again.stderr.contains("container not running"))
        #expect(try bh(["delete", id]).code == 0)
        let gone = try bh(["--log-format", "json", "--log", dir + "/log.json", "state", id])
        #expect(gone.code == 1)
        #expect(gone.stderr.contains("container \(id) does not exist"))
        let log = try String(contentsOfFile: dir + "/log.json", encoding: .utf8)
        #expect(log.contains("\"level\":\"error\"") && log.contains("does not exist"))
        #expect(!cgroupExists(id))
    }

    @Test func noRuntimeDescriptorLeaksIntoTheContainer() throws {
        defer { TestEnv.remove(dir) }
        let bundle = try TestEnv.busyboxBundle(at: dir, args: ["ls", "/proc/self/fd"])
        let r = try bh(["run", "--bundle", bundle, TestEnv.uniqueID("fd")])
        #expect(r.code == 0, "\(r.stderr)")
        // 0, 1, 2 and the directory ls itself opened.
        #expect(r.stdout.split(whereSeparator: { $0 == "\n" || $0 == " " }).sorted() == ["0", "1", "2", "3"])
    }

    /// The init is forked from a single-threaded runtime (the CLI), or re-executed (`BULKHEAD_INIT_REEXEC=1`, and
    /// always from a multithreaded caller): `run`, `create`/`start` and `exec` give the container the same world
    /// either way (fds, environment, signals, exit status), and the debug log says which way was taken.
    @Test func theForkedAndTheReexecutedInitGiveTheSameContainer() throws {
        defer { TestEnv.remove(dir) }
        let probe = "ls /proc/self/fd; env | sort; grep -E '^Sig(Blk|Ign)' /proc/self/status"
        let bundle = try TestEnv.busyboxBundle(at: dir, args: ["sh", "-c", probe + "; exit 7"])
        let sleeper = try TestEnv.busyboxBundle(at: dir + "/sleeper", args: ["sleep", "30"])
        var outputs: [[String]] = []
        for reexec in [false, true] {
            var env = ProcessInfo.processInfo.environment
            env["BULKHEAD_TEST_RUNTIME_ONLY"] = "must not reach the container"
            env["BULKHEAD_INIT_REEXEC"] = reexec ? "1" : nil
            let log = dir + "/debug-\(reexec).log"
            func bhEnv(_ args: [String]) throws -> TestEnv.Result {
                try TestEnv.run([TestEnv.bulkhead, "--root", root, "--debug", "--log", log] + args, environment: env)
            }
            let run = try bhEnv(["run", "--bundle", bundle, TestEnv.uniqueID("init")])
            #expect(run.code == 7, "\(run.stderr)")
            let id = TestEnv.uniqueID("initexec")
            #expect(try bhEnv(["create", "--bundle", sleeper, id]).code == 0)
            defer { _ = try? bh(["delete", "--force", id]) }
            #expect(try bhEnv(["start", id]).code == 0)
            let exec = try bhEnv(["exec", id, "sh", "-c", probe])
            #expect(exec.code == 0, "\(exec.stderr)")
            for output in [run.stdout, exec.stdout] {
                let lines = output.split(separator: "\n").map(String.init)
                #expect(Array(lines.prefix(4)) == ["0", "1", "2", "3"], "\(lines)")
                #expect(lines.contains { $0.hasPrefix("PATH=") } && !lines.contains { $0.hasPrefix("BULKHEAD_") }, "\(lines)")
                #expect(lines.contains("SigBlk:\t0000000000000000") && lines.contains { $0.hasPrefix("SigIgn:") }, "\(lines)")
            }
            outputs.append([run.stdout, exec.stdout])
            let text = try String(contentsOfFile: log, encoding: .utf8)
            // run, create and exec each started an init.
            let forked = text.components(separatedBy: "container init: forked").count - 1
            let reexecuted = text.components(separatedBy: "container init: re-executed").count - 1
            #expect(reexec ? (forked, reexecuted) == (0, 3) : (forked, reexecuted) == (3, 0), "\(text)")
        }
        #expect(outputs[0] == outputs[1])
    }

    @Test func aBadMountFailsCreateNamesTheStepAndLeavesNothing() throws {
        defer { TestEnv.remove(dir) }
        let bundle = try TestEnv.busyboxBundle(at: dir, args: ["true"]) {
            $0.mounts?.append(Spec.Mount(destination: "/data", type: "bind", source: "/nonexistent/source", options: ["rbind"]))
        }
        let id = TestEnv.uniqueID("badmount")
        let r = try bh(["create", "--bundle", bundle, id])
        #expect(r.code == 1)
        #expect(r.stderr.contains("mount /data"), "\(r.stderr)")
        #expect(try bh(["state", id]).code == 1)
        #expect(!cgroupExists(id))
        #expect(try bh(["list", "-q"]).stdout.isEmpty)
    }

    @Test func aMissingProgramFailsCreate() throws {
        defer { TestEnv.remove(dir) }
        let bundle = try TestEnv.busyboxBundle(at: dir, args: ["/bin/no-such-program"])
        let id = TestEnv.uniqueID("noprog")
        let r = try bh(["create", "--bundle", bundle, id])
        #expect(r.code == 1)
        #expect(r.stderr.contains("find the program"), "\(r.stderr)")
        #expect(!cgroupExists(id))
    }

    @Test func aFailingHookFailsCreateAndTearsDown() throws {
        defer { TestEnv.remove(dir) }
        let bundle = try TestEnv.busyboxBundle(at: dir, args: ["true"]) {
            var hooks = Spec.Hooks()
            hooks.createRuntime = [Spec.Hook(path: TestEnv.busybox!, args: ["busybox", "sh", "-c", "cat > \(dir)/hook-state; exit 3"])]
            $0.hooks = hooks
        }
        let id = TestEnv.uniqueID("hook")
        let r = try bh(["create", "--bundle", bundle, id])
        #expect(r.code == 1)
        #expect(r.stderr.contains("createRuntime hook"), "\(r.stderr)")
        let state = try String(contentsOfFile: dir + "/hook-state", encoding: .utf8)
        #expect(state.contains("\"id\":\"\(id)\""))
        #expect(!cgroupExists(id))
    }

    @Test func hooksRunInOrderWithStateOnStdin() throws {
        defer { TestEnv.remove(dir) }
        let log = dir + "/hooks.log"
        func hook(_ name: String) -> Spec.Hook {
            Spec.Hook(path: TestEnv.busybox!, args: ["busybox", "sh", "-c", "echo \(name) >> \(log)"], timeout: 5)
        }
        let bundle = try TestEnv.busyboxBundle(at: dir, args: ["true"]) {
            var hooks = Spec.Hooks()
            hooks.createRuntime = [hook("createRuntime")]
            hooks.createContainer = [hook("createContainer")]
            hooks.poststart = [hook("poststart")]
            hooks.poststop = [hook("poststop")]
            $0.hooks = hooks
        }
        let r = try bh(["run", "--bundle", bundle, TestEnv.uniqueID("hooks")])
        #expect(r.code == 0, "\(r.stderr)")
        let order = try String(contentsOfFile: log, encoding: .utf8).split(separator: "\n")
        #expect(order == ["createRuntime", "createContainer", "poststart", "poststop"])
    }

    @Test func killNineOfTheRuntimeMidCreateIsCleanedByDeleteForce() throws {
        defer { TestEnv.remove(dir) }
        let bundle = try TestEnv.busyboxBundle(at: dir, args: ["true"]) {
            var hooks = Spec.Hooks()
            hooks.createRuntime = [Spec.Hook(path: TestEnv.busybox!, args: ["busybox", "sleep", "5"])]
            $0.hooks = hooks
        }
        let id = TestEnv.uniqueID("kill9")
        let null = try LinuxOS.FileDescriptor.open("/dev/null", O_RDWR)
        let pid = try ChildProcess.spawn(TestEnv.bulkhead, arguments: ["bulkhead", "--root", root, "create", "--bundle", bundle, id],
                                         environment: [], fds: [(null.raw, 0), (null.raw, 1), (null.raw, 2)])
        // Wait until the container exists (its cgroup holds the init), then kill the runtime.
        for _ in 0..<200 where !cgroupExists(id) { usleep(10_000) }
        usleep(300_000)
        kill(pid, SIGKILL)
        var status: Int32 = 0
        _ = waitpid(pid, &status, 0)
        #expect(cgroupExists(id))
        let d = try bh(["delete", "--force", id])
        #expect(d.code == 0, "\(d.stderr)")
        #expect(!cgroupExists(id))
        #expect(try bh(["state", id]).code == 1)
    }

    @Test func execRunsInTheContainerWithUserCwdAndEnv() throws {
        defer { TestEnv.remove(dir) }
        let bundle = try TestEnv.busyboxBundle(at: dir, args: ["sleep", "30"])
        let id = TestEnv.uniqueID("exec")
        #expect(try bh(["run", "--detach", "--bundle", bundle, id]).code == 0)
        defer { _ = try? bh(["delete", "--force", id]) }
        let r = try bh(["exec", "--user", "app", "--cwd", "/tmp", "--env", "FOO=bar", id, "sh", "-c", "id; pwd; echo $FOO; exit 3"])
        #expect(r.code == 3, "\(r.stderr)")
        #expect(r.stdout.contains("uid=1000(app) gid=1000(app) groups=2000(extra)"), "\(r.stdout)")
        #expect(r.stdout.contains("/tmp\nbar\n"))
        let ps = try bh(["ps", "--format", "json", id])
        #expect(ps.stdout.hasPrefix("["))
        #expect(try bh(["pause", id]).code == 0)
        #expect(try bh(["state", id]).stdout.contains("\"paused\""))
        #expect(try bh(["resume", id]).code == 0)
        #expect(try bh(["state", id]).stdout.contains("\"running\""))
        let listed = try bh(["list", "--format", "json"])
        #expect(listed.stdout.contains("\"id\":\"\(id)\""))
    }

    @Test func aTerminalIsHandedToTheConsoleSocket() throws {
        defer { TestEnv.remove(dir) }
        let bundle = try TestEnv.busyboxBundle(at: dir, args: ["sh", "-c", "tty; echo done"]) { $0.process?.terminal = true }
        let socketPath = dir + "/console.sock"
        let server = try ConsoleSocketServer(path: socketPath)
        let id = TestEnv.uniqueID("tty")
        let r = try bh(["run", "--console-socket", socketPath, "--bundle", bundle, id])
        #expect(r.code == 0, "\(r.stderr)")
        let output = server.receiveAndRead()
        #expect(output.contains("/dev/pts/0"), "\(output)")
        #expect(output.contains("done"))
    }
}

@Suite(.enabled(if: TestEnv.isRoot, "needs root (writes a scratch bundle)"))
struct SpecAndFeaturesVerbTests {
    @Test func specWritesADecodableDefaultAndFeaturesIsJSON() throws {
        let dir = try TestEnv.scratch("specverb")
        defer { TestEnv.remove(dir) }
        let r = try TestEnv.run([TestEnv.bulkhead, "spec", "--bundle", dir])
        #expect(r.code == 0, "\(r.stderr)")
        let bytes = try [UInt8](Data(contentsOf: URL(fileURLWithPath: dir + "/config.json")))
        #expect(try Spec.decode(bytes) == Spec.defaultSpec())
        let again = try TestEnv.run([TestEnv.bulkhead, "spec", "--bundle", dir])
        #expect(again.code == 1 && again.stderr.contains("already exists"))
        let features = try TestEnv.run([TestEnv.bulkhead, "features"])
        let object = try JSONSerialization.jsonObject(with: Data(features.stdout.utf8)) as? [String: Any]
        #expect(object?["ociVersionMax"] as? String == Spec.version)
        #expect((object?["hooks"] as? [String])?.contains("createRuntime") == true)
    }
}
