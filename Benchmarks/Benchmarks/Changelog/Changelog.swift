// Decoding the changelog a migration's catch-up reads: the write-ahead log's
// batches (WriteBatchDecoder, in memory), and ChangelogReader end to end (WAL
// iterator, decoding, filtering to one shard's range, the records it returns).
import Benchmark
import Foundation
import RocksDB
import ShardDB

/// A batch of `count` puts of 16 B keys and 100 B values, as RocksDB writes it to the log.
func batchData(count: Int) -> [UInt8] {
    let batch = WriteBatch()
    let value = [UInt8](repeating: 0x76, count: 100)
    for i in 0..<count { try! batch.put(Array(String(format: "key-%011d", i).utf8), value) }
    return batch.withData { [UInt8]($0) }
}

let benchmarks: @Sendable () -> Void = {
    Benchmark.defaultConfiguration = .init(
        metrics: [.wallClock, .throughput, .mallocCountTotal],
        scalingFactor: .kilo,
        maxDuration: .seconds(2)
    )

    // Per record: one batch of 1000 puts decoded per 1000 scaled iterations.
    Benchmark("WriteBatchDecoder 1000-put batch (per record)") { benchmark in
        let data = batchData(count: 1000)
        benchmark.startMeasurement()
        defer { benchmark.stopMeasurement() }
        data.withUnsafeBytes { bytes in
            var remaining = benchmark.scaledIterations.count
            while remaining > 0 {
                var keyBytes = 0
                try! WriteBatchDecoder.decode(bytes) { _, record in
                    if case .put(_, let key, _) = record { keyBytes &+= key.count }
                }
                blackHole(keyBytes)
                remaining -= 1000
            }
        }
    }

    // ChangelogReader over 20,000 puts to a 4-shard instance, one shard's changes
    // returned (about a quarter); throughput counts every record in the log.
    Benchmark("ChangelogReader one shard of 20k puts (per logged put)",
              configuration: .init(scalingFactor: .one, maxDuration: .seconds(4))) { benchmark in
        let directory = FileManager.default.temporaryDirectory.appendingPathComponent("changelog-bench-\(UUID().uuidString)").path
        defer { try? FileManager.default.removeItem(atPath: directory) }
        let engine = try! ShardEngine.create(at: directory, shards: 4)
        defer { engine.close() }
        let value = [UInt8](repeating: 0x76, count: 100)
        for start in stride(from: 0, to: 20_000, by: 100) {
            try! engine.write { batch in
                for i in start..<start + 100 { try batch.put(Array(String(format: "key-%011d", i).utf8), value) }
            }
        }
        benchmark.startMeasurement()
        for _ in benchmark.scaledIterations {
            let reader = try! ChangelogReader(engine: engine, shard: engine.shardDescriptors[0].id, from: 1)
            var records = 0
            while true {
                let chunk = try! reader.read(maxRecords: 10_000)
                if chunk.isEmpty { break }
                records += chunk.count
            }
            blackHole(records)
        }
        benchmark.stopMeasurement()
    }
}
