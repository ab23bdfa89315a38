import CSnappy
import Foundation
import ShardDB

/// How a bulk chunk's entries travel between processes (the `compression`
/// fields of `BulkChunk`, `ReadBulkRequest` and `PullBulkRequest`;
/// docs/TRANSPORT.md, "Compression").
///
/// A reader says what it accepts; the source compresses only then, and only a
/// chunk that shrinks by at least an eighth (the rest travel as read, marked
/// ``none``). Compression costs CPU on both ends and saves it in every copy the
/// transport makes of the bytes (the sender's framing, the socket both ways,
/// the receiver's deframing, the checksums), and it saves the network's bandwidth.
public enum BulkCompression: UInt32, Sendable, CaseIterable, CustomStringConvertible {
    /// Keys and values back to back, as read.
    case none = 0
    /// Snappy's raw format (the codec RocksDB compresses table blocks with by
    /// default): fast both ways, and quick to give up on bytes that do not compress.
    case snappy = 1

    public var description: String {
        switch self {
        case .none: return "none"
        case .snappy: return "snappy"
        }
    }

    /// A name as `shardctl migrate --wire-compression` takes it.
    public init?(name: String) {
        guard let match = Self.allCases.first(where: { $0.description == name }) else { return nil }
        self = match
    }
}

/// Which table files to ask for compressed: a piece asked compressed that came
/// back as read (Snappy saved less than an eighth) says the file's next ones
/// will not shrink either, so its next ``skipped`` pieces are asked for as
/// read — sparing the source a compression it would throw away (a table file of
/// half-compressible values, already halved by RocksDB, streamed 12% faster)
/// — and then one is asked compressed again, in case the file changed. A
/// source streaming bulk chunks decides the same way for the stream's chunks.
struct CompressionProbe: Sendable {
    static let skipped = 7
    /// Files (a migration's id and a name) with the pieces left to ask for as read.
    private var left: [String: Int] = [:]

    /// The compression to ask for the next piece of `file`, given what the reader accepts.
    mutating func compression(for file: String, accepting accepted: BulkCompression) -> BulkCompression {
        guard accepted != .none, let count = left[file], count > 0 else { return accepted }
        left[file] = count - 1
        return .none
    }

    /// Records how a piece of `file` asked for compressed came back.
    mutating func record(_ file: String, shrank: Bool) {
        if shrank {
            left[file] = nil
        } else {
            if left.count >= 1024 { left = [:] }  // (files of finished migrations go at an overflow)
            left[file] = Self.skipped
        }
    }
}

/// Snappy over whole buffers, into memory of its own (no zero fill, no copy out).
enum Snappy {
    /// Buffers below this travel as they are: the saving would not pay for the call.
    static let smallest = 1024

    /// `bytes` compressed, or nil when that does not save at least an eighth of them.
    static func compress(_ bytes: UnsafeRawBufferPointer) -> Data? {
        guard bytes.count >= smallest, let base = bytes.baseAddress else { return nil }
        let capacity = snappy_max_compressed_length(bytes.count)
        guard let out = malloc(capacity) else { return nil }
        var length = capacity
        guard snappy_compress(base.assumingMemoryBound(to: CChar.self), bytes.count,
                              out.assumingMemoryBound(to: CChar.self), &length) == SNAPPY_OK,
              length <= bytes.count - bytes.count / 8 else {
            free(out)
            return nil
        }
        return Data(bytesNoCopy: out, count: length, deallocator: .free)
    }

    /// `compressed` expanded, which must come to exactly `expected` bytes (the
    /// sum of the chunk's lengths, so memory is bounded by what the message declares).
    ///
    /// - throws: `.invalidArgument` when the bytes are not Snappy's format or expand to another size.
    static func decompress(_ compressed: UnsafeRawBufferPointer, expected: Int) throws -> Data {
        try decompress(compressed, what: "bulk chunk") { length in
            guard length == expected else {
                throw ShardDBError(.invalidArgument, "malformed message: a compressed bulk chunk does not expand to "
                    + "the \(expected) bytes its lengths add up to")
            }
        }
    }

    /// `compressed` expanded, which must come to at most `limit` bytes (what the
    /// reader asked for, so memory is bounded by the request, not by the message).
    ///
    /// - throws: `.invalidArgument` when the bytes are not Snappy's format or expand to more.
    static func decompress(_ compressed: UnsafeRawBufferPointer, atMost limit: Int, what: String) throws -> Data {
        try decompress(compressed, what: what) { length in
            guard length <= limit else {
                throw ShardDBError(.invalidArgument, "malformed message: a compressed \(what) expands to \(length) bytes, "
                    + "more than the \(limit) asked for")
            }
        }
    }

    /// `compressed` expanded, once `check` accepted the length its header declares.
    private static func decompress(_ compressed: UnsafeRawBufferPointer, what: String, check: (Int) throws -> Void) throws -> Data {
        guard !compressed.isEmpty, let base = compressed.baseAddress?.assumingMemoryBound(to: CChar.self) else {
            try check(0)
            return Data()
        }
        var length = 0
        guard snappy_uncompressed_length(base, compressed.count, &length) == SNAPPY_OK else {
            throw ShardDBError(.invalidArgument, "malformed message: a compressed \(what) is not valid Snappy data")
        }
        try check(length)
        guard let out = malloc(max(length, 1)) else {
            // (The size is bounded by what a message could carry: this is the process out of memory.)
            throw ShardDBError(.invalidArgument, "out of memory: no room to expand a \(what) of \(length) bytes")
        }
        var written = length
        guard snappy_uncompress(base, compressed.count, out.assumingMemoryBound(to: CChar.self), &written) == SNAPPY_OK,
              written == length else {
            free(out)
            throw ShardDBError(.invalidArgument, "malformed message: a compressed \(what) is not valid Snappy data")
        }
        return Data(bytesNoCopy: out, count: written, deallocator: .free)
    }
}
