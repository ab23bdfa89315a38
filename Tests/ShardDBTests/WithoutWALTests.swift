@testable import ShardDB
import XCTest

/// Without the write-ahead log the shards flush together (RocksDB's atomic_flush),
/// unless pipelined writes are asked for, which RocksDB does not allow beside it.
/// (CrashTests kills an import without the log to check what survives.)
final class WithoutWALTests: XCTestCase {
    func testOnlyAnEngineWithoutTheLogFlushesItsShardsTogether() throws {
        var options = ShardEngineOptions.testing()
        XCTAssertFalse(try ShardEngine.baseOptions(options).atomicFlush)
        options.disableWAL = true
        XCTAssertTrue(try ShardEngine.baseOptions(options).atomicFlush)
        options.rocksDBOptions = "enable_pipelined_write=true"
        XCTAssertFalse(try ShardEngine.baseOptions(options).atomicFlush)
    }

    func testAnEngineWithoutTheLogWritesFlushesAndReopens() throws {
        let dir = TemporaryDirectory()
        for pipelined in [false, true] {
            var options = ShardEngineOptions.testing()
            options.disableWAL = true
            if pipelined { options.rocksDBOptions = "enable_pipelined_write=true" }
            let path = dir.path("engine-\(pipelined)")
            var engine = try ShardEngine.create(at: path, shards: 3, options: options)
            try engine.write { batch in for i in 0..<30 { try batch.put(Array("k\(i)".utf8), Array("v\(i)".utf8)) } }
            try engine.flush()
            engine.close()
            engine = try ShardEngine.open(at: path, options: options)
            XCTAssertEqual(try engine.contents().count, 30, "pipelined: \(pipelined)")
            engine.close()
        }
    }
}
