import Foundation
import CRocksDBShim
import RocksDB
import XCTest

final class ReadWriteTests: XCTestCase {
    private var dir: TemporaryDirectory!
    private var db: Database!

    override func setUpWithError() throws {
        dir = TemporaryDirectory()
        db = try openDatabase(at: dir.path("db"))
    }

    override func tearDown() {
        db?.close()
        db = nil
        dir = nil
    }

    /// deleteFiles drops the files wholly inside [begin, end), and keeps one
    /// whose largest key is `end` itself (the C API's call dropped it: RocksDB's
    /// include_end defaults to true), so a key at the end of a cleared range survives.
    func testDeleteFilesKeepsAFileEndingAtTheEndBound() throws {
        // One table file, below level 0, holding b..m exactly.
        for key in ["b", "c", "k", "m"] { try db.put(key, "value-\(key)") }
        try db.flush()
        try db.compactRange()
        XCTAssertEqual(try db.property("rocksdb.num-files-at-level0"), "0")
        try db.deleteFiles(from: bytes("a"), to: bytes("m"))
        XCTAssertEqual(text(try db.get("m")), "value-m", "the file ending at the end bound stays")
        XCTAssertEqual(text(try db.get("b")), "value-b")
        try db.deleteFiles(from: bytes("a"), to: bytes("m\0"))
        XCTAssertNil(try db.get("m"), "a file wholly inside the range goes")
        XCTAssertNil(try db.get("b"))
    }

    func testPutGetAndOverwrite() throws {
        XCTAssertNil(try db.get("k"))
        try db.put("k", "v1")
        XCTAssertEqual(text(try db.get("k")), "v1")
        try db.put("k", "v2")
        XCTAssertEqual(text(try db.get("k")), "v2")
        // Byte keys and values, including NUL bytes and empty values.
        let key: [UInt8] = [0, 1, 0, 255]
        try db.put(key, [UInt8]())
        XCTAssertEqual(try db.get(key), [])
        try db.put(key, [0, 0, 0])
        XCTAssertEqual(try db.get(key), [0, 0, 0])
        // An empty key is a key like any other.
        try db.put([UInt8](), bytes("empty key"))
        XCTAssertEqual(text(try db.get([UInt8]())), "empty key")
        // Foundation's Data is ContiguousBytes too.
        try db.put(Data("data-key".utf8), Data("data-value".utf8))
        XCTAssertEqual(text(try db.get("data-key")), "data-value")
    }

    func testWithValueReadsWithoutCopy() throws {
        let large = [UInt8]((0..<(100 << 10)).map { UInt8($0 % 256) })
        try db.put(bytes("large"), large)
        try db.put("small", "abc")
        XCTAssertEqual(try db.withValue(forKey: bytes("small")) { String(decoding: $0, as: UTF8.self) }, "abc")
        XCTAssertEqual(try db.withValue(forKey: bytes("large")) { $0.count }, large.count)
        XCTAssertEqual(try db.withValue(forKey: bytes("large")) { $0.elementsEqual(large) }, true)
        // Absent: the body is not called.
        var called = false
        let missing: Int? = try db.withValue(forKey: bytes("missing")) { _ in called = true; return 1 }
        XCTAssertNil(missing)
        XCTAssertFalse(called)
        // Also from table files, not only the memtable.
        try db.flush()
        XCTAssertEqual(try db.withValue(forKey: bytes("large")) { $0.elementsEqual(large) }, true)
        // Errors thrown by the body come through.
        struct BodyError: Error {}
        XCTAssertThrowsError(try db.withValue(forKey: bytes("small")) { _ in throw BodyError() }) {
            XCTAssertTrue($0 is BodyError)
        }
    }

    func testNestedPinnedReadsKeepEachValue() throws {
        // A read inside another read's body gets a slice of its own: the outer
        // value must stay intact while the inner one is read and released.
        let outer = [UInt8]((0..<5000).map { UInt8(truncatingIfNeeded: $0) })
        let inner = [UInt8](repeating: 0xAB, count: 3000)
        try db.put(bytes("outer"), outer)
        try db.put(bytes("inner"), inner)
        for round in 0..<2 {  // from the memtable, then from table files
            let seen: (Bool, Bool, Bool)? = try db.withValue(forKey: bytes("outer")) { outerValue in
                let innerSeen = try db.withValue(forKey: bytes("inner")) { innerValue in
                    innerValue.elementsEqual(inner) && outerValue.elementsEqual(outer)
                }
                let missing = try db.withValue(forKey: bytes("absent")) { _ in true }
                return (innerSeen == true, outerValue.elementsEqual(outer), missing == nil)
            }
            XCTAssertEqual(seen.map { [$0.0, $0.1, $0.2] }, [true, true, true], "round \(round)")
            try db.flush()
        }
        // A body that throws releases its value; later reads see the right data.
        struct BodyError: Error {}
        for _ in 0..<3 {
            XCTAssertThrowsError(try db.withValue(forKey: bytes("inner")) { _ in throw BodyError() })
        }
        XCTAssertEqual(try db.get(bytes("outer")), outer)
        XCTAssertEqual(try db.withValue(forKey: bytes("inner")) { $0.elementsEqual(inner) }, true)
    }

    func testMultiGetIncludingMissingKeys() throws {
        let family = try db.createColumnFamily(named: "cf")
        for i in stride(from: 0, to: 20, by: 2) {
            try db.put(bytes("k\(i)"), bytes("v\(i)"), in: family)
        }
        try db.flush(family)
        try db.put(bytes("k4"), bytes("memtable"), in: family)
        let keys = (0..<20).map { bytes("k\($0)") } + [bytes("k0"), []]
        let values = try db.multiGet(keys, in: family)
        XCTAssertEqual(values.count, keys.count)
        for i in 0..<20 {
            let expected: String? = i == 4 ? "memtable" : (i % 2 == 0 ? "v\(i)" : nil)
            XCTAssertEqual(text(values[i]), expected, "k\(i)")
        }
        XCTAssertEqual(text(values[20]), "v0")
        XCTAssertNil(values[21])
        XCTAssertEqual(try db.multiGet([[UInt8]](), in: family).count, 0)
        // The default family holds none of them.
        XCTAssertEqual(try db.multiGet(keys), [[UInt8]?](repeating: nil, count: keys.count))
        // Only empty keys (an empty key buffer).
        XCTAssertEqual(try db.multiGet([[UInt8](), []], in: family), [nil, nil])
    }

    func testDelete() throws {
        try db.put("k", "v")
        try db.delete(bytes("k"))
        XCTAssertNil(try db.get("k"))
        try db.delete(bytes("never-written"))  // not an error
        let family = try db.createColumnFamily(named: "cf")
        try db.put(bytes("k"), bytes("v"), in: family)
        try db.put("k", "v")
        try db.delete(bytes("k"), in: family)
        XCTAssertNil(try db.get(bytes("k"), in: family))
        XCTAssertEqual(text(try db.get("k")), "v")
    }

    func testDeleteRange() throws {
        for i in 0..<100 { try db.put(String(format: "key%03d", i), "v") }
        try db.flush()
        try db.deleteRange(from: bytes("key010"), to: bytes("key090"))
        XCTAssertNotNil(try db.get("key009"))
        XCTAssertNil(try db.get("key010"))
        XCTAssertNil(try db.get("key089"))
        XCTAssertNotNil(try db.get("key090"))
        let iterator = try db.makeIterator()
        iterator.seekToFirst()
        var count = 0
        try iterator.forEach { _, _ in count += 1; return true }
        XCTAssertEqual(count, 20)
        // Writes after the range deletion are visible.
        try db.put("key050", "back")
        XCTAssertEqual(text(try db.get("key050")), "back")
    }

    func testEstimateNumKeysAndProperties() throws {
        XCTAssertEqual(try db.integerProperty("rocksdb.estimate-num-keys"), 0)
        for i in 0..<1000 { try db.put("key\(i)", "value\(i)") }
        XCTAssertEqual(try db.integerProperty("rocksdb.estimate-num-keys"), 1000)
        try db.flush()
        let estimate = try XCTUnwrap(db.integerProperty("rocksdb.estimate-num-keys"))
        XCTAssertEqual(estimate, 1000)
        // A string-only property: no integer form.
        XCTAssertNil(try db.integerProperty("rocksdb.num-files-at-level0"))
        XCTAssertEqual(try db.property("rocksdb.num-files-at-level0"), "1")
        XCTAssertNil(try db.integerProperty("rocksdb.no-such-property"))
        XCTAssertNil(try db.property("rocksdb.no-such-property"))
        XCTAssertNotNil(try db.property("rocksdb.stats"))
        // Per family.
        let family = try db.createColumnFamily(named: "cf")
        XCTAssertEqual(try db.integerProperty("rocksdb.estimate-num-keys", in: family), 0)
    }

    func testFlushAndCompactRange() throws {
        let family = try db.createColumnFamily(named: "cf")
        for round in 0..<3 {
            for i in 0..<200 { try db.put(bytes(String(format: "k%04d", i)), bytes("r\(round)"), in: family) }
            try db.flush(family)
        }
        XCTAssertEqual(try db.property("rocksdb.num-files-at-level0", in: family), "3")
        try db.deleteRange(from: bytes("k0100"), to: bytes("k0200"), in: family)
        try db.compactRange(family)
        XCTAssertEqual(try db.property("rocksdb.num-files-at-level0", in: family), "0")
        XCTAssertEqual(try db.integerProperty("rocksdb.estimate-num-keys", in: family), 100)
        XCTAssertEqual(text(try db.get(bytes("k0050"), in: family)), "r2")
        XCTAssertNil(try db.get(bytes("k0150"), in: family))
        XCTAssertGreaterThan(try db.approximateSize(from: bytes("k0000"), to: bytes("k9999"), in: family), 0)

        // Bounded compactions of part of the range.
        try db.compactRange(family, from: bytes("k0000"), to: bytes("k0050"))
        try db.compactRange(family, from: bytes("k0050"))
        try db.compactRange(family, to: bytes("k0050"))
        try db.flush(family, wait: false)
        try db.flushWAL(sync: true)
        XCTAssertEqual(text(try db.get(bytes("k0099"), in: family)), "r2")
    }

    func testPutInParts() throws {
        func put(_ keyHead: String, _ key: String, _ valueHead: String, _ value: String, in family: ColumnFamily? = nil,
                 options: WriteOptions? = nil) throws {
            try bytes(keyHead).withUnsafeBytes { kh in
                try bytes(key).withUnsafeBytes { k in
                    try bytes(valueHead).withUnsafeBytes { vh in
                        try bytes(value).withUnsafeBytes { v in
                            try db.put(keyParts: (kh, k), valueParts: (vh, v), in: family, options: options)
                        }
                    }
                }
            }
        }
        // The parts are joined; either may be empty.
        try put("pre", "fix", "head", "er")
        XCTAssertEqual(text(try db.get("prefix")), "header")
        try put("", "k", "", "v")
        XCTAssertEqual(text(try db.get("k")), "v")
        try put("only-head", "", "only-head", "")
        XCTAssertEqual(text(try db.get("only-head")), "only-head")
        try put("", "", "", "")
        XCTAssertEqual(try db.get([UInt8]()), [])
        let family = try db.createColumnFamily(named: "cf")
        try put("a", "b", "c", "d", in: family)
        XCTAssertEqual(text(try db.get(bytes("ab"), in: family)), "cd")
        XCTAssertNil(try db.get("ab"))

        // A put larger than the batch a thread keeps, then small ones again.
        let large = [UInt8]((0..<(3 << 20)).map { UInt8(truncatingIfNeeded: $0 &* 7) })
        try bytes("big").withUnsafeBytes { k in
            try large.withUnsafeBytes { v in
                try db.put(keyParts: (UnsafeRawBufferPointer(start: nil, count: 0), k), valueParts: (v, UnsafeRawBufferPointer(start: nil, count: 0)))
            }
        }
        try put("after", "-big", "small", "")
        XCTAssertEqual(try db.get("big"), large)
        XCTAssertEqual(text(try db.get("after-big")), "small")

        // RocksDB's own refusal comes back as a typed error, and writes go on after it.
        XCTAssertThrowsError(try put("x", "y", "z", "", options: WriteOptions(sync: true, disableWAL: true))) { error in
            XCTAssertEqual((error as? RocksDBError)?.kind, .invalidArgument, "\(error)")
        }
        XCTAssertNil(try db.get("xy"))
        try put("x", "y", "z", "")
        XCTAssertEqual(text(try db.get("xy")), "z")

        // Each thread reuses a batch of its own: concurrent puts stay separate.
        let failures = LockedCount()
        DispatchQueue.concurrentPerform(iterations: 4) { thread in
            for i in 0..<500 {
                do { try put("t\(thread)-", "\(i)", "v\(thread)-", "\(i)") } catch { failures.increment() }
            }
        }
        XCTAssertEqual(failures.value, 0)
        for thread in 0..<4 {
            for i in stride(from: 0, to: 500, by: 7) { XCTAssertEqual(text(try db.get("t\(thread)-\(i)")), "v\(thread)-\(i)") }
        }

        // A dropped family is refused before RocksDB is called.
        try db.dropColumnFamily(named: "cf")
        XCTAssertThrowsError(try put("a", "b", "c", "d", in: family)) { error in
            XCTAssertEqual((error as? RocksDBError)?.kind, .columnFamilyDropped, "\(error)")
        }
    }

    func testWriteOptions() throws {
        try db.put("synced", "v", options: WriteOptions(sync: true))
        try db.put("unlogged", "v", options: WriteOptions(disableWAL: true))
        XCTAssertEqual(text(try db.get("synced")), "v")
        XCTAssertEqual(text(try db.get("unlogged")), "v")
    }

    func testDataSurvivesReopen() throws {
        let family = try db.createColumnFamily(named: "cf")
        try db.put("in-wal", "1")
        try db.put(bytes("flushed"), bytes("2"), in: family)
        try db.flush(family)
        db.close()
        db = try openDatabase(at: dir.path("db"))
        XCTAssertEqual(text(try db.get("in-wal")), "1")
        XCTAssertEqual(text(try db.get(bytes("flushed"), in: db.columnFamily(named: "cf"))), "2")
    }

    func testStatistics() throws {
        let statsDir = TemporaryDirectory()
        XCTAssertNil(db.statistics())
        let stats = try openDatabase(at: statsDir.path("db")) { $0.enableStatistics() }
        try stats.put("k", "v")
        XCTAssertTrue(stats.statistics()?.contains("rocksdb.") ?? false)
    }

    func testTableSettingsAndCompression() throws {
        let other = TemporaryDirectory()
        let settings = Options.TableSettings(blockCacheBytes: 1 << 20, bloomBitsPerKey: 10, blockSize: 8192)
        let tuned = try openDatabase(at: other.path("db")) {
            $0.setTableSettings(settings)
            $0.setCompression(.none)
            $0.setWriteBufferSize(1 << 20)
            $0.setMaxBackgroundJobs(2)
        }
        for i in 0..<100 { try tuned.put("k\(i)", "v\(i)") }
        try tuned.flush()
        XCTAssertEqual(text(try tuned.get("k42")), "v42")
        XCTAssertNil(try tuned.get("k100"))
        XCTAssertEqual(Compression(name: "ZSTD"), .zstd)
        XCTAssertNil(Compression(name: "brotli"))
        XCTAssertEqual(Options(copying: Options()).tableSettings, nil)
    }
}

final class SharedBlockCacheTests: XCTestCase {
    /// Column families opened with copies of one `Options` share its block cache:
    /// reading one family's blocks shows in the other's cache usage, and the
    /// capacity is the one cache's, not one per family.
    func testCopiedOptionsShareOneBlockCache() throws {
        let dir = TemporaryDirectory()
        let base = Options()
        base.createIfMissing = true
        base.createMissingColumnFamilies = true
        base.setTableSettings(.init(blockCacheBytes: 4 << 20))
        let db = try Database.open(at: dir.path("db"), options: base,
                                   columnFamilies: ["a": Options(copying: base), "b": Options(copying: base)])
        defer { db.close() }
        let a = try db.columnFamily(named: "a"), b = try db.columnFamily(named: "b")
        for i in 0..<2000 { try db.put("key-\(i)", String(repeating: "v", count: 200), in: a) }
        try db.flush(a)
        func usage(_ family: ColumnFamily) throws -> Int { Int(try db.property("rocksdb.block-cache-usage", in: family) ?? "") ?? -1 }
        let before = try usage(b)
        for i in 0..<2000 { _ = try db.get("key-\(i)", in: a) }
        XCTAssertGreaterThan(try usage(b), before + 100_000, "b's cache holds the blocks read from a")
        XCTAssertEqual(try usage(a), try usage(b))
        XCTAssertEqual(try db.property("rocksdb.block-cache-capacity", in: b), "\(4 << 20)")
    }

    /// The cache's block buffers come in size classes: reads through a cache far
    /// smaller than the data (every block evicted and loaded again, blocks of many
    /// sizes) return every value intact, and the cache charges the rounded sizes
    /// without passing its capacity.
    func testBlocksInSizeClassesReadBackThroughASmallCache() throws {
        let dir = TemporaryDirectory()
        let options = Options()
        options.createIfMissing = true
        options.setCompression(.none)
        options.setTableSettings(.init(blockCacheBytes: 64 << 10, blockSize: 4096))
        let db = try Database.open(at: dir.path("db"), options: options)
        defer { db.close() }
        func value(_ i: Int) -> [UInt8] { (0..<(50 + i % 251)).map { UInt8(truncatingIfNeeded: $0 &* 31 &+ i) } }
        for i in 0..<4000 { try db.put(Array("key-\(i)".utf8), value(i)) }
        try db.flush()
        for round in 0..<2 {
            for i in stride(from: round, to: 4000, by: 7) { XCTAssertEqual(try db.get("key-\(i)"), value(i)) }
        }
        let usage = Int(try db.property("rocksdb.block-cache-usage") ?? "") ?? -1
        XCTAssertGreaterThan(usage, 4096)
        XCTAssertLessThanOrEqual(usage, 64 << 10)
    }

    func testBlockSizeClasses() {
        // Below 1 KiB: as asked.
        XCTAssertEqual(sharddb_block_size_class(0), 0)
        XCTAssertEqual(sharddb_block_size_class(1023), 1023)
        // From 1 KiB: up to the next eighth of the power of two below.
        XCTAssertEqual(sharddb_block_size_class(1024), 1024)
        XCTAssertEqual(sharddb_block_size_class(1025), 1152)
        XCTAssertEqual(sharddb_block_size_class(3967), 4096)
        XCTAssertEqual(sharddb_block_size_class(3985), 4096)
        XCTAssertEqual(sharddb_block_size_class(4096), 4096)
        XCTAssertEqual(sharddb_block_size_class(4097), 4608)
        XCTAssertEqual(sharddb_block_size_class(16_383), 16_384)
        for size in [1024, 1500, 4000, 5000, 65_537, 1 << 20, (1 << 20) + 1] {
            let rounded = sharddb_block_size_class(size)
            XCTAssertGreaterThanOrEqual(rounded, size)
            XCTAssertLessThanOrEqual(Double(rounded), Double(size) * 1.125)
        }
    }
}

/// A counter several threads bump.
private final class LockedCount: @unchecked Sendable {
    private let lock = NSLock()
    private var count = 0
    var value: Int { lock.withLock { count } }
    func increment() { lock.withLock { count += 1 } }
}
