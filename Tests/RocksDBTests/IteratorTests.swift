import Foundation
import RocksDB
import XCTest

final class IteratorTests: XCTestCase {
    private var dir: TemporaryDirectory!
    private var db: Database!

    override func setUpWithError() throws {
        dir = TemporaryDirectory()
        db = try openDatabase(at: dir.path("db"))
        for key in ["a", "b", "c", "d", "e", "f"] { try db.put(key, "v" + key) }
    }

    override func tearDown() {
        db?.close()
        db = nil
        dir = nil
    }

    private func forwardKeys(_ iterator: RocksDB.Iterator) -> [String] {
        var keys: [String] = []
        while iterator.isValid {
            keys.append(text(iterator.key)!)
            iterator.next()
        }
        return keys
    }

    private func backwardKeys(_ iterator: RocksDB.Iterator) -> [String] {
        var keys: [String] = []
        while iterator.isValid {
            keys.append(text(iterator.key)!)
            iterator.previous()
        }
        return keys
    }

    func testUnboundedIteration() throws {
        let iterator = try db.makeIterator()
        iterator.seekToFirst()
        XCTAssertEqual(text(iterator.value), "va")
        XCTAssertEqual(forwardKeys(iterator), ["a", "b", "c", "d", "e", "f"])
        iterator.seekToLast()
        XCTAssertEqual(backwardKeys(iterator), ["f", "e", "d", "c", "b", "a"])
        try iterator.checkStatus()
        XCTAssertFalse(iterator.isValid)
        XCTAssertEqual(iterator.key, [])
    }

    func testBoundsWithSeekToFirstAndLast() throws {
        let iterator = try db.makeIterator(lowerBound: bytes("b"), upperBound: bytes("e"))
        iterator.seekToFirst()
        XCTAssertEqual(forwardKeys(iterator), ["b", "c", "d"])
        iterator.seekToLast()
        XCTAssertEqual(backwardKeys(iterator), ["d", "c", "b"])
        try iterator.checkStatus()
    }

    func testBoundsWithSeek() throws {
        let iterator = try db.makeIterator(lowerBound: bytes("b"), upperBound: bytes("e"))
        iterator.seek(to: bytes("c"))
        XCTAssertEqual(forwardKeys(iterator), ["c", "d"])
        iterator.seek(to: bytes("a"))  // below the lower bound: starts at it
        XCTAssertEqual(text(iterator.key), "b")
        iterator.seek(to: bytes("e"))  // the upper bound is exclusive
        XCTAssertFalse(iterator.isValid)
        iterator.seek(to: bytes("cc"))
        XCTAssertEqual(text(iterator.key), "d")
    }

    func testBoundsWithSeekForPrev() throws {
        let iterator = try db.makeIterator(lowerBound: bytes("b"), upperBound: bytes("e"))
        iterator.seek(forPrev: bytes("c"))
        XCTAssertEqual(backwardKeys(iterator), ["c", "b"])
        iterator.seek(forPrev: bytes("z"))  // above the upper bound: ends below it
        XCTAssertEqual(text(iterator.key), "d")
        iterator.seek(forPrev: bytes("cc"))
        XCTAssertEqual(text(iterator.key), "c")
        iterator.seek(forPrev: bytes("a"))  // below the lower bound
        XCTAssertFalse(iterator.isValid)
    }

    func testOnlyLowerOrOnlyUpperBound() throws {
        let lower = try db.makeIterator(lowerBound: bytes("e"))
        lower.seekToFirst()
        XCTAssertEqual(forwardKeys(lower), ["e", "f"])
        lower.seekToLast()
        XCTAssertEqual(backwardKeys(lower), ["f", "e"])

        let upper = try db.makeIterator(upperBound: bytes("b"))
        upper.seekToLast()
        XCTAssertEqual(backwardKeys(upper), ["a"])
        upper.seekToFirst()
        XCTAssertEqual(forwardKeys(upper), ["a"])
    }

    func testBoundsThatCoverNothing() throws {
        let iterator = try db.makeIterator(lowerBound: bytes("c1"), upperBound: bytes("c2"))
        iterator.seekToFirst()
        XCTAssertFalse(iterator.isValid)
        iterator.seekToLast()
        XCTAssertFalse(iterator.isValid)
        var visited = 0
        try iterator.forEach { _, _ in visited += 1; return true }
        XCTAssertEqual(visited, 0)
    }

    func testIteratorWithReadOptionsRetainsItsBounds() throws {
        func makeIterator() throws -> RocksDB.Iterator {
            let options = ReadOptions()
            options.setBounds(lower: bytes("c"), upper: bytes("f"))
            return try db.makeIterator(readOptions: options)
        }
        let iterator = try makeIterator()
        // Churn the heap so a dangling bound would show.
        for _ in 0..<100 { _ = [UInt8](repeating: 0xFF, count: 16) }
        iterator.seekToFirst()
        XCTAssertEqual(forwardKeys(iterator), ["c", "d", "e"])
    }

    /// RocksDB's iterator points into its read options' bounds: changing the options
    /// after making it re-bounded it (an empty upper bound: nothing visited).
    func testChangingReadOptionsDoesNotChangeALiveIterator() throws {
        let options = ReadOptions()
        options.setBounds(lower: bytes("c"), upper: bytes("e"))
        let iterator = try db.makeIterator(readOptions: options)
        options.setBounds(lower: nil, upper: nil)
        iterator.seekToFirst()
        XCTAssertEqual(forwardKeys(iterator), ["c", "d"])
        options.setBounds(lower: bytes("a"), upper: bytes("b"))
        iterator.seekToFirst()
        XCTAssertEqual(forwardKeys(iterator), ["c", "d"])
        let later = try db.makeIterator(readOptions: options)
        later.seekToFirst()
        XCTAssertEqual(forwardKeys(later), ["a"])
    }

    /// A snapshot of one database names a sequence number of that database only, and
    /// only its own database's lock keeps it alive.
    func testAnotherDatabasesSnapshotIsRefused() throws {
        let other = try openDatabase(at: dir.path("other"))
        defer { other.close() }
        let options = ReadOptions()
        try options.setSnapshot(try other.snapshot())
        assertThrows(.invalidArgument, try db.get("a", options: options))
        assertThrows(.invalidArgument, try db.multiGet([bytes("a")], options: options))
        assertThrows(.invalidArgument, try db.makeIterator(readOptions: options))
        XCTAssertNil(try other.get("a", options: options))
    }

    func testIteratorSeesItsSnapshot() throws {
        let snapshot = try db.snapshot()
        try db.put("c", "changed")
        try db.delete(bytes("d"))
        try db.put("g", "vg")
        let old = try db.makeIterator(snapshot: snapshot)
        old.seekToFirst()
        XCTAssertEqual(forwardKeys(old), ["a", "b", "c", "d", "e", "f"])
        old.seek(to: bytes("c"))
        XCTAssertEqual(text(old.value), "vc")

        let current = try db.makeIterator()
        current.seekToFirst()
        XCTAssertEqual(forwardKeys(current), ["a", "b", "c", "e", "f", "g"])
        current.seek(to: bytes("c"))
        XCTAssertEqual(text(current.value), "changed")
    }

    func testIteratorInColumnFamily() throws {
        let family = try db.createColumnFamily(named: "cf")
        try db.put(bytes("x"), bytes("1"), in: family)
        try db.put(bytes("y"), bytes("2"), in: family)
        let iterator = try db.makeIterator(in: family)
        iterator.seekToFirst()
        XCTAssertEqual(forwardKeys(iterator), ["x", "y"])
    }

    func testWithKeyAndWithValue() throws {
        let iterator = try db.makeIterator()
        iterator.seek(to: bytes("d"))
        XCTAssertEqual(try iterator.withKey { String(decoding: $0, as: UTF8.self) }, "d")
        XCTAssertEqual(try iterator.withValue { String(decoding: $0, as: UTF8.self) }, "vd")
    }

    // MARK: forEach

    func testForEachVisitsEveryEntryInOrderAcrossBatches() throws {
        let family = try db.createColumnFamily(named: "scan")
        var expected: [([UInt8], [UInt8])] = []
        for i in 0..<3000 {
            let key = bytes(String(format: "key%05d", i))
            // Mostly small values, a few larger ones, one far larger than the batch buffer.
            let size = i == 1500 ? 200 << 10 : (i % 97 == 0 ? 9000 : 20)
            let value = [UInt8](repeating: UInt8(i % 251), count: size)
            expected.append((key, value))
        }
        let batch = WriteBatch()
        for (key, value) in expected { try batch.put(key, value, in: family) }
        try db.write(batch)

        for flushFirst in [false, true] {
            if flushFirst { try db.flush(family) }
            let iterator = try db.makeIterator(in: family)
            iterator.seekToFirst()
            var index = 0
            try iterator.forEach(batchBytes: 64 << 10, maxBatchEntries: 100) { key, value in
                XCTAssertLessThan(index, expected.count)
                guard index < expected.count else { return false }
                XCTAssertTrue(key.elementsEqual(expected[index].0), "key at \(index)")
                XCTAssertEqual(value.count, expected[index].1.count, "value size at \(index)")
                XCTAssertTrue(value.elementsEqual(expected[index].1), "value at \(index)")
                index += 1
                return true
            }
            XCTAssertEqual(index, expected.count)
            XCTAssertFalse(iterator.isValid)
        }
    }

    // MARK: readPacked

    /// Entries come back packed (keys and values back to back, lengths beside),
    /// read until the goal is reached with the entry that reaches it, across C
    /// batches (over 4096 entries) and an entry larger than the room left; the
    /// reads resume where the last stopped, and the last one says nothing is left.
    func testReadPackedReadsUpToItsGoalAndSaysWhenNothingIsLeft() throws {
        let family = try db.createColumnFamily(named: "packed")
        var expected: [([UInt8], [UInt8])] = []
        for i in 0..<10_000 {
            let size = i == 7000 ? 3 << 20 : 30 + i % 11
            expected.append((bytes(String(format: "key%05d", i)), [UInt8](repeating: UInt8(i % 251), count: size)))
        }
        let batch = WriteBatch()
        for (key, value) in expected { try batch.put(key, value, in: family) }
        try db.write(batch)
        try db.flush(family)

        let iterator = try db.makeIterator(in: family)
        iterator.seekToFirst()
        var read: [([UInt8], [UInt8])] = []
        var reads = 0, finished = false
        while !finished {
            let packed = try iterator.readPacked(bytes: 100_000)
            reads += 1
            XCTAssertEqual(packed.keyLengths.count, packed.valueLengths.count)
            let total = zip(packed.keyLengths, packed.valueLengths).reduce(0) { $0 + Int($1.0) + Int($1.1) }
            XCTAssertEqual(total, packed.data.count)
            // The goal, passed by at most the entry that reached it.
            if !packed.exhausted {
                XCTAssertGreaterThanOrEqual(packed.data.count, 100_000)
                XCTAssertLessThan(packed.data.count - Int(packed.keyLengths.last! + packed.valueLengths.last!), 100_000)
            }
            var offset = 0
            for (k, v) in zip(packed.keyLengths, packed.valueLengths) {
                read.append(([UInt8](packed.data[offset..<offset + Int(k)]), [UInt8](packed.data[offset + Int(k)..<offset + Int(k + v)])))
                offset += Int(k + v)
            }
            XCTAssertEqual(packed.lastKey, read.last?.0)
            finished = packed.exhausted
            XCTAssertLessThan(reads, 1000)
        }
        XCTAssertEqual(read.count, expected.count)
        XCTAssertTrue(zip(read, expected).allSatisfy { $0.0 == $1.0 && $0.1 == $1.1 })
        XCTAssertFalse(iterator.isValid)
        // Past the end: nothing, and exhausted.
        let after = try iterator.readPacked(bytes: 10)
        XCTAssertTrue(after.exhausted)
        XCTAssertTrue(after.data.isEmpty)
        XCTAssertNil(after.lastKey)
    }

    /// Entries `keep` refuses are left out (the ones after them move down), do not
    /// count toward the goal, and still count as read: the last key is the last
    /// entry read even when it was left out.
    func testReadPackedLeavesOutWhatKeepRefuses() throws {
        let iterator = try db.makeIterator()
        iterator.seekToFirst()
        let kept = try iterator.readPacked(bytes: 4) { key, _ in key.first != UInt8(ascii: "b") && key.first != UInt8(ascii: "c") }
        XCTAssertEqual(String(decoding: kept.data, as: UTF8.self), "avadvd", "a and d, each with its value")
        XCTAssertEqual(kept.keyLengths, [1, 1])
        XCTAssertEqual(kept.valueLengths, [2, 2])
        XCTAssertFalse(kept.exhausted)

        let rest = try iterator.readPacked(bytes: 100) { key, _ in key.first != UInt8(ascii: "f") }
        XCTAssertEqual(String(decoding: rest.data, as: UTF8.self), "eve")
        XCTAssertEqual(rest.lastKey, bytes("f"), "the last entry read, though left out")
        XCTAssertTrue(rest.exhausted)

        // Dropped entries before kept ones in one batch: the kept ones move down.
        let again = try db.makeIterator()
        again.seekToFirst()
        let moved = try again.readPacked(bytes: 1000) { key, _ in key.first != UInt8(ascii: "a") && key.first != UInt8(ascii: "c") }
        XCTAssertEqual(String(decoding: moved.data, as: UTF8.self), "bvbdvdevefvf")
        XCTAssertEqual(moved.keyLengths, [1, 1, 1, 1])
        XCTAssertEqual(moved.lastKey, bytes("f"))
        XCTAssertTrue(moved.exhausted)
    }

    /// Across many batches and a buffer that grows, with most entries dropped:
    /// what is kept is exactly the kept entries, in order; a read that stops at its
    /// goal names the last entry it read (kept or not), and the next read starts after it.
    func testReadPackedKeepsExactlyWhatKeepAcceptsAcrossBatchesAndGrowth() throws {
        let family = try db.createColumnFamily(named: "filtered")
        var expected: [([UInt8], [UInt8])] = []
        let batch = WriteBatch()
        for i in 0..<12_000 {
            let key = bytes(String(format: "k%05d", i))
            let value = [UInt8](repeating: UInt8(i % 251), count: i % 1000 == 999 ? 2 << 20 : 40 + i % 13)
            try batch.put(key, value, in: family)
            if i % 3 != 0 { expected.append((key, value)) }
        }
        try db.write(batch)
        let iterator = try db.makeIterator(in: family)
        iterator.seekToFirst()
        var kept: [([UInt8], [UInt8])] = []
        var lastRead: [UInt8]?
        while true {
            let packed = try iterator.readPacked(bytes: 3 << 20) { key, _ in
                Int(String(decoding: key.dropFirst(), as: UTF8.self))! % 3 != 0
            }
            var offset = 0
            for (k, v) in zip(packed.keyLengths, packed.valueLengths) {
                let key = [UInt8](packed.data[offset..<offset + Int(k)])
                if let lastRead { XCTAssertTrue(lastRead.lexicographicallyPrecedes(key), "resumes after the last key read") }
                kept.append((key, [UInt8](packed.data[offset + Int(k)..<offset + Int(k + v)])))
                offset += Int(k + v)
            }
            XCTAssertEqual(offset, packed.data.count)
            if let last = packed.lastKey { lastRead = last }
            if packed.exhausted { break }
        }
        XCTAssertEqual(kept.count, expected.count)
        XCTAssertTrue(zip(kept, expected).allSatisfy { $0.0 == $1.0 && $0.1 == $1.1 })
        XCTAssertEqual(lastRead, bytes("k11999"))
    }

    func testForEachWithOnlyOversizedValues() throws {
        let family = try db.createColumnFamily(named: "big")
        for i in 0..<3 {
            try db.put(bytes("big\(i)"), [UInt8](repeating: UInt8(i), count: (200 << 10) + i), in: family)
        }
        let iterator = try db.makeIterator(in: family)
        iterator.seekToFirst()
        var sizes: [Int] = []
        try iterator.forEach(batchBytes: 64 << 10) { key, value in
            sizes.append(value.count)
            XCTAssertTrue(value.allSatisfy { $0 == value[0] })
            return true
        }
        XCTAssertEqual(sizes, [200 << 10, (200 << 10) + 1, (200 << 10) + 2])
    }

    func testForEachStopsEarlyWhenBodyReturnsFalse() throws {
        let iterator = try db.makeIterator()
        iterator.seekToFirst()
        var keys: [String] = []
        try iterator.forEach(batchBytes: 64, maxBatchEntries: 2) { key, _ in
            keys.append(String(decoding: key, as: UTF8.self))
            return keys.count < 3
        }
        XCTAssertEqual(keys, ["a", "b", "c"])

        // From a seek, with bounds.
        let bounded = try db.makeIterator(lowerBound: bytes("b"), upperBound: bytes("e"))
        bounded.seek(to: bytes("c"))
        keys = []
        try bounded.forEach { key, _ in
            keys.append(String(decoding: key, as: UTF8.self))
            return true
        }
        XCTAssertEqual(keys, ["c", "d"])
    }

    /// A batch limit below one used to end the iteration after the first entry.
    func testForEachWithABatchLimitBelowOneVisitsEverything() throws {
        let iterator = try db.makeIterator()
        for limit in [0, -3] {
            iterator.seekToFirst()
            var keys: [String] = []
            try iterator.forEach(maxBatchEntries: limit) { key, _ in keys.append(text(Array(key))!); return true }
            XCTAssertEqual(keys, ["a", "b", "c", "d", "e", "f"])
        }
    }

    func testForEachRethrowsBodyError() throws {
        struct Stop: Error {}
        let iterator = try db.makeIterator()
        iterator.seekToFirst()
        var visited = 0
        XCTAssertThrowsError(try iterator.forEach { _, _ in
            visited += 1
            if visited == 2 { throw Stop() }
            return true
        }) { XCTAssertTrue($0 is Stop) }
        XCTAssertEqual(visited, 2)
    }
}
