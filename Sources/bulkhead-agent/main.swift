// bulkhead-agent: PID 1 of the microVM guest (see GuestAgent). Linked with -static-executable.
import GuestAgent

AgentMain.run(arguments: CommandLine.arguments)
