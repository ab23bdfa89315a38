/// The header in front of every stored value (docs/FORMAT.md):
///
/// ```
/// byte 0      format version (1)
/// byte 1      flags: bit 0 = expiry present, bit 1 = write time present; other bits must be 0
/// 8 bytes     expiry, milliseconds since the Unix epoch, big-endian (only with bit 0)
/// 8 bytes     write time, milliseconds since the Unix epoch, big-endian (only with bit 1)
/// rest        the user's value
/// ```
///
/// Absolute expiry (not a duration) means a value expires at the same instant
/// wherever it is copied: reopen, checkpoint, restore, migration. The write
/// time (stamped only when ``ShardEngineOptions/stampWriteTime`` is on) travels
/// the same way; last-write-wins migration merges compare it.
public struct ValueHeader: Sendable, Equatable {
    public static let version: UInt8 = 1
    static let expiryFlag: UInt8 = 1
    static let writeTimeFlag: UInt8 = 2
    static let knownFlags: UInt8 = expiryFlag | writeTimeFlag

    /// Milliseconds since the Unix epoch at which the value expires; nil: never.
    public var expiresAtMilliseconds: Int64?
    /// Milliseconds since the Unix epoch at which the value was written; nil:
    /// not stamped (written without ``ShardEngineOptions/stampWriteTime``).
    public var writtenAtMilliseconds: Int64?

    public init(expiresAtMilliseconds: Int64? = nil, writtenAtMilliseconds: Int64? = nil) {
        self.expiresAtMilliseconds = expiresAtMilliseconds
        self.writtenAtMilliseconds = writtenAtMilliseconds
    }

    /// The largest header: version, flags, expiry and write time.
    static let maxEncodedSize = 18

    /// Encoded size of this header.
    @inline(__always)
    public var encodedSize: Int { 2 + (expiresAtMilliseconds == nil ? 0 : 8) + (writtenAtMilliseconds == nil ? 0 : 8) }

    /// Writes the header at the start of `buffer` (at least ``encodedSize`` bytes).
    @inline(__always)
    public func encode(into buffer: UnsafeMutableRawBufferPointer) {
        buffer[0] = Self.version
        var flags: UInt8 = 0
        var offset = 2
        if let expiry = expiresAtMilliseconds {
            flags |= Self.expiryFlag
            buffer.storeBytes(of: UInt64(bitPattern: expiry).bigEndian, toByteOffset: offset, as: UInt64.self)
            offset += 8
        }
        if let written = writtenAtMilliseconds {
            flags |= Self.writeTimeFlag
            buffer.storeBytes(of: UInt64(bitPattern: written).bigEndian, toByteOffset: offset, as: UInt64.self)
        }
        buffer[1] = flags
    }

    /// Decodes the header of a stored value; returns it with the user value.
    ///
    /// - throws: ``ShardDBError`` `.corruptedValue` for an unknown version,
    ///   unknown flags or a truncated header.
    @inline(__always)
    public static func decode(_ stored: UnsafeRawBufferPointer) throws -> (ValueHeader, UnsafeRawBufferPointer) {
        guard let parsed = parse(stored) else {
            throw ShardDBError(.corruptedValue, describeCorruption(stored))
        }
        return parsed
    }

    /// Like ``decode(_:)`` but nil instead of an error (for the compaction filter).
    @inline(__always)
    static func parse(_ stored: UnsafeRawBufferPointer) -> (ValueHeader, UnsafeRawBufferPointer)? {
        guard stored.count >= 2, stored[0] == version, stored[1] & ~knownFlags == 0 else { return nil }
        let flags = stored[1]
        if flags == 0 { return (ValueHeader(), UnsafeRawBufferPointer(rebasing: stored[2...])) }
        var header = ValueHeader()
        var offset = 2
        if flags & expiryFlag != 0 {
            guard stored.count >= offset + 8 else { return nil }
            header.expiresAtMilliseconds = Int64(bitPattern: UInt64(bigEndian: stored.loadUnaligned(fromByteOffset: offset, as: UInt64.self)))
            offset += 8
        }
        if flags & writeTimeFlag != 0 {
            guard stored.count >= offset + 8 else { return nil }
            header.writtenAtMilliseconds = Int64(bitPattern: UInt64(bigEndian: stored.loadUnaligned(fromByteOffset: offset, as: UInt64.self)))
            offset += 8
        }
        return (header, UnsafeRawBufferPointer(rebasing: stored[offset...]))
    }

    static func describeCorruption(_ stored: UnsafeRawBufferPointer) -> String {
        if stored.count < 2 { return "value header truncated (\(stored.count) bytes)" }
        if stored[0] != version { return "value header has unknown version \(stored[0])" }
        if stored[1] & ~knownFlags != 0 { return "value header has unknown flags 0x\(ByteText.hex([stored[1]]))" }
        return "value header truncated (\(stored.count) bytes)"
    }

    /// True when the value is expired at `now` (expiry is inclusive: a value
    /// expiring at T is gone at T).
    @inline(__always)
    public func isExpired(at nowMilliseconds: Int64) -> Bool {
        guard let expiry = expiresAtMilliseconds else { return false }
        return nowMilliseconds >= expiry
    }
}
