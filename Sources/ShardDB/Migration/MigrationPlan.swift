import Foundation

/// What a merge does with a key that both the source and the target shard hold
/// live when the moved range overlaps the merge target's own range
/// (docs/MIGRATION.md, "Overlapping merges"). The raw values are the CLI's spellings.
public enum MigrationConflictPolicy: String, Sendable, Codable, CaseIterable {
    /// A range that overlaps a target shard is refused before anything is copied (the default).
    case refuse
    /// The source's value replaces the target's.
    case sourceWins = "source-wins"
    /// The target keeps its value.
    case targetWins = "target-wins"
    /// The value with the later write time (``ValueHeader/writtenAtMilliseconds``)
    /// wins; a stamped value beats an unstamped one, the target keeps its value on
    /// a tie, and a key stamped on neither side fails the migration.
    case lastWriteWins = "last-write-wins"
}

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

    /// Names the migration in both journals and in file names (its export and import
    /// folders): 1–64 letters, digits, `-` and `_` (``checkID(_:)``).
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
    /// How keys held on both sides are settled; nil (journals from before
    /// policies existed) means ``MigrationConflictPolicy/refuse``.
    public var onConflict: MigrationConflictPolicy?
    /// The part of `range` the merge target already owns: staged apart and
    /// merged key by key under `onConflict` at commit. Nil: no overlap.
    public var overlap: ShardRange?

    public var conflictPolicy: MigrationConflictPolicy { onConflict ?? .refuse }

    public init(id: String, sourceInstance: String, targetInstance: String, sourceLocation: String, targetLocation: String,
                sourceShard: Int, range: ShardRange, shape: Shape, targetShard: Int, defaultTTLSeconds: Int64? = nil,
                onConflict: MigrationConflictPolicy? = nil, overlap: ShardRange? = nil) {
        self.defaultTTLSeconds = defaultTTLSeconds
        self.onConflict = onConflict
        self.overlap = overlap
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

extension MigrationPlan {
    /// Refuses a migration id that is not 1–64 letters, digits, `-` or `_`: the id
    /// names folders (`migration-export/<id>`), so it must never be a path.
    ///
    /// - throws: `.invalidArgument`.
    public static func checkID(_ id: String) throws {
        guard (1...64).contains(id.utf8.count),
              id.utf8.allSatisfy({ $0 == UInt8(ascii: "-") || $0 == UInt8(ascii: "_") || (48...57).contains($0)
                                   || (65...90).contains($0) || (97...122).contains($0) }) else {
            throw ShardDBError(.invalidArgument, "migration id '\(id.prefix(80))' is not 1-64 letters, digits, '-' or '_'")
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

    /// The union of two ranges that overlap or touch, or nil when there is a gap between them.
    func union(with other: ShardRange) -> ShardRange? {
        switch (self, other) {
        case let (.keyGroups(a), .keyGroups(b)):
            guard a.lowerBound <= b.upperBound, b.lowerBound <= a.upperBound else { return nil }
            return .keyGroups(KeyGroupRange(min(a.lowerBound, b.lowerBound), max(a.upperBound, b.upperBound)))
        case let (.keys(al, au), .keys(bl, bu)):
            let aReachesB = au.map { !$0.lexicographicallyPrecedes(bl) } ?? true  // au >= bl
            let bReachesA = bu.map { !$0.lexicographicallyPrecedes(al) } ?? true
            guard aReachesB, bReachesA else { return nil }
            let upper: [UInt8]?
            if let au, let bu { upper = au.lexicographicallyPrecedes(bu) ? bu : au } else { upper = nil }
            return .keys(lower: al.lexicographicallyPrecedes(bl) ? al : bl, upper: upper)
        default: return nil
        }
    }

    /// The keys both ranges cover, or nil when they are disjoint.
    func intersection(_ other: ShardRange) -> ShardRange? {
        switch (self, other) {
        case let (.keyGroups(a), .keyGroups(b)):
            let common = KeyGroupRange(max(a.lowerBound, b.lowerBound), min(a.upperBound, b.upperBound))
            return common.isEmpty ? nil : .keyGroups(common)
        case let (.keys(al, au), .keys(bl, bu)):
            let lower = al.lexicographicallyPrecedes(bl) ? bl : al
            let upper: [UInt8]?
            switch (au, bu) {
            case (nil, let x), (let x, nil): upper = x
            case let (x?, y?): upper = x.lexicographicallyPrecedes(y) ? x : y
            }
            if let upper, !lower.lexicographicallyPrecedes(upper) { return nil }
            return .keys(lower: lower, upper: upper)
        default: return nil
        }
    }

    /// `self` without the keys of `other`: zero, one or two ranges.
    func subtracting(_ other: ShardRange) -> [ShardRange] {
        guard let common = intersection(other) else { return [self] }
        switch (self, common) {
        case let (.keyGroups(a), .keyGroups(c)):
            return [KeyGroupRange(a.lowerBound, c.lowerBound), KeyGroupRange(c.upperBound, a.upperBound)]
                .filter { !$0.isEmpty }.map { .keyGroups($0) }
        case let (.keys(al, au), .keys(cl, cu)):
            var pieces: [ShardRange] = []
            if al.lexicographicallyPrecedes(cl) { pieces.append(.keys(lower: al, upper: cl)) }
            if let cu, au.map({ cu.lexicographicallyPrecedes($0) }) ?? true { pieces.append(.keys(lower: cu, upper: au)) }
            return pieces
        default: return [self]
        }
    }

    /// True when the stored key lies in this range's stored bounds.
    @inline(__always)
    func containsStored(_ storedKey: some Collection<UInt8>) -> Bool {
        Self.stored(storedKey, within: storedBounds)
    }

    /// True when the stored key lies within `bounds` (a range's ``storedBounds``,
    /// computed once for a loop instead of once per key).
    @inline(__always)
    static func stored(_ storedKey: some Collection<UInt8>, within bounds: (lower: [UInt8], upper: [UInt8]?)) -> Bool {
        !storedKey.lexicographicallyPrecedes(bounds.lower) && (bounds.upper.map { storedKey.lexicographicallyPrecedes($0) } ?? true)
    }
}
