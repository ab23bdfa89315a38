import Foundation
import RocksDB
@testable import ShardDB
import XCTest

/// Live migration between two engines in one process: shapes, writers during
/// every phase, aborts at every phase boundary, and bad requests.
class MigrationTests: XCTestCase {
    override func tearDown() {
        FailurePoints.disarmAll()
        super.tearDown()
    }

    /// Bulk chunks this big or bigger are ingested as table files (see the subclass).
    /// Batches here (whatever the default), table files in the subclass: each path on purpose.
    class var ingestMinBytes: Int { .max }

    /// How requests made with ``request(shard:range:mergeInto:id:)`` copy the bulk:
    /// entries here, whole shards as table files in a subclass.
    class var bulkTransfer: BulkTransfer { .entries }

    class func request(shard: Int, range: ShardRange? = nil, mergeInto: Int? = nil, id: String? = nil) -> MigrationRequest {
        var request = MigrationRequest(shard: shard, range: range, mergeInto: mergeInto, id: id)
        request.bulkTransfer = bulkTransfer
        return request
    }

    private func engineOptions(clock: ManualClock = ManualClock()) -> ShardEngineOptions {
        var options = ShardEngineOptions.testing(clock: clock)
        options.migrationIngestMinBytes = Self.ingestMinBytes
        return options
    }

    private func makePair(_ dir: TemporaryDirectory, shards: Int = 4, targetShards: Int = 0,
                          partitioning: Partitioning = .hash(keyGroups: 256)) throws -> (ShardEngine, ShardEngine) {
        let source = try ShardEngine.create(at: dir.path("source"), shards: shards, partitioning: partitioning, options: engineOptions())
        let target = try ShardEngine.create(at: dir.path("target"), shards: targetShards, partitioning: partitioning, options: engineOptions())
        return (source, target)
    }

    private func load(_ engine: ShardEngine, count: Int, prefix: String = "k") throws -> [[UInt8]: [UInt8]] {
        var oracle: [[UInt8]: [UInt8]] = [:]
        try engine.write { batch in
            for i in 0..<count {
                let key = bytes("\(prefix)\(i)"), value = bytes("v\(i)")
                try batch.put(key, value)
                oracle[key] = value
            }
        }
        return oracle
    }

    /// Reads `key` from whichever of the two engines owns it.
    /// Prepares `plan` on both sides and copies its bulk in 1 MiB chunks; returns the snapshot sequence.
    private func copyBulk(_ plan: MigrationPlan, from source: ShardEngine, to target: ShardEngine) throws -> UInt64 {
        try source.prepareOutgoing(plan)
        let s = try source.openBulk(plan)
        _ = try target.prepareIncoming(plan, snapshotSequence: s)
        var after: [UInt8]? = nil
        while true {
            let chunk = try source.readBulk(plan, after: after, maxBytes: 1 << 20)
            try target.applyBulk(plan, chunk)
            after = chunk.lastKey
            if chunk.done { break }
        }
        return s
    }

    private func read(_ key: [UInt8], _ engines: [ShardEngine]) throws -> [UInt8]? {
        for engine in engines {
            do { return try engine.get(key) } catch let error as ShardDBError where error.code == .keyNotOwned { continue }
        }
        XCTFail("no engine owns \(text(key) ?? "?")")
        return nil
    }

    func testWholeShardMovesAndSourceForwards() async throws {
        let dir = TemporaryDirectory()
        let (source, target) = try makePair(dir)
        defer { source.close(); target.close() }
        let oracle = try load(source, count: 2000)
        let moving = source.shardDescriptors.first { $0.id == 1 }!

        let report = try await source.migrate(Self.request(shard: 1), to: target)
        XCTAssertGreaterThan(report.keysCopied, 0)
        XCTAssertEqual(report.targetShard, 1)

        XCTAssertEqual(source.shardDescriptors.first { $0.id == 1 }?.state, .moved(to: target.path))
        XCTAssertEqual(target.shardDescriptors.map(\.range), [moving.range])
        for (key, value) in oracle { XCTAssertEqual(try read(key, [source, target]), value) }
        // The source answers for moved keys with the new owner.
        let movedKey = oracle.keys.first { source.recordedOwner(of: $0) == nil }!
        XCTAssertThrowsError(try source.get(movedKey)) { error in
            XCTAssertEqual((error as? ShardDBError)?.code, .keyNotOwned)
            XCTAssertEqual((error as? ShardDBError)?.owner, target.path)
        }
        // Cleanup dropped the source's column family.
        XCTAssertFalse(source.database.columnFamilyNames.contains("shard-1"))
        // Writes after the cutover land on the target.
        try target.put(movedKey, bytes("after"))
        XCTAssertEqual(try target.get(movedKey), bytes("after"))
    }

    func testSplitMovesOneEndOfAShard() async throws {
        let dir = TemporaryDirectory()
        let (source, target) = try makePair(dir, shards: 2)
        defer { source.close(); target.close() }
        let oracle = try load(source, count: 3000)
        // Shard 0 owns kg[0,128); move kg[64,128).
        let report = try await source.migrate(Self.request(shard: 0, range: .keyGroups(KeyGroupRange(64, 128))), to: target)
        XCTAssertGreaterThan(report.keysCopied, 0)
        XCTAssertEqual(source.shardDescriptors.first { $0.id == 0 }?.range, .keyGroups(KeyGroupRange(0, 64)))
        XCTAssertTrue(source.shardDescriptors.contains { $0.range == .keyGroups(KeyGroupRange(64, 128)) && $0.state == .moved(to: target.path) })
        for (key, value) in oracle { XCTAssertEqual(try read(key, [source, target]), value) }
        // The source holds nothing of the moved range any more.
        let family = try source.database.columnFamily(named: "shard-0")
        let iterator = try source.database.makeIterator(in: family, lowerBound: [0, 64], upperBound: [0, 128])
        iterator.seekToFirst()
        XCTAssertFalse(iterator.isValid)
    }

    /// A get that looked its key up before a partial move and read after the move's
    /// cleanup deleted it here found nothing: the caller learned that a key living
    /// on the target does not exist. It now looks again and names the owner.
    func testAGetOverlappingAPartialMoveNamesTheNewOwner() throws {
        let dir = TemporaryDirectory()
        let (source, target) = try makePair(dir, shards: 2)
        defer { source.close(); target.close() }
        let oracle = try load(source, count: 3000)
        // Shard 0 owns kg[0,128); kg[64,128) moves while the get stands between lookup and read.
        let key = try XCTUnwrap(oracle.keys.first { source.recordedOwner(of: $0) == 0 && keyGroup(of: $0) >= 64 })
        let moved = LockedResults()
        FailurePoints.arm("read.routed", action: .call(FailurePoints.Hook {
            let done = DispatchSemaphore(value: 0)
            Task {
                do {
                    _ = try await source.migrate(Self.request(shard: 0, range: .keyGroups(KeyGroupRange(64, 128))), to: target)
                    moved.append(.success(true))
                } catch { moved.append(.failure(error)) }
                done.signal()
            }
            done.wait()
        }))
        defer { FailurePoints.disarmAll() }
        do {
            let value = try source.get(key)
            XCTFail("the get answered \(value.map { String(decoding: $0, as: UTF8.self) } ?? "nothing") for a key that moved")
        } catch let error as ShardDBError {
            XCTAssertEqual(error.code, .keyNotOwned, "\(error)")
            XCTAssertEqual(error.owner, target.path)
        }
        XCTAssertEqual(moved.count, 1, "the move ran inside the get")
        if case .failure(let error)? = moved.values.first { XCTFail("the move failed: \(error)") }
        XCTAssertEqual(try target.get(key), oracle[key])
    }

    /// A range that moved away, came back and moved away again: the instance's older
    /// moved-to record (naming the first owner) hid the new one, so the instance
    /// sent clients to the first owner, which sent them back.
    func testARangeThatMovesAwayAgainNamesItsNewOwner() async throws {
        let dir = TemporaryDirectory()
        let a = try ShardEngine.create(at: dir.path("a"), shards: 1, partitioning: .hash(keyGroups: 256), options: engineOptions())
        let b = try ShardEngine.create(at: dir.path("b"), shards: 0, partitioning: .hash(keyGroups: 256), options: engineOptions())
        let c = try ShardEngine.create(at: dir.path("c"), shards: 0, partitioning: .hash(keyGroups: 256), options: engineOptions())
        defer { a.close(); b.close(); c.close() }
        let oracle = try load(a, count: 500)
        let key = try XCTUnwrap(oracle.keys.first { keyGroup(of: $0) >= 128 })
        _ = try await a.migrate(Self.request(shard: 0, range: .keyGroups(KeyGroupRange(128, 256))), to: b)
        let back = try XCTUnwrap(b.shardDescriptors.first { $0.state == .active })
        _ = try await b.migrate(Self.request(shard: back.id, mergeInto: 0), to: a)
        XCTAssertEqual(try a.get(key), oracle[key])
        _ = try await a.migrate(Self.request(shard: 0), to: c)
        let error = assertShardDBError(.keyNotOwned, try a.get(key))
        XCTAssertEqual(error?.owner, c.path)
        a.close()
        let reopened = try ShardEngine.open(at: dir.path("a"), options: engineOptions())
        defer { reopened.close() }
        XCTAssertEqual(assertShardDBError(.keyNotOwned, try reopened.get(key))?.owner, c.path, "the records, as stored")
        XCTAssertEqual(try c.get(key), oracle[key])
    }

    /// The same under range partitioning, where moved-to records are read by lower
    /// bound (so the older, lower one won), and when the range moving away again
    /// lies inside the older record: the record is cut in two around it, the part
    /// past it still naming its owner.
    func testARangeMovingAwayInsideAnOlderMovedRangeSplitsItsRecord() async throws {
        let dir = TemporaryDirectory()
        let ranged = Partitioning.range(splitPoints: [])
        let a = try ShardEngine.create(at: dir.path("a"), shards: 1, partitioning: ranged, options: engineOptions())
        let b = try ShardEngine.create(at: dir.path("b"), shards: 0, partitioning: ranged, options: engineOptions())
        let c = try ShardEngine.create(at: dir.path("c"), shards: 0, partitioning: ranged, options: engineOptions())
        defer { a.close(); b.close(); c.close() }
        let oracle = try load(a, count: 2000)
        let m = bytes("k3"), p = bytes("k5"), t = bytes("k7")
        _ = try await a.migrate(Self.request(shard: 0, range: .keys(lower: m, upper: nil)), to: b)       // a: [, k3), record [k3, ∞) -> b
        let onB = try XCTUnwrap(b.shardDescriptors.first { $0.state == .active })
        _ = try await b.migrate(Self.request(shard: onB.id, range: .keys(lower: m, upper: t), mergeInto: 0), to: a)  // a: [, k7)
        _ = try await a.migrate(Self.request(shard: 0, range: .keys(lower: p, upper: t)), to: c)        // inside [k3, ∞)
        for (key, value) in oracle {
            if key.lexicographicallyPrecedes(p) { XCTAssertEqual(try a.get(key), value); continue }
            let owner = key.lexicographicallyPrecedes(t) ? c : b
            XCTAssertEqual(assertShardDBError(.keyNotOwned, try a.get(key))?.owner, owner.path, String(decoding: key, as: UTF8.self))
            XCTAssertEqual(try owner.get(key), value)
        }
    }

    private func keyGroup(of key: [UInt8]) -> Int {
        key.withUnsafeBytes { KeyHash.keyGroup(of: $0, keyGroups: 256) }
    }

    func testMergeIntoAdjacentTargetShard() async throws {
        let dir = TemporaryDirectory()
        // Source: 2 shards over 256 groups; target: 2 shards too — a distinct instance, same partitioning.
        let source = try ShardEngine.create(at: dir.path("source"), shards: 2, partitioning: .hash(keyGroups: 256), options: engineOptions())
        let target = try ShardEngine.create(at: dir.path("target"), shards: 0, partitioning: .hash(keyGroups: 256), options: engineOptions())
        defer { source.close(); target.close() }
        let oracle = try load(source, count: 2000)
        _ = try await source.migrate(Self.request(shard: 1), to: target)  // target shard 1: kg[128,256)
        _ = try await source.migrate(Self.request(shard: 0, mergeInto: 1), to: target)  // scale-in: merge kg[0,128)
        XCTAssertEqual(target.shardDescriptors.filter { $0.state == .active }.map(\.range), [.keyGroups(KeyGroupRange(0, 256))])
        XCTAssertTrue(source.shardDescriptors.allSatisfy { $0.state != .active })
        XCTAssertEqual(try target.contents(), oracle)
    }

    func testRangePartitioningMovesTheUpperRange() async throws {
        let dir = TemporaryDirectory()
        let partitioning = Partitioning.range(splitPoints: [bytes("m")])
        let source = try ShardEngine.create(at: dir.path("source"), shards: 2, partitioning: partitioning, options: engineOptions())
        let target = try ShardEngine.create(at: dir.path("target"), shards: 0, partitioning: .range(splitPoints: []), options: engineOptions())
        defer { source.close(); target.close() }
        var oracle: [[UInt8]: [UInt8]] = [:]
        for letter in "abcdefghijklmnopqrstuvwxyz" {
            for i in 0..<20 { let k = bytes("\(letter)\(i)"); oracle[k] = bytes("v"); try source.put(k, bytes("v")) }
        }
        // Move [t, ∞) of shard 1, which owns [m, ∞).
        _ = try await source.migrate(Self.request(shard: 1, range: .keys(lower: bytes("t"), upper: nil)), to: target)
        XCTAssertEqual(target.shardDescriptors.map(\.range), [.keys(lower: bytes("t"), upper: nil)])
        for (key, value) in oracle { XCTAssertEqual(try read(key, [source, target]), value) }
        XCTAssertEqual(try target.keys().count, 7 * 20)
    }

    /// Moving the lower end of a shard whose table file ends exactly at the split
    /// key: the source's cleanup drops whole files inside the moved range, and the
    /// key at the split (which the source keeps) survives it. (RocksDB's
    /// DeleteFilesInRange, as the C API called it, took the end bound inclusive
    /// and dropped that file, key and all.)
    func testCleanupKeepsTheKeyAtTheSplitWhenAFileEndsThere() async throws {
        let dir = TemporaryDirectory()
        let partitioning = Partitioning.range(splitPoints: [bytes("m")])
        let source = try ShardEngine.create(at: dir.path("source"), shards: 2, partitioning: partitioning, options: engineOptions())
        let target = try ShardEngine.create(at: dir.path("target"), shards: 0, partitioning: .range(splitPoints: []), options: engineOptions())
        defer { source.close(); target.close() }
        // Shard 0 owns [-, m): one table file below level 0 holding b..f exactly.
        for key in ["b", "c", "d", "f"] { try source.put(bytes(key), bytes("value-\(key)")) }
        try source.purgeExpired(shard: 0)  // flush and compact
        try source.put(bytes("g"), bytes("value-g"))
        // Move [-, f): the source keeps [f, m), f included.
        _ = try await source.migrate(Self.request(shard: 0, range: .keys(lower: [], upper: bytes("f"))), to: target)
        XCTAssertEqual(try source.get(bytes("f")), bytes("value-f"), "the key at the split stays on the source")
        XCTAssertEqual(try source.get(bytes("g")), bytes("value-g"))
        for key in ["b", "c", "d"] { XCTAssertEqual(try target.get(bytes(key)), bytes("value-\(key)"), key) }
        XCTAssertEqual(try source.keys(ScanRequest(shard: 0)), [bytes("f"), bytes("g")])
    }

    /// A range delete made on the source during catch-up reaches the target clipped to
    /// the migrating range: keys of the range it covers are gone on the target, keys
    /// outside the migrating range stay on the source as the delete left them.
    func testRangeDeleteDuringCatchUpIsAppliedClippedToTheMigratingRange() async throws {
        let dir = TemporaryDirectory()
        let partitioning = Partitioning.range(splitPoints: [bytes("m")])
        let source = try ShardEngine.create(at: dir.path("source"), shards: 2, partitioning: partitioning, options: .testing())
        let target = try ShardEngine.create(at: dir.path("target"), shards: 0, partitioning: .range(splitPoints: []), options: .testing())
        defer { source.close(); target.close() }
        var oracle: [[UInt8]: [UInt8]] = [:]
        for letter in "abcdefghijklmnopqrstuvwxyz" {
            for i in 0..<20 { let k = bytes("\(letter)\(i)"); oracle[k] = bytes("v"); try source.put(k, bytes("v")) }
        }
        // During catch-up (after the bulk copy), delete [p, w): [p, t) stays on the source, [t, w) moves.
        let deleted = RangeDeleteProbe()
        let report = try await source.migrate(Self.request(shard: 1, range: .keys(lower: bytes("t"), upper: nil)), to: target) { progress in
            guard progress.phase == .catchUp, !deleted.fired else { return }
            deleted.fired = true
            do { try source.deleteRange(from: "p", to: "w") } catch { deleted.error = error }
        }
        XCTAssertTrue(deleted.fired)
        XCTAssertNil(deleted.error)
        XCTAssertGreaterThan(report.changesApplied, 0)
        for key in oracle.keys where !key.lexicographicallyPrecedes(bytes("p")) && key.lexicographicallyPrecedes(bytes("w")) { oracle[key] = nil }
        for (key, value) in oracle { XCTAssertEqual(try read(key, [source, target]), value, text(key)!) }
        for letter in "pqrstuv" { XCTAssertNil(try read(bytes("\(letter)0"), [source, target]), "\(letter)0") }
        // The target holds [t, ∞) minus [t, w): w..z.
        XCTAssertEqual(Set(try target.keys().map { text($0)!.first! }), Set("wxyz"))
        XCTAssertEqual(try target.keys().count, 4 * 20)
    }

    func testTheHashKeyGroupRangeDeleteDuringCatchUpReachesTheTarget() async throws {
        let dir = TemporaryDirectory()
        let (source, target) = try makePair(dir, shards: 2)
        defer { source.close(); target.close() }
        var oracle = try load(source, count: 3000)
        // Shard 1 owns kg [128, 256); the key group of a key there in [k1, k2) moves with it
        // (any key of the shard could name a group with nothing in that range).
        let member = oracle.keys.sorted { $0.lexicographicallyPrecedes($1) }.first {
            source.keyGroup(of: $0)! >= 128 && $0.starts(with: bytes("k1"))
        }!
        let keyGroup = source.keyGroup(of: member)!
        let deleted = RangeDeleteProbe()
        _ = try await source.migrate(Self.request(shard: 1), to: target) { progress in
            guard progress.phase == .catchUp, !deleted.fired else { return }
            deleted.fired = true
            do { try source.deleteRange(from: "k1", to: "k2", keyGroup: keyGroup) } catch { deleted.error = error }
        }
        XCTAssertNil(deleted.error)
        var removed = 0
        for key in oracle.keys where source.keyGroup(of: key) == keyGroup
            && !key.lexicographicallyPrecedes(bytes("k1")) && key.lexicographicallyPrecedes(bytes("k2")) {
            oracle[key] = nil
            removed += 1
        }
        XCTAssertGreaterThan(removed, 0)
        for (key, value) in oracle { XCTAssertEqual(try read(key, [source, target]), value, text(key)!) }
        XCTAssertEqual(try target.contents().count + (try source.contents().count), oracle.count)
    }

    func testTTLTravelsAndExpiredEntriesAreNotCopied() async throws {
        let dir = TemporaryDirectory()
        let clock = ManualClock()
        let source = try ShardEngine.create(at: dir.path("source"), shards: 1, partitioning: .hash(keyGroups: 16), options: engineOptions(clock: clock))
        let target = try ShardEngine.create(at: dir.path("target"), shards: 0, partitioning: .hash(keyGroups: 16), options: engineOptions(clock: clock))
        defer { source.close(); target.close() }
        try source.put(bytes("short"), bytes("x"), ttl: .seconds(10))
        try source.put(bytes("long"), bytes("y"), ttl: .seconds(1000))
        try source.put(bytes("forever"), bytes("z"))
        clock.advance(milliseconds: 20_000)
        var request = Self.request(shard: 0)
        request.bulkTransfer = .entries  // table files carry expired entries as they are (tested apart)
        let report = try await source.migrate(request, to: target)
        XCTAssertEqual(report.keysCopied, 2)
        XCTAssertNil(try target.get(bytes("short")))
        var expiry: Int64?
        try target.scan(ScanRequest(prefix: bytes("long"))) { entry in expiry = entry.expiresAtMilliseconds; return true }
        XCTAssertEqual(expiry, 1_700_000_000_000 + 1_000_000)
        clock.advance(milliseconds: 1_000_000)
        XCTAssertNil(try target.get(bytes("long")))
        XCTAssertEqual(try target.get(bytes("forever")), bytes("z"))
    }

    /// Writers keep going through every phase; the result matches what they had acknowledged.
    func testWritersDuringEveryPhaseLoseNothing() async throws {
        let dir = TemporaryDirectory()
        let (source, target) = try makePair(dir, shards: 2)
        defer { source.close(); target.close() }
        var oracle = try load(source, count: 5000)
        let writer = OracleWriter(engines: [source, target])
        let writing = Thread { writer.run(iterations: Int.max) }
        writing.start()
        // Wait for the writer thread to get going (a handshake with a thread, not a wait for time to pass).
        while writer.writesCompleted < 500 && !writer.finished { try await Task.sleep(nanoseconds: 1_000_000) }
        var request = Self.request(shard: 0)
        request.bulkChunkBytes = 16 << 10  // many chunks, so writes interleave with the bulk phase
        request.cutoverThreshold = 50
        let report = try await source.migrate(request, to: target)
        let atCutover = writer.writesCompleted
        while writer.writesCompleted < atCutover + 500 && !writer.finished { try await Task.sleep(nanoseconds: 1_000_000) }
        writer.stop()
        while !writer.finished { try await Task.sleep(nanoseconds: 1_000_000) }
        XCTAssertNil(writer.failure)
        for (key, value) in writer.acknowledged { oracle[key] = value }
        for (key, value) in oracle { XCTAssertEqual(try read(key, [source, target]), value, "key \(text(key)!)") }
        for (key, value) in writer.acknowledged where value == nil { XCTAssertNil(try read(key, [source, target])) }
        XCTAssertGreaterThan(writer.batchesCompleted, 0)
        // Writes went on after the cutover, and some of them learned the range had moved.
        XCTAssertGreaterThan(writer.movedAnswers, 0)
        XCTAssertGreaterThan(report.changesApplied, 0)
        XCTAssertLessThan(report.pauseMilliseconds, 5_000)
    }

    /// An injected failure at each step before the target commits leaves the
    /// source owning everything and no trace on the target, even after reopening.
    func testAbortAtEveryPhaseBoundaryLeavesNoTrace() async throws {
        let common = ["migration.source.bulk-opened", "migration.target.prepare", "migration.target.changes",
                      "migration.source.before-fence", "migration.source.fenced", "migration.target.before-commit"]
        let cases: [(point: String, transfer: BulkTransfer)] =
            common.flatMap { [($0, .entries), ($0, .tableFiles)] }
            + [("migration.source.bulk-chunk", .entries), ("migration.target.bulk-chunk", .entries),
               ("migration.source.tables-exported", .tableFiles), ("migration.target.tables-imported", .tableFiles)]
        for (failurePoint, transfer) in cases {
            let point = "\(failurePoint) (\(transfer.rawValue))"
            let dir = TemporaryDirectory()
            var (source, target) = try makePair(dir, shards: 2)
            let oracle = try load(source, count: 500)
            FailurePoints.arm(failurePoint, action: .error)
            do {
                var request = Self.request(shard: 1)
                request.bulkTransfer = transfer
                _ = try await source.migrate(request, to: target)
                XCTFail("\(point): migration should fail")
            } catch let error as ShardDBError {
                XCTAssertEqual(error.code, .injectedFailure, point)
            }
            FailurePoints.disarmAll()
            source.close(); target.close()
            source = try ShardEngine.open(at: dir.path("source"), options: engineOptions())
            target = try ShardEngine.open(at: dir.path("target"), options: engineOptions())
            XCTAssertEqual(source.shardDescriptors.filter { $0.state == .active }.count, 2, point)
            XCTAssertEqual(try source.contents(), oracle, point)
            XCTAssertTrue(target.shardDescriptors.isEmpty, point)
            XCTAssertEqual(target.database.columnFamilyNames.filter { $0.hasPrefix("shard-") }, [], point)
            XCTAssertTrue(try target.migrationJournal().allSatisfy { !$0.isUnfinished }, point)
            XCTAssertFalse(FileManager.default.fileExists(atPath: dir.path("source") + "/migration-export"), point)
            // Writes to the range work again on the source.
            let key = oracle.keys.first { source.recordedOwner(of: $0) == 1 }!
            try source.put(key, bytes("again"))
            // And the migration succeeds when retried.
            var retry = Self.request(shard: 1)
            retry.bulkTransfer = transfer
            let report = try await source.migrate(retry, to: target)
            XCTAssertEqual(report.bulkTransfer, transfer, point)
            XCTAssertEqual(try target.get(key), bytes("again"), point)
            source.close(); target.close()
        }
    }

    /// Consecutive chunks applied as one group (what a pulling target does with the
    /// small pieces it reads): as a table file when the group is big, as a batch
    /// when small; progress lands at the group's last chunk, and the move completes
    /// with every key. A group whose chunks are out of order, or with a chunk
    /// marked done before its end, is refused and changes nothing.
    func testChunksAppliedInGroupsLandWhole() async throws {
        for ingestMin in [0, Int.max] {
            let dir = TemporaryDirectory()
            let source = try ShardEngine.create(at: dir.path("source"), shards: 2, partitioning: .hash(keyGroups: 256), options: engineOptions())
            var targetOptions = engineOptions()
            targetOptions.migrationIngestMinBytes = ingestMin
            let target = try ShardEngine.create(at: dir.path("target"), shards: 0, partitioning: .hash(keyGroups: 256), options: targetOptions)
            defer { source.close(); target.close() }
            let oracle = try load(source, count: 3000)
            let plan = try await MigrationCoordinator(source: source, target: target).makePlan(Self.request(shard: 1, id: "g\(ingestMin == 0 ? 1 : 2)"))
            try source.prepareOutgoing(plan)
            let s = try source.openBulk(plan)
            _ = try target.prepareIncoming(plan, snapshotSequence: s)
            var pieces: [BulkChunk] = []
            var after: [UInt8]? = nil
            while true {
                let piece = try source.readBulk(plan, after: after, maxBytes: 2000)
                pieces.append(piece)
                after = piece.lastKey
                if piece.done { break }
            }
            XCTAssertGreaterThan(pieces.count, 6)
            let first = Array(pieces[0..<3]), rest = Array(pieces[3...])

            // Refused, nothing written: out of order; done before the end.
            let before = try target.prepareIncoming(plan, snapshotSequence: s)
            let disordered = assertShardDBError(.invalidArgument, try target.applyBulk(plan, [first[1], first[0]]))
            XCTAssertTrue(disordered?.message.contains("out of key order") ?? false, disordered?.message ?? "")
            let early = assertShardDBError(.invalidArgument, try target.applyBulk(plan, [rest[rest.count - 1], first[0]]))
            XCTAssertTrue(early?.message.contains("marked done") ?? false, early?.message ?? "")
            XCTAssertEqual(try target.prepareIncoming(plan, snapshotSequence: s), before)

            try target.applyBulk(plan, first)
            let state = try target.prepareIncoming(plan, snapshotSequence: s)
            XCTAssertEqual(state.bulkResumeKey, first[2].lastKey, "progress at the group's last chunk")
            XCTAssertFalse(state.bulkDone)
            try target.applyBulk(plan, rest)
            XCTAssertTrue(try target.prepareIncoming(plan, snapshotSequence: s).bulkDone)

            try target.catchUpAndCommit(plan, from: source, next: s + 1, final: try source.fenceOutgoing(plan))
            try source.commitOutgoing(plan)
            for (k, v) in oracle { XCTAssertEqual(try read(k, [source, target]), v, "ingest from \(ingestMin)") }
            XCTAssertGreaterThan(oracle.keys.filter { (try? target.get($0)) != nil }.count, 500, "shard 1 moved")
        }
    }

    /// The source fenced and the target committed, then the source's commit failed:
    /// the decision is the target's, and recovery finishes the move on the source.
    func testRecoveryRollsForwardOnceTheTargetCommitted() async throws {
        let dir = TemporaryDirectory()
        var (source, target) = try makePair(dir, shards: 2)
        let oracle = try load(source, count: 500)
        let plan = try await MigrationCoordinator(source: source, target: target).makePlan(Self.request(shard: 1, id: "m1"))
        let s = try copyBulk(plan, from: source, to: target)
        try target.catchUpAndCommit(plan, from: source, next: s + 1, final: try source.fenceOutgoing(plan))
        // "Crash" before the source records the move.
        source.close(); target.close()
        source = try ShardEngine.open(at: dir.path("source"), options: engineOptions())
        target = try ShardEngine.open(at: dir.path("target"), options: engineOptions())
        defer { source.close(); target.close() }
        // In doubt on the source: the range stays fenced.
        let key = oracle.keys.first { source.recordedOwner(of: $0) == 1 }!
        XCTAssertEqual(source.table.fences.count, 1)
        let settled = try await MigrationCoordinator.resolveUnfinished(source: source, target: target)
        XCTAssertEqual(settled.count, 1)
        XCTAssertThrowsError(try source.get(key)) { XCTAssertEqual(($0 as? ShardDBError)?.owner, target.path) }
        for (k, v) in oracle { XCTAssertEqual(try read(k, [source, target]), v) }
    }

    /// The target's commit is durable but answers with an error (a target that
    /// failed right after it, a lost reply): the coordinator reads the target's
    /// journal and finishes the move, instead of leaving the source fenced until
    /// a resolve and reporting a failure.
    func testACommitThatFailsAfterItIsDurableFinishesTheMove() async throws {
        let dir = TemporaryDirectory()
        let (source, target) = try makePair(dir, shards: 2)
        defer { source.close(); target.close() }
        let oracle = try load(source, count: 300)
        FailurePoints.arm("migration.target.committed", action: .error)
        defer { FailurePoints.disarmAll() }
        let report = try await source.migrate(Self.request(shard: 1, id: "m"), to: target)
        XCTAssertEqual(report.id, "m")
        XCTAssertTrue(source.table.fences.isEmpty, "the source is not left fenced")
        XCTAssertEqual(try source.migrationEntry("m")?.phase, .cleaned)
        XCTAssertEqual(try target.migrationEntry("m")?.phase, .committed)
        for (k, v) in oracle { XCTAssertEqual(try read(k, [source, target]), v) }
    }

    /// A shard taking a range by merge cannot move out at the same time, nor can
    /// a shard moving out take a merge: the merge's commit would grow a record
    /// that no longer owns anything, and the merged range would have no owner.
    func testAShardCannotTakeAMergeAndMoveOutAtOnce() async throws {
        let dir = TemporaryDirectory()
        let (a, b) = try makePair(dir, shards: 2, targetShards: 0)  // a: kg[0,128) and kg[128,256)
        let c = try ShardEngine.create(at: dir.path("c"), shards: 0, partitioning: .hash(keyGroups: 256), options: engineOptions())
        defer { a.close(); b.close(); c.close() }
        let oracle = try load(a, count: 400)
        _ = try await a.migrate(Self.request(shard: 0), to: b)  // b's shard 0 now owns kg[0,128)

        // The merge first: b's shard 0 cannot move out.
        let merge = try await MigrationCoordinator(source: a, target: b).makePlan(Self.request(shard: 1, mergeInto: 0, id: "merge"))
        let out = try await MigrationCoordinator(source: b, target: c).makePlan(Self.request(shard: 0, id: "out"))
        try a.prepareOutgoing(merge)
        _ = try b.prepareIncoming(merge, snapshotSequence: try a.openBulk(merge))
        let refusedOut = assertShardDBError(.migrationConflict, try b.prepareOutgoing(out))
        XCTAssertTrue(refusedOut?.message.contains("migration merge") ?? false, refusedOut?.message ?? "")
        XCTAssertNil(try b.migrationEntry("out"), "a refused prepare records nothing")
        try b.abortIncoming(merge)
        try a.abortOutgoing(merge)

        // The move out first: b's shard 0 cannot take the merge.
        try b.prepareOutgoing(out)
        let merge2 = try await MigrationCoordinator(source: a, target: b).makePlan(Self.request(shard: 1, mergeInto: 0, id: "merge2"))
        try a.prepareOutgoing(merge2)
        let refusedMerge = assertShardDBError(.migrationConflict, try b.prepareIncoming(merge2, snapshotSequence: try a.openBulk(merge2)))
        XCTAssertTrue(refusedMerge?.message.contains("migration out") ?? false, refusedMerge?.message ?? "")
        try a.abortOutgoing(merge2)
        try b.abortOutgoing(out)

        // Nor a range at the end the merge grows (kg[64,128) next to the merged kg[128,256)):
        // once the merge committed, it would be in the shard's middle and the source could
        // never record its move (the range stayed fenced for good). Either order is refused.
        let endOut = try await MigrationCoordinator(source: b, target: c).makePlan(
            Self.request(shard: 0, range: .keyGroups(KeyGroupRange(64, 128)), id: "end-out"))
        let merge3 = try await MigrationCoordinator(source: a, target: b).makePlan(Self.request(shard: 1, mergeInto: 0, id: "merge3"))
        try b.prepareOutgoing(endOut)
        try a.prepareOutgoing(merge3)
        assertShardDBError(.migrationConflict, try b.prepareIncoming(merge3, snapshotSequence: try a.openBulk(merge3)))
        try b.abortOutgoing(endOut)
        _ = try b.prepareIncoming(merge3, snapshotSequence: try a.openBulk(merge3))
        let endOut2 = try await MigrationCoordinator(source: b, target: c).makePlan(
            Self.request(shard: 0, range: .keyGroups(KeyGroupRange(64, 128)), id: "end-out2"))
        assertShardDBError(.migrationConflict, try b.prepareOutgoing(endOut2))
        // The other end may move meanwhile.
        let otherEnd = try await MigrationCoordinator(source: b, target: c).makePlan(
            Self.request(shard: 0, range: .keyGroups(KeyGroupRange(0, 64)), id: "other-end"))
        try b.prepareOutgoing(otherEnd)
        try b.abortOutgoing(otherEnd)
        try b.abortIncoming(merge3)
        try a.abortOutgoing(merge3)

        // One after the other, both run; every key has exactly its one owner.
        _ = try await a.migrate(Self.request(shard: 1, mergeInto: 0), to: b)
        _ = try await b.migrate(Self.request(shard: 0), to: c)
        for (k, v) in oracle { XCTAssertEqual(try read(k, [a, b, c]), v) }
        XCTAssertEqual(try c.contents().count, oracle.count)
    }

    /// A commit and an abort of one migration never both take effect: an abort
    /// that comes in after the commit's first check (a second coordinator, a
    /// retried call) wins, and the commit fails instead of overwriting it.
    func testAnAbortDuringACommitWinsOnBothSides() async throws {
        let dir = TemporaryDirectory()
        let (source, target) = try makePair(dir, shards: 2)
        defer { source.close(); target.close(); FailurePoints.disarmAll() }
        let oracle = try load(source, count: 300)
        for side in ["target", "source"] {
            let plan = try await MigrationCoordinator(source: source, target: target).makePlan(Self.request(shard: 1, id: "race-\(side)"))
            let s = try copyBulk(plan, from: source, to: target)
            let final = try source.fenceOutgoing(plan)
            if side == "target" {
                FailurePoints.arm("migration.target.before-commit", action: .call(.init {
                    do { try target.abortIncoming(plan) } catch { XCTFail("abort: \(error)") }
                }))
                assertShardDBError(.migrationConflict, try target.catchUpAndCommit(plan, from: source, next: s + 1, final: final))
                XCTAssertEqual(try target.migrationEntry(plan.id)?.phase, .aborted)
                try source.abortOutgoing(plan)
            } else {
                try target.catchUpAndCommit(plan, from: source, next: s + 1, final: final)
                FailurePoints.arm("migration.source.before-commit", action: .call(.init {
                    do { try source.abortOutgoing(plan) } catch { XCTFail("abort: \(error)") }
                }))
                assertShardDBError(.migrationConflict, try source.commitOutgoing(plan))
                XCTAssertEqual(try source.migrationEntry(plan.id)?.phase, .aborted)
            }
        }
        // The target-side race rolled back: the source still owns shard 1 and serves every key.
        XCTAssertEqual(try target.migrationEntry("race-target")?.phase, .aborted)
        XCTAssertEqual(try source.migrationEntry("race-target")?.phase, .aborted)
        // (The source-side race is staged: its target committed, which a real abort
        // would have refused first. What matters here is that the source kept the range.)
        XCTAssertEqual(try source.contents(), oracle, "the source serves every key after both aborts")
    }

    /// Once the bulk copy is done, the staged copy takes changes newer than the
    /// snapshot: a bulk chunk replayed then (an old stream, a late retry) must not
    /// write its older values over them. A retry of an applied chunk is answered
    /// as applied, a chunk past the end is refused; and sequence numbers no
    /// changelog holds are refused instead of trapping.
    func testReplayedBulkChunksAndImpossibleSequencesChangeNothing() async throws {
        let dir = TemporaryDirectory()
        let (source, target) = try makePair(dir, shards: 2)
        defer { source.close(); target.close() }
        var oracle = try load(source, count: 300)
        let plan = try await MigrationCoordinator(source: source, target: target).makePlan(Self.request(shard: 1, id: "replay"))
        let moved = oracle.keys.filter { source.recordedOwner(of: $0) == 1 }
        let key = try XCTUnwrap(moved.first)
        // Changes are read only for a migration running here, as recorded.
        assertShardDBError(.migrationConflict, try source.readChanges(plan, from: 1, maxRecords: 10))
        try source.prepareOutgoing(plan)
        var altered = plan
        altered.range = .keyGroups(KeyGroupRange(0, 256))
        assertShardDBError(.migrationConflict, try source.readChanges(altered, from: 1, maxRecords: 10))
        let s = try source.openBulk(plan)
        assertShardDBError(.invalidArgument, try target.prepareIncoming(plan, snapshotSequence: .max))
        _ = try target.prepareIncoming(plan, snapshotSequence: s)
        var chunks: [BulkChunk] = []
        var after: [UInt8]? = nil
        while true {
            let chunk = try source.readBulk(plan, after: after, maxBytes: 1 << 10)
            try target.applyBulk(plan, chunk)
            chunks.append(chunk)
            after = chunk.lastKey
            if chunk.done { break }
        }
        XCTAssertTrue(chunks.contains { $0.firstEntryKey != nil })
        try source.put(key, bytes("new"))
        oracle[key] = bytes("new")
        let final = try source.fenceOutgoing(plan)
        var next = s + 1
        while next <= final {
            let chunk = try source.readChanges(plan, from: next, maxRecords: 1000)
            try target.applyChanges(plan, chunk)
            next = chunk.nextSequence
        }
        // Replays after the catch-up began: answered, nothing written.
        for chunk in chunks { try target.applyBulk(plan, chunk) }
        try target.applyBulk(plan, chunks)
        let lastStored = try XCTUnwrap(chunks.compactMap(\.lastEntryKey).last)
        let past = BulkChunk(entries: [(lastStored + [0xff], bytes("stray"))], lastKey: lastStored + [0xff], done: true)
        assertShardDBError(.migrationConflict, try target.applyBulk(plan, past))
        for nextSequence: UInt64 in [0, .max] {
            assertShardDBError(.invalidArgument, try target.applyChanges(plan, ChangeChunk(records: [], nextSequence: nextSequence, latestSequence: 0)))
        }
        try target.commitIncoming(plan, finalSequence: final)
        try source.commitOutgoing(plan)
        XCTAssertEqual(try target.get(key), bytes("new"), "the change survived the replays")
        for (k, v) in oracle { XCTAssertEqual(try read(k, [source, target]), v) }
        XCTAssertEqual(try target.contents().count, moved.count, "no stray key")
    }

    /// A scan of a shard with a fenced range waits the fence out as point reads do
    /// (it listed the range on the source while the target already served it), and
    /// fails with `.migrationInProgress` when the fence outlasts the wait.
    func testScansWaitOutAFenceLikePointReads() async throws {
        let dir = TemporaryDirectory()
        var options = engineOptions()
        options.fenceWaitSeconds = 0.2
        let source = try ShardEngine.create(at: dir.path("source"), shards: 2, partitioning: .hash(keyGroups: 256), options: options)
        let target = try ShardEngine.create(at: dir.path("target"), shards: 0, partitioning: .hash(keyGroups: 256), options: options)
        defer { source.close(); target.close() }
        let oracle = try load(source, count: 200)
        let plan = try await MigrationCoordinator(source: source, target: target).makePlan(Self.request(shard: 1, id: "scan"))
        let s = try copyBulk(plan, from: source, to: target)
        let final = try source.fenceOutgoing(plan)
        assertShardDBError(.migrationInProgress, try source.scan(ScanRequest(shard: 1)) { _ in true })
        assertShardDBError(.migrationInProgress, try source.contents())
        var unfenced = 0
        try source.scan(ScanRequest(shard: 0)) { _ in unfenced += 1; return true }
        XCTAssertGreaterThan(unfenced, 0)
        try target.catchUpAndCommit(plan, from: source, next: s + 1, final: final)
        try source.commitOutgoing(plan)
        let onSource = try source.contents(), onTarget = try target.contents()
        XCTAssertEqual(onSource.count, unfenced, "the source lists only what it still owns")
        XCTAssertEqual(onSource.count + onTarget.count, oracle.count)
    }

    /// A scan over every shard while a shard it has not visited yet moves away
    /// (the move runs to its end from inside the scan's body): the scan goes on
    /// without that shard, whose keys the target now serves. It failed with
    /// `.closed` (the family was dropped under it) or, without cleanup, listed keys
    /// the source no longer owned.
    func testAScanSkipsAShardThatMovesAwayDuringIt() throws {
        for cleanup in [true, false] {
            let dir = TemporaryDirectory()
            let (source, target) = try makePair(dir, shards: 2)
            defer { source.close(); target.close() }
            let oracle = try load(source, count: 200)
            let moving = try XCTUnwrap(source.shardDescriptors.map(\.id).max())
            var move = Self.request(shard: moving)
            move.cleanup = cleanup
            let request = move
            var seen: [[UInt8]: [UInt8]] = [:]
            try source.scan { entry in
                if seen.isEmpty {
                    XCTAssertNoThrow(try Self.waitFor { _ = try await source.migrate(request, to: target) }, "cleanup \(cleanup)")
                }
                seen[[UInt8](entry.key)] = [UInt8](entry.value)
                return true
            }
            XCTAssertEqual(seen, try source.contents(), "cleanup \(cleanup): only what the source still owns")
            XCTAssertEqual(seen.count + (try target.contents().count), oracle.count, "cleanup \(cleanup)")
            XCTAssertTrue(seen.keys.allSatisfy { source.recordedOwner(of: $0) != nil }, "cleanup \(cleanup)")
        }
    }

    /// A scan over every shard while a shard it has not visited yet takes a merge:
    /// that shard is scanned as it is now, with the merged keys (it was skipped
    /// whole: the merge's commit gives the shard another handle to the same family).
    func testAScanShowsAShardThatTookAMergeDuringIt() throws {
        let dir = TemporaryDirectory()
        let (source, target) = try makePair(dir, shards: 4)  // kg[0,64) [64,128) [128,192) [192,256)
        defer { source.close(); target.close() }
        let oracle = try load(source, count: 400)
        func lower(_ shard: ShardDescriptor) -> Int { if case .keyGroups(let groups) = shard.range { groups.lowerBound } else { 0 } }
        let ids = source.shardDescriptors.sorted { lower($0) < lower($1) }.map(\.id)
        _ = try Self.waitFor { try await source.migrate(Self.request(shard: ids[0]), to: target) }
        _ = try Self.waitFor { try await source.migrate(Self.request(shard: ids[3]), to: target) }
        // The target's shard the scan visits last, and the source's shard adjacent to it.
        let last = try XCTUnwrap(target.shardDescriptors.filter { $0.state == .active }.max { $0.id < $1.id })
        let adjacent = last.range == .keyGroups(KeyGroupRange(0, 64)) ? ids[1] : ids[2]
        var seen: [[UInt8]: [UInt8]] = [:]
        try target.scan { entry in
            if seen.isEmpty {
                XCTAssertNoThrow(try Self.waitFor {
                    _ = try await source.migrate(Self.request(shard: adjacent, mergeInto: last.id), to: target)
                })
            }
            seen[[UInt8](entry.key)] = [UInt8](entry.value)
            return true
        }
        XCTAssertEqual(seen, try target.contents(), "every key the target owns, the merged ones too")
        XCTAssertEqual(seen.count + (try source.contents().count), oracle.count)
    }

    /// Runs `body` on the concurrency pool and waits for it on this thread (a
    /// synchronous test's, never one of the pool's, which `body` may need).
    static func waitFor<T: Sendable>(_ body: @escaping @Sendable () async throws -> T) throws -> T {
        let done = DispatchSemaphore(value: 0)
        nonisolated(unsafe) var result: Result<T, Error>?
        Task {
            do { result = .success(try await body()) } catch { result = .failure(error) }
            done.signal()
        }
        guard done.wait(timeout: .now() + 120) == .success, let result else { throw CancellationError() }
        return try result.get()
    }

    /// Readers of a shard's keys while it moves away with cleanup: every read
    /// returns the value or names the new owner (`.keyNotOwned`); none fails as
    /// if the engine were closed (a read whose family was dropped between its
    /// lookup and the read did).
    func testReadsRacingAMoveEitherFindTheValueOrTheNewOwner() async throws {
        let dir = TemporaryDirectory()
        let (source, target) = try makePair(dir, shards: 2)
        defer { source.close(); target.close() }
        let oracle = try load(source, count: 400)
        let keys = oracle.keys.filter { source.recordedOwner(of: $0) == 1 }
        let stop = ManagedAtomicFlag()
        let failures = LockedResults()
        let reader = Thread {
            var i = 0
            while !stop.isSet {
                let key = keys[i % keys.count]
                i += 1
                do {
                    // Both point-read paths: one key, and one call per shard for several.
                    let value = i % 2 == 0 ? try source.get(key) : try source.multiGet([key])[0]
                    if value != oracle[key] { failures.append(.success(false)) }
                } catch let error as ShardDBError where error.code == .keyNotOwned {
                    continue
                } catch {
                    failures.append(.failure(error))
                }
            }
            stop.finish()
        }
        reader.start()
        for round in 0..<6 {
            let (from, to) = round % 2 == 0 ? (source, target) : (target, source)
            let shard = try XCTUnwrap(from.shardDescriptors.first { $0.state == .active && $0.id == from.recordedOwner(of: keys[0]) }).id
            _ = try await from.migrate(Self.request(shard: shard), to: to)
        }
        stop.set()
        stop.waitFinished()
        XCTAssertEqual(failures.count, 0, "\(failures.values.prefix(3))")
    }

    /// A batch built before its shard moved out and back (under a new shard id,
    /// in another column family) is refused, not written into the old family
    /// (dropped, or kept with its data where no read looks); one built after is written.
    func testABatchHeldAcrossAMoveOutAndBackIsRefused() async throws {
        let dir = TemporaryDirectory()
        let (a, b) = try makePair(dir, shards: 2)
        defer { a.close(); b.close() }
        let key = try XCTUnwrap((0..<100).map { bytes("k\($0)") }.first { a.recordedOwner(of: $0) == 1 })
        let held = a.makeWriteBatch()
        try held.put(key, bytes("held"))
        let away = try await a.migrate(Self.request(shard: 1), to: b)
        _ = try await b.migrate(Self.request(shard: away.targetShard), to: a)
        XCTAssertNotEqual(a.recordedOwner(of: key), 1, "the shard came back under a new id")
        assertShardDBError(.migrationConflict, try a.write(held))
        XCTAssertNil(try a.get(key))
        let fresh = a.makeWriteBatch()
        try fresh.put(key, bytes("fresh"))
        try a.write(fresh)
        XCTAssertEqual(try a.get(key), bytes("fresh"))
    }

    /// A move with `cleanup = false` keeps the range's data on the source; a later
    /// migration of that range there is refused, naming the way out (a resolve,
    /// which removes the kept data), and runs once it is taken.
    func testAMoveWithoutCleanupBlocksTheRangeUntilResolved() async throws {
        let dir = TemporaryDirectory()
        let (a, b) = try makePair(dir, shards: 2)
        defer { a.close(); b.close() }
        let oracle = try load(a, count: 200)
        var keep = Self.request(shard: 1)
        keep.cleanup = false
        let away = try await a.migrate(keep, to: b)
        do {
            _ = try await b.migrate(Self.request(shard: away.targetShard), to: a)
            XCTFail("moving the range back onto its kept data was accepted")
        } catch let error as ShardDBError {
            XCTAssertEqual(error.code, .migrationConflict)
            XCTAssertTrue(error.message.contains("--resolve"), error.message)
        }
        let settled = try await MigrationCoordinator.resolveUnfinished(source: a, target: b)
        XCTAssertEqual(settled.count, 1, "\(settled)")
        _ = try await b.migrate(Self.request(shard: away.targetShard), to: a)
        for (k, v) in oracle { XCTAssertEqual(try read(k, [a, b]), v) }
        XCTAssertEqual(try a.contents().count, oracle.count)
    }

    /// Kept data lasts only while the source stays open: the next open of the
    /// source finishes the cleanup (README: what `migrate --no-cleanup` keeps).
    func testDataKeptWithoutCleanupIsRemovedByTheNextOpenOfTheSource() async throws {
        let dir = TemporaryDirectory()
        var (a, b) = try makePair(dir, shards: 2)
        defer { a.close(); b.close() }
        let oracle = try load(a, count: 200)
        var keep = Self.request(shard: 1)
        keep.cleanup = false
        let away = try await a.migrate(keep, to: b)
        XCTAssertEqual(try a.migrationJournal().map(\.phase), [.committed])
        XCTAssertTrue(try Database.listColumnFamilies(at: dir.path("source")).contains("shard-1"))
        a.close()
        a = try ShardEngine.open(at: dir.path("source"), options: engineOptions())
        XCTAssertEqual(try a.migrationJournal().map(\.phase), [.cleaned])
        XCTAssertFalse(try Database.listColumnFamilies(at: dir.path("source")).contains("shard-1"))
        _ = try await b.migrate(Self.request(shard: away.targetShard), to: a)
        for (k, v) in oracle { XCTAssertEqual(try read(k, [a, b]), v) }
    }

    func testBadRequestsAreRefusedAndChangeNothing() async throws {
        let dir = TemporaryDirectory()
        let (source, target) = try makePair(dir, shards: 2, targetShards: 0)
        defer { source.close(); target.close() }
        let oracle = try load(source, count: 200)
        func expect(_ code: ShardDBError.Code, _ request: MigrationRequest, to other: ShardEngine? = nil, line: UInt = #line) async {
            do {
                _ = try await source.migrate(request, to: other ?? target)
                XCTFail("expected \(code)", line: line)
            } catch let error as ShardDBError {
                XCTAssertEqual(error.code, code, "\(error)", line: line)
            } catch {
                XCTFail("\(error)", line: line)
            }
        }
        // A range the source does not own (shard 0 owns kg[0,128)).
        await expect(.migrationConflict, Self.request(shard: 0, range: .keyGroups(KeyGroupRange(100, 200))))
        // A range in the middle of the shard.
        await expect(.migrationConflict, Self.request(shard: 0, range: .keyGroups(KeyGroupRange(10, 20))))
        // A shard that does not exist.
        await expect(.shardNotFound, Self.request(shard: 9))
        // Chunks of no size (or less).
        for size in [0, -1, Int.min] {
            var request = Self.request(shard: 0)
            request.bulkChunkBytes = size
            await expect(.invalidArgument, request)
        }
        // Source equal to target.
        await expect(.migrationConflict, Self.request(shard: 0), to: source)
        // Mismatched partitioning.
        let other = try ShardEngine.create(at: dir.path("other"), shards: 0, partitioning: .hash(keyGroups: 512), options: engineOptions())
        await expect(.migrationConflict, Self.request(shard: 0), to: other)
        other.close()
        // A target that already owns the range.
        _ = try await source.migrate(Self.request(shard: 1), to: target)
        let third = try ShardEngine.create(at: dir.path("third"), shards: 2, partitioning: .hash(keyGroups: 256), options: engineOptions())
        do {
            _ = try await third.migrate(Self.request(shard: 1), to: target)
            XCTFail("target already owns kg[128,256)")
        } catch let error as ShardDBError {
            XCTAssertEqual(error.code, .migrationConflict)
        }
        third.close()
        // Merge into a shard that is not adjacent: source shard 0 is kg[0,128); target shard 1 is kg[128,256) → adjacent; use a gap instead.
        await expect(.migrationConflict, Self.request(shard: 0, range: .keyGroups(KeyGroupRange(0, 64)), mergeInto: 1))
        // Overlapping concurrent migrations: a prepared one blocks another on the same range.
        let plan = try await MigrationCoordinator(source: source, target: target).makePlan(Self.request(shard: 0, id: "first"))
        try source.prepareOutgoing(plan)
        var second = plan
        second.id = "second"
        XCTAssertThrowsError(try source.prepareOutgoing(second)) { XCTAssertEqual(($0 as? ShardDBError)?.code, .migrationConflict) }
        try source.abortOutgoing(plan)
        // Nothing changed on the source beyond the one successful move.
        for (key, value) in oracle { XCTAssertEqual(try read(key, [source, target]), value) }
    }
}

/// Every test of ``MigrationTests`` again, with every bulk chunk ingested as a
/// table file. (The test of its own also makes Linux test discovery list the
/// class, and with it the inherited tests.)
final class MigrationTestsWithIngestion: MigrationTests {
    override class var ingestMinBytes: Int { 0 }

    func testBulkChunksBypassTheTargetsLog() async throws {
        let dir = TemporaryDirectory()
        var options = ShardEngineOptions.testing()
        options.migrationIngestMinBytes = Self.ingestMinBytes
        let source = try ShardEngine.create(at: dir.path("source"), shards: 1, partitioning: .hash(keyGroups: 64), options: options)
        let target = try ShardEngine.create(at: dir.path("target"), shards: 0, partitioning: .hash(keyGroups: 64), options: options)
        defer { source.close(); target.close() }
        try source.write { batch in for i in 0..<3000 { try batch.put(bytes("k\(i)"), bytes("v\(i)")) } }
        let before = try target.latestSequenceNumber()
        var request = Self.request(shard: 0)
        request.bulkChunkBytes = 8 << 10
        request.bulkTransfer = .entries
        let report = try await source.migrate(request, to: target)
        XCTAssertEqual(report.keysCopied, 3000)
        // One progress write per chunk and a few journal writes: no sequence number per key.
        XCTAssertLessThan(try target.latestSequenceNumber() - before, 200)
        XCTAssertEqual(try target.getString("k2999"), "v2999")
    }
}

/// A writer thread that puts, deletes, writes with TTLs and cross-shard
/// batches, following keys to their new owner, and records what was acknowledged.
final class OracleWriter: @unchecked Sendable {
    let engines: [ShardEngine]
    private let lock = NSLock()
    /// The last acknowledged state of each key written; nil: deleted.
    private var _acknowledged: [[UInt8]: [UInt8]?] = [:]
    private var _stop = false
    private let counters = Counters()
    var finished: Bool { counters.get(\.finished) }
    var failure: Error? { lock.lock(); defer { lock.unlock() }; return _failure }
    var movedAnswers: Int { counters.get(\.moved) }
    var writesCompleted: Int { counters.get(\.writes) }
    private var _failure: Error?

    /// Counters shared between the writer thread and the test.
    final class Counters: @unchecked Sendable {
        struct Values { var finished = false; var moved = 0; var writes = 0; var batches = 0 }
        private let lock = NSLock()
        private var values = Values()
        func get<T>(_ path: KeyPath<Values, T>) -> T { lock.lock(); defer { lock.unlock() }; return values[keyPath: path] }
        func update(_ change: (inout Values) -> Void) { lock.lock(); change(&values); lock.unlock() }
    }

    init(engines: [ShardEngine]) { self.engines = engines }

    var acknowledged: [[UInt8]: [UInt8]?] { lock.lock(); defer { lock.unlock() }; return _acknowledged }
    var batchesCompleted: Int { counters.get(\.batches) }
    func stop() { lock.lock(); _stop = true; lock.unlock() }
    private var stopped: Bool { lock.lock(); defer { lock.unlock() }; return _stop }

    /// Applies `op` on the first engine that owns the keys.
    private func onOwner(_ op: (ShardEngine) throws -> Void) throws {
        for engine in engines {
            do { try op(engine); return } catch let error as ShardDBError where error.code == .keyNotOwned {
                counters.update { $0.moved += 1 }
                continue
            }
        }
        throw ShardDBError(.keyNotOwned, "no engine owns the key")
    }

    func run(iterations: Int) {
        defer { counters.update { $0.finished = true } }
        do {
            var i = 0
            while i < iterations && !stopped {
                let key = bytes("k\(i % 5000)")
                switch i % 5 {
                case 0:
                    let value = bytes("w\(i)")
                    try onOwner { try $0.put(key, value) }
                    lock.lock(); _acknowledged[key] = value; lock.unlock()
                case 2:
                    try onOwner { try $0.delete(key) }
                    lock.lock(); _acknowledged[key] = .some(nil); lock.unlock()
                case 3:
                    // A cross-shard batch on the first engine; refused whole once a key has moved.
                    let other = bytes("k\((i * 7 + 13) % 5000)"), value = bytes("b\(i)")
                    do {
                        try engines[0].write { batch in
                            try batch.put(key, value)
                            try batch.put(other, value)
                        }
                        lock.lock(); _acknowledged[key] = value; _acknowledged[other] = value; lock.unlock()
                        counters.update { $0.batches += 1 }
                    } catch let error as ShardDBError where error.code == .keyNotOwned {
                        counters.update { $0.moved += 1 }
                    }
                default:
                    let value = bytes("t\(i)")
                    try onOwner { try $0.put(key, value, ttl: .seconds(3600)) }
                    lock.lock(); _acknowledged[key] = value; lock.unlock()
                }
                counters.update { $0.writes += 1 }
                i += 1
            }
        } catch {
            lock.lock(); _failure = error; lock.unlock()
        }
    }

}

/// What a progress callback did (the callback runs on the migrating task, one call at a time).
private final class RangeDeleteProbe: @unchecked Sendable {
    var fired = false
    var error: Error?
}

/// The same tests with the default bulk transfer: whole shards move as table files.
final class MigrationTestsWithTableFiles: MigrationTests {
    override class var bulkTransfer: BulkTransfer { .auto }

    /// Table files carry entries that expired but were not compacted away yet; they
    /// stay invisible on the target, and the expiries of live entries are unchanged.
    func testTableFilesKeepExpiriesAndExpiredEntriesStayInvisible() async throws {
        let dir = TemporaryDirectory()
        let clock = ManualClock()
        let options = ShardEngineOptions.testing(clock: clock)
        let source = try ShardEngine.create(at: dir.path("source"), shards: 1, partitioning: .hash(keyGroups: 16), options: options)
        let target = try ShardEngine.create(at: dir.path("target"), shards: 0, partitioning: .hash(keyGroups: 16), options: options)
        defer { source.close(); target.close() }
        try source.put(bytes("short"), bytes("x"), ttl: .seconds(10))
        try source.put(bytes("long"), bytes("y"), ttl: .seconds(1000))
        try source.put(bytes("forever"), bytes("z"))
        clock.advance(milliseconds: 20_000)
        let report = try await source.migrate(MigrationRequest(shard: 0), to: target)
        XCTAssertEqual(report.bulkTransfer, .tableFiles)
        XCTAssertNil(try target.get(bytes("short")))
        XCTAssertEqual(try target.getString("forever"), "z")
        var entries: [String: Int64?] = [:]
        try target.scan(ScanRequest()) { entry in
            entries[String(decoding: entry.key, as: UTF8.self)] = entry.expiresAtMilliseconds
            return true
        }
        XCTAssertEqual(entries, ["long": 1_700_000_000_000 + 1_000_000, "forever": nil])
    }

    /// Table files are hard-linked into the target by default, copied with
    /// `migrationLinkTableFiles` off; the data is the same either way.
    func testTableFilesAreLinkedOrCopied() async throws {
        for link in [true, false] {
            let dir = TemporaryDirectory()
            var options = ShardEngineOptions.testing()
            options.migrationLinkTableFiles = link
            let source = try ShardEngine.create(at: dir.path("source"), shards: 2, partitioning: .hash(keyGroups: 16), options: options)
            let target = try ShardEngine.create(at: dir.path("target"), shards: 0, partitioning: .hash(keyGroups: 16), options: options)
            defer { source.close(); target.close() }
            try source.write { batch in for i in 0..<2000 { try batch.put(bytes("k\(i)"), bytes("v\(i)")) } }
            let moving = try source.contents().filter { source.recordedOwner(of: $0.key) == 1 }
            // The protocol by hand, to see the exported files before the import takes them.
            let plan = try await MigrationCoordinator(source: source, target: target).makePlan(MigrationRequest(shard: 1, id: "files"))
            try source.prepareOutgoing(plan)
            _ = try target.prepareIncoming(plan, snapshotSequence: try source.openBulk(plan))
            let files = try XCTUnwrap(try source.exportTableFiles(plan))
            func inode(_ path: String) throws -> Int {
                try XCTUnwrap(FileManager.default.attributesOfItem(atPath: path)[.systemFileNumber] as? Int, path)
            }
            let exported = Set(try files.map { try inode($0.path) })
            XCTAssertTrue(try target.importTableFiles(plan, files))
            source.releaseTableFiles(plan)
            // Linked: the target's table files are the export's inodes; copied: none of them.
            let tables = try FileManager.default.contentsOfDirectory(atPath: dir.path("target")).filter { $0.hasSuffix(".sst") }
            let imported = Set(try tables.map { try inode(dir.path("target") + "/" + $0) })
            XCTAssertEqual(!imported.isDisjoint(with: exported), link, "link \(link): exported \(exported), target \(imported)")
            let staging = try target.database.columnFamily(named: "shard-1")
            var staged = 0
            let iterator = try target.database.makeIterator(in: staging)
            iterator.seekToFirst()
            while iterator.isValid { staged += 1; iterator.next() }
            XCTAssertEqual(staged, moving.count)
            for folder in ["source/migration-export", "target/migration-import"] {
                XCTAssertEqual((try? FileManager.default.contentsOfDirectory(atPath: dir.path(folder))) ?? [], [], folder)
            }
            try target.abortIncoming(plan)
            try source.abortOutgoing(plan)
        }
    }

    /// A shard holding range tombstones moves as entries: RocksDB 7.8's import would
    /// lose a tombstone reaching past its file's point keys (facebook/rocksdb#11252).
    func testShardWithRangeTombstonesMovesAsEntries() async throws {
        let dir = TemporaryDirectory()
        let source = try ShardEngine.create(at: dir.path("source"), shards: 1, partitioning: .hash(keyGroups: 1), options: .testing())
        let target = try ShardEngine.create(at: dir.path("target"), shards: 0, partitioning: .hash(keyGroups: 1), options: .testing())
        defer { source.close(); target.close() }
        try source.write { batch in for i in 0..<100 { try batch.put(bytes(String(format: "k%03d", i)), bytes("v")) } }
        try source.database.flush(try source.database.columnFamily(named: "shard-0"))
        try source.put(bytes("k001"), bytes("w"))
        try source.deleteRange(from: "k050", to: "k060", keyGroup: 0)
        // Asked for table files explicitly: refused, and nothing changes.
        var request = MigrationRequest(shard: 0)
        request.bulkTransfer = .tableFiles
        do {
            _ = try await source.migrate(request, to: target)
            XCTFail("a shard with range tombstones moved as table files")
        } catch let error as ShardDBError {
            XCTAssertEqual(error.code, .migrationConflict, "\(error)")
        }
        XCTAssertEqual(try source.contents().count, 90)
        XCTAssertTrue(target.shardDescriptors.isEmpty)
        let report = try await source.migrate(MigrationRequest(shard: 0), to: target)
        XCTAssertEqual(report.bulkTransfer, .entries)
        XCTAssertNil(try target.get(bytes("k055")))
        XCTAssertEqual(try target.getString("k001"), "w")
        XCTAssertEqual(try target.contents().count, 90)
    }

    /// An import raises the target's sequence number with no log record. While the
    /// target is itself the source of a migration that tails its changelog, whole
    /// shards come in as entries instead, and that changelog stays gap-free.
    func testTargetThatIsASourceTakesEntries() async throws {
        let dir = TemporaryDirectory()
        let a = try ShardEngine.create(at: dir.path("a"), shards: 2, partitioning: .hash(keyGroups: 16), options: .testing())
        let b = try ShardEngine.create(at: dir.path("b"), shards: 0, partitioning: .hash(keyGroups: 16), options: .testing())
        let c = try ShardEngine.create(at: dir.path("c"), shards: 0, partitioning: .hash(keyGroups: 16), options: .testing())
        defer { a.close(); b.close(); c.close() }
        try a.write { batch in for i in 0..<500 { try batch.put(bytes("k\(i)"), bytes("v\(i)")) } }
        let first = try await a.migrate(MigrationRequest(shard: 1), to: b)
        XCTAssertEqual(first.bulkTransfer, .tableFiles)

        // B starts moving its shard 1 on to C: prepared and bulk opened at S.
        let outgoing = try await MigrationCoordinator(source: b, target: c).makePlan(MigrationRequest(shard: 1, id: "b-to-c"))
        try b.prepareOutgoing(outgoing)
        let snapshot = try b.openBulk(outgoing)
        let onB = (0..<500).map { bytes("k\($0)") }.filter { b.recordedOwner(of: $0) == 1 }
        try b.put(onB[0], bytes("during"))

        var request = MigrationRequest(shard: 0)
        request.bulkTransfer = .tableFiles
        do {
            _ = try await a.migrate(request, to: b)
            XCTFail("imported table files while an outgoing migration tails the changelog")
        } catch let error as ShardDBError {
            XCTAssertEqual(error.code, .migrationConflict, "\(error)")
        }
        let second = try await a.migrate(MigrationRequest(shard: 0), to: b)
        XCTAssertEqual(second.bulkTransfer, .entries)
        try b.put(onB[1], bytes("after"))

        // B's outgoing changelog reads on from S+1 without a gap and holds both writes.
        var keys: [[UInt8]] = []
        var next = snapshot + 1
        while true {
            let chunk = try b.readChanges(outgoing, from: next, maxRecords: 10_000)
            keys += chunk.records.map(\.key)
            if chunk.nextSequence == next { break }
            next = chunk.nextSequence
        }
        XCTAssertEqual(keys, [onB[0], onB[1]])
        try b.abortOutgoing(outgoing)
        XCTAssertEqual(try b.contents().count, 500)
    }

    /// A second import of the same migration (a retried call that waited on the
    /// shard-map lock while the first one imported) answers true and keeps the
    /// imported data; ids that could name folders are refused; an abort removes
    /// files sent for an import.
    func testRepeatedImportKeepsTheDataAndBadIdsAreRefused() async throws {
        let dir = TemporaryDirectory()
        let source = try ShardEngine.create(at: dir.path("source"), shards: 2, partitioning: .hash(keyGroups: 16), options: .testing())
        let target = try ShardEngine.create(at: dir.path("target"), shards: 0, partitioning: .hash(keyGroups: 16), options: .testing())
        defer { source.close(); target.close() }
        try source.write { batch in for i in 0..<1000 { try batch.put(bytes("k\(i)"), bytes("v\(i)")) } }
        let moving = try source.contents().filter { source.recordedOwner(of: $0.key) == 1 }

        for id in ["..", "../x", "a/b", "", String(repeating: "x", count: 65)] {
            var plan = try await MigrationCoordinator(source: source, target: target).makePlan(MigrationRequest(shard: 1))
            plan.id = id
            XCTAssertThrowsError(try source.prepareOutgoing(plan), id) { XCTAssertEqual(($0 as? ShardDBError)?.code, .invalidArgument, "\($0)") }
            XCTAssertThrowsError(try target.prepareIncoming(plan, snapshotSequence: 1), id) {
                XCTAssertEqual(($0 as? ShardDBError)?.code, .invalidArgument, "\($0)")
            }
            source.releaseTableFiles(plan)  // never a folder outside migration-export
        }
        XCTAssertTrue(FileManager.default.fileExists(atPath: dir.path("source") + "/CURRENT"))
        do {
            var request = MigrationRequest(shard: 1)
            request.id = "../../escape"
            _ = try await source.migrate(request, to: target)
            XCTFail("a path as migration id")
        } catch let error as ShardDBError {
            XCTAssertEqual(error.code, .invalidArgument)
        }

        let plan = try await MigrationCoordinator(source: source, target: target).makePlan(MigrationRequest(shard: 1, id: "twice"))
        try source.prepareOutgoing(plan)
        let snapshot = try source.openBulk(plan)
        _ = try target.prepareIncoming(plan, snapshotSequence: snapshot)
        let files = try XCTUnwrap(try source.exportTableFiles(plan))
        // Both calls start while the shard-map lock is held (when the threads get
        // there in time, both are past their first look at the progress before
        // either imports); either way both must answer true and the data must be there.
        let results = LockedResults()
        let started = DispatchGroup()
        target.shardMapLock.withLock { _ in
            for _ in 0..<2 {
                started.enter()
                Thread {
                    started.leave()
                    results.append(Result { try target.importTableFiles(plan, files) })
                }.start()
            }
            started.wait()
            usleep(100_000)
        }
        let deadline = Date().addingTimeInterval(120)
        while results.count < 2 && Date() < deadline { usleep(1_000) }
        XCTAssertEqual(results.values.map { (try? $0.get()) ?? false }, [true, true], "\(results.values)")
        source.releaseTableFiles(plan)
        let final = try source.fenceOutgoing(plan)
        var next = snapshot + 1
        while next <= final {
            let chunk = try source.readChanges(plan, from: next, maxRecords: 10_000)
            try target.applyChanges(plan, chunk)
            if chunk.nextSequence == next { break }
            next = chunk.nextSequence
        }
        try target.commitIncoming(plan, finalSequence: final)
        try source.commitOutgoing(plan)
        XCTAssertEqual(try target.contents(), moving)

        // Files sent for an import and then abandoned go with the abort.
        let other = try await MigrationCoordinator(source: source, target: target).makePlan(MigrationRequest(shard: 0, id: "abandoned"))
        try source.prepareOutgoing(other)
        _ = try target.prepareIncoming(other, snapshotSequence: try source.openBulk(other))
        try target.writeTableFile(other, name: "000007.sst", offset: 0, Data([1, 2, 3]))
        XCTAssertTrue(FileManager.default.fileExists(atPath: dir.path("target") + "/migration-import/abandoned/000007.sst"))
        try target.abortIncoming(other)
        try source.abortOutgoing(other)
        XCTAssertFalse(FileManager.default.fileExists(atPath: dir.path("target") + "/migration-import/abandoned"))
    }

    /// Table files received for a migration still in its bulk copy survive a
    /// reopen of the target (a pull or relay resumes into them); those of a
    /// finished migration or of none are removed at open.
    func testReopenKeepsOnlyTableFilesOfMigrationsStillCopying() async throws {
        let dir = TemporaryDirectory()
        let source = try ShardEngine.create(at: dir.path("source"), shards: 2, options: .testing())
        defer { source.close() }
        let targetPath = dir.path("target")
        var target = try ShardEngine.create(at: targetPath, shards: 0, options: .testing())
        let plan = try await MigrationCoordinator(source: source, target: target).makePlan(MigrationRequest(shard: 1, id: "copying"))
        try source.prepareOutgoing(plan)
        _ = try target.prepareIncoming(plan, snapshotSequence: try source.openBulk(plan))
        try target.writeTableFile(plan, name: "000007.sst", offset: 0, Data([1, 2, 3]))
        let stray = targetPath + "/migration-import/finished-long-ago"
        try FileManager.default.createDirectory(atPath: stray, withIntermediateDirectories: true)
        FileManager.default.createFile(atPath: stray + "/000009.sst", contents: Data([4]))
        target.close()

        target = try ShardEngine.open(at: targetPath, options: .testing())
        defer { target.close() }
        XCTAssertEqual(FileManager.default.contents(atPath: targetPath + "/migration-import/copying/000007.sst"), Data([1, 2, 3]))
        XCTAssertFalse(FileManager.default.fileExists(atPath: stray))
        // The next piece continues the file; an abort then removes it.
        try target.writeTableFile(plan, name: "000007.sst", offset: 3, Data([5]))
        XCTAssertEqual(FileManager.default.contents(atPath: targetPath + "/migration-import/copying/000007.sst"), Data([1, 2, 3, 5]))
        // Written unsynced, then synced (as a pull does, one piece behind); names that are no table file's are refused.
        try target.writeTableFile(plan, name: "000007.sst", offset: 4, Data([6]), sync: false)
        try target.syncTableFile(plan, name: "000007.sst")
        XCTAssertEqual(FileManager.default.contents(atPath: targetPath + "/migration-import/copying/000007.sst"), Data([1, 2, 3, 5, 6]))
        // A file begun unsynced (its name made durable by the sync, with its bytes) takes more pieces so.
        try target.writeTableFile(plan, name: "000010.sst", offset: 0, Data([7, 8]), sync: false)
        try target.writeTableFile(plan, name: "000010.sst", offset: 2, Data([9]), sync: false)
        try target.syncTableFile(plan, name: "000010.sst")
        XCTAssertEqual(FileManager.default.contents(atPath: targetPath + "/migration-import/copying/000010.sst"), Data([7, 8, 9]))
        assertShardDBError(.invalidArgument, try target.syncTableFile(plan, name: "../000007.sst"))
        assertShardDBError(.notWritable, try target.syncTableFile(plan, name: "000099.sst"))
        // A first piece past the start of a file is refused and leaves no empty file behind.
        assertShardDBError(.invalidArgument, try target.writeTableFile(plan, name: "000008.sst", offset: 10, Data([1])))
        XCTAssertFalse(FileManager.default.fileExists(atPath: targetPath + "/migration-import/copying/000008.sst"))
        try target.abortIncoming(plan)
        try source.abortOutgoing(plan)
        target.close()
        target = try ShardEngine.open(at: targetPath, options: .testing())
        XCTAssertFalse(FileManager.default.fileExists(atPath: targetPath + "/migration-import/copying"))
    }

    /// Part of a shard moves as entries; asking for table files is refused before anything is copied.
    func testSplitRefusesTableFiles() async throws {
        let dir = TemporaryDirectory()
        let source = try ShardEngine.create(at: dir.path("source"), shards: 1, partitioning: .hash(keyGroups: 16), options: .testing())
        let target = try ShardEngine.create(at: dir.path("target"), shards: 0, partitioning: .hash(keyGroups: 16), options: .testing())
        defer { source.close(); target.close() }
        try source.write { batch in for i in 0..<200 { try batch.put(bytes("k\(i)"), bytes("v")) } }
        var request = MigrationRequest(shard: 0, range: .keyGroups(KeyGroupRange(8, 16)))
        request.bulkTransfer = .tableFiles
        do {
            _ = try await source.migrate(request, to: target)
            XCTFail("part of a shard moved as table files")
        } catch let error as ShardDBError {
            XCTAssertEqual(error.code, .migrationConflict, "\(error)")
        }
        XCTAssertEqual(try source.contents().count, 200)
        XCTAssertTrue(target.shardDescriptors.isEmpty)
        request.bulkTransfer = .auto
        let report = try await source.migrate(request, to: target)
        XCTAssertEqual(report.bulkTransfer, .entries)
        XCTAssertEqual(try source.contents().count + (try target.contents().count), 200)
    }
}

/// Results collected from several threads.
final class LockedResults: @unchecked Sendable {
    private let lock = NSLock()
    private var results: [Result<Bool, Error>] = []
    func append(_ result: Result<Bool, Error>) { lock.lock(); results.append(result); lock.unlock() }
    var count: Int { lock.lock(); defer { lock.unlock() }; return results.count }
    var values: [Result<Bool, Error>] { lock.lock(); defer { lock.unlock() }; return results }
}
