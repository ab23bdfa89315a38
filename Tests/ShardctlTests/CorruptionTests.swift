import Foundation
@testable import ShardDB
import XCTest

/// Damaged copies of an instance and of a checkpoint store: flipped bytes and
/// truncations in table files (SST), the WAL, the MANIFEST, the metadata and
/// checkpoint files. Opening, `shardctl verify` and `checkpoint verify` must
/// report the damaged file, never crash, never return wrong data.
final class CorruptionTests: ShardctlTestCase {
    private var pristine: String!
    private var original: [[UInt8]: [UInt8]] = [:]

    /// An instance whose older keys are in table files and newer ones only in the WAL.
    override func setUpWithError() throws {
        try super.setUpWithError()
        pristine = path("pristine")
        let engine = try ShardEngine.create(at: pristine, shards: 4)
        let pad = String(repeating: "p", count: 200)
        try engine.write { batch in for i in 0..<2000 { try batch.put("table-\(i)", "\(i)-\(pad)") } }
        _ = try engine.purgeExpired()  // compacts: the keys above go to table files
        try engine.write { batch in for i in 0..<500 { try batch.put("wal-\(i)", "\(i)-\(pad)") } }
        engine.close()
        original = try exported(pristine)
        XCTAssertEqual(original.count, 2500)
    }

    // MARK: Instance files

    func testFlippedTableFileIsNamedByVerify() throws {
        let copy = try damagedCopy("sst-flip", file: { $0.hasSuffix(".sst") }) { try Self.flip($0) }
        let result = try ShardctlProcess.run(["verify", copy.directory])
        assertReports(result, naming: copy.file)
        assertNoWrongData(copy.directory)
    }

    /// One byte of a stored value changed on disk (a literal, so no decompression
    /// notices): reads fail on the block's checksum instead of returning it.
    func testAValueChangedOnDiskIsNeverReturned() throws {
        let directory = path("changed-value")
        let marker = "QzJ7vLx2mWp9RkT4sYb8NcF1hGd6KeU3aVo5XiZ0"  // no repeats: stored as a literal
        let engine = try ShardEngine.create(at: directory, shards: 1)
        try engine.write { batch in
            for i in 0..<200 { try batch.put("key-\(i)", "value-\(i)") }
            try batch.put("marked", marker)
        }
        try engine.flush()  // into a table file
        engine.close()
        var changed = false
        for file in try FileManager.default.contentsOfDirectory(atPath: directory) where file.hasSuffix(".sst") {
            var data = try Data(contentsOf: URL(fileURLWithPath: directory + "/" + file))
            // (Its first 20 bytes: snappy may encode the tail as a copy of bytes after it.)
            guard let range = data.range(of: Data(marker.utf8.prefix(20))) else { continue }
            data[range.lowerBound + 10] = UInt8(ascii: "#")
            try data.write(to: URL(fileURLWithPath: directory + "/" + file))
            changed = true
        }
        let listing = try FileManager.default.contentsOfDirectory(atPath: directory).sorted()
        XCTAssertTrue(changed, "the marker is in a table file: \(listing)")
        let get = try ShardctlProcess.run(["get", directory, "marked"])
        XCTAssertNil(get.signal, get.stderr)
        XCTAssertEqual(get.status, 2, "read despite the damage: \(get.stdout)")
        XCTAssertTrue(get.stderr.contains("checksum"), get.stderr)
        let export = try ShardctlProcess.run(["export", directory])
        XCTAssertEqual(export.status, 2, "exported despite the damage")
        XCTAssertFalse(export.stdout.contains("#"), export.stdout)
    }

    func testTruncatedTableFileIsNamed() throws {
        let copy = try damagedCopy("sst-truncate", file: { $0.hasSuffix(".sst") }) { try Self.truncate($0) }
        assertReports(try ShardctlProcess.run(["verify", copy.directory]), naming: copy.file)
        assertReports(try ShardctlProcess.run(["info", copy.directory]), naming: copy.file)
    }

    func testDamagedManifestFailsToOpenNamingIt() throws {
        for (name, damage) in [("manifest-flip", Self.flip), ("manifest-truncate", Self.truncate)] {
            let copy = try damagedCopy(name, file: { $0.hasPrefix("MANIFEST-") }, damage)
            assertReports(try ShardctlProcess.run(["verify", copy.directory]), naming: "MANIFEST")
            assertReports(try ShardctlProcess.run(["get", copy.directory, "table-1"]), naming: "MANIFEST")
        }
    }

    /// A damaged WAL record is reported, or recovery stops before it: the keys
    /// present then hold their written values (a prefix, never wrong data).
    func testDamagedWALNeverYieldsWrongData() throws {
        for (name, damage) in [("wal-flip", Self.flip), ("wal-truncate", Self.truncate)] {
            let copy = try damagedCopy(name, file: { $0.hasSuffix(".log") }, damage)
            let result = try ShardctlProcess.run(["verify", copy.directory])
            XCTAssertNil(result.signal, "\(name): \(result.stderr)")
            if result.status == 0 {
                assertNoWrongData(copy.directory)
            } else {
                assertReports(result, naming: copy.file)
            }
        }
    }

    /// A byte flipped in the middle of a WAL with many records after it: RocksDB's
    /// default recovery would drop them all silently. Opening fails naming the log;
    /// `salvage-wal` drops the log from the damage on, saying so, and then the
    /// instance opens and holds a prefix of what was written.
    func testMidWALCorruptionFailsOpenNamingTheLogUntilSalvaged() throws {
        let directory = path("wal-mid")
        let engine = try ShardEngine.create(at: directory, shards: 4)
        for i in 0..<3000 { try engine.put("record-\(i)", "\(i)") }
        engine.close()
        let log = try XCTUnwrap(try FileManager.default.contentsOfDirectory(atPath: directory).filter { $0.hasSuffix(".log") }
            .max { Self.size(directory + "/" + $0) < Self.size(directory + "/" + $1) })
        try Self.flip(directory + "/" + log)

        assertReports(try ShardctlProcess.run(["verify", directory]), naming: log)
        assertReports(try ShardctlProcess.run(["get", directory, "record-1"]), naming: log)
        XCTAssertThrowsError(try ShardEngine.open(at: directory)) { error in
            let error = error as? ShardDBError
            XCTAssertEqual(error?.code, .storage)
            XCTAssertEqual(error?.storage?.kind, .corruption)
            XCTAssertTrue(error?.message.contains(log) ?? false, "\(String(describing: error))")
            XCTAssertTrue(error?.message.contains("salvage-wal") ?? false, "\(String(describing: error))")
        }

        let salvage = try ShardctlProcess.run(["salvage-wal", directory])
        XCTAssertEqual(salvage.status, 0, salvage.stderr)
        XCTAssertTrue(salvage.stdout.contains("dropped: \(log)"), salvage.stdout)
        XCTAssertEqual(try ShardctlProcess.run(["verify", directory]).status, 0)
        // What survived is a prefix of the writes: record-0 ..< record-n, nothing later.
        let reopened = try ShardEngine.open(at: directory)
        defer { reopened.close() }
        var survivors = 0
        while survivors < 3000, try reopened.getString("record-\(survivors)") == "\(survivors)" { survivors += 1 }
        XCTAssertGreaterThan(survivors, 0)
        XCTAssertLessThan(survivors, 3000, "the damaged record and the ones after it are dropped")
        for i in survivors..<3000 { XCTAssertNil(try reopened.get("record-\(i)"), "record-\(i) after the hole") }
        // A second salvage finds nothing to drop.
        reopened.close()
        XCTAssertTrue(try ShardctlProcess.run(["salvage-wal", directory]).stdout.contains("nothing dropped"))
    }

    /// A WAL cut inside its last record (what a crash mid-write leaves) opens without
    /// complaint and keeps every complete record before the cut.
    func testWALTornInItsLastRecordRecoversThePrefix() throws {
        let directory = path("wal-torn")
        let engine = try ShardEngine.create(at: directory, shards: 4)
        for i in 0..<1000 { try engine.put("record-\(i)", "\(i)") }
        try engine.put("last", String(repeating: "z", count: 300))
        let logFiles = try FileManager.default.contentsOfDirectory(atPath: directory).filter { $0.hasSuffix(".log") }
        // Copy the files as the crash would leave them (the engine is still open: no close-time writes).
        let torn = path("wal-torn-copy")
        try FileManager.default.copyItem(atPath: directory, toPath: torn)
        engine.close()
        try? FileManager.default.removeItem(atPath: torn + "/LOCK")
        let log = try XCTUnwrap(logFiles.max { Self.size(torn + "/" + $0) < Self.size(torn + "/" + $1) })
        let handle = try FileHandle(forWritingTo: URL(fileURLWithPath: torn + "/" + log))
        try handle.truncate(atOffset: UInt64(Self.size(torn + "/" + log) - 100))
        try handle.close()

        let result = try ShardctlProcess.run(["verify", torn])
        XCTAssertEqual(result.status, 0, result.stderr)
        let reopened = try ShardEngine.open(at: torn)
        defer { reopened.close() }
        for i in 0..<1000 { XCTAssertEqual(try reopened.getString("record-\(i)"), "\(i)") }
        XCTAssertNil(try reopened.get("last"), "the torn record was never complete")
    }

    func testCorruptedMetadataRecordIsReported() throws {
        for (name, key) in [("meta-shard", MetadataKey.shard(2)), ("meta-partitioning", MetadataKey.partitioning)] {
            let directory = path(name)
            try FileManager.default.copyItem(atPath: pristine, toPath: directory)
            let engine = try ShardEngine.open(at: directory)
            try engine.database.put(Array(key.utf8), Array("{not json".utf8), in: engine.metadata)
            engine.close()
            let result = try ShardctlProcess.run(["verify", directory])
            assertError(result, mentioning: "corrupted metadata", name)
        }
    }

    // MARK: Checkpoint files

    func testDamagedCheckpointFilesAreNamedByCheckpointVerify() throws {
        let store = path("store")
        try shardctl(["checkpoint", "create", pristine, "--store", store])
        let cases: [(String, (String) -> Bool, (String) throws -> Void)] = [
            ("shared-flip", { $0.contains("/shared_checksum/") && $0.hasSuffix(".sst") }, Self.flip),
            ("shared-truncate", { $0.contains("/shared_checksum/") && $0.hasSuffix(".sst") }, Self.truncate),
            ("private-manifest-truncate", { $0.contains("/private/") && $0.contains("MANIFEST-") }, Self.truncate),
            ("private-manifest-flip", { $0.contains("/private/") && $0.contains("MANIFEST-") }, Self.flip),
        ]
        for (name, select, damage) in cases {
            let copy = path(name)
            try FileManager.default.copyItem(atPath: store, toPath: copy)
            let file = try XCTUnwrap(Self.files(in: copy).filter(select).max { Self.size($0) < Self.size($1) }, name)
            try damage(file)
            let fileName = URL(fileURLWithPath: file).lastPathComponent
            assertReports(try ShardctlProcess.run(["checkpoint", "verify", "--store", copy]), naming: fileName)
            let restored = try ShardctlProcess.run(["checkpoint", "restore", "--store", copy, path(name + "-restored")])
            XCTAssertEqual(restored.status, 2, "\(name): restore of a damaged checkpoint: \(restored.stderr)")
            XCTAssertFalse(FileManager.default.fileExists(atPath: path(name + "-restored")), "\(name): no half-restored target")
        }
    }

    func testDamagedCheckpointMetaFileAndStoreManifestAreReported() throws {
        let store = path("store")
        try shardctl(["checkpoint", "create", pristine, "--store", store])
        let meta = path("meta")
        try FileManager.default.copyItem(atPath: store, toPath: meta)
        try Self.flip(meta + "/backups/meta/1")
        let verify = try ShardctlProcess.run(["checkpoint", "verify", "--store", meta])
        XCTAssertEqual(verify.status, 2, verify.stdout + verify.stderr)
        XCTAssertTrue(verify.stderr.contains("checkpoint 1") || verify.stderr.contains("meta/1"), verify.stderr)

        let manifest = path("manifest")
        try FileManager.default.copyItem(atPath: store, toPath: manifest)
        try Data("{\"format\": 1, \"instanceID\"".utf8).write(to: URL(fileURLWithPath: manifest + "/sharddb-checkpoint-store.json"))
        assertError(try ShardctlProcess.run(["checkpoint", "list", "--store", manifest]), mentioning: "sharddb-checkpoint-store.json")
    }

    // MARK: Helpers

    /// A copy of the pristine instance with its largest file matching `select` damaged.
    private func damagedCopy(_ name: String, file select: (String) -> Bool, _ damage: (String) throws -> Void) throws -> (directory: String, file: String) {
        let directory = path(name)
        try FileManager.default.copyItem(atPath: pristine, toPath: directory)
        let names = try FileManager.default.contentsOfDirectory(atPath: directory).filter(select)
        let file = try XCTUnwrap(names.max { Self.size(directory + "/" + $0) < Self.size(directory + "/" + $1) }, "\(name): no such file")
        try damage(directory + "/" + file)
        return (directory, file)
    }

    /// Exit status 2, no signal, every stderr line `shardctl: error: ...`, one naming `file`.
    private func assertReports(_ result: ShardctlProcess.Result, naming file: String, line: UInt = #line) {
        XCTAssertNil(result.signal, "crashed: \(result.stderr)", line: line)
        XCTAssertEqual(result.status, 2, "damage not reported: \(result.stdout) \(result.stderr)", line: line)
        XCTAssertFalse(result.stderrLines.isEmpty, line: line)
        for text in result.stderrLines { XCTAssertTrue(text.hasPrefix("shardctl: error: "), "\(text)", line: line) }
        XCTAssertTrue(result.stderr.contains(file), "stderr should name \(file): \(result.stderr)", line: line)
    }

    /// Whatever the damaged instance returns is what was written.
    private func assertNoWrongData(_ directory: String, line: UInt = #line) {
        let result: ShardctlProcess.Result
        do { result = try ShardctlProcess.run(["export", directory, "--format", "jsonl"]) } catch {
            return XCTFail("export did not run: \(error)", line: line)
        }
        XCTAssertNil(result.signal, "export crashed: \(result.stderr)", line: line)
        guard result.status == 0 else {
            // Refusing to read is fine, as a typed error.
            XCTAssertEqual(result.status, 2, result.stderr, line: line)
            XCTAssertTrue(result.stderrLines.count == 1 && result.stderr.hasPrefix("shardctl: error: "), result.stderr, line: line)
            return
        }
        do {
            for record in try jsonLines(result.stdout) {
                let key = try Self.bytes(record, "key"), value = try Self.bytes(record, "value")
                XCTAssertEqual(original[key], value, "wrong value for \(String(decoding: key, as: UTF8.self))", line: line)
            }
        } catch {
            XCTFail("export wrote a record that does not parse: \(error)", line: line)
        }
    }

    static func files(in directory: String) -> [String] {
        let enumerator = FileManager.default.enumerator(atPath: directory)
        var result: [String] = []
        while let name = enumerator?.nextObject() as? String { result.append(directory + "/" + name) }
        return result
    }

    static func size(_ file: String) -> Int {
        ((try? FileManager.default.attributesOfItem(atPath: file))?[.size] as? NSNumber)?.intValue ?? 0
    }

    /// Inverts 8 bytes a third of the way into the file.
    static func flip(_ file: String) throws {
        var data = try Data(contentsOf: URL(fileURLWithPath: file))
        let start = data.count / 3
        for i in start..<min(data.count, start + 8) { data[i] ^= 0xFF }
        try data.write(to: URL(fileURLWithPath: file))
    }

    /// Cuts the file to half its size.
    static func truncate(_ file: String) throws {
        let handle = try FileHandle(forWritingTo: URL(fileURLWithPath: file))
        try handle.truncate(atOffset: UInt64(size(file) / 2))
        try handle.close()
    }
}
