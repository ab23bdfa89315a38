import Foundation
import RocksDB

extension ShardEngine: MigrationSource {
    public func describeInstance() throws -> InstanceDescription {
        InstanceDescription(instanceID: instanceID, location: path, partitioning: partitioning,
                            shards: shardDescriptors, unfinishedMigrations: try migrationJournal().filter(\.isUnfinished))
    }

    public func prepareOutgoing(_ plan: MigrationPlan) throws {
        try FailurePoints.hit("migration.source.prepare")
        try MigrationPlan.checkID(plan.id)
        guard plan.sourceInstance == instanceID else {
            throw ShardDBError(.migrationConflict, "plan \(plan.id) is for source \(plan.sourceInstance), not this instance (\(instanceID))")
        }
        guard plan.targetInstance != instanceID else {
            throw ShardDBError(.migrationConflict, "source and target are the same instance (\(instanceID))")
        }
        if let existing = try migrationEntry(plan.id) {
            guard existing.plan == plan, existing.role == .source, existing.isUnfinished else {
                throw ShardDBError(.migrationConflict, "migration \(plan.id) already exists here in phase \(existing.phase.rawValue)")
            }
            return  // resuming
        }
        // Under the shard-map lock, as an incoming merge's prepare: each checks the other's journal entry.
        try shardMapLock.withLock { _ in
            let shard = try activeShard(plan.sourceShard)
            _ = try shard.descriptor.range.removing(plan.range)  // inside the shard, at one end
            for entry in try migrationJournal() where entry.isUnfinished {
                if entry.plan.range.overlaps(plan.range) {
                    throw overlapConflict(plan, entry)
                }
                // A shard growing by an incoming merge cannot also move out whole: its
                // table files would carry the merge's staged keys along. Nor can it move
                // out a range at the end the merge grows: once the merge commits, that
                // range is in the shard's middle, and the source could never record the
                // move. (A range at the other end may move meanwhile, as a rescale does.)
                if entry.role == .target, case .mergeInto(let id) = entry.plan.shape, id == plan.sourceShard,
                   plan.range == shard.descriptor.range || plan.range.union(with: entry.plan.range) != nil {
                    throw ShardDBError(.migrationConflict, "shard \(id) is taking \(entry.plan.range) in migration \(entry.plan.id); "
                        + "move \(plan.range) once that finishes")
                }
            }
            try writeJournal(MigrationJournalEntry(plan: plan, role: .source, phase: .prepared, updatedAtMilliseconds: 0))
        }
        logger.debug("migration prepared (source)", metadata: ["id": "\(plan.id)", "range": "\(plan.range)"])
    }

    public func openBulk(_ plan: MigrationPlan) throws -> UInt64 {
        guard var entry = try journalEntry(for: plan), entry.role == .source, entry.isUnfinished else {
            throw ShardDBError(.migrationConflict, "migration \(plan.id) is not prepared on this source")
        }
        if let first = entry.snapshotSequence {
            // Opened before (perhaps before a restart): the changelog still starts after the first snapshot.
            if entry.phase == .bulkCopy { _ = try bulkSnapshot(plan) }
            return first
        }
        // Under the shard-map lock: an incoming table-file import raises the sequence
        // number without a log record, which this migration's changelog must not span
        // (``importTableFiles(_:_:)`` refuses while an outgoing migration is open).
        let snapshot: Snapshot = try shardMapLock.withLock { _ in
            let snapshot = try storage(path) { try database.snapshot() }
            migrationRuntime.setSnapshot(plan.id, snapshot)
            entry.phase = .bulkCopy
            entry.snapshotSequence = snapshot.sequenceNumber
            try writeJournal(entry)
            return snapshot
        }
        try FailurePoints.hit("migration.source.bulk-opened")
        return snapshot.sequenceNumber
    }

    public func exportTableFiles(_ plan: MigrationPlan) throws -> [TableFile]? {
        guard let entry = try journalEntry(for: plan), entry.role == .source, entry.phase == .bulkCopy,
              entry.snapshotSequence != nil else {
            throw ShardDBError(.migrationConflict, "migration \(plan.id) has no open bulk copy on this source")
        }
        let shard = try activeShard(plan.sourceShard)
        guard shard.descriptor.range == plan.range, let family = shard.family else { return nil }  // part of a shard
        let directory = try tableExportDirectory(plan.id)
        try? FileManager.default.removeItem(atPath: directory)
        let files: [TableFile] = try storage(path) {
            try FileManager.default.createDirectory(atPath: Self.tableExportFolder(path), withIntermediateDirectories: true)
            // Flushes the family and hard-links its files: taken after the snapshot S,
            // so they hold every write up to S (and perhaps some after it, which the
            // catch-up from S+1 writes again, in order).
            return try database.exportColumnFamily(family, to: directory)
        }
        try FailurePoints.hit("migration.source.tables-exported")
        // RocksDB 7.8 loses a range tombstone that reaches past a file's point keys on
        // import (facebook/rocksdb#11252): such a shard moves as entries.
        guard !files.isEmpty, files.allSatisfy({ $0.rangeDeletions == 0 }) else {
            releaseTableFiles(plan)
            return nil
        }
        return files
    }

    public func readTableFile(_ plan: MigrationPlan, name: String, offset: UInt64, maxBytes: Int) throws -> Data {
        try Self.checkTableFileName(name)
        guard maxBytes > 0 else { throw ShardDBError(.invalidArgument, "table file reads need a positive size, got \(maxBytes) bytes") }
        guard let entry = try journalEntry(for: plan), entry.role == .source, entry.phase == .bulkCopy else {
            throw ShardDBError(.migrationConflict, "migration \(plan.id) has no open bulk copy on this source")
        }
        try FailurePoints.hit("migration.source.table-file-read")
        guard let file = FileHandle(forReadingAtPath: try tableExportDirectory(plan.id) + "/" + name) else {
            throw ShardDBError(.migrationConflict, "migration \(plan.id) has exported no table file \(name) here")
        }
        defer { try? file.close() }
        return try storage(path) {
            guard offset < (try file.seekToEnd()) else { return Data() }  // past the end: nothing (never a trap)
            try file.seek(toOffset: offset)
            return try file.read(upToCount: min(maxBytes, 64 << 20)) ?? Data()
        }
    }

    public var exportsLocalTableFiles: Bool { true }

    /// A table file's name as an export gives it (`000123.sst`): never a path.
    ///
    /// - throws: `.invalidArgument` for anything else.
    static func checkTableFileName(_ name: String) throws {
        let digits = name.hasSuffix(".sst") ? name.dropLast(4) : ""
        guard !digits.isEmpty, digits.count <= 20, digits.allSatisfy({ $0 >= "0" && $0 <= "9" }) else {
            throw ShardDBError(.invalidArgument, "'\(name.prefix(80))' is not a table file name (digits, then .sst)")
        }
    }

    public func releaseTableFiles(_ plan: MigrationPlan) {
        guard let directory = try? tableExportDirectory(plan.id) else { return }
        try? FileManager.default.removeItem(atPath: directory)
    }

    /// Where ``exportTableFiles(_:)`` puts a migration's files (hard links, on the
    /// database's file system); removed once the target took them, at the
    /// migration's end, and at open unless the migration is still in its bulk copy.
    ///
    /// - throws: `.invalidArgument` for an id that could name another folder.
    func tableExportDirectory(_ id: String) throws -> String {
        try MigrationPlan.checkID(id)
        return Self.tableExportFolder(path) + "/" + id
    }
    static func tableExportFolder(_ path: String) -> String { path + "/migration-export" }

    public func readBulk(_ plan: MigrationPlan, after: [UInt8]?, maxBytes: Int) throws -> BulkChunk {
        guard maxBytes > 0 else { throw ShardDBError(.invalidArgument, "bulk chunks need a positive size, got \(maxBytes) bytes") }
        let snapshot = try bulkSnapshot(plan)
        let shard = try activeShard(plan.sourceShard)
        let bounds = plan.range.storedBounds
        let lower = after.map { $0 + [0] } ?? bounds.lower
        let now = clock.nowMilliseconds()
        // Packed in one buffer as RocksDB reads them (the chunk may end one entry past
        // maxBytes): one copy per entry, one C call per batch.
        let packed = try storage(path) {
            let iterator = try database.makeIterator(in: shard.family, lowerBound: lower, upperBound: bounds.upper,
                                                     snapshot: snapshot, fillCache: false)
            iterator.seekToFirst()
            return try iterator.readPacked(bytes: maxBytes) { _, value in
                // Expired entries are not copied: they could never be read again.
                guard let (header, _) = ValueHeader.parse(value) else { return true }
                return !header.isExpired(at: now)
            }
        }
        // The last key read, even an expired one: the next chunk starts after it.
        let chunk = try BulkChunk(data: packed.data, keyLengths: packed.keyLengths, valueLengths: packed.valueLengths,
                                  lastKey: packed.lastKey ?? after, done: packed.exhausted)
        try FailurePoints.hit("migration.source.bulk-chunk")
        return chunk
    }

    /// The snapshot bulk reads use: the one ``openBulk(_:)`` took at S, or, when this
    /// process restarted since, a new one at S' >= S. The copy then resumes after the
    /// last key the target acknowledged instead of starting over: keys copied at S
    /// and keys copied at S' both end in their state at the fence, because the
    /// catch-up still replays every change after S in order (docs/MIGRATION.md,
    /// "Source restart during the bulk copy").
    ///
    /// - throws: `.migrationConflict` when the migration is not in its bulk phase here.
    func bulkSnapshot(_ plan: MigrationPlan) throws -> Snapshot {
        if let snapshot = migrationRuntime.snapshot(plan.id) {
            _ = try journalEntry(for: plan)  // (reads go by the plan's range)
            return snapshot
        }
        guard let entry = try journalEntry(for: plan), entry.role == .source, entry.phase == .bulkCopy,
              let first = entry.snapshotSequence else {
            throw ShardDBError(.migrationConflict, "migration \(plan.id) has no open bulk copy on this source")
        }
        return try migrationRuntime.snapshot(plan.id) {
            let snapshot = try storage(path) { try database.snapshot() }
            // What it reads may go to a target in another process, which keeps it:
            // durable first, or a second power loss here could take back writes
            // the target then holds (and give their sequence numbers to new ones).
            try syncWAL(through: snapshot.sequenceNumber)
            logger.info("bulk copy resumes from a new snapshot (the source restarted)",
                        metadata: ["id": "\(plan.id)", "first": "\(first)", "now": "\(snapshot.sequenceNumber)"])
            return snapshot
        }
    }

    public func readChanges(_ plan: MigrationPlan, from: UInt64, maxRecords: Int) throws -> ChangeChunk {
        try readChanges(plan, from: from, maxRecords: maxRecords, durable: false)
    }

    /// ``readChanges(_:from:maxRecords:)`` for a coordinator in another process:
    /// the log is synced through the chunk's end before it returns. Else a power
    /// loss of this machine could take back records the target already applied,
    /// and this instance, back up, would give their sequence numbers to new writes
    /// that the coordinator, reading on from where it was, never reads.
    ///
    /// - throws: also `.changelogUnavailable` when `from` is past this instance's
    ///   log (latest + 1): it lost writes it had handed out (a power loss without
    ///   that sync); the migration must roll back.
    public func readChanges(_ plan: MigrationPlan, from: UInt64, maxRecords: Int, durable: Bool) throws -> ChangeChunk {
        // Only for a migration running here, as recorded: a reader is kept per
        // migration until it ends, and the range read is the journal's.
        guard let entry = try journalEntry(for: plan), entry.role == .source, entry.isUnfinished else {
            throw ShardDBError(.migrationConflict, "migration \(plan.id) is not in progress on this source")
        }
        // One read per migration at a time: the kept reader is not thread-safe, and a
        // retry overlapping the call it repeats (same `from`) would take up where
        // that call left the reader, skipping what it read.
        let chunk = try migrationRuntime.serialized(plan.id) {
            let latest = try latestSequenceNumber()
            guard from <= latest + 1 else {
                throw ShardDBError(.changelogUnavailable,
                    "migration \(plan.id): changes from \(from) were asked for, past this instance's log (latest \(latest)): it lost writes it had handed out; the migration must roll back")
            }
            var reader = migrationRuntime.reader(plan.id)
            if reader == nil || reader!.nextSequence != from {
                reader = try ChangelogReader(engine: self, shard: plan.sourceShard, range: plan.range, from: from)
                migrationRuntime.setReader(plan.id, reader)
            }
            try FailurePoints.hit("migration.source.reading-changes")
            let records = try reader!.read(maxRecords: maxRecords)
            return ChangeChunk(records: records, nextSequence: reader!.nextSequence, latestSequence: latest)
        }
        if durable && chunk.nextSequence > 1 { try syncWAL(through: chunk.nextSequence - 1) }
        return chunk
    }

    /// Syncs the write-ahead log: a durable write (the fence's, the commit's)
    /// fsyncs everything written before it, so syncing the bulk of it now keeps
    /// that work out of the write pause.
    public func prepareCutover(_ plan: MigrationPlan) throws {
        // (Behind the write-failure latch: after a failed append, syncing the same log aborts the process.)
        try bookkeepingWrite { try database.flushWAL(sync: true) }
    }

    public func fenceOutgoing(_ plan: MigrationPlan) throws -> UInt64 {
        // Under the shard-map lock, which an abort and a commit also take: an abort
        // (`--resolve` from another process) cannot come between reading the entry
        // and journaling the fence (it would be overwritten as fenced, or its fence
        // left in the routing table with nothing to lift it).
        let final = try shardMapLock.withLock { _ in try fenceOutgoingLocked(plan) }
        try FailurePoints.hit("migration.source.fenced")
        return final
    }

    private func fenceOutgoingLocked(_ plan: MigrationPlan) throws -> UInt64 {
        guard var entry = try journalEntry(for: plan), entry.role == .source, entry.isUnfinished else {
            throw ShardDBError(.migrationConflict, "migration \(plan.id) is not in progress on this source")
        }
        if entry.phase == .fenced, let final = entry.finalSequence { return final }
        try FailurePoints.hit("migration.source.before-fence")
        let fence = Fence(range: plan.range, migrationID: plan.id)
        // Exclusive for an instant: no write to the range is in flight once it is granted.
        let final: UInt64 = try writeGate.withWriteLock {
            updateTable { $0.replacing(fences: $0.fences + [fence]) }
            return try storage(path) { try database.latestSequenceNumber() }
        }
        migrationRuntime.setFence(plan.id, fence)
        entry.phase = .fenced
        entry.finalSequence = final
        do {
            try writeJournal(entry)
        } catch {
            // Not durable: lift the fence; the migration fails before anything is decided.
            removeFence(fence, outcome: .released)
            throw error
        }
        return final
    }

    public func commitOutgoing(_ plan: MigrationPlan) throws {
        guard var entry = try journalEntry(for: plan), entry.role == .source else {
            throw ShardDBError(.migrationConflict, "migration \(plan.id) is unknown on this source")
        }
        if entry.phase == .committed || entry.phase == .cleaned { return }
        guard entry.phase == .fenced else {
            throw ShardDBError(.migrationConflict, "migration \(plan.id) cannot commit on the source from phase \(entry.phase.rawValue)")
        }
        try FailurePoints.hit("migration.source.before-commit")
        try shardMapLock.withLock { _ in
            // Again under the lock, which an abort also takes: the two never both run.
            guard let current = try migrationEntry(plan.id) else { return }
            entry = current
            if current.phase == .fenced { try commitOutgoingLocked(plan, entry: &entry) }
        }
        guard entry.phase == .committed || entry.phase == .cleaned else {
            throw ShardDBError(.migrationConflict, "migration \(plan.id) was \(entry.phase.rawValue) on the source while it committed")
        }
        releaseTableFiles(plan)  // normally gone already; not when a coordinator died after the import
        logger.debug("migration committed (source)", metadata: ["id": "\(plan.id)", "movedTo": "\(plan.targetLocation)"])
        try FailurePoints.hit("migration.source.committed")
    }

    /// The source's commit, under ``shardMapLock``: the moved range's record may take
    /// a new shard id, which must not be one this instance has promised an
    /// incoming migration that is still running.
    private func commitOutgoingLocked(_ plan: MigrationPlan, entry: inout MigrationJournalEntry) throws {
        let current = table
        guard let shard = current.shard(id: plan.sourceShard) else {
            throw ShardDBError(.shardNotFound, "shard \(plan.sourceShard) does not exist on this instance")
        }
        let remaining = try shard.descriptor.range.removing(plan.range)
        var changed: [Shard] = []
        let batch = WriteBatch()
        var usedIDs = current.shards.map(\.id) + (try reservedShardIDs())
        let movedID: Int
        if let remaining {
            var kept = shard.descriptor
            kept.range = remaining
            movedID = try ShardDescriptor.nextID(after: usedIDs)
            usedIDs.append(movedID)
            let moved = ShardDescriptor(id: movedID, range: plan.range, state: .moved(to: plan.targetLocation))
            try batch.put(Array(MetadataKey.shard(kept.id).utf8), MetadataCoding.encode(ShardRecord(kept)), in: metadata)
            try batch.put(Array(MetadataKey.shard(moved.id).utf8), MetadataCoding.encode(ShardRecord(moved)), in: metadata)
            changed = [shard.with(kept), Shard(descriptor: moved, family: nil, expiryFilter: nil)]
        } else {
            var moved = shard.descriptor
            moved.state = .moved(to: plan.targetLocation)
            movedID = moved.id
            try batch.put(Array(MetadataKey.shard(moved.id).utf8), MetadataCoding.encode(ShardRecord(moved)), in: metadata)
            changed = [Shard(descriptor: moved, family: nil, expiryFilter: shard.expiryFilter)]
        }
        // Older moved-to records of this range (it moved away before and came back)
        // name an earlier owner: routing reads moved records in id order, so one of
        // them could hide the new one. The part this move covers now names its owner.
        for stale in current.shards where !stale.isActive && stale.id != movedID && stale.descriptor.range.overlaps(plan.range) {
            var pieces = stale.descriptor.range.subtracting(plan.range).map { range in
                var piece = stale.descriptor
                piece.range = range
                return piece
            }
            if pieces.isEmpty {
                // All of it: the record stays (its id is never reused), naming the new owner.
                var retargeted = stale.descriptor
                retargeted.state = .moved(to: plan.targetLocation)
                pieces = [retargeted]
            } else if pieces.count == 2 {
                pieces[1].id = try ShardDescriptor.nextID(after: usedIDs)
                usedIDs.append(pieces[1].id)
            }
            for piece in pieces {
                try batch.put(Array(MetadataKey.shard(piece.id).utf8), MetadataCoding.encode(ShardRecord(piece)), in: metadata)
                changed.append(piece.id == stale.id ? stale.with(piece) : Shard(descriptor: piece, family: nil, expiryFilter: nil))
            }
        }
        entry.phase = .committed
        try journal(entry, in: batch)
        // No fsync needed before waking the fenced callers: if this write is lost
        // in a crash, the durable `fenced` entry plus the target's durable commit
        // roll the move forward at recovery (docs/MIGRATION.md).
        try bookkeepingWrite { try database.write(batch) }
        let fence = migrationRuntime.fence(plan.id)
        updateTable { table in
            let ids = Set(changed.map(\.id))
            return table.replacing(shards: table.shards.filter { !ids.contains($0.id) } + changed,
                                   fences: table.fences.filter { $0 !== fence })
        }
        fence?.resolve(.committed(owner: plan.targetLocation))
        migrationRuntime.clear(plan.id)
    }

    /// The refusal of a migration whose range overlaps an unfinished one here.
    func overlapConflict(_ plan: MigrationPlan, _ entry: MigrationJournalEntry) -> ShardDBError {
        if entry.role == .source, entry.phase == .committed {
            // Moved with `cleanup = false` (or a crash before the cleanup): the data stays
            // here until a resolve removes it, and could come back to life under a merge.
            return ShardDBError(.migrationConflict,
                "range \(plan.range) overlaps migration \(entry.plan.id), committed with its data still on this source "
                + "(--no-cleanup, or a crash before the cleanup); 'shardctl migrate --resolve' between the two instances removes it")
        }
        return ShardDBError(.migrationConflict, "range \(plan.range) overlaps migration \(entry.plan.id) (\(entry.role.rawValue), \(entry.phase.rawValue))")
    }

    /// Shard ids promised to incoming migrations still running here (a new shard's id is
    /// chosen when the migration is planned and created only at its commit).
    func reservedShardIDs() throws -> [Int] {
        try migrationJournal().compactMap { entry in
            guard entry.role == .target, entry.isUnfinished, case .newShard = entry.plan.shape else { return nil }
            return entry.plan.targetShard
        }
    }

    public func abortOutgoing(_ plan: MigrationPlan) throws {
        // Under the shard-map lock, which a commit also takes: the two never both run.
        let aborted = try shardMapLock.withLock { _ -> Bool in
            guard var entry = try journalEntry(for: plan), entry.role == .source else {
                migrationRuntime.clear(plan.id)
                return false
            }
            guard entry.isUnfinished else { return false }
            guard entry.phase != .committed else {
                throw ShardDBError(.migrationConflict, "migration \(plan.id) is committed; it cannot be aborted")
            }
            if let fence = migrationRuntime.fence(plan.id) { removeFence(fence, outcome: .released) }
            releaseTableFiles(plan)
            entry.phase = .aborted
            try writeJournal(entry)
            migrationRuntime.clear(plan.id)
            return true
        }
        if aborted { logger.debug("migration aborted (source)", metadata: ["id": "\(plan.id)"]) }
    }

    public func cleanupOutgoing(_ plan: MigrationPlan) throws {
        guard var entry = try journalEntry(for: plan), entry.role == .source else { return }
        if entry.phase == .cleaned { return }
        guard entry.phase == .committed else {
            throw ShardDBError(.migrationConflict, "migration \(plan.id) is not committed; nothing to clean up")
        }
        try FailurePoints.hit("migration.source.before-cleanup")
        let familyName = "shard-\(plan.sourceShard)"
        let wholeShardMoved = table.shard(id: plan.sourceShard).map { !$0.isActive } ?? true
        // The commit went to the WAL unsynced (commitOutgoingLocked). Dropping a family
        // or files is a synced manifest edit that would outlive a commit lost in a power
        // cut: the shard would be `active` in a journal still `fenced`, with no family,
        // and the instance would not open. So the commit is made durable first (behind
        // the write-failure latch, as prepareCutover's sync).
        try bookkeepingWrite { try database.flushWAL(sync: true) }
        try storage(path) {
            if wholeShardMoved {
                if database.columnFamilyNames.contains(familyName) { try database.dropColumnFamily(named: familyName) }
            } else if let family = table.shard(id: plan.sourceShard)?.family {
                try clearRange(plan.range, in: family, reclaim: true)
            }
        }
        entry.phase = .cleaned
        try writeJournal(entry)
        logger.debug("migration cleaned up (source)", metadata: ["id": "\(plan.id)"])
    }

    /// Deletes every stored key of `range` in `family`: one range tombstone
    /// (plus point deletes past the largest bound a tombstone can name when the
    /// range is unbounded); with `reclaim`, also drops whole files in the range
    /// and compacts it so the space returns at once.
    func clearRange(_ range: ShardRange, in family: ColumnFamily, reclaim: Bool) throws {
        let bounds = range.storedBounds
        try clearStored(from: bounds.lower, to: bounds.upper, in: family, reclaim: reclaim)
    }

    /// ``clearRange(_:in:reclaim:)`` for stored keys from `lower` up to `upper` (nil: no end).
    func clearStored(from lower: [UInt8], to upperBound: [UInt8]?, in family: ColumnFamily, reclaim: Bool) throws {
        let bounds = (lower: lower, upper: upperBound)
        let sentinel: [UInt8] = [UInt8](repeating: 0xFF, count: 8)
        let upper = bounds.upper ?? sentinel
        try bookkeepingWrite {
            try database.deleteRange(from: bounds.lower, to: upper, in: family)
            if bounds.upper == nil {
                let iterator = try database.makeIterator(in: family, lowerBound: sentinel)
                iterator.seekToFirst()
                while iterator.isValid {
                    try database.delete(iterator.key, in: family)
                    iterator.next()
                }
                try iterator.checkStatus()
            }
        }
        if reclaim {
            try database.deleteFiles(from: bounds.lower, to: upper, in: family)
            try database.compactRange(family, from: bounds.lower, to: bounds.upper)
        }
    }

    /// Removes exported and received table files except those of migrations still
    /// in their bulk copy: a pull or relay interrupted by a crash of either side
    /// resumes from the position the target last reported, in the same files
    /// (an export is hard links to table files, which never change).
    private func removeTableFilesNoLongerCopied() throws {
        func copying(_ id: String, as role: MigrationJournalEntry.Role) throws -> Bool {
            guard let entry = try migrationEntry(id), entry.role == role else { return false }
            switch role {
            case .source: return entry.phase == .bulkCopy
            case .target: return try entry.isUnfinished && progressRecord(id).map { !$0.bulkDone } == true
            }
        }
        for (folder, role) in [(Self.tableExportFolder(path), MigrationJournalEntry.Role.source), (Self.tableImportFolder(path), .target)] {
            guard let names = try? FileManager.default.contentsOfDirectory(atPath: folder) else { continue }
            for name in names where try !copying(name, as: role) {
                try? FileManager.default.removeItem(atPath: folder + "/" + name)
            }
            rmdir(folder)  // when nothing is left in it
        }
    }

    /// Removes a fence from the routing table and wakes its waiters.
    func removeFence(_ fence: Fence, outcome: Fence.Outcome) {
        updateTable { $0.replacing(fences: $0.fences.filter { $0 !== fence }) }
        fence.resolve(outcome)
    }

    /// At open: re-installs fences of migrations in doubt, finishes cleanups of
    /// committed ones, and removes what a crash left of finished ones on a target
    /// (an overlap's staging family, table files written for ingestion, table
    /// files exported or received for a migration past its bulk copy).
    func recoverMigrationsAtOpen() throws {
        try? FileManager.default.removeItem(atPath: path + "/migration-ingest")
        try removeTableFilesNoLongerCopied()
        for name in database.columnFamilyNames where name.hasPrefix(Self.overlapFamilyPrefix) {
            let id = String(name.dropFirst(Self.overlapFamilyPrefix.count))
            if try migrationEntry(id)?.isUnfinished != true { try dropOverlapFamily(id) }
        }
        for entry in try migrationJournal() where entry.role == .source && entry.isUnfinished {
            switch entry.phase {
            case .fenced:
                // In doubt until the target's journal decides (docs/MIGRATION.md): keep the range fenced.
                let fence = Fence(range: entry.plan.range, migrationID: entry.plan.id)
                migrationRuntime.setFence(entry.plan.id, fence)
                updateTable { $0.replacing(fences: $0.fences + [fence]) }
                logger.warning("migration in doubt: range fenced until resolved", metadata: ["id": "\(entry.plan.id)"])
            case .committed:
                try cleanupOutgoing(entry.plan)
            default:
                break  // the source still owns the range; a coordinator resumes or aborts it
            }
        }
    }
}
