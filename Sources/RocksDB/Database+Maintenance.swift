#if canImport(FoundationEssentials)
import FoundationEssentials
#else
import Foundation
#endif
import CRocksDB
import CRocksDBShim

extension Database {
    /// The sequence number of the last write.
    public func latestSequenceNumber() throws -> UInt64 {
        try withHandle { rocksdb_get_latest_sequence_number($0) }
    }

    /// A string property such as `"rocksdb.stats"`; nil when unknown.
    public func property(_ name: String, in family: ColumnFamily? = nil) throws -> String? {
        try withHandle(family) { db, cf in
            guard let value = rocksdb_property_value_cf(db, cf, name) else { return nil }
            defer { rocksdb_free(value) }
            return String(cString: value)
        }
    }

    /// An integer property such as `"rocksdb.estimate-num-keys"`; nil when unknown.
    public func integerProperty(_ name: String, in family: ColumnFamily? = nil) throws -> UInt64? {
        try withHandle(family) { db, cf in
            var value: UInt64 = 0
            return rocksdb_property_int_cf(db, cf, name, &value) == 0 ? value : nil
        }
    }

    /// RocksDB's statistics dump; nil unless ``Options/enableStatistics()`` was set.
    public func statistics() -> String? {
        let options = core.databaseOptions
        guard let text = rocksdb_options_statistics_get_string(options.pointer) else { return nil }
        defer { rocksdb_free(text) }
        return String(cString: text)
    }

    /// Approximate on-disk bytes of the keys in `[begin, end)`: table files only (the
    /// C call leaves out memtables, so unflushed data counts as about 0).
    public func approximateSize(from begin: [UInt8], to end: [UInt8], in family: ColumnFamily? = nil) throws -> UInt64 {
        try withHandle(family) { db, cf in
            var size: UInt64 = 0
            try begin.withUnsafeBytes { b in
                try end.withUnsafeBytes { e in
                    var starts: [UnsafePointer<CChar>?] = [b.cPointer]
                    var startSizes = [b.count]
                    var limits: [UnsafePointer<CChar>?] = [e.cPointer]
                    var limitSizes = [e.count]
                    try withStatus {
                        rocksdb_approximate_sizes_cf(db, cf, 1, &starts, &startSizes, &limits, &limitSizes, &size, $0)
                    }
                }
            }
            return size
        }
    }

    /// Flushes the memtables of `family` (nil: the default family) to table files.
    public func flush(_ family: ColumnFamily? = nil, wait: Bool = true) throws {
        let options = rocksdb_flushoptions_create()!
        defer { rocksdb_flushoptions_destroy(options) }
        rocksdb_flushoptions_set_wait(options, wait ? 1 : 0)
        try withHandle(family) { db, cf in try withStatus { rocksdb_flush_cf(db, options, cf, $0) } }
    }

    /// Flushes the memtables of `families` in one call. With ``Options/atomicFlush``
    /// RocksDB commits their flushes as one: after a crash without the WAL, all
    /// of them are kept or none (flushing them one by one could keep some).
    public func flush(_ families: [ColumnFamily], wait: Bool = true) throws {
        let options = rocksdb_flushoptions_create()!
        defer { rocksdb_flushoptions_destroy(options) }
        rocksdb_flushoptions_set_wait(options, wait ? 1 : 0)
        let lock = closeGuard
        let hold = lock.lockShared()
        defer { lock.unlock(hold) }
        let resolved = try families.map { try self.handles($0) }
        guard let db = resolved.first?.0 else { return }
        let familyHandles: [OpaquePointer?] = resolved.map(\.1)
        try withStatus { error in
            familyHandles.withUnsafeBufferPointer { sharddb_flush_cfs(db, $0.baseAddress, $0.count, wait ? 1 : 0, error) }
        }
    }

    /// Reads every live table file of every column family and checks each block's
    /// checksum (RocksDB's `DB::VerifyChecksum`); the error names the damaged file.
    public func verifyChecksums() throws {
        try withHandle { db in try withStatus { sharddb_db_verify_checksum(db, $0) } }
    }

    /// Flushes the write-ahead log (and syncs it when `sync`).
    public func flushWAL(sync: Bool) throws {
        try withHandle { db in try withStatus { rocksdb_flush_wal(db, sync ? 1 : 0, $0) } }
    }

    /// Compacts the keys in `[begin, end]` of `family` (RocksDB's CompactRange takes
    /// the end inclusive; nil bounds: unbounded), running compaction filters on
    /// every entry and forcing the bottommost level.
    ///
    /// - throws: ``RocksDBError`` when the compaction failed (an I/O error,
    ///   compactions paused or aborted): the C API's call drops that status, so
    ///   this goes through the shim.
    public func compactRange(_ family: ColumnFamily? = nil, from begin: [UInt8]? = nil, to end: [UInt8]? = nil) throws {
        try withHandle(family) { db, cf in
            func call(_ b: UnsafeRawBufferPointer?, _ e: UnsafeRawBufferPointer?) throws {
                // (cPointer is never NULL: NULL, for a nil bound, means unbounded.)
                try withStatus { sharddb_compact_range_cf(db, cf, b?.cPointer, b?.count ?? 0, e?.cPointer, e?.count ?? 0, 1, $0) }
            }
            switch (begin, end) {
            case let (b?, e?): try b.withUnsafeBytes { bb in try e.withUnsafeBytes { ee in try call(bb, ee) } }
            case let (b?, nil): try b.withUnsafeBytes { try call($0, nil) }
            case let (nil, e?): try e.withUnsafeBytes { try call(nil, $0) }
            case (nil, nil): try call(nil, nil)
            }
        }
    }

    /// Deletes table files (level 1 and below) whose keys all lie in `[begin, end)`
    /// (RocksDB's DeleteFilesInRange with include_end false: the C API's call
    /// would also drop a file whose largest key is `end`).
    public func deleteFiles(from begin: [UInt8], to end: [UInt8], in family: ColumnFamily? = nil) throws {
        try withHandle(family) { db, cf in
            try begin.withUnsafeBytes { b in
                try end.withUnsafeBytes { e in
                    // (cPointer is never NULL, not even for an empty bound: NULL would mean unbounded.)
                    try withStatus { sharddb_delete_files_in_range_cf(db, cf, b.cPointer, b.count, e.cPointer, e.count, $0) }
                }
            }
        }
    }
}
