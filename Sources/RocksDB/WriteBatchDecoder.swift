/// One operation of a serialized write batch, as ``WriteBatchDecoder`` reads it.
///
/// The buffers point into the bytes being decoded: they are valid only inside
/// the decoder's callback (copy them to keep them).
public enum WriteBatchRecord {
    case put(columnFamily: UInt32, key: UnsafeRawBufferPointer, value: UnsafeRawBufferPointer)
    case delete(columnFamily: UInt32, key: UnsafeRawBufferPointer)
    case singleDelete(columnFamily: UInt32, key: UnsafeRawBufferPointer)
    /// Removes every key in `[begin, end)`.
    case deleteRange(columnFamily: UInt32, begin: UnsafeRawBufferPointer, end: UnsafeRawBufferPointer)
    case merge(columnFamily: UInt32, key: UnsafeRawBufferPointer, value: UnsafeRawBufferPointer)
    /// A blob added with ``WriteBatch/putLogData(_:)``: in the WAL only, no key, no sequence number.
    case logData(UnsafeRawBufferPointer)

    /// The column family the record writes to; nil for log data.
    public var columnFamily: UInt32? {
        switch self {
        case .put(let cf, _, _), .delete(let cf, _), .singleDelete(let cf, _),
             .deleteRange(let cf, _, _), .merge(let cf, _, _):
            return cf
        case .logData:
            return nil
        }
    }
}

/// Parses RocksDB's serialized write batches (``WriteBatch/withData(_:)``,
/// ``WALIterator/next()``) without the C API's `rocksdb_writebatch_iterate`,
/// which in 7.8 only reports puts and deletes of the default column family.
///
/// Layout (RocksDB's `db/write_batch.cc`): an 8-byte little-endian sequence
/// number, a 4-byte little-endian count, then records. Each record is a tag
/// byte; column family variants then carry a varint32 column family id; keys
/// and values are varint32-length-prefixed. Every record but log data takes
/// one sequence number, in order from the header's.
///
/// Tags outside plain writes (transactions, no-ops, blob indexes, timestamps,
/// wide columns) are rejected, never skipped: a changelog consumer that
/// silently dropped one would diverge from the database.
///
/// ```swift
/// let (first, count) = try batch.withData { data in
///     try WriteBatchDecoder.decode(data) { sequence, record in
///         if case let .put(cf, key, value) = record { print(sequence, cf, Array(key), Array(value)) }
///     }
/// }
/// ```
public enum WriteBatchDecoder {
    /// Size of the header (sequence number and count).
    public static let headerSize = 12

    /// Calls `body` with each record of `data` and the sequence number it was
    /// (or will be) written at. Log data takes no sequence number: it comes with
    /// the one the next record takes. `body` is called only when the whole batch is
    /// well formed: a corrupt batch throws before any record is delivered.
    ///
    /// - returns: the header's sequence number and its count of sequence-consuming records.
    /// - throws: ``RocksDBError`` `.corruption` for a short header, an unknown or unsupported
    ///   tag, a truncated record, a malformed varint or a count that does not match the
    ///   records; or what `body` throws.
    @discardableResult
    public static func decode(
        _ data: UnsafeRawBufferPointer,
        _ body: (_ sequence: UInt64, _ record: WriteBatchRecord) throws -> Void
    ) throws -> (firstSequence: UInt64, count: Int) {
        let header = try readHeader(data)
        try walk(data, header: header) { _, _ in }
        try walk(data, header: header, body)
        return (header.sequence, header.count)
    }

    /// The header's sequence number and count, without looking at the records.
    ///
    /// - throws: ``RocksDBError`` `.corruption` when `data` is shorter than a header.
    public static func header(of data: UnsafeRawBufferPointer) throws -> (firstSequence: UInt64, count: Int) {
        let header = try readHeader(data)
        return (header.sequence, header.count)
    }

    // MARK: Internal

    /// Record tags, RocksDB's `ValueType` (`db/dbformat.h`).
    enum Tag: UInt8 {
        case delete = 0x0, put = 0x1, merge = 0x2, logData = 0x3
        case cfDelete = 0x4, cfPut = 0x5, cfMerge = 0x6
        case singleDelete = 0x7, cfSingleDelete = 0x8
        case cfRangeDelete = 0xE, rangeDelete = 0xF

        /// Column family variants carry the family id before their fields; the others write to the default family (0).
        var carriesColumnFamily: Bool {
            switch self {
            case .cfDelete, .cfPut, .cfMerge, .cfSingleDelete, .cfRangeDelete: return true
            default: return false
            }
        }
    }

    /// Names of the tags RocksDB defines but this decoder does not handle, for error messages.
    static func unsupportedTagName(_ tag: UInt8) -> String? {
        switch tag {
        case 0x09: return "begin prepare"
        case 0x0A: return "end prepare"
        case 0x0B: return "commit"
        case 0x0C: return "rollback"
        case 0x0D: return "noop"
        case 0x10: return "column family blob index"
        case 0x11: return "blob index"
        case 0x12: return "begin persisted prepare"
        case 0x13: return "begin unprepare"
        case 0x14: return "delete with timestamp"
        case 0x15: return "commit with timestamp"
        case 0x16: return "wide column entity"
        case 0x17: return "column family wide column entity"
        default: return nil
        }
    }

    static func readHeader(_ data: UnsafeRawBufferPointer) throws -> (sequence: UInt64, count: Int) {
        guard data.count >= headerSize else {
            throw corruption("write batch of \(data.count) bytes is shorter than its \(headerSize)-byte header")
        }
        let sequence = UInt64(littleEndian: data.loadUnaligned(fromByteOffset: 0, as: UInt64.self))
        let count = UInt32(littleEndian: data.loadUnaligned(fromByteOffset: 8, as: UInt32.self))
        if count > 0 && sequence > UInt64.max - UInt64(count) {
            throw corruption("write batch sequence \(sequence) + count \(count) overflows")
        }
        return (sequence, Int(count))
    }

    /// One pass over the records, calling `body` with each.
    static func walk(_ data: UnsafeRawBufferPointer, header: (sequence: UInt64, count: Int),
                     _ body: (UInt64, WriteBatchRecord) throws -> Void) throws {
        var reader = Reader(data: data, offset: headerSize)
        var found = 0
        while !reader.isAtEnd {
            let start = reader.offset
            let byte = reader.data[start]
            reader.offset += 1
            guard let tag = Tag(rawValue: byte) else {
                let name = unsupportedTagName(byte).map { " (\($0), not supported)" } ?? ""
                throw corruption("unknown write batch record tag \(tagText(byte))\(name) at offset \(start)")
            }
            let cf: UInt32 = tag.carriesColumnFamily ? try reader.varint32(tag, start) : 0
            let record: WriteBatchRecord
            switch tag {
            case .put, .cfPut:
                record = .put(columnFamily: cf, key: try reader.slice(tag, start), value: try reader.slice(tag, start))
            case .delete, .cfDelete:
                record = .delete(columnFamily: cf, key: try reader.slice(tag, start))
            case .singleDelete, .cfSingleDelete:
                record = .singleDelete(columnFamily: cf, key: try reader.slice(tag, start))
            case .rangeDelete, .cfRangeDelete:
                record = .deleteRange(columnFamily: cf, begin: try reader.slice(tag, start), end: try reader.slice(tag, start))
            case .merge, .cfMerge:
                record = .merge(columnFamily: cf, key: try reader.slice(tag, start), value: try reader.slice(tag, start))
            case .logData:
                record = .logData(try reader.slice(tag, start))
            }
            if case .logData = record {
                try body(header.sequence + UInt64(found), record)
                continue
            }
            guard found < header.count else {
                throw corruption("write batch holds more records than its count \(header.count) (extra record at offset \(start))")
            }
            try body(header.sequence + UInt64(found), record)
            found += 1
        }
        guard found == header.count else {
            throw corruption("write batch count is \(header.count) but it holds \(found) records")
        }
    }

    /// `0x0A` for 10.
    static func tagText(_ tag: UInt8) -> String {
        let hex = String(tag, radix: 16, uppercase: true)
        return "0x" + (hex.count < 2 ? "0" : "") + hex
    }

    static func corruption(_ detail: String) -> RocksDBError {
        RocksDBError(kind: .corruption, message: "Corruption: \(detail)")
    }

    /// A cursor over the record bytes.
    struct Reader {
        let data: UnsafeRawBufferPointer
        var offset: Int

        var isAtEnd: Bool { offset >= data.count }

        /// RocksDB's varint32: 7 bits per byte, low bits first, at most 5 bytes.
        mutating func varint32(_ tag: Tag, _ recordStart: Int) throws -> UInt32 {
            var result: UInt32 = 0
            var shift: UInt32 = 0
            while true {
                guard offset < data.count else {
                    throw WriteBatchDecoder.corruption(
                        "truncated varint in record tag \(WriteBatchDecoder.tagText(tag.rawValue)) at offset \(recordStart)")
                }
                let byte = data[offset]
                offset += 1
                if shift == 28 && byte > 0x0F {
                    throw WriteBatchDecoder.corruption(
                        "varint over 32 bits in record tag \(WriteBatchDecoder.tagText(tag.rawValue)) at offset \(recordStart)")
                }
                result |= UInt32(byte & 0x7F) << shift
                if byte & 0x80 == 0 { return result }
                shift += 7
            }
        }

        /// A varint32-length-prefixed byte string.
        mutating func slice(_ tag: Tag, _ recordStart: Int) throws -> UnsafeRawBufferPointer {
            let length = Int(try varint32(tag, recordStart))
            guard length <= data.count - offset else {
                throw WriteBatchDecoder.corruption(
                    "truncated record tag \(WriteBatchDecoder.tagText(tag.rawValue)) at offset \(recordStart): "
                        + "field of \(length) bytes at offset \(offset) runs past the batch end (\(data.count) bytes)")
            }
            let slice = UnsafeRawBufferPointer(rebasing: data[offset..<(offset + length)])
            offset += length
            return slice
        }
    }
}
