import Foundation

/// One checkpoint in a ``CheckpointStore``: a consistent copy of a whole
/// instance (every shard and the shard map) at one point of its write sequence.
public struct CheckpointInfo: Sendable, Equatable {
    /// The checkpoint's id in its store (increasing; RocksDB's backup id).
    public var id: Int
    /// When the checkpoint was taken (wall clock).
    public var createdAt: Date
    /// The instance the checkpoint was taken of.
    public var instanceID: String
    /// Every write with a sequence number at or below this one is in the checkpoint.
    /// The checkpoint is one prefix of the write sequence for all shards; it may end
    /// a little after this number (writes acknowledged while the backup listed its
    /// files). A restored instance's latest sequence number is the exact end.
    public var sequenceNumber: UInt64
    public var partitioning: Partitioning
    /// The shard map at the checkpoint, as recorded in the instance's metadata.
    public var shards: [ShardDescriptor]
    /// Bytes this checkpoint copied into the store (files it did not hold yet);
    /// nil if the process stopped before recording it.
    public var bytesCopied: UInt64?
    /// Bytes of every file the checkpoint consists of, shared ones included.
    public var totalBytes: UInt64
    public var fileCount: Int
    /// What the caller passed to ``ShardEngine/checkpoint(to:metadata:allowForeignInstance:progress:)``.
    public var metadata: [String: String]
    /// Set by ``CheckpointStore/restore(id:to:newInstanceID:progress:)`` only: the
    /// restored instance's id (``instanceID``, or a new one when asked for).
    public var restoredInstanceID: String?
}

/// A checkpoint RocksDB cannot load: a file it consists of is missing, or its meta
/// file (`backups/meta/<id>`) is unreadable. It cannot be restored. Its remaining
/// files stay in the store until it is dropped explicitly
/// (``CheckpointStore/purge(keep:dropDamaged:)``); create and purge refuse to run
/// meanwhile, because RocksDB would delete them.
public struct DamagedCheckpoint: Sendable, Equatable {
    /// The checkpoint's id (the name of its meta file).
    public var id: Int
    /// RocksDB's reason, naming the missing file or the unreadable meta file, e.g.
    /// `Pathname in meta file not found on disk: STORE/backups/shared_checksum/000012_s…sst`.
    public var reason: String
}

/// Progress of a checkpoint create or restore.
public struct CheckpointProgress: Sendable, Equatable {
    /// Bytes copied so far.
    public var bytesDone: UInt64
    /// For a create, the live size of the instance, an upper bound on what will be
    /// copied (unchanged table files are not copied); for a restore, the checkpoint's size.
    public var bytesTotal: UInt64
    public var elapsedSeconds: Double

    /// Bytes per second so far.
    public var bytesPerSecond: Double { elapsedSeconds > 0 ? Double(bytesDone) / elapsedSeconds : 0 }
}

/// What a checkpoint stores besides RocksDB's files: the JSON app metadata of
/// its RocksDB backup, committed in the same meta file as the backup itself,
/// so no backup exists without it (docs/CHECKPOINTS.md).
struct CheckpointRecord: Codable, Equatable {
    static let currentFormat = 1
    var format: Int
    var instanceID: String
    var sequenceNumber: UInt64
    var createdAtMilliseconds: Int64
    var partitioning: PartitioningRecord
    var shards: [ShardRecord]
    var metadata: [String: String]
}

/// A checkpoint's copy statistics, known only after its backup is committed:
/// `stats/<id>.json` in the store. Optional; a crash before it is written loses
/// only the statistic.
struct CheckpointStatsRecord: Codable, Equatable {
    var bytesCopied: UInt64
}

/// `sharddb-checkpoint-store.json`: marks a directory as a checkpoint store and
/// names the instance it belongs to.
struct CheckpointStoreManifest: Codable, Equatable {
    static let currentFormat = 1
    var format: Int
    var instanceID: String
    var createdAtMilliseconds: Int64
}
