import Foundation
@testable import RocksDB
import XCTest

/// Flushing several column families in one call (the 7.8 C API flushes one per
/// call; the shim passes them all to DB::Flush, which with atomic_flush commits
/// them as one).
final class FlushTests: XCTestCase {
    func testAtomicFlushIsAnOptionThatReadsBack() {
        let options = Options()
        XCTAssertFalse(options.atomicFlush)
        options.atomicFlush = true
        XCTAssertTrue(options.atomicFlush)
        XCTAssertTrue(Options(copying: options).atomicFlush)
    }

    func testOneCallFlushesEveryFamilyNamed() throws {
        let dir = TemporaryDirectory()
        let db = try openDatabase(at: dir.path("db"), columnFamilies: ["a", "b", "c"]) { $0.atomicFlush = true }
        defer { db.close() }
        let families = try ["a", "b", "c"].map { try db.columnFamily(named: $0) }
        for family in families { try db.put("k", "v", in: family) }
        try db.flush(Array(families.prefix(2)))
        let files = try families.map { try db.property("rocksdb.num-files-at-level0", in: $0) }
        XCTAssertEqual(files, ["1", "1", "0"], "a and b flushed, c (not named) still in its memtable")
        XCTAssertEqual(text(try db.get("k", in: families[2])), "v")
        try db.flush([])  // nothing named: nothing to do
    }

    func testAFamilyOfAnotherDatabaseOrAClosedDatabaseIsRefused() throws {
        let dir = TemporaryDirectory()
        let db = try openDatabase(at: dir.path("db"), columnFamilies: ["a"])
        let other = try openDatabase(at: dir.path("other"), columnFamilies: ["a"])
        defer { other.close() }
        let foreign = try other.columnFamily(named: "a")
        XCTAssertThrowsError(try db.flush([foreign])) { error in
            XCTAssertEqual((error as? RocksDBError)?.kind, .invalidArgument, "\(error)")
        }
        let family = try db.columnFamily(named: "a")
        db.close()
        XCTAssertThrowsError(try db.flush([family]))
    }
}
