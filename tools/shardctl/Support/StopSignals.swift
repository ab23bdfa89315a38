import Foundation
#if canImport(Glibc)
import Glibc
#endif

/// ``StopSignals``' pipe. A constant, so the C signal handler (which can capture
/// nothing) reads it without exclusivity tracking; made before the handler is installed.
private let stopSignalPipe: (read: Int32, write: Int32) = {
    var ends: [Int32] = [-1, -1]
    guard pipe(&ends) == 0 else { fatalError("pipe: \(String(cString: strerror(errno)))") }
    _ = fcntl(ends[0], F_SETFD, FD_CLOEXEC)
    _ = fcntl(ends[1], F_SETFD, FD_CLOEXEC)
    _ = fcntl(ends[1], F_SETFL, O_NONBLOCK)  // a full pipe drops the byte instead of blocking the handler
    return (ends[0], ends[1])
}()

/// Calls a handler, on a thread of its own, for each SIGTERM or SIGINT.
///
/// The handlers are installed with `sigaction` before ``install(_:)`` returns,
/// so a signal sent the moment the caller reports that it is ready (a
/// supervisor stopping a server right after "listening on") is never lost.
/// A dispatch signal source needs the signal ignored (SIG_IGN) and registers
/// asynchronously: a signal in between was discarded, and the server never stopped.
/// The C handler only writes a byte to a pipe (async-signal-safe).
enum StopSignals {
    static func install(_ handler: @escaping @Sendable () -> Void) {
        let reader = stopSignalPipe.read  // (initialised here, before any handler can run)
        let thread = Thread {
            var byte: UInt8 = 0
            while true {
                let n = read(reader, &byte, 1)
                if n == 1 { handler() } else if n < 0 && errno == EINTR { continue } else { return }
            }
        }
        thread.start()
        for number in [SIGTERM, SIGINT] {
            var action = sigaction()
            action.__sigaction_handler.sa_handler = { _ in
                var byte: UInt8 = 1
                let saved = errno
                _ = write(stopSignalPipe.write, &byte, 1)
                errno = saved
            }
            sigemptyset(&action.sa_mask)
            action.sa_flags = SA_RESTART
            sigaction(number, &action, nil)
        }
    }
}
