#if canImport(FoundationEssentials)
import FoundationEssentials
#else
import Foundation
#endif
import CRocksDB
import CRocksDBShim

/// Database and column-family options (`rocksdb_options_t`).
///
/// Typed setters cover the common options; ``apply(optionsString:)`` passes any
/// other option by RocksDB's own name through its options-string parser:
///
/// ```swift
/// let options = Options()
/// options.createIfMissing = true
/// try options.apply(optionsString: "periodic_compaction_seconds=3600;max_subcompactions=2")
/// ```
///
/// An `Options` object is retained by every database opened with it, so the C
/// object (and any compaction filter set on it) outlives the database.
public final class Options: @unchecked Sendable {
    // Mutated only before open; RocksDB copies what it needs at open time.
    private(set) var pointer: OpaquePointer
    private var tableOptions: OpaquePointer?
    private var blockCache: OpaquePointer?
    // Every filter ever set: a column family created with these options keeps RocksDB's
    // raw pointer to the filter that was set then, so a replaced one must stay alive too.
    private var compactionFilters: [CompactionFilterBox] = []

    public init() {
        pointer = rocksdb_options_create()
    }

    /// A copy of `other`, including its table options, but without its
    /// compaction filter (set one per column family).
    ///
    /// The copy shares `other`'s table factory, and so its block cache: column
    /// families opened with copies of one `Options` share one cache (RocksDB
    /// holds the factory, so it outlives both objects).
    public init(copying other: Options) {
        pointer = rocksdb_options_create_copy(other.pointer)
        rocksdb_options_set_compaction_filter(pointer, nil)
        tableSettings = other.tableSettings
    }

    deinit {
        rocksdb_options_destroy(pointer)
        if let tableOptions { rocksdb_block_based_options_destroy(tableOptions) }
        if let blockCache { rocksdb_cache_destroy(blockCache) }
    }

    /// Create the database if it does not exist (default false).
    public var createIfMissing: Bool {
        get { rocksdb_options_get_create_if_missing(pointer) != 0 }
        set { rocksdb_options_set_create_if_missing(pointer, newValue ? 1 : 0) }
    }

    /// Create column families named at open that do not exist yet (default false).
    public var createMissingColumnFamilies: Bool {
        get { rocksdb_options_get_create_missing_column_families(pointer) != 0 }
        set { rocksdb_options_set_create_missing_column_families(pointer, newValue ? 1 : 0) }
    }

    /// Fail to open if the database already exists (default false).
    public var errorIfExists: Bool {
        get { rocksdb_options_get_error_if_exists(pointer) != 0 }
        set { rocksdb_options_set_error_if_exists(pointer, newValue ? 1 : 0) }
    }

    /// Flush every column family with unflushed data together and commit the
    /// flushes as one (RocksDB's `atomic_flush`, default false). Without the WAL
    /// this is what keeps a batch across column families whole through a crash.
    public var atomicFlush: Bool {
        get { rocksdb_options_get_atomic_flush(pointer) != 0 }
        set { rocksdb_options_set_atomic_flush(pointer, newValue ? 1 : 0) }
    }

    /// Whether writes to the WAL and to the memtables are pipelined (default false);
    /// RocksDB refuses it beside ``atomicFlush``.
    public var enablePipelinedWrite: Bool { rocksdb_options_get_enable_pipelined_write(pointer) != 0 }

    /// Whether files (the WAL among them) are written through mmap (default false);
    /// `SyncWAL` (``Database/flushWAL(sync:)``) is not supported with it.
    public var allowMmapWrites: Bool { rocksdb_options_get_allow_mmap_writes(pointer) != 0 }

    /// Whether updates overwrite values in place in the memtable (default false);
    /// RocksDB takes no snapshots with it (``Database/snapshot()`` throws `.notSupported`).
    public var inplaceUpdateSupport: Bool { rocksdb_options_get_inplace_update_support(pointer) != 0 }

    /// Size of one memtable before it is flushed, in bytes.
    public func setWriteBufferSize(_ bytes: Int) { rocksdb_options_set_write_buffer_size(pointer, bytes) }
    /// Most memtables kept in memory per column family.
    public func setMaxWriteBufferNumber(_ count: Int) { rocksdb_options_set_max_write_buffer_number(pointer, Int32(count)) }
    /// Background flush and compaction threads.
    public func setMaxBackgroundJobs(_ count: Int) { rocksdb_options_set_max_background_jobs(pointer, Int32(count)) }
    /// RocksDB's `IncreaseParallelism`: a thread pool sized for `threads` cores.
    public func increaseParallelism(_ threads: Int) { rocksdb_options_increase_parallelism(pointer, Int32(threads)) }
    /// Most open table files (-1: unlimited).
    public func setMaxOpenFiles(_ count: Int) { rocksdb_options_set_max_open_files(pointer, Int32(count)) }
    /// Keep archived WAL files this long so changelog readers can tail them.
    public func setWALTTLSeconds(_ seconds: UInt64) { rocksdb_options_set_WAL_ttl_seconds(pointer, seconds) }
    /// Info LOG files kept (the current one included); each open starts a new one.
    public func setKeepLogFileNum(_ count: Int) { rocksdb_options_set_keep_log_file_num(pointer, count) }
    /// Keep at most this much archived WAL.
    public func setWALSizeLimitMB(_ megabytes: UInt64) { rocksdb_options_set_WAL_size_limit_MB(pointer, megabytes) }
    /// Collect statistics (read them with ``Database/statistics``).
    public func enableStatistics() { rocksdb_options_enable_statistics(pointer) }
    /// Sync WAL writes to disk only in bulk (bytes); 0 disables.
    public func setWALBytesPerSync(_ bytes: UInt64) { rocksdb_options_set_wal_bytes_per_sync(pointer, bytes) }

    /// How RocksDB treats a damaged write-ahead log when it opens (`wal_recovery_mode`).
    public enum WALRecoveryMode: Int32, Sendable {
        /// Tolerate an incomplete record at the end of a log (a write cut short by a
        /// crash); fail the open on any other damage.
        case tolerateCorruptedTailRecords = 0
        /// Fail the open on any damage, even an incomplete last record.
        case absoluteConsistency = 1
        /// Stop replaying at the first damaged record and drop everything after it,
        /// without an error (RocksDB's default).
        case pointInTime = 2
        /// Skip damaged records and keep replaying (may lose writes from the middle).
        case skipAnyCorruptedRecords = 3
    }

    public func setWALRecoveryMode(_ mode: WALRecoveryMode) { rocksdb_options_set_wal_recovery_mode(pointer, mode.rawValue) }

    /// Block compression for every level.
    public func setCompression(_ compression: Compression) {
        rocksdb_options_set_compression(pointer, compression.rawValue)
    }

    /// Table (block-based) settings. The block cache is created here and
    /// freed with these options.
    public struct TableSettings: Sendable, Equatable {
        /// LRU block cache capacity in bytes; 0 disables the block cache. Its
        /// block buffers are allocated in size classes (at most 12.5% above a
        /// block's size, counted against the capacity), so a block evicted for
        /// another leaves memory the allocator reuses as it is.
        public var blockCacheBytes: Int
        /// Bloom filter bits per key; 0 disables the filter.
        public var bloomBitsPerKey: Double
        /// Uncompressed data block size.
        public var blockSize: Int

        public init(blockCacheBytes: Int = 8 << 20, bloomBitsPerKey: Double = 0, blockSize: Int = 4096) {
            self.blockCacheBytes = blockCacheBytes
            self.bloomBitsPerKey = bloomBitsPerKey
            self.blockSize = blockSize
        }
    }

    public private(set) var tableSettings: TableSettings?

    public func setTableSettings(_ settings: TableSettings) {
        let table = rocksdb_block_based_options_create()!
        rocksdb_block_based_options_set_block_size(table, settings.blockSize)
        var cache: OpaquePointer? = nil
        if settings.blockCacheBytes > 0 {
            cache = sharddb_cache_create_lru(settings.blockCacheBytes)
            rocksdb_block_based_options_set_block_cache(table, cache)
        } else {
            rocksdb_block_based_options_set_no_block_cache(table, 1)
        }
        if settings.bloomBitsPerKey > 0 {
            rocksdb_block_based_options_set_filter_policy(table, rocksdb_filterpolicy_create_bloom(settings.bloomBitsPerKey))
        }
        rocksdb_options_set_block_based_table_factory(pointer, table)
        if let tableOptions { rocksdb_block_based_options_destroy(tableOptions) }
        if let blockCache { rocksdb_cache_destroy(blockCache) }
        tableOptions = table
        blockCache = cache
        tableSettings = settings
    }

    /// Sets any option by RocksDB's name, e.g. `"periodic_compaction_seconds=3600;max_subcompactions=2"`.
    ///
    /// - throws: ``RocksDBError`` (`invalidArgument`) for an unknown option or a malformed value;
    ///   the options are unchanged then.
    public func apply(optionsString: String) throws {
        let result = rocksdb_options_create()!
        do {
            try withStatus { rocksdb_get_options_from_string(pointer, optionsString, result, $0) }
        } catch {
            rocksdb_options_destroy(result)
            throw error
        }
        // The parsed copy keeps the table factory and compaction filter of `pointer`.
        rocksdb_options_destroy(pointer)
        pointer = result
    }

    /// Sets the compaction filter; the options keep it, and every filter set before
    /// it (families opened with those still use them), alive for as long as they live.
    public func setCompactionFilter(_ filter: CompactionFilter) {
        let box = CompactionFilterBox(filter)
        rocksdb_options_set_compaction_filter(pointer, box.pointer)
        compactionFilters.append(box)
    }
}

/// Block compression algorithms (RocksDB's `CompressionType`).
public enum Compression: Int32, Sendable, CaseIterable {
    case none = 0, snappy = 1, zlib = 2, bzip2 = 3, lz4 = 4, lz4hc = 5, xpress = 6, zstd = 7

    /// Parses db_bench's names (`none`, `snappy`, `zlib`, `bzip2`, `lz4`, `lz4hc`, `xpress`, `zstd`).
    public init?(name: String) {
        switch name.lowercased() {
        case "none", "no": self = .none
        case "snappy": self = .snappy
        case "zlib": self = .zlib
        case "bzip2": self = .bzip2
        case "lz4": self = .lz4
        case "lz4hc": self = .lz4hc
        case "xpress": self = .xpress
        case "zstd": self = .zstd
        default: return nil
        }
    }
}

/// Options for writes (`rocksdb_writeoptions_t`).
public final class WriteOptions: @unchecked Sendable {
    // Immutable after configuration; RocksDB only reads it, so one object may
    // serve concurrent writes.
    let pointer: OpaquePointer

    /// - parameters:
    ///   - sync: fsync the WAL before the write returns.
    ///   - disableWAL: skip the write-ahead log (the write is lost on a crash, and
    ///     changelog readers see a hole).
    public init(sync: Bool = false, disableWAL: Bool = false) {
        pointer = rocksdb_writeoptions_create()
        self.sync = sync
        self.disableWAL = disableWAL
        rocksdb_writeoptions_set_sync(pointer, sync ? 1 : 0)
        rocksdb_writeoptions_disable_WAL(pointer, disableWAL ? 1 : 0)
    }

    public let sync: Bool
    public let disableWAL: Bool

    deinit { rocksdb_writeoptions_destroy(pointer) }
}

/// Options for reads (`rocksdb_readoptions_t`). Owns copies of its iterate
/// bounds. An ``Iterator`` reads with its own copy of the options it was made
/// with (RocksDB's iterator keeps pointers into them), so changing these options
/// later changes only reads and iterators that start afterwards. Sharing one
/// `ReadOptions` between threads is safe for reads; changing it while another
/// thread reads with it is not.
public final class ReadOptions: @unchecked Sendable {
    let pointer: OpaquePointer
    private var lowerBound: UnsafeMutableRawBufferPointer?
    private var upperBound: UnsafeMutableRawBufferPointer?
    // The snapshot must outlive reads made with these options.
    public private(set) var snapshot: Snapshot?
    // Kept to make copies: the C API has no getters for these.
    private let fillCache: Bool
    private let verifyChecksums: Bool
    private var readaheadSize = 0
    private var tailing = false

    /// - parameter verifyChecksums: check each block read from a table file against its
    ///   checksum (RocksDB's default); off, a damaged block is returned as it is.
    public init(fillCache: Bool = true, verifyChecksums: Bool = true) {
        pointer = rocksdb_readoptions_create()
        self.fillCache = fillCache
        self.verifyChecksums = verifyChecksums
        rocksdb_readoptions_set_fill_cache(pointer, fillCache ? 1 : 0)
        rocksdb_readoptions_set_verify_checksums(pointer, verifyChecksums ? 1 : 0)
    }

    /// A copy with the same settings, bounds (copied again) and snapshot, for an
    /// iterator: later changes to these options must not reach it.
    ///
    /// - throws: ``RocksDBError`` `.closed` when the snapshot was released.
    func copy() throws -> ReadOptions {
        let copy = ReadOptions(fillCache: fillCache, verifyChecksums: verifyChecksums)
        copy.setBounds(lower: lowerBound.map { Array($0) }, upper: upperBound.map { Array($0) })
        if readaheadSize != 0 { copy.setReadaheadSize(readaheadSize) }
        if tailing { copy.setTailing(true) }
        try copy.setSnapshot(snapshot)
        return copy
    }

    deinit {
        rocksdb_readoptions_destroy(pointer)
        lowerBound?.deallocate()
        upperBound?.deallocate()
    }

    /// Reads see the database as of this snapshot.
    public func setSnapshot(_ snapshot: Snapshot?) throws {
        if let snapshot {
            try snapshot.withPointer { rocksdb_readoptions_set_snapshot(pointer, $0) }
        } else {
            rocksdb_readoptions_set_snapshot(pointer, nil)
        }
        self.snapshot = snapshot
    }

    /// Throws `.closed` when the snapshot was released (or its database closed):
    /// RocksDB would read through a freed pointer; `.invalidArgument` when it is
    /// another database's (its sequence number means nothing here, and its own
    /// database's lock, not this one, keeps it alive). Call under `core`'s shared lock.
    @inline(__always)
    func checkSnapshot(of core: DatabaseCore) throws {
        guard let snapshot else { return }
        if snapshot.database.core !== core {
            throw RocksDBError(kind: .invalidArgument, message: "Invalid argument: the read options' snapshot is another database's")
        }
        if snapshot.slot.pointer == nil { throw RocksDBError.closed("snapshot") }
    }

    /// Iterators stop before keys below `lower` (inclusive) or at/after `upper` (exclusive).
    public func setBounds(lower: [UInt8]?, upper: [UInt8]?) {
        lowerBound?.deallocate(); lowerBound = nil
        upperBound?.deallocate(); upperBound = nil
        if let lower {
            let copy = Self.copy(lower)
            lowerBound = copy
            rocksdb_readoptions_set_iterate_lower_bound(pointer, copy.baseAddress?.assumingMemoryBound(to: CChar.self), copy.count)
        } else {
            rocksdb_readoptions_set_iterate_lower_bound(pointer, nil, 0)
        }
        if let upper {
            let copy = Self.copy(upper)
            upperBound = copy
            rocksdb_readoptions_set_iterate_upper_bound(pointer, copy.baseAddress?.assumingMemoryBound(to: CChar.self), copy.count)
        } else {
            rocksdb_readoptions_set_iterate_upper_bound(pointer, nil, 0)
        }
    }

    /// Read ahead this many bytes on iterator scans (0: RocksDB's default).
    public func setReadaheadSize(_ bytes: Int) {
        readaheadSize = bytes
        rocksdb_readoptions_set_readahead_size(pointer, bytes)
    }

    /// Skip the memtable and block cache fill for bulk scans.
    public func setTailing(_ tailing: Bool) {
        self.tailing = tailing
        rocksdb_readoptions_set_tailing(pointer, tailing ? 1 : 0)
    }

    private static func copy(_ bytes: some ContiguousBytes) -> UnsafeMutableRawBufferPointer {
        bytes.withUnsafeBytes { source in
            let copy = UnsafeMutableRawBufferPointer.allocate(byteCount: max(source.count, 1), alignment: 1)
            if source.count > 0 { copy.copyMemory(from: source) }
            return UnsafeMutableRawBufferPointer(rebasing: copy[0..<source.count])
        }
    }
}
