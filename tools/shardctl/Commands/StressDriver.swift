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
    /// The operation that failed, when it is not the last one taken (a migration's, or a put of its writer).
    private(set) var failedOp: Int?
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

    private mutating func key() -> String { StressKeys.name(Int.random(in: 0..<keys, using: &random), keys: keys) }

    private mutating func write(op: Int, index: Int, key: String) -> OracleWrite {
        OracleWrite(k: key, v: "\(op).\(index)", n: Int.random(in: 0...maxValueBytes, using: &random))
    }

    /// The instance owning `key` by the current shard maps.
    private func owner(of key: String) -> (String, ShardEngine)? { Self.owner(of: key, a, b) }

    static func keyGroup(of key: String) -> Int {
        Array(key.utf8).withUnsafeBytes { KeyHash.keyGroup(of: $0, keyGroups: Stress.keyGroups) }
    }

    static func owner(of key: String, _ a: ShardEngine, _ b: ShardEngine) -> (String, ShardEngine)? {
        let kg = keyGroup(of: key)
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
        let lo = StressKeys.name(first, keys: keys), hi = StressKeys.name(first + width, keys: keys)
        let member = StressKeys.name(first + Int.random(in: 0..<width, using: &random), keys: keys)
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
        // Puts to the moving range while it moves (through the bulk copy, the catch-up and
        // the cutover): the oracle then checks that each acknowledged one is where the move
        // left the range, and that the move lost none.
        let moving = (0..<keys).map { StressKeys.name($0, keys: keys) }.filter { range.contains(Self.keyGroup(of: $0)) }
        let load = MigrationLoad(a: a, b: b, writer: writer, nextOp: nextOp, keys: moving,
                                 seed: random.next(), maxValueBytes: min(maxValueBytes, 256))
        load.start()
        let outcome: Error?
        do {
            _ = try await source.migrate(request, to: target)
            outcome = nil
        } catch {
            outcome = error
        }
        let (next, puts, putFailure) = load.finish()
        nextOp = next
        counts.putsDuringMigrations += puts
        // The migration's result first, whatever a put of its writer did.
        if let outcome {
            failedOp = op
            try writer.append(OracleLine(type: .result, op: op, ok: false, error: "\(outcome)"), durable: true)
            throw outcome
        }
        try writer.append(OracleLine(type: .result, op: op, ok: true), durable: false)
        if let putFailure {
            failedOp = putFailure.op
            throw putFailure.error
        }
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
    var putsDuringMigrations = 0
    var description: String {
        "\(puts) puts, \(deletes) deletes, \(rangeDeletes) range deletes, \(batches) batches, \(ttlPuts) TTL puts, \(checkpoints) checkpoints, "
            + "\(migrations) migrations (\(putsDuringMigrations) puts to their ranges while they ran)"
    }
}

/// A migration's concurrent writer: puts to keys of the moving range, one at a time
/// on a thread of its own, each recorded like the driver's operations (intent
/// fsync'd, then result), so the driver's oracle stays sequential in its writes.
/// A put the cutover refuses is tried again on whichever instance owns the key
/// then; one refused every time is recorded as `refused` (it changed nothing).
final class MigrationLoad: @unchecked Sendable {
    private let a: ShardEngine, b: ShardEngine
    private let writer: OracleWriter
    private let keys: [String]
    private let maxValueBytes: Int
    private let lock = NSLock()
    private var stopped = false  // guarded by `lock`
    private var nextOp: Int
    private var random: SplitMix64
    private var puts = 0
    private var attempts = 0
    private var failure: (op: Int, error: Error)?
    private let done = DispatchSemaphore(value: 0)
    /// At most this many puts per migration, refused ones included (they are fsync'd one by one).
    static let limit = 100

    init(a: ShardEngine, b: ShardEngine, writer: OracleWriter, nextOp: Int, keys: [String], seed: UInt64, maxValueBytes: Int) {
        self.a = a
        self.b = b
        self.writer = writer
        self.nextOp = nextOp
        self.keys = keys
        self.random = SplitMix64(seed: seed)
        self.maxValueBytes = max(0, maxValueBytes)
    }

    func start() {
        let thread = Thread { [self] in
            defer { done.signal() }
            while attempts < Self.limit, !keys.isEmpty, !lock.withLock({ stopped }) {
                attempts += 1
                do { try putOne() } catch {
                    failure = (nextOp - 1, error)
                    return
                }
            }
        }
        thread.start()
    }

    /// Stops the writer and waits for it; returns the next free operation number, the
    /// puts acknowledged, and the put that failed, if one did (the driver then stops, as
    /// for a failure of its own).
    func finish() -> (nextOp: Int, puts: Int, failure: (op: Int, error: Error)?) {
        lock.withLock { stopped = true }
        done.wait()
        return (nextOp, puts, failure)
    }

    private func putOne() throws {
        let op = nextOp
        nextOp += 1
        let key = keys[Int.random(in: 0..<keys.count, using: &random)]
        let change = OracleWrite(k: key, v: "\(op).0", n: Int.random(in: 0...maxValueBytes, using: &random))
        let label = StressDriver.owner(of: key, a, b)?.0 ?? "?"
        try writer.append(OracleLine(type: .intent, op: op, kind: "put", instance: label, writes: [change]), durable: true)
        var refusal: ShardDBError?
        for _ in 0..<10 {
            guard let (_, engine) = StressDriver.owner(of: key, a, b) else { break }
            do {
                try engine.put(Array(key.utf8), change.bytes!, ttl: .never)
                try writer.append(OracleLine(type: .result, op: op, ok: true), durable: false)
                puts += 1
                return
            } catch let error as ShardDBError where error.code == .keyNotOwned || error.code == .migrationInProgress {
                refusal = error  // mid-cutover: the fence decided, ask the owner now
            } catch {
                try writer.append(OracleLine(type: .result, op: op, ok: false, error: "\(error)"), durable: true)
                throw error
            }
        }
        try writer.append(OracleLine(type: .result, op: op, ok: false, error: "\(refusal.map { "\($0)" } ?? "no owner")",
                                     refused: true), durable: true)
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

/// The workload's key names: `k` and the index, zero-padded so that names sort as
/// their indexes do up to a range delete's end (`keys` + a quarter): five digits
/// ("k00042") up to 79,999 keys, as the driver always named them, more beyond.
/// (`String(format: "k%05d")` took the index as a 32-bit int and wrapped, and past
/// 99,999 a range delete's end sorted before its start.)
enum StressKeys {
    static func name(_ index: Int, keys: Int) -> String {
        let width = max(5, String(keys + keys / 4).count)
        let digits = String(index)
        return "k" + String(repeating: "0", count: max(0, width - digits.count)) + digits
    }
}
