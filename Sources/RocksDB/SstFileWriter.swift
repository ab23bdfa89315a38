#if canImport(FoundationEssentials)
import FoundationEssentials
#else
import Foundation
#endif
import CRocksDB

/// Writes a sorted table file (`rocksdb_sstfilewriter_t`) that a database can
/// then take in whole with ``Database/ingestExternalFiles(_:into:moveFiles:)``,
/// bypassing its write-ahead log and memtables.
///
/// ```swift
/// let writer = try SstFileWriter(path: "/tmp/chunk.sst", options: familyOptions)
/// try writer.put("a", "1")
/// try writer.put("b", "2")   // keys strictly increasing
/// try writer.finish()
/// try db.ingestExternalFiles(["/tmp/chunk.sst"], into: family, moveFiles: true)
/// ```
///
/// `options` should be the column family's own (comparator, compression, table
/// format). Keys must be added in strictly increasing order; RocksDB refuses
/// anything else with `invalidArgument`. A writer that is not finished leaves a
/// partial file behind, which nothing reads.
public final class SstFileWriter {
    private var pointer: OpaquePointer?
    private let envOptions: OpaquePointer
    // The writer keeps pointers into the options; hold them as long as it lives.
    private let options: Options
    public let path: String
    /// Entries added so far.
    public private(set) var count = 0

    /// Creates the writer and opens `path` (an existing file is replaced).
    ///
    /// - throws: ``RocksDBError`` when the file cannot be created.
    public init(path: String, options: Options) throws {
        self.path = path
        self.options = options
        envOptions = rocksdb_envoptions_create()
        let writer = rocksdb_sstfilewriter_create(envOptions, options.pointer)
        pointer = writer
        // On failure deinit still runs (every property is set) and frees both.
        try withStatus { rocksdb_sstfilewriter_open(writer, path, $0) }
    }

    deinit {
        if let pointer { rocksdb_sstfilewriter_destroy(pointer) }
        rocksdb_envoptions_destroy(envOptions)
    }

    private func handle() throws -> OpaquePointer {
        guard let pointer else { throw RocksDBError.closed("table file writer for \(path)") }
        return pointer
    }

    /// Adds `key` → `value`; `key` must sort after every key added before.
    public func put(_ key: some ContiguousBytes, _ value: some ContiguousBytes) throws {
        let writer = try handle()
        try key.withUnsafeBytes { k in
            try value.withUnsafeBytes { v in
                try withStatus { rocksdb_sstfilewriter_put(writer, k.cPointer, k.count, v.cPointer, v.count, $0) }
            }
        }
        count += 1
    }

    /// Adds a point tombstone for `key` (same ordering rule as ``put(_:_:)``).
    public func delete(_ key: some ContiguousBytes) throws {
        let writer = try handle()
        try key.withUnsafeBytes { k in
            try withStatus { rocksdb_sstfilewriter_delete(writer, k.cPointer, k.count, $0) }
        }
        count += 1
    }

    /// Bytes written to the file so far.
    public var fileSize: UInt64 {
        guard let pointer else { return 0 }
        var size: UInt64 = 0
        rocksdb_sstfilewriter_file_size(pointer, &size)
        return size
    }

    /// Completes and syncs the file; the writer cannot be used afterwards.
    ///
    /// - throws: ``RocksDBError``; `invalidArgument` when nothing was added
    ///   (RocksDB does not write an empty table file).
    public func finish() throws {
        let writer = try handle()
        defer {
            rocksdb_sstfilewriter_destroy(writer)
            pointer = nil
        }
        try withStatus { rocksdb_sstfilewriter_finish(writer, $0) }
    }
}

extension Database {
    /// Adds finished table files to `family` atomically (RocksDB's
    /// `IngestExternalFile`): either every file becomes visible or none does.
    ///
    /// Ingestion bypasses the write-ahead log: the files are durable when this
    /// returns, but a changelog reader sees no record of them (and a gap if
    /// ingestion assigned them a sequence number).
    ///
    /// - parameters:
    ///   - moveFiles: hard-link the files into the database instead of copying
    ///     them (same filesystem only); the originals can then be removed.
    ///   - snapshotConsistency: RocksDB's `snapshot_consistency` (on by default):
    ///     while the database holds any snapshot, give the files a fresh sequence
    ///     number so that snapshot does not see them. That number is in no WAL
    ///     record, so a changelog reader meets a gap there. Turn it off when no
    ///     snapshot reads the family (files that overlap nothing then take
    ///     sequence number 0 and consume none).
    ///   - allowGlobalSequenceNumber: RocksDB's `allow_global_seqno` (on by
    ///     default): a file whose keys overlap keys or range tombstones already in
    ///     the family takes a fresh sequence number (in no WAL record, like the
    ///     above). Off, such an ingestion fails instead (``isGlobalSequenceNumberRequired(_:)``)
    ///     and changes nothing.
    /// - throws: ``RocksDBError``, e.g. `invalidArgument` for overlapping files.
    public func ingestExternalFiles(_ paths: [String], into family: ColumnFamily? = nil, moveFiles: Bool = false,
                                    snapshotConsistency: Bool = true, allowGlobalSequenceNumber: Bool = true) throws {
        guard !paths.isEmpty else { return }
        let options = rocksdb_ingestexternalfileoptions_create()!
        defer { rocksdb_ingestexternalfileoptions_destroy(options) }
        rocksdb_ingestexternalfileoptions_set_move_files(options, moveFiles ? 1 : 0)
        rocksdb_ingestexternalfileoptions_set_snapshot_consistency(options, snapshotConsistency ? 1 : 0)
        rocksdb_ingestexternalfileoptions_set_allow_global_seqno(options, allowGlobalSequenceNumber ? 1 : 0)
        try withCStrings(paths[...], []) { pointers in
            var pointers = pointers
            try withHandle(family) { db, cf in
                try withStatus { rocksdb_ingest_external_file_cf(db, cf, &pointers, pointers.count, options, $0) }
            }
        }
    }
}

extension Database {
    /// True when `error` is an ingestion's refusal to give its files a sequence
    /// number of their own (``ingestExternalFiles(_:into:moveFiles:snapshotConsistency:allowGlobalSequenceNumber:)``
    /// with `allowGlobalSequenceNumber` off, files overlapping what the family holds).
    public static func isGlobalSequenceNumberRequired(_ error: any Error) -> Bool {
        guard let error = error as? RocksDBError, error.kind == .invalidArgument else { return false }
        return error.message.contains("Global seqno is required, but disabled")
    }
}

/// Calls `body` with C strings of `strings`, valid for the call only.
private func withCStrings<R>(_ strings: ArraySlice<String>, _ done: [UnsafePointer<CChar>?],
                             _ body: ([UnsafePointer<CChar>?]) throws -> R) rethrows -> R {
    guard let first = strings.first else { return try body(done) }
    return try first.withCString { try withCStrings(strings.dropFirst(), done + [$0], body) }
}
