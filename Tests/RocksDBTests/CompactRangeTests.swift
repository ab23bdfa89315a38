import CRocksDB
import Foundation
@testable import RocksDB
import XCTest

/// compactRange says when RocksDB did not compact: the C API's call drops the
/// status, so a paused or failed compaction used to look like success (and a
/// TTL purge built on it reported entries dropped that were still on disk).
final class CompactRangeTests: XCTestCase {
    func testAPausedCompactionIsAnErrorNotASilentNoOp() throws {
        let dir = TemporaryDirectory()
        let db = try openDatabase(at: dir.path("db"))
        defer { db.close() }
        for key in ["a", "b", "c"] { try db.put(key, "value") }
        try db.flush()
        try db.withHandle { rocksdb_disable_manual_compaction($0) }
        XCTAssertThrowsError(try db.compactRange()) { error in
            XCTAssertTrue("\(error)".lowercased().contains("paused"), "\(error)")
        }
        try db.withHandle { rocksdb_enable_manual_compaction($0) }
        try db.compactRange(from: Array("a".utf8), to: Array("c".utf8))
        XCTAssertEqual(try db.property("rocksdb.num-files-at-level0"), "0", "compacted once allowed again")
        XCTAssertEqual(text(try db.get("c")), "value")
    }
}
