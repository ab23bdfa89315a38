import Logging
import RocksDB

/// How an engine is opened: its clock, durability, and RocksDB tuning.
public struct ShardEngineOptions: Sendable {
    /// The time source for expiry (reads, scans, the compaction filter).
    public var clock: any ShardClock = SystemClock()
    /// fsync the WAL on every write.
    public var syncWrites = false
    /// Write without the write-ahead log (benchmarks and bulk loads that can be
    /// redone): a crash loses the writes since the last flush, and changelog
    /// readers see a gap. The shards are then flushed together (RocksDB's
    /// `atomic_flush`), so what a crash keeps is a prefix of the writes: a batch
    /// across shards is kept whole or lost whole, in a checkpoint taken while
    /// writing too. (A memtable filling up flushes every shard with unflushed
    /// writes: more, smaller table files for shards written little.) RocksDB
    /// refuses the atomic flush beside `enable_pipelined_write` (``rocksDBOptions``):
    /// with it the shards flush one by one, and a crash may keep part of a batch.
    public var disableWAL = false
    /// Upper bound on how long an expired entry stays on disk in a shard nobody
    /// writes: RocksDB's `periodic_compaction_seconds` for shard column families.
    public var periodicCompactionSeconds: UInt64 = 24 * 3600
    /// Run the expiry compaction filter on shard column families. Turn it off
    /// only to measure what it costs: expired entries then stay on disk (reads
    /// still never return them).
    public var expiryCompactionFilter = true
    /// How long archived WAL files are kept so changelog readers can tail them.
    public var walRetentionSeconds: UInt64 = 3600
    /// Memtable size per column family.
    public var writeBufferSize = 64 << 20
    /// Block cache, bloom filter, block size (shared by every shard).
    public var tableSettings = Options.TableSettings(blockCacheBytes: 64 << 20, bloomBitsPerKey: 10)
    public var compression: Compression = .snappy
    /// Background flush/compaction threads.
    public var backgroundJobs = 2
    /// RocksDB's perf counters level for the threads that use the engine, applied
    /// to each thread on its first operation unless the thread chose its own with
    /// `PerfLevel.setForCurrentThread` (RocksDB's is per thread). RocksDB's default,
    /// `.enableCount`, updates a thread-local on every key comparison, about 13% of
    /// a put; ShardDB turns it off like db_bench does. nil keeps RocksDB's default.
    public var threadPerfLevel: PerfLevel? = .disable
    /// Any other RocksDB options, by RocksDB's names (`"max_subcompactions=2;..."`), applied last.
    /// `allow_mmap_writes=true` is refused (`.invalidArgument`): migration records are synced
    /// while writes go on, which RocksDB does not allow for a log written through mmap.
    /// `inplace_update_support=true` is refused too: RocksDB takes no snapshots with it,
    /// and migrations and checkpoints read from snapshots.
    public var rocksDBOptions: String?
    /// How long a read or write of a range under migration cutover waits for the
    /// cutover to finish before failing with `.migrationInProgress` (at most a
    /// year: `.infinity` waits a year; 0 or less fails at once).
    public var fenceWaitSeconds: Double = 5
    /// What opening does with a damaged write-ahead log (docs/CRASH_TESTING.md, "Corruption").
    public var walRecovery: WALRecovery = .strict
    /// Writes fail with `.diskFull` while the instance's filesystem has less free
    /// space than this (bytes), before RocksDB runs out of room for its log, flushes
    /// and compactions; 0 turns the check off.
    public var minimumFreeDiskBytes: UInt64 = 64 << 20
    /// Stamp every value written through the API with the clock's time (8 more
    /// header bytes per value, docs/FORMAT.md), so migrations can merge
    /// overlapping keys by last-write-wins. Values written before it was turned
    /// on carry no stamp and lose to stamped ones.
    public var stampWriteTime = false
    /// Bulk-copy chunks of at least this many bytes are written on a migration
    /// target as a table file and ingested (no WAL, no memtable); smaller ones
    /// as an ordinary write batch. 1 MiB by default: since bulk chunks are packed
    /// in one buffer, ingestion copied 1.7–2x faster than batches under a steady
    /// write load (BENCHMARKS.md); `Int.max` turns it off.
    public var migrationIngestMinBytes = 1 << 20
    /// A whole shard coming in as table files (``BulkTransfer/tableFiles``) is
    /// hard-linked from the source's export when both are on one file system
    /// (nothing is copied), and copied (sendfile, fsync'd) when linking fails.
    /// False copies the files always: for a source on a disk that is to be
    /// retired, or to measure.
    public var migrationLinkTableFiles = true
    /// Where the engine logs (quiet: debug level for routine events).
    public var logger = Logger(label: "sharddb")

    public init() {}
}

/// What opening an instance does with a damaged write-ahead log.
public enum WALRecovery: String, Sendable {
    /// A record cut short at the end of a log (the process died while writing it) is
    /// dropped, as it was never acknowledged; any other damage fails the open with
    /// `.storage` (RocksDB `corruption`) naming the log file, so no acknowledged
    /// write is dropped silently.
    case strict
    /// Salvage: replay every log up to its first damaged record and drop the rest
    /// (RocksDB's point-in-time recovery). Writes after the damage are lost; use it
    /// only to get a damaged instance open again (`shardctl salvage-wal`).
    case salvage
}
