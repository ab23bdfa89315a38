import CCRC32C
import Foundation
import ShardDB
import SwiftProtobuf
@testable import ShardDBServer
import XCTest

/// The chunk checksum is the standard CRC-32C, whichever implementation the CPU gets.
final class WireChecksumTests: XCTestCase {
    func testKnownVectorsAndPiecewiseUpdates() {
        var crc = CRC32C()
        crc.update(Array("123456789".utf8))
        XCTAssertEqual(crc.checksum, 0xE306_9283)  // the CRC-32C check value

        var empty = CRC32C()
        empty.update([UInt8]())
        XCTAssertEqual(empty.checksum, 0)

        // Any split of the input gives the same result (unaligned heads and odd tails included).
        let bytes = (0..<1000).map { UInt8(truncatingIfNeeded: $0 &* 31 &+ 7) }
        var whole = CRC32C()
        whole.update(bytes)
        for split in [1, 3, 7, 8, 9, 500, 999] {
            var parts = CRC32C()
            parts.update(Array(bytes[..<split]))
            parts.update(Array(bytes[split...]))
            XCTAssertEqual(parts.checksum, whole.checksum, "split at \(split)")
        }
        print("CRC-32C uses the CPU's instruction: \(CRC32C.isHardware)")
    }

    /// Inputs of three lanes (12 KiB) and more go through the CPU's instruction
    /// three lanes at a time, joined by a shift table: every length around the
    /// lane boundaries, from any register, gives what the table-driven loop gives.
    func testTheThreeLaneLoopAgreesWithTheTableDrivenOne() {
        var seed: UInt64 = 0x9E37_79B9_7F4A_7C15
        let bytes = (0..<200_000).map { _ -> UInt8 in
            seed = seed &* 6_364_136_223_846_793_005 &+ 1_442_695_040_888_963_407
            return UInt8(truncatingIfNeeded: seed >> 33)
        }
        let lane = 4096
        var lengths = [0, 1, 7, 8, 100, 3 * lane - 1, 3 * lane, 3 * lane + 1, 3 * lane + 9, 6 * lane, 6 * lane + 5, 199_999, 200_000]
        lengths += (0..<40).map { 3 * lane * ($0 % 5) + $0 * 37 }
        bytes.withUnsafeBytes { all in
            for length in lengths {
                for (offset, register) in [(0, UInt32.max), (3, 0), (1, 0x1234_5678)] where offset + length <= all.count {
                    let base = all.baseAddress! + offset
                    XCTAssertEqual(sharddb_crc32c_update(register, base, length), sharddb_crc32c_update_software(register, base, length),
                                   "\(length) bytes at offset \(offset) from \(register)")
                }
            }
        }
    }

    /// The fields that say where a copy or catch-up stands are checked too: a
    /// flipped `done` ended a bulk copy early with keys missing, a damaged next
    /// sequence moved the target's applied position past unapplied changes.
    /// A sender that predates the check (its field 0) is still taken.
    func testControlFieldsOfChunksAreChecked() throws {
        let bulk = try BulkChunk(data: Data("k1v1".utf8), keyLengths: [2], valueLengths: [2], lastKey: Array("k1".utf8), done: false)
        let wire = WireBulkChunk(bulk)
        XCTAssertEqual(try wire.decoded(), bulk)
        var flipped = wire
        flipped.done = true
        var moved = wire
        moved.lastKey = Data("k0".utf8)
        var dropped = wire
        dropped.clearLastKey()
        for (name, damaged) in [("done", flipped), ("last key", moved), ("no last key", dropped)] {
            XCTAssertThrowsError(try damaged.decoded(), name) { error in
                XCTAssertEqual((error as? ShardDBError)?.code, .corruptedValue, "\(name): \(error)")
            }
        }
        var old = flipped
        old.controlCrc32C = 0
        XCTAssertTrue(try old.decoded().done, "an older sender's chunk is taken unchecked")

        let record = ChangeRecord(sequence: 7, shard: 0, operation: .put, storedKey: [0, 1, 65], value: [1, 0, 66], key: [65])
        let changes = WireChangeChunk.with {
            $0.records = [WireChangeRecord(record)]
            $0.nextSequence = 8
            $0.latestSequence = 9
            $0.last = true
        }.sealed()
        XCTAssertEqual(try changes.decodedRecords().map(\.sequence), [7])
        var ahead = changes
        ahead.nextSequence = 1 << 40
        var notLast = changes
        notLast.last = false
        for (name, damaged) in [("next sequence", ahead), ("last", notLast)] {
            XCTAssertThrowsError(try damaged.decodedRecords(), name) { error in
                XCTAssertEqual((error as? ShardDBError)?.code, .corruptedValue, "\(name): \(error)")
            }
        }
        var older = ahead
        older.controlCrc32C = 0
        XCTAssertNoThrow(try older.decodedRecords())
        // Through the wire encoding and back.
        XCTAssertEqual(try WireChangeChunk(serializedBytes: try changes.serializedBytes() as [UInt8]), changes)
        XCTAssertEqual(try WireBulkChunk(serializedBytes: try wire.serializedBytes() as [UInt8]), wire)
    }

    /// A chunk bigger than the longest wait's worth of the rate waits that long, not
    /// its size over the rate: it used to wait past every call's deadline, and each
    /// retry added its bytes to the debt the next one waited for.
    func testTheRateLimiterWaitsAtMostItsLongestWait() async throws {
        let limiter = BulkRateLimiter(ByteRate(bytesPerSecond: 1000), longestWaitSeconds: 0.2)
        let clock = ContinuousClock()
        let burst = try await clock.measure { try await limiter.acquire(1000) }
        XCTAssertLessThan(burst, .milliseconds(100), "a second's worth goes at once")
        let big = try await clock.measure { try await limiter.acquire(1_000_000) }   // 1000 s at the rate
        XCTAssertGreaterThanOrEqual(big, .milliseconds(150))
        XCTAssertLessThan(big, .seconds(5))
        for _ in 0..<3 {
            let next = try await clock.measure { try await limiter.acquire(1_000_000) }
            XCTAssertLessThan(next, .seconds(5), "the debt does not pile up")
        }
    }

    /// A chunk stops once it reaches its size, so it can run one entry past it, and
    /// its length lists grow with its entries. At the cap between processes, the
    /// worst case (the smallest stored entries, 5 bytes, then the largest one) still
    /// fits a message: at 32 MiB it did not, and such a chunk was refused on every retry.
    func testABulkChunkAtTheCapFitsOneMessage() throws {
        let cap = MigrationServer.largestBulkChunkBytes
        let small = cap / 5
        let bigKey = ShardEngine.maxKeySize + 2, bigValue = ShardEngine.maxValueSize + 18  // (the largest value header)
        var data = Data(count: small * 5 + bigKey + bigValue)
        data[0] = 1
        let chunk = try BulkChunk(data: data, keyLengths: [UInt32](repeating: 3, count: small) + [UInt32(bigKey)],
                                  valueLengths: [UInt32](repeating: 2, count: small) + [UInt32(bigValue)],
                                  lastKey: [UInt8](repeating: 0xFF, count: bigKey), done: false)
        let plan = MigrationPlan(id: String(repeating: "m", count: 64), sourceInstance: "s", targetInstance: "t",
                                 sourceLocation: String(repeating: "h", count: 255), targetLocation: String(repeating: "h", count: 255),
                                 sourceShard: 0, range: .keyGroups(KeyGroupRange(0, 65536)), shape: .newShard, targetShard: 0)
        let request = WireApplyBulkRequest.with { $0.plan = WireMigrationPlan(plan); $0.chunk = WireBulkChunk(chunk) }
        let size = (try request.serializedBytes() as [UInt8]).count
        XCTAssertLessThanOrEqual(size + 5, MigrationServer.maxMessageBytes, "\(size) bytes with the gRPC prefix")
    }
}
