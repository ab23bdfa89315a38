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

    init(engine: ShardEngine) {
        self.engine = engine
        self.table = engine.table
    }

    /// Number of operations.
    public var count: Int { batch.count }

    public func put(_ key: some ContiguousBytes, _ value: some ContiguousBytes, ttl: TTL = .shardDefault) throws {
        try key.withUnsafeBytes { k in
            try value.withUnsafeBytes { v in
                try ShardEngine.validate(key: k)
                try ShardEngine.validate(value: v)
                let (shard, keyGroup) = try table.locate(k)
                let header = ValueHeader(expiresAtMilliseconds: try engine.expiry(for: ttl, shard: shard))
                try KeyEncoding.withStoredKey(k, keyGroup: keyGroup) { storedKey in
                    try engine.withStoredValue(header, v) { storedValue in
                        try storage(engine.path) { try batch.put(storedKey, storedValue, in: shard.family) }
                    }
                }
            }
        }
    }

    public func put(_ key: String, _ value: String, ttl: TTL = .shardDefault) throws {
        try put(Array(key.utf8), Array(value.utf8), ttl: ttl)
    }

    public func delete(_ key: some ContiguousBytes) throws {
        try key.withUnsafeBytes { k in
            try ShardEngine.validate(key: k)
            let (shard, keyGroup) = try table.locate(k)
            try KeyEncoding.withStoredKey(k, keyGroup: keyGroup) { storedKey in
                try storage(engine.path) { try batch.delete(storedKey, in: shard.family) }
            }
        }
    }

    public func delete(_ key: String) throws { try delete(Array(key.utf8)) }
}

extension ShardEngine {
    /// A new empty batch for this engine.
    public func makeWriteBatch() -> ShardWriteBatch { ShardWriteBatch(engine: self) }

    /// Applies `batch` atomically.
    public func write(_ batch: ShardWriteBatch) throws {
        guard batch.engine === self else { throw ShardDBError(.invalidArgument, "the batch belongs to another engine") }
        try storage(path) { try database.write(batch.batch, options: writeOptions) }
    }

    /// Builds a batch with `body` and applies it atomically; nothing is written if `body` throws.
    public func write(_ body: (ShardWriteBatch) throws -> Void) throws {
        let batch = makeWriteBatch()
        try body(batch)
        try write(batch)
    }
}
