import Foundation
import RocksDB
import XCTest

final class WriteBatchTests: XCTestCase {
    func testBatchAcrossTwoColumnFamiliesIsAppliedTogether() throws {
        let dir = TemporaryDirectory()
        let db = try openDatabase(at: dir.path("db"), columnFamilies: ["accounts", "index"])
        let accounts = try db.columnFamily(named: "accounts")
        let index = try db.columnFamily(named: "index")
        try db.put(bytes("stale"), bytes("x"), in: index)

        let batch = WriteBatch()
        try batch.put(bytes("alice"), bytes("100"), in: accounts)
        try batch.put(bytes("bob"), bytes("50"), in: accounts)
        try batch.put(bytes("100/alice"), [], in: index)
        try batch.delete(bytes("stale"), in: index)
        try batch.put(bytes("meta"), bytes("default family"))
        XCTAssertEqual(batch.count, 5)

        // Nothing is visible before the write.
        XCTAssertNil(try db.get(bytes("alice"), in: accounts))
        let before = try db.latestSequenceNumber()
        try db.write(batch)
        // One sequence number per operation, all in one write.
        XCTAssertEqual(try db.latestSequenceNumber(), before + 5)

        XCTAssertEqual(text(try db.get(bytes("alice"), in: accounts)), "100")
        XCTAssertEqual(text(try db.get(bytes("bob"), in: accounts)), "50")
        XCTAssertEqual(try db.get(bytes("100/alice"), in: index), [])
        XCTAssertNil(try db.get(bytes("stale"), in: index))
        XCTAssertEqual(text(try db.get("meta")), "default family")
        // Keys went to their own family only.
        XCTAssertNil(try db.get(bytes("alice"), in: index))
        XCTAssertNil(try db.get(bytes("alice")))

        // Survives a reopen (it went through the WAL).
        db.close()
        let reopened = try openDatabase(at: dir.path("db"))
        XCTAssertEqual(text(try reopened.get(bytes("bob"), in: reopened.columnFamily(named: "accounts"))), "50")
        XCTAssertEqual(try reopened.get(bytes("100/alice"), in: reopened.columnFamily(named: "index")), [])
    }

    func testBatchNamingADroppedFamilyFailsAndAppliesNothing() throws {
        let dir = TemporaryDirectory()
        let db = try openDatabase(at: dir.path("db"), columnFamilies: ["a", "b"])
        let a = try db.columnFamily(named: "a")
        let batch = WriteBatch()
        try batch.put(bytes("k"), bytes("v"), in: a)
        try batch.put(bytes("k"), bytes("v"), in: db.columnFamily(named: "b"))
        // Dropping a family the batch writes to makes the write fail before it reaches
        // RocksDB (which would apply part of it and then refuse all later writes).
        try db.dropColumnFamily(named: "b")
        assertThrows(.columnFamilyDropped, try db.write(batch))
        XCTAssertNil(try db.get(bytes("k"), in: a))
        // The database still takes writes.
        try db.put(bytes("after"), bytes("ok"), in: a)
        XCTAssertEqual(text(try db.get(bytes("after"), in: a)), "ok")
        // Once cleared, the batch no longer names the dropped family.
        batch.clear()
        try batch.put(bytes("k2"), bytes("v2"), in: a)
        try db.write(batch)
        XCTAssertEqual(text(try db.get(bytes("k2"), in: a)), "v2")
    }

    func testDeleteRangeInBatch() throws {
        let dir = TemporaryDirectory()
        let db = try openDatabase(at: dir.path("db"), columnFamilies: ["cf"])
        let family = try db.columnFamily(named: "cf")
        for i in 0..<10 {
            try db.put("k\(i)", "v\(i)")
            try db.put(bytes("k\(i)"), bytes("v\(i)"), in: family)
        }
        let batch = WriteBatch()
        try batch.deleteRange(from: bytes("k2"), to: bytes("k5"))
        try batch.deleteRange(from: bytes("k0"), to: bytes("k8"), in: family)
        try batch.put(bytes("k3"), bytes("again"), in: family)  // after the range deletion: survives
        XCTAssertEqual(batch.count, 3)
        try db.write(batch)

        XCTAssertEqual(try (0..<10).map { text(try db.get("k\($0)")) },
                       ["v0", "v1", nil, nil, nil, "v5", "v6", "v7", "v8", "v9"])
        XCTAssertEqual(try (0..<10).map { text(try db.get(bytes("k\($0)"), in: family)) },
                       [nil, nil, nil, "again", nil, nil, nil, nil, "v8", "v9"])
    }

    func testSingleDeleteAndLogData() throws {
        let dir = TemporaryDirectory()
        let db = try openDatabase(at: dir.path("db"))
        try db.put("once", "v")
        let batch = WriteBatch()
        try batch.singleDelete(bytes("once"))
        batch.putLogData(bytes("a note for changelog readers"))
        // Log data is not an operation.
        XCTAssertEqual(batch.count, 1)
        try db.write(batch)
        XCTAssertNil(try db.get("once"))
    }

    func testCountByteSizeAndClear() throws {
        let batch = WriteBatch()
        XCTAssertEqual(batch.count, 0)
        // An empty batch is its 12-byte header: 8-byte sequence, 4-byte count.
        XCTAssertEqual(batch.byteSize, 12)
        try batch.put(bytes("key"), bytes("value"))
        XCTAssertEqual(batch.count, 1)
        // Tag, varint key length, key, varint value length, value.
        XCTAssertEqual(batch.byteSize, 12 + 1 + 1 + 3 + 1 + 5)
        try batch.delete(bytes("key"))
        XCTAssertEqual(batch.count, 2)
        XCTAssertEqual(batch.byteSize, 12 + 11 + 1 + 1 + 3)
        batch.withData { XCTAssertEqual($0.count, batch.byteSize) }
        batch.clear()
        XCTAssertEqual(batch.count, 0)
        XCTAssertEqual(batch.byteSize, 12)
    }

    func testDataRoundTrip() throws {
        let dir = TemporaryDirectory()
        let db = try openDatabase(at: dir.path("db"), columnFamilies: ["cf"])
        let family = try db.columnFamily(named: "cf")
        try db.put("gone", "soon")

        let original = WriteBatch()
        try original.put(bytes("a"), bytes("1"))
        try original.put(bytes("b"), [UInt8](repeating: 7, count: 1000), in: family)
        try original.delete(bytes("gone"))
        try original.deleteRange(from: bytes("x"), to: bytes("y"), in: family)

        let data: [UInt8] = original.withData { Array($0) }
        XCTAssertEqual(data.count, original.byteSize)
        let copy = data.withUnsafeBytes { WriteBatch(data: $0) }
        XCTAssertEqual(copy.count, original.count)
        XCTAssertEqual(copy.count, 4)
        XCTAssertEqual(copy.byteSize, original.byteSize)
        XCTAssertEqual(copy.withData { Array($0) }, data)

        try db.write(copy)
        XCTAssertEqual(text(try db.get("a")), "1")
        XCTAssertEqual(try db.get(bytes("b"), in: family), [UInt8](repeating: 7, count: 1000))
        XCTAssertNil(try db.get("gone"))
        XCTAssertNil(try db.get(bytes("b")))
    }

    /// A batch built on one database's families is refused by another: it holds
    /// only the families' numeric ids, which there name other families (or none,
    /// and RocksDB would refuse every later write).
    func testABatchOfAnotherDatabasesFamiliesIsRefused() throws {
        let dir = TemporaryDirectory()
        let first = try openDatabase(at: dir.path("first"), columnFamilies: ["a"])
        defer { first.close() }
        let second = try openDatabase(at: dir.path("second"), columnFamilies: ["a"])
        defer { second.close() }
        let batch = WriteBatch()
        try batch.put(bytes("k"), bytes("v"), in: first.columnFamily(named: "a"))
        assertThrows(.invalidArgument, try second.write(batch))
        XCTAssertNil(try second.get(bytes("k"), in: second.columnFamily(named: "a")))
        try second.put(bytes("after"), bytes("ok"))
        try first.write(batch)
        XCTAssertEqual(text(try first.get(bytes("k"), in: first.columnFamily(named: "a"))), "v")
    }
}
