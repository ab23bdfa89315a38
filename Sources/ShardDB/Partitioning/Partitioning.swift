/// How keys are assigned to shards; fixed when an instance is created.
public enum Partitioning: Sendable, Equatable, CustomStringConvertible {
    /// Keys are hashed (``KeyHash``) into `keyGroups` key groups; each shard owns
    /// a contiguous range of key groups. Stored keys carry their key group as a
    /// 2-byte big-endian prefix, so a key-group range is one byte range.
    case hash(keyGroups: Int)
    /// Shards own ranges of raw keys separated by these sorted split points;
    /// stored keys are the raw keys, so ordered scans across shards work.
    case range(splitPoints: [[UInt8]])

    /// Flink's default number of key groups.
    public static let defaultKeyGroups = 4096
    /// Key groups are stored in two bytes.
    public static let maxKeyGroups = 65536

    public var description: String {
        switch self {
        case .hash(let k): return "hash(\(k) key groups)"
        case .range(let splits): return "range(\(splits.count) split points)"
        }
    }

    /// The same scheme, ignoring split points (instances with different splits can still exchange ranges).
    func isCompatible(with other: Partitioning) -> Bool {
        switch (self, other) {
        case let (.hash(a), .hash(b)): return a == b
        case (.range, .range): return true
        default: return false
        }
    }

    func validate() throws {
        switch self {
        case .hash(let k):
            guard k >= 1 && k <= Self.maxKeyGroups else {
                throw ShardDBError(.invalidArgument, "key groups must be between 1 and \(Self.maxKeyGroups), got \(k)")
            }
        case .range(let splits):
            for split in splits where split.isEmpty {
                throw ShardDBError(.invalidArgument, "split points must not be empty")
            }
            for i in splits.indices.dropFirst() where !(splits[i - 1].lexicographicallyPrecedes(splits[i])) {
                throw ShardDBError(.invalidArgument, "split points must be strictly increasing")
            }
        }
    }
}

/// A half-open range `[lowerBound, upperBound)` of key groups.
public struct KeyGroupRange: Sendable, Hashable, Codable, CustomStringConvertible {
    public var lowerBound: Int
    public var upperBound: Int

    public init(_ lowerBound: Int, _ upperBound: Int) {
        self.lowerBound = lowerBound
        self.upperBound = upperBound
    }

    public var count: Int { upperBound - lowerBound }
    public var isEmpty: Bool { upperBound <= lowerBound }
    public func contains(_ keyGroup: Int) -> Bool { keyGroup >= lowerBound && keyGroup < upperBound }
    public func overlaps(_ other: KeyGroupRange) -> Bool { lowerBound < other.upperBound && other.lowerBound < upperBound }
    public var description: String { "kg[\(lowerBound),\(upperBound))" }
}

/// The keys a shard owns.
public enum ShardRange: Sendable, Equatable, CustomStringConvertible {
    /// Under hash partitioning: every key whose key group is in the range.
    case keyGroups(KeyGroupRange)
    /// Under range partitioning: raw keys in `[lower, upper)`; `upper == nil` is unbounded.
    case keys(lower: [UInt8], upper: [UInt8]?)

    public var description: String {
        switch self {
        case .keyGroups(let r): return r.description
        case let .keys(lower, upper):
            return "keys[\(ByteText.display(lower)),\(upper.map(ByteText.display) ?? "∞"))"
        }
    }

    /// Stored-key bounds `[lower, upper)` of this range in a shard's column family.
    var storedBounds: (lower: [UInt8], upper: [UInt8]?) {
        switch self {
        case .keyGroups(let r):
            return (KeyEncoding.keyGroupPrefix(r.lowerBound), KeyEncoding.keyGroupUpperBound(r.upperBound))
        case let .keys(lower, upper):
            return (lower, upper)
        }
    }

    func overlaps(_ other: ShardRange) -> Bool {
        switch (self, other) {
        case let (.keyGroups(a), .keyGroups(b)): return a.overlaps(b)
        case let (.keys(al, au), .keys(bl, bu)):
            let aBelowB = au.map { !bl.lexicographicallyPrecedes($0) } ?? false  // au <= bl
            let bBelowA = bu.map { !al.lexicographicallyPrecedes($0) } ?? false
            return !(aBelowB || bBelowA)
        default: return false
        }
    }
}

/// What this instance does with a shard's range.
public enum ShardState: Sendable, Equatable, CustomStringConvertible {
    /// Owned and served here.
    case active
    /// Given away: requests for these keys are answered with the new owner.
    case moved(to: String)

    public var description: String {
        switch self {
        case .active: return "active"
        case .moved(let to): return "moved-to-\(to)"
        }
    }
}

/// One shard of an instance, as recorded in its metadata.
public struct ShardDescriptor: Sendable, Equatable {
    public var id: Int
    public var range: ShardRange
    public var state: ShardState
    /// Applied to writes that ask for the shard's default TTL; nil: no expiry.
    public var defaultTTLSeconds: Int64?

    /// The largest shard id an instance stores (ids are 0...maxID): a record or
    /// a peer naming a larger one is corrupt or malformed, and id allocation
    /// (`max + 1`) can never overflow.
    public static let maxID = Int(Int32.max)

    /// The id after every one of `used`: 0 when there is none.
    ///
    /// - throws: `.migrationConflict` when `used` already holds ``maxID``.
    static func nextID(after used: some Sequence<Int>) throws -> Int {
        guard let last = used.max() else { return 0 }
        guard last < maxID else {
            throw ShardDBError(.migrationConflict, "no shard id is left after \(last) (ids go up to \(maxID))")
        }
        return last + 1
    }

    public init(id: Int, range: ShardRange, state: ShardState = .active, defaultTTLSeconds: Int64? = nil) {
        self.id = id
        self.range = range
        self.state = state
        self.defaultTTLSeconds = defaultTTLSeconds
    }

    /// The column family holding the shard's data.
    public var columnFamilyName: String { "shard-\(id)" }
}

/// Printable forms of byte strings: UTF-8 when printable, else hex.
public enum ByteText {
    public static func display(_ bytes: [UInt8]) -> String {
        if let s = String(validating: bytes, as: UTF8.self), s.unicodeScalars.allSatisfy({ $0.value >= 0x20 && $0.value != 0x7f }) {
            return s
        }
        return "0x" + hex(bytes)
    }

    public static func hex(_ bytes: some Sequence<UInt8>) -> String {
        let digits = Array("0123456789abcdef".utf8)
        var out = [UInt8]()
        for b in bytes { out.append(digits[Int(b >> 4)]); out.append(digits[Int(b & 15)]) }
        return String(decoding: out, as: UTF8.self)
    }

    public static func unhex(_ text: some StringProtocol) -> [UInt8]? {
        let chars = Array(text.utf8)
        guard chars.count % 2 == 0 else { return nil }
        var out = [UInt8]()
        out.reserveCapacity(chars.count / 2)
        func nibble(_ c: UInt8) -> UInt8? {
            switch c {
            case 48...57: return c - 48
            case 97...102: return c - 87
            case 65...70: return c - 55
            default: return nil
            }
        }
        var i = 0
        while i < chars.count {
            guard let hi = nibble(chars[i]), let lo = nibble(chars[i + 1]) else { return nil }
            out.append(hi << 4 | lo)
            i += 2
        }
        return out
    }
}
