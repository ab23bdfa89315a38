import Foundation
@testable import ShardDBServer
import XCTest

/// One pull per migration at a time; a waiting pull whose caller gave up stops waiting.
final class PullGateTests: XCTestCase {
    /// Polls until `condition` holds (each check is an actor hop; bounded).
    private func eventually(_ condition: () async -> Bool) async {
        for _ in 0..<10_000 where await !condition() { await Task.yield() }
    }

    func testASecondPullOfAMigrationWaitsForTheFirstAndOthersDoNot() async throws {
        let gate = PullGate()
        try await gate.enter("m")
        try await gate.enter("other")  // another migration: no wait
        let second = Task { try await gate.enter("m") }
        await eventually { await gate.waiting("m") == 1 }
        let waiting = await gate.waiting("m")
        XCTAssertEqual(waiting, 1)
        await gate.leave("m")
        try await second.value  // in once the first left
        let left = await gate.waiting("m")
        XCTAssertEqual(left, 0)
    }

    func testACancelledWaiterStopsWaitingAndTakesNoTurn() async throws {
        let gate = PullGate()
        try await gate.enter("m")
        let cancelled = Task { try await gate.enter("m") }
        await eventually { await gate.waiting("m") == 1 }
        cancelled.cancel()
        await eventually { await gate.waiting("m") == 0 }
        let waiting = await gate.waiting("m")
        XCTAssertEqual(waiting, 0, "the cancelled waiter left the queue")
        guard waiting == 0 else {
            await gate.leave("m")  // (a gate that kept it: let it go, so the test ends)
            _ = try? await cancelled.value
            return
        }
        do {
            try await cancelled.value
            XCTFail("a cancelled waiter entered while the first pull ran")
        } catch is CancellationError {}
        // The gate is still held by the first pull; once it leaves, the next one gets in.
        let next = Task { try await gate.enter("m") }
        await eventually { await gate.waiting("m") == 1 }
        await gate.leave("m")
        try await next.value
    }

    func testATaskCancelledBeforeItWaitsDoesNotWait() async throws {
        let gate = PullGate()
        try await gate.enter("m")
        let task = Task {
            withUnsafeCurrentTask { $0?.cancel() }
            try await gate.enter("m")
        }
        do {
            try await task.value
            XCTFail("entered while held")
        } catch is CancellationError {}
        let waiting = await gate.waiting("m")
        XCTAssertEqual(waiting, 0)
    }
}
