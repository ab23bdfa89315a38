import Foundation
import RocksDB

/// Writes applied atomically, possibly across shards: either all of them are
/// stored, or none. Routing and validation happen as operations are added, so
/// a bad key fails at once and nothing of the batch is written.
///
/// ```swift
/// try engine.write { batch in
///     try batch.put("account:a", "90")
///     try batch.put("account:b", "110")
/// }
/// ```
public final class ShardWriteBatch {
    let engine: ShardEngine
    let table: RoutingTable
    let batch = WriteBatch()
    /// What the batch touches and the shard each went to, to re-check if the shard
    /// map changes before the batch is written: key groups (hash) or keys (range).
    /// The shard must be the same, not only some owner: the batch holds that
    /// shard's column family (one that moved out and back has another).
    var touchedKeyGroups: [(keyGroup: UInt16, shard: Int32)] = []
    var touchedKeys: [(key: [UInt8], shard: Int32)] = []
    /// Range deletes under range partitioning, with the shards their parts went to.
    var touchedRanges: [(lower: [UInt8], upper: [UInt8], shards: [Int])] = []

    init(engine: ShardEngine) {
        self.engine = engine
        self.table = engine.table
    }

    /// Number of operations.
    public var count: Int { batch.count }

    /// Adds a put. `writtenAtMilliseconds` restores a value's write time (as
    /// `export` wrote it) instead of the one ``ShardEngineOptions/stampWriteTime``
    /// would give it now; nil keeps the engine's behaviour.
    ///
    /// - throws: as ``ShardEngine/put(_:_:ttl:)``, and `.invalidArgument` for a negative write time.
    public func put(_ key: some ContiguousBytes, _ value: some ContiguousBytes, ttl: TTL = .shardDefault,
                    writtenAtMilliseconds: Int64? = nil) throws {
        try key.withUnsafeBytes { k in
            try value.withUnsafeBytes { v in
                try ShardEngine.validate(key: k)
                try ShardEngine.validate(value: v)
                let (shard, keyGroup) = try locate(k)
                var header = try engine.valueHeader(ttl: ttl, shard: shard)
                if let writtenAtMilliseconds {
                    guard writtenAtMilliseconds >= 0 else {
                        throw ShardDBError(.invalidArgument, "write time \(writtenAtMilliseconds) is negative")
                    }
                    header.writtenAtMilliseconds = writtenAtMilliseconds
                }
                try KeyEncoding.withStoredKey(k, keyGroup: keyGroup) { storedKey in
                    try engine.withStoredValue(header, v) { storedValue in
                        try storage(engine.path) { try batch.put(storedKey, storedValue, in: shard.family) }
                    }
                }
                remember(k, in: shard, keyGroup: keyGroup)
            }
        }
    }

    public func put(_ key: String, _ value: String, ttl: TTL = .shardDefault) throws {
        try put(Array(key.utf8), Array(value.utf8), ttl: ttl)
    }

    public func delete(_ key: some ContiguousBytes) throws {
        try key.withUnsafeBytes { k in
            try ShardEngine.validate(key: k)
            let (shard, keyGroup) = try locate(k)
            try KeyEncoding.withStoredKey(k, keyGroup: keyGroup) { storedKey in
                try storage(engine.path) { try batch.delete(storedKey, in: shard.family) }
            }
            remember(k, in: shard, keyGroup: keyGroup)
        }
    }

    public func delete(_ key: String) throws { try delete(Array(key.utf8)) }

    /// Adds a range delete (see ``ShardEngine/deleteRange(from:to:keyGroup:)``):
    /// every key `k` with `lower <= k < upper`, inside `keyGroup` under hash partitioning.
    public func deleteRange(from lower: some ContiguousBytes, to upper: some ContiguousBytes, keyGroup: Int? = nil) throws {
        let lower = lower.withUnsafeBytes { [UInt8]($0) }, upper = upper.withUnsafeBytes { [UInt8]($0) }
        try ShardEngine.validateRange(lower, upper, keyGroup: keyGroup, partitioning: engine.partitioning)
        // Each fence waited out in turn: a range over several shards may meet one per
        // shard (FenceHit is internal and must not reach the caller).
        var located: [RangePiece]?
        var current = table
        while located == nil {
            do { located = try current.locateRange(lower: lower, upper: upper, keyGroup: keyGroup) } catch let hit as FenceHit {
                try engine.waitOut(hit.fence)
                current = engine.table
            }
        }
        let pieces = located!
        for piece in pieces {
            try storage(engine.path) { try batch.deleteRange(from: piece.storedLower, to: piece.storedUpper, in: piece.shard.family) }
        }
        if let keyGroup, let piece = pieces.first { touchedKeyGroups.append((UInt16(keyGroup), Int32(piece.shard.id))) } else {
            touchedRanges.append((lower, upper, pieces.map(\.shard.id)))
        }
    }

    public func deleteRange(from lower: String, to upper: String, keyGroup: Int? = nil) throws {
        try deleteRange(from: Array(lower.utf8), to: Array(upper.utf8), keyGroup: keyGroup)
    }

    /// Routes `key` with the batch's table, waiting out a fence.
    private func locate(_ key: UnsafeRawBufferPointer) throws -> (Shard, Int?) {
        do { return try table.locate(key) } catch let hit as FenceHit {
            try engine.waitOut(hit.fence)
            // The shard map changed; locate against the current one (it may say "moved").
            return try engine.routedRead(key) { ($0, $1) }
        }
    }

    /// Records that the batch holds an operation on `key` in `shard`, to re-check
    /// before the write: only once the operation is added (a put refused for its
    /// TTL touches nothing).
    private func remember(_ key: UnsafeRawBufferPointer, in shard: Shard, keyGroup: Int?) {
        if let keyGroup {
            touchedKeyGroups.append((UInt16(keyGroup), Int32(shard.id)))
        } else {
            touchedKeys.append(([UInt8](key), Int32(shard.id)))
        }
    }

    /// Re-checks, against a newer table, that every key the batch touches is still owned and not fenced.
    func revalidate(against current: RoutingTable) throws {
        func moved(_ shard: Int32, _ what: @autoclosure () -> String) -> ShardDBError {
            ShardDBError(.migrationConflict, "\(what()) went to shard \(shard), which no longer holds it here (the shard map changed while the batch was built); build it again")
        }
        if current.isHashed {
            var seen = Set<UInt64>()
            for (kg, shard) in touchedKeyGroups where seen.insert(UInt64(kg) << 32 | UInt64(UInt32(bitPattern: shard))).inserted {
                try current.checkOwned(keyGroup: Int(kg))
                guard current.owner(ofKeyGroup: Int(kg))?.id == Int(shard) else { throw moved(shard, "key group \(kg)") }
            }
        } else {
            for (key, shard) in touchedKeys {
                let owner = try key.withUnsafeBytes { k in try current.locate(k).0 }
                guard owner.id == Int(shard) else { throw moved(shard, "'\(ByteText.display(key))'") }
            }
            for range in touchedRanges {
                let pieces = try current.locateRange(lower: range.lower, upper: range.upper, keyGroup: nil)
                guard pieces.map(\.shard.id) == range.shards else {
                    throw ShardDBError(.migrationConflict,
                        "range delete ['\(ByteText.display(range.lower))', '\(ByteText.display(range.upper))'): the shard map changed while the batch was built; build it again")
                }
            }
        }
    }
}

extension ShardEngine {
    /// A new empty batch for this engine.
    public func makeWriteBatch() -> ShardWriteBatch { ShardWriteBatch(engine: self) }

    /// Applies `batch` atomically.
    ///
    /// - throws: ``ShardDBError``: `.invalidArgument` (a batch of another engine),
    ///   `.migrationConflict` (a shard the batch writes to moved or changed since the
    ///   batch was built: build it again), `.migrationInProgress`, `.diskFull`, `.closed`, `.storage`.
    public func write(_ batch: ShardWriteBatch) throws {
        guard batch.engine === self else { throw ShardDBError(.invalidArgument, "the batch belongs to another engine") }
        while true {
            do {
                return try writeGate.withReadLock {
                    let current = table
                    if current.generation != batch.table.generation { try batch.revalidate(against: current) }
                    try guardedWrite(bytes: batch.batch.byteSize) { try database.write(batch.batch, options: writeOptions) }
                }
            } catch let hit as FenceHit {
                try waitOut(hit.fence)
            }
        }
    }

    /// Builds a batch with `body` and applies it atomically; nothing is written if `body` throws.
    public func write(_ body: (ShardWriteBatch) throws -> Void) throws {
        let batch = makeWriteBatch()
        try body(batch)
        try write(batch)
    }
}
