// Point reads and writes through ShardEngine, side by side with the same
// operations made directly through RocksDB's C API in this process (issue 2:
// the engine must stay within 10% of the raw C API).
//
// Both stores use the same RocksDB options (ShardEngineOptions' defaults), 16-byte
// keys and 100-byte values; the engine has one shard. Each iteration is 1000 ops.
import Benchmark
import CRocksDBReference
import Foundation
import ShardDB

let keyCount = 100_000
let keySize = 16
let valueSize = 100

/// `count` distinct keys of `keySize` bytes (big-endian index, '0'-padded like db_bench).
func makeKeys(_ count: Int) -> [[UInt8]] {
    (0..<count).map { i in
        var key = [UInt8](repeating: UInt8(ascii: "0"), count: keySize)
        withUnsafeBytes(of: UInt64(i).bigEndian) { for j in 0..<8 { key[j] = $0[j] } }
        return key
    }
}

let keys = makeKeys(keyCount)
let value = [UInt8](repeating: UInt8(ascii: "v"), count: valueSize)

/// A raw RocksDB database opened with the C API and the engine's default options.
final class RawStore {
    let db: OpaquePointer
    let options: OpaquePointer
    let table: OpaquePointer
    let cache: OpaquePointer
    let writeOptions = rocksdb_writeoptions_create()!
    let readOptions = rocksdb_readoptions_create()!
    let path: String

    init(path: String) {
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
        rocksdb_readoptions_set_verify_checksums(readOptions, 0)
        var error: UnsafeMutablePointer<CChar>?
        db = rocksdb_open(options, path, &error)!
        precondition(error == nil)
    }

    @inline(__always)
    func put(_ key: UnsafeRawBufferPointer, _ value: UnsafeRawBufferPointer) {
        var error: UnsafeMutablePointer<CChar>?
        rocksdb_put(db, writeOptions, key.baseAddress!.assumingMemoryBound(to: CChar.self), key.count,
                    value.baseAddress!.assumingMemoryBound(to: CChar.self), value.count, &error)
        if let error { fatalError(String(cString: error)) }
    }

    /// A copying get, like ShardEngine.get: the value into a new array.
    @inline(__always)
    func get(_ key: UnsafeRawBufferPointer) -> [UInt8]? {
        withPinned(key) { [UInt8]($0) }
    }

    /// A zero-copy get through a pinnable slice.
    @inline(__always)
    func withPinned<R>(_ key: UnsafeRawBufferPointer, _ body: (UnsafeRawBufferPointer) -> R) -> R? {
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

    func close() {
        rocksdb_close(db)
        rocksdb_options_destroy(options)
        rocksdb_block_based_options_destroy(table)
        rocksdb_cache_destroy(cache)
        rocksdb_writeoptions_destroy(writeOptions)
        rocksdb_readoptions_destroy(readOptions)
    }
}

/// Both stores, loaded with `keyCount` keys, in fresh temporary directories.
final class Stores {
    let root: String
    let engine: ShardEngine
    let raw: RawStore

    init() throws {
        root = NSTemporaryDirectory() + "sharddb-pointops-\(getpid())"
        try? FileManager.default.removeItem(atPath: root)
        try FileManager.default.createDirectory(atPath: root, withIntermediateDirectories: true)
        engine = try ShardEngine.create(at: root + "/engine", shards: 1)
        raw = RawStore(path: root + "/raw")
        for key in keys {
            try engine.put(key, value)
            key.withUnsafeBytes { k in value.withUnsafeBytes { v in raw.put(k, v) } }
        }
    }

    func close() {
        engine.close()
        raw.close()
        try? FileManager.default.removeItem(atPath: root)
    }
}

nonisolated(unsafe) var stores: Stores?

let benchmarks: @Sendable () -> Void = {
    Benchmark.defaultConfiguration = .init(
        metrics: [.wallClock, .throughput, .mallocCountTotal],
        scalingFactor: .kilo,
        maxDuration: .seconds(2),
        maxIterations: 1000,
        setup: { if stores == nil { stores = try Stores() } },
        teardown: {}
    )

    // MARK: Writes

    Benchmark("put engine") { benchmark in
        let engine = stores!.engine
        var i = 0
        for _ in benchmark.scaledIterations {
            try! engine.put(keys[i], value)
            i = (i &+ 7919) % keyCount
        }
    }

    Benchmark("put raw C API") { benchmark in
        let raw = stores!.raw
        var i = 0
        value.withUnsafeBytes { v in
            for _ in benchmark.scaledIterations {
                keys[i].withUnsafeBytes { raw.put($0, v) }
                i = (i &+ 7919) % keyCount
            }
        }
    }

    // MARK: Copying reads

    Benchmark("get engine") { benchmark in
        let engine = stores!.engine
        var i = 0
        for _ in benchmark.scaledIterations {
            blackHole(try! engine.get(keys[i]))
            i = (i &+ 7919) % keyCount
        }
    }

    Benchmark("get raw C API") { benchmark in
        let raw = stores!.raw
        var i = 0
        for _ in benchmark.scaledIterations {
            blackHole(keys[i].withUnsafeBytes { raw.get($0) })
            i = (i &+ 7919) % keyCount
        }
    }

    // MARK: Zero-copy reads

    Benchmark("get zero-copy engine") { benchmark in
        let engine = stores!.engine
        var i = 0
        for _ in benchmark.scaledIterations {
            blackHole(try! engine.withValue(forKey: keys[i]) { $0.count })
            i = (i &+ 7919) % keyCount
        }
    }

    Benchmark("get zero-copy raw C API") { benchmark in
        let raw = stores!.raw
        var i = 0
        for _ in benchmark.scaledIterations {
            blackHole(keys[i].withUnsafeBytes { raw.withPinned($0) { $0.count } })
            i = (i &+ 7919) % keyCount
        }
    }

    Benchmark("get missing engine") { benchmark in
        let engine = stores!.engine
        let missing = makeKeys(1).map { k -> [UInt8] in var k = k; k[15] = UInt8(ascii: "x"); return k }[0]
        for _ in benchmark.scaledIterations { blackHole(try! engine.get(missing)) }
    }
}
