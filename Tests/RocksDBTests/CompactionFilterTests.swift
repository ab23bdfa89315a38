import Foundation
import RocksDB
import XCTest

/// Removes every key that starts with `prefix`, counting its calls.
final class PrefixRemovingFilter: CompactionFilter, @unchecked Sendable {
    let prefix: [UInt8]
    private let lock = NSLock()
    private var _calls = 0
    private var _removed = 0

    init(prefix: String) {
        self.prefix = Array(prefix.utf8)
        super.init(name: "PrefixRemovingFilter")
    }

    var calls: Int { lock.withLock { _calls } }
    var removed: Int { lock.withLock { _removed } }

    override func shouldRemove(level: Int, key: UnsafeRawBufferPointer, value: UnsafeRawBufferPointer) -> Bool {
        let remove = key.starts(with: prefix)
        lock.withLock {
            _calls += 1
            if remove { _removed += 1 }
        }
        return remove
    }
}

final class CompactionFilterTests: XCTestCase {
    func testFilterRemovesPrefixedKeysDuringCompaction() throws {
        let dir = TemporaryDirectory()
        let filter = PrefixRemovingFilter(prefix: "tmp/")
        let filtered = Options()
        filtered.setCompactionFilter(filter)
        let options = Options()
        options.createIfMissing = true
        options.createMissingColumnFamilies = true
        let db = try Database.open(at: dir.path("db"), options: options, columnFamilies: ["filtered": filtered])
        let family = try db.columnFamily(named: "filtered")

        for i in 0..<50 {
            try db.put(bytes("tmp/\(i)"), bytes("scratch"), in: family)
            try db.put(bytes("keep/\(i)"), bytes("value"), in: family)
            try db.put("tmp/\(i)", "default family has no filter")
        }
        // Before compaction the filter has not run.
        XCTAssertEqual(filter.calls, 0)
        XCTAssertEqual(text(try db.get(bytes("tmp/7"), in: family)), "scratch")

        try db.flush(family)
        try db.compactRange(family)

        XCTAssertEqual(filter.calls, 100)
        XCTAssertEqual(filter.removed, 50)
        for i in 0..<50 {
            XCTAssertNil(try db.get(bytes("tmp/\(i)"), in: family))
            XCTAssertEqual(text(try db.get(bytes("keep/\(i)"), in: family)), "value")
        }
        XCTAssertEqual(try db.integerProperty("rocksdb.estimate-num-keys", in: family), 50)

        // Only the family with the filter is affected.
        try db.flush()
        try db.compactRange()
        XCTAssertEqual(filter.calls, 100)
        XCTAssertEqual(text(try db.get("tmp/7")), "default family has no filter")
    }

    func testFilterOnDefaultOptionsOutlivesCallerReferences() throws {
        let dir = TemporaryDirectory()
        weak var weakFilter: PrefixRemovingFilter?
        var db: Database?
        do {
            let filter = PrefixRemovingFilter(prefix: "x")
            weakFilter = filter
            let options = Options()
            options.createIfMissing = true
            options.setCompactionFilter(filter)
            db = try Database.open(at: dir.path("db"), options: options)
        }
        // The database retains its options, and so the filter.
        XCTAssertNotNil(weakFilter)
        try db!.put("x1", "a")
        try db!.put("y1", "b")
        try db!.flush()
        try db!.compactRange()
        XCTAssertEqual(weakFilter?.calls, 2)
        XCTAssertNil(try db!.get("x1"))
        XCTAssertEqual(text(try db!.get("y1")), "b")
        db = nil
        XCTAssertNil(weakFilter)
    }

    /// One `Options` reused for two families with a filter each: RocksDB keeps a raw
    /// pointer to the filter set when the first family was created, so replacing the
    /// filter must not free it (the first family's compaction called freed memory).
    func testAReplacedFilterStaysAliveForTheFamilyThatUsesIt() throws {
        let dir = TemporaryDirectory()
        let options = Options()
        options.createIfMissing = true
        let db = try Database.open(at: dir.path("db"), options: options)
        defer { db.close() }
        weak var weakFirst: PrefixRemovingFilter?
        let shared = Options()
        do {
            let first = PrefixRemovingFilter(prefix: "a")
            weakFirst = first
            shared.setCompactionFilter(first)
        }
        let a = try db.createColumnFamily(named: "a", options: shared)
        shared.setCompactionFilter(PrefixRemovingFilter(prefix: "b"))
        let b = try db.createColumnFamily(named: "b", options: shared)
        XCTAssertNotNil(weakFirst)
        for family in [a, b] {
            try db.put(bytes("a1"), bytes("v"), in: family)
            try db.put(bytes("b1"), bytes("v"), in: family)
            try db.flush(family)
            try db.compactRange(family)
        }
        XCTAssertEqual(weakFirst?.calls, 2)
        XCTAssertNil(try db.get(bytes("a1"), in: a))
        XCTAssertEqual(text(try db.get(bytes("b1"), in: a)), "v")
        XCTAssertEqual(text(try db.get(bytes("a1"), in: b)), "v")
        XCTAssertNil(try db.get(bytes("b1"), in: b))
    }

    /// The flags read what the C options hold, also after a copy or an options string.
    func testOptionFlagsReadTheCOptions() throws {
        let options = Options()
        XCTAssertFalse(options.createIfMissing)
        try options.apply(optionsString: "create_if_missing=true;error_if_exists=true")
        XCTAssertTrue(options.createIfMissing)
        XCTAssertTrue(options.errorIfExists)
        options.createMissingColumnFamilies = true
        let copy = Options(copying: options)
        XCTAssertTrue(copy.createIfMissing)
        XCTAssertTrue(copy.createMissingColumnFamilies)
        XCTAssertTrue(copy.errorIfExists)
    }
}
