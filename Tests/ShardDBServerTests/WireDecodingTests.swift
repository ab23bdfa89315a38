import Foundation
import ShardDB
@testable import ShardDBServer
import XCTest

/// What a hostile or broken server answers is refused as malformed on the
/// client, before a planner indexes arrays with it.
final class WireDecodingTests: XCTestCase {
    private func description(keyGroups: UInt32, shardRange: (UInt32, UInt32)) -> WireInstanceDescription {
        .with {
            $0.instanceID = "peer"
            $0.location = "127.0.0.1:1"
            $0.partitioning = .with { $0.hashKeyGroups = keyGroups }
            $0.shards = [.with { shard in
                shard.id = 0
                shard.range = .with { $0.keyGroups = .with { $0.lower = shardRange.0; $0.upper = shardRange.1 } }
            }]
        }
    }

    func testAnInstanceDescriptionOutsideItsOwnPartitioningIsMalformed() throws {
        // 2^32 - 1 key groups (a planner would allocate 68 GB), 0 key groups, and a
        // shard past the instance's key groups (a planner indexed out of bounds).
        for (groups, range) in [(UInt32.max, (UInt32(0), UInt32(4096))), (0, (0, 1)), (100, (0, 4096))] {
            XCTAssertThrowsError(try description(keyGroups: groups, shardRange: range).decoded(), "\(groups) \(range)") { error in
                XCTAssertEqual((error as? ShardDBError)?.code, .invalidArgument, "\(error)")
                XCTAssertTrue((error as? ShardDBError)?.message.contains("malformed") == true, "\(error)")
            }
        }
        let fine = try description(keyGroups: 4096, shardRange: (0, 4096)).decoded()
        XCTAssertEqual(fine.partitioning, .hash(keyGroups: 4096))
        XCTAssertEqual(fine.shards.map(\.range), [.keyGroups(KeyGroupRange(0, 4096))])
    }

    func testARateOfZeroIsOneBytePerSecond() {
        XCTAssertEqual(ByteRate(bytesPerSecond: 0).bytesPerSecond, 1)
        XCTAssertEqual(ByteRate(bytesPerSecond: -5).bytesPerSecond, 1)
        XCTAssertEqual(ByteRate(bytesPerSecond: 200_000_000).bytesPerSecond, 200_000_000)
    }

    /// A change record's sequence past RocksDB's largest (a broken source) is
    /// malformed where the coordinator reads it; cutting such a chunk into
    /// message parts once trapped on `sequence + 1`.
    func testAChangeSequencePastRocksDBsIsMalformed() throws {
        func record(_ sequence: UInt64) -> ChangeRecord {
            ChangeRecord(sequence: sequence, shard: 0, operation: .put, storedKey: [0, 1, 65], value: [1, 0, 66], key: [65])
        }
        let chunk = WireChangeChunk.with {
            $0.records = [WireChangeRecord(record(.max)), WireChangeRecord(record(1))]
            $0.nextSequence = 2
            $0.latestSequence = 2
            $0.last = true
        }.sealed()
        XCTAssertThrowsError(try chunk.decodedRecords()) { error in
            XCTAssertEqual((error as? ShardDBError)?.code, .invalidArgument, "\(error)")
            XCTAssertTrue((error as? ShardDBError)?.message.contains("past RocksDB's largest") == true, "\(error)")
        }
        let largest = WireChangeChunk.with { $0.records = [WireChangeRecord(record((1 << 56) - 1))]; $0.nextSequence = 1 << 56 }.sealed()
        XCTAssertEqual(try largest.decodedRecords().map(\.sequence), [(1 << 56) - 1])
        let parts = RemoteInstance.messageParts(of: ChangeChunk(records: [record(.max), record(1)], nextSequence: 2, latestSequence: 2),
                                                maxBytes: 1)
        XCTAssertEqual(parts.count, 2)
    }
}
