// Scans of 10,000 entries: ShardEngine.scan (batched through the C++ shim),
// the RocksDB wrapper's batched Iterator.forEach, and its per-entry
// key/value/next loop (four C calls per entry) for contrast.
import Benchmark
import Foundation
import RocksDB
import ShardDB

let entries = 10_000
let value = [UInt8](repeating: UInt8(ascii: "v"), count: 100)

final class Stores {
    let root = NSTemporaryDirectory() + "sharddb-scans-\(getpid())"
    let engine: ShardEngine
    let database: Database

    init() throws {
        try? FileManager.default.removeItem(atPath: root)
        try FileManager.default.createDirectory(atPath: root, withIntermediateDirectories: true)
        engine = try ShardEngine.create(at: root + "/engine", shards: 1, partitioning: .range(splitPoints: []))
        let options = Options()
        options.createIfMissing = true
        database = try Database.open(at: root + "/raw", options: options)
        for i in 0..<entries {
            var key = [UInt8](repeating: UInt8(ascii: "0"), count: 16)
            withUnsafeBytes(of: UInt64(i).bigEndian) { for j in 0..<8 { key[j] = $0[j] } }
            try engine.put(key, value)
            try database.put(key, value)
        }
    }
}

nonisolated(unsafe) var stores: Stores?

let benchmarks: @Sendable () -> Void = {
    Benchmark.defaultConfiguration = .init(
        metrics: [.wallClock, .throughput, .mallocCountTotal],
        maxDuration: .seconds(2),
        maxIterations: 1000,
        setup: { if stores == nil { stores = try Stores() } }
    )

    Benchmark("scan 10k engine") { benchmark in
        var bytes = 0
        for _ in benchmark.scaledIterations {
            try! stores!.engine.scan { entry in bytes &+= entry.value.count; return true }
        }
        blackHole(bytes)
    }

    Benchmark("scan 10k RocksDB Iterator.forEach") { benchmark in
        var bytes = 0
        for _ in benchmark.scaledIterations {
            let iterator = try! stores!.database.makeIterator()
            iterator.seekToFirst()
            try! iterator.forEach { _, v in bytes &+= v.count; return true }
        }
        blackHole(bytes)
    }

    Benchmark("scan 10k RocksDB per-entry calls") { benchmark in
        var bytes = 0
        for _ in benchmark.scaledIterations {
            let iterator = try! stores!.database.makeIterator()
            iterator.seekToFirst()
            while iterator.isValid {
                bytes &+= try! iterator.withValue { $0.count }
                iterator.next()
            }
        }
        blackHole(bytes)
    }
}
