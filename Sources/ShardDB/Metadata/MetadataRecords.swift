import Foundation

/// The records of the metadata column family (`sharddb-meta`), stored as JSON
/// so they can be read with RocksDB's own `ldb` (docs/FORMAT.md).
enum MetadataKey {
    static let format = "format"
    static let instance = "instance"
    static let partitioning = "partitioning"
    static let shardPrefix = "shard/"
    static let statsPrefix = "stats/"

    static func shard(_ id: Int) -> String { shardPrefix + pad(id) }
    static func stats(_ id: Int) -> String { statsPrefix + pad(id) }

    private static func pad(_ id: Int) -> String {
        let digits = String(id)
        return String(repeating: "0", count: max(0, 10 - digits.count)) + digits
    }
}

struct FormatRecord: Codable, Equatable {
    /// Version 1: this layout. A newer version is refused with `.unsupportedFormat`.
    var version: Int
    static let current = 1
}

struct InstanceRecord: Codable, Equatable {
    /// A random id, fixed at creation; names this instance to its peers.
    var id: String
    var createdAtMilliseconds: Int64
}

struct PartitioningRecord: Codable, Equatable {
    var scheme: String
    var keyGroups: Int?
    var splitPoints: [String]?  // hex

    init(_ partitioning: Partitioning) {
        switch partitioning {
        case .hash(let k): scheme = "hash"; keyGroups = k; splitPoints = nil
        case .range(let s): scheme = "range"; keyGroups = nil; splitPoints = s.map { ByteText.hex($0) }
        }
    }

    func decode() throws -> Partitioning {
        switch scheme {
        case "hash":
            guard let k = keyGroups else { throw MetadataError("hash partitioning without keyGroups") }
            return .hash(keyGroups: k)
        case "range":
            let splits = try (splitPoints ?? []).map { hex in
                guard let bytes = ByteText.unhex(hex) else { throw MetadataError("bad split point \(hex)") }
                return bytes
            }
            return .range(splitPoints: splits)
        default:
            throw MetadataError("unknown partitioning scheme \(scheme)")
        }
    }
}

struct ShardRecord: Codable, Equatable {
    var id: Int
    var keyGroups: [Int]?   // [lower, upper)
    var lower: String?      // hex, range partitioning
    var upper: String?      // hex; absent: unbounded
    var state: String       // "active" | "moved"
    var movedTo: String?
    var defaultTTLSeconds: Int64?

    init(_ shard: ShardDescriptor) {
        id = shard.id
        switch shard.range {
        case .keyGroups(let r): keyGroups = [r.lowerBound, r.upperBound]
        case let .keys(l, u): lower = ByteText.hex(l); upper = u.map { ByteText.hex($0) }
        }
        switch shard.state {
        case .active: state = "active"
        case .moved(let to): state = "moved"; movedTo = to
        }
        defaultTTLSeconds = shard.defaultTTLSeconds
    }

    func decode() throws -> ShardDescriptor {
        guard (0...ShardDescriptor.maxID).contains(id) else {
            throw MetadataError("shard id \(id) is out of range (0...\(ShardDescriptor.maxID))")
        }
        let range: ShardRange
        if let kg = keyGroups {
            guard kg.count == 2, kg[0] >= 0, kg[0] <= kg[1], kg[1] <= Partitioning.maxKeyGroups else {
                throw MetadataError("shard \(id): bad key-group range \(kg)")
            }
            range = .keyGroups(KeyGroupRange(kg[0], kg[1]))
        } else if let lower, let l = ByteText.unhex(lower) {
            var u: [UInt8]? = nil
            if let upper {
                guard let parsed = ByteText.unhex(upper) else { throw MetadataError("shard \(id): bad upper bound") }
                u = parsed
            }
            range = .keys(lower: l, upper: u)
        } else {
            throw MetadataError("shard \(id): no range")
        }
        let shardState: ShardState
        switch (state, movedTo) {
        case ("active", _): shardState = .active
        case ("moved", let to?): shardState = .moved(to: to)
        default: throw MetadataError("shard \(id): unknown state \(state)")
        }
        if let ttl = defaultTTLSeconds, !(1...(Int64.max / 1000)).contains(ttl) {
            throw MetadataError("shard \(id): default TTL \(ttl) s is out of range (1...\(Int64.max / 1000))")
        }
        return ShardDescriptor(id: id, range: range, state: shardState, defaultTTLSeconds: defaultTTLSeconds)
    }
}

struct ShardStatsRecord: Codable, Equatable {
    /// Entries the expiry compaction filter dropped, across all opens.
    var expiredDropped: Int
}

struct MetadataError: Error {
    let message: String
    init(_ message: String) { self.message = message }
}

enum MetadataCoding {
    static func encode<T: Encodable>(_ value: T) -> [UInt8] {
        let encoder = JSONEncoder()
        encoder.outputFormatting = [.sortedKeys]
        // Encoding these plain records cannot fail.
        return Array(try! encoder.encode(value))
    }

    static func decode<T: Decodable>(_ type: T.Type, _ bytes: [UInt8], key: String) throws -> T {
        do {
            return try JSONDecoder().decode(type, from: Data(bytes))
        } catch {
            throw MetadataError("record '\(key)' is not valid: \(error)")
        }
    }
}
