import Foundation
import ShardDB
import XCTest

/// `shardctl checkpoint ...` run as a child process, including kills at failure points.
final class CheckpointCommandTests: XCTestCase {
    private var root: URL!

    override func setUpWithError() throws {
        root = FileManager.default.temporaryDirectory.appendingPathComponent("CheckpointCommandTests-\(UUID().uuidString)")
        try FileManager.default.createDirectory(at: root, withIntermediateDirectories: true)
    }

    override func tearDownWithError() throws {
        try? FileManager.default.removeItem(at: root)
    }

    private func path(_ name: String) -> String { root.appendingPathComponent(name).path }

    /// An instance with `keys` entries of ~1 KB, closed.
    private func makeInstance(_ name: String = "instance", keys: Int = 3000) throws -> String {
        let dir = path(name)
        let engine = try ShardEngine.create(at: dir, shards: 4)
        defer { engine.close() }
        let pad = String(repeating: "v", count: 1000)
        for start in stride(from: 0, to: keys, by: 500) {
            try engine.write { batch in for i in start..<min(keys, start + 500) { try batch.put("key-\(i)", "\(i)-\(pad)") } }
        }
        return dir
    }

    private func contents(_ dir: String) throws -> [[UInt8]: [UInt8]] {
        let engine = try ShardEngine.open(at: dir)
        defer { engine.close() }
        var result: [[UInt8]: [UInt8]] = [:]
        for entry in try engine.entries() { result[entry.key] = entry.value }
        return result
    }

    private func listed(_ store: String) throws -> [[String: Any]] {
        let result = try CheckpointCLI.run(["checkpoint", "list", "--store", store, "--json"])
        XCTAssertEqual(result.status, 0, result.stderr)
        return try XCTUnwrap(JSONSerialization.jsonObject(with: Data(result.stdout.utf8)) as? [[String: Any]])
    }

    func testCreateListVerifyRestorePurge() throws {
        let instance = try makeInstance()
        let store = path("store")
        let created = try CheckpointCLI.run(["checkpoint", "create", instance, "--store", store, "--metadata", "reason=test", "--json"])
        XCTAssertEqual(created.status, 0, created.stderr)
        let info = try XCTUnwrap(JSONSerialization.jsonObject(with: Data(created.stdout.utf8)) as? [String: Any])
        XCTAssertEqual(info["id"] as? Int, 1)
        XCTAssertEqual(info["metadata"] as? [String: String], ["reason": "test"])
        XCTAssertEqual((info["shards"] as? [Any])?.count, 4)
        XCTAssertNotNil(info["bytesCopied"] as? Int)
        XCTAssertEqual(try CheckpointCLI.run(["checkpoint", "create", instance, "--store", store]).status, 0)

        XCTAssertEqual(try listed(store).compactMap { $0["id"] as? Int }, [1, 2])
        let text = try CheckpointCLI.run(["checkpoint", "list", "--store", store])
        XCTAssertTrue(text.stdout.contains("reason=test"), text.stdout)
        let verified = try CheckpointCLI.run(["checkpoint", "verify", "--store", store])
        XCTAssertEqual(verified.status, 0, verified.stderr)
        XCTAssertTrue(verified.stdout.contains("checkpoint 2: ok"), verified.stdout)

        let restored = try CheckpointCLI.run(["checkpoint", "restore", "--store", store, "--id", "1", path("restored")])
        XCTAssertEqual(restored.status, 0, restored.stderr)
        XCTAssertEqual(try contents(path("restored")), try contents(instance))

        let purged = try CheckpointCLI.run(["checkpoint", "purge", "--store", store, "--keep", "1", "--json"])
        XCTAssertEqual(purged.status, 0, purged.stderr)
        XCTAssertEqual(try listed(store).compactMap { $0["id"] as? Int }, [2])
    }

    /// Runs `arguments`, expecting exit status `status` and one line on stderr that mentions `text`.
    private func assertFails(_ arguments: [String], status: Int32 = 2, mentioning text: String,
                             file: StaticString = #filePath, line: UInt = #line) throws {
        let result = try CheckpointCLI.run(arguments)
        XCTAssertEqual(result.status, status, "\(arguments): \(result.stdout)", file: file, line: line)
        XCTAssertTrue(result.stderr.hasPrefix("shardctl: error: "), result.stderr, file: file, line: line)
        XCTAssertEqual(result.stderr.split(separator: "\n").count, 1, result.stderr, file: file, line: line)
        XCTAssertTrue(result.stderr.contains(text), "\(result.stderr) should mention \(text)", file: file, line: line)
    }

    func testErrorsAreOneLineWithExitStatus2() throws {
        let instance = try makeInstance(keys: 10)
        let store = path("store")
        try assertFails(["checkpoint", "list", "--store", path("missing")], mentioning: "does not exist")
        XCTAssertEqual(try CheckpointCLI.run(["checkpoint", "create", instance, "--store", store]).status, 0)
        try assertFails(["checkpoint", "verify", "--store", store, "--id", "9"], mentioning: "no checkpoint 9")
        try assertFails(["checkpoint", "restore", "--store", store, "--id", "9", path("r")], mentioning: "no checkpoint 9")
        try assertFails(["checkpoint", "restore", "--store", store, instance], mentioning: "not an empty directory")
        // Inside the store, the next create would collect the restored files as leftovers.
        // Also through a symbolic link to a folder of the store, with a target that does not exist yet.
        try FileManager.default.createSymbolicLink(atPath: path("into-store"), withDestinationPath: store + "/backups")
        for inside in [store + "/backups/private/77", store, path("into-store") + "/new"] {
            try assertFails(["checkpoint", "restore", "--store", store, inside], mentioning: "inside the checkpoint store")
        }
        XCTAssertFalse(FileManager.default.fileExists(atPath: store + "/backups/private/77"))
        XCTAssertFalse(FileManager.default.fileExists(atPath: store + "/backups/new"))
        try assertFails(["checkpoint", "create", instance, "--store", store, "--metadata", "novalue"], mentioning: "key=value")
        try assertFails(["checkpoint", "create", instance, "--store", store, "--metadata", "a=1", "--metadata", "a=2"],
                        mentioning: "'a' twice")
        let other = try makeInstance("other", keys: 10)
        try assertFails(["checkpoint", "create", other, "--store", store], mentioning: "belongs to instance")
        XCTAssertEqual(try listed(store).count, 1)
        // Metadata with control bytes is listed escaped, on one line.
        XCTAssertEqual(try CheckpointCLI.run(["checkpoint", "create", instance, "--store", store,
                                              "--metadata", "note=two\nlines\u{1b}[2J"]).status, 0)
        let list = try CheckpointCLI.run(["checkpoint", "list", "--store", store])
        XCTAssertEqual(list.status, 0, list.stderr)
        XCTAssertTrue(list.stdout.contains("note=two\\nlines\\x1b[2J"), list.stdout)
        XCTAssertFalse(list.stdout.contains("\u{1b}"), list.stdout)
        try assertFails(["checkpoint", "purge", "--store", store, "--keep", "0"], status: 64, mentioning: "at least 1")
        XCTAssertEqual(try listed(store).count, 2)
        // The meta folder lost: every command refuses, nothing is collected.
        try FileManager.default.moveItem(atPath: store + "/backups/meta", toPath: path("meta-aside"))
        let before = files(of: store)
        try assertFails(["checkpoint", "create", instance, "--store", store], mentioning: "no backups/meta folder")
        try assertFails(["checkpoint", "list", "--store", store], mentioning: "no backups/meta folder")
        try assertFails(["checkpoint", "purge", "--store", store, "--keep", "1"], mentioning: "no backups/meta folder")
        XCTAssertEqual(files(of: store), before)
    }

    /// `restore --new-instance-id` makes a copy that can migrate a shard back into
    /// the instance the checkpoint was taken of; without it the migration is refused.
    func testAShardComesBackThroughARestoreWithANewInstanceID() throws {
        let instance = try makeInstance(keys: 400)
        let store = path("store")
        XCTAssertEqual(try CheckpointCLI.run(["checkpoint", "create", instance, "--store", store]).status, 0)
        let engine = try ShardEngine.open(at: instance)
        let originalID = engine.instanceID
        guard case .keyGroups(let groups) = engine.shardDescriptors.first(where: { $0.id == 2 })!.range else {
            return XCTFail("hash partitioning expected")
        }
        let lost = (0..<400).map { "key-\($0)" }.filter { groups.contains(engine.keyGroup(of: $0)!) }
        XCTAssertFalse(lost.isEmpty)
        try engine.write { batch in for key in lost { try batch.delete(key) } }
        engine.close()

        XCTAssertEqual(try CheckpointCLI.run(["checkpoint", "restore", "--store", store, path("same-id")]).status, 0)
        try assertFails(["migrate", "--from", path("same-id"), "--to", instance, "--shard", "2", "--on-conflict", "source-wins"],
                        mentioning: "same instance")
        let restored = try CheckpointCLI.run(["checkpoint", "restore", "--store", store, path("copy"), "--new-instance-id", "--json"])
        XCTAssertEqual(restored.status, 0, restored.stderr)
        let report = try XCTUnwrap(JSONSerialization.jsonObject(with: Data(restored.stdout.utf8)) as? [String: Any])
        XCTAssertEqual(report["instance"] as? String, originalID)
        let newID = try XCTUnwrap(report["restoredInstance"] as? String)
        XCTAssertNotEqual(newID, originalID)
        let moved = try CheckpointCLI.run(["migrate", "--from", path("copy"), "--to", instance, "--shard", "2", "--on-conflict", "source-wins"])
        XCTAssertEqual(moved.status, 0, moved.stderr)
        let back = try contents(instance)
        XCTAssertEqual(back.count, 400)
        for key in lost { XCTAssertEqual(back[Array(key.utf8)].map { String(decoding: $0, as: UTF8.self).hasPrefix(key.dropFirst(4) + "-") }, true, key) }
        let text = try CheckpointCLI.run(["checkpoint", "restore", "--store", store, path("copy-2"), "--new-instance-id"])
        XCTAssertEqual(text.status, 0, text.stderr)
        XCTAssertTrue(text.stdout.contains("as new instance "), text.stdout)
    }

    /// A checkpoint whose record a newer ShardDB wrote (format 9) is refused by
    /// name, not verified and restored as if this version understood it: listed
    /// as damaged (it used to make `list` fail for the whole store), refused by restore.
    func testACheckpointInANewerFormatIsRefused() throws {
        let instance = try makeInstance(keys: 10)
        let store = path("store")
        XCTAssertEqual(try CheckpointCLI.run(["checkpoint", "create", instance, "--store", store]).status, 0)
        let meta = store + "/backups/meta/1"
        var lines = try String(contentsOfFile: meta, encoding: .utf8).components(separatedBy: "\n")
        let index = try XCTUnwrap(lines.firstIndex { $0.hasPrefix("metadata ") })
        let hex = Array(lines[index].dropFirst("metadata ".count).utf8)
        var json = String(decoding: stride(from: 0, to: hex.count, by: 2).map { UInt8(String(decoding: hex[$0..<$0 + 2], as: UTF8.self), radix: 16)! },
                          as: UTF8.self)
        XCTAssertTrue(json.contains("\"format\":1"), json)
        json = json.replacingOccurrences(of: "\"format\":1", with: "\"format\":9")
        lines[index] = "metadata " + json.utf8.map { String(format: "%02X", $0) }.joined()
        try lines.joined(separator: "\n").write(toFile: meta, atomically: true, encoding: .utf8)
        let list = try CheckpointCLI.run(["checkpoint", "list", "--store", store])
        XCTAssertEqual(list.status, 0, list.stderr)
        XCTAssertTrue(list.stdout.contains("damaged") && list.stdout.contains("format version 9"), list.stdout)
        for arguments in [["checkpoint", "restore", "--store", store, "--id", "1", path("r")],
                          ["checkpoint", "restore", "--store", store, path("r")],
                          ["checkpoint", "verify", "--store", store]] {
            try assertFails(arguments, mentioning: "format version 9")
        }
        XCTAssertFalse(FileManager.default.fileExists(atPath: path("r")))
    }

    // MARK: Damaged checkpoints

    /// Checkpoints 1 and 2 of a small instance, with a put between; returns the instance.
    private func storeWithTwoCheckpoints(_ store: String) throws -> String {
        let instance = try makeInstance(keys: 10)
        XCTAssertEqual(try CheckpointCLI.run(["checkpoint", "create", instance, "--store", store]).status, 0)
        XCTAssertEqual(try CheckpointCLI.run(["put", instance, "after-first", "x"]).status, 0)
        XCTAssertEqual(try CheckpointCLI.run(["checkpoint", "create", instance, "--store", store]).status, 0)
        return instance
    }

    /// Every file of the store with its size: what a refused command must leave as it was.
    private func files(of store: String) -> [String] {
        CorruptionTests.files(in: store).map { "\($0) \(CorruptionTests.size($0))" }.sorted()
    }

    func testCheckpointsMissingASharedFileAreListedAndKeptUntilDroppedExplicitly() throws {
        let store = path("store")
        let instance = try storeWithTwoCheckpoints(store)
        // A table file of checkpoint 1, which checkpoint 2 shares (nothing was compacted away).
        let meta = try String(contentsOfFile: store + "/backups/meta/1", encoding: .utf8)
        let shared = try XCTUnwrap(meta.split(separator: "\n").first { $0.hasPrefix("shared_checksum/") }?.split(separator: " ").first)
        try FileManager.default.removeItem(atPath: store + "/backups/" + shared)
        let name = String(shared.split(separator: "/").last!)
        let damaged = files(of: store)

        let entries = try listed(store)
        XCTAssertEqual(entries.compactMap { $0["id"] as? Int }, [1, 2])
        XCTAssertTrue(entries.allSatisfy { ($0["damaged"] as? String)?.contains(name) ?? false }, "\(entries)")
        let text = try CheckpointCLI.run(["checkpoint", "list", "--store", store])
        XCTAssertEqual(text.status, 0, text.stderr)
        XCTAssertEqual(text.stdoutLines.filter { $0.contains("damaged: ") && $0.contains(name) }.count, 2, text.stdout)

        try assertFails(["checkpoint", "verify", "--store", store, "--id", "2"], mentioning: name)
        try assertFails(["checkpoint", "verify", "--store", store], mentioning: name)
        try assertFails(["checkpoint", "restore", "--store", store, path("restored")], mentioning: "--id")
        XCTAssertFalse(FileManager.default.fileExists(atPath: path("restored")))
        try assertFails(["checkpoint", "create", instance, "--store", store], mentioning: "--drop-damaged")
        XCTAssertEqual(files(of: store), damaged, "a refused create deletes nothing")
        try assertFails(["checkpoint", "purge", "--store", store, "--keep", "1"], mentioning: "--drop-damaged")
        XCTAssertEqual(files(of: store), damaged, "a refused purge deletes nothing")
        try assertFails(["checkpoint", "purge", "--store", store], status: 64, mentioning: "--drop-damaged")

        let dropped = try CheckpointCLI.run(["checkpoint", "purge", "--store", store, "--drop-damaged", "--json"])
        XCTAssertEqual(dropped.status, 0, dropped.stderr)
        XCTAssertEqual(try JSONSerialization.jsonObject(with: Data(dropped.stdout.utf8)) as? [String: [Int]], ["deleted": [1, 2]])
        XCTAssertEqual(try listed(store).count, 0)
        XCTAssertEqual(try CheckpointCLI.run(["checkpoint", "create", instance, "--store", store]).status, 0)
        let restored = try CheckpointCLI.run(["checkpoint", "restore", "--store", store, path("restored")])
        XCTAssertEqual(restored.status, 0, restored.stderr)
        XCTAssertEqual(try contents(path("restored")), try contents(instance))
    }

    func testUnreadableMetaFileOfTheLatestIsNotReplacedByAnOlderCheckpointSilently() throws {
        let store = path("store")
        let instance = try storeWithTwoCheckpoints(store)
        XCTAssertTrue(FileManager.default.createFile(atPath: store + "/backups/meta/2", contents: Data("garbage\n".utf8)))
        let damaged = files(of: store)

        let entries = try listed(store)
        XCTAssertEqual(entries.compactMap { $0["id"] as? Int }, [1, 2])
        XCTAssertNil(entries[0]["damaged"])
        XCTAssertTrue((entries[1]["damaged"] as? String)?.contains("meta/2") ?? false, "\(entries)")

        try assertFails(["checkpoint", "restore", "--store", store, path("latest")], mentioning: "latest checkpoint, 2")
        XCTAssertFalse(FileManager.default.fileExists(atPath: path("latest")), "checkpoint 1 was not restored instead")
        try assertFails(["checkpoint", "restore", "--store", store, "--id", "2", path("two")], mentioning: "meta/2")
        let older = try CheckpointCLI.run(["checkpoint", "restore", "--store", store, "--id", "1", path("one"), "--json"])
        XCTAssertEqual(older.status, 0, older.stderr)
        XCTAssertEqual(try contents(path("one"))[Array("after-first".utf8)], nil, "checkpoint 1 precedes the put")
        try assertFails(["checkpoint", "create", instance, "--store", store], mentioning: "damaged checkpoint 2")
        XCTAssertEqual(files(of: store), damaged, "checkpoint 2's private files are still there")

        let dropped = try CheckpointCLI.run(["checkpoint", "purge", "--store", store, "--drop-damaged", "--keep", "5"])
        XCTAssertEqual(dropped.status, 0, dropped.stderr)
        XCTAssertEqual(dropped.stdout, "deleted checkpoints 2\n")
        XCTAssertEqual(try listed(store).compactMap { $0["id"] as? Int }, [1])
        XCTAssertFalse(FileManager.default.fileExists(atPath: store + "/backups/private/2"))
        XCTAssertEqual(try CheckpointCLI.run(["checkpoint", "verify", "--store", store]).status, 0)
    }

    /// Kill `checkpoint create` (SIGKILL) at each step; afterwards a create succeeds
    /// and every listed checkpoint verifies and restores.
    func testKilledCreateAndPurgeLeaveEveryListedCheckpointRestorable() throws {
        let instance = try makeInstance(keys: 3000)
        let store = path("store")
        XCTAssertEqual(try CheckpointCLI.run(["checkpoint", "create", instance, "--store", store]).status, 0)
        let points = ["checkpoint.begin", "checkpoint.after-cleanup", "checkpoint.before-backup", "checkpoint.copying",
                      "checkpoint.after-backup", "checkpoint.after-stats"]
        for (round, point) in points.enumerated() {
            // Change a little, so each checkpoint has something new to copy.
            let engine = try ShardEngine.open(at: instance)
            // RocksDB reports copy progress per file, every 1 MiB: give the copying point 2 MB table files.
            let count = point == "checkpoint.copying" ? 8000 : 1500
            for i in 0..<count { try engine.put("round-\(round)-\(i)", String(repeating: "r", count: 1000)) }
            engine.close()
            let killed = try CheckpointCLI.run(["checkpoint", "create", instance, "--store", store],
                                               environment: ["SHARDDB_FAILPOINTS": "\(point)=kill"])
            XCTAssertEqual(killed.signal, SIGKILL, "\(point): status \(killed.status), stderr \(killed.stderr)")
        }
        let killedPurge = try CheckpointCLI.run(["checkpoint", "purge", "--store", store, "--keep", "1"],
                                                environment: ["SHARDDB_FAILPOINTS": "checkpoint.purge.after-delete=kill"])
        XCTAssertEqual(killedPurge.signal, SIGKILL, killedPurge.stderr)

        let final = try CheckpointCLI.run(["checkpoint", "create", instance, "--store", store, "--json"])
        XCTAssertEqual(final.status, 0, final.stderr)
        let ids = try listed(store).compactMap { $0["id"] as? Int }
        XCTAssertGreaterThanOrEqual(ids.count, 2)
        let verified = try CheckpointCLI.run(["checkpoint", "verify", "--store", store])
        XCTAssertEqual(verified.status, 0, verified.stderr)
        for id in ids {
            let result = try CheckpointCLI.run(["checkpoint", "restore", "--store", store, "--id", "\(id)", path("restored-\(id)")])
            XCTAssertEqual(result.status, 0, "checkpoint \(id): \(result.stderr)")
        }
        XCTAssertEqual(try contents(path("restored-\(ids.last!)")), try contents(instance))
        let leftovers = try FileManager.default.contentsOfDirectory(atPath: store + "/backups/private").filter { $0.hasSuffix(".tmp") }
        XCTAssertEqual(leftovers, [], "the successful create removed partial copies")
    }
}

/// The shared subprocess runner (ShardctlProcess.swift).
typealias CheckpointCLI = ShardctlProcess

