import Foundation
import Logging
import RocksDB
import Synchronization

/// A ShardDB instance: one RocksDB database whose state is split into shards,
/// one column family per shard (`shard-<id>`), with a metadata column family
/// (`sharddb-meta`) holding the format version, partitioning and shard map.
///
/// Thread-safe: RocksDB serves concurrent reads and writes, and the shard map
/// is an immutable ``RoutingTable`` swapped under a mutex.
///
/// ```swift
/// let engine = try ShardEngine.create(at: "/var/lib/app/state", shards: 4)
/// try engine.put("user:42", "alice", ttl: .seconds(3600))
/// let name = try engine.get("user:42").map { String(decoding: $0, as: UTF8.self) }
/// engine.close()
/// ```
public final class ShardEngine: @unchecked Sendable {
    /// Largest key accepted, in bytes.
    public static let maxKeySize = 16 * 1024
    /// Largest value accepted, in bytes.
    public static let maxValueSize = 32 * 1024 * 1024
    /// Name of the metadata column family.
    public static let metadataFamilyName = "sharddb-meta"

    /// The data directory.
    public let path: String
    /// This instance's id, fixed at creation.
    public let instanceID: String
    public let partitioning: Partitioning
    public let options: ShardEngineOptions

    let database: Database
    let metadata: ColumnFamily
    let clock: any ShardClock
    let logger: Logger
    let writeOptions: WriteOptions
    /// ``ShardEngineOptions/stampWriteTime``, read on every put.
    let stampWriteTime: Bool
    /// The routing table, read on every operation without a lock (see ``PublishedTable``).
    private let published: PublishedTable
    /// Serializes replacements of the routing table.
    private let tableUpdates = Mutex<Void>(())
    /// The published table's generation, stored with every change of it.
    private let generationMirror: Atomic<UInt64>
    private let closed = Atomic<Bool>(false)
    /// Held shared by every write from routing to RocksDB's acknowledgement, and
    /// exclusively for an instant when a migration fences a range: once the
    /// exclusive hold is granted, no write to the range is in flight, so the
    /// latest sequence number then is final for the range.
    let writeGate = ReadWriteLock(preferWriters: true)
    /// Snapshots, changelog readers and fences of migrations in progress.
    let migrationRuntime = MigrationRuntime()
    /// Keeps bookkeeping records unread between their write and the end of its sync.
    let bookkeepingGate = BookkeepingGate()
    /// Every write at or below this sequence is synced to the log (``syncWAL(through:)``).
    let walSyncedThrough = Atomic<UInt64>(0)
    /// Serializes changes to the shard map (read the table, pick ids, write shard
    /// records, swap the table): an instance can commit an incoming migration while
    /// it commits an outgoing split, and both add a shard record. Taken before the
    /// write gate and `tableUpdates`, never while holding them.
    let shardMapLock = Mutex<Void>(())
    /// Every shard column family's expiry filter, including staging shards not yet in the table.
    let shardFilters: Mutex<[Int: ExpiryFilter]>
    /// Refuses writes when the disk is nearly full, and after RocksDB failed a write
    /// with an I/O error (docs/CRASH_TESTING.md, "Disk full").
    let diskSpace: DiskSpaceGuard

    private init(path: String, instanceID: String, partitioning: Partitioning, options: ShardEngineOptions,
                 database: Database, metadata: ColumnFamily, table: RoutingTable, filters: [Int: ExpiryFilter]) {
        self.shardFilters = Mutex(filters)
        self.path = path
        self.instanceID = instanceID
        self.partitioning = partitioning
        self.options = options
        self.database = database
        self.metadata = metadata
        self.clock = options.clock
        self.logger = options.logger
        self.writeOptions = WriteOptions(sync: options.syncWrites, disableWAL: options.disableWAL)
        self.stampWriteTime = options.stampWriteTime
        self.published = PublishedTable(table)
        self.generationMirror = Atomic(table.generation)
        self.diskSpace = DiskSpaceGuard(path: path, minimumFreeBytes: options.minimumFreeDiskBytes)
    }

    deinit { close() }

    // MARK: Create and open

    /// Creates a new instance in `path` (created if missing).
    ///
    /// - parameters:
    ///   - shards: number of shards; 0 makes an empty instance (a migration target).
    ///     Under range partitioning it must be 0 or `splitPoints.count + 1`.
    ///   - partitioning: fixed for the life of the instance.
    ///   - defaultTTLSeconds: every shard's default TTL; nil for none.
    /// - throws: ``ShardDBError``: `.alreadyInitialized` when `path` holds an instance,
    ///   `.notAnInstance` when it holds another RocksDB database, `.invalidArgument`,
    ///   `.notWritable`.
    public static func create(at path: String, shards: Int, partitioning: Partitioning = .hash(keyGroups: Partitioning.defaultKeyGroups),
                              defaultTTLSeconds: Int64? = nil, options: ShardEngineOptions = ShardEngineOptions()) throws -> ShardEngine {
        try partitioning.validate()
        let descriptors = try initialShards(count: shards, partitioning: partitioning, defaultTTLSeconds: defaultTTLSeconds)
        let files = FileManager.default
        var isDirectory: ObjCBool = false
        if files.fileExists(atPath: path, isDirectory: &isDirectory) {
            guard isDirectory.boolValue else { throw ShardDBError(.notWritable, "\(path) exists and is not a directory") }
            if files.fileExists(atPath: path + "/CURRENT") {
                let families = (try? Database.listColumnFamilies(at: path)) ?? []
                if families.contains(metadataFamilyName) {
                    throw ShardDBError(.alreadyInitialized, "\(path) already holds a ShardDB instance")
                }
                throw ShardDBError(.notAnInstance, "\(path) holds a RocksDB database that is not a ShardDB instance; refusing to initialize over it")
            }
            // Without CURRENT, RocksDB would start a new database here and delete the
            // table files and logs it does not know as obsolete.
            let entries: [String]
            do { entries = try files.contentsOfDirectory(atPath: path) } catch {
                throw ShardDBError(.notWritable, "cannot read \(path): \(ShardDBError.fileSystemReason(error))")
            }
            if entries.contains(CheckpointStore.manifestName) { throw checkpointStoreIsNotAnInstance(path) }
            if let found = rocksDBFiles(in: entries) {
                throw ShardDBError(.notAnInstance,
                    "\(path) holds RocksDB files (\(found)) but no CURRENT file: a damaged database? refusing to initialize over it")
            }
        } else {
            do { try files.createDirectory(atPath: path, withIntermediateDirectories: true) } catch {
                throw ShardDBError(.notWritable, "cannot create \(path): \(ShardDBError.fileSystemReason(error))")
            }
        }
        guard files.isWritableFile(atPath: path) else { throw ShardDBError(.notWritable, "\(path) is not writable") }

        let base = try baseOptions(options)
        base.createIfMissing = true
        base.createMissingColumnFamilies = true
        var shardFamilies: [(name: String, options: Options?)] = []
        var filters: [Int: ExpiryFilter] = [:]
        for shard in descriptors {
            let (familyOptions, filter) = shardOptions(base: base, shard: shard.id, options: options)
            shardFamilies.append((shard.columnFamilyName, familyOptions))
            filters[shard.id] = filter
        }
        try DiskSpaceGuard.checkBeforeOpening(path, minimumFreeBytes: options.minimumFreeDiskBytes)
        // The shards' families in one call after the open: created by the open, one by
        // one, each would rewrite the OPTIONS file of all before it (quadratic time).
        let database = try storage(path) {
            try Database.open(at: path, options: base, columnFamilies: [metadataFamilyName: base], threadPerfLevel: options.threadPerfLevel)
        }
        do {
            _ = try storage(path) { try database.createColumnFamilies(shardFamilies) }
            let instance = InstanceRecord(id: randomInstanceID(), createdAtMilliseconds: options.clock.nowMilliseconds())
            let batch = WriteBatch()
            let meta = try database.columnFamily(named: metadataFamilyName)
            try batch.put(Array(MetadataKey.format.utf8), MetadataCoding.encode(FormatRecord(version: FormatRecord.current)), in: meta)
            try batch.put(Array(MetadataKey.instance.utf8), MetadataCoding.encode(instance), in: meta)
            try batch.put(Array(MetadataKey.partitioning.utf8), MetadataCoding.encode(PartitioningRecord(partitioning)), in: meta)
            for shard in descriptors {
                try batch.put(Array(MetadataKey.shard(shard.id).utf8), MetadataCoding.encode(ShardRecord(shard)), in: meta)
            }
            try database.write(batch, options: WriteOptions(sync: true))
            let shardObjects = try descriptors.map {
                Shard(descriptor: $0, family: try database.columnFamily(named: $0.columnFamilyName), expiryFilter: filters[$0.id])
            }
            options.logger.debug("created instance", metadata: ["path": "\(path)", "shards": "\(shards)", "partitioning": "\(partitioning)"])
            return ShardEngine(path: path, instanceID: instance.id, partitioning: partitioning, options: options,
                               database: database, metadata: meta,
                               table: RoutingTable(partitioning: partitioning, shards: shardObjects), filters: filters)
        } catch {
            database.close()
            throw ShardDBError.wrap(error, path: path)
        }
    }

    /// The first few names in `entries` that RocksDB writes into a database
    /// directory (MANIFEST, table files, logs, OPTIONS, IDENTITY, LOCK), or nil.
    static func rocksDBFiles(in entries: [String]) -> String? {
        let found = entries.filter { name in
            name.hasPrefix("MANIFEST-") || name.hasPrefix("OPTIONS-") || name == "IDENTITY" || name == "LOCK"
                || name.hasSuffix(".sst") || name.hasSuffix(".log") || name.hasSuffix(".blob")
        }.sorted()
        guard !found.isEmpty else { return nil }
        return found.prefix(3).joined(separator: ", ") + (found.count > 3 ? ", … (\(found.count) in all)" : "")
    }

    /// Opens the instance in `path`.
    ///
    /// - parameters:
    ///   - expectedPartitioning: when given, the stored partitioning must equal it.
    /// - throws: ``ShardDBError``: `.instanceNotFound`, `.notAnInstance` (an empty directory
    ///   or a plain RocksDB database), `.alreadyOpen`, `.corruptedMetadata`,
    ///   `.unsupportedFormat`, `.partitioningConflict`, `.notWritable`.
    private static func checkpointStoreIsNotAnInstance(_ path: String) -> ShardDBError {
        ShardDBError(.notAnInstance, "\(path) is a checkpoint store, not an instance (shardctl checkpoint list|verify|restore --store \(path))")
    }

    public static func open(at path: String, expectedPartitioning: Partitioning? = nil,
                            options: ShardEngineOptions = ShardEngineOptions()) throws -> ShardEngine {
        let files = FileManager.default
        var isDirectory: ObjCBool = false
        guard files.fileExists(atPath: path, isDirectory: &isDirectory) else {
            throw ShardDBError(.instanceNotFound, "no ShardDB instance at \(path): the directory does not exist")
        }
        guard isDirectory.boolValue else { throw ShardDBError(.notAnInstance, "\(path) is not a directory") }
        let entries: [String]
        do { entries = try files.contentsOfDirectory(atPath: path) } catch {
            throw ShardDBError(.notWritable, "cannot read \(path): \(ShardDBError.fileSystemReason(error))")
        }
        guard entries.contains("CURRENT") else {
            // A checkpoint store has a LOCK file too: not a damaged database.
            if entries.contains(CheckpointStore.manifestName) { throw checkpointStoreIsNotAnInstance(path) }
            if let found = rocksDBFiles(in: entries) {
                throw ShardDBError(.corruptedMetadata,
                    "\(path) holds RocksDB files (\(found)) but no CURRENT file: the database is damaged; do not initialize over it (restore a checkpoint, or recreate CURRENT naming its MANIFEST)")
            }
            throw ShardDBError(.notAnInstance, "\(path) holds no ShardDB instance (run 'shardctl init' first)")
        }
        let families = try storage(path) { try Database.listColumnFamilies(at: path) }
        guard families.contains(metadataFamilyName) else {
            // A truncated MANIFEST also loses the column families created after its cut: name it.
            let current = (try? String(contentsOfFile: path + "/CURRENT", encoding: .utf8))?
                .trimmingCharacters(in: .whitespacesAndNewlines) ?? "MANIFEST"
            throw ShardDBError(.notAnInstance,
                "\(path) is a plain RocksDB database, not a ShardDB instance (\(current) lists no '\(metadataFamilyName)' column family; if it should, \(current) is damaged)")
        }
        let base = try baseOptions(options)
        var familyOptions: [String: Options] = [:]
        var filters: [Int: ExpiryFilter] = [:]
        for name in families {
            if let id = shardID(fromFamily: name) {
                let (o, filter) = shardOptions(base: base, shard: id, options: options)
                familyOptions[name] = o
                filters[id] = filter
            } else {
                familyOptions[name] = base
            }
        }
        try DiskSpaceGuard.checkBeforeOpening(path, minimumFreeBytes: options.minimumFreeDiskBytes)
        let database: Database
        do {
            database = try Database.open(at: path, options: base, columnFamilies: familyOptions,
                                         threadPerfLevel: options.threadPerfLevel)
        } catch let error as RocksDBError {
            throw WALDamage.explain(error, path: path)
        }
        do {
            let meta = try database.columnFamily(named: metadataFamilyName)
            let loaded = try loadMetadata(database: database, meta: meta, path: path)
            if let expectedPartitioning, expectedPartitioning != loaded.partitioning {
                throw ShardDBError(.partitioningConflict,
                    "\(path) is partitioned as \(loaded.partitioning), not \(expectedPartitioning)")
            }
            let shards = try loaded.shards.map { descriptor -> Shard in
                let family = descriptor.state == .active ? try database.columnFamily(named: descriptor.columnFamilyName) : nil
                if let filter = filters[descriptor.id] {
                    let stats = try database.get(Array(MetadataKey.stats(descriptor.id).utf8), in: meta)
                    if let stats {
                        let record = try decodeMeta(ShardStatsRecord.self, stats, key: MetadataKey.stats(descriptor.id), path: path)
                        // Added, not stored: compactions the open started may have dropped
                        // entries already (counted from zero until now).
                        filter.dropped.wrappingAdd(record.expiredDropped, ordering: .relaxed)
                        filter.persisted.store(record.expiredDropped, ordering: .relaxed)
                    }
                }
                return Shard(descriptor: descriptor, family: family, expiryFilter: filters[descriptor.id])
            }
            options.logger.debug("opened instance", metadata: ["path": "\(path)", "shards": "\(shards.count)"])
            let engine = ShardEngine(path: path, instanceID: loaded.instance.id, partitioning: loaded.partitioning, options: options,
                                     database: database, metadata: meta,
                                     table: RoutingTable(partitioning: loaded.partitioning, shards: shards), filters: filters)
            try engine.recoverMigrationsAtOpen()
            return engine
        } catch {
            database.close()
            throw ShardDBError.wrap(error, path: path)
        }
    }

    /// Persists metrics and closes the database. Idempotent; later calls throw `.closed`.
    public func close() {
        guard !closed.exchange(true, ordering: .acquiringAndReleasing) else { return }
        do {
            // Only what changed: an open that only read writes nothing (the latest sequence
            // number stays where it was, which a restored checkpoint's users rely on).
            let batch = WriteBatch()
            for shard in table.shards {
                guard let filter = shard.expiryFilter else { continue }
                let dropped = filter.dropped.load(ordering: .relaxed)
                guard dropped != filter.persisted.load(ordering: .relaxed) else { continue }
                let record = ShardStatsRecord(expiredDropped: dropped)
                try batch.put(Array(MetadataKey.stats(shard.id).utf8), MetadataCoding.encode(record), in: metadata)
            }
            // (Not after a failed write: the next one to the same log would abort the process.)
            if batch.count > 0 { try bookkeepingWrite { try database.write(batch) } }
        } catch {
            logger.warning("could not save shard metrics at close", metadata: ["error": "\(error)"])
        }
        database.close()
        logger.debug("closed instance", metadata: ["path": "\(path)"])
    }

    /// False after ``close()``.
    public var isOpen: Bool { !closed.load(ordering: .acquiring) }

    // MARK: Shard map

    /// The current routing table (an immutable snapshot of the shard map).
    var table: RoutingTable { published.read { $0 } }

    /// Replaces the routing table with `change(current)`.
    @discardableResult
    func updateTable(_ change: (RoutingTable) throws -> RoutingTable) rethrows -> RoutingTable {
        try tableUpdates.withLock { _ in
            let table = try change(self.table)
            published.publish(table)
            generationMirror.store(table.generation, ordering: .releasing)
            return table
        }
    }

    /// Runs a write to the shard owning `key` under the write gate, waiting out
    /// (then retrying after) a migration fence that holds the key.
    @inline(__always)
    func routedWrite<R>(_ key: UnsafeRawBufferPointer, _ body: (Shard, Int?) throws -> R) throws -> R {
        while true {
            do {
                return try writeGate.withReadLock {
                    // The write runs with the table counted in, so the shard needs no reference count.
                    try published.read { table in
                        let (shard, keyGroup) = try table.locateUnretained(key)
                        return try shard._withUnsafeGuaranteedRef { try body($0, keyGroup) }
                    }
                }
            } catch let hit as FenceHit {
                try waitOut(hit.fence)
            }
        }
    }

    /// Runs a read of the shard owning `key`, waiting out a fence that holds it.
    /// A read that finds its shard's column family dropped (a migration's cleanup
    /// between the lookup and the read) looks again: the table then names the new
    /// owner (`.keyNotOwned`), instead of the read failing as if the engine were closed.
    /// So does one whose result `isMiss` says found nothing, when the shard map changed
    /// since the lookup: a partial move's cleanup may have deleted the key here after
    /// it moved, and the caller must learn its owner, not that it does not exist.
    @inline(__always)
    func routedRead<R>(_ key: UnsafeRawBufferPointer, isMiss: (R) -> Bool = { _ in false },
                       _ body: (Shard, Int?) throws -> R) throws -> R {
        while true {
            var generation: UInt64 = 0
            do {
                // The read runs with the table counted in, so the shard needs no reference
                // count; a fence is waited out, and a lookup repeated, after counting out.
                let result: R? = try published.read { table in
                    let (shard, keyGroup) = try table.locateUnretained(key)
                    generation = table.generation
                    let result = try shard._withUnsafeGuaranteedRef { try body($0, keyGroup) }
                    return isMiss(result) && tableGeneration != generation ? nil : result
                }
                if let result { return result }
            } catch let hit as FenceHit {
                try waitOut(hit.fence)
            } catch let error as ShardDBError where error.storage?.kind == .columnFamilyDropped {
                guard tableGeneration != generation else { throw error }
            }
        }
    }

    /// The routing table's generation, in one atomic load (a read that missed asks
    /// it, after its lookup: it must not count in to the table a second time).
    var tableGeneration: UInt64 { generationMirror.load(ordering: .acquiring) }

    /// The shard owning `key` and its key group: unlike `table.locate(key)` this
    /// does not take a reference to the table (an atomic write, per operation, to
    /// a line every thread shares).
    @inline(__always)
    func locate(_ key: UnsafeRawBufferPointer) throws -> (Shard, Int?) {
        try published.read { table throws -> (Shard, Int?) in try table.locate(key) }
    }

    /// Waits until a fence is resolved; afterwards the routing table tells the new owner.
    func waitOut(_ fence: Fence) throws {
        guard fence.wait(timeout: options.fenceWaitSeconds) != nil else {
            throw ShardDBError(.migrationInProgress,
                "range \(fence.range) is being migrated (migration \(fence.migrationID)); retry shortly (a migration whose coordinator stopped after its fence leaves it so until 'shardctl migrate --resolve' settles it)")
        }
    }

    /// The shard map: every shard record of this instance, by id.
    public var shardDescriptors: [ShardDescriptor] { table.shards.map(\.descriptor) }

    func activeShard(_ id: Int) throws -> Shard {
        guard let shard = table.shard(id: id), shard.isActive, shard.family != nil else {
            if case .moved(let to)? = table.shard(id: id)?.descriptor.state {
                throw ShardDBError(.shardNotFound, "shard \(id) was moved to \(to)", owner: to)
            }
            throw ShardDBError(.shardNotFound, "shard \(id) does not exist on this instance")
        }
        return shard
    }

    // MARK: Internal

    static func initialShards(count: Int, partitioning: Partitioning, defaultTTLSeconds: Int64?) throws -> [ShardDescriptor] {
        guard count >= 0 else { throw ShardDBError(.invalidArgument, "shard count must not be negative") }
        if let ttl = defaultTTLSeconds, ttl <= 0 || ttl > TTL.maxSeconds {
            throw ShardDBError(.invalidTTL, "default TTL must be between 1 and \(TTL.maxSeconds) seconds (10,000 years), got \(ttl)")
        }
        if count == 0 { return [] }
        switch partitioning {
        case .hash(let k):
            guard count <= k else { throw ShardDBError(.invalidArgument, "cannot split \(k) key groups into \(count) shards") }
            return (0..<count).map { i in
                ShardDescriptor(id: i, range: .keyGroups(KeyGroupRange(i * k / count, (i + 1) * k / count)), defaultTTLSeconds: defaultTTLSeconds)
            }
        case .range(let splits):
            guard count == splits.count + 1 else {
                throw ShardDBError(.invalidArgument, "\(splits.count) split points make \(splits.count + 1) shards, not \(count)")
            }
            let bounds: [[UInt8]] = [[]] + splits
            return bounds.indices.map { i in
                ShardDescriptor(id: i, range: .keys(lower: bounds[i], upper: i + 1 < bounds.count ? bounds[i + 1] : nil),
                                defaultTTLSeconds: defaultTTLSeconds)
            }
        }
    }

    static func baseOptions(_ options: ShardEngineOptions) throws -> Options {
        let base = Options()
        base.setWriteBufferSize(options.writeBufferSize)
        base.setMaxBackgroundJobs(options.backgroundJobs)
        base.setCompression(options.compression)
        base.setTableSettings(options.tableSettings)
        // Keep archived WAL files so changelog readers can tail from a snapshot's sequence.
        base.setWALTTLSeconds(options.walRetentionSeconds)
        // RocksDB's default (point in time) drops everything after a damaged WAL record
        // without an error; strict opening fails instead (docs/CRASH_TESTING.md).
        base.setWALRecoveryMode(options.walRecovery == .strict ? .tolerateCorruptedTailRecords : .pointInTime)
        // Every open rotates RocksDB's info LOG; RocksDB keeps 1000 old ones, which a
        // tool that opens the instance per command (shardctl) piles up. (Overridable below.)
        base.setKeepLogFileNum(16)
        if let extra = options.rocksDBOptions {
            do { try base.apply(optionsString: extra) } catch {
                throw ShardDBError(.invalidArgument, "invalid RocksDB options '\(extra)': \(error)")
            }
            try checkSupported(base, extra)
        }
        // Without the WAL, what survives a crash is what was flushed: shards flushed
        // one by one would keep part of a batch across shards. Flushed together
        // (RocksDB commits them as one), the kept state is a prefix of the writes.
        // RocksDB refuses that beside pipelined writes, which the caller may ask for
        // (shardctl bench does, as db_bench): the shards then flush one by one.
        if options.disableWAL && !base.enablePipelinedWrite { base.atomicFlush = true }
        return base
    }

    /// Refuses RocksDB settings the engine cannot work with.
    private static func checkSupported(_ options: Options, _ text: String) throws {
        // Migration records are synced outside the write queue (SyncWAL: DurableBookkeeping.swift),
        // which RocksDB refuses for a log written through mmap.
        if options.allowMmapWrites {
            throw ShardDBError(.invalidArgument, "RocksDB options '\(text)': allow_mmap_writes is not supported "
                + "(ShardDB syncs its write-ahead log while writes go on, which mmap writes do not allow)")
        }
        // Migrations copy from a snapshot and checkpoints list from one; RocksDB takes
        // none with in-place updates.
        if options.inplaceUpdateSupport {
            throw ShardDBError(.invalidArgument, "RocksDB options '\(text)': inplace_update_support is not supported "
                + "(migrations and checkpoints read from snapshots, which RocksDB does not take with in-place updates)")
        }
    }

    /// Options for one shard's column family: the base options plus that shard's expiry filter
    /// and periodic compaction.
    static func shardOptions(base: Options, shard: Int, options: ShardEngineOptions) -> (Options, ExpiryFilter) {
        let familyOptions = Options(copying: base)
        if options.periodicCompactionSeconds > 0 {
            try? familyOptions.apply(optionsString: "periodic_compaction_seconds=\(options.periodicCompactionSeconds)")
        }
        let filter = ExpiryFilter(shard: shard, clock: options.clock)
        if options.expiryCompactionFilter { familyOptions.setCompactionFilter(filter) }
        return (familyOptions, filter)
    }

    /// Checks an options string before an engine is opened with it.
    public static func validateRocksDBOptions(_ text: String) throws {
        let options = Options()
        do { try options.apply(optionsString: text) } catch {
            throw ShardDBError(.invalidArgument, "invalid RocksDB options '\(text)': \(error)")
        }
        try checkSupported(options, text)
    }

    static func shardID(fromFamily name: String) -> Int? {
        guard name.hasPrefix("shard-") else { return nil }
        return Int(name.dropFirst(6))
    }

    static func randomInstanceID() -> String {
        var generator = SystemRandomNumberGenerator()
        return ByteText.hex((0..<8).map { _ in UInt8.random(in: 0...255, using: &generator) })
    }

    struct LoadedMetadata {
        var instance: InstanceRecord
        var partitioning: Partitioning
        var shards: [ShardDescriptor]
    }

    static func decodeMeta<T: Decodable>(_ type: T.Type, _ bytes: [UInt8], key: String, path: String) throws -> T {
        do { return try MetadataCoding.decode(type, bytes, key: key) } catch let error as MetadataError {
            throw ShardDBError(.corruptedMetadata, "\(path): corrupted metadata: \(error.message)")
        }
    }

    static func loadMetadata(database: Database, meta: ColumnFamily, path: String) throws -> LoadedMetadata {
        func record<T: Decodable>(_ key: String, _ type: T.Type) throws -> T {
            guard let bytes = try database.get(Array(key.utf8), in: meta) else {
                throw ShardDBError(.corruptedMetadata, "\(path): corrupted metadata: record '\(key)' is missing")
            }
            return try decodeMeta(type, bytes, key: key, path: path)
        }
        // The format record is written last-but-atomically with the rest by create: without
        // any of them, an init was interrupted (or the metadata family was emptied).
        if try database.get(Array(MetadataKey.format.utf8), in: meta) == nil,
           try database.get(Array(MetadataKey.instance.utf8), in: meta) == nil {
            throw ShardDBError(.corruptedMetadata,
                "\(path): its metadata has no records: an init that did not finish leaves this (then nothing was ever stored: remove the directory and init again), as does a damaged metadata family")
        }
        let format = try record(MetadataKey.format, FormatRecord.self)
        guard format.version == FormatRecord.current else {
            throw ShardDBError(.unsupportedFormat, "\(path) has format version \(format.version); this ShardDB reads version \(FormatRecord.current)")
        }
        let instance = try record(MetadataKey.instance, InstanceRecord.self)
        let partitioning: Partitioning
        do { partitioning = try record(MetadataKey.partitioning, PartitioningRecord.self).decode() } catch let error as MetadataError {
            throw ShardDBError(.corruptedMetadata, "\(path): corrupted metadata: \(error.message)")
        }
        // Checked before anything is sized by it (a key-group count of 10^11 would be a table of that many owners).
        do { try partitioning.validate() } catch let error as ShardDBError {
            throw ShardDBError(.corruptedMetadata, "\(path): corrupted metadata: partitioning: \(error.message)")
        }
        var shards: [ShardDescriptor] = []
        let iterator = try database.makeIterator(in: meta, lowerBound: Array(MetadataKey.shardPrefix.utf8),
                                                 upperBound: KeyEncoding.prefixSuccessor(Array(MetadataKey.shardPrefix.utf8)))
        iterator.seekToFirst()
        while iterator.isValid {
            let key = String(decoding: iterator.key, as: UTF8.self)
            let shardRecord = try decodeMeta(ShardRecord.self, iterator.value, key: key, path: path)
            do {
                let shard = try shardRecord.decode()
                // The key names the record: a record under another id's key would be a second record of that shard.
                guard key == MetadataKey.shard(shard.id) else { throw MetadataError("record \(key) is of shard \(shard.id)") }
                shards.append(shard)
            } catch let error as MetadataError {
                throw ShardDBError(.corruptedMetadata, "\(path): corrupted metadata: \(error.message)")
            }
            iterator.next()
        }
        try iterator.checkStatus()
        for shard in shards {
            let fits: Bool
            switch (partitioning, shard.range) {
            case let (.hash(k), .keyGroups(r)): fits = r.upperBound <= k
            case (.range, .keys): fits = true
            default: fits = false
            }
            guard fits else {
                throw ShardDBError(.corruptedMetadata, "\(path): corrupted metadata: shard \(shard.id) range \(shard.range) does not fit \(partitioning)")
            }
        }
        return LoadedMetadata(instance: instance, partitioning: partitioning, shards: shards)
    }
}
