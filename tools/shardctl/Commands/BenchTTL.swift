import ArgumentParser
import Foundation
import ShardDB

/// `shardctl bench ttl`: what per-key TTL costs on writes, reads and compaction.
struct TTLBench: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "ttl",
        abstract: "Measure TTL's cost: put/get with a TTL against without, compaction with the expiry filter against without.",
        discussion: """
            Two instances run the same work alternately, --rounds times, in one run: one writes every \
            key with a TTL, the other without; then both read every key. For compaction, two \
            instances hold the same data (every key with a TTL, --expired-percent of them already \
            expired) and are fully compacted, one with the expiry compaction filter and one without. \
            Ratios compare medians.
            """)

    @Option(help: "Keys per round.") var num = 200_000
    @Option(name: .customLong("value-size"), help: "Value size in bytes.") var valueSize = 100
    @Option(help: "Alternating rounds.") var rounds = 3
    @Option(name: .customLong("expired-percent"), help: "Share of keys already expired before compaction.") var expiredPercent = 10.0
    @Option(help: "Work in this directory (default: a temporary one, removed afterwards).") var dir: String?
    @Flag(help: "Print the results as JSON.") var json = false

    struct Result: Encodable {
        var putOpsWithTTL: Double
        var putOpsWithout: Double
        var putRatio: Double
        var getOpsWithTTL: Double
        var getOpsWithout: Double
        var getRatio: Double
        var compactionMBpsWithFilter: Double
        var compactionMBpsWithout: Double
        var compactionRatio: Double
        var expiredDropped: Int
    }

    func run() throws {
        try failing {
            guard num > 0, valueSize > 0, rounds > 0, expiredPercent >= 0, expiredPercent <= 100 else {
                throw ShardDBError(.invalidArgument, "--num, --value-size and --rounds must be positive; --expired-percent in [0, 100]")
            }
            // The keys are generated up front and held in memory (about 60 bytes each).
            guard num <= 50_000_000, rounds <= 10_000 else {
                throw ShardDBError(.invalidArgument, "--num must be at most 50000000 (its keys are held in memory) and --rounds at most 10000")
            }
            try BenchLimits.check(sizeMB: 1, valueSize: valueSize, writeRate: 0)
        }
        let dir = self.dir ?? NSTemporaryDirectory() + "sharddb-bench-ttl-\(ProcessInfo.processInfo.processIdentifier)"
        defer { if self.dir == nil { try? FileManager.default.removeItem(atPath: dir) } }
        let r = try failing(removing: self.dir == nil ? dir : nil) { try measure(in: dir) }
        if json { printJSON(r, pretty: true); return }
        print(String(format: "put: %.0f ops/s with TTL, %.0f without → %.3f", r.putOpsWithTTL, r.putOpsWithout, r.putRatio))
        print(String(format: "get: %.0f ops/s with TTL, %.0f without → %.3f", r.getOpsWithTTL, r.getOpsWithout, r.getRatio))
        print(String(format: "compaction: %.1f MB/s with the expiry filter, %.1f without → %.3f (%d expired entries dropped)",
                     r.compactionMBpsWithFilter, r.compactionMBpsWithout, r.compactionRatio, r.expiredDropped))
    }

    private func measure(in dir: String) throws -> Result {
        try BenchDirectory.fresh(dir, option: "--dir")
        let value = [UInt8](repeating: 0x41, count: valueSize)
        let keys = (0..<num).map { Array("key\($0 &* 2654435761 % num)".utf8) }
        var putWith: [Double] = [], putWithout: [Double] = [], getWith: [Double] = [], getWithout: [Double] = []
        for round in 0..<rounds {
            for withTTL in (round % 2 == 0 ? [true, false] : [false, true]) {
                let engine = try ShardEngine.create(at: dir + "/r\(round)-\(withTTL)", shards: 1)
                var start = monotonicNanos()
                for key in keys { try engine.put(key, value, ttl: withTTL ? .seconds(86_400) : .never) }
                let putOps = Double(num) / (Double(monotonicNanos() - start) / 1e9)
                start = monotonicNanos()
                var found = 0
                for key in keys { if try engine.withValue(forKey: key, { $0.count }) != nil { found += 1 } }
                let getOps = Double(num) / (Double(monotonicNanos() - start) / 1e9)
                guard found == num else { throw ShardDBError(.storage, "ttl bench: \(num - found) keys missing") }
                if withTTL { putWith.append(putOps); getWith.append(getOps) } else { putWithout.append(putOps); getWithout.append(getOps) }
                engine.close()
                try? FileManager.default.removeItem(atPath: dir + "/r\(round)-\(withTTL)")
            }
        }

        var compactWith: [Double] = [], compactWithout: [Double] = []
        var dropped = 0
        let now = SystemClock().nowMilliseconds()
        for round in 0..<rounds {
            for filter in (round % 2 == 0 ? [true, false] : [false, true]) {
                var options = ShardEngineOptions()
                options.expiryCompactionFilter = filter
                options.periodicCompactionSeconds = 0
                let path = dir + "/c\(round)-\(filter)"
                let engine = try ShardEngine.create(at: path, shards: 1, options: options)
                var i = 0
                while i < num {
                    try engine.write { batch in
                        for j in i..<min(num, i + 1000) {
                            let expired = Double(j % 1000) < expiredPercent * 10
                            try batch.put(keys[j], value, ttl: .expiresAt(expired ? now - 1000 : now + 86_400_000))
                        }
                    }
                    i += 1000
                }
                // Flush to table files first so the compaction measured reads and rewrites files only.
                try engine.flush()
                let bytes = directoryBytes(path, suffix: ".sst")
                let before = try engine.shards()[0].expiredDropped
                let start = monotonicNanos()
                _ = try engine.purgeExpired()
                let seconds = Double(monotonicNanos() - start) / 1e9
                let after = try engine.shards()[0].expiredDropped
                let mbps = Double(max(bytes, directoryBytes(path, suffix: ".sst"))) / 1_048_576 / seconds
                if filter { compactWith.append(mbps); dropped = after - before } else { compactWithout.append(mbps) }
                engine.close()
                try? FileManager.default.removeItem(atPath: path)
            }
        }
        return Result(putOpsWithTTL: median(putWith), putOpsWithout: median(putWithout), putRatio: median(putWith) / median(putWithout),
                      getOpsWithTTL: median(getWith), getOpsWithout: median(getWithout), getRatio: median(getWith) / median(getWithout),
                      compactionMBpsWithFilter: median(compactWith), compactionMBpsWithout: median(compactWithout),
                      compactionRatio: median(compactWith) / median(compactWithout), expiredDropped: dropped)
    }
}
