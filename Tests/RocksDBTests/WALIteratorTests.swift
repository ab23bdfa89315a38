import Foundation
import RocksDB
import XCTest

final class WALIteratorTests: XCTestCase {
    /// A database that archives its WAL (as ShardDB's engine does), so tailing reaches flushed logs.
    private func openArchiving(_ dir: TemporaryDirectory, ttl: UInt64 = 3600, columnFamilies: [String] = []) throws -> Database {
        try openDatabase(at: dir.path("db"), columnFamilies: columnFamilies) { $0.setWALTTLSeconds(ttl) }
    }

    /// Every batch from `sequence` to the current end: (sequence, count, keys of puts).
    private func drain(_ log: WALIterator) throws -> [(sequence: UInt64, count: Int, keys: [String])] {
        var batches: [(UInt64, Int, [String])] = []
        while let (sequence, data) = try log.next() {
            var keys: [String] = []
            let header = try data.withUnsafeBytes { bytes in
                try WriteBatchDecoder.decode(bytes) { _, record in
                    if case let .put(_, key, _) = record { keys.append(String(decoding: key, as: UTF8.self)) }
                }
            }
            XCTAssertEqual(header.firstSequence, sequence, "the batch header carries the same sequence")
            batches.append((sequence, header.count, keys))
        }
        return batches
    }

    /// An iterator that came up empty with no log to read (a fresh database) answers
    /// nil again when asked again; RocksDB itself would step a log reader it does not
    /// have (facebook/rocksdb#14865: a segfault).
    func testAnIteratorThatStartsEmptyStaysNil() throws {
        let dir = TemporaryDirectory()
        let db = try openArchiving(dir)
        let log = try db.updates(since: 0)
        XCTAssertNil(try log.next())
        XCTAssertNil(try log.next())
        try db.put("a", "1")
        XCTAssertNil(try log.next(), "a new iterator sees it")
        XCTAssertEqual(try drain(try db.updates(since: 1)).map(\.keys), [["a"]])
    }

    func testReadsEveryBatchWithItsSequenceThenNilAtTheEnd() throws {
        let dir = TemporaryDirectory()
        let db = try openArchiving(dir)
        XCTAssertEqual(try db.latestSequenceNumber(), 0)
        try db.put("a", "1")                                     // sequence 1
        let batch = WriteBatch()
        try batch.put(bytes("b"), bytes("2"))
        try batch.put(bytes("c"), bytes("3"))
        try db.write(batch)                                      // sequences 2, 3
        try db.put("d", "4")                                     // sequence 4

        let log = try db.updates(since: 1)
        XCTAssertEqual(log.startSequence, 1)
        let batches = try drain(log)
        XCTAssertEqual(batches.map(\.sequence), [1, 2, 4])
        XCTAssertEqual(batches.map(\.count), [1, 2, 1])
        XCTAssertEqual(batches.map(\.keys), [["a"], ["b", "c"], ["d"]])
        // Still nil when asked again.
        XCTAssertNil(try log.next())

        // Sequence 0 reads like 1.
        XCTAssertEqual(try drain(try db.updates(since: 0)).map(\.sequence), [1, 2, 4])
    }

    func testStartsAtTheBatchHoldingTheSequence() throws {
        let dir = TemporaryDirectory()
        let db = try openArchiving(dir)
        try db.put("a", "1")
        let batch = WriteBatch()
        for key in ["b", "c", "d"] { try batch.put(bytes(key), bytes("x")) }
        try db.write(batch)                                      // sequences 2...4
        try db.put("e", "5")                                     // sequence 5

        // From the middle of a batch: that whole batch comes first.
        XCTAssertEqual(try drain(try db.updates(since: 3)).map(\.sequence), [2, 5])
        XCTAssertEqual(try drain(try db.updates(since: 5)).map(\.sequence), [5])
    }

    func testSequenceNotYetWrittenIsNotFound() throws {
        let dir = TemporaryDirectory()
        let db = try openArchiving(dir)
        do {
            _ = try db.updates(since: 1)
            XCTFail("expected NotFound on an empty database")
        } catch let error as RocksDBError {
            XCTAssertEqual(error.kind, .notFound)
            XCTAssertEqual(error.message, "NotFound: Requested sequence not yet written in the db")
        }
        try db.put("a", "1")
        assertThrows(.notFound, try db.updates(since: 2))
        XCTAssertEqual(try drain(try db.updates(since: 1)).map(\.sequence), [1])
    }

    func testTailsAcrossMemtableFlush() throws {
        let dir = TemporaryDirectory()
        let db = try openArchiving(dir, columnFamilies: ["cf"])
        let family = try db.columnFamily(named: "cf")
        try db.put(bytes("a"), bytes("1"), in: family)           // 1
        try db.put("b", "2")                                     // 2
        let early = try db.updates(since: 1)                     // knows only the first log
        XCTAssertEqual(try early.next()?.sequence, 1)

        try db.flush(family)
        try db.flush()                                           // both families: the first log is archived
        try db.put(bytes("c"), bytes("3"), in: family)           // 3, in a new log
        try db.put("d", "4")                                     // 4

        // A new iterator reads the archived log, then the live one.
        XCTAssertEqual(try drain(try db.updates(since: 1)).map(\.keys), [["a"], ["b"], ["c"], ["d"]])
        XCTAssertEqual(try drain(try db.updates(since: 3)).map(\.sequence), [3, 4])

        // The early iterator ends with its own logs; a new one from the next sequence carries on.
        let seen = try drain(early)
        XCTAssertEqual(seen.first?.sequence, 2)
        let next = (seen.last.map { $0.sequence + UInt64($0.count) }) ?? 2
        XCTAssertEqual(try drain(try db.updates(since: next)).last?.sequence, 4)
    }

    func testPicksUpWritesAppendedToItsLastLogAfterReachingTheEnd() throws {
        let dir = TemporaryDirectory()
        let db = try openArchiving(dir)
        try db.put("a", "1")
        let log = try db.updates(since: 1)
        XCTAssertEqual(try drain(log).map(\.sequence), [1])
        try db.put("b", "2")
        try db.put("c", "3")
        XCTAssertEqual(try drain(log).map(\.keys), [["b"], ["c"]])
    }

    func testPurgedSequenceIsNotAnErrorTheFirstBatchStartsLater() throws {
        let dir = TemporaryDirectory()
        // No archiving: logs are deleted once their memtables are flushed.
        var db: Database? = try openArchiving(dir, ttl: 0)
        try db!.put("a", "1")
        try db!.put("b", "2")
        db!.close()
        // Reopening replays the log into a table file and deletes the log.
        db = try openArchiving(dir, ttl: 0)
        try db!.put("c", "3")                                   // sequence 3
        XCTAssertEqual(try db!.latestSequenceNumber(), 3)
        let log = try db!.updates(since: 1)
        XCTAssertEqual(try log.next()?.sequence, 3, "RocksDB silently starts after the purged sequences")
        XCTAssertNil(try log.next())
    }

    func testWriteWithoutWALLeavesAHole() throws {
        let dir = TemporaryDirectory()
        let db = try openArchiving(dir)
        try db.put("a", "1")                                     // 1
        try db.put("b", "2", options: WriteOptions(disableWAL: true))  // 2: not logged
        try db.put("c", "3")                                     // 3

        // From before the hole, RocksDB notices the discontinuity and fails (and stays failed).
        let log = try db.updates(since: 1)
        XCTAssertEqual(try log.next()?.sequence, 1)
        for _ in 0..<2 {
            do {
                let next = try log.next()
                XCTFail("expected a gap error, got \(String(describing: next?.sequence))")
            } catch let error as RocksDBError {
                XCTAssertEqual(error.kind, .notFound, error.message)
                XCTAssertEqual(error.message, "NotFound: Gap in sequence numbers")
            }
        }
        // From inside the hole, it silently starts at the next logged batch.
        XCTAssertEqual(try drain(try db.updates(since: 2)).map(\.sequence), [3])

        // A hole at the end: the log simply ends (RocksDB's TryAgain is the end, not an error).
        try db.put("d", "4", options: WriteOptions(disableWAL: true))  // 4
        let tail = try db.updates(since: 3)
        XCTAssertEqual(try drain(tail).map(\.sequence), [3])
        XCTAssertNil(try tail.next())
    }

    func testKeepsItsDatabaseAliveAndCloseDestroysIt() throws {
        let dir = TemporaryDirectory()
        var log: WALIterator?
        do {
            let db = try openArchiving(dir)
            try db.put("a", "1")
            try db.put("b", "2")
            log = try db.updates(since: 1)
        }
        // The database object is gone from this scope; the iterator still reads.
        XCTAssertEqual(try log!.next()?.sequence, 1)
        let db = log!.database
        db.close()
        assertThrows(.closed, try log!.next())
        assertThrows(.closed, try db.updates(since: 1))
        log = nil  // deinit after close: nothing left to destroy
    }
}
