import CCRC32C
import Foundation

/// CRC-32C (Castagnoli), the checksum of bulk and changelog chunks on the wire.
///
/// The transport checks every byte it streams, several times per chunk, so
/// this uses the CPU's CRC32 instruction (Sources/CCRC32C; a slicing-by-8
/// table where there is none): a table-driven loop in Swift cost more than
/// the copying around it.
struct CRC32C {
    private(set) var value: UInt32 = 0xFFFF_FFFF

    var checksum: UInt32 { ~value }

    /// True when the CPU's instruction computes it.
    static var isHardware: Bool { sharddb_crc32c_is_hardware() != 0 }

    mutating func update(_ bytes: UnsafeRawBufferPointer) {
        guard let base = bytes.baseAddress else { return }
        value = sharddb_crc32c_update(value, base, bytes.count)
    }

    mutating func update(_ bytes: some ContiguousBytes) {
        bytes.withUnsafeBytes { update($0) }
    }

    mutating func update(littleEndian number: UInt64) {
        withUnsafeBytes(of: number.littleEndian) { update($0) }
    }

    mutating func update(littleEndian number: UInt32) {
        withUnsafeBytes(of: number.littleEndian) { update($0) }
    }
}
