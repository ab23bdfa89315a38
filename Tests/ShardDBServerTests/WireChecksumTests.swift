import CCRC32C
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
}
