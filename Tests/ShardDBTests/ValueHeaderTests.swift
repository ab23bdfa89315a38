import Foundation
import RocksDB
@testable import ShardDB
import XCTest

/// The value header's optional write time (docs/FORMAT.md): layout, old values, stamping.
final class ValueHeaderTests: XCTestCase {
    private func encoded(_ header: ValueHeader, _ value: [UInt8]) -> [UInt8] {
        var out = [UInt8](repeating: 0, count: header.encodedSize)
        out.withUnsafeMutableBytes { header.encode(into: $0) }
        return out + value
    }

    func testLayoutAndRoundTrip() throws {
        let both = ValueHeader(expiresAtMilliseconds: 0x0102_0304_0506_0708, writtenAtMilliseconds: 0x1112_1314_1516_1718)
        XCTAssertEqual(encoded(both, [0xAA]),
                       [1, 3, 1, 2, 3, 4, 5, 6, 7, 8, 0x11, 0x12, 0x13, 0x14, 0x15, 0x16, 0x17, 0x18, 0xAA])
        let stampOnly = ValueHeader(writtenAtMilliseconds: -5)
        XCTAssertEqual(stampOnly.encodedSize, 10)
        XCTAssertEqual(encoded(stampOnly, []).prefix(2), [1, 2])
        for header in [ValueHeader(), ValueHeader(expiresAtMilliseconds: 42), stampOnly, both] {
            let stored = encoded(header, bytes("payload"))
            let parsed = try XCTUnwrap(stored.withUnsafeBytes { raw in ValueHeader.parse(raw).map { ($0.0, [UInt8]($0.1)) } })
            XCTAssertEqual(parsed.0, header)
            XCTAssertEqual(parsed.1, bytes("payload"))
        }
        // Values written before the flag existed read as before, unstamped.
        let old: [UInt8] = [1, 1, 0, 0, 0, 0, 0, 0, 0, 9] + bytes("v")
        XCTAssertEqual(old.withUnsafeBytes { ValueHeader.parse($0)?.0 }, ValueHeader(expiresAtMilliseconds: 9))
        // Truncated stamps and unknown flags are corruption.
        XCTAssertNil(([1, 2, 0, 0, 0] as [UInt8]).withUnsafeBytes { ValueHeader.parse($0) })
        XCTAssertNil(([1, 3, 0, 0, 0, 0, 0, 0, 0, 1, 0, 0] as [UInt8]).withUnsafeBytes { ValueHeader.parse($0) })
        XCTAssertNil(([1, 4] as [UInt8]).withUnsafeBytes { ValueHeader.parse($0) })
    }

    func testEngineStampsWritesOnlyWhenAsked() throws {
        let dir = TemporaryDirectory()
        let clock = ManualClock(milliseconds: 5_000)
        var options = ShardEngineOptions.testing(clock: clock)
        options.stampWriteTime = true
        let engine = try ShardEngine.create(at: dir.path("db"), shards: 1, partitioning: .hash(keyGroups: 16), options: options)
        func storedHeader(_ engine: ShardEngine, _ key: String) throws -> ValueHeader? {
            let family = try XCTUnwrap(engine.table.shard(id: 0)?.family)
            var header: ValueHeader?
            try engine.scanStored(in: family) { k, v in
                if Array(k.dropFirst(2)) == Array(key.utf8) { header = v.withUnsafeBytes { ValueHeader.parse($0)?.0 } }
            }
            return header
        }
        try engine.put("a", "1", ttl: .seconds(10))
        clock.advance(milliseconds: 7)
        try engine.write { try $0.put("b", "2") }
        XCTAssertEqual(try storedHeader(engine, "a"), ValueHeader(expiresAtMilliseconds: 15_000, writtenAtMilliseconds: 5_000))
        XCTAssertEqual(try storedHeader(engine, "b"), ValueHeader(writtenAtMilliseconds: 5_007))
        XCTAssertEqual(try engine.getString("a"), "1")
        XCTAssertEqual(try engine.getString("b"), "2")
        engine.close()
        // Reopened without stamping: old stamps stay readable, new writes carry none.
        let reopened = try ShardEngine.open(at: dir.path("db"), options: .testing(clock: clock))
        defer { reopened.close() }
        try reopened.put("c", "3")
        XCTAssertEqual(try reopened.getString("b"), "2")
        XCTAssertEqual(try reopened.getString("c"), "3")
        XCTAssertEqual(try storedHeader(reopened, "c"), ValueHeader())
        XCTAssertEqual(try storedHeader(reopened, "b"), ValueHeader(writtenAtMilliseconds: 5_007))
    }
}

extension ShardEngine {
    /// Every raw (stored key, stored value) of a family, for header assertions.
    func scanStored(in family: ColumnFamily, _ body: ([UInt8], [UInt8]) -> Void) throws {
        let iterator = try database.makeIterator(in: family)
        iterator.seekToFirst()
        while iterator.isValid {
            body(iterator.key, iterator.value)
            iterator.next()
        }
        try iterator.checkStatus()
    }
}
