import Foundation
@testable import ShardDB
import Synchronization
import XCTest

/// A target's apply call still running when the migration is aborted (a call the
/// coordinator gave up on, whose handler goes on): the abort waits for it, so
/// nothing of it lands after the abort.
final class StaleCallTests: XCTestCase {
    override func tearDown() {
        FailurePoints.disarmAll()
        super.tearDown()
    }

    private func options() -> ShardEngineOptions {
        var options = ShardEngineOptions.testing()
        options.migrationIngestMinBytes = .max
        return options
    }

    /// Before: the abort cleared the staged range while the call, past its
    /// progress check, still had to write; the call then wrote its entries into
    /// the merge target's live shard (where the range is staged), and a later
    /// move of the range over them brought a deleted key back.
    func testAnAbortWaitsForAnApplyCallInFlight() async throws {
        let dir = TemporaryDirectory()
        let source = try ShardEngine.create(at: dir.path("source"), shards: 2, partitioning: .hash(keyGroups: 256), options: options())
        let target = try ShardEngine.create(at: dir.path("target"), shards: 0, partitioning: .hash(keyGroups: 256), options: options())
        defer { source.close(); target.close() }
        for i in 0..<400 { try source.put("key-\(i)", "v\(i)") }
        var whole = MigrationRequest(shard: 1)
        whole.bulkTransfer = .entries
        _ = try await source.migrate(whole, to: target)  // target shard 1: kg[128,256)

        // A merge of shard 0 into it, driven step by step to the catch-up.
        var merge = MigrationRequest(shard: 0, mergeInto: 1, id: "stale")
        merge.bulkTransfer = .entries
        let plan = try await MigrationCoordinator(source: source, target: target).makePlan(merge)
        let snapshot = try copyBulkByHand(plan, from: source, to: target)
        guard case .keyGroups(let moving) = plan.range else { return XCTFail("hash partitioning expected") }
        let key = try XCTUnwrap((0..<400).map { "key-\($0)" }.first { moving.contains(source.keyGroup(of: $0)!) })
        try source.put(key, "changed")
        let changes = try source.readChanges(plan, from: snapshot + 1, maxRecords: 100)
        XCTAssertEqual(changes.records.count, 1)

        // The abort starts while the apply call is between its checks and its write,
        // and is given half a second to finish there (it used to need a millisecond).
        let abortDone = DispatchGroup()  // (waited on twice: a group's wait does not consume)
        let abortResult = Mutex<Result<Void, Error>?>(nil)
        FailurePoints.arm("migration.target.applying-changes", action: .call(FailurePoints.Hook {
            abortDone.enter()
            Thread {
                let result = Result { try target.abortIncoming(plan) }
                abortResult.withLock { $0 = result }
                abortDone.leave()
            }.start()
            _ = abortDone.wait(timeout: .now() + 0.5)
        }))
        let applied = Result { try target.applyChanges(plan, changes) }
        FailurePoints.disarmAll()
        abortDone.wait()
        XCTAssertNoThrow(try abortResult.withLock { $0 }!.get())
        XCTAssertNoThrow(try applied.get(), "the call ran to its end first")
        try source.abortOutgoing(plan)

        XCTAssertEqual(try target.migrationEntry(plan.id)?.phase, .aborted)
        XCTAssertNil(try target.progressRecord(plan.id), "nothing recreated the progress after the abort")
        // The range moves for real, after the key is deleted: the key stays deleted.
        try source.delete(key)
        var again = MigrationRequest(shard: 0, mergeInto: 1)
        again.bulkTransfer = .entries
        _ = try await source.migrate(again, to: target)
        XCTAssertNil(try target.get(key), "a key deleted before the move came back")
        XCTAssertEqual(try target.contents().count, 399)
    }
}
