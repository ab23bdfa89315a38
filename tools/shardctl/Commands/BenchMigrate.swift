import ArgumentParser
import Foundation
import ShardDB

/// `shardctl bench migrate`: a shard of a given size moved back and forth
/// between two instances under a steady write load.
struct MigrationBench: AsyncParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "migrate",
        abstract: "Measure live migration: bulk MB/s against a plain file copy, catch-up, write pause, writer latency.",
        discussion: """
            Creates instance A with one shard of --size-mb, copies its table files with 'cp' + 'sync' \
            three times as the reference (the median counts), then moves the shard A→B→A… --runs times while a writer puts at --write-rate \
            per second. Reports bulk-copy throughput as a ratio to the file copy, the write pause at \
            each cutover (p50/p99/max over runs), and the writer's latency during migrations against \
            a baseline with no migration, measured in the same run.

            --bulk picks how the bulk phase copies: 'files' (the shard's table files, hard-linked \
            into the target: the default for a whole shard on one file system), 'files-copy' (the \
            table files copied, as across file systems), 'ingest' (entries read from the snapshot, \
            written to table files on the target and ingested whole: the way for part of a shard \
            or a remote peer), 'batch' (entries as write batches through the WAL), 'both' (ingest \
            and batch) or 'all' (the four). With several, --runs moves are made each way, the same \
            instances reopened in between, so they compare in one run.
            """)

    enum BulkMode: String, ExpressibleByArgument, CaseIterable {
        case files, filesCopy = "files-copy", ingest, batch, both, all

        /// The single modes this one stands for.
        var modes: [BulkMode] {
            switch self {
            case .both: [.ingest, .batch]
            case .all: [.files, .filesCopy, .ingest, .batch]
            default: [self]
            }
        }
        var transfer: BulkTransfer { self == .files || self == .filesCopy ? .tableFiles : .entries }
    }

    @Option(name: .customLong("size-mb"), parsing: .unconditional, help: "Size of the shard to move.") var sizeMB = 1024
    @Option(name: .customLong("value-size"), parsing: .unconditional, help: "Value size in bytes.") var valueSize = 1000
    @Option(name: .customLong("write-rate"), parsing: .unconditional, help: "Foreground writes per second during the run (0: none).") var writeRate = 20_000
    @Option(parsing: .unconditional, help: "Migrations to run (alternating direction).") var runs = 5
    @Option(name: .customLong("baseline-seconds"), parsing: .unconditional, help: "Seconds of writes with no migration, for the baseline.") var baselineSeconds = 3.0
    @Option(help: "Work in this directory (default: a temporary one, removed afterwards).") var dir: String?
    @Option(help: "How the bulk phase copies: files, files-copy, ingest, batch, both (ingest and batch) or all.") var bulk: BulkMode = .files
    @Option(name: .customLong("chunk-mb"), parsing: .unconditional, help: "Bulk-copy chunk size in MiB.") var chunkMB = 8
    @Flag(help: "Print the results as JSON.") var json = false

    struct Result: Encodable {
        var shardBytes: Int
        var keys: Int
        /// Median of `fileCopyRuns`.
        var fileCopyMBps: Double
        /// The table-file copy of the compacted source, three times before any move.
        var fileCopyRuns: [Double]
        var modes: [ModeResult]
        var writeRate: Int
        var writerBaseline: LatencySummary
        var writerDuringMigration: LatencySummary
        var writerP99Ratio: Double
        var redirectedWrites: Int
    }

    /// The moves made with one way of writing bulk chunks.
    struct ModeResult: Encodable {
        var bulk: String
        var bulkMBps: [Double]
        var bulkToCopyRatio: Double
        var catchUpSeconds: [Double]
        var pauseMs: LatencySummary
    }

    func run() async throws {
        try failing {
            guard (1...1024).contains(chunkMB) else { throw ShardDBError(.invalidArgument, "--chunk-mb must be between 1 and 1024, got \(chunkMB)") }
            guard sizeMB > 0, valueSize > 0, runs > 0, writeRate >= 0, baselineSeconds >= 0 else {
                throw ShardDBError(.invalidArgument, "--size-mb, --value-size and --runs must be positive; --write-rate and --baseline-seconds not negative")
            }
            try BenchLimits.check(sizeMB: sizeMB, valueSize: valueSize, writeRate: writeRate)
            guard runs <= 10_000, baselineSeconds <= 86_400 else {
                throw ShardDBError(.invalidArgument, "--runs must be at most 10000 and --baseline-seconds at most 86400")
            }
        }
        let dir = self.dir ?? NSTemporaryDirectory() + "sharddb-bench-migrate-\(ProcessInfo.processInfo.processIdentifier)"
        defer { if self.dir == nil { try? FileManager.default.removeItem(atPath: dir) } }
        do {
            let result = try await measure(in: dir)
            if json { printJSON(result, pretty: true); return }
            print(String(format: "shard: %@ in %d keys", formatBytes(result.shardBytes), result.keys))
            print("cp of the table files + sync: " + result.fileCopyRuns.map { String(format: "%.1f", $0) }.joined(separator: ", ") + " MB/s")
            for mode in result.modes {
                print(String(format: "bulk copy (%@): median %.1f MB/s vs cp of the table files + sync %.1f MB/s (median)  → ratio %.2f",
                             mode.bulk, median(mode.bulkMBps), result.fileCopyMBps, mode.bulkToCopyRatio))
                print(String(format: "catch-up (%@): median %.2f s", mode.bulk, median(mode.catchUpSeconds)))
                print("write pause at cutover (\(mode.bulk)): \(mode.pauseMs.text)")
            }
            print("writer at \(result.writeRate)/s, baseline:        \(result.writerBaseline.text)")
            print("writer at \(result.writeRate)/s, during migration: \(result.writerDuringMigration.text)")
            print(String(format: "writer p99 during/baseline: %.2f×; %d writes redirected to the new owner", result.writerP99Ratio, result.redirectedWrites))
        } catch {
            if self.dir == nil { try? FileManager.default.removeItem(atPath: dir) }
            fail("\(error)")
        }
    }

    private func engineOptions(_ mode: BulkMode) -> ShardEngineOptions {
        var options = ShardEngineOptions()
        options.writeBufferSize = 64 << 20
        options.migrationIngestMinBytes = mode == .batch ? Int.max : 0
        options.migrationLinkTableFiles = mode != .filesCopy
        return options
    }

    private func measure(in dir: String) async throws -> Result {
        try BenchDirectory.fresh(dir, option: "--dir")
        let modes = bulk.modes
        var a = try ShardEngine.create(at: dir + "/a", shards: 1, options: engineOptions(modes[0]))
        var b = try ShardEngine.create(at: dir + "/b", shards: 0, partitioning: a.partitioning, options: engineOptions(modes[0]))
        defer { a.close(); b.close() }
        let keys = max(1, sizeMB * 1_048_576 / (valueSize + 12))
        let progress = ProgressLine()
        try fillForBench(a, count: keys, valueSize: valueSize, progress: progress, label: "filling")
        _ = try a.purgeExpired()  // flush and compact: the shard as table files
        let shardBytes = Int(try a.shards().reduce(0) { $0 + $1.approximateBytes })
        var from = a, to = b, shard = 0
        // The reference: a plain copy of the shard's table files (the compacted
        // source, before any move), made durable. The disk's speed drifts a lot on
        // shared machines, so it is copied three times and the median taken.
        var copyRates: [Double] = []
        for _ in 0..<3 {
            let copy = try timeTableFileCopy(a.path, dir + "/copy")
            try? FileManager.default.removeItem(atPath: dir + "/copy")
            copyRates.append(Double(copy.bytes) / 1_048_576 / copy.seconds)
        }

        var results: [ModeResult] = []
        var baseline = LatencySummary(nil), during = LatencySummary(nil), redirected = 0
        for (index, mode) in modes.enumerated() {
            if index > 0 {
                // The same instances, reopened with the other way of writing bulk chunks.
                let fromPath = from.path, toPath = to.path
                a.close(); b.close()
                a = try ShardEngine.open(at: fromPath, options: engineOptions(mode))
                b = try ShardEngine.open(at: toPath, options: engineOptions(mode))
                (from, to) = (a, b)
            }
            let writer = PacedWriter(engines: [a, b], rate: max(1, writeRate), keySpace: keys, valueSize: valueSize)
            if writeRate > 0 {
                writer.start()
                try await Task.sleep(nanoseconds: UInt64(baselineSeconds * 1e9))
            }
            var bulkRates: [Double] = [], catchUp: [Double] = [], pauses: [Double] = []
            for run in 0..<runs {
                writer.setPhase("migration")
                var request = MigrationRequest(shard: shard)
                request.bulkChunkBytes = chunkMB << 20
                request.bulkTransfer = mode.transfer
                let report = try await from.migrate(request, to: to) { p in
                    progress.update("\(mode.rawValue) run \(run + 1)/\(runs): \(p.phase.rawValue), \(formatBytes(p.bytesCopied)), lag \(p.lag)")
                }
                progress.finish()
                writer.setPhase("baseline")
                bulkRates.append(Double(report.bytesCopied) / 1_048_576 / max(report.bulkSeconds, 1e-9))
                catchUp.append(report.catchUpSeconds)
                pauses.append(report.pauseMilliseconds)
                (from, to, shard) = (to, from, report.targetShard)
                if writeRate > 0 { try await Task.sleep(nanoseconds: UInt64(min(1, baselineSeconds) * 1e9)) }
            }
            writer.stop()
            while writer.isRunning { try await Task.sleep(nanoseconds: 1_000_000) }
            if let failure = writer.failure { throw failure }
            if index == 0 {
                baseline = LatencySummary(writer.histogram("baseline"))
                during = LatencySummary(writer.histogram("migration"))
            }
            redirected += writer.redirected
            results.append(ModeResult(bulk: mode.rawValue, bulkMBps: bulkRates, bulkToCopyRatio: 0,
                                      catchUpSeconds: catchUp, pauseMs: LatencySummary(millis: pauses)))
        }
        let fileCopyMBps = median(copyRates)
        for i in results.indices { results[i].bulkToCopyRatio = median(results[i].bulkMBps) / fileCopyMBps }
        return Result(shardBytes: shardBytes, keys: keys, fileCopyMBps: fileCopyMBps, fileCopyRuns: copyRates, modes: results,
                      writeRate: writeRate, writerBaseline: baseline,
                      writerDuringMigration: during, writerP99Ratio: baseline.p99 > 0 ? during.p99 / baseline.p99 : 0,
                      redirectedWrites: redirected)
    }
}

func median(_ values: [Double]) -> Double {
    let sorted = values.sorted()
    guard !sorted.isEmpty else { return 0 }
    return sorted.count % 2 == 1 ? sorted[sorted.count / 2] : (sorted[sorted.count / 2 - 1] + sorted[sorted.count / 2]) / 2
}
