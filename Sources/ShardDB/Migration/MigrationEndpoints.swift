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

/// A table file of a whole shard's export, with the metadata an import needs
/// back (the storage layer's type, named here for endpoints that do not import it).
public typealias TableFile = RocksDB.TableFile

/// A bulk chunk or table-file piece as a transport received it, opaque to the
/// engine: a transport that sends it on forwards these bytes (compressed or
/// not, with their checksum, end to end) instead of encoding them again.
public protocol EncodedBulkData: Sendable {
    /// The bytes of data it took on the wire (compressed or not; framing not counted).
    var wireBytes: Int { get }
}

/// Entries of the bulk phase, in stored form (key-group prefix, value header),
/// packed: every key and value back to back in one buffer (key 0, value 0,
/// key 1, ...) with their lengths beside it. A chunk of a hundred thousand
/// entries is three allocations instead of two per entry, and a transport sends
/// the buffer as it is (the wire format is the same layout).
public struct BulkChunk: Sendable, Equatable {
    /// Keys and values back to back.
    public private(set) var data: Data { didSet { encoded = nil } }
    public private(set) var keyLengths: [UInt32] { didSet { encoded = nil } }
    public private(set) var valueLengths: [UInt32] { didSet { encoded = nil } }
    /// The last stored key read (copied or skipped as expired); resume after it.
    public var lastKey: [UInt8]? { didSet { encoded = nil } }
    /// True when the range is exhausted.
    public var done: Bool { didSet { encoded = nil } }
    /// Bytes of keys and values.
    public var bytes: Int { data.count }
    /// The chunk as a transport received it (``EncodedBulkData``). Changing the chunk drops it.
    public var encoded: (any EncodedBulkData)?

    /// An empty chunk with room for about `capacity` bytes of keys and values.
    public init(capacity: Int = 0) {
        data = Data(capacity: capacity)
        keyLengths = []
        valueLengths = []
        lastKey = nil
        done = false
    }

    public init(entries: [(key: [UInt8], value: [UInt8])], lastKey: [UInt8]?, done: Bool) {
        self.init(capacity: entries.reduce(0) { $0 + $1.key.count + $1.value.count })
        for entry in entries { entry.key.withUnsafeBytes { k in entry.value.withUnsafeBytes { append(key: k, value: $0) } } }
        self.lastKey = lastKey
        self.done = done
    }

    /// A chunk from its packed parts, as a transport received them.
    ///
    /// - throws: `.corruptedValue` when the lengths do not add up to the data.
    public init(data: Data, keyLengths: [UInt32], valueLengths: [UInt32], lastKey: [UInt8]?, done: Bool) throws {
        guard keyLengths.count == valueLengths.count else {
            throw ShardDBError(.corruptedValue, "bulk chunk with \(keyLengths.count) keys and \(valueLengths.count) values")
        }
        var total = 0
        for i in keyLengths.indices { total += Int(keyLengths[i]) + Int(valueLengths[i]) }
        guard total == data.count else {
            throw ShardDBError(.corruptedValue, "bulk chunk lengths add up to \(total) bytes, its data has \(data.count)")
        }
        self.data = data
        self.keyLengths = keyLengths
        self.valueLengths = valueLengths
        self.lastKey = lastKey
        self.done = done
    }

    public var count: Int { keyLengths.count }
    public var isEmpty: Bool { keyLengths.isEmpty }

    /// Appends one entry (its bytes are copied).
    public mutating func append(key: UnsafeRawBufferPointer, value: UnsafeRawBufferPointer) {
        data.append(contentsOf: key)
        data.append(contentsOf: value)
        keyLengths.append(UInt32(key.count))
        valueLengths.append(UInt32(value.count))
    }

    /// The key of the first entry, if any (a copy).
    public var firstEntryKey: [UInt8]? {
        guard let keyCount = keyLengths.first else { return nil }
        return [UInt8](data[data.startIndex..<(data.startIndex + Int(keyCount))])
    }

    /// The key of the last entry, if any (a copy).
    public var lastEntryKey: [UInt8]? {
        guard let keyCount = keyLengths.last, let valueCount = valueLengths.last else { return nil }
        let end = data.endIndex - Int(valueCount)
        return [UInt8](data[(end - Int(keyCount))..<end])
    }

    /// Visits every entry in order; the buffers must not escape `body`.
    public func forEachEntry(_ body: (UnsafeRawBufferPointer, UnsafeRawBufferPointer) throws -> Void) rethrows {
        try data.withUnsafeBytes { buffer in
            var offset = 0
            for i in keyLengths.indices {
                let k = Int(keyLengths[i]), v = Int(valueLengths[i])
                try body(UnsafeRawBufferPointer(rebasing: buffer[offset..<offset + k]),
                         UnsafeRawBufferPointer(rebasing: buffer[offset + k..<offset + k + v]))
                offset += k + v
            }
        }
    }

    /// The entries as separate arrays (a copy each: for tests and tools, not hot paths).
    public var entries: [(key: [UInt8], value: [UInt8])] {
        var result: [(key: [UInt8], value: [UInt8])] = []
        result.reserveCapacity(count)
        forEachEntry { result.append(([UInt8]($0), [UInt8]($1))) }
        return result
    }

    public static func == (a: BulkChunk, b: BulkChunk) -> Bool {
        a.lastKey == b.lastKey && a.done == b.done && a.data == b.data
            && a.keyLengths == b.keyLengths && a.valueLengths == b.valueLengths
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

/// Bytes of an exported table file on their way to a target in another process.
public struct TableFilePiece: Sendable, Equatable {
    public var name: String
    public var offset: UInt64
    public var data: Data { didSet { encoded = nil } }
    /// The piece as a transport received it (``EncodedBulkData``). Changing the data drops it.
    public var encoded: (any EncodedBulkData)?

    public init(name: String, offset: UInt64, data: Data, encoded: (any EncodedBulkData)? = nil) {
        self.name = name
        self.offset = offset
        self.data = data
        self.encoded = encoded
    }

    public static func == (a: TableFilePiece, b: TableFilePiece) -> Bool {
        a.name == b.name && a.offset == b.offset && a.data == b.data
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
    /// The plan's whole shard as table files, taken after the bulk snapshot (so
    /// they hold at least everything up to S); nil when the plan moves part of a
    /// shard or this endpoint cannot hand over files (the coordinator then copies
    /// entries with ``readBulk(_:after:maxBytes:)``).
    func exportTableFiles(_ plan: MigrationPlan) async throws -> [TableFile]?
    /// Up to `maxBytes` of an exported table file (by its name) from `offset`; empty past its end.
    func readTableFile(_ plan: MigrationPlan, name: String, offset: UInt64, maxBytes: Int) async throws -> Data
    /// ``readTableFile(_:name:offset:maxBytes:)`` as a piece, with the form the
    /// transport received it in (``TableFilePiece/encoded``), for a coordinator
    /// to forward as it came.
    func readTableFilePiece(_ plan: MigrationPlan, name: String, offset: UInt64, maxBytes: Int) async throws -> TableFilePiece
    /// Removes what ``exportTableFiles(_:)`` left, once the target took the files (or did not).
    func releaseTableFiles(_ plan: MigrationPlan) async throws
    /// True when the exported files' paths can be opened in this process (an
    /// engine here): a target in this process then takes them without a copy.
    var exportsLocalTableFiles: Bool { get }
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
    /// Where a target in another process can reach this source itself (the
    /// address this process reached it at), so that it pulls the bulk copy
    /// directly (``MigrationTarget/pullBulk(_:fromSourceAt:after:maxBytes:applied:)``);
    /// nil when only this process can reach it.
    var peerAddress: String? { get }
    /// The largest bulk chunk (or table-file piece) this endpoint takes or sends in
    /// one message; the coordinator's chunks are no larger.
    var largestBulkChunkBytes: Int { get }
}

/// The target side of a migration.
public protocol MigrationTarget: Sendable {
    func describeInstance() async throws -> InstanceDescription
    /// Validates, creates the staging area and journals the plan; returns where to resume.
    func prepareIncoming(_ plan: MigrationPlan, snapshotSequence: UInt64) async throws -> IncomingState
    /// Makes exported table files of a whole shard the staging area and marks the
    /// bulk copy done; false when this target cannot take them now (the
    /// coordinator then copies entries). A file whose `directory` is empty was
    /// sent whole with ``writeTableFile(_:name:offset:_:)``; others are read
    /// from their path (an engine in the same process).
    func importTableFiles(_ plan: MigrationPlan, _ files: [TableFile]) async throws -> Bool
    /// Writes `data` at `offset` of a table file being sent for import, and
    /// returns once it is durable (a resume after a crash of the machine starts
    /// after the pieces acknowledged). Bytes past the piece stay: every piece is of
    /// the same unchanging file, so a retry from any offset is harmless.
    func writeTableFile(_ plan: MigrationPlan, name: String, offset: UInt64, _ data: Data) async throws
    /// Copies the exported `files` straight from the source at `address`
    /// (``MigrationSource/peerAddress``) with ``writeTableFile(_:name:offset:_:)``
    /// semantics, in order (file after file, each from its start), calling
    /// `written` with the bytes of each piece once written, and what they took
    /// on the network (compressed or not; nil when the target does not say), as
    /// ``pullBulk(_:fromSourceAt:after:maxBytes:applied:)`` does for entries.
    /// False when this target cannot, possibly after some pieces: the coordinator
    /// then sends the rest itself, from the byte after those `written` reported.
    func pullTableFiles(_ plan: MigrationPlan, _ files: [TableFile], fromSourceAt address: String, chunkBytes: Int,
                        written: @escaping @Sendable (_ bytes: Int, _ wireBytes: Int?) -> Void) async throws -> Bool
    /// True when this target can open paths of the source's export (an engine in this process).
    var importsLocalTableFiles: Bool { get }
    func applyBulk(_ plan: MigrationPlan, _ chunk: BulkChunk) async throws
    /// Applies the chunks `next` returns, in order, until it returns nil, and
    /// calls `applied` with each once it is applied (durable here). `next` is
    /// never called while a call of it is running. The default applies them one
    /// by one with ``applyBulk(_:_:)`` while `next` fetches the following one;
    /// a target in another process keeps a few chunks in flight instead, so it
    /// receives chunk n+1 while it writes chunk n.
    func applyBulk(_ plan: MigrationPlan, chunks next: @escaping @Sendable () async throws -> BulkChunk?,
                   applied: @escaping @Sendable (BulkChunk) -> Void) async throws
    /// Writes the pieces `next` returns, in order, with ``writeTableFile(_:name:offset:_:)``
    /// semantics, until it returns nil; `written` is called with each once it is
    /// written (durable). Pipelined as ``applyBulk(_:chunks:applied:)``.
    func writeTableFiles(_ plan: MigrationPlan, pieces next: @escaping @Sendable () async throws -> TableFilePiece?,
                         written: @escaping @Sendable (TableFilePiece) -> Void) async throws
    /// Copies the bulk phase's entries after `after` straight from the source at
    /// `address` (``MigrationSource/peerAddress``), which this target reaches
    /// and authenticates to with credentials of its own, calling `applied` with
    /// each chunk once it is applied; the entries then cross the network once
    /// instead of passing through the coordinator. Returns false, having copied
    /// nothing, when this target cannot do so (not another process, no
    /// credentials for peers, the source unreachable from it, or a server that
    /// predates this call): the coordinator then relays the chunks.
    func pullBulk(_ plan: MigrationPlan, fromSourceAt address: String, after: [UInt8]?, maxBytes: Int,
                  applied: @escaping @Sendable (BulkPullProgress) -> Void) async throws -> Bool
    func applyChanges(_ plan: MigrationPlan, _ chunk: ChangeChunk) async throws
    /// Makes what is staged durable ahead of the cutover, so the commit's own
    /// durable write has little left to sync.
    func prepareCutover(_ plan: MigrationPlan) async throws
    /// Makes the staged range live here in one atomic write; requires everything through `finalSequence` applied.
    func commitIncoming(_ plan: MigrationPlan, finalSequence: UInt64) async throws
    /// Removes the staging area.
    func abortIncoming(_ plan: MigrationPlan) async throws
    func migrationEntry(_ id: String) async throws -> MigrationJournalEntry?
    /// The largest bulk chunk (or table-file piece) this endpoint takes in one
    /// message; the coordinator's chunks are no larger.
    var largestBulkChunkBytes: Int { get }
}

extension MigrationSource {
    /// Default: the bytes of ``readTableFile(_:name:offset:maxBytes:)``, no encoded form.
    public func readTableFilePiece(_ plan: MigrationPlan, name: String, offset: UInt64, maxBytes: Int) async throws -> TableFilePiece {
        TableFilePiece(name: name, offset: offset, data: try await readTableFile(plan, name: name, offset: offset, maxBytes: maxBytes))
    }
    /// Default: nothing to prepare (the cutover then syncs more).
    public func prepareCutover(_ plan: MigrationPlan) async throws {}
    /// Default: nil (an engine in this process: no target elsewhere can reach it).
    public var peerAddress: String? { nil }
    /// Default: no limit (an engine in this process).
    public var largestBulkChunkBytes: Int { .max }
}

extension MigrationTarget {
    /// Default: no limit (an engine in this process).
    public var largestBulkChunkBytes: Int { .max }
    /// Default: nothing to prepare (the commit then syncs more).
    public func prepareCutover(_ plan: MigrationPlan) async throws {}
    /// Default: false (the coordinator relays the chunks).
    public func pullBulk(_ plan: MigrationPlan, fromSourceAt address: String, after: [UInt8]?, maxBytes: Int,
                         applied: @escaping @Sendable (BulkPullProgress) -> Void) async throws -> Bool { false }
    /// Default: false (the coordinator sends the files).
    public func pullTableFiles(_ plan: MigrationPlan, _ files: [TableFile], fromSourceAt address: String, chunkBytes: Int,
                               written: @escaping @Sendable (_ bytes: Int, _ wireBytes: Int?) -> Void) async throws -> Bool { false }
}

/// One bulk chunk a target pulled from the source and applied (durable there).
public struct BulkPullProgress: Sendable, Equatable {
    public var keys: Int
    public var bytes: Int
    /// The last stored key the chunk covered; a new pull resumes after it.
    public var lastKey: [UInt8]?
    public var done: Bool
    /// The bytes the chunk's entries took on the network (compressed or not),
    /// when the transport counts them; nil when it does not.
    public var wireBytes: Int?

    public init(keys: Int, bytes: Int, lastKey: [UInt8]?, done: Bool, wireBytes: Int? = nil) {
        self.keys = keys
        self.bytes = bytes
        self.lastKey = lastKey
        self.done = done
        self.wireBytes = wireBytes
    }
}

/// In-memory state of migrations this engine takes part in.
final class MigrationRuntime: @unchecked Sendable {
    private let lock = NSLock()
    /// Held through a table-file import (``ShardEngine/importTableFiles(_:_:)``).
    let importLock = NSLock()
    private var snapshots: [String: Snapshot] = [:]
    private var readers: [String: ChangelogReader] = [:]
    private var fences: [String: Fence] = [:]
    /// Journal entries as last decoded, with the bytes they were decoded from.
    private var decodedEntries: [String: (stored: [UInt8], entry: MigrationJournalEntry)] = [:]
    /// The call locks of migrations with a serialized call running or waiting; each
    /// is removed when its last user leaves, so ids (journaled or not, finished or
    /// not) leave nothing behind.
    private var callLocks: [String: CallLock] = [:]

    private final class CallLock {
        let lock = NSRecursiveLock()
        /// Calls holding or waiting for `lock` (guarded by the runtime's lock).
        var users = 0
    }

    /// Runs `body` while no other serialized call of migration `id` runs (reading
    /// its changelog on a source, applying chunks on a target).
    func serialized<R>(_ id: String, _ body: () throws -> R) rethrows -> R {
        let callLock = withLock {
            let entry = callLocks[id] ?? CallLock()
            callLocks[id] = entry
            entry.users += 1
            return entry
        }
        defer {
            withLock {
                callLock.users -= 1
                if callLock.users == 0 { callLocks[id] = nil }
            }
        }
        callLock.lock.lock()
        defer { callLock.lock.unlock() }
        return try body()
    }

    /// Call locks alive: those of calls running or waiting (for tests).
    var callLockCount: Int { withLock { callLocks.count } }
    /// Calls of `id` holding or waiting for its call lock (for tests).
    func callLockUsers(_ id: String) -> Int { withLock { callLocks[id]?.users ?? 0 } }

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
    /// The entry last decoded for `id` when `stored` is still its stored form.
    func decodedEntry(_ id: String, stored: [UInt8]) -> MigrationJournalEntry? {
        withLock { decodedEntries[id].flatMap { $0.stored == stored ? $0.entry : nil } }
    }
    func rememberDecoded(_ id: String, _ entry: MigrationJournalEntry, stored: [UInt8]) {
        withLock {
            // A handful of migrations at a time; ids of finished ones go at the next overflow.
            if decodedEntries.count >= 64 && decodedEntries[id] == nil { decodedEntries = [:] }
            decodedEntries[id] = (stored, entry)
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
            decodedEntries[id] = nil
            return snapshots.removeValue(forKey: id)
        }
        snapshot?.release()
    }
}
