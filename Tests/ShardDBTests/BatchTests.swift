import ShardDB
import XCTest

final class BatchTests: XCTestCase {
    private struct Abort: Error {}

    func testCrossShardBatchIsAppliedWhole() throws {
        let directory = TemporaryDirectory()
        let engine = try makeEngine(in: directory, shards: 4)
        defer { engine.close() }
        let keys = (0..<64).map { "account:\($0)" }
        XCTAssertEqual(Set(keys.compactMap { engine.recordedOwner(of: bytes($0)) }), [0, 1, 2, 3])
        try engine.write { batch in
            for key in keys { try batch.put(key, "balance-\(key)") }
            XCTAssertEqual(batch.count, 64)
        }
        for key in keys { XCTAssertEqual(try engine.getString(key), "balance-\(key)") }
        XCTAssertEqual(try engine.contents().count, 64)
    }

    func testBatchWhoseBodyThrowsWritesNothing() throws {
        let directory = TemporaryDirectory()
        let engine = try makeEngine(in: directory, shards: 4)
        defer { engine.close() }
        try engine.put("account:a", "100")
        XCTAssertThrowsError(try engine.write { batch in
            for i in 0..<32 { try batch.put("k\(i)", "v") }
            try batch.put("account:a", "0")
            try batch.delete("account:a")
            throw Abort()
        }) { XCTAssertTrue($0 is Abort, "\($0)") }
        XCTAssertEqual(try engine.contents(), [bytes("account:a"): bytes("100")])
    }

    func testBatchDeletesAndPutsAcrossShards() throws {
        let directory = TemporaryDirectory()
        let engine = try makeEngine(in: directory, shards: 4)
        defer { engine.close() }
        for i in 0..<40 { try engine.put("k\(i)", "old\(i)") }
        try engine.write { batch in
            for i in stride(from: 0, to: 40, by: 2) { try batch.delete("k\(i)") }
            for i in stride(from: 1, to: 40, by: 4) { try batch.put("k\(i)", "new\(i)") }
            try batch.delete("never-written")
            // Later operations on a key win within a batch.
            try batch.put("k3", "first")
            try batch.put("k3", "second")
            try batch.put("k5", "gone")
            try batch.delete("k5")
        }
        var expected: [[UInt8]: [UInt8]] = [:]
        for i in stride(from: 1, to: 40, by: 2) { expected[bytes("k\(i)")] = bytes(i % 4 == 1 ? "new\(i)" : "old\(i)") }
        expected[bytes("k3")] = bytes("second")
        expected[bytes("k5")] = nil
        XCTAssertEqual(try engine.contents(), expected)
        XCTAssertNil(try engine.get("k0"))
    }

    func testBatchBuiltByHandIsAppliedOnWrite() throws {
        let directory = TemporaryDirectory()
        let engine = try makeEngine(in: directory, shards: 3, partitioning: .range(splitPoints: [bytes("h"), bytes("p")]))
        defer { engine.close() }
        let batch = engine.makeWriteBatch()
        try batch.put("apple", "1")
        try batch.put("kiwi", "2")
        try batch.put(bytes("zucchini"), bytes("3"))
        XCTAssertEqual(try engine.contents(), [:], "nothing before write")
        try engine.write(batch)
        XCTAssertEqual(try engine.keys(), ["apple", "kiwi", "zucchini"].map(bytes))
    }

    /// A put refused for its TTL adds nothing to the batch, so the batch does
    /// not depend on its key's shard: that shard moving away before the write
    /// leaves the batch valid (the key was recorded as touched, and the write
    /// failed with "key 'kiwi' is not owned here", a key the batch did not hold).
    func testAPutRefusedForItsTTLDoesNotTieTheBatchToItsShard() async throws {
        let directory = TemporaryDirectory()
        let engine = try makeEngine(in: directory, shards: 3, partitioning: .range(splitPoints: [bytes("h"), bytes("p")]))
        let target = try makeEngine(in: directory, name: "target", shards: 0, partitioning: .range(splitPoints: [bytes("h"), bytes("p")]))
        defer { engine.close(); target.close() }
        let batch = engine.makeWriteBatch()
        try batch.put("apple", "1")
        assertShardDBError(.invalidTTL, try batch.put("kiwi", "2", ttl: .milliseconds(0)))
        XCTAssertEqual(batch.count, 1)
        _ = try await engine.migrate(MigrationRequest(shard: 1), to: target) { _ in }  // "kiwi"'s shard
        try engine.write(batch)
        XCTAssertEqual(try engine.keys(), [bytes("apple")])
    }

    func testMultiGetAcrossShardsKeepsOrderAndReportsMissingKeys() throws {
        let directory = TemporaryDirectory()
        let engine = try makeEngine(in: directory, shards: 4)
        defer { engine.close() }
        for i in 0..<30 where i % 3 != 0 { try engine.put("k\(i)", "v\(i)") }
        let keys = (0..<30).map { bytes("k\($0)") } + [bytes("k1"), bytes("missing"), bytes("k2")]
        XCTAssertEqual(Set(keys.compactMap { engine.recordedOwner(of: $0) }), [0, 1, 2, 3])
        let values = try engine.multiGet(keys)
        XCTAssertEqual(values.count, keys.count)
        for (index, value) in values.prefix(30).enumerated() {
            XCTAssertEqual(value, index % 3 == 0 ? nil : bytes("v\(index)"), "k\(index)")
        }
        XCTAssertEqual(Array(values.suffix(3)), [bytes("v1"), nil, bytes("v2")])
        XCTAssertEqual(try engine.multiGet([[UInt8]]()), [])
    }

    func testMultiGetUnderRangePartitioning() throws {
        let directory = TemporaryDirectory()
        let engine = try makeEngine(in: directory, shards: 3, partitioning: .range(splitPoints: [bytes("h"), bytes("p")]))
        defer { engine.close() }
        try engine.put("apple", "1")
        try engine.put("zebra", "3")
        XCTAssertEqual(try engine.multiGet(["zebra", "kiwi", "apple"].map(bytes)), [bytes("3"), nil, bytes("1")])
    }
}
