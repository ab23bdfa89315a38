import Foundation
import ShardDB

// Conversions between ShardDB's types and the generated wire messages
// (Proto/sharddb_transport.proto). Decoding validates: a malformed message
// becomes `.invalidArgument`, never a half-built plan.

private func malformed(_ what: String) -> ShardDBError {
    ShardDBError(.invalidArgument, "malformed message: \(what)")
}

/// A shard id from the wire, inside what an instance stores (``ShardDescriptor/maxID``).
private func shardID(_ id: Int64) throws -> Int {
    guard (0...Int64(ShardDescriptor.maxID)).contains(id) else { throw malformed("shard id \(id) is out of range") }
    return Int(id)
}

extension WireShardRange {
    init(_ range: ShardRange) {
        self.init()
        switch range {
        case .keyGroups(let r):
            keyGroups = .with { $0.lower = UInt32(r.lowerBound); $0.upper = UInt32(r.upperBound) }
        case let .keys(lower, upper):
            keys = .with {
                $0.lower = Data(lower)
                if let upper { $0.upper = Data(upper) }
            }
        }
    }

    func decoded() throws -> ShardRange {
        switch kind {
        case .keyGroups(let r)?:
            guard r.lower < r.upper, r.upper <= UInt32(Partitioning.maxKeyGroups) else { throw malformed("key-group range \(r.lower)..\(r.upper)") }
            return .keyGroups(KeyGroupRange(Int(r.lower), Int(r.upper)))
        case .keys(let r)?:
            return .keys(lower: [UInt8](r.lower), upper: r.hasUpper ? [UInt8](r.upper) : nil)
        case nil:
            throw malformed("shard range without a kind")
        }
    }
}

extension WirePartitioning {
    init(_ partitioning: Partitioning) {
        self.init()
        switch partitioning {
        case .hash(let k): hashKeyGroups = UInt32(k)
        case .range(let splits): rangeSplitPoints = .with { $0.points = splits.map { Data($0) } }
        }
    }

    func decoded() throws -> Partitioning {
        switch kind {
        case .hashKeyGroups(let k)?:
            // Checked here: a planner indexes arrays by key group (a peer's 2^32 - 1 would be a 68 GB array).
            guard k >= 1 && k <= Partitioning.maxKeyGroups else {
                throw malformed("\(k) key groups (between 1 and \(Partitioning.maxKeyGroups))")
            }
            return .hash(keyGroups: Int(k))
        case .rangeSplitPoints(let s)?: return .range(splitPoints: s.points.map { [UInt8]($0) })
        case nil: throw malformed("partitioning without a kind")
        }
    }
}

extension WireShardDescriptor {
    init(_ shard: ShardDescriptor) {
        self.init()
        id = Int64(shard.id)
        range = WireShardRange(shard.range)
        if case .moved(let to) = shard.state { movedTo = to }
        if let ttl = shard.defaultTTLSeconds { defaultTtlSeconds = ttl }
    }

    func decoded() throws -> ShardDescriptor {
        try ShardDescriptor(id: shardID(id), range: try range.decoded(), state: hasMovedTo ? .moved(to: movedTo) : .active,
                        defaultTTLSeconds: hasDefaultTtlSeconds ? defaultTtlSeconds : nil)
    }
}

extension WireMigrationPlan {
    init(_ plan: MigrationPlan) {
        self.init()
        id = plan.id
        sourceInstance = plan.sourceInstance
        targetInstance = plan.targetInstance
        sourceLocation = plan.sourceLocation
        targetLocation = plan.targetLocation
        sourceShard = Int64(plan.sourceShard)
        range = WireShardRange(plan.range)
        if case .mergeInto(let shard) = plan.shape { mergeIntoShard = Int64(shard) }
        targetShard = Int64(plan.targetShard)
        if let ttl = plan.defaultTTLSeconds { defaultTtlSeconds = ttl }
        if let policy = plan.onConflict { onConflict = policy.rawValue }
        if let overlap = plan.overlap { self.overlap = WireShardRange(overlap) }
    }

    func decoded() throws -> MigrationPlan {
        guard !id.isEmpty, hasRange else { throw malformed("migration plan without id or range") }
        do { try MigrationPlan.checkID(id) } catch let error as ShardDBError { throw malformed(error.message) }
        var policy: MigrationConflictPolicy?
        if hasOnConflict {
            guard let known = MigrationConflictPolicy(rawValue: onConflict) else {
                throw malformed("unknown conflict policy '\(onConflict)'")
            }
            policy = known
        }
        return MigrationPlan(
            id: id, sourceInstance: sourceInstance, targetInstance: targetInstance, sourceLocation: sourceLocation,
            targetLocation: targetLocation, sourceShard: try shardID(sourceShard), range: try range.decoded(),
            shape: hasMergeIntoShard ? .mergeInto(shard: try shardID(mergeIntoShard)) : .newShard, targetShard: try shardID(targetShard),
            defaultTTLSeconds: hasDefaultTtlSeconds ? defaultTtlSeconds : nil,
            onConflict: policy, overlap: hasOverlap ? try overlap.decoded() : nil)
    }
}

extension WireJournalEntry {
    init(_ entry: MigrationJournalEntry) {
        self.init()
        plan = WireMigrationPlan(entry.plan)
        role = entry.role.rawValue
        phase = entry.phase.rawValue
        if let s = entry.snapshotSequence { snapshotSequence = s }
        if let f = entry.finalSequence { finalSequence = f }
        updatedAtMilliseconds = entry.updatedAtMilliseconds
    }

    func decoded() throws -> MigrationJournalEntry {
        guard let role = MigrationJournalEntry.Role(rawValue: role), let phase = MigrationJournalEntry.Phase(rawValue: phase) else {
            throw malformed("journal entry role '\(self.role)' phase '\(self.phase)'")
        }
        return MigrationJournalEntry(plan: try plan.decoded(), role: role, phase: phase,
                                     snapshotSequence: hasSnapshotSequence ? snapshotSequence : nil,
                                     finalSequence: hasFinalSequence ? finalSequence : nil,
                                     updatedAtMilliseconds: updatedAtMilliseconds)
    }
}

extension WireInstanceDescription {
    init(_ description: InstanceDescription) {
        self.init()
        instanceID = description.instanceID
        location = description.location
        partitioning = WirePartitioning(description.partitioning)
        shards = description.shards.map(WireShardDescriptor.init)
        unfinishedMigrations = description.unfinishedMigrations.map(WireJournalEntry.init)
    }

    func decoded() throws -> InstanceDescription {
        let partitioning = try partitioning.decoded()
        let shards = try shards.map { try $0.decoded() }
        if case .hash(let k) = partitioning {
            for shard in shards {
                guard case .keyGroups(let groups) = shard.range, groups.upperBound <= k else {
                    throw malformed("shard \(shard.id)'s range \(shard.range) is not key groups within 0..<\(k)")
                }
            }
        }
        return try InstanceDescription(instanceID: instanceID, location: location, partitioning: partitioning,
                                       shards: shards, unfinishedMigrations: unfinishedMigrations.map { try $0.decoded() })
    }
}

extension WireIncomingState {
    init(_ state: IncomingState) {
        self.init()
        snapshotSequence = state.snapshotSequence
        if let key = state.bulkResumeKey { bulkResumeKey = Data(key) }
        bulkDone = state.bulkDone
        appliedThrough = state.appliedThrough
    }

    func decoded() -> IncomingState {
        IncomingState(snapshotSequence: snapshotSequence, bulkResumeKey: hasBulkResumeKey ? [UInt8](bulkResumeKey) : nil,
                      bulkDone: bulkDone, appliedThrough: appliedThrough)
    }
}

// MARK: Bulk chunks: entries packed in one buffer, with a checksum

extension WireBulkChunk {
    /// The chunk's packed buffer and lengths go on the wire as they are, the
    /// buffer compressed when `compression` asks for it and it shrinks
    /// (``Snappy/compress(_:)``); the checksum covers the bytes as sent.
    init(_ chunk: BulkChunk, compression: BulkCompression = .none) {
        self.init()
        if compression == .snappy, let packed = chunk.data.withUnsafeBytes({ Snappy.compress($0) }) {
            data = packed
            self.compression = BulkCompression.snappy.rawValue
        } else {
            data = chunk.data
        }
        keyLengths = chunk.keyLengths
        valueLengths = chunk.valueLengths
        if let last = chunk.lastKey { lastKey = Data(last) }
        done = chunk.done
        bytes = UInt64(chunk.bytes)
        crc32C = Self.checksum(data: data, keyLengths: keyLengths, valueLengths: valueLengths)
        controlCrc32C = controlChecksum
    }

    /// Of the fields that say where the copy stands (`done`, `last_key`): a flipped
    /// `done` would end the copy early, a damaged last key resume it elsewhere.
    var controlChecksum: UInt32 {
        var crc = CRC32C()
        crc.update([UInt8(done ? 1 : 0), UInt8(hasLastKey ? 1 : 0)])
        if hasLastKey { crc.update(lastKey) }
        return crc.checksum
    }

    static func checksum(data: Data, keyLengths: [UInt32], valueLengths: [UInt32]) -> UInt32 {
        var crc = CRC32C()
        crc.update(data)
        keyLengths.withUnsafeBytes { crc.update($0) }      // little-endian hosts only (x86_64, arm64)
        valueLengths.withUnsafeBytes { crc.update($0) }
        return crc.checksum
    }

    /// The chunk's size is its data's; the message's `bytes` field is not trusted
    /// (the size decides how the target writes the chunk).
    ///
    /// - throws: `.corruptedValue` when the checksum does not match; `.invalidArgument`
    ///   (malformed) when the lengths do not add up to the data, the data does not
    ///   decompress to them, or the compression is one this version does not know.
    func decoded() throws -> BulkChunk {
        guard Self.checksum(data: data, keyLengths: keyLengths, valueLengths: valueLengths) == crc32C else {
            throw ShardDBError(.corruptedValue, "bulk chunk checksum mismatch")
        }
        // (0: a sender that predates the field.)
        guard controlCrc32C == 0 || controlChecksum == controlCrc32C else {
            throw ShardDBError(.corruptedValue, "bulk chunk checksum mismatch (done or last key)")
        }
        let entries: Data
        switch BulkCompression(rawValue: compression) {
        case .none?:
            entries = data
        case .snappy?:
            guard keyLengths.count == valueLengths.count else {
                throw malformed("bulk chunk with \(keyLengths.count) keys and \(valueLengths.count) values")
            }
            // What the lengths declare bounds what is allocated: no more than an
            // uncompressed message could carry.
            var total = 0
            for i in keyLengths.indices {
                total += Int(keyLengths[i]) + Int(valueLengths[i])
                guard total <= MigrationServer.maxMessageBytes else {
                    throw malformed("compressed bulk chunk declares more than \(MigrationServer.maxMessageBytes) bytes")
                }
            }
            entries = try data.withUnsafeBytes { try Snappy.decompress($0, expected: total) }
        case nil:
            throw malformed("bulk chunk compressed with method \(compression), which this version does not know")
        }
        do {
            return try BulkChunk(data: entries, keyLengths: keyLengths, valueLengths: valueLengths,
                                 lastKey: hasLastKey ? [UInt8](lastKey) : nil, done: done)
        } catch let error as ShardDBError {
            throw malformed(error.message)
        }
    }
}

// MARK: Changelog records

extension WireChangeRecord {
    init(_ record: ChangeRecord) {
        self.init()
        sequence = record.sequence
        shard = Int64(record.shard)
        switch record.operation {
        case .put: operation = .put
        case .delete: operation = .delete
        case .singleDelete: operation = .singleDelete
        case .deleteRange: operation = .deleteRange
        case .merge: operation = .merge
        }
        storedKey = Data(record.storedKey)
        if let end = record.storedEndKey { storedEndKey = Data(end) }
        if let value = record.value { self.value = Data(value) }
        userKeyOffset = UInt32(record.storedKey.count - record.key.count)
    }

    func decoded() throws -> ChangeRecord {
        let op: ChangeRecord.Operation
        switch operation {
        case .put: op = .put
        case .delete: op = .delete
        case .singleDelete: op = .singleDelete
        case .deleteRange: op = .deleteRange
        case .merge: op = .merge
        case .UNRECOGNIZED(let raw): throw malformed("unknown change operation \(raw)")
        }
        // RocksDB's sequences end at 2^56 - 1: a larger one (UInt64.max) would overflow
        // the coordinator's "next sequence after this record".
        guard sequence <= ShardEngine.maxSequence else { throw malformed("change sequence \(sequence) past RocksDB's largest") }
        let stored = [UInt8](storedKey)
        guard Int(userKeyOffset) <= stored.count else { throw malformed("user key offset past the stored key") }
        let value: [UInt8]? = hasValue ? [UInt8](self.value) : nil
        let header = value.flatMap { v in v.withUnsafeBytes { try? ValueHeader.decode($0).0 } }
        return ChangeRecord(sequence: sequence, shard: try shardID(shard), operation: op, storedKey: stored,
                            storedEndKey: hasStoredEndKey ? [UInt8](storedEndKey) : nil, value: value,
                            key: Array(stored[Int(userKeyOffset)...]), header: header)
    }
}

extension WireChangeChunk {
    static func checksum(_ records: [WireChangeRecord]) -> UInt32 {
        var crc = CRC32C()
        for record in records {
            crc.update(littleEndian: record.sequence)
            crc.update(littleEndian: UInt32(truncatingIfNeeded: record.operation.rawValue))
            crc.update(record.storedKey)
            crc.update(record.storedEndKey)
            crc.update(record.value)
        }
        return crc.checksum
    }

    /// Of the fields that say how far the changelog was read (a damaged next
    /// sequence would move the target's applied position past unapplied changes).
    var controlChecksum: UInt32 {
        var crc = CRC32C()
        crc.update(littleEndian: nextSequence)
        crc.update(littleEndian: latestSequence)
        crc.update([UInt8(last ? 1 : 0)])
        return crc.checksum
    }

    /// Sets both checksums from the fields as they are.
    func sealed() -> WireChangeChunk {
        var chunk = self
        chunk.crc32C = Self.checksum(records)
        chunk.controlCrc32C = chunk.controlChecksum
        return chunk
    }

    /// - throws: `.corruptedValue` when a checksum does not match.
    func decodedRecords() throws -> [ChangeRecord] {
        guard Self.checksum(records) == crc32C else { throw ShardDBError(.corruptedValue, "changelog chunk checksum mismatch") }
        // (0: a sender that predates the field.)
        guard controlCrc32C == 0 || controlChecksum == controlCrc32C else {
            throw ShardDBError(.corruptedValue, "changelog chunk checksum mismatch (next sequence, latest sequence or last)")
        }
        return try records.map { try $0.decoded() }
    }
}

// MARK: Table files

extension WireTableFileInfo {
    init(_ file: TableFile) {
        self.init()
        name = file.name
        level = Int32(clamping: file.level)
        smallestSequence = file.smallestSequence
        largestSequence = file.largestSequence
        size = file.size
        entries = file.entries
        deletions = file.deletions
        rangeDeletions = file.rangeDeletions
    }

    /// The file as sent: no directory (its bytes come with WriteTableFile).
    func decoded() -> TableFile {
        TableFile(directory: "", name: name, level: Int(level), smallestSequence: smallestSequence,
                  largestSequence: largestSequence, size: size, entries: entries, deletions: deletions,
                  rangeDeletions: rangeDeletions)
    }
}

extension WireTableFileChunk {
    /// A piece of a table file, Snappy-compressed when `compression` asks for it
    /// and it shrinks by an eighth at least (text-like values do, several times
    /// over: a table file's blocks are compressed one by one, small), else as it is.
    init(_ data: Data, compression: BulkCompression = .none) {
        self.init()
        if compression == .snappy, let compressed = data.withUnsafeBytes({ Snappy.compress($0) }) {
            self.data = compressed
            self.compression = BulkCompression.snappy.rawValue
        } else {
            self.data = data
        }
        var crc = CRC32C()
        crc.update(self.data)
        crc32C = crc.checksum
    }

    /// The piece's bytes, expanded when compressed (to at most `limit` bytes:
    /// what the reader asked for, or the largest piece a writer takes; the
    /// length a compressed piece declares is checked before anything is allocated).
    ///
    /// - throws: `.corruptedValue` when the checksum does not match; `.invalidArgument`
    ///   for an unknown compression, bytes that are not Snappy's format or expand past `limit`.
    func decoded(atMost limit: Int) throws -> Data {
        var crc = CRC32C()
        crc.update(data)
        guard crc.checksum == crc32C else { throw ShardDBError(.corruptedValue, "table file chunk checksum mismatch") }
        switch BulkCompression(rawValue: compression) {
        case .none?:
            return data
        case .snappy?:
            return try data.withUnsafeBytes { try Snappy.decompress($0, atMost: limit, what: "table file chunk") }
        case nil:
            throw ShardDBError(.invalidArgument, "malformed message: table file chunk in unknown compression \(compression)")
        }
    }
}

// The received forms a coordinator forwards (``BulkChunk/encoded``, ``TableFilePiece/encoded``).
extension WireBulkChunk: EncodedBulkData {
    var wireBytes: Int { data.count }
}

extension WireTableFileChunk: EncodedBulkData {
    var wireBytes: Int { data.count }
}
