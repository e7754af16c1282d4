import CShims
import LinuxOS
#if canImport(Glibc)
import Glibc
#endif

/// The host end of a guest process's terminal: a host pty whose master goes to the engine's
/// `--console-socket` (as runc hands over a container's pty), and whose slave the relay keeps in raw mode,
/// copying bytes to and from the guest's own pty (which does the line discipline: echo, ^C, …).
///
/// When the caller is a session leader without a terminal, the slave becomes its controlling terminal, so
/// the engine's resizes of the master arrive as SIGWINCH; ``size`` then reads the new size.
public final class HostTerminal {
    /// The relay's end (the pty slave), non-blocking.
    public let slave: Int32

    public init(consoleSocket: String, controlling: Bool) throws {
        var slaveFD: Int32 = -1
        let master = try sys("open pty", "/dev/ptmx") { bh_open_pty("/dev/ptmx", &slaveFD) }
        defer { close(master) }
        var mode = termios()
        if tcgetattr(slaveFD, &mode) == 0 {
            cfmakeraw(&mode)
            _ = tcsetattr(slaveFD, TCSANOW, &mode)
        }
        do {
            let socket = try UnixSocket.connect(consoleSocket)
            defer { close(socket) }
            try sys("send the pty master", consoleSocket) { bh_send_fd(socket, master, "/dev/ptmx", 9) }
        } catch {
            close(slaveFD)
            throw GuestChannel.Failure("cannot hand the terminal to the console socket \(consoleSocket): \(error)")
        }
        if controlling { _ = bh_set_ctty(slaveFD) }
        _ = fcntl(slaveFD, F_SETFL, fcntl(slaveFD, F_GETFL) | O_NONBLOCK)
        slave = slaveFD
    }

    deinit { close(slave) }

    /// The terminal's size as the engine set it on the master (nil when unset).
    public var size: (rows: UInt16, columns: UInt16)? {
        var ws = winsize()
        guard ioctl(slave, UInt(TIOCGWINSZ), &ws) == 0, ws.ws_row > 0, ws.ws_col > 0 else { return nil }
        return (ws.ws_row, ws.ws_col)
    }
}
