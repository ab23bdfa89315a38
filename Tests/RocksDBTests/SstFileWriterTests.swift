import Foundation
import RocksDB
import XCTest

/// Table files written outside the database and ingested into a column family.
final class SstFileWriterTests: XCTestCase {
    private func writeFile(_ path: String, _ entries: [(String, String)]) throws {
        let writer = try SstFileWriter(path: path, options: Options())
        for (key, value) in entries { try writer.put(bytes(key), bytes(value)) }
        XCTAssertEqual(writer.count, entries.count)
        try writer.finish()
    }

    func testIngestedFileIsVisibleAndSurvivesReopen() throws {
        let dir = TemporaryDirectory()
        let db = try openDatabase(at: dir.path("db"), columnFamilies: ["staging"])
        let family = try db.columnFamily(named: "staging")
        let file = dir.path("chunk.sst")
        try writeFile(file, (0..<100).map { (String(format: "k%03d", $0), "v\($0)") })
        let before = try db.latestSequenceNumber()
        try db.ingestExternalFiles([file], into: family, moveFiles: true)
        // Into an empty family the file goes in without a sequence number of its own
        // (no WAL record either: a changelog reader sees nothing).
        XCTAssertEqual(try db.latestSequenceNumber(), before)
        XCTAssertEqual(text(try db.get(bytes("k042"), in: family)), "v42")
        XCTAssertNil(try db.get(bytes("k042")))  // only the family it was ingested into
        db.close()
        let reopened = try openDatabase(at: dir.path("db"), columnFamilies: ["staging"])
        XCTAssertEqual(text(try reopened.get(bytes("k099"), in: reopened.columnFamily(named: "staging"))), "v99")
    }

    /// Ingesting the same keys again (a retry after a crash) is harmless, and an
    /// ingested file over a range tombstone shadows it: newer data wins.
    func testReingestionAndTombstonesKeepTheNewestData() throws {
        let dir = TemporaryDirectory()
        let db = try openDatabase(at: dir.path("db"))
        try db.put(bytes("k1"), bytes("old"))
        try db.deleteRange(from: bytes("k0"), to: bytes("k9"))
        let first = dir.path("a.sst"), again = dir.path("b.sst")
        try writeFile(first, [("k1", "new"), ("k2", "two")])
        try writeFile(again, [("k1", "new"), ("k2", "two")])
        try db.ingestExternalFiles([first], moveFiles: true)
        try db.ingestExternalFiles([again], moveFiles: false)
        XCTAssertEqual(text(try db.get(bytes("k1"))), "new")
        XCTAssertEqual(text(try db.get(bytes("k2"))), "two")
        // A later ordinary write still wins over the ingested value.
        try db.put(bytes("k2"), bytes("later"))
        XCTAssertEqual(text(try db.get(bytes("k2"))), "later")
    }

    func testKeysOutOfOrderEmptyFilesAndMissingFilesAreErrors() throws {
        let dir = TemporaryDirectory()
        let db = try openDatabase(at: dir.path("db"))
        let writer = try SstFileWriter(path: dir.path("bad.sst"), options: Options())
        try writer.put(bytes("b"), bytes("1"))
        assertThrows(.invalidArgument, try writer.put(bytes("a"), bytes("2")))
        assertThrows(.invalidArgument, try writer.put(bytes("b"), bytes("3")))
        let empty = try SstFileWriter(path: dir.path("empty.sst"), options: Options())
        XCTAssertThrowsError(try empty.finish())
        XCTAssertThrowsError(try empty.finish()) { XCTAssertEqual(($0 as? RocksDBError)?.kind, .closed) }
        XCTAssertThrowsError(try db.ingestExternalFiles([dir.path("missing.sst")]))
        XCTAssertThrowsError(try SstFileWriter(path: dir.path("no/such/dir/x.sst"), options: Options()))
        // Nothing reached the database.
        XCTAssertNil(try db.get(bytes("b")))
    }
}
