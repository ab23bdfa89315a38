import ShardDB
import XCTest

/// The README's embedding example, compiled and run so it cannot rot.
/// Keep the body in step with README.md ("Embedding").
final class EmbeddingExampleTests: XCTestCase {
    func testReadmeExample() async throws {
        let dir = TemporaryDirectory()
        let statePath = dir.path("state")

        // Create an instance with 4 shards (hash partitioning over 4096 key groups).
        let engine = try ShardEngine.create(at: statePath, shards: 4)

        try engine.put("user:42", "alice")
        try engine.put("session:9", "token", ttl: .seconds(3600))     // expires in an hour
        XCTAssertEqual(try engine.getString("user:42") ?? "missing", "alice")

        // Zero-copy read: the buffer is RocksDB's, valid inside the closure only.
        let length = try engine.withValue(forKey: Array("user:42".utf8)) { $0.count }
        XCTAssertEqual(length, 5)

        // An atomic batch across shards.
        try engine.write { batch in
            try batch.put("account:a", "90")
            try batch.put("account:b", "110")
        }

        var seen: [String] = []
        try engine.scan(ScanRequest(prefix: Array("user:".utf8), limit: 100)) { entry in
            seen.append(String(decoding: entry.key, as: UTF8.self))
            return true   // false stops
        }
        XCTAssertEqual(seen, ["user:42"])

        // Live migration to another instance.
        let target = try ShardEngine.create(at: dir.path("b"), shards: 0, partitioning: engine.partitioning)
        let report = try await engine.migrate(MigrationRequest(shard: 2), to: target) { _ in }
        XCTAssertGreaterThanOrEqual(report.pauseMilliseconds, 0)
        target.close()
        engine.close()

        // Later: open it again.
        let again = try ShardEngine.open(at: statePath)
        defer { again.close() }
        XCTAssertEqual(again.shardDescriptors.filter { $0.state == .active }.count, 3)
        XCTAssertEqual(again.shardDescriptors.first { $0.id == 2 }?.state, .moved(to: dir.path("b")))
        // A shard given away is named as such, with its new owner.
        let moved = assertShardDBError(.shardNotFound, try again.scan(ScanRequest(shard: 2)) { _ in true })
        XCTAssertEqual(moved?.owner, dir.path("b"))
        XCTAssertTrue(moved?.message.contains("was moved to") ?? false, moved?.message ?? "")
    }
}
