// Helpers shared by the test targets (one copy of each).
import Foundation
import XCTest

/// Runs `body(0..<count)` on `count` threads of their own, started together, and
/// waits for all of them. (`DispatchQueue.concurrentPerform` runs at most as many
/// iterations at once as there are CPUs, in order: on 2 cores its last ones start
/// only after the first finish, and "alongside" tests then overlap nothing.)
public func runConcurrently(_ count: Int, _ body: @escaping @Sendable (Int) -> Void) {
    let ready = DispatchGroup(), go = DispatchSemaphore(value: 0), finished = DispatchGroup()
    for index in 0..<count {
        ready.enter()
        finished.enter()
        Thread {
            ready.leave()
            go.wait()
            body(index)
            finished.leave()
        }.start()
    }
    ready.wait()
    for _ in 0..<count { go.signal() }
    if finished.wait(timeout: .now() + 600) == .timedOut { XCTFail("runConcurrently: a worker still runs after 10 minutes") }
}

/// Runs `body` on a thread of its own and fails (instead of hanging the run)
/// when it has not returned within `seconds`; a thrown error fails too.
public func finishesOnItsOwnThread(_ what: String, within seconds: Double = 20,
                                   file: StaticString = #filePath, line: UInt = #line,
                                   _ body: @escaping @Sendable () throws -> Void) {
    let done = DispatchSemaphore(value: 0)
    Thread {
        do { try body() } catch { XCTFail("\(what): \(error)", file: file, line: line) }
        done.signal()
    }.start()
    if done.wait(timeout: .now() + seconds) == .timedOut {
        XCTFail("\(what) did not return within \(seconds) s", file: file, line: line)
    }
}
