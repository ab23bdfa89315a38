/// How a user key is stored in a shard's column family (docs/FORMAT.md).
enum KeyEncoding {
    /// The 2-byte big-endian key-group prefix.
    @inline(__always)
    static func keyGroupPrefix(_ keyGroup: Int) -> [UInt8] {
        [UInt8(truncatingIfNeeded: keyGroup >> 8), UInt8(truncatingIfNeeded: keyGroup)]
    }

    /// The exclusive stored-key upper bound of the key groups before `keyGroup`:
    /// its prefix, or nil (unbounded) past the last key group, whose successor
    /// does not fit in two bytes.
    @inline(__always)
    static func keyGroupUpperBound(_ keyGroup: Int) -> [UInt8]? {
        keyGroup >= Partitioning.maxKeyGroups ? nil : keyGroupPrefix(keyGroup)
    }

    /// Calls `body` with the stored form of `key`, built in a temporary
    /// (usually stack) buffer: prefix + key under hash partitioning, the key
    /// itself under range partitioning.
    @inline(__always)
    static func withStoredKey<R>(_ key: UnsafeRawBufferPointer, keyGroup: Int?, _ body: (UnsafeRawBufferPointer) throws -> R) rethrows -> R {
        guard let keyGroup else { return try body(key) }
        return try withUnsafeTemporaryAllocation(byteCount: key.count + 2, alignment: 1) { buffer in
            _ = writePrefix(keyGroup, into: buffer)
            if key.count > 0 {
                UnsafeMutableRawBufferPointer(rebasing: buffer[2...]).copyMemory(from: key)
            }
            return try body(UnsafeRawBufferPointer(buffer))
        }
    }

    /// Writes the prefix of a stored key at the start of `buffer` (at least 2
    /// bytes): the key group's 2 bytes under hash partitioning, nothing under
    /// range partitioning. Returns the bytes written.
    @inline(__always)
    static func writePrefix(_ keyGroup: Int?, into buffer: UnsafeMutableRawBufferPointer) -> UnsafeRawBufferPointer {
        guard let keyGroup else { return UnsafeRawBufferPointer(start: buffer.baseAddress, count: 0) }
        buffer[0] = UInt8(truncatingIfNeeded: keyGroup >> 8)
        buffer[1] = UInt8(truncatingIfNeeded: keyGroup)
        return UnsafeRawBufferPointer(rebasing: buffer[..<2])
    }

    /// The user key inside a stored key (empty for a hashed stored key shorter
    /// than its prefix, which only damaged or foreign data holds: no trap).
    @inline(__always)
    static func userKey(_ stored: UnsafeRawBufferPointer, hashed: Bool) -> UnsafeRawBufferPointer {
        hashed ? UnsafeRawBufferPointer(rebasing: stored[min(2, stored.count)...]) : stored
    }

    /// The smallest byte string greater than every string starting with `prefix`; nil if none (all 0xFF).
    static func prefixSuccessor(_ prefix: [UInt8]) -> [UInt8]? {
        var bytes = prefix
        while let last = bytes.last {
            if last < 0xFF {
                bytes[bytes.count - 1] = last + 1
                return bytes
            }
            bytes.removeLast()
        }
        return nil
    }
}
