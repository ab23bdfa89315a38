import Foundation
@testable import ShardDB
import XCTest

/// Bulk chunks keep their entries packed in one buffer; the parts a transport
/// hands back must add up, or the chunk is refused.
final class BulkChunkTests: XCTestCase {
    func testEntriesRoundTripThroughThePackedBuffer() throws {
        let entries: [(key: [UInt8], value: [UInt8])] = [([1, 2], [3]), ([4], []), ([], [5, 6, 7])]
        let chunk = BulkChunk(entries: entries, lastKey: [4], done: false)
        XCTAssertEqual(chunk.count, 3)
        XCTAssertEqual(chunk.data, Data([1, 2, 3, 4, 5, 6, 7]))
        XCTAssertEqual(chunk.keyLengths, [2, 1, 0])
        XCTAssertEqual(chunk.valueLengths, [1, 0, 3])
        XCTAssertEqual(chunk.entries.map(\.key), entries.map(\.key))
        XCTAssertEqual(chunk.entries.map(\.value), entries.map(\.value))
        let rebuilt = try BulkChunk(data: chunk.data, keyLengths: chunk.keyLengths, valueLengths: chunk.valueLengths,
                                    lastKey: [4], done: false)
        XCTAssertEqual(rebuilt, chunk)
    }

    func testPartsThatDoNotAddUpAreRefused() {
        for (data, keys, values) in [(Data([1, 2, 3]), [UInt32(1)], [UInt32(1)]),   // data longer
                                     (Data([1]), [1], [1]),                          // lengths overrun
                                     (Data([1, 2]), [1, 1], [0])] {                 // counts differ
            XCTAssertThrowsError(try BulkChunk(data: data, keyLengths: keys, valueLengths: values, lastKey: nil, done: true)) {
                XCTAssertEqual(($0 as? ShardDBError)?.code, .corruptedValue, "\($0)")
            }
        }
    }

    /// Chunks of a few entries over a shard where expired entries are interleaved
    /// (and some chunks end on one): every live entry is copied once, none expired,
    /// and each chunk's last key lets the next start right after it.
    func testSmallChunksSkipExpiredEntriesAndResumeAfterTheLastKeyRead() async throws {
        let dir = TemporaryDirectory()
        let clock = ManualClock()
        let source = try ShardEngine.create(at: dir.path("source"), shards: 1, partitioning: .range(splitPoints: []),
                                            options: .testing(clock: clock))
        let target = try ShardEngine.create(at: dir.path("target"), shards: 0, partitioning: .range(splitPoints: []),
                                            options: .testing(clock: clock))
        defer { source.close(); target.close() }
        var live: [String: String] = [:]
        for i in 0..<200 {
            let key = String(format: "k%03d", i)
            if i % 3 == 0 {
                try source.put(Array(key.utf8), Array("gone".utf8), ttl: .seconds(1))
            } else {
                try source.put(Array(key.utf8), Array("v\(i)".utf8))
                live[key] = "v\(i)"
            }
        }
        clock.advance(milliseconds: 5_000)
        let plan = try await MigrationCoordinator(source: source, target: target).makePlan(MigrationRequest(shard: 0, id: "m"))
        try source.prepareOutgoing(plan)
        let snapshot = try source.openBulk(plan)
        _ = try target.prepareIncoming(plan, snapshotSequence: snapshot)
        var after: [UInt8]? = nil
        var copied: [String: String] = [:]
        var chunks = 0
        while true {
            let chunk = try source.readBulk(plan, after: after, maxBytes: 40)
            for entry in chunk.entries {
                let key = String(decoding: entry.key, as: UTF8.self)
                XCTAssertNil(copied[key], "\(key) copied twice")
                copied[key] = key
            }
            try target.applyBulk(plan, chunk)
            if let last = chunk.lastKey, let previous = after { XCTAssertTrue(previous.lexicographicallyPrecedes(last)) }
            after = chunk.lastKey ?? after
            chunks += 1
            if chunk.done { break }
        }
        XCTAssertGreaterThan(chunks, 10)
        XCTAssertEqual(copied.count, live.count, "every live entry once, no expired one")
        try source.abortOutgoing(plan)
        try target.abortIncoming(plan)
    }
}
