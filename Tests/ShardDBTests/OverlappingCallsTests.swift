import Foundation
@testable import ShardDB
import XCTest

/// A transport retries a call whose answer it did not get, and the first call
/// may still be running on the other side: calls of one migration that overlap
/// run one after the other, so neither skips nor undoes what the other did.
final class OverlappingCallsTests: XCTestCase {
    override func tearDown() {
        FailurePoints.disarmAll()
        super.tearDown()
    }

    /// Arms failure point `point` so that, when this test's call reaches it, `call`
    /// starts on another thread (the overlapping call); this call goes on a moment
    /// later without waiting for it. The other call's result is in what is returned.
    private func overlapping<Value>(at point: StaticString, _ call: @escaping @Sendable () throws -> Value) -> Awaited<Value> {
        let result = Awaited<Value>()
        let started = DispatchSemaphore(value: 0)
        FailurePoints.arm("\(point)", action: .call(.init {
            FailurePoints.disarmAll()
            Thread.detachNewThread {
                started.signal()
                result.set(Result { try call() })
            }
            started.wait()
            usleep(20_000)  // (only widens the window: correctness does not depend on it)
        }))
        return result
    }

    /// A source and a target with shard 0's bulk copied, and writes to it after the snapshot.
    private func prepared(_ dir: TemporaryDirectory) async throws -> (ShardEngine, ShardEngine, MigrationPlan, UInt64) {
        let source = try ShardEngine.create(at: dir.path("source"), shards: 1, options: .testing())
        let target = try ShardEngine.create(at: dir.path("target"), shards: 0, options: .testing())
        for i in 0..<100 { try source.put("key-\(i)", "bulk-\(i)") }
        let plan = try await MigrationCoordinator(source: source, target: target).makePlan(MigrationRequest(shard: 0, id: "overlap"))
        let snapshot = try copyBulkByHand(plan, from: source, to: target)
        return (source, target, plan, snapshot)
    }

    /// A second read from the same position, started while the first is reading,
    /// returns the same records (it used to share the first's reader and skip them).
    func testAnOverlappingChangelogReadReturnsTheSameRecords() async throws {
        let dir = TemporaryDirectory()
        let (source, target, plan, snapshot) = try await prepared(dir)
        defer { source.close(); target.close() }
        for i in 0..<50 { try source.put("key-\(i)", "change-\(i)") }
        let second = overlapping(at: "migration.source.reading-changes") {
            try source.readChanges(plan, from: snapshot + 1, maxRecords: 20)
        }
        let first = try source.readChanges(plan, from: snapshot + 1, maxRecords: 20)
        let other = try second.wait().get()
        XCTAssertEqual(first.records.count, 20)
        XCTAssertEqual(other.records.map(\.sequence), first.records.map(\.sequence))
        XCTAssertEqual(other.nextSequence, first.nextSequence)
    }

    /// A stale apply of an older chunk that overlaps the apply of a newer one does
    /// not write its older values over the newer ones (a key deleted by the newer
    /// chunk stays deleted).
    func testAStaleApplyDoesNotUndoANewerOne() async throws {
        let dir = TemporaryDirectory()
        let (source, target, plan, snapshot) = try await prepared(dir)
        defer { source.close(); target.close() }
        try source.put("key-1", "older")
        let older = try source.readChanges(plan, from: snapshot + 1, maxRecords: 100)
        try source.delete("key-1")
        let newer = try source.readChanges(plan, from: older.nextSequence, maxRecords: 100)
        XCTAssertEqual(newer.records.count, 1)
        // The first apply of the older chunk stalls after reading the progress; meanwhile
        // its retry and then the newer chunk are applied (another thread). Run at once, the
        // stalled call would then write "older" over the delete and move the progress back.
        let newerApplied = overlapping(at: "migration.target.applying-changes") {
            try target.applyChanges(plan, older)
            try target.applyChanges(plan, newer)
            return newer
        }
        try target.applyChanges(plan, older)
        _ = try newerApplied.wait().get()
        let state = try target.prepareIncoming(plan, snapshotSequence: snapshot)
        XCTAssertEqual(state.appliedThrough, newer.nextSequence - 1)
        let final = try source.fenceOutgoing(plan)
        XCTAssertEqual(final, newer.nextSequence - 1)
        try target.commitIncoming(plan, finalSequence: final)
        XCTAssertNil(try target.get("key-1"), "the newer delete stands")
        XCTAssertEqual(try target.getString("key-2"), "bulk-2")
    }

    /// An abort (`--resolve` from another process) that arrives while the source
    /// fences waits for the fence, then lifts it: the range is writable again and
    /// the journal says aborted (it could be journaled over as fenced, or leave
    /// the fence in place with nothing to lift it).
    func testAnAbortOverlappingTheFenceLeavesTheRangeWritable() async throws {
        let dir = TemporaryDirectory()
        let (source, target, plan, _) = try await prepared(dir)
        defer { source.close(); target.close() }
        let aborted = overlapping(at: "migration.source.before-fence") {
            try source.abortOutgoing(plan)
            return true
        }
        _ = try? source.fenceOutgoing(plan)
        XCTAssertTrue(try aborted.wait().get())
        XCTAssertEqual(try source.migrationEntry(plan.id)?.phase, .aborted)
        try source.put("key-1", "after the abort")
        XCTAssertEqual(try source.getString("key-1"), "after the abort")
    }
}

extension OverlappingCallsTests {
    /// Serialized calls of one migration exclude each other, and a call lock lives
    /// only while a call holds or waits for it: overlapping calls, and a late call
    /// that passed its journal check just before the commit forgot the migration,
    /// leave none behind (such a late call used to leave one for good).
    func testCallLocksExcludeAndLeaveNothingBehind() async throws {
        let dir = TemporaryDirectory()
        let (source, target, plan, snapshot) = try await prepared(dir)
        defer { source.close(); target.close() }
        for i in 0..<30 { try source.put("key-\(i)", "change-\(i)") }
        let second = overlapping(at: "migration.source.reading-changes") {
            try source.readChanges(plan, from: snapshot + 1, maxRecords: 10)
        }
        let chunk = try source.readChanges(plan, from: snapshot + 1, maxRecords: 10)
        _ = try second.wait().get()
        try target.applyChanges(plan, chunk)
        XCTAssertEqual(source.migrationRuntime.callLockCount, 0)
        XCTAssertEqual(target.migrationRuntime.callLockCount, 0)

        let rest = try source.readChanges(plan, from: chunk.nextSequence, maxRecords: 1000)
        try target.applyChanges(plan, rest)
        let final = try source.fenceOutgoing(plan)
        XCTAssertEqual(final, rest.nextSequence - 1)
        try target.commitIncoming(plan, finalSequence: final)
        XCTAssertEqual(try target.getString("key-29"), "change-29")
        // The late call: past its check, it reaches the call lock after the commit.
        target.migrationRuntime.serialized(plan.id) {}
        XCTAssertEqual(target.migrationRuntime.callLockCount, 0)

        // Exclusion: a second caller waits (it holds its place in the table) until the first leaves.
        let runtime = MigrationRuntime()
        let inside = DispatchSemaphore(value: 0), release = DispatchSemaphore(value: 0)
        let secondEntered = Awaited<Bool>()
        Thread.detachNewThread {
            runtime.serialized("m") {
                inside.signal()
                release.wait()
            }
        }
        inside.wait()
        let firstLeft = Awaited<Bool>()
        Thread.detachNewThread {
            runtime.serialized("m") { secondEntered.set(.success(firstLeft.isSet)) }
        }
        // Once the second caller has taken its place, it is blocked on the first's lock.
        let deadline = Date().addingTimeInterval(60)
        while runtime.callLockUsers("m") < 2 && Date() < deadline { usleep(1000) }
        XCTAssertEqual(runtime.callLockUsers("m"), 2)
        firstLeft.set(.success(true))
        release.signal()
        XCTAssertEqual(try secondEntered.wait().get(), true, "the second call ran after the first left")
        while runtime.callLockCount > 0 && Date() < deadline { usleep(1000) }
        XCTAssertEqual(runtime.callLockCount, 0)
    }
}

/// A result another thread leaves for the test.
private final class Awaited<Value>: @unchecked Sendable {
    private let condition = NSCondition()
    private var stored: Result<Value, Error>?

    func set(_ result: Result<Value, Error>) {
        condition.lock()
        stored = result
        condition.signal()
        condition.unlock()
    }

    /// The result; a failure after two minutes without one (a call that hangs fails the test, not the run).
    func wait() -> Result<Value, Error> {
        condition.lock()
        defer { condition.unlock() }
        let deadline = Date().addingTimeInterval(120)
        while stored == nil {
            if !condition.wait(until: deadline) { return .failure(TimedOut()) }
        }
        return stored!
    }

    /// Whether a result was left (without waiting).
    var isSet: Bool {
        condition.lock()
        defer { condition.unlock() }
        return stored != nil
    }

    struct TimedOut: Error {}
}
