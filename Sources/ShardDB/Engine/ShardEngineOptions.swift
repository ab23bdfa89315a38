import Logging
import RocksDB

/// How an engine is opened: its clock, durability, and RocksDB tuning.
public struct ShardEngineOptions: Sendable {
    /// The time source for expiry (reads, scans, the compaction filter).
    public var clock: any ShardClock = SystemClock()
    /// fsync the WAL on every write.
    public var syncWrites = false
    /// Write without the write-ahead log (benchmarks and bulk loads that can be
    /// redone): a crash loses unflushed writes, and changelog readers see a gap.
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
    /// Any other RocksDB options, by RocksDB's names (`"max_subcompactions=2;..."`), applied last.
    public var rocksDBOptions: String?
    /// How long a read or write of a range under migration cutover waits for the
    /// cutover to finish before failing with `.migrationInProgress`.
    public var fenceWaitSeconds: Double = 5
    /// Stamp every value written through the API with the clock's time (8 more
    /// header bytes per value, docs/FORMAT.md), so migrations can merge
    /// overlapping keys by last-write-wins. Values written before it was turned
    /// on carry no stamp and lose to stamped ones.
    public var stampWriteTime = false
    /// Bulk-copy chunks of at least this many bytes are written on a migration
    /// target as a table file and ingested (no WAL, no memtable); smaller ones
    /// as an ordinary write batch. Off (`Int.max`) by default: on a quiet machine
    /// batches measured faster (BENCHMARKS.md); ingestion won when CPU was scarce.
    public var migrationIngestMinBytes = Int.max
    /// Where the engine logs (quiet: debug level for routine events).
    public var logger = Logger(label: "sharddb")

    public init() {}
}
