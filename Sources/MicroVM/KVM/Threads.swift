#if canImport(Glibc)
import Glibc
#endif

/// What a VMM thread does; each role gets its own seccomp filter.
public enum ThreadRole: String, Sendable, CaseIterable {
    /// The thread that set the VM up and then waits for it to end (and handles signals, stdin).
    case main
    /// One per vCPU: KVM_RUN and the port/MMIO device emulation it triggers.
    case vcpu
    /// The device I/O thread: virtqueue processing, disk I/O, console ports.
    case io
}

/// Starts a pthread running `body` (no Foundation Thread in the static binary).
func spawnThread(_ body: @escaping @Sendable () -> Void) throws -> pthread_t {
    final class Box { let body: @Sendable () -> Void; init(_ b: @escaping @Sendable () -> Void) { body = b } }
    let context = Unmanaged.passRetained(Box(body)).toOpaque()
    var thread = pthread_t()
    let result = pthread_create(&thread, nil, { argument in
        let box = Unmanaged<Box>.fromOpaque(argument!).takeRetainedValue()
        box.body()
        return nil
    }, context)
    guard result == 0 else {
        Unmanaged<Box>.fromOpaque(context).release()
        throw KVMError("cannot start a VMM thread: \(String(cString: strerror(result)))")
    }
    return thread
}

/// The signal that kicks a vCPU out of KVM_RUN.
public let vcpuKickSignal: Int32 = SIGUSR1

/// A counting semaphore (sem_t) for start-up ordering between VMM threads; waits retry EINTR.
final class ThreadGate: @unchecked Sendable {
    private let semaphore = UnsafeMutablePointer<sem_t>.allocate(capacity: 1)

    init() { sem_init(semaphore, 0, 0) }

    deinit {
        sem_destroy(semaphore)
        semaphore.deallocate()
    }

    func signal() { sem_post(semaphore) }

    func wait() { while sem_wait(semaphore) != 0 && errno == EINTR {} }
}
