import Foundation
import GRPCCore
import ShardDB
@testable import ShardDBServer
import Synchronization
import XCTest

/// The direct bulk copy between two `shardctl serve` processes: the target
/// pulls the entries from the source itself, and the coordinator relays them
/// when the target cannot reach, authenticate to, or recognise the source.
final class DirectBulkTests: XCTestCase {
    private func migrate(_ arguments: [String]) async throws -> (Shardctl.Result, [String: Any]?) {
        let result = try await Task.detached { try Shardctl.run(["migrate"] + arguments + ["--json"]) }.value
        return (result, try? JSONSerialization.jsonObject(with: Data(result.stdout.utf8)) as? [String: Any])
    }

    /// `--from A --to B --token-file T`: a move from server `a` to server `b`.
    private func between(_ a: ServeProcess, _ b: ServeProcess, _ workspace: Workspace) -> [String] {
        ["--from", a.address.description, "--to", b.address.description, "--token-file", workspace.tokenFile]
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

    /// ``assertMoved(keys:valueSize:from:to:)`` through new clients, then stops both servers.
    private func assertMovedAndStop(keys: Int, valueSize: Int, workspace: Workspace, source a: ServeProcess, target b: ServeProcess,
                                    file: StaticString = #filePath, line: UInt = #line) async throws {
        let source = try workspace.client(a.address), target = try workspace.client(b.address)
        try await assertMoved(keys: keys, valueSize: valueSize, from: source, to: target, file: file, line: line)
        await source.close()
        await target.close()
        XCTAssertEqual(a.terminate(), 0, file: file, line: line)
        XCTAssertEqual(b.terminate(), 0, file: file, line: line)
    }

    /// With the shared token the target pulls (report: direct), the entries
    /// Snappy-compressed on the wire unless `--wire-compression none`; `--bulk-route relay`
    /// sends the same kind of move through the coordinator (report: relay), which
    /// forwards the chunks compressed as they came (as read with `none`).
    func testTargetPullsTheBulkCopyUnlessToldToRelay() async throws {
        let workspace = try Workspace("DirectBulk")
        let a = try ServeProcess(directory: try workspace.makeInstance("a", shards: 4, keys: 6000, valueSize: 300),
                                 tokenFile: workspace.tokenFile)
        let b = try ServeProcess(directory: try workspace.makeEmpty("b"), tokenFile: workspace.tokenFile)
        let common = between(a, b, workspace) + ["--bulk-transfer", "entries", "--bulk-chunk-bytes", "65536"]

        let (direct, directReport) = try await migrate(common + ["--shard", "0"])
        XCTAssertEqual(direct.status, 0, direct.stderr)
        XCTAssertEqual(directReport?["bulkRoute"] as? String, "direct")
        XCTAssertGreaterThan(directReport?["keysCopied"] as? Int ?? 0, 1000)
        // The values (a run of x's) compress: fewer bytes crossed than were copied.
        let copied = try XCTUnwrap(directReport?["bytesCopied"] as? Int)
        let onTheWire = try XCTUnwrap(directReport?["bulkWireBytes"] as? Int)
        XCTAssertLessThan(onTheWire, copied / 3, "compressed on the wire")

        let (relayed, relayReport) = try await migrate(common + ["--shard", "1", "--bulk-route", "relay"])
        XCTAssertEqual(relayed.status, 0, relayed.stderr)
        XCTAssertEqual(relayReport?["bulkRoute"] as? String, "relay")
        let relayedCopied = try XCTUnwrap(relayReport?["bytesCopied"] as? Int)
        XCTAssertLessThan(try XCTUnwrap(relayReport?["bulkWireBytes"] as? Int), relayedCopied / 3, "forwarded compressed")

        let (bad, _) = try await migrate(common + ["--shard", "2", "--bulk-route", "sideways"])
        XCTAssertNotEqual(bad.status, 0)
        XCTAssertTrue(bad.stderr.contains("bulk-route"), bad.stderr)
        let (badCompression, _) = try await migrate(common + ["--shard", "2", "--wire-compression", "zstd"])
        XCTAssertNotEqual(badCompression.status, 0)
        XCTAssertTrue(badCompression.stderr.contains("wire-compression"), badCompression.stderr)
        XCTAssertEqual(badCompression.stderr.split(separator: "\n").count, 1, badCompression.stderr)

        let (uncompressed, plainReport) = try await migrate(common + ["--shard", "2", "--wire-compression", "none"])
        XCTAssertEqual(uncompressed.status, 0, uncompressed.stderr)
        XCTAssertEqual(plainReport?["bulkRoute"] as? String, "direct")
        XCTAssertEqual(plainReport?["bulkWireBytes"] as? Int, plainReport?["bytesCopied"] as? Int, "as read")

        let (relayedPlain, relayedPlainReport) = try await migrate(common + ["--shard", "3", "--bulk-route", "relay", "--wire-compression", "none"])
        XCTAssertEqual(relayedPlain.status, 0, relayedPlain.stderr)
        XCTAssertEqual(relayedPlainReport?["bulkRoute"] as? String, "relay")
        XCTAssertEqual(relayedPlainReport?["bulkWireBytes"] as? Int, relayedPlainReport?["bytesCopied"] as? Int, "relayed as read")

        try await assertMovedAndStop(keys: 6000, valueSize: 300, workspace: workspace, source: a, target: b)
    }

    /// A pull that runs longer than the retry window while it makes progress, then
    /// fails (here at its deadline: the source is rate-limited), is called again
    /// from where it stood. The window counted from the call's start, so a long
    /// call that failed was never retried and the migration aborted.
    func testALongPullThatFailsAfterProgressIsRetried() async throws {
        let workspace = try Workspace("LongPull")
        let a = try ServeProcess(directory: try workspace.makeInstance("a", shards: 2, keys: 6000, valueSize: 300),
                                 tokenFile: workspace.tokenFile, extra: ["--rate-limit", "250KB/s"])
        let b = try ServeProcess(directory: try workspace.makeEmpty("b"), tokenFile: workspace.tokenFile)
        let (result, report) = try await migrate(between(a, b, workspace) + [
            "--shard", "0", "--bulk-transfer", "entries", "--bulk-chunk-bytes", "65536",
            "--call-timeout", "1.5", "--retry-seconds", "1",
        ])
        XCTAssertEqual(result.status, 0, result.stderr)
        XCTAssertEqual(report?["bulkRoute"] as? String, "direct")
        XCTAssertGreaterThan(report?["bulkSeconds"] as? Double ?? 0, 1.5, "longer than a call's deadline")
        try await assertMovedAndStop(keys: 6000, valueSize: 300, workspace: workspace, source: a, target: b)
    }

    /// `--rate-limit` also caps a whole shard streamed as its table files (the
    /// default transfer): the copy takes at least its bytes over the rate.
    func testTheRateLimitCapsTableFileStreams() async throws {
        let workspace = try Workspace("RateLimitedFiles")
        let a = try ServeProcess(directory: try workspace.makeInstance("a", shards: 2, keys: 6000, valueSize: 300),
                                 tokenFile: workspace.tokenFile, extra: ["--rate-limit", "40KB/s"])
        let b = try ServeProcess(directory: try workspace.makeEmpty("b"), tokenFile: workspace.tokenFile)
        let (result, report) = try await migrate(between(a, b, workspace) + ["--shard", "0"])
        XCTAssertEqual(result.status, 0, result.stderr)
        XCTAssertEqual(report?["bulkTransfer"] as? String, "tableFiles")
        let bytes = Double(report?["bytesCopied"] as? Int ?? 0), seconds = report?["bulkSeconds"] as? Double ?? 0
        XCTAssertGreaterThan(bytes, 100_000, "enough to measure a rate")
        // (A token bucket may start with a burst of up to a second's worth.)
        XCTAssertGreaterThanOrEqual(seconds, (bytes - 40_000) / 40_000 * 0.9, "\(bytes) bytes in \(seconds) s at 40KB/s")
        try await assertMovedAndStop(keys: 6000, valueSize: 300, workspace: workspace, source: a, target: b)
    }

    /// A bulk stream from the source carries a budget of chunks; a copy that needs
    /// more streams than one opens the next at once, with no retry delay, so even
    /// `--retry-seconds 0` (no retries at all) moves a shard of hundreds of
    /// small chunks, pulled (pieces, several streams' worth) and relayed.
    func testBulkStreamsReopenWithoutARetry() async throws {
        let workspace = try Workspace("StreamBudget")
        let a = try ServeProcess(directory: try workspace.makeInstance("a", shards: 2, keys: 6000, valueSize: 300),
                                 tokenFile: workspace.tokenFile)
        let b = try ServeProcess(directory: try workspace.makeEmpty("b"), tokenFile: workspace.tokenFile)
        let common = between(a, b, workspace) + ["--bulk-transfer", "entries", "--bulk-chunk-bytes", "4096", "--retry-seconds", "0"]
        for (shard, route) in [("0", "direct"), ("1", "relay")] {
            let (result, report) = try await migrate(common + ["--shard", shard, "--bulk-route", route])
            XCTAssertEqual(result.status, 0, "\(route): \(result.stderr)")
            XCTAssertEqual(report?["bulkRoute"] as? String, route)
            // Hundreds of 4 KiB chunks: more than one stream's 64.
            XCTAssertGreaterThan(report?["bytesCopied"] as? Int ?? 0, 64 * 4096 * 2, route)
        }
        try await assertMovedAndStop(keys: 6000, valueSize: 300, workspace: workspace, source: a, target: b)
    }

    /// Two relayed moves of one source's shards at once through one client (a
    /// rescale's lanes do this), each chunk on a stream of its own: the client's
    /// table of open streams is changed by both, and a change one of them lost
    /// used to leave a stream open (its reader blocked for ever) or bring back a
    /// dropped one. Both moves complete, every key arrives, nothing stays open.
    func testTwoRelayedMovesShareOneClientsStreams() async throws {
        let workspace = try Workspace("SharedStreams")
        let a = try ServeProcess(directory: try workspace.makeInstance("a", shards: 2, keys: 4000, valueSize: 300),
                                 tokenFile: workspace.tokenFile)
        let b = try ServeProcess(directory: try workspace.makeEmpty("b"), tokenFile: workspace.tokenFile)
        var configuration = RemoteInstance.Configuration()
        configuration.bulkChunksPerStream = 1
        configuration.callTimeout = .seconds(20)
        let source = try RemoteInstance(address: a.address, secret: try SharedSecret(Workspace.token), configuration: configuration)
        let target = try workspace.client(b.address)
        let coordinator = MigrationCoordinator(source: source, target: target)
        func request(_ shard: Int) -> MigrationRequest {
            var request = MigrationRequest(shard: shard)
            request.bulkTransfer = .entries
            request.bulkRoute = .relay
            request.bulkChunkBytes = 4096
            return request
        }
        let shard0 = request(0), shard1 = request(1)
        async let first = coordinator.migrate(shard0)
        async let second = coordinator.migrate(shard1)
        let reports = try await [first, second]
        XCTAssertEqual(reports.map(\.bulkRoute), [.relay, .relay])
        XCTAssertTrue(reports.allSatisfy { $0.bytesCopied > 64 * 4096 }, "\(reports.map(\.bytesCopied))")
        XCTAssertEqual(source.openBulkStreams, 0)
        await source.close()
        await target.close()
        try await assertMovedAndStop(keys: 4000, valueSize: 300, workspace: workspace, source: a, target: b)
    }

    /// A target whose peer token the source refuses cannot pull: the coordinator
    /// relays the copy instead, and the move completes.
    func testTargetRefusedByTheSourceFallsBackToTheRelay() async throws {
        let workspace = try Workspace("DirectBulkRefused")
        let wrongToken = workspace.path("wrong-token")
        try "another-secret-0123456789abcdef".write(toFile: wrongToken, atomically: true, encoding: .utf8)
        let a = try ServeProcess(directory: try workspace.makeInstance("a", shards: 2, keys: 4000, valueSize: 200),
                                 tokenFile: workspace.tokenFile)
        let b = try ServeProcess(directory: try workspace.makeEmpty("b"), tokenFile: workspace.tokenFile,
                                 extra: ["--peer-token-file", wrongToken])
        let (result, report) = try await migrate(between(a, b, workspace) + ["--shard", "1", "--bulk-transfer", "entries"])
        XCTAssertEqual(result.status, 0, result.stderr)
        XCTAssertEqual(report?["bulkRoute"] as? String, "relay")
        XCTAssertGreaterThan(report?["keysCopied"] as? Int ?? 0, 1000)

        try await assertMovedAndStop(keys: 4000, valueSize: 200, workspace: workspace, source: a, target: b)
    }

    /// A target from before the streaming and pulling calls (its server answers them
    /// UNIMPLEMENTED): the coordinator relays entries with one ApplyBulk call per
    /// chunk and table files with one WriteTableFile call per piece, and both moves
    /// complete with every key on the target.
    func testTargetWithoutStreamsOrPullsTakesTheCopyOneCallPerChunk() async throws {
        let workspace = try Workspace("DirectBulkUnary")
        let a = try ServeProcess(directory: try workspace.makeInstance("a", shards: 3, keys: 6000, valueSize: 300),
                                 tokenFile: workspace.tokenFile)
        let b = try ServeProcess(directory: try workspace.makeEmpty("b"), tokenFile: workspace.tokenFile,
                                 omitRPCs: ["PullBulk", "PullTableFiles", "ApplyBulkStream", "WriteTableFileStream"])
        let common = between(a, b, workspace) + ["--bulk-chunk-bytes", "65536"]

        let (entries, entriesReport) = try await migrate(common + ["--shard", "0", "--bulk-transfer", "entries"])
        XCTAssertEqual(entries.status, 0, entries.stderr)
        XCTAssertEqual(entriesReport?["bulkTransfer"] as? String, "entries")
        XCTAssertEqual(entriesReport?["bulkRoute"] as? String, "relay")
        XCTAssertGreaterThan(entriesReport?["keysCopied"] as? Int ?? 0, 1000)

        let (files, filesReport) = try await migrate(common + ["--shard", "1", "--bulk-transfer", "table-files"])
        XCTAssertEqual(files.status, 0, files.stderr)
        XCTAssertEqual(filesReport?["bulkTransfer"] as? String, "tableFiles")
        XCTAssertEqual(filesReport?["bulkRoute"] as? String, "relay")
        try assertCompressedOnTheWire(filesReport)  // (relayed one call per piece, as read)

        try await assertMovedAndStop(keys: 6000, valueSize: 300, workspace: workspace, source: a, target: b)
    }

    /// A whole shard pulled as table files reports what its pieces took on the
    /// network: Snappy-compressed by default (what RocksDB's own compression of
    /// each block leaves still shrinks, here by about 40%), the files' own bytes with
    /// `--wire-compression none`. Relayed, the pieces are forwarded compressed as
    /// they came from the source, and arrive whole.
    func testTableFilesCountTheirBytesOnTheWire() async throws {
        let workspace = try Workspace("DirectFilesWire")
        let a = try ServeProcess(directory: try workspace.makeInstance("a", shards: 3, keys: 6000, valueSize: 300),
                                 tokenFile: workspace.tokenFile)
        let b = try ServeProcess(directory: try workspace.makeEmpty("b"), tokenFile: workspace.tokenFile)
        let common = between(a, b, workspace) + ["--bulk-transfer", "table-files"]

        let (compressed, compressedReport) = try await migrate(common + ["--shard", "0"])
        XCTAssertEqual(compressed.status, 0, compressed.stderr)
        XCTAssertEqual(compressedReport?["bulkRoute"] as? String, "direct")
        try assertCompressedOnTheWire(compressedReport)

        let (plain, plainReport) = try await migrate(common + ["--shard", "1", "--wire-compression", "none"])
        XCTAssertEqual(plain.status, 0, plain.stderr)
        XCTAssertEqual(plainReport?["bulkRoute"] as? String, "direct")
        XCTAssertEqual(plainReport?["bulkWireBytes"] as? Int, plainReport?["bytesCopied"] as? Int, "as read")

        let (relayed, relayedReport) = try await migrate(common + ["--shard", "2", "--bulk-route", "relay"])
        XCTAssertEqual(relayed.status, 0, relayed.stderr)
        XCTAssertEqual(relayedReport?["bulkRoute"] as? String, "relay")
        XCTAssertEqual(relayedReport?["bulkTransfer"] as? String, "tableFiles")
        try assertCompressedOnTheWire(relayedReport)

        try await assertMovedAndStop(keys: 6000, valueSize: 300, workspace: workspace, source: a, target: b)
    }

    /// The report's table files (or chunks) took fewer bytes on the wire than
    /// they hold: a piece travels compressed when that saves an eighth or more.
    private func assertCompressedOnTheWire(_ report: [String: Any]?, file: StaticString = #filePath, line: UInt = #line) throws {
        let copied = try XCTUnwrap(report?["bytesCopied"] as? Int, file: file, line: line)
        let onTheWire = try XCTUnwrap(report?["bulkWireBytes"] as? Int, file: file, line: line)
        XCTAssertGreaterThan(onTheWire, 0, file: file, line: line)
        XCTAssertLessThanOrEqual(onTheWire, copied - copied / 8, "compressed on the wire", file: file, line: line)
    }

    /// A source from before table files (no ExportTableFiles): a move that may use
    /// either copies entries instead, and one that demands table files is refused
    /// before anything moves.
    func testSourceWithoutTableFilesMovesEntries() async throws {
        let workspace = try Workspace("DirectBulkNoExport")
        let a = try ServeProcess(directory: try workspace.makeInstance("a", shards: 3, keys: 6000, valueSize: 300),
                                 tokenFile: workspace.tokenFile, omitRPCs: ["ExportTableFiles"])
        let b = try ServeProcess(directory: try workspace.makeEmpty("b"), tokenFile: workspace.tokenFile)
        let common = between(a, b, workspace)

        let (refused, _) = try await migrate(common + ["--shard", "1", "--bulk-transfer", "table-files"])
        XCTAssertNotEqual(refused.status, 0)
        XCTAssertTrue(refused.stderr.contains("table files"), refused.stderr)

        let (moved, report) = try await migrate(common + ["--shard", "0"])
        XCTAssertEqual(moved.status, 0, moved.stderr)
        XCTAssertEqual(report?["bulkTransfer"] as? String, "entries")
        XCTAssertGreaterThan(report?["keysCopied"] as? Int ?? 0, 1000)

        try await assertMovedAndStop(keys: 6000, valueSize: 300, workspace: workspace, source: a, target: b)
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

        let misdirected = ObservedSource(source, peerAddress: c.address.description)
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

extension DirectBulkTests {
    /// A whole shard's table files, pulled by the target in several calls of two
    /// 1 MiB pieces each (each call resuming where the previous one reported),
    /// arrive whole: the import checks every size, and every value reads back.
    func testTableFilesArePulledInSeveralCallsAndPieces() async throws {
        let report = try await moveIncompressibleTableFiles("DirectTableFiles", tableFilesInPiecesOf1MiB) { server, workspace in
            try self.pullingInCallsOfTwoPieces(server, workspace)
        }
        XCTAssertEqual(report.bulkRoute, .direct)
        XCTAssertGreaterThan(report.bytesCopied, 5 << 20, "too small to need several calls")
    }

    /// Table files relayed with one piece unacknowledged at a time: the target
    /// acknowledges each piece once it is written and synced, without waiting
    /// for the next one (which the coordinator sends only after that ack).
    func testRelayedTableFilesWithOnePieceInFlightArriveWhole() async throws {
        var request = tableFilesInPiecesOf1MiB
        request.bulkRoute = .relay
        let report = try await moveIncompressibleTableFiles("RelayOneInFlight", request) { server, _ in
            var configuration = RemoteInstance.Configuration()
            configuration.bulkInFlight = 1
            configuration.retryWindow = .seconds(2)
            configuration.callTimeout = .seconds(5)
            return try RemoteInstance(address: server.address, secret: try SharedSecret(Workspace.token), configuration: configuration)
        }
        XCTAssertEqual(report.bulkRoute, .relay)
    }

    /// Moves the incompressible shard as table files (`request`) between two new
    /// servers, through the target client `makeTarget` gives, and checks that
    /// every key and value arrived.
    private func moveIncompressibleTableFiles(_ name: String, _ request: MigrationRequest,
                                              target makeTarget: (ServeProcess, Workspace) throws -> RemoteInstance)
        async throws -> MigrationReport {
        let workspace = try Workspace(name)
        let (dir, expected) = try makeIncompressibleShard(workspace)
        let a = try ServeProcess(directory: dir, tokenFile: workspace.tokenFile)
        let b = try ServeProcess(directory: try workspace.makeEmpty("b"), tokenFile: workspace.tokenFile)
        let source = try workspace.client(a.address)
        let target = try makeTarget(b, workspace)
        let report = try await MigrationCoordinator(source: source, target: target).migrate(request)
        XCTAssertEqual(report.bulkTransfer, .tableFiles)
        XCTAssertEqual(report.keysCopied, 16_000)
        try await assertValues(expected, on: target)
        await source.close()
        await target.close()
        XCTAssertEqual(a.terminate(), 0)
        XCTAssertEqual(b.terminate(), 0)
        return report
    }

    /// A pull refused after some of its calls (the target's third call cannot
    /// reach the source: failure point `migration.target.pull-probe`) has written
    /// the files' first 4 MiB on the target: the coordinator relays only the rest,
    /// reading exactly the bytes the target lacks, and the files arrive whole.
    func testARelayAfterAPartialPullSendsOnlyTheRestOfTheTableFiles() async throws {
        let workspace = try Workspace("DirectTableFilesPartial")
        let (dir, expected) = try makeIncompressibleShard(workspace)
        let a = try ServeProcess(directory: dir, tokenFile: workspace.tokenFile)
        let b = try ServeProcess(directory: try workspace.makeEmpty("b"), tokenFile: workspace.tokenFile,
                                 failpoints: "migration.target.pull-probe=error@3")
        let source = ObservedSource(try workspace.client(a.address))
        let target = try pullingInCallsOfTwoPieces(b, workspace)

        let report = try await MigrationCoordinator(source: source, target: target).migrate(tableFilesInPiecesOf1MiB)
        XCTAssertEqual(report.bulkTransfer, .tableFiles)
        XCTAssertEqual(report.bulkRoute, .relay)
        XCTAssertEqual(report.keysCopied, 16_000)
        // Two calls of two 1 MiB pieces were pulled; the relay read the rest, once.
        XCTAssertGreaterThan(report.bytesCopied, 5 << 20)
        XCTAssertEqual(source.tableFileBytesRead.value, report.bytesCopied - (4 << 20))
        try await assertValues(expected, on: target)
        await source.base.close()
        await target.close()
        XCTAssertEqual(a.terminate(), 0)
        XCTAssertEqual(b.terminate(), 0)
    }

    /// The target dies (kill -9) after writing its third pulled piece and comes
    /// back while the coordinator retries: the pieces it wrote survive the
    /// restart, the next pull resumes at the last one it reported (before, the
    /// restart removed them and the resumed pull was refused: a write past a
    /// file's end), and the files arrive whole.
    func testATargetRestartDuringATableFilePullResumesIt() async throws {
        try await assertTableFilePullSurvivesRestart(of: "target", at: "migration.target.table-file-written=kill@3")
    }

    /// The source dies (kill -9) as the target reads its third piece and comes
    /// back while the target's reads retry: the export survives the restart (it
    /// was removed at open, which failed the move), and the pull reads on from it.
    func testASourceRestartDuringATableFilePullResumesIt() async throws {
        try await assertTableFilePullSurvivesRestart(of: "source", at: "migration.source.table-file-read=kill@3")
    }

    /// Moves the incompressible shard as table files in 1 MiB pieces while
    /// `side` is killed at `failpoint` and restarted: the one migration must
    /// complete, direct, with every value on the target and nothing left over.
    private func assertTableFilePullSurvivesRestart(of side: String, at failpoint: String) async throws {
        let workspace = try Workspace("DirectTableFilesRestart")
        let (dir, expected) = try makeIncompressibleShard(workspace)
        let a = try ServeProcess(directory: dir, tokenFile: workspace.tokenFile, failpoints: side == "source" ? failpoint : nil)
        let b = try ServeProcess(directory: try workspace.makeEmpty("b"), tokenFile: workspace.tokenFile,
                                 failpoints: side == "target" ? failpoint : nil)
        let source = try workspace.client(a.address)
        let target = try pullingInCallsOfTwoPieces(b, workspace, retryWindow: .seconds(30))
        let written = Mutex<[Int]>([])
        let coordinator = MigrationCoordinator(source: source, target: target)
        let request = tableFilesInPiecesOf1MiB
        let move = Task { try await coordinator.migrate(request) { progress in
            written.withLock { $0.append(progress.bytesCopied) }
        } }
        let victim = side == "source" ? a : b
        XCTAssertTrue(victim.waitForExit(timeout: 20), "the failure point did not fire")
        try victim.restart()

        let report = try await move.value
        XCTAssertEqual(report.bulkTransfer, .tableFiles)
        XCTAssertEqual(report.bulkRoute, .direct)
        XCTAssertEqual(report.keysCopied, 16_000)
        // Resumed, not restarted: the bytes reported written never go back or exceed the files.
        let reported = written.withLock { $0 }
        XCTAssertEqual(reported, reported.sorted())
        XCTAssertLessThanOrEqual(reported.max() ?? 0, report.bytesCopied)
        try await assertValues(expected, on: target)
        for instance in [source, target] {
            let unfinished = try await instance.describeInstance().unfinishedMigrations
            XCTAssertTrue(unfinished.isEmpty)
        }
        XCTAssertFalse(FileManager.default.fileExists(atPath: workspace.path("b") + "/migration-import/" + report.id))
        XCTAssertFalse(FileManager.default.fileExists(atPath: dir + "/migration-export/" + report.id))
        await source.close()
        await target.close()
        XCTAssertEqual(a.terminate(), 0)
        XCTAssertEqual(b.terminate(), 0)
    }

    /// A one-shard instance whose table files hold 16,000 keys of 400 random
    /// letters (snappy cannot shrink them below several MiB), flushed and
    /// compacted so the files hold every key once; and every ninth key's value.
    private func makeIncompressibleShard(_ workspace: Workspace) throws -> (String, [String: String]) {
        let dir = workspace.path("a")
        var generator = SplitMix(seed: 11)
        var expected: [String: String] = [:]
        let engine = try ShardEngine.create(at: dir, shards: 1)
        defer { engine.close() }
        let alphabet = Array("abcdefghijklmnopqrstuvwxyz0123456789".utf8)
        for start in stride(from: 0, to: 16_000, by: 1000) {
            try engine.write { batch in
                for i in start..<start + 1000 {
                    let value = String(decoding: (0..<400).map { _ in alphabet[Int(generator.next() % 36)] }, as: UTF8.self)
                    if i % 9 == 0 { expected["key-\(i)"] = value }
                    try batch.put("key-\(i)", value)
                }
            }
        }
        try engine.purgeExpired()
        return (dir, expected)
    }

    /// A client of `server` whose pulls go in calls of two pieces (and give up on a source after `retryWindow`).
    private func pullingInCallsOfTwoPieces(_ server: ServeProcess, _ workspace: Workspace,
                                           retryWindow: Duration = .seconds(2)) throws -> RemoteInstance {
        var configuration = RemoteInstance.Configuration()
        configuration.bulkChunksPerStream = 2
        configuration.retryWindow = retryWindow
        return try RemoteInstance(address: server.address, secret: try SharedSecret(Workspace.token), configuration: configuration)
    }

    private var tableFilesInPiecesOf1MiB: MigrationRequest {
        var request = MigrationRequest(shard: 0)
        request.bulkTransfer = .tableFiles
        request.bulkChunkBytes = 1 << 20
        return request
    }

    private func assertValues(_ expected: [String: String], on target: RemoteInstance) async throws {
        for (key, value) in expected {
            let stored = try await target.get(Array(key.utf8))
            XCTAssertEqual(stored.map { String(decoding: $0, as: UTF8.self) }, value, key)
        }
    }

    /// Malformed pull requests (only a client of its own could send them) are
    /// refused with `invalidArgument` before anything is read or written: a
    /// source address that is not HOST:PORT, a resume position past the file list.
    func testMalformedPullRequestsAreRefused() async throws {
        let workspace = try Workspace("DirectBulkMalformed")
        let b = try ServeProcess(directory: try workspace.makeInstance("b", shards: 1, keys: 50), tokenFile: workspace.tokenFile)
        let target = try workspace.client(b.address)
        let before = try await target.describeInstance()
        let plan = WireMigrationPlan(MigrationPlan(
            id: "m-malformed", sourceInstance: "elsewhere", targetInstance: before.instanceID, sourceLocation: "127.0.0.1:1",
            targetLocation: b.address.description, sourceShard: 0, range: .keyGroups(KeyGroupRange(0, 16)), shape: .newShard,
            targetShard: 1))
        func assertRefused(_ what: String, saying expected: String, _ call: () async throws -> Void) async {
            do {
                try await call()
                XCTFail("\(what) was accepted")
            } catch let error as RPCError {
                XCTAssertEqual(error.code, .invalidArgument, "\(what): \(error)")
                XCTAssertTrue(error.message.contains(expected), "\(what): \(error.message)")
            } catch {
                XCTFail("\(what): \(error)")
            }
        }
        await assertRefused("a source address without a port", saying: "is not HOST:PORT") {
            var request = WirePullBulkRequest()
            request.plan = plan
            request.sourceAddress = "/var/lib/shard"
            try await target.stub.pullBulk(request) { response in for try await _ in response.messages {} }
        }
        await assertRefused("a resume file past the list", saying: "resume file 5 of 1 files") {
            var request = WirePullTableFilesRequest()
            request.plan = plan
            request.sourceAddress = "127.0.0.1:1"
            request.files = [WireTableFileInfo(TableFile(directory: "", name: "000001.sst", level: 6, smallestSequence: 0,
                                                         largestSequence: 0, size: 10, entries: 1, deletions: 0, rangeDeletions: 0))]
            request.resumeFile = 5
            try await target.stub.pullTableFiles(request) { response in for try await _ in response.messages {} }
        }
        // A pull for a migration not prepared here is refused before the source is
        // dialled or its pieces listed: the sizes are the peer's word (1.3 TB here,
        // and no limit per call), and listing them first cost the target gigabytes.
        do {
            var request = WirePullTableFilesRequest()
            request.plan = plan
            request.sourceAddress = "127.0.0.1:1"
            request.files = [WireTableFileInfo(TableFile(directory: "", name: "000001.sst", level: 6, smallestSequence: 0,
                                                         largestSequence: 0, size: 1_300_000_000_000, entries: 1,
                                                         deletions: 0, rangeDeletions: 0))]
            request.maxChunkBytes = 1 << 16
            request.maxCallBytes = .max
            try await target.stub.pullTableFiles(request) { response in for try await _ in response.messages {} }
            XCTFail("a pull for a migration not prepared here was accepted")
        } catch let error as RPCError {
            XCTAssertTrue(error.message.contains("takes no table files"), "\(error)")
        }
        let after = try await target.describeInstance()
        XCTAssertEqual(after.shards, before.shards)
        XCTAssertEqual(after.unfinishedMigrations, before.unfinishedMigrations)
        await target.close()
        XCTAssertEqual(b.terminate(), 0)
    }

    /// The source dies (kill -9) during a direct pull and stays down: the target
    /// stops retrying it when the coordinator's `--retry-seconds` runs out (the
    /// coordinator sends its window with the pull), so `shardctl migrate` fails
    /// in about that time, not in the target's own 30 s, naming the source as
    /// unreachable. Entries and table files alike.
    func testADeadSourceFailsThePullWithinTheCoordinatorsRetryWindow() async throws {
        for (transfer, point) in [("entries", "migration.source.bulk-chunk=kill@3"),
                                  ("table-files", "migration.source.table-file-read=kill@1")] {
            let workspace = try Workspace("DeadSource")
            let a = try ServeProcess(directory: try workspace.makeInstance("a", shards: 2, keys: 8000, valueSize: 400),
                                     tokenFile: workspace.tokenFile, failpoints: point)
            let b = try ServeProcess(directory: try workspace.makeEmpty("b"), tokenFile: workspace.tokenFile)
            let started = ContinuousClock.now
            let (result, _) = try await migrate(between(a, b, workspace) + ["--shard", "0", "--retry-seconds", "2",
                                                                             "--bulk-transfer", transfer, "--bulk-chunk-bytes", "65536"])
            let elapsed = ContinuousClock.now - started
            XCTAssertTrue(a.waitForExit(timeout: 1), "\(point) did not fire")
            XCTAssertNotEqual(result.status, 0, "\(transfer): \(result.stdout)")
            XCTAssertTrue(result.stderr.contains(a.address.description), "\(transfer): \(result.stderr)")
            // 2 s for the pull, then the abort's own calls to the dead source (2 s more);
            // the target's default window alone would be 30 s.
            XCTAssertLessThan(elapsed, .seconds(15), "\(transfer): the pull outlived --retry-seconds: \(result.stderr)")
            XCTAssertEqual(b.terminate(), 0)
        }
    }

    /// A chunk read through the transport for 4 MiB (or a 1 MiB pull piece), as
    /// the source fills it (up to one entry past what was asked), encodes to a
    /// message of at most 4 MiB (1 MiB) for entries of 64 bytes and more, so
    /// grpc-swift assembles it in a buffer of that size, not twice it. A pull
    /// splits a chunk into at least four pieces that add up to the chunk.
    func testChunkMessagesFitTheirSize() throws {
        for size in [4 << 20, ShardInstanceService.pullPieceBytes] {
            for entry in [64, 1000, 40_000] {
                var chunk = BulkChunk(capacity: size)
                let key = [UInt8](repeating: 7, count: 24), value = [UInt8](repeating: 9, count: entry - 24)
                let asked = RemoteInstance.wireChunkBytes(size)
                while chunk.bytes < asked {
                    key.withUnsafeBytes { k in value.withUnsafeBytes { chunk.append(key: k, value: $0) } }
                }
                chunk.lastKey = key
                let message: [UInt8] = try WireBulkChunk(chunk).serializedBytes()
                XCTAssertLessThanOrEqual(message.count, size, "\(size) bytes of \(entry)-byte entries")
            }
        }
        for maxBytes in [4096, 65536, 4 << 20, 32 << 20] {
            let pieces = ShardInstanceService.pullPieces(maxBytes)
            XCTAssertGreaterThanOrEqual(pieces.perChunk, 4)
            XCTAssertLessThanOrEqual(pieces.bytes, ShardInstanceService.pullPieceBytes)
            XCTAssertLessThanOrEqual(pieces.bytes * pieces.perChunk, max(maxBytes, 4096 * 4))
            XCTAssertGreaterThan(pieces.bytes * (pieces.perChunk + 1), maxBytes, "\(maxBytes): the pieces make up a chunk")
        }
    }

    /// The pieces of one pull call: within the budget, file after file, resuming mid-file.
    func testPullPiecesFollowFilesAndBudget() {
        func file(_ name: String, _ size: UInt64) -> TableFile {
            TableFile(directory: "", name: name, level: 6, smallestSequence: 0, largestSequence: 0, size: size,
                      entries: 1, deletions: 0, rangeDeletions: 0)
        }
        let files = [file("000001.sst", 2500), file("000002.sst", 0), file("000003.sst", 1000)]
        let all = ShardInstanceService.pieces(of: files, from: 0, at: 0, chunkBytes: 1000, budget: .max)
        XCTAssertEqual(all.map { [$0.file, Int($0.offset), $0.length] },
                       [[0, 0, 1000], [0, 1000, 1000], [0, 2000, 500], [2, 0, 1000]])
        let budgeted = ShardInstanceService.pieces(of: files, from: 0, at: 1500, chunkBytes: 1000, budget: 1200)
        XCTAssertEqual(budgeted.map { [$0.file, Int($0.offset), $0.length] }, [[0, 1500, 1000], [2, 0, 200]])
        XCTAssertTrue(ShardInstanceService.pieces(of: files, from: 2, at: 1000, chunkBytes: 1000, budget: 10).isEmpty)
        XCTAssertTrue(ShardInstanceService.pieces(of: files, from: 3, at: 0, chunkBytes: 1000, budget: 10).isEmpty)
    }
}

/// The source through a remote client, as the coordinator sees it: it can
/// report another instance's address as its own (for the target to pull from),
/// and it counts the table file bytes the coordinator reads itself to relay them.
private struct ObservedSource: MigrationSource {
    let base: RemoteInstance
    let peerAddress: String?
    /// Table file bytes read through this client (the coordinator's relay).
    let tableFileBytesRead = LockedValue(0)

    init(_ base: RemoteInstance, peerAddress: String? = nil) {
        self.base = base
        self.peerAddress = peerAddress ?? base.peerAddress
    }

    func describeInstance() async throws -> InstanceDescription { try await base.describeInstance() }
    func prepareOutgoing(_ plan: MigrationPlan) async throws { try await base.prepareOutgoing(plan) }
    func openBulk(_ plan: MigrationPlan) async throws -> UInt64 { try await base.openBulk(plan) }
    func exportTableFiles(_ plan: MigrationPlan) async throws -> [TableFile]? { try await base.exportTableFiles(plan) }
    func readTableFile(_ plan: MigrationPlan, name: String, offset: UInt64, maxBytes: Int) async throws -> Data {
        let data = try await base.readTableFile(plan, name: name, offset: offset, maxBytes: maxBytes)
        tableFileBytesRead.update { $0 += data.count }
        return data
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
