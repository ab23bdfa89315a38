import Foundation
import NIOCore
import NIOHTTP2

/// Bounds how long a connection can hold a socket without doing authenticated work.
///
/// - Each accepted connection must carry its first authenticated call within
///   `firstCallTimeout`, and at most `maxWaiting` connections may wait for one at
///   once: one accepted beyond that is closed at once. (Calls that are refused —
///   no credential, or a method grpc-swift answers UNIMPLEMENTED before any
///   interceptor runs — do not count.)
/// - A call refused as unauthenticated closes its connection (just after the
///   refusal is written): the peer has no credential, and its connection would
///   otherwise count as one that made a call.
/// - A connection told to go (HTTP/2 GOAWAY: idle, or the server stopping) is
///   closed `graceTime` later whatever the peer does.
///
/// grpc-swift's own timers miss a peer that connects and never completes HTTP/2
/// or that stops answering: its idle GOAWAY waits for an acknowledgement that
/// never comes, so such a connection held a socket until the server stopped.
final class ConnectionGate: @unchecked Sendable {
    let firstCallTimeout: Duration
    let maxWaiting: Int
    let graceTime: Duration
    private let lock = NSLock()
    /// By the connection's peer as grpc-swift names it (`ServerContext.remotePeer`).
    private var waiting: [String: Scheduled<Void>] = [:]
    private var counts = Closed()

    /// Connections closed so far, by reason.
    struct Closed: Equatable {
        var timedOut = 0, overLimit = 0, unauthenticated = 0, afterGoAway = 0
    }

    init(firstCallTimeout: Duration, maxWaiting: Int, graceTime: Duration) {
        self.firstCallTimeout = firstCallTimeout
        self.maxWaiting = max(1, maxWaiting)
        self.graceTime = graceTime
    }

    var closed: Closed {
        lock.lock()
        defer { lock.unlock() }
        return counts
    }

    private func count(_ change: (inout Closed) -> Void) {
        lock.lock()
        change(&counts)
        lock.unlock()
    }

    /// For `onAcceptTCPConnection`: starts the connection's first-call timer (or
    /// closes it when too many wait already) and watches it for a GOAWAY.
    func accepted(_ channel: any Channel) -> EventLoopFuture<Void> {
        // Without a peer address nothing could match the call's: no timer.
        guard let id = Self.peer(channel.remoteAddress) else { return channel.eventLoop.makeSucceededVoidFuture() }
        lock.lock()
        guard waiting.count < maxWaiting else {
            counts.overLimit += 1
            lock.unlock()
            channel.close(promise: nil)
            return channel.eventLoop.makeSucceededVoidFuture()
        }
        waiting[id] = channel.eventLoop.scheduleTask(in: Self.timeAmount(firstCallTimeout)) { [weak self] in
            guard let self, self.forget(id) != nil else { return }
            self.count { $0.timedOut += 1 }
            channel.close(promise: nil)
        }
        lock.unlock()
        // (Registered after the timer: a connection already closed forgets it at once.)
        channel.closeFuture.whenComplete { [weak self] _ in self?.forget(id)?.cancel() }
        // Between the HTTP/2 handler and grpc-swift's connection handler, which sends the GOAWAY.
        // (The callback runs on the channel's event loop, after grpc-swift configured it.)
        if channel.eventLoop.inEventLoop, let http2 = try? channel.pipeline.syncOperations.handler(type: NIOHTTP2Handler.self) {
            let watcher = GoAwayDeadline(grace: Self.timeAmount(graceTime)) { [weak self] in self?.count { $0.afterGoAway += 1 } }
            try? channel.pipeline.syncOperations.addHandler(watcher, position: .after(http2))
        }
        return channel.eventLoop.makeSucceededVoidFuture()
    }

    /// For the authentication interceptor: a call from `peer` (`ServerContext.remotePeer`)
    /// passed; its connection is no longer timed.
    func authenticated(peer: String) {
        forget(peer)?.cancel()
    }

    /// For `onAcceptHTTP2Stream`: a refusal as unauthenticated on the stream closes its connection.
    func streamOpened(_ stream: any Channel) -> EventLoopFuture<Void> {
        if let connection = stream.parent {
            if stream.eventLoop.inEventLoop {
                let closer = UnauthenticatedCallCloser(connection: connection) { [weak self] in self?.count { $0.unauthenticated += 1 } }
                try? stream.pipeline.syncOperations.addHandler(closer, position: .first)
            }
        }
        return stream.eventLoop.makeSucceededVoidFuture()
    }

    /// A peer address as grpc-swift's server names it in `ServerContext.remotePeer`.
    static func peer(_ address: SocketAddress?) -> String? {
        switch address {
        case .v4(let ip)?: return address?.port.map { "ipv4:\(ip.host):\($0)" }
        case .v6(let ip)?: return address?.port.map { "ipv6:[\(ip.host)]:\($0)" }
        default: return nil
        }
    }

    @discardableResult
    private func forget(_ id: String) -> Scheduled<Void>? {
        lock.lock()
        defer { lock.unlock() }
        return waiting.removeValue(forKey: id)
    }

    /// `duration` for NIO: at least 1 ns, at most a year (more would overflow in nanoseconds).
    static func timeAmount(_ duration: Duration) -> TimeAmount {
        let seconds = min(max(duration.components.seconds, 0), 365 * 86_400)
        let nanoseconds = seconds * 1_000_000_000 + max(duration.components.attoseconds, 0) / 1_000_000_000
        return .nanoseconds(max(1, nanoseconds))
    }
}

/// Closes `channel` after `delay` unless it closed meanwhile; `closing` counts it.
private func closeLater(_ channel: any Channel, in delay: TimeAmount, _ closing: @escaping () -> Void) {
    channel.eventLoop.scheduleTask(in: delay) {
        guard channel.isActive else { return }
        closing()
        channel.close(promise: nil)
    }
}

/// Closes the connection `grace` after the first GOAWAY written on it.
private final class GoAwayDeadline: ChannelOutboundHandler, RemovableChannelHandler {
    typealias OutboundIn = HTTP2Frame
    typealias OutboundOut = HTTP2Frame
    private let grace: TimeAmount
    private let closing: () -> Void
    private var armed = false

    init(grace: TimeAmount, closing: @escaping () -> Void) {
        self.grace = grace
        self.closing = closing
    }

    func write(context: ChannelHandlerContext, data: NIOAny, promise: EventLoopPromise<Void>?) {
        if !armed, case .goAway = unwrapOutboundIn(data).payload {
            armed = true
            closeLater(context.channel, in: grace, closing)
        }
        context.write(data, promise: promise)
    }
}

/// On a call's stream: when the response says `unauthenticated` (grpc-status 16),
/// closes the call's connection once that response is on its way.
private final class UnauthenticatedCallCloser: ChannelOutboundHandler, RemovableChannelHandler {
    typealias OutboundIn = HTTP2Frame.FramePayload
    typealias OutboundOut = HTTP2Frame.FramePayload
    private let connection: any Channel
    private let closing: () -> Void

    init(connection: any Channel, closing: @escaping () -> Void) {
        self.connection = connection
        self.closing = closing
    }

    func write(context: ChannelHandlerContext, data: NIOAny, promise: EventLoopPromise<Void>?) {
        if case .headers(let headers) = unwrapOutboundIn(data), headers.headers.first(name: "grpc-status") == "16" {
            // A moment later, so the refusal is flushed to the peer before the close.
            closeLater(connection, in: .milliseconds(50), closing)
        }
        context.write(data, promise: promise)
    }
}
