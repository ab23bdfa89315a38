import Foundation
@testable import ShardDB
import XCTest

/// Default TTLs out of bounds never wrap around to a short expiry: one a peer
/// sends in a plan is refused, one stored before defaults were bounded fails
/// each write with `.invalidTTL` instead of expiring values at once.
final class TTLBoundsTests: XCTestCase {
    func testAShardDefaultThatOverflowsIsRefusedNotWrapped() throws {
        let now: Int64 = 1_700_000_000_000
        // 2^63 / 500 s is 384 ms after wrapping in milliseconds.
        for seconds: Int64 in [Int64.max / 500, Int64.max / 1000 + 1, Int64.max] {
            XCTAssertThrowsError(try TTL.shardDefault.expiry(now: now, shardDefaultSeconds: seconds), "\(seconds)") { error in
                XCTAssertEqual((error as? ShardDBError)?.code, .invalidTTL, "\(error)")
            }
        }
        XCTAssertEqual(try TTL.shardDefault.expiry(now: now, shardDefaultSeconds: 60), now + 60_000)
        XCTAssertEqual(try TTL.shardDefault.expiry(now: now, shardDefaultSeconds: TTL.maxSeconds), now + TTL.maxSeconds * 1000)
    }

    func testAPlanWithADefaultTTLOutOfBoundsIsRefusedByTheTarget() async throws {
        let dir = TemporaryDirectory()
        let source = try ShardEngine.create(at: dir.path("source"), shards: 2, options: .testing())
        let target = try ShardEngine.create(at: dir.path("target"), shards: 0, options: .testing())
        defer { source.close(); target.close() }
        var plan = try await MigrationCoordinator(source: source, target: target).makePlan(MigrationRequest(shard: 1, id: "ttl"))
        for seconds: Int64 in [Int64.max / 500, 0, -5, TTL.maxSeconds + 1] {
            plan.defaultTTLSeconds = seconds
            XCTAssertThrowsError(try target.prepareIncoming(plan, snapshotSequence: 1), "\(seconds)") { error in
                XCTAssertEqual((error as? ShardDBError)?.code, .invalidTTL, "\(error)")
            }
            XCTAssertNil(try target.migrationEntry(plan.id), "nothing journaled for \(seconds)")
        }
        XCTAssertEqual(target.shardDescriptors, [])
        plan.defaultTTLSeconds = 3600
        _ = try target.prepareIncoming(plan, snapshotSequence: 1)
        try target.abortIncoming(plan)
    }
}
