import Foundation
import RocksDB

extension ShardEngine {
    /// Takes an incremental checkpoint of the whole instance (every shard and the
    /// shard map) into the checkpoint store at `storePath`, while writes continue.
    ///
    /// Only table files the store does not hold yet are copied. The checkpoint is
    /// one prefix of the instance's write sequence for all shards (RocksDB's
    /// BackupEngine copies the live table files, the MANIFEST and the live WAL up to
    /// one point; see docs/CHECKPOINTS.md). Writers are not paused.
    ///
    /// ```swift
    /// let info = try engine.checkpoint(to: "/backups/state", metadata: ["reason": "deploy 42"])
    /// print(info.id, info.bytesCopied ?? 0, info.totalBytes)
    /// ```
    ///
    /// - parameters:
    ///   - storePath: the store directory; created (with a manifest naming this
    ///     instance) when missing or empty.
    ///   - metadata: recorded with the checkpoint and returned by list.
    ///   - allowForeignInstance: accept a store created for another instance.
    ///   - progress: called with bytes copied so far, from a copying thread.
    /// - returns: the new checkpoint, with the bytes it copied.
    /// - throws: ``ShardDBError``: `.notWritable`, `.foreignCheckpointStore`,
    ///   `.checkpointStoreNotFound` (a non-empty directory that is not a store),
    ///   `.checkpointStoreBusy`, `.checkpointCorrupted` (the store holds damaged
    ///   checkpoints, whose remaining files RocksDB would delete: nothing is changed;
    ///   see ``CheckpointStore/purge(keep:dropDamaged:)``), `.closed`, `.storage`,
    ///   `.injectedFailure`.
    @discardableResult
    public func checkpoint(to storePath: String, metadata: [String: String] = [:], allowForeignInstance: Bool = false,
                           progress: ((CheckpointProgress) -> Void)? = nil) throws -> CheckpointInfo {
        guard isOpen else { throw ShardDBError(.closed, "the engine at \(path) is closed") }
        // The record's size checked before the store is touched (again in create, with the real record).
        try CheckpointStore.checkRecordSize(of: self, metadata: metadata)
        let store = try CheckpointStore.openForCheckpoint(at: storePath, instanceID: instanceID,
                                                          allowForeignInstance: allowForeignInstance)
        defer { store.close() }
        return try store.create(of: self, metadata: metadata, progress: progress)
    }
}

extension CheckpointStore {
    /// The steps of a checkpoint; each failure point names the step that follows it.
    func create(of engine: ShardEngine, metadata: [String: String], progress: ((CheckpointProgress) -> Void)?) throws -> CheckpointInfo {
        try FailurePoints.hit("checkpoint.begin")
        try refuseIfDamaged()
        // Leftovers of an interrupted create or purge: partial files (RocksDB's
        // garbage collection) and statistics of checkpoints that never committed.
        try storage(path) { try backups.garbageCollect() }
        try removeOrphanStats()
        try FailurePoints.hit("checkpoint.after-cleanup")

        let existing = try storage(path) { try backups.backups() }
        var stored = Set<String>()
        for backup in existing {
            for file in try storage(path, { try backups.files(ofBackup: backup.id) }) { stored.insert(file.relativePath) }
        }
        let table = engine.table
        let liveBytes = try engine.liveBytes(table)
        let encoded = try Self.checkedRecord(of: engine, table: table, metadata: metadata,
                                             sequenceNumber: try storage(engine.path) { try engine.database.latestSequenceNumber() })
        try FailurePoints.hit("checkpoint.before-backup")

        let started = Date()
        let id = try backup(of: engine, record: encoded, liveBytes: liveBytes, started: started, progress: progress)
        // From here the checkpoint is committed and listed.
        try FailurePoints.hit("checkpoint.after-backup")

        let files = try storage(path) { try backups.files(ofBackup: id) }
        let copied = files.filter { !stored.contains($0.relativePath) }.reduce(UInt64(0)) { $0 + $1.size }
        do {
            try DurableFile.write(MetadataCoding.encode(CheckpointStatsRecord(bytesCopied: copied)), to: statsPath(Int(id)))
        } catch {
            // The checkpoint is committed and restorable: its statistic is optional (list shows none).
            engine.logger.warning("checkpoint created, its copy statistic not saved", metadata: [
                "store": "\(path)", "id": "\(id)", "error": "\(error)"])
        }
        try FailurePoints.hit("checkpoint.after-stats")

        var info = try checkpoint(id: Int(id))
        info.bytesCopied = copied
        progress?(CheckpointProgress(bytesDone: copied, bytesTotal: info.totalBytes, elapsedSeconds: Date().timeIntervalSince(started)))
        engine.logger.debug("checkpoint created", metadata: [
            "store": "\(path)", "id": "\(id)", "bytesCopied": "\(copied)", "totalBytes": "\(info.totalBytes)"])
        return info
    }

    /// Creates the RocksDB backup carrying `record`.
    /// The largest record a checkpoint carries (RocksDB's limit on a backup's app metadata).
    static let maxRecordBytes = 1 << 20

    /// The encoded record of a checkpoint of `engine` now.
    ///
    /// - throws: `.invalidArgument` when it is over ``maxRecordBytes``: RocksDB's BackupEngine
    ///   keeps at most 1 MiB with a backup (and says only "App metadata too large").
    static func checkedRecord(of engine: ShardEngine, table: RoutingTable, metadata: [String: String],
                              sequenceNumber: UInt64) throws -> [UInt8] {
        let record = CheckpointRecord(
            format: CheckpointRecord.currentFormat, instanceID: engine.instanceID, sequenceNumber: sequenceNumber,
            createdAtMilliseconds: Int64(Date().timeIntervalSince1970 * 1000),
            partitioning: PartitioningRecord(engine.partitioning),
            shards: table.shards.map { ShardRecord($0.descriptor) }, metadata: metadata)
        let encoded = MetadataCoding.encode(record)
        guard encoded.count <= maxRecordBytes else {
            throw ShardDBError(.invalidArgument,
                "a checkpoint record of \(encoded.count) bytes (the shard map of \(table.shards.count) shards and \(metadata.count) metadata entries) is over the \(maxRecordBytes) bytes a checkpoint can carry; nothing was written. Use less --metadata (or shorter split points)")
        }
        return encoded
    }

    /// ``checkedRecord(of:table:metadata:sequenceNumber:)`` before anything is opened or written.
    static func checkRecordSize(of engine: ShardEngine, metadata: [String: String]) throws {
        _ = try checkedRecord(of: engine, table: engine.table, metadata: metadata, sequenceNumber: .max)
    }

    private func backup(of engine: ShardEngine, record: [UInt8], liveBytes: UInt64, started: Date,
                        progress: ((CheckpointProgress) -> Void)?) throws -> UInt32 {
        do {
            return try storage(engine.path) {
                try backups.createBackup(of: engine.database, flushBeforeBackup: true, appMetadata: record) { copied in
                    // Only `kill` acts here: the callback runs inside RocksDB, which must not unwind.
                    try? FailurePoints.hit("checkpoint.copying")
                    progress?(CheckpointProgress(bytesDone: min(copied, liveBytes), bytesTotal: liveBytes,
                                                 elapsedSeconds: Date().timeIntervalSince(started)))
                }
            }
        } catch let error as ShardDBError where error.storage?.message.contains("Size mismatch for existing backup file") == true {
            // A shared file the store already holds is shorter or longer than recorded:
            // the store is damaged (RocksDB's load check sees only missing files).
            throw ShardDBError(.checkpointCorrupted,
                "checkpoint store \(path) holds a damaged file (\(error.storage!.message)); nothing was added. Run verify, then purge --drop-damaged",
                storage: error.storage)
        }
    }
}

extension ShardEngine {
    /// Table files plus memtables of every column family: what a full checkpoint copies, roughly.
    func liveBytes(_ table: RoutingTable) throws -> UInt64 {
        var total: UInt64 = 0
        let families = table.shards.compactMap(\.family) + [metadata]
        for family in families {
            try storage(path) {
                total += try database.integerProperty("rocksdb.total-sst-files-size", in: family) ?? 0
                total += try database.integerProperty("rocksdb.cur-size-all-mem-tables", in: family) ?? 0
            }
        }
        return total
    }
}

extension ShardEngine {
    /// Gives this instance a new random id and returns it: what a restore with
    /// `newInstanceID` does to its copy, so the copy can be another instance's
    /// peer (a migration refuses a source and target with one id), e.g. to move a
    /// shard from a checkpoint back into the instance it was taken of.
    ///
    /// The engine must be closed right after: ``instanceID`` keeps the old id.
    /// One metadata write, synced, so the instance's latest sequence number ends
    /// one write past the checkpoint's.
    ///
    /// - throws: ``ShardDBError`` `.migrationInProgress` when the journal holds an
    ///   unfinished migration (its plan names the old id, and its peer knows only
    ///   that one); `.corruptedMetadata`; `.storage`.
    func assignNewInstanceID() throws -> String {
        let unfinished = try migrationJournal().filter(\.isUnfinished)
        guard unfinished.isEmpty else {
            let named = unfinished.prefix(3).map { "\($0.plan.id) (\($0.role.rawValue), \($0.phase.rawValue))" }.joined(separator: ", ")
            throw ShardDBError(.migrationInProgress,
                "the checkpoint holds \(unfinished.count) unfinished migration(s) of instance \(instanceID): \(named); "
                    + "their peers know it by that id, so it cannot take a new one (restore without a new id, and do not run the copy beside the original)")
        }
        var record = try storage(path) { try Self.loadMetadata(database: database, meta: metadata, path: path) }.instance
        repeat { record.id = Self.randomInstanceID() } while record.id == instanceID
        let batch = WriteBatch()
        try batch.put(Array(MetadataKey.instance.utf8), MetadataCoding.encode(record), in: metadata)
        try FailurePoints.hit("checkpoint.restore.new-instance-id")
        try durableWrite(batch)
        logger.debug("gave the restored instance a new id", metadata: ["path": "\(path)", "old": "\(instanceID)", "new": "\(record.id)"])
        return record.id
    }
}
