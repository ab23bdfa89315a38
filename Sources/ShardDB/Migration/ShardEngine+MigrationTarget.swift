import Foundation
import RocksDB

extension ShardEngine: MigrationTarget {
    public func prepareIncoming(_ plan: MigrationPlan, snapshotSequence: UInt64) throws -> IncomingState {
        try FailurePoints.hit("migration.target.prepare")
        guard plan.targetInstance == instanceID else {
            throw ShardDBError(.migrationConflict, "plan \(plan.id) is for target \(plan.targetInstance), not this instance (\(instanceID))")
        }
        guard plan.sourceInstance != instanceID else {
            throw ShardDBError(.migrationConflict, "source and target are the same instance (\(instanceID))")
        }
        let existing = try migrationEntry(plan.id)
        if let existing, existing.plan != plan || existing.role != .target || !existing.isUnfinished {
            throw ShardDBError(.migrationConflict, "migration \(plan.id) already exists here in phase \(existing.phase.rawValue)")
        }
        if existing == nil {
            try validateIncoming(plan)
        }
        let family = try stagingFamily(for: plan, create: true)
        if let progress = try progressRecord(plan.id), progress.snapshotSequence == snapshotSequence {
            return IncomingState(snapshotSequence: progress.snapshotSequence, bulkResumeKey: progress.bulkResumeKey.flatMap(ByteText.unhex),
                                 bulkDone: progress.bulkDone, appliedThrough: progress.appliedThrough)
        }
        // A new snapshot: whatever an earlier attempt staged is stale.
        try storage(path) { try clearRange(plan.range, in: family, reclaim: false) }
        let progress = MigrationProgressRecord(snapshotSequence: snapshotSequence, bulkResumeKey: nil, bulkDone: false,
                                               appliedThrough: snapshotSequence)
        let batch = WriteBatch()
        try batch.put(MigrationKeys.progress(plan.id), MetadataCoding.encode(progress), in: metadata)
        var entry = existing ?? MigrationJournalEntry(plan: plan, role: .target, phase: .prepared, updatedAtMilliseconds: 0)
        entry.phase = .bulkCopy
        entry.snapshotSequence = snapshotSequence
        try journal(entry, in: batch)
        try storage(path) { try database.write(batch, options: WriteOptions(sync: true)) }
        logger.debug("migration prepared (target)", metadata: ["id": "\(plan.id)", "range": "\(plan.range)"])
        return IncomingState(snapshotSequence: snapshotSequence, bulkResumeKey: nil, bulkDone: false, appliedThrough: snapshotSequence)
    }

    /// The target owns nothing of the range, no other migration touches it, and the shape fits.
    private func validateIncoming(_ plan: MigrationPlan) throws {
        let current = table
        for shard in current.shards where shard.isActive && shard.descriptor.range.overlaps(plan.range) {
            throw ShardDBError(.migrationConflict, "the target already owns part of \(plan.range) (shard \(shard.id) owns \(shard.descriptor.range))")
        }
        for entry in try migrationJournal() where entry.isUnfinished && entry.plan.range.overlaps(plan.range) {
            throw ShardDBError(.migrationConflict, "range \(plan.range) overlaps migration \(entry.plan.id) (\(entry.role.rawValue), \(entry.phase.rawValue))")
        }
        switch plan.shape {
        case .newShard:
            if current.shard(id: plan.targetShard) != nil {
                throw ShardDBError(.migrationConflict, "the target already has a shard \(plan.targetShard)")
            }
        case .mergeInto(let id):
            guard let shard = current.shard(id: id), shard.isActive else {
                throw ShardDBError(.shardNotFound, "shard \(id) does not exist on the target")
            }
            guard shard.descriptor.range.merged(with: plan.range) != nil else {
                throw ShardDBError(.migrationConflict, "range \(plan.range) is not adjacent to shard \(id)'s range \(shard.descriptor.range)")
            }
        }
    }

    /// The column family that receives the range: a new shard's (created here,
    /// invisible until commit) or the merge target's (the range lies outside
    /// the shard's bounds, so reads and scans do not see it).
    func stagingFamily(for plan: MigrationPlan, create: Bool) throws -> ColumnFamily {
        let name = "shard-\(plan.targetShard)"
        return try storage(path) {
            if database.columnFamilyNames.contains(name) { return try database.columnFamily(named: name) }
            guard create, case .newShard = plan.shape else {
                throw ShardDBError(.migrationConflict, "migration \(plan.id) has no staging area on this target")
            }
            let (familyOptions, filter) = Self.shardOptions(base: try Self.baseOptions(options), shard: plan.targetShard, options: options)
            shardFilters.withLock { $0[plan.targetShard] = filter }
            return try database.createColumnFamily(named: name, options: familyOptions)
        }
    }

    public func applyBulk(_ plan: MigrationPlan, _ chunk: BulkChunk) throws {
        guard var progress = try progressRecord(plan.id) else {
            throw ShardDBError(.migrationConflict, "migration \(plan.id) is not prepared on this target")
        }
        let family = try stagingFamily(for: plan, create: false)
        let batch = WriteBatch()
        for entry in chunk.entries { try batch.put(entry.key, entry.value, in: family) }
        progress.bulkResumeKey = chunk.lastKey.map { ByteText.hex($0) } ?? progress.bulkResumeKey
        progress.bulkDone = chunk.done
        // Data and progress in one atomic write: a restart resumes exactly after this chunk.
        try batch.put(MigrationKeys.progress(plan.id), MetadataCoding.encode(progress), in: metadata)
        try storage(path) { try database.write(batch) }
        try FailurePoints.hit("migration.target.bulk-chunk")
    }

    public func applyChanges(_ plan: MigrationPlan, _ chunk: ChangeChunk) throws {
        guard var progress = try progressRecord(plan.id) else {
            throw ShardDBError(.migrationConflict, "migration \(plan.id) is not prepared on this target")
        }
        guard progress.bulkDone else {
            throw ShardDBError(.migrationConflict, "migration \(plan.id): changes offered before the bulk copy finished")
        }
        if chunk.nextSequence <= progress.appliedThrough + 1 && chunk.records.isEmpty { return }
        let family = try stagingFamily(for: plan, create: false)
        let now = clock.nowMilliseconds()
        let batch = WriteBatch()
        for record in chunk.records where record.sequence > progress.appliedThrough {
            switch record.operation {
            case .put:
                let value = record.value ?? []
                // An entry that already expired is not copied; the delete supersedes an older value.
                if let header = record.header, header.isExpired(at: now) {
                    try batch.delete(record.storedKey, in: family)
                } else {
                    try batch.put(record.storedKey, value, in: family)
                }
            case .delete, .singleDelete:
                try batch.delete(record.storedKey, in: family)
            case .deleteRange:
                guard let end = record.storedEndKey else {
                    throw ShardDBError(.corruptedValue, "migration \(plan.id): range delete at \(record.sequence) has no end")
                }
                try batch.deleteRange(from: record.storedKey, to: end, in: family)
            case .merge:
                throw ShardDBError(.migrationConflict,
                    "migration \(plan.id): the source changelog holds a merge at \(record.sequence); ShardDB cannot migrate merge operands")
            }
        }
        progress.appliedThrough = max(progress.appliedThrough, chunk.nextSequence - 1)
        try batch.put(MigrationKeys.progress(plan.id), MetadataCoding.encode(progress), in: metadata)
        if var entry = try migrationEntry(plan.id), entry.phase == .bulkCopy {
            entry.phase = .catchUp
            try journal(entry, in: batch)
        }
        try storage(path) { try database.write(batch) }
        try FailurePoints.hit("migration.target.changes")
    }

    public func commitIncoming(_ plan: MigrationPlan, finalSequence: UInt64) throws {
        guard var entry = try migrationEntry(plan.id), entry.role == .target else {
            throw ShardDBError(.migrationConflict, "migration \(plan.id) is unknown on this target")
        }
        if entry.phase == .committed { return }
        guard entry.isUnfinished, let progress = try progressRecord(plan.id) else {
            throw ShardDBError(.migrationConflict, "migration \(plan.id) cannot commit from phase \(entry.phase.rawValue)")
        }
        guard progress.bulkDone, progress.appliedThrough >= finalSequence else {
            throw ShardDBError(.migrationConflict,
                "migration \(plan.id): applied through \(progress.appliedThrough), final sequence is \(finalSequence); not caught up")
        }
        try FailurePoints.hit("migration.target.before-commit")
        let family = try stagingFamily(for: plan, create: false)
        let current = table
        let descriptor: ShardDescriptor
        switch plan.shape {
        case .newShard:
            descriptor = ShardDescriptor(id: plan.targetShard, range: plan.range, defaultTTLSeconds: plan.defaultTTLSeconds)
        case .mergeInto(let id):
            guard let shard = current.shard(id: id), let merged = shard.descriptor.range.merged(with: plan.range) else {
                throw ShardDBError(.migrationConflict, "shard \(id) can no longer take \(plan.range)")
            }
            var grown = shard.descriptor
            grown.range = merged
            descriptor = grown
        }
        // Ownership switches in one atomic, durable write: shard record + journal.
        let batch = WriteBatch()
        try batch.put(Array(MetadataKey.shard(descriptor.id).utf8), MetadataCoding.encode(ShardRecord(descriptor)), in: metadata)
        try batch.delete(MigrationKeys.progress(plan.id), in: metadata)
        entry.phase = .committed
        entry.finalSequence = finalSequence
        try journal(entry, in: batch)
        try storage(path) { try database.write(batch, options: WriteOptions(sync: true)) }
        let filter = shardFilters.withLock { $0[descriptor.id] }
        updateTable { table in
            table.replacing(shards: table.shards.filter { $0.id != descriptor.id }
                + [Shard(descriptor: descriptor, family: family, expiryFilter: filter)])
        }
        logger.debug("migration committed (target)", metadata: ["id": "\(plan.id)", "shard": "\(descriptor.id)"])
        try FailurePoints.hit("migration.target.committed")
    }

    public func abortIncoming(_ plan: MigrationPlan) throws {
        guard var entry = try migrationEntry(plan.id), entry.role == .target else { return }
        guard entry.isUnfinished else {
            if entry.phase == .committed {
                throw ShardDBError(.migrationConflict, "migration \(plan.id) is committed on the target; it cannot be aborted")
            }
            return
        }
        try storage(path) {
            switch plan.shape {
            case .newShard:
                let name = "shard-\(plan.targetShard)"
                if table.shard(id: plan.targetShard) == nil, database.columnFamilyNames.contains(name) {
                    try database.dropColumnFamily(named: name)
                }
                _ = shardFilters.withLock { $0.removeValue(forKey: plan.targetShard) }
            case .mergeInto:
                if let family = try? stagingFamily(for: plan, create: false) {
                    try clearRange(plan.range, in: family, reclaim: false)
                }
            }
        }
        let batch = WriteBatch()
        try batch.delete(MigrationKeys.progress(plan.id), in: metadata)
        entry.phase = .aborted
        try journal(entry, in: batch)
        try storage(path) { try database.write(batch, options: WriteOptions(sync: true)) }
        logger.debug("migration aborted (target)", metadata: ["id": "\(plan.id)"])
    }
}
