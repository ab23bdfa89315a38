import Foundation
import XCTest

/// Kill -9 cycles of `shardctl stress` against its oracle (docs/CRASH_TESTING.md):
/// SIGKILL at random moments and at named failure points inside migrations and
/// checkpoints, then `stress --verify-only` (settle migrations, check contents,
/// shard maps and every listed checkpoint). CRASH_CYCLES sets the number of
/// cycles (default 30); `make crash-test CYCLES=1000` runs the long one.
final class CrashTests: ShardctlTestCase {
    static let failurePoints = [
        "migration.source.prepare", "migration.source.bulk-opened", "migration.source.bulk-chunk", "migration.source.tables-exported",
        "migration.source.before-fence", "migration.source.fenced", "migration.source.before-commit",
        "migration.source.committed", "migration.source.before-cleanup",
        "migration.target.prepare", "migration.target.bulk-ingested", "migration.target.tables-imported", "migration.target.bulk-chunk", "migration.target.changes",
        "migration.target.before-commit", "migration.target.committed",
        "checkpoint.begin", "checkpoint.after-cleanup", "checkpoint.before-backup", "checkpoint.copying",
        "checkpoint.after-backup", "checkpoint.after-stats",
        "checkpoint.purge.begin", "checkpoint.purge.before-delete", "checkpoint.purge.after-delete", "checkpoint.purge.end",
    ]

    func testKillCyclesAgainstTheOracle() throws {
        let cycles = Int(ProcessInfo.processInfo.environment["CRASH_CYCLES"] ?? "") ?? 30
        let seed = UInt64(ProcessInfo.processInfo.environment["CRASH_SEED"] ?? "") ?? UInt64.random(in: 1...1_000_000)
        var random = SeededRandom(seed: seed)
        // Two work directories: synchronous writes (every acknowledged write survives)
        // and asynchronous ones (the recovered state is a prefix of the history).
        let workdirs = [(path("sync"), ["--sync"]), (path("async"), [])]
        var through: [String: Int] = [:]  // the operation each work directory verified through
        for (workdir, mode) in workdirs {
            try shardctl(["stress", workdir, "--seed", "\(seed)", "--ops", "300"] + mode)
            let verified = try shardctl(["stress", workdir, "--verify-only"])
            through[workdir] = try XCTUnwrap(Self.numbers(in: verified.stdout, after: ["through operation "])[0], verified.stdout)
        }
        var failures: [String] = []
        var advancing = 0
        var pointsHit: [String: Int] = [:]
        var randomKills = 0, finishedRuns = 0
        let started = Date()
        for cycle in 0..<cycles {
            let (workdir, mode) = workdirs[cycle % 2]
            let (run, point) = try Self.killedStressRun(workdir, mode, atAPoint: cycle % 3 != 0, random: &random)
            if let hit = run.stderr.components(separatedBy: "failure point ").dropFirst().first?.split(separator: ":").first {
                pointsHit[String(hit), default: 0] += 1
            } else if run.signal == SIGKILL {
                randomKills += 1
            } else if run.status == 0 {
                finishedRuns += 1
            } else {
                failures.append("cycle \(cycle) (\(workdir)): stress exited \(run.status): \(run.stderr)")
                break
            }
            let verify = try ShardctlProcess.run(["stress", workdir, "--verify-only"])
            if verify.status != 0 || verify.signal != nil {
                failures.append("cycle \(cycle) (\(workdir), point \(point ?? "random")): verify failed: \(verify.stderr)")
                break
            }
            // "verified: K keys through operation N (L acknowledged lost), ...". A process
            // kill keeps the page cache, so nothing acknowledged may be lost even without
            // --sync (stress itself accepts an unsynced loss, which an OS crash can cause).
            let numbers = Self.numbers(in: verify.stdout, after: ["through operation ", "("])
            guard let reached = numbers[0], let lostCount = numbers[1] else {
                failures.append("cycle \(cycle): verify printed no 'through operation N (L acknowledged lost)': \(verify.stdout)")
                break
            }
            if lostCount > 0 {
                failures.append("cycle \(cycle) (\(workdir), point \(point ?? "random")): \(lostCount) acknowledged operations lost to a process kill: \(verify.stdout)")
                break
            }
            if reached > (through[workdir] ?? 0) { advancing += 1 }
            through[workdir] = reached
        }
        let summary = "crash test: \(cycles) cycles in \(Int(Date().timeIntervalSince(started))) s, seed \(seed): "
            + "\(randomKills) random kills, \(pointsHit.values.reduce(0, +)) at failure points "
            + "(\(pointsHit.sorted { $0.key < $1.key }.map { "\($0.key)×\($0.value)" }.joined(separator: ", "))), "
            + "\(finishedRuns) runs finished, \(failures.count) failures"
        print(summary)
        XCTAssertEqual(failures, [], summary)
        // Two cycles in three arm a point: if none ever fired, the points are not being
        // armed (SHARDDB_FAILPOINTS broken) and every cycle was only a random kill.
        if cycles >= 9 { XCTAssertFalse(pointsHit.isEmpty, "no failure point fired: \(summary)") }
        // A driver that hangs (killed at its deadline, like a random kill) makes no
        // progress in any cycle; one killed early on a loaded machine only in some.
        if failures.isEmpty && cycles >= 6 { XCTAssertGreaterThan(advancing, 0, "the workload never advanced in \(cycles) cycles") }
    }

    /// A move the oracle did not record (here: made behind the driver's back, as a
    /// recovery that rolled back a finished migration would leave things) keeps every
    /// key group owned once and every value readable, so only the oracle's owners
    /// catch it: verify fails and names the key group.
    func testVerifyCatchesAnOwnerTheOracleDoesNotExpect() throws {
        let workdir = path("owners")
        try shardctl(["stress", workdir, "--seed", "11", "--ops", "120"])
        let oracle = try String(contentsOfFile: workdir + "/oracle.jsonl", encoding: .utf8)
        let recovered = try XCTUnwrap(try jsonLines(oracle).last)
        XCTAssertEqual(recovered["type"] as? String, "recovered")
        let owners = try XCTUnwrap(recovered["owners"] as? String)
        XCTAssertEqual(owners.count, 64)
        XCTAssertTrue(owners.allSatisfy { $0 == "a" || $0 == "b" }, owners)
        try shardctl(["stress", workdir, "--verify-only"])

        let (from, to) = owners.contains("a") ? ("a", "b") : ("b", "a")
        let shard = try XCTUnwrap(try shards(workdir + "/" + from).first { $0["state"] as? String == "active" }?["id"] as? Int)
        try shardctl(["migrate", "--from", workdir + "/" + from, "--to", workdir + "/" + to, "--shard", "\(shard)"])
        let verify = try ShardctlProcess.run(["stress", workdir, "--verify-only"])
        XCTAssertEqual(verify.status, 2, verify.stderr)
        XCTAssertTrue(verify.stderr.contains("stress verify: ownership: key group "), verify.stderr)
        XCTAssertTrue(verify.stderr.contains("the oracle expects \(from)"), verify.stderr)
    }

    /// A put a migration's writer recorded as refused changed nothing: the oracle drops
    /// it, so an acknowledged put after it still has to be there (with --sync).
    func testARefusedPutChangesNothingInTheOracle() throws {
        let workdir = path("refused")
        try shardctl(["stress", workdir, "--seed", "3", "--ops", "40", "--sync"])
        let oraclePath = workdir + "/oracle.jsonl"
        let lines = try jsonLines(try String(contentsOfFile: oraclePath, encoding: .utf8))
        let last = lines.compactMap { $0["op"] as? Int }.max() ?? 0
        let (refused, acknowledged) = (last + 1, last + 2)
        var owner = "a"
        let probe = try ShardctlProcess.run(["get", workdir + "/a", "k00002"])
        if probe.stderr.contains("not owned") || probe.stderr.contains("moved to") { owner = "b" }
        var appended = #"{"type":"intent","op":\#(refused),"kind":"put","instance":"a","writes":[{"k":"k00001","v":"\#(refused).0","n":0}]}"# + "\n"
            + #"{"type":"result","op":\#(refused),"ok":false,"refused":true,"error":"refused"}"# + "\n"
            + #"{"type":"intent","op":\#(acknowledged),"kind":"put","instance":"\#(owner)","writes":[{"k":"k00002","v":"\#(acknowledged).0","n":0}]}"# + "\n"
        let handle = try XCTUnwrap(FileHandle(forWritingAtPath: oraclePath))
        try handle.seekToEnd()
        try handle.write(contentsOf: Data(appended.utf8))
        try shardctl(["put", workdir + "/" + owner, "k00002", "\(acknowledged).0|"])
        appended = #"{"type":"result","op":\#(acknowledged),"ok":true}"# + "\n"
        try handle.write(contentsOf: Data(appended.utf8))
        try handle.close()
        let verified = try shardctl(["stress", workdir, "--verify-only"])
        XCTAssertTrue(verified.stdout.contains("through operation \(acknowledged) (0 acknowledged lost)"), verified.stdout)
    }

    /// `import --no-wal` killed -9 right after the first flush keeps whole batches
    /// only. Each batch puts 99 big values in shard 0 and one small one in shard
    /// 1, so shard 0's memtable fills long before shard 1's: flushed one by one,
    /// the shards would keep shard 0's part of every batch and lose shard 1's.
    /// The flush is seen in RocksDB's LOG ("Level summary" once it is installed).
    func testAnImportWithoutTheLogKilledAfterAFlushKeepsWholeBatches() throws {
        let directory = path("no-wal")
        try shardctl(["init", directory, "--split-points", "m"])
        let running = try ShardctlProcess.start(["import", directory, "--no-wal", "--batch-size", "100"])
        let value = String(repeating: "x", count: 4000)
        let log = directory + "/LOG"
        func flushed() -> Bool {
            (try? String(contentsOfFile: log, encoding: .utf8))?.contains("[shard-0] Level summary") == true
        }
        var written = 0
        // About 170 batches fill a 64 MiB memtable; the flush runs while the next ones arrive.
        while !flushed() && written < 1000 {
            var text = ""
            for line in 0..<99 { text += "a\(String(format: "%06d", written))-\(line)\t\(value)\n" }
            text += "z\(String(format: "%06d", written))\tsmall\n"
            try running.stdin.write(contentsOf: Data(text.utf8))
            written += 1
        }
        kill(running.process.processIdentifier, SIGKILL)
        let run = running.finish()
        XCTAssertEqual(run.signal, SIGKILL, "the import ended before the kill: \(run.stderr)")
        XCTAssertTrue(flushed(), "no flush after \(written) batches")

        var keys: [String: Int] = [:]  // batch -> keys kept
        for line in try shardctl(["scan", directory]).stdout.split(separator: "\n") {
            let key = line.prefix { $0 != "\t" }
            keys[String(key.dropFirst().prefix(6)), default: 0] += 1
        }
        let torn = keys.filter { $0.value != 100 }
        XCTAssertTrue(torn.isEmpty, "batches kept in part: \(torn.sorted { $0.key < $1.key }.prefix(5))")
        XCTAssertFalse(keys.isEmpty, "the flushed batches were lost")
        // And what was kept is a prefix of the batches written.
        XCTAssertEqual(keys.keys.sorted(), (0..<keys.count).map { String(format: "%06d", $0) })
    }

    /// Runs `shardctl stress workdir` and kills it with SIGKILL after a random 0.3–1.5 s;
    /// or, `atAPoint`, at one of ``failurePoints`` (chosen at random, its first or
    /// second time) or after 0.3–3.0 s, whichever comes first. `environment` adds
    /// to the child's. Returns how the run ended and the point armed.
    static func killedStressRun(_ workdir: String, _ mode: [String], atAPoint: Bool, environment: [String: String] = [:],
                                random: inout SeededRandom) throws -> (run: ShardctlProcess.Result, point: String?) {
        var environment = environment
        var point: String?
        if atAPoint {
            point = failurePoints.randomElement(using: &random)!
            environment["SHARDDB_FAILPOINTS"] = "\(point!)=kill@\(Int.random(in: 1...2, using: &random))"
        }
        let running = try ShardctlProcess.start(["stress", workdir, "--ops", "100000"] + mode, environment: environment)
        let deadline = Date().addingTimeInterval(Double.random(in: 0.3...(point == nil ? 1.5 : 3.0), using: &random))
        while running.process.isRunning && Date() < deadline { usleep(10_000) }
        if running.process.isRunning { kill(running.process.processIdentifier, SIGKILL) }
        return (running.finish(), point)
    }

    /// The integers that follow each of `markers` in `text`, each marker looked for
    /// after the previous one (nil from the first one missing).
    static func numbers(in text: String, after markers: [String]) -> [Int?] {
        var rest = text[...]
        return markers.map { marker in
            guard let range = rest.range(of: marker) else { rest = rest[rest.endIndex...]; return nil }
            rest = rest[range.upperBound...]
            return Int(rest.prefix { $0.isNumber })
        }
    }
}

/// libc's seeded generator (drand48 family), so a failing cycle can be replayed with CRASH_SEED.
struct SeededRandom: RandomNumberGenerator {
    init(seed: UInt64) { srand48(Int(truncatingIfNeeded: seed)) }
    mutating func next() -> UInt64 {
        // lrand48 yields 31 bits; three calls fill 64.
        (UInt64(lrand48()) << 33) ^ (UInt64(lrand48()) << 2) ^ UInt64(lrand48() & 3)
    }
}
