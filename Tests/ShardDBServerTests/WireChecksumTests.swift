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
}
