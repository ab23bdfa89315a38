import Foundation
import NIOCore

/// Closes connections that start no call. Each accepted connection must open
/// its first HTTP/2 stream (a call, authenticated or not) within
/// `firstCallTimeout`, and at most `maxWaiting` connections may wait for their
/// first call at once: one accepted beyond that is closed at once.
///
/// grpc-swift's own timers miss a peer that connects and never completes
/// HTTP/2 (a port scanner, a stuck client, a connection flood): its idle GOAWAY
/// waits for an acknowledgement that never comes, so such a connection held a
/// socket until the server stopped. A connection that has made a call is left
/// to those timers (idle timeout, keepalive).
final class ConnectionGate: @unchecked Sendable {
    let firstCallTimeout: Duration
    let maxWaiting: Int
    private let lock = NSLock()
    private var waiting: [ObjectIdentifier: Scheduled<Void>] = [:]
    private var closedCounts = (timedOut: 0, overLimit: 0)

    init(firstCallTimeout: Duration, maxWaiting: Int) {
        self.firstCallTimeout = firstCallTimeout
        self.maxWaiting = max(1, maxWaiting)
    }

    /// Connections closed so far: without a call in time, and over the limit.
    var closed: (timedOut: Int, overLimit: Int) {
        lock.lock()
        defer { lock.unlock() }
        return closedCounts
    }

    /// For `onAcceptTCPConnection`: starts the connection's first-call timer,
    /// or closes it when too many wait already.
    func accepted(_ channel: any Channel) -> EventLoopFuture<Void> {
        let id = ObjectIdentifier(channel)
        lock.lock()
        guard waiting.count < maxWaiting else {
            closedCounts.overLimit += 1
            lock.unlock()
            channel.close(promise: nil)
            return channel.eventLoop.makeSucceededVoidFuture()
        }
        // At most a year (a larger timeout would overflow in nanoseconds), at least 1 ns.
        let seconds = min(max(firstCallTimeout.components.seconds, 0), 365 * 86_400)
        let nanoseconds = seconds * 1_000_000_000 + max(firstCallTimeout.components.attoseconds, 0) / 1_000_000_000
        waiting[id] = channel.eventLoop.scheduleTask(in: .nanoseconds(max(1, nanoseconds))) { [weak self] in
            guard let self, self.forget(id, timedOut: true) != nil else { return }
            channel.close(promise: nil)
        }
        lock.unlock()
        // (Registered after the timer: a connection already closed forgets it at once.)
        channel.closeFuture.whenComplete { [weak self] _ in self?.forget(id)?.cancel() }
        return channel.eventLoop.makeSucceededVoidFuture()
    }

    /// For `onAcceptHTTP2Stream`: the stream's connection made a call.
    func streamOpened(_ stream: any Channel) -> EventLoopFuture<Void> {
        if let connection = stream.parent { forget(ObjectIdentifier(connection))?.cancel() }
        return stream.eventLoop.makeSucceededVoidFuture()
    }

    @discardableResult
    private func forget(_ id: ObjectIdentifier, timedOut: Bool = false) -> Scheduled<Void>? {
        lock.lock()
        defer { lock.unlock() }
        let timer = waiting.removeValue(forKey: id)
        if timer != nil && timedOut { closedCounts.timedOut += 1 }
        return timer
    }
}
