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

    /// With `allowGlobalSequenceNumber` off, a file overlapping keys or a range
    /// tombstone in the family is refused (and changes nothing) instead of taking a
    /// sequence number that no WAL record carries; one overlapping nothing goes in.
    func testIngestionWithoutAGlobalSequenceNumberRefusesOverlaps() throws {
        let dir = TemporaryDirectory()
        let db = try openDatabase(at: dir.path("db"), columnFamilies: ["staging"])
        let family = try db.columnFamily(named: "staging")
        try db.put(bytes("k5"), bytes("old"), in: family)
        try db.flush(family)  // in a table file, not only the memtable
        try writeFile(dir.path("over.sst"), [("k4", "new"), ("k5", "new")])
        try writeFile(dir.path("beside.sst"), [("k6", "new"), ("k7", "new")])
        let before = try db.latestSequenceNumber()

        XCTAssertThrowsError(try db.ingestExternalFiles([dir.path("over.sst")], into: family, moveFiles: true,
                                                        snapshotConsistency: false, allowGlobalSequenceNumber: false)) {
            XCTAssertTrue(Database.isGlobalSequenceNumberRequired($0), "\($0)")
        }
        XCTAssertEqual(text(try db.get(bytes("k5"), in: family)), "old")
        XCTAssertNil(try db.get(bytes("k4"), in: family))
        XCTAssertTrue(FileManager.default.fileExists(atPath: dir.path("over.sst")))  // still there for another way in
        XCTAssertEqual(try db.latestSequenceNumber(), before)

        try db.ingestExternalFiles([dir.path("beside.sst")], into: family, moveFiles: true,
                                   snapshotConsistency: false, allowGlobalSequenceNumber: false)
        XCTAssertEqual(text(try db.get(bytes("k6"), in: family)), "new")
        XCTAssertEqual(try db.latestSequenceNumber(), before)

        // A range tombstone counts as an overlap too; in the memtable as well.
        try db.deleteRange(from: bytes("m0"), to: bytes("m9"), in: family)
        let tombstoned = try db.latestSequenceNumber()
        try writeFile(dir.path("under.sst"), [("m1", "new")])
        XCTAssertThrowsError(try db.ingestExternalFiles([dir.path("under.sst")], into: family, moveFiles: true,
                                                        snapshotConsistency: false, allowGlobalSequenceNumber: false)) {
            XCTAssertTrue(Database.isGlobalSequenceNumberRequired($0), "\($0)")
        }
        XCTAssertEqual(try db.latestSequenceNumber(), tombstoned)
        // Allowed (the default), the same file takes a sequence number of its own.
        try db.ingestExternalFiles([dir.path("under.sst")], into: family, moveFiles: true, snapshotConsistency: false)
        XCTAssertEqual(try db.latestSequenceNumber(), tombstoned + 1)
        XCTAssertEqual(text(try db.get(bytes("m1"), in: family)), "new")
        // Other failures are not this one.
        XCTAssertThrowsError(try db.ingestExternalFiles([dir.path("missing.sst")], allowGlobalSequenceNumber: false)) {
            XCTAssertFalse(Database.isGlobalSequenceNumberRequired($0), "\($0)")
        }
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
