import RocksDB
@testable import ShardDB
import XCTest

/// After a write failed with an I/O error, Debian's librocksdb aborts the
/// process on the next write to the same log, so the engine refuses every
/// later write until it is reopened: its own bookkeeping writes too (shard
/// records, the migration journal, the metrics saved at close), not only the
/// application's. The failure is recorded by hand here: a real one needs a full
/// disk and, without the reserve, may abort the process (DiskFullTests).
final class WriteFailureLatchTests: XCTestCase {
    func testAfterAFailedWriteBookkeepingWritesAreRefusedAndCloseWritesNothing() throws {
        let directory = TemporaryDirectory()
        let path = directory.path("instance")
        let engine = try ShardEngine.create(at: path, shards: 2, options: .testing())
        try engine.put("kept", "value")
        engine.diskSpace.record(ShardDBError(.storage, "\(path): IO error: No space left on device",
                                             storage: RocksDBError(kind: .ioError, message: "IO error: No space left on device")))
        let writes: [(String, () throws -> Void)] = [
            ("put", { try engine.put("new", "value") }),
            ("batch", { try engine.write { try $0.put("new", "value") } }),
            ("default TTL", { try engine.setDefaultTTL(shard: 0, seconds: 60) }),
            // The log sync a migration endpoint runs before it answers another process.
            ("log sync", { try engine.syncWAL(through: .max) }),
        ]
        for (name, write) in writes {
            XCTAssertThrowsError(try write(), name) { error in
                let error = error as? ShardDBError
                XCTAssertEqual(error?.code, .storage, name)
                XCTAssertTrue(error?.message.contains("an earlier write failed") == true, "\(name): \(String(describing: error))")
            }
        }
        XCTAssertEqual(try engine.getString("kept"), "value", "reads go on")
        let sequence = try engine.latestSequenceNumber()
        engine.close()

        let reopened = try ShardEngine.open(at: path, options: .testing())
        defer { reopened.close() }
        XCTAssertEqual(try reopened.latestSequenceNumber(), sequence, "nothing was written after the failure, at close neither")
        XCTAssertEqual(try reopened.getString("kept"), "value")
        XCTAssertNil(try reopened.get("new"))
        XCTAssertNil(reopened.shardDescriptors.first { $0.id == 0 }?.defaultTTLSeconds)
        try reopened.put("after", "reopening")
    }
}
