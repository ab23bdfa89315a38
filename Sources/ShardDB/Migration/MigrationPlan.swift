import Foundation

/// What a migration moves, from where to where. Built by the coordinator at
/// start and recorded in both instances' journals.
public struct MigrationPlan: Sendable, Equatable, Codable {
    /// What becomes of the range on the target.
    public enum Shape: Sendable, Equatable, Codable {
        /// A new shard on the target owns the range.
        case newShard
        /// An existing target shard, whose range is adjacent, grows to include it.
        case mergeInto(shard: Int)
    }

    public var id: String
    public var sourceInstance: String
    public var targetInstance: String
    /// Where each side can be reached (a directory or host:port), for recovery and for "moved to" answers.
    public var sourceLocation: String
    public var targetLocation: String
    public var sourceShard: Int
    /// The range moved: the whole source shard, or a part at one end of it.
    public var range: ShardRange
    public var shape: Shape
    /// The shard on the target that receives the range (new id, or the merge target).
    public var targetShard: Int
    /// The default TTL a new target shard gets (the source shard's).
    public var defaultTTLSeconds: Int64?

    public init(id: String, sourceInstance: String, targetInstance: String, sourceLocation: String, targetLocation: String,
                sourceShard: Int, range: ShardRange, shape: Shape, targetShard: Int, defaultTTLSeconds: Int64? = nil) {
        self.defaultTTLSeconds = defaultTTLSeconds
        self.id = id
        self.sourceInstance = sourceInstance
        self.targetInstance = targetInstance
        self.sourceLocation = sourceLocation
        self.targetLocation = targetLocation
        self.sourceShard = sourceShard
        self.range = range
        self.shape = shape
        self.targetShard = targetShard
    }
}

extension ShardRange: Codable {
    private enum CodingKeys: String, CodingKey { case keyGroups, lower, upper }

    public init(from decoder: Decoder) throws {
        let c = try decoder.container(keyedBy: CodingKeys.self)
        if let kg = try c.decodeIfPresent([Int].self, forKey: .keyGroups) {
            guard kg.count == 2 else { throw DecodingError.dataCorruptedError(forKey: .keyGroups, in: c, debugDescription: "need [lower, upper]") }
            self = .keyGroups(KeyGroupRange(kg[0], kg[1]))
        } else {
            let lower = try c.decode(String.self, forKey: .lower)
            let upper = try c.decodeIfPresent(String.self, forKey: .upper)
            guard let l = ByteText.unhex(lower) else { throw DecodingError.dataCorruptedError(forKey: .lower, in: c, debugDescription: "not hex") }
            var u: [UInt8]? = nil
            if let upper {
                guard let parsed = ByteText.unhex(upper) else { throw DecodingError.dataCorruptedError(forKey: .upper, in: c, debugDescription: "not hex") }
                u = parsed
            }
            self = .keys(lower: l, upper: u)
        }
    }

    public func encode(to encoder: Encoder) throws {
        var c = encoder.container(keyedBy: CodingKeys.self)
        switch self {
        case .keyGroups(let r): try c.encode([r.lowerBound, r.upperBound], forKey: .keyGroups)
        case let .keys(lower, upper):
            try c.encode(ByteText.hex(lower), forKey: .lower)
            try c.encodeIfPresent(upper.map { ByteText.hex($0) }, forKey: .upper)
        }
    }
}

extension ShardRange {
    /// `self` minus `part`, when `part` sits at one end of `self` (nil when `part` is all of it).
    ///
    /// - throws: `.migrationConflict` when `part` is not inside `self` or is in the middle.
    func removing(_ part: ShardRange) throws -> ShardRange? {
        if part == self { return nil }
        switch (self, part) {
        case let (.keyGroups(whole), .keyGroups(p)):
            guard p.lowerBound >= whole.lowerBound, p.upperBound <= whole.upperBound, !p.isEmpty else { break }
            if p.lowerBound == whole.lowerBound { return .keyGroups(KeyGroupRange(p.upperBound, whole.upperBound)) }
            if p.upperBound == whole.upperBound { return .keyGroups(KeyGroupRange(whole.lowerBound, p.lowerBound)) }
            throw ShardDBError(.migrationConflict, "range \(part) is in the middle of \(self); move a range at one end of a shard")
        case let (.keys(wl, wu), .keys(pl, pu)):
            let startsInside = !pl.lexicographicallyPrecedes(wl)
            let endsInside: Bool
            switch (wu, pu) {
            case (nil, _): endsInside = true
            case (.some, nil): endsInside = false
            case let (w?, p?): endsInside = !w.lexicographicallyPrecedes(p)
            }
            guard startsInside, endsInside else { break }
            if pl == wl, let pu { return .keys(lower: pu, upper: wu) }
            if pu == wu { return .keys(lower: wl, upper: pl) }
            throw ShardDBError(.migrationConflict, "range \(part) is in the middle of \(self); move a range at one end of a shard")
        default: break
        }
        throw ShardDBError(.migrationConflict, "range \(part) is not inside the shard's range \(self)")
    }

    /// The union of two adjacent ranges, or nil when they do not touch.
    func merged(with other: ShardRange) -> ShardRange? {
        switch (self, other) {
        case let (.keyGroups(a), .keyGroups(b)):
            if a.upperBound == b.lowerBound { return .keyGroups(KeyGroupRange(a.lowerBound, b.upperBound)) }
            if b.upperBound == a.lowerBound { return .keyGroups(KeyGroupRange(b.lowerBound, a.upperBound)) }
            return nil
        case let (.keys(al, au), .keys(bl, bu)):
            if au == bl { return .keys(lower: al, upper: bu) }
            if bu == al { return .keys(lower: bl, upper: au) }
            return nil
        default: return nil
        }
    }
}
