/// The header in front of every stored value (docs/FORMAT.md):
///
/// ```
/// byte 0      format version (1)
/// byte 1      flags: bit 0 = expiry present; other bits must be 0
/// bytes 2..9  expiry, milliseconds since the Unix epoch, big-endian (only with bit 0)
/// rest        the user's value
/// ```
///
/// Absolute expiry (not a duration) means a value expires at the same instant
/// wherever it is copied: reopen, checkpoint, restore, migration.
public struct ValueHeader: Sendable, Equatable {
    public static let version: UInt8 = 1
    static let expiryFlag: UInt8 = 1
    static let knownFlags: UInt8 = expiryFlag

    /// Milliseconds since the Unix epoch at which the value expires; nil: never.
    public var expiresAtMilliseconds: Int64?

    public init(expiresAtMilliseconds: Int64? = nil) {
        self.expiresAtMilliseconds = expiresAtMilliseconds
    }

    /// Encoded size of this header.
    @inline(__always)
    public var encodedSize: Int { expiresAtMilliseconds == nil ? 2 : 10 }

    /// Writes the header at the start of `buffer` (at least ``encodedSize`` bytes).
    @inline(__always)
    public func encode(into buffer: UnsafeMutableRawBufferPointer) {
        buffer[0] = Self.version
        if let expiry = expiresAtMilliseconds {
            buffer[1] = Self.expiryFlag
            buffer.storeBytes(of: UInt64(bitPattern: expiry).bigEndian, toByteOffset: 2, as: UInt64.self)
        } else {
            buffer[1] = 0
        }
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
        if stored[1] & expiryFlag != 0 {
            guard stored.count >= 10 else { return nil }
            let expiry = Int64(bitPattern: UInt64(bigEndian: stored.loadUnaligned(fromByteOffset: 2, as: UInt64.self)))
            return (ValueHeader(expiresAtMilliseconds: expiry), UnsafeRawBufferPointer(rebasing: stored[10...]))
        }
        return (ValueHeader(), UnsafeRawBufferPointer(rebasing: stored[2...]))
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
