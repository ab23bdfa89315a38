import Foundation
import ShardDB
import Synchronization
import XCTest

/// Bringing one shard of a checkpoint back into the instance it was taken of:
/// restore with a new instance id, then migrate the shard from the copy
/// (docs/CHECKPOINTS.md, "Restoring one shard into a running instance").
final class RestoreOneShardTests: XCTestCase {
    override func tearDown() {
        FailurePoints.disarmAll()
        super.tearDown()
    }

    /// Keys of the instance in shard `shard`'s key groups, and the others.
    private func split(_ keys: [String], of engine: ShardEngine, shard: Int) throws -> (inShard: [String], others: [String]) {
        let descriptor = try XCTUnwrap(engine.shardDescriptors.first { $0.id == shard })
        guard case .keyGroups(let groups) = descriptor.range else { throw XCTSkip("hash partitioning expected") }
        let inShard = keys.filter { groups.contains(engine.keyGroup(of: $0)!) }
        return (inShard, keys.filter { !inShard.contains($0) })
    }

    func testAShardComesBackFromACheckpointOfTheSameInstance() async throws {
        let directory = TemporaryDirectory()
        let live = try makeEngine(in: directory, name: "live", shards: 2)
        defer { live.close() }
        let keys = (0..<400).map { "key-\($0)" }
        try live.write { batch in for key in keys { try batch.put(key, "saved-\(key)") } }
        let info = try live.checkpoint(to: directory.path("store"))
        let (lost, kept) = try split(keys, of: live, shard: 1)
        XCTAssertFalse(lost.isEmpty)
        XCTAssertFalse(kept.isEmpty)
        // After the checkpoint: shard 1 loses data by mistake; shard 0 moves on.
        try live.write { batch in
            for key in lost.prefix(100) { try batch.delete(key) }
            for key in lost.dropFirst(100) { try batch.put(key, "broken") }
            for key in kept { try batch.put(key, "newer-\(key)") }
        }
        let store = try CheckpointStore.open(at: directory.path("store"))
        defer { store.close() }

        // With the checkpoint's id, the copy cannot be the live instance's peer.
        let sameID = try store.restore(id: info.id, to: directory.path("same-id"))
        XCTAssertEqual(sameID.restoredInstanceID, live.instanceID)
        let twin = try ShardEngine.open(at: directory.path("same-id"), options: .testing())
        var refused = MigrationRequest(shard: 1)
        refused.onConflict = .sourceWins
        do {
            _ = try await twin.migrate(refused, to: live)
            XCTFail("a migration between two instances with one id was accepted")
        } catch let error as ShardDBError {
            XCTAssertEqual(error.code, .migrationConflict)
            XCTAssertTrue(error.message.contains("same instance"), error.message)
        }
        twin.close()

        // With a new id it can: shard 1 comes back, keys of the checkpoint winning.
        let restored = try store.restore(id: info.id, to: directory.path("copy"), newInstanceID: true)
        let newID = try XCTUnwrap(restored.restoredInstanceID)
        XCTAssertNotEqual(newID, live.instanceID)
        XCTAssertEqual(restored.instanceID, live.instanceID, "the checkpoint's own id is unchanged")
        let copy = try ShardEngine.open(at: directory.path("copy"), options: .testing())
        defer { copy.close() }
        XCTAssertEqual(copy.instanceID, newID)
        XCTAssertEqual(copy.shardDescriptors.map(\.range), live.shardDescriptors.map(\.range))
        for key in keys { XCTAssertEqual(text(try copy.get(key)), "saved-\(key)") }

        var request = MigrationRequest(shard: 1)
        request.onConflict = .sourceWins
        let report = try await copy.migrate(request, to: live)
        XCTAssertEqual(report.targetShard, 1)
        for key in lost { XCTAssertEqual(text(try live.get(key)), "saved-\(key)", key) }
        for key in kept { XCTAssertEqual(text(try live.get(key)), "newer-\(key)", key) }
        // The live instance's later checkpoints still go to its own store.
        store.close()
        XCTAssertEqual(try live.checkpoint(to: directory.path("store")).instanceID, live.instanceID)
        XCTAssertThrowsError(try copy.get(lost[0])) { XCTAssertEqual(($0 as? ShardDBError)?.code, .keyNotOwned) }
        XCTAssertTrue(try live.verifyIntegrity().isIntact)
    }

    /// A checkpoint taken while the instance was a migration's target holds that
    /// migration, unfinished, under the old id: a new id is refused and nothing is restored.
    func testANewIdIsRefusedForACheckpointHoldingAnUnfinishedMigration() async throws {
        let directory = TemporaryDirectory()
        let source = try makeEngine(in: directory, name: "source", shards: 2)
        let target = try makeEngine(in: directory, name: "target", shards: 0)
        defer { source.close(); target.close() }
        try source.write { batch in for i in 0..<300 { try batch.put("key-\(i)", "v\(i)") } }
        let store = directory.path("store")
        let taken = Mutex<Result<CheckpointInfo, Error>?>(nil)
        FailurePoints.arm("migration.target.bulk-chunk", action: .call(FailurePoints.Hook {
            guard taken.withLock({ $0 == nil }) else { return }
            let result = Result { try target.checkpoint(to: store) }
            taken.withLock { $0 = result }
        }))
        var request = MigrationRequest(shard: 1)
        request.bulkTransfer = .entries  // (a whole shard would move as table files, without chunks)
        _ = try await source.migrate(request, to: target)
        FailurePoints.disarmAll()
        let info = try XCTUnwrap(taken.withLock { $0 }).get()

        let checkpoints = try CheckpointStore.open(at: store)
        defer { checkpoints.close() }
        let refused = assertShardDBError(.migrationInProgress,
                                         try checkpoints.restore(id: info.id, to: directory.path("copy"), newInstanceID: true))
        XCTAssertTrue(refused?.message.contains("unfinished migration") == true, refused?.message ?? "")
        XCTAssertFalse(FileManager.default.fileExists(atPath: directory.path("copy")))
        XCTAssertEqual(try FileManager.default.contentsOfDirectory(atPath: directory.url.path).filter { $0.contains("restoring") }, [])
        // Without a new id the same checkpoint restores, with the migration in its journal.
        let plain = try checkpoints.restore(id: info.id, to: directory.path("copy"))
        XCTAssertEqual(plain.restoredInstanceID, target.instanceID)
    }

    /// A failure while the new id is written leaves no restored directory.
    func testAFailedIdWriteLeavesNothing() throws {
        let directory = TemporaryDirectory()
        let live = try makeEngine(in: directory, name: "live", shards: 2)
        defer { live.close() }
        try live.put("k", "v")
        let info = try live.checkpoint(to: directory.path("store"))
        let checkpoints = try CheckpointStore.open(at: directory.path("store"))
        defer { checkpoints.close() }
        FailurePoints.arm("checkpoint.restore.new-instance-id", action: .error)
        assertShardDBError(.injectedFailure, try checkpoints.restore(id: info.id, to: directory.path("copy"), newInstanceID: true))
        FailurePoints.disarmAll()
        XCTAssertFalse(FileManager.default.fileExists(atPath: directory.path("copy")))
        let restored = try checkpoints.restore(id: info.id, to: directory.path("copy"), newInstanceID: true)
        XCTAssertNotEqual(restored.restoredInstanceID, live.instanceID)
    }
}
