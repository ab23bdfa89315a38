import Foundation
import RocksDB
import ShardDB
import XCTest

/// Checkpoints: restore equality, incrementality, retention, corruption, bad inputs.
final class CheckpointTests: XCTestCase {
    private let files = FileManager.default

    override func tearDown() {
        FailurePoints.disarmAll()
        super.tearDown()
    }

    private func fill(_ engine: ShardEngine, keys: Range<Int>, tag: String, valueSize: Int = 100) throws {
        let pad = String(repeating: "x", count: valueSize)
        for start in stride(from: keys.lowerBound, to: keys.upperBound, by: 500) {
            try engine.write { batch in
                for i in start..<min(keys.upperBound, start + 500) { try batch.put("key-\(i)", "\(tag)-\(i)-\(pad)") }
            }
        }
    }

    /// Instances `a` and `b` in `directory`, each with "k" set to its name.
    private func twoInstances(in directory: TemporaryDirectory) throws -> (ShardEngine, ShardEngine) {
        let a = try makeEngine(in: directory, name: "a", shards: 2)
        let b: ShardEngine
        do { b = try makeEngine(in: directory, name: "b", shards: 2) } catch { a.close(); throw error }
        try a.put("k", "a")
        try b.put("k", "b")
        return (a, b)
    }

    private func openRestored(_ path: String) throws -> ShardEngine {
        try ShardEngine.open(at: path, options: .testing())
    }

    /// Every file name under `path`, recursively, with sizes.
    private func listing(_ path: String) -> [String: Int] {
        var result: [String: Int] = [:]
        guard let walker = files.enumerator(atPath: path) else { return result }
        while let entry = walker.nextObject() as? String {
            let attributes = try? files.attributesOfItem(atPath: path + "/" + entry)
            if attributes?[.type] as? FileAttributeType == .typeRegular { result[entry] = (attributes?[.size] as? Int) ?? 0 }
        }
        return result
    }

    // MARK: Restore

    /// With no write during the checkpoint, a restored instance ends exactly at
    /// the recorded sequence number (CHECKPOINTS.md: its latest is the exact end):
    /// restoring, and opening it only to read, writes nothing of their own.
    func testARestoredInstanceEndsAtTheRecordedSequence() throws {
        let directory = TemporaryDirectory()
        let engine = try makeEngine(in: directory, shards: 3)
        defer { engine.close() }
        try fill(engine, keys: 0..<300, tag: "v1")
        let latest = try engine.latestSequenceNumber()
        let info = try engine.checkpoint(to: directory.path("store"))
        XCTAssertEqual(info.sequenceNumber, latest)
        let checkpoints = try CheckpointStore.open(at: directory.path("store"))
        defer { checkpoints.close() }
        try checkpoints.restore(id: info.id, to: directory.path("restored"))
        for _ in 0..<2 {
            let restored = try openRestored(directory.path("restored"))
            XCTAssertEqual(try restored.latestSequenceNumber(), latest)
            restored.close()
        }
    }

    /// Opening the restored copy runs no compaction: one would run the expiry filter
    /// on the restoring process's clock (real time, here years past the writer's
    /// manual clock) and record what it dropped, past the checkpoint's sequence.
    func testARestoreRunsNoCompactionOnItsOwnClock() throws {
        let directory = TemporaryDirectory()
        let clock = ManualClock()
        var options = ShardEngineOptions.testing(clock: clock)
        options.rocksDBOptions = "disable_auto_compactions=true"
        let engine = try ShardEngine.create(at: directory.path("instance"), shards: 1, options: options)
        defer { engine.close() }
        // Enough level-0 files that an open with automatic compactions starts one at once.
        for round in 0..<8 {
            for i in 0..<50 { try engine.put("r\(round)-\(i)", "v", ttl: .seconds(3600)) }
            try engine.flush()
        }
        let expected = try engine.contents()
        let info = try engine.checkpoint(to: directory.path("store"))
        let checkpoints = try CheckpointStore.open(at: directory.path("store"))
        defer { checkpoints.close() }
        try checkpoints.restore(id: info.id, to: directory.path("restored"))
        let restored = try ShardEngine.open(at: directory.path("restored"), options: .testing(clock: clock))
        defer { restored.close() }
        XCTAssertEqual(try restored.latestSequenceNumber(), info.sequenceNumber)
        XCTAssertEqual(try restored.contents(), expected)
        XCTAssertEqual(try restored.shards().map(\.expiredDropped), [0])
    }

    /// A hidden restore directory carrying this process's id that no restore here
    /// writes is a dead process's (a restarted container's first process has the
    /// same id): the next restore to that name removes it.
    func testARestoreRemovesAnAbandonedDirectoryWithItsOwnProcessID() throws {
        let directory = TemporaryDirectory()
        let engine = try makeEngine(in: directory, shards: 1)
        defer { engine.close() }
        try engine.put("k", "v")
        try engine.checkpoint(to: directory.path("store"))
        let abandoned = directory.path(".restored.restoring-\(getpid())-123")
        try files.createDirectory(atPath: abandoned, withIntermediateDirectories: false)
        XCTAssertTrue(files.createFile(atPath: abandoned + "/CURRENT", contents: Data("MANIFEST-000001\n".utf8)))
        let checkpoints = try CheckpointStore.open(at: directory.path("store"))
        defer { checkpoints.close() }
        try checkpoints.restore(to: directory.path("restored"))
        XCTAssertFalse(files.fileExists(atPath: abandoned))
        XCTAssertTrue(files.fileExists(atPath: directory.path("restored") + "/CURRENT"))
    }

    func testRestoreHasIdenticalContentAndShardMap() throws {
        let directory = TemporaryDirectory()
        let engine = try makeEngine(in: directory, shards: 4)
        defer { engine.close() }
        try fill(engine, keys: 0..<2000, tag: "v1")
        try engine.put("ttl-key", "lives", ttl: .seconds(3600))
        try engine.setDefaultTTL(shard: 2, seconds: 120)
        let expected = try engine.contents()
        let store = directory.path("store")

        let info = try engine.checkpoint(to: store, metadata: ["reason": "test"])
        try fill(engine, keys: 0..<10, tag: "after")  // not in the checkpoint

        XCTAssertEqual(info.id, 1)
        XCTAssertEqual(info.instanceID, engine.instanceID)
        XCTAssertEqual(info.metadata, ["reason": "test"])
        XCTAssertEqual(info.shards, engine.shardDescriptors)
        XCTAssertGreaterThan(info.sequenceNumber, 0)
        XCTAssertEqual(info.bytesCopied, info.totalBytes, "a first checkpoint copies everything")

        let checkpoints = try CheckpointStore.open(at: store)
        defer { checkpoints.close() }
        XCTAssertEqual(try checkpoints.checkpoints().map(\.id), [1])
        XCTAssertEqual(try checkpoints.checkpoints().first?.metadata, ["reason": "test"])
        let target = directory.path("restored")
        let restoredInfo = try checkpoints.restore(id: 1, to: target)
        XCTAssertEqual(restoredInfo.shards, info.shards)

        let restored = try openRestored(target)
        defer { restored.close() }
        XCTAssertEqual(restored.instanceID, engine.instanceID)
        XCTAssertEqual(restored.partitioning, engine.partitioning)
        XCTAssertEqual(restored.shardDescriptors, info.shards)
        for shard in restored.shardDescriptors {
            let request = ScanRequest(shard: shard.id)
            XCTAssertEqual(try restored.entries(request).map(\.key), try expectedKeys(expected, engine: engine, shard: shard.id))
        }
        XCTAssertEqual(try restored.contents(), expected)
    }

    private func expectedKeys(_ contents: [[UInt8]: [UInt8]], engine: ShardEngine, shard: Int) throws -> [[UInt8]] {
        contents.keys.filter { engine.recordedOwner(of: $0) == shard }
            .sorted { a, b in
                // Scan order within a hash shard: key group, then key.
                let ga = a.withUnsafeBytes { KeyHash.keyGroup(of: $0, keyGroups: Partitioning.defaultKeyGroups) }
                let gb = b.withUnsafeBytes { KeyHash.keyGroup(of: $0, keyGroups: Partitioning.defaultKeyGroups) }
                return ga != gb ? ga < gb : a.lexicographicallyPrecedes(b)
            }
    }

    func testCheckpointIsConsistentAcrossShardsWhileWritesContinue() throws {
        let directory = TemporaryDirectory()
        let engine = try makeEngine(in: directory, shards: 4)
        defer { engine.close() }
        let counters = (0..<16).map { "counter-\($0)" }
        XCTAssertEqual(Set(counters.compactMap { engine.recordedOwner(of: bytes($0)) }).count, 4, "counters span every shard")
        let stop = ManagedAtomicFlag()
        final class Progress: @unchecked Sendable {
            private let lock = NSLock()
            private var done = 0, failures: [String] = [], times: [Double] = []
            func wrote(_ round: Int, ms: Double) { lock.withLock { done = round; times.append(ms) } }
            func failed(_ error: Error) { lock.withLock { failures.append("\(error)") } }
            var rounds: Int { lock.withLock { done } }
            var errors: [String] { lock.withLock { failures } }
            var milliseconds: [Double] { lock.withLock { times } }
        }
        let progress = Progress()
        let writer = Thread {
            var round = 0
            while !stop.isSet {
                round += 1
                let started = DispatchTime.now().uptimeNanoseconds
                do {
                    try engine.write { batch in for key in counters { try batch.put(key, "\(round)") } }
                    progress.wrote(round, ms: Double(DispatchTime.now().uptimeNanoseconds - started) / 1e6)
                } catch {
                    progress.failed(error)
                }
            }
            stop.finish()
        }
        /// Waits (at most 30 s) until the writer has acknowledged more than `round` rounds.
        func waitPast(_ round: Int) {
            let deadline = Date().addingTimeInterval(30)
            while progress.rounds <= round && Date() < deadline && progress.errors.isEmpty { usleep(1000) }
        }
        try fill(engine, keys: 0..<5000, tag: "base")
        writer.start()
        waitPast(10)
        let before = progress.rounds
        let info = try engine.checkpoint(to: directory.path("store"))
        let after = progress.rounds
        waitPast(after)  // still writing after the checkpoint returned
        stop.set()
        stop.waitFinished()
        XCTAssertEqual(progress.errors, [])
        XCTAssertGreaterThan(before, 10, "the writer was running before the checkpoint")
        XCTAssertGreaterThan(progress.rounds, after, "and after it")

        let store = try CheckpointStore.open(at: directory.path("store"))
        defer { store.close() }
        try store.restore(id: info.id, to: directory.path("restored"))
        let restored = try openRestored(directory.path("restored"))
        defer { restored.close() }
        let values = Set(try counters.map { try restored.getString($0) ?? "missing" })
        XCTAssertEqual(values.count, 1, "every shard at one point of the write sequence: \(values)")
        // That point is a round acknowledged while the checkpoint ran (or the one in flight as it ended).
        let restoredRound = try XCTUnwrap(values.first.flatMap { Int($0) }, "\(values)")
        XCTAssertTrue((before...(after + 1)).contains(restoredRound), "round \(restoredRound), checkpoint taken between \(before) and \(after)")
        let sorted = progress.milliseconds.sorted()
        if !sorted.isEmpty {
            let p99 = sorted[min(sorted.count - 1, Int(Double(sorted.count) * 0.99))]
            print("checkpoint consistency: \(sorted.count) cross-shard batches during the checkpoint, write p99 \(p99) ms, max \(sorted.last!) ms")
        }
    }

    // MARK: Incrementality and retention

    func testSecondCheckpointCopiesOnlyWhatChanged() throws {
        let directory = TemporaryDirectory()
        let engine = try makeEngine(in: directory, shards: 4)
        defer { engine.close() }
        try fill(engine, keys: 0..<20_000, tag: "v1", valueSize: 200)
        let store = directory.path("store")
        let first = try engine.checkpoint(to: store)
        try fill(engine, keys: 0..<200, tag: "v2", valueSize: 200)  // 1% of the keys
        let second = try engine.checkpoint(to: store)

        let firstCopied = try XCTUnwrap(first.bytesCopied), secondCopied = try XCTUnwrap(second.bytesCopied)
        print("incremental: first copied \(firstCopied) of \(first.totalBytes), second copied \(secondCopied) of \(second.totalBytes)")
        XCTAssertGreaterThan(firstCopied, 3_000_000)
        XCTAssertLessThan(secondCopied * 10, firstCopied, "the second checkpoint copies under 10% of the first")
        XCTAssertGreaterThanOrEqual(second.totalBytes, first.totalBytes)
        XCTAssertGreaterThan(second.sequenceNumber, first.sequenceNumber)
    }

    func testPurgeKeepsTheNewestAndEverythingTheyNeed() throws {
        let directory = TemporaryDirectory()
        let engine = try makeEngine(in: directory, shards: 2)
        defer { engine.close() }
        let store = directory.path("store")
        var snapshots: [Int: [[UInt8]: [UInt8]]] = [:]
        for round in 1...4 {
            try fill(engine, keys: (round * 300)..<(round * 300 + 1000), tag: "r\(round)")
            try engine.delete("key-\(round * 300)")
            snapshots[try engine.checkpoint(to: store).id] = try engine.contents()
        }
        // A purge needs the store's lock exclusively: under a shared one a restore or
        // verify elsewhere could lose files mid-read.
        let shared = try CheckpointStore.open(at: store)
        assertShardDBError(.invalidArgument, try shared.purge(keep: 2))
        shared.close()
        let checkpoints = try CheckpointStore.open(at: store, exclusive: true)
        let before = listing(store + "/backups").values.reduce(0, +)
        XCTAssertEqual(try checkpoints.purge(keep: 2), [1, 2])
        XCTAssertEqual(try checkpoints.checkpoints().map(\.id), [3, 4])
        XCTAssertEqual(try checkpoints.purge(keep: 2), [])
        XCTAssertLessThan(listing(store + "/backups").values.reduce(0, +), before, "files only purged checkpoints used are gone")
        XCTAssertFalse(files.fileExists(atPath: store + "/stats/1.json"))
        try checkpoints.verify()
        for id in [3, 4] {
            try checkpoints.restore(id: id, to: directory.path("restored-\(id)"))
            let restored = try openRestored(directory.path("restored-\(id)"))
            XCTAssertEqual(try restored.contents(), snapshots[id], "checkpoint \(id)")
            restored.close()
        }
        assertShardDBError(.invalidArgument, try checkpoints.purge(keep: -1))
        let none = assertShardDBError(.invalidArgument, try checkpoints.purge(keep: 0))
        XCTAssertTrue(none?.message.contains("reuse id 1") ?? false, none?.message ?? "")
        XCTAssertEqual(try checkpoints.checkpoints().map(\.id), [3, 4], "a refused purge deletes nothing")
        checkpoints.close()
        // A later checkpoint still works and continues the ids.
        XCTAssertEqual(try engine.checkpoint(to: store).id, 5)
    }

    // MARK: Corruption

    private func corruptOneTableFile(in store: String, truncate: Bool) throws -> String {
        let tables = listing(store + "/backups").filter { $0.key.hasPrefix("shared_checksum/") && $0.key.hasSuffix(".sst") }
        let (name, size) = try XCTUnwrap(tables.max { $0.value < $1.value })
        let handle = try XCTUnwrap(FileHandle(forUpdatingAtPath: store + "/backups/" + name))
        if truncate {
            try handle.truncate(atOffset: UInt64(size / 2))
        } else {
            try handle.seek(toOffset: UInt64(size / 2))
            let original = try XCTUnwrap(handle.readData(ofLength: 16))
            try handle.seek(toOffset: UInt64(size / 2))
            handle.write(Data(original.map { $0 ^ 0xff }))
        }
        try handle.close()
        return (name as NSString).lastPathComponent
    }

    func testVerifyAndRestoreNameACorruptedFile() throws {
        try checkCorruption(truncate: false)
    }

    func testVerifyAndRestoreNameATruncatedFile() throws {
        try checkCorruption(truncate: true)
    }

    private func checkCorruption(truncate: Bool, function: String = #function) throws {
        let directory = TemporaryDirectory(function: function)
        let engine = try makeEngine(in: directory, shards: 2)
        try fill(engine, keys: 0..<3000, tag: "v")
        let store = directory.path("store")
        try engine.checkpoint(to: store)
        engine.close()
        let bad = try corruptOneTableFile(in: store, truncate: truncate)
        let before = listing(store)

        let checkpoints = try CheckpointStore.open(at: store)
        defer { checkpoints.close() }
        let verifyError = assertShardDBError(.checkpointCorrupted, try checkpoints.verify())
        XCTAssertTrue(verifyError?.message.contains(bad) ?? false, "names \(bad): \(verifyError?.message ?? "")")
        assertShardDBError(.checkpointCorrupted, try checkpoints.verify(id: 1))
        let target = directory.path("restored")
        let restoreError = assertShardDBError(.checkpointCorrupted, try checkpoints.restore(id: 1, to: target))
        XCTAssertTrue(restoreError?.message.contains(bad) ?? false, "names \(bad): \(restoreError?.message ?? "")")
        XCTAssertFalse(files.fileExists(atPath: target), "no restored directory")
        XCTAssertEqual(try files.contentsOfDirectory(atPath: directory.path).filter { $0.contains("restor") }, [], "no hidden leftovers")
        XCTAssertEqual(listing(store), before, "verify and restore change nothing in the store")
    }

    // MARK: Damaged checkpoints (a file deleted, a meta file overwritten)

    /// The table files checkpoint `id` lists in its RocksDB meta file.
    private func sharedFiles(of id: Int, in store: String) throws -> Set<String> {
        let text = try String(contentsOfFile: "\(store)/backups/meta/\(id)", encoding: .utf8)
        return Set(text.split(separator: "\n").compactMap { $0.split(separator: " ").first.map(String.init) }.filter { $0.hasPrefix("shared_checksum/") })
    }

    /// Two checkpoints of `engine` into `store`, with a write between; returns each one's content.
    private func twoCheckpoints(of engine: ShardEngine, into store: String) throws -> [Int: [[UInt8]: [UInt8]]] {
        try fill(engine, keys: 0..<1000, tag: "v1")
        let first = try engine.checkpoint(to: store)
        let firstContents = try engine.contents()
        try fill(engine, keys: 0..<10, tag: "v2")
        let second = try engine.checkpoint(to: store)
        XCTAssertEqual([first.id, second.id], [1, 2])
        return [1: firstContents, 2: try engine.contents()]
    }

    func testCheckpointsMissingASharedFileAreListedAsDamagedAndNotDeletedUntilDropped() throws {
        let directory = TemporaryDirectory()
        let engine = try makeEngine(in: directory, shards: 2)
        defer { engine.close() }
        let store = directory.path("store")
        _ = try twoCheckpoints(of: engine, into: store)
        let shared = try XCTUnwrap(try sharedFiles(of: 1, in: store).intersection(sharedFiles(of: 2, in: store)).sorted().first)
        try files.removeItem(atPath: store + "/backups/" + shared)
        let damaged = listing(store)
        let name = (shared as NSString).lastPathComponent

        let reader = try CheckpointStore.open(at: store)
        XCTAssertEqual(reader.damagedCheckpoints.map(\.id), [1, 2])
        XCTAssertTrue(reader.damagedCheckpoints.allSatisfy { $0.reason.contains(name) }, "\(reader.damagedCheckpoints)")
        XCTAssertEqual(try reader.checkpoints().map(\.id), [])
        let verifyOne = assertShardDBError(.checkpointCorrupted, try reader.verify(id: 2))
        XCTAssertTrue(verifyOne?.message.contains(name) ?? false, "names the missing file, not the meta file: \(verifyOne?.message ?? "")")
        let verifyAll = assertShardDBError(.checkpointCorrupted, try reader.verify())
        XCTAssertTrue(verifyAll?.message.contains(name) ?? false, verifyAll?.message ?? "")
        XCTAssertTrue(verifyAll?.message.contains("damaged: 1, 2") ?? false, verifyAll?.message ?? "")
        let restore = assertShardDBError(.checkpointCorrupted, try reader.restore(to: directory.path("restored")))
        XCTAssertTrue(restore?.message.contains("latest checkpoint, 2") ?? false, restore?.message ?? "")
        XCTAssertFalse(files.fileExists(atPath: directory.path("restored")))
        reader.close()

        let create = assertShardDBError(.checkpointCorrupted, try engine.checkpoint(to: store))
        XCTAssertTrue(create?.message.contains("damaged checkpoints 1, 2") ?? false, create?.message ?? "")
        XCTAssertTrue(create?.message.contains("--drop-damaged") ?? false, create?.message ?? "")
        XCTAssertEqual(listing(store), damaged, "a refused create deletes nothing")

        let purger = try CheckpointStore.open(at: store, exclusive: true)
        defer { purger.close() }
        assertShardDBError(.checkpointCorrupted, try purger.purge(keep: 1))
        XCTAssertEqual(listing(store), damaged, "a refused purge deletes nothing")
        XCTAssertEqual(try purger.purge(dropDamaged: true), [1, 2])
        XCTAssertEqual(purger.damagedCheckpoints, [])
        XCTAssertEqual(listing(store).keys.filter { $0.hasPrefix("backups/") || $0.hasPrefix("stats/") }, [], "their files are gone")
        purger.close()

        let fresh = try engine.checkpoint(to: store)
        let checkpoints = try CheckpointStore.open(at: store)
        defer { checkpoints.close() }
        try checkpoints.verify()
        try checkpoints.restore(to: directory.path("restored"))
        let restored = try openRestored(directory.path("restored"))
        defer { restored.close() }
        XCTAssertEqual(try restored.contents(), try engine.contents(), "checkpoint \(fresh.id)")
    }

    func testUnreadableMetaFileKeepsTheNewestDamagedCheckpointFromBeingReplacedSilently() throws {
        let directory = TemporaryDirectory()
        let engine = try makeEngine(in: directory, shards: 2)
        defer { engine.close() }
        let store = directory.path("store")
        let contents = try twoCheckpoints(of: engine, into: store)
        XCTAssertTrue(files.createFile(atPath: store + "/backups/meta/2", contents: Data("garbage\n".utf8)))
        let damaged = listing(store)

        let reader = try CheckpointStore.open(at: store)
        XCTAssertEqual(reader.damagedCheckpoints.map(\.id), [2])
        XCTAssertTrue(reader.damagedCheckpoints[0].reason.contains("meta/2"), reader.damagedCheckpoints[0].reason)
        XCTAssertEqual(try reader.checkpoints().map(\.id), [1])
        let latest = assertShardDBError(.checkpointCorrupted, try reader.restore(to: directory.path("latest")))
        XCTAssertTrue(latest?.message.contains("latest checkpoint, 2") ?? false, latest?.message ?? "")
        XCTAssertTrue(latest?.message.contains("readable: 1") ?? false, latest?.message ?? "")
        XCTAssertFalse(files.fileExists(atPath: directory.path("latest")), "no older checkpoint restored instead")
        assertShardDBError(.checkpointCorrupted, try reader.restore(id: 2, to: directory.path("two")))
        try reader.restore(id: 1, to: directory.path("one"))
        let one = try openRestored(directory.path("one"))
        XCTAssertEqual(try one.contents(), contents[1])
        one.close()
        reader.close()
        XCTAssertEqual(listing(store), damaged)

        assertShardDBError(.checkpointCorrupted, try engine.checkpoint(to: store))
        XCTAssertEqual(listing(store), damaged, "checkpoint 2's private files are still there")
        XCTAssertTrue(files.fileExists(atPath: store + "/stats/2.json"))

        let purger = try CheckpointStore.open(at: store, exclusive: true)
        XCTAssertEqual(try purger.purge(keep: 5, dropDamaged: true), [2])
        XCTAssertEqual(try purger.checkpoints().map(\.id), [1])
        XCTAssertFalse(files.fileExists(atPath: store + "/backups/private/2"))
        XCTAssertFalse(files.fileExists(atPath: store + "/stats/2.json"))
        try purger.verify()
        purger.close()
        XCTAssertEqual(try engine.checkpoint(to: store).id, 2, "creates work again")
    }

    /// A store whose whole `backups/meta` folder was deleted still holds the
    /// checkpoints' files: every open refuses it, changing nothing (a create
    /// would otherwise garbage-collect them all), until the folder is back.
    func testStoreThatLostItsMetaFolderIsRefusedAndKept() throws {
        let directory = TemporaryDirectory()
        let engine = try makeEngine(in: directory, shards: 2)
        defer { engine.close() }
        let store = directory.path("store")
        let contents = try twoCheckpoints(of: engine, into: store)
        let meta = store + "/backups/meta", aside = directory.path("meta-aside")
        try files.moveItem(atPath: meta, toPath: aside)
        let before = listing(store)

        let create = assertShardDBError(.checkpointCorrupted, try engine.checkpoint(to: store))
        XCTAssertTrue(create?.message.contains("no backups/meta folder") ?? false, create?.message ?? "")
        assertShardDBError(.checkpointCorrupted, try CheckpointStore.open(at: store))
        assertShardDBError(.checkpointCorrupted, try CheckpointStore.open(at: store, exclusive: true))
        XCTAssertEqual(listing(store), before, "nothing deleted or added")
        XCTAssertFalse(files.fileExists(atPath: meta), "no empty meta folder created")

        try files.moveItem(atPath: aside, toPath: meta)
        let reader = try CheckpointStore.open(at: store)
        XCTAssertEqual(try reader.checkpoints().map(\.id), [1, 2])
        try reader.verify()
        try reader.restore(id: 1, to: directory.path("one"))
        reader.close()
        let one = try openRestored(directory.path("one"))
        XCTAssertEqual(try one.contents(), contents[1])
        one.close()
    }

    /// Meta files deleted with their folder kept (all of them, or one): every
    /// open refuses, naming the checkpoints, and nothing is collected; putting
    /// them back makes the store whole. Deleting the statistics of a checkpoint
    /// whose meta file is gone for good lets it go.
    func testStoreThatLostMetaFilesIsRefusedAndKept() throws {
        let directory = TemporaryDirectory()
        let engine = try makeEngine(in: directory, shards: 2)
        defer { engine.close() }
        let store = directory.path("store")
        let contents = try twoCheckpoints(of: engine, into: store)
        let meta = store + "/backups/meta"
        let saved = try [1, 2].map { try Data(contentsOf: URL(fileURLWithPath: "\(meta)/\($0)")) }
        for id in [1, 2] { try files.removeItem(atPath: "\(meta)/\(id)") }
        let before = listing(store)
        let all = assertShardDBError(.checkpointCorrupted, try engine.checkpoint(to: store))
        XCTAssertTrue(all?.message.contains("checkpoints 1, 2") ?? false, all?.message ?? "")
        assertShardDBError(.checkpointCorrupted, try CheckpointStore.open(at: store))
        XCTAssertEqual(listing(store), before, "nothing deleted or added")

        // Only checkpoint 2's meta file missing.
        XCTAssertTrue(files.createFile(atPath: "\(meta)/1", contents: saved[0]))
        let one = assertShardDBError(.checkpointCorrupted, try CheckpointStore.open(at: store, exclusive: true))
        XCTAssertTrue(one?.message.contains("checkpoints 2 ") ?? false, one?.message ?? "")
        XCTAssertTrue(files.fileExists(atPath: store + "/backups/private/2"))

        XCTAssertTrue(files.createFile(atPath: "\(meta)/2", contents: saved[1]))
        let reader = try CheckpointStore.open(at: store)
        XCTAssertEqual(try reader.checkpoints().map(\.id), [1, 2])
        try reader.verify()
        reader.close()

        // Gone for good: without its statistics the store goes on without it.
        try files.removeItem(atPath: "\(meta)/2")
        try files.removeItem(atPath: store + "/stats/2.json")
        XCTAssertEqual(try engine.checkpoint(to: store).id, 2, "RocksDB numbers after the newest it lists")
        let after = try CheckpointStore.open(at: store)
        defer { after.close() }
        try after.restore(id: 1, to: directory.path("one"))
        let restored = try openRestored(directory.path("one"))
        XCTAssertEqual(try restored.contents(), contents[1])
        restored.close()
    }

    // MARK: Bad inputs

    /// A checkpoint store opened as an instance (verify, salvage-wal, info on the
    /// wrong path) was called a damaged database (its LOCK file looks like RocksDB's).
    func testACheckpointStoreIsNotTakenForADamagedInstance() throws {
        let directory = TemporaryDirectory()
        let engine = try makeEngine(in: directory, shards: 1)
        defer { engine.close() }
        try engine.put("k", "v")
        let store = directory.path("store")
        try engine.checkpoint(to: store)
        let before = listing(store)
        let opened = assertShardDBError(.notAnInstance, try ShardEngine.open(at: store, options: .testing()))
        XCTAssertTrue(opened?.message.contains("is a checkpoint store") ?? false, opened?.message ?? "")
        let created = assertShardDBError(.notAnInstance, try ShardEngine.create(at: store, shards: 1, options: .testing()))
        XCTAssertTrue(created?.message.contains("is a checkpoint store") ?? false, created?.message ?? "")
        XCTAssertEqual(listing(store), before)
    }

    func testMissingStoreIsRefused() throws {
        let directory = TemporaryDirectory()
        let missing = directory.path("missing")
        assertShardDBError(.checkpointStoreNotFound, try CheckpointStore.open(at: missing))
        assertShardDBError(.checkpointStoreNotFound, try CheckpointStore.open(at: missing, exclusive: true))
        XCTAssertFalse(files.fileExists(atPath: missing))
        // A directory that is not a store is not taken over.
        let other = directory.path("other")
        try files.createDirectory(atPath: other, withIntermediateDirectories: true)
        XCTAssertTrue(files.createFile(atPath: other + "/precious", contents: Data("keep".utf8)))
        assertShardDBError(.checkpointStoreNotFound, try CheckpointStore.open(at: other))
        let engine = try makeEngine(in: directory, shards: 1)
        defer { engine.close() }
        assertShardDBError(.checkpointStoreNotFound, try engine.checkpoint(to: other))
        XCTAssertEqual(try files.contentsOfDirectory(atPath: other), ["precious"])
    }

    func testUnwritableStoreIsRefused() throws {
        let directory = TemporaryDirectory()
        let engine = try makeEngine(in: directory, shards: 2)
        defer { engine.close() }
        let file = directory.path("regular-file")
        XCTAssertTrue(files.createFile(atPath: file, contents: Data("data".utf8)))
        assertShardDBError(.notWritable, try engine.checkpoint(to: file + "/store"))
        assertShardDBError(.notWritable, try engine.checkpoint(to: file))
        XCTAssertEqual(files.contents(atPath: file), Data("data".utf8))
        if getuid() != 0 {
            let readOnly = directory.path("read-only")
            try files.createDirectory(atPath: readOnly, withIntermediateDirectories: true)
            chmod(readOnly, 0o500)
            defer { chmod(readOnly, 0o700) }
            assertShardDBError(.notWritable, try engine.checkpoint(to: readOnly))
            XCTAssertEqual(try files.contentsOfDirectory(atPath: readOnly), [])
        }
    }

    /// Two instances creating one new store at once: the second, arriving just
    /// before the first writes the store's manifest, is refused as busy (both used
    /// to write a manifest, and the store named the loser as the owner of the
    /// winner's checkpoints).
    func testTwoInstancesCreatingOneStoreAtOnceLeaveOneOwner() throws {
        let directory = TemporaryDirectory()
        let (a, b) = try twoInstances(in: directory)
        defer { a.close(); b.close() }
        let store = directory.path("store")
        let second = LockedResult()
        FailurePoints.arm("checkpoint.store.before-manifest", action: .call(.init {
            FailurePoints.disarmAll()
            do { _ = try b.checkpoint(to: store); second.set("created") } catch { second.set("\(error)") }
        }))
        try a.checkpoint(to: store)
        XCTAssertTrue(second.value?.contains("in use by another checkpoint") == true, second.value ?? "nil")
        let checkpoints = try CheckpointStore.open(at: store)
        defer { checkpoints.close() }
        XCTAssertEqual(checkpoints.ownerInstanceID, a.instanceID)
        XCTAssertEqual(try checkpoints.checkpoints().map(\.instanceID), [a.instanceID])
        // The store is a's: b is now refused as foreign, not as busy.
        checkpoints.close()
        assertShardDBError(.foreignCheckpointStore, try b.checkpoint(to: store))
    }

    /// A checkpoint RocksDB loads but whose record does not decode (planted: a
    /// backup of the store's with garbage for a record) is listed as damaged and
    /// left out; the others list, verify by id, restore and purge as before (one
    /// such record used to make list, verify and purge fail for the whole store),
    /// and it goes only when dropped explicitly.
    func testACheckpointWithAnUnreadableRecordDoesNotBlockTheStore() throws {
        let directory = TemporaryDirectory()
        let engine = try makeEngine(in: directory, shards: 2)
        defer { engine.close() }
        try engine.put("k", "v1")
        let store = directory.path("store")
        let first = try engine.checkpoint(to: store)
        let garbage: Int = try {
            let plain = try Database.open(at: directory.path("plain"), options: { let o = Options(); o.createIfMissing = true; return o }())
            defer { plain.close() }
            try plain.put("x", "y")
            let backups = try BackupEngine.open(at: store + "/backups")
            defer { backups.close() }
            return Int(try backups.createBackup(of: plain, appMetadata: Array("{not a record".utf8)))
        }()
        try engine.put("k", "v2")
        let second = try engine.checkpoint(to: store)
        XCTAssertEqual([first.id, garbage, second.id], [1, 2, 3])

        let opened = try CheckpointStore.open(at: store)
        XCTAssertEqual(try opened.checkpoints().map(\.id), [first.id, second.id])
        XCTAssertEqual(opened.damagedCheckpoints.map(\.id), [garbage])
        XCTAssertTrue(opened.damagedCheckpoints[0].reason.contains("unreadable record"), opened.damagedCheckpoints[0].reason)
        XCTAssertEqual(try opened.verify(id: second.id).map(\.id), [second.id])
        assertShardDBError(.checkpointCorrupted, try opened.verify())  // the whole store: it names the damage
        assertShardDBError(.checkpointCorrupted, try opened.checkpoint(id: garbage))
        try opened.restore(to: directory.path("restored"))  // the latest readable one, the newest of all
        opened.close()
        let restored = try openRestored(directory.path("restored"))
        XCTAssertEqual(try restored.getString("k"), "v2")
        restored.close()

        let exclusive = try CheckpointStore.open(at: store, exclusive: true)
        XCTAssertEqual(try exclusive.purge(keep: 1), [first.id], "purging by count skips it")
        XCTAssertEqual(try exclusive.purge(dropDamaged: true), [garbage])
        XCTAssertEqual(exclusive.damagedCheckpoints, [])
        XCTAssertEqual(try exclusive.checkpoints().map(\.id), [second.id])
        exclusive.close()
        XCTAssertEqual(try engine.checkpoint(to: store).id, second.id + 1)
    }

    /// A checkpoint record over RocksDB's 1 MiB for a backup's metadata is refused
    /// up front with a typed error (RocksDB said only "App metadata too large",
    /// reported as a storage error of the instance); one just under it round-trips.
    /// A store with no checkpoint has nothing to verify: that is an error too.
    func testARecordOverOneMiBIsRefusedAndAnEmptyStoreDoesNotVerify() throws {
        let directory = TemporaryDirectory()
        let engine = try makeEngine(in: directory, shards: 2)
        defer { engine.close() }
        try engine.put("k", "v")
        let store = directory.path("store")
        FailurePoints.arm("checkpoint.before-backup", action: .error)
        assertShardDBError(.injectedFailure, try engine.checkpoint(to: store))
        let empty = try CheckpointStore.open(at: store)
        assertShardDBError(.checkpointNotFound, try empty.verify())
        empty.close()

        let big = ["note": String(repeating: "a", count: 1_100_000)]
        let error = assertShardDBError(.invalidArgument, try engine.checkpoint(to: store, metadata: big))
        XCTAssertTrue(error?.message.contains("can carry") ?? false, error?.message ?? "")
        // Refused before the store is touched: a new one is not even created.
        assertShardDBError(.invalidArgument, try engine.checkpoint(to: directory.path("fresh"), metadata: big))
        XCTAssertFalse(files.fileExists(atPath: directory.path("fresh")))
        let near = try engine.checkpoint(to: store, metadata: ["note": String(repeating: "b", count: 1_000_000)])
        let reopened = try CheckpointStore.open(at: store)
        defer { reopened.close() }
        XCTAssertEqual(try reopened.checkpoints().map(\.id), [near.id], "only the one that fits")
        XCTAssertEqual(try reopened.checkpoint(id: near.id).metadata["note"]?.count, 1_000_000)
        XCTAssertEqual(try reopened.verify().map(\.id), [near.id])
    }

    /// A store folder holding only its lock file and perhaps the manifest's
    /// temporary copy (a create stopped before its manifest was in place) is still
    /// taken as a new store.
    func testAStoreHoldingOnlyItsLockIsCreated() throws {
        let directory = TemporaryDirectory()
        let a = try makeEngine(in: directory, name: "a", shards: 2)
        defer { a.close() }
        try a.put("k", "a")
        let store = directory.path("store")
        FailurePoints.arm("checkpoint.store.before-manifest", action: .error)
        assertShardDBError(.injectedFailure, try a.checkpoint(to: store))
        XCTAssertEqual(try files.contentsOfDirectory(atPath: store), ["LOCK"])
        // A kill during the manifest's write leaves its temporary copy too.
        let leftover = store + "/sharddb-checkpoint-store.json.tmp-12345"
        try "{\"format\": 1, \"instan".write(toFile: leftover, atomically: false, encoding: .utf8)
        let info = try a.checkpoint(to: store)
        XCTAssertEqual(info.instanceID, a.instanceID)
        XCTAssertFalse(files.fileExists(atPath: leftover), "the leftover is removed once the manifest is in place")
        // A folder with anything else in it is still refused, and gets no lock file.
        let foreign = directory.path("foreign")
        try files.createDirectory(atPath: foreign, withIntermediateDirectories: true)
        try "x".write(toFile: foreign + "/notes.txt", atomically: true, encoding: .utf8)
        assertShardDBError(.checkpointStoreNotFound, try a.checkpoint(to: foreign))
        XCTAssertEqual(try files.contentsOfDirectory(atPath: foreign), ["notes.txt"])
    }

    func testStoreOfAnotherInstanceIsRefusedUnlessAllowed() throws {
        let directory = TemporaryDirectory()
        let (a, b) = try twoInstances(in: directory)
        defer { a.close(); b.close() }
        let store = directory.path("store")
        try a.checkpoint(to: store)
        let before = listing(store)
        assertShardDBError(.foreignCheckpointStore, try b.checkpoint(to: store))
        XCTAssertEqual(listing(store), before)
        let checkpoints = try CheckpointStore.open(at: store)
        XCTAssertEqual(checkpoints.ownerInstanceID, a.instanceID)
        XCTAssertEqual(try checkpoints.checkpoints().map(\.instanceID), [a.instanceID])
        checkpoints.close()

        let mixed = try b.checkpoint(to: store, allowForeignInstance: true)
        XCTAssertEqual(mixed.instanceID, b.instanceID)
        let reopened = try CheckpointStore.open(at: store)
        XCTAssertEqual(try reopened.checkpoints().map(\.instanceID), [a.instanceID, b.instanceID])
        // The latest is the store's own instance's; another's is restored by id.
        XCTAssertEqual(try reopened.checkpoint(id: nil).instanceID, a.instanceID)
        try reopened.restore(to: directory.path("restored-latest"))
        let restored = try openRestored(directory.path("restored-latest"))
        XCTAssertEqual(try restored.get("k"), Array("a".utf8))
        restored.close()
        reopened.close()
        // `keep` counts per instance: a's second checkpoint does not push out b's only one.
        try a.put("k", "a2")
        try a.checkpoint(to: store)
        let exclusive = try CheckpointStore.open(at: store, exclusive: true)
        defer { exclusive.close() }
        XCTAssertEqual(try exclusive.purge(keep: 1), [1], "a's older checkpoint only")
        XCTAssertEqual(try exclusive.checkpoints().map(\.instanceID), [b.instanceID, a.instanceID])
    }

    /// In a shared store, a damaged checkpoint newer than the instance's latest readable
    /// one may be the instance's own (whose it is cannot be read): a restore without an
    /// id refuses, instead of taking the instance's older checkpoint silently.
    func testInASharedStoreADamagedNewerCheckpointIsNotReplacedSilently() throws {
        let directory = TemporaryDirectory()
        let (a, b) = try twoInstances(in: directory)
        defer { a.close(); b.close() }
        let store = directory.path("store")
        XCTAssertEqual(try a.checkpoint(to: store).id, 1)
        XCTAssertEqual(try b.checkpoint(to: store, allowForeignInstance: true).id, 2)
        try a.put("k", "a3")
        XCTAssertEqual(try a.checkpoint(to: store).id, 3)
        XCTAssertEqual(try b.checkpoint(to: store, allowForeignInstance: true).id, 4)
        XCTAssertTrue(files.createFile(atPath: store + "/backups/meta/3", contents: Data("garbage\n".utf8)))
        let reader = try CheckpointStore.open(at: store)
        defer { reader.close() }
        XCTAssertEqual(reader.damagedCheckpoints.map(\.id), [3])
        let refused = assertShardDBError(.checkpointCorrupted, try reader.restore(to: directory.path("latest")))
        XCTAssertTrue(refused?.message.contains("latest checkpoint, 3") ?? false, refused?.message ?? "")
        XCTAssertFalse(files.fileExists(atPath: directory.path("latest")), "checkpoint 1 not restored instead")
        try reader.restore(id: 1, to: directory.path("one"))
    }

    /// A shared file the store holds, truncated: create would reuse it, and RocksDB's
    /// size check stops it; that is a damaged store, not a storage failure.
    func testCreateOverATruncatedSharedFileReportsADamagedStore() throws {
        let directory = TemporaryDirectory()
        let engine = try makeEngine(in: directory, shards: 1)
        defer { engine.close() }
        try fill(engine, keys: 0..<3000, tag: "v")
        let store = directory.path("store")
        try engine.checkpoint(to: store)
        _ = try corruptOneTableFile(in: store, truncate: true)
        try engine.put("another", "write")
        let refused = assertShardDBError(.checkpointCorrupted, try engine.checkpoint(to: store))
        XCTAssertTrue(refused?.message.contains("Size mismatch") ?? false, refused?.message ?? "")
        let checkpoints = try CheckpointStore.open(at: store)
        defer { checkpoints.close() }
        XCTAssertEqual(try checkpoints.checkpoints().map(\.id), [1], "nothing added")
    }

    func testUnknownIdAndNonEmptyTargetAreRefused() throws {
        let directory = TemporaryDirectory()
        let engine = try makeEngine(in: directory, shards: 2)
        try engine.put("k", "v")
        let store = directory.path("store")
        try engine.checkpoint(to: store)
        engine.close()
        let checkpoints = try CheckpointStore.open(at: store)
        defer { checkpoints.close() }
        let before = listing(store)

        assertShardDBError(.checkpointNotFound, try checkpoints.verify(id: 7))
        assertShardDBError(.checkpointNotFound, try checkpoints.restore(id: 7, to: directory.path("r1")))
        XCTAssertFalse(files.fileExists(atPath: directory.path("r1")))

        let occupied = directory.path("occupied")
        try files.createDirectory(atPath: occupied, withIntermediateDirectories: true)
        XCTAssertTrue(files.createFile(atPath: occupied + "/mine", contents: Data("x".utf8)))
        assertShardDBError(.targetNotEmpty, try checkpoints.restore(to: occupied))
        XCTAssertEqual(try files.contentsOfDirectory(atPath: occupied), ["mine"])
        assertShardDBError(.targetNotEmpty, try checkpoints.restore(to: engine.path))
        XCTAssertEqual(listing(store), before)

        // A symbolic link (even to an empty directory) is refused: the rename would replace the link.
        let pointed = directory.path("pointed")
        try files.createDirectory(atPath: pointed, withIntermediateDirectories: true)
        try files.createSymbolicLink(atPath: directory.path("link"), withDestinationPath: pointed)
        assertShardDBError(.invalidArgument, try checkpoints.restore(to: directory.path("link")))
        XCTAssertEqual(try files.destinationOfSymbolicLink(atPath: directory.path("link")), pointed)
        XCTAssertEqual(try files.contentsOfDirectory(atPath: pointed), [])
        XCTAssertFalse(try files.contentsOfDirectory(atPath: directory.path).contains { $0.contains(".restoring-") })

        // An existing empty directory is a valid target, and the restored one keeps its mode.
        for mode in [0o700, 0o750] as [mode_t] {
            let empty = directory.path("empty-\(String(mode, radix: 8))")
            try files.createDirectory(atPath: empty, withIntermediateDirectories: true)
            XCTAssertEqual(chmod(empty, mode), 0)
            try checkpoints.restore(to: empty)
            var info = stat()
            XCTAssertEqual(stat(empty, &info), 0)
            XCTAssertEqual(info.st_mode & 0o7777, mode)
            let restored = try openRestored(empty)
            XCTAssertEqual(try restored.getString("k"), "v")
            restored.close()
        }
    }

    // MARK: Interrupted steps (in-process; the kill cases run shardctl in CheckpointCommandTests)

    func testInterruptedCreateLeavesOnlyRestorableCheckpoints() throws {
        let directory = TemporaryDirectory()
        let engine = try makeEngine(in: directory, shards: 2)
        defer { engine.close() }
        let store = directory.path("store")
        try fill(engine, keys: 0..<1000, tag: "v1")
        try engine.checkpoint(to: store)
        for (index, point) in ["checkpoint.begin", "checkpoint.after-cleanup", "checkpoint.before-backup",
                               "checkpoint.after-backup", "checkpoint.after-stats"].enumerated() {
            try fill(engine, keys: 0..<100, tag: "step\(index)")
            FailurePoints.arm(point, action: .error)
            assertShardDBError(.injectedFailure, try engine.checkpoint(to: store))
        }
        let info = try engine.checkpoint(to: store)
        let checkpoints = try CheckpointStore.open(at: store, exclusive: true)
        defer { checkpoints.close() }
        let listed = try checkpoints.checkpoints()
        XCTAssertEqual(listed.last?.id, info.id)
        XCTAssertEqual(listed.count, 4, "committed: the first, after-backup, after-stats, the last")
        try checkpoints.verify()
        for checkpoint in listed {
            try checkpoints.restore(id: checkpoint.id, to: directory.path("r\(checkpoint.id)"))
        }
        FailurePoints.arm("checkpoint.purge.after-delete", action: .error)
        assertShardDBError(.injectedFailure, try checkpoints.purge(keep: 1))
        XCTAssertEqual(try checkpoints.checkpoints().map(\.id), listed.dropFirst().map(\.id))
        try checkpoints.verify()
        XCTAssertEqual(try checkpoints.purge(keep: 1).count, 2)
        try checkpoints.verify()
    }
}

/// A text a failure-point hook leaves for the test.
private final class LockedResult: @unchecked Sendable {
    private let lock = NSLock()
    private var stored: String?
    var value: String? { lock.withLock { stored } }
    func set(_ text: String) { lock.withLock { stored = text } }
}
