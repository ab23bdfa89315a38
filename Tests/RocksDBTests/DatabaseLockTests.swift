import Foundation
@testable import RocksDB
import XCTest

/// The database's lock: per-operation holds count themselves in on their
/// thread's stripe; an exclusive hold (close, a drop, a snapshot release)
/// waits them out and keeps new ones out, and a hold taken inside another never
/// deadlocks against a waiting exclusive one. Each step waits on a condition,
/// not on time.
final class DatabaseLockTests: XCTestCase {
    func testAnExclusiveHoldWaitsForAFastHold() {
        let lock = DatabaseLock()
        let fast = lock.fast
        let hold = fast.lockShared()
        let entered = Flag()
        let done = DispatchGroup()
        DispatchQueue.global().async(group: done) {
            lock.withWriteLock { entered.set() }
        }
        waitUntil { fast.wanted.pointee.load(ordering: .sequentiallyConsistent) > 0 || entered.isSet }
        // Announced, so waiting; it cannot have entered while the hold is in.
        XCTAssertFalse(entered.isSet)
        fast.unlock(hold)
        done.wait()
        XCTAssertTrue(entered.isSet)
        XCTAssertEqual(fast.wanted.pointee.load(ordering: .sequentiallyConsistent), 0, "the announcement is withdrawn")
    }

    func testAFastHoldWaitsWhileAnExclusiveOneIsHeld() {
        let lock = DatabaseLock()
        let fast = lock.fast
        let inside = DispatchSemaphore(value: 0), release = DispatchSemaphore(value: 0)
        let writer = DispatchGroup()
        DispatchQueue.global().async(group: writer) {
            lock.withWriteLock {
                inside.signal()
                release.wait()
            }
        }
        inside.wait()
        let got = Flag()
        let reader = DispatchGroup()
        DispatchQueue.global().async(group: reader) {
            let hold = fast.lockShared()
            got.set()
            XCTAssertEqual(hold, -1, "taken through the pthread lock while an exclusive hold is wanted")
            fast.unlock(hold)
        }
        // The reader is either not started or blocked in the pthread lock: it cannot get in.
        XCTAssertEqual(reader.wait(timeout: .now() + .milliseconds(50)), .timedOut)
        XCTAssertFalse(got.isSet)
        release.signal()
        writer.wait()
        reader.wait()
        XCTAssertTrue(got.isSet)
        // With nothing wanted, a hold is a count on the caller's stripe.
        let hold = fast.lockShared()
        XCTAssertEqual(hold, ThreadStripe.current)
        fast.unlock(hold)
    }

    func testAHoldTakenInsideAFastHoldDoesNotWaitForAWaitingExclusiveOne() {
        let lock = DatabaseLock()
        let fast = lock.fast
        let outer = fast.lockShared()
        let done = DispatchGroup(), finished = Flag()
        DispatchQueue.global().async(group: done) { lock.withWriteLock { finished.set() } }
        waitUntil { fast.wanted.pointee.load(ordering: .sequentiallyConsistent) > 0 || finished.isSet }
        XCTAssertFalse(finished.isSet, "the exclusive hold waits for the outer one")
        // A read inside a read (a closure that reads again) while close waits for the outer one.
        let inner = fast.lockShared()
        XCTAssertEqual(inner, -1)
        lock.withReadLock {}  // and a pthread shared hold, as iterators take
        fast.unlock(inner)
        fast.unlock(outer)
        done.wait()
    }

    /// Readers on several threads while exclusive holds come and go: an
    /// exclusive body never runs beside a shared one.
    func testExclusiveHoldsNeverOverlapSharedOnes() {
        let lock = DatabaseLock()
        let fast = lock.fast
        let inShared = Counter(), overlaps = Counter(), completed = Counter()
        let stop = Flag()
        let readers = DispatchGroup()
        for _ in 0..<2 {
            DispatchQueue.global().async(group: readers) {
                while !stop.isSet {
                    let hold = fast.lockShared()
                    inShared.add(1)
                    for _ in 0..<20 where inShared.value < 0 { overlaps.add(1) }  // (a hold of some length)
                    inShared.add(-1)
                    fast.unlock(hold)
                    completed.add(1)
                }
            }
        }
        for _ in 0..<30 {
            let before = completed.value
            waitUntil { completed.value > before }  // readers run between exclusive holds
            lock.withWriteLock { if inShared.value != 0 { overlaps.add(1) } }
        }
        stop.set()
        readers.wait()
        XCTAssertEqual(overlaps.value, 0)
    }

    /// Through a database: a read's closure that reads again while another
    /// thread closes the database finishes, and then the close does.
    func testCloseWaitsForAReadWhoseClosureReadsAgain() throws {
        let directory = TemporaryDirectory()
        let db = try openDatabase(at: directory.path("db"))
        try db.put("a", "1")
        try db.put("b", "2")
        let closed = DispatchGroup()
        let inner = try db.withValue(forKey: Array("a".utf8)) { value -> [UInt8]? in
            DispatchQueue.global().async(group: closed) { db.close() }
            waitUntil { db.core.lock.fast.wanted.pointee.load(ordering: .sequentiallyConsistent) > 0 || !db.isOpen }
            XCTAssertTrue(db.isOpen, "close waits for this read")
            return try db.get("b")
        }
        XCTAssertEqual(inner, Array("2".utf8))
        closed.wait()
        XCTAssertFalse(db.isOpen)
        XCTAssertThrowsError(try db.get("a"))
    }

    func testTheFirstThreadsGetStripesOfTheirOwn() {
        let stripes = LockedSet()
        let done = DispatchGroup()
        for _ in 0..<4 {
            done.enter()
            Thread.detachNewThread {
                let stripe = ThreadStripe.current
                XCTAssertEqual(ThreadStripe.current, stripe, "a thread keeps its stripe")
                stripes.insert(stripe)
                done.leave()
            }
        }
        done.wait()
        XCTAssertEqual(stripes.count, 4, "four new threads, four stripes (fewer than \(ThreadStripe.count) threads ran)")
    }

    private func waitUntil(_ condition: () -> Bool) {
        while !condition() { sched_yield() }
    }
}

private final class Flag: @unchecked Sendable {
    private let lock = NSLock()
    private var value = false
    var isSet: Bool { lock.withLock { value } }
    func set() { lock.withLock { value = true } }
}

private final class Counter: @unchecked Sendable {
    private let lock = NSLock()
    private var count = 0
    var value: Int { lock.withLock { count } }
    func add(_ delta: Int) { lock.withLock { count += delta } }
}

private final class LockedSet: @unchecked Sendable {
    private let lock = NSLock()
    private var values = Set<Int>()
    var count: Int { lock.withLock { values.count } }
    func insert(_ value: Int) { lock.withLock { _ = values.insert(value) } }
}
