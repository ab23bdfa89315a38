import RocksDB

/// Reads the changes made to one shard (optionally to a range of it) from the
/// write-ahead log, in sequence order, from a sequence number on: the catch-up
/// half of a migration (bulk copy at a snapshot's sequence S, then tail from S + 1).
///
/// Each ``read(maxRecords:)`` returns what was written since the previous one,
/// up to the current end of the log, and an empty array when caught up; calling
/// it again later picks up new writes. The log is RocksDB's: records are
/// available only as long as the WAL is retained
/// (``ShardEngineOptions/walRetentionSeconds``, docs/CHANGELOG_FORMAT.md).
///
/// Every sequence number from the start on must be accounted for: a hole
/// (writes that bypassed the WAL) or a purged log throws rather than silently
/// losing changes.
///
/// Not thread-safe: one reader per consumer.
///
/// ```swift
/// let snapshotSequence = try engine.latestSequenceNumber()
/// // ... copy shard 2 as of snapshotSequence ...
/// let reader = try ChangelogReader(engine: engine, shard: 2, from: snapshotSequence + 1)
/// while true {
///     let changes = try reader.read()
///     if changes.isEmpty { break }
///     for change in changes { try apply(change) }
/// }
/// ```
public final class ChangelogReader {
    public let engine: ShardEngine
    /// The shard read.
    public let shard: Int
    /// When set, only changes to keys in this range are returned.
    public let range: ShardRange?
    /// The sequence number of the first change not yet returned (or skipped).
    public private(set) var nextSequence: UInt64

    private let familyID: UInt32
    private let hashed: Bool
    private let bounds: (lower: [UInt8], upper: [UInt8]?)?
    /// Reused while it yields batches; dropped at the end of the log.
    private var log: WALIterator?
    /// A batch already taken from `log` whose records were not all returned (a
    /// read stopped at `maxRecords` inside it).
    private var pending: [UInt8]?

    /// A reader of `shard`'s changes with sequence numbers from `sequence` on.
    ///
    /// - parameters:
    ///   - range: only changes to keys in this range (key groups under hash
    ///     partitioning, keys under range partitioning); nil for the whole shard.
    ///   - sequence: the first sequence number to return; 0 reads like 1 (RocksDB's
    ///     first write has sequence 1). Typically a snapshot's sequence + 1.
    /// - throws: ``ShardDBError``: `.shardNotFound` when the shard is not active
    ///   here, `.invalidArgument` for a range of the other partitioning scheme or an
    ///   empty one, `.closed`.
    public init(engine: ShardEngine, shard: Int, range: ShardRange? = nil, from sequence: UInt64) throws {
        guard engine.isOpen else { throw ShardDBError(.closed, "the engine at \(engine.path) is closed") }
        let owner = try engine.activeShard(shard)
        guard let family = owner.family else {
            throw ShardDBError(.shardNotFound, "shard \(shard) does not exist on this instance")
        }
        if let range {
            switch (engine.partitioning, range) {
            case let (.hash(k), .keyGroups(r)):
                guard !r.isEmpty, r.lowerBound >= 0, r.upperBound <= k else {
                    throw ShardDBError(.invalidArgument, "key group range \(r) is empty or outside [0, \(k))")
                }
            case let (.range, .keys(lower, upper)):
                if let upper, !lower.lexicographicallyPrecedes(upper) {
                    throw ShardDBError(.invalidArgument, "key range \(range) is empty")
                }
            default:
                throw ShardDBError(.invalidArgument, "range \(range) does not fit \(engine.partitioning)")
            }
        }
        self.engine = engine
        self.shard = shard
        self.range = range
        self.nextSequence = max(sequence, 1)
        self.familyID = family.id
        if case .hash = engine.partitioning { hashed = true } else { hashed = false }
        self.bounds = range?.storedBounds
    }

    /// The shard's changes from ``nextSequence`` to the current end of the log,
    /// at most `maxRecords` of them; advances ``nextSequence`` past everything
    /// looked at, other shards' changes included.
    ///
    /// - returns: the changes in sequence order; empty when caught up.
    /// - throws: ``ShardDBError``: `.changelogGap` when a sequence number from
    ///   ``nextSequence`` on is missing from the log although older ones are there
    ///   (writes without the WAL); `.changelogUnavailable` when the log no longer
    ///   reaches back to ``nextSequence`` (purged); `.invalidArgument` when
    ///   `maxRecords` < 1; `.closed`; `.storage` (a corrupt log included).
    ///   Records read before the failure are returned first (the error comes with
    ///   the next call); ``nextSequence`` never moves past a change not returned, so
    ///   retrying loses nothing, but a gap stays a gap.
    public func read(maxRecords: Int = 10_000) throws -> [ChangeRecord] {
        guard maxRecords >= 1 else { throw ShardDBError(.invalidArgument, "maxRecords must be at least 1, got \(maxRecords)") }
        var records: [ChangeRecord] = []
        do {
            try fill(&records, limit: maxRecords)
        } catch {
            // Hand out what was read before the failure: the next call meets it again
            // (`nextSequence` stops right before it) and throws then.
            if records.isEmpty { throw error }
        }
        return records
    }

    // MARK: Internal

    private func fill(_ records: inout [ChangeRecord], limit maxRecords: Int) throws {
        if let data = pending {
            pending = nil
            try take(data, into: &records, limit: maxRecords)
        }
        // Set when this call created `log`: the last sequence written before, all of which it must see.
        var mustReach: UInt64?
        while records.count < maxRecords {
            if log == nil {
                let latest = try engine.latestSequenceNumber()
                if nextSequence > latest { break }  // caught up (and RocksDB would say NotFound)
                log = try storage(engine.path) { try engine.database.updates(since: nextSequence) }
                mustReach = latest
            }
            let batch: (sequence: UInt64, data: [UInt8])?
            do {
                batch = try log!.next()
            } catch let error as RocksDBError
                        where error.message.contains("Gap in sequence") || error.message.contains("Start sequence was not found") {
                // RocksDB's own continuity checks ("NotFound: Gap in sequence numbers").
                log = nil
                throw try hole(at: nextSequence, detail: "RocksDB: \(error.message)")
            } catch {
                log = nil
                throw ShardDBError.wrap(error, path: engine.path)
            }
            guard let batch else {
                if let mustReach {
                    // A fresh iterator must see everything written before it was made.
                    if nextSequence <= mustReach {
                        log = nil
                        throw try hole(at: nextSequence, detail: "the log ends before sequence \(mustReach), the last one written")
                    }
                    break  // keep it: it sees later appends to its log file
                }
                // A carried-over iterator at its end: caught up, or the log moved on to a
                // newer file this iterator cannot see. Only then pay for a new one (it
                // scans the log from a file's start: RocksDB issue 889).
                if nextSequence > (try engine.latestSequenceNumber()) { break }
                log = nil
                continue
            }
            try take(batch.data, into: &records, limit: maxRecords)
        }
    }

    /// Appends the batch's records for this reader that are not older than
    /// `nextSequence`, up to `limit` records in all, and advances `nextSequence`.
    /// Keeps the batch as `pending` when it stops inside it.
    private func take(_ data: [UInt8], into records: inout [ChangeRecord], limit: Int) throws {
        try data.withUnsafeBytes { bytes in
            let (first, count) = try decode { try WriteBatchDecoder.header(of: bytes) }
            guard first <= nextSequence else {
                throw try hole(at: nextSequence, detail: "the next batch in the log starts at sequence \(first)")
            }
            let end = first + UInt64(count)
            guard end > nextSequence else { return }  // every record already looked at
            var stoppedAt: UInt64?
            _ = try decode {  // the header was read above
                try WriteBatchDecoder.decode(bytes) { sequence, record in
                    guard stoppedAt == nil, sequence >= nextSequence, let change = try change(sequence, record) else { return }
                    if records.count >= limit {
                        stoppedAt = sequence
                    } else {
                        records.append(change)
                    }
                }
            }
            if let stoppedAt {
                nextSequence = stoppedAt
                pending = data
            } else {
                nextSequence = end
            }
        }
    }

    /// The change for this reader in one decoded record; nil when it belongs to
    /// another column family, is outside the range, or is log data.
    private func change(_ sequence: UInt64, _ record: WriteBatchRecord) throws -> ChangeRecord? {
        switch record {
        case let .put(cf, key, value) where cf == familyID && contains(key):
            return ChangeRecord(sequence: sequence, shard: shard, operation: .put, storedKey: [UInt8](key),
                                value: [UInt8](value), key: userKey(key), header: ValueHeader.parse(value)?.0)
        case let .merge(cf, key, value) where cf == familyID && contains(key):
            return ChangeRecord(sequence: sequence, shard: shard, operation: .merge, storedKey: [UInt8](key),
                                value: [UInt8](value), key: userKey(key), header: ValueHeader.parse(value)?.0)
        case let .delete(cf, key) where cf == familyID && contains(key):
            return ChangeRecord(sequence: sequence, shard: shard, operation: .delete, storedKey: [UInt8](key), key: userKey(key))
        case let .singleDelete(cf, key) where cf == familyID && contains(key):
            return ChangeRecord(sequence: sequence, shard: shard, operation: .singleDelete, storedKey: [UInt8](key), key: userKey(key))
        case let .deleteRange(cf, begin, end) where cf == familyID:
            var lower = [UInt8](begin), upper = [UInt8](end)
            if let bounds {
                if lower.lexicographicallyPrecedes(bounds.lower) { lower = bounds.lower }
                if let boundUpper = bounds.upper, boundUpper.lexicographicallyPrecedes(upper) { upper = boundUpper }
                guard lower.lexicographicallyPrecedes(upper) else { return nil }  // disjoint from the range
            }
            return ChangeRecord(sequence: sequence, shard: shard, operation: .deleteRange, storedKey: lower,
                                storedEndKey: upper, key: lower.withUnsafeBytes { userKey($0) })
        default:
            return nil
        }
    }

    /// True when the stored key is inside the reader's range (always without one).
    private func contains(_ storedKey: UnsafeRawBufferPointer) -> Bool {
        guard let bounds else { return true }
        guard RoutingTable.compare(storedKey, bounds.lower) >= 0 else { return false }
        guard let upper = bounds.upper else { return true }
        return RoutingTable.compare(storedKey, upper) < 0
    }

    private func userKey(_ storedKey: UnsafeRawBufferPointer) -> [UInt8] {
        guard hashed else { return [UInt8](storedKey) }
        return storedKey.count >= 2 ? [UInt8](KeyEncoding.userKey(storedKey, hashed: true)) : []
    }

    /// Turns a corrupt batch into a ShardDB storage error.
    private func decode<R>(_ body: () throws -> R) throws -> R {
        try storage(engine.path, body)
    }

    /// The error for a sequence number the log cannot deliver: unavailable when
    /// the oldest batch still logged is after it (purged), a gap otherwise.
    private func hole(at sequence: UInt64, detail: String) throws -> ShardDBError {
        let oldest: UInt64? = try storage(engine.path) {
            let log = try engine.database.updates(since: 1)
            return try log.next()?.sequence
        }
        if let oldest, oldest <= sequence {
            return ShardDBError(.changelogGap,
                "shard \(shard): changes from sequence \(sequence) are missing from the write-ahead log (written without it, "
                    + "e.g. disableWAL or an ingested file): \(detail)")
        }
        let held = oldest.map { "the oldest logged sequence is \($0)" } ?? "the log holds no batches"
        return ShardDBError(.changelogUnavailable,
            "shard \(shard): sequence \(sequence) is no longer in the write-ahead log (\(held); "
                + "WAL retention is \(engine.options.walRetentionSeconds) s): \(detail)")
    }
}

extension ShardEngine {
    /// The sequence number of the last write to the instance (any shard, metadata
    /// included); a ``ChangelogReader`` from this + 1 sees only later writes.
    ///
    /// - throws: ``ShardDBError`` `.closed`.
    public func latestSequenceNumber() throws -> UInt64 {
        try storage(path) { try database.latestSequenceNumber() }
    }
}
