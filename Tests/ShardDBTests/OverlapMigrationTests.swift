import Foundation
import RocksDB
@testable import ShardDB
import XCTest

/// Merging a range into a target shard that already owns part of it, under each
/// conflict policy; bulk copy by table-file ingestion; resuming after failures.
final class OverlapMigrationTests: XCTestCase {
    override func tearDown() {
        FailurePoints.disarmAll()
        super.tearDown()
    }

    /// Two instances with the same partitioning and shard map (2 shards over 256 key
    /// groups), so each owns what the other owns; both stamp write times.
    private func makeTwins(_ dir: TemporaryDirectory, clock: ManualClock,
                           configure: (inout ShardEngineOptions) -> Void = { _ in }) throws -> (ShardEngine, ShardEngine) {
        var options = ShardEngineOptions.testing(clock: clock)
        options.stampWriteTime = true
        configure(&options)
        let source = try ShardEngine.create(at: dir.path("source"), shards: 2, partitioning: .hash(keyGroups: 256), options: options)
        let target = try ShardEngine.create(at: dir.path("target"), shards: 2, partitioning: .hash(keyGroups: 256), options: options)
        return (source, target)
    }

    /// Keys of shard 1 (kg[128,256)) with a prefix.
    private func shardOneKeys(_ engine: ShardEngine, _ prefix: String, count: Int) -> [[UInt8]] {
        var keys: [[UInt8]] = []
        var i = 0
        while keys.count < count {
            let key = bytes("\(prefix)\(i)")
            if engine.recordedOwner(of: key) == 1 { keys.append(key) }
            i += 1
        }
        return keys
    }

    /// What the fixture wrote, for the expectations of each policy.
    struct Fixture {
        var sourceNewer: [[UInt8]] = []   // both sides; the source wrote last
        var targetNewer: [[UInt8]] = []   // both sides; the target wrote last
        var sourceOnly: [[UInt8]] = []
        var targetOnly: [[UInt8]] = []
        var expiredOnTarget: [[UInt8]] = []  // both sides; the target's value expired
        var deletedOnSourceDuringCatchUp: [[UInt8]] = []  // both sides; the source deletes it mid-migration
        var rewrittenOnSourceDuringCatchUp: [[UInt8]] = []  // both sides; the source writes it again mid-migration
    }

    private func writeFixture(source: ShardEngine, target: ShardEngine, clock: ManualClock) throws -> Fixture {
        var f = Fixture()
        f.sourceNewer = shardOneKeys(source, "sn", count: 20)
        f.targetNewer = shardOneKeys(source, "tn", count: 20)
        f.sourceOnly = shardOneKeys(source, "so", count: 20)
        f.targetOnly = shardOneKeys(source, "to", count: 20)
        f.expiredOnTarget = shardOneKeys(source, "ex", count: 5)
        f.deletedOnSourceDuringCatchUp = shardOneKeys(source, "dc", count: 5)
        f.rewrittenOnSourceDuringCatchUp = shardOneKeys(source, "rc", count: 5)
        for key in f.targetNewer { try source.put(key, bytes("source")) }
        for key in f.expiredOnTarget { try target.put(key, bytes("target"), ttl: .seconds(1)) }
        clock.advance(milliseconds: 10_000)
        for key in f.sourceNewer + f.sourceOnly + f.expiredOnTarget + f.deletedOnSourceDuringCatchUp { try source.put(key, bytes("source")) }
        for key in f.targetOnly + f.rewrittenOnSourceDuringCatchUp { try target.put(key, bytes("target")) }
        clock.advance(milliseconds: 10_000)
        for key in f.targetNewer + f.deletedOnSourceDuringCatchUp { try target.put(key, bytes("target")) }
        for key in f.rewrittenOnSourceDuringCatchUp { try source.put(key, bytes("source")) }
        for key in f.sourceNewer { try target.put(key, bytes("target-old")) }
        clock.advance(milliseconds: 10_000)
        for key in f.sourceNewer { try source.put(key, bytes("source")) }
        return f
    }

    /// Writes on the source while the migration catches up (once).
    private func catchUpWriter(_ source: ShardEngine, _ f: Fixture, _ clock: ManualClock) -> @Sendable (MigrationProgress) -> Void {
        let once = Once()
        return { progress in
            guard progress.phase == .catchUp, once.first() else { return }
            clock.advance(milliseconds: 10_000)
            for key in f.deletedOnSourceDuringCatchUp { try! source.delete(key) }
            for key in f.rewrittenOnSourceDuringCatchUp { try! source.put(key, bytes("source-late")) }
        }
    }

    func testEachPolicySettlesOverlappingKeysWithWritesDuringCatchUp() async throws {
        for policy in [MigrationConflictPolicy.sourceWins, .targetWins, .lastWriteWins] {
            let dir = TemporaryDirectory()
            let clock = ManualClock()
            let (source, target) = try makeTwins(dir, clock: clock)
            defer { source.close(); target.close() }
            let f = try writeFixture(source: source, target: target, clock: clock)
            var request = MigrationRequest(shard: 1)
            request.onConflict = policy
            let report = try await source.migrate(request, to: target, progress: catchUpWriter(source, f, clock))
            XCTAssertEqual(report.targetShard, 1, "\(policy)")
            XCTAssertGreaterThan(report.changesApplied, 0, "\(policy)")
            // The target's shard 1 owns the range as before; the source gave it away.
            XCTAssertEqual(target.shardDescriptors.filter { $0.state == .active }.map(\.range),
                           [.keyGroups(KeyGroupRange(0, 128)), .keyGroups(KeyGroupRange(128, 256))], "\(policy)")
            XCTAssertThrowsError(try source.get(f.sourceOnly[0])) { XCTAssertEqual(($0 as? ShardDBError)?.code, .keyNotOwned) }
            // Settled the same way by every policy.
            for key in f.sourceOnly { XCTAssertEqual(text(try target.get(key)), "source", "\(policy)") }
            for key in f.targetOnly { XCTAssertEqual(text(try target.get(key)), "target", "\(policy)") }
            for key in f.expiredOnTarget { XCTAssertEqual(text(try target.get(key)), "source", "\(policy)") }
            // A key the source deleted contributes nothing: the target keeps its own value.
            for key in f.deletedOnSourceDuringCatchUp { XCTAssertEqual(text(try target.get(key)), "target", "\(policy)") }
            // Settled by the policy.
            let (sourceNewer, targetNewer, rewritten): (String, String, String)
            switch policy {
            case .sourceWins: (sourceNewer, targetNewer, rewritten) = ("source", "source", "source-late")
            case .targetWins: (sourceNewer, targetNewer, rewritten) = ("target-old", "target", "target")
            default: (sourceNewer, targetNewer, rewritten) = ("source", "target", "source-late")
            }
            for key in f.sourceNewer { XCTAssertEqual(text(try target.get(key)), sourceNewer, "\(policy)") }
            for key in f.targetNewer { XCTAssertEqual(text(try target.get(key)), targetNewer, "\(policy)") }
            for key in f.rewrittenOnSourceDuringCatchUp { XCTAssertEqual(text(try target.get(key)), rewritten, "\(policy)") }
            // Nothing of the overlap's staging area is left.
            XCTAssertFalse(target.database.columnFamilyNames.contains { $0.hasPrefix("staging-") }, "\(policy)")
            // The target shard takes writes to the merged keys.
            try target.put(f.sourceOnly[0], bytes("after"))
            XCTAssertEqual(text(try target.get(f.sourceOnly[0])), "after")
        }
    }

    /// The default refuses an overlapping range before copying anything; so does
    /// last-write-wins at commit when a key has a write time on neither side, and
    /// then both instances are as before.
    func testRefusalsChangeNothing() async throws {
        let dir = TemporaryDirectory()
        let clock = ManualClock()
        let (source, target) = try makeTwins(dir, clock: clock) { $0.stampWriteTime = false }
        defer { source.close(); target.close() }
        let keys = shardOneKeys(source, "k", count: 50)
        for key in keys { try source.put(key, bytes("s")) }
        for key in keys.prefix(10) { try target.put(key, bytes("t")) }
        let sourceBefore = try source.contents(), targetBefore = try target.contents()
        do {
            _ = try await source.migrate(MigrationRequest(shard: 1), to: target)
            XCTFail("an overlapping range needs a policy")
        } catch let error as ShardDBError {
            XCTAssertEqual(error.code, .migrationConflict)
            XCTAssertTrue(error.message.contains("conflict policy"), error.message)
        }
        var request = MigrationRequest(shard: 1)
        request.onConflict = .lastWriteWins
        do {
            _ = try await source.migrate(request, to: target)
            XCTFail("last-write-wins needs write times")
        } catch let error as ShardDBError {
            XCTAssertEqual(error.code, .migrationConflict)
            XCTAssertTrue(error.message.contains("neither side has a write time"), error.message)
            // The key as written (one of the ten on both sides), not its stored form.
            let named = keys.prefix(10).contains { error.message.contains("key '\(String(decoding: $0, as: UTF8.self))'") }
            XCTAssertTrue(named, error.message)
        }
        // A merge target that is not the overlapping shard.
        var wrongShard = MigrationRequest(shard: 1, mergeInto: 0)
        wrongShard.onConflict = .sourceWins
        do {
            _ = try await source.migrate(wrongShard, to: target)
            XCTFail("the overlap belongs to shard 1")
        } catch let error as ShardDBError {
            XCTAssertEqual(error.code, .migrationConflict)
        }
        XCTAssertEqual(try source.contents(), sourceBefore)
        XCTAssertEqual(try target.contents(), targetBefore)
        XCTAssertEqual(source.shardDescriptors.filter { $0.state == .active }.count, 2)
        XCTAssertFalse(target.database.columnFamilyNames.contains { $0.hasPrefix("staging-") })
        // Target writes to the overlap work again (its fence was lifted).
        try target.put(keys[0], bytes("again"))
        // A policy that needs no write times merges.
        request.onConflict = .targetWins
        _ = try await source.migrate(request, to: target)
        XCTAssertEqual(text(try target.get(keys[0])), "again")
        XCTAssertEqual(text(try target.get(keys[20])), "s")
    }

    /// A failure after chunks were ingested but before their progress was written,
    /// and after catch-up batches, then a restart of the target: the migration
    /// resumes where the durable progress says, ingests the same keys again and
    /// re-applies the changes idempotently.
    func testOverlapMergeByIngestionResumesAfterTargetRestart() async throws {
        let dir = TemporaryDirectory()
        let clock = ManualClock()
        var (source, target) = try makeTwins(dir, clock: clock) { $0.migrationIngestMinBytes = 0 }
        defer { source.close(); target.close() }
        let keys = shardOneKeys(source, "k", count: 600)
        for key in keys { try source.put(key, bytes("s")) }
        clock.advance(milliseconds: 1000)
        for key in keys.prefix(100) { try target.put(key, bytes("t")) }   // newer: kept under LWW
        clock.advance(milliseconds: 1000)
        for key in keys[50..<100] { try source.put(key, bytes("s2")) }      // newer again: the source's
        var request = MigrationRequest(shard: 1, id: "m1")
        request.onConflict = .lastWriteWins
        let plan = try await MigrationCoordinator(source: source, target: target).makePlan(request)
        XCTAssertEqual(plan.overlap, .keyGroups(KeyGroupRange(128, 256)))
        try source.prepareOutgoing(plan)
        let s = try source.openBulk(plan)
        func copy(from resume: IncomingState) throws {
            var after = resume.bulkResumeKey
            var done = resume.bulkDone
            while !done {
                let chunk = try source.readBulk(plan, after: after, maxBytes: 2048)
                try target.applyBulk(plan, chunk)
                after = chunk.lastKey
                done = chunk.done
            }
        }
        let options: ShardEngineOptions = {
            var o = ShardEngineOptions.testing(clock: clock)
            o.stampWriteTime = true
            o.migrationIngestMinBytes = 0
            return o
        }()
        FailurePoints.arm("migration.target.bulk-ingested", action: .error, nth: 3)
        XCTAssertThrowsError(try copy(from: target.prepareIncoming(plan, snapshotSequence: s))) {
            XCTAssertEqual(($0 as? ShardDBError)?.code, .injectedFailure)
        }
        target.close()
        target = try ShardEngine.open(at: dir.path("target"), options: options)
        let resumed = try target.prepareIncoming(plan, snapshotSequence: s)
        XCTAssertFalse(resumed.bulkDone)
        XCTAssertNotNil(resumed.bulkResumeKey)
        try copy(from: resumed)
        // Catch-up: source writes after the snapshot; the second batch fails after it was written.
        clock.advance(milliseconds: 1000)
        for key in keys[0..<10] { try source.put(key, bytes("late")) }
        for key in keys[10..<20] { try source.delete(key) }
        FailurePoints.arm("migration.target.changes", action: .error)
        var next = s + 1
        var failed = false
        while true {
            let chunk = try source.readChanges(plan, from: next, maxRecords: 7)
            do { try target.applyChanges(plan, chunk) } catch {
                failed = true
                // Restart and resume from the durable progress (the failed batch was written).
                target.close()
                target = try ShardEngine.open(at: dir.path("target"), options: options)
                next = try target.prepareIncoming(plan, snapshotSequence: s).appliedThrough + 1
                continue
            }
            next = chunk.nextSequence
            if chunk.records.isEmpty { break }
        }
        XCTAssertTrue(failed)
        try target.catchUpAndCommit(plan, from: source, next: next, final: try source.fenceOutgoing(plan))
        try source.commitOutgoing(plan)
        for key in keys[0..<10] { XCTAssertEqual(text(try target.get(key)), "late") }
        for key in keys[10..<20] { XCTAssertEqual(text(try target.get(key)), "t") }  // deleted on the source: the target's stays
        for key in keys[20..<50] { XCTAssertEqual(text(try target.get(key)), "t") }
        for key in keys[50..<100] { XCTAssertEqual(text(try target.get(key)), "s2") }
        for key in keys[100...] { XCTAssertEqual(text(try target.get(key)), "s") }
        XCTAssertFalse(target.database.columnFamilyNames.contains { $0.hasPrefix("staging-") })
        XCTAssertEqual((try? FileManager.default.contentsOfDirectory(atPath: dir.path("target") + "/migration-ingest")) ?? [], [])
    }

    /// A failure just before the target commits an overlapping merge rolls back:
    /// the target's own values and its write access to the overlap are intact.
    func testFailureBeforeCommitKeepsTheTargetsValues() async throws {
        try await assertAFailedOverlapCommitRollsBack(at: "migration.target.before-commit") { target, keys in
            XCTAssertFalse(target.database.columnFamilyNames.contains { $0.hasPrefix("staging-") })
            try target.put(keys[0], bytes("t2"))
        }
    }

    /// An overlapping merge's commit writes the merged values into the live shard in
    /// the same batch as the journal: when that write fails its sync, none of it is
    /// applied, so lifting the overlap fence shows the target's own values, and the
    /// journal stays readable for the roll-back.
    func testAFailedCommitSyncShowsNoMergedValues() async throws {
        try await assertAFailedOverlapCommitRollsBack(at: "bookkeeping.sync-in-queue") { target, _ in
            XCTAssertNoThrow(try target.migrationJournal())
        }
    }

    /// Merges shard 1 into its twin (source wins) with `point` failing: the target holds
    /// what it held (then `check`), and the migration run again takes the source's values.
    private func assertAFailedOverlapCommitRollsBack(at point: String,
                                                     then check: (ShardEngine, [[UInt8]]) throws -> Void) async throws {
        let dir = TemporaryDirectory()
        let clock = ManualClock()
        let (source, target) = try makeTwins(dir, clock: clock)
        defer { source.close(); target.close() }
        let keys = shardOneKeys(source, "k", count: 100)
        for key in keys { try source.put(key, bytes("s")) }
        for key in keys.prefix(30) { try target.put(key, bytes("t")) }
        let targetBefore = try target.contents()
        var request = MigrationRequest(shard: 1)
        request.onConflict = .sourceWins
        FailurePoints.arm(point, action: .error)
        do {
            _ = try await source.migrate(request, to: target)
            XCTFail("should fail at \(point)")
        } catch let error as ShardDBError {
            XCTAssertEqual(error.code, .injectedFailure)
        }
        XCTAssertEqual(try target.contents(), targetBefore)
        try check(target, keys)
        _ = try await source.migrate(request, to: target)
        XCTAssertEqual(text(try target.get(keys[0])), "s")
        XCTAssertEqual(try target.contents().count, 100)
    }

    /// Big chunks go in as ingested table files: the data arrives without passing
    /// through the target's write-ahead log, and no file is left behind.
    func testBulkCopyByIngestionIntoANewShard() async throws {
        let dir = TemporaryDirectory()
        let clock = ManualClock()
        var options = ShardEngineOptions.testing(clock: clock)
        options.migrationIngestMinBytes = 16 << 10
        let source = try ShardEngine.create(at: dir.path("source"), shards: 2, partitioning: .hash(keyGroups: 256), options: options)
        let target = try ShardEngine.create(at: dir.path("target"), shards: 0, partitioning: .hash(keyGroups: 256), options: options)
        defer { source.close(); target.close() }
        var oracle: [[UInt8]: [UInt8]] = [:]
        try source.write { batch in
            for i in 0..<5000 {
                let key = bytes("key\(i)"), value = bytes(String(repeating: "v", count: 50) + "\(i)")
                try batch.put(key, value)
                oracle[key] = value
            }
        }
        let before = try target.latestSequenceNumber()
        var request = MigrationRequest(shard: 1)
        request.bulkChunkBytes = 64 << 10
        request.bulkTransfer = .entries
        let report = try await source.migrate(request, to: target)
        XCTAssertGreaterThan(report.keysCopied, 2000)
        // A few metadata writes per chunk, not one sequence number per key.
        XCTAssertLessThan(try target.latestSequenceNumber() - before, UInt64(report.keysCopied / 4))
        let moved = oracle.filter { target.recordedOwner(of: $0.key) == 1 }
        XCTAssertEqual(try target.contents(), moved)
        XCTAssertEqual((try? FileManager.default.contentsOfDirectory(atPath: dir.path("target") + "/migration-ingest")) ?? [], [])
    }
}

/// True the first time only.
private final class Once: @unchecked Sendable {
    private let lock = NSLock()
    private var done = false
    func first() -> Bool { lock.lock(); defer { lock.unlock() }; let was = done; done = true; return !was }
}
