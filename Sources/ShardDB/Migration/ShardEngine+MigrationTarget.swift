import Foundation
import RocksDB

extension ShardEngine: MigrationTarget {
    public func prepareIncoming(_ plan: MigrationPlan, snapshotSequence: UInt64) throws -> IncomingState {
        try FailurePoints.hit("migration.target.prepare")
        try MigrationPlan.checkID(plan.id)
        // Validation and the journal entry that reserves the new shard's id, as one
        // step of the shard map (a concurrent outgoing commit picks ids too).
        return try shardMapLock.withLock { _ in try prepareIncomingLocked(plan, snapshotSequence: snapshotSequence) }
    }

    private func prepareIncomingLocked(_ plan: MigrationPlan, snapshotSequence: UInt64) throws -> IncomingState {
        guard snapshotSequence <= Self.maxSequence else {
            throw ShardDBError(.invalidArgument, "snapshot sequence \(snapshotSequence) is past RocksDB's largest (\(Self.maxSequence))")
        }
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
        let overlapFamily = try self.overlapFamily(for: plan, create: true)
        if let progress = try progressRecord(plan.id), progress.snapshotSequence == snapshotSequence {
            return IncomingState(snapshotSequence: progress.snapshotSequence, bulkResumeKey: progress.bulkResumeKey.flatMap(ByteText.unhex),
                                 bulkDone: progress.bulkDone, appliedThrough: progress.appliedThrough)
        }
        // A new snapshot: whatever an earlier attempt staged is stale. Only the
        // staged parts: an overlap is the target shard's own live data.
        try storage(path) {
            for piece in stagedPieces(plan) { try clearRangeIfOccupied(piece, in: family) }
            if let overlapFamily, let overlap = plan.overlap { try clearRangeIfOccupied(overlap, in: overlapFamily) }
        }
        let progress = MigrationProgressRecord(snapshotSequence: snapshotSequence, bulkResumeKey: nil, bulkDone: false,
                                               appliedThrough: snapshotSequence)
        let batch = WriteBatch()
        try batch.put(MigrationKeys.progress(plan.id), MetadataCoding.encode(progress), in: metadata)
        var entry = existing ?? MigrationJournalEntry(plan: plan, role: .target, phase: .prepared, updatedAtMilliseconds: 0)
        entry.phase = .bulkCopy
        entry.snapshotSequence = snapshotSequence
        try journal(entry, in: batch)
        try durableWrite(batch)
        logger.debug("migration prepared (target)", metadata: ["id": "\(plan.id)", "range": "\(plan.range)"])
        return IncomingState(snapshotSequence: snapshotSequence, bulkResumeKey: nil, bulkDone: false, appliedThrough: snapshotSequence)
    }

    /// The target owns nothing of the range, no other migration touches it, and the shape fits.
    private func validateIncoming(_ plan: MigrationPlan) throws {
        // A plan from a peer that does not fit this instance's partitioning would be
        // recorded, then trap building the routing table or fail every later open.
        switch (partitioning, plan.range) {
        case (.hash(let keyGroups), .keyGroups(let groups)):
            guard groups.lowerBound >= 0, groups.lowerBound < groups.upperBound, groups.upperBound <= keyGroups else {
                throw ShardDBError(.invalidArgument, "migration \(plan.id): key groups \(plan.range) are not inside this instance's 0..<\(keyGroups)")
            }
        case (.range, .keys(let lower, let upper)):
            if let upper, !lower.lexicographicallyPrecedes(upper) {
                throw ShardDBError(.invalidArgument, "migration \(plan.id): key range \(plan.range) is empty or inverted")
            }
        default:
            throw ShardDBError(.invalidArgument, "migration \(plan.id): range \(plan.range) does not fit this instance's \(partitioning) partitioning")
        }
        guard (0...ShardDescriptor.maxID).contains(plan.targetShard) else {
            throw ShardDBError(.invalidArgument, "migration \(plan.id): target shard id \(plan.targetShard) is out of range (0...\(ShardDescriptor.maxID))")
        }
        // The new shard's record would not load at the next open (nor give its values
        // the expiry meant): a plan from a peer is checked as setDefaultTTL checks.
        if let ttl = plan.defaultTTLSeconds, ttl <= 0 || ttl > TTL.maxSeconds {
            throw ShardDBError(.invalidTTL, "migration \(plan.id): default TTL must be between 1 and \(TTL.maxSeconds) seconds, got \(ttl)")
        }
        let current = table
        for shard in current.shards where shard.isActive && shard.descriptor.range.overlaps(plan.range) {
            // An overlapping merge names its overlap; anything else is owned here already.
            if case .mergeInto(let id) = plan.shape, id == shard.id, plan.conflictPolicy != .refuse,
               let overlap = plan.overlap, plan.range.intersection(shard.descriptor.range) == overlap {
                continue
            }
            throw ShardDBError(.migrationConflict, "the target already owns part of \(plan.range) (shard \(shard.id) owns \(shard.descriptor.range))")
        }
        if plan.overlap != nil, plan.conflictPolicy == .refuse {
            throw ShardDBError(.migrationConflict, "migration \(plan.id) overlaps target shard \(plan.targetShard) but its policy is refuse")
        }
        for entry in try migrationJournal() where entry.isUnfinished && entry.plan.range.overlaps(plan.range) {
            throw overlapConflict(plan, entry)
        }
        switch plan.shape {
        case .newShard:
            if current.shard(id: plan.targetShard) != nil {
                throw ShardDBError(.migrationConflict, "the target already has a shard \(plan.targetShard)")
            }
            if try reservedShardIDs().contains(plan.targetShard) {
                throw ShardDBError(.migrationConflict, "shard id \(plan.targetShard) is taken by another incoming migration")
            }
        case .mergeInto(let id):
            guard let shard = current.shard(id: id), shard.isActive else {
                throw ShardDBError(.shardNotFound, "shard \(id) does not exist on the target")
            }
            guard shard.descriptor.range.union(with: plan.range) != nil else {
                throw ShardDBError(.migrationConflict, "range \(plan.range) is not adjacent to shard \(id)'s range \(shard.descriptor.range)")
            }
            // A shard moving out whole, or moving out a range at the end this merge
            // grows, cannot also grow: see prepareOutgoing.
            if let outgoing = try migrationJournal().first(where: {
                $0.isUnfinished && $0.role == .source && $0.plan.sourceShard == id
                    && ($0.plan.range == shard.descriptor.range || $0.plan.range.union(with: plan.range) != nil)
            }) {
                throw ShardDBError(.migrationConflict, "shard \(id) is moving out \(outgoing.plan.range) in migration \(outgoing.plan.id); "
                    + "merge into it once that finishes")
            }
        }
    }

    /// RocksDB's largest sequence number (`kMaxSequenceNumber`, 2^56 - 1): a peer's
    /// snapshot or change sequence past it is malformed.
    public static let maxSequence: UInt64 = (1 << 56) - 1

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

    /// The staging family of an overlap (`staging-<migration id>`): the source's
    /// entries for keys the merge target already owns wait there, invisible,
    /// until the commit merges them under the plan's policy. Nil without overlap.
    func overlapFamily(for plan: MigrationPlan, create: Bool) throws -> ColumnFamily? {
        guard plan.overlap != nil else { return nil }
        let name = Self.overlapFamilyName(plan.id)
        return try storage(path) {
            if database.columnFamilyNames.contains(name) { return try database.columnFamily(named: name) }
            guard create else { throw ShardDBError(.migrationConflict, "migration \(plan.id) has no overlap staging area on this target") }
            return try database.createColumnFamily(named: name, options: try Self.baseOptions(options))
        }
    }

    static let overlapFamilyPrefix = "staging-"
    static func overlapFamilyName(_ id: String) -> String { overlapFamilyPrefix + id }

    /// The parts of the plan's range staged in the target shard's own family (all of it without overlap).
    func stagedPieces(_ plan: MigrationPlan) -> [ShardRange] {
        guard let overlap = plan.overlap else { return [plan.range] }
        return plan.range.subtracting(overlap)
    }

    /// Deletes `range` in `family` only when it holds something, so a fresh
    /// staging family stays free of tombstones (ingested files then need no
    /// sequence number of their own).
    func clearRangeIfOccupied(_ range: ShardRange, in family: ColumnFamily) throws {
        let bounds = range.storedBounds
        if try isOccupied(family, from: bounds.lower, to: bounds.upper) { try clearRange(range, in: family, reclaim: false) }
    }

    public func importTableFiles(_ plan: MigrationPlan, _ files: [TableFile]) throws -> Bool {
        // One import at a time here: a retried call (its first try still running)
        // waits, then finds the bulk copy done, instead of racing for the staging folder.
        migrationRuntime.importLock.lock()
        defer { migrationRuntime.importLock.unlock() }
        // And never beside a write of this migration's files (``writeTableFile``).
        return try migrationRuntime.serialized(plan.id) { try importTableFilesAlone(plan, files) }
    }

    private func importTableFilesAlone(_ plan: MigrationPlan, _ files: [TableFile]) throws -> Bool {
        guard var progress = try progressRecord(for: plan) else {
            throw ShardDBError(.migrationConflict, "migration \(plan.id) is not prepared on this target")
        }
        guard case .newShard = plan.shape, plan.overlap == nil, !files.isEmpty else { return false }
        if progress.bulkDone { return true }
        // The import raises this instance's sequence number to the files' largest
        // without a log record: an outgoing migration tailing this changelog would
        // meet a gap there. Its ``openBulk(_:)`` takes the shard-map lock too.
        func outgoingMigrationReadsChangelog() throws -> Bool {
            guard let busy = try outgoingMigrationReadingChangelog() else { return false }
            logger.info("bulk copy as entries: an outgoing migration reads this changelog",
                        metadata: ["id": "\(plan.id)", "outgoing": "\(busy)"])
            return true
        }
        let staging = try tableImportDirectory(plan.id)
        defer { try? FileManager.default.removeItem(atPath: staging) }
        if try outgoingMigrationReadsChangelog() { return false }
        let staged: [TableFile]
        if files.allSatisfy({ $0.directory.isEmpty }) {
            staged = try checkSentTableFiles(files, in: staging)
        } else if files.allSatisfy({ !$0.directory.isEmpty }) {
            staged = try stageTableFiles(files, in: staging)
        } else {
            throw ShardDBError(.invalidArgument, "migration \(plan.id): some table files were sent, some are to be read")
        }
        return try shardMapLock.withLock { _ -> Bool in
            // Again under the lock: the progress may have changed while the files were
            // staged (an abort removed it), and a family marked done is never dropped.
            guard let current = try progressRecord(plan.id) else {
                throw ShardDBError(.migrationConflict, "migration \(plan.id) is not prepared on this target")
            }
            if current.bulkDone { return true }
            progress = current
            if try outgoingMigrationReadsChangelog() { return false }
            if let taken = table.shard(id: plan.targetShard) {
                throw ShardDBError(.migrationConflict, "shard id \(plan.targetShard) is already used here (\(taken.descriptor.range))")
            }
            let name = "shard-\(plan.targetShard)"
            try storage(path) {
                // The staging family becomes the files: drop the empty (or stale) one first.
                if database.columnFamilyNames.contains(name) { try database.dropColumnFamily(named: name) }
                let (familyOptions, filter) = Self.shardOptions(base: try Self.baseOptions(options), shard: plan.targetShard, options: options)
                shardFilters.withLock { $0[plan.targetShard] = filter }
                let family: ColumnFamily
                do {
                    family = try database.createColumnFamily(named: name, options: familyOptions, importing: staged, moveFiles: true)
                } catch {
                    _ = try? stagingFamily(for: plan, create: true)  // back to an empty staging area
                    throw error
                }
                // Keys outside the range never go live: a source that crashed before cleaning
                // up after a split still holds the moved-out keys in this family's files.
                let bounds = plan.range.storedBounds
                if !bounds.lower.isEmpty, try isOccupied(family, from: [], to: bounds.lower) {
                    try clearStored(from: [], to: bounds.lower, in: family, reclaim: false)
                }
                if let upper = bounds.upper, try isOccupied(family, from: upper, to: nil) {
                    try clearStored(from: upper, to: nil, in: family, reclaim: false)
                }
            }
            DurableFile.syncDirectory(path)  // the linked files' names
            try FailurePoints.hit("migration.target.tables-imported")
            progress.bulkDone = true
            let batch = WriteBatch()
            try batch.put(MigrationKeys.progress(plan.id), MetadataCoding.encode(progress), in: metadata)
            try durableWrite(batch)
            return true
        }
    }

    /// Brings exported table files onto this instance's file system, in `directory`:
    /// hard links where ``ShardEngineOptions/migrationLinkTableFiles`` allows and the
    /// file system can, else copies (sendfile, fsync'd). The import then links them in.
    private func stageTableFiles(_ files: [TableFile], in directory: String) throws -> [TableFile] {
        try? FileManager.default.removeItem(atPath: directory)
        try storage(path) { try FileManager.default.createDirectory(atPath: directory, withIntermediateDirectories: true) }
        var linkable = options.migrationLinkTableFiles
        var staged: [TableFile] = []
        for file in files {
            let destination = directory + "/" + file.name
            if linkable && link(file.path, destination) == 0 {
                // Shared with the source's export: neither side ever changes a table file.
            } else {
                linkable = linkable && errno != EXDEV
                try guardedWrite(bytes: Int(file.size)) { try DurableFile.copy(from: file.path, to: destination) }
            }
            var local = file
            local.directory = directory
            staged.append(local)
        }
        DurableFile.syncDirectory(directory)
        return staged
    }

    /// The files ``writeTableFile(_:name:offset:_:)`` received, checked whole and made durable.
    private func checkSentTableFiles(_ files: [TableFile], in directory: String) throws -> [TableFile] {
        try files.map { file in
            try Self.checkTableFileName(file.name)
            let path = directory + "/" + file.name
            let size = (try? FileManager.default.attributesOfItem(atPath: path)[.size] as? UInt64) ?? nil
            guard size == file.size else {
                throw ShardDBError(.invalidArgument, "table file \(file.name) has \(size.map(String.init) ?? "no") bytes here, \(file.size) were exported")
            }
            try DurableFile.sync(path)
            var local = file
            local.directory = directory
            return local
        }
    }

    /// Checks that the migration is prepared here and still takes table files
    /// (a whole shard into a new shard, its bulk copy not done): what a transport
    /// checks before it reads a byte for it.
    ///
    /// - throws: `.migrationConflict` otherwise.
    public func checkTakesTableFiles(_ plan: MigrationPlan) throws {
        guard let progress = try progressRecord(for: plan), !progress.bulkDone, case .newShard = plan.shape, plan.overlap == nil else {
            throw ShardDBError(.migrationConflict, "migration \(plan.id) takes no table files on this target now")
        }
    }

    public func writeTableFile(_ plan: MigrationPlan, name: String, offset: UInt64, _ data: Data) throws {
        try writeTableFile(plan, name: name, offset: offset, data, sync: true)
    }

    /// ``writeTableFile(_:name:offset:_:)``, the piece synced only with `sync`;
    /// otherwise ``syncTableFile(_:name:)`` makes it durable, which can run while
    /// the next piece is written. Pieces must still be written one after the other.
    public func writeTableFile(_ plan: MigrationPlan, name: String, offset: UInt64, _ data: Data, sync: Bool) throws {
        try Self.checkTableFileName(name)
        // Serialized per migration, as applyBulk: a stale call (its deadline passed,
        // its handler still running) must not write beside a newer one, nor after
        // the import took the files.
        try migrationRuntime.serialized(plan.id) {
            try checkTakesTableFiles(plan)
            let directory = try tableImportDirectory(plan.id)
            try guardedWrite(bytes: data.count) {
                try DurableFile.makeDirectory(Self.tableImportFolder(path))
                try DurableFile.makeDirectory(directory)
                try DurableFile.write(data, to: directory + "/" + name, at: offset, sync: sync)
            }
        }
        try FailurePoints.hit("migration.target.table-file-written")
    }

    /// Syncs what ``writeTableFile(_:name:offset:_:sync:)`` wrote to table file
    /// `name` of `plan`, and the file's name: every piece written before the call
    /// is durable after it.
    ///
    /// - throws: `.notWritable`; `.invalidArgument` for a name that is not a table file's.
    public func syncTableFile(_ plan: MigrationPlan, name: String) throws {
        try Self.checkTableFileName(name)
        let directory = try tableImportDirectory(plan.id)
        try DurableFile.sync(directory + "/" + name, dataOnly: true)
        DurableFile.syncDirectory(directory)
    }

    public var importsLocalTableFiles: Bool { true }

    /// No limit: an engine in this process takes chunks of any size (both
    /// protocols give the same default; ShardEngine is both).
    public var largestBulkChunkBytes: Int { .max }

    /// Where ``importTableFiles(_:_:)`` stages a migration's files; removed after
    /// the import, at commit and abort, and at open unless the migration is still
    /// copying (a pull or relay resumes into it: ``recoverMigrationsAtOpen()``).
    ///
    /// - throws: `.invalidArgument` for an id that could name another folder.
    func tableImportDirectory(_ id: String) throws -> String {
        try MigrationPlan.checkID(id)
        return Self.tableImportFolder(path) + "/" + id
    }
    static func tableImportFolder(_ path: String) -> String { path + "/migration-import" }

    /// The id of a migration out of this instance that reads (or is about to read)
    /// its changelog: one in its bulk copy or fenced. A write that raises the
    /// sequence number without a log record would be a gap in that changelog.
    /// Stable while the caller holds the shard-map lock (``openBulk(_:)`` takes it).
    func outgoingMigrationReadingChangelog() throws -> String? {
        try migrationJournal().first(where: { $0.role == .source && [.bulkCopy, .fenced].contains($0.phase) })?.plan.id
    }

    /// True when `family` holds a stored key from `lower` up to `upper`.
    private func isOccupied(_ family: ColumnFamily, from lower: [UInt8], to upper: [UInt8]?) throws -> Bool {
        let iterator = try database.makeIterator(in: family, lowerBound: lower, upperBound: upper)
        iterator.seekToFirst()
        let occupied = iterator.isValid
        try iterator.checkStatus()
        return occupied
    }

    public func applyBulk(_ plan: MigrationPlan, _ chunk: BulkChunk) throws {
        try applyBulk(plan, [chunk])
    }

    /// Applies consecutive chunks of one bulk copy (each resuming after the
    /// previous one's last key, as the source read them) as one: one table file
    /// (or one write batch) and one progress record, at the last chunk's position.
    /// A transport that receives small chunks, to keep few bytes in flight,
    /// writes them in big groups this way: a table file and its ingestion cost
    /// the same for 1 MiB as for 4.
    ///
    /// - throws: `.migrationConflict` when the migration is not prepared here;
    ///   `.invalidArgument` when a chunk other than the last says the copy is done.
    public func applyBulk(_ plan: MigrationPlan, _ chunks: [BulkChunk]) throws {
        try applyBulk(plan, chunks, durable: false)
    }

    /// ``applyBulk(_:_:)-([BulkChunk])`` for a coordinator in another process, which
    /// takes the return as "applied for good" and never sends these chunks again:
    /// chunks that went through the log (and the last one, which says the copy is
    /// done) are synced before it returns, so a power loss of this machine cannot
    /// take them back (ingested table files are durable when ingested). In one
    /// process the coordinator dies with the engine, and re-reads the progress.
    public func applyBulk(_ plan: MigrationPlan, _ chunks: [BulkChunk], durable: Bool) throws {
        // One call per migration at a time: a late retry overlapping the call it
        // repeats (or a newer one) would read the progress before the other wrote it.
        try checkPrepared(plan)  // (refused before waiting for the call lock)
        let written = try migrationRuntime.serialized(plan.id) { try applyBulkSerialized(plan, chunks) }
        if durable, let written { try syncWAL(through: written) }
    }

    /// - throws: `.migrationConflict` unless `plan` is the journaled plan of a
    ///   migration this target took part in (the progress is read under the lock).
    private func checkPrepared(_ plan: MigrationPlan) throws {
        guard let entry = try journalEntry(for: plan), entry.role == .target else {
            throw ShardDBError(.migrationConflict, "migration \(plan.id) is not prepared on this target")
        }
    }

    /// - returns: the sequence of the write a durable caller must sync: one that
    ///   carried entries through the log, or said the copy is done; nil otherwise.
    private func applyBulkSerialized(_ plan: MigrationPlan, _ chunks: [BulkChunk]) throws -> UInt64? {
        guard let last = chunks.last else { return nil }
        guard !chunks.dropLast().contains(where: \.done) else {
            throw ShardDBError(.invalidArgument, "migration \(plan.id): a bulk chunk marked done is followed by another")
        }
        // In key order, as read: a table file needs it, and progress must not move back.
        var previous: [UInt8]?
        for chunk in chunks {
            if let first = chunk.firstEntryKey, let previous, !previous.lexicographicallyPrecedes(first) {
                throw ShardDBError(.invalidArgument, "migration \(plan.id): bulk chunks out of key order")
            }
            previous = chunk.lastEntryKey ?? previous
        }
        guard var progress = try progressRecord(plan.id) else {
            throw ShardDBError(.migrationConflict, "migration \(plan.id) is not prepared on this target")
        }
        if progress.bulkDone {
            // The staged copy may hold changes newer than the snapshot by now, which an
            // old chunk (replayed, or a late retry) would overwrite: nothing is written.
            // A retry of what was applied is answered as applied; anything else is refused.
            let resume = progress.bulkResumeKey.flatMap(ByteText.unhex)
            let applied = chunks.allSatisfy { chunk in
                guard let lastEntry = chunk.lastEntryKey else { return true }
                return resume.map { !$0.lexicographicallyPrecedes(lastEntry) } ?? false
            }
            guard applied else {
                throw ShardDBError(.migrationConflict, "migration \(plan.id): the bulk copy is done here; a chunk past its end is refused")
            }
            // (Applied by an earlier call, whose write may not be synced yet.)
            return try latestSequenceNumber()
        }
        let family = try stagingFamily(for: plan, create: false)
        let overlapFamily = try self.overlapFamily(for: plan, create: false)
        let batch = WriteBatch()
        let bytes = chunks.reduce(0) { $0 + $1.bytes }
        // Big chunks become table files ingested whole (no WAL, no memtable, no
        // compaction of the copy); small ones a write batch (docs/MIGRATION.md).
        if bytes >= options.migrationIngestMinBytes, chunks.contains(where: { !$0.isEmpty }) {
            if let overlap = plan.overlap?.storedBounds, let overlapFamily {
                try ingest(chunks, into: family, plan: plan, orInto: batch) { !ShardRange.stored($0, within: overlap) }
                try ingest(chunks, into: overlapFamily, plan: plan, orInto: batch) { ShardRange.stored($0, within: overlap) }
            } else {
                try ingest(chunks, into: family, plan: plan, orInto: batch) { _ in true }
            }
            // Ingested and durable (or in `batch`, written with the progress below); the
            // progress may still be lost in a crash, and then the chunk is applied again:
            // same keys, same values.
            try FailurePoints.hit("migration.target.bulk-ingested")
        } else {
            for chunk in chunks {
                if let overlap = plan.overlap?.storedBounds, let overlapFamily {
                    try chunk.forEachEntry { key, value in
                        try batch.put(key, value, in: ShardRange.stored(key, within: overlap) ? overlapFamily : family)
                    }
                } else {
                    try chunk.forEachEntry { key, value in try batch.put(key, value, in: family) }
                }
            }
        }
        progress.bulkResumeKey = chunks.reversed().lazy.compactMap(\.lastKey).first.map { ByteText.hex($0) } ?? progress.bulkResumeKey
        progress.bulkDone = last.done
        // Data and progress in one atomic write (or the progress right after the
        // ingestion): a restart resumes exactly after this chunk.
        try batch.put(MigrationKeys.progress(plan.id), MetadataCoding.encode(progress), in: metadata)
        // Behind the disk-space guard like application writes: the bulk copy is the
        // biggest writer a target has (docs/CRASH_TESTING.md, "Disk full").
        let throughLog = batch.count > 1  // (entries besides the progress record)
        try guardedWrite(bytes: batch.byteSize) { try database.write(batch) }
        try FailurePoints.hit("migration.target.bulk-chunk")
        return throughLog || last.done ? try latestSequenceNumber() : nil
    }

    /// Writes the entries of `chunks` (sorted stored keys, chunk after chunk) that
    /// `include` accepts to one table file beside the database and ingests it into
    /// `family`; or puts them in `batch` when the file overlaps what the family
    /// holds while an outgoing migration reads this instance's changelog.
    ///
    /// A file that overlaps nothing goes in without a sequence number of its own.
    /// One that overlaps keys or range tombstones (a chunk applied again after a
    /// crash between its ingestion and its progress, or a range an earlier attempt
    /// staged and cleared) would take one that no log record carries: a gap in
    /// this instance's changelog. It is ingested so only while no outgoing
    /// migration reads the changelog (checked under the shard-map lock, which
    /// ``openBulk(_:)`` takes); otherwise its entries go through the log, in the
    /// write that also records the progress.
    private func ingest(_ chunks: [BulkChunk], into family: ColumnFamily, plan: MigrationPlan, orInto batch: WriteBatch,
                        include: (UnsafeRawBufferPointer) -> Bool) throws {
        var bytes = 0
        for chunk in chunks { chunk.forEachEntry { key, value in if include(key) { bytes += key.count + value.count } } }
        guard bytes > 0 else { return }  // nothing of these chunks goes to `family`
        let directory = path + "/migration-ingest"
        let file = directory + "/\(plan.id)-\(UUID().uuidString).sst"
        defer { try? FileManager.default.removeItem(atPath: file) }
        try guardedWrite(bytes: bytes) {
            try FileManager.default.createDirectory(atPath: directory, withIntermediateDirectories: true)
            let writer = try SstFileWriter(path: file, options: try Self.baseOptions(options))
            for chunk in chunks {
                try chunk.forEachEntry { key, value in
                    guard include(key) else { return }
                    try writer.put(key, value)
                }
            }
            try writer.finish()
            // No snapshot ever reads a staging family, and with snapshot consistency on,
            // any snapshot this instance holds (its own outgoing migration's bulk
            // snapshot) would give the file a sequence number that no WAL record
            // carries: that migration's changelog would stop at a gap.
            do {
                try database.ingestExternalFiles([file], into: family, moveFiles: true, snapshotConsistency: false,
                                                 allowGlobalSequenceNumber: false)
                return
            } catch where Database.isGlobalSequenceNumberRequired(error) {}
            let outgoing: String? = try shardMapLock.withLock { _ in
                if let outgoing = try outgoingMigrationReadingChangelog() { return outgoing }
                try database.ingestExternalFiles([file], into: family, moveFiles: true, snapshotConsistency: false)
                return nil
            }
            guard let outgoing else { return }
            logger.info("bulk chunk written through the log: it overlaps staged data, and an outgoing migration reads this changelog",
                        metadata: ["id": "\(plan.id)", "outgoing": "\(outgoing)"])
            for chunk in chunks {
                try chunk.forEachEntry { key, value in
                    guard include(key) else { return }
                    try batch.put(key, value, in: family)
                }
            }
        }
    }

    public func applyChanges(_ plan: MigrationPlan, _ chunk: ChangeChunk) throws {
        try applyChanges(plan, chunk, durable: false)
    }

    /// ``applyChanges(_:_:)`` for a coordinator in another process: the changes
    /// and the progress are synced before it returns (``applyBulk(_:_:durable:)``).
    public func applyChanges(_ plan: MigrationPlan, _ chunk: ChangeChunk, durable: Bool) throws {
        // Serialized as applyBulk: a stale call that read the progress before a newer
        // chunk was applied would write older values over it.
        try checkPrepared(plan)
        let written = try migrationRuntime.serialized(plan.id) { try applyChangesSerialized(plan, chunk) }
        if durable, let written { try syncWAL(through: written) }
    }

    /// - returns: the sequence of its write; nil when it wrote nothing (a chunk with
    ///   nothing past the progress: what an earlier call wrote, it synced).
    private func applyChangesSerialized(_ plan: MigrationPlan, _ chunk: ChangeChunk) throws -> UInt64? {
        guard var progress = try progressRecord(plan.id) else {
            throw ShardDBError(.migrationConflict, "migration \(plan.id) is not prepared on this target")
        }
        guard progress.bulkDone else {
            throw ShardDBError(.migrationConflict, "migration \(plan.id): changes offered before the bulk copy finished")
        }
        // What the source's changelog can say: sequences of RocksDB (at most 2^56 - 1), each record before the next.
        guard (1...Self.maxSequence + 1).contains(chunk.nextSequence),
              chunk.records.allSatisfy({ $0.sequence < chunk.nextSequence }) else {
            throw ShardDBError(.invalidArgument, "migration \(plan.id): change chunk with next sequence \(chunk.nextSequence) "
                + "and records up to \(chunk.records.map(\.sequence).max() ?? 0)")
        }
        if chunk.nextSequence <= progress.appliedThrough + 1 && chunk.records.isEmpty { return nil }
        try FailurePoints.hit("migration.target.applying-changes")
        let staging = try stagingFamily(for: plan, create: false)
        let overlapFamily = try self.overlapFamily(for: plan, create: false)
        let overlap = plan.overlap
        let now = clock.nowMilliseconds()
        let batch = WriteBatch()
        for record in chunk.records where record.sequence > progress.appliedThrough {
            // Keys the target already owns are staged apart (their target values stay untouched until commit).
            let family = overlap.map { $0.containsStored(record.storedKey) } == true ? overlapFamily! : staging
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
                guard let overlap, let overlapFamily else {
                    try batch.deleteRange(from: record.storedKey, to: end, in: staging)
                    continue
                }
                // Split at the overlap's bounds: never delete the target shard's own keys.
                let o = overlap.storedBounds
                func clip(_ lower: [UInt8], _ upper: [UInt8]?, in f: ColumnFamily) throws {
                    let b = record.storedKey.lexicographicallyPrecedes(lower) ? lower : record.storedKey
                    let e = upper.map { end.lexicographicallyPrecedes($0) ? end : $0 } ?? end
                    if b.lexicographicallyPrecedes(e) { try batch.deleteRange(from: b, to: e, in: f) }
                }
                try clip(o.lower, o.upper, in: overlapFamily)
                try clip([], o.lower, in: staging)
                if let upper = o.upper { try clip(upper, nil, in: staging) }
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
        try guardedWrite(bytes: batch.byteSize) { try database.write(batch) }
        try FailurePoints.hit("migration.target.changes")
        return try latestSequenceNumber()
    }

    public func commitIncoming(_ plan: MigrationPlan, finalSequence: UInt64) throws {
        guard var entry = try journalEntry(for: plan), entry.role == .target else {
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
        let committedNow = try shardMapLock.withLock { _ -> Bool in
            // Again under the lock, which an abort also takes: the two never both run,
            // and a commit that lost the race to an abort fails (the coordinator rolls back).
            guard let current = try migrationEntry(plan.id) else {
                throw ShardDBError(.migrationConflict, "migration \(plan.id) is unknown on this target")
            }
            if current.phase == .committed { return false }
            guard current.isUnfinished else {
                throw ShardDBError(.migrationConflict, "migration \(plan.id) was \(current.phase.rawValue) on the target; it cannot commit")
            }
            entry = current
            try commitIncomingLocked(plan, finalSequence: finalSequence, entry: &entry)
            return true
        }
        guard committedNow else { return }
        migrationRuntime.clear(plan.id)
        // Table files sent for an import that did not happen (the bulk went as entries).
        if let sent = try? tableImportDirectory(plan.id) { try? FileManager.default.removeItem(atPath: sent) }
        if plan.overlap != nil {
            // The commit is durable: failing here would send the coordinator down the
            // roll-back path for a migration that committed (and leave the source
            // fenced until a resolve). Opening the instance drops a leftover staging
            // family, so a failed drop only costs space until then.
            do { try dropOverlapFamily(plan.id) } catch {
                logger.warning("could not drop the staging family of a committed migration; it is dropped at the next open",
                               metadata: ["id": "\(plan.id)", "error": "\(error)"])
            }
        }
        logger.debug("migration committed (target)", metadata: ["id": "\(plan.id)", "shard": "\(plan.targetShard)"])
        try FailurePoints.hit("migration.target.committed")
    }

    /// The target's commit, under ``shardMapLock``.
    private func commitIncomingLocked(_ plan: MigrationPlan, finalSequence: UInt64, entry: inout MigrationJournalEntry) throws {
        let family = try stagingFamily(for: plan, create: false)
        let current = table
        let descriptor: ShardDescriptor
        switch plan.shape {
        case .newShard:
            // Reserved by this migration's journal entry since its prepare; a record
            // under that id now would be overwritten: refuse (the migration rolls back).
            if let taken = current.shard(id: plan.targetShard) {
                throw ShardDBError(.migrationConflict, "shard id \(plan.targetShard) is already used here (\(taken.descriptor.range))")
            }
            descriptor = ShardDescriptor(id: plan.targetShard, range: plan.range, defaultTTLSeconds: plan.defaultTTLSeconds)
        case .mergeInto(let id):
            guard let shard = current.shard(id: id), shard.isActive, let merged = shard.descriptor.range.union(with: plan.range) else {
                throw ShardDBError(.migrationConflict, "shard \(id) can no longer take \(plan.range)")
            }
            var grown = shard.descriptor
            grown.range = merged
            descriptor = grown
        }
        // Ownership switches in one atomic, durable write: shard record + journal
        // (+ the merged overlap, decided key by key under the plan's policy).
        let batch = WriteBatch()
        var overlapFence: Fence?
        if let overlap = plan.overlap {
            // Hold the target's own writes to the overlap while its keys are compared and merged.
            let fence = Fence(range: overlap, migrationID: plan.id)
            writeGate.withWriteLock { _ = updateTable { $0.replacing(fences: $0.fences + [fence]) } }
            overlapFence = fence
        }
        do {
            if let overlap = plan.overlap, let overlapFamily = try overlapFamily(for: plan, create: false) {
                try mergeOverlap(plan, overlap, from: overlapFamily, into: family, batch: batch)
            }
            try batch.put(Array(MetadataKey.shard(descriptor.id).utf8), MetadataCoding.encode(ShardRecord(descriptor)), in: metadata)
            try batch.delete(MigrationKeys.progress(plan.id), in: metadata)
            entry.phase = .committed
            entry.finalSequence = finalSequence
            try journal(entry, in: batch)
            // The overlap's merged values go into the live family in this batch: a failed
            // sync must leave them unapplied, since lifting the overlap fence would show them.
            try durableWrite(batch, syncInQueue: plan.overlap != nil)
        } catch {
            if let overlapFence { removeFence(overlapFence, outcome: .released) }
            throw error
        }
        let filter = shardFilters.withLock { $0[descriptor.id] }
        updateTable { table in
            table.replacing(shards: table.shards.filter { $0.id != descriptor.id }
                + [Shard(descriptor: descriptor, family: family, expiryFilter: filter)],
                fences: table.fences.filter { $0 !== overlapFence })
        }
        // Waiters retry against the new table: the shard owns the overlap as before.
        overlapFence?.resolve(.released)
    }

    /// Adds to `batch` the source's staged entries of the overlap that win over
    /// the target shard's values under the plan's policy. The overlap is fenced
    /// on this instance, so the target values compared cannot change meanwhile.
    /// A key only the target holds keeps its value; a key the source deleted or
    /// let expire has no staged entry and changes nothing.
    ///
    /// - throws: `.migrationConflict` under last-write-wins for a key stamped on neither side.
    private func mergeOverlap(_ plan: MigrationPlan, _ overlap: ShardRange, from staged: ColumnFamily, into family: ColumnFamily,
                              batch: WriteBatch) throws {
        let policy = plan.conflictPolicy
        let bounds = overlap.storedBounds
        let now = clock.nowMilliseconds()
        let hashed = table.isHashed
        // Errors name the key as the application wrote it, not its stored form.
        func shown(_ stored: [UInt8]) -> String {
            stored.withUnsafeBytes { ByteText.display([UInt8](KeyEncoding.userKey($0, hashed: hashed && stored.count >= 2))) }
        }
        try storage(path) {
            let iterator = try database.makeIterator(in: staged, lowerBound: bounds.lower, upperBound: bounds.upper, fillCache: false)
            iterator.seekToFirst()
            while iterator.isValid {
                let key = iterator.key, sourceValue = iterator.value
                guard let sourceHeader = sourceValue.withUnsafeBytes({ ValueHeader.parse($0)?.0 }) else {
                    let reason = sourceValue.withUnsafeBytes { ValueHeader.describeCorruption($0) }
                    throw ShardDBError(.corruptedValue, "migration \(plan.id): staged key '\(shown(key))': \(reason)")
                }
                if !sourceHeader.isExpired(at: now) {
                    let targetHeader = try database.withValue(forKey: key, in: family) { stored -> ValueHeader in
                        guard let (header, _) = ValueHeader.parse(stored) else {
                            throw ShardDBError(.corruptedValue, "key '\(shown(key))': \(ValueHeader.describeCorruption(stored))")
                        }
                        return header
                    }
                    let sourceWins: Bool
                    if let targetHeader, !targetHeader.isExpired(at: now) {
                        switch policy {
                        case .refuse:
                            throw ShardDBError(.migrationConflict, "migration \(plan.id): key '\(shown(key))' is held on both sides")
                        case .sourceWins: sourceWins = true
                        case .targetWins: sourceWins = false
                        case .lastWriteWins:
                            switch (sourceHeader.writtenAtMilliseconds, targetHeader.writtenAtMilliseconds) {
                            case (nil, nil):
                                throw ShardDBError(.migrationConflict,
                                    "last-write-wins cannot order key '\(shown(key))': neither side has a write time (open the engines with stampWriteTime)")
                            case (.some, nil): sourceWins = true
                            case (nil, .some): sourceWins = false
                            case let (s?, t?): sourceWins = s > t
                            }
                        }
                    } else {
                        sourceWins = true  // absent or expired on the target: no conflict
                    }
                    if sourceWins { try batch.put(key, sourceValue, in: family) }
                }
                iterator.next()
            }
            try iterator.checkStatus()
        }
    }

    /// Drops an overlap's staging family (after commit or abort; again at open if a crash came first).
    func dropOverlapFamily(_ id: String) throws {
        let name = Self.overlapFamilyName(id)
        try storage(path) {
            if database.columnFamilyNames.contains(name) { try database.dropColumnFamily(named: name) }
        }
    }

    public func abortIncoming(_ plan: MigrationPlan) throws {
        // After any apply call of the migration still running (one the coordinator gave
        // up on goes on in its handler): it checked the progress before the abort and
        // would write its entries, progress and phase after it. Then under the
        // shard-map lock, which a commit also takes: the two never both run.
        // (Call lock, then shard-map lock: the order of the apply calls' own.)
        let aborted = try migrationRuntime.serialized(plan.id) {
            try shardMapLock.withLock { _ in try abortIncomingLocked(plan) }
        }
        guard aborted else { return }
        migrationRuntime.clear(plan.id)
        logger.debug("migration aborted (target)", metadata: ["id": "\(plan.id)"])
    }

    /// - returns: false when there was nothing to abort.
    private func abortIncomingLocked(_ plan: MigrationPlan) throws -> Bool {
        guard var entry = try journalEntry(for: plan), entry.role == .target else { return false }
        guard entry.isUnfinished else {
            if entry.phase == .committed {
                throw ShardDBError(.migrationConflict, "migration \(plan.id) is committed on the target; it cannot be aborted")
            }
            return false
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
                // Only the staged parts: an overlap is the shard's own live data.
                if let family = try? stagingFamily(for: plan, create: false) {
                    for piece in stagedPieces(plan) { try clearRange(piece, in: family, reclaim: false) }
                }
            }
        }
        try dropOverlapFamily(plan.id)
        if let sent = try? tableImportDirectory(plan.id) { try? FileManager.default.removeItem(atPath: sent) }
        let batch = WriteBatch()
        try batch.delete(MigrationKeys.progress(plan.id), in: metadata)
        entry.phase = .aborted
        try journal(entry, in: batch)
        try durableWrite(batch)
        return true
    }
}
