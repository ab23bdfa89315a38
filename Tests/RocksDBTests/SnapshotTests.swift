import Foundation
import RocksDB
import XCTest

final class SnapshotTests: XCTestCase {
    func testReadsWithSnapshotSeeOldValues() throws {
        let dir = TemporaryDirectory()
        let db = try openDatabase(at: dir.path("db"), columnFamilies: ["cf"])
        let family = try db.columnFamily(named: "cf")
        try db.put("k", "old")
        try db.put(bytes("k"), bytes("old-cf"), in: family)
        try db.put("deleted-later", "here")
        let snapshot = try db.snapshot()

        try db.put("k", "new")
        try db.put(bytes("k"), bytes("new-cf"), in: family)
        try db.delete(bytes("deleted-later"))
        try db.put("added-later", "x")
        try db.flush()

        let options = ReadOptions()
        try options.setSnapshot(snapshot)
        XCTAssertTrue(options.snapshot === snapshot)
        XCTAssertEqual(text(try db.get("k", options: options)), "old")
        XCTAssertEqual(text(try db.get(bytes("k"), in: family, options: options)), "old-cf")
        XCTAssertEqual(text(try db.get("deleted-later", options: options)), "here")
        XCTAssertNil(try db.get("added-later", options: options))
        XCTAssertEqual(try db.withValue(forKey: bytes("k"), options: options) { String(decoding: $0, as: UTF8.self) }, "old")
        XCTAssertEqual(try db.multiGet([bytes("k"), bytes("added-later")], options: options).map(text), ["old", nil])

        XCTAssertEqual(text(try db.get("k")), "new")
        XCTAssertNil(try db.get("deleted-later"))

        // Back to the current state.
        try options.setSnapshot(nil)
        XCTAssertEqual(text(try db.get("k", options: options)), "new")
    }

    func testSequenceNumberMatchesLatestAtCreation() throws {
        let dir = TemporaryDirectory()
        let db = try openDatabase(at: dir.path("db"))
        let empty = try db.snapshot()
        XCTAssertEqual(empty.sequenceNumber, try db.latestSequenceNumber())

        var previous = empty.sequenceNumber
        for i in 0..<5 {
            try db.put("k\(i)", "v")
            let latest = try db.latestSequenceNumber()
            XCTAssertEqual(latest, previous + 1)
            let snapshot = try db.snapshot()
            XCTAssertEqual(snapshot.sequenceNumber, latest)
            previous = latest
        }
        let batch = WriteBatch()
        for i in 0..<10 { try batch.put(bytes("b\(i)"), bytes("v")) }
        try db.write(batch)
        let afterBatch = try db.snapshot()
        XCTAssertEqual(afterBatch.sequenceNumber, previous + 10)
        XCTAssertEqual(afterBatch.sequenceNumber, try db.latestSequenceNumber())
        XCTAssertGreaterThan(afterBatch.sequenceNumber, empty.sequenceNumber)
    }

    /// RocksDB takes no snapshot with in-place updates and the C API wraps nullptr:
    /// reading its sequence number crashed the process.
    func testSnapshotWithInPlaceUpdatesIsRefused() throws {
        let dir = TemporaryDirectory()
        let db = try openDatabase(at: dir.path("db")) { try $0.apply(optionsString: "inplace_update_support=true;allow_concurrent_memtable_write=false") }
        try db.put("k", "v")
        assertThrows(.notSupported, try db.snapshot())
        XCTAssertEqual(text(try db.get("k")), "v")
    }

    func testReleasedSnapshotCannotBeUsed() throws {
        let dir = TemporaryDirectory()
        let db = try openDatabase(at: dir.path("db"))
        try db.put("k", "old")
        let snapshot = try db.snapshot()
        let options = ReadOptions()
        try options.setSnapshot(snapshot)
        try db.put("k", "new")
        snapshot.release()
        snapshot.release()  // idempotent

        assertThrows(.closed, try ReadOptions().setSnapshot(snapshot))
        assertThrows(.closed, try db.makeIterator(snapshot: snapshot))
        // Read options still pointing at the released snapshot must not read through a freed pointer.
        assertThrows(.closed, try db.get("k", options: options))
        assertThrows(.closed, try db.withValue(forKey: bytes("k"), options: options) { $0.count })
        assertThrows(.closed, try db.multiGet([bytes("k")], options: options))
        assertThrows(.closed, try db.makeIterator(readOptions: options))
        XCTAssertEqual(text(try db.get("k")), "new")
    }
}
