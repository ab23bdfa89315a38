import Foundation
import RocksDB
import XCTest

/// PerfLevel is per thread, so each case runs its reads on a new thread whose
/// level nobody has chosen yet.
final class PerfLevelTests: XCTestCase {
    /// Loads 1000 keys, then on a fresh thread runs `prepare` and 100 reads; returns that thread's comparison count.
    func comparisonsOfReads(threadPerfLevel: PerfLevel?, prepare: @escaping @Sendable () -> Void = {}) throws -> UInt64 {
        let dir = TemporaryDirectory()
        let options = Options()
        options.createIfMissing = true
        let db = try Database.open(at: dir.path("db"), options: options, threadPerfLevel: threadPerfLevel)
        for i in 0..<1000 { try db.put(bytes(String(format: "key%05d", i)), bytes("v\(i)")) }
        let result = Box()
        let done = DispatchSemaphore(value: 0)
        let thread = Thread {
            prepare()
            PerfContext.reset()
            var found = 0
            for i in stride(from: 0, to: 1000, by: 10) where (try? db.get(bytes(String(format: "key%05d", i)))) != nil { found += 1 }
            // Every read found its key: a count of zero comparisons means the level, not failed reads.
            result.value = found == 100 ? PerfContext.userKeyComparisons : .max
            done.signal()
        }
        thread.start()
        done.wait()
        return result.value
    }

    final class Box: @unchecked Sendable { var value: UInt64 = 0 }

    func testRocksDBDefaultCountsComparisons() throws {
        // RocksDB's own default (enableCount) is kept when the database sets no level.
        XCTAssertGreaterThan(try comparisonsOfReads(threadPerfLevel: nil), 100)
    }

    func testDatabaseLevelIsAppliedToEachThread() throws {
        XCTAssertEqual(try comparisonsOfReads(threadPerfLevel: .disable), 0)
    }

    func testThreadsOwnChoiceWins() throws {
        // A thread that chose its level keeps it: the database's level applies only to threads that did not.
        let count = try comparisonsOfReads(threadPerfLevel: .disable) { PerfLevel.setForCurrentThread(.enableCount) }
        XCTAssertGreaterThan(count, 100)
    }
}
