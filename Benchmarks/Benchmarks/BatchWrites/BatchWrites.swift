// Atomic batch writes: 100 puts per batch through ShardEngine's cross-shard
// batch (4 shards, so each batch spans shards) and through the RocksDB wrapper's
// WriteBatch on one column family.
import Benchmark
import Foundation
import RocksDB
import ShardDB

let batchSize = 100
let keys: [[UInt8]] = (0..<100_000).map { i in
    var key = [UInt8](repeating: UInt8(ascii: "0"), count: 16)
    withUnsafeBytes(of: UInt64(i).bigEndian) { for j in 0..<8 { key[j] = $0[j] } }
    return key
}
let value = [UInt8](repeating: UInt8(ascii: "v"), count: 100)

final class Stores {
    let root = NSTemporaryDirectory() + "sharddb-batchwrites-\(getpid())"
    let engine: ShardEngine
    let database: Database

    init() throws {
        try? FileManager.default.removeItem(atPath: root)
        try FileManager.default.createDirectory(atPath: root, withIntermediateDirectories: true)
        engine = try ShardEngine.create(at: root + "/engine", shards: 4)
        let options = Options()
        options.createIfMissing = true
        database = try Database.open(at: root + "/raw", options: options)
    }
}

nonisolated(unsafe) var stores: Stores?

let benchmarks: @Sendable () -> Void = {
    Benchmark.defaultConfiguration = .init(
        metrics: [.wallClock, .throughput, .mallocCountTotal],
        maxDuration: .seconds(2),
        maxIterations: 10_000,
        setup: { if stores == nil { stores = try Stores() } }
    )

    Benchmark("batch of 100 puts engine (4 shards)") { benchmark in
        let engine = stores!.engine
        var next = 0
        for _ in benchmark.scaledIterations {
            try! engine.write { batch in
                for _ in 0..<batchSize {
                    try batch.put(keys[next], value)
                    next = (next + 1) % keys.count
                }
            }
        }
    }

    Benchmark("batch of 100 puts RocksDB wrapper") { benchmark in
        let database = stores!.database
        var next = 0
        for _ in benchmark.scaledIterations {
            let batch = WriteBatch()
            for _ in 0..<batchSize {
                try! batch.put(keys[next], value)
                next = (next + 1) % keys.count
            }
            try! database.write(batch)
        }
    }
}
