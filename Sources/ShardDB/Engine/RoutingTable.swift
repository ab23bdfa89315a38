import RocksDB

/// A shard of an open engine: its descriptor, column family and expiry filter.
final class Shard: @unchecked Sendable {
    // Immutable; a change to a shard builds a new `Shard` and a new routing table.
    let descriptor: ShardDescriptor
    let family: ColumnFamily?
    let expiryFilter: ExpiryFilter?

    init(descriptor: ShardDescriptor, family: ColumnFamily?, expiryFilter: ExpiryFilter?) {
        self.descriptor = descriptor
        self.family = family
        self.expiryFilter = expiryFilter
    }

    var id: Int { descriptor.id }
    var isActive: Bool { descriptor.state == .active }

    func with(_ descriptor: ShardDescriptor) -> Shard {
        Shard(descriptor: descriptor, family: family, expiryFilter: expiryFilter)
    }
}

/// One shard's part of a range delete, in stored-key form.
struct RangePiece {
    let shard: Shard
    let storedLower: [UInt8]
    let storedUpper: [UInt8]
}

/// Where a key lives, decided from an immutable snapshot of the shard map.
/// Replaced as a whole (never mutated) when the shard map changes, so a reader
/// holding one sees a consistent map.
final class RoutingTable: @unchecked Sendable {
    let partitioning: Partitioning
    /// Every shard record, sorted by id.
    let shards: [Shard]
    /// `shards` without reference counts, for lookups on the hot paths.
    private let unretainedShards: [Unmanaged<Shard>]
    /// Hash partitioning: key group -> index in `shards`, -1 when no record covers it.
    private let keyGroupOwner: [Int32]
    /// Range partitioning: shard indexes sorted by lower bound.
    private let rangeOrder: [Int]
    let keyGroups: Int?
    /// Ranges held by a migration cutover (usually none).
    let fences: [Fence]
    /// Increases with every change of the table; batches built against an older
    /// table are re-checked before they are written.
    let generation: UInt64

    init(partitioning: Partitioning, shards: [Shard], fences: [Fence] = [], generation: UInt64 = 0) {
        self.partitioning = partitioning
        self.fences = fences
        self.generation = generation
        let shards = shards.sorted { $0.id < $1.id }
        self.shards = shards
        self.unretainedShards = shards.map { Unmanaged.passUnretained($0) }
        switch partitioning {
        case .hash(let k):
            keyGroups = k
            var owner = [Int32](repeating: -1, count: k)
            // Active records win over moved-to records of the same key groups.
            for pass in 0..<2 {
                for (index, shard) in shards.enumerated() where shard.isActive == (pass == 1) {
                    if case .keyGroups(let r) = shard.descriptor.range {
                        for kg in max(0, r.lowerBound)..<min(k, r.upperBound) { owner[kg] = Int32(index) }
                    }
                }
            }
            keyGroupOwner = owner
            rangeOrder = []
        case .range:
            keyGroups = nil
            keyGroupOwner = []
            rangeOrder = shards.indices.sorted { a, b in
                let sa = shards[a], sb = shards[b]
                if sa.isActive != sb.isActive { return sa.isActive }
                guard case .keys(let la, _) = sa.descriptor.range, case .keys(let lb, _) = sb.descriptor.range else { return a < b }
                return la.lexicographicallyPrecedes(lb)
            }
        }
    }

    var isHashed: Bool { keyGroups != nil }

    func shard(id: Int) -> Shard? { shards.first { $0.id == id } }

    /// A table with other shards or fences and the next generation.
    func replacing(shards: [Shard]? = nil, fences: [Fence]? = nil) -> RoutingTable {
        RoutingTable(partitioning: partitioning, shards: shards ?? self.shards, fences: fences ?? self.fences,
                     generation: generation + 1)
    }

    /// The active shard holding `key` and its key group (nil under range partitioning).
    ///
    /// - throws: ``ShardDBError`` `.keyNotOwned`, naming the owner when a moved-to record covers the key;
    ///   ``FenceHit`` when a migration cutover holds the key.
    @inline(__always)
    func locate(_ key: UnsafeRawBufferPointer) throws -> (Shard, Int?) {
        let (shard, keyGroup) = try locateUnretained(key)
        return (shard.takeUnretainedValue(), keyGroup)
    }

    /// ``locate(_:)`` without a reference count on the shard: valid while this
    /// table is (the hot paths use it with the table counted in, see ``PublishedTable``).
    @inline(__always)
    func locateUnretained(_ key: UnsafeRawBufferPointer) throws -> (Unmanaged<Shard>, Int?) {
        let (index, keyGroup) = try locateIgnoringFences(key)
        if !fences.isEmpty {
            for fence in fences where fence.covers(keyGroup: keyGroup, key: key) { throw FenceHit(fence: fence) }
        }
        return (unretainedShards[index], keyGroup)
    }

    /// The index in `shards` of the active shard holding `key`, and its key group.
    @inline(__always)
    func locateIgnoringFences(_ key: UnsafeRawBufferPointer) throws -> (Int, Int?) {
        if let k = keyGroups {
            let kg = KeyHash.keyGroup(of: key, keyGroups: k)
            let index = Int(keyGroupOwner[kg])
            if index >= 0, shards[index].isActive { return (index, kg) }
            throw notOwned(key, record: index >= 0 ? shards[index] : nil)
        }
        var fallback: Shard?
        for index in rangeOrder {
            let shard = shards[index]
            guard case let .keys(lower, upper) = shard.descriptor.range else { continue }
            if Self.compare(key, lower) >= 0, upper.map({ Self.compare(key, $0) < 0 }) ?? true {
                if shard.isActive { return (index, nil) }
                if fallback == nil { fallback = shard }
            }
        }
        throw notOwned(key, record: fallback)
    }

    /// The pieces of the user-key range `[lower, upper)` a range delete writes:
    /// one per shard it spans (range partitioning), or the range inside
    /// `keyGroup` (hash partitioning), in stored-key form.
    ///
    /// - throws: ``ShardDBError`` `.keyNotOwned` when any part of the range is
    ///   not owned by an active shard (naming the owner of a moved part);
    ///   ``FenceHit`` when a migration cutover holds any part of it.
    func locateRange(lower: [UInt8], upper: [UInt8], keyGroup: Int?) throws -> [RangePiece] {
        if let keyGroup {
            try checkOwned(keyGroup: keyGroup)
            let prefix = KeyEncoding.keyGroupPrefix(keyGroup)
            let shard = shards[Int(keyGroupOwner[keyGroup])]
            return [RangePiece(shard: shard, storedLower: prefix + lower, storedUpper: prefix + upper)]
        }
        var pieces: [RangePiece] = []
        var cursor = lower
        while cursor.lexicographicallyPrecedes(upper) {
            // Throws `.keyNotOwned` at the first key of a gap or of a moved range.
            let shard = try shards[cursor.withUnsafeBytes { try locateIgnoringFences($0).0 }]
            guard case let .keys(_, shardUpper) = shard.descriptor.range else { break }
            let end = shardUpper.map { $0.lexicographicallyPrecedes(upper) ? $0 : upper } ?? upper
            pieces.append(RangePiece(shard: shard, storedLower: cursor, storedUpper: end))
            cursor = end
        }
        let range = ShardRange.keys(lower: lower, upper: upper)
        for fence in fences where fence.range.overlaps(range) { throw FenceHit(fence: fence) }
        return pieces
    }

    /// The shard record covering `keyGroup` (hash partitioning), active or not.
    func owner(ofKeyGroup keyGroup: Int) -> Shard? {
        let index = Int(keyGroupOwner[keyGroup])
        return index >= 0 ? shards[index] : nil
    }

    /// Throws unless an active, unfenced shard owns `keyGroup` (hash partitioning).
    func checkOwned(keyGroup: Int) throws {
        let index = Int(keyGroupOwner[keyGroup])
        guard index >= 0, shards[index].isActive else {
            throw notOwned(UnsafeRawBufferPointer(start: nil, count: 0), record: index >= 0 ? shards[index] : nil, keyGroup: keyGroup)
        }
        for fence in fences {
            if case .keyGroups(let r) = fence.range, r.contains(keyGroup) { throw FenceHit(fence: fence) }
        }
    }

    private func notOwned(_ key: UnsafeRawBufferPointer, record: Shard?, keyGroup: Int? = nil) -> ShardDBError {
        let text = keyGroup.map { "in key group \($0)" } ?? "'\(ByteText.display([UInt8](key)))'"
        if let record, case .moved(let to) = record.descriptor.state {
            return ShardDBError(.keyNotOwned, "key \(text) is not owned here: moved to \(to)", owner: to)
        }
        return ShardDBError(.keyNotOwned, "key \(text) is not owned by any shard of this instance")
    }

    /// Byte-wise comparison of a raw buffer and an array (-1, 0, 1).
    @inline(__always)
    static func compare(_ a: UnsafeRawBufferPointer, _ b: [UInt8]) -> Int {
        b.withUnsafeBytes { bb in
            let n = min(a.count, bb.count)
            if n > 0, let pa = a.baseAddress, let pb = bb.baseAddress {
                let c = memcmp(pa, pb, n)
                if c != 0 { return c < 0 ? -1 : 1 }
            }
            return a.count == bb.count ? 0 : (a.count < bb.count ? -1 : 1)
        }
    }
}

#if canImport(Glibc)
import Glibc
#endif
