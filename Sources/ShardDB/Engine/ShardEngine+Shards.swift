import Foundation
import RocksDB

/// A shard's record with its current size and TTL metrics.
public struct ShardInfo: Sendable {
    public var descriptor: ShardDescriptor
    /// Table files plus memtables, in bytes (RocksDB's estimate).
    public var approximateBytes: UInt64
    /// RocksDB's estimate of the number of keys (counts expired and overwritten entries too).
    public var estimatedKeys: UInt64
    /// Entries the expiry compaction filter has dropped from this shard (persisted across opens).
    public var expiredDropped: Int

    public var id: Int { descriptor.id }
}

extension ShardEngine {
    /// Every shard record with sizes and key estimates; moved-away ranges have zero sizes.
    public func shards() throws -> [ShardInfo] {
        try table.shards.map { shard in
            var info = ShardInfo(descriptor: shard.descriptor, approximateBytes: 0, estimatedKeys: 0,
                                 expiredDropped: shard.expiryFilter?.dropped.load(ordering: .relaxed) ?? 0)
            if let family = shard.family {
                try storage(path) {
                    let sst = try database.integerProperty("rocksdb.total-sst-files-size", in: family) ?? 0
                    let mem = try database.integerProperty("rocksdb.cur-size-all-mem-tables", in: family) ?? 0
                    info.approximateBytes = sst + mem
                    info.estimatedKeys = try database.integerProperty("rocksdb.estimate-num-keys", in: family) ?? 0
                }
            }
            return info
        }
    }

    /// Sets (or, with nil, removes) a shard's default TTL. Applies to writes made
    /// afterwards; values already stored keep their expiry.
    ///
    /// - throws: ``ShardDBError``: `.shardNotFound`, `.invalidTTL`.
    public func setDefaultTTL(shard id: Int, seconds: Int64?) throws {
        if let seconds, seconds <= 0 || seconds > TTL.maxSeconds {
            throw ShardDBError(.invalidTTL, "default TTL must be between 1 and \(TTL.maxSeconds) seconds (10,000 years), got \(seconds)")
        }
        try updateShard(id) { $0.defaultTTLSeconds = seconds }
    }

    /// Rewrites one shard record durably, then swaps the routing table.
    func updateShard(_ id: Int, _ change: (inout ShardDescriptor) -> Void) throws {
        try shardMapLock.withLock { _ in try updateShardLocked(id, change) }
    }

    private func updateShardLocked(_ id: Int, _ change: (inout ShardDescriptor) -> Void) throws {
        let current = table
        guard let shard = current.shard(id: id), shard.isActive else {
            throw ShardDBError(.shardNotFound, "shard \(id) does not exist on this instance")
        }
        var descriptor = shard.descriptor
        change(&descriptor)
        let batch = WriteBatch()
        try batch.put(Array(MetadataKey.shard(id).utf8), MetadataCoding.encode(ShardRecord(descriptor)), in: metadata)
        try durableWrite(batch)
        updateTable { table in table.replacing(shards: table.shards.map { $0.id == id ? $0.with(descriptor) : $0 }) }
    }

    /// Writes the memtables of a shard (or of every active shard, in one flush:
    /// without the WAL, a crash then keeps all of them or none) to table files.
    public func flush(shard id: Int? = nil) throws {
        let shards = try id.map { [try activeShard($0)] } ?? orderedActiveShards(table)
        let families = shards.compactMap(\.family)
        try storage(path) { try database.flush(families) }
    }

    /// Waits until no shard has a flush or a compaction pending or running: the
    /// state db_bench's `waitforcompaction` waits for, so a measurement or a
    /// maintenance step that follows does not share the machine with work the
    /// writes before it left behind. (RocksDB 7.8's C API has no `WaitForCompact`;
    /// this reads the four properties db_bench reads, every few milliseconds.)
    ///
    /// ```swift
    /// try engine.flush()
    /// guard try engine.waitForBackgroundWork(timeoutSeconds: 60) else { print("still compacting") }
    /// ```
    ///
    /// - parameters:
    ///   - timeoutSeconds: how long to wait at most; 0 only looks.
    /// - returns: true once nothing is pending or running; false when the timeout passed first.
    /// - throws: ``ShardDBError``: `.invalidArgument` for a negative or non-finite
    ///   timeout, `.closed`, `.storage`.
    public func waitForBackgroundWork(timeoutSeconds: Double = 600) throws -> Bool {
        guard timeoutSeconds.isFinite, timeoutSeconds >= 0 else {
            throw ShardDBError(.invalidArgument, "the wait for background work needs a timeout of 0 seconds or more, got \(timeoutSeconds)")
        }
        // Capped at a year: a larger timeout (Double.greatestFiniteMagnitude for "for ever")
        // would not fit in a Duration.
        let milliseconds = min((timeoutSeconds * 1000).rounded(.up), Self.longestWaitMilliseconds)
        let deadline = ContinuousClock.now + .milliseconds(Int64(milliseconds))
        while true {
            if try !hasBackgroundWork() { return true }
            guard ContinuousClock.now < deadline else { return false }
            usleep(Self.backgroundWorkPollMicroseconds)
        }
    }

    static let backgroundWorkPollMicroseconds: UInt32 = 5_000
    static let longestWaitMilliseconds: Double = 365 * 24 * 3600 * 1000

    /// Whether any shard has a memtable waiting to be flushed or a compaction
    /// waiting to run, or the database is running either (those two are database-wide).
    func hasBackgroundWork() throws -> Bool {
        try storage(path) {
            for shard in orderedActiveShards(table) {
                guard let family = shard.family else { continue }
                for name in ["rocksdb.mem-table-flush-pending", "rocksdb.compaction-pending"]
                where try database.integerProperty(name, in: family) ?? 0 > 0 {
                    return true
                }
            }
            for name in ["rocksdb.num-running-flushes", "rocksdb.num-running-compactions"]
            where try database.integerProperty(name) ?? 0 > 0 {
                return true
            }
            return false
        }
    }

    /// Compacts a shard (or every active shard) now, so the expiry filter drops
    /// every expired entry from disk.
    ///
    /// - returns: the number of entries dropped by this purge.
    /// - throws: ``ShardDBError``: `.shardNotFound`, `.storage`.
    @discardableResult
    public func purgeExpired(shard id: Int? = nil) throws -> Int {
        let shards = try id.map { [try activeShard($0)] } ?? orderedActiveShards(table)
        var dropped = 0
        for shard in shards {
            guard let family = shard.family else { continue }
            let before = shard.expiryFilter?.dropped.load(ordering: .relaxed) ?? 0
            try storage(path) {
                try database.flush(family)
                try database.compactRange(family)
            }
            dropped += (shard.expiryFilter?.dropped.load(ordering: .relaxed) ?? 0) - before
        }
        return dropped
    }

    /// Counts entries of a shard that are expired but still on disk, reading at
    /// most `sampleLimit` entries and extrapolating to the shard's key estimate
    /// beyond that (exact for shards smaller than the sample).
    public func estimateExpired(shard id: Int, sampleLimit: Int = 100_000) throws -> Int {
        let shard = try activeShard(id)
        guard let family = shard.family else { return 0 }
        let now = clock.nowMilliseconds()
        var seen = 0, expired = 0
        try storage(path) {
            let bounds = shard.descriptor.range.storedBounds
            let iterator = try database.makeIterator(in: family, lowerBound: bounds.lower, upperBound: bounds.upper, fillCache: false)
            iterator.seekToFirst()
            try iterator.forEach { _, value in
                seen += 1
                if let (header, _) = ValueHeader.parse(value), header.isExpired(at: now) { expired += 1 }
                return seen < sampleLimit
            }
        }
        guard seen >= sampleLimit, seen > 0 else { return expired }
        let estimate = try storage(path) { try database.integerProperty("rocksdb.estimate-num-keys", in: family) } ?? UInt64(seen)
        return Int(Double(expired) / Double(seen) * Double(max(estimate, UInt64(seen))))
    }
}
