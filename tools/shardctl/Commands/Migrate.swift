import ArgumentParser
import Foundation
import ShardDB

struct Migrate: AsyncParsableCommand {
    static let configuration = CommandConfiguration(
        abstract: "Move a shard, or a range at one end of it, from one instance to another.",
        discussion: """
            Both directories are opened here (neither may be open elsewhere). The migration copies a \
            snapshot, tails the source's changelog until caught up, then fences the range for a \
            moment, commits it on the target and records it as moved on the source (docs/MIGRATION.md). \
            Migrations a crash left unfinished between the two instances are settled first.

            --range takes key groups 'LO..HI' (half-open) under hash partitioning, and keys \
            'LO..HI' under range partitioning (an empty HI is unbounded). The range must sit at one \
            end of the shard's range. --merge-into grows an existing, adjacent target shard instead \
            of creating a new one. Make an empty target with 'shardctl init DIR --shards 0 --like SRC'.
            """)

    @Option(help: "The source instance's directory.") var from: String
    @Option(help: "The target instance's directory.") var to: String
    @Option(help: "The source shard.") var shard: Int
    @Option(help: "Only this part of the shard: LO..HI.") var range: String?
    @Option(name: .customLong("merge-into"), help: "Merge into this existing target shard.") var mergeInto: Int?
    @Flag(help: "Keep the moved data on the source (skip cleanup).") var noCleanup = false
    @Flag(help: "Print the report as JSON.") var json = false

    func run() async throws {
        let (source, target) = try failing { () throws -> (ShardEngine, ShardEngine) in
            guard URL(fileURLWithPath: from).standardized.path != URL(fileURLWithPath: to).standardized.path else {
                throw ShardDBError(.migrationConflict, "--from and --to are the same instance")
            }
            let source = try ShardEngine.open(at: from)
            do { return (source, try ShardEngine.open(at: to)) } catch { source.close(); throw error }
        }
        defer { source.close(); target.close() }
        let request = try failing { () throws -> MigrationRequest in
            var request = MigrationRequest(shard: shard, mergeInto: mergeInto)
            if let range { request.range = try parseRange(range, partitioning: source.partitioning) }
            request.cleanup = !noCleanup
            return request
        }
        let progress = ProgressLine()
        do {
            let report = try await source.migrate(request, to: target) { p in
                progress.update("\(p.phase.rawValue): \(p.keysCopied) keys, \(formatBytes(p.bytesCopied)) copied, "
                    + "\(p.changesApplied) changes, lag \(p.lag), \(formatBytes(Int(p.bytesPerSecond)))/s")
            }
            progress.finish()
            if json {
                printJSON(report, pretty: true)
            } else {
                print("migrated \(report.range) of shard \(report.sourceShard) to shard \(report.targetShard) of \(to)")
                print(String(format: "copied %d keys (%@) in %.2f s, applied %d changes in %.2f s catch-up; write pause %.2f ms",
                             report.keysCopied, formatBytes(report.bytesCopied), report.bulkSeconds, report.changesApplied,
                             report.catchUpSeconds, report.pauseMilliseconds))
            }
        } catch {
            progress.finish()
            fail("\(error)")
        }
    }
}

/// Parses `LO..HI`: key groups under hash partitioning, keys under range partitioning.
func parseRange(_ text: String, partitioning: Partitioning) throws -> ShardRange {
    guard let separator = text.range(of: "..") else {
        throw ShardDBError(.invalidArgument, "range '\(text)' is not LO..HI")
    }
    let lo = String(text[..<separator.lowerBound]), hi = String(text[separator.upperBound...])
    switch partitioning {
    case .hash(let k):
        guard let l = Int(lo), let h = Int(hi), l >= 0, l < h, h <= k else {
            throw ShardDBError(.invalidArgument, "range '\(text)' must be key groups LO..HI with 0 <= LO < HI <= \(k)")
        }
        return .keyGroups(KeyGroupRange(l, h))
    case .range:
        let lower = Array(lo.utf8), upper = hi.isEmpty ? nil : Array(hi.utf8)
        if let upper, !lower.lexicographicallyPrecedes(upper) {
            throw ShardDBError(.invalidArgument, "range '\(text)': LO must sort before HI")
        }
        return .keys(lower: lower, upper: upper)
    }
}

func formatBytes(_ bytes: Int) -> String {
    let units = ["B", "KB", "MB", "GB", "TB"]
    var value = Double(bytes), unit = 0
    while value >= 1024 && unit < units.count - 1 { value /= 1024; unit += 1 }
    return unit == 0 ? "\(bytes) B" : String(format: "%.1f %@", value, units[unit])
}
