import Foundation
import XCTest

/// `shardctl migrate` and `rescale` between data directories, including a
/// migration killed (SIGKILL) on either side of the target's commit.
final class MigrateCommandTests: ShardctlTestCase {
    /// `count` entries `key-N` = `value-N`, one with a TTL.
    private func makeSource(_ name: String, count: Int = 120) throws -> (dir: String, entries: [[UInt8]: [UInt8]]) {
        let dir = path(name)
        try shardctl(["init", dir, "--shards", "4"])
        let lines = (0..<count).map { #"{"key":"key-\#($0)","value":"value-\#($0)"\#($0 == 7 ? #","ttl":3600"# : "")}"# }
        try shardctl(["import", dir, "--format", "jsonl"], stdin: lines.joined(separator: "\n") + "\n")
        let entries = Dictionary(uniqueKeysWithValues: (0..<count).map { (Array("key-\($0)".utf8), Array("value-\($0)".utf8)) })
        return (dir, entries)
    }

    /// The keys `scan --shard` lists for one shard, with their values.
    private func shardEntries(_ dir: String, shard: Int) throws -> [String: String] {
        let records = try jsonLines(try shardctl(["scan", dir, "--shard", "\(shard)", "--json"]).stdout)
        return Dictionary(uniqueKeysWithValues: records.map { ($0["key"] as! String, $0["value"] as! String) })
    }

    /// Active shard ranges of an instance.
    private func activeRanges(_ dir: String) throws -> [String] {
        try shards(dir).filter { $0["state"] as? String == "active" }.compactMap { $0["range"] as? String }
    }

    /// Every entry is readable from exactly one of `dirs`, and together they hold exactly `expected`.
    private func assertPartitioned(_ expected: [[UInt8]: [UInt8]], over dirs: [String],
                                   file: StaticString = #filePath, line: UInt = #line) throws {
        var union: [[UInt8]: [UInt8]] = [:]
        for dir in dirs {
            for (key, value) in try exported(dir, file: file, line: line) {
                XCTAssertNil(union[key], "\(String(decoding: key, as: UTF8.self)) is live on two instances", file: file, line: line)
                union[key] = value
            }
        }
        XCTAssertEqual(union, expected, file: file, line: line)
    }

    func testMigrateShardAndRangeThenRescale() throws {
        let (a, entries) = try makeSource("A")
        let b = path("B"), c = path("C")
        try shardctl(["init", b, "--shards", "0", "--like", a])
        let shard1 = try shardEntries(a, shard: 1)
        XCTAssertFalse(shard1.isEmpty)

        // A whole shard.
        let moved = try shardctl(["migrate", "--from", a, "--to", b, "--shard", "1", "--json"])
        XCTAssertEqual(moved.stderr, "", "no progress off a TTY")
        let report = try XCTUnwrap(JSONSerialization.jsonObject(with: moved.stdoutData) as? [String: Any])
        XCTAssertEqual(report["sourceShard"] as? Int, 1)
        XCTAssertEqual(report["targetShard"] as? Int, 1)
        XCTAssertEqual(report["range"] as? String, "kg[1024,2048)")
        XCTAssertEqual(report["keysCopied"] as? Int, shard1.count)
        XCTAssertEqual(report["bulkTransfer"] as? String, "tableFiles", "a whole shard between directories")
        XCTAssertFalse(FileManager.default.fileExists(atPath: a + "/migration-export/" + (report["id"] as? String ?? "")))
        for field in ["bytesCopied", "changesApplied", "snapshotSequence", "finalSequence"] {
            XCTAssertNotNil(report[field] as? Int, "\(field) in \(report)")
        }
        for field in ["bulkSeconds", "catchUpSeconds", "pauseMilliseconds", "totalSeconds"] {
            XCTAssertNotNil(report[field] as? Double, "\(field) in \(report)")
        }
        XCTAssertEqual((report["id"] as? String)?.isEmpty, false)

        let (movedKey, movedValue) = try XCTUnwrap(shard1.min { $0.key < $1.key })
        XCTAssertEqual(try shardctl(["get", b, movedKey]).stdout, movedValue + "\n")
        let stale = try ShardctlProcess.run(["get", a, movedKey])
        assertError(stale, mentioning: "moved to \(b)", "get on the old owner names the new one")
        assertError(try ShardctlProcess.run(["put", a, movedKey, "x"]), mentioning: "moved to \(b)")
        XCTAssertEqual(try shards(a).first { $0["id"] as? Int == 1 }?["state"] as? String, "moved-to-\(b)")
        XCTAssertEqual(try activeRanges(b), ["kg[1024,2048)"])
        try assertPartitioned(entries, over: [a, b])

        // A split: the lower half of shard 0's key groups.
        let shard0 = try shardEntries(a, shard: 0)
        let split = try shardctl(["migrate", "--from", a, "--to", b, "--shard", "0", "--range", "0..512", "--json"])
        let splitReport = try XCTUnwrap(JSONSerialization.jsonObject(with: split.stdoutData) as? [String: Any])
        XCTAssertEqual(splitReport["range"] as? String, "kg[0,512)")
        XCTAssertEqual(splitReport["bulkTransfer"] as? String, "entries", "part of a shard")
        XCTAssertEqual(Set(try activeRanges(a)), ["kg[512,1024)", "kg[2048,3072)", "kg[3072,4096)"])
        XCTAssertEqual(Set(try activeRanges(b)), ["kg[0,512)", "kg[1024,2048)"])
        let kept = try shardEntries(a, shard: 0)
        XCTAssertEqual(splitReport["keysCopied"] as? Int, shard0.count - kept.count)
        XCTAssertFalse(kept.isEmpty)
        XCTAssertLessThan(kept.count, shard0.count)
        try assertPartitioned(entries, over: [a, b])

        // Rescale onto three instances: the plan first (C does not exist yet), then for real.
        let dryRun = try shardctl(["rescale", "--from", "\(a),\(b)", "--to", "\(a),\(b),\(c)", "--dry-run", "--json"])
        let plan = try XCTUnwrap(JSONSerialization.jsonObject(with: dryRun.stdoutData) as? [String: Any])
        let plannedMoves = try XCTUnwrap(plan["moves"] as? [[String: Any]])
        XCTAssertFalse(plannedMoves.isEmpty)
        XCTAssertEqual((plan["finalRanges"] as? [String: Any])?.count, 3)
        XCTAssertNotNil(plan["keyGroupsMoved"] as? Int)
        XCTAssertFalse(FileManager.default.fileExists(atPath: c), "a dry run creates nothing")
        try assertPartitioned(entries, over: [a, b])

        let rescaled = try shardctl(["rescale", "--from", "\(a),\(b)", "--to", "\(a),\(b),\(c)", "--json"])
        let result = try XCTUnwrap(JSONSerialization.jsonObject(with: rescaled.stdoutData) as? [String: Any])
        let moves = try XCTUnwrap((result["plan"] as? [String: Any])?["moves"] as? [[String: Any]])
        XCTAssertEqual(moves.count, plannedMoves.count, "the run follows the dry run's plan")
        XCTAssertEqual((result["reports"] as? [Any])?.count, moves.count)
        XCTAssertTrue(moves.contains { $0["toLocation"] as? String == c })
        // Each instance ends up owning one contiguous third of the key groups.
        let owned = try [a, b, c].map { try activeRanges($0) }
        XCTAssertTrue(owned.allSatisfy { !$0.isEmpty }, "\(owned)")
        try assertPartitioned(entries, over: [a, b, c])
        XCTAssertFalse(try exported(c).isEmpty)
        let ttlRecord = try [a, b, c].flatMap { try jsonLines(try shardctl(["export", $0, "--format", "jsonl"]).stdout) }
            .first { $0["key"] as? String == "key-7" }
        XCTAssertNotNil(ttlRecord?["expiresAt"] as? Int64, "the expiry travels with the entry")

        // Every key is readable from its owner; asking another instance names the owner (spot check).
        let key = "key-3"
        let answers = try [a, b, c].map { try ShardctlProcess.run(["get", $0, key]) }
        XCTAssertEqual(answers.filter { $0.status == 0 }.map(\.stdout), ["value-3\n"])
        for answer in answers where answer.status != 0 { assertError(answer, mentioning: "not owned") }
    }

    /// `--copy-table-files` copies a whole shard's table files into the target
    /// instead of hard-linking them: no target file shares an inode with a file
    /// the source had (without the flag some do). The source keeps its files
    /// (`--no-cleanup`), so no inode of theirs is freed and reused meanwhile.
    /// The help names the wire compression's values and its default by name (the
    /// parser showed the raw value, "default: 1", which the option does not take).
    func testHelpShowsTheWireCompressionByName() throws {
        for command in ["migrate", "rescale"] {
            let help = try shardctl([command, "--help"]).stdout.split(separator: "\n").joined(separator: " ")
                .split(separator: " ", omittingEmptySubsequences: true).joined(separator: " ")
            XCTAssertTrue(help.contains("--wire-compression"), help)
            XCTAssertTrue(help.contains("(values: snappy, none; default: snappy)"), "\(command): \(help)")
        }
    }

    func testCopyTableFilesDoesNotLink() throws {
        func inodes(_ dir: String) throws -> Set<UInt64> {
            let files = try FileManager.default.contentsOfDirectory(atPath: dir).filter { $0.hasSuffix(".sst") }
            return Set(try files.map { try XCTUnwrap((try FileManager.default.attributesOfItem(atPath: dir + "/" + $0))[.systemFileNumber] as? UInt64) })
        }
        for copy in [true, false] {
            let (a, _) = try makeSource(copy ? "A-copy" : "A-link")
            let b = path(copy ? "B-copy" : "B-link")
            try shardctl(["init", b, "--shards", "0", "--like", a])
            try shardctl(["compact", a])  // the shard's entries in table files
            let before = try inodes(a)
            let shard1 = try shardEntries(a, shard: 1)
            let moved = try shardctl(["migrate", "--from", a, "--to", b, "--shard", "1", "--no-cleanup", "--json"]
                                     + (copy ? ["--copy-table-files"] : []))
            let report = try XCTUnwrap(JSONSerialization.jsonObject(with: moved.stdoutData) as? [String: Any])
            XCTAssertEqual(report["bulkTransfer"] as? String, "tableFiles")
            let shared = before.intersection(try inodes(b))
            XCTAssertEqual(shared.isEmpty, copy, copy ? "copied, not linked" : "linked by default")
            XCTAssertEqual(try shardEntries(b, shard: 1), shard1)
            XCTAssertEqual(try exported(b).count, shard1.count, "the target holds shard 1 alone")
            XCTAssertFalse(shard1.isEmpty)
        }
    }

    /// `--verbose` logs the migration's steps on stderr (swift-log), and stdout keeps the report alone.
    func testVerboseLogsTheStepsOnStderr() throws {
        let (a, entries) = try makeSource("A")
        let b = path("B"), c = path("C")
        try shardctl(["init", b, "--shards", "0", "--like", a])
        let moved = try shardctl(["migrate", "--from", a, "--to", b, "--shard", "1", "--verbose", "--json"])
        XCTAssertNotNil(try JSONSerialization.jsonObject(with: moved.stdoutData) as? [String: Any], moved.stdout)
        for step in ["migration prepared (source)", "migration prepared (target)", "bulk copy as table files",
                     "migration committed (target)", "migration committed (source)"] {
            XCTAssertTrue(moved.stderr.contains(step), "'\(step)' in \(moved.stderr)")
        }
        let rescaled = try shardctl(["rescale", "--from", "\(a),\(b)", "--to", "\(a),\(b),\(c)", "--verbose", "--json"])
        XCTAssertNotNil(try JSONSerialization.jsonObject(with: rescaled.stdoutData) as? [String: Any], rescaled.stdout)
        XCTAssertTrue(rescaled.stderr.contains("migration committed (target)"), rescaled.stderr)
        try assertPartitioned(entries, over: [a, b, c])
    }

    /// SIGKILL after the target committed (the source had not): the range is fenced
    /// on the source until the next migrate between the two settles it forward.
    func testKillBeforeSourceCommitSettlesOnTheTarget() throws {
        let (a, b, entries, shard0) = try killedMigrationOfShard0(at: "migration.source.before-commit")
        let (key, value) = try XCTUnwrap(shard0.min { $0.key < $1.key })

        let inDoubt = try ShardctlProcess.run(["get", a, key])
        XCTAssertNotEqual(inDoubt.status, 0)
        assertError(inDoubt, "get during the doubt")
        XCTAssertTrue(inDoubt.stderr.contains("migrat") || inDoubt.stderr.contains("moved to \(b)"), inDoubt.stderr)

        // Any migrate between the two settles the unfinished one first, and says so.
        let moved = try shardctl(["migrate", "--from", a, "--to", b, "--shard", "1", "--json"])
        let report = try XCTUnwrap(JSONSerialization.jsonObject(with: Data(moved.stdout.utf8)) as? [String: Any])
        XCTAssertEqual((report["settled"] as? [String])?.count, 1, moved.stdout)
        XCTAssertEqual(try shardctl(["get", b, key]).stdout, value + "\n")
        assertError(try ShardctlProcess.run(["get", a, key]), mentioning: "moved to \(b)")
        XCTAssertEqual(try shards(a).first { $0["id"] as? Int == 0 }?["state"] as? String, "moved-to-\(b)")
        XCTAssertEqual(Set(try activeRanges(b)), ["kg[0,1024)", "kg[1024,2048)"])
        let onB = try exported(b)
        for (k, v) in shard0 { XCTAssertEqual(onB[Array(k.utf8)], Array(v.utf8), "\(k) moved with its value") }
        try assertPartitioned(entries, over: [a, b])
    }

    /// SIGKILL before the target committed: the settle rolls back; the source still
    /// owns the range and the target keeps no trace of it.
    func testKillBeforeTargetCommitRollsBack() throws {
        let (a, b, entries, shard0) = try killedMigrationOfShard0(at: "migration.target.before-commit")
        let (key, value) = try XCTUnwrap(shard0.min { $0.key < $1.key })

        let inDoubt = try ShardctlProcess.run(["get", a, key])
        assertError(inDoubt, "get during the doubt")
        XCTAssertTrue(inDoubt.stderr.contains("migrat"), inDoubt.stderr)
        XCTAssertEqual(try shards(b).count, 0, "nothing committed on the target")

        try shardctl(["migrate", "--from", a, "--to", b, "--shard", "1"])
        XCTAssertEqual(try shardctl(["get", a, key]).stdout, value + "\n")
        XCTAssertEqual(try shardEntries(a, shard: 0), shard0)
        XCTAssertEqual(try activeRanges(b), ["kg[1024,2048)"])
        assertError(try ShardctlProcess.run(["get", b, key]), mentioning: "not owned")
        XCTAssertTrue(try exported(b).keys.allSatisfy { shard0[String(decoding: $0, as: UTF8.self)] == nil })
        try assertPartitioned(entries, over: [a, b])
        // The shard can still move afterwards.
        try shardctl(["migrate", "--from", a, "--to", b, "--shard", "0"])
        XCTAssertEqual(try shardctl(["get", b, key]).stdout, value + "\n")
        try assertPartitioned(entries, over: [a, b])
    }

    /// On a terminal a migration draws its progress on stderr (a line redrawn in
    /// place); off one it draws nothing (the other tests). `script` gives it a
    /// pseudo-terminal.
    func testProgressIsDrawnOnATerminal() throws {
        let scriptTool = "/usr/bin/script"
        guard FileManager.default.isExecutableFile(atPath: scriptTool) else { throw XCTSkip("no \(scriptTool) (util-linux)") }
        let (a, _) = try makeSource("A", count: 200)
        let b = path("B")
        try shardctl(["init", b, "--shards", "0", "--like", a])
        let command = [try ShardctlProcess.executable.path, "migrate", "--from", a, "--to", b, "--shard", "1"]
            .map { "'" + $0 + "'" }.joined(separator: " ")
        let process = Process()
        process.executableURL = URL(fileURLWithPath: scriptTool)
        process.arguments = ["-qec", command, "/dev/null"]
        let output = Pipe()
        process.standardOutput = output
        process.standardInput = FileHandle.nullDevice
        try process.run()
        let text = String(decoding: output.fileHandleForReading.readDataToEndOfFile(), as: UTF8.self)
        process.waitUntilExit()
        XCTAssertEqual(process.terminationStatus, 0, text)
        XCTAssertTrue(text.contains("\r\u{1B}[Kprepare: "), "a progress line, redrawn in place: \(text.debugDescription)")
        XCTAssertTrue(text.contains("migrated "), text)
    }

    /// A rescale after a move killed in doubt (the target committed, the source not):
    /// it settles the move first by the journals instead of refusing the range as
    /// owned twice; a dry run, which changes nothing, says so instead.
    func testRescaleSettlesAKilledMoveFirst() throws {
        let (a, b, entries, shard0) = try killedMigrationOfShard0(at: "migration.source.before-commit")
        assertError(try ShardctlProcess.run(["rescale", "--from", "\(a),\(b)", "--to", "\(a),\(b)", "--dry-run"]),
                    mentioning: "unfinished")
        let rescaled = try shardctl(["rescale", "--from", "\(a),\(b)", "--to", "\(a),\(b)", "--json"])
        let result = try XCTUnwrap(JSONSerialization.jsonObject(with: rescaled.stdoutData) as? [String: Any])
        XCTAssertEqual((result["settled"] as? [String])?.count, 1, rescaled.stdout)
        try assertPartitioned(entries, over: [a, b])
        let (key, value) = try XCTUnwrap(shard0.min { $0.key < $1.key })
        let answers = try [a, b].map { try ShardctlProcess.run(["get", $0, key]) }
        XCTAssertEqual(answers.filter { $0.status == 0 }.map(\.stdout), [value + "\n"])
    }

    /// A rescale whose second new instance cannot be created removes the first one
    /// it made: nothing had moved, and a refused run leaves nothing behind.
    func testRescaleThatCannotCreateATargetLeavesNone() throws {
        let (a, entries) = try makeSource("A", count: 40)
        let made = path("new"), blocker = path("file")
        FileManager.default.createFile(atPath: blocker, contents: Data("x".utf8))
        let refused = try ShardctlProcess.run(["rescale", "--from", a, "--to", "\(a),\(made),\(blocker)/x"])
        assertError(refused, mentioning: "\(blocker)/x")
        XCTAssertFalse(FileManager.default.fileExists(atPath: made), "the instance made for the run is removed")
        XCTAssertEqual(try exported(a), entries)
    }

    /// Instance A (4 shards, loaded) and an empty B like it; `migrate --from A --to B --shard 0`
    /// killed by SIGKILL at failure point `point`. Returns shard 0's entries as they were.
    private func killedMigrationOfShard0(at point: String, file: StaticString = #filePath, line: UInt = #line) throws
        -> (a: String, b: String, entries: [[UInt8]: [UInt8]], shard0: [String: String]) {
        try assertFailurePointsExist([point], file: file, line: line)
        let (a, entries) = try makeSource("A", count: 80)
        let b = path("B")
        try shardctl(["init", b, "--shards", "0", "--like", a])
        let shard0 = try shardEntries(a, shard: 0)
        let killed = try ShardctlProcess.run(["migrate", "--from", a, "--to", b, "--shard", "0"],
                                             environment: ["SHARDDB_FAILPOINTS": "\(point)=kill"])
        XCTAssertEqual(killed.signal, SIGKILL, "status \(killed.status), stderr \(killed.stderr)", file: file, line: line)
        XCTAssertEqual(killed.status, 9, file: file, line: line)
        return (a, b, entries, shard0)
    }

    /// The failure points the kill tests arm are named in the migration sources.
    private func assertFailurePointsExist(_ names: [String], file: StaticString = #filePath, line: UInt = #line) throws {
        let migration = URL(fileURLWithPath: #filePath).deletingLastPathComponent().deletingLastPathComponent()
            .deletingLastPathComponent().appendingPathComponent("Sources/ShardDB/Migration")
        let files = try FileManager.default.contentsOfDirectory(atPath: migration.path).filter { $0.hasSuffix(".swift") }
        let sources = try files.map { try String(contentsOf: migration.appendingPathComponent($0), encoding: .utf8) }.joined()
        for name in names {
            XCTAssertTrue(sources.contains("FailurePoints.hit(\"\(name)\")"), "\(name) is not in \(migration.path)", file: file, line: line)
        }
    }
}
