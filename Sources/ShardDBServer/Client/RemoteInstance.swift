import Foundation
import GRPCCore
import GRPCNIOTransportHTTP2
import ShardDB

/// A ShardDB instance in another process, reached through its
/// ``MigrationServer``: a ``MigrationSource`` and a ``MigrationTarget`` that
/// forward each call, so the in-process protocol runs unchanged across
/// processes:
///
/// ```swift
/// let secret = try SharedSecret(contentsOf: "token")
/// let source = try RemoteInstance(address: InstanceAddress(parsing: "10.0.0.1:7400")!, secret: secret)
/// let target = try RemoteInstance(address: InstanceAddress(parsing: "10.0.0.2:7400")!, secret: secret)
/// let report = try await MigrationCoordinator(source: source, target: target).migrate(MigrationRequest(shard: 3))
/// ```
///
/// Every call has a deadline. Every migration call is idempotent on the
/// engine's side, so a call that fails in transport (connection dropped, peer
/// restarting, deadline passed, chunk checksum wrong) is retried — resuming
/// from the last position the target acknowledged — until ``Configuration/retryWindow``
/// has passed. Errors the engine raised are not retried: they come back as
/// the same ``ShardDBError`` (a "moved to" answer names the new owner).
public final class RemoteInstance: MigrationSource, MigrationTarget, Sendable {
    public struct Configuration: Sendable {
        /// Deadline of each call (a bulk stream is one call of ``bulkChunksPerStream`` chunks).
        public var callTimeout: Duration = .seconds(60)
        /// How long ``RemoteInstance/close()`` waits for calls in flight before it cuts the connections.
        public var closeGrace: Duration = .seconds(5)
        /// How long a failing call keeps being retried before the error surfaces.
        public var retryWindow: Duration = .seconds(30)
        /// Chunks per bulk stream; the client reopens the stream after the last acknowledged key.
        public var bulkChunksPerStream = 64
        /// Bulk chunks read ahead of the target.
        public var bulkPrefetch = 2
        /// Bulk chunks (or table file pieces) sent to a target and not yet acknowledged, at most.
        public var bulkInFlight = 3
        /// The compression chunks read with ``RemoteInstance/readBulk(_:after:maxBytes:)``
        /// and table file pieces read with ``RemoteInstance/readTableFilePiece(_:name:offset:maxBytes:)``
        /// may come in (the source compresses those that shrink). A coordinator
        /// relaying them forwards each as it came (``RemoteInstance/applyBulk(_:_:)``,
        /// ``RemoteInstance/writeTableFiles(_:pieces:written:)``): compressed on both
        /// legs. Targets older than compressed chunks refuse them, and ones older than
        /// compressed table-file pieces fail the import; `.none` serves those.
        public var readCompression: BulkCompression = .snappy
        /// The compression a target asked to pull the bulk copy
        /// (``RemoteInstance/pullBulk(_:fromSourceAt:after:maxBytes:applied:)``,
        /// ``RemoteInstance/pullTableFiles(_:_:fromSourceAt:chunkBytes:written:)``) asks
        /// the source for: Snappy, unless turned off (`shardctl migrate --wire-compression none`).
        public var pullCompression: BulkCompression = .snappy

        public init() {}
    }

    public let address: InstanceAddress
    public let configuration: Configuration
    private let client: GRPCClient<HTTP2ClientTransport.Posix>
    let stub: WireShardInstance.Client<HTTP2ClientTransport.Posix>
    private let connections: Task<Void, Error>
    private let bulkStreams = LockedValue<[String: BulkStream]>([:])
    /// Which table-file pieces to ask for compressed (``readTableFilePiece(_:name:offset:maxBytes:)``).
    private let compressionProbe = LockedValue(CompressionProbe())
    private let isClosed = LockedValue(false)

    /// Connects in the background at once (grpc-swift's connection pool; a server
    /// closes a connection that carries no authenticated call within 10 s, and the
    /// client then reconnects for its next call). A host name the resolver says does
    /// not exist is refused here (``InstanceAddress/checkConnectable()``).
    ///
    /// - parameters:
    ///   - secret: the token sent with every call; nil when a client certificate (`tls`) authenticates.
    ///   - tls: connect over TLS, verifying the server (and presenting a client certificate if it has one).
    /// - throws: when the host does not resolve (``InstanceAddress/checkConnectable()``) or the TLS material is unusable.
    public init(address: InstanceAddress, secret: SharedSecret?, tls: ClientTLS? = nil,
                configuration: Configuration = Configuration()) throws {
        try address.checkConnectable()
        self.address = address
        self.configuration = configuration
        let target: any ResolvableTarget = address.host.allSatisfy({ $0.isNumber || $0 == "." })
            ? ResolvableTargets.IPv4(addresses: [SocketAddress.IPv4(host: address.host, port: address.port)])
            : ResolvableTargets.DNS(host: address.host, port: address.port)
        let transport = try HTTP2ClientTransport.Posix(
            target: target, transportSecurity: tls?.transportSecurity ?? .plaintext,
            config: .defaults { config in
                config.http2.maxFrameSize = 1 << 20
                config.http2.targetWindowSize = 16 << 20
                // Reconnect quickly when a peer restarts (the defaults back off to two minutes).
                config.backoff = .init(initial: .milliseconds(50), max: .seconds(1), multiplier: 1.6, jitter: 0.2)
                config.connection.keepalive = .init(time: .seconds(10), timeout: .seconds(10), allowWithoutCalls: false)
            })
        client = GRPCClient(transport: transport, interceptors: secret.map { [TokenAttach(secret: $0)] } ?? [])
        stub = WireShardInstance.Client(wrapping: client)
        let client = self.client
        connections = Task { try await client.runConnections() }
    }

    /// Closes the connection (after the calls in flight, for at most
    /// ``Configuration/closeGrace``).
    public func close() async {
        isClosed.store(true)
        let streams = bulkStreams.update { streams in
            defer { streams = [:] }
            return Array(streams.values)
        }
        for stream in streams { await stream.cancel() }
        client.beginGracefulShutdown()
        // A connection whose HTTP/2 handshake never finishes (a peer that accepted the
        // TCP connection, then went silent or stopped) keeps a graceful shutdown waiting
        // for ever: after the grace period the connections are cancelled.
        let connections = self.connections, grace = configuration.closeGrace
        let watchdog = Task {
            try await Task.sleep(for: grace)
            connections.cancel()
        }
        _ = try? await connections.value
        watchdog.cancel()
    }

    private var options: CallOptions { options(timeout: configuration.callTimeout) }

    private func options(timeout: Duration) -> CallOptions {
        var options = CallOptions.defaults
        options.timeout = timeout
        options.maxRequestMessageBytes = MigrationServer.maxMessageBytes
        options.maxResponseMessageBytes = MigrationServer.maxMessageBytes
        options.waitForReady = false
        return options
    }

    /// Runs `body`, retrying transport failures within the retry window; engine errors come back as ``ShardDBError``.
    ///
    /// - parameters:
    ///   - onlyUnreached: retry only failures where the call most likely never reached the
    ///     peer (no connection: `unavailable`), never after a deadline or an unknown end
    ///     (a put that timed out may have been stored; sent again it could overwrite a newer write).
    ///   - progress: for a long call (a bulk stream or pull): when it last made progress.
    ///     The window then runs from there, so a call that failed after more than a
    ///     window of good work is retried (it used to count from the call's start).
    ///   - window: the retry window, when not ``Configuration/retryWindow``.
    private func retrying<T: Sendable>(_ what: String, onlyUnreached: Bool = false,
                                       progress: LockedValue<ContinuousClock.Instant>? = nil, window: Duration? = nil,
                                       _ body: () async throws -> T) async throws -> T {
        let started = ContinuousClock.now
        var delay = Duration.milliseconds(20)
        while true {
            // A closed client fails at once (grpc-swift's "client is stopped" would be retried as unavailable).
            guard !isClosed.value else { throw ShardDBError(.closed, "\(address) \(what): this RemoteInstance is closed") }
            let failure: Error
            do {
                return try await body()
            } catch let error as RPCError {
                if let engineError = ErrorMapping.shardDBError(error) {
                    // A checksum the peer found wrong is the wire's fault: send again.
                    guard engineError.code == .corruptedValue else { throw engineError }
                    failure = engineError
                } else {
                    guard Self.isTransient(error.code), !onlyUnreached || error.code == .unavailable else {
                        throw RPCError(code: error.code, message: "\(address) \(what): \(error.message)")
                    }
                    failure = RPCError(code: error.code, message: "\(address) \(what): \(error.message)\(Self.hint(error.message))")
                }
            } catch let error as ShardDBError where error.code == .corruptedValue {
                failure = error  // a chunk that failed its checksum here
            } catch let error as RuntimeError {
                if error.code == .clientIsStopped {
                    throw ShardDBError(.closed, "\(address) \(what): this RemoteInstance is closed")
                }
                failure = RPCError(code: .unavailable, message: "\(address) \(what): \(error.message)")
            }
            try Task.checkCancellation()
            let giveUp = max(started, progress?.value ?? started) + (window ?? configuration.retryWindow)
            guard ContinuousClock.now + delay < giveUp else { throw failure }
            try await Task.sleep(for: delay)
            delay = min(delay * 2, .seconds(1))
        }
    }

    /// A connection closed before HTTP/2 began is, with a live peer, nearly always a failed TLS handshake.
    private static func hint(_ message: String) -> String {
        message.contains("connection preface")
            ? " (if the peer is up: TLS refused — a client certificate missing or from another CA, a server certificate not trusted, or TLS on one side only)"
            : ""
    }

    private static func isTransient(_ code: RPCError.Code) -> Bool {
        switch code {
        case .unavailable, .deadlineExceeded, .unknown, .internalError, .aborted, .resourceExhausted, .cancelled: return true
        default: return false
        }
    }

    private func planRequest(_ plan: MigrationPlan) -> WirePlanRequest { .with { $0.plan = WireMigrationPlan(plan) } }

    // MARK: Both sides

    public func describeInstance() async throws -> InstanceDescription {
        try await describeInstance(retryWindow: nil, callTimeout: nil)
    }

    /// ``describeInstance()`` with a retry window and call deadline of its own (a target
    /// probing a source before pulling from it, on the connection the pull then uses).
    func describeInstance(retryWindow: Duration?, callTimeout: Duration?) async throws -> InstanceDescription {
        let options = options(timeout: callTimeout ?? configuration.callTimeout)
        let wire = try await retrying("describe", window: retryWindow) { try await stub.describe(WireDescribeRequest(), options: options) }
        return try wire.decoded()
    }

    public func migrationEntry(_ id: String) async throws -> MigrationJournalEntry? {
        let reply = try await retrying("migrationEntry") { try await stub.migrationEntry(.with { $0.id = id }, options: options) }
        return reply.hasEntry ? try reply.entry.decoded() : nil
    }

    // MARK: Source

    public func prepareOutgoing(_ plan: MigrationPlan) async throws {
        _ = try await retrying("prepareOutgoing") { try await stub.prepareOutgoing(planRequest(plan), options: options) }
    }

    public func openBulk(_ plan: MigrationPlan) async throws -> UInt64 {
        try await retrying("openBulk") { try await stub.openBulk(planRequest(plan), options: options) }.sequence
    }

    public func readBulk(_ plan: MigrationPlan, after: [UInt8]?, maxBytes: Int) async throws -> BulkChunk {
        try await retrying("readBulk") {
            var stream = bulkStream(plan, after: after, maxBytes: maxBytes)
            do {
                var next = try await stream.next()
                if next == nil {
                    // The stream ended (its chunk budget): a new one from here, at once.
                    dropBulkStream(plan.id, stream)
                    stream = bulkStream(plan, after: after, maxBytes: maxBytes)
                    next = try await stream.next()
                }
                guard let wire = next else {
                    dropBulkStream(plan.id, stream)
                    throw RPCError(code: .unavailable, message: "bulk stream ended")
                }
                var chunk = try wire.decoded()
                chunk.encoded = wire  // forwarded as is by applyBulk (no second encoding, checksum end to end)
                if chunk.done { dropBulkStream(plan.id, stream) } else { stream.expectedAfter.store(chunk.lastKey ?? after) }
                return chunk
            } catch {
                dropBulkStream(plan.id, stream)
                throw error
            }
        }
    }

    /// The entry bytes asked of the source for chunks of about `maxBytes`: a sixteenth
    /// less, so the chunk's message (entries, their lengths, a few fields) fits in
    /// `maxBytes` for entries of 64 bytes or more. grpc-swift assembles each incoming
    /// message in a buffer of the next power of two, so a 4 MiB chunk's message
    /// took an 8 MiB buffer, and it holds up to ten messages per stream.
    static func wireChunkBytes(_ maxBytes: Int) -> Int {
        maxBytes >= 64 << 10 ? maxBytes - maxBytes / 16 : maxBytes
    }

    /// The open bulk stream of `plan` positioned at `after`, or a new one from there.
    /// (Looked up and replaced in one step: moves of several shards of one source
    /// run through one client at once, e.g. a rescale's lanes.)
    private func bulkStream(_ plan: MigrationPlan, after: [UInt8]?, maxBytes: Int) -> BulkStream {
        let (stream, replaced) = bulkStreams.update { streams -> (BulkStream, BulkStream?) in
            if let stream = streams[plan.id], stream.expectedAfter.value == after { return (stream, nil) }
            let stream = startBulkStream(plan, after: after, maxBytes: maxBytes)
            defer { streams[plan.id] = stream }
            return (stream, streams[plan.id])
        }
        if let replaced { Task { await replaced.cancel() } }
        return stream
    }

    /// A new bulk stream of `plan` from `after`, its reader started.
    private func startBulkStream(_ plan: MigrationPlan, after: [UInt8]?, maxBytes: Int) -> BulkStream {
        var request = WireReadBulkRequest()
        request.plan = WireMigrationPlan(plan)
        if let after { request.after = Data(after) }
        request.maxChunkBytes = UInt32(clamping: Self.wireChunkBytes(maxBytes))
        request.maxChunks = UInt32(clamping: max(1, configuration.bulkChunksPerStream))
        request.compression = configuration.readCompression.rawValue
        let stream = BulkStream(after: after, prefetch: configuration.bulkPrefetch)
        let stub = self.stub, options = self.options, pipe = stream.pipe
        stream.reader = Task {
            do {
                try await stub.readBulk(request, options: options) { response in
                    for try await chunk in response.messages { try await pipe.send(chunk) }
                }
                await pipe.finish(nil)
            } catch {
                await pipe.finish(error)
            }
        }
        return stream
    }

    private func dropBulkStream(_ id: String, _ stream: BulkStream) {
        bulkStreams.update { if $0[id] === stream { $0[id] = nil } }
        Task { await stream.cancel() }
    }

    /// The bulk streams open now (tests).
    var openBulkStreams: Int { bulkStreams.value.count }

    /// Nil also from a server that predates table files (the coordinator then copies entries).
    public func exportTableFiles(_ plan: MigrationPlan) async throws -> [TableFile]? {
        do {
            let list = try await retrying("exportTableFiles") { try await stub.exportTableFiles(planRequest(plan), options: options) }
            return list.available ? list.files.map { $0.decoded() } : nil
        } catch let error as RPCError where error.code == .unimplemented {
            return nil
        }
    }

    /// The files are on another machine: they travel with ``readTableFile(_:name:offset:maxBytes:)``.
    public var exportsLocalTableFiles: Bool { false }
    /// This process cannot hand the peer a path: files reach it with ``writeTableFile(_:name:offset:_:)``.
    public var importsLocalTableFiles: Bool { false }

    public func readTableFile(_ plan: MigrationPlan, name: String, offset: UInt64, maxBytes: Int) async throws -> Data {
        try await readTableFilePiece(plan, name: name, offset: offset, maxBytes: maxBytes).data
    }

    /// The piece, with the message it came in as its encoded form: ``writeTableFiles(_:pieces:written:)``
    /// forwards that as it is (compressed when it came so, checksum end to end).
    /// Pieces come compressed as ``Configuration/readCompression`` allows, but
    /// for those of a file that did not shrink (``CompressionProbe``).
    public func readTableFilePiece(_ plan: MigrationPlan, name: String, offset: UInt64, maxBytes: Int) async throws -> TableFilePiece {
        let file = plan.id + "/" + name
        let compression = compressionProbe.update { $0.compression(for: file, accepting: configuration.readCompression) }
        let request = WireReadTableFileRequest.with {
            $0.plan = WireMigrationPlan(plan)
            $0.name = name
            $0.offset = offset
            $0.maxBytes = UInt32(clamping: maxBytes)
            $0.compression = compression.rawValue
        }
        // (A server reads at least 4 KiB, at most the largest chunk it takes.)
        let limit = min(max(maxBytes, 4096), MigrationServer.largestBulkChunkBytes)
        // A chunk that fails its checksum here is read again.
        let piece = try await retrying("readTableFile") {
            let chunk = try await stub.readTableFile(request, options: options)
            return TableFilePiece(name: name, offset: offset, data: try chunk.decoded(atMost: limit), encoded: chunk)
        }
        if compression != .none {
            let shrank = (piece.encoded as? WireTableFileChunk)?.compression != BulkCompression.none.rawValue
            compressionProbe.update { $0.record(file, shrank: shrank) }
        }
        return piece
    }

    public func releaseTableFiles(_ plan: MigrationPlan) async throws {
        _ = try await retrying("releaseTableFiles") { try await stub.releaseTableFiles(planRequest(plan), options: options) }
    }

    public func readChanges(_ plan: MigrationPlan, from: UInt64, maxRecords: Int) async throws -> ChangeChunk {
        let request = WireReadChangesRequest.with {
            $0.plan = WireMigrationPlan(plan)
            $0.from = from
            $0.maxRecords = UInt32(clamping: maxRecords)
        }
        return try await retrying("readChanges") {
            try await stub.readChanges(request, options: options) { response in
                var records: [ChangeRecord] = []
                for try await part in response.messages {
                    records += try part.decodedRecords()
                    if part.last { return ChangeChunk(records: records, nextSequence: part.nextSequence, latestSequence: part.latestSequence) }
                }
                throw RPCError(code: .unavailable, message: "changelog stream ended early")
            }
        }
    }

    public func prepareCutover(_ plan: MigrationPlan) async throws {
        _ = try await retrying("prepareCutover") { try await stub.prepareCutover(planRequest(plan), options: options) }
    }

    public func fenceOutgoing(_ plan: MigrationPlan) async throws -> UInt64 {
        try await retrying("fenceOutgoing") { try await stub.fenceOutgoing(planRequest(plan), options: options) }.sequence
    }

    public func commitOutgoing(_ plan: MigrationPlan) async throws {
        _ = try await retrying("commitOutgoing") { try await stub.commitOutgoing(planRequest(plan), options: options) }
    }

    public func abortOutgoing(_ plan: MigrationPlan) async throws {
        if let stream = bulkStreams.value[plan.id] { dropBulkStream(plan.id, stream) }
        _ = try await retrying("abortOutgoing") { try await stub.abortOutgoing(planRequest(plan), options: options) }
    }

    public func cleanupOutgoing(_ plan: MigrationPlan) async throws {
        _ = try await retrying("cleanupOutgoing") { try await stub.cleanupOutgoing(planRequest(plan), options: options) }
    }

    // MARK: Target

    public func prepareIncoming(_ plan: MigrationPlan, snapshotSequence: UInt64) async throws -> IncomingState {
        let request = WirePrepareIncomingRequest.with { $0.plan = WireMigrationPlan(plan); $0.snapshotSequence = snapshotSequence }
        return try await retrying("prepareIncoming") { try await stub.prepareIncoming(request, options: options) }.decoded()
    }

    public func applyBulk(_ plan: MigrationPlan, _ chunk: BulkChunk) async throws {
        let wire = chunk.encoded as? WireBulkChunk ?? WireBulkChunk(chunk)
        let request = WireApplyBulkRequest.with { $0.plan = WireMigrationPlan(plan); $0.chunk = wire }
        _ = try await retrying("applyBulk") { try await stub.applyBulk(request, options: options) }
    }

    /// Streams the chunks with ``Configuration/bulkInFlight`` of them unacknowledged at most.
    public func applyBulk(_ plan: MigrationPlan, chunks next: @escaping @Sendable () async throws -> BulkChunk?,
                          applied: @escaping @Sendable (BulkChunk) -> Void) async throws {
        let wirePlan = WireMigrationPlan(plan)
        let stub = self.stub, options = self.options
        try await streamInOrder("applyBulkStream", next: next, done: applied, request: { chunk in
            WireApplyBulkRequest.with {
                $0.plan = wirePlan
                $0.chunk = chunk.encoded as? WireBulkChunk ?? WireBulkChunk(chunk)
            }
        }, call: { producer, onResponse in
            try await stub.applyBulkStream(options: options, requestProducer: producer, onResponse: onResponse)
        }, unary: { try await self.applyBulk(plan, $0) })
    }

    /// The address this client reaches the instance at, for a target that pulls the bulk copy itself.
    public var peerAddress: String? { address.description }
    /// What a server reads or takes per bulk message (``MigrationServer/largestBulkChunkBytes``).
    public var largestBulkChunkBytes: Int { MigrationServer.largestBulkChunkBytes }
    /// Change records per ApplyChanges message, in bytes (a catch-up batch may be far larger).
    static let changesPerMessageBytes = 8 << 20

    /// Asks the instance to pull the bulk copy from the source at `address`
    /// itself, in calls of ``Configuration/bulkChunksPerStream`` chunks, each
    /// call resuming after the last key the previous one reported. False when
    /// the instance cannot (no credentials for peers, the source unreachable or
    /// refusing it, a server without the call), possibly after some chunks:
    /// `applied` has reported those, and the coordinator relays from there.
    public func pullBulk(_ plan: MigrationPlan, fromSourceAt address: String, after: [UInt8]?, maxBytes: Int,
                         applied: @escaping @Sendable (BulkPullProgress) -> Void) async throws -> Bool {
        let position = LockedValue<(after: [UInt8]?, done: Bool)>((after, false))
        let progressed = LockedValue(ContinuousClock.now)
        let wirePlan = WireMigrationPlan(plan)
        return try await unlessPullRefused {
            while !position.value.done {
                try await retrying("pullBulk", progress: progressed) {
                    var request = WirePullBulkRequest()
                    request.plan = wirePlan
                    request.sourceAddress = address
                    if let after = position.value.after { request.after = Data(after) }
                    request.maxChunkBytes = UInt32(clamping: maxBytes)
                    request.maxChunks = UInt32(clamping: max(1, configuration.bulkChunksPerStream))
                    request.sourceRetryMs = sourceRetryMilliseconds
                    request.compression = configuration.pullCompression.rawValue
                    try await stub.pullBulk(request, options: options) { response in
                        for try await message in response.messages {
                            // (No wire bytes for bytes: a target that predates the count.)
                            let counted = message.wireBytes > 0 || message.bytes == 0
                            let chunk = BulkPullProgress(keys: Int(clamping: message.keys), bytes: Int(clamping: message.bytes),
                                                         lastKey: message.hasLastKey ? [UInt8](message.lastKey) : nil,
                                                         done: message.done,
                                                         wireBytes: counted ? Int(clamping: message.wireBytes) : nil)
                            position.update { position in
                                position.after = chunk.lastKey ?? position.after
                                position.done = chunk.done
                            }
                            progressed.store(ContinuousClock.now)
                            applied(chunk)
                        }
                    }
                }
            }
        }
    }

    /// Asks the instance to copy the exported `files` from the source at
    /// `address` itself, about 256 MiB per call, each call resuming at the
    /// file and offset the previous one reported. False as for
    /// ``pullBulk(_:fromSourceAt:after:maxBytes:applied:)``.
    public func pullTableFiles(_ plan: MigrationPlan, _ files: [TableFile], fromSourceAt address: String, chunkBytes: Int,
                               written: @escaping @Sendable (_ bytes: Int, _ wireBytes: Int?) -> Void) async throws -> Bool {
        guard !files.isEmpty else { return true }
        let position = LockedValue<(file: UInt32, offset: UInt64, done: Bool)>((0, 0, false))
        let wirePlan = WireMigrationPlan(plan)
        let wireFiles = files.map(WireTableFileInfo.init)
        let callBytes = UInt64(max(chunkBytes, 1) * max(1, configuration.bulkChunksPerStream))
        let progressed = LockedValue(ContinuousClock.now)
        return try await unlessPullRefused {
            while !position.value.done {
                try await retrying("pullTableFiles", progress: progressed) {
                    var request = WirePullTableFilesRequest()
                    request.plan = wirePlan
                    request.sourceAddress = address
                    request.files = wireFiles
                    (request.resumeFile, request.resumeOffset) = (position.value.file, position.value.offset)
                    request.maxChunkBytes = UInt32(clamping: chunkBytes)
                    request.maxCallBytes = callBytes
                    request.sourceRetryMs = sourceRetryMilliseconds
                    request.compression = configuration.pullCompression.rawValue
                    try await stub.pullTableFiles(request, options: options) { response in
                        for try await message in response.messages {
                            position.store((message.file, message.offset, message.done))
                            progressed.store(ContinuousClock.now)
                            // (No wire bytes: a target that predates the count.)
                            if message.bytes > 0 {
                                written(Int(clamping: message.bytes), message.wireBytes > 0 ? Int(clamping: message.wireBytes) : nil)
                            }
                        }
                    }
                }
            }
        }
    }

    /// The retry window a pulling target applies toward the source: this client's own.
    private var sourceRetryMilliseconds: UInt32 {
        let (seconds, attoseconds) = configuration.retryWindow.components
        let (milliseconds, overflow) = seconds.multipliedReportingOverflow(by: 1000)
        return overflow ? .max : UInt32(clamping: max(1, milliseconds + attoseconds / 1_000_000_000_000_000))
    }

    /// Runs a pull; false when the instance answered that it cannot pull (no
    /// credentials for peers, the source unreachable, refusing it or another
    /// instance: FAILED_PRECONDITION) or does not know the call (UNIMPLEMENTED).
    /// Engine errors arrive as ``ShardDBError``, so an `RPCError` here is the transport's answer.
    private func unlessPullRefused(_ pull: () async throws -> Void) async throws -> Bool {
        do {
            try await pull()
            return true
        } catch let error as RPCError where error.code == .unimplemented || error.code == .failedPrecondition {
            return false
        }
    }

    public func writeTableFile(_ plan: MigrationPlan, name: String, offset: UInt64, _ data: Data) async throws {
        let request = Self.writeTableFileRequest(WireMigrationPlan(plan), TableFilePiece(name: name, offset: offset, data: data))
        do {
            _ = try await retrying("writeTableFile") { try await stub.writeTableFile(request, options: options) }
        } catch let error as RPCError where error.code == .unimplemented {
            throw ShardDBError(.tableFilesUnsupported, "\(address) takes no table files (an older version)")
        }
    }

    /// Streams the pieces as ``applyBulk(_:chunks:applied:)`` streams chunks.
    public func writeTableFiles(_ plan: MigrationPlan, pieces next: @escaping @Sendable () async throws -> TableFilePiece?,
                                written: @escaping @Sendable (TableFilePiece) -> Void) async throws {
        let wirePlan = WireMigrationPlan(plan)
        let stub = self.stub, options = self.options
        try await streamInOrder("writeTableFileStream", next: next, done: written, request: { piece in
            Self.writeTableFileRequest(wirePlan, piece)
        }, call: { producer, onResponse in
            try await stub.writeTableFileStream(options: options, requestProducer: producer, onResponse: onResponse)
        }, unary: { try await self.writeTableFile(plan, name: $0.name, offset: $0.offset, $0.data) })
    }

    static func writeTableFileRequest(_ plan: WireMigrationPlan, _ piece: TableFilePiece) -> WireWriteTableFileRequest {
        .with {
            $0.plan = plan
            $0.name = piece.name
            $0.offset = piece.offset
            $0.chunk = piece.encoded as? WireTableFileChunk ?? WireTableFileChunk(piece.data)
        }
    }

    /// Sends what `next` returns on client streams of ``Configuration/bulkChunksPerStream``
    /// items, each answered by one `Ack` in order once the peer applied it, and
    /// calls `done` per acknowledged item. At most ``Configuration/bulkInFlight``
    /// items are unacknowledged, and they are kept: when a stream fails in
    /// transport, a new one sends them again first (applying an item twice is
    /// harmless: the peer's calls are idempotent and in order), within the retry
    /// window. Errors `next` throws end the call as they are. A peer that does
    /// not know the stream gets one `unary` call per item instead.
    private func streamInOrder<Item: Sendable, Request: Sendable>(
        _ what: String,
        next: @escaping @Sendable () async throws -> Item?,
        done: @escaping @Sendable (Item) -> Void,
        request: @escaping @Sendable (Item) -> Request,
        call: @escaping @Sendable (_ producer: @escaping @Sendable (RPCWriter<Request>) async throws -> Void,
                                   _ onResponse: @escaping @Sendable (StreamingClientResponse<WireAck>) async throws -> Void)
            async throws -> Void,
        unary: @escaping @Sendable (Item) async throws -> Void
    ) async throws {
        let state = LockedValue(InOrderStream<Item>())
        let progressed = LockedValue(ContinuousClock.now)
        let perStream = max(1, configuration.bulkChunksPerStream), inFlight = max(1, configuration.bulkInFlight)
        while !state.value.finished {
            do {
                try await retrying(what, progress: progressed) {
                    // What `next` threw may come back from the call as a transport error: never retried.
                    if let failure = state.value.sourceFailure { throw SourceFailure(error: failure) }
                    let window = StreamWindow(limit: inFlight)
                    try await call({ writer in
                        var sent = 0
                        for item in state.value.unacknowledged {
                            try await window.acquire()
                            try await writer.write(request(item))
                            sent += 1
                        }
                        while sent < perStream && !state.value.exhausted {
                            try Task.checkCancellation()
                            try await window.acquire()
                            let item: Item?
                            do { item = try await next() } catch {
                                // Cancelled because the call ended (the peer answered UNIMPLEMENTED, or the
                                // connection dropped): the call's own error decides; `next` is asked again.
                                if !Task.isCancelled { state.update { $0.sourceFailure = error } }
                                throw error
                            }
                            guard let item else {
                                state.update { $0.exhausted = true }
                                break
                            }
                            state.update { $0.unacknowledged.append(item) }
                            try await writer.write(request(item))
                            sent += 1
                        }
                    }, { response in
                        do {
                            for try await _ in response.messages {
                                guard let item = state.update({ $0.unacknowledged.isEmpty ? nil : $0.unacknowledged.removeFirst() }) else {
                                    throw RPCError(code: .internalError, message: "more acknowledgements than items sent")
                                }
                                await window.release()
                                progressed.store(ContinuousClock.now)
                                done(item)
                            }
                        } catch {
                            await window.close()
                            throw error
                        }
                        await window.close()
                    })
                    if let failure = state.value.sourceFailure { throw SourceFailure(error: failure) }
                    // A stream that ended with items unacknowledged was cut short: send them again.
                    guard state.value.unacknowledged.isEmpty else {
                        throw RPCError(code: .unavailable, message: "stream ended before every item was acknowledged")
                    }
                }
            } catch let failure as SourceFailure {
                throw failure.error
            } catch let error as RPCError where error.code == .unimplemented && state.value.sourceFailure == nil {
                // A peer without the stream: one call per item, in order, those already taken first.
                let taken = state.update { state in
                    defer { state.unacknowledged = [] }
                    return state.unacknowledged
                }
                for item in taken {
                    try await unary(item)
                    done(item)
                }
                while !state.value.exhausted, let item = try await next() {
                    try await unary(item)
                    done(item)
                }
                return
            } catch {
                if let failure = state.value.sourceFailure { throw failure }
                throw error
            }
        }
    }

    public func importTableFiles(_ plan: MigrationPlan, _ files: [TableFile]) async throws -> Bool {
        let request = WireImportTableFilesRequest.with {
            $0.plan = WireMigrationPlan(plan)
            $0.files = files.map(WireTableFileInfo.init)
        }
        do {
            return try await retrying("importTableFiles") { try await stub.importTableFiles(request, options: options) }.imported
        } catch let error as RPCError where error.code == .unimplemented {
            return false
        }
    }

    /// Sends the chunk in messages of about ``changesPerMessageBytes`` (a server takes
    /// at most 64 MiB per message, and a catch-up batch of big values is larger): each
    /// part but the last says "everything before my last record's successor has been
    /// looked at", which the target applies as it would one chunk, skipping what it has.
    public func applyChanges(_ plan: MigrationPlan, _ chunk: ChangeChunk) async throws {
        let wirePlan = WireMigrationPlan(plan)
        for part in Self.messageParts(of: chunk, maxBytes: Self.changesPerMessageBytes) {
            let records = part.records.map(WireChangeRecord.init)
            let request = WireApplyChangesRequest.with {
                $0.plan = wirePlan
                $0.chunk = WireChangeChunk.with {
                    $0.records = records
                    $0.nextSequence = part.nextSequence
                    $0.latestSequence = part.latestSequence
                    $0.last = true
                }.sealed()
            }
            _ = try await retrying("applyChanges") { try await stub.applyChanges(request, options: options) }
        }
    }

    /// `chunk` cut into chunks of at most `maxBytes` of keys and values (a record larger
    /// than that alone), in order; the last one keeps the chunk's next sequence.
    static func messageParts(of chunk: ChangeChunk, maxBytes: Int) -> [ChangeChunk] {
        var parts: [ChangeChunk] = []
        var start = 0, bytes = 0
        for (index, record) in chunk.records.enumerated() {
            let size = 64 + record.storedKey.count + (record.storedEndKey?.count ?? 0) + (record.value?.count ?? 0)
            if index > start && bytes + size > maxBytes {
                let records = Array(chunk.records[start..<index])
                parts.append(ChangeChunk(records: records, nextSequence: records.last!.sequence &+ 1, latestSequence: chunk.latestSequence))
                start = index
                bytes = 0
            }
            bytes += size
        }
        // (Usually the whole chunk fits: sent as it is, not copied.)
        parts.append(start == 0 ? chunk
            : ChangeChunk(records: Array(chunk.records[start...]), nextSequence: chunk.nextSequence, latestSequence: chunk.latestSequence))
        return parts
    }

    public func commitIncoming(_ plan: MigrationPlan, finalSequence: UInt64) async throws {
        let request = WireCommitIncomingRequest.with { $0.plan = WireMigrationPlan(plan); $0.finalSequence = finalSequence }
        _ = try await retrying("commitIncoming") { try await stub.commitIncoming(request, options: options) }
    }

    public func abortIncoming(_ plan: MigrationPlan) async throws {
        _ = try await retrying("abortIncoming") { try await stub.abortIncoming(planRequest(plan), options: options) }
    }

    // MARK: Keys

    /// The live value under `key`, or nil.
    ///
    /// - throws: ``ShardDBError`` as ``ShardEngine/get(_:)`` does (`.keyNotOwned` names the new owner).
    public func get(_ key: [UInt8]) async throws -> [UInt8]? {
        let reply = try await retrying("get") { try await stub.get(.with { $0.key = Data(key) }, options: options) }
        return reply.hasValue ? [UInt8](reply.value) : nil
    }

    /// Stores `value` under `key`; `ttlSeconds` nil keeps the shard's default TTL.
    ///
    /// A put is retried only on `unavailable` (no connection, or one that broke), never
    /// after a deadline or an unknown end: sent again, a put that was stored could
    /// overwrite a newer write of another client. A connection that broke after the
    /// put reached the engine (the server killed just then) still leaves that chance.
    public func put(_ key: [UInt8], _ value: [UInt8], ttlSeconds: Int64? = nil) async throws {
        let request = WirePutRequest.with {
            $0.key = Data(key)
            $0.value = Data(value)
            if let ttlSeconds { $0.ttlSeconds = ttlSeconds }
        }
        _ = try await retrying("put", onlyUnreached: true) { try await stub.put(request, options: options) }
    }

    /// Removes `key`; retried as ``put(_:_:ttlSeconds:)`` is.
    public func delete(_ key: [UInt8]) async throws {
        _ = try await retrying("delete", onlyUnreached: true) { try await stub.delete(.with { $0.key = Data(key) }, options: options) }
    }
}

/// One server stream of bulk chunks and where it stands.
final class BulkStream: @unchecked Sendable {
    let pipe: ChunkPipe<WireBulkChunk>
    /// The `after` the next chunk answers (the last key of the chunk before it).
    let expectedAfter: LockedValue<[UInt8]?>
    var reader: Task<Void, Never>?

    init(after: [UInt8]?, prefetch: Int) {
        pipe = ChunkPipe(capacity: prefetch)
        expectedAfter = LockedValue(after)
    }

    func next() async throws -> WireBulkChunk? { try await pipe.next() }

    func cancel() async {
        await pipe.close()
        reader?.cancel()
    }
}

/// What ``RemoteInstance/streamInOrder`` keeps across the streams of one call.
struct InOrderStream<Item> {
    /// Sent and not yet acknowledged, in order.
    var unacknowledged: [Item] = []
    /// `next` returned nil.
    var exhausted = false
    /// What `next` threw (not retried).
    var sourceFailure: Error?

    var finished: Bool { exhausted && unacknowledged.isEmpty }
}

/// An error of the item source, carried through the retry loop untouched.
private struct SourceFailure: Error {
    let error: Error
}

/// Bounds the unacknowledged items of one stream: the producer acquires before
/// each send, each acknowledgement releases; closing wakes and fails a waiting producer.
actor StreamWindow {
    private let limit: Int
    private var taken = 0
    private var waiters: [CheckedContinuation<Void, Never>] = []
    private var closed = false

    init(limit: Int) { self.limit = limit }

    /// - throws: `CancellationError` once the stream is closed.
    func acquire() async throws {
        while taken >= limit && !closed {
            await withCheckedContinuation { waiters.append($0) }
        }
        if closed { throw CancellationError() }
        taken += 1
    }

    func release() {
        taken = max(0, taken - 1)
        if !waiters.isEmpty { waiters.removeFirst().resume() }
    }

    func close() {
        closed = true
        waiters.forEach { $0.resume() }
        waiters = []
    }
}
