import ArgumentParser
import Foundation
import ShardDB

/// `shardctl bench`: a workload driver that speaks db_bench's workload names and
/// flags, plus YCSB's core workloads, so ShardDB can be measured side by side
/// with RocksDB's own `db_bench` (see Benchmarks/compare-db_bench and BENCHMARKS.md).
struct Bench: ParsableCommand {
    static let configuration = CommandConfiguration(
        abstract: "Benchmarks: db_bench/YCSB workloads (the default), migration, checkpoints, TTL.",
        discussion: """
            'shardctl bench --benchmarks ...' runs the db_bench-style driver ('bench run'). \
            'bench migrate' measures live migration under load, 'bench checkpoint' full vs \
            incremental checkpoints and restore, 'bench ttl' what per-key TTL costs.
            """,
        subcommands: [WorkloadBench.self, MigrationBench.self, CheckpointBench.self, TTLBench.self],
        defaultSubcommand: WorkloadBench.self)
}

struct WorkloadBench: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "run",
        abstract: "Measure ShardDB with db_bench's workloads and flags, or YCSB's core workloads.",
        discussion: """
            db_bench workloads (--benchmarks, comma-separated, run in order on one database): \
            fillseq, fillrandom, overwrite, readrandom, readseq, seekrandom, readwhilewriting, \
            readrandomwriterandom (reads and writes of random keys, --readwritepercent of them reads), \
            updaterandom (a read, then a write of the same random key, as one operation); \
            waitforcompaction is no measurement: it waits until no flush or compaction is pending \
            or running, so the workload after it starts on a settled database; nor is compact: it \
            compacts the whole database into one sorted run, as db_bench's compact. As in db_bench, \
            each thread does --num writes or --reads reads (the mixes: --reads operations); \
            fill* start from a fresh database; \
            readwhilewriting runs --threads readers plus one writer and reports the reads. \
            YCSB (--workload ycsb-a ... ycsb-f): load --recordcount 1 KB records, then run \
            --operationcount operations with YCSB's proportions and request distributions.

            Reports ops/s, MB/s and latency percentiles (HdrHistogram; none with --histogram false) \
            per workload, as a table or --json. The engine has one shard by default (--shards) so \
            it compares with db_bench's single column family. seekrandom and ycsb-e need key-ordered scans, so \
            they use range partitioning unless --partitioning says otherwise.
            """)

    @Option(name: .customLong("benchmarks"), help: "Comma-separated db_bench workloads.")
    var benchmarks: String?

    @Option(help: "A YCSB core workload: ycsb-a, ycsb-b, ycsb-c, ycsb-d, ycsb-e or ycsb-f.")
    var workload: String?

    @Option(name: .customLong("num"), parsing: .unconditional, help: "Keys (db_bench --num).")
    var num = 1_000_000

    @Option(name: .customLong("reads"), parsing: .unconditional, help: "Reads per thread; negative: --num.")
    var reads = -1

    @Option(name: .customLong("readwritepercent"), parsing: .unconditional,
            help: "readrandomwriterandom: the percentage of operations that are reads (db_bench's default 90).")
    var readWritePercent = 90

    @Option(name: .customLong("key_size"), parsing: .unconditional, help: "Key size in bytes.")
    var keySize = 16

    @Option(name: .customLong("value_size"), parsing: .unconditional, help: "Value size in bytes.")
    var valueSize = 100

    @Option(name: .customLong("threads"), parsing: .unconditional, help: "Concurrent threads.")
    var threads = 1

    @Option(name: .customLong("duration"), parsing: .unconditional,
            help: "Seconds to run the random workloads for instead of --num/--reads ops (0: by count).")
    var duration = 0

    @Flag(name: .customLong("use_existing_db"), help: "Do not recreate the database (fill* then fail).")
    var useExistingDB = false

    @Option(name: .customLong("db"), help: "Instance directory (default: a temporary one, removed afterwards).")
    var db: String?

    @Option(name: .customLong("compression_type"), help: "none, snappy, zlib, bzip2, lz4, lz4hc, xpress or zstd.")
    var compressionType = "snappy"

    @Option(name: .customLong("write_buffer_size"), parsing: .unconditional, help: "Memtable size in bytes.")
    var writeBufferSize = 64 << 20

    @Option(name: .customLong("cache_size"), parsing: .unconditional, help: "Block cache bytes (0 or negative: none).")
    var cacheSize = 8 << 20

    @Option(name: .customLong("bloom_bits"), parsing: .unconditional, help: "Bloom filter bits per key (<= 0: none).")
    var bloomBits = -1

    @Option(name: .customLong("block_size"), parsing: .unconditional, help: "Data block size in bytes.")
    var blockSize = 4096

    @Flag(name: .customLong("disable_wal"), help: "Write without the write-ahead log.")
    var disableWAL = false

    @Flag(name: .customLong("sync"), help: "fsync the WAL on every write.")
    var sync = false

    @Option(name: .customLong("histogram"),
            help: "true (or 1): time every operation for the latency percentiles. false (or 0): read the clock once per 64 operations and report no latencies, as db_bench does unless --histogram (db_bench workloads; YCSB always times).")
    var histogram = "true"

    @Option(name: .customLong("seed"), parsing: .unconditional, help: "Seed of the per-thread generators (0: from the clock).")
    var seed: UInt64 = 0

    @Option(name: .customLong("shards"), parsing: .unconditional, help: "Shards of the benchmark instance.")
    var shards = 1

    @Option(help: "hash or range (default: hash; range for fillseq, seekrandom and ycsb-e).")
    var partitioning: String?

    @Option(name: .customLong("options"),
            help: "More RocksDB options by RocksDB's names, e.g. 'max_background_jobs=4' (applied last).")
    var rocksDBOptions: String?

    @Option(name: .customLong("recordcount"), parsing: .unconditional, help: "YCSB: records loaded.")
    var recordCount = 100_000

    @Option(name: .customLong("operationcount"), parsing: .unconditional, help: "YCSB: operations run (all threads).")
    var operationCount = 100_000

    @Flag(help: "Print the results as JSON.")
    var json = false

    func validate() throws {
        if benchmarks != nil && workload != nil { throw ValidationError("--benchmarks and --workload exclude each other") }
    }

    func run() throws {
        let plan = try failing { try makePlan() }
        let directory = db ?? (NSTemporaryDirectory() + "sharddb-bench-\(ProcessInfo.processInfo.processIdentifier)")
        defer { if db == nil { try? FileManager.default.removeItem(atPath: directory) } }
        let results = try failing(removing: db == nil ? directory : nil) { () -> [BenchResult] in
            let driver = BenchDriver(plan: plan, directory: directory)
            defer { driver.close() }
            if let ycsb = plan.ycsb {
                return try YCSBRunner(driver: driver, workload: ycsb, recordCount: recordCount,
                                      operationCount: operationCount).run()
            }
            var results: [BenchResult] = []
            for workload in plan.workloads {
                let result = try driver.run(workload)
                if !json { BenchReport.printRow(result, header: results.isEmpty) }
                results.append(result)
            }
            return results
        }
        if json {
            printJSON(BenchReport(settings: plan.settings, results: results))
        } else if plan.ycsb != nil {
            for (index, result) in results.enumerated() { BenchReport.printRow(result, header: index == 0) }
        }
    }

    /// Checks every flag and turns them into a plan; errors name the flag.
    func makePlan() throws -> BenchPlan {
        func invalid(_ message: String) -> ShardDBError { ShardDBError(.invalidArgument, message) }
        guard num > 0 else { throw invalid("--num must be positive, got \(num)") }
        guard threads > 0 else { throw invalid("--threads must be positive, got \(threads)") }
        guard threads <= 1024 else { throw invalid("--threads must be at most 1024, got \(threads)") }
        guard num <= 1 << 40 else { throw invalid("--num must be at most \(1 << 40), got \(num)") }
        guard (0...100).contains(readWritePercent) else {
            throw invalid("--readwritepercent must be between 0 and 100, got \(readWritePercent)")
        }
        guard duration >= 0 else { throw invalid("--duration must not be negative, got \(duration)") }
        guard duration <= 31_536_000 else { throw invalid("--duration must be at most a year (31536000 s), got \(duration)") }
        guard (1...ShardEngine.maxKeySize).contains(keySize) else {
            throw invalid("--key_size must be between 1 and \(ShardEngine.maxKeySize), got \(keySize)")
        }
        guard (0...ShardEngine.maxValueSize).contains(valueSize) else {
            throw invalid("--value_size must be between 0 and \(ShardEngine.maxValueSize), got \(valueSize)")
        }
        guard (1...(64 << 30)).contains(writeBufferSize) else {
            throw invalid("--write_buffer_size must be between 1 and \(64 << 30) (64 GiB), got \(writeBufferSize)")
        }
        guard (1...(1 << 30)).contains(blockSize) else { throw invalid("--block_size must be between 1 and \(1 << 30), got \(blockSize)") }
        guard shards > 0 else { throw invalid("--shards must be positive, got \(shards)") }
        guard shards <= 65_536 else { throw invalid("--shards must be at most 65536, got \(shards)") }
        guard recordCount > 0 else { throw invalid("--recordcount must be positive, got \(recordCount)") }
        guard recordCount <= 1 << 40 else { throw invalid("--recordcount must be at most \(1 << 40), got \(recordCount)") }
        guard operationCount >= 0 else { throw invalid("--operationcount must not be negative, got \(operationCount)") }
        var engineOptions = ShardEngineOptions()
        // RocksDB's Compression type, reached through the engine options (shardctl imports ShardDB only).
        guard let compression = type(of: engineOptions.compression).init(name: compressionType) else {
            throw invalid("unknown --compression_type '\(compressionType)' (none, snappy, zlib, bzip2, lz4, lz4hc, xpress, zstd)")
        }
        if let rocksDBOptions { try ShardEngine.validateRocksDBOptions(rocksDBOptions) }

        var workloads: [BenchWorkload] = []
        var ycsb: YCSBWorkload?
        if let workload {
            guard let parsed = YCSBWorkload(name: workload) else {
                throw invalid("unknown --workload '\(workload)' (ycsb-a, ycsb-b, ycsb-c, ycsb-d, ycsb-e, ycsb-f)")
            }
            ycsb = parsed
        } else {
            for name in (benchmarks ?? "fillrandom,readrandom").split(separator: ",", omittingEmptySubsequences: true) {
                let trimmed = name.trimmingCharacters(in: .whitespaces)
                guard let parsed = BenchWorkload(rawValue: trimmed) else {
                    throw invalid("unknown benchmark '\(trimmed)' (\(BenchWorkload.allCases.map(\.rawValue).joined(separator: ", ")))")
                }
                if useExistingDB && parsed.needsFreshDatabase {
                    throw invalid("--use_existing_db cannot run \(trimmed): it needs a fresh database")
                }
                workloads.append(parsed)
            }
            guard !workloads.isEmpty else { throw invalid("--benchmarks names no workload") }
        }

        let ordered = workloads.contains { $0.prefersOrderedKeys } || ycsb?.needsOrderedKeys == true
        let scheme: Partitioning
        switch partitioning ?? (ordered ? "range" : "hash") {
        case "hash": scheme = .hash(keyGroups: Partitioning.defaultKeyGroups)
        case "range":
            // Split points spread evenly over the workload's key space; one shard needs none.
            let splits: [[UInt8]] = (1..<shards).map { i in
                if ycsb != nil { return Array("user\(1 + (i * 9) / shards)".utf8) }
                return BenchKeys.key(i * num / shards, size: keySize)
            }
            scheme = .range(splitPoints: splits)
        case let other: throw invalid("unknown --partitioning '\(other)' (hash or range)")
        }

        let timesEachOperation: Bool
        switch histogram {
        case "true", "1": timesEachOperation = true
        case "false", "0": timesEachOperation = false
        case let other: throw invalid("--histogram takes true or false (or 1 or 0), not '\(other)'")
        }

        engineOptions.writeBufferSize = writeBufferSize
        engineOptions.compression = compression
        engineOptions.tableSettings = .init(blockCacheBytes: max(0, cacheSize), bloomBitsPerKey: Double(max(0, bloomBits)),
                                            blockSize: blockSize)
        engineOptions.syncWrites = sync
        engineOptions.disableWAL = disableWAL
        engineOptions.backgroundJobs = 2
        // db_bench's defaults where they differ from RocksDB's (see BENCHMARKS.md).
        engineOptions.rocksDBOptions = (["enable_pipelined_write=true"] + (rocksDBOptions.map { [$0] } ?? []))
            .joined(separator: ";")

        let settings = BenchSettings(
            num: num, reads: reads < 0 ? num : reads, readWritePercent: readWritePercent, keySize: ycsb == nil ? keySize : 23,
            valueSize: ycsb == nil ? valueSize : YCSBWorkload.recordSize, threads: threads,
            duration: duration, seed: seed == 0 ? UInt64(DispatchTime.now().uptimeNanoseconds) : seed,
            shards: shards, partitioning: "\(scheme)", compression: compressionType, writeBufferSize: writeBufferSize,
            cacheSize: cacheSize, bloomBits: bloomBits, blockSize: blockSize, disableWAL: disableWAL, sync: sync,
            histogram: timesEachOperation, useExistingDB: useExistingDB, rocksDBOptions: engineOptions.rocksDBOptions ?? "")
        return BenchPlan(workloads: workloads, ycsb: ycsb, settings: settings, partitioning: scheme, engineOptions: engineOptions)
    }
}

/// Everything a run needs, checked.
struct BenchPlan {
    var workloads: [BenchWorkload]
    var ycsb: YCSBWorkload?
    var settings: BenchSettings
    var partitioning: Partitioning
    var engineOptions: ShardEngineOptions
}

/// The settings a run used, echoed in the report.
struct BenchSettings: Encodable {
    var num: Int
    var reads: Int
    /// readrandomwriterandom's share of reads, in percent.
    var readWritePercent: Int
    var keySize: Int
    var valueSize: Int
    var threads: Int
    var duration: Int
    var seed: UInt64
    var shards: Int
    var partitioning: String
    var compression: String
    var writeBufferSize: Int
    var cacheSize: Int
    var bloomBits: Int
    var blockSize: Int
    var disableWAL: Bool
    var sync: Bool
    /// Whether every operation of the db_bench workloads was timed (latencies reported).
    var histogram: Bool
    var useExistingDB: Bool
    var rocksDBOptions: String
}
