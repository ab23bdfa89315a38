import Foundation
@testable import ShardDB
import XCTest

/// Journal entries are decoded once per stored form: every bulk chunk reads its
/// migration's entry, and a reader must still see each change, and corruption.
final class JournalReadTests: XCTestCase {
    func testAJournalEntryReadAgainFollowsWhatIsStored() async throws {
        let dir = TemporaryDirectory()
        let (source, target, plan) = try await preparedMigration(in: dir, keys: 50)
        defer { source.close(); target.close() }
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
