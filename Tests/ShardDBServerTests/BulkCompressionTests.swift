import Foundation
import ShardDB
import SwiftProtobuf
@testable import ShardDBServer
import XCTest

/// Bulk chunks between processes travel Snappy-compressed when the reader asks
/// and the chunk shrinks; what arrives decodes to the chunk that was read, and
/// damaged or lying compressed chunks are refused before anything is allocated
/// for them or written.
final class BulkCompressionTests: XCTestCase {
    /// Entries whose values repeat (as the migration benchmark's do), `count` of them.
    private func repetitiveChunk(_ count: Int) throws -> BulkChunk {
        let entries = (0..<count).map { i in
            (key: Array("key-\(i)".utf8), value: Array("value-\(i % 7)-".utf8) + [UInt8](repeating: UInt8(65 + i % 3), count: 200))
        }
        return BulkChunk(entries: entries, lastKey: entries.last?.key, done: false)
    }

    /// Values of random bytes: nothing for Snappy to find.
    private func randomChunk(_ count: Int) -> BulkChunk {
        var generator = SystemRandomNumberGenerator()
        let entries = (0..<count).map { i in
            (key: Array("key-\(i)".utf8), value: (0..<200).map { _ in UInt8.random(in: 0...255, using: &generator) })
        }
        return BulkChunk(entries: entries, lastKey: entries.last?.key, done: true)
    }

    func testCompressedChunksDecodeToWhatWasRead() throws {
        let chunk = try repetitiveChunk(500)
        let wire = WireBulkChunk(chunk, compression: .snappy)
        XCTAssertEqual(wire.compression, BulkCompression.snappy.rawValue)
        XCTAssertLessThan(wire.data.count, chunk.bytes / 4, "repetitive values shrink")
        XCTAssertEqual(wire.bytes, UInt64(chunk.bytes), "the size field stays the entries' own")
        XCTAssertEqual(try wire.decoded(), chunk)
        // Through the wire encoding and back.
        let received = try WireBulkChunk(serializedBytes: try wire.serializedBytes() as [UInt8])
        XCTAssertEqual(try received.decoded(), chunk)

        // Not asked for: as read.
        let plain = WireBulkChunk(chunk)
        XCTAssertEqual(plain.compression, 0)
        XCTAssertEqual(plain.data, chunk.data)
        XCTAssertEqual(try plain.decoded(), chunk)
    }

    /// A chunk that would not shrink by an eighth, or is too small to bother,
    /// travels as read even when compression is asked for.
    func testChunksThatDoNotShrinkTravelAsRead() throws {
        let random = randomChunk(200)
        let wire = WireBulkChunk(random, compression: .snappy)
        XCTAssertEqual(wire.compression, 0)
        XCTAssertEqual(wire.data, random.data)
        XCTAssertEqual(try wire.decoded(), random)

        let tiny = try repetitiveChunk(2)
        XCTAssertLessThan(tiny.bytes, Snappy.smallest)
        XCTAssertEqual(WireBulkChunk(tiny, compression: .snappy).compression, 0)

        let empty = BulkChunk()
        XCTAssertEqual(try WireBulkChunk(empty, compression: .snappy).decoded(), empty)
    }

    /// Damage the checksum catches is `.corruptedValue`; a chunk whose checksum
    /// holds but whose compressed bytes lie (a sender's bug, or a peer that means
    /// harm) is malformed, and what it declares bounds the memory it gets.
    func testDamagedOrLyingCompressedChunksAreRefused() throws {
        let chunk = try repetitiveChunk(500)
        let wire = WireBulkChunk(chunk, compression: .snappy)
        func resealed(_ change: (inout WireBulkChunk) -> Void) -> WireBulkChunk {
            var copy = wire
            change(&copy)
            copy.crc32C = WireBulkChunk.checksum(data: copy.data, keyLengths: copy.keyLengths, valueLengths: copy.valueLengths)
            return copy
        }
        var flipped = wire
        flipped.data[flipped.data.startIndex + flipped.data.count / 2] ^= 0x40
        XCTAssertThrowsError(try flipped.decoded()) { XCTAssertEqual(($0 as? ShardDBError)?.code, .corruptedValue, "\($0)") }

        let cases: [(String, WireBulkChunk)] = [
            // Snappy's length prefix says another size than the lengths add up to.
            ("longer prefix", resealed { $0.data[$0.data.startIndex] ^= 0x01 }),
            ("lengths", resealed { $0.valueLengths[0] += 1; $0.valueLengths[1] -= 2 }),
            ("truncated", resealed { $0.data = $0.data.prefix($0.data.count - 10) }),
            ("not snappy", resealed { $0.data = Data(repeating: 0xFF, count: 64) }),
            ("unknown method", resealed { $0.compression = 7 }),
            ("counts", resealed { $0.keyLengths.removeLast() }),
        ]
        for (name, damaged) in cases {
            XCTAssertThrowsError(try damaged.decoded(), name) { error in
                XCTAssertEqual((error as? ShardDBError)?.code, .invalidArgument, "\(name): \(error)")
            }
        }
        // Lengths adding up to 4 GiB and a Snappy prefix that agrees: refused from the
        // lengths, before anything is allocated for them (no more than an
        // uncompressed message could carry).
        let huge = resealed {
            $0.keyLengths = [UInt32.max - 2, 2]
            $0.valueLengths = [0, 0]
            var prefix: [UInt8] = [], length = UInt64(UInt32.max)
            while length >= 0x80 { prefix.append(UInt8(length & 0x7F) | 0x80); length >>= 7 }
            $0.data = Data(prefix + [UInt8(length), 0x00, 0x61])
        }
        XCTAssertThrowsError(try huge.decoded()) { error in
            XCTAssertEqual((error as? ShardDBError)?.code, .invalidArgument, "\(error)")
            XCTAssertTrue("\(error)".contains("declares more than"), "\(error)")
        }
    }

    func testMethodNames() {
        XCTAssertEqual(BulkCompression(name: "snappy"), .snappy)
        XCTAssertEqual(BulkCompression(name: "none"), BulkCompression.none)
        XCTAssertNil(BulkCompression(name: "zstd"))
        XCTAssertEqual(RemoteInstance.Configuration().pullCompression, .snappy, "targets pull compressed by default")
        XCTAssertEqual(RemoteInstance.Configuration().readCompression, .snappy, "a relaying coordinator reads compressed, and forwards so")
    }

    // MARK: Table file pieces

    /// A piece of a table file whose blocks repeat one another (as text-like
    /// values' do), compressed when asked, decodes to the file's bytes; random
    /// bytes travel as they are; a reader who did not ask gets them as they are.
    func testTableFilePiecesTravelCompressedWhenTheyShrink() throws {
        let block = Data((0..<4096).map { UInt8(truncatingIfNeeded: $0 &* 37 &+ $0 / 64) })
        var text = Data()
        for i in 0..<64 { text.append(block); text.append(UInt8(i)) }
        let wire = WireTableFileChunk(text, compression: .snappy)
        XCTAssertEqual(wire.compression, BulkCompression.snappy.rawValue)
        XCTAssertLessThan(wire.data.count, text.count / 4)
        let received = try WireTableFileChunk(serializedBytes: try wire.serializedBytes() as [UInt8])
        XCTAssertEqual(try received.decoded(atMost: text.count), text)

        var generator = SystemRandomNumberGenerator()
        let random = Data((0..<65536).map { _ in UInt8.random(in: 0...255, using: &generator) })
        let raw = WireTableFileChunk(random, compression: .snappy)
        XCTAssertEqual(raw.compression, 0)
        XCTAssertEqual(try raw.decoded(atMost: random.count), random)
        XCTAssertEqual(WireTableFileChunk(text).compression, 0, "not asked for: as it is")
    }

    /// After a piece of a table file that did not shrink, the file's next seven
    /// are asked for as read, then one compressed again; a piece that shrank
    /// keeps them compressed; other files and readers that accept none are not affected.
    func testPiecesOfAFileThatDoesNotShrinkAreAskedForAsRead() {
        var probe = CompressionProbe()
        XCTAssertEqual(probe.compression(for: "m/1.sst", accepting: .snappy), .snappy)
        probe.record("m/1.sst", shrank: false)
        let next = (0..<8).map { _ in probe.compression(for: "m/1.sst", accepting: .snappy) }
        XCTAssertEqual(next, Array(repeating: BulkCompression.none, count: CompressionProbe.skipped) + [.snappy])
        XCTAssertEqual(CompressionProbe.skipped, 7)
        XCTAssertEqual(probe.compression(for: "m/2.sst", accepting: .snappy), .snappy, "another file")
        XCTAssertEqual(probe.compression(for: "m/1.sst", accepting: .none), BulkCompression.none)

        probe.record("m/1.sst", shrank: false)
        _ = probe.compression(for: "m/1.sst", accepting: .snappy)
        probe.record("m/1.sst", shrank: true)  // (a probe in flight before, back compressed)
        XCTAssertEqual(probe.compression(for: "m/1.sst", accepting: .snappy), .snappy)
    }

    /// A relaying coordinator forwards a piece as it came from the source
    /// (compressed, with the source's checksum); a piece changed since is
    /// encoded again from its bytes, as they are.
    func testRelayedTableFilePiecesAreForwardedAsTheyCame() throws {
        let text = Data((0..<(1 << 16)).map { UInt8(truncatingIfNeeded: $0 % 251 / 3) })
        let received = WireTableFileChunk(text, compression: .snappy)
        XCTAssertEqual(received.compression, BulkCompression.snappy.rawValue)
        var piece = TableFilePiece(name: "000007.sst", offset: 4096, data: try received.decoded(atMost: text.count), encoded: received)
        XCTAssertEqual(piece.encoded?.wireBytes, received.data.count)
        let forwarded = RemoteInstance.writeTableFileRequest(WireMigrationPlan(), piece)
        XCTAssertEqual(forwarded.chunk, received, "as it came")
        XCTAssertEqual(forwarded.name, "000007.sst")
        XCTAssertEqual(forwarded.offset, 4096)

        piece.data.append(0)
        XCTAssertNil(piece.encoded, "changed: no longer the bytes received")
        let encodedAgain = RemoteInstance.writeTableFileRequest(WireMigrationPlan(), piece).chunk
        XCTAssertEqual(encodedAgain.compression, 0)
        XCTAssertEqual(try encodedAgain.decoded(atMost: 1 << 20), piece.data)
    }

    /// A compressed piece that expands past what the reader asked for, that is
    /// not Snappy's format, or that names an unknown compression is refused
    /// before anything is allocated for it; a damaged one fails its checksum.
    func testLyingOrDamagedTableFilePiecesAreRefused() throws {
        let text = Data(repeating: 65, count: 1 << 16)
        let wire = WireTableFileChunk(text, compression: .snappy)
        XCTAssertEqual(wire.compression, BulkCompression.snappy.rawValue)
        XCTAssertThrowsError(try wire.decoded(atMost: text.count - 1)) { XCTAssertEqual(($0 as? ShardDBError)?.code, .invalidArgument, "\($0)") }

        var garbage = WireTableFileChunk()
        garbage.data = Data([0xFF, 0xFF, 0xFF, 0xFF, 0xFF, 0x01, 0x02])
        garbage.compression = BulkCompression.snappy.rawValue
        var crc = CRC32C()
        crc.update(garbage.data)
        garbage.crc32C = crc.checksum
        XCTAssertThrowsError(try garbage.decoded(atMost: 1 << 20)) { XCTAssertEqual(($0 as? ShardDBError)?.code, .invalidArgument, "\($0)") }

        var unknown = WireTableFileChunk(Data([1, 2, 3]))
        unknown.compression = 7
        XCTAssertThrowsError(try unknown.decoded(atMost: 1 << 20)) { XCTAssertEqual(($0 as? ShardDBError)?.code, .invalidArgument, "\($0)") }

        var damaged = wire
        damaged.data[damaged.data.startIndex + 3] ^= 0x10
        XCTAssertThrowsError(try damaged.decoded(atMost: text.count)) { XCTAssertEqual(($0 as? ShardDBError)?.code, .corruptedValue, "\($0)") }
    }

}
