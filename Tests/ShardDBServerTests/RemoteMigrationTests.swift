import Foundation
import ShardDB
import ShardDBServer
import TestSupport
import XCTest

/// Migration and rescale between `shardctl serve` processes on loopback, with
/// a writer driving load, and kill -9 of either side at failure points.
final class RemoteMigrationTests: XCTestCase {
    /// Writes `w-<n>` keys through `entry` until cancelled.
    private func startWriter(_ client: RoutingClient, via entry: InstanceAddress, prefix: String = "w") -> Task<Int, Never> {
        Task.detached {
            var n = 0
            while !Task.isCancelled && n < 3000 {
                await client.put("\(prefix)-\(n)", "v\(n)", via: entry)
                n += 1
            }
            return n
        }
    }

    /// What reading through `client` must show: its acknowledged writes, and every
    /// `every`-th of the `loaded` keys (Workspace.makeInstance's values) it did not overwrite.
    private func expectedContents(_ client: RoutingClient, loaded: Int, every: Int, valueSize: Int) async -> [String: String] {
        var expected = await client.acknowledged
        for i in stride(from: 0, to: loaded, by: every) where expected["key-\(i)"] == nil {
            expected["key-\(i)"] = "value-\(i)-" + String(repeating: "x", count: valueSize)
        }
        return expected
    }

    /// Every key group has one owner between `a` and `b` (after `check`, given their
    /// clients), every expected value reads back through `client`; then both stop cleanly.
    private func assertOwnedAndStop(_ client: RoutingClient, _ a: ServeProcess, _ b: ServeProcess, _ workspace: Workspace,
                                    loaded: Int, every: Int, valueSize: Int,
                                    check: (RemoteInstance, RemoteInstance) async throws -> Void = { _, _ in }) async throws {
        let source = try workspace.client(a.address), target = try workspace.client(b.address)
        try await assertOwnership([source, target])
        try await check(source, target)
        let expected = await expectedContents(client, loaded: loaded, every: every, valueSize: valueSize)
        try await verify(client, expected: expected, uncertain: await client.uncertain, via: a.address)
        await client.close()
        await source.close()
        await target.close()
        XCTAssertEqual(a.terminate(), 0)
        XCTAssertEqual(b.terminate(), 0)
    }

    private func shardctl(_ arguments: [String]) async throws -> Shardctl.Result {
        try await Task.detached { try Shardctl.run(arguments) }.value
    }

    func testLiveMigrationBetweenProcessesUnderLoad() async throws {
        let workspace = try Workspace("RemoteMigration")
        let sourceDir = try workspace.makeInstance("a", shards: 4, keys: 20_000)
        let targetDir = try workspace.makeEmpty("b")
        let a = try ServeProcess(directory: sourceDir, tokenFile: workspace.tokenFile)
        let b = try ServeProcess(directory: targetDir, tokenFile: workspace.tokenFile)
        let client = RoutingClient(workspace: workspace)
        let writer = startWriter(client, via: a.address)
        try await Task.sleep(for: .milliseconds(200))

        let result = try await shardctl(["migrate", "--from", a.address.description, "--to", b.address.description,
                                         "--shard", "1", "--token-file", workspace.tokenFile, "--json"])
        XCTAssertEqual(result.status, 0, result.stderr)
        let report = try XCTUnwrap(JSONSerialization.jsonObject(with: Data(result.stdout.utf8)) as? [String: Any], result.stdout)
        XCTAssertGreaterThan(report["keysCopied"] as? Int ?? 0, 4000)
        XCTAssertEqual(report["bulkTransfer"] as? String, "tableFiles", "a whole shard streams as its table files")

        try await Task.sleep(for: .milliseconds(200))  // (more writes after the cutover)
        writer.cancel()
        let written = await writer.value
        XCTAssertGreaterThan(written, 50)
        let acknowledgedCount = await client.acknowledged.count, refusals = await client.refusals
        XCTAssertGreaterThan(acknowledgedCount, 50, "writes were acknowledged throughout")
        // Only a fence that outlasted its wait may refuse a write; a redirect that broke would show here.
        XCTAssertEqual(Set(refusals.keys).subtracting([.migrationInProgress]), [], "\(refusals)")
        // A write of a moved key sent to the source lands on the target.
        for i in 0..<200 {
            let stored = await client.put("key-\(i)", "after-\(i)", via: a.address)
            XCTAssertTrue(stored, "key-\(i)")
        }

        // A key of the moved shard, asked of the source, names the new owner.
        let source = try workspace.client(a.address)
        let target = try workspace.client(b.address)
        var redirected = 0
        for i in 0..<200 {
            do { _ = try await source.get(Array("key-\(i)".utf8)) } catch let error as ShardDBError where error.code == .keyNotOwned {
                XCTAssertEqual(error.owner, b.address.description)
                redirected += 1
            }
        }
        XCTAssertGreaterThan(redirected, 10)

        let expected = await expectedContents(client, loaded: 20_000, every: 10, valueSize: 100)
        try await verify(client, expected: expected, uncertain: await client.uncertain, via: a.address)
        try await assertOwnership([source, target])

        await client.close()
        await source.close()
        await target.close()
        XCTAssertEqual(a.terminate(), 0)
        XCTAssertEqual(b.terminate(), 0)
    }

    /// `migrate --range` between processes under load: a range at one end of a shard
    /// moves as entries into a new shard, then the rest of the shard merges into that
    /// one (`--merge-into`); each key group has one owner and every acknowledged write
    /// reads back.
    func testRangeMoveThenMergeBetweenProcessesUnderLoad() async throws {
        let workspace = try Workspace("RemoteRange")
        let a = try ServeProcess(directory: try workspace.makeInstance("a", shards: 4, keys: 8000), tokenFile: workspace.tokenFile)
        let b = try ServeProcess(directory: try workspace.makeEmpty("b"), tokenFile: workspace.tokenFile)
        let client = RoutingClient(workspace: workspace)
        let writer = startWriter(client, via: a.address)
        let common = ["--from", a.address.description, "--to", b.address.description, "--token-file", workspace.tokenFile, "--json"]
        func report(_ result: Shardctl.Result) throws -> [String: Any] {
            XCTAssertEqual(result.status, 0, result.stderr)
            return try XCTUnwrap(JSONSerialization.jsonObject(with: Data(result.stdout.utf8)) as? [String: Any], result.stdout)
        }

        let first = try report(try await shardctl(["migrate", "--shard", "1", "--range", "1024..1536"] + common))
        XCTAssertEqual(first["range"] as? String, "kg[1024,1536)")
        XCTAssertEqual(first["bulkTransfer"] as? String, "entries", "part of a shard moves as entries")
        XCTAssertGreaterThan(first["keysCopied"] as? Int ?? 0, 500)
        let newShard = try XCTUnwrap(first["targetShard"] as? Int)

        let second = try report(try await shardctl(["migrate", "--shard", "1", "--range", "1536..2048",
                                                    "--merge-into", "\(newShard)"] + common))
        XCTAssertEqual(second["range"] as? String, "kg[1536,2048)")
        XCTAssertEqual(second["targetShard"] as? Int, newShard)
        writer.cancel()
        let written = await writer.value
        XCTAssertGreaterThan(written, 50)

        try await assertOwnedAndStop(client, a, b, workspace, loaded: 8000, every: 10, valueSize: 100) { source, target in
            let targetShards = try await target.describeInstance().shards.filter { $0.state == .active }
            XCTAssertEqual(targetShards.map(\.id), [newShard])
            guard case .keyGroups(let grown) = targetShards.first?.range else { return XCTFail("\(targetShards)") }
            XCTAssertEqual(grown.lowerBound, 1024)
            XCTAssertEqual(grown.upperBound, 2048)
            let sourceActive = try await source.describeInstance().shards.filter { $0.state == .active }.map(\.id)
            XCTAssertFalse(sourceActive.contains(1), "shard 1 left the source: \(sourceActive)")
        }
    }

    func testRescaleOneProcessToThree() async throws {
        let workspace = try Workspace("RemoteRescale")
        let a = try ServeProcess(directory: try workspace.makeInstance("a", shards: 2, keys: 6000), tokenFile: workspace.tokenFile)
        let b = try ServeProcess(directory: try workspace.makeEmpty("b"), tokenFile: workspace.tokenFile)
        let c = try ServeProcess(directory: try workspace.makeEmpty("c"), tokenFile: workspace.tokenFile)
        let client = RoutingClient(workspace: workspace, peers: [a, b, c].map(\.address))
        let writer = startWriter(client, via: a.address)

        let all = [a, b, c].map(\.address.description).joined(separator: ",")
        let result = try await shardctl(["rescale", "--from", a.address.description, "--to", all,
                                         "--token-file", workspace.tokenFile, "--json"])
        XCTAssertEqual(result.status, 0, result.stderr)
        writer.cancel()
        _ = await writer.value

        let instances = try [a, b, c].map { try workspace.client($0.address) }
        try await assertOwnership(instances)
        // Balanced: each owns about a third of the key groups.
        for instance in instances {
            let owned = try await instance.describeInstance().shards.filter { $0.state == .active }.reduce(0) { total, shard in
                if case .keyGroups(let r) = shard.range { return total + r.count }
                return total
            }
            XCTAssertEqual(Double(owned), Double(Partitioning.defaultKeyGroups) / 3, accuracy: 2)
        }
        let expected = await expectedContents(client, loaded: 6000, every: 10, valueSize: 100)
        // Ask the last instance first: redirects work from any entry point.
        try await verify(client, expected: expected, uncertain: await client.uncertain, via: c.address)
        await client.close()
        for instance in instances { await instance.close() }
        for process in [a, b, c] { XCTAssertEqual(process.terminate(), 0) }
    }

    /// The source dies (kill -9) in the middle of the bulk copy and comes back
    /// while `shardctl migrate` retries: the copy resumes after the last
    /// acknowledged key from a new snapshot, the catch-up from the first one, and
    /// every acknowledged write is on the target after the move.
    func testSourceRestartDuringBulkResumes() async throws {
        try await assertBulkSurvivesRestart(of: "source", at: "migration.source.bulk-chunk=kill@4")
    }

    /// The target dies (kill -9) while bulk chunks stream to it, some sent and
    /// not yet acknowledged, and comes back while `shardctl migrate` retries: the
    /// new stream sends the unacknowledged chunks again (applying one twice is
    /// harmless) and the move completes with every acknowledged write on the target.
    func testTargetRestartDuringBulkStreamResumes() async throws {
        try await assertBulkSurvivesRestart(of: "target", at: "migration.target.bulk-chunk=kill@5")
    }

    /// The target's machine loses power while bulk chunks stream to it, with
    /// chunks acknowledged before the kill, and it is back while `shardctl migrate`
    /// retries. An acknowledged chunk must have been durable: the coordinator does
    /// not send it again. The target acknowledged chunks written to its log and
    /// not synced, so the chunks before the kill were lost and the move finished
    /// with their keys missing on the new owner, which the source then deleted.
    func testTargetLosingPowerDuringBulkStreamResumesWithoutAHole() async throws {
        let library = try PowerLoss.buildLibrary(in: NSTemporaryDirectory() + "powerloss-\(UUID().uuidString).so")
        defer { try? FileManager.default.removeItem(atPath: library) }
        try await assertBulkSurvivesRestart(of: "target", at: "migration.target.bulk-chunk=kill@5", powerLoss: library)
    }

    /// Moves shard 0 as entries under load while `side` is killed at `failpoint`
    /// and restarted; the one `shardctl migrate` (retrying) must complete with one
    /// new shard on the target and every acknowledged write readable.
    /// `powerLoss`: the victim also loses what it had not synced (both serve with `--sync`).
    private func assertBulkSurvivesRestart(of side: String, at failpoint: String, powerLoss library: String? = nil) async throws {
        let workspace = try Workspace(side == "source" ? "SourceRestart" : "TargetRestart")
        let pair = try VictimPair(workspace, side: side, failpoints: failpoint, powerLoss: library)
        let (a, b) = (pair.a, pair.b)
        let client = RoutingClient(workspace: workspace, peers: [a.address, b.address])
        let writer = startWriter(client, via: a.address)
        try await Task.sleep(for: .milliseconds(100))
        let migrate = Task.detached {
            try Shardctl.run(["migrate", "--from", a.address.description, "--to", b.address.description, "--shard", "0",
                              "--token-file", workspace.tokenFile, "--retry-seconds", "30", "--bulk-chunk-bytes", "65536",
                              "--bulk-transfer", "entries", "--json"])
        }
        XCTAssertTrue(pair.victim.waitForExit(timeout: 20), "the failure point did not fire")
        try pair.losePower()
        try pair.victim.restart()
        let result = try await migrate.value
        XCTAssertEqual(result.status, 0, result.stderr)
        let report = try JSONSerialization.jsonObject(with: Data(result.stdout.utf8)) as? [String: Any]
        XCTAssertEqual(report?["bulkTransfer"] as? String, "entries")
        try await Task.sleep(for: .milliseconds(100))  // writes after the cutover land on the target
        writer.cancel()
        _ = await writer.value

        try await assertOwnedAndStop(client, a, b, workspace, loaded: 8000, every: 1, valueSize: 400) { _, target in
            let targetShards = try await target.describeInstance().shards.filter { $0.state == .active }.count
            XCTAssertEqual(targetShards, 1)
        }
    }

    /// The target dies in the catch-up (kill -9 at its first applied change
    /// chunk) and is back within the coordinator's retry window: the migration
    /// resumes from the last position the target applied and finishes, and every
    /// acknowledged write is readable.
    func testCatchUpResumesAfterTheTargetRestarts() async throws {
        let workspace = try Workspace("RemoteCatchUp")
        let a = try ServeProcess(directory: try workspace.makeInstance("a", shards: 2, keys: 4000, valueSize: 200),
                                 tokenFile: workspace.tokenFile)
        let b = try ServeProcess(directory: try workspace.makeEmpty("b"), tokenFile: workspace.tokenFile,
                                 failpoints: "migration.target.changes=kill")
        let client = RoutingClient(workspace: workspace)
        let writer = startWriter(client, via: a.address)
        try await Task.sleep(for: .milliseconds(100))
        let before = await client.acknowledged.count
        let migrate = Task {
            try await onThread {
                try Shardctl.run(["migrate", "--from", a.address.description, "--to", b.address.description, "--shard", "0",
                                  "--token-file", workspace.tokenFile, "--retry-seconds", "60", "--json"])
            }
        }
        let killed = try await onThread { b.waitForExit(timeout: 60) }
        XCTAssertTrue(killed, "the target was not killed in the catch-up")
        try b.restart()
        let result = try await migrate.value
        XCTAssertEqual(result.status, 0, "the migration resumes once the target is back: \(result.stderr)")
        let during = await client.acknowledged.count
        XCTAssertGreaterThan(during, before, "writes went on while the target was down and back")
        writer.cancel()
        _ = await writer.value
        await client.close()  // (dial the restarted target afresh)

        try await assertOwnedAndStop(client, a, b, workspace, loaded: 4000, every: 10, valueSize: 200)
    }

    /// One side dies (kill -9 at a failure point) mid-migration; after a
    /// restart, resolving leaves every key group with exactly one owner and
    /// every acknowledged write readable; a second migration then succeeds.
    func testKilledPeerIsResolvedAfterRestart() async throws {
        // Every point, each run: the decision table's cases after the fence (source
        // fenced, target committed, source before its commit) are the ones that matter most.
        for (side, point) in Self.killPoints {
            try await runKill(side: side, point: point)
        }
    }

    static let killPoints: [(side: String, point: String)] = [
        ("source", "migration.source.bulk-chunk@2"),
        ("source", "migration.source.tables-exported"),
        ("source", "migration.source.fenced"),
        ("source", "migration.source.before-commit"),
        ("target", "migration.target.bulk-chunk@2"),
        ("target", "migration.target.tables-imported"),
        ("target", "migration.target.changes"),
        ("target", "migration.target.before-commit"),
        ("target", "migration.target.committed"),
    ]

    /// The same, the dying side's machine losing power: both serve with `--sync`,
    /// and after the kill the victim's files lose every byte not yet synced
    /// (docs/CRASH_TESTING.md, "Power loss"). The decision and every acknowledged
    /// write must survive that too.
    func testPeerLosingPowerIsResolvedAfterRestart() async throws {
        let library = try PowerLoss.buildLibrary(in: NSTemporaryDirectory() + "powerloss-\(UUID().uuidString).so")
        defer { try? FileManager.default.removeItem(atPath: library) }
        for (side, point) in Self.killPoints {
            try await runKill(side: side, point: point, powerLoss: library)
        }
    }

    /// `serve --sync` acknowledges a put only once it is synced: after a power loss
    /// (kill -9, then every unsynced byte dropped) the put is there; served without
    /// it, the same put is gone.
    func testServeSyncKeepsAnAcknowledgedPutThroughAPowerLoss() throws {
        let library = try PowerLoss.buildLibrary(in: NSTemporaryDirectory() + "powerloss-\(UUID().uuidString).so")
        defer { try? FileManager.default.removeItem(atPath: library) }
        for sync in [true, false] {
            let workspace = try Workspace("ServeSync")
            let directory = try workspace.makeInstance("a", shards: 2, keys: 10)
            let record = workspace.path("powerloss.log")
            let before = try PowerLoss.sizes(below: directory)
            let server = try ServeProcess(directory: directory, tokenFile: workspace.tokenFile, extra: sync ? ["--sync"] : [],
                                          environment: ["LD_PRELOAD": library, "POWERLOSS_LOG": record, "POWERLOSS_ROOT": directory])
            let put = try Shardctl.run(["put", "--remote", server.address.description, "--token-file", workspace.tokenFile,
                                        "acknowledged", "yes"])
            XCTAssertEqual(put.status, 0, put.stderr)
            server.kill9()
            _ = try PowerLoss.apply(log: record, filesBefore: before, below: directory)
            try server.restart()
            let get = try Shardctl.run(["get", "--remote", server.address.description, "--token-file", workspace.tokenFile,
                                        "acknowledged"])
            XCTAssertEqual(get.stdout, sync ? "yes\n" : "", "sync \(sync): \(get.stderr)")
            XCTAssertEqual(server.terminate(), 0)
        }
    }

    /// `powerLoss`: the LD_PRELOAD library that records the victim's syncs, whose
    /// unsynced bytes are then dropped.
    private func runKill(side: String, point: String, powerLoss library: String? = nil) async throws {
        let workspace = try Workspace("RemoteKill")
        // "name@N" means the N-th hit: SHARDDB_FAILPOINTS spells it name=kill@N.
        let parts = point.split(separator: "@")
        let spec = parts.count == 2 ? "\(parts[0])=kill@\(parts[1])" : "\(point)=kill"
        let pair = try VictimPair(workspace, side: side, failpoints: spec, powerLoss: library)
        let (a, b) = (pair.a, pair.b)
        let client = RoutingClient(workspace: workspace)
        let writer = startWriter(client, via: a.address)
        try await Task.sleep(for: .milliseconds(100))
        let migrate = ["migrate", "--from", a.address.description, "--to", b.address.description, "--shard", "0",
                       "--token-file", workspace.tokenFile, "--retry-seconds", "1", "--bulk-chunk-bytes", "65536"]
            // Bulk chunks are points of the entries path; a whole shard otherwise moves as table files.
            + (point.contains("bulk-chunk") ? ["--bulk-transfer", "entries"] : [])
        // Small chunks so the bulk phase has several.
        let first = try await shardctl(migrate + ["--json"])
        XCTAssertTrue(pair.victim.waitForExit(timeout: 10), "\(point) did not fire")
        writer.cancel()
        _ = await writer.value
        XCTAssertNotEqual(first.status, 0, "\(point): migrate should fail when \(side) dies: \(first.stdout)")
        // It could not roll back either (the peer is down): it names the way out.
        XCTAssertTrue(first.stderr.contains("--resolve"), "\(point): \(first.stderr)")
        try pair.losePower()

        try pair.victim.restart()
        // Dial the restarted peer afresh: a channel to the dead process sits in gRPC's
        // reconnect backoff and fails calls at once ("transient failure") for a while.
        await client.close()
        // Named the other way round: a resolve settles both directions.
        let resolved = try await shardctl(["migrate", "--from", b.address.description, "--to", a.address.description,
                                           "--resolve", "--json", "--token-file", workspace.tokenFile])
        XCTAssertEqual(resolved.status, 0, "\(point): \(resolved.stderr)")
        let report = try JSONSerialization.jsonObject(with: Data(resolved.stdout.utf8)) as? [String: [String]]
        XCTAssertEqual(report?["settled"]?.count, 1, "\(point): \(resolved.stdout)")

        let source = try workspace.client(a.address), target = try workspace.client(b.address)
        try await assertOwnership([source, target])
        let sourceUnfinished = try await source.describeInstance().unfinishedMigrations.count
        let targetUnfinished = try await target.describeInstance().unfinishedMigrations.count
        XCTAssertEqual(sourceUnfinished, 0, point)
        XCTAssertEqual(targetUnfinished, 0, point)
        let expected = await expectedContents(client, loaded: 8000, every: 10, valueSize: 400)
        try await verify(client, expected: expected, uncertain: await client.uncertain, via: a.address)

        // Whatever was decided, the instances work on: move the rest of the state over.
        let again = try await shardctl(["rescale", "--from", a.address.description, "--to", b.address.description,
                                        "--token-file", workspace.tokenFile])
        XCTAssertEqual(again.status, 0, "\(point): \(again.stderr)")
        try await assertOwnership([target])
        try await verify(client, expected: expected, uncertain: await client.uncertain, via: b.address)

        await client.close()
        await source.close()
        await target.close()
        a.terminate()
        b.terminate()
    }
}

/// A source `a` (two shards, 8000 keys of 400 bytes) and an empty target `b`,
/// served; `side`'s server is the victim, with `failpoints` armed and, given the
/// power-loss library, its syncs recorded (both then serve with `--sync`).
struct VictimPair {
    let a: ServeProcess
    let b: ServeProcess
    let victim: ServeProcess
    private let victimDirectory: String
    private let record: String
    private let filesBefore: [String: Int]
    private let powerLoss: Bool

    init(_ workspace: Workspace, side: String, failpoints: String, powerLoss library: String?) throws {
        let sourceDirectory = try workspace.makeInstance("a", shards: 2, keys: 8000, valueSize: 400)
        let targetDirectory = try workspace.makeEmpty("b")
        let victimDirectory = side == "source" ? sourceDirectory : targetDirectory, record = workspace.path("powerloss.log")
        self.victimDirectory = victimDirectory
        self.record = record
        filesBefore = try PowerLoss.sizes(below: victimDirectory)
        powerLoss = library != nil
        let preload = library.map { ["LD_PRELOAD": $0, "POWERLOSS_LOG": record, "POWERLOSS_ROOT": victimDirectory] } ?? [:]
        let extra = library == nil ? [] : ["--sync"]
        a = try ServeProcess(directory: sourceDirectory, tokenFile: workspace.tokenFile, failpoints: side == "source" ? failpoints : nil,
                             extra: extra, environment: side == "source" ? preload : [:])
        b = try ServeProcess(directory: targetDirectory, tokenFile: workspace.tokenFile, failpoints: side == "target" ? failpoints : nil,
                             extra: extra, environment: side == "target" ? preload : [:])
        victim = side == "source" ? a : b
    }

    /// With the library: cuts the dead victim's files back to what it synced.
    func losePower(file: StaticString = #filePath, line: UInt = #line) throws {
        guard powerLoss else { return }
        let loss = try PowerLoss.apply(log: record, filesBefore: filesBefore, below: victimDirectory)
        XCTAssertGreaterThan(loss.files, 0, "the power loss cut nothing (is the library loaded?)", file: file, line: line)
    }
}

/// A small seeded generator, so a failing choice of failure points can be replayed.
struct SplitMix: RandomNumberGenerator {
    var state: UInt64
    init(seed: UInt64) { state = seed }
    mutating func next() -> UInt64 {
        state &+= 0x9E37_79B9_7F4A_7C15
        var z = state
        z = (z ^ (z >> 30)) &* 0xBF58_476D_1CE4_E5B9
        z = (z ^ (z >> 27)) &* 0x94D0_49BB_1331_11EB
        return z ^ (z >> 31)
    }
}
