import Foundation
import ShardDB

/// The stress workload: one operation at a time on instances a and b, each
/// recorded in the oracle (intent fsync'd before, result after).
struct StressDriver {
    let layout: StressLayout
    let a: ShardEngine
    let b: ShardEngine
    let writer: OracleWriter
    var nextOp: Int
    var random: SplitMix64
    let keys: Int
    let maxValueBytes: Int
    var counts = StressCounts()
    private var migrations = 0

    /// Long enough that no value expires during a test, short enough not to overflow.
    static let ttl = TTL.seconds(10 * 365 * 86_400)

    init(layout: StressLayout, a: ShardEngine, b: ShardEngine, writer: OracleWriter, nextOp: Int, seed: UInt64,
         keys: Int, maxValueBytes: Int) {
        self.layout = layout
        self.a = a
        self.b = b
        self.writer = writer
        self.nextOp = nextOp
        self.random = SplitMix64(seed: seed)
        self.keys = keys
        self.maxValueBytes = max(0, maxValueBytes)
    }

    mutating func step() async throws {
        let roll = Int.random(in: 0..<100, using: &random)
        switch roll {
        case 0..<36: try putOrDelete(delete: false, ttl: .never); counts.puts += 1
        case 36..<50: try putOrDelete(delete: true, ttl: .never); counts.deletes += 1
        case 50..<56: try rangeDelete(); counts.rangeDeletes += 1
        case 56..<70: try batch(); counts.batches += 1
        case 70..<92: try putOrDelete(delete: false, ttl: Self.ttl); counts.ttlPuts += 1
        case 92..<96: try checkpoint(); counts.checkpoints += 1
        default: try await migrate(); counts.migrations += 1
        }
    }

    // MARK: Writes

    private mutating func key() -> String { String(format: "k%05d", Int.random(in: 0..<keys, using: &random)) }

    private mutating func write(op: Int, index: Int, key: String) -> OracleWrite {
        OracleWrite(k: key, v: "\(op).\(index)", n: Int.random(in: 0...maxValueBytes, using: &random))
    }

    /// The instance owning `key` by the current shard maps.
    private func owner(of key: String) -> (String, ShardEngine)? {
        let kg = Array(key.utf8).withUnsafeBytes { KeyHash.keyGroup(of: $0, keyGroups: Stress.keyGroups) }
        for (name, engine) in [("a", a), ("b", b)] {
            for shard in engine.shardDescriptors where shard.state == .active {
                if case .keyGroups(let r) = shard.range, r.contains(kg) { return (name, engine) }
            }
        }
        return nil
    }

    private mutating func putOrDelete(delete: Bool, ttl: TTL) throws {
        let key = key()
        guard let (name, engine) = owner(of: key) else { throw ShardDBError(.keyNotOwned, "no instance owns \(key)") }
        let op = take()
        let change = delete ? OracleWrite(k: key, v: nil, n: nil) : write(op: op, index: 0, key: key)
        let kind = delete ? "delete" : (ttl == .never ? "put" : "ttl-put")
        try record(op, kind: kind, instance: name, writes: [change]) {
            if let bytes = change.bytes { try engine.put(Array(key.utf8), bytes, ttl: ttl) } else { try engine.delete(key) }
        }
    }

    /// Every key in `[lo, hi)` (up to a quarter of the key space) inside the key group of
    /// a key of the range, on the instance owning that key group (one atomic write).
    private mutating func rangeDelete() throws {
        let first = Int.random(in: 0..<keys, using: &random)
        let width = Int.random(in: 1...max(1, keys / 4), using: &random)
        let lo = String(format: "k%05d", first), hi = String(format: "k%05d", first + width)
        let member = String(format: "k%05d", first + Int.random(in: 0..<width, using: &random))
        guard let (name, engine) = owner(of: member) else { throw ShardDBError(.keyNotOwned, "no instance owns \(member)") }
        let kg = Array(member.utf8).withUnsafeBytes { KeyHash.keyGroup(of: $0, keyGroups: Stress.keyGroups) }
        let op = take()
        let range = OracleRange(lo: lo, hi: hi, kg: kg)
        try writer.append(OracleLine(type: .intent, op: op, kind: "delete-range", instance: name, writes: [], range: range), durable: true)
        do { try engine.deleteRange(from: lo, to: hi, keyGroup: kg) } catch {
            try writer.append(OracleLine(type: .result, op: op, ok: false, error: "\(error)"), durable: true)
            throw error
        }
        try writer.append(OracleLine(type: .result, op: op, ok: true), durable: false)
    }

    /// 2–8 keys of one instance (usually several shards), puts and deletes, in one atomic batch.
    private mutating func batch() throws {
        let name = Bool.random(using: &random) ? "a" : "b"
        let engine = name == "a" ? a : b
        let op = take()
        var writes: [OracleWrite] = []
        let wanted = Int.random(in: 2...8, using: &random)
        for _ in 0..<wanted * 20 where writes.count < wanted {
            let key = key()
            guard owner(of: key)?.0 == name else { continue }
            writes.append(Int.random(in: 0..<4, using: &random) == 0
                          ? OracleWrite(k: key, v: nil, n: nil) : write(op: op, index: writes.count, key: key))
        }
        if writes.isEmpty {  // the instance owns nothing now
            try record(op, kind: "batch", instance: name, writes: []) {}
            return
        }
        try record(op, kind: "batch", instance: name, writes: writes) {
            try engine.write { batch in
                for change in writes {
                    if let bytes = change.bytes { try batch.put(Array(change.k.utf8), bytes, ttl: .never) } else { try batch.delete(change.k) }
                }
            }
        }
    }

    // MARK: Checkpoints and migrations

    /// A checkpoint of a, named by its operation in the metadata; purges to the last 2 when more than 3.
    private mutating func checkpoint() throws {
        let op = take()
        let store = layout.store
        try record(op, kind: "checkpoint", instance: "a", writes: []) {
            try a.checkpoint(to: store, metadata: ["op": "\(op)"])
        }
        let listed = try CheckpointStore.open(at: store).checkpoints().count
        if listed > 3 {
            let purge = take()
            try record(purge, kind: "purge", instance: "a", writes: []) {
                let opened = try CheckpointStore.open(at: store, exclusive: true)
                defer { opened.close() }
                _ = try opened.purge(keep: 2)
            }
        }
    }

    /// Moves a whole shard or a range at one end of it; directions alternate (a→b, b→a).
    private mutating func migrate() async throws {
        var (source, target, from, to) = migrations % 2 == 0 ? (a, b, "a", "b") : (b, a, "b", "a")
        migrations += 1
        if !source.shardDescriptors.contains(where: { $0.state == .active }) { (source, target, from, to) = (target, source, to, from) }
        let active = source.shardDescriptors.filter { $0.state == .active }
        guard let shard = active.randomElement(using: &random), case .keyGroups(let whole) = shard.range else { return }
        var range = whole
        if whole.count > 1 && Bool.random(using: &random) {
            let n = Int.random(in: 1..<whole.count, using: &random)
            range = Bool.random(using: &random) ? KeyGroupRange(whole.lowerBound, whole.lowerBound + n)
                                                 : KeyGroupRange(whole.upperBound - n, whole.upperBound)
        }
        var request = MigrationRequest(shard: shard.id, range: .keyGroups(range))
        let adjacent = target.shardDescriptors.first { candidate in
            guard candidate.state == .active, case .keyGroups(let r) = candidate.range else { return false }
            return r.upperBound == range.lowerBound || r.lowerBound == range.upperBound
        }
        if let adjacent, Bool.random(using: &random) { request.mergeInto = adjacent.id }
        request.bulkChunkBytes = 64 << 10
        if range == whole && request.mergeInto == nil && Bool.random(using: &random) {
            // Compacted, the shard sheds its range tombstones and moves as table files
            // (a shard holding any moves as entries: docs/MIGRATION.md, "Bulk copy").
            _ = try source.purgeExpired(shard: shard.id)
        }
        let op = take()
        let detail = "\(from)->\(to) shard \(shard.id) \(range)" + (request.mergeInto.map { " merge into \($0)" } ?? "")
        let intent = OracleLine(type: .intent, op: op, kind: "migrate", instance: from, writes: [], detail: detail,
                                move: OracleMove(from: from, to: to, lo: range.lowerBound, hi: range.upperBound))
        try writer.append(intent, durable: true)
        do {
            _ = try await source.migrate(request, to: target)
        } catch {
            try writer.append(OracleLine(type: .result, op: op, ok: false, error: "\(error)"), durable: true)
            throw error
        }
        try writer.append(OracleLine(type: .result, op: op, ok: true), durable: false)
    }

    // MARK: Oracle

    private mutating func take() -> Int {
        defer { nextOp += 1 }
        return nextOp
    }

    /// Intent (fsync'd), the operation, result.
    private func record(_ op: Int, kind: String, instance: String, writes: [OracleWrite], _ body: () throws -> Void) throws {
        try writer.append(OracleLine(type: .intent, op: op, kind: kind, instance: instance, writes: writes), durable: true)
        do { try body() } catch {
            try writer.append(OracleLine(type: .result, op: op, ok: false, error: "\(error)"), durable: true)
            throw error
        }
        try writer.append(OracleLine(type: .result, op: op, ok: true), durable: false)
    }
}

struct StressCounts: CustomStringConvertible {
    var puts = 0, deletes = 0, rangeDeletes = 0, batches = 0, ttlPuts = 0, checkpoints = 0, migrations = 0
    var description: String {
        "\(puts) puts, \(deletes) deletes, \(rangeDeletes) range deletes, \(batches) batches, \(ttlPuts) TTL puts, \(checkpoints) checkpoints, \(migrations) migrations"
    }
}

/// A small seeded generator (SplitMix64), so a seed replays the same mix.
struct SplitMix64: RandomNumberGenerator {
    private var state: UInt64
    init(seed: UInt64) { state = seed }
    mutating func next() -> UInt64 {
        state &+= 0x9E37_79B9_7F4A_7C15
        var z = state
        z = (z ^ (z >> 30)) &* 0xBF58_476D_1CE4_E5B9
        z = (z ^ (z >> 27)) &* 0x94D0_49BB_1331_11EB
        return z ^ (z >> 31)
    }
}
