import Foundation
import RocksDB
import XCTest

final class LifetimeTests: XCTestCase {
    func testCloseWithLiveHandlesMakesLaterCallsThrowClosed() throws {
        let dir = TemporaryDirectory()
        let db = try openDatabase(at: dir.path("db"), columnFamilies: ["cf"])
        let family = try db.columnFamily(named: "cf")
        try db.put(bytes("a"), bytes("1"), in: family)
        try db.put("b", "2")
        let snapshot = try db.snapshot()
        let iterator = try db.makeIterator(in: family)
        iterator.seekToFirst()
        XCTAssertTrue(iterator.isValid)
        let snapshotOptions = ReadOptions()
        try snapshotOptions.setSnapshot(snapshot)

        db.close()
        XCTAssertFalse(db.isOpen)
        XCTAssertFalse(family.isOpen)

        // Iterator: navigation is a no-op, accessors report nothing, checked calls throw.
        XCTAssertFalse(iterator.isValid)
        iterator.seekToFirst()
        iterator.next()
        iterator.seek(to: bytes("a"))
        XCTAssertFalse(iterator.isValid)
        XCTAssertEqual(iterator.key, [])
        XCTAssertEqual(iterator.value, [])
        assertThrows(.closed, try iterator.checkStatus())
        assertThrows(.closed, try iterator.withKey { $0.count })
        assertThrows(.closed, try iterator.withValue { $0.count })
        assertThrows(.closed, try iterator.forEach { _, _ in true })

        // Snapshot and column family handles.
        assertThrows(.closed, try ReadOptions().setSnapshot(snapshot))
        assertThrows(.closed, try db.get("b", options: snapshotOptions))
        assertThrows(.closed, try db.makeIterator(snapshot: snapshot))
        snapshot.release()
        assertThrows(.closed, try db.get(bytes("a"), in: family))
        assertThrows(.closed, try db.put(bytes("a"), bytes("2"), in: family))
        assertThrows(.closed, try db.flush(family))
        assertThrows(.closed, try db.integerProperty("rocksdb.estimate-num-keys", in: family))
        assertThrows(.closed, try WriteBatch().put(bytes("k"), bytes("v"), in: family))

        // The database itself.
        assertThrows(.closed, try db.get("b"))
        assertThrows(.closed, try db.put("c", "3"))
        assertThrows(.closed, try db.delete(bytes("b")))
        assertThrows(.closed, try db.multiGet([bytes("b")]))
        assertThrows(.closed, try db.write(WriteBatch()))
        assertThrows(.closed, try db.snapshot())
        assertThrows(.closed, try db.makeIterator())
        assertThrows(.closed, try db.columnFamily(named: "cf"))
        assertThrows(.closed, try db.defaultColumnFamily)
        assertThrows(.closed, try db.createColumnFamily(named: "other"))
        assertThrows(.closed, try db.dropColumnFamily(named: "cf"))
        assertThrows(.closed, try db.latestSequenceNumber())
        assertThrows(.closed, try db.compactRange())
    }

    func testCloseIsIdempotentAndReleasesTheLock() throws {
        let dir = TemporaryDirectory()
        let db = try openDatabase(at: dir.path("db"))
        try db.put("k", "v")
        db.close()
        db.close()
        XCTAssertFalse(db.isOpen)

        // The LOCK is free again: the same directory opens, and the data is there.
        let reopened = try openDatabase(at: dir.path("db"))
        XCTAssertEqual(text(try reopened.get("k")), "v")
        reopened.close()
        db.close()
    }

    func testHandlesDroppedAfterCloseDoNotCrash() throws {
        let dir = TemporaryDirectory()
        var db: Database? = try openDatabase(at: dir.path("db"))
        var iterator: RocksDB.Iterator? = try db!.makeIterator()
        var snapshot: Snapshot? = try db!.snapshot()
        db!.close()
        db = nil
        iterator = nil
        snapshot = nil
        XCTAssertNil(iterator)
        XCTAssertNil(snapshot)
    }

    /// Opens a database, fills it and returns only an iterator over it.
    private func makeIteratorOnly(at path: String) throws -> RocksDB.Iterator {
        let db = try openDatabase(at: path)
        for i in 0..<10 { try db.put("key\(i)", "value\(i)") }
        return try db.makeIterator()
    }

    func testIteratorKeepsDatabaseAlive() throws {
        let dir = TemporaryDirectory()
        weak var weakDB: Database?
        var iterator: RocksDB.Iterator? = try makeIteratorOnly(at: dir.path("db"))
        weakDB = iterator!.database
        XCTAssertNotNil(weakDB)
        XCTAssertTrue(weakDB!.isOpen)

        var keys: [String] = []
        iterator!.seekToFirst()
        while iterator!.isValid {
            keys.append(text(iterator!.key)!)
            iterator!.next()
        }
        try iterator!.checkStatus()
        XCTAssertEqual(keys, (0..<10).map { "key\($0)" })

        // Dropping the last handle closes the database: it can be opened again.
        iterator = nil
        XCTAssertNil(weakDB)
        let reopened = try openDatabase(at: dir.path("db"))
        XCTAssertEqual(text(try reopened.get("key3")), "value3")
    }

    func testSnapshotKeepsDatabaseAlive() throws {
        let dir = TemporaryDirectory()
        func makeSnapshot() throws -> Snapshot {
            let db = try openDatabase(at: dir.path("db"))
            try db.put("k", "old")
            let snapshot = try db.snapshot()
            try db.put("k", "new")
            return snapshot
        }
        weak var weakDB: Database?
        var snapshot: Snapshot? = try makeSnapshot()
        weakDB = snapshot!.database
        XCTAssertTrue(weakDB?.isOpen ?? false)

        let options = ReadOptions()
        try options.setSnapshot(snapshot)
        XCTAssertEqual(text(try snapshot!.database.get("k", options: options)), "old")
        XCTAssertEqual(text(try snapshot!.database.get("k")), "new")

        // The read options retain the snapshot too; dropping both closes the database.
        snapshot = nil
        XCTAssertNotNil(weakDB)
        try options.setSnapshot(nil)
        XCTAssertNil(weakDB)
        let reopened = try openDatabase(at: dir.path("db"))
        XCTAssertEqual(text(try reopened.get("k")), "new")
    }

    func testColumnFamilyKeepsDatabaseAlive() throws {
        let dir = TemporaryDirectory()
        func makeFamily() throws -> ColumnFamily {
            let db = try openDatabase(at: dir.path("db"))
            return try db.createColumnFamily(named: "cf")
        }
        weak var weakDB: Database?
        var family: ColumnFamily? = try makeFamily()
        weakDB = family!.database
        XCTAssertTrue(family!.isOpen)

        try family!.database.put(bytes("k"), bytes("v"), in: family)
        XCTAssertEqual(text(try family!.database.get(bytes("k"), in: family)), "v")
        XCTAssertNil(try family!.database.get(bytes("k")))

        family = nil
        XCTAssertNil(weakDB)
        let reopened = try openDatabase(at: dir.path("db"))
        XCTAssertEqual(reopened.columnFamilyNames, ["cf", "default"])
        XCTAssertEqual(text(try reopened.get(bytes("k"), in: reopened.columnFamily(named: "cf"))), "v")
    }

    func testIteratorWithSnapshotKeepsWorkingAfterCallerDropsBoth() throws {
        let dir = TemporaryDirectory()
        func makeIterator() throws -> RocksDB.Iterator {
            let db = try openDatabase(at: dir.path("db"))
            try db.put("a", "1")
            let snapshot = try db.snapshot()
            try db.put("b", "2")
            return try db.makeIterator(snapshot: snapshot)
        }
        let iterator = try makeIterator()
        var keys: [String] = []
        try iterator.forEach { key, _ in
            keys.append(String(decoding: key, as: UTF8.self))
            return true
        }
        // forEach starts from the current position: seek first.
        XCTAssertEqual(keys, [])
        iterator.seekToFirst()
        try iterator.forEach { key, _ in
            keys.append(String(decoding: key, as: UTF8.self))
            return true
        }
        XCTAssertEqual(keys, ["a"])
    }

    /// Writes racing a drop of their family fail with `.closed` (or land before
    /// it); none reaches RocksDB after its drop, which would make RocksDB refuse
    /// every later write of the database ("Invalid column family specified in write
    /// batch" after the WAL took it: a fatal background error).
    func testWritesRacingADropLeaveTheDatabaseWritable() throws {
        let dir = TemporaryDirectory()
        let db = try openDatabase(at: dir.path("db"))
        defer { db.close() }
        for round in 0..<20 {
            let family = try db.createColumnFamily(named: "cf")
            let stop = ManagedAtomicFlag()
            let writer = Thread {
                var i = 0
                while !stop.isSet {
                    do { try db.put(bytes("k\(i)"), bytes("v"), in: family) } catch { break }
                    i += 1
                }
                stop.markDone()
            }
            writer.start()
            usleep(500)
            try db.dropColumnFamily(named: "cf")
            stop.set()
            stop.waitDone()
            XCTAssertNoThrow(try db.put(bytes("after-\(round)"), bytes("v")), "round \(round): the database still takes writes")
        }
        // A drop RocksDB refuses leaves the family in use.
        XCTAssertThrowsError(try db.dropColumnFamily(named: "default"))
        try db.put(bytes("default-still"), bytes("works"))
        XCTAssertEqual(text(try db.get("default-still")), "works")
    }

    func testDroppedColumnFamilyHandleThrowsDropped() throws {
        let dir = TemporaryDirectory()
        let db = try openDatabase(at: dir.path("db"))
        let family = try db.createColumnFamily(named: "cf")
        try db.put(bytes("k"), bytes("v"), in: family)
        let again = try db.columnFamily(named: "cf")
        XCTAssertEqual(again.id, family.id)

        try db.dropColumnFamily(named: "cf")
        XCTAssertFalse(family.isOpen)
        XCTAssertFalse(again.isOpen)
        XCTAssertTrue(db.isOpen)
        XCTAssertEqual(db.columnFamilyNames, ["default"])
        assertThrows(.columnFamilyDropped, try db.get(bytes("k"), in: family))
        assertThrows(.columnFamilyDropped, try db.put(bytes("k"), bytes("v"), in: again))
        assertThrows(.columnFamilyDropped, try db.makeIterator(in: family))
        assertThrows(.columnFamilyDropped, try WriteBatch().delete(bytes("k"), in: family))
        assertThrows(.notFound, try db.columnFamily(named: "cf"))
        assertThrows(.notFound, try db.dropColumnFamily(named: "cf"))

        // The name can be reused; the new family is empty and the old handle stays dead.
        let recreated = try db.createColumnFamily(named: "cf")
        XCTAssertNotEqual(recreated.id, family.id)
        XCTAssertNil(try db.get(bytes("k"), in: recreated))
        assertThrows(.columnFamilyDropped, try db.get(bytes("k"), in: family))
        db.close()
        XCTAssertFalse(recreated.isOpen)
        // Once the database is closed, every handle says so.
        assertThrows(.closed, try db.get(bytes("k"), in: recreated))
    }

    func testColumnFamilyOfAnotherDatabaseIsRejected() throws {
        let dir = TemporaryDirectory()
        let first = try openDatabase(at: dir.path("one"), columnFamilies: ["cf"])
        let second = try openDatabase(at: dir.path("two"), columnFamilies: ["cf"])
        let family = try first.columnFamily(named: "cf")
        assertThrows(.invalidArgument, try second.put(bytes("k"), bytes("v"), in: family))
    }

    func testCreateExistingColumnFamilyThrowsInvalidArgument() throws {
        let dir = TemporaryDirectory()
        let db = try openDatabase(at: dir.path("db"), columnFamilies: ["cf"])
        assertThrows(.invalidArgument, try db.createColumnFamily(named: "cf"))
        assertThrows(.notFound, try db.columnFamily(named: "missing"))
        XCTAssertEqual(try db.defaultColumnFamily.name, "default")
    }

    /// Many families in one call, each with its own options; they work and
    /// survive a reopen. A name given twice, or one that exists, creates none.
    func testCreateColumnFamiliesInOneCall() throws {
        let dir = TemporaryDirectory()
        let path = dir.path("db")
        let db = try openDatabase(at: path)
        let names = (0..<64).map { "family-\($0)" }
        let families = try db.createColumnFamilies(names.map { (name: $0, options: Options()) })
        XCTAssertEqual(families.map(\.name), names)
        for (i, family) in families.enumerated() { try db.put(bytes("k"), bytes("v\(i)"), in: family) }
        assertThrows(.invalidArgument, try db.createColumnFamilies([(name: "twice", options: nil), (name: "twice", options: nil)]))
        assertThrows(.invalidArgument, try db.createColumnFamilies([(name: "new", options: nil), (name: "family-3", options: nil)]))
        db.close()
        let listed = try Database.listColumnFamilies(at: path)
        XCTAssertEqual(Set(listed), Set(["default"] + names), "the refused calls created nothing")
        let reopened = try openDatabase(at: path, columnFamilies: names)
        defer { reopened.close() }
        for (i, name) in names.enumerated() {
            XCTAssertEqual(text(try reopened.get(bytes("k"), in: try reopened.columnFamily(named: name))), "v\(i)")
        }
    }

    /// Two spellings of one directory are one database: the second open is refused
    /// as RocksDB refuses a second open of the same name (two live databases on one
    /// directory in one process would each believe they own its files).
    func testSecondOpenThroughAnotherSpellingOfThePathIsRefused() throws {
        let dir = TemporaryDirectory()
        let first = try openDatabase(at: dir.path("db"))
        defer { first.close() }
        for alias in [dir.path(".") + "/db", dir.path("db") + "/", dir.path("db/../db")] {
            do {
                let second = try openDatabase(at: alias)
                second.close()
                XCTFail("\(alias) opened a second time")
            } catch let error as RocksDBError {
                XCTAssertTrue(error.isLockHeld, "\(alias): \(error)")
            }
        }
    }
}


/// A stop flag and a done signal between a test and its writer thread.
private final class ManagedAtomicFlag: @unchecked Sendable {
    private let condition = NSCondition()
    private var stopped = false, done = false
    var isSet: Bool { condition.lock(); defer { condition.unlock() }; return stopped }
    func set() { condition.lock(); stopped = true; condition.unlock() }
    func markDone() { condition.lock(); done = true; condition.broadcast(); condition.unlock() }
    func waitDone() { condition.lock(); while !done { condition.wait() }; condition.unlock() }
}
