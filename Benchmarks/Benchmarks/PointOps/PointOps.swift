// Point reads and writes through ShardEngine, side by side with the same
// operations made directly through RocksDB's C API in this process (issue 2:
// the engine must stay within 10% of the raw C API).
//
// Both stores use the same RocksDB options (ShardEngineOptions' defaults), 16-byte
// keys and 100-byte values; the engine has one shard. Each iteration is 1000 ops.
import Benchmark
import PointOpsSupport
import Foundation
import ShardDB

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
            try! engine.put(keys[keyIndex(i)], value)
            i &+= 1
        }
    }

    Benchmark("put raw C API") { benchmark in
        let raw = stores!.raw
        var i = 0
        value.withUnsafeBytes { v in
            for _ in benchmark.scaledIterations {
                keys[keyIndex(i)].withUnsafeBytes { raw.put($0, v) }
                i &+= 1
            }
        }
    }

    // MARK: Copying reads

    Benchmark("get engine") { benchmark in
        let engine = stores!.engine
        var i = 0
        for _ in benchmark.scaledIterations {
            blackHole(try! engine.get(keys[keyIndex(i)]))
            i &+= 1
        }
    }

    Benchmark("get raw C API") { benchmark in
        let raw = stores!.raw
        var i = 0
        for _ in benchmark.scaledIterations {
            blackHole(keys[keyIndex(i)].withUnsafeBytes { raw.get($0) })
            i &+= 1
        }
    }

    // MARK: Zero-copy reads

    Benchmark("get zero-copy engine") { benchmark in
        let engine = stores!.engine
        var i = 0
        for _ in benchmark.scaledIterations {
            blackHole(try! engine.withValue(forKey: keys[keyIndex(i)]) { $0.count })
            i &+= 1
        }
    }

    Benchmark("get zero-copy raw C API") { benchmark in
        let raw = stores!.raw
        var i = 0
        for _ in benchmark.scaledIterations {
            blackHole(keys[keyIndex(i)].withUnsafeBytes { raw.withPinned($0) { $0.count } })
            i &+= 1
        }
    }

    Benchmark("get missing engine") { benchmark in
        let engine = stores!.engine
        let missing = makeKeys(1).map { k -> [UInt8] in var k = k; k[15] = UInt8(ascii: "x"); return k }[0]
        for _ in benchmark.scaledIterations { blackHole(try! engine.get(missing)) }
    }
}
