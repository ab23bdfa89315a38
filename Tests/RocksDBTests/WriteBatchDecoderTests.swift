import Foundation
import RocksDB
import XCTest

/// A decoded record with its buffers copied, for assertions.
private enum DecodedRecord: Equatable {
    case put(UInt32, String, String)
    case delete(UInt32, String)
    case singleDelete(UInt32, String)
    case deleteRange(UInt32, String, String)
    case merge(UInt32, String, String)
    case logData(String)

    init(_ record: WriteBatchRecord) {
        func s(_ b: UnsafeRawBufferPointer) -> String { String(decoding: b, as: UTF8.self) }
        switch record {
        case let .put(cf, k, v): self = .put(cf, s(k), s(v))
        case let .delete(cf, k): self = .delete(cf, s(k))
        case let .singleDelete(cf, k): self = .singleDelete(cf, s(k))
        case let .deleteRange(cf, b, e): self = .deleteRange(cf, s(b), s(e))
        case let .merge(cf, k, v): self = .merge(cf, s(k), s(v))
        case let .logData(blob): self = .logData(s(blob))
        }
    }

    /// Every record of serialized batch bytes, with its sequence number.
    static func all(_ data: [UInt8]) throws -> (first: UInt64, count: Int, records: [(UInt64, DecodedRecord)]) {
        var records: [(UInt64, DecodedRecord)] = []
        let (first, count) = try data.withUnsafeBytes { bytes in
            try WriteBatchDecoder.decode(bytes) { records.append(($0, DecodedRecord($1))) }
        }
        return (first, count, records)
    }
}

/// Hand-built write-batch bytes (RocksDB's layout), for records WriteBatch cannot make.
private struct BatchBytes {
    var bytes: [UInt8]

    init(sequence: UInt64, count: UInt32) {
        bytes = withUnsafeBytes(of: sequence.littleEndian, Array.init) + withUnsafeBytes(of: count.littleEndian, Array.init)
    }

    mutating func varint(_ value: UInt32) {
        var v = value
        while v >= 0x80 { bytes.append(UInt8(v & 0x7F) | 0x80); v >>= 7 }
        bytes.append(UInt8(v))
    }

    mutating func slice(_ s: [UInt8]) { varint(UInt32(s.count)); bytes += s }

    mutating func record(_ tag: UInt8, cf: UInt32? = nil, _ fields: [UInt8]...) {
        bytes.append(tag)
        if let cf { varint(cf) }
        for field in fields { slice(field) }
    }
}

final class WriteBatchDecoderTests: XCTestCase {
    func testDecodesRecordsBuiltByWriteBatchInDefaultAndOtherFamilies() throws {
        let dir = TemporaryDirectory()
        let db = try openDatabase(at: dir.path("db"), columnFamilies: ["data"])
        let data = try db.columnFamily(named: "data")
        XCTAssertNotEqual(data.id, 0)
        let batch = WriteBatch()
        try batch.put(bytes("k1"), bytes("v1"), in: data)
        try batch.delete(bytes("k2"), in: data)
        try batch.singleDelete(bytes("k3"), in: data)
        try batch.deleteRange(from: bytes("a"), to: bytes("m"), in: data)
        batch.putLogData(bytes("note"))
        try batch.put(bytes("d1"), bytes(""))
        try batch.delete(bytes("d2"))
        try batch.singleDelete(bytes("d3"))
        try batch.deleteRange(from: bytes("x"), to: bytes("z"))
        try batch.put(bytes("k1"), bytes("v1"), in: try db.defaultColumnFamily)

        let decoded = try batch.withData { try DecodedRecord.all([UInt8]($0)) }
        XCTAssertEqual(decoded.first, 0)  // not written yet
        XCTAssertEqual(decoded.count, 9)
        XCTAssertEqual(decoded.records.map(\.1), [
            .put(data.id, "k1", "v1"), .delete(data.id, "k2"), .singleDelete(data.id, "k3"),
            .deleteRange(data.id, "a", "m"), .logData("note"),
            .put(0, "d1", ""), .delete(0, "d2"), .singleDelete(0, "d3"), .deleteRange(0, "x", "z"), .put(0, "k1", "v1"),
        ])
        // Log data takes no sequence number: it shares the next record's.
        XCTAssertEqual(decoded.records.map(\.0), [0, 1, 2, 3, 4, 4, 5, 6, 7, 8])

        // Written, the batch gets its sequence numbers, and the WAL holds the same bytes.
        let before = try db.latestSequenceNumber()
        try db.write(batch)
        let log = try db.updates(since: before + 1)
        let (sequence, logged) = try XCTUnwrap(try log.next())
        XCTAssertEqual(sequence, before + 1)
        let fromLog = try DecodedRecord.all(logged)
        XCTAssertEqual(fromLog.first, before + 1)
        XCTAssertEqual(fromLog.records.map(\.1), decoded.records.map(\.1))
        XCTAssertEqual(fromLog.records.map(\.0), decoded.records.map { $0.0 + before + 1 })
    }

    func testDecodesHandCraftedMergeAndRangeDeleteAndMultiByteVarints() throws {
        let longKey = [UInt8](repeating: 0x6B, count: 300)  // length 300 needs a 2-byte varint
        var b = BatchBytes(sequence: 1000, count: 5)
        b.record(0x02, bytes("m"), bytes("+1"))                   // merge, default family
        b.record(0x06, cf: 7, bytes("m"), bytes("+2"))            // merge, family 7
        b.record(0x0F, bytes("a"), bytes("b"))                    // range delete, default family
        b.record(0x03, bytes("blob"))                             // log data
        b.record(0x0E, cf: 200, bytes("c"), bytes("d"))           // range delete, family 200 (2-byte varint)
        b.record(0x05, cf: 70000, longKey, bytes("v"))            // put, family 70000 (3-byte varint)

        var keys: [[UInt8]] = []
        let decoded = try b.bytes.withUnsafeBytes { data in
            try WriteBatchDecoder.decode(data) { _, record in
                if case let .put(_, key, _) = record { keys.append([UInt8](key)) }
            }
        }
        XCTAssertEqual(decoded.firstSequence, 1000)
        XCTAssertEqual(decoded.count, 5)
        XCTAssertEqual(keys, [longKey])
        let all = try DecodedRecord.all(b.bytes)
        XCTAssertEqual(all.records.map(\.0), [1000, 1001, 1002, 1003, 1003, 1004])
        XCTAssertEqual(Array(all.records.map(\.1).prefix(5)), [
            .merge(0, "m", "+1"), .merge(7, "m", "+2"), .deleteRange(0, "a", "b"), .logData("blob"), .deleteRange(200, "c", "d"),
        ])

        // RocksDB reads the hand-made bytes the same way.
        let batch = b.bytes.withUnsafeBytes { WriteBatch(data: $0) }
        XCTAssertEqual(batch.count, 5)
    }

    func testEmptyBatchAndHeader() throws {
        let batch = WriteBatch()
        let decoded = try batch.withData { data in
            try WriteBatchDecoder.decode(data) { _, _ in XCTFail("no records") }
        }
        XCTAssertEqual(decoded.firstSequence, 0)
        XCTAssertEqual(decoded.count, 0)
        let header = try BatchBytes(sequence: 42, count: 3).bytes.withUnsafeBytes { try WriteBatchDecoder.header(of: $0) }
        XCTAssertEqual(header.firstSequence, 42)
        XCTAssertEqual(header.count, 3)
    }

    func testUnknownTagIsCorruptionNamingTagAndOffset() throws {
        var b = BatchBytes(sequence: 5, count: 2)
        b.record(0x01, bytes("k"), bytes("v"))
        b.record(0x0A, bytes("xid"))  // end prepare: a transaction marker
        b.record(0x01, bytes("k2"), bytes("v2"))
        let error = try corruption(b.bytes)
        XCTAssertTrue(error.message.hasPrefix("Corruption: "), error.message)
        XCTAssertTrue(error.message.contains("0x0A"), error.message)
        XCTAssertTrue(error.message.contains("offset 17"), error.message)  // 12 + tag, 1, "k", 1, "v"

        for tag: UInt8 in [0x09, 0x0B, 0x0C, 0x0D, 0x10, 0x11, 0x14, 0x16, 0x17, 0x7F] {
            var other = BatchBytes(sequence: 5, count: 1)
            other.record(tag, bytes("x"), bytes("y"))
            XCTAssertTrue(try corruption(other.bytes).message.contains("offset 12"))
        }
    }

    func testTruncatedDataIsCorruption() throws {
        let batch = WriteBatch()
        try batch.put(bytes("key"), bytes("value"))
        try batch.deleteRange(from: bytes("a"), to: bytes("b"))
        let full = batch.withData { [UInt8]($0) }
        XCTAssertEqual(try DecodedRecord.all(full).records.count, 2)
        // Every cut inside the records fails; a cut at a record boundary fails on the count.
        for length in 0..<full.count {
            let error = try corruption(Array(full.prefix(length)))
            XCTAssertTrue(error.message.hasPrefix("Corruption: "), error.message)
        }
        // A varint whose continuation bit runs past the end.
        var b = BatchBytes(sequence: 1, count: 1)
        b.bytes += [0x05, 0x80]
        XCTAssertTrue(try corruption(b.bytes).message.contains("varint"))
        // A varint over 32 bits.
        var wide = BatchBytes(sequence: 1, count: 1)
        wide.bytes += [0x05, 0xFF, 0xFF, 0xFF, 0xFF, 0x7F, 0x00, 0x00]
        XCTAssertTrue(try corruption(wide.bytes).message.contains("32 bits"))
    }

    func testCountMismatchIsCorruptionAndDeliversNothing() throws {
        var tooFew = BatchBytes(sequence: 9, count: 3)
        tooFew.record(0x01, bytes("a"), bytes("1"))
        tooFew.record(0x01, bytes("b"), bytes("2"))
        XCTAssertTrue(try corruption(tooFew.bytes).message.contains("count is 3 but it holds 2"))

        var tooMany = BatchBytes(sequence: 9, count: 1)
        tooMany.record(0x01, bytes("a"), bytes("1"))
        tooMany.record(0x00, bytes("b"))
        XCTAssertTrue(try corruption(tooMany.bytes).message.contains("more records than its count 1"))

        // Log data does not count.
        var logOnly = BatchBytes(sequence: 9, count: 1)
        logOnly.record(0x03, bytes("blob"))
        XCTAssertTrue(try corruption(logOnly.bytes).message.contains("count is 1 but it holds 0"))
    }

    /// Decodes `data`, expecting `.corruption` before any record is delivered.
    private func corruption(_ data: [UInt8], file: StaticString = #filePath, line: UInt = #line) throws -> RocksDBError {
        var delivered = 0
        do {
            _ = try data.withUnsafeBytes { try WriteBatchDecoder.decode($0) { _, _ in delivered += 1 } }
        } catch let error as RocksDBError {
            XCTAssertEqual(error.kind, .corruption, error.message, file: file, line: line)
            XCTAssertEqual(delivered, 0, "records delivered from a corrupt batch", file: file, line: line)
            return error
        }
        XCTFail("expected a corruption error", file: file, line: line)
        return RocksDBError(kind: .unknown, message: "")
    }
}
