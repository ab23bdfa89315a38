import Foundation
import ShardDB

/// One line of the stress oracle (`WORKDIR/oracle.jsonl`, docs/CRASH_TESTING.md).
///
/// The driver is sequential: it appends an `intent` (fsync'd) before each
/// operation and a `result` after it, so at most one operation per run is in
/// flight when the process dies — besides a migration, whose concurrent writer
/// runs its own puts one at a time. Verification appends `recovered`, which settles
/// the run: its operations up to `through` took effect, later ones did not.
struct OracleLine: Codable {
    enum Kind: String, Codable { case header, intent, result, recovered }
    var type: Kind
    // header
    var seed: UInt64?
    var sync: Bool?
    var keyGroups: Int?
    var keys: Int?
    // intent / result
    var op: Int?
    var kind: String?
    var instance: String?
    var writes: [OracleWrite]?
    /// A range delete's range; its writes are derived when the oracle is read.
    var range: OracleRange?
    var detail: String?
    /// A migration's move: which key groups go from which instance to which.
    var move: OracleMove?
    var ok: Bool?
    var error: String?
    /// A failed operation that certainly changed nothing (refused before writing:
    /// the range was mid-cutover or owned elsewhere); the oracle drops its writes.
    var refused: Bool?
    // recovered
    var through: Int?
    var lost: Int?
    /// The owner ("a" or "b") of each key group after recovery, one letter per key group.
    var owners: String?
}

/// Key groups `[lo, hi)` moving from instance `from` to instance `to`.
struct OracleMove: Codable, Equatable {
    var from: String
    var to: String
    var lo: Int
    var hi: Int
}

/// A key's new state in an operation: a value (`v` names the operation and the
/// position in it, `n` is the length of the padding), or a delete (`v` nil).
struct OracleWrite: Codable, Equatable {
    var k: String
    var v: String?
    var n: Int?

    /// The stored bytes: `v`, '|', then `n` times 'x'.
    var bytes: [UInt8]? {
        guard let v else { return nil }
        return Array(v.utf8) + [UInt8(ascii: "|")] + [UInt8](repeating: UInt8(ascii: "x"), count: n ?? 0)
    }
}

/// A range delete: every key `k` with `lo <= k < hi` in key group `kg`. Its
/// effect depends on the state before it, so the intent records the range and the
/// oracle turns it into deletes of the keys then present (every earlier operation
/// of a prefix took effect, the driver being sequential).
struct OracleRange: Codable, Equatable {
    var lo: String
    var hi: String
    var kg: Int

    func contains(_ key: String, keyGroups: Int) -> Bool {
        let k = Array(key.utf8)
        guard !k.lexicographicallyPrecedes(Array(lo.utf8)), k.lexicographicallyPrecedes(Array(hi.utf8)) else { return false }
        return k.withUnsafeBytes { KeyHash.keyGroup(of: $0, keyGroups: keyGroups) } == kg
    }
}

/// Appends to the oracle file; intents are fsync'd before the operation runs.
/// Thread-safe: a migration's concurrent writer appends beside the driver.
final class OracleWriter: @unchecked Sendable {
    private let lock = NSLock()
    private let descriptor: Int32
    private let encoder: JSONEncoder = {
        let e = JSONEncoder()
        e.outputFormatting = [.sortedKeys, .withoutEscapingSlashes]
        return e
    }()

    init(path: String) throws {
        descriptor = open(path, O_WRONLY | O_CREAT | O_APPEND, 0o644)
        guard descriptor >= 0 else { throw ShardDBError(.notWritable, "cannot open oracle \(path): \(String(cString: strerror(errno)))") }
    }

    deinit { close(descriptor) }

    func append(_ line: OracleLine, durable: Bool) throws {
        lock.lock()
        defer { lock.unlock() }
        var data = try encoder.encode(line)
        data.append(UInt8(ascii: "\n"))
        let written = data.withUnsafeBytes { write(descriptor, $0.baseAddress, $0.count) }
        guard written == data.count else { throw ShardDBError(.notWritable, "cannot append to the oracle: \(String(cString: strerror(errno)))") }
        if durable, fsync(descriptor) != 0 {
            throw ShardDBError(.notWritable, "cannot sync the oracle: \(String(cString: strerror(errno)))")
        }
    }
}

/// An operation read back from the oracle.
struct OracleOperation {
    var op: Int
    var kind: String
    var writes: [OracleWrite]
    var move: OracleMove?
    /// nil: no result (in flight at a crash); false: it failed.
    var ok: Bool?
}

/// The oracle read back: header, settled operations, and the unsettled run.
struct Oracle {
    var header: OracleLine
    /// Expected contents after every settled run: key -> stored bytes.
    var settled: [String: [UInt8]] = [:]
    /// Settled operations that took effect, in order (checkpoint contents are replayed from them).
    var history: [OracleOperation] = []
    /// Operations of the last run not yet settled by a `recovered` line.
    var pending: [OracleOperation] = []
    var settledRuns = 0
    var lostTotal = 0
    /// The owner of each key group as the oracle knows it: the last recovery's, then
    /// every migration of the pending run that returned; nil when an older oracle
    /// recorded no owners at its last recovery.
    var owners: [String]?
    /// The owners when each checkpoint began (by operation), where known: a restored
    /// checkpoint of `a` must own exactly `a`'s key groups of that moment.
    var ownersAtCheckpoint: [Int: [String]] = [:]

    static func read(path: String) throws -> Oracle {
        guard let data = FileManager.default.contents(atPath: path) else {
            throw ShardDBError(.instanceNotFound, "no oracle at \(path)")
        }
        let decoder = JSONDecoder()
        var header: OracleLine?
        var oracle: Oracle?
        var byOp: [Int: Int] = [:]  // op -> index in pending
        // The state with every operation read so far applied, to expand range deletes.
        var running: [String: [UInt8]] = [:]
        for (number, raw) in data.split(separator: UInt8(ascii: "\n")).enumerated() {
            guard let line = try? decoder.decode(OracleLine.self, from: Data(raw)) else {
                // A torn last line (the process died mid-append) is an intent that never completed.
                if number == data.split(separator: UInt8(ascii: "\n")).count - 1 { break }
                throw ShardDBError(.corruptedMetadata, "oracle \(path): line \(number + 1) is not valid")
            }
            switch line.type {
            case .header:
                header = line
                oracle = Oracle(header: line)
                // Instance a starts with every key group, b with none.
                oracle?.owners = Array(repeating: "a", count: line.keyGroups ?? Stress.keyGroups)
            case .intent:
                guard let op = line.op else { continue }
                var writes = line.writes ?? []
                if let range = line.range {
                    let keyGroups = header?.keyGroups ?? Stress.keyGroups
                    writes += running.keys.sorted().filter { range.contains($0, keyGroups: keyGroups) }.map { OracleWrite(k: $0, v: nil, n: nil) }
                }
                for write in writes { running[write.k] = write.bytes }
                byOp[op] = oracle?.pending.count
                oracle?.pending.append(OracleOperation(op: op, kind: line.kind ?? "?", writes: writes, move: line.move, ok: nil))
                if line.kind == "checkpoint", let owners = oracle?.owners { oracle?.ownersAtCheckpoint[op] = owners }
                // An oracle written before moves were recorded: owners unknown until a recovery names them.
                if line.kind == "migrate" && line.move == nil { oracle?.owners = nil }
            case .result:
                if let op = line.op, let index = byOp[op] {
                    oracle?.pending[index].ok = line.ok ?? false
                    if line.refused == true { oracle?.pending[index].writes = [] }
                    // A migration that returned has moved its key groups (and a crash must not undo that).
                    if line.ok == true, let move = oracle?.pending[index].move { oracle?.apply(move) }
                }
            case .recovered:
                oracle?.settle(through: line.through ?? 0)
                oracle?.lostTotal += line.lost ?? 0
                oracle?.owners = line.owners.map { $0.map(String.init) }
                byOp = [:]
                running = oracle?.settled ?? [:]
            }
        }
        guard header != nil, let oracle else { throw ShardDBError(.corruptedMetadata, "oracle \(path) has no header") }
        return oracle
    }

    /// Operations of the pending run up to `through` took effect; the rest did not.
    mutating func settle(through: Int) {
        for operation in pending where operation.op <= through {
            history.append(operation)
            for write in operation.writes { settled[write.k] = write.bytes }
        }
        pending = []
        settledRuns += 1
    }

    var nextOp: Int { max(history.last?.op ?? 0, pending.last?.op ?? 0) + 1 }

    private mutating func apply(_ move: OracleMove) {
        guard var current = owners, move.lo >= 0, move.lo <= move.hi, move.hi <= current.count else { return }
        for kg in move.lo..<move.hi { current[kg] = move.to }
        owners = current
    }

    /// The owners each key group may have now: the oracle's, or for the key groups of a
    /// migration of the pending run that did not return (in flight at a crash, or
    /// failed), its source or its target, as the recovery decided. nil when unknown.
    func acceptableOwners() -> [Set<String>]? {
        guard let owners else { return nil }
        var acceptable = owners.map { Set([$0]) }
        for operation in pending where operation.ok != true {
            guard let move = operation.move, move.lo >= 0, move.lo <= move.hi, move.hi <= acceptable.count else { continue }
            for kg in move.lo..<move.hi { acceptable[kg].insert(move.to) }
        }
        return acceptable
    }

    /// Expected contents just before operation `op`, given the pending run settled through `through`.
    func contents(before op: Int, pendingThrough through: Int) -> [String: [UInt8]] {
        var state: [String: [UInt8]] = [:]
        for operation in history + pending.filter({ $0.op <= through }) where operation.op < op {
            for write in operation.writes { state[write.k] = write.bytes }
        }
        return state
    }

    /// Finds the longest prefix of the pending run that explains `recovered`.
    ///
    /// - returns: the last operation of the prefix (the op before the run when none
    ///   of it survived), or nil when no prefix matches (a hole or a wrong value).
    func longestMatchingPrefix(_ recovered: [String: [UInt8]]) -> Int? {
        var current = settled
        var before: [[(String, [UInt8]?)]] = []
        for operation in pending {
            before.append(operation.writes.map { ($0.k, current[$0.k]) })
            for write in operation.writes { current[write.k] = write.bytes }
        }
        var mismatched = Set<String>()
        for key in Set(current.keys).union(recovered.keys) where current[key] != recovered[key] { mismatched.insert(key) }
        var index = pending.count
        while true {
            if mismatched.isEmpty { return index == 0 ? (pending.first.map { $0.op - 1 } ?? nextOp - 1) : pending[index - 1].op }
            if index == 0 { return nil }
            index -= 1
            for (key, value) in before[index].reversed() {
                current[key] = value
                if current[key] == recovered[key] { mismatched.remove(key) } else { mismatched.insert(key) }
            }
        }
    }

    /// Keys whose recovered value differs from the expected state after all of the pending run.
    func differences(_ recovered: [String: [UInt8]], limit: Int = 5) -> [String] {
        var current = settled
        for operation in pending { for write in operation.writes { current[write.k] = write.bytes } }
        var lines: [String] = []
        for key in Set(current.keys).union(recovered.keys).sorted() where current[key] != recovered[key] {
            lines.append("key \(key): expected \(Self.describe(current[key])), found \(Self.describe(recovered[key]))")
            if lines.count == limit { break }
        }
        return lines
    }

    static func describe(_ value: [UInt8]?) -> String {
        guard let value else { return "absent" }
        let text = String(decoding: value.prefix(40), as: UTF8.self)
        return "'\(text.split(separator: "|").first ?? "")' (\(value.count) bytes)"
    }
}
