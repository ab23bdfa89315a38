import Foundation
@testable import ShardDB
import XCTest

/// `deleteRange`: across shards under range partitioning, inside one key group
/// under hash partitioning, atomic, in the changelog, durable, and refused with
/// typed errors for bad bounds and ranges this instance does not own.
final class RangeDeleteTests: XCTestCase {
    private let letters = "abcdefghijklmnopqrstuvwxyz"

    private func rangeEngine(_ dir: TemporaryDirectory, name: String = "i") throws -> ShardEngine {
        try ShardEngine.create(at: dir.path(name), shards: 3, partitioning: .range(splitPoints: [bytes("h"), bytes("p")]), options: .testing())
    }

    /// Every letter followed by 0..<5: "a0" ... "z4".
    private func loadLetters(_ engine: ShardEngine) throws -> [[UInt8]: [UInt8]] {
        var expected: [[UInt8]: [UInt8]] = [:]
        try engine.write { batch in
            for letter in letters {
                for i in 0..<5 {
                    let key = bytes("\(letter)\(i)")
                    try batch.put(key, bytes("v"))
                    expected[key] = bytes("v")
                }
            }
        }
        return expected
    }

    /// A range delete over two shards each held by a cutover fence: once the first
    /// was waited out, the second reached the caller as the engine's internal
    /// FenceHit instead of a typed error.
    func testARangeDeleteMeetingASecondFenceFailsWithATypedError() throws {
        let dir = TemporaryDirectory()
        var options = ShardEngineOptions.testing()
        options.fenceWaitSeconds = 0.05
        let engine = try ShardEngine.create(at: dir.path("i"), shards: 3, partitioning: .range(splitPoints: [bytes("h"), bytes("p")]),
                                            options: options)
        defer { engine.close() }
        let ranges = engine.shardDescriptors.sorted { $0.id < $1.id }.map(\.range)
        let first = Fence(range: ranges[0], migrationID: "m1"), second = Fence(range: ranges[1], migrationID: "m2")
        _ = engine.updateTable { $0.replacing(fences: [first]) }
        let error = assertShardDBError(.migrationInProgress, try engine.write { batch in
            // The batch routes with the table of its start (the first fence); meanwhile
            // that cutover ended and another began on the next shard.
            _ = engine.updateTable { $0.replacing(fences: [second]) }
            first.resolve(.released)
            try batch.deleteRange(from: "c", to: "k")
        })
        XCTAssertTrue(error?.message.contains("m2") ?? false, error?.message ?? "")
        _ = engine.updateTable { $0.replacing(fences: []) }
        second.resolve(.released)
        try engine.deleteRange(from: "c", to: "k")
    }

    /// A fence wait of infinity (or over ~290 years) overflowed Foundation's
    /// nanosecond deadline and trapped; NaN or a negative wait only looks.
    func testFenceWaitsOfAnyLengthDoNotTrap() {
        let fence = Fence(range: .keyGroups(KeyGroupRange(0, 1)), migrationID: "m")
        XCTAssertNil(fence.wait(timeout: .nan))
        XCTAssertNil(fence.wait(timeout: -1))
        let resolver = Thread { usleep(50_000); fence.resolve(.released) }
        resolver.start()
        XCTAssertEqual(fence.wait(timeout: .infinity), .released)
        XCTAssertEqual(fence.wait(timeout: 1e300), .released)
    }

    func testRangePartitioningDeletesAcrossShardsAndSurvivesReopen() throws {
        let dir = TemporaryDirectory()
        var engine = try rangeEngine(dir)
        var expected = try loadLetters(engine)
        // [f, r) spans all three shards: [.., h), [h, p), [p, ..).
        try engine.deleteRange(from: "f", to: "r")
        expected = expected.filter { !($0.key.lexicographicallyPrecedes(bytes("f")) == false && $0.key.lexicographicallyPrecedes(bytes("r"))) }
        XCTAssertEqual(try engine.contents(), expected)
        XCTAssertNil(try engine.get("f0"))
        XCTAssertNil(try engine.get("q4"))
        XCTAssertEqual(try engine.getString("e4"), "v")
        XCTAssertEqual(try engine.getString("r0"), "v")
        // The lower bound is inclusive, the upper exclusive.
        try engine.deleteRange(from: "a1", to: "a3")
        expected[bytes("a1")] = nil
        expected[bytes("a2")] = nil
        XCTAssertEqual(try engine.contents(), expected)
        engine.close()
        engine = try ShardEngine.open(at: dir.path("i"), options: .testing())
        defer { engine.close() }
        XCTAssertEqual(try engine.contents(), expected)
    }

    func testHashPartitioningDeletesInsideOneKeyGroup() throws {
        let dir = TemporaryDirectory()
        let engine = try ShardEngine.create(at: dir.path("i"), shards: 4, partitioning: .hash(keyGroups: 16), options: .testing())
        defer { engine.close() }
        var expected: [String: String] = [:]
        for i in 0..<400 {
            let key = String(format: "k%03d", i)
            try engine.put(key, "v\(i)")
            expected[key] = "v\(i)"
        }
        let keyGroup = try XCTUnwrap(engine.keyGroup(of: "k100"))
        try engine.deleteRange(from: "k050", to: "k300", keyGroup: keyGroup)
        var deleted = 0
        for (key, value) in expected.sorted(by: { $0.key < $1.key }) {
            let gone = key >= "k050" && key < "k300" && engine.keyGroup(of: key) == keyGroup
            if gone { deleted += 1 }
            XCTAssertEqual(try engine.getString(key), gone ? nil : value, key)
        }
        XCTAssertGreaterThan(deleted, 0)
    }

    func testBatchRangeDeleteIsAtomicWithTheOtherWrites() throws {
        let dir = TemporaryDirectory()
        let engine = try rangeEngine(dir)
        defer { engine.close() }
        var expected = try loadLetters(engine)
        try engine.write { batch in
            try batch.put("zz", "new")
            try batch.deleteRange(from: "g", to: "j")
            try batch.put("i9", "after the range delete")  // later in the batch: survives
        }
        for key in expected.keys where !key.lexicographicallyPrecedes(bytes("g")) && key.lexicographicallyPrecedes(bytes("j")) {
            expected[key] = nil
        }
        expected[bytes("zz")] = bytes("new")
        expected[bytes("i9")] = bytes("after the range delete")
        XCTAssertEqual(try engine.contents(), expected)
        // A bad range fails while the batch is built; nothing of it is written.
        XCTAssertThrowsError(try engine.write { batch in
            try batch.put("a0", "never")
            try batch.deleteRange(from: "x", to: "b")
        }) { XCTAssertEqual(($0 as? ShardDBError)?.code, .invalidArgument) }
        XCTAssertEqual(try engine.getString("a0"), "v")
    }

    func testTheChangelogReportsTheRangeDeleteClippedToTheShard() throws {
        let dir = TemporaryDirectory()
        let engine = try rangeEngine(dir)
        defer { engine.close() }
        _ = try loadLetters(engine)
        let start = try engine.latestSequenceNumber() + 1
        try engine.deleteRange(from: "f", to: "r")
        let middle = try ChangelogReader(engine: engine, shard: 1, from: start).read()
        XCTAssertEqual(middle.map(\.operation), [.deleteRange])
        XCTAssertEqual(middle.first?.storedKey, bytes("h"))
        XCTAssertEqual(middle.first?.storedEndKey, bytes("p"))
        let last = try ChangelogReader(engine: engine, shard: 2, from: start).read()
        XCTAssertEqual(last.first?.storedKey, bytes("p"))
        XCTAssertEqual(last.first?.storedEndKey, bytes("r"))
        // One atomic write: the three parts share a sequence number's batch.
        let first = try ChangelogReader(engine: engine, shard: 0, from: start).read()
        XCTAssertEqual(first.first?.storedKey, bytes("f"))
        XCTAssertEqual(first.first?.storedEndKey, bytes("h"))
    }

    func testBadRangesAreRefusedTyped() throws {
        let dir = TemporaryDirectory()
        let ranged = try rangeEngine(dir)
        defer { ranged.close() }
        let hashed = try ShardEngine.create(at: dir.path("h"), shards: 2, partitioning: .hash(keyGroups: 8), options: .testing())
        defer { hashed.close() }
        func code(_ body: () throws -> Void) -> ShardDBError.Code? {
            do { try body(); return nil } catch { return (error as? ShardDBError)?.code }
        }
        XCTAssertEqual(code { try ranged.deleteRange(from: "b", to: "a") }, .invalidArgument)
        XCTAssertEqual(code { try ranged.deleteRange(from: "a", to: "a") }, .invalidArgument)
        XCTAssertEqual(code { try ranged.deleteRange(from: "", to: "a") }, .invalidKey)
        XCTAssertEqual(code { try ranged.deleteRange(from: [UInt8](repeating: 1, count: ShardEngine.maxKeySize + 1), to: [UInt8](repeating: 2, count: 1)) }, .invalidKey)
        XCTAssertEqual(code { try ranged.deleteRange(from: "a", to: "b", keyGroup: 0) }, .invalidArgument)
        XCTAssertEqual(code { try hashed.deleteRange(from: "a", to: "b") }, .invalidArgument)
        XCTAssertEqual(code { try hashed.deleteRange(from: "a", to: "b", keyGroup: 8) }, .invalidArgument)
        XCTAssertEqual(code { try hashed.deleteRange(from: "a", to: "b", keyGroup: -1) }, .invalidArgument)
        XCTAssertNil(ranged.keyGroup(of: "a"))
    }

    func testARangeTouchingAMovedRangeIsRefusedAndDeletesNothing() async throws {
        let dir = TemporaryDirectory()
        let source = try rangeEngine(dir, name: "source")
        let target = try ShardEngine.create(at: dir.path("target"), shards: 0, partitioning: .range(splitPoints: [bytes("h"), bytes("p")]), options: .testing())
        defer { source.close(); target.close() }
        let expected = try loadLetters(source)
        _ = try await source.migrate(MigrationRequest(shard: 2, range: .keys(lower: bytes("t"), upper: nil)), to: target)
        // [r, v) reaches into [t, ..), now on the target: refused as a whole, naming the owner.
        XCTAssertThrowsError(try source.deleteRange(from: "r", to: "v")) { error in
            XCTAssertEqual((error as? ShardDBError)?.code, .keyNotOwned)
            XCTAssertEqual((error as? ShardDBError)?.owner, target.path)
        }
        XCTAssertEqual(try source.getString("r0"), "v")
        // The target owns only [t, ..): a range reaching below it is refused too.
        XCTAssertThrowsError(try target.deleteRange(from: "s", to: "u")) { XCTAssertEqual(($0 as? ShardDBError)?.code, .keyNotOwned) }
        XCTAssertEqual(try target.getString("t0"), "v")
        try target.deleteRange(from: "t", to: "u")
        XCTAssertNil(try target.get("t0"))
        XCTAssertEqual(try target.getString("u0"), "v")
        XCTAssertEqual(expected.count, 26 * 5)
    }
}
