import Foundation
@testable import ShardDB
import XCTest

/// An instance that receives one migration while it sends another (a rescale
/// does this): the incoming bulk copy, ingested as table files, must not cut a
/// hole in the changelog the outgoing migration tails from its snapshot.
final class SourceAndTargetAtOnceTests: XCTestCase {
    /// Three instances in `dir`: the first with `shards` shards, two empty ones.
    private func instances(_ dir: TemporaryDirectory, shards: Int, ingestMinBytes: Int) throws -> [ShardEngine] {
        var options = ShardEngineOptions.testing()
        options.migrationIngestMinBytes = ingestMinBytes
        let part = Partitioning.hash(keyGroups: 64)
        return try ["a", "b", "c"].enumerated().map { index, name in
            try ShardEngine.create(at: dir.path(name), shards: index == 0 ? shards : 0, partitioning: part, options: options)
        }
    }

    private func tailWhileReceiving(ingestMinBytes: Int) async throws {
        let dir = TemporaryDirectory()
        let all = try instances(dir, shards: 2, ingestMinBytes: ingestMinBytes)
        let (a, x, c) = (all[0], all[1], all[2])
        defer { all.forEach { $0.close() } }
        let value = String(repeating: "v", count: 1000)
        try a.write { batch in for i in 0..<4000 { try batch.put("k\(i)", value) } }
        let shards = try a.shards().map(\.id).sorted()
        // X takes A's second shard, then starts moving it on to C (its bulk snapshot held) ...
        let first = try await a.migrate(MigrationRequest(shard: shards[1], id: "m0"), to: x)
        let outgoing = try await MigrationCoordinator(source: x, target: c).makePlan(MigrationRequest(shard: first.targetShard, id: "m2"))
        try x.prepareOutgoing(outgoing)
        let snapshot = try x.openBulk(outgoing)
        _ = try c.prepareIncoming(outgoing, snapshotSequence: snapshot)
        // ... while it receives A's first shard, bulk chunks ingested.
        let incoming = try await a.migrate(MigrationRequest(shard: shards[0], id: "m1"), to: x)
        XCTAssertGreaterThan(incoming.keysCopied, 1000)
        var written = 0
        for i in 0..<4000 where (try? x.put("k\(i)", "new")) != nil { written += 1 }
        XCTAssertGreaterThan(written, 1000)
        // The outgoing migration's changelog has no gap: every change after its snapshot is there.
        var from = snapshot + 1
        var seen = 0
        while true {
            let chunk = try x.readChanges(outgoing, from: from, maxRecords: 10_000)
            if chunk.records.isEmpty { break }
            seen += chunk.records.count
            from = chunk.nextSequence
        }
        XCTAssertGreaterThan(seen, 0, "the writes to the outgoing range are in its changelog")
        try x.abortOutgoing(outgoing)
        try c.abortIncoming(outgoing)
    }

    func testIngestedBulkCopyLeavesNoGapInAnotherMigrationsChangelog() async throws {
        try await tailWhileReceiving(ingestMinBytes: 0)
    }

    func testBatchedBulkCopyLeavesNoGapInAnotherMigrationsChangelog() async throws {
        try await tailWhileReceiving(ingestMinBytes: .max)
    }

    /// Three instances to two, moves running in parallel (B→A while C→B), every
    /// bulk chunk ingested: all moves finish, and every key reads back.
    func testParallelRescaleWithIngestion() async throws { try await parallelRescale(ingestMinBytes: 0) }
    func testParallelRescaleWithBatches() async throws { try await parallelRescale(ingestMinBytes: .max) }

    private func parallelRescale(ingestMinBytes: Int) async throws {
        let dir = TemporaryDirectory()
        let all = try instances(dir, shards: 3, ingestMinBytes: ingestMinBytes)
        let (a, b, c) = (all[0], all[1], all[2])
        defer { all.forEach { $0.close() } }
        let shards = try a.shards().map(\.id).sorted()
        _ = try await a.migrate(MigrationRequest(shard: shards[1]), to: b)
        _ = try await a.migrate(MigrationRequest(shard: shards[2]), to: c)
        let value = String(repeating: "v", count: 200)
        for i in 0..<20_000 {
            var stored = false
            for engine in [a, b, c] where !stored { stored = (try? engine.put("k\(i)", value)) != nil }
            XCTAssertTrue(stored, "k\(i) has an owner")
        }
        let plan = try RescalePlanner.plan(current: [a, b, c].map { try $0.describeInstance() },
                                           targets: [a, b].map { try $0.describeInstance() })
        XCTAssertGreaterThan(plan.moves.count, 1)
        let reports = try await RescaleExecutor(engines: [a, b, c], parallelism: 2).run(plan)
        XCTAssertEqual(reports.count, plan.moves.count)
        XCTAssertTrue(try c.shards().allSatisfy { $0.descriptor.state != .active }, "C gave everything away")
        for i in stride(from: 0, to: 20_000, by: 97) {
            var found: [String] = []
            var outcomes: [String] = []
            for (name, engine) in [("a", a), ("b", b), ("c", c)] {
                do {
                    let v = try engine.getString("k\(i)")
                    if let v, name != "c" { found.append(v) }
                    outcomes.append("\(name): \(v == nil ? "missing" : "found")")
                } catch let error as ShardDBError where error.code == .keyNotOwned {
                    outcomes.append("\(name): not owned (\(error.owner ?? "?"))")
                }
            }
            XCTAssertEqual(found, [value], "k\(i) kg \(a.keyGroup(of: "k\(i)") ?? -1): \(outcomes); moves \(plan.moves.map { "\($0.fromLocation.suffix(1))->\($0.toLocation.suffix(1)) \($0.range)" }); reports \(reports.map { "\($0.keysCopied)" })")
        }
    }

    /// A rescale where one lane moves a small shard S of T out whole while another
    /// lane brings T a range adjacent to S: the second must not merge into S (the
    /// first would then be refused and the rescale fail, depending on which
    /// prepared first); it makes a shard of its own, and every move finishes.
    func testARescaleDoesNotMergeIntoAShardItIsMovingOut() async throws {
        let dir = TemporaryDirectory()
        let part = Partitioning.hash(keyGroups: 90)
        let names = ["a", "t", "u", "v"]
        let engines = try names.enumerated().map { index, name in
            try ShardEngine.create(at: dir.path(name), shards: index == 0 ? 3 : 0, partitioning: part, options: .testing())
        }
        let (a, t, u, v) = (engines[0], engines[1], engines[2], engines[3])
        defer { engines.forEach { $0.close() } }
        for i in 0..<3000 { try a.put("k\(i)", "value-\(i)") }
        // a: kg[0,30) and kg[60,90); t: S = kg[30,32); u: kg[32,60); v: nothing.
        let middle = try XCTUnwrap(a.shardDescriptors.first { $0.range == .keyGroups(KeyGroupRange(30, 60)) }).id
        _ = try await a.migrate(MigrationRequest(shard: middle, range: .keyGroups(KeyGroupRange(30, 32))), to: t)
        _ = try await a.migrate(MigrationRequest(shard: middle), to: u)
        let plan = try RescalePlanner.plan(current: [a, t, u].map { try $0.describeInstance() },
                                           targets: [t, u, v].map { try $0.describeInstance() })
        let small = try XCTUnwrap(t.shardDescriptors.first { $0.state == .active }).id
        XCTAssertTrue(plan.moves.contains { $0.fromInstance == t.instanceID && $0.shard == small },
                      "the layout makes the plan move S out: \(plan.moves)")
        let reports = try await RescaleExecutor(engines: engines, parallelism: 3).run(plan)
        XCTAssertEqual(reports.count, plan.moves.count)
        for i in 0..<3000 {
            let found = try engines.compactMap { engine -> String? in
                do { return try engine.getString("k\(i)") } catch let error as ShardDBError where error.code == .keyNotOwned { return nil }
            }
            XCTAssertEqual(found, ["value-\(i)"], "k\(i)")
        }
        XCTAssertTrue(try a.shards().allSatisfy { $0.descriptor.state != .active }, "a gave everything away")
    }
}
