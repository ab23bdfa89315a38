import Foundation
@testable import ShardDB
import XCTest

/// What a migration endpoint returns to a coordinator in another process is
/// durable first (the coordinator never sends or reads it again), and a source
/// asked for changes past its own log refuses instead of answering "nothing yet".
/// `RemoteMigrationTests.testTargetLosingPowerDuringBulkStreamResumesWithoutAHole`
/// runs the same across processes with a power loss.
final class DurableAcknowledgementTests: XCTestCase {
    override func tearDown() {
        FailurePoints.disarmAll()
        super.tearDown()
    }

    /// A migration of shard 0 prepared on both sides, its bulk copy applied in
    /// small batches (through the log), and changes written after its snapshot.
    private func migrationInCatchUp(_ dir: TemporaryDirectory) async throws -> (ShardEngine, ShardEngine, MigrationPlan, UInt64) {
        var options = ShardEngineOptions.testing()
        options.migrationIngestMinBytes = .max
        let source = try ShardEngine.create(at: dir.path("source"), shards: 2, partitioning: .hash(keyGroups: 256), options: options)
        let target = try ShardEngine.create(at: dir.path("target"), shards: 0, partitioning: .hash(keyGroups: 256), options: options)
        for i in 0..<300 { try source.put("key-\(i)", "v\(i)") }
        var request = MigrationRequest(shard: 0, id: "durable")
        request.bulkTransfer = .entries
        let plan = try await MigrationCoordinator(source: source, target: target).makePlan(request)
        let snapshot = try copyBulkByHand(plan, from: source, to: target, chunkBytes: 2048, durable: true) {
            // Each chunk went through the log: synced before the call returned.
            XCTAssertGreaterThanOrEqual(target.walSyncedThrough.load(ordering: .acquiring), try target.latestSequenceNumber())
        }
        for i in 0..<300 { try source.put("key-\(i)", "w\(i)") }
        return (source, target, plan, snapshot)
    }

    func testDurableCallsSyncBeforeTheyReturnAndOthersDoNot() async throws {
        let dir = TemporaryDirectory()
        let (source, target, plan, snapshot) = try await migrationInCatchUp(dir)
        defer { source.close(); target.close() }

        // In one process nothing is synced for the caller.
        let syncedBefore = source.walSyncedThrough.load(ordering: .acquiring)
        let local = try source.readChanges(plan, from: snapshot + 1, maxRecords: 50)
        XCTAssertFalse(local.records.isEmpty)
        XCTAssertEqual(source.walSyncedThrough.load(ordering: .acquiring), syncedBefore)
        XCTAssertLessThan(syncedBefore, local.nextSequence - 1)

        // For another process: the records handed out are synced first; a failed sync fails the call.
        FailurePoints.arm("migration.wal-sync", action: .error)
        XCTAssertThrowsError(try source.readChanges(plan, from: snapshot + 1, maxRecords: 50, durable: true)) {
            XCTAssertEqual(($0 as? ShardDBError)?.code, .injectedFailure)
        }
        FailurePoints.arm("migration.wal-sync", action: .error)  // (a point fires once)
        XCTAssertThrowsError(try target.applyChanges(plan, local, durable: true)) {
            XCTAssertEqual(($0 as? ShardDBError)?.code, .injectedFailure)
        }
        FailurePoints.disarmAll()
        let remote = try source.readChanges(plan, from: snapshot + 1, maxRecords: 50, durable: true)
        XCTAssertEqual(remote.records.map(\.sequence), local.records.map(\.sequence))
        XCTAssertGreaterThanOrEqual(source.walSyncedThrough.load(ordering: .acquiring), remote.nextSequence - 1)

        try target.applyChanges(plan, remote, durable: true)
        XCTAssertGreaterThanOrEqual(target.walSyncedThrough.load(ordering: .acquiring), try target.latestSequenceNumber())
        // Nothing new to apply: no write, no sync.
        FailurePoints.arm("migration.wal-sync", action: .error)
        XCTAssertNoThrow(try target.applyChanges(plan, ChangeChunk(records: [], nextSequence: remote.nextSequence,
                                                                   latestSequence: remote.latestSequence), durable: true))
    }

    /// A source whose log ends before where the coordinator reads (it lost a tail
    /// it had handed out) refuses: an empty answer made the coordinator cut over
    /// at once, and the source's next writes reused the lost sequence numbers,
    /// which the coordinator, reading on from where it was, never read.
    func testChangesAskedForPastTheLogAreRefused() async throws {
        let dir = TemporaryDirectory()
        let (source, target, plan, _) = try await migrationInCatchUp(dir)
        defer { source.close(); target.close() }
        let latest = try source.latestSequenceNumber()
        let atEnd = try source.readChanges(plan, from: latest + 1, maxRecords: 10)
        XCTAssertEqual(atEnd.records, [])
        XCTAssertEqual(atEnd.nextSequence, latest + 1)
        XCTAssertThrowsError(try source.readChanges(plan, from: latest + 2, maxRecords: 10)) { error in
            XCTAssertEqual((error as? ShardDBError)?.code, .changelogUnavailable, "\(error)")
            XCTAssertTrue((error as? ShardDBError)?.message.contains("past this instance's log") == true, "\(error)")
        }
    }
}
