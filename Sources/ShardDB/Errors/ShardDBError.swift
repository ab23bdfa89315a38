import Foundation
import RocksDB

/// The one error type of the ShardDB engine.
///
/// Match on ``code``:
///
/// ```swift
/// do { try engine.put("k", "v") }
/// catch let error as ShardDBError where error.code == .keyNotOwned {
///     print("ask \(error.owner ?? "nobody")")
/// }
/// ```
public struct ShardDBError: Error, Sendable, Equatable, CustomStringConvertible {
    public enum Code: String, Sendable, Equatable {
        /// The directory does not exist (and creation was not asked for).
        case instanceNotFound
        /// The directory holds no ShardDB instance (empty, or a plain RocksDB database).
        case notAnInstance
        /// `create` on a directory that already holds an instance.
        case alreadyInitialized
        /// Another process (or another engine in this process) has the instance open.
        case alreadyOpen
        /// The directory cannot be written.
        case notWritable
        /// The metadata column family cannot be decoded.
        case corruptedMetadata
        /// A stored value's header cannot be decoded (unknown version, truncated).
        case corruptedValue
        /// Written by a newer ShardDB.
        case unsupportedFormat
        /// The partitioning asked for differs from the stored one.
        case partitioningConflict
        /// Empty key, or a key over ``ShardEngine/maxKeySize``.
        case invalidKey
        /// A value over ``ShardEngine/maxValueSize``.
        case invalidValue
        /// A TTL that is zero, negative, or whose expiry overflows the timestamp.
        case invalidTTL
        /// An argument out of its documented domain.
        case invalidArgument
        /// This instance does not own the key; ``ShardDBError/owner`` names the owner when known.
        case keyNotOwned
        /// No shard with that id on this instance.
        case shardNotFound
        /// The engine was closed.
        case closed
        /// The key's range is in a migration cutover that did not finish in time
        /// (or is in doubt after a crash); retry. From ``MigrationCoordinator/migrate(_:progress:)``:
        /// the move failed and could not be rolled back or finished (a peer down);
        /// it stays unfinished until ``MigrationCoordinator/resolveUnfinished(source:target:inDoubtOnly:)``
        /// settles it: retrying the same move settles it first. From a restore with
        /// a new instance id: the checkpoint holds an unfinished migration.
        case migrationInProgress
        /// A migration request that conflicts with the shard maps or with another migration.
        case migrationConflict
        /// The checkpoint store does not exist, or the directory is not one.
        case checkpointStoreNotFound
        /// The checkpoint store belongs to another instance (see `allowForeignInstance`).
        case foreignCheckpointStore
        /// Another process is creating or purging checkpoints in the store.
        case checkpointStoreBusy
        /// No checkpoint with that id in the store.
        case checkpointNotFound
        /// A checkpoint's file is missing, truncated or fails its checksum, or its meta
        /// file is unreadable; the message names it. Also: a create or purge refused
        /// because the store holds damaged checkpoints (see ``DamagedCheckpoint``).
        case checkpointCorrupted
        /// A restore target that exists and is not an empty directory.
        case targetNotEmpty
        /// A migration peer cannot take a shard's table files (a version without
        /// them); the coordinator copies entries instead.
        case tableFilesUnsupported
        /// A failure point armed by a test fired (see ``FailurePoints``).
        case injectedFailure
        /// A changelog reader found a hole in the sequence: writes that bypassed the
        /// write-ahead log (`disableWAL`, ingested files). The changes in the hole
        /// cannot be read; start again from a fresh snapshot.
        case changelogGap
        /// A changelog reader's next sequence is no longer in the write-ahead log
        /// (purged: WAL retention, ``ShardEngineOptions/walRetentionSeconds``, expired
        /// or was off). Start again from a fresh snapshot.
        case changelogUnavailable
        /// The instance's filesystem has less free space than
        /// ``ShardEngineOptions/minimumFreeDiskBytes``; nothing was written. Free space and retry.
        case diskFull
        /// RocksDB reported an error; ``ShardDBError/storage`` carries it.
        case storage
    }

    public let code: Code
    public let message: String
    /// For ``Code/keyNotOwned``: the instance that owns the key, when known.
    public let owner: String?
    /// For ``Code/storage``: RocksDB's error.
    public let storage: RocksDBError?

    public init(_ code: Code, _ message: String, owner: String? = nil, storage: RocksDBError? = nil) {
        self.code = code
        self.message = message
        self.owner = owner
        self.storage = storage
    }

    public var description: String { message }

    /// A file-system error as the one line a user acts on: the system's reason
    /// ("Not a directory", "Permission denied") when Foundation wraps one, which
    /// its own description reduces to "The operation could not be completed".
    public static func fileSystemReason(_ error: Error) -> String {
        let ns = error as NSError
        if ns.domain == NSPOSIXErrorDomain { return String(cString: strerror(Int32(ns.code))) }
        if let underlying = ns.userInfo[NSUnderlyingErrorKey] as? Error {
            let posix = underlying as NSError
            if posix.domain == NSPOSIXErrorDomain { return String(cString: strerror(Int32(posix.code))) }
        }
        return ns.localizedFailureReason ?? ns.localizedDescription
    }

    /// Wraps RocksDB's error, naming the ones ShardDB users act on.
    static func wrap(_ error: Error, path: String) -> ShardDBError {
        if let error = error as? ShardDBError { return error }
        guard let rocks = error as? RocksDBError else {
            return ShardDBError(.storage, "\(error)")
        }
        if rocks.isLockHeld {
            let where_ = rocks.message.contains("current process") ? "in this process" : "in another process"
            return ShardDBError(.alreadyOpen, "\(path) is already open \(where_)", storage: rocks)
        }
        if rocks.kind == .closed { return ShardDBError(.closed, "the engine at \(path) is closed", storage: rocks) }
        if rocks.kind == .ioError && (rocks.message.contains("Permission denied") || rocks.message.contains("Read-only file system")) {
            return ShardDBError(.notWritable, "\(path) is not writable: \(rocks.message)", storage: rocks)
        }
        return ShardDBError(.storage, "\(path): \(rocks.message)", storage: rocks)
    }
}

/// Runs `body`, turning any RocksDB error into a ``ShardDBError``; a caller's
/// own error (``CallerError``) passes through unchanged.
@inline(__always)
func storage<R>(_ path: String, _ body: () throws -> R) throws -> R {
    do { return try body() } catch let error as CallerError { throw error } catch { throw ShardDBError.wrap(error, path: path) }
}

/// An error thrown by a caller's closure (a scan's or a zero-copy read's body)
/// on its way out through ``storage(_:_:)``, which would otherwise report it as
/// `.storage`: the public call unwraps it, so the caller catches its own error.
struct CallerError: Error {
    let error: any Error

    /// Runs a caller's closure, marking what it throws.
    @inline(__always)
    static func marking<R>(_ body: () throws -> R) throws -> R {
        do { return try body() } catch { throw CallerError(error: error) }
    }

    /// Runs `body`, throwing a marked caller's error as it was thrown.
    @inline(__always)
    static func unwrapping<R>(_ body: () throws -> R) throws -> R {
        do { return try body() } catch let marked as CallerError { throw marked.error }
    }
}
