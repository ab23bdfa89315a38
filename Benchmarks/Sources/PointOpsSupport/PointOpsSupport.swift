// The two stores the point-operation benchmarks compare: ShardEngine and the
// same RocksDB options driven directly through the C API (issue 2: the engine
// must stay within 10% of the raw C API). Shared by the PointOps suite (wall
// clock) and PointOpsProfile (instruction counts under callgrind).
import CRocksDBReference
import Foundation
import ShardDB

public let keyCount = 100_000
public let keySize = 16
public let valueSize = 100

/// `count` distinct keys of `keySize` bytes (big-endian index, '0'-padded like db_bench).
public func makeKeys(_ count: Int) -> [[UInt8]] {
    (0..<count).map { i in
        var key = [UInt8](repeating: UInt8(ascii: "0"), count: keySize)
        withUnsafeBytes(of: UInt64(i).bigEndian) { for j in 0..<8 { key[j] = $0[j] } }
        return key
    }
}

public let keys = makeKeys(keyCount)

/// The key the `step`-th operation uses: Fibonacci hashing of the step, so
/// consecutive operations land on unrelated keys, as db_bench's readrandom does.
/// (Striding through the index order instead, e.g. by 7919, revisits
/// neighbouring indexes every few dozen steps; that favours the raw store, whose
/// memtable is in index order, over the engine, whose key-group prefix scatters
/// neighbouring indexes: a locality effect of hash partitioning, not a cost per
/// operation.)
@inlinable
public func keyIndex(_ step: Int) -> Int {
    Int(truncatingIfNeeded: (UInt64(truncatingIfNeeded: step) &* 0x9E37_79B9_7F4A_7C15) >> 40) % keyCount
}
public let value = [UInt8](repeating: UInt8(ascii: "v"), count: valueSize)

/// A raw RocksDB database opened with the C API and the engine's default options.
public final class RawStore {
    public let db: OpaquePointer
    public let options: OpaquePointer
    public let table: OpaquePointer
    public let cache: OpaquePointer
    public let writeOptions = rocksdb_writeoptions_create()!
    public let readOptions = rocksdb_readoptions_create()!
    public let path: String

    public init(path: String) {
        self.path = path
        let defaults = ShardEngineOptions()
        options = rocksdb_options_create()
        rocksdb_options_set_create_if_missing(options, 1)
        rocksdb_options_set_write_buffer_size(options, defaults.writeBufferSize)
        rocksdb_options_set_max_background_jobs(options, Int32(defaults.backgroundJobs))
        rocksdb_options_set_compression(options, Int32(defaults.compression.rawValue))
        rocksdb_options_set_WAL_ttl_seconds(options, defaults.walRetentionSeconds)
        table = rocksdb_block_based_options_create()
        cache = rocksdb_cache_create_lru(defaults.tableSettings.blockCacheBytes)
        rocksdb_block_based_options_set_block_cache(table, cache)
        rocksdb_block_based_options_set_filter_policy(table, rocksdb_filterpolicy_create_bloom(defaults.tableSettings.bloomBitsPerKey))
        rocksdb_options_set_block_based_table_factory(options, table)
        var error: UnsafeMutablePointer<CChar>?
        db = rocksdb_open(options, path, &error)!
        precondition(error == nil)
    }

    @inlinable
    public func put(_ key: UnsafeRawBufferPointer, _ value: UnsafeRawBufferPointer) {
        countersOff()
        var error: UnsafeMutablePointer<CChar>?
        rocksdb_put(db, writeOptions, key.baseAddress!.assumingMemoryBound(to: CChar.self), key.count,
                    value.baseAddress!.assumingMemoryBound(to: CChar.self), value.count, &error)
        if let error { fatalError(String(cString: error)) }
    }

    /// A copying get, like ShardEngine.get: the value into a new array.
    @inlinable
    public func get(_ key: UnsafeRawBufferPointer) -> [UInt8]? {
        withPinned(key) { [UInt8]($0) }
    }

    /// A zero-copy get through a pinnable slice.
    @inlinable
    public func withPinned<R>(_ key: UnsafeRawBufferPointer, _ body: (UnsafeRawBufferPointer) -> R) -> R? {
        countersOff()
        var error: UnsafeMutablePointer<CChar>?
        guard let pinned = rocksdb_get_pinned(db, readOptions, key.baseAddress!.assumingMemoryBound(to: CChar.self), key.count, &error) else {
            if let error { fatalError(String(cString: error)) }
            return nil
        }
        defer { rocksdb_pinnableslice_destroy(pinned) }
        var length = 0
        let data = rocksdb_pinnableslice_value(pinned, &length)
        return body(UnsafeRawBufferPointer(start: data, count: length))
    }

    /// RocksDB's perf counters off on the calling thread, as the engine runs (its
    /// `threadPerfLevel`) and as db_bench runs; the level is per thread and the
    /// benchmark harness may change threads, so every operation sets it, which costs
    /// about what the engine's once-per-thread check costs.
    @inlinable
    public func countersOff() { rocksdb_set_perf_level(1) }

    public func close() {
        rocksdb_close(db)
        rocksdb_options_destroy(options)
        rocksdb_block_based_options_destroy(table)
        rocksdb_cache_destroy(cache)
        rocksdb_writeoptions_destroy(writeOptions)
        rocksdb_readoptions_destroy(readOptions)
    }
}

/// Both stores, loaded with `keyCount` keys, in fresh temporary directories.
///
/// The keys are loaded in one fixed pseudo-random order. Loading them in index
/// order would favour the raw store: its memtable nodes would sit in the arena in
/// key order (a lookup touches neighbouring cache lines), while the engine's key-group
/// prefix scatters the same keys. That is a layout effect of hash partitioning
/// (absent once data is flushed to SST files, and absent for random inserts), not a
/// per-operation cost, so the stores are loaded alike; `PointOpsProfile compare
/// --ordered-load` shows the ordered case.
public final class Stores {
    public let root: String
    public let engine: ShardEngine
    public let raw: RawStore

    public init(orderedLoad: Bool = false) throws {
        root = NSTemporaryDirectory() + "sharddb-pointops-\(getpid())"
        try? FileManager.default.removeItem(atPath: root)
        try FileManager.default.createDirectory(atPath: root, withIntermediateDirectories: true)
        engine = try ShardEngine.create(at: root + "/engine", shards: 1)
        raw = RawStore(path: root + "/raw")
        var order = Array(keys.indices)
        if !orderedLoad {
            // A fixed Fisher-Yates shuffle (xorshift), the same in every run.
            var state: UInt64 = 0x9E37_79B9_7F4A_7C15
            for i in stride(from: order.count - 1, to: 0, by: -1) {
                state ^= state << 13; state ^= state >> 7; state ^= state << 17
                order.swapAt(i, Int(state % UInt64(i + 1)))
            }
        }
        for key in order.map({ keys[$0] }) {
            try engine.put(key, value)
            key.withUnsafeBytes { k in value.withUnsafeBytes { v in raw.put(k, v) } }
        }
    }

    public func close() {
        engine.close()
        raw.close()
        try? FileManager.default.removeItem(atPath: root)
    }
}

