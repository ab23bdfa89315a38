import Foundation
import RocksDB

/// One migration as recorded in an instance's metadata (`migration/<id>`).
/// Both instances keep one; docs/MIGRATION.md gives the decision table that
/// turns a pair of entries into "resume", "commit" or "roll back" after a crash.
public struct MigrationJournalEntry: Sendable, Equatable, Codable {
    public enum Role: String, Sendable, Codable { case source, target }

    public enum Phase: String, Sendable, Codable {
        /// Validated; the target has a staging area (invisible to reads).
        case prepared
        /// Copying the snapshot.
        case bulkCopy
        /// Tailing the source's changelog into staging.
        case catchUp
        /// Source only: the range is fenced at `finalSequence`; the decision is the target's.
        case fenced
        /// Target: the range is live here. Source: recorded as moved to the target.
        case committed
        /// Source only: the moved range's data is gone from the source.
        case cleaned
        /// Rolled back: the source owns the range; the target kept nothing.
        case aborted
    }

    public var plan: MigrationPlan
    public var role: Role
    public var phase: Phase
    /// Sequence number of the source snapshot the bulk copy read.
    public var snapshotSequence: UInt64?
    /// Source sequence number after which no write to the range can exist (set when fenced).
    public var finalSequence: UInt64?
    public var updatedAtMilliseconds: Int64

    public init(plan: MigrationPlan, role: Role, phase: Phase, snapshotSequence: UInt64? = nil, finalSequence: UInt64? = nil,
                updatedAtMilliseconds: Int64) {
        self.plan = plan
        self.role = role
        self.phase = phase
        self.snapshotSequence = snapshotSequence
        self.finalSequence = finalSequence
        self.updatedAtMilliseconds = updatedAtMilliseconds
    }

    /// True when the migration still needs work or a decision.
    public var isUnfinished: Bool {
        switch (role, phase) {
        case (_, .aborted), (.source, .cleaned), (.target, .committed): return false
        default: return true
        }
    }
}

/// The target's progress, written in the same atomic batch as the data it describes.
struct MigrationProgressRecord: Codable, Equatable {
    var snapshotSequence: UInt64
    /// Last stored key copied by the bulk phase (hex); nil before the first chunk.
    var bulkResumeKey: String?
    var bulkDone: Bool
    /// Every source change with a sequence number at or below this is applied.
    var appliedThrough: UInt64
}

enum MigrationKeys {
    static let journalPrefix = "migration/"
    static let progressPrefix = "migration-progress/"
    static func journal(_ id: String) -> [UInt8] { Array((journalPrefix + id).utf8) }
    static func progress(_ id: String) -> [UInt8] { Array((progressPrefix + id).utf8) }
}

extension ShardEngine {
    /// Every migration recorded in this instance's journal, oldest first.
    public func migrationJournal() throws -> [MigrationJournalEntry] {
        var entries: [MigrationJournalEntry] = []
        try readBookkeeping { try storage(path) {
            let prefix = Array(MigrationKeys.journalPrefix.utf8)
            let iterator = try database.makeIterator(in: metadata, lowerBound: prefix, upperBound: KeyEncoding.prefixSuccessor(prefix))
            iterator.seekToFirst()
            while iterator.isValid {
                let key = String(decoding: iterator.key, as: UTF8.self)
                entries.append(try Self.decodeMeta(MigrationJournalEntry.self, iterator.value, key: key, path: path))
                iterator.next()
            }
            try iterator.checkStatus()
        } }
        return entries.sorted { $0.updatedAtMilliseconds < $1.updatedAtMilliseconds }
    }

    /// The journal entry of migration `id`, if any.
    public func migrationEntry(_ id: String) throws -> MigrationJournalEntry? {
        guard let bytes = try readBookkeeping({ try storage(path, { try database.get(MigrationKeys.journal(id), in: metadata) }) })
        else { return nil }
        // Every bulk chunk and table-file piece checks the journal: decoding its JSON
        // each time cost about 45 µs a call, a few percent of a move's CPU.
        if let known = migrationRuntime.decodedEntry(id, stored: bytes) { return known }
        let entry = try Self.decodeMeta(MigrationJournalEntry.self, bytes, key: "migration/\(id)", path: path)
        migrationRuntime.rememberDecoded(id, entry, stored: bytes)
        return entry
    }

    /// The journal entry of `plan`'s migration, if any, once it is known to
    /// record this very plan. Every step a peer asks for names its migration by
    /// the plan it sends; a stale or forged plan under a journaled id (another
    /// range, shard or shape) must not steer that migration's reads, writes or
    /// fences to what it names instead of what was prepared.
    ///
    /// - throws: `.migrationConflict` when the journal records another plan under the id.
    func journalEntry(for plan: MigrationPlan) throws -> MigrationJournalEntry? {
        guard let entry = try migrationEntry(plan.id) else { return nil }
        guard entry.plan == plan else {
            throw ShardDBError(.migrationConflict, "migration \(plan.id) was prepared here with another plan "
                + "(shard \(entry.plan.sourceShard) \(entry.plan.range) → \(entry.plan.targetShard)); this request's differs")
        }
        return entry
    }

    /// Adds the journal entry to `batch`.
    func journal(_ entry: MigrationJournalEntry, in batch: WriteBatch) throws {
        var entry = entry
        entry.updatedAtMilliseconds = clock.nowMilliseconds()
        try batch.put(MigrationKeys.journal(entry.plan.id), MetadataCoding.encode(entry), in: metadata)
    }

    /// Writes the journal entry durably on its own (``durableWrite(_:)``).
    func writeJournal(_ entry: MigrationJournalEntry) throws {
        let batch = WriteBatch()
        try journal(entry, in: batch)
        try durableWrite(batch)
    }

    /// The target's progress in `plan`'s migration, once the journal is known to
    /// record this very plan (``journalEntry(for:)``).
    func progressRecord(for plan: MigrationPlan) throws -> MigrationProgressRecord? {
        _ = try journalEntry(for: plan)
        return try progressRecord(plan.id)
    }

    func progressRecord(_ id: String) throws -> MigrationProgressRecord? {
        guard let bytes = try readBookkeeping({ try storage(path, { try database.get(MigrationKeys.progress(id), in: metadata) }) })
        else { return nil }
        return try Self.decodeMeta(MigrationProgressRecord.self, bytes, key: "migration-progress/\(id)", path: path)
    }
}
