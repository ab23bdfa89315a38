import Foundation
import RocksDB
import ShardDB
import XCTest

/// Every refusal carries its typed code and leaves what is stored as it was.
final class BadInputTests: XCTestCase {
    private let files = FileManager.default

    // MARK: Opening and creating

    func testOpenOfAMissingDirectoryIsInstanceNotFound() throws {
        let directory = TemporaryDirectory()
        let path = directory.path("missing")
        assertShardDBError(.instanceNotFound, try ShardEngine.open(at: path, options: .testing()))
        XCTAssertFalse(files.fileExists(atPath: path), "open must not create the directory")
    }

    func testOpenOfAnEmptyDirectoryIsNotAnInstance() throws {
        let directory = TemporaryDirectory()
        assertShardDBError(.notAnInstance, try ShardEngine.open(at: directory.path, options: .testing()))
        XCTAssertEqual(try files.contentsOfDirectory(atPath: directory.path), [])
    }

    func testOpenOfARegularFileIsNotAnInstance() throws {
        let directory = TemporaryDirectory()
        let path = directory.path("file")
        XCTAssertTrue(files.createFile(atPath: path, contents: Data("data".utf8)))
        assertShardDBError(.notAnInstance, try ShardEngine.open(at: path, options: .testing()))
        assertShardDBError(.notWritable, try ShardEngine.create(at: path, shards: 1, options: .testing()))
        XCTAssertEqual(files.contents(atPath: path), Data("data".utf8))
    }

    func testOpenOrCreateOfAPlainRocksDBDatabaseIsRefused() throws {
        let directory = TemporaryDirectory()
        let path = directory.path("plain")
        let options = Options()
        options.createIfMissing = true
        options.createMissingColumnFamilies = true
        do {
            let database = try Database.open(at: path, options: options, columnFamilies: ["default": options, "other": options])
            try database.put("plain-key", "plain-value")
            try database.put("other-key", "other-value", in: try database.columnFamily(named: "other"))
            database.close()
        }
        let before = try RawInstance.allEntries(at: path)
        assertShardDBError(.notAnInstance, try ShardEngine.open(at: path, options: .testing()))
        assertShardDBError(.notAnInstance, try ShardEngine.create(at: path, shards: 2, options: .testing()))

        XCTAssertEqual(try Database.listColumnFamilies(at: path).sorted(), ["default", "other"])
        XCTAssertEqual(try RawInstance.allEntries(at: path), before)
        XCTAssertEqual(try RawInstance.entries(at: path, family: "default"), [bytes("plain-key"): bytes("plain-value")])
    }

    func testCreateOverAnExistingInstanceIsAlreadyInitialized() throws {
        let directory = TemporaryDirectory()
        let path = directory.path("instance")
        let engine = try ShardEngine.create(at: path, shards: 2, options: .testing())
        try engine.put("k", "v")
        let instanceID = engine.instanceID
        engine.close()

        assertShardDBError(.alreadyInitialized, try ShardEngine.create(at: path, shards: 4, options: .testing()))
        assertShardDBError(.alreadyInitialized,
                           try ShardEngine.create(at: path, shards: 2, partitioning: .range(splitPoints: [bytes("m")]), options: .testing()))

        let reopened = try ShardEngine.open(at: path, options: .testing())
        defer { reopened.close() }
        XCTAssertEqual(reopened.instanceID, instanceID)
        XCTAssertEqual(reopened.shardDescriptors.count, 2)
        XCTAssertEqual(reopened.partitioning, .hash(keyGroups: Partitioning.defaultKeyGroups))
        XCTAssertEqual(try reopened.getString("k"), "v")
    }

    func testCreateOverAnInstanceThatIsOpenIsAlreadyInitialized() throws {
        let directory = TemporaryDirectory()
        let engine = try makeEngine(in: directory, shards: 2)
        defer { engine.close() }
        try engine.put("k", "v")
        assertShardDBError(.alreadyInitialized, try ShardEngine.create(at: engine.path, shards: 2, options: .testing()))
        XCTAssertEqual(try engine.getString("k"), "v")
    }

    func testSecondOpenInTheSameProcessIsAlreadyOpen() throws {
        let directory = TemporaryDirectory()
        let engine = try makeEngine(in: directory, shards: 2)
        defer { engine.close() }
        try engine.put("k", "v")
        assertShardDBError(.alreadyOpen, try ShardEngine.open(at: engine.path, options: .testing()))
        // The first engine is undisturbed.
        try engine.put("k2", "v2")
        XCTAssertEqual(try engine.contents(), [bytes("k"): bytes("v"), bytes("k2"): bytes("v2")])
    }

    func testPathUnderARegularFileIsRefused() throws {
        let directory = TemporaryDirectory()
        let file = directory.path("file")
        XCTAssertTrue(files.createFile(atPath: file, contents: Data("data".utf8)))
        let path = file + "/instance"
        assertShardDBError(.notWritable, try ShardEngine.create(at: path, shards: 1, options: .testing()))
        assertShardDBError(.instanceNotFound, try ShardEngine.open(at: path, options: .testing()))
        XCTAssertEqual(files.contents(atPath: file), Data("data".utf8))
    }

    func testInvalidCreateArgumentsCreateNothing() throws {
        let directory = TemporaryDirectory()
        let path = directory.path("instance")
        assertShardDBError(.invalidArgument, try ShardEngine.create(at: path, shards: -1, options: .testing()))
        assertShardDBError(.invalidArgument, try ShardEngine.create(at: path, shards: 8, partitioning: .hash(keyGroups: 4), options: .testing()))
        assertShardDBError(.invalidArgument, try ShardEngine.create(at: path, shards: 1, partitioning: .hash(keyGroups: 0), options: .testing()))
        assertShardDBError(.invalidArgument,
                           try ShardEngine.create(at: path, shards: 1, partitioning: .hash(keyGroups: Partitioning.maxKeyGroups + 1), options: .testing()))
        assertShardDBError(.invalidArgument,
                           try ShardEngine.create(at: path, shards: 3, partitioning: .range(splitPoints: [bytes("m")]), options: .testing()))
        assertShardDBError(.invalidArgument,
                           try ShardEngine.create(at: path, shards: 3, partitioning: .range(splitPoints: [bytes("m"), bytes("c")]), options: .testing()))
        assertShardDBError(.invalidArgument,
                           try ShardEngine.create(at: path, shards: 2, partitioning: .range(splitPoints: [[]]), options: .testing()))
        assertShardDBError(.invalidTTL, try ShardEngine.create(at: path, shards: 1, defaultTTLSeconds: 0, options: .testing()))
        XCTAssertFalse(files.fileExists(atPath: path))
    }

    // MARK: Damaged metadata

    /// Creates an instance holding one key per shard, closes it, then changes
    /// one metadata record through plain RocksDB.
    private func instanceWithMetadata(_ key: String, setTo value: [UInt8], in directory: TemporaryDirectory) throws -> String {
        let path = directory.path("instance")
        let engine = try ShardEngine.create(at: path, shards: 2, options: .testing())
        try engine.put("a", "1")
        try engine.put("b", "2")
        engine.close()
        try RawInstance.withDatabase(at: path) { database in
            try database.put(bytes(key), value, in: try database.columnFamily(named: ShardEngine.metadataFamilyName))
        }
        return path
    }

    /// RocksDB options the engine cannot work with are refused before anything is
    /// created, and an existing instance opens untouched without them.
    func testUnsupportedRocksDBOptionsAreRefused() throws {
        let directory = TemporaryDirectory()
        let path = directory.path("instance")
        var options = ShardEngineOptions.testing()
        options.rocksDBOptions = "allow_mmap_writes=true"
        assertShardDBError(.invalidArgument, try ShardEngine.create(at: path, shards: 1, options: options))
        XCTAssertFalse(files.fileExists(atPath: path + "/CURRENT"))
        assertShardDBError(.invalidArgument, try ShardEngine.validateRocksDBOptions("allow_mmap_writes=true"))
        XCTAssertNoThrow(try ShardEngine.validateRocksDBOptions("allow_mmap_writes=false;max_background_jobs=2"))
        // RocksDB takes no snapshots with in-place updates: a migration would crash on the null one.
        assertShardDBError(.invalidArgument, try ShardEngine.validateRocksDBOptions("inplace_update_support=true;allow_concurrent_memtable_write=false"))
        XCTAssertNoThrow(try ShardEngine.validateRocksDBOptions("inplace_update_support=false"))

        let engine = try ShardEngine.create(at: path, shards: 1, options: .testing())
        try engine.put("kept", "value")
        engine.close()
        assertShardDBError(.invalidArgument, try ShardEngine.open(at: path, options: options))
        let reopened = try ShardEngine.open(at: path, options: .testing())
        defer { reopened.close() }
        XCTAssertEqual(try reopened.getString("kept"), "value")
    }

    func testGarbledPartitioningRecordIsCorruptedMetadata() throws {
        let directory = TemporaryDirectory()
        let path = try instanceWithMetadata("partitioning", setTo: [0x00, 0xde, 0xad, 0x7b], in: directory)
        let before = try RawInstance.allEntries(at: path)
        let error = assertShardDBError(.corruptedMetadata, try ShardEngine.open(at: path, options: .testing()))
        XCTAssertTrue(error?.message.contains("partitioning") ?? false, error?.message ?? "")
        // The refused open neither repaired nor lost anything, and released the lock.
        XCTAssertEqual(try RawInstance.allEntries(at: path), before)
    }

    /// A key-group count out of range is refused before anything is sized by it
    /// (10^11 key groups would be a routing table of that many owners).
    func testKeyGroupCountOutOfRangeIsCorruptedMetadata() throws {
        for count in [0, 65_537, 99_999_999_999] {
            let directory = TemporaryDirectory()
            let path = try instanceWithMetadata("partitioning", setTo: bytes(#"{"keyGroups":\#(count),"scheme":"hash"}"#), in: directory)
            let error = assertShardDBError(.corruptedMetadata, try ShardEngine.open(at: path, options: .testing()))
            XCTAssertTrue(error?.message.contains("key groups") ?? false, error?.message ?? "")
        }
    }

    func testShardDefaultTTLOutOfRangeIsCorruptedMetadata() throws {
        let directory = TemporaryDirectory()
        let path = directory.path("instance")
        try ShardEngine.create(at: path, shards: 2, options: .testing()).close()
        try RawInstance.withDatabase(at: path) { database in
            let meta = try database.columnFamily(named: ShardEngine.metadataFamilyName)
            let stored = try XCTUnwrap(try database.get(bytes("shard/0000000000"), in: meta))
            var record = try XCTUnwrap(try JSONSerialization.jsonObject(with: Data(stored)) as? [String: Any])
            record["defaultTTLSeconds"] = Int64.max
            try database.put(bytes("shard/0000000000"), [UInt8](try JSONSerialization.data(withJSONObject: record)), in: meta)
        }
        let error = assertShardDBError(.corruptedMetadata, try ShardEngine.open(at: path, options: .testing()))
        XCTAssertTrue(error?.message.contains("default TTL") ?? false, error?.message ?? "")
    }

    /// A shard record whose id is out of range (a later `max + 1` would overflow
    /// and trap) or does not match its key (a second record of one shard) is refused.
    func testShardIDOutOfRangeOrNotItsKeyIsCorruptedMetadata() throws {
        for (key, id, expected) in [("shard/9223372036854775807", Int64.max, "out of range"), ("shard/0000000009", -1, "out of range"),
                                    ("shard/0000000009", 0, "is of shard 0")] {
            let directory = TemporaryDirectory()
            let path = directory.path("instance")
            try ShardEngine.create(at: path, shards: 2, options: .testing()).close()
            try RawInstance.withDatabase(at: path) { database in
                let meta = try database.columnFamily(named: ShardEngine.metadataFamilyName)
                let stored = try XCTUnwrap(try database.get(bytes("shard/0000000001"), in: meta))
                var record = try XCTUnwrap(try JSONSerialization.jsonObject(with: Data(stored)) as? [String: Any])
                record["id"] = id
                record["state"] = "moved"
                record["movedTo"] = "elsewhere"
                try database.put(bytes(key), [UInt8](try JSONSerialization.data(withJSONObject: record)), in: meta)
            }
            let before = try RawInstance.allEntries(at: path)
            let error = assertShardDBError(.corruptedMetadata, try ShardEngine.open(at: path, options: .testing()))
            XCTAssertTrue(error?.message.contains(expected) ?? false, "\(key): \(error?.message ?? "")")
            XCTAssertEqual(try RawInstance.allEntries(at: path), before)
        }
    }

    /// A database directory that lost its CURRENT file: opening names the damage,
    /// and creating refuses (RocksDB would start afresh and delete the table
    /// files it does not know as obsolete).
    func testRocksDBFilesWithoutCurrentAreNeitherOpenedNorInitializedOver() throws {
        let directory = TemporaryDirectory()
        let path = directory.path("instance")
        let engine = try ShardEngine.create(at: path, shards: 2, options: .testing())
        for i in 0..<100 { try engine.put("key-\(i)", "value-\(i)") }
        try engine.flush()
        engine.close()
        try FileManager.default.removeItem(atPath: path + "/CURRENT")
        let before = try FileManager.default.contentsOfDirectory(atPath: path).sorted()
        let opened = assertShardDBError(.corruptedMetadata, try ShardEngine.open(at: path, options: .testing()))
        XCTAssertTrue(opened?.message.contains("no CURRENT file") ?? false, opened?.message ?? "")
        let created = assertShardDBError(.notAnInstance, try ShardEngine.create(at: path, shards: 2, options: .testing()))
        XCTAssertTrue(created?.message.contains("no CURRENT file") ?? false, created?.message ?? "")
        XCTAssertEqual(try FileManager.default.contentsOfDirectory(atPath: path).sorted(), before, "nothing removed or added")
    }

    /// What an init killed before its metadata write leaves: the families, no records.
    func testInstanceWhoseInitDidNotFinishIsNamedSo() throws {
        let directory = TemporaryDirectory()
        let path = directory.path("instance")
        let options = Options()
        options.createIfMissing = true
        options.createMissingColumnFamilies = true
        try Database.open(at: path, options: options, columnFamilies: [ShardEngine.metadataFamilyName: Options()]).close()
        let error = assertShardDBError(.corruptedMetadata, try ShardEngine.open(at: path, options: .testing()))
        XCTAssertTrue(error?.message.contains("init that did not finish") ?? false, error?.message ?? "")
    }

    func testUnknownPartitioningSchemeIsCorruptedMetadata() throws {
        let directory = TemporaryDirectory()
        let path = try instanceWithMetadata("partitioning", setTo: bytes(#"{"scheme":"consistent"}"#), in: directory)
        assertShardDBError(.corruptedMetadata, try ShardEngine.open(at: path, options: .testing()))
    }

    func testMissingFormatRecordIsCorruptedMetadata() throws {
        let directory = TemporaryDirectory()
        let path = try instanceWithMetadata("format", setTo: bytes("{}"), in: directory)
        try RawInstance.withDatabase(at: path) { database in
            try database.delete(bytes("format"), in: try database.columnFamily(named: ShardEngine.metadataFamilyName))
        }
        assertShardDBError(.corruptedMetadata, try ShardEngine.open(at: path, options: .testing()))
    }

    func testNewerFormatVersionIsUnsupportedFormat() throws {
        let directory = TemporaryDirectory()
        let path = try instanceWithMetadata("format", setTo: bytes(#"{"version":99}"#), in: directory)
        let before = try RawInstance.allEntries(at: path)
        let error = assertShardDBError(.unsupportedFormat, try ShardEngine.open(at: path, options: .testing()))
        XCTAssertTrue(error?.message.contains("99") ?? false, error?.message ?? "")
        XCTAssertEqual(try RawInstance.allEntries(at: path), before)
    }

    // MARK: Keys, values, shards

    func testEmptyKeyIsInvalidKey() throws {
        let directory = TemporaryDirectory()
        let engine = try makeEngine(in: directory)
        defer { engine.close() }
        try engine.put("k", "v")
        let before = try engine.contents()
        assertShardDBError(.invalidKey, try engine.put("", "v"))
        assertShardDBError(.invalidKey, try engine.put([UInt8](), bytes("v")))
        assertShardDBError(.invalidKey, try engine.get(""))
        assertShardDBError(.invalidKey, try engine.delete(""))
        assertShardDBError(.invalidKey, try engine.withValue(forKey: [UInt8]()) { _ in () })
        assertShardDBError(.invalidKey, try engine.multiGet([bytes("k"), []]))
        assertShardDBError(.invalidKey, try engine.write { try $0.put("", "v") })
        XCTAssertEqual(try engine.contents(), before)
    }

    func testOversizedKeyIsInvalidKey() throws {
        let directory = TemporaryDirectory()
        let engine = try makeEngine(in: directory)
        defer { engine.close() }
        let largest = [UInt8](repeating: 0x6b, count: ShardEngine.maxKeySize)
        let tooLarge = largest + [0x6b]
        try engine.put(largest, bytes("ok"))
        let before = try engine.contents()
        assertShardDBError(.invalidKey, try engine.put(tooLarge, bytes("v")))
        assertShardDBError(.invalidKey, try engine.get(tooLarge))
        assertShardDBError(.invalidKey, try engine.delete(tooLarge))
        assertShardDBError(.invalidKey, try engine.write { try $0.delete(tooLarge) })
        XCTAssertEqual(try engine.contents(), before)
        XCTAssertEqual(try engine.get(largest), bytes("ok"))
    }

    func testOversizedValueIsInvalidValue() throws {
        let directory = TemporaryDirectory()
        let engine = try makeEngine(in: directory)
        defer { engine.close() }
        try engine.put("k", "old")
        let tooLarge = [UInt8](repeating: 0, count: ShardEngine.maxValueSize + 1)
        assertShardDBError(.invalidValue, try engine.put(bytes("k"), tooLarge))
        assertShardDBError(.invalidValue, try engine.put(bytes("new"), tooLarge))
        assertShardDBError(.invalidValue, try engine.write { try $0.put(bytes("new"), tooLarge) })
        XCTAssertEqual(try engine.contents(), [bytes("k"): bytes("old")])
    }

    func testUnknownShardIsShardNotFound() throws {
        let directory = TemporaryDirectory()
        let engine = try makeEngine(in: directory, shards: 2)
        defer { engine.close() }
        try engine.put("k", "v")
        assertShardDBError(.shardNotFound, try engine.scan(ScanRequest(shard: 2)) { _ in true })
        assertShardDBError(.shardNotFound, try engine.entries(ScanRequest(shard: -1)))
        assertShardDBError(.shardNotFound, try engine.purgeExpired(shard: 7))
        assertShardDBError(.shardNotFound, try engine.estimateExpired(shard: 7))
        assertShardDBError(.shardNotFound, try engine.setDefaultTTL(shard: 7, seconds: 10))
        assertShardDBError(.invalidArgument, try engine.entries(ScanRequest(limit: -1)))
        XCTAssertEqual(engine.shardDescriptors.map(\.id), [0, 1])
        XCTAssertEqual(try engine.contents(), [bytes("k"): bytes("v")])
    }

    func testBatchWithOneBadKeyWritesNothing() throws {
        let directory = TemporaryDirectory()
        let engine = try makeEngine(in: directory)
        defer { engine.close() }
        try engine.put("existing", "old")
        assertShardDBError(.invalidKey, try engine.write { batch in
            for i in 0..<20 { try batch.put("k\(i)", "v") }
            try batch.put("existing", "new")
            try batch.delete("k0")
            try batch.put("", "bad")
            try batch.put("after", "v")
        })
        XCTAssertEqual(try engine.contents(), [bytes("existing"): bytes("old")])

        // A refused operation is not added to a batch built by hand.
        let batch = engine.makeWriteBatch()
        try batch.put("x", "1")
        assertShardDBError(.invalidKey, try batch.put([UInt8](repeating: 1, count: ShardEngine.maxKeySize + 1), bytes("v")))
        XCTAssertEqual(batch.count, 1)
    }

    func testBatchOfAnotherEngineIsRefused() throws {
        let directory = TemporaryDirectory()
        let first = try makeEngine(in: directory, name: "first")
        let second = try makeEngine(in: directory, name: "second")
        defer { first.close(); second.close() }
        let batch = first.makeWriteBatch()
        try batch.put("k", "v")
        assertShardDBError(.invalidArgument, try second.write(batch))
        XCTAssertEqual(try second.contents(), [:])
        XCTAssertEqual(try first.contents(), [:])
    }

    func testValueWithUnknownHeaderVersionIsCorruptedValue() throws {
        let directory = TemporaryDirectory()
        let path = directory.path("instance")
        let keyGroups = 4096
        let engine = try ShardEngine.create(at: path, shards: 4, partitioning: .hash(keyGroups: keyGroups), options: .testing())
        for i in 0..<20 { try engine.put("good\(i)", "v\(i)") }
        let badKey = bytes("bad-key")
        let badShard = try XCTUnwrap(engine.recordedOwner(of: badKey))
        engine.close()
        // Version 7 is unknown; the engine must neither decode nor drop it.
        try RawInstance.withDatabase(at: path) { database in
            try database.put(RawInstance.storedKey(badKey, keyGroups: keyGroups), [7, 0] + bytes("payload"),
                             in: try database.columnFamily(named: "shard-\(badShard)"))
        }

        let reopened = try ShardEngine.open(at: path, options: .testing())
        let error = assertShardDBError(.corruptedValue, try reopened.get(badKey))
        XCTAssertTrue(error?.message.contains("bad-key") ?? false, error?.message ?? "")
        XCTAssertTrue(error?.message.contains("version 7") ?? false, error?.message ?? "")
        assertShardDBError(.corruptedValue, try reopened.withValue(forKey: badKey) { _ in () })
        assertShardDBError(.corruptedValue, try reopened.multiGet([bytes("good1"), badKey]))
        assertShardDBError(.corruptedValue, try reopened.entries(ScanRequest(shard: badShard)))
        for i in 0..<20 { XCTAssertEqual(try reopened.getString("good\(i)"), "v\(i)") }
        // The expiry filter keeps what it cannot parse.
        XCTAssertEqual(try reopened.purgeExpired(), 0)
        reopened.close()
        XCTAssertEqual(try RawInstance.entries(at: path, family: "shard-\(badShard)")[RawInstance.storedKey(badKey, keyGroups: keyGroups)],
                       [7, 0] + bytes("payload"))
    }

    func testTruncatedHeaderIsCorruptedValue() throws {
        let directory = TemporaryDirectory()
        let path = directory.path("instance")
        let engine = try ShardEngine.create(at: path, shards: 1, partitioning: .range(splitPoints: []), options: .testing())
        try engine.put("good", "v")
        engine.close()
        try RawInstance.withDatabase(at: path) { database in
            let family = try database.columnFamily(named: "shard-0")
            try database.put(bytes("short"), [1], in: family)
            try database.put(bytes("flags"), [1, 0x80], in: family)
            try database.put(bytes("no-expiry"), [1, 1, 0, 0], in: family)
        }
        let reopened = try ShardEngine.open(at: path, options: .testing())
        defer { reopened.close() }
        for key in ["short", "flags", "no-expiry"] {
            let error = assertShardDBError(.corruptedValue, try reopened.get(key))
            XCTAssertTrue(error?.message.contains(key) ?? false, error?.message ?? "")
        }
        XCTAssertEqual(try reopened.getString("good"), "v")
    }

    /// A hashed shard holding a stored key shorter than the key-group prefix
    /// (planted: the engine never writes one) fails a scan with a typed error; it
    /// used to trap slicing the prefix off.
    func testAStoredKeyShorterThanItsPrefixFailsAScanNotTheProcess() throws {
        let directory = TemporaryDirectory()
        let path = directory.path("instance")
        // Shard 1 owns key groups [256, 512): stored keys from [1, 0] up to [2, 0], and [2] lies between.
        let engine = try ShardEngine.create(at: path, shards: 4, partitioning: .hash(keyGroups: 1024), options: .testing())
        XCTAssertEqual(engine.shardDescriptors[1].range, .keyGroups(KeyGroupRange(256, 512)))
        try engine.put("good", "v")
        engine.close()
        try RawInstance.withDatabase(at: path) { database in
            try database.put([0x02], [1, 0], in: try database.columnFamily(named: "shard-1"))
        }
        let reopened = try ShardEngine.open(at: path, options: .testing())
        defer { reopened.close() }
        let error = assertShardDBError(.corruptedValue, try reopened.entries())
        XCTAssertTrue(error?.message.contains("shorter than its key-group prefix") ?? false, error?.message ?? "")
        XCTAssertEqual(try reopened.getString("good"), "v")
    }

    func testUseAfterCloseIsClosed() throws {
        let directory = TemporaryDirectory()
        let engine = try makeEngine(in: directory)
        try engine.put("k", "v")
        engine.close()
        engine.close()
        assertShardDBError(.closed, try engine.put("k", "w"))
        assertShardDBError(.closed, try engine.get("k"))
        assertShardDBError(.closed, try engine.entries())
        let reopened = try ShardEngine.open(at: engine.path, options: .testing())
        defer { reopened.close() }
        XCTAssertEqual(try reopened.getString("k"), "v")
    }
}
