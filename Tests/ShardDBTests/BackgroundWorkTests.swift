@testable import ShardDB
import XCTest

final class BackgroundWorkTests: XCTestCase {
    /// Options under which every flush adds a level-0 file and two of them make a compaction due.
    private func options(autoCompactions: Bool) -> ShardEngineOptions {
        var options = ShardEngineOptions.testing()
        options.rocksDBOptions = "level0_file_num_compaction_trigger=2;disable_auto_compactions=\(!autoCompactions)"
        return options
    }

    private func writeAndFlush(_ engine: ShardEngine, round: Int) throws {
        for i in 0..<500 { try engine.put("key-\(i)", "round \(round) value \(i)") }
        try engine.flush()
    }

    func testWaitReturnsOnceDueCompactionsHaveRun() throws {
        let directory = TemporaryDirectory()
        let path = directory.path("instance")
        // With automatic compactions off, the compaction three flushes make due
        // stays pending: the wait must see it and give up at its timeout.
        let engine = try ShardEngine.create(at: path, shards: 2, partitioning: .hash(keyGroups: 64),
                                            options: options(autoCompactions: false))
        for round in 0..<3 { try writeAndFlush(engine, round: round) }
        XCTAssertTrue(try engine.hasBackgroundWork())
        XCTAssertFalse(try engine.waitForBackgroundWork(timeoutSeconds: 0))
        XCTAssertFalse(try engine.waitForBackgroundWork(timeoutSeconds: 0.02))
        engine.close()

        // Reopened with them on, RocksDB runs that compaction; the wait returns
        // once it is done, and what was stored is unchanged.
        let reopened = try ShardEngine.open(at: path, options: options(autoCompactions: true))
        defer { reopened.close() }
        XCTAssertTrue(try reopened.waitForBackgroundWork(timeoutSeconds: 120))
        XCTAssertFalse(try reopened.hasBackgroundWork())
        for i in 0..<500 { XCTAssertEqual(try reopened.getString("key-\(i)"), "round 2 value \(i)") }
        // Nothing left to do: the wait only looks.
        XCTAssertTrue(try reopened.waitForBackgroundWork(timeoutSeconds: 0))
    }

    func testBadTimeoutsAreRefusedAndAClosedEngineSaysSo() throws {
        let directory = TemporaryDirectory()
        let engine = try ShardEngine.create(at: directory.path("instance"), shards: 1, options: .testing())
        try engine.put("k", "v")
        for timeout in [-1, -.infinity, .infinity, .nan] as [Double] {
            XCTAssertThrowsError(try engine.waitForBackgroundWork(timeoutSeconds: timeout), "timeout \(timeout)") { error in
                XCTAssertEqual((error as? ShardDBError)?.code, .invalidArgument)
            }
        }
        XCTAssertEqual(try engine.getString("k"), "v")
        // The largest finite timeouts mean "for ever" (a year): they used to trap converting to a Duration.
        for timeout in [1e16, .greatestFiniteMagnitude] as [Double] {
            XCTAssertTrue(try engine.waitForBackgroundWork(timeoutSeconds: timeout), "timeout \(timeout)")
        }
        engine.close()
        XCTAssertThrowsError(try engine.waitForBackgroundWork(timeoutSeconds: 1)) { error in
            XCTAssertEqual((error as? ShardDBError)?.code, .closed)
        }
    }
}
