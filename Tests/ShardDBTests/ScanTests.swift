import ShardDB
import XCTest

final class ScanTests: XCTestCase {
    private let words = ["ant", "apple", "apricot", "banana", "band", "bandana", "cherry", "date", "fig", "grape",
                         "kiwi", "lemon", "lime", "mango", "melon", "nut", "orange", "pear", "plum", "zucchini"]

    private func sortedBytes(_ keys: [String]) -> [[UInt8]] {
        keys.map(bytes).sorted { $0.lexicographicallyPrecedes($1) }
    }

    private func fill(_ engine: ShardEngine) throws {
        for word in words { try engine.put(word, "value-of-\(word)") }
        try engine.put([0xff, 0xff], [1])
        try engine.put([0xff, 0xff, 0x01], [2])
    }

    // MARK: Hash partitioning

    func testPrefixScanUnderHashPartitioning() throws {
        let directory = TemporaryDirectory()
        let engine = try makeEngine(in: directory, shards: 4, partitioning: .hash(keyGroups: 256))
        defer { engine.close() }
        try fill(engine)
        XCTAssertEqual(Set(try engine.keys(ScanRequest(prefix: bytes("ap")))), Set(["apple", "apricot"].map(bytes)))
        XCTAssertEqual(Set(try engine.keys(ScanRequest(prefix: bytes("band")))), Set(["band", "bandana"].map(bytes)))
        XCTAssertEqual(try engine.keys(ScanRequest(prefix: bytes("q"))), [])
        // A prefix of 0xff bytes has no successor: the interval is unbounded above.
        XCTAssertEqual(Set(try engine.keys(ScanRequest(prefix: [0xff, 0xff]))), [[0xff, 0xff], [0xff, 0xff, 0x01]])
        let entries = try engine.entries(ScanRequest(prefix: bytes("lim")))
        XCTAssertEqual(entries.map(\.key), [bytes("lime")])
        XCTAssertEqual(entries.map(\.value), [bytes("value-of-lime")])
        // Within one shard, by key group then key.
        for shard in 0..<4 {
            let keys = try engine.keys(ScanRequest(shard: shard, prefix: bytes("b")))
            XCTAssertTrue(keys.allSatisfy { engine.recordedOwner(of: $0) == shard })
        }
    }

    func testStartAndEndUnderHashPartitioning() throws {
        let directory = TemporaryDirectory()
        let engine = try makeEngine(in: directory, shards: 4, partitioning: .hash(keyGroups: 256))
        defer { engine.close() }
        try fill(engine)
        let expected = Set(words.filter { $0 >= "banana" && $0 < "kiwi" }.map(bytes))
        XCTAssertEqual(Set(try engine.keys(ScanRequest(start: bytes("banana"), end: bytes("kiwi")))), expected)
        XCTAssertEqual(Set(try engine.keys(ScanRequest(start: bytes("pear")))),
                       Set(["pear", "plum", "zucchini"].map(bytes) + [[0xff, 0xff], [0xff, 0xff, 0x01]]))
        XCTAssertEqual(Set(try engine.keys(ScanRequest(end: bytes("apricot")))), Set(["ant", "apple"].map(bytes)))
        // Prefix and bounds intersect.
        XCTAssertEqual(Set(try engine.keys(ScanRequest(prefix: bytes("ba"), start: bytes("band"), end: bytes("bandana")))), [bytes("band")])
        XCTAssertEqual(try engine.keys(ScanRequest(start: bytes("m"), end: bytes("m"))), [])
        XCTAssertEqual(try engine.keys(ScanRequest(start: bytes("z"), end: bytes("a"))), [])
    }

    func testPrefixScanReachesTheLastKeyGroup() throws {
        // With 65536 key groups the last group's successor prefix does not fit in two bytes.
        let directory = TemporaryDirectory()
        let keyGroups = Partitioning.maxKeyGroups
        let engine = try makeEngine(in: directory, shards: 2, partitioning: .hash(keyGroups: keyGroups))
        defer { engine.close() }
        var i = 0
        var key = bytes("p0")
        while key.withUnsafeBytes({ KeyHash.keyGroup(of: $0, keyGroups: keyGroups) }) != keyGroups - 1 {
            i += 1
            key = bytes("p\(i)")
        }
        try engine.put(key, bytes("last"))
        XCTAssertEqual(engine.recordedOwner(of: key), 1)
        XCTAssertEqual(try engine.keys(ScanRequest(shard: 1)), [key])
        XCTAssertEqual(try engine.keys(ScanRequest(shard: 1, prefix: bytes("p"))), [key])
        XCTAssertEqual(try engine.keys(ScanRequest(shard: 1, start: key)), [key])
    }

    func testLimitUnderHashPartitioning() throws {
        let directory = TemporaryDirectory()
        let engine = try makeEngine(in: directory, shards: 4)
        defer { engine.close() }
        for i in 0..<100 { try engine.put("k\(i)", "v") }
        let all = try engine.keys()
        XCTAssertEqual(all.count, 100)
        XCTAssertEqual(try engine.keys(ScanRequest(limit: 7)), Array(all.prefix(7)))
        XCTAssertEqual(try engine.keys(ScanRequest(limit: 1000)), all)
        XCTAssertEqual(try engine.keys(ScanRequest(limit: 0)), [])
        XCTAssertEqual(try engine.keys(ScanRequest(prefix: bytes("k1"), limit: 3)).count, 3)
        // A limit larger than the first shard crosses into the next.
        let firstShard = try engine.keys(ScanRequest(shard: 0)).count
        XCTAssertEqual(try engine.keys(ScanRequest(limit: firstShard + 2)), Array(all.prefix(firstShard + 2)))
    }

    // MARK: Range partitioning

    func testPrefixAndBoundsUnderRangePartitioningAreInKeyOrder() throws {
        let directory = TemporaryDirectory()
        let engine = try makeEngine(in: directory, shards: 3, partitioning: .range(splitPoints: [bytes("d"), bytes("m")]))
        defer { engine.close() }
        try fill(engine)
        XCTAssertEqual(try engine.keys(ScanRequest(prefix: bytes("ap"))), sortedBytes(["apple", "apricot"]))
        XCTAssertEqual(try engine.keys(ScanRequest(prefix: bytes("m"))), sortedBytes(["mango", "melon"]))
        XCTAssertEqual(try engine.keys(ScanRequest(prefix: [0xff])), [[0xff, 0xff], [0xff, 0xff, 0x01]])
        // Bounds that cross both split points.
        XCTAssertEqual(try engine.keys(ScanRequest(start: bytes("cherry"), end: bytes("nut"))),
                       sortedBytes(words.filter { $0 >= "cherry" && $0 < "nut" }))
        XCTAssertEqual(try engine.keys(ScanRequest(start: bytes("d"), end: bytes("m"))),
                       sortedBytes(words.filter { $0 >= "d" && $0 < "m" }))
        XCTAssertEqual(try engine.keys(ScanRequest(shard: 1, start: bytes("a"), end: bytes("z"))),
                       sortedBytes(words.filter { $0 >= "d" && $0 < "m" }))
        XCTAssertEqual(try engine.keys(ScanRequest(shard: 0, start: bytes("m"))), [])
        XCTAssertEqual(try engine.keys(ScanRequest(prefix: bytes("b"), end: bytes("band"))), sortedBytes(["banana"]))
    }

    func testLimitUnderRangePartitioningTakesTheFirstKeys() throws {
        let directory = TemporaryDirectory()
        let engine = try makeEngine(in: directory, shards: 3, partitioning: .range(splitPoints: [bytes("d"), bytes("m")]))
        defer { engine.close() }
        try fill(engine)
        let all = try engine.keys()
        XCTAssertEqual(all, sortedBytes(words) + [[0xff, 0xff], [0xff, 0xff, 0x01]])
        XCTAssertEqual(try engine.keys(ScanRequest(limit: 8)), Array(all.prefix(8)))
        XCTAssertEqual(try engine.keys(ScanRequest(start: bytes("c"), limit: 3)), sortedBytes(["cherry", "date", "fig"]))
    }

    func testScanStopsWhenTheBodyReturnsFalse() throws {
        let directory = TemporaryDirectory()
        for (name, partitioning) in [("hash", Partitioning.hash(keyGroups: 64)), ("range", .range(splitPoints: [bytes("m")]))] {
            let engine = try makeEngine(in: directory, name: name, shards: 2, partitioning: partitioning)
            defer { engine.close() }
            try fill(engine)
            var visited = 0
            try engine.scan { _ in
                visited += 1
                return visited < 5
            }
            XCTAssertEqual(visited, 5, name)
        }
    }

    /// What a scan's or a zero-copy read's body throws reaches the caller as
    /// it was thrown (it used to arrive as `.storage`), on every scan path.
    func testTheBodysOwnErrorReachesTheCaller() throws {
        struct Stop: Error, Equatable { let at: Int }
        let directory = TemporaryDirectory()
        for (name, partitioning) in [("hash", Partitioning.hash(keyGroups: 64)), ("range", .range(splitPoints: [bytes("m")]))] {
            let engine = try makeEngine(in: directory, name: name, shards: 2, partitioning: partitioning)
            defer { engine.close() }
            try fill(engine)
            for request in [ScanRequest(), ScanRequest(start: bytes("b"), end: bytes("p")), ScanRequest(prefix: bytes("ba"))] {
                var visited = 0
                XCTAssertThrowsError(try engine.scan(request) { _ in
                    visited += 1
                    throw Stop(at: visited)
                }, "\(name) \(request)") { error in
                    XCTAssertEqual(error as? Stop, Stop(at: 1), "\(name) \(request): \(error)")
                }
            }
            XCTAssertThrowsError(try engine.withValue(forKey: bytes("apple")) { _ in throw Stop(at: 0) }) { error in
                XCTAssertEqual(error as? Stop, Stop(at: 0), "\(name): \(error)")
            }
            // The engine's own errors are still typed.
            XCTAssertThrowsError(try engine.withValue(forKey: [UInt8]()) { _ in }) { error in
                XCTAssertEqual((error as? ShardDBError)?.code, .invalidKey, "\(name): \(error)")
            }
            XCTAssertEqual(try engine.getString("apple"), "value-of-apple")
        }
    }

    // MARK: Zero-copy reads

    func testZeroCopyReadsSeeTheValueWithoutItsHeader() throws {
        let directory = TemporaryDirectory()
        let clock = ManualClock()
        let engine = try makeEngine(in: directory, shards: 2, clock: clock)
        defer { engine.close() }
        try engine.put("plain", "abc")
        try engine.put("expiring", "xyz", ttl: .seconds(10))
        try engine.put(bytes("empty"), [UInt8]())
        XCTAssertEqual(try engine.withValue(forKey: bytes("plain")) { Array($0) }, bytes("abc"))
        XCTAssertEqual(try engine.withValue(forKey: bytes("expiring")) { $0.count }, 3)
        XCTAssertEqual(try engine.withValue(forKey: bytes("empty")) { $0.count }, 0)
        XCTAssertNil(try engine.withValue(forKey: bytes("absent")) { _ in XCTFail("no value to see") })
        XCTAssertEqual(try engine.get("empty"), [])

        var seen: [String: (String, Int64?)] = [:]
        try engine.scan { entry in
            seen[text([UInt8](entry.key))!] = (text([UInt8](entry.value))!, entry.expiresAtMilliseconds)
            return true
        }
        XCTAssertEqual(seen.count, 3)
        XCTAssertEqual(seen["plain"]?.0, "abc")
        XCTAssertNil(seen["plain"]?.1 ?? nil)
        XCTAssertEqual(seen["expiring"]?.0, "xyz")
        XCTAssertEqual(seen["expiring"]?.1, clock.nowMilliseconds() + 10_000)
        XCTAssertEqual(seen["empty"]?.0, "")
    }
}
