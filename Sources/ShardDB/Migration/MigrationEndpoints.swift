import Foundation
import RocksDB

/// What a peer needs to know about an instance to plan a migration with it.
public struct InstanceDescription: Sendable, Equatable {
    public var instanceID: String
    /// Where the instance can be reached: its directory, or host:port.
    public var location: String
    public var partitioning: Partitioning
    public var shards: [ShardDescriptor]
    public var unfinishedMigrations: [MigrationJournalEntry]

    public init(instanceID: String, location: String, partitioning: Partitioning, shards: [ShardDescriptor],
                unfinishedMigrations: [MigrationJournalEntry]) {
        self.instanceID = instanceID
        self.location = location
        self.partitioning = partitioning
        self.shards = shards
        self.unfinishedMigrations = unfinishedMigrations
    }
}

/// Entries of the bulk phase, in stored form (key-group prefix, value header).
public struct BulkChunk: Sendable, Equatable {
    public var entries: [(key: [UInt8], value: [UInt8])] { didSet { encoded = nil } }
    /// The last stored key read (copied or skipped as expired); resume after it.
    public var lastKey: [UInt8]? { didSet { encoded = nil } }
    /// True when the range is exhausted.
    public var done: Bool { didSet { encoded = nil } }
    public var bytes: Int
    /// The chunk as a transport received it, opaque to the engine: a transport
    /// that sends the chunk on forwards these bytes (and their checksum, end to
    /// end) instead of encoding the entries again. Changing the chunk drops it.
    public var encoded: (any Sendable)?

    public init(entries: [(key: [UInt8], value: [UInt8])], lastKey: [UInt8]?, done: Bool, bytes: Int) {
        self.entries = entries
        self.lastKey = lastKey
        self.done = done
        self.bytes = bytes
    }

    public static func == (a: BulkChunk, b: BulkChunk) -> Bool {
        a.lastKey == b.lastKey && a.done == b.done && a.entries.count == b.entries.count
            && zip(a.entries, b.entries).allSatisfy { $0.key == $1.key && $0.value == $1.value }
    }
}

/// Changelog records of the migrating range.
public struct ChangeChunk: Sendable, Equatable {
    public var records: [ChangeRecord]
    /// Every change below this sequence number has been looked at.
    public var nextSequence: UInt64
    /// The source's latest sequence number when read (for lag).
    public var latestSequence: UInt64

    public init(records: [ChangeRecord], nextSequence: UInt64, latestSequence: UInt64) {
        self.records = records
        self.nextSequence = nextSequence
        self.latestSequence = latestSequence
    }
}

/// Where the target stands in a migration (for resuming).
public struct IncomingState: Sendable, Equatable {
    public var snapshotSequence: UInt64
    public var bulkResumeKey: [UInt8]?
    public var bulkDone: Bool
    public var appliedThrough: UInt64

    public init(snapshotSequence: UInt64, bulkResumeKey: [UInt8]?, bulkDone: Bool, appliedThrough: UInt64) {
        self.snapshotSequence = snapshotSequence
        self.bulkResumeKey = bulkResumeKey
        self.bulkDone = bulkDone
        self.appliedThrough = appliedThrough
    }
}

/// The source side of a migration. ``ShardEngine`` implements it in-process;
/// a network transport implements it by forwarding each call to a remote engine.
public protocol MigrationSource: Sendable {
    func describeInstance() async throws -> InstanceDescription
    /// Validates the plan and journals it (phase prepared).
    func prepareOutgoing(_ plan: MigrationPlan) async throws
    /// Takes the bulk snapshot; returns its sequence number S.
    func openBulk(_ plan: MigrationPlan) async throws -> UInt64
    /// Up to `maxBytes` of live entries after `after` (a stored key), read from the snapshot.
    func readBulk(_ plan: MigrationPlan, after: [UInt8]?, maxBytes: Int) async throws -> BulkChunk
    /// Changelog records of the range from sequence `from`.
    func readChanges(_ plan: MigrationPlan, from: UInt64, maxRecords: Int) async throws -> ChangeChunk
    /// Makes what is already written durable ahead of the cutover, so the
    /// fence's own durable write has little left to sync.
    func prepareCutover(_ plan: MigrationPlan) async throws
    /// Fences the range durably; returns the final sequence F.
    func fenceOutgoing(_ plan: MigrationPlan) async throws -> UInt64
    /// Records the range as moved to the target and releases fenced callers.
    func commitOutgoing(_ plan: MigrationPlan) async throws
    /// Rolls back: the source keeps owning the range.
    func abortOutgoing(_ plan: MigrationPlan) async throws
    /// Removes the moved range's data from the source.
    func cleanupOutgoing(_ plan: MigrationPlan) async throws
    func migrationEntry(_ id: String) async throws -> MigrationJournalEntry?
}

/// The target side of a migration.
public protocol MigrationTarget: Sendable {
    func describeInstance() async throws -> InstanceDescription
    /// Validates, creates the staging area and journals the plan; returns where to resume.
    func prepareIncoming(_ plan: MigrationPlan, snapshotSequence: UInt64) async throws -> IncomingState
    func applyBulk(_ plan: MigrationPlan, _ chunk: BulkChunk) async throws
    func applyChanges(_ plan: MigrationPlan, _ chunk: ChangeChunk) async throws
    /// Makes what is staged durable ahead of the cutover, so the commit's own
    /// durable write has little left to sync.
    func prepareCutover(_ plan: MigrationPlan) async throws
    /// Makes the staged range live here in one atomic write; requires everything through `finalSequence` applied.
    func commitIncoming(_ plan: MigrationPlan, finalSequence: UInt64) async throws
    /// Removes the staging area.
    func abortIncoming(_ plan: MigrationPlan) async throws
    func migrationEntry(_ id: String) async throws -> MigrationJournalEntry?
}

extension MigrationSource {
    /// Default: nothing to prepare (the cutover then syncs more).
    public func prepareCutover(_ plan: MigrationPlan) async throws {}
}

extension MigrationTarget {
    /// Default: nothing to prepare (the commit then syncs more).
    public func prepareCutover(_ plan: MigrationPlan) async throws {}
}

/// In-memory state of migrations this engine takes part in.
final class MigrationRuntime: @unchecked Sendable {
    private let lock = NSLock()
    private var snapshots: [String: Snapshot] = [:]
    private var readers: [String: ChangelogReader] = [:]
    private var fences: [String: Fence] = [:]

    func withLock<R>(_ body: () throws -> R) rethrows -> R {
        lock.lock()
        defer { lock.unlock() }
        return try body()
    }

    func snapshot(_ id: String) -> Snapshot? { withLock { snapshots[id] } }
    func setSnapshot(_ id: String, _ snapshot: Snapshot?) { withLock { snapshots[id] = snapshot } }
    /// The snapshot of `id`, or the one `make` takes (under the lock, so concurrent readers share one).
    func snapshot(_ id: String, orMake make: () throws -> Snapshot) rethrows -> Snapshot {
        try withLock {
            if let snapshot = snapshots[id] { return snapshot }
            let snapshot = try make()
            snapshots[id] = snapshot
            return snapshot
        }
    }
    func reader(_ id: String) -> ChangelogReader? { withLock { readers[id] } }
    func setReader(_ id: String, _ reader: ChangelogReader?) { withLock { readers[id] = reader } }
    func fence(_ id: String) -> Fence? { withLock { fences[id] } }
    func setFence(_ id: String, _ fence: Fence?) { withLock { fences[id] = fence } }

    /// Forgets everything about migration `id`.
    func clear(_ id: String) {
        let snapshot: Snapshot? = withLock {
            readers[id] = nil
            fences[id] = nil
            return snapshots.removeValue(forKey: id)
        }
        snapshot?.release()
    }
}
