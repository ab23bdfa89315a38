import Foundation
@testable import ShardDB
import XCTest

/// Every migration step names its migration by the plan the caller sends. A plan
/// under a journaled id that is not the journaled plan (a replayed stream of an
/// older migration that reused the id, or a peer's bug) is refused by every step
/// on both sides, before it reads, writes or fences anything, and the genuine
/// migration then finishes as if nothing had happened.
final class ForgedPlanTests: XCTestCase {
    func testEveryStepRefusesAPlanThatIsNotTheJournaledOne() async throws {
        let dir = TemporaryDirectory()
        let (source, target, plan) = try await preparedMigration(in: dir, keys: 200)
        defer { source.close(); target.close() }
        let snapshot = try source.openBulk(plan)
        _ = try target.prepareIncoming(plan, snapshotSequence: snapshot)

        // The same id, naming the source's other shard (whose keys the forged steps would copy or fence).
        var forged = plan
        let other = try XCTUnwrap(source.shardDescriptors.first { $0.id == 1 })
        forged.sourceShard = 1
        forged.range = other.range
        let before = try source.contents()

        assertShardDBError(.migrationConflict, try source.openBulk(forged))
        assertShardDBError(.migrationConflict, try source.readBulk(forged, after: nil, maxBytes: 1 << 20))
        assertShardDBError(.migrationConflict, try source.exportTableFiles(forged))
        assertShardDBError(.migrationConflict, try source.readTableFile(forged, name: "000001.sst", offset: 0, maxBytes: 4096))
        assertShardDBError(.migrationConflict, try source.readChanges(forged, from: snapshot + 1, maxRecords: 10))
        assertShardDBError(.migrationConflict, try source.fenceOutgoing(forged))
        assertShardDBError(.migrationConflict, try source.commitOutgoing(forged))
        assertShardDBError(.migrationConflict, try source.abortOutgoing(forged))
        assertShardDBError(.migrationConflict, try source.cleanupOutgoing(forged))
        // Nothing was fenced: shard 1's keys still take writes.
        let shardOneKey = try XCTUnwrap((0..<200).map { "key-\($0)" }.first { source.recordedOwner(of: bytes($0)) == 1 })
        try source.put(shardOneKey, "written after the forged steps")

        let genuineChunk = try source.readBulk(plan, after: nil, maxBytes: 1 << 30)
        XCTAssertTrue(genuineChunk.done)
        assertShardDBError(.migrationConflict, try target.applyBulk(forged, genuineChunk))
        assertShardDBError(.migrationConflict, try target.writeTableFile(forged, name: "000001.sst", offset: 0, Data([1])))
        assertShardDBError(.migrationConflict, try target.importTableFiles(forged, []))
        assertShardDBError(.migrationConflict, try target.abortIncoming(forged))
        assertShardDBError(.migrationConflict, try target.commitIncoming(forged, finalSequence: snapshot))
        // The genuine migration goes on as prepared.
        try target.applyBulk(plan, genuineChunk)
        let empty = ChangeChunk(records: [], nextSequence: snapshot + 1, latestSequence: snapshot)
        assertShardDBError(.migrationConflict, try target.applyChanges(forged, empty))
        let final = try source.fenceOutgoing(plan)
        try target.catchUpAndCommit(plan, from: source, next: snapshot + 1, final: final)
        try source.commitOutgoing(plan)
        try source.cleanupOutgoing(plan)

        var expected = before
        expected[bytes(shardOneKey)] = bytes("written after the forged steps")
        var merged = try source.contents()
        for (key, value) in try target.contents() { XCTAssertNil(merged.updateValue(value, forKey: key)) }
        XCTAssertEqual(merged, expected)
        XCTAssertEqual(try target.migrationEntry("m")?.phase, .committed)
    }

    /// A plan whose range or target shard does not fit the target's partitioning
    /// (a hostile or buggy peer) is refused before anything is recorded: committed,
    /// key groups past the instance's trapped building the routing table, and a key
    /// range on a hash instance or a negative id failed every later open.
    func testAPlanThatDoesNotFitTheTargetIsRefused() throws {
        let dir = TemporaryDirectory()
        let target = try ShardEngine.create(at: dir.path("target"), shards: 1, partitioning: .hash(keyGroups: 4096), options: .testing())
        defer { target.close() }
        func plan(_ range: ShardRange, shard: Int = 7) -> MigrationPlan {
            MigrationPlan(id: "bad", sourceInstance: "s", targetInstance: target.instanceID, sourceLocation: "a", targetLocation: target.path,
                          sourceShard: 0, range: range, shape: .newShard, targetShard: shard)
        }
        for bad in [plan(.keyGroups(KeyGroupRange(5000, 6000))), plan(.keyGroups(KeyGroupRange(10, 10))),
                    plan(.keyGroups(KeyGroupRange(-1, 10))), plan(.keys(lower: [1], upper: [2])),
                    plan(.keyGroups(KeyGroupRange(4000, 4096)), shard: -1)] {
            assertShardDBError(.invalidArgument, try target.prepareIncoming(bad, snapshotSequence: 1))
        }
        XCTAssertEqual(try target.migrationJournal().count, 0, "nothing recorded")
        let ranged = try ShardEngine.create(at: dir.path("ranged"), shards: 1, partitioning: .range(splitPoints: []), options: .testing())
        defer { ranged.close() }
        let inverted = MigrationPlan(id: "inv", sourceInstance: "s", targetInstance: ranged.instanceID, sourceLocation: "a",
                                     targetLocation: ranged.path, sourceShard: 0, range: .keys(lower: [9], upper: [3]),
                                     shape: .newShard, targetShard: 5)
        assertShardDBError(.invalidArgument, try ranged.prepareIncoming(inverted, snapshotSequence: 1))
        var hashed = inverted
        hashed.range = .keyGroups(KeyGroupRange(0, 1))
        assertShardDBError(.invalidArgument, try ranged.prepareIncoming(hashed, snapshotSequence: 1))
    }
}
