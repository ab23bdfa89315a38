import Foundation
import GRPCCore
import GRPCNIOTransportHTTP2
import Logging
import ShardDB

/// Serves one ``ShardEngine`` to migration peers over gRPC (HTTP/2), so
/// another process can move shards into or out of it with
/// ``MigrationCoordinator`` and ``RemoteInstance``.
///
/// Every call must carry the shared secret, or come over TLS with a client
/// certificate the handshake verified (``ServerTLS``); the endpoint can read
/// and overwrite every key, so it listens on loopback unless told otherwise
/// (docs/TRANSPORT.md).
///
/// ```swift
/// let server = MigrationServer(engine: engine, configuration: .init(secret: try SharedSecret(contentsOf: "token")))
/// let address = try await server.start()          // 127.0.0.1:<port>
/// try await server.run()                          // until shutdown()
/// ```
public final class MigrationServer: Sendable {
    public struct Configuration: Sendable {
        /// Where to listen; port 0 picks a free port.
        public var listen = InstanceAddress(host: "127.0.0.1", port: 0)
        /// The token calls must carry; nil when only client certificates authenticate.
        public var secret: SharedSecret?
        /// TLS for every connection; nil serves plaintext HTTP/2 (loopback or a trusted network only).
        public var tls: ServerTLS?
        /// The location peers record as this instance's (for "moved to" answers); the bound address when nil.
        public var advertisedAddress: String?
        /// Caps the bytes per second of bulk copies read from this instance.
        public var bulkRateLimit: ByteRate?
        /// How this instance, as a migration target, authenticates to the source
        /// to pull a bulk copy itself. By default the server's own secret over
        /// plaintext (the peers of one deployment share it) when it serves
        /// without TLS, and none with TLS; without credentials the coordinator
        /// relays the chunks. With TLS, credentials must carry a ``ClientTLS``
        /// (``start()`` refuses plaintext ones).
        public var peers: PeerCredentials?
        /// A connection with no call for this long is asked to go (HTTP/2 GOAWAY);
        /// clients reconnect on their next call.
        public var connectionIdleTimeout: Duration = .seconds(300)
        /// How long a connection told to go (idle, or at ``MigrationServer/shutdown()``)
        /// keeps its calls before it is closed, whatever the peer does (grpc-swift's
        /// graceful close alone waits for the peer's ping acknowledgement, which a
        /// silent peer never sends).
        public var connectionGraceTime: Duration = .seconds(30)
        /// A connection that has not carried an authenticated call this long after
        /// it was accepted is closed (a peer that connects and never completes HTTP/2,
        /// or only makes refused calls, otherwise holds its socket until the server
        /// stops). A call refused as unauthenticated closes its connection at once.
        public var firstCallTimeout: Duration = .seconds(10)
        /// At most this many connections may wait for their first call at
        /// once; one accepted beyond that is closed at once.
        public var maxConnectionsWithoutCall = 128

        public init(listen: InstanceAddress = InstanceAddress(host: "127.0.0.1", port: 0), secret: SharedSecret?,
                    tls: ServerTLS? = nil, advertisedAddress: String? = nil, bulkRateLimit: ByteRate? = nil,
                    peers: PeerCredentials? = nil) {
            self.listen = listen
            self.secret = secret
            self.tls = tls
            self.advertisedAddress = advertisedAddress
            self.bulkRateLimit = bulkRateLimit
            self.peers = peers ?? (tls == nil ? secret.map { PeerCredentials(secret: $0) } : nil)
        }
    }

    /// Largest message accepted either way: a bulk chunk plus framing.
    static let maxMessageBytes = 64 << 20
    /// The largest bulk chunk (or table-file piece) read or taken per message. A
    /// chunk may run one entry (up to 32 MiB of value and 16 KiB of key) past its
    /// size, and its length lists add up to 2 bytes per entry of at least 5: a
    /// 16 MiB chunk stays under ``maxMessageBytes`` whatever its entries.
    static let largestBulkChunkBytes = 16 << 20

    public let engine: ShardEngine
    public let configuration: Configuration
    private let server: GRPCServer<HTTP2ServerTransport.Posix>
    private let transport: HTTP2ServerTransport.Posix
    private let location = LockedValue<String>("")
    private let serving = LockedValue<Task<Void, Error>?>(nil)
    let connectionGate: ConnectionGate

    public init(engine: ShardEngine, configuration: Configuration) {
        self.engine = engine
        self.configuration = configuration
        let gate = ConnectionGate(firstCallTimeout: configuration.firstCallTimeout,
                                  maxWaiting: configuration.maxConnectionsWithoutCall,
                                  graceTime: configuration.connectionGraceTime)
        connectionGate = gate
        transport = HTTP2ServerTransport.Posix(
            address: Self.bindAddress(configuration.listen),
            transportSecurity: configuration.tls?.transportSecurity ?? .plaintext,
            config: .defaults { config in
                config.rpc.maxRequestPayloadSize = Self.maxMessageBytes
                config.http2.maxFrameSize = 1 << 20
                config.http2.targetWindowSize = 16 << 20
                config.connection.keepalive.time = .seconds(10)
                config.connection.keepalive.timeout = .seconds(10)
                config.connection.maxIdleTime = configuration.connectionIdleTimeout
                config.connection.maxGraceTime = configuration.connectionGraceTime
                config.channelDebuggingCallbacks.onAcceptTCPConnection = { gate.accepted($0) }
                config.channelDebuggingCallbacks.onAcceptHTTP2Stream = { gate.streamOpened($0) }
            })
        let location = self.location
        let service = ShardInstanceService(engine: engine, location: { location.value },
                                           rateLimiter: configuration.bulkRateLimit.map { BulkRateLimiter($0) },
                                           peers: configuration.peers)
        let omitted = Self.omittedMethods(ProcessInfo.processInfo.environment["SHARDDB_SERVER_OMIT_RPCS"])
        let registered: any RegistrableRPCService = omitted.isEmpty ? service : WithoutMethods(service: service, omitted: omitted)
        var authentication = CallAuthentication(secret: configuration.secret,
                                                verifiesClientCertificates: configuration.tls?.clientCertificateAuthority != nil)
        authentication.passed = { gate.authenticated(peer: $0) }
        server = GRPCServer(transport: transport, services: [registered], interceptors: [authentication])
    }

    /// Starts listening; returns the bound address (`host:port`).
    ///
    /// - throws: `.invalidArgument` when neither a secret nor client certificates would
    ///   authenticate callers, or the server serves TLS and its ``Configuration/peers``
    ///   would pull without it; a transport error when the address cannot be bound or the
    ///   TLS files are unusable.
    @discardableResult
    public func start() async throws -> String {
        guard configuration.secret != nil || configuration.tls?.clientCertificateAuthority != nil else {
            throw ShardDBError(.invalidArgument, "a migration endpoint needs a shared secret or client certificates (--token-file or --tls-ca)")
        }
        // A TLS server's callers expect its secrets on TLS: a pull would otherwise send the
        // peer secret in clear to whatever address a (certificate-holding) caller names.
        guard configuration.tls == nil || configuration.peers == nil || configuration.peers?.tls != nil else {
            throw ShardDBError(.invalidArgument,
                "this endpoint serves TLS but its peer credentials have none: a pull would send the peer secret in clear; give PeerCredentials a ClientTLS (shardctl serve does), or no peers (the coordinator relays)")
        }
        if let advertised = configuration.advertisedAddress, let address = InstanceAddress(parsing: advertised), Self.isWildcard(address.host) {
            throw ShardDBError(.invalidArgument,
                "the advertised address \(advertised) is every interface, which peers cannot dial: advertise the address they should record")
        }
        guard configuration.advertisedAddress != nil || !Self.isWildcard(configuration.listen.host) else {
            throw ShardDBError(.invalidArgument,
                "listening on every interface (\(configuration.listen)) needs an advertised address (--advertise HOST:PORT): peers record it as the new owner of what moves here, and cannot dial \(configuration.listen.host)")
        }
        let server = self.server
        let task = Task { try await server.serve() }
        serving.store(task)
        let bound: String
        do {
            let address = try await transport.listeningAddress
            if let ipv4 = address.ipv4 {
                bound = InstanceAddress(host: ipv4.host, port: ipv4.port).description
            } else if let ipv6 = address.ipv6 {
                bound = InstanceAddress(host: ipv6.host, port: ipv6.port).description
            } else {
                bound = "\(address)"
            }
        } catch {
            task.cancel()
            _ = try? await task.value
            throw error
        }
        location.store(configuration.advertisedAddress ?? bound)
        return bound
    }

    /// The socket address to bind: a numeric IPv4 or IPv6 host as it is, a name
    /// resolved (its first address; unresolvable, binding fails and says so).
    static func bindAddress(_ listen: InstanceAddress) -> GRPCNIOTransportCore.SocketAddress {
        let host = listen.host
        if host.contains(":") { return .ipv6(host: host, port: listen.port) }
        if host.allSatisfy({ $0.isNumber || $0 == "." }) { return .ipv4(host: host, port: listen.port) }
        var hints = addrinfo()
        hints.ai_socktype = Int32(SOCK_STREAM.rawValue)
        var result: UnsafeMutablePointer<addrinfo>?
        guard getaddrinfo(host, nil, &hints, &result) == 0, let first = result else { return .ipv4(host: host, port: listen.port) }
        defer { freeaddrinfo(result) }
        var text = [CChar](repeating: 0, count: Int(NI_MAXHOST))
        guard getnameinfo(first.pointee.ai_addr, first.pointee.ai_addrlen, &text, socklen_t(text.count), nil, 0, NI_NUMERICHOST) == 0 else {
            return .ipv4(host: host, port: listen.port)
        }
        let numeric = String(decoding: text.prefix { $0 != 0 }.map { UInt8(bitPattern: $0) }, as: UTF8.self)
        return first.pointee.ai_family == AF_INET6 ? .ipv6(host: numeric, port: listen.port) : .ipv4(host: numeric, port: listen.port)
    }

    /// 0.0.0.0 or :: (every interface): bound there, but no peer can dial it.
    public static func isWildcard(_ host: String) -> Bool { host == "0.0.0.0" || host == "::" || host == "0:0:0:0:0:0:0:0" }

    /// The address peers learn (advertised, else bound); empty before ``start()``.
    public var address: String { location.value }

    /// Waits until the server stops (after ``shutdown()``).
    public func run() async throws {
        try await serving.value?.value
    }

    /// Stops accepting calls and waits for the running ones to finish. Does not close the engine.
    public func shutdown() async {
        server.beginGracefulShutdown()
        // A graceful shutdown waits for every connection to close, and one whose peer
        // went silent (it never answers the GOAWAY's ping) never does: after the grace
        // time the serving task is cancelled, which closes what is left.
        guard let serving = serving.value else { return }
        let grace = configuration.connectionGraceTime
        let watchdog = Task {
            try await Task.sleep(for: grace)
            serving.cancel()
        }
        _ = try? await serving.value
        watchdog.cancel()
    }
}

extension MigrationServer {
    /// The method names (`ApplyBulkStream`, `PullBulk`, ...) in `SHARDDB_SERVER_OMIT_RPCS`, a
    /// comma-separated list: for compatibility tests, the server then answers them UNIMPLEMENTED,
    /// as a version from before them would (docs/FAILURE_POINTS.md).
    static func omittedMethods(_ spec: String?) -> Set<String> {
        guard let spec else { return [] }
        return Set(spec.split(separator: ",").map { $0.trimmingCharacters(in: .whitespaces) }.filter { !$0.isEmpty })
    }
}

/// A service registered without some of its methods (see ``MigrationServer/omittedMethods(_:)``).
struct WithoutMethods: RegistrableRPCService {
    let service: any RegistrableRPCService
    let omitted: Set<String>

    func registerMethods<Transport: ServerTransport>(with router: inout RPCRouter<Transport>) {
        service.registerMethods(with: &router)
        for method in router.methods where omitted.contains(method.method) {
            _ = router.removeHandler(forMethod: method)
        }
    }
}

/// A value behind a lock, for the few mutable fields of Sendable classes here.
final class LockedValue<Value>: @unchecked Sendable {
    private let lock = NSLock()
    private var stored: Value

    init(_ value: Value) { stored = value }

    /// A copy of the value. (No setter: `value[key] = x` through one would read,
    /// change and write back in two steps, losing a concurrent change.)
    var value: Value {
        lock.lock()
        defer { lock.unlock() }
        return stored
    }

    /// Replaces the whole value.
    func store(_ value: Value) {
        lock.lock()
        stored = value
        lock.unlock()
    }

    /// Reads and changes the value under the lock in one step.
    @discardableResult
    func update<R>(_ body: (inout Value) throws -> R) rethrows -> R {
        lock.lock()
        defer { lock.unlock() }
        return try body(&stored)
    }
}
