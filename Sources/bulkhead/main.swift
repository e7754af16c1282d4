import BulkheadCommands
import NamespaceBackend

// The container init (runc's pattern: the runtime re-executes itself as `bulkhead init`) bypasses the CLI
// entirely: single-threaded, synchronous, and as short a start-up as the binary allows.
if ContainerInit.isInitInvocation(CommandLine.arguments) {
    ContainerInit.main()
}
BulkheadMain.main()
