import Foundation
import GRPCCore
import ShardDB

/// The gRPC service of one engine: each call decodes its message, runs the
/// engine's ``MigrationSource``/``MigrationTarget`` method (off the
/// cooperative pool) and encodes the answer. Engine errors travel as
/// ``ErrorMapping`` describes.
struct ShardInstanceService: WireShardInstance.SimpleServiceProtocol {
    let engine: ShardEngine
    /// What `describe` reports as the instance's location (the server's address).
    let location: @Sendable () -> String
    let rateLimiter: BulkRateLimiter?
    /// How this instance authenticates to a source it pulls a bulk copy from; nil: it does not pull.
    let peers: PeerCredentials?
    let pullGate = PullGate()

    /// Runs `body` on a blocking thread, turning engine errors into RPC errors.
    func call<T: Sendable>(_ body: @escaping @Sendable () throws -> T) async throws -> T {
        do { return try await blocking(body) } catch { throw ErrorMapping.rpcError(error) }
    }

    func plan(_ wire: WireMigrationPlan) throws -> MigrationPlan {
        do { return try wire.decoded() } catch { throw ErrorMapping.rpcError(error) }
    }

    func describe(request: WireDescribeRequest, context: ServerContext) async throws -> WireInstanceDescription {
        var description = try await call { try engine.describeInstance() }
        description.location = location()
        return WireInstanceDescription(description)
    }

    func migrationEntry(request: WireMigrationEntryRequest, context: ServerContext) async throws -> WireMigrationEntryReply {
        let entry = try await call { try engine.migrationEntry(request.id) }
        return .with { reply in if let entry { reply.entry = WireJournalEntry(entry) } }
    }

    // MARK: Source

    func prepareOutgoing(request: WirePlanRequest, context: ServerContext) async throws -> WireAck {
        let plan = try plan(request.plan)
        try await call { try engine.prepareOutgoing(plan) }
        return WireAck()
    }

    func openBulk(request: WirePlanRequest, context: ServerContext) async throws -> WireSequenceReply {
        let plan = try plan(request.plan)
        let sequence = try await call { try engine.openBulk(plan) }
        return .with { $0.sequence = sequence }
    }

    func readBulk(request: WireReadBulkRequest, response: RPCWriter<WireBulkChunk>, context: ServerContext) async throws {
        let plan = try plan(request.plan)
        let maxBytes = Int(min(max(request.maxChunkBytes, 4096), UInt32(MigrationServer.largestBulkChunkBytes)))
        var after: [UInt8]? = request.hasAfter ? [UInt8](request.after) : nil
        // A method this version does not know: the chunks go as read (always understood).
        let compression = BulkCompression(rawValue: request.compression) ?? .none
        // After a chunk that did not shrink, the next few go as read without trying (random-like values).
        var probe = CompressionProbe()
        for _ in 0..<max(1, Int(request.maxChunks)) {
            let from = after
            let asked = probe.compression(for: "", accepting: compression)
            // Compressed there too: Snappy takes milliseconds for a large chunk.
            let (chunk, wire) = try await call { () throws -> (BulkChunk, WireBulkChunk) in
                let chunk = try engine.readBulk(plan, after: from, maxBytes: maxBytes)
                return (chunk, WireBulkChunk(chunk, compression: asked))
            }
            if asked != .none { probe.record("", shrank: wire.compression != BulkCompression.none.rawValue) }
            if let rateLimiter { try await rateLimiter.acquire(chunk.bytes) }
            try await response.write(wire)
            if chunk.done { return }
            after = chunk.lastKey ?? after
        }
    }

    func exportTableFiles(request: WirePlanRequest, context: ServerContext) async throws -> WireTableFileList {
        let plan = try plan(request.plan)
        let files = try await call { try engine.exportTableFiles(plan) }
        return .with { list in
            if let files {
                list.available = true
                list.files = files.map(WireTableFileInfo.init)
            }
        }
    }

    func readTableFile(request: WireReadTableFileRequest, context: ServerContext) async throws -> WireTableFileChunk {
        let plan = try plan(request.plan)
        let name = request.name, offset = request.offset
        let maxBytes = Int(min(max(request.maxBytes, 4096), UInt32(MigrationServer.largestBulkChunkBytes)))
        let compression = BulkCompression(rawValue: request.compression) ?? .none
        // Compressed on the thread that read it, not on the cooperative pool.
        let (bytes, chunk) = try await call { () -> (Int, WireTableFileChunk) in
            let data = try engine.readTableFile(plan, name: name, offset: offset, maxBytes: maxBytes)
            return (data.count, WireTableFileChunk(data, compression: compression))
        }
        if let rateLimiter { try await rateLimiter.acquire(bytes) }
        return chunk
    }

    func releaseTableFiles(request: WirePlanRequest, context: ServerContext) async throws -> WireAck {
        let plan = try plan(request.plan)
        try await call { engine.releaseTableFiles(plan) }
        return WireAck()
    }

    func readChanges(request: WireReadChangesRequest, response: RPCWriter<WireChangeChunk>, context: ServerContext) async throws {
        let plan = try plan(request.plan)
        let from = request.from
        let maxRecords = Int(min(max(request.maxRecords, 1), 1_000_000))
        let chunk = try await call { try engine.readChanges(plan, from: from, maxRecords: maxRecords, durable: true) }
        // Parts of about a megabyte, so a large catch-up read streams instead of forming one huge message.
        var part: [WireChangeRecord] = []
        var partBytes = 0
        for record in chunk.records {
            let wire = WireChangeRecord(record)
            partBytes += wire.storedKey.count + wire.value.count + 32
            part.append(wire)
            if partBytes >= 1 << 20 {
                try await response.write(WireChangeChunk.with { $0.records = part }.sealed())
                part = []
                partBytes = 0
            }
        }
        try await response.write(WireChangeChunk.with {
            $0.records = part
            $0.nextSequence = chunk.nextSequence
            $0.latestSequence = chunk.latestSequence
            $0.last = true
        }.sealed())
    }

    func prepareCutover(request: WirePlanRequest, context: ServerContext) async throws -> WireAck {
        let plan = try plan(request.plan)
        // Both protocols' prepareCutover are the same engine call (a WAL sync).
        try await call { try engine.prepareCutover(plan) }
        return WireAck()
    }

    func fenceOutgoing(request: WirePlanRequest, context: ServerContext) async throws -> WireSequenceReply {
        let plan = try plan(request.plan)
        let sequence = try await call { try engine.fenceOutgoing(plan) }
        return .with { $0.sequence = sequence }
    }

    func commitOutgoing(request: WirePlanRequest, context: ServerContext) async throws -> WireAck {
        let plan = try plan(request.plan)
        try await call { try engine.commitOutgoing(plan) }
        return WireAck()
    }

    func abortOutgoing(request: WirePlanRequest, context: ServerContext) async throws -> WireAck {
        let plan = try plan(request.plan)
        try await call { try engine.abortOutgoing(plan) }
        return WireAck()
    }

    func cleanupOutgoing(request: WirePlanRequest, context: ServerContext) async throws -> WireAck {
        let plan = try plan(request.plan)
        try await call { try engine.cleanupOutgoing(plan) }
        return WireAck()
    }

    // MARK: Target

    func prepareIncoming(request: WirePrepareIncomingRequest, context: ServerContext) async throws -> WireIncomingState {
        let plan = try plan(request.plan)
        let snapshot = request.snapshotSequence
        let state = try await call { try engine.prepareIncoming(plan, snapshotSequence: snapshot) }
        return WireIncomingState(state)
    }

    func applyBulk(request: WireApplyBulkRequest, context: ServerContext) async throws -> WireAck {
        let plan = try plan(request.plan)
        let chunk: BulkChunk
        do { chunk = try request.chunk.decoded() } catch { throw ErrorMapping.rpcError(error) }
        try await call { try engine.applyBulk(plan, [chunk], durable: true) }
        return WireAck()
    }

    /// Applies the stream's chunks in order and acknowledges each once applied; the
    /// transport keeps receiving the next ones meanwhile (the client bounds how many).
    func applyBulkStream(request: RPCAsyncSequence<WireApplyBulkRequest, any Error>, response: RPCWriter<WireAck>,
                         context: ServerContext) async throws {
        for try await message in request {
            _ = try await applyBulk(request: message, context: context)
            try await response.write(WireAck())
        }
    }

    /// Writes the stream's table file pieces in order and acknowledges each once written.
    func writeTableFileStream(request: RPCAsyncSequence<WireWriteTableFileRequest, any Error>, response: RPCWriter<WireAck>,
                              context: ServerContext) async throws {
        for try await message in request {
            _ = try await writeTableFile(request: message, context: context)
            try await response.write(WireAck())
        }
    }

    func writeTableFile(request: WireWriteTableFileRequest, context: ServerContext) async throws -> WireAck {
        let plan = try plan(request.plan)
        let name = request.name, offset = request.offset
        let data: Data
        // (Relayed pieces come as read; a compressed one may not claim more than a chunk.)
        do { data = try request.chunk.decoded(atMost: MigrationServer.largestBulkChunkBytes) } catch { throw ErrorMapping.rpcError(error) }
        try await call { try engine.writeTableFile(plan, name: name, offset: offset, data) }
        return WireAck()
    }

    func importTableFiles(request: WireImportTableFilesRequest, context: ServerContext) async throws -> WireImportTableFilesReply {
        let plan = try plan(request.plan)
        let files = request.files.map { $0.decoded() }
        let imported = try await call { try engine.importTableFiles(plan, files) }
        return .with { $0.imported = imported }
    }

    func applyChanges(request: WireApplyChangesRequest, context: ServerContext) async throws -> WireAck {
        let plan = try plan(request.plan)
        let chunk: ChangeChunk
        do {
            chunk = ChangeChunk(records: try request.chunk.decodedRecords(), nextSequence: request.chunk.nextSequence,
                                latestSequence: request.chunk.latestSequence)
        } catch { throw ErrorMapping.rpcError(error) }
        try await call { try engine.applyChanges(plan, chunk, durable: true) }
        return WireAck()
    }

    func commitIncoming(request: WireCommitIncomingRequest, context: ServerContext) async throws -> WireAck {
        let plan = try plan(request.plan)
        let final = request.finalSequence
        try await call { try engine.commitIncoming(plan, finalSequence: final) }
        return WireAck()
    }

    func abortIncoming(request: WirePlanRequest, context: ServerContext) async throws -> WireAck {
        let plan = try plan(request.plan)
        try await call { try engine.abortIncoming(plan) }
        return WireAck()
    }

    // MARK: Keys

    func get(request: WireGetRequest, context: ServerContext) async throws -> WireGetReply {
        let key = [UInt8](request.key)
        let value = try await call { try engine.get(key) }
        return .with { reply in if let value { reply.value = Data(value) } }
    }

    func put(request: WirePutRequest, context: ServerContext) async throws -> WireAck {
        let key = [UInt8](request.key), value = [UInt8](request.value)
        // TTL.seconds saturates (the engine then refuses an expiry that overflows) instead of trapping.
        let ttl: TTL = request.hasTtlSeconds ? .seconds(request.ttlSeconds) : .shardDefault
        try await call { try engine.put(key, value, ttl: ttl) }
        return WireAck()
    }

    func delete(request: WireDeleteRequest, context: ServerContext) async throws -> WireAck {
        let key = [UInt8](request.key)
        try await call { try engine.delete(key) }
        return WireAck()
    }
}
