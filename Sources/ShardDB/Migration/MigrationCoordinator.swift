import Foundation
import Logging
import Synchronization

/// What to migrate.
public struct MigrationRequest: Sendable {
    /// The source shard.
    public var shard: Int
    /// Part of the shard to move (at one end of its range); nil moves the whole shard.
    public var range: ShardRange?
    /// Merge into this existing target shard (its range must be adjacent); nil creates a new shard.
    public var mergeInto: Int?
    /// How keys held on both sides are settled when the range overlaps a target
    /// shard (which then must be, or becomes, the merge target). `.refuse`
    /// refuses such a range before anything is copied.
    public var onConflict: MigrationConflictPolicy = .refuse
    /// A migration id; generated when nil.
    public var id: String?
    /// Bytes per bulk-copy chunk (at most 16 MiB when either instance is in another process).
    public var bulkChunkBytes = 4 << 20
    /// Records per changelog read.
    public var changeBatch = 10_000
    /// Cut over once a catch-up round brings fewer records than this.
    public var cutoverThreshold = 2_000
    /// Cut over after this many catch-up rounds even if writers keep the lag up.
    public var maxCatchUpRounds = 200
    /// Remove the moved range from the source right after the cutover.
    public var cleanup = true
    /// How the bulk phase copies the data.
    public var bulkTransfer: BulkTransfer = .auto
    /// Which way the bulk copy (entries or table files) travels between two other processes.
    public var bulkRoute: BulkRoute = .direct

    public init(shard: Int, range: ShardRange? = nil, mergeInto: Int? = nil, id: String? = nil) {
        self.shard = shard
        self.range = range
        self.mergeInto = mergeInto
        self.id = id
    }
}

/// How a migration's bulk phase copies the data (docs/MIGRATION.md, "Bulk copy").
public enum BulkTransfer: String, Sendable, Codable, CaseIterable {
    /// Table files when the move allows it, else entries.
    case auto
    /// The live entries of the snapshot, read in key order and written (or
    /// ingested) on the target. Expired entries are left behind.
    case entries
    /// The shard's table files as they are, hard-linked (or copied) into a target
    /// in the same process, streamed to one in another: a whole shard into a new
    /// shard, no range tombstones in the shard, the target not the source of a
    /// migration in progress. Entries that expired but are not compacted away yet
    /// travel too (invisible; the target's compactions drop them).
    case tableFiles
}

/// Which way a bulk copy (entries or table files) travels when source and
/// target are both in other processes than the coordinator (docs/TRANSPORT.md,
/// "Direct bulk copy").
public enum BulkRoute: String, Sendable, Codable, CaseIterable {
    /// The target reads the chunks or files from the source itself
    /// (``MigrationTarget/pullBulk(_:fromSourceAt:after:maxBytes:applied:)``,
    /// ``MigrationTarget/pullTableFiles(_:_:fromSourceAt:chunkBytes:written:)``);
    /// relayed when it cannot.
    case direct
    /// The coordinator reads each chunk or piece from the source and sends it to the target.
    case relay
}

/// Where a migration is, reported while it runs.
public struct MigrationProgress: Sendable {
    public enum Phase: String, Sendable { case prepare, bulkCopy, catchUp, cutover, cleanup, done }
    public var phase: Phase
    public var keysCopied: Int
    public var bytesCopied: Int
    public var changesApplied: Int
    /// Source sequence numbers not yet applied on the target.
    public var lag: UInt64
    public var elapsedSeconds: Double
    /// Bulk bytes per second so far.
    public var bytesPerSecond: Double { elapsedSeconds > 0 ? Double(bytesCopied) / elapsedSeconds : 0 }
}

/// The outcome of a finished migration.
public struct MigrationReport: Sendable, Codable {
    public var id: String
    public var sourceShard: Int
    public var targetShard: Int
    public var range: String
    public var keysCopied: Int
    public var bytesCopied: Int
    public var changesApplied: Int
    public var snapshotSequence: UInt64
    public var finalSequence: UInt64
    /// How the bulk phase copied: `entries` or `tableFiles` (`entries` when it resumed done).
    public var bulkTransfer: BulkTransfer
    /// How the bulk copy travelled between two other processes: `direct` (the
    /// target pulled the entries or table files from the source) or `relay`
    /// (through the coordinator); nil when nothing was copied between two other processes.
    public var bulkRoute: BulkRoute?
    public var bulkSeconds: Double
    /// The bytes the bulk copy's entries or table files took on the network
    /// between two servers, pulled by the target or relayed (each leg carries
    /// the same bytes), when the transport counted every part (less than
    /// `bytesCopied` when they travelled compressed); nil otherwise.
    public var bulkWireBytes: Int?
    public var catchUpSeconds: Double
    /// How long reads and writes of the range were held (fence to source commit).
    public var pauseMilliseconds: Double
    public var totalSeconds: Double
    /// Migrations between the same two instances that a crash left unfinished,
    /// settled before this one started (``MigrationCoordinator/resolveUnfinished(source:target:inDoubtOnly:)``'s lines).
    public var settled: [String] = []
}

/// Runs the migration protocol between a source and a target (docs/MIGRATION.md):
/// prepare, bulk copy from a snapshot, catch-up from the changelog, fenced
/// cutover, cleanup. Any failure before the target commits rolls both sides back.
public struct MigrationCoordinator: Sendable {
    public let source: any MigrationSource
    public let target: any MigrationTarget
    public var logger = Logger(label: "sharddb.migration")

    public init(source: any MigrationSource, target: any MigrationTarget) {
        self.source = source
        self.target = target
    }

    /// Moves `request`'s range from the source to the target.
    ///
    /// Cancelling the task before the cutover aborts the migration (the source
    /// keeps the range).
    ///
    /// - throws: ``ShardDBError``: `.migrationConflict` for a plan the shard maps
    ///   refuse (range not owned by the source, already owned by the target,
    ///   source equal to target, overlapping migrations, mismatched partitioning),
    ///   `.shardNotFound`, `.migrationInProgress` when it failed and could not be
    ///   rolled back or finished (a peer down: ``resolveUnfinished(source:target:inDoubtOnly:)``,
    ///   or the next migrate between the two, settles it), or the error that aborted it.
    public func migrate(_ request: MigrationRequest,
                        progress: @escaping @Sendable (MigrationProgress) -> Void = { _ in }) async throws -> MigrationReport {
        if let id = request.id { try MigrationPlan.checkID(id) }
        guard request.bulkChunkBytes > 0 else {
            throw ShardDBError(.invalidArgument, "bulkChunkBytes must be positive, got \(request.bulkChunkBytes)")
        }
        // A chunk must fit one message of an endpoint in another process.
        let request = request.withBulkChunkBytes(min(request.bulkChunkBytes, source.largestBulkChunkBytes, target.largestBulkChunkBytes))
        let started = Date()
        var state = MigrationProgress(phase: .prepare, keysCopied: 0, bytesCopied: 0, changesApplied: 0, lag: 0, elapsedSeconds: 0)
        func report(_ phase: MigrationProgress.Phase) {
            if phase != state.phase || phase == .prepare {
                // The coordinator's own steps (the endpoints log theirs, in their processes).
                logger.debug("migration step", metadata: [
                    "step": "\(phase.rawValue)", "source": "\(source.peerAddress ?? "this process")",
                    "keysCopied": "\(state.keysCopied)", "changesApplied": "\(state.changesApplied)"])
            }
            state.phase = phase
            state.elapsedSeconds = Date().timeIntervalSince(started)
            progress(state)
        }
        report(.prepare)
        let settled = try await Self.resolveUnfinished(source: source, target: target)
        for line in settled { logger.notice("settled an unfinished migration first", metadata: ["migration": "\(line)"]) }
        let plan = try await makePlan(request)
        try await source.prepareOutgoing(plan)
        var targetCommitted = false
        do {
            let snapshotSequence = try await source.openBulk(plan)
            let resume = try await target.prepareIncoming(plan, snapshotSequence: snapshotSequence)

            // Bulk copy.
            report(.bulkCopy)
            let bulkStart = Date()
            var transfer = BulkTransfer.entries
            var route: BulkRoute?
            var wireBytes: Int? = 0  // (nil once a chunk or piece crossed uncounted)
            if !resume.bulkDone, request.bulkTransfer != .entries, resume.bulkResumeKey == nil {
                let before = state
                let copied = try await copyTableFiles(plan, chunkBytes: request.bulkChunkBytes, route: request.bulkRoute) { sent in
                    var now = before
                    now.bytesCopied += sent
                    now.elapsedSeconds = Date().timeIntervalSince(started)
                    progress(now)
                }
                if let copied {
                    transfer = .tableFiles
                    route = copied.route
                    wireBytes = copied.wireBytes
                    state.keysCopied += copied.keys
                    state.bytesCopied += copied.bytes
                    report(.bulkCopy)
                } else if request.bulkTransfer == .tableFiles {
                    throw ShardDBError(.migrationConflict, "migration \(plan.id) cannot move \(plan.range) as table files "
                        + "(it needs a whole shard into a new shard, no range tombstones in the shard, "
                        + "and a target that is not the source of a migration in progress)")
                }
            }
            var pulled = false
            var relayAfter = resume.bulkResumeKey
            if !resume.bulkDone && transfer == .entries && request.bulkRoute == .direct, let address = source.peerAddress {
                // The target reads the chunks from the source itself: they cross the network once.
                let copied = Mutex((state: state, after: relayAfter, wireBytes: wireBytes))
                pulled = try await target.pullBulk(plan, fromSourceAt: address, after: relayAfter,
                                                   maxBytes: request.bulkChunkBytes) { chunk in
                    var now = copied.withLock { copied in
                        copied.state.keysCopied += chunk.keys
                        copied.state.bytesCopied += chunk.bytes
                        copied.after = chunk.lastKey ?? copied.after
                        copied.wireBytes = Self.adding(copied.wireBytes, chunk.wireBytes)
                        return copied.state
                    }
                    now.elapsedSeconds = Date().timeIntervalSince(started)
                    progress(now)
                }
                (state, relayAfter, wireBytes) = copied.withLock { $0 }
                if !pulled {
                    // Possibly after some pulled chunks (the source became unreachable from the target).
                    logger.info("bulk copy relayed: the target cannot pull from \(address)", metadata: ["id": "\(plan.id)"])
                }
            }
            if !resume.bulkDone && transfer == .entries && !pulled {
                // The target pulls the chunks: in-process it writes chunk n while the
                // source reads n+1; across processes a few more are in flight.
                let reader = BulkChunkReader(source: source, plan: plan, after: relayAfter,
                                             maxBytes: request.bulkChunkBytes)
                let copied = Mutex((state: state, wireBytes: wireBytes))
                try await target.applyBulk(plan, chunks: { try await reader.next() }) { chunk in
                    var now = copied.withLock { copied in
                        copied.state.keysCopied += chunk.count
                        copied.state.bytesCopied += chunk.bytes
                        copied.wireBytes = Self.adding(copied.wireBytes, chunk.encoded?.wireBytes)
                        return copied.state
                    }
                    now.elapsedSeconds = Date().timeIntervalSince(started)
                    progress(now)
                }
                (state, wireBytes) = copied.withLock { $0 }
            }
            let bulkSeconds = Date().timeIntervalSince(bulkStart)
            if transfer == .entries && !resume.bulkDone && source.peerAddress != nil { route = pulled ? .direct : .relay }

            // Catch-up.
            report(.catchUp)
            let catchUpStart = Date()
            var next = max(resume.appliedThrough, snapshotSequence) + 1
            var rounds = 0
            while true {
                try Task.checkCancellation()
                let chunk = try await source.readChanges(plan, from: next, maxRecords: request.changeBatch)
                try await target.applyChanges(plan, chunk)
                next = chunk.nextSequence
                state.changesApplied += chunk.records.count
                state.lag = chunk.latestSequence >= next ? chunk.latestSequence - next + 1 : 0
                rounds += 1
                report(.catchUp)
                if chunk.records.count < request.cutoverThreshold && state.lag < UInt64(request.changeBatch) { break }
                if rounds >= request.maxCatchUpRounds { break }
            }
            let catchUpSeconds = Date().timeIntervalSince(catchUpStart)

            // Cutover: fence, drain to F, commit on the target, then on the source.
            try Task.checkCancellation()
            report(.cutover)
            try await source.prepareCutover(plan)
            try await target.prepareCutover(plan)
            // Whatever came in while syncing, so the drain under the fence is short.
            let last = try await source.readChanges(plan, from: next, maxRecords: request.changeBatch)
            try await target.applyChanges(plan, last)
            next = last.nextSequence
            state.changesApplied += last.records.count
            let pauseStart = DispatchTime.now()
            let finalSequence = try await source.fenceOutgoing(plan)
            while next <= finalSequence {
                let chunk = try await source.readChanges(plan, from: next, maxRecords: request.changeBatch)
                try await target.applyChanges(plan, chunk)
                state.changesApplied += chunk.records.count
                guard chunk.nextSequence > next || !chunk.records.isEmpty else {
                    // Nothing new is visible yet: the log holds the fenced writes, so this ends quickly.
                    try await Task.sleep(nanoseconds: 100_000)
                    continue
                }
                next = chunk.nextSequence
            }
            do {
                try await target.commitIncoming(plan, finalSequence: finalSequence)
            } catch {
                // The commit may be durable though its answer was lost (the target
                // failed right after it, or the reply did): the target's journal decides.
                guard (try? await Self.targetCommitted(plan, target)) == true else { throw error }
                logger.warning("the target's commit answered with an error but is durable; finishing the migration",
                               metadata: ["id": "\(plan.id)", "error": "\(error)"])
            }
            targetCommitted = true
            try await source.commitOutgoing(plan)
            let pause = Double(DispatchTime.now().uptimeNanoseconds - pauseStart.uptimeNanoseconds) / 1e6

            if request.cleanup {
                report(.cleanup)
                try await source.cleanupOutgoing(plan)
            }
            report(.done)
            return MigrationReport(
                id: plan.id, sourceShard: plan.sourceShard, targetShard: plan.targetShard, range: "\(plan.range)",
                keysCopied: state.keysCopied, bytesCopied: state.bytesCopied, changesApplied: state.changesApplied,
                snapshotSequence: snapshotSequence, finalSequence: finalSequence, bulkTransfer: transfer,
                bulkRoute: route, bulkSeconds: bulkSeconds, bulkWireBytes: route != nil ? wireBytes : nil,
                catchUpSeconds: catchUpSeconds, pauseMilliseconds: pause, totalSeconds: Date().timeIntervalSince(started),
                settled: settled)
        } catch {
            if targetCommitted {
                // The decision is made (the target owns the range): finish the source's side.
                logger.error("source commit failed after the target committed; recovery will finish it",
                             metadata: ["id": "\(plan.id)", "error": "\(error)"])
                if (try? await source.commitOutgoing(plan)) != nil { throw error }
                throw ShardDBError(.migrationInProgress,
                    "migration \(plan.id) committed on the target, but its source side could not be finished (\(error)): if the source did not record the move, the range stays fenced there until a resolve finishes it once both instances are up (shardctl migrate --from \(plan.sourceLocation) --to \(plan.targetLocation) --resolve)")
            }
            // Roll back: the target first (so it can never commit later), then the source.
            do {
                try await target.abortIncoming(plan)
                try await source.abortOutgoing(plan)
            } catch let abortError {
                // A target that committed refuses the abort: the decision is made, finish it.
                if (try? await Self.targetCommitted(plan, target)) == true, (try? await source.commitOutgoing(plan)) != nil {
                    logger.error("the migration failed after the target committed; the source's side is finished, its cleanup is not",
                                 metadata: ["id": "\(plan.id)", "error": "\(error)"])
                    throw error
                }
                logger.error("abort failed; the range stays fenced until a resolve (`shardctl migrate --resolve`) decides by the journals",
                             metadata: ["id": "\(plan.id)", "error": "\(abortError)"])
                // Say so: the user otherwise sees only the first error, and the range
                // answers "retry shortly" until someone resolves it.
                throw ShardDBError(.migrationInProgress,
                    "migration \(plan.id) failed (\(error)) and could not be rolled back (\(abortError)): it stays unfinished, its range perhaps fenced, until a resolve settles it once both instances are up (shardctl migrate --from \(plan.sourceLocation) --to \(plan.targetLocation) --resolve)")
            }
            throw error
        }
    }

    /// Whether the target's journal records `plan`'s migration as committed.
    private static func targetCommitted(_ plan: MigrationPlan, _ target: any MigrationTarget) async throws -> Bool {
        try await target.migrationEntry(plan.id)?.phase == .committed
    }

    /// The bulk phase as table files (``BulkTransfer/tableFiles``): exported by the
    /// source, then imported by the target from where they are (both engines in
    /// this process) or after being sent in chunks of `chunkBytes` (`sent`
    /// reports the bytes so far). Nil when the move or the endpoints do not allow
    /// it, and nothing was imported.
    func copyTableFiles(_ plan: MigrationPlan, chunkBytes: Int, route requested: BulkRoute,
                        sent: @escaping @Sendable (Int) -> Void)
        async throws -> (keys: Int, bytes: Int, route: BulkRoute?, wireBytes: Int?)? {
        guard case .newShard = plan.shape, plan.overlap == nil,
              let files = try await source.exportTableFiles(plan) else { return nil }
        let imported: Bool
        var route: BulkRoute?
        let wire = Mutex(Optional(0))  // the pieces' bytes on the network, while every piece says
        do {
            let offered: [TableFile]
            if source.exportsLocalTableFiles && target.importsLocalTableFiles {
                offered = files
            } else {
                let total = Mutex(0)
                if requested == .direct, let address = source.peerAddress,
                   try await target.pullTableFiles(plan, files, fromSourceAt: address, chunkBytes: max(chunkBytes, 1 << 20),
                                                   written: { piece, onTheWire in
                    wire.withLock { $0 = Self.adding($0, onTheWire) }
                    sent(total.withLock { $0 += piece; return $0 })
                }) {
                    route = .direct
                    offered = Self.delivered(files)
                } else {
                    if source.peerAddress != nil { route = .relay }
                    // A pull refused after some of its calls (the source no longer reachable
                    // from the target) wrote the files' first bytes, in order: relay the rest.
                    let pulled = total.withLock { $0 }
                    if pulled > 0 {
                        logger.info("relaying the table files from byte \(pulled): the target pulled those before it could not",
                                    metadata: ["id": "\(plan.id)"])
                    }
                    offered = try await sendTableFiles(plan, files, from: pulled, chunkBytes: chunkBytes) { bytes, onTheWire in
                        wire.withLock { $0 = Self.adding($0, onTheWire) }
                        sent(bytes)
                    }
                }
            }
            imported = try await target.importTableFiles(plan, offered)
        } catch let error as ShardDBError where error.code == .tableFilesUnsupported {
            logger.info("bulk copy as entries: \(error.message)", metadata: ["id": "\(plan.id)"])
            try? await source.releaseTableFiles(plan)
            return nil
        } catch {
            try? await source.releaseTableFiles(plan)
            throw error
        }
        // Best effort: the source's commit (or its next open) removes the export too.
        try? await source.releaseTableFiles(plan)
        guard imported else { return nil }
        logger.debug("bulk copy as table files", metadata: ["id": "\(plan.id)", "files": "\(files.count)"])
        return (keys: files.reduce(0) { $0 + Int($1.entries - min($1.entries, $1.deletions)) },
                bytes: files.reduce(0) { $0 + Int($1.size) }, route: route,
                wireBytes: route != nil ? wire.withLock { $0 } : nil)
    }

    /// Copies each exported file to the target in pieces of `chunkBytes` (the
    /// target pulls them as ``MigrationTarget/writeTableFiles(_:pieces:written:)``
    /// allows), from byte `start` of the files taken in order (the target has
    /// the ones before); returns the files as sent (no directory).
    private func sendTableFiles(_ plan: MigrationPlan, _ files: [TableFile], from start: Int, chunkBytes: Int,
                                sent: @escaping @Sendable (_ total: Int, _ wireBytes: Int?) -> Void) async throws -> [TableFile] {
        let reader = TableFileReader(source: source, plan: plan, files: files, from: UInt64(start), maxBytes: max(chunkBytes, 1 << 20))
        let total = Mutex(start)
        try await target.writeTableFiles(plan, pieces: { try await reader.next() }) { piece in
            sent(total.withLock { total in
                total += piece.data.count
                return total
            }, piece.encoded?.wireBytes)
        }
        return Self.delivered(files)
    }

    /// A count of wire bytes plus one more piece's; nil once any piece was not counted.
    private static func adding(_ count: Int?, _ more: Int?) -> Int? {
        guard let count, let more else { return nil }
        return count + more
    }

    /// The files as the target holds them once sent: no directory (their bytes are in its import folder).
    private static func delivered(_ files: [TableFile]) -> [TableFile] {
        files.map { file in
            var delivered = file
            delivered.directory = ""
            return delivered
        }
    }

    /// Validates the request against both shard maps and fixes the plan.
    func makePlan(_ request: MigrationRequest) async throws -> MigrationPlan {
        let from = try await source.describeInstance()
        let to = try await target.describeInstance()
        guard from.instanceID != to.instanceID else {
            throw ShardDBError(.migrationConflict, "source and target are the same instance (\(from.instanceID))")
        }
        guard from.partitioning.isCompatible(with: to.partitioning) else {
            throw ShardDBError(.migrationConflict, "partitioning differs: source \(from.partitioning), target \(to.partitioning)")
        }
        guard let shard = from.shards.first(where: { $0.id == request.shard && $0.state == .active }) else {
            if case .moved(let to)? = from.shards.first(where: { $0.id == request.shard })?.state {
                throw ShardDBError(.shardNotFound, "shard \(request.shard) of the source was moved to \(to)", owner: to)
            }
            throw ShardDBError(.shardNotFound, "shard \(request.shard) does not exist on the source")
        }
        let range = request.range ?? shard.range
        _ = try shard.range.removing(range)  // inside the shard, at one end
        var mergeInto = request.mergeInto
        var overlap: ShardRange?
        let owners = to.shards.filter { $0.state == .active && $0.range.overlaps(range) }
        if let owner = owners.first {
            guard request.onConflict != .refuse else {
                throw ShardDBError(.migrationConflict,
                    "the target already owns part of \(range) (shard \(owner.id) owns \(owner.range)); pick a conflict policy to merge overlapping keys")
            }
            guard owners.count == 1 else {
                throw ShardDBError(.migrationConflict, "\(range) overlaps \(owners.count) target shards (\(owners.map(\.id))); an overlapping merge goes into one")
            }
            guard mergeInto == nil || mergeInto == owner.id else {
                throw ShardDBError(.migrationConflict, "\(range) overlaps target shard \(owner.id), not the merge target \(mergeInto!)")
            }
            mergeInto = owner.id
            overlap = range.intersection(owner.range)
        }
        let shape: MigrationPlan.Shape
        let targetShard: Int
        if let merge = mergeInto {
            shape = .mergeInto(shard: merge)
            targetShard = merge
        } else {
            shape = .newShard
            // Ids of the target's shards and of new shards its running incoming migrations will create.
            let reserved = to.unfinishedMigrations.compactMap { entry -> Int? in
                guard entry.role == .target, case .newShard = entry.plan.shape else { return nil }
                return entry.plan.targetShard
            }
            let used = Set(to.shards.map(\.id) + reserved)
            targetShard = used.contains(request.shard) ? try ShardDescriptor.nextID(after: used) : request.shard
        }
        return MigrationPlan(
            id: request.id ?? Self.newID(), sourceInstance: from.instanceID, targetInstance: to.instanceID,
            sourceLocation: from.location, targetLocation: to.location, sourceShard: request.shard, range: range,
            shape: shape, targetShard: targetShard, defaultTTLSeconds: shard.defaultTTLSeconds,
            onConflict: request.onConflict == .refuse ? nil : request.onConflict, overlap: overlap)
    }

    static func newID() -> String {
        var generator = SystemRandomNumberGenerator()
        return ByteText.hex((0..<6).map { _ in UInt8.random(in: 0...255, using: &generator) })
    }

    /// Settles what a crash left unfinished between two instances, in both
    /// directions (``resolveUnfinished(source:target:)`` each way).
    ///
    /// - returns: a line per migration settled.
    @discardableResult
    public static func resolveUnfinished(between a: any MigrationSource & MigrationTarget,
                                         and b: any MigrationSource & MigrationTarget,
                                         inDoubtOnly: Bool = false) async throws -> [String] {
        try await resolveUnfinished(source: a, target: b, inDoubtOnly: inDoubtOnly)
            + resolveUnfinished(source: b, target: a, inDoubtOnly: inDoubtOnly)
    }

    /// Settles migrations from `source` to `target` that a crash left
    /// unfinished, by the decision table in docs/MIGRATION.md: once the target
    /// has committed, the source commits (and cleans up); otherwise both roll back.
    ///
    /// With `inDoubtOnly`, only a migration whose target committed while its
    /// source is still fenced is settled, and only by the source's commit: that
    /// one range is recorded by both owners. Nothing is rolled back and nothing
    /// cleaned up, so a migration another coordinator is running goes on (its own
    /// commit then finds the source committed), and data a move kept on its source
    /// stays. A rescale settles this way before planning.
    ///
    /// - returns: a line per migration settled.
    @discardableResult
    public static func resolveUnfinished(source: any MigrationSource, target: any MigrationTarget,
                                         inDoubtOnly: Bool = false) async throws -> [String] {
        let from = try await source.describeInstance()
        let to = try await target.describeInstance()
        var settled: [String] = []
        var ids = Set<String>()
        for entry in from.unfinishedMigrations + to.unfinishedMigrations
        where entry.plan.sourceInstance == from.instanceID && entry.plan.targetInstance == to.instanceID {
            guard ids.insert(entry.plan.id).inserted else { continue }
            let plan = entry.plan
            let targetEntry = try await target.migrationEntry(plan.id)
            if inDoubtOnly {
                guard targetEntry?.phase == .committed, try await source.migrationEntry(plan.id)?.phase == .fenced else { continue }
                try await source.commitOutgoing(plan)
                settled.append("\(plan.id): committed on the target; the source recorded the move")
                continue
            }
            if targetEntry?.phase == .committed {
                try await source.commitOutgoing(plan)
                try await source.cleanupOutgoing(plan)
                settled.append("\(plan.id): committed on the target; source recorded the move and cleaned up")
            } else if let sourceEntry = try await source.migrationEntry(plan.id), sourceEntry.phase == .committed {
                try await source.cleanupOutgoing(plan)
                settled.append("\(plan.id): committed; source cleaned up")
            } else {
                try await target.abortIncoming(plan)
                try await source.abortOutgoing(plan)
                settled.append("\(plan.id): not committed on the target; rolled back (the source keeps \(plan.range))")
            }
        }
        return settled
    }
}

extension ShardEngine {
    /// Moves a shard, or a range at one end of it, from this engine to `target` while both stay open.
    ///
    /// ```swift
    /// let report = try await source.migrate(MigrationRequest(shard: 2), to: target) { p in print(p.phase, p.keysCopied) }
    /// print("write pause: \(report.pauseMilliseconds) ms")
    /// ```
    public func migrate(_ request: MigrationRequest, to target: ShardEngine,
                        progress: @escaping @Sendable (MigrationProgress) -> Void = { _ in }) async throws -> MigrationReport {
        var coordinator = MigrationCoordinator(source: self, target: target)
        coordinator.logger = logger
        return try await coordinator.migrate(request, progress: progress)
    }
}

extension MigrationRequest {
    func withBulkChunkBytes(_ bytes: Int) -> MigrationRequest {
        var copy = self
        copy.bulkChunkBytes = bytes
        return copy
    }
}
