import Foundation
import GRPCCore
import ShardDB

/// How a server authenticates to other instances when, as a migration target,
/// it pulls a bulk copy from the source itself (docs/TRANSPORT.md, "Direct bulk copy").
public struct PeerCredentials: Sendable {
    /// The token sent to the source; nil when a client certificate (`tls`) authenticates.
    public var secret: SharedSecret?
    /// TLS toward the source (and the client certificate to present).
    public var tls: ClientTLS?
    /// How long the source may take to answer the first call before the pull is
    /// refused (and the coordinator relays the chunks instead).
    public var probeWindow: Duration = .seconds(2)
    /// How long reading from the source keeps retrying transport failures (a
    /// source restarting) before the pull call fails.
    public var retryWindow: Duration = .seconds(30)

    public init(secret: SharedSecret?, tls: ClientTLS? = nil) {
        self.secret = secret
        self.tls = tls
    }
}

/// Lets one pull per migration run at a time: a coordinator that gave up on a
/// call (deadline, dropped connection) calls again, and the new call waits
/// until the old one has stopped writing. A waiting call whose coordinator
/// gives up on it too (the handler's task cancelled) stops waiting at once.
actor PullGate {
    private var running: Set<String> = []
    private var waiters: [String: [(ticket: Int, continuation: CheckedContinuation<Void, Error>)]] = [:]
    private var tickets = 0

    /// Returns once no other pull of `id` runs.
    ///
    /// - throws: `CancellationError` when the task is cancelled while it waits.
    func enter(_ id: String) async throws {
        while running.contains(id) {
            tickets += 1
            let ticket = tickets
            try await withTaskCancellationHandler {
                try await withCheckedThrowingContinuation { (continuation: CheckedContinuation<Void, Error>) in
                    if Task.isCancelled {
                        continuation.resume(throwing: CancellationError())
                    } else {
                        waiters[id, default: []].append((ticket, continuation))
                    }
                }
            } onCancel: {
                Task { await self.withdraw(ticket, of: id) }
            }
        }
        running.insert(id)
    }

    func leave(_ id: String) {
        running.remove(id)
        if var queue = waiters[id], !queue.isEmpty {
            queue.removeFirst().continuation.resume()
            waiters[id] = queue.isEmpty ? nil : queue
        }
    }

    /// The waiters of `id` (tests).
    func waiting(_ id: String) -> Int { waiters[id]?.count ?? 0 }

    private func withdraw(_ ticket: Int, of id: String) {
        guard var queue = waiters[id], let index = queue.firstIndex(where: { $0.ticket == ticket }) else { return }
        let waiter = queue.remove(at: index)
        waiters[id] = queue.isEmpty ? nil : queue
        waiter.continuation.resume(throwing: CancellationError())
    }
}

extension ShardInstanceService {
    /// The target side of ``RemoteInstance/pullBulk(_:fromSourceAt:after:maxBytes:applied:)``:
    /// connects to the source, checks it is the plan's source, then applies up to
    /// `max_chunks` chunks read there in pieces (reading the next chunk's pieces
    /// while writing one), reporting each once it is durable.
    func pullBulk(request: WirePullBulkRequest, response: RPCWriter<WirePullBulkProgress>, context: ServerContext) async throws {
        let plan = try plan(request.plan)
        let maxBytes = Int(min(max(request.maxChunkBytes, 4096), UInt32(MigrationServer.largestBulkChunkBytes)))
        let maxChunks = max(1, Int(min(request.maxChunks, 4096)))
        let pieces = Self.pullPieces(maxBytes)
        try await pullGate.enter(plan.id)
        defer { Task { await pullGate.leave(plan.id) } }
        // One source stream for the whole call: its budget counts pieces.
        try await withSource(at: request.sourceAddress, of: plan, chunksPerStream: maxChunks * pieces.perChunk + 1,
                             retryMilliseconds: request.sourceRetryMs,
                             compression: BulkCompression(rawValue: request.compression) ?? .none) { source in
            try await pull(plan, from: source, after: request.hasAfter ? [UInt8](request.after) : nil,
                           maxBytes: maxBytes, pieces: pieces, maxChunks: maxChunks, response: response)
        }
    }

    /// The target side of ``RemoteInstance/pullTableFiles(_:_:fromSourceAt:chunkBytes:written:)``:
    /// reads the files' pieces from the source (the next read in flight while a
    /// piece is written) and writes them as ``ShardEngine/writeTableFile(_:name:offset:_:)``,
    /// reporting each once written, until `max_call_bytes` or the last file's end.
    func pullTableFiles(request: WirePullTableFilesRequest, response: RPCWriter<WirePullTableFilesProgress>,
                        context: ServerContext) async throws {
        let plan = try plan(request.plan)
        let files = request.files.map { $0.decoded() }
        guard Int(request.resumeFile) < files.count || (files.isEmpty && request.resumeFile == 0) else {
            throw RPCError(code: .invalidArgument, message: "resume file \(request.resumeFile) of \(files.count) files")
        }
        let chunkBytes = Int(min(max(request.maxChunkBytes, 1 << 16), UInt32(MigrationServer.largestBulkChunkBytes)))
        // Bounded: the pieces of a call are listed up front (a peer could declare terabytes).
        let callBytes = min(max(UInt64(chunkBytes), request.maxCallBytes), Self.maxTableFileCallBytes)
        // Before anything is read from the source or allocated for it.
        try await call { try engine.checkTakesTableFiles(plan) }
        try await pullGate.enter(plan.id)
        defer { Task { await pullGate.leave(plan.id) } }
        try await withSource(at: request.sourceAddress, of: plan, chunksPerStream: 1,
                             retryMilliseconds: request.sourceRetryMs,
                             compression: BulkCompression(rawValue: request.compression) ?? .none) { source in
            let pieces = Self.pieces(of: files, from: Int(request.resumeFile), at: request.resumeOffset,
                                     chunkBytes: chunkBytes, budget: callBytes)
            @Sendable func read(_ index: Int) async throws -> (data: Data, wireBytes: Int)? {
                guard index < pieces.count else { return nil }
                let piece = pieces[index]
                // (A server reads at least 4 KiB: a shorter piece may come back longer.)
                let read = try await source.readTableFilePiece(plan, name: files[piece.file].name, offset: piece.offset,
                                                               maxBytes: piece.length)
                let data = read.data
                guard data.count >= piece.length else {
                    throw ShardDBError(.corruptedValue, "table file \(files[piece.file].name) of migration \(plan.id): "
                        + "\(data.count) bytes at \(piece.offset), expected \(piece.length) (the export changed?)")
                }
                return (data.count == piece.length ? data : data.prefix(piece.length), read.encoded?.wireBytes ?? data.count)
            }
            if pieces.isEmpty {
                // Nothing left (a resume at the end): report where it stands.
                try await response.write(.with { $0.file = UInt32(max(files.count - 1, 0)); $0.offset = files.last?.size ?? 0; $0.done = true })
                return
            }
            // A few reads in flight: each is a round trip to the source, and one
            // at a time leaves both ends waiting on it.
            var reads: [Task<(data: Data, wireBytes: Int)?, Error>] = []
            defer { reads.forEach { $0.cancel() } }
            var requested = 0
            func refill() {
                while requested < pieces.count && reads.count < Self.tableFileReadsInFlight {
                    let index = requested
                    reads.append(Task { try await read(index) })
                    requested += 1
                }
            }
            func report(_ index: Int, wireBytes: Int) async throws {
                let piece = pieces[index]
                let end = piece.offset + UInt64(piece.length)
                let last = piece.file == files.count - 1 && end >= files[piece.file].size
                try await response.write(.with { progress in
                    // Past a file's end: the next position is the next file's start.
                    let whole = end >= files[piece.file].size && !last
                    progress.file = UInt32(whole ? piece.file + 1 : piece.file)
                    progress.offset = whole ? 0 : end
                    progress.bytes = UInt64(piece.length)
                    progress.wireBytes = UInt64(max(wireBytes, 1))
                    progress.done = last
                })
            }
            // Pieces are written back as they arrive (the disk works during the
            // copy) and synced in spans of ``tableFileSyncBytes`` or to a file's
            // end, each span while the next pieces are received and written; a
            // piece is reported once synced, in order.
            var syncing: (pieces: [(index: Int, wireBytes: Int)], task: Task<Void, Error>)?
            var unsynced: [(index: Int, wireBytes: Int)] = [], unsyncedBytes = 0
            for (index, piece) in pieces.enumerated() {
                try Task.checkCancellation()
                refill()
                guard let current = try await reads.removeFirst().value else { break }
                let name = files[piece.file].name
                try await blocking { try engine.writeTableFile(plan, name: name, offset: piece.offset, current.data, sync: false) }
                unsynced.append((index, current.wireBytes))
                unsyncedBytes += piece.length
                let fileEnd = piece.offset + UInt64(piece.length) >= files[piece.file].size
                guard fileEnd || unsyncedBytes >= Self.tableFileSyncBytes || index == pieces.count - 1 else { continue }
                if let previous = syncing {
                    try await previous.task.value
                    for done in previous.pieces { try await report(done.index, wireBytes: done.wireBytes) }
                }
                syncing = (unsynced, Task { try await blocking { try engine.syncTableFile(plan, name: name) } })
                unsynced = []
                unsyncedBytes = 0
            }
            if let last = syncing {
                try await last.task.value
                for done in last.pieces { try await report(done.index, wireBytes: done.wireBytes) }
            }
        }
    }

    /// Table file pieces read from the source ahead of the one being written.
    static let tableFileReadsInFlight = 3

    /// How many bytes of table file a pulling target writes before it syncs them:
    /// one `fdatasync` per piece (each waiting for the piece's writeback and a
    /// flush of the device's cache) kept the disk from running ahead.
    static let tableFileSyncBytes = 16 << 20

    /// The most one table-file pull call copies (the coordinator asks for 256 MiB
    /// and calls again from where a call stopped).
    static let maxTableFileCallBytes: UInt64 = 1 << 30

    /// The pieces to copy, in order, from file `file` at `offset`: at most
    /// `chunkBytes` each and `budget` in all.
    static func pieces(of files: [TableFile], from file: Int, at offset: UInt64, chunkBytes: Int,
                       budget: UInt64) -> [(file: Int, offset: UInt64, length: Int)] {
        var pieces: [(file: Int, offset: UInt64, length: Int)] = []
        var budget = budget, file = file, offset = offset
        while file < files.count && budget > 0 {
            if offset >= files[file].size {
                file += 1
                offset = 0
                continue
            }
            let length = Int(min(UInt64(chunkBytes), files[file].size - offset, budget))
            pieces.append((file, offset, length))
            offset += UInt64(length)
            budget -= UInt64(length)
        }
        return pieces
    }

    /// Connects to the source at `text` and runs `body` with it, once the
    /// instance answering there proved to be the plan's source; the refusals
    /// the coordinator falls back on are `failedPrecondition` without engine metadata.
    /// Transport failures toward the source are retried for the coordinator's
    /// window (`retryMilliseconds`, when it sent one) or ``PeerCredentials/retryWindow``,
    /// whichever is shorter, so a source that died fails the pull when the coordinator would give up.
    private func withSource(at text: String, of plan: MigrationPlan, chunksPerStream: Int, retryMilliseconds: UInt32,
                            compression: BulkCompression = .none,
                            _ body: (RemoteInstance) async throws -> Void) async throws {
        guard let peers else {
            throw RPCError(code: .failedPrecondition, message: "this instance has no credentials for peers: it cannot pull from the source")
        }
        guard let address = InstanceAddress(parsing: text) else {
            throw RPCError(code: .invalidArgument, message: "source address '\(text)' is not HOST:PORT")
        }
        var configuration = RemoteInstance.Configuration()
        configuration.retryWindow = retryMilliseconds > 0 ? min(peers.retryWindow, .milliseconds(retryMilliseconds)) : peers.retryWindow
        configuration.bulkChunksPerStream = chunksPerStream
        configuration.readCompression = compression
        // The first call with a short retry window: a source this instance cannot
        // reach or that refuses it makes the coordinator relay instead. (On the
        // connection the pull then uses: a second one cost a few milliseconds a pull.)
        let source: RemoteInstance
        let sourceID: String
        do {
            try FailurePoints.hit("migration.target.pull-probe")
            // (Off the cooperative pool: the init resolves a host name with getaddrinfo,
            // which can block for as long as the resolver takes.)
            source = try await blocking { [configuration] in
                try RemoteInstance(address: address, secret: peers.secret, tls: peers.tls, configuration: configuration)
            }
            do {
                sourceID = try await source.describeInstance(retryWindow: peers.probeWindow,
                                                             callTimeout: min(configuration.callTimeout, peers.probeWindow * 2)).instanceID
            } catch {
                await source.close()
                throw error
            }
        } catch {
            throw RPCError(code: .failedPrecondition, message: "cannot reach the source at \(address) from this instance: \(error)")
        }
        guard sourceID == plan.sourceInstance else {
            await source.close()
            throw RPCError(code: .failedPrecondition,
                           message: "\(address) is instance \(sourceID), not the source \(plan.sourceInstance) of migration \(plan.id)")
        }
        do {
            try await body(source)
            await source.close()
        } catch let error as RPCError where error.code == .unauthenticated || error.code == .permissionDenied {
            await source.close()
            // The source's refusal of this instance, not the coordinator's: passed on as
            // unauthenticated it would close the coordinator's connection (ConnectionGate).
            // The coordinator relays instead.
            throw RPCError(code: .failedPrecondition, message: "the source at \(address) refused this instance: \(error.message)")
        } catch {
            await source.close()
            throw ErrorMapping.rpcError(error)
        }
    }

    private func pull(_ plan: MigrationPlan, from source: RemoteInstance, after start: [UInt8]?, maxBytes: Int,
                      pieces: (bytes: Int, perChunk: Int), maxChunks: Int,
                      response: RPCWriter<WirePullBulkProgress>) async throws {
        // Read in pieces of a quarter of `maxBytes` or less (at most 1 MiB),
        // applied in groups of about `maxBytes`: the transport buffers a number of
        // messages (not of bytes) on the way in, and a message that fits in 1 MiB
        // is assembled in a 1 MiB buffer, so what is in flight stays small (fewer
        // fresh pages to fault in), while each group still makes one table file
        // and one progress record.
        /// The pieces of the next group from `after`: `perChunk` of them (then
        /// they hold `maxBytes`: each is at least `bytes`), or fewer at the end.
        @Sendable func readGroup(_ after: [UInt8]?) async throws -> [BulkChunk] {
            var group: [BulkChunk] = [], position = after, bytes = 0
            while group.count < pieces.perChunk && bytes < maxBytes {
                let piece = try await source.readBulk(plan, after: position, maxBytes: pieces.bytes)
                group.append(piece)
                bytes += piece.bytes
                position = piece.lastKey ?? position
                if piece.done { break }
            }
            return group
        }
        var after = start
        var group = try await readGroup(after)
        var applied = 0
        while let last = group.last {
            try Task.checkCancellation()
            after = group.reversed().lazy.compactMap(\.lastKey).first ?? after
            applied += 1
            let from = after, wanted = !last.done && applied < maxChunks
            // The next group read while this one is written.
            async let following = wanted ? readGroup(from) : []
            let chunks = group
            try await blocking { try engine.applyBulk(plan, chunks, durable: true) }
            try await response.write(.with { progress in
                progress.keys = UInt64(chunks.reduce(0) { $0 + $1.count })
                progress.bytes = UInt64(chunks.reduce(0) { $0 + $1.bytes })
                progress.wireBytes = UInt64(chunks.reduce(0) { $0 + ($1.encoded?.wireBytes ?? $1.bytes) })
                if let lastKey = from { progress.lastKey = Data(lastKey) }
                progress.done = last.done
            })
            group = try await following
        }
    }

    /// The largest piece a pull reads from the source (``RemoteInstance`` asks
    /// for a sixteenth less, so its message fits in a 1 MiB buffer).
    static let pullPieceBytes = 1 << 20

    /// The piece size for chunks of `maxBytes`, and how many pieces make a chunk:
    /// at least 4, each at most ``pullPieceBytes`` (and 4 KiB at least).
    static func pullPieces(_ maxBytes: Int) -> (bytes: Int, perChunk: Int) {
        let perChunk = max(4, (maxBytes + pullPieceBytes - 1) / pullPieceBytes)
        return (max(4096, maxBytes / perChunk), perChunk)
    }
}
