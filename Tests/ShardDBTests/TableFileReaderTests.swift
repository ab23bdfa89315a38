import Foundation
@testable import ShardDB
import Synchronization
import XCTest

/// The reader a relaying coordinator sends table files with: pieces in order
/// and whole, from any byte, and a file shorter than exported refused.
final class TableFileReaderTests: XCTestCase {
    /// A one-shard source with its shard exported as table files for `plan`.
    private func exportedShard(_ dir: TemporaryDirectory) async throws -> (ShardEngine, ShardEngine, MigrationPlan, [TableFile]) {
        let (source, target, plan) = try await preparedMigration(in: dir, shards: 1, keys: 3000) {
            String(repeating: "v", count: 200) + "\($0)"
        }
        _ = try source.openBulk(plan)
        let files = try XCTUnwrap(try source.exportTableFiles(plan))
        XCTAssertFalse(files.isEmpty)
        return (source, target, plan, files)
    }

    func testPiecesComeInOrderWholeAndAShortFileIsRefused() async throws {
        let dir = TemporaryDirectory()
        let (source, target, plan, files) = try await exportedShard(dir)
        defer { source.close(); target.close() }

        // Small pieces: many reads.
        let reader = TableFileReader(source: source, plan: plan, files: files, from: 0, maxBytes: 4096)
        var received: [String: Data] = [:]
        var pieces = 0
        while let piece = try await reader.next() {
            XCTAssertEqual(piece.offset, UInt64(received[piece.name]?.count ?? 0), "in order")
            received[piece.name, default: Data()].append(piece.data)
            pieces += 1
        }
        XCTAssertGreaterThan(pieces, 10)
        for file in files {
            XCTAssertEqual(received[file.name], try Data(contentsOf: URL(fileURLWithPath: file.path)), file.name)
        }
        let done = try await reader.next()
        XCTAssertNil(done, "nothing after the end")

        // From a byte inside the files: the rest only.
        let start = files[0].size / 2
        let rest = TableFileReader(source: source, plan: plan, files: files, from: start, maxBytes: 1 << 20)
        let first = try await rest.next()
        XCTAssertEqual(first?.name, files[0].name)
        XCTAssertEqual(first?.offset, start)

        // A file cut short after the export: refused when its piece comes short.
        XCTAssertEqual(truncate(files[0].path, off_t(files[0].size / 2)), 0)
        let short = TableFileReader(source: source, plan: plan, files: files, from: 0, maxBytes: 4096)
        do {
            while try await short.next() != nil {}
            XCTFail("a file shorter than exported was read to its end")
        } catch let error as ShardDBError {
            XCTAssertEqual(error.code, .corruptedValue, "\(error)")
        }
    }

    /// A piece shorter than asked for inside a file is refused: a compressed
    /// piece whose compression flag flipped on the way (the flag is outside the
    /// checksum) arrives as its compressed bytes, and was written as the file's.
    func testAShortPieceInsideAFileIsRefused() async throws {
        let dir = TemporaryDirectory()
        let (source, target, plan, files) = try await exportedShard(dir)
        defer { source.close(); target.close() }
        XCTAssertGreaterThan(files[0].size, 3 * 4096)
        let reader = TableFileReader(source: ShortSecondPiece(base: source), plan: plan, files: files, from: 0, maxBytes: 4096)
        let first = try await reader.next()
        XCTAssertEqual(first?.data.count, 4096)
        do {
            _ = try await reader.next()
            XCTFail("a short piece inside a file was taken")
        } catch let error as ShardDBError {
            XCTAssertEqual(error.code, .corruptedValue, "\(error)")
            XCTAssertTrue(error.message.contains("expected 4096"), error.message)
        }
    }
}

/// A real source whose second table-file piece comes back cut to half (what a
/// transport fault looks like to the reader); every other call is the engine's.
private final class ShortSecondPiece: MigrationSource {
    let base: ShardEngine
    private let reads = Mutex(0)

    init(base: ShardEngine) { self.base = base }

    func readTableFile(_ plan: MigrationPlan, name: String, offset: UInt64, maxBytes: Int) async throws -> Data {
        let data = try await base.readTableFile(plan, name: name, offset: offset, maxBytes: maxBytes)
        let count = reads.withLock { $0 += 1; return $0 }
        return count == 2 ? data.prefix(data.count / 2) : data
    }
    func describeInstance() async throws -> InstanceDescription { try await base.describeInstance() }
    func prepareOutgoing(_ plan: MigrationPlan) async throws { try await base.prepareOutgoing(plan) }
    func openBulk(_ plan: MigrationPlan) async throws -> UInt64 { try await base.openBulk(plan) }
    func exportTableFiles(_ plan: MigrationPlan) async throws -> [TableFile]? { try await base.exportTableFiles(plan) }
    func releaseTableFiles(_ plan: MigrationPlan) async throws { try await base.releaseTableFiles(plan) }
    var exportsLocalTableFiles: Bool { false }
    func readBulk(_ plan: MigrationPlan, after: [UInt8]?, maxBytes: Int) async throws -> BulkChunk {
        try await base.readBulk(plan, after: after, maxBytes: maxBytes)
    }
    func readChanges(_ plan: MigrationPlan, from: UInt64, maxRecords: Int) async throws -> ChangeChunk {
        try await base.readChanges(plan, from: from, maxRecords: maxRecords)
    }
    func fenceOutgoing(_ plan: MigrationPlan) async throws -> UInt64 { try await base.fenceOutgoing(plan) }
    func commitOutgoing(_ plan: MigrationPlan) async throws { try await base.commitOutgoing(plan) }
    func abortOutgoing(_ plan: MigrationPlan) async throws { try await base.abortOutgoing(plan) }
    func cleanupOutgoing(_ plan: MigrationPlan) async throws { try await base.cleanupOutgoing(plan) }
    func migrationEntry(_ id: String) async throws -> MigrationJournalEntry? { try await base.migrationEntry(id) }
}
