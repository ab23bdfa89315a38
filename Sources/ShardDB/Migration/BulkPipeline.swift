import Foundation

extension MigrationTarget {
    /// Default: one chunk at a time with ``applyBulk(_:_:)``, fetching chunk n+1
    /// while chunk n is written (at most two chunks in memory).
    public func applyBulk(_ plan: MigrationPlan, chunks next: @escaping @Sendable () async throws -> BulkChunk?,
                          applied: @escaping @Sendable (BulkChunk) -> Void) async throws {
        try await Self.pipelined(next: next, done: applied) { try await self.applyBulk(plan, $0) }
    }

    /// Default: one piece at a time with ``writeTableFile(_:name:offset:_:)``, fetching the next meanwhile.
    public func writeTableFiles(_ plan: MigrationPlan, pieces next: @escaping @Sendable () async throws -> TableFilePiece?,
                                written: @escaping @Sendable (TableFilePiece) -> Void) async throws {
        try await Self.pipelined(next: next, done: written) {
            try await self.writeTableFile(plan, name: $0.name, offset: $0.offset, $0.data)
        }
    }

    private static func pipelined<Item: Sendable>(next: @escaping @Sendable () async throws -> Item?,
                                                  done: (Item) -> Void,
                                                  _ apply: (Item) async throws -> Void) async throws {
        var item = try await next()
        while let current = item {
            try Task.checkCancellation()
            async let following = next()
            try await apply(current)
            done(current)
            item = try await following
        }
    }
}

/// The entries of a migration's snapshot, chunk after chunk, as
/// ``MigrationTarget/applyBulk(_:chunks:applied:)`` pulls them.
actor BulkChunkReader {
    private let source: any MigrationSource
    private let plan: MigrationPlan
    private let maxBytes: Int
    private var after: [UInt8]?
    private var finished = false

    init(source: any MigrationSource, plan: MigrationPlan, after: [UInt8]?, maxBytes: Int) {
        self.source = source
        self.plan = plan
        self.after = after
        self.maxBytes = maxBytes
    }

    /// The chunk after the last one returned; nil after the one marked done.
    func next() async throws -> BulkChunk? {
        guard !finished else { return nil }
        try Task.checkCancellation()
        let chunk = try await source.readBulk(plan, after: after, maxBytes: maxBytes)
        after = chunk.lastKey ?? after
        finished = chunk.done
        return chunk
    }
}

/// Exported table files in pieces of `maxBytes`, file after file, as
/// ``MigrationTarget/writeTableFiles(_:pieces:written:)`` pulls them.
actor TableFileReader {
    private let source: any MigrationSource
    private let plan: MigrationPlan
    private let files: [TableFile]
    private let maxBytes: Int
    private var file = 0
    private var offset: UInt64 = 0

    /// Reads `files` as one sequence of bytes, from byte `start` of it.
    init(source: any MigrationSource, plan: MigrationPlan, files: [TableFile], from start: UInt64, maxBytes: Int) {
        self.source = source
        self.plan = plan
        self.files = files
        self.maxBytes = maxBytes
        var (index, skipped) = (0, start)
        while index < files.count && skipped >= files[index].size {
            skipped -= files[index].size
            index += 1
        }
        (file, offset) = (index, skipped)
    }

    /// The next piece; nil once every file is read to its size.
    ///
    /// - throws: `.corruptedValue` when a file ends before its exported size, or a
    ///   piece is not the size asked for.
    func next() async throws -> TableFilePiece? {
        while file < files.count && offset >= files[file].size {
            file += 1
            offset = 0
        }
        guard file < files.count else { return nil }
        try Task.checkCancellation()
        let current = files[file]
        // (As the transport received it: a coordinator forwards it so, compressed or not.)
        let piece = try await source.readTableFilePiece(plan, name: current.name, offset: offset, maxBytes: maxBytes)
        guard !piece.data.isEmpty else {
            throw ShardDBError(.corruptedValue, "table file \(current.name) ended at \(offset) of its \(current.size) bytes")
        }
        // Each piece is whole: one that is not (a compressed piece whose compression
        // flag changed on the way, which the checksum does not cover, reads as its
        // compressed bytes) would be written as the file's bytes, with the next
        // piece read from after it, and nothing before the import checks blocks.
        let expected = Int(min(UInt64(maxBytes), current.size - offset))
        guard piece.data.count == expected else {
            throw ShardDBError(.corruptedValue,
                "table file \(current.name): \(piece.data.count) bytes at \(offset), expected \(expected) (damaged on the way, or the export changed)")
        }
        offset += UInt64(piece.data.count)
        return piece
    }
}
