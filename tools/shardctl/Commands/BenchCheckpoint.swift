import ArgumentParser
import Foundation
import ShardDB

/// `shardctl bench checkpoint`: full against incremental checkpoints, the pause
/// writers see, and restore throughput against a plain file copy.
struct CheckpointBench: AsyncParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "checkpoint",
        abstract: "Measure checkpoints: full vs incremental bytes and time, writer latency, restore vs cp -r.",
        discussion: """
            Fills an instance with --size-mb, takes a full checkpoint, updates --update-percent of the \
            keys, takes an incremental one, and restores it. A writer puts at --write-rate per second \
            throughout; its latency during checkpoints is compared with a baseline in the same run. \
            Restore throughput is compared with 'cp -r' of the restored files followed by 'sync'.
            """)

    @Option(name: .customLong("size-mb"), help: "State size.") var sizeMB = 1024
    @Option(name: .customLong("value-size"), help: "Value size in bytes.") var valueSize = 1000
    @Option(name: .customLong("update-percent"), help: "Keys updated between the two checkpoints.") var updatePercent = 1.0
    @Option(name: .customLong("write-rate"), help: "Foreground writes per second (0: none).") var writeRate = 5_000
    @Option(help: "Shards.") var shards = 4
    @Option(help: "Work in this directory (default: a temporary one, removed afterwards).") var dir: String?
    @Flag(help: "Print the results as JSON.") var json = false

    struct Result: Encodable {
        var stateBytes: UInt64
        var fullBytesCopied: UInt64
        var fullSeconds: Double
        var incrementalBytesCopied: UInt64
        var incrementalSeconds: Double
        var incrementalToFullRatio: Double
        var writerBaseline: LatencySummary
        var writerDuringCheckpoint: LatencySummary
        var restoreSeconds: Double
        var restoreMBps: Double
        var copyMBps: Double
        var restoreToCopyRatio: Double
    }

    func run() async throws {
        try failing {
            guard sizeMB > 0, valueSize > 0, shards > 0, updatePercent > 0, updatePercent <= 100, writeRate >= 0 else {
                throw ShardDBError(.invalidArgument, "--size-mb, --value-size and --shards must be positive; --update-percent in (0, 100]")
            }
            try BenchLimits.check(sizeMB: sizeMB, valueSize: valueSize, writeRate: writeRate)
            guard shards <= 65_536 else { throw ShardDBError(.invalidArgument, "--shards must be at most 65536, got \(shards)") }
        }
        let dir = self.dir ?? NSTemporaryDirectory() + "sharddb-bench-checkpoint-\(ProcessInfo.processInfo.processIdentifier)"
        defer { if self.dir == nil { try? FileManager.default.removeItem(atPath: dir) } }
        do {
            let r = try await measure(in: dir)
            if json { printJSON(r, pretty: true); return }
            print(String(format: "state: %@", formatBytes(Int(r.stateBytes))))
            print(String(format: "full checkpoint: copied %@ in %.2f s", formatBytes(Int(r.fullBytesCopied)), r.fullSeconds))
            print(String(format: "after updating %.1f%% of keys: copied %@ in %.2f s → %.2f%% of the full copy",
                         updatePercent, formatBytes(Int(r.incrementalBytesCopied)), r.incrementalSeconds, r.incrementalToFullRatio * 100))
            print("writer at \(writeRate)/s, baseline:          \(r.writerBaseline.text)")
            print("writer at \(writeRate)/s, during checkpoints: \(r.writerDuringCheckpoint.text)")
            print(String(format: "restore: %.1f MB/s vs cp -r %.1f MB/s → ratio %.2f", r.restoreMBps, r.copyMBps, r.restoreToCopyRatio))
        } catch {
            if self.dir == nil { try? FileManager.default.removeItem(atPath: dir) }
            fail("\(error)")
        }
    }

    private func measure(in dir: String) async throws -> Result {
        try BenchDirectory.fresh(dir, option: "--dir")
        let engine = try ShardEngine.create(at: dir + "/state", shards: shards)
        defer { engine.close() }
        let keys = max(1, sizeMB * 1_048_576 / (valueSize + 12))
        let progress = ProgressLine()
        try fillForBench(engine, count: keys, valueSize: valueSize, progress: progress, label: "filling")
        try engine.flush()
        let writer = PacedWriter(engines: [engine], rate: max(1, writeRate), keySpace: keys, valueSize: valueSize)
        writer.setPhase("warmup")  // compactions after the fill: not part of the baseline
        if writeRate > 0 {
            writer.start()
            try await Task.sleep(nanoseconds: 2_000_000_000)
            writer.setPhase("baseline")
            try await Task.sleep(nanoseconds: 3_000_000_000)
        }

        writer.setPhase("checkpoint")
        var start = monotonicNanos()
        let full = try engine.checkpoint(to: dir + "/store") { p in progress.update("full checkpoint: \(formatBytes(Int(p.bytesDone)))") }
        let fullSeconds = Double(monotonicNanos() - start) / 1e9
        progress.finish()
        writer.setPhase("updating")

        let updates = max(1, Int(Double(keys) * updatePercent / 100))
        let value = [UInt8](repeating: 0x7a, count: valueSize)
        var done = 0
        while done < updates {
            try engine.write { batch in
                for i in done..<min(updates, done + 1000) { try batch.put(Array("key\(i * (keys / updates))".utf8), value) }
            }
            done += 1000
        }
        writer.setPhase("baseline")
        if writeRate > 0 { try await Task.sleep(nanoseconds: 1_000_000_000) }
        writer.setPhase("checkpoint")
        start = monotonicNanos()
        let incremental = try engine.checkpoint(to: dir + "/store")
        let incrementalSeconds = Double(monotonicNanos() - start) / 1e9
        writer.setPhase("baseline")
        writer.stop()
        while writer.isRunning { try await Task.sleep(nanoseconds: 1_000_000) }
        if let failure = writer.failure { throw failure }

        let store = try CheckpointStore.open(at: dir + "/store")
        defer { store.close() }
        start = monotonicNanos()
        _ = try store.restore(id: incremental.id, to: dir + "/restored") { _ in }
        let restoreSeconds = Double(monotonicNanos() - start) / 1e9
        let restoredBytes = directoryBytes(dir + "/restored")
        let copySeconds = try timeCopy(dir + "/restored", dir + "/copy")
        let restoreMBps = Double(restoredBytes) / 1_048_576 / restoreSeconds
        let copyMBps = Double(directoryBytes(dir + "/copy")) / 1_048_576 / copySeconds
        return Result(
            stateBytes: full.totalBytes, fullBytesCopied: full.bytesCopied ?? 0, fullSeconds: fullSeconds,
            incrementalBytesCopied: incremental.bytesCopied ?? 0, incrementalSeconds: incrementalSeconds,
            incrementalToFullRatio: Double(incremental.bytesCopied ?? 0) / Double(max(1, full.bytesCopied ?? 1)),
            writerBaseline: LatencySummary(writer.histogram("baseline")),
            writerDuringCheckpoint: LatencySummary(writer.histogram("checkpoint")),
            restoreSeconds: restoreSeconds, restoreMBps: restoreMBps, copyMBps: copyMBps,
            restoreToCopyRatio: restoreMBps / copyMBps)
    }
}
