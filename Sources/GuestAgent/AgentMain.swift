import CAgentShims
import LinuxOS
#if canImport(Glibc)
import Glibc
#endif

/// The agent's entry point: PID 1 of the microVM's initramfs.
public enum AgentMain {
    public static func run(arguments: [String]) -> Never {
        if arguments.contains("--version") || arguments.contains("--help") || getpid() != 1 {
            print("bulkhead-agent: the guest agent of Bulkhead's microVM tier. It runs as PID 1 (/init) of the")
            print("guest initramfs and is driven by the host over virtio-console ports; it is not run by hand.")
            exit(getpid() == 1 || arguments.contains("--version") || arguments.contains("--help") ? 0 : 1)
        }
        AgentLog.info("started")
        var problems = Boot.mountKernelFilesystems()
        let cmdline = (try? FileDescriptor.open("/proc/cmdline", O_RDONLY).readAll(limit: 65536)).map { String(decoding: $0, as: UTF8.self) } ?? ""
        let config = BootConfig.parse(cmdline)
        do { try Boot.mountRootfs(config) } catch { problems.append("\(error)") }
        for problem in problems { AgentLog.info(problem) }
        let signals = bh_agent_signalfd()
        let control: Int32, stdio: Int32
        do {
            control = try Boot.openPort(named: config.controlPort)
            stdio = try Boot.openPort(named: config.stdioPort)
        } catch {
            AgentLog.info("\(error); powering off")
            _ = bh_agent_reboot(config.halt == "poweroff" ? 1 : 0)
            exit(1)
        }
        AgentLog.info("rootfs mounted, ports open")
        let agent = Agent(config: config, control: control, stdio: stdio, signals: signals,
                          bootProblem: problems.isEmpty ? nil : problems.joined(separator: "; "))
        agent.run()
        agent.halt()
    }
}
