import Foundation
import ShardDB
@testable import ShardDBServer
import XCTest

/// A merge into a target that already owns the range, between `shardctl serve`
/// processes: the conflict policy travels with the plan, so the overlap is
/// refused without one and settled by it with one, exactly as in one process.
final class RemoteConflictPolicyTests: XCTestCase {
    func testOverlappingMergeIsRefusedWithoutAPolicyAndSettledByOne() async throws {
        let workspace = try Workspace("RemoteConflict")
        // Twins: each has one shard owning every key group.
        let aDir = workspace.path("a"), bDir = workspace.path("b")
        do {
            let a = try ShardEngine.create(at: aDir, shards: 1)
            let b = try ShardEngine.create(at: bDir, shards: 1)
            for i in 0..<300 {
                try a.put("both-\(i)", "from-a-\(i)")
                try b.put("both-\(i)", "from-b-\(i)")
                try a.put("only-a-\(i)", "a\(i)")
                try b.put("only-b-\(i)", "b\(i)")
            }
            a.close(); b.close()
        }
        let a = try ServeProcess(directory: aDir, tokenFile: workspace.tokenFile)
        let b = try ServeProcess(directory: bDir, tokenFile: workspace.tokenFile)
        let migrate = { (extra: [String]) in
            try await Task.detached {
                try Shardctl.run(["migrate", "--from", a.address.description, "--to", b.address.description, "--shard", "0",
                                  "--token-file", workspace.tokenFile] + extra)
            }.value
        }

        let refused = try await migrate([])
        XCTAssertEqual(refused.status, 2, refused.stderr)
        XCTAssertTrue(refused.stderr.contains("pick a conflict policy"), refused.stderr)

        let merged = try await migrate(["--on-conflict", "source-wins", "--json"])
        XCTAssertEqual(merged.status, 0, merged.stderr)

        let target = try workspace.client(b.address)
        for i in stride(from: 0, to: 300, by: 7) {
            let both = try await target.get(Array("both-\(i)".utf8))
            XCTAssertEqual(both.map { String(decoding: $0, as: UTF8.self) }, "from-a-\(i)", "source wins")
            let onlyA = try await target.get(Array("only-a-\(i)".utf8))
            XCTAssertEqual(onlyA.map { String(decoding: $0, as: UTF8.self) }, "a\(i)")
            let onlyB = try await target.get(Array("only-b-\(i)".utf8))
            XCTAssertEqual(onlyB.map { String(decoding: $0, as: UTF8.self) }, "b\(i)")
        }
        await target.close()
        XCTAssertEqual(a.terminate(), 0)
        XCTAssertEqual(b.terminate(), 0)
    }

    /// The policy and the overlap survive the wire; a policy this build does not
    /// know is a malformed plan, never read as "refuse" or anything else.
    func testPlanCarriesPolicyAndOverlapAndRefusesUnknownPolicies() throws {
        let plan = MigrationPlan(id: "m", sourceInstance: "s", targetInstance: "t", sourceLocation: "a", targetLocation: "b",
                                 sourceShard: 0, range: .keyGroups(KeyGroupRange(0, 100)), shape: .mergeInto(shard: 3),
                                 targetShard: 3, onConflict: .lastWriteWins, overlap: .keyGroups(KeyGroupRange(10, 20)))
        let decoded = try WireMigrationPlan(plan).decoded()
        XCTAssertEqual(decoded.onConflict, .lastWriteWins)
        XCTAssertEqual(decoded.overlap, .keyGroups(KeyGroupRange(10, 20)))
        XCTAssertNil(try WireMigrationPlan(MigrationPlan(id: "m", sourceInstance: "s", targetInstance: "t", sourceLocation: "a",
                                                         targetLocation: "b", sourceShard: 0, range: .keyGroups(KeyGroupRange(0, 100)),
                                                         shape: .newShard, targetShard: 1)).decoded().onConflict)
        var unknown = WireMigrationPlan(plan)
        unknown.onConflict = "newest"
        XCTAssertThrowsError(try unknown.decoded()) {
            XCTAssertEqual(($0 as? ShardDBError)?.code, .invalidArgument, "\($0)")
            XCTAssertTrue("\($0)".contains("newest"), "\($0)")
        }
    }

    /// Shard ids from a peer outside what an instance stores are malformed, in a
    /// plan and in a shard map (the coordinator's `max + 1` must not overflow).
    func testShardIDsOutOfRangeAreMalformed() throws {
        let plan = MigrationPlan(id: "m", sourceInstance: "s", targetInstance: "t", sourceLocation: "a", targetLocation: "b",
                                 sourceShard: 0, range: .keyGroups(KeyGroupRange(0, 100)), shape: .mergeInto(shard: 3), targetShard: 3)
        let mutations: [(String, (inout WireMigrationPlan) -> Void)] = [
            ("source shard", { $0.sourceShard = Int64.max }), ("target shard", { $0.targetShard = -1 }),
            ("merge-into shard", { $0.mergeIntoShard = Int64(ShardDescriptor.maxID) + 1 }),
        ]
        for (what, mutate) in mutations {
            var wire = WireMigrationPlan(plan)
            mutate(&wire)
            XCTAssertThrowsError(try wire.decoded(), what) {
                XCTAssertEqual(($0 as? ShardDBError)?.code, .invalidArgument, "\(what): \($0)")
                XCTAssertTrue("\($0)".contains("out of range"), "\(what): \($0)")
            }
        }
        var shard = WireShardDescriptor(ShardDescriptor(id: ShardDescriptor.maxID, range: .keyGroups(KeyGroupRange(0, 1))))
        XCTAssertEqual(try shard.decoded().id, ShardDescriptor.maxID)
        shard.id = Int64.max
        XCTAssertThrowsError(try shard.decoded())
    }
}
