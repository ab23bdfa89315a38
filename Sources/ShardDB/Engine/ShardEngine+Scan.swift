import RocksDB

/// What a scan visits.
public struct ScanRequest: Sendable {
    /// Only this shard; nil for every active shard (in shard-id order under hash
    /// partitioning, in key order under range partitioning).
    public var shard: Int?
    /// Only keys starting with these bytes.
    public var prefix: [UInt8]?
    /// Only keys at or after this one.
    public var start: [UInt8]?
    /// Only keys before this one.
    public var end: [UInt8]?
    /// At most this many entries.
    public var limit: Int?

    public init(shard: Int? = nil, prefix: [UInt8]? = nil, start: [UInt8]? = nil, end: [UInt8]? = nil, limit: Int? = nil) {
        self.shard = shard
        self.prefix = prefix
        self.start = start
        self.end = end
        self.limit = limit
    }
}

/// One entry seen by a scan. The buffers are valid only during the callback.
public struct ScanEntry {
    public let shard: Int
    public let key: UnsafeRawBufferPointer
    public let value: UnsafeRawBufferPointer
    public let expiresAtMilliseconds: Int64?
    /// The value's write time, when it was stamped (``ShardEngineOptions/stampWriteTime``).
    public let writtenAtMilliseconds: Int64?
}

extension ShardEngine {
    /// Visits live (unexpired) entries in order, without copying them; `body`
    /// returns false to stop.
    ///
    /// Order: under range partitioning, keys in byte order across shards. Under
    /// hash partitioning, shard by shard, and within a shard by key group, then
    /// key (a key-group prefix makes each group one contiguous range).
    ///
    /// A shard with a fenced range (a migration's cutover) is scanned once the
    /// fence is resolved, as point reads wait.
    ///
    /// `body` may close the engine: the scan then ends with `.closed` right after
    /// it (the database is closed by the time `body` returns).
    ///
    /// - throws: ``ShardDBError``: `.shardNotFound`, `.invalidArgument` (negative limit),
    ///   `.migrationInProgress` (a fence that did not resolve in ``ShardEngineOptions/fenceWaitSeconds``),
    ///   `.corruptedValue`, `.storage`, or what `body` throws, unchanged.
    public func scan(_ request: ScanRequest = ScanRequest(), _ body: (ScanEntry) throws -> Bool) throws {
        try CallerError.unwrapping { try scanMarked(request, body) }
    }

    /// ``scan(_:_:)``, with what `body` throws marked as the caller's (``CallerError``).
    private func scanMarked(_ request: ScanRequest, _ body: (ScanEntry) throws -> Bool) throws {
        if let limit = request.limit, limit < 0 { throw ShardDBError(.invalidArgument, "limit must not be negative") }
        if request.limit == 0 { return }
        var table = self.table
        var shards: [Shard]
        while true {
            if let id = request.shard {
                shards = [try activeShard(id)]
            } else {
                shards = orderedActiveShards(table)
            }
            // A fenced range is in a cutover (or in doubt after a crash): its owner is
            // about to change, and point reads wait it out. So does a scan, then looks again.
            guard let fence = table.fences.first(where: { fence in shards.contains { $0.descriptor.range.overlaps(fence.range) } }) else {
                break
            }
            try waitOut(fence)
            table = self.table
        }
        // The user-key interval [lower, upper) the request selects.
        var lower = request.start ?? []
        var upper = request.end
        if let prefix = request.prefix {
            if lower.lexicographicallyPrecedes(prefix) { lower = prefix }
            if let successor = KeyEncoding.prefixSuccessor(prefix) {
                if upper.map({ successor.lexicographicallyPrecedes($0) }) ?? true { upper = successor }
            }
        }
        if let upper, !lower.lexicographicallyPrecedes(upper) { return }

        var remaining = request.limit ?? Int.max
        let now = clock.nowMilliseconds()
        let hashed = table.isHashed
        func visit(_ shardID: Int, _ storedKey: UnsafeRawBufferPointer, _ stored: UnsafeRawBufferPointer) throws -> Bool {
            if hashed && storedKey.count < 2 {
                throw ShardDBError(.corruptedValue, "shard \(shardID) holds a stored key of \(storedKey.count) byte(s), shorter than its key-group prefix (damaged or foreign data; shardctl verify)")
            }
            let key = KeyEncoding.userKey(storedKey, hashed: hashed)
            let (header, payload) = try self.decodeStored(stored, key: key)
            if header.isExpired(at: now) { return true }
            remaining -= 1
            let keepGoing = try CallerError.marking { try body(ScanEntry(shard: shardID, key: key, value: payload, expiresAtMilliseconds: header.expiresAtMilliseconds,
                                                   writtenAtMilliseconds: header.writtenAtMilliseconds)) }
            // Closed by `body`: the entries read ahead with this one are not handed out.
            guard isOpen else { throw ShardDBError(.closed, "the engine at \(path) is closed") }
            return keepGoing && remaining > 0
        }

        var visited = 0
        while visited < shards.count {
            // The shard map may have changed since the scan started (a migration of a
            // shard not visited yet): the shard is scanned as it stands now, once a
            // fence on it resolves, and skipped once it is no longer this instance's.
            guard let (shard, generation) = try currentShard(shards[visited], request) else { visited += 1; continue }
            guard let family = shard.family else { visited += 1; continue }
            var stop = false
            do { try storage(path) {
                switch shard.descriptor.range {
                case .keyGroups(let groups):
                    if lower.isEmpty && upper == nil {
                        // Whole shard: one bounded pass, batched.
                        let bounds = shard.descriptor.range.storedBounds
                        let iterator = try database.makeIterator(in: family, lowerBound: bounds.lower, upperBound: bounds.upper)
                        iterator.seekToFirst()
                        try iterator.forEach(firstBatchEntries: remaining) { k, v in
                            let more = try visit(shard.id, k, v)
                            if !more { stop = true }
                            return more
                        }
                    } else {
                        // A key interval inside every key group: one bounded iterator per group.
                        for kg in groups.lowerBound..<groups.upperBound where !stop {
                            let prefix = KeyEncoding.keyGroupPrefix(kg)
                            let iterator = try database.makeIterator(
                                in: family, lowerBound: prefix + lower,
                                upperBound: upper.map { prefix + $0 } ?? KeyEncoding.keyGroupUpperBound(kg + 1))
                            iterator.seekToFirst()
                            while iterator.isValid && !stop {
                                let more = try iterator.withKey { k in try iterator.withValue { v in try visit(shard.id, k, v) } }
                                if !more { stop = true }
                                iterator.next()
                            }
                            try iterator.checkStatus()
                        }
                    }
                case let .keys(shardLower, shardUpper):
                    let from = shardLower.lexicographicallyPrecedes(lower) ? lower : shardLower
                    var to = shardUpper
                    if let upper, to.map({ upper.lexicographicallyPrecedes($0) }) ?? true { to = upper }
                    if let to, !from.lexicographicallyPrecedes(to) { return }
                    let iterator = try database.makeIterator(in: family, lowerBound: from, upperBound: to)
                    iterator.seekToFirst()
                    try iterator.forEach(firstBatchEntries: remaining) { k, v in
                        let more = try visit(shard.id, k, v)
                        if !more { stop = true }
                        return more
                    }
                }
            } } catch let error as ShardDBError where error.storage?.kind == .columnFamilyDropped {
                // Dropped between the look and an iterator's creation: the shard moved
                // away meanwhile; what it still had to show is its new owner's.
                guard tableGeneration != generation else { throw error }
            }
            if stop { return }
            visited += 1
        }
    }

    /// `shard` as the current table has it (and that table's generation), after
    /// any fence on it resolved; nil when it is no longer an active shard of this
    /// instance (it moved away during the scan). A shard that grew by a merge
    /// meanwhile is the same family (another handle object) with a wider range.
    /// A scan of one named shard that moved away fails as ``activeShard(_:)`` does.
    private func currentShard(_ shard: Shard, _ request: ScanRequest) throws -> (Shard, UInt64)? {
        var table = self.table
        while let fence = table.fences.first(where: { shard.descriptor.range.overlaps($0.range) }) {
            try waitOut(fence)
            table = self.table
        }
        if let id = request.shard {
            guard let current = table.shard(id: id), current.isActive else { return (try activeShard(id), table.generation) }
            return (current, table.generation)
        }
        guard let current = table.shard(id: shard.id), current.isActive,
              let family = current.family, family.id == shard.family?.id else { return nil }
        return (current, table.generation)
    }

    /// Copies of the entries a scan visits (use ``scan(_:_:)`` for large results).
    public func entries(_ request: ScanRequest = ScanRequest()) throws -> [(key: [UInt8], value: [UInt8])] {
        var result: [(key: [UInt8], value: [UInt8])] = []
        try scan(request) { entry in
            result.append(([UInt8](entry.key), [UInt8](entry.value)))
            return true
        }
        return result
    }

    /// Active shards in scan order.
    func orderedActiveShards(_ table: RoutingTable) -> [Shard] {
        let active = table.shards.filter { $0.isActive && $0.family != nil }
        guard !table.isHashed else { return active }
        return active.sorted { a, b in
            guard case .keys(let la, _) = a.descriptor.range, case .keys(let lb, _) = b.descriptor.range else { return a.id < b.id }
            return la.lexicographicallyPrecedes(lb)
        }
    }
}
