import Foundation
import ShardDB
import Synchronization
import TestSupport
import XCTest

final class EngineConcurrencyTests: XCTestCase {
    /// `count` keys owned by each shard, found by probing.
    private func keysByShard(_ engine: ShardEngine, shards: Int, count: Int) -> [[[UInt8]]] {
        var result = [[[UInt8]]](repeating: [], count: shards)
        var i = 0
        while result.contains(where: { $0.count < count }) {
            let key = bytes("key-\(i)")
            if let owner = engine.recordedOwner(of: key), result[owner].count < count { result[owner].append(key) }
            i += 1
        }
        return result
    }

    func testFourThreadsWritingToTheirOwnShards() throws {
        let directory = TemporaryDirectory()
        let engine = try makeEngine(in: directory, shards: 4)
        defer { engine.close() }
        let keys = keysByShard(engine, shards: 4, count: 500)
        let failures = Mutex<[String]>([])
        DispatchQueue.concurrentPerform(iterations: 4) { shard in
            do {
                for (i, key) in keys[shard].enumerated() {
                    if i % 10 == 0 {
                        try engine.write { batch in
                            try batch.put(key, bytes("batch-\(shard)-\(i)"))
                        }
                    } else {
                        try engine.put(key, bytes("value-\(shard)-\(i)"))
                    }
                    // Read back own writes while the others write.
                    if i % 50 == 0, try engine.get(key) == nil { failures.withLock { $0.append("lost \(text(key)!)") } }
                }
                for key in keys[shard].prefix(50) { try engine.delete(key) }
            } catch {
                failures.withLock { $0.append("shard \(shard): \(error)") }
            }
        }
        XCTAssertEqual(failures.withLock { $0 }, [])
        for shard in 0..<4 {
            let stored = try engine.entries(ScanRequest(shard: shard))
            XCTAssertEqual(Set(stored.map(\.key)), Set(keys[shard].dropFirst(50)), "shard \(shard)")
            for (key, value) in stored {
                let i = keys[shard].firstIndex(of: key)!
                XCTAssertEqual(text(value), i % 10 == 0 ? "batch-\(shard)-\(i)" : "value-\(shard)-\(i)")
            }
        }
    }

    func testReadersAndScannersRunAlongsideWriters() throws {
        let directory = TemporaryDirectory()
        let engine = try makeEngine(in: directory, shards: 4, partitioning: .range(splitPoints: [bytes("b"), bytes("c"), bytes("d")]))
        defer { engine.close() }
        let prefixes = ["a", "b", "c", "d"]
        for prefix in prefixes { try engine.put("\(prefix)-seed", "seed") }
        let failures = Mutex<[String]>([])
        runConcurrently(4) { worker in
            do {
                if worker < 2 {
                    for i in 0..<500 {
                        for prefix in prefixes where prefixes.firstIndex(of: prefix)! % 2 == worker {
                            try engine.put("\(prefix)-\(i)", "v\(i)")
                        }
                    }
                } else {
                    for _ in 0..<20 {
                        // Scans stay sorted and seeds stay visible whatever the writers do.
                        let keys = try engine.keys()
                        if keys != keys.sorted(by: { $0.lexicographicallyPrecedes($1) }) { failures.withLock { $0.append("unsorted scan") } }
                        let seeds = try engine.multiGet(prefixes.map { bytes("\($0)-seed") })
                        if seeds.contains(where: { $0 == nil }) { failures.withLock { $0.append("seed missing") } }
                    }
                }
            } catch {
                failures.withLock { $0.append("worker \(worker): \(error)") }
            }
        }
        XCTAssertEqual(failures.withLock { $0 }, [])
        XCTAssertEqual(try engine.contents().count, 4 + 4 * 500)
        for (shard, prefix) in prefixes.enumerated() {
            XCTAssertEqual(try engine.keys(ScanRequest(shard: shard)).count, 501, prefix)
        }
    }
}
