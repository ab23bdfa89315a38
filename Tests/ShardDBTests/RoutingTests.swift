import ShardDB
import XCTest

final class RoutingTests: XCTestCase {
    func testHashPartitioningStoresEachKeyInTheShardOwningItsKeyGroup() throws {
        let directory = TemporaryDirectory()
        let engine = try makeEngine(in: directory, shards: 4)
        defer { engine.close() }
        let k = Partitioning.defaultKeyGroups
        // The initial shard map splits the key groups into equal contiguous ranges.
        XCTAssertEqual(engine.shardDescriptors.map(\.range), (0..<4).map { .keyGroups(KeyGroupRange($0 * k / 4, ($0 + 1) * k / 4)) })

        let keys = (0..<400).map { bytes("user:\($0)") }
        for key in keys { try engine.put(key, key + bytes("=v")) }

        var expected: [Int: Set<[UInt8]>] = [:]
        for key in keys {
            let group = key.withUnsafeBytes { KeyHash.keyGroup(of: $0, keyGroups: k) }
            XCTAssertEqual(group, Int(key.withUnsafeBytes { KeyHash.murmur3($0) } % UInt32(k)))
            expected[group * 4 / k, default: []].insert(key)
        }
        XCTAssertEqual(expected.count, 4, "400 keys should reach every shard")
        for shard in 0..<4 {
            var found = Set<[UInt8]>()
            try engine.scan(ScanRequest(shard: shard)) { entry in
                XCTAssertEqual(entry.shard, shard)
                found.insert([UInt8](entry.key))
                return true
            }
            XCTAssertEqual(found, expected[shard] ?? [], "shard \(shard)")
        }
        for key in keys { XCTAssertEqual(try engine.get(key), key + bytes("=v")) }
    }

    func testHashScanOfAShardVisitsKeyGroupsInOrder() throws {
        let directory = TemporaryDirectory()
        let engine = try makeEngine(in: directory, shards: 2, partitioning: .hash(keyGroups: 64))
        defer { engine.close() }
        for i in 0..<200 { try engine.put("k\(i)", "v") }
        for shard in 0..<2 {
            let order = try engine.keys(ScanRequest(shard: shard)).map { key in
                (key.withUnsafeBytes { KeyHash.keyGroup(of: $0, keyGroups: 64) }, key)
            }
            XCTAssertFalse(order.isEmpty)
            let sorted = order.sorted { $0.0 != $1.0 ? $0.0 < $1.0 : $0.1.lexicographicallyPrecedes($1.1) }
            XCTAssertTrue(order.elementsEqual(sorted) { $0.0 == $1.0 && $0.1 == $1.1 })
        }
    }

    func testRangePartitioningRoutesByKeyAndScansInGlobalByteOrder() throws {
        let directory = TemporaryDirectory()
        let splits = [bytes("g"), bytes("n"), bytes("t")]
        let engine = try makeEngine(in: directory, shards: 4, partitioning: .range(splitPoints: splits))
        defer { engine.close() }
        XCTAssertEqual(engine.shardDescriptors.map(\.range), [
            .keys(lower: [], upper: bytes("g")), .keys(lower: bytes("g"), upper: bytes("n")),
            .keys(lower: bytes("n"), upper: bytes("t")), .keys(lower: bytes("t"), upper: nil),
        ])

        var keys: [[UInt8]] = ["apple", "f", "fzzz", "g", "g\u{0}", "goat", "m", "n", "nut", "szz", "t", "tomato", "zebra"].map(bytes)
        keys += [[0x00], [0x01, 0xff], [0xff], [0xff, 0xff, 0x00], [UInt8(ascii: "m"), 0xff]]
        for key in keys.shuffled() { try engine.put(key, key) }

        let expectedOwner: [[UInt8]: Int] = [
            bytes("apple"): 0, bytes("f"): 0, bytes("fzzz"): 0, [0x00]: 0, [0x01, 0xff]: 0,
            bytes("g"): 1, bytes("g\u{0}"): 1, bytes("goat"): 1, bytes("m"): 1, [UInt8(ascii: "m"), 0xff]: 1,
            bytes("n"): 2, bytes("nut"): 2, bytes("szz"): 2,
            bytes("t"): 3, bytes("tomato"): 3, bytes("zebra"): 3, [0xff]: 3, [0xff, 0xff, 0x00]: 3,
        ]
        for shard in 0..<4 {
            let inShard = try engine.keys(ScanRequest(shard: shard))
            let expected = keys.filter { expectedOwner[$0] == shard }.sorted { $0.lexicographicallyPrecedes($1) }
            XCTAssertEqual(inShard, expected, "shard \(shard)")
        }
        for key in keys { XCTAssertEqual(engine.recordedOwner(of: key), expectedOwner[key]) }

        // A full scan crosses the shards in key order.
        XCTAssertEqual(try engine.keys(), keys.sorted { $0.lexicographicallyPrecedes($1) })
        var shardsSeen: [Int] = []
        try engine.scan { entry in
            if shardsSeen.last != entry.shard { shardsSeen.append(entry.shard) }
            return true
        }
        XCTAssertEqual(shardsSeen, [0, 1, 2, 3])
        for key in keys { XCTAssertEqual(try engine.get(key), key) }
    }

    func testAnInstanceWithoutShardsOwnsNoKey() throws {
        let directory = TemporaryDirectory()
        for (name, partitioning) in [("hash", Partitioning.hash(keyGroups: 128)), ("range", .range(splitPoints: [bytes("m")]))] {
            let engine = try makeEngine(in: directory, name: name, shards: 0, partitioning: partitioning)
            defer { engine.close() }
            XCTAssertTrue(engine.shardDescriptors.isEmpty)
            for key in ["a", "m", "zzz", "user:42"] {
                let error = assertShardDBError(.keyNotOwned, try engine.put(key, "v"))
                XCTAssertNil(error?.owner)
                XCTAssertTrue(error?.message.contains(key) ?? false, error?.message ?? "")
                assertShardDBError(.keyNotOwned, try engine.get(key))
                assertShardDBError(.keyNotOwned, try engine.delete(key))
                assertShardDBError(.keyNotOwned, try engine.withValue(forKey: bytes(key)) { _ in () })
                assertShardDBError(.keyNotOwned, try engine.write { try $0.put(key, "v") })
            }
            assertShardDBError(.keyNotOwned, try engine.multiGet([bytes("a"), bytes("b")]))
            XCTAssertEqual(try engine.keys(), [])
        }
    }
}
