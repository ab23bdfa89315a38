import Foundation
import ShardDB
import ShardDBServer
import XCTest

/// The direct bulk copy between two `shardctl serve` processes: the target
/// pulls the entries from the source itself, and the coordinator relays them
/// when the target cannot reach, authenticate to, or recognise the source.
final class DirectBulkTests: XCTestCase {
    private func migrate(_ arguments: [String]) async throws -> (Shardctl.Result, [String: Any]?) {
        let result = try await Task.detached { try Shardctl.run(["migrate"] + arguments + ["--json"]) }.value
        return (result, try? JSONSerialization.jsonObject(with: Data(result.stdout.utf8)) as? [String: Any])
    }

    /// Every key of `shards` on the target, with its value; none on the source.
    private func assertMoved(keys: Int, valueSize: Int, from source: RemoteInstance, to target: RemoteInstance,
                             file: StaticString = #filePath, line: UInt = #line) async throws {
        let pad = String(repeating: "x", count: valueSize)
        var onTarget = 0
        for i in stride(from: 0, to: keys, by: 7) {
            let key = Array("key-\(i)".utf8)
            do {
                let value = try await target.get(key)
                XCTAssertEqual(value.map { String(decoding: $0, as: UTF8.self) }, "value-\(i)-\(pad)", file: file, line: line)
                onTarget += 1
            } catch let error as ShardDBError where error.code == .keyNotOwned {
                // Still the source's (another shard): there it must be.
                let value = try await source.get(key)
                XCTAssertEqual(value.map { String(decoding: $0, as: UTF8.self) }, "value-\(i)-\(pad)", file: file, line: line)
            }
        }
        XCTAssertGreaterThan(onTarget, 0, "nothing moved", file: file, line: line)
        try await assertOwnership([source, target], file: file, line: line)
    }

    /// With the shared token the target pulls (report: direct); `--bulk-route relay`
    /// sends the same kind of move through the coordinator (report: relay).
    func testTargetPullsTheBulkCopyUnlessToldToRelay() async throws {
        let workspace = try Workspace("DirectBulk")
        let a = try ServeProcess(directory: try workspace.makeInstance("a", shards: 3, keys: 6000, valueSize: 300),
                                 tokenFile: workspace.tokenFile)
        let b = try ServeProcess(directory: try workspace.makeEmpty("b"), tokenFile: workspace.tokenFile)
        let common = ["--from", a.address.description, "--to", b.address.description, "--token-file", workspace.tokenFile,
                      "--bulk-transfer", "entries", "--bulk-chunk-bytes", "65536"]

        let (direct, directReport) = try await migrate(common + ["--shard", "0"])
        XCTAssertEqual(direct.status, 0, direct.stderr)
        XCTAssertEqual(directReport?["bulkRoute"] as? String, "direct")
        XCTAssertGreaterThan(directReport?["keysCopied"] as? Int ?? 0, 1000)

        let (relayed, relayReport) = try await migrate(common + ["--shard", "1", "--bulk-route", "relay"])
        XCTAssertEqual(relayed.status, 0, relayed.stderr)
        XCTAssertEqual(relayReport?["bulkRoute"] as? String, "relay")

        let (bad, _) = try await migrate(common + ["--shard", "2", "--bulk-route", "sideways"])
        XCTAssertNotEqual(bad.status, 0)
        XCTAssertTrue(bad.stderr.contains("bulk-route"), bad.stderr)

        let source = try workspace.client(a.address), target = try workspace.client(b.address)
        try await assertMoved(keys: 6000, valueSize: 300, from: source, to: target)
        await source.close()
        await target.close()
        XCTAssertEqual(a.terminate(), 0)
        XCTAssertEqual(b.terminate(), 0)
    }

    /// A target whose peer token the source refuses cannot pull: the coordinator
    /// relays the copy, and the source read and changed nothing for the refused calls.
    func testTargetRefusedByTheSourceFallsBackToTheRelay() async throws {
        let workspace = try Workspace("DirectBulkRefused")
        let wrongToken = workspace.path("wrong-token")
        try "another-secret-0123456789abcdef".write(toFile: wrongToken, atomically: true, encoding: .utf8)
        let a = try ServeProcess(directory: try workspace.makeInstance("a", shards: 2, keys: 4000, valueSize: 200),
                                 tokenFile: workspace.tokenFile)
        let b = try ServeProcess(directory: try workspace.makeEmpty("b"), tokenFile: workspace.tokenFile,
                                 extra: ["--peer-token-file", wrongToken])
        let (result, report) = try await migrate(["--from", a.address.description, "--to", b.address.description,
                                                  "--token-file", workspace.tokenFile, "--shard", "1", "--bulk-transfer", "entries"])
        XCTAssertEqual(result.status, 0, result.stderr)
        XCTAssertEqual(report?["bulkRoute"] as? String, "relay")
        XCTAssertGreaterThan(report?["keysCopied"] as? Int ?? 0, 1000)

        let source = try workspace.client(a.address), target = try workspace.client(b.address)
        try await assertMoved(keys: 4000, valueSize: 200, from: source, to: target)
        await source.close()
        await target.close()
        XCTAssertEqual(a.terminate(), 0)
        XCTAssertEqual(b.terminate(), 0)
    }

    /// A coordinator that names the wrong instance as the source's address (here a
    /// third instance with the same token): the target checks who answers there,
    /// refuses to pull from it, and the copy is relayed from the real source;
    /// the third instance is left as it was.
    func testTargetRefusesToPullFromAnInstanceThatIsNotThePlansSource() async throws {
        let workspace = try Workspace("DirectBulkWrongSource")
        let a = try ServeProcess(directory: try workspace.makeInstance("a", shards: 2, keys: 4000, valueSize: 200),
                                 tokenFile: workspace.tokenFile)
        let b = try ServeProcess(directory: try workspace.makeEmpty("b"), tokenFile: workspace.tokenFile)
        let c = try ServeProcess(directory: try workspace.makeInstance("c", shards: 2, keys: 100, valueSize: 10),
                                 tokenFile: workspace.tokenFile)
        let source = try workspace.client(a.address), target = try workspace.client(b.address)
        let bystander = try workspace.client(c.address)
        let before = try await bystander.describeInstance()

        let misdirected = Misdirected(source, peerAddress: c.address.description)
        var request = MigrationRequest(shard: 0)
        request.bulkTransfer = .entries
        request.bulkChunkBytes = 65536
        let report = try await MigrationCoordinator(source: misdirected, target: target).migrate(request)
        XCTAssertEqual(report.bulkRoute, .relay)
        XCTAssertGreaterThan(report.keysCopied, 1000)

        try await assertMoved(keys: 4000, valueSize: 200, from: source, to: target)
        let after = try await bystander.describeInstance()
        XCTAssertEqual(after.shards, before.shards)
        XCTAssertTrue(after.unfinishedMigrations.isEmpty)
        await source.close()
        await target.close()
        await bystander.close()
        for process in [a, b, c] { XCTAssertEqual(process.terminate(), 0) }
    }
}

/// A source that reports another instance's address as its own.
private struct Misdirected: MigrationSource {
    let base: RemoteInstance
    let peerAddress: String?

    init(_ base: RemoteInstance, peerAddress: String) {
        self.base = base
        self.peerAddress = peerAddress
    }

    func describeInstance() async throws -> InstanceDescription { try await base.describeInstance() }
    func prepareOutgoing(_ plan: MigrationPlan) async throws { try await base.prepareOutgoing(plan) }
    func openBulk(_ plan: MigrationPlan) async throws -> UInt64 { try await base.openBulk(plan) }
    func exportTableFiles(_ plan: MigrationPlan) async throws -> [TableFile]? { try await base.exportTableFiles(plan) }
    func readTableFile(_ plan: MigrationPlan, name: String, offset: UInt64, maxBytes: Int) async throws -> Data {
        try await base.readTableFile(plan, name: name, offset: offset, maxBytes: maxBytes)
    }
    func releaseTableFiles(_ plan: MigrationPlan) async throws { try await base.releaseTableFiles(plan) }
    var exportsLocalTableFiles: Bool { base.exportsLocalTableFiles }
    func readBulk(_ plan: MigrationPlan, after: [UInt8]?, maxBytes: Int) async throws -> BulkChunk {
        try await base.readBulk(plan, after: after, maxBytes: maxBytes)
    }
    func readChanges(_ plan: MigrationPlan, from: UInt64, maxRecords: Int) async throws -> ChangeChunk {
        try await base.readChanges(plan, from: from, maxRecords: maxRecords)
    }
    func prepareCutover(_ plan: MigrationPlan) async throws { try await base.prepareCutover(plan) }
    func fenceOutgoing(_ plan: MigrationPlan) async throws -> UInt64 { try await base.fenceOutgoing(plan) }
    func commitOutgoing(_ plan: MigrationPlan) async throws { try await base.commitOutgoing(plan) }
    func abortOutgoing(_ plan: MigrationPlan) async throws { try await base.abortOutgoing(plan) }
    func cleanupOutgoing(_ plan: MigrationPlan) async throws { try await base.cleanupOutgoing(plan) }
    func migrationEntry(_ id: String) async throws -> MigrationJournalEntry? { try await base.migrationEntry(id) }
}
