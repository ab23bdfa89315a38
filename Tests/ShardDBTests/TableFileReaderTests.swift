import Foundation
@testable import ShardDB
import XCTest

/// The reader a relaying coordinator sends table files with: pieces in order
/// and whole, from any byte, and a file shorter than exported refused.
final class TableFileReaderTests: XCTestCase {
    func testPiecesComeInOrderWholeAndAShortFileIsRefused() async throws {
        let dir = TemporaryDirectory()
        let (source, target, plan) = try await preparedMigration(in: dir, shards: 1, keys: 3000) {
            String(repeating: "v", count: 200) + "\($0)"
        }
        defer { source.close(); target.close() }
        _ = try source.openBulk(plan)
        let files = try XCTUnwrap(try source.exportTableFiles(plan))
        XCTAssertFalse(files.isEmpty)

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
}
