import Foundation
import RocksDB
import ShardDB
import Synchronization
import TestSupport
import XCTest

final class TTLTests: XCTestCase {
    private let start: Int64 = 1_700_000_000_000

    func testValueExpiresExactlyAtItsExpiry() throws {
        let directory = TemporaryDirectory()
        let clock = ManualClock(milliseconds: start)
        let engine = try makeEngine(in: directory, shards: 2, clock: clock)
        defer { engine.close() }
        try engine.put("k", "v", ttl: .milliseconds(1_000))
        try engine.put("forever", "v")
        XCTAssertEqual(try engine.entries(ScanRequest(prefix: bytes("k"))).count, 1)
        var expiry: Int64?
        try engine.scan(ScanRequest(prefix: bytes("k"))) { expiry = $0.expiresAtMilliseconds; return true }
        XCTAssertEqual(expiry, start + 1_000)

        clock.set(milliseconds: start + 999)
        XCTAssertEqual(try engine.getString("k"), "v")
        XCTAssertEqual(try engine.multiGet([bytes("k")]), [bytes("v")])

        clock.set(milliseconds: start + 1_000)
        XCTAssertNil(try engine.get("k"))
        XCTAssertNil(try engine.withValue(forKey: bytes("k")) { Array($0) })
        XCTAssertEqual(try engine.multiGet([bytes("k"), bytes("forever")]), [nil, bytes("v")])
        XCTAssertEqual(try engine.keys(), [bytes("forever")])

        // Going back in time makes it visible again: nothing was deleted yet.
        clock.set(milliseconds: start + 500)
        XCTAssertEqual(try engine.getString("k"), "v")
    }

    func testExpiryBeforeTheEpochIsStoredAndHonoured() throws {
        // A clock set before 1970 gives negative expiries; the header stores their bit pattern.
        let directory = TemporaryDirectory()
        let clock = ManualClock(milliseconds: -10_000)
        let engine = try makeEngine(in: directory, shards: 2, clock: clock)
        defer { engine.close() }
        try engine.put("k", "v", ttl: .milliseconds(1_000))
        var expiry: Int64?
        try engine.scan { expiry = $0.expiresAtMilliseconds; return true }
        XCTAssertEqual(expiry, -9_000)
        clock.set(milliseconds: -9_001)
        XCTAssertEqual(try engine.getString("k"), "v")
        clock.set(milliseconds: -9_000)
        XCTAssertNil(try engine.get("k"))
        XCTAssertEqual(try engine.purgeExpired(), 1)
    }

    func testExpiredEntriesAreInvisibleBeforeCompactionAndGoneAfterPurge() throws {
        let directory = TemporaryDirectory()
        let path = directory.path("instance")
        let clock = ManualClock(milliseconds: start)
        let engine = try ShardEngine.create(at: path, shards: 4, partitioning: .hash(keyGroups: 128), options: .testing(clock: clock))
        for i in 0..<100 { try engine.put("short\(i)", "v", ttl: .seconds(10)) }
        for i in 0..<50 { try engine.put("long\(i)", "v", ttl: .seconds(1000)) }
        for i in 0..<50 { try engine.put("never\(i)", "v") }
        clock.advance(milliseconds: 10_000)

        // Invisible to every read, while still on disk.
        XCTAssertNil(try engine.get("short0"))
        XCTAssertEqual(try engine.multiGet((0..<100).map { bytes("short\($0)") }).compactMap { $0 }, [])
        XCTAssertEqual(try engine.keys(ScanRequest(prefix: bytes("short"))), [])
        XCTAssertEqual(try engine.contents().count, 100)
        let expiredOnDisk = try (0..<4).map { try engine.estimateExpired(shard: $0) }
        XCTAssertEqual(expiredOnDisk.reduce(0, +), 100)

        XCTAssertEqual(try engine.purgeExpired(), 100)
        XCTAssertEqual(try (0..<4).map { try engine.estimateExpired(shard: $0) }, [0, 0, 0, 0])
        let infos = try engine.shards()
        XCTAssertEqual(infos.map(\.expiredDropped), expiredOnDisk)
        XCTAssertEqual(infos.map(\.estimatedKeys).reduce(0, +), 100)
        XCTAssertEqual(try engine.contents().count, 100)
        XCTAssertEqual(try engine.purgeExpired(), 0)
        engine.close()

        // Physically gone: the raw column families hold only the live entries.
        var stored: [[UInt8]] = []
        for shard in 0..<4 {
            stored += try RawInstance.entries(at: path, family: "shard-\(shard)").keys.map { Array($0.dropFirst(2)) }
        }
        XCTAssertEqual(Set(stored), Set((0..<50).flatMap { [bytes("long\($0)"), bytes("never\($0)")] }))
    }

    func testPurgeOfOneShardLeavesTheOthers() throws {
        let directory = TemporaryDirectory()
        let clock = ManualClock(milliseconds: start)
        let engine = try makeEngine(in: directory, shards: 2, partitioning: .range(splitPoints: [bytes("m")]), clock: clock)
        defer { engine.close() }
        try engine.put("apple", "v", ttl: .milliseconds(1))
        try engine.put("zebra", "v", ttl: .milliseconds(1))
        clock.advance(milliseconds: 1)
        XCTAssertEqual(try engine.purgeExpired(shard: 1), 1)
        XCTAssertEqual(try engine.estimateExpired(shard: 0), 1)
        XCTAssertEqual(try engine.estimateExpired(shard: 1), 0)
        XCTAssertEqual(try engine.shards().map(\.expiredDropped), [0, 1])
    }

    func testPerKeyTTLOverridesTheShardDefault() throws {
        let directory = TemporaryDirectory()
        let clock = ManualClock(milliseconds: start)
        let engine = try makeEngine(in: directory, shards: 2, defaultTTLSeconds: 10, clock: clock)
        defer { engine.close() }
        try engine.put("default", "v")
        try engine.put("shorter", "v", ttl: .milliseconds(500))
        try engine.put("longer", "v", ttl: .seconds(60))
        try engine.put("never", "v", ttl: .never)
        try engine.write { batch in
            try batch.put("batch-default", "v")
            try batch.put("batch-never", "v", ttl: .never)
        }
        var expiries: [String: Int64?] = [:]
        try engine.scan { entry in
            expiries[text([UInt8](entry.key))!] = entry.expiresAtMilliseconds
            return true
        }
        XCTAssertEqual(expiries, ["default": start + 10_000, "shorter": start + 500, "longer": start + 60_000,
                                  "never": nil, "batch-default": start + 10_000, "batch-never": nil])

        clock.set(milliseconds: start + 500)
        XCTAssertNil(try engine.get("shorter"))
        XCTAssertNotNil(try engine.get("default"))
        clock.set(milliseconds: start + 10_000)
        XCTAssertEqual(Set(try engine.keys()), Set(["longer", "never", "batch-never"].map(bytes)))
        clock.advance(milliseconds: 365 * 24 * 3600 * 1000)
        XCTAssertEqual(Set(try engine.keys()), Set(["never", "batch-never"].map(bytes)))
        XCTAssertEqual(try engine.purgeExpired(), 4)
        XCTAssertEqual(Set(try engine.keys()), Set(["never", "batch-never"].map(bytes)))
    }

    func testExpiryIsAbsoluteAcrossReopen() throws {
        let directory = TemporaryDirectory()
        let path = directory.path("instance")
        let clock = ManualClock(milliseconds: start)
        let options = ShardEngineOptions.testing(clock: clock)
        let engine = try ShardEngine.create(at: path, shards: 2, options: options)
        try engine.put("k", "v", ttl: .seconds(10))
        try engine.put("early", "v", ttl: .seconds(1))
        engine.close()

        clock.set(milliseconds: start + 5_000)
        let reopened = try ShardEngine.open(at: path, options: options)
        defer { reopened.close() }
        XCTAssertNil(try reopened.get("early"))
        XCTAssertEqual(try reopened.getString("k"), "v")
        var expiry: Int64?
        try reopened.scan { expiry = $0.expiresAtMilliseconds; return true }
        XCTAssertEqual(expiry, start + 10_000, "the expiry does not restart at reopen")
        clock.set(milliseconds: start + 10_000)
        XCTAssertNil(try reopened.get("k"))
    }

    func testInvalidTTLsAreRefusedAndWriteNothing() throws {
        let directory = TemporaryDirectory()
        let clock = ManualClock(milliseconds: start)
        let engine = try makeEngine(in: directory, shards: 2, clock: clock)
        defer { engine.close() }
        try engine.put("existing", "old")
        for ttl in [TTL.milliseconds(0), .milliseconds(-1), .milliseconds(Int64.min), .milliseconds(Int64.max),
                    .seconds(0), .seconds(-5), .seconds(Int64.max), .seconds(Int64.max / 1000)] {
            assertShardDBError(.invalidTTL, try engine.put("existing", "new", ttl: ttl))
            assertShardDBError(.invalidTTL, try engine.put("fresh", "new", ttl: ttl))
            assertShardDBError(.invalidTTL, try engine.write { batch in
                try batch.put("in-batch", "v")
                try batch.put("fresh", "new", ttl: ttl)
            })
        }
        XCTAssertEqual(try engine.contents(), [bytes("existing"): bytes("old")])
        // The largest representable expiry is accepted.
        try engine.put("far", "v", ttl: .milliseconds(Int64.max - start))
        XCTAssertEqual(try engine.getString("far"), "v")
    }

    func testInvalidDefaultTTLIsRefusedAndLeavesTheShardMap() throws {
        let directory = TemporaryDirectory()
        let engine = try makeEngine(in: directory, shards: 2, defaultTTLSeconds: 30)
        defer { engine.close() }
        let before = engine.shardDescriptors
        // Int64.max / 1000 seconds was accepted once, and then every write overflowed its expiry.
        for seconds: Int64 in [0, -1, Int64.max, Int64.max / 1000, TTL.maxSeconds + 1] {
            assertShardDBError(.invalidTTL, try engine.setDefaultTTL(shard: 0, seconds: seconds))
        }
        XCTAssertEqual(engine.shardDescriptors, before)
        try engine.setDefaultTTL(shard: 0, seconds: TTL.maxSeconds)
        XCTAssertEqual(engine.shardDescriptors[0].defaultTTLSeconds, TTL.maxSeconds)
        try engine.put("written", "under the longest default TTL")  // its expiry fits
        XCTAssertEqual(try engine.getString("written"), "under the longest default TTL")
    }

    func testDefaultTTLChangesPersistAcrossReopen() throws {
        let directory = TemporaryDirectory()
        let path = directory.path("instance")
        let clock = ManualClock(milliseconds: start)
        let options = ShardEngineOptions.testing(clock: clock)
        let engine = try ShardEngine.create(at: path, shards: 3, partitioning: .range(splitPoints: [bytes("h"), bytes("p")]),
                                            defaultTTLSeconds: 100, options: options)
        try engine.setDefaultTTL(shard: 0, seconds: nil)
        try engine.setDefaultTTL(shard: 1, seconds: 120)
        try engine.put("apple", "v")
        XCTAssertEqual(try engine.entries().count, 1)
        engine.close()

        let reopened = try ShardEngine.open(at: path, options: options)
        defer { reopened.close() }
        XCTAssertEqual(reopened.shardDescriptors.map(\.defaultTTLSeconds), [nil, 120, 100])
        try reopened.put("apple", "v")
        try reopened.put("kiwi", "v")
        try reopened.put("zebra", "v")
        var expiries: [String: Int64?] = [:]
        try reopened.scan { entry in
            expiries[text([UInt8](entry.key))!] = entry.expiresAtMilliseconds
            return true
        }
        XCTAssertEqual(expiries, ["apple": nil, "kiwi": start + 120_000, "zebra": start + 100_000])
    }

    func testExpiredDroppedMetricAccumulatesAcrossReopen() throws {
        let directory = TemporaryDirectory()
        let path = directory.path("instance")
        let clock = ManualClock(milliseconds: start)
        let options = ShardEngineOptions.testing(clock: clock)
        let engine = try ShardEngine.create(at: path, shards: 2, partitioning: .range(splitPoints: [bytes("m")]), options: options)
        for i in 0..<5 { try engine.put("a\(i)", "v", ttl: .seconds(1)) }
        for i in 0..<3 { try engine.put("z\(i)", "v", ttl: .seconds(1)) }
        clock.advance(milliseconds: 1_000)
        XCTAssertEqual(try engine.purgeExpired(), 8)
        XCTAssertEqual(try engine.shards().map(\.expiredDropped), [5, 3])
        engine.close()

        let reopened = try ShardEngine.open(at: path, options: options)
        XCTAssertEqual(try reopened.shards().map(\.expiredDropped), [5, 3])
        try reopened.put("b", "v", ttl: .seconds(1))
        clock.advance(milliseconds: 1_000)
        XCTAssertEqual(try reopened.purgeExpired(), 1)
        XCTAssertEqual(try reopened.shards().map(\.expiredDropped), [6, 3])
        reopened.close()

        let again = try ShardEngine.open(at: path, options: options)
        defer { again.close() }
        XCTAssertEqual(try again.shards().map(\.expiredDropped), [6, 3])
    }

    func testWritesMadeWhilePurgeCompactsAreKept() throws {
        let directory = TemporaryDirectory()
        let clock = ManualClock(milliseconds: start)
        let engine = try makeEngine(in: directory, shards: 4, partitioning: .hash(keyGroups: 256), clock: clock)
        defer { engine.close() }
        for i in 0..<500 { try engine.put("old\(i)", "v", ttl: .seconds(1)) }
        clock.advance(milliseconds: 1_000)

        let writersDone = Atomic<Int>(0)
        let purges = Atomic<Int>(0)
        let failures = Mutex<[String]>([])
        runConcurrently(3) { worker in
            do {
                if worker < 2 {
                    for i in 0..<1_000 {
                        try engine.put("w\(worker)-\(i)", "value-\(i)", ttl: i % 2 == 0 ? .never : .seconds(3600))
                    }
                    writersDone.add(1, ordering: .releasing)
                } else {
                    repeat {
                        try engine.purgeExpired()
                        purges.add(1, ordering: .relaxed)
                    } while writersDone.load(ordering: .acquiring) < 2
                }
            } catch {
                failures.withLock { $0.append("worker \(worker): \(error)") }
            }
        }
        XCTAssertEqual(failures.withLock { $0 }, [])
        XCTAssertGreaterThan(purges.load(ordering: .relaxed), 0)
        for worker in 0..<2 {
            let values = try engine.multiGet((0..<1_000).map { bytes("w\(worker)-\($0)") })
            XCTAssertEqual(values, (0..<1_000).map { bytes("value-\($0)") }, "writer \(worker)")
        }
        XCTAssertEqual(try engine.contents().count, 2_000)
        try engine.purgeExpired()
        XCTAssertEqual(try engine.shards().map(\.expiredDropped).reduce(0, +), 500)
        XCTAssertEqual(try engine.contents().count, 2_000)
    }
}
