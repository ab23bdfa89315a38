import Foundation
import RocksDB
@testable import ShardDB
import XCTest

final class ChangelogTests: XCTestCase {
    private let keyGroups = Partitioning.defaultKeyGroups

    /// Keys `prefix0`, `prefix1`, ... until `count` of them belong to `shard`.
    private func keys(ownedBy shard: Int, in engine: ShardEngine, count: Int, prefix: String = "key") -> [String] {
        var found: [String] = []
        var i = 0
        while found.count < count {
            let key = "\(prefix)\(i)"
            if engine.recordedOwner(of: bytes(key)) == shard { found.append(key) }
            i += 1
        }
        return found
    }

    private func keyGroup(_ key: String) -> Int {
        bytes(key).withUnsafeBytes { KeyHash.keyGroup(of: $0, keyGroups: keyGroups) }
    }

    func testReadsOneShardsPutsAndDeletesWithTheirSequences() throws {
        let dir = TemporaryDirectory()
        let clock = ManualClock()
        let engine = try makeEngine(in: dir, shards: 4, clock: clock)
        let start = try engine.latestSequenceNumber() + 1
        let mine = keys(ownedBy: 1, in: engine, count: 3)
        let other = keys(ownedBy: 2, in: engine, count: 1)[0]

        try engine.put(mine[0], "v0")                                      // start
        try engine.put(other, "elsewhere")                                 // start + 1
        try engine.put(mine[1], "v1", ttl: .seconds(60))                   // start + 2
        try engine.delete(mine[0])                                         // start + 3
        try engine.put(mine[2], "v2")                                      // start + 4

        let reader = try ChangelogReader(engine: engine, shard: 1, from: start)
        XCTAssertEqual(reader.nextSequence, start)
        let records = try reader.read()
        XCTAssertEqual(records.map(\.sequence), [start, start + 2, start + 3, start + 4])
        XCTAssertEqual(records.map(\.operation), [.put, .put, .delete, .put])
        XCTAssertEqual(records.map(\.key), [mine[0], mine[1], mine[0], mine[2]].map(bytes))
        XCTAssertEqual(records.map(\.storedKey), [mine[0], mine[1], mine[0], mine[2]].map { RawInstance.storedKey(bytes($0), keyGroups: keyGroups) })
        XCTAssertTrue(records.allSatisfy { $0.shard == 1 && $0.storedEndKey == nil })
        XCTAssertEqual(records.map(\.userValue), [bytes("v0"), bytes("v1"), nil, bytes("v2")])
        XCTAssertEqual(records[0].header, ValueHeader())
        XCTAssertEqual(records[0].value, [ValueHeader.version, 0] + bytes("v0"))
        XCTAssertEqual(records[1].header, ValueHeader(expiresAtMilliseconds: clock.nowMilliseconds() + 60_000))
        XCTAssertNil(records[2].value)
        XCTAssertNil(records[2].header)
        XCTAssertEqual(reader.nextSequence, start + 5)
        XCTAssertEqual(try reader.read(), [])

        // The other shard's reader sees only its record.
        let otherReader = try ChangelogReader(engine: engine, shard: 2, from: start)
        XCTAssertEqual(try otherReader.read().map(\.sequence), [start + 1])
    }

    func testFromSequenceZeroOrOneOnAFreshInstance() throws {
        let dir = TemporaryDirectory()
        let engine = try makeEngine(in: dir, shards: 2)
        let created = try engine.latestSequenceNumber()
        XCTAssertGreaterThan(created, 0, "creating an instance writes its metadata")
        for from: UInt64 in [0, 1] {
            let reader = try ChangelogReader(engine: engine, shard: 0, from: from)
            XCTAssertEqual(reader.nextSequence, 1)
            // The metadata batch is looked at and passed over.
            XCTAssertEqual(try reader.read(), [])
            XCTAssertEqual(reader.nextSequence, created + 1)
        }
        let key = keys(ownedBy: 0, in: engine, count: 1)[0]
        try engine.put(key, "v")
        XCTAssertEqual(try ChangelogReader(engine: engine, shard: 0, from: 0).read().map(\.key), [bytes(key)])
    }

    func testPastTheEndReturnsEmptyThenPicksUpNewWritesAcrossFlushes() throws {
        let dir = TemporaryDirectory()
        let engine = try makeEngine(in: dir, shards: 2)
        let reader = try ChangelogReader(engine: engine, shard: 0, from: try engine.latestSequenceNumber() + 1)
        XCTAssertEqual(try reader.read(), [])
        XCTAssertEqual(try reader.read(), [])
        let mine = keys(ownedBy: 0, in: engine, count: 6)

        try engine.put(mine[0], "a")
        XCTAssertEqual(try reader.read().map(\.key), [bytes(mine[0])])
        XCTAssertEqual(try reader.read(), [])

        // Flushing every family switches to a new log; the reader follows.
        try engine.put(mine[1], "b")
        for shard in engine.table.shards { try engine.database.flush(shard.family) }
        try engine.database.flush(engine.metadata)
        try engine.database.flush()
        try engine.put(mine[2], "c")
        XCTAssertEqual(try reader.read().map(\.key), [mine[1], mine[2]].map(bytes))

        // A reader created before the flush, from before it, reads the archived log too.
        for shard in engine.table.shards { try engine.database.flush(shard.family) }
        try engine.put(mine[3], "d")
        XCTAssertEqual(try reader.read().map(\.key), [bytes(mine[3])])
        let fromStart = try ChangelogReader(engine: engine, shard: 0, from: 1)
        XCTAssertEqual(try fromStart.read().map(\.key), mine.prefix(4).map(bytes))
        XCTAssertEqual(fromStart.nextSequence, reader.nextSequence)
    }

    func testBatchAcrossShardsGivesEachShardItsRecords() throws {
        let dir = TemporaryDirectory()
        let engine = try makeEngine(in: dir, shards: 3)
        let start = try engine.latestSequenceNumber() + 1
        let k0 = keys(ownedBy: 0, in: engine, count: 2)
        let k1 = keys(ownedBy: 1, in: engine, count: 1)
        let k2 = keys(ownedBy: 2, in: engine, count: 1)
        try engine.write { batch in
            try batch.put(k0[0], "a")        // start
            try batch.put(k1[0], "b")        // start + 1
            try batch.delete(k2[0])          // start + 2
            try batch.put(k0[1], "c")        // start + 3
        }
        try engine.put(k1[0], "again")       // start + 4

        let expected: [Int: [(UInt64, ChangeRecord.Operation, String)]] = [
            0: [(start, .put, k0[0]), (start + 3, .put, k0[1])],
            1: [(start + 1, .put, k1[0]), (start + 4, .put, k1[0])],
            2: [(start + 2, .delete, k2[0])],
        ]
        for shard in 0..<3 {
            let reader = try ChangelogReader(engine: engine, shard: shard, from: start)
            let records = try reader.read()
            XCTAssertEqual(records.map(\.sequence), expected[shard]!.map(\.0), "shard \(shard)")
            XCTAssertEqual(records.map(\.operation), expected[shard]!.map(\.1), "shard \(shard)")
            XCTAssertEqual(records.map(\.key), expected[shard]!.map { bytes($0.2) }, "shard \(shard)")
            XCTAssertEqual(reader.nextSequence, start + 5)
        }

        // From the middle of the batch: its earlier records are skipped.
        XCTAssertEqual(try ChangelogReader(engine: engine, shard: 0, from: start + 1).read().map(\.sequence), [start + 3])
    }

    func testMaxRecordsSplitsABatchWithoutLosingOrRepeating() throws {
        let dir = TemporaryDirectory()
        let engine = try makeEngine(in: dir, shards: 2)
        let start = try engine.latestSequenceNumber() + 1
        let mine = keys(ownedBy: 0, in: engine, count: 5)
        let other = keys(ownedBy: 1, in: engine, count: 3)
        try engine.write { batch in
            for i in 0..<3 {
                try batch.put(mine[i], "m\(i)")
                try batch.put(other[i], "o\(i)")
            }
        }
        try engine.put(mine[3], "m3")
        try engine.put(mine[4], "m4")

        let reader = try ChangelogReader(engine: engine, shard: 0, from: start)
        var chunks: [[UInt64]] = []
        while true {
            let chunk = try reader.read(maxRecords: 2)
            if chunk.isEmpty { break }
            chunks.append(chunk.map(\.sequence))
        }
        XCTAssertEqual(chunks, [[start, start + 2], [start + 4, start + 6], [start + 7]])
        XCTAssertEqual(reader.nextSequence, start + 8)
        assertShardDBError(.invalidArgument, try reader.read(maxRecords: 0))
    }

    func testRangeFilterUnderHashPartitioningAndDeleteRangeClipping() throws {
        let dir = TemporaryDirectory()
        let engine = try makeEngine(in: dir, shards: 1)   // shard 0 owns every key group
        let start = try engine.latestSequenceNumber() + 1
        let all = (0..<40).map { "key\($0)" }
        let range = KeyGroupRange(0, keyGroups / 2)
        let inside = all.filter { range.contains(keyGroup($0)) }
        XCTAssertFalse(inside.isEmpty)
        XCTAssertNotEqual(inside.count, all.count)
        for key in all { try engine.put(key, "v") }
        // Range deletions straight on the shard's family, in stored form.
        let family = try XCTUnwrap(engine.table.shard(id: 0)?.family)
        let prefix = { (kg: Int) in KeyEncoding.keyGroupPrefix(kg) }
        try engine.database.deleteRange(from: prefix(10), to: prefix(3000), in: family)                // clipped
        try engine.database.deleteRange(from: prefix(3000), to: prefix(3100), in: family)              // disjoint
        try engine.database.deleteRange(from: prefix(5) + bytes("user"), to: prefix(6), in: family)   // inside

        let reader = try ChangelogReader(engine: engine, shard: 0, range: .keyGroups(range), from: start)
        let records = try reader.read()
        let puts = records.filter { $0.operation == .put }
        XCTAssertEqual(Set(puts.map(\.key)), Set(inside.map(bytes)))
        XCTAssertEqual(puts.count, inside.count)
        let ranges = records.filter { $0.operation == .deleteRange }
        XCTAssertEqual(ranges.map(\.storedKey), [prefix(10), prefix(5) + bytes("user")])
        XCTAssertEqual(ranges.map(\.storedEndKey), [prefix(range.upperBound), prefix(6)])
        XCTAssertEqual(ranges.map(\.key), [[], bytes("user")])
        XCTAssertEqual(records.map(\.sequence), records.map(\.sequence).sorted())
        XCTAssertEqual(reader.nextSequence, try engine.latestSequenceNumber() + 1)

        // Without a range, the whole family's changes, bounds untouched.
        let whole = try ChangelogReader(engine: engine, shard: 0, from: start).read()
        XCTAssertEqual(whole.filter { $0.operation == .put }.count, all.count)
        XCTAssertEqual(whole.filter { $0.operation == .deleteRange }.map(\.storedEndKey), [prefix(3000), prefix(3100), prefix(6)])

        // A range of the other scheme, or an empty one, is refused.
        assertShardDBError(.invalidArgument, try ChangelogReader(engine: engine, shard: 0, range: .keys(lower: [], upper: nil), from: 1))
        assertShardDBError(.invalidArgument, try ChangelogReader(engine: engine, shard: 0, range: .keyGroups(KeyGroupRange(5, 5)), from: 1))
        assertShardDBError(.shardNotFound, try ChangelogReader(engine: engine, shard: 9, from: 1))
    }

    func testRangeFilterUnderRangePartitioning() throws {
        let dir = TemporaryDirectory()
        let engine = try makeEngine(in: dir, shards: 2, partitioning: .range(splitPoints: [bytes("m")]))
        let start = try engine.latestSequenceNumber() + 1
        for key in ["a", "c", "d", "f", "g", "n", "z"] { try engine.put(key, "v-\(key)") }
        let family = try XCTUnwrap(engine.table.shard(id: 0)?.family)
        try engine.database.deleteRange(from: bytes("b"), to: bytes("e"), in: family)    // clipped to [c, e)
        try engine.database.deleteRange(from: bytes("f"), to: bytes("h"), in: family)    // clipped to [f, f): empty, dropped
        try engine.delete("d")

        let reader = try ChangelogReader(engine: engine, shard: 0, range: .keys(lower: bytes("c"), upper: bytes("f")), from: start)
        let records = try reader.read()
        XCTAssertEqual(records.map(\.operation), [.put, .put, .deleteRange, .delete])
        XCTAssertEqual(records.map(\.key), ["c", "d", "c", "d"].map(bytes))
        XCTAssertEqual(records.map(\.storedKey), records.map(\.key), "range partitioning stores raw keys")
        XCTAssertEqual(records[2].storedEndKey, bytes("e"))
        XCTAssertEqual(records[0].userValue, bytes("v-c"))

        // Shard 1 holds the keys from "m" on.
        let upper = try ChangelogReader(engine: engine, shard: 1, from: start).read()
        XCTAssertEqual(upper.map(\.key), ["n", "z"].map(bytes))
        assertShardDBError(.invalidArgument, try ChangelogReader(engine: engine, shard: 0, range: .keyGroups(KeyGroupRange(0, 1)), from: 1))
    }

    func testExpiredValuesAreStillReturned() throws {
        let dir = TemporaryDirectory()
        let clock = ManualClock()
        let engine = try makeEngine(in: dir, shards: 1, clock: clock)
        let start = try engine.latestSequenceNumber() + 1
        try engine.put("short", "lived", ttl: .seconds(1))
        clock.advance(milliseconds: 5_000)
        XCTAssertNil(try engine.get("short"))
        let record = try XCTUnwrap(try ChangelogReader(engine: engine, shard: 0, from: start).read().first)
        XCTAssertEqual(record.key, bytes("short"))
        XCTAssertEqual(record.userValue, bytes("lived"))
        XCTAssertEqual(record.header?.isExpired(at: clock.nowMilliseconds()), true)
    }

    func testWriteWithoutWALIsAGap() throws {
        let dir = TemporaryDirectory()
        let engine = try makeEngine(in: dir, shards: 2)
        let start = try engine.latestSequenceNumber() + 1
        let mine = keys(ownedBy: 0, in: engine, count: 3)
        let shard = try XCTUnwrap(engine.table.shard(id: 0))
        let stored = RawInstance.storedKey(bytes(mine[1]), keyGroups: keyGroups)

        try engine.put(mine[0], "logged")                                                  // start
        try engine.database.put(stored, [ValueHeader.version, 0] + bytes("unlogged"),
                                in: shard.family, options: WriteOptions(disableWAL: true))  // start + 1: a hole
        try engine.put(mine[2], "logged")                                                  // start + 2

        // From before the hole: the records before it come first, then the gap.
        let reader = try ChangelogReader(engine: engine, shard: 0, from: start)
        XCTAssertEqual(try reader.read().map(\.sequence), [start])
        XCTAssertEqual(reader.nextSequence, start + 1)
        let error = assertShardDBError(.changelogGap, try reader.read())
        XCTAssertTrue(error?.message.contains("sequence \(start + 1)") ?? false, error?.message ?? "")
        // It stays a gap (never skipped), for a new reader too, and for another shard's reader.
        assertShardDBError(.changelogGap, try reader.read())
        XCTAssertEqual(reader.nextSequence, start + 1)
        assertShardDBError(.changelogGap, try ChangelogReader(engine: engine, shard: 0, from: start + 1).read())
        assertShardDBError(.changelogGap, try ChangelogReader(engine: engine, shard: 1, from: start).read())
        // After the hole, reading works.
        XCTAssertEqual(try ChangelogReader(engine: engine, shard: 0, from: start + 2).read().map(\.key), [bytes(mine[2])])

        // A hole at the very end of the log is a gap too.
        try engine.database.put(stored, [ValueHeader.version, 0], in: shard.family, options: WriteOptions(disableWAL: true))
        let tail = try ChangelogReader(engine: engine, shard: 0, from: start + 2)
        XCTAssertEqual(try tail.read().map(\.sequence), [start + 2])
        assertShardDBError(.changelogGap, try tail.read())
    }

    func testPurgedLogIsUnavailable() throws {
        let dir = TemporaryDirectory()
        var options = ShardEngineOptions.testing()
        options.walRetentionSeconds = 0  // no archive: logs go as soon as their memtables are flushed
        let path = dir.path("instance")
        var engine: ShardEngine? = try ShardEngine.create(at: path, shards: 1, options: options)
        try engine!.put("a", "1")
        let purged = try engine!.latestSequenceNumber()
        engine!.close()
        // Reopening replays the log into table files and deletes it.
        engine = try ShardEngine.open(at: path, options: options)
        try engine!.put("b", "2")

        let error = assertShardDBError(.changelogUnavailable, try ChangelogReader(engine: engine!, shard: 0, from: purged).read())
        XCTAssertTrue(error?.message.contains("no longer in the write-ahead log") ?? false, error?.message ?? "")
        // What is still logged reads fine.
        let latest = try engine!.latestSequenceNumber()
        XCTAssertEqual(try ChangelogReader(engine: engine!, shard: 0, from: latest).read().map(\.key), [bytes("b")])
    }

    func testClosedEngine() throws {
        let dir = TemporaryDirectory()
        let engine = try makeEngine(in: dir, shards: 1)
        try engine.put("a", "1")
        let reader = try ChangelogReader(engine: engine, shard: 0, from: 1)
        XCTAssertEqual(try reader.read(maxRecords: 1).count, 1)
        engine.close()
        assertShardDBError(.closed, try reader.read())
        assertShardDBError(.closed, try engine.latestSequenceNumber())
        assertShardDBError(.closed, try ChangelogReader(engine: engine, shard: 0, from: 1))
    }
}
