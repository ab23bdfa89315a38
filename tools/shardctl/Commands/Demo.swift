import ArgumentParser
import Foundation
import ShardDB

struct Demo: AsyncParsableCommand {
    static let configuration = CommandConfiguration(
        abstract: "Run the embedded quick start: load an instance, reopen and verify it, then move a shard live under load.",
        discussion: """
            Works in a temporary directory (removed afterwards unless --keep) or in --directory. \
            Two instances live in this one process: writers keep writing while a shard moves from \
            the first to the second; afterwards every acknowledged write is checked on its owner.
            """)

    @Option(help: "Keys to load.") var keys = 200_000
    @Option(help: "Shards to create.") var shards = 8
    @Option(help: "Writer threads during the migration.") var writers = 2
    @Option(help: "Use this (new) directory instead of a temporary one.") var directory: String?
    @Flag(help: "Keep the data directory.") var keep = false

    func run() async throws {
        try failing {
            guard keys > 0, shards > 1, writers >= 0 else {
                throw ShardDBError(.invalidArgument, "--keys must be positive, --shards at least 2, --writers not negative")
            }
            guard keys <= 100_000_000, shards <= 4096, writers <= min(keys, 256) else {
                throw ShardDBError(.invalidArgument, "--keys must be at most 100000000, --shards at most 4096, --writers at most 256 and at most --keys")
            }
        }
        if let directory, let entries = try? FileManager.default.contentsOfDirectory(atPath: directory), !entries.isEmpty {
            fail("--directory \(directory) is not empty: the demo creates its instances in a new or empty directory")
        }
        let dir = directory ?? (NSTemporaryDirectory() + "sharddb-demo-\(ProcessInfo.processInfo.processIdentifier)")
        defer { if !keep && directory == nil { try? FileManager.default.removeItem(atPath: dir) } }
        do {
            try await runDemo(in: dir)
        } catch {
            fail("\(error)")
        }
    }

    private func runDemo(in dir: String) async throws {
        print("ShardDB demo in \(dir)")
        let pathA = dir + "/a", pathB = dir + "/b"

        // 1. Load an instance in atomic batches.
        var engine = try ShardEngine.create(at: pathA, shards: shards)
        let progress = ProgressLine()
        var start = Date()
        let batchSize = 1000
        var written = 0
        while written < keys {
            try engine.write { batch in
                for i in written..<min(keys, written + batchSize) { try batch.put(Self.key(i), Self.value(i, 0)) }
            }
            written = min(keys, written + batchSize)
            progress.update("loading: \(written)/\(keys)")
        }
        for i in 0..<10 { try engine.put("session:\(i)", "token-\(i)", ttl: .seconds(3600)) }
        progress.finish()
        let loadSeconds = Date().timeIntervalSince(start)
        print(String(format: "1. loaded %d keys into %d shards in %.2f s (%.0f keys/s, atomic batches of %d)",
                     keys, shards, loadSeconds, Double(keys) / loadSeconds, batchSize))
        engine.close()

        // 2. Reopen and verify.
        engine = try ShardEngine.open(at: pathA)
        start = Date()
        for i in 0..<keys {
            guard try engine.get(Self.key(i)) == Array(Self.value(i, 0).utf8) else {
                throw ShardDBError(.storage, "verification failed: key \(Self.key(i)) lost or changed after reopen")
            }
        }
        let verifySeconds = Date().timeIntervalSince(start)
        print(String(format: "2. reopened and verified every key in %.2f s (%.0f gets/s)", verifySeconds, Double(keys) / verifySeconds))
        let infos = try engine.shards()
        printTable(header: ["shard", "range", "keys~", "bytes"],
                   rows: infos.map { [String($0.id), "\($0.descriptor.range)", String($0.estimatedKeys), String($0.approximateBytes)] })

        // 3. Move a shard live to a second instance while writers keep writing.
        let target = try ShardEngine.create(at: pathB, shards: 0, partitioning: engine.partitioning)
        let moving = shards / 2
        let load = DemoWriters(engines: [engine, target], keys: keys)
        let threads = (0..<writers).map { w in Thread { load.run(lane: w, lanes: writers) } }
        threads.forEach { $0.start() }
        print("3. moving shard \(moving) to \(pathB) with \(writers) writers running")
        let report = try await engine.migrate(MigrationRequest(shard: moving), to: target) { p in
            progress.update("   \(p.phase.rawValue): \(p.keysCopied) keys copied, \(p.changesApplied) changes applied, lag \(p.lag)")
        }
        progress.finish()
        // Let the writers run on after the cutover so some of them learn the new owner.
        let writesAtCutover = load.acknowledgedCount
        while writers > 0 && load.acknowledgedCount < writesAtCutover + 2_000 { try await Task.sleep(nanoseconds: 1_000_000) }
        load.stop()
        while load.running > 0 { try await Task.sleep(nanoseconds: 1_000_000) }
        if let failure = load.failure { throw failure }
        print(String(format: "   copied %d keys in %.2f s (%.1f MB/s), applied %d changes in %.2f s of catch-up",
                     report.keysCopied, report.bulkSeconds, Double(report.bytesCopied) / 1e6 / max(report.bulkSeconds, 1e-9),
                     report.changesApplied, report.catchUpSeconds))
        print(String(format: "   write pause at cutover: %.2f ms; %d writes acknowledged during the run, %d redirected to the new owner",
                     report.pauseMilliseconds, load.acknowledgedCount, load.redirected))

        // 4. Verify every acknowledged write on the instance that owns the key now.
        start = Date()
        var checked = 0
        for i in 0..<keys {
            let key = Self.key(i)
            let expected = load.lastValue(i) ?? Self.value(i, 0)
            let value: [UInt8]?
            do { value = try engine.get(key) } catch let error as ShardDBError where error.code == .keyNotOwned {
                guard error.owner == pathB else { throw error }
                value = try target.get(key)
            }
            guard value == Array(expected.utf8) else {
                throw ShardDBError(.storage, "verification failed: \(key) is \(value.map { String(decoding: $0, as: UTF8.self) } ?? "missing"), expected \(expected)")
            }
            checked += 1
        }
        print(String(format: "4. verified %d keys against the acknowledged writes in %.2f s: nothing lost, nothing resurrected",
                     checked, Date().timeIntervalSince(start)))
        print("   \(pathA): shards \(engine.shardDescriptors.filter { $0.state == .active }.map(\.id)); \(pathB): shards \(target.shardDescriptors.map(\.id))")
        target.close()
        engine.close()
        print("demo OK")
    }

    static func key(_ i: Int) -> String { "user:\(i)" }
    static func value(_ i: Int, _ version: Int) -> String { "profile-\(i)-v\(version)-" + String(repeating: "x", count: 24) }
}

/// Writers for the demo: overwrite random keys, follow moved keys to their new
/// owner, remember the last acknowledged value of each key.
final class DemoWriters: @unchecked Sendable {
    let engines: [ShardEngine]
    let keys: Int
    private let lock = NSLock()
    private var values: [Int: String] = [:]
    private var stopped = false
    private(set) var failure: Error?
    private var _acknowledged = 0, _redirected = 0, _running = 0

    init(engines: [ShardEngine], keys: Int) {
        self.engines = engines
        self.keys = keys
    }

    var acknowledgedCount: Int { lock.withLock { _acknowledged } }
    var redirected: Int { lock.withLock { _redirected } }
    var running: Int { lock.withLock { _running } }
    func lastValue(_ i: Int) -> String? { lock.withLock { values[i] } }
    func stop() { lock.withLock { stopped = true } }

    /// Writes keys `i` with `i % lanes == lane` only, so each key has one writer
    /// and its last acknowledged value is well defined.
    func run(lane: Int, lanes: Int) {
        lock.withLock { _running += 1 }
        defer { lock.withLock { _running -= 1 } }
        var state = UInt64(lane + 1) &* 0x9E37_79B9_7F4A_7C15
        var version = 1
        while !lock.withLock({ stopped }) {
            state = state &* 6364136223846793005 &+ 1442695040888963407
            let i = Int((state >> 33) % UInt64(keys / lanes)) * lanes + lane
            guard i < keys else { continue }
            let value = Demo.value(i, version)
            version += 1
            do {
                for (index, engine) in engines.enumerated() {
                    do {
                        try engine.put(Demo.key(i), value)
                        lock.withLock { values[i] = value; _acknowledged += 1 }
                        break
                    } catch let error as ShardDBError where error.code == .keyNotOwned && index + 1 < engines.count {
                        lock.withLock { _redirected += 1 }
                    }
                }
            } catch {
                lock.withLock { failure = error; stopped = true }
                return
            }
        }
    }
}
