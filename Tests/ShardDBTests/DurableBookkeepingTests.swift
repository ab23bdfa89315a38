import Foundation
@testable import ShardDB
import XCTest

/// Journal and progress records are written unsynced and then synced outside
/// RocksDB's write queue (so other writers do not wait for the fsync); the gate
/// keeps them from every reader until the sync has returned.
final class DurableBookkeepingTests: XCTestCase {
    override func tearDown() {
        FailurePoints.disarmAll()
        super.tearDown()
    }

    /// A read of the journal that comes while a journal entry is written but not
    /// yet synced waits for the sync, then sees the entry.
    func testAJournalReadWaitsForTheSync() async throws {
        let dir = TemporaryDirectory()
        let source = try ShardEngine.create(at: dir.path("source"), shards: 1, options: .testing())
        let target = try ShardEngine.create(at: dir.path("target"), shards: 0, options: .testing())
        defer { source.close(); target.close() }
        let plan = try await MigrationCoordinator(source: source, target: target).makePlan(MigrationRequest(shard: 0, id: "gate"))

        let readerStarted = DispatchSemaphore(value: 0), readerDone = DispatchSemaphore(value: 0)
        let seen = Locked<MigrationJournalEntry.Phase??>(nil)
        let finishedDuringSync = Locked<Bool?>(nil)
        FailurePoints.arm("bookkeeping.sync", action: .call(.init {
            FailurePoints.disarmAll()
            Thread.detachNewThread {
                readerStarted.signal()
                let entry = try? source.migrationEntry("gate")
                seen.set(.some(entry?.phase))
                readerDone.signal()
            }
            readerStarted.wait()
            // (Only widens the window: a reader not held by the gate would read within it.)
            let early = readerDone.wait(timeout: .now() + .milliseconds(100)) == .success
            if early { readerDone.signal() }
            finishedDuringSync.set(early)
        }))
        try source.prepareOutgoing(plan)
        XCTAssertEqual(readerDone.wait(timeout: .now() + 60), .success)
        XCTAssertEqual(finishedDuringSync.value, false, "the read did not wait for the sync")
        XCTAssertEqual(seen.value, .some(.prepared), "after the sync, the read sees the entry")
    }

    /// After a sync failed, the record it wrote may not be on disk: every read of
    /// the journal fails (none acts on it) until the instance is reopened, whose
    /// recovery reads the log.
    func testAfterAFailedSyncJournalReadsFailUntilReopened() async throws {
        let dir = TemporaryDirectory()
        let path = dir.path("source")
        let source = try ShardEngine.create(at: path, shards: 1, options: .testing())
        let target = try ShardEngine.create(at: dir.path("target"), shards: 0, options: .testing())
        defer { target.close() }
        let plan = try await MigrationCoordinator(source: source, target: target).makePlan(MigrationRequest(shard: 0, id: "unsynced"))
        FailurePoints.arm("bookkeeping.sync", action: .error)
        XCTAssertThrowsError(try source.prepareOutgoing(plan)) { error in
            XCTAssertEqual((error as? ShardDBError)?.code, .injectedFailure)
        }
        for (name, read) in [("journal", { _ = try source.migrationJournal() }),
                             ("entry", { _ = try source.migrationEntry("unsynced") })] as [(String, () throws -> Void)] {
            XCTAssertThrowsError(try read(), name) { error in
                XCTAssertEqual((error as? ShardDBError)?.code, .storage, name)
                XCTAssertTrue((error as? ShardDBError)?.message.contains("reopen the instance") == true, "\(error)")
            }
        }
        try source.put("key", "value")  // (the application's own writes go on)
        source.close()

        let reopened = try ShardEngine.open(at: path, options: .testing())
        defer { reopened.close() }
        // The write reached the log before the sync failed: recovery finds it.
        XCTAssertEqual(try reopened.migrationEntry("unsynced")?.phase, .prepared)
        XCTAssertEqual(try reopened.getString("key"), "value")
    }
}

/// A value threads hand over under a lock.
private final class Locked<Value>: @unchecked Sendable {
    private let lock = NSLock()
    private var stored: Value
    init(_ value: Value) { stored = value }
    func set(_ value: Value) { lock.withLock { stored = value } }
    var value: Value { lock.withLock { stored } }
}
