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

    /// A (two shards of 4000 keys of 1000 bytes between them), X holding A's second
    /// shard, C empty; with `tailed`, X has begun moving that shard on to C (its bulk
    /// snapshot held, so that migration tails X's changelog from `snapshot`).
    private struct Setup {
        let a: ShardEngine, x: ShardEngine, c: ShardEngine
        let shards: [Int]
        let outgoing: MigrationPlan
        let snapshot: UInt64
        let value: String
    }

    private func sendingWhileReceiving(_ dir: TemporaryDirectory, ingestMinBytes: Int, tailed: Bool = true) async throws -> Setup {
        let all = try instances(dir, shards: 2, ingestMinBytes: ingestMinBytes)
        let (a, x, c) = (all[0], all[1], all[2])
        let value = String(repeating: "v", count: 1000)
        try a.write { batch in for i in 0..<4000 { try batch.put("k\(i)", value) } }
        let shards = try a.shards().map(\.id).sorted()
        let first = try await a.migrate(MigrationRequest(shard: shards[1], id: "m0"), to: x)
        let outgoing = try await MigrationCoordinator(source: x, target: c).makePlan(MigrationRequest(shard: first.targetShard, id: "m2"))
        var snapshot: UInt64 = 0
        if tailed {
            try x.prepareOutgoing(outgoing)
            snapshot = try x.openBulk(outgoing)
            _ = try c.prepareIncoming(outgoing, snapshotSequence: snapshot)
        }
        return Setup(a: a, x: x, c: c, shards: shards, outgoing: outgoing, snapshot: snapshot, value: value)
    }

    /// Writes to every key on X (those it owns take them), then reads the outgoing
    /// migration's changelog from its snapshot to X's latest sequence: it throws at a gap.
    private func assertTheChangelogReadsThrough(_ setup: Setup) throws {
        let x = setup.x
        var written = 0
        for i in 0..<4000 where (try? x.put("k\(i)", "new")) != nil { written += 1 }
        XCTAssertGreaterThan(written, 1000)
        var from = setup.snapshot + 1
        var seen = 0
        while true {
            let chunk = try x.readChanges(setup.outgoing, from: from, maxRecords: 10_000)
            if chunk.records.isEmpty { break }
            seen += chunk.records.count
            from = chunk.nextSequence
        }
        XCTAssertGreaterThan(seen, 0, "the writes to the outgoing range are in its changelog")
        XCTAssertEqual(from, try x.latestSequenceNumber() + 1)
        try x.abortOutgoing(setup.outgoing)
        try setup.c.abortIncoming(setup.outgoing)
    }

    private func tailWhileReceiving(ingestMinBytes: Int) async throws {
        let dir = TemporaryDirectory()
        let setup = try await sendingWhileReceiving(dir, ingestMinBytes: ingestMinBytes)
        defer { [setup.a, setup.x, setup.c].forEach { $0.close() } }
        // X receives A's first shard, bulk chunks ingested, while it sends the other on.
        let incoming = try await setup.a.migrate(MigrationRequest(shard: setup.shards[0], id: "m1"), to: setup.x)
        XCTAssertGreaterThan(incoming.keysCopied, 1000)
        try assertTheChangelogReadsThrough(setup)
    }

    func testIngestedBulkCopyLeavesNoGapInAnotherMigrationsChangelog() async throws {
        try await tailWhileReceiving(ingestMinBytes: 0)
    }

    func testBatchedBulkCopyLeavesNoGapInAnotherMigrationsChangelog() async throws {
        try await tailWhileReceiving(ingestMinBytes: .max)
    }

    override func tearDown() {
        FailurePoints.disarmAll()
        super.tearDown()
    }

    /// A bulk chunk applied again (its first try failed after the ingestion, before
    /// the progress) overlaps what it staged: ingested, it would take a sequence
    /// number of its own, in no log record. While another migration tails this
    /// instance's changelog it goes through the log instead: no gap there, and the
    /// incoming copy is complete.
    func testAChunkAppliedAgainLeavesNoGapInAnotherMigrationsChangelog() async throws {
        try await applyAChunkAgain(whileTailed: true)
    }

    /// The same with no migration tailing the changelog: the chunk is ingested
    /// again, as a table file (one sequence number, no entry through the log).
    func testAChunkAppliedAgainIsIngestedWhenNoMigrationTails() async throws {
        try await applyAChunkAgain(whileTailed: false)
    }

    private func applyAChunkAgain(whileTailed: Bool) async throws {
        let dir = TemporaryDirectory()
        let setup = try await sendingWhileReceiving(dir, ingestMinBytes: 0, tailed: whileTailed)
        let (a, x) = (setup.a, setup.x)
        defer { [a, x, setup.c].forEach { $0.close() } }
        // X receives A's first shard chunk by chunk; the second fails after its
        // ingestion and is applied again.
        let incoming = try await MigrationCoordinator(source: a, target: x).makePlan(MigrationRequest(shard: setup.shards[0], id: "m1"))
        try a.prepareOutgoing(incoming)
        let start = try a.openBulk(incoming)
        _ = try x.prepareIncoming(incoming, snapshotSequence: start)
        FailurePoints.arm("migration.target.bulk-ingested", action: .error, nth: 2)
        var after: [UInt8]?
        var done = false, again = 0
        while !done {
            let chunk = try a.readBulk(incoming, after: after, maxBytes: 64 << 10)
            do {
                try x.applyBulk(incoming, chunk)
            } catch {
                XCTAssertEqual((error as? ShardDBError)?.code, .injectedFailure)
                again += 1
                let before = try x.latestSequenceNumber()
                try x.applyBulk(incoming, chunk)
                // Through the log: one sequence number per entry and one for the progress.
                // Ingested: one for the file, one for the progress.
                XCTAssertEqual(try x.latestSequenceNumber() - before, whileTailed ? UInt64(chunk.count) + 1 : 2)
            }
            after = chunk.lastKey
            done = chunk.done
        }
        XCTAssertEqual(again, 1)
        try x.catchUpAndCommit(incoming, from: a, next: start + 1, final: try a.fenceOutgoing(incoming))
        try a.commitOutgoing(incoming)
        for i in 0..<4000 { XCTAssertEqual(text(try x.get("k\(i)")), setup.value, "k\(i)") }
        if whileTailed { try assertTheChangelogReadsThrough(setup) }
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
