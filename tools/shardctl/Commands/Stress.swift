import ArgumentParser
import Foundation
import ShardDB

struct Stress: AsyncParsableCommand {
    static let configuration = CommandConfiguration(
        abstract: "Run a seeded random workload on two instances against an oracle, or verify after a crash.",
        discussion: """
            WORKDIR holds two instances 'a' and 'b' (hash partitioning, 64 key groups; 'a' starts with \
            4 shards, 'b' with none), a checkpoint store 'checkpoints' of 'a', and the oracle \
            'oracle.jsonl' (outside the instances). The driver runs puts, deletes, cross-shard batches, \
            TTL puts (10-year TTLs), checkpoints of 'a' (purged to the last 2) and migrations of a \
            shard or a range at one end of it between 'a' and 'b' (alternating direction) while a \
            writer thread puts to the moving range, recording an fsync'd intent before each \
            operation and its result after.

            Before running, and with --verify-only, it opens both instances, settles unfinished \
            migrations both ways, and checks: every key group owned by exactly one active shard \
            across 'a' and 'b', on the instance where the last finished migration put it; the \
            contents equal the oracle's history up to a point that includes every acknowledged write (--sync; without it, any prefix: no holes); every \
            listed checkpoint verifies, restores, and holds the contents and the key groups of 'a' \
            just before its operation. \
            docs/CRASH_TESTING.md describes the oracle. Exit status 2 on any failed check.
            """)

    @Argument(help: "The work directory (created with the instances on the first run).")
    var workdir: String

    @Option(help: "Seed of the random mix, default 1 (each run after a crash derives its own from it; fixed by the first run).")
    var seed: UInt64?

    @Option(parsing: .unconditional, help: "Operations to run.")
    var ops = 2000

    @Option(parsing: .unconditional, help: "Distinct keys in the workload, default 2000, at most \(Self.maxKeys) (fixed by the first run, like --seed and --sync).")
    var keys: Int?

    /// Verification reads every key of the workload, and a migration lists the moving ones.
    static let maxKeys = 1_000_000
    /// What a first run takes when --keys or --seed is not given.
    static let defaultKeys = 2000, defaultSeed: UInt64 = 1

    @Option(name: .customLong("max-value-bytes"), parsing: .unconditional, help: "Largest value written.")
    var maxValueBytes = 1024

    @Flag(help: "Synchronous writes (fsync the WAL on every write); fixed at the first run.")
    var sync = false

    @Flag(name: .customLong("verify-only"), help: "Only recover and check; run no operations.")
    var verifyOnly = false

    static let keyGroups = 64

    func run() async throws {
        try failing {
            guard (1...ShardEngine.maxValueSize).contains(maxValueBytes) else {
                throw ShardDBError(.invalidArgument, "--max-value-bytes must be between 1 and \(ShardEngine.maxValueSize), got \(maxValueBytes)")
            }
            guard ops >= 0 else { throw ShardDBError(.invalidArgument, "--ops must not be negative, got \(ops)") }
        }
        let layout = StressLayout(workdir: workdir)
        if !FileManager.default.fileExists(atPath: layout.oracle) {
            guard !verifyOnly else { fail("no stress oracle at \(layout.oracle)") }
            try failing { try layout.create(seed: seed ?? Self.defaultSeed, sync: sync, keys: keys ?? Self.defaultKeys) }
        }
        var oracle = try failing { try Oracle.read(path: layout.oracle) }
        // Fixed by the first run: a different value given now is ignored, and says so.
        for (name, given, fixed) in [("--keys", keys.map(String.init), oracle.header.keys.map(String.init)),
                                     ("--seed", seed.map(String.init), oracle.header.seed.map(String.init))]
        where given != nil && fixed != nil && given != fixed {
            writeStandardError(Data("shardctl: note: \(name) \(given!) ignored: this work directory's first run fixed it at \(fixed!)\n".utf8))
        }
        let syncWrites = oracle.header.sync ?? false
        let (a, b) = try failing { try layout.open(syncWrites: syncWrites) }
        defer { a.close(); b.close() }
        let writer = try failing { try OracleWriter(path: layout.oracle) }

        if verifyOnly || !oracle.pending.isEmpty {
            try await check(layout: layout, oracle: &oracle, a: a, b: b, writer: writer)
            if verifyOnly { return }
        } else {
            try await failingAsync { _ = try await Self.settleMigrations(a, b) }
        }

        var driver = StressDriver(layout: layout, a: a, b: b, writer: writer, nextOp: oracle.nextOp,
                                  seed: (oracle.header.seed ?? seed ?? Self.defaultSeed) &+ UInt64(oracle.settledRuns) &* 0x9E37_79B9_7F4A_7C15,
                                  keys: oracle.header.keys ?? keys ?? Self.defaultKeys, maxValueBytes: maxValueBytes)
        let started = Date()
        do {
            for _ in 0..<ops { try await driver.step() }
        } catch {
            fail("stress: operation \(driver.failedOp ?? driver.nextOp - 1) failed: \(error)")
        }
        print(String(format: "stress: %d operations in %.1f s (%@)", ops, Date().timeIntervalSince(started), driver.counts.description))
        oracle = try failing { try Oracle.read(path: layout.oracle) }
        try await check(layout: layout, oracle: &oracle, a: a, b: b, writer: writer)
    }

    /// Recovers (settles migrations), runs every check, and settles the oracle's pending run.
    func check(layout: StressLayout, oracle: inout Oracle, a: ShardEngine, b: ShardEngine, writer: OracleWriter) async throws {
        let settled = try await failingAsync { try await Self.settleMigrations(a, b) }
        var problems: [String] = []
        let owners = Self.owners(a, b)
        problems += Self.checkShardMaps(owners)
        if let acceptable = oracle.acceptableOwners() {
            problems += Self.checkOwnership(owners, acceptable: acceptable)
        }
        let recovered: [String: [UInt8]]
        do { recovered = try Self.contents(a, b, problems: &problems) } catch {
            fail("stress verify: cannot read the instances: \(error)")
        }
        problems += Self.checkPointReads(a, b, keys: oracle.header.keys ?? 0, scanned: recovered)
        var through = oracle.nextOp - 1
        var lost = 0
        if let prefix = oracle.longestMatchingPrefix(recovered) {
            let acknowledged = oracle.pending.filter { $0.ok == true && !$0.writes.isEmpty }
            lost = acknowledged.filter { $0.op > prefix }.count
            through = prefix
            if lost > 0 && (oracle.header.sync ?? false) {
                problems.append("sync mode: \(lost) acknowledged operations lost (state matches the oracle only through operation \(prefix))")
            }
        } else {
            problems.append("contents match no prefix of the oracle's history (a hole or a wrong value):")
            problems += oracle.differences(recovered).map { "  " + $0 }
        }
        let checkpoints = Self.checkCheckpoints(layout: layout, oracle: oracle, pendingThrough: through, problems: &problems)
        guard problems.isEmpty else {
            for problem in problems { writeStandardError(Data("shardctl: error: stress verify: \(problem)\n".utf8)) }
            throw ExitCode(2)
        }
        let ownerLetters = owners.map { $0.first?.instance ?? "?" }.joined()
        try failing { try writer.append(OracleLine(type: .recovered, through: through, lost: lost, owners: ownerLetters), durable: true) }
        oracle.settle(through: through)
        print("verified: \(recovered.count) keys through operation \(through) (\(lost) acknowledged lost), "
            + "\(checkpoints) checkpoints restored, \(settled.count) migrations settled")
    }

    /// Settles migrations a crash left unfinished, in both directions.
    static func settleMigrations(_ a: ShardEngine, _ b: ShardEngine) async throws -> [String] {
        try await MigrationCoordinator.resolveUnfinished(between: a, and: b)
    }

    /// An active shard owning a key group: its instance ("a" or "b") and id.
    struct ShardOwner: CustomStringConvertible {
        var instance: String
        var shard: Int
        var description: String { "\(instance)/shard-\(shard)" }
    }

    /// The active shards owning each key group across both instances.
    static func owners(_ a: ShardEngine, _ b: ShardEngine) -> [[ShardOwner]] {
        var owners = [[ShardOwner]](repeating: [], count: keyGroups)
        for (name, engine) in [("a", a), ("b", b)] {
            for shard in engine.shardDescriptors where shard.state == .active {
                guard case .keyGroups(let range) = shard.range else { continue }
                for kg in range.lowerBound..<min(range.upperBound, keyGroups) { owners[kg].append(ShardOwner(instance: name, shard: shard.id)) }
            }
        }
        return owners
    }

    /// Every key group must be owned by exactly one active shard across both instances.
    static func checkShardMaps(_ owners: [[ShardOwner]]) -> [String] {
        var problems: [String] = []
        for (kg, owner) in owners.enumerated() where owner.count != 1 {
            problems.append("shard maps: key group \(kg) is owned by \(owner.isEmpty ? "no active shard" : owner.map(\.description).joined(separator: " and "))")
        }
        return problems
    }

    /// Each key group's owner must be the one the oracle expects: where the last
    /// migration that returned moved it (a recovery must not undo a finished move),
    /// either side of a migration that did not return.
    static func checkOwnership(_ owners: [[ShardOwner]], acceptable: [Set<String>]) -> [String] {
        var problems: [String] = []
        for (kg, owner) in owners.enumerated() where owner.count == 1 && kg < acceptable.count {
            if !acceptable[kg].contains(owner[0].instance) {
                problems.append("ownership: key group \(kg) is owned by \(owner[0]); the oracle expects \(acceptable[kg].sorted().joined(separator: " or "))")
            }
        }
        return problems
    }

    /// The union of both instances' contents; a key found in both is a problem.
    static func contents(_ a: ShardEngine, _ b: ShardEngine, problems: inout [String]) throws -> [String: [UInt8]] {
        var result: [String: [UInt8]] = [:]
        for engine in [a, b] {
            for entry in try engine.entries() {
                let key = String(decoding: entry.key, as: UTF8.self)
                if result[key] != nil { problems.append("key \(key) is served by both instances") }
                result[key] = entry.value
            }
        }
        return result
    }

    /// Point reads must agree with the scans: every key of the workload, read from the
    /// instance that owns it, gives what the scan listed (nothing for a key it did not list).
    static func checkPointReads(_ a: ShardEngine, _ b: ShardEngine, keys: Int, scanned: [String: [UInt8]]) -> [String] {
        var problems: [String] = []
        for index in 0..<keys {
            let key = StressKeys.name(index, keys: keys)
            guard let (name, engine) = StressDriver.owner(of: key, a, b) else { continue }  // (the shard-map check reports it)
            do {
                let value = try engine.get(Array(key.utf8))
                if value != scanned[key] {
                    problems.append("key \(key): a read on \(name) gives \(Oracle.describe(value)), the scan \(Oracle.describe(scanned[key]))")
                }
            } catch {
                problems.append("key \(key): a read on \(name) failed: \(error)")
            }
            if problems.count == 5 { break }
        }
        return problems
    }

    /// Verifies and restores every listed checkpoint and compares it with the oracle.
    static func checkCheckpoints(layout: StressLayout, oracle: Oracle, pendingThrough: Int, problems: inout [String]) -> Int {
        guard FileManager.default.fileExists(atPath: layout.store + "/sharddb-checkpoint-store.json") else { return 0 }
        var restored = 0
        do {
            let store = try CheckpointStore.open(at: layout.store)
            defer { store.close() }
            _ = try store.verify()
            for info in try store.checkpoints() {
                guard let op = info.metadata["op"].flatMap(Int.init) else {
                    problems.append("checkpoint \(info.id): no 'op' in its metadata")
                    continue
                }
                let target = layout.workdir + "/restore-check-\(info.id)"
                try? FileManager.default.removeItem(atPath: target)
                defer { try? FileManager.default.removeItem(atPath: target) }
                _ = try store.restore(id: info.id, to: target)
                let engine = try ShardEngine.open(at: target)
                defer { engine.close() }
                if let owners = oracle.ownersAtCheckpoint[op] {
                    // The checkpoint holds a's shard map of that moment: exactly a's key groups.
                    var owned = Set<Int>()
                    for shard in engine.shardDescriptors where shard.state == .active {
                        if case .keyGroups(let range) = shard.range { owned.formUnion(range.lowerBound..<range.upperBound) }
                    }
                    let expectedOwned = Set(owners.indices.filter { owners[$0] == "a" })
                    if owned != expectedOwned {
                        problems.append("checkpoint \(info.id) (before operation \(op)): owns key groups "
                            + "\(owned.sorted().prefix(8)) ..., expected \(expectedOwned.sorted().prefix(8)) ... "
                            + "(\(owned.symmetricDifference(expectedOwned).count) differ)")
                    }
                }
                let expected = oracle.contents(before: op, pendingThrough: pendingThrough)
                var found: [String: [UInt8]] = [:]
                for entry in try engine.entries() { found[String(decoding: entry.key, as: UTF8.self)] = entry.value }
                var wrong: [String] = []
                for key in Set(expected.keys).union(found.keys).sorted() where expected[key] != found[key] {
                    // Keys the checkpointed instance did not own are not in it (which key
                    // groups it owned is checked above, where the oracle knows them).
                    if found[key] == nil {
                        do { _ = try engine.get(key); } catch let error as ShardDBError where error.code == .keyNotOwned { continue }
                    }
                    wrong.append("key \(key): expected \(Oracle.describe(expected[key])), found \(Oracle.describe(found[key]))")
                }
                if !wrong.isEmpty {
                    problems.append("checkpoint \(info.id) (before operation \(op)): \(wrong.count) keys differ, e.g. \(wrong.prefix(3).joined(separator: "; "))")
                }
                restored += 1
            }
        } catch {
            problems.append("checkpoints: \(error)")
        }
        return restored
    }
}

/// Where the stress driver keeps things in its work directory.
struct StressLayout {
    var workdir: String
    var a: String { workdir + "/a" }
    var b: String { workdir + "/b" }
    var store: String { workdir + "/checkpoints" }
    var oracle: String { workdir + "/oracle.jsonl" }
    /// Written before anything else: this directory is the stress driver's.
    static let setupMarker = ".stress-workdir"

    func create(seed: UInt64, sync: Bool, keys: Int) throws {
        guard (1...Stress.maxKeys).contains(keys) else {
            throw ShardDBError(.invalidArgument, "--keys must be between 1 and \(Stress.maxKeys), got \(keys)")
        }
        do { try FileManager.default.createDirectory(atPath: workdir, withIntermediateDirectories: true) } catch {
            throw ShardDBError(.notWritable, "cannot create the work directory \(workdir): \(ShardDBError.fileSystemReason(error))")
        }
        // No oracle yet: a work directory this command set up (its marker, written first)
        // holds at most a half-created setup from a crash in the first run, removed
        // below. Anything else is someone's data: refused, never removed.
        let existing = (try? FileManager.default.contentsOfDirectory(atPath: workdir)) ?? []
        guard existing.isEmpty || existing.contains(Self.setupMarker) else {
            throw ShardDBError(.invalidArgument, "\(workdir) is not empty and holds no stress oracle: give a new or empty directory")
        }
        guard FileManager.default.createFile(atPath: workdir + "/" + Self.setupMarker, contents: Data("shardctl stress\n".utf8)) else {
            throw ShardDBError(.notWritable, "cannot write in the work directory \(workdir)")
        }
        let partitioning = Partitioning.hash(keyGroups: Stress.keyGroups)
        for leftover in [a, b, store] { try? FileManager.default.removeItem(atPath: leftover) }
        try ShardEngine.create(at: a, shards: 4, partitioning: partitioning).close()
        try ShardEngine.create(at: b, shards: 0, partitioning: partitioning).close()
        let writer = try OracleWriter(path: oracle + ".new")
        try writer.append(OracleLine(type: .header, seed: seed, sync: sync, keyGroups: Stress.keyGroups, keys: keys), durable: true)
        guard rename(oracle + ".new", oracle) == 0 else { throw ShardDBError(.notWritable, "cannot create \(oracle)") }
    }

    func open(syncWrites: Bool) throws -> (ShardEngine, ShardEngine) {
        var options = ShardEngineOptions()
        options.syncWrites = syncWrites
        options.writeBufferSize = 1 << 20
        // Migrations copy in 64 KiB chunks: full chunks are ingested as table files
        // (the default path at real sizes), a migration's last, smaller chunk goes in
        // as a write batch — kills land in both.
        options.migrationIngestMinBytes = 32 << 10
        let a = try ShardEngine.open(at: self.a, options: options)
        do { return (a, try ShardEngine.open(at: b, options: options)) } catch { a.close(); throw error }
    }
}

/// Like ``failing(_:)`` for async bodies.
func failingAsync<R>(_ body: () async throws -> R) async throws -> R {
    do { return try await body() } catch let exit as ExitCode { throw exit } catch { fail("\(error)") }
}
