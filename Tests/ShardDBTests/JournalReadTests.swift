import Foundation
@testable import ShardDB
import XCTest

/// Journal entries are decoded once per stored form: every bulk chunk reads its
/// migration's entry, and a reader must still see each change, and corruption.
final class JournalReadTests: XCTestCase {
    func testAJournalEntryReadAgainFollowsWhatIsStored() async throws {
        let dir = TemporaryDirectory()
        let source = try ShardEngine.create(at: dir.path("source"), shards: 2, options: .testing())
        let target = try ShardEngine.create(at: dir.path("target"), shards: 0, options: .testing())
        defer { source.close(); target.close() }
        for i in 0..<50 { try source.put("key-\(i)", "value-\(i)") }
        let plan = try await MigrationCoordinator(source: source, target: target).makePlan(MigrationRequest(shard: 0, id: "m"))
        try source.prepareOutgoing(plan)
        XCTAssertEqual(try source.migrationEntry("m")?.phase, .prepared)
        XCTAssertEqual(try source.migrationEntry("m")?.phase, .prepared)  // (the remembered decoding)

        // A step that rewrites the entry is seen by the next read.
        let snapshot = try source.openBulk(plan)
        let entry = try XCTUnwrap(try source.migrationEntry("m"))
        XCTAssertEqual(entry.phase, .bulkCopy)
        XCTAssertEqual(entry.snapshotSequence, snapshot)

        // Bytes changed under the engine (a damaged record) are decoded, and refused.
        let key = MigrationKeys.journal("m")
        let stored = try XCTUnwrap(try source.database.get(key, in: source.metadata))
        try source.database.put(key, Array(stored.dropLast(3)), in: source.metadata)
        assertShardDBError(.corruptedMetadata, try source.migrationEntry("m"))
        assertShardDBError(.corruptedMetadata, try source.readBulk(plan, after: nil, maxBytes: 1 << 20))

        // Restored, the entry reads as before and the bulk copy goes on.
        try source.database.put(key, stored, in: source.metadata)
        XCTAssertEqual(try source.migrationEntry("m")?.phase, .bulkCopy)
        XCTAssertFalse(try source.readBulk(plan, after: nil, maxBytes: 1 << 20).isEmpty)
    }
}
