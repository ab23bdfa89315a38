import Foundation
import ShardDB
import TestSupport
import XCTest

/// Closing the engine from inside a closure a read runs (the value of
/// `withValue`, an entry of `scan`): the engine is closed for every call made
/// after it, and the database itself once the read returns; nothing waits.
final class CloseInsideBodyTests: XCTestCase {
    func testCloseInsideWithValueClosesOnceTheReadReturns() throws {
        let directory = TemporaryDirectory()
        let engine = try makeEngine(in: directory, shards: 2)
        try engine.put("k", "v")
        finishesOnItsOwnThread("withValue") {
            let seen = try engine.withValue(forKey: bytes("k")) { value -> String in
                engine.close()
                // Closed at once; the value in hand stays readable until the closure returns.
                XCTAssertFalse(engine.isOpen)
                return String(decoding: value, as: UTF8.self)
            }
            XCTAssertEqual(seen, "v")
        }
        assertShardDBError(.closed, try engine.get("k"))
        // The database was closed: another process (here, another open) can have it.
        let reopened = try ShardEngine.open(at: directory.path("instance"), options: .testing(clock: ManualClock()))
        defer { reopened.close() }
        XCTAssertEqual(try reopened.getString("k"), "v")
    }

    func testCloseInsideScanStopsTheScan() throws {
        let directory = TemporaryDirectory()
        let engine = try makeEngine(in: directory, shards: 2)
        for i in 0..<100 { try engine.put("key-\(i)", "value-\(i)") }
        finishesOnItsOwnThread("scan") {
            var visited = 0
            self.assertShardDBError(.closed, try engine.scan { _ in
                visited += 1
                if visited == 3 { engine.close() }
                return true
            })
            XCTAssertEqual(visited, 3)
        }
        let reopened = try ShardEngine.open(at: directory.path("instance"), options: .testing(clock: ManualClock()))
        defer { reopened.close() }
        XCTAssertEqual(try reopened.entries().count, 100)
    }
}
