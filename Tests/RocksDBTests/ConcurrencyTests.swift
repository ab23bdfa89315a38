import Foundation
import RocksDB
import TestSupport
import XCTest

final class ConcurrencyTests: XCTestCase {
    func testConcurrentWritersOnDifferentColumnFamilies() throws {
        let dir = TemporaryDirectory()
        let threads = 4, perThread = 2000
        let names = (0..<threads).map { "cf\($0)" }
        let db = try openDatabase(at: dir.path("db"), columnFamilies: names)
        let families = try names.map { try db.columnFamily(named: $0) }
        let failures = ErrorLog()

        DispatchQueue.concurrentPerform(iterations: threads) { t in
            do {
                for i in 0..<perThread {
                    try db.put(bytes(String(format: "key%05d", i)), bytes("t\(t)-v\(i)"), in: families[t])
                    if i % 500 == 0 { _ = try db.get(bytes("key00000"), in: families[(t + 1) % threads]) }
                }
            } catch {
                failures.append(error)
            }
        }
        XCTAssertEqual(failures.errors.count, 0, "\(failures.errors)")
        XCTAssertEqual(try db.latestSequenceNumber(), UInt64(threads * perThread))

        for (t, family) in families.enumerated() {
            let iterator = try db.makeIterator(in: family)
            iterator.seekToFirst()
            var i = 0
            try iterator.forEach { key, value in
                XCTAssertEqual(String(decoding: key, as: UTF8.self), String(format: "key%05d", i))
                XCTAssertEqual(String(decoding: value, as: UTF8.self), "t\(t)-v\(i)")
                i += 1
                return true
            }
            XCTAssertEqual(i, perThread, family.name)
            let sample = try db.multiGet([bytes("key00000"), bytes("key01999"), bytes("key02000")], in: family)
            XCTAssertEqual(sample.map(text), ["t\(t)-v0", "t\(t)-v1999", nil])
        }
    }

    func testConcurrentBatchesAcrossFamiliesAreAtomic() throws {
        let dir = TemporaryDirectory()
        let db = try openDatabase(at: dir.path("db"), columnFamilies: ["left", "right"])
        let left = try db.columnFamily(named: "left")
        let right = try db.columnFamily(named: "right")
        let writers = 2, rounds = 300
        let failures = ErrorLog()

        // Writers put the same value under the same key in both families in one batch;
        // a reader on snapshots must never see them differ.
        runConcurrently(writers + 1) { worker in
            do {
                if worker < writers {
                    for round in 0..<rounds {
                        let batch = WriteBatch()
                        let value = bytes("w\(worker)-r\(round)")
                        try batch.put(bytes("shared"), value, in: left)
                        try batch.put(bytes("shared"), value, in: right)
                        try db.write(batch)
                    }
                } else {
                    for _ in 0..<rounds {
                        let options = ReadOptions()
                        try options.setSnapshot(db.snapshot())
                        let l = try db.get(bytes("shared"), in: left, options: options)
                        let r = try db.get(bytes("shared"), in: right, options: options)
                        if l != r { failures.append(RocksDBError(kind: .unknown, message: "torn batch: \(String(describing: text(l))) vs \(String(describing: text(r)))")) }
                    }
                }
            } catch {
                failures.append(error)
            }
        }
        XCTAssertEqual(failures.errors.count, 0, "\(failures.errors.prefix(3))")
        XCTAssertEqual(try db.get(bytes("shared"), in: left), try db.get(bytes("shared"), in: right))
    }

    func testCloseWhileOtherThreadsUseTheDatabase() throws {
        let dir = TemporaryDirectory()
        let db = try openDatabase(at: dir.path("db"), columnFamilies: ["cf"])
        let family = try db.columnFamily(named: "cf")
        let failures = ErrorLog()
        let workers = 2
        let started = DispatchSemaphore(value: 0)
        let finished = DispatchGroup()

        // Plain threads: concurrentPerform may run fewer iterations at once than asked.
        for _ in 0..<workers {
            finished.enter()
            Thread {
                defer { finished.leave() }
                started.signal()
                var i = 0
                while true {
                    do {
                        try db.put(bytes("k\(i)"), bytes("v"), in: family)
                        let iterator = try db.makeIterator(in: family)
                        iterator.seekToFirst()
                        _ = iterator.key
                        let snapshot = try db.snapshot()
                        let options = ReadOptions()
                        try options.setSnapshot(snapshot)
                        _ = try db.get(bytes("k\(i)"), in: family, options: options)
                        if i % 2 == 0 { snapshot.release() }
                    } catch let error as RocksDBError where error.kind == .closed {
                        return
                    } catch {
                        failures.append(error)
                        return
                    }
                    i += 1
                }
            }.start()
        }
        for _ in 0..<workers { started.wait() }
        Thread.sleep(forTimeInterval: 0.05)
        db.close()
        XCTAssertEqual(finished.wait(timeout: .now() + 10), .success)
        XCTAssertEqual(failures.errors.count, 0, "\(failures.errors)")
        XCTAssertFalse(db.isOpen)
        XCTAssertNoThrow(try openDatabase(at: dir.path("db")).close())
    }

    func testSnapshotReleasedWhileOtherThreadsReadWithIt() throws {
        let dir = TemporaryDirectory()
        let db = try openDatabase(at: dir.path("db"))
        try db.put("k", "old")
        let snapshot = try db.snapshot()
        try db.put("k", "new")
        let options = ReadOptions()
        try options.setSnapshot(snapshot)
        let failures = ErrorLog()
        let finished = DispatchGroup()
        for _ in 0..<2 {
            finished.enter()
            Thread {
                defer { finished.leave() }
                while true {
                    do {
                        let value = try db.get("k", options: options)
                        if text(value) != "old" { failures.append(RocksDBError(kind: .unknown, message: "read \(String(describing: text(value)))")) }
                    } catch let error as RocksDBError where error.kind == .closed {
                        return
                    } catch {
                        failures.append(error)
                        return
                    }
                }
            }.start()
        }
        Thread.sleep(forTimeInterval: 0.02)
        snapshot.release()
        XCTAssertEqual(finished.wait(timeout: .now() + 10), .success)
        XCTAssertEqual(failures.errors.count, 0, "\(failures.errors.prefix(3))")
        XCTAssertEqual(text(try db.get("k")), "new")
    }
}

/// Errors collected from worker threads.
final class ErrorLog: @unchecked Sendable {
    private let lock = NSLock()
    private var _errors: [Error] = []
    var errors: [Error] { lock.withLock { _errors } }
    func append(_ error: Error) { lock.withLock { _errors.append(error) } }
}
