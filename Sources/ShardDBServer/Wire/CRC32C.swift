import Foundation

/// CRC-32C (Castagnoli), the checksum of bulk and changelog chunks on the wire.
///
/// Slicing-by-8 in software: the transport checks every byte it streams, and a
/// table-driven loop keeps that well under the cost of reading the data.
struct CRC32C {
    private(set) var value: UInt32 = 0xFFFF_FFFF

    var checksum: UInt32 { ~value }

    mutating func update(_ bytes: UnsafeRawBufferPointer) {
        var crc = value
        var index = 0
        let count = bytes.count
        Self.tables.withUnsafeBufferPointer { t in
            while count - index >= 8 {
                let word = UInt64(littleEndian: bytes.loadUnaligned(fromByteOffset: index, as: UInt64.self))
                let low = UInt32(truncatingIfNeeded: word) ^ crc
                let high = UInt32(truncatingIfNeeded: word >> 32)
                crc = t[7 * 256 + Int(low & 0xFF)] ^ t[6 * 256 + Int((low >> 8) & 0xFF)]
                    ^ t[5 * 256 + Int((low >> 16) & 0xFF)] ^ t[4 * 256 + Int(low >> 24)]
                    ^ t[3 * 256 + Int(high & 0xFF)] ^ t[2 * 256 + Int((high >> 8) & 0xFF)]
                    ^ t[1 * 256 + Int((high >> 16) & 0xFF)] ^ t[Int(high >> 24)]
                index += 8
            }
            while index < count {
                crc = t[Int((crc ^ UInt32(bytes[index])) & 0xFF)] ^ (crc >> 8)
                index += 1
            }
        }
        value = crc
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

    /// Eight tables of 256 entries (slicing-by-8), reflected polynomial 0x82F63B78.
    private static let tables: [UInt32] = {
        var t = [UInt32](repeating: 0, count: 8 * 256)
        for i in 0..<256 {
            var c = UInt32(i)
            for _ in 0..<8 { c = (c & 1) != 0 ? (c >> 1) ^ 0x82F6_3B78 : c >> 1 }
            t[i] = c
        }
        for i in 0..<256 {
            for slice in 1..<8 {
                let previous = t[(slice - 1) * 256 + i]
                t[slice * 256 + i] = (previous >> 8) ^ t[Int(previous & 0xFF)]
            }
        }
        return t
    }()
}
