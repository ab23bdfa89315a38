import Foundation
import RocksDB
import TestSupport
import XCTest

/// A close asked for inside a closure that a read runs with the database held
/// (a pinned value, an iterator's key or value) happens when the outermost
/// such closure on that thread returns, instead of waiting for it for ever.
final class CloseInsideReadTests: XCTestCase {
    func testCloseInsideWithValueHappensWhenItReturns() throws {
        let dir = TemporaryDirectory()
        let db = try openDatabase(at: dir.path("db"))
        try db.put("k", "v")
        finishesOnItsOwnThread("withValue") {
            let seen = try db.withValue(forKey: bytes("k")) { value -> String in
                db.close()
                // Deferred: the pinned value is still valid, and so is the database, until the closure returns.
                XCTAssertTrue(db.isOpen)
                return String(decoding: value, as: UTF8.self)
            }
            XCTAssertEqual(seen, "v")
            XCTAssertFalse(db.isOpen)
        }
        self.assertThrows(.closed, try db.get("k"))
        // The LOCK was let go: the directory opens again.
        let reopened = try openDatabase(at: dir.path("db"))
        XCTAssertEqual(text(try reopened.get("k")), "v")
        reopened.close()
    }

    func testCloseInsideIteratorClosuresHappensWhenTheyReturn() throws {
        let dir = TemporaryDirectory()
        let db = try openDatabase(at: dir.path("db"))
        try db.put("a", "1")
        try db.put("b", "2")
        let iterator = try db.makeIterator()
        iterator.seekToFirst()
        finishesOnItsOwnThread("withKey") {
            let key = try iterator.withKey { key -> String in
                db.close()
                return String(decoding: key, as: UTF8.self)
            }
            XCTAssertEqual(key, "a")
            XCTAssertFalse(db.isOpen)
        }
        XCTAssertFalse(iterator.isValid)
        self.assertThrows(.closed, try iterator.withValue { $0.count })

        let again = try openDatabase(at: dir.path("db"))
        let second = try again.makeIterator()
        second.seekToLast()
        finishesOnItsOwnThread("withValue") {
            XCTAssertEqual(try second.withValue { value -> String in
                again.close()
                return String(decoding: value, as: UTF8.self)
            }, "2")
            XCTAssertFalse(again.isOpen)
        }
    }

    func testNestedReadsCloseAfterTheOutermostOfTheirDatabase() throws {
        let dir = TemporaryDirectory()
        let first = try openDatabase(at: dir.path("first"))
        let second = try openDatabase(at: dir.path("second"))
        try first.put("k", "1")
        try second.put("k", "2")
        finishesOnItsOwnThread("nested reads") {
            try first.withValue(forKey: bytes("k")) { _ in
                try second.withValue(forKey: bytes("k")) { _ in
                    try first.withValue(forKey: bytes("k")) { _ in first.close() }
                    // The inner read of `first` returned, but an outer one still holds it.
                    XCTAssertTrue(first.isOpen)
                    second.close()
                    XCTAssertTrue(second.isOpen)
                }
                // `second` closed when its only read returned; `first` is still held here.
                XCTAssertFalse(second.isOpen)
                XCTAssertTrue(first.isOpen)
            }
            XCTAssertFalse(first.isOpen)
        }
        // Outside any read, close is immediate as always.
        let third = try openDatabase(at: dir.path("third"))
        third.close()
        XCTAssertFalse(third.isOpen)
    }

    func testACloseFromAnotherThreadStillWaitsForTheRead() throws {
        let dir = TemporaryDirectory()
        let db = try openDatabase(at: dir.path("db"))
        try db.put("k", "v")
        let inside = DispatchSemaphore(value: 0), release = DispatchSemaphore(value: 0), closed = DispatchSemaphore(value: 0)
        Thread {
            _ = try? db.withValue(forKey: bytes("k")) { _ in
                inside.signal()
                release.wait()
            }
        }.start()
        inside.wait()
        Thread { db.close(); closed.signal() }.start()
        // Another thread's close is not deferred: it waits for the read, as before.
        XCTAssertEqual(closed.wait(timeout: .now() + 0.2), .timedOut)
        XCTAssertTrue(db.isOpen)
        release.signal()
        XCTAssertEqual(closed.wait(timeout: .now() + 20), .success)
        XCTAssertFalse(db.isOpen)
    }
}
